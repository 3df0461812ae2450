# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""The frame engine as the only master of the real accelerator top (hw.accelerator, ``tiny``):
request frames in, replies out, through the memory map, the CSRs and a HALT program (amaranth.sim,
byte level)."""

from __future__ import annotations

import struct

import link_bench as lb
from amaranth.hdl import Module
from amaranth.lib import wiring

from hw import isa
from hw.accelerator import Accelerator
from hw.link import protocol as p
from hw.link.frame import FrameEngine
from hw.params import preset
from sw.driver.framing import encode_request

PARAMS = preset("tiny")
Op, St = p.Opcode, p.Status


def _req(op, seq, *words):
    return encode_request(op, seq, struct.pack(f"<{len(words)}I", *words))


def test_link_drives_the_accelerator_top():
    acc = Accelerator.from_params(PARAMS)
    mmap = acc.memory_map
    csr, act, instr = (mmap.region(n).base for n in ("csr", "act", "instr"))
    engine = FrameEngine(identity=p.identify_payload(PARAMS.digest(), PARAMS.name),
                         ranges=mmap.regions, addr_width=mmap.address_width - 2,
                         timeout_cycles=200,
                         run_csrs=(csr + isa.Csr.ENTRY, csr + isa.Csr.CONTROL,
                                   int(isa.Control.START)))
    top = Module()
    top.submodules.acc = acc
    top.submodules.engine = engine
    wiring.connect(top, engine.bus, acc.host)
    top.d.comb += [engine.busy.eq(acc.busy), engine.status.eq(acc.status)]

    halt = isa.to_bytes([isa.encode(isa.halt())])
    program = list(struct.unpack(f"<{len(halt) // 4}I", halt))
    script = [
        _req(Op.IDENTIFY, 1),
        _req(Op.READ, 2, csr + isa.Csr.DESIGN_ID, 1),
        _req(Op.WRITE, 3, act + 8, 0x11223344, 0x55667788, 0x99AABBCC),
        _req(Op.READ, 4, act + 8, 3),
        _req(Op.WRITE, 5, act + PARAMS.act_depth - 4, 1, 2),          # runs past the region
        _req(Op.WRITE, 6, instr, *program),
        _req(Op.RUN, 7, 0),
        ("wait", 100),
        _req(Op.STATUS, 8),
        _req(Op.PERF, 9),
        _req(Op.READ, 10, csr + isa.Csr.STATUS, 1),
    ]
    got, starts = lb.simulate(top, engine, script, settle=400)
    replies = lb.split_replies(got)
    assert [(op, seq, st) for op, seq, st, _ in replies] == [
        (Op.IDENTIFY, 1, St.OK), (Op.READ, 2, St.OK), (Op.WRITE, 3, St.OK), (Op.READ, 4, St.OK),
        (Op.WRITE, 5, St.BAD_ADDRESS), (Op.WRITE, 6, St.OK), (Op.RUN, 7, St.OK),
        (Op.STATUS, 8, St.OK), (Op.PERF, 9, St.OK), (Op.READ, 10, St.OK)]
    payload = [r[3] for r in replies]
    assert p.parse_identify(payload[0]).design_id == PARAMS.design_id
    assert struct.unpack("<I", payload[1]) == (PARAMS.design_id,)
    assert struct.unpack("<3I", payload[3]) == (0x11223344, 0x55667788, 0x99AABBCC)
    assert starts == [0]
    flags, acc_status = struct.unpack("<2I", payload[7])
    assert flags == p.STATUS_DONE and acc_status == isa.Status.DONE
    run_cycles, runs, ok, failed = struct.unpack("<4I", payload[8])
    assert run_cycles >= 3 and (runs, ok, failed) == (1, 8, 1)
    assert struct.unpack("<I", payload[9]) == (int(isa.Status.DONE),)


def test_linked_accelerator_run_spans_the_accelerators_run():
    """``hw.system.LinkedAccelerator`` (what the boards and the virtual board build): behind the
    host port's register slice the START write reaches the CSRs a few cycles after the link's
    transfer, yet the link's run (``PERF``'s ``run_cycles``, from the start pulse until
    ``busy`` falls) still covers the accelerator's own (``PERF_CYCLES``, START to DONE), and
    ``STATUS`` says DONE. Without the busy bridge (``run_pending``) the link would end its run
    before the accelerator starts."""
    from amaranth.sim import Simulator

    from hw.system import LinkedAccelerator

    dut = LinkedAccelerator(PARAMS, link="stream")
    mmap = Accelerator.from_params(PARAMS).memory_map
    csr, instr = mmap.region("csr").base, mmap.region("instr").base
    halt = isa.to_bytes([isa.encode(isa.halt())])
    program = list(struct.unpack(f"<{len(halt) // 4}I", halt))
    script = [_req(Op.WRITE, 1, instr, *program), _req(Op.RUN, 2, 0), _req(Op.STATUS, 3),
              _req(Op.PERF, 4), _req(Op.READ, 5, csr + isa.Csr.PERF_CYCLES, 1)]
    out = bytearray()

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for request in script:
            for byte in request:
                ctx.set(dut.i_stream.payload, byte)
                ctx.set(dut.i_stream.valid, 1)
                await ctx.tick().until(dut.i_stream.ready)
            ctx.set(dut.i_stream.valid, 0)
            for _ in range(200):                    # the reply, byte by byte
                _, _, valid, payload = await ctx.tick().sample(dut.o_stream.valid,
                                                               dut.o_stream.payload)
                if valid:
                    out.append(payload)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    replies = lb.split_replies(bytes(out))
    assert [(op, seq, st) for op, seq, st, _ in replies] == [
        (Op.WRITE, 1, St.OK), (Op.RUN, 2, St.OK), (Op.STATUS, 3, St.OK), (Op.PERF, 4, St.OK),
        (Op.READ, 5, St.OK)]
    flags, acc_status = struct.unpack("<2I", replies[2][3])
    assert flags == p.STATUS_DONE and acc_status == isa.Status.DONE
    run_cycles, runs, _, _ = struct.unpack("<4I", replies[3][3])
    (acc_cycles,) = struct.unpack("<I", replies[4][3])
    assert runs == 1 and acc_cycles >= 1
    assert run_cycles >= acc_cycles, (run_cycles, acc_cycles)
