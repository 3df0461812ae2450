# SPDX-License-Identifier: Apache-2.0
"""``Scratchpad``: one region of the memory map in block RAM, with a host port and a unit port.

Every region of :func:`hw.isa.memory_map` (instructions, activations, weights, quant words,
LUTs) is one :class:`Scratchpad` of ``size`` bytes seen through two word widths:

* the **host port** (``host``, an ``In(hw.bus.HostBus.Signature(...))``) moves little-endian
  32-bit words with byte enables: host word ``h`` is bytes ``4h .. 4h+3`` of the region;
* the **unit port** (``unit``, :class:`Scratchpad.Port`) moves words of ``unit_bytes`` bytes,
  the width the controller streams (an activation word is ``rows`` bytes, a weight word
  ``cols`` bytes, a quant word 8, an instruction 32, a LUT entry 1): unit word ``u`` is bytes
  ``u * unit_bytes ..``, byte ``i`` at bits ``8i``.

Storage is ``P = lcm(unit_bytes, 4)`` byte lanes, each a :func:`hw.bram.make_block_ram` RAM of
``ceil(size / P)`` bytes (one write port, one registered read port): a host word and a unit word
each lie inside one ``P``-byte row, so either is one RAM access with per-lane write enables and a
byte-exact write never needs a read-modify-write.

Every RAM input (read row, write row, byte, enable) is registered, the **request stage**, and
the unit port's request (enables, addresses, data, mask) is registered once more in front of
it, the **issue stage**: the unit's address arithmetic and its multiplexer of walkers end at a
register, and the bounds check, the lane selection and the host arbitration start from one
(the accelerator top's timing, ``docs/boards.md``: a walker's address, the port's bounds
comparator and the RAM's request register in one cycle, across the die, were its routed
critical paths). A unit write lands two cycles after its request and a unit read is answered
``latency`` = 4 cycles after it; unit reads and writes move by the same cycles, so their order
is the requests' order. A host access skips the issue stage: a host read is answered
``host_latency`` = 3 cycles after its transfer. Where a row's host words are not a power of two
(``unit_bytes`` 12 or 18: 3 or 9 host words a row), a host request first waits for its row and
lane from a sequential divider (:class:`hw.divider.ConstDivider`, 17 cycles for a 16-bit
address) before it is ``ready``.

Both ports share each lane's one read and one write port: the unit side wins, a host request is
``ready`` in a cycle in which the issue stage holds no unit read or write (a unit request of
the same cycle reaches the RAM a cycle after the host's), so a host access waits at most until
the controller's current instruction stops streaming. With ``host_when_idle=True`` the
scratchpad has one more input, ``unit_idle``, and the host is ``ready`` while it is high and
the issue stage is empty: the unit's user (the accelerator top: ``not busy``, a register)
promises that the unit port is quiet then, and the grant waits for no comparator of the unit's.

Bounds: a unit address at or past the last word raises ``unit.r_error`` (a read) or
``unit.w_error`` (a write) one cycle after its request (from the issue stage), and the access is
dropped (a read returns 0): an address never wraps onto another word. The two are separate so
that a unit can use each as its timing allows: ``hw.controller`` registers the read one, and
checks each of its (posted) writes against the same bound, :func:`unit_words_of`, in its own
write-back register instead of waiting for ``w_error`` from across the chip. A host address
past the region reads 0 and ignores the write (the link already refuses it).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.bram import BlockRAM, make_block_ram, unshared_register
from hw.bus import HostBus
from hw.checks import check_int
from hw.divider import ConstDivider, is_pow2, pow2_divmod
from hw.isa import INSTR_BYTES, QUANT_WORD_BYTES, memory_map
from hw.unit import ParamSignature, Setting

__all__ = ["SCRATCHPAD_REGIONS", "Scratchpad", "unit_bytes_of", "unit_port_signature",
           "unit_words_of"]

HOST_BYTES = 4
#: The regions of ``hw.isa.memory_map`` that are scratchpads (``csr`` is the register block).
SCRATCHPAD_REGIONS = ("instr", "act", "wgt", "quant", "lut")


def unit_bytes_of(params, region: str) -> int:
    """Unit-port word of ``region`` for ``params``: an instruction, an activation column word of
    ``rows`` tokens, a weight row of ``cols`` channels, a quant word, a LUT entry."""
    return {"instr": INSTR_BYTES, "act": params.rows, "wgt": params.cols,
            "quant": QUANT_WORD_BYTES, "lut": 1}[region]


def unit_words_of(params, region: str) -> int:
    """Unit-port words of ``region``'s scratchpad for ``params``: an address at or past it is
    refused (``unit.r_error`` / ``unit.w_error``)."""
    return _unit_words(memory_map(params).region(region).size, unit_bytes_of(params, region))


def _unit_words(size: int, unit_bytes: int) -> int:
    return -(-size // unit_bytes)


def _unit_addr_width(size: int, unit_bytes: int) -> int:
    """Bits of a unit word address, one more than the words need: the first address past the
    region is representable (and refused), never wrapped onto word 0."""
    return _unit_words(size, unit_bytes).bit_length()


def unit_port_signature(params, region: str) -> Scratchpad.Port.Signature:
    """The unit port of ``region``'s scratchpad, as the controller sees it."""
    size = memory_map(params).region(region).size
    unit_bytes = unit_bytes_of(params, region)
    return Scratchpad.Port.Signature(unit_bytes=unit_bytes,
                                     addr_width=_unit_addr_width(size, unit_bytes))


class Scratchpad(wiring.Component):
    """A ``size``-byte scratchpad (module docstring).

    Parameters
    ----------
    size : int
        Bytes, 4..2**24, a multiple of 4.
    unit_bytes : int
        Bytes of a unit-port word, 1..64.
    family : str or None
        Forwarded to :func:`hw.bram.make_block_ram` (``"ecp5"``: ``DP16KD`` without a board).
    host_when_idle : bool
        Grant the host on the ``unit_idle`` input instead of on the unit's own enables.

    Members
    -------
    host : In(HostBus.Signature(addr_width=...))
        Host words of the region (``addr`` = byte offset // 4).
    unit : In(Scratchpad.Port.Signature(...))
        Unit words; reads return ``r_data`` ``latency`` cycles after ``r_en``.
    unit_idle : In(1)
        Only with ``host_when_idle``: the unit port is quiet; the host is ready (module
        docstring).

    Attributes
    ----------
    latency : int
        Cycles from a unit read (``r_en``) to its word on ``r_data``: the issue stage, the
        request stage and :attr:`hw.bram.BlockRAM.latency`, 4.
    host_latency : int
        Cycles from a host read transfer to ``r_valid``: the request stage and
        :attr:`hw.bram.BlockRAM.latency`, 3.
    """

    class Port:
        """Namespace of the unit port's signature."""

        class Signature(ParamSignature):
            """Unit port, seen from the unit (the controller): ``Out`` drives the scratchpad.

            Members
            -------
            r_en : Out(1)
                Read unit word ``r_addr``; ``r_data`` holds it ``latency`` cycles later.
            r_addr : Out(addr_width)
            r_data : In(8 * unit_bytes)
            w_en : Out(1)
                Write the bytes of ``w_data`` whose ``w_mask`` bit is set at unit word ``w_addr``.
            w_addr : Out(addr_width)
            w_data : Out(8 * unit_bytes)
            w_mask : Out(unit_bytes)
            r_error : In(1)
                The read of the last cycle (``r_en``) was past the last word (dropped, reads 0).
            w_error : In(1)
                The write of the last cycle (``w_en``) was past the last word (dropped).
            """

            unit_bytes = Setting("Bytes of a unit word.")
            addr_width = Setting("Width of the unit word address.")

            def __init__(self, *, unit_bytes: int, addr_width: int):
                check_int("unit_bytes", unit_bytes, 1, 64)
                check_int("addr_width", addr_width, 1, 32)
                super().__init__({
                    "r_en": Out(1), "r_addr": Out(addr_width), "r_data": In(8 * unit_bytes),
                    "w_en": Out(1), "w_addr": Out(addr_width), "w_data": Out(8 * unit_bytes),
                    "w_mask": Out(unit_bytes), "r_error": In(1),
                    "w_error": In(1),
                }, unit_bytes=unit_bytes, addr_width=addr_width)

    #: The request stage (a register rank on every RAM input) and the RAM's two read ranks.
    host_latency = 1 + BlockRAM.latency
    #: The unit port's issue stage in front of them.
    latency = 1 + host_latency
    size = Setting("Bytes of the scratchpad.")
    unit_bytes = Setting("Bytes of a unit-port word.")
    unit_words = Setting("Unit words of the region (``ceil(size / unit_bytes)``).")

    def __init__(self, *, size: int, unit_bytes: int, family: str | None = None,
                 host_when_idle: bool = False) -> None:
        self._size = check_int("size", size, HOST_BYTES, 1 << 24)
        if size % HOST_BYTES:
            raise ValueError(f"size must be a multiple of {HOST_BYTES}, not {size!r}")
        self._unit_bytes = check_int("unit_bytes", unit_bytes, 1, 64)
        self._family = family
        self._host_when_idle = bool(host_when_idle)
        self._row_bytes = math.lcm(unit_bytes, HOST_BYTES)
        self._unit_words = _unit_words(size, unit_bytes)
        members = {
            "host": In(HostBus.Signature(addr_width=self.host_addr_width(size))),
            "unit": In(Scratchpad.Port.Signature(
                unit_bytes=unit_bytes, addr_width=_unit_addr_width(size, unit_bytes))),
        }
        if self._host_when_idle:
            members["unit_idle"] = In(1)
        super().__init__(members)

    @classmethod
    def for_region(cls, params, region: str, *, family: str | None = None,
                   host_when_idle: bool = False) -> Scratchpad:
        """The scratchpad of ``region`` (one of :data:`SCRATCHPAD_REGIONS`) of ``params``."""
        size = memory_map(params).region(region).size
        return cls(size=size, unit_bytes=unit_bytes_of(params, region), family=family,
                   host_when_idle=host_when_idle)

    @staticmethod
    def host_addr_width(size: int) -> int:
        """Bits of a host word address of a ``size``-byte region, one more than the words need
        so that the first address past the region is representable (and refused)."""
        return (size // HOST_BYTES).bit_length()

    def _host_split(self, m, lanes):
        """(row, first lane, ready) of the host's word address in rows of ``lanes`` bytes:
        bit slices where a row holds a power of two of host words. A row of 36 lanes (a
        weight word of 18 bytes) holds 9: the address is divided by a sequential divider (a
        combinational one would be a chain of subtractors), and a request waits
        ``ConstDivider.latency`` cycles for its split (the master holds its address until the
        transfer; the link's UART delivers a word far more slowly than that)."""
        host, hb = self.host, HOST_BYTES
        words = lanes // hb
        if is_pow2(words):
            row, lane = pow2_divmod(host.addr, words)
            return row, lane * hb, Const(1)
        m.submodules.host_divider = div = ConstDivider(len(host.addr), words)
        started = Signal()
        m.d.comb += [div.x.eq(host.addr), div.start.eq(host.valid & ~started)]
        with m.If(host.valid & ~started):
            m.d.sync += started.eq(1)
        with m.If(host.valid & host.ready):
            m.d.sync += started.eq(0)
        return div.quotient, div.remainder * hb, started & div.done

    def elaborate(self, platform):
        m = Module()
        lanes = self._row_bytes
        depth = max(2, -(-self._size // lanes))
        ub, hb = self._unit_bytes, HOST_BYTES
        unit, host = self.unit, self.host
        rams = []
        for i in range(lanes):
            ram = make_block_ram(platform, width=8, depth=depth, family=self._family)
            m.submodules[f"lane{i}"] = ram
            rams.append(ram)

        def split(addr, per_row):
            """(row, first lane) of word ``addr`` of ``lanes // per_row`` words per row: bit
            slices. A unit word always has a power of two per row (``4 / gcd(unit_bytes,
            4)``); a host word need not (below)."""
            row, lane = pow2_divmod(addr, lanes // per_row)
            return row, lane * per_row

        # -- the issue stage: the unit's request, registered --------------------------------
        req = SimpleNamespace(**{name: Signal.like(getattr(unit, name), name=f"issue_{name}")
                                 for name in ("r_en", "r_addr", "w_en", "w_addr", "w_data",
                                              "w_mask")})
        m.d.sync += [getattr(req, name).eq(getattr(unit, name)) for name in vars(req)]

        u_ok_r = Signal()
        u_ok_w = Signal()
        h_ok = Signal()
        m.d.comb += [
            u_ok_r.eq(req.r_addr < self._unit_words),
            u_ok_w.eq(req.w_addr < self._unit_words),
            h_ok.eq(host.addr < self._size // hb),
            unit.r_error.eq(req.r_en & ~u_ok_r),
            unit.w_error.eq(req.w_en & ~u_ok_w),
        ]
        u_rrow, u_rlane = split(req.r_addr, ub)
        u_wrow, u_wlane = split(req.w_addr, ub)
        h_row, h_lane, h_split = self._host_split(m, lanes)

        # -- arbitration: the unit side first -------------------------------------------------
        h_read = Signal()
        h_write = Signal()
        # A unit request in the issue stage reaches the RAM's request registers in the cycle a
        # host request would: it blocks the host (either port of a lane: a host write beside a
        # unit read of the same row would return an undefined word, hw.bram). A unit request
        # of this cycle reaches them a cycle after the host's.
        unit_quiet = ~req.w_en & ~req.r_en
        if self._host_when_idle:
            # The unit's user promises not to touch the port while `unit_idle` (a register of
            # its own; a request of the cycle before may still be in the issue stage): the
            # host's grant waits for no decision of the unit's.
            m.d.comb += host.ready.eq(self.unit_idle & unit_quiet & h_split)
        else:
            m.d.comb += host.ready.eq(unit_quiet & h_split)
        m.d.comb += [
            h_read.eq(host.valid & host.ready & ~host.write),
            h_write.eq(host.valid & host.ready & host.write & h_ok),
        ]

        # -- writes ----------------------------------------------------------------------------
        for i, ram in enumerate(rams):
            u_sel = Signal(name=f"u_sel{i}")
            h_sel = Signal(name=f"h_sel{i}")
            u_byte = Signal(8, name=f"u_byte{i}")
            h_byte = Signal(8, name=f"h_byte{i}")
            for j in range(ub):
                with m.If(u_wlane + j == i):
                    m.d.comb += [u_sel.eq(req.w_mask[j]), u_byte.eq(req.w_data[8 * j:8 * j + 8])]
            for j in range(hb):
                with m.If(h_lane + j == i):
                    m.d.comb += [h_sel.eq(host.w_en[j]), h_byte.eq(host.w_data[8 * j:8 * j + 8])]
            # The request stage: the lane's write goes to the RAM from registers, its address
            # from a copy of its own (unshared_register: one merged address register drove
            # every RAM of the scratchpad, across the die).
            with m.If(req.w_en):
                m.d.sync += [ram.w_data.eq(u_byte), ram.w_en.eq(u_sel & u_ok_w)]
            with m.Else():
                m.d.sync += [ram.w_data.eq(h_byte), ram.w_en.eq(h_write & h_sel)]
            m.d.comb += ram.w_addr.eq(unshared_register(
                m, Mux(req.w_en, u_wrow, h_row)[:len(ram.w_addr)], name=f"w_row{i}",
                platform=platform, family=self._family))

        # -- reads: one issue per cycle, the lane select and validity travel beside the RAM ----
        # The request stage: each lane's read row from a copy of its own, as the write's.
        r_row = Mux(req.r_en, u_rrow, h_row)[:len(rams[0].r_addr)]
        for i, ram in enumerate(rams):
            m.d.comb += [ram.r_en.eq(1), ram.r_oce.eq(1),
                         ram.r_addr.eq(unshared_register(m, r_row, name=f"r_row{i}",
                                                         platform=platform,
                                                         family=self._family))]
        row = Cat(ram.r_data for ram in rams)
        n = self.host_latency                  # the request stage's registers on
        u_lane = [Signal.like(u_rlane, name=f"u_lane_s{i}") for i in range(n)]
        h_lane_d = [Signal.like(h_lane, name=f"h_lane_s{i}") for i in range(n)]
        u_live = [Signal(name=f"u_live_s{i}") for i in range(n)]
        h_live = [Signal(name=f"h_live_s{i}") for i in range(n)]
        h_good = [Signal(name=f"h_good_s{i}") for i in range(n)]
        m.d.sync += [
            u_lane[0].eq(u_rlane), h_lane_d[0].eq(h_lane), u_live[0].eq(req.r_en & u_ok_r),
            h_live[0].eq(h_read), h_good[0].eq(h_ok),
        ]
        for stages in (u_lane, h_lane_d, u_live, h_live, h_good):
            m.d.sync += [b.eq(a) for a, b in zip(stages, stages[1:])]
        u_word = Signal(8 * ub)
        h_word = Signal(8 * hb)
        for first in range(0, lanes, ub):
            with m.If(u_lane[-1] == first):
                m.d.comb += u_word.eq(row[8 * first:8 * (first + ub)])
        for first in range(0, lanes, hb):
            with m.If(h_lane_d[-1] == first):
                m.d.comb += h_word.eq(row[8 * first:8 * (first + hb)])
        m.d.comb += [
            unit.r_data.eq(Mux(u_live[-1], u_word, Const(0, 8 * ub))),
            host.r_valid.eq(h_live[-1]),
            host.r_data.eq(Mux(h_good[-1], h_word, 0)),
        ]
        return m
