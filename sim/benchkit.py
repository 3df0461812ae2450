# SPDX-License-Identifier: Apache-2.0
"""What the benchmark commands share: arguments, one bench run, the report.

``lightformer bench gemm``, ``lightformer bench attention`` and ``lightformer demo`` all take
``--preset``, ``--seed`` and ``--json PATH`` (``-`` for stdout), build one unit under Verilator,
run one cocotb bench test that writes its numbers to a JSON file, print a table and write a
report. The pieces they share live here, so no bench module needs another's internals:
``sim.bench`` (the command) dispatches to ``sim.bench_attention``, which imports only this
module.

Top-level imports stay light (argparse and the standard library): amaranth and cocotb load when
a bench runs, so ``lightformer --help`` stays fast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sw.report import STDOUT, add_json_argument, write_json

__all__ = ["BenchRun", "Say", "add_common", "common_fields", "int_type", "preset_type",
           "run_bench_test", "say_for", "seed_type", "write_report"]

#: A function that prints one line of human-readable output.
Say = Callable[[str], None]


def int_type(what: str, lo: int, kind: str) -> Callable[[str], int]:
    """argparse ``type=`` for an integer option ``>= lo`` (decimal or ``0x..``); the error reads
    ``"<what> must be a <kind> integer, not '<text>'"``."""
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            value = lo - 1
        if value < lo:
            raise argparse.ArgumentTypeError(f"{what} must be a {kind} integer, not {text!r}")
        return value

    parse.__name__ = what                       # argparse names the type in some messages
    return parse


#: ``--seed``: a non-negative integer.
seed_type = int_type("seed", 0, "non-negative")


def preset_type(text: str) -> str:
    """argparse ``type=`` for ``--preset``: a name of :data:`hw.params.PRESETS`. Preset names
    use underscores (board names hyphens): ``ulx3s-85f`` is refused with a hint."""
    from hw.params import preset_names

    names = preset_names()
    if text not in names:
        spelled = text.replace("-", "_")
        hint = f"; did you mean {spelled!r}?" if spelled in names else ""
        raise argparse.ArgumentTypeError(
            f"preset must be one of {', '.join(names)}, not {text!r}{hint}")
    return text


def add_common(parser: argparse.ArgumentParser, default_json: str | None) -> None:
    """``--json PATH`` (checked when parsed), ``--preset NAME`` and ``--seed N``."""
    add_json_argument(parser, default_json)
    parser.add_argument("--preset", type=preset_type, default="tiny",
                        help="accelerator preset (default: tiny; see `lightformer info`)")
    parser.add_argument("--seed", type=seed_type, default=1, help="random seed (default: 1)")


def say_for(json_path: object) -> Say:
    """Where the human-readable lines go: stdout, or stderr when the JSON goes to stdout."""
    out = sys.stderr if json_path == STDOUT else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    return say


def report_path(path: object) -> str:
    """``path`` as a report records it: relative to the working directory when it is a file or
    folder under it (so a committed report names no machine's folders), else as given."""
    import os

    text = str(path)
    if not os.path.exists(text):  # e.g. "sw.data.load_task(...)": a description, not a path
        return text
    try:
        rel = os.path.relpath(os.path.abspath(text))
    except ValueError:  # another drive
        return text
    return text if rel.startswith(os.pardir) else rel


def write_report(json_path: object, data: dict[str, Any], *, kind: str, say: Say) -> None:
    """Write ``data`` with :func:`sw.report.write_json` (atomic; ``-`` = stdout) and say where."""
    if json_path is None:
        return
    where = write_json(json_path, data, kind=kind)
    if where != "stdout":
        say(f"wrote {where}")


@dataclass(frozen=True)
class BenchRun:
    """Outcome of :func:`run_bench_test`."""

    cases: list[dict[str, Any]]     # the bench's ``cases`` list, one dict per case
    result: dict[str, Any]          # everything the bench wrote under ``"bench"``
    wall_s: float                   # wall time including the simulator's start-up
    sim_s: float | None             # time cocotb reported for the test itself
    error: str | None               # a failed cocotb test that still wrote its results


def run_bench_test(b: Any, test_module: str, testcase: str, cases: Sequence[Sequence[Any]], *,
                   seed: int, what: str, progress: bool = True) -> BenchRun:
    """Run one bench test of ``test_module`` on build ``b`` and read the numbers it wrote.

    The test gets ``LF_BENCH_CASES`` (``cases`` as JSON), ``LF_SEED`` and ``LF_RESULT_JSON`` (a
    temporary file) and writes ``{"bench": {"cases": [...], ...}}`` there. A test that failed
    after writing (mismatching cases) gives a :class:`BenchRun` with ``error`` set; one that
    wrote nothing raises :class:`sim.runner.SimulationError`.
    """
    from sim import runner
    from sw.progress import step

    fd, tmp = tempfile.mkstemp(prefix=f"lf-{b.name}-", suffix=".json")
    os.close(fd)
    os.unlink(tmp)                                 # the bench creates it; absent = no results
    t0 = time.monotonic()
    error: runner.SimulationError | None = None
    sim_s = None
    try:
        with step(f"simulate {what} ({len(cases)} cases)", enabled=progress):
            r = runner.run(b, test_module, testcase=testcase, tag="bench",
                           env={"LF_BENCH_CASES": json.dumps([list(c) for c in cases]),
                                "LF_SEED": seed, "LF_RESULT_JSON": tmp})
        sim_s = sum(t["seconds"] for t in r.tests)
    except runner.SimulationError as exc:
        error = exc
    wall = time.monotonic() - t0
    try:
        result = json.loads(Path(tmp).read_text())["bench"]
        cases_out = result["cases"]
    except (OSError, KeyError, ValueError):
        if error is not None:
            raise error from None
        raise runner.SimulationError(f"{test_module}.{testcase} wrote no results") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return BenchRun(cases=cases_out, result=result, wall_s=wall, sim_s=sim_s,
                    error=str(error) if error is not None else None)


def common_fields(params: Any, b: Any, seed: int) -> dict[str, Any]:
    """The keys every bench report starts with (``docs/cli.md``)."""
    return {"preset": params.name, "digest": params.digest(), "latency": b.latency,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "seed": seed, "verilog_key": b.key}
