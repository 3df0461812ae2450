# SPDX-License-Identifier: Apache-2.0
"""Integer-softmax pipeline pieces of the windowed-attention unit (``hw/attention.py``).

Each piece is a fixed-latency pipeline without handshake: a value presented on its input in
cycle ``n`` appears on its output in cycle ``n + latency``, one value per cycle. The attention
unit tracks validity beside them and only issues work that can never stall, so the pieces need
no enables. Numerics are ``sw/ref.py`` (``softmax_u_int``, ``softmax_exp_int``,
``softmax_recip_int``, ``softmax_normalize_int``); the unit's output requantization is the GEMM
requantizer's lane, :class:`hw.requant.RequantLane` (``sw.quant.requantize``); the spec is
``docs/numerics.md``, "Integer softmax". Both sides take the formats from :mod:`hw.numerics`.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_int
from hw.multiplier import Multiplier, check_dsp_options, make_multiplier
from hw.numerics import (
    MULT_BITS,
    SHIFT_BITS,
    SOFTMAX_EXP_BITS,
    SOFTMAX_EXP_FRAC_BITS,
    SOFTMAX_EXP_TABLE,
    SOFTMAX_MAX_WINDOW,
    SOFTMAX_NORM_SHIFT,
    SOFTMAX_PROB_BITS,
    SOFTMAX_RECIP_BITS,
    SOFTMAX_U_INT_BITS,
    SOFTMAX_U_MAX,
)
from hw.unit import Setting

__all__ = [
    "EXP_WIDTH", "MULT_LATENCY", "PROB_WIDTH", "RECIP_WIDTH", "SLICED_LATENCY", "SUM_WIDTH",
    "U_WIDTH", "Normalizer", "Reciprocal", "ScoreScaler", "SoftmaxExp", "dsp_product",
    "sliced_product",
]

# Signal widths, derived from the formats of hw.numerics.
U_WIDTH = SOFTMAX_U_INT_BITS + SOFTMAX_EXP_FRAC_BITS            # 10: u is Q4.6, log2 units
EXP_WIDTH = SOFTMAX_EXP_BITS + 1                                # 16: e in Q1.15, 0..2**15
PROB_WIDTH = SOFTMAX_PROB_BITS + 1                              # 16: p in Q1.15, 0..2**15
SUM_WIDTH = (SOFTMAX_MAX_WINDOW << SOFTMAX_EXP_BITS).bit_length()   # 24: S in [2**15, 2**23]
RECIP_WIDTH = (1 << (SOFTMAX_RECIP_BITS - SOFTMAX_EXP_BITS)).bit_length()  # 24: r <= 2**23


DSP_SLICE = 17                          # unsigned slice of a wide operand: fits an 18-bit DSP port


def dsp_product(m: Module, platform, a, b, *, name: str, use_dsp: bool = True,
                family: str | None = None):
    """``a * b`` on one registered multiplier from :func:`hw.multiplier.make_multiplier`.

    A ``MULT18X18D`` with its input and output registers on ECP5 (unless ``use_dsp`` is
    ``False``), fabric registers around ``*`` elsewhere and in simulation; ``MULT_LATENCY`` (2)
    cycles. Unsigned operands get one more bit so they stay non-negative; on the DSP path each
    operand must then fit 18 bits.
    """
    aw = len(a) + (0 if a.shape().signed else 1)
    bw = len(b) + (0 if b.shape().signed else 1)
    mul = make_multiplier(platform, aw, bw, use_dsp=use_dsp, family=family)
    m.submodules[name] = mul
    m.d.comb += [mul.a.eq(a), mul.b.eq(b), mul.en.eq(1)]
    return mul.p


def sliced_product(m: Module, platform, a, b, *, name: str, use_dsp: bool = True,
                   family: str | None = None):
    """``a * b`` in ``SLICED_LATENCY`` (3) register stages, ``b`` cut into 17-bit slices.

    One :func:`dsp_product` per slice (``a`` at most 17 bits unsigned or 18 signed, a low
    slice 17 bits unsigned, the top slice keeps ``b``'s sign), then one register for the shifted
    sum. Yosys would otherwise chain two DSPs and a fabric adder in one cycle (unregistered
    multiplier paths cost ~40 % Fmax on ECP5). Returns the last register (exact width).
    """
    signed_out = a.shape().signed or b.shape().signed
    width = len(a) + len(b) + (1 if signed_out and not (a.shape().signed and b.shape().signed)
                               else 0)
    parts = []
    for k, lo in enumerate(range(0, len(b), DSP_SLICE)):
        hi = min(len(b), lo + DSP_SLICE)
        top = hi == len(b)
        piece = b[lo:hi].as_signed() if (top and b.shape().signed) else b[lo:hi]
        parts.append((dsp_product(m, platform, a, piece, name=f"{name}_mul{k}",
                                  use_dsp=use_dsp, family=family), lo))
    total = Signal(signed(width) if signed_out else unsigned(width), name=f"{name}_prod")
    acc = parts[0][0]
    for pp, lo in parts[1:]:
        acc = acc + (pp << lo)
    m.d.sync += total.eq(acc)
    return total


MULT_LATENCY = Multiplier.latency           # 2
SLICED_LATENCY = MULT_LATENCY + 1           # 3


class SoftmaxExp(wiring.Component):
    """``e = SOFTMAX_EXP_TABLE[u & 63] >> (u >> 6)``: a 64 x 16-bit ROM, then a 0..15 shift.

    Members
    -------
    u : In(unsigned(10))
        Softmax input, Q4.6 log2 units (``sw.ref.softmax_u_int``).
    e : Out(unsigned(16))
        ``2**(-u/64)`` in Q1.15 (``sw.ref.softmax_exp_int``), ``latency`` cycles later.
    """

    latency = 2

    def __init__(self):
        super().__init__({"u": In(unsigned(U_WIDTH)), "e": Out(unsigned(EXP_WIDTH))})

    def elaborate(self, platform):
        m = Module()
        table = Array(Const(v, unsigned(EXP_WIDTH)) for v in SOFTMAX_EXP_TABLE)
        # Stage 1: ROM lookup (registered); stage 2: the 0..15 right shift.
        mant = Signal(unsigned(EXP_WIDTH))
        exp = Signal(unsigned(SOFTMAX_U_INT_BITS))
        m.d.sync += [mant.eq(table[self.u[:SOFTMAX_EXP_FRAC_BITS]]),
                     exp.eq(self.u[SOFTMAX_EXP_FRAC_BITS:]),
                     self.e.eq(mant >> exp)]
        return m


class _SlicedProductStage(wiring.Component):
    """A stage built around one :func:`sliced_product` with the multiplier options
    ``use_dsp``/``family`` (checked here, as :func:`hw.multiplier.check_dsp_options`)."""

    def __init__(self, members: dict[str, object], *, use_dsp: bool, family: str | None):
        check_dsp_options(use_dsp, family)
        self._use_dsp, self._family = use_dsp, family
        super().__init__(members)

    def _product(self, m: Module, platform, a, b, name: str) -> Value:
        return sliced_product(m, platform, a, b, name=name, use_dsp=self._use_dsp,
                              family=self._family)


class ScoreScaler(_SlicedProductStage):
    """``u = min((diff * mult + 2**(shift-1)) >> shift, 1023)`` (``sw.ref.softmax_u_int``).

    ``SLICED_LATENCY + 4`` register stages: partial products (registered DSPs), product,
    rounding add, shift in two steps, saturation (each a single carry chain or a short mux
    tree, for Fmax).
    ``shift`` must be in 1..47 and ``mult``/``shift`` are meant to be static per sequence.

    Parameters
    ----------
    diff_width : int
        Width of the unsigned score difference ``m - s`` (23 for head_dim 128).
    use_dsp, family : bool, str or None
        Multiplier options (:func:`hw.multiplier.make_multiplier`).

    Members
    -------
    diff : In(unsigned(diff_width))
        Row maximum minus score, int32 score units.
    mult : In(unsigned(15))
        ``AttentionQuant.score_mult``.
    shift : In(unsigned(6))
        ``AttentionQuant.score_shift`` (1..47).
    u : Out(unsigned(10))
        Softmax input, Q4.6 log2 units, ``latency`` cycles after ``diff``.
    """

    latency = SLICED_LATENCY + 4
    diff_width = Setting("Bits of ``diff``.")

    def __init__(self, diff_width: int, *, use_dsp: bool = True, family: str | None = None):
        self._diff_width = check_int("diff_width", diff_width, 1, 32)
        super().__init__({
            "diff": In(unsigned(diff_width)),
            "mult": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "u": Out(unsigned(U_WIDTH)),
        }, use_dsp=use_dsp, family=family)

    def elaborate(self, platform):
        m = Module()
        prod = self._product(m, platform, self.mult, self.diff, "score")
        pw = len(prod)
        rounded = Signal(unsigned(pw + 1))
        # 2**(shift-1) (0 for shift 0), registered: shift is static, so this only takes the
        # decoder out of the adder's path.
        half = Signal(unsigned(pw + 1))
        m.d.sync += half.eq((Const(1, pw + 2) << self.shift) >> 1)
        # The right shift in two register stages of three mux levels each.
        part = Signal(unsigned(pw + 1))
        shifted = Signal(unsigned(pw + 1))
        m.d.sync += [
            rounded.eq(prod + half),
            part.eq(rounded >> self.shift[:3]),
            shifted.eq(part >> Cat(Const(0, 3), self.shift[3:])),
            self.u.eq(Mux(shifted > SOFTMAX_U_MAX, SOFTMAX_U_MAX, shifted)),
        ]
        return m


class Reciprocal(wiring.Component):
    """``r = 2**38 // S`` for ``S`` in ``[2**15, 2**23]``: a pipelined restoring divider.

    One quotient bit per stage, 24 stages, a new ``S`` every cycle. The dividend is the
    constant ``2**38``: the partial remainder starts at ``2**14`` (``< S``) and each stage
    shifts it left by one, subtracts ``S`` when it fits and records the quotient bit
    (``sw.ref.softmax_recip_int``). ``tag`` travels beside ``S``.

    Parameters
    ----------
    tag_width : int
        Width of the side-band tag delayed with the data.

    Members
    -------
    total : In(unsigned(24))
        Exp sum ``S``.
    tag : In(unsigned(tag_width))
        Side band.
    r : Out(unsigned(24))
        ``2**38 // S``, ``latency`` (24) cycles after ``total``.
    o_tag : Out(unsigned(tag_width))
        ``tag``, delayed alike.
    """

    latency = RECIP_WIDTH

    def __init__(self, tag_width: int = 1):
        self._tag_width = check_int("tag_width", tag_width, 1, 64)
        super().__init__({"total": In(unsigned(SUM_WIDTH)), "tag": In(unsigned(tag_width)),
                          "r": Out(unsigned(RECIP_WIDTH)), "o_tag": Out(unsigned(tag_width))})

    def elaborate(self, platform):
        m = Module()
        # Stage k (k = 23 .. 0 by quotient bit) sees a remainder < S <= 2**23: 25-bit subtract.
        rem = Const(1 << (SOFTMAX_RECIP_BITS - RECIP_WIDTH), SUM_WIDTH)   # 2**38 >> 24 < 2**15
        div, quo, tag = self.total, Const(0, 1), self.tag
        for k in reversed(range(RECIP_WIDTH)):
            shifted = Signal(unsigned(SUM_WIDTH + 1), name=f"shifted{k}")
            diff = Signal(signed(SUM_WIDTH + 2), name=f"diff{k}")
            m.d.comb += [shifted.eq(rem << 1), diff.eq(shifted - div)]
            fits = ~diff[-1]                                            # shifted >= S
            n_rem = Signal(unsigned(SUM_WIDTH), name=f"rem{k}")
            n_div = Signal(unsigned(SUM_WIDTH), name=f"div{k}")
            n_quo = Signal(unsigned(RECIP_WIDTH - k), name=f"quo{k}")
            n_tag = Signal(unsigned(self._tag_width), name=f"tag{k}")
            m.d.sync += [
                n_rem.eq(Mux(fits, diff[:SUM_WIDTH], shifted[:SUM_WIDTH])),
                n_div.eq(div),
                n_quo.eq(Cat(fits, quo) if k < RECIP_WIDTH - 1 else fits),
                n_tag.eq(tag),
            ]
            rem, div, quo, tag = n_rem, n_div, n_quo, n_tag
        m.d.comb += [self.r.eq(quo), self.o_tag.eq(tag)]
        return m


class Normalizer(_SlicedProductStage):
    """``p = (e * r + 2**22) >> 23`` (``sw.ref.softmax_normalize_int``), Q1.15 in 0..2**15.

    Parameters
    ----------
    use_dsp, family : bool, str or None
        Multiplier options (:func:`hw.multiplier.make_multiplier`).

    Members
    -------
    e : In(unsigned(16))
        Exp value, Q1.15.
    r : In(unsigned(24))
        Reciprocal of the row's exp sum.
    p : Out(unsigned(16))
        Probability, Q1.15, ``latency`` (4) cycles after ``e``/``r``.
    """

    latency = SLICED_LATENCY + 1

    def __init__(self, *, use_dsp: bool = True, family: str | None = None):
        members = {"e": In(unsigned(EXP_WIDTH)), "r": In(unsigned(RECIP_WIDTH)),
                   "p": Out(unsigned(PROB_WIDTH))}
        super().__init__(members, use_dsp=use_dsp, family=family)

    def elaborate(self, platform):
        m = Module()
        prod = self._product(m, platform, self.e, self.r, "norm")
        m.d.sync += self.p.eq((prod + (1 << (SOFTMAX_NORM_SHIFT - 1))) >> SOFTMAX_NORM_SHIFT)
        return m
