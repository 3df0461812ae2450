# SPDX-License-Identifier: Apache-2.0
"""``lightformer compile``: quantize a trained model into an int8 artifact (:mod:`sw.compile`)
and, with ``--preset NAME``, compile an artifact to a device program (:mod:`sw.program`).

* ``lightformer compile CHECKPOINT --out NAME [--preset P]``: quantize ``CHECKPOINT`` into
  ``NAME.safetensors`` (unchanged from :mod:`sw.compile`); with ``--preset``, also write the
  device program of preset ``P`` beside it, ``NAME.P.program.safetensors``.
* ``lightformer compile ARTIFACT.safetensors --preset P --out PROGRAM``: ``CHECKPOINT`` is an
  int8 artifact: only its program is compiled, to ``PROGRAM.safetensors``. NumPy only (no
  torch).

The program is :func:`sw.program.compile_program` of the artifact for the preset, written by
:func:`sw.program.save_program` (atomically; ``Accelerator.load`` and ``lightformer infer``'s
driver read it with :func:`sw.program.load_program`). A model that does not fit the preset is
refused with one line naming every exceeded limit (:class:`sw.program.FitError`), exit 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sw.report import UsageError

__all__ = ["KIND_PROGRAM", "add_arguments", "compile_to_program", "program_file", "run"]

#: ``kind`` of the report of ``compile ARTIFACT --preset`` (``sw.report.write_json``).
KIND_PROGRAM = "compile.program"
#: Artifact files (``sw.artifact.artifact_file``): these are compiled, not quantized.
_ARTIFACT_SUFFIXES = (".safetensors", ".npz", ".json")


def program_file(artifact: str | Path, preset: str) -> Path:
    """Where the program of ``artifact`` for ``preset`` goes by default:
    ``NAME.safetensors`` -> ``NAME.<preset>.program.safetensors`` beside it."""
    from sw.artifact import artifact_file

    path = artifact_file(artifact)
    return path.with_name(f"{path.name[:-len('.safetensors')]}.{preset}.program.safetensors")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hw.params import preset
    from sw import compile as quantize
    from sw.report import checked_name_type

    quantize.add_arguments(parser)
    parser.add_argument("--preset", type=checked_name_type(preset), default=None, metavar="PRESET",
                        help="also compile the artifact to a device program for this "
                             "accelerator preset, written beside it as "
                             "NAME.PRESET.program.safetensors; with an int8 artifact "
                             "(.safetensors) as CHECKPOINT, only the program is compiled, "
                             "to --out")


def compile_to_program(artifact_path: Path, preset_name: str, out: Path) -> dict[str, Any]:
    """Compile the artifact at ``artifact_path`` for ``preset_name`` and save it to ``out``;
    the report. Raises :class:`sw.artifact.ArtifactError` for a bad artifact and
    :class:`sw.program.FitError` when the model does not fit."""
    from hw.params import preset
    from sw.artifact import load_artifact
    from sw.program import compile_program, save_program

    art = load_artifact(artifact_path)
    params = preset(preset_name)
    program = compile_program(art, params)
    written = save_program(program, out)
    return {"program": str(written), "program_bytes": written.stat().st_size,
            "artifact": str(art.path), "model_id": art.model_id, "task": art.task,
            **program.to_dict()}


def _say_program(report: dict[str, Any], say) -> None:
    usage = ", ".join(f"{name} {u['used']}/{u['size']}" for name, u in report["usage"].items())
    say(f"wrote {report['program']}: {report['instructions']} instructions, "
        f"{report['mode']} mode, for {report['preset']} (design id {report['design_id']}); "
        f"bytes used/size: {usage}")


def _is_artifact(path: Path) -> bool:
    return path.is_file() and path.suffix in _ARTIFACT_SUFFIXES


def run(args: argparse.Namespace) -> int:
    from sw import compile as quantize
    from sw.artifact import ArtifactError, artifact_file
    from sw.program import FitError
    from sw.report import check_output_path, info_stream, write_json

    command = "lightformer compile"
    out_stream = info_stream(args.json)

    def say(line: str) -> None:
        print(line, file=out_stream, flush=True)

    source = Path(args.checkpoint)
    if _is_artifact(source):
        if args.preset is None:
            raise UsageError(f"{command}: {source} is an int8 artifact; give --preset NAME to "
                             "compile it to a device program (a trained model.pt is quantized)")
        ignored = [opt for opt, given in (("--task", args.task), ("--onnx", args.onnx),
                                          ("--qat-epochs", args.qat_epochs)) if given]
        if ignored:
            raise UsageError(f"{command}: {', '.join(ignored)} only apply to quantizing a "
                             f"model.pt, not to compiling the int8 artifact {source}")
        out = Path(args.out)
        if out.resolve() == artifact_file(source).resolve():
            raise UsageError(f"{command}: --out {out} is the artifact itself; name the program "
                             f"file, e.g. {program_file(source, args.preset)}")
        try:
            report = compile_to_program(source, args.preset, out)
        except ArtifactError as exc:
            raise UsageError(f"{command}: {exc}") from None
        except FitError as exc:
            print(f"{command}: {exc}", file=sys.stderr)
            return 1
        _say_program(report, say)
        if args.json is not None and write_json(args.json, report,
                                                kind=KIND_PROGRAM) != "stdout":
            say(f"wrote {args.json}")
        return 0

    program_out = None
    if args.preset is not None:
        try:
            program_out = check_output_path(program_file(args.out, args.preset),
                                            option="program path")
        except ValueError as exc:
            raise UsageError(f"{command}: {exc}") from None
    rc = quantize.run(args)
    if rc or program_out is None:
        return rc
    try:
        report = compile_to_program(args.out, args.preset, program_out)
    except FitError as exc:
        print(f"{command}: wrote the artifact {args.out}, but {exc}", file=sys.stderr)
        return 1
    _say_program(report, say)
    return 0
