# SPDX-License-Identifier: Apache-2.0
"""``add_with_reset``: submodules whose flip-flops also reset on a signal of the design.

Amaranth's way is :class:`~amaranth.hdl.ResetInserter`, and that is what this does without a
platform (the simulators) and on iCE40. On ECP5 it is not: Yosys ORs the extra reset into each
flip-flop's synchronous reset, so the ``LSR`` pins of every flip-flop under the inserter hang on
LUT outputs -- fabric nets that nextpnr-ecp5 does not promote to a global network (it promotes
clock nets and ``DCCA`` outputs only) and routes from one point across most of the die (31,000
``LSR`` pins on four such nets in the ``ulx3s_85f`` accelerator top, docs/boards.md). There the
submodules run in a clock domain of their own: the ``sync`` clock net, and as its reset the OR
of the ``sync`` domain's reset and the extra one through a ``DCCA``, one global network to every
flip-flop, as the domain's own reset is (``boards.ecp5``). The same circuit: a flip-flop resets
in each cycle where either reset is high.

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
    ResetSignal,
    Value,
)

from hw.multiplier import _platform_family

__all__ = ["add_with_reset"]


def add_with_reset(m: Module, platform, reset: Value, submodules: dict, *, domain: str) -> None:
    """Add ``submodules`` (``{name: elaboratable}``) to ``m``; their ``sync`` flip-flops reset on
    the ``sync`` domain's reset or on ``reset`` (module docstring).

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
        design: the name of its ``DCCA`` is ``{domain}_reset_buf``).
    """
    if _platform_family(platform) != "ecp5":
        for name, sub in submodules.items():
            m.submodules[name] = ResetInserter(reset)(sub)
        return
    cd = ClockDomain(domain, local=True)
    m.domains += cd
    m.d.comb += cd.clk.eq(ClockSignal("sync"))
    m.submodules[f"{domain}_reset_buf"] = Instance(
        "DCCA", i_CLKI=ResetSignal("sync", allow_reset_less=True) | reset,
        i_CE=Const(1), o_CLKO=cd.rst)
    for name, sub in submodules.items():
        m.submodules[name] = DomainRenamer({"sync": domain})(sub)
