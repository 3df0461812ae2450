# SPDX-License-Identifier: Apache-2.0
"""ECP5 boards (ULX3S, Colorlight 5A-75B): the main clock from an ``EHXPLLL``.

:class:`ECP5Board` is the mixin the ECP5 board classes share; :func:`ecp5_pll_params` is the
divider search behind it.
"""

from __future__ import annotations

import math

from amaranth import ClockDomain, Const, Instance, Module, Signal, Value
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from boards.common import HarnessBoard, PllRange

__all__ = ["EHXPLLL_RANGE", "ECP5Board", "ecp5_pll_params"]

#: ``EHXPLLL`` limits (Lattice TN1263 / FPGA-DS-02012, the ranges ecppll searches within).
EHXPLLL_RANGE = PllRange("ECP5", pfd=(3.125e6, 400e6), vco=(400e6, 800e6), out=(3.125e6, 400e6))


def ecp5_pll_params(f_in_hz: float, f_out_hz: float) -> dict[str, int | float]:
    """Dividers for an ``EHXPLLL`` making ``f_out_hz`` on CLKOP from ``f_in_hz``, CLKOP feedback.

    ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and ``f_vco = f_out * CLKOP_DIV`` (400..800 MHz).
    Searches like Project Trellis' ``ecppll``: the smallest frequency error, then the VCO closest
    to 600 MHz. Returns ``{"CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE", "f_out_hz",
    "f_vco_hz"}``; ``ValueError`` if the output is out of range.
    """
    limits = EHXPLLL_RANGE
    limits.check_output(f_out_hz)
    best: tuple[tuple[float, float], dict[str, int | float]] | None = None
    for clki_div in range(1, 129):
        f_pfd = f_in_hz / clki_div
        if f_pfd < limits.pfd[0]:
            break
        if f_pfd > limits.pfd[1]:
            continue
        for clkfb_div in range(1, 81):
            f_out = f_pfd * clkfb_div
            if f_out > limits.out[1]:
                break
            lo = max(1, math.ceil(limits.vco[0] / f_out))
            hi = min(128, math.floor(limits.vco[1] / f_out))
            for clkop_div in range(lo, hi + 1):
                f_vco = f_out * clkop_div
                key = (abs(f_out - f_out_hz), abs(f_vco - 600e6))
                if best is None or key < best[0]:
                    best = (key, {"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div,
                                  "CLKOP_DIV": clkop_div, "CLKOP_CPHASE": clkop_div // 2,
                                  "f_out_hz": f_out, "f_vco_hz": f_vco})
    if best is None:
        raise limits.no_setting(f_in_hz, f_out_hz)
    return best[1]


class ECP5Board(HarnessBoard):
    """Mixin for an ECP5 board: the ``sync`` domain from an ``EHXPLLL`` on ``default_clk``."""

    bitstream_suffix = ".bit"                   # ecppack's output, what openFPGALoader loads

    @staticmethod
    def sync_domain(m: Module, clk: Value, locked: Value | None = None) -> None:
        """:meth:`HarnessBoard.sync_domain`, with the domain's reset on a global network.

        The synchronized reset drives the ``LSR`` of nearly every flip-flop of the design
        (38,466 of the ``ulx3s_85f`` accelerator top's 41,975). nextpnr promotes only clocks to
        the global networks, so it routed that net through the fabric from one flip-flop to the
        whole chip: a net that alone spans the die, with arcs far longer than a cycle at 100 MHz.
        A ``DCCA`` (the global buffer nextpnr inserts for clocks) on the reset puts it on one of
        the eight global networks that reach the fabric's inputs: every flip-flop sees it after
        about the same delay. The synchronizer's flip-flops are in a domain of their own
        (``reset_src``, same clock) whose reset is what they produce."""
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.domains.reset_src = cd_src = ClockDomain("reset_src")
        m.d.comb += [cd_sync.clk.eq(clk), cd_src.clk.eq(clk)]
        m.submodules.reset_sync = ResetSynchronizer(Const(0) if locked is None else ~locked,
                                                    domain="reset_src")
        m.submodules.reset_buf = Instance("DCCA", i_CLKI=cd_src.rst, i_CE=Const(1),
                                          o_CLKO=cd_sync.rst)

    def add_main_clock(self, m: Module, frequency_hz: float) -> float:
        """Create the ``sync`` domain at ``frequency_hz``; return the achieved frequency in Hz.

        The domain is held in reset until the PLL locks. nextpnr derives the clock constraint of
        the PLL output (the achieved frequency) from the input clock's constraint and reports
        Fmax against it.
        """
        f_in = self.lookup(self.default_clk).clock.frequency
        p = ecp5_pll_params(f_in, frequency_hz)
        clk_io = self.request(self.default_clk, dir="-")
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
        self.sync_domain(m, clk_out, locked)
        # No add_clock_constraint() on the PLL output: Amaranth 0.5 names a clock signal after
        # the last module that uses it ("din_sync.clk"), a net that does not exist after
        # flattening, so nextpnr would ignore it. nextpnr-ecp5 derives the PLL output
        # constraint itself from the input constraint and the dividers ("Derived frequency
        # constraint of 125.0 MHz for net clk"); boards.report checks that the main clock's
        # constraint equals the target.
        return p["f_out_hz"]
