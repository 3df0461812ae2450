# SPDX-License-Identifier: Apache-2.0
"""Estimated worst paths of a board build's flat netlist, before (and without) place-and-route.

``python -m boards.paths --netlist build/synth/<build>/top.json [--paths N] [--target-mhz F]``
reads the Yosys ``write_json`` netlist that ``synth_ecp5`` wrote for nextpnr (seconds, no tool
run), propagates arrival times from every register, block-RAM and DSP output through the
combinational cells (``LUT4``, ``CCU2C``, ``PFUMX``, ``L6MUX21``, the read port of
``TRELLIS_DPR16X4`` and unregistered ``MULT18X18D`` stages) and prints the worst endpoints, each
with its path (one line a signal: Yosys names each mapped cell after the net it drives), after a
list of the registers with endpoints over ``--target-mhz``'s period, worst first.

It is an estimate for finding *which* paths are long, not a timing figure:

* cell delays are round numbers of the ECP5 speed grade 6 (a LUT 0.3 ns, a carry cell 0.05 ns
  through its chain, an unregistered block-RAM read 4.0 ns after the clock, ...; :data:`DELAYS`);
* a net costs ``0.5 + 0.25 * log2(1 + fanout)`` ns wherever its cells land (no placement),
  except the dedicated carry chain and the slice-local mux inputs, which cost nothing.

A large top placed by nextpnr has longer nets than that, so its real period is longer; the
ranking of the paths is what the tool is for.

``--fanout N`` also lists the ``N`` nets with the most sinks, with how many of those are clock
enables or set / resets and what drives them (:func:`high_fanout`): a net from one cell to the
``CE`` or ``LSR`` of thousands of flip-flops crosses the whole chip unless it is on a global
network, which the fanout model above does not show.

``--placed placed.json`` charges each net by where nextpnr placed its cells instead: the JSON
that nextpnr writes with ``--write`` (after ``--no-route``, a placement takes a fraction of a
route's time on a large top). A net costs the shape of nextpnr-ecp5's pre-route estimate
between the driving and the receiving cell, ``unit * (6 + max(dx - 5, 0) + max(dy - 5, 0) + 2 *
(min(dx, 5) + min(dy, 5)))`` for cells ``dx``, ``dy`` tiles apart (``Arch::predictDelay``), with
the unit :data:`PLACED_UNIT` fitted to nextpnr's own post-placement figures (:func:`placed_delay`);
a net that nextpnr put on a global network (through a ``DCCA``) :data:`GLOBAL_DELAY`, and a cell
the placement does not name (packed away) the fanout model: every endpoint of the placement,
where its log gives only the worst.

``--congestion heat_congestion_by_net_5.csv`` lists the nets that nextpnr's ``router2`` found
most congested (``--router2-heatmap heat`` writes one such file per router iteration: each net
with its overused wires), each with its sinks and its driver from the netlist: nextpnr names a
net after one of Yosys' names for it, often a derived one, where the driver says which register
it is (:func:`congested_nets`).

``--routed build/synth/<build>/nextpnr-report.json`` ranks the endpoints by the arrival times of
the route instead (nextpnr's ``--detailed-timing-report``, which ``lightformer synth
--detailed-timing`` asks for): every register input over the period after one route, not just
the critical path nextpnr names. The paths printed into those endpoints are still the
estimate's.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from boards.area import placed_xy, scope_resolver, top_cells

__all__ = ["DELAYS", "GLOBAL_DELAY", "PLACED_UNIT", "EstimatedPath", "Placement",
           "congested_nets", "endpoints", "group_of", "high_fanout", "main", "net_delay",
           "placed_delay", "read_congestion", "routed_arrivals", "signal_of", "worst_paths"]

_CELL_SUFFIX = re.compile(r"_(TRELLIS_FF_Q|TRELLIS_FF|LUT4_Z|LUT4|CCU2C|MULT18X18D|PFUMX|L6MUX21|"
                          r"DP16KD|TRELLIS_DPR16X4)(_|$)")


def signal_of(cell_name: str) -> str:
    """The design signal a mapped cell is named after: Yosys names a cell after the net it
    drives and appends what it went through (``ctrl.i_TRELLIS_FF_Q_22_DI_LUT4_Z`` -> ``ctrl.i``)."""
    name = cell_name.lstrip("\\")
    match = _CELL_SUFFIX.search(name)
    return name[:match.start()] if match else name

#: Cell delays in ns (ECP5 speed grade 6, rounded).
DELAYS = {
    "lut": 0.3,          # LUT4 any input -> Z
    "mux": 0.2,          # PFUMX / L6MUX21 -> Z
    "carry_in": 0.4,     # CCU2C A/B/C/D -> COUT or S
    "carry": 0.05,       # CCU2C CIN -> COUT (and S)
    "ff_clk_q": 0.4,     # TRELLIS_FF clock -> Q
    "ff_setup": 0.1,     # TRELLIS_FF DI / CE setup
    "ff_lsr_setup": 0.42,  # TRELLIS_FF LSR setup (nextpnr-ecp5 0.11 charges 0.424 ns)
    "ram_noreg": 4.0,    # DP16KD clock -> DO without the output register
    "ram_outreg": 1.0,   # DP16KD clock -> DO with it
    "ram_setup": 0.4,    # DP16KD address / data / enable setup
    "lutram_read": 0.4,  # TRELLIS_DPR16X4 RAD -> DO
    "dsp_clk_p": 1.0,    # MULT18X18D clock -> P with the output register
    "dsp_mult": 4.0,     # MULT18X18D A/B -> P (or input register -> P) without it
    "dsp_setup": 0.4,    # MULT18X18D input setup
}

_COMB_MUX = {"PFUMX", "L6MUX21"}


def net_delay(fanout: int) -> float:
    """The routing delay charged for a net of ``fanout`` sinks (module docstring)."""
    return 0.5 + 0.25 * math.log2(1 + fanout)


#: ns charged for a net on a global network (a ``DCCA`` output) of a placement.
GLOBAL_DELAY = 1.0


#: ns a unit of :func:`placed_delay`. nextpnr-ecp5's ``predictDelay`` reads ``(120 - 22 *
#: speed)`` ps; 0.076 ns is the value that matches what nextpnr 0.11.1 reported for a placement
#: of the ``ulx3s_85f`` top (its worst endpoint 17.88 ns against this tool's 17.17 ns, and about
#: 11,000 endpoints of negative slack at 100 MHz against 8,689; with 0.12 ns the tool said
#: 26.4 ns and 43,000), and again for a second placement (22.86 ns against 22.11 ns; both in
#: docs/boards.md).
PLACED_UNIT = 0.076


def placed_delay(dx: int, dy: int) -> float:
    """The estimated delay of a net between cells ``dx``, ``dy`` tiles apart, in ns: the shape of
    nextpnr-ecp5's ``Arch::predictDelay``, in units of :data:`PLACED_UNIT`."""
    return PLACED_UNIT * (6 + max(dx - 5, 0) + max(dy - 5, 0) + 2 * (min(dx, 5) + min(dy, 5)))


class Placement:
    """Where nextpnr placed each cell (``NEXTPNR_BEL`` of its ``--write`` JSON) and which sink
    ports it drives from a global network, for :func:`endpoints`' wire delays."""

    def __init__(self, placed: dict) -> None:
        cells = top_cells(placed)
        # nextpnr-ecp5 packs a CCU2C into two TRELLIS_COMB, `<name>$CCU2_COMB0/1`.
        self.xy: dict[str, tuple[int, int]] = placed_xy(placed)
        pins = list(_pins(cells))
        global_nets = {b for name, _, direction, b in pins
                       if direction == "output" and cells[name].get("type") == "DCCA"}
        self.on_global = {(name, port) for name, port, direction, b in pins
                          if direction == "input" and b in global_nets}

    def delay(self, driver: str, sink: str, sink_port: str) -> float | None:
        """The wire delay from cell ``driver`` to port ``sink_port`` of cell ``sink`` (names of
        the synthesized netlist), or ``None`` where the placement does not name both."""
        if (sink, sink_port) in self.on_global:
            return GLOBAL_DELAY
        a, b = self.xy.get(driver), self.xy.get(sink)
        if a is None or b is None:
            return None
        return placed_delay(abs(a[0] - b[0]), abs(a[1] - b[1]))


@dataclass
class EstimatedPath:
    """One endpoint's worst path: ``arrival`` (ns, setup included), ``end`` (the cell and port
    reached) and ``steps``, ``(cell name, cell type, instance, arrival ns)`` from the start."""

    arrival: float
    end: str
    steps: list[tuple[str, str, str, float]]

    @property
    def start_instance(self) -> str:
        return self.steps[0][2] if self.steps else ""

    @property
    def end_instance(self) -> str:
        return self.steps[-1][2] if self.steps else ""


def _instance_of(cells: dict):
    scope = scope_resolver(cells)
    return lambda name, cell: ".".join(("top",) + scope(name, cell))


def _arcs(cell: dict):
    """``(kind, launch, inputs, outputs)`` of a cell: ``kind`` "comb" (``inputs`` -> ``outputs``
    through per-input delays), "seq" (``outputs`` launch ``launch`` ns after the clock, one
    number or one per output, and ``inputs`` are endpoints with that setup) or "lutram" (a
    distributed RAM: its write inputs are endpoints, its read goes ``RAD`` -> ``DO`` through
    the combinational pass); ``inputs`` is ``{port: delay}``."""
    t = cell["type"]
    dirs = cell.get("port_directions", {})
    ins = [p for p, d in dirs.items() if d == "input"]
    outs = [p for p, d in dirs.items() if d == "output"]
    if t == "LUT4":
        return "comb", 0.0, {p: DELAYS["lut"] for p in ins}, outs
    if t in _COMB_MUX:
        return "comb", 0.0, {p: DELAYS["mux"] for p in ins}, outs
    if t == "CCU2C":
        return "comb", 0.0, {p: (DELAYS["carry"] if p == "CIN" else DELAYS["carry_in"])
                             for p in ins}, outs
    if t == "TRELLIS_FF":
        return "seq", DELAYS["ff_clk_q"], {p: DELAYS["ff_lsr_setup" if p == "LSR" else "ff_setup"]
                                           for p in ins if p != "CLK"}, outs
    if t == "DP16KD":
        p = cell.get("parameters", {})
        launch = {o: DELAYS["ram_outreg" if p.get(f"REGMODE_{o[2]}") == "OUTREG"
                            else "ram_noreg"] for o in outs}
        return "seq", launch, {q: DELAYS["ram_setup"] for q in ins
                               if not q.startswith("CLK")}, outs
    if t == "TRELLIS_DPR16X4":
        return "lutram", 0.0, {p: DELAYS["ff_setup"] for p in ins if p not in ("WCK", "RAD")}, outs
    if t == "MULT18X18D":
        p = cell.get("parameters", {})
        registered_in = p.get("REG_INPUTA_CLK", "NONE") != "NONE"
        registered_out = p.get("REG_OUTPUT_CLK", "NONE") != "NONE"
        data = [q for q in ins if q[0] in "AB" and q[1:].isdigit()]
        if registered_out:
            launch = DELAYS["dsp_clk_p"]
        else:
            launch = DELAYS["dsp_mult"] + (DELAYS["ff_clk_q"] if registered_in else 0.0)
        if registered_in or registered_out:
            return "seq", launch, {q: DELAYS["dsp_setup"] for q in data}, outs
        return "comb", 0.0, {q: DELAYS["dsp_mult"] for q in data}, outs
    return "seq", 0.0, {}, outs  # IO, PLL, constants: start points at 0, no endpoints


def _pins(cells: dict):
    """``(cell, port, direction, bit)`` for every net bit on every cell port (constant bits,
    strings in Yosys' JSON, left out; ``$scopeinfo`` cells have no ports)."""
    for name, cell in cells.items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell.get("connections", {}).items():
            for b in bits:
                if isinstance(b, int):
                    yield name, port, dirs.get(port), b


def endpoints(netlist: dict, placement: Placement | None = None) -> tuple[dict, dict]:
    """Arrival times of every endpoint: ``({(cell, port): (arrival ns, net bit)}, trace)`` where
    ``trace`` lets :func:`worst_paths` walk each path back to its start from that bit. With
    ``placement`` the nets cost what their cells' places say (:class:`Placement`)."""
    cells = top_cells(netlist)
    driver: dict[int, tuple[str, str]] = {}
    sinks: Counter = Counter()
    arcs = {}
    for name, cell in cells.items():
        if cell.get("type") != "$scopeinfo":
            arcs[name] = _arcs(cell)
    for name, port, direction, b in _pins(cells):
        if direction == "output":
            driver[b] = (name, port)
        elif direction == "input":
            sinks[b] += 1

    def wire_delay(bit: int, sink: str, sink_type: str, sink_port: str) -> float:
        src = driver.get(bit)
        if src is None:
            return 0.0
        src_type = cells[src[0]]["type"]
        if sink_port == "CIN" and src_type == "CCU2C":
            return 0.0  # the dedicated carry chain
        if sink_type in _COMB_MUX and src_type in ("LUT4", "PFUMX"):
            return 0.0  # slice-local
        if placement is not None:
            placed = placement.delay(src[0], sink, sink_port)
            if placed is not None:
                return placed
        return net_delay(sinks[bit])

    arrival: dict[int, float] = {}
    came_from: dict[int, tuple[str, int | None]] = {}
    # Start points: outputs of sequential cells.
    for name, (kind, launch, _, outs) in arcs.items():
        if kind != "seq":
            continue
        conns = cells[name].get("connections", {})
        for o in outs:
            t = launch[o] if isinstance(launch, dict) else launch
            for b in conns.get(o, []):
                if isinstance(b, int):
                    arrival[b] = t
                    came_from[b] = (name, None)
    # Combinational cells (and distributed-RAM reads) in topological order.
    comb = {n for n, a in arcs.items() if a[0] in ("comb", "lutram")}
    pending: dict[str, int] = {}
    users: dict[int, list[str]] = defaultdict(list)
    for n in comb:
        kind, _, ins, _ = arcs[n]
        conns = cells[n].get("connections", {})
        srcs = {b for p in (ins if kind == "comb" else ("RAD",)) for b in conns.get(p, [])
                if isinstance(b, int) and driver.get(b, ("", ""))[0] in comb}
        pending[n] = len(srcs)
        for b in srcs:
            users[b].append(n)
    ready = [n for n, k in pending.items() if k == 0]
    done = 0
    while ready:
        n = ready.pop()
        done += 1
        cell = cells[n]
        kind, _, ins, outs = arcs[n]
        conns = cell.get("connections", {})
        best, best_bit = 0.0, None
        ports = ins.items() if kind == "comb" else [("RAD", DELAYS["lutram_read"])]
        for p, d in ports:
            for b in conns.get(p, []):
                if not isinstance(b, int):
                    continue
                t = arrival.get(b, 0.0) + wire_delay(b, n, cell["type"], p) + d
                if t > best:
                    best, best_bit = t, b
        for o in outs:
            for b in conns.get(o, []):
                if isinstance(b, int):
                    arrival[b] = best
                    came_from[b] = (n, best_bit)
                    for u in users.get(b, ()):
                        pending[u] -= 1
                        if pending[u] == 0:
                            ready.append(u)
    if done != len(comb):
        raise ValueError(f"{len(comb) - done} combinational cells are on a loop")
    ends: dict[tuple[str, str], tuple[float, int]] = {}
    for name, (kind, _, ins, _) in arcs.items():
        if kind == "comb":
            continue
        conns = cells[name].get("connections", {})
        for p, setup in ins.items():
            for b in conns.get(p, []):
                if not isinstance(b, int) or b not in arrival:
                    continue
                t = arrival[b] + wire_delay(b, name, cells[name]["type"], p) + setup
                if t > ends.get((name, p), (-1.0, 0))[0]:
                    ends[(name, p)] = (t, b)
    return ends, {"arrival": arrival, "came_from": came_from, "cells": cells}


def _trace(trace: dict, name: str, bit: int | None, t: float) -> list[tuple]:
    cells = trace["cells"]
    instance = trace["instance"]
    cell = cells.get(name, {"type": "?"})
    steps = [(name, cell["type"], instance(name, cell), t)]
    b = bit
    while b is not None and b in trace["came_from"]:
        src, prev = trace["came_from"][b]
        steps.append((src, cells[src]["type"], instance(src, cells[src]), trace["arrival"][b]))
        b = prev
    return steps[::-1]


def group_of(cell_name: str) -> str:
    """:func:`signal_of` with every number made ``#``: the bits and lanes of one register."""
    return re.sub(r"\d+", "#", signal_of(cell_name))


def routed_arrivals(report: dict) -> dict[tuple[str, str], float]:
    """``{(cell, port): arrival ns}`` of every register input that nextpnr timed, from its JSON
    report written with ``--detailed-timing-report`` (``lightformer synth --detailed-timing``):
    the routed arrival after the launching clock edge, setup not included. An endpoint that
    several launch domains reach keeps the latest arrival."""
    nets = report.get("detailed_net_timings")
    if not isinstance(nets, list):
        raise ValueError("the report has no detailed_net_timings: route with nextpnr's "
                         "--detailed-timing-report (lightformer synth --detailed-timing)")
    out: dict[tuple[str, str], float] = {}
    for net in nets:
        for ep in net.get("endpoints", []):
            key = (ep["cell"], ep["port"])
            delay = ep["delay"]           # nextpnr 0.11: [min, max]; one number in older ones
            latest = max(map(float, delay)) if isinstance(delay, list) else float(delay)
            out[key] = max(out.get(key, float("-inf")), latest)
    return out


def worst_paths(netlist: dict, count: int = 10, period: float | None = None,
                routed: dict[tuple[str, str], float] | None = None,
                placement: Placement | None = None):
    """``(paths, ends, groups)``: the ``count`` worst endpoints' paths (one per end signal,
    :func:`signal_of`); the ``{(cell, port): arrival ns}`` of every endpoint; and, with
    ``period`` (ns), the endpoints over it by :func:`group_of` their cell, each
    ``[worst arrival, endpoints, start signal of the worst]``, worst first.

    With ``routed`` (:func:`routed_arrivals` of the same netlist's route) the endpoints are
    ranked, grouped and reported by their routed arrival plus the estimated setup of their
    cell; each path's steps are still the estimate's (the route reports no paths but the
    critical one), so a routed endpoint's printed path is the one the estimate finds worst
    into it. With ``placement`` (:class:`Placement`) the estimate charges placed nets."""
    ends, trace = endpoints(netlist, placement)
    trace["instance"] = _instance_of(trace["cells"])
    if routed is not None:
        def setup(cell: str, port: str) -> float:
            kind = trace["cells"].get(cell, {}).get("type")
            return DELAYS["ram_setup" if kind == "DP16KD" else
                          "dsp_setup" if kind == "MULT18X18D" else
                          "ff_lsr_setup" if kind == "TRELLIS_FF" and port == "LSR" else
                          "ff_setup"]
        estimated = ends
        ends = {}
        for (cell, port), t in routed.items():
            # nextpnr feeds a flip-flop whose D does not come from its own slice's LUT through
            # the slice's M input: that is the netlist's DI.
            in_netlist = (cell, "DI") if port == "M" else (cell, port)
            bit = estimated.get(in_netlist, (0.0, None))[1]
            ends[(cell, port)] = (t + setup(cell, port), bit)
    out: list[EstimatedPath] = []
    seen: set[str] = set()
    groups: dict[str, list] = {}
    for (name, port), (t, bit) in sorted(ends.items(), key=lambda kv: -kv[1][0]):
        over = period is not None and t > period
        if len(out) >= count and not over:
            break
        key = signal_of(name)
        group = groups.get(group_of(name)) if over else None
        steps = None
        if key not in seen or (over and group is None):
            steps = _trace(trace, name, bit, t)
        if over:
            if group is None:
                groups[group_of(name)] = [t, 1, signal_of(steps[0][0])]
            else:
                group[1] += 1
        if key in seen or len(out) >= count:
            continue
        seen.add(key)
        out.append(EstimatedPath(t, f"{name}.{port}", steps))
    return out, {k: v[0] for k, v in ends.items()}, groups


#: Ports that take a clock enable or a set / reset (counted apart by :func:`high_fanout`).
_CONTROL_PORTS = {"CE", "LSR", "CEA", "CEB", "OCEA", "OCEB", "RSTA", "RSTB"}


@dataclass
class FanoutNet:
    """A net with many sinks: its name (the shortest of the netlist's names for the bit), the
    cell and port driving it, its sinks and how many of them are enable / reset ports."""

    name: str
    driver: str
    driver_type: str
    sinks: int
    control_sinks: int


def _nets(netlist: dict):
    """Every net bit's driver (cell, type), sinks, enable / reset sinks and name (the shortest
    of the netlist's names for the bit, a bus bit as ``name[k]``)."""
    cells = top_cells(netlist)
    driver: dict[int, tuple[str, str]] = {}
    sinks: Counter = Counter()
    control: Counter = Counter()
    for name, port, direction, b in _pins(cells):
        if direction == "output":
            driver[b] = (name, cells[name].get("type", "?"))
        elif direction == "input":
            sinks[b] += 1
            control[b] += port in _CONTROL_PORTS
    top = next(mod for mod in netlist["modules"].values()
               if mod.get("attributes", {}).get("top"))
    names: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for net, info in top.get("netnames", {}).items():
        bits = info.get("bits", [])
        for k, b in enumerate(bits):
            if isinstance(b, int):
                if b not in names or len(net) < len(names[b]):
                    names[b] = net
                by_name[(net if len(bits) == 1 else f"{net}[{k}]").lstrip("\\")] = b
    return driver, sinks, control, names, by_name


def _fanout_net(b: int, nets) -> FanoutNet:
    driver, sinks, control, names, _ = nets
    src, src_type = driver.get(b, ("(undriven)", "-"))
    return FanoutNet(names.get(b, f"bit {b}").lstrip("\\"), src.lstrip("\\"), src_type,
                     sinks[b], control[b])


def high_fanout(netlist: dict, count: int = 10) -> list[FanoutNet]:
    """The ``count`` nets of the flat netlist with the most sinks, most first. A net that
    drives the ``CE`` / ``LSR`` of thousands of flip-flops from one cell is routed through the
    fabric to all of them (nextpnr puts only clocks on the global networks by itself): on a
    large top such a net spans the chip."""
    nets = _nets(netlist)
    return [_fanout_net(b, nets) for b, _ in nets[1].most_common(count)]


def read_congestion(text: str) -> list[tuple[str, int]]:
    """The rows of a ``<prefix>_congestion_by_net_<iteration>.csv`` that nextpnr's
    ``--router2-heatmap <prefix>`` writes (``net,overused wires`` a line), most first."""
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        net, sep, count = line.rpartition(",")
        if not sep or not count.strip().isdigit():
            raise ValueError(f"line {line_no} is not 'net,count': {line[:80]!r}")
        rows.append((net, int(count)))
    return sorted(rows, key=lambda row: -row[1])


def congested_nets(netlist: dict, congestion: list[tuple[str, int]],
                   count: int = 20) -> list[tuple[int, FanoutNet | None, str]]:
    """The ``count`` most congested nets of a ``router2`` heatmap (:func:`read_congestion`) as
    ``(overused wires, the net in the netlist or None, the heatmap's name)``. nextpnr names a
    net after one of the names Yosys gave it, often a derived one (``x_LUT4_C_Z...``); the
    netlist's driver says which register or cell it really is (a flip-flop's ``Q``: that
    register's fan-out)."""
    nets = _nets(netlist)
    by_name = nets[4]
    out = []
    for name, overuse in congestion[:count]:
        b = by_name.get(name)
        out.append((overuse, None if b is None else _fanout_net(b, nets), name))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m boards.paths", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--netlist", type=Path, required=True, metavar="TOP_JSON",
                    help="a board build's flat netlist (build/synth/<build>/top.json)")
    ap.add_argument("--paths", type=int, default=5, help="paths to print (default 5)")
    ap.add_argument("--target-mhz", type=float, default=100.0,
                    help="count endpoints over this clock's period (default 100)")
    ap.add_argument("--groups", type=int, default=30,
                    help="registers over the period to list, worst first (default 30)")
    ap.add_argument("--verbose", action="store_true",
                    help="every cell of a path by its full name (default: one line a signal)")
    ap.add_argument("--fanout", type=int, default=0, metavar="N",
                    help="also list the N nets with the most sinks (default 0: none)")
    ap.add_argument("--routed", type=Path, default=None, metavar="REPORT_JSON",
                    help="rank the endpoints by their routed arrival from this nextpnr report "
                         "of the same netlist (build/synth/<build>/nextpnr-report.json of a "
                         "`lightformer synth --detailed-timing` build)")
    ap.add_argument("--placed", type=Path, default=None, metavar="PLACED_JSON",
                    help="charge each net by where nextpnr placed its cells: the JSON nextpnr "
                         "wrote with --write (after --no-route) from the same netlist")
    ap.add_argument("--congestion", type=Path, default=None, metavar="CSV",
                    help="also list the nets a router2 heatmap of the same netlist found most "
                         "congested, each with its driver: a <prefix>_congestion_by_net_<i>.csv "
                         "that nextpnr wrote with --router2-heatmap <prefix>")
    ap.add_argument("--nets", type=int, default=20, metavar="N",
                    help="congested nets to list with --congestion (default 20)")
    args = ap.parse_args(argv)
    if not args.netlist.is_file():
        ap.error(f"--netlist {args.netlist}: no such file; give the top.json of a board build "
                 "(lightformer synth writes it into its build directory)")
    if args.routed is not None and not args.routed.is_file():
        ap.error(f"--routed {args.routed}: no such file; give the nextpnr-report.json of a "
                 "`lightformer synth --detailed-timing` build of the same netlist")
    if args.placed is not None and not args.placed.is_file():
        ap.error(f"--placed {args.placed}: no such file; give the JSON that nextpnr wrote with "
                 "--write after placing the same netlist")
    if args.congestion is not None and not args.congestion.is_file():
        ap.error(f"--congestion {args.congestion}: no such file; give a "
                 "<prefix>_congestion_by_net_<iteration>.csv that nextpnr wrote with "
                 "--router2 --router2-heatmap <prefix> from the same netlist")
    if min(args.paths, args.groups, args.fanout, args.nets) < 0 or args.target_mhz <= 0:
        ap.error("--paths, --groups, --fanout and --nets must be >= 0 and --target-mhz > 0")
    period = 1000.0 / args.target_mhz
    try:
        routed = None
        if args.routed is not None:
            try:
                routed = routed_arrivals(json.loads(args.routed.read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                ap.error(f"--routed {args.routed}: {exc}")
        placement = None
        if args.placed is not None:
            try:
                placement = Placement(json.loads(args.placed.read_text()))
            except (ValueError, KeyError, TypeError, StopIteration) as exc:
                ap.error(f"--placed {args.placed}: {exc}")
        netlist = json.loads(args.netlist.read_text())
        paths, ends, groups = worst_paths(netlist, args.paths, period, routed, placement)
        nets = high_fanout(netlist, args.fanout) if args.fanout else []
        congested = None
        if args.congestion is not None:
            try:
                rows = read_congestion(args.congestion.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                ap.error(f"--congestion {args.congestion}: {exc}")
            congested = congested_nets(netlist, rows, args.nets), rows
    except (ValueError, KeyError, StopIteration) as exc:
        ap.error(f"--netlist {args.netlist}: {exc!r}")
    what = ("routed arrival + setup" if routed is not None else
            "placed estimate" if placement is not None else "estimate")
    print(f"{len(ends)} endpoints; worst {what} {max(ends.values(), default=0):.2f} ns; "
          f"{sum(t > period for t in ends.values())} over {period:.2f} ns")
    if args.groups and groups:
        print(f"\nregisters over {period:.2f} ns (worst ns, endpoints, register <- start of the "
              "worst path):")
        for name, (t, n, start) in list(groups.items())[:args.groups]:
            print(f"  {t:6.2f} {n:>6}  {name:<50} <- {start}")
    if nets:
        print("\nnets with the most sinks (sinks, of them CE / LSR, driver type, net <- "
              "driver):")
        for net in nets:
            print(f"  {net.sinks:>7} {net.control_sinks:>7}  {net.driver_type:<11} "
                  f"{net.name[:70]} <- {net.driver[:60]}")
    if congested is not None:
        listed, rows = congested
        print(f"\n{len(rows)} congested nets, {sum(n for _, n in rows)} overused wires over "
              "them; the most (overused wires, sinks, of them CE / LSR, driver type, heatmap "
              "net <- driver):")
        for overuse, net, name in listed:
            if net is None:
                print(f"  {overuse:>7} {'?':>7} {'?':>7}  {'-':<11} {name[:70]} <- (not in "
                      "the netlist)")
            else:
                print(f"  {overuse:>7} {net.sinks:>7} {net.control_sinks:>7}  "
                      f"{net.driver_type:<11} {name[:70]} <- {net.driver[:60]}")
    for path in paths:
        print(f"\n{path.arrival:6.2f} ns  -> {path.end}")
        last = None
        for name, cell_type, _, t in path.steps:
            sig = signal_of(name)
            if args.verbose or sig != last or name == path.steps[-1][0]:
                print(f"  {t:6.2f}  {cell_type:<12} {sig if not args.verbose else name}")
            last = sig
    return 0


if __name__ == "__main__":
    sys.exit(main())
