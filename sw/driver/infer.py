# SPDX-License-Identifier: Apache-2.0
"""Inference runs over the link, reported as JSON-ready dicts, and the serial port list.

:func:`infer` runs samples through a loaded :class:`sw.driver.accelerator.Accelerator`,
compares every logit with the NumPy integer model's when given, and measures the device
cycles and link bytes per inference -- the report of ``lightformer infer`` and of the demo.
:func:`list_ports` is ``lightformer ports``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from sw.driver.accelerator import Accelerator

__all__ = ["infer", "list_ports", "transport_kind"]


def transport_kind(url: str) -> str:
    """``"socket"``, ``"loop"`` or ``"serial"`` (a device path such as ``/dev/ttyUSB0``)."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    return scheme or "serial"


def infer(acc: Accelerator, x_q: np.ndarray, *, labels: np.ndarray | None = None,
          want: np.ndarray | None = None,
          progress: Callable[[int], Any] | None = None) -> dict[str, Any]:
    """Run every sample of the batch ``x_q`` on ``acc`` (a program must be loaded).

    ``want``: the reference logits (``sw.ref.model_forward_int``) to compare bit for bit;
    ``labels``: class labels for the accuracy of a classifier. Returns ``samples``,
    ``bit_exact``, ``mismatches``, ``accuracy``, ``accuracy_ref``, ``cycles_per_inference``,
    ``projected_latency_us`` (at the program's ``target_mhz``), ``link_bytes_per_inference``,
    ``mode`` and ``transport`` (``None`` where it does not apply), and ``logits``.
    """
    program = acc.program
    if program is None:
        raise ValueError("infer needs a loaded program: call acc.load(program) first")
    x = np.asarray(x_q)
    if x.ndim != program.input_ndim + 1 or not len(x):
        raise ValueError(f"x_q must be a non-empty batch of {program.input_ndim}-d samples, "
                         f"not shape {x.shape}")
    before = acc.bytes_sent + acc.bytes_received
    logits, cycles = [], []
    for i, sample in enumerate(x):
        logits.append(acc.predict(sample))
        cycles.append(acc.run_cycles[0])
        if progress is not None:
            progress(i + 1)
    got = np.stack(logits)
    n = len(x)
    mismatches = None if want is None else int(sum(
        not np.array_equal(g, w) for g, w in zip(got, np.asarray(want))))
    classify = program.task == "classify"

    def accuracy(values: np.ndarray | None) -> float | None:
        if labels is None or values is None or not classify:
            return None
        return float(np.mean(np.argmax(values, axis=-1) == np.asarray(labels)))

    mean_cycles = float(np.mean(cycles))
    return {
        "samples": n,
        "bit_exact": None if want is None else mismatches == 0,
        "mismatches": mismatches,
        "accuracy": accuracy(got),
        "accuracy_ref": accuracy(None if want is None else np.asarray(want)),
        "cycles_per_inference": mean_cycles,
        "projected_latency_us": mean_cycles / program.params.target_mhz,
        "link_bytes_per_inference": (acc.bytes_sent + acc.bytes_received - before) / n,
        "mode": program.mode,
        "transport": transport_kind(acc.url),
        "logits": got,
    }


def list_ports() -> list[dict[str, str]]:
    """Serial ports pyserial sees: ``device``, ``description``, ``hwid`` each."""
    from serial.tools import list_ports as lp

    return [{"device": port.device, "description": port.description, "hwid": port.hwid}
            for port in sorted(lp.comports(), key=lambda port: port.device)]
