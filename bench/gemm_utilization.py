# SPDX-License-Identifier: Apache-2.0
"""GEMM pipeline utilization on the Verilated hardware: JSON + PNG plot.

    python bench/gemm_utilization.py [--json build/bench/gemm.json] [--preset tiny] [--seed N]
    python bench/gemm_utilization.py --from-json build/bench/gemm.json    # plot only

Runs the same problems as ``lightformer bench gemm`` (``sim.bench.run_gemm``), writes the JSON
and ``<json stem>.png`` next to it: utilization (ideal MAC cycles / measured cycles) per problem,
grouped by K, with the steady-state value (K >= 128) and the 0.90 target marked.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from sw.report import STDOUT, atomic_write_bytes

TARGET = 0.90


def plot(data: dict[str, Any], png: Path) -> Path:
    """Write the utilization plot of a ``bench gemm`` result to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = data["cases"]
    labels = [f"{c['M']}x{c['K']}x{c['N']}" for c in cases]
    util = [c["utilization"] for c in cases]
    colors = ["tab:blue" if c["K"] >= data.get("steady_state_k_min", 128) else "tab:gray"
              for c in cases]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.bar(range(len(cases)), util, color=colors)
    for i, c in enumerate(cases):
        ax.text(i, util[i] + 0.01, f"{util[i]:.3f}", ha="center", fontsize=7)
        if c["mismatches"]:
            ax.text(i, 0.05, "MISMATCH", ha="center", rotation=90, color="red")
    ax.axhline(TARGET, color="tab:red", linestyle="--", linewidth=1, label=f"target {TARGET}")
    ss = data.get("steady_state_utilization")
    if ss is not None:
        ax.axhline(ss, color="tab:blue", linestyle=":", linewidth=1,
                   label=f"steady state (K >= {data.get('steady_state_k_min', 128)}): {ss:.3f}")
    ax.set_xticks(range(len(cases)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("problem M x K x N")
    ax.set_ylabel("utilization = ideal MAC cycles / cycles")
    ax.set_title(f"GEMM pipeline {data['rows']}x{data['cols']} (preset {data['preset']}, "
                 f"{data['digest']}), Verilator, {data['date'][:10]}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(png, buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    from sim.bench import KIND, gemm_cases, print_table, run_gemm
    from sim.benchkit import add_common, say_for, write_report

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common(p, "build/bench/gemm.json")
    p.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                   help="plot an existing result instead of simulating")
    args = p.parse_args(argv)
    if args.from_json is not None:
        try:
            data = json.loads(args.from_json.read_text())
        except (OSError, ValueError) as exc:
            print(f"gemm_utilization: cannot read {args.from_json}: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {plot(data, args.from_json.with_suffix('.png'))}")
        return 0
    from hw.params import preset

    say = say_for(args.json)
    params = preset(args.preset)
    data = run_gemm(params, gemm_cases(params.rows, params.cols, params.k_depth),
                    seed=args.seed)
    print_table(data, say)
    write_report(args.json, data, kind=KIND, say=say)
    png = Path("build/bench/gemm.png") if args.json == STDOUT else args.json.with_suffix(".png")
    say(f"wrote {plot(data, png)}")
    return 0 if data["bit_exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
