# SPDX-License-Identifier: Apache-2.0
"""Colorlight 5A-75B v7.0 (ECP5 LFE5U-25F-6BG256): the third, low-cost open-flow board.

The LFE5U-25F has 24 k LUT4, 28 ``MULT18X18D`` and 56 EBR, so it gets its own preset,
``colorlight_5a75b`` (4x4 array at 125 MHz; see :data:`PRESET`). The main clock comes from an
``EHXPLLL`` fed by the 25 MHz oscillator (shared code with the ULX3S). The board has one button
and one LED: the harness (``boards.build.UnitHarness``) reads its serial bit stream from the
button pin and shows a 1-bit checksum of the unit's outputs on the LED.
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import io
from amaranth_boards.colorlight_5a75b_r7_0 import Colorlight_5A75B_R70Platform

from boards.ulx3s import ecp5_main_clock
from hw.params import PRESETS, AccelParams

__all__ = ["Colorlight5A75BPlatform", "PRESET"]

#: Preset for the LFE5U-25F. Not in ``hw.params.PRESETS`` yet (the lead adds it there); until
#: then ``preset_for_board`` returns this object for ``--preset colorlight_5a75b``.
PRESET = PRESETS.get("colorlight_5a75b") or AccelParams(
    name="colorlight_5a75b", rows=4, cols=4, k_depth=512, window=16, head_dim=16, attn_lanes=4,
    act_depth=8192, wgt_depth=32768, instr_depth=256, lut_count=4, target_mhz=125.0)


class Colorlight5A75BPlatform(Colorlight_5A75B_R70Platform):
    """Colorlight 5A-75B v7.0 with the lightformer harness hooks (see ``boards.build``)."""

    board_name = "colorlight-5a75b"
    default_preset = "colorlight_5a75b"

    def add_main_clock(self, m: Module, frequency_hz: float) -> float:
        return ecp5_main_clock(self, m, frequency_hz)

    def harness_pins(self, m: Module) -> tuple[Value, list[Value]]:
        """Serial input: the button pin (M13). Output: the LED (P11)."""
        m.submodules.serial_in = button = io.Buffer("i", self.request("button", 0, dir="-"))
        m.submodules.led_0 = led = io.Buffer("o", self.request("led", 0, dir="-"))
        return button.i, [led.o]

    def synth_overrides(self) -> dict[str, str]:
        return {}
