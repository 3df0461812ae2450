# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of hw.skid.SkidBuffer: order, full throughput, flush, and that
every signal that crosses it comes from a register."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from helpers import run_testbenches, stream_get, stream_put

from hw.skid import SkidBuffer

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]
VARIANT_IDS = ["plain", "idle", "backpressure", "idle+backpressure"]


@pytest.mark.parametrize("idle, backpressure", VARIANTS, ids=VARIANT_IDS)
def test_skid_buffer_keeps_order(idle, backpressure):
    dut = SkidBuffer(16)
    count = 300
    sent = [int(v) for v in np.random.default_rng(1).integers(0, 1 << 16, count)]
    got = []

    async def source(ctx):
        rng = np.random.default_rng(2) if idle else None
        for value in sent:
            await stream_put(ctx, dut.i_stream, value, rng, max_idle=3)

    async def sink(ctx):
        rng = np.random.default_rng(3) if backpressure else None
        got.extend(await stream_get(ctx, dut.o_stream, count, rng, ready_rate=0.5))

    run_testbenches(dut, source, sink, deadline_us=None)
    assert len(got) == count
    assert got == sent


def test_skid_buffer_full_throughput_and_latency():
    """A sink that is always ready takes one transfer a cycle, the first one cycle after it
    entered; ``i_stream.ready`` never drops."""
    dut = SkidBuffer(8)
    cycles = []

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for t in range(40):
            ctx.set(dut.i_stream.valid, int(t < 32))
            ctx.set(dut.i_stream.payload, t)
            _, _, ready, valid, payload = await ctx.tick().sample(
                dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
            assert ready == 1
            if valid:
                cycles.append((t, payload))

    run_testbenches(dut, bench, deadline_us=None)
    assert cycles == [(t, t - 1) for t in range(1, 33)]


def test_skid_buffer_flush():
    dut = SkidBuffer(8)
    got = []

    async def bench(ctx):
        # Fill both entries with the sink stalled, then flush.
        for value in (1, 2):
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, value)
            await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        assert ctx.get(dut.i_stream.ready) == 0 and ctx.get(dut.o_stream.valid) == 1
        ctx.set(dut.flush, 1)
        await ctx.tick()
        ctx.set(dut.flush, 0)
        assert ctx.get(dut.o_stream.valid) == 0 and ctx.get(dut.i_stream.ready) == 1
        await stream_put(ctx, dut.i_stream, 7)
        ctx.set(dut.o_stream.ready, 1)
        for _ in range(4):
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           Value.cast(dut.o_stream.payload))
            if valid:
                got.append(payload)

    run_testbenches(dut, bench, deadline_us=None)
    assert got == [7]


def test_skid_buffer_crossing_signals_are_registers():
    """``i_stream.ready``, ``o_stream.valid`` and ``o_stream.payload`` do not move when the
    inputs change within a cycle (no combinational path through the slice), in 200 random
    states."""
    dut = SkidBuffer(8)
    checked = []

    async def bench(ctx):
        rng = np.random.default_rng(4)
        outputs = (dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
        for _ in range(200):
            seen = []
            for _ in range(3):
                ctx.set(dut.i_stream.valid, int(rng.integers(2)))
                ctx.set(dut.i_stream.payload, int(rng.integers(256)))
                ctx.set(dut.o_stream.ready, int(rng.integers(2)))
                seen.append(tuple(ctx.get(s) for s in outputs))
            assert seen[0] == seen[1] == seen[2]
            checked.append(seen[0])
            await ctx.tick()

    run_testbenches(dut, bench, deadline_us=None)
    assert len(checked) == 200
    assert {valid for _, valid, _ in checked} == {0, 1}          # both states were visited
    assert {ready for ready, _, _ in checked} == {0, 1}
