# SPDX-License-Identifier: Apache-2.0
"""``GemmPipeline``: :class:`~hw.systolic.SystolicArray` -> :class:`~hw.requant.Requantizer`.

The int8 GEMM datapath without memories: operand columns/rows in, int8 output rows out,
``sw.ref.gemm_requant`` per tile. The cocotb bench Verilates this top
(``amaranth.back.verilog.convert(top, name=..., emit_src=False)``: ports ``i_stream__payload``,
``i_stream__valid``, ``i_stream__ready``, ``i_quant__*``, ``o_stream__*``, ``clk``, ``rst``);
the board core wraps it with block-RAM operand buffers.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_int
from hw.requant import REQUANT_LATENCY, Requantizer, output_layout, quant_layout
from hw.systolic import SystolicArray, check_geometry, operand_layout, systolic_latency
from hw.unit import Unit

__all__ = ["GemmPipeline", "gemm_members"]


def gemm_members(rows: int, cols: int) -> dict[str, object]:
    """The streams of a GEMM pipeline (:class:`GemmPipeline`, and the first members of
    :class:`hw.gemm_unit.GemmAccPipeline`): operands and per-tile parameters in, int8 rows out."""
    return {
        "i_stream": In(stream.Signature(operand_layout(rows, cols))),
        "i_quant": In(stream.Signature(quant_layout(cols))),
        "o_stream": Out(stream.Signature(output_layout(cols))),
    }


class GemmPipeline(Unit):
    """int8 GEMM tile pipeline: ``requantize(A @ W + bias, mult, shift)`` per tile.

    Parameters
    ----------
    rows, cols : int
        Array geometry, 1..32 each (:class:`~hw.systolic.SystolicArray`).
    use_dsp : bool
        DSP multipliers in the array and the requantizer where the platform has them.
    family : str or None
        Force the multiplier family (``"ecp5"``).
    lut_columns : int
        Array columns with fabric multipliers (:class:`~hw.systolic.SystolicArray`).
    k_depth : int or None
        The longest tile the array sums exactly (:class:`~hw.systolic.SystolicArray`:
        accumulators of :func:`hw.numerics.accumulator_width` bits); ``None``: int32.

    Members
    -------
    i_stream : In(stream.Signature(operand_layout(rows, cols)))
        As :attr:`SystolicArray.i_stream`: transfer ``k`` carries ``act[r] = A[r, k]``,
        ``wgt[c] = W[k, c]`` (int8), ``last`` on ``k = K - 1``.
    i_quant : In(stream.Signature(quant_layout(cols)))
        As :attr:`Requantizer.i_quant`: one transfer per tile (``bias`` int32, ``mult`` 15-bit
        unsigned, ``shift`` 1..47), consumed no later than the tile's first output row.
    o_stream : Out(stream.Signature(output_layout(cols)))
        ``rows`` int8 rows per tile (``data[c]``), ``last`` on the final row.

    Attributes
    ----------
    latency : int
        ``array_latency + requant_latency`` (:attr:`SystolicArray.latency` +
        :attr:`Requantizer.latency`): cycles from the handshake of a tile's ``last``
        operand to ``o_stream.valid`` of its first row, with no backpressure and the tile's
        ``i_quant`` transfer already offered.
    """

    params_fields = ("rows", "cols", "k_depth", "dsp_multipliers", "lut_columns")

    def __init__(self, rows: int, cols: int, *, use_dsp: bool = True,
                 family: str | None = None, lut_columns: int = 0, k_depth: int | None = None):
        # The sub-components are built in elaborate(), so that an unused pipeline leaves no
        # unused children behind (UnusedElaboratable); check their parameters here.
        check_geometry(rows, cols, use_dsp=use_dsp, family=family, lut_columns=lut_columns)
        self._rows, self._cols = rows, cols
        self._use_dsp, self._family = use_dsp, family
        self._lut_columns = lut_columns
        self._k_depth = None if k_depth is None else check_int("k_depth", k_depth, 1, 1 << 20)
        super().__init__(gemm_members(rows, cols))

    @property
    def array_latency(self) -> int:
        """:attr:`SystolicArray.latency` of the array inside."""
        return systolic_latency(self._rows, self._cols)

    @property
    def requant_latency(self) -> int:
        """:attr:`Requantizer.latency` of the requantizer inside."""
        return REQUANT_LATENCY

    @property
    def latency(self) -> int:
        return self.array_latency + self.requant_latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.array = array = SystolicArray(self._rows, self._cols, use_dsp=self._use_dsp,
                                                   family=self._family,
                                                   lut_columns=self._lut_columns,
                                                   k_depth=self._k_depth)
        m.submodules.requant = requant = Requantizer(self._cols, use_dsp=self._use_dsp,
                                                     family=self._family)
        wiring.connect(m, wiring.flipped(self.i_stream), array.i_stream)
        wiring.connect(m, array.o_stream, requant.i_stream)
        wiring.connect(m, wiring.flipped(self.i_quant), requant.i_quant)
        wiring.connect(m, requant.o_stream, wiring.flipped(self.o_stream))
        return m
