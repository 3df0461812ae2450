# SPDX-License-Identifier: Apache-2.0
"""Quantized test inputs shipped beside an artifact, so the demo needs no data-set package.

``NAME.test.safetensors`` next to ``NAME.safetensors`` holds the task's test split as the integer
model takes it: ``x_q`` (``sw.ref.quantize_input`` of the test inputs) and ``y`` (the labels),
with what the quantization read in its metadata (task, split seed, input kind and input scale) --
a test set quantized for another input scale or split is refused, never silently used.
:func:`task_inputs` prefers that file and falls back to :func:`sw.data.load_task` (which needs
scikit-learn for digits).

Regenerate the shipped digits test set after a new digits artifact is shipped::

    python -m sw.testset                      # writes sw/artifacts/digits_int8.test.safetensors
    python -m sw.testset --artifact PATH      # PATH's test set, beside it
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TESTSET_FORMAT", "load_testset", "save_testset", "task_inputs", "inputs_path"]

TESTSET_FORMAT = "lightformer-testset"


def inputs_path(artifact_path: str | os.PathLike[str]) -> Path:
    """``NAME.test.safetensors`` beside the artifact ``NAME.safetensors``."""
    p = Path(artifact_path)
    stem = p.name[:-len(".safetensors")] if p.name.endswith(".safetensors") else p.stem
    return p.with_name(stem + ".test.safetensors")


def save_testset(artifact: Any, path: str | os.PathLike[str] | None = None) -> Path:
    """Quantize ``artifact``'s task test split (:func:`sw.data.load_task` with the artifact's
    ``task_seed``) and write it atomically to ``path`` (default: :func:`inputs_path`)."""
    import safetensors.numpy

    from sw.data import load_task, task_options
    from sw.ref import quantize_input
    from sw.report import atomic_write_bytes

    m = artifact.manifest
    seed = int(m.get("task_seed", 0))
    task = load_task(artifact.task, seed=seed, **task_options(artifact.task, artifact.config))
    x_q = np.ascontiguousarray(quantize_input(artifact, task.x_test))
    meta = dict(_inputs_key(artifact), split="test", model_id=artifact.model_id,
                source=f"sw.data.load_task({artifact.task!r}, seed={seed})")
    data = safetensors.numpy.save({"x_q": x_q, "y": np.ascontiguousarray(task.y_test)},
                                  metadata={TESTSET_FORMAT: json.dumps(meta)})
    return atomic_write_bytes(inputs_path(artifact.path) if path is None else path, data)


def _inputs_key(artifact: Any) -> dict[str, Any]:
    """What the quantized test inputs depend on (``sw.ref.quantize_input``, ``sw.data``)."""
    return {"task": artifact.task, "task_seed": int(artifact.manifest.get("task_seed", 0)),
            "input_kind": artifact.config["input_kind"],
            "input_scale": artifact.scales.get("input")}


def load_testset(artifact: Any,
                 path: str | os.PathLike[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(x_q, y)`` of ``artifact``'s test set file; ``FileNotFoundError`` when there is none,
    ``ValueError`` when it belongs to another model or is not a test set."""
    import safetensors
    import safetensors.numpy

    path = inputs_path(artifact.path) if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no test set file")
    try:
        with safetensors.safe_open(str(path), "np") as f:
            meta = json.loads((f.metadata() or {})[TESTSET_FORMAT])
        tensors = safetensors.numpy.load(path.read_bytes())
        x_q, y = tensors["x_q"], tensors["y"]
    except (KeyError, ValueError, OSError, safetensors.SafetensorError) as exc:
        raise ValueError(f"{path}: not a {TESTSET_FORMAT} file ({exc}); regenerate it with "
                         f"`python -m sw.testset --artifact {artifact.path}`") from None
    want = _inputs_key(artifact)
    got = {k: meta.get(k) for k in want}
    if got != want:
        raise ValueError(f"{path}: quantized for {got}, not for {artifact.path.name}'s {want}; "
                         f"regenerate it with `python -m sw.testset --artifact {artifact.path}`")
    if len(x_q) != len(y):
        raise ValueError(f"{path}: {len(x_q)} inputs but {len(y)} labels")
    return x_q, y


def task_inputs(artifact: Any, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x_q, y, source)``: the first ``limit`` (default all) quantized test inputs of
    ``artifact``'s task and their labels, from the shipped test set file when there is one,
    else from :func:`sw.data.load_task`; ``source`` says which."""
    try:
        x_q, y = load_testset(artifact)
        source = str(inputs_path(artifact.path))
    except FileNotFoundError:
        from sw.data import load_task, task_options
        from sw.ref import quantize_input

        seed = int(artifact.manifest.get("task_seed", 0))
        task = load_task(artifact.task, seed=seed,
                         **task_options(artifact.task, artifact.config))
        x_q, y = quantize_input(artifact, task.x_test), task.y_test
        source = f"sw.data.load_task({artifact.task!r}, seed={seed})"
    return x_q[:limit], y[:limit], source


def main(argv: Sequence[str] | None = None) -> int:
    from sw.artifact import ArtifactError, default_artifact_path, load_artifact

    parser = argparse.ArgumentParser(prog="python -m sw.testset",
                                     description="write an artifact's quantized test set")
    parser.add_argument("--artifact", default=None,
                        help="artifact path (default: the shipped digits model)")
    args = parser.parse_args(argv)
    try:
        art = load_artifact(args.artifact or default_artifact_path())
    except ArtifactError as exc:
        print(f"sw.testset: {exc}", file=sys.stderr)
        return 2
    path = save_testset(art)
    x_q, y = load_testset(art)
    print(f"wrote {path}: {len(y)} {art.task} test inputs {x_q.dtype} {x_q.shape[1:]}, "
          f"{path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
