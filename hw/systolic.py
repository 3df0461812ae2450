# SPDX-License-Identifier: Apache-2.0
"""Output-stationary int8 systolic array with internal skew/deskew (``hw/README.md``).

Dataflow (rows x cols PEs, PE(r, c) owns output element C[r, c]; see ``hw/README.md``)::

    i_stream ─► input reg ─► row skew (r regs) ─► a ─► PE(r,0) ─► PE(r,1) ─► ...   (a, valid, last)
                          └► col skew (c regs) ─► w ─┘    │ down       │
                                                          ▼            ▼
    PE results ─► per-column OR tree ─► deskew (cols-1-c regs) ─► 2-entry buffer ─► o_stream

Skew and deskew lines of :data:`hw.bram.RAM_DELAY_MIN` cycles or more are LUT-RAM rings
(:func:`hw.bram.delay_line`), the same delay without a flip-flop per bit and cycle.

Transfer ``k`` of a tile carries ``A[:, k]`` and ``W[k, :]``; operands enter row ``r`` ``r``
cycles late and column ``c`` ``c`` cycles late, so ``A[r, k]`` meets ``W[k, c]`` in PE(r, c).
Each PE finishes its dot product ``r + c`` cycles after PE(0, 0), so column ``c`` delivers
exactly one result per cycle, rows in order: an OR over the column collects them (a PE shows
its result for one cycle, zero otherwise) and a per-column delay of ``cols - 1 - c`` aligns the
columns into one output row per cycle. PEs restart accumulating at the next tile's first operand
while the previous tile is still being collected and drained, so tiles stream back to back.

Two tiles' results may not overlap in a column: the ``last`` operands of consecutive tiles must
enter the array at least ``rows`` enabled cycles apart. For ``K >= rows`` that always holds; a
shorter tile's ``last`` operand waits in the input register (``i_stream.ready`` low) for at most
``rows - K`` cycles while bubbles enter the array.

Backpressure: one registered clock enable ``ce`` stalls the whole array. The output buffer holds
two rows; ``ce`` for the next cycle is high iff the buffer will hold at most one row, so a
full-rate stream never stalls and a stalled sink loses nothing.
"""

from __future__ import annotations

from amaranth.hdl import Const, Instance, Module, Mux, Shape, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.bram import delay_line
from hw.checks import check_int
from hw.multiplier import Multiplier, _platform_family, check_dsp_options
from hw.numerics import ACC_WIDTH, ACT_WIDTH, WGT_WIDTH, accumulator_width
from hw.params import MAX_DIM
from hw.pe import ProcessingElement
from hw.skid import bit_groups, column_groups
from hw.unit import Unit

__all__ = ["OutputBuffer", "SystolicArray", "check_geometry", "operand_layout",
           "lanes_layout", "or_tree_stages", "result_layout", "systolic_latency"]


def check_geometry(rows: int, cols: int, *, use_dsp: bool = True,
                   family: str | None = None, lut_columns: int = 0) -> None:
    """Raise ``TypeError``/``ValueError`` for parameters :class:`SystolicArray` rejects
    (``rows``/``cols`` in ``[1, MAX_DIM]``, ``lut_columns`` in ``[0, cols]``,
    :func:`hw.multiplier.check_dsp_options`)."""
    check_int("rows", rows, 1, MAX_DIM)
    check_int("cols", cols, 1, MAX_DIM)
    check_int("lut_columns", lut_columns, 0, cols)
    check_dsp_options(use_dsp, family)


def operand_layout(rows: int, cols: int) -> data.StructLayout:
    """Payload of :attr:`SystolicArray.i_stream`: ``act`` (A column), ``wgt`` (W row), ``last``."""
    return data.StructLayout({
        "act": data.ArrayLayout(signed(ACT_WIDTH), rows),
        "wgt": data.ArrayLayout(signed(WGT_WIDTH), cols),
        "last": 1,
    })


def lanes_layout(cols: int, *, last: bool = True, **fields: object) -> data.StructLayout:
    """A payload of ``cols`` lanes: each of ``fields`` (name=shape) an array of ``cols``
    elements, in order, then the ``last`` bit (unless ``last=False``)."""
    members: dict[str, object] = {name: data.ArrayLayout(shape, cols)
                                  for name, shape in fields.items()}
    if last:
        members["last"] = 1
    return data.StructLayout(members)


def result_layout(cols: int) -> data.StructLayout:
    """Payload of :attr:`SystolicArray.o_stream`: one int32 output row and ``last``."""
    return lanes_layout(cols, acc=signed(ACC_WIDTH))


def or_tree_stages(n: int, fan_in: int = 4) -> int:
    """Register stages of a pipelined OR over ``n`` inputs, ``fan_in`` per LUT level."""
    stages = 0
    while n > 1:
        n = -(-n // fan_in)
        stages += 1
    return stages


def systolic_latency(rows: int, cols: int) -> int:
    """:attr:`SystolicArray.latency` of a ``rows`` x ``cols`` array (formula there)."""
    pe_latency = Multiplier.latency + 2
    return 1 + pe_latency + or_tree_stages(rows) + (cols - 1) + OutputBuffer.latency


class OutputBuffer(wiring.Component):
    """Two-entry output buffer that turns backpressure into a registered clock enable.

    A fixed-latency pipeline runs while ``ce`` is high and offers one payload per cycle on
    ``push``/``data``. ``ce`` is a register: high for the next cycle iff the buffer will then
    hold at most one entry, so a pushed entry always fits, a sink that is always ready never
    causes a stall, and ``o_stream.valid`` / ``payload`` come straight from registers (stream
    rules in ``hw/README.md``). ``push`` is only taken while ``ce`` is high.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape.
    global_ce : bool
        See :meth:`driving`.
    groups : int
        The payload's bits in this many groups, each with entry flags of its own (as
        :class:`hw.skid.SkidBuffer`'s ``groups``): the GEMM array's buffer keeps one copy per
        :data:`hw.skid.COLUMNS_PER_FLAG_COPY` columns. 1 (default): one pair of flags.

    Members
    -------
    push : In(1)
        Offer ``data`` (ignored while ``ce`` is low).
    data : In(layout)
        Payload to store.
    ce : Out(1)
        Clock enable of the pipeline feeding this buffer (reset high).
    ce_reg : Out(1)
        The same enable straight from its register: what logic (a ``ready``, an enable ANDed
        with a condition) reads, where ``ce`` comes through a global network (``global_ce``),
        whose way into a LUT input is a slow path. The vector unit's, the token LayerNorm's
        and the requantizer's ``ready`` read it. (The GEMM array's ``ready`` is a skid
        register's, :class:`SystolicArray`.)
    o_stream : Out(stream.Signature(layout))
        Stored payloads in order; ``latency`` = 1 cycle from ``push`` to ``o_stream.valid``.
    """

    latency = 1

    def __init__(self, layout, *, global_ce: bool = False, groups: int = 1):
        self._layout = layout
        self._global_ce = bool(global_ce)
        self._groups = check_int("groups", groups, 1, max(1, Shape.cast(layout).width))
        super().__init__({
            "push": In(1),
            "data": In(layout),
            "ce": Out(1, init=1),
            "ce_reg": Out(1, init=1),
            "o_stream": Out(stream.Signature(layout)),
        })

    @classmethod
    def driving(cls, m: Module, o_stream: object, layout: object, *,
                global_ce: bool = False, groups: int = 1) -> OutputBuffer:
        """A buffer of ``layout`` added to ``m`` as ``obuf`` and driving ``o_stream`` (the
        ``Out`` stream member of the unit that ``m`` elaborates): the tail of every unit whose
        pipeline runs on the buffer's ``ce``.

        ``global_ce``: on an ECP5 platform ``ce`` leaves the buffer through a ``DCCA``, so that
        nextpnr routes it on a global network: the units whose whole datapath runs on ``ce``
        (thousands of clock-enable pins; the GEMM array's 6,251 on ``ulx3s_85f``) use it. The
        register is the same, in simulation and elsewhere nothing changes."""
        m.submodules.obuf = obuf = cls(layout, global_ce=global_ce, groups=groups)
        wiring.connect(m, wiring.flipped(o_stream), obuf.o_stream)
        return obuf

    def elaborate(self, platform):
        m = Module()
        # Each group of payload bits has its entry flags (as hw.skid.SkidBuffer's groups): all
        # copies equal, the first one drives o_stream.valid and the enable. (One group: the
        # names and order of the first version, whose netlist the routed tops were built from.)
        groups = bit_groups(Shape.cast(self._layout).width, self._groups)
        one = len(groups) == 1
        sfx = [""] if one else [str(g) for g in range(len(groups))]
        shapes = [self._layout] if one else [hi - lo for lo, hi in groups]
        head = [Signal(shapes[g], name=f"head{sfx[g]}") for g in range(len(groups))]
        tail = [Signal(shapes[g], name=f"tail{sfx[g]}") for g in range(len(groups))]
        head_valid = [Signal(name=f"head_valid{n}") for n in sfx]
        tail_valid = [Signal(name=f"tail_valid{n}") for n in sfx]
        push = Signal()
        pop = [Signal(name=f"pop{n}") for n in sfx]
        ce = Signal(init=1)                 # the register; self.ce is it, or its global buffer
        if self._global_ce and _platform_family(platform) == "ecp5":
            m.submodules.ce_buf = Instance("DCCA", i_CLKI=ce, i_CE=Const(1), o_CLKO=self.ce)
        else:
            m.d.comb += self.ce.eq(ce)
        if one:
            data, payload = [self.data], [self.o_stream.payload]
        else:
            data = [Value.cast(self.data)[lo:hi] for lo, hi in groups]
            payload = [Value.cast(self.o_stream.payload)[lo:hi] for lo, hi in groups]
        m.d.comb += [
            self.ce_reg.eq(ce),
            self.o_stream.valid.eq(head_valid[0]),
            *(payload[g].eq(head[g]) for g in range(len(groups))),
            push.eq(self.push & ce),
            *(pop[g].eq(head_valid[g] & self.o_stream.ready) for g in range(len(groups))),
        ]
        for g in range(len(groups)):
            self._entries(m, push, pop[g], data[g], head[g], tail[g], head_valid[g],
                          tail_valid[g])
        # Entries after this cycle; the pipeline may run next cycle iff one more fits.
        count_next = head_valid[0] + tail_valid[0] + push - pop[0]
        m.d.sync += ce.eq(count_next <= 1)
        return m

    @staticmethod
    def _entries(m, push, pop, data, head, tail, head_valid, tail_valid):
        """The two entries' updates (of one group of payload bits)."""
        with m.If(pop):
            with m.If(tail_valid):
                m.d.sync += head.eq(tail)
                with m.If(push):
                    m.d.sync += tail.eq(data)
                with m.Else():
                    m.d.sync += tail_valid.eq(0)
            with m.Else():
                with m.If(push):
                    m.d.sync += head.eq(data)
                with m.Else():
                    m.d.sync += head_valid.eq(0)
        with m.Elif(push):
            with m.If(head_valid):
                m.d.sync += [tail.eq(data), tail_valid.eq(1)]
            with m.Else():
                m.d.sync += [head.eq(data), head_valid.eq(1)]


class SystolicArray(Unit):
    """Output-stationary ``rows`` x ``cols`` int8 GEMM tile engine (module docstring).

    Computes ``C = A @ W`` per tile with ``A`` int8 ``(rows, K)``, ``W`` int8 ``(K, cols)``,
    ``C`` int32 ``(rows, cols)`` (:func:`sw.ref.gemm_acc` without bias; int32 wrap only where the
    reference raises). ``K >= 1`` may differ from tile to tile. Stream rules: ``hw/README.md``.

    Parameters
    ----------
    rows : int
        Output rows per tile (activation lanes), 1..32.
    cols : int
        Output columns per tile (weight lanes), 1..32.
    use_dsp : bool
        Map PE multipliers to DSP blocks where the platform has them (``MULT18X18D`` on ECP5).
    family : str or None
        Force the multiplier family (``"ecp5"``) independent of the platform.
    lut_columns : int
        The last ``lut_columns`` columns (0..cols) multiply in the fabric
        (:class:`hw.lut_multiplier.LutMultiplier`, same latency) whatever ``use_dsp`` says: a
        mixed array with more PEs than the part has DSP blocks (``AccelParams.lut_columns``).
    k_depth : int or None
        The longest tile (``K``) the array must sum exactly (``AccelParams.k_depth``, what the
        GEMM core's operand buffers hold): the PEs' accumulators, the column OR trees and the
        deskew registers are :func:`hw.numerics.accumulator_width` bits wide (26 for 1024),
        sign-extended to int32 in the output buffer. ``None`` (default): 32 bits, any ``K``
        (int32 wrap).

    Members
    -------
    i_stream : In(stream.Signature(operand_layout(rows, cols)))
        Transfer ``k`` of a tile: ``act[r] = A[r, k]`` (int8), ``wgt[c] = W[k, c]`` (int8),
        ``last`` on ``k = K - 1``. ``ready`` depends on internal registers only.
    o_stream : Out(stream.Signature(result_layout(cols)))
        ``rows`` transfers per tile: transfer ``r`` has ``acc[c] = C[r, c]`` (int32, Q0 at the
        operands' scale product), ``last`` on ``r = rows - 1``. First row ``latency`` cycles
        after the handshake of the tile's ``last`` operand; the other rows follow one per cycle.

    Attributes
    ----------
    latency : int
        ``1 + pe_latency + or_stages + cols`` with ``pe_latency = 4`` (multiplier 2 +
        product register 1 + accumulator 1) and ``or_stages = or_tree_stages(rows)``
        (``ceil(log4(rows))``): input register, PE, column OR tree, ``cols - 1`` deskew
        registers for column 0 (the ``cols - 1 - c`` registers of column ``c`` plus the ``c``
        cycles of its skew add up to ``cols - 1`` for every column) and the output buffer.
        Valid without backpressure.

    Raises
    ------
    TypeError
        ``rows``/``cols`` not integers, ``use_dsp`` not a bool.
    ValueError
        ``rows``/``cols`` outside ``[1, 32]``, ``lut_columns`` outside ``[0, cols]``.
    """

    params_fields = ("rows", "cols", "k_depth", "dsp_multipliers", "lut_columns")

    def __init__(self, rows: int, cols: int, *, use_dsp: bool = True,
                 family: str | None = None, lut_columns: int = 0, k_depth: int | None = None):
        check_geometry(rows, cols, use_dsp=use_dsp, family=family, lut_columns=lut_columns)
        self._rows, self._cols = rows, cols
        self._use_dsp = use_dsp
        self._family = family
        self._lut_columns = lut_columns
        self._k_depth = None if k_depth is None else check_int("k_depth", k_depth, 1, 1 << 20)
        super().__init__({
            "i_stream": In(stream.Signature(operand_layout(self._rows, self._cols))),
            "o_stream": Out(stream.Signature(result_layout(self._cols))),
        })

    @property
    def pe_latency(self) -> int:
        return Multiplier.latency + 2

    @property
    def or_stages(self) -> int:
        return or_tree_stages(self._rows)

    @property
    def latency(self) -> int:
        return systolic_latency(self._rows, self._cols)

    def _input_skid(self, m, accept):
        """A skid register in front of the input register, which takes a transfer in cycles
        with ``accept``. Returns ``take`` (a transfer goes into the input register) and the
        payload it takes.

        ``i_stream.ready`` is "the skid is empty", a flip-flop, so the producer's read enables
        (the GEMM core's operand buffers) see neither the array's global enable nor its tile
        spacing. A transfer that arrives while the input register cannot take it waits in the
        skid, which the input register takes first; no latency is added (the skid is bypassed
        while empty)."""
        skid = Signal.like(self.i_stream.payload, name="in_skid")
        skid_valid = Signal(name="in_skid_valid")
        take = Signal()
        payload = Signal.like(self.i_stream.payload, name="in_next")
        m.d.comb += [
            self.i_stream.ready.eq(~skid_valid),
            take.eq((skid_valid | self.i_stream.valid) & accept),
            payload.eq(Mux(skid_valid, skid, self.i_stream.payload)),
        ]
        with m.If(skid_valid):
            with m.If(accept):
                m.d.sync += skid_valid.eq(0)
        with m.Elif(self.i_stream.valid & ~accept):
            m.d.sync += [skid.eq(self.i_stream.payload), skid_valid.eq(1)]
        return take, payload

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols

        obuf = OutputBuffer.driving(m, self.o_stream, result_layout(cols), global_ce=True,
                                    groups=column_groups(cols))
        ce = obuf.ce

        # -- input register and tile spacing ------------------------------------------------
        # Consecutive `last` operands enter the skew at least `rows` enabled cycles apart (two
        # tiles' results must not meet in a column). A `last` operand that comes too early waits
        # in the input register while bubbles enter the array; `ready` depends on registers
        # only (never on the payload).
        in_valid = Signal()
        in_last = Signal()
        in_act = [Signal(signed(ACT_WIDTH), name=f"in_act{r}") for r in range(rows)]
        in_wgt = [Signal(signed(WGT_WIDTH), name=f"in_wgt{c}") for c in range(cols)]
        gap = Signal(range(rows), name="last_gap")
        hold = Signal()
        fwd_valid = Signal()
        fwd_last = Signal()
        m.d.comb += [
            hold.eq(in_valid & in_last & (gap != 0)),
            fwd_valid.eq(in_valid & ~hold),
            fwd_last.eq(in_last & fwd_valid),
        ]
        take, payload = self._input_skid(m, ce & ~hold)
        with m.If(ce):
            with m.If(~hold):
                m.d.sync += [in_valid.eq(take), in_last.eq(payload.last)]
                m.d.sync += [in_act[r].eq(payload.act[r]) for r in range(rows)]
                m.d.sync += [in_wgt[c].eq(payload.wgt[c]) for c in range(cols)]
            with m.If(fwd_last):
                m.d.sync += gap.eq(rows - 1)
            with m.Elif(gap != 0):
                m.d.sync += gap.eq(gap - 1)

        def delay(sig, n, name):            # a flag's line: flip-flops (and reset)
            return delay_line(m, sig, n, en=ce, name=name, ram_min=None)

        # -- skew: row r and column c enter r / c cycles late ---------------------------------
        row_a = [delay_line(m, in_act[r], r, en=ce, name=f"skew_a{r}") for r in range(rows)]
        row_v = [delay(fwd_valid, r, f"skew_v{r}") for r in range(rows)]
        row_l = [delay(fwd_last, r, f"skew_l{r}") for r in range(rows)]
        col_w = [delay_line(m, in_wgt[c], c, en=ce, name=f"skew_w{c}") for c in range(cols)]

        # -- PE grid -------------------------------------------------------------------------
        pes = [[None] * cols for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                pe = ProcessingElement(use_dsp=self._use_dsp, family=self._family,
                                       lut_multiplier=c >= cols - self._lut_columns,
                                       acc_width=accumulator_width(self._k_depth))
                assert pe.latency == self.pe_latency
                m.submodules[f"pe_{r}_{c}"] = pe
                pes[r][c] = pe
                m.d.comb += pe.en.eq(ce)
                if c == 0:
                    m.d.comb += [pe.a_i.eq(row_a[r]), pe.valid_i.eq(row_v[r]),
                                 pe.last_i.eq(row_l[r])]
                else:
                    left = pes[r][c - 1]
                    m.d.comb += [pe.a_i.eq(left.a_o), pe.valid_i.eq(left.valid_o),
                                 pe.last_i.eq(left.last_o)]
                if r == 0:
                    m.d.comb += pe.w_i.eq(col_w[c])
                else:
                    m.d.comb += pe.w_i.eq(pes[r - 1][c].w_o)

        # -- collect: pipelined OR per column (one PE of a column finishes per cycle) ---------
        def or_tree(values, name):
            level = 0
            while len(values) > 1:
                nxt = []
                for i in range(0, len(values), 4):
                    group = values[i:i + 4]
                    s = Signal.like(values[0], name=f"{name}_or{level}_{i // 4}")
                    merged = group[0]
                    for g in group[1:]:
                        merged = merged | g
                    with m.If(ce):
                        m.d.sync += s.eq(merged)
                    nxt.append(s)
                values = nxt
                level += 1
            return values[0]

        col_res = [or_tree([pes[r][c].result for r in range(rows)], f"col{c}")
                   for c in range(cols)]
        # Row valid / last follow the latest column (cols - 1), which needs no deskew.
        out_valid = or_tree([pes[r][cols - 1].done for r in range(rows)], "valid")
        out_last = delay(pes[rows - 1][cols - 1].done, self.or_stages, "last")

        # -- deskew: column c waits cols - 1 - c cycles -------------------------------------
        aligned = [delay_line(m, col_res[c], cols - 1 - c, en=ce, name=f"deskew{c}")
                   for c in range(cols)]

        m.d.comb += [
            obuf.push.eq(out_valid),
            obuf.data.last.eq(out_last),
            # Each lane sign-extended from the accumulators' width to int32.
            *(obuf.data.acc[c].eq(aligned[c]) for c in range(cols)),
        ]
        return m
