# SPDX-License-Identifier: Apache-2.0
"""``lightformer demo``: the shipped digits model through the driver, on the Python virtual board
(fast) and on the Verilated one (``sim``): bit-exact, the NumPy model's accuracy, every report
key, and the board stopped afterwards."""

from __future__ import annotations

import json

import pytest
from conftest import requires_verilator

from sw import cli

KEYS = {"samples", "bit_exact", "mismatches", "accuracy", "accuracy_ref", "cycles_per_inference",
        "projected_latency_us", "link_bytes_per_inference", "mode", "transport"}


def _demo(tmp_path, *argv: str) -> dict:
    out = tmp_path / "demo.json"
    assert cli.main(["demo", "--no-progress", "--json", str(out), *argv]) == 0
    report = json.loads(out.read_text())
    assert KEYS <= set(report) and report["kind"] == "demo"
    assert report["bit_exact"] is True and report["mismatches"] == 0
    assert report["accuracy"] == report["accuracy_ref"]
    assert report["mode"] == "resident" and report["transport"] == "socket"
    assert report["inputs"].endswith("digits_int8.test.safetensors")
    return report


def test_demo_python_board(tmp_path, capsys):
    report = _demo(tmp_path, "--backend", "python", "--samples", "30")
    assert report["samples"] == 30 and report["backend"] == "python"
    assert report["projected_latency_us"] == report["cycles_per_inference"] / 25.0
    # Per inference: WRITE of the 64 input bytes (74 out, 7 back), RUN (10, 7), one WAIT
    # (10, 19), a strided READ of the 10 logits (18, 47); the bound is 2 * (64 + 40) + 64.
    assert report["link_bytes_per_inference"] == 81 + 17 + 29 + 65 == 192 <= 272
    assert "bit-exact vs sw.ref.model_forward_int: yes" in capsys.readouterr().out


@pytest.mark.sim
@requires_verilator
def test_demo_verilated_board(tmp_path):
    report = _demo(tmp_path, "--samples", "8")
    assert report["samples"] == 8 and report["backend"] == "vboard"
    stats = report["vboard"]
    assert stats["exit_status"] == 0                       # stopped cleanly by SIGTERM
    # The board was busy for the runs the driver measured, less at most two cycles a run: the
    # measured cycles count ones that busy does not (the start; since the CONTROL write is
    # registered, one more: 140,984 busy cycles against 8 x 17,625 measured at 870caec).
    runs = 8 * report["cycles_per_inference"]
    assert runs > 0 and runs - 2 * 8 <= stats["busy_cycles"] <= runs
