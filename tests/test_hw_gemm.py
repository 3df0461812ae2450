# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of hw.gemm.GemmPipeline: the array and the requantizer together,
bit for bit against sw.ref.gemm_requant."""

from __future__ import annotations

import helpers
import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Value

from hw.gemm import GemmPipeline
from hw.params import AccelParams
from hw.requant import Requantizer
from hw.systolic import SystolicArray
from sw.ref import gemm_requant


@pytest.mark.parametrize("rows, cols, exc", [
    (0, 2, ValueError), (2, 33, ValueError), ("2", 2, TypeError), (True, 2, TypeError),
])
def test_gemm_pipeline_rejects_bad_geometry(rows, cols, exc):
    with pytest.raises(exc, match="must be"):
        GemmPipeline(rows, cols)


def test_gemm_pipeline_from_params():
    gemm = GemmPipeline.from_params(AccelParams(rows=3, cols=5, dsp_multipliers=False))
    assert (gemm.rows, gemm.cols, gemm.use_dsp) == (3, 5, False)
    assert gemm.array_latency == SystolicArray(3, 5).latency
    assert gemm.latency == gemm.array_latency + Requantizer(5).latency
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        GemmPipeline.from_params("tiny")


@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, True)],
                         ids=["plain", "idle+backpressure"])
def test_gemm_pipeline_matches_gemm_requant(idle, backpressure):
    rows, cols = 3, 2
    rng = np.random.default_rng(11 + idle)
    tiles = []
    for K in [1, 4, 3, 2, 6]:
        A, W = helpers.random_operand_tiles(rng, rows, cols, [K])[0]
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
                operand = helpers.array_operands(A, W, k)
                await helpers.stream_put(ctx, dut.i_stream, operand, src_rng)

    async def quant(ctx):
        qrng = np.random.default_rng(3) if idle else None
        for _, _, bias, mult, shift in tiles:
            await helpers.stream_put(ctx, dut.i_quant, {"bias": [int(x) for x in bias],
                                                        "mult": [int(x) for x in mult],
                                                        "shift": [int(x) for x in shift]}, qrng)

    async def consumer(ctx):
        got.extend(await helpers.stream_get(ctx, dut.o_stream, rows * len(tiles), snk_rng))

    helpers.run_testbenches(dut, operands, quant, consumer)
    assert len(got) == rows * len(tiles)
    for t, (A, W, bias, mult, shift) in enumerate(tiles):
        raw = got[t * rows:(t + 1) * rows]
        y = np.array([helpers.unpack_lanes(p, cols) for p in raw], dtype=np.int8)
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
