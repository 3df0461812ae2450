# SPDX-License-Identifier: Apache-2.0
"""``lightformer infer``: run an artifact's test inputs on a device through the driver.

Opens ``--port`` (``/dev/ttyUSB0`` for a board, ``socket://127.0.0.1:PORT`` for a virtual one),
checks its design id against the program compiled for ``--preset`` (default: the preset the
device names), loads the program (resident, or streamed layer by layer when the weights exceed
the preset's scratchpad), runs ``--samples`` test inputs of the artifact's task and compares
every logit with ``sw.ref.model_forward_int``. The report has the same keys for a board and a
virtual board (``docs/cli.md``). NumPy and pyserial only: no torch, no Amaranth.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "run_inference", "shipped_artifact_for"]

#: ``kind`` of the JSON report (``sw.report.write_json``).
KIND = "infer"


def _positive(what: str):
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{what} must be a positive integer, not {text!r}")
        return value

    parse.__name__ = what
    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise argparse.ArgumentTypeError(f"timeout must be in (0, 3600) seconds, not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sw.report import add_json_argument, url_type

    parser.add_argument("--port", required=True, metavar="URL", type=url_type,
                        help="the device: /dev/ttyUSB0, socket://127.0.0.1:PORT (a virtual "
                             "board), loop:// is refused")
    parser.add_argument("--artifact", default=None, metavar="PATH",
                        help="int8 artifact (default: the shipped digits model; with --preset, "
                             "the first shipped model that fits it)")
    parser.add_argument("--preset", default=None,
                        help="compile for this preset (default: the one the device names)")
    parser.add_argument("--samples", type=_positive("samples"), default=None, metavar="N",
                        help="run the first N test inputs (default: all)")
    parser.add_argument("--baud", type=_positive("baud"), default=None,
                        help="serial baud rate (default: the preset's; ignored by socket://)")
    parser.add_argument("--timeout", type=_seconds, default=2.0,
                        help="seconds to wait for one reply (default 2)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_argument(parser)


def shipped_artifact_for(params: Any) -> Path:
    """The first shipped model (``sw.artifact.SHIPPED_ARTIFACTS``) the compiler fits ``params``.

    The digits model everywhere it fits; the smaller ``digits_ice40_int8`` where it does not
    (the ``icebreaker`` preset). :class:`sw.program.FitError` from the last one when none fits.
    """
    from sw.artifact import SHIPPED_ARTIFACTS, load_artifact, shipped_artifact_path
    from sw.program import FitError, compile_program

    for i, name in enumerate(SHIPPED_ARTIFACTS):
        path = shipped_artifact_path(name)
        try:
            compile_program(load_artifact(path), params)
        except FitError:
            if i == len(SHIPPED_ARTIFACTS) - 1:
                raise
            continue
        return path
    raise AssertionError("unreachable")


def run_inference(url: str, artifact: Any, x_q, y, *, params=None, baud: int | None = None,
                  timeout: float = 2.0, progress: bool = True,
                  say=print) -> dict[str, Any]:
    """Open ``url``, compile ``artifact`` for ``params`` (default: the device's preset), load
    it, run ``x_q`` and compare with ``sw.ref.model_forward_int``; the JSON-ready report.

    Raises ``sw.driver.AccelError`` on a link or device failure (a design mismatch included)
    and ``sw.program.FitError`` when the model cannot run on the preset.
    """
    import numpy as np

    from hw.params import AccelParams, preset, preset_names
    from sw import ref
    from sw.driver import Accelerator, AccelError
    from sw.driver.infer import infer
    from sw.program import compile_program

    want = ref.model_forward_int(artifact, x_q)
    if baud is None:
        baud = (params or AccelParams()).baud
    with Accelerator.open(url, baud=baud, timeout=timeout) as acc:
        ident = acc.identify()
        if params is None:
            if ident.name not in preset_names():
                raise AccelError(f"the device at {url} names preset {ident.name!r}, which this "
                                 f"lightformer does not have; pass --preset")
            params = preset(ident.name)
        program = compile_program(artifact, params)
        say(f"infer: {artifact.path.name} ({artifact.task}) on {url}: preset {params.name}, "
            f"design id 0x{params.design_id:08x}, {program.mode} mode, {len(x_q)} samples")
        t0 = time.perf_counter()
        acc.load(program)
        load_s = time.perf_counter() - t0
        load_bytes = acc.bytes_sent + acc.bytes_received
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=len(x_q), desc="infer", unit="sample", leave=False,
                       file=sys.stderr)
        t0 = time.perf_counter()
        try:
            report = infer(acc, x_q, labels=y, want=want,
                           progress=None if bar is None else lambda i: bar.update(1))
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - t0
    logits = report.pop("logits")
    first = None
    if report["mismatches"]:
        first = int(next(i for i, (g, w) in enumerate(zip(logits, want))
                         if not np.array_equal(g, w)))
    report.update({
        "first_mismatch": first, "preset": params.name,
        "design_id": f"{params.design_id:08x}", "url": url, "task": artifact.task,
        "artifact": str(artifact.path), "model_id": artifact.model_id,
        "load_link_bytes": load_bytes, "load_seconds": round(load_s, 3),
        "seconds": round(seconds, 3), "model": "sw.ref.model_forward_int",
    })
    return report


def summary(report: dict[str, Any], say) -> None:
    """The human lines of an inference report (``infer`` and the demo)."""
    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.2f} %"

    say(f"bit-exact vs sw.ref.model_forward_int: {'yes' if report['bit_exact'] else 'NO'} "
        f"({report['mismatches']} of {report['samples']} samples differ)")
    say(f"accuracy {pct(report['accuracy'])} (NumPy integer model {pct(report['accuracy_ref'])})")
    say(f"{report['cycles_per_inference']:.0f} cycles per inference, "
        f"{report['projected_latency_us']:.1f} us projected at the preset's clock; "
        f"{report['link_bytes_per_inference']:.0f} link bytes per inference "
        f"({report['mode']} mode over {report['transport']})")


def run(args: argparse.Namespace) -> int:
    from hw.params import preset
    from sw.artifact import ArtifactError, default_artifact_path, load_artifact
    from sw.driver import AccelError
    from sw.driver.infer import transport_kind
    from sw.program import FitError
    from sw.report import info_stream, write_json
    from sw.testset import task_inputs

    try:
        params = preset(args.preset) if args.preset is not None else None
    except ValueError as exc:
        print(f"lightformer infer: --preset: {exc}", file=sys.stderr)
        return 2
    if transport_kind(args.port) == "loop":
        print("lightformer infer: --port loop:// has no device behind it; give a serial port or "
              "a virtual board's socket:// URL (lightformer vboard prints one)", file=sys.stderr)
        return 2
    try:
        if args.artifact is not None:
            art = load_artifact(args.artifact)
        else:
            art = load_artifact(default_artifact_path() if params is None
                                else shipped_artifact_for(params))
        x_q, y, source = task_inputs(art, args.samples)
    except (ArtifactError, ValueError, FitError) as exc:
        print(f"lightformer infer: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        print(f"lightformer infer: the {art.task!r} test data needs the Python package "
              f"{exc.name!r} (`pip install -e .[ml]`), or a test set file beside the artifact "
              f"(`python -m sw.testset --artifact {art.path}`)", file=sys.stderr)
        return 2
    out = info_stream(args.json)

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        report = run_inference(args.port, art, x_q, y, params=params, baud=args.baud,
                               timeout=args.timeout, progress=not args.no_progress, say=say)
    except (AccelError, FitError, OSError) as exc:
        print(f"lightformer infer: {exc}", file=sys.stderr)
        return 1
    report["inputs"] = source
    summary(report, say)
    if args.json is not None and write_json(args.json, report, kind=KIND) != "stdout":
        say(f"wrote {args.json}")
    return 0 if report["bit_exact"] else 1
