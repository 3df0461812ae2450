# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of the UART PHY (hw.link.uart)."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from hw.link.uart import UART, UARTReceiver, UARTTransmitter

DIVISOR = 8


def _loopback(divisor):
    m = Module()
    m.submodules.uart = uart = UART(divisor)
    m.d.comb += uart.rx.eq(uart.tx)
    return m, uart


def test_uart_loopback_random_bytes_with_gaps():
    m, uart = _loopback(DIVISOR)
    rng = random.Random(1)
    sent = [rng.randrange(256) for _ in range(60)] + [0x00, 0xFF, 0x55, 0xAA]
    got = []
    errors = []

    async def source(ctx):
        for byte in sent:
            if rng.random() < 0.3:
                await ctx.tick().repeat(rng.randrange(1, 40))
            ctx.set(uart.i_stream.payload, byte)
            ctx.set(uart.i_stream.valid, 1)
            await ctx.tick().until(uart.i_stream.ready)
            ctx.set(uart.i_stream.valid, 0)

    async def sink(ctx):
        ctx.set(uart.o_stream.ready, 1)
        async for _, _, valid, payload, ferr, ovr in ctx.tick().sample(
                uart.o_stream.valid, uart.o_stream.payload, uart.frame_error, uart.overrun):
            if valid:
                got.append(payload)
            if ferr or ovr:
                errors.append((ferr, ovr))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_process(sink)
    sim.run_until(1e-6 * (len(sent) * (10 * DIVISOR + 2) + 60 * 40 + 200))
    assert got == sent
    assert len(got) == 64
    assert errors == []


def _drive_rx(dut, divisor):
    """Helpers that drive ``dut.rx`` bit by bit from a testbench."""

    async def byte(ctx, value, *, stop=1):
        for bit in [0] + [(value >> i) & 1 for i in range(8)] + [stop]:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(divisor)
        ctx.set(dut.rx, 1)

    return byte


def _run_rx(script, divisor=DIVISOR, cycles=2000):
    dut = UARTReceiver(divisor)
    got, ferrs = [], []
    byte = _drive_rx(dut, divisor)

    async def bench(ctx):
        await script(ctx, dut, byte)

    async def sink(ctx):
        ctx.set(dut.o_stream.ready, 1)
        async for _, _, valid, payload, ferr in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.payload, dut.frame_error):
            if valid:
                got.append(payload)
            if ferr:
                ferrs.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(sink)
    sim.run_until(cycles * 1e-6)
    return got, len(ferrs)


def test_uart_rx_framing_error_then_recovers():
    async def script(ctx, dut, byte):
        await ctx.tick().repeat(5)
        await byte(ctx, 0x3C, stop=0)           # stop bit 0: dropped, flagged
        ctx.set(dut.rx, 0)                      # and the line stays low a while (a break)
        await ctx.tick().repeat(3 * DIVISOR)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * DIVISOR)
        await byte(ctx, 0xA5)
        await byte(ctx, 0x01)

    got, ferrs = _run_rx(script)
    assert ferrs == 1
    assert got == [0xA5, 0x01]


@pytest.mark.parametrize("width", [1, DIVISOR // 2 - 1])
def test_uart_rx_rejects_glitch_shorter_than_half_a_bit(width):
    async def script(ctx, dut, byte):
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)
        await ctx.tick().repeat(width)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * DIVISOR)
        await byte(ctx, 0x96)

    got, ferrs = _run_rx(script)
    assert (got, ferrs) == ([0x96], 0)


def test_uart_rx_overrun_drops_the_new_byte():
    dut = UARTReceiver(DIVISOR)
    byte = _drive_rx(dut, DIVISOR)
    seen = {}

    async def bench(ctx):
        await byte(ctx, 0x11)
        await byte(ctx, 0x22)                  # nobody takes 0x11: 0x22 overruns
        await ctx.tick().repeat(DIVISOR)
        seen["payload"] = ctx.get(dut.o_stream.payload)
        seen["valid"] = ctx.get(dut.o_stream.valid)

    async def watch(ctx):
        seen["overrun"] = 0
        async for _, _, ovr in ctx.tick().sample(dut.overrun):
            seen["overrun"] += ovr

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(watch)
    sim.run()
    assert seen == {"payload": 0x11, "valid": 1, "overrun": 1}


def test_uart_tx_bit_timing():
    dut = UARTTransmitter(DIVISOR)
    line = []

    async def bench(ctx):
        ctx.set(dut.i_stream.payload, 0xC3)
        ctx.set(dut.i_stream.valid, 1)
        await ctx.tick()
        ctx.set(dut.i_stream.valid, 0)
        for _ in range(10 * DIVISOR + 4):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    bits = [0] + [(0xC3 >> i) & 1 for i in range(8)] + [1]
    assert line[:10 * DIVISOR] == [b for b in bits for _ in range(DIVISOR)]
    assert line[10 * DIVISOR:] == [1] * 4


def test_uart_divisor_checked():
    with pytest.raises(ValueError, match="divisor"):
        UART(3)
    with pytest.raises(TypeError, match="divisor"):
        UART(8.0)
