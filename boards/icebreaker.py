# SPDX-License-Identifier: Apache-2.0
"""iCEBreaker (iCE40UP5K-SG48): the small lightformer board.

Preset ``icebreaker`` (2x2 array, 12 MHz). At 12 MHz the main clock is the 12 MHz oscillator
itself; any other target goes through ``SB_PLL40_PAD`` on the clock pin (pin 35 is the UP5K's
PLL input pad). The harness (``boards.build.UnitHarness``) reads a serial bit stream from the
FTDI UART RX pin and shows a 7-bit checksum of the unit's outputs on the two on-board LEDs and
the five LEDs of the break-off PMOD. Yosys runs ``synth_ice40 -dsp`` so multipliers use the
eight ``SB_MAC16`` (Amaranth's default flow uses none; TOOLCHAIN.md).
"""

from __future__ import annotations

from amaranth import *
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth_boards.icebreaker import ICEBreakerPlatform as _ICEBreakerPlatform

__all__ = ["ICEBreakerPlatform", "ice40_pll_params"]

# iCE40 PLL limits (Lattice iCE40 sysCLOCK PLL design guide, the ranges icepll uses).
_PFD_MIN_HZ, _PFD_MAX_HZ = 10e6, 133e6
_VCO_MIN_HZ, _VCO_MAX_HZ = 533e6, 1066e6
_OUT_MIN_HZ, _OUT_MAX_HZ = 16e6, 275e6


def ice40_pll_params(f_in_hz: float, f_out_hz: float) -> dict[str, int | float]:
    """``SB_PLL40_*`` settings (SIMPLE feedback) for ``f_out_hz`` from ``f_in_hz``.

    ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``; searched like ``icepll``.
    Returns ``{"DIVR", "DIVF", "DIVQ", "FILTER_RANGE", "f_out_hz"}``.
    """
    if not _OUT_MIN_HZ <= f_out_hz <= _OUT_MAX_HZ:
        raise ValueError(f"iCE40 PLL output must be in [16, 275] MHz, not {f_out_hz / 1e6!r} MHz")
    best: tuple[float, dict[str, int | float]] | None = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not _PFD_MIN_HZ <= f_pfd <= _PFD_MAX_HZ:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not _VCO_MIN_HZ <= f_vco <= _VCO_MAX_HZ:
                continue
            for divq in range(1, 7):
                f_out = f_vco / (1 << divq)
                err = abs(f_out - f_out_hz)
                if best is None or err < best[0]:
                    filt = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1)
                                if f_pfd < lim) if f_pfd < 101e6 else 6
                    best = (err, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                  "FILTER_RANGE": filt, "f_out_hz": f_out})
    if best is None:
        raise ValueError(
            f"no iCE40 PLL setting makes {f_out_hz / 1e6} MHz from {f_in_hz / 1e6} MHz")
    return best[1]


class ICEBreakerPlatform(_ICEBreakerPlatform):
    """iCEBreaker with the lightformer harness hooks (see ``boards.build``)."""

    board_name = "icebreaker"
    default_preset = "icebreaker"

    def add_main_clock(self, m: Module, frequency_hz: float) -> float:
        clk_res = self.lookup(self.default_clk)
        f_in = clk_res.clock.frequency
        m.domains.sync = cd_sync = ClockDomain("sync")
        if abs(frequency_hz - f_in) < 1.0:
            # Run straight from the oscillator; the resource's Clock(12e6) is the constraint.
            clk_io = self.request(self.default_clk, dir="-")
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            m.d.comb += cd_sync.clk.eq(clk_buf.i)
            m.submodules.reset_sync = ResetSynchronizer(Const(0), domain="sync")
            return f_in
        p = ice40_pll_params(f_in, frequency_hz)
        clk_io = self.request(self.default_clk, dir="-")
        clk_out = Signal()
        locked = Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
            p_FILTER_RANGE=p["FILTER_RANGE"],
            io_PACKAGEPIN=clk_io.io, i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=clk_out, o_LOCK=locked,
        )
        m.d.comb += cd_sync.clk.eq(clk_out)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        # nextpnr-ice40 derives the PLL output constraint from the 12 MHz input constraint (an
        # explicit one would name a net that vanishes after flattening; see boards/ulx3s.py).
        return p["f_out_hz"]

    def harness_pins(self, m: Module) -> tuple[Value, list[Value]]:
        """Serial input: the FTDI UART RX pin. Outputs: LEDs 0-1 on board, 2-6 on the PMOD."""
        self.add_resources(self.break_off_pmod)
        uart = self.request("uart", 0, dir="-")
        m.submodules.serial_in = rx = io.Buffer("i", uart.rx)
        leds = []
        for i in range(7):
            m.submodules[f"led_{i}"] = led = io.Buffer("o", self.request("led", i, dir="-"))
            leds.append(led.o)
        return rx.i, leds

    def synth_overrides(self) -> dict[str, str]:
        return {"synth_opts": "-dsp"}
