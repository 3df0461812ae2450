# SPDX-License-Identifier: Apache-2.0
"""UART PHY: 8N1 serial line <-> ``amaranth.lib.stream`` bytes.

One bit lasts ``divisor = round(clk_hz / baud)`` clock cycles
(:func:`hw.link.protocol.uart_divisor`). The receiver synchronises the line through two
flip-flops, starts timing on a falling edge, checks the start bit again half a bit later (a
glitch shorter than half a bit is a false start and is ignored), then samples each data bit
and the stop bit in its middle. A stop bit that reads 0 is a framing error: the byte is
dropped, ``frame_error`` pulses, and the receiver waits for the line to go idle (high) before
it looks for the next start bit. At 8N1 with mid-bit sampling the receiver tolerates a baud
mismatch of about 5 % (half a bit over 9.5 bits).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from hw.checks import check_int
from hw.fsm import one_hot

__all__ = ["UART", "UARTReceiver", "UARTTransmitter"]

_DIVISOR_MAX = 1 << 20


class _UARTPart(wiring.Component):
    """Holds the checked ``divisor`` shared by the receiver, the transmitter and the PHY."""

    def __init__(self, divisor: int, members: dict):
        self._divisor = check_int("divisor", divisor, 4, _DIVISOR_MAX)
        super().__init__(members)

    @property
    def divisor(self) -> int:
        return self._divisor


_RX_MEMBERS = {
    "rx": In(1, init=1),
    "o_stream": Out(stream.Signature(8)),
    "frame_error": Out(1),
    "overrun": Out(1),
}
_TX_MEMBERS = {
    "i_stream": In(stream.Signature(8)),
    "tx": Out(1, init=1),
}


class UARTReceiver(_UARTPart):
    """8N1 receiver with mid-bit sampling; ``divisor`` (4..2**20) clock cycles per bit.

    Members
    -------
    rx : In(1, init=1)
        The serial line (asynchronous; idle high).
    o_stream : Out(stream.Signature(8))
        Received bytes, least significant bit first on the line. One byte of buffering: a byte
        that completes while the previous one is still not taken is dropped (``overrun``).
    frame_error : Out(1)
        Pulses for one cycle when a stop bit reads 0 (the byte is dropped).
    overrun : Out(1)
        Pulses for one cycle when a received byte is dropped because ``o_stream`` was full.
    """

    def __init__(self, divisor: int):
        super().__init__(divisor, _RX_MEMBERS)

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self._divisor))
        bits = Signal(range(8))
        shreg = Signal(8)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(~rx):
                    # Half a bit to the middle of the start bit.
                    m.d.sync += timer.eq(self._divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(rx):
                        m.next = "IDLE"              # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [timer.eq(self._divisor - 1), bits.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bits.eq(bits + 1),
                                 timer.eq(self._divisor - 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~rx):
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
                    with m.Elif(self.o_stream.valid & ~self.o_stream.ready):
                        m.d.sync += self.overrun.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [self.o_stream.payload.eq(shreg),
                                     self.o_stream.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                # Wait for the idle line, so a long low level is not read as many bytes.
                with m.If(rx):
                    m.next = "IDLE"
        one_hot(fsm)
        return m


class UARTTransmitter(_UARTPart):
    """8N1 transmitter; ``divisor`` (4..2**20) clock cycles per bit.

    Members
    -------
    i_stream : In(stream.Signature(8))
        Bytes to send; one is taken when the previous stop bit has ended.
    tx : Out(1, init=1)
        The serial line (idle high), driven from a register.
    """

    def __init__(self, divisor: int):
        super().__init__(divisor, _TX_MEMBERS)

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        frame = Signal(10, init=(1 << 10) - 1)     # stop, data[7:0], start: shifted out LSB first
        left = Signal(range(11))
        m.d.comb += [self.tx.eq(frame[0]), self.i_stream.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i_stream.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.i_stream.payload, Const(1, 1))),
                             left.eq(10), timer.eq(self._divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(self._divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UART(_UARTPart):
    """:class:`UARTReceiver` and :class:`UARTTransmitter` sharing one ``divisor``.

    Members
    -------
    rx : In(1, init=1)
    tx : Out(1, init=1)
    o_stream : Out(stream.Signature(8))
        Received bytes.
    i_stream : In(stream.Signature(8))
        Bytes to send.
    frame_error, overrun : Out(1)
        The receiver's error pulses.
    """

    def __init__(self, divisor: int):
        super().__init__(divisor, {**_RX_MEMBERS, **_TX_MEMBERS})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTReceiver(self._divisor)
        m.submodules.tx = tx = UARTTransmitter(self._divisor)
        wiring.connect(m, wiring.flipped(self.o_stream), rx.o_stream)
        wiring.connect(m, wiring.flipped(self.i_stream), tx.i_stream)
        m.d.comb += [
            rx.rx.eq(self.rx), self.tx.eq(tx.tx),
            self.frame_error.eq(rx.frame_error), self.overrun.eq(rx.overrun),
        ]
        return m
