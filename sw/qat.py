# SPDX-License-Identifier: Apache-2.0
"""Quantization points of the LightTransformer: calibration (PTQ) and fake quantization (QAT).

:func:`forward_quant` is a functional forward of a full/window :class:`sw.model.LightTransformer`
that passes every activation through a :class:`QuantState` at exactly the points where the
integer model (``sw.ref``) rounds (:func:`activation_points`). :func:`calibrate` records their
ranges on sample data; :func:`prepare_qat` makes a model train with fake quantization and a
straight-through estimator. ``sw.compile`` turns the scales into the int8 artifact; ``sw.train``
runs QAT. torch is imported inside functions only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sw import quant

__all__ = [
    "QuantState", "activation_points", "as_model_input", "calibrate", "check_exportable",
    "forward_quant", "prepare_qat",
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


def check_exportable(model) -> Any:
    """``model.cfg`` if the int8 artifact can hold the model, else TypeError / ValueError."""
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


def as_model_input(model, x: np.ndarray) -> np.ndarray:
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

    cfg = check_exportable(model)
    if method not in ("max", "percentile"):
        raise ValueError(f"calibration method must be 'max' or 'percentile', not {method!r}")
    calib_x = as_model_input(model, calib_x)
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

    cfg = check_exportable(model)
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
