# SPDX-License-Identifier: Apache-2.0
"""``lightformer demo``: the shipped digits model on the virtual board, through the real driver.

Builds (or reuses) the Verilated virtual board of ``--preset`` (``sim.vboard``: the accelerator
behind its frame engine, what a board builds), starts it on a free loopback port, and then does
exactly what ``lightformer infer --port socket://...`` does against a board: identify and check
the design id, compile and load the shipped digits model (``digits_int8``; on a preset that
cannot hold it, the smaller ``digits_ice40_int8``: ``sw.infer_command.shipped_artifact_for``),
run every test image (the quantized
test set shipped beside the artifact: no scikit-learn, no torch), compare every logit with
``sw.ref.model_forward_int``, and report accuracy, mismatches, cycles per inference, the latency
they project at the preset's clock and the link bytes per inference; then it stops the board.

``--backend python`` runs the same driver code against the Python virtual board instead (the
frame-engine model in front of the ISA simulator; its cycles are retired instructions), for a
machine without Verilator. Exit status 0 when every logit is bit-exact and the accuracy equals
the NumPy model's, 1 otherwise, 2 on a bad argument. ``--json PATH`` keys: ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from sim.benchkit import int_type, preset_type, say_for, write_report

__all__ = ["BACKENDS", "add_arguments", "run", "run_demo"]

#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "demo"
#: Where the demo runs: the Verilated virtual board, or the Python one.
BACKENDS = ("vboard", "python")

_samples = int_type("samples", 1, "positive")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sw.report import add_json_argument

    add_json_argument(parser)
    parser.add_argument("--preset", type=preset_type, default="tiny",
                        help="accelerator preset of the virtual board (default: tiny)")
    parser.add_argument("--samples", type=_samples, default=None, metavar="N",
                        help="run the first N test images (default: all)")
    parser.add_argument("--backend", choices=BACKENDS, default="vboard",
                        help="vboard: the Verilated board (default); python: the Python "
                             "virtual board (no Verilator; cycles are instructions)")
    parser.add_argument("--uart", action="store_true",
                        help="drive the virtual board's UART PHY bit by bit (slower)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@contextlib.contextmanager
def _board(params: Any, backend: str, uart: bool, progress: bool,
           stats: dict[str, Any]) -> Iterator[str]:
    """Start the virtual board, yield its URL, stop it; its totals go into ``stats``."""
    if backend == "python":
        from sw.driver.isaboard import isa_board
        from sw.driver.model import LinkServer

        with LinkServer(isa_board(params)) as srv:
            yield srv.url
        return
    from sim import vboard

    vb = vboard.start(params, uart=uart, progress=progress)
    try:
        yield vb.url
    finally:
        rc = vb.stop()
        stats.update(vb.stats or {}, exit_status=rc)


def run_demo(params: Any, *, backend: str = "vboard", samples: int | None = None,
             uart: bool = False, progress: bool = True, say=print) -> dict[str, Any]:
    """Run the demo (module docstring); the JSON-ready report."""
    from sw.artifact import load_artifact
    from sw.infer_command import run_inference, shipped_artifact_for
    from sw.testset import task_inputs

    art = load_artifact(shipped_artifact_for(params))
    x_q, y, source = task_inputs(art, samples)
    stats: dict[str, Any] = {}
    t0 = time.monotonic()
    with _board(params, backend, uart, progress, stats) as url:
        say(f"demo: virtual board ({backend}{', UART' if uart else ''}) serving {url}, "
            f"started in {time.monotonic() - t0:.1f} s")
        report = run_inference(url, art, x_q, y, params=params, progress=progress, say=say)
    report.update(backend=backend, uart=uart, inputs=source,
                  vboard=stats or None, wall_s=round(time.monotonic() - t0, 1))
    return report


def run(args: argparse.Namespace) -> int:
    from hw.params import preset
    from sim.runner import SimulationError
    from sw.driver import AccelError
    from sw.infer_command import summary
    from sw.program import FitError

    if args.uart and args.backend == "python":
        print("lightformer demo: --uart needs --backend vboard (the Python board has no UART)",
              file=sys.stderr)
        return 2
    params = preset(args.preset)
    say = say_for(args.json)
    say(f"lightformer demo: a shipped digits model on the {params.name} accelerator "
        f"(design id 0x{params.design_id:08x}) through the host driver")
    try:
        report = run_demo(params, backend=args.backend, samples=args.samples, uart=args.uart,
                          progress=not args.no_progress, say=say)
    except (AccelError, FitError, OSError, SimulationError, ValueError) as exc:
        print(f"lightformer demo: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"lightformer demo: {exc}; `make demo` installs what the demo needs",
              file=sys.stderr)
        return 1
    summary(report, say)
    ok = report["bit_exact"] and report["accuracy"] == report["accuracy_ref"]
    write_report(args.json, report, kind=KIND, say=say)
    return 0 if ok else 1
