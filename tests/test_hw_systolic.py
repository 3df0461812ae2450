# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of hw.systolic.SystolicArray and hw.gemm.GemmPipeline.

Every result is compared bit for bit with sw.ref.gemm_acc / sw.ref.gemm_requant. Streams run in
the four variants (idle cycles on the source x backpressure on the sink).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Value
from amaranth.sim import Simulator

from hw.gemm import GemmPipeline
from hw.params import AccelParams, preset
from hw.requant import Requantizer
from hw.systolic import OutputBuffer, SystolicArray, or_tree_stages
from sw.ref import gemm_acc, gemm_requant

VARIANTS = [(False, False), (True, False), (False, True), (True, True)]
VARIANT_IDS = ["plain", "idle", "backpressure", "idle+backpressure"]


# -- stream helpers --------------------------------------------------------------------------

def _lanes(bits: int, offset: int, width: int, count: int) -> list[int]:
    """Decode ``count`` signed ``width``-bit lanes starting at bit ``offset`` of ``bits``."""
    out = []
    for i in range(count):
        v = (bits >> (offset + i * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


def _operands(A: np.ndarray, W: np.ndarray, k: int) -> dict:
    K = A.shape[1]
    return {"act": [int(x) for x in A[:, k]], "wgt": [int(x) for x in W[k]],
            "last": int(k == K - 1)}


async def _put(ctx, s, payload, rng=None):
    """Offer one payload; optionally idle 0..2 cycles before it (valid low)."""
    if rng is not None and rng.random() < 0.4:
        ctx.set(s.valid, 0)
        for _ in range(int(rng.integers(1, 3))):
            await ctx.tick()
    ctx.set(s.valid, 1)
    ctx.set(s.payload, payload)
    await ctx.tick().until(s.ready)
    ctx.set(s.valid, 0)


async def _get_all(ctx, s, count, rng=None):
    """Collect ``count`` raw payloads; with ``rng``, ready is high 60 % of the cycles."""
    out = []
    while len(out) < count:
        ready = 1 if rng is None else int(rng.random() < 0.6)
        ctx.set(s.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(s.valid, Value.cast(s.payload))
        if valid and ready:
            out.append(payload)
    ctx.set(s.ready, 0)
    return out


def _run(dut, *testbenches, deadline_us=2000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run_until(deadline_us * 1e-6)


def _random_tiles(rng, rows, cols, ks):
    return [(rng.integers(-128, 128, (rows, K), dtype=np.int8),
             rng.integers(-128, 128, (K, cols), dtype=np.int8)) for K in ks]


# -- parameters --------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, cols, exc", [
    (0, 2, ValueError), (2, 0, ValueError), (33, 2, ValueError), (2, 33, ValueError),
    ("2", 2, TypeError), (2, 2.0, TypeError), (True, 2, TypeError),
])
def test_systolic_rejects_bad_geometry(rows, cols, exc):
    with pytest.raises(exc, match="must be"):
        SystolicArray(rows, cols)
    with pytest.raises(exc, match="must be"):
        GemmPipeline(rows, cols)


def test_systolic_rejects_bad_flags():
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        SystolicArray(2, 2, use_dsp=1)
    with pytest.raises(TypeError, match="family must be"):
        SystolicArray(2, 2, family=5)
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        SystolicArray.from_params({"rows": 2})
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        GemmPipeline.from_params("tiny")


def test_systolic_from_params():
    p = preset("tiny")
    arr = SystolicArray.from_params(p)
    assert (arr.rows, arr.cols, arr.use_dsp) == (p.rows, p.cols, p.dsp_multipliers)
    gemm = GemmPipeline.from_params(AccelParams(rows=3, cols=5, dsp_multipliers=False))
    assert (gemm.rows, gemm.cols, gemm.use_dsp) == (3, 5, False)
    assert gemm.array_latency == SystolicArray(3, 5).latency
    assert gemm.latency == gemm.array_latency + Requantizer(5).latency


def test_systolic_or_tree_stages():
    assert [or_tree_stages(n) for n in (1, 2, 4, 5, 16, 17, 32)] == [0, 1, 1, 2, 2, 3, 3]


# -- array against gemm_acc ------------------------------------------------------------------

@pytest.mark.parametrize("idle, backpressure", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("rows, cols", [(2, 2), (3, 2)])
def test_systolic_matches_gemm_acc(rows, cols, idle, backpressure):
    rng = np.random.default_rng(rows * 100 + cols * 10 + 2 * idle + backpressure)
    # K = 1 and K < rows exercise the tile spacing; the extreme tile exercises the range.
    tiles = _random_tiles(rng, rows, cols, [1, 2, 5, 1, 1, 3, 8, 2])
    tiles.append((np.full((rows, 4), -128, np.int8), np.full((4, cols), -128, np.int8)))
    dut = SystolicArray(rows, cols, use_dsp=False)
    src_rng = np.random.default_rng(1) if idle else None
    snk_rng = np.random.default_rng(2) if backpressure else None
    got = []

    async def producer(ctx):
        for A, W in tiles:
            for k in range(A.shape[1]):
                await _put(ctx, dut.i_stream, _operands(A, W, k), src_rng)

    async def consumer(ctx):
        got.extend(await _get_all(ctx, dut.o_stream, rows * len(tiles), snk_rng))

    _run(dut, producer, consumer)
    assert len(got) == rows * len(tiles)
    for t, (A, W) in enumerate(tiles):
        raw = got[t * rows:(t + 1) * rows]
        acc = np.array([_lanes(p, 0, 32, cols) for p in raw], dtype=np.int64)
        last = [(p >> (32 * cols)) & 1 for p in raw]
        np.testing.assert_array_equal(acc, gemm_acc(A, W))
        assert last == [0] * (rows - 1) + [1]


def test_systolic_latency_and_full_rate():
    """Back-to-back tiles with K >= rows: one operand per cycle; latency as published."""
    rows, cols = 3, 2
    rng = np.random.default_rng(7)
    tiles = _random_tiles(rng, rows, cols, [3, 4, 3, 6])
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
                ctx.set(dut.i_stream.payload, _operands(A, W, k))
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

    _run(dut, producer, consumer)
    assert stalls == []
    # The handshake of the last operand happens in cycle 2; valid is first seen in cycle 2+L.
    assert first_valid_cycle[0] - handshake_cycle[0] == dut.latency
    for t, (A, W) in enumerate(tiles):
        acc = np.array([_lanes(p, 0, 32, cols) for p in got[t * rows:(t + 1) * rows]])
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
    # Taken in cycle 0 and 1; the second `last` then waits two cycles (rows - K), and so on.
    assert readies == [1, 1, 0, 0, 1, 0, 0, 1, 0]


def test_systolic_output_buffer_stalls_without_loss():
    """A sink that never reads: the array fills its buffer, then holds everything."""
    rows, cols = 2, 2
    rng = np.random.default_rng(3)
    tiles = _random_tiles(rng, rows, cols, [2] * 10)
    dut = SystolicArray(rows, cols, use_dsp=False)
    accepted = []
    got = []

    async def producer(ctx):
        for A, W in tiles:
            for k in range(A.shape[1]):
                await _put(ctx, dut.i_stream, _operands(A, W, k))
                accepted.append(1)

    async def consumer(ctx):
        await ctx.tick().repeat(60)
        # The array stalls once its two-entry output buffer is full: the producer is blocked.
        assert 0 < len(accepted) < 20
        before = len(accepted)
        await ctx.tick().repeat(10)
        assert len(accepted) == before
        assert ctx.get(dut.o_stream.valid)
        got.extend(await _get_all(ctx, dut.o_stream, rows * len(tiles)))

    _run(dut, producer, consumer)
    for t, (A, W) in enumerate(tiles):
        acc = np.array([_lanes(p, 0, 32, cols) for p in got[t * rows:(t + 1) * rows]])
        np.testing.assert_array_equal(acc, gemm_acc(A, W))


def test_output_buffer_keeps_order_under_backpressure():
    layout = 8
    dut = OutputBuffer(layout)
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
        got.extend(await _get_all(ctx, dut.o_stream, 100, np.random.default_rng(6)))

    _run(dut, source, sink)
    assert len(sent) > 100
    assert got == sent[:100]


# -- GemmPipeline against gemm_requant -------------------------------------------------------

@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, True)],
                         ids=["plain", "idle+backpressure"])
def test_gemm_pipeline_matches_gemm_requant(idle, backpressure):
    rows, cols = 3, 2
    rng = np.random.default_rng(11 + idle)
    tiles = []
    for K in [1, 4, 3, 2, 6]:
        A, W = _random_tiles(rng, rows, cols, [K])[0]
        bias = rng.integers(-20000, 20000, cols).astype(np.int32)
        mult = rng.integers(0, 1 << 15, cols)
        shift = rng.integers(8, 24, cols)
        tiles.append((A, W, bias, mult, shift))
    dut = GemmPipeline(rows, cols, use_dsp=False)
    src_rng = np.random.default_rng(1) if idle else None
    snk_rng = np.random.default_rng(2) if backpressure else None
    got = []

    async def operands(ctx):
        for A, W, *_ in tiles:
            for k in range(A.shape[1]):
                await _put(ctx, dut.i_stream, _operands(A, W, k), src_rng)

    async def quant(ctx):
        qrng = np.random.default_rng(3) if idle else None
        for _, _, bias, mult, shift in tiles:
            await _put(ctx, dut.i_quant, {"bias": [int(x) for x in bias],
                                          "mult": [int(x) for x in mult],
                                          "shift": [int(x) for x in shift]}, qrng)

    async def consumer(ctx):
        got.extend(await _get_all(ctx, dut.o_stream, rows * len(tiles), snk_rng))

    _run(dut, operands, quant, consumer)
    assert len(got) == rows * len(tiles)
    for t, (A, W, bias, mult, shift) in enumerate(tiles):
        raw = got[t * rows:(t + 1) * rows]
        y = np.array([_lanes(p, 0, 8, cols) for p in raw], dtype=np.int8)
        np.testing.assert_array_equal(y, gemm_requant(A, W, bias, mult, shift))
        assert [(p >> (8 * cols)) & 1 for p in raw] == [0] * (rows - 1) + [1]


def test_gemm_pipeline_verilog_ports():
    text = verilog.convert(GemmPipeline(2, 2, use_dsp=False), name="gemm", emit_src=False)
    for port in ("i_stream__payload", "i_stream__valid", "i_stream__ready", "i_quant__payload",
                 "i_quant__valid", "i_quant__ready", "o_stream__payload", "o_stream__valid",
                 "o_stream__ready", "clk", "rst"):
        assert f" {port};" in text, port
    assert "MULT18X18D" not in text
    # Payload widths: 2+2 int8 operands + last; 2 x (int32 bias, u15 mult, u6 shift); 2 int8 + last.
    assert "input [32:0] i_stream__payload;" in text
    assert "input [105:0] i_quant__payload;" in text
    assert "output [16:0] o_stream__payload;" in text
    assert Value.cast(GemmPipeline(2, 2).o_stream.payload).shape().width == 17
