# SPDX-License-Identifier: Apache-2.0
"""``hw.scratchpad.Scratchpad`` in amaranth.sim: bytes written through one port read back
through the other, byte enables and masks honoured, out-of-range addresses reported."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from hostbus import HostDriver

from hw.scratchpad import Scratchpad


def _run(dut, bench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


async def _unit_read(ctx, port, addr: int) -> tuple[int, int]:
    """One unit read: (its word, ``Scratchpad.latency`` cycles later; its ``r_error``, the cycle
    after the read)."""
    ctx.set(port.r_en, 1)
    ctx.set(port.r_addr, addr)
    await ctx.tick()
    ctx.set(port.r_en, 0)
    error = ctx.get(port.r_error)
    assert ctx.get(port.w_error) == 0           # a read never raises the write's error
    for _ in range(Scratchpad.latency - 1):
        await ctx.tick()
        assert ctx.get(port.r_error) == 0       # one cycle, for the one read
    return ctx.get(port.r_data), error


async def _unit_write(ctx, port, addr: int, word: int, mask: int) -> int:
    """One unit write: its ``w_error``, the cycle after the write."""
    ctx.set(port.w_en, 1)
    ctx.set(port.w_addr, addr)
    ctx.set(port.w_data, word)
    ctx.set(port.w_mask, mask)
    await ctx.tick()
    ctx.set(port.w_en, 0)
    error = ctx.get(port.w_error)
    assert ctx.get(port.r_error) == 0           # a write never raises the read's error
    return error


@pytest.mark.parametrize("size,unit_bytes", [(64, 4), (64, 8), (96, 3), (32, 1), (128, 32),
                                             (216, 18), (144, 12)])
def test_scratchpad_host_and_unit_views_agree(size, unit_bytes):
    """Also for rows of 3 and 9 host words (unit_bytes 3 and 12, 18), whose host addresses go
    through the sequential divider; the host reads them back in a random order too."""
    dut = Scratchpad(size=size, unit_bytes=unit_bytes)
    rng = np.random.default_rng(size + unit_bytes)
    shadow = bytearray(size)
    checked = {"unit": 0, "host": 0, "shuffled": 0, "errors": 0}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        # Host writes (random byte enables), unit reads.
        for h in range(size // 4):
            value, en = int(rng.integers(0, 1 << 32)), int(rng.integers(0, 16))
            await host.write(h, value, en)
            for b in range(4):
                if en >> b & 1:
                    shadow[4 * h + b] = value >> (8 * b) & 0xFF
        for u in range(dut.unit_words):
            word, error = await _unit_read(ctx, dut.unit, u)
            chunk = shadow[u * unit_bytes:(u + 1) * unit_bytes]
            assert error == 0
            assert word.to_bytes(unit_bytes, "little")[:len(chunk)] == chunk
            checked["unit"] += 1
        # Unit writes (random masks), host reads.
        for u in rng.permutation(dut.unit_words):
            word = int(rng.integers(0, 1 << 62)) % (1 << (8 * unit_bytes))
            mask = int(rng.integers(0, 1 << unit_bytes))
            assert await _unit_write(ctx, dut.unit, int(u), word, mask) == 0
            for b in range(unit_bytes):
                if mask >> b & 1 and u * unit_bytes + b < size:
                    shadow[u * unit_bytes + b] = word >> (8 * b) & 0xFF
        for h in range(size // 4):
            assert await host.read(h) == int.from_bytes(shadow[4 * h:4 * h + 4], "little")
            checked["host"] += 1
        for h in rng.permutation(size // 4):
            h = int(h)
            assert await host.read(h) == int.from_bytes(shadow[4 * h:4 * h + 4], "little")
            checked["shuffled"] += 1
        # Out of range: reported, dropped, nothing else changes.
        before = bytes(shadow)
        assert await _unit_write(ctx, dut.unit, dut.unit_words, (1 << 8 * unit_bytes) - 1,
                                 (1 << unit_bytes) - 1) == 1
        word, error = await _unit_read(ctx, dut.unit, dut.unit_words)
        assert (word, error) == (0, 1)
        await host.write(size // 4, 0xFFFFFFFF)
        assert await host.read(size // 4) == 0
        assert await host.read_bytes(0, size) == before
        checked["errors"] += 1

    _run(dut, bench)
    assert checked == {"unit": dut.unit_words, "host": size // 4, "shuffled": size // 4,
                       "errors": 1}


@pytest.mark.parametrize("host_when_idle", [False, True])
def test_scratchpad_unit_side_has_priority(host_when_idle):
    """A unit read or write blocks the host in the cycle after it, when it reaches the RAM's
    request registers from the issue stage (with ``host_when_idle`` also while ``unit_idle``
    has already risen); the cycle of the request itself leaves the host ready."""
    dut = Scratchpad(size=64, unit_bytes=4, host_when_idle=host_when_idle)
    checked = []

    async def bench(ctx):
        if host_when_idle:
            ctx.set(dut.unit_idle, 1)
        ctx.set(dut.host.valid, 1)
        ctx.set(dut.host.write, 1)
        for request in (dut.unit.r_en, dut.unit.w_en):
            ctx.set(request, 1)
            assert ctx.get(dut.host.ready) == 1
            await ctx.tick()
            ctx.set(request, 0)
            assert ctx.get(dut.host.ready) == 0
            await ctx.tick()
            assert ctx.get(dut.host.ready) == 1
            checked.append(request)
        if host_when_idle:
            ctx.set(dut.unit_idle, 0)
            assert ctx.get(dut.host.ready) == 0

    _run(dut, bench)
    assert len(checked) == 2


@pytest.mark.parametrize("host_when_idle", [False, True])
def test_scratchpad_host_waits_for_its_split(host_when_idle):
    """With 9 host words a row (unit_bytes 18), a host request is ready only once the divider
    has split its address, ``ConstDivider.latency`` cycles after it arrives, and again for the
    next request: never with the previous request's row."""
    dut = Scratchpad(size=216, unit_bytes=18, host_when_idle=host_when_idle)
    waits = []

    async def bench(ctx):
        if host_when_idle:
            ctx.set(dut.unit_idle, 1)
        for addr in (40, 41, 3):
            ctx.set(dut.host.valid, 1)
            ctx.set(dut.host.addr, addr)
            cycles = 0
            while not ctx.get(dut.host.ready):
                await ctx.tick()
                cycles += 1
                assert cycles < 40
            waits.append(cycles)
            await ctx.tick()                      # the transfer
            ctx.set(dut.host.valid, 0)
            await ctx.tick().repeat(3)

    _run(dut, bench)
    assert waits == [len(dut.host.addr) + 1] * 3           # ConstDivider.latency


def test_scratchpad_host_write_beside_a_unit_request_lands():
    """A host write granted in the cycle of a unit write to another word lands, and so does
    the unit's (a cycle later, from the issue stage); the unit's next read sees both."""
    dut = Scratchpad(size=64, unit_bytes=4)

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        ctx.set(dut.unit.w_en, 1)
        ctx.set(dut.unit.w_addr, 3)
        ctx.set(dut.unit.w_data, 0x44332211)
        ctx.set(dut.unit.w_mask, 0xF)
        ctx.set(dut.host.valid, 1)
        ctx.set(dut.host.write, 1)
        ctx.set(dut.host.addr, 5)
        ctx.set(dut.host.w_data, 0xDDCCBBAA)
        ctx.set(dut.host.w_en, 0xF)
        assert ctx.get(dut.host.ready) == 1
        await ctx.tick()
        ctx.set(dut.unit.w_en, 0)
        ctx.set(dut.host.valid, 0)
        await ctx.tick()
        assert await host.read(3) == 0x44332211
        assert await host.read(5) == 0xDDCCBBAA
        assert (await _unit_read(ctx, dut.unit, 5)) == (0xDDCCBBAA, 0)

    _run(dut, bench)


def test_scratchpad_rejects_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 4"):
        Scratchpad(size=30, unit_bytes=4)
    with pytest.raises(TypeError):
        Scratchpad(size=64, unit_bytes=2.0)
    with pytest.raises(ValueError):
        Scratchpad(size=64, unit_bytes=0)
