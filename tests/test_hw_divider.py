# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of hw.divider: the sequential constant divider against Python's
``divmod``, its corners, a restart while busy, and the power-of-two slices."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Const
from helpers import run_testbenches

from hw.divider import ConstDivider, is_pow2, pow2_divmod


def _divide_all(width, divisor, values, *, restart_at=None):
    """Each value through ``ConstDivider``; returns (quotient, remainder, cycles to done)."""
    dut = ConstDivider(width, divisor)
    got = []

    async def tb(ctx):
        for v in values:
            if restart_at is not None:
                # Start a division of another value, then restart with v mid-way.
                ctx.set(dut.x, (v ^ ((1 << width) - 1)))
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                await ctx.tick().repeat(restart_at)
                assert not ctx.get(dut.done)
            ctx.set(dut.x, v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.x, 0)                       # x is sampled on start only
            cycles = 1
            while not ctx.get(dut.done):
                await ctx.tick()
                cycles += 1
                assert cycles <= width + 2
            got.append((ctx.get(dut.quotient), ctx.get(dut.remainder), cycles))
            await ctx.tick().repeat(2)               # done holds, and so do the results
            assert ctx.get(dut.done)
            assert (ctx.get(dut.quotient), ctx.get(dut.remainder)) == got[-1][:2]

    run_testbenches(dut, tb, deadline_us=None)
    return got, dut.latency


@pytest.mark.parametrize("width, divisor", [(16, 9), (24, 18), (12, 12), (8, 3), (5, 1),
                                            (10, 1000), (6, 64)])
def test_const_divider_matches_divmod(width, divisor):
    rng = np.random.default_rng(width * 1000 + divisor)
    top = (1 << width) - 1
    corners = [0, 1, top, top - 1, divisor - 1 if divisor - 1 <= top else 0,
               min(divisor, top), min(divisor + 1, top), (top // divisor) * divisor]
    values = corners + [int(v) for v in rng.integers(0, top + 1, 40)]
    got, latency = _divide_all(width, divisor, values)
    assert len(got) == len(values) == 48
    assert [(q, r) for q, r, _ in got] == [divmod(v, divisor) for v in values]
    assert {c for _, _, c in got} == {latency} and latency == width + 1


def test_const_divider_restart_while_busy():
    values = [0, 1, 17, 18, 19, 65535, 40000, 12345]
    got, _ = _divide_all(16, 18, values, restart_at=7)
    assert len(got) == len(values)
    assert [(q, r) for q, r, _ in got] == [divmod(v, 18) for v in values]


def test_const_divider_arguments_and_pow2_slices():
    with pytest.raises(ValueError, match="divisor"):
        ConstDivider(8, 0)
    with pytest.raises(ValueError, match="width"):
        ConstDivider(0, 3)
    with pytest.raises(TypeError):
        ConstDivider(8, 2.5)
    assert [d for d in range(1, 20) if is_pow2(d)] == [1, 2, 4, 8, 16]
    q, r = pow2_divmod(Const(0b1011011, 7), 8)
    assert (Const.cast(q).value, Const.cast(r).value) == (0b1011, 0b011)
    with pytest.raises(ValueError, match="ConstDivider"):
        pow2_divmod(Const(5, 4), 3)
