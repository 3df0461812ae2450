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

The API is strict, because a silent conversion would change a result: where an integer is meant,
a float, bool or string raises ``TypeError`` (a multiplier of 1.9 is not truncated to 1); a value
whose int64 intermediate could overflow raises ``ValueError`` (``round_shift`` takes
``|x| < 2**62``); NaN or infinity in a float input, and a scale that is not positive, raise
``ValueError``. The checks are vectorised (one pass over each array).
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
    "SHIFT_MIN", "WEIGHT_MAX", "WEIGHT_MIN", "as_int64", "check_scale", "check_weights",
    "quantize_act", "quantize_bias", "quantize_multiplier", "quantize_weight_per_channel",
    "requant_params", "requantize", "round_shift", "saturate",
]

#: ``round_shift`` takes ``|x| < 2**62``: ``x + 2**(shift - 1)`` then cannot leave int64.
ROUND_SHIFT_LIMIT = 1 << 62
_INT64_MAX = (1 << 63) - 1


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_int64(name: str, x: object) -> np.ndarray:
    """``x`` as an int64 array, refusing anything that is not already integer-valued.

    ``TypeError`` for floats, bools, strings and other objects (no truncation, no parsing);
    ``ValueError`` for Python integers outside int64.
    """
    try:
        a = np.asarray(x)
    except (OverflowError, ValueError) as exc:
        raise ValueError(f"{name} must be integers within int64, not {_show(x)} ({exc})") from None
    if a.dtype.kind == "O" and a.size and all(
            isinstance(v, int) and not isinstance(v, bool) for v in a.ravel()):
        raise ValueError(f"{name} must be within int64, not {_show(x)}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer or an integer array, not "
                        f"{a.dtype.name} {_show(x)}")
    if a.dtype == np.uint64 and a.size and int(a.max()) > _INT64_MAX:
        raise ValueError(f"{name} must be within int64, not {int(a.max())}")
    return a.astype(np.int64, copy=False)


def _as_real(name: str, x: object) -> np.ndarray:
    """``x`` as a float64 array of finite values: ``TypeError`` for bools, strings and objects,
    ``ValueError`` for NaN or infinity."""
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real number or array, not {a.dtype.name} {_show(x)}")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinity; cannot quantize")
    return a


def check_scale(name: str, value: object) -> float:
    """A positive finite scale as a float: ``TypeError`` for a non-number (bool, string),
    ``ValueError`` for zero, a negative value, NaN or infinity."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive finite number, not {_show(value)}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")
    return value


def _check_scales(name: str, values: object) -> np.ndarray:
    a = _as_real(name, values)
    if np.any(a <= 0):
        raise ValueError(f"{name} must be positive, not {float(a[a <= 0].ravel()[0])!r}")
    return a


def check_weights(name: str, w: np.ndarray) -> np.ndarray:
    """An int8 weight array in the narrow range ``[WEIGHT_MIN, WEIGHT_MAX]`` (``-128`` is not a
    weight: ``-w`` must be representable); returns it."""
    w = np.asarray(w)
    if w.dtype != np.int8:
        raise TypeError(f"{name} must be an int8 array, not {w.dtype.name}")
    if w.size and int(w.min()) < WEIGHT_MIN:
        raise ValueError(f"{name} holds {int(w.min())}; int8 weights are in [{WEIGHT_MIN}, "
                         f"{WEIGHT_MAX}] (quantize with quantize_weight_per_channel)")
    return w


def saturate(x: np.ndarray | int, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    """Clamp to ``[lo, hi]`` (int64 in, int64 out); ``TypeError`` for non-integers."""
    return np.clip(as_int64("saturate input", x), lo, hi)


def round_shift(x: np.ndarray | int, shift: np.ndarray | int,
                rounding: Round = ROUNDING) -> np.ndarray:
    """``x / 2**shift`` rounded by ``rounding``; int64 arithmetic.

    ``x`` and ``shift`` are integers (``TypeError`` otherwise), ``shift`` in
    ``[SHIFT_MIN, SHIFT_MAX]`` and ``|x| < 2**62`` (``ValueError``), so the rounding term cannot
    overflow int64.
    """
    if rounding is not Round.HALF_UP:
        raise ValueError(f"Unsupported rounding rule {rounding!r}; lightformer uses {ROUNDING}")
    x = as_int64("round_shift x", x)
    shift = as_int64("shift", shift)
    if np.any(shift < SHIFT_MIN) or np.any(shift > SHIFT_MAX):
        raise ValueError(f"shift must be in [{SHIFT_MIN}, {SHIFT_MAX}], not {_show(shift)}")
    if x.size and (int(x.max()) >= ROUND_SHIFT_LIMIT or int(x.min()) <= -ROUND_SHIFT_LIMIT):
        raise ValueError("round_shift input must be in (-2**62, 2**62) so that the rounding term "
                         "cannot overflow int64")
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
    Returns ``np.int8``. Raises ``TypeError`` for non-integer arguments and ``ValueError`` for
    an accumulator outside int32 or a (mult, shift) pair outside the hardware's range.
    """
    acc = as_int64("accumulator", acc)
    mult = as_int64("requant multiplier", mult)
    shift = as_int64("requant shift", shift)
    if np.any(acc < ACC_MIN) or np.any(acc > ACC_MAX):
        raise ValueError("requantize: accumulator outside int32; the sum overflowed the "
                         "32-bit accumulator (reduce K or the bias magnitude)")
    _check_requant_pair(mult, shift)
    return saturate(round_shift(acc * mult, shift, rounding)).astype(np.int8)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real scale ``real >= 0`` -> ``(mult, shift)`` with ``real ~= mult / 2**shift``.

    ``mult`` is normalised to ``[2**14, 2**15)`` (15 significant bits) when ``shift`` allows;
    very small scales are denormalised at ``shift = SHIFT_MAX`` (possibly to ``mult = 0``).
    Rounds half up. ``TypeError`` if ``real`` is not a number (a bool or a string);
    ``ValueError`` if it is negative, not finite or ``>= 2**14``.
    """
    if isinstance(real, (bool, np.bool_)) or not isinstance(
            real, (int, float, np.floating, np.integer)):
        raise TypeError(f"requant scale must be a finite number, not {_show(real)}")
    if not math.isfinite(real):
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
    """Per-channel ``(mult, shift)`` arrays (int64) for ``acc * scale_in / scale_out``; every
    scale positive and finite."""
    scale_in = np.atleast_1d(_check_scales("input scales", scale_in))
    scale_out = check_scale("output scale", scale_out)
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
    w_f = _as_real("weights", w_f)
    # An empty array or a scalar has no channel to scale (NumPy would say "zero-size array to
    # reduction operation" or divide by zero), and axis % ndim would wrap any axis into range.
    if w_f.ndim == 0 or w_f.size == 0:
        raise ValueError(f"weights must be a non-empty array with a channel axis, not shape "
                         f"{w_f.shape}")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) \
            or not -w_f.ndim <= axis < w_f.ndim:
        raise ValueError(f"axis must be an integer in [{-w_f.ndim}, {w_f.ndim}) for weights of "
                         f"shape {w_f.shape}, not {axis!r}")
    axis = int(axis) % w_f.ndim
    reduce = tuple(i for i in range(w_f.ndim) if i != axis)
    absmax = np.max(np.abs(w_f), axis=reduce) if reduce else np.abs(w_f)
    scale = np.where(absmax > 0, absmax / WEIGHT_MAX, 1.0)
    shape = [1] * w_f.ndim
    shape[axis] = -1
    w_q = np.clip(_round_half_away(w_f / scale.reshape(shape)), WEIGHT_MIN, WEIGHT_MAX)
    return w_q.astype(np.int8), scale


def quantize_act(x_f: np.ndarray, scale: float) -> np.ndarray:
    """Float activations -> int8 at per-tensor ``scale`` (half away from zero, saturating).

    ``ValueError`` for NaN or infinity in ``x_f`` (saturating them would hide a broken input)
    and for a scale that is not positive and finite.
    """
    scale = check_scale("activation scale", scale)
    x = _round_half_away(_as_real("activations", x_f) / scale)
    return np.clip(x, INT8_MIN, INT8_MAX).astype(np.int8)


def quantize_bias(b_f: np.ndarray, scale_x: float, scale_w: np.ndarray) -> np.ndarray:
    """Float bias -> int32 at scale ``scale_x * scale_w`` (saturating to int32).

    ``ValueError`` for NaN or infinity in ``b_f`` and for scales that are not positive and finite
    (a negative scale would flip the bias's sign).
    """
    s = check_scale("input scale", scale_x) * _check_scales("weight scales", scale_w)
    b = _round_half_away(_as_real("bias", b_f) / s)
    return np.clip(b, ACC_MIN, ACC_MAX).astype(np.int32)
