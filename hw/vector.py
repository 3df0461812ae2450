# SPDX-License-Identifier: Apache-2.0
"""Vector unit: the elementwise integer ops of ``sw.ref.model_forward_int``, ``cols`` lanes wide.

One job is one ``i_cfg`` transfer (an :class:`VecOp` and its constants) plus the ``i_stream``
beats it applies to, up to and including the beat with ``last``. Each beat carries ``cols``
elements (one GEMM output row), so the unit keeps up with the GEMM core. Per lane:

* ``ADD`` -- residual add with requantization, :func:`sw.ref.residual_add`:
  ``y = sat8(round_shift(a * mult0 + b * mult1, shift))`` (also the positional add);
* ``LUT`` -- 256-entry int8 -> int8 table, :func:`sw.ref.lut_apply`: ``y = lut[table][a & 0xFF]``;
* ``POOL`` -- mean over the job's beats, :func:`sw.ref.mean_pool_int`:
  ``y = requantize(sum_t a_t, mult0, shift)``, one output beat per job (on ``last``);
* ``PASS`` -- the int32 ``a`` unchanged (the classifier head's int32 logits, or a copy).

Pipeline (one registered clock enable from the :class:`hw.systolic.OutputBuffer`, so
backpressure stalls every register and nothing is lost)::

    S1  residual products a*mult0, b*mult1 (LUT multiplier input regs) | pool sum acc + a
        | LUT read address {table, a & 0xFF} (block-RAM first rank) | a
    S2  multiplier output regs | LUT output register | pool sum, a delayed
    S3  s = a*mult0 + b*mult1 (ADD) or the pool sum (POOL), lane multiplier 1 or mult0
        | side value = LUT word (LUT) or a (PASS)
    S4-S9  one RequantLane per lane (hw.requant), the side value delayed beside it
    then the output buffer (2 entries).

Every requantization is :class:`hw.requant.RequantLane` (one rounding rule,
:attr:`sw.quant.Round.HALF_UP`): ``ADD`` feeds it ``a * mult0 + b * mult1`` with multiplier 1,
which is exactly ``residual_add``'s single rounding. Stream rules: ``hw/README.md``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, enum, stream
from amaranth.lib.wiring import In, Out

from hw.bram import make_block_ram
from hw.checks import check_bool, check_int
from hw.lut_multiplier import LutMultiplier
from hw.multiplier import check_dsp_options, make_multiplier
from hw.numerics import ACC_WIDTH, ACT_WIDTH, LUT_SIZE, MULT_BITS, SHIFT_BITS
from hw.params import MAX_DIM
from hw.requant import RequantLane
from hw.systolic import OutputBuffer, lanes_layout
from hw.unit import Setting, Unit

__all__ = ["MAX_LUT_COUNT", "VecOp", "VectorUnit", "vec_cfg_layout", "vec_input_layout",
           "vec_lut_layout", "vec_output_layout"]

#: Largest ``lut_count`` (the range of :class:`hw.params.AccelParams`).
MAX_LUT_COUNT = 64


class VecOp(enum.Enum, shape=2):
    """Operation of one vector job (:class:`VectorUnit`, module docstring)."""

    ADD = 0
    LUT = 1
    POOL = 2
    PASS = 3


def vec_cfg_layout(lut_count: int) -> data.StructLayout:
    """Payload of :attr:`VectorUnit.i_cfg`: the job's op and constants."""
    return data.StructLayout({
        "op": VecOp,
        "table": range(lut_count),
        "mult0": unsigned(MULT_BITS),
        "mult1": unsigned(MULT_BITS),
        "shift": unsigned(SHIFT_BITS),
    })


def vec_input_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`VectorUnit.i_stream`: operands ``a`` (int32 lanes) and ``b`` (int8)."""
    return lanes_layout(cols, a=signed(ACC_WIDTH), b=signed(ACT_WIDTH))


def vec_output_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`VectorUnit.o_stream`: int32 lanes (int8 results sign-extended)."""
    return lanes_layout(cols, data=signed(ACC_WIDTH))


def vec_lut_layout(lut_count: int) -> data.StructLayout:
    """Payload of :attr:`VectorUnit.i_lut`: one table entry."""
    return data.StructLayout({
        "table": range(lut_count),
        "index": unsigned(8),
        "value": signed(ACT_WIDTH),
    })


class VectorUnit(Unit):
    """Residual add, LUT activation, mean pool and int32 pass-through, ``cols`` lanes.

    Bit-exact with :func:`sw.ref.residual_add`, :func:`sw.ref.lut_apply`,
    :func:`sw.ref.mean_pool_int` and the identity (module docstring). One ``i_cfg`` transfer
    per job, taken before the job's first beat (a beat is not ready until its job's
    configuration is in the register: a first beat that comes with it waits one cycle), held
    until the beat with ``last`` (the next job's ``i_cfg`` may be taken in that same cycle: no
    bubble between jobs).

    Parameters
    ----------
    cols : int
        Lanes (elements per beat), 1..32: the GEMM core's ``cols``.
    lut_count : int
        Activation tables, 1..64, each ``LUT_SIZE`` (256) int8 entries, replicated per lane
        (one block RAM of ``lut_count * 256`` bytes per lane).
    use_dsp : bool
        Use DSP blocks for the :class:`~hw.requant.RequantLane`'s two products per lane.
    dsp_products : bool
        The two int8 x 16-bit residual products per lane from
        :func:`~hw.multiplier.make_multiplier` (DSP blocks where ``use_dsp`` and the platform
        have them) instead of :class:`~hw.lut_multiplier.LutMultiplier` (the default: no DSP
        block). Same latency and results.
    family : str or None
        Force the multiplier / block-RAM family (``"ecp5"``).

    Members
    -------
    i_cfg : In(stream.Signature(vec_cfg_layout(lut_count)))
        ``op`` (:class:`VecOp`); ``table`` (``LUT``); ``mult0``, ``mult1`` (15-bit unsigned)
        and ``shift`` (1..47): ``ADD`` uses ``(mult0, mult1), shift`` of
        :func:`sw.ref.residual_params`, ``POOL`` ``(mult0, shift)`` of the pool requant
        (``mult0 / 2**shift ~= scale_x / (T * scale_out)``).
    i_stream : In(stream.Signature(vec_input_layout(cols)))
        ``a[c]``: int8 Q0 (``ADD``/``LUT``/``POOL``; only its low 8 bits are read) or int32
        (``PASS``); ``b[c]``: int8 Q0, the second residual operand (``ADD`` only); ``last`` on
        the job's final beat. ``POOL`` sums the job's beats lane by lane (stream one block of
        ``cols`` channels over all ``T`` tokens per job).
    i_lut : In(stream.Signature(vec_lut_layout(lut_count)))
        Writes ``lut[table][index] = value`` into every lane's copy (``index`` is the byte
        pattern of the int8 input, as :func:`sw.ref.lut_apply`). Not ready in a cycle that
        takes an ``i_stream`` beat (a block RAM must not read and write at once); a write
        applies to every beat taken after it.
    o_stream : Out(stream.Signature(vec_output_layout(cols)))
        ``data[c]``: the int8 result sign-extended (``ADD``/``LUT``/``POOL``) or the int32
        ``a[c]`` (``PASS``); ``last`` copied. One beat per input beat, except ``POOL``: one per
        job. ``latency`` cycles after the input handshake (of the job's last beat for
        ``POOL``).

    Attributes
    ----------
    latency : int
        ``3 + RequantLane.latency (7) + OutputBuffer.latency (1) = 11`` for every op, valid
        without backpressure.

    Raises
    ------
    TypeError
        A parameter of the wrong type.
    ValueError
        ``cols`` outside ``[1, 32]`` or ``lut_count`` outside ``[1, 64]``.
    """

    params_fields = ("cols", "lut_count", "dsp_multipliers", "vec_dsp_products")
    cols = Setting("Lanes (elements per beat).")
    lut_count = Setting("Activation tables.")
    use_dsp = Setting("DSP multipliers where the platform has them.")
    dsp_products = Setting("The residual products from make_multiplier, not LutMultiplier.")

    def __init__(self, cols: int, *, lut_count: int = 4, use_dsp: bool = True,
                 dsp_products: bool = False, family: str | None = None):
        self._cols = check_int("cols", cols, 1, MAX_DIM)
        self._lut_count = check_int("lut_count", lut_count, 1, MAX_LUT_COUNT)
        check_dsp_options(use_dsp, family)
        self._use_dsp = use_dsp
        self._dsp_products = check_bool("dsp_products", dsp_products)
        self._family = family
        super().__init__({
            "i_cfg": In(stream.Signature(vec_cfg_layout(self._lut_count))),
            "i_stream": In(stream.Signature(vec_input_layout(self._cols))),
            "i_lut": In(stream.Signature(vec_lut_layout(self._lut_count))),
            "o_stream": Out(stream.Signature(vec_output_layout(self._cols))),
        })

    @property
    def latency(self) -> int:
        return 3 + RequantLane.latency + OutputBuffer.latency

    def _residual_multiplier(self, platform):
        """One int8 x 16-bit residual product: on a DSP block with ``dsp_products``, else a
        :class:`~hw.lut_multiplier.LutMultiplier` (its 16-bit operand, a 15-bit multiplier,
        is never negative)."""
        if self._dsp_products:
            return make_multiplier(platform, ACT_WIDTH, MULT_BITS + 1,
                                   use_dsp=self._use_dsp, family=self._family)
        return LutMultiplier(ACT_WIDTH, MULT_BITS + 1, b_nonnegative=True)

    def elaborate(self, platform):
        m = Module()
        cols = self._cols

        obuf = OutputBuffer.driving(m, self.o_stream, vec_output_layout(cols),
                                    global_ce=True)
        ce = obuf.ce

        # -- per-job configuration (held from the first beat until `last`) -------------------
        cfg = Signal(vec_cfg_layout(self._lut_count))
        cfg_loaded = Signal()
        # Beats wait for their job's configuration in the register (no bypass of an arriving
        # one): the lanes' operands, the LUT read address and the pool sums' enables read
        # the unit's own registers, not the producer's payload across the die (the routed
        # tops' pool_acc# group). The next job's configuration still comes in with the last
        # beat, so back-to-back jobs run without a bubble.
        cfg_eff = cfg
        take = Signal()
        beat = self.i_stream.payload
        m.d.comb += [
            self.i_stream.ready.eq(obuf.ce_reg & cfg_loaded),
            self.i_cfg.ready.eq(obuf.ce_reg & (~cfg_loaded | (self.i_stream.valid & beat.last))),
            take.eq(self.i_stream.valid & self.i_stream.ready),
            self.i_lut.ready.eq(~take),
        ]
        take_cfg = self.i_cfg.valid & self.i_cfg.ready
        with m.If(take_cfg):
            m.d.sync += [cfg.eq(self.i_cfg.payload), cfg_loaded.eq(1)]
        with m.Elif(take & beat.last):
            m.d.sync += cfg_loaded.eq(0)

        def stage(sig, name, shape=None):
            d = Signal(shape if shape is not None else Value.cast(sig).shape(), name=name)
            with m.If(ce):
                m.d.sync += d.eq(sig)
            return d

        def delay(sig, n, name, shape=None):
            for i in range(n):
                sig = stage(sig, f"{name}_s{i + 1}", shape)
            return sig

        # -- control: valid, last, op and the job constants ride beside the data --------------
        op1 = stage(cfg_eff.op, "op_s1", VecOp)
        op2 = stage(op1, "op_s2", VecOp)
        mult0_2 = delay(cfg_eff.mult0, 2, "mult0")
        shift2 = delay(cfg_eff.shift, 2, "shift")
        # S3: ADD hands the lane a finished sum (multiplier 1); POOL its requant multiplier.
        mult3 = stage(Mux(op2 == VecOp.ADD, 1, mult0_2), "mult_s3")
        shift3 = stage(shift2, "shift_s3")
        valid_o = delay(take, 3 + RequantLane.latency, "valid")
        last_o = delay(beat.last, 3 + RequantLane.latency, "last")
        op_o = delay(op2, 1 + RequantLane.latency, "op", VecOp)
        lane_out = (op_o == VecOp.ADD) | (op_o == VecOp.POOL)

        # -- lanes ---------------------------------------------------------------------------
        w_en = self.i_lut.valid & self.i_lut.ready
        w_addr = Cat(self.i_lut.payload.index, self.i_lut.payload.table)
        for c in range(cols):
            a = beat.a[c]
            a8 = a[:ACT_WIDTH].as_signed()
            # Residual products (S1 input registers, S2 output registers), int8 x 16-bit: LUT
            # multipliers unless the DSP blocks have room for them (dsp_products).
            mul_a, mul_b = (self._residual_multiplier(platform) for _ in range(2))
            m.submodules[f"mul_a{c}"] = mul_a
            m.submodules[f"mul_b{c}"] = mul_b
            m.d.comb += [
                mul_a.en.eq(ce), mul_b.en.eq(ce),
                mul_a.a.eq(a8), mul_b.a.eq(beat.b[c]),
                mul_a.b.eq(cfg_eff.mult0), mul_b.b.eq(cfg_eff.mult1),
            ]
            # Pool sum: updated only on a taken POOL beat, cleared after the job's last beat.
            acc = Signal(signed(ACC_WIDTH), name=f"pool_acc{c}")
            pool_sum = Signal(signed(ACC_WIDTH), name=f"pool_sum{c}")
            m.d.comb += pool_sum.eq(acc + a8)
            with m.If(take & (cfg_eff.op == VecOp.POOL)):
                m.d.sync += acc.eq(Mux(beat.last, 0, pool_sum))
            pool2 = delay(pool_sum, 2, f"pool{c}")
            # LUT: this lane's copy of every table, read through the block RAM's two ranks
            # (enabled with the pipeline, so the word stays aligned with its beat).
            ram = make_block_ram(platform, width=ACT_WIDTH, depth=self._lut_count * LUT_SIZE,
                                 family=self._family)
            m.submodules[f"lut{c}"] = ram
            m.d.comb += [
                ram.w_en.eq(w_en),
                ram.w_addr.eq(w_addr),
                ram.w_data.eq(self.i_lut.payload.value),
                ram.r_en.eq(ce),
                ram.r_addr.eq(Cat(a[:ACT_WIDTH], cfg_eff.table)),
                ram.r_oce.eq(ce),
            ]
            # S3: the requant lane's input, and the side value (LUT word or int32 a). Their
            # selects are the lane's own registers, op_s1 decoded a stage early (op_s2 == ADD
            # and == LUT in every cycle, the reset included): no decode in front of the 2 x 32
            # multiplexers, and op_s2 does not fan out to every lane (a routed ulx3s_85f top's
            # vec.lane#.a group, 10.25 ns from op_s2).
            add2, lut2 = (Signal(name=f"{name}{c}_s2", init=int(VecOp(0) == op))
                          for name, op in (("add", VecOp.ADD), ("lut", VecOp.LUT)))
            with m.If(ce):
                m.d.sync += [add2.eq(op1 == VecOp.ADD), lut2.eq(op1 == VecOp.LUT)]
            s3 = stage(Mux(add2, mul_a.p + mul_b.p, pool2), f"s{c}_s3", signed(ACC_WIDTH))
            a2 = delay(a, 2, f"a{c}")
            side3 = stage(Mux(lut2, ram.r_data.as_signed(), a2), f"side{c}_s3",
                          signed(ACC_WIDTH))
            lane = RequantLane(use_dsp=self._use_dsp, family=self._family)
            m.submodules[f"lane{c}"] = lane
            m.d.comb += [lane.s.eq(s3), lane.mult.eq(mult3), lane.shift.eq(shift3),
                         lane.en.eq(ce)]
            side_o = delay(side3, RequantLane.latency, f"side{c}")
            m.d.comb += obuf.data.data[c].eq(Mux(lane_out, lane.y, side_o))

        # POOL: one output per job, on its last beat.
        m.d.comb += [
            obuf.push.eq(valid_o & ((op_o != VecOp.POOL) | last_o)),
            obuf.data.last.eq(last_o),
        ]
        return m
