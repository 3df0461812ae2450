# SPDX-License-Identifier: Apache-2.0
"""Colorlight 5A-75B v7.0 (ECP5 LFE5U-25F-6BG256): the third, low-cost open-flow board.

The LFE5U-25F has 24 k LUT4, 28 ``MULT18X18D`` and 56 EBR, so it has its own preset,
``colorlight_5a75b`` (2x2 array at 125 MHz, its hard blocks sized for the whole board top). The
main clock comes from an ``EHXPLLL`` fed by the 25 MHz oscillator
(:class:`boards.ecp5.ECP5Board`). The board has one button and one LED: the harness
(:class:`boards.build.UnitHarness`) reads its serial bit stream from the button pin and shows a
1-bit checksum of the unit's outputs on the LED.

The board has no USB-UART: amaranth-boards' ``uart`` resource puts RX on the button pin (M13)
and TX on the LED pin (P11), so the board top (:class:`boards.top.BoardTop`), which takes the
``uart``, has no status LED here.
"""

from __future__ import annotations

from amaranth import Module, Value
from amaranth_boards.colorlight_5a75b_r7_0 import Colorlight_5A75B_R70Platform

from boards.ecp5 import ECP5Board

__all__ = ["Colorlight5A75BPlatform"]


class Colorlight5A75BPlatform(ECP5Board, Colorlight_5A75B_R70Platform):
    """Colorlight 5A-75B v7.0 with the lightformer harness hooks: button M13 in, LED P11 out."""

    board_name = "colorlight-5a75b"
    default_preset = "colorlight_5a75b"
    serial_in = ("button", None)
    led_count = 1
    # No programmer on the board: openFPGALoader needs a JTAG cable on its pads (--cable).
    loader_board = None

    def uart_pins(self, m: Module) -> tuple[Value, Value]:
        """The ``uart`` resource (RX on the button pin, TX on the LED pin, module docstring)."""
        self._led_is_uart_tx = True
        return super().uart_pins(m)

    def status_leds(self, m: Module, count: int) -> list[Value]:
        """The LED, unless :meth:`uart_pins` has taken its pin for TX (then none)."""
        if getattr(self, "_led_is_uart_tx", False):
            return []
        return super().status_leds(m, count)
