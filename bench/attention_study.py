# SPDX-License-Identifier: Apache-2.0
"""Attention / compression study for the LightTransformer -> JSON (render with results_table.py).

Sections (``--sections``, comma separated; default all):

``digits``   fp32 (and int8 integer-model, when ``sw.compile`` is available) accuracy of full vs
             windowed attention on scikit-learn digits, several seeds.
``mnist1d``  the same on MNIST-1D (generated locally).
``family``   every attention variant (plus Funnel pooling) side by side on ListOps (our generator,
             numpy + torch only): accuracy, params, MACs/sample; and the cost as T grows
             (analytic attention MACs, measured forward time per sample).
``family_seq`` the same variants on sequence MNIST-1D (one sample per token, T = 40).
``prune``    structured pruning on digits (heads, FFN neurons, both) + fine-tuning.
``kd``       knowledge distillation on digits: a small student with and without a teacher.
``seed``     the source's SeedLightTransformer (nn.Transformer) on digit copy/reverse/sort.

``--quick`` runs everything on 2 CPU cores in a few minutes (fewer samples, epochs, seeds);
without it the run is meant for a GPU (``--device cuda``). Sections needing scikit-learn or
mnist1d (digits, mnist1d, prune, kd) are skipped with a note when those are missing.

    python bench/attention_study.py --quick --json build/bench/attention_study.json
    python bench/results_table.py build/bench/attention_study.json --out docs/results.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sw.report import STDOUT, json_path_type, write_json  # noqa: E402

SECTIONS = ("digits", "mnist1d", "family", "family_seq", "prune", "kd", "seed")

# Hyper-parameters per mode: (quick on 2 CPU cores, full on a GPU).
PLAN = {
    "smoke": dict(seeds=1, digits_epochs=1, mnist1d_epochs=1, mnist1d_train=None,
                  listops_len=64, listops_train=64, listops_eval=32, listops_epochs=1,
                  scaling_T=(32, 64), scaling_batch=2, prune_epochs=1, finetune_epochs=1,
                  seed_train=128, seed_epochs=1, listops_batch=32,
                  seq_epochs=1, seed_scaling_L=(8, 16)),
    "quick": dict(seeds=3, digits_epochs=60, mnist1d_epochs=40, mnist1d_train=None,
               listops_len=128, listops_train=2000, listops_eval=500, listops_epochs=6,
               scaling_T=(64, 128, 256, 512), scaling_batch=4, prune_epochs=60,
               finetune_epochs=15, seed_train=4000, seed_epochs=8, listops_batch=32,
                  seq_epochs=30, seed_scaling_L=(8, 32, 128, 512)),
    "full": dict(seeds=3, digits_epochs=100, mnist1d_epochs=100, mnist1d_train=None,
                listops_len=512, listops_train=10000, listops_eval=2000, listops_epochs=15,
                scaling_T=(128, 256, 512, 1024, 2048), scaling_batch=16, prune_epochs=100,
                finetune_epochs=30, seed_train=8000, seed_epochs=30, listops_batch=64,
                 seq_epochs=60, seed_scaling_L=(8, 32, 128, 512, 2048)),
}


def _meta(args, section: str) -> dict:
    import torch

    from sw.report import source_commit

    commit = source_commit() or os.environ.get("LIGHTFORMER_COMMIT", "?")
    dev = args.device
    if dev.startswith("cuda") and torch.cuda.is_available():
        dev_name = torch.cuda.get_device_name(0)
    else:
        dev_name = platform.processor() or platform.machine()
    return dict(section=section, utc=datetime.datetime.now(datetime.timezone.utc)
                .isoformat(timespec="seconds"), host=platform.node(), device=dev,
                device_name=dev_name, torch_threads=torch.get_num_threads(),
                cpu_count=os.cpu_count(),
                torch=torch.__version__, python=platform.python_version(),
                mode="smoke" if args.smoke else "quick" if args.quick else "full",
                commit=commit, command=" ".join(
                    [Path(sys.argv[0]).name]
                    + [f"build/bench/{Path(a).name}" if a.startswith("/") else a
                       for a in sys.argv[1:]]))


def _have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


_DATA_CACHE: Path | None = None


def _cache_file(name: str, opts: dict) -> Path | None:
    if _DATA_CACHE is None:
        return None
    key = name + "".join(f"-{k}{v}" for k, v in sorted(opts.items()))
    return _DATA_CACHE / f"{key}.npz"


def load_task(name: str, **opts):
    """``sw.data.load_task`` through the optional ``--data-cache`` folder (seed 0 splits)."""
    from sw.data import Task
    from sw.data import load_task as _load

    f = _cache_file(name, opts)
    if f is not None and f.is_file():
        z = np.load(f, allow_pickle=False)
        meta = json.loads(str(z["meta"]))
        return Task(meta["name"], *(z[k] for k in ("x_train", "y_train", "x_val", "y_val",
                                                   "x_test", "y_test")),
                    meta["config_hints"], meta["info"])
    t = _load(name, **opts)
    if f is not None:
        f.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(dict(name=t.name, config_hints=t.config_hints, info=t.info))
        np.savez_compressed(f, x_train=t.x_train, y_train=t.y_train, x_val=t.x_val,
                            y_val=t.y_val, x_test=t.x_test, y_test=t.y_test, meta=meta)
    return t


def _int8_accuracy(model, task, calib_n: int = 512) -> dict:
    """Export with sw.compile (the quantization helper's PTQ) and run the integer NumPy model on
    the test split. Returns {} when sw.compile is not available, {"int8_error": ...} on failure."""
    try:
        from sw.artifact import load_artifact
        from sw.compile import export_artifact
        from sw.ref import model_forward_int, quantize_input
    except ImportError as exc:
        return dict(int8_error=f"unavailable: {exc}")
    try:
        with tempfile.TemporaryDirectory() as d:
            path = export_artifact(model.cpu(), model.cfg, task.x_train[:calib_n],
                                   Path(d) / "study.npz", task=task.name,
                                   accuracy_fp32=None, method="ptq", eval_data=False)
            art = load_artifact(path)
            correct = 0
            for i in range(0, len(task.x_test), 256):
                xq = quantize_input(art, task.x_test[i:i + 256])
                logits = model_forward_int(art, xq)
                correct += int((np.asarray(logits).argmax(-1) == task.y_test[i:i + 256]).sum())
        return dict(int8_acc=correct / len(task.y_test))
    except Exception as exc:  # noqa: BLE001 - record, do not abort the study
        return dict(int8_error=f"{type(exc).__name__}: {exc}")


def _row(cfg, hist, **extra) -> dict:
    from sw.model import count_macs

    r = dict(attention=cfg.attention, window=cfg.window if cfg.attention in (
        "window", "dynamic_window", "random_sparse") else None, causal=cfg.causal,
        d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=cfg.n_layers, d_ff=cfg.d_ff,
        seq_len=cfg.seq_len, funnel_stride=cfg.funnel_stride, params=hist["params"],
        macs=count_macs(cfg), attention_macs=count_macs(cfg, breakdown=True)["attention"],
        val_acc=hist["val_acc"], test_acc=hist["test_acc"], best_epoch=hist["best_epoch"],
        epochs=hist["epochs_requested"], train_s=hist["time_s"])
    r.update(extra)
    return r


def _mean_std(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def section_accuracy(args, plan, name: str) -> dict:
    """fp32 vs int8 on digits / mnist1d, full vs window, ``plan['seeds']`` seeds each."""
    from sw.train import config_from_task, train

    task = load_task(name)
    epochs = plan[f"{name}_epochs"]
    variants = [("full", None), ("window", 8), ("window", 4)]
    base = dict(d_model=32, n_heads=2, n_layers=2, d_ff=64)
    rows = []
    for attention, window in variants:
        per_seed = []
        for seed in range(plan["seeds"]):
            cfg = config_from_task(task, attention=attention, window=window or 8, **base)
            model, hist = train(cfg, task, epochs=epochs, lr=3e-3, batch_size=64, seed=seed,
                                device=args.device, progress=not args.no_progress,
                                desc=f"{name} {attention} w{window} s{seed}")
            r = _row(cfg, hist, seed=seed, **(_int8_accuracy(model, task) if args.int8 else {}))
            per_seed.append(r)
            print(f"  {name} {attention:7s} w={window} seed {seed}: fp32 {r['test_acc']:.4f} "
                  f"int8 {r.get('int8_acc')}", flush=True)
        m, s = _mean_std([r["test_acc"] for r in per_seed])
        mi, si = _mean_std([r.get("int8_acc") for r in per_seed])
        rows.append(dict(per_seed[0], seed=None, test_acc=m, test_acc_std=s, int8_acc=mi,
                         int8_acc_std=si, seeds=[r["seed"] for r in per_seed],
                         test_acc_per_seed=[r["test_acc"] for r in per_seed],
                         int8_acc_per_seed=[r.get("int8_acc") for r in per_seed],
                         int8_error=per_seed[0].get("int8_error"),
                         train_s=sum(r["train_s"] for r in per_seed)))
    return dict(task=name, n_train=len(task.y_train), n_test=len(task.y_test),
                seq_len=task.config_hints["seq_len"], epochs=epochs, rows=rows)


def _family(window: int, **lsh: int) -> list[dict]:
    """The attention variants compared, sized by ``window``: the dynamic window twice as wide,
    half as many random keys, a Linformer projection of ``2 * window``, ``window`` landmarks."""
    return [
        dict(attention="full"),
        dict(attention="window", window=window),
        dict(attention="dynamic_window", window=2 * window),
        dict(attention="random_sparse", window=window, n_random=window // 2),
        dict(attention="linformer", proj_len=2 * window),
        dict(attention="performer", n_features=32),
        dict(attention="nystrom", n_landmarks=window),
        dict(attention="conv", conv_kernel=7),
        dict(attention="lsh", **lsh),
        dict(attention="full", funnel_stride=2),
        dict(attention="window", window=window, funnel_stride=2),
    ]


FAMILY = _family(16, lsh_buckets=16, lsh_rounds=2, lsh_chunk=32)
FAMILY_SEQ = _family(8, lsh_buckets=4, lsh_rounds=2)


def _label(v: dict) -> str:
    extra = ", ".join(f"{k}={x}" for k, x in v.items() if k != "attention")
    return v["attention"] + (f" ({extra})" if extra else "")


def _forward_ms(cfg, T: int, batch: int, device: str, reps: int = 3) -> float:
    import torch

    from sw.model import LightTransformer

    torch.manual_seed(0)
    m = LightTransformer(cfg).to(device).eval()
    x = torch.randint(0, cfg.vocab_size, (batch, T), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        m(x)
        sync()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            m(x)
            sync()
            times.append(time.perf_counter() - t0)
    return 1000 * min(times) / batch


def section_family(args, plan) -> dict:
    """The family on ListOps (long sequences) with the cost-vs-T scaling table."""
    L = plan["listops_len"]
    task = load_task("listops", seq_len=L, n_train=plan["listops_train"],
                     n_eval=plan["listops_eval"])
    return _family(args, plan, task, _only(args, FAMILY), epochs=plan["listops_epochs"], lr=1e-3,
                   batch_size=plan["listops_batch"], scaling=True)


def section_family_seq(args, plan) -> dict:
    """The family on sequence MNIST-1D (one sample per token, T = 40)."""
    task = load_task("mnist1d", patch_dim=1)
    return _family(args, plan, task, _only(args, FAMILY_SEQ), epochs=plan["seq_epochs"], lr=3e-3,
                   batch_size=64, scaling=False)


def _only(args, variants: list[dict]) -> list[dict]:
    if not args.variants:
        return variants
    keep = [v for v in variants if v["attention"] in args.variants]
    if not keep:
        raise SystemExit(f"--variants must name attentions of the family, not {args.variants!r}")
    return keep


def _family(args, plan, task, variants, *, epochs, lr, batch_size, scaling) -> dict:
    import dataclasses

    from sw.model import count_macs
    from sw.train import config_from_task, train

    base = dict(d_model=32, n_heads=2, n_layers=2, d_ff=64)
    rows, scal = [], []
    majority = float(np.bincount(task.y_test, minlength=10).max() / len(task.y_test))
    for v in variants:
        cfg = config_from_task(task, **base, **v)
        model, hist = train(cfg, task, epochs=epochs, lr=lr, batch_size=batch_size,
                            seed=0, device=args.device, progress=not args.no_progress,
                            desc=f"{task.name} {_label(v)}")
        r = _row(cfg, hist, label=_label(v))
        rows.append(r)
        print(f"  {task.name} {_label(v):45s} test {r['test_acc']:.4f} params {r['params']} "
              f"MACs {r['macs']} ({r['train_s']:.0f} s)", flush=True)
        if not scaling:
            continue
        big = dataclasses.replace(cfg, seq_len=max(plan["scaling_T"]))
        for T in plan["scaling_T"]:
            br = count_macs(big, seq_len=T, breakdown=True)
            ms = _forward_ms(big, T, plan["scaling_batch"], args.device)
            scal.append(dict(label=_label(v), T=T, attention_macs=br["attention"],
                             macs=br["total"], ms_per_sample=ms))
    out = dict(task=task.name, seq_len=task.config_hints["seq_len"], n_train=len(task.y_train),
               n_test=len(task.y_test), epochs=epochs, lr=lr, batch_size=batch_size,
               majority_acc=majority, rows=rows)
    if scaling:
        out.update(scaling=scal, scaling_batch=plan["scaling_batch"])
    return out


def section_prune(args, plan) -> dict:
    from sw.model import count_macs
    from sw.train import config_from_task, prune_and_finetune, train

    task = load_task("digits")
    cfg = config_from_task(task, attention="window", window=8, d_model=32, n_heads=4,
                           n_layers=2, d_ff=128)
    base, hist = train(cfg, task, epochs=plan["prune_epochs"], seed=0, device=args.device,
                       progress=not args.no_progress, desc="prune base")
    rows = [dict(_row(cfg, hist, label="base (4 heads, d_ff 128)"), acc_after_prune=None)]
    import copy

    for label, kh, fr, imp in (("heads 4->2 (weight norm)", 2, None, "weight"),
                               ("heads 4->2 (Taylor)", 2, None, "taylor"),
                               ("heads 4->1 (Taylor)", 1, None, "taylor"),
                               ("FFN 128->64", None, 0.5, "weight"),
                               ("FFN 128->32", None, 0.25, "weight"),
                               ("heads 4->2 + FFN 128->32", 2, 0.25, "taylor")):
        m, h = prune_and_finetune(copy.deepcopy(base), task, keep_heads=kh, ffn_keep_ratio=fr,
                                  importance=imp, epochs=plan["finetune_epochs"], lr=1e-3,
                                  seed=0, device=args.device, progress=not args.no_progress)
        r = _row(m.cfg, h, label=label, acc_after_prune=h["acc_after_prune"],
                 test_acc_after_prune=h["test_acc_after_prune"],
                 layer_heads=list(m.cfg.layer_heads or []),
                 layer_d_ff=list(m.cfg.layer_d_ff or []))
        r["macs"] = count_macs(m.cfg)
        rows.append(r)
        print(f"  prune {label:28s} after prune {h['test_acc_after_prune']:.4f} fine-tuned "
              f"{h['test_acc']:.4f} params {h['params']}", flush=True)
    return dict(task="digits", rows=rows, finetune_epochs=plan["finetune_epochs"])


def section_kd(args, plan) -> dict:
    from sw.train import config_from_task, train

    task = load_task("digits")
    ep = plan["digits_epochs"]
    tcfg = config_from_task(task, attention="window", window=8, d_model=64, n_heads=4,
                            n_layers=2, d_ff=128)
    teacher, th = train(tcfg, task, epochs=ep, seed=0, device=args.device,
                        progress=not args.no_progress, desc="kd teacher")
    rows = [_row(tcfg, th, label="teacher")]
    scfg = config_from_task(task, attention="window", window=8, d_model=16, n_heads=2,
                            n_layers=1, d_ff=32)
    for label, t, T, a in (("student, labels only", None, 1.0, 0.0),
                           ("student + KD (T=2, alpha=0.5)", teacher, 2.0, 0.5),
                           ("student + KD (T=4, alpha=0.9)", teacher, 4.0, 0.9)):
        accs = []
        for seed in range(plan["seeds"]):
            _, h = train(scfg, task, epochs=ep, seed=seed, device=args.device, teacher=t,
                         kd_temperature=T, kd_alpha=a, progress=not args.no_progress,
                         desc=f"kd {label} s{seed}")
            accs.append(h["test_acc"])
        m, s = _mean_std(accs)
        rows.append(dict(_row(scfg, h, label=label), test_acc=m, test_acc_std=s,
                         test_acc_per_seed=accs))
        print(f"  kd {label:32s} test {m:.4f} +- {s:.4f}", flush=True)
    return dict(task="digits", rows=rows, seeds=plan["seeds"])


def section_seed(args, plan) -> dict:
    from sw.train import train_seq2seq

    rows = []
    for name in ("digit_copy", "digit_reverse", "digit_sort"):
        task = load_task(name, n_train=plan["seed_train"], n_eval=500)
        m, h = train_seq2seq(task, epochs=plan["seed_epochs"], lr=2e-3, batch_size=64, seed=0,
                             device=args.device, progress=not args.no_progress,
                             d_model=32, nhead=2, num_encoder_layers=2, num_decoder_layers=2,
                             dim_feedforward=64)
        L = task.y_train.shape[1]
        rows.append(dict(task=name, label="SeedLightTransformer (nn.Transformer 2+2)",
                         params=h["params"], macs=m.count_macs(L, L),
                         token_acc=h["test"]["token_acc"], seq_acc=h["test"]["seq_acc"],
                         epochs=plan["seed_epochs"], n_train=len(task.y_train),
                         train_s=h["time_s"], length=L))
        print(f"  seed {name}: token {h['test']['token_acc']:.4f} seq {h['test']['seq_acc']:.4f}",
              flush=True)
    # cost as the sequence grows (teacher-forced pass, source length = target length = L)
    import torch

    from sw.model import SeedLightTransformer

    Ls = plan["seed_scaling_L"]
    torch.manual_seed(0)
    big = SeedLightTransformer(11, d_model=32, nhead=2, num_encoder_layers=2,
                               num_decoder_layers=2, dim_feedforward=64,
                               max_len=max(Ls)).to(args.device).eval()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    scaling = []
    for L in Ls:
        src = torch.randint(0, 10, (plan["scaling_batch"], L), device=args.device)
        with torch.no_grad():
            big(src, src)
            sync()
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                big(src, src)
                sync()
                best = min(best, time.perf_counter() - t0)
        scaling.append(dict(T=L, macs=big.count_macs(L, L),
                            ms_per_sample=1000 * best / plan["scaling_batch"]))
    return dict(rows=rows, scaling=scaling, scaling_batch=plan["scaling_batch"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--quick", action="store_true", help="CPU-sized run (a few minutes)")
    p.add_argument("--smoke", action="store_true", help="tiny run that only checks the script")
    p.add_argument("--data-cache", type=Path, default=None,
                   help="folder of .npz task caches: loaded when present, written otherwise "
                        "(lets a machine without scikit-learn/mnist1d run every section)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--json", "--out", dest="out", type=json_path_type,
                   default=ROOT / "build" / "bench" / "attention_study.json",
                   help="the JSON report; sections of an earlier run there are kept")
    p.add_argument("--no-int8", dest="int8", action="store_false",
                   help="skip the int8 integer-model column")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--variants", type=lambda v: v.split(","), default=None,
                   help="family sections: only these attention names (re-run a few rows; merge "
                        "with results_table.py --patch)")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        p.error(f"sections must be among {SECTIONS}, not {bad!r}")

    from sw.train import set_threads

    set_threads()
    plan = PLAN["smoke" if args.smoke else "quick" if args.quick else "full"]
    global _DATA_CACHE
    _DATA_CACHE = args.data_cache
    out: dict = {}
    if args.out != STDOUT and args.out.is_file():  # keep other sections of an earlier run
        out = json.loads(args.out.read_text())
    needs = dict(digits=("sklearn",), mnist1d=("mnist1d",), family_seq=("mnist1d",),
                 prune=("sklearn",), kd=("sklearn",))
    for s in sections:
        cached = dict(mnist1d=_cache_file("mnist1d", {}),
                      family_seq=_cache_file("mnist1d", dict(patch_dim=1))).get(
            s, _cache_file("digits", {}))
        missing = [m for m in needs.get(s, ()) if not _have(m) and not
                   (cached is not None and cached.is_file())]
        if missing:
            print(f"skipping section {s}: needs {missing}", flush=True)
            continue
        print(f"== {s}", flush=True)
        t0 = time.time()
        if s in ("digits", "mnist1d"):
            res = section_accuracy(args, plan, s)
        else:
            res = dict(family=section_family, family_seq=section_family_seq,
                       prune=section_prune, kd=section_kd, seed=section_seed)[s](args, plan)
        res["meta"] = _meta(args, s)
        res["meta"]["wall_s"] = round(time.time() - t0, 1)
        out[s] = res
        write_json(args.out, out, kind="bench.attention_study")   # after every section
    if args.out != STDOUT:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
