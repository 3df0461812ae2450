# SPDX-License-Identifier: Apache-2.0
"""Turn nextpnr's ``--report`` JSON into the fields of lightformer's synthesis report.

nextpnr writes ``{"utilization": {bel_type: {"used", "available"}}, "fmax": {clock_net:
{"achieved", "constraint"}} (MHz), "critical_paths": [{"from", "to", "path": [...]}]}``.
We map the device-specific bel types to common names:

======== ========================================== =====================================
name     ECP5 (nextpnr-ecp5)                        iCE40 (nextpnr-ice40)
======== ========================================== =====================================
LUT      ``TRELLIS_COMB`` (LUT4 + carry halves)     ``ICESTORM_LC`` (logic cells)
FF       ``TRELLIS_FF``                             flip-flops in ``ICESTORM_LC`` (*)
DSP      ``MULT18X18D``                             ``ICESTORM_DSP`` (``SB_MAC16``)
BRAM     ``DP16KD`` (18 kbit EBR)                   ``ICESTORM_RAM`` (4 kbit EBR)
SPRAM    --                                         ``ICESTORM_SPRAM`` (256 kbit)
PLL      ``EHXPLLL``                                ``ICESTORM_PLL``
IO       ``TRELLIS_IO``                             ``SB_IO``
======== ========================================== =====================================

(*) nextpnr-ice40 reports only whole logic cells; the FF count is taken from Yosys' cell
statistics (``SB_DFF*``) when given, out of the logic-cell total (one FF per cell).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["BEL_MAP", "critical_path_summary", "parse_nextpnr_report", "yosys_ff_count"]

#: common name -> bel type, per family (see the module docstring).
BEL_MAP: dict[str, dict[str, str]] = {
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "DSP": "MULT18X18D", "BRAM": "DP16KD",
             "PLL": "EHXPLLL", "IO": "TRELLIS_IO"},
    "ice40": {"LUT": "ICESTORM_LC", "DSP": "ICESTORM_DSP", "BRAM": "ICESTORM_RAM",
              "SPRAM": "ICESTORM_SPRAM", "PLL": "ICESTORM_PLL", "IO": "SB_IO"},
}


def _num(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"nextpnr report: {what} must be a number, not {value!r}")
    return value


def yosys_ff_count(yosys_log: str) -> int | None:
    """Flip-flops (``SB_DFF*`` / ``TRELLIS_FF``) in the last cell statistics of a Yosys log."""
    # Yosys prints one statistics block per `stat`; synth_* ends with the whole design. Within
    # it, a flat design is listed twice ("=== top ===" and "=== design hierarchy ==="): count
    # the hierarchy totals when present, else the single module.
    blocks = yosys_log.split("Printing statistics.")
    if len(blocks) < 2:
        return None
    last = blocks[-1].split("End of script")[0]
    if "=== design hierarchy ===" in last:
        last = last.split("=== design hierarchy ===", 1)[1]
    total = 0
    found = False
    for m in re.finditer(r"^\s+(\d+)\s+(?:\S+\s+)?(SB_DFF\w*|TRELLIS_FF)\s*$", last,
                         re.MULTILINE):
        total += int(m.group(1))
        found = True
    return total if found else None


def critical_path_summary(report: dict, clock: str | None = None,
                          max_steps: int = 40) -> dict | None:
    """The critical path of ``clock`` (or the first one): endpoints, delay split, cells.

    nextpnr names a path's ends by edge and clock (``"posedge clk"``, or ``"<async>"`` for a
    port), where ``fmax`` names the clock alone (``"clk"``); the path from ``clock`` to
    ``clock`` is preferred over the cross-domain ones (ports to and from the clock)."""
    paths = report.get("critical_paths") or []

    def clock_of(end):
        return str(end or "").removeprefix("posedge ").removeprefix("negedge ")

    def rank(p):
        ends = (clock_of(p.get("from")), clock_of(p.get("to")))
        return 2 if ends == (clock, clock) else 1 if clock in ends else 0

    chosen = None
    if clock is None:
        chosen = paths[0] if paths else None
    elif paths and max(map(rank, paths)) > 0:
        chosen = max(paths, key=rank)       # the first of the best rank
    if chosen is None:
        return None
    steps = chosen.get("path") or []
    logic = sum(float(s.get("delay", 0.0)) for s in steps if s.get("type") != "routing")
    routing = sum(float(s.get("delay", 0.0)) for s in steps if s.get("type") == "routing")
    cells: list[str] = []
    for s in steps:
        for end in ("from", "to"):
            cell = (s.get(end) or {}).get("cell")
            if cell and (not cells or cells[-1] != cell):
                cells.append(cell)
    first = (steps[0].get("from") or {}) if steps else {}
    last = (steps[-1].get("to") or {}) if steps else {}
    return {
        "clock": chosen.get("from"),
        "from": f"{first.get('cell')}.{first.get('port')}" if first else None,
        "to": f"{last.get('cell')}.{last.get('port')}" if last else None,
        "delay_ns": round(logic + routing, 3),
        "logic_ns": round(logic, 3),
        "routing_ns": round(routing, 3),
        "cells": cells[:max_steps],
    }


def parse_nextpnr_report(report: dict, *, family: str, target_mhz: float,
                         yosys_log: str | None = None) -> dict:
    """Our report fields from nextpnr's ``--report`` JSON.

    Parameters
    ----------
    report : dict
        The parsed nextpnr report.
    family : str
        ``"ecp5"`` or ``"ice40"``.
    target_mhz : float
        The main clock's target; the main clock is the reported clock whose constraint is
        closest to it.
    yosys_log : str, optional
        The Yosys log (``top.rpt``), for the iCE40 flip-flop count.

    Returns
    -------
    dict
        ``fmax_mhz`` (main clock), ``target_mhz``, ``timing_met`` (every constrained clock
        meets its constraint), ``clock``, ``clocks`` (net -> {"fmax_mhz", "constraint_mhz",
        "met"}), ``resources`` (name -> {"used", "total"}), ``critical_path`` (or ``None``).

    Raises
    ------
    ValueError
        Unknown family, or a report without ``utilization``/``fmax`` (e.g. nextpnr stopped
        before timing analysis).
    """
    if family not in BEL_MAP:
        raise ValueError(f"family must be one of {', '.join(BEL_MAP)}, not {family!r}")
    if not isinstance(report, dict) or "utilization" not in report:
        raise ValueError("nextpnr report has no 'utilization' section; did place-and-route "
                         "finish? (see the nextpnr log, top.tim)")
    util = report["utilization"]
    fmax = report.get("fmax") or {}
    if not fmax:
        raise ValueError("nextpnr report has no 'fmax' section: no constrained clock was "
                         "analysed (check the clock constraint in the .lpf/.pcf)")

    resources: dict[str, dict[str, int]] = {}
    for name, bel in BEL_MAP[family].items():
        entry = util.get(bel)
        if entry is None:
            if name in ("LUT", "FF", "DSP", "BRAM"):
                resources[name] = {"used": 0, "total": 0}
            continue
        resources[name] = {"used": int(_num(entry.get("used"), f"{bel}.used")),
                           "total": int(_num(entry.get("available"), f"{bel}.available"))}
    if family == "ice40":
        ff = yosys_ff_count(yosys_log) if yosys_log else None
        lc_total = resources["LUT"]["total"]
        resources["FF"] = {"used": ff if ff is not None else -1, "total": lc_total}
        resources = {k: resources[k] for k in ("LUT", "FF", "DSP", "BRAM", "SPRAM", "PLL", "IO")
                     if k in resources}

    clocks: dict[str, dict[str, Any]] = {}
    for net, entry in fmax.items():
        achieved = float(_num(entry.get("achieved"), f"fmax[{net}].achieved"))
        constraint = float(_num(entry.get("constraint"), f"fmax[{net}].constraint"))
        clocks[net] = {"fmax_mhz": round(achieved, 2), "constraint_mhz": round(constraint, 2),
                       "met": achieved >= constraint}
    main = min(fmax, key=lambda n: abs(float(fmax[n]["constraint"]) - target_mhz))
    if abs(clocks[main]["constraint_mhz"] - target_mhz) > 1e-3 * target_mhz:
        raise ValueError(
            f"nextpnr constrained no clock at the target {target_mhz:g} MHz (clocks: "
            + ", ".join(f"{n} {c['constraint_mhz']:g} MHz" for n, c in clocks.items())
            + "); the Fmax would be measured against the wrong constraint")
    return {
        "fmax_mhz": clocks[main]["fmax_mhz"],
        "target_mhz": round(float(target_mhz), 3),
        "timing_met": all(c["met"] for c in clocks.values()),
        "clock": main,
        "clocks": clocks,
        "resources": resources,
        "critical_path": critical_path_summary(report, main),
    }
