# SPDX-License-Identifier: Apache-2.0
"""PyTorch checkpoints of a :class:`sw.model.LightTransformer`: one file that carries its config.

``save_model`` writes ``{"format": "lightformer-torch-1", "config": ..., "state_dict": ...}``
atomically (pruned shapes included); ``load_model`` rebuilds the model from it. torch is imported
inside the functions only.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from sw.report import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "load_model", "save_model"]

CHECKPOINT_FORMAT = "lightformer-torch-1"


def save_model(model, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` (its config and state dict) to ``path`` atomically; returns the path."""
    import torch

    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "config": model.cfg.to_dict(),
                "state_dict": model.state_dict()}, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_model(path: str | os.PathLike[str]):
    """Load a :func:`save_model` checkpoint -> LightTransformer (eval mode, CPU).

    ``ValueError`` names the file when it is not such a checkpoint (another format, a damaged
    file, a state dict that does not fit its config).
    """
    import torch

    from sw.model import LightTransformer, ModelConfig

    bad = (f"checkpoint must be a {CHECKPOINT_FORMAT} file from save_model "
           f"(`lightformer train --out DIR` writes DIR/model.pt), not {str(path)!r}")
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as exc:  # torch raises a different type per kind of damage (struct.error,
        # UnpicklingError, RuntimeError, EOFError, ...); each one means "not a checkpoint"
        raise ValueError(f"{bad}: it cannot be read ({exc.__class__.__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(bad)
    try:
        model = LightTransformer(ModelConfig.from_dict(blob["config"]))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{bad}: {exc}") from None
    return model.eval()
