# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of hw.systolic.SystolicArray and its OutputBuffer.

Every result is compared bit for bit with sw.ref.gemm_acc. Streams run in the four variants
(idle cycles on the source x backpressure on the sink).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, ResetInserter, Signal, Value
from amaranth.sim import Simulator
from helpers import (
    array_operands,
    random_operand_tiles,
    run_testbenches,
    stream_get,
    stream_put,
    unpack_lanes,
)

from hw.numerics import accumulator_width
from hw.params import preset
from hw.systolic import OutputBuffer, SystolicArray, or_tree_stages
from sw.ref import gemm_acc

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]
VARIANT_IDS = ["plain", "idle", "backpressure", "idle+backpressure"]


# -- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols, exc", [
    (0, 2, ValueError), (2, 0, ValueError), (33, 2, ValueError), (2, 33, ValueError),
    ("2", 2, TypeError), (2, 2.0, TypeError), (True, 2, TypeError),
])
def test_systolic_rejects_bad_geometry(rows, cols, exc):
    with pytest.raises(exc, match="must be"):
        SystolicArray(rows, cols)


def test_systolic_rejects_bad_flags():
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        SystolicArray(2, 2, use_dsp=1)
    with pytest.raises(TypeError, match="family must be"):
        SystolicArray(2, 2, family=5)
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        SystolicArray.from_params({"rows": 2})


def test_systolic_from_params():
    p = preset("tiny")
    arr = SystolicArray.from_params(p)
    assert (arr.rows, arr.cols, arr.use_dsp) == (p.rows, p.cols, p.dsp_multipliers)


def test_accumulator_width():
    """Bits for every sum of K int8 x int8 products: 16 + log2(K) for a power of two."""
    assert [accumulator_width(k) for k in (1, 2, 3, 8, 256, 1024, 4096, 1 << 16, 1 << 17)] == \
        [16, 17, 17, 19, 24, 26, 28, 32, 32]
    assert accumulator_width(None) == 32
    for k in range(1, 300):
        w = accumulator_width(k)
        assert 128 * 128 * k <= (1 << (w - 1)) - 1 and -128 * 127 * k >= -(1 << (w - 1))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="k_depth must be a positive int or None"):
            accumulator_width(bad)


@pytest.mark.parametrize("k_depth, width", [(None, 32), (1024, 26), (8, 19), (1, 16)])
def test_systolic_accumulators_as_wide_as_k_depth_needs(k_depth, width):
    """The PEs' accumulators and results are accumulator_width(k_depth) bits; the output
    lanes stay int32."""
    arr = SystolicArray(1, 1, use_dsp=False, k_depth=k_depth)
    text = rtlil.convert(arr)
    assert re.findall(r"wire width (\d+) signed \\acc$", text, re.M) == [str(width)]
    assert Value.cast(arr.o_stream.payload).shape().width == 32 + 1
    with pytest.raises(ValueError, match="k_depth must be"):
        SystolicArray(2, 2, k_depth=0)


def test_systolic_or_tree_stages():
    assert [or_tree_stages(n) for n in (1, 2, 4, 5, 16, 17, 32)] == [0, 1, 1, 2, 2, 3, 3]


# -- array against gemm_acc ------------------------------------------------------------------

@pytest.mark.parametrize("idle, backpressure", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("rows, cols, k_depth", [(2, 2, None), (3, 2, None), (2, 3, 8),
                                                (5, 6, 8)])   # skew / deskew in LUT RAM
def test_systolic_matches_gemm_acc(rows, cols, k_depth, idle, backpressure):
    rng = np.random.default_rng(rows * 100 + cols * 10 + 2 * idle + backpressure)
    # K = 1 and K < rows exercise the tile spacing; the extreme tiles exercise the range:
    # with k_depth 8 (19-bit accumulators) the largest sum, 8 * 128 * 128 = 2**17, and the
    # most negative ones, 8 * -128 * 127, each at K = k_depth.
    tiles = random_operand_tiles(rng, rows, cols, [1, 2, 5, 1, 1, 3, 8, 2])
    tiles.append((np.full((rows, 4), -128, np.int8), np.full((4, cols), -128, np.int8)))
    if k_depth is not None:
        big = np.full((rows, k_depth), -128, np.int8)
        tiles += [(big, np.full((k_depth, cols), -128, np.int8)),
                  (big, np.full((k_depth, cols), 127, np.int8)),
                  (-(big + 1), np.full((k_depth, cols), -128, np.int8))]
    dut = SystolicArray(rows, cols, use_dsp=False, k_depth=k_depth)
    src_rng = np.random.default_rng(1) if idle else None
    snk_rng = np.random.default_rng(2) if backpressure else None
    got = []

    async def producer(ctx):
        for A, W in tiles:
            for k in range(A.shape[1]):
                await stream_put(ctx, dut.i_stream, array_operands(A, W, k), src_rng)

    async def consumer(ctx):
        got.extend(await stream_get(ctx, dut.o_stream, rows * len(tiles), snk_rng))

    run_testbenches(dut, producer, consumer)
    assert len(got) == rows * len(tiles)
    for t, (A, W) in enumerate(tiles):
        raw = got[t * rows:(t + 1) * rows]
        acc = np.array([unpack_lanes(p, cols, 32) for p in raw], dtype=np.int64)
        last = [(p >> (32 * cols)) & 1 for p in raw]
        np.testing.assert_array_equal(acc, gemm_acc(A, W))
        assert last == [0] * (rows - 1) + [1]


def test_systolic_latency_and_full_rate():
    """Back-to-back tiles with K >= rows: one operand per cycle; latency as published."""
    rows, cols = 3, 2
    rng = np.random.default_rng(7)
    tiles = random_operand_tiles(rng, rows, cols, [3, 4, 3, 6])
    dut = SystolicArray(rows, cols, use_dsp=False)
    stalls = []
    handshake_cycle = []
    first_valid_cycle = []
    got = []

    async def producer(ctx):
        cycle = 0
        ctx.set(dut.i_stream.valid, 1)
        for A, W in tiles:
            for k in range(A.shape[1]):
                ctx.set(dut.i_stream.payload, array_operands(A, W, k))
                _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
                if not ready:
                    stalls.append(cycle)
                    await ctx.tick().until(dut.i_stream.ready)
                if cycle == 2:      # the first tile's last operand (K = 3)
                    handshake_cycle.append(cycle)
                cycle += 1
        ctx.set(dut.i_stream.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o_stream.ready, 1)
        cycle = 0
        while len(got) < rows * len(tiles):
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           Value.cast(dut.o_stream.payload))
            if valid:
                if not first_valid_cycle:
                    first_valid_cycle.append(cycle)
                got.append(payload)
            cycle += 1

    run_testbenches(dut, producer, consumer)
    assert stalls == []
    # The handshake of the last operand happens in cycle 2; valid is first seen in cycle 2+L.
    assert first_valid_cycle[0] - handshake_cycle[0] == dut.latency
    for t, (A, W) in enumerate(tiles):
        acc = np.array([unpack_lanes(p, cols, 32) for p in got[t * rows:(t + 1) * rows]])
        np.testing.assert_array_equal(acc, gemm_acc(A, W))


def test_systolic_ready_ignores_payload_and_spaces_short_tiles():
    """K = 1 tiles on a 3-row array: each `last` waits rows - K cycles; `ready` ignores payload."""
    dut = SystolicArray(3, 2, use_dsp=False)
    readies = []

    async def tb(ctx):
        ctx.set(dut.i_stream.valid, 1)
        for cycle in range(9):
            seen = set()
            for last in (0, 1):       # ends with a `last` operand
                ctx.set(dut.i_stream.payload, {"act": [cycle] * 3, "wgt": [1, 2], "last": last})
                seen.add(ctx.get(dut.i_stream.ready))
            assert len(seen) == 1, f"ready follows payload in cycle {cycle}"
            readies.append(seen.pop())
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    # Taken in cycles 0 and 1; the second `last` then waits two cycles (rows - K) in the input
    # register, the third meanwhile in the skid register (taken in cycle 2, `ready` low while
    # it waits), which the input register takes in cycle 4; the fourth arrives in cycle 5.
    assert readies == [1, 1, 1, 0, 0, 1, 0, 0, 1]


def test_systolic_output_buffer_stalls_without_loss():
    """A sink that never reads: the array fills its buffer, then holds everything."""
    rows, cols = 2, 2
    rng = np.random.default_rng(3)
    tiles = random_operand_tiles(rng, rows, cols, [2] * 10)
    dut = SystolicArray(rows, cols, use_dsp=False)
    accepted = []
    got = []

    async def producer(ctx):
        for A, W in tiles:
            for k in range(A.shape[1]):
                await stream_put(ctx, dut.i_stream, array_operands(A, W, k))
                accepted.append(1)

    async def consumer(ctx):
        await ctx.tick().repeat(60)
        # The array stalls once its two-entry output buffer is full: the producer is blocked.
        assert 0 < len(accepted) < 20
        before = len(accepted)
        await ctx.tick().repeat(10)
        assert len(accepted) == before
        assert ctx.get(dut.o_stream.valid)
        got.extend(await stream_get(ctx, dut.o_stream, rows * len(tiles)))

    run_testbenches(dut, producer, consumer)
    for t, (A, W) in enumerate(tiles):
        acc = np.array([unpack_lanes(p, cols, 32) for p in got[t * rows:(t + 1) * rows]])
        np.testing.assert_array_equal(acc, gemm_acc(A, W))


@pytest.mark.parametrize("groups", [1, 3])
def test_output_buffer_keeps_order_under_backpressure(groups):
    """Also with the payload's bits in 3 groups with entry flags of their own (the GEMM
    array's buffer on more than 8 columns)."""
    layout = 8
    dut = OutputBuffer(layout, groups=groups)
    sent, got = [], []
    rng = np.random.default_rng(5)

    async def source(ctx):
        value = 0
        for _ in range(200):
            push = int(rng.random() < 0.7)
            ctx.set(dut.push, push)
            ctx.set(dut.data, value)
            _, _, ce = await ctx.tick().sample(dut.ce)
            if push and ce:
                sent.append(value)
                value += 1
        ctx.set(dut.push, 0)

    async def sink(ctx):
        got.extend(await stream_get(ctx, dut.o_stream, 100, np.random.default_rng(6)))

    run_testbenches(dut, source, sink)
    assert len(sent) > 100
    assert got == sent[:100]


def test_output_buffer_global_ce_only_on_ecp5():
    """``global_ce``: the enable leaves through a ``DCCA`` on an ECP5 platform only; without
    the option, in simulation (no platform) and on iCE40 the register drives ``ce`` itself."""
    from types import SimpleNamespace

    from amaranth.back import rtlil

    def dcca_count(platform, global_ce):
        text = rtlil.convert(OutputBuffer(8, global_ce=global_ce), name="top",
                             platform=platform)
        return text.count("cell \\DCCA ")

    ecp5, ice40 = SimpleNamespace(family="ecp5"), SimpleNamespace(family="ice40")
    assert dcca_count(ecp5, True) == 1
    assert dcca_count(ecp5, False) == dcca_count(ice40, True) == dcca_count(None, True) == 0



@pytest.mark.parametrize("reset_at", [2, 5, 8, 11, 14])
def test_systolic_reset_mid_tile_and_mid_drain(reset_at):
    """A reset (Amaranth's ``ResetInserter``, as the controller's units' reset in simulation)
    ``reset_at`` cycles after a tile's last operand, while it accumulates or while its results
    sit in the PEs' result registers and the column trees: nothing of it comes out after the
    reset, and the tiles after it are exact (the PEs' result registers have no domain reset,
    so what they hold then must not reach the output)."""
    rows, cols = 3, 2
    rng = np.random.default_rng(reset_at)
    arr = SystolicArray(rows, cols, use_dsp=False, k_depth=8)
    clear = Signal()
    top = Module()
    top.submodules.arr = ResetInserter(clear)(arr)
    # Large sums, so that stale accumulators or results would show.
    first = (np.full((rows, 4), -128, np.int8), np.full((4, cols), -128, np.int8))
    tiles = random_operand_tiles(rng, rows, cols, [2, 5, 1, 8, 3])
    reset_cycle = 3 + reset_at
    seen = []                                   # (cycle, payload) of every output transfer

    async def producer(ctx):
        ctx.set(arr.i_stream.valid, 1)
        for k in range(4):
            ctx.set(arr.i_stream.payload, array_operands(*first, k))
            await ctx.tick()
        ctx.set(arr.i_stream.valid, 0)
        await ctx.tick().repeat(reset_at - 1)
        ctx.set(clear, 1)                       # high in cycle `reset_cycle`
        await ctx.tick()
        ctx.set(clear, 0)
        await ctx.tick().repeat(3)
        for A, W in tiles:
            for k in range(A.shape[1]):
                await stream_put(ctx, arr.i_stream, array_operands(A, W, k))

    async def monitor(ctx):
        ctx.set(arr.o_stream.ready, 1)
        for cycle in range(reset_cycle + 40 + 2 * arr.latency):
            _, _, valid, payload = await ctx.tick().sample(arr.o_stream.valid,
                                                           Value.cast(arr.o_stream.payload))
            if valid:
                seen.append((cycle, payload))

    run_testbenches(top, producer, monitor, deadline_us=None)
    after = [payload for cycle, payload in seen if cycle > reset_cycle]
    assert len(after) == rows * len(tiles)
    for t, (A, W) in enumerate(tiles):
        acc = np.array([unpack_lanes(p, cols, 32) for p in after[t * rows:(t + 1) * rows]])
        np.testing.assert_array_equal(acc, gemm_acc(A, W))
