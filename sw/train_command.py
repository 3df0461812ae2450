# SPDX-License-Identifier: Apache-2.0
"""``lightformer train``: train a LightTransformer on offline data, optionally prune it and export
its int8 artifact.

This command sits above both the training loop (``sw.train``) and the exporter (``sw.compile``,
whose own command fine-tunes through ``sw.train``), which is why it is a module of its own.
Arguments and output paths are checked before training starts; the model is written before its
log, both atomically.

A digits run with the hardware's windowed attention (seconds on 2 CPU cores)::

    lightformer train --task digits --attention window --window 8 --out build/train/digits
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from sw.report import UsageError

__all__ = ["add_arguments", "run"]

#: (option, attribute, smallest legal value) of the numeric options checked before training.
_LIMITS = (("--window", "window", 1), ("--d-model", "d_model", 1), ("--n-heads", "n_heads", 1),
           ("--n-layers", "n_layers", 1), ("--d-ff", "d_ff", 1), ("--epochs", "epochs", 1),
           ("--batch-size", "batch_size", 1), ("--seed", "seed", 0),
           ("--finetune-epochs", "finetune_epochs", 1))


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sw.artifact import artifact_path_type
    from sw.data import TASKS
    from sw.model import ATTENTIONS
    from sw.report import add_json_argument, path_type

    d = " (default: %(default)s)"
    p.add_argument("--task", default="digits", choices=[t for t in TASKS if "digit_" not in t],
                   help="offline data set" + d)
    p.add_argument("--attention", default="window", choices=ATTENTIONS,
                   help="attention kind; the int8 artifact and the accelerator run window and "
                        "full" + d)
    p.add_argument("--window", type=int, default=8, help="keys per query row" + d)
    p.add_argument("--causal", action="store_true",
                   help="causal attention (implied by pydoc_lm; default: centred)")
    p.add_argument("--d-model", type=int, default=32, help="embedding width" + d)
    p.add_argument("--n-heads", type=int, default=2, help="attention heads per layer" + d)
    p.add_argument("--n-layers", type=int, default=2, help="encoder layers" + d)
    p.add_argument("--d-ff", type=int, default=64, help="feed-forward hidden width" + d)
    p.add_argument("--dropout", type=float, default=0.0, help="dropout probability" + d)
    p.add_argument("--seq-len", type=int, default=None,
                   help="listops / pydoc_lm sequence length (default: the task's)")
    p.add_argument("--patch-dim", type=int, default=None,
                   help="mnist1d samples per token (default: the task's, 4)")
    p.add_argument("--epochs", type=int, default=40, help="training epochs" + d)
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate" + d)
    p.add_argument("--batch-size", type=int, default=64, help="samples per step" + d)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data split, the initialisation and the batch order" + d)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N" + d)
    p.add_argument("--teacher", type=path_type, default=None, metavar="MODEL_PT",
                   help="checkpoint of a teacher for knowledge distillation (default: none)")
    p.add_argument("--kd-temperature", type=float, default=2.0,
                   help="distillation temperature" + d)
    p.add_argument("--kd-alpha", type=float, default=0.5,
                   help="weight of the distillation term, 0..1" + d)
    p.add_argument("--prune-heads", type=int, default=None, metavar="K",
                   help="after training keep the K most important heads per layer and "
                        "fine-tune (default: no head pruning)")
    p.add_argument("--prune-ffn", type=float, default=None, metavar="RATIO",
                   help="after training keep this fraction of FFN neurons and fine-tune "
                        "(default: no FFN pruning)")
    p.add_argument("--finetune-epochs", type=int, default=10,
                   help="fine-tuning epochs after pruning" + d)
    p.add_argument("--qat", action="store_true",
                   help="quantization-aware training (fake quantization, sw.qat; default: off)")
    p.add_argument("--out", type=path_type, default=Path("build/train"), metavar="DIR",
                   help="output folder for model.pt, train_log.json (and prune_log.json)" + d)
    p.add_argument("--artifact", type=artifact_path_type, default=None, metavar="NAME",
                   help="also export the int8 artifact NAME.safetensors (default: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_argument(p, what="a summary (accuracy, epochs, paths)")


def _check_args(args: argparse.Namespace) -> None:
    """Every argument and output path, before any data is loaded or any epoch runs."""
    from sw.report import check_output_path

    for option, attr, lo in _LIMITS:
        if getattr(args, attr) < lo:
            raise UsageError(f"lightformer train: {option} must be >= {lo}, not "
                             f"{getattr(args, attr)!r}")
    # inf passes "> 0" and trains every epoch to a NaN loss, so finiteness is checked too.
    if not 0 < args.lr < math.inf or not 0 <= args.dropout < 1 \
            or not 0 < args.kd_temperature < math.inf or not 0 <= args.kd_alpha <= 1:
        raise UsageError("lightformer train: --lr and --kd-temperature must be > 0 and finite, "
                         "--dropout in [0, 1) and --kd-alpha in [0, 1]")
    if args.prune_heads is not None and args.prune_heads < 1:
        raise UsageError(f"lightformer train: --prune-heads must be >= 1, not "
                         f"{args.prune_heads!r}")
    if args.prune_ffn is not None and not 0 < args.prune_ffn <= 1:
        raise UsageError(f"lightformer train: --prune-ffn must be in (0, 1], not "
                         f"{args.prune_ffn!r}")
    try:
        from sw.train import train_threads

        train_threads()
    except ValueError as exc:
        raise UsageError(f"lightformer train: {exc}") from None
    if args.teacher is not None and not args.teacher.is_file():
        raise UsageError(f"lightformer train: --teacher {str(args.teacher)!r} is not a file")
    try:
        check_output_path(Path(args.out) / "model.pt", option="--out")
    except ValueError as exc:
        raise UsageError(f"lightformer train: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from sw.checkpoint import load_model, save_model
    from sw.data import load_task
    from sw.report import info_stream, write_json
    from sw.train import config_from_task, prune_and_finetune, train, write_log

    _check_args(args)
    out_stream = info_stream(args.json)
    opts = {}
    if args.seq_len is not None:
        opts["seq_len"] = args.seq_len
    if args.patch_dim is not None:
        opts["patch_dim"] = args.patch_dim
    try:
        task = load_task(args.task, seed=args.seed, **opts)
    except ValueError as exc:
        raise UsageError(f"lightformer train: {exc}") from None
    over = dict(attention=args.attention, window=args.window, d_model=args.d_model,
                n_heads=args.n_heads, n_layers=args.n_layers, d_ff=args.d_ff,
                dropout=args.dropout)
    if args.causal:
        over["causal"] = True
    try:
        cfg = config_from_task(task, **over)
    except ValueError as exc:
        raise UsageError(f"lightformer train: {exc}") from None
    try:
        teacher = load_model(args.teacher) if args.teacher else None
    except ValueError as exc:
        raise UsageError(f"lightformer train: --teacher: {exc}") from None
    out = Path(args.out)
    try:
        model, hist = train(cfg, task, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, seed=args.seed, device=args.device,
                            teacher=teacher, kd_temperature=args.kd_temperature,
                            kd_alpha=args.kd_alpha, qat=args.qat, progress=not args.no_progress)
    except ValueError as exc:
        raise UsageError(f"lightformer train: {exc}") from None
    print(f"{task.name} {cfg.attention}: val {hist['val_acc']:.4f} test {hist['test_acc']:.4f} "
          f"params {hist['params']} MACs/sample {hist['macs']} ({hist['time_s']:.1f} s)",
          file=out_stream)
    prune_hist = None
    if args.prune_heads is not None or args.prune_ffn is not None:
        model, prune_hist = prune_and_finetune(
            model, task, keep_heads=args.prune_heads, ffn_keep_ratio=args.prune_ffn,
            epochs=args.finetune_epochs, lr=args.lr / 3, batch_size=args.batch_size,
            seed=args.seed, device=args.device, progress=not args.no_progress)
        print(f"pruned: after prune {prune_hist['acc_after_prune']:.4f}, fine-tuned val "
              f"{prune_hist['val_acc']:.4f} test {prune_hist['test_acc']:.4f} params "
              f"{prune_hist['params']} MACs/sample {prune_hist['macs']}", file=out_stream)
    # The model first, then the logs that name its SHA-256: a crash in between leaves a model
    # whose log is missing or stale-by-checksum, never a log that vouches for another model.
    model_path = save_model(model, out / "model.pt")
    written = [model_path]
    write_log(hist, out / "train_log.json", model_path)
    written.append(out / "train_log.json")
    if prune_hist is not None:
        write_log(prune_hist, out / "prune_log.json", model_path)
        written.append(out / "prune_log.json")
    print(f"wrote {', '.join(str(p) for p in written)}", file=out_stream)
    summary: dict[str, Any] = {
        "task": task.name, "attention": cfg.attention, "epochs": args.epochs,
        "best_epoch": hist["best_epoch"], "val_acc": hist["val_acc"],
        "test_acc": hist["test_acc"], "params": hist["params"], "macs": hist["macs"],
        "seconds": hist["time_s"], "model": str(model_path), "log": str(out / "train_log.json"),
        "pruned": None if prune_hist is None else {
            "keep_heads": args.prune_heads, "ffn_keep_ratio": args.prune_ffn,
            "acc_after_prune": prune_hist["acc_after_prune"],
            "val_acc": prune_hist["val_acc"], "test_acc": prune_hist["test_acc"],
            "params": prune_hist["params"], "macs": prune_hist["macs"],
            "log": str(out / "prune_log.json")},
        "artifact": None, "accuracy_int8": None,
    }
    if args.artifact is not None:
        from sw.compile import export_artifact

        final = hist if prune_hist is None else prune_hist
        path = export_artifact(model.cpu(), model.cfg, task.x_train[:512], args.artifact,
                               task=task.name, accuracy_fp32=final["test_acc"],
                               method="qat" if args.qat else "ptq",
                               task_seed=args.seed)   # evaluated on the task's test split
        from sw.artifact import load_artifact

        summary["artifact"] = str(path)
        summary["accuracy_int8"] = load_artifact(path).manifest["accuracy_int8"]
        print(f"wrote artifact {path} (int8 test accuracy {summary['accuracy_int8']:.4f})",
              file=out_stream)
    if args.json is not None:
        write_json(args.json, summary, kind="train")
    return 0
