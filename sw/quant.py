# SPDX-License-Identifier: Apache-2.0
"""The numerics spec: the integer functions every result of lightformer is defined by (here and
in ``sw/ref.py``). The constants they use (widths, ranges, ``MULT_BITS``, the shift range, the
rounding rule) live in :mod:`hw.numerics`, which the gateware imports too; they are re-exported
here under their usual names.

Conventions (``docs/numerics.md``):

* Weights: int8 symmetric, per output channel, narrow range ``[-127, 127]``.
* Activations: int8 symmetric, per tensor, zero-point 0, full range ``[-128, 127]``.
* Accumulators and biases: int32 at scale ``scale_x * scale_w``.
* Requantization: ``y = sat8((acc * mult + 2**(shift-1)) >> shift)`` -- one multiply by an unsigned
  ``MULT_BITS``-bit multiplier, one rounding (:attr:`Round.HALF_UP`: ties toward +infinity, by an
  arithmetic right shift), then saturation. The hardware ``Requantizer`` implements exactly this.

Every function widens to int64 *before* arithmetic. Floats appear only where real-valued scales
are turned into integers (compile time); nothing here is used with floats at run time.
"""

from __future__ import annotations

import math

import numpy as np

from hw.numerics import (
    ACC_MAX,
    ACC_MIN,
    INT8_MAX,
    INT8_MIN,
    MULT_BITS,
    ROUNDING,
    SHIFT_MAX,
    SHIFT_MIN,
    WEIGHT_MAX,
    WEIGHT_MIN,
    Round,
)

__all__ = [
    "ACC_MAX", "ACC_MIN", "INT8_MAX", "INT8_MIN", "MULT_BITS", "ROUNDING", "Round", "SHIFT_MAX",
    "SHIFT_MIN", "WEIGHT_MAX", "WEIGHT_MIN", "quantize_act", "quantize_bias",
    "quantize_multiplier", "quantize_weight_per_channel", "requant_params", "requantize",
    "round_shift", "saturate",
]


def saturate(x: np.ndarray | int, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """Clamp to ``[lo, hi]`` (int64 in, int64 out)."""
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def round_shift(x: np.ndarray | int, shift: np.ndarray | int,
                rounding: Round = ROUNDING) -> np.ndarray:
    """``x / 2**shift`` rounded by ``rounding``; ``shift >= 1``; int64 arithmetic."""
    if rounding is not Round.HALF_UP:
        raise ValueError(f"Unsupported rounding rule {rounding!r}; lightformer uses {ROUNDING}")
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < 1) or np.any(shift > 62):
        raise ValueError(f"shift must be in [1, 62], not {shift!r}")
    return (x + (np.int64(1) << (shift - 1))) >> shift


def _check_requant_pair(mult: np.ndarray, shift: np.ndarray) -> None:
    if np.any(mult < 0) or np.any(mult >= (1 << MULT_BITS)):
        bad = mult[(mult < 0) | (mult >= (1 << MULT_BITS))].ravel()[0]
        raise ValueError(
            f"requant multiplier must be in [0, 2**{MULT_BITS}), not {int(bad)}; "
            "build (mult, shift) with sw.quant.quantize_multiplier")
    if np.any(shift < SHIFT_MIN) or np.any(shift > SHIFT_MAX):
        bad = shift[(shift < SHIFT_MIN) | (shift > SHIFT_MAX)].ravel()[0]
        raise ValueError(
            f"requant shift must be in [{SHIFT_MIN}, {SHIFT_MAX}], not {int(bad)}; "
            "build (mult, shift) with sw.quant.quantize_multiplier")


def requantize(acc: np.ndarray | int, mult: np.ndarray | int, shift: np.ndarray | int,
               rounding: Round = ROUNDING) -> np.ndarray:
    """int32 accumulator -> int8: ``sat8(round_shift(acc * mult, shift))``.

    ``mult``/``shift`` broadcast against ``acc`` (per output channel along the last axis).
    Returns ``np.int8``. Raises ``ValueError`` for an accumulator outside int32 or a
    (mult, shift) pair outside the hardware's range.
    """
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(acc < ACC_MIN) or np.any(acc > ACC_MAX):
        raise ValueError("requantize: accumulator outside int32; the sum overflowed the "
                         "32-bit accumulator (reduce K or the bias magnitude)")
    _check_requant_pair(mult, shift)
    return saturate(round_shift(acc * mult, shift, rounding)).astype(np.int8)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real scale ``real >= 0`` -> ``(mult, shift)`` with ``real ~= mult / 2**shift``.

    ``mult`` is normalised to ``[2**14, 2**15)`` (15 significant bits) when ``shift`` allows;
    very small scales are denormalised at ``shift = SHIFT_MAX`` (possibly to ``mult = 0``).
    Rounds half up. ``ValueError`` if ``real`` is negative, not finite or ``>= 2**14``.
    """
    if not isinstance(real, (int, float, np.floating, np.integer)) or not math.isfinite(real):
        raise ValueError(f"requant scale must be a finite number, not {real!r}")
    real = float(real)
    if real < 0:
        raise ValueError(f"requant scale must be non-negative, not {real!r}")
    if real == 0.0:
        return 0, SHIFT_MIN
    frac, exp = math.frexp(real)                      # real = frac * 2**exp, frac in [0.5, 1)
    mult = int(math.floor(frac * (1 << MULT_BITS) + 0.5))
    shift = MULT_BITS - exp
    if mult == (1 << MULT_BITS):                      # rounding carried into the next binade
        mult >>= 1
        shift -= 1
    if shift < SHIFT_MIN:
        raise ValueError(
            f"requant scale {real!r} is too large; the largest is "
            f"{((1 << MULT_BITS) - 1) / 2.0 ** SHIFT_MIN} (mult {MULT_BITS} bits, shift >= 1)")
    if shift > SHIFT_MAX:
        mult = int(math.floor(real * 2.0 ** SHIFT_MAX + 0.5))
        shift = SHIFT_MAX
        if mult == 0:
            shift = SHIFT_MIN
    return mult, shift


def requant_params(scale_in: float | np.ndarray, scale_out: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``(mult, shift)`` arrays (int64) for ``acc * scale_in / scale_out``."""
    scale_in = np.atleast_1d(np.asarray(scale_in, dtype=np.float64))
    if not np.isfinite(scale_out) or scale_out <= 0:
        raise ValueError(f"output scale must be positive and finite, not {scale_out!r}")
    pairs = [quantize_multiplier(float(s) / float(scale_out)) for s in scale_in]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def quantize_weight_per_channel(w_f: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Float weights -> (int8 in ``[-127, 127]``, per-channel scales along ``axis``).

    Scale is ``max|w| / 127`` per channel (a zero channel gets scale 1). Rounds half away
    from zero (compile time only).
    """
    w_f = np.asarray(w_f, dtype=np.float64)
    if not np.all(np.isfinite(w_f)):
        raise ValueError("weights contain NaN or infinity; cannot quantize")
    axis = axis % w_f.ndim
    reduce = tuple(i for i in range(w_f.ndim) if i != axis)
    absmax = np.max(np.abs(w_f), axis=reduce) if reduce else np.abs(w_f)
    scale = np.where(absmax > 0, absmax / WEIGHT_MAX, 1.0)
    shape = [1] * w_f.ndim
    shape[axis] = -1
    w_q = np.clip(_round_half_away(w_f / scale.reshape(shape)), WEIGHT_MIN, WEIGHT_MAX)
    return w_q.astype(np.int8), scale


def quantize_act(x_f: np.ndarray, scale: float) -> np.ndarray:
    """Float activations -> int8 at per-tensor ``scale`` (half away from zero, saturating)."""
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"activation scale must be positive and finite, not {scale!r}")
    x = _round_half_away(np.asarray(x_f, dtype=np.float64) / scale)
    return np.clip(x, INT8_MIN, INT8_MAX).astype(np.int8)


def quantize_bias(b_f: np.ndarray, scale_x: float, scale_w: np.ndarray) -> np.ndarray:
    """Float bias -> int32 at scale ``scale_x * scale_w`` (saturating to int32)."""
    s = float(scale_x) * np.asarray(scale_w, dtype=np.float64)
    b = _round_half_away(np.asarray(b_f, dtype=np.float64) / s)
    return np.clip(b, ACC_MIN, ACC_MAX).astype(np.int32)
