# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of :class:`hw.layernorm.LayerNorm` against
``sw.ref.layernorm_int``."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.layernorm import LayerNorm, layernorm_pre_shift
from hw.params import preset
from sw import quant, ref

COLS = 3                  # odd on purpose: rows rarely fill their final beat
MAX_DIM = 40


def _job(x, gamma, beta, mult, shift, eps):
    x = np.asarray(x, dtype=np.int8)
    d = x.shape[1]
    return {"x": x, "gamma": np.asarray(gamma, np.int8), "beta": np.asarray(beta, np.int32),
            "mult": np.broadcast_to(np.asarray(mult, np.int64), (d,)),
            "shift": np.broadcast_to(np.asarray(shift, np.int64), (d,)), "eps": int(eps)}


def _expected(job) -> np.ndarray:
    return ref.layernorm_int(job["x"], job["gamma"], job["beta"], job["mult"], job["shift"],
                             job["eps"]).astype(np.int64)


def _random_job(rng, d, rows):
    style = rng.random()
    if style < 0.6:
        x = rng.integers(-128, 128, (rows, d))
    elif style < 0.8:                                   # small spread around an offset
        x = np.clip(rng.integers(-3, 4, (rows, d)) + rng.integers(-120, 120), -128, 127)
    else:                                               # mostly constant with outliers
        x = np.full((rows, d), int(rng.integers(-128, 128)))
        x[rng.random((rows, d)) < 0.1] = rng.choice([-128, 127])
    gamma = rng.integers(-128, 128, d)
    beta = rng.integers(-(1 << 20), 1 << 20, d)
    pairs = [quant.quantize_multiplier(2.0 ** rng.uniform(-16, -4)) for _ in range(d)]
    eps = rng.choice([0, 1, int(rng.integers(0, d ** 4 << 16, endpoint=True)),
                      ref.layernorm_eps_q(d, 1e-5, 0.05)])
    return _job(x, gamma, beta, [p[0] for p in pairs], [p[1] for p in pairs], eps)


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

    async def put(ctx, s, payload):
        if idle and rng.random() < 0.3:
            ctx.set(s.valid, 0)
            await ctx.tick().repeat(int(rng.integers(1, 4)))
        ctx.set(s.valid, 1)
        ctx.set(s.payload, payload)
        await ctx.tick().until(s.ready)
        ctx.set(s.valid, 0)

    async def cfg_tb(ctx):
        for j in jobs:
            await put(ctx, dut.i_cfg, {"dim": j["x"].shape[1], "eps": j["eps"]})

    async def data_tb(ctx):
        for b, j in zip(beats, jobs):
            for r, row in enumerate(j["x"]):
                xs = pad(row.astype(np.int64), b, noise=True)
                for i in range(b):
                    end = r == j["x"].shape[0] - 1 and i == b - 1
                    await put(ctx, dut.i_stream, {"x": xs[i].tolist(), "last": int(end)})

    async def param_tb(ctx):
        for b, j in zip(beats, jobs):
            cols_p = {f: pad(j[f].astype(np.int64), b) for f in ("gamma", "beta", "mult",
                                                                  "shift")}
            cols_p["shift"][cols_p["shift"] == 0] = 1
            for _ in range(j["x"].shape[0]):
                for i in range(b):
                    await put(ctx, dut.i_param, {f: v[i].tolist() for f, v in cols_p.items()})

    async def sink_tb(ctx):
        while len(got) < total:
            ready = int(rng.random() < 0.5) if backpressure else 1
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           dut.o_stream.payload)
            if valid and ready:
                got.append([payload.data[c] for c in range(cols)])
                lasts.append(payload.last)
        await ctx.tick().repeat(30)
        assert not ctx.get(dut.o_stream.valid), "an extra output beat appeared"

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in (cfg_tb, data_tb, param_tb, sink_tb):
        sim.add_testbench(tb)
    sim.run()
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
        np.testing.assert_array_equal(got, _expected(j))
        rows += j["x"].shape[0]
    want_last = []
    for b, j in zip(beats, jobs):
        n = b * j["x"].shape[0]
        want_last += [int(i == n - 1) for i in range(n)]
    assert lasts == want_last
    return rows


def _corner_jobs(d_max):
    ones = np.ones
    big = (1 << 15) - 1
    jobs = [
        # d = 1: c = 0, so y = requantize(beta).
        _job([[5], [-128]], [7], [-300], 1 << 14, 15, 0),
        # Constant rows with eps 0 (S = 0: r = max(isqrt(0), 1) = 1).
        _job(np.full((2, 7), -128), ones(7) * 3, np.arange(7) * 1000, 1 << 14, 20, 0),
        # Extreme spread, both polarities of the outlier, maximum d.
        _job([[127] + [-128] * (d_max - 1), [-128] + [127] * (d_max - 1)],
             np.full(d_max, 127), np.zeros(d_max), big, 12, 0),
        _job([[127] * (d_max // 2) + [-128] * (d_max - d_max // 2)], np.full(d_max, -128),
             np.full(d_max, (1 << 31) - (1 << 23)), 1 << 14, 24, 1),
        # Largest epsilon (d**4 * 2**16) and saturation both ways.
        _job([[1, -1, 2, -2, 3]], [127, -128, 127, -128, 1], [0] * 5, big, 1, 5 ** 4 << 16),
        _job([[100, -100, 50, 0, 1]], [127, -128, 127, -128, 1], [0] * 5, big, 1, 0),
        # Ties in the final requant: acc odd, mult 1, shift 1.
        _job([[3, -3, 0, 0]], [0, 0, 0, 0], [1, -1, 3, -3], 1, 1, 0),
    ]
    return jobs


def test_layernorm_pre_shift_matches_reference_for_every_width():
    for d in range(1, ref.LN_MAX_DIM + 1):
        assert layernorm_pre_shift(d) == ref.layernorm_pre_shift(d)


def test_layernorm_corners():
    jobs = _corner_jobs(MAX_DIM)
    assert _check(jobs) == 10
    want = [_expected(j) for j in jobs]
    assert want[4].max() == 127 or want[5].max() == 127
    assert want[5].min() == -128
    assert want[6][0].tolist() == [1, 0, 2, -1]                # ties toward +infinity


@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, False), (False, True),
                                                (True, True)],
                         ids=["plain", "idle", "backpressure", "idle+backpressure"])
def test_layernorm_random_rows(idle, backpressure):
    rng = np.random.default_rng(20 + 2 * idle + backpressure)
    jobs = [_random_job(rng, int(rng.integers(1, MAX_DIM + 1)), int(rng.integers(1, 4)))
            for _ in range(14)]
    rows = _check(jobs, idle=idle, backpressure=backpressure, seed=int(rng.integers(1000)))
    assert rows == sum(j["x"].shape[0] for j in jobs) >= 14


def test_layernorm_maximum_width():
    """d = LN_MAX_DIM (1024) with the unit's full-size row buffer and engine."""
    rng = np.random.default_rng(5)
    d = ref.LN_MAX_DIM
    jobs = [_random_job(rng, d, 1),
            _job([[127] + [-128] * (d - 1)], np.full(d, 127), np.zeros(d), (1 << 15) - 1, 13,
                 0)]
    assert _check(jobs, cols=8, max_dim=d) == 2


def test_layernorm_latency_and_row_cycles():
    cols, max_dim, d = 2, 16, 5
    dut = LayerNorm(cols, max_dim=max_dim, use_dsp=False)
    rng = np.random.default_rng(2)
    job = _random_job(rng, d, 3)
    beats = -(-d // cols)
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
        for cycle in range(3 * dut.row_cycles(d) + dut.latency):
            r, i = divmod(n_in, beats)
            row = np.zeros(beats * cols, np.int64)
            if r < 3:
                row[:d] = job["x"][r]
            ctx.set(dut.i_stream.payload, {"x": row.reshape(beats, cols)[i % beats].tolist(),
                                           "last": int(n_in == 3 * beats - 1)})
            _, _, ready, valid = await ctx.tick().sample(dut.i_stream.ready, dut.o_stream.valid)
            ctx.set(dut.i_cfg.valid, 0)
            if ready and n_in < 3 * beats:
                in_cycles.append(cycle)
                n_in += 1
                if n_in == 3 * beats:
                    ctx.set(dut.i_stream.valid, 0)
            if valid:
                out_cycles.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert len(in_cycles) == len(out_cycles) == 3 * beats
    starts = in_cycles[::beats]
    assert [b - a for a, b in zip(starts, starts[1:])] == [dut.row_cycles(d)] * 2
    firsts = out_cycles[::beats]
    assert [f - in_cycles[(r + 1) * beats - 1] for r, f in enumerate(firsts)] == \
        [dut.latency] * 3
    assert dut.latency == 1 + dut.scalar_cycles + dut.pipeline_latency
    assert LayerNorm(4).latency == 194


def test_layernorm_from_params_and_checks():
    p = preset("tiny")
    u = LayerNorm.from_params(p)
    assert (u.cols, u.max_dim, u.use_dsp) == (p.cols, ref.LN_MAX_DIM, p.dsp_multipliers)
    assert set(LayerNorm.params_fields) <= set(p.to_dict())
    assert LayerNorm.from_params(p, max_dim=64).max_dim == 64
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        LayerNorm.from_params(4)
    for bad, exc in ((0, ValueError), (33, ValueError), ("4", TypeError), (None, TypeError)):
        with pytest.raises(exc, match="cols must be"):
            LayerNorm(bad)
    with pytest.raises(ValueError, match="max_dim must be"):
        LayerNorm(2, max_dim=1025)
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        LayerNorm(2, use_dsp=0)
