# SPDX-License-Identifier: Apache-2.0
"""``hw.gemm_core.GemmCore`` in amaranth.sim: load tiles through the write port, run, compare the
result rows with ``sw.ref.gemm_requant`` bit for bit."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest
from amaranth.hdl import Fragment, UnusedElaboratable
from amaranth.sim import Simulator
from helpers import pack_lanes

from hw.gemm_core import QUANT_LAYOUT, GemmCore
from sw.ref import gemm_requant


def _pack_quant(bias: int, mult: int, shift: int) -> int:
    return QUANT_LAYOUT.const({"bias": int(bias), "mult": int(mult), "shift": int(shift)}).as_bits()


def _random_tile(rng, rows, cols, k):
    a = rng.integers(-128, 128, size=(rows, k), dtype=np.int8)
    w = rng.integers(-127, 128, size=(k, cols), dtype=np.int8)
    bias = rng.integers(-5000, 5000, size=cols, dtype=np.int32)
    mult = rng.integers(1 << 14, 1 << 15, size=cols)
    shift = rng.integers(12, 22, size=cols)
    return a, w, bias, mult, shift


def run_core(core: GemmCore, tiles, *, backpressure: bool = False, seed: int = 0,
             max_cycles: int = 20_000, parallel: bool = False):
    """Write each tile into alternating banks, run them, return the received (rows, cols) tiles.
    ``parallel``: write A word ``k``, W word ``k`` and quant word ``k`` in the same cycle, on
    the three write ports (as the controller does)."""
    rng = np.random.default_rng(seed)
    results: list[np.ndarray] = []
    rows, cols = core.rows, core.cols

    async def writer(ctx):
        async def write(sel, bank, addr, word):
            b = sel.value
            for port, value in ((core.wr_en, 1), (core.wr_bank, bank), (core.wr_addr, addr),
                                (core.wr_data, word)):
                ctx.set(port[b], value)
            await ctx.tick()
            ctx.set(core.wr_en[b], 0)

        async def write_all(bank, words):
            for sel, addr, word in words:
                b = sel.value
                for port, value in ((core.wr_en, 1), (core.wr_bank, bank), (core.wr_addr, addr),
                                    (core.wr_data, word)):
                    ctx.set(port[b], value)
            await ctx.tick()
            for b in range(3):
                ctx.set(core.wr_en[b], 0)

        for t, (a, w, bias, mult, shift) in enumerate(tiles):
            bank = t % 2
            if parallel:
                for kk in range(max(a.shape[1], cols)):
                    words = []
                    if kk < a.shape[1]:
                        words += [(GemmCore.Buffer.ACT, kk, pack_lanes(a[:, kk])),
                                  (GemmCore.Buffer.WGT, kk, pack_lanes(w[kk, :]))]
                    if kk < cols:
                        words.append((GemmCore.Buffer.QUANT, kk,
                                      _pack_quant(bias[kk], mult[kk], shift[kk])))
                    await write_all(bank, words)
            for kk in range(a.shape[1] if not parallel else 0):
                await write(GemmCore.Buffer.ACT, bank, kk, pack_lanes(a[:, kk]))
                await write(GemmCore.Buffer.WGT, bank, kk, pack_lanes(w[kk, :]))
            for c in range(cols if not parallel else 0):
                await write(GemmCore.Buffer.QUANT, bank, c, _pack_quant(bias[c], mult[c], shift[c]))
            while ctx.get(core.busy):
                await ctx.tick()
            ctx.set(core.start, 1)
            ctx.set(core.bank, bank)
            ctx.set(core.k_len, a.shape[1])
            await ctx.tick()
            ctx.set(core.start, 0)
            # busy rises the cycle after start. The next tile is written into the other bank
            # while this one runs (double buffering); a bank is reused only after the tile
            # before it has dropped busy (the wait above).
            assert ctx.get(core.busy)

    async def reader(ctx):
        for _ in tiles:
            tile = []
            while True:
                ready = 1 if not backpressure else int(rng.integers(0, 2))
                ctx.set(core.o_stream.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(core.o_stream.valid,
                                                               core.o_stream.payload)
                if valid and ready:
                    tile.append([int(payload.data[c]) for c in range(cols)])
                    if payload.last:
                        break
                    assert len(tile) < rows, "more than rows result rows without last"
            results.append(np.array(tile, dtype=np.int8))
        ctx.set(core.o_stream.ready, 0)

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(writer)
    sim.add_testbench(reader)
    sim.run_until(max_cycles * 1e-6)
    return results


@pytest.mark.parametrize("parallel", [False, True], ids=["one-port", "three-ports"])
@pytest.mark.parametrize("backpressure", [False, True], ids=["no-bp", "bp"])
def test_gemm_core_matches_reference(backpressure, parallel):
    rng = np.random.default_rng(7)
    core = GemmCore(2, 3, k_depth=16)
    tiles = [_random_tile(rng, 2, 3, k) for k in (5, 1, 16)]
    got = run_core(core, tiles, backpressure=backpressure, seed=1, parallel=parallel)
    assert len(got) == len(tiles)
    for (a, w, bias, mult, shift), out in zip(tiles, got):
        np.testing.assert_array_equal(out, gemm_requant(a, w, bias, mult, shift))


@pytest.mark.parametrize("requant_lanes", [1, 2])
@pytest.mark.parametrize("backpressure", [False, True], ids=["no-bp", "bp"])
def test_gemm_core_with_fewer_requant_lanes(requant_lanes, backpressure):
    """The controller's pipeline (``GemmAccPipeline``) with its requantizer on fewer lanes
    than columns (a row in 3 or 2 phases, the rows waiting in the FIFO in front of it):
    the same tiles, short ones (K = 1, 2) that the requantizer binds among them."""
    from hw.gemm_unit import GemmAccPipeline

    rng = np.random.default_rng(13 + requant_lanes)
    pipe = GemmAccPipeline(2, 3, k_depth=16, requant_lanes=requant_lanes)
    core = GemmCore(2, 3, k_depth=16, pipeline=pipe)
    tiles = [_random_tile(rng, 2, 3, k) for k in (1, 2, 16, 1, 9)]
    got = run_core(core, tiles, backpressure=backpressure, seed=5)
    assert len(got) == len(tiles) == 5
    for (a, w, bias, mult, shift), out in zip(tiles, got):
        np.testing.assert_array_equal(out, gemm_requant(a, w, bias, mult, shift))


@pytest.mark.parametrize("backpressure", [False, True], ids=["no-bp", "bp"])
def test_gemm_core_with_flag_copies_per_column_group(backpressure):
    """18 columns: the array's output buffer, its rows slice, the requantizer's row FIFOs and
    its ``q_loaded`` keep a copy of their flags per 8 columns or part (3 copies,
    ``hw.skid.column_groups``), as on the ``ulx3s_85f_8x18`` top; with 3 requantizer lanes, as
    there. Tiles of K = 1 (a row that meets its parameters in the same cycle), 2 and 16
    (k_depth 32: the parameter buffer holds a word per column)."""
    from amaranth.back import rtlil

    from hw.gemm_unit import GemmAccPipeline
    from hw.skid import column_groups

    assert column_groups(18) == 3 and column_groups(8) == 1
    rng = np.random.default_rng(29)
    pipe = GemmAccPipeline(2, 18, k_depth=32, requant_lanes=3)
    core = GemmCore(2, 18, k_depth=32, pipeline=pipe)
    text = rtlil.convert(GemmAccPipeline(2, 18, k_depth=32, requant_lanes=3), name="pipe")
    for copy in ("q_loaded2", "skid_valid2", "head_valid2", "requant_rows2"):
        assert copy in text, f"no {copy}: the copies were not built"
    tiles = [_random_tile(rng, 2, 18, k) for k in (1, 2, 16, 1)]
    got = run_core(core, tiles, backpressure=backpressure, seed=6)
    assert len(got) == len(tiles) == 4
    for (a, w, bias, mult, shift), out in zip(tiles, got):
        np.testing.assert_array_equal(out, gemm_requant(a, w, bias, mult, shift))


@pytest.mark.parametrize("lut_columns", [1, 3])
def test_gemm_core_with_lut_columns_matches_reference(lut_columns):
    """A mixed array (the last ``lut_columns`` columns on fabric multipliers) computes the same
    tiles, corners included (-128 x 127 products, full K, saturation)."""
    rng = np.random.default_rng(11)
    core = GemmCore(2, 3, k_depth=16, lut_columns=lut_columns)
    tiles = [_random_tile(rng, 2, 3, k) for k in (7, 16, 1)]
    a, w, bias, mult, shift = _random_tile(rng, 2, 3, 16)
    a[:] = -128
    w[:, 0], w[:, 1], w[:, 2] = 127, -127, -128
    tiles.append((a, w, bias, mult, shift))
    got = run_core(core, tiles, backpressure=True, seed=3)
    assert len(got) == len(tiles) == 4
    for (a, w, bias, mult, shift), out in zip(tiles, got):
        np.testing.assert_array_equal(out, gemm_requant(a, w, bias, mult, shift))


def test_gemm_core_saturates_and_uses_full_k():
    rows, cols, k = 2, 2, 16
    a = np.full((rows, k), -128, dtype=np.int8)
    w = np.full((k, cols), 127, dtype=np.int8)
    w[:, 1] = -127
    bias = np.array([0, 0], dtype=np.int32)
    mult = np.array([1 << 14, (1 << 15) - 1])
    shift = np.array([1, 47])
    core = GemmCore(rows, cols, k_depth=k)
    (out,) = run_core(core, [(a, w, bias, mult, shift)])
    expect = gemm_requant(a, w, bias, mult, shift)
    assert expect[0, 0] == -128  # saturated
    np.testing.assert_array_equal(out, expect)


def test_gemm_core_from_params():
    from hw.params import preset
    core = GemmCore.from_params(preset("tiny"))
    assert (core.rows, core.cols, core.k_depth) == (4, 4, 256)
    assert core.wr_data_width == max(32, QUANT_LAYOUT.size)
    assert core.latency == 4
    Fragment.get(core, None)  # elaborates (and so uses) the core and its pipeline


@pytest.mark.parametrize("kwargs, match", [
    ({"rows": 0, "cols": 2, "k_depth": 16}, "rows must be an integer"),
    ({"rows": 2, "cols": "4", "k_depth": 16}, "cols must be an integer"),
    ({"rows": 2, "cols": 2, "k_depth": 12}, "k_depth must be a power of two"),
    ({"rows": 2, "cols": 2, "k_depth": 16, "lut_columns": 3}, "lut_columns must be"),
])
def test_gemm_core_rejects_bad_parameters(kwargs, match):
    # The half-built component is an Elaboratable nobody uses: silence that warning only here
    # (the usual `# amaranth: UnusedElaboratable=no` must be line 1, where the SPDX header is).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        with pytest.raises((TypeError, ValueError), match=match) as excinfo:
            GemmCore(kwargs.pop("rows"), kwargs.pop("cols"), **kwargs)
        del excinfo
        gc.collect()


def test_gemm_core_ignores_bad_start():
    """k_len 0 or > k_depth, and start while busy, are ignored (busy tells which)."""
    core = GemmCore(1, 1, k_depth=16)
    seen = []

    async def bench(ctx):
        for k_len in (0, 17, 31):
            ctx.set(core.start, 1)
            ctx.set(core.k_len, k_len)
            await ctx.tick()
            seen.append(ctx.get(core.busy))
        ctx.set(core.k_len, 3)
        await ctx.tick()                       # accepted: busy from the next cycle
        seen.append(ctx.get(core.busy))
        ctx.set(core.k_len, 16)                # start held high while busy: ignored
        ctx.set(core.o_stream.ready, 1)
        rows = 0
        for _ in range(2):
            await ctx.tick()
            assert ctx.get(core.busy)
        ctx.set(core.start, 0)
        for _ in range(200):
            await ctx.tick()
            rows += ctx.get(core.done)
        seen.append(rows)

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen[:4] == [0, 0, 0, 1]
    assert seen[4] == 1


@pytest.mark.parametrize("cols", [1, 4])
def test_gemm_core_latency_from_start(cols):
    """The first operand column reaches the pipeline ``latency`` cycles after ``start``, the
    quant parameters ``latency + cols`` cycles after it; ``busy`` rises the cycle after."""
    core = GemmCore(2, cols, k_depth=16)
    pipe = core.pipeline
    seen = {}

    async def bench(ctx):
        ctx.set(core.o_stream.ready, 1)
        ctx.set(core.k_len, 5)
        ctx.set(core.start, 1)
        for cycle in range(1, 40):
            await ctx.tick()
            ctx.set(core.start, 0)
            if ctx.get(core.busy):
                seen.setdefault("busy", cycle)
            if ctx.get(pipe.i_stream.valid):
                seen.setdefault("operand", cycle)
            if ctx.get(pipe.i_quant.valid):
                seen.setdefault("quant", cycle)

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"busy": 1, "operand": core.latency, "quant": core.latency + cols}
    assert core.latency == 4
