# SPDX-License-Identifier: Apache-2.0
"""Integer reference model (NumPy). The hardware must equal these functions bit for bit.

Every function validates its inputs, widens to int64 before arithmetic and returns the
narrowest exact dtype. Numerics are defined in :mod:`sw.quant`; the softmax and LayerNorm
constants live in :mod:`hw.numerics` (shared with the gateware) and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw import numerics
from hw.numerics import (
    ATTN_MAX_HEAD_DIM,
    ISQRT_ITERATIONS,
    LN_FRAC_BITS,
    LN_MAX_DIM,
    LN_RECIP_BITS,
    LUT_SIZE,
    SOFTMAX_EXP_BITS,
    SOFTMAX_EXP_FRAC_BITS,
    SOFTMAX_MAX_WINDOW,
    SOFTMAX_NORM_SHIFT,
    SOFTMAX_PROB_BITS,
    SOFTMAX_RECIP_BITS,
    SOFTMAX_U_INT_BITS,
    SOFTMAX_U_MAX,
    layernorm_pre_shift,
)
from sw import quant

__all__ = ["gemm_acc", "gemm_requant"]
# Re-exported from hw.numerics (their one home) for the functions below and their callers.
__all__ += [
    "ATTN_MAX_HEAD_DIM", "LN_MAX_DIM", "SOFTMAX_EXP_BITS", "SOFTMAX_EXP_FRAC_BITS",
    "SOFTMAX_MAX_WINDOW", "SOFTMAX_NORM_SHIFT", "SOFTMAX_PROB_BITS", "SOFTMAX_RECIP_BITS",
    "SOFTMAX_U_INT_BITS", "SOFTMAX_U_MAX", "layernorm_pre_shift",
]
__all__ += [
    "AttentionQuant", "SOFTMAX_EXP_TABLE", "attention_window_bounds", "softmax_exp_int",
    "softmax_int", "softmax_normalize_int", "softmax_recip_int", "softmax_u_int",
    "windowed_attention_int",
]
__all__ += [
    "ISQRT_ITERATIONS", "LN_FRAC_BITS", "LN_RECIP_BITS", "LUT_SIZE", "build_gelu_lut",
    "build_lut", "embedding_int", "gelu_f", "isqrt_int", "layernorm_eps_q", "layernorm_int",
    "linear_int", "lut_apply", "mean_pool_int", "model_forward_int", "quantize_input",
    "residual_add", "residual_params",
]


def _check_int_array(name: str, x: np.ndarray, dtype: type, ndim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must be a {np.dtype(dtype).name} array, not {x.dtype.name}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), not shape {x.shape}")
    return x


def gemm_acc(a_q: np.ndarray, w_q: np.ndarray, bias_q: np.ndarray | None = None) -> np.ndarray:
    """int8 ``(M, K)`` x int8 ``(K, N)`` (+ int32 ``(N,)`` bias) -> int32 ``(M, N)``.

    ``OverflowError`` if any sum leaves int32 (the hardware accumulator is 32 bits wide).
    """
    a_q = _check_int_array("a_q", a_q, np.int8, 2)
    w_q = _check_int_array("w_q", w_q, np.int8, 2)
    if a_q.shape[1] != w_q.shape[0]:
        raise ValueError(f"inner dimensions differ: a_q is {a_q.shape}, w_q is {w_q.shape}")
    if a_q.shape[1] == 0:
        raise ValueError("K must be at least 1")
    acc = a_q.astype(np.int64) @ w_q.astype(np.int64)                   # (M, N) int64
    if bias_q is not None:
        bias_q = _check_int_array("bias_q", bias_q, np.int32, 1)
        if bias_q.shape[0] != w_q.shape[1]:
            raise ValueError(f"bias_q must have N={w_q.shape[1]} entries, not {bias_q.shape[0]}")
        acc = acc + bias_q.astype(np.int64)[None, :]
    if np.any(acc < quant.ACC_MIN) or np.any(acc > quant.ACC_MAX):
        raise OverflowError("GEMM accumulator overflows int32; reduce K or the bias magnitude")
    return acc.astype(np.int32)


def gemm_requant(a_q: np.ndarray, w_q: np.ndarray, bias_q: np.ndarray, mult: np.ndarray,
                 shift: np.ndarray) -> np.ndarray:
    """int8 ``(M, K)`` x int8 ``(K, N)`` + int32 bias ``(N,)`` -> int8 ``(M, N)``.

    Requantized per output channel with ``(mult[n], shift[n])`` by :func:`sw.quant.requantize`.
    """
    acc = gemm_acc(a_q, w_q, bias_q)                                      # (M, N) int32
    n = acc.shape[1]
    mult = np.broadcast_to(quant.as_int64("mult", mult), (n,))
    shift = np.broadcast_to(quant.as_int64("shift", shift), (n,))
    return quant.requantize(acc, mult[None, :], shift[None, :])          # (M, N) int8


# -- Integer softmax and windowed attention -----------------------------------------------------
#
# One query row at a time, per head (docs/numerics.md, "Integer softmax"):
#
#   s_j = q . k_j                                      int32 scores (|s| <= 2**21 for d <= 128)
#   m   = max_j s_j                                    over the row's window only
#   u_j = min(round_shift((m - s_j) * score_mult, score_shift), SOFTMAX_U_MAX)
#                                                      10-bit unsigned, Q4.6 in log2 units
#   e_j = SOFTMAX_EXP_TABLE[u_j & 63] >> (u_j >> 6)    16-bit unsigned, Q1.15, 2**-(u_j/64)
#   S   = sum_j e_j                                    24-bit unsigned, in [2**15, window * 2**15]
#   r   = 2**38 // S                                   24-bit unsigned reciprocal (floor)
#   p_j = (e_j * r + 2**22) >> 23                      16-bit unsigned, Q1.15, in [0, 2**15]
#   a_c = sum_j p_j * v_jc                             int32 (|a| < 2**23)
#   y_c = requantize(a_c, out_mult, out_shift)         int8
#
# ``score_mult / 2**score_shift ~= scale_q * scale_k / sqrt(head_dim) * log2(e) * 2**6``: the
# score requant folds the 1/sqrt(d) scaling and the change of base (exp(x) = 2**(x log2 e)) into
# one 15-bit multiplier, exactly like every other requant in lightformer.

#: ``numerics.SOFTMAX_EXP_TABLE`` as an int64 array for vectorised lookups (Q1.15).
SOFTMAX_EXP_TABLE = np.array(numerics.SOFTMAX_EXP_TABLE, dtype=np.int64)


@dataclass(frozen=True)
class AttentionQuant:
    """Integer constants of one attention head (``softmax_int`` / ``windowed_attention_int``).

    Parameters
    ----------
    score_mult, score_shift : int
        Requant of a score difference ``m - s`` (int32 units of ``scale_q * scale_k``) into the
        softmax input ``u`` (units of ``2**-6`` in the log2 domain):
        ``score_mult / 2**score_shift ~= scale_q * scale_k / sqrt(head_dim) * log2(e) * 64``.
        ``score_mult`` is 15-bit unsigned, ``score_shift`` in ``[1, 47]`` (``sw.quant`` ranges).
    out_mult, out_shift : int
        Requant of ``P . V`` (int32 units of ``scale_v * 2**-15``) to the int8 output:
        ``out_mult / 2**out_shift ~= scale_v * 2**-15 / scale_out``.

    Build it from float scales with :meth:`from_scales` (compile time).
    """

    score_mult: int
    score_shift: int
    out_mult: int
    out_shift: int

    def __post_init__(self) -> None:
        for name in ("score_mult", "score_shift", "out_mult", "out_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"AttentionQuant.{name} must be an integer, not {value!r}")
        for name in ("score_mult", "out_mult"):
            value = getattr(self, name)
            if not 0 <= value < (1 << quant.MULT_BITS):
                raise ValueError(
                    f"AttentionQuant.{name} must be in [0, 2**{quant.MULT_BITS}), not {value!r}; "
                    "build it with AttentionQuant.from_scales")
        for name in ("score_shift", "out_shift"):
            value = getattr(self, name)
            if not quant.SHIFT_MIN <= value <= quant.SHIFT_MAX:
                raise ValueError(
                    f"AttentionQuant.{name} must be in [{quant.SHIFT_MIN}, {quant.SHIFT_MAX}], "
                    f"not {value!r}; build it with AttentionQuant.from_scales")

    @classmethod
    def from_scales(cls, scale_q: float, scale_k: float, scale_v: float, scale_out: float,
                    head_dim: int) -> AttentionQuant:
        """Constants for real attention ``softmax(Q K^T / sqrt(head_dim)) V`` (compile time).

        ``Q ~= scale_q * q``, ``K ~= scale_k * k``, ``V ~= scale_v * v`` and the int8 output
        ``y ~= out / scale_out``. ``ValueError`` if a scale is not positive and finite or the
        score scale is too large for a 15-bit multiplier (``scale_q * scale_k`` >~ 20).
        """
        scale_q = quant.check_scale("scale_q", scale_q)
        scale_k = quant.check_scale("scale_k", scale_k)
        scale_v = quant.check_scale("scale_v", scale_v)
        scale_out = quant.check_scale("scale_out", scale_out)
        if isinstance(head_dim, bool) or not isinstance(head_dim, (int, np.integer)) \
                or not 1 <= head_dim <= ATTN_MAX_HEAD_DIM:
            raise ValueError(
                f"head_dim must be an integer in [1, {ATTN_MAX_HEAD_DIM}], not {head_dim!r}")
        real_score = (scale_q * scale_k / np.sqrt(float(head_dim)) * np.log2(np.e)
                      * (1 << SOFTMAX_EXP_FRAC_BITS))
        score_mult, score_shift = quant.quantize_multiplier(float(real_score))
        out_mult, out_shift = quant.quantize_multiplier(
            scale_v / (1 << SOFTMAX_PROB_BITS) / scale_out)
        return cls(score_mult, score_shift, out_mult, out_shift)


def softmax_exp_int(u: np.ndarray) -> np.ndarray:
    """``2**(-u / 64)`` in Q1.15: ``SOFTMAX_EXP_TABLE[u & 63] >> (u >> 6)``; ``u`` in [0, 1023].

    A 64 x 16-bit ROM and a 0..15 right shift. ``u = 0 -> 32768`` (1.0), ``u >= 961 -> 0``.
    """
    u = quant.as_int64("softmax input u", u)
    if np.any(u < 0) or np.any(u > SOFTMAX_U_MAX):
        raise ValueError(f"softmax input u must be in [0, {SOFTMAX_U_MAX}], not {u!r}")
    frac = u & ((1 << SOFTMAX_EXP_FRAC_BITS) - 1)
    return SOFTMAX_EXP_TABLE[frac] >> (u >> SOFTMAX_EXP_FRAC_BITS)


def softmax_u_int(diff: np.ndarray, score_mult: int, score_shift: int) -> np.ndarray:
    """Score difference ``m - s >= 0`` (int) -> softmax input ``u`` (Q4.6 log2 units, 0..1023).

    ``min(round_shift(diff * score_mult, score_shift), SOFTMAX_U_MAX)`` (``Round.HALF_UP``).
    """
    diff = quant.as_int64("score differences", diff)
    if np.any(diff < 0):
        raise ValueError("score differences m - s must be non-negative (m is the row maximum)")
    AttentionQuant(score_mult, score_shift, 1, 1)                     # types and ranges
    if diff.size and int(diff.max()) >= 1 << 32:                     # |m - s| < 2**32 for int32
        raise ValueError("score differences m - s must be below 2**32 (int32 scores)")
    return np.minimum(quant.round_shift(diff * np.int64(score_mult), score_shift),
                      SOFTMAX_U_MAX)


def softmax_recip_int(total: np.ndarray) -> np.ndarray:
    """Reciprocal of the exp sum: ``2**38 // S`` for ``S`` in ``[2**15, 2**23]`` (24-bit result).

    One unsigned division with a constant dividend: a 24-step restoring divider in hardware.
    """
    total = quant.as_int64("exp sum", total)
    most = SOFTMAX_MAX_WINDOW << SOFTMAX_EXP_BITS                      # 2**23: a full window of 1.0
    if np.any(total < (1 << SOFTMAX_EXP_BITS)) or np.any(total > most):
        raise ValueError(f"exp sum must be in [2**15, 2**23], not {total!r}")
    return (np.int64(1) << SOFTMAX_RECIP_BITS) // total


def softmax_normalize_int(e: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Probability ``p = (e * r + 2**22) >> 23`` (Q1.15, ``0 <= p <= 2**15``) as int64."""
    e = quant.as_int64("e", e)
    r = quant.as_int64("r", r)
    if np.any(e < 0) or np.any(e > 1 << SOFTMAX_EXP_BITS) or np.any(r < 0) or np.any(r >= 1 << 24):
        raise ValueError("softmax_normalize_int takes e in [0, 2**15] and r in [0, 2**24)")
    return quant.round_shift(e * r, SOFTMAX_NORM_SHIFT)


def softmax_int(scores: np.ndarray, score_mult: int, score_shift: int,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Integer softmax of int32 ``scores`` (..., N) along the last axis -> Q1.15 ``uint16``.

    ``mask`` (bool, same shape) marks the valid keys; invalid keys neither set the maximum nor
    add to the sum and get probability 0. Every row needs at least one valid key and at most
    ``SOFTMAX_MAX_WINDOW`` (256). A single valid key (or a row where every other key underflows
    to ``e = 0``) gets exactly ``2**15`` (1.0): probabilities carry one integer bit, so 1.0 is
    representable and never clamped. Probabilities sum to ``2**15`` up to rounding (each
    ``p_j`` is within one LSB of ``e_j * 2**15 / S``).
    """
    s = np.asarray(scores)
    if s.dtype.kind not in "iu":
        raise TypeError(f"scores must be an integer array, not {s.dtype.name}")
    s = s.astype(np.int64)
    if s.ndim < 1 or s.shape[-1] == 0:
        raise ValueError(f"scores must have a non-empty last axis, not shape {s.shape}")
    if np.any(s < quant.ACC_MIN) or np.any(s > quant.ACC_MAX):
        raise ValueError("scores must fit int32")
    if mask is None:
        mask = np.ones(s.shape, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != s.shape:
        raise ValueError(f"mask must be a bool array of shape {s.shape}, not "
                         f"{mask.dtype.name} {mask.shape}")
    count = mask.sum(axis=-1)
    if np.any(count < 1) or np.any(count > SOFTMAX_MAX_WINDOW):
        raise ValueError(f"every softmax row needs 1..{SOFTMAX_MAX_WINDOW} valid keys")
    AttentionQuant(score_mult, score_shift, 1, 1)                     # range checks
    big = np.int64(1) << 40
    m = np.max(np.where(mask, s, -big), axis=-1, keepdims=True)       # (..., 1) row max
    diff = np.where(mask, m - s, 0)                                   # (..., N) >= 0
    u = softmax_u_int(diff, score_mult, score_shift)                  # (..., N) 0..1023
    e = np.where(mask, softmax_exp_int(u), 0)                         # (..., N) Q1.15
    total = e.sum(axis=-1, keepdims=True)                             # (..., 1) 24 bits
    r = softmax_recip_int(total)                                      # (..., 1) 24 bits
    return softmax_normalize_int(e, r).astype(np.uint16)              # (..., N) Q1.15


def attention_window_bounds(seq_len: int, window: int, causal: bool) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Key range ``[lo[t], hi[t])`` of every query ``t`` (int64 arrays of length ``seq_len``).

    Causal: keys ``max(0, t - window + 1) .. t``. Centred: keys
    ``t - window // 2 .. t + (window - 1) // 2`` clipped to ``[0, seq_len)`` (exactly ``window``
    keys before clipping; an even window looks one key further back than ahead).
    ``window >= seq_len`` (centred: ``window >= 2 * seq_len - 1``) is full attention.
    """
    for name, value, lo in (("seq_len", seq_len, 1), ("window", window, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be a bool, not {causal!r}")
    t = np.arange(seq_len, dtype=np.int64)
    if causal:
        lo, hi = t - window + 1, t + 1
    else:
        lo, hi = t - window // 2, t + (window - 1) // 2 + 1
    return np.maximum(lo, 0), np.minimum(hi, seq_len)


def windowed_attention_int(q: np.ndarray, k: np.ndarray, v: np.ndarray, window: int,
                           causal: bool, params: AttentionQuant) -> np.ndarray:
    """One head of windowed attention: int8 ``q, k, v`` (T, d) -> int8 (T, d).

    Query ``t`` attends the keys of :func:`attention_window_bounds` (causal or centred);
    scores ``q_t . k_j`` are int32, the softmax is :func:`softmax_int` and the output
    ``requantize(sum_j p_j v_j, out_mult, out_shift)`` (``sw.quant.requantize``).
    ``window`` is 1..256 and ``d`` is 1..128.
    """
    q = _check_int_array("q", q, np.int8, 2)
    k = _check_int_array("k", k, np.int8, 2)
    v = _check_int_array("v", v, np.int8, 2)
    if not q.shape == k.shape == v.shape:
        raise ValueError(f"q, k and v must have one shape (T, d), not {q.shape}, {k.shape}, "
                         f"{v.shape}")
    seq_len, head_dim = q.shape
    if seq_len < 1 or not 1 <= head_dim <= ATTN_MAX_HEAD_DIM:
        raise ValueError(f"q must be (T >= 1, 1 <= d <= {ATTN_MAX_HEAD_DIM}), not {q.shape}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) \
            or not 1 <= window <= SOFTMAX_MAX_WINDOW:
        raise ValueError(f"window must be an integer in [1, {SOFTMAX_MAX_WINDOW}], not {window!r}")
    if not isinstance(params, AttentionQuant):
        raise TypeError(f"params must be an AttentionQuant, not {params!r}")
    lo, hi = attention_window_bounds(seq_len, window, causal)
    j = np.arange(seq_len, dtype=np.int64)
    mask = (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])    # (T, T) bool
    scores = q.astype(np.int64) @ k.astype(np.int64).T                  # (T, T) int32 range
    p = softmax_int(scores, params.score_mult, params.score_shift, mask)  # (T, T) Q1.15
    acc = p.astype(np.int64) @ v.astype(np.int64)                       # (T, d) |acc| < 2**23
    return quant.requantize(acc, params.out_mult, params.out_shift)     # (T, d) int8


# -- Integer whole model: LayerNorm, LUT activations, residuals, embeddings, classifier---
#
# docs/numerics.md ("Integer LayerNorm", "GELU LUT", "Residual add", "The whole integer model").
# Every op below is the form the hardware implements: integer adds/multiplies, one restoring
# divider (LayerNorm reciprocal), one fixed-iteration integer square root, 256-entry LUTs and the
# single requantization rule of ``sw.quant.requantize``.


def isqrt_int(x: np.ndarray | int) -> np.ndarray:
    """``floor(sqrt(x))`` for int64 ``0 <= x < 2**62``: digit-by-digit, exactly 32 iterations.

    The classic restoring square root (two result bits per step, one compare-subtract), run for
    a fixed :data:`ISQRT_ITERATIONS` steps whatever the input, so the hardware unit has a
    constant latency. Returns int64.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"isqrt_int input must be an integer array, not {x.dtype.name}")
    x = x.astype(np.int64)
    if np.any(x < 0) or np.any(x >= (np.int64(1) << 62)):
        raise ValueError("isqrt_int input must be in [0, 2**62); reduce the LayerNorm width")
    rem = x.copy()
    res = np.zeros_like(x)
    bit = np.int64(1) << 62
    for _ in range(ISQRT_ITERATIONS):
        trial = res + bit
        take = rem >= trial
        rem = np.where(take, rem - trial, rem)
        res = np.where(take, (res >> 1) + bit, res >> 1)
        bit = bit >> 2
    return res


def layernorm_int(x_q: np.ndarray, gamma_q: np.ndarray, beta_q: np.ndarray, mult: np.ndarray,
                  shift: np.ndarray, eps_q: int) -> np.ndarray:
    """Integer LayerNorm over the last axis: int8 ``(..., d)`` -> int8 ``(..., d)``.

    With ``c = d * x - sum(x)`` (exact, no division), ``S = sum(c**2)`` and the constant
    ``k = layernorm_pre_shift(d)``::

        r   = max(isqrt((d * S + eps_q) << 2k), 1)   # = 2**k * d**2 * sqrt(var + eps)
        inv = 2**48 // r                             # one restoring division per row
        n   = round_shift(c * d * inv, 48 - k - 10)  # (x - mean) / sqrt(var + eps), Q.10
        y   = requantize(n * gamma_q + beta_q, mult, shift)

    ``gamma_q`` int8 and ``beta_q`` int32 (per channel, ``(d,)``) hold gamma and beta at scale
    ``scale_gamma[c] * 2**-10``; ``(mult, shift)`` per channel map that to the output scale.
    ``eps_q = round(d**4 * eps / scale_x**2)`` (at most ``d**4 * 2**16``) folds LayerNorm's
    epsilon (:func:`layernorm_eps_q`). The input scale cancels, so it does not appear.
    """
    x = np.asarray(x_q)
    if x.dtype != np.int8:
        raise TypeError(f"x_q must be an int8 array, not {x.dtype.name}")
    if x.ndim < 1:
        raise ValueError(f"x_q must have at least one dimension, not shape {x.shape}")
    d = x.shape[-1]
    if not 1 <= d <= LN_MAX_DIM:
        raise ValueError(f"LayerNorm width must be in [1, {LN_MAX_DIM}], not {d}")
    gamma_q = _check_int_array("gamma_q", gamma_q, np.int8, 1)
    beta_q = _check_int_array("beta_q", beta_q, np.int32, 1)
    if gamma_q.shape[0] != d or beta_q.shape[0] != d:
        raise ValueError(f"gamma_q and beta_q must have d={d} entries, not "
                         f"{gamma_q.shape[0]} and {beta_q.shape[0]}")
    eps_q = int(quant.as_int64("eps_q", eps_q))
    if not 0 <= eps_q <= (d ** 4 << 16):
        raise ValueError(f"eps_q must be in [0, d**4 * 2**16], not {eps_q!r}")
    k = layernorm_pre_shift(d)
    x = np.asarray(x, dtype=np.int64)
    c = d * x - x.sum(axis=-1, keepdims=True)                          # (..., d) |c| < d * 256
    total = (c * c).sum(axis=-1, keepdims=True)                        # (..., 1) < d**3 * 2**16
    r = np.maximum(isqrt_int((d * total + eps_q) << (2 * k)), 1)       # (..., 1) < 2**31
    inv = (np.int64(1) << LN_RECIP_BITS) // r                          # (..., 1) reciprocal
    n = quant.round_shift(c * d * inv, LN_RECIP_BITS - k - LN_FRAC_BITS)  # (..., d) Q.10
    acc = n * gamma_q.astype(np.int64) + beta_q.astype(np.int64)       # (..., d) int32 range
    return quant.requantize(acc, mult, shift)                          # (..., d) int8


def layernorm_eps_q(d: int, eps: float, scale_x: float) -> int:
    """``round(d**4 * eps / scale_x**2)`` (capped at ``d**4 * 2**16``, where epsilon already
    outweighs any int8 variance): LayerNorm epsilon in the units of :func:`layernorm_int`."""
    if isinstance(d, (bool, np.bool_)) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"LayerNorm width d must be a positive integer, not {d!r}")
    # A zero scale divided by zero here (ZeroDivisionError); a negative one squared away its sign.
    scale_x = quant.check_scale("LayerNorm input scale", scale_x)
    value = float(d) ** 4 * float(eps) / scale_x ** 2
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"LayerNorm epsilon term must be finite and >= 0, not {value!r}")
    return int(min(np.floor(value + 0.5), float(d ** 4 << 16)))


def lut_apply(x_q: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """256-entry int8 -> int8 LUT: ``lut[x & 0xFF]`` (the byte pattern of ``x`` is the address).

    Entry ``i`` holds the output for input ``int8(i)``: entries 0..127 for x = 0..127, entries
    128..255 for x = -128..-1.
    """
    x = np.asarray(x_q)
    if x.dtype != np.int8:
        raise TypeError(f"x_q must be an int8 array, not {x.dtype.name}")
    lut = _check_int_array("lut", lut, np.int8, 1)
    if lut.shape[0] != LUT_SIZE:
        raise ValueError(f"lut must have {LUT_SIZE} entries, not {lut.shape[0]}")
    return lut[x.view(np.uint8)]


def build_lut(fn, scale_in: float, scale_out: float) -> np.ndarray:
    """Compile time: the exact LUT of float ``fn`` for int8 in/out scales (half away from 0)."""
    scale_in = quant.check_scale("scale_in", scale_in)
    scale_out = quant.check_scale("scale_out", scale_out)
    x = np.arange(LUT_SIZE, dtype=np.int64).astype(np.uint8).view(np.int8)   # address -> int8
    y = np.asarray(fn(x.astype(np.float64) * scale_in), dtype=np.float64)
    return quant.quantize_act(y, scale_out)                             # (256,) int8


def gelu_f(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in float64, as ``torch.nn.GELU()``: ``x/2 * (1 + erf(x/sqrt(2)))``."""
    from math import erf, sqrt
    x = np.asarray(x, dtype=np.float64)
    return x * 0.5 * (1.0 + np.vectorize(erf)(x / sqrt(2.0)))


def build_gelu_lut(scale_in: float, scale_out: float) -> np.ndarray:
    """Compile time: 256-entry int8 GELU table, ``round(gelu(x * scale_in) / scale_out)``."""
    return build_lut(gelu_f, scale_in, scale_out)


def residual_params(scale_a: float, scale_b: float, scale_out: float) -> tuple[np.ndarray, int]:
    """Compile time: ``(mult (2,), shift)`` for :func:`residual_add` (one shared shift).

    ``mult[i] / 2**shift ~= scale_i / scale_out`` (half up); the larger multiplier is normalised
    to 15 bits. ``ValueError`` if a ratio is 2**14 or more.
    """
    ra = quant.check_scale("scale_a", scale_a) / quant.check_scale("scale_out", scale_out)
    rb = quant.check_scale("scale_b", scale_b) / scale_out
    shift = quant.MULT_BITS - int(np.frexp(max(ra, rb))[1])
    shift = min(shift, quant.SHIFT_MAX)
    mults = [int(np.floor(r * 2.0 ** shift + 0.5)) for r in (ra, rb)]
    if max(mults) >= (1 << quant.MULT_BITS):                  # rounding carried into bit 15
        shift -= 1
        mults = [int(np.floor(r * 2.0 ** shift + 0.5)) for r in (ra, rb)]
    if shift < quant.SHIFT_MIN:
        raise ValueError(f"residual scale ratio {max(ra, rb)!r} must be < 2**14; the output "
                         "scale must not be far smaller than the input scales")
    return np.array(mults, dtype=np.int64), shift


def residual_add(a_q: np.ndarray, b_q: np.ndarray, mult: np.ndarray, shift: int) -> np.ndarray:
    """Two int8 tensors at different scales -> int8: ``sat8(round_shift(a*m0 + b*m1, shift))``.

    One multiply per operand, one adder, one rounding (``Round.HALF_UP``) and saturation, like
    every requant. Build ``(mult, shift)`` with :func:`residual_params`.
    """
    a = np.asarray(a_q)
    b = np.asarray(b_q)
    if a.dtype != np.int8 or b.dtype != np.int8:
        raise TypeError(f"a_q and b_q must be int8 arrays, not {a.dtype.name}, {b.dtype.name}")
    if a.shape != b.shape:
        raise ValueError(f"a_q and b_q must have one shape, not {a.shape} and {b.shape}")
    mult = quant.as_int64("residual mult", mult)
    if mult.shape != (2,) or np.any(mult < 0) or np.any(mult >= (1 << quant.MULT_BITS)):
        raise ValueError(f"residual mult must be two 15-bit unsigned integers, not {mult!r}")
    acc = a.astype(np.int64) * mult[0] + b.astype(np.int64) * mult[1]
    shift = quant.as_int64("residual shift", shift)
    if shift.ndim or not quant.SHIFT_MIN <= int(shift) <= quant.SHIFT_MAX:
        raise ValueError(f"residual shift must be one integer in [{quant.SHIFT_MIN}, "
                         f"{quant.SHIFT_MAX}], not {shift!r}")
    return quant.saturate(quant.round_shift(acc, int(shift))).astype(np.int8)


def linear_int(x_q: np.ndarray, w_q: np.ndarray, bias_q: np.ndarray, mult: np.ndarray,
               shift: np.ndarray) -> np.ndarray:
    """:func:`gemm_requant` over the last axis of ``x_q (..., K)`` -> int8 ``(..., N)``.

    A model layer: its weights ``w_q`` are in the narrow range ``[-127, 127]`` (``ValueError``
    for ``-128``); the GEMM itself (:func:`gemm_acc`) takes any int8.
    """
    quant.check_weights("w_q", w_q)
    x = np.asarray(x_q)
    lead = x.shape[:-1]
    y = gemm_requant(x.reshape(-1, x.shape[-1]), w_q, bias_q, mult, shift)   # (M, N) int8
    return y.reshape(*lead, y.shape[-1])


def embedding_int(tokens: np.ndarray, table_q: np.ndarray) -> np.ndarray:
    """Token ids ``(..., T)`` -> int8 rows of ``table_q (vocab, d)`` (a memory read)."""
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"tokens must be an integer array, not {tokens.dtype.name}")
    table_q = _check_int_array("table_q", table_q, np.int8, 2)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= table_q.shape[0]):
        raise ValueError(f"token ids must be in [0, {table_q.shape[0]}), not "
                         f"[{tokens.min()}, {tokens.max()}]")
    return table_q[tokens]


def mean_pool_int(x_q: np.ndarray, mult: int, shift: int) -> np.ndarray:
    """Mean over tokens: int8 ``(..., T, d)`` -> int8 ``(..., d)``, ``requantize(sum_t x, m, s)``.

    ``mult / 2**shift ~= scale_x / (T * scale_out)`` folds the 1/T of the mean.
    """
    x = np.asarray(x_q)
    if x.dtype != np.int8 or x.ndim < 2:
        raise TypeError(f"x_q must be an int8 array (..., T, d), not {x.dtype.name} {x.shape}")
    return quant.requantize(x.astype(np.int64).sum(axis=-2), mult, shift)


def _attention_span(cfg: dict, seq_len: int) -> tuple[int, bool]:
    """``(window, causal)`` of the integer attention for a model config (full = all keys)."""
    kind, causal = cfg["attention"], bool(cfg["causal"])
    if kind == "window":
        return int(cfg["window"]), causal
    if kind == "full":
        return (seq_len if causal else 2 * seq_len - 1), causal
    raise ValueError(f"the integer model runs attention 'window' or 'full', not {kind!r}")


def quantize_input(artifact, x_f: np.ndarray) -> np.ndarray:
    """Model input -> integer model input: float patches -> int8 at the artifact's input scale;
    token ids (integers) are checked against the vocabulary and returned as int64."""
    cfg = artifact.config
    x = np.asarray(x_f)
    if cfg["input_kind"] == "tokens":
        if x.dtype.kind not in "iu":
            raise TypeError(f"token input must be an integer array, not {x.dtype.name}")
        if x.size and (x.min() < 0 or x.max() >= cfg["vocab_size"]):
            raise ValueError(f"token ids must be in [0, {cfg['vocab_size']}), "
                             f"not [{x.min()}, {x.max()}]")
        return x.astype(np.int64)
    if x.dtype.kind != "f":
        raise TypeError(f"patch input must be a float array, not {x.dtype.name}")
    if x.ndim < 2 or x.shape[-1] != cfg["patch_dim"]:
        raise ValueError(f"patch input must be (..., T, {cfg['patch_dim']}), not {x.shape}")
    return quant.quantize_act(x, float(artifact.scales["input"]))


def model_forward_int(artifact, x_q: np.ndarray) -> np.ndarray:
    """The whole LightTransformer in integers only (the model the hardware must equal).

    ``artifact`` is a :class:`sw.artifact.Artifact` (``.config`` dict, ``.arrays`` of integer
    tensors). ``x_q``: int8 patches ``(B, T, patch_dim)`` or token ids ``(B, T)`` (a single
    sample without the batch axis works too) from :func:`quantize_input`. Returns int32 logits
    ``(B, n_classes)`` for "classify" (mean over tokens) or ``(B, T, n_classes)`` for "lm"; the
    real logits are ``logits * artifact.scales["logits"]`` (one scale, so argmax is exact).

    Per block (pre-LN): ``x = x + proj(attn(ln1(x)))``, ``x = x + fc2(gelu(fc1(ln2(x))))``.
    """
    cfg, a = artifact.config, artifact.arrays
    x = np.asarray(x_q)
    single = x.ndim == (2 if cfg["input_kind"] == "patches" else 1)
    if single:
        x = x[None]
    if cfg["input_kind"] == "patches":
        if x.dtype != np.int8 or x.ndim != 3 or x.shape[-1] != cfg["patch_dim"]:
            raise ValueError(f"x_q must be int8 (B, T, {cfg['patch_dim']}), not "
                             f"{x.dtype.name} {x.shape}; use quantize_input")
        h = linear_int(x, a["embed.w"], a["embed.b"], a["embed.mult"], a["embed.shift"])
    else:
        if x.ndim != 2:
            raise ValueError(f"token ids must be (B, T), not {x.shape}")
        h = embedding_int(x, a["embed.table"])                           # (B, T, d) int8
    batch, seq_len = x.shape[:2]
    if not 1 <= seq_len <= cfg["seq_len"]:
        raise ValueError(f"sequence length must be in [1, {cfg['seq_len']}], not {seq_len}")
    if cfg["task"] == "classify" and seq_len != cfg["seq_len"]:
        raise ValueError(f"classify models take exactly T={cfg['seq_len']} tokens, not {seq_len}")
    d, n_heads = cfg["d_model"], cfg["n_heads"]
    hd = d // n_heads
    pos = np.broadcast_to(a["pos.table"][:seq_len], h.shape)            # (B, T, d) int8
    x = residual_add(h, pos, a["pos.add.mult"], int(a["pos.add.shift"]))  # (B, T, d) int8
    window, causal = _attention_span(cfg, seq_len)

    def ln(name: str, t: np.ndarray) -> np.ndarray:
        return layernorm_int(t, a[name + ".gamma"], a[name + ".beta"], a[name + ".mult"],
                             a[name + ".shift"], int(a[name + ".eps"]))

    def lin(name: str, t: np.ndarray) -> np.ndarray:
        return linear_int(t, a[name + ".w"], a[name + ".b"], a[name + ".mult"],
                          a[name + ".shift"])

    for i in range(cfg["n_layers"]):
        p = f"blocks.{i}."
        qkv = lin(p + "attn.qkv", ln(p + "ln1", x))                      # (B, T, 3d) int8
        q, k, v = (qkv[..., j * d:(j + 1) * d].reshape(batch, seq_len, n_heads, hd)
                   for j in range(3))                                    # (B, T, H, hd) int8
        params = AttentionQuant(*(int(c) for c in a[p + "attn.quant"]))
        att = np.empty_like(q)                                           # (B, T, H, hd) int8
        for b in range(batch):
            for hh in range(n_heads):
                att[b, :, hh] = windowed_attention_int(q[b, :, hh], k[b, :, hh], v[b, :, hh],
                                                       window, causal, params)
        o = lin(p + "attn.proj", att.reshape(batch, seq_len, d))         # (B, T, d) int8
        x = residual_add(x, o, a[p + "add1.mult"], int(a[p + "add1.shift"]))
        f = lin(p + "ffn.fc1", ln(p + "ln2", x))                         # (B, T, d_ff) int8
        f = lin(p + "ffn.fc2", lut_apply(f, a[p + "ffn.gelu_lut"]))      # (B, T, d) int8
        x = residual_add(x, f, a[p + "add2.mult"], int(a[p + "add2.shift"]))
    h = ln("ln_f", x)                                                    # (B, T, d) int8
    if cfg["task"] == "classify":
        pooled = mean_pool_int(h, a["pool.mult"], a["pool.shift"])       # (B, d) int8
        logits = gemm_acc(pooled, a["head.w"], a["head.b"])              # (B, C) int32
    else:
        logits = gemm_acc(h.reshape(-1, d), a["head.w"], a["head.b"]).reshape(
            batch, seq_len, -1)                                          # (B, T, C) int32
    return logits[0] if single else logits
