# SPDX-License-Identifier: Apache-2.0
"""The driver's Accelerator end to end over a TCP link: load a compiled model, predict, and
get exactly ``sw.ref.model_forward_int``'s logits (the device is the ISA simulator behind the
byte-level frame-engine model, sw.driver.isaboard)."""

from __future__ import annotations

import numpy as np
import pytest

from hw import isa
from hw.params import preset
from sw import isasim, ref
from sw.driver import DesignMismatchError
from sw.driver.accelerator import Accelerator, ProgramError
from sw.driver.infer import infer, list_ports, transport_kind
from sw.driver.isaboard import isa_board
from sw.driver.model import LinkServer
from sw.isasim import simulate
from sw.program import compile_program, random_artifact

#: ``tiny`` with room for the model below (head_dim 16, 32 KiB of weights).
PARAMS = preset("tiny").replace(head_dim=16, wgt_depth=32768)
#: Nothing divides the 4x4 array: d_model 42 = 3 heads of 14, d_ff 72, T 11, patch_dim 13.
CONFIG = dict(task="classify", input_kind="patches", patch_dim=13, seq_len=11, n_classes=7,
              d_model=42, n_heads=3, n_layers=2, d_ff=72, window=5)


@pytest.fixture(scope="module")
def model():
    art = random_artifact(CONFIG, seed=3)
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, size=(6, 11, 13), dtype=np.int8)
    return art, compile_program(art, PARAMS), x


@pytest.fixture
def board():
    with LinkServer(isa_board(PARAMS)) as srv:
        yield srv


def test_driver_accelerator_predict_bit_exact(model, board):
    art, program, x = model
    with Accelerator.open(board.url, timeout=2.0) as acc:
        acc.load(program)
        sent = acc.bytes_sent
        got = acc.predict(x)
        per_inference = (acc.bytes_sent + acc.bytes_received - sent) / len(x)
        one = acc.predict(x[0])
    want = ref.model_forward_int(art, x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(one, want[0])
    assert got.shape == (6, 7) and got.dtype == np.int32
    assert len(acc.run_cycles) == 1 and acc.run_cycles[0] > 0
    assert per_inference < 1500                # input + logits + RUN/STATUS/PERF, no weights


def test_driver_accelerator_after_run_sees_every_run(model, board):
    """``after_run(entry)`` follows every run, resident (one per sample) and streamed (one per
    layer), before the next run clears the perf counters, and changes no logit."""
    art, program, x = model
    streamed = compile_program(art, PARAMS, mode="streamed")
    want = ref.model_forward_int(art, x[:2])
    for prog, runs_per_sample in ((program, 1), (streamed, len(streamed.runs))):
        entries: list[int] = []
        with Accelerator.open(board.url, timeout=2.0) as acc:
            acc.load(prog)
            got = acc.predict(x[:2], after_run=entries.append)
        np.testing.assert_array_equal(got, want)
        assert len(entries) == 2 * runs_per_sample
        assert entries == [entry for entry, _ in prog.steps()] * 2
    assert len(streamed.runs) > 1                 # streamed really runs layer by layer


def test_driver_infer_report(model, board):
    art, program, x = model
    want = ref.model_forward_int(art, x)
    labels = np.argmax(want, axis=-1)
    labels[0] = (labels[0] + 1) % 7                       # one wrong label: accuracy 5/6
    seen = []
    with Accelerator.open(board.url, timeout=2.0) as acc:
        acc.load(program)
        report = infer(acc, x, labels=labels, want=want, progress=seen.append)
    np.testing.assert_array_equal(report.pop("logits"), want)
    assert report["samples"] == 6 and seen == [1, 2, 3, 4, 5, 6]
    assert report["bit_exact"] is True and report["mismatches"] == 0
    assert report["accuracy"] == report["accuracy_ref"] == 5 / 6
    assert report["transport"] == "socket" and report["mode"] == "resident"
    assert report["cycles_per_inference"] > 0
    assert report["projected_latency_us"] == report["cycles_per_inference"] / 25.0
    # Resident mode: the link carries little more than the input and the logits.
    assert report["link_bytes_per_inference"] <= 2 * (x[0].nbytes + want[0].nbytes) + 64
    assert transport_kind("/dev/ttyUSB0") == "serial" and transport_kind("loop://") == "loop"
    assert all(set(port) == {"device", "description", "hwid"} for port in list_ports())


def test_driver_accelerator_refuses_another_design(model, board):
    _, program, _ = model
    other = PARAMS.replace(wgt_depth=2 * PARAMS.wgt_depth)     # another design, same name
    with LinkServer(isa_board(other)) as srv, Accelerator.open(srv.url, timeout=1.0) as acc:
        with pytest.raises(DesignMismatchError, match="preset tiny"):
            acc.load(program)


def test_driver_accelerator_reports_a_failing_program(model, board):
    _, program, x = model
    with Accelerator.open(board.url, timeout=2.0) as acc:
        acc.load(program)
        instr = isa.memory_map(PARAMS).region("instr").base
        acc.write_bytes(instr + program.entry * isa.INSTR_BYTES, bytes(isa.INSTR_BYTES * 2))
        acc.write_bytes(instr, isa.to_bytes([isa.encode(isa.nop())] * PARAMS.instr_depth))
        with pytest.raises(ProgramError, match="NO_HALT"):
            acc.predict(x[0])


def test_driver_unaligned_byte_access(board):
    with Accelerator.open(board.url, timeout=1.0) as acc:
        act = isa.memory_map(PARAMS).region("act").base
        acc.write_bytes(act, bytes(range(16)))
        acc.write_bytes(act + 3, b"\xAA\xBB")          # inside words 0 and 1
        acc.write_bytes(act + 9, b"\xCC")              # inside word 2
        assert acc.read_bytes(act, 16) == bytes([0, 1, 2, 0xAA, 0xBB, 5, 6, 7, 8, 0xCC, 10, 11,
                                                  12, 13, 14, 15])
        assert acc.read_bytes(act + 5, 3) == bytes([5, 6, 7])


#: ``PARAMS`` without its attention and LayerNorm units (``host_units``).
HOSTED = PARAMS.replace(host_units=("attn", "lnorm"))


def test_driver_runs_the_instructions_of_a_missing_unit_on_the_host(model):
    """On a design without the attention and LayerNorm units the device stops at each of their
    instructions (UNIT_ABSENT); the driver runs it on the host and starts the device after it:
    resident and streamed, the logits are ``sw.ref``'s, and ``after_run`` sees one device run
    more per host-run instruction, each resumed run starting after an ATTN or LNORM. Every
    byte of the activation scratchpad ends as on a design with every unit (T = 11 tokens on
    4-row blocks: the result spans' padding bytes, which no instruction writes, kept)."""
    art, _, x = model
    want = ref.model_forward_int(art, x[:2])
    for mode in ("resident", "streamed"):
        board = isa_board(HOSTED)
        full = compile_program(art, PARAMS, mode=mode)
        image = full.image()
        image.write("act", 0, bytes(range(256)) * (PARAMS.act_depth // 256))   # not zeros
        for block in full.resident_blocks():          # what load() writes on the device
            image.write(block.region, block.offset, block.data)
        board.image.write("act", 0, bytes(image.regions["act"]))
        simulate(full, x[:2], image=image)
        with LinkServer(board) as srv:
            prog = compile_program(art, HOSTED, mode=mode)
            hosted = [i for i, word in enumerate(prog.words)
                      if isa.host_runs(word & 0xFF, HOSTED)]
            ops = [prog.words[i] & 0xFF for i in hosted]
            assert ops.count(isa.Opcode.ATTN) == CONFIG["n_layers"], mode
            assert ops.count(isa.Opcode.LNORM) >= CONFIG["n_layers"], mode
            entries: list[int] = []
            with Accelerator.open(srv.url, timeout=2.0) as acc:
                acc.load(prog)
                got = acc.predict(x[:2], after_run=entries.append)
            np.testing.assert_array_equal(got, want)
            steps = [entry for entry, _ in prog.steps()]
            resumed = [prog.entry + i + 1 for i in hosted]
            assert len(entries) == 2 * (len(steps) + len(hosted)), mode
            assert sorted(set(entries)) == sorted(set(steps) | set(resumed)), mode
        assert board.image.regions["act"] == image.regions["act"], mode


def test_driver_reports_a_host_run_instruction_that_fails_where_it_stopped(model):
    """A host-run LNORM whose channel word on the device holds a bad shift fails as the unit
    would: ProgramError with BAD_QUANT at that LNORM's instruction."""
    art, _, x = model
    prog = compile_program(art, HOSTED)
    pc, fields = next((prog.entry + i, isa.decode(word).fields)
                      for i, word in enumerate(prog.words) if word & 0xFF == isa.Opcode.LNORM)
    bad = isasim.pack_quant(isa.LNORM_WORD, gamma=[1], beta=[0], mult=[1 << 14], shift=[0])
    with LinkServer(isa_board(HOSTED)) as srv, Accelerator.open(srv.url, timeout=2.0) as acc:
        acc.load(prog)
        acc.write_bytes(isa.memory_map(HOSTED).region("quant").base
                        + 8 * (fields["quant_addr"] + 1), bad)
        with pytest.raises(ProgramError, match=f"BAD_QUANT at instruction {pc}") as exc:
            acc.predict(x[0])
    assert exc.value.code == isa.ErrorCode.BAD_QUANT and exc.value.pc == pc


def test_driver_reads_each_byte_of_a_host_run_instruction_once():
    """The spans a host-run instruction touches are merged per region before they are read:
    overlapping (an ATTN's Q, K and V slices of one tensor) and touching ones become one read,
    the others stay apart, regions never mix."""
    from sw.driver.accelerator import _merged_spans

    A = isa.Access
    spans = _merged_spans([A("act", 448, 640, False), A("act", 320, 640, False),
                           A("quant", 8, 8, False), A("act", 1088, 256, True),
                           A("act", 384, 640, False), A("act", 2000, 16, False),
                           A("quant", 0, 8, False), A("quant", 24, 8, False)])
    assert spans == [("act", 320, 1344), ("act", 2000, 2016), ("quant", 0, 16),
                     ("quant", 24, 32)]
    assert _merged_spans([]) == []


@pytest.mark.parametrize(("m", "whole"), [(8, True), (7, False)])
def test_driver_reads_a_result_span_back_only_where_it_is_not_written(m, whole):
    """An LNORM of whole 4-row blocks writes every byte of its result span, so the driver
    need not read it first (``_unwritten`` gives the result); one of 7 rows leaves the last
    block's padding row alone, so the span must be read (``None``)."""
    from sw.driver.accelerator import _unwritten

    c = 5
    rng = np.random.default_rng(m)
    image = isasim.MemoryImage(HOSTED)
    image.write("act", 0, isasim.pack_act(rng.integers(-128, 128, (m, c), dtype=np.int8),
                                          HOSTED.rows))
    image.write("quant", 0, isasim.pack_quant(isa.EPS_WORD, eps=1000))
    image.write("quant", 8, isasim.pack_quant(isa.LNORM_WORD, gamma=[3] * c, beta=[0] * c,
                                              mult=[1 << 14] * c, shift=[16] * c))
    word = isa.encode(isa.lnorm(a_addr=0, dst_addr=256, quant_addr=0, m=m, c=c))
    accesses = isasim.instruction_accesses(word, HOSTED, 0)
    got = _unwritten(image, word, 0, accesses)
    assert (got is not None) == whole
    if whole:
        want = image.copy()
        isasim.run_instruction(want, word, 0)
        assert got.regions["act"] == want.regions["act"]
