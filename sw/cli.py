# SPDX-License-Identifier: Apache-2.0
"""``lightformer`` command line.

Each subcommand lives in a module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Only the module of the command being run is imported (``lightformer --help`` imports none), and
command modules keep their top-level imports light (no torch, no amaranth in ``sw`` modules) so
that the NumPy-only paths (``eval``, the demo) stay fast and torch-free.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings
from collections.abc import Sequence

from sw.info import version
from sw.report import UsageError

__all__ = ["BUILDS", "COMMANDS", "build_parser", "main", "version"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("sim.demo", "run the demo on the Verilated accelerator and check it bit for bit"),
    "info": ("sw.info", "show presets, their digests and the installed toolchain"),
    "train": ("sw.train_command", "train a LightTransformer on offline data"),
    "compile": ("sw.compile_command", ("quantize a trained model into a versioned int8 artifact; "
                                       "--preset: compile an artifact to a device program")),
    "eval": ("sw.evaluate", "evaluate an int8 artifact with the integer NumPy model"),
    "sim": ("sim.suites", "run the cocotb/Verilator suites"),
    "synth": ("boards.build", "synthesize a unit for a board with YoWASP and write a JSON report"),
    "program": ("boards.program", "load a board's bitstream with openFPGALoader"),
    "bench": ("sim.bench", "run a benchmark on the Verilated hardware and write JSON"),
    "vboard": ("sim.vboard", "serve the Verilated board design on a TCP port (a virtual board)"),
    "ports": ("sw.ports", "list the serial ports a board could be on"),
    "infer": ("sw.infer_command", "run an artifact's test inputs on a device through the driver"),
    "import-hf": ("sw.import_hf_command",
                  "import a BERT-family encoder from a local Hugging Face folder (int8)"),
    "embed": ("sw.bert_int", "sentence embeddings of an imported BERT artifact (integer model)"),
}
# Commands that Verilate: their build knobs (WAVES, LIGHTFORMER_BUILD) are checked before the
# command starts, not after a minute of Verilog export.
BUILDS = frozenset({"demo", "bench", "sim", "vboard"})


def _missing(exc: ModuleNotFoundError) -> None:
    """A missing optional dependency (torch, cocotb) is reported by name, not as a traceback."""
    if exc.name and exc.name.split(".")[0] not in ("sw", "sim", "hw", "boards"):
        raise SystemExit(
            f"lightformer: this command needs the Python package {exc.name!r}; "
            "run `make test` (installs everything) or `pip install -e .[sim,toolchain,ml]`"
        ) from None


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): the line says what to run for help."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the options of ``command`` (the others take any arguments: only the
    command being run imports its module)."""
    parser = _Parser(
        prog="lightformer",
        description="Open FPGA co-design stack for small, efficient Transformers.")
    parser.add_argument("--version", action="version", version=f"lightformer {version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of its one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name != command:
            p.add_argument("rest", nargs=argparse.REMAINDER)
            continue
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as exc:
            _missing(exc)
            raise
    return parser


def _first_line(exc: BaseException) -> str:
    """One line for an error; a longer message (a simulator's log tail) says where the rest is."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    more = f" (+{len(lines) - 1} lines; --debug shows them)" if len(lines) > 1 else ""
    return lines[0] + more


def _run(args: argparse.Namespace) -> int:
    """Run the command, with every error ending in one place: a user error (``UsageError``)
    exits 2, anything else 1; each is one line on stderr, or its traceback with ``--debug``."""
    command = f"lightformer {args.command}"
    try:
        if args.command in BUILDS:
            # sim.runner imports only the standard library at the top: no amaranth, no cocotb.
            from sim.runner import check_knobs

            check_knobs()
        try:
            mod = importlib.import_module(args._module)
        except ModuleNotFoundError as exc:
            _missing(exc)
            raise
        return int(mod.run(args) or 0)
    except UsageError as exc:
        if args.debug:
            traceback.print_exc()
            raise SystemExit(2) from None
        print(exc, file=sys.stderr)             # its code is 2; Python would not print it
        raise
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            raise                               # a status the command chose, already reported
        if args.debug:
            traceback.print_exc()
            raise SystemExit(1) from None
        raise                                   # Python prints the message and exits 1
    except Exception as exc:                    # KeyboardInterrupt still ends with a traceback
        # A library error that marks itself a user error (a bad environment knob) exits 2.
        status = 2 if getattr(exc, "user_error", False) else 1
        if args.debug:
            traceback.print_exc()
            raise SystemExit(status) from None
        line = _first_line(exc)
        if status == 2:
            print(f"{command}: {line}", file=sys.stderr)
            raise SystemExit(2) from None
        if not line.startswith("lightformer"):
            line = f"{command}: {type(exc).__name__}: {line}"
        raise SystemExit(line) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lightformer`` with ``argv``; the return value is the exit status. Errors raise
    :class:`SystemExit`: status 2 for bad input (the line is already on stderr), or the one-line
    message of a runtime failure (status 1 when it reaches Python)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        # Python hides DeprecationWarning outside __main__; a user of the command should see
        # ours (e.g. an artifact in a layout the next release will not read).
        warnings.filterwarnings("default", category=DeprecationWarning,
                                module=r"(sw|sim|hw|boards)(\.|$)")
        return _run(args)


if __name__ == "__main__":
    sys.exit(main())
