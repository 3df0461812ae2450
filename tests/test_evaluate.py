# SPDX-License-Identifier: Apache-2.0
"""``lightformer eval`` and the shipped digits artifact (NumPy only, works without torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sw.artifact import default_artifact_path, load_artifact
from sw.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = default_artifact_path()

pytest.importorskip("sklearn")                          # the digits data set


@pytest.fixture(scope="module")
def shipped():
    return load_artifact(SHIPPED)


def test_shipped_artifact_fits_the_ulx3s_preset(shipped):
    r = shipped.requirements
    assert shipped.config["attention"] == "window" and shipped.config["window"] <= 32
    assert r["head_dim"] <= 32 and r["weight_bytes"] < 100_000
    assert "ulx3s_85f" in r["fits_presets"]
    assert shipped.task == "digits" and shipped.manifest["eval_split"] == "test"


def test_eval_reproduces_the_recorded_accuracy(shipped, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["eval", "--json", str(out), "--no-progress"]) == 0
    res = json.loads(out.read_text())
    m = shipped.manifest
    assert res["task"] == "digits" and res["samples"] == m["eval_samples"] == 270
    assert res["accuracy"] == m["accuracy_int8"]           # exactly, not approximately
    assert res["accuracy_fp32"] == m["accuracy_fp32"]
    assert res["reproduces_recorded"] is True
    assert res["digest"] == shipped.digest
    assert res["schema_version"] == 1 and res["kind"] == "eval"
    # the integer model is within 0.5 accuracy points of the fp32 model
    assert abs(res["accuracy"] - res["accuracy_fp32"]) <= 0.005
    assert "int8 accuracy" in capsys.readouterr().out


def test_eval_json_to_stdout(shipped, capsys):
    assert main(["eval", "--json", "-", "--limit", "30", "--no-progress"]) == 0
    cap = capsys.readouterr()
    res = json.loads(cap.out)                              # stdout holds the report only
    assert res["kind"] == "eval" and res["samples"] == 30
    assert res["reproduces_recorded"] is False             # 30 of the 270 recorded samples
    assert "int8 accuracy" in cap.err


def test_documented_accuracy_matches_the_artifact(shipped):
    doc = (ROOT / "docs" / "artifact.md").read_text()
    assert f"{shipped.manifest['accuracy_int8']:.4f}" in doc
    assert f"{shipped.manifest['accuracy_fp32']:.4f}" in doc
    assert shipped.digest[:12] in doc


def test_eval_runs_without_torch(tmp_path):
    out = tmp_path / "eval.json"
    # A meta-path hook makes `import torch` fail as if it were not installed. (Setting
    # sys.modules["torch"] = None would also block it, but scipy then trips over the None.)
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'torch':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "try:\n"
            "    import torch\n"
            "    sys.exit('torch was not blocked')\n"
            "except ModuleNotFoundError:\n"
            "    pass\n"
            "from sw.cli import main\n"
            f"rc = main(['eval', '--json', {str(out)!r}, '--limit', '40', '--no-progress'])\n"
            "assert 'torch' not in sys.modules\n"
            "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["samples"] == 40 and 0.0 <= res["accuracy"] <= 1.0


def test_eval_reports_a_bad_artifact_clearly(tmp_path, capsys):
    blob = bytearray(SHIPPED.read_bytes())
    blob[-200] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(blob))
    with pytest.raises(SystemExit, match="lightformer eval: .*m.safetensors: tensor '.*' "
                       "checksum"):
        main(["eval", "--artifact", str(tmp_path / "m"), "--no-progress"])
    with pytest.raises(SystemExit, match="--limit must be >= 1"):
        main(["eval", "--limit", "0"])
    with pytest.raises(SystemExit):                        # refused before any work
        main(["eval", "--json", str(tmp_path)])
    assert "--json must be a file path" in capsys.readouterr().err


@pytest.mark.parametrize("field, change", [
    ("config", dict(window=2)), ("config", dict(causal=False)), ("config", dict(n_heads=4)),
    ("config", dict(attention="full")), ("scales", dict(input=0.01)), ("task_seed", 1),
])
def test_eval_refuses_an_edited_manifest(tmp_path, field, change):
    from safetensors import safe_open
    from safetensors.numpy import save

    with safe_open(SHIPPED, "np") as f:
        meta = f.metadata()
        m = json.loads(meta["lightformer-int8"])
        arrays = {k: f.get_tensor(k) for k in f.keys()}
    m[field] = dict(m[field], **change) if isinstance(change, dict) else change
    (tmp_path / "m.safetensors").write_bytes(save(arrays, {"lightformer-int8": json.dumps(m)}))
    with pytest.raises(SystemExit, match="lightformer eval: .*m.safetensors: the manifest does "
                       "not match its model_id .* edited after export"):
        main(["eval", "--artifact", str(tmp_path / "m"), "--no-progress"])


def test_documented_model_id_matches_the_artifact(shipped):
    doc = (ROOT / "docs" / "artifact.md").read_text()
    assert f"| `model_id` | `{shipped.model_id}` |" in doc
    assert f"(file {SHIPPED.stat().st_size:,} bytes)" in doc


def test_evaluate_artifact_counts_correct_samples(shipped):
    from sw.data import load_task
    from sw.evaluate import evaluate_artifact
    from sw.ref import model_forward_int, quantize_input
    t = load_task("digits")
    x, y = t.x_test[:30], t.y_test[:30]
    want = np.mean(np.argmax(model_forward_int(shipped, quantize_input(shipped, x)), -1) == y)
    assert evaluate_artifact(shipped, x, y, batch_size=7) == want
    with pytest.raises(ValueError, match="one length"):
        evaluate_artifact(shipped, x, y[:3])


def _eval_without_sklearn(*argv: str) -> subprocess.CompletedProcess:
    code = ("import sys\n"
            "class NoSklearn:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'sklearn':\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NoSklearn())\n"
            "from sw.cli import main\n"
            f"sys.exit(main(['eval', '--no-progress', *{list(argv)!r}]))\n")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_eval_without_sklearn_uses_the_shipped_test_set(tmp_path):
    out = tmp_path / "eval.json"
    proc = _eval_without_sklearn("--json", str(out))
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert res["samples"] == 270 and res["reproduces_recorded"] is True


def test_eval_names_a_missing_data_package(tmp_path):
    lone = tmp_path / "digits_int8.safetensors"             # no test set beside it
    lone.write_bytes(SHIPPED.read_bytes())
    proc = _eval_without_sklearn("--artifact", str(lone))
    assert proc.returncode == 1
    assert "the 'digits' data needs the Python package 'sklearn'" in proc.stderr
