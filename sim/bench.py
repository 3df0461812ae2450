# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench``: benchmarks on the Verilated hardware, written as JSON.

``lightformer bench gemm --json PATH [--preset tiny] [--seed N]`` runs GEMM problems of several
shapes on :class:`hw.gemm.GemmPipeline` (tiles cut on the host, streamed back to back with no idle
cycles or backpressure) and records, per problem, the cycles from the first operand transfer to
the last output transfer against the ideal ``M*K*N / (rows*cols)`` (one MAC per PE per cycle).

``steady_state_utilization`` = sum of ideal cycles / sum of measured cycles over the cases with
``K >= 128`` (long enough that fill/drain is amortised, as in a real layer). Target: >= 0.90.

``lightformer bench attention ...`` is provided by ``sim.bench_attention`` (``run_bench(args)``,
optional ``add_arguments(parser)``) when that module exists.

Top-level imports stay light (argparse/json only): amaranth and cocotb load inside ``run``.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_CASES", "add_arguments", "gemm_cases", "run", "run_gemm",
           "steady_state_utilization"]

#: (M in tiles of ``rows``, K, N in tiles of ``cols``): K in {16, 64, 128, 256}.
DEFAULT_CASES: tuple[tuple[int, int, int], ...] = (
    (2, 16, 2), (4, 16, 4), (4, 64, 4), (8, 64, 8), (4, 128, 4), (8, 128, 8), (4, 256, 4),
    (8, 256, 8), (16, 256, 16),
)
STEADY_K = 128


def seed_type(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, not {text!r}")
    return v


def preset_type(text: str) -> str:
    from hw.params import preset_names

    if text not in preset_names():
        raise argparse.ArgumentTypeError(
            f"preset must be one of {', '.join(preset_names())}, not {text!r}")
    return text


def json_path_type(text: str) -> Path:
    p = Path(text)
    if p.is_dir() or text.endswith(os.sep):
        raise argparse.ArgumentTypeError(
            f"--json must be a file path (e.g. build/bench/gemm.json), not the directory {text!r}")
    return p


def add_common(p: argparse.ArgumentParser, default_json: str | None) -> None:
    p.add_argument("--json", type=json_path_type, default=default_json, metavar="PATH",
                   help=f"write results here (default: {default_json})")
    p.add_argument("--preset", type=preset_type, default="tiny",
                   help="accelerator preset (default: tiny; see `lightformer info`)")
    p.add_argument("--seed", type=seed_type, default=1, help="random seed (default: 1)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH")
    g = sub.add_parser("gemm", help="GEMM pipeline utilization vs ideal MAC cycles",
                       description="GEMM pipeline utilization vs ideal MAC cycles")
    add_common(g, "build/bench/gemm.json")
    a = sub.add_parser("attention", help="windowed-attention unit cycles (sim.bench_attention)",
                       description="windowed-attention unit cycles (sim.bench_attention)")
    if importlib.util.find_spec("sim.bench_attention") is not None:
        mod = importlib.import_module("sim.bench_attention")
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(a)
        else:
            add_common(a, "build/bench/attention.json")
    else:
        add_common(a, "build/bench/attention.json")


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


class _Ticker:
    """Prints 'still working' lines every ``every`` seconds (Verilator builds are silent)."""

    def __init__(self, say: Callable[[str], None], what: str, every: float = 10.0) -> None:
        import threading

        self._say, self._what, self._every = say, what, every
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self._say(f"  ... {self._what} ({time.monotonic() - self._t0:.0f} s)")

    def __enter__(self) -> _Ticker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def build_gemm(params: Any, say: Callable[[str], None] = print) -> Any:
    """The cached Verilator build of ``GemmPipeline.from_params(params)``."""
    from hw.gemm import GemmPipeline
    from sim import runner

    with _Ticker(say, "Verilating"):
        b = runner.build(lambda: GemmPipeline.from_params(params), name="gemm", params=params,
                         progress=say)
    say(f"  build ready in {b.seconds:.1f} s ({'cached' if b.cached else 'new'})")
    return b


def run_gemm(params: Any, cases: Sequence[tuple[int, int, int]], *, seed: int = 1,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run ``cases`` on the Verilated GEMM pipeline; returns the bench JSON dict.

    The dict always has ``cases`` (possibly with ``mismatches > 0``); a simulation that failed
    for any other reason raises :class:`sim.runner.SimulationError`.
    """
    from sim import runner

    b = build_gemm(params, say)
    fd, tmp = tempfile.mkstemp(prefix="lf-gemm-", suffix=".json")
    os.close(fd)
    os.unlink(tmp)
    t0 = time.monotonic()
    error = None
    sim_s = None
    try:
        with _Ticker(say, "simulating"):
            r = runner.run(b, "sim.tb_gemm", testcase="gemm_bench", tag="bench",
                       env={"LF_BENCH_CASES": json.dumps([list(c) for c in cases]),
                            "LF_SEED": seed, "LF_RESULT_JSON": tmp})
        sim_s = sum(t["seconds"] for t in r.tests)
    except runner.SimulationError as exc:
        error = exc
    wall = time.monotonic() - t0
    try:
        got = json.loads(Path(tmp).read_text())["bench"]
    except (OSError, KeyError, ValueError):
        if error is not None:
            raise error from None
        raise runner.SimulationError("the GEMM bench wrote no results") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    res = got["cases"]
    total_cycles = sum(c["cycles"] for c in res)
    return {
        "bench": "gemm",
        "preset": params.name,
        "digest": params.digest(),
        "rows": params.rows,
        "cols": params.cols,
        "latency": b.latency,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "cases": res,
        "steady_state_k_min": STEADY_K,
        "steady_state_utilization": steady_state_utilization(res),
        "mismatches": sum(c["mismatches"] for c in res),
        "bit_exact": all(c["mismatches"] == 0 for c in res),
        "sim_wall_s": round(wall, 2),           # including simulator start-up
        "sim_cycles_per_s": round(total_cycles / sim_s) if sim_s else None,
        "verilog_key": b.key,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def print_table(data: dict[str, Any], say: Callable[[str], None] = print, *,
                steady: bool = True) -> None:
    say(f"{'M':>5} {'K':>5} {'N':>5} {'cycles':>8} {'ideal':>8} {'util':>6} {'mism':>5}")
    for c in data["cases"]:
        say(f"{c['M']:>5} {c['K']:>5} {c['N']:>5} {c['cycles']:>8} {c['ideal_cycles']:>8} "
            f"{c['utilization']:>6.3f} {c['mismatches']:>5}")
    ss = data["steady_state_utilization"]
    if steady:
        say(f"steady-state utilization (K >= {data['steady_state_k_min']}): "
            + (f"{ss:.3f}" if ss is not None else "n/a"))


def run(args: argparse.Namespace) -> int:
    which = getattr(args, "bench", None)
    if which is None:
        print("lightformer bench: choose a benchmark: gemm or attention "
              "(e.g. `lightformer bench gemm --json build/bench/gemm.json`)", file=sys.stderr)
        return 2
    if which == "attention":
        if importlib.util.find_spec("sim.bench_attention") is None:
            print("lightformer bench attention: not available yet (sim/bench_attention.py "
                  "is missing); run `lightformer bench gemm` instead", file=sys.stderr)
            return 2
        return int(importlib.import_module("sim.bench_attention").run_bench(args) or 0)
    from hw.params import preset
    from sim.runner import SimulationError

    params = preset(args.preset)
    cases = gemm_cases(params.rows, params.cols, params.k_depth)
    print(f"bench gemm: preset {params.name} ({params.rows}x{params.cols}), "
          f"{len(cases)} problems")
    try:
        data = run_gemm(params, cases, seed=args.seed)
    except SimulationError as exc:
        print(f"bench gemm: simulation failed: {exc}", file=sys.stderr)
        return 1
    print_table(data)
    if args.json is not None:
        write_json(args.json, data)
        print(f"wrote {args.json} (plot it with: python bench/gemm_utilization.py)")
    return 0 if data["bit_exact"] else 1
