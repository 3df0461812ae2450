# SPDX-License-Identifier: Apache-2.0
"""``add_with_reset``: submodules whose flip-flops also reset on a signal of the design.

The extra reset first goes through a flip-flop of the parent (``held``, returned to the
caller): the submodules reset in the cycle after the caller's ``reset`` is high, and in the
cycle after any cycle of the parent's own reset (``held`` resets to 1). Without a platform (the
simulators) and on iCE40 that is Amaranth's :class:`~amaranth.hdl.ResetInserter` with ``held``.

On ECP5 it is not: Yosys ORs the extra reset into each flip-flop's synchronous reset, so the
``LSR`` pins of every flip-flop under the inserter hang on LUT outputs -- fabric nets that
nextpnr-ecp5 does not promote to a global network (it promotes clock nets and ``DCCA`` outputs
only) and routes from one point across most of the die (31,000 ``LSR`` pins on four such nets
in the ``ulx3s_85f`` accelerator top, docs/boards.md). There the submodules run in a clock
domain of their own: the ``sync`` clock net, and as its reset ``held`` itself through a
``DCCA``, one global network to every flip-flop. The ``DCCA``'s input is that flip-flop and
nothing else: an OR of the parent's reset (a global network itself) and the extra reset in a
LUT before the ``DCCA`` put a global-to-fabric hop and a wire to the die's clock buffers in
every path into a submodule's reset (the routed ``ulx3s_85f`` board top's worst path, 10.91 ns:
the link's RESET pulse, the accelerator's reset, the units' reset, a skid's clear).

The two circuits differ only in the first cycle of the parent's own reset, which the submodules
follow a cycle late on ECP5 (``held`` only; the inserter ORs in the parent's reset): they leave
reset in the same cycle, the one after ``held`` falls, and the parent's reset lasts more than one
cycle on every board (``boards.ecp5``: a reset synchronizer behind the PLL's lock).

Inside the submodules ``ResetSignal("sync")`` is the new domain's reset, so a domain of the same
kind nested below (the controller's ``units``) resets on all the resets above it.
"""

from __future__ import annotations

from amaranth.hdl import (
    ClockDomain,
    ClockSignal,
    Const,
    DomainRenamer,
    Instance,
    Module,
    ResetInserter,
    Signal,
    Value,
)

from hw.multiplier import _platform_family

__all__ = ["add_with_reset"]


def add_with_reset(m: Module, platform, reset: Value, submodules: dict, *,
                   domain: str) -> Signal:
    """Add ``submodules`` (``{name: elaboratable}``) to ``m``; their ``sync`` flip-flops reset in
    the cycle after the ``sync`` domain's reset or ``reset`` is high (module docstring).

    Parameters
    ----------
    m : Module
        The parent module.
    platform
        The build platform (``None`` in simulation); only an ECP5 platform changes the circuit.
    reset : Value
        The extra reset, one bit, in the ``sync`` domain.
    submodules : dict
        Submodule name -> elaboratable, each in the ``sync`` domain.
    domain : str
        On ECP5, the name of the local clock domain the submodules run in (unique in the
        design: the name of its ``DCCA`` is ``{domain}_reset_buf``, of its flip-flop
        ``{domain}_reset``).

    Returns
    -------
    Signal
        ``held``: high in the cycles the submodules reset in (but the first of the ``sync``
        domain's own reset), for logic of the parent that clears with them.
    """
    held = Signal(init=1, name=f"{domain}_reset")
    m.d.sync += held.eq(reset)
    if _platform_family(platform) != "ecp5":
        for name, sub in submodules.items():
            m.submodules[name] = ResetInserter(held)(sub)
        return held
    cd = ClockDomain(domain, local=True)
    m.domains += cd
    m.d.comb += cd.clk.eq(ClockSignal("sync"))
    m.submodules[f"{domain}_reset_buf"] = Instance(
        "DCCA", i_CLKI=held, i_CE=Const(1), o_CLKO=cd.rst)
    for name, sub in submodules.items():
        m.submodules[name] = DomainRenamer({"sync": domain})(sub)
    return held
