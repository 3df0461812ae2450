# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench model`` and ``lightformer bench layer``: whole compiled programs on the
Verilated accelerator, counted cycle by cycle and checked bit for bit.

Both build (or reuse) the virtual board of ``--preset`` (:mod:`sim.vboard`: the accelerator top
behind its link, what a board builds), start it on a free loopback port and drive it through
the host driver (:mod:`sw.driver`), as ``lightformer demo`` does. Every sample's logits are
compared with :func:`sw.ref.model_forward_int` (``mismatches``) and with the ISA simulator
(:mod:`sw.isasim`, ``isa_mismatches``); the perf counters (``hw.isa.Csr.PERF_*``) are read
after every run.

* ``bench model`` runs ``--samples`` test inputs of an artifact (the test set shipped beside
  it, as the demo uses) and, when torch is importable, times the same model in fp32 on the CPU
  at batch 1 in the same process (``cpu_torch_latency_us``).
* ``bench layer`` runs one encoder layer of random int8 weights
  (:func:`sw.program.random_artifact`) of ``--d-model``, ``--seq-len``, ``--heads``, ``--d-ff``
  and ``--window``. The program is compiled in streamed mode (``sw.program``: a HALT after the
  input projection, after the layer and after the head), so the layer is one run of its own and
  its counters are the layer's alone.

MACs (``docs/cli.md``): the multiply-accumulates the ISA simulator counts
(``sw.isasim.SimStats.macs``): ``M*K*N`` per GEMM (input projection and head included) plus
``2 * keys * head_dim`` per query row and head of ATTN (``q.k`` and ``p.v`` over the keys of the
window). ``ideal_cycles`` = MACs / ``AccelParams.macs_per_cycle`` (``rows * cols``);
``utilization`` = ``ideal_cycles / cycles``.

The device runs through ``Accelerator.predict``, the path ``infer`` and the demo take; the
counters are per run (START clears them), so its ``after_run`` hook reads ``PERF_*`` as each run
ends.

Top-level imports stay light: the board, the driver, NumPy and torch load inside the benches.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sim.benchkit import Say, add_common, int_type, preset_type, report_path
from sw.report import STDOUT, UsageError, source_commit

__all__ = ["KIND_LAYER", "KIND_MODEL", "LAYER_DESCRIPTION", "MODEL_DESCRIPTION",
           "add_layer_arguments", "add_model_arguments", "bench_layer", "bench_model",
           "cpu_torch_latency", "layer_config", "run_program", "write_plot"]

#: ``kind`` of the JSON reports (``sw.report.write_json``).
KIND_MODEL = "bench.model"
KIND_LAYER = "bench.layer"
MODEL_DESCRIPTION = ("an artifact's test inputs on the Verilated accelerator: cycles, per-unit "
                     "busy/stall, utilization, bit-exact vs the NumPy model and the ISA simulator")
LAYER_DESCRIPTION = ("one encoder layer of random int8 weights on the Verilated accelerator: "
                     "cycles, ideal cycles, utilization, per-unit busy/stall, bit-exact")
#: Seconds to wait for one run to finish: the Verilated ulx3s_85f top simulates a few 10 k
#: cycles per wall second on a busy 2-core machine, and a layer at d 64, T 64 is ~10^5 cycles.
RUN_TIMEOUT_S = 900.0
#: CPU PyTorch timing: calls before the timed ones, timed calls.
TORCH_WARMUP = 20
TORCH_ITERATIONS = 200

#: Input width of ``bench layer``'s random model (see :func:`layer_config`).
LAYER_PATCH_DIM = 8

_samples = int_type("samples", 1, "positive")
_dim = int_type("dimension", 1, "positive")


# -- arguments --------------------------------------------------------------------------------

def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", action="store_true",
                        help="do not write the per-unit plot (PNG beside the JSON)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from sw.report import add_json_argument

    add_json_argument(parser, "build/bench/model.json")
    parser.add_argument("--preset", type=preset_type, default="tiny",
                        help="accelerator preset (default: tiny; see `lightformer info`)")
    parser.add_argument("--artifact", default=None, metavar="PATH",
                        help="int8 artifact (default: the first shipped digits model that "
                             "fits the preset)")
    parser.add_argument("--samples", type=_samples, default=100, metavar="N",
                        help="run the first N test inputs (default: 100, or all when fewer)")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the CPU PyTorch fp32 timing (cpu_torch_latency_us null)")
    _common(parser)


def add_layer_arguments(parser: argparse.ArgumentParser) -> None:
    add_common(parser, "build/bench/layer.json")
    parser.add_argument("--d-model", type=_dim, default=64, metavar="D",
                        help="model width (default: 64)")
    parser.add_argument("--seq-len", type=_dim, default=64, metavar="T",
                        help="tokens (default: 64)")
    parser.add_argument("--heads", type=_dim, default=None, metavar="H",
                        help="attention heads (default: the fewest whose head_dim fits the "
                             "preset's)")
    parser.add_argument("--d-ff", type=_dim, default=None, metavar="F",
                        help="FFN hidden width (default: 4 * D)")
    parser.add_argument("--window", type=_dim, default=None, metavar="W",
                        help="causal attention window (default: the preset's window, at most "
                             "T)")
    parser.add_argument("--samples", type=_samples, default=2, metavar="N",
                        help="random inputs to run (default: 2)")
    _common(parser)


# -- the run ----------------------------------------------------------------------------------

def _perf_csrs() -> list[Any]:
    """The ``PERF_*`` CSRs in address order; they are consecutive words (one READ)."""
    from hw import isa

    regs = sorted((c for c in isa.Csr if c.name.startswith("PERF_")), key=int)
    assert [int(c) - int(regs[0]) for c in regs] == [4 * i for i in range(len(regs))]
    return regs


def _counter_name(csr: Any) -> str:
    return csr.name[len("PERF_"):].lower()          # cycles, instret, gemm_busy, ...


def _run_names(program: Any) -> list[str]:
    return [layer for layer, _ in program.runs] if program.mode == "streamed" else ["model"]


def _isa_runs(program: Any, x_q: Any) -> tuple[list[Any], list[Any]]:
    """The ISA simulator's logits of every sample and the :class:`sw.isasim.SimStats` of each
    run of the first sample (the work a program does does not depend on its input)."""
    from sw import isasim

    per_run: list[tuple[int, Any]] = []
    logits = isasim.simulate(program, x_q,
                             after_run=lambda entry, one: per_run.append((entry, one)))

    def merged(a: Any, b: Any) -> Any:
        total = isasim.SimStats()
        total.add(a)
        total.add(b)
        return total

    return list(logits), _by_step(program, per_run, merged)[:len(program.steps())]


def _by_step(program: Any, runs: list[tuple[int, Any]],
             merge: Callable[[Any, Any], Any]) -> list[Any]:
    """The device runs of ``runs`` (``(entry, counts)``, in order) merged into one per program
    step: on a design with ``host_units`` a step is several device runs, the later ones
    starting after each instruction the host ran (never at a step's entry, which follows a
    HALT)."""
    entries = {entry for entry, _ in program.steps()}
    out: list[Any] = []
    for entry, counts in runs:
        out.append(counts if entry in entries or not out else merge(out.pop(), counts))
    return out


def _device_sample(acc: Any, program: Any, sample: Any, csrs: Sequence[Any],
                   timeout: float) -> tuple[Any, list[dict[str, int]]]:
    """One inference through the driver (``Accelerator.predict``, the path ``infer`` and the demo
    take): the logits and the perf counters of each run, read as each run ends."""
    from hw import isa

    csr = isa.memory_map(program.params).region("csr").base
    runs: list[dict[str, int]] = []

    def read_perf(entry: int) -> None:
        words = acc.read(csr + int(csrs[0]), len(csrs))
        runs.append((entry, {_counter_name(c): w for c, w in zip(csrs, words)}))

    logits = acc.predict(sample, timeout=timeout, after_run=read_perf)
    return logits, _by_step(program, runs, lambda a, b: {k: a[k] + b[k] for k in a})


@contextlib.contextmanager
def _board(params: Any, progress: bool, stats: dict[str, Any]) -> Iterator[str]:
    from sim import vboard

    vb = vboard.start(params, progress=progress)
    try:
        yield vb.url
    finally:
        rc = vb.stop()
        stats.update(vb.stats or {}, exit_status=rc)


def run_program(program: Any, x_q: Any, want: Any, *, progress: bool = True,
                say: Say = print) -> dict[str, Any]:
    """Run ``program`` on every sample of ``x_q`` on the virtual board of its preset and in the
    ISA simulator; compare both with ``want`` (``sw.ref.model_forward_int``'s logits).

    Returns ``samples``, ``mismatches``, ``isa_mismatches``, ``first_mismatch``, ``logits``
    (the device's), ``runs`` (per run: ``layer``, ``macs``, the mean of each perf counter over
    the samples, its min and max cycles), ``vboard`` and ``wall_s``.
    """
    import numpy as np

    from sw.driver import Accelerator

    params = program.params
    isa_logits, isa_stats = _isa_runs(program, x_q)
    csrs = _perf_csrs()
    stats: dict[str, Any] = {}
    got, perf = [], []
    t0 = time.monotonic()
    with _board(params, progress, stats) as url:
        say(f"virtual board ({params.name}) serving {url}, started in "
            f"{time.monotonic() - t0:.1f} s")
        with Accelerator.open(url, baud=params.baud, timeout=5.0) as acc:
            acc.load(program)
            bar = None
            if progress:
                import sys

                from tqdm import tqdm
                bar = tqdm(total=len(x_q), desc="bench", unit="sample", leave=False,
                           file=sys.stderr)
            try:
                for sample in x_q:
                    logits, runs = _device_sample(acc, program, sample, csrs, RUN_TIMEOUT_S)
                    got.append(logits)
                    perf.append(runs)
                    if bar is not None:
                        bar.update(1)
            finally:
                if bar is not None:
                    bar.close()
    wall = time.monotonic() - t0
    want = list(np.asarray(want))
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if not np.array_equal(g, w)]
    isa_bad = [i for i, (g, w) in enumerate(zip(got, isa_logits)) if not np.array_equal(g, w)]
    runs = []
    for k, layer in enumerate(_run_names(program)):
        counters = {name: statistics.fmean(p[k][name] for p in perf) for name in perf[0][k]}
        cycles = [p[k]["cycles"] for p in perf]
        runs.append({"layer": layer, "macs": dict(isa_stats[k].macs),
                     "isa_instructions": isa_stats[k].instructions,
                     "counters": counters, "cycles_min": min(cycles),
                     "cycles_max": max(cycles)})
    sim_cycles = stats.get("cycles")
    return {"samples": len(got), "mismatches": len(bad), "isa_mismatches": len(isa_bad),
            "first_mismatch": (bad or isa_bad or [None])[0], "logits": got, "runs": runs,
            "vboard": stats or None, "wall_s": round(wall, 1),
            "sim_cycles_per_s": round(sim_cycles / wall) if sim_cycles and wall else None}


# -- numbers ----------------------------------------------------------------------------------

def _per_unit(counters: dict[str, float]) -> dict[str, dict[str, float]]:
    from hw import isa

    cycles = counters["cycles"] or 1
    out = {}
    for unit in isa.UNITS:
        busy, stall = counters[f"{unit}_busy"], counters[f"{unit}_stall"]
        out[unit] = {"busy": busy, "stall": stall, "busy_fraction": round(busy / cycles, 4),
                     "stall_fraction": round(stall / cycles, 4)}
    return out


def _summary(counters: dict[str, float], macs: dict[str, int], params: Any) -> dict[str, Any]:
    """The cycle keys of one run, or of the sum of runs (``docs/cli.md``)."""
    per_unit = _per_unit(counters)
    total = sum(macs.values())
    ideal = total / params.macs_per_cycle
    cycles = counters["cycles"]
    return {
        "cycles": cycles,
        "instructions": counters["instret"],
        "macs": {"gemm": macs.get("gemm", 0), "attn": macs.get("attn", 0), "total": total},
        "ideal_cycles": ideal,
        "utilization": round(ideal / cycles, 4) if cycles else None,
        "per_unit": per_unit,
        "other_cycles": cycles - sum(u["busy"] + u["stall"] for u in per_unit.values()),
        "projected_latency_us": cycles / params.target_mhz,
    }


def _add(runs: Sequence[dict[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    counters: dict[str, float] = {}
    macs: dict[str, int] = {}
    for r in runs:
        for name, v in r["counters"].items():
            counters[name] = counters.get(name, 0) + v
        for name, v in r["macs"].items():
            macs[name] = macs.get(name, 0) + v
    return counters, macs


def _header(params: Any, bench: str) -> dict[str, Any]:
    return {"bench": bench, "preset": params.name, "digest": params.digest(),
            "design_id": f"{params.design_id:08x}", "rows": params.rows, "cols": params.cols,
            "macs_per_cycle": params.macs_per_cycle, "attn_lanes": params.attn_lanes,
            "clock_mhz": params.target_mhz,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": source_commit()}


def cpu_torch_latency(config: dict[str, Any], *, warmup: int = TORCH_WARMUP,
                      iterations: int = TORCH_ITERATIONS) -> dict[str, Any]:
    """Median wall time of one fp32 batch-1 forward of :class:`sw.model.LightTransformer` with
    ``config`` on the CPU (``torch.inference_mode``), in microseconds; ``latency_us`` is
    ``None`` and ``note`` says why when torch cannot be imported. The weights are the model's
    initial ones: the arithmetic, and so the time, does not depend on their values."""
    try:
        import torch
    except ImportError as exc:
        return {"latency_us": None, "note": f"torch is not importable ({exc}); "
                                           "`pip install -e .[ml]` installs it"}
    from dataclasses import fields

    from sw.model import LightTransformer, ModelConfig

    known = {f.name for f in fields(ModelConfig)}
    cfg = ModelConfig.from_dict({k: v for k, v in config.items() if k in known})
    torch.manual_seed(0)
    model = LightTransformer(cfg).eval()
    t = cfg.seq_len
    if cfg.input_kind == "patches":
        x = torch.randn(1, t, cfg.patch_dim)
    else:
        x = torch.randint(0, cfg.vocab_size, (1, t))
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(iterations):
            t0 = time.perf_counter_ns()
            model(x)
            times.append((time.perf_counter_ns() - t0) / 1e3)
    return {"latency_us": round(statistics.median(times), 1), "mean_us":
            round(statistics.fmean(times), 1), "min_us": round(min(times), 1),
            "iterations": iterations, "warmup": warmup, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "note": None}


# -- plot -------------------------------------------------------------------------------------

def _plot_path(json_path: Any) -> Path | None:
    if json_path is None or json_path == STDOUT:
        return None
    return Path(json_path).with_suffix(".png")


def write_plot(data: dict[str, Any], cycles: float, path: Path, title: str) -> str | None:
    """Per-unit busy and stall cycles (and the cycles no unit counted) as stacked bars;
    ``None`` when written, else why not."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (`pip install matplotlib`); no plot written"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sw.report import write_figure

    units = list(data["per_unit"])
    busy = [data["per_unit"][u]["busy"] for u in units]
    stall = [data["per_unit"][u]["stall"] for u in units]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.bar(units, busy, label="busy", color="tab:blue")
    ax.bar(units, stall, bottom=busy, label="stall", color="tab:orange")
    other = data["other_cycles"]
    if other > 0:
        ax.bar(["other"], [other], label="no unit counting", color="tab:gray")
    ax.axhline(cycles, color="black", lw=0.8, ls="--", label="cycles")
    ax.axhline(data["ideal_cycles"], color="tab:green", lw=0.8, ls=":", label="ideal cycles")
    ax.set_ylabel("cycles per inference" if data["bench"] == "model" else "cycles")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_figure(fig, path)
    return None


def _plot(args: argparse.Namespace, data: dict[str, Any], cycles: float, title: str,
          say: Say) -> None:
    path = _plot_path(args.json)
    note = None
    if args.no_plot:
        note = "--no-plot"
    elif path is None:
        note = "no --json file to put the plot beside"
    else:
        note = write_plot(data, cycles, path, title)
    data["plot"] = report_path(path) if note is None else None
    data["plot_note"] = note
    if note is None:
        say(f"wrote {path}")
    elif not args.no_plot:
        say(f"plot: {note}")


def _table(data: dict[str, Any], cycles: float, say: Say) -> None:
    say(f"{'unit':>6} {'busy':>10} {'stall':>10} {'busy %':>7} {'stall %':>7}")
    for unit, u in data["per_unit"].items():
        say(f"{unit:>6} {u['busy']:>10.0f} {u['stall']:>10.0f} {100 * u['busy_fraction']:>6.1f}%"
            f" {100 * u['stall_fraction']:>6.1f}%")
    say(f"{'other':>6} {data['other_cycles']:>10.0f}")
    say(f"cycles {cycles:.0f}, ideal {data['ideal_cycles']:.0f} "
        f"({data['macs']['total']} MACs / {data['macs_per_cycle']} per cycle), utilization "
        f"{data['utilization']:.3f}; {data['instructions']:.0f} instructions; "
        f"{data['projected_latency_us']:.1f} us at {data['clock_mhz']:g} MHz")


def _error(res: dict[str, Any]) -> str | None:
    """What ``lightformer bench`` reports on exit 1 besides ``mismatches``."""
    n = res["isa_mismatches"]
    return f"{n} samples differ from the ISA simulator" if n else None


def _verdict(data: dict[str, Any], say: Say) -> None:
    say(f"bit-exact: {data['samples'] - data['mismatches']} of {data['samples']} samples equal "
        f"sw.ref.model_forward_int, {data['samples'] - data['isa_mismatches']} equal the ISA "
        f"simulator")


# -- bench model ------------------------------------------------------------------------------

def bench_model(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """``lightformer bench model``: run, print, return the report (module docstring)."""
    import numpy as np

    from hw.params import preset
    from sw import ref
    from sw.artifact import ArtifactError, load_artifact
    from sw.infer_command import shipped_artifact_for
    from sw.program import FitError, compile_program
    from sw.testset import task_inputs

    params = preset(args.preset)
    where = "lightformer bench model"
    try:
        art = load_artifact(args.artifact if args.artifact is not None
                            else shipped_artifact_for(params))
        x_q, y, source = task_inputs(art, args.samples)
    except (ArtifactError, ValueError, FitError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    except ModuleNotFoundError as exc:
        raise UsageError(f"{where}: the {art.task!r} test inputs need the Python package "
                         f"{exc.name!r}, or a test set file beside the artifact (`python -m "
                         f"sw.testset --artifact {art.path}`)") from None
    try:
        program = compile_program(art, params)
    except FitError as exc:
        raise UsageError(f"{where}: {exc}") from None
    say(f"bench model: {art.path.name} ({art.task}) on the {params.name} accelerator, "
        f"{program.mode} mode, {len(program.instructions)} instructions, {len(x_q)} samples")
    want = ref.model_forward_int(art, x_q)
    res = run_program(program, x_q, want, progress=not args.no_progress, say=say)
    logits = np.stack(res.pop("logits"))
    counters, macs = _add(res["runs"])
    summary = _summary(counters, macs, params)
    cycles = summary.pop("cycles")
    data: dict[str, Any] = {**_header(params, "model"),
                            "artifact": report_path(art.path), "model_id": art.model_id,
                            "task": art.task, "inputs": report_path(source), "mode": program.mode,
                            "program_instructions": len(program.instructions),
                            "samples": res["samples"], "mismatches": res["mismatches"],
                            "isa_mismatches": res["isa_mismatches"],
                            "bit_exact": res["mismatches"] == 0 and res["isa_mismatches"] == 0,
                            "first_mismatch": res["first_mismatch"], "error": _error(res)}
    if art.config["task"] == "classify":
        data["accuracy"] = float(np.mean(np.argmax(logits, -1) == y))
        data["accuracy_ref"] = float(np.mean(np.argmax(want, -1) == y))
    data.update(cycles_per_inference=cycles, cycles_min=sum(r["cycles_min"] for r in res["runs"]),
                cycles_max=sum(r["cycles_max"] for r in res["runs"]), **summary)
    if args.no_torch:
        cpu = {"latency_us": None, "note": "skipped (--no-torch)"}
    else:
        say("timing CPU PyTorch fp32, batch 1 ...")
        cpu = cpu_torch_latency(art.config)
    data["cpu_torch_latency_us"] = cpu["latency_us"]
    data["cpu_torch"] = cpu
    data["speedup_vs_cpu_torch"] = (round(cpu["latency_us"] / data["projected_latency_us"], 3)
                                    if cpu["latency_us"] else None)
    data["runs"] = [_run_entry(r, params) for r in res["runs"]]
    data.update(vboard=res["vboard"], wall_s=res["wall_s"],
                sim_cycles_per_s=res["sim_cycles_per_s"])
    _verdict(data, say)
    _table(data, cycles, say)
    if cpu["latency_us"] is not None:
        say(f"CPU PyTorch fp32 batch 1: {cpu['latency_us']:.1f} us median over "
            f"{cpu['iterations']} calls ({cpu['threads']} threads); projected FPGA latency "
            f"{data['projected_latency_us']:.1f} us")
    else:
        say(f"CPU PyTorch timing: {cpu['note']}")
    _plot(args, data, cycles, f"bench model: {art.path.name} on {params.name}, "
          f"{data['samples']} samples (per inference)", say)
    return data


def _run_entry(run: dict[str, Any], params: Any) -> dict[str, Any]:
    s = _summary(run["counters"], run["macs"], params)
    return {"layer": run["layer"], **s, "isa_instructions": run["isa_instructions"],
            "cycles_min": run["cycles_min"], "cycles_max": run["cycles_max"]}


# -- bench layer ------------------------------------------------------------------------------

def layer_config(params: Any, *, d_model: int, seq_len: int, heads: int | None = None,
                 d_ff: int | None = None, window: int | None = None) -> dict[str, Any]:
    """The random model's config of ``bench layer``; :class:`ValueError` names the preset's
    limit an argument exceeds (the rest, activations and weights, :class:`sw.program.FitError`
    names when the program is compiled)."""
    from hw.numerics import LN_MAX_DIM

    if d_model > LN_MAX_DIM:
        raise ValueError(f"--d-model must be at most {LN_MAX_DIM} (hw.numerics.LN_MAX_DIM), "
                         f"not {d_model}")
    if heads is None:
        heads = next(h for h in range(1, d_model + 1)
                     if d_model % h == 0 and d_model // h <= params.head_dim)
    if d_model % heads:
        raise ValueError(f"--heads ({heads}) must divide --d-model ({d_model})")
    head_dim = d_model // heads
    if head_dim > params.head_dim:
        raise ValueError(f"head_dim {head_dim} (--d-model {d_model} / --heads {heads}) exceeds "
                         f"the {params.name} preset's head_dim {params.head_dim} "
                         f"(AccelParams.head_dim); use more --heads")
    if window is None:
        window = min(params.window, seq_len)
    if window > params.window:
        raise ValueError(f"--window {window} exceeds the {params.name} preset's window "
                         f"{params.window} (AccelParams.window)")
    d_ff = 4 * d_model if d_ff is None else d_ff
    for what, k in (("--d-model", d_model), ("--d-ff", d_ff)):
        if k > params.k_depth:
            raise ValueError(f"{what} {k} exceeds the {params.name} preset's GEMM reduction "
                             f"length {params.k_depth} (AccelParams.k_depth)")
    # The input projection (a run of its own, not the layer) takes 8-wide patches, as the
    # digits model does: a d_model-wide input would take T * d_model bytes of activations that
    # the layer does not need (at d 64, T 64 the layer then no longer fits ulx3s_85f's 32 KiB).
    return {"task": "classify", "input_kind": "patches", "patch_dim": LAYER_PATCH_DIM,
            "seq_len": seq_len, "n_classes": 10, "d_model": d_model, "n_heads": heads,
            "n_layers": 1, "d_ff": d_ff, "attention": "window", "window": window,
            "causal": True}


def bench_layer(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """``lightformer bench layer``: run, print, return the report (module docstring)."""
    import numpy as np

    from hw.params import preset
    from sw import ref
    from sw.artifact import ArtifactError
    from sw.program import FitError, compile_program, random_artifact

    params = preset(args.preset)
    where = "lightformer bench layer"
    try:
        cfg = layer_config(params, d_model=args.d_model, seq_len=args.seq_len,
                           heads=args.heads, d_ff=args.d_ff, window=args.window)
        art = random_artifact(cfg, seed=args.seed)
        program = compile_program(art, params, mode="streamed")
    except (ArtifactError, FitError, ValueError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    rng = np.random.default_rng(args.seed)
    x_q = rng.integers(-128, 128, (args.samples, cfg["seq_len"], cfg["patch_dim"])).astype(
        np.int8)
    hd = cfg["d_model"] // cfg["n_heads"]
    say(f"bench layer: d_model {cfg['d_model']}, T {cfg['seq_len']}, {cfg['n_heads']} heads of "
        f"{hd}, d_ff {cfg['d_ff']}, causal window {cfg['window']} on the {params.name} "
        f"accelerator ({params.rows}x{params.cols}), {args.samples} random inputs")
    want = ref.model_forward_int(art, x_q)
    res = run_program(program, x_q, want, progress=not args.no_progress, say=say)
    res.pop("logits")
    runs = [_run_entry(r, params) for r in res["runs"]]
    layer = next(r for r in runs if r["layer"] == "blocks.0")
    data: dict[str, Any] = {
        **_header(params, "layer"), "seed": args.seed,
        "config": {"d_model": cfg["d_model"], "seq_len": cfg["seq_len"],
                   "heads": cfg["n_heads"], "head_dim": hd, "d_ff": cfg["d_ff"],
                   "window": cfg["window"], "causal": cfg["causal"]},
        "samples": res["samples"], "mismatches": res["mismatches"],
        "isa_mismatches": res["isa_mismatches"],
        "bit_exact": res["mismatches"] == 0 and res["isa_mismatches"] == 0,
        "first_mismatch": res["first_mismatch"],
        **{k: v for k, v in layer.items() if k != "layer"},
        "program_cycles": sum(r["cycles"] for r in runs),
        "runs": runs, "vboard": res["vboard"], "wall_s": res["wall_s"],
        "sim_cycles_per_s": res["sim_cycles_per_s"], "error": _error(res),
    }
    _verdict(data, say)
    _table(data, data["cycles"], say)
    _plot(args, data, data["cycles"], f"bench layer: d {cfg['d_model']}, T {cfg['seq_len']}, "
          f"{cfg['n_heads']}x{hd} heads, d_ff {cfg['d_ff']} on {params.name}", say)
    return data

