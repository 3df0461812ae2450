# SPDX-License-Identifier: Apache-2.0
"""``sw.progress.step``: the one progress line of long silent steps."""

from __future__ import annotations

import io
import time

import pytest

from sw.progress import step


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_step_off_a_terminal_says_start_and_end_with_time():
    out = io.StringIO()
    with step("verilate gemm", file=out) as s:
        s.note("cached")
    lines = out.getvalue().splitlines()
    assert lines[0] == "verilate gemm ..."
    assert lines[1].startswith("verilate gemm: done in ") and lines[1].endswith(" s (cached)")
    assert len(lines) == 2


def test_progress_step_reports_a_failure_and_reraises():
    out = io.StringIO()
    with pytest.raises(RuntimeError, match="boom"), step("simulate", file=out):
        raise RuntimeError("boom")
    assert out.getvalue().splitlines()[-1].startswith("simulate: failed in ")


def test_progress_step_on_a_terminal_ticks_with_tqdm():
    out = _Terminal()
    with step("verilog attention", file=out, tick_s=0.05) as s:
        time.sleep(0.25)
        s.note("3 of 9 cases")
    text = out.getvalue()
    assert "verilog attention: 00:00" in text and "3 of 9 cases" in text
    assert text.count("\r") >= 3                  # redrawn while the block was blocked
    assert s.elapsed >= 0.25


def test_progress_step_disabled_is_silent_but_timed():
    out = io.StringIO()
    with step("verilate", file=out, enabled=False) as s:
        pass
    assert out.getvalue() == "" and s.elapsed >= 0


def test_progress_step_not_live_prints_lines_on_a_terminal_too():
    """``live=False`` (steps side by side in threads): start and end lines, no redraws."""
    out = _Terminal()
    with step("synth: seed 3: routing (nextpnr)", file=out, tick_s=0.02, live=False):
        time.sleep(0.1)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 2
    assert lines[0] == "synth: seed 3: routing (nextpnr) ..."
    assert lines[1].startswith("synth: seed 3: routing (nextpnr): done in ")
