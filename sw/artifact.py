# SPDX-License-Identifier: Apache-2.0
"""The versioned int8 model artifact: save (atomic) and load (validated). NumPy + stdlib +
``safetensors`` only; never torch.

An artifact is one file, ``NAME.safetensors`` (``docs/artifact.md``): the integer tensors, and in
the file's metadata the manifest (JSON: format version, model config, scales, requirements,
checksums). One file means one atomic write and nothing that can be copied half.

``load_artifact`` checks everything before anything runs: the container's header and sizes, the
format and its version, the type of every manifest field, the ``model_id`` (a SHA-256 over every
manifest field that changes a result, so an edited manifest is refused), the config, every
tensor's name, dtype, shape and SHA-256 against the manifest *and* against the shapes the config
implies, and the range of every requant constant. Each failure raises one :class:`ArtifactError`
saying what is wrong, where, and what to do.

The two-file layout of format version 1 (``NAME.npz`` + ``NAME.json``) is still read, with a
``DeprecationWarning``, until the next release; ``python -m sw.artifact convert NAME`` rewrites
it as ``NAME.safetensors`` with the same tensors and manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.numpy

from hw.numerics import (
    ATTN_MAX_HEAD_DIM,
    LN_MAX_DIM,
    MULT_BITS,
    MULT_LIMIT,
    SHIFT_MAX,
    SHIFT_MIN,
    SOFTMAX_MAX_WINDOW,
    WEIGHT_MAX,
    WEIGHT_MIN,
)
from sw.report import atomic_write_bytes, check_output_path

__all__ = [
    "FORMAT", "FORMAT_VERSION", "SHIPPED_ARTIFACTS", "SUFFIX", "Artifact", "ArtifactError",
    "artifact_file", "artifact_path_type", "convert_artifact", "default_artifact_path",
    "expected_arrays", "load_artifact", "model_id", "requirements", "save_artifact",
    "shipped_artifact_path", "tensors_sha256", "validate_config",
]

FORMAT = "lightformer-int8"
#: 2: one ``.safetensors`` file. 1: ``NAME.npz`` + ``NAME.json`` (read with a deprecation warning).
FORMAT_VERSION = 2
SUFFIX = ".safetensors"
_LEGACY_VERSION = 1
_LEGACY_SUFFIXES = (".npz", ".json")
# The manifest is the one entry of the safetensors metadata: the library stores the metadata as a
# hash map, so with more than one key the header's order (and the file's bytes) would vary.
_META_KEY = FORMAT
_HEADER_MAX = 64 << 20                     # a manifest is kilobytes; refuse absurd headers unread
#: Manifest fields that describe the export but change no result; ``model_id`` leaves them out,
#: and ``requirements.fits_presets``, which follows the presets of the release that wrote it.
INFORMATIONAL = ("created", "model_id")
_HEX64 = frozenset("0123456789abcdef")
_CONVERT = "python -m sw.artifact convert"


class ArtifactError(ValueError):
    """An artifact file is missing, truncated, corrupt, mismatched or of an unknown version."""


@dataclass(frozen=True)
class Artifact:
    """A loaded, validated artifact.

    Attributes
    ----------
    manifest : dict
        The parsed JSON manifest (format version 2 fields; a version-1 pair is upgraded).
    arrays : dict[str, numpy.ndarray]
        Integer tensors by name (``docs/artifact.md`` lists them).
    path : Path
        The file it was loaded from (``NAME.safetensors``; ``NAME.npz`` for a version-1 pair).
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
        """SHA-256 (hex) of the tensors (:func:`tensors_sha256`): names these exact weights."""
        return self.manifest["tensors_sha256"]

    @property
    def model_id(self) -> str:
        """SHA-256 (hex) of the manifest less :data:`INFORMATIONAL` (:func:`model_id`): names
        this model, its config, scales, task and tensors."""
        return self.manifest["model_id"]

    @property
    def requirements(self) -> dict[str, Any]:
        return self.manifest["requirements"]


# -- paths ---------------------------------------------------------------------------------------

def artifact_file(path: str | os.PathLike[str]) -> Path:
    """The file an artifact ``path`` names: ``NAME.safetensors`` for ``NAME``,
    ``NAME.safetensors``, ``NAME.npz`` or ``NAME.json``."""
    p = Path(path)
    if p.suffix in _LEGACY_SUFFIXES:
        p = p.with_suffix("")
    return p if p.name.endswith(SUFFIX) else p.with_name(p.name + SUFFIX)


def artifact_path_type(text: str) -> Path:
    """argparse ``type=`` for an artifact to write: :func:`artifact_file`, checked writable."""
    try:
        if not text.strip():
            raise ValueError("artifact path must name a file (NAME or NAME.safetensors), not an "
                             "empty string")
        if Path(text).is_dir():
            raise ValueError(f"artifact path must name a file (e.g. {text.rstrip('/')}/model), "
                             f"not the folder {text!r}")
        return check_output_path(artifact_file(text), option="artifact path")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The models shipped as package data in ``sw/artifacts``, in order of preference: the digits
#: model, and a smaller digits model for presets that cannot hold it (the iCEBreaker's).
SHIPPED_ARTIFACTS = ("digits_int8", "digits_ice40_int8")


def shipped_artifact_path(name: str = SHIPPED_ARTIFACTS[0]) -> Path:
    """Path of a shipped model (package data ``sw/artifacts/NAME.safetensors``)."""
    from importlib import resources

    if name not in SHIPPED_ARTIFACTS:
        raise ValueError(f"no shipped artifact is named {name!r}; the shipped ones are "
                         f"{', '.join(SHIPPED_ARTIFACTS)}")
    return Path(str(resources.files("sw") / "artifacts" / (name + SUFFIX)))


def default_artifact_path() -> Path:
    """The shipped digits model (package data ``sw/artifacts/digits_int8.safetensors``)."""
    return shipped_artifact_path()


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
    d = _int_field(cfg, "d_model", 1, LN_MAX_DIM, where)
    n_heads = _int_field(cfg, "n_heads", 1, d, where)
    _int_field(cfg, "n_layers", 1, 1024, where)
    _int_field(cfg, "d_ff", 1, 1 << 16, where)
    _int_field(cfg, "n_classes", 1, 1 << 20, where)
    if d % n_heads:
        raise _err(where, f"config n_heads ({n_heads}) must divide d_model ({d})", _REEXPORT)
    if d // n_heads > ATTN_MAX_HEAD_DIM:
        raise _err(where, f"head_dim {d // n_heads} exceeds {ATTN_MAX_HEAD_DIM}",
                   "use more heads or a smaller d_model")
    if cfg["input_kind"] == "patches":
        _int_field(cfg, "patch_dim", 1, 1 << 16, where)
    else:
        _int_field(cfg, "vocab_size", 1, 1 << 20, where)
    if cfg["attention"] == "window":
        _int_field(cfg, "window", 1, SOFTMAX_MAX_WINDOW, where)
    if cfg.get("funnel_stride", 1) != 1 or cfg.get("layer_heads") is not None \
            or cfg.get("layer_d_ff") is not None:
        raise _err(where, "config has funnel pooling or pruned per-layer widths (funnel_stride, "
                   "layer_heads, layer_d_ff), which the integer model does not run",
                   "export an unpruned model without funnel pooling")
    span = _attention_span(cfg)
    if span > SOFTMAX_MAX_WINDOW:
        raise _err(where, f"attention needs a window of {span} keys, more than the integer "
                   f"softmax's {SOFTMAX_MAX_WINDOW}", "use windowed attention or a shorter seq_len")
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
        if name.endswith((".w", ".table", ".gamma")):
            if a.size and int(a.min()) < WEIGHT_MIN:
                raise _err(where, f"tensor {name!r} holds {int(a.min())}, outside the weights' "
                           f"[{WEIGHT_MIN}, {WEIGHT_MAX}]", "the file is corrupt or was written "
                           "by another tool; " + _REEXPORT)
            continue
        if name.endswith((".gelu_lut", ".b", ".beta")):
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
        if mults is not None and (np.any(mults < 0) or np.any(mults >= MULT_LIMIT)):
            raise _err(where, f"tensor {name!r} holds a multiplier outside [0, 2**{MULT_BITS})",
                       "the file is corrupt or was written by another tool; " + _REEXPORT)
        if shifts is not None and (np.any(shifts < SHIFT_MIN) or np.any(shifts > SHIFT_MAX)):
            raise _err(where, f"tensor {name!r} holds a shift outside [{SHIFT_MIN}, "
                       f"{SHIFT_MAX}]", "the file is corrupt or was written by another tool; "
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
        # The attention unit takes causal or centred per ATTN instruction, so ``causal`` does
        # not constrain the preset. A quick screen only: the compiler (``lightformer compile
        # --preset``) is the authority, and streams weights that do not fit resident.
        if (p.window >= need["window"] and p.head_dim >= need["head_dim"]
                and p.k_depth >= need["k_depth"]
                and p.wgt_depth >= need["weight_bytes"] and p.act_depth >= need["act_bytes"]
                and p.lut_count >= need["lut_count"]):
            fits.append(name)
    need["fits_presets"] = fits
    return need


# -- save ----------------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 (hex) of the tensors: for each name in sorted order, the JSON line
    ``[name, dtype, shape, nbytes]`` and then the C-order bytes. Independent of the container,
    so the same weights get the same digest in any file (the artifact's :attr:`Artifact.digest`)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name], order="C")
        h.update((json.dumps([name, a.dtype.name, list(a.shape), a.nbytes]) + "\n").encode())
        h.update(a.tobytes(order="C"))
    return h.hexdigest()


def model_id(manifest: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of every manifest field except :data:`INFORMATIONAL`, as canonical JSON
    (sorted keys, no spaces). It covers the config, the scales, the task and its seed, the
    recorded accuracies and ``tensors_sha256``: any edit to them changes it."""
    core = {k: v for k, v in manifest.items() if k not in INFORMATIONAL}
    if isinstance(core.get("requirements"), dict):
        core["requirements"] = {k: v for k, v in core["requirements"].items()
                                if k != "fits_presets"}
    text = json.dumps(core, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(f"{FORMAT} model_id\n{text}".encode()).hexdigest()


def _array_records(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    return {name: {"dtype": arrays[name].dtype.name, "shape": list(arrays[name].shape),
                   "sha256": _sha256(np.asarray(arrays[name], order="C").tobytes())}
            for name in sorted(arrays)}


def _write(path: Path, manifest: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    blob = safetensors.numpy.save(
        {k: np.asarray(arrays[k], order="C") for k in sorted(arrays)},
        metadata={_META_KEY: json.dumps(manifest, indent=1)})
    return atomic_write_bytes(path, blob)


def save_artifact(path: str | os.PathLike[str], *, config: Mapping[str, Any],
                  arrays: Mapping[str, np.ndarray], scales: Mapping[str, float],
                  info: Mapping[str, Any]) -> Path:
    """Validate and write ``NAME.safetensors`` atomically; returns its path.

    ``path`` is ``NAME`` or ``NAME.safetensors``. ``info`` adds free manifest fields (task,
    method, accuracy_fp32, creation info, ...). The file is written to a temporary name in the
    same folder and renamed into place: a reader sees the old artifact or the new one, never a
    mix, and a failed save leaves the old file as it was.
    """
    out = artifact_file(path)
    cfg = validate_config(dict(config), out)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    _check_schema(arrays, cfg, out)
    _check_ranges(arrays, out)
    for name, s in scales.items():
        if not isinstance(s, float) or not math.isfinite(s) or s <= 0:
            raise ValueError(f"scale {name!r} must be a positive finite float, not {s!r}")
    reserved = ("format", "format_version", "tensors_sha256", "arrays", "model_id")
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **{k: v for k, v in info.items() if k not in reserved},
        "config": cfg,
        "scales": dict(scales),
        "requirements": requirements(cfg, arrays),
        "tensors_sha256": tensors_sha256(arrays),
        "arrays": _array_records(arrays),
    }
    _check_fields(manifest, out)
    manifest["model_id"] = model_id(manifest)
    return _write(out, manifest, arrays)


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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json(text: str | bytes, where: object, what: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)   # NaN / Infinity are not JSON
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise _err(where, f"{what} is not valid JSON ({reason}); the file is truncated or "
                   "corrupt", _REEXPORT) from None


def _check_manifest(manifest: Any, where: object, version: int) -> dict[str, Any]:
    """Format, version and required fields; returns the validated config."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else manifest
        raise _err(where, f"not a {FORMAT} manifest (format {got!r})",
                   "pass an artifact written by `lightformer compile`")
    if manifest.get("format_version") != version:
        raise _err(where, f"unsupported format version {manifest.get('format_version')!r} (this "
                   f"lightformer reads version {FORMAT_VERSION}, and {_LEGACY_VERSION} as "
                   "NAME.npz + NAME.json)", "use the lightformer release that wrote it, or "
                   + _REEXPORT)
    fields = ("config", "scales", "arrays", "requirements") + (
        ("tensors_sha256", "model_id") if version == FORMAT_VERSION
        else ("data_bytes", "data_sha256"))
    for key in fields:
        if key not in manifest:
            raise _err(where, f"manifest lacks the field {key!r}", _REEXPORT)
    if version == FORMAT_VERSION:
        _check_fields(manifest, where)
        recorded, computed = manifest.get("model_id"), model_id(manifest)
        if recorded != computed:
            raise _err(where, f"the manifest does not match its model_id (recorded "
                       f"{str(recorded)[:12]}, contents {computed[:12]}): a field that changes "
                       "results (config, scales, task, task_seed, accuracies, tensors_sha256) was "
                       "edited after export", "restore the original file or " + _REEXPORT)
    return validate_config(manifest["config"], where)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _natural(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


#: Type of each manifest field (required ones are checked present first), and what it must be.
_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "task": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "task_seed": (_natural, "an integer >= 0"),
    "method": (lambda v: v in ("ptq", "qat"), '"ptq" or "qat"'),
    "calibration": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "calibration_samples": (_natural, "an integer >= 0"),
    "accuracy_fp32": (lambda v: v is None or (_number(v) and 0 <= v <= 1),
                      "a number in [0, 1] or null"),
    "accuracy_int8": (lambda v: v is None or (_number(v) and 0 <= v <= 1),
                      "a number in [0, 1] or null"),
    "eval_samples": (lambda v: v is None or _natural(v), "an integer >= 0 or null"),
    "eval_split": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "created": (lambda v: isinstance(v, dict), "an object"),
    "config": (lambda v: isinstance(v, dict), "an object"),
    "scales": (lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and _number(s) and s > 0 for k, s in v.items()),
        "an object of positive finite numbers"),
    "requirements": (lambda v: isinstance(v, dict), "an object"),
    "arrays": (lambda v: isinstance(v, dict) and all(isinstance(r, dict) for r in v.values()),
               "an object mapping tensor names to records"),
    "tensors_sha256": (lambda v: isinstance(v, str) and len(v) == 64 and set(v) <= _HEX64,
                       "64 lower-case hex digits"),
    "model_id": (lambda v: isinstance(v, str) and len(v) == 64 and set(v) <= _HEX64,
                 "64 lower-case hex digits"),
}


def _check_fields(manifest: Mapping[str, Any], where: object) -> None:
    """Every known manifest field that is present has its type (unknown fields are free)."""
    for key, (ok, what) in _FIELD_TYPES.items():
        if key in manifest and not ok(manifest[key]):
            raise _err(where, f"manifest field {key!r} must be {what}, not "
                       f"{_short(manifest[key])}", _REEXPORT)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_arrays(arrays: dict[str, np.ndarray], manifest: Mapping[str, Any],
                  cfg: Mapping[str, Any], where: object) -> None:
    """Tensors against the manifest's records and digest, the config's schema and the ranges."""
    recorded = manifest["arrays"]
    if set(recorded) != set(arrays):
        diff = sorted(set(recorded) ^ set(arrays))
        raise _err(where, f"tensor names differ from the manifest (first: {diff[0]!r})",
                   "the tensors and manifest do not belong together; " + _REEXPORT)
    for name, a in arrays.items():
        rec = recorded[name]
        if rec.get("dtype") != a.dtype.name or list(a.shape) != rec.get("shape"):
            raise _err(where, f"tensor {name!r} is {a.dtype.name} {list(a.shape)} but the "
                       f"manifest says {rec.get('dtype')} {rec.get('shape')}",
                       "the tensors and manifest do not belong together; " + _REEXPORT)
        if _sha256(np.asarray(a, order="C").tobytes()) != rec.get("sha256"):
            raise _err(where, f"tensor {name!r} checksum (SHA-256) does not match the manifest: "
                       "the file is corrupt or was modified", "copy it again or " + _REEXPORT)
    if tensors_sha256(arrays) != manifest["tensors_sha256"]:
        raise _err(where, "tensors_sha256 does not match the tensors: the file is corrupt or was "
                   "modified", "copy it again or " + _REEXPORT)
    _check_schema(arrays, cfg, where)
    _check_ranges(arrays, where)
    if cfg["input_kind"] == "patches" and "input" not in manifest["scales"]:
        raise _err(where, "manifest lacks the input scale (scales.input)", _REEXPORT)


def _read_container(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Manifest and tensors of a ``.safetensors`` artifact; sizes are checked before the data is
    read."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or n > min(size - 8, _HEADER_MAX):
            raise _err(path, f"not a safetensors file, or truncated ({size} bytes; header length "
                       f"field {n})", "copy it again or " + _REEXPORT)
        header = _json(f.read(n), path, "the safetensors header")
        meta = header.get("__metadata__") if isinstance(header, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get(_META_KEY), str):
            raise _err(path, f"not a {FORMAT} artifact (the safetensors metadata holds no "
                       f"{_META_KEY!r} manifest)", "pass an artifact written by "
                       "`lightformer compile`")
        manifest = _json(meta[_META_KEY], path, "the manifest")
        cfg = _check_manifest(manifest, path, FORMAT_VERSION)
        try:
            end = max([int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"], default=0)
        except (TypeError, KeyError, IndexError, ValueError):
            raise _err(path, "the safetensors header is damaged (tensor offsets)",
                       "copy it again or " + _REEXPORT) from None
        if end != size - 8 - n:
            kind = "truncated" if end > size - 8 - n else "longer than its header says"
            raise _err(path, f"file is {kind}: {size - 8 - n} bytes of tensor data, the header "
                       f"says {end}", "the copy is incomplete; copy it again or " + _REEXPORT)
        f.seek(0)
        blob = f.read()
    try:
        arrays = safetensors.numpy.load(blob)
    except Exception as exc:  # safetensors raises its own SafetensorError for every defect
        raise _err(path, f"tensor data cannot be read ({exc})", _REEXPORT) from None
    _check_arrays(arrays, manifest, cfg, path)
    return manifest, arrays


def _read_legacy(npz_path: Path, json_path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A format-version-1 pair, checked as before, with its manifest upgraded to version 2."""
    for p in (json_path, npz_path):
        if not p.is_file():
            raise _err(p, "file not found", f"a version-{_LEGACY_VERSION} artifact is NAME.npz "
                       "plus NAME.json side by side; check the path or " + _REEXPORT)
    manifest = _json(json_path.read_bytes(), json_path, "the manifest")
    cfg = _check_manifest(manifest, json_path, _LEGACY_VERSION)
    if not _natural(manifest["data_bytes"]) or not _FIELD_TYPES["tensors_sha256"][0](
            manifest["data_sha256"]):
        raise _err(json_path, "manifest fields 'data_bytes' and 'data_sha256' must be an integer "
                   ">= 0 and 64 hex digits", _REEXPORT)
    size = npz_path.stat().st_size
    if size != manifest["data_bytes"]:
        kind = "truncated" if size < manifest["data_bytes"] else "longer than recorded"
        raise _err(npz_path, f"tensor file is {kind}: {size} bytes, the manifest says "
                   f"{manifest['data_bytes']}", "the copy is incomplete or the files do not "
                   "belong together; copy it again or " + _REEXPORT)
    blob = npz_path.read_bytes()
    if _sha256(blob) != manifest["data_sha256"]:
        raise _err(npz_path, "tensor file checksum (SHA-256) does not match the manifest: the "
                   "file is corrupt or was modified", "copy it again or " + _REEXPORT)
    try:
        _check_npz_sizes(blob, npz_path)
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _err(npz_path, f"tensor file cannot be read ({exc})", _REEXPORT) from None
    upgraded = {k: v for k, v in manifest.items()
                if k not in ("data_file", "data_bytes", "data_sha256", "arrays")}
    upgraded["format_version"] = FORMAT_VERSION
    upgraded["tensors_sha256"] = tensors_sha256(arrays)
    upgraded["arrays"] = manifest["arrays"]
    _check_fields(upgraded, json_path)
    # A version-1 manifest carries no model_id (nothing guards its fields): it gets one here.
    upgraded["model_id"] = model_id(upgraded)
    _check_arrays(arrays, upgraded, cfg, npz_path)
    return upgraded, arrays


def _check_npz_sizes(blob: bytes, where: Path) -> None:
    """Every ``.npy`` member's header against the member's size, before any array is read: a
    header that claims a huge shape would otherwise make NumPy allocate it."""
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        for info in z.infolist():
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                claimed = f.tell() + math.prod(shape) * dtype.itemsize
            if claimed != info.file_size:
                raise _err(where, f"tensor {info.filename!r} claims {claimed} bytes but holds "
                           f"{info.file_size}", "the file is corrupt; copy it again or "
                           + _REEXPORT)


def _pair(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(NAME.npz, NAME.json)`` for ``NAME``, ``NAME.npz`` or ``NAME.json``."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in _LEGACY_SUFFIXES else p
    return stem.with_name(stem.name + ".npz"), stem.with_name(stem.name + ".json")


def _legacy_pair(path: str | os.PathLike[str]) -> tuple[Path, Path] | None:
    """The version-1 pair that ``path`` names, or ``None`` for a ``.safetensors`` artifact
    (which ``NAME`` means when both exist)."""
    p = Path(path)
    if p.suffix in _LEGACY_SUFFIXES:
        return _pair(p)
    if p.name.endswith(SUFFIX) or artifact_file(p).exists() or p.is_file():
        return None
    pair = _pair(p)
    return pair if any(q.exists() for q in pair) else None


def load_artifact(path: str | os.PathLike[str]) -> Artifact:
    """Load and validate an artifact: ``NAME`` or ``NAME.safetensors`` (a version-1 pair
    ``NAME.npz`` / ``NAME.json`` is read with a ``DeprecationWarning``).

    Raises :class:`ArtifactError` with one message for: a missing file, a file that is not a
    safetensors container or is truncated, a manifest that is not JSON or not this format, an
    unknown format version, an impossible config, tensors that do not match the manifest or the
    config (missing, extra, dtype, shape, checksum), and requant constants out of range.
    """
    if not os.fspath(path).strip():
        raise ArtifactError("artifact path must name a file, not an empty string; pass NAME or "
                            "NAME.safetensors")
    if Path(path).is_dir():
        raise _err(path, "is a folder, not an artifact", "pass NAME or NAME.safetensors of the "
                   "file inside it")
    legacy = _legacy_pair(path)
    if legacy is not None:
        manifest, arrays = _read_legacy(*legacy)
        name = legacy[0].with_suffix("")
        warnings.warn(f"{legacy[0]}: the two-file artifact (NAME.npz + NAME.json, format version "
                      f"{_LEGACY_VERSION}) is deprecated and the next release will not read it; "
                      f"convert it with `{_CONVERT} {name}`", DeprecationWarning, stacklevel=2)
        return Artifact(manifest=manifest, arrays=arrays, path=legacy[0])
    p = Path(path)
    file = p if p.is_file() else artifact_file(p)
    if not file.is_file():
        raise _err(file, "file not found", "an artifact is one NAME.safetensors file; check the "
                   "path or " + _REEXPORT)
    manifest, arrays = _read_container(file)
    return Artifact(manifest=manifest, arrays=arrays, path=file)


# -- conversion of version-1 pairs ---------------------------------------------------------------

def convert_artifact(old: str | os.PathLike[str],
                     new: str | os.PathLike[str] | None = None) -> Path:
    """Rewrite a version-1 pair ``OLD.npz`` + ``OLD.json`` as one ``NEW.safetensors`` (default:
    ``OLD.safetensors``) with the same tensors and manifest; returns the new path. The pair is
    validated first and left in place; the new file is checked by loading it back."""
    pair = _pair(old)
    if not any(q.exists() for q in pair):
        raise _err(old, "not a version-1 artifact (no NAME.npz or NAME.json)",
                   "pass the NAME of the .npz/.json pair")
    manifest, arrays = _read_legacy(*pair)
    out = artifact_file(pair[0] if new is None else new)
    _write(out, manifest, arrays)
    back = load_artifact(out)
    if back.digest != manifest["tensors_sha256"]:          # pragma: no cover - a library fault
        raise ArtifactError(f"{out}: the converted tensors differ from {pair[0]}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sw.artifact convert OLD [NEW]``."""
    parser = argparse.ArgumentParser(
        prog="python -m sw.artifact",
        description="Convert a version-1 artifact (NAME.npz + NAME.json) into one "
                    "NAME.safetensors file with the same tensors and manifest.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    conv = sub.add_parser("convert", help="rewrite OLD.npz + OLD.json as NEW.safetensors")
    conv.add_argument("old", help="the version-1 artifact: NAME, NAME.npz or NAME.json")
    conv.add_argument("new", nargs="?", type=artifact_path_type, default=None,
                      help="the file to write (default: OLD.safetensors beside the pair)")
    args = parser.parse_args(argv)
    try:
        out = convert_artifact(args.old, args.new)
    except ArtifactError as exc:
        print(f"python -m sw.artifact convert: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
