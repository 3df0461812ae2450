# SPDX-License-Identifier: Apache-2.0
"""``GemmAccPipeline``: :class:`hw.gemm.GemmPipeline` with an int32 output path beside the int8.

The controller's GEMM unit is :class:`hw.gemm_core.GemmCore` built around this pipeline: with
``out32`` low a tile goes through the :class:`hw.requant.Requantizer` to ``o_stream`` exactly as
in ``GemmPipeline`` (``sw.ref.gemm_requant``); with ``out32`` high the array's int32 rows plus
the tile's bias leave on ``o_acc`` instead (``sw.ref.gemm_acc``: the int32 head, no requant).
The bias comes from the tile's ``i_quant`` transfer, which is taken when no earlier int32 tile
still holds its bias; the mult and shift of that transfer are unused.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from hw.bram import unshared_register
from hw.checks import check_int
from hw.gemm import gemm_members
from hw.numerics import ACC_WIDTH
from hw.requant import REQUANT_LATENCY, Requantizer
from hw.skid import SkidBuffer, bit_groups, column_groups
from hw.systolic import SystolicArray, check_geometry, lanes_layout, systolic_latency
from hw.unit import Setting, Unit

__all__ = ["GemmAccPipeline", "acc_layout"]


def acc_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`GemmAccPipeline.o_acc`: one int32 row and ``last``."""
    return lanes_layout(cols, acc=signed(ACC_WIDTH))


class GemmAccPipeline(Unit):
    """int8 GEMM tile pipeline with a selectable int32 output (module docstring).

    Parameters
    ----------
    rows, cols : int
        Array geometry, 1..32 each.
    use_dsp : bool
        DSP multipliers in the array and the requantizer where the platform has them.
    lut_columns : int
        Array columns with fabric multipliers (:class:`~hw.systolic.SystolicArray`).
    requant_lanes : int
        Lanes of the requantizer (:class:`hw.requant.Requantizer` ``lanes``); 0 (default):
        ``cols``.
    k_depth : int or None
        The longest tile the array sums exactly (its accumulators are
        :func:`hw.numerics.accumulator_width` bits wide, sign-extended to int32 at its
        output); ``None``: int32.

    Members
    -------
    i_stream, i_quant, o_stream
        As :class:`hw.gemm.GemmPipeline`.
    out32 : In(1)
        Route the tiles to ``o_acc``; change it only while no tile is in the pipeline and
        no ``i_quant`` transfer is offered, and at least a cycle before the next one is
        (both sides read it a cycle later, each from a register of its own).
    o_acc : Out(stream.Signature(acc_layout(cols)))
        ``acc[c] + bias[c]`` (int32, wraps like the requantizer's bias add), ``rows`` rows per
        tile, ``last`` on the final row, straight from the array's output buffer.

    Attributes
    ----------
    latency : int
        ``array_latency + 1 + requant latency`` for ``o_stream`` (as
        :attr:`hw.gemm.GemmPipeline.latency`, plus the register slice behind the array);
        ``o_acc`` rows leave ``array_latency + 1`` cycles after the tile's last operand.
    """

    params_fields = ("rows", "cols", "k_depth", "dsp_multipliers", "lut_columns",
                     "requant_lanes")
    rows = Setting("Output rows per tile.")
    cols = Setting("Output columns per tile.")
    use_dsp = Setting("DSP multipliers where the platform has them.")

    def __init__(self, rows: int, cols: int, *, use_dsp: bool = True, lut_columns: int = 0,
                 k_depth: int | None = None, requant_lanes: int = 0):
        check_geometry(rows, cols, use_dsp=use_dsp, lut_columns=lut_columns)
        self._rows, self._cols, self._use_dsp = rows, cols, use_dsp
        self._lut_columns = lut_columns
        self._k_depth = None if k_depth is None else check_int("k_depth", k_depth, 1, 1 << 20)
        self._requant_lanes = check_int("requant_lanes", requant_lanes, 0, cols)
        super().__init__({
            **gemm_members(rows, cols),
            "out32": In(1),
            "o_acc": Out(stream.Signature(acc_layout(cols))),
        })

    @property
    def array_latency(self) -> int:
        return systolic_latency(self._rows, self._cols)

    @property
    def latency(self) -> int:
        return self.array_latency + SkidBuffer.latency + REQUANT_LATENCY

    def _requant_rows(self, m, requant, width, groups):
        """A FIFO of a tile's rows (LUT RAM) in front of the requantizer, as ``groups`` FIFOs
        of the row's bit groups (``hw.skid.bit_groups``) that move together: each has its
        levels and write enable of its own, a net within its columns (one FIFO's write enable
        was among the 8x18 top's most congested nets). The first one's flags answer. Returns
        the FIFO's write side (``valid``, ``ready``, ``payload``)."""
        rows = SimpleNamespace(valid=Signal(name="requant_rows_valid"),
                               ready=Signal(name="requant_rows_ready"), payload=Signal(width))
        r_data = []
        for g, (lo, hi) in enumerate(bit_groups(width, groups)):
            fifo = SyncFIFOBuffered(width=hi - lo, depth=self._rows)
            m.submodules["requant_rows" if groups == 1 else f"requant_rows{g}"] = fifo
            m.d.comb += [fifo.w_en.eq(rows.valid), fifo.w_data.eq(rows.payload[lo:hi]),
                         fifo.r_en.eq(requant.i_stream.ready)]
            if g == 0:
                m.d.comb += [rows.ready.eq(fifo.w_rdy), requant.i_stream.valid.eq(fifo.r_rdy)]
            r_data.append(fifo.r_data)
        m.d.comb += requant.i_stream.payload.eq(Cat(*r_data))
        return rows

    def elaborate(self, platform):
        m = Module()
        cols = self._cols
        m.submodules.array = array = SystolicArray(self._rows, cols, use_dsp=self._use_dsp,
                                                   lut_columns=self._lut_columns,
                                                   k_depth=self._k_depth)
        m.submodules.requant = requant = Requantizer(cols, lanes=self._requant_lanes or None,
                                                     use_dsp=self._use_dsp)
        # The array's rows reach the requantizer and the int32 side through a register
        # slice: the array's output buffer pops on the slice's ready (a flip-flop), not on the
        # requantizer's parameter handshake (q_loaded -> its i_stream.ready -> the buffer's
        # push and tail enables and the rows' payload multiplexer, the first group of a
        # routed ulx3s_85f top, 208 endpoints at 11.35 ns). One cycle more per tile.
        groups = column_groups(cols)
        m.submodules.array_rows = rows_out = SkidBuffer(array.o_stream.payload.shape(),
                                                        groups=groups)
        wiring.connect(m, array.o_stream, rows_out.i_stream)
        array_out = rows_out.o_stream
        # With fewer requantizer lanes than columns a row waits there for its phases; a FIFO
        # of a tile's rows in front of it (LUT RAM) lets the array go on meanwhile (the array
        # has one clock enable: a waiting row stops every PE).
        rq_rows = requant.i_stream            # where the rows of an int8 tile go
        if requant.phases > 1:
            rq_rows = self._requant_rows(m, requant, Shape.cast(array_out.payload.shape()).width,
                                         groups)
        m.d.comb += [
            array.i_stream.payload.eq(self.i_stream.payload),
            array.i_stream.valid.eq(self.i_stream.valid),
            self.i_stream.ready.eq(array.i_stream.ready),
            requant.i_quant.payload.eq(self.i_quant.payload),
            self.o_stream.payload.eq(requant.o_stream.payload),
            rq_rows.payload.eq(array_out.payload),
            self.o_stream.valid.eq(requant.o_stream.valid),
            requant.o_stream.ready.eq(self.o_stream.ready),
        ]

        # int32 path: the bias of one tile at a time, released by the tile's last row.
        bias = Signal(data.ArrayLayout(signed(ACC_WIDTH), cols))
        loaded = Signal()
        take_q = Signal()
        take_row = Signal()
        # The rows' side reads out32 from a register of its own, beside the array: a row
        # leaves the array at least K + array latency cycles after its job (and out32) began,
        # and no row is left in it when the next job begins. out32 from the producer went
        # through the ready multiplexer into the enables of the array's output buffer (a group
        # of the placed ulx3s_85f top).
        # (unshared_register: Yosys merged a plain one with the producer's own copy of it.)
        out32_rows = unshared_register(m, self.out32, name="out32_rows", platform=platform)
        # The parameters' side likewise: a tile's i_quant transfer is offered cols + 3 cycles
        # after the core accepts its start at the earliest (GemmCore's quant reader), and
        # out32 stays put from the GEMM's field load to its last tile's drain. out32 from the
        # producer went through the requantizer's i_quant valid, its q_loaded and its row
        # ready into the array's output buffer (the first group of a placed ulx3s_85f top).
        out32_quant = unshared_register(m, self.out32, name="out32_quant", platform=platform)
        m.d.comb += [
            take_q.eq(out32_quant & self.i_quant.valid & ~loaded),
            take_row.eq(out32_rows & array_out.valid & loaded & self.o_acc.ready),
            self.o_acc.valid.eq(out32_rows & array_out.valid & loaded),
            self.o_acc.payload.last.eq(array_out.payload.last),
        ]
        for c in range(cols):
            m.d.comb += self.o_acc.payload.acc[c].eq(array_out.payload.acc[c] + bias[c])
        if groups == 1:
            with m.If(take_q):
                m.d.sync += [bias.eq(self.i_quant.payload.bias), loaded.eq(1)]
            with m.Elif(take_row & array_out.payload.last):
                m.d.sync += loaded.eq(0)
        else:
            # A copy of `loaded` per column group, updated as `loaded` from itself, loads its
            # columns' bias: the enable of every bias bit is a net within its group.
            for k, (lo, hi) in enumerate(bit_groups(cols, groups)):
                copy = loaded if k == 0 else Signal(name=f"loaded{k}")
                with m.If(out32_quant & self.i_quant.valid & ~copy):
                    m.d.sync += [*(bias[c].eq(self.i_quant.payload.bias[c])
                                   for c in range(lo, hi)), copy.eq(1)]
                with m.Elif(take_row & array_out.payload.last):
                    m.d.sync += copy.eq(0)

        m.d.comb += [
            rq_rows.valid.eq(~out32_rows & array_out.valid),
            requant.i_quant.valid.eq(~out32_quant & self.i_quant.valid),
            array_out.ready.eq(Mux(out32_rows, loaded & self.o_acc.ready, rq_rows.ready)),
            self.i_quant.ready.eq(Mux(out32_quant, ~loaded, requant.i_quant.ready)),
        ]
        return m
