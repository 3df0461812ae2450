# SPDX-License-Identifier: Apache-2.0
"""What every lightformer board adds to its amaranth-boards platform: the harness hooks.

:class:`boards.build.UnitHarness` asks the platform for three things: ``add_main_clock(m, hz)``
(the ``sync`` domain; the family modules :mod:`boards.ecp5` and :mod:`boards.ice40` provide it),
``harness_pins(m)`` (one serial input pin and the output pins) and ``synth_overrides()`` (extra
options for the toolchain). :class:`HarnessBoard` implements the last two from class attributes,
so a board file only names its pins.
"""

from __future__ import annotations

from amaranth import Module, Value
from amaranth.lib import io

__all__ = ["HarnessBoard"]


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
    """

    board_name: str
    default_preset: str
    serial_in: tuple[str, str | None] = ("uart", "rx")
    led_count: int = 1

    def harness_pins(self, m: Module) -> tuple[Value, list[Value]]:
        """Request the serial input and the LEDs; return ``(input bit, [LED bits])``."""
        name, subsignal = self.serial_in
        res = self.request(name, 0, dir="-")
        m.submodules.serial_in = pin = io.Buffer("i", getattr(res, subsignal) if subsignal
                                                 else res)
        leds = []
        for i in range(self.led_count):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", self.request("led", i, dir="-"))
            leds.append(led.o)
        return pin.i, leds

    def synth_overrides(self) -> dict[str, str]:
        """Extra ``prepare()`` options (e.g. Yosys' ``synth_opts``); none by default."""
        return {}
