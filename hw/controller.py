# SPDX-License-Identifier: Apache-2.0
"""``Controller``: fetches, decodes, checks and executes a program of :mod:`hw.isa` instructions.

On ``start`` the controller runs from instruction ``entry``: it reads each 256-bit instruction
from the instruction scratchpad, slices its fields with the bit positions of
:data:`hw.isa.FORMATS` (generated from that table, never retyped), checks it as
:func:`hw.isa.validate` does and executes it, until ``HALT`` (``done``) or an error (``error``
with an :class:`hw.isa.ErrorCode` in ``code``). Either way ``pc`` holds the instruction that
halted or failed, ``busy`` falls, and the next ``start`` runs a new program.

Checks, in the order ``hw.isa.decode`` / ``validate`` report them (the first failing one wins):
an opcode outside :class:`hw.isa.Opcode` (``ILLEGAL_OPCODE``), a reserved bit set or a bad
flag / LUT index (``BAD_FIELD``), a shape out of range (``BAD_SHAPE``), an operand that leaves
its scratchpad or is misaligned (``BAD_ADDRESS``), a requant shift outside ``[1, 47]`` in the
quant words of an instruction, or a LayerNorm epsilon out of range (``BAD_QUANT``), a token
id outside ``[0, vocab)`` (``BAD_TOKEN``) -- both checked before the first write -- and a
program counter that leaves the instruction memory (``NO_HALT``). An instruction that fails writes
nothing; the scratchpads' own bounds checks stop any access the checks above missed
(``BAD_ADDRESS``): a refused write in its cycle, a refused read two cycles later (``read_error``,
a register behind the scratchpad's issue stage: the read addresses are the longest arithmetic,
kept off the next-state logic), while the reading state still waits for that read's data.

Units (each instruction runs to completion before the next is fetched, so ``BARRIER`` only
retires): ``GEMM`` on a :class:`hw.gemm_core.GemmCore` built around
:class:`hw.gemm_unit.GemmAccPipeline`; ``ATTN`` head by head on
:class:`hw.attention.WindowedAttention`; ``VEC`` on :class:`hw.vector.VectorUnit` (``rows``
lanes: one act word per beat); ``LNORM`` block by block on
:class:`hw.layernorm_tokens.TokenLayerNorm` (``rows`` tokens, one act word per beat);
``EMBED`` as a byte gather from the weight scratchpad. A unit named in
``AccelParams.host_units`` (attention, LayerNorm) is not built: its opcode stops the program
with ``UNIT_ABSENT`` at DECODE, before its fields are checked, for the host to run it
(``docs/isa.md``). Operands are read and results written
in the layouts of :func:`hw.isa.act_offset` / :func:`hw.isa.wgt_offset`; the per-opcode methods
below say how each unit is fed.

GEMM ``dst (M, N) = A (M, K) x W (K, N)`` runs tile by tile: for each tile of ``cols`` output
columns, for each block of ``rows`` tokens, the tile's A block (``K`` column words, the
``hw.isa.act_offset`` layout), weight tile (``K`` words, the ``hw.isa.wgt_offset`` layout) and
quant words load in parallel into one bank of the core while the previous tile computes from
the other, then the tile run, the optional LUT over the tile, and the write back of the tile's
columns, under the next tiles' loads and compute. Ragged edges: quant words of columns past
``N`` are not read (zero goes to the core), and results of tokens past ``M`` / columns past
``N`` are not written (byte masks), so the bytes outside the result tensor stay as they were.
"""

from __future__ import annotations

import functools
import operator
from contextlib import contextmanager
from types import SimpleNamespace

from amaranth.hdl import (
    Array,
    Cat,
    Const,
    Module,
    Mux,
    ResetInserter,
    Signal,
    Value,
    signed,
    unsigned,
)
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out, connect

from hw import isa
from hw.attention import WindowedAttention
from hw.bram import BlockRAM, make_block_ram, unshared_register
from hw.divider import ConstDivider, is_pow2, pow2_divmod
from hw.fsm import one_hot, select_one_hot
from hw.gemm_core import QUANT_LAYOUT, GemmCore
from hw.gemm_unit import GemmAccPipeline, acc_layout
from hw.isa import AttnFlag, ErrorCode, GemmFlag, Opcode, VecFunc
from hw.layernorm_tokens import TokenLayerNorm
from hw.multiplier import _platform_family, mult18x18d
from hw.numerics import ACC_WIDTH, LN_MAX_DIM, LUT_SIZE, SHIFT_MAX, SHIFT_MIN
from hw.reset import add_with_reset
from hw.scratchpad import SCRATCHPAD_REGIONS, Scratchpad, unit_port_signature, unit_words_of
from hw.skid import SkidBuffer, column_groups
from hw.unit import Setting, Unit, check_params
from hw.vector import VecOp, VectorUnit

__all__ = ["Controller", "PERF_LAYOUT", "instruction_fields"]

#: Perf counters, 32 bits each (``hw.isa.Csr.PERF_*`` in the same order).
PERF_LAYOUT = data.StructLayout({name: unsigned(32) for name in (
    "cycles", "instret", "gemm_busy", "gemm_stall", "attn_busy", "attn_stall",
    "vec_busy", "vec_stall", "lnorm_busy", "lnorm_stall")})

_IMPLEMENTED = tuple(Opcode)
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


def _act_bad(s, addr, span):
    """An activation operand of ``span`` bytes at byte ``addr`` is misaligned or leaves the
    act scratchpad (``span``: ``hw.isa.act_span``, for a whole ``(m, c)`` tensor
    ``ceil(m / rows) * rows * c``)."""
    return ((addr % s.p.rows) != 0) | _past(s, addr, span, s.p.act_depth)


def _past(s, addr, span, depth):
    """``addr + span > depth``, as ``span > room`` with ``room = depth - addr`` in registers
    (:meth:`_State.room`): in the CHECK state one comparator of the room's width (``depth``'s:
    16 bits for 32 KiB) beside an OR of ``span``'s bits above it, not an adder and a
    comparator of the span's 48 bits (the routed ulx3s_85f board top's ``*_check_bad``)."""
    fits, room = s.room(addr, depth)
    return _span_over_room(span, fits, room)


def _span_over_room(span, fits, room):
    """``span > room`` for a room kept as ``fits`` (``room >= 0``) and ``room``, its low bits
    (the room is never more than they hold): ``span``'s bits above them are an OR, only its
    low bits go through a comparator."""
    span = Value.cast(span)
    assert not span.shape().signed, span
    w = len(room)
    above = span[w:].any() if len(span) > w else Const(0)
    return ~fits | above | (span[:w] > room)


@contextmanager
def _verdict(m, s, state: str, rules):
    """An opcode's CHECK in three states: ``state`` registers each rule's condition (in
    parallel, one adder and comparator deep); ``{state}_VERDICT`` registers whether any rule
    failed and the first failing rule's error code, in the rules' order (``hw.isa.validate``'s);
    ``{state}_GO`` fails with that code or runs the body of the ``with``. The body's decisions
    (the copy restart, the next state, the unit's setup) and the error code's multiplexer read
    those two registers, not the rules' priority chain. ``rules``: ``[(condition,
    ErrorCode), ...]`` on registers that stay put for the three cycles."""
    bad = Signal(len(rules), name=f"{state.lower()}_bad")
    failed = Signal(name=f"{state.lower()}_failed")
    code = Signal.like(s.fail_code, name=f"{state.lower()}_code")
    with m.State(state):
        m.d.sync += bad.eq(Cat(cond for cond, _ in rules))
        m.next = f"{state}_VERDICT"
    with m.State(f"{state}_VERDICT"):
        m.d.sync += failed.eq(bad.any())
        for k, (_, rule_code) in reversed(list(enumerate(rules))):   # the first one wins
            with m.If(bad[k]):
                m.d.sync += code.eq(rule_code)
        m.next = f"{state}_GO"
    with m.State(f"{state}_GO"):
        with m.If(failed):
            s.fail(code)
        with m.Else():
            yield


def _bad_shift(shift):
    """A quant word's shift field outside ``SHIFT_MIN .. SHIFT_MAX`` (``BAD_QUANT``)."""
    return (shift < SHIFT_MIN) | (shift > SHIFT_MAX)


def _partial_products(m, s, platform) -> None:
    """``prod_lo`` / ``prod_hi``: the two 16 x 16 partial products of the controller's
    multiplier, a cycle after its operand registers. On ECP5 each is a ``MULT18X18D`` with its
    output register on (zero-extended operands, signed mode): the product is registered
    inside the DSP block (as a fabric register after it, it was the routed top's worst path,
    5.6 ns of wire from the block)."""
    if _platform_family(platform) == "ecp5":
        for k, (part, a16) in enumerate(((s.prod_lo, s.mul_a_r[:16]),
                                         (s.prod_hi, s.mul_a_r[16:]))):
            p36 = Signal(36, name=f"prod_dsp{k}")
            m.submodules[f"prod_dsp{k}"] = mult18x18d(Cat(a16, Const(0, 2)),
                                                      Cat(s.mul_b_r, Const(0, 2)), p36,
                                                      Const(1), input_registers=False)
            m.d.comb += part.eq(p36[:32])
    else:
        m.d.sync += [s.prod_lo.eq(s.mul_a_r[:16] * s.mul_b_r),
                     s.prod_hi.eq(s.mul_a_r[16:] * s.mul_b_r)]


def _times(value, d: int):
    """``value * d`` for a constant ``d >= 1``, as a sum of ``value``'s shifts by ``d``'s set
    bits: a shift for a power of two, adders otherwise (Yosys maps a product with a constant
    such as 18, an 8x18 array's ``cols``, to a ``MULT18X18D``, which the top has none to
    spare for)."""
    value = Value.cast(value)
    terms = [value << b for b in range(d.bit_length()) if d >> b & 1]
    return functools.reduce(operator.add, terms)


def _pad(value, d: int):
    """``value`` rounded up to a multiple of the constant ``d``."""
    return _times(_ceil_div(value, d), d)


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

    Attributes
    ----------
    select_conflict, select_active : Signal
        For simulation monitors (no port; synthesis removes their logic): ``select_conflict``
        is high in a cycle where two selects of one exclusive set are (a design error: the
        set's AND-OR multiplexer would OR two requests), ``select_active`` where any select is.
        The sets: each scratchpad port's readers (:meth:`_State.read`), the act write-back's
        writers, the multiplier's picks and the fail sites. ``select_conflicts`` names each
        set's own conflict signal (filled at elaboration).
    """

    params_fields = ("rows", "cols", "k_depth", "dsp_multipliers", "window", "head_dim",
                     "attn_lanes", "attn_causal", "act_depth", "wgt_depth", "instr_depth",
                     "lut_count", "lut_columns", "ln_pipelines", "vec_dsp_products",
                     "ln_engines", "requant_lanes", "host_units")
    params = Setting("The AccelParams the controller was built from.")

    def __init__(self, params, *, use_dsp: bool | None = None) -> None:
        self._params = check_params(params)
        self._use_dsp = params.dsp_multipliers if use_dsp is None else use_dsp
        # The opcodes this design executes; the others of _IMPLEMENTED (a unit in
        # host_units) stop the program with UNIT_ABSENT at DECODE.
        self._built = tuple(op for op in _IMPLEMENTED if not isa.host_runs(op, params))
        members = {
            "start": In(1), "clear": In(1), "entry": In(32),
            "busy": Out(1), "done": Out(1), "error": Out(1), "code": Out(8), "pc": Out(32),
            "perf": Out(PERF_LAYOUT),
        }
        for name in SCRATCHPAD_REGIONS:
            members[name] = Out(unit_port_signature(params, name))
        super().__init__(members)
        self.select_conflict = Signal()
        self.select_active = Signal()
        self.select_conflicts: dict[str, Signal] = {}

    @classmethod
    def params_arguments(cls, params) -> dict[str, object]:
        return {"params": check_params(params)}

    def elaborate(self, platform):
        m = Module()
        p = self._params
        pipe = GemmAccPipeline(p.rows, p.cols, use_dsp=self._use_dsp,
                               lut_columns=p.lut_columns, k_depth=p.k_depth,
                               requant_lanes=p.requant_lanes)
        core = GemmCore(p.rows, p.cols, k_depth=p.k_depth, use_dsp=self._use_dsp,
                        lut_columns=p.lut_columns, pipeline=pipe)
        vec = VectorUnit(p.rows, lut_count=p.lut_count, use_dsp=self._use_dsp,
                         dsp_products=p.vec_dsp_products)
        units = {"gemm": core, "vec": vec}
        if Opcode.LNORM in self._built:
            units["lnorm"] = TokenLayerNorm(p.rows, pipelines=p.ln_pipeline_count,
                                            use_dsp=self._use_dsp, engines=p.ln_engines or None)
        # On ECP5 the attention unit's int8 q.k / p.v products go to LUTs (as the vector and
        # LayerNorm units' always do): the top's DSP budget (tests/test_hw_resources.py).
        if Opcode.ATTN in self._built:
            units["attn"] = WindowedAttention(
                head_dim=p.head_dim, window=p.window, lanes=p.attn_lanes, use_dsp=self._use_dsp,
                lut_int8_products=_platform_family(platform) == "ecp5")
        # A program that fails mid-job leaves a unit holding part of it (GEMM tiles in the
        # array, an ATTN waiting for K rows that never come, a half-summed mean pool). The
        # cycle after FAIL the units are reset, so the next program finds them as after
        # power-on: their flip-flops reset on the domain's reset or on `units_reset`.
        # `units_reset` is the register add_with_reset puts in front of the reset: high the
        # cycle after FAIL's drain_abort. On ECP5 through a `DCCA`, one global network to the
        # units' 31,000 flip-flops (hw.reset): the `units` domain.
        units_abort = Signal(name="units_abort")
        units_reset = add_with_reset(m, platform, units_abort, units, domain="units")
        s = _State(m, p, self._built)
        s.units_reset = units_reset             # the GEMM result rows' skid (_gemm)
        s.platform = platform               # unshared_register's family (write_back)
        _partial_products(m, s, platform)
        # Every act write is posted: chosen into the write-back registers (post_write,
        # finish_writes), on the act port the next cycle.
        s.drive_write_back(self.act)
        # A refused write (write_error, finish_writes): the posted write's own bounds check,
        # a register (the scratchpad refuses the same addresses), not a comparator behind the
        # act port across the chip.
        # Any unit port's refused read (the scratchpads report it from their issue stage, a
        # cycle after the read), registered: checked two cycles after the read, before its
        # word lands (Scratchpad.latency = 4), by the reading states (issue(), GEMM_LOAD /
        # GEMM_START / GEMM_DRAIN, ATTN_RUN, LNORM_RUN).
        m.d.sync += [s.quant_word.eq(self.quant.r_data), s.quant_late.eq(s.land.valid)]
        m.d.sync += s.read_error.eq(Cat(getattr(self, name).r_error
                                        for name in SCRATCHPAD_REGIONS).any())
        self._embed_land(m, s)
        self._sequencer(m, s)
        m.d.comb += units_abort.eq(s.drain_abort)               # drain_abort: FAIL
        self._gemm(m, s, core, pipe, platform)
        self._vec(m, s, vec)
        if "attn" in units:
            self._attn(m, s, units["attn"])
        if "lnorm" in units:
            self._lnorm(m, s, units["lnorm"])
        self._embed(m, s)
        s.finish_writes()
        s.finish_reads()
        s.finish_mul_picks()
        self._perf(m, s)
        self._select_monitor(m, s)
        return m

    def _select_monitor(self, m, s) -> None:
        """``select_conflict`` / ``select_active`` over the exclusive select sets (class
        docstring): ``x & (x - 1)`` is nonzero when two bits of ``x`` are set."""
        ports = {id(getattr(self, name)): name for name in SCRATCHPAD_REGIONS}
        sets = {f"{ports[key]} readers": [flag for flag, _, _ in flags]
                for key, (_, flags) in s.readers.items()}
        sets["act writers"] = [sel for _, sel, _ in s.writers]
        sets["multiplier picks"] = [pick for pick, _, _ in s.mul_picks]
        sets["fail sites"] = [flag for flag, _ in s.fail_sites]
        self.select_conflicts = {}
        for name, flags in sets.items():
            x = Cat(*flags)
            conflict = Signal(name=f"conflict_{name.replace(' ', '_')}")
            m.d.comb += conflict.eq((x & (x - 1)).any())
            self.select_conflicts[name] = conflict
        m.d.comb += [self.select_conflict.eq(Cat(*self.select_conflicts.values()).any()),
                     self.select_active.eq(Cat(*(f for flags in sets.values()
                                                 for f in flags)).any())]

    # -- fetch, decode, retire, errors ------------------------------------------------------------

    def _fetch_capture(self, m, s) -> SimpleNamespace:
        """The fetched instruction's registers (``ir``, the one-hot ``decoded`` flags, the
        reserved-bit chunks), the prefetch's stages and the predecode verdict."""
        ir = Signal(isa.INSTR_BITS)
        reserved_masks = {op: _reserved_mask(op) for op in self._built}
        # Whether the word sets a reserved bit of each opcode's format, in 16-bit chunks
        # (registers at the capture; predecode ORs the chunks of the word's opcode).
        chunks = range(0, isa.INSTR_BITS, _RESERVED_CHUNK)
        reserved_set = {op: [Signal(name=f"reserved_{op.name.lower()}{j // _RESERVED_CHUNK}")
                             for j in chunks]
                        for op in self._built}
        decoded = {op: Signal(name=f"decoded_{op.name.lower()}") for op in _IMPLEMENTED}
        # Prefetch: MUL reads instruction pc + 1 (unless it is past the memory), which lands
        # while the instruction runs; FETCH then goes straight to DECODE (no instruction
        # writes the instruction memory, and START clears what a program left in flight).
        # pf_v*: the read's stages; pf_landed: its word is in `ir` (and the flags below), the
        # predecode registers follow a cycle later, when pf_valid rises.
        pf_issue = Signal(name="pf_issue")
        pf_tags = [Signal(name=f"pf_v{k}") for k in range(Scratchpad.latency)]
        pf_landed = Signal(name="pf_landed")
        pf_valid = Signal(name="pf_valid")
        m.d.sync += [pf_tags[0].eq(pf_issue), *(b.eq(a) for a, b in zip(pf_tags, pf_tags[1:])),
                     pf_landed.eq(pf_tags[-1])]
        with m.If(pf_landed):
            m.d.sync += pf_valid.eq(1)
        pf_pending = Cat(*pf_tags, pf_landed).any()
        # The fetched word is captured when it lands (FETCH_DATA, or a prefetch's last
        # stage): the instruction, and for each opcode whether the word sets a bit that
        # opcode's format leaves reserved (wide ORs) and whether it is that opcode.
        fetch_data = Signal(name="fetch_data")
        with m.If(fetch_data | pf_tags[-1]):
            word = self.instr.r_data
            c = _RESERVED_CHUNK
            m.d.sync += [ir.eq(word), *(part.eq((word[j:j + c] & (mask >> j) % (1 << c)).any())
                                        for op, mask in reserved_masks.items()
                                        for j, part in zip(chunks, reserved_set[op])),
                         *(is_op.eq(word[:8] == op) for op, is_op in decoded.items())]
        # Predecode, a cycle after the capture, from its registers: DECODE's verdict (an
        # illegal opcode, a reserved bit set) and error code are registers too.
        # An opcode whose unit is not built (host_units) stops before its fields are checked:
        # the host checks them when it runs the instruction (UNIT_ABSENT).
        illegal = ~Cat(decoded.values()).any()
        bad_field = Cat(decoded[op] & Cat(reserved_set[op]).any() for op in self._built).any()
        dec_fail = Signal(name="dec_fail")
        dec_code = Signal.like(s.fail_code, name="dec_code")
        verdict = Mux(illegal, ErrorCode.ILLEGAL_OPCODE, ErrorCode.BAD_FIELD)
        if self._built != _IMPLEMENTED:
            absent = Cat(decoded[op] for op in _IMPLEMENTED if op not in self._built).any()
            bad_field |= absent
            verdict = Mux(illegal, ErrorCode.ILLEGAL_OPCODE,
                          Mux(absent, ErrorCode.UNIT_ABSENT, ErrorCode.BAD_FIELD))
        m.d.sync += [dec_fail.eq(illegal | bad_field), dec_code.eq(verdict)]
        # A prefetched NOP or BARRIER (a legal one) is skipped while the instruction before it
        # still runs: it would do nothing when its turn came (every unit is idle between
        # instructions), so the prefetch reads pc + 2 instead and pf_skip makes the next
        # advance_pc move pc by two and count both instructions. One skip per instruction
        # (a second NOP or BARRIER runs as before); not in FETCH, where advance_pc may
        # already have moved pc by one; not past the instruction memory (pc2_over).
        pf_skip = Signal(name="pf_skip")
        skip_now = Signal(name="pf_skip_now")
        m.d.comb += skip_now.eq(pf_valid & ~pf_skip & ~dec_fail
                                & (decoded[Opcode.NOP] | decoded[Opcode.BARRIER]))
        return SimpleNamespace(ir=ir, decoded=decoded, pf_issue=pf_issue, pf_tags=pf_tags,
                               pf_landed=pf_landed, pf_valid=pf_valid, pf_pending=pf_pending,
                               fetch_data=fetch_data, dec_fail=dec_fail, dec_code=dec_code,
                               pf_skip=pf_skip, skip_now=skip_now)

    def _sequencer(self, m, s):
        p = self._params
        with m.If(self.clear & ~self.busy):
            m.d.sync += [self.done.eq(0), self.error.eq(0), self.code.eq(0)]
        # The instruction's address: pc, or pc1 in the cycle pc moves to it (advance_pc, the
        # first of FETCH after a retire; pc1 = pc + 1 holds since pc last moved, at least
        # FETCH .. DECODE earlier).
        pc1 = Signal.like(self.pc, name="pc1")
        pc2 = Signal.like(self.pc, name="pc2")            # pc + 2: a skipped NOP / BARRIER
        m.d.sync += [pc1.eq(self.pc + 1), pc2.eq(self.pc + 2)]
        f = self._fetch_capture(m, s)          # ir, decoded, the prefetch, the predecode
        m.d.comb += self.instr.r_addr.eq(self.pc)
        # pc >= instr_depth (pc_over) and pc + 1's, pc + 2's, from registers kept beside pc
        # and pc1 (FETCH's NO_HALT test behind advance_pc's multiplexer and a comparator was
        # a routed top's critical path).
        pc_over = Signal(name="pc_over")
        pc1_over = Signal(name="pc1_over")
        pc2_over = Signal(name="pc2_over")
        m.d.sync += [pc1_over.eq(self.pc + 1 >= p.instr_depth),
                     pc2_over.eq(self.pc + 2 >= p.instr_depth)]
        m.d.comb += s.skip_pc.eq(f.pf_skip)
        with m.FSM(name="ctrl") as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                                 self.code.eq(0), self.pc.eq(self.entry), s.clear_perf.eq(1),
                                 pc_over.eq(self.entry >= p.instr_depth),
                                 *(t.eq(0) for t in f.pf_tags), f.pf_landed.eq(0),
                                 f.pf_valid.eq(0), f.pf_skip.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # A valid prefetch is an instruction inside the memory (MUL and the skip issue
                # it only below instr_depth: ~pc1_over, ~pc2_over), so it goes first. In
                # advance_pc's cycle pc moves (to the prefetched address): the NO_HALT test
                # and a read wait for the next cycle, where pc_over is pc's; the state's next
                # value then reads flip-flops only (advance_pc -> pc1_over -> pc_over ->
                # pf_valid -> ctrl_state was a routed ulx3s_85f top's worst path, 10.12 ns).
                m.d.sync += s.clear_perf.eq(0)
                with m.If(f.pf_valid):                  # the prefetched pc + 1 (or pc + 2)
                    m.d.sync += [f.pf_valid.eq(0), f.pf_skip.eq(0)]
                    m.next = "DECODE"
                with m.Elif(s.advance_pc):              # pc moves: test and read next cycle
                    pass
                with m.Elif(pc_over):
                    s.fail(ErrorCode.NO_HALT)
                with m.Elif(~f.pf_pending):             # (a prefetch in flight: wait for it)
                    m.d.comb += self.instr.r_en.eq(1)
                    m.next = "FETCH_WAIT1"
            # The instruction word is on r_data Scratchpad.latency cycles after its read.
            for k in range(1, Scratchpad.latency):
                with m.State(f"FETCH_WAIT{k}"):
                    m.next = (f"FETCH_WAIT{k + 1}" if k + 1 < Scratchpad.latency
                              else "FETCH_DATA")
            with m.State("FETCH_DATA"):
                m.d.comb += f.fetch_data.eq(1)
                m.next = "PREDECODE"
            with m.State("PREDECODE"):
                m.next = "DECODE"
            with m.State("DECODE"):
                # Each opcode's field registers load here when the word is that opcode (its
                # one-hot flag, a register; not the decode's verdict). The same word bits go
                # to several opcodes' fields: loaded under one enable, Yosys merged them into
                # one flip-flop that drove every unit's checks and configs across the die
                # (the routed top's VEC check read LNORM's width that way). op_is is the
                # one-hot opcode for MUL's operand picks.
                for op, regs in s.fields_of.items():
                    with m.If(f.decoded[op]):
                        m.d.sync += [getattr(regs, n).eq(v)
                                     for n, v in instruction_fields(f.ir, op).items()]
                s.restart_copy()
                m.d.sync += [s.mul_step.eq(1),
                             *(is_op.eq(f.decoded[op]) for op, is_op in s.op_is.items())]
                # One-hot opcode flags from the capture: at most one is set, so each opcode's
                # dispatch is its own If (no priority chain of 8-bit comparisons). One fail()
                # for both verdicts (predecode's registers): each fail() is a site in
                # fail_code's OR (drive_fail_code).
                with m.If(f.dec_fail):
                    s.fail(f.dec_code)
                with m.Else():
                    for op in self._built:
                        with m.If(f.decoded[op]):
                            self._dispatch(m, s, op, f.ir)
            with m.State("MUL"):
                # The next instruction's prefetch, in MUL's first step (every opcode with
                # fields comes through MUL): pc moved at least two cycles earlier (a
                # prefetched FETCH, then DECODE), so pc1 and pc1_over hold pc + 1's.
                with m.If(s.mul_step[0]):
                    m.d.comb += [f.pf_issue.eq(~pc1_over), self.instr.r_en.eq(~pc1_over),
                                 self.instr.r_addr.eq(pc1)]
                self._products(m, s)
            self._divide_state(m, s)
            with m.State("NEXT"):
                s.next_instruction("FETCH")
            with m.State("FAIL"):
                m.d.sync += [self.busy.eq(0), self.error.eq(1), self.code.eq(s.fail_code),
                             s.g.active.eq(0)]
                m.d.comb += s.drain_abort.eq(1)            # and the units' reset next
                m.next = "IDLE"
            self._gemm_states(m, s)
            self._vec_states(m, s)
            if Opcode.ATTN in self._built:
                self._attn_states(m, s)
            if Opcode.LNORM in self._built:
                self._lnorm_states(m, s)
            self._embed_states(m, s)
        one_hot(fsm)
        s.copy_counter()
        s.drive_fail_code()
        # The skip: while the instruction before the NOP / BARRIER runs (or retires in this
        # cycle; MUL's prefetch issue was at least five cycles earlier): not in FETCH, and
        # not in FAIL or IDLE, where the instruction port is the host's.
        running = ~(fsm.ongoing("FETCH") | fsm.ongoing("FAIL") | fsm.ongoing("IDLE"))
        with m.If(f.skip_now & ~pc2_over & running):
            m.d.comb += [f.pf_issue.eq(1), self.instr.r_en.eq(1), self.instr.r_addr.eq(pc2)]
            m.d.sync += [f.pf_valid.eq(0), f.pf_skip.eq(1)]
        with m.If(s.advance_pc):
            m.d.sync += [self.pc.eq(Mux(f.pf_skip, pc2, pc1)),
                         pc_over.eq(Mux(f.pf_skip, pc2_over, pc1_over))]

    @staticmethod
    def _divide_state(m, s):
        """DIVIDE (a non-power-of-two ``cols`` only): wait for the weight dividers
        (:meth:`_State._weight_dividers`), then MUL. MUL's step stays at bit 0 (it moves in
        MUL only) and its operand registers load the quotients in the cycle that leaves."""
        if s.cols_pow2:
            return
        with m.State("DIVIDE"):
            with m.If(~s.div_start & s.wdiv.done & s.ndiv.done):
                m.next = "MUL"

    def _dispatch(self, m, s, op: Opcode, ir) -> None:
        if op == Opcode.HALT:
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            m.d.comb += s.retire.eq(1)
            m.next = "IDLE"
        elif op in s.fields_of:
            # The fields are in the opcode's registers (DECODE); its CHECK state validates
            # them after MUL's products. A weight address with a non-power-of-two cols is
            # divided first (DIVIDE, _State._weight_dividers).
            if s.cols_pow2 or op not in (Opcode.GEMM, Opcode.EMBED):
                m.next = "MUL"
            else:
                m.d.sync += s.div_start.eq(1)
                m.next = "DIVIDE"
        else:                                   # NOP, BARRIER: every unit is already idle
            s.next_instruction("FETCH")

    def _products(self, m, s):
        """The MUL state: the products the opcode's checks need through the controller's one
        multiplier, into ``pr_of[op][k]``; then the opcode's CHECK state. (One shared
        multiplier instead of a DSP per product.) The multiplier is pipelined: the operands of
        product ``k`` are picked in step ``sel[k]`` into registers, ``prod`` holds the product
        ``_MUL_LATENCY`` cycles after the pick, when it goes into ``pr_of[op][k]``; a product
        of the last one (``_PREV``) waits until that one is in its register.

        The operand multiplexer is an AND-OR of flip-flops (the top's timing): every operand
        that is arithmetic on the fields (``_pad``, ``_ceil_div``) is a register of its own,
        a step after DECODE latched the fields (so step 0 picks nothing), and a pick's select
        is the AND of two one-hot registers, the opcode's ``op_is`` (set in DECODE) and the
        step's ``mul_step`` bit, not a decode of the instruction word and a step count."""
        p, g, v, n, a, e = self._params, s.g, s.v, s.n, s.a, s.e
        # Each expression once: a pad that serves two products is one register.
        gm_pad, blocks_1 = _pad(g.m, p.rows), _ceil_div(a.t, p.rows) - 1
        pairs = {
            Opcode.GEMM: [(gm_pad, g.k), (_times(s.col_tiles(g.n), p.cols), g.k), (gm_pad, g.n)],
            Opcode.VEC: [(_pad(v.m, p.rows), v.c), (_ceil_div(v.m, p.rows), v.c)],
            Opcode.LNORM: [(_pad(n.m, p.rows), n.c), (n.c, n.c), (_PREV, n.c), (_PREV, n.c)],
            Opcode.ATTN: [(a.heads, a.head_dim), (blocks_1, a.src_cols), (blocks_1, a.dst_cols)],
            Opcode.EMBED: [(e.vocab, e.c), (_pad(e.t, p.rows), e.c)],
        }
        step = s.mul_step                       # one-hot, bit 0 set by the dispatch
        m.d.sync += step.eq(step << 1)
        in_regs: dict[int, Signal] = {}

        def operand(x, name):
            # A field register as it is; arithmetic on fields into a register of its own
            # (one per distinct expression: the same pad serves two products).
            if isinstance(x, Signal):
                return x
            key = id(x)
            if key not in in_regs:
                x = Value.cast(x)
                in_regs[key] = reg = Signal(x.shape(), name=name)
                m.d.sync += reg.eq(x)
            return in_regs[key]

        assert {op: len(ops) for op, ops in pairs.items()} == _PRODUCTS
        for op, ops in pairs.items():
            if op not in s.fields_of:           # a unit the design does not have
                continue
            is_op = s.op_is[op]
            sel: list[int] = []
            for x, _ in ops:
                ready = sel[-1] + 1 if sel else 1
                sel.append(max(ready, sel[-1] + _MUL_LATENCY + 1) if x is _PREV else ready)
            assert sel[-1] + _MUL_LATENCY < _MUL_STEPS
            for k, (x, y) in enumerate(ops):
                x = s.pr_of[op][k - 1] if x is _PREV else operand(x, f"mul_{op.name.lower()}{k}_x")
                y = operand(y, f"mul_{op.name.lower()}{k}_y")
                s.mul_pick(x, y, is_op & step[sel[k]])
                with m.If(is_op & step[sel[k] + _MUL_LATENCY]):
                    m.d.sync += s.pr_of[op][k].eq(s.prod)
            with m.If(is_op & step[sel[-1] + _MUL_LATENCY]):
                m.next = f"{op.name}_CHECK"

    def _perf(self, m, s):
        with m.If(s.clear_perf):
            m.d.sync += s.perf.eq(0)
        with m.Elif(self.busy):
            m.d.sync += s.perf.cycles.eq(s.perf.cycles + 1)
            # advance_pc with skip_pc retires a skipped NOP / BARRIER too: two instructions.
            m.d.sync += s.perf.instret.eq(s.perf.instret + (s.retire | s.advance_pc)
                                          + (s.advance_pc & s.skip_pc))
            events = {name: getattr(s, name) for name in PERF_LAYOUT.members
                      if name not in ("cycles", "instret")}
            for name, event in events.items():
                counter = getattr(s.perf, name)
                with m.If(event):
                    m.d.sync += counter.eq(counter + 1)
        m.d.comb += self.perf.eq(s.perf)

    # -- GEMM -------------------------------------------------------------------------------------

    def _gemm_check(self, m, s):
        """``hw.isa.validate`` of a GEMM, on the latched fields, in its order."""
        p, g = self._params, s.g
        pr = s.pr_of[Opcode.GEMM]
        quant_depth = isa.quant_depth(p)
        span_a, span_w = pr[0], pr[1]
        # dst's span is pr[2] bytes, or 4 * pr[2] for int32 output: both checks and both ends,
        # then the pick (no variable shift in front of the adders).
        dst_bad = Mux(g.out32, _act_bad(s, g.dst_addr, pr[2] << 2),
                      _act_bad(s, g.dst_addr, pr[2]))
        d_end = Mux(g.out32, g.dst_addr + (pr[2] << 2), g.dst_addr + pr[2])
        flags_ok = (g.flags & ~int(GemmFlag.LUT | GemmFlag.OUT32)) == 0
        flags_ok &= g.flags != int(GemmFlag.LUT | GemmFlag.OUT32)
        with _verdict(m, s, "GEMM_CHECK", [
                (~flags_ok, ErrorCode.BAD_FIELD),
                ((g.m == 0) | (g.k == 0) | (g.k > p.k_depth) | (g.n == 0), ErrorCode.BAD_SHAPE),
                (_act_bad(s, g.a_addr, span_a), ErrorCode.BAD_ADDRESS),
                (s.wgt_misaligned(g.w_addr) | _past(s, g.w_addr, span_w, p.wgt_depth),
                 ErrorCode.BAD_ADDRESS),
                (_past(s, g.quant_addr, g.n, quant_depth), ErrorCode.BAD_ADDRESS),
                (g.lut_en & (g.lut >= p.lut_count) | ~g.lut_en & (g.lut != 0),
                 ErrorCode.BAD_FIELD),
                (dst_bad, ErrorCode.BAD_ADDRESS)]):
            s.restart_copy()
            m.d.sync += [
                g.m_blocks.eq(_ceil_div(g.m, p.rows)), g.n_tiles.eq(s.col_tiles(g.n)),
                g.abase.eq(g.a_addr // p.rows), g.dbase.eq(g.dst_addr // p.rows),
                g.nt.eq(0), g.mb.eq(0), g.col0.eq(0), g.blk.eq(0), g.bank.eq(0),
                # The first tile's words: its A block, weight tile and quant words.
                g.atile.eq(g.a_addr // p.rows), g.wtile.eq(s.wgt_word(g.w_addr)),
                g.qtile.eq(g.quant_addr),
                # One token block / one column tile: the walkers' last-block and last-tile
                # flags at their starts.
                g.one_mb.eq(g.m <= p.rows), g.one_nt.eq(g.n <= p.cols),
                g.last_mb.eq(g.m <= p.rows), g.last_nt.eq(g.n <= p.cols),
                g.a_end.eq(g.a_addr + span_a), g.d_end.eq(d_end),
            ]
            m.next = "GEMM_OVERLAP"

    def _gemm_overlap(self, m, s):
        """The last check of ``hw.isa.validate``: dst must not overlap A (no in-place GEMM),
        on the ends registered by GEMM_CHECK (two comparators, nothing else in the cycle)."""
        g = s.g
        with m.If((g.a_addr < g.d_end) & (g.dst_addr < g.a_end)):
            s.fail(ErrorCode.BAD_ADDRESS)
        with m.Else():
            # The drainer starts the next cycle (drain_start, a register): its ~100 register
            # loads wait for no comparator (GEMM_QCHECK takes longer than that cycle).
            m.d.sync += [g.active.eq(1), s.drain_start.eq(1)]
            m.next = "GEMM_QCHECK"

    def _gemm_states(self, m, s):
        g = s.g
        self._gemm_check(m, s)
        with m.State("GEMM_OVERLAP"):
            self._gemm_overlap(m, s)
        with m.State("GEMM_QCHECK"):
            copy_done = s.issue(self.quant, g.quant_addr + s.i, _NO_SEL, length=g.n, late=True)
            s.check_quant_word(~g.out32 & _bad_shift(s.quant_word[47:53]))
            with m.If(s.land_bad):
                s.fail(ErrorCode.BAD_QUANT)
            with m.Elif(copy_done):
                s.restart_copy()
                m.d.comb += s.feed_reset.eq(1)
                m.next = "GEMM_LOAD"
                with m.If(g.lut_en):
                    m.d.comb += s.lut_load_start.eq(1)
        # The feeder (_gemm_feeder): tiles alternate between the core's two banks; a tile's A
        # block, weight tile and quant words load in parallel (three scratchpads, three core
        # write ports) into the bank the running tile does not read, so the load of tile t+1
        # overlaps the compute of tile t and the write-back of tile t-1 (the drainer,
        # _gemm_drain). GEMM_LOAD issues the reads (max(K, cols) cycles) and leaves at the last
        # one; GEMM_START starts the tile as soon as the core has read the previous one, so a
        # tile costs max(K, cols) + 1 feeder cycles against the core's K + 2.
        with m.State("GEMM_LOAD"):
            m.d.comb += s.feeding.eq(1)
            with m.If(s.read_error):
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(s.feed_last):
                m.next = "GEMM_START"
        with m.State("GEMM_START"):
            with m.If(s.read_error):                # a refused read of a load cycle
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(~s.core_busy):
                # No read of the core overtakes a write of the feeder: word j of every channel
                # is read from the scratchpad in feeding cycle F + j and written into the core
                # _LANDED_LATENCY = 5 cycles later (the scratchpad's 4, then the feeder's word
                # register; the core's RAM takes it at the end of cycle F + j + 5); the core's
                # RAMs take the address of word j at the end of cycle `start` + 2 + j
                # (GemmCore.latency: the start registered, then the address). So `start` >=
                # F + 4 is enough, and GEMM_LOAD lasts at least _LANDED_LATENCY - 1 = 4 cycles
                # (max(K, cols), and _gemm_feeder's `feed_min` where cols < 4), `start` coming
                # after its last.
                m.d.comb += [s.core_start.eq(1), s.feed_reset.eq(1)]
                m.d.sync += g.bank.eq(~g.bank)
                self._gemm_next_tile(m, s)
        with m.State("GEMM_DRAIN"):
            # The drainer's last write lands (posted) in its first cycle back in IDLE; a
            # refused read of the last tile's last load cycle shows here (read_error).
            with m.If(s.write_error("drain") | s.read_error):
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(s.drain_done):
                m.d.sync += g.active.eq(0)
                s.next_instruction("FETCH")

    def _gemm_next_tile(self, m, s):
        """After a tile start: the next token block, or the next column tile, or the drain.

        ``g.last_mb`` / ``g.last_nt`` (``mb + 1 == m_blocks``, ``nt + 1 == n_tiles``) are
        registers stepped with ``mb`` / ``nt``: the decision reads flip-flops, and the
        comparators work on the next values into those registers (the top's timing)."""
        p, g = self._params, s.g
        with m.If(~g.last_mb):
            m.d.sync += [g.mb.eq(g.mb + 1), g.atile.eq(g.atile + g.k),
                         g.last_mb.eq(g.mb + 2 >= g.m_blocks)]
            m.next = "GEMM_LOAD"
        with m.Elif(~g.last_nt):
            m.d.sync += [g.mb.eq(0), g.atile.eq(g.abase), g.nt.eq(g.nt + 1),
                         g.col0.eq(g.col0 + p.cols), g.wtile.eq(g.wtile + g.k),
                         g.qtile.eq(g.qtile + p.cols),
                         g.last_mb.eq(g.one_mb), g.last_nt.eq(g.nt + 2 >= g.n_tiles)]
            m.next = "GEMM_LOAD"
        with m.Else():
            m.next = "GEMM_DRAIN"

    def _gemm_drain(self, m, s):
        """The drainer: capture a tile's rows (with a LUT: each row through the lane copies of
        _gemm_lane_luts, ``LUT`` waits for the last one), write its columns back, tile after tile
        in the feeder's order, while the feeder loads and starts later tiles (the core's output
        waits while the drainer is busy)."""
        g = s.g
        d = g.drain
        s.write_back_words(d)
        # The next block / tile is the last: registers a cycle behind mb / nt, which move only
        # at WB's end, several cycles before the next (the flags' next values read flip-flops,
        # not the comparators: drain_last_tile's next value, 10.08 ns in the route of 8812445).
        mb_last_next = Signal(name="drain_mb_last_next")
        nt_last_next = Signal(name="drain_nt_last_next")
        m.d.sync += [mb_last_next.eq(d.mb + 2 >= g.m_blocks),
                     nt_last_next.eq(d.nt + 2 >= g.n_tiles)]
        with m.FSM(name="drain") as fsm:
            with m.State("IDLE"):
                m.d.comb += s.drain_done.eq(1)
                with m.If(s.drain_start):
                    s.restart_write_back(d)
                    m.d.sync += [d.nt.eq(0), d.mb.eq(0), d.col0.eq(0), d.blk.eq(0), d.q.eq(0),
                                 d.cols_left.eq(g.n), s.row.eq(0), d.last_mb.eq(g.one_mb),
                                 d.last_nt.eq(g.one_nt), d.last_tile.eq(g.one_mb & g.one_nt)]
                    m.next = "CAPTURE"
            with m.State("CAPTURE"):
                m.d.comb += s.capturing.eq(~s.lut_loading)
                with m.If(s.capture_end):
                    # The write back is at word 0 already (drain start, or the last WB's
                    # end): its counters' enables wait for no captured row.
                    m.next = "LUT"
                    with m.If(~g.lut_en):
                        m.next = "SETTLE"
                with m.If(s.drain_abort):
                    m.next = "IDLE"
            with m.State("SETTLE"):
                # The last row lands in the tile (cap_rows); WB reads it from the next cycle.
                m.next = "WB"
                with m.If(s.drain_abort):
                    m.next = "IDLE"
            with m.State("LUT"):
                # The tile's last looked-up rows land (_gemm_lane_luts).
                with m.If(~s.lut_busy):
                    m.next = "WB"
                with m.If(s.drain_abort):
                    m.next = "IDLE"
            with m.State("WB"):
                s.write_back(d)
                with m.If(d.c_end):
                    s.restart_write_back(d)
                    m.next = "CAPTURE"
                    # An OUT32 tile's next quarter (after the last, 0 again: 2 bits wrap).
                    m.d.sync += d.q.eq(d.q + d.out32)
                    # The feeder's order (_gemm_next_tile), with flags of its own; the last
                    # tile's flag (last_mb & last_nt) is one more register, so that WB's exit
                    # reads one flip-flop beside c_end (drain_state's next-state logic through
                    # c_end and last_nt was a routed ulx3s_85f top's path, 10.76 ns).
                    with m.If(~d.more_passes):          # else the same tile again
                        self._drain_next_tile(m, s, mb_last_next, nt_last_next)
                with m.If(s.drain_abort):
                    m.next = "IDLE"
        one_hot(fsm)

    def _drain_next_tile(self, m, s, mb_last_next, nt_last_next):
        """The drainer's step to its next tile, or to IDLE after the last (in WB's exit)."""
        p, g = self._params, s.g
        d = g.drain
        with m.If(d.last_tile):
            m.next = "IDLE"
        with m.Elif(~d.last_mb):
            m.d.sync += [d.mb.eq(d.mb + 1), d.blk.eq(d.blk + g.n), d.last_mb.eq(mb_last_next),
                         d.last_tile.eq(mb_last_next & d.last_nt)]
        with m.Else():
            m.d.sync += [d.mb.eq(0), d.blk.eq(0), d.nt.eq(d.nt + 1),
                         d.col0.eq(d.col0 + p.cols), d.last_mb.eq(g.one_mb),
                         d.cols_left.eq(d.cols_left - p.cols), d.last_nt.eq(nt_last_next),
                         d.last_tile.eq(g.one_mb & nt_last_next)]

    # -- VEC ---------------------------------------------------------------------------------

    def _vec_check(self, m, s):
        """``hw.isa.validate`` of a VEC, on the latched fields, in its order."""
        p, v = self._params, s.v
        pr = s.pr_of[Opcode.VEC]
        add, lut = v.func == VecFunc.ADD, v.func == VecFunc.LUT
        pool = v.func == VecFunc.MEANPOOL
        with _verdict(m, s, "VEC_CHECK", [
                (v.func > max(VecFunc), ErrorCode.BAD_FIELD),
                ((v.m == 0) | (v.c == 0), ErrorCode.BAD_SHAPE),
                (_act_bad(s, v.a_addr, pr[0]), ErrorCode.BAD_ADDRESS),
                (add & (v.lut != 0)
                 | lut & ((v.b_addr != 0) | (v.quant_addr != 0) | (v.lut >= p.lut_count))
                 | pool & ((v.b_addr != 0) | (v.lut != 0)), ErrorCode.BAD_FIELD),
                (add & _act_bad(s, v.b_addr, pr[0]), ErrorCode.BAD_ADDRESS),
                (~lut & _past(s, v.quant_addr, 1, isa.quant_depth(p)), ErrorCode.BAD_ADDRESS),
                # Both spans' checks, then the pick (no multiplexer in front of the adder).
                (Mux(pool, _act_bad(s, v.dst_addr, v.c * p.rows), _act_bad(s, v.dst_addr, pr[0])),
                 ErrorCode.BAD_ADDRESS)]):
            blocks = _ceil_div(v.m, p.rows)
            last_blk, last_i = _divmod(v.m - 1, p.rows)
            m.d.sync += [
                v.is_add.eq(add), v.is_pool.eq(pool), v.run_len.eq(pr[1] << add),
                v.last_word.eq(pr[1] - 1), v.last_block.eq(pr[1] - v.c),
                v.last_mask.eq(_last_block_mask(last_i, p.rows)),
                v.pool_last_out.eq(last_blk * p.rows), v.pool_last_i.eq(last_i),
                v.c_left.eq(v.c), v.pool_src.eq(v.a_addr // p.rows),
                v.pool_dst.eq(v.dst_addr // p.rows),
            ]
            s.restart_copy()
            m.d.sync += [
                v.blocks.eq(blocks), v.words.eq(pr[1]), v.out.eq(0), v.poff.eq(0),
                v.abase.eq(v.a_addr // p.rows), v.bbase.eq(v.b_addr // p.rows),
                v.dbase.eq(v.dst_addr // p.rows), s.cfg_pending.eq(0),
                v.write_room.eq(s.act_words - v.dst_addr // p.rows),
            ]
            m.next = "VEC_QUANT"
            with m.If(lut):
                m.next = "VEC_LUT_LOAD"

    def _vec_states(self, m, s):
        p, v = self._params, s.v
        add, pool = v.is_add, v.is_pool
        m.d.sync += [v.c_live.eq(Cat(v.c_left > r for r in range(p.rows))),
                     v.c_more.eq(v.c_left > p.rows)]
        # The copy counter's low bits: enough wherever i < rows (the mean pool's states).
        i_low = s.i[:max(1, (p.rows - 1).bit_length())]
        self._vec_check(m, s)
        with m.State("VEC_QUANT"):
            word, copied = s.read_quant_word(self.quant, v.quant_addr, s.vec_stall)
            shift = Mux(add, _quant_field(word, isa.RESID_WORD, "shift"),
                        _quant_field(word, isa.CHANNEL_WORD, "shift"))
            with m.If(s.land.valid):
                m.d.sync += [
                    v.mult0.eq(Mux(add, _quant_field(word, isa.RESID_WORD, "mult_a"),
                                   _quant_field(word, isa.CHANNEL_WORD, "mult"))),
                    v.mult1.eq(_quant_field(word, isa.RESID_WORD, "mult_b")),
                    v.shift.eq(shift),
                ]
            s.check_quant_word(_bad_shift(v.shift))          # loaded from the landed word
            with m.If(s.land_bad):
                s.fail(ErrorCode.BAD_QUANT)
            with m.Elif(copied):
                s.restart_copy()
                m.d.sync += [s.cfg_pending.eq(1)]
                m.next = "VEC_RUN"
                with m.If(pool):
                    m.next = "VEC_POOL"
        with m.State("VEC_LUT_LOAD"):
            m.d.comb += [s.vec_stall.eq(1), s.vec_lut_load.eq(1)]
            copied = s.issue(self.lut, Cat(s.i[:8], v.lut), _NO_SEL, length=LUT_SIZE)
            with m.If(copied):
                s.restart_copy()
                m.d.sync += [s.cfg_pending.eq(1)]
                m.next = "VEC_RUN"
        with m.State("VEC_RUN"):
            m.d.comb += [s.vec_busy.eq(1), s.vec_elementwise.eq(1)]
            word, is_b = Mux(add, s.i >> 1, s.i), add & s.i[0]
            copied = s.issue(self.act, Mux(is_b, v.bbase, v.abase) + word, is_b,
                             length=v.run_len)
            # The last result's write lands (posted) in the cycle v.out reaches words, and
            # is checked then; the retire reads out_done, that comparison registered (out was
            # reset in VEC_CHECK, long before), the next cycle: the 32-bit comparator is not
            # in front of pc's and instret's enables.
            with m.If(s.write_error("vec")):
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(copied & v.out_done):
                s.next_instruction("FETCH")
        with m.State("VEC_POOL"):
            # One token block of the channel group c0 .. c0 + rows - 1: its `rows` channel words
            # (word c0 + r of the block holds channel c0 + r of the block's tokens), one word a
            # cycle (v.poff: the block's offset, (t // rows) * C) ...
            m.d.comb += [s.vec_busy.eq(1), s.vec_pooling.eq(1)]
            # i < rows here. c_live may still be the last group's in this state's first
            # cycle (c_left moved in VEC_POOL_WB's last one): its bit 0 is 1 either way, as
            # every group has a channel.
            copied = s.issue(self.act, v.pool_src + s.i, _NO_SEL, v.c_live.bit_select(i_low, 1),
                             length=p.rows, late=True)      # the words land from registers
            with m.If(copied):
                s.restart_copy()
                m.d.sync += [v.pool_last_blk.eq(v.out == v.pool_last_out),
                             v.push_end.eq(p.rows == 1), v.push_last.eq(v.pool_last_i == 0)]
                m.next = "VEC_POOL_PUSH"
        with m.State("VEC_POOL_PUSH"):
            # ... transposed into one beat a cycle: beat i is token v.out + i (v.out: the
            # block's first token), its channels c0 .. in the lanes.
            # push_last (i is pool_last_i) and push_end (i is rows - 1): registers stepped
            # with i (from i1, the next i), not comparators of i in front of the enables.
            last = v.pool_last_blk & v.push_last                  # token m - 1
            m.d.comb += [s.vec_busy.eq(1), s.vec_pooling.eq(1), s.pool_push.eq(1),
                         s.pool_last.eq(last)]
            s.step_copy()
            m.d.sync += [v.push_end.eq(s.i1 == p.rows - 1),
                         v.push_last.eq(s.i1 == v.pool_last_i)]
            with m.If(last):
                s.restart_copy()
                m.d.sync += [v.out.eq(0), v.poff.eq(0),
                             v.pool_src.eq(v.pool_src - v.poff)]
                m.next = "VEC_POOL_WAIT"
            with m.Elif(v.push_end):
                s.restart_copy()
                m.d.sync += [v.out.eq(v.out + p.rows),
                             v.poff.eq(v.poff + v.c), v.pool_src.eq(v.pool_src + v.c)]
                m.next = "VEC_POOL"
        with m.State("VEC_POOL_WAIT"):
            m.d.comb += [s.vec_busy.eq(1), s.vec_pooling.eq(1)]
            with m.If(s.pool_ready):
                s.restart_copy()
                m.d.sync += [s.pool_ready.eq(0), v.wb_more.eq(1)]    # i = 0 < rows
                m.next = "VEC_POOL_WB"
        with m.State("VEC_POOL_WB"):
            m.d.comb += s.vec_stall.eq(1)
            with m.If(v.wb_more & v.c_live.bit_select(i_low, 1)):
                s.post_write(v.pool_dst + s.i,
                             s.pool_out.word_select(s.i[:max(1, (p.rows - 1).bit_length())], 8),
                             1, writer="pool", refused=s.i >= v.pool_room)
            # The last write lands (posted) in the cycle that decides what comes next.
            with m.If(s.write_error("pool")):
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(v.wb_more):
                s.step_copy()
                m.d.sync += v.wb_more.eq(s.i1 < p.rows)
            with m.Elif(v.c_more):
                s.restart_copy()
                m.d.sync += [s.cfg_pending.eq(1),
                             v.c_left.eq(v.c_left - p.rows), v.pool_src.eq(v.pool_src + p.rows),
                             v.pool_dst.eq(v.pool_dst + p.rows)]
                m.next = "VEC_POOL"
            with m.Else():
                s.next_instruction("FETCH")

    def _vec(self, m, s, vec):
        """The vector unit's configuration, LUT load, input beats and result write back."""
        p, v = self._params, s.v
        m.d.sync += v.pool_room.eq(s.act_words - v.pool_dst)
        rows = p.rows
        add = v.is_add
        cfg = vec.i_cfg.payload
        with m.Switch(v.func):
            for func, op in ((VecFunc.ADD, VecOp.ADD), (VecFunc.LUT, VecOp.LUT),
                             (VecFunc.MEANPOOL, VecOp.POOL)):
                with m.Case(func):
                    m.d.comb += cfg.op.eq(op)
        m.d.comb += [
            vec.i_cfg.valid.eq(s.cfg_pending), cfg.table.eq(v.lut), cfg.mult0.eq(v.mult0),
            cfg.mult1.eq(v.mult1), cfg.shift.eq(v.shift),
            vec.o_stream.ready.eq(1),
        ]
        # The table's entries reach the unit through a register (VEC_RUN's first beat lands
        # several cycles after the last entry): the LUT scratchpad's block RAM outputs drove
        # the unit's table RAMs across the die (a placed ulx3s_85f top's vec.lut# group).
        # The unit takes an entry whenever it takes no beat, so valid needs no ready.
        m.d.sync += [
            vec.i_lut.valid.eq(s.land.valid & s.vec_lut_load),
            vec.i_lut.payload.table.eq(v.lut), vec.i_lut.payload.index.eq(s.land.index[:8]),
            vec.i_lut.payload.value.eq(self.lut.r_data),
        ]
        with m.If(vec.i_cfg.valid & vec.i_cfg.ready):
            m.d.sync += s.cfg_pending.eq(0)

        # Input beats: an act word (``rows`` tokens of one channel) per beat for ADD / LUT; for
        # the mean pool a token's ``rows`` channels, from a block's ``rows`` channel words held
        # in ``pool_words`` (a ``rows`` x ``rows`` byte transpose: beat i, lane r = byte i of
        # word r; channels past C read as 0).
        data = self.act.r_data
        a_word = Signal(8 * rows)
        pool_words = [Signal(8 * rows, name=f"pool_word{r}") for r in range(rows)]
        elem = s.land.valid & s.vec_elementwise
        with m.If(elem & add & (s.land.sel == 0)):
            m.d.sync += a_word.eq(data)
        # A landed pool word goes into the transpose a cycle later, from a register beside the
        # act port's read data and a one-hot word select (VEC_POOL's copy is late): the read
        # data and the index decode fanned out to every pool word's enable across the die
        # (the routed ulx3s_85f top's pool_word# group).
        pool_data = Signal(8 * rows, name="pool_land_data")
        pool_we = Signal(rows, name="pool_land_we")
        m.d.sync += [pool_data.eq(Mux(s.land.live, data, 0)),
                     pool_we.eq(Cat(s.land.valid & s.vec_pooling & (s.land.index == r)
                                    for r in range(rows)))]
        for r in range(rows):
            with m.If(pool_we[r]):
                m.d.sync += pool_words[r].eq(pool_data)
        # The beats reach the unit through two registers (their valid and payload): the
        # unit's configuration handshake and its lanes' enables do not wait for the
        # controller's state logic, and the second rank (beside the unit) keeps the wire
        # from the controller off the lanes' pool sums and products (a placed ulx3s_85f top's
        # vector group, 11.7 ns; one cycle per VEC). The unit takes every beat once
        # configured (its o_stream is always ready), and the controller waits for the
        # results, not the beats.
        beat = Signal.like(vec.i_stream.payload)
        beat_valid = Signal()
        beat_r = Signal.like(vec.i_stream.payload, name="vec_beat_r")
        beat_valid_r = Signal(name="vec_beat_valid_r")
        m.d.sync += [beat_valid_r.eq(beat_valid), beat_r.eq(beat),
                     vec.i_stream.valid.eq(beat_valid_r), vec.i_stream.payload.eq(beat_r)]
        # The landing word's "last beat" flag, a register loaded from the stage before it
        # (the stages shift every cycle; `add` and `last_word` hold through the VEC): the
        # compare of the landed index ended in `vec_beat_r.last` through a wire across the
        # die (a routed ulx3s_85f top's worst path, v_is_add -> 11.62 ns).
        before = s.stages[-2]
        land_last = Signal(name="vec_land_last")
        m.d.sync += land_last.eq(Mux(add, before.index >> 1, before.index) == v.last_word)
        with m.If(s.vec_pooling):
            push_beat = s.i[:max(1, (rows - 1).bit_length())]
            m.d.comb += [beat_valid.eq(s.pool_push), beat.last.eq(s.pool_last)]
            m.d.comb += [beat.a[r].eq(pool_words[r].word_select(push_beat, 8).as_signed())
                         for r in range(rows)]
        with m.Else():
            m.d.comb += [beat_valid.eq(elem & (~add | (s.land.sel == 1))),
                         beat.last.eq(land_last)]
            a_src = Mux(add, a_word, data)
            m.d.comb += [beat.a[i].eq(a_src.word_select(i, 8).as_signed()) for i in range(rows)]
            m.d.comb += [beat.b[i].eq(data.word_select(i, 8).as_signed()) for i in range(rows)]

        # Results: ADD / LUT words straight to dst (tokens past M masked), the pool's one row
        # to a register that VEC_POOL_WB spreads over the channel words.
        out = vec.o_stream
        low = Cat(out.payload.data[i][:8] for i in range(rows))
        with m.If(out.valid & s.vec_pooling):
            m.d.sync += [s.pool_out.eq(low), s.pool_ready.eq(1)]
        m.d.sync += v.out_done.eq(v.out == v.words)
        with m.If(out.valid & s.vec_elementwise):
            last_block = v.out >= v.last_block
            # refused: dbase + out >= act words, as out >= write_room (act words - dbase,
            # set with dbase): one comparator of registers, not the address adder and then
            # the comparator (a routed ulx3s_85f top's v_out -> vec_write_error, 10.25 ns).
            s.post_write(v.dbase + v.out, low, Mux(last_block, v.last_mask, (1 << rows) - 1),
                         writer="vec", refused=v.out >= v.write_room)
            m.d.sync += v.out.eq(v.out + 1)

    # -- ATTN ---------------------------------------------------------------------------------

    def _attn_check(self, m, s):
        """``hw.isa.validate`` of an ATTN, on the latched fields, in its order."""
        p, a = self._params, s.a
        pr = s.pr_of[Opcode.ATTN]
        width = pr[0]

        def span_bad(addr, gap):
            # act_span(t, width, cols): ((ceil(t / rows) - 1) * cols + width) * rows, and
            # addr + span > act_depth  <=>  gap * rows > act_depth - addr - width * rows. The
            # right side is a register (the address is a field; width, pr[0], lands one MUL
            # step before the gap pr[1] and two before pr[2], so the register holds it by the
            # cycle after MUL, when ATTN_CHECK reads it): one comparator in the check, not two
            # adders and a comparator in series. The room (at most act_depth) is kept as
            # whether it is >= 0 and its low bits, as _past's: the comparator is as wide as
            # act_depth, beside an OR of the span's bits above it (not 64 bits wide).
            room_full = Signal(signed(64))
            m.d.comb += room_full.eq(p.act_depth - addr - width * p.rows)
            fits = Signal(name=f"attn_room_{addr.name}_fits")
            room = Signal(p.act_depth.bit_length(), name=f"attn_room_{addr.name}")
            m.d.sync += [fits.eq(room_full >= 0), room.eq(room_full)]
            return ((addr % p.rows) != 0) | _span_over_room(gap * p.rows, fits, room)

        with _verdict(m, s, "ATTN_CHECK", [
                ((a.flags & ~int(AttnFlag.CAUSAL)) != 0, ErrorCode.BAD_FIELD),
                # One rule in two (the same code, side by side: the verdict is the same),
                # each a narrower OR into its own register.
                ((a.t == 0) | (a.heads == 0) | (a.head_dim == 0) | (a.head_dim > p.head_dim),
                 ErrorCode.BAD_SHAPE),
                ((a.window == 0) | (a.window > p.window) | (a.src_cols < width)
                 | (a.dst_cols < width), ErrorCode.BAD_SHAPE),
                (span_bad(a.q_addr, pr[1]) | span_bad(a.k_addr, pr[1])
                 | span_bad(a.v_addr, pr[1]), ErrorCode.BAD_ADDRESS),
                (_past(s, a.quant_addr, 1, isa.quant_depth(p)), ErrorCode.BAD_ADDRESS),
                (span_bad(a.dst_addr, pr[2]), ErrorCode.BAD_ADDRESS)]):
            s.restart_copy()
            m.d.sync += [
                a.qbase.eq(a.q_addr // p.rows), a.kbase.eq(a.k_addr // p.rows),
                a.vbase.eq(a.v_addr // p.rows), a.dbase.eq(a.dst_addr // p.rows),
                a.h.eq(0), a.hoff.eq(0), a.h_more.eq(a.heads > 1),
            ]
            m.next = "ATTN_QUANT"

    def _attn_states(self, m, s):
        a = s.a
        self._attn_check(m, s)
        with m.State("ATTN_QUANT"):
            word, copied = s.read_quant_word(self.quant, a.quant_addr, s.attn_stall)
            fields = {name: _quant_field(word, isa.ATTN_WORD, name)
                      for name in ("score_mult", "score_shift", "out_mult", "out_shift")}
            with m.If(s.land.valid):
                m.d.sync += [getattr(a, name).eq(value) for name, value in fields.items()]
            # The verdict two cycles after the word landed (check_quant_word), as GEMM's and
            # VEC's: not from the quant port's read data into fail_code and the next state.
            s.check_quant_word(_bad_shift(a.score_shift) | _bad_shift(a.out_shift))
            with m.If(s.land_bad):
                s.fail(ErrorCode.BAD_QUANT)
            with m.Elif(copied):
                m.d.comb += s.attn_head_next.eq(1)
                m.next = "ATTN_HEAD"
        with m.State("ATTN_HEAD"):
            m.d.comb += [s.attn_stall.eq(1), s.attn_head.eq(1), s.attn_run_next.eq(1)]
            m.next = "ATTN_RUN"
        with m.State("ATTN_RUN"):
            m.d.comb += [s.attn_busy.eq(1), s.attn_run.eq(1)]
            # A gather's last read is long before the head's last row leaves, so a refused
            # read fails while ATTN_RUN still runs; attn_head_done comes the cycle after the
            # head's last write was chosen, when that (posted) write lands.
            with m.If(s.write_error("attn") | s.read_error):
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(s.attn_head_done):
                # h_more (h + 1 < heads) is a register stepped with h: the head's end decides
                # on a flip-flop, not on h's 32-bit adder and comparator (a routed ulx3s_85f
                # top's a_h -> attn_head_next -> the head flags' copies, 10.44 ns at 19b101b).
                m.d.sync += [a.h.eq(a.h + 1), a.hoff.eq(a.hoff + a.head_dim),
                             a.h_more.eq(a.h + 2 < a.heads)]
                with m.If(a.h_more):
                    m.d.comb += s.attn_head_next.eq(1)
                    m.next = "ATTN_HEAD"
                with m.Else():
                    s.next_instruction("FETCH")
            with m.Else():
                m.d.comb += s.attn_run_next.eq(1)

    def _attn(self, m, s, attn):
        """Row gathers into the attention unit and the scatter of its rows, one head at a time.

        Q, K and V rows are column slices of act tensors: element ``(t, c)`` is byte ``t % rows``
        of act word ``base + (t // rows) * src_cols + h * head_dim + c``, so a row is
        ``head_dim`` word reads. Two gatherers share the act read port (alternating when both
        want it): K/V rows (``2 * head_dim`` reads each) run ahead of Q rows as far as the unit
        takes them, so a centred window's later keys are never held back behind a query.
        Elements past the instruction's ``head_dim`` stay 0 (a zero-padded head is exact).
        Each output row is written back element by element (one byte lane per word)."""
        p, a = self._params, s.a
        hd_max = p.head_dim
        cfg = attn.i_cfg.payload
        cfg_pending = Signal()
        m.d.comb += [
            attn.i_cfg.valid.eq(cfg_pending), cfg.seq_len.eq(a.t), cfg.window.eq(a.window),
            cfg.causal.eq(a.flags[0]), cfg.score_mult.eq(a.score_mult),
            cfg.score_shift.eq(a.score_shift), cfg.out_mult.eq(a.out_mult),
            cfg.out_shift.eq(a.out_shift),
        ]
        assert int(AttnFlag.CAUSAL) == 1
        with m.If(attn.i_cfg.valid & attn.i_cfg.ready):
            m.d.sync += cfg_pending.eq(0)

        gathers = []
        for name, stream, count in (("kv", attn.i_kv, 2), ("q", attn.i_q, 1)):
            # The registers that ATTN_HEAD restarts to constants have no domain reset: Yosys
            # merged the two into one synchronous reset, the OR of the head flag and the
            # domain's reset, a LUT between the reset's global network and their LSR inputs
            # (a routed ulx3s_85f top's `kv_c` / `kv_full`, 11.08 ns, 4.1 ns of it from the
            # global network into the LUT). The head flag, a register, is their LSR alone now.
            # What they hold after a reset is never used: every ATTN restarts them in its
            # ATTN_HEAD, the act reads wait for ATTN_RUN (``want``), and the row is offered to
            # the unit only once ``armed`` (reset by the domain, set by a head) is high, so no
            # stale ``valid`` is withdrawn untaken at the restart.
            g = SimpleNamespace(name=name, stream=stream, count=count, sel=int(name == "q"),
                                t=Signal(16, name=f"{name}_t", reset_less=True),
                                c=Signal(9, name=f"{name}_c", reset_less=True),
                                full=Signal(name=f"{name}_full", reset_less=True),
                                row=Signal(count * 8 * hd_max, name=f"{name}_row",
                                           reset_less=True),
                                t_more=Signal(name=f"{name}_t_more", reset_less=True),
                                c_more=Signal(name=f"{name}_c_more", reset_less=True),
                                armed=Signal(name=f"{name}_armed"),
                                want=Signal(name=f"{name}_want"))
            # g.t < a.t and g.c < count * head_dim, kept in registers beside g.t and g.c (both
            # only count up by one or restart at 0, and ATTN_CHECK refused t == 0 and
            # head_dim == 0), so the act read enable does not wait for the extent arithmetic.
            # ``want`` = t_more & c_more & ~full & attn_run, a register of its own loaded with
            # that AND of the four's next values (_attn_gather): the pick and the act read
            # address start at flip-flops beside the gatherer, not at the AND behind the
            # sequencer's state flag (attn_run -> want -> the pick -> the address -> the act
            # scratchpad's issue address: four routed ulx3s_85f tops in a row, 10.69 ns at
            # 19b101b). The domain's reset clears it, as attn_run.
            gathers.append(g)
        kv, q = gathers
        # ATTN_HEAD's resets come from copies of the state flag, one per gatherer and one for
        # the scatter: each a register loaded with "the next state is ATTN_HEAD" (every
        # transition into it sets attn_head_next), so it is high exactly in ATTN_HEAD. The
        # state flag itself fanned out to the resets and enables of all three across the die
        # (a placed ulx3s_85f top's o_t / q_c / kv_c group).
        for g in gathers:
            g.head = unshared_register(m, s.attn_head_next, name=f"{g.name}_head",
                                       platform=s.platform)
        s.attn_scatter_head = unshared_register(m, s.attn_head_next, name="o_head",
                                                platform=s.platform)
        turn = Signal()
        pick_kv = kv.want & (~q.want | ~turn)
        pick_q = q.want & ~pick_kv
        m.d.sync += turn.eq(Mux(pick_kv, 1, Mux(pick_q, 0, turn)))
        # Each gatherer's next read address is a register, ``addr``: K / Q element c of the
        # row at ``base + blk + hoff + c``, V element c at ``vbase + blk + hoff + c - head_dim``
        # (it steps by one, jumps to V after the K half, and restarts at each row and head), so
        # the act read address is one multiplexer after the pick, not an adder chain. The
        # rows' starts ``base + blk + hoff`` (``row_addr``) and ``vbase + blk + hoff``
        # (``v_addr``, K/V) are registers too, stepped by ``src_cols`` with the token block:
        # a row's handshake loads ``addr`` from one adder, not from a sum of four registers
        # (the Q gather's handshake into its address, a placed ulx3s_85f top's group). The
        # address width wraps as the sums into ``addr`` did.
        for g, base in ((kv, a.kbase), (q, a.qbase)):
            g.addr = Signal.like(self.act.r_addr, name=f"{g.name}_addr")
            g.row_addr = Signal.like(self.act.r_addr, name=f"{g.name}_row_addr")
            g.base = base
        kv.v_addr = Signal.like(self.act.r_addr, name="kv_v_addr")
        with m.If(kv.want | q.want):                # = pick_kv | pick_q, one gate shorter
            s.read(self.act, Mux(pick_kv, kv.addr, q.addr))
            m.d.sync += [s.d1.valid.eq(1), s.d1.sel.eq(pick_q),
                         s.d1.index.eq(Mux(pick_kv, kv.c, q.c))]
        # The landing word's row slot and "last element" flags, registers loaded from the
        # stage before land (its index moves into land unchanged): the byte enables of the
        # gathered rows and their full flags do not wait for the slot's compare and subtract.
        pre = s.stages[-2]
        land_slot = Signal(range(2 * hd_max), name="attn_land_slot")
        m.d.sync += land_slot.eq(Mux(pre.index >= a.head_dim,
                                     pre.index - a.head_dim + hd_max, pre.index))
        for g in gathers:
            g.land_last = Signal(name=f"{g.name}_land_last")
            m.d.sync += g.land_last.eq(pre.index == g.count * a.head_dim - 1)
        # The act port's landed word, a register of its own loaded in every cycle, and the
        # gatherers' byte selects behind it: the read data of the act scratchpad's block RAMs
        # went through their bank multiplexer and the byte select into the landing byte in one
        # cycle, across the die (the `q_land_byte` / `kv_land_byte` endpoints of four routed
        # ulx3s_85f tops). The same cycles as the byte register it replaces.
        attn_word = Signal.like(self.act.r_data, name="attn_land_word")
        m.d.sync += attn_word.eq(self.act.r_data)
        for g, picked in ((kv, pick_kv), (q, pick_q)):
            self._attn_gather(m, s, g, picked, land_slot, attn_word)
        with m.If(s.attn_head):
            m.d.sync += cfg_pending.eq(1)
        self._attn_scatter(m, s, attn)

    def _attn_gather(self, m, s, g, picked, land_slot, attn_word):
        """One gatherer's read steps, the landing of its bytes in its row, the row's handshake
        with the unit and the restart at each head (``_attn``)."""
        p, a = self._params, s.a
        rows, hd_max = p.rows, p.head_dim
        # The next values of the flags in ``want`` (_attn), each a default and the updates of
        # the steps below in their order (a later one wins): the flags load them, and ``want``
        # loads their AND with "the next state is ATTN_RUN".
        nxt = {name: Signal(name=f"{g.name}_{name}_next")
               for name in ("t_more", "c_more", "full")}
        m.d.comb += [nxt[name].eq(getattr(g, name)) for name in nxt]
        m.d.sync += [getattr(g, name).eq(nxt[name]) for name in nxt]
        m.d.sync += g.want.eq(nxt["t_more"] & nxt["c_more"] & ~nxt["full"] & s.attn_run_next)
        with m.If(picked):
            m.d.sync += [g.c.eq(g.c + 1), g.addr.eq(g.addr + 1)]
            m.d.comb += nxt["c_more"].eq(g.c + 1 != g.count * a.head_dim)
            if g.count == 2:
                with m.If(g.c + 1 == a.head_dim):
                    m.d.sync += g.addr.eq(g.v_addr)
        _, lane = _divmod(g.t, rows)
        # The landed word goes into a register (attn_word, _attn) and its slot and flags into
        # registers beside the gatherer; the row takes the byte picked from attn_word a cycle
        # later. (The act port's read data fanned out to every byte of the K/V and Q rows
        # across the die: the routed ulx3s_85f top's i_kv / i_q group; then the byte select
        # sat between the act scratchpad's block RAMs and a landing byte register.) g.t only
        # moves after the row is full, so the lane pick sees the landing row's t.
        byte = Signal(8, name=f"{g.name}_land_byte")
        mine = Signal(name=f"{g.name}_land_mine")
        slot = Signal.like(land_slot, name=f"{g.name}_land_slot")
        last = Signal(name=f"{g.name}_land_last_r")
        m.d.comb += byte.eq(attn_word.word_select(lane, 8))
        m.d.sync += [mine.eq(s.land.valid & s.attn_run & (s.land.sel == g.sel)),
                     slot.eq(land_slot), last.eq(g.land_last)]
        # K/V: element c of K at byte c, of V at byte hd_max + c - head_dim (land_slot).
        with m.If(mine):
            m.d.sync += g.row.word_select(
                slot[:(g.count * hd_max - 1).bit_length() or 1], 8).eq(byte)
            with m.If(last):
                m.d.comb += nxt["full"].eq(1)
        # The row's transfer to the unit is registered (`took`) and the gatherer moves on
        # from that register, a cycle later: the unit's `ready` (logic of its stage counters)
        # reaches one flip-flop here, not the enables of t, c, addr and their flags (the
        # routed ulx3s_85f board top's `kv_c_more` / `kv_addr` group, 10.66 ns from the
        # unit's `running`). `valid` drops in that cycle; no read of the row is in flight
        # then (its last byte landed before `full`), so nothing lands in between. A transfer
        # in ATTN_HEAD, whose restart overrides the move, is not carried over.
        took = Signal(name=f"{g.name}_took")
        m.d.comb += [g.stream.valid.eq(g.full & ~took & g.armed),
                     g.stream.payload.eq(g.row)]
        m.d.sync += took.eq(g.stream.valid & g.stream.ready & ~g.head)
        with m.If(took):
            m.d.sync += [g.c.eq(0), g.t.eq(g.t + 1), g.addr.eq(g.row_addr)]
            m.d.comb += [nxt["full"].eq(0), nxt["c_more"].eq(1),
                         nxt["t_more"].eq(g.t + 1 != a.t)]
            with m.If(lane == rows - 1):
                m.d.sync += [g.row_addr.eq(g.row_addr + a.src_cols),
                             g.addr.eq(g.row_addr + a.src_cols)]
                if g.count == 2:
                    m.d.sync += g.v_addr.eq(g.v_addr + a.src_cols)
        with m.If(g.head):
            # a.hoff already holds this head's offset (ATTN_CHECK or the last head's end).
            m.d.sync += [g.t.eq(0), g.c.eq(0), g.row.eq(0), g.armed.eq(1),
                         g.addr.eq(g.base + a.hoff), g.row_addr.eq(g.base + a.hoff)]
            m.d.comb += [nxt["full"].eq(0), nxt["t_more"].eq(1), nxt["c_more"].eq(1)]
            if g.count == 2:
                m.d.sync += g.v_addr.eq(a.vbase + a.hoff)

    def _attn_scatter(self, m, s, attn):
        p, a = self._params, s.a
        rows, hd_max = p.rows, p.head_dim
        o_row = Signal(8 * hd_max)
        o_busy = Signal()
        o_last = Signal()
        o_c = Signal(8)
        o_c_last = Signal()     # o_c == head_dim - 1: a register stepped with o_c
        o_t = Signal(16)
        # The write address, a register: dbase + hoff + the token block's offset + o_c (as the
        # gathers' ``addr``); o_base, dbase + hoff + the block's offset, a register too, so
        # the next row's address is one adder away, not three.
        o_addr = Signal.like(self.act.w_addr)
        o_base = Signal.like(self.act.w_addr)
        _, lane = _divmod(o_t, rows)
        # The unit's rows reach the scatter through a register slice: the unit's output FIFO
        # (its valid, and its read enable behind the ready) and the scatter's row register
        # (o_row's enables, and o_busy behind the ready) meet at flip-flops, not across the
        # die (a placed ulx3s_85f top's worst group, 15.4 ns). One cycle more per head.
        m.submodules.attn_rows = rows_in = SkidBuffer(attn.o_stream.payload.shape())
        connect(m, attn.o_stream, rows_in.i_stream)
        o_in = rows_in.o_stream
        m.d.comb += [o_in.ready.eq(~o_busy & s.attn_run),
                     rows_in.flush.eq(_skid_flush(m, s, "attn_rows"))]
        # (Read in ATTN_RUN only: after a FAIL, the sequencer is in IDLE when it rises.)
        m.d.sync += s.attn_head_done.eq(o_busy & o_last & o_c_last)
        # o_c and o_c_last restart at a row's end and at the head (every ATTN's rows come
        # after its ATTN_HEAD), not when a row loads: their enables are o_busy and the head
        # flag, two flip-flops (the row handshake in them was a routed ulx3s_85f top's o_c
        # group, 10.46 ns).
        with m.If(o_in.valid & o_in.ready):
            m.d.sync += [o_row.eq(o_in.payload.data), o_busy.eq(1),
                         o_last.eq(o_in.payload.last)]
        with m.If(o_busy):
            # Byte o_c of the row is o_row's low byte: the row shifts down a byte a write,
            # no head_dim-way byte multiplexer of o_c before the write-back registers (a
            # routed ulx3s_85f top's wr#_r from o_c, 10.25 ns).
            m.d.sync += [o_row.eq(o_row >> 8), o_c.eq(o_c + 1), o_addr.eq(o_addr + 1),
                         o_c_last.eq(o_c + 2 == a.head_dim)]
            with m.If(o_c_last):
                m.d.sync += [o_busy.eq(0), o_t.eq(o_t + 1), o_addr.eq(o_base), o_c.eq(0),
                             o_c_last.eq(a.head_dim == 1)]
                with m.If(lane == rows - 1):
                    m.d.sync += [o_base.eq(o_base + a.dst_cols),
                                 o_addr.eq(o_base + a.dst_cols)]
            # A FAIL (drain_abort) stops the write only: the row's registers step on o_busy
            # alone (a FAIL in their enables was two routed ulx3s_85f tops' worst group,
            # drain_abort -> the writer's select -> o_c / o_addr / o_base, 11.9 ns); they
            # load afresh with the next row or head, and o_busy clears below.
            with m.If(~s.drain_abort):
                s.post_write(o_addr, Cat(o_row[:8] for _ in range(rows)), 1 << lane,
                             writer="attn")
        with m.If(s.drain_abort):
            m.d.sync += o_busy.eq(0)             # FAIL: the rest of the row is not written
        with m.If(s.attn_scatter_head):
            m.d.sync += [o_t.eq(0), o_busy.eq(0), o_base.eq(a.dbase + a.hoff),
                         o_addr.eq(a.dbase + a.hoff), o_c.eq(0), o_c_last.eq(a.head_dim == 1)]

    # -- LNORM --------------------------------------------------------------------------------

    def _lnorm_states(self, m, s):
        """``hw.isa.validate`` of an LNORM, then the epsilon and shift checks of
        ``sw.isasim`` (``BAD_QUANT`` before any write), then the rows."""
        p, n = self._params, s.n
        pr = s.pr_of[Opcode.LNORM]
        with _verdict(m, s, "LNORM_CHECK", [
                ((n.m == 0) | (n.c == 0) | (n.c > LN_MAX_DIM), ErrorCode.BAD_SHAPE),
                (_act_bad(s, n.a_addr, pr[0]), ErrorCode.BAD_ADDRESS),
                (_past(s, n.quant_addr, n.c + 1, isa.quant_depth(p)), ErrorCode.BAD_ADDRESS),
                (_act_bad(s, n.dst_addr, pr[0]), ErrorCode.BAD_ADDRESS)]):
            blocks = _ceil_div(n.m, p.rows)
            _, last_i = _divmod(n.m - 1, p.rows)
            s.restart_copy()
            m.d.sync += [n.abase.eq(n.a_addr // p.rows), n.dbase.eq(n.dst_addr // p.rows),
                         n.blocks.eq(blocks),
                         n.eps_max.eq(pr[3]),
                         n.blocks_1.eq(blocks - 1), n.c_1.eq(n.c - 1),
                         n.last_mask.eq(_last_block_mask(last_i, p.rows))]
            m.next = "LNORM_QCHECK"
        with m.State("LNORM_QCHECK"):
            # Word 0: epsilon; words 1..c: the channels' shifts.
            m.d.comb += s.lnorm_stall.eq(1)
            copied = s.issue(self.quant, n.quant_addr + s.i, _NO_SEL, last=n.c)
            # The copy's end a cycle late (copied_r), when the last word's check is in
            # land_bad: each word is checked from registers, the cycle after it landed.
            copied_r = Signal(name="ln_q_copied")
            m.d.sync += copied_r.eq(copied)
            m.d.comb += s.lnorm_start.eq(copied_r & ~s.land_bad)
            word = self.quant.r_data
            eps = _quant_field(word, isa.EPS_WORD, "eps")
            shift = _quant_field(word, isa.LNORM_WORD, "shift")
            # Word 0's epsilon and words 1..c's shifts from registers loaded every cycle
            # (eps_r, shift_r): no comparator and no load enable behind the read port (both
            # fail with BAD_QUANT). The epsilon's bound, eps <= eps_max << 16, is decided in
            # two register stages (the 64-bit comparison in one was a routed path of the
            # ulx3s_85f board top, as was n.eps's load enable from the landing's index), so
            # its verdict reaches land_bad a cycle after a shift's would: still no later than
            # the last shift's (c >= 1: word 1 lands at least a cycle after word 0).
            first = s.land.index == 0
            eps_landed = Signal(name="ln_eps_landed")
            shift_landed = Signal(name="ln_shift_landed")
            shift_r = Signal.like(shift, name="ln_shift_r")
            eps_r = Signal.like(eps, name="ln_eps_r")
            m.d.sync += [eps_landed.eq(s.land.valid & first),
                         shift_landed.eq(s.land.valid & ~first), shift_r.eq(shift),
                         eps_r.eq(eps)]
            with m.If(eps_landed):
                m.d.sync += n.eps.eq(eps_r)
            # eps > eps_max << 16: its bits above 16 above eps_max, or equal to it with any
            # of the low 16 bits set.
            eps_checked = Signal(name="ln_eps_checked")
            eps_hi_gt = Signal(name="ln_eps_hi_gt")
            eps_hi_eq = Signal(name="ln_eps_hi_eq")
            eps_lo_nz = Signal(name="ln_eps_lo_nz")
            m.d.sync += [eps_checked.eq(eps_landed), eps_hi_gt.eq(eps_r[16:] > n.eps_max),
                         eps_hi_eq.eq(eps_r[16:] == n.eps_max), eps_lo_nz.eq(eps_r[:16] != 0)]
            m.d.sync += s.land_bad.eq(
                shift_landed & ((shift_r < SHIFT_MIN) | (shift_r > SHIFT_MAX))
                | eps_checked & (eps_hi_gt | eps_hi_eq & eps_lo_nz))
            with m.If(s.land_bad):
                m.d.sync += copied_r.eq(0)
                s.fail(ErrorCode.BAD_QUANT)
            with m.Elif(copied_r):
                m.d.sync += [copied_r.eq(0), s.lnorm_run.eq(1)]
                m.next = "LNORM_RUN"
        with m.State("LNORM_RUN"):
            # lnorm_run is a register, high exactly in LNORM_RUN (set on the way in, cleared
            # on the way out): the walkers' steps and the unit's ready read a flip-flop, not
            # the state's decode.
            m.d.comb += s.lnorm_busy.eq(1)
            # lnorm_done follows the last write's step by a cycle: its posted write lands then.
            with m.If(s.write_error("lnorm") | s.read_error):
                m.d.sync += s.lnorm_run.eq(0)
                s.fail(ErrorCode.BAD_ADDRESS)
            with m.Elif(s.lnorm_done):
                m.d.sync += s.lnorm_run.eq(0)
                s.next_instruction("FETCH")

    def _lnorm(self, m, s, ln):
        """Token blocks into the token-parallel LayerNorm unit and back, one act word (``rows``
        tokens of one channel) a beat: block ``b``'s channel ``c`` is act word
        ``base + b * C + c``; the channel's LNORM word goes with it as the parameter beat. Each
        stream runs through a beat FIFO (emptied at every LNORM start), one word a cycle."""
        p, n = self._params, s.n
        cfg_pending = Signal()
        m.d.comb += [ln.i_cfg.valid.eq(cfg_pending), ln.i_cfg.payload.dim.eq(n.c),
                     ln.i_cfg.payload.eps.eq(n.eps)]
        with m.If(ln.i_cfg.valid & ln.i_cfg.ready):
            m.d.sync += cfg_pending.eq(0)
        start = Signal()
        m.d.comb += start.eq(s.lnorm_start)                     # LNORM_QCHECK -> LNORM_RUN
        with m.If(start):
            m.d.sync += cfg_pending.eq(1)
        x = _BlockWalker(m, "ln_x", n, start, base=n.abase)
        q = _BlockWalker(m, "ln_q", n, start)
        o = _BlockWalker(m, "ln_o", n, start, base=n.dbase)
        x_fifo = _beat_fifo(m, "ln_x_fifo", 8 * p.rows + 1, start)
        q_fifo = _beat_fifo(m, "ln_q_fifo", ln.i_param.payload.shape().size, start)
        o_fifo = _beat_fifo(m, "ln_o_fifo", 8 * p.rows + 1, start)
        in_flight = Scratchpad.latency + 1
        # Gathers: a read a cycle while the FIFO has room for every read in flight.
        for w, port, fifo, addr in ((x, self.act, x_fifo, x.word),
                                    (q, self.quant, q_fifo, n.quant_addr + 1 + q.c)):
            # The room test from the last cycle's level, with one word to spare (the level
            # grows by at most one a cycle): a register in front of the step, not the FIFO
            # level's comparator.
            room = Signal(name=f"{w.name}_room")
            m.d.sync += room.eq(fifo.w_level < _LN_FIFO_DEPTH - in_flight - 1)
            m.d.comb += w.step.eq(s.lnorm_run & ~w.done & room)
            with m.If(w.step):
                s.read(port, addr)
        x_tags = _tags(m, "ln_x", Cat(x.step, x.final), Scratchpad.latency)
        q_tags = _tags(m, "ln_q", q.step, Scratchpad.latency)
        word = self.quant.r_data
        prm = Signal(ln.i_param.payload.shape())
        m.d.comb += [
            prm.gamma.eq(_quant_field(word, isa.LNORM_WORD, "gamma")),
            prm.beta.eq(_quant_field(word, isa.LNORM_WORD, "beta")),
            prm.mult.eq(_quant_field(word, isa.LNORM_WORD, "mult")),
            prm.shift.eq(_quant_field(word, isa.LNORM_WORD, "shift")),
            x_fifo.w_en.eq(x_tags[0]), x_fifo.w_data.eq(Cat(self.act.r_data, x_tags[1])),
            ln.i_stream.valid.eq(x_fifo.r_rdy), ln.i_stream.payload.x.eq(x_fifo.r_data),
            ln.i_stream.payload.last.eq(x_fifo.r_data[8 * p.rows]),
            x_fifo.r_en.eq(ln.i_stream.ready),
            q_fifo.w_en.eq(q_tags[0]), q_fifo.w_data.eq(prm),
            ln.i_param.valid.eq(q_fifo.r_rdy), ln.i_param.payload.eq(q_fifo.r_data),
            q_fifo.r_en.eq(ln.i_param.ready),
            o_fifo.w_en.eq(ln.o_stream.valid), o_fifo.w_data.eq(ln.o_stream.payload.data),
            ln.o_stream.ready.eq(o_fifo.w_rdy & s.lnorm_run),
        ]
        # Write back: a word a cycle, tokens past M masked.
        last_block = o.last_b
        m.d.comb += [o.step.eq(o_fifo.r_rdy & s.lnorm_run & ~o.done),
                     o_fifo.r_en.eq(o.step)]
        with m.If(o.step):
            s.post_write(o.word, o_fifo.r_data[:8 * p.rows],
                         Mux(last_block, n.last_mask, (1 << p.rows) - 1), writer="lnorm")
        m.d.comb += s.lnorm_done.eq(o.done)

    # -- EMBED --------------------------------------------------------------------------------

    def _embed_states(self, m, s):
        """``dst (T, C) = table[ids]``: ``hw.isa.validate``, every id checked (``BAD_TOKEN``,
        before any write), then per token its id (4 bytes of the int32 ids tensor, which the
        act layout stores contiguously: id ``t`` is bytes ``4t .. 4t+3``) and its table row
        (``C`` bytes of the weight scratchpad from ``table_addr + id * C``), one byte per
        cycle into byte lane ``t % rows`` of the dst words. (EMBED is the VEC unit's work in
        ``hw.isa.unit_of``; it counts as VEC busy time.)"""
        p, e = self._params, s.e
        pr = s.pr_of[Opcode.EMBED]
        with _verdict(m, s, "EMBED_CHECK", [
                ((e.t == 0) | (e.c == 0) | (e.vocab == 0), ErrorCode.BAD_SHAPE),
                (_act_bad(s, e.ids_addr, _pad(e.t, p.rows) << 2), ErrorCode.BAD_ADDRESS),
                (s.wgt_misaligned(e.table_addr) | _past(s, e.table_addr, pr[0], p.wgt_depth),
                 ErrorCode.BAD_ADDRESS),
                (_act_bad(s, e.dst_addr, pr[1]), ErrorCode.BAD_ADDRESS)]):
            s.restart_copy()
            m.d.sync += [e.ibase.eq(e.ids_addr // p.rows), e.dbase.eq(e.dst_addr // p.rows),
                         e.t_i.eq(0), e.t_i1.eq(1), e.blk.eq(0)]
            m.next = "EMBED_IDS"
        byte_word, _ = _divmod(s.i, p.rows)
        with m.State("EMBED_IDS"):
            m.d.comb += [s.vec_stall.eq(1), s.embed_ids.eq(1)]
            copied = s.issue(self.act, e.ibase + byte_word, _NO_SEL, length=e.t << 2,
                             late=True)
            # An id is checked from its register e.id, the cycle after its last byte went
            # in (e.id_landed), not behind the read port's byte multiplexer: land_bad comes a
            # cycle after that, so the last id's verdict is read in EMBED_IDS_CHECK (the
            # copy's end is late: the bytes go into e.id a cycle after they land, _embed).
            m.d.sync += s.land_bad.eq(e.id_landed & (e.id >= e.vocab))
            with m.If(s.land_bad):
                s.fail(ErrorCode.BAD_TOKEN)         # unsigned: a negative id is >= vocab too
            with m.Elif(copied):
                m.next = "EMBED_IDS_CHECK"
        with m.State("EMBED_IDS_CHECK"):
            m.d.comb += s.vec_stall.eq(1)
            m.d.sync += s.land_bad.eq(e.id_landed & (e.id >= e.vocab))
            with m.If(s.land_bad):
                s.fail(ErrorCode.BAD_TOKEN)
            with m.Else():
                s.restart_copy()
                m.next = "EMBED_ID"
        with m.State("EMBED_ID"):
            m.d.comb += [s.vec_stall.eq(1), s.embed_ids.eq(1)]
            copied = s.issue(self.act, e.ibase + byte_word, _NO_SEL, length=e.t_i1 << 2,
                             late=True)
            with m.If(copied):
                s.restart_copy()
                m.next = "EMBED_ROW"
        with m.State("EMBED_ROW"):
            # The controller's one multiplier: id * C lands in `prod` _MUL_LATENCY cycles later.
            s.mul_pick(e.id, e.c)
            m.d.comb += s.vec_stall.eq(1)
            m.next = "EMBED_ROW_MUL1"
        for k in range(1, _MUL_LATENCY):
            with m.State(f"EMBED_ROW_MUL{k}"):
                m.d.comb += s.vec_stall.eq(1)
                m.next = f"EMBED_ROW_MUL{k + 1}" if k + 1 < _MUL_LATENCY else "EMBED_ROW_ADDR"
        with m.State("EMBED_ROW_ADDR"):
            m.d.comb += s.vec_stall.eq(1)
            m.d.sync += e.row.eq(e.table_addr + s.prod)
            if s.cols_pow2:
                m.next = "EMBED_COPY"
            else:
                m.d.sync += s.div_start.eq(1)
                m.next = "EMBED_ROW_DIV"
        if not s.cols_pow2:
            with m.State("EMBED_ROW_DIV"):
                # The row's first word and lane: the copy's read and landing counters start
                # there (_embed_copy).
                m.d.comb += s.vec_stall.eq(1)
                with m.If(~s.div_start & s.rdiv.done):
                    m.d.sync += [e.rd_word.eq(s.rdiv.quotient), e.rd_lane.eq(s.rdiv.remainder),
                                 e.land_lane.eq(s.rdiv.remainder)]
                    m.next = "EMBED_COPY"
        with m.State("EMBED_COPY"):
            self._embed_copy(m, s)

    def _embed(self, m, s):
        """The ids' bytes go into ``e.id`` a cycle after they land; ``e.id_landed``: its last
        byte went in the cycle before (EMBED_IDS checks the id then).

        The landed word, its valid flag and its index go into registers first (``ids_row``
        ...), and the byte pick works on those: the act scratchpad's read data, behind its
        ``u_live`` gate, reached ``e.id`` through the pick (the routed ``ulx3s_85f`` top of
        ``4f0d32b``, 10.20 ns)."""
        e = s.e
        row = Signal.like(self.act.r_data, name="ids_row")
        take = Signal(name="ids_take")
        index = Signal.like(s.land.index, name="ids_index")
        m.d.sync += [row.eq(self.act.r_data), take.eq(s.land.valid & s.embed_ids),
                     index.eq(s.land.index)]
        _, land_lane = _divmod(index, self._params.rows)
        with m.If(take):
            m.d.sync += e.id.word_select(index[:2], 8).eq(row.word_select(land_lane, 8))
        m.d.sync += e.id_landed.eq(take & (index[:2] == 3))
        # Token t_i is the last, a register a cycle behind t_i (which moves only at the end of
        # a token's copy, several states before the next test): the retire decision reads a
        # flip-flop, not an adder and a comparator.
        m.d.sync += e.t_last.eq(e.t_i1 == e.t)

    @staticmethod
    def _embed_land(m, s):
        """``s.e.land_valid`` / ``land_index``: the copy's landing stage for the row copy's
        write, in registers of its own beside the write-back registers (the same values as
        ``s.land``, a cycle behind the stage before it). ``s.land`` fans out to every unit's
        gather; its wire to the embed writer's registers was a routed ulx3s_85f top's
        ``wr#_r`` group (10.46 ns)."""
        before = s.stages[-2]
        s.e.land_valid = unshared_register(m, before.valid, name="embed_land_valid",
                                           platform=s.platform)
        s.e.land_index = unshared_register(m, before.index, name="embed_land_index",
                                           platform=s.platform)

    def _embed_copy(self, m, s):
        p, e = self._params, s.e
        m.d.comb += s.vec_busy.eq(1)
        if s.cols_pow2:
            word, _ = _divmod(e.row + s.i, p.cols)
            _, lane = _divmod(e.row + e.land_index, p.cols)
        else:
            # Byte i of the row is lane (row + i) % cols of word (row + i) // cols: a word
            # and lane stepped with each read (rd_*) and a lane stepped with each landing
            # (land_lane), from the row's division (EMBED_ROW_DIV), not a divider each cycle.
            word, lane = e.rd_word, e.land_lane
            with m.If(~s.issued_all):
                wrap = e.rd_lane == p.cols - 1
                m.d.sync += [e.rd_lane.eq(Mux(wrap, 0, e.rd_lane + 1)),
                             e.rd_word.eq(e.rd_word + wrap)]
            with m.If(e.land_valid):
                m.d.sync += e.land_lane.eq(Mux(e.land_lane == p.cols - 1, 0, e.land_lane + 1))
        _, row_lane = _divmod(e.t_i, p.rows)
        copied = s.issue(self.wgt, word, _NO_SEL, length=e.c)
        with m.If(e.land_valid):
            byte = self.wgt.r_data.word_select(lane, 8)
            s.post_write(e.dbase + e.blk + e.land_index, Cat(byte for _ in range(p.rows)),
                         1 << row_lane, writer="embed")
        # ``copied`` follows the last landed byte by a cycle: its posted write lands then.
        with m.If(s.write_error("embed")):
            s.fail(ErrorCode.BAD_ADDRESS)
        with m.Elif(copied):
            s.restart_copy(e.t_i1 << 2)
            m.d.sync += [e.t_i.eq(e.t_i1), e.t_i1.eq(e.t_i1 + 1)]
            with m.If(row_lane == p.rows - 1):
                m.d.sync += e.blk.eq(e.blk + e.c)
            m.next = "EMBED_ID"
            with m.If(e.t_last):
                s.next_instruction("FETCH")

    def _gemm_feeder(self, m, s, core):
        """The feeder's three channels, each on its own scratchpad read port and GemmCore write
        port: A (``K`` act words of token block ``mb``), W (``K`` weight rows of column tile
        ``nt``) and the quant words of the tile's ``cols`` columns (those past ``N`` not read:
        zero goes to the core). While ``feeding``, channel ``i < length`` issues read ``i``;
        its word lands ``Scratchpad.latency`` cycles later in a register and from there goes
        into word ``i`` of the tile's bank (index, bank and ``live`` ride along in registers)."""
        p, g = self._params, s.g
        last = []
        bank = GemmCore.Buffer
        for buf, port, length, base in (
                (bank.ACT, self.act, g.k, g.atile),
                (bank.WGT, self.wgt, g.k, g.wtile),
                (bank.QUANT, self.quant, p.cols, g.qtile)):
            b, name = buf.value, buf.name.lower()
            i = Signal(range(max(p.k_depth, p.cols) + 1), name=f"feed_{name}_i")
            go = Signal(name=f"feed_{name}_go")
            # i < length as a register (`more`), stepped with i on its next value: the read
            # enable and the port's address multiplexer wait for no comparator (every
            # length is at least 1, so a reset sets it). The quant channel's `live`, column
            # col0 + i < N, is a register the same way: a reset starts a tile of a column tile
            # that holds column col0 (_gemm_next_tile moves col0 only to a tile that exists),
            # so it sets it. (`col0 + i < n` was an adder and a comparator in front of the
            # quant scratchpad's read enable, a routed ulx3s_85f top's `issue_r_en`.)
            more = Signal(name=f"feed_{name}_more")
            live = Signal(name=f"feed_{name}_live", init=1) if buf is bank.QUANT else 1
            m.d.comb += go.eq(s.feeding & more)
            with m.If(go):
                s.read(port, base + i, live)
                m.d.sync += [i.eq(i + 1), more.eq(i + 1 < length)]
                if buf is bank.QUANT:
                    m.d.sync += live.eq(g.col0 + i + 1 < g.n)
            with m.If(s.feed_reset):
                m.d.sync += [i.eq(0), more.eq(1)]
                if buf is bank.QUANT:
                    m.d.sync += live.eq(1)
            last.append(i + 1 >= length)
            tags = [SimpleNamespace(valid=Signal(name=f"feed_{name}_v{k}"),
                                    live=Signal(name=f"feed_{name}_live{k}"),
                                    bank=Signal(name=f"feed_{name}_bank{k}"),
                                    index=Signal.like(i, name=f"feed_{name}_index{k}"))
                    for k in range(_LANDED_LATENCY)]
            m.d.sync += [tags[0].valid.eq(go), tags[0].live.eq(live), tags[0].bank.eq(g.bank),
                         tags[0].index.eq(i)]
            for t1, t0 in zip(tags[1:], tags[:-1]):
                m.d.sync += [t1.valid.eq(t0.valid), t1.live.eq(t0.live), t1.bank.eq(t0.bank),
                             t1.index.eq(t0.index)]
            land = tags[-1]
            # The word lands in a register first (zero for a column past N) and goes into the
            # core's buffer a cycle later: the scratchpads' block RAM outputs drove the core's
            # block RAM inputs across the die (a placed ulx3s_85f top's group, 11.6-12.7 ns).
            word = port.r_data[:QUANT_LAYOUT.size] if buf is bank.QUANT else port.r_data
            word_r = Signal(len(word), name=f"feed_{name}_word")
            m.d.sync += word_r.eq(Mux(tags[-2].live, word, 0))
            m.d.comb += [core.wr_en[b].eq(land.valid), core.wr_bank[b].eq(land.bank),
                         core.wr_addr[b].eq(land.index), core.wr_data[b].eq(word_r)]
        if p.cols < _LANDED_LATENCY - 1:
            # GEMM_LOAD lasts at least _LANDED_LATENCY - 1 cycles even where K and cols are
            # both shorter (GEMM_START: no read of the core overtakes a write of the feeder).
            feed_min = Signal(range(_LANDED_LATENCY), name="feed_min")
            with m.If(s.feeding & (feed_min < _LANDED_LATENCY - 2)):
                m.d.sync += feed_min.eq(feed_min + 1)
            with m.If(s.feed_reset):
                m.d.sync += feed_min.eq(0)
            last.append(feed_min + 1 >= _LANDED_LATENCY - 1)
        m.d.comb += s.feed_last.eq(Cat(last).all())

    def _gemm_lane_luts(self, m, s, core, platform):
        """One copy of the GEMM's LUT per result lane (block RAMs), so that a captured row's
        ``cols`` results are looked up together; the looked-up row lands in the tile
        ``BlockRAM.latency`` cycles after the row (``lut_busy`` meanwhile). The copies load
        after GEMM_QCHECK, one entry per cycle, under the first tiles' loads and compute
        (``lut_loading``: the drainer captures no row meanwhile)."""
        p = self._params
        ld_i = Signal(range(LUT_SIZE + 1), init=LUT_SIZE)      # next entry; LUT_SIZE: idle
        # The entries land in a register (glut_ld_data) and go into the lane copies a cycle
        # later: the LUT scratchpad's block RAM outputs drove the eight copies' write data
        # across the die (a placed ulx3s_85f top's gemm_lut# group, 11.4 ns).
        ld_tags = [(Signal(name=f"glut_ld_v{i}"), Signal(8, name=f"glut_ld_a{i}"))
                   for i in range(_LANDED_LATENCY)]
        ld_data = Signal(8, name="glut_ld_data")
        m.d.sync += ld_data.eq(self.lut.r_data)
        ld_issue = ld_i < LUT_SIZE
        with m.If(ld_issue):
            s.read(self.lut, Cat(ld_i[:8], s.g.lut))
            m.d.sync += ld_i.eq(ld_i + 1)
        with m.If(s.lut_load_start):
            m.d.sync += ld_i.eq(0)
        with m.If(s.drain_abort):
            m.d.sync += ld_i.eq(LUT_SIZE)
        m.d.sync += [ld_tags[0][0].eq(ld_issue & ~s.drain_abort), ld_tags[0][1].eq(ld_i[:8])]
        for (v, a), (v0, a0) in zip(ld_tags[1:], ld_tags[:-1]):
            m.d.sync += [v.eq(v0), a.eq(a0)]
        ld_land, ld_addr = ld_tags[-1]
        # lut_loading = ld_issue | any tag valid, computed a cycle ahead from the next values
        # of ld_i and the tags, into a register: the drainer's capture (and the GEMM
        # pipeline's flow control behind it) does not wait for ld_i's comparator.
        loading = Signal()
        issue_next = ~s.drain_abort & (s.lut_load_start | (ld_i + 1 < LUT_SIZE))
        m.d.sync += loading.eq(issue_next | (ld_issue & ~s.drain_abort)
                               | Cat(v for v, _ in ld_tags[:-1]).any())
        m.d.comb += s.lut_loading.eq(loading)
        rows = s.gemm_rows.o_stream
        take = rows.valid & s.capturing & s.g.lut_en
        tags = [(Signal(name=f"glut_v{i}"), Signal(range(p.rows), name=f"glut_row{i}"))
                for i in range(BlockRAM.latency)]
        m.d.sync += [tags[0][0].eq(take), tags[0][1].eq(s.row)]
        for (v, r), (v0, r0) in zip(tags[1:], tags[:-1]):
            m.d.sync += [v.eq(v0), r.eq(r0)]
        land, land_row = tags[-1]
        for c in range(p.cols):
            ram = make_block_ram(platform, width=8, depth=LUT_SIZE)
            m.submodules[f"gemm_lut{c}"] = ram
            m.d.comb += [
                ram.w_en.eq(ld_land), ram.w_addr.eq(ld_addr),
                ram.w_data.eq(ld_data),
                ram.r_en.eq(1), ram.r_oce.eq(1),
                ram.r_addr.eq(rows.payload.acc[c][:8]),
            ]
            with m.If(land):
                with m.Switch(land_row):
                    for r in range(p.rows):
                        with m.Case(r):
                            # After the raw capture's byte (LUT excludes OUT32).
                            m.d.sync += s.tile[r * p.cols + c].eq(ram.r_data)
        m.d.comb += s.lut_busy.eq(Cat(v for v, _ in tags).any())

    def _gemm_capture(self, m, s, out):
        """The drainer's capture of result rows into the byte tile, a pass at a time.

        An int8 tile is one pass: row ``r`` into tile row ``r``. An OUT32 tile is
        ``_OUT32_WORDS`` passes, one per quarter ``q`` of its int32 column words: tile byte
        ``R`` of column ``c`` holds byte ``(q * rows + R) % 4`` of int32 row
        ``(q * rows + R) // 4`` (``hw.isa`` act layout), so pass ``q`` takes the rows
        ``_out32_passes`` names and the write back writes the tile as word ``q`` of each int32
        column. Where ``rows`` is not a multiple of 4 a row's bytes span two passes: the first
        captures it without taking it (``peek``), the next takes it."""
        p, d = self._params, s.g.drain
        # OUT32 from a copy of its own beside the capture registers (g.out32 drives the
        # pipeline and the drainer too).
        out32 = unshared_register(m, s.g.out32, name="cap_out32", platform=s.platform)
        # The tile's byte multiplexers read a copy per column group (hw.skid.column_groups):
        # one copy into every tile byte's select was 920 LUT inputs on the 8x18 top.
        groups = column_groups(p.cols)
        col_out32 = [out32, *(unshared_register(m, s.g.out32, name=f"cap_out32_{k}",
                                                platform=s.platform)
                              for k in range(1, groups))]
        passes = _out32_passes(p.rows)
        capture = out.valid & s.capturing
        at_pass_last = Array(s.row == last for _, last, _ in passes)[d.q]
        peek = Signal(name="cap_peek")
        if any(spans for _, _, spans in passes):
            m.d.comb += peek.eq(out32 & at_pass_last & Array(spans for *_, spans in passes)[d.q])
        take = capture & ~peek
        m.d.comb += [out.ready.eq(s.capturing & ~peek),
                     s.capture_end.eq(capture & Mux(out32, at_pass_last, out.payload.last))]
        with m.If(take):
            m.d.sync += s.row.eq(Mux(out.payload.last, 0, s.row + 1))
        # The captured row lands in the tile a cycle later, from registers: the row's data and
        # a write flag per tile row (the handshake and the row's decode in front of the
        # enables of every tile register were a path of the ulx3s_85f top's route). The
        # drainer waits a cycle (SETTLE) before its write back reads the tile.
        cap_rows = Signal(p.rows, name="cap_rows")
        cap_data = [Signal(ACC_WIDTH, name=f"cap_data{c}") for c in range(p.cols)]
        wide = [Array(s.row == (q * p.rows + r) // 4 for q in range(_OUT32_WORDS))[d.q]
                for r in range(p.rows)]
        m.d.sync += [cap_rows.eq(Cat(capture & Mux(out32, wide[r], s.row == r)
                                     for r in range(p.rows))),
                     *(cap_data[c].eq(out.payload.acc[c]) for c in range(p.cols))]
        for r in range(p.rows):
            # The byte of the int32 result that tile row r holds, by pass (d.q is the
            # capture's pass still: it steps at the end of the pass's write back).
            byte = [(q * p.rows + r) % 4 for q in range(_OUT32_WORDS)]
            with m.If(cap_rows[r]):
                for c in range(p.cols):
                    wide_byte = (cap_data[c].word_select(byte[0], 8) if len(set(byte)) == 1
                                 else Array(cap_data[c].word_select(b, 8) for b in byte)[d.q])
                    m.d.sync += s.tile[r * p.cols + c].eq(
                        Mux(col_out32[c * groups // p.cols], wide_byte, cap_data[c][:8]))

    def _gemm(self, m, s, core, pipe, platform):
        """The GEMM core's start, its write ports (_gemm_feeder) and result capture."""
        p, g = self._params, s.g
        m.d.comb += [
            core.start.eq(s.core_start),
            core.bank.eq(g.bank),
            core.k_len.eq(g.k),
            s.core_busy.eq(core.busy),
            pipe.out32.eq(g.out32),
        ]
        m.submodules.gemm_rows = s.gemm_rows = SkidBuffer(acc_layout(p.cols),
                                                          groups=column_groups(p.cols))
        self._gemm_feeder(m, s, core)
        # The result rows (int8 from the requantizer, or int32 with OUT32) reach the drainer
        # through a register slice: the core's output handshake (its pipeline's clock enable
        # behind it) and the drainer's capture (the tile registers' enables behind it) meet
        # at flip-flops, not across the die. One cycle more per GEMM, none per row.
        rows = s.gemm_rows
        m.d.comb += [
            rows.i_stream.valid.eq(core.o_stream.valid | pipe.o_acc.valid),
            core.o_stream.ready.eq(rows.i_stream.ready),
            pipe.o_acc.ready.eq(rows.i_stream.ready),
            rows.flush.eq(_skid_flush(m, s, "gemm_rows")),   # and what the core sends then
        ]
        groups = column_groups(p.cols)
        if groups == 1:
            with m.If(g.out32):
                m.d.comb += rows.i_stream.payload.eq(pipe.o_acc.payload)
            with m.Else():
                m.d.comb += [rows.i_stream.payload.last.eq(core.o_stream.payload.last),
                             *(rows.i_stream.payload.acc[c].eq(core.o_stream.payload.data[c])
                               for c in range(p.cols))]
        else:
            # Each column group's multiplexer reads OUT32 from a copy of its own (a cycle
            # behind g.out32, which changes only when a GEMM's fields load, long before its
            # first row): g.out32 into every bit's select was 1,153 LUT inputs across the die
            # on the 8x18 top, its most congested net.
            out32 = [unshared_register(m, g.out32, name=f"rows_out32_{k}", platform=platform)
                     for k in range(groups)]
            i, acc, data = rows.i_stream.payload, pipe.o_acc.payload, core.o_stream.payload
            m.d.comb += [i.last.eq(Mux(out32[0], acc.last, data.last)),
                         *(i.acc[c].eq(Mux(out32[c * groups // p.cols], acc.acc[c], data.data[c]))
                           for c in range(p.cols))]
        self._gemm_capture(m, s, rows.o_stream)
        m.d.comb += [s.gemm_busy.eq(g.active & s.core_busy),
                     s.gemm_stall.eq(g.active & ~s.core_busy)]
        self._gemm_lane_luts(m, s, core, platform)
        self._gemm_drain(m, s)


_NO_SEL = 3                        # copy-engine reads without a tag of their own
#: A read whose word lands in a register before it is written on (the GEMM feeder's words, the
#: GEMM lane LUTs' entries): the scratchpad's latency, then that register.
_LANDED_LATENCY = Scratchpad.latency + 1
#: Bits of the instruction word per reserved-bit register of the fetch capture.
_RESERVED_CHUNK = 16
#: Products each opcode's checks take from the controller's multiplier (_products' pairs).
_PRODUCTS = {Opcode.GEMM: 3, Opcode.VEC: 2, Opcode.LNORM: 4, Opcode.ATTN: 3, Opcode.EMBED: 2}
_MUL_LATENCY = 3                   # the controller's multiplier: operand and two product registers
_PREV = object()                   # a MUL operand: the opcode's previous product
_MUL_STEPS = 16                    # MUL's step counter counts below this


def _registers(opcode: Opcode, prefix: str, extra: tuple[str, ...]) -> SimpleNamespace:
    """A register per field of ``opcode`` (its width from ``hw.isa.FORMATS``) and 32-bit
    registers ``extra``."""
    regs = SimpleNamespace()
    for f in isa.FORMATS[opcode]:
        setattr(regs, f.name, Signal(f.width, name=f"{prefix}_{f.name}"))
    for name in extra:
        setattr(regs, name, Signal(32, name=f"{prefix}_{name}"))
    return regs


def _gemm_registers() -> SimpleNamespace:
    """GEMM's field registers and its walkers' state: the feeder's (``nt``, ``mb``, ...) and
    the drainer's (``drain``), each with its registered last-block / last-tile flags."""
    g = _registers(Opcode.GEMM, "g", (
        "m_blocks", "n_tiles", "abase", "dbase", "nt", "mb", "col0", "blk", "a_end", "d_end",
        # The tile's first A, weight and quant words (the feeder reads from base + i: one
        # adder of registers, not the sum of a field's base and a walker's offset before it,
        # a routed ulx3s_85f top's path into the quant port's issue address).
        "atile", "wtile", "qtile"))
    g.bank = Signal(name="g_bank")          # bank of the next tile
    # M fits one token block / N one column tile; mb / nt is the last (_gemm_next_tile).
    for name in ("one_mb", "one_nt", "last_mb", "last_nt"):
        setattr(g, name, Signal(name=f"g_{name}"))
    g.active = Signal(name="g_active")      # a GEMM runs (perf counters)
    g.drain = SimpleNamespace(**{n: Signal(32, name=f"drain_{n}")
                                 for n in ("nt", "mb", "col0", "blk", "c")})
    g.drain.last_mb = Signal(name="drain_last_mb")
    g.drain.last_nt = Signal(name="drain_last_nt")
    g.drain.last_tile = Signal(name="drain_last_tile")     # last_mb & last_nt
    g.drain.c_end = Signal(name="drain_c_end")     # d.c == wb_words (write_back)
    # The pass of an OUT32 tile (quarter q of each int32 column word); 0 for int8 tiles.
    g.drain.q = Signal(2, name="drain_quarter")
    g.drain.base = Signal(40, name="drain_base")    # the tile's first act word
    # act words - base, a cycle behind base: word d.c of the tile is refused when d.c >= room
    # (one comparator of registers, not base + c's adder and then the bounds comparator).
    g.drain.room = Signal(signed(42), name="drain_room")
    # N - col0, stepped with col0: wb_words' minimum reads a register, not a subtractor of
    # the field register g.n from across the controller.
    g.drain.cols_left = Signal(32, name="drain_cols_left")
    g.lut_en = g.flags[0]
    g.out32 = g.flags[1]
    assert int(GemmFlag.LUT) == 1 and int(GemmFlag.OUT32) == 2
    return g


def _vec_registers(p, w: int) -> SimpleNamespace:
    """VEC's field registers, its working registers and the per-instruction constants its
    CHECK verdict sets from the fields (constant while the VEC runs: the per-beat logic decodes
    no func field and subtracts nothing); ``w``: the copy counter's width."""
    v = _registers(Opcode.VEC, "v", ("blocks", "words", "abase", "bbase", "dbase", "poff", "out",
                                      "mult0", "mult1", "shift"))
    v.is_add = Signal(name="v_is_add")
    v.is_pool = Signal(name="v_is_pool")
    v.run_len = Signal(w + 1, name="v_run_len")        # VEC_RUN's reads: words << is_add
    v.last_word = Signal(32, name="v_last_word")        # words - 1: a beat's `last`
    v.last_block = Signal(32, name="v_last_block")      # words - c: the last block's first
    v.last_mask = Signal(p.rows, name="v_last_mask")    # its tokens (those below M)
    # The mean pool's last token m - 1: its block's first token and its place in it.
    v.pool_last_out = Signal(32, name="v_pool_last_out")
    v.pool_last_i = Signal(range(p.rows), name="v_pool_last_i")
    v.pool_last_blk = Signal(name="v_pool_last_blk")   # the block being pushed holds it
    v.push_last = Signal(name="v_push_last")    # VEC_POOL_PUSH: i is pool_last_i
    v.push_end = Signal(name="v_push_end")      # VEC_POOL_PUSH: i is rows - 1
    v.out_done = Signal(name="v_out_done")              # out == words, a cycle late
    # The mean pool's channel group c0 .. c0 + rows - 1 as registers, so that no state adds
    # them up (c0 itself is not kept): the channels left from c0 (c - c0), the group's read
    # address in the current token block (abase + poff + c0) and its first dst word
    # (dbase + c0).
    # act words - dbase (signed: a dst past the act words makes it negative), for the
    # elementwise writes' refused test.
    v.write_room = Signal(signed(34), name="v_write_room")
    v.c_left = Signal(32, name="v_c_left")
    v.pool_src = Signal(32, name="v_pool_src")
    v.pool_dst = Signal(32, name="v_pool_dst")
    # act words - pool_dst, a cycle behind pool_dst (which moves only several states before
    # the group's writes): the pool writer's refused test is i >= pool_room, one comparator of
    # registers, not pool_dst + i's adder and then the bounds comparator (the route of
    # 8812445: i -> that adder -> pool_write_error, 10.19 ns).
    v.pool_room = Signal(signed(34), name="v_pool_room")
    # Bit r: channel c0 + r exists (r < c - c0), a register one cycle behind c_left
    # (_vec_states keeps it up to date): the group's reads and writes test a bit, not a 32-bit
    # comparison of the copy counter with c_left (the `tiny` top's routed critical path).
    v.c_live = Signal(p.rows, name="v_c_live")
    v.c_more = Signal(name="v_c_more")      # another group after this one (c - c0 > rows)
    # VEC_POOL_WB's "i < rows" (a write left), a register stepped with the copy counter: the
    # state's step, restart and write enables read a flip-flop, not a comparator of i (the
    # routed 89.10 MHz ulx3s_85f top had i into its own enable that way, 11.28 ns).
    v.wb_more = Signal(name="v_wb_more")
    return v


def _lnorm_registers(p) -> SimpleNamespace:
    """LNORM's field and working registers, and what its CHECK verdict sets for the block
    walkers (they compare with registers)."""
    n = _registers(Opcode.LNORM, "n", ("abase", "dbase", "blocks"))
    n.rows = p.rows
    n.eps = Signal(64, name="n_eps")
    n.eps_max = Signal(48, name="n_eps_max")            # c**4 <= 2**40
    n.blocks_1 = Signal(32, name="n_blocks_1")          # blocks - 1
    n.c_1 = Signal(16, name="n_c_1")                    # c - 1
    n.last_mask = Signal(p.rows, name="n_last_mask")    # the last block's tokens
    return n


def _quant_field(word, layout, name: str):
    """Field ``name`` of quant-word layout ``layout`` (``hw.isa.CHANNEL_WORD`` ...) in ``word``."""
    f = next(f for f in layout if f.name == name)
    return word[f.lsb:f.lsb + f.width]


#: Words each LNORM FIFO holds.
_LN_FIFO_DEPTH = 16


def _beat_fifo(m, name: str, width: int, flush):
    """A :class:`~amaranth.lib.fifo.SyncFIFOBuffered` of ``_LN_FIFO_DEPTH`` words of ``width``
    bits (registered output), emptied while ``flush``."""
    fifo = SyncFIFOBuffered(width=width, depth=_LN_FIFO_DEPTH)
    m.submodules[name] = ResetInserter(flush)(fifo)
    return fifo


def _fit(value, width: int):
    """``value`` (unsigned) as exactly ``width`` bits: truncated or zero-extended."""
    value = Value.cast(value)
    if len(value) >= width:
        return value[:width]
    return Cat(value, Const(0, width - len(value)))


def _skid_flush(m, s, name: str):
    """A result skid's flush after a FAIL: a register of its own, high the cycle after
    ``drain_abort`` and the cycle after ``units_reset``. A row the unit hands over in either
    of those cycles (its reset takes effect at the end of the second) is dropped a cycle
    later; nothing reads the skid meanwhile (the sequencer is in FAIL or IDLE, the drainer
    and the scatter stopped), and the unit offers nothing after its reset. (The flush as the
    OR of the two, with the domain's reset behind ``drain_abort``, was a routed ulx3s_85f
    top's path from the reset's global network through three LUTs into the skid's ``LSR``,
    11.15 ns.)"""
    flush = Signal(name=f"{name}_flush")
    m.d.sync += flush.eq(s.drain_abort | s.units_reset)
    return flush


def _divmod(value, d: int):
    """``(value // d, value % d)`` for a constant ``d``: bit slices when ``d`` is a power of
    two (every preset's ``rows``), a divider otherwise."""
    if is_pow2(d):
        return pow2_divmod(value, d)
    return value // d, value % d


def _out32_passes(rows: int) -> list[tuple[int, int, bool]]:
    """For each pass ``q`` of an OUT32 tile (word ``q`` of its int32 columns): the first and the
    last int32 row whose bytes it holds, and whether the last row's bytes continue in pass
    ``q + 1`` (``rows`` not a multiple of 4)."""
    return [(q * rows // 4, ((q + 1) * rows - 1) // 4,
             q + 1 < _OUT32_WORDS and (q + 1) * rows % 4 != 0) for q in range(_OUT32_WORDS)]


def _last_block_mask(last_i, rows: int):
    """The byte lanes of an ``(m, c)`` tensor's last token block that hold tokens, from
    ``last_i = (m - 1) % rows`` (``m >= 1``): lane ``i`` while ``i <= last_i``. The same as
    ``i < m - (ceil(m / rows) - 1) * rows``, without its two carry chains (``m``'s block count
    and the product), a path of the routed ``ulx3s_85f`` top (``n_last_mask``, ``v_last_mask``)."""
    return Cat(last_i >= i for i in range(rows))


class _State:
    """Registers and helpers shared by the controller's FSM states (one per elaboration)."""

    def _weight_dividers(self, m, p):
        """Division by ``cols`` (a weight word's bytes) where it is not a power of two (an
        8x18 array): :class:`hw.divider.ConstDivider` s, one quotient bit a cycle, in the
        ``DIVIDE`` state between ``DECODE`` and ``MUL`` (GEMM, EMBED: the weight address's
        word and alignment, GEMM's column tiles) and in ``EMBED_ROW_DIV`` (an embedding row's
        first word and lane). With a power of two these are bit slices and neither state is
        elaborated."""
        self.cols_pow2 = is_pow2(p.cols)
        if self.cols_pow2:
            return
        # The embedding row copy's word and lane (_embed_copy), stepped instead of divided.
        self.e.rd_word = Signal(32, name="e_rd_word")
        self.e.rd_lane = Signal(range(p.cols), name="e_rd_lane")
        self.e.land_lane = Signal(range(p.cols), name="e_land_lane")
        self.div_start = Signal(name="div_start")       # DECODE / EMBED_ROW_ADDR: a register
        m.d.sync += self.div_start.eq(0)
        m.submodules.wgt_addr_div = self.wdiv = ConstDivider(32, p.cols)
        m.submodules.col_tiles_div = self.ndiv = ConstDivider(17, p.cols)
        m.submodules.embed_row_div = self.rdiv = ConstDivider(32, p.cols)
        m.d.comb += [
            self.wdiv.x.eq(Mux(self.op_is[Opcode.EMBED], self.e.table_addr, self.g.w_addr)),
            self.ndiv.x.eq(self.g.n + (p.cols - 1)),
            self.rdiv.x.eq(self.e.row),
            self.wdiv.start.eq(self.div_start), self.ndiv.start.eq(self.div_start),
            self.rdiv.start.eq(self.div_start),
        ]

    def wgt_misaligned(self, addr):
        """A weight byte address is not at a word (``addr % cols != 0``); ``addr`` is
        GEMM's ``w_addr`` or EMBED's ``table_addr``, divided in ``DIVIDE``."""
        if self.cols_pow2:
            return pow2_divmod(addr, self.p.cols)[1] != 0
        return self.wdiv.remainder != 0

    def wgt_word(self, addr):
        """The weight word of byte address ``addr`` (as :meth:`wgt_misaligned`)."""
        if self.cols_pow2:
            return pow2_divmod(addr, self.p.cols)[0]
        return self.wdiv.quotient

    def col_tiles(self, n):
        """``ceil(n / cols)``, GEMM's column tiles (``n`` is ``g.n``)."""
        if self.cols_pow2:
            return _ceil_div(n, self.p.cols)
        return self.ndiv.quotient

    def _multiplier_registers(self, m):
        """The controller's one multiplier: operands picked (comb, :meth:`mul_pick`) into
        registers, then the two 16 x 16 partial products in registers (each one DSP block's
        product, not the 48-bit sum of both behind them: that adder after the DSPs, across the
        die, was the routed top's `prod` path), then their sum: the product
        ``_MUL_LATENCY`` = 3 cycles after the pick."""
        self.mul_a = Signal(32)
        self.mul_b = Signal(16)
        self.mul_a_r = mul_a = Signal(32, name="mul_a_r")
        self.mul_b_r = mul_b = Signal(16, name="mul_b_r")
        self.prod_lo, self.prod_hi = Signal(32, name="prod_lo"), Signal(32, name="prod_hi")
        self.prod = Signal(48)
        m.d.sync += [mul_a.eq(self.mul_a), mul_b.eq(self.mul_b),
                     self.prod.eq(self.prod_lo + (self.prod_hi << 16))]
        self.mul_picks: list[tuple] = []    # mul_pick()'s (pick, a, b) (finish_mul_picks)

    def __init__(self, m, p, built):
        self.m, self.p = m, p
        # Copy-engine counts (`i`, `length`) reach at most a region's words times 4 (EMBED's
        # id bytes; the CHECK states refuse longer spans before any copy): not 32 bits, so the
        # `i < length` comparator and the per-state `length` multiplexer stay narrow.
        mm = isa.memory_map(p)
        w = max(4 * mm.region(r).size for r in SCRATCHPAD_REGIONS).bit_length()
        self.fail_code, self.fail_sites = Signal(8), []     # fail_sites: fail()'s (flag, code)
        self.retire = Signal()                  # HALT retires (instret, this cycle)
        # next_instruction: the instruction retires; advance_pc, a cycle later, moves pc to
        # pc1 (pc + 1 in a register) and counts it in instret, while FETCH already reads pc1:
        # the retire conditions of every state end at one flip-flop, not at the enables of pc
        # and instret across the die.
        self.next_pc, self.advance_pc = Signal(), Signal()
        self.skip_pc = Signal()                 # advance_pc moves pc by two (a skipped NOP)
        m.d.sync += self.advance_pc.eq(self.next_pc)
        self.clear_perf = Signal()
        self.perf = Signal(PERF_LAYOUT)
        self.gemm_busy = Signal()
        self.gemm_stall = Signal()
        self.core_busy = Signal()
        self.core_start = Signal()
        self.feeding = Signal()                 # GEMM_LOAD: the feeder's channels issue reads
        self.feed_reset = Signal()              # the next tile's loads start from word 0
        self.feed_last = Signal()               # every channel issues its last read now
        self.capture_end = Signal()         # the drainer's pass has all its rows
        self.row = Signal(range(p.rows + 1))
        # The drain tile: a byte per result, rows x cols (an int8 tile; with OUT32 a quarter of
        # the int32 tile's bytes a pass, _OUT32_WORDS passes a tile: _gemm's capture).
        self.tile = Array(Signal(8, name=f"tile{e}") for e in range(p.rows * p.cols))
        self.lut_load_start = Signal()      # a GEMM with a LUT: load the lane copies
        self.lut_loading = Signal()         # the lane copies are loading
        self.lut_busy = Signal()            # looked-up rows still on their way to the tile
        # Copy engine: issue index `i` of `length`; reads land `Scratchpad.latency` later.
        self._copy_engine_registers(w)
        self.wb_words = Signal(w)
        self.g = _gemm_registers()
        # Every result write, one cycle after its writer chose it (post_write / write_back,
        # drive_write_back): each writer's choice and address arithmetic end at a register of
        # its own (finish_writes); these are the OR of those registers, not the act
        # scratchpad's request registers across the chip.
        self.wb = SimpleNamespace(en=Signal(name="wb_en"),
                                  addr=Signal(unit_port_signature(p, "act")
                                              .members["w_addr"].shape, name="wb_addr"),
                                  data=Signal(8 * p.rows, name="wb_data"),
                                  mask=Signal(p.rows, name="wb_mask"),
                                  err=Signal(name="wb_err"))  # addr past the act words
        self.act_words = unit_words_of(p, "act")
        self.writers: list[tuple] = []      # post_write's (select, word) (finish_writes)
        self.readers: dict[int, tuple] = {}  # read()'s (port, [(flag, live, addr)]) (finish_reads)
        self.drain_start = Signal()             # a register: one cycle, set by GEMM_OVERLAP
        m.d.sync += self.drain_start.eq(0)
        self.drain_done = Signal()
        self.drain_abort = Signal()
        self.capturing = Signal()
        self.v = _vec_registers(p, w)
        self.a = _registers(Opcode.ATTN, "a", (
            "qbase", "kbase", "vbase", "dbase", "width", "h", "hoff", "score_mult", "score_shift",
            "out_mult", "out_shift"))
        self.a.h_more = Signal(name="a_h_more")     # h + 1 < heads, stepped with h
        self.n = _lnorm_registers(p)
        self.e = _registers(Opcode.EMBED, "e", ("ibase", "dbase", "t_i", "blk", "id", "row"))
        self._multiplier_registers(m)
        # Each opcode's products in registers of its own (``pr_of[op][k]``, loaded from
        # ``prod`` under that opcode's step): next to that opcode's checks and setup, not one
        # set shared by every opcode's adders across the die (the routed top's *_check_bad).
        self.pr_of = {op: [Signal(48, name=f"pr_{op.name.lower()}{k}") for k in range(count)]
                      for op, count in _PRODUCTS.items()}
        # MUL's own step, one-hot (bit 0 from the dispatch), and the instruction's opcode,
        # one-hot (from the dispatch): the operand multiplexer's selects are ANDs of two
        # flip-flops (_products).
        self.mul_step = Signal(_MUL_STEPS, name="mul_step")
        self.e.id_landed = Signal(name="e_id_landed")
        self.e.t_last = Signal(name="e_t_last")
        self.e.t_i1 = Signal(32, name="e_t_i1")     # t_i + 1, stepped with t_i
        self.embed_ids = Signal()
        #: The registers each opcode's fields are latched into.
        self.fields_of = {op: regs for op, regs in (
            (Opcode.GEMM, self.g), (Opcode.ATTN, self.a), (Opcode.LNORM, self.n),
            (Opcode.EMBED, self.e), (Opcode.VEC, self.v)) if op in built}
        self.op_is = {op: Signal(name=f"op_is_{op.name.lower()}") for op in self.fields_of}
        self._weight_dividers(m, p)
        self.lnorm_busy = Signal()
        self.lnorm_stall = Signal()
        self.lnorm_run = Signal()               # a register: the state is LNORM_RUN
        self.lnorm_done = Signal()
        self.attn_busy = Signal()
        self.attn_stall = Signal()
        self.attn_run = Signal()
        self.attn_head = Signal()               # ATTN_HEAD: reset the gathers for a new head
        self.attn_head_next = Signal()          # the next state is ATTN_HEAD
        self.attn_run_next = Signal()           # the next state is ATTN_RUN
        self.attn_head_done = Signal()
        # A check of a landed word (QCHECK states, EMBED_IDS), registered: the state fails
        # the cycle after the word landed, when its copy's ``done`` also shows first (the
        # read data's lane multiplexer ends at this register, not at the FSM). 0 unless
        # the state that checks sets it.
        self.land_bad = Signal()
        m.d.sync += self.land_bad.eq(0)
        self._write_errors: dict[str, Signal] = {}     # write_error(writer): refused writes
        self.read_error = Signal()              # a unit-port read 2 cycles ago was refused
        self.vec_busy = Signal()
        self.vec_stall = Signal()
        self.vec_elementwise = Signal()         # VEC_RUN: ADD / LUT beats
        self.vec_pooling = Signal()             # VEC_POOL*: mean-pool words and beats
        self.vec_lut_load = Signal()
        self.cfg_pending = Signal()
        self.pool_ready = Signal()
        self.pool_push = Signal()               # VEC_POOL_PUSH: a mean-pool beat (token s.i)
        self.pool_last = Signal()               # ... and it is the last token
        self.pool_out = Signal(8 * p.rows)
        self.lnorm_start = Signal()             # LNORM_QCHECK's copy is done: LNORM_RUN next

    def _copy_engine_registers(self, w: int) -> None:
        """The copy engine's counter (``i``, ``i1``, ``issued_all``; :meth:`copy_counter`) and
        its read stages."""
        m = self.m
        self.i = Signal(w)
        # i + 1, a register stepped with i (step_copy, restart_copy): issue's last-read test is
        # an equality of registers, no incrementer in front of it.
        self.i1 = Signal(w + 1)
        self.issued_all = Signal()              # the copy's last read is issued (restart_copy)
        self.copy_restart = Signal()            # restart_copy: load i = copy_start
        self.copy_start = Signal(w)
        self.copy_step = Signal()               # step_copy: i += 1
        stage = data.StructLayout({"valid": 1, "live": 1, "sel": 2, "index": w})
        # One stage a cycle of the read's latency: `d1` takes the issue, `land` holds it while
        # its word is on the port's r_data.
        self.stages = [Signal(stage, name=f"d{k + 1}") for k in range(Scratchpad.latency)]
        self.d1, self.land = self.stages[0], self.stages[-1]
        m.d.sync += [self.d1.valid.eq(0), self.d1.index.eq(self.i)]    # issue() sets valid
        m.d.sync += [b.eq(a) for a, b in zip(self.stages, self.stages[1:])]
        # settled: a register, "every read issued and landed" (issued_all & no stage valid),
        # the copy's done, without the OR of the stages or the AND with issued_all in front
        # of the FSM's decisions. It is loaded with issued_all & (no stage but the landing one
        # valid) & no restart: a read is only issued while issued_all is 0 (issue(); the ATTN
        # gathers, which fill d1 on their own, run in ATTN_RUN, which waits for its own
        # reads), so issued_all a cycle ago means that d1 is empty now, and the stages behind
        # d1 are a cycle ago's d1 .. d(n-1); and issued_all, once set, stays set until a
        # restart (copy_counter).
        self.settled = Signal()
        m.d.sync += self.settled.eq(self.issued_all & ~self.copy_restart
                                    & ~Cat(d.valid for d in self.stages[:-1]).any())
        # done a cycle later (issue(late=True)): for the quant checks from registers
        # (check_quant_word), whose verdict comes two cycles after the word landed.
        self.settled_late = Signal()
        m.d.sync += self.settled_late.eq(self.settled & ~self.copy_restart)
        # The landed word of the quant port and its valid, a cycle later (check_quant_word;
        # loaded in every cycle from the port in Controller.elaborate).
        self.quant_word = Signal(8 * isa.QUANT_WORD_BYTES, name="quant_word")
        self.quant_late = Signal(name="quant_late")

    def room(self, addr, depth: int):
        """``(fits, room)``: ``addr <= depth`` and ``depth - addr`` (in ``depth.bit_length()``
        bits, all it needs when ``fits``), in registers of their own, loaded in every cycle: the
        CHECK states' bounds checks compare a span with them (:func:`_past`). ``addr`` is a
        field register (loaded in DECODE, at least the MUL steps before any CHECK reads the
        room)."""
        rooms = self.__dict__.setdefault("_rooms", {})
        key = (id(addr), depth)
        if key not in rooms:
            fits = Signal(name=f"room_{addr.name}_fits")
            room = Signal(depth.bit_length(), name=f"room_{addr.name}")
            self.m.d.sync += [fits.eq(addr <= depth), room.eq(depth - addr)]
            rooms[key] = (fits, room)
        return rooms[key]

    def fail(self, code) -> None:
        """Go to FAIL with error ``code`` (a constant or a register). Each call is a site: a
        flag high in the cycles its ``with`` blocks are active, and ``drive_fail_code`` loads
        ``fail_code`` every cycle with the OR of the active sites' codes. The sites are
        exclusive (each in its own state or If/Elif branch), so that OR is the one active
        site's code: no priority chain of the sites' conditions in front of an enable (the
        routed ``ulx3s_85f`` top of ``3ea48a0`` had ``ctrl_state`` -> two sites' conditions ->
        ``fail_code``'s clock enable, 10.41 ns). FAIL, the next cycle, reads it."""
        flag = Signal(name=f"fail_site{len(self.fail_sites)}")
        self.m.d.comb += flag.eq(1)
        self.fail_sites.append((flag, Value.cast(code)))
        self.m.next = "FAIL"

    def drive_fail_code(self) -> None:
        """``fail_code`` <= the active site's code (0 while none is), after every ``fail``."""
        # Per bit, one OR of all the sites (a balanced tree), not a chain of 8-bit ORs.
        self.m.d.sync += self.fail_code.eq(select_one_hot(self.fail_sites, len(self.fail_code)))

    def mul_pick(self, a, b, pick=None) -> None:
        """Pick ``a`` and ``b`` into the controller's multiplier while ``pick`` (``None``: in
        the cycles the calling ``with`` blocks are active). :meth:`finish_mul_picks` drives its
        operands with the OR of the picked ones (the picks are exclusive): per bit, one OR, not
        a chain of word ORs with EMBED's pick as a multiplexer after it (the routed
        ``ulx3s_85f`` top of ``4f0d32b`` had ``op_is_attn`` through that into ``mul_a_r``,
        10.10 ns)."""
        if pick is None:
            pick = Signal(name=f"mul_pick{len(self.mul_picks)}")
            self.m.d.comb += pick.eq(1)
        self.mul_picks.append((pick, Value.cast(a), Value.cast(b)))

    def finish_mul_picks(self) -> None:
        """The multiplier's operands from every :meth:`mul_pick`."""
        for k, operand in ((1, self.mul_a), (2, self.mul_b)):
            self.m.d.comb += operand.eq(select_one_hot(
                [(pick[0], pick[k]) for pick in self.mul_picks], len(operand)))

    def read(self, port, addr, live=1) -> None:
        """Read ``port`` at ``addr`` (``live`` 0: no read) in the cycles the calling ``with``
        blocks are active. Each call is a reader: a flag high in those cycles, and
        :meth:`finish_reads` drives the port with the OR of the active readers' enables and
        addresses. The readers of a port are exclusive (each its own state, or its own
        instruction's unit gather), so the OR is the one active reader's request: two levels
        of logic in front of the scratchpad's issue registers, not a priority chain of every
        reader's condition (the routed ``ulx3s_85f`` top of ``4f0d32b`` had the LayerNorm
        gather's room test through that chain into ``act_spad.issue_r_addr``, 10.48 ns)."""
        flags = self.readers.setdefault(id(port), (port, []))[1]
        flag = Signal(name=f"reader{sum(len(f) for _, f in self.readers.values())}")
        self.m.d.comb += flag.eq(1)
        flags.append((flag, Value.cast(live), Value.cast(addr)))

    def finish_reads(self) -> None:
        """Each port's read enable and address from every :meth:`read`: per bit, one OR of the
        readers' terms (a balanced tree)."""
        for port, flags in self.readers.values():
            self.m.d.comb += [
                port.r_en.eq(Cat(flag & live for flag, live, _ in flags).any()),
                port.r_addr.eq(select_one_hot([(flag, a) for flag, _, a in flags],
                                              len(port.r_addr)))]

    def next_instruction(self, state: str) -> None:
        """Retire the instruction and go to ``state`` (``FETCH``; pc moves the next cycle,
        ``advance_pc``)."""
        self.m.d.comb += self.next_pc.eq(1)
        self.m.next = state

    def issue(self, port, addr, sel, live=1, *, length=None, last=None, late=False):
        """Issue read ``i`` (while ``i < length``) at ``addr`` of ``port``, tagged ``sel``;
        ``live`` 0: no read (the word is skipped). Returns the copy's ``done``: every read
        issued and landed. An address the scratchpad refuses stops the program two cycles after
        the read (``read_error``), before its word lands (``done`` waits for the rest).

        ``length`` (or ``last``, the index of the last read, ``length - 1``, where that is the
        plainer expression) is the calling state's own expression of registers (each state its
        own comparator, no multiplexer of every state's length); it is compared with ``i1``
        (``i + 1``, a register) or ``i`` only to set ``issued_all`` with the last read, and the
        read enable, ``i``'s increment and ``done`` follow that register
        (:meth:`restart_copy`; the top's timing). ``late``: ``done`` a cycle later, for a
        state that checks its words with :meth:`check_quant_word`."""
        assert (length is None) != (last is None), "issue() takes length or last"
        m = self.m
        # The stage's tag is loaded in every cycle of the state (its index in every cycle,
        # _copy_engine_registers), read only where the stage is valid: issued_all enables
        # the counter and the stage's valid, not the tag's dozens of flip-flops.
        m.d.sync += [self.d1.live.eq(live), self.d1.sel.eq(sel)]
        with m.If(~self.issued_all):
            self.read(port, addr, live)
            self.step_copy()
            m.d.sync += self.d1.valid.eq(1)
            with m.If(self.i1 == length if last is None else self.i == last):
                m.d.sync += self.issued_all.eq(1)
        with m.If(self.read_error):
            self.fail(ErrorCode.BAD_ADDRESS)
        return self.settled_late if late else self.settled

    def restart_copy(self, start=0):
        """(Re)start the copy counter at ``start`` (``i``) with reads left to issue, the next
        cycle: every copy state is entered with ``i < length`` (the CHECK states refuse an
        empty shape), so :meth:`issue` keeps ``i < length`` as a register, ``issued_all``,
        set by the last read, instead of comparing ``i`` with the length in the cycle that
        decides the read enable, the next state and ``done`` (the top's timing).

        The calling state only raises ``copy_restart`` (and sets ``copy_start`` where it is not
        0); :meth:`copy_counter` loads the registers: their inputs are two choices, not a
        multiplexer of every state's statements. A restart wins over a step in the same
        cycle."""
        self.m.d.comb += self.copy_restart.eq(1)
        if not (isinstance(start, int) and start == 0):
            self.m.d.comb += self.copy_start.eq(start)

    def step_copy(self):
        """Step the copy counter (``i`` and ``i1``) by one, the next cycle (``copy_step``;
        :meth:`copy_counter`)."""
        self.m.d.comb += self.copy_step.eq(1)

    def copy_counter(self):
        """The copy counter's registers, after the FSM (so that a restart's clear of
        ``issued_all`` wins over :meth:`issue`'s set, as the restart did inside a state)."""
        m = self.m
        with m.If(self.copy_restart):
            m.d.sync += [self.i.eq(self.copy_start), self.i1.eq(self.copy_start + 1),
                         self.issued_all.eq(0)]
        with m.Elif(self.copy_step):
            # i takes i1 (i + 1 already): no incrementer between i and its own input.
            m.d.sync += [self.i.eq(self.i1[:len(self.i)]), self.i1.eq(self.i1 + 1)]

    def check_quant_word(self, bad) -> None:
        """``land_bad`` two cycles after a quant word landed: ``bad`` fails the calling state's
        check, an expression of registers loaded from the landed word (``quant_word``, or the
        state's own field registers), not of the quant scratchpad's read data across the die.
        The state's copy is ``issue(..., late=True)``, whose ``done`` comes no earlier than
        that verdict."""
        self.m.d.sync += self.land_bad.eq(self.quant_late & bad)

    def read_quant_word(self, quant, addr, stall):
        """Read quant word ``addr`` (counting ``stall``): ``(word, done)``, the word valid
        while ``land.valid``, then ``done`` (:meth:`issue`, ``late``: the state checks the word
        with :meth:`check_quant_word`)."""
        self.m.d.comb += stall.eq(1)
        done = self.issue(quant, addr, _NO_SEL, length=1, late=True)
        return quant.r_data, done

    def next_after_copy(self, done, state: str) -> None:
        with self.m.If(done):
            self.restart_copy()
            self.m.next = state

    def write_back_words(self, d) -> None:
        """``wb_words``, the act words of the drainer's tile (``jmax`` columns, 4 words each for
        int32), and ``d.base``, the act word of the tile's first write, in registers: outside
        the drainer's FSM, one cycle behind ``d.blk``, ``d.col0``, ``g.n`` and ``g.out32``.
        ``d.room`` (act words - ``d.base``) follows a cycle later. ``WB`` is only entered from
        ``SETTLE`` or ``LUT``, at least two cycles after ``d.col0`` moved (at the end of the
        previous ``WB``, or at ``drain_start``; ``CAPTURE`` lasts at least a cycle), so neither
        the write enable, the write address nor its bounds check waits for this arithmetic."""
        m, p, g = self.m, self.p, self.g
        # The column of word d.c, one-hot, a copy per tile row (write_back): 1 at a restart
        # (restart_write_back), shifted left when the write back moves to the next column
        # (past the last one: 0). Each copy's input is one LUT of two control nets and itself,
        # not a column counter's incrementer and decoder. Every drain starts with a restart,
        # so the copies need no reset.
        self.wb_step, self.wb_restart = Signal(name="wb_step"), Signal(name="wb_restart")
        self.wb_cols = []
        for r in range(p.rows):
            col = Signal(p.cols, name=f"wb_col{r}_q")
            m.d.comb += col.eq(unshared_register(
                m, Mux(self.wb_restart, 1, Mux(self.wb_step, col << 1, col))[:p.cols],
                name=f"wb_col{r}", platform=self.platform))
            self.wb_cols.append(col)
        # Word d.c of the tile is act word d.base + d.c: int8 columns are one word each
        # (d.c = j), int32 columns four, of which the pass writes word q (d.c = 4 * j: the
        # int32 base is 4x the column, plus q).
        # OUT32 from a copy of its own beside these registers (a cycle behind g.out32, which
        # changes only when a GEMM's fields load, long before its drain): g.out32 drives the
        # capture and the pipeline too, and its wire to drain_base's adder was 6.6 ns of a
        # routed ulx3s_85f top's 10.15 ns path.
        d.out32 = out32 = unshared_register(m, g.out32, name="drain_out32",
                                            platform=self.platform)
        d.more_passes = Signal(name="drain_more_passes")     # an OUT32 tile's quarter 0..2
        m.d.comb += d.more_passes.eq(out32 & (d.q != _OUT32_WORDS - 1))
        first = d.blk + d.col0
        m.d.sync += d.base.eq(g.dbase + Mux(out32, Cat(d.q, first), first))
        m.d.sync += d.room.eq(self.act_words - d.base)
        cols_left = d.cols_left                         # g.n - d.col0, a register
        jmax = Signal(range(p.cols + 1))
        m.d.comb += jmax.eq(cols_left)
        with m.If(cols_left > p.cols):
            m.d.comb += jmax.eq(p.cols)
        m.d.sync += self.wb_words.eq(jmax << (out32 * 2))
        # The byte mask of the pass's words (tokens past M; an int32 quarter's byte b is row
        # (q * rows + b) // 4), two register stages behind d.mb as d.room is behind d.blk
        # (and a cycle behind d.q): not a subtract and compare before the write-back registers.
        left = g.m - d.mb * p.rows
        rows_left = Signal(left.shape(), name="drain_rows_left")
        d.mask = Signal(p.rows, name="drain_mask")
        mask32 = Array(Cat((q * p.rows + b) // 4 < rows_left for b in range(p.rows))
                       for q in range(_OUT32_WORDS))[d.q]
        m.d.sync += [rows_left.eq(left),
                     d.mask.eq(Mux(out32, mask32, Cat(r < rows_left for r in range(p.rows))))]

    def write_back(self, d) -> None:
        """Write the tile's columns (``d.c``: the word being written) at the drainer's tile
        ``(d.nt, d.mb)`` (an OUT32 tile's pass: word ``d.q`` of its int32 columns), masking
        tokens past M. The word, its address and mask go into the write-back registers
        (:meth:`drive_write_back` puts them on the act port the next cycle): the column
        multiplexer and the address arithmetic end at a register, not at the act port's writer
        multiplexer."""
        m, p = self.m, self.p
        # Each tile row picks its column with a one-hot select of its own (wb_cols, stepped
        # with d.c: registers Yosys does not merge): one 3-bit column register selecting all
        # of the column multiplexer was the routed ulx3s_85f top's wr#_r group.
        data = Signal(8 * p.rows, name="drain_data")
        m.d.comb += data.eq(Cat(select_one_hot(
            [(col[j], self.tile[r * p.cols + j]) for j in range(p.cols)], 8)
            for r, col in enumerate(self.wb_cols)))
        # d.c_end (d.c == wb_words) is a register stepped with d.c: the step, the column
        # registers' enables and WB's exit read a flip-flop, not a comparison of d.c.
        with m.If(~d.c_end):
            step = Mux(d.out32, _OUT32_WORDS, 1)
            m.d.sync += [d.c.eq(d.c + step), d.c_end.eq(d.c + step == self.wb_words)]
            m.d.comb += self.wb_step.eq(1)
            with m.If(~self.drain_abort):
                # One adder of two registers before the bounds check and the write-back
                # registers (three adders and a multiplexer were the routed critical path).
                self.post_write(d.base + d.c, data, d.mask, writer="drain",
                                refused=d.c >= d.room)

    def restart_write_back(self, d):
        """The statements that restart the drainer's write back at word 0 (``d.c``, and its
        column, one-hot in ``wb_cols``), in the calling context."""
        self.m.d.sync += [d.c.eq(0), d.c_end.eq(0)]
        self.m.d.comb += self.wb_restart.eq(1)

    def write_error(self, writer: str):
        """The flag of ``writer``'s refused writes (:meth:`post_write`): high in the cycle
        after ``writer`` chose a write the act scratchpad refuses (its address past the act
        words), a register of its own."""
        if writer not in self._write_errors:
            self._write_errors[writer] = Signal(name=f"{writer}_write_error")
        return self._write_errors[writer]

    def post_write(self, addr, data, mask, *, writer: str, refused=None) -> None:
        """Write act word ``addr`` (``data`` under the byte-lane ``mask``) the next cycle,
        through the write-back registers. A refused write shows as ``write_error(writer)``
        in that next cycle: the writer's state checks it before it retires, so an
        instruction never retires past its last write. ``refused``: the writer's own
        expression of ``addr >= act words``, where it has a shorter one."""
        wb = self.wb
        k = len(self.writers)
        assert writer not in (name for name, *_ in self.writers), writer
        # Per writer: its select, 1 in the writer's own condition (the calling context), and
        # its word (err, mask, addr, data), an expression of the writer's registers valid in
        # any cycle and registered in every cycle (finish_writes), so the condition reaches one
        # flip-flop, not a reset or enable of the whole word.
        sel = Signal(name=f"wr{k}_sel")
        self.m.d.comb += sel.eq(1)
        if refused is None:
            refused = addr >= self.act_words
        word = Cat(refused, _fit(mask, len(wb.mask)), _fit(addr, len(wb.addr)),
                   _fit(data, len(wb.data)))
        self.writers.append((writer, sel, word))

    def finish_writes(self) -> None:
        """The write-back registers from every :meth:`post_write`: each writer's select and
        word go into registers of their own, next to the writer, and the write-back word is
        the OR of the selected words. No two writers write in the same cycle (each is its own
        instruction's, or the drainer's inside GEMM), so the OR is the writers' multiplexer:
        a shallow tree after the registers, on the way to the act port (and the scratchpad's
        issue stage), not behind each writer's own logic (the drainer's column multiplexer
        was the ``tiny`` top's routed critical path). The word registers load in every cycle:
        a writer's condition as their reset was a net to ~60 flip-flops (the routed top's
        ``wr#_r`` group)."""
        m, wb = self.m, self.wb
        posted = []
        for k, (_, sel, word) in enumerate(self.writers):
            sel_r = Signal(name=f"wr{k}_sel_r")
            # Loaded in every cycle (no enable, no reset): only sel_r says it is a write.
            word_r = Signal(len(word), name=f"wr{k}_r", reset_less=True)
            m.d.sync += [sel_r.eq(sel), word_r.eq(word)]
            posted.append(Cat(sel_r, Mux(sel_r, word_r, 0)))
        # Each writer's refused flag (its select and err) as a register of its own, tested
        # by that writer's state only (no two writers write in the same instruction): one
        # flip-flop behind the writer's condition, not an OR of every writer's (the OR of
        # six writers' was a routed ulx3s_85f top's write_error group, 10.98 ns).
        for writer, sel, word in self.writers:
            m.d.sync += self.write_error(writer).eq(sel & word[0])
        unused = set(self._write_errors) - {writer for writer, *_ in self.writers}
        assert not unused, f"write_error of writers that never post: {sorted(unused)}"
        m.d.comb += Cat(wb.en, wb.err, wb.mask, wb.addr, wb.data).eq(
            functools.reduce(operator.or_, posted))

    def drive_write_back(self, act) -> None:
        """The write-back registers' write on the act port (the cycle after it was chosen)."""
        m, wb = self.m, self.wb
        # A write past the act words is not made (write_error fails the program instead); the
        # address, data and mask need no multiplexer, only the enable.
        m.d.comb += [act.w_en.eq(wb.en & ~wb.err), act.w_addr.eq(wb.addr),
                     act.w_data.eq(wb.data), act.w_mask.eq(wb.mask)]


class _BlockWalker:
    """Walks the act words of an LNORM tensor ``(n.m, n.c)`` block by block: block ``b`` (of
    ``n.blocks``), channel ``c``, act word ``b * n.c + c`` after ``base`` (``word``, with a
    ``base``); ``step`` moves to the next word, ``last_b`` marks the last block, ``final`` the
    tensor's last word and ``done`` the end.

    ``last_b``, the last-channel flag and ``done`` are registers, stepped with ``b`` and ``c``
    (their comparators work on the next values, before the registers): the gathers' and the
    write back's ``step`` read flip-flops, not a 16-bit comparison of ``b`` (the top's
    timing)."""

    def __init__(self, m, name: str, n, start, base=None):
        self.name = name
        self.b = Signal(16, name=f"{name}_b")
        self.c = Signal(16, name=f"{name}_c")
        self.step = Signal(name=f"{name}_step")
        self.done = Signal(name=f"{name}_done")
        self.last_b = Signal(name=f"{name}_last_b")
        last_c = Signal(name=f"{name}_last_c")
        self.final = Signal(name=f"{name}_final")
        m.d.comb += self.final.eq(self.last_b & last_c)
        with m.If(self.step):
            m.d.sync += [self.c.eq(self.c + 1), last_c.eq(self.c + 1 == n.c_1)]
            with m.If(last_c):
                m.d.sync += [self.c.eq(0), last_c.eq(n.c_1 == 0), self.b.eq(self.b + 1),
                             self.last_b.eq(self.b + 1 == n.blocks_1)]
                with m.If(self.last_b):
                    m.d.sync += self.done.eq(1)
        with m.If(start):
            m.d.sync += [self.b.eq(0), self.c.eq(0), self.done.eq(0),
                         last_c.eq(n.c_1 == 0), self.last_b.eq(n.blocks_1 == 0)]
        if base is not None:
            # ``base + blk + c`` in a register of its own: the walk visits the words in
            # order (``blk + c`` grows by one a step), so the address is a counter, not two
            # adders in front of the port or the write-back registers (the routed ``tiny``
            # top's ``wr#_r`` from ``ln_o_c``).
            self.word = Signal(32, name=f"{name}_word")
            with m.If(start):
                m.d.sync += self.word.eq(base)
            with m.Elif(self.step):
                m.d.sync += self.word.eq(self.word + 1)


def _tags(m, name: str, value, n: int):
    """``value`` through ``n`` registers (a read's tag until its data lands)."""
    for i in range(n):
        nxt = Signal.like(value, name=f"{name}_tag{i}")
        m.d.sync += nxt.eq(value)
        value = nxt
    return value
