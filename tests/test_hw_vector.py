# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of :class:`hw.vector.VectorUnit` against ``sw.ref``
(``residual_add``, ``lut_apply``, ``mean_pool_int`` and the int32 pass-through)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.params import preset
from hw.vector import VecOp, VectorUnit
from sw import quant, ref

COLS = 3                  # odd on purpose: lanes are not a power of two
LUT_COUNT = 2
MULT_MAX = (1 << quant.MULT_BITS) - 1


def _job(op, beats_a, beats_b=None, *, table=0, mult0=0, mult1=0, shift=1):
    a = np.asarray(beats_a, dtype=np.int64)
    b = np.zeros_like(a) if beats_b is None else np.asarray(beats_b, dtype=np.int64)
    return {"cfg": {"op": op, "table": table, "mult0": mult0, "mult1": mult1, "shift": shift},
            "a": a, "b": b}


def _expected(job, luts) -> np.ndarray:
    """The job's output beats (int64, (n, cols)) from ``sw.ref``."""
    c = job["cfg"]
    a, b = job["a"], job["b"]
    if c["op"] == VecOp.ADD:
        return ref.residual_add(a.astype(np.int8), b.astype(np.int8),
                                np.array([c["mult0"], c["mult1"]]), c["shift"]).astype(np.int64)
    if c["op"] == VecOp.LUT:
        return ref.lut_apply(a.astype(np.int8), luts[c["table"]]).astype(np.int64)
    if c["op"] == VecOp.POOL:
        return ref.mean_pool_int(a.astype(np.int8), c["mult0"], c["shift"])[None].astype(np.int64)
    return a.copy()


def _simulate(jobs, luts, *, cols=COLS, idle=False, backpressure=False, seed=0):
    """Load ``luts`` through ``i_lut``, run ``jobs``; return (output beats, lasts)."""
    dut = VectorUnit(cols, lut_count=len(luts), use_dsp=False)
    total = sum(1 if j["cfg"]["op"] == VecOp.POOL else len(j["a"]) for j in jobs)
    got, lasts = [], []
    rng = np.random.default_rng(seed)
    loaded = []

    async def put(ctx, s, payload):
        if idle and rng.random() < 0.4:
            ctx.set(s.valid, 0)
            await ctx.tick().repeat(int(rng.integers(1, 4)))
        ctx.set(s.valid, 1)
        ctx.set(s.payload, payload)
        await ctx.tick().until(s.ready)
        ctx.set(s.valid, 0)

    async def lut_tb(ctx):
        ctx.set(dut.i_lut.valid, 1)
        for t, lut in enumerate(luts):
            for i, v in enumerate(lut.tolist()):
                ctx.set(dut.i_lut.payload, {"table": t, "index": i, "value": v})
                await ctx.tick().until(dut.i_lut.ready)
        ctx.set(dut.i_lut.valid, 0)
        loaded.append(True)

    async def cfg_tb(ctx):
        while not loaded:
            await ctx.tick()
        for j in jobs:
            await put(ctx, dut.i_cfg, j["cfg"])

    async def data_tb(ctx):
        while not loaded:
            await ctx.tick()
        for j in jobs:
            n = len(j["a"])
            for r in range(n):
                await put(ctx, dut.i_stream, {"a": j["a"][r].tolist(), "b": j["b"][r].tolist(),
                                              "last": int(r == n - 1)})

    async def sink_tb(ctx):
        while len(got) < total:
            ready = int(rng.random() < 0.5) if backpressure else 1
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           dut.o_stream.payload)
            if valid and ready:
                got.append([payload.data[c] for c in range(cols)])
                lasts.append(payload.last)
        await ctx.tick().repeat(20)
        assert not ctx.get(dut.o_stream.valid), "an extra output beat appeared"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(lut_tb)
    sim.add_testbench(cfg_tb)
    sim.add_testbench(data_tb)
    sim.add_testbench(sink_tb)
    sim.run()
    assert len(got) == total
    return np.array(got, dtype=np.int64).reshape(-1, cols), lasts


def _check(jobs, luts, **kw):
    got, lasts = _simulate(jobs, luts, **kw)
    want = np.concatenate([_expected(j, luts) for j in jobs])
    np.testing.assert_array_equal(got, want)
    want_last = []
    for j in jobs:
        n = 1 if j["cfg"]["op"] == VecOp.POOL else len(j["a"])
        want_last += [int(r == n - 1) for r in range(n)]
    assert lasts == want_last
    return len(want)


def _luts(rng, count=LUT_COUNT):
    luts = [rng.integers(-128, 128, ref.LUT_SIZE).astype(np.int8) for _ in range(count)]
    luts[0] = ref.build_gelu_lut(0.05, 0.04)                  # a real table as well
    return luts


def _random_job(rng, cols):
    op = VecOp(int(rng.integers(0, 4)))
    n = int(rng.integers(1, 6))
    if op == VecOp.PASS:
        a = rng.integers(quant.ACC_MIN, quant.ACC_MAX, (n, cols), endpoint=True)
        return _job(op, a)
    a = rng.integers(-128, 128, (n, cols))
    if op == VecOp.ADD:
        mult, shift = ref.residual_params(*2.0 ** rng.uniform(-4, 2, 3))
        if rng.random() < 0.3:                                  # raw corner pairs
            mult = rng.choice([0, 1, MULT_MAX], 2)
            shift = int(rng.choice([1, 15, 24, 47]))
        return _job(op, a, rng.integers(-128, 128, (n, cols)), mult0=int(mult[0]),
                    mult1=int(mult[1]), shift=int(shift))
    if op == VecOp.LUT:
        return _job(op, a, table=int(rng.integers(0, LUT_COUNT)))
    mult, shift = quant.quantize_multiplier(2.0 ** rng.uniform(-4, 1) / n)
    return _job(op, a, mult0=mult, shift=shift)


def _corner_jobs():
    """Corner jobs for ``COLS == 3`` lanes."""
    full = np.full
    every_x = np.arange(-128, 130).clip(max=127).reshape(-1, 3)      # all 256 int8 values
    return [
        # Residual: both saturations, -128 + -128, ties (x.5 -> toward +inf) both signs.
        _job(VecOp.ADD, full((1, 3), 127), full((1, 3), 127), mult0=MULT_MAX, mult1=MULT_MAX,
             shift=1),
        _job(VecOp.ADD, full((1, 3), -128), full((1, 3), -128), mult0=MULT_MAX,
             mult1=MULT_MAX, shift=1),
        _job(VecOp.ADD, [[1, -1, 3]], [[0, 0, -6]], mult0=1, mult1=1, shift=1),
        _job(VecOp.ADD, [[-128, 127, 5]], [[127, -128, -5]], mult0=16384, mult1=16384,
             shift=15),
        _job(VecOp.ADD, full((2, 3), -128), full((2, 3), 127), mult0=MULT_MAX, mult1=MULT_MAX,
             shift=47),
        # Every LUT address, in both tables.
        _job(VecOp.LUT, every_x, table=0),
        _job(VecOp.LUT, every_x, table=LUT_COUNT - 1),
        # Pool: T rows of -128 and of 127 with a unit mean, saturation, a tie, T = 1.
        _job(VecOp.POOL, full((7, 3), -128), mult0=18725, shift=17),
        _job(VecOp.POOL, full((7, 3), 127), mult0=MULT_MAX, shift=1),
        _job(VecOp.POOL, [[1, -1, 3]], mult0=1, shift=1),
        _job(VecOp.POOL, full((1, 3), -128), mult0=MULT_MAX, shift=47),
        # Pass: int32 extremes.
        _job(VecOp.PASS, [[quant.ACC_MIN, quant.ACC_MAX, -1]]),
    ]


def test_vector_corners():
    rng = np.random.default_rng(1)
    luts = _luts(rng)
    jobs = _corner_jobs()
    assert _check(jobs, luts) == 6 + 2 * 86 + 4 + 1
    # The corners really reach what they claim (guards against an edited table).
    want = [_expected(j, luts) for j in jobs]
    assert want[0].min() == 127 and want[1].max() == -128
    assert want[2][0].tolist() == [1, 0, -1]                   # 0.5 -> 1, -0.5 -> 0, -1.5 -> -1
    assert want[7].tolist() == [[-128] * COLS] and want[8].tolist() == [[127] * COLS]


@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, False), (False, True),
                                                (True, True)],
                         ids=["plain", "idle", "backpressure", "idle+backpressure"])
def test_vector_random_jobs(idle, backpressure):
    rng = np.random.default_rng(10 + 2 * idle + backpressure)
    luts = _luts(rng)
    jobs = [_random_job(rng, COLS) for _ in range(150)]
    n = _check(jobs, luts, idle=idle, backpressure=backpressure, seed=int(rng.integers(1000)))
    assert {j["cfg"]["op"] for j in jobs} == set(VecOp)
    assert n >= 150


def test_vector_latency_and_full_rate():
    """Back-to-back jobs of every op at one beat per cycle; outputs `latency` cycles after
    their inputs (a POOL job's output after its last beat)."""
    cols = 2
    dut = VectorUnit(cols, lut_count=1, use_dsp=False)
    jobs = [_job(VecOp.ADD, [[1, 2], [3, 4]], [[5, 6], [7, 8]], mult0=16384, mult1=16384,
                 shift=15),
            _job(VecOp.POOL, [[1, 2], [3, 4], [5, 6]], mult0=16384, shift=15),
            _job(VecOp.LUT, [[-1, 0]]),
            _job(VecOp.PASS, [[1 << 20, -(1 << 30)], [7, -7]])]
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
        ctx.set(dut.i_stream.valid, 0)

    async def sink_tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for cycle in range(len(beats) + dut.latency + 3):
            _, _, valid, p = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
            if valid:
                out_cycles.append(cycle)
                got.append([p.data[c] for c in range(cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(cfg_tb)
    sim.add_testbench(data_tb)
    sim.add_testbench(sink_tb)
    sim.run()
    assert ready_seen == [1] * len(beats)               # no bubble, also across jobs
    lut = np.zeros(256, np.int8)
    want = np.concatenate([_expected(j, [lut]) for j in jobs])
    np.testing.assert_array_equal(np.array(got), want)
    # ADD beats 0, 1; POOL after beat 4; LUT beat 5; PASS beats 6, 7.
    assert out_cycles == [dut.latency + i for i in (0, 1, 4, 5, 6, 7)]
    assert dut.latency == 10


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
                _, _, v, p = await ctx.tick().sample(dut.o_stream.valid, dut.o_stream.payload)
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

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    want = np.concatenate([ref.lut_apply(xs.astype(np.int8), old),
                           ref.lut_apply(xs.astype(np.int8), new)])
    np.testing.assert_array_equal(np.array(got), want)


def test_vector_lut_write_waits_for_data_beat():
    dut = VectorUnit(1, lut_count=1, use_dsp=False)
    seen = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_lut.valid, 1)
        ctx.set(dut.i_cfg.valid, 1)
        ctx.set(dut.i_cfg.payload, {"op": VecOp.PASS})
        ctx.set(dut.i_stream.payload, {"a": [5], "b": [0], "last": 1})
        ctx.set(dut.i_stream.valid, 1)
        seen.append((ctx.get(dut.i_stream.ready), ctx.get(dut.i_lut.ready)))
        await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        seen.append((ctx.get(dut.i_stream.ready), ctx.get(dut.i_lut.ready)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert seen == [(1, 0), (1, 1)]


def test_vector_from_params_and_checks():
    p = preset("tiny")
    u = VectorUnit.from_params(p)
    assert (u.cols, u.lut_count, u.use_dsp) == (p.cols, p.lut_count, p.dsp_multipliers)
    assert set(VectorUnit.params_fields) <= set(p.to_dict())
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        VectorUnit.from_params(4)
    for bad, exc in ((0, ValueError), (33, ValueError), ("4", TypeError), (True, TypeError)):
        with pytest.raises(exc, match="cols must be"):
            VectorUnit(bad)
    with pytest.raises(ValueError, match="lut_count must be"):
        VectorUnit(2, lut_count=65)
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        VectorUnit(2, use_dsp=1)
