# SPDX-License-Identifier: Apache-2.0
"""Quantization: a trained :class:`sw.model.LightTransformer` -> one versioned int8 artifact.

Post-training quantization (PTQ) calibrates the activation ranges on a few batches;
quantization-aware training (QAT, :func:`prepare_qat`) fine-tunes with fake quantization and a
straight-through estimator at exactly the points where the integer model (``sw.ref``) rounds.
Both end in :func:`export_artifact`, which writes the artifact of ``sw.artifact`` (int8 weights,
int32 biases, ``(mult, shift)`` pairs, GELU LUTs, softmax and LayerNorm constants, manifest).

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
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from sw import quant

__all__ = [
    "QuantState", "activation_points", "add_arguments", "build_arrays", "calibrate",
    "export_artifact", "export_onnx_linears", "forward_quant", "prepare_qat", "run",
]

_SUPPORTED = ("full", "window")


def activation_points(cfg) -> list[str]:
    """Names of the per-tensor activation quantization points of ``cfg`` in forward order."""
    pts = ["input", "embed"] if cfg.input_kind == "patches" else []
    pts.append("x0")
    for i in range(cfg.n_layers):
        p = f"blocks.{i}."
        pts += [p + n for n in ("ln1", "q", "k", "v", "attn", "proj", "x1", "ln2", "fc1",
                                "gelu", "fc2", "x2")]
    pts.append("ln_f")
    if cfg.task == "classify":
        pts.append("pool")
    return pts


def _check_model(model) -> Any:
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "blocks"):
        raise TypeError(f"model must be a sw.model.LightTransformer, not {type(model).__name__}")
    if cfg.attention not in _SUPPORTED:
        raise ValueError(f"the int8 artifact supports attention {' or '.join(_SUPPORTED)}, not "
                         f"{cfg.attention!r}; train with --attention window")
    if cfg.funnel_stride != 1 or cfg.layer_heads is not None or cfg.layer_d_ff is not None:
        raise ValueError("the int8 artifact needs an unpruned model without funnel pooling "
                         "(funnel_stride=1, layer_heads=None, layer_d_ff=None)")
    return cfg


class QuantState:
    """Activation scales and the fake-quant mode of a model (not a module: the model keeps its
    module names and state-dict keys).

    ``mode``: ``"off"`` (float), ``"observe"`` (record max |x| per point) or ``"fake"``
    (fake-quantize with straight-through gradients). In ``"fake"`` mode during training the
    scales follow an exponential moving average of each batch's max |x| (``momentum``).
    """

    def __init__(self, points: list[str], momentum: float = 0.9) -> None:
        self.points = list(points)
        self.amax: dict[str, float] = {}
        self.mode = "off"
        self.fake_weights = False
        self.training = False
        self.momentum = float(momentum)
        self.record: dict[str, list[np.ndarray]] | None = None   # percentile calibration

    def scale(self, name: str) -> float:
        amax = self.amax.get(name)
        if amax is None:
            raise RuntimeError(f"activation point {name!r} was never calibrated; run calibrate()")
        return max(amax, 1e-8) / quant.INT8_MAX

    def scales(self) -> dict[str, float]:
        return {n: self.scale(n) for n in self.points}

    def __call__(self, name: str, x):
        if self.mode == "off":
            return x
        import torch

        if self.mode == "observe" or self.training:
            amax = float(x.detach().abs().max()) if x.numel() else 0.0
        if self.mode == "observe":
            self.amax[name] = max(self.amax.get(name, 0.0), amax)
            if self.record is not None:
                self.record.setdefault(name, []).append(
                    x.detach().abs().reshape(-1).cpu().numpy())
            return x
        if self.training:
            old = self.amax.get(name)
            m = self.momentum
            self.amax[name] = amax if old is None else m * old + (1 - m) * amax
        s = self.scale(name)
        q = torch.clamp(torch.round(x / s), quant.INT8_MIN, quant.INT8_MAX) * s
        return x + (q - x).detach()                           # straight-through estimator


def _fq_weight(w, per_channel: bool = True):
    """Fake-quantize a (out, in) weight: int8 narrow range, per output channel, STE."""
    import torch

    amax = w.detach().abs().amax(dim=1, keepdim=True) if per_channel else w.detach().abs().max()
    s = torch.where(amax > 0, amax / quant.WEIGHT_MAX, torch.ones_like(amax))
    q = torch.clamp(torch.round(w / s), quant.WEIGHT_MIN, quant.WEIGHT_MAX) * s
    return w + (q - w).detach()


def _fq_table(t):
    """Fake-quantize an embedding / position table per tensor (int8 narrow range), STE."""
    return _fq_weight(t, per_channel=False)


def forward_quant(model, x, qs: QuantState | None):
    """Functional forward of a full/window ``LightTransformer``, quantizing at every point of
    :func:`activation_points` through ``qs`` (``None`` or mode ``"off"``: exactly the float model).
    """
    import torch
    import torch.nn.functional as F

    cfg = model.cfg
    q_ = qs if qs is not None else (lambda name, t: t)
    fw = qs is not None and qs.fake_weights and qs.mode == "fake"

    def W(lin, per_channel=True):
        return _fq_weight(lin.weight, per_channel) if fw else lin.weight

    def ln(mod, t):
        return F.layer_norm(t, mod.normalized_shape, mod.weight, mod.bias, mod.eps)

    model._check_input(x)
    T = x.shape[1]
    if cfg.input_kind == "patches":
        h = q_("embed", F.linear(q_("input", x), W(model.embed), model.embed.bias))  # (B, T, C)
    else:
        table = _fq_table(model.embed.weight) if fw else model.embed.weight
        h = F.embedding(x, table)                                            # (B, T, C) float32
    pos = _fq_table(model.pos) if fw else model.pos                          # (seq_len, C)
    h = q_("x0", h + pos[:T])                                                # (B, T, C) float32
    d, H = cfg.d_model, cfg.n_heads
    hd = d // H
    if cfg.attention == "window":
        from sw.model import window_mask
        mask = window_mask(T, cfg.window, cfg.causal).to(x.device)           # (T, T) bool
    else:
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril() if cfg.causal else None
    B = x.shape[0]
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        a = q_(p + "ln1", ln(blk.ln1, h))                                    # (B, T, C)
        qkv = F.linear(a, W(blk.attn.qkv), blk.attn.qkv.bias)                # (B, T, 3C)
        qq, kk, vv = (q_(p + n, t).view(B, T, H, hd).transpose(1, 2)         # (B, H, T, hd)
                      for n, t in zip(("q", "k", "v"), qkv.split(d, dim=-1)))
        att = (qq @ kk.transpose(-2, -1)) / math.sqrt(hd)                    # (B, H, T, T)
        if mask is not None:
            att = att.masked_fill(~mask, float("-inf"))
        o = (att.softmax(dim=-1) @ vv).transpose(1, 2).reshape(B, T, d)      # (B, T, C)
        o = q_(p + "proj", F.linear(q_(p + "attn", o), W(blk.attn.proj), blk.attn.proj.bias))
        h = q_(p + "x1", h + o)
        f = q_(p + "fc1", F.linear(q_(p + "ln2", ln(blk.ln2, h)), W(blk.ffn.fc1),
                                   blk.ffn.fc1.bias))                        # (B, T, d_ff)
        f = q_(p + "fc2", F.linear(q_(p + "gelu", F.gelu(f)), W(blk.ffn.fc2), blk.ffn.fc2.bias))
        h = q_(p + "x2", h + f)                                              # (B, T, C)
    h = q_("ln_f", ln(model.ln_f, h))                                        # (B, T, C)
    if cfg.task == "lm":
        return F.linear(h, W(model.head, False), model.head.bias)            # (B, T, classes)
    pooled = q_("pool", h.mean(dim=1))                                       # (B, C)
    return F.linear(pooled, W(model.head, False), model.head.bias)           # (B, classes)


def _batches(x: np.ndarray, batch_size: int):
    import torch

    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        yield torch.from_numpy(np.ascontiguousarray(xb))


def _as_input(model, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if model.cfg.input_kind == "patches":
        return x.astype(np.float32)
    return x.astype(np.int64)


def calibrate(model, calib_x: np.ndarray, *, method: str = "max", percentile: float = 99.99,
              batch_size: int = 256) -> QuantState:
    """PTQ calibration: run the float model on ``calib_x`` and set every point's range.

    ``method="max"``: the largest |x| seen; ``"percentile"``: that percentile of |x| over all
    calibration values (clips rare outliers; residual streams still use the max).
    """
    import torch

    cfg = _check_model(model)
    if method not in ("max", "percentile"):
        raise ValueError(f"calibration method must be 'max' or 'percentile', not {method!r}")
    calib_x = _as_input(model, calib_x)
    if len(calib_x) == 0:
        raise ValueError("calib_x must hold at least one sample")
    qs = QuantState(activation_points(cfg))
    qs.mode = "observe"
    if method == "percentile":
        qs.record = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for xb in _batches(calib_x, batch_size):
            forward_quant(model, xb, qs)
    model.train(was_training)
    if qs.record is not None:
        for name, vals in qs.record.items():
            if name.endswith(("x0", "x1", "x2")) or name == "input":
                continue
            qs.amax[name] = float(np.percentile(np.concatenate(vals), percentile))
        qs.record = None
    qs.mode = "off"
    return qs


def prepare_qat(model, calib_x: np.ndarray, *, momentum: float = 0.9):
    """Quantization-aware training: fake-quantize ``model`` in place and return it.

    Weights are fake-quantized per output channel (the head and tables per tensor) and
    activations per tensor at the integer model's points, with a straight-through estimator.
    Activation ranges start from a calibration on ``calib_x`` and follow an EMA of the batch
    maxima while training (frozen in eval mode). The module names and state-dict keys stay
    those of the float model; ``model.quant_state`` holds the scales used by
    :func:`export_artifact`.
    """
    import torch

    cfg = _check_model(model)
    qs = calibrate(model, calib_x)
    qs.momentum = float(momentum)
    qs.mode = "fake"
    qs.fake_weights = True

    def forward(x: torch.Tensor) -> torch.Tensor:
        qs.training = model.training
        return forward_quant(model, x, qs)

    model.forward = forward                                   # instance attribute, same modules
    model.quant_state = qs
    assert cfg is model.cfg
    return model


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


def build_arrays(model, scales: dict[str, float]) -> tuple[dict[str, np.ndarray],
                                                           dict[str, float]]:
    """Integer tensors of the artifact from a model and its activation scales.

    Returns ``(arrays, scales)``; the returned scales add the weight-table scales
    (``embed``/``pos`` tables) and ``logits`` (real logit = int32 logit * scale).
    """
    from sw.ref import AttentionQuant, build_gelu_lut

    cfg = _check_model(model)
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
        put(p + "attn.proj", _linear_arrays(blk.attn.proj, s[p + "attn"], s[p + "proj"]))
        put(p + "add1", _residual(s[x_prev], s[p + "proj"], s[p + "x1"]))
        put(p + "ln2", _layernorm_arrays(blk.ln2, s[p + "x1"], s[p + "ln2"]))
        put(p + "ffn.fc1", _linear_arrays(blk.ffn.fc1, s[p + "ln2"], s[p + "fc1"]))
        arrays[p + "ffn.gelu_lut"] = build_gelu_lut(s[p + "fc1"], s[p + "gelu"])
        put(p + "ffn.fc2", _linear_arrays(blk.ffn.fc2, s[p + "gelu"], s[p + "fc2"]))
        put(p + "add2", _residual(s[p + "x1"], s[p + "fc2"], s[p + "x2"]))
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
    """Quantize ``model`` and write the artifact ``path`` (``NAME.npz`` + ``NAME.json``).

    ``method="ptq"`` calibrates on ``calib_x`` (``calibration``: "percentile", the default: the
    99.99th percentile of |x| except residual streams and the input, or "max"; see
    ``docs/artifact.md`` for the measured difference);
    ``method="qat"`` uses the scales of a :func:`prepare_qat` model. ``eval_data=(x, y)`` (or
    ``None``: the test split of ``task`` from ``sw.data`` with split seed ``task_seed``;
    ``False``: skip) is run through the integer model and recorded as ``accuracy_int8`` with
    ``eval_samples``, so ``lightformer eval`` (which reloads ``task`` with ``task_seed``) can
    show it reproduces exactly. Returns the ``.npz`` path.
    """
    import torch

    from sw.artifact import Artifact, artifact_paths, save_artifact, validate_config

    if method not in ("ptq", "qat"):
        raise ValueError(f"method must be 'ptq' or 'qat', not {method!r}")
    if cfg is not None and cfg != model.cfg:
        raise ValueError("cfg must be the model's config (model.cfg)")
    mcfg = _check_model(model)
    if method == "qat":
        qs = getattr(model, "quant_state", None)
        if qs is None:
            raise ValueError("method='qat' needs a model prepared with sw.compile.prepare_qat")
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
            from sw.data import load_task
            from sw.evaluate import task_options
            t = load_task(task, seed=task_seed, **task_options(task, cfg_dict))
            eval_data, info["eval_split"] = (t.x_test, t.y_test), "test"
        validate_config(cfg_dict)
        mem = Artifact(manifest={"config": cfg_dict, "scales": scales}, arrays=arrays,
                       path=artifact_paths(path)[0])
        from sw.evaluate import evaluate_artifact
        x_e, y_e = eval_data
        info["accuracy_int8"] = evaluate_artifact(mem, _as_input(model, x_e), np.asarray(y_e))
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# -- CLI ------------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path,
                   help="model.pt from `lightformer train --out DIR` (or DIR itself)")
    p.add_argument("--out", type=Path, required=True,
                   help="artifact path NAME (writes NAME.npz + NAME.json)")
    p.add_argument("--task", default=None,
                   help="data set for calibration and the int8 accuracy (default: the one in "
                        "DIR/train_log.json)")
    p.add_argument("--calibration", choices=("max", "percentile"), default="percentile",
                   help="activation ranges: 99.99th percentile (default) or max of |x|")
    p.add_argument("--calib-samples", type=int, default=512,
                   help="training samples used for calibration (default: 512)")
    p.add_argument("--qat-epochs", type=int, default=0, metavar="N",
                   help="fine-tune N epochs with fake quantization (QAT) before export "
                        "(default: 0, post-training quantization only)")
    p.add_argument("--qat-lr", type=float, default=5e-4, help="QAT learning rate (default 5e-4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--onnx", type=Path, default=None,
                   help="also write the integer linear layers as ONNX here")


def run(args: argparse.Namespace) -> int:
    import json

    from sw.artifact import load_artifact
    from sw.data import load_task
    from sw.evaluate import task_options
    from sw.train import evaluate_fp32, load_model, train

    ckpt = Path(args.checkpoint)
    if ckpt.is_dir():
        ckpt = ckpt / "model.pt"
    if not ckpt.is_file():
        raise SystemExit(f"lightformer compile: checkpoint must be a model.pt file or a "
                         f"`lightformer train --out` folder, not {str(args.checkpoint)!r}")
    log = {}
    log_path = ckpt.parent / "train_log.json"
    if log_path.is_file():
        log = json.loads(log_path.read_text())
    task_name = args.task or log.get("task")
    if task_name is None:
        raise SystemExit("lightformer compile: --task is needed (no train_log.json next to the "
                         "checkpoint)")
    if args.qat_epochs < 0 or not args.qat_lr > 0:
        raise SystemExit(f"lightformer compile: --qat-epochs must be >= 0 and --qat-lr > 0, not "
                         f"{args.qat_epochs!r} and {args.qat_lr!r}")
    if args.calib_samples < 1:
        raise SystemExit(f"lightformer compile: --calib-samples must be >= 1, not "
                         f"{args.calib_samples!r}")
    model = load_model(ckpt)
    cfg = model.cfg
    seed = int(log.get("seed", 0)) if log.get("task") == task_name else 0
    task = load_task(task_name, seed=seed, **task_options(task_name, cfg.to_dict()))
    acc = log.get("test_acc") if log.get("task") == task_name else None
    if acc is None:
        acc = evaluate_fp32(model, task.x_test, task.y_test)
    method, extra = "ptq", None
    if args.qat_epochs:
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
        raise SystemExit(f"lightformer compile: {exc}") from None
    art = load_artifact(path)
    m = art.manifest
    print(f"wrote {path} (+ .json): {m['requirements']['weight_bytes']} bytes, fits "
          f"{', '.join(m['requirements']['fits_presets']) or 'no preset'}; "
          f"{task_name} test accuracy fp32 {m['accuracy_fp32']:.4f}, int8 "
          f"{m['accuracy_int8']:.4f} ({m['eval_samples']} samples)")
    if args.onnx is not None:
        print(f"wrote {export_onnx_linears(art, args.onnx)}")
    return 0

