# SPDX-License-Identifier: Apache-2.0
"""``lightformer`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``. Modules are imported lazily and must keep their top-level imports light
(no torch, no amaranth in ``sw`` modules) so that ``lightformer --help`` and the NumPy-only demo
path stay fast and torch-free.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("sim.demo", "run the demo on the Verilated accelerator and check it bit for bit"),
    "info": ("sw.info", "show presets, their digests and the installed toolchain"),
    "train": ("sw.train", "train a LightTransformer on offline data"),
    "compile": ("sw.compile", "quantize a trained model into a versioned int8 artifact"),
    "eval": ("sw.evaluate", "evaluate an int8 artifact with the integer NumPy model"),
    "sim": ("sim.suites", "run the cocotb/Verilator suites"),
    "synth": ("boards.build", "synthesize a unit for a board with YoWASP and write a JSON report"),
    "bench": ("sim.bench", "run a benchmark on the Verilated hardware and write JSON"),
}


def _load(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # A missing optional dependency (torch, cocotb) is reported by name, not as a traceback.
        if exc.name and not exc.name.startswith(("sw", "sim", "hw", "boards")):
            raise SystemExit(
                f"lightformer: this command needs the Python package {exc.name!r}; "
                "run `make test` (installs everything) or `pip install -e .[sim,toolchain,ml]`"
            ) from None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightformer",
        description="Open FPGA co-design stack for small, efficient Transformers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            # Optional dependency missing: accept anything; run() reports what to install.
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(_module=module)
            continue
        mod.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    mod = _load(args._module)
    return int(mod.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
