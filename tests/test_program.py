# SPDX-License-Identifier: Apache-2.0
"""sw.program + sw.isasim: the first leg of the three-way contract,
``sw.ref.model_forward_int(artifact, x) == sw.isasim.simulate(program, x)`` bit for bit, for the
shipped digits model and for random models that do not divide the array; fit errors; bad
programs end with the documented error codes."""

from __future__ import annotations

import numpy as np
import pytest

from hw import isa
from hw.isa import ErrorCode, IsaError, Opcode
from hw.params import preset
from sw import ref
from sw.artifact import default_artifact_path, expected_arrays, load_artifact
from sw.isasim import MemoryImage, SimStats, run, simulate
from sw.program import (
    FitError,
    ProgramFileError,
    compile_program,
    load_program,
    random_artifact,
    save_program,
)

#: ``tiny`` with what the shipped digits model needs: head_dim 16 and 32 KiB of weights.
TINY16 = preset("tiny").replace(head_dim=16, wgt_depth=32768)
ULX3S = preset("ulx3s_85f")


@pytest.fixture(scope="module")
def digits():
    art = load_artifact(default_artifact_path())
    from sw.data import load_task
    x = ref.quantize_input(art, load_task("digits").x_test[:100])     # (100, 8, 8) int8
    return art, x


def _random_artifact(seed: int, **cfg):
    art = random_artifact(cfg, seed=seed)
    want = expected_arrays(art.config)
    assert set(art.arrays) == set(want)
    for name, (dtype, shape) in want.items():
        assert art.arrays[name].dtype.name == dtype and art.arrays[name].shape == shape, name
    return art


#: d_model 42 = 3 heads of 14, d_ff 72, T 11, patch_dim 13: nothing divides the 4x4 / 8x8 array.
RAGGED = dict(task="classify", input_kind="patches", patch_dim=13, seq_len=11, n_classes=7,
              d_model=42, n_heads=3, n_layers=2, d_ff=72, window=5)
#: A token language model with a centred window: EMBED, (T, C) int32 logits.
RAGGED_LM = dict(task="lm", input_kind="tokens", vocab_size=19, seq_len=11, n_classes=19,
                 d_model=30, n_heads=2, n_layers=1, d_ff=44, window=6, causal=False)


def _check_model(art, params, x) -> SimStats:
    program = compile_program(art, params)
    stats = SimStats()
    got = simulate(program, x, stats=stats)
    want = ref.model_forward_int(art, x)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.int32 and stats.runs == len(x)
    return stats


@pytest.mark.parametrize("params", [TINY16, ULX3S], ids=["tiny16", "ulx3s_85f"])
def test_program_digits_bit_exact(digits, params):
    art, x = digits
    stats = _check_model(art, params, x)
    assert stats.runs == 100
    cfg = art.config
    d, t, dff = cfg["d_model"], cfg["seq_len"], cfg["d_ff"]
    per_layer = t * d * 3 * d + t * d * d + 2 * t * d * dff
    assert stats.macs["gemm"] == 100 * (t * 8 * d + cfg["n_layers"] * per_layer + d * 10)
    assert stats.by_opcode["HALT"] == 100


@pytest.mark.parametrize("params", [TINY16, ULX3S], ids=["tiny16", "ulx3s_85f"])
def test_program_ragged_classifier_bit_exact(params):
    art = _random_artifact(7, **RAGGED)
    x = np.random.default_rng(8).integers(-128, 128, (100, 11, 13)).astype(np.int8)
    _check_model(art, params, x)
    logits = ref.model_forward_int(art, x)
    # the model is not degenerate: the logits differ between samples and classes
    assert len(np.unique(logits.argmax(-1))) > 1 and len(np.unique(logits)) > 300


@pytest.mark.parametrize("params", [TINY16, ULX3S], ids=["tiny16", "ulx3s_85f"])
def test_program_ragged_token_lm_bit_exact(params):
    art = _random_artifact(9, **RAGGED_LM)
    x = np.random.default_rng(10).integers(0, 19, (40, 11))
    _check_model(art, params, x)
    one = simulate(compile_program(art, params), x[0])                    # no batch axis
    np.testing.assert_array_equal(one, ref.model_forward_int(art, x[0]))
    assert one.shape == (11, 19)


def test_program_layout_and_blocks(digits):
    art, _ = digits
    program = compile_program(art, TINY16)
    assert program.layers() == ["embed", "blocks.0", "blocks.1", "head"]
    kinds = [i.opcode for i in program.instructions]
    assert kinds[-1] is Opcode.HALT and kinds.count(Opcode.HALT) == 1
    assert kinds.count(Opcode.ATTN) == 2 and kinds.count(Opcode.GEMM) == 10
    assert len(kinds) <= 4 + 18 * art.config["n_layers"] + 6           # a few dozen per layer
    # blocks of a region never overlap each other or the activation buffers
    for region in isa.REGION_NAMES:
        spans = sorted((b.offset, b.offset + b.size) for b in program.blocks
                       if b.region == region)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), region
        assert all(hi <= program.usage[region]["used"] for _, hi in spans)
    mm = isa.memory_map(TINY16)
    assert program.input.bus_address == mm.region("act").base + program.input.offset
    summary = program.to_dict()
    assert summary["instructions"] == len(kinds) and summary["output"]["dtype"] == "int32"


def test_program_fit_error_names_every_limit(digits):
    art, _ = digits
    with pytest.raises(FitError) as info:
        compile_program(art, preset("tiny").replace(head_dim=8, wgt_depth=16384))
    msg = str(info.value)
    assert "weight bytes: needs 17024, has 16384 (AccelParams.wgt_depth)" in msg
    assert "head_dim: needs 16, has 8 (AccelParams.head_dim)" in msg
    assert {lim[0] for lim in info.value.limits} == {"weight bytes", "quant words", "head_dim"}
    small = TINY16.replace(window=2, k_depth=16, lut_count=1, instr_depth=32, act_depth=1024)
    with pytest.raises(FitError) as info:
        compile_program(art, small)
    assert {lim[0] for lim in info.value.limits} == {
        "attention window", "GEMM reduction length K", "GELU LUTs", "instructions",
        "activation bytes"}
    with pytest.raises(ValueError, match="exactly seq_len=8"):
        compile_program(art, TINY16, seq_len=4)


def test_program_full_attention_window_is_clamped():
    # full centred attention over T = 11 needs 21 keys, more than tiny's 8: T = 4 needs 7
    art = _random_artifact(11, **dict(RAGGED_LM, attention="full", seq_len=11))
    with pytest.raises(FitError, match="attention window: needs 21, has 8"):
        compile_program(art, TINY16)
    program = compile_program(art, TINY16, seq_len=4)
    x = np.random.default_rng(12).integers(0, 19, (10, 4))
    np.testing.assert_array_equal(simulate(program, x), ref.model_forward_int(art, x))


# -- bad programs ----------------------------------------------------------------------------------

def _run_words(words, params=TINY16, image=None):
    image = MemoryImage(params) if image is None else image
    image.load_program(words)
    with pytest.raises(IsaError) as info:
        run(image, entry=0)
    status = image.read_csr(isa.Csr.STATUS)
    assert status & isa.Status.ERROR and not status & isa.Status.DONE
    assert status >> isa.STATUS_CODE_SHIFT == info.value.code
    assert image.read_csr(isa.Csr.PC) == info.value.pc
    return info.value, image


def test_isasim_illegal_opcode():
    err, _ = _run_words([isa.encode(isa.nop()), 0x3F, isa.encode(isa.halt())])
    assert err.code is ErrorCode.ILLEGAL_OPCODE and err.pc == 1


def test_isasim_missing_halt():
    err, _ = _run_words([isa.encode(isa.nop())] * 3)
    assert err.code is ErrorCode.NO_HALT and err.pc == TINY16.instr_depth
    image = MemoryImage(TINY16)
    with pytest.raises(IsaError) as info:
        run(image, entry=TINY16.instr_depth)
    assert info.value.code is ErrorCode.NO_HALT


def test_isasim_out_of_range_address_writes_nothing_and_recovers(digits):
    art, x = digits
    program = compile_program(art, TINY16)
    image = program.image()
    program.write_input(image, x[0])
    before = {k: bytes(v) for k, v in image.regions.items() if k != "csr"}
    bad = isa.gemm(a_addr=0, w_addr=0, dst_addr=TINY16.act_depth - 8, quant_addr=0, m=4, k=8,
                   n=4)
    image.load_program([isa.encode(bad), isa.encode(isa.halt())], entry=200)
    with pytest.raises(IsaError) as info:
        run(image, entry=200)
    assert info.value.code is ErrorCode.BAD_ADDRESS and info.value.pc == 200
    assert image.read_csr(isa.Csr.STATUS) >> isa.STATUS_CODE_SHIFT == ErrorCode.BAD_ADDRESS
    assert {k: bytes(v) for k, v in image.regions.items() if k not in ("csr", "instr")} == {
        k: v for k, v in before.items() if k != "instr"}
    # the same image runs the real program next
    run(image, entry=program.entry)
    assert image.read_csr(isa.Csr.STATUS) == isa.Status.DONE
    np.testing.assert_array_equal(program.read_output(image), ref.model_forward_int(art, x[0]))


def test_isasim_bad_quant_word_and_token(digits):
    art, x = digits
    program = compile_program(art, TINY16)
    image = program.image()
    program.write_input(image, x[0])
    gemm = next(i for i in program.instructions if i.opcode is Opcode.GEMM)
    word = int.from_bytes(image.read("quant", gemm["quant_addr"] * 8, 8), "little")
    image.write("quant", gemm["quant_addr"] * 8,
                (word & ~(0x3F << 47)).to_bytes(8, "little"))         # shift 0
    with pytest.raises(IsaError) as info:
        run(image)
    assert info.value.code is ErrorCode.BAD_QUANT
    lm = compile_program(_random_artifact(9, **RAGGED_LM), TINY16)
    image = lm.image()
    lm.write_input(image, np.full(11, 19))                                # vocab is 19
    with pytest.raises(IsaError) as info:
        run(image)
    assert info.value.code is ErrorCode.BAD_TOKEN


def test_isasim_detects_missing_barriers(digits):
    art, x = digits
    program = compile_program(art, TINY16)
    words = [isa.encode(i) for i in program.instructions if i.opcode is not Opcode.BARRIER]
    image = program.image()
    program.write_input(image, x[0])
    image.load_program(words)
    with pytest.raises(IsaError) as info:
        run(image)
    assert info.value.code is ErrorCode.HAZARD and info.value.pc == 1
    assert "no BARRIER" in str(info.value)


def test_program_save_load_round_trip(digits, tmp_path):
    art, x = digits
    program = compile_program(art, ULX3S)
    path = save_program(program, tmp_path / "digits.ulx3s_85f.safetensors")
    loaded = load_program(path)
    assert loaded == program
    np.testing.assert_array_equal(simulate(loaded, x[:10]), ref.model_forward_int(art, x[:10]))
    with pytest.raises(ProgramFileError, match="file not found"):
        load_program(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08" + bytes(20))
    with pytest.raises(ProgramFileError, match="not a lightformer-program file"):
        load_program(tmp_path / "junk.safetensors")


def test_memory_image_bus_access():
    image = MemoryImage(TINY16)
    mm = isa.memory_map(TINY16)
    csr = mm.region("csr").base
    assert int.from_bytes(image.bus_read(csr + isa.Csr.DESIGN_ID, 4), "little") == \
        TINY16.design_id
    assert image.read_csr(isa.Csr.ISA_VERSION) == isa.ISA_VERSION
    image.bus_write(mm.region("act").base + 8, b"\x01\x02\x03\x04")
    assert image.read("act", 8, 4) == b"\x01\x02\x03\x04"
    with pytest.raises(ValueError, match="outside every region"):
        image.bus_write(mm.region("act").end - 2, b"\x00" * 4)


@pytest.mark.parametrize("params", [TINY16, ULX3S], ids=["tiny16", "ulx3s_85f"])
def test_program_output_read_is_the_logits_row(params):
    """A classifier's logits are one int32 row: logit n is the word at n * rows * 4 of the
    output block, so one strided READ of n_classes words fetches them (docs/isa.md)."""
    art = _random_artifact(7, **RAGGED)
    program = compile_program(art, params)
    x = np.random.default_rng(3).integers(-128, 128, (11, 13), dtype=np.int8)
    image = program.image()
    program.write_input(image, x)
    run(image, entry=program.entry)
    addr, n, stride = program.output_read()
    assert (addr, n, stride) == (program.output.bus_address, 7, params.rows)
    words = [int.from_bytes(image.bus_read(addr + 4 * stride * i, 4), "little")
             for i in range(n)]
    got = program.output_from_words(words)
    np.testing.assert_array_equal(got, program.read_output(image))
    np.testing.assert_array_equal(got, ref.model_forward_int(art, x))
    assert got.dtype == np.int32 and got.shape == (7,)
    with pytest.raises(ValueError, match="the 7 words"):
        program.output_from_words(words[:-1])
    lm = compile_program(_random_artifact(9, **RAGGED_LM), params)
    assert lm.output_read() is None                      # (T, vocab): the whole block


def test_program_simulate_after_run_sees_each_run_and_stats_add_up():
    """``simulate(after_run=)`` hands over every run's own counts (one per layer and sample in
    streamed mode), and they add up to what ``stats`` accumulates."""
    art = _random_artifact(7, **RAGGED)
    program = compile_program(art, TINY16, mode="streamed")
    x = np.random.default_rng(5).integers(-128, 128, (2, 11, 13), dtype=np.int8)
    total, seen = SimStats(), []
    got = simulate(program, x, stats=total, after_run=lambda entry, one: seen.append((entry, one)))
    np.testing.assert_array_equal(got, ref.model_forward_int(art, x))
    assert [entry for entry, _ in seen] == [entry for entry, _ in program.steps()] * 2
    summed = SimStats()
    for _, one in seen:
        assert one.runs == 1
        summed.add(one)
    assert summed.to_dict() == total.to_dict() and total.runs == len(seen) > 2


def test_program_simulate_runs_a_missing_units_instructions_on_the_host():
    """On a design without its attention and LayerNorm units (``host_units``) ``run`` stops at
    the first LNORM or ATTN with UNIT_ABSENT (its PC, nothing of it written); ``simulate`` runs
    each such instruction on the host and goes on after it: the same logits as ``sw.ref``, the
    same work per opcode as the full design, and one run more per host-run instruction."""
    hosted = TINY16.replace(host_units=("attn", "lnorm"))
    art = _random_artifact(7, **RAGGED)
    full, program = compile_program(art, TINY16), compile_program(art, hosted)
    assert program.words == full.words
    x = np.random.default_rng(5).integers(-128, 128, (2, 11, 13), dtype=np.int8)
    first = next(i for i, w in enumerate(program.words)
                 if w & 0xFF in (Opcode.ATTN, Opcode.LNORM))
    image = program.image()
    program.write_input(image, x[0])
    with pytest.raises(IsaError) as exc:
        run(image)
    assert exc.value.code is ErrorCode.UNIT_ABSENT and exc.value.pc == program.entry + first
    assert image.read_csr(isa.Csr.PC) == program.entry + first
    total, want_total, seen = SimStats(), SimStats(), []
    got = simulate(program, x, stats=total, after_run=lambda entry, one: seen.append(entry))
    np.testing.assert_array_equal(got, ref.model_forward_int(art, x))
    simulate(full, x, stats=want_total)
    assert total.by_opcode == want_total.by_opcode and total.macs == want_total.macs
    assert total.instructions == want_total.instructions
    host_run = sum(1 for w in program.words if w & 0xFF in (Opcode.ATTN, Opcode.LNORM))
    assert host_run >= 2 and len(seen) == 2 * (1 + host_run)


def test_program_file_keeps_the_units_left_to_the_host(tmp_path):
    """A saved program of a design with ``host_units`` loads with the same parameters (the
    manifest's JSON list back to the tuple) and design id."""
    hosted = TINY16.replace(host_units=("lnorm",))
    program = compile_program(_random_artifact(7, **RAGGED), hosted)
    loaded = load_program(save_program(program, tmp_path / "p.safetensors"))
    assert loaded.params == hosted and loaded.params.host_units == ("lnorm",)
    assert loaded.params.design_id == hosted.design_id != TINY16.design_id
    assert loaded.words == program.words
