# SPDX-License-Identifier: Apache-2.0
"""Frame engine: link bytes <-> requests on the accelerator's host port.

Receives request frames (:mod:`hw.link.protocol`) from a byte stream, buffers the whole
payload, checks it, executes it on the :class:`hw.bus.HostBus` (the engine is the port's only
master) and answers every frame exactly once. The byte-level model
:class:`sw.driver.model.FrameEngineModel` gives the same reply bytes for the same input; the
two are compared in a differential test.

Phases (one FSM)::

    IDLE -> OPCODE -> SEQ -> LENGTH -> PAYLOAD* -> CRC_HI -> CRC_LO     receive
         silence for timeout_cycles in any receive state after IDLE: code TIMEOUT -> COUNT
    VERIFY     the checks' verdicts into registers: CRC, opcode, length (and READ's n and
               stride), address; the reply length if all pass
    CHECK      first failing check, from those registers, then busy
    DISPATCH   WRITE -> W_ADDR/W_BUS per word; RUN: start pulse (with ``run_csrs``: after the
               RUN_ENTRY, RUN_START CSR writes); RESET: soft_reset pulse; WAIT -> WAIT until
               the run ends or its budget of cycles is spent
    COUNT      frames_ok or frames_failed += 1 (so a PERF reply counts itself)
    HEADER -> FETCH/R_WAIT -> BYTES (per payload word) -> CRC_HI/CRC_LO     reply -> IDLE

Safety: the only bus writes happen in W_BUS, reached only from a frame whose CRC, opcode,
length and address range all passed, with the bus address counting from the checked base for
the checked number of words -- and in RUN_ENTRY/RUN_START, at the two fixed ``run_csrs``
addresses of a checked RUN. Every receive state leaves on a byte or on the silence timeout,
WAIT after at most ``max_wait_cycles``, and every other state after at most the bus's and the
stream sink's waits, so the engine returns to IDLE in bounded time whenever the bus slave and
the UART transmitter keep going (proved for small parameters in ``tests/test_link_formal.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from amaranth.hdl import Array, Assert, Assume, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.bus import HostBus
from hw.checks import check_int
from hw.fsm import one_hot, select_one_hot
from hw.link import protocol as p

__all__ = ["FORMAL_PLATFORMS", "FrameEngine", "crc16_next"]

#: ``platform`` values that elaborate the proofs' assertions (``tests/test_link_formal.py``):
#: the safety properties, and with ``"formal_progress"`` also the bounded return to IDLE under
#: a cooperative environment (:meth:`FrameEngine._progress`).
FORMAL_PLATFORMS = ("formal", "formal_progress")

_BUF_WORDS = (p.MAX_LENGTH + p.WORD_BYTES) // p.WORD_BYTES   # 64: any length byte fits
_RX_STATES = ("IDLE", "OPCODE", "SEQ", "LENGTH", "PAYLOAD", "CRC_HI", "CRC_LO")


def _crc16_taps() -> list[tuple[int, int]]:
    """For each CRC output bit, the (crc bits, byte bits) masks it XORs: the CRC is linear
    over GF(2), so the standard library's CRC of unit inputs gives the matrix."""
    taps = [(0, 0)] * 16
    for i in range(24):
        crc, byte = (1 << i, 0) if i < 16 else (0, 1 << (i - 16))
        out = p.crc16(bytes([byte]), crc)
        for bit in range(16):
            if out >> bit & 1:
                c, b = taps[bit]
                taps[bit] = (c | crc, b | byte)
    return taps


_CRC16_TAPS = _crc16_taps()


def crc16_next(crc: Value, byte: Value) -> Value:
    """CRC-16/CCITT-FALSE register after one more byte, as XOR equations (the same function
    as ``binascii.crc_hqx(bytes([byte]), crc)``)."""
    bits = []
    for crc_mask, byte_mask in _CRC16_TAPS:
        terms = [crc[i] for i in range(16) if crc_mask >> i & 1]
        terms += [byte[i] for i in range(8) if byte_mask >> i & 1]
        bits.append(Cat(*terms).xor())
    return Cat(*bits)


class FrameEngine(wiring.Component):
    """Request frames in, replies out, the host port driven (module docstring).

    Parameters
    ----------
    identity : bytes
        The IDENTIFY reply payload (:func:`hw.link.protocol.identify_payload`).
    ranges : sequence of (base, size, writable)
        The memory map READ and WRITE may touch (byte addresses, word aligned); everything
        else is answered ``BAD_ADDRESS``.
    addr_width : int
        Word address width of the host port; every range must lie below ``4 << addr_width``.
    timeout_cycles : int
        Silence inside a request, in clock cycles, after which it is answered ``TIMEOUT``
        (:func:`hw.link.protocol.timeout_cycles`).
    run_csrs : (int, int, int) or None
        ``(entry_addr, control_addr, start_value)``: RUN also writes its entry to byte address
        ``entry_addr`` and then ``start_value`` to ``control_addr`` on the host port, for an
        accelerator started through CSRs (:mod:`hw.accelerator`'s ENTRY and CONTROL); ``start``
        pulses after the second write's transfer. ``None``: RUN only pulses ``start``.
    max_wait_cycles : int
        The longest WAIT (:data:`hw.link.protocol.MAX_WAIT_CYCLES`; the proofs use fewer).

    Members
    -------
    i_stream : In(stream.Signature(8))
        Request bytes (from the UART receiver). Not ready while a request executes or a reply
        is sent.
    o_stream : Out(stream.Signature(8))
        Reply bytes (to the UART transmitter).
    bus : Out(HostBus.Signature(addr_width=addr_width))
        The accelerator's host port (timing: :mod:`hw.bus`).
    start : Out(1)
        One-cycle pulse of a RUN, with ``entry``.
    entry : Out(32)
        RUN's entry argument, held until the next RUN.
    busy : In(1)
        The accelerator runs. It must rise by the cycle after ``start`` (with ``run_csrs``: by
        the cycle after the CONTROL write's transfer).
    soft_reset : Out(1)
        One-cycle pulse of a RESET.
    status : In(32)
        The accelerator's status word, reported by STATUS.
    """

    def __init__(self, *, identity: bytes, ranges: Iterable[Sequence[object]],
                 addr_width: int, timeout_cycles: int,
                 run_csrs: tuple[int, int, int] | None = None,
                 max_wait_cycles: int = p.MAX_WAIT_CYCLES):
        if not isinstance(identity, (bytes, bytearray)) or len(identity) != p.IDENTIFY_BYTES:
            raise ValueError(f"identity must be {p.IDENTIFY_BYTES} bytes, not {identity!r}")
        self._identity = bytes(identity)
        self._addr_width = check_int("addr_width", addr_width, 1, 30)
        self._ranges = p.check_ranges(ranges)
        for r in self._ranges:
            if r.base + r.size > p.WORD_BYTES << addr_width:
                raise ValueError(
                    f"ranges must lie below 0x{p.WORD_BYTES << addr_width:x} (addr_width "
                    f"{addr_width}), not (0x{r.base:x}, 0x{r.size:x})")
        self._timeout = check_int("timeout_cycles", timeout_cycles, 1, 1 << 30)
        self._run_csrs = None if run_csrs is None else _check_run_csrs(run_csrs, addr_width)
        self._max_wait = check_int("max_wait_cycles", max_wait_cycles, 1, p.MAX_WAIT_CYCLES)
        super().__init__({
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
            "bus": Out(HostBus.Signature(addr_width=addr_width)),
            "start": Out(1),
            "entry": Out(32),
            "busy": In(1),
            "soft_reset": Out(1),
            "status": In(32),
        })

    @property
    def timeout_cycles(self) -> int:
        return self._timeout

    @property
    def max_wait_cycles(self) -> int:
        return self._max_wait

    def elaborate(self, platform):
        m = Module()
        r = _Regs(self._addr_width, self._timeout, self._max_wait)
        m.submodules.buf = buf = Memory(shape=32, depth=_BUF_WORDS, init=[])
        r.wr = buf.write_port(granularity=8)
        r.rd = buf.read_port()
        m.d.sync += [self.start.eq(0), self.soft_reset.eq(0)]
        self._run_tracker(m, r)
        verdicts = self._check(m, r)
        m.d.comb += r.rd.addr.eq(r.index)
        with m.FSM() as fsm:
            self._receive(m, r)
            # The checks take two cycles: VERIFY registers each check's verdict (their
            # address comparators and length decodes end at flip-flops, not at the reply's
            # code and length), CHECK picks the first failure from those registers.
            with m.State("VERIFY"):
                m.d.sync += [r.verdict[name].eq(verdicts[name]) for name in r.verdict]
                m.d.sync += [r.nwords.eq(verdicts["n_write"]), r.stride.eq(verdicts["stride"])]
                m.next = "CHECK"
            with m.State("CHECK"):
                v = r.verdict
                op = p.Opcode
                blocked = ((r.opcode == op.RUN) | (r.opcode == op.WRITE)) & r.busy_any
                code = Mux(~v["crc_ok"], p.Status.BAD_CRC,
                           Mux(~v["known"], p.Status.BAD_OPCODE,
                               Mux(~v["length_ok"], p.Status.BAD_LENGTH,
                                   Mux(~v["addr_ok"], p.Status.BAD_ADDRESS,
                                       Mux(blocked, p.Status.BUSY, p.Status.OK)))))
                ok = v["crc_ok"] & v["known"] & v["length_ok"] & v["addr_ok"] & ~blocked
                m.d.sync += [r.code.eq(code), r.rlen.eq(Mux(ok, v["rlen"], 0)),
                             r.baddr.eq(r.arg0[2:]), r.index.eq(1)]
                m.next = "DISPATCH"
            self._dispatch(m, r)
            self._reply(m, r)
        one_hot(fsm)
        if platform in FORMAL_PLATFORMS:
            self._invariants(m, r, fsm)
        if platform == "formal_progress":
            self._progress(m, r, fsm)
        return m

    def progress_bound(self) -> int:
        """Cycles after which the engine is back in IDLE, at most, once it leaves it (under
        :meth:`_progress`'s environment): the ranking of a fresh request."""
        return self._rank_check() + 2 + 260 * self._timeout

    def _rank_check(self) -> int:
        # CHECK: the costliest DISPATCH after it (any reply length: 63 words).
        return self._rank_count(63) + 2 + max(2 * p.MAX_WORDS + 1, self._max_wait + 1)

    @staticmethod
    def _rank_count(words):
        # COUNT, then HEADER (5 bytes), per word FETCH (+ R_WAIT) and 4 BYTES, then 2 CRC bytes.
        return 6 * words + 8

    def _progress(self, m, r, fsm):
        """Assertions for "returns to IDLE within a bounded number of cycles after any input"
        (:meth:`progress_bound`), proved by a ranking function: outside IDLE, ``rank`` (an upper
        bound on the cycles left until IDLE, computed from the state) falls every cycle.

        The environment must let the engine move: the UART transmitter and the bus slave are
        always ready, and a read's data comes by the cycle after its transfer (the bus contract
        asks for *bounded* time; one cycle is that bound here). Input bytes and ``busy`` stay
        free: a request may arrive a byte per cycle or stall up to the receive timeout per byte,
        and the accelerator may stay busy for ever (WAIT ends on its budget)."""
        t = self._timeout
        m.d.comb += [Assume(self.o_stream.ready), Assume(self.bus.ready)]
        with m.If(fsm.ongoing("R_WAIT")):
            m.d.comb += Assume(self.bus.r_valid)
        words = r.rlen >> 2
        count = self._rank_count(words)
        rank = Signal(24)
        rx_left = {"OPCODE": 260, "SEQ": 259, "LENGTH": 258, "CRC_HI": 2, "CRC_LO": 1}
        check = self._rank_check()
        with m.Switch(fsm.state):
            for state, left in (*rx_left.items(), ("PAYLOAD", None)):
                with m.Case(fsm.encoding[state]):
                    left = (r.length - r.count + 2) if left is None else left
                    # A byte within the timeout or the timeout itself, for every byte left.
                    m.d.comb += rank.eq(check + 2 + (left - 1) * t + (t - r.timer))
            with m.Case(fsm.encoding["VERIFY"]):
                m.d.comb += rank.eq(check + 1)
            with m.Case(fsm.encoding["CHECK"]):
                m.d.comb += rank.eq(check)
            with m.Case(fsm.encoding["DISPATCH"]):
                m.d.comb += rank.eq(count + 1 + max(2 * p.MAX_WORDS + 1, self._max_wait + 1))
            with m.Case(fsm.encoding["W_ADDR"]):
                m.d.comb += rank.eq(count + 2 + 2 * (r.nwords - r.index))
            with m.Case(fsm.encoding["W_BUS"]):
                m.d.comb += rank.eq(count + 1 + 2 * (r.nwords - r.index))
            if self._run_csrs is not None:
                with m.Case(fsm.encoding["RUN_ENTRY"]):
                    m.d.comb += rank.eq(count + 2)
                with m.Case(fsm.encoding["RUN_START"]):
                    m.d.comb += rank.eq(count + 1)
            with m.Case(fsm.encoding["WAIT"]):
                m.d.comb += rank.eq(count + 1 + r.wait_left)
            with m.Case(fsm.encoding["COUNT"]):
                m.d.comb += rank.eq(count)
            with m.Case(fsm.encoding["HEADER"]):
                m.d.comb += rank.eq(6 * words + 2 + 5 - r.index)
            with m.Case(fsm.encoding["FETCH"]):
                m.d.comb += rank.eq(6 * (words - r.index) + 2)
            with m.Case(fsm.encoding["R_WAIT"]):
                m.d.comb += rank.eq(6 * (words - r.index) + 1)
            with m.Case(fsm.encoding["BYTES"]):
                m.d.comb += rank.eq(6 * (words - r.index) - r.byte)
            with m.Case(fsm.encoding["CRC_OUT_HI"]):
                m.d.comb += rank.eq(2)
            with m.Case(fsm.encoding["CRC_OUT_LO"]):
                m.d.comb += rank.eq(1)
        prev_rank = Signal.like(rank)
        was_idle = Signal(init=1)
        m.d.sync += [prev_rank.eq(rank), was_idle.eq(fsm.ongoing("IDLE"))]
        receiving = Cat(*(fsm.ongoing(s) for s in _RX_STATES[1:])).any()
        with m.If(receiving):
            m.d.comb += Assert(r.timer < t)
        with m.If(fsm.ongoing("PAYLOAD")):
            m.d.comb += Assert(r.count < r.length)
        with m.If(fsm.ongoing("W_ADDR") | fsm.ongoing("W_BUS")):
            m.d.comb += Assert(r.nwords <= p.MAX_WORDS)
        with m.If(fsm.ongoing("WAIT")):
            m.d.comb += Assert(r.wait_left <= self._max_wait)
        with m.If(fsm.ongoing("BYTES") | fsm.ongoing("FETCH") | fsm.ongoing("R_WAIT")):
            m.d.comb += Assert(r.index < words)
        m.d.comb += [
            Assert(rank <= self.progress_bound()),
            Assert(fsm.ongoing("IDLE") | (rank > 0)),
            Assert(was_idle | (rank < prev_rank)),       # falls every cycle outside IDLE
        ]

    def _invariants(self, m, r, fsm):
        """Assertions for the proofs (``tests/test_link_formal.py``, elaborated with
        ``platform="formal"``): "no write outside a valid WRITE's range" (the last one; the
        others make it provable by induction: they tie the write address to the checked base
        and word count while a WRITE executes) and :meth:`_answer_once`."""
        # The checks as specified, computed straight from the received fields: the engine's
        # staged address check (:meth:`_check`) must agree with them at CHECK.
        c = dict(r.checks)
        op = p.Opcode
        # READ's span (n - 1) * s + 1, wrapped to the engine's 14 bits (for an n of 0, which
        # the length check refuses, as the engine wraps it).
        n, stride = r.arg1[:6], Mux(r.length == 3 * p.WORD_BYTES, r.arg2[:8], 1)
        spec_read_ok = self._access_ok(m, r, (n * stride - stride + 1)[:len(r.span)],
                                       write=False)
        spec_write_ok = self._access_ok(m, r, c["n_write"], write=True)
        c["addr_ok"] = Mux(r.opcode == op.READ, spec_read_ok,
                           Mux(r.opcode == op.WRITE, spec_write_ok, 1))
        checked = (r.crc == 0) & c["known"] & c["length_ok"] & c["addr_ok"]
        executing = fsm.ongoing("W_ADDR") | fsm.ongoing("W_BUS")
        running = (fsm.ongoing("RUN_ENTRY") | fsm.ongoing("RUN_START")
                   if self._run_csrs is not None else Const(0))
        with m.If(fsm.ongoing("DISPATCH") & (r.code == p.Status.OK)):
            m.d.comb += Assert(checked & (r.index == 1)
                               & (r.baddr == r.arg0[2:2 + self._addr_width])
                               & (r.nwords == c["n_write"]))
        with m.If(executing):
            m.d.comb += Assert((r.opcode == p.Opcode.WRITE) & (r.code == p.Status.OK) & checked
                               & (r.index >= 1) & (r.index <= r.nwords)
                               & (r.nwords == c["n_write"])
                               & (r.baddr == (r.arg0[2:] + r.index - 1)[:self._addr_width]))
        with m.If(running):
            m.d.comb += Assert((r.opcode == p.Opcode.RUN) & (r.code == p.Status.OK))
        # CHECK's registered verdicts are the checks of the frame it answers (nothing that
        # they read changes in VERIFY).
        v = r.verdict
        with m.If(fsm.ongoing("CHECK")):
            m.d.comb += Assert(Cat(*(v[name] == c[name] for name in v)).all()
                               & (r.nwords == c["n_write"]))
        # The check's stage 1 is up to date a cycle after the length and the arguments were
        # last written (LENGTH, PAYLOAD), stage 2 (READ's span) a cycle later: always at
        # VERIFY and CHECK (:meth:`_check`).
        wrote_args, wrote_args2 = Signal(), Signal()
        m.d.sync += [wrote_args.eq(fsm.ongoing("LENGTH") | fsm.ongoing("PAYLOAD")),
                     wrote_args2.eq(wrote_args)]
        with m.If(~wrote_args):
            m.d.comb += Assert(r.check_stage1 == r.check_stage1_next)
        with m.If(~wrote_args & ~wrote_args2):
            m.d.comb += Assert(r.span == r.span_next)
        with m.If(fsm.ongoing("CRC_LO")):
            m.d.comb += Assert(~wrote_args)
        with m.If(fsm.ongoing("VERIFY") | fsm.ongoing("CHECK")):
            m.d.comb += Assert(~wrote_args & ~wrote_args2)
        self._answer_once(m, r, fsm)
        bus = self.bus
        inside = Cat(*((bus.addr >= rg.base >> 2) & (bus.addr < (rg.base + rg.size) >> 2)
                       for rg in self._ranges if rg.writable)).any()
        allowed = (executing & inside) | running
        with m.If(bus.valid & bus.write):
            m.d.comb += Assert(allowed)

    # -- run state --------------------------------------------------------------------------

    def _run_tracker(self, m, r):
        # `running` spans from the start pulse until `busy` falls; `armed` skips the start
        # cycle itself, so an accelerator that raises busy one cycle late is still seen.
        armed = Signal()
        m.d.comb += r.busy_any.eq(self.busy | r.running)
        with m.If(r.running):
            m.d.sync += [r.run_cycles.eq(r.run_cycles + 1), armed.eq(1)]
            with m.If(armed & ~self.busy):
                m.d.sync += [r.running.eq(0), r.done.eq(1), armed.eq(0)]
        with m.Else():
            m.d.sync += armed.eq(0)                 # also after a RESET ends a run early

    # -- receive ----------------------------------------------------------------------------

    def _receive(self, m, r):
        i = self.i_stream
        byte = i.payload
        with m.State("IDLE"):
            m.d.comb += i.ready.eq(1)
            with m.If(i.valid & (byte == p.SOF_REQUEST)):
                m.d.sync += [r.crc.eq(p.CRC_INIT), r.opcode.eq(0), r.seq.eq(0), r.timer.eq(0)]
                m.next = "OPCODE"
        steps = (("OPCODE", r.opcode, "SEQ"), ("SEQ", r.seq, "LENGTH"),
                 ("LENGTH", r.length, None), ("PAYLOAD", None, "CRC_HI"),
                 ("CRC_HI", None, "CRC_LO"), ("CRC_LO", None, "VERIFY"))
        for state, field, after in steps:
            with m.State(state):
                m.d.comb += i.ready.eq(1)
                with m.If(i.valid):
                    m.d.sync += [r.crc.eq(crc16_next(r.crc, byte)), r.timer.eq(0)]
                    if field is not None:
                        m.d.sync += field.eq(byte)
                    if state == "LENGTH":
                        m.d.sync += r.count.eq(0)
                        m.next = "PAYLOAD"
                        with m.If(byte == 0):
                            m.next = "CRC_HI"
                    elif state == "PAYLOAD":
                        self._store_payload_byte(m, r, byte)
                        with m.If(r.count + 1 == r.length):
                            m.next = after
                    else:
                        m.next = after
                with m.Elif(r.timer == self._timeout - 1):
                    m.d.sync += [r.code.eq(p.Status.TIMEOUT), r.rlen.eq(0)]
                    m.next = "COUNT"
                with m.Else():
                    m.d.sync += r.timer.eq(r.timer + 1)

    def _store_payload_byte(self, m, r, byte):
        m.d.comb += [
            r.wr.addr.eq(r.count[2:]),
            r.wr.data.eq(Cat(byte, byte, byte, byte)),
            r.wr.en.eq(Const(1, 4) << r.count[:2]),
        ]
        m.d.sync += r.count.eq(r.count + 1)
        with m.If(r.count < 4):
            m.d.sync += r.arg0.eq(Cat(r.arg0[8:], byte))
        with m.Elif(r.count < 8):
            m.d.sync += r.arg1.eq(Cat(r.arg1[8:], byte))
        with m.Elif(r.count < 12):
            m.d.sync += r.arg2.eq(Cat(r.arg2[8:], byte))

    # -- check ------------------------------------------------------------------------------

    def _access_ok(self, m, r, n_words, write):
        """Comb, the checks' specification: ``n_words`` words from byte address ``arg0`` fit
        one (writable) range. Only the proofs elaborate it (:meth:`_invariants`); the engine
        decides from :meth:`_check`'s registered stage, proved equal to it."""
        end = Signal(40)
        m.d.comb += end.eq(r.arg0 + (n_words << 2))
        fits = [(r.arg0 >= rg.base) & (end <= rg.base + rg.size)
                for rg in self._ranges if rg.writable or not write]
        ok = Signal()
        m.d.comb += ok.eq((r.arg0[:2] == 0) & (Cat(*fits).any() if fits else 0))
        return ok

    def _staged_access_ok(self, starts, rooms, n_words, write):
        """Comb: ``n_words`` words from ``arg0`` fit one (writable) range, from stage 1 of
        :meth:`_check`: per range, whether ``arg0`` starts in it and the bytes it has left."""
        terms = [start & ((n_words << 2) <= room)
                 for rg, start, room in zip(self._ranges, starts, rooms)
                 if rg.writable or not write]
        return Cat(*terms).any() if terms else Const(0)

    def _check(self, m, r):
        """Comb: each check's verdict (``crc_ok``, ``known``, ``length_ok``, ``addr_ok``), the
        reply's payload length if they pass (``rlen``), WRITE's word count (``n_write``) and
        READ's stride (``stride``), by name."""
        op = p.Opcode
        n_write = Signal(8)
        m.d.comb += n_write.eq((r.length >> 2) - 1)
        # The address checks are computed in register stages that run every cycle from the
        # received fields (each was the board top's longest path when computed in VERIFY):
        # stage 1 from the length and the arguments, stage 2 (READ's span) from stage 1,
        # and VERIFY compares stage 1 and 2 only. The length and the arguments are last
        # written in PAYLOAD (LENGTH for an empty payload), at least the two CRC bytes (two
        # cycles) before VERIFY, so both stages are up to date there (:meth:`_invariants`).
        #
        # READ: n words `stride` apart span (n - 1) * stride + 1 words (protocol.read_span);
        # only n in 1..62 and stride in 1..255 reach the range check's verdict.
        strided = r.length == 3 * p.WORD_BYTES
        stride = Signal(8)
        m.d.comb += stride.eq(Mux(strided, r.arg2[:8], 1))
        # Stage 1 holds, from the fields as received: READ's span (n - 1) * s + 1 as the
        # three partial products of s and two bits of n each and 1 - s (s the stride, 1
        # without one), for stage 2 to add (a route of the ulx3s_85f board top: 10.7 ns for
        # the whole sum in one stage); WRITE's word count; per range, whether arg0 is aligned
        # and inside it, and the bytes from arg0 to the range's end, saturated at 2**16 (more
        # than any span: 62 * 255 words). The products are logic beside the engine, not a
        # MULT18X18D that the placer may put across the die from it (a placement of that
        # top: 16.9 ns into its operand registers).
        span = Signal(14)
        room_cap = 1 << 16
        assert (p.MAX_WORDS - 1) * p.MAX_STRIDE + 1 < 1 << len(span)
        assert p.WORD_BYTES << len(span) <= room_cap and p.MAX_PAYLOAD <= room_cap
        n = r.arg1[:6]
        partials = [Signal(len(span), name=f"check_span_partial_{k}") for k in range(3)]
        one_minus_s = Signal(len(span), name="check_span_one_minus_s")
        partials_next = [(Mux(n[2 * k], stride, 0) + Mux(n[2 * k + 1], stride << 1, 0)) << 2 * k
                         for k in range(3)]
        # (Reset values are those of zero fields, where the proofs start: no stride, n = 0.)
        staged_n_write = Signal(8, init=0xFF)      # (0 >> 2) - 1, wrapped
        starts = [Signal(name=f"check_start_{i}", init=rg.base == 0)
                  for i, rg in enumerate(self._ranges)]
        rooms = [Signal(range(room_cap + 1), name=f"check_room_{i}",
                        init=min(rg.base + rg.size, room_cap))
                 for i, rg in enumerate(self._ranges)]
        aligned = r.arg0[:2] == 0
        starts_next, rooms_next = [], []
        for rg in self._ranges:
            end = rg.base + rg.size
            room = Signal(33)
            m.d.comb += room.eq(end - r.arg0)
            starts_next.append(aligned & (r.arg0 >= rg.base) & (r.arg0 <= end))
            # Saturated where end - arg0 >= room_cap, i.e. arg0 <= end - room_cap: a compare
            # of arg0 with a constant beside the subtraction, not behind it (a route of the
            # ulx3s_85f board top: arg0 -> the subtraction's carry chain -> the compare -> the
            # rooms' reset inputs, 10.08 ns). Where arg0 > end the room differs from the
            # wrapped subtraction's, but the range's start is 0 there and the room unread.
            saturated = (r.arg0 <= end - room_cap) if end >= room_cap else Const(0)
            rooms_next.append(Mux(saturated, room_cap, room[:17]))
        stage1 = [*partials, one_minus_s, staged_n_write, *starts, *rooms]
        stage1_next = [Signal.like(reg, name=f"{reg.name}_next") for reg in stage1]
        m.d.comb += [nxt.eq(value) for nxt, value in zip(stage1_next, [
            *partials_next, 1 - stride, n_write, *starts_next, *rooms_next])]
        r.check_stage1, r.check_stage1_next = Cat(*stage1), Cat(*stage1_next)
        r.span = span
        r.span_next = Signal.like(span, name="span_next")
        m.d.comb += r.span_next.eq((partials[0] + partials[1]) + (partials[2] + one_minus_s))
        m.d.sync += [r.check_stage1.eq(r.check_stage1_next), span.eq(r.span_next)]

        stride_ok = ~strided | ((r.arg2 >= 1) & (r.arg2 <= p.MAX_STRIDE))
        read_ok = self._staged_access_ok(starts, rooms, span, write=False)
        write_ok = self._staged_access_ok(starts, rooms, staged_n_write, write=True)
        length_ok = Signal()
        with m.Switch(r.opcode):
            with m.Case(op.WRITE):
                m.d.comb += length_ok.eq((r.length >= 8) & (r.length <= p.MAX_PAYLOAD)
                                         & (r.length[:2] == 0))
            with m.Case(op.READ):
                m.d.comb += length_ok.eq(((r.length == 8) | strided) & (r.arg1 >= 1)
                                         & (r.arg1 <= p.MAX_WORDS) & stride_ok)
            with m.Case(op.RUN, op.WAIT):
                m.d.comb += length_ok.eq(r.length == 4)
            with m.Default():
                m.d.comb += length_ok.eq(r.length == 0)
        known = Cat(*(r.opcode == o for o in op)).any()
        addr_ok = Mux(r.opcode == op.READ, read_ok, Mux(r.opcode == op.WRITE, write_ok, 1))
        r.checks = {"known": known, "length_ok": length_ok, "addr_ok": addr_ok,
                    "n_write": n_write}
        rlen = Signal(8)
        with m.Switch(r.opcode):
            with m.Case(op.IDENTIFY):
                m.d.comb += rlen.eq(p.IDENTIFY_BYTES)
            with m.Case(op.READ):
                m.d.comb += rlen.eq(r.arg1[:6] << 2)
            with m.Case(op.STATUS):
                m.d.comb += rlen.eq(4 * p.STATUS_WORDS)
            with m.Case(op.PERF):
                m.d.comb += rlen.eq(4 * p.PERF_WORDS)
            with m.Case(op.WAIT):
                m.d.comb += rlen.eq(4 * p.WAIT_WORDS)
        r.checks.update(crc_ok=r.crc == 0, rlen=rlen)
        return {"crc_ok": r.crc == 0, "known": known, "length_ok": length_ok,
                "addr_ok": addr_ok, "rlen": rlen, "n_write": n_write, "stride": stride}

    # -- execute ----------------------------------------------------------------------------

    def _dispatch(self, m, r):
        op = p.Opcode
        bus = self.bus
        with m.State("DISPATCH"):
            m.next = "COUNT"
            with m.If(r.code == p.Status.OK):
                with m.Switch(r.opcode):
                    with m.Case(op.WRITE):
                        m.next = "W_ADDR"
                    with m.Case(op.RUN):
                        if self._run_csrs is None:
                            m.d.sync += self._start_run(r)
                        else:
                            m.next = "RUN_ENTRY"
                    with m.Case(op.RESET):
                        m.d.sync += [self.soft_reset.eq(1), r.running.eq(0), r.done.eq(0),
                                     r.run_cycles.eq(0), r.runs.eq(0),
                                     r.frames_ok.eq(0), r.frames_failed.eq(0)]
                    with m.Case(op.WAIT):
                        m.d.sync += r.wait_left.eq(Mux(r.arg0 > self._max_wait,
                                                       self._max_wait, r.arg0))
                        m.next = "WAIT"
        with m.State("WAIT"):
            with m.If(self._wait_over(r)):
                m.next = "COUNT"
            with m.Else():
                m.d.sync += r.wait_left.eq(r.wait_left - 1)
        if self._run_csrs is not None:
            entry_addr, control_addr, start_value = self._run_csrs
            for state, addr, value, after in (("RUN_ENTRY", entry_addr, r.arg0, "RUN_START"),
                                              ("RUN_START", control_addr, start_value, "COUNT")):
                with m.State(state):
                    m.d.comb += [bus.valid.eq(1), bus.write.eq(1), bus.addr.eq(addr >> 2),
                                 bus.w_data.eq(value), bus.w_en.eq(0b1111)]
                    with m.If(bus.ready):
                        if state == "RUN_START":
                            m.d.sync += self._start_run(r)
                        m.next = after
        with m.State("W_ADDR"):
            m.next = "W_BUS"                  # the buffer's read port answers next cycle
        with m.State("W_BUS"):
            m.d.comb += [bus.valid.eq(1), bus.write.eq(1), bus.addr.eq(r.baddr),
                         bus.w_data.eq(r.rd.data), bus.w_en.eq(0b1111)]
            with m.If(bus.ready):
                m.d.sync += [r.baddr.eq(r.baddr + 1), r.index.eq(r.index + 1)]
                m.next = "W_ADDR"
                with m.If(r.index == r.nwords):
                    m.next = "COUNT"
        with m.State("COUNT"):
            with m.If(r.code == p.Status.OK):
                m.d.sync += r.frames_ok.eq(r.frames_ok + 1)
            with m.Else():
                m.d.sync += r.frames_failed.eq(r.frames_failed + 1)
            m.d.sync += [r.index.eq(0), r.baddr.eq(r.arg0[2:]),
                         r.header.eq(Cat(Const(p.SOF_REPLY, 8), r.opcode, r.seq, r.code, r.rlen))]
            m.next = "HEADER"

    def _answer_once(self, m, r, fsm):
        """Assertions: every request that ends (its last byte or its timeout) gets exactly one
        reply header before the next request can end, and every reply ends after a header."""
        receiving = Cat(*(fsm.ongoing(s) for s in _RX_STATES)).any()
        was_receiving = Signal(init=1)
        was_last = Signal()
        owed = Signal()
        headed = Signal()
        o = self.o_stream
        frame_end = was_receiving & ~receiving
        reply_end = was_last & fsm.ongoing("IDLE")
        header_sof = fsm.ongoing("HEADER") & (r.index == 0) & o.valid & o.ready
        m.d.sync += [was_receiving.eq(receiving),
                     was_last.eq(fsm.ongoing("CRC_OUT_LO") & o.ready)]
        with m.If(frame_end):
            m.d.sync += owed.eq(1)
        with m.If(reply_end):
            m.d.sync += [owed.eq(0), headed.eq(0)]
        with m.If(header_sof):
            m.d.sync += headed.eq(1)
        sent = (fsm.ongoing("HEADER") & (r.index != 0)) | Cat(
            *(fsm.ongoing(s) for s in ("FETCH", "R_WAIT", "BYTES", "CRC_OUT_HI",
                                      "CRC_OUT_LO"))).any()
        payload = Cat(*(fsm.ongoing(s) for s in ("FETCH", "R_WAIT", "BYTES"))).any()
        with m.If(fsm.ongoing("HEADER")):
            m.d.comb += Assert(r.index <= 4)
        with m.If(payload):
            m.d.comb += Assert(r.index < (r.rlen >> 2))
        m.d.comb += [
            Assert(r.rlen[:2] == 0),                        # whole words, always
            Assert(~(frame_end & owed)),                    # no second request before a reply
            Assert(~(header_sof & headed)),                 # one header per request
            Assert(~reply_end | (owed & headed)),           # a reply ends only after its header
            Assert(receiving | owed | frame_end),           # a request in flight is owed
            Assert(~receiving | ~owed | reply_end),
            Assert(headed == (sent | reply_end)),
            Assert(was_last == reply_end),
        ]

    @staticmethod
    def _wait_over(r):
        """WAIT ends: the accelerator's busy fell (and the run's armed cycle passed), or the
        budget is spent."""
        return ~r.busy_any | (r.wait_left == 0)

    def _start_run(self, r):
        return [self.start.eq(1), self.entry.eq(r.arg0), r.running.eq(1), r.done.eq(0),
                r.run_cycles.eq(0), r.runs.eq(r.runs + 1)]

    # -- reply ------------------------------------------------------------------------------

    def _send(self, m, r, value, *, crc=True):
        """Comb: offer ``value``; returns the handshake (sync CRC update when ``crc``)."""
        o = self.o_stream
        m.d.comb += [o.valid.eq(1), o.payload.eq(value)]
        if crc:
            with m.If(o.ready):
                m.d.sync += r.crc.eq(crc16_next(r.crc, value))
        return o.ready

    def _reply(self, m, r):
        # The header's bytes leave from a shift register loaded in COUNT (the reply's code and
        # length are final there), not through a multiplexer on `index` into the CRC's XOR
        # tree (a route of the ulx3s_85f board top: 10.7 ns into `crc`).
        with m.State("HEADER"):
            byte = r.header[:8]
            with m.If(self._send(m, r, byte, crc=False)):
                m.d.sync += [r.crc.eq(Mux(r.index == 0, p.CRC_INIT, crc16_next(r.crc, byte))),
                             r.header.eq(r.header >> 8), r.index.eq(r.index + 1)]
                with m.If(r.index == len(r.header) // 8 - 1):
                    m.d.sync += r.index.eq(0)
                    m.next = "FETCH"
                    with m.If(r.rlen == 0):
                        m.next = "CRC_OUT_HI"
        self._fetch(m, r)
        with m.State("BYTES"):
            with m.If(self._send(m, r, r.word.word_select(r.byte, 8))):
                m.d.sync += r.byte.eq(r.byte + 1)
                with m.If(r.byte == 3):
                    m.d.sync += r.index.eq(r.index + 1)
                    m.next = "FETCH"
                    with m.If(r.index == (r.rlen >> 2) - 1):
                        m.next = "CRC_OUT_HI"
        with m.State("CRC_OUT_HI"):
            with m.If(self._send(m, r, r.crc[8:], crc=False)):
                m.next = "CRC_OUT_LO"
        with m.State("CRC_OUT_LO"):
            with m.If(self._send(m, r, r.crc[:8], crc=False)):
                m.next = "IDLE"

    def _fetch(self, m, r):
        op = p.Opcode
        bus = self.bus
        ident = Array(Const(int.from_bytes(self._identity[i:i + 4], "little"), 32)
                      for i in range(0, p.IDENTIFY_BYTES, 4))
        flags = Cat(r.busy_any, r.done)
        status = Array([flags, self.status])
        perf = Array([r.run_cycles, r.runs, r.frames_ok, r.frames_failed])
        waited = Array([flags, self.status, r.run_cycles])
        # Which reply the opcode asks for, one-hot flip-flops (the opcode is written in OPCODE,
        # long before FETCH): the word's multiplexer is an AND-OR of registers, not a decode
        # of the opcode into 32 enables (the board top's netlist estimate: 14.1 ns).
        answers = {o: Signal(name=f"answer_{o.name.lower()}")
                   for o in (op.IDENTIFY, op.STATUS, op.PERF, op.WAIT)}
        # READ's too: the bus transfer's valid and the word's load enable (a route of the
        # ulx3s_85f board top: 10.4 ns from the opcode into `word`).
        answer_read = Signal(name="answer_read")
        m.d.sync += [flag.eq(r.opcode == o) for o, flag in answers.items()]
        m.d.sync += answer_read.eq(r.opcode == op.READ)
        local = select_one_hot([(answers[op.IDENTIFY], ident[r.index[:3]]),
                                (answers[op.STATUS], status[r.index[:1]]),
                                (answers[op.PERF], perf[r.index[:2]]),
                                (answers[op.WAIT], waited[r.index[:2]])], 32)
        with m.State("FETCH"):
            m.d.sync += r.byte.eq(0)
            m.next = "BYTES"
            with m.If(Cat(*answers.values()).any()):
                m.d.sync += r.word.eq(local)
            with m.If(answer_read):
                m.d.comb += [bus.valid.eq(1), bus.addr.eq(r.baddr)]
                m.next = "FETCH"
                with m.If(bus.ready):
                    m.d.sync += r.baddr.eq(r.baddr + r.stride)
                    m.next = "R_WAIT"
                    with m.If(bus.r_valid):
                        m.d.sync += r.word.eq(bus.r_data)
                        m.next = "BYTES"
        with m.State("R_WAIT"):
            with m.If(bus.r_valid):
                m.d.sync += r.word.eq(bus.r_data)
                m.next = "BYTES"


def _check_run_csrs(run_csrs, addr_width: int) -> tuple[int, int, int]:
    if not isinstance(run_csrs, Sequence) or len(run_csrs) != 3:
        raise TypeError(f"run_csrs must be (entry_addr, control_addr, start_value), "
                        f"not {run_csrs!r}")
    limit = p.WORD_BYTES << addr_width
    for name, value in zip(("entry_addr", "control_addr"), run_csrs[:2]):
        check_int(f"run_csrs {name}", value, 0, limit - p.WORD_BYTES)
        if value % p.WORD_BYTES:
            raise ValueError(f"run_csrs {name} must be word aligned, not 0x{value:x}")
    check_int("run_csrs start_value", run_csrs[2], 0, 0xFFFFFFFF)
    return tuple(run_csrs)


class _Regs:
    """The engine's registers, shared by the FSM's phases."""

    def __init__(self, addr_width: int, timeout: int, max_wait: int):
        self.opcode = Signal(8)
        self.seq = Signal(8)
        self.length = Signal(8)
        self.count = Signal(8)          # payload bytes received
        self.crc = Signal(16)
        self.arg0 = Signal(32)          # payload bytes 0..3: address or entry
        self.arg1 = Signal(32)          # payload bytes 4..7: READ's word count
        self.arg2 = Signal(32)          # payload bytes 8..11: READ's stride
        self.stride = Signal(8)         # READ's stride in words (1 without one)
        self.wait_left = Signal(range(max_wait + 1))   # WAIT's cycles still to wait
        self.timer = Signal(range(timeout))
        self.code = Signal(8)           # the reply's status
        self.rlen = Signal(8)           # the reply's payload length
        self.index = Signal(8)          # header byte, payload word, or buffer word
        self.nwords = Signal(8)         # WRITE's word count
        self.byte = Signal(2)
        self.word = Signal(32)
        self.header = Signal(40)        # the reply header's bytes still to send, first lowest
        self.baddr = Signal(addr_width)
        self.busy_any = Signal()
        self.running = Signal()
        self.done = Signal()
        self.run_cycles = Signal(32)
        self.runs = Signal(32)
        self.frames_ok = Signal(32)
        self.frames_failed = Signal(32)
        # The checks' verdicts, registered in VERIFY for CHECK.
        self.verdict = {name: Signal(name=f"verdict_{name}")
                        for name in ("crc_ok", "known", "length_ok", "addr_ok")}
        self.verdict["rlen"] = Signal(8, name="verdict_rlen")
        self.wr = self.rd = None
