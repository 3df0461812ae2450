# SPDX-License-Identifier: Apache-2.0
"""``GemmCore``: the board-level GEMM core -- ``GemmPipeline`` plus its block-RAM operand buffers.

A host (the controller, or a board harness) fills the operand buffers through their write
ports -- one per buffer, so the A column words, the W rows and the quant words of a tile can all
be written in the same cycle -- then issues ``start`` with the reduction length ``k_len``; the
sequencer streams the buffers into :class:`hw.gemm.GemmPipeline` and the int8 result rows come
out of ``o_stream``.

Buffers (double-buffered: two banks, selected by ``wr_bank[b]`` for writes, ``bank`` for a
tile; ``b`` the :class:`GemmCore.Buffer` value):

* ``ACT`` -- word ``k`` = column ``k`` of the A tile, ``A[r, k]`` (int8) at bits ``8*r``.
* ``WGT`` -- word ``k`` = row ``k`` of the W tile, ``W[k, c]`` (int8) at ``8*c``.
* ``QUANT`` -- one word per (bank, output column ``c = wr_addr[2]``), written one column at a
  time: a :data:`QUANT_LAYOUT` word, bias (int32) at bit 0 of ``wr_data[2]``, mult (u15) at
  32, shift (u6) at 47.

Each buffer is a :func:`hw.bram.make_block_ram` RAM (``2*k_depth`` x ``rows*8`` bits for A,
``2*k_depth`` x ``cols*8`` for W, ``2*cols`` x 53 for the quant words) with a registered read:
on ECP5 ``DP16KD`` instances with their output register on, elsewhere an inferred block RAM
(iCE40 ``SB_RAM40_4K``) followed by a fabric register.

The result is ``sw.ref.gemm_requant(A[:, :k_len], W[:k_len, :], bias, mult, shift)``: an
``(rows, cols)`` int8 tile, one row per ``o_stream`` transfer, ``last`` on the final row
(numerics: :func:`sw.quant.requantize`, ``Round.HALF_UP``).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bram import make_block_ram
from hw.checks import check_bool, check_int, check_pow2
from hw.numerics import ACC_WIDTH, ACT_WIDTH, MULT_BITS, SHIFT_BITS, WGT_WIDTH
from hw.params import MAX_DIM
from hw.unit import Setting, Unit

__all__ = ["GemmCore", "QUANT_LAYOUT"]

#: One column's requantization parameters as written through the write port (53 bits).
QUANT_LAYOUT = data.StructLayout({"bias": signed(ACC_WIDTH), "mult": unsigned(MULT_BITS),
                                  "shift": unsigned(SHIFT_BITS)})


class GemmCore(Unit):
    """GEMM pipeline with double-buffered block-RAM operand buffers and a tile sequencer.

    Parameters
    ----------
    rows, cols : int
        Array geometry (output tile is ``rows`` x ``cols``), 1..32 each.
    k_depth : int
        Largest reduction length of one tile (depth of one buffer bank), a power of two >= 2.
    use_dsp : bool
        Passed to :class:`hw.gemm.GemmPipeline` (hard multipliers where the platform has them).
    lut_columns : int
        Passed to :class:`hw.gemm.GemmPipeline`: array columns with fabric multipliers.
    pipeline : wiring.Component, optional
        A pipeline to use instead of ``GemmPipeline(rows, cols, use_dsp=use_dsp)``; it must
        have the ``GemmPipeline`` ports (``i_stream``, ``i_quant``, ``o_stream``) for ``rows``
        x ``cols``.

    Members
    -------
    wr_en : In(1).array(3)
        Write strobes, one per buffer (index: the :class:`GemmCore.Buffer` value ``ACT`` 0,
        ``WGT`` 1, ``QUANT`` 2): ``wr_data[b]`` goes into buffer ``b``, bank ``wr_bank[b]``, at
        ``wr_addr[b]``. The three ports are independent (each buffer is its own RAM).
    wr_bank : In(1).array(3)
        Buffer bank written.
    wr_addr : In(range(k_depth)).array(3)
        Reduction index ``k`` (``ACT``/``WGT``) or output column ``c`` (``QUANT``).
    wr_data : In(wr_data_width).array(3)
        Packed int8 lanes (``ACT``/``WGT``) or a :data:`QUANT_LAYOUT` word (``QUANT``); the low
        ``rows * 8``, ``cols * 8`` and 53 bits are used.
    start : In(1)
        Start a tile over bank ``bank`` with reduction length ``k_len``. Taken only while ``busy``
        is low and ``1 <= k_len <= k_depth``; ignored otherwise.
    bank : In(1)
        Bank read by the tile that ``start`` launches.
    k_len : In(range(k_depth + 1))
        Reduction length ``K`` of the tile.
    busy : Out(1)
        The sequencer is reading bank ``bank`` of a tile (operands not yet read, or quant
        parameters not yet taken by the pipeline). Do not write that bank while ``busy``; the
        other bank is free. Result rows of a tile may still be draining after ``busy`` falls.
    done : Out(1)
        One-cycle pulse when the last result row of a tile is transferred on ``o_stream``.
    o_stream : Out(stream.Signature(...{"data": ArrayLayout(signed(8), cols), "last": 1}))
        Result rows, int8 (Q-format of the requantized output), ``rows`` transfers per tile.

    Attributes
    ----------
    latency : int
        Cycles this core adds in front of the pipeline: 2 (the start command registered, then
        the read addresses) + 2 (the block RAMs' registered read,
        :attr:`hw.bram.BlockRAM.latency`): the first operand column reaches the pipeline 4
        cycles after ``start``, the quant parameters (read one column per cycle) 4 + ``cols``
        cycles after it (``tests/test_hw_gemm_core.py`` measures both). The pipeline's own
        latency is ``pipeline.latency``.
    """

    class Buffer(enum.Enum, shape=2):
        ACT = 0
        WGT = 1
        QUANT = 2

    params_fields = ("rows", "cols", "k_depth", "dsp_multipliers", "lut_columns")
    wr_data_width = Setting("Width of ``wr_data``.")
    pipeline = Setting("The GEMM pipeline inside.")

    def __init__(self, rows: int, cols: int, *, k_depth: int, use_dsp: bool = True,
                 lut_columns: int = 0, pipeline: wiring.Component | None = None) -> None:
        self._rows = check_int("rows", rows, 1, MAX_DIM)
        self._cols = check_int("cols", cols, 1, MAX_DIM)
        self._k_depth = check_pow2("k_depth", k_depth, 2)
        self._use_dsp = check_bool("use_dsp", use_dsp)
        self._lut_columns = check_int("lut_columns", lut_columns, 0, cols)
        if pipeline is None:
            from hw.gemm import GemmPipeline
            pipeline = GemmPipeline(rows, cols, use_dsp=use_dsp, lut_columns=lut_columns,
                                    k_depth=k_depth)
        for port in ("i_stream", "i_quant", "o_stream"):
            if not hasattr(pipeline, port):
                raise TypeError(f"GemmCore pipeline must have a {port!r} port like "
                                f"hw.gemm.GemmPipeline, not {pipeline!r}")
        self._pipeline = pipeline
        self._wr_data_width = max(ACT_WIDTH * rows, WGT_WIDTH * cols, QUANT_LAYOUT.size)
        super().__init__({
            "wr_en": In(1).array(3),
            "wr_bank": In(1).array(3),
            "wr_addr": In(range(k_depth)).array(3),
            "wr_data": In(self._wr_data_width).array(3),
            "start": In(1),
            "bank": In(1),
            "k_len": In(range(k_depth + 1)),
            "busy": Out(1),
            "done": Out(1),
            "o_stream": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(ACT_WIDTH), cols), "last": 1}))),
        })

    @property
    def latency(self) -> int:
        return 4

    def elaborate(self, platform):
        m = Module()
        m.submodules.pipeline = pipe = self._pipeline
        act_buf, wgt_buf, quant_buf = self._elaborate_buffers(m, platform)
        seq = self._elaborate_sequencer(m)
        self._elaborate_quant_reader(m, pipe, quant_buf, seq)
        self._elaborate_operand_reader(m, pipe, act_buf, wgt_buf, seq)

        # -- results ------------------------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.o_stream), pipe.o_stream)
        m.d.comb += self.done.eq(self.o_stream.valid & self.o_stream.ready
                                 & self.o_stream.payload.last)
        return m

    def _elaborate_buffers(self, m, platform):
        """A, W and quant buffers in block RAM, two banks each (bank = address MSB), and their
        write ports."""
        rows, cols, depth = self._rows, self._cols, self._k_depth
        # Every buffer reads through two register ranks (hw.bram: on ECP5 the DP16KD's own output
        # register; Yosys maps an inferred memory without it, and its 5.8 ns clock-to-out then
        # left too little of a 125 MHz cycle for the route to the array).
        qw = QUANT_LAYOUT.size
        col_bits = max(0, (cols - 1).bit_length())
        m.submodules.act_buf = act_buf = make_block_ram(platform, width=ACT_WIDTH * rows,
                                                        depth=2 * depth)
        m.submodules.wgt_buf = wgt_buf = make_block_ram(platform, width=WGT_WIDTH * cols,
                                                        depth=2 * depth)
        # Quant parameters: one QUANT_LAYOUT word per (bank, column). (One 2 x cols*53-bit word
        # per bank made Yosys fold both banks into one block-RAM row and put a bank mux after the
        # block RAM's output, which missed 125 MHz.)
        m.submodules.quant_buf = quant_buf = make_block_ram(platform, width=qw,
                                                            depth=2 << col_bits)
        a, w, q = (b.value for b in GemmCore.Buffer)
        m.d.comb += [
            act_buf.w_addr.eq(Cat(self.wr_addr[a], self.wr_bank[a])),
            act_buf.w_data.eq(self.wr_data[a][:ACT_WIDTH * rows]),
            act_buf.w_en.eq(self.wr_en[a]),
            wgt_buf.w_addr.eq(Cat(self.wr_addr[w], self.wr_bank[w])),
            wgt_buf.w_data.eq(self.wr_data[w][:WGT_WIDTH * cols]),
            wgt_buf.w_en.eq(self.wr_en[w]),
            quant_buf.w_addr.eq(Cat(self.wr_addr[q][:col_bits], self.wr_bank[q])),
            quant_buf.w_data.eq(self.wr_data[q][:qw]),
            # No column for wr_addr >= cols.
            quant_buf.w_en.eq(self.wr_en[q] & (self.wr_addr[q] < cols)),
        ]
        return act_buf, wgt_buf, quant_buf

    def _elaborate_sequencer(self, m):
        """The tile sequencer's state, ``busy`` and the registered start."""
        cols, depth = self._cols, self._k_depth
        run = Signal()                       # operand columns left to read
        k = Signal(range(depth))             # next column to read
        k_last = Signal(range(depth))        # k_len - 1 of the running tile
        bank = Signal()                      # bank of the running tile
        q_read = Signal()                    # quant columns being read
        q_col = Signal(range(cols))          # next quant column to read
        q_data = Signal()                    # the quant RAM's first rank holds column q_data_col
        q_data_col = Signal(range(cols))
        q_out_valid = Signal()               # its output register holds column q_out_col
        q_out_col = Signal(range(cols))
        q_pending = Signal()                 # i_quant offered, not yet taken

        # A start is accepted into a register first, with the command sampled beside it: the
        # busy / k_len checks in front of the sequencer's ~30 load enables were the ULX3S build's
        # critical path (q_pending -> busy -> accept -> q_col enable, 7.6-8.1 ns at 125 MHz).
        accept = Signal()
        accepted = Signal()                  # the tile starts (a start accepted last cycle)
        start_k_last = Signal(range(depth))
        start_bank = Signal()
        # busy is a register: the OR of the next values of the flags it covers (each flag is
        # loaded from its `*_next`, so the two cannot disagree). It leaves the core as a
        # flip-flop, not as an OR gate in front of the controller's state logic across the die.
        nxt = SimpleNamespace(run=Signal(name="run_next"), q_read=Signal(name="q_read_next"),
                              q_pending=Signal(name="q_pending_next"))
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        m.d.sync += busy.eq(accept | nxt.run | nxt.q_read | q_read | q_data | nxt.q_pending)
        k_ok = (self.k_len >= 1) & (self.k_len <= depth)
        m.d.comb += accept.eq(self.start & ~busy & k_ok)
        m.d.sync += [accepted.eq(accept), start_k_last.eq(self.k_len - 1),
                     start_bank.eq(self.bank), run.eq(nxt.run), q_read.eq(nxt.q_read),
                     q_pending.eq(nxt.q_pending)]
        with m.If(accepted):
            m.d.sync += [
                q_col.eq(0),
                k.eq(0),
                k_last.eq(start_k_last),
                bank.eq(start_bank),
            ]
        return SimpleNamespace(run=run, k=k, k_last=k_last, bank=bank, q_read=q_read,
                               q_col=q_col, q_data=q_data, q_data_col=q_data_col,
                               q_out_valid=q_out_valid, q_out_col=q_out_col,
                               q_pending=q_pending, accepted=accepted, nxt=nxt)

    def _elaborate_quant_reader(self, m, pipe, quant_buf, seq):
        """``i_quant`` of the pipeline from the quant buffer, one column per cycle."""
        cols = self._cols
        q_read, q_col, q_data, q_data_col = seq.q_read, seq.q_col, seq.q_data, seq.q_data_col
        q_out_valid, q_out_col, q_pending = seq.q_out_valid, seq.q_out_col, seq.q_pending
        bank = seq.bank
        # i_quant: from the cycle after `accepted`, the bank's quant words are read one column per
        # cycle (address from registers only: an address straight from the start command
        # missed 125 MHz on the ULX3S, harness register -> k_len check -> address = 10.4 ns),
        # each copied from the RAM's output register into its lane of a fabric register (a
        # clock enable per lane, no logic on the data path), then offered from that register
        # until the pipeline takes it. Data registers are reset_less: a synchronous reset over an
        # enable costs an ECP5 TRELLIS_FF a LUT in front of D.
        quant_q = [Signal(QUANT_LAYOUT, name=f"quant_q{c}", reset_less=True) for c in range(cols)]
        q_word = QUANT_LAYOUT(quant_buf.r_data)
        m.d.comb += [
            quant_buf.r_addr.eq(Cat(q_col, bank)),
            quant_buf.r_en.eq(1),
            quant_buf.r_oce.eq(1),
            pipe.i_quant.valid.eq(q_pending),
        ]
        m.d.sync += [q_data.eq(q_read), q_data_col.eq(q_col),
                     q_out_valid.eq(q_data), q_out_col.eq(q_data_col)]
        # q_read: set by a start (accepted, while it is low), cleared after the last column.
        nxt = seq.nxt
        m.d.comb += nxt.q_read.eq(Mux(q_read, q_col != cols - 1, seq.accepted))
        with m.If(q_read):
            m.d.sync += q_col.eq(q_col + 1)
        with m.If(q_out_valid):
            for c in range(cols):
                with m.If(q_out_col == c):
                    m.d.sync += quant_q[c].eq(q_word)
        # q_pending: set as the last column lands, cleared when the pipeline takes the words.
        m.d.comb += nxt.q_pending.eq(
            Mux(q_pending, ~pipe.i_quant.ready, q_out_valid & (q_out_col == cols - 1)))
        for c in range(cols):
            m.d.comb += [
                pipe.i_quant.payload.bias[c].eq(quant_q[c].bias),
                pipe.i_quant.payload.mult[c].eq(quant_q[c].mult),
                pipe.i_quant.payload.shift[c].eq(quant_q[c].shift),
            ]

    def _elaborate_operand_reader(self, m, pipe, act_buf, wgt_buf, seq):
        """``i_stream`` of the pipeline from the A and W buffers, one column per cycle."""
        run, k, k_last, bank = seq.run, seq.k, seq.k_last, seq.bank
        # Operand stream, the RAMs' two read ranks with backpressure: rank 1 (address / array
        # read, `r_en`) and rank 2 (output register, `r_oce`, drives i_stream). Rank 2 loads when
        # empty or taken; rank 1 advances when empty or unloaded into rank 2, so a stall holds
        # both the address and the words in flight.
        r1_valid = Signal()
        r1_last = Signal()
        r2_valid = Signal()
        r2_last = Signal()
        load_r2 = Signal()
        advance = Signal()
        m.d.comb += [
            load_r2.eq(~r2_valid | pipe.i_stream.ready),
            advance.eq(~r1_valid | load_r2),
        ]
        for buf in (act_buf, wgt_buf):
            m.d.comb += [
                buf.r_addr.eq(Cat(k, bank)),
                buf.r_en.eq(advance),
                buf.r_oce.eq(load_r2),
            ]
        m.d.comb += [
            pipe.i_stream.valid.eq(r2_valid),
            pipe.i_stream.payload.act.eq(act_buf.r_data),
            pipe.i_stream.payload.wgt.eq(wgt_buf.r_data),
            pipe.i_stream.payload.last.eq(r2_last),
        ]
        # run: set by a start (accepted, while it is low), cleared as the last column is read.
        m.d.comb += seq.nxt.run.eq(Mux(run, ~(advance & (k == k_last)), seq.accepted))
        with m.If(advance):
            m.d.sync += [r1_valid.eq(run), r1_last.eq(k == k_last)]
            with m.If(run):
                m.d.sync += k.eq(k + 1)
        with m.If(load_r2):
            m.d.sync += [r2_valid.eq(r1_valid), r2_last.eq(r1_last)]
