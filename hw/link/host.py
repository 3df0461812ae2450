# SPDX-License-Identifier: Apache-2.0
"""The whole host link in gateware: :class:`hw.link.uart.UART` + :class:`hw.link.frame.FrameEngine`.

A board top instantiates one :class:`HostLink`, wires ``rx``/``tx`` to the USB-serial pins and
``bus``/``start``/``entry``/``busy``/``soft_reset``/``status`` to the accelerator top.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from amaranth.hdl import Module
from amaranth.lib import wiring

from hw.link import protocol as p
from hw.link.frame import FrameEngine
from hw.link.uart import UART
from hw.skid import SkidBuffer

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """UART PHY and frame engine: serial pins on one side, the host port on the other.

    Parameters
    ----------
    identity : bytes
        The IDENTIFY payload (:func:`hw.link.protocol.identify_payload`).
    ranges : sequence of (base, size, writable)
        The accelerator's memory map (:class:`hw.link.frame.FrameEngine`).
    addr_width : int
        Word address width of the host port.
    divisor : int
        Clock cycles per UART bit (:func:`hw.link.protocol.uart_divisor`).
    timeout_cycles : int
        Receive timeout (:func:`hw.link.protocol.timeout_cycles`).
    run_csrs : (int, int, int) or None
        How RUN starts the accelerator (:class:`hw.link.frame.FrameEngine`).

    Members
    -------
    rx : In(1, init=1)
        Serial line from the host.
    tx : Out(1, init=1)
        Serial line to the host.
    bus, start, entry, busy, soft_reset, status
        As on :class:`hw.link.frame.FrameEngine`.
    frame_error, overrun : Out(1)
        The UART receiver's error pulses (for a board LED or a counter).
    """

    def __init__(self, *, identity: bytes, ranges: Iterable[Sequence[object]],
                 addr_width: int, divisor: int, timeout_cycles: int,
                 run_csrs: tuple[int, int, int] | None = None):
        self._engine = FrameEngine(identity=identity, ranges=ranges, addr_width=addr_width,
                                   timeout_cycles=timeout_cycles, run_csrs=run_csrs)
        self._uart = UART(divisor)
        # The engine's ports minus its byte streams, plus the UART's pins and error pulses.
        members = {name: member for name, member in self._engine.signature.members.items()
                   if name not in ("i_stream", "o_stream")}
        members.update({name: member for name, member in self._uart.signature.members.items()
                        if name not in ("i_stream", "o_stream")})
        super().__init__(members)

    @classmethod
    def from_params(cls, params, *, ranges: Iterable[Sequence[object]], addr_width: int,
                    run_csrs: tuple[int, int, int] | None = None) -> HostLink:
        """The link of ``params`` (an ``AccelParams``): its identity, baud and clock."""
        clk_hz = params.target_mhz * 1e6
        return cls(identity=p.identify_payload(params.digest(), params.name), ranges=ranges,
                   addr_width=addr_width, divisor=p.uart_divisor(clk_hz, params.baud),
                   timeout_cycles=p.timeout_cycles(clk_hz, params.baud), run_csrs=run_csrs)

    @property
    def divisor(self) -> int:
        return self._uart.divisor

    @property
    def timeout_cycles(self) -> int:
        return self._engine.timeout_cycles

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart = uart = self._uart
        m.submodules.engine = engine = self._engine
        wiring.connect(m, uart.o_stream, engine.i_stream)
        # The reply bytes reach the transmitter through a register slice: the engine offers
        # each byte from a multiplexer of its reply fields, and the transmitter's ready fed
        # the engine's CRC update (the board top's netlist estimate: 11.7 and 12.9 ns).
        m.submodules.tx_slice = tx_slice = SkidBuffer(8)
        wiring.connect(m, engine.o_stream, tx_slice.i_stream)
        wiring.connect(m, tx_slice.o_stream, uart.i_stream)
        wiring.connect(m, wiring.flipped(self.bus), engine.bus)
        m.d.comb += [
            uart.rx.eq(self.rx), self.tx.eq(uart.tx),
            self.frame_error.eq(uart.frame_error), self.overrun.eq(uart.overrun),
            self.start.eq(engine.start), self.entry.eq(engine.entry),
            self.soft_reset.eq(engine.soft_reset),
            engine.busy.eq(self.busy), engine.status.eq(self.status),
        ]
        return m
