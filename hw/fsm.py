# SPDX-License-Identifier: Apache-2.0
"""Synthesis hints for Amaranth FSMs."""

from __future__ import annotations


def one_hot(fsm) -> None:
    """Ask synthesis to encode ``fsm``'s state one-hot: Yosys' ``fsm`` pass recodes a state
    register with the ``fsm_encoding`` attribute; without it a register with an initial value
    (every Amaranth FSM's) is left binary, and every state test is a comparison of all its
    bits, a wide fanout of each bit. Yosys drops the initial value of a recoded register: the
    state after configuration comes from the domain's reset, which the board tops hold until
    their PLL locks (``boards.common``). Simulation (Amaranth's, Verilator's) is unaffected."""
    fsm.state.attrs["fsm_encoding"] = "one-hot"
