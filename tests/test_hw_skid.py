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


@pytest.mark.parametrize("groups", [1, 3])
@pytest.mark.parametrize("idle, backpressure", VARIANTS, ids=VARIANT_IDS)
def test_skid_buffer_keeps_order(idle, backpressure, groups):
    """Also with the payload's bits in 3 groups, each with flags of its own (16 bits: 6, 5
    and 5): every group's bits arrive with their transfer."""
    dut = SkidBuffer(16, groups=groups)
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


@pytest.mark.parametrize("groups", [1, 3])
def test_skid_buffer_flush(groups):
    dut = SkidBuffer(8, groups=groups)
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


@pytest.mark.parametrize("groups", [1, 3])
def test_skid_buffer_crossing_signals_are_registers(groups):
    """``i_stream.ready``, ``o_stream.valid`` and ``o_stream.payload`` do not move when the
    inputs change within a cycle (no combinational path through the slice), in 200 random
    states."""
    dut = SkidBuffer(8, groups=groups)
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


def test_bit_and_column_groups():
    from hw.skid import COLUMNS_PER_FLAG_COPY, bit_groups, column_groups

    assert bit_groups(16, 3) == [(0, 6), (6, 11), (11, 16)]
    assert bit_groups(577, 1) == [(0, 577)]
    assert bit_groups(5, 5) == [(k, k + 1) for k in range(5)]
    assert COLUMNS_PER_FLAG_COPY == 8
    assert [column_groups(c) for c in (1, 4, 8, 9, 16, 18, 32)] == [1, 1, 1, 2, 2, 3, 4]
    with pytest.raises(ValueError, match="groups must be an integer in"):
        bit_groups(4, 5)
    with pytest.raises(ValueError, match="groups must be an integer in"):
        SkidBuffer(8, groups=0)
    with pytest.raises(TypeError, match="groups must be an integer"):
        SkidBuffer(8, groups=1.5)


@pytest.mark.parametrize("idle, backpressure", VARIANTS, ids=VARIANT_IDS)
def test_host_bus_slice_keeps_the_bus_rules(idle, backpressure):
    """``hw.bus.HostBusSlice`` between a master (``tests/hostbus.HostDriver``) and a slave
    model with random ``ready`` and read latency: every write lands with its byte enables, in
    order, every read returns the word as last written, and the slave sees each request one
    cycle after its transfer into the slice at the soonest."""
    from hostbus import HostDriver

    from hw.bus import HostBusSlice

    dut = HostBusSlice(addr_width=6)
    rng = np.random.default_rng(5)
    ops = [(bool(rng.integers(2)), int(rng.integers(64)), int(rng.integers(1 << 32)),
            int(rng.integers(1, 16))) for _ in range(400)]
    model = [0] * 64
    expected, got, seen = [], [], []
    done = []

    async def master(ctx):
        idle_rng = np.random.default_rng(6)
        host = HostDriver(ctx, dut.i_bus)
        for write, addr, data, en in ops:
            if write:
                await host.write(addr, data, en)
                mask = sum(0xFF << 8 * b for b in range(4) if en >> b & 1)
                model[addr] = model[addr] & ~mask | data & mask
            else:
                expected.append(model[addr])
                got.append(await host.read(addr))
            for _ in range(int(idle_rng.integers(0, 3)) if idle else 0):
                await ctx.tick()
        done.append(True)

    async def slave(ctx):
        ready_rng = np.random.default_rng(7)
        memory, answers = [0] * 64, []
        o = dut.o_bus
        while not done:
            ready = int(not backpressure or ready_rng.random() < 0.5)
            ctx.set(o.ready, ready)
            # A read answered 1..3 cycles after its transfer, in order.
            ctx.set(o.r_valid, int(bool(answers) and answers[0][0] == 0))
            if answers and answers[0][0] == 0:
                ctx.set(o.r_data, answers.pop(0)[1])
            answers = [(max(0, t - 1), v) for t, v in answers]
            valid, write, addr, data, en = (ctx.get(o.valid), ctx.get(o.write),
                                            ctx.get(o.addr), ctx.get(o.w_data), ctx.get(o.w_en))
            if valid and ready:
                seen.append(addr)
                if write:
                    mask = sum(0xFF << 8 * b for b in range(4) if en >> b & 1)
                    memory[addr] = memory[addr] & ~mask | data & mask
                else:
                    answers.append((int(ready_rng.integers(0, 3)), memory[addr]))
            await ctx.tick()

    run_testbenches(dut, master, slave, deadline_us=None)
    assert len(seen) == len(ops) == 400
    assert seen == [addr for _, addr, _, _ in ops]
    assert len(got) == len(expected) > 150
    assert got == expected
