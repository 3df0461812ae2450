# SPDX-License-Identifier: Apache-2.0
"""ULX3S with the LFE5U-85F (ECP5, speed grade 6): the primary lightformer board.

Preset ``ulx3s_85f`` (8x8 array at 125 MHz). The main clock comes from an ``EHXPLLL`` fed by
the 25 MHz oscillator; the harness (``boards.build.UnitHarness``) reads a serial bit stream from
the FTDI UART RX pin and shows an 8-bit checksum of the unit's outputs on the eight LEDs.
"""

from __future__ import annotations

import math

from amaranth import *
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

__all__ = ["ULX3S85FPlatform", "ecp5_pll_params", "ecp5_main_clock"]

# ECP5 EHXPLLL limits (Lattice TN1263 / FPGA-DS-02012, the ranges ecppll searches within).
_PFD_MIN_HZ, _PFD_MAX_HZ = 3.125e6, 400e6
_VCO_MIN_HZ, _VCO_MAX_HZ = 400e6, 800e6
_OUT_MIN_HZ, _OUT_MAX_HZ = 3.125e6, 400e6


def ecp5_pll_params(f_in_hz: float, f_out_hz: float) -> dict[str, int | float]:
    """Dividers for an ``EHXPLLL`` making ``f_out_hz`` on CLKOP from ``f_in_hz``, CLKOP feedback.

    ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and ``f_vco = f_out * CLKOP_DIV`` (400..800 MHz).
    Searches like Project Trellis' ``ecppll``: the smallest frequency error, then the VCO closest
    to 600 MHz. Returns ``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "f_out_hz",
    "f_vco_hz"}``; ``ValueError`` if the output is out of range.
    """
    if not _OUT_MIN_HZ <= f_out_hz <= _OUT_MAX_HZ:
        raise ValueError(f"ECP5 PLL output must be in [3.125, 400] MHz, not {f_out_hz / 1e6!r} MHz")
    best: tuple[tuple[float, float], dict[str, int | float]] | None = None
    for clki_div in range(1, 129):
        f_pfd = f_in_hz / clki_div
        if f_pfd < _PFD_MIN_HZ:
            break
        if f_pfd > _PFD_MAX_HZ:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            if f_out > _OUT_MAX_HZ:
                break
            lo = max(1, math.ceil(_VCO_MIN_HZ / f_out))
            hi = min(128, math.floor(_VCO_MAX_HZ / f_out))
            for clkop_div in range(lo, hi + 1):
                f_vco = f_out * clkop_div
                key = (abs(f_out - f_out_hz), abs(f_vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div,
                                  "CLKOP_DIV": clkop_div, "CLKOP_CPHASE": clkop_div // 2,
                                  "f_out_hz": f_out, "f_vco_hz": f_vco})
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {f_out_hz / 1e6} MHz from {f_in_hz / 1e6} MHz")
    return best[1]


def ecp5_main_clock(platform, m: Module, frequency_hz: float) -> float:
    """Create the ``sync`` domain at ``frequency_hz`` from ``platform.default_clk`` via EHXPLLL.

    The domain is held in reset until the PLL locks. nextpnr derives the clock constraint of
    the PLL output (the achieved frequency) from the input clock's constraint and reports Fmax
    against it. Returns the achieved frequency in Hz.
    """
    clk_res = platform.lookup(platform.default_clk)
    f_in = clk_res.clock.frequency
    p = ecp5_pll_params(f_in, frequency_hz)
    clk_io = platform.request(platform.default_clk, dir="-")
    m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
    clk_out = Signal()
    locked = Signal()
    m.submodules.pll = Instance(
        "EHXPLLL",
        # Loop filter settings that ecppll writes for every configuration.
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        a_FREQUENCY_PIN_CLKI=f"{f_in / 1e6:g}",
        a_FREQUENCY_PIN_CLKOP=f"{p['f_out_hz'] / 1e6:g}",
        p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
        p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
        p_CLKOP_ENABLE="ENABLED", p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
        p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
        p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_CPHASE"],
        i_RST=0, i_STDBY=0, i_CLKI=clk_buf.i, i_CLKFB=clk_out,
        i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1,
        i_PLLWAKESYNC=0, i_ENCLKOP=0,
        o_CLKOP=clk_out, o_LOCK=locked,
    )
    m.domains.sync = cd_sync = ClockDomain("sync")
    m.d.comb += cd_sync.clk.eq(clk_out)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
    # No add_clock_constraint() on the PLL output: Amaranth 0.5 names a clock signal after the
    # last module that uses it ("din_sync.clk"), a net that does not exist after flattening, so
    # nextpnr would ignore it. nextpnr-ecp5 derives the PLL output constraint itself from the
    # 25 MHz input constraint and the dividers ("Derived frequency constraint of 125.0 MHz for
    # net clk"); boards.report checks that the main clock's constraint equals the target.
    return p["f_out_hz"]


class ULX3S85FPlatform(ULX3S_85F_Platform):
    """ULX3S-85F with the lightformer harness hooks (see ``boards.build``)."""

    board_name = "ulx3s-85f"
    default_preset = "ulx3s_85f"

    def add_main_clock(self, m: Module, frequency_hz: float) -> float:
        return ecp5_main_clock(self, m, frequency_hz)

    def harness_pins(self, m: Module) -> tuple[Value, list[Value]]:
        """Serial input: the FTDI UART RX pin. Outputs: the eight LEDs."""
        uart = self.request("uart", 0, dir="-")
        m.submodules.serial_in = rx = io.Buffer("i", uart.rx)
        leds = []
        for i in range(8):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", self.request("led", i, dir="-"))
            leds.append(led.o)
        return rx.i, leds

    def synth_overrides(self) -> dict[str, str]:
        return {}
