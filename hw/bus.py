# SPDX-License-Identifier: Apache-2.0
"""The accelerator top's memory-mapped host port.

One master (the link's frame engine, :class:`hw.link.frame.FrameEngine`) reads and writes the
accelerator's scratchpads and CSRs through this port, one 32-bit word per transfer. The
signature is written from the master's side (as amaranth-soc's buses are): the master has
``Out(HostBus.Signature(...))``, the accelerator top ``In(HostBus.Signature(...))``.

Timing (``docs/protocol.md`` draws it)::

    cycle      0        1        2        3
    valid      1        1        0        0          request held until ready
    ready      0        1        -        -          transfer in cycle 1 (valid & ready)
    write      0        0                            a read
    r_valid    0        0        1        0          read data one cycle later (any latency >= 0)
    r_data     -        -        D        -

* A request is ``valid`` with ``addr``, ``write``, ``w_data`` and ``w_en`` stable until the
  cycle in which ``ready`` is also high; that cycle is the transfer. ``ready`` may depend
  combinationally on ``valid`` and ``addr``; ``valid`` never depends on ``ready``.
* A write takes effect at or after the transfer, before any later request of the master is
  served; only the bytes with ``w_en`` set change.
* Each read transfer is answered by exactly one cycle with ``r_valid`` high, in the transfer
  cycle itself or any later cycle, in request order; ``r_data`` is meaningful only then.
* The slave answers in a bounded number of cycles (the frame engine has no bus timeout: the
  slave's bound plus the engine's own makes the link's "never hangs").
* ``addr`` is a *word* address: the link's byte address divided by 4. Addresses the slave
  does not decode read as 0 and ignore writes; the frame engine only issues addresses inside
  the memory map it was given, so this is a second line of defence, not a feature.
"""

from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_int
from hw.skid import SkidBuffer
from hw.unit import ParamSignature, Setting

__all__ = ["HostBus", "HostBusSlice"]


class HostBus:
    """Namespace of the host port's :class:`HostBus.Signature`."""

    class Signature(ParamSignature):
        """Signature of the host port, seen from the master.

        Parameters
        ----------
        addr_width : int
            Width of the word address, 1..30 (a 32-bit byte address space at most).
        data_width : int
            Width of a word; 32 (the link protocol's word).

        Members
        -------
        addr : Out(addr_width)
            Word address of the request.
        write : Out(1)
            1: write ``w_data`` under ``w_en``; 0: read.
        w_data : Out(data_width)
            Write data.
        w_en : Out(data_width // 8)
            Byte enables of a write; bit ``i`` enables bits ``[8*i, 8*i+8)``.
        valid : Out(1)
            A request is presented.
        ready : In(1)
            The slave accepts the request in this cycle.
        r_data : In(data_width)
            Read data, meaningful while ``r_valid``.
        r_valid : In(1)
            One cycle per accepted read, in order, at or after its transfer.
        """

        addr_width = Setting("Width of the word address.")
        data_width = Setting("Width of a word.")

        def __init__(self, *, addr_width: int, data_width: int = 32):
            check_int("addr_width", addr_width, 1, 30)
            check_int("data_width", data_width, 32, 32)
            super().__init__({
                "addr": Out(addr_width),
                "write": Out(1),
                "w_data": Out(data_width),
                "w_en": Out(data_width // 8),
                "valid": Out(1),
                "ready": In(1),
                "r_data": In(data_width),
                "r_valid": In(1),
            }, addr_width=addr_width, data_width=data_width)


class HostBusSlice(wiring.Component):
    """A register slice on the host port's request path: ``o_bus``'s ``valid``, ``addr``,
    ``write``, ``w_data`` and ``w_en`` and ``i_bus.ready`` come from flip-flops
    (:class:`hw.skid.SkidBuffer`); the read answer (``r_valid``, ``r_data``) passes straight back.

    Between the link's frame engine and the accelerator top it cuts the path from the engine's
    state machine through the request's address into the top's region decode (the host
    stage), the longest of the ``ulx3s_85f`` board top's netlist estimate (``docs/boards.md``).
    A request reaches the slave one cycle after its transfer into the slice; the bus rules hold
    on both sides (requests in order, one transfer a cycle, a read answered after its transfer,
    in order).

    Parameters
    ----------
    addr_width, data_width : int
        As :class:`HostBus.Signature`.

    Members
    -------
    i_bus : In(HostBus.Signature(...))
        From the master.
    o_bus : Out(HostBus.Signature(...))
        To the slave.
    """

    latency = SkidBuffer.latency

    def __init__(self, *, addr_width: int, data_width: int = 32) -> None:
        sig = HostBus.Signature(addr_width=addr_width, data_width=data_width)
        self._layout = data.StructLayout({"addr": addr_width, "write": 1,
                                          "w_data": data_width, "w_en": data_width // 8})
        super().__init__({"i_bus": In(sig), "o_bus": Out(sig)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.skid = skid = SkidBuffer(self._layout)
        i, o = self.i_bus, self.o_bus
        req, out = skid.i_stream.payload, skid.o_stream.payload
        m.d.comb += [
            skid.i_stream.valid.eq(i.valid), i.ready.eq(skid.i_stream.ready),
            req.addr.eq(i.addr), req.write.eq(i.write), req.w_data.eq(i.w_data),
            req.w_en.eq(i.w_en),
            o.valid.eq(skid.o_stream.valid), skid.o_stream.ready.eq(o.ready),
            o.addr.eq(out.addr), o.write.eq(out.write), o.w_data.eq(out.w_data),
            o.w_en.eq(out.w_en),
            i.r_valid.eq(o.r_valid), i.r_data.eq(o.r_data),
        ]
        return m
