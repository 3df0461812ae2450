# SPDX-License-Identifier: Apache-2.0
"""Reports and output files: one way for every command to write JSON and files.

* ``write_json(path, payload, kind=...)`` adds ``schema_version`` and ``kind``, writes ``-`` to
  stdout, and writes any other path atomically (temporary file in the same folder, then
  ``os.replace``), so a failed write never leaves a truncated report.
* ``add_json_argument(parser)`` gives every reporting command the same ``--json PATH`` option,
  validated when the arguments are parsed (before any long work starts).
* ``atomic_write_bytes`` / ``atomic_write_text`` are the primitives for other outputs.

Imports only the standard library: the NumPy-only paths (``eval``, the driver) use it.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

__all__ = ["SCHEMA_VERSION", "STDOUT", "UsageError", "add_json_argument", "atomic_write_bytes",
           "atomic_write_text", "check_output_path", "checked_name_type", "info_stream",
           "json_path_type", "path_type", "probe_writable_folder", "write_json"]

#: Version of the JSON reports' layout; bumped when a key is renamed or removed.
SCHEMA_VERSION = 1
#: The ``--json`` value that means standard output.
STDOUT = "-"


class UsageError(SystemExit):
    """A bad argument, input file or environment variable, found before the long job.

    ``str(exc)`` is the one-line message naming the command; ``exc.code`` is 2, argparse's exit
    status for bad arguments (``lightformer`` prints the message and exits with it). Runtime
    failures stay ``SystemExit(message)``, status 1.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 2


def probe_writable_folder(folder: str | os.PathLike[str]) -> Path:
    """The nearest existing ancestor of ``folder`` (itself included), proven writable.

    Creates and removes a file there: ``os.access`` answers "yes" to root even on read-only or
    virtual file systems (``/proc``), where a write would fail only after the long job. Raises
    ``NotADirectoryError`` when that ancestor is a file and ``OSError`` when it cannot be
    written; both carry the ancestor in ``filename``.
    """
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(probe))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lightformer-probe-", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(probe)) from None
    return probe


def check_output_path(text: str | os.PathLike[str], *, option: str = "output") -> Path:
    """``text`` as a writable file path: not a folder, parent creatable and writable.

    Raises ``ValueError`` with what to do, so a command can refuse before long work starts.
    """
    s = os.fspath(text)
    if not s or not s.strip():
        raise ValueError(f"{option} must be a file path, not an empty string")
    path = Path(s)
    if path.is_dir() or s.endswith(("/", os.sep)):
        raise ValueError(
            f"{option} must be a file path (e.g. build/out.json), not the folder {s!r}")
    # The nearest existing ancestor must be a writable folder (mkdir will create the rest).
    try:
        probe_writable_folder(path.parent)
    except NotADirectoryError as exc:
        raise ValueError(f"{option} {s!r}: {exc.filename!r} is a file, so the folder cannot "
                         f"exist") from None
    except OSError as exc:
        raise ValueError(f"{option} {s!r}: cannot write in the folder {exc.filename!r} "
                         f"({exc.strerror or exc})") from None
    if path.exists() and not path.is_file():
        raise ValueError(f"{option} {s!r} exists and is not a regular file")
    return path


def path_type(text: str) -> Path:
    """argparse ``type=`` for an input file or folder: any path but the empty string (which
    ``Path`` would read as the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, not an empty string")
    return Path(text)


def checked_name_type(check):
    """argparse ``type=`` that keeps a name ``check(name)`` accepts; its ``ValueError`` becomes
    an argparse error (exit 2)."""

    def parse(text: str) -> str:
        try:
            check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    parse.__name__ = check.__name__             # argparse names the type in some messages
    return parse


def url_type(text: str) -> str:
    """argparse ``type=`` for ``--port``: a serial port or a pyserial URL, never blank (which
    would reach the driver and fail there as a ``TypeError``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "must be a serial port or a URL such as socket://127.0.0.1:PORT, not an empty string")
    return text


def bert_shape_type(text: str) -> tuple[int, int, int]:
    """argparse type of an encoder shape ``DxLxH`` (d_model x layers x heads, e.g. ``384x6x12``)
    -> ``(d, layers, heads)``."""
    try:
        d, layers, heads = (int(x) for x in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must be DxLxH (e.g. 384x6x12), not {text!r}") from None
    return d, layers, heads


def json_path_type(text: str) -> Path | str:
    """argparse ``type=`` for ``--json``: ``-`` (stdout) or a checked file path."""
    if text == STDOUT:
        return STDOUT
    try:
        return check_output_path(text, option="--json")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_json_argument(parser: argparse.ArgumentParser, default: str | None = None,
                      what: str = "the results") -> None:
    """Add ``--json PATH`` (``-`` for stdout) to a command's parser."""
    shown = default if default is not None else "none"
    parser.add_argument("--json", type=json_path_type, default=default, metavar="PATH",
                        help=f"write {what} as JSON to PATH, or - for stdout (default: {shown})")


def info_stream(json_path: str | os.PathLike[str] | None) -> TextIO:
    """Where a command prints its human-readable lines: standard error when ``--json -`` sends
    the report to standard output (so stdout stays one JSON document), else standard output."""
    if json_path is not None and os.fspath(json_path) == STDOUT:
        return sys.stderr
    return sys.stdout


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp makes 0600; the result is an ordinary file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (rendered in memory, then
    :func:`atomic_write_bytes`) and close it."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_json(path: str | os.PathLike[str], payload: dict[str, Any], *, kind: str) -> str:
    """Write a report: ``{"schema_version", "kind", **payload}``; returns where it went.

    ``path`` ``-`` prints to stdout. ``kind`` names the report (``"eval"``, ``"bench.gemm"``,
    ...) so a reader can tell reports apart; the keys of each kind are documented in
    ``docs/cli.md``.
    """
    doc = {"schema_version": SCHEMA_VERSION, "kind": kind}
    doc.update((k, v) for k, v in payload.items() if k not in doc)
    text = json.dumps(doc, indent=1) + "\n"
    if os.fspath(path) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return "stdout"
    return str(atomic_write_text(path, text))


def source_commit() -> str | None:
    """The commit of the source tree these modules run from, as ``git describe --always
    --dirty --abbrev=12`` writes it (``-dirty``: tracked files changed), or ``None`` outside a
    git checkout. Reports record it so their numbers name the code that produced them."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                             cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
