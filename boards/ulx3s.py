# SPDX-License-Identifier: Apache-2.0
"""ULX3S with the LFE5U-85F (ECP5, speed grade 6): the primary lightformer board.

Preset ``ulx3s_85f`` (8x8 array at 125 MHz). The main clock comes from an ``EHXPLLL`` fed by
the 25 MHz oscillator (:class:`boards.ecp5.ECP5Board`); the harness
(:class:`boards.build.UnitHarness`) reads a serial bit stream from the FTDI UART RX pin and shows
an 8-bit checksum of the unit's outputs on the eight LEDs.
"""

from __future__ import annotations

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from boards.ecp5 import ECP5Board

__all__ = ["ULX3S85FPlatform"]


class ULX3S85FPlatform(ECP5Board, ULX3S_85F_Platform):
    """ULX3S-85F with the lightformer harness hooks."""

    board_name = "ulx3s-85f"
    default_preset = "ulx3s_85f"
    led_count = 8
    loader_board = "ulx3s"                      # the on-board FT231X's JTAG
