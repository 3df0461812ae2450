# SPDX-License-Identifier: Apache-2.0
"""Quantization: a trained :class:`sw.model.LightTransformer` -> one versioned int8 artifact.

Post-training quantization (PTQ) calibrates the activation ranges on a few batches
(``sw.qat.calibrate``); quantization-aware training (QAT, ``sw.qat.prepare_qat``) fine-tunes with
fake quantization and a straight-through estimator at exactly the points where the integer model
(``sw.ref``) rounds. Both end in :func:`export_artifact`, which writes the artifact of
``sw.artifact`` (int8 weights, int32 biases, ``(mult, shift)`` pairs, GELU LUTs, softmax and
LayerNorm constants, manifest). Also the ``lightformer compile`` command.

The quantization points (one per-tensor int8 scale each; ``docs/numerics.md``)::

    input -> embed (+ pos) -> x0
    per block i:  ln1 -> q, k, v -> attn -> proj -> (x + proj) x1
                  ln2 -> fc1 -> gelu -> fc2 -> (x1 + fc2) x2
    ln_f -> pool (classify: mean over tokens) -> head (int32 logits)

Weights are int8 per output channel (the head per tensor, so that int32 logits of all classes
share one scale and their argmax is exact). torch is imported inside functions only: importing
this module is cheap (``lightformer --help``).
"""

from __future__ import annotations

import argparse
import datetime
import platform
from pathlib import Path
from typing import Any

import numpy as np

from sw import quant
from sw.qat import as_model_input, calibrate, check_exportable
from sw.report import UsageError, atomic_write_bytes

__all__ = ["add_arguments", "build_arrays", "export_artifact", "export_onnx_linears", "run"]

# -- export ---------------------------------------------------------------------------------------

def _np(t) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def _linear_arrays(lin, s_in: float, s_out: np.ndarray | float) -> dict[str, np.ndarray]:
    """int8 (K, N) weights per output channel, int32 bias, per-channel (mult, shift)."""
    w = _np(lin.weight).T                                                    # (K, N) float64
    w_q, s_w = quant.quantize_weight_per_channel(w, axis=-1)
    b = _np(lin.bias) if lin.bias is not None else np.zeros(w.shape[1])
    s_out = np.broadcast_to(np.asarray(s_out, dtype=np.float64), s_w.shape)
    pairs = [quant.quantize_multiplier(s_in * sw / so) for sw, so in zip(s_w, s_out)]
    return {"w": w_q, "b": quant.quantize_bias(b, s_in, s_w),
            "mult": np.array([p[0] for p in pairs], dtype=np.int32),
            "shift": np.array([p[1] for p in pairs], dtype=np.int32)}


def _layernorm_arrays(mod, s_in: float, s_out: float) -> dict[str, np.ndarray]:
    from sw.ref import LN_FRAC_BITS, layernorm_eps_q

    d = mod.normalized_shape[0]
    gamma = _np(mod.weight) if mod.weight is not None else np.ones(d)
    beta = _np(mod.bias) if mod.bias is not None else np.zeros(d)
    g_q, s_g = quant.quantize_weight_per_channel(gamma[None, :], axis=-1)     # (1, d), (d,)
    s_acc = s_g * 2.0 ** -LN_FRAC_BITS                                       # (d,) acc scale
    beta_q = np.clip(np.round(beta / s_acc), -(1 << 24), 1 << 24).astype(np.int32)
    pairs = [quant.quantize_multiplier(s / s_out) for s in s_acc]
    return {"gamma": g_q[0], "beta": beta_q,
            "mult": np.array([p[0] for p in pairs], dtype=np.int32),
            "shift": np.array([p[1] for p in pairs], dtype=np.int32),
            "eps": np.array(layernorm_eps_q(d, mod.eps, s_in), dtype=np.int64)}


def _table_q(t: np.ndarray) -> tuple[np.ndarray, float]:
    amax = float(np.max(np.abs(t))) if t.size else 0.0
    s = amax / quant.WEIGHT_MAX if amax > 0 else 1.0
    return np.clip(np.round(t / s), quant.WEIGHT_MIN, quant.WEIGHT_MAX).astype(np.int8), s


def _residual(s_a: float, s_b: float, s_out: float) -> dict[str, np.ndarray]:
    from sw.ref import residual_params

    mult, shift = residual_params(s_a, s_b, s_out)
    return {"mult": mult.astype(np.int32), "shift": np.array(shift, dtype=np.int32)}


def _block_tail_arrays(blk, p: str, s: dict, x_prev: str, ln: str,
                       ffn_residual: str) -> dict[str, np.ndarray]:
    """Arrays of block ``p`` after its attention, the same in a pre-LN and a post-LN block:
    the output projection and its residual add onto ``x_prev`` (``x1``), LayerNorm ``ln`` of
    ``x1``, the FFN on that and the residual add of its output onto ``ffn_residual`` (``x2``)."""
    from sw.ref import build_gelu_lut

    out: dict[str, np.ndarray] = {}

    def put(name: str, items: dict[str, np.ndarray]) -> None:
        out.update({f"{p}{name}.{k}": v for k, v in items.items()})

    put("attn.proj", _linear_arrays(blk.attn.proj, s[p + "attn"], s[p + "proj"]))
    put("add1", _residual(s[x_prev], s[p + "proj"], s[p + "x1"]))
    put(ln, _layernorm_arrays(getattr(blk, ln), s[p + "x1"], s[p + ln]))
    put("ffn.fc1", _linear_arrays(blk.ffn.fc1, s[p + ln], s[p + "fc1"]))
    out[p + "ffn.gelu_lut"] = build_gelu_lut(s[p + "fc1"], s[p + "gelu"])
    put("ffn.fc2", _linear_arrays(blk.ffn.fc2, s[p + "gelu"], s[p + "fc2"]))
    put("add2", _residual(s[ffn_residual], s[p + "fc2"], s[p + "x2"]))
    return out


def build_arrays(model, scales: dict[str, float]) -> tuple[dict[str, np.ndarray],
                                                           dict[str, float]]:
    """Integer tensors of the artifact from a model and its activation scales.

    Returns ``(arrays, scales)``; the returned scales add the weight-table scales
    (``embed``/``pos`` tables) and ``logits`` (real logit = int32 logit * scale).
    """
    from sw.ref import AttentionQuant

    cfg = check_exportable(model)
    s = dict(scales)
    arrays: dict[str, np.ndarray] = {}

    def put(prefix: str, items: dict[str, np.ndarray]) -> None:
        for k, v in items.items():
            arrays[f"{prefix}.{k}"] = v

    if cfg.input_kind == "patches":
        put("embed", _linear_arrays(model.embed, s["input"], s["embed"]))
    else:
        arrays["embed.table"], s["embed"] = _table_q(_np(model.embed.weight))
    arrays["pos.table"], s["pos"] = _table_q(_np(model.pos))
    put("pos.add", _residual(s["embed"], s["pos"], s["x0"]))
    x_prev = "x0"
    d, hd = cfg.d_model, cfg.d_model // cfg.n_heads
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        put(p + "ln1", _layernorm_arrays(blk.ln1, s[x_prev], s[p + "ln1"]))
        s_qkv = np.repeat([s[p + "q"], s[p + "k"], s[p + "v"]], d)
        put(p + "attn.qkv", _linear_arrays(blk.attn.qkv, s[p + "ln1"], s_qkv))
        aq = AttentionQuant.from_scales(s[p + "q"], s[p + "k"], s[p + "v"], s[p + "attn"], hd)
        arrays[p + "attn.quant"] = np.array(
            [aq.score_mult, aq.score_shift, aq.out_mult, aq.out_shift], dtype=np.int32)
        arrays.update(_block_tail_arrays(blk, p, s, x_prev, "ln2", p + "x1"))     # pre-LN
        x_prev = p + "x2"
    put("ln_f", _layernorm_arrays(model.ln_f, s[x_prev], s["ln_f"]))
    if cfg.task == "classify":
        m, sh = quant.quantize_multiplier(s["ln_f"] / (cfg.seq_len * s["pool"]))
        arrays["pool.mult"] = np.array(m, dtype=np.int32)
        arrays["pool.shift"] = np.array(sh, dtype=np.int32)
        s_head_in = s["pool"]
    else:
        s_head_in = s["ln_f"]
    w_q, s_w = _table_q(_np(model.head.weight).T)                            # (d, C) per tensor
    arrays["head.w"] = w_q
    b = _np(model.head.bias) if model.head.bias is not None else np.zeros(w_q.shape[1])
    arrays["head.b"] = quant.quantize_bias(b, s_head_in, np.full(w_q.shape[1], s_w))
    s["head"] = s_w
    s["logits"] = s_head_in * s_w
    return arrays, {k: float(v) for k, v in s.items()}


def export_artifact(model, cfg, calib_x: np.ndarray, path, *, task: str,
                    accuracy_fp32: float | None, method: str = "ptq",
                    calibration: str = "percentile",
                    eval_data: tuple[np.ndarray, np.ndarray] | None | bool = None,
                    task_seed: int = 0, extra: dict[str, Any] | None = None) -> Path:
    """Quantize ``model`` and write the artifact ``path`` (``NAME.safetensors``).

    ``method="ptq"`` calibrates on ``calib_x`` (``calibration``: "percentile", the default: the
    99.99th percentile of |x| except residual streams and the input, or "max"; see
    ``docs/artifact.md`` for the measured difference);
    ``method="qat"`` uses the scales of a ``sw.qat.prepare_qat`` model. ``eval_data=(x, y)`` (or
    ``None``: the test split of ``task`` from ``sw.data`` with split seed ``task_seed``;
    ``False``: skip) is run through the integer model and recorded as ``accuracy_int8`` with
    ``eval_samples``, so ``lightformer eval`` (which reloads ``task`` with ``task_seed``) can
    show it reproduces exactly. Returns the artifact's path.
    """
    import torch

    from sw.artifact import Artifact, artifact_file, save_artifact, validate_config

    if method not in ("ptq", "qat"):
        raise ValueError(f"method must be 'ptq' or 'qat', not {method!r}")
    if cfg is not None and cfg != model.cfg:
        raise ValueError("cfg must be the model's config (model.cfg)")
    mcfg = check_exportable(model)
    if method == "qat":
        qs = getattr(model, "quant_state", None)
        if qs is None:
            raise ValueError("method='qat' needs a model prepared with sw.qat.prepare_qat")
        scales = qs.scales()
    else:
        scales = calibrate(model, calib_x, method=calibration).scales()
    with torch.no_grad():
        arrays, scales = build_arrays(model, scales)
    cfg_dict = mcfg.to_dict()
    info: dict[str, Any] = {
        "task": task, "task_seed": int(task_seed), "method": method,
        "calibration": None if method == "qat" else calibration,
        "calibration_samples": int(len(calib_x)),
        "accuracy_fp32": None if accuracy_fp32 is None else float(accuracy_fp32),
        "accuracy_int8": None, "eval_samples": None, "eval_split": None,
    }
    if eval_data is not False:
        if eval_data is None:
            from sw.data import load_task, task_options
            t = load_task(task, seed=task_seed, **task_options(task, cfg_dict))
            eval_data, info["eval_split"] = (t.x_test, t.y_test), "test"
        validate_config(cfg_dict)
        mem = Artifact(manifest={"config": cfg_dict, "scales": scales}, arrays=arrays,
                       path=artifact_file(path))
        from sw.evaluate import evaluate_artifact
        x_e, y_e = eval_data
        info["accuracy_int8"] = evaluate_artifact(mem, as_model_input(model, x_e), np.asarray(y_e))
        info["eval_samples"] = int(np.asarray(y_e).size)
    info["created"] = {
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "by": "sw.compile.export_artifact", "torch": torch.__version__,
        "numpy": np.__version__, "python": platform.python_version(),
    }
    if extra:
        info.update(extra)
    return save_artifact(path, config=cfg_dict, arrays=arrays, scales=scales, info=info)


# -- ONNX -----------------------------------------------------------------------------------------

def _linear_names(cfg: dict[str, Any]) -> list[str]:
    names = ["embed"] if cfg["input_kind"] == "patches" else []
    for i in range(cfg["n_layers"]):
        names += [f"blocks.{i}.{n}" for n in ("attn.qkv", "attn.proj", "ffn.fc1", "ffn.fc2")]
    return names


def export_onnx_linears(artifact, path) -> Path:
    """Write the artifact's integer linear layers as one ONNX model (opset 17).

    For each layer ``L`` (int8 weights ``(K, N)``) the graph has an input ``L.x`` (int8,
    ``(M, K)``) and two outputs: ``L.acc`` = ``MatMulInteger(x, W) + bias`` (int32, exactly
    :func:`sw.ref.gemm_acc`) and ``L.y`` = the int8 requantized output, computed in int64 with
    the same integer rule as :func:`sw.quant.requantize` (``(acc*mult + 2**(shift-1)) >> shift``,
    the arithmetic shift done as an unsigned shift of ``acc*mult + 2**(shift-1) + 2**62``, then
    subtracting ``2**(62-shift)``; saturation by Clip). No float ops: bit-exact by construction.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    a = artifact.arrays
    nodes, inputs, outputs, inits = [], [], [], []
    big = np.int64(1) << 62
    for name in _linear_names(artifact.config):
        w = a[name + ".w"]
        k, n = w.shape
        mult = a[name + ".mult"].astype(np.int64)
        shift = a[name + ".shift"].astype(np.int64)
        c = {f"{name}.W": w, f"{name}.B": a[name + ".b"].astype(np.int32),
             f"{name}.M": mult, f"{name}.R": ((np.int64(1) << (shift - 1)) + big),
             f"{name}.S": shift.astype(np.uint64),
             f"{name}.O": (big >> shift).astype(np.int64),
             f"{name}.lo": np.array(quant.INT8_MIN, np.int64),
             f"{name}.hi": np.array(quant.INT8_MAX, np.int64)}
        inits += [numpy_helper.from_array(v, k_) for k_, v in c.items()]
        inputs.append(helper.make_tensor_value_info(f"{name}.x", TensorProto.INT8, ["M", k]))
        outputs.append(helper.make_tensor_value_info(f"{name}.acc", TensorProto.INT32, ["M", n]))
        outputs.append(helper.make_tensor_value_info(f"{name}.y", TensorProto.INT8, ["M", n]))
        t = f"{name}/"
        nodes += [
            helper.make_node("MatMulInteger", [f"{name}.x", f"{name}.W"], [t + "mm"]),
            helper.make_node("Add", [t + "mm", f"{name}.B"], [f"{name}.acc"]),
            helper.make_node("Cast", [f"{name}.acc"], [t + "acc64"], to=TensorProto.INT64),
            helper.make_node("Mul", [t + "acc64", f"{name}.M"], [t + "prod"]),
            helper.make_node("Add", [t + "prod", f"{name}.R"], [t + "biased"]),
            helper.make_node("Cast", [t + "biased"], [t + "u"], to=TensorProto.UINT64),
            helper.make_node("BitShift", [t + "u", f"{name}.S"], [t + "sh"], direction="RIGHT"),
            helper.make_node("Cast", [t + "sh"], [t + "sh64"], to=TensorProto.INT64),
            helper.make_node("Sub", [t + "sh64", f"{name}.O"], [t + "r"]),
            helper.make_node("Max", [t + "r", f"{name}.lo"], [t + "rl"]),
            helper.make_node("Min", [t + "rl", f"{name}.hi"], [t + "rc"]),
            helper.make_node("Cast", [t + "rc"], [f"{name}.y"], to=TensorProto.INT8),
        ]
    graph = helper.make_graph(nodes, "lightformer_int8_linears", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="lightformer")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return atomic_write_bytes(path, model.SerializeToString())


# -- CLI ------------------------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, not {text!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sw.artifact import artifact_path_type
    from sw.data import TASKS
    from sw.report import add_json_argument, check_output_path, path_type

    def onnx_path(text: str) -> Path:
        try:
            return check_output_path(text, option="--onnx")
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    p.add_argument("checkpoint", type=path_type,
                   help="model.pt from `lightformer train --out DIR` (or DIR itself)")
    p.add_argument("--out", type=artifact_path_type, required=True, metavar="NAME",
                   help="artifact to write: NAME.safetensors (the suffix is added if missing)")
    p.add_argument("--task", default=None, choices=[t for t in TASKS if "digit_" not in t],
                   help="data set for calibration and the int8 accuracy (default: the one in "
                        "DIR/train_log.json)")
    p.add_argument("--calibration", choices=("max", "percentile"), default="percentile",
                   help="activation ranges: 99.99th percentile or max of |x| "
                        "(default: %(default)s)")
    p.add_argument("--calib-samples", type=_positive_int, default=512, metavar="N",
                   help="training samples used for calibration (default: %(default)s)")
    p.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="fine-tune N epochs with fake quantization (QAT) before export "
                        "(default: 0, post-training quantization only)")
    p.add_argument("--qat-lr", type=float, default=5e-4,
                   help="QAT learning rate (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--onnx", type=onnx_path, default=None, metavar="PATH",
                   help="also write the integer linear layers as ONNX here (default: none)")
    add_json_argument(p, what="a summary (artifact, sizes, accuracies)")


def _read_log(ckpt: Path) -> dict[str, Any]:
    """``train_log.json`` beside ``ckpt`` when it describes this very checkpoint, else ``{}``."""
    import hashlib
    import json

    log_path = ckpt.parent / "train_log.json"
    if not log_path.is_file():
        return {}
    try:
        log = json.loads(log_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"lightformer compile: {log_path}: not valid JSON ({exc}); delete it "
                         "and pass --task") from None
    if not isinstance(log, dict):
        return {}
    seed = log.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 \
            or not isinstance(log.get("task", ""), str):
        raise UsageError(f"lightformer compile: {log_path}: 'seed' must be an integer >= 0 and "
                         "'task' a string; train again, or move the log away and pass --task")
    recorded = log.get("model_sha256")
    if recorded is not None and recorded != hashlib.sha256(ckpt.read_bytes()).hexdigest():
        raise UsageError(f"lightformer compile: {log_path} describes another model.pt (its "
                         "model_sha256 differs); train again, or move the log away and pass "
                         "--task")
    return log


def run(args: argparse.Namespace) -> int:
    from sw.artifact import load_artifact
    from sw.checkpoint import load_model
    from sw.data import load_task, task_options
    from sw.report import info_stream, write_json

    ckpt = Path(args.checkpoint)
    if ckpt.is_dir():
        ckpt = ckpt / "model.pt"
    if not ckpt.is_file():
        raise UsageError(f"lightformer compile: checkpoint must be a model.pt file or a "
                         f"`lightformer train --out` folder, not {str(args.checkpoint)!r}")
    if args.qat_epochs < 0 or not args.qat_lr > 0:
        raise UsageError(f"lightformer compile: --qat-epochs must be >= 0 and --qat-lr > 0, not "
                         f"{args.qat_epochs!r} and {args.qat_lr!r}")
    log = _read_log(ckpt)
    task_name = args.task or log.get("task")
    if task_name is None:
        raise UsageError("lightformer compile: --task is needed (no train_log.json next to the "
                         "checkpoint)")
    try:
        model = load_model(ckpt)
    except ValueError as exc:
        raise UsageError(f"lightformer compile: {exc}") from None
    cfg = model.cfg
    seed = log.get("seed", 0) if log.get("task") == task_name else 0
    task = load_task(task_name, seed=seed, **task_options(task_name, cfg.to_dict()))
    acc = log.get("test_acc") if log.get("task") == task_name else None
    if acc is None:
        from sw.train import evaluate_fp32
        acc = evaluate_fp32(model, task.x_test, task.y_test)
    method, extra = "ptq", None
    if args.qat_epochs:
        from sw.train import train

        # QAT fine-tuning from the float model; accuracy_fp32 stays the float model's.
        model, hist = train(cfg, task, model=model, qat=True, epochs=args.qat_epochs,
                            lr=args.qat_lr, seed=seed, progress=not args.no_progress)
        method = "qat"
        extra = {"qat": {"epochs": args.qat_epochs, "lr": args.qat_lr,
                         "fake_quant_test_acc": hist["test_acc"]}}
    try:
        path = export_artifact(model, cfg, task.x_train[:args.calib_samples], args.out,
                               task=task_name, accuracy_fp32=acc, method=method,
                               calibration=args.calibration, task_seed=seed, extra=extra)
    except ValueError as exc:
        raise UsageError(f"lightformer compile: {exc}") from None
    art = load_artifact(path)
    m = art.manifest
    out = info_stream(args.json)
    print(f"wrote {path}: {m['requirements']['weight_bytes']} bytes of weights, fits "
          f"{', '.join(m['requirements']['fits_presets']) or 'no preset'}; "
          f"{task_name} test accuracy fp32 {m['accuracy_fp32']:.4f}, int8 "
          f"{m['accuracy_int8']:.4f} ({m['eval_samples']} samples)", file=out)
    onnx_path = None
    if args.onnx is not None:
        onnx_path = export_onnx_linears(art, args.onnx)
        print(f"wrote {onnx_path}", file=out)
    if args.json is not None:
        write_json(args.json, {
            "artifact": str(path), "artifact_bytes": path.stat().st_size,
            "weight_bytes": m["requirements"]["weight_bytes"],
            "fits_presets": m["requirements"]["fits_presets"], "task": task_name,
            "method": method, "calibration": m["calibration"],
            "calibration_samples": m["calibration_samples"],
            "accuracy_fp32": m["accuracy_fp32"], "accuracy_int8": m["accuracy_int8"],
            "eval_samples": m["eval_samples"], "digest": art.digest,
            "model_id": art.model_id,
            "onnx": None if onnx_path is None else str(onnx_path),
        }, kind="compile")
    return 0
