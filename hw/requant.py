# SPDX-License-Identifier: Apache-2.0
"""Requantizer: int32 accumulator rows + per-channel (bias, mult, shift) -> int8 rows.

Bit-exact with ``sw.quant.requantize(acc + bias, mult, shift)`` (rounding
:attr:`sw.quant.Round.HALF_UP`, ``y = sat8((s * mult + 2**(shift-1)) >> shift)``). Per lane::

    S1  s   = acc + bias              (int32, wraps; exact whenever the sum fits int32 --
                                       the reference raises on int32 overflow)
    S2  DSP input registers           s = s_hi * 2**16 + s_lo: two 18x18 products
    S3  p_hi = s_hi * mult, p_lo = s_lo * mult   (s_hi signed 16 bit, s_lo unsigned 16 bit)
    S3' p_hi, p_lo again, in fabric registers    (the DSP blocks may sit far from the adder)
    S4  p   = p_hi * 2**16 + p_lo     (48-bit signed, exact: |p| < 2**46)
    S5  x'  = p >> (8 * ((shift-1) // 8))          arithmetic, coarse: its low 18 bits and
        whether it fits them (below)
    S6  x   = x' >> ((shift-1) % 8)                 arithmetic, fine: x = p >> (shift - 1)
        (low 10 bits kept) and the saturation flags, compared on x' (below)
    S7  y   = sat8((x + 1) >> 1)      ((p + 2**(t-1)) >> t == ((p >> (t-1)) + 1) >> 1)
    then the 2-entry output buffer (:class:`hw.systolic.OutputBuffer`).

Saturation on ``x`` needs no wide add: ``y > 127 <=> x >= 255`` and ``y < -128 <=> x <= -258``;
otherwise ``y`` is bits ``[1:9]`` of the 10-bit ``x + 1``. With ``x = x' >> f`` (``f`` the fine
shift) the flags are compared on ``x'`` one stage earlier: ``x >= 255 <=> x' >= 255 * 2**f`` and
``x <= -258 <=> x' < -257 * 2**f``. Both thresholds lie inside the signed 18-bit range, so S5
keeps only ``x'``'s low 18 bits and a flag for "``x'`` does not fit them" (the sign then says
which bound): ``x' = p >> c`` fits exactly when bits ``17 + c`` to 47 of ``p`` all equal its
sign, which S5 reads from four per-segment flags, not a 48-bit compare.

``shift`` outside ``[1, 47]`` or a wrapped ``acc + bias`` give unspecified (but deterministic)
results; :func:`sw.quant.requantize` rejects both.
"""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_int
from hw.multiplier import Multiplier, check_dsp_options, make_multiplier
from hw.numerics import ACC_WIDTH, ACT_WIDTH, INT8_MAX, INT8_MIN, MULT_BITS, SHIFT_BITS
from hw.params import MAX_DIM
from hw.skid import column_groups
from hw.systolic import OutputBuffer, lanes_layout, result_layout
from hw.unit import Unit

__all__ = ["REQUANT_LATENCY", "RequantLane", "Requantizer", "output_layout", "quant_layout"]

PROD_WIDTH = ACC_WIDTH + MULT_BITS + 1    # 48: |s * mult| < 2**31 * 2**15 = 2**46, exact
#: Bits of the coarse-shifted x' kept by S5: the saturation thresholds 255 * 2**7 and
#: -257 * 2**7 are inside the signed 18-bit range.
X5_BITS = 18
assert -(1 << (X5_BITS - 1)) <= -257 << 7 and 255 << 7 < 1 << (X5_BITS - 1)


def quant_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`Requantizer.i_quant`: per-column ``bias``, ``mult``, ``shift``."""
    return lanes_layout(cols, last=False, bias=signed(ACC_WIDTH), mult=unsigned(MULT_BITS),
                        shift=unsigned(SHIFT_BITS))


def output_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`Requantizer.o_stream`: one int8 row and ``last``."""
    return lanes_layout(cols, data=signed(ACT_WIDTH))


class RequantLane(wiring.Component):
    """One requantization lane: ``y = sat8((s * mult + 2**(shift-1)) >> shift)``, pipelined.

    Stages S2..S7 of the module docstring, every register behind one clock enable ``en``: the
    multiplier's input and output registers (two DSP products, S2-S3), a fabric copy of both
    products (S3', so that a DSP block placed far from the lane costs one cycle of wire and
    not the product sum's), product sum (S4), coarse
    shift (S5), fine shift and saturation flags (S6), saturated output (S7). Bit-exact with
    :func:`sw.quant.requantize` for ``shift`` in ``[1, 47]`` (``|s * mult| < 2**46``). Used per
    column by :class:`Requantizer` and per lane by the attention unit's output requantization.

    Parameters
    ----------
    use_dsp : bool
        Use DSP blocks (``MULT18X18D`` on ECP5; two per lane) for the multiply.
    family : str or None
        Force the multiplier family (``"ecp5"``).

    Members
    -------
    s : In(signed(32))
        The value to requantize (accumulator plus bias), sampled with ``mult`` and ``shift``.
    mult : In(unsigned(15))
        Multiplier (:func:`sw.quant.quantize_multiplier`).
    shift : In(unsigned(6))
        Shift, ``1..47``.
    en : In(1)
        Clock enable of every register rank.
    y : Out(signed(8))
        The int8 result, ``latency`` enabled cycles after its inputs.

    Attributes
    ----------
    latency : int
        ``multiplier latency (2) + 5 = 7`` enabled cycles.
    """

    latency = Multiplier.latency + 5

    def __init__(self, *, use_dsp: bool = True, family: str | None = None):
        check_dsp_options(use_dsp, family)
        self._use_dsp = use_dsp
        self._family = family
        super().__init__({
            "s": In(signed(ACC_WIDTH)),
            "mult": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "en": In(1),
            "y": Out(signed(ACT_WIDTH)),
        })

    def elaborate(self, platform):
        m = Module()
        ce = self.en

        def stage(sig, name):
            d = Signal.like(sig, name=name)
            with m.If(ce):
                m.d.sync += d.eq(sig)
            return d

        # S2-S3: two DSP products, s_lo zero-extended and mult zero-extended to signed.
        mul_lo = make_multiplier(platform, 17, MULT_BITS + 1,
                                 use_dsp=self._use_dsp, family=self._family)
        mul_hi = make_multiplier(platform, 16, MULT_BITS + 1,
                                 use_dsp=self._use_dsp, family=self._family)
        m.submodules.mul_lo = mul_lo
        m.submodules.mul_hi = mul_hi
        m.d.comb += [
            mul_lo.en.eq(ce), mul_hi.en.eq(ce),
            mul_lo.a.eq(self.s[:16]),                   # unsigned 16 -> signed 17
            mul_hi.a.eq(self.s[16:].as_signed()),
            mul_lo.b.eq(self.mult), mul_hi.b.eq(self.mult),  # unsigned 15 -> signed 16
        ]
        shm1 = Signal(unsigned(SHIFT_BITS))
        m.d.comb += shm1.eq(self.shift - 1)
        sh = shm1
        for i in range(mul_lo.latency + 1):
            sh = stage(sh, f"shm1_d{i + 1}")
        # S3': the products in fabric registers. On ECP5-85F a lane's DSP blocks were placed up
        # to 8 ns of wire away from its product sum (10.7 ns with the carry chain); this rank
        # lets the placer put the wire into a cycle of its own.
        p_lo = stage(mul_lo.p, "p_lo")
        p_hi = stage(mul_hi.p, "p_hi")
        # S4: product sum.
        p = Signal(signed(PROD_WIDTH))
        with m.If(ce):
            m.d.sync += p.eq((p_hi << 16) + p_lo)
        sh4 = stage(sh, "shm1_s4")
        # S5: coarse arithmetic shift by c, a multiple of 8, keeping the low X5_BITS bits of
        # x' = p >> c and whether x' fits them (p's bits X5_BITS - 1 + c .. 47 all equal its
        # sign; one flag per 8-bit segment of p above bit X5_BITS - 1, ANDed from the top
        # down to c's segment), and the sign.
        coarse = sh4[3:]
        x5 = Signal(signed(X5_BITS), name="x5")
        out5 = Signal(name="x5_out")
        neg5 = Signal(name="x5_neg")
        sign = p[-1]
        tops = range(X5_BITS - 1, PROD_WIDTH - 1, 8)      # 17, 25, 33, 41: segment starts
        same = [p[t:e] == sign.replicate(e - t)
                for t, e in ((t, min(t + 8, PROD_WIDTH - 1)) for t in tops)]
        fits = [Cat(same[k:]).all() for k in range(len(same))]
        fits += [Const(1)] * (2 ** len(coarse) - len(fits))     # c >= 32: always fits
        with m.If(ce):
            m.d.sync += [x5.eq((p >> Cat(Const(0, 3), coarse))[:X5_BITS]),
                         out5.eq(~Array(fits)[coarse]), neg5.eq(sign)]
        sh5 = stage(sh4[:3], "shm1_s5")
        # The saturation thresholds of S6, registered beside x5 (scaled by the fine shift f: a
        # shift shared by several lanes, as in the attention unit, would otherwise fan one
        # LUT out to every lane's compare, an 8.5 ns path on ECP5-85F).
        hi_thr5 = stage(Const(255, signed(18)) << sh4[:3], "sat_hi_thr5")
        lo_thr5 = stage(Const(-257, signed(18)) << sh4[:3], "sat_lo_thr5")
        # S6: fine shift by f = 0..7 -> x = p >> (shift - 1), of which S7 needs the low 10
        # bits, and the saturation flags, compared on x5 itself against thresholds scaled by
        # 2**f: floor(x5 / 2**f) >= 255 <=> x5 >= 255 * 2**f, and floor(x5 / 2**f) <= -258
        # <=> x5 < -257 * 2**f. (Comparing the 48-bit x after the shift and muxing in the
        # same stage, S7, was an 8.3 ns path on ECP5-85F: 119.96 MHz against 125.)
        x6 = Signal(signed(10), name="x6")
        hi6 = Signal(name="sat_hi6")
        lo6 = Signal(name="sat_lo6")
        # Past the 18 bits x' is beyond both thresholds: its sign says which flag.
        with m.If(ce):
            m.d.sync += [
                x6.eq((x5[:17] >> sh5)[:10]),
                hi6.eq(Mux(out5, ~neg5, x5 >= hi_thr5)),
                lo6.eq(Mux(out5, neg5, x5 < lo_thr5)),
            ]
        # S7: y = sat8((x + 1) >> 1): the flags select the bound, else bits [1:9] of the
        # 10-bit x + 1.
        xp1 = Signal(signed(10), name="xp1")
        m.d.comb += xp1.eq(x6 + 1)
        with m.If(ce):
            with m.If(hi6):
                m.d.sync += self.y.eq(INT8_MAX)
            with m.Elif(lo6):
                m.d.sync += self.y.eq(INT8_MIN)
            with m.Else():
                m.d.sync += self.y.eq(xp1[1:9])
        return m


#: :attr:`Requantizer.latency`: S1 (bias add), the lane (S2-S7), output buffer.
REQUANT_LATENCY = 1 + RequantLane.latency + OutputBuffer.latency


class Requantizer(Unit):
    """Per-column bias add, multiply, rounding shift and int8 saturation (module docstring).

    One ``i_quant`` transfer per tile: it is consumed before or together with the tile's first
    row, held for all its rows and released by the row with ``last``; the next tile's
    parameters may be consumed in the same cycle as that last row (no bubble between tiles).
    Backpressure stalls the whole pipeline through one registered clock enable
    (:class:`hw.systolic.OutputBuffer`). Stream rules: ``hw/README.md``.

    With ``lanes`` below ``cols`` a row takes ``phases = ceil(cols / lanes)`` cycles: in phase
    ``f`` lane ``l`` requantizes column ``f * lanes + l`` of the held row (the upstream holds
    it: ``i_stream.ready`` rises in the last phase only), and the first phases' results wait
    in registers until the last phase's leave the lanes; the row then goes out whole. The
    ``2 * cols`` DSP products become ``2 * lanes``: a GEMM tile of ``rows`` rows needs
    ``rows * phases`` cycles here against the array's ``K + 2``.

    Parameters
    ----------
    cols : int
        Output columns, 1..32.
    lanes : int or None
        Requantization lanes, 1..``cols`` (default ``cols``: a row a cycle).
    use_dsp, family
        Those of each lane's :class:`RequantLane`.

    Members
    -------
    i_stream : In(stream.Signature(result_layout(cols)))
        int32 accumulator rows (``acc[c]``, Q0 at scale ``s_x * s_w[c]``) with ``last`` on the
        tile's final row -- the :class:`hw.systolic.SystolicArray` output.
    i_quant : In(stream.Signature(quant_layout(cols)))
        Per tile: ``bias[c]`` int32 (same scale as ``acc``), ``mult[c]`` unsigned Q0.15-style
        15-bit multiplier, ``shift[c]`` in ``[1, 47]`` (:func:`sw.quant.quantize_multiplier`).
    o_stream : Out(stream.Signature(output_layout(cols)))
        int8 rows ``data[c] = requantize(acc[c] + bias[c], mult[c], shift[c])`` (Q0 at the
        output scale), ``last`` copied. ``latency`` cycles after the row's input handshake
        (with phases, the handshake of its last phase).

    Attributes
    ----------
    latency : int
        ``1 + multiplier latency (2) + 5 + 1 = 9``: S1 register, DSP in/out registers, their
        fabric copy, product sum, coarse and fine shift, saturation and output buffer
        registers. Valid without backpressure.

    Raises
    ------
    TypeError
        ``cols`` or ``lanes`` not an integer, ``use_dsp`` not a bool.
    ValueError
        ``cols`` outside ``[1, 32]``, ``lanes`` outside ``[1, cols]``.
    """

    params_fields = ("cols", "dsp_multipliers")

    def __init__(self, cols: int, *, lanes: int | None = None, use_dsp: bool = True,
                 family: str | None = None):
        self._cols = check_int("cols", cols, 1, MAX_DIM)
        self._lanes = cols if lanes is None else check_int("lanes", lanes, 1, cols)
        check_dsp_options(use_dsp, family)
        self._use_dsp = use_dsp
        self._family = family
        super().__init__({
            "i_stream": In(stream.Signature(result_layout(cols))),
            "i_quant": In(stream.Signature(quant_layout(cols))),
            "o_stream": Out(stream.Signature(output_layout(cols))),
        })

    @property
    def latency(self) -> int:
        return REQUANT_LATENCY

    @property
    def lanes(self) -> int:
        """Requantization lanes (``cols`` unless given)."""
        return self._lanes

    @property
    def phases(self) -> int:
        """Cycles a row takes: ``ceil(cols / lanes)``."""
        return -(-self._cols // self._lanes)

    def _held_or_arriving(self, q_loaded, q, q_eff):
        """The copies of ``q_loaded`` (``q_loaded`` first; the caller updates each as
        ``q_loaded``) and the statements of ``q_eff``: the held parameters ``q`` while
        ``q_loaded``, else those arriving now. The multiplexer's select is a copy per group
        of lanes (``hw.skid.column_groups``; a column takes its lane's): one flag's net into
        every parameter bit was among the 8x18 top's most congested nets."""
        groups = min(column_groups(self._cols), self._lanes)
        copies = [q_loaded, *(Signal(name=f"q_loaded{g}") for g in range(1, groups))]
        if groups == 1:
            return copies, [q_eff.eq(Mux(q_loaded, q, self.i_quant.payload))]
        new = self.i_quant.payload
        return copies, [
            getattr(q_eff, f)[c].eq(Mux(copies[c % self._lanes * groups // self._lanes],
                                        getattr(q, f)[c], getattr(new, f)[c]))
            for f in ("bias", "mult", "shift") for c in range(self._cols)]

    def _load_parameters(self, m, q, q_loaded_copies, take_q, take_row):
        """``q`` and the copies of ``q_loaded`` (:meth:`_held_or_arriving`): load a tile's
        parameters, clear the flags with its last row."""
        q_loaded = q_loaded_copies[0]
        groups = len(q_loaded_copies)
        if groups == 1:
            with m.If(take_q & ~(take_row & self.i_stream.payload.last & ~q_loaded)):
                # Hold the parameters unless this same cycle also took the tile's only row.
                m.d.sync += [q.eq(self.i_quant.payload), q_loaded.eq(1)]
            with m.Elif(take_row & self.i_stream.payload.last):
                m.d.sync += q_loaded.eq(0)
        for k, copy in enumerate(q_loaded_copies if groups > 1 else []):
            # The same update on each copy, which reads itself where q_loaded reads q_loaded,
            # and loads its lane group's columns of the parameters (one enable into every
            # parameter bit was a net of 954 clock enables on the 8x18 top).
            with m.If(take_q & ~(take_row & self.i_stream.payload.last & ~copy)):
                m.d.sync += [copy.eq(1), *(
                    getattr(q, f)[c].eq(getattr(self.i_quant.payload, f)[c])
                    for f in ("bias", "mult", "shift") for c in range(self._cols)
                    if c % self._lanes * groups // self._lanes == k)]
            with m.Elif(take_row & self.i_stream.payload.last):
                m.d.sync += copy.eq(0)

    def elaborate(self, platform):
        m = Module()
        cols, lanes, phases = self._cols, self._lanes, self.phases

        obuf = OutputBuffer.driving(m, self.o_stream, output_layout(cols),
                                    global_ce=True)
        ce = obuf.ce

        # -- per-tile parameters -------------------------------------------------------------
        # The readies read the enable's register (ce_reg), not its global network: the
        # array's output buffer pops on this ready (a DCCA output into its LUTs was the
        # stand-alone GEMM core's critical path).
        q = Signal(quant_layout(cols))
        q_loaded = Signal()
        q_eff = Signal(quant_layout(cols))     # held parameters, or those arriving right now
        # With phases: a one-hot phase register (bit f: phase f), stepped with each phase
        # taken; the row's handshake is its last phase.
        phase = Signal(phases, init=1, name="phase")
        final = phase[-1] if phases > 1 else Const(1)
        q_loaded_copies, held_or_arriving = self._held_or_arriving(q_loaded, q, q_eff)
        m.d.comb += [
            *held_or_arriving,
            self.i_stream.ready.eq(obuf.ce_reg & (q_loaded | self.i_quant.valid) & final),
            self.i_quant.ready.eq(obuf.ce_reg & (~q_loaded | (self.i_stream.valid & final
                                                              & self.i_stream.payload.last))),
        ]
        take_phase = Signal()
        m.d.comb += take_phase.eq(obuf.ce_reg & (q_loaded | self.i_quant.valid)
                                  & self.i_stream.valid)
        # The lanes' column picks read a copy of the phase per group of lanes, as q_eff's
        # multiplexers read q_loaded's (each phase bit selected a word of every lane's
        # parameters and accumulator: 100 to 190 overused wires a bit on the 8x18 top).
        lane_phase = [phase, *(Signal(phases, init=1, name=f"phase{g}")
                               for g in range(1, len(q_loaded_copies)))]
        if phases > 1:
            with m.If(take_phase):
                m.d.sync += [p.eq(p.rotate_left(1)) for p in lane_phase]
        take_row = Signal()
        take_q = Signal()
        m.d.comb += [
            take_row.eq(self.i_stream.valid & self.i_stream.ready),
            take_q.eq(self.i_quant.valid & self.i_quant.ready),
        ]
        self._load_parameters(m, q, q_loaded_copies, take_q, take_row)

        def stage(sig, name):
            d = Signal.like(sig, name=name)
            with m.If(ce):
                m.d.sync += d.eq(sig)
            return d

        # -- flags -----------------------------------------------------------------------------
        # valid: a phase entered S1 (a row, without phases); its phase rides along.
        valid, last = take_phase if phases > 1 else take_row, self.i_stream.payload.last
        ph = phase
        for i in range(self.latency - OutputBuffer.latency):
            valid = stage(valid, f"valid_s{i + 1}")
            last = stage(last, f"last_s{i + 1}")
            if phases > 1:
                ph = stage(ph, f"phase_s{i + 1}")

        # -- lanes ----------------------------------------------------------------------------
        def column(values, lane):
            # Lane `lane`'s column in the current phase: a one-hot pick (columns past cols: 0).
            if phases == 1:
                return values[lane]
            phase = lane_phase[lane * len(lane_phase) // lanes]
            picks = [Mux(phase[f], values[f * lanes + lane], 0)
                     for f in range(phases) if f * lanes + lane < cols]
            return functools.reduce(operator.or_, picks)

        out = []
        for c in range(lanes):
            # S1: bias add (32-bit wrap), capture mult and shift.
            s1 = Signal(signed(ACC_WIDTH), name=f"s1_{c}")
            mult1 = Signal(unsigned(MULT_BITS), name=f"mult1_{c}")
            shift1 = Signal(unsigned(SHIFT_BITS), name=f"shift1_{c}")
            with m.If(ce):
                m.d.sync += [
                    s1.eq(column(self.i_stream.payload.acc, c) + column(q_eff.bias, c)),
                    mult1.eq(column(q_eff.mult, c)),
                    shift1.eq(column(q_eff.shift, c)),
                ]
            # S2-S7: the lane.
            lane = RequantLane(use_dsp=self._use_dsp, family=self._family)
            m.submodules[f"lane{c}"] = lane
            m.d.comb += [lane.s.eq(s1), lane.mult.eq(mult1), lane.shift.eq(shift1), lane.en.eq(ce)]
            out.append(lane.y)

        valid_o, last_o = valid, last
        if phases > 1:
            # The first phases' results wait for the last phase's: the row leaves whole.
            held = [Signal(8 * lanes, name=f"phase{f}_y") for f in range(phases - 1)]
            for f, h in enumerate(held):
                with m.If(ce & valid & ph[f]):
                    m.d.sync += h.eq(Cat(*out))
            out = [Cat(*held, *out)[:8 * cols]]
            valid_o = valid & ph[-1]
        m.d.comb += [
            obuf.push.eq(valid_o),
            obuf.data.last.eq(last_o),
            obuf.data.data.eq(Cat(*out)),
        ]
        return m
