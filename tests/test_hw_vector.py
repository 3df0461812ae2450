# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of :class:`hw.vector.VectorUnit` against ``sw.ref``
(``residual_add``, ``lut_apply``, ``mean_pool_int`` and the int32 pass-through)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_lane_unit_arguments, run_testbenches, stream_get, stream_put, unpack_lanes

from hw.params import preset
from hw.vector import VecOp, VectorUnit
from sim.stimulus import (
    vec_corner_jobs,
    vec_expected,
    vec_job,
    vec_outputs,
    vec_random_job,
    vec_tables,
)
from sw import ref

COLS = 3                  # odd on purpose: lanes are not a power of two
LUT_COUNT = 2



def _simulate(jobs, luts, *, cols=COLS, idle=False, backpressure=False, seed=0,
              dsp_products=False):
    """Load ``luts`` through ``i_lut``, run ``jobs``; return (output beats, lasts)."""
    dut = VectorUnit(cols, lut_count=len(luts), use_dsp=False, dsp_products=dsp_products)
    total = sum(vec_outputs(j) for j in jobs)
    got = []
    rng = np.random.default_rng(seed)
    pause = rng if idle else None
    loaded = []

    async def lut_tb(ctx):
        for t, lut in enumerate(luts):
            for i, v in enumerate(lut.tolist()):
                await stream_put(ctx, dut.i_lut, {"table": t, "index": i, "value": v})
        loaded.append(True)

    async def cfg_tb(ctx):
        while not loaded:
            await ctx.tick()
        for j in jobs:
            await stream_put(ctx, dut.i_cfg, j["cfg"], pause)

    async def data_tb(ctx):
        while not loaded:
            await ctx.tick()
        for j in jobs:
            n = len(j["a"])
            for r in range(n):
                await stream_put(ctx, dut.i_stream, {"a": j["a"][r].tolist(),
                                                     "b": j["b"][r].tolist(),
                                                     "last": int(r == n - 1)}, pause)

    async def sink_tb(ctx):
        got.extend(await stream_get(ctx, dut.o_stream, total, rng if backpressure else None))
        ctx.set(dut.o_stream.ready, 1)
        await ctx.tick().repeat(20)
        assert not ctx.get(dut.o_stream.valid), "an extra output beat appeared"

    run_testbenches(dut, lut_tb, cfg_tb, data_tb, sink_tb, deadline_us=None)
    assert len(got) == total
    data = np.array([unpack_lanes(p, cols, 32) for p in got], dtype=np.int64)
    return data.reshape(-1, cols), [(p >> (32 * cols)) & 1 for p in got]


def _check(jobs, luts, **kw):
    got, lasts = _simulate(jobs, luts, **kw)
    want = np.concatenate([vec_expected(j, luts) for j in jobs])
    np.testing.assert_array_equal(got, want)
    want_last = []
    for j in jobs:
        n = vec_outputs(j)
        want_last += [int(r == n - 1) for r in range(n)]
    assert lasts == want_last
    return len(want)


@pytest.mark.parametrize("dsp_products", [False, True], ids=["lut_products", "dsp_products"])
def test_vector_corners(dsp_products):
    """Corners, with the residual products of either kind (``dsp_products``: the portable
    ``make_multiplier`` path in simulation, a ``MULT18X18D`` on ECP5)."""
    rng = np.random.default_rng(1)
    luts = vec_tables(rng, LUT_COUNT)
    jobs = vec_corner_jobs(COLS, LUT_COUNT)
    assert _check(jobs, luts, dsp_products=dsp_products) == 6 + 4 + 1 + 2 * 86
    # The corners really reach what they claim (guards against an edited table).
    want = [vec_expected(j, luts) for j in jobs]
    assert want[0].min() == 127 and want[1].max() == -128
    assert want[2][0].tolist() == [1, 0, 2]                    # 0.5 -> 1, -0.5 -> 0, 1.5 -> 2
    assert want[3][0].tolist() == [2, -1, 2]                   # 1.5 -> 2, -1.5 -> -1
    assert want[5].tolist() == [[-128] * COLS] and want[6].tolist() == [[127] * COLS]


@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, False), (False, True),
                                                (True, True)],
                         ids=["plain", "idle", "backpressure", "idle+backpressure"])
def test_vector_random_jobs(idle, backpressure):
    rng = np.random.default_rng(10 + 2 * idle + backpressure)
    luts = vec_tables(rng, LUT_COUNT)
    jobs = [vec_random_job(rng, COLS, LUT_COUNT, max_beats=5) for _ in range(150)]
    n = _check(jobs, luts, idle=idle, backpressure=backpressure, seed=int(rng.integers(1000)),
               dsp_products=idle and backpressure)
    assert {j["cfg"]["op"] for j in jobs} == set(VecOp)
    assert n >= 150


def test_vector_latency_and_full_rate():
    """Back-to-back jobs of every op at one beat per cycle once the first configuration is in
    (the first beat, offered with it, waits one cycle; later jobs' configurations come in with
    the last beat before them); outputs `latency` cycles after their inputs (a POOL job's output
    after its last beat)."""
    cols = 2
    dut = VectorUnit(cols, lut_count=1, use_dsp=False)
    jobs = [vec_job(VecOp.ADD, [[1, 2], [3, 4]], [[5, 6], [7, 8]], mult0=16384, mult1=16384,
                 shift=15),
            vec_job(VecOp.POOL, [[1, 2], [3, 4], [5, 6]], mult0=16384, shift=15),
            vec_job(VecOp.LUT, [[-1, 0]]),
            vec_job(VecOp.PASS, [[1 << 20, -(1 << 30)], [7, -7]])]
    beats = [(j, r) for j in jobs for r in range(len(j["a"]))]
    ready_seen, out_cycles, got = [], [], []

    async def cfg_tb(ctx):
        for j in jobs:
            ctx.set(dut.i_cfg.valid, 1)
            ctx.set(dut.i_cfg.payload, j["cfg"])
            await ctx.tick().until(dut.i_cfg.ready)
        ctx.set(dut.i_cfg.valid, 0)

    async def data_tb(ctx):
        ctx.set(dut.i_stream.valid, 1)
        for j, r in beats:
            ctx.set(dut.i_stream.payload, {"a": j["a"][r].tolist(), "b": j["b"][r].tolist(),
                                           "last": int(r == len(j["a"]) - 1)})
            _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
            ready_seen.append(ready)
            while not ready:
                _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
        ctx.set(dut.i_stream.valid, 0)

    async def sink_tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for cycle in range(len(beats) + dut.latency + 3):
            _, _, valid, p = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
            if valid:
                out_cycles.append(cycle)
                got.append([p.data[c] for c in range(cols)])

    run_testbenches(dut, cfg_tb, data_tb, sink_tb, deadline_us=None)
    assert ready_seen == [0] + [1] * (len(beats) - 1)   # then no bubble, also across jobs
    lut = np.zeros(256, np.int8)
    want = np.concatenate([vec_expected(j, [lut]) for j in jobs])
    np.testing.assert_array_equal(np.array(got), want)
    # ADD beats 0, 1; POOL after beat 4; LUT beat 5; PASS beats 6, 7 (taken from cycle 1 on).
    assert out_cycles == [dut.latency + 1 + i for i in (0, 1, 4, 5, 6, 7)]
    assert dut.latency == 11


def test_vector_lut_rewrite_between_jobs():
    """A table rewritten after a job applies to the next job's beats only."""
    rng = np.random.default_rng(3)
    old = rng.integers(-128, 128, 256).astype(np.int8)
    new = rng.integers(-128, 128, 256).astype(np.int8)
    cols = 2
    dut = VectorUnit(cols, lut_count=1, use_dsp=False)
    xs = np.arange(-128, 128).reshape(-1, cols)[::9]
    got = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)

        async def load(lut):
            ctx.set(dut.i_lut.valid, 1)
            for i, v in enumerate(lut.tolist()):
                ctx.set(dut.i_lut.payload, {"table": 0, "index": i, "value": v})
                await ctx.tick()
            ctx.set(dut.i_lut.valid, 0)

        async def run():
            ctx.set(dut.i_cfg.valid, 1)
            ctx.set(dut.i_cfg.payload, {"op": VecOp.LUT, "table": 0})
            ctx.set(dut.i_stream.valid, 1)
            for r, x in enumerate(xs):
                ctx.set(dut.i_stream.payload, {"a": x.tolist(), "b": [0] * cols,
                                               "last": int(r == len(xs) - 1)})
                ready = 0
                while not ready:
                    _, _, ready, v, p = await ctx.tick().sample(
                        dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
                    ctx.set(dut.i_cfg.valid, 0)
                    if v:
                        got.append([p.data[c] for c in range(cols)])
            ctx.set(dut.i_stream.valid, 0)
            for _ in range(dut.latency + 2):
                _, _, v, p = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
                if v:
                    got.append([p.data[c] for c in range(cols)])

        await load(old)
        await run()
        await load(new)
        await run()

    run_testbenches(dut, tb, deadline_us=None)
    want = np.concatenate([ref.lut_apply(xs.astype(np.int8), old),
                           ref.lut_apply(xs.astype(np.int8), new)])
    np.testing.assert_array_equal(np.array(got), want)


def test_vector_lut_write_waits_for_data_beat():
    dut = VectorUnit(1, lut_count=1, use_dsp=False)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_cfg.valid, 1)
        ctx.set(dut.i_cfg.payload, {"op": VecOp.PASS})
        await ctx.tick()                        # the job's configuration first
        ctx.set(dut.i_cfg.valid, 0)
        ctx.set(dut.i_lut.valid, 1)
        ctx.set(dut.i_stream.payload, {"a": [5], "b": [0], "last": 1})
        ctx.set(dut.i_stream.valid, 1)
        seen.append((ctx.get(dut.i_stream.ready), ctx.get(dut.i_lut.ready)))
        await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        seen.append((ctx.get(dut.i_stream.ready), ctx.get(dut.i_lut.ready)))

    run_testbenches(dut, tb, deadline_us=None)
    # The beat is taken, the table write waits; then the job is over (no configuration: no
    # beat is ready) and the write goes in.
    assert seen == [(1, 0), (0, 1)]


def test_vector_from_params_and_checks():
    p = preset("tiny")
    u = VectorUnit.from_params(p)
    assert (u.cols, u.lut_count, u.use_dsp) == (p.cols, p.lut_count, p.dsp_multipliers)
    assert u.dsp_products is p.vec_dsp_products is False
    assert VectorUnit.from_params(preset("ulx3s_85f")).dsp_products is False
    assert VectorUnit.from_params(preset("tiny").replace(vec_dsp_products=True)).dsp_products
    assert set(VectorUnit.params_fields) <= set(p.to_dict())
    check_lane_unit_arguments(VectorUnit)
    with pytest.raises(ValueError, match="lut_count must be"):
        VectorUnit(2, lut_count=65)


def test_vector_ecp5_primitives():
    """On ECP5 two MULT18X18D per lane (the requant lane's 32 x 15 product), the int8 residual
    products in LUTs (no ``$mul``, which synth_ecp5 would map to DSPs too), and each lane's
    tables in one DP16KD."""
    from amaranth.back import rtlil

    text = rtlil.convert(VectorUnit(4, lut_count=8, family="ecp5"), name="top")
    assert text.count("cell \\MULT18X18D") == 2 * 4
    assert text.count("cell $mul ") == 0
    assert text.count("cell \\DP16KD") == 4
    text = rtlil.convert(VectorUnit(2, lut_count=8, use_dsp=False, family="ecp5"), name="top")
    assert text.count("cell \\MULT18X18D") == 0
    assert text.count("cell $mul ") == 2 * 2             # the requant lanes' portable products
    # dsp_products: the two residual products of each lane take a MULT18X18D each.
    text = rtlil.convert(VectorUnit(4, lut_count=8, dsp_products=True, family="ecp5"),
                         name="top")
    assert text.count("cell \\MULT18X18D") == 4 * 4
    assert text.count("cell $mul ") == 0
