# SPDX-License-Identifier: Apache-2.0
"""``lightformer program``: the openFPGALoader command per board, the checks before loading.

openFPGALoader is a stand-in script (``OPENFPGALOADER``) that records its arguments, and the
synth reports are written by the tests, so nothing here needs a board or the real tool.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path

import pytest

from boards.build import BOARDS, bitstream_entry, board_platform, file_sha256
from boards.program import INSTALL_HINT, last_report, loader_command, plan
from sw.cli import main

SUFFIX = {board: board_platform(board).bitstream_suffix for board in BOARDS}


@pytest.fixture
def fake_loader(tmp_path, monkeypatch):
    """A stand-in openFPGALoader that writes its arguments, one per line, to ``argv.txt``."""
    argv = tmp_path / "argv.txt"
    tool = tmp_path / "bin" / "fake-openfpgaloader"
    tool.parent.mkdir()
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(argv))}\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("OPENFPGALOADER", str(tool))
    monkeypatch.chdir(tmp_path)
    return tool, argv


def write_build(root: Path, board: str, name: str = "a", *, timing_met: bool = True,
                unit: str = "top", content: bytes = b"bitstream") -> tuple[Path, Path]:
    """A build folder with a bitstream and a synth report that names it (relative to ``root``,
    the working folder, as ``lightformer synth`` names it)."""
    folder = root / "build" / "synth" / name
    folder.mkdir(parents=True)
    bit = folder / f"top{SUFFIX[board]}"
    bit.write_bytes(content)
    report = {"schema_version": 1, "kind": "synth", "board": board, "unit": unit,
              "fmax_mhz": 130.0 if timing_met else 90.0, "target_mhz": 125.0,
              "timing_met": timing_met,
              **bitstream_entry(Path("build") / "synth" / name, SUFFIX[board])}
    path = folder / "report.json"
    path.write_text(json.dumps(report))
    return bit, path


def recorded(argv: Path) -> list[str]:
    return argv.read_text().splitlines()


# -- the command per board ----------------------------------------------------------------


@pytest.mark.parametrize(("board", "flash", "cable", "expected"), [
    ("ulx3s-85f", False, None, ["-b", "ulx3s", "-m", "x.bit"]),
    ("ulx3s-85f", True, None, ["-b", "ulx3s", "-f", "x.bit"]),
    ("ulx3s-85f", False, "ft231X", ["-b", "ulx3s", "-c", "ft231X", "-m", "x.bit"]),
    ("icebreaker", False, None, ["-b", "ice40_generic", "-m", "x.bin"]),
    ("icebreaker", True, None, ["-b", "ice40_generic", "-f", "x.bin"]),
    ("colorlight-5a75b", False, "ft232", ["-c", "ft232", "-m", "x.bit"]),
    ("colorlight-5a75b", True, "cmsisdap", ["-c", "cmsisdap", "-f", "x.bit"]),
])
def test_loader_command(board, flash, cable, expected):
    bit = "x" + SUFFIX[board]
    assert loader_command(board, bit, flash=flash, cable=cable, tool="ofl") == ["ofl", *expected]


def test_loader_command_needs_a_cable_where_the_board_has_no_programmer():
    with pytest.raises(ValueError, match="no programmer on the board.*--cable"):
        loader_command("colorlight-5a75b", "x.bit")
    for bad in ("", "-f", 3):
        with pytest.raises(ValueError, match="cable name"):
            loader_command("ulx3s-85f", "x.bit", cable=bad)


def test_loader_tool_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("OPENFPGALOADER", "/opt/ofl")
    assert loader_command("ulx3s-85f", "x.bit")[0] == "/opt/ofl"
    monkeypatch.delenv("OPENFPGALOADER")
    assert loader_command("ulx3s-85f", "x.bit")[0] == "openFPGALoader"


# -- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("flash", [False, True])
def test_program_loads_the_newest_report_of_the_board(fake_loader, tmp_path, capsys, flash):
    _, argv = fake_loader
    old, old_report = write_build(tmp_path, "ulx3s-85f", "old")
    new, _ = write_build(tmp_path, "ulx3s-85f", "new", content=b"newer")
    write_build(tmp_path, "colorlight-5a75b", "other")
    os.utime(old_report, (1, 1))
    assert last_report("ulx3s-85f").parent.name == "new"
    rc = main(["program", "--board", "ulx3s-85f"] + (["--flash"] if flash else []))
    assert rc == 0
    assert recorded(argv) == ["-b", "ulx3s", "-f" if flash else "-m", str(new.relative_to(
        tmp_path))]
    assert "note" not in capsys.readouterr().err


def test_dry_run_prints_the_command_and_runs_nothing(fake_loader, tmp_path, capsys):
    tool, argv = fake_loader
    bit, _ = write_build(tmp_path, "icebreaker")
    assert main(["program", "--board", "icebreaker", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert shlex.split(out) == [str(tool), "-b", "ice40_generic", "-m",
                                str(bit.relative_to(tmp_path))]
    assert not argv.exists()


@pytest.mark.parametrize("board", list(BOARDS))
def test_dry_run_without_a_build_names_the_default_bitstream(tmp_path, monkeypatch, capsys,
                                                            board):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))         # no openFPGALoader on it
    cable = ["--cable", "ft232"] if board == "colorlight-5a75b" else []
    assert main(["program", "--board", board, "--dry-run", *cable]) == 0
    captured = capsys.readouterr()
    command = shlex.split(captured.out)
    assert command[0] == "openFPGALoader" and command[-2] == "-m"
    assert command[-1].startswith(f"build/synth/{board}-top-")
    assert command[-1].endswith(SUFFIX[board])
    assert "no synth report" in captured.err and "apt-get install openfpgaloader" in captured.err
    # Without --dry-run the missing build is refused.
    assert main(["program", "--board", board, *cable]) == 2
    assert "run `lightformer synth --board" in capsys.readouterr().err


def test_missing_tool_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_build(tmp_path, "ulx3s-85f")
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "not-there"))
    assert main(["program", "--board", "ulx3s-85f"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"lightformer program: {INSTALL_HINT}"]
    assert "sudo apt-get install openfpgaloader" in INSTALL_HINT


def test_timing_not_met_is_refused_unless_forced(fake_loader, tmp_path, capsys):
    _, argv = fake_loader
    write_build(tmp_path, "ulx3s-85f", timing_met=False)
    assert main(["program", "--board", "ulx3s-85f"]) == 2
    assert "timing was not met" in capsys.readouterr().err
    assert not argv.exists()
    assert main(["program", "--board", "ulx3s-85f", "--force"]) == 0
    assert "--force: loading although" in capsys.readouterr().err
    assert recorded(argv)[:3] == ["-b", "ulx3s", "-m"]


def test_changed_bitstream_is_refused(fake_loader, tmp_path, capsys):
    _, argv = fake_loader
    bit, _ = write_build(tmp_path, "ulx3s-85f")
    bit.write_bytes(b"rebuilt by hand")
    assert main(["program", "--board", "ulx3s-85f"]) == 2
    assert "SHA-256 differs" in capsys.readouterr().err
    assert not argv.exists()


def test_cable_is_required_for_the_colorlight(fake_loader, tmp_path, capsys):
    _, argv = fake_loader
    bit, _ = write_build(tmp_path, "colorlight-5a75b")
    assert main(["program", "--board", "colorlight-5a75b"]) == 2
    assert "--cable" in capsys.readouterr().err
    assert not argv.exists()
    assert main(["program", "--board", "colorlight-5a75b", "--cable", "ft232", "--flash"]) == 0
    assert recorded(argv) == ["-c", "ft232", "-f", str(bit.relative_to(tmp_path))]


def test_explicit_bitstream_is_checked_against_the_report_beside_it(fake_loader, tmp_path,
                                                                   capsys):
    _, argv = fake_loader
    bit, _ = write_build(tmp_path, "ulx3s-85f", timing_met=False)
    assert main(["program", "--board", "ulx3s-85f", "--bitstream", str(bit)]) == 2
    assert "timing was not met" in capsys.readouterr().err
    # Another board's report beside it: refused; none beside it: loaded with a note.
    with pytest.raises(ValueError, match="built for 'ulx3s-85f'"):
        plan("colorlight-5a75b", bit, cable="ft232")
    loose = tmp_path / "loose.bit"
    loose.write_bytes(b"x")
    assert main(["program", "--board", "ulx3s-85f", "--bitstream", str(loose)]) == 0
    assert "no synth report beside" in capsys.readouterr().err
    assert recorded(argv) == ["-b", "ulx3s", "-m", str(loose)]


def test_wrong_bitstream_kind_or_missing_file_is_refused(fake_loader, tmp_path, capsys):
    assert main(["program", "--board", "icebreaker", "--bitstream", "top.bit"]) == 2
    assert "loads a .bin bitstream" in capsys.readouterr().err
    assert main(["program", "--board", "icebreaker", "--bitstream", "gone.bin"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["program", "--board", "ulx3s_85f", "--dry-run"])
    assert exc.value.code == 2
    assert "did you mean 'ulx3s-85f'" in capsys.readouterr().err


def test_a_harness_build_says_it_does_not_answer_the_host(fake_loader, tmp_path, capsys):
    write_build(tmp_path, "ulx3s-85f", unit="gemm")
    assert main(["program", "--board", "ulx3s-85f", "--dry-run"]) == 0
    assert "synth test harness" in capsys.readouterr().err


def test_failing_loader_exits_1(tmp_path, monkeypatch, capsys):
    tool = tmp_path / "failing"
    tool.write_text("#!/bin/sh\nexit 3\n")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    write_build(tmp_path, "ulx3s-85f")
    monkeypatch.setenv("OPENFPGALOADER", str(tool))
    assert main(["program", "--board", "ulx3s-85f"]) == 1
    assert "openFPGALoader failed (exit 3)" in capsys.readouterr().err


def test_bitstream_entry_names_the_file_and_its_hash(tmp_path):
    (tmp_path / "top.bit").write_bytes(b"abc")
    entry = bitstream_entry(tmp_path, ".bit")
    assert entry == {"bitstream": str(tmp_path / "top.bit"),
                     "bitstream_sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff"
                                         "61f20015ad"}
    assert file_sha256(tmp_path / "top.bit") == entry["bitstream_sha256"]
    with pytest.raises(RuntimeError, match="without its bitstream"):
        bitstream_entry(tmp_path, ".bin")
