# SPDX-License-Identifier: Apache-2.0
"""Integer formats and constants of the numerics spec, defined once.

This module is pure Python (no Amaranth, no NumPy): ``hw/`` builds its datapaths from these
numbers and ``sw/quant.py`` / ``sw/ref.py`` (the normative integer functions) import them, so a
width or a rounding rule cannot drift between the gateware and the reference model.
``docs/numerics.md`` explains each format; ``docs/architecture.md`` says which modules are
pure-spec (importable by both sides).
"""

from __future__ import annotations

import enum

__all__ = [
    "ACC_MAX", "ACC_MIN", "ACC_WIDTH", "ACT_WIDTH", "ATTN_MAX_HEAD_DIM", "INT8_MAX", "INT8_MIN",
    "ISQRT_ITERATIONS", "LN_FRAC_BITS", "LN_MAX_DIM", "LN_RECIP_BITS", "LUT_SIZE", "MULT_BITS",
    "MULT_LIMIT", "ROUNDING", "Round", "SHIFT_BITS", "SHIFT_MAX", "SHIFT_MIN",
    "SOFTMAX_EXP_BITS", "SOFTMAX_EXP_FRAC_BITS", "SOFTMAX_EXP_TABLE", "SOFTMAX_MAX_WINDOW",
    "SOFTMAX_NORM_SHIFT", "SOFTMAX_PROB_BITS", "SOFTMAX_RECIP_BITS", "SOFTMAX_U_INT_BITS",
    "SOFTMAX_U_MAX", "WEIGHT_MAX", "WEIGHT_MIN", "WGT_WIDTH", "accumulator_width",
    "layernorm_pre_shift",
]

# -- operand and accumulator formats --------------------------------------------------------------
ACT_WIDTH = 8                              # int8 activations, per-tensor scale, zero-point 0
WGT_WIDTH = 8                              # int8 weights, per-output-channel scale
ACC_WIDTH = 32                             # int32 accumulators and biases (scale s_x * s_w)
INT8_MIN, INT8_MAX = -128, 127
WEIGHT_MIN, WEIGHT_MAX = -127, 127         # narrow range: -w is always representable
ACC_MIN, ACC_MAX = -(1 << 31), (1 << 31) - 1


def accumulator_width(k_depth: int | None) -> int:
    """Bits of a signed register that holds every sum of up to ``k_depth`` int8 x int8
    products exactly (``None``: no bound, :data:`ACC_WIDTH`), at most :data:`ACC_WIDTH`.

    The products lie in ``[-128 * 127, 128 * 128]``, so ``K`` of them in ``[-16256 K,
    16384 K]``: for ``K = 2**k`` that is ``16 + k`` bits (24 for 256, 26 for 1024). Such a sum
    sign-extended to int32 is the int32 sum bit for bit; a hardware accumulator of this width
    is exact wherever ``K <= k_depth`` is enforced (the GEMM core's tiles)."""
    if k_depth is None:
        return ACC_WIDTH
    if isinstance(k_depth, bool) or not isinstance(k_depth, int) or k_depth < 1:
        raise ValueError(f"k_depth must be a positive int or None, not {k_depth!r}")
    return min(ACC_WIDTH, (INT8_MIN * INT8_MIN * k_depth).bit_length() + 1)

# -- requantization: y = sat8((acc * mult + 2**(shift-1)) >> shift) ---
MULT_BITS = 15                             # unsigned multiplier, normalised to [2**14, 2**15)
MULT_LIMIT = 1 << MULT_BITS                # multipliers are in [0, MULT_LIMIT)
SHIFT_MIN, SHIFT_MAX = 1, 47               # |acc * mult| < 2**46, so shift 47 already gives 0
SHIFT_BITS = SHIFT_MAX.bit_length()        # 6: a shift field holds 0..63


class Round(enum.Enum):
    """Rounding rules. lightformer uses exactly one: :data:`ROUNDING`.

    HALF_UP
        Round to nearest, ties toward +infinity: ``(x + 2**(t-1)) >> t`` with an arithmetic
        (flooring) shift. ``2.5 -> 3``, ``-2.5 -> -2``, ``-2.51 -> -3``. One adder, no
        sign logic: the cheapest correct rounding in hardware.
    """

    HALF_UP = "half_up"


ROUNDING = Round.HALF_UP

# -- elementwise nonlinearities ------------------------------------------------------------------
LUT_SIZE = 256                             # int8 -> int8 tables indexed by x + 128

# -- integer softmax (sw.ref.softmax_int) ----------------------------------------------------------
SOFTMAX_EXP_FRAC_BITS = 6                  # table index bits: u is in units of 2**-6 (log2 domain)
SOFTMAX_EXP_BITS = 15                      # e = 1.0 is 2**15 (Q1.15, 16-bit unsigned)
SOFTMAX_U_INT_BITS = 4                     # integer part of u: right shift 0..15
SOFTMAX_U_MAX = (1 << (SOFTMAX_U_INT_BITS + SOFTMAX_EXP_FRAC_BITS)) - 1       # 1023 -> e = 0
SOFTMAX_PROB_BITS = 15                     # probabilities Q1.15: 1.0 == 2**15 is representable
SOFTMAX_RECIP_BITS = 38                    # r = 2**38 // S, S in [2**15, 2**23] -> r < 2**24
SOFTMAX_NORM_SHIFT = SOFTMAX_RECIP_BITS - SOFTMAX_PROB_BITS      # 23: p = (e * r + 2**22) >> 23
SOFTMAX_MAX_WINDOW = 256                   # S < 2**23 + 1 keeps the sum 24 bits wide
ATTN_MAX_HEAD_DIM = 128                    # |q . k| <= 128 * 128 * 128 = 2**21

#: ``round(2**15 * 2**(-f / 64))`` for ``f = 0..63`` (Q1.15; entry 0 is exactly 1.0).
SOFTMAX_EXP_TABLE: tuple[int, ...] = tuple(
    round(2 ** SOFTMAX_EXP_BITS * 2 ** (-f / (1 << SOFTMAX_EXP_FRAC_BITS)))
    for f in range(1 << SOFTMAX_EXP_FRAC_BITS))

# -- integer LayerNorm (sw.ref.layernorm_int) ---
LN_FRAC_BITS = 10                          # normalized value n = (x - mean) / std in Q?.10
LN_RECIP_BITS = 48                         # LayerNorm reciprocal 2**48 // r (r < 2**31)
ISQRT_ITERATIONS = 32                      # digit-by-digit sqrt of a 64-bit value: 2 bits/step
LN_MAX_DIM = 1024                          # |n| <= sqrt(d) * 2**10 <= 2**15 for d <= 1024


def layernorm_pre_shift(d: int) -> int:
    """Left shift ``k`` (by 2k bits) of the variance term before the square root, so that
    ``(d * S + eps_q) << 2k < 2**61`` for every int8 row of width ``d``: the root then carries
    ``k`` extra fraction bits. A constant of the hardware unit (it depends on ``d`` only);
    ``sw.ref.layernorm_int`` and ``hw.layernorm.LayerNorm`` both use this one definition."""
    return max(0, (61 - (d ** 4 << 17).bit_length()) // 2)
