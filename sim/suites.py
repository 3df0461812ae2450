# SPDX-License-Identifier: Apache-2.0
"""``lightformer sim [SUITE...]``: run the cocotb/Verilator suites through pytest (``-m sim``).

The suites are declared here (:data:`SUITES`), not discovered by listing ``tests/``: a suite
``NAME`` is the pytest module ``tests/test_sim_NAME.py`` of a source checkout, and a suite whose
module is absent (an installed package has no ``tests/``) is reported as such instead of
breaking the command. Without names every present suite runs. ``--effort`` sets ``LF_EFFORT``
(``fast``: ~10x fewer random vectors, ``slow``: ~10x more) and ``--seed`` sets ``LF_SEED``.
A new ``tests/test_sim_*.py`` with ``sim`` tests must be added to :data:`SUITES`
(``tests/test_sim_infra.py`` checks that).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["EFFORTS", "EFFORT_SAMPLES", "STREAM_VARIANTS", "SUITES", "add_arguments",
           "available_suites", "build_unit", "check_knobs", "check_stream_variants",
           "effort_samples", "env_int", "env_seed", "run", "run_stream_variants",
           "run_with_summary", "suite_marks", "suite_path", "unit_build_fixture"]

ROOT = Path(__file__).resolve().parent.parent
EFFORTS = ("fast", "default", "slow")
#: Random samples per ``LF_EFFORT`` of a unit suite (``NUM_SAMPLES`` overrides).
EFFORT_SAMPLES = {"fast": 100, "default": 1000, "slow": 10_000}
#: The result keys of the four stream variants of a unit bench (``sim.harness.StreamVariant``).
STREAM_VARIANTS = tuple(f"idle={i} backpressure={b}" for i in ("on", "off") for b in ("on", "off"))

#: Suite name -> what it checks (its pytest module is ``tests/test_sim_<name>.py``).
SUITES: dict[str, str] = {
    "gemm": "GEMM pipeline vs sw.ref.gemm_requant, four stream variants, and its bench",
    "attention": "windowed-attention unit vs sw.ref.windowed_attention_int, and its bench",
    "vector": "residual add, LUT, mean pool, int32 pass vs sw.ref",
    "layernorm": "LayerNorm unit vs the NumPy model",
    "layernorm_tokens": "token-parallel LayerNorm unit (the controller's) vs the NumPy model",
    "vboard": "virtual board: the driver over socket:// to the Verilated board design",
    "bert": "an imported BERT encoder streamed on the virtual board vs sw.bert_int.encode_int",
}


def suite_path(name: str) -> Path:
    """The pytest module of suite ``name``."""
    return ROOT / "tests" / f"test_sim_{name}.py"


def available_suites() -> list[str]:
    """The declared suites whose pytest module is present, in declaration order."""
    return [name for name in SUITES if suite_path(name).is_file()]


def env_int(name: str, default: int, lo: int, env: Mapping[str, str] | None = None) -> int:
    """The integer environment knob ``name`` (``default`` when unset or empty). ``ValueError``
    naming it unless it is an integer ``>= lo``: a knob that generates no vectors (``0``, ``-1``)
    or cannot be read (``abc``) must fail, not pass vacuously."""
    text = (os.environ if env is None else env).get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = lo - 1
    if value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, not {text!r}")
    return value


def env_seed() -> int:
    """``LF_SEED``, the base seed of a suite's random vectors (default 1)."""
    return env_int("LF_SEED", 1, 0)


def check_knobs(env: Mapping[str, str] | None = None) -> None:
    """``NUM_SAMPLES``, ``LF_SEED`` and ``LF_EFFORT``: ``ValueError`` for the first bad one."""
    env = os.environ if env is None else env
    env_int("NUM_SAMPLES", 0, 1, env)
    env_int("LF_SEED", 1, 0, env)
    effort = env.get("LF_EFFORT", "default")
    if effort not in EFFORTS:
        raise ValueError(f"LF_EFFORT must be one of {', '.join(EFFORTS)}, not {effort!r}")


def effort_samples(per_effort: Mapping[str, int] = EFFORT_SAMPLES) -> int:
    """Random samples for a suite (at least 1): ``NUM_SAMPLES`` if set, else
    ``per_effort[LF_EFFORT]`` (``LF_EFFORT`` defaults to ``default``); :func:`check_knobs`
    first."""
    check_knobs()
    if os.environ.get("NUM_SAMPLES", "").strip():
        return env_int("NUM_SAMPLES", 0, 1)
    effort = os.environ.get("LF_EFFORT", "default")
    if effort not in per_effort:
        raise ValueError(f"LF_EFFORT must be one of {', '.join(per_effort)}, not {effort!r}")
    return per_effort[effort]


def run_with_summary(b: Any, test_module: str, testcase: str, result_json: Path, *,
                     env: Mapping[str, object], line: Callable[[str, Any], str],
                     tag: str | None = None) -> dict[str, Any]:
    """Run cocotb ``testcase`` (:func:`sim.runner.run`) and return what it wrote to
    ``result_json`` (``LF_RESULT_JSON``), printing ``line(name, entry)`` for every entry, also
    when the run failed (the counts then show how far it got)."""
    from sim import runner

    summary: dict[str, Any] = {}
    try:
        runner.run(b, test_module, testcase=testcase, tag=tag,
                   env={**env, "LF_RESULT_JSON": result_json})
    finally:
        if result_json.exists():
            summary = json.loads(result_json.read_text())
        print()
        for name, entry in summary.items():
            print(line(name, entry))
    return summary


def suite_marks() -> list[Any]:
    """``pytestmark`` of a suite module: the ``sim`` mark, and a skip where no Verilator is."""
    import pytest

    from sim.runner import have_verilator

    return [pytest.mark.sim,
            pytest.mark.skipif(not have_verilator(), reason="verilator not installed")]


def build_unit(unit: str, name: str, params: Any = None) -> Any:
    """The cached Verilator build (:func:`sim.runner.build`) of ``unit`` (``"module:Class"``,
    a :class:`hw.unit.Unit`) built ``from_params(params)``; ``params`` defaults to preset
    ``tiny``. Imports the unit only when called, so collecting a suite needs no Amaranth."""
    import importlib

    from hw.params import preset
    from sim import runner

    module, cls = unit.split(":")
    unit_cls = getattr(importlib.import_module(module), cls)
    params = preset("tiny") if params is None else params
    return runner.build(lambda: unit_cls.from_params(params), name=name, params=params)


def unit_build_fixture(unit: str, name: str) -> Any:
    """A module-scoped pytest fixture ``<name>_build``: :func:`build_unit` of ``unit``."""
    import pytest

    @pytest.fixture(scope="module", name=f"{name}_build")
    def fixture() -> Any:
        return build_unit(unit, name)

    return fixture


def check_stream_variants(summary: Mapping[str, Mapping[str, Any]], samples_key: str,
                          samples: int) -> None:
    """``AssertionError`` unless ``summary`` has exactly the four :data:`STREAM_VARIANTS`, each
    with at least ``samples`` random ``samples_key`` and no mismatch."""
    if sorted(summary) != sorted(STREAM_VARIANTS):
        raise AssertionError(f"variants {sorted(summary)}, expected {sorted(STREAM_VARIANTS)}")
    for name, v in summary.items():
        if not v[samples_key] >= samples > 0:
            raise AssertionError(f"{name}: {v[samples_key]} {samples_key}, expected >= {samples}")
        if v["mismatches"] or v["row_mismatches"]:
            raise AssertionError(f"{name}: {v['mismatches']} mismatches: {v['errors']}")


def run_stream_variants(b: Any, test_module: str, testcase: str, out_dir: Path, capsys: Any,
                        *, samples_env: str, samples_key: str, line: Callable[[str, Any], str],
                        env: Mapping[str, object] | None = None,
                        tag: str | None = None) -> tuple[dict[str, Any], int]:
    """Run a unit bench's bit-exact ``testcase`` in its four stream variants with
    :func:`effort_samples` random samples (``samples_env``) at ``LF_SEED``, its result in
    ``out_dir/<testcase>.json``; print ``line(name, entry)`` and the seed per variant past
    pytest's capture (``capsys``), :func:`check_stream_variants` the result and return it with
    the sample count."""
    samples = effort_samples()
    seed = env_seed()
    with capsys.disabled():
        summary = run_with_summary(
            b, test_module, testcase, out_dir / f"{testcase}.json", tag=tag,
            env={samples_env: samples, "LF_SEED": seed, **(env or {})},
            line=lambda name, v: f"{line(name, v)}, seed {seed}")
    check_stream_variants(summary, samples_key, samples)
    return summary, samples


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"suites to run (default: all): {', '.join(SUITES)}")
    parser.add_argument("--list", action="store_true", help="list the suites and exit")
    parser.add_argument("--effort", choices=EFFORTS, default=None,
                        help="random-vector effort (default: the tests' own default)")
    parser.add_argument("--seed", type=int, default=None, help="base random seed (LF_SEED)")
    parser.add_argument("--waves", action="store_true",
                        help="record VCD traces (WAVES=1; separate cached build)")


def run(args: argparse.Namespace) -> int:
    present = available_suites()
    if args.list:
        for name, what in SUITES.items():
            print(f"{name:<10} {what}" + ("" if name in present else "  (not in this checkout)"))
        return 0
    unknown = [s for s in args.suites if s not in SUITES]
    if unknown:
        print(f"lightformer sim: unknown suite(s) {', '.join(map(repr, unknown))}; "
              f"choose from: {', '.join(SUITES)}", file=sys.stderr)
        return 2
    missing = [s for s in args.suites if s not in present]
    if missing or not present:
        where = ", ".join(str(suite_path(s)) for s in (missing or SUITES))
        print(f"lightformer sim: the suite module(s) {where} are not here; the suites run from a "
              "source checkout (git clone the repository, then `make test`)", file=sys.stderr)
        return 2
    files = [str(suite_path(s)) for s in (args.suites or present)]
    env = dict(os.environ)
    if args.effort:
        env["LF_EFFORT"] = args.effort
    if args.seed is not None:
        env["LF_SEED"] = str(args.seed)
    if args.waves:
        env["WAVES"] = "1"
    try:
        check_knobs(env)
    except ValueError as exc:
        print(f"lightformer sim: {exc}", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "pytest", "-m", "sim", *files]
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT, env=env)
