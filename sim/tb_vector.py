# SPDX-License-Identifier: Apache-2.0
"""cocotb bench for :class:`hw.vector.VectorUnit` (run through :mod:`sim.runner`, not pytest).

Tests
-----
``vector_jobs(idle, backpressure)``
    Loads every activation table through ``i_lut`` (random tables and a GELU table), then runs
    corner jobs and random jobs of every op (``ADD``, ``LUT``, ``POOL``, ``PASS``) until
    ``LF_ROWS`` random input rows were sent, in one of the four stream variants. A scoreboard
    fed by the transfers the DUT accepted compares every output beat with ``sw.ref``
    (:func:`~sw.ref.residual_add`, :func:`~sw.ref.lut_apply`, :func:`~sw.ref.mean_pool_int`,
    the identity) with ``np.testing.assert_array_equal``.

Environment: ``LF_ROWS`` random rows per variant (default 1000) · ``LF_SEED`` base seed
(default 1) · ``LF_RESULT_JSON`` where the summary goes · ``LF_PARAMS`` / ``LF_PORTS`` (runner).
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from hw.vector import VecOp
from sim.harness import Harness, Scoreboard, StreamVariant, stream_variant_test, write_result
from sim.stimulus import vec_corner_jobs, vec_outputs, vec_random_job, vec_tables
from sim.suites import env_int
from sw import ref

# -- scoreboard ----------------------------------------------------------------------------------

class VectorScoreboard(Scoreboard):
    """Model fed by what the DUT accepted (tables, configs, beats); compares every output."""

    def __init__(self, ports: dict[str, Any], cols: int, lut_count: int) -> None:
        super().__init__(ports)
        self.cols = cols
        self.luts = np.zeros((lut_count, ref.LUT_SIZE), dtype=np.int8)
        self._cfgs: collections.deque[dict[str, Any]] = collections.deque()
        self._beats: list[dict[str, Any]] = []
        self.expected: collections.deque[tuple[np.ndarray, int, int]] = collections.deque()
        self.jobs_in = 0
        self.jobs_bad: set[int] = set()
        self.lut_writes = 0
        self.beats_in = 0

    def on_lut(self, raw: int) -> None:
        p = self.codec["i_lut"].unpack(raw)
        self.luts[p["table"], p["index"]] = p["value"]
        self.lut_writes += 1

    def on_cfg(self, raw: int) -> None:
        self._cfgs.append(self.codec["i_cfg"].unpack(raw))

    def on_beat(self, raw: int) -> None:
        # A job's config is accepted no later than its first beat, and its source is stepped
        # first within a cycle, so it is always here by now.
        p = self.codec["i_stream"].unpack(raw)
        cfg = self._cfgs[0]
        op = VecOp(cfg["op"])
        a, b = p["a"], p["b"]
        self.beats_in += 1
        if op == VecOp.POOL:
            self._beats.append(p)
            if p["last"]:
                rows = np.array([q["a"] for q in self._beats]).astype(np.int8)
                self._expect(ref.mean_pool_int(rows, cfg["mult0"], cfg["shift"]), 1)
                self._beats = []
        elif op == VecOp.ADD:
            self._expect(ref.residual_add(a.astype(np.int8), b.astype(np.int8),
                                          np.array([cfg["mult0"], cfg["mult1"]]),
                                          cfg["shift"]), p["last"])
        elif op == VecOp.LUT:
            self._expect(ref.lut_apply(a.astype(np.int8), self.luts[cfg["table"]]), p["last"])
        else:
            self._expect(a, p["last"])
        if p["last"]:
            self._cfgs.popleft()
            self.jobs_in += 1

    def _expect(self, want: np.ndarray, last: int) -> None:
        self.expected.append((np.asarray(want, dtype=np.int64), int(last), self.jobs_in))

    def on_output(self, raw: int) -> None:
        p = self.codec["o_stream"].unpack(raw)
        self.rows_out += 1
        if not self.expected:
            self.row_mismatches += 1
            self.note(f"output {self.rows_out - 1} {p['data'].tolist()} arrived before its "
                      "input was sent")
            return
        want, last, jid = self.expected.popleft()
        try:
            np.testing.assert_array_equal(p["data"], want)
            assert p["last"] == last, f"last={p['last']} but expected {last}"
        except AssertionError as exc:
            self.row_mismatches += 1
            self.jobs_bad.add(jid)
            self.note(f"job {jid} output {self.rows_out - 1}: {exc}")


# -- harness -------------------------------------------------------------------------------------

class VectorHarness(Harness):
    def __init__(self, dut: Any, *, idle: bool, backpressure: bool, seed: int) -> None:
        super().__init__(dut, seed=seed)
        self.cols, self.lut_count = self.params.cols, self.params.lut_count
        self.sb = VectorScoreboard(self.ports, self.cols, self.lut_count)
        # The config source is stepped before the data source (see on_beat).
        self.lsrc = self.add_source("i_lut", self.sb.on_lut, idle=idle)
        self.csrc = self.add_source("i_cfg", self.sb.on_cfg, idle=idle)
        self.src = self.add_source("i_stream", self.sb.on_beat, idle=idle)
        self.sink = self.add_sink("o_stream", self.sb.on_output, backpressure=backpressure)

    def load_luts(self, luts: np.ndarray) -> None:
        t, i = np.meshgrid(np.arange(luts.shape[0]), np.arange(luts.shape[1]), indexing="ij")
        self.lsrc.extend(self.lsrc.codec.pack_many({"table": t.ravel(), "index": i.ravel(),
                                                    "value": luts.ravel()}))

    def queue(self, j: dict[str, Any]) -> None:
        n = len(j["a"])
        self.csrc.send(self.csrc.codec.pack({**j["cfg"], "op": j["cfg"]["op"].value}))
        self.src.extend(self.src.codec.pack_many({"a": j["a"], "b": j["b"],
                                                  "last": np.arange(n) == n - 1}))


@stream_variant_test
async def vector_jobs(dut: Any, idle: bool, backpressure: bool) -> None:
    v = StreamVariant(idle, backpressure)
    n_rows = env_int("LF_ROWS", 1000, 0)
    h = VectorHarness(dut, **v.harness_options())
    rng = v.rng()
    luts = vec_tables(rng, h.lut_count)
    jobs = vec_corner_jobs(h.cols, h.lut_count)
    n_corner = len(jobs)
    random_rows = 0
    while random_rows < n_rows:
        jobs.append(vec_random_job(rng, h.cols, h.lut_count))
        random_rows += len(jobs[-1]["a"])
    await h.start()
    h.load_luts(luts)
    await h.wait_for(lambda: h.sb.lut_writes, luts.size, "table writes")
    for j in jobs:
        h.queue(j)
    want = sum(vec_outputs(j) for j in jobs)
    await h.wait_for(lambda: h.sb.rows_out, want, "output beats")
    h.stop()
    sb, name = h.sb, v.name
    ops = collections.Counter(j["cfg"]["op"].name for j in jobs)
    summary = {"variant": name, "jobs": sb.jobs_in, "corner_jobs": n_corner,
               "random_jobs": len(jobs) - n_corner, "random_rows": random_rows,
               "input_rows": sb.beats_in, "output_rows": sb.rows_out,
               "table_writes": sb.lut_writes, "ops": dict(ops),
               "mismatches": len(sb.jobs_bad), "row_mismatches": sb.row_mismatches,
               "errors": sb.errors}
    write_result(name, summary)
    dut._log.info("variant %s: %d jobs, %d mismatches", name, sb.jobs_in, len(sb.jobs_bad))
    assert sb.jobs_in == len(jobs), f"scoreboard saw {sb.jobs_in} of {len(jobs)} jobs"
    assert not sb.row_mismatches, (f"variant {name}: {sb.row_mismatches} outputs of "
                                   f"{len(sb.jobs_bad)} jobs mismatched:\n"
                                   + "\n".join(sb.errors))
