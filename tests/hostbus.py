# SPDX-License-Identifier: Apache-2.0
"""A host-bus master for amaranth.sim testbenches: word reads and writes on a
``hw.bus.HostBus`` port, as the link's frame engine drives it (one request at a time)."""

from __future__ import annotations

MAX_WAIT = 100_000


class HostDriver:
    """Drive ``port`` (the slave's ``In(HostBus.Signature(...))``) from a testbench ``ctx``.

    ``waits`` counts the cycles spent waiting for ``ready`` and ``r_valid``: the bound the
    slave promises is asserted (``MAX_WAIT``), so a hung slave fails the test instead of
    spinning.
    """

    def __init__(self, ctx, port) -> None:
        self.ctx = ctx
        self.port = port
        self.waits = 0

    async def _request(self, addr: int, write: bool, data: int = 0, en: int = 0xF) -> None:
        ctx, p = self.ctx, self.port
        ctx.set(p.addr, addr)
        ctx.set(p.write, int(write))
        ctx.set(p.w_data, data & 0xFFFFFFFF)
        ctx.set(p.w_en, en)
        ctx.set(p.valid, 1)
        for _ in range(MAX_WAIT):
            if ctx.get(p.ready):
                break
            await ctx.tick()
            self.waits += 1
        else:
            raise AssertionError(f"host bus: no ready for address {addr:#x}")

    async def write(self, addr: int, data: int, en: int = 0xF) -> None:
        await self._request(addr, True, data, en)
        await self.ctx.tick()
        self.ctx.set(self.port.valid, 0)

    async def read(self, addr: int) -> int:
        ctx, p = self.ctx, self.port
        await self._request(addr, False)
        for _ in range(MAX_WAIT):
            if ctx.get(p.r_valid):
                value = ctx.get(p.r_data)
                await ctx.tick()
                ctx.set(p.valid, 0)
                return value
            await ctx.tick()
            ctx.set(p.valid, 0)
            self.waits += 1
        raise AssertionError(f"host bus: no read data for address {addr:#x}")

    async def write_bytes(self, addr: int, data: bytes) -> None:
        """Little-endian words from byte-aligned ``data`` at word address ``addr``."""
        data = bytes(data) + bytes(-len(data) % 4)
        for i in range(0, len(data), 4):
            await self.write(addr + i // 4, int.from_bytes(data[i:i + 4], "little"))

    async def read_bytes(self, addr: int, size: int) -> bytes:
        out = bytearray()
        for i in range(-(-size // 4)):
            out += (await self.read(addr + i)).to_bytes(4, "little")
        return bytes(out[:size])


# -- the accelerator top: memory images, programs, status -------------------------------------

def word_address(image, region: str, offset: int = 0) -> int:
    """Host word address of byte ``offset`` of ``region`` (``hw.isa.memory_map``)."""
    return (image.map.region(region).base + offset) >> 2


async def write_image(host: HostDriver, image, regions=("instr", "act", "wgt", "quant", "lut"),
                      *, skip_zero: bool = True) -> int:
    """Write ``image``'s scratchpads through the host port; words that are 0 are skipped with
    ``skip_zero`` (simulated block RAM starts at 0). Returns the words written."""
    written = 0
    for region in regions:
        data = bytes(image.regions[region])
        base = word_address(image, region)
        for i in range(0, len(data), 4):
            word = int.from_bytes(data[i:i + 4], "little")
            if word or not skip_zero:
                await host.write(base + i // 4, word)
                written += 1
    return written


async def read_region(host: HostDriver, image, region: str, offset: int = 0,
                      size: int | None = None) -> bytes:
    size = len(image.regions[region]) - offset if size is None else size
    return await host.read_bytes(word_address(image, region, offset), size)


async def run_program(host: HostDriver, image, entry: int = 0, *,
                      max_polls: int = 20_000) -> int:
    """Write ``ENTRY``, ``CONTROL.START``, poll ``STATUS`` until not BUSY; returns STATUS."""
    from hw.isa import Control, Csr, Status

    await host.write(word_address(image, "csr", Csr.ENTRY), entry)
    await host.write(word_address(image, "csr", Csr.CONTROL), int(Control.START))
    for _ in range(max_polls):
        status = await host.read(word_address(image, "csr", Csr.STATUS))
        if not status & Status.BUSY:
            return status
    raise AssertionError("the program did not end")


async def read_csr(host: HostDriver, image, csr) -> int:
    return await host.read(word_address(image, "csr", csr))
