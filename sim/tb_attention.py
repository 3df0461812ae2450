# SPDX-License-Identifier: Apache-2.0
"""cocotb bench for :class:`hw.attention.WindowedAttention` (run through :mod:`sim.runner`).

Tests
-----
``attention_rows(causal, idle, backpressure)``
    Corner sequences plus random sequences until ``LF_ROWS`` random query rows were sent (random
    lengths shorter than, equal to and longer than the window, random runtime windows
    1..``window``, random softmax sharpness and output scales), in one window mode and one of the
    four stream variants. A scoreboard fed by the transfers the DUT accepted compares every output
    row (and its ``last`` flag) with :func:`sw.ref.windowed_attention_int`
    (``np.testing.assert_array_equal``).
``attention_bench``
    One sequence per case of ``LF_BENCH_CASES`` (JSON ``[[window, seq_len, causal], ...]``),
    no idle or backpressure, K/V streamed ahead of the queries; records the transfer time of
    every output row.

Environment: ``LF_ROWS`` (default 1000) · ``LF_SEED`` (default 1) · ``LF_RESULT_JSON`` ·
``LF_BENCH_CASES`` · ``LF_PARAMS`` / ``LF_PORTS`` (set by the runner).
"""

from __future__ import annotations

from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from sim import harness
from sim.harness import Harness, Scoreboard, bench_inputs, steps_per_cycle, write_result
from sim.suites import env_int
from sw import ref

PAUSE_P = 0.5                  # idle / backpressure probability per cycle in those variants


# -- sequences -----------------------------------------------------------------------------------

def _seq(q, k, v, window: int, causal: bool, params: ref.AttentionQuant,
         kind: str) -> dict[str, Any]:
    return {"q": np.asarray(q, dtype=np.int8), "k": np.asarray(k, dtype=np.int8),
            "v": np.asarray(v, dtype=np.int8), "window": int(window), "causal": bool(causal),
            "params": params, "kind": kind}


def random_params(rng: np.random.Generator, head_dim: int) -> ref.AttentionQuant:
    """Mostly realistic scales (soft to sharp softmax), sometimes raw corner constants."""
    pick = rng.random()
    if pick < 0.85:
        s_qk = 2.0 ** rng.uniform(-12.0, -3.0)            # scale_q * scale_k
        scale_v = 2.0 ** rng.uniform(-8.0, 0.0)
        scale_out = scale_v * 2.0 ** rng.uniform(-2.0, 1.5)  # some outputs saturate
        return ref.AttentionQuant.from_scales(np.sqrt(s_qk), np.sqrt(s_qk), scale_v, scale_out,
                                              head_dim)
    s_mult = int(rng.choice([0, 1, (1 << 15) - 1, int(rng.integers(0, 1 << 15))]))
    s_shift = int(rng.choice([1, 47, int(rng.integers(1, 48))]))
    o_mult = int(rng.choice([1, (1 << 15) - 1, 1 << 14, int(rng.integers(0, 1 << 15))]))
    o_shift = int(rng.choice([1, 47, 22, int(rng.integers(15, 40))]))
    return ref.AttentionQuant(s_mult, s_shift, o_mult, o_shift)


def random_sequence(rng: np.random.Generator, head_dim: int, window_max: int,
                    causal: bool) -> dict[str, Any]:
    window = window_max if rng.random() < 0.5 else int(rng.integers(1, window_max + 1))
    pick = rng.random()
    if pick < 0.25:
        seq_len = int(rng.integers(1, window + 1))               # shorter than / equal to W
    elif pick < 0.4:
        seq_len = window + int(rng.integers(0, 2))               # W, W + 1
    else:
        seq_len = int(rng.integers(window + 1, 4 * window_max + 8))
    if rng.random() < 0.8:
        q, k, v = (rng.integers(-128, 128, (seq_len, head_dim)) for _ in range(3))
    else:                                                        # small values: soft rows
        q, k, v = (rng.integers(-3, 4, (seq_len, head_dim)) for _ in range(3))
    return _seq(q, k, v, window, causal, random_params(rng, head_dim), "random")


def corner_sequences(head_dim: int, window_max: int, causal: bool) -> list[dict[str, Any]]:
    """All-equal, one-hot, saturating, 1.0-edge, window 1, T=1, T around the window."""
    d, w = head_dim, window_max
    rng = np.random.default_rng(7)
    t = 2 * w + 3
    soft = ref.AttentionQuant.from_scales(0.05, 0.05, 0.03, 0.02, d)
    sharp = ref.AttentionQuant((1 << 15) - 1, 1, 1 << 14, 29)    # every difference saturates
    ones = np.ones((t, d))
    v = rng.integers(-128, 128, (t, d))
    onehot_k = np.zeros((t, d))
    onehot_k[::3] = 127
    loud = np.full((t, d), -128)
    alt = np.where(np.arange(t)[:, None] % 2 == 0, -128, 127).repeat(d, 1)
    seqs = [
        _seq(ones, ones, v, w, causal, soft, "all_equal"),
        _seq(ones * 10, onehot_k, v, w, causal, soft, "one_hot"),
        _seq(loud, loud, v, w, causal, soft, "max_scores"),
        _seq(loud, alt, v, w, causal, sharp, "saturating"),
        _seq(loud, alt, np.full((t, d), -128), w, causal, sharp, "saturating_v_min"),
        _seq(ones, ones, v, 1, causal, soft, "window_1"),
        _seq(ones[:1], ones[:1], v[:1], w, causal, soft, "t_1"),
        _seq(loud, loud, np.full((t, d), 127), w, causal,
             ref.AttentionQuant(1, 47, (1 << 15) - 1, 1), "out_saturate"),
    ]
    for seq_len in sorted({max(1, w - 1), w, w + 1}):
        q, k, vv = (rng.integers(-128, 128, (seq_len, d)) for _ in range(3))
        seqs.append(_seq(q, k, vv, w, causal, soft, f"t_{seq_len}"))
    return seqs


# -- scoreboard ----------------------------------------------------------------------------------

class AttentionScoreboard(Scoreboard):
    """Model fed by the accepted transfers; checks every output row against the reference.

    Sequences are delimited by the ``i_cfg`` transfers: sequence ``s`` owns the next
    ``seq_len`` K/V and query transfers. Its expected rows are computed once it is complete.
    """

    def __init__(self, ports: dict[str, Any], *, keep: int = 5) -> None:
        super().__init__(ports, keep=keep)
        self.seqs: list[dict[str, Any]] = []
        # Sequence of the next K/V, query and output transfer; row of the next output.
        self._kv_seq = self._q_seq = self._out_seq = self._out_row = 0
        self.seqs_bad: set[int] = set()

    def on_cfg(self, raw: int) -> None:
        c = self.codec["i_cfg"].unpack(raw)
        self.seqs.append({"cfg": c, "k": [], "v": [], "q": [], "out": [], "want": None})

    def _owner(self, attr: str, field: str) -> dict[str, Any]:
        s = getattr(self, attr)
        while len(self.seqs[s][field]) >= self.seqs[s]["cfg"]["seq_len"]:
            s += 1
            setattr(self, attr, s)
        return self.seqs[s]

    def on_kv(self, raw: int) -> None:
        p = self.codec["i_kv"].unpack(raw)
        seq = self._owner("_kv_seq", "k")
        seq["k"].append(p["k"])
        seq["v"].append(p["v"])

    def on_q(self, raw: int) -> None:
        self._owner("_q_seq", "q")["q"].append(self.codec["i_q"].unpack(raw))

    def _expected(self, s: int) -> np.ndarray:
        seq = self.seqs[s]
        if seq["want"] is None:
            c = seq["cfg"]
            if len(seq["k"]) < c["seq_len"] or len(seq["q"]) < c["seq_len"]:
                raise AssertionError(f"sequence {s}: output row {len(seq['out'])} arrived "
                                     "before all its K/V and query rows were sent")
            params = ref.AttentionQuant(c["score_mult"], c["score_shift"], c["out_mult"],
                                        c["out_shift"])
            seq["want"] = ref.windowed_attention_int(
                np.array(seq["q"], dtype=np.int8), np.array(seq["k"], dtype=np.int8),
                np.array(seq["v"], dtype=np.int8), int(c["window"]), bool(c["causal"]), params)
        return seq["want"]

    def on_output(self, raw: int) -> None:
        p = self.codec["o_stream"].unpack(raw)
        while self._out_seq < len(self.seqs) and \
                self._out_row >= self.seqs[self._out_seq]["cfg"]["seq_len"]:
            self._out_seq += 1
            self._out_row = 0
        s, t = self._out_seq, self._out_row
        self.rows_out += 1
        self._out_row += 1
        if s >= len(self.seqs):
            self._fail(s, f"output row {self.rows_out} arrived with no sequence configured")
            return
        seq = self.seqs[s]
        seq["out"].append(p["data"])
        seq_len = seq["cfg"]["seq_len"]
        # A causal row depends only on earlier K/V rows, so it may leave before the sequence's
        # later rows were sent: check it once the sequence is complete (at the latest, in
        # finish()).
        if len(seq["k"]) == seq_len and len(seq["q"]) == seq_len:
            self._check_row(s, t, p)
        else:
            seq.setdefault("pending", []).append((t, p))
        if bool(p["last"]) != (t == seq_len - 1):
            self._fail(s, f"sequence {s} row {t}: last={p['last']}, expected "
                          f"{int(t == seq_len - 1)}")

    def _check_row(self, s: int, t: int, p: dict[str, Any]) -> None:
        want = self._expected(s)[t]
        try:
            np.testing.assert_array_equal(p["data"], want)
        except AssertionError as exc:
            c = self.seqs[s]["cfg"]
            self._fail(s, f"sequence {s} (T={c['seq_len']}, window={c['window']}, causal="
                          f"{c['causal']}) row {t}: {exc}")

    def finish(self) -> None:
        for s, seq in enumerate(self.seqs):
            for t, p in seq.pop("pending", []):
                self._check_row(s, t, p)

    def _fail(self, s: int, msg: str) -> None:
        self.row_mismatches += 1
        self.seqs_bad.add(s)
        self.note(msg)


# -- harness -------------------------------------------------------------------------------------

class AttentionHarness(Harness):
    """Clock, reset, the four stream drivers and a scoreboard around the DUT."""

    def __init__(self, dut: Any, *, idle: bool = False, backpressure: bool = False,
                 seed: int = 0, record_times: bool = False) -> None:
        super().__init__(dut, seed=seed, pause_p=PAUSE_P, record_times=record_times)
        self.head_dim = self.params.head_dim
        self.window = self.params.window
        self.sb = AttentionScoreboard(self.ports)
        self.cfg_src = self.add_source("i_cfg", self.sb.on_cfg, idle=idle)
        self.kv_src = self.add_source("i_kv", self.sb.on_kv, idle=idle)
        self.q_src = self.add_source("i_q", self.sb.on_q, idle=idle)
        self.sink = self.add_sink("o_stream", self.sb.on_output, backpressure=backpressure)
        self.rows_queued = 0

    def queue(self, seq: dict[str, Any]) -> None:
        p = seq["params"]
        seq_len = seq["q"].shape[0]
        self.cfg_src.send(self.cfg_src.codec.pack({
            "seq_len": seq_len, "window": seq["window"], "causal": int(seq["causal"]),
            "score_mult": p.score_mult, "score_shift": p.score_shift, "out_mult": p.out_mult,
            "out_shift": p.out_shift}))
        self.kv_src.extend(self.kv_src.codec.pack_many({"k": seq["k"], "v": seq["v"]}))
        self.q_src.extend(int.from_bytes(row.astype("<i1").tobytes(), "little")
                          for row in seq["q"])
        self.rows_queued += seq_len

    async def drain(self) -> None:
        """Wait until every queued row came out; fail on a stall or on extra rows."""
        await self.wait_for(lambda: self.sb.rows_out, self.rows_queued, "output rows",
                            poll_cycles=200)
        self.sb.finish()


def variant_name(causal: bool, window: int, head_dim: int, idle: bool, bp: bool) -> str:
    return (f"{'causal' if causal else 'centred'} window={window} d={head_dim} "
            f"idle={'on' if idle else 'off'} bp={'on' if bp else 'off'}")


@cocotb.test()
@cocotb.parametrize(causal=[True, False], idle=[False, True], backpressure=[False, True])
async def attention_rows(dut: Any, causal: bool, idle: bool, backpressure: bool) -> None:
    v = harness.StreamVariant(idle, backpressure, offset=4 * int(causal))
    n_rows = env_int("LF_ROWS", 1000, 0)
    h = AttentionHarness(dut, **v.harness_options())
    rng = v.rng()
    d, w = h.head_dim, h.window
    seqs = corner_sequences(d, w, causal)
    n_corner_rows = sum(s["q"].shape[0] for s in seqs)
    random_rows = 0
    while random_rows < n_rows:
        s = random_sequence(rng, d, w, causal)
        seqs.append(s)
        random_rows += s["q"].shape[0]
    await h.start()
    for s in seqs:
        h.queue(s)
    await h.drain()
    h.stop()
    sb = h.sb
    name = variant_name(causal, w, d, idle, backpressure)
    summary = {"variant": name, "rows": sb.rows_out, "random_rows": random_rows,
               "corner_rows": n_corner_rows, "sequences": len(seqs),
               "mismatches": sb.row_mismatches, "bad_sequences": len(sb.seqs_bad),
               "errors": sb.errors}
    write_result(name, summary)
    dut._log.info("%s: %d rows, %d mismatches", name, sb.rows_out, sb.row_mismatches)
    assert sb.rows_out == random_rows + n_corner_rows
    assert not sb.row_mismatches, (f"{name}: {sb.row_mismatches} mismatching rows in "
                                   f"{len(sb.seqs_bad)} sequences:\n" + "\n".join(sb.errors))


@cocotb.test()
async def attention_bench(dut: Any) -> None:
    cases, seed = bench_inputs([[8, 64, True]])
    h = AttentionHarness(dut, record_times=True)
    await h.start()
    d, w_max = h.head_dim, h.window
    spc = steps_per_cycle()
    results = []
    for ci, (window, seq_len, causal) in enumerate(cases):
        if not 1 <= window <= w_max or seq_len < 2:
            raise ValueError(f"bench case (window, seq_len, causal) needs 1 <= window <= "
                             f"{w_max} and seq_len >= 2, not {(window, seq_len, causal)!r}")
        rng = np.random.default_rng([seed, ci])
        q, k, v = (rng.integers(-128, 128, (seq_len, d)) for _ in range(3))
        seq = _seq(q, k, v, window, bool(causal),
                   ref.AttentionQuant.from_scales(0.03, 0.03, 0.03, 0.02, d), "bench")
        n_out0 = len(h.sink.times)
        n_cfg0 = len(h.cfg_src.times)
        rows0 = h.sb.rows_out
        h.queue(seq)
        await h.drain()
        outs = h.sb.seqs[-1]["out"]
        want = ref.windowed_attention_int(seq["q"], seq["k"], seq["v"], window, bool(causal),
                                          seq["params"])
        mismatches = int(sum(not np.array_equal(o, wr) for o, wr in zip(outs, want)))
        times = np.array(h.sink.times[n_out0:], dtype=np.int64) // spc
        t_cfg = h.cfg_src.times[n_cfg0] // spc
        assert h.sb.rows_out - rows0 == seq_len == times.size
        lo, hi = ref.attention_window_bounds(seq_len, window, bool(causal))
        keys = hi - lo
        lanes = h.params.attn_lanes
        # Rows 1 .. T-1: the rate at which rows leave once the pipeline is full.
        steady = (int(times[-1]) - int(times[0])) / (seq_len - 1)
        mac_bound = float(np.mean(-(-keys[1:] * d // lanes)))
        results.append({
            "window": window, "head_dim": d, "lanes": lanes, "seq_len": seq_len,
            "causal": bool(causal), "rows": seq_len, "mismatches": mismatches,
            "cycles_per_row": steady,
            "ideal_cycles_per_row": -(-window * d // lanes),
            "mac_bound_cycles_per_row": mac_bound,
            "total_cycles": int(times[-1]) - int(t_cfg),
            "first_row_cycles": int(times[0]) - int(t_cfg),
        })
        dut._log.info("bench window=%d T=%d causal=%s: %.2f cycles/row (ideal %d, MAC bound "
                      "%.2f), %d mismatches", window, seq_len, causal, steady,
                      -(-window * d // lanes), mac_bound, mismatches)
        await ClockCycles(dut.clk, 10)
    h.stop()
    write_result("bench", {"cases": results})
    bad = [r for r in results if r["mismatches"]]
    assert not bad, f"bench cases with mismatches: {bad}"
