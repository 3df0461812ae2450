# SPDX-License-Identifier: Apache-2.0
"""``lightformer eval``: run an int8 artifact with the integer NumPy model on a task's test split.

NumPy only (plus scikit-learn / mnist1d for the data): never imports torch, so the shipped model
can be checked on a machine without it. ``--json PATH`` (``-``: stdout) writes the report whose
keys ``docs/cli.md`` lists: the task, the samples, the integer model's accuracy beside the one
recorded at export, and the artifact's digest.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sw.report import UsageError

__all__ = ["add_arguments", "evaluate_artifact", "run"]


def evaluate_artifact(artifact, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256,
                      progress: bool = False, quantized: bool = False) -> float:
    """Accuracy of the integer model (``sw.ref.model_forward_int``) on ``(x, y)``.

    Classifiers: argmax of the int32 logits per sample; language models: per token.
    ``quantized``: ``x`` is already ``sw.ref.quantize_input``'s output (a shipped test set).
    """
    from sw.ref import model_forward_int, quantize_input

    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x and y must have one length, not {len(x)} and {len(y)}")
    starts = range(0, len(x), batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="eval int8", unit="batch", leave=False)
    correct = 0
    for i in starts:
        xb = x[i:i + batch_size]
        logits = model_forward_int(artifact, xb if quantized else quantize_input(artifact, xb))
        correct += int((logits.argmax(axis=-1) == y[i:i + batch_size]).sum())
    return correct / max(1, y.size)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sw.data import TASKS
    from sw.report import add_json_argument, path_type

    p.add_argument("--artifact", type=path_type, default=None,
                   metavar="NAME",
                   help="artifact NAME or NAME.safetensors (default: the shipped digits model)")
    p.add_argument("--task", default=None, choices=TASKS,
                   help="data set (default: the task recorded in the artifact)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N test samples (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_argument(p)


def run(args: argparse.Namespace) -> int:
    from sw.artifact import ArtifactError, default_artifact_path, load_artifact
    from sw.data import load_task, task_options
    from sw.report import info_stream, write_json

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"lightformer eval: --limit must be >= 1, not {args.limit!r}")
    path = args.artifact if args.artifact is not None else default_artifact_path()
    try:
        art = load_artifact(path)
    except ArtifactError as exc:
        raise UsageError(f"lightformer eval: {exc}") from None
    m = art.manifest
    task_name = args.task or m.get("task")
    if not task_name:
        raise UsageError("lightformer eval: the artifact records no task; pass --task")
    seed = int(m.get("task_seed", 0))
    quantized = False
    try:
        task = load_task(task_name, seed=seed, **task_options(task_name, art.config))
        x, y = task.x_test[:args.limit], task.y_test[:args.limit]
    except ValueError as exc:
        raise UsageError(f"lightformer eval: {exc}") from None
    except ModuleNotFoundError as exc:
        # Without the data set's package (after `make demo`), the test set shipped beside the
        # artifact (sw.testset) is the same split, already quantized.
        from sw.testset import load_testset
        try:
            if task_name != art.task:
                raise FileNotFoundError(task_name)
            x, y = load_testset(art)
        except (FileNotFoundError, ValueError):
            raise SystemExit(f"lightformer eval: the {task_name!r} data needs the Python "
                             f"package {exc.name!r}; `pip install -e .[ml]` installs it") from None
        x, y, quantized = x[:args.limit], y[:args.limit], True
    t0 = time.perf_counter()
    try:
        acc = evaluate_artifact(art, x, y, progress=not args.no_progress, quantized=quantized)
    except ValueError as exc:
        raise UsageError(f"lightformer eval: the artifact does not fit task {task_name!r}: "
                         f"{exc}") from None
    seconds = time.perf_counter() - t0
    result = {
        "task": task_name, "split": "test", "samples": int(y.size), "accuracy": acc,
        "accuracy_fp32": m.get("accuracy_fp32"),
        "accuracy_int8_recorded": m.get("accuracy_int8"),
        "reproduces_recorded": (m.get("accuracy_int8") == acc
                                and m.get("eval_samples") == int(y.size)),
        "method": m.get("method"), "artifact": str(art.path), "digest": art.digest,
        "model_id": art.model_id,
        "format_version": m.get("format_version"), "model": "sw.ref.model_forward_int",
        "seconds": round(seconds, 3),
    }
    fp32 = "n/a" if result["accuracy_fp32"] is None else f"{result['accuracy_fp32']:.4f}"
    out = info_stream(args.json)
    print(f"{task_name} test: int8 accuracy {acc:.4f} on {y.size} samples (fp32 at export "
          f"{fp32}; {art.path.name} {art.digest[:12]})", file=out)
    if args.json is not None and write_json(args.json, result, kind="eval") != "stdout":
        print(f"wrote {args.json}", file=out)
    return 0
