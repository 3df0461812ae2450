# SPDX-License-Identifier: Apache-2.0
"""``sw.artifact``: round trip, atomic save, one clear error per kind of bad file (NumPy only)."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

from sw import artifact as art
from sw import report
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


def read_manifest(path: Path) -> dict:
    with safe_open(path, "np") as f:
        return json.loads(f.metadata()[art.FORMAT])


def write_container(path: Path, arrays: dict[str, np.ndarray], manifest: dict | str,
                    seal: bool = True) -> None:
    """Write a container behind the loader's back (the manifest as given, valid or not).
    ``seal`` recomputes its ``model_id``, as a tool that knows the scheme would, so the checks
    behind the model_id are reached; ``seal=False`` is a hand edit."""
    if isinstance(manifest, dict) and seal:
        manifest = dict(manifest, model_id=art.model_id(manifest))
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    path.write_bytes(safetensors.numpy.save(arrays, metadata={art.FORMAT: text}))


def rewrite(path: Path, arrays: dict[str, np.ndarray], *, fix_digest: bool,
            fix_arrays_meta: bool = False) -> None:
    """Replace the tensors of an artifact, updating as much of its manifest as asked."""
    m = read_manifest(path)
    if fix_digest:
        m["tensors_sha256"] = art.tensors_sha256(arrays)
    if fix_arrays_meta:
        m["arrays"] = {k: {"dtype": v.dtype.name, "shape": list(v.shape),
                           "sha256": hashlib.sha256(v.tobytes()).hexdigest()}
                       for k, v in arrays.items()}
    write_container(path, arrays, m)


def edit_manifest(path: Path, seal: bool = True, **changes) -> None:
    m = read_manifest(path)
    m.update(changes)
    write_container(path, dict(art.load_artifact(path).arrays), m, seal=seal)


def save_legacy(stem: Path) -> dict[str, np.ndarray]:
    """A format-version-1 pair (NAME.npz + NAME.json) as the previous release wrote it."""
    arrays = random_arrays(CFG)
    m = read_manifest(save(stem.with_name(stem.name + "_v2"), arrays=arrays))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    m = {k: v for k, v in m.items() if k != "tensors_sha256"}
    m.update(format_version=1, data_file=stem.name + ".npz", data_bytes=len(blob),
             data_sha256=hashlib.sha256(blob).hexdigest())
    stem.with_name(stem.name + ".npz").write_bytes(blob)
    stem.with_name(stem.name + ".json").write_text(json.dumps(m))
    return arrays


# -- good files -----------------------------------------------------------------------------------

def test_artifact_round_trip(tmp_path):
    arrays = random_arrays(CFG)
    p = save(tmp_path / "m", arrays=arrays)
    assert p == tmp_path / "m.safetensors" and os.listdir(tmp_path) == ["m.safetensors"]
    a = art.load_artifact(tmp_path / "m")
    assert set(a.arrays) == set(arrays) and a.path == p
    for k, v in arrays.items():
        assert a.arrays[k].dtype == v.dtype and a.arrays[k].shape == v.shape
        np.testing.assert_array_equal(a.arrays[k], v)
    assert a.config == CFG and a.task == "digits" and a.manifest["format_version"] == 2
    assert a.digest == art.tensors_sha256(arrays) == a.manifest["tensors_sha256"]
    assert a.scales["input"] == 1 / 127
    assert art.load_artifact(p).manifest == a.manifest
    assert a.model_id == art.model_id(a.manifest) and len(a.model_id) == 64


def test_model_id_names_config_scales_and_tensors(tmp_path):
    ids = {art.load_artifact(save(tmp_path / "a")).model_id,
           art.load_artifact(save(tmp_path / "b", cfg=dict(CFG, window=2))).model_id,
           art.load_artifact(save(tmp_path / "c", task_seed=1)).model_id,
           art.load_artifact(save(tmp_path / "d", arrays=random_arrays(CFG, 5))).model_id}
    assert len(ids) == 4
    m = read_manifest(tmp_path / "a.safetensors")
    assert art.model_id(dict(m, created={"utc": "another day"})) == m["model_id"]
    assert art.model_id(dict(m, scales=dict(m["scales"], input=0.5))) != m["model_id"]
    # which presets fit follows the release's presets, not the model
    moved = dict(m["requirements"], fits_presets=["another"])
    assert art.model_id(dict(m, requirements=moved)) == m["model_id"]
    assert art.model_id(dict(m, requirements=dict(moved, window=8))) != m["model_id"]


def test_artifact_bytes_are_deterministic(tmp_path):
    p1, p2 = save(tmp_path / "a"), save(tmp_path / "b.safetensors")
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
    # The attention unit runs causal and centred windows alike (per ATTN instruction).
    centred = dict(CFG, causal=False)
    assert "tiny" in art.requirements(centred, random_arrays(centred))["fits_presets"]


def test_artifact_file_names():
    assert art.artifact_file("a/m") == Path("a/m.safetensors")
    assert art.artifact_file("a/m.safetensors") == Path("a/m.safetensors")
    assert art.artifact_file("a/m.npz") == art.artifact_file("a/m.json") == Path("a/m.safetensors")
    assert art.artifact_file("a/m.v1") == Path("a/m.v1.safetensors")


# -- atomic save ----------------------------------------------------------------------------------

def test_save_rejects_bad_tensors_and_keeps_old_file(tmp_path):
    p = save(tmp_path / "m")
    before = p.read_bytes()
    bad = random_arrays(CFG)
    bad["head.w"] = bad["head.w"].astype(np.int16)
    with pytest.raises(art.ArtifactError, match="'head.w' is int16"):
        save(tmp_path / "m", arrays=bad)
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_save_interrupted_leaves_the_old_artifact(tmp_path, monkeypatch):
    p = save(tmp_path / "m")
    before = p.read_bytes()

    def power_cut(src, dst):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(report.os, "replace", power_cut)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "m", arrays=random_arrays(CFG, seed=5))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.safetensors"]          # no temporary file left
    assert p.read_bytes() == before
    art.load_artifact(p)


# -- one clear error per kind of bad file ---------------------------------------------------------

def test_load_missing_file(tmp_path):
    with pytest.raises(art.ArtifactError, match="m.safetensors: file not found"):
        art.load_artifact(tmp_path / "m")
    with pytest.raises(art.ArtifactError, match="is a folder, not an artifact"):
        art.load_artifact(tmp_path)
    with pytest.raises(art.ArtifactError, match="must name a file, not an empty string"):
        art.load_artifact("")
    with pytest.raises(art.ArtifactError, match="m.safetensors: file not found"):
        art.load_artifact(tmp_path / "m.safetensors")


def test_load_truncated_file(tmp_path):
    p = save(tmp_path / "m")
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(art.ArtifactError, match="file is truncated: .* bytes of tensor data, "
                       "the header says"):
        art.load_artifact(p)
    p.write_bytes(p.read_bytes()[:5])
    with pytest.raises(art.ArtifactError, match="not a safetensors file, or truncated"):
        art.load_artifact(p)


def test_load_file_with_trailing_bytes(tmp_path):
    p = save(tmp_path / "m")
    p.write_bytes(p.read_bytes() + b"\0" * 8)
    with pytest.raises(art.ArtifactError, match="longer than its header says"):
        art.load_artifact(p)


def test_load_corrupt_tensor_data(tmp_path):
    p = save(tmp_path / "m")
    blob = bytearray(p.read_bytes())
    blob[-3] ^= 0x01                                          # inside the last tensor
    p.write_bytes(bytes(blob))
    with pytest.raises(art.ArtifactError, match="checksum \\(SHA-256\\) does not match the "
                       "manifest: the file is corrupt or was modified"):
        art.load_artifact(p)


def test_load_not_a_safetensors_file(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(b"\x00" * 64)
    with pytest.raises(art.ArtifactError, match="not a safetensors file"):
        art.load_artifact(p)
    p.write_bytes((40).to_bytes(8, "little") + b"{" * 40 + b"\0" * 8)
    with pytest.raises(art.ArtifactError, match="header is not valid JSON .* truncated or "
                       "corrupt"):
        art.load_artifact(p)


def test_load_safetensors_of_another_tool(tmp_path):
    p = tmp_path / "m.safetensors"
    p.write_bytes(safetensors.numpy.save({"w": np.zeros(3, np.int8)}, metadata={"format": "pt"}))
    with pytest.raises(art.ArtifactError, match="not a lightformer-int8 artifact"):
        art.load_artifact(p)


def test_load_truncated_manifest(tmp_path):
    p = save(tmp_path / "m")
    text = json.dumps(read_manifest(p))
    write_container(p, dict(art.load_artifact(p).arrays), text[:50])
    with pytest.raises(art.ArtifactError, match="manifest is not valid JSON .* truncated or "
                       "corrupt"):
        art.load_artifact(p)
    write_container(p, {}, "[" * 100_000)
    with pytest.raises(art.ArtifactError, match="manifest is not valid JSON \\(nested too "
                       "deeply\\)"):
        art.load_artifact(p)


@pytest.mark.parametrize("field, change", [
    ("config", dict(attention="full")), ("config", dict(window=2)),
    ("config", dict(causal=False)), ("config", dict(n_heads=4)),
    ("scales", dict(input=2 / 127)), ("task_seed", 1), ("task", "mnist1d"),
    ("accuracy_int8", 0.99), ("tensors_sha256", "0" * 64), ("model_id", "f" * 64),
])
def test_load_refuses_an_edited_manifest(tmp_path, field, change):
    p = save(tmp_path / "m", task_seed=0, accuracy_int8=0.5)
    m = read_manifest(p)
    value = dict(m[field], **change) if isinstance(change, dict) else change
    edit_manifest(p, seal=False, **{field: value})
    with pytest.raises(art.ArtifactError, match="m.safetensors: the manifest does not match its "
                       "model_id .* edited after export; restore the original file or re-export"):
        art.load_artifact(p)


def test_load_accepts_an_edited_created_field(tmp_path):
    p = save(tmp_path / "m")
    before = art.load_artifact(p).model_id
    edit_manifest(p, seal=False, created={"utc": "2000-01-01", "by": "hand"})
    assert art.load_artifact(p).model_id == before


@pytest.mark.parametrize("field, value, message", [
    ("task", 3, "'task' must be a non-empty string, not 3"),
    ("task_seed", "0", "'task_seed' must be an integer >= 0, not '0'"),
    ("task_seed", True, "'task_seed' must be an integer >= 0, not True"),
    ("task_seed", -1, "'task_seed' must be an integer >= 0"),
    ("method", "fp8", "'method' must be \"ptq\" or \"qat\""),
    ("accuracy_int8", "0.9", "'accuracy_int8' must be a number in \\[0, 1\\] or null"),
    ("accuracy_fp32", 1.5, "'accuracy_fp32' must be a number in \\[0, 1\\]"),
    ("eval_samples", 2.5, "'eval_samples' must be an integer >= 0 or null"),
    ("scales", {"input": "0.1"}, "'scales' must be an object of positive finite numbers"),
    ("scales", {"input": -0.1}, "'scales' must be an object of positive finite numbers"),
    ("scales", [1.0], "'scales' must be an object"),
    ("config", [1], "'config' must be an object, not \\[1\\]"),
    ("requirements", None, "'requirements' must be an object, not None"),
    ("arrays", {"head.w": 3}, "'arrays' must be an object mapping tensor names"),
    ("created", "today", "'created' must be an object"),
    ("tensors_sha256", "ABC", "'tensors_sha256' must be 64 lower-case hex digits"),
    ("model_id", 7, "'model_id' must be 64 lower-case hex digits, not 7"),
])
def test_load_manifest_field_of_the_wrong_type(tmp_path, field, value, message):
    p = save(tmp_path / "m")
    edit_manifest(p, seal=field != "model_id", **{field: value})
    with pytest.raises(art.ArtifactError, match="manifest field " + message):
        art.load_artifact(p)


def test_load_manifest_with_nan(tmp_path):
    p = save(tmp_path / "m")
    text = json.dumps(read_manifest(p)).replace('"input": 0.007874015748031496', '"input": NaN')
    assert "NaN" in text
    write_container(p, dict(art.load_artifact(save(tmp_path / "n")).arrays), text)
    with pytest.raises(art.ArtifactError, match="manifest is not valid JSON \\(NaN is not a JSON "
                       "number\\)"):
        art.load_artifact(p)


def test_save_refuses_a_reserved_or_mistyped_info_field(tmp_path):
    with pytest.raises(art.ArtifactError, match="'task_seed' must be an integer >= 0"):
        save(tmp_path / "m", task_seed="1")
    a = art.load_artifact(save(tmp_path / "m", model_id="0" * 64))   # reserved: recomputed
    assert a.model_id == art.model_id(a.manifest) != "0" * 64


def test_load_foreign_manifest(tmp_path):
    p = save(tmp_path / "m")
    edit_manifest(p, format="something-else")
    with pytest.raises(art.ArtifactError, match="not a lightformer-int8 manifest"):
        art.load_artifact(p)


def test_load_unknown_format_version(tmp_path):
    p = save(tmp_path / "m")
    edit_manifest(p, format_version=3)
    with pytest.raises(art.ArtifactError, match="unsupported format version 3 .* version 2"):
        art.load_artifact(p)


def test_load_manifest_without_a_field(tmp_path):
    p = save(tmp_path / "m")
    m = read_manifest(p)
    del m["tensors_sha256"]
    write_container(p, dict(art.load_artifact(save(tmp_path / "m")).arrays), m)
    with pytest.raises(art.ArtifactError, match="manifest lacks the field 'tensors_sha256'"):
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
    edit_manifest(p, config=dict(read_manifest(p)["config"], **change))
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


def test_load_tensors_of_another_model(tmp_path):
    p = save(tmp_path / "m")
    other = random_arrays(CFG, seed=9)
    rewrite(p, other, fix_digest=True)                        # overall digest updated
    with pytest.raises(art.ArtifactError, match="tensor '.*' checksum \\(SHA-256\\) does not "
                       "match the manifest"):
        art.load_artifact(p)
    p = save(tmp_path / "m")
    rewrite(p, other, fix_digest=False, fix_arrays_meta=True)  # per-tensor records updated
    with pytest.raises(art.ArtifactError, match="tensors_sha256 does not match the tensors"):
        art.load_artifact(p)


def test_load_tensor_dtype_differs_from_manifest(tmp_path):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays)
    arrays["head.b"] = arrays["head.b"].astype(np.int64)
    rewrite(p, arrays, fix_digest=True)
    with pytest.raises(art.ArtifactError, match="'head.b' is int64 \\[10\\] but the manifest "
                       "says int32 \\[10\\]"):
        art.load_artifact(p)


def test_load_extra_tensor(tmp_path):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays, stowaway=np.zeros(3, np.int8))
    rewrite(p, arrays, fix_digest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match="unexpected tensor 'stowaway'"):
        art.load_artifact(p)


def test_load_requant_constant_out_of_range(tmp_path):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays)
    arrays["blocks.1.attn.proj.shift"] = np.full(16, 60, np.int32)
    rewrite(p, arrays, fix_digest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match="'blocks.1.attn.proj.shift' holds a shift "
                       "outside \\[1, 47\\]"):
        art.load_artifact(p)
    arrays["blocks.1.attn.proj.shift"] = np.full(16, 20, np.int32)
    arrays["blocks.0.attn.quant"] = np.array([1 << 15, 10, 100, 10], np.int32)
    rewrite(p, arrays, fix_digest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match="multiplier outside \\[0, 2\\*\\*15\\)"):
        art.load_artifact(p)


@pytest.mark.parametrize("name", ["blocks.0.ffn.fc1.w", "pos.table", "ln_f.gamma", "head.w"])
def test_load_weight_of_minus_128(tmp_path, name):
    p = save(tmp_path / "m")
    arrays = dict(art.load_artifact(p).arrays)
    arrays[name] = arrays[name].copy()
    arrays[name].flat[3] = -128
    rewrite(p, arrays, fix_digest=True, fix_arrays_meta=True)
    with pytest.raises(art.ArtifactError, match=f"'{name}' holds -128, outside the weights' "
                       "\\[-127, 127\\]"):
        art.load_artifact(p)
    with pytest.raises(art.ArtifactError, match="holds -128"):
        save(tmp_path / "n", arrays=arrays)


def test_default_artifact_path_points_into_package():
    p = art.default_artifact_path()
    assert p.name == "digits_int8.safetensors" and p.parent.name == "artifacts"
    assert p.is_file() and not p.with_suffix(".npz").exists()


# -- the version-1 pair (NAME.npz + NAME.json): read for one more release -------------------------

def test_legacy_pair_loads_with_a_deprecation_warning(tmp_path):
    arrays = save_legacy(tmp_path / "old")
    for name in ("old", "old.npz", "old.json"):
        with pytest.warns(DeprecationWarning, match="python -m sw.artifact convert .*old"):
            a = art.load_artifact(tmp_path / name)
        assert a.path == tmp_path / "old.npz" and a.manifest["format_version"] == 2
        assert a.digest == art.tensors_sha256(arrays)
        for k, v in arrays.items():
            np.testing.assert_array_equal(a.arrays[k], v)


def test_legacy_pair_errors_stay_clear(tmp_path):
    save_legacy(tmp_path / "old")
    npz = tmp_path / "old.npz"
    blob = npz.read_bytes()
    npz.write_bytes(blob[:-100])
    with pytest.raises(art.ArtifactError, match="old.npz: tensor file is truncated"):
        art.load_artifact(npz)
    npz.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(art.ArtifactError, match="old.npz: tensor file checksum"):
        art.load_artifact(npz)
    (tmp_path / "old.json").unlink()
    with pytest.raises(art.ArtifactError, match="old.json: file not found"):
        art.load_artifact(npz)


def test_legacy_pair_with_a_huge_tensor_header(tmp_path):
    """A member whose .npy header claims 10**12 bytes is refused before NumPy allocates them."""
    import zipfile

    arrays = save_legacy(tmp_path / "old")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in arrays.items():
            head = np.lib.format.header_data_from_array_1_0(v)
            if k == "head.w":
                head["shape"] = (10 ** 11, 10)
            member = io.BytesIO()
            np.lib.format.write_array_header_1_0(member, head)
            z.writestr(k + ".npy", member.getvalue() + v.tobytes())
    blob = buf.getvalue()
    (tmp_path / "old.npz").write_bytes(blob)
    m = json.loads((tmp_path / "old.json").read_text())
    m.update(data_bytes=len(blob), data_sha256=hashlib.sha256(blob).hexdigest())
    (tmp_path / "old.json").write_text(json.dumps(m))
    with pytest.raises(art.ArtifactError, match="old.npz: tensor 'head.w.npy' claims "
                       "1000000000128 bytes but holds 288"):
        art.load_artifact(tmp_path / "old")


def test_convert_legacy_pair(tmp_path, capsys):
    arrays = save_legacy(tmp_path / "old")
    assert art.main(["convert", str(tmp_path / "old")]) == 0
    assert "old.safetensors" in capsys.readouterr().out
    with pytest.warns(DeprecationWarning):
        legacy = art.load_artifact(tmp_path / "old.npz")
    new = art.load_artifact(tmp_path / "old")                  # the new file wins, no warning
    assert new.path == tmp_path / "old.safetensors" and new.manifest == legacy.manifest
    assert set(new.arrays) == set(arrays)
    for k, v in arrays.items():
        assert new.arrays[k].dtype == v.dtype
        np.testing.assert_array_equal(new.arrays[k], v)
    assert art.main(["convert", str(tmp_path / "nothing")]) == 1
    assert "not a version-1 artifact" in capsys.readouterr().err
