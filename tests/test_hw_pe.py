# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests of hw.pe.ProcessingElement."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from helpers import set_ports

from hw.pe import ProcessingElement


def test_pe_accumulates_tiles_with_enable():
    dut = ProcessingElement(use_dsp=False)
    rng = np.random.default_rng(1)
    # Three tiles of K = 3, 1, 5 with bubbles (valid low) and enable gaps in between.
    tiles = [rng.integers(-128, 128, (k, 2)) for k in (3, 1, 5)]
    tiles.append(np.full((6, 2), -128))
    stream = []
    for t in tiles:
        for k, (a, w) in enumerate(t):
            stream.append((int(a), int(w), 1, int(k == len(t) - 1)))
            if rng.random() < 0.3:
                stream.append((int(rng.integers(-128, 128)), 5, 0, 1))   # bubble, ignored
    stream += [(0, 0, 0, 0)] * (dut.latency + 2)
    results = []
    pass_through = []

    async def tb(ctx):
        prev = None
        for a, w, v, lst in stream:
            # A random enable gap before each cycle of work: nothing may move.
            while rng.random() < 0.3:
                ctx.set(dut.en, 0)
                before = (ctx.get(dut.result), ctx.get(dut.done), ctx.get(dut.a_o))
                await ctx.tick()
                assert (ctx.get(dut.result), ctx.get(dut.done), ctx.get(dut.a_o)) == before
            set_ports(ctx, dut, en=1, a_i=a, w_i=w, valid_i=v, last_i=lst)
            await ctx.tick()
            pass_through.append((ctx.get(dut.a_o), ctx.get(dut.w_o), ctx.get(dut.valid_o),
                                 ctx.get(dut.last_o)) == (a, w, v, lst))
            if ctx.get(dut.done):
                results.append(ctx.get(dut.result))
            else:
                assert ctx.get(dut.result) == 0
            prev = (a, w)
        assert prev is not None

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert all(pass_through)
    assert results == [int((t[:, 0] * t[:, 1]).sum()) for t in tiles]


def test_pe_result_latency():
    dut = ProcessingElement(use_dsp=False)
    seen = []

    async def tb(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.a_i, -7)
        ctx.set(dut.w_i, 9)
        ctx.set(dut.valid_i, 1)
        ctx.set(dut.last_i, 1)
        await ctx.tick()
        ctx.set(dut.valid_i, 0)
        for cycle in range(1, 8):
            if ctx.get(dut.done):
                seen.append((cycle, ctx.get(dut.result)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [(dut.latency, -63)]


def test_pe_rejects_bad_flags():
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        ProcessingElement(use_dsp=None)
    with pytest.raises(TypeError, match="family must be a string"):
        ProcessingElement(family=1)
