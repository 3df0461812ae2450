# SPDX-License-Identifier: Apache-2.0
"""``Controller``: fetches, decodes, checks and executes a program of :mod:`hw.isa` instructions.

On ``start`` the controller runs from instruction ``entry``: it reads each 256-bit instruction
from the instruction scratchpad, slices its fields with the bit positions of
:data:`hw.isa.FORMATS` (generated from that table, never retyped), checks it as
:func:`hw.isa.validate` does and executes it, until ``HALT`` (``done``) or an error (``error``
with an :class:`hw.isa.ErrorCode` in ``code``). Either way ``pc`` holds the instruction that
halted or failed, ``busy`` falls, and the next ``start`` runs a new program.

Checks, in the order ``hw.isa.decode`` / ``validate`` report them (the first failing one wins):
an opcode this controller does not execute (``ILLEGAL_OPCODE``), a reserved bit set or a bad
flag / LUT index (``BAD_FIELD``), a shape out of range (``BAD_SHAPE``), an operand that leaves
its scratchpad or is misaligned (``BAD_ADDRESS``), a requant shift outside ``[1, 47]`` in the
quant words of an int8 GEMM (``BAD_QUANT``, checked before the first write), and a program
counter that leaves the instruction memory (``NO_HALT``). An instruction that fails writes
nothing; the scratchpads' own bounds checks stop any access the checks above missed
(``BAD_ADDRESS``).

Executed here: ``NOP``, ``BARRIER`` (every unit finishes before the next instruction starts, so
it only retires), ``HALT`` and ``GEMM`` on a :class:`hw.gemm_core.GemmCore` built around
:class:`hw.gemm_unit.GemmAccPipeline`. ``ATTN``, ``LNORM``, ``VEC`` and ``EMBED`` are refused
with ``ILLEGAL_OPCODE`` by this version of the controller.

GEMM ``dst (M, N) = A (M, K) x W (K, N)`` runs tile by tile: for each tile of ``cols`` output
columns the weight tile (``K`` words, the ``hw.isa.wgt_offset`` layout) and its quant words go
into the core's buffers, then for each block of ``rows`` tokens the A block (``K`` column words,
the ``hw.isa.act_offset`` layout), one tile run, the optional LUT over the tile, and the write
back of the tile's columns. Ragged edges: quant words of columns past ``N`` are not read (zero
goes to the core), and results of tokens past ``M`` / columns past ``N`` are not written
(byte masks), so the bytes outside the result tensor stay as they were.
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from hw import isa
from hw.gemm_core import GemmCore
from hw.gemm_unit import GemmAccPipeline
from hw.isa import ErrorCode, GemmFlag, Opcode
from hw.numerics import ACC_WIDTH, SHIFT_MAX, SHIFT_MIN
from hw.scratchpad import SCRATCHPAD_REGIONS, unit_port_signature
from hw.unit import Setting, Unit, check_params

__all__ = ["Controller", "PERF_LAYOUT", "instruction_fields"]

#: Perf counters, 32 bits each (``hw.isa.Csr.PERF_*`` in the same order).
PERF_LAYOUT = data.StructLayout({name: unsigned(32) for name in (
    "cycles", "instret", "gemm_busy", "gemm_stall", "attn_busy", "attn_stall",
    "vec_busy", "vec_stall", "lnorm_busy", "lnorm_stall")})

_IMPLEMENTED = (Opcode.NOP, Opcode.GEMM, Opcode.BARRIER, Opcode.HALT)
_OUT32_WORDS = 4                    # an int32 column word is four ``rows``-byte act words


def instruction_fields(ir, opcode: Opcode) -> dict[str, object]:
    """Amaranth slices of the fields of ``opcode`` in instruction ``ir``
    (:data:`hw.isa.FORMATS`)."""
    out = {}
    for f in isa.FORMATS[opcode]:
        value = ir[f.lsb:f.lsb + f.width]
        out[f.name] = value.as_signed() if f.signed else value
    return out


def _reserved_mask(opcode: Opcode) -> int:
    used = 0xFF
    for f in isa.FORMATS[opcode]:
        used |= f.mask
    return ((1 << isa.INSTR_BITS) - 1) & ~used


def _ceil_div(value, d: int):
    return (value + (d - 1)) // d


class Controller(Unit):
    """Program sequencer and GEMM dispatch (module docstring).

    Parameters
    ----------
    params : AccelParams
        Geometry, scratchpad sizes and limits.
    use_dsp : bool or None
        DSP multipliers in the GEMM core (``None``: ``params.dsp_multipliers``).

    Members
    -------
    start : In(1)
        Run from ``entry`` (ignored while ``busy``); clears ``done``, ``error``, ``code`` and
        the perf counters.
    clear : In(1)
        Clear ``done``, ``error`` and ``code``.
    entry : In(32)
        First instruction index.
    busy, done, error : Out(1)
        A program runs / the last one reached HALT / the last one stopped with ``code``.
    code : Out(8)
        :class:`hw.isa.ErrorCode` of the last program.
    pc : Out(32)
        The instruction running, or the one that halted or failed.
    perf : Out(PERF_LAYOUT)
        Cycles from ``start`` to the end, instructions retired, per-unit busy / stall cycles
        (GEMM busy: the array runs a tile; stall: operand loads, quant checks, LUT and write
        back).
    instr, act, wgt, quant, lut : Out(Scratchpad.Port.Signature(...))
        Unit ports of the scratchpads (:meth:`hw.scratchpad.Scratchpad.for_region`).
    """

    params_fields = ("rows", "cols", "k_depth", "dsp_multipliers", "window", "head_dim",
                     "attn_lanes", "attn_causal", "act_depth", "wgt_depth", "instr_depth",
                     "lut_count")
    params = Setting("The AccelParams the controller was built from.")

    def __init__(self, params, *, use_dsp: bool | None = None) -> None:
        self._params = check_params(params)
        self._use_dsp = params.dsp_multipliers if use_dsp is None else use_dsp
        members = {
            "start": In(1), "clear": In(1), "entry": In(32),
            "busy": Out(1), "done": Out(1), "error": Out(1), "code": Out(8), "pc": Out(32),
            "perf": Out(PERF_LAYOUT),
        }
        for name in SCRATCHPAD_REGIONS:
            members[name] = Out(unit_port_signature(params, name))
        super().__init__(members)

    @classmethod
    def params_arguments(cls, params) -> dict[str, object]:
        return {"params": check_params(params)}

    def elaborate(self, platform):
        m = Module()
        p = self._params
        pipe = GemmAccPipeline(p.rows, p.cols, use_dsp=self._use_dsp)
        m.submodules.gemm = core = GemmCore(p.rows, p.cols, k_depth=p.k_depth,
                                            use_dsp=self._use_dsp, pipeline=pipe)
        s = _State(m, p)
        self._sequencer(m, s)
        self._gemm(m, s, core, pipe)
        self._perf(m, s)
        return m

    # -- fetch, decode, retire, errors ------------------------------------------------------------

    def _sequencer(self, m, s):
        p = self._params
        ir = Signal(isa.INSTR_BITS)
        opcode = ir[:8]
        with m.If(self.clear & ~self.busy):
            m.d.sync += [self.done.eq(0), self.error.eq(0), self.code.eq(0)]
        m.d.comb += self.instr.r_addr.eq(self.pc)
        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.code.eq(0), self.pc.eq(self.entry), s.clear_perf.eq(1)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.sync += s.clear_perf.eq(0)
                with m.If(self.pc >= p.instr_depth):
                    s.fail(ErrorCode.NO_HALT)
                with m.Else():
                    m.d.comb += self.instr.r_en.eq(1)
                    m.next = "FETCH_WAIT"
            with m.State("FETCH_WAIT"):
                m.next = "FETCH_DATA"
            with m.State("FETCH_DATA"):
                m.d.sync += ir.eq(self.instr.r_data)
                m.next = "DECODE"
            with m.State("DECODE"):
                with m.Switch(opcode):
                    for op in _IMPLEMENTED:
                        with m.Case(op):
                            with m.If(ir & _reserved_mask(op)):
                                s.fail(ErrorCode.BAD_FIELD)
                            with m.Else():
                                self._dispatch(m, s, op, ir)
                    with m.Default():
                        s.fail(ErrorCode.ILLEGAL_OPCODE)
            with m.State("NEXT"):
                s.next_instruction("FETCH")
            with m.State("FAIL"):
                m.d.sync += [self.busy.eq(0), self.error.eq(1), self.code.eq(s.fail_code)]
                m.next = "IDLE"
            self._gemm_states(m, s)
        with m.If(s.next_pc):
            m.d.sync += self.pc.eq(self.pc + 1)

    def _dispatch(self, m, s, op: Opcode, ir) -> None:
        if op == Opcode.HALT:
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            m.d.comb += s.retire.eq(1)
            m.next = "IDLE"
        elif op == Opcode.GEMM:
            s.latch_gemm(instruction_fields(ir, Opcode.GEMM))
            m.next = "GEMM_CHECK"
        else:                                   # NOP, BARRIER: every unit is already idle
            s.next_instruction("FETCH")

    def _perf(self, m, s):
        with m.If(s.clear_perf):
            m.d.sync += s.perf.eq(0)
        with m.Elif(self.busy):
            m.d.sync += s.perf.cycles.eq(s.perf.cycles + 1)
            with m.If(s.retire):
                m.d.sync += s.perf.instret.eq(s.perf.instret + 1)
            with m.If(s.gemm_busy):
                m.d.sync += s.perf.gemm_busy.eq(s.perf.gemm_busy + 1)
            with m.If(s.gemm_stall):
                m.d.sync += s.perf.gemm_stall.eq(s.perf.gemm_stall + 1)
        m.d.comb += self.perf.eq(s.perf)

    # -- GEMM -------------------------------------------------------------------------------------

    def _gemm_check(self, m, s):
        """``hw.isa.validate`` of a GEMM, on the latched fields, in its order."""
        p, g = self._params, s.g
        quant_depth = isa.quant_depth(p)
        m_pad = _ceil_div(g.m, p.rows) * p.rows
        span_a = m_pad * g.k
        span_w = _ceil_div(g.n, p.cols) * p.cols * g.k
        span_d = (m_pad * g.n) << (g.out32 * 2)
        flags_ok = (g.flags & ~int(GemmFlag.LUT | GemmFlag.OUT32)) == 0
        flags_ok &= g.flags != int(GemmFlag.LUT | GemmFlag.OUT32)
        with m.If(~flags_ok):
            s.fail(ErrorCode.BAD_FIELD)
        with m.Elif((g.m == 0) | (g.k == 0) | (g.k > p.k_depth) | (g.n == 0)):
            s.fail(ErrorCode.BAD_SHAPE)
        with m.Elif(((g.a_addr % p.rows) != 0) | (g.a_addr + span_a > p.act_depth)):
            s.fail(ErrorCode.BAD_ADDRESS)
        with m.Elif(((g.w_addr % p.cols) != 0) | (g.w_addr + span_w > p.wgt_depth)):
            s.fail(ErrorCode.BAD_ADDRESS)
        with m.Elif(g.quant_addr + g.n > quant_depth):
            s.fail(ErrorCode.BAD_ADDRESS)
        with m.Elif(g.lut_en & (g.lut >= p.lut_count) | ~g.lut_en & (g.lut != 0)):
            s.fail(ErrorCode.BAD_FIELD)
        with m.Elif(((g.dst_addr % p.rows) != 0) | (g.dst_addr + span_d > p.act_depth)):
            s.fail(ErrorCode.BAD_ADDRESS)
        with m.Else():
            m.d.sync += [
                g.m_blocks.eq(_ceil_div(g.m, p.rows)), g.n_tiles.eq(_ceil_div(g.n, p.cols)),
                g.abase.eq(g.a_addr // p.rows), g.wbase.eq(g.w_addr // p.cols),
                g.dbase.eq(g.dst_addr // p.rows),
                g.nt.eq(0), g.mb.eq(0), g.col0.eq(0), g.blk.eq(0), g.wtile.eq(0),
                g.atile.eq(0), s.i.eq(0),
            ]
            m.next = "GEMM_QCHECK"

    def _gemm_states(self, m, s):
        p, g = self._params, s.g
        copy_done = (s.i == s.length) & ~s.d1.valid & ~s.d2.valid
        with m.State("GEMM_CHECK"):
            self._gemm_check(m, s)
        with m.State("GEMM_QCHECK"):
            m.d.comb += [s.length.eq(g.n), s.gemm_stall.eq(1)]
            s.issue(self.quant, g.quant_addr + s.i, _NO_SEL, core=False)
            shift = self.quant.r_data[47:53]
            with m.If(s.d2.valid & ~g.out32 & ((shift < SHIFT_MIN) | (shift > SHIFT_MAX))):
                s.fail(ErrorCode.BAD_QUANT)
            with m.Elif(copy_done):
                m.d.sync += s.i.eq(0)
                m.next = "GEMM_LOAD_W"
        with m.State("GEMM_LOAD_W"):
            m.d.comb += [s.length.eq(g.k), s.gemm_stall.eq(1)]
            s.issue(self.wgt, g.wbase + g.wtile + s.i, GemmCore.Buffer.WGT)
            s.next_after_copy(copy_done, "GEMM_LOAD_Q")
        with m.State("GEMM_LOAD_Q"):
            m.d.comb += [s.length.eq(p.cols), s.gemm_stall.eq(1)]
            live = g.col0 + s.i < g.n
            s.issue(self.quant, g.quant_addr + g.col0 + s.i, GemmCore.Buffer.QUANT, live)
            s.next_after_copy(copy_done, "GEMM_LOAD_A")
        with m.State("GEMM_LOAD_A"):
            m.d.comb += [s.length.eq(g.k), s.gemm_stall.eq(1)]
            s.issue(self.act, g.abase + g.atile + s.i, GemmCore.Buffer.ACT)
            s.next_after_copy(copy_done, "GEMM_START")
        with m.State("GEMM_START"):
            m.d.comb += s.gemm_busy.eq(1)
            with m.If(~s.core_busy):
                m.d.comb += s.core_start.eq(1)
                m.d.sync += s.row.eq(0)
                m.next = "GEMM_RUN"
        with m.State("GEMM_RUN"):
            m.d.comb += s.gemm_busy.eq(1)
            with m.If(s.tile_last):
                m.d.sync += s.i.eq(0)
                m.next = "GEMM_LUT"
        with m.State("GEMM_LUT"):
            m.d.comb += [s.length.eq(Const(p.rows * p.cols)), s.gemm_stall.eq(1)]
            with m.If(~g.lut_en):
                m.next = "GEMM_WB"
            with m.Else():
                m.d.comb += s.in_lut.eq(1)
                s.issue(self.lut, Cat(s.lut_in, g.lut), _NO_SEL, core=False)
                s.next_after_copy(copy_done, "GEMM_WB")
        with m.State("GEMM_WB"):
            m.d.comb += [s.length.eq(s.wb_words), s.gemm_stall.eq(1)]
            s.write_back(self.act)
            with m.If(s.i == s.length):
                m.d.sync += s.i.eq(0)
                s.next_block()

    def _gemm(self, m, s, core, pipe):
        """The GEMM core's write port, start and result capture."""
        p, g = self._params, s.g
        m.d.comb += [
            core.wr_en.eq(s.d2.valid & s.d2.core),
            core.wr_sel.eq(s.d2.sel),
            core.wr_bank.eq(0),
            core.wr_addr.eq(s.d2.index),
            core.start.eq(s.core_start),
            core.bank.eq(0),
            core.k_len.eq(g.k),
            s.core_busy.eq(core.busy),
            pipe.out32.eq(g.out32),
            core.o_stream.ready.eq(1),
            pipe.o_acc.ready.eq(1),
        ]
        with m.Switch(s.d2.sel):
            with m.Case(GemmCore.Buffer.ACT):
                m.d.comb += core.wr_data.eq(self.act.r_data)
            with m.Case(GemmCore.Buffer.WGT):
                m.d.comb += core.wr_data.eq(self.wgt.r_data)
            with m.Case(GemmCore.Buffer.QUANT):
                m.d.comb += core.wr_data.eq(Mux(s.d2.live, self.quant.r_data[:53], 0))
        take8 = core.o_stream.valid
        take32 = pipe.o_acc.valid
        with m.If(take8 | take32):
            m.d.sync += s.row.eq(s.row + 1)
            with m.Switch(s.row):
                for r in range(p.rows):
                    with m.Case(r):
                        for c in range(p.cols):
                            value = s.tile[r * p.cols + c]
                            with m.If(take32):
                                m.d.sync += value.eq(pipe.o_acc.payload.acc[c])
                            with m.Else():
                                m.d.sync += value.eq(core.o_stream.payload.data[c])
        m.d.comb += s.tile_last.eq(
            (take8 & core.o_stream.payload.last) | (take32 & pipe.o_acc.payload.last))
        # LUT results land in the tile in place; the LUT is indexed by the result's byte.
        with m.Switch(s.i):
            for e in range(p.rows * p.cols):
                with m.Case(e):
                    m.d.comb += s.lut_in.eq(s.tile[e][:8])
        with m.If(s.d2.valid & s.in_lut):
            with m.Switch(s.d2.index):
                for e in range(p.rows * p.cols):
                    with m.Case(e):
                        m.d.sync += s.tile[e].eq(self.lut.r_data)


_NO_SEL = 3                        # copy-engine reads that go to no GemmCore buffer


class _State:
    """Registers and helpers shared by the controller's FSM states (one per elaboration)."""

    def __init__(self, m, p):
        self.m, self.p = m, p
        w = 32
        self.fail_code = Signal(8)
        self.retire = Signal()
        self.next_pc = Signal()
        self.clear_perf = Signal()
        self.perf = Signal(PERF_LAYOUT)
        self.gemm_busy = Signal()
        self.gemm_stall = Signal()
        self.core_busy = Signal()
        self.core_start = Signal()
        self.tile_last = Signal()
        self.row = Signal(range(p.rows + 1))
        self.tile = Array(Signal(ACC_WIDTH, name=f"tile{e}") for e in range(p.rows * p.cols))
        self.lut_in = Signal(8)
        self.in_lut = Signal()
        # Copy engine: issue index `i` of `length`; reads land `Scratchpad.latency` later.
        self.i = Signal(w)
        self.length = Signal(w)
        stage = data.StructLayout({"valid": 1, "live": 1, "core": 1, "sel": 2, "index": w})
        self.d1 = Signal(stage)
        self.d2 = Signal(stage)
        m.d.sync += [self.d1.valid.eq(0), self.d2.eq(self.d1)]
        self.wb_words = Signal(w)
        fields = {f.name: f for f in isa.FORMATS[Opcode.GEMM]}
        g = self.g = SimpleNamespace()
        for name, f in fields.items():
            setattr(g, name, Signal(f.width, name=f"g_{name}"))
        for name in ("m_blocks", "n_tiles", "abase", "wbase", "dbase", "nt", "mb", "col0", "blk",
                     "wtile", "atile"):
            setattr(g, name, Signal(w, name=f"g_{name}"))
        g.lut_en = g.flags[0]
        g.out32 = g.flags[1]
        assert int(GemmFlag.LUT) == 1 and int(GemmFlag.OUT32) == 2

    def fail(self, code: ErrorCode) -> None:
        self.m.d.sync += self.fail_code.eq(code)
        self.m.next = "FAIL"

    def next_instruction(self, state: str) -> None:
        self.m.d.comb += [self.retire.eq(1), self.next_pc.eq(1)]
        self.m.next = state

    def latch_gemm(self, fields) -> None:
        self.m.d.sync += [getattr(self.g, n).eq(v) for n, v in fields.items()]

    def issue(self, port, addr, sel, live=1, *, core: bool = True) -> None:
        """Issue read ``i`` (while ``i < length``) at ``addr`` of ``port``, bound for GEMM core
        buffer ``sel`` (``core``); ``live`` 0: no read, a zero word goes on (ragged quant
        columns). An address the scratchpad refuses stops the program."""
        m = self.m
        with m.If(self.i < self.length):
            m.d.comb += [port.r_en.eq(live), port.r_addr.eq(addr)]
            m.d.sync += [self.i.eq(self.i + 1), self.d1.valid.eq(1), self.d1.live.eq(live),
                         self.d1.core.eq(core), self.d1.index.eq(self.i),
                         self.d1.sel.eq(sel)]
            with m.If(port.error):
                self.fail(ErrorCode.BAD_ADDRESS)

    def next_after_copy(self, done, state: str) -> None:
        with self.m.If(done):
            self.m.d.sync += self.i.eq(0)
            self.m.next = state

    def write_back(self, act) -> None:
        m, p, g = self.m, self.p, self.g
        cols_left = g.n - g.col0
        jmax = Signal(range(p.cols + 1))
        m.d.comb += jmax.eq(cols_left)
        with m.If(cols_left > p.cols):
            m.d.comb += jmax.eq(p.cols)
        m.d.comb += self.wb_words.eq(jmax << (g.out32 * 2))
        rows_left = g.m - g.mb * p.rows
        j = Signal(range(p.cols + 1))
        q = Signal(2)
        with m.If(g.out32):
            m.d.comb += [j.eq(self.i >> 2), q.eq(self.i[:2])]
        with m.Else():
            m.d.comb += [j.eq(self.i), q.eq(0)]
        off = g.blk + g.col0 + j
        word = Signal(ACC_WIDTH * p.rows)
        with m.Switch(j):
            for jj in range(p.cols):
                with m.Case(jj):
                    m.d.comb += word.eq(Cat(self.tile[r * p.cols + jj] for r in range(p.rows)))
        bytes8 = Cat(word[ACC_WIDTH * r:ACC_WIDTH * r + 8] for r in range(p.rows))
        mask8 = Cat((r < rows_left) for r in range(p.rows))
        with m.If(self.i < self.length):
            m.d.comb += [act.w_en.eq(1),
                         act.w_addr.eq(g.dbase + Mux(g.out32, Cat(q, off), off))]
            m.d.sync += self.i.eq(self.i + 1)
            with m.If(act.error):
                self.fail(ErrorCode.BAD_ADDRESS)
            with m.If(g.out32):
                with m.Switch(q):
                    for qq in range(_OUT32_WORDS):
                        with m.Case(qq):
                            lo = qq * p.rows * 8
                            m.d.comb += [
                                act.w_data.eq(word[lo:lo + p.rows * 8]),
                                act.w_mask.eq(Cat(((qq * p.rows + b) // 4 < rows_left)
                                                  for b in range(p.rows))),
                            ]
            with m.Else():
                m.d.comb += [act.w_data.eq(bytes8), act.w_mask.eq(mask8)]

    def next_block(self) -> None:
        """After a tile's write back: the next token block, or the next column tile, or done."""
        m, p, g = self.m, self.p, self.g
        with m.If(g.mb + 1 < g.m_blocks):
            m.d.sync += [g.mb.eq(g.mb + 1), g.blk.eq(g.blk + g.n), g.atile.eq(g.atile + g.k)]
            m.next = "GEMM_LOAD_A"
        with m.Elif(g.nt + 1 < g.n_tiles):
            m.d.sync += [g.mb.eq(0), g.blk.eq(0), g.atile.eq(0), g.nt.eq(g.nt + 1),
                         g.col0.eq(g.col0 + p.cols), g.wtile.eq(g.wtile + g.k)]
            m.next = "GEMM_LOAD_W"
        with m.Else():
            m.next = "NEXT"
