# SPDX-License-Identifier: Apache-2.0
"""The virtual board (``sim.vboard``): the Verilated ``hw.system.LinkedAccelerator`` served on
a TCP port, driven by ``sw.driver`` over ``socket://`` as a board would be.

One build and one running board serve the module; every test opens its own connection (the
board serves one client at a time and keeps its memory between clients, as a board does), and
the last test stops the board and checks that it moved exactly the bytes the tests sent. The
shipped digits model runs resident within the link-byte bound, and a model larger than the
scratchpads runs streamed, both bit-exact."""

from __future__ import annotations

import json
import signal
import socket
import struct
import time

import numpy as np
import pytest
from conftest import requires_verilator
from numpy.testing import assert_array_equal

from hw import isa
from hw.isa import Csr, Status
from hw.link import protocol as lp
from hw.params import preset
from sim import runner, vboard
from sw import cli, isasim, ref
from sw.artifact import default_artifact_path, load_artifact
from sw.driver import Device
from sw.driver.accelerator import Accelerator
from sw.driver.framing import encode_request, read_reply
from sw.driver.infer import infer
from sw.driver.transport import Transport
from sw.program import compile_program, random_artifact
from sw.testset import task_inputs

pytestmark = [pytest.mark.sim, requires_verilator]

PARAMS = preset("tiny")
#: Bytes the tests sent and received, for the board's own totals at the end.
TALLY = {"in": 0, "out": 0, "clients": 0}


@pytest.fixture(scope="module")
def board():
    b = vboard.build(PARAMS)
    vb = vboard.VirtualBoard(b, **vboard.link_timing(PARAMS, uart=False))
    yield vb
    vb.stop()


def _open(vb) -> Device:
    TALLY["clients"] += 1
    return Device.open(vb.url, timeout=30.0, retries=0)


def _close(dev: Device) -> None:
    TALLY["in"] += dev.bytes_sent
    TALLY["out"] += dev.bytes_received
    dev.close()


def _region(name: str) -> isa.Region:
    return isa.memory_map(PARAMS).region(name)


def _words(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 4}I", data))


def test_vboard_identifies_the_preset(board):
    dev = _open(board)
    try:
        ident = dev.identify()
        checked = dev.check_design(PARAMS.design_id, "tiny")
        csr = dev.read(_region("csr").base, 2)
    finally:
        _close(dev)
    assert ident.design_id == PARAMS.design_id == checked.design_id
    assert ident.digest == PARAMS.digest() and ident.name == "tiny"
    assert ident.version == lp.PROTOCOL_VERSION and ident.max_words == lp.MAX_WORDS
    assert csr == [PARAMS.design_id, isa.ISA_VERSION]


def test_vboard_write_read_round_trip(board):
    rng = np.random.default_rng(5)
    act = rng.integers(0, 1 << 32, PARAMS.act_depth // 4, dtype=np.uint64).tolist()
    lut = rng.integers(0, 1 << 32, 70, dtype=np.uint64).tolist()
    dev = _open(board)
    try:
        dev.write(_region("act").base, act)
        dev.write(_region("lut").base + 8, lut)
        dev.write(_region("csr").base + Csr.ENTRY, [0x1234])
        got_act = dev.read(_region("act").base, len(act))
        got_lut = dev.read(_region("lut").base + 8, len(lut))
        entry = dev.read(_region("csr").base + Csr.ENTRY, 1)
        perf = dev.perf()
    finally:
        _close(dev)
    assert_array_equal(np.array(got_act), np.array(act))
    assert_array_equal(np.array(got_lut), np.array(lut))
    assert entry == [0x1234]
    # 17 + 2 + 1 WRITEs, 17 + 2 + 1 READs, this PERF; nothing failed since the last RESET.
    assert perf.frames_failed == 0 and perf.frames_ok >= 41


def _gemm_image(rng) -> isasim.MemoryImage:
    """Two chained GEMMs (int8 with a LUT, then an int32 head) and a HALT, with random data."""
    p = PARAMS
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    m, k, h, n = 6, 13, 9, 5
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w1 = rng.integers(-127, 128, (k, h), dtype=np.int8)
    w2 = rng.integers(-127, 128, (h, n), dtype=np.int8)
    image.write("act", 0, isasim.pack_act(a, p.rows))
    image.write("wgt", 0, isasim.pack_wgt(w1, p.cols))
    image.write("wgt", 1024, isasim.pack_wgt(w2, p.cols))
    for q, cols in ((0, h), (32, n)):
        image.write("quant", 8 * q, isasim.pack_quant(
            isa.CHANNEL_WORD, bias=rng.integers(-3000, 3000, cols),
            mult=rng.integers(1 << 14, 1 << 15, cols), shift=rng.integers(8, 16, cols)))
    image.write("lut", 256, rng.integers(-128, 128, 256, dtype=np.int8).tobytes())
    prog = [isa.gemm(a_addr=0, w_addr=0, dst_addr=1024, quant_addr=0, m=m, k=k, n=h, lut=1),
            isa.barrier(),
            isa.gemm(a_addr=1024, w_addr=1024, dst_addr=2048, quant_addr=32, m=m, k=h, n=n,
                     out32=True),
            isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    return image


def test_vboard_runs_a_gemm_program_like_isasim(board):
    image = _gemm_image(np.random.default_rng(17))
    expected = image.copy()
    isasim.run(expected, entry=0)
    regions = ("instr", "act", "wgt", "quant", "lut")
    dev = _open(board)
    try:
        for name in regions:
            dev.write(_region(name).base, _words(bytes(image.regions[name])))
        dev.run(0)
        st = dev.wait(timeout=120.0)
        perf = dev.perf()
        act = dev.read(_region("act").base, PARAMS.act_depth // 4)
        csrs = {c: dev.read(_region("csr").base + c, 1)[0]
                for c in (Csr.STATUS, Csr.PC, Csr.PERF_INSTRET)}
    finally:
        _close(dev)
    assert st.done and not st.busy and st.acc_status == Status.DONE
    assert_array_equal(np.frombuffer(struct.pack(f"<{len(act)}I", *act), np.uint8),
                       np.frombuffer(bytes(expected.regions["act"]), np.uint8))
    assert bytes(expected.regions["act"]) != bytes(image.regions["act"])
    for c, value in csrs.items():
        assert value == expected.read_csr(c), c.name
    assert perf.runs == 1 and perf.run_cycles > 0


def _accelerator(vb) -> Accelerator:
    TALLY["clients"] += 1
    return Accelerator.open(vb.url, timeout=30.0, retries=0)


def _load_and_infer(board, program, x, want) -> dict:
    """Load ``program`` on the board through the driver and run ``x`` (``infer``'s report)."""
    acc = _accelerator(board)
    try:
        acc.load(program)
        return infer(acc, x, want=want)
    finally:
        _close(acc)


def test_vboard_digits_resident_within_the_link_byte_bound(board):
    """Resident mode moves only the input, a RUN, one WAIT and the logits row per inference:
    at most 2 * (input bytes + logits bytes) + 64 link bytes (issue 11)."""
    art = load_artifact(default_artifact_path())
    x, _, _ = task_inputs(art, 4)
    want = ref.model_forward_int(art, x)
    program = compile_program(art, PARAMS)
    report = _load_and_infer(board, program, x, want)
    assert program.mode == "resident" and report["mismatches"] == 0
    assert_array_equal(report["logits"], want)
    bound = 2 * (program.input.size + 4 * program.output.c) + 64
    assert (program.input.size, program.output.c, bound) == (64, 10, 272)
    assert report["link_bytes_per_inference"] <= bound
    assert report["cycles_per_inference"] > 0


def test_vboard_streamed_model_larger_than_the_scratchpads_is_bit_exact(board):
    """A model whose weights exceed the tiny preset's weight scratchpad runs layer by layer
    (each layer's weights written before its run) through the driver, bit-exact."""
    cfg = dict(task="classify", input_kind="patches", patch_dim=8, seq_len=4, n_classes=10,
               d_model=32, n_heads=4, n_layers=PARAMS.wgt_depth // 8192 + 1, d_ff=64, window=4)
    art = random_artifact(cfg, seed=5)
    weights = sum(v.size for k, v in art.arrays.items() if k.endswith(".w"))
    program = compile_program(art, PARAMS)
    x = np.random.default_rng(6).integers(-128, 128, (3, 4, 8), dtype=np.int8)
    want = ref.model_forward_int(art, x)
    report = _load_and_infer(board, program, x, want)
    assert weights > PARAMS.wgt_depth and program.mode == "streamed"
    assert [layer for layer, _ in program.runs] == program.layers()   # a run per layer
    assert report["mode"] == "streamed" and report["mismatches"] == 0 and report["samples"] == 3
    assert_array_equal(report["logits"], want)
    assert report["link_bytes_per_inference"] > weights          # the weights go every time


def test_vboard_bench_fuzz_small(tmp_path):
    """``lightformer bench fuzz`` on the Verilated board (its own, from the cached build): a
    few kilobytes here; docs/protocol.md records a 10^6-byte run."""
    out = tmp_path / "fuzz.json"
    assert cli.main(["bench", "fuzz", "--bytes", "12000", "--seed", "4", "--json",
                     str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "vboard" and report["bytes"] >= 12_000
    assert report["valid_frames"] >= 10
    assert report["valid_answered_ok"] == report["valid_frames"]
    assert report["memory_corruptions"] == 0 and report["hangs"] == 0
    assert report["error"] is None and sum(report["error_replies"].values()) > 0


def _exchange(port: Transport, frame: bytes, *, timeout: float = 30.0):
    port.write(frame)
    TALLY["in"] += len(frame)
    reply = read_reply(port.read, time.monotonic() + timeout)
    TALLY["out"] += lp.REPLY_HEADER_BYTES + len(reply.payload) + lp.CRC_BYTES
    return reply


def test_vboard_answers_garbage_and_bad_frames(board):
    rng = np.random.default_rng(3)
    addr = _region("act").base + 64
    good_write = encode_request(lp.Opcode.WRITE, 7, struct.pack("<4I", addr, 1, 2, 3))
    corrupt = bytearray(encode_request(lp.Opcode.WRITE, 8, struct.pack("<2I", addr, 0xDEAD)))
    corrupt[6] ^= 0x10                                   # a bit of the data word
    garbage = bytes(b for b in rng.integers(0, 256, 500, dtype=np.uint8).tobytes()
                    if b != lp.SOF_REQUEST)
    bad = [
        (bytes(corrupt), lp.Status.BAD_CRC),
        (encode_request(0x42, 9), lp.Status.BAD_OPCODE),
        (encode_request(lp.Opcode.READ, 10, struct.pack("<I", addr)), lp.Status.BAD_LENGTH),
        (encode_request(lp.Opcode.READ, 11, struct.pack("<2I", addr, lp.MAX_WORDS + 1)),
         lp.Status.BAD_LENGTH),
        (encode_request(lp.Opcode.READ, 12, struct.pack("<2I", 7 << isa.REGION_SHIFT, 1)),
         lp.Status.BAD_ADDRESS),
        (encode_request(lp.Opcode.WRITE, 13, struct.pack("<2I", addr + 2, 1)),
         lp.Status.BAD_ADDRESS),
        # A partial request: answered TIMEOUT after the engine's silence limit (250 k cycles).
        (encode_request(lp.Opcode.READ, 14, struct.pack("<2I", addr, 1))[:-3],
         lp.Status.TIMEOUT),
    ]
    port = Transport(board.url)
    TALLY["clients"] += 1
    try:
        reset = _exchange(port, encode_request(lp.Opcode.RESET, 1))
        first = _exchange(port, good_write)
        port.write(garbage)                               # no start byte: skipped silently
        TALLY["in"] += len(garbage)
        resync = _exchange(port, encode_request(lp.Opcode.READ, 2, struct.pack("<2I", addr, 3)))
        answers = [_exchange(port, frame) for frame, _ in bad]
        after = _exchange(port, encode_request(lp.Opcode.READ, 3, struct.pack("<2I", addr, 3)))
        perf = _exchange(port, encode_request(lp.Opcode.PERF, 4))
    finally:
        port.close()
    assert reset.status == first.status == resync.status == after.status == lp.Status.OK
    assert struct.unpack("<3I", resync.payload) == (1, 2, 3)
    assert struct.unpack("<3I", after.payload) == (1, 2, 3)       # nothing bad wrote anything
    assert [a.status for a in answers] == [code for _, code in bad]
    assert [a.seq for a in answers[:-1]] == [8, 9, 10, 11, 12, 13]
    assert all(a.payload == b"" for a in answers)
    _, _, ok, failed = struct.unpack("<4I", perf.payload)
    # RESET (counted after it cleared the counters), WRITE, READ, READ and PERF itself.
    assert (ok, failed) == (5, len(bad))


def test_vboard_refuses_a_busy_port_and_stops_on_signals(board):
    b = board.build
    timing = vboard.link_timing(PARAMS, uart=False)
    with pytest.raises(runner.SimulationError, match="cannot listen"):
        vboard.VirtualBoard(b, port=board.port, **timing)
    once = vboard.VirtualBoard(b, once=True, **timing)
    with Device.open(once.url, timeout=30.0) as dev:
        assert dev.identify().design_id == PARAMS.design_id
    assert once.wait(timeout=30.0) == 0                 # the client hung up: it ends by itself
    assert once.stats["clients"] == 1
    assert (once.stats["bytes_in"], once.stats["bytes_out"]) == (
        dev.bytes_sent, dev.bytes_received) == (6, 7 + lp.IDENTIFY_BYTES)
    interrupted = vboard.VirtualBoard(b, **timing)
    interrupted._proc.send_signal(signal.SIGINT)
    assert interrupted.wait(timeout=30.0) == 0
    assert interrupted.stats["clients"] == 0 and interrupted.stats["cycles"] == 0
    assert "0 cycles simulated" in interrupted.log.read_text()


def test_vboard_stops_cleanly_with_the_totals(board):
    # Let the board see the last client hang up before it stops.
    with socket.create_connection(("127.0.0.1", board.port), timeout=30.0):
        TALLY["clients"] += 1
    time.sleep(0.5)
    assert board.stop() == 0
    assert not board.running
    s = board.stats
    assert s["bytes_in"] == TALLY["in"] and s["bytes_out"] == TALLY["out"]
    assert s["clients"] == TALLY["clients"] and s["bytes_lost"] == 0
    assert s["cycles"] > s["busy_cycles"] > 0


@pytest.mark.slow
def test_vboard_uart_link_bit_by_bit():
    """The same board with the UART PHY: every byte crosses the pins at the preset's divisor."""
    timing = vboard.link_timing(PARAMS, uart=True)
    words = [0xA5A5A5A5, 0x5A5A5A5A, 0, 0xFFFFFFFF, 0x12345678]
    with vboard.start(PARAMS, uart=True) as vb:
        with Device.open(vb.url, timeout=60.0, retries=0) as dev:
            ident = dev.identify()
            dev.write(_region("wgt").base + 4, words)
            got = dev.read(_region("wgt").base + 4, len(words))
            st = dev.status()
        time.sleep(0.5)
    assert ident.design_id == PARAMS.design_id and got == words
    assert not st.busy and st.acc_status == 0
    s = vb.stats
    assert (s["bytes_in"], s["bytes_out"]) == (dev.bytes_sent, dev.bytes_received)
    assert s["bytes_lost"] == 0
    # Each byte is 10 bits of `divisor` cycles on its wire, the wires take turns, and the clock
    # stops in between; a reply may start half a bit before its request's stop bit ends, and
    # the harness takes a reply byte in the middle of its stop bit.
    bit_times = s["cycles"] / timing["divisor"]
    assert 9.5 * (s["bytes_in"] + s["bytes_out"]) <= bit_times
    assert bit_times <= 10 * (s["bytes_in"] + s["bytes_out"]) + 50


def test_vboard_of_a_preset_without_attention_and_layernorm_runs_the_digits_model():
    """``colorlight_5a75b`` leaves its attention and LayerNorm units to the host
    (``host_units``): its Verilated board stops at every ATTN and LNORM with UNIT_ABSENT, the
    driver runs the instruction on the host and starts the board after it. Four digits images,
    every logit equal to ``sw.ref``'s; the board ran one more time per host-run instruction."""
    params = preset("colorlight_5a75b")
    assert params.host_units == ("attn", "lnorm")
    art = load_artifact(default_artifact_path())
    x, _, _ = task_inputs(art, 4)
    want = ref.model_forward_int(art, x)
    program = compile_program(art, params)
    host_run = sum(1 for w in program.words if isa.host_runs(w & 0xFF, params))
    assert host_run >= 3
    vb = vboard.VirtualBoard(vboard.build(params), **vboard.link_timing(params, uart=False))
    try:
        entries: list[int] = []
        with Accelerator.open(vb.url, timeout=30.0, retries=0) as acc:
            acc.load(program)
            got = acc.predict(x, timeout=60.0, after_run=entries.append)
    finally:
        vb.stop()
    assert_array_equal(got, want)
    assert got.shape == (4, 10)
    assert len(entries) == 4 * (1 + host_run)
