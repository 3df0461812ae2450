# SPDX-License-Identifier: Apache-2.0
"""hw.isa: instruction encoding round trips, field ranges, decode errors, the memory map,
operand checks (``validate``) and the tensor layouts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hw import isa
from hw.isa import ErrorCode, IsaError, Opcode, VecFunc
from hw.params import PRESETS, preset
from sw.isasim import pack_act, pack_quant, pack_wgt, unpack_act, unpack_quant

TINY = preset("tiny")


def _random_instruction(rng: random.Random, opcode: Opcode) -> isa.Instruction:
    values = {}
    for f in isa.FORMATS[opcode]:
        values[f.name] = rng.choice([f.lo, f.hi, rng.randint(f.lo, f.hi)])
    return isa.Instruction(opcode, values)


def test_isa_encode_decode_round_trip():
    rng = random.Random(1)
    checked = 0
    for opcode in Opcode:
        for _ in range(200):
            instr = _random_instruction(rng, opcode)
            word = isa.encode(instr)
            assert 0 <= word < 1 << isa.INSTR_BITS
            assert word & 0xFF == opcode
            assert isa.decode(word) == instr
            checked += 1
    words = [isa.encode(_random_instruction(rng, op)) for op in Opcode]
    data = isa.to_bytes(words)
    assert len(data) == len(words) * isa.INSTR_BYTES
    assert isa.from_bytes(data) == words
    assert checked == 200 * len(Opcode)


def test_isa_field_positions_are_fixed():
    # The hardware decoder and the docs rely on these positions (little-endian 32-bit words).
    word = isa.encode(isa.gemm(a_addr=0x11, w_addr=0x22, dst_addr=0x44, quant_addr=0x55, m=6,
                               k=7, n=8, lut=3))
    words = [(word >> (32 * i)) & 0xFFFFFFFF for i in range(8)]
    assert words == [0x03000101, 0x11, 0x22, 0, 0x44, 0x55, 0x00070006, 0x00000008]


def test_isa_formats_do_not_overlap():
    for opcode, layout in isa.FORMATS.items():
        used = 0xFF
        for f in layout:
            assert used & f.mask == 0, (opcode, f.name)
            used |= f.mask
        assert used < 1 << isa.INSTR_BITS


@pytest.mark.parametrize("bad, exc, match", [
    (dict(m=1 << 16), ValueError, r"field m must be in \[0, 65535\]"),
    (dict(m=-1), ValueError, "field m"),
    (dict(k=2.0), TypeError, "field k must be an integer"),
    (dict(a_addr=1 << 32), ValueError, "field a_addr"),
    (dict(lut=256), ValueError, "field lut"),
])
def test_isa_encode_rejects_out_of_range_fields(bad, exc, match):
    fields = dict(a_addr=0, w_addr=0, dst_addr=0, quant_addr=0, m=1, k=1, n=1)
    fields.update(bad)
    with pytest.raises(exc, match=match):
        isa.gemm(**fields)


def test_isa_instruction_rejects_unknown_fields_and_opcodes():
    with pytest.raises(ValueError, match="unknown field 'x'"):
        isa.Instruction(Opcode.HALT, {"x": 1})
    with pytest.raises(ValueError, match="opcode must be an Opcode"):
        isa.Instruction(99, {})


def test_isa_decode_illegal_opcode_and_reserved_bits():
    with pytest.raises(IsaError) as info:
        isa.decode(0x3F, pc=5)
    assert info.value.code is ErrorCode.ILLEGAL_OPCODE and info.value.pc == 5
    assert "instruction 5" in str(info.value) and "ILLEGAL_OPCODE" in str(info.value)
    with pytest.raises(IsaError) as info:
        isa.decode(int(Opcode.HALT) | 1 << 100)
    assert info.value.code is ErrorCode.BAD_FIELD and "reserved bit 100" in str(info.value)
    # bits 8..15 are GEMM flags but reserved in LNORM
    with pytest.raises(IsaError) as info:
        isa.decode(int(Opcode.LNORM) | 1 << 8)
    assert info.value.code is ErrorCode.BAD_FIELD
    with pytest.raises(ValueError, match="instruction word"):
        isa.decode(1 << isa.INSTR_BITS)


def test_isa_error_codes_are_stable():
    # Documented in docs/isa.md and reported by the hardware's STATUS register.
    assert {c.name: int(c) for c in ErrorCode} == {
        "OK": 0, "ILLEGAL_OPCODE": 1, "BAD_FIELD": 2, "BAD_SHAPE": 3, "BAD_ADDRESS": 4,
        "NO_HALT": 5, "BAD_QUANT": 6, "BAD_TOKEN": 7, "OVERFLOW": 8, "HAZARD": 9,
        "UNIT_ABSENT": 10}
    assert {o.name: int(o) for o in Opcode} == {
        "NOP": 0, "GEMM": 1, "ATTN": 2, "LNORM": 3, "VEC": 4, "EMBED": 5, "BARRIER": 6,
        "HALT": 7}


# -- memory map ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_isa_memory_map_regions(name):
    params = preset(name)
    mm = isa.memory_map(params)
    assert [r.name for r in mm.regions] == list(isa.REGION_NAMES)
    sizes = {r.name: r.size for r in mm.regions}
    assert sizes == {"csr": isa.CSR_BLOCK_BYTES, "instr": params.instr_depth * 32,
                     "act": params.act_depth, "wgt": params.wgt_depth,
                     "quant": isa.quant_depth(params) * 8, "lut": params.lut_count * 256}
    for i, r in enumerate(mm.regions):
        assert r.base == i << 24 and r.base % 4 == 0 and r.size % 4 == 0
        assert r.size <= 1 << isa.REGION_SHIFT
    assert mm.address_width <= 27
    r, off = mm.locate(mm.region("act").base + 8)
    assert (r.name, off) == ("act", 8)
    for bad in (mm.region("act").end, mm.region("csr").end, 0x7000000):
        with pytest.raises(ValueError, match="outside every region"):
            mm.locate(bad)
    with pytest.raises(ValueError, match="region must be one of"):
        mm.region("dram")


def test_isa_csr_offsets():
    offsets = [int(c) for c in isa.Csr]
    assert len(set(offsets)) == len(offsets)
    assert all(o % 4 == 0 and o < isa.CSR_BLOCK_BYTES for o in offsets)
    assert isa.CSR_ACCESS[isa.Csr.DESIGN_ID] == "ro" and isa.CSR_ACCESS[isa.Csr.ENTRY] == "rw"
    assert isa.unit_of(Opcode.EMBED) == "vec" and isa.unit_of(Opcode.HALT) is None


# -- validate --------------------------------------------------------------------------------------

def _gemm(**changes):
    fields = dict(a_addr=0, w_addr=0, dst_addr=64, quant_addr=0, m=5, k=8, n=6)
    fields.update(changes)
    return isa.gemm(**fields)


def test_isa_validate_gemm_accesses():
    acc = isa.validate(_gemm(lut=1), TINY)
    # A: 2 blocks of 4 rows x 8 columns; W: 2 tiles of 8 x 4; 6 quant words; LUT 1; dst 2 x 4 x 6
    assert acc == [isa.Access("act", 0, 64, False), isa.Access("wgt", 0, 64, False),
                   isa.Access("quant", 0, 48, False), isa.Access("lut", 256, 256, False),
                   isa.Access("act", 64, 48, True)]
    acc = isa.validate(_gemm(out32=True), TINY)
    assert acc[-1] == isa.Access("act", 64, 2 * 4 * 6 * 4, True)


@pytest.mark.parametrize("instr, code, match", [
    (_gemm(k=TINY.k_depth + 1), ErrorCode.BAD_SHAPE, "k must be in"),
    (_gemm(m=0), ErrorCode.BAD_SHAPE, "m must be in"),
    (_gemm(a_addr=TINY.act_depth - 4), ErrorCode.BAD_ADDRESS, "leaves the act scratchpad"),
    (_gemm(dst_addr=2), ErrorCode.BAD_ADDRESS, "multiple of 4"),
    (_gemm(w_addr=TINY.wgt_depth), ErrorCode.BAD_ADDRESS, "leaves the wgt scratchpad"),
    (_gemm(quant_addr=isa.quant_depth(TINY) - 5), ErrorCode.BAD_ADDRESS, "quant"),
    (_gemm(lut=TINY.lut_count), ErrorCode.BAD_FIELD, "lut_count"),
    (_gemm(dst_addr=0), ErrorCode.BAD_ADDRESS, "overlaps A"),           # in place
    (_gemm(dst_addr=60), ErrorCode.BAD_ADDRESS, "overlaps A"),          # A's last 4 bytes
    (_gemm(a_addr=96, dst_addr=64), ErrorCode.BAD_ADDRESS, "overlaps A"),   # A inside dst
    (_gemm(a_addr=64, dst_addr=0, out32=True), ErrorCode.BAD_ADDRESS, "overlaps A"),
    (isa.Instruction(Opcode.GEMM, dict(flags=3, m=1, k=1, n=1)), ErrorCode.BAD_FIELD, "flags"),
    (isa.Instruction(Opcode.GEMM, dict(lut=1, m=1, k=1, n=1)), ErrorCode.BAD_FIELD, "unused"),
    (isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=0, quant_addr=0, t=4, heads=1,
              head_dim=TINY.head_dim + 1, window=4, causal=True, src_cols=16, dst_cols=16),
     ErrorCode.BAD_SHAPE, "head_dim"),
    (isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=0, quant_addr=0, t=4, heads=2,
              head_dim=8, window=TINY.window + 1, causal=False, src_cols=16, dst_cols=16),
     ErrorCode.BAD_SHAPE, "window"),
    (isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=0, quant_addr=0, t=4, heads=2,
              head_dim=8, window=4, causal=False, src_cols=15, dst_cols=16),
     ErrorCode.BAD_SHAPE, "src_cols"),
    (isa.lnorm(a_addr=0, dst_addr=0, quant_addr=0, m=1, c=1025), ErrorCode.BAD_SHAPE, "c must"),
    (isa.Instruction(Opcode.VEC, dict(func=7, m=1, c=1)), ErrorCode.BAD_FIELD, "func 7"),
    (isa.vec(VecFunc.LUT, a_addr=0, dst_addr=0, m=1, c=1, b_addr=4), ErrorCode.BAD_FIELD,
     "b_addr"),
    (isa.embed(ids_addr=0, table_addr=0, dst_addr=0, t=4, c=8, vocab=TINY.wgt_depth),
     ErrorCode.BAD_ADDRESS, "table_addr"),
])
def test_isa_validate_rejects(instr, code, match):
    with pytest.raises(IsaError, match=match) as info:
        isa.validate(instr, TINY, pc=3)
    assert info.value.code is code and info.value.pc == 3


def test_isa_validate_gemm_dst_may_touch_a():
    """dst right before or right after A is not an overlap (spans are half-open)."""
    assert isa.validate(_gemm(a_addr=64, dst_addr=0), TINY)[-1] == isa.Access("act", 0, 48, True)
    isa.validate(_gemm(dst_addr=64), TINY)
    isa.validate(_gemm(a_addr=48, dst_addr=0), TINY)


def test_isasim_refuses_an_in_place_gemm():
    """``sw.isasim`` stops an in-place GEMM with BAD_ADDRESS before it writes anything (the
    hardware's tiling would overwrite A while later tiles still read it)."""
    from sw import isasim

    image = isasim.MemoryImage(TINY)
    rng = np.random.default_rng(4)
    image.write("act", 0, rng.integers(0, 256, 256, dtype=np.uint8).tobytes())
    image.write("quant", 0, pack_quant(isa.CHANNEL_WORD, bias=[0] * 6, mult=[1 << 14] * 6,
                                       shift=[9] * 6))
    image.load_program([isa.encode(i) for i in (_gemm(dst_addr=32), isa.halt())])
    before = bytes(image.regions["act"])
    with pytest.raises(IsaError, match="overlaps A") as info:
        isasim.run(image, entry=0)
    assert info.value.code is ErrorCode.BAD_ADDRESS and info.value.pc == 0
    assert bytes(image.regions["act"]) == before


@pytest.mark.parametrize("cfg", [
    dict(task="classify", input_kind="patches", patch_dim=13, seq_len=11, n_classes=3,
         d_model=42, n_heads=3, n_layers=2, d_ff=72, window=4),
    dict(task="lm", input_kind="tokens", vocab_size=20, seq_len=9, n_classes=20, d_model=16,
         n_heads=2, n_layers=1, d_ff=24, window=3),
])
def test_compiler_emits_no_in_place_gemm(cfg):
    """Every GEMM the compiler emits passes ``validate`` (so none overlaps its A)."""
    from sw.program import compile_program, random_artifact

    params = TINY.replace(head_dim=16)
    program = compile_program(random_artifact(cfg, seed=1), params)
    image = program.image()
    words = isa.from_bytes(image.read("instr", 0, params.instr_depth * isa.INSTR_BYTES))
    gemms = [isa.decode(w) for w in words if w & 0xFF == Opcode.GEMM]
    assert gemms
    for instr in gemms:
        a, *_, d = isa.validate(instr, params)
        assert a.offset + a.size <= d.offset or d.offset + d.size <= a.offset


# -- layouts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, m, c", [(4, 11, 42), (8, 8, 32), (3, 7, 5), (1, 3, 2)])
def test_isa_act_layout_is_a_dense_block_layout(rows, m, c):
    span = isa.act_span(m, width=c, cols=c, rows=rows)
    offsets = [isa.act_offset(t, k, cols=c, rows=rows) for t in range(m) for k in range(c)]
    assert len(set(offsets)) == m * c and max(offsets) < span == -(-m // rows) * rows * c
    # a GEMM operand word: column k of a row block is `rows` consecutive bytes
    for k in range(c):
        word = [isa.act_offset(t, k, cols=c, rows=rows) for t in range(min(rows, m))]
        assert word == list(range(k * rows, k * rows + len(word)))
    x = np.random.default_rng(0).integers(-128, 128, (m, c), dtype=np.int8)
    data = pack_act(x, rows)
    assert len(data) == span
    flat = np.frombuffer(data, np.int8)
    got = np.array([[flat[isa.act_offset(t, k, cols=c, rows=rows)] for k in range(c)]
                    for t in range(m)])
    np.testing.assert_array_equal(got, x)
    np.testing.assert_array_equal(unpack_act(data, m, c, rows), x)
    y = np.random.default_rng(1).integers(-2**31, 2**31, (m, c), dtype=np.int64).astype(np.int32)
    np.testing.assert_array_equal(unpack_act(pack_act(y, rows), m, c, rows, np.int32), y)


@pytest.mark.parametrize("cols, k, n", [(4, 8, 10), (8, 32, 96), (3, 5, 7)])
def test_isa_wgt_layout_matches_pack_wgt(cols, k, n):
    w = np.random.default_rng(2).integers(-127, 128, (k, n), dtype=np.int8)
    data = np.frombuffer(pack_wgt(w, cols), np.int8)
    assert data.size == isa.wgt_span(k, n, cols=cols)
    got = np.array([[data[isa.wgt_offset(kk, nn, k_len=k, cols=cols)] for nn in range(n)]
                    for kk in range(k)])
    np.testing.assert_array_equal(got, w)
    # ragged last tile zero-padded; each tile row is one GEMM-core W word
    tiles = data.reshape(-1, k, cols)
    assert not tiles[-1, :, n - (tiles.shape[0] - 1) * cols:].any()


def test_isa_quant_words_round_trip_and_match_the_gemm_core():
    from hw.gemm_core import QUANT_LAYOUT
    assert {name: (f.offset, f.shape.width, f.shape.signed) for name, f in QUANT_LAYOUT} == {
        f.name: (f.lsb, f.width, f.signed) for f in isa.CHANNEL_WORD}
    rng = np.random.default_rng(3)
    for layout in (isa.CHANNEL_WORD, isa.LNORM_WORD, isa.EPS_WORD, isa.ATTN_WORD,
                   isa.RESID_WORD):
        values = {f.name: rng.integers(f.lo, f.hi, 50, endpoint=True) for f in layout}
        data = pack_quant(layout, **values)
        assert len(data) == 50 * isa.QUANT_WORD_BYTES
        got = unpack_quant(layout, data)
        for f in layout:
            np.testing.assert_array_equal(got[f.name], values[f.name])
        word = int.from_bytes(data[:8], "little")
        assert isa.unpack_fields(layout, word) == {f.name: int(values[f.name][0])
                                                   for f in layout}
        assert isa.pack_fields(layout, {f.name: int(values[f.name][0]) for f in layout}) == word
    with pytest.raises(ValueError, match="quant field shift"):
        pack_quant(isa.CHANNEL_WORD, shift=64)
