# SPDX-License-Identifier: Apache-2.0
"""cocotb bench for :class:`hw.gemm.GemmPipeline` (run through :mod:`sim.runner`, not pytest).

Tests
-----
``gemm_tiles(idle, backpressure)``
    Corner tiles and ``LF_TILES`` random tiles (K from 1 to ``k_depth``) in one of the four
    stream variants; a scoreboard fed by what the DUT actually accepted compares every output row
    with :func:`sw.ref.gemm_requant` (``np.testing.assert_array_equal``).
``gemm_bench``
    GEMM problems ``LF_BENCH_CASES`` (JSON ``[[M, K, N], ...]``) tiled on the host and streamed
    back to back without idle or backpressure; records cycles from the first operand transfer to
    the last output transfer.

Environment (set by the caller through ``sim.runner.run(env=...)``)
--------------------------------------------------------------------
``LF_TILES`` random tiles per variant (default 1000) · ``LF_SEED`` base seed (default 1) ·
``LF_KMAX`` largest random K (default ``k_depth``) · ``LF_RESULT_JSON`` where to write the
summary · ``LF_BENCH_CASES`` bench shapes · ``LF_PARAMS`` / ``LF_PORTS`` (set by the runner).
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from sim import harness
from sim.harness import Harness, Scoreboard, bench_inputs, steps_per_cycle, write_result
from sim.suites import env_int
from sw import quant, ref

# -- tiles ---------------------------------------------------------------------------------------

def _tile(a: np.ndarray, w: np.ndarray, bias: np.ndarray, mult: np.ndarray,
          shift: np.ndarray, kind: str) -> dict[str, Any]:
    return {"a": a.astype(np.int8), "w": w.astype(np.int8), "bias": bias.astype(np.int32),
            "mult": np.asarray(mult, dtype=np.int64), "shift": np.asarray(shift, dtype=np.int64),
            "kind": kind}


def _rand_requant(rng: np.random.Generator, k: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (mult, shift): mostly from real scales, sometimes raw corner values."""
    mult = np.empty(cols, dtype=np.int64)
    shift = np.empty(cols, dtype=np.int64)
    typical = 128.0 * 128.0 * np.sqrt(k) / 3.0        # rough |acc| of random int8 data
    for c in range(cols):
        pick = rng.random()
        if pick < 0.75:                                 # a realistic scale, +-4x around "fits"
            real = 127.0 / typical * 2.0 ** rng.uniform(-2.0, 2.0)
            mult[c], shift[c] = quant.quantize_multiplier(real)
        elif pick < 0.85:                               # any scale the spec allows
            mult[c], shift[c] = quant.quantize_multiplier(2.0 ** rng.uniform(-40.0, 13.0))
        else:                                           # raw corners
            mult[c] = rng.choice([0, 1, (1 << quant.MULT_BITS) - 1,
                                  int(rng.integers(0, 1 << quant.MULT_BITS))])
            shift[c] = rng.choice([quant.SHIFT_MIN, quant.SHIFT_MAX,
                                   int(rng.integers(quant.SHIFT_MIN, quant.SHIFT_MAX + 1))])
    return mult, shift


def _rand_bias(rng: np.random.Generator, acc: np.ndarray) -> np.ndarray:
    """A bias that keeps ``acc + bias`` inside int32 (column-wise)."""
    cols = acc.shape[1]
    # bias itself is int32, and acc + bias must stay inside int32 for every row.
    lo = np.maximum(quant.ACC_MIN, quant.ACC_MIN - acc.min(axis=0))
    hi = np.minimum(quant.ACC_MAX, quant.ACC_MAX - acc.max(axis=0))
    pick = rng.random()
    if pick < 0.6:
        b = rng.integers(-(1 << 16), 1 << 16, size=cols)
    elif pick < 0.9:
        b = rng.integers(-(1 << 30), 1 << 30, size=cols)
    else:                                               # at the int32 limits
        b = np.where(rng.random(cols) < 0.5, lo, hi)
    return np.clip(b, lo, hi).astype(np.int64)


def random_k(rng: np.random.Generator, kmax: int) -> int:
    """Half uniform in [1, kmax], half log-uniform (more short tiles, more tile boundaries)."""
    if rng.random() < 0.5:
        return int(rng.integers(1, kmax + 1))
    return int(min(kmax, max(1, round(2.0 ** rng.uniform(0.0, np.log2(kmax))))))


def random_tile(rng: np.random.Generator, rows: int, cols: int, kmax: int) -> dict[str, Any]:
    k = random_k(rng, kmax)
    style = rng.random()
    if style < 0.8:
        a = rng.integers(-128, 128, size=(rows, k))
        w = rng.integers(-128, 128, size=(k, cols))
    else:                                               # small magnitudes: fewer saturations
        a = rng.integers(-4, 5, size=(rows, k))
        w = rng.integers(-4, 5, size=(k, cols))
    acc = a.astype(np.int64) @ w.astype(np.int64)
    mult, shift = _rand_requant(rng, k, cols)
    return _tile(a, w, _rand_bias(rng, acc), mult, shift, "random")


def corner_tiles(rows: int, cols: int, kmax: int, seed: int = 0) -> list[dict[str, Any]]:
    """Extremes, ties and degenerate requant pairs (see ``docs/simulation.md``)."""
    rng = np.random.default_rng(seed)
    one = np.ones(cols, dtype=np.int64)
    tiles = []

    def full(v: int, shape: tuple[int, int]) -> np.ndarray:
        return np.full(shape, v, dtype=np.int64)

    # Worst-case accumulation: -128 * -128 * K = 2**22 at K=256; the bias brings the sum to
    # exactly ACC_MAX (and ACC_MIN with -128 * 127).
    acc_pos = 128 * 128 * kmax
    acc_neg = -128 * 127 * kmax
    for m, s in ((1, 1), ((1 << 15) - 1, 47), ((1 << 15) - 1, 1), (1 << 14, 31), (0, 1)):
        tiles.append(_tile(full(-128, (rows, kmax)), full(-128, (kmax, cols)),
                           (quant.ACC_MAX - acc_pos) * one, m * one, s * one, "max_acc"))
        tiles.append(_tile(full(-128, (rows, kmax)), full(127, (kmax, cols)),
                           (quant.ACC_MIN - acc_neg) * one, m * one, s * one, "min_acc"))
    tiles.append(_tile(full(127, (rows, kmax)), full(127, (kmax, cols)), 0 * one,
                       (1 << 14) * one, 30 * one, "all_127"))
    tiles.append(_tile(full(-128, (rows, kmax)), full(-128, (kmax, cols)), 0 * one,
                       (1 << 14) * one, 30 * one, "all_m128"))
    tiles.append(_tile(full(0, (rows, kmax)), full(0, (kmax, cols)),
                       rng.integers(-1000, 1000, size=cols), (1 << 14) * one, 15 * one, "zeros"))
    tiles.append(_tile(full(0, (rows, 1)), full(0, (1, cols)), 0 * one, 0 * one, one, "zero_k1"))
    # K = 1 with the extremes of a single product.
    for av, wv in ((-128, -128), (-128, 127), (127, 127)):
        tiles.append(_tile(full(av, (rows, 1)), full(wv, (1, cols)), 0 * one, one, one, "k1"))
    # Ties: acc/2 (mult 2**14, shift 15) and acc*3/4 (mult 3, shift 2) on odd / ... values,
    # both signs: HALF_UP rounds them toward +infinity.
    for m, s in ((1 << 14, 15), (3, 2), (1, 1), (1 << 14, 16)):
        k = 3
        a = rng.integers(-3, 4, size=(rows, k))
        w = rng.integers(-3, 4, size=(k, cols))
        bias = np.array([(-1) ** c * (2 * c + 1) for c in range(cols)], dtype=np.int64)
        tiles.append(_tile(a, w, bias, m * one, s * one, "ties"))
    # Saturation both ways with a tiny shift, and the top multiplier with the largest shift.
    tiles.append(_tile(full(127, (rows, 8)), full(127, (8, cols)), 0 * one,
                       ((1 << 15) - 1) * one, one, "sat_pos"))
    tiles.append(_tile(full(127, (rows, 8)), full(-128, (8, cols)), 0 * one,
                       ((1 << 15) - 1) * one, one, "sat_neg"))
    # Per-column mix of everything.
    a = rng.integers(-128, 128, size=(rows, kmax))
    w = rng.integers(-128, 128, size=(kmax, cols))
    mult = np.array([[0, 1, (1 << 15) - 1, 1 << 14][c % 4] for c in range(cols)])
    shift = np.array([[1, 47, 20, 24][c % 4] for c in range(cols)])
    tiles.append(_tile(a, w, np.zeros(cols, dtype=np.int64), mult, shift, "mixed_cols"))
    return tiles


# -- scoreboard ----------------------------------------------------------------------------------

class GemmScoreboard(Scoreboard):
    """Model fed by the transfers the DUT accepted; compares every output row.

    ``on_operand``/``on_quant``/``on_output`` take raw payload ints (the streams' callbacks).
    An operand transfer with ``last`` closes a tile; a tile plus its quant transfer gives
    ``rows`` expected rows (:func:`sw.ref.gemm_requant`).
    """

    def __init__(self, ports: dict[str, Any], rows: int, cols: int, *, keep: int = 5) -> None:
        super().__init__(ports, keep=keep)
        self.rows, self.cols = rows, cols
        self._pending: list[int] = []          # raw operand transfers of the open tile
        self._last_bit = 1 << self.codec["i_stream"].field_offset("last")
        self._tiles: collections.deque[tuple[np.ndarray, np.ndarray]] = collections.deque()
        self._quants: collections.deque[dict[str, np.ndarray]] = collections.deque()
        self.expected: collections.deque[tuple[np.ndarray, bool]] = collections.deque()
        self.tiles_in = 0
        self.tiles_out = 0
        self.tiles_bad: set[int] = set()
        self.outputs: list[np.ndarray] = []     # all received rows (for the bench)

    def on_operand(self, raw: int) -> None:
        self._pending.append(raw)
        if raw & self._last_bit:                                   # decode the tile at once
            p = self.codec["i_stream"].unpack_many(self._pending)
            self._pending = []
            a = p["act"].T.astype(np.int8)                         # (rows, K)
            w = p["wgt"].astype(np.int8)                           # (K, cols)
            self._tiles.append((a, w))
            self._match()

    def on_quant(self, raw: int) -> None:
        self._quants.append(self.codec["i_quant"].unpack(raw))
        self._match()

    def _match(self) -> None:
        while self._tiles and self._quants:
            a, w = self._tiles.popleft()
            q = self._quants.popleft()
            try:
                y = ref.gemm_requant(a, w, q["bias"].astype(np.int32), q["mult"], q["shift"])
            except (OverflowError, ValueError) as exc:
                acc = a.astype(np.int64) @ w.astype(np.int64)
                raise AssertionError(
                    f"tile {self.tiles_in}: the model rejects what the DUT accepted ({exc}): "
                    f"K={a.shape[1]}, bias={q['bias'].tolist()}, mult={q['mult'].tolist()}, "
                    f"shift={q['shift'].tolist()}, acc range [{int(acc.min())}, "
                    f"{int(acc.max())}]") from None
            for r in range(self.rows):
                self.expected.append((y[r], r == self.rows - 1))
            self.tiles_in += 1

    def on_output(self, raw: int) -> None:
        p = self.codec["o_stream"].unpack(raw)
        got = p["data"]
        self.outputs.append(got)
        tile = self.rows_out // self.rows
        if not self.expected:
            self.row_mismatches += 1
            self.tiles_bad.add(tile)
            self.note(f"tile {tile}: output row {self.rows_out} {got.tolist()} arrived before "
                      "its tile and quant parameters were sent")
        else:
            want, last = self.expected.popleft()
            try:
                np.testing.assert_array_equal(got, want)
                ok = bool(p["last"]) == last
                if not ok:
                    self.note(f"tile {tile} row {self.rows_out % self.rows}: last="
                              f"{p['last']} but expected {int(last)}")
            except AssertionError as exc:
                ok = False
                self.note(f"tile {tile} row {self.rows_out % self.rows}: {exc}")
            if not ok:
                self.row_mismatches += 1
                self.tiles_bad.add(tile)
        self.rows_out += 1
        if self.rows_out % self.rows == 0:
            self.tiles_out += 1

# -- harness -------------------------------------------------------------------------------------

class GemmHarness(Harness):
    """Clock, reset, the three stream drivers and a scoreboard around the DUT."""

    def __init__(self, dut: Any, *, idle: bool = False, backpressure: bool = False,
                 seed: int = 0, record_times: bool = False) -> None:
        super().__init__(dut, seed=seed, pause_p=0.25, record_times=record_times)
        self.rows, self.cols = self.params.rows, self.params.cols
        self.sb = GemmScoreboard(self.ports, self.rows, self.cols)
        self.src = self.add_source("i_stream", self.sb.on_operand, idle=idle)
        self.qsrc = self.add_source("i_quant", self.sb.on_quant, idle=idle)
        self.sink = self.add_sink("o_stream", self.sb.on_output, backpressure=backpressure)

    def queue(self, tile: dict[str, Any]) -> None:
        a, w = tile["a"], tile["w"]
        k = a.shape[1]
        last = np.zeros(k, dtype=np.int64)
        last[-1] = 1
        self.src.extend(self.src.codec.pack_many({"act": a.T, "wgt": w, "last": last}))
        self.qsrc.send(self.qsrc.codec.pack({"bias": tile["bias"], "mult": tile["mult"],
                                             "shift": tile["shift"]}))

    async def drain(self, tiles_total: int) -> None:
        """Wait until ``tiles_total`` tiles came out; fail on a stall or on extra rows."""
        await self.wait_for(lambda: self.sb.rows_out, tiles_total * self.rows, "output rows")


@harness.stream_variant_test
async def gemm_tiles(dut: Any, idle: bool, backpressure: bool) -> None:
    v = harness.StreamVariant(idle, backpressure)
    seed = v.seed
    n_random = env_int("LF_TILES", 1000, 0)
    h = GemmHarness(dut, **v.harness_options())
    kmax = int(os.environ.get("LF_KMAX", str(h.params.k_depth)))
    if not 1 <= kmax <= h.params.k_depth:
        raise ValueError(f"LF_KMAX must be in [1, {h.params.k_depth}], not {kmax!r}")
    rng = v.rng()
    tiles = corner_tiles(h.rows, h.cols, kmax, seed)
    tiles += [random_tile(rng, h.rows, h.cols, kmax) for _ in range(n_random)]
    await h.start()
    for t in tiles:
        h.queue(t)
    await h.drain(len(tiles))
    h.stop()
    sb, name = h.sb, v.name
    summary = {"variant": name, "tiles": sb.tiles_out, "random_tiles": n_random,
               "corner_tiles": len(tiles) - n_random, "rows": sb.rows_out,
               "mismatches": len(sb.tiles_bad), "row_mismatches": sb.row_mismatches,
               "operand_transfers": h.src.count, "errors": sb.errors,
               "k_total": int(sum(t["a"].shape[1] for t in tiles))}
    write_result(name, summary)
    dut._log.info("variant %s: %d tiles, %d mismatches", name, sb.tiles_out, len(sb.tiles_bad))
    assert sb.tiles_in == len(tiles), f"scoreboard saw {sb.tiles_in} of {len(tiles)} tiles"
    assert not sb.tiles_bad, (f"variant {name}: {len(sb.tiles_bad)} of {len(tiles)} tiles "
                              "mismatched:\n" + "\n".join(sb.errors))


def tile_problem(a: np.ndarray, w: np.ndarray, rows: int, cols: int) -> Iterator[tuple[int, int]]:
    """Output-tile order used by the bench: row blocks outer, column blocks inner."""
    m, n = a.shape[0], w.shape[1]
    for i in range(0, m, rows):
        for j in range(0, n, cols):
            yield i, j


@cocotb.test()
async def gemm_bench(dut: Any) -> None:
    cases, seed = bench_inputs([[16, 64, 16]])
    h = GemmHarness(dut, record_times=True)
    await h.start()
    rows, cols = h.rows, h.cols
    results = []
    for ci, (m, k, n) in enumerate(cases):
        if m % rows or n % cols or not 1 <= k <= h.params.k_depth:
            raise ValueError(f"bench case (M, K, N) must have M a multiple of {rows}, N a "
                             f"multiple of {cols} and 1 <= K <= {h.params.k_depth}, "
                             f"not {(m, k, n)!r}")
        rng = np.random.default_rng([seed, ci])
        a = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
        w = rng.integers(-128, 128, size=(k, n)).astype(np.int8)
        bias = rng.integers(-(1 << 16), 1 << 16, size=n).astype(np.int32)
        pairs = [quant.quantize_multiplier(127.0 / (128.0 * 128.0 * np.sqrt(k) / 3.0)
                                           * 2.0 ** rng.uniform(-1, 1)) for _ in range(n)]
        mult = np.array([p[0] for p in pairs], dtype=np.int64)
        shift = np.array([p[1] for p in pairs], dtype=np.int64)
        order = list(tile_problem(a, w, rows, cols))
        n0_in, n0_out = len(h.src.times), len(h.sink.times)
        rows0 = h.sb.rows_out
        for i, j in order:
            h.queue(_tile(a[i:i + rows], w[:, j:j + cols], bias[j:j + cols],
                          mult[j:j + cols], shift[j:j + cols], "bench"))
        await h.drain(h.sb.tiles_out + len(order))
        # Reassemble C from the received rows in the same tile order.
        got = np.zeros((m, n), dtype=np.int64)
        outs = h.sb.outputs[rows0:]
        for t, (i, j) in enumerate(order):
            for r in range(rows):
                got[i + r, j:j + cols] = outs[t * rows + r]
        want = ref.gemm_requant(a, w, bias, mult, shift)
        mismatches = int(np.count_nonzero(got != want))
        t_first = h.src.times[n0_in]
        t_last = h.sink.times[-1]
        assert len(h.sink.times) - n0_out == len(order) * rows
        cycles = (t_last - t_first) // steps_per_cycle() + 1
        ideal = m * k * n // (rows * cols)
        results.append({"M": m, "K": k, "N": n, "cycles": int(cycles), "ideal_cycles": ideal,
                        "utilization": ideal / cycles, "mismatches": mismatches,
                        "tiles": len(order), "bit_exact": mismatches == 0})
        dut._log.info("bench M=%d K=%d N=%d: %d cycles (ideal %d, utilization %.3f), "
                      "%d mismatches", m, k, n, cycles, ideal, ideal / cycles, mismatches)
        await ClockCycles(dut.clk, 10)
    h.stop()
    write_result("bench", {"cases": results, "rows": rows, "cols": cols})
    bad = [r for r in results if r["mismatches"]]
    assert not bad, f"bench cases with mismatches: {bad}"
