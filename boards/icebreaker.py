# SPDX-License-Identifier: Apache-2.0
"""iCEBreaker (iCE40UP5K-SG48): the small lightformer board.

Preset ``icebreaker`` (2x2 array, 12 MHz). At 12 MHz the main clock is the 12 MHz oscillator
itself; any other target goes through ``SB_PLL40_PAD`` (:class:`boards.ice40.ICE40Board`). The
harness (:class:`boards.build.UnitHarness`) reads a serial bit stream from the FTDI UART RX pin
and shows a 7-bit checksum of the unit's outputs on the two on-board LEDs and the five LEDs of
the break-off PMOD. Yosys runs ``synth_ice40 -dsp`` so multipliers use the eight ``SB_MAC16``
(Amaranth's default iCE40 flow maps none).
"""

from __future__ import annotations

from amaranth import Module, Value
from amaranth_boards.icebreaker import ICEBreakerPlatform as _ICEBreakerPlatform

from boards.ice40 import ICE40Board

__all__ = ["ICEBreakerPlatform"]


class ICEBreakerPlatform(ICE40Board, _ICEBreakerPlatform):
    """iCEBreaker with the lightformer harness hooks."""

    board_name = "icebreaker"
    default_preset = "icebreaker"
    led_count = 7
    # The on-board FT2232H drives the SPI flash and the UP5K's SPI configuration port.
    loader_board = "ice40_generic"

    def status_leds(self, m: Module, count: int) -> list[Value]:
        """LEDs 0-1 are on the board, 2-6 on the break-off PMOD, which is a resource to add."""
        if count > 2:
            self.add_resources(self.break_off_pmod)
        return super().status_leds(m, count)

    def synth_overrides(self) -> dict[str, str]:
        return {"synth_opts": "-dsp"}
