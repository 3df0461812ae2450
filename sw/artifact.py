# SPDX-License-Identifier: Apache-2.0
"""The versioned int8 model artifact: save (atomic) and load (validated). NumPy + stdlib only.

An artifact is two files side by side (``docs/artifact.md``)::

    NAME.npz    integer tensors (an uncompressed zip of ``.npy`` files, fixed timestamps)
    NAME.json   the manifest: format version, model config, scales, requirements, checksums

``load_artifact`` checks everything before anything runs: the format and its version, the
config, the size and SHA-256 of the tensor file, every tensor's name, dtype, shape and checksum
against the manifest *and* against the shapes the config implies, and the range of every
requant constant. Each failure raises one :class:`ArtifactError` saying what is wrong, where,
and what to do. This module never imports torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FORMAT", "FORMAT_VERSION", "Artifact", "ArtifactError", "artifact_paths",
    "default_artifact_path", "expected_arrays", "load_artifact", "requirements",
    "save_artifact", "validate_config",
]

FORMAT = "lightformer-int8"
FORMAT_VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)         # fixed timestamps: same tensors -> same bytes
_ATTN_MAX_SPAN = 256                       # sw.ref.SOFTMAX_MAX_WINDOW
_ATTN_MAX_HEAD_DIM = 128                   # sw.ref.ATTN_MAX_HEAD_DIM
_LN_MAX_DIM = 1024                         # sw.ref.LN_MAX_DIM
_MULT_LIMIT = 1 << 15                      # sw.quant.MULT_BITS
_SHIFT_MIN, _SHIFT_MAX = 1, 47             # sw.quant.SHIFT_MIN / SHIFT_MAX


class ArtifactError(ValueError):
    """An artifact file is missing, truncated, corrupt, mismatched or of an unknown version."""


@dataclass(frozen=True)
class Artifact:
    """A loaded, validated artifact.

    Attributes
    ----------
    manifest : dict
        The parsed JSON manifest.
    arrays : dict[str, numpy.ndarray]
        Integer tensors by name (``docs/artifact.md`` lists them).
    path : Path
        The ``.npz`` file it was loaded from.
    """

    manifest: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(repr=False)
    path: Path

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    @property
    def scales(self) -> dict[str, float]:
        return self.manifest["scales"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the tensor file: names this exact model."""
        return self.manifest["data_sha256"]

    @property
    def requirements(self) -> dict[str, Any]:
        return self.manifest["requirements"]


# -- paths ---------------------------------------------------------------------------------------

def artifact_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.npz, NAME.json)`` for ``NAME``, ``NAME.npz`` or ``NAME.json``."""
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def default_artifact_path() -> Path:
    """The shipped digits model (package data ``sw/artifacts/digits_int8.npz``)."""
    from importlib import resources
    return Path(str(resources.files("sw") / "artifacts" / "digits_int8.npz"))


# -- schema --------------------------------------------------------------------------------------

def _err(where: object, what: str, todo: str) -> ArtifactError:
    return ArtifactError(f"{where}: {what}; {todo}")


_REEXPORT = "re-export it with `lightformer compile` (or `lightformer train ... --artifact`)"


def _int_field(cfg: Mapping[str, Any], name: str, lo: int, hi: int, where: object) -> int:
    value = cfg.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(where, f"config {name} must be an integer in [{lo}, {hi}], not {value!r}",
                   _REEXPORT)
    return value


def validate_config(cfg: Any, where: object = "artifact") -> dict[str, Any]:
    """Check that a model config (a dict of ``sw.model.ModelConfig`` fields) can run as an
    integer model; returns it. ``ArtifactError`` names the first impossible field."""
    if not isinstance(cfg, dict):
        raise _err(where, f"config must be a JSON object, not {type(cfg).__name__}", _REEXPORT)
    choices = {"task": ("classify", "lm"), "input_kind": ("patches", "tokens"),
               "attention": ("window", "full")}
    for name, allowed in choices.items():
        if cfg.get(name) not in allowed:
            raise _err(where, f"config {name} must be one of {', '.join(allowed)}, not "
                       f"{cfg.get(name)!r}", "the integer model runs only these")
    if not isinstance(cfg.get("causal"), bool):
        raise _err(where, f"config causal must be true or false, not {cfg.get('causal')!r}",
                   _REEXPORT)
    _int_field(cfg, "seq_len", 1, 1 << 16, where)
    d = _int_field(cfg, "d_model", 1, _LN_MAX_DIM, where)
    n_heads = _int_field(cfg, "n_heads", 1, d, where)
    _int_field(cfg, "n_layers", 1, 1024, where)
    _int_field(cfg, "d_ff", 1, 1 << 16, where)
    _int_field(cfg, "n_classes", 1, 1 << 20, where)
    if d % n_heads:
        raise _err(where, f"config n_heads ({n_heads}) must divide d_model ({d})", _REEXPORT)
    if d // n_heads > _ATTN_MAX_HEAD_DIM:
        raise _err(where, f"head_dim {d // n_heads} exceeds {_ATTN_MAX_HEAD_DIM}",
                   "use more heads or a smaller d_model")
    if cfg["input_kind"] == "patches":
        _int_field(cfg, "patch_dim", 1, 1 << 16, where)
    else:
        _int_field(cfg, "vocab_size", 1, 1 << 20, where)
    if cfg["attention"] == "window":
        _int_field(cfg, "window", 1, _ATTN_MAX_SPAN, where)
    if cfg.get("funnel_stride", 1) != 1 or cfg.get("layer_heads") is not None \
            or cfg.get("layer_d_ff") is not None:
        raise _err(where, "config has funnel pooling or pruned per-layer widths (funnel_stride, "
                   "layer_heads, layer_d_ff), which the integer model does not run",
                   "export an unpruned model without funnel pooling")
    span = _attention_span(cfg)
    if span > _ATTN_MAX_SPAN:
        raise _err(where, f"attention needs a window of {span} keys, more than the integer "
                   f"softmax's {_ATTN_MAX_SPAN}", "use windowed attention or a shorter seq_len")
    if cfg["task"] == "lm" and cfg["input_kind"] == "tokens" \
            and cfg["n_classes"] != cfg["vocab_size"]:
        raise _err(where, f"an lm's n_classes ({cfg['n_classes']}) must equal vocab_size "
                   f"({cfg['vocab_size']})", _REEXPORT)
    return cfg


def _attention_span(cfg: Mapping[str, Any]) -> int:
    if cfg["attention"] == "window":
        return int(cfg["window"])
    return int(cfg["seq_len"]) if cfg["causal"] else 2 * int(cfg["seq_len"]) - 1


def expected_arrays(cfg: Mapping[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Every tensor a valid artifact of ``cfg`` holds: ``name -> (dtype, shape)``."""
    d, dff, c = cfg["d_model"], cfg["d_ff"], cfg["n_classes"]
    out: dict[str, tuple[str, tuple[int, ...]]] = {}

    def linear(name: str, k: int, n: int) -> None:
        out[name + ".w"] = ("int8", (k, n))
        out[name + ".b"] = ("int32", (n,))
        out[name + ".mult"] = ("int32", (n,))
        out[name + ".shift"] = ("int32", (n,))

    def layernorm(name: str) -> None:
        out[name + ".gamma"] = ("int8", (d,))
        out[name + ".beta"] = ("int32", (d,))
        out[name + ".mult"] = ("int32", (d,))
        out[name + ".shift"] = ("int32", (d,))
        out[name + ".eps"] = ("int64", ())

    def residual(name: str) -> None:
        out[name + ".mult"] = ("int32", (2,))
        out[name + ".shift"] = ("int32", ())

    if cfg["input_kind"] == "patches":
        linear("embed", cfg["patch_dim"], d)
    else:
        out["embed.table"] = ("int8", (cfg["vocab_size"], d))
    out["pos.table"] = ("int8", (cfg["seq_len"], d))
    residual("pos.add")
    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        layernorm(p + "ln1")
        linear(p + "attn.qkv", d, 3 * d)
        out[p + "attn.quant"] = ("int32", (4,))
        linear(p + "attn.proj", d, d)
        residual(p + "add1")
        layernorm(p + "ln2")
        linear(p + "ffn.fc1", d, dff)
        out[p + "ffn.gelu_lut"] = ("int8", (256,))
        linear(p + "ffn.fc2", dff, d)
        residual(p + "add2")
    layernorm("ln_f")
    if cfg["task"] == "classify":
        out["pool.mult"] = ("int32", ())
        out["pool.shift"] = ("int32", ())
    out["head.w"] = ("int8", (d, c))
    out["head.b"] = ("int32", (c,))
    return out


def _check_ranges(arrays: Mapping[str, np.ndarray], where: object) -> None:
    """Requant constants within the hardware's ranges (``sw.quant``)."""
    for name, arr in arrays.items():
        a = np.asarray(arr, dtype=np.int64)
        if name.endswith(".gelu_lut") or name.endswith((".w", ".b", ".table", ".gamma", ".beta")):
            continue
        if name.endswith(".attn.quant"):
            mults, shifts = a[[0, 2]], a[[1, 3]]
        elif name.endswith(("mult",)):
            mults, shifts = a, None
        elif name.endswith(("shift",)):
            mults, shifts = None, a
        elif name.endswith(".eps"):
            if np.any(a < 0) or np.any(a >= (1 << 61)):
                raise _err(where, f"tensor {name!r} = {a} is outside [0, 2**61)", _REEXPORT)
            continue
        else:
            continue
        if mults is not None and (np.any(mults < 0) or np.any(mults >= _MULT_LIMIT)):
            raise _err(where, f"tensor {name!r} holds a multiplier outside [0, 2**15)",
                       "the file is corrupt or was written by another tool; " + _REEXPORT)
        if shifts is not None and (np.any(shifts < _SHIFT_MIN) or np.any(shifts > _SHIFT_MAX)):
            raise _err(where, f"tensor {name!r} holds a shift outside [{_SHIFT_MIN}, "
                       f"{_SHIFT_MAX}]", "the file is corrupt or was written by another tool; "
                       + _REEXPORT)


# -- requirements --------------------------------------------------------------------------------

def requirements(cfg: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """What an accelerator needs to hold and run this model, and which presets can.

    ``window``/``causal``: the attention span (full attention = a window covering the
    sequence); ``head_dim``; ``k_depth``: the longest GEMM reduction; ``weight_bytes``: all
    tensors; ``act_bytes``: the widest activation of one sample; ``lut_count``: GELU tables.
    """
    from hw.params import PRESETS  # plain dataclasses; never imports amaranth

    d, seq_len = cfg["d_model"], cfg["seq_len"]
    k_depth = max([d, cfg["d_ff"]] + ([cfg["patch_dim"]] if cfg["input_kind"] == "patches"
                                      else []))
    need = {
        "window": _attention_span(cfg),
        "causal": bool(cfg["causal"]),
        "head_dim": d // cfg["n_heads"],
        "k_depth": int(k_depth),
        "weight_bytes": int(sum(np.asarray(a).nbytes for a in arrays.values())),
        "act_bytes": int(seq_len * max(3 * d, cfg["d_ff"])),
        "lut_count": int(cfg["n_layers"]),
    }
    fits = []
    for name, p in PRESETS.items():
        # a causal model needs a causal unit; a centred window needs a centred one (full
        # attention with window >= T is causal-full on a causal unit).
        if (p.window >= need["window"] and p.head_dim >= need["head_dim"]
                and p.attn_causal == need["causal"] and p.k_depth >= need["k_depth"]
                and p.wgt_depth >= need["weight_bytes"] and p.act_depth >= need["act_bytes"]
                and p.lut_count >= need["lut_count"]):
            fits.append(name)
    need["fits_presets"] = fits
    return need


# -- save ----------------------------------------------------------------------------------------

def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as f:
                np.lib.format.write_array(f, np.asarray(arrays[name], order="C"),
                                          allow_pickle=False)
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)                     # mkstemp makes 0600; be a normal file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_artifact(path: str | os.PathLike[str], *, config: Mapping[str, Any],
                  arrays: Mapping[str, np.ndarray], scales: Mapping[str, float],
                  info: Mapping[str, Any]) -> Path:
    """Validate and write ``NAME.npz`` + ``NAME.json`` atomically; returns the ``.npz`` path.

    ``info`` adds free manifest fields (task, method, accuracy_fp32, creation info, ...). Each
    file is written to a temporary name in the same folder and renamed into place, the tensors
    first: a reader never sees a half-written file, and a manifest always describes the tensor
    file it names (a crash between the two renames leaves a checksum mismatch, never a silent
    mix).
    """
    npz_path, json_path = artifact_paths(path)
    cfg = validate_config(dict(config), npz_path)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _check_schema(arrays, cfg, npz_path)
    _check_ranges(arrays, npz_path)
    for name, s in scales.items():
        if not isinstance(s, float) or not math.isfinite(s) or s <= 0:
            raise ValueError(f"scale {name!r} must be a positive finite float, not {s!r}")
    blob = _npz_bytes(arrays)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **{k: v for k, v in info.items() if k not in ("format", "format_version")},
        "config": cfg,
        "scales": dict(scales),
        "requirements": requirements(cfg, arrays),
        "data_file": npz_path.name,
        "data_bytes": len(blob),
        "data_sha256": _sha256(blob),
        "arrays": {name: {"dtype": arrays[name].dtype.name, "shape": list(arrays[name].shape),
                          "sha256": _sha256(arrays[name].tobytes(order="C"))}
                   for name in sorted(arrays)},
    }
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(npz_path, blob)
    _atomic_write(json_path, (json.dumps(manifest, indent=1, sort_keys=False) + "\n").encode())
    return npz_path


# -- load ----------------------------------------------------------------------------------------

def _check_schema(arrays: Mapping[str, np.ndarray], cfg: Mapping[str, Any], where: object) -> None:
    want = expected_arrays(cfg)
    missing = sorted(set(want) - set(arrays))
    extra = sorted(set(arrays) - set(want))
    if missing:
        raise _err(where, f"tensor {missing[0]!r} is missing ({len(missing)} missing in all) for "
                   "the config in the manifest", "the tensors and manifest do not belong "
                   "together; " + _REEXPORT)
    if extra:
        raise _err(where, f"unexpected tensor {extra[0]!r} for the config in the manifest",
                   "the tensors and manifest do not belong together; " + _REEXPORT)
    for name, (dtype, shape) in want.items():
        a = arrays[name]
        if a.dtype.name != dtype or tuple(a.shape) != shape:
            raise _err(where, f"tensor {name!r} is {a.dtype.name} {tuple(a.shape)} but the "
                       f"config needs {dtype} {shape}", "the tensors and manifest do not "
                       "belong together; " + _REEXPORT)


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Load and validate an artifact (``NAME``, ``NAME.npz`` or ``NAME.json``).

    Raises :class:`ArtifactError` with one message for: a missing file, a manifest that is not
    JSON or not this format, an unknown format version, an impossible config, a truncated or
    corrupt tensor file (size / SHA-256), tensors that do not match the manifest or the config
    (missing, extra, dtype, shape, checksum), and requant constants out of range.
    """
    npz_path, json_path = artifact_paths(path)
    for p in (json_path, npz_path):
        if not p.is_file():
            raise _err(p, "file not found", "an artifact is NAME.npz plus NAME.json side by "
                       "side; check the path or " + _REEXPORT)
    try:
        manifest = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _err(json_path, f"manifest is not valid JSON ({exc}); the file is truncated or "
                   "corrupt", _REEXPORT) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise _err(json_path, f"not a {FORMAT} manifest (format {got!r})",
                   "pass the .json written next to a lightformer .npz artifact")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise _err(json_path, f"unsupported format version {version!r} (this lightformer reads "
                   f"version {FORMAT_VERSION})", "use the lightformer release that wrote it, "
                   "or " + _REEXPORT)
    for key in ("config", "scales", "arrays", "data_bytes", "data_sha256", "requirements"):
        if key not in manifest:
            raise _err(json_path, f"manifest lacks the field {key!r}", _REEXPORT)
    cfg = validate_config(manifest["config"], json_path)
    blob = npz_path.read_bytes()
    if len(blob) != manifest["data_bytes"]:
        kind = "truncated" if len(blob) < manifest["data_bytes"] else "longer than recorded"
        raise _err(npz_path, f"tensor file is {kind}: {len(blob)} bytes, the manifest says "
                   f"{manifest['data_bytes']}", "the copy is incomplete or the files do not "
                   "belong together; copy it again or " + _REEXPORT)
    if _sha256(blob) != manifest["data_sha256"]:
        raise _err(npz_path, "tensor file checksum (SHA-256) does not match the manifest: the "
                   "file is corrupt or was modified", "copy it again or " + _REEXPORT)
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _err(npz_path, f"tensor file cannot be read ({exc})", _REEXPORT) from None
    recorded = manifest["arrays"]
    if not isinstance(recorded, dict) or set(recorded) != set(arrays):
        diff = sorted(set(recorded) ^ set(arrays)) if isinstance(recorded, dict) else ["?"]
        raise _err(npz_path, f"tensor names differ from the manifest (first: {diff[0]!r})",
                   "the tensors and manifest do not belong together; " + _REEXPORT)
    for name, a in arrays.items():
        rec = recorded[name]
        if rec.get("dtype") != a.dtype.name or list(a.shape) != rec.get("shape"):
            raise _err(npz_path, f"tensor {name!r} is {a.dtype.name} {list(a.shape)} but the "
                       f"manifest says {rec.get('dtype')} {rec.get('shape')}",
                       "the tensors and manifest do not belong together; " + _REEXPORT)
        if _sha256(a.tobytes(order="C")) != rec.get("sha256"):
            raise _err(npz_path, f"tensor {name!r} checksum does not match the manifest",
                       "copy it again or " + _REEXPORT)
    _check_schema(arrays, cfg, npz_path)
    _check_ranges(arrays, npz_path)
    scales = manifest["scales"]
    if not isinstance(scales, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
            for v in scales.values()):
        raise _err(json_path, "manifest scales must be positive finite numbers", _REEXPORT)
    if cfg["input_kind"] == "patches" and "input" not in scales:
        raise _err(json_path, "manifest lacks the input scale (scales.input)", _REEXPORT)
    return Artifact(manifest=manifest, arrays=arrays, path=npz_path)
