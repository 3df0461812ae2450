# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench fuzz``: fuzz a device's host link and count what goes wrong.

Streams about ``--bytes`` bytes of bursts of mutated frames (bit flips, truncations, wrong
lengths, bad CRCs, unknown opcodes, addresses outside the memory map, bad READ strides, RUN then
STATUS) and garbage, each burst followed by a silence, interleaved with valid frames (IDENTIFY,
STATUS, WAIT, plain and strided READs, WRITEs), into a device
(:func:`sw.driver.fuzz.fuzz`). The valid WRITEs go to the weight scratchpad (the accelerator
only reads it, so a RUN among the bad bytes cannot change it) and a shadow copy follows them;
the final read-back counts ``memory_corruptions``.

The device: ``--port URL`` (a board or a running virtual board), ``--python`` (the Python
virtual board: the frame-engine model in front of the ISA simulator, on a loopback port), or by
default the Verilated virtual board of ``--preset`` (``sim.vboard``, built or reused).

Top-level imports stay light: the device and the driver load inside :func:`bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import sys
import time
from collections.abc import Iterator
from typing import Any

from sim.benchkit import Say, add_common, int_type

__all__ = ["DESCRIPTION", "KIND", "add_arguments", "bench"]

DESCRIPTION = ("fuzz the host link with mutated frames and garbage: valid frames answered, "
               "error replies, memory corruptions, hangs")
#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "bench.fuzz"
#: At most this many bytes of the weight scratchpad are fuzzed (and read back at the end).
WINDOW_BYTES = 4096
#: Silence after each burst of bad bytes, by device: the Python board's receive timeout is
#: its server's 0.01 s; the Verilated board's 10 ms of simulated clock pass in well under
#: 0.2 s; a board's is the preset's timeout at its clock (module ``hw.link.protocol``).
_PY_SERVER_SILENCE_S = 0.01
_PY_SILENCE_S = 0.05
_VBOARD_SILENCE_S = 0.3

_bytes = int_type("bytes", 1, "positive")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sw.report import url_type

    add_common(parser, "build/bench/fuzz.json")
    parser.add_argument("--bytes", type=_bytes, default=1_000_000, metavar="N",
                        help="bytes to send, about (default 1000000)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", default=None, metavar="URL", type=url_type,
                       help="fuzz this device (/dev/ttyUSB0, socket://HOST:PORT) instead of "
                            "starting a virtual board")
    where.add_argument("--python", action="store_true",
                       help="fuzz the Python virtual board (no Verilator)")


@contextlib.contextmanager
def _device(args: argparse.Namespace, params: Any) -> Iterator[tuple[str, str, float]]:
    """``(url, device kind, silence_s)`` of the device to fuzz, started and stopped here."""
    if args.port is not None:
        from hw.link import protocol as lp

        board_timeout = lp.timeout_cycles(params.target_mhz * 1e6, params.baud) / (
            params.target_mhz * 1e6)
        yield args.port, "port", 2 * board_timeout + 0.05
    elif args.python:
        from sw.driver.isaboard import isa_board
        from sw.driver.model import LinkServer

        with LinkServer(isa_board(params), silence_s=_PY_SERVER_SILENCE_S) as srv:
            yield srv.url, "python", _PY_SILENCE_S
    else:
        from sim import vboard

        with vboard.start(params, progress=True) as vb:
            yield vb.url, "vboard", _VBOARD_SILENCE_S


def bench(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """``lightformer bench fuzz``: fuzz the device, print, return the report."""
    from tqdm import tqdm

    from hw import isa
    from hw.params import preset
    from sw.driver import Device
    from sw.driver.fuzz import fuzz, outside_address
    from sw.driver.infer import transport_kind

    params = preset(args.preset)
    mmap = isa.memory_map(params)
    wgt = mmap.region("wgt")
    window = (wgt.base, min(wgt.size, WINDOW_BYTES))
    with _device(args, params) as (url, kind, silence_s):
        say(f"bench fuzz: {args.bytes} bytes into {kind} {url} (preset {params.name}, "
            f"seed {args.seed}, {silence_s:g} s silence after each burst)")
        t0 = time.monotonic()
        with Device.open(url, baud=params.baud, timeout=2.0) as dev:
            dev.check_design(params.design_id, params.name)
            with tqdm(total=args.bytes, desc="fuzz", unit="B", unit_scale=True, leave=False,
                      file=sys.stderr) as bar:
                report = fuzz(dev, window=window, outside=outside_address(mmap.regions),
                              n_bytes=args.bytes, seed=args.seed, silence_s=silence_s,
                              timeout=2.0,
                              progress=lambda n: bar.update(min(n, args.bytes) - bar.n))
        seconds = time.monotonic() - t0
    unanswered = report["valid_frames"] - report["valid_answered_ok"]
    problems = [f"{n} {what}" for n, what in ((unanswered, "valid frames not answered OK"),
                                              (report["hangs"], "hangs")) if n]
    say(f"{report['bytes']} bytes, {report['valid_frames']} valid frames "
        f"({report['valid_answered_ok']} answered OK), {report['memory_corruptions']} memory "
        f"corruptions, {report['hangs']} hangs; error replies {report['error_replies']}")
    return {
        "bench": "fuzz", "preset": params.name, "digest": params.digest(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": args.seed, "device": kind, "transport": transport_kind(url),
        **report,
        "window": {"base": window[0], "bytes": window[1]},
        "silence_s": silence_s, "seconds": round(seconds, 1),
        "bytes_per_s": round(report["bytes"] / seconds) if seconds else None,
        "mismatches": report["memory_corruptions"],
        "bit_exact": report["memory_corruptions"] == 0,
        "error": "; ".join(problems) or None,
    }
