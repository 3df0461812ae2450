# SPDX-License-Identifier: Apache-2.0
"""What every cocotb bench (``sim/tb_*.py``) shares: the harness around the DUT and the result
file.

:class:`Harness` holds the DUT, the :class:`~hw.params.AccelParams` and stream-port layouts the
runner passed in (``LF_PARAMS``, ``LF_PORTS``), one :class:`~sim.streams.EdgeLoop` for all stream
drivers, clock and reset, and :meth:`Harness.wait_for`, which waits for the DUT's output while
failing on a stall or on extra output. A bench subclasses it, adds its drivers with
:meth:`Harness.add_source` / :meth:`Harness.add_sink` and its scoreboard, and queues stimulus.

:func:`write_result` adds one entry to the JSON file named by ``LF_RESULT_JSON``, which is how a
bench hands numbers back to pytest and to ``lightformer bench``. Runs inside the simulator only
(imports cocotb).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, Timer

from sim import runner
from sim.streams import (
    Codec,
    EdgeLoop,
    StreamSink,
    StreamSource,
    pause_generator,
    start_clock_and_drivers,
)
from sim.suites import env_seed
from sw.report import atomic_write_text

__all__ = ["CLOCK_NS", "STALL_CYCLES", "Harness", "Scoreboard", "StreamVariant", "bench_inputs",
           "steps_per_cycle", "stream_variant_test", "write_result"]

CLOCK_NS = 10
STALL_CYCLES = 20_000         # no output for this long (with work pending) fails the test
SEED_STRIDE = 8               # pause seeds of one harness: seed * 8 + 1 .. seed * 8 + 7


def write_result(key: str, value: Any) -> None:
    """Store ``value`` under ``key`` in the JSON file ``LF_RESULT_JSON`` (if it is set)."""
    path = os.environ.get("LF_RESULT_JSON")
    if not path:
        return
    p = Path(path)
    blob = json.loads(p.read_text()) if p.exists() else {}
    blob[key] = value
    atomic_write_text(p, json.dumps(blob, indent=1))       # a killed run leaves the old file


def bench_inputs(default_cases: list[list[Any]]) -> tuple[list[list[Any]], int]:
    """A bench test's cases (``LF_BENCH_CASES``, JSON, else ``default_cases``) and seed
    (``LF_SEED``, else 1)."""
    blob = os.environ.get("LF_BENCH_CASES")
    cases = json.loads(blob) if blob else default_cases
    return cases, env_seed()


@dataclass(frozen=True)
class StreamVariant:
    """One stream variant of a bit-exact bench: idle input cycles and output backpressure on or
    off, and the seeds that make its run reproducible from ``LF_SEED``.

    Variant ``index = offset + 2 * idle + backpressure`` pauses with seed
    ``LF_SEED * SEED_STRIDE + index`` and draws its stimulus from ``rng()``, so every variant
    (and every ``offset`` group, such as the attention bench's causal runs) sees other vectors.
    """

    idle: bool
    backpressure: bool
    offset: int = 0

    @property
    def seed(self) -> int:
        """``LF_SEED`` (default 1)."""
        return env_seed()

    @property
    def index(self) -> int:
        return self.offset + 2 * int(self.idle) + int(self.backpressure)

    @property
    def name(self) -> str:
        """``"idle=on backpressure=off"``: the key of the variant's result entry."""
        return f"idle={_on(self.idle)} backpressure={_on(self.backpressure)}"

    def harness_options(self) -> dict[str, Any]:
        """The :class:`Harness` keyword arguments of the variant."""
        return {"idle": self.idle, "backpressure": self.backpressure,
                "seed": self.seed * SEED_STRIDE + self.index}

    def rng(self) -> np.random.Generator:
        """The generator of the variant's random stimulus."""
        return np.random.default_rng([self.seed, self.index])


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def stream_variant_test(func: Callable[..., Any]) -> Any:
    """``async func(dut, idle, backpressure)`` as a cocotb test run in the four stream
    variants (:class:`StreamVariant`)."""
    return cocotb.test()(cocotb.parametrize(idle=[False, True], backpressure=[False, True])(func))


def steps_per_cycle() -> int:
    """Simulator time steps per clock cycle (transfer times are recorded in steps)."""
    from cocotb.utils import get_sim_steps

    return int(get_sim_steps(CLOCK_NS, "ns"))


class Scoreboard:
    """Base of a bench's scoreboard: output-row counters and the first ``keep`` messages."""

    def __init__(self, ports: dict[str, Any] | None = None, *, keep: int = 5) -> None:
        #: A :class:`~sim.streams.Codec` per stream port of the DUT (``LF_PORTS`` layouts).
        self.codec = {port: Codec(layout) for port, layout in (ports or {}).items()}
        self.rows_out = 0                # output rows received
        self.row_mismatches = 0          # of those, rows that differ from the model
        self.errors: list[str] = []      # the first ``keep`` error messages
        self.keep = keep

    def note(self, message: str) -> None:
        """Keep ``message`` if fewer than ``keep`` are kept (the counts tell the rest)."""
        if len(self.errors) < self.keep:
            self.errors.append(message)


class Harness:
    """Clock, reset and stream drivers around a DUT; the base of each bench's harness.

    Parameters
    ----------
    dut : cocotb handle
        The Verilated top.
    seed : int
        Seeds the idle / backpressure patterns of the drivers.
    pause_p : float
        Probability of an idle (source) or backpressure (sink) cycle in the paused variants.
    record_times : bool
        Drivers record the simulation time of every transfer (benches measure cycles with it).
    """

    def __init__(self, dut: Any, *, seed: int = 0, pause_p: float = 0.25,
                 record_times: bool = False) -> None:
        self.dut = dut
        self.params = runner.params_from_env()
        self.ports = runner.ports_from_env()
        self.seed = seed
        self.pause_p = pause_p
        self.record_times = record_times
        self.loop = EdgeLoop(dut.clk)              # one await per cycle for every driver
        self.drivers: list[StreamSource | StreamSink] = []
        self.clock: Any = None

    def _pauses(self, on: bool) -> Iterator[bool] | None:
        if not on:
            return None
        return pause_generator("random", seed=self.seed * SEED_STRIDE + len(self.drivers) + 1,
                               p=self.pause_p)

    def add_source(self, port: str, on_transfer: Callable[[int], None], *,
                   idle: bool = False) -> StreamSource:
        """A source on stream ``port``; ``on_transfer`` sees every item the DUT accepted."""
        src = StreamSource(self.dut, port, self.dut.clk, self.ports[port], idle=self._pauses(idle),
                           on_transfer=on_transfer, record_times=self.record_times,
                           loop=self.loop)
        self.drivers.append(src)
        return src

    def add_sink(self, port: str, on_transfer: Callable[[int], None], *,
                 backpressure: bool = False) -> StreamSink:
        """A sink on stream ``port``; ``on_transfer`` sees every item the DUT produced."""
        sink = StreamSink(self.dut, port, self.dut.clk, self.ports[port],
                          backpressure=self._pauses(backpressure), on_transfer=on_transfer,
                          record_times=self.record_times, loop=self.loop)
        self.drivers.append(sink)
        return sink

    async def start(self) -> None:
        """Start the clock, reset the DUT, then start every driver."""
        self.clock = await start_clock_and_drivers(self.dut, CLOCK_NS, self.drivers)

    def transfers(self) -> str:
        """Transfers per port so far, for error messages."""
        return ", ".join(f"{d.prefix} {d.count}" for d in self.drivers)

    async def wait_for(self, count: Callable[[], int], want: int, what: str, *,
                       poll_cycles: int = 500) -> None:
        """Wait until ``count()`` reaches ``want``; fail after :data:`STALL_CYCLES` cycles
        without progress, or when more than ``want`` came out 20 cycles later."""
        last_seen, quiet = -1, 0
        while count() < want:
            await Timer(poll_cycles * CLOCK_NS, unit="ns")     # one callback per poll
            if count() == last_seen:
                quiet += poll_cycles
                if quiet >= STALL_CYCLES:
                    raise AssertionError(f"DUT stalled: {count()} of {want} {what} after "
                                         f"{quiet} quiet cycles (transfers: {self.transfers()})")
            else:
                last_seen, quiet = count(), 0
        await ClockCycles(self.dut.clk, 20)
        if count() != want:
            raise AssertionError(f"DUT produced {count() - want} extra {what}")

    def stop(self) -> None:
        for d in self.drivers:
            d.stop()
        self.loop.stop()
        if self.clock is not None:
            self.clock.stop()
