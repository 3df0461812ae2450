# SPDX-License-Identifier: Apache-2.0
"""Integer LayerNorm unit: exactly :func:`sw.ref.layernorm_int`, one row at a time.

For a row ``x`` of width ``d`` (int8), with ``S1 = sum x``, ``Q = sum x**2`` and the constant
``k = layernorm_pre_shift(d)``, the reference computes ``c = d * x - S1``,
``S = sum c**2 = d * (d * Q - S1**2)`` and::

    r   = max(isqrt((d * S + eps_q) << 2k), 1)
    inv = 2**48 // r
    n   = round_shift(c * d * inv, 38 - k)              # Q.10, |n| < 2**15
    y   = requantize(n * gamma + beta, mult, shift)

The unit runs each row in three phases:

1. **Load** (``ceil(d / cols)`` beats, one per cycle): the row goes into a row buffer
   (:func:`hw.bram.make_block_ram`) while ``S1`` and ``Q`` accumulate (one squaring
   multiplier per lane).
2. **Scalar** (:meth:`LayerNorm.scalar_cycles`, 133 cycles for ``max_dim = 1024``): a
   sequential engine computes ``d * S = d * d * (d * Q - S1**2)`` by shift-and-add (its
   multiplies take two bits of ``d`` or ``|S1|`` per cycle), the square root by the
   digit-by-digit rule of :func:`sw.ref.isqrt_int` (exactly 32 steps), ``inv`` by a restoring
   division (49 steps), then the per-row constants ``G = d**2 * inv`` and
   ``H = S1 * d * inv - 2**(37 - k)``.
3. **Normalize** (``ceil(d / cols)`` beats, one per cycle with the per-channel ``i_param``):
   ``c * d * inv + 2**(37 - k) = x * G - H`` (the rounding constant folded into ``H``), so each
   element needs one int8 x 56-bit product, computed modulo ``2**56`` from four int8 x
   17-bit chunk products (the true value is below ``2**54`` in magnitude, so the residue is
   exact); then the arithmetic shift, ``n * gamma + beta`` and a
   :class:`hw.requant.RequantLane`. Every product with an int8 operand (the squares, the
   chunks, ``n * gamma``) is a :class:`hw.lut_multiplier.LutMultiplier`; only the requant
   lane's 32 x 15-bit product uses DSP blocks (two per lane).

A row therefore takes ``2 * ceil(d / cols) + scalar_cycles`` cycles when nothing stalls;
LayerNorm is a small share of a layer's work, so the scalar phase is sequential.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.bram import BlockRAM, make_block_ram
from hw.checks import check_int
from hw.lut_multiplier import LutMultiplier
from hw.multiplier import Multiplier, check_dsp_options
from hw.numerics import (
    ACC_WIDTH,
    ACT_WIDTH,
    ISQRT_ITERATIONS,
    LN_FRAC_BITS,
    LN_MAX_DIM,
    LN_RECIP_BITS,
    MULT_BITS,
    SHIFT_BITS,
    layernorm_pre_shift,
)
from hw.params import MAX_DIM
from hw.requant import RequantLane, output_layout
from hw.systolic import OutputBuffer, lanes_layout
from hw.unit import Setting, Unit

__all__ = ["LayerNorm", "ln_cfg_layout", "ln_input_layout", "ln_param_layout"]

#: Width of the product residue ``x * G - H`` (|value| < 2**54 for every legal row).
PROD_BITS = 56
#: Chunk width of ``G`` per ``x * G`` partial product (a LUT multiplier each: four short
#: adder trees instead of one 64-bit one between the multiplier's register ranks).
CHUNK_BITS = 17
#: Width of the normalized value ``n`` (|n| <= sqrt(d - 1) * 2**10 < 2**15).
NORM_BITS = 18
ENGINE_BITS = 64
DIV_STEPS = LN_RECIP_BITS + 1          # quotient bits of 2**48 // r
#: Cycles between the row's last load beat and the first scalar step (stats pipeline).
STATS_DRAIN = 2


def _half(bits: int) -> int:
    return (bits + 1) // 2


def _eps_bits(max_dim: int) -> int:
    return (max_dim ** 4 << 16).bit_length()


def ln_cfg_layout(max_dim: int) -> data.StructLayout:
    """Payload of :attr:`LayerNorm.i_cfg`: row width ``dim`` and ``eps`` (``eps_q``)."""
    return data.StructLayout({
        "dim": unsigned(max_dim.bit_length()),
        "eps": unsigned(_eps_bits(max_dim)),
    })


def ln_input_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`LayerNorm.i_stream`: ``cols`` int8 elements of a row and ``last``."""
    return lanes_layout(cols, x=signed(ACT_WIDTH))


def ln_param_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`LayerNorm.i_param`: per-channel affine and requant constants."""
    return lanes_layout(cols, last=False, gamma=signed(ACT_WIDTH), beta=signed(ACC_WIDTH),
                        mult=unsigned(MULT_BITS), shift=unsigned(SHIFT_BITS))


class LayerNorm(Unit):
    """Integer LayerNorm of rows of width ``1 <= d <= max_dim``, ``cols`` elements per beat.

    Bit-exact with :func:`sw.ref.layernorm_int` (module docstring). A job is one ``i_cfg``
    transfer and the rows after it, up to the row whose final beat has ``last``. Each row is
    ``ceil(d / cols)`` beats on ``i_stream`` (lanes past ``d`` in the final beat are ignored),
    then, after the scalar phase, ``ceil(d / cols)`` beats on ``i_param`` (the channels' affine
    and requant constants; taken one per output element group) give as many beats on
    ``o_stream``. The next row loads while the previous row's outputs drain. Stream rules:
    ``hw/README.md``.

    Parameters
    ----------
    cols : int
        Elements per beat, 1..32 (the GEMM core's ``cols``).
    max_dim : int
        Largest row width ``d``, 1..``LN_MAX_DIM`` (1024): sizes the row buffer and the
        sequential multiplies (:meth:`scalar_cycles`).
    use_dsp : bool
        Use DSP blocks for the requant lane's two products per lane; the int8 products
        (squaring, four ``x * G`` chunks, ``n * gamma``) are LUT multipliers always.
    family : str or None
        Force the multiplier / block-RAM family (``"ecp5"``).

    Members
    -------
    i_cfg : In(stream.Signature(ln_cfg_layout(max_dim)))
        ``dim`` (``d``, 1..``max_dim``; others: unspecified results) and ``eps``
        (:func:`sw.ref.layernorm_eps_q`, at most ``d**4 * 2**16``). Taken when the unit is
        idle (``IDLE``: before a job's first row).
    i_stream : In(stream.Signature(ln_input_layout(cols)))
        int8 ``x`` (Q0 at the input scale; the scale cancels), ``last`` on the job's final beat
        (read only on a row's final beat). Ready while the unit loads a row.
    i_param : In(stream.Signature(ln_param_layout(cols)))
        Per channel: ``gamma`` int8 and ``beta`` int32 (Q.10 at ``scale_gamma``), ``mult``
        15-bit and ``shift`` 1..47 (``sw.ref.layernorm_int``'s per-channel requant).
    o_stream : Out(stream.Signature(output_layout(cols)))
        int8 ``data`` (lanes past ``d`` unspecified), ``last`` on the job's final beat.

    Attributes
    ----------
    latency : int
        Cycles from the handshake of a row's final ``i_stream`` beat to ``o_stream.valid`` of
        its first output beat, with ``i_param`` offered and no backpressure:
        ``1 + scalar_cycles + pipeline_latency (17)``: 151 for ``max_dim = 1024``. Under
        backpressure the scalar phase's last step waits until the previous row's elements
        have left the normalize pipeline (they still read the row constants).
    """

    params_fields = ("cols", "dsp_multipliers")
    cols = Setting("Elements per beat.")
    max_dim = Setting("Largest row width d.")
    use_dsp = Setting("DSP multipliers where the platform has them.")

    def __init__(self, cols: int, *, max_dim: int = LN_MAX_DIM, use_dsp: bool = True,
                 family: str | None = None):
        self._cols = check_int("cols", cols, 1, MAX_DIM)
        self._max_dim = check_int("max_dim", max_dim, 1, LN_MAX_DIM)
        check_dsp_options(use_dsp, family)
        self._use_dsp = use_dsp
        self._family = family
        super().__init__({
            "i_cfg": In(stream.Signature(ln_cfg_layout(self._max_dim))),
            "i_stream": In(stream.Signature(ln_input_layout(self._cols))),
            "i_param": In(stream.Signature(ln_param_layout(self._cols))),
            "o_stream": Out(stream.Signature(output_layout(self._cols))),
        })

    @property
    def dim_bits(self) -> int:
        """Bits of ``d``: a sequential multiply by ``d`` takes ``ceil(dim_bits / 2)`` steps."""
        return self._max_dim.bit_length()

    @property
    def sum_bits(self) -> int:
        """Bits of ``|S1| <= 128 * max_dim`` (a multiply by it: ``ceil(sum_bits / 2)`` steps)."""
        return (128 * self._max_dim).bit_length()

    @property
    def scalar_cycles(self) -> int:
        """Cycles of the scalar phase: the stats drain, five multiplies by ``d`` and two by
        ``|S1|`` (two bits per cycle), the pre-shift, the square root, the division and the
        commit of the row constants."""
        return (STATS_DRAIN + 5 * _half(self.dim_bits) + 2 * _half(self.sum_bits) + 1
                + ISQRT_ITERATIONS + DIV_STEPS + 1)

    @property
    def pipeline_latency(self) -> int:
        """Normalize phase: beat taken -> output valid."""
        return (BlockRAM.latency + 2 * Multiplier.latency + 3 + 1 + RequantLane.latency
                + OutputBuffer.latency)

    @property
    def latency(self) -> int:
        return 1 + self.scalar_cycles + self.pipeline_latency

    def row_cycles(self, dim: int) -> int:
        """Cycles per row of width ``dim`` at full rate: load, scalar phase, normalize."""
        beats = -(-check_int("dim", dim, 1, self._max_dim) // self._cols)
        return 2 * beats + self.scalar_cycles

    # -- gateware --------------------------------------------------------------------------------
    #
    # elaborate() wires the phases of the module docstring; each _elaborate_* helper adds one
    # part to the same Module (one flat hierarchy) and records the signals later parts use on a
    # shared namespace ``u``. The helpers run in the order of the netlist they emit, so the
    # generated design stays the same as the row's phases are edited one at a time.

    def elaborate(self, platform):
        m = Module()
        u = SimpleNamespace()
        self._elaborate_output_buffer(m, u)
        self._elaborate_job_constants(m, u)
        self._elaborate_load(m, platform, u)
        self._elaborate_scalar_registers(m, u)
        self._elaborate_normalize_issue(m, u)
        with m.FSM():
            self._elaborate_load_states(m, u)
            self._elaborate_variance_states(m, u)
            self._elaborate_isqrt_states(m, u)
            self._elaborate_row_constant_states(m, u)
            self._elaborate_output_state(m, u)
        self._elaborate_normalize_pipeline(m, u)
        return m

    def _elaborate_output_buffer(self, m, u):
        """``o_stream`` behind an :class:`OutputBuffer`, whose clock enable every stage uses."""
        obuf = OutputBuffer.driving(m, self.o_stream, output_layout(self._cols))
        ce = obuf.ce
        vars(u).update(obuf=obuf, ce=ce)

    def _elaborate_job_constants(self, m, u):
        """The registers ``i_cfg`` sets for a job, and the pre-shift ``k`` of its ``dim``."""
        max_dim = self._max_dim
        dim = Signal(unsigned(max_dim.bit_length()))
        eps = Signal(unsigned(_eps_bits(max_dim)))
        k = Signal(range(layernorm_pre_shift(1) + 1))
        job_last = Signal()                                      # this row ends the job
        # k as a priority chain over d (a step function with ~20 steps for d <= 1024).
        cfg_k = Signal.like(k)
        steps = [(d, layernorm_pre_shift(d)) for d in range(1, max_dim + 1)
                 if d == 1 or layernorm_pre_shift(d) != layernorm_pre_shift(d - 1)]
        m.d.comb += cfg_k.eq(steps[0][1])
        for d_from, val in steps[1:]:
            with m.If(self.i_cfg.payload.dim >= d_from):
                m.d.comb += cfg_k.eq(val)
        vars(u).update(dim=dim, eps=eps, k=k, job_last=job_last, cfg_k=cfg_k)

    def _elaborate_load(self, m, platform, u):
        """Load phase datapath: ``i_stream`` beats into the row buffer, ``S1`` and ``Q``."""
        cols, max_dim, dim = self._cols, self._max_dim, u.dim
        depth = max(2, -(-max_dim // cols))
        m.submodules.rowbuf = rowbuf = make_block_ram(platform, width=ACT_WIDTH * cols,
                                                      depth=depth, family=self._family)
        elem = Signal(range(max_dim + cols + 1))                 # first element of this beat
        beat_in = Signal(range(depth))
        take_in = Signal()
        row_done_in = Signal()
        m.d.comb += [
            take_in.eq(self.i_stream.valid & self.i_stream.ready),
            row_done_in.eq(elem + cols >= dim),
            rowbuf.w_en.eq(take_in),
            rowbuf.w_addr.eq(beat_in),
            rowbuf.w_data.eq(self.i_stream.payload.x),
        ]
        sum_w = (128 * max_dim).bit_length() + 1
        sq_w = (128 * 128 * max_dim).bit_length()
        s1 = Signal(signed(sum_w))                               # sum x
        q = Signal(unsigned(sq_w))                               # sum x**2
        clear_stats = Signal()
        masked = [Mux((elem + c < dim) & take_in, self.i_stream.payload.x[c], 0)
                  for c in range(cols)]
        sx1 = Signal(signed(sum_w))
        sx2 = Signal(signed(sum_w))
        m.d.sync += [sx1.eq(sum(masked)), sx2.eq(sx1)]
        squares = []
        for c in range(cols):
            sq = LutMultiplier(ACT_WIDTH, ACT_WIDTH)
            m.submodules[f"sq{c}"] = sq
            m.d.comb += [sq.en.eq(1), sq.a.eq(masked[c]), sq.b.eq(masked[c])]
            squares.append(sq.p.as_unsigned())
        with m.If(clear_stats):
            m.d.sync += [s1.eq(0), q.eq(0)]
        with m.Else():
            m.d.sync += [s1.eq(s1 + sx2), q.eq(q + sum(squares))]
        s1_neg = s1 < 0
        s1_abs = Signal(unsigned(sum_w - 1))
        m.d.comb += s1_abs.eq(Mux(s1_neg, -s1, s1))
        vars(u).update(depth=depth, rowbuf=rowbuf, elem=elem, beat_in=beat_in, take_in=take_in,
                       row_done_in=row_done_in, q=q, clear_stats=clear_stats, s1_neg=s1_neg,
                       s1_abs=s1_abs)

    def _elaborate_scalar_registers(self, m, u):
        """The scalar engine's registers and the row constants it hands the normalize phase."""
        macc = Signal(ENGINE_BITS)
        ma = Signal(ENGINE_BITS)                                 # a * 4**step
        ma3 = Signal(ENGINE_BITS)                                # 3 * a * 4**step
        mb = Signal(max(self.dim_bits, self.sum_bits))
        cnt = Signal(range(max(DIV_STEPS, ENGINE_BITS) + 1))
        t1 = Signal(ENGINE_BITS)                                 # d * Q
        rem = Signal(ENGINE_BITS)
        res = Signal(ENGINE_BITS)
        bit = Signal(ENGINE_BITS)
        drem = Signal(33)
        inv = Signal(DIV_STEPS)
        g1 = Signal(ENGINE_BITS)                                 # d * inv
        g_next = Signal(PROD_BITS)
        # Row constants of the normalize phase (committed when it is empty).
        g_row = Signal(PROD_BITS)
        h_row = Signal(PROD_BITS)
        # Shift of the normalized value: 48 - k - 10 (the reference's round_shift).
        n_shift = Signal(range(LN_RECIP_BITS - LN_FRAC_BITS + 1))
        inflight = Signal(range(64))
        vars(u).update(macc=macc, ma=ma, ma3=ma3, mb=mb, cnt=cnt, t1=t1, rem=rem, res=res,
                       bit=bit, drem=drem, inv=inv, g1=g1, g_next=g_next, g_row=g_row,
                       h_row=h_row, n_shift=n_shift, inflight=inflight)

    def _count(self, m, u, steps, nxt, *done):
        """Stay for exactly ``steps`` cycles, then go to ``nxt`` doing ``done``."""
        m.d.sync += u.cnt.eq(u.cnt + 1)
        with m.If(u.cnt == steps - 1):
            m.d.sync += [u.cnt.eq(0), *done]
            m.next = nxt

    def _mul_step(self, m, u, a_src, b_src, bits, nxt):
        """One radix-4 shift-and-add step of ``a_src * b_src`` (``ceil(bits / 2)`` steps,
        modulo ``2**64``) into ``macc``: one adder per cycle, ``3 * a`` kept beside ``a``."""
        first = u.cnt == 0
        a_cur = Mux(first, a_src, u.ma)[:ENGINE_BITS]
        a3_cur = Mux(first, (a_src << 1) + a_src, u.ma3)[:ENGINE_BITS]
        b_cur = Mux(first, b_src, u.mb)
        digit = b_cur[:2]
        addend = Mux(digit[1], Mux(digit[0], a3_cur, a_cur << 1),
                     Mux(digit[0], a_cur, 0))
        m.d.sync += [
            u.macc.eq(Mux(first, 0, u.macc) + addend),
            u.ma.eq(a_cur << 2),
            u.ma3.eq(a3_cur << 2),
            u.mb.eq(b_cur >> 2),
        ]
        self._count(m, u, _half(bits), nxt)

    def _elaborate_normalize_issue(self, m, u):
        """Normalize phase control: ``i_param`` beats read the row buffer, one per cycle."""
        cols, max_dim, rowbuf = self._cols, self._max_dim, u.rowbuf
        beat_out = Signal(range(u.depth))
        elem_out = Signal(range(max_dim + cols + 1))
        take_out = Signal()
        out_state = Signal()
        m.d.comb += [
            self.i_param.ready.eq(out_state & u.ce),
            take_out.eq(self.i_param.valid & self.i_param.ready),
            rowbuf.r_en.eq(u.ce),
            rowbuf.r_oce.eq(u.ce),
            rowbuf.r_addr.eq(beat_out),
        ]
        row_done_out = elem_out + cols >= u.dim
        vars(u).update(beat_out=beat_out, elem_out=elem_out, take_out=take_out,
                       out_state=out_state, row_done_out=row_done_out)

    def _elaborate_load_states(self, m, u):
        """``IDLE`` takes a job's ``i_cfg``; ``LOAD`` takes a row's ``i_stream`` beats."""
        cols, cfg = self._cols, self.i_cfg.payload
        with m.State("IDLE"):
            m.d.comb += [self.i_cfg.ready.eq(1), u.clear_stats.eq(1)]
            with m.If(self.i_cfg.valid):
                m.d.sync += [u.dim.eq(cfg.dim), u.eps.eq(cfg.eps),
                             u.k.eq(u.cfg_k), u.elem.eq(0), u.beat_in.eq(0)]
                m.next = "LOAD"
        with m.State("LOAD"):
            m.d.comb += self.i_stream.ready.eq(1)
            with m.If(u.take_in):
                m.d.sync += [u.elem.eq(u.elem + cols), u.beat_in.eq(u.beat_in + 1)]
                with m.If(u.row_done_in):
                    m.d.sync += [u.job_last.eq(self.i_stream.payload.last), u.cnt.eq(0)]
                    m.next = "DRAIN"

    def _elaborate_variance_states(self, m, u):
        """Scalar phase, first part: the stats drain, then ``d * S = d * d * (d * Q - S1**2)``."""
        dim = u.dim
        with m.State("DRAIN"):
            self._count(m, u, STATS_DRAIN, "MUL_DQ")
        with m.State("MUL_DQ"):                              # d * Q
            self._mul_step(m, u, u.q, dim, self.dim_bits, "MUL_SS")
        with m.State("MUL_SS"):                              # S1**2
            with m.If(u.cnt == 0):
                m.d.sync += u.t1.eq(u.macc)
            self._mul_step(m, u, u.s1_abs, u.s1_abs, self.sum_bits, "MUL_DV")
        with m.State("MUL_DV"):                              # d * (d * Q - S1**2) = S
            self._mul_step(m, u, (u.t1 - u.macc)[:ENGINE_BITS], dim, self.dim_bits, "MUL_DS")
        with m.State("MUL_DS"):                              # d * S
            self._mul_step(m, u, u.macc, dim, self.dim_bits, "PRESHIFT")

    def _elaborate_isqrt_states(self, m, u):
        """Scalar phase, second part: ``r = isqrt((d * S + eps_q) << 2k)`` and
        ``inv = 2**48 // max(r, 1)``."""
        rem, res, bit, cnt, drem, inv = u.rem, u.res, u.bit, u.cnt, u.drem, u.inv
        with m.State("PRESHIFT"):
            m.d.sync += [rem.eq((u.macc + u.eps) << Cat(Const(0, 1), u.k)), res.eq(0),
                         bit.eq(1 << (2 * ISQRT_ITERATIONS - 2))]
            m.next = "ISQRT"
        with m.State("ISQRT"):                               # sw.ref.isqrt_int, 32 steps
            trial = (res + bit)[:ENGINE_BITS]
            with m.If(rem >= trial):
                m.d.sync += [rem.eq(rem - trial), res.eq((res >> 1) + bit)]
            with m.Else():
                m.d.sync += res.eq(res >> 1)
            m.d.sync += bit.eq(bit >> 2)
            self._count(m, u, ISQRT_ITERATIONS, "DIV", drem.eq(0), inv.eq(0))
        with m.State("DIV"):                                 # 2**48 // max(r, 1)
            r = Mux(res == 0, 1, res)[:32]
            rem2 = Cat(cnt == 0, drem)[:34]
            with m.If(rem2 >= r):
                m.d.sync += [drem.eq(rem2 - r), inv.eq(Cat(1, inv))]
            with m.Else():
                m.d.sync += [drem.eq(rem2), inv.eq(Cat(0, inv))]
            self._count(m, u, DIV_STEPS, "MUL_G1")

    def _elaborate_row_constant_states(self, m, u):
        """Scalar phase, last part: ``G = d**2 * inv`` and ``H = S1 * d * inv - 2**(37 - k)``,
        committed to the normalize phase."""
        dim, macc, k = u.dim, u.macc, u.k
        with m.State("MUL_G1"):                              # d * inv
            self._mul_step(m, u, u.inv, dim, self.dim_bits, "MUL_G")
        with m.State("MUL_G"):                               # G = d * d * inv
            with m.If(u.cnt == 0):
                m.d.sync += u.g1.eq(macc)
            self._mul_step(m, u, macc, dim, self.dim_bits, "MUL_H")
        with m.State("MUL_H"):                               # |S1| * d * inv
            with m.If(u.cnt == 0):
                m.d.sync += u.g_next.eq(macc)
            self._mul_step(m, u, u.g1, u.s1_abs, self.sum_bits, "COMMIT")
        with m.State("COMMIT"):
            # The previous row's elements may still be in the pipeline (backpressure):
            # the row constants change only once it is empty.
            with m.If(u.inflight == 0):
                half = Const(1 << (LN_RECIP_BITS - LN_FRAC_BITS - 1), PROD_BITS) >> k
                h = Mux(u.s1_neg, -macc, macc)[:PROD_BITS]
                m.d.sync += [u.g_row.eq(u.g_next), u.h_row.eq(h - half),
                             u.n_shift.eq(LN_RECIP_BITS - LN_FRAC_BITS - k),
                             u.elem_out.eq(0), u.beat_out.eq(0)]
                m.next = "OUT"

    def _elaborate_output_state(self, m, u):
        """``OUT`` takes a row's ``i_param`` beats, then loads the next row or ends the job."""
        cols = self._cols
        with m.State("OUT"):
            m.d.comb += [u.out_state.eq(1), u.clear_stats.eq(1)]
            with m.If(u.take_out):
                m.d.sync += [u.elem_out.eq(u.elem_out + cols), u.beat_out.eq(u.beat_out + 1)]
                with m.If(u.row_done_out):
                    m.d.sync += [u.elem.eq(0), u.beat_in.eq(0)]
                    with m.If(u.job_last):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "LOAD"

    def _elaborate_normalize_pipeline(self, m, u):
        """Normalize phase datapath: one element pipeline per lane, on the output buffer's
        clock enable as in every other unit, and the in-flight count ``COMMIT`` waits on."""
        ce = u.ce
        last0 = u.job_last & u.row_done_out
        n_lat = BlockRAM.latency + Multiplier.latency + 3    # row buffer, chunks, sums, shift
        g_lat = n_lat + Multiplier.latency                  # n * gamma
        b_lat = g_lat + 1                       # + beta
        total = b_lat + RequantLane.latency
        valid_o = _delay(m, ce, u.take_out, total, "valid")
        last_o = _delay(m, ce, last0, total, "last")
        # in flight: taken but not yet pushed into the output buffer
        push = valid_o & ce
        m.d.sync += u.inflight.eq(u.inflight + (u.take_out & ce) - push)
        for c in range(self._cols):
            self._elaborate_normalize_lane(m, u, c, n_lat=n_lat, g_lat=g_lat, b_lat=b_lat)
        m.d.comb += [u.obuf.push.eq(valid_o), u.obuf.data.last.eq(last_o)]

    def _elaborate_normalize_lane(self, m, u, c, *, n_lat, g_lat, b_lat):
        """Lane ``c``: ``n = (x * G - H) >> n_shift``, ``n * gamma + beta``, requantized."""
        ce, prm = u.ce, self.i_param.payload
        x2 = u.rowbuf.r_data[c * ACT_WIDTH:(c + 1) * ACT_WIDTH].as_signed()
        prods = []
        for i in range(0, PROD_BITS, CHUNK_BITS):
            width = min(CHUNK_BITS, PROD_BITS - i)
            pm = LutMultiplier(ACT_WIDTH, width + 1)
            m.submodules[f"xg{c}_{i // CHUNK_BITS}"] = pm
            m.d.comb += [pm.en.eq(ce), pm.a.eq(x2), pm.b.eq(u.g_row[i:i + width])]
            prods.append((pm.p, i))
        # S5: two partial sums (the rounding constant and -H folded into one); S6: P.
        t_lo = _stage(m, ce, sum(p << i for p, i in prods[:2])[:PROD_BITS], f"tlo{c}",
                      unsigned(PROD_BITS))
        t_hi = _stage(m, ce, (sum(p << i for p, i in prods[2:]) - u.h_row)[:PROD_BITS],
                      f"thi{c}", unsigned(PROD_BITS))
        p6 = _stage(m, ce, (t_lo + t_hi)[:PROD_BITS].as_signed(), f"p{c}", signed(PROD_BITS))
        n7 = _stage(m, ce, (p6 >> u.n_shift)[:NORM_BITS].as_signed(), f"n{c}",
                    signed(NORM_BITS))
        gm = LutMultiplier(ACT_WIDTH, NORM_BITS)              # int8 gamma selects
        m.submodules[f"gamma{c}"] = gm
        m.d.comb += [gm.en.eq(ce), gm.a.eq(_delay(m, ce, prm.gamma[c], n_lat, f"gamma{c}")),
                     gm.b.eq(n7)]
        beta = _delay(m, ce, prm.beta[c], g_lat, f"beta{c}")
        acc = _stage(m, ce, (gm.p + beta)[:ACC_WIDTH].as_signed(), f"acc{c}", signed(ACC_WIDTH))
        lane = RequantLane(use_dsp=self._use_dsp, family=self._family)
        m.submodules[f"lane{c}"] = lane
        m.d.comb += [lane.s.eq(acc), lane.mult.eq(_delay(m, ce, prm.mult[c], b_lat, f"mult{c}")),
                     lane.shift.eq(_delay(m, ce, prm.shift[c], b_lat, f"shift{c}")),
                     lane.en.eq(ce)]
        m.d.comb += u.obuf.data.data[c].eq(lane.y)


def _stage(m: Module, ce, sig, name: str, shape=None):
    """``sig`` through one register named ``name`` that loads when ``ce`` is high."""
    d = Signal(shape if shape is not None else Value.cast(sig).shape(), name=name)
    with m.If(ce):
        m.d.sync += d.eq(sig)
    return d


def _delay(m: Module, ce, sig, n: int, name: str):
    """``sig`` through ``n`` :func:`_stage` registers, named ``{name}_s1`` onwards."""
    for i in range(n):
        sig = _stage(m, ce, sig, f"{name}_s{i + 1}")
    return sig
