# SPDX-License-Identifier: Apache-2.0
"""``lightformer`` itself: ``--version``, a light ``--help``, and the ``info`` command's report."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hw.params import PRESETS
from sw.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == \
        f"lightformer {importlib.metadata.version('lightformer')}"


def test_help_imports_no_command_module():
    code = ("import sys\n"
            "from sw.cli import main\n"
            "try:\n"
            "    main(['--help'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "heavy = [m for m in ('torch', 'amaranth', 'cocotb', 'sw.train', 'sim.demo')\n"
            "         if m in sys.modules]\n"
            "sys.exit(f'imported {heavy}' if heavy else 0)\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "train" in proc.stdout and "eval" in proc.stdout


def test_info_table_and_json(tmp_path, capsys):
    assert main(["info"]) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in PRESETS) and "toolchain:" in table
    hosted = [line for line in table.splitlines() if "on the host" in line]
    assert hosted == [line for line in table.splitlines() if "colorlight_5a75b" in line]
    assert len(hosted) == 1 and "attn and lnorm on the host" in hosted[0]
    assert main(["info", "--json", "-"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["schema_version"] == 1 and rep["kind"] == "info"
    assert set(rep["presets"]) == set(PRESETS)
    assert all(rep["presets"][n]["digest"] == p.digest() for n, p in PRESETS.items())
    assert rep["presets"]["colorlight_5a75b"]["host_units"] == ["attn", "lnorm"]
    assert rep["toolchain"]["numpy"] == importlib.metadata.version("numpy")
    out = tmp_path / "sub" / "info.json"
    assert main(["info", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["presets"] == rep["presets"]
    assert f"wrote {out}" in capsys.readouterr().out


def test_info_refuses_a_folder_as_json_path(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["info", "--json", str(tmp_path)])
    assert exc.value.code == 2 and "--json must be a file path" in capsys.readouterr().err
