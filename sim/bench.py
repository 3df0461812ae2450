# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench``: benchmarks on the Verilated hardware, written as JSON.

``lightformer bench gemm --json PATH [--preset tiny] [--seed N]`` runs GEMM problems of several
shapes on :class:`hw.gemm.GemmPipeline` (tiles cut on the host, streamed back to back with no idle
cycles or backpressure) and records, per problem, the cycles from the first operand transfer to
the last output transfer against the ideal ``M*K*N / (rows*cols)`` (one MAC per PE per cycle).

``steady_state_utilization`` = sum of ideal cycles / sum of measured cycles over the cases with
``K >= 128`` (long enough that fill/drain is amortised, as in a real layer). Target: >= 0.90.

``lightformer bench attention ...`` is :mod:`sim.bench_attention`; ``lightformer bench sweep``
(board builds over boards and array sizes) is :mod:`boards.sweep`. The arguments, the bench run
and the report writing both share live in :mod:`sim.benchkit`; the JSON keys are listed in
``docs/cli.md``.

Top-level imports stay light (argparse only): amaranth and cocotb load inside ``run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from sim import bench_attention, bench_fuzz, bench_model
from sim.benchkit import (
    Say,
    add_common,
    common_fields,
    run_bench_test,
    say_for,
    write_report,
)
from sw.report import STDOUT

__all__ = ["BENCHES", "DEFAULT_CASES", "add_arguments", "bench", "gemm_cases", "print_table",
           "run", "run_gemm", "steady_state_utilization"]

#: (M in tiles of ``rows``, K, N in tiles of ``cols``): K in {16, 64, 128, 256}.
DEFAULT_CASES: tuple[tuple[int, int, int], ...] = (
    (2, 16, 2), (4, 16, 4), (4, 64, 4), (8, 64, 8), (4, 128, 4), (8, 128, 8), (4, 256, 4),
    (8, 256, 8), (16, 256, 16),
)
STEADY_K = 128
#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "bench.gemm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    g = sub.add_parser("gemm", help="GEMM pipeline utilization vs ideal MAC cycles",
                       description="GEMM pipeline utilization vs ideal MAC cycles")
    add_common(g, "build/bench/gemm.json")
    a = sub.add_parser("attention", help=bench_attention.DESCRIPTION,
                       description=bench_attention.DESCRIPTION)
    bench_attention.add_arguments(a)
    f = sub.add_parser("fuzz", help=bench_fuzz.DESCRIPTION, description=bench_fuzz.DESCRIPTION)
    bench_fuzz.add_arguments(f)
    md = sub.add_parser("model", help=bench_model.MODEL_DESCRIPTION,
                        description=bench_model.MODEL_DESCRIPTION)
    bench_model.add_model_arguments(md)
    ly = sub.add_parser("layer", help=bench_model.LAYER_DESCRIPTION,
                        description=bench_model.LAYER_DESCRIPTION)
    bench_model.add_layer_arguments(ly)
    from boards import sweep

    sw = sub.add_parser("sweep", help=sweep.DESCRIPTION, description=sweep.DESCRIPTION)
    sweep.add_arguments(sw)


def gemm_cases(rows: int, cols: int, k_depth: int,
               tiles: Sequence[tuple[int, int, int]] = DEFAULT_CASES) -> list[tuple[int, int, int]]:
    """Problem shapes ``(M, K, N)`` for a ``rows`` x ``cols`` array (K capped at ``k_depth``)."""
    return [(mt * rows, k, nt * cols) for mt, k, nt in tiles if k <= k_depth]


def steady_state_utilization(cases: Sequence[dict[str, Any]],
                             k_min: int = STEADY_K) -> float | None:
    """sum(ideal) / sum(cycles) over cases with ``K >= k_min`` (None if there are none)."""
    sel = [c for c in cases if c["K"] >= k_min]
    if not sel:
        return None
    return sum(c["ideal_cycles"] for c in sel) / sum(c["cycles"] for c in sel)


def run_gemm(params: Any, cases: Sequence[tuple[int, int, int]], *, seed: int = 1,
             progress: bool = True) -> dict[str, Any]:
    """Run ``cases`` on the Verilated GEMM pipeline; returns the bench JSON dict.

    The dict always has ``cases`` (possibly with ``mismatches > 0``, and ``error`` saying which
    cocotb test failed); a simulation that failed for any other reason raises
    :class:`sim.runner.SimulationError`.
    """
    from hw.gemm import GemmPipeline
    from sim import runner

    b = runner.build(lambda: GemmPipeline.from_params(params), name="gemm", params=params,
                     progress=progress)
    r = run_bench_test(b, "sim.tb_gemm", "gemm_bench", cases, seed=seed,
                       what="GEMM problems", progress=progress)
    res = r.cases
    total_cycles = sum(c["cycles"] for c in res)
    return {
        "bench": "gemm",
        **common_fields(params, b, seed),
        "rows": params.rows,
        "cols": params.cols,
        "cases": res,
        "steady_state_k_min": STEADY_K,
        "steady_state_utilization": steady_state_utilization(res),
        "mismatches": sum(c["mismatches"] for c in res),
        "bit_exact": all(c["mismatches"] == 0 for c in res),
        "sim_wall_s": round(r.wall_s, 2),           # including simulator start-up
        "sim_cycles_per_s": round(total_cycles / r.sim_s) if r.sim_s else None,
        "error": r.error,
    }


def print_table(data: dict[str, Any], say: Say = print, *,
                steady: bool = True) -> None:
    say(f"{'M':>5} {'K':>5} {'N':>5} {'cycles':>8} {'ideal':>8} {'util':>6} {'mism':>5}")
    for c in data["cases"]:
        say(f"{c['M']:>5} {c['K']:>5} {c['N']:>5} {c['cycles']:>8} {c['ideal_cycles']:>8} "
            f"{c['utilization']:>6.3f} {c['mismatches']:>5}")
    ss = data["steady_state_utilization"]
    if steady:
        say(f"steady-state utilization (K >= {data['steady_state_k_min']}): "
            + (f"{ss:.3f}" if ss is not None else "n/a"))


def bench(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """``lightformer bench gemm``: run the problems of ``args.preset``, print, return the report."""
    from hw.params import preset

    params = preset(args.preset)
    cases = gemm_cases(params.rows, params.cols, params.k_depth)
    say(f"bench gemm: preset {params.name} ({params.rows}x{params.cols}), "
        f"{len(cases)} problems")
    data = run_gemm(params, cases, seed=args.seed)
    print_table(data, say)
    return data


#: bench name -> (run it and print, report kind, what a mismatch counts).
BENCHES: dict[str, tuple[Callable[[argparse.Namespace, Say], dict[str, Any]], str, str]] = {
    "gemm": (bench, KIND, "elements"),
    "attention": (bench_attention.bench, bench_attention.KIND, "rows"),
    "fuzz": (bench_fuzz.bench, bench_fuzz.KIND, "corrupted memory words"),
    "model": (bench_model.bench_model, bench_model.KIND_MODEL, "samples"),
    "layer": (bench_model.bench_layer, bench_model.KIND_LAYER, "samples"),
}


def run(args: argparse.Namespace) -> int:
    which = getattr(args, "bench", None)
    if which is None:
        print("lightformer bench: choose a benchmark: gemm, attention or fuzz, or a whole "
              "program: model or layer, or a board build sweep: sweep (e.g. `lightformer bench "
              "gemm --json build/bench/gemm.json`)", file=sys.stderr)
        return 2
    if which == "sweep":                        # board builds, not a Verilated bench
        from boards import sweep

        return sweep.run(args)
    from sim.runner import SimulationError

    fn, kind, counted = BENCHES[which]
    say = say_for(args.json)
    try:
        data = fn(args, say)
    except SimulationError as exc:
        print(f"bench {which}: simulation failed: {exc}", file=sys.stderr)
        return 1
    write_report(args.json, data, kind=kind, say=say)
    if which == "gemm" and args.json not in (None, STDOUT):
        say(f"plot it with: python bench/gemm_utilization.py --from-json {args.json}")
    if data["error"] is not None or not data["bit_exact"]:
        print(f"bench {which}: {data['mismatches']} mismatching {counted}; "
              f"{data['error'] or ''}", file=sys.stderr)
        return 1
    return 0
