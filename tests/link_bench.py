# SPDX-License-Identifier: Apache-2.0
"""A frame-engine bench for amaranth.sim: the engine, a memory slave on its host port, and a
testbench that feeds request bytes (with silences) and collects the reply bytes. Shared by
``test_link_frame.py``; also builds request scripts of valid, corrupted and garbage frames."""

from __future__ import annotations

import random
import struct

from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from hw.link import protocol as p
from hw.link.frame import FrameEngine
from sw.driver.framing import encode_request
from sw.driver.model import FrameEngineModel

ADDR_WIDTH = 9                       # 512 words: the whole space is backed, so a stray write shows
MEM_WORDS = 1 << ADDR_WIDTH
RANGES = [(0x000, 0x400, True), (0x600, 0x100, False), (0x7F0, 0x10, True)]
TIMEOUT = 40
IDENTITY = p.identify_payload("0123456789abcdef", "bench")
#: PERF's run cycles of a RUN whose accelerator never raises busy (start cycle, one armed cycle).
IDLE_RUN_CYCLES = 2
SILENCE = "silence"
#: RUN's CSR writes in the tests that use them: ENTRY and CONTROL words of the last window.
RUN_CSRS = (0x7F0, 0x7F4, 1)


def memory_init(seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(32) for _ in range(MEM_WORDS)]


class Bench(Elaboratable):
    """Engine (or ``dut``, anything with its ``bus``) + memory slave (sync or comb read) with a
    ready signal the testbench drives."""

    def __init__(self, *, comb_read: bool, init: list[int], dut=None, run_csrs=None):
        self.engine = dut if dut is not None else FrameEngine(
            identity=IDENTITY, ranges=RANGES, addr_width=ADDR_WIDTH, timeout_cycles=TIMEOUT,
            run_csrs=run_csrs)
        self.mem = Memory(shape=32, depth=MEM_WORDS, init=init)
        self.ready = Signal()
        self.comb_read = comb_read

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        m.submodules.mem = self.mem
        bus = e.bus
        wp = self.mem.write_port(granularity=8)
        rp = self.mem.read_port(domain="comb" if self.comb_read else "sync")
        fire = bus.valid & self.ready
        m.d.comb += [bus.ready.eq(self.ready), wp.addr.eq(bus.addr), wp.data.eq(bus.w_data),
                     wp.en.eq(Mux(fire & bus.write, bus.w_en, 0)), rp.addr.eq(bus.addr),
                     bus.r_data.eq(rp.data)]
        if self.comb_read:
            m.d.comb += bus.r_valid.eq(fire & ~bus.write)
        else:
            m.d.sync += bus.r_valid.eq(fire & ~bus.write)
        return m


def simulate(top, engine, script, *, seed=0, per_cycle=None, finish=None, settle=1200):
    """Feed ``script`` (bytes, SILENCE, ("busy", 0/1) or ("wait", cycles)) to ``engine``
    inside ``top``; collect its reply bytes (with random sink backpressure).

    ``per_cycle(ctx, start, entry, soft_reset)`` runs once per cycle (a bus slave's or an
    accelerator's stand-in); ``finish(ctx)`` runs ``settle`` cycles after the last byte.
    Returns (reply bytes, [entry of each start pulse]).
    """
    e = engine
    rng = random.Random(seed)
    out = bytearray()
    starts = []
    done = []

    async def feeder(ctx):
        for item in script:
            if item == SILENCE:
                await ctx.tick().repeat(e.timeout_cycles + 20)
            elif isinstance(item, tuple) and item[0] == "wait":
                await ctx.tick().repeat(item[1])
            elif isinstance(item, tuple):
                # After the previous request's reply (ready again), as the model sees it.
                await ctx.tick()
                await ctx.tick().until(e.i_stream.ready)
                ctx.set(e.busy, item[1])
            else:
                for byte in item:
                    ctx.set(e.i_stream.payload, byte)
                    ctx.set(e.i_stream.valid, 1)
                    await ctx.tick().until(e.i_stream.ready)
                    ctx.set(e.i_stream.valid, 0)
                    if rng.random() < 0.05:
                        await ctx.tick().repeat(rng.randrange(1, 5))
        await ctx.tick().repeat(settle)
        if finish is not None:
            finish(ctx)
        done.append(1)

    async def sink(ctx):
        sink_rng = random.Random(seed + 1)
        async for _, _, valid, ready, payload, start, entry, soft_reset in ctx.tick().sample(
                e.o_stream.valid, e.o_stream.ready, e.o_stream.payload, e.start, e.entry,
                e.soft_reset):
            if done:
                return
            if valid and ready:
                out.append(payload)
            if start:
                starts.append(entry)
            if per_cycle is not None:
                per_cycle(ctx, start, entry, soft_reset)
            ctx.set(e.o_stream.ready, sink_rng.random() < 0.8)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_process(sink)
    sim.run()
    return bytes(out), starts


def run_bench(script, *, comb_read=False, seed=0, status_word=0x1234ABCD, run_busy=0,
              run_csrs=None):
    """:func:`simulate` the engine with a memory slave (random ``ready``). With ``run_busy``, a
    fake accelerator holds ``busy`` for that many cycles after each start pulse. Returns
    (reply bytes, final memory words, [entry of each start pulse])."""
    bench = Bench(comb_read=comb_read, init=memory_init(), run_csrs=run_csrs)
    e = bench.engine
    slave_rng = random.Random(seed + 2)
    busy_left = [0]
    final = {}

    def per_cycle(ctx, start, entry, soft_reset):
        ctx.set(e.status, status_word)
        if start:
            busy_left[0] = run_busy
        if soft_reset:
            busy_left[0] = 0                            # the soft reset ends a run
        if run_busy:
            ctx.set(e.busy, busy_left[0] > 0)
            busy_left[0] = max(0, busy_left[0] - 1)
        ctx.set(bench.ready, slave_rng.random() < 0.7)

    def finish(ctx):
        final["mem"] = [ctx.get(bench.mem.data[i]) for i in range(MEM_WORDS)]

    out, starts = simulate(bench, e, script, seed=seed, per_cycle=per_cycle, finish=finish)
    return out, final["mem"], starts


def run_model(script, *, status_word=0x1234ABCD, run_csrs=None):
    """The same script through :class:`FrameEngineModel`; returns (replies, memory words)."""
    init = memory_init()
    model = FrameEngineModel(IDENTITY, RANGES, memory=dict(enumerate(init)),
                             on_run=lambda entry, mem: IDLE_RUN_CYCLES, run_csrs=run_csrs)
    model.acc_status = status_word
    out = bytearray()
    for item in script:
        if item == SILENCE:
            out += model.silence()
        elif isinstance(item, tuple):
            if item[0] == "busy":
                model.busy = bool(item[1])
        else:
            out += model.feed(item)
    return bytes(out), [model.memory.get(i, 0) for i in range(MEM_WORDS)]


def split_replies(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Split concatenated reply frames into (opcode, seq, status, payload), checking CRCs."""
    out = []
    i = 0
    while i < len(data):
        assert data[i] == p.SOF_REPLY, f"byte {i}: {data[i:].hex()}"
        length = data[i + 4]
        frame = data[i:i + p.REPLY_HEADER_BYTES + length + p.CRC_BYTES]
        assert p.crc16(frame[1:]) == 0
        out.append((frame[1], frame[2], frame[3], bytes(frame[5:-2])))
        i += len(frame)
    return out


# -- request scripts ------------------------------------------------------------------------------

def _words(values) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def valid_frame(rng: random.Random, seq: int) -> bytes:
    kind = rng.choice(["IDENTIFY", "STATUS", "PERF", "WRITE", "WRITE", "READ", "READ", "RUN",
                       "STRIDED", "WAIT"])
    if kind == "STRIDED":
        base, size, _ = rng.choice(RANGES)
        stride = rng.choice([1, 2, 3, 4, 16, 255])
        n = rng.randint(1, min(p.MAX_WORDS, (size // 4 - 1) // stride + 1, 12))
        span = p.read_span(n, stride)
        addr = base + 4 * rng.randrange(size // 4 - span + 1)
        return encode_request(p.Opcode.READ, seq, _words([addr, n, stride]))
    op = p.Opcode[kind]
    if op == p.Opcode.WRITE:
        base, size, _ = rng.choice([r for r in RANGES if r[2]])
        n = rng.randint(1, min(p.MAX_WORDS, size // 4, 12 if rng.random() < 0.8 else 62))
        addr = base + 4 * rng.randrange(size // 4 - n + 1)
        payload = _words([addr] + [rng.getrandbits(32) for _ in range(n)])
    elif op == p.Opcode.READ:
        base, size, _ = rng.choice(RANGES)
        n = rng.randint(1, min(p.MAX_WORDS, size // 4, 12))
        payload = _words([base + 4 * rng.randrange(size // 4 - n + 1), n])
    elif op == p.Opcode.RUN:
        payload = _words([rng.getrandbits(32)])
    elif op == p.Opcode.WAIT:
        payload = _words([rng.choice([0, 1, 7, 30])])
    else:
        payload = b""
    return encode_request(op, seq, payload)


def bad_frame(rng: random.Random, seq: int) -> list:
    """One malformed request (with the silence that flushes it, where it needs one)."""
    kind = rng.choice(["crc", "opcode", "length", "read_n", "stride", "address", "readonly",
                       "truncated", "garbage"])
    if kind == "crc":
        frame = bytearray(valid_frame(rng, seq))
        i = rng.randrange(4, len(frame))          # payload or CRC: the length stays right
        frame[i] ^= 1 << rng.randrange(8)
        return [bytes(frame)]
    if kind == "opcode":
        return [encode_request(rng.choice([0x00, 0x09, 0x7F, 0xFF]), seq, b"")]
    if kind == "length":
        op, payload = rng.choice([(p.Opcode.IDENTIFY, b"\0"), (p.Opcode.WRITE, bytes(6)),
                                  (p.Opcode.WRITE, bytes(4)), (p.Opcode.RUN, bytes(8)),
                                  (p.Opcode.WAIT, bytes(8)), (p.Opcode.READ, bytes(16)),
                                  (p.Opcode.WRITE, bytes(p.MAX_LENGTH))])
        return [encode_request(op, seq, payload)]
    if kind == "read_n":
        return [encode_request(p.Opcode.READ, seq, _words([0, rng.choice([0, 63, 1 << 31])]))]
    if kind == "stride":
        # A stride out of 1..MAX_STRIDE (BAD_LENGTH), or one that leaves the window.
        stride, n = rng.choice([(0, 1), (256, 2), (1 << 31, 2), (0x40, 2), (255, 3)])
        return [encode_request(p.Opcode.READ, seq, _words([0x3F0, n, stride]))]
    if kind == "address":
        addr = rng.choice([0x2, 0x3FC, 0x400, 0x5FC, 0x800, 0xFFFFFFFC, 0x7FC])
        n = 2 if addr in (0x3FC, 0x7FC) else 1
        op = rng.choice([p.Opcode.READ, p.Opcode.WRITE])
        payload = _words([addr, n]) if op == p.Opcode.READ else _words([addr] + [7] * n)
        return [encode_request(op, seq, payload)]
    if kind == "readonly":
        return [encode_request(p.Opcode.WRITE, seq, _words([0x600, 0xDEAD]))]
    if kind == "truncated":
        frame = valid_frame(rng, seq)
        return [frame[:rng.randrange(1, len(frame))], SILENCE]
    return [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 30))), SILENCE]


def random_script(seed: int, frames: int) -> list:
    rng = random.Random(seed)
    script: list = []
    busy = 0
    for i in range(frames):
        if rng.random() < 0.05:
            busy ^= 1                           # RUN and WRITE are refused while busy
            script.append(("busy", busy))
        if rng.random() < 0.6:
            script.append(valid_frame(rng, i & 0xFF))
        else:
            script += bad_frame(rng, i & 0xFF)
    return script + [("busy", 0)]
