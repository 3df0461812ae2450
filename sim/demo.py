# SPDX-License-Identifier: Apache-2.0
"""``lightformer demo``: a random int8 GEMM + requant on the Verilated GEMM pipeline.

Runs ``(M, K) @ (K, N)`` (default 16x64 @ 64x16) tile by tile on :class:`hw.gemm.GemmPipeline`
under Verilator, compares the int8 result with :func:`sw.ref.gemm_requant` element by element
and prints bit-exact yes/no, mismatches, cycles and utilization (ideal MAC cycles / cycles).
Exit status 1 when the result is not bit-exact. Needs only the ``sim`` extra (no torch, no
YoWASP): ``make demo``. ``--json PATH`` (``-`` for stdout) writes the result; its keys are listed
in ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys

from sim.benchkit import add_common, int_type, say_for, write_report

__all__ = ["add_arguments", "run"]

#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "demo"


_dim = int_type("dimension", 1, "positive")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, None)
    parser.add_argument("--m", type=_dim, default=16, help="rows of A (multiple of rows)")
    parser.add_argument("--k", type=_dim, default=64, help="inner dimension (<= k_depth)")
    parser.add_argument("--n", type=_dim, default=16, help="columns of W (multiple of cols)")


def run(args: argparse.Namespace) -> int:
    from hw.params import preset
    from sim.bench import print_table, run_gemm
    from sim.runner import SimulationError

    params = preset(args.preset)
    m, k, n = args.m, args.k, args.n
    problems = []
    if m % params.rows:
        problems.append(f"--m must be a multiple of rows={params.rows}, not {m}")
    if n % params.cols:
        problems.append(f"--n must be a multiple of cols={params.cols}, not {n}")
    if k > params.k_depth:
        problems.append(f"--k must be at most k_depth={params.k_depth}, not {k}")
    if problems:
        print("lightformer demo: " + "; ".join(problems), file=sys.stderr)
        return 2
    say = say_for(args.json)
    say(f"lightformer demo: int8 GEMM {m}x{k} @ {k}x{n} + requant on the Verilated "
        f"{params.rows}x{params.cols} GEMM pipeline (preset {params.name}, "
        f"digest {params.digest()}, seed {args.seed})")
    try:
        data = run_gemm(params, [(m, k, n)], seed=args.seed)
    except SimulationError as exc:
        print(f"lightformer demo: simulation failed: {exc}", file=sys.stderr)
        return 1
    case = data["cases"][0]
    print_table(data, say, steady=False)
    say(f"bit-exact vs sw.ref.gemm_requant: {'yes' if case['mismatches'] == 0 else 'NO'} "
        f"({case['mismatches']} of {m * n} elements differ)")
    say(f"cycles: {case['cycles']} (ideal {case['ideal_cycles']}), utilization "
        f"{case['utilization']:.3f}, pipeline latency {data['latency']} cycles")
    out = {"bit_exact": case["mismatches"] == 0, "mismatches": case["mismatches"],
           "cycles": case["cycles"], "ideal_cycles": case["ideal_cycles"],
           "utilization": case["utilization"], "M": m, "K": k, "N": n,
           "preset": params.name, "digest": params.digest(), "seed": args.seed,
           "latency": data["latency"], "date": data["date"]}
    write_report(args.json, out, kind=KIND, say=say)
    return 0 if case["mismatches"] == 0 else 1
