# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of :class:`hw.layernorm_tokens.TokenLayerNorm` against
``sw.ref.layernorm_int``: rows in blocks of ``rows`` lanes, one channel a beat."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import run_testbenches, stream_get, stream_put, unpack_lanes

from hw.layernorm_tokens import TokenLayerNorm
from hw.params import preset
from sim.stimulus import ln_corner_jobs, ln_expected, ln_random_job

ROWS = 3                  # lanes: blocks of 3 tokens, so most jobs end in a ragged block
MAX_DIM = 40


def _simulate(jobs, *, rows=ROWS, max_dim=MAX_DIM, engines=None, pipelines=None, idle=False,
              backpressure=False, seed=0):
    """Run ``jobs``; return each job's output rows ``(t, d)`` and the ``last`` flags."""
    dut = TokenLayerNorm(rows, max_dim=max_dim, engines=engines, pipelines=pipelines,
                         use_dsp=False)
    rng = np.random.default_rng(seed)
    blocks = [-(-j["x"].shape[0] // rows) for j in jobs]
    total = sum(b * j["x"].shape[1] for b, j in zip(blocks, jobs))
    got, lasts = [], []
    pause = rng if idle else None

    def lanes_of(j, b):
        """Block ``b`` of job ``j`` as ``(d, rows)``: tokens past the job's rows random."""
        t, d = j["x"].shape
        out = rng.integers(-128, 128, (rows, d))
        part = j["x"][b * rows:(b + 1) * rows]
        out[:part.shape[0]] = part
        return out.T

    async def cfg_tb(ctx):
        for j in jobs:
            await stream_put(ctx, dut.i_cfg, {"dim": j["x"].shape[1], "eps": j["eps"]}, pause)

    async def data_tb(ctx):
        for n, j in zip(blocks, jobs):
            d = j["x"].shape[1]
            for b in range(n):
                for c, beat in enumerate(lanes_of(j, b)):
                    end = b == n - 1 and c == d - 1
                    await stream_put(ctx, dut.i_stream, {"x": beat.tolist(), "last": int(end)},
                                     pause)

    async def param_tb(ctx):
        for n, j in zip(blocks, jobs):
            shift = np.where(j["shift"] == 0, 1, j["shift"])
            for _ in range(n):
                for c in range(j["x"].shape[1]):
                    await stream_put(ctx, dut.i_param, {
                        "gamma": int(j["gamma"][c]), "beta": int(j["beta"][c]),
                        "mult": int(j["mult"][c]), "shift": int(shift[c])}, pause)

    async def sink_tb(ctx):
        raw = await stream_get(ctx, dut.o_stream, total, rng if backpressure else None)
        got.extend(unpack_lanes(p, rows) for p in raw)
        lasts.extend((p >> (8 * rows)) & 1 for p in raw)
        ctx.set(dut.o_stream.ready, 1)
        await ctx.tick().repeat(30)
        assert not ctx.get(dut.o_stream.valid), "an extra output beat appeared"

    run_testbenches(dut, cfg_tb, data_tb, param_tb, sink_tb, deadline_us=None)
    assert len(got) == total
    out, pos = [], 0
    for n, j in zip(blocks, jobs):
        t, d = j["x"].shape
        beats = np.array(got[pos:pos + n * d], dtype=np.int64).reshape(n, d, rows)
        out.append(beats.transpose(0, 2, 1).reshape(n * rows, d)[:t])
        pos += n * d
    return out, lasts, blocks


def _check(jobs, **kw):
    out, lasts, blocks = _simulate(jobs, **kw)
    rows = 0
    for got, j in zip(out, jobs):
        np.testing.assert_array_equal(got, ln_expected(j))
        rows += j["x"].shape[0]
    want_last = []
    for n, j in zip(blocks, jobs):
        beats = n * j["x"].shape[1]
        want_last += [int(i == beats - 1) for i in range(beats)]
    assert lasts == want_last
    return rows


def test_token_layernorm_corners():
    jobs = ln_corner_jobs(MAX_DIM)
    assert _check(jobs) == sum(j["x"].shape[0] for j in jobs) >= 10


@pytest.mark.parametrize("idle, backpressure, engines", [
    (False, False, None), (True, False, 1), (False, True, 2), (True, True, 3)])
def test_token_layernorm_random_rows(idle, backpressure, engines):
    rng = np.random.default_rng(11 + 2 * idle + backpressure)
    jobs = [ln_random_job(rng, int(rng.integers(1, MAX_DIM + 1)), int(rng.integers(1, 8)))
            for _ in range(8)]
    rows = _check(jobs, idle=idle, backpressure=backpressure, engines=engines, seed=3)
    assert rows == sum(j["x"].shape[0] for j in jobs) >= 8


@pytest.mark.parametrize("rows, pipelines, idle, backpressure", [
    (3, 1, False, False), (4, 2, True, False), (4, 1, False, True), (4, 2, True, True)])
def test_token_layernorm_shared_pipelines(rows, pipelines, idle, backpressure):
    """Fewer element pipelines than lanes (each lane in its phase of a beat): bit-exact, corner
    rows included, under idle inputs and output backpressure."""
    rng = np.random.default_rng(40 + 4 * rows + pipelines + 2 * idle + backpressure)
    jobs = ln_corner_jobs(MAX_DIM)[:4] + [
        ln_random_job(rng, int(rng.integers(1, MAX_DIM + 1)), int(rng.integers(1, 10)))
        for _ in range(6)]
    n = _check(jobs, rows=rows, pipelines=pipelines, idle=idle, backpressure=backpressure,
               seed=5)
    assert n == sum(j["x"].shape[0] for j in jobs) >= 10


def test_token_layernorm_pipelines_checked():
    assert TokenLayerNorm(8, pipelines=0).pipelines == 8
    assert TokenLayerNorm(8, pipelines=2).phases == 4
    with pytest.raises(ValueError, match="must divide the lanes"):
        TokenLayerNorm(8, pipelines=3)
    with pytest.raises(ValueError):
        TokenLayerNorm(4, pipelines=5)


@pytest.mark.parametrize("engines, pipelines, d", [(2, None, 8), (2, 1, 8), (4, 1, 40)])
def test_token_layernorm_block_rate(engines, pipelines, d):
    """A long job at full rate: blocks leave ``block_cycles`` apart: the engines bind (also
    with one pipeline shared by the four lanes), or the shared pipeline's ``4 d`` output
    cycles do and the next block's row constants go in without waiting for it to drain."""
    rows, n_blocks = 4, 5
    dut = TokenLayerNorm(rows, max_dim=64, engines=engines, pipelines=pipelines,
                         use_dsp=False)
    if (engines, d) == (4, 40):
        assert dut.block_cycles(d) == 4 * d + 7 > dut.scalar_cycles - 1
    starts = []

    async def tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_param.valid, 1)
        ctx.set(dut.i_param.payload, {"gamma": 1, "beta": 0, "mult": 1, "shift": 1})
        await stream_put(ctx, dut.i_cfg, {"dim": d, "eps": 1})
        ctx.set(dut.i_stream.valid, 1)
        n_in, n_out = 0, 0
        for cycle in range(int((n_blocks + 2) * dut.block_cycles(d))):
            ctx.set(dut.i_stream.payload, {"x": [n_in % 7 - 3] * rows,
                                           "last": int(n_in == n_blocks * d - 1)})
            _, _, ready, valid = await ctx.tick().sample(dut.i_stream.ready, dut.o_stream.valid)
            if ready and n_in < n_blocks * d:
                n_in += 1
                if n_in == n_blocks * d:
                    ctx.set(dut.i_stream.valid, 0)
            if valid:
                if n_out % d == 0:
                    starts.append(cycle)
                n_out += 1

    run_testbenches(dut, tb, deadline_us=None)
    assert len(starts) == n_blocks
    assert [b - a for a, b in zip(starts[1:], starts[2:])] == [dut.block_cycles(d)] * 3


def test_token_layernorm_from_params():
    p = preset("ulx3s_85f")
    u = TokenLayerNorm.from_params(p)
    assert (u.rows, u.engines, u.use_dsp) == (8, 4, p.dsp_multipliers)
    assert u.pipelines == p.ln_pipeline_count and u.phases == 8 // u.pipelines
    assert u.scalar_cycles == 136
    # 2 pipelines: a block's 4 d output cycles stay under the engines' 270 up to d = 64
    assert u.block_cycles(64) == u.block_cycles(32) == 2 * 135
    assert u.block_cycles(128) == 128 * u.phases + 7


def test_token_layernorm_ecp5_primitives():
    """On ECP5: two MULT18X18D per lane (the requant lane), every int8 product in LUTs, and
    the block buffer (three blocks of 1024 words of 8 lanes) in 16 DP16KD."""
    from amaranth.back import rtlil

    text = rtlil.convert(TokenLayerNorm(8, family="ecp5"), name="top")
    assert text.count("cell \\MULT18X18D") == 2 * 8
    shared = rtlil.convert(TokenLayerNorm(8, pipelines=2, family="ecp5"), name="top")
    assert shared.count("cell \\MULT18X18D") == 2 * 2
    assert text.count("cell $mul ") == 0
    assert text.count("cell \\DP16KD") == 16      # 3 slots of 1024 words, in 4096
