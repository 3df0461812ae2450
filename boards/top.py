# SPDX-License-Identifier: Apache-2.0
"""The board top: a design with a UART host link on the board's USB-UART pins, the main clock
from the board's PLL, and status LEDs.

:class:`BoardTop` takes any component with ``rx`` (in), ``tx`` (out) and ``busy`` (out) -- the
linked accelerator (``hw.system.LinkedAccelerator`` with ``link="uart"``) on a real board --
and optional ``frame_error`` / ``overrun`` pulses. The platform provides
``add_main_clock(m, hz)`` (the family mixins of :mod:`boards.ecp5` and :mod:`boards.ice40`),
``uart_pins(m)`` and ``status_leds(m, n)`` (:class:`boards.common.HarnessBoard`).

The status LEDs, in this order (a board with fewer LEDs shows the first ones):

``link``
    the serial line was active (a low bit on ``rx`` or ``tx``) within the last 50 ms;
``busy``
    a program runs;
``error``
    the UART saw a framing error or an overrun since the last reset (sticky);
``idle``
    the design is out of reset and no program runs.
"""

from __future__ import annotations

from amaranth import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer

from boards.common import ClockedTop
from hw.checks import check_int
from hw.link.protocol import check_baud

__all__ = ["STATUS_LEDS", "ActivityStretcher", "BoardTop"]

#: What the status LEDs show, in order (module docstring).
STATUS_LEDS = ("link", "busy", "error", "idle")

#: How long one low bit keeps the ``link`` LED on: long enough for the eye.
ACTIVITY_S = 0.05


class ActivityStretcher(Elaboratable):
    """``o`` is high for ``cycles`` cycles after the last cycle ``i`` was high.

    Parameters
    ----------
    cycles : int
        The hold time in clock cycles (at least 1).
    """

    def __init__(self, cycles: int) -> None:
        self.cycles = check_int("cycles", cycles, 1)
        self.i = Signal()
        self.o = Signal()

    def elaborate(self, platform):
        m = Module()
        left = Signal(range(self.cycles + 1))
        with m.If(self.i):
            m.d.sync += left.eq(self.cycles)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.comb += self.o.eq(left != 0)
        return m


class BoardTop(ClockedTop):
    """Board top around ``design`` (module docstring).

    Parameters
    ----------
    design : wiring.Component
        Has ``rx`` (In(1)), ``tx`` (Out(1)) and ``busy`` (Out(1)); ``frame_error`` and
        ``overrun`` (Out(1)) light the error LED when present.
    frequency_hz : float
        The main (``sync``) clock; the design's UART divisor must have been computed for it.

    Attributes
    ----------
    frequency_hz_achieved : float or None
        The PLL's real frequency, after elaboration.
    leds : dict[str, Signal]
        The status signals by name (:data:`STATUS_LEDS`), after elaboration.
    """

    def __init__(self, design, *, frequency_hz: float) -> None:
        super().__init__(design, frequency_hz=frequency_hz, what="design")
        members = design.signature.members
        for name, flow in (("rx", wiring.In), ("tx", wiring.Out), ("busy", wiring.Out)):
            if name not in members or members[name].flow != flow:
                raise ValueError(f"design must have a one-bit {flow.name} port {name!r} (a UART "
                                 f"link), like hw.system.LinkedAccelerator with link='uart'")
        self.leds: dict[str, Signal] = {}

    @property
    def design(self):
        return self._component

    def _check_baud(self) -> None:
        """A design with a UART ``divisor`` (and ``params.baud``) computed for the requested
        clock must still talk at its baud on the clock the PLL makes (``ValueError`` if not:
        a board whose PLL cannot make the preset's clock, e.g. 12 MHz from the ULX3S's 25 MHz
        oscillator, which the ECP5 PLL makes 12.5 MHz)."""
        divisor = getattr(self.design, "divisor", None)
        baud = getattr(getattr(self.design, "params", None), "baud", None)
        if isinstance(divisor, int) and isinstance(baud, int) and self.frequency_hz_achieved:
            check_baud(self.frequency_hz_achieved, divisor, baud, wanted_hz=self._frequency_hz)

    def elaborate(self, platform):
        m = self.clocked_module(platform)
        self._check_baud()
        rx_pin, tx_pin = platform.uart_pins(m)
        m.submodules.design = design = self._component
        m.d.comb += [design.rx.eq(rx_pin), tx_pin.eq(design.tx)]

        # The LED logic reads the line through its own synchronizer (the design has one too).
        rx = Signal(init=1)
        m.submodules.rx_led_sync = FFSynchronizer(rx_pin, rx, init=1)
        m.submodules.activity = activity = ActivityStretcher(
            max(1, round(ACTIVITY_S * (self.frequency_hz_achieved or self._frequency_hz))))
        m.d.comb += activity.i.eq(~rx | ~design.tx)

        error = Signal()
        pulses = [getattr(design, name) for name in ("frame_error", "overrun")
                  if name in design.signature.members]
        for pulse in pulses:
            with m.If(pulse):
                m.d.sync += error.eq(1)
        # `ready` is low while the sync domain is held in reset (until the PLL locks).
        ready = Signal(init=0)
        m.d.sync += ready.eq(1)
        self.leds = {"link": activity.o, "busy": design.busy, "error": error,
                     "idle": ready & ~design.busy}
        # A flip-flop before each LED pin: the pin's path starts at a register, not at the
        # accelerator's logic (nextpnr times output pins against the clock; an unregistered
        # `busy` made an LED pin the board top's critical path). One cycle late is invisible.
        for pin, name in zip(platform.status_leds(m, len(STATUS_LEDS)), STATUS_LEDS):
            led = Signal(name=f"led_{name}")
            m.d.sync += led.eq(self.leds[name])
            m.d.comb += pin.eq(led)
        return m
