# SPDX-License-Identifier: Apache-2.0
"""Token-parallel integer LayerNorm: exactly :func:`sw.ref.layernorm_int`, ``lanes`` rows at once.

:class:`hw.layernorm.LayerNorm` takes a row as beats of ``cols`` channels of one token; the
activation scratchpad stores a block of ``rows`` tokens as one word per channel (byte ``t`` is
token ``t``), so feeding it takes one byte move per element. :class:`TokenLayerNorm` takes the
words as they are: a *block* is ``d`` beats, beat ``c`` holding channel ``c`` of ``lanes``
tokens, and its outputs are beats of the same shape, one per channel, with one channel's
affine and requant constants per beat. The arithmetic per element is that of
:class:`~hw.layernorm.LayerNorm` (its module docstring), with a token's row constants in the
token's lane:

1. **Load** (``d`` beats, one per cycle): the block goes into one of three block slots of a
   block buffer while each lane accumulates its token's ``S1`` and ``Q``.
2. **Scalar**: ``STATS_DRAIN + 1`` cycles after the block's last beat (each beat is registered
   before the sums) its ``lanes`` totals wait in a holding register; ``engines``
   :class:`~hw.layernorm._ScalarEngine` take them one lane at a time, in turn, each
   ``scalar_cycles - 1`` cycles a lane, and leave each lane's ``G`` and ``H`` in its result
   register.
3. **Normalize** (``d`` beats with ``i_param``): once every lane's result is in and the
   previous block's elements have read their row constants (the first stages of the
   pipeline; the rest of it still drains), the lanes take their row constants and
   the block's beats go through ``pipelines`` element pipelines. With one pipeline per lane
   (the default) a beat takes one cycle; with fewer, each pipeline serves ``lanes /
   pipelines`` lanes in turn (*phases*: phase ``f`` of a beat carries lanes ``f * pipelines``
   to ``(f + 1) * pipelines - 1``), the beat and its ``i_param`` transfer take that many
   cycles, and the phases' results are collected into one output beat. The engines already
   take ``lanes * (scalar_cycles - 1) / engines`` cycles a block, so pipelines that are busy
   only a quarter of the time can be shared at no cost in throughput for ``d`` up to that.

The next block loads while the previous one is in its scalar phase or drains, so a long job
takes :meth:`TokenLayerNorm.block_cycles` a block (the engines' ``lanes * (scalar_cycles - 1) /
engines`` cycles when ``d`` is smaller).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from hw.bram import BlockRAM, make_block_ram, unshared_register
from hw.checks import check_int
from hw.fsm import one_hot
from hw.layernorm import (
    CHUNK_BITS,
    NORM_BITS,
    PIPELINE_LATENCY,
    PROD_BITS,
    STATS_DRAIN,
    _delay,
    _ScalarEngine,
    _stage,
    dim_bits,
    dim_square,
    ln_cfg_layout,
    scalar_cycles,
    sum_bits,
)
from hw.lut_multiplier import LutMultiplier
from hw.multiplier import Multiplier, check_dsp_options
from hw.numerics import (
    ACC_WIDTH,
    ACT_WIDTH,
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

__all__ = ["TokenLayerNorm", "token_ln_param_layout"]

#: Blocks the block buffer holds: the one in its output phase, the one in its scalar phase and
#: the one loading (with shared pipelines a block's output takes as long as a scalar phase, so
#: a third slot keeps the next load from waiting for it).
BLOCK_SLOTS = 3
#: The rounding half of the row constant h before the job's pre-shift k (``_HALF >> k``).
_HALF = Const(1 << (LN_RECIP_BITS - LN_FRAC_BITS - 1), PROD_BITS)

#: Register stages between the block buffer's read data and the element pipelines' products:
#: the lane select (a pipeline's lane in this phase) and the row constant ``g`` are registered
#: beside the multipliers (the routed ``tiny`` top's critical path ran from the buffer's
#: ``DP16KD`` and the phase register through the select into the partial products).
SELECT_LATENCY = 1


def _next_slot(slot):
    """The block slot after ``slot`` (``BLOCK_SLOTS`` of them, in a ring)."""
    return Mux(slot == BLOCK_SLOTS - 1, 0, slot + 1)


def token_ln_param_layout() -> data.StructLayout:
    """Payload of :attr:`TokenLayerNorm.i_param`: one channel's affine and requant constants."""
    return data.StructLayout({"gamma": signed(ACT_WIDTH), "beta": signed(ACC_WIDTH),
                              "mult": unsigned(MULT_BITS), "shift": unsigned(SHIFT_BITS)})


class TokenLayerNorm(Unit):
    """Integer LayerNorm of ``lanes`` rows of width ``1 <= d <= max_dim`` at once, one channel
    of every row per beat.

    Bit-exact with :func:`sw.ref.layernorm_int` per lane (module docstring). A job is one
    ``i_cfg`` transfer and the blocks after it, up to the block whose final beat has ``last``.
    Each block is ``d`` beats on ``i_stream`` (beat ``c``: channel ``c`` of each lane's row),
    then ``d`` beats on ``i_param`` (channel ``c``'s constants) give as many beats on
    ``o_stream``. A lane's row is its own: lanes that carry no row compute garbage, which the
    user ignores. Stream rules: ``hw/README.md``.

    Parameters
    ----------
    rows : int
        Rows per block (its lanes), 1..32: the array's ``rows``, one act word.
    max_dim : int
        Largest row width ``d``, 1..``LN_MAX_DIM`` (1024).
    engines : int
        Scalar engines, 1..``lanes`` (default ``lanes // 2``, at least 1).
    pipelines : int
        Element pipelines of the normalize phase, a divisor of ``lanes`` (default, or 0:
        ``lanes``, one per lane; ``AccelParams.ln_pipelines``). Each holds five int8 x 18-bit
        products and a requant lane.
    use_dsp : bool
        Use DSP blocks for the requant lanes' products (as :class:`~hw.layernorm.LayerNorm`).
    family : str or None
        Force the multiplier / block-RAM family (``"ecp5"``).

    Members
    -------
    i_cfg : In(stream.Signature(ln_cfg_layout(max_dim)))
        ``dim`` and ``eps``, as for :class:`~hw.layernorm.LayerNorm`; taken when idle.
    i_stream : In(stream.Signature(lanes_layout(lanes, x=signed(8))))
        int8 ``x``, one channel of each lane's row; ``last`` on the job's final beat (read on a
        block's final beat only).
    i_param : In(stream.Signature(token_ln_param_layout()))
        The channel's ``gamma``, ``beta``, ``mult`` and ``shift``.
    o_stream : Out(stream.Signature(output_layout(lanes)))
        int8 ``data`` per lane, ``last`` on the job's final beat.
    """

    params_fields = ("rows", "ln_pipelines", "ln_engines", "dsp_multipliers")
    max_dim = Setting("Largest row width d.")
    engines = Setting("Scalar engines.")
    pipelines = Setting("Element pipelines of the normalize phase.")
    use_dsp = Setting("DSP multipliers where the platform has them.")

    def __init__(self, rows: int, *, max_dim: int = LN_MAX_DIM, engines: int | None = None,
                 pipelines: int | None = None, use_dsp: bool = True,
                 family: str | None = None):
        self._rows = self._lanes = check_int("rows", rows, 1, MAX_DIM)
        self._max_dim = check_int("max_dim", max_dim, 1, LN_MAX_DIM)
        if engines is None or (isinstance(engines, int) and engines == 0):
            engines = max(1, self._lanes // 2)
        self._engines = check_int("engines", engines, 1, self._lanes)
        if pipelines is None or (isinstance(pipelines, int) and pipelines == 0):
            pipelines = self._lanes
        self._pipelines = check_int("pipelines", pipelines, 1, self._lanes)
        if self._lanes % self._pipelines:
            raise ValueError(f"TokenLayerNorm: pipelines ({pipelines}) must divide the lanes "
                             f"({self._lanes}): each pipeline serves lanes / pipelines lanes")
        self._phases = self._lanes // self._pipelines
        check_dsp_options(use_dsp, family)
        self._use_dsp = use_dsp
        self._family = family
        super().__init__({
            "i_cfg": In(stream.Signature(ln_cfg_layout(self._max_dim))),
            "i_stream": In(stream.Signature(lanes_layout(self._lanes, x=signed(ACT_WIDTH)))),
            "i_param": In(stream.Signature(token_ln_param_layout())),
            "o_stream": Out(stream.Signature(output_layout(self._lanes))),
        })

    @property
    def scalar_cycles(self) -> int:
        """Cycles of one lane's scalar phase (:attr:`hw.layernorm.LayerNorm.scalar_cycles`)."""
        return scalar_cycles(self._max_dim)

    @property
    def pipeline_latency(self) -> int:
        """Normalize phase: beat taken -> output valid (that of
        :attr:`hw.layernorm.LayerNorm.pipeline_latency`, plus :data:`SELECT_LATENCY`)."""
        return PIPELINE_LATENCY + SELECT_LATENCY

    @property
    def phases(self) -> int:
        """Cycles an output beat takes: ``lanes / pipelines``."""
        return self._phases

    def block_cycles(self, dim: int) -> float:
        """Cycles per block of width ``dim`` in a long job at full rate: the engines'
        ``lanes * (scalar_cycles - 1) / engines``, or the ``d * phases`` output cycles (and the
        wait until the last element has read its row constants before the next block's go in,
        and ``WAIT``'s registered verdict) when more."""
        dim = check_int("dim", dim, 1, self._max_dim)
        engine = -(-self._lanes // self._engines) * (self.scalar_cycles - 1)
        return max(engine, dim * self._phases + BlockRAM.latency + SELECT_LATENCY
                   + Multiplier.latency + 2)

    # -- gateware --------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        u = SimpleNamespace()
        obuf = OutputBuffer.driving(m, self.o_stream, output_layout(self._lanes),
                                    global_ce=True)
        u.obuf, u.ce = obuf, obuf.ce
        u.platform = platform
        self._elaborate_job(m, u)
        self._elaborate_load(m, platform, u)
        self._elaborate_engines(m, u)
        self._elaborate_output(m, u)
        self._elaborate_pipeline(m, u)
        return m

    def _elaborate_job(self, m, u):
        """Job registers (``i_cfg``), and the load FSM: ``IDLE``, ``LOAD``, ``FLUSH``."""
        max_dim = self._max_dim
        u.dim = Signal(unsigned(max_dim.bit_length()))
        u.eps = Signal(ln_cfg_layout(max_dim)["eps"].shape)
        u.k = Signal(range(layernorm_pre_shift(1) + 1))
        u.half_k = Signal(PROD_BITS, name="half_k")            # _HALF >> k
        u.n_shift_k = Signal(range(LN_RECIP_BITS - LN_FRAC_BITS + 1), name="n_shift_k")
        cfg_k = Signal.like(u.k)
        steps = [(d, layernorm_pre_shift(d)) for d in range(1, max_dim + 1)
                 if d == 1 or layernorm_pre_shift(d) != layernorm_pre_shift(d - 1)]
        dim = self.i_cfg.payload.dim

        def pick(lo, hi):
            # The value of the last step of steps[lo:hi] whose d_from <= dim (steps[lo] is taken
            # for granted): a balanced tree of comparisons, not a priority chain of all steps.
            if hi - lo == 1:
                return Const(steps[lo][1], cfg_k.shape())
            mid = (lo + hi) // 2
            return Mux(dim >= steps[mid][0], pick(mid, hi), pick(lo, mid))

        m.d.comb += cfg_k.eq(pick(0, len(steps)))
        u.elem = Signal(range(max_dim + 1))                       # channel of the next beat
        u.slot_in = Signal(range(BLOCK_SLOTS))
        u.take_in = Signal()
        u.block_done_in = Signal()      # elem + 1 >= dim, a register kept beside elem
        u.occupied = Signal(range(BLOCK_SLOTS + 1))               # blocks loaded, not yet out
        u.end_free = Signal()
        u.in_load = Signal()
        m.d.comb += [u.take_in.eq(self.i_stream.valid & self.i_stream.ready),
                     self.i_stream.ready.eq(u.in_load & (u.occupied < BLOCK_SLOTS)
                                            & (~u.block_done_in | u.end_free))]
        with m.FSM(name="load") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i_cfg.ready.eq(1)
                with m.If(self.i_cfg.valid):
                    m.d.sync += [u.dim.eq(self.i_cfg.payload.dim),
                                 u.eps.eq(self.i_cfg.payload.eps), u.k.eq(cfg_k),
                                 u.elem.eq(0), u.block_done_in.eq(self.i_cfg.payload.dim <= 1)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += u.in_load.eq(1)
                with m.If(u.take_in):
                    m.d.sync += [u.elem.eq(u.elem + 1), u.block_done_in.eq(u.elem + 2 >= u.dim)]
                    with m.If(u.block_done_in):
                        m.d.sync += [u.elem.eq(0), u.slot_in.eq(_next_slot(u.slot_in)),
                                     u.block_done_in.eq(u.dim <= 1)]
                        with m.If(self.i_stream.payload.last):
                            m.next = "FLUSH"
            with m.State("FLUSH"):
                with m.If(u.occupied == 0):
                    m.next = "IDLE"
        one_hot(fsm)

    def _elaborate_load(self, m, platform, u):
        """The block buffer and each lane's ``S1`` and ``Q``; ``STATS_DRAIN`` cycles after a
        block's final beat the totals go into the holding register."""
        lanes, max_dim = self._lanes, self._max_dim
        dim_bits = (max_dim - 1).bit_length()
        m.submodules.blockbuf = buf = make_block_ram(
            platform, width=ACT_WIDTH * lanes, depth=max(2, BLOCK_SLOTS << dim_bits),
            family=self._family)
        m.d.comb += [buf.w_en.eq(u.take_in), buf.w_addr.eq(Cat(u.elem[:dim_bits], u.slot_in)),
                     buf.w_data.eq(self.i_stream.payload.x)]
        u.sum_w = (128 * max_dim).bit_length() + 1
        u.sq_w = (128 * 128 * max_dim).bit_length()
        ends = [(u.take_in & u.block_done_in, self.i_stream.payload.last)]
        # One more register rank than STATS_DRAIN: each accepted beat is registered (x_in)
        # before the squarers and sums, so the input handshake ends at a register.
        for i in range(STATS_DRAIN + 1):
            end, last = Signal(name=f"end{i + 1}"), Signal(name=f"end_last{i + 1}")
            m.d.sync += [end.eq(ends[-1][0]), last.eq(ends[-1][1])]
            ends.append((end, last))
        end, end_last = ends[-1]
        u.hold = Signal()
        u.hold_last = Signal()
        u.hold_s1, u.hold_q = [], []
        for t in range(lanes):
            x = Signal(signed(ACT_WIDTH), name=f"x_in{t}")
            m.d.sync += x.eq(Mux(u.take_in, self.i_stream.payload.x[t], 0))
            sx1, sx2 = Signal(signed(u.sum_w), name=f"sx1_{t}"), Signal(signed(u.sum_w),
                                                                          name=f"sx2_{t}")
            m.d.sync += [sx1.eq(x), sx2.eq(sx1)]
            sq = LutMultiplier(ACT_WIDTH, ACT_WIDTH)
            m.submodules[f"sq{t}"] = sq
            m.d.comb += [sq.en.eq(1), sq.a.eq(x), sq.b.eq(x)]
            s1, q = Signal(signed(u.sum_w), name=f"s1_{t}"), Signal(unsigned(u.sq_w), name=f"q_{t}")
            s1_tot, q_tot = s1 + sx2, q + sq.p.as_unsigned()
            with m.If(end):
                m.d.sync += [s1.eq(0), q.eq(0)]
            with m.Else():
                m.d.sync += [s1.eq(s1_tot), q.eq(q_tot)]
            hs1, hq = Signal.like(s1, name=f"hold_s1_{t}"), Signal.like(q, name=f"hold_q_{t}")
            with m.If(end):
                m.d.sync += [hs1.eq(s1_tot), hq.eq(q_tot)]
            u.hold_s1.append(hs1)
            u.hold_q.append(hq)
        with m.If(end):
            m.d.sync += [u.hold.eq(1), u.hold_last.eq(end_last)]
        # A block's final beat waits while the holding register is (or is about to be) full
        # (end_free: _elaborate_engines, a register of the input side's own).
        u.end = end
        # Any end flag set next cycle (end1 .. endN are loaded from ends[0] .. ends[N-1]).
        u.ends_pending_next = Cat(e for e, _ in ends[:-1]).any()
        u.buf, u.dim_bits = buf, dim_bits

    def _elaborate_engines(self, m, u):
        """Engines take the held lanes in turn (``disp``); each engine's lane result goes into
        the lane's result register once that is free.

        When the engines divide the lanes, ``eng == disp % engines`` at every dispatch (both
        start at 0, advance together and ``disp`` wraps at ``lanes``), so lane ``t`` always
        goes to engine ``t % engines``: each engine then writes only its own lanes' result
        registers, with no multiplexer of every engine's result in front of each (the top's area
        and timing).
        """
        lanes, n = self._lanes, self._engines
        static = lanes % n == 0
        disp = Signal(range(lanes + 1))                           # next lane to dispatch
        eng = Signal(range(n))                                    # engine it goes to
        u.res_full = Signal(lanes)
        u.res_g = [Signal(PROD_BITS, name=f"res_g{t}") for t in range(lanes)]
        u.res_h = [Signal(PROD_BITS, name=f"res_h{t}") for t in range(lanes)]
        u.res_last = Signal()
        u.res_release = Signal()                                  # the output took them
        hs1 = Signal.like(u.hold_s1[0])
        hq = Signal.like(u.hold_q[0])
        if not static:
            with m.Switch(disp):
                for t in range(lanes):
                    with m.Case(t):
                        m.d.comb += [hs1.eq(u.hold_s1[t]), hq.eq(u.hold_q[t])]
        fake = SimpleNamespace(sum_w=u.sum_w, sq_w=u.sq_w, dim=u.dim, eps=u.eps, k=u.k)
        starts = []
        hits = [[] for _ in range(lanes)]                     # (fill of lane t, its engine)
        dim_sq = dim_square(m, u.dim)
        for i in range(n):
            e = _ScalarEngine(dim_bits(self._max_dim), sum_bits(self._max_dim), fake)
            m.submodules[f"engine{i}"] = e
            own = range(i, lanes, n) if static else range(lanes)      # the lanes it can get
            lane = Signal(range(lanes), name=f"engine{i}_lane")
            start = u.hold & (eng == i) & e.idle
            # Each engine reads k from a copy of its own (unshared_register: Yosys merged the
            # engines' decodes of one k into logic that drove all four across the die, a
            # placed ulx3s_85f top's `rem` group, 169 endpoints). The copy follows k a cycle
            # later; an engine starts a block's scalar phase at the earliest STATS_DRAIN + 2
            # cycles after the job's configuration, and k holds until the job is out.
            k_copy = unshared_register(m, u.k, name=f"engine{i}_k", platform=u.platform)
            m.d.comb += [e.dim.eq(u.dim), e.dim_sq.eq(dim_sq), e.eps.eq(u.eps), e.k.eq(k_copy),
                         e.last_in.eq(u.hold_last), e.start.eq(start)]
            if static:
                # Engine i takes lanes i, i + n, ... in turn: its own counter picks among its
                # own lanes (a small multiplexer next to the engine), not the multiplexer of
                # every lane behind `disp` that fanned out to every engine's operands.
                own_s1 = Array(u.hold_s1[t] for t in own)
                own_q = Array(u.hold_q[t] for t in own)
                turn = Signal(range(len(own)), name=f"engine{i}_turn")
                with m.If(start):
                    m.d.sync += turn.eq(Mux(turn == len(own) - 1, 0, turn + 1))
                m.d.comb += [e.s1_in.eq(own_s1[turn]), e.q_in.eq(own_q[turn])]
            else:
                m.d.comb += [e.s1_in.eq(hs1), e.q_in.eq(hq)]
            with m.If(start):
                m.d.sync += lane.eq(disp)
            fill = e.done & ~u.res_full.bit_select(lane, 1)
            m.d.comb += e.ack.eq(fill)
            for t in own:
                hits[t].append((fill & (lane == t), i, e))
            starts.append(start)
        with m.If(Cat(starts).any()):
            m.d.sync += [disp.eq(disp + 1), eng.eq(Mux(eng == n - 1, 0, eng + 1))]
            with m.If(disp == lanes - 1):
                m.d.sync += [disp.eq(0), u.hold.eq(0)]
        # end_free (no end flag pending, hold clear) is a register of the input side's own,
        # loaded with its next value (unshared_register: Yosys would merge the same next value
        # with hold's): hold sits between the load stage that sets it and the engines that
        # clear it, the end flags' last rank beside the lanes' sums, and their way into the
        # input handshake (end_free -> i_stream.ready -> every load register's enable) crossed
        # the unit (the first LayerNorm groups of placed tops, from hold and then from end3).
        # The clear wins, as in the statements above.
        clear = Cat(starts).any() & (disp == lanes - 1)
        hold_next = Mux(clear, 0, u.end | u.hold)
        end_free = unshared_register(m, ~hold_next & ~u.ends_pending_next, name="end_free",
                                     platform=u.platform)
        m.d.comb += u.end_free.eq(end_free)
        set_bits = Cat(*[Cat(h for h, _, _ in lane_hits).any() for lane_hits in hits])
        with m.If(u.res_release):
            m.d.sync += u.res_full.eq(set_bits)
        with m.Else():
            m.d.sync += u.res_full.eq(u.res_full | set_bits)
        self._elaborate_result_registers(m, u, hits)

    @staticmethod
    def _elaborate_result_registers(m, u, hits):
        """Lane ``t``'s result registers load the cycle after its fill (``took[t]``, a
        register), from the engine that filled it (whose ``g``, ``h`` and ``last`` hold still):
        the fill's enable reaches ``res_full`` beside the engines, and the result registers'
        wide enable is a flip-flop, not the fill's logic.

        ``WAIT`` takes them from these registers, with no pass-through of a result being
        taken: its loads act (``out_go``, ``out_go#``) the cycle after every lane was full, and
        a full lane takes no result, so no ``took`` is high then. (The pass-through's
        multiplexer in front of ``h_row``'s subtractor was a routed ulx3s_85f top's group.)"""
        for t, lane_hits in enumerate(hits):
            took = Signal(name=f"res_took{t}")
            m.d.sync += took.eq(Cat(h for h, _, _ in lane_hits).any())
            g, h, last = lane_hits[0][2].g, lane_hits[0][2].h, lane_hits[0][2].last
            if len(lane_hits) > 1:                # any engine may fill it: which one did
                src = Signal(range(max(i for _, i, _ in lane_hits) + 1), name=f"res_src{t}")
                for hit, i, _ in lane_hits:
                    with m.If(hit):
                        m.d.sync += src.eq(i)
                for _, i, e in lane_hits[1:]:
                    g, h, last = (Mux(src == i, e.g, g), Mux(src == i, e.h, h),
                                  Mux(src == i, e.last, last))
            with m.If(took):
                m.d.sync += [u.res_g[t].eq(g), u.res_h[t].eq(h)]
                if t == 0:
                    m.d.sync += u.res_last.eq(last)

    def _elaborate_output(self, m, u):
        """``WAIT``: every lane's constants in and the pipeline empty: the lanes take them.
        ``OUT``: the block's ``i_param`` beats, one per channel."""
        lanes = self._lanes
        u.g_row = [Signal(PROD_BITS, name=f"g_row{t}") for t in range(lanes)]
        u.h_row = [Signal(PROD_BITS, name=f"h_row{t}") for t in range(lanes)]
        u.n_shift = Signal(range(LN_RECIP_BITS - LN_FRAC_BITS + 1))
        u.last_row = Signal()
        u.elem_out = Signal(range(self._max_dim + 1))
        u.slot_out = Signal(range(BLOCK_SLOTS))
        u.rows_in_use = Signal()                                  # see _elaborate_pipeline
        out_state = Signal()
        u.take_out = Signal()
        u.block_done_out = Signal()
        # phase of the beat in the pipelines; its i_param transfer completes on the last one
        u.phase = Signal(range(self._phases), name="out_phase")
        u.last_phase = Signal()
        u.issue = Signal()                                        # a phase enters this cycle
        m.d.comb += [
            u.last_phase.eq(u.phase == self._phases - 1),
            u.issue.eq(out_state & u.obuf.ce_reg & self.i_param.valid),
            self.i_param.ready.eq(out_state & u.obuf.ce_reg & u.last_phase),
            u.take_out.eq(self.i_param.valid & self.i_param.ready),
            u.block_done_out.eq(u.elem_out + 1 >= u.dim),
            u.buf.r_en.eq(u.ce), u.buf.r_oce.eq(u.ce),
            u.buf.r_addr.eq(Cat(u.elem_out[:u.dim_bits], u.slot_out)),
        ]
        m.d.sync += u.occupied.eq(u.occupied + (u.take_in & u.block_done_in)
                                  - (u.take_out & u.block_done_out))
        # The job's rounding half and output shift, registers that follow k a cycle later
        # (a shifter of k in front of h_row's subtractors was a path of the ulx3s_85f top's
        # route; from the configuration's k tree it was one of the next `tiny` route's): WAIT
        # reads them a block's scalar phase after the configuration.
        m.d.sync += [u.half_k.eq(_HALF >> u.k),
                     u.n_shift_k.eq(LN_RECIP_BITS - LN_FRAC_BITS - u.k)]
        half = u.half_k
        # WAIT's verdict a cycle late, from a register (`out_go`): every lane's result in and
        # no element left reading the row constants. In WAIT the two only move toward it
        # (results only fill until the release, and nothing issues), so the late verdict is
        # still true when it acts, and the ~70 loads behind it (g_row, h_row, the block
        # buffer's read) wait for one flip-flop, not for res_full's AND across the unit.
        go = Signal(name="out_go")
        rows_ready = (u.res_full == (1 << lanes) - 1) & ~u.rows_in_use
        with m.FSM(name="out") as fsm:
            with m.State("WAIT"):
                m.d.sync += go.eq(rows_ready)
                with m.If(go):
                    m.d.sync += go.eq(0)
                    m.d.comb += u.res_release.eq(1)
                    m.d.sync += [u.last_row.eq(u.res_last), u.elem_out.eq(0),
                                 u.n_shift.eq(u.n_shift_k)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += out_state.eq(1)
                with m.If(u.issue):
                    m.d.sync += u.phase.eq(Mux(u.last_phase, 0, u.phase + 1))
                with m.If(u.take_out):
                    m.d.sync += u.elem_out.eq(u.elem_out + 1)
                    with m.If(u.block_done_out):
                        m.d.sync += u.slot_out.eq(_next_slot(u.slot_out))
                        m.next = "WAIT"
        one_hot(fsm)
        # The lanes' row constants load on copies of out_go, one per lane (unshared_register,
        # which Yosys does not merge): out_go itself, one flip-flop, was the enable of all
        # 2 * lanes * 56 of them across the unit (the first groups of a placed top). go is set
        # only in WAIT and cleared as it acts, so its next value is WAIT & ~go & rows_ready.
        go_next = fsm.ongoing("WAIT") & ~go & rows_ready
        for t in range(lanes):
            go_t = unshared_register(m, go_next, name=f"out_go{t}", platform=u.platform)
            with m.If(go_t):
                m.d.sync += [u.g_row[t].eq(u.res_g[t]), u.h_row[t].eq(u.res_h[t] - half)]

    def _elaborate_pipeline(self, m, u):
        """The element pipelines (each as :class:`~hw.layernorm.LayerNorm`'s), the channel's
        constants shared by all. Pipeline ``p`` takes lane ``f * pipelines + p`` in phase ``f``:
        the phase travels beside the data and picks the lane's row constants and, at the end,
        the lane of the output beat; earlier phases wait in a collect register."""
        ce, prm = u.ce, self.i_param.payload
        P, phases = self._pipelines, self._phases
        # The block buffer's word and the row constants go through the lane select into a
        # register (SELECT_LATENCY) before the products.
        x_lat = BlockRAM.latency + SELECT_LATENCY
        n_lat = x_lat + Multiplier.latency + 3
        g_lat = n_lat + Multiplier.latency
        b_lat = g_lat + 1
        total = b_lat + RequantLane.latency
        slot_o = _delay(m, ce, u.issue, total, "slot")            # a phase leaves
        last_o = _delay(m, ce, u.last_row & u.block_done_out, total, "last")
        if phases > 1:
            ph_x = _delay(m, ce, u.phase, BlockRAM.latency, "phase_x")   # at the lane select
            ph_h = _delay(m, ce, ph_x, SELECT_LATENCY + Multiplier.latency,
                          "phase_h")                                      # at the H subtract
            ph_o = _delay(m, ce, ph_h, total - x_lat - Multiplier.latency, "phase_o")
            valid_o = slot_o & (ph_o == phases - 1)
        else:
            ph_x = ph_h = None
            valid_o = slot_o
        # The next block's row constants may go in once no element is left that has still to
        # read them: g at the lane select (BlockRAM.latency stages after its issue), h at the
        # subtract (x_lat + Multiplier.latency). n_shift (per job) travels with the elements.
        reads = x_lat + Multiplier.latency
        issued = [u.issue]
        for k in range(reads):
            issued.append(_stage(m, ce, issued[-1], f"row_use{k + 1}"))
        m.d.comb += u.rows_in_use.eq(Cat(*issued[1:]).any())
        n_shift = _delay(m, ce, u.n_shift, reads + 2, "n_shift")
        gamma = _delay(m, ce, prm.gamma, n_lat, "gamma")
        beta = _delay(m, ce, prm.beta, g_lat, "beta")
        mult = _delay(m, ce, prm.mult, b_lat, "mult")
        shift = _delay(m, ce, prm.shift, b_lat, "shift")

        def lane_of(rows, phase, p, name):
            """``rows[phase * P + p]`` (a pipeline's lane in this phase)."""
            if phases == 1:
                return rows[p]
            sel = Signal.like(rows[p], name=name)
            with m.Switch(phase):
                for f in range(phases):
                    with m.Case(f):
                        m.d.comb += sel.eq(rows[f * P + p])
            return sel

        collect = [Signal(signed(ACT_WIDTH), name=f"collect{t}")
                   for t in range(self._lanes - P)]
        x_all = [u.buf.r_data[t * ACT_WIDTH:(t + 1) * ACT_WIDTH].as_signed()
                 for t in range(self._lanes)]
        for p in range(P):
            # Each pipeline's lane of the block buffer word and its g in registers beside the
            # products: the buffer's read data and the phase select reach the partial
            # products through a register, not across the die in one cycle.
            x2 = _stage(m, ce, lane_of(x_all, ph_x, p, f"x_sel{p}"), f"x{p}")
            g_row = _stage(m, ce, lane_of(u.g_row, ph_x, p, f"g_sel{p}"), f"g{p}")
            h_row = lane_of(u.h_row, ph_h, p, f"h_sel{p}")
            prods = []
            for i in range(0, PROD_BITS, CHUNK_BITS):
                width = min(CHUNK_BITS, PROD_BITS - i)
                pm = LutMultiplier(ACT_WIDTH, width + 1, b_nonnegative=True)  # G's bits
                m.submodules[f"xg{p}_{i // CHUNK_BITS}"] = pm
                m.d.comb += [pm.en.eq(ce), pm.a.eq(x2), pm.b.eq(g_row[i:i + width])]
                prods.append((pm.p, i))
            t_lo = _stage(m, ce, sum(p_ << i for p_, i in prods[:2])[:PROD_BITS], f"tlo{p}",
                          unsigned(PROD_BITS))
            t_hi = _stage(m, ce, (sum(p_ << i for p_, i in prods[2:]) - h_row)[:PROD_BITS],
                          f"thi{p}", unsigned(PROD_BITS))
            p6 = _stage(m, ce, (t_lo + t_hi)[:PROD_BITS].as_signed(), f"p{p}",
                        signed(PROD_BITS))
            n7 = _stage(m, ce, (p6 >> n_shift)[:NORM_BITS].as_signed(), f"n{p}",
                        signed(NORM_BITS))
            gm = LutMultiplier(ACT_WIDTH, NORM_BITS)
            m.submodules[f"gamma{p}"] = gm
            m.d.comb += [gm.en.eq(ce), gm.a.eq(gamma), gm.b.eq(n7)]
            acc = _stage(m, ce, (gm.p + beta)[:ACC_WIDTH].as_signed(), f"acc{p}",
                         signed(ACC_WIDTH))
            lane = RequantLane(use_dsp=self._use_dsp, family=self._family)
            m.submodules[f"lane{p}"] = lane
            m.d.comb += [lane.s.eq(acc), lane.mult.eq(mult), lane.shift.eq(shift),
                         lane.en.eq(ce)]
            for f in range(phases - 1):                           # earlier phases wait
                with m.If(slot_o & u.obuf.ce_reg & (ph_o == f)):
                    m.d.sync += collect[f * P + p].eq(lane.y)
            m.d.comb += u.obuf.data.data[(phases - 1) * P + p].eq(lane.y)
        for t in range(self._lanes - P):
            m.d.comb += u.obuf.data.data[t].eq(collect[t])
        m.d.comb += [u.obuf.push.eq(valid_o), u.obuf.data.last.eq(last_o)]
