# SPDX-License-Identifier: Apache-2.0
"""``lightformer sim [SUITE...]``: run the cocotb/Verilator suites through pytest (``-m sim``).

A suite ``NAME`` is the pytest module ``tests/test_sim_NAME.py``; without names every ``sim``
test runs. ``--effort`` sets ``LF_EFFORT`` (``fast``: ~10x fewer random vectors, ``slow``: ~10x
more) and ``--seed`` sets ``LF_SEED`` for the benches.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["EFFORTS", "add_arguments", "available_suites", "run"]

ROOT = Path(__file__).resolve().parent.parent
EFFORTS = ("fast", "default", "slow")


def available_suites() -> list[str]:
    """Suites = ``tests/test_sim_*.py`` modules that contain ``pytest.mark.sim`` tests
    (``test_sim_infra.py`` holds fast tests of the infrastructure and is not one)."""
    return sorted(p.stem[len("test_sim_"):] for p in (ROOT / "tests").glob("test_sim_*.py")
                  if "pytest.mark.sim" in p.read_text(errors="replace"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help="suites to run (default: all); --list shows them")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--effort", choices=EFFORTS, default=None,
                        help="random-vector effort (default: the tests' own default)")
    parser.add_argument("--seed", type=int, default=None, help="base random seed (LF_SEED)")
    parser.add_argument("--waves", action="store_true",
                        help="record VCD traces (WAVES=1; separate cached build)")


def run(args: argparse.Namespace) -> int:
    known = available_suites()
    if args.list:
        print("\n".join(known))
        return 0
    unknown = [s for s in args.suites if s not in known]
    if unknown:
        print(f"lightformer sim: unknown suite(s) {', '.join(map(repr, unknown))}; "
              f"choose from: {', '.join(known)}", file=sys.stderr)
        return 2
    files = [str(ROOT / "tests" / f"test_sim_{s}.py") for s in (args.suites or known)]
    env = dict(os.environ)
    if args.effort:
        env["LF_EFFORT"] = args.effort
    if args.seed is not None:
        env["LF_SEED"] = str(args.seed)
    if args.waves:
        env["WAVES"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-m", "sim", *files]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)
