# SPDX-License-Identifier: Apache-2.0
"""The board top (``boards.top``): status LEDs in amaranth.sim, and the linked accelerator on the
ULX3S's USB-UART pins, elaborated (no place and route)."""

from __future__ import annotations

import pytest
from amaranth import ClockDomain, Module, Signal
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from boards.build import BOARD_TOP, board_platform, make_top
from boards.top import STATUS_LEDS, ActivityStretcher, BoardTop
from hw.params import preset


class _Link(wiring.Component):
    """A stand-in design: ``tx`` follows ``rx`` one cycle later; the rest are driven by the test."""

    def __init__(self):
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "frame_error": Out(1), "overrun": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        return m


class _TopHooksOnly:
    """The three platform hooks the board top calls, on plain signals."""

    def __init__(self, n_leds):
        self.rx = Signal(init=1)
        self.tx = Signal()
        self.leds = [Signal(name=f"led{i}") for i in range(n_leds)]

    def add_main_clock(self, m, frequency_hz):
        m.domains.sync = ClockDomain("sync")
        return frequency_hz

    def uart_pins(self, m):
        return self.rx, self.tx

    def status_leds(self, m, count):
        return self.leds[:count]


def _simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("cycles", [1, 5])
def test_activity_stretcher_holds_for_its_cycles(cycles):
    dut = ActivityStretcher(cycles)
    seen = []

    async def bench(ctx):
        for i in [1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]:
            ctx.set(dut.i, i)
            await ctx.tick()
            seen.append(ctx.get(dut.o))

    _simulate(dut, bench)
    # o is high from the cycle after i for `cycles` cycles, restarted by every high i.
    last, model = None, []
    for t, i in enumerate([1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0]):
        last = t if i else last
        model.append(int(last is not None and t - last < cycles))
    assert seen == model
    assert sum(seen) == 2 * cycles + 1


def test_board_top_leds():
    design = _Link()
    top = BoardTop(design, frequency_hz=200.0)         # 50 ms of link activity = 10 cycles
    plat = _TopHooksOnly(4)
    frag = Fragment.get(top, plat)
    trace = []

    async def bench(ctx):
        def leds():
            return {name: ctx.get(pin) for name, pin in zip(STATUS_LEDS, plat.leds)}

        await ctx.tick().repeat(12)                      # tx went high one cycle after reset
        trace.append(leds())
        ctx.set(plat.rx, 0)                              # a start bit
        await ctx.tick()
        ctx.set(plat.rx, 1)
        await ctx.tick().repeat(4)
        trace.append(leds())
        assert ctx.get(plat.tx) == 1                     # the pins reach the design and back
        await ctx.tick().repeat(12)
        trace.append(leds())
        ctx.set(design.busy, 1)
        ctx.set(design.overrun, 1)
        assert ctx.get(plat.leds[STATUS_LEDS.index("busy")]) == 0   # a register drives each pin
        await ctx.tick()
        assert ctx.get(plat.leds[STATUS_LEDS.index("busy")]) == 1
        ctx.set(design.overrun, 0)
        await ctx.tick()
        trace.append(leds())
        ctx.set(design.busy, 0)
        await ctx.tick()
        trace.append(leds())

    _simulate(frag, bench)
    off = {"link": 0, "busy": 0, "error": 0, "idle": 1}
    assert trace == [off, {**off, "link": 1}, off, {"link": 0, "busy": 1, "error": 1, "idle": 0},
                     {**off, "error": 1}]


def test_board_top_shows_fewer_leds_on_a_smaller_board():
    plat = _TopHooksOnly(1)
    top = BoardTop(_Link(), frequency_hz=200.0)
    Fragment.get(top, plat)
    assert set(top.leds) == set(STATUS_LEDS) and len(plat.leds) == 1


def test_board_top_rejects_a_design_without_a_uart():
    class NoUart(wiring.Component):
        def __init__(self):
            super().__init__({"busy": Out(1)})

        def elaborate(self, platform):
            return Module()

    with pytest.raises(ValueError, match="one-bit In port 'rx'"):
        BoardTop(NoUart(), frequency_hz=1e6)
    with pytest.raises(TypeError, match="wiring.Component"):
        BoardTop(object(), frequency_hz=1e6)
    with pytest.raises(ValueError, match="frequency_hz"):
        BoardTop(_Link(), frequency_hz=0)
    with pytest.raises(ValueError, match="unit must be one of .*, top, not 'fft'"):
        make_top("fft", preset("tiny"))


def test_linked_accelerator_on_the_ulx3s_uart_pins():
    system = pytest.importorskip("hw.system")
    params = preset("tiny")
    plat = board_platform("ulx3s-85f")()
    top = make_top(BOARD_TOP, params)                  # what `synth --unit top` builds
    assert isinstance(top, BoardTop) and isinstance(top.design, system.LinkedAccelerator)
    plan = plat.build(top, do_build=False, **plat.synth_overrides())
    il, lpf = plan.files["top.il"], plan.files["top.lpf"]
    assert "EHXPLLL" in il and "module \\top.design.accel\n" in il
    # FT231X: FPGA RX on M1, TX on L4 (amaranth-boards' ULX3S `uart` resource).
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M1";' in lpf
    assert 'LOCATE COMP "uart_0__tx__io" SITE "L4";' in lpf
    for i in range(len(STATUS_LEDS)):
        assert f'LOCATE COMP "led_{i}__io" SITE' in lpf
    assert 'LOCATE COMP "led_4__io"' not in lpf
    assert top.frequency_hz_achieved == pytest.approx(params.target_mhz * 1e6)


def test_colorlight_board_top_gives_the_led_pin_to_the_uart():
    """The Colorlight has no USB-UART: its ``uart`` resource is RX on the button pin (M13) and TX
    on the LED pin (P11), so the board top lights no LED there, while the generic harness
    (no UART) still drives the LED."""
    plat = board_platform("colorlight-5a75b")()
    plan = plat.build(BoardTop(_Link(), frequency_hz=25e6), do_build=False,
                      **plat.synth_overrides())
    lpf = plan.files["top.lpf"]
    assert 'LOCATE COMP "uart_0__rx__io" SITE "M13";' in lpf
    assert 'LOCATE COMP "uart_0__tx__io" SITE "P11";' in lpf
    assert "led_0__io" not in lpf
    plat = board_platform("colorlight-5a75b")()
    m = Module()
    _, leds = plat.harness_pins(m)
    assert len(leds) == 1
