# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""The whole gateware link (hw.link.host): request frames as UART bits in, reply frames as
UART bits out, a memory slave on the host port; the replies equal the byte-level model's."""

from __future__ import annotations

import struct

import link_bench as lb
from amaranth.sim import Simulator

from hw.link import protocol as p
from hw.link.host import HostLink
from hw.params import preset
from sw.driver.framing import encode_request

DIVISOR = 6


def test_link_host_bit_level_round_trip():
    dut = HostLink(identity=lb.IDENTITY, ranges=lb.RANGES, addr_width=lb.ADDR_WIDTH,
                   divisor=DIVISOR, timeout_cycles=30 * DIVISOR)
    bench = lb.Bench(comb_read=False, init=lb.memory_init(), dut=dut)
    script = [
        encode_request(p.Opcode.IDENTIFY, 1),
        encode_request(p.Opcode.WRITE, 2, struct.pack("<4I", 0x40, 11, 22, 33)),
        encode_request(p.Opcode.READ, 3, struct.pack("<2I", 0x40, 3)),
        encode_request(p.Opcode.READ, 4, struct.pack("<2I", 0x40, 3))[:-1],   # truncated
        encode_request(p.Opcode.STATUS, 5),
    ]
    expect = lb.run_model(script[:4] + [lb.SILENCE, script[4]])[0]
    got = bytearray()
    finished = []

    async def send(ctx, byte):
        for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(DIVISOR)

    async def host(ctx):
        ctx.set(bench.ready, 1)
        ctx.set(dut.status, 0x1234ABCD)
        for frame in script:
            for byte in frame:
                await send(ctx, byte)
            await ctx.tick().repeat(60 * 10 * DIVISOR)     # the reply (<= 39 bytes) or timeout
        finished.append(1)

    async def listen(ctx):
        # A software UART receiver: count cycles from the start bit's falling edge and sample
        # each bit in its middle.
        count = byte = None
        async for _, _, tx in ctx.tick().sample(dut.tx):
            if finished:
                return
            if count is None:
                if not tx:
                    count, byte = 0, 0
                continue
            count += 1
            bit, phase = divmod(count, DIVISOR)
            if phase == DIVISOR // 2 and 1 <= bit <= 8:
                byte |= tx << (bit - 1)
            elif phase == DIVISOR // 2 and bit == 9:
                assert tx == 1                                # stop bit
                got.append(byte)
                count = None

    sim = Simulator(bench)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_process(listen)
    sim.run()
    assert bytes(got) == expect
    statuses = [r[2] for r in lb.split_replies(bytes(got))]
    assert statuses == [p.Status.OK] * 3 + [p.Status.TIMEOUT, p.Status.OK]
    assert lb.split_replies(bytes(got))[2][3] == struct.pack("<3I", 11, 22, 33)


def test_link_host_from_params():
    params = preset("tiny")
    link = HostLink.from_params(params, ranges=[(0, 0x100, True)], addr_width=8)
    assert link.divisor == round(params.target_mhz * 1e6 / params.baud)
    assert link.timeout_cycles == p.timeout_cycles(params.target_mhz * 1e6, params.baud)
