# SPDX-License-Identifier: Apache-2.0
"""Processing element of the output-stationary systolic array (:mod:`hw.systolic`).

A PE multiplies the int8 activation arriving from the left by the int8 weight arriving from
above and accumulates the products of one tile in an int32 register (narrower where the
tile length is bounded: ``acc_width``). Operands are passed on to
the right / downwards through one register each, so a grid of PEs forms the systolic wavefront.
At the operand that carries ``last`` the PE publishes the finished dot product for one cycle on
``result`` and restarts its accumulator from zero, so the next tile's products accumulate while
the array drains the previous one (the "shadow" is ``result`` plus the drain network downstream).

Numerics: ``result = sum_k a_k * w_k`` wrapped to ``acc_width`` bits (int32 by default);
:func:`sw.ref.gemm_acc` raises on int32 overflow, and :func:`hw.numerics.accumulator_width` of
the longest tile is enough for every sum, so a wrap can only happen for inputs the reference
rejects or for tiles longer than the array was built for.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_bool, check_int
from hw.lut_multiplier import LutMultiplier
from hw.multiplier import Multiplier, check_dsp_options, make_multiplier
from hw.numerics import ACC_WIDTH, ACT_WIDTH, WGT_WIDTH
from hw.unit import Setting

__all__ = ["ProcessingElement"]


class ProcessingElement(wiring.Component):
    """int8 x int8 -> int32 multiply-accumulate cell (output stationary).

    All inputs are sampled when ``en`` is high; with ``en`` low every register holds (the array
    uses one clock enable for backpressure).

    Parameters
    ----------
    use_dsp : bool
        Let :func:`hw.multiplier.make_multiplier` use a hard DSP block where the platform has one.
    family : str or None
        Force a platform family for the multiplier (``"ecp5"``), see :func:`make_multiplier`.
    lut_multiplier : bool
        Multiply with :class:`hw.lut_multiplier.LutMultiplier` (fabric adders, never a DSP
        block, same latency) instead of :func:`make_multiplier`'s choice.
    acc_width : int
        Width of the accumulator and ``result`` (16..32, default 32): a tile of at most ``K``
        operand pairs needs :func:`hw.numerics.accumulator_width` of ``K`` bits, and wraps
        at this width beyond it.

    Members
    -------
    en : In(1)
        Clock enable.
    a_i, w_i : In(signed(8))
        Activation (from the left) and weight (from above); int8, Q0 integers.
    valid_i, last_i : In(1)
        The operand pair is real / is the last of its tile (travel with ``a_i``).
    a_o, w_o, valid_o, last_o : Out(...)
        The inputs delayed by one enabled cycle (to the right / downwards).
    result : Out(signed(acc_width))
        The tile's dot product (int32 wrapped to ``acc_width`` bits), shown for exactly one
        enabled cycle, ``latency`` enabled cycles after the ``last`` operand pair was at the
        inputs; zero otherwise (so a column of PEs can be merged by OR).
    done : Out(1)
        High in the cycle ``result`` is shown.

    Attributes
    ----------
    latency : int
        ``make_multiplier(...).latency + 2`` (= 4): operands at the inputs to ``result``
        (multiplier, a fabric product register, the accumulator).
    """

    use_dsp = Setting("DSP multiplier where the platform has one.")
    lut_multiplier = Setting("Fabric (LUT) multiplier instead of make_multiplier's choice.")
    acc_width = Setting("Width of the accumulator and ``result``.")

    def __init__(self, *, use_dsp: bool = True, family: str | None = None,
                 lut_multiplier: bool = False, acc_width: int = ACC_WIDTH):
        check_dsp_options(use_dsp, family)
        self._use_dsp = use_dsp
        self._family = family
        self._lut_multiplier = check_bool("lut_multiplier", lut_multiplier)
        self._acc_width = check_int("acc_width", acc_width, ACT_WIDTH + WGT_WIDTH, ACC_WIDTH)
        super().__init__({
            "en": In(1),
            "a_i": In(signed(ACT_WIDTH)),
            "w_i": In(signed(WGT_WIDTH)),
            "valid_i": In(1),
            "last_i": In(1),
            "a_o": Out(signed(ACT_WIDTH)),
            "w_o": Out(signed(WGT_WIDTH)),
            "valid_o": Out(1),
            "last_o": Out(1),
            "result": Out(signed(self._acc_width)),
            "done": Out(1),
        })

    @property
    def latency(self) -> int:
        # Every make_multiplier() result has the same latency; +1 for the fabric product
        # register, +1 for the accumulator.
        return Multiplier.latency + 2

    def elaborate(self, platform):
        m = Module()
        if self._lut_multiplier:
            mul = LutMultiplier(ACT_WIDTH, WGT_WIDTH)
        else:
            mul = make_multiplier(platform, ACT_WIDTH, WGT_WIDTH, use_dsp=self._use_dsp,
                                  family=self._family)
        m.submodules.mul = mul
        assert mul.latency + 2 == self.latency

        m.d.comb += [
            mul.en.eq(self.en),
            mul.a.eq(self.a_i),
            mul.b.eq(self.w_i),
        ]

        # Flags follow the product through the multiplier's pipeline.
        valid_d = [self.valid_i]
        last_d = [self.last_i]
        for i in range(mul.latency + 1):
            v = Signal(name=f"valid_d{i + 1}")
            lst = Signal(name=f"last_d{i + 1}")
            with m.If(self.en):
                m.d.sync += [v.eq(valid_d[-1]), lst.eq(last_d[-1] & valid_d[-1])]
            valid_d.append(v)
            last_d.append(lst)
        prod_valid, prod_last = valid_d[-1], last_d[-1]

        # Product register in the fabric: the DSP-output -> accumulator route was the critical
        # path of an 8x8 GemmPipeline on ECP5-85F (5.0 ns of routing, 112 MHz, nextpnr-ecp5 0.11).
        prod = Signal(signed(ACT_WIDTH + WGT_WIDTH))
        with m.If(self.en):
            m.d.sync += prod.eq(mul.p)

        # The accumulator has no domain reset either: it clears at a tile's last product and in
        # the cycles of a domain reset and the one after (`clear`, which has one), both through
        # the flip-flops' LSR (one LUT for all its bits; a domain reset on them as well would
        # leave the clear to a LUT per bit). The valid flags reset, so no product reaches it
        # before the clear.
        acc = Signal(signed(self._acc_width), reset_less=True)
        clear = Signal(init=1, name="acc_clear")
        m.d.sync += clear.eq(0)
        acc_sum = Signal(signed(self._acc_width))
        m.d.comb += acc_sum.eq(acc + prod)           # wraps at acc_width (module docstring)

        # The result register has no domain reset: its only reset is the zero of every enabled
        # cycle without a finished sum, which then maps to the flip-flops' LSR (one LUT for
        # all its bits) instead of a LUT per bit beside the domain reset's LSR. What it holds
        # after a domain reset goes out with `done` low (reset) and is zero one enabled cycle
        # later.
        result = Signal(signed(self._acc_width), reset_less=True)
        m.d.comb += self.result.eq(result)
        with m.If(self.en):
            m.d.sync += [
                self.a_o.eq(self.a_i),
                self.w_o.eq(self.w_i),
                self.valid_o.eq(self.valid_i),
                self.last_o.eq(self.last_i),
                self.done.eq(prod_valid & prod_last),
                result.eq(0),
            ]
            with m.If(prod_valid & prod_last):
                m.d.sync += result.eq(acc_sum)
        with m.If(clear | self.en & prod_valid & prod_last):
            m.d.sync += acc.eq(0)
        with m.Elif(self.en & prod_valid):
            m.d.sync += acc.eq(acc_sum)
        return m
