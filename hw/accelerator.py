# SPDX-License-Identifier: Apache-2.0
"""``Accelerator``: the one top -- scratchpads, controller and CSRs behind one host port.

This component is what the Verilator benches and the virtual board simulate and what the board
builds synthesize (a board adds only clocks, pins and the host link, whose frame engine is the
only master of ``host``). Everything the host sees is the memory map of
:func:`hw.isa.memory_map`: a 32-bit word at bus byte address ``b`` is host word ``b // 4``
(``hw.bus.HostBus``: ``addr`` is the word address); region ``i`` starts at ``i << 24``.

* ``csr`` -- the :class:`hw.isa.Csr` registers: ``DESIGN_ID`` (``params.design_id``),
  ``ISA_VERSION``, ``STATUS`` (:class:`hw.isa.Status` bits, the :class:`hw.isa.ErrorCode` in
  bits 8..15), ``CONTROL`` (write :class:`hw.isa.Control` bits: ``START``, ``CLEAR``; reads 0),
  ``ENTRY``, ``PC`` and the ``PERF_*`` counters. Writes to read-only registers are ignored.
* ``instr``, ``act``, ``wgt``, ``quant``, ``lut`` -- one :class:`hw.scratchpad.Scratchpad`
  each, readable and writable by the host while no program runs (a host access waits in the
  host stage until the program has ended).

A request goes first into the host stage (:meth:`Accelerator._host_stage`: registers, its
target decoded), which takes one request at a time; ``host.ready`` is high while it is empty.
Every read is answered :attr:`Accelerator.read_latency` cycles after its transfer when its
target takes it at once (CSRs and holes always, a scratchpad unless a program runs), later
otherwise, always in order; an address outside every region (or past a region's size) reads 0
and ignores writes.
"""

from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib.wiring import In, Out, connect

from hw import isa
from hw.bus import HostBus
from hw.controller import PERF_LAYOUT, Controller
from hw.fsm import select_one_hot
from hw.isa import Control, Csr, Status
from hw.params import AccelParams
from hw.scratchpad import SCRATCHPAD_REGIONS, Scratchpad
from hw.unit import Setting, Unit, check_params

__all__ = ["Accelerator"]

_WORD_SHIFT = 2                                  # host words are 4 bytes
_REGION_WORD_BITS = isa.REGION_SHIFT - _WORD_SHIFT


class Accelerator(Unit):
    """The accelerator top (module docstring).

    Parameters
    ----------
    params : AccelParams
        Everything: geometry, scratchpads, limits; ``DESIGN_ID`` is ``params.design_id``.
    use_dsp : bool or None
        DSP multipliers (``None``: ``params.dsp_multipliers``).

    Members
    -------
    host : In(HostBus.Signature(addr_width=...))
        The host port (word addresses of the memory map).
    start : Out(1)
        One-cycle pulse: a program starts (``CONTROL.START`` taken).
    busy : Out(1)
        A program runs (``STATUS.BUSY``).
    done : Out(1)
        The last program reached HALT (``STATUS.DONE``).
    status : Out(32)
        The ``STATUS`` CSR's value (the link's STATUS reply carries it).

    Attributes
    ----------
    controller : Controller or None
        The controller of the last elaboration, for simulation monitors (its
        ``select_conflict``: :class:`hw.controller.Controller`).
    read_latency : int
        Cycles from a read transfer to ``r_valid`` when the target takes the request at once:
        the host stage, then :attr:`hw.scratchpad.Scratchpad.host_latency` + 2 for every
        address, CSRs and holes included, so answers stay in order (the + 2: each answering
        block's answer goes into a register beside it, and the OR of those into the answer
        register the top's host reads: neither the host nor a block's lane multiplexer sees
        the six blocks' OR).
    """

    params_fields = tuple(f for f in AccelParams.__dataclass_fields__
                          if AccelParams.__dataclass_fields__[f].init)
    params = Setting("The AccelParams the top was built from.")
    read_latency = 1 + Scratchpad.host_latency + 2

    def __init__(self, params, *, use_dsp: bool | None = None) -> None:
        self._params = check_params(params)
        self._use_dsp = use_dsp
        self._map = isa.memory_map(params)
        super().__init__({
            "host": In(HostBus.Signature(addr_width=self._map.address_width - _WORD_SHIFT)),
            "start": Out(1),
            "busy": Out(1),
            "done": Out(1),
            "status": Out(32),
        })
        self.controller: Controller | None = None

    @classmethod
    def params_arguments(cls, params) -> dict[str, object]:
        return {"params": check_params(params)}

    @property
    def memory_map(self) -> isa.MemoryMap:
        return self._map

    def elaborate(self, platform):
        m = Module()
        p = self._params
        m.submodules.ctrl = ctrl = Controller(p, use_dsp=self._use_dsp)
        self.controller = ctrl
        host = self._host_stage(m)
        offset = host.addr
        r_valid = Signal()
        r_data = Signal(32)
        answered = []
        taken = []
        for name in SCRATCHPAD_REGIONS:
            # The host gets a scratchpad while no program runs (`busy`, a register): the
            # controller touches no unit port then, and the grant waits for none of its logic.
            spad = Scratchpad.for_region(p, name, host_when_idle=True)
            m.submodules[f"{name}_spad"] = spad
            connect(m, getattr(ctrl, name), spad.unit)
            m.d.comb += spad.unit_idle.eq(~ctrl.busy)
            sel = host.sel[name]
            m.d.comb += [
                spad.host.addr.eq(offset),
                spad.host.write.eq(host.write),
                spad.host.w_data.eq(host.w_data),
                spad.host.w_en.eq(host.w_en),
                spad.host.valid.eq(host.valid & sel),
            ]
            taken.append(sel & spad.host.ready)
            answered.append(spad.host)
        csr_sel, hole = host.sel["csr"], host.sel["hole"]
        # CSRs and holes take a request at once; a scratchpad when its `ready` says so. The
        # selects are exclusive: a balanced OR, not a priority chain.
        taken = [csr_sel | hole, *taken]
        while len(taken) > 1:
            taken = [taken[i] | taken[i + 1] if i + 1 < len(taken) else taken[i]
                     for i in range(0, len(taken), 2)]
        m.d.comb += host.taken.eq(host.valid & taken[0])
        # Holes and CSR reads travel the same stages as a scratchpad read. The read decodes
        # the CSR's offset into one register per CSR (a one-hot select), and the CSR word is
        # an AND-OR of those registers and the values: neither the host's address nor its
        # decode (shared by Yosys with the scratchpads' host row multiplexers) reaches the
        # 20-way multiplexer. The word is the CSR's value a cycle after the read, when a
        # CONTROL write of the cycle before has its effect in STATUS either way.
        other = host.valid & ~host.write & (csr_sel | hole)
        answer_latency = Scratchpad.host_latency   # then the blocks' and the top's registers
        stage = [Signal(name=f"other_valid{i}") for i in range(answer_latency)]
        data = [Signal(32, name=f"other_data{i}") for i in range(1, answer_latency)]
        m.d.sync += stage[0].eq(other)
        csr_read = self._csr(m, ctrl, host, host.valid & csr_sel, csr_sel)
        m.d.sync += data[0].eq(csr_read)
        for i in range(1, answer_latency):
            m.d.sync += stage[i].eq(stage[i - 1])
        for i in range(1, answer_latency - 1):
            m.d.sync += data[i].eq(data[i - 1])
        # Each block's answer (zero unless valid) into a register of its own beside it, then
        # their OR into the answer register: the host (the link's frame engine, the harness'
        # output fold) reads a register, and no scratchpad's lane multiplexer drives the OR of
        # the six blocks across the die (a placed ulx3s_85f top's host read group, 14 ns).
        answers = [(stage[-1], data[-1]), *((port.r_valid, port.r_data) for port in answered)]
        names = ["other", *SCRATCHPAD_REGIONS]
        valid_any, data_any = Const(0), Const(0, 32)
        for name, (valid, word) in zip(names, answers):
            a_valid = Signal(name=f"{name}_answer_valid")
            a_data = Signal(32, name=f"{name}_answer_data")
            m.d.sync += [a_valid.eq(valid), a_data.eq(Mux(valid, word, 0))]
            valid_any |= a_valid
            data_any |= a_data
        m.d.sync += [r_valid.eq(valid_any), r_data.eq(data_any)]
        m.d.comb += [self.host.r_valid.eq(r_valid), self.host.r_data.eq(r_data)]
        return m

    def _host_stage(self, m) -> SimpleNamespace:
        """The host issue stage: the host's request in registers, and its target decoded.

        ``host.ready`` is high while the stage is empty, so a request is taken into it in the
        cycle after the last one left (a transfer every second cycle at most, which is the
        pace of the link's frame engine: ``W_ADDR``, ``W_BUS`` a word). Its region and offset
        bound are decoded on the way in, into one select register per target (``sel``: ``csr``,
        each scratchpad, ``hole``), so the scratchpads' byte-lane decode and their arbitration
        start from flip-flops: the harness' address register -> region comparator -> offset bound ->
        scratchpad grant -> lane write enables was the routed ``tiny`` top's critical path
        (``docs/boards.md``). The request leaves the stage when its target takes it
        (``taken``: CSRs and holes at once, a scratchpad when its ``ready`` says so), and
        only then is the stage free. Requests stay in order: a read after a write sees it."""
        host = self.host
        region = host.addr[_REGION_WORD_BITS:]
        offset = host.addr[:_REGION_WORD_BITS]
        st = SimpleNamespace(
            valid=Signal(name="host_stage_valid"),
            addr=Signal(_REGION_WORD_BITS, name="host_stage_offset"),
            write=Signal(name="host_stage_write"),
            w_data=Signal(32, name="host_stage_w_data"),
            w_en=Signal(4, name="host_stage_w_en"),
            taken=Signal(name="host_stage_taken"),
            sel={})
        decode = {"csr": region == isa.REGION_NAMES.index("csr")}
        for name in SCRATCHPAD_REGIONS:
            # An offset past the region is a hole: it must not reach the scratchpad's narrower
            # address, where it would wrap onto another word.
            size = self._map.region(name).size
            decode[name] = ((region == isa.REGION_NAMES.index(name))
                            & (offset < size >> _WORD_SHIFT))
        decode["hole"] = ~functools.reduce(operator.or_, decode.values())
        for name in decode:
            st.sel[name] = Signal(name=f"host_stage_sel_{name}")
        m.d.comb += host.ready.eq(~st.valid)
        with m.If(host.valid & ~st.valid):
            m.d.sync += [st.valid.eq(1), st.addr.eq(offset), st.write.eq(host.write),
                         st.w_data.eq(host.w_data), st.w_en.eq(host.w_en)]
            m.d.sync += [st.sel[name].eq(hit) for name, hit in decode.items()]
        with m.Elif(st.taken):
            m.d.sync += st.valid.eq(0)
        return st

    def _csr(self, m, ctrl, host, take, csr_sel):
        """The CSR block: writes of the host stage ``host`` on ``take``; returns the word at
        its offset of the cycle before (0 unless ``csr_sel`` was high then)."""
        p = self._params
        offset = host.addr
        entry = Signal(32)
        write = take & host.write
        byte = Signal(8)                      # CSR byte offset (the block is 256 bytes)
        m.d.comb += byte.eq(offset << _WORD_SHIFT)
        in_block = offset < isa.CSR_BLOCK_BYTES >> _WORD_SHIFT
        control = write & in_block & (byte == Csr.CONTROL) & host.w_en[0]
        # A CONTROL write reaches the controller a cycle later, from registers: the address
        # decode ends at two flip-flops, not at the controller's busy/done/error enables.
        # STATUS reads the pending command meanwhile: BUSY from the write's cycle on, DONE,
        # ERROR and CODE already cleared, as if the controller had taken it at once.
        start, clear = Signal(name="control_start"), Signal(name="control_clear")
        m.d.sync += [start.eq(control & host.w_data[0] & ~ctrl.busy),
                     clear.eq(control & host.w_data[1] & ~ctrl.busy)]
        m.d.comb += [
            ctrl.start.eq(start),
            ctrl.clear.eq(clear),
            ctrl.entry.eq(entry),
            self.start.eq(start),
            # BUSY (the port and STATUS) from the start pulse on: the link's run tracker
            # reads `busy` two cycles after its CONTROL write's transfer, when the host stage
            # has only just handed the write to the CSR block.
            self.busy.eq(ctrl.busy | start),
            self.done.eq(ctrl.done),
        ]
        assert int(Control.START) == 1 and int(Control.CLEAR) == 2
        # An ENTRY write lands a cycle later, from registers (its byte enables and data), as
        # CONTROL's: the offset decode ends at four flip-flops, not at the 32 enables of entry
        # (a netlist estimate's worst group of the ulx3s_85f top). A START can follow no
        # sooner than two cycles later (the host stage), and reads entry then.
        entry_we = Signal(4, name="entry_we")
        entry_wd = Signal(32, name="entry_wd")
        m.d.sync += [entry_we.eq(Mux(write & in_block & (byte == Csr.ENTRY), host.w_en, 0)),
                     entry_wd.eq(host.w_data)]
        for b in range(4):
            with m.If(entry_we[b]):
                m.d.sync += entry[8 * b:8 * b + 8].eq(entry_wd[8 * b:8 * b + 8])
        status = Signal(32)
        kept = ~(start | clear)                # DONE, ERROR and CODE, unless being cleared
        m.d.comb += status.eq(((ctrl.busy | start) * int(Status.BUSY))
                              | ((ctrl.done & kept) * int(Status.DONE))
                              | ((ctrl.error & kept) * int(Status.ERROR))
                              | (Mux(kept, ctrl.code, 0) << isa.STATUS_CODE_SHIFT))
        m.d.comb += self.status.eq(status)
        values = {
            Csr.DESIGN_ID: p.design_id, Csr.ISA_VERSION: isa.ISA_VERSION, Csr.STATUS: status,
            Csr.ENTRY: entry, Csr.PC: ctrl.pc,
        }
        for name in PERF_LAYOUT.members:
            values[Csr[f"PERF_{name.upper()}"]] = getattr(ctrl.perf, name)
        choices = []
        for csr, value in values.items():
            assert int(csr) % 4 == 0 and int(csr) < isa.CSR_BLOCK_BYTES, csr
            read = Signal(name=f"csr_read_{csr.name.lower()}")
            m.d.sync += read.eq(csr_sel & (offset == int(csr) >> _WORD_SHIFT))
            choices.append((read, value))
        return select_one_hot(choices, 32)
