# SPDX-License-Identifier: Apache-2.0
"""``GemmCore``: the board-level GEMM core -- ``GemmPipeline`` plus its block-RAM operand buffers.

A host (the controller, or a board harness) fills the operand buffers through a simple write
port, then issues ``start`` with the reduction length ``k_len``; the sequencer streams the
buffers into :class:`hw.gemm.GemmPipeline` and the int8 result rows come out of ``o_stream``.

Buffers (double-buffered: two banks, selected by ``wr_bank`` for writes, ``bank`` for a tile):

* ``ACT`` -- a ``amaranth.lib.memory.Memory``; word ``k`` = column ``k`` of the A tile,
  ``A[r, k]`` (int8) at bits ``8*r``.
* ``WGT`` -- a ``Memory``; word ``k`` = row ``k`` of the W tile, ``W[k, c]`` (int8) at ``8*c``.
* ``QUANT`` -- a ``Memory`` of one word per bank with a :data:`QUANT_LAYOUT` lane per output
  column ``c = wr_addr`` (written one lane at a time): bias (int32) at bit 0 of ``wr_data``,
  mult (u15) at 32, shift (u6) at 47.

The A buffer is ``2*k_depth`` x ``rows*8`` bits and the W buffer ``2*k_depth`` x ``cols*8``
bits; both map to block RAM (ECP5 ``DP16KD``, iCE40 ``SB_RAM40_4K``), and so does the quant
buffer (2 x ``cols*53`` bits, kept out of flip-flops with ``ram_style = "block"``).

The result is ``sw.ref.gemm_requant(A[:, :k_len], W[:k_len, :], bias, mult, shift)``: an
``(rows, cols)`` int8 tile, one row per ``o_stream`` transfer, ``last`` on the final row
(numerics: :func:`sw.quant.requantize`, ``Round.HALF_UP``).
"""

from __future__ import annotations

import operator

from amaranth import *
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["GemmCore", "QUANT_LAYOUT"]

#: One column's requantization parameters as written through the write port (53 bits).
QUANT_LAYOUT = data.StructLayout({"bias": signed(32), "mult": unsigned(15), "shift": unsigned(6)})


class GemmCore(wiring.Component):
    """GEMM pipeline with double-buffered block-RAM operand buffers and a tile sequencer.

    Parameters
    ----------
    rows, cols : int
        Array geometry (output tile is ``rows`` x ``cols``), 1..32 each.
    k_depth : int
        Largest reduction length of one tile (depth of one buffer bank), a power of two >= 2.
    use_dsp : bool
        Passed to :class:`hw.gemm.GemmPipeline` (hard multipliers where the platform has them).
    pipeline : wiring.Component, optional
        A pipeline to use instead of ``GemmPipeline(rows, cols, use_dsp=use_dsp)``; it must
        have the ``GemmPipeline`` ports (``i_stream``, ``i_quant``, ``o_stream``) for ``rows``
        x ``cols``.

    Members
    -------
    wr_en : In(1)
        Write strobe: ``wr_data`` goes into buffer ``wr_sel``, bank ``wr_bank``, at ``wr_addr``.
    wr_sel : In(GemmCore.Buffer)
        ``ACT``, ``WGT`` or ``QUANT`` (see the module docstring for the word packing).
    wr_bank : In(1)
        Buffer bank written.
    wr_addr : In(range(k_depth))
        Reduction index ``k`` (``ACT``/``WGT``) or output column ``c`` (``QUANT``).
    wr_data : In(wr_data_width)
        Packed int8 lanes (``ACT``/``WGT``) or a :data:`QUANT_LAYOUT` word (``QUANT``).
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
        Cycles this core adds in front of the pipeline: 1 (start register) + 1 (block-RAM read)
        + 1 (fabric register after the block RAM): the first operand column reaches the
        pipeline 3 cycles after ``start``, the quant parameters 3 cycles after it. The
        pipeline's own latency is ``pipeline.latency``.
    """

    class Buffer(enum.Enum, shape=2):
        ACT = 0
        WGT = 1
        QUANT = 2

    def __init__(self, rows: int, cols: int, *, k_depth: int, use_dsp: bool = True,
                 pipeline: wiring.Component | None = None) -> None:
        for name, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
                raise TypeError(f"GemmCore {name} must be an integer in [1, 32], not {value!r}")
        if (isinstance(k_depth, bool) or not isinstance(k_depth, int) or k_depth < 2
                or k_depth & (k_depth - 1)):
            raise ValueError(f"GemmCore k_depth must be a power of two >= 2, not {k_depth!r}")
        if not isinstance(use_dsp, bool):
            raise TypeError(f"GemmCore use_dsp must be a bool, not {use_dsp!r}")
        self._rows = operator.index(rows)
        self._cols = operator.index(cols)
        self._k_depth = k_depth
        self._use_dsp = use_dsp
        if pipeline is None:
            from hw.gemm import GemmPipeline
            pipeline = GemmPipeline(rows, cols, use_dsp=use_dsp)
        for port in ("i_stream", "i_quant", "o_stream"):
            if not hasattr(pipeline, port):
                raise TypeError(f"GemmCore pipeline must have a {port!r} port like "
                                f"hw.gemm.GemmPipeline, not {pipeline!r}")
        self._pipeline = pipeline
        self._wr_data_width = max(8 * rows, 8 * cols, QUANT_LAYOUT.size)
        super().__init__({
            "wr_en": In(1),
            "wr_sel": In(GemmCore.Buffer),
            "wr_bank": In(1),
            "wr_addr": In(range(k_depth)),
            "wr_data": In(self._wr_data_width),
            "start": In(1),
            "bank": In(1),
            "k_len": In(range(k_depth + 1)),
            "busy": Out(1),
            "done": Out(1),
            "o_stream": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(signed(8), cols), "last": 1}))),
        })

    @classmethod
    def from_params(cls, params) -> GemmCore:
        """The core for an :class:`hw.params.AccelParams` (``rows``, ``cols``, ``k_depth``,
        ``dsp_multipliers``)."""
        return cls(params.rows, params.cols, k_depth=params.k_depth,
                   use_dsp=params.dsp_multipliers)

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def k_depth(self) -> int:
        return self._k_depth

    @property
    def wr_data_width(self) -> int:
        return self._wr_data_width

    @property
    def pipeline(self) -> wiring.Component:
        return self._pipeline

    @property
    def latency(self) -> int:
        return 3

    def elaborate(self, platform):
        m = Module()
        rows, cols, depth = self._rows, self._cols, self._k_depth
        m.submodules.pipeline = pipe = self._pipeline

        # -- buffers: A and W in block RAM, two banks each (bank = address MSB) ------------------
        # `no_rw_check` (Yosys): a read of the address being written in the same cycle may
        # return anything -- the host never writes a bank while `busy` -- so Yosys need not add
        # bypass logic for Amaranth's read-old-data rule behind the block RAM's slow output.
        mem_attrs = {"no_rw_check": 1}
        m.submodules.act_buf = act_buf = Memory(shape=unsigned(8 * rows), depth=2 * depth,
                                                init=[], attrs=mem_attrs)
        m.submodules.wgt_buf = wgt_buf = Memory(shape=unsigned(8 * cols), depth=2 * depth,
                                                init=[], attrs=mem_attrs)
        act_wr = act_buf.write_port()
        wgt_wr = wgt_buf.write_port()
        act_rd = act_buf.read_port()
        wgt_rd = wgt_buf.read_port()
        m.d.comb += [
            act_wr.addr.eq(Cat(self.wr_addr, self.wr_bank)),
            act_wr.data.eq(self.wr_data[:8 * rows]),
            act_wr.en.eq(self.wr_en & (self.wr_sel == GemmCore.Buffer.ACT)),
            wgt_wr.addr.eq(Cat(self.wr_addr, self.wr_bank)),
            wgt_wr.data.eq(self.wr_data[:8 * cols]),
            wgt_wr.en.eq(self.wr_en & (self.wr_sel == GemmCore.Buffer.WGT)),
        ]

        # Quant parameters: one QUANT_LAYOUT word per (bank, column) in block RAM, read into
        # the i_quant register one column per cycle when a tile starts. (One 2 x cols*53-bit
        # word per bank made Yosys fold both banks into one block-RAM row and put a bank mux
        # after the 5.8 ns DP16KD output, which missed 125 MHz.)
        qw = QUANT_LAYOUT.size
        col_bits = max(0, (cols - 1).bit_length())
        m.submodules.quant_buf = quant_buf = Memory(
            shape=unsigned(qw), depth=2 << col_bits, init=[],
            attrs={"ram_style": "block", **mem_attrs})
        quant_wr = quant_buf.write_port()
        quant_rd = quant_buf.read_port()
        m.d.comb += [
            quant_wr.addr.eq(Cat(self.wr_addr[:col_bits], self.wr_bank)),
            quant_wr.data.eq(self.wr_data[:qw]),
            # No column for wr_addr >= cols.
            quant_wr.en.eq(self.wr_en & (self.wr_sel == GemmCore.Buffer.QUANT)
                           & (self.wr_addr < cols)),
        ]

        # -- sequencer ----------------------------------------------------------------------------
        # Every block-RAM output is registered in the fabric before it reaches the pipeline: an
        # ECP5 DP16KD without its output register has a 5.8 ns clock-to-out (nextpnr, speed 6),
        # which left no time for the requantizer's bias add behind it at 125 MHz.
        run = Signal()                       # operand columns left to read
        k = Signal(range(depth))             # next column to read
        k_last = Signal(range(depth))        # k_len - 1 of the running tile
        bank = Signal()                      # bank of the running tile
        q_read = Signal()                    # quant columns being read
        q_col = Signal(range(cols))          # next quant column to read
        q_data = Signal()                    # the quant read port holds column q_data_col
        q_data_col = Signal(range(cols))
        q_pending = Signal()                 # i_quant offered, not yet taken
        q_raw = Signal(QUANT_LAYOUT, reset_less=True)   # block-RAM output, registered
        q_raw_valid = Signal()               # q_raw holds column q_raw_col
        q_raw_col = Signal(range(cols))

        m.d.comb += self.busy.eq(run | q_read | q_data | q_raw_valid | q_pending)
        k_ok = (self.k_len >= 1) & (self.k_len <= depth)
        accept = Signal()
        m.d.comb += accept.eq(self.start & ~self.busy & k_ok)
        with m.If(accept):
            m.d.sync += [
                run.eq(1),
                q_read.eq(1),
                q_col.eq(0),
                k.eq(0),
                k_last.eq(self.k_len - 1),
                bank.eq(self.bank),
            ]

        # i_quant: from the cycle after `accept`, the bank's quant words are read one column per
        # cycle (address from registers only: an address straight from the start command
        # missed 125 MHz on the ULX3S, harness register -> k_len check -> address = 10.4 ns),
        # each copied into its lane of a fabric register (a clock enable per lane, no logic on
        # the data path), then offered from that register until the pipeline takes it.
        # Data registers are reset_less: a synchronous reset over an enable costs an ECP5
        # TRELLIS_FF a LUT in front of D, on the path from the block-RAM output.
        # The block-RAM output first lands in `q_raw`, a plain register (no enable, no reset):
        # the DP16KD's 5.6 ns clock-to-out left no room for the per-lane enable logic that
        # Yosys put in front of `quant_q` (104 MHz on the ULX3S, the worst path of the build).
        quant_q = [Signal(QUANT_LAYOUT, name=f"quant_q{c}", reset_less=True) for c in range(cols)]
        m.d.comb += [
            quant_rd.addr.eq(Cat(q_col, bank)),
            pipe.i_quant.valid.eq(q_pending),
        ]
        m.d.sync += [q_data.eq(q_read), q_data_col.eq(q_col)]
        m.d.sync += [q_raw.eq(quant_rd.data), q_raw_valid.eq(q_data), q_raw_col.eq(q_data_col)]
        with m.If(q_read):
            m.d.sync += q_col.eq(q_col + 1)
            with m.If(q_col == cols - 1):
                m.d.sync += q_read.eq(0)
        with m.If(q_raw_valid):
            for c in range(cols):
                with m.If(q_raw_col == c):
                    m.d.sync += quant_q[c].eq(q_raw)
            with m.If(q_raw_col == cols - 1):
                m.d.sync += q_pending.eq(1)
        with m.If(pipe.i_quant.valid & pipe.i_quant.ready):
            m.d.sync += q_pending.eq(0)
        for c in range(cols):
            m.d.comb += [
                pipe.i_quant.payload.bias[c].eq(quant_q[c].bias),
                pipe.i_quant.payload.mult[c].eq(quant_q[c].mult),
                pipe.i_quant.payload.shift[c].eq(quant_q[c].shift),
            ]

        # Operand stream, two stages with backpressure: R = the read ports' own data registers
        # (block RAM), O = a fabric register that drives i_stream. O loads when empty or taken;
        # R advances when empty or unloaded into O, so a stall holds address and data.
        r_valid = Signal()
        r_last = Signal()
        o_valid = Signal()
        o_last = Signal()
        o_act = Signal(8 * rows, reset_less=True)    # (reset_less: see quant_q)
        o_wgt = Signal(8 * cols, reset_less=True)
        load_o = Signal()
        advance = Signal()
        m.d.comb += [
            load_o.eq(~o_valid | pipe.i_stream.ready),
            advance.eq(~r_valid | load_o),
            act_rd.addr.eq(Cat(k, bank)),
            wgt_rd.addr.eq(Cat(k, bank)),
            act_rd.en.eq(advance),
            wgt_rd.en.eq(advance),
            pipe.i_stream.valid.eq(o_valid),
            pipe.i_stream.payload.act.eq(o_act),
            pipe.i_stream.payload.wgt.eq(o_wgt),
            pipe.i_stream.payload.last.eq(o_last),
        ]
        with m.If(advance):
            m.d.sync += [r_valid.eq(run), r_last.eq(k == k_last)]
            with m.If(run):
                m.d.sync += k.eq(k + 1)
                with m.If(k == k_last):
                    m.d.sync += run.eq(0)
        with m.If(load_o):
            m.d.sync += [o_valid.eq(r_valid), o_last.eq(r_last),
                         o_act.eq(act_rd.data), o_wgt.eq(wgt_rd.data)]

        # -- results ------------------------------------------------------------------------------
        wiring.connect(m, wiring.flipped(self.o_stream), pipe.o_stream)
        m.d.comb += self.done.eq(self.o_stream.valid & self.o_stream.ready
                                 & self.o_stream.payload.last)
        return m
