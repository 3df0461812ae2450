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

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.bram import make_block_ram
from hw.checks import check_int
from hw.multiplier import check_dsp_options
from hw.numerics import (
    ATTN_MAX_HEAD_DIM,
    MULT_BITS,
    SHIFT_BITS,
    SOFTMAX_EXP_BITS,
    SOFTMAX_MAX_WINDOW,
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
ATTN_ACC_WIDTH = 24          # |sum_j p_j v_j| <= 128 * (2**15 + 256) < 2**23


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
    head_dim = Setting("Head dimension.")
    window = Setting("Largest window (keys per query row).")
    lanes = Setting("Multipliers of each MAC stage.")
    use_dsp = Setting("DSP multipliers where the platform has them.")
    kv_slots = Setting("K/V rows held on chip (a power of two >= window + ring).")
    ring = Setting("Rows that may be in flight between the score stage and the P.V stage.")

    def __init__(self, *, head_dim: int, window: int, lanes: int, use_dsp: bool = True,
                 family: str | None = None):
        self._head_dim = check_int("head_dim", head_dim, 1, ATTN_MAX_HEAD_DIM)
        self._window = check_int("window", window, 1, SOFTMAX_MAX_WINDOW)
        self._lanes = check_int("lanes", lanes, 1, MAX_ATTN_LANES)
        if head_dim % lanes:
            raise ValueError(f"lanes must divide head_dim ({head_dim}), not {lanes!r}")
        check_dsp_options(use_dsp, family)
        self._use_dsp, self._family = use_dsp, family
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
    # plus the adder-tree ranks; + 1: the row max is stored (A6) a cycle after the last score
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

    def elaborate(self, platform):
        m = Module()
        d, L, CH, W = self._head_dim, self._lanes, self._chunks, self._window
        NR, NS, WP = self._ring, self._kv_slots, self._row_stride
        CW = SEQ_LEN_BITS + 1
        score_max = 128 * 128 * d
        SW = score_max.bit_length() + 1                      # signed score width
        DW = (2 * score_max).bit_length()                     # unsigned m - s width
        TW = (128 * 128 * L).bit_length() + 1                 # signed chunk sum width
        AW = ATTN_ACC_WIDTH
        dsp = {"use_dsp": self._use_dsp, "family": self._family}

        # -- configuration (static during a sequence) ------------------------------------------
        running = Signal()
        seq_len = Signal(CW)
        behind = Signal(range(W))
        ahead = Signal(range(W))
        s_mult = Signal(MULT_BITS)
        s_shift = Signal(SHIFT_BITS)
        o_mult = Signal(MULT_BITS)
        o_shift = Signal(SHIFT_BITS)

        # Row counters (all reset by i_cfg).
        kv_acc = Signal(CW)      # K/V rows accepted
        kv_cnt = Signal(CW)      # K/V rows stored (readable)
        a_row = Signal(CW)       # rows started by stage A
        a_done = Signal(CW)      # rows whose scores and max are stored
        b_row = Signal(CW)       # rows started by stage B
        r_done = Signal(CW)      # rows whose reciprocal is stored
        d_row = Signal(CW)       # rows started by stage D
        d_done = Signal(CW)      # rows whose D reads were all issued
        out_cnt = Signal(CW)     # rows written into the output FIFO
        popped = Signal(CW)      # rows taken from o_stream

        cfg = self.i_cfg.payload
        # Setup after an i_cfg transfer, one register stage per step (the configuration is
        # static, but timing analysis does not know that): 3: window clamped and latched;
        # 2: behind/ahead; 1: hi(0) and seq_len - 1; 0: running.
        setup = Signal(2)
        win = Signal(range(W + 1))
        causal = Signal()
        seq_last = Signal(CW)                                  # seq_len - 1
        cfg_take = Signal()
        m.d.comb += [self.i_cfg.ready.eq(~running & (setup == 0)),
                     cfg_take.eq(self.i_cfg.valid & self.i_cfg.ready)]
        with m.If(cfg_take):
            m.d.sync += [
                setup.eq(3),
                seq_len.eq(cfg.seq_len),
                win.eq(Mux(cfg.window == 0, 1, Mux(cfg.window > W, W, cfg.window))),
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

        # -- memories ----------------------------------------------------------------------------
        # Block RAMs with a registered read (hw.bram: on ECP5 the DP16KD output register, whose
        # clock-to-out is far shorter than the array's 5.8 ns): every read below lands in a
        # register two cycles after its address, and nothing reads a word while it is written.
        m.submodules.kmem = kmem = make_block_ram(platform, width=8 * L, depth=NS * CH)
        m.submodules.vmem = vmem = make_block_ram(platform, width=8 * L, depth=NS * CH)
        m.submodules.smem = smem = make_block_ram(platform, width=SW, depth=NR * WP)
        m.submodules.emem = emem = make_block_ram(platform, width=EXP_WIDTH, depth=NR * WP)
        for mem in (kmem, vmem, smem, emem):
            m.d.comb += [mem.r_en.eq(1), mem.r_oce.eq(1)]

        meta_n = Array(Signal(range(W + 1), name=f"meta_n{i}") for i in range(NR))
        meta_lo = Array(Signal(range(NS), name=f"meta_lo{i}") for i in range(NR))
        # Per-row start values of the B and D issue counters, computed once when the row is
        # written (keeps arithmetic off the 16:1 read muxes in front of the counters).
        meta_brem = Array(Signal(range(W), name=f"meta_brem{i}") for i in range(NR))
        meta_drem = Array(Signal(range(W * CH), name=f"meta_drem{i}") for i in range(NR))
        meta_m = Array(Signal(signed(SW), name=f"meta_m{i}") for i in range(NR))
        r_table = Array(Signal(RECIP_WIDTH, name=f"r_table{i}") for i in range(NR))

        def wrap_inc(addr, size):
            return Mux(addr == size - 1, 0, addr + 1)

        # -- K/V writer: one row per CH cycles into the K/V ring ---------------------------------
        kv_busy = Signal()
        kv_c = Signal(range(CH))
        kv_addr = Signal(range(NS * CH))
        kv_k = Signal(8 * d)
        kv_v = Signal(8 * d)
        kv_last = Signal()                    # registered: this cycle writes the last chunk
        kv_lim = Signal(CW + 1)          # lo(d_done) + kv_slots, stepped like a_lo
        kv_room = kv_acc < kv_lim
        # Start conditions are registered (one compare chain less in front of the wide load
        # enables). They only ever turn true by themselves (counters of later stages grow), so a
        # value one cycle old is safe, except right after a start moved this stage's own
        # counter: that cycle is skipped (a one-cycle gap only for one-cycle rows).
        kv_ok, kv_took = Signal(), Signal()
        m.d.sync += kv_ok.eq((kv_acc < seq_len) & kv_room)
        kv_take = running & (~kv_busy | kv_last) & kv_ok & ~kv_took
        m.d.sync += kv_took.eq(self.i_kv.valid & kv_take)
        m.d.comb += self.i_kv.ready.eq(kv_take)
        m.d.comb += [
            kmem.w_addr.eq(kv_addr), kmem.w_data.eq(kv_k.word_select(kv_c, 8 * L)),
            vmem.w_addr.eq(kv_addr), vmem.w_data.eq(kv_v.word_select(kv_c, 8 * L)),
            kmem.w_en.eq(kv_busy), vmem.w_en.eq(kv_busy),
        ]
        with m.If(kv_busy):
            m.d.sync += [kv_c.eq(Mux(kv_last, 0, kv_c + 1)),
                         kv_addr.eq(wrap_inc(kv_addr, NS * CH))]
            with m.If(kv_last):
                m.d.sync += [kv_busy.eq(0), kv_cnt.eq(kv_cnt + 1)]
        with m.If(self.i_kv.valid & kv_take):
            m.d.sync += [kv_busy.eq(1), kv_c.eq(0), kv_acc.eq(kv_acc + 1),
                         kv_k.eq(self.i_kv.payload.k.as_value()),
                         kv_v.eq(self.i_kv.payload.v.as_value())]
        with m.If(cfg_take):
            m.d.sync += [kv_addr.eq(0), kv_busy.eq(0), kv_c.eq(0), kv_lim.eq(NS)]

        # -- stage A: scores q . k_j, lanes products per cycle -----------------------------------
        a_busy = Signal()
        a_i = Signal(range(W))
        a_c = Signal(range(CH))
        a_n = Signal(range(W + 1))
        a_addr = Signal(range(NS * CH))
        a_slot = Signal(range(NR))
        q_cur = Signal(8 * d)
        a_rem = Signal(range(W * CH))         # issues left after this one (last when 0)
        a_last = Signal()                     # registered: this cycle issues the last chunk
        # Window of row a_row, kept in registers and stepped by one per row (lo(t+1) = lo(t) + 1
        # once t >= behind, hi(t+1) = min(T, hi(t) + 1)): no adder chain in front of i_q.ready.
        a_lo = Signal(CW)
        a_hi = Signal(CW)
        a_ok, a_took = Signal(), Signal()
        a_gap = Signal(range(NR + 1))        # a_row - d_done, kept as its own up/down counter
        m.d.sync += a_ok.eq((a_row < seq_len) & (kv_cnt >= a_hi) & (a_gap < NR))
        a_take = running & (~a_busy | a_last) & a_ok & ~a_took
        m.d.sync += a_took.eq(self.i_q.valid & a_take)
        m.d.comb += self.i_q.ready.eq(a_take)
        with m.If(a_busy):
            m.d.sync += [a_c.eq(Mux(a_c == CH - 1, 0, a_c + 1)),
                         a_i.eq(Mux(a_c == CH - 1, a_i + 1, a_i)),
                         a_rem.eq(a_rem - 1),
                         a_addr.eq(wrap_inc(a_addr, NS * CH))]
            with m.If(a_last):
                m.d.sync += a_busy.eq(0)
        # The row's window is written to the ring one cycle after the start (nothing reads it
        # that soon), keeping the slot decoder off the i_q handshake path.
        a_meta_we = Signal()
        a_lo_slot = Signal(range(NS))
        m.d.sync += a_meta_we.eq(self.i_q.valid & a_take)
        with m.If(a_meta_we):
            m.d.sync += [meta_n[a_slot].eq(a_n), meta_lo[a_slot].eq(a_lo_slot),
                         meta_brem[a_slot].eq(a_n - 1), meta_drem[a_slot].eq(a_n * CH - 1)]
        with m.If(self.i_q.valid & a_take):
            slot = a_row[:NR.bit_length() - 1]
            lo_slot = a_lo[:NS.bit_length() - 1]
            m.d.sync += [
                a_busy.eq(1), a_i.eq(0), a_c.eq(0), a_n.eq(a_hi - a_lo),
                a_rem.eq((a_hi - a_lo) * CH - 1), a_lo_slot.eq(lo_slot),
                a_addr.eq(lo_slot * CH), a_slot.eq(slot), a_row.eq(a_row + 1),
                q_cur.eq(self.i_q.payload.as_value()),
                a_lo.eq(a_lo + (a_row >= behind)),
                a_hi.eq(Mux(a_hi == seq_len, a_hi, a_hi + 1)),
            ]
        with m.If(cfg_take):
            m.d.sync += [a_busy.eq(0), a_lo.eq(0)]
        with m.If(setup == 2):                                  # ahead is valid from here
            m.d.sync += a_hi.eq(Mux(ahead + 1 < seq_len, ahead + 1, seq_len))   # hi(0)
        m.d.comb += kmem.r_addr.eq(a_addr)

        # A1: K row chunk in the block RAM's first read rank; q chunk registered beside it.
        a1_v, a1_first, a1_lastc, a1_lastk = Signal(), Signal(), Signal(), Signal()
        a1_i, a1_slot, a1_q = Signal(range(W)), Signal(range(NR)), Signal(8 * L)
        m.d.sync += [a1_v.eq(a_busy), a1_first.eq(a_c == 0), a1_lastc.eq(a_c == CH - 1),
                     a1_lastk.eq(a_i == a_n - 1), a1_i.eq(a_i), a1_slot.eq(a_slot),
                     a1_q.eq(q_cur.word_select(a_c, 8 * L))]
        # A2: lanes products. A3 ..: adder tree over the lanes, a register after the first level
        # (the products' route from the DSP column is long), then every two levels (three chained
        # 17..19-bit adds would not close timing at 100+ MHz on ECP5): _tree_registers.
        # The K chunk comes from the block RAM's output register (its second read rank):
        # block-RAM clock-to-out plus the route to a DSP column does not fit one cycle at
        # 100+ MHz.
        a1b_k, a1b_q = Signal(8 * L), Signal(8 * L)
        m.d.comb += a1b_k.eq(kmem.r_data)
        m.d.sync += a1b_q.eq(a1_q)
        a2_p = [dsp_product(m, platform, a1b_k[8 * l:8 * l + 8].as_signed(),
                            a1b_q[8 * l:8 * l + 8].as_signed(), name=f"qk_mul{l}", **dsp)
                for l in range(L)]
        level, depth, tree_regs = list(a2_p), 0, 0
        while len(level) > 1 or depth == 0:
            nxt = [level[i] + level[i + 1] if i + 1 < len(level) else level[i]
                   for i in range(0, len(level), 2)] if len(level) > 1 else level
            depth += 1
            if depth % 2 == 1 or len(nxt) == 1:
                regs = []
                for i, x in enumerate(nxt):
                    r = Signal(signed(TW), name=f"a_tree{tree_regs}_{i}")
                    m.d.sync += r.eq(x)
                    regs.append(r)
                nxt = regs
                tree_regs += 1
            level = nxt
        a3_sum = level[0]
        a_tag = Cat(a1_v, a1_first, a1_lastc, a1_lastk, a1_i, a1_slot)
        for k in range(1 + MULT_LATENCY + tree_regs):   # K register, products, tree ranks
            nxt_tag = Signal(len(a_tag), name=f"a_tag{k + 2}")
            m.d.sync += nxt_tag.eq(a_tag)
            a_tag = nxt_tag
        a3_v, a3_first, a3_lastc, a3_lastk = a_tag[0], a_tag[1], a_tag[2], a_tag[3]
        a3_i = a_tag[4:4 + len(a1_i)]
        a3_slot = a_tag[4 + len(a1_i):]
        # A4: chunk accumulation -> score.
        a_acc = Signal(signed(SW))
        a_acc_next = Signal(signed(SW))
        m.d.comb += a_acc_next.eq(Mux(a3_first, 0, a_acc) + a3_sum)
        a4_v, a4_lastk = Signal(), Signal()
        a4_i, a4_slot = Signal(range(W)), Signal(range(NR))
        a4_s = Signal(signed(SW))
        with m.If(a3_v):
            m.d.sync += a_acc.eq(a_acc_next)
        m.d.sync += [a4_v.eq(a3_v & a3_lastc), a4_lastk.eq(a3_lastk), a4_i.eq(a3_i),
                     a4_slot.eq(a3_slot), a4_s.eq(a_acc_next)]
        # A5: store the score, track the row max.
        a_max = Signal(signed(SW))
        a_max_next = Signal(signed(SW))
        m.d.comb += a_max_next.eq(Mux((a4_i == 0) | (a4_s > a_max), a4_s, a_max))
        m.d.comb += [smem.w_addr.eq(Cat(a4_i, a4_slot) if WP > 1 else a4_slot),
                     smem.w_data.eq(a4_s), smem.w_en.eq(a4_v)]
        with m.If(a4_v):
            m.d.sync += a_max.eq(a_max_next)
        # A6: the row's max goes to its ring slot one cycle after its last score, from the a_max
        # register (compare -> mux -> slot write in one cycle was an 8.06 ns path at 125 MHz on
        # ECP5-85F); a_done counts the row only then, so stage B never reads it earlier.
        a6_store = Signal()
        a6_slot = Signal(range(NR))
        m.d.sync += [a6_store.eq(a4_v & a4_lastk), a6_slot.eq(a4_slot)]
        with m.If(a6_store):
            m.d.sync += [meta_m[a6_slot].eq(a_max), a_done.eq(a_done + 1)]

        # -- stage B: u = scale(m - s), e = exp(u), S = sum e, r = 2**38 // S ----------------------
        b_busy = Signal()
        b_i = Signal(range(W))
        b_n = Signal(range(W + 1))
        b_slot = Signal(range(NR))
        b_m = Signal(signed(SW))
        b_rem = Signal(range(W))
        b_last = Signal()
        b_ok, b_took = Signal(), Signal()
        m.d.sync += b_ok.eq(b_row < a_done)
        b_take = running & (~b_busy | b_last) & b_ok & ~b_took
        m.d.sync += b_took.eq(b_take)
        with m.If(b_busy):
            m.d.sync += [b_i.eq(b_i + 1), b_rem.eq(b_rem - 1)]
            with m.If(b_last):
                m.d.sync += b_busy.eq(0)
        with m.If(b_take):
            slot = b_row[:NR.bit_length() - 1]
            m.d.sync += [b_busy.eq(1), b_i.eq(0), b_n.eq(meta_n[slot]), b_slot.eq(slot),
                         b_rem.eq(meta_brem[slot]),
                         b_m.eq(meta_m[slot]), b_row.eq(b_row + 1)]
        with m.If(cfg_take):
            m.d.sync += b_busy.eq(0)
        m.d.comb += smem.r_addr.eq(Cat(b_i, b_slot) if WP > 1 else b_slot)
        # B1: score in the block RAM's first read rank.
        b1_v, b1_last, b1_i, b1_slot, b1_m = (Signal(), Signal(), Signal(range(W)),
                                              Signal(range(NR)), Signal(signed(SW)))
        m.d.sync += [b1_v.eq(b_busy), b1_last.eq(b_last), b1_i.eq(b_i), b1_slot.eq(b_slot),
                     b1_m.eq(b_m)]
        # B2: the score from the block RAM's output register (its array clock-to-out is slow);
        # B3: difference to the row max.
        b2_s, b2_m = Signal(signed(SW)), Signal(signed(SW))
        m.d.comb += b2_s.eq(smem.r_data.as_signed())
        m.d.sync += b2_m.eq(b1_m)
        b2_diff = Signal(unsigned(DW))
        m.d.sync += b2_diff.eq(b2_m - b2_s)
        # B2 .. B2+3: ScoreScaler; then SoftmaxExp.
        m.submodules.scaler = scaler = ScoreScaler(DW, **dsp)
        m.submodules.exp = exp = SoftmaxExp()
        m.d.comb += [scaler.diff.eq(b2_diff), scaler.mult.eq(s_mult), scaler.shift.eq(s_shift),
                     exp.u.eq(scaler.u)]
        b_tag = Cat(b1_v, b1_last, b1_i, b1_slot)
        for k in range(2 + ScoreScaler.latency + SoftmaxExp.latency):
            nxt = Signal(len(b_tag), name=f"b_tag{k + 2}")
            m.d.sync += nxt.eq(b_tag)
            b_tag = nxt
        b6_v, b6_last = b_tag[0], b_tag[1]
        b6_i = b_tag[2:2 + len(b1_i)]
        b6_slot = b_tag[2 + len(b1_i):]
        b_sum = Signal(SUM_WIDTH)
        b_sum_next = Signal(SUM_WIDTH)
        m.d.comb += b_sum_next.eq(Mux(b6_i == 0, 0, b_sum) + exp.e)
        m.d.comb += [emem.w_addr.eq(Cat(b6_i, b6_slot) if WP > 1 else b6_slot),
                     emem.w_data.eq(exp.e), emem.w_en.eq(b6_v)]
        with m.If(b6_v):
            m.d.sync += b_sum.eq(b_sum_next)
        # B7: sum of the row into the divider.
        m.submodules.recip = recip = Reciprocal(tag_width=1 + len(b6_slot))
        div_total = Signal(SUM_WIDTH)
        div_tag = Signal(1 + len(b6_slot))
        m.d.sync += [div_total.eq(b_sum_next), div_tag.eq(Cat(b6_v & b6_last, b6_slot))]
        m.d.comb += [recip.total.eq(Mux(div_tag[0], div_total, 1 << SOFTMAX_EXP_BITS)),
                     recip.tag.eq(div_tag)]
        with m.If(recip.o_tag[0]):
            m.d.sync += [r_table[recip.o_tag[1:]].eq(recip.r), r_done.eq(r_done + 1)]

        # -- stage D: p = e * r, acc += p * v (lanes per cycle), requant ---------------------------
        d_busy = Signal()
        d_i = Signal(range(W))
        d_c = Signal(range(CH))
        d_n = Signal(range(W + 1))
        d_slot = Signal(range(NR))
        d_addr = Signal(range(NS * CH))
        d_r = Signal(RECIP_WIDTH)
        d_rem = Signal(range(W * CH))
        d_last = Signal()
        d_ok, d_took = Signal(), Signal()
        d_gap = Signal(range(self._out_depth + 1))      # d_row - popped
        m.d.sync += d_ok.eq((d_row < r_done) & (d_gap < self._out_depth))
        d_take = running & (~d_busy | d_last) & d_ok & ~d_took
        m.d.sync += d_took.eq(d_take)
        with m.If(d_busy):
            m.d.sync += [d_c.eq(Mux(d_c == CH - 1, 0, d_c + 1)),
                         d_i.eq(Mux(d_c == CH - 1, d_i + 1, d_i)),
                         d_rem.eq(d_rem - 1),
                         d_addr.eq(wrap_inc(d_addr, NS * CH))]
            with m.If(d_last):
                m.d.sync += [d_busy.eq(0), d_done.eq(d_done + 1),
                             kv_lim.eq(kv_lim + (d_done >= behind))]
        with m.If(d_take):
            slot = d_row[:NR.bit_length() - 1]
            m.d.sync += [d_busy.eq(1), d_i.eq(0), d_c.eq(0), d_n.eq(meta_n[slot]),
                         d_rem.eq(meta_drem[slot]),
                         d_slot.eq(slot), d_addr.eq(meta_lo[slot] * CH), d_r.eq(r_table[slot]),
                         d_row.eq(d_row + 1)]
        with m.If(cfg_take):
            m.d.sync += d_busy.eq(0)
        m.d.comb += [emem.r_addr.eq(Cat(d_i, d_slot) if WP > 1 else d_slot),
                     vmem.r_addr.eq(d_addr)]
        # D1: e and the V chunk in the block RAMs' first read rank; D2: in their output
        # registers; then Normalizer, products (DSP), accumulate, requant.
        d1_r, d2_r = Signal(RECIP_WIDTH), Signal(RECIP_WIDTH)
        d2_e = Signal(EXP_WIDTH)
        m.d.sync += [d1_r.eq(d_r), d2_r.eq(d1_r)]
        m.d.comb += d2_e.eq(emem.r_data)              # e: the block RAM's output register
        m.submodules.norm = norm = Normalizer(**dsp)
        m.d.comb += [norm.e.eq(d2_e), norm.r.eq(d2_r)]
        d_tag = Cat(d_busy, d_c, d_i == 0, d_i == d_n - 1)
        tags = [d_tag]
        for k in range(2 + Normalizer.latency + MULT_LATENCY):
            nxt = Signal(len(d_tag), name=f"d_tag{k + 1}")
            m.d.sync += nxt.eq(tags[-1])
            tags.append(nxt)
        v_pipe = [vmem.r_data]                        # D2: the block RAM's output register
        for k in range(Normalizer.latency):
            nxt = Signal(8 * L, name=f"d_v{k + 3}")
            m.d.sync += nxt.eq(v_pipe[-1])
            v_pipe.append(nxt)
        # v_pipe[-1] lines up with norm.p; the products register beside tags[-1].
        d4_p = [dsp_product(m, platform, norm.p, v_pipe[-1][8 * l:8 * l + 8].as_signed(),
                            name=f"pv_mul{l}", **dsp) for l in range(L)]
        t4 = tags[-1]
        d4_v, d4_c = t4[0], t4[1:1 + len(d_c)]
        d4_first, d4_lastk = t4[1 + len(d_c)], t4[2 + len(d_c)]
        acc = Array(Array(Signal(signed(AW), name=f"acc{c}_{l}") for l in range(L))
                    for c in range(CH))
        fin = [Signal(signed(AW), name=f"fin{l}") for l in range(L)]
        fin_v = Signal()
        fin_c = Signal(range(CH))
        m.d.sync += [fin_v.eq(d4_v & d4_lastk), fin_c.eq(d4_c)]
        for l in range(L):
            new = Signal(signed(AW), name=f"acc_new{l}")
            m.d.comb += new.eq(Mux(d4_first, 0, acc[d4_c][l]) + d4_p[l])
            with m.If(d4_v):
                m.d.sync += acc[d4_c][l].eq(new)
            m.d.sync += fin[l].eq(new)
        # D5 ..: requant of the finished chunk (the GEMM requantizer's lane, no bias); then output
        # row assembly.
        rq_y = []
        for l in range(L):
            rq = RequantLane(**dsp)
            m.submodules[f"requant{l}"] = rq
            m.d.comb += [rq.s.eq(fin[l]), rq.mult.eq(o_mult), rq.shift.eq(o_shift), rq.en.eq(1)]
            rq_y.append(rq.y)
        o_tag = Cat(fin_v, fin_c)
        for k in range(RequantLane.latency):
            nxt = Signal(len(o_tag), name=f"o_tag{k + 1}")
            m.d.sync += nxt.eq(o_tag)
            o_tag = nxt
        o_v, o_c = o_tag[0], o_tag[1:]
        row_buf = Array(Signal(8 * L, name=f"row_buf{c}") for c in range(CH))
        y_chunk = Cat(*rq_y)
        with m.If(o_v):
            m.d.sync += row_buf[o_c].eq(y_chunk)
        m.submodules.ofifo = ofifo = SyncFIFOBuffered(width=8 * d + 1,
                                                      depth=self._out_depth)
        row_bits = Cat(*(row_buf[c] for c in range(CH - 1)), y_chunk)
        m.d.comb += [ofifo.w_data.eq(Cat(row_bits, out_cnt == seq_last)),
                     ofifo.w_en.eq(o_v & (o_c == CH - 1))]
        with m.If(o_v & (o_c == CH - 1)):
            m.d.sync += out_cnt.eq(out_cnt + 1)
        m.d.comb += [self.o_stream.payload.eq(ofifo.r_data), self.o_stream.valid.eq(ofifo.r_rdy),
                     ofifo.r_en.eq(self.o_stream.ready)]
        pop = self.o_stream.valid & self.o_stream.ready
        with m.If(pop):
            m.d.sync += popped.eq(popped + 1)
        a_start, d_fin = self.i_q.valid & a_take, d_last
        with m.If(cfg_take):
            m.d.sync += [a_gap.eq(0), d_gap.eq(0)]
        with m.Else():
            with m.If(a_start & ~d_fin):
                m.d.sync += a_gap.eq(a_gap + 1)
            with m.Elif(d_fin & ~a_start):
                m.d.sync += a_gap.eq(a_gap - 1)
            with m.If(d_take & ~pop):
                m.d.sync += d_gap.eq(d_gap + 1)
            with m.Elif(pop & ~d_take):
                m.d.sync += d_gap.eq(d_gap - 1)
        # "Last issue" flags as registers (the zero compare of a counter stays off the start
        # paths): set for the cycle whose counter reaches 0, from the start or the count down.
        def last_flag(flag, start, start_last, busy, next_is_last):
            m.d.sync += flag.eq(Mux(start, start_last, busy & ~flag & next_is_last))

        last_flag(kv_last, self.i_kv.valid & kv_take, CH == 1, kv_busy, kv_c == CH - 2)
        last_flag(a_last, self.i_q.valid & a_take, ((a_hi - a_lo) * CH) == 1, a_busy,
                  a_rem == 1)
        last_flag(b_last, b_take, meta_brem[b_row[:NR.bit_length() - 1]] == 0, b_busy,
                  b_rem == 1)
        last_flag(d_last, d_take, meta_drem[d_row[:NR.bit_length() - 1]] == 0, d_busy,
                  d_rem == 1)
        return m
