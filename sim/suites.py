# SPDX-License-Identifier: Apache-2.0
"""``lightformer sim [SUITE...]``: run the cocotb/Verilator suites through pytest (``-m sim``).

The suites are declared here (:data:`SUITES`), not discovered by listing ``tests/``: a suite
``NAME`` is the pytest module ``tests/test_sim_NAME.py`` of a source checkout, and a suite whose
module is absent (an installed package has no ``tests/``) is reported as such instead of
breaking the command. Without names every present suite runs. ``--effort`` sets ``LF_EFFORT``
(``fast``: ~10x fewer random vectors, ``slow``: ~10x more) and ``--seed`` sets ``LF_SEED``.
A new ``tests/test_sim_*.py`` with ``sim`` tests must be added to :data:`SUITES`
(``tests/test_sim_infra.py`` checks that).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["EFFORTS", "SUITES", "add_arguments", "available_suites", "run", "suite_path"]

ROOT = Path(__file__).resolve().parent.parent
EFFORTS = ("fast", "default", "slow")

#: Suite name -> what it checks (its pytest module is ``tests/test_sim_<name>.py``).
SUITES: dict[str, str] = {
    "gemm": "GEMM pipeline vs sw.ref.gemm_requant, four stream variants, and its bench",
    "attention": "windowed-attention unit vs sw.ref.windowed_attention_int, and its bench",
    "vector": "vector unit (bias, residual, requant, LUT) vs the NumPy model",
    "layernorm": "LayerNorm unit vs the NumPy model",
}


def suite_path(name: str) -> Path:
    """The pytest module of suite ``name``."""
    return ROOT / "tests" / f"test_sim_{name}.py"


def available_suites() -> list[str]:
    """The declared suites whose pytest module is present, in declaration order."""
    return [name for name in SUITES if suite_path(name).is_file()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"suites to run (default: all): {', '.join(SUITES)}")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--effort", choices=EFFORTS, default=None,
                        help="random-vector effort (default: the tests' own default)")
    parser.add_argument("--seed", type=int, default=None, help="base random seed (LF_SEED)")
    parser.add_argument("--waves", action="store_true",
                        help="record VCD traces (WAVES=1; separate cached build)")


def run(args: argparse.Namespace) -> int:
    present = available_suites()
    if args.list:
        for name, what in SUITES.items():
            print(f"{name:<10} {what}" + ("" if name in present else "  (not in this checkout)"))
        return 0
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        print(f"lightformer sim: unknown suite(s) {', '.join(map(repr, unknown))}; "
              f"choose from: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    missing = [s for s in args.suites if s not in present]
    if missing or not present:
        where = ", ".join(str(suite_path(s)) for s in (missing or SUITES))
        print(f"lightformer sim: the suite module(s) {where} are not here; the suites run from a "
              "source checkout (git clone the repository, then `make test`)", file=sys.stderr)
        return 2
    files = [str(suite_path(s)) for s in (args.suites or present)]
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
