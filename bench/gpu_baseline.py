# SPDX-License-Identifier: Apache-2.0
"""GPU and CPU baselines for the models the accelerator runs: JSON + PNG plot + Markdown table.

    python bench/gpu_baseline.py --device cuda --json build/bench/baseline_gpu.json
    python bench/gpu_baseline.py --device cpu  --json build/bench/baseline_cpu.json
    python bench/gpu_baseline.py --from-json A.json [B.json ...] --markdown docs/baselines.md

``--from-json`` also takes the accelerator's ``lightformer bench model`` (digits) and ``bench
layer`` reports: their rows give the projected latency (Verilated cycles at the preset's clock).

Times, in PyTorch, the same two workloads the FPGA path runs:

* ``digits`` -- the shipped int8 digits model's architecture (``LightTransformer`` built from the
  artifact's manifest config, random weights: a dense forward pass takes the same time for any
  values);
* ``layer`` -- one pre-LN encoder layer at the ``bench layer`` shape: d_model 64, T 64, 4 heads of
  16, d_ff 256, centred window 32 (the ``ulx3s_85f`` preset's attention window).

Each workload runs in fp32 and in bf16 (``torch.autocast``), eager and -- on a GPU -- compiled with
``torch.compile(mode="reduce-overhead")`` (CUDA graphs; batch 1 is launch-bound), with attention
through ``torch.nn.functional.scaled_dot_product_attention``
(the model's own masked softmax is swapped for SDPA after checking both give the same output).
Batch 1 and a sweep of larger batches find the batch that saturates the device; each point is the
best of ``--repeats`` timed runs after warm-up, each run long enough (``--min-run-s``) for the
timer. Timing uses ``time.perf_counter`` around ``torch.cuda.synchronize`` on the GPU.
Nothing here is asserted by a test: it measures (see ``docs/baselines.md`` for the runs).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

#: The ``bench layer`` shape (one encoder layer of the accelerator's layer benchmark).
LAYER_SHAPE = {"d_model": 64, "seq_len": 64, "n_heads": 4, "d_ff": 256, "window": 32,
               "causal": False}
GPU_BATCHES = (1, 8, 64, 512, 4096, 32768)
CPU_BATCHES = (1, 8, 64, 512)


def _sdpa_forward(self, x):
    """``SoftmaxAttention.forward`` through SDPA (same mask, same scale)."""
    import torch.nn.functional as F

    q, k, v = self._split(x)  # (B, H, T, hd) each
    m = self.mask(x.shape[1], x.device)  # (T, T) bool or None
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=m)  # (B, H, T, hd)
    return self._merge(y)  # (B, T, C)


def use_sdpa(model) -> int:
    """Swap every fixed-mask softmax attention of ``model`` to SDPA; returns how many."""
    import types

    from sw.model import SoftmaxAttention

    n = 0
    for mod in model.modules():
        if type(mod) is SoftmaxAttention:
            mod.forward = types.MethodType(_sdpa_forward, mod)
            n += 1
    return n


def digits_model(artifact_path: str | None):
    """``(name, module, input shape, info)`` of the shipped digits model's architecture.

    The weights are a random initialisation: the int8 artifact folds each weight scale into its
    requantization multiplier, and a dense forward pass takes the same time for any values.
    """
    from sw.artifact import default_artifact_path, load_artifact
    from sw.model import LightTransformer, ModelConfig

    art = load_artifact(artifact_path or default_artifact_path())
    cfg = ModelConfig.from_dict(dict(art.config))
    model = LightTransformer(cfg)
    return "digits", model.eval().requires_grad_(False), (cfg.seq_len, cfg.patch_dim), \
        {"config": cfg.to_dict(), "artifact": str(art.path.name)}


def layer_model():
    """One pre-LN encoder layer at :data:`LAYER_SHAPE` (random weights)."""
    import torch

    from sw.model import Block, ModelConfig

    s = LAYER_SHAPE
    cfg = ModelConfig(task="classify", input_kind="patches", patch_dim=s["d_model"],
                      seq_len=s["seq_len"], n_classes=2, d_model=s["d_model"],
                      n_heads=s["n_heads"], n_layers=1, d_ff=s["d_ff"], attention="window",
                      window=s["window"], causal=s["causal"])
    torch.manual_seed(0)
    block = Block(cfg, 0)
    return "layer", block.eval().requires_grad_(False), (s["seq_len"], s["d_model"]), \
        {"shape": dict(s)}


def time_call(fn, x, *, device: str, min_run_s: float, repeats: int) -> float:
    """Best wall time of one call of ``fn(x)`` in seconds (runs long enough for the timer)."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # Warm up for at least half a second: compilation, CUDA graph capture, and an idle GPU's
    # clocks ramping up (an H200 idles at a few hundred MHz) all happen here, not in a timed run.
    t_end = time.perf_counter() + 0.5
    n_warm = 0
    while n_warm < 3 or time.perf_counter() < t_end:
        fn(x)
        n_warm += 1
        sync()
    # Calls per run so one run lasts about min_run_s.
    t0 = time.perf_counter()
    fn(x)
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    calls = max(1, min(10_000, math.ceil(min_run_s / one)))
    best = math.inf
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(x)
        sync()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best


def bench_workload(name, module, shape, *, device: str, batches, precisions, compiled_modes,
                   min_run_s: float, repeats: int, say) -> list[dict[str, Any]]:
    import torch

    module = module.to(device)
    rows = []
    for compiled in compiled_modes:
        # "reduce-overhead" replays CUDA graphs: at batch 1 these models are launch-bound.
        fn_base = torch.compile(module, mode="reduce-overhead") if compiled else module
        for precision in precisions:
            for batch in batches:
                x = torch.randn(batch, *shape, device=device)

                def fn(inp, _f=fn_base, _p=precision):
                    with torch.inference_mode():
                        if _p == "bf16":
                            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                                return _f(inp)
                        return _f(inp)

                try:
                    t = time_call(fn, x, device=device, min_run_s=min_run_s, repeats=repeats)
                except torch.OutOfMemoryError:
                    say(f"  {name} {precision} compiled={compiled} batch {batch}: out of memory")
                    torch.cuda.empty_cache()
                    break
                row = {"workload": name, "precision": precision, "compiled": compiled,
                       "batch": batch, "latency_us": t * 1e6, "per_sample_us": t * 1e6 / batch,
                       "samples_per_s": batch / t}
                rows.append(row)
                say(f"  {name:6} {precision:4} compiled={compiled!s:5} batch {batch:6}: "
                    f"{row['latency_us']:10.1f} us/call  {row['samples_per_s']:12.0f} samples/s")
    return rows


def check_sdpa_equal(module, shape, device: str) -> float:
    """Max abs difference between the model's masked softmax and SDPA (fp32), then swap."""
    import torch

    x = torch.randn(4, *shape, device=device)
    module = module.to(device)
    with torch.inference_mode():
        ref = module(x)
        n = use_sdpa(module)
        out = module(x)
    diff = float((ref - out).abs().max())
    if n == 0:
        raise RuntimeError("no SoftmaxAttention found to swap for SDPA")
    if diff > 1e-4:
        raise RuntimeError(f"SDPA differs from the model's attention by {diff:g} (> 1e-4)")
    return diff


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (workload, precision): batch-1 best latency and the saturating batch's throughput."""
    out = []
    keys = sorted({(r["workload"], r["precision"]) for r in rows})
    for w, p in keys:
        sel = [r for r in rows if r["workload"] == w and r["precision"] == p]
        b1 = [r for r in sel if r["batch"] == 1]
        best1 = min(b1, key=lambda r: r["latency_us"]) if b1 else None
        sat = max(sel, key=lambda r: r["samples_per_s"])
        out.append({
            "workload": w, "precision": p,
            "batch1_latency_us": best1["latency_us"] if best1 else None,
            "batch1_compiled": best1["compiled"] if best1 else None,
            "saturating_batch": sat["batch"], "saturated_samples_per_s": sat["samples_per_s"],
            "saturated_per_sample_us": sat["per_sample_us"], "saturated_compiled": sat["compiled"],
        })
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_baseline: --device cuda but torch sees no GPU; use --device cpu")
    if device == "cpu":
        torch.set_num_threads(args.threads)
    say = print
    batches = args.batches or (GPU_BATCHES if device == "cuda" else CPU_BATCHES)
    compiled_modes = (False, True) if (device == "cuda" and not args.no_compile) else (False,)
    precisions = ("fp32", "bf16")
    rows, workloads = [], {}
    for make in (lambda: digits_model(args.artifact), layer_model):
        name, module, shape, info = make()
        info["sdpa_max_abs_diff"] = check_sdpa_equal(module, shape, device)
        workloads[name] = info
        say(f"{name}: input (B, {shape[0]}, {shape[1]})")
        rows += bench_workload(name, module, shape, device=device, batches=batches,
                               precisions=precisions, compiled_modes=compiled_modes,
                               min_run_s=args.min_run_s, repeats=args.repeats, say=say)
    env = {"device": device, "host": platform.node(), "machine": platform.machine(),
           "python": platform.python_version(), "torch": torch.__version__,
           "threads": torch.get_num_threads()}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
    return {"environment": env, "workloads": workloads, "batches": list(batches),
            "repeats": args.repeats, "min_run_s": args.min_run_s, "rows": rows,
            "summary": summarize(rows),
            "produced_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def plot(reports: list[dict[str, Any]], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, workload in zip(axes, ("digits", "layer"), strict=True):
        for rep in reports:
            dev = rep["environment"].get("gpu") or f"CPU ({rep['environment']['threads']} threads)"
            for prec in ("fp32", "bf16"):
                for compiled in (False, True):
                    sel = sorted((r for r in rep["rows"] if r["workload"] == workload
                                  and r["precision"] == prec and r["compiled"] == compiled),
                                 key=lambda r: r["batch"])
                    if sel:
                        label = f"{dev} {prec}{' compiled' if compiled else ''}"
                        ax.plot([r["batch"] for r in sel], [r["samples_per_s"] for r in sel],
                                marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch")
        ax.set_ylabel("samples / s")
        ax.set_title(workload)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)
    return png


#: ``kind`` of the accelerator's reports (``lightformer bench model`` / ``bench layer``).
ACCEL_KINDS = ("bench.model", "bench.layer")


def accelerator_rows(report: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """A ``bench model`` (digits) or ``bench layer`` report as a summary row: its cycles per
    inference at the preset's clock. The accelerator runs one sample at a time, so batch 1 is
    also its saturated throughput."""
    if report.get("bench") == "model" and report.get("task") != "digits":
        return []  # only the digits model has GPU/CPU rows to stand beside
    if not report.get("bit_exact"):
        raise ValueError(f"{source}: the accelerator's run was not bit-exact; it is no baseline")
    us = float(report["projected_latency_us"])
    cycles = report["cycles_per_inference" if report["bench"] == "model" else "cycles"]
    return [{"workload": "digits" if report["bench"] == "model" else "layer",
             "device": (f"accelerator, preset `{report['preset']}` ({report['rows']}x"
                        f"{report['cols']} MACs)"),
             "precision": "int8", "batch1_latency_us": us, "batch1_compiled": False,
             "saturating_batch": 1, "saturated_compiled": False, "saturated_per_sample_us": us,
             "saturated_samples_per_s": 1e6 / us,
             "where": (f"projected: {cycles:,.0f} Verilated cycles at the preset's "
                       f"{report['clock_mhz']:g} MHz target clock (commit "
                       f"`{report['commit']}`, `{Path(source).name}`)")}]


def _where(env: dict[str, Any], source: str) -> str:
    return (f"measured: PyTorch {env['torch']} on host `{env['host']}` "
            f"(`{Path(source).name}`)")


def summary_rows(reports: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every report's summary rows, GPU/CPU and accelerator alike, each saying where it ran."""
    out = []
    for source, rep in reports:
        if rep.get("kind") in ACCEL_KINDS:
            out += accelerator_rows(rep, source)
            continue
        env = rep["environment"]
        dev = env.get("gpu") or f"CPU {env['machine']}, {env['threads']} threads"
        out += [dict(s, device=dev, where=_where(env, source)) for s in rep["summary"]]
    return sorted(out, key=lambda r: (r["workload"], r["precision"] != "int8"))


def markdown(reports: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [("| workload | device | precision | batch-1 latency (us) | saturating batch | "
              "per sample at saturation (us) | samples/s at saturation | where it ran |"),
             "|---|---|---|---|---|---|---|---|"]
    for s in summary_rows(reports):
        b1 = "n/a" if s["batch1_latency_us"] is None else \
            f"{s['batch1_latency_us']:.1f}{' (compiled)' if s['batch1_compiled'] else ''}"
        lines.append(
            f"| {s['workload']} | {s['device']} | {s['precision']} | {b1} | "
            f"{s['saturating_batch']}{' (compiled)' if s['saturated_compiled'] else ''} | "
            f"{s['saturated_per_sample_us']:.3f} | {s['saturated_samples_per_s']:,.0f} | "
            f"{s['where']} |")
    return "\n".join(lines) + "\n"


BASELINES_BEGIN, BASELINES_END = "<!-- baselines:begin -->", "<!-- baselines:end -->"


def results_section(reports: list[tuple[str, dict[str, Any]]], command: str) -> str:
    """The ``docs/results.md`` section: the table, what each kind of row means, and how to
    regenerate it."""
    accel = [r for _, r in reports if r.get("kind") in ACCEL_KINDS]
    lines = [BASELINES_BEGIN, "# GPU, CPU and the accelerator on the same models", "",
             ("The digits model (the shipped int8 model's architecture: d_model 32, 2 layers, "
              "T 8) and one encoder layer at the `bench layer` shape (d_model 64, T 64, d_ff "
              "256, window 32). GPU and CPU rows are PyTorch wall-clock times, the best of "
              "several runs after warm-up, at batch 1 and at the batch that gave the most "
              "samples per second. Accelerator rows are projections: cycles counted on the "
              "Verilated accelerator (bit-exact with the NumPy integer model on every sample) "
              "times the preset's target clock period. The accelerator runs one sample at a "
              "time, so its batch-1 row is also its throughput. Methods, machines and the raw "
              "sweeps: [baselines.md](baselines.md)."), "", markdown(reports).rstrip(), ""]
    if accel:
        lines += [("Read the accelerator rows with two caveats. The target clock is the "
                   "preset's, not a measured one: the whole `ulx3s_85f` top has not been "
                   "routed yet (see [boards.md](boards.md)), and `tiny` is a simulation "
                   "preset with no board. The layer differs slightly between the two sides: "
                   "`bench layer` runs 2 heads of 32 with a causal window, the PyTorch layer 4 "
                   "heads of 16 with a centred one (the same projection and FFN MACs; a dense "
                   "GPU kernel visits all 64 x 64 attention pairs either way)."), ""]
    lines += ["Regenerate this section (no GPU needed):", "", "```sh", command, "```", "",
              BASELINES_END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from sw.report import atomic_write_text, json_path_type, write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="where to time (default: cuda)")
    p.add_argument("--json", type=json_path_type, default=None, metavar="PATH",
                   help="write the measurements here (- for stdout)")
    p.add_argument("--artifact", default=None, help="int8 artifact (default: the shipped one)")
    p.add_argument("--batches", type=lambda s: tuple(int(b) for b in s.split(",")), default=None,
                   help="comma-separated batch sizes (default: 1..32768 on GPU, 1..512 on CPU)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per point (default: 5)")
    p.add_argument("--min-run-s", type=float, default=0.2,
                   help="length of one timed run in seconds (default: 0.2)")
    p.add_argument("--threads", type=int, default=2, help="CPU torch threads (default: 2)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--from-json", nargs="+", type=Path, default=None,
                   help="only render: read these JSON reports")
    p.add_argument("--markdown", type=Path, default=None, help="write the summary table here")
    p.add_argument("--plot", type=Path, default=None, help="write the throughput plot here")
    p.add_argument("--results", type=Path, default=None, metavar="PAGE",
                   help="replace (or append) the GPU/CPU/accelerator section of this Markdown "
                        "page, e.g. docs/results.md")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.min_run_s <= 0 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1 and --min-run-s > 0")
    if args.batches is not None and any(b < 1 for b in args.batches):
        p.error("--batches must be positive integers")
    if args.from_json:
        import json

        reports = [(str(f), json.loads(f.read_text())) for f in args.from_json]
    else:
        if args.json is None:
            p.error("--json PATH is required when measuring")
        report = run(args)
        where = write_json(args.json, report, kind="bench.baseline")
        print(f"wrote {where}", file=sys.stderr)
        reports = [(str(args.json), report)]
    if args.markdown:
        atomic_write_text(args.markdown, markdown(reports))
    if args.plot:
        plot([r for _, r in reports if r.get("kind") not in ACCEL_KINDS], args.plot)
    if args.results:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results_table import splice

        page = args.results.read_text() if args.results.exists() else ""
        command = ".venv/bin/python bench/gpu_baseline.py --from-json " + " ".join(
            f for f, _ in reports) + f" --results {args.results}"
        section = results_section(reports, command)
        atomic_write_text(args.results, splice(page, section.splitlines(), BASELINES_BEGIN,
                                               BASELINES_END) + "\n")
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
