# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench attention``: cycles per query row of the Verilated attention unit.

For each case (runtime window, sequence length, causal or centred) one random sequence is
streamed through :class:`hw.attention.WindowedAttention` with K/V presented ahead of the queries
and no backpressure (``sim/tb_attention.py``, test ``attention_bench``), and every output row is
checked against :func:`sw.ref.windowed_attention_int`. Per case the JSON has:

``cycles_per_row``
    ``(t_last - t_first) / (seq_len - 1)`` over the output transfers: the rate at which rows
    leave once the pipeline is full (fill latency excluded; it is ``first_row_cycles``).
``ideal_cycles_per_row``
    ``ceil(window * head_dim / lanes)``: one full-window row through the ``lanes`` MACs of each
    of the two MAC stages (the design's ideal).
``mac_bound_cycles_per_row``
    The same bound for the rows actually measured (rows 1 .. T-1), whose windows are clipped at
    the sequence start (and end, centred): no implementation of this datapath can be faster.

``accuracy`` compares the integer model with float softmax attention (:func:`accuracy_vs_float`).

``worst_ratio`` is the largest ``cycles_per_row / ideal_cycles_per_row`` over the cases whose
sequence is at least four windows long (steady state); ``worst_ratio_all`` and
``worst_mac_bound_ratio`` cover every case. Target: ``worst_ratio <= 1.25``.

Top-level imports stay light: amaranth and cocotb load inside :func:`bench`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from sim.benchkit import (
    Say,
    add_common,
    common_fields,
    run_bench_test,
)

__all__ = ["ACCURACY_CASES", "DESCRIPTION", "STEADY_WINDOWS", "accuracy_vs_float",
           "add_arguments", "attention_cases", "bench", "float_attention", "print_table",
           "run_attention", "worst_ratio"]

DESCRIPTION = "windowed-attention unit cycles per row and accuracy vs float attention"
#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "bench.attention"

STEADY_WINDOWS = 4           # a case counts as steady state when seq_len >= 4 * window


def attention_cases(window: int) -> list[tuple[int, int, bool]]:
    """(window, seq_len, causal) cases for a unit whose largest window is ``window``."""
    w = window
    half = max(1, w // 2)
    cases = [(w, 8 * w, True), (w, 8 * w, False), (w, 4 * w, True), (half, 8 * half, True),
             (half, 8 * half, False), (w, w, True), (w, max(2, w // 2), False)]
    if w > 1:
        cases.append((1, 16, True))
    return cases


def worst_ratio(cases: Sequence[dict[str, Any]], *, steady_only: bool = True,
                key: str = "ideal_cycles_per_row") -> float | None:
    sel = [c for c in cases if not steady_only or c["seq_len"] >= STEADY_WINDOWS * c["window"]]
    if not sel:
        return None
    return max(c["cycles_per_row"] / c[key] for c in sel)


#: (T, d, window, causal, query scale) of the accuracy study.
ACCURACY_CASES: tuple[tuple[int, int, int, bool, float], ...] = (
    (64, 8, 8, True, 1.0), (64, 32, 32, True, 1.0), (64, 32, 32, False, 1.0),
    (128, 32, 32, True, 3.0), (256, 64, 64, False, 2.0), (300, 16, 256, True, 1.0),
)


def float_attention(qf: Any, kf: Any, vf: Any, window: int, causal: bool) -> Any:
    """Float softmax attention over the same windows as :func:`sw.ref.windowed_attention_int`.

    ``qf``, ``kf``, ``vf`` are ``(T, d)`` float arrays; returns ``(T, d)`` floats. The yardstick
    of the integer model's accuracy (here and in ``tests/test_ref_attention.py``).
    """
    import numpy as np

    from sw import ref

    seq_len, head_dim = qf.shape
    lo, hi = ref.attention_window_bounds(seq_len, window, causal)
    out = np.zeros_like(qf)
    for t in range(seq_len):
        s = qf[t] @ kf[lo[t]:hi[t]].T / np.sqrt(head_dim)
        p = np.exp(s - s.max())
        out[t] = (p / p.sum()) @ vf[lo[t]:hi[t]]
    return out


def accuracy_vs_float(*, trials: int = 5, seed: int = 0) -> dict[str, Any]:
    """Integer attention (``sw.ref``) against float softmax attention on the same int8 inputs.

    Normal random Q/K/V (Q scaled by the case's factor: sharper softmax), per-tensor absmax
    scales, the output scale from the float result's absmax. Errors are in output LSBs; the
    ``float_round_*`` columns are what rounding the float result itself costs. Also the integer
    softmax alone against float softmax on random rows. NumPy only; well under a second.
    """
    import numpy as np

    from sw import ref

    rng = np.random.default_rng(seed)
    rows = []
    for seq_len, d, window, causal, temp in ACCURACY_CASES:
        errs, base = [], []
        for _ in range(trials):
            qf = rng.normal(size=(seq_len, d)) * temp
            kf, vf = rng.normal(size=(seq_len, d)), rng.normal(size=(seq_len, d))
            scales = [float(np.abs(x).max() / 127) for x in (qf, kf, vf)]
            q, k, v = (np.clip(np.round(x / s), -128, 127).astype(np.int8)
                       for x, s in zip((qf, kf, vf), scales))
            want = float_attention(q * scales[0], k * scales[1], v * scales[2], window, causal)
            scale_out = float(np.abs(want).max() / 127)
            params = ref.AttentionQuant.from_scales(*scales, scale_out, d)
            y = ref.windowed_attention_int(q, k, v, window, causal, params)
            errs.append((y - want / scale_out).ravel())
            base.append((np.clip(np.round(want / scale_out), -128, 127) - want / scale_out)
                        .ravel())
        e, b = np.abs(np.concatenate(errs)), np.abs(np.concatenate(base))
        rows.append({"seq_len": seq_len, "head_dim": d, "window": window, "causal": causal,
                     "q_scale": temp, "trials": trials, "mean_abs_err_lsb": float(e.mean()),
                     "max_abs_err_lsb": float(e.max()), "float_round_mean_lsb": float(b.mean()),
                     "float_round_max_lsb": float(b.max())})
    probs = []
    params = ref.AttentionQuant.from_scales(0.05, 0.05, 1.0, 1.0, 1)   # 0.0025 per score step
    for n in (8, 32, 256):
        for spread in (1.0, 4.0):
            s = np.round(rng.normal(size=(2000, n)) * spread / 0.0025).astype(np.int64)
            p = ref.softmax_int(s, params.score_mult, params.score_shift) / 2.0 ** 15
            x = s * 0.0025
            pf = np.exp(x - x.max(axis=1, keepdims=True))
            pf /= pf.sum(axis=1, keepdims=True)
            err = np.abs(p - pf)
            probs.append({"keys": n, "logit_std": spread, "rows": 2000,
                          "max_abs_err": float(err.max()), "mean_abs_err": float(err.mean()),
                          "max_sum_err": float(np.abs(p.sum(axis=1) - 1).max())})
    return {"seed": seed, "attention": rows, "softmax": probs}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "build/bench/attention.json")


def run_attention(params: Any, cases: Sequence[tuple[int, int, bool]], *, seed: int = 1,
                  progress: bool = True) -> dict[str, Any]:
    """Run ``cases`` on the Verilated unit of ``params``; returns the bench JSON dict."""
    from hw.attention import WindowedAttention
    from sim import runner

    b = runner.build(lambda: WindowedAttention.from_params(params), name="attention",
                     params=params, progress=progress)
    r = run_bench_test(b, "sim.tb_attention", "attention_bench", cases, seed=seed,
                       what="attention sequences", progress=progress)
    res = r.cases
    return {
        "bench": "attention",
        **common_fields(params, b, seed),
        "head_dim": params.head_dim,
        "window": params.window,
        "lanes": params.attn_lanes,
        "cases": res,
        "steady_state_seq_len_min": f"{STEADY_WINDOWS} * window",
        "worst_ratio": worst_ratio(res),
        "worst_ratio_all": worst_ratio(res, steady_only=False),
        "worst_mac_bound_ratio": worst_ratio(res, steady_only=False,
                                             key="mac_bound_cycles_per_row"),
        "mismatches": sum(c["mismatches"] for c in res),
        "bit_exact": all(c["mismatches"] == 0 for c in res),
        "sim_wall_s": round(r.wall_s, 2),
        "error": r.error,
    }


def print_table(data: dict[str, Any], say: Say = print) -> None:
    say(f"{'window':>6} {'T':>5} {'mode':>8} {'cyc/row':>8} {'ideal':>6} {'ratio':>6} "
        f"{'MACbnd':>7} {'mism':>5}")
    for c in data["cases"]:
        say(f"{c['window']:>6} {c['seq_len']:>5} {'causal' if c['causal'] else 'centred':>8} "
            f"{c['cycles_per_row']:>8.2f} {c['ideal_cycles_per_row']:>6} "
            f"{c['cycles_per_row'] / c['ideal_cycles_per_row']:>6.3f} "
            f"{c['mac_bound_cycles_per_row']:>7.2f} {c['mismatches']:>5}")
    wr = data["worst_ratio"]
    say("worst steady-state ratio (seq_len >= 4 windows): "
        + (f"{wr:.3f}" if wr is not None else "n/a"))


def bench(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """``lightformer bench attention``: run the cases of ``args.preset``, print, return the
    report (:func:`sim.bench.run` writes it)."""
    from hw.params import preset

    params = preset(args.preset)
    cases = attention_cases(params.window)
    say(f"bench attention: preset {params.name} (head_dim {params.head_dim}, window "
        f"{params.window}, lanes {params.attn_lanes}), {len(cases)} cases")
    data = run_attention(params, cases, seed=args.seed)
    data["accuracy"] = accuracy_vs_float(seed=args.seed)
    print_table(data, say)
    for r in data["accuracy"]["attention"]:
        say(f"accuracy T={r['seq_len']} d={r['head_dim']} window={r['window']} "
            f"{'causal' if r['causal'] else 'centred'}: mean |err| "
            f"{r['mean_abs_err_lsb']:.3f} LSB (float rounding alone "
            f"{r['float_round_mean_lsb']:.3f}), max {r['max_abs_err_lsb']:.3f} LSB")
    return data
