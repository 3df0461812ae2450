# SPDX-License-Identifier: Apache-2.0
"""iCE40 boards (iCEBreaker): the main clock from the oscillator or an ``SB_PLL40_PAD``.

:class:`ICE40Board` is the mixin for iCE40 board classes; :func:`ice40_pll_params` is the
divider search behind it.
"""

from __future__ import annotations

from amaranth import Instance, Module, Signal
from amaranth.lib import io

from boards.common import HarnessBoard, PllRange

__all__ = ["ICE40Board", "SB_PLL40_RANGE", "ice40_pll_params"]

#: ``SB_PLL40_*`` limits (Lattice iCE40 sysCLOCK PLL design guide, the ranges icepll uses).
SB_PLL40_RANGE = PllRange("iCE40", pfd=(10e6, 133e6), vco=(533e6, 1066e6), out=(16e6, 275e6))


def ice40_pll_params(f_in_hz: float, f_out_hz: float) -> dict[str, int | float]:
    """``SB_PLL40_*`` settings (SIMPLE feedback) for ``f_out_hz`` from ``f_in_hz``.

    ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2**DIVQ)``; searched like ``icepll``.
    Returns ``{"DIVR", "DIVF", "DIVQ", "FILTER_RANGE", "f_out_hz"}``.
    """
    limits = SB_PLL40_RANGE
    limits.check_output(f_out_hz)
    best: tuple[float, dict[str, int | float]] | None = None
    for divr in range(16):
        f_pfd = f_in_hz / (divr + 1)
        if not limits.pfd[0] <= f_pfd <= limits.pfd[1]:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not limits.vco[0] <= f_vco <= limits.vco[1]:
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
        raise limits.no_setting(f_in_hz, f_out_hz)
    return best[1]


class ICE40Board(HarnessBoard):
    """Mixin for an iCE40 board: ``sync`` from ``default_clk``, through ``SB_PLL40_PAD`` when
    the target differs from the oscillator."""

    bitstream_suffix = ".bin"                   # icepack's output, what openFPGALoader loads

    def add_main_clock(self, m: Module, frequency_hz: float) -> float:
        """Create the ``sync`` domain at ``frequency_hz``; return the achieved frequency in Hz."""
        f_in = self.lookup(self.default_clk).clock.frequency
        clk_io = self.request(self.default_clk, dir="-")
        if abs(frequency_hz - f_in) < 1.0:
            # Run straight from the oscillator; the resource's Clock() is the constraint.
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            self.sync_domain(m, clk_buf.i)
            return f_in
        p = ice40_pll_params(f_in, frequency_hz)
        clk_out = Signal()
        locked = Signal()
        # SB_PLL40_PAD takes the package pin itself: the oscillator must sit on a PLL input
        # pad (pin 35 on the iCEBreaker's UP5K).
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE", p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
            p_FILTER_RANGE=p["FILTER_RANGE"],
            io_PACKAGEPIN=clk_io.io, i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=clk_out, o_LOCK=locked,
        )
        self.sync_domain(m, clk_out, locked)
        # nextpnr-ice40 derives the PLL output constraint from the input constraint (an
        # explicit one would name a net that vanishes after flattening; see boards.ecp5).
        return p["f_out_hz"]
