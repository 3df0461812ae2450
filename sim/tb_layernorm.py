# SPDX-License-Identifier: Apache-2.0
"""cocotb bench for :class:`hw.layernorm.LayerNorm` (run through :mod:`sim.runner`, not pytest).

Tests
-----
``layernorm_rows(idle, backpressure)``
    Corner jobs (``d = 1``, constant rows with ``eps = 0``, extreme spreads, the maximum ``d``,
    the largest epsilon, saturation, requant ties) and random jobs (random ``d``, 1..4 rows,
    random affine and requant constants) until ``LF_ROWS`` random rows were sent, in one of
    the four stream variants. A scoreboard fed by the transfers the DUT accepted compares
    every output row (its first ``d`` lanes) with :func:`sw.ref.layernorm_int`
    (``np.testing.assert_array_equal``).

Environment: ``LF_ROWS`` random rows per variant (default 1000) · ``LF_DMAX`` largest random
``d`` (default 64; the corners always include the unit's ``max_dim``) · ``LF_SEED`` base seed
(default 1) · ``LF_RESULT_JSON`` where the summary goes · ``LF_PARAMS`` / ``LF_PORTS``.
"""

from __future__ import annotations

import collections
import os
from typing import Any

import numpy as np

from sim.harness import Harness, Scoreboard, StreamVariant, stream_variant_test, write_result
from sim.stimulus import ln_corner_jobs, ln_random_job
from sim.suites import env_int
from sw import ref

# -- scoreboard ----------------------------------------------------------------------------------

class LayerNormScoreboard(Scoreboard):
    """Model fed by what the DUT accepted (configs, row beats, parameter beats)."""

    def __init__(self, ports: dict[str, Any], cols: int) -> None:
        super().__init__(ports)
        self.cols = cols
        self._cfgs: collections.deque[dict[str, int]] = collections.deque()
        self._row: list[np.ndarray] = []
        self._rows: collections.deque[tuple[np.ndarray, int, int]] = collections.deque()
        self._prm: list[dict[str, np.ndarray]] = []
        self.expected: collections.deque[tuple[np.ndarray, int, int, int]] = collections.deque()
        self._outs: collections.deque[dict[str, Any]] = collections.deque()
        self.jobs_in = 0
        self.rows_in = 0
        self.rows_done = 0
        self.beats_in = 0
        self.bad_rows: set[int] = set()

    def on_cfg(self, raw: int) -> None:
        self._cfgs.append(self.codec["i_cfg"].unpack(raw))

    def _beats(self) -> int:
        return -(-self._cfgs[0]["dim"] // self.cols)

    def on_beat(self, raw: int) -> None:
        p = self.codec["i_stream"].unpack(raw)
        self.beats_in += 1
        self._row.append(p["x"])
        if len(self._row) == self._beats():                  # the row is complete
            cfg = self._cfgs[0]
            x = np.concatenate(self._row)[:cfg["dim"]]
            self._rows.append((x, cfg["eps"], int(p["last"])))
            self._row = []
            self.rows_in += 1
            if p["last"]:
                self._cfgs.popleft()
                self.jobs_in += 1

    def on_param(self, raw: int) -> None:
        # Parameters are taken only in the normalize phase, after the whole row arrived.
        self._prm.append(self.codec["i_param"].unpack(raw))
        x, eps, last = self._rows[0]
        d = x.shape[0]
        if len(self._prm) * self.cols < d:
            return
        prm = {f: np.concatenate([q[f] for q in self._prm])[:d] for f in self._prm[0]}
        self._prm = []
        self._rows.popleft()
        y = ref.layernorm_int(x[None].astype(np.int8), prm["gamma"].astype(np.int8),
                              prm["beta"].astype(np.int32), prm["mult"], prm["shift"], eps)[0]
        beats = -(-d // self.cols)
        padded = np.zeros(beats * self.cols, dtype=np.int64)
        padded[:d] = y
        for i in range(beats):
            n = min(self.cols, d - i * self.cols)
            self.expected.append((padded[i * self.cols:(i + 1) * self.cols], n,
                                  int(last and i == beats - 1), self.rows_done))
        self.rows_done += 1
        self._match()

    def on_output(self, raw: int) -> None:
        # A row's first outputs come out before its last parameter beats are taken, so
        # outputs wait here until the model has the row.
        self._outs.append(self.codec["o_stream"].unpack(raw))
        self.rows_out += 1
        self._match()

    def _match(self) -> None:
        while self._outs and self.expected:
            p = self._outs.popleft()
            want, n, last, row = self.expected.popleft()
            try:
                np.testing.assert_array_equal(p["data"][:n], want[:n])   # lanes past d: any
                assert p["last"] == last, f"last={p['last']} but expected {last}"
            except AssertionError as exc:
                self.row_mismatches += 1
                self.bad_rows.add(row)
                self.note(f"row {row}: {exc}")

    @property
    def unmatched(self) -> int:
        """Outputs without a model row plus model rows' beats without an output."""
        return len(self._outs) + len(self.expected)


# -- harness -------------------------------------------------------------------------------------

class LayerNormHarness(Harness):
    def __init__(self, dut: Any, *, idle: bool, backpressure: bool, seed: int) -> None:
        super().__init__(dut, seed=seed)
        self.cols = self.params.cols
        self.sb = LayerNormScoreboard(self.ports, self.cols)
        self.rng = np.random.default_rng(seed)
        self.csrc = self.add_source("i_cfg", self.sb.on_cfg, idle=idle)
        self.src = self.add_source("i_stream", self.sb.on_beat, idle=idle)
        self.psrc = self.add_source("i_param", self.sb.on_param, idle=idle)
        self.sink = self.add_sink("o_stream", self.sb.on_output, backpressure=backpressure)

    def _pad(self, v: np.ndarray, noise: bool = False) -> np.ndarray:
        """``v`` in beats of ``cols``; lanes past its end random int8 (``noise``) or zero."""
        beats = -(-v.shape[-1] // self.cols)
        out = np.zeros(v.shape[:-1] + (beats * self.cols,), dtype=np.int64)
        if noise:
            out[:] = self.rng.integers(-128, 128, out.shape)
        out[..., :v.shape[-1]] = v
        return out.reshape(-1, self.cols)

    def queue(self, j: dict[str, Any]) -> None:
        rows, d = j["x"].shape
        self.csrc.send(self.csrc.codec.pack({"dim": d, "eps": j["eps"]}))
        xs = self._pad(j["x"], noise=True)                      # (rows * beats, cols)
        last = np.zeros(xs.shape[0], dtype=np.int64)
        last[-1] = 1
        self.src.extend(self.src.codec.pack_many({"x": xs, "last": last}))
        prm = {f: self._pad(j[f]) for f in ("gamma", "beta", "mult", "shift")}
        prm["shift"][prm["shift"] == 0] = 1
        self.psrc.extend(self.psrc.codec.pack_many(prm) * rows)


@stream_variant_test
async def layernorm_rows(dut: Any, idle: bool, backpressure: bool) -> None:
    v = StreamVariant(idle, backpressure)
    n_rows = env_int("LF_ROWS", 1000, 0)
    h = LayerNormHarness(dut, **v.harness_options())
    max_dim = int(os.environ["LF_MAX_DIM"])
    d_max = min(max_dim, int(os.environ.get("LF_DMAX", "64")))
    rng = v.rng()
    jobs = ln_corner_jobs(max_dim)
    n_corner = len(jobs)
    random_rows = 0
    while random_rows < n_rows:
        jobs.append(ln_random_job(rng, int(rng.integers(1, d_max + 1)),
                                  int(rng.integers(1, 5))))
        random_rows += jobs[-1]["x"].shape[0]
    await h.start()
    for j in jobs:
        h.queue(j)
    want = sum(j["x"].shape[0] * -(-j["x"].shape[1] // h.cols) for j in jobs)
    await h.wait_for(lambda: h.sb.rows_out, want, "output beats")
    h.stop()
    sb, name = h.sb, v.name
    summary = {"variant": name, "jobs": sb.jobs_in, "corner_jobs": n_corner,
               "random_jobs": len(jobs) - n_corner, "random_rows": random_rows,
               "rows": sb.rows_done, "input_beats": sb.beats_in, "output_beats": sb.rows_out,
               "max_d": max(j["x"].shape[1] for j in jobs),
               "mismatches": len(sb.bad_rows), "row_mismatches": sb.row_mismatches,
               "unmatched": sb.unmatched,
               "errors": sb.errors}
    write_result(name, summary)
    dut._log.info("variant %s: %d rows, %d mismatches", name, sb.rows_done, len(sb.bad_rows))
    assert sb.jobs_in == len(jobs), f"scoreboard saw {sb.jobs_in} of {len(jobs)} jobs"
    assert sb.rows_done == sum(j["x"].shape[0] for j in jobs)
    assert sb.unmatched == 0, f"{sb.unmatched} output beats without a partner"
    assert not sb.row_mismatches, (f"variant {name}: {len(sb.bad_rows)} rows mismatched:\n"
                                   + "\n".join(sb.errors))
