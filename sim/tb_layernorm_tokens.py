# SPDX-License-Identifier: Apache-2.0
"""cocotb bench for :class:`hw.layernorm_tokens.TokenLayerNorm` (run through :mod:`sim.runner`,
not pytest).

Tests
-----
``token_layernorm_blocks(idle, backpressure)``
    The corner jobs of :mod:`sim.tb_layernorm` and random jobs (random ``d``, 1..``3 * rows``
    rows: up to three blocks), each cut into blocks of ``rows`` tokens (one lane each; a job's
    last block is filled with random rows), until ``LF_ROWS`` random rows were sent, in one of
    the four stream variants. A scoreboard fed by the transfers the DUT accepted compares every
    lane's output row with :func:`sw.ref.layernorm_int` (``np.testing.assert_array_equal``),
    filler rows included.

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


class TokenLayerNormScoreboard(Scoreboard):
    """Model fed by what the DUT accepted (configs, block beats, parameter beats)."""

    def __init__(self, ports: dict[str, Any], lanes: int) -> None:
        super().__init__(ports)
        self.lanes = lanes
        self._cfgs: collections.deque[dict[str, int]] = collections.deque()
        self._block: list[np.ndarray] = []
        self._blocks: collections.deque[tuple[np.ndarray, int, int]] = collections.deque()
        self._prm: list[dict[str, int]] = []
        self.expected: collections.deque[tuple[np.ndarray, int, int]] = collections.deque()
        self._outs: collections.deque[dict[str, Any]] = collections.deque()
        self.jobs_in = 0
        self.blocks_in = 0
        self.blocks_done = 0
        self.beats_in = 0
        self.bad_blocks: set[int] = set()

    def on_cfg(self, raw: int) -> None:
        self._cfgs.append(self.codec["i_cfg"].unpack(raw))

    def on_beat(self, raw: int) -> None:
        p = self.codec["i_stream"].unpack(raw)
        self.beats_in += 1
        self._block.append(p["x"])
        if len(self._block) == self._cfgs[0]["dim"]:            # the block is complete
            x = np.stack(self._block, axis=1)                    # (lanes, d)
            self._blocks.append((x, self._cfgs[0]["eps"], int(p["last"])))
            self._block = []
            self.blocks_in += 1
            if p["last"]:
                self._cfgs.popleft()
                self.jobs_in += 1

    def on_param(self, raw: int) -> None:
        # Parameters are taken only in the normalize phase, after the whole block arrived.
        self._prm.append(self.codec["i_param"].unpack(raw))
        x, eps, last = self._blocks[0]
        d = x.shape[1]
        if len(self._prm) < d:
            return
        prm = {f: np.array([int(q[f]) for q in self._prm]) for f in self._prm[0]}
        self._prm = []
        self._blocks.popleft()
        y = ref.layernorm_int(x.astype(np.int8), prm["gamma"].astype(np.int8),
                              prm["beta"].astype(np.int32), prm["mult"], prm["shift"], eps)
        for c in range(d):
            self.expected.append((y[:, c], int(last and c == d - 1), self.blocks_done))
        self.blocks_done += 1
        self._match()

    def on_output(self, raw: int) -> None:
        self._outs.append(self.codec["o_stream"].unpack(raw))
        self.rows_out += 1
        self._match()

    def _match(self) -> None:
        while self._outs and self.expected:
            p = self._outs.popleft()
            want, last, block = self.expected.popleft()
            try:
                np.testing.assert_array_equal(p["data"], want)
                assert p["last"] == last, f"last={p['last']} but expected {last}"
            except AssertionError as exc:
                self.row_mismatches += 1
                self.bad_blocks.add(block)
                self.note(f"block {block}: {exc}")

    @property
    def unmatched(self) -> int:
        """Outputs without a model beat plus model beats without an output."""
        return len(self._outs) + len(self.expected)


class TokenLayerNormHarness(Harness):
    def __init__(self, dut: Any, *, idle: bool, backpressure: bool, seed: int) -> None:
        super().__init__(dut, seed=seed)
        self.lanes = self.params.rows
        self.sb = TokenLayerNormScoreboard(self.ports, self.lanes)
        self.rng = np.random.default_rng(seed)
        self.csrc = self.add_source("i_cfg", self.sb.on_cfg, idle=idle)
        self.src = self.add_source("i_stream", self.sb.on_beat, idle=idle)
        self.psrc = self.add_source("i_param", self.sb.on_param, idle=idle)
        self.sink = self.add_sink("o_stream", self.sb.on_output, backpressure=backpressure)

    def blocks(self, j: dict[str, Any]) -> int:
        return -(-j["x"].shape[0] // self.lanes)

    def queue(self, j: dict[str, Any]) -> None:
        rows, d = j["x"].shape
        n = self.blocks(j)
        self.csrc.send(self.csrc.codec.pack({"dim": d, "eps": j["eps"]}))
        x = self.rng.integers(-128, 128, (n * self.lanes, d))    # filler rows: random
        x[:rows] = j["x"]
        beats = x.reshape(n, self.lanes, d).transpose(0, 2, 1).reshape(n * d, self.lanes)
        last = np.zeros(n * d, dtype=np.int64)
        last[-1] = 1
        self.src.extend(self.src.codec.pack_many({"x": beats, "last": last}))
        shift = np.where(j["shift"] == 0, 1, j["shift"])
        prm = {"gamma": j["gamma"], "beta": j["beta"], "mult": j["mult"], "shift": shift}
        self.psrc.extend(self.psrc.codec.pack_many(prm) * n)


@stream_variant_test
async def token_layernorm_blocks(dut: Any, idle: bool, backpressure: bool) -> None:
    v = StreamVariant(idle, backpressure)
    n_rows = env_int("LF_ROWS", 1000, 0)
    h = TokenLayerNormHarness(dut, **v.harness_options())
    max_dim = int(os.environ["LF_MAX_DIM"])
    d_max = min(max_dim, int(os.environ.get("LF_DMAX", "64")))
    rng = v.rng()
    jobs = ln_corner_jobs(max_dim)
    n_corner = len(jobs)
    random_rows = 0
    while random_rows < n_rows:
        jobs.append(ln_random_job(rng, int(rng.integers(1, d_max + 1)),
                                  int(rng.integers(1, 3 * h.lanes + 1))))
        random_rows += jobs[-1]["x"].shape[0]
    await h.start()
    for j in jobs:
        h.queue(j)
    want = sum(h.blocks(j) * j["x"].shape[1] for j in jobs)
    await h.wait_for(lambda: h.sb.rows_out, want, "output beats")
    h.stop()
    sb, name = h.sb, v.name
    summary = {"variant": name, "jobs": sb.jobs_in, "corner_jobs": n_corner,
               "random_jobs": len(jobs) - n_corner, "random_rows": random_rows,
               "rows": sb.blocks_done * h.lanes, "blocks": sb.blocks_done,
               "input_beats": sb.beats_in, "output_beats": sb.rows_out,
               "max_d": max(j["x"].shape[1] for j in jobs),
               "mismatches": len(sb.bad_blocks), "row_mismatches": sb.row_mismatches,
               "unmatched": sb.unmatched, "errors": sb.errors}
    write_result(name, summary)
    dut._log.info("variant %s: %d blocks, %d mismatches", name, sb.blocks_done,
                  len(sb.bad_blocks))
    assert sb.jobs_in == len(jobs), f"scoreboard saw {sb.jobs_in} of {len(jobs)} jobs"
    assert sb.blocks_done == sum(h.blocks(j) for j in jobs)
    assert sb.unmatched == 0, f"{sb.unmatched} output beats without a partner"
    assert not sb.row_mismatches, (f"variant {name}: {len(sb.bad_blocks)} blocks mismatched:\n"
                                   + "\n".join(sb.errors))
