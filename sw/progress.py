# SPDX-License-Identifier: Apache-2.0
"""Progress of long steps that report nothing while they run (Verilator, simulation, place and
route): one line per step with the step's name and its elapsed time, drawn by tqdm.

::

    from sw.progress import step

    with step("verilate gemm") as s:
        ...                      # a blocking call
        s.note("cached")         # optional detail shown after the time

On a terminal the line ticks every second (tqdm has no timer of its own, so a daemon thread asks
it to redraw). Elsewhere (CI logs, pipes, pytest) nothing ticks: the step prints when it starts
and when it ends, with its time, so a log still says what was running. Imports only the
standard library at module level: tqdm loads when a step is shown on a terminal.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

__all__ = ["Step", "step"]


def _is_terminal(file: TextIO) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):       # a closed or file-less stream
        return False


class Step:
    """Handle of a running :func:`step`: its label, elapsed time and an optional detail."""

    def __init__(self, label: str, file: TextIO | None, *, live: bool) -> None:
        self.label = label
        self.detail = ""
        self._file = file
        self._t0 = time.monotonic()
        self._bar: Any = None
        if live:
            from tqdm import tqdm

            self._bar = tqdm(total=None, desc=label, file=file, leave=True,
                             bar_format="{desc}: {elapsed}{postfix}", dynamic_ncols=True)

    @property
    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.monotonic() - self._t0

    def note(self, detail: str) -> None:
        """Show ``detail`` after the elapsed time (e.g. ``"cached"`` or ``"3 of 9 cases"``)."""
        self.detail = detail
        if self._bar is not None:
            self._bar.set_postfix_str(detail)

    def _say(self, text: str) -> None:
        if self._file is not None:
            print(text, file=self._file, flush=True)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.refresh()

    def _close(self, ok: bool) -> None:
        if self._bar is not None:
            if not ok:
                self._bar.set_postfix_str("failed")
            self._bar.close()
            return
        end = "done" if ok else "failed"
        detail = f" ({self.detail})" if self.detail else ""
        self._say(f"{self.label}: {end} in {self.elapsed:.1f} s{detail}")


@contextlib.contextmanager
def step(label: str, *, enabled: bool = True, file: TextIO | None = None,
         tick_s: float = 1.0, live: bool | None = None) -> Iterator[Step]:
    """Show ``label`` and its elapsed time while the ``with`` block runs.

    Parameters
    ----------
    label : str
        What is running, e.g. ``"verilate gemm"`` or ``"simulate 9 GEMM problems"``.
    enabled : bool
        ``False`` shows nothing (the handle still measures the time).
    file : text stream, optional
        Where the line goes (default ``sys.stderr``).
    tick_s : float
        Redraw period on a terminal, seconds.
    live : bool, optional
        ``False`` prints the start and end lines even on a terminal (steps that run side by
        side in threads, whose live lines would overwrite each other); ``None``: live on a
        terminal.
    """
    out = sys.stderr if file is None else file
    live = enabled and _is_terminal(out) and live is not False
    s = Step(label, out if enabled else None, live=live)
    if enabled and not live:
        s._say(f"{label} ...")
    stop = threading.Event()
    ticker = None
    if live:
        def tick() -> None:
            while not stop.wait(tick_s):
                s._refresh()

        ticker = threading.Thread(target=tick, name=f"progress: {label}", daemon=True)
        ticker.start()
    ok = False
    try:
        yield s
        ok = True
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        s._close(ok)
