# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests (amaranth.sim) of the frame engine (hw.link.frame) against a memory slave, and
the differential test: the same bytes into the gateware and into the byte-level model
(sw.driver.model) give identical replies and identical memory."""

from __future__ import annotations

import collections
import random
import struct

import link_bench as lb
import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from hw.link import protocol as p
from hw.link.frame import FrameEngine, crc16_next
from sw.driver.framing import encode_request

Op, St = p.Opcode, p.Status


def _req(op, seq, *words):
    return encode_request(op, seq, struct.pack(f"<{len(words)}I", *words))


def _statuses(replies):
    return [(op, seq, status) for op, seq, status, _ in replies]


def test_frame_crc16_next_matches_binascii():
    crc, byte, out = Signal(16), Signal(8), Signal(16)
    rng = random.Random(3)
    cases = [(0xFFFF, 0), (0, 0xFF), (0x8000, 0x80)]
    cases += [(rng.getrandbits(16), rng.getrandbits(8)) for _ in range(200)]
    got = []

    async def bench(ctx):
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            got.append(ctx.get(out))

    m = Module()
    m.d.comb += out.eq(crc16_next(crc, byte))
    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [p.crc16(bytes([b]), c) for c, b in cases]
    assert len(got) == 203


@pytest.mark.parametrize("comb_read,run_csrs", [(False, None), (True, None),
                                                (False, lb.RUN_CSRS)],
                         ids=["sync_read", "comb_read", "run_csrs"])
@pytest.mark.parametrize("seed", [0, 1])
def test_frame_differential_random_frames(seed, comb_read, run_csrs):
    script = lb.random_script(seed, 120)
    got, mem, starts = lb.run_bench(script, comb_read=comb_read, seed=seed, run_csrs=run_csrs)
    want, want_mem = lb.run_model(script, run_csrs=run_csrs)
    replies = lb.split_replies(got)
    assert got == want
    assert mem == want_mem                       # so no write outside a valid WRITE's range
    assert len(replies) >= 100
    kinds = collections.Counter(status for _, _, status, _ in replies)
    assert set(kinds) == set(St), kinds          # every status occurred
    ok_runs = sum(1 for op, _, st, _ in replies if op == Op.RUN and st == St.OK)
    assert len(starts) == ok_runs


def test_frame_each_error_kind_and_no_write():
    script = [
        _req(Op.WRITE, 1, 0x10, 0xAAAA5555),
        bytes([p.SOF_REQUEST]) + _req(Op.WRITE, 2, 0x20, 1)[1:-1] + b"\x00",   # bad CRC
        _req(0x42, 3),                                                       # unknown opcode
        _req(Op.STATUS, 4, 0),                                               # STATUS + 4 bytes
        _req(Op.READ, 5, 0x0, 0),                                            # READ n = 0
        _req(Op.READ, 6, 0x0, p.MAX_WORDS + 1),
        _req(Op.WRITE, 7, 0x3FC, 1, 2),                                      # crosses the end
        _req(Op.WRITE, 8, 0x602, 1),                                         # unaligned
        _req(Op.WRITE, 9, 0x600, 1),                                         # read-only
        _req(Op.READ, 10, 0x6FC, 2),                                         # crosses the end
        ("busy", 1), _req(Op.RUN, 11, 0), _req(Op.WRITE, 12, 0x10, 3), _req(Op.READ, 13, 0x10, 1),
        ("busy", 0),
        _req(Op.WRITE, 14, 0x20, 7)[:6], lb.SILENCE,                          # truncated
        _req(Op.READ, 15, 0x10, 1),
    ]
    got, mem, starts = lb.run_bench(script)
    replies = lb.split_replies(got)
    assert _statuses(replies) == [
        (Op.WRITE, 1, St.OK), (Op.WRITE, 2, St.BAD_CRC), (0x42, 3, St.BAD_OPCODE),
        (Op.STATUS, 4, St.BAD_LENGTH), (Op.READ, 5, St.BAD_LENGTH), (Op.READ, 6, St.BAD_LENGTH),
        (Op.WRITE, 7, St.BAD_ADDRESS), (Op.WRITE, 8, St.BAD_ADDRESS),
        (Op.WRITE, 9, St.BAD_ADDRESS), (Op.READ, 10, St.BAD_ADDRESS),
        (Op.RUN, 11, St.BUSY), (Op.WRITE, 12, St.BUSY), (Op.READ, 13, St.OK),
        (Op.WRITE, 14, St.TIMEOUT), (Op.READ, 15, St.OK)]
    assert replies[-1][3] == struct.pack("<I", 0xAAAA5555)
    assert starts == []
    init = lb.memory_init()
    changed = [i for i in range(lb.MEM_WORDS) if mem[i] != init[i]]
    assert changed == [0x10 // 4]


def test_frame_resynchronises_after_garbage():
    garbage = bytes(b for b in random.Random(5).randbytes(200) if b != p.SOF_REQUEST)
    script = [garbage, _req(Op.IDENTIFY, 1),
              bytes([p.SOF_REQUEST, 0x99]), lb.SILENCE, _req(Op.IDENTIFY, 2)]
    got, _, _ = lb.run_bench(script)
    replies = lb.split_replies(got)
    assert _statuses(replies) == [(Op.IDENTIFY, 1, St.OK), (0x99, 0, St.TIMEOUT),
                                  (Op.IDENTIFY, 2, St.OK)]
    assert replies[0][3] == lb.IDENTITY
    assert len(garbage) > 190


def test_frame_run_busy_done_and_perf():
    busy = 300
    script = [_req(Op.RUN, 1, 0x1234), _req(Op.STATUS, 2), _req(Op.RUN, 3, 0),
              ("wait", busy + 50), _req(Op.STATUS, 4), _req(Op.PERF, 5),
              _req(Op.RESET, 6), _req(Op.PERF, 7)]
    got, _, starts = lb.run_bench(script, run_busy=busy, status_word=0xC0FFEE)
    replies = lb.split_replies(got)
    assert _statuses(replies) == [(Op.RUN, 1, St.OK), (Op.STATUS, 2, St.OK), (Op.RUN, 3, St.BUSY),
                                  (Op.STATUS, 4, St.OK), (Op.PERF, 5, St.OK),
                                  (Op.RESET, 6, St.OK), (Op.PERF, 7, St.OK)]
    assert starts == [0x1234]
    assert struct.unpack("<2I", replies[1][3]) == (p.STATUS_BUSY, 0xC0FFEE)
    assert struct.unpack("<2I", replies[3][3]) == (p.STATUS_DONE, 0xC0FFEE)
    # Run cycles: the start cycle, `busy` cycles, and the cycle that sees busy low.
    assert struct.unpack("<4I", replies[4][3]) == (busy + 2, 1, 4, 1)
    assert struct.unpack("<4I", replies[6][3]) == (0, 0, 2, 0)


def test_frame_reset_during_a_run_then_run_again():
    busy = 200
    script = [_req(Op.RUN, 1, 5), _req(Op.RESET, 2), _req(Op.RUN, 3, 6), _req(Op.STATUS, 4),
              ("wait", busy + 50), _req(Op.STATUS, 5), _req(Op.PERF, 6)]
    got, _, starts = lb.run_bench(script, run_busy=busy, status_word=0)
    replies = lb.split_replies(got)
    assert [st for _, _, st, _ in replies] == [St.OK] * 6
    assert starts == [5, 6]
    assert struct.unpack("<2I", replies[3][3]) == (p.STATUS_BUSY, 0)     # the second run runs
    assert struct.unpack("<2I", replies[4][3]) == (p.STATUS_DONE, 0)
    assert struct.unpack("<4I", replies[5][3]) == (busy + 2, 1, 5, 0)


def test_frame_run_writes_the_run_csrs():
    entry_addr, control_addr, start_value = lb.RUN_CSRS
    script = [_req(Op.RUN, 1, 0xABCD), _req(Op.READ, 2, entry_addr, 2)]
    got, mem, starts = lb.run_bench(script, run_csrs=lb.RUN_CSRS, run_busy=5)
    replies = lb.split_replies(got)
    assert _statuses(replies) == [(Op.RUN, 1, St.OK), (Op.READ, 2, St.OK)]
    assert replies[1][3] == struct.pack("<2I", 0xABCD, start_value)
    assert starts == [0xABCD]
    init = lb.memory_init()
    assert [i for i in range(lb.MEM_WORDS) if mem[i] != init[i]] == [entry_addr // 4,
                                                                     control_addr // 4]


def test_frame_checks_its_parameters():
    ident = p.identify_payload("00" * 8, "x")
    with pytest.raises(ValueError, match="identity"):
        FrameEngine(identity=b"short", ranges=[(0, 4, True)], addr_width=4, timeout_cycles=9)
    with pytest.raises(ValueError, match="below 0x40"):
        FrameEngine(identity=ident, ranges=[(0, 0x80, True)], addr_width=4, timeout_cycles=9)
    with pytest.raises(ValueError, match="word-aligned"):
        FrameEngine(identity=ident, ranges=[(1, 4, True)], addr_width=4, timeout_cycles=9)
    with pytest.raises(ValueError, match="control_addr must be word aligned"):
        FrameEngine(identity=ident, ranges=[(0, 4, True)], addr_width=4, timeout_cycles=9,
                    run_csrs=(0, 6, 1))
    with pytest.raises(TypeError, match="run_csrs must be"):
        FrameEngine(identity=ident, ranges=[(0, 4, True)], addr_width=4, timeout_cycles=9,
                    run_csrs=(0, 4))
    with pytest.raises(TypeError, match="timeout_cycles"):
        FrameEngine(identity=ident, ranges=[(0, 4, True)], addr_width=4, timeout_cycles=1.5)


def test_frame_strided_read():
    init = lb.memory_init()
    script = [_req(Op.READ, 1, 0x10, 3, 4), _req(Op.READ, 2, 0x3F0, 2, 4),      # 4: one past
              _req(Op.READ, 3, 0x3F0, 2, 2), _req(Op.READ, 4, 0x0, 1, 0),
              _req(Op.READ, 5, 0x0, 2, p.MAX_STRIDE + 1), _req(Op.READ, 6, 0x600, 2, 1)]
    got, _, _ = lb.run_bench(script)
    replies = lb.split_replies(got)
    assert _statuses(replies) == [
        (Op.READ, 1, St.OK), (Op.READ, 2, St.BAD_ADDRESS), (Op.READ, 3, St.OK),
        (Op.READ, 4, St.BAD_LENGTH), (Op.READ, 5, St.BAD_LENGTH), (Op.READ, 6, St.OK)]
    words = [0x10 // 4, 0x20 // 4, 0x30 // 4]
    assert replies[0][3] == struct.pack("<3I", *(init[i] for i in words))
    assert replies[2][3] == struct.pack("<2I", init[0x3F0 // 4], init[0x3F8 // 4])
    assert got == lb.run_model(script)[0]


def test_frame_wait_answers_when_the_run_ends():
    busy = 300
    script = [_req(Op.RUN, 1, 7), _req(Op.WAIT, 2, 5000), _req(Op.RUN, 3, 8),
              _req(Op.WAIT, 4, 20), _req(Op.WAIT, 5, 1 << 31), _req(Op.WAIT, 6, 0),
              _req(Op.PERF, 7)]
    got, _, starts = lb.run_bench(script, run_busy=busy, status_word=0xC0FFEE)
    replies = lb.split_replies(got)
    assert [st for _, _, st, _ in replies] == [St.OK] * 7
    assert starts == [7, 8]
    assert struct.unpack("<3I", replies[1][3]) == (p.STATUS_DONE, 0xC0FFEE, busy + 2)
    flags, word, cycles = struct.unpack("<3I", replies[3][3])      # the budget ran out first
    assert (flags, word) == (p.STATUS_BUSY, 0xC0FFEE) and 20 <= cycles < busy
    assert struct.unpack("<3I", replies[4][3]) == (p.STATUS_DONE, 0xC0FFEE, busy + 2)
    assert struct.unpack("<3I", replies[5][3]) == (p.STATUS_DONE, 0xC0FFEE, busy + 2)
    assert struct.unpack("<4I", replies[6][3])[:2] == (busy + 2, 2)
