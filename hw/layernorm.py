# SPDX-License-Identifier: Apache-2.0
"""Integer LayerNorm unit: exactly :func:`sw.ref.layernorm_int`, one row at a time.

For a row ``x`` of width ``d`` (int8), with ``S1 = sum x``, ``Q = sum x**2`` and the constant
``k = layernorm_pre_shift(d)``, the reference computes ``c = d * x - S1``,
``S = sum c**2 = d * (d * Q - S1**2)`` and::

    r   = max(isqrt((d * S + eps_q) << 2k), 1)
    inv = 2**48 // r
    n   = round_shift(c * d * inv, 38 - k)              # Q.10, |n| < 2**15
    y   = requantize(n * gamma + beta, mult, shift)

The unit runs each row in three phases, and different rows' phases at the same time:

1. **Load** (``ceil(d / cols)`` beats, one per cycle): the row goes into its slot of a row
   buffer (:func:`hw.bram.make_block_ram`, ``ROW_SLOTS`` rows) while ``S1`` and ``Q``
   accumulate (one squaring multiplier per lane); the next row loads right after it.
2. **Scalar** (:meth:`LayerNorm.scalar_cycles`, 136 cycles for ``max_dim = 1024``): one of
   ``engines`` sequential engines (they take the rows in turn) computes
   ``d * S = (d * Q - S1**2) * d**2`` by shift-and-add (its multiplies take two bits of
   ``d``, ``d**2`` or ``|S1|`` per cycle), the square root by the digit-by-digit rule of
   :func:`sw.ref.isqrt_int` (exactly 32 steps), ``inv`` by a restoring division (49 steps),
   then the per-row constants ``G = d**2 * inv`` and ``H = S1 * d * inv - 2**(37 - k)``.
3. **Normalize** (``ceil(d / cols)`` beats, one per cycle with the per-channel ``i_param``):
   ``c * d * inv + 2**(37 - k) = x * G - H`` (the rounding constant folded into ``H``), so each
   element needs one int8 x 56-bit product, computed modulo ``2**56`` from four int8 x
   17-bit chunk products (the true value is below ``2**54`` in magnitude, so the residue is
   exact); then the arithmetic shift, ``n * gamma + beta`` and a
   :class:`hw.requant.RequantLane`. Every product with an int8 operand (the squares, the
   chunks, ``n * gamma``) is a :class:`hw.lut_multiplier.LutMultiplier`; only the requant
   lane's 32 x 15-bit product uses DSP blocks (two per lane).

Each engine is sequential (one adder a cycle), so a long job takes
:meth:`LayerNorm.row_cycles` = ``(scalar_cycles - 1) / engines`` cycles a row when nothing
stalls (at least ``ceil(d / cols) + 1``); the row constants travel down the normalize pipeline
beside their elements, so rows follow each other there without a gap.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Elaboratable, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.bram import BlockRAM, make_block_ram, unshared_register
from hw.checks import check_int
from hw.fsm import one_hot, select_one_hot
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
#: Width of the scalar engines' radicand and root registers (``rem``, ``res``).
ENGINE_BITS = 64
#: Width of the engines' multiply datapath (``mul_a``, ``macc``): the exact products it keeps
#: are below ``2**55`` (``d * S <= d**4 * 2**14`` for ``d <= 1024``), and the row constants
#: ``G`` and ``H`` it forms are used modulo ``2**PROD_BITS``, which a product modulo
#: ``2**MUL_BITS`` gives.
MUL_BITS = PROD_BITS
#: Width of the non-restoring square root's signed partial remainder: after step j, -2 * r_j - 1
#: <= part <= 2 * r_j for the j-bit partial root r_j < 2**j, so |part| < 2**33, plus the sign.
ISQRT_PART_BITS = ISQRT_ITERATIONS + 3
DIV_STEPS = LN_RECIP_BITS + 1          # quotient bits of 2**48 // r
#: Cycles between the row's last load beat and the first scalar step (stats pipeline).
STATS_DRAIN = 2
#: Rows the row buffer holds: the one loading, the ones in the holding register and the
#: engines, the one being read out.
ROW_SLOTS = 4


def _half(bits: int) -> int:
    return (bits + 1) // 2


def dim_bits(max_dim: int) -> int:
    """Bits of ``d <= max_dim``: a sequential multiply by ``d`` takes ``ceil(bits / 2)`` steps."""
    return max_dim.bit_length()


def sum_bits(max_dim: int) -> int:
    """Bits of ``|S1| <= 128 * max_dim`` (a multiply by it: ``ceil(bits / 2)`` steps)."""
    return (128 * max_dim).bit_length()


def scalar_cycles(max_dim: int) -> int:
    """Cycles of a row's scalar phase: the stats drain, three multiplies by ``d``, one by
    ``d**2`` and two by ``|S1|`` (two bits per cycle), the variance subtraction, the wait of
    ``G``'s operand, the pre-shift, the square root, the division, ``h``'s store and the
    commit of the row constants. The pre-shift takes two cycles: ``+ eps``, then the shift
    (an adder and a barrel shifter in one cycle were the routed ``tiny`` accelerator's
    critical path)."""
    # d * S = (d * Q - S1**2) * d**2 is one multiply by d**2 (2 * dim_bits bits: dim_bits
    # steps); G = (d * inv) * d waits a cycle for its operand (LOAD_G).
    multiplies = (3 * _half(dim_bits(max_dim)) + dim_bits(max_dim)
                  + 2 * _half(sum_bits(max_dim)))
    sub_dv, load_g, preshift, store_h, commit = 1, 1, 2, 1, 1
    return (STATS_DRAIN + multiplies + sub_dv + load_g + preshift + ISQRT_ITERATIONS
            + DIV_STEPS + store_h + commit)


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


#: Normalize phase of a row element: beat taken -> output valid.
PIPELINE_LATENCY = (BlockRAM.latency + 2 * Multiplier.latency + 3 + 1 + RequantLane.latency
                    + OutputBuffer.latency)


class LayerNorm(Unit):
    """Integer LayerNorm of rows of width ``1 <= d <= max_dim``, ``cols`` elements per beat.

    Bit-exact with :func:`sw.ref.layernorm_int` (module docstring). A job is one ``i_cfg``
    transfer and the rows after it, up to the row whose final beat has ``last``. Each row is
    ``ceil(d / cols)`` beats on ``i_stream`` (lanes past ``d`` in the final beat are ignored),
    then, after the scalar phase, ``ceil(d / cols)`` beats on ``i_param`` (the channels' affine
    and requant constants; taken one per output element group) give as many beats on
    ``o_stream``. The next rows load while earlier rows are in their scalar phase or drain
    (up to ``ROW_SLOTS`` rows in the unit). Stream rules: ``hw/README.md``.

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
    engines : int
        Scalar engines, 1..``ROW_SLOTS - 1`` (default 2): rows in their scalar phase at once.
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
        ``1 + scalar_cycles + pipeline_latency (18)``: 155 for ``max_dim = 1024``, when the
        row's engine and the output are free (later rows wait for them).
    """

    params_fields = ("cols", "dsp_multipliers")
    cols = Setting("Elements per beat.")
    max_dim = Setting("Largest row width d.")
    use_dsp = Setting("DSP multipliers where the platform has them.")
    engines = Setting("Scalar engines (rows in their scalar phase at the same time).")

    def __init__(self, cols: int, *, max_dim: int = LN_MAX_DIM, use_dsp: bool = True,
                 engines: int = 2, family: str | None = None):
        self._cols = check_int("cols", cols, 1, MAX_DIM)
        self._max_dim = check_int("max_dim", max_dim, 1, LN_MAX_DIM)
        self._engines = check_int("engines", engines, 1, ROW_SLOTS - 1)
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
        return dim_bits(self._max_dim)

    @property
    def sum_bits(self) -> int:
        """Bits of ``|S1| <= 128 * max_dim`` (a multiply by it: ``ceil(sum_bits / 2)`` steps)."""
        return sum_bits(self._max_dim)

    @property
    def scalar_cycles(self) -> int:
        """Cycles of the scalar phase (:func:`scalar_cycles`)."""
        return scalar_cycles(self._max_dim)

    @property
    def pipeline_latency(self) -> int:
        """Normalize phase: beat taken -> output valid."""
        return PIPELINE_LATENCY

    @property
    def latency(self) -> int:
        return 1 + self.scalar_cycles + self.pipeline_latency

    def row_cycles(self, dim: int) -> float:
        """Cycles per row of width ``dim`` in a long job at full rate: each engine is busy
        ``scalar_cycles - 1`` cycles a row and they take turns; the load needs ``ceil(d / cols)``
        beats a row (and ``STATS_DRAIN + 1`` cycles between final beats), the output one more
        (the cycle that takes the row's constants)."""
        beats = -(-check_int("dim", dim, 1, self._max_dim) // self._cols)
        return max(beats + 1, STATS_DRAIN + 1, (self.scalar_cycles - 1) / self._engines)

    # -- gateware --------------------------------------------------------------------------------
    #
    # elaborate() wires three processes that run at the same time: the load (``i_cfg``, then the
    # rows' beats into a ring of ROW_SLOTS row slots while ``S1`` and ``Q`` accumulate), the
    # scalar engines (:class:`_ScalarEngine`, one row each, taken in turn) and the output (a row's
    # ``i_param`` beats read its slot; its row constants travel down the normalize pipeline beside
    # its elements). Each _elaborate_* helper adds one part to the same Module and records the
    # signals later parts use on a shared namespace ``u``.

    def elaborate(self, platform):
        m = Module()
        u = SimpleNamespace()
        self._elaborate_output_buffer(m, u)
        self._elaborate_job_constants(m, u)
        self._elaborate_load(m, platform, u)
        self._elaborate_engines(m, u)
        self._elaborate_normalize_issue(m, u)
        self._elaborate_load_states(m, u)
        self._elaborate_output_states(m, u)
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
        # k as a priority chain over d (a step function with ~20 steps for d <= 1024).
        cfg_k = Signal.like(k)
        steps = [(d, layernorm_pre_shift(d)) for d in range(1, max_dim + 1)
                 if d == 1 or layernorm_pre_shift(d) != layernorm_pre_shift(d - 1)]
        m.d.comb += cfg_k.eq(steps[0][1])
        for d_from, val in steps[1:]:
            with m.If(self.i_cfg.payload.dim >= d_from):
                m.d.comb += cfg_k.eq(val)
        vars(u).update(dim=dim, eps=eps, k=k, cfg_k=cfg_k)

    def _elaborate_load(self, m, platform, u):
        """Load phase datapath: ``i_stream`` beats into the row's slot of the row buffer,
        ``S1`` and ``Q``; two cycles after a row's final beat (:data:`STATS_DRAIN`) its totals
        go to the next scalar engine, or wait in a holding register while none is free."""
        cols, max_dim, dim = self._cols, self._max_dim, u.dim
        slot_bits = (-(-max_dim // cols) - 1).bit_length()     # beats of a slot: 2**slot_bits
        depth = max(2, ROW_SLOTS << slot_bits)
        m.submodules.rowbuf = rowbuf = make_block_ram(platform, width=ACT_WIDTH * cols,
                                                      depth=depth, family=self._family)
        elem = Signal(range(max_dim + cols + 1))                 # first element of this beat
        beat_in = Signal(max(1, slot_bits))
        slot_in = Signal(range(ROW_SLOTS))
        take_in = Signal()
        row_done_in = Signal()
        m.d.comb += [
            take_in.eq(self.i_stream.valid & self.i_stream.ready),
            row_done_in.eq(elem + cols >= dim),
            rowbuf.w_en.eq(take_in),
            rowbuf.w_addr.eq(Cat(beat_in[:slot_bits], slot_in)),
            rowbuf.w_data.eq(self.i_stream.payload.x),
        ]
        sum_w = (128 * max_dim).bit_length() + 1
        sq_w = (128 * 128 * max_dim).bit_length()
        s1 = Signal(signed(sum_w))                               # sum x
        q = Signal(unsigned(sq_w))                               # sum x**2
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
        # The row's end, STATS_DRAIN cycles behind its final beat (with the job's last flag).
        ends = [(take_in & row_done_in, self.i_stream.payload.last)]
        for i in range(STATS_DRAIN):
            end, last = Signal(name=f"end{i + 1}"), Signal(name=f"end_last{i + 1}")
            m.d.sync += [end.eq(ends[-1][0]), last.eq(ends[-1][1])]
            ends.append((end, last))
        end, end_last = ends[-1]
        s1_tot = Signal(signed(sum_w))
        q_tot = Signal(unsigned(sq_w))
        m.d.comb += [s1_tot.eq(s1 + sx2), q_tot.eq(q + sum(squares))]
        with m.If(end):
            m.d.sync += [s1.eq(0), q.eq(0)]
        with m.Else():
            m.d.sync += [s1.eq(s1_tot), q.eq(q_tot)]
        # Holding register: a row's totals while every engine is busy.
        hold = Signal()
        hold_s1, hold_q, hold_last = Signal.like(s1), Signal.like(q), Signal()
        accept = Signal()                                        # an engine takes the totals
        with m.If(end & ~accept):
            m.d.sync += [hold.eq(1), hold_s1.eq(s1_tot), hold_q.eq(q_tot),
                         hold_last.eq(end_last)]
        with m.Elif(accept):
            m.d.sync += hold.eq(0)
        # A row's final beat waits while an earlier row's totals are not yet in an engine.
        end_free = ~hold & ~Cat(e for e, _ in ends[1:]).any()
        vars(u).update(slot_bits=slot_bits, rowbuf=rowbuf, elem=elem, beat_in=beat_in,
                       slot_in=slot_in, take_in=take_in, row_done_in=row_done_in,
                       end_free=end_free, accept=accept, sum_w=sum_w, sq_w=sq_w,
                       src_valid=hold | end, src_s1=Mux(hold, hold_s1, s1_tot),
                       src_q=Mux(hold, hold_q, q_tot), src_last=Mux(hold, hold_last, end_last))

    def _elaborate_engines(self, m, u):
        """:attr:`engines` scalar engines, taking rows in turn (``eng_in``) and handing their
        row constants to the output in the same order (``eng_out``)."""
        n = self._engines
        eng_in = Signal(range(n))
        eng_out = Signal(range(n))
        engines = []
        dim_sq = dim_square(m, u.dim)
        for i in range(n):
            e = _ScalarEngine(self.dim_bits, self.sum_bits, u)
            m.submodules[f"engine{i}"] = e
            m.d.comb += [e.dim.eq(u.dim), e.dim_sq.eq(dim_sq), e.eps.eq(u.eps), e.k.eq(u.k),
                         e.s1_in.eq(u.src_s1),
                         e.q_in.eq(u.src_q), e.last_in.eq(u.src_last),
                         e.start.eq(u.src_valid & (eng_in == i) & e.idle)]
            engines.append(e)
        m.d.comb += u.accept.eq(Cat(e.start for e in engines).any())
        with m.If(u.accept):
            m.d.sync += eng_in.eq(Mux(eng_in == n - 1, 0, eng_in + 1))

        def pick(name):
            """Engine ``eng_out``'s ``name``."""
            sel = getattr(engines[0], name)
            for i, e in enumerate(engines[1:], 1):
                sel = Mux(eng_out == i, getattr(e, name), sel)
            return sel

        vars(u).update(engines=engines, eng_out=eng_out, pick=pick)

    def _elaborate_normalize_issue(self, m, u):
        """Normalize phase control: ``i_param`` beats read the row's slot, one per cycle."""
        cols, max_dim, rowbuf = self._cols, self._max_dim, u.rowbuf
        beat_out = Signal(max(1, u.slot_bits))
        slot_out = Signal(range(ROW_SLOTS))
        elem_out = Signal(range(max_dim + cols + 1))
        take_out = Signal()
        out_state = Signal()
        m.d.comb += [
            self.i_param.ready.eq(out_state & u.ce),
            take_out.eq(self.i_param.valid & self.i_param.ready),
            rowbuf.r_en.eq(u.ce),
            rowbuf.r_oce.eq(u.ce),
            rowbuf.r_addr.eq(Cat(beat_out[:u.slot_bits], slot_out)),
        ]
        row_done_out = elem_out + cols >= u.dim
        # Rows in the slots: loaded (final beat taken) and not yet read by the output.
        occupied = Signal(range(ROW_SLOTS + 1))
        m.d.sync += occupied.eq(occupied + (u.take_in & u.row_done_in)
                                - (take_out & row_done_out))
        vars(u).update(beat_out=beat_out, slot_out=slot_out, elem_out=elem_out,
                       take_out=take_out, out_state=out_state, row_done_out=row_done_out,
                       occupied=occupied)

    def _elaborate_load_states(self, m, u):
        """``IDLE`` takes a job's ``i_cfg``; ``LOAD`` takes its rows' ``i_stream`` beats while
        a slot is free; ``FLUSH`` waits until the job's last row has been read out."""
        cols, cfg = self._cols, self.i_cfg.payload
        with m.FSM(name="load") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i_cfg.ready.eq(1)
                with m.If(self.i_cfg.valid):
                    m.d.sync += [u.dim.eq(cfg.dim), u.eps.eq(cfg.eps),
                                 u.k.eq(u.cfg_k), u.elem.eq(0), u.beat_in.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.i_stream.ready.eq((u.occupied < ROW_SLOTS)
                                                   & (~u.row_done_in | u.end_free))
                with m.If(u.take_in):
                    m.d.sync += [u.elem.eq(u.elem + cols), u.beat_in.eq(u.beat_in + 1)]
                    with m.If(u.row_done_in):
                        m.d.sync += [u.elem.eq(0), u.beat_in.eq(0),
                                     u.slot_in.eq(u.slot_in + 1)]
                        with m.If(self.i_stream.payload.last):
                            m.next = "FLUSH"
            with m.State("FLUSH"):
                with m.If(u.occupied == 0):
                    m.next = "IDLE"
        one_hot(fsm)

    def _elaborate_output_states(self, m, u):
        """``WAIT`` takes the next row's constants from its engine (freeing it); ``OUT`` takes
        the row's ``i_param`` beats."""
        cols, k = self._cols, u.k
        g_row = Signal(PROD_BITS)
        h_row = Signal(PROD_BITS)
        last_row = Signal()                                      # this row ends the job
        with m.FSM(name="out") as fsm:
            with m.State("WAIT"):
                with m.If(u.pick("done")):
                    half = Const(1 << (LN_RECIP_BITS - LN_FRAC_BITS - 1), PROD_BITS) >> k
                    m.d.sync += [g_row.eq(u.pick("g")), h_row.eq(u.pick("h") - half),
                                 last_row.eq(u.pick("last")), u.elem_out.eq(0),
                                 u.beat_out.eq(0)]
                    for i, e in enumerate(u.engines):
                        m.d.comb += e.ack.eq(u.eng_out == i)
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += u.out_state.eq(1)
                with m.If(u.take_out):
                    m.d.sync += [u.elem_out.eq(u.elem_out + cols),
                                 u.beat_out.eq(u.beat_out + 1)]
                    with m.If(u.row_done_out):
                        m.d.sync += [u.slot_out.eq(u.slot_out + 1),
                                     u.eng_out.eq(Mux(u.eng_out == self._engines - 1, 0,
                                                      u.eng_out + 1))]
                        m.next = "WAIT"
        one_hot(fsm)
        vars(u).update(g_row=g_row, h_row=h_row, last_row=last_row)

    def _elaborate_normalize_pipeline(self, m, u):
        """Normalize phase datapath: one element pipeline per lane, on the output buffer's
        clock enable as in every other unit; the row constants follow their elements."""
        ce = u.ce
        last0 = u.last_row & u.row_done_out
        n_lat = BlockRAM.latency + Multiplier.latency + 3    # row buffer, chunks, sums, shift
        g_lat = n_lat + Multiplier.latency                  # n * gamma
        b_lat = g_lat + 1                       # + beta
        total = b_lat + RequantLane.latency
        valid_o = _delay(m, ce, u.take_out, total, "valid")
        last_o = _delay(m, ce, last0, total, "last")
        # The row constants of the element at each stage: G beside the row buffer's data, H
        # beside the chunk products, the shift beside P.
        u.g_at = _delay(m, ce, u.g_row, BlockRAM.latency, "g_row")
        u.h_at = _delay(m, ce, u.h_row, BlockRAM.latency + Multiplier.latency, "h_row")
        n_shift = Const(LN_RECIP_BITS - LN_FRAC_BITS, 6) - u.k
        u.n_shift_at = _delay(m, ce, n_shift[:6], n_lat - 1, "n_shift")
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
            pm = LutMultiplier(ACT_WIDTH, width + 1, b_nonnegative=True)  # G's bits
            m.submodules[f"xg{c}_{i // CHUNK_BITS}"] = pm
            m.d.comb += [pm.en.eq(ce), pm.a.eq(x2), pm.b.eq(u.g_at[i:i + width])]
            prods.append((pm.p, i))
        # S5: two partial sums (the rounding constant and -H folded into one); S6: P.
        t_lo = _stage(m, ce, sum(p << i for p, i in prods[:2])[:PROD_BITS], f"tlo{c}",
                      unsigned(PROD_BITS))
        t_hi = _stage(m, ce, (sum(p << i for p, i in prods[2:]) - u.h_at)[:PROD_BITS],
                      f"thi{c}", unsigned(PROD_BITS))
        p6 = _stage(m, ce, (t_lo + t_hi)[:PROD_BITS].as_signed(), f"p{c}", signed(PROD_BITS))
        n7 = _stage(m, ce, (p6 >> u.n_shift_at)[:NORM_BITS].as_signed(), f"n{c}",
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


def dim_square(m: Module, dim):
    """``dim**2`` (``2 * len(dim)`` bits) for the scalar engines' ``dim_sq``, from a
    :class:`hw.lut_multiplier.LutMultiplier` of two non-negative operands (no DSP block, no
    constant row bits), always enabled: valid two cycles after ``dim`` changes. ``dim``
    holds for a whole job and an engine first reads the square in SUB_DV, after MUL_DQ's
    and MUL_SS's steps of a row that starts after its loads."""
    width = len(dim) + 1                                  # the multiplier is signed
    mul = LutMultiplier(width, width, a_nonnegative=True, b_nonnegative=True)
    m.submodules.dim_square = mul
    m.d.comb += [mul.en.eq(1), mul.a.eq(dim), mul.b.eq(dim)]
    return mul.p[:2 * len(dim)]


class _ScalarEngine(Elaboratable):
    """The scalar phase of one row: from its ``S1`` and ``Q`` (taken on ``start`` while
    ``idle``) to ``G = d**2 * inv`` and ``|S1| * d * inv`` (``h``, its sign not yet applied:
    ``h`` is the signed value), held with ``done`` until ``ack``. Sequential: one adder or
    comparator step per cycle (:attr:`LayerNorm.scalar_cycles`)."""

    def __init__(self, dim_bits: int, sum_bits: int, u):
        self.dim_bits, self.sum_bits = dim_bits, sum_bits
        self.start = Signal()
        self.s1_in = Signal(signed(u.sum_w))
        self.q_in = Signal(unsigned(u.sq_w))
        self.last_in = Signal()
        self.dim = Signal.like(u.dim)
        self.dim_sq = Signal(2 * dim_bits)          # d**2 (dim_square), MUL_DV's multiplier
        self.eps = Signal.like(u.eps)
        self.k = Signal.like(u.k)
        self.idle = Signal()
        self.done = Signal()
        self.ack = Signal()
        self.g = Signal(PROD_BITS)
        self.h = Signal(PROD_BITS)
        self.last = Signal()

    def elaborate(self, platform):
        m = Module()
        e = SimpleNamespace(
            s1=Signal.like(self.s1_in, name="s1"), q=Signal.like(self.q_in, name="q"),
            macc=Signal(MUL_BITS, name="macc"),
            ma=Signal(MUL_BITS, name="ma"),                        # a * 4**step
            ma3=Signal(MUL_BITS, name="ma3"),                      # 3 * a * 4**step
            mb=Signal(max(2 * self.dim_bits, self.sum_bits), name="mb"),
            left=Signal(range(max(DIV_STEPS, ENGINE_BITS) + 1), name="left"),
            t1=Signal(MUL_BITS, name="t1"),                        # d * Q
            rem=Signal(ENGINE_BITS, name="rem"), res=Signal(ENGINE_BITS, name="res"),
            part=Signal(ISQRT_PART_BITS, name="isqrt_part"), res_zero=Signal(name="res_zero"),
            drem=Signal(33, name="drem"), inv=Signal(DIV_STEPS, name="inv"),
            g1=Signal(MUL_BITS, name="g1"),                        # sign(S1) * d * inv
            g_next=Signal(PROD_BITS, name="g_next"), h=Signal(PROD_BITS, name="h_out"))
        e.s1_neg = e.s1 < 0
        # |S1| in a register (its negation is a carry chain in front of the multiply's operand
        # multiplexer otherwise): one cycle after start, and MUL_SS, its first user, comes
        # after MUL_DQ's steps.
        e.s1_abs = Signal(unsigned(self.s1_in.shape().width - 1), name="s1_abs")
        m.d.sync += e.s1_abs.eq(Mux(e.s1_neg, -e.s1, e.s1))
        # cnt == 0 as a register, kept beside every write of cnt (_count, IDLE): the multiply
        # step's "first" and the states' first-cycle captures read a flip-flop.
        e.cnt0 = Signal(init=1, name="cnt0")
        e.cnt_end = Signal(name="cnt_end")              # the counted state's last cycle
        # DIV's first cycle (cnt0 there) in a flip-flop of its own: the numerator's one bit
        # enters the divider's subtractor from it, not from cnt0, whose fan-out into the
        # multiply datapath spreads it (the cnt0 -> divider -> mul_a path of a placed top).
        e.div_first = Signal(name="div_first")
        # The counted states' lengths (_count): each entry loads `left` with its state's
        # cycles less one, so the last-cycle test is `left == 1` in every counted state, one
        # comparator with a constant, not a multiplexer of every state's own comparator.
        dim_steps, sum_steps = _half(self.dim_bits), _half(self.sum_bits)
        self._counted = {"MUL_DQ": dim_steps, "MUL_SS": sum_steps, "MUL_DV": self.dim_bits,
                         "ISQRT": ISQRT_ITERATIONS, "DIV": DIV_STEPS,
                         "MUL_G1": dim_steps, "MUL_G": dim_steps, "MUL_H": sum_steps}
        # The multiply's operands and its enable are registers, loaded as the state before a
        # multiply leaves (_operand_loads): the one datapath (_mul_datapath) sees no state
        # multiplexer. macc_next is the datapath's next macc; a product that is the next
        # multiply's operand is taken from macc, a cycle later (LOAD_G).
        e.mul_on = Signal(name="mul_on")
        e.mul_a = Signal(MUL_BITS, name="mul_a")
        e.mul_b = Signal(max(len(e.mb), len(e.s1_abs)), name="mul_b")
        e.macc_next = Signal(MUL_BITS, name="macc_next")
        e.div_diff = Signal(35, name="div_diff")
        # The first step's sum reads a copy of mul_a of its own (loaded with it; a register
        # Yosys does not merge), placed beside macc's adder: mul_a also feeds 3a and ma, and
        # its wire to the first step's sum was 4.2 ns of a routed ulx3s_85f top's 10.03 ns
        # critical path (d9eeca5).
        # It loads with mul_a through its flip-flops' clock enable (no LUT a bit to hold it).
        e.mul_a_sum_next = Signal(MUL_BITS, name="mul_a_sum_next")
        e.mul_a_sum_load = Signal(name="mul_a_sum_load")
        e.mul_a_sum = unshared_register(m, e.mul_a_sum_next, name="mul_a_sum",
                                        platform=platform, enable=e.mul_a_sum_load)
        self._mul_datapath(m, e)
        # The results, registers, valid in DONE and unchanged until MUL_H / STORE_H of the next
        # row, so a consumer may also take them the cycle after ack (TokenLayerNorm does).
        m.d.comb += [self.g.eq(e.g_next), self.h.eq(e.h)]
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                # The row's inputs and first operands load every idle cycle, not under start:
                # start then enables only the state (a start is a wide enable across the
                # engine otherwise, the routed top's critical path). cnt / cnt0 are 0 / 1
                # here already (every counted state's exit), the results hold (g, h: their
                # registers change only in MUL_H / STORE_H; last was read while it was valid).
                # The datapath steps on these operands while idle (mul_on); MUL_DQ's first
                # step starts over from them (cnt0), so those steps leave nothing behind.
                m.d.sync += [e.s1.eq(self.s1_in), e.q.eq(self.q_in), self.last.eq(self.last_in)]
                with m.If(self.start):
                    m.next = "MUL_DQ"
            self._variance_states(m, e)
            self._isqrt_states(m, e)
            self._row_constant_states(m, e)
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                with m.If(self.ack):
                    m.next = "IDLE"
        one_hot(fsm)
        self._operand_loads(m, e, fsm)
        return m

    def _operand_loads(self, m, e, fsm):
        """The multiply's operands (``mul_a``, ``mul_b``, ``mul_on``) and the state counter
        ``left``, loaded from registers that say a cycle ahead which load comes: one
        flip-flop per operand source (``load_*``) and ``left_load`` / ``left_init``.

        The loads happen at a counted state's last cycle (known the cycle before: ``left ==
        1`` there), in ``SUB_DV`` (the cycle after ``MUL_SS``'s last), in ``PRESHIFT_SHIFT``
        (``left`` only) and in every ``IDLE`` cycle (``IDLE`` is a one-hot state flip-flop).
        The operand registers then see an AND-OR of sources behind flip-flops, not a
        multiplexer decoded from the state and ``cnt_end`` (the decode's fan-out across the
        64-bit operands was the engines' longest path)."""
        dim = self.dim
        idle = fsm.ongoing("IDLE")
        last_next = e.left == 1            # in a counted state: the next cycle is its last
        # (source a, source b, the condition the cycle before the load)
        loads = {
            "s1": (e.s1_abs, e.s1_abs, fsm.ongoing("MUL_DQ") & last_next),
            "var": (e.t1 - e.macc, self.dim_sq, fsm.ongoing("MUL_SS") & e.cnt_end),
            # d * inv as MUL_G's operand: from macc, in LOAD_G, the cycle after MUL_G1's last
            # (its last step's sum into mul_a, a 64-bit adder before the operand multiplexer,
            # was a routed ulx3s_85f top's mb -> mul_a group, 11.09 ns).
            "prod": (e.macc, dim, fsm.ongoing("MUL_G1") & e.cnt_end),
            "inv": (Cat(~e.div_diff[-1], e.inv)[:DIV_STEPS], dim,
                    fsm.ongoing("DIV") & last_next),
            "g1": (e.g1, e.s1_abs, fsm.ongoing("MUL_G") & last_next),
        }
        choices_a, choices_b = [(idle, self.q_in)], [(idle, dim)]
        for name, (a, b, before) in loads.items():
            load = Signal(name=f"load_{name}")
            m.d.sync += load.eq(before)
            choices_a.append((load, a))
            choices_b.append((load, b))
        any_load = Cat(sel for sel, _ in choices_a).any()
        a_next = select_one_hot(choices_a, len(e.mul_a))
        m.d.comb += [e.mul_a_sum_next.eq(a_next), e.mul_a_sum_load.eq(any_load)]
        with m.If(any_load):
            m.d.sync += [e.mul_a.eq(a_next),
                         e.mul_b.eq(select_one_hot(choices_b, len(e.mul_b))), e.mul_on.eq(1)]
        # left: IDLE loads MUL_DQ's count every cycle; a counted state's exit loads the next
        # counted state's, SUB_DV MUL_DV's, PRESHIFT_SHIFT ISQRT's; elsewhere it counts down
        # (only the counted states read it).
        counted = self._counted
        entries = [  # (the condition the cycle before the load, the state it enters)
            (fsm.ongoing("MUL_DQ") & last_next, "MUL_SS"),
            (fsm.ongoing("MUL_SS") & e.cnt_end, "MUL_DV"),     # SUB_DV's load
            (fsm.ongoing("PRESHIFT"), "ISQRT"),                 # PRESHIFT_SHIFT's load
            (fsm.ongoing("ISQRT") & last_next, "DIV"),
            (fsm.ongoing("DIV") & last_next, "MUL_G1"),
            (fsm.ongoing("MUL_G1") & e.cnt_end, "MUL_G"),      # LOAD_G's load
            (fsm.ongoing("MUL_G") & last_next, "MUL_H"),
        ]
        left_load = Signal(name="left_load")
        left_init = Signal.like(e.left, name="left_init")
        init = select_one_hot([(before, counted[state] - 1) for before, state in entries],
                              len(left_init))
        m.d.sync += [left_load.eq(Cat(before for before, _ in entries).any()),
                     left_init.eq(init)]
        m.d.sync += e.left.eq(Mux(idle, counted["MUL_DQ"] - 1,
                                  Mux(left_load, left_init, e.left - 1)))

    def _count(self, m, e, steps, nxt, *done):
        """Stay for exactly ``steps`` (at least 2) cycles, then go to ``nxt`` doing ``done``.

        ``left`` counts down the cycles after this one (loaded for the state's first cycle
        with ``steps - 1``, :meth:`_operand_loads`). The last cycle is ``cnt_end``, a register
        set one cycle ahead (``left == 1``): the exit and the ``done`` statements read a
        flip-flop, not a comparator behind the state multiplexer. Every counted state starts with
        ``cnt_end`` low (its ``steps`` is at least 2, and the exit clears it)."""
        assert steps >= 2, steps
        m.d.sync += [e.cnt0.eq(0), e.cnt_end.eq(e.left == 1)]
        with m.If(e.cnt_end):
            m.d.sync += [e.cnt0.eq(1), e.cnt_end.eq(0), *done]
            m.next = nxt

    def _mul_step(self, m, e, bits, nxt, *done):
        """One radix-4 shift-and-add step of ``mul_a * mul_b`` (``ceil(bits / 2)`` steps,
        modulo ``2**MUL_BITS``) into ``macc``, on the engine's one multiply datapath
        (:meth:`_mul_datapath`); the operands were loaded before the state
        (:meth:`_operand_loads`, which also loads the next multiply's operands at its exit;
        ``done``: the statements at its exit)."""
        self._count(m, e, _half(bits), nxt, *done)

    @staticmethod
    def _mul_datapath(m, e):
        """The step of :meth:`_mul_step` while ``mul_on``: ``3 * a`` kept beside ``a``; shared
        by every multiply state (one datapath, not one per state).

        No path goes through two adders: the first step (``macc`` still 0) adds its two
        partial products ``b[0] * a + b[1] * 2a`` with one adder, beside the adder that makes
        ``3a`` for the later steps (both straight after the operand multiplexer); every later
        step adds one addend of registers to ``macc``: the addend itself is a register, picked
        by the step before from the next digit (``b[3:2]`` or ``mb[3:2]``) and the next
        ``a``, ``3a`` (the digit's pick in front of the 64-bit adder, behind the digit's
        fan-out of 128 LUT inputs, was the other half of the routed ulx3s_85f top's
        critical path at d9eeca5)."""
        first = e.cnt0
        a, b = e.mul_a, e.mul_b
        a_sum = e.mul_a_sum                       # a's copy beside the adder
        first_sum = Mux(b[0], a_sum, 0) + Mux(b[1], a_sum << 1, 0)
        addend = Signal(MUL_BITS, name="mul_addend")

        def pick(digit, ma, ma3):
            return Mux(digit[1], Mux(digit[0], ma3, ma << 1), Mux(digit[0], ma, 0))

        m.d.comb += e.macc_next.eq(Mux(first, first_sum, e.macc + addend))
        with m.If(e.mul_on):
            m.d.sync += e.macc.eq(e.macc_next)
            with m.If(first):
                ma, ma3 = a << 2, ((a << 1) + a) << 2
                m.d.sync += [e.ma.eq(ma), e.ma3.eq(ma3), e.mb.eq(b >> 2),
                             addend.eq(pick(b[2:4], ma, ma3))]
            with m.Else():
                m.d.sync += [e.ma.eq(e.ma << 2), e.ma3.eq(e.ma3 << 2), e.mb.eq(e.mb >> 2),
                             addend.eq(pick(e.mb[2:4], e.ma << 2, e.ma3 << 2))]

    def _variance_states(self, m, e):
        """``d * S = (d * Q - S1**2) * d**2``."""
        with m.State("MUL_DQ"):                              # d * Q
            self._mul_step(m, e, self.dim_bits, "MUL_SS")      # then |S1| * |S1|
        with m.State("MUL_SS"):                              # S1**2
            with m.If(e.cnt0):
                m.d.sync += e.t1.eq(e.macc)
            self._mul_step(m, e, self.sum_bits, "SUB_DV", e.mul_on.eq(0))
        with m.State("SUB_DV"):                              # d * Q - S1**2, in a register:
            m.next = "MUL_DV"                               # (_operand_loads)
        with m.State("MUL_DV"):                              # (d * Q - S1**2) * d**2 = d * S
            self._mul_step(m, e, 2 * self.dim_bits, "PRESHIFT", e.mul_on.eq(0))

    def _isqrt_states(self, m, e):
        """``r = isqrt((d * S + eps_q) << 2k)`` and ``inv = 2**48 // max(r, 1)``."""
        rem, res, part, drem, inv = e.rem, e.res, e.part, e.drem, e.inv
        with m.State("PRESHIFT"):
            # (d * S + eps_q) << 2k in two cycles: the sum, then the shift (each its own
            # register stage; the bits the sum carries past ENGINE_BITS would be shifted out).
            # The sum goes into res (free until ISQRT), not rem: an adder into rem beside
            # ISQRT's subtractor would be one shared adder behind a state multiplexer.
            m.d.sync += res.eq(e.macc + self.eps)
            m.next = "PRESHIFT_SHIFT"
        with m.State("PRESHIFT_SHIFT"):
            m.d.sync += [rem.eq(res << Cat(Const(0, 1), self.k)), res.eq(0), part.eq(0),
                         e.res_zero.eq(1)]
            m.next = "ISQRT"
        with m.State("ISQRT"):                               # sw.ref.isqrt_int, 32 steps
            # Non-restoring: the partial remainder `part` (signed) takes the radicand's next
            # two bits (rem, shifted left two a step) and subtracts 4 * res + 1 while it is
            # not negative, else adds 4 * res + 3; the root's next bit (into res from the
            # right) is "the new part is not negative". res is isqrt's root after the 32
            # steps (`part` needs no final correction: only the root is used). The add or
            # subtract is chosen by part's sign, a flip-flop; the carry out reaches res's
            # lowest bit and res_zero only. (The restoring step's borrow chose 128 bits of
            # rem and res: a LayerNorm engine's `res` from `rem` was a routed ulx3s_85f top's
            # group, 48 endpoints.)
            taken = Cat(rem[-2:], part)[:ISQRT_PART_BITS]    # part * 4 + the next two bits
            root = res[:ISQRT_ITERATIONS]
            part_next = Signal(ISQRT_PART_BITS, name="isqrt_part_next")
            m.d.comb += part_next.eq(Mux(part[-1], taken + Cat(Const(3, 2), root),
                                         taken - Cat(Const(1, 2), root)))
            m.d.sync += [part.eq(part_next), rem.eq(rem << 2),
                         res.eq(Cat(~part_next[-1], res[:-1]))]
            with m.If(~part_next[-1]):
                m.d.sync += e.res_zero.eq(0)
            self._count(m, e, ISQRT_ITERATIONS, "DIV", drem.eq(0), inv.eq(0),
                        e.div_first.eq(1))
        with m.State("DIV"):                                 # 2**48 // max(r, 1)
            # max(r, 1) without a 32-bit zero test in front of the subtractor: res is 0 only
            # while no step has shifted in a 1, which res_zero records.
            r = Cat(res[0] | e.res_zero, res[1:32])
            rem2 = Cat(e.div_first, drem)[:34]
            m.d.sync += e.div_first.eq(0)
            diff = e.div_diff                                # one subtractor, as in ISQRT
            m.d.comb += diff.eq(rem2 - r)
            inv_next = Cat(~diff[-1], inv)[:DIV_STEPS]
            m.d.sync += [drem.eq(Mux(diff[-1], rem2, diff[:34])), inv.eq(inv_next)]
            self._count(m, e, DIV_STEPS, "MUL_G1")            # then inv * d

    def _row_constant_states(self, m, e):
        """``G = d**2 * inv`` and ``|S1| * d * inv``."""
        macc = e.macc
        with m.State("MUL_G1"):                              # d * inv
            self._mul_step(m, e, self.dim_bits, "LOAD_G", e.mul_on.eq(0))
        with m.State("LOAD_G"):                              # d * inv from macc into mul_a
            m.next = "MUL_G"                                # (_operand_loads)
        with m.State("MUL_G"):                               # G = d * d * inv
            # h's sign goes into its multiply's operand: the product modulo 2**MUL_BITS of
            # -(d * inv) and |S1| is -(|S1| * d * inv). (The negation of the product, an adder
            # in front of h, whose loads are the token unit's, was a routed ulx3s_85f top's
            # slowest group: 4 endpoints, 10.47 ns.)
            with m.If(e.cnt0):
                m.d.sync += e.g1.eq(Mux(e.s1_neg, -macc, macc))
            self._mul_step(m, e, self.dim_bits, "MUL_H")       # then g1 * |S1|
        with m.State("MUL_H"):                               # h = sign(S1) * |S1| * d * inv
            with m.If(e.cnt0):
                m.d.sync += e.g_next.eq(macc)
            self._mul_step(m, e, self.sum_bits, "STORE_H", e.mul_on.eq(0))
        with m.State("STORE_H"):                             # h from macc, in a register
            m.d.sync += e.h.eq(macc[:PROD_BITS])
            m.next = "DONE"


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
