# SPDX-License-Identifier: Apache-2.0
"""What every lightformer board adds to its amaranth-boards platform: the harness hooks.

:class:`boards.build.UnitHarness` asks the platform for three things: ``add_main_clock(m, hz)``
(the ``sync`` domain; the family modules :mod:`boards.ecp5` and :mod:`boards.ice40` provide it),
``harness_pins(m)`` (one serial input pin and the output pins) and ``synth_overrides()`` (extra
options for the toolchain). :class:`HarnessBoard` implements the last two from class attributes,
so a board file only names its pins. The board top (:class:`boards.top.BoardTop`) asks for the
clock, ``uart_pins(m)`` and ``status_leds(m, n)``.
"""

from __future__ import annotations

from typing import NamedTuple

from amaranth import ClockDomain, Const, Elaboratable, Module, Value
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from hw.checks import check_number

__all__ = ["ClockedTop", "HarnessBoard", "PllRange"]


class ClockedTop(Elaboratable):
    """Base of the board tops: a component run on the board's main clock.

    ``frequency_hz_achieved`` holds the PLL's real frequency after elaboration (``None``
    before).
    """

    def __init__(self, component, *, frequency_hz: float, what: str) -> None:
        if not isinstance(component, wiring.Component):
            raise TypeError(f"{what} must be an amaranth wiring.Component, not {component!r}")
        self._component = component
        self._frequency_hz = check_number("frequency_hz", frequency_hz, 1.0, 1e9)
        self.frequency_hz_achieved: float | None = None

    def clocked_module(self, platform) -> Module:
        """A module with the ``sync`` domain from the platform's ``add_main_clock``."""
        m = Module()
        self.frequency_hz_achieved = platform.add_main_clock(m, self._frequency_hz)
        return m


class PllRange(NamedTuple):
    """Frequency limits of a family's PLL, in Hz: phase-detector input, VCO, output."""

    family: str
    pfd: tuple[float, float]
    vco: tuple[float, float]
    out: tuple[float, float]

    def check_output(self, f_out_hz: float) -> None:
        lo, hi = self.out
        if not lo <= f_out_hz <= hi:
            raise ValueError(f"{self.family} PLL output must be in [{lo / 1e6:g}, {hi / 1e6:g}] "
                             f"MHz, not {f_out_hz / 1e6!r} MHz")

    def no_setting(self, f_in_hz: float, f_out_hz: float) -> ValueError:
        return ValueError(f"no {self.family} PLL setting makes {f_out_hz / 1e6} MHz from "
                          f"{f_in_hz / 1e6} MHz")


class HarnessBoard:
    """Mixin for a board platform: the harness pins from class attributes.

    Attributes
    ----------
    board_name : str
        The ``--board`` name (``boards.build.BOARDS``).
    default_preset : str
        The ``AccelParams`` preset built when ``--preset`` is not given.
    serial_in : tuple[str, str | None]
        The resource whose pin feeds the harness' input shift register, and its subsignal
        (``("uart", "rx")``), or ``None`` when the resource is the pin (``("button", None)``).
    led_count : int
        How many ``led`` resources show the harness' output checksum.
    bitstream_suffix : str
        The file the bitstream packer writes, ``top`` + this suffix (the family mixin sets it).
    loader_board : str or None
        openFPGALoader's ``-b`` name for the programmer on the board; ``None`` when the board
        has none, so ``lightformer program`` needs ``--cable``.
    """

    board_name: str
    default_preset: str
    serial_in: tuple[str, str | None] = ("uart", "rx")
    led_count: int = 1
    bitstream_suffix: str
    loader_board: str | None = None

    def harness_pins(self, m: Module) -> tuple[Value, list[Value]]:
        """Request the serial input and the LEDs; return ``(input bit, [LED bits])``."""
        name, subsignal = self.serial_in
        res = self.request(name, 0, dir="-")
        m.submodules.serial_in = pin = io.Buffer("i", getattr(res, subsignal) if subsignal
                                                 else res)
        return pin.i, self.status_leds(m, self.led_count)

    def status_leds(self, m: Module, count: int) -> list[Value]:
        """Request the first ``min(count, led_count)`` LEDs; return their output bits."""
        leds = []
        for i in range(min(count, self.led_count)):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", self.request("led", i, dir="-"))
            leds.append(led.o)
        return leds

    def uart_pins(self, m: Module) -> tuple[Value, Value]:
        """Request the board's ``uart`` resource (the USB-UART where the board has one); return
        ``(rx input bit, tx output bit)``."""
        res = self.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", res.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", res.tx)
        return rx.i, tx.o

    @staticmethod
    def sync_domain(m: Module, clk: Value, locked: Value | None = None) -> None:
        """The ``sync`` domain on ``clk``, held in reset until ``locked`` (a PLL's lock output;
        ``None``: a free-running oscillator)."""
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.d.comb += cd_sync.clk.eq(clk)
        m.submodules.reset_sync = ResetSynchronizer(Const(0) if locked is None else ~locked,
                                                    domain="sync")

    def synth_overrides(self) -> dict[str, str]:
        """Extra ``prepare()`` options (e.g. Yosys' ``synth_opts``); none by default."""
        return {}
