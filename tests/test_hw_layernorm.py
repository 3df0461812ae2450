# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of :class:`hw.layernorm.LayerNorm` against
``sw.ref.layernorm_int``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import check_lane_unit_arguments, run_testbenches, stream_get, stream_put, unpack_lanes

from hw import numerics
from hw.layernorm import LayerNorm
from hw.params import preset
from sim.stimulus import ln_corner_jobs, ln_expected, ln_job, ln_random_job
from sw import ref

COLS = 3                  # odd on purpose: rows rarely fill their final beat
MAX_DIM = 40



def _simulate(jobs, *, cols=COLS, max_dim=MAX_DIM, idle=False, backpressure=False, seed=0,
              garbage=True):
    """Run ``jobs``; return the output rows (trimmed to ``d``) per job and the ``last`` flags."""
    dut = LayerNorm(cols, max_dim=max_dim, use_dsp=False)
    rng = np.random.default_rng(seed)
    beats = [-(-j["x"].shape[1] // cols) for j in jobs]
    total = sum(b * j["x"].shape[0] for b, j in zip(beats, jobs))
    got, lasts = [], []

    def pad(v, b, noise=False):
        """``v`` in ``b`` beats; lanes past its end zero, or random int8 with ``noise``."""
        out = np.zeros(b * cols, dtype=np.int64)
        out[:v.shape[0]] = v
        if garbage and noise:
            out[v.shape[0]:] = rng.integers(-128, 128, b * cols - v.shape[0])
        return out.reshape(b, cols)

    pause = rng if idle else None

    async def cfg_tb(ctx):
        for j in jobs:
            await stream_put(ctx, dut.i_cfg, {"dim": j["x"].shape[1], "eps": j["eps"]}, pause)

    async def data_tb(ctx):
        for b, j in zip(beats, jobs):
            for r, row in enumerate(j["x"]):
                xs = pad(row.astype(np.int64), b, noise=True)
                for i in range(b):
                    end = r == j["x"].shape[0] - 1 and i == b - 1
                    await stream_put(ctx, dut.i_stream, {"x": xs[i].tolist(), "last": int(end)},
                                     pause)

    async def param_tb(ctx):
        for b, j in zip(beats, jobs):
            cols_p = {f: pad(j[f].astype(np.int64), b) for f in ("gamma", "beta", "mult",
                                                                  "shift")}
            cols_p["shift"][cols_p["shift"] == 0] = 1
            for _ in range(j["x"].shape[0]):
                for i in range(b):
                    await stream_put(ctx, dut.i_param,
                                     {f: v[i].tolist() for f, v in cols_p.items()}, pause)

    async def sink_tb(ctx):
        raw = await stream_get(ctx, dut.o_stream, total, rng if backpressure else None)
        got.extend(unpack_lanes(p, cols) for p in raw)
        lasts.extend((p >> (8 * cols)) & 1 for p in raw)
        ctx.set(dut.o_stream.ready, 1)
        await ctx.tick().repeat(30)
        assert not ctx.get(dut.o_stream.valid), "an extra output beat appeared"

    run_testbenches(dut, cfg_tb, data_tb, param_tb, sink_tb, deadline_us=None)
    assert len(got) == total
    out, pos = [], 0
    for b, j in zip(beats, jobs):
        t, d = j["x"].shape
        block = np.array(got[pos:pos + t * b], dtype=np.int64).reshape(t, b * cols)[:, :d]
        out.append(block)
        pos += t * b
    return out, lasts, beats


def _check(jobs, **kw):
    out, lasts, beats = _simulate(jobs, **kw)
    rows = 0
    for got, j in zip(out, jobs):
        np.testing.assert_array_equal(got, ln_expected(j))
        rows += j["x"].shape[0]
    want_last = []
    for b, j in zip(beats, jobs):
        n = b * j["x"].shape[0]
        want_last += [int(i == n - 1) for i in range(n)]
    assert lasts == want_last
    return rows


def test_layernorm_pre_shift_one_definition_and_bound():
    """One definition (hw.numerics) for the unit and sw.ref; the pre-shifted variance term
    ``(d * S + eps_q) << 2k <= d**4 * 2**17 << 2k`` stays within 61 bits for every width."""
    assert ref.layernorm_pre_shift is numerics.layernorm_pre_shift
    k = [numerics.layernorm_pre_shift(d) for d in range(1, ref.LN_MAX_DIM + 1)]
    assert (k[0], k[-1]) == (21, 1)
    assert all((d ** 4 << 17) << (2 * kd) <= 1 << 61 for d, kd in enumerate(k, 1))
    assert all(a >= b for a, b in zip(k, k[1:], strict=False))       # falls with d


def test_layernorm_corners():
    jobs = ln_corner_jobs(MAX_DIM)
    assert _check(jobs) == 14
    want = [ln_expected(j) for j in jobs]
    assert want[7].max() == 127 and want[7].min() == -128      # saturation both ways
    assert want[8][0].tolist() == [1, 0, 2, -1]                # ties toward +infinity


@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, False), (False, True),
                                                (True, True)],
                         ids=["plain", "idle", "backpressure", "idle+backpressure"])
def test_layernorm_random_rows(idle, backpressure):
    rng = np.random.default_rng(20 + 2 * idle + backpressure)
    jobs = [ln_random_job(rng, int(rng.integers(1, MAX_DIM + 1)), int(rng.integers(1, 4)))
            for _ in range(14)]
    rows = _check(jobs, idle=idle, backpressure=backpressure, seed=int(rng.integers(1000)))
    assert rows == sum(j["x"].shape[0] for j in jobs) >= 14


def test_layernorm_maximum_width():
    """d = LN_MAX_DIM (1024) with the unit's full-size row buffer and engine."""
    rng = np.random.default_rng(5)
    d = ref.LN_MAX_DIM
    jobs = [ln_random_job(rng, d, 1),
            ln_job([[127] + [-128] * (d - 1)], np.full(d, 127), np.zeros(d), (1 << 15) - 1, 13,
                 0)]
    assert _check(jobs, cols=8, max_dim=d) == 2


@pytest.mark.parametrize("engines", [1, 2, 3])
def test_layernorm_latency_and_row_cycles(engines):
    """At full rate: the first row's first output ``latency`` cycles after its final beat (the
    others no sooner), the next rows load at once, and the engines take turns: each ``E``
    rows' first outputs ``E * row_cycles`` apart."""
    cols, max_dim, d, n_rows = 2, 16, 5, 7
    dut = LayerNorm(cols, max_dim=max_dim, use_dsp=False, engines=engines)
    rng = np.random.default_rng(2)
    job = ln_random_job(rng, d, n_rows)
    beats = -(-d // cols)
    n_beats = n_rows * beats
    in_cycles, out_cycles = [], []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_cfg.valid, 1)
        ctx.set(dut.i_cfg.payload, {"dim": d, "eps": job["eps"]})
        ctx.set(dut.i_param.valid, 1)
        ctx.set(dut.i_param.payload, {"gamma": [1] * cols, "beta": [0] * cols,
                                      "mult": [1] * cols, "shift": [1] * cols})
        ctx.set(dut.i_stream.valid, 1)
        n_in = 0
        for cycle in range(int(n_rows * dut.row_cycles(d)) + 2 * dut.latency):
            r, i = divmod(n_in, beats)
            row = np.zeros(beats * cols, np.int64)
            if r < n_rows:
                row[:d] = job["x"][r]
            ctx.set(dut.i_stream.payload, {"x": row.reshape(beats, cols)[i % beats].tolist(),
                                           "last": int(n_in == n_beats - 1)})
            _, _, ready, valid = await ctx.tick().sample(dut.i_stream.ready, dut.o_stream.valid)
            ctx.set(dut.i_cfg.valid, 0)
            if ready and n_in < n_beats:
                in_cycles.append(cycle)
                n_in += 1
                if n_in == n_beats:
                    ctx.set(dut.i_stream.valid, 0)
            if valid:
                out_cycles.append(cycle)

    run_testbenches(dut, tb, deadline_us=None)
    assert len(in_cycles) == len(out_cycles) == n_beats
    starts = in_cycles[::beats]
    assert [b - a for a, b in zip(starts, starts[1:engines])] == [beats] * (engines - 1)
    firsts = out_cycles[::beats]
    waits = [f - in_cycles[(r + 1) * beats - 1] for r, f in enumerate(firsts)]
    assert waits[0] == dut.latency and min(waits) == dut.latency
    if engines < 3:                       # 3 engines: the output (beats + 1 a row) binds
        period = [b - a for a, b in zip(firsts, firsts[engines:])]
        assert period == [engines * dut.row_cycles(d)] * (n_rows - engines)
    assert dut.row_cycles(d) == (dut.scalar_cycles - 1) / engines
    assert dut.latency == 1 + dut.scalar_cycles + dut.pipeline_latency
    assert LayerNorm(4).latency == 155          # 151 before SUB_DV, SIGN; 153 before the
    #                                             two-cycle PRESHIFT; 154 before the requant
    #                                             lane's fabric copy of its products


def test_layernorm_from_params_and_checks():
    p = preset("tiny")
    u = LayerNorm.from_params(p)
    assert (u.cols, u.max_dim, u.use_dsp) == (p.cols, ref.LN_MAX_DIM, p.dsp_multipliers)
    assert set(LayerNorm.params_fields) <= set(p.to_dict())
    assert LayerNorm.from_params(p, max_dim=64).max_dim == 64
    check_lane_unit_arguments(LayerNorm)
    with pytest.raises(ValueError, match="max_dim must be"):
        LayerNorm(2, max_dim=1025)


def test_layernorm_ecp5_primitives():
    """On ECP5: two MULT18X18D per lane (the requant lane's 32 x 15 product); the square, the
    four x * G chunks and n * gamma in LUTs (no ``$mul``, which synth_ecp5 would map to DSPs
    too); the row buffer in DP16KD (32-bit words of 4 lanes: two 18-bit slices)."""
    from amaranth.back import rtlil

    text = rtlil.convert(LayerNorm(4, family="ecp5"), name="top")
    assert text.count("cell \\MULT18X18D") == 2 * 4
    assert text.count("cell $mul ") == 0
    assert text.count("cell \\DP16KD") == 2


def test_layernorm_long_stall_keeps_row_constants():
    """The sink stalls from the start: the output buffer fills while the first row's last
    beats are still in the early stages (16 beats, the pipeline is 17 deep); the next rows
    load and run their scalar phase meanwhile, and each row's constants follow its elements
    down the pipeline."""
    cols, d = 2, 32
    dut = LayerNorm(cols, max_dim=d, use_dsp=False)
    rng = np.random.default_rng(8)
    # Row means far apart (the constant H of each row differs by thousands of n's LSBs).
    x = np.array([[off] for off in (-100, 100, -90, 90)]) + rng.integers(-3, 4, (4, d))
    job = ln_job(x, rng.integers(-64, 65, d), 0, 1 << 14, 22, 1)
    beats = -(-d // cols)
    got = []

    def lanes(v):
        out = np.zeros(beats * cols, np.int64)
        out[:d] = v
        return out.reshape(beats, cols)

    async def src_tb(ctx):
        await stream_put(ctx, dut.i_cfg, {"dim": d, "eps": job["eps"]})
        for r, row in enumerate(job["x"]):
            for i, x in enumerate(lanes(row)):
                await stream_put(ctx, dut.i_stream, {"x": x.tolist(),
                                                     "last": int(r == 3 and i == beats - 1)})

    async def param_tb(ctx):
        prm = {f: lanes(job[f]) for f in ("gamma", "beta", "mult", "shift")}
        prm["shift"][prm["shift"] == 0] = 1
        for _ in range(4):
            for i in range(beats):
                await stream_put(ctx, dut.i_param, {f: v[i].tolist() for f, v in prm.items()})

    async def sink_tb(ctx):
        ctx.set(dut.o_stream.ready, 0)
        await ctx.tick().repeat(int(dut.row_cycles(d)) + dut.latency + 300)
        got.extend(unpack_lanes(p, cols) for p in await stream_get(ctx, dut.o_stream,
                                                                    4 * beats))

    run_testbenches(dut, src_tb, param_tb, sink_tb, deadline_us=None)
    out = np.array(got, np.int64).reshape(4, beats * cols)[:, :d]
    np.testing.assert_array_equal(out, ln_expected(job))
