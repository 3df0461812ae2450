# SPDX-License-Identifier: Apache-2.0
"""``WindowedAttention``: one head of sliding-window attention with integer softmax.

For every query row the unit computes ``Q K^T`` over the row's window of keys, the integer
softmax and ``P V``, and requantizes the result to int8; scores never leave the unit. The
numerics are ``sw.ref.windowed_attention_int`` bit for bit (``docs/numerics.md``, "Integer
softmax"); ports, timing and throughput are documented in ``docs/attention.md``.

Datapath (each stage works on one row while the next stage works on an older one)::

    i_kv --> K/V ring (block RAM, NSLOTS rows) --------------------------+
    i_q  --> A: q.k, lanes MACs/cycle --> scores + row max (ring of NR rows)
             B: m - s -> u -> exp --> e values (ring) + sum S --> 2**38 // S (24-stage pipe)
             D: p = e * r, p . v (lanes MACs/cycle) --> requant (lanes) --> output FIFO --> o_stream

A and D each take ``keys * head_dim / lanes`` cycles per row and B takes ``keys`` cycles, so in
steady state a full-window row leaves every ``ceil(window * head_dim / lanes)`` cycles. Nothing
inside stalls: a stage only starts a row when every buffer it writes has room (credits), so the
only waits are at the three input streams and on ``o_stream``.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.bram import make_block_ram, unshared_register
from hw.checks import check_bool, check_int
from hw.lut_multiplier import LutMultiplier
from hw.multiplier import check_dsp_options
from hw.numerics import (
    ACT_WIDTH,
    ATTN_MAX_HEAD_DIM,
    INT8_MIN,
    MULT_BITS,
    SHIFT_BITS,
    SOFTMAX_EXP_BITS,
    SOFTMAX_MAX_WINDOW,
    SOFTMAX_PROB_BITS,
)
from hw.params import MAX_ATTN_LANES
from hw.requant import RequantLane
from hw.softmax import (
    EXP_WIDTH,
    MULT_LATENCY,
    RECIP_WIDTH,
    SUM_WIDTH,
    Normalizer,
    Reciprocal,
    ScoreScaler,
    SoftmaxExp,
    dsp_product,
)
from hw.unit import Setting, Unit

__all__ = ["ATTN_ACC_WIDTH", "SEQ_LEN_BITS", "WindowedAttention"]

SEQ_LEN_BITS = 16            # sequences of up to 65535 rows
#: Signed width of the P.V sums: ``|sum_j p_j v_j| <= 128 * (2**15 + 256) < 2**23`` (the
#: probabilities of a row sum to 1.0 = 2**15 plus at most one rounding step per key).
ATTN_ACC_WIDTH = (-INT8_MIN * ((1 << SOFTMAX_PROB_BITS) + SOFTMAX_MAX_WINDOW)).bit_length() + 1


def _pow2_ceil(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


def _tree_registers(n: int) -> int:
    """Register ranks of the lanes adder tree: after the first level (the products arrive from
    the DSP column over a long route: DSP -> two adds was an 8.05 ns path on ECP5-85F), then one
    every two levels, and one at the end."""
    levels = max(1, (n - 1).bit_length())
    return levels // 2 + 1


class WindowedAttention(Unit):
    """One attention head over a sliding window of keys (causal or centred, chosen per sequence).

    Stream rules: ``hw/README.md`` (Amaranth ``lib.stream``: valid may not wait for ready, a
    payload is held until it is taken). A sequence is one ``i_cfg`` transfer followed by
    ``seq_len`` rows on ``i_kv`` and ``seq_len`` rows on ``i_q`` (presented independently:
    K/V row ``j`` must be able to arrive before query ``t`` finishes when ``j`` is in a later
    query's window, so a producer must not hold ``i_kv`` back until all queries were taken);
    the unit answers with ``seq_len`` rows on ``o_stream``, ``last`` set on the final one, and
    takes the next ``i_cfg`` once that row has left.

    Parameters
    ----------
    head_dim : int
        Head dimension ``d`` (1..128); a multiple of ``lanes``.
    window : int
        Largest window (keys per query row), 1..256; ``i_cfg.window`` picks 1..``window``.
    lanes : int
        Multipliers of each of the two MAC stages (``q.k`` and ``p.v``); divides ``head_dim``.
    use_dsp : bool
        DSP multipliers where the platform has them (``MULT18X18D`` on ECP5); ``False`` builds
        every product of the unit in fabric logic.
    lut_int8_products : bool
        Compute the ``2 * lanes`` int8 products of the two MAC stages (``q.k`` and ``p.v``) with
        :class:`hw.lut_multiplier.LutMultiplier` (adders and carry chains, never a DSP block,
        whatever ``use_dsp`` says) instead of :func:`hw.softmax.dsp_product`. Same latency and
        results; the score scaler, the normalizer and the requant lanes keep ``use_dsp``.
        ``False`` (the default, the stand-alone board build) leaves the netlist as it was; the
        accelerator top asks for it on ECP5 (:class:`hw.controller.Controller`) to save DSPs.
    family : str or None
        Force the multiplier family (``"ecp5"``).

    Members
    -------
    i_cfg : In(stream.Signature(cfg_layout))
        ``seq_len`` (rows, 0..65535), ``window`` (1..``window``; 0 counts as 1, larger as
        ``window``), ``causal`` (1: keys ``t-w+1..t``; 0: centred ``t-w//2..t+(w-1)//2``,
        clipped to ``[0, seq_len)``), ``score_mult``/``score_shift``/``out_mult``/``out_shift``
        from ``sw.ref.AttentionQuant`` (15-bit multipliers, shifts 1..47).
    i_kv : In(stream.Signature(kv_layout))
        One key row and one value row per transfer: ``k``, ``v``: ``head_dim`` x int8.
    i_q : In(stream.Signature(ArrayLayout(signed(8), head_dim)))
        One query row per transfer, int8.
    o_stream : Out(stream.Signature(out_layout))
        ``data``: ``head_dim`` x int8 attention output (``sw.ref.windowed_attention_int``);
        ``last``: final row of the sequence.

    Attributes
    ----------
    latency : int
        Cycles from the ``i_q`` transfer of a query whose K/V rows are already stored to its
        ``o_stream`` row, for a full window on an idle unit (:meth:`row_latency` for other
        key counts).
    cycles_per_row : int
        Steady-state cycles per full-window row: ``ceil(window * head_dim / lanes)``.
    """

    params_fields = ("head_dim", "window", "attn_lanes", "dsp_multipliers")
    kv_slots = Setting("K/V rows held on chip (a power of two >= window + ring).")
    ring = Setting("Rows that may be in flight between the score stage and the P.V stage.")
    lut_int8_products = Setting("The int8 q.k and p.v products in LUTs (LutMultiplier), "
                                "not DSP blocks.")

    def __init__(self, *, head_dim: int, window: int, lanes: int, use_dsp: bool = True,
                 lut_int8_products: bool = False, family: str | None = None):
        self._head_dim = check_int("head_dim", head_dim, 1, ATTN_MAX_HEAD_DIM)
        self._window = check_int("window", window, 1, SOFTMAX_MAX_WINDOW)
        self._lanes = check_int("lanes", lanes, 1, MAX_ATTN_LANES)
        if head_dim % lanes:
            raise ValueError(f"lanes must divide head_dim ({head_dim}), not {lanes!r}")
        check_dsp_options(use_dsp, family)
        self._use_dsp, self._family = use_dsp, family
        self._lut_int8_products = check_bool("lut_int8_products", lut_int8_products)
        self._chunks = head_dim // lanes
        self._row_stride = _pow2_ceil(window)
        # Rows in flight between A's start and the end of D's reads: about (48 + keys) cycles
        # apart, rows leaving every keys * CH cycles. Size for the shortest row (one key, a
        # runtime window of 1) as well as for full windows, so small windows keep full speed.
        self._ring = max(4, _pow2_ceil(3 + max(-(-(window + 48) // (window * self._chunks)),
                                               -(-48 // self._chunks))))
        # Output FIFO rows = credits of stage D: a row occupies one from D's start (about
        # 24 + CH cycles before it is written) until o_stream takes it.
        self._out_depth = max(4, _pow2_ceil(2 + -(-(24 + self._chunks) // self._chunks)))
        self._kv_slots = _pow2_ceil(window + self._ring)
        # Widths: |score| <= 128 * 128 * head_dim (int8 magnitudes), signed; the row max minus
        # a score is unsigned and up to twice that; one chunk's lanes sum, signed.
        score_max = INT8_MIN ** 2 * head_dim
        self._score_width = score_max.bit_length() + 1
        self._diff_width = (2 * score_max).bit_length()
        self._chunk_sum_width = (INT8_MIN ** 2 * lanes).bit_length() + 1
        super().__init__({
            "i_cfg": In(stream.Signature(self.cfg_layout)),
            "i_kv": In(stream.Signature(self.kv_layout)),
            "i_q": In(stream.Signature(data.ArrayLayout(signed(8), head_dim))),
            "o_stream": Out(stream.Signature(self.out_layout)),
        })

    # -- layouts and read-only parameters --------------------------------------------------------

    @property
    def cfg_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "seq_len": unsigned(SEQ_LEN_BITS),
            "window": unsigned(self._window.bit_length()),
            "causal": unsigned(1),
            "score_mult": unsigned(MULT_BITS),
            "score_shift": unsigned(SHIFT_BITS),
            "out_mult": unsigned(MULT_BITS),
            "out_shift": unsigned(SHIFT_BITS),
        })

    @property
    def kv_layout(self) -> data.StructLayout:
        row = data.ArrayLayout(signed(8), self._head_dim)
        return data.StructLayout({"k": row, "v": row})

    @property
    def out_layout(self) -> data.StructLayout:
        return data.StructLayout({"data": data.ArrayLayout(signed(8), self._head_dim),
                                  "last": unsigned(1)})

    @property
    def cycles_per_row(self) -> int:
        return -(-self._window * self._head_dim // self._lanes)

    # Pipeline depths (cycles), checked by tests/test_hw_attention.py against the simulation.
    # A: the q.k products, + 1 as the row max is stored (A6) a cycle after the last score (the
    # adder tree's ranks are added in row_latency); B: score read, difference, ScoreScaler,
    # SoftmaxExp, sum; D: exp and V read, Normalizer, p.v products, accumulate, RequantLane,
    # row assembly and output FIFO.
    _A_PIPE = MULT_LATENCY + 1
    _B_PIPE = 3 + 2 + ScoreScaler.latency + SoftmaxExp.latency + 2
    _D_PIPE = 4 + Normalizer.latency + MULT_LATENCY + 3 + RequantLane.latency + 2

    def row_latency(self, keys: int) -> int:
        """Cycles from the ``i_q`` transfer to the ``o_stream`` row for ``keys`` keys (idle)."""
        keys = check_int("keys", keys, 1, self._window)
        return (self._A_PIPE + _tree_registers(self._lanes) + keys * self._chunks
                + self._B_PIPE + keys
                + Reciprocal.latency + self._D_PIPE + keys * self._chunks)

    @property
    def latency(self) -> int:
        return self.row_latency(self._window)

    # -- gateware --------------------------------------------------------------------------------
    #
    # elaborate() wires the stages of the module docstring; each _elaborate_* helper adds one
    # stage to the same Module (one flat hierarchy, as the board builds were placed and timed)
    # and records the signals later stages use on a shared namespace ``u``.

    def elaborate(self, platform):
        m = Module()
        u = SimpleNamespace()
        self._elaborate_config(m, u)
        self._elaborate_memories(m, platform, u)
        self._elaborate_kv_writer(m, u)
        self._elaborate_score_issue(m, u)
        self._elaborate_score_datapath(m, platform, u)
        self._elaborate_softmax_issue(m, u)
        self._elaborate_softmax_datapath(m, u)
        self._elaborate_output_issue(m, u)
        self._elaborate_output_datapath(m, platform, u)
        self._elaborate_output_fifo(m, u)
        self._elaborate_credits(m, u)
        self._elaborate_last_flags(m, u)
        return m

    def _dsp_options(self) -> dict[str, object]:
        return {"use_dsp": self._use_dsp, "family": self._family}

    def _int8_product(self, m, platform, a, b, *, name: str):
        """``a * b`` (one of them int8) on one registered multiplier (``MULT_LATENCY`` cycles):
        :func:`hw.softmax.dsp_product`, or with ``lut_int8_products`` a
        :class:`~hw.lut_multiplier.LutMultiplier` whose partial products the int8 operand
        selects (eight of them, whatever the other operand's width)."""
        if not self._lut_int8_products:
            return dsp_product(m, platform, a, b, name=name, **self._dsp_options())

        def is_int8(v):
            return len(v) == ACT_WIDTH and v.shape().signed

        x, y = (a, b) if is_int8(a) else (b, a)
        assert is_int8(x)
        # An unsigned operand (the softmax's p) is zero-extended into the multiplier's
        # signed port: its sign bit is 0, so no row needs it (fewer cells, no constant rows).
        y_width = len(y) + (0 if y.shape().signed else 1)
        m.submodules[name] = mul = LutMultiplier(ACT_WIDTH, y_width,
                                                 b_nonnegative=not y.shape().signed)
        assert mul.latency == MULT_LATENCY
        m.d.comb += [mul.a.eq(x), mul.b.eq(y), mul.en.eq(1)]
        return mul.p

    def _slot_of(self, row):
        """Ring slot of row counter ``row`` (the ring size is a power of two)."""
        return row[:self._ring.bit_length() - 1]

    def _window_addr(self, key, slot):
        """Address of key ``key`` of ring slot ``slot`` in the score and exp memories."""
        return Cat(key, slot) if self._row_stride > 1 else slot

    def _elaborate_config(self, m, u):
        """``i_cfg``: the sequence's static configuration and the row counters it resets."""
        window = self._window
        count_width = SEQ_LEN_BITS + 1
        running = Signal()
        seq_len = Signal(count_width)
        behind = Signal(range(window))
        ahead = Signal(range(window))
        s_mult = Signal(MULT_BITS)
        s_shift = Signal(SHIFT_BITS)
        o_mult = Signal(MULT_BITS)
        o_shift = Signal(SHIFT_BITS)

        # Row counters (all reset by i_cfg).
        kv_acc = Signal(count_width)      # K/V rows accepted
        kv_cnt = Signal(count_width)      # K/V rows stored (readable)
        a_row = Signal(count_width)       # rows started by stage A
        a_done = Signal(count_width)      # rows whose scores and max are stored
        b_row = Signal(count_width)       # rows started by stage B
        r_done = Signal(count_width)      # rows whose reciprocal is stored
        d_row = Signal(count_width)       # rows started by stage D
        d_done = Signal(count_width)      # rows whose D reads were all issued
        out_cnt = Signal(count_width)     # rows written into the output FIFO
        popped = Signal(count_width)      # rows taken from o_stream

        cfg = self.i_cfg.payload
        # Setup after an i_cfg transfer, one register stage per step (the configuration is
        # static, but timing analysis does not know that): 3: window clamped and latched;
        # 2: behind/ahead; 1: hi(0) and seq_len - 1; 0: running.
        setup = Signal(2)
        win = Signal(range(window + 1))
        causal = Signal()
        seq_last = Signal(count_width)                         # seq_len - 1
        cfg_take = Signal()
        m.d.comb += [self.i_cfg.ready.eq(~running & (setup == 0)),
                     cfg_take.eq(self.i_cfg.valid & self.i_cfg.ready)]
        with m.If(cfg_take):
            m.d.sync += [
                setup.eq(3),
                seq_len.eq(cfg.seq_len),
                win.eq(Mux(cfg.window == 0, 1, Mux(cfg.window > window, window, cfg.window))),
                causal.eq(cfg.causal),
                s_mult.eq(cfg.score_mult), s_shift.eq(cfg.score_shift),
                o_mult.eq(cfg.out_mult), o_shift.eq(cfg.out_shift),
            ]
            for c in (kv_acc, kv_cnt, a_row, a_done, b_row, r_done, d_row, d_done, out_cnt,
                      popped):
                m.d.sync += c.eq(0)
        with m.Elif(setup != 0):
            m.d.sync += [setup.eq(setup - 1),
                         behind.eq(Mux(causal, win - 1, win >> 1)),
                         ahead.eq(Mux(causal, 0, (win - 1) >> 1)),
                         seq_last.eq(seq_len - 1)]
            with m.If(setup == 1):
                m.d.sync += running.eq(seq_len != 0)
        with m.Elif(running & (popped == seq_len)):
            m.d.sync += running.eq(0)
        vars(u).update(
            count_width=count_width, running=running, seq_len=seq_len, seq_last=seq_last,
            behind=behind, ahead=ahead, setup=setup, cfg_take=cfg_take,
            s_mult=s_mult, s_shift=s_shift, o_mult=o_mult, o_shift=o_shift,
            kv_acc=kv_acc, kv_cnt=kv_cnt, a_row=a_row, a_done=a_done, b_row=b_row,
            r_done=r_done, d_row=d_row, d_done=d_done, out_cnt=out_cnt, popped=popped)

    def _elaborate_memories(self, m, platform, u):
        """The K/V ring, the score and exp rings in block RAM; the per-row metadata in registers."""
        window, ring, chunks = self._window, self._ring, self._chunks
        kv_words = self._kv_slots * chunks
        ring_words = ring * self._row_stride
        lane_bits = ACT_WIDTH * self._lanes
        # Block RAMs with a registered read (hw.bram: on ECP5 the DP16KD output register, whose
        # clock-to-out is far shorter than the array's 5.8 ns): every read below lands in a
        # register two cycles after its address, and nothing reads a word while it is written.
        m.submodules.kmem = kmem = make_block_ram(platform, width=lane_bits, depth=kv_words)
        m.submodules.vmem = vmem = make_block_ram(platform, width=lane_bits, depth=kv_words)
        m.submodules.smem = smem = make_block_ram(platform, width=self._score_width,
                                                  depth=ring_words)
        m.submodules.emem = emem = make_block_ram(platform, width=EXP_WIDTH, depth=ring_words)
        for mem in (kmem, vmem, smem, emem):
            m.d.comb += [mem.r_en.eq(1), mem.r_oce.eq(1)]

        def per_slot(shape, name):
            return Array(Signal(shape, name=f"{name}{i}") for i in range(ring))

        u.kmem, u.vmem, u.smem, u.emem = kmem, vmem, smem, emem
        u.meta_n = per_slot(range(window + 1), "meta_n")           # keys of the row
        u.meta_lo = per_slot(range(self._kv_slots), "meta_lo")     # K/V slot of its first key
        # Per-row start values of the B and D issue counters, computed once when the row is
        # written (keeps arithmetic off the 16:1 read muxes in front of the counters).
        u.meta_brem = per_slot(range(window), "meta_brem")
        u.meta_drem = per_slot(range(window * chunks), "meta_drem")
        u.meta_m = per_slot(signed(self._score_width), "meta_m")   # row max of the scores
        u.r_table = per_slot(RECIP_WIDTH, "r_table")               # 2**38 // S of the row

    def _elaborate_kv_writer(self, m, u):
        """K/V writer: one row per ``chunks`` cycles into the K/V ring."""
        chunks, lane_bits = self._chunks, ACT_WIDTH * self._lanes
        kv_words = self._kv_slots * chunks
        kv_busy = Signal()
        kv_c = Signal(range(chunks))
        kv_addr = Signal(range(kv_words))
        kv_k = Signal(ACT_WIDTH * self._head_dim)
        kv_v = Signal(ACT_WIDTH * self._head_dim)
        kv_last = Signal()                    # registered: this cycle writes the last chunk
        kv_lim = Signal(u.count_width + 1)    # lo(d_done) + kv_slots, stepped like a_lo
        kv_room = u.kv_acc < kv_lim
        # Start conditions are registered (one compare chain less in front of the wide load
        # enables). They only ever turn true by themselves (counters of later stages grow), so a
        # value one cycle old is safe, except right after a start moved this stage's own
        # counter: that cycle is skipped (a one-cycle gap only for one-cycle rows).
        kv_ok, kv_took = Signal(), Signal()
        m.d.sync += kv_ok.eq((u.kv_acc < u.seq_len) & kv_room)
        kv_take = u.running & (~kv_busy | kv_last) & kv_ok & ~kv_took
        m.d.sync += kv_took.eq(self.i_kv.valid & kv_take)
        m.d.comb += self.i_kv.ready.eq(kv_take)
        kmem, vmem = u.kmem, u.vmem
        m.d.comb += [
            kmem.w_addr.eq(kv_addr), kmem.w_data.eq(kv_k.word_select(kv_c, lane_bits)),
            vmem.w_addr.eq(kv_addr), vmem.w_data.eq(kv_v.word_select(kv_c, lane_bits)),
            kmem.w_en.eq(kv_busy), vmem.w_en.eq(kv_busy),
        ]
        with m.If(kv_busy):
            m.d.sync += [kv_c.eq(Mux(kv_last, 0, kv_c + 1)),
                         kv_addr.eq(_wrap_inc(kv_addr, kv_words))]
            with m.If(kv_last):
                m.d.sync += [kv_busy.eq(0), u.kv_cnt.eq(u.kv_cnt + 1)]
        with m.If(self.i_kv.valid & kv_take):
            m.d.sync += [kv_busy.eq(1), kv_c.eq(0), u.kv_acc.eq(u.kv_acc + 1),
                         kv_k.eq(self.i_kv.payload.k.as_value()),
                         kv_v.eq(self.i_kv.payload.v.as_value())]
        with m.If(u.cfg_take):
            m.d.sync += [kv_addr.eq(0), kv_busy.eq(0), kv_c.eq(0), kv_lim.eq(self._kv_slots)]
        vars(u).update(kv_busy=kv_busy, kv_c=kv_c, kv_last=kv_last, kv_lim=kv_lim,
                          kv_take=kv_take)

    def _elaborate_score_issue(self, m, u):
        """Stage A's issue: a query row's window of keys, one K chunk address per cycle."""
        window, chunks, ring = self._window, self._chunks, self._ring
        kv_words = self._kv_slots * chunks
        a_busy = Signal()
        a_i = Signal(range(window))
        a_c = Signal(range(chunks))
        a_n = Signal(range(window + 1))
        a_addr = Signal(range(kv_words))
        a_slot = Signal(range(ring))
        q_cur = Signal(ACT_WIDTH * self._head_dim)
        a_rem = Signal(range(window * chunks))   # issues left after this one (last when 0)
        a_last = Signal()                         # registered: this cycle issues the last chunk
        # Window of row a_row, kept in registers and stepped by one per row (lo(t+1) = lo(t) + 1
        # once t >= behind, hi(t+1) = min(T, hi(t) + 1)): no adder chain in front of i_q.ready.
        a_lo = Signal(u.count_width)
        a_hi = Signal(u.count_width)
        a_ok, a_took = Signal(), Signal()
        a_gap = Signal(range(ring + 1))          # a_row - d_done, kept as its own up/down counter
        m.d.sync += a_ok.eq((u.a_row < u.seq_len) & (u.kv_cnt >= a_hi) & (a_gap < ring))
        a_take = u.running & (~a_busy | a_last) & a_ok & ~a_took
        m.d.sync += a_took.eq(self.i_q.valid & a_take)
        m.d.comb += self.i_q.ready.eq(a_take)
        with m.If(a_busy):
            m.d.sync += [a_c.eq(Mux(a_c == chunks - 1, 0, a_c + 1)),
                         a_i.eq(Mux(a_c == chunks - 1, a_i + 1, a_i)),
                         a_rem.eq(a_rem - 1),
                         a_addr.eq(_wrap_inc(a_addr, kv_words))]
            with m.If(a_last):
                m.d.sync += a_busy.eq(0)
        # The row's window is written to the ring one cycle after the start (nothing reads it
        # that soon), keeping the slot decoder off the i_q handshake path.
        a_meta_we = Signal()
        a_lo_slot = Signal(range(self._kv_slots))
        m.d.sync += a_meta_we.eq(self.i_q.valid & a_take)
        # Amaranth emits a slot decoder per source line of slot-indexed accesses (merged later,
        # but numbered first): on these two lines the generated Verilog, names included, stays
        # that of the board builds measured, and so does nextpnr's placement.
        meta_n, meta_lo, meta_brem, meta_drem = u.meta_n, u.meta_lo, u.meta_brem, u.meta_drem
        with m.If(a_meta_we):
            m.d.sync += [meta_n[a_slot].eq(a_n), meta_lo[a_slot].eq(a_lo_slot),
                         meta_brem[a_slot].eq(a_n - 1), meta_drem[a_slot].eq(a_n * chunks - 1)]
        with m.If(self.i_q.valid & a_take):
            slot = self._slot_of(u.a_row)
            lo_slot = a_lo[:self._kv_slots.bit_length() - 1]
            m.d.sync += [
                a_busy.eq(1), a_i.eq(0), a_c.eq(0), a_n.eq(a_hi - a_lo),
                a_rem.eq((a_hi - a_lo) * chunks - 1), a_lo_slot.eq(lo_slot),
                a_addr.eq(lo_slot * chunks), a_slot.eq(slot), u.a_row.eq(u.a_row + 1),
                q_cur.eq(self.i_q.payload.as_value()),
                a_lo.eq(a_lo + (u.a_row >= u.behind)),
                a_hi.eq(Mux(a_hi == u.seq_len, a_hi, a_hi + 1)),
            ]
        with m.If(u.cfg_take):
            m.d.sync += [a_busy.eq(0), a_lo.eq(0)]
        with m.If(u.setup == 2):                                # ahead is valid from here
            m.d.sync += a_hi.eq(Mux(u.ahead + 1 < u.seq_len, u.ahead + 1, u.seq_len))  # hi(0)
        m.d.comb += u.kmem.r_addr.eq(a_addr)
        vars(u).update(a_busy=a_busy, a_i=a_i, a_c=a_c, a_n=a_n, a_slot=a_slot, q_cur=q_cur,
                          a_rem=a_rem, a_last=a_last, a_lo=a_lo, a_hi=a_hi, a_gap=a_gap,
                          a_take=a_take)

    def _elaborate_score_datapath(self, m, platform, u):
        """Stage A's datapath: ``q . k`` per key (lanes products, adder tree, chunk sums), the
        scores into their ring and the row max into the row's metadata."""
        window, ring, chunks = self._window, self._ring, self._chunks
        lane_bits = ACT_WIDTH * self._lanes
        score_width = self._score_width
        # A1: K row chunk in the block RAM's first read rank; q chunk registered beside it.
        a1_v, a1_first, a1_lastc, a1_lastk = Signal(), Signal(), Signal(), Signal()
        a1_i, a1_slot, a1_q = Signal(range(window)), Signal(range(ring)), Signal(lane_bits)
        m.d.sync += [a1_v.eq(u.a_busy), a1_first.eq(u.a_c == 0),
                     a1_lastc.eq(u.a_c == chunks - 1),
                     a1_lastk.eq(u.a_i == u.a_n - 1), a1_i.eq(u.a_i), a1_slot.eq(u.a_slot),
                     a1_q.eq(u.q_cur.word_select(u.a_c, lane_bits))]
        # A2: lanes products. A3 ..: adder tree over the lanes (_lane_sum). The K chunk comes
        # from the block RAM's output register (its second read rank): block-RAM clock-to-out
        # plus the route to a DSP column does not fit one cycle at 100+ MHz.
        a1b_k, a1b_q = Signal(lane_bits), Signal(lane_bits)
        m.d.comb += a1b_k.eq(u.kmem.r_data)
        m.d.sync += a1b_q.eq(a1_q)
        a2_p = [self._int8_product(m, platform, _lane(a1b_k, l), _lane(a1b_q, l),
                                   name=f"qk_mul{l}")
                for l in range(self._lanes)]
        a3_sum, tree_regs = self._lane_sum(m, a2_p)
        # The flags travel beside: K register, products, tree ranks.
        a3 = _delayed_fields(m, {"v": a1_v, "first": a1_first, "lastc": a1_lastc,
                                 "lastk": a1_lastk, "i": a1_i, "slot": a1_slot},
                             1 + MULT_LATENCY + tree_regs, name="a_tag", first=2)
        # A4: chunk accumulation -> score.
        a_acc = Signal(signed(score_width))
        a_acc_next = Signal(signed(score_width))
        m.d.comb += a_acc_next.eq(Mux(a3.first, 0, a_acc) + a3_sum)
        a4_v, a4_lastk = Signal(), Signal()
        a4_i, a4_slot = Signal(range(window)), Signal(range(ring))
        a4_s = Signal(signed(score_width))
        with m.If(a3.v):
            m.d.sync += a_acc.eq(a_acc_next)
        m.d.sync += [a4_v.eq(a3.v & a3.lastc), a4_lastk.eq(a3.lastk), a4_i.eq(a3.i),
                     a4_slot.eq(a3.slot), a4_s.eq(a_acc_next)]
        # A5: store the score, track the row max.
        a_max = Signal(signed(score_width))
        a_max_next = Signal(signed(score_width))
        m.d.comb += a_max_next.eq(Mux((a4_i == 0) | (a4_s > a_max), a4_s, a_max))
        m.d.comb += [u.smem.w_addr.eq(self._window_addr(a4_i, a4_slot)),
                     u.smem.w_data.eq(a4_s), u.smem.w_en.eq(a4_v)]
        with m.If(a4_v):
            m.d.sync += a_max.eq(a_max_next)
        # A6: the row's max goes to its ring slot one cycle after its last score, from the a_max
        # register (compare -> mux -> slot write in one cycle was an 8.06 ns path at 125 MHz on
        # ECP5-85F); a_done counts the row only then, so stage B never reads it earlier.
        a6_store = Signal()
        a6_slot = Signal(range(ring))
        m.d.sync += [a6_store.eq(a4_v & a4_lastk), a6_slot.eq(a4_slot)]
        with m.If(a6_store):
            m.d.sync += [u.meta_m[a6_slot].eq(a_max), u.a_done.eq(u.a_done + 1)]

    def _lane_sum(self, m, products):
        """Pipelined adder tree over the lanes' products: a register after the first level (the
        products' route from the DSP column is long), then every two levels (three chained
        17..19-bit adds would not close timing at 100+ MHz on ECP5) and at the end. Returns the
        sum and its register ranks (:func:`_tree_registers`)."""
        level, depth, tree_regs = list(products), 0, 0
        while len(level) > 1 or depth == 0:
            nxt = [level[i] + level[i + 1] if i + 1 < len(level) else level[i]
                   for i in range(0, len(level), 2)] if len(level) > 1 else level
            depth += 1
            if depth % 2 == 1 or len(nxt) == 1:
                regs = []
                for i, x in enumerate(nxt):
                    r = Signal(signed(self._chunk_sum_width), name=f"a_tree{tree_regs}_{i}")
                    m.d.sync += r.eq(x)
                    regs.append(r)
                nxt = regs
                tree_regs += 1
            level = nxt
        assert tree_regs == _tree_registers(self._lanes)
        return level[0], tree_regs

    def _elaborate_softmax_issue(self, m, u):
        """Stage B's issue: a scored row's keys, one score address per cycle."""
        window, ring = self._window, self._ring
        b_busy = Signal()
        b_i = Signal(range(window))
        b_n = Signal(range(window + 1))
        b_slot = Signal(range(ring))
        b_m = Signal(signed(self._score_width))
        b_rem = Signal(range(window))
        b_last = Signal()
        b_ok, b_took = Signal(), Signal()
        m.d.sync += b_ok.eq(u.b_row < u.a_done)
        b_take = u.running & (~b_busy | b_last) & b_ok & ~b_took
        m.d.sync += b_took.eq(b_take)
        with m.If(b_busy):
            m.d.sync += [b_i.eq(b_i + 1), b_rem.eq(b_rem - 1)]
            with m.If(b_last):
                m.d.sync += b_busy.eq(0)
        with m.If(b_take):
            slot = self._slot_of(u.b_row)
            m.d.sync += [b_busy.eq(1), b_i.eq(0), b_n.eq(u.meta_n[slot]), b_slot.eq(slot),
                         b_rem.eq(u.meta_brem[slot]),
                         b_m.eq(u.meta_m[slot]), u.b_row.eq(u.b_row + 1)]
        with m.If(u.cfg_take):
            m.d.sync += b_busy.eq(0)
        m.d.comb += u.smem.r_addr.eq(self._window_addr(b_i, b_slot))
        vars(u).update(b_busy=b_busy, b_i=b_i, b_slot=b_slot, b_m=b_m, b_rem=b_rem,
                          b_last=b_last, b_take=b_take)

    def _elaborate_softmax_datapath(self, m, u):
        """Stage B's datapath: ``u = scale(m - s)``, ``e = exp(u)`` into the exp ring, the row
        sum ``S`` and ``r = 2**38 // S`` into the row's metadata."""
        window, ring = self._window, self._ring
        score_width = self._score_width
        # B1: score in the block RAM's first read rank.
        b1_v, b1_last, b1_i, b1_slot, b1_m = (Signal(), Signal(), Signal(range(window)),
                                              Signal(range(ring)), Signal(signed(score_width)))
        m.d.sync += [b1_v.eq(u.b_busy), b1_last.eq(u.b_last), b1_i.eq(u.b_i),
                     b1_slot.eq(u.b_slot), b1_m.eq(u.b_m)]
        # B2: the score from the block RAM's output register (its array clock-to-out is slow);
        # B3: difference to the row max.
        b2_s, b2_m = Signal(signed(score_width)), Signal(signed(score_width))
        m.d.comb += b2_s.eq(u.smem.r_data.as_signed())
        m.d.sync += b2_m.eq(b1_m)
        b2_diff = Signal(unsigned(self._diff_width))
        m.d.sync += b2_diff.eq(b2_m - b2_s)
        # B2 .. B2+3: ScoreScaler; then SoftmaxExp.
        m.submodules.scaler = scaler = ScoreScaler(self._diff_width, **self._dsp_options())
        m.submodules.exp = exp = SoftmaxExp()
        m.d.comb += [scaler.diff.eq(b2_diff), scaler.mult.eq(u.s_mult),
                     scaler.shift.eq(u.s_shift), exp.u.eq(scaler.u)]
        b6 = _delayed_fields(m, {"v": b1_v, "last": b1_last, "i": b1_i, "slot": b1_slot},
                             2 + ScoreScaler.latency + SoftmaxExp.latency, name="b_tag",
                             first=2)
        b_sum = Signal(SUM_WIDTH)
        b_sum_next = Signal(SUM_WIDTH)
        m.d.comb += b_sum_next.eq(Mux(b6.i == 0, 0, b_sum) + exp.e)
        m.d.comb += [u.emem.w_addr.eq(self._window_addr(b6.i, b6.slot)),
                     u.emem.w_data.eq(exp.e), u.emem.w_en.eq(b6.v)]
        with m.If(b6.v):
            m.d.sync += b_sum.eq(b_sum_next)
        # B7: sum of the row into the divider (a dummy 1.0 between rows).
        m.submodules.recip = recip = Reciprocal(tag_width=1 + len(b6.slot))
        div_total = Signal(SUM_WIDTH)
        div_tag = Signal(1 + len(b6.slot))
        m.d.sync += [div_total.eq(b_sum_next), div_tag.eq(Cat(b6.v & b6.last, b6.slot))]
        m.d.comb += [recip.total.eq(Mux(div_tag[0], div_total, 1 << SOFTMAX_EXP_BITS)),
                     recip.tag.eq(div_tag)]
        with m.If(recip.o_tag[0]):
            m.d.sync += [u.r_table[recip.o_tag[1:]].eq(recip.r), u.r_done.eq(u.r_done + 1)]

    def _elaborate_output_issue(self, m, u):
        """Stage D's issue: a row with its reciprocal, one exp and V chunk address per cycle,
        started only while the output FIFO has a row free for it."""
        window, chunks, ring = self._window, self._chunks, self._ring
        kv_words = self._kv_slots * chunks
        d_busy = Signal()
        d_i = Signal(range(window))
        d_c = Signal(range(chunks))
        d_n = Signal(range(window + 1))
        d_slot = Signal(range(ring))
        d_addr = Signal(range(kv_words))
        d_r = Signal(RECIP_WIDTH)
        d_rem = Signal(range(window * chunks))
        d_last = Signal()
        d_ok, d_took = Signal(), Signal()
        d_gap = Signal(range(self._out_depth + 1))      # d_row - popped
        m.d.sync += d_ok.eq((u.d_row < u.r_done) & (d_gap < self._out_depth))
        d_take = u.running & (~d_busy | d_last) & d_ok & ~d_took
        m.d.sync += d_took.eq(d_take)
        with m.If(d_busy):
            m.d.sync += [d_c.eq(Mux(d_c == chunks - 1, 0, d_c + 1)),
                         d_i.eq(Mux(d_c == chunks - 1, d_i + 1, d_i)),
                         d_rem.eq(d_rem - 1),
                         d_addr.eq(_wrap_inc(d_addr, kv_words))]
            with m.If(d_last):
                m.d.sync += [d_busy.eq(0), u.d_done.eq(u.d_done + 1),
                             u.kv_lim.eq(u.kv_lim + (u.d_done >= u.behind))]
        with m.If(d_take):
            slot = self._slot_of(u.d_row)
            lo, r_table = u.meta_lo[slot], u.r_table[slot]     # one slot decoder (see A)
            m.d.sync += [d_busy.eq(1), d_i.eq(0), d_c.eq(0), d_n.eq(u.meta_n[slot]),
                         d_rem.eq(u.meta_drem[slot]),
                         d_slot.eq(slot), d_addr.eq(lo * chunks), d_r.eq(r_table),
                         u.d_row.eq(u.d_row + 1)]
        with m.If(u.cfg_take):
            m.d.sync += d_busy.eq(0)
        m.d.comb += [u.emem.r_addr.eq(self._window_addr(d_i, d_slot)),
                     u.vmem.r_addr.eq(d_addr)]
        vars(u).update(d_busy=d_busy, d_i=d_i, d_c=d_c, d_n=d_n, d_r=d_r, d_rem=d_rem,
                          d_last=d_last, d_gap=d_gap, d_take=d_take)

    def _elaborate_output_datapath(self, m, platform, u):
        """Stage D's datapath: ``p = e * r``, ``acc += p * v`` (lanes per cycle), then the
        finished chunk's requantization."""
        lanes, chunks = self._lanes, self._chunks
        # D1: e and the V chunk in the block RAMs' first read rank; D2: in their output
        # registers; then Normalizer, products (DSP), accumulate, requant.
        d1_r, d2_r = Signal(RECIP_WIDTH), Signal(RECIP_WIDTH)
        d2_e = Signal(EXP_WIDTH)
        m.d.sync += [d1_r.eq(u.d_r), d2_r.eq(d1_r)]
        m.d.comb += d2_e.eq(u.emem.r_data)              # e: the block RAM's output register
        m.submodules.norm = norm = Normalizer(**self._dsp_options())
        m.d.comb += [norm.e.eq(d2_e), norm.r.eq(d2_r)]
        d_fields = {"v": u.d_busy, "c": u.d_c, "first": u.d_i == 0,
                    "lastk": u.d_i == u.d_n - 1}
        d_cycles = 2 + Normalizer.latency + MULT_LATENCY
        # Each lane's accumulators (chunks x ATTN_ACC_WIDTH enables and a chunk multiplexer)
        # read a copy of the last tag register of their own (hw.bram.unshared_register): the
        # one register drove ~1,500 endpoints of the lanes (the ulx3s_85f top's route).
        d4_tag = _delay(m, Cat(*d_fields.values()), d_cycles - 1, name="d_tag", first=1)
        d4 = _unpack(d_fields, _delay(m, d4_tag, 1, name="d_tag", first=d_cycles))
        d4_lane = [_unpack(d_fields, unshared_register(m, d4_tag, name=f"d_tag_lane{l}",
                                                       platform=platform,
                                                       family=self._family))
                   for l in range(lanes)]
        # D2: the block RAM's output register; delayed to line up with norm.p.
        v_chunk = _delay(m, u.vmem.r_data, Normalizer.latency, name="d_v", first=3)
        # The products register beside the tag.
        d4_p = [self._int8_product(m, platform, norm.p, _lane(v_chunk, l), name=f"pv_mul{l}")
                for l in range(lanes)]
        acc = Array(Array(Signal(signed(ATTN_ACC_WIDTH), name=f"acc{c}_{l}")
                          for l in range(lanes))
                    for c in range(chunks))
        fin = [Signal(signed(ATTN_ACC_WIDTH), name=f"fin{l}") for l in range(lanes)]
        fin_v = Signal()
        fin_c = Signal(range(chunks))
        m.d.sync += [fin_v.eq(d4.v & d4.lastk), fin_c.eq(d4.c)]
        for l in range(lanes):
            tag = d4_lane[l]
            new = Signal(signed(ATTN_ACC_WIDTH), name=f"acc_new{l}")
            m.d.comb += new.eq(Mux(tag.first, 0, acc[tag.c][l]) + d4_p[l])
            with m.If(tag.v):
                m.d.sync += acc[tag.c][l].eq(new)
            m.d.sync += fin[l].eq(new)
        # D5 ..: requant of the finished chunk (the GEMM requantizer's lane, no bias).
        rq_y = []
        for l in range(lanes):
            rq = RequantLane(**self._dsp_options())
            m.submodules[f"requant{l}"] = rq
            m.d.comb += [rq.s.eq(fin[l]), rq.mult.eq(u.o_mult), rq.shift.eq(u.o_shift),
                         rq.en.eq(1)]
            rq_y.append(rq.y)
        u.out = _delayed_fields(m, {"v": fin_v, "c": fin_c}, RequantLane.latency,
                                name="o_tag", first=1)
        u.y_chunk = Cat(*rq_y)

    def _elaborate_output_fifo(self, m, u):
        """Output row assembly (a chunk per requantized transfer), the FIFO and ``o_stream``."""
        chunks, lane_bits = self._chunks, ACT_WIDTH * self._lanes
        o_v, o_c = u.out.v, u.out.c
        row_buf = Array(Signal(lane_bits, name=f"row_buf{c}") for c in range(chunks))
        with m.If(o_v):
            m.d.sync += row_buf[o_c].eq(u.y_chunk)
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=ACT_WIDTH * self._head_dim + 1,
                                                      depth=self._out_depth)
        row_bits = Cat(*(row_buf[c] for c in range(chunks - 1)), u.y_chunk)
        # The row's last flag from a register, loaded during the setup and at each write: the
        # comparison of out_cnt and seq_last in front of the FIFO's LUT-RAM write data was a
        # routed ulx3s_85f top's critical path (10.33 ns, 5 ns of it the wire to the RAM).
        out_last = Signal(name="out_last")              # the next row written is the last
        write = o_v & (o_c == chunks - 1)
        m.d.comb += [ofifo.w_data.eq(Cat(row_bits, out_last)), ofifo.w_en.eq(write)]
        with m.If(u.setup != 0):
            m.d.sync += out_last.eq(u.seq_len == 1)
        with m.If(write):
            m.d.sync += [u.out_cnt.eq(u.out_cnt + 1), out_last.eq(u.out_cnt + 1 == u.seq_last)]
        m.d.comb += [self.o_stream.payload.eq(ofifo.r_data), self.o_stream.valid.eq(ofifo.r_rdy),
                     ofifo.r_en.eq(self.o_stream.ready)]
        u.pop = self.o_stream.valid & self.o_stream.ready
        with m.If(u.pop):
            m.d.sync += u.popped.eq(u.popped + 1)

    def _elaborate_credits(self, m, u):
        """The credit counters: rows between stage A's start and D's last read (``a_gap``,
        bounded by the ring), rows between D's start and ``o_stream`` (``d_gap``, bounded by
        the output FIFO)."""
        a_start, d_fin, pop = self.i_q.valid & u.a_take, u.d_last, u.pop
        with m.If(u.cfg_take):
            m.d.sync += [u.a_gap.eq(0), u.d_gap.eq(0)]
        with m.Else():
            with m.If(a_start & ~d_fin):
                m.d.sync += u.a_gap.eq(u.a_gap + 1)
            with m.Elif(d_fin & ~a_start):
                m.d.sync += u.a_gap.eq(u.a_gap - 1)
            with m.If(u.d_take & ~pop):
                m.d.sync += u.d_gap.eq(u.d_gap + 1)
            with m.Elif(pop & ~u.d_take):
                m.d.sync += u.d_gap.eq(u.d_gap - 1)

    def _elaborate_last_flags(self, m, u):
        """The "last issue" flags as registers (the zero compare of a counter stays off the start
        paths): set for the cycle whose counter reaches 0, from the start or the count down."""
        chunks = self._chunks

        def last_flag(flag, start, start_last, busy, next_is_last):
            m.d.sync += flag.eq(Mux(start, start_last, busy & ~flag & next_is_last))

        last_flag(u.kv_last, self.i_kv.valid & u.kv_take, chunks == 1, u.kv_busy,
                  u.kv_c == chunks - 2)
        last_flag(u.a_last, self.i_q.valid & u.a_take, ((u.a_hi - u.a_lo) * chunks) == 1,
                  u.a_busy, u.a_rem == 1)
        last_flag(u.b_last, u.b_take, u.meta_brem[self._slot_of(u.b_row)] == 0, u.b_busy,
                  u.b_rem == 1)
        last_flag(u.d_last, u.d_take, u.meta_drem[self._slot_of(u.d_row)] == 0, u.d_busy,
                  u.d_rem == 1)


def _wrap_inc(addr, size: int):
    """``addr + 1`` modulo ``size`` (a ring address)."""
    return Mux(addr == size - 1, 0, addr + 1)


def _lane(word, lane: int):
    """Lane ``lane`` of a word of packed int8 lanes, signed."""
    return word[ACT_WIDTH * lane:ACT_WIDTH * (lane + 1)].as_signed()


def _delay(m: Module, value, cycles: int, *, name: str, first: int):
    """``value`` through ``cycles`` plain registers, named ``{name}{first}``, then counting up."""
    for k in range(cycles):
        reg = Signal(len(value), name=f"{name}{first + k}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _delayed_fields(m: Module, fields: dict, cycles: int, *, name: str, first: int):
    """The tag pattern: ``fields`` (name -> value) packed into one word, delayed by ``cycles``
    registers (:func:`_delay`) beside a datapath, and unpacked again by name."""
    return _unpack(fields, _delay(m, Cat(*fields.values()), cycles, name=name, first=first))


def _unpack(fields: dict, packed):
    """``packed`` (the values of ``fields`` in a row, as ``Cat``) by the names of ``fields``."""
    out, offset = SimpleNamespace(), 0
    for field, value in fields.items():
        width = len(Value.cast(value))
        setattr(out, field, packed[offset] if width == 1 else packed[offset:offset + width])
        offset += width
    return out
