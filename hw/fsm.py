# SPDX-License-Identifier: Apache-2.0
"""Synthesis hints for Amaranth FSMs, and a multiplexer for one-hot selects."""

from __future__ import annotations

from amaranth.hdl import Cat, Mux, Value


def one_hot(fsm) -> None:
    """Ask synthesis to encode ``fsm``'s state one-hot: Yosys' ``fsm`` pass recodes a state
    register with the ``fsm_encoding`` attribute; without it a register with an initial value
    (every Amaranth FSM's) is left binary, and every state test is a comparison of all its
    bits, a wide fanout of each bit. Yosys drops the initial value of a recoded register: the
    state after configuration comes from the domain's reset, which the board tops hold until
    their PLL locks (``boards.common``). Simulation (Amaranth's, Verilator's) is unaffected."""
    fsm.state.attrs["fsm_encoding"] = "one-hot"


def select_one_hot(choices, width: int):
    """``value`` of the one ``(select, value)`` pair of ``choices`` whose ``select`` is high, 0
    when none is (at most one may be): an AND-OR multiplexer for selects that are one-hot by
    construction (state flip-flops, select registers), one OR reduction per bit rather than a
    priority chain or a chain of ``|``, so its depth does not grow with the number of
    choices."""
    terms = [Mux(select, Value.cast(value), 0) for select, value in choices]
    assert terms and width > 0, (len(terms), width)
    return Cat(*(Cat(*(t[b] for t in terms if b < len(t))).any() for b in range(width)))
