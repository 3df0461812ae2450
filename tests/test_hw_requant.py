# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of hw.requant (``RequantLane``, ``Requantizer``) against
``sw.quant.requantize``."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Value
from amaranth.sim import Simulator
from helpers import run_testbenches, stream_get, stream_put, unpack_lanes

from hw.requant import Requantizer, RequantLane
from sw import quant

ACC_MIN, ACC_MAX = quant.ACC_MIN, quant.ACC_MAX
MULT_MAX = (1 << quant.MULT_BITS) - 1

# (acc, bias, mult, shift): ties both ways, exact -128/127, saturation both ways, shift 1 and
# 47, mult 0 and 2**15-1, int32 extremes with bias 0, and bias moving the sum across zero.
GOLDEN = [
    (1, 0, 1, 1),                    # +0.5 -> 1 (tie up)
    (-1, 0, 1, 1),                   # -0.5 -> 0 (tie toward +inf)
    (3, 0, 1, 1),                    # +1.5 -> 2
    (-3, 0, 1, 1),                   # -1.5 -> -1
    (5, 0, 3, 4),                    # 15/16 -> 1
    (-5, 0, 3, 4),                   # -15/16 -> -1
    (-24, 0, 1, 4),                  # -1.5 -> -1
    (24, 0, 1, 4),                   # 1.5 -> 2
    (-256, 0, 1, 1),                 # exactly -128
    (254, 0, 1, 1),                  # exactly 127
    (255, 0, 1, 1),                  # 127.5 -> 128 -> saturates to 127
    (-257, 0, 1, 1),                 # -128.5 -> -128
    (-258, 0, 1, 1),                 # -129 -> saturates to -128
    (-259, 0, 1, 1),                 # -129.5 -> -129 -> -128
    (ACC_MAX, 0, MULT_MAX, 1),       # huge positive -> 127
    (ACC_MIN, 0, MULT_MAX, 1),       # huge negative -> -128
    (ACC_MAX, 0, MULT_MAX, 47),      # shift 47: ~0.5 - eps -> 0
    (ACC_MIN, 0, MULT_MAX, 47),      # shift 47: ~-0.5 + eps -> 0
    (ACC_MAX, 0, MULT_MAX, 46),      # ~1 - eps -> 1
    (ACC_MIN, 0, MULT_MAX, 46),      # ~-1 + eps -> -1
    (ACC_MAX, 0, 0, 1),              # mult 0 -> 0
    (ACC_MIN, 0, 0, 47),             # mult 0 -> 0
    (ACC_MIN, 0, 1, 31),             # -2**31 / 2**31 = -1
    (ACC_MIN, 0, 1, 24),             # -128 exactly
    (ACC_MAX, 0, 1, 24),             # 127.99 -> 128 -> 127
    (100, -300, 16384, 15),          # bias crosses zero: -200 * 0.5 = -100
    (-100, 300, 16384, 15),          # 200 * 0.5 = 100
    (ACC_MAX - 5, 5, 1, 31),         # sum exactly int32 max
    (ACC_MIN + 7, -7, 1, 31),        # sum exactly int32 min
    (1 << 20, 0, 12345, 33),         # mid-range shift
]


def _expected(acc, bias, mult, shift) -> np.ndarray:
    s = np.asarray(acc, np.int64) + np.asarray(bias, np.int64)
    return quant.requantize(s, np.asarray(mult, np.int64), np.asarray(shift, np.int64))


def _simulate(cols, tiles, *, idle=False, backpressure=False, quant_early=False, lanes=None):
    """Run ``tiles`` = [(acc (rows, cols), bias, mult, shift)]; return int8 rows and lasts."""
    dut = Requantizer(cols, lanes=lanes, use_dsp=False)
    total = sum(t[0].shape[0] for t in tiles)
    got = []
    src_rng = np.random.default_rng(1)
    snk_rng = np.random.default_rng(2)
    q_rng = np.random.default_rng(3)

    async def rows_tb(ctx):
        if quant_early:
            await ctx.tick().repeat(5)
        for acc, *_ in tiles:
            for r in range(acc.shape[0]):
                await stream_put(ctx, dut.i_stream, {"acc": [int(x) for x in acc[r]],
                                                     "last": int(r == acc.shape[0] - 1)},
                                 src_rng if idle else None, max_idle=3)

    async def quant_tb(ctx):
        for _, bias, mult, shift in tiles:
            await stream_put(ctx, dut.i_quant, {"bias": [int(x) for x in bias],
                                                "mult": [int(x) for x in mult],
                                                "shift": [int(x) for x in shift]},
                             q_rng if idle else None, max_idle=3)

    async def sink_tb(ctx):
        got.extend(await stream_get(ctx, dut.o_stream, total, snk_rng if backpressure else None,
                                    ready_rate=0.5))

    run_testbenches(dut, rows_tb, quant_tb, sink_tb, deadline_us=5000)
    assert len(got) == total
    data = np.array([unpack_lanes(p, cols) for p in got], dtype=np.int8)
    last = [(p >> (8 * cols)) & 1 for p in got]
    return data, last


def test_requant_golden_corners():
    cols = 2
    tiles = []
    for i in range(0, len(GOLDEN), cols):
        group = GOLDEN[i:i + cols]
        acc, bias, mult, shift = (np.array([g[j] for g in group], np.int64) for j in range(4))
        tiles.append((acc[None, :], bias, mult, shift))
    data, last = _simulate(cols, tiles)
    want = np.concatenate([_expected(a[0], b, m, s) for a, b, m, s in tiles])
    np.testing.assert_array_equal(data.ravel(), want)
    assert last == [1] * len(tiles)
    # The table really pins what it says (guards against an edited reference).
    assert want[:4].tolist() == [1, 0, 2, -1]
    assert want[10:14].tolist() == [127, -128, -128, -128]


def _random_tiles(rng, cols, n_tiles, max_rows):
    tiles = []
    for _ in range(n_tiles):
        rows = int(rng.integers(1, max_rows + 1))
        # Mix small and full-range accumulators; keep acc + bias inside int32 (the reference
        # rejects the rest).
        scale = rng.choice([1 << 8, 1 << 16, 1 << 30])
        acc = rng.integers(-scale, scale, (rows, cols))
        bias = rng.integers(-(1 << 30), 1 << 30, cols) // rng.choice([1, 1 << 10, 1 << 20])
        mult = rng.integers(0, 1 << quant.MULT_BITS, cols)
        shift = rng.integers(quant.SHIFT_MIN, quant.SHIFT_MAX + 1, cols)
        tiles.append((acc, bias, mult, shift))
    return tiles


@pytest.mark.parametrize("cols, lanes", [(3, None), (3, 1), (7, 3), (18, 6)],
                         ids=["3", "3-in-1-lane", "7-in-3-lanes", "18-in-6-lanes"])
@pytest.mark.parametrize("idle, backpressure", [(False, False), (True, False), (False, True),
                                                (True, True)],
                         ids=["plain", "idle", "backpressure", "idle+backpressure"])
def test_requant_random_tiles(idle, backpressure, cols, lanes):
    """Also with fewer lanes than columns: a row in ``phases`` cycles (7 columns in 3 lanes:
    the last phase has one column)."""
    rng = np.random.default_rng(100 + 2 * idle + backpressure + cols)
    tiles = _random_tiles(rng, cols, 12, 4)
    data, last = _simulate(cols, tiles, idle=idle, backpressure=backpressure, lanes=lanes)
    assert len(data) == sum(len(t[0]) for t in tiles) >= 12
    want = np.concatenate([_expected(acc, b[None, :], m[None, :], s[None, :])
                           for acc, b, m, s in tiles])
    np.testing.assert_array_equal(data, want)
    assert last == [int(r == acc.shape[0] - 1) for acc, *_ in tiles for r in range(acc.shape[0])]


@pytest.mark.parametrize("lanes", [None, 3])
def test_requant_random_shift_sweep(lanes):
    """Every shift 1..47 with values near the rounding and saturation boundaries."""
    rng = np.random.default_rng(7)
    cols = 4
    tiles = []
    for shift in range(quant.SHIFT_MIN, quant.SHIFT_MAX + 1):
        mult = rng.integers(1, 1 << quant.MULT_BITS, cols)
        # Aim for outputs near +-128 and near ties: acc ~ k * 2**shift / mult.
        target = rng.choice([-129.5, -128.5, -0.5, 0.5, 126.5, 127.5], cols)
        acc = np.clip(np.round(target * 2.0 ** shift / mult), ACC_MIN, ACC_MAX).astype(np.int64)
        tiles.append((acc[None, :], np.zeros(cols, np.int64), mult, np.full(cols, shift)))
    data, _ = _simulate(cols, tiles, lanes=lanes)
    want = np.concatenate([_expected(a, b, m, s) for a, b, m, s in tiles])
    np.testing.assert_array_equal(data, want)


@pytest.mark.parametrize("lanes", [None, 1])
def test_requant_quant_before_rows(lanes):
    """Parameters offered long before the rows are held, and released only after `last`."""
    rng = np.random.default_rng(9)
    cols = 2
    tiles = _random_tiles(rng, cols, 4, 3)
    data, _ = _simulate(cols, tiles, quant_early=True, lanes=lanes)
    want = np.concatenate([_expected(acc, b[None, :], m[None, :], s[None, :])
                           for acc, b, m, s in tiles])
    np.testing.assert_array_equal(data, want)


@pytest.mark.parametrize("cols, lanes", [(2, None), (5, 2)])
def test_requant_latency_and_back_to_back_tiles(cols, lanes):
    """Full rate across tile boundaries (a row every ``phases`` cycles with fewer lanes than
    columns); each output ``latency`` cycles after its row's handshake (its last phase)."""
    dut = Requantizer(cols, lanes=lanes, use_dsp=False)
    phases = dut.phases
    assert phases == (1 if lanes is None else 3) and dut.lanes == (lanes or cols)
    rows = [[(r * 7 + c) * 1000 for c in range(cols)] for r in range(8)]
    q = {"bias": [0] * cols, "mult": [1 << 14] * cols, "shift": [15] * cols}
    row_ready = []
    valid_cycles = []

    async def rows_tb(ctx):
        ctx.set(dut.i_stream.valid, 1)
        for i, row in enumerate(rows):
            ctx.set(dut.i_stream.payload, {"acc": row, "last": int(i % 2 == 1)})  # 2-row tiles
            for _ in range(phases):
                _, _, ready = await ctx.tick().sample(dut.i_stream.ready)
                row_ready.append(ready)
        ctx.set(dut.i_stream.valid, 0)

    async def quant_tb(ctx):
        ctx.set(dut.i_quant.valid, 1)
        ctx.set(dut.i_quant.payload, q)
        await ctx.tick().repeat(len(rows) * phases)
        ctx.set(dut.i_quant.valid, 0)

    async def sink_tb(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for cycle in range(len(rows) * phases + dut.latency + 2):
            _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                           Value.cast(dut.o_stream.payload))
            if valid:
                valid_cycles.append(cycle)
                assert unpack_lanes(payload, cols) == \
                    _expected(rows[len(valid_cycles) - 1], 0, 1 << 14, 15).tolist()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(rows_tb)
    sim.add_testbench(quant_tb)
    sim.add_testbench(sink_tb)
    sim.run()
    # parameters and rows taken in the same cycles, a row in its last phase
    assert row_ready == ([0] * (phases - 1) + [1]) * len(rows)
    assert valid_cycles == [dut.latency + phases * i + phases - 1 for i in range(len(rows))]


@pytest.mark.parametrize("cols, exc", [(0, ValueError), (33, ValueError), ("4", TypeError),
                                       (2.0, TypeError), (False, TypeError)])
def test_requant_rejects_bad_cols(cols, exc):
    with pytest.raises(exc, match="cols must be"):
        Requantizer(cols)


def test_requant_rejects_bad_flags():
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        Requantizer(2, use_dsp="yes")
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        Requantizer.from_params(4)


def test_requant_saturation_thresholds_every_shift():
    """x = p >> (shift - 1) exactly at, just below and just above 254/255 and -257/-258 (where
    the saturation flags switch), for every shift and three multipliers: the flags are
    compared one stage before the fine shift, against thresholds scaled by the shift."""
    cols = 3
    mults = np.array([1 << 14, (1 << 15) - 1, 21845], np.int64)
    tiles = []
    for shift in range(quant.SHIFT_MIN, quant.SHIFT_MAX + 1):
        rows = []
        for x_target in (254, 255, 256, -257, -258, -259):
            for d in (-1, 0, 1):
                # Smallest acc with acc * mult >= x_target * 2**(shift-1), then a step around it.
                acc = -((-x_target << (shift - 1)) // mults) + d
                rows.append(np.clip(acc, ACC_MIN, ACC_MAX))
        acc = np.array(rows, np.int64)
        tiles.append((acc, np.zeros(cols, np.int64), mults, np.full(cols, shift)))
    data, _ = _simulate(cols, tiles)
    want = np.concatenate([_expected(a, b[None, :], m[None, :], s[None, :])
                           for a, b, m, s in tiles])
    np.testing.assert_array_equal(data, want)
    # The sweep really reaches both saturated values and the unsaturated extremes.
    assert {127, -128, 126}.issubset(set(want.ravel().tolist()))


# -- RequantLane (shared by Requantizer and the attention unit's output) ----------------------

@pytest.mark.parametrize("mult, shift, acc_bits", [
    (32012, 29, 24), (1 << 14, 15, 24), ((1 << 15) - 1, 1, 24), (20000, 47, 24), (16384, 30, 24),
    (MULT_MAX, 31, 32), (None, None, 32),            # None: random parameters every cycle
])
def test_requant_lane_with_enable(mult, shift, acc_bits):
    """Random values (and corners of the acc range), the clock enable toggled at random: each
    result appears ``latency`` enabled cycles after its inputs, bit-exact."""
    rng = np.random.default_rng(acc_bits * 1000 + (shift or 0))
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    n = 400
    s_vals = np.concatenate([[lo, hi, 0, -1, 1, 32768, -32768, 65535, -65536],
                             rng.integers(lo, hi, n, endpoint=True)])
    n = s_vals.size
    mults = (np.full(n, mult) if mult is not None
             else rng.integers(0, 1 << quant.MULT_BITS, n))
    shifts = (np.full(n, shift) if shift is not None
              else rng.integers(quant.SHIFT_MIN, quant.SHIFT_MAX + 1, n))
    want = quant.requantize(s_vals, mults, shifts)
    np.testing.assert_array_equal(_lane_outputs(s_vals, mults, shifts, rng), want)
    assert RequantLane.latency == 7


def _lane_outputs(s_vals, mults, shifts, rng):
    """RequantLane's ``y`` for each ``(s, mult, shift)``, the clock enable toggled at random;
    asserts that each result came ``latency`` enabled cycles after its inputs, in order."""
    n = len(s_vals)
    dut = RequantLane(use_dsp=False)
    got = []

    async def bench(ctx):
        pipe = [None] * RequantLane.latency          # values in flight, newest first
        i = 0
        while len(got) < n:
            en = int(rng.random() < 0.7)
            ctx.set(dut.en, en)
            if i < n:
                ctx.set(dut.s, int(s_vals[i]))
                ctx.set(dut.mult, int(mults[i]))
                ctx.set(dut.shift, int(shifts[i]))
            await ctx.tick()
            if en:
                pipe = [i if i < n else None] + pipe[:-1]
                i += 1
                if pipe[-1] is not None:
                    got.append((pipe[-1], ctx.get(dut.y)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert [k for k, _ in got] == list(range(n))
    return np.array([y for _, y in got])


def test_requant_lane_coarse_shift_range_edges():
    """p = s * mult just inside and just outside the 18 bits S5 keeps of p >> c, for every
    coarse shift c that can overflow them (0, 8, 16, 24) and every fine shift: the "does not
    fit" flag and the sign must pick the bound exactly where the 48-bit compare did."""
    rng = np.random.default_rng(18)
    s_vals, mults, shifts = [], [], []
    for c in (0, 8, 16, 24):
        for mult in (1 << 14, (1 << 15) - 1, 21845):
            edge = 1 << (17 + c)                     # p >> c leaves 18 signed bits here
            s0 = -(-edge // mult)                    # smallest s with s * mult >= edge
            for f in range(8):
                for s_ in (s0 - 2, s0 - 1, s0, s0 + 1, -s0 - 1, -s0, -s0 + 1, -s0 + 2):
                    s_vals.append(s_)
                    mults.append(mult)
                    shifts.append(c + f + 1)
    s_vals, mults, shifts = (np.array(v, np.int64) for v in (s_vals, mults, shifts))
    want = quant.requantize(s_vals, mults, shifts)
    np.testing.assert_array_equal(_lane_outputs(s_vals, mults, shifts, rng), want)
    assert len(want) == 4 * 3 * 8 * 8
    # Both saturated values and unsaturated results occur among the edges.
    assert {127, -128}.issubset(set(want.tolist())) and (abs(want) < 127).any()
