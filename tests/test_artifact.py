# SPDX-License-Identifier: Apache-2.0
"""``sw.artifact``: round trip, atomic save, one clear error per kind of bad file (NumPy only)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from sw import artifact as art
from sw.ref import model_forward_int

CFG = dict(task="classify", input_kind="patches", patch_dim=8, vocab_size=0, seq_len=8,
           n_classes=10, d_model=16, n_heads=2, n_layers=2, d_ff=32, attention="window",
           window=4, causal=True, dropout=0.0)


def random_arrays(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Valid (in-range) random tensors for ``cfg``: any integer model can run them."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (dtype, shape) in art.expected_arrays(cfg).items():
        if name.endswith("attn.quant"):
            a = np.array([rng.integers(1 << 14, 1 << 15), rng.integers(12, 20),
                          rng.integers(1 << 14, 1 << 15), rng.integers(20, 26)])
        elif name.endswith("mult"):
            a = rng.integers(1 << 13, 1 << 15, shape)
        elif name.endswith("shift"):
            a = rng.integers(14, 16, shape) if name.endswith((".add.shift", "add1.shift",
                                                              "add2.shift")) \
                else rng.integers(18, 24, shape)
        elif name.endswith(".eps"):
            a = np.array(5)
        elif dtype == "int8":
            a = rng.integers(-127, 128, shape)
        else:
            a = rng.integers(-2000, 2000, shape)
        out[name] = np.asarray(a).astype(dtype)
    return out


def save(path: Path, cfg: dict | None = None, arrays=None, **info) -> Path:
    cfg = dict(CFG if cfg is None else cfg)
    arrays = random_arrays(cfg) if arrays is None else arrays
    return art.save_artifact(path, config=cfg, arrays=arrays,
                             scales={"input": 1 / 127, "logits": 0.01},
                             info={"task": "digits", "accuracy_fp32": 0.9, **info})


def rewrite(npz: Path, arrays: dict[str, np.ndarray], *, fix_manifest: bool,
            fix_arrays_meta: bool = False) -> None:
    """Replace the tensors of an artifact behind the loader's back."""
    blob = art._npz_bytes(arrays)
    npz.write_bytes(blob)
    if fix_manifest:
        j = npz.with_suffix(".json")
        m = json.loads(j.read_text())
        m["data_bytes"], m["data_sha256"] = len(blob), hashlib.sha256(blob).hexdigest()
        if fix_arrays_meta:
            m["arrays"] = {k: {"dtype": v.dtype.name, "shape": list(v.shape),
                               "sha256": hashlib.sha256(v.tobytes()).hexdigest()}
                           for k, v in arrays.items()}
        j.write_text(json.dumps(m))


def edit_manifest(npz: Path, **changes) -> None:
    j = npz.with_suffix(".json")
    m = json.loads(j.read_text())
    m.update(changes)
    j.write_text(json.dumps(m))


# -- good files -----------------------------------------------------------------------------------

def test_artifact_round_trip(tmp_path):
    arrays = random_arrays(CFG)
    p = save(tmp_path / "m", arrays=arrays)
    assert p == tmp_path / "m.npz" and (tmp_path / "m.json").is_file()
    a = art.load_artifact(tmp_path / "m.json")
    assert set(a.arrays) == set(arrays)
    for k, v in arrays.items():
        assert a.arrays[k].dtype == v.dtype
        np.testing.assert_array_equal(a.arrays[k], v)
    assert a.config == CFG and a.task == "digits" and a.manifest["format_version"] == 1
    assert a.digest == hashlib.sha256(p.read_bytes()).hexdigest()
    assert a.scales["input"] == 1 / 127
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_artifact_bytes_are_deterministic(tmp_path):
    p1, p2 = save(tmp_path / "a"), save(tmp_path / "b")
    assert p1.read_bytes() == p2.read_bytes()


def test_artifact_runs_in_integer_model(tmp_path):
    a = art.load_artifact(save(tmp_path / "m"))
    x = np.random.default_rng(1).integers(-128, 128, (3, 8, 8)).astype(np.int8)
    logits = model_forward_int(a, x)
    assert logits.dtype == np.int32 and logits.shape == (3, 10)
    np.testing.assert_array_equal(model_forward_int(a, x[1]), logits[1])


def test_artifact_token_lm_config(tmp_path):
    cfg = dict(CFG, task="lm", input_kind="tokens", vocab_size=12, n_classes=12,
               attention="full", causal=True)
    a = art.load_artifact(save(tmp_path / "lm", cfg=cfg))
    x = np.random.default_rng(2).integers(0, 12, (2, 5))
    assert model_forward_int(a, x).shape == (2, 5, 12)


def test_artifact_requirements_and_presets(tmp_path):
    a = art.load_artifact(save(tmp_path / "m"))
    r = a.requirements
    assert (r["window"], r["causal"], r["head_dim"], r["k_depth"], r["lut_count"]) == \
        (4, True, 8, 32, 2)
    assert r["weight_bytes"] == sum(v.nbytes for v in a.arrays.values())
    assert "ulx3s_85f" in r["fits_presets"] and "tiny" in r["fits_presets"]
    big = dict(CFG, d_model=256, n_heads=4, d_ff=256)                 # ~0.8 MB of weights
    r = art.requirements(big, random_arrays(big))
    assert r["head_dim"] == 64 and r["fits_presets"] == ["sim_large"]


# -- atomic save ----------------------------------------------------------------------------------

def test_save_rejects_bad_tensors_and_keeps_old_files(tmp_path):
    p = save(tmp_path / "m")
    before = p.read_bytes(), p.with_suffix(".json").read_bytes()
    bad = random_arrays(CFG)
    bad["head.w"] = bad["head.w"].astype(np.int16)
    with pytest.raises(art.ArtifactError, match="'head.w' is int16"):
        save(tmp_path / "m", arrays=bad)
    assert (p.read_bytes(), p.with_suffix(".json").read_bytes()) == before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_save_interrupted_between_files_is_detected(tmp_path, monkeypatch):
    p = save(tmp_path / "m")
    real_replace, calls = os.replace, []

    def crash_on_manifest(src, dst):
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise KeyboardInterrupt("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(art.os, "replace", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "m", arrays=random_arrays(CFG, seed=5))
    monkeypatch.undo()
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    with pytest.raises(art.ArtifactError, match="checksum"):
        art.load_artifact(p)


# -- one clear error per kind of bad file ---------------------------------------------------------

def test_load_missing_file(tmp_path):
    with pytest.raises(art.ArtifactError, match="m.json: file not found"):
        art.load_artifact(tmp_path / "m.npz")
    p = save(tmp_path / "m")
    p.unlink()
    with pytest.raises(art.ArtifactError, match="m.npz: file not found"):
        art.load_artifact(tmp_path / "m")


def test_load_truncated_tensor_file(tmp_path):
    p = save(tmp_path / "m")
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(art.ArtifactError, match="truncated: .* bytes, the manifest says"):
        art.load_artifact(p)


def test_load_corrupt_tensor_file(tmp_path):
    p = save(tmp_path / "m")
    blob = bytearray(p.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    p.write_bytes(bytes(blob))
    with pytest.raises(art.ArtifactError, match="checksum .* corrupt or was modified"):
        art.load_artifact(p)


def test_load_unreadable_tensor_file(tmp_path):
    p = save(tmp_path / "m")
    p.write_bytes(b"\x00" * 64)
    edit_manifest(p, data_bytes=64, data_sha256=hashlib.sha256(b"\x00" * 64).hexdigest())
    with pytest.raises(art.ArtifactError, match="tensor file cannot be read"):
        art.load_artifact(p)


def test_load_truncated_manifest(tmp_path):
    p = save(tmp_path / "m")
    j = p.with_suffix(".json")
    j.write_text(j.read_text()[:50])
    with pytest.raises(art.ArtifactError, match="not valid JSON .* truncated or corrupt"):
        art.load_artifact(p)


def test_load_foreign_manifest(tmp_path):
    p = save(tmp_path / "m")
    edit_manifest(p, format="something-else")
    with pytest.raises(art.ArtifactError, match="not a lightformer-int8 manifest"):
        art.load_artifact(p)


def test_load_unknown_format_version(tmp_path):
    p = save(tmp_path / "m")
    edit_manifest(p, format_version=2)
    with pytest.raises(art.ArtifactError, match="unsupported format version 2 .* version 1"):
        art.load_artifact(p)


@pytest.mark.parametrize("change, message", [
    (dict(n_heads=3), "n_heads \\(3\\) must divide d_model \\(16\\)"),
    (dict(attention="performer"), "attention must be one of window, full"),
    (dict(window=0), "window must be an integer in \\[1, 256\\]"),
    (dict(attention="full", causal=False, seq_len=200), "window of 399 keys"),
    (dict(causal="yes"), "causal must be true or false"),
    (dict(funnel_stride=2), "funnel_stride"),
])
def test_load_impossible_config(tmp_path, change, message):
    p = save(tmp_path / "m")
    m = json.loads(p.with_suffix(".json").read_text())
    edit_manifest(p, config=dict(m["config"], **change))
    with pytest.raises(art.ArtifactError, match=message):
        art.load_artifact(p)


def test_load_config_does_not_match_tensors(tmp_path):
    p = save(tmp_path / "m")
    edit_manifest(p, config=dict(CFG, d_ff=48))
    with pytest.raises(art.ArtifactError, match="'blocks.0.ffn.fc1.w' is int8 \\(16, 32\\) but "
                       "the config needs int8 \\(16, 48\\)"):
        art.load_artifact(p)
    p = save(tmp_path / "m")
    edit_manifest(p, config=dict(CFG, n_layers=3))
    with pytest.raises(art.ArtifactError, match="'blocks.2.* is missing"):
        art.load_artifact(p)


def test_load_tensor_file_from_another_model(tmp_path):
    p = save(tmp_path / "m")
    other = random_arrays(CFG, seed=9)
    rewrite(p, other, fix_manifest=True)                      # whole-file checksum updated
    with pytest.raises(art.ArtifactError, match="checksum does not match the manifest"):
        art.load_artifact(p)


def test_load_tensor_dtype_differs_from_manifest(tmp_path):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays)
    arrays["head.b"] = arrays["head.b"].astype(np.int64)
    rewrite(p, arrays, fix_manifest=True)
    with pytest.raises(art.ArtifactError, match="'head.b' is int64 \\[10\\] but the manifest "
                       "says int32 \\[10\\]"):
        art.load_artifact(p)


def test_load_extra_tensor(tmp_path):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays, stowaway=np.zeros(3, np.int8))
    rewrite(p, arrays, fix_manifest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match="unexpected tensor 'stowaway'"):
        art.load_artifact(p)


def test_load_requant_constant_out_of_range(tmp_path):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays)
    arrays["blocks.1.attn.proj.shift"] = np.full(16, 60, np.int32)
    rewrite(p, arrays, fix_manifest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match="'blocks.1.attn.proj.shift' holds a shift "
                       "outside \\[1, 47\\]"):
        art.load_artifact(p)
    arrays["blocks.1.attn.proj.shift"] = np.full(16, 20, np.int32)
    arrays["blocks.0.attn.quant"] = np.array([1 << 15, 10, 100, 10], np.int32)
    rewrite(p, arrays, fix_manifest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match="multiplier outside \\[0, 2\\*\\*15\\)"):
        art.load_artifact(p)


def test_default_artifact_path_points_into_package():
    p = art.default_artifact_path()
    assert p.name == "digits_int8.npz" and p.parent.name == "artifacts"
