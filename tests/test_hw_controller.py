# SPDX-License-Identifier: Apache-2.0
"""``hw.controller.Controller`` in amaranth.sim, through the accelerator top's host port: GEMM
programs of ragged shapes (int8, LUT, int32) against ``sw.isasim`` bit for bit, the whole
activation scratchpad compared (so no byte outside the result changes either)."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import ResetInserter, Signal
from amaranth.sim import Simulator
from helpers import assert_selects_exclusive, watch_selects
from hostbus import HostDriver, read_csr, read_region, run_program, word_address, write_image
from numpy.testing import assert_array_equal

from hw import isa
from hw.accelerator import Accelerator
from hw.controller import Controller, instruction_fields
from hw.isa import Control, Csr, ErrorCode, Opcode, Status
from hw.params import preset
from sw import isasim, ref

#: ``tiny``'s 4x4 array with small scratchpads, so that images load and read back quickly.
PARAMS = preset("tiny").replace(act_depth=1024, wgt_depth=1024, instr_depth=32, lut_count=2)
DST = 512                                    # act byte offset of every result


def run_on_accelerator(image, *, entry: int = 0, read_back=("act",), program_runs: int = 1):
    """Load ``image``, run it ``program_runs`` times; returns (status, csrs, regions read)."""
    dut = Accelerator.from_params(image.params)
    out: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        out["written"] = await write_image(host, image)
        for _ in range(program_runs):
            out["status"] = await run_program(host, image, entry)
        out["csr"] = {c: await read_csr(host, image, c) for c in Csr}
        out["regions"] = {r: await read_region(host, image, r) for r in read_back}

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    seen = watch_selects(sim, dut)
    sim.run()
    assert_selects_exclusive(seen)
    return out


def gemm_image(rng, m: int, k: int, n: int, *, lut: int | None = None, out32: bool = False,
               params=PARAMS, dst: int = DST, w_addr: int = 64):
    """An image with a random act background, A, W (at ``w_addr``, a multiple of ``cols``),
    quant words, LUTs and one GEMM + HALT."""
    p = params
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    w = rng.integers(-127, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-3000, 3000, n)
    mult = rng.integers(1 << 14, 1 << 15, n)
    shift = rng.integers(8, 16, n)
    image.write("act", 0, isasim.pack_act(a, p.rows))
    image.write("wgt", w_addr, isasim.pack_wgt(w, p.cols))
    image.write("quant", 8 * 3, isasim.pack_quant(isa.CHANNEL_WORD, bias=bias, mult=mult,
                                                  shift=shift))
    for i in range(p.lut_count):
        image.write("lut", i * 256, rng.integers(-128, 128, 256, dtype=np.int8).tobytes())
    prog = [isa.gemm(a_addr=0, w_addr=w_addr, dst_addr=dst, quant_addr=3, m=m, k=k, n=n, lut=lut,
                     out32=out32), isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    return image, (a, w, bias, mult, shift)


def _check_against_isasim(image, result, entry: int = 0):
    expected = image.copy()
    isasim.run(expected, entry=entry)
    assert result["status"] == Status.DONE
    assert result["regions"]["act"] == bytes(expected.regions["act"])
    for c in (Csr.PC, Csr.PERF_INSTRET, Csr.STATUS, Csr.DESIGN_ID, Csr.ISA_VERSION):
        assert result["csr"][c] == expected.read_csr(c), c.name
    return expected


@pytest.mark.parametrize("m,k,n,lut,out32", [
    (5, 7, 6, None, False),                  # ragged M, K and N on the 4x4 array
    (5, 7, 6, 1, False),                     # with LUT 1 on the int8 result
    (5, 7, 6, None, True),                   # int32 result (the head)
    (8, 16, 4, None, False),                 # whole tiles
    (1, 1, 1, 0, False),                     # the smallest GEMM
    (9, 5, 11, 0, False),                    # 3 x 3 tiles: odd counts on the two banks
])
def test_controller_gemm_matches_isasim(m, k, n, lut, out32):
    rng = np.random.default_rng(m * 100 + k * 10 + n + (lut or 0) + 7 * out32)
    image, (a, w, bias, mult, shift) = gemm_image(rng, m, k, n, lut=lut, out32=out32)
    result = run_on_accelerator(image)
    expected = _check_against_isasim(image, result)
    got = isasim.unpack_act(result["regions"]["act"][DST:], m, n, PARAMS.rows,
                            np.int32 if out32 else np.int8)
    if out32:
        want = ref.gemm_acc(a, w, bias.astype(np.int32))
    else:
        want = ref.gemm_requant(a, w, bias.astype(np.int32), mult, shift)
        if lut is not None:
            want = ref.lut_apply(want, np.frombuffer(expected.regions["lut"], np.int8)
                                 [lut * 256:(lut + 1) * 256])
    assert_array_equal(got, want)
    assert got.size == m * n
    csr = result["csr"]
    assert csr[Csr.PERF_INSTRET] == 2 and csr[Csr.PC] == 1
    tiles = -(-m // PARAMS.rows) * -(-n // PARAMS.cols)
    assert csr[Csr.PERF_GEMM_BUSY] >= tiles * k
    assert csr[Csr.PERF_CYCLES] >= csr[Csr.PERF_GEMM_BUSY] + csr[Csr.PERF_GEMM_STALL]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_controller_gemm_short_loads_on_a_2x2_array(k):
    """On a 2 x 2 array a tile with K <= 2 loads in fewer cycles than the scratchpads' read
    latency: the feeder's minimum load (``feed_min``) keeps the core from reading a word
    before it lands. Two token blocks and two column tiles, so both banks are reused."""
    params = PARAMS.replace(rows=2, cols=2, ln_pipelines=1, attn_lanes=2)
    m, n = 4, 4
    rng = np.random.default_rng(900 + k)
    image, (a, w, bias, mult, shift) = gemm_image(rng, m, k, n, params=params)
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    got = isasim.unpack_act(result["regions"]["act"][DST:], m, n, params.rows, np.int8)
    want = ref.gemm_requant(a, w, bias.astype(np.int32), mult, shift)
    assert got.size == m * n
    assert_array_equal(got, want)


@pytest.mark.parametrize("rows,cols", [(1, 2), (2, 4), (3, 2)])
def test_controller_out32_tiles_whose_rows_span_two_words(rows, cols):
    """An int32 result on arrays whose ``rows`` is not a multiple of 4: an int32 column word's
    quarter holds part of a row, so the drainer's pass of one quarter captures a row that the
    next pass takes (``_out32_passes``). Three token blocks (the last ragged: masked bytes)
    and two column tiles (the last ragged)."""
    params = PARAMS.replace(rows=rows, cols=cols, ln_pipelines=1, ln_engines=1,
                            attn_lanes=2)
    m, k, n = 2 * rows + 1, 3, cols + 1
    dst = DST // rows * rows                          # an act word
    rng = np.random.default_rng(950 + 10 * rows + cols)
    image, (a, w, bias, mult, shift) = gemm_image(rng, m, k, n, out32=True, params=params,
                                                  dst=dst)
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    got = isasim.unpack_act(result["regions"]["act"][dst:], m, n, params.rows, np.int32)
    assert got.size == m * n
    assert_array_equal(got, ref.gemm_acc(a, w, bias.astype(np.int32)))


@pytest.mark.parametrize("out32", [False, True], ids=["int8", "int32"])
def test_controller_gemm_with_flag_copies_per_column_group(out32):
    """9 columns: the GEMM side's wide buffers keep 2 copies of their flags, and the result
    rows' OUT32 multiplexer 2 copies of OUT32 (``hw.skid.column_groups``), with 3 requantizer
    lanes (a row in 3 phases, a copy of the phase per lane group). Two token blocks (the last
    ragged) and three column tiles (the last ragged), int8 and int32 results."""
    from hw.skid import column_groups

    params = PARAMS.replace(rows=2, cols=9, ln_pipelines=1, ln_engines=1, attn_lanes=2,
                            requant_lanes=3)
    assert column_groups(params.cols) == 2
    m, k, n = 3, 5, 2 * params.cols + 4
    rng = np.random.default_rng(970 + out32)
    image, (a, w, bias, mult, shift) = gemm_image(rng, m, k, n, out32=out32, params=params,
                                                  w_addr=8 * params.cols)
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    got = isasim.unpack_act(result["regions"]["act"][DST:], m, n, params.rows,
                            np.int32 if out32 else np.int8)
    assert got.size == m * n == 66
    b = bias.astype(np.int32)
    assert_array_equal(got, ref.gemm_acc(a, w, b) if out32
                       else ref.gemm_requant(a, w, b, mult, shift))


def test_controller_runs_a_chained_program():
    """Two dependent GEMMs (the second reads the first's result) separated by a BARRIER, NOPs,
    from a non-zero ENTRY; the program runs twice (the second START restarts it cleanly)."""
    rng = np.random.default_rng(3)
    p = PARAMS
    image, _ = gemm_image(rng, 6, 5, 9)
    w2 = rng.integers(-127, 128, (9, 3), dtype=np.int8)
    image.write("wgt", 512, isasim.pack_wgt(w2, p.cols))
    image.write("quant", 8 * 20, isasim.pack_quant(isa.CHANNEL_WORD, bias=[5, -9, 100],
                                                   mult=[20000, 17000, 30000], shift=[10, 9, 11]))
    first = isa.from_bytes(image.read("instr", 0, isa.INSTR_BYTES))[0]
    prog = [isa.encode(isa.halt()), isa.encode(isa.nop()), first, isa.encode(isa.barrier()),
            isa.encode(isa.gemm(a_addr=DST, w_addr=512, dst_addr=768, quant_addr=20, m=6, k=9,
                                n=3, lut=0)),
            isa.encode(isa.halt())]
    image.load_program(prog)
    image.write_csr(Csr.ENTRY, 1)
    result = run_on_accelerator(image, entry=1, program_runs=2)
    _check_against_isasim(image, result, entry=1)
    assert result["csr"][Csr.PERF_INSTRET] == 5


def run_programs_and_compare(image, programs):
    """Run each ``(words, entry)`` of ``programs`` in turn on one simulated accelerator (one
    elaboration, the image written once; before each run only the instruction words that
    changed) and on ``sw.isasim`` from the same state: after each run the same STATUS, PC,
    retired count and act bytes. Returns each run's accelerator CSRs."""
    dut = Accelerator.from_params(image.params)
    expected = image.copy()
    csrs: list[dict] = []

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        loaded = bytes(image.regions["instr"])
        base = word_address(image, "instr")
        for words, entry in programs:
            image.load_program(words)
            expected.load_program(words)
            instr = bytes(image.regions["instr"])
            for i in range(0, len(instr), 4):
                if instr[i:i + 4] != loaded[i:i + 4]:
                    await host.write(base + i // 4, int.from_bytes(instr[i:i + 4], "little"))
            loaded = instr
            await run_program(host, image, entry)
            csr = {c: await read_csr(host, image, c) for c in Csr}
            act = await read_region(host, image, "act")
            try:
                isasim.run(expected, entry=entry)
            except isa.IsaError:
                pass                                  # STATUS and PC are set either way
            assert act == bytes(expected.regions["act"]), len(csrs)
            for c in (Csr.PC, Csr.PERF_INSTRET, Csr.STATUS):
                assert csr[c] == expected.read_csr(c), (len(csrs), c.name)
            csrs.append(csr)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    seen = watch_selects(sim, dut)
    sim.run()
    assert_selects_exclusive(seen)
    assert len(csrs) == len(programs)
    return csrs


def test_controller_skips_a_prefetched_nop_or_barrier():
    """A NOP or BARRIER right after an operation is skipped by the prefetch: it retires (PC and
    PERF_INSTRET as sw.isasim) and costs no cycle, and a second one in a row runs as before.
    One with a reserved bit set is not skipped (BAD_FIELD at its PC), nor one in the last
    word of the instruction memory (NO_HALT after it)."""
    rng = np.random.default_rng(21)
    p = PARAMS
    image, _ = gemm_image(rng, 5, 7, 6)
    op = isa.from_bytes(image.read("instr", 0, isa.INSTR_BYTES))[0]
    barrier, nop, halt = (isa.encode(i) for i in (isa.barrier(), isa.nop(), isa.halt()))
    # The last case: the operation and a BARRIER in the last two words, nothing after them.
    tail = [nop] * p.instr_depth
    tail[-2:] = [op, barrier]
    bad_barrier = barrier | 1 << 200                  # a reserved bit
    programs = {"plain": [op, halt], "barrier": [op, barrier, halt],
                "nop": [op, nop, halt], "two": [op, barrier, nop, halt],
                "between": [op, barrier, op, barrier, halt]}
    runs = [(prog, 0) for prog in programs.values()]
    runs += [([op, bad_barrier, halt], 0), (tail, p.instr_depth - 2)]
    csrs = run_programs_and_compare(image, runs)
    cycles = {}
    for (name, prog), csr in zip(programs.items(), csrs):
        assert csr[Csr.STATUS] == Status.DONE, name
        assert csr[Csr.PERF_INSTRET] == len(prog), name
        cycles[name] = csr[Csr.PERF_CYCLES]
    assert cycles["barrier"] == cycles["nop"] == cycles["plain"]
    assert cycles["two"] > cycles["barrier"]         # the second one is fetched as before
    csr = csrs[len(programs)]
    assert csr[Csr.STATUS] == Status.ERROR | ErrorCode.BAD_FIELD << isa.STATUS_CODE_SHIFT
    assert csr[Csr.PC] == 1
    csr = csrs[-1]
    assert csr[Csr.STATUS] == Status.ERROR | ErrorCode.NO_HALT << isa.STATUS_CODE_SHIFT
    assert csr[Csr.PC] == p.instr_depth


def test_controller_fields_come_from_the_isa_table():
    from amaranth.hdl import Signal

    ir = Signal(isa.INSTR_BITS)
    fields = instruction_fields(ir, Opcode.GEMM)
    assert sorted(fields) == sorted(f.name for f in isa.FORMATS[Opcode.GEMM])
    for f in isa.FORMATS[Opcode.GEMM]:
        assert len(fields[f.name]) == f.width


def test_controller_from_params_reads_its_fields():
    ctrl = Controller.from_params(PARAMS)
    assert ctrl.params is PARAMS
    with pytest.raises(TypeError):
        Controller.from_params("tiny")


def test_controller_vec_matches_isasim():
    """VEC ADD, LUT and MEANPOOL over a ragged (5, 6) tensor on the 4-lane vector unit, in one
    program (BARRIERs between dependent steps)."""
    rng = np.random.default_rng(5)
    p = PARAMS
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    x = rng.integers(-128, 128, (5, 6), dtype=np.int8)
    y = rng.integers(-128, 128, (5, 6), dtype=np.int8)
    image.write("act", 0, isasim.pack_act(x, p.rows))
    image.write("act", 64, isasim.pack_act(y, p.rows))
    image.write("quant", 0, isasim.pack_quant(isa.RESID_WORD, mult_a=21000, mult_b=13000,
                                              shift=15))
    image.write("quant", 8, isasim.pack_quant(isa.CHANNEL_WORD, mult=26000, shift=17))
    lut = rng.integers(-128, 128, 256, dtype=np.int8)
    image.write("lut", 256, lut.tobytes())
    prog = [isa.vec(isa.VecFunc.ADD, a_addr=0, b_addr=64, dst_addr=128, quant_addr=0, m=5, c=6),
            isa.barrier(),
            isa.vec(isa.VecFunc.LUT, a_addr=128, dst_addr=192, lut=1, m=5, c=6),
            isa.barrier(),
            isa.vec(isa.VecFunc.MEANPOOL, a_addr=192, dst_addr=256, quant_addr=1, m=5, c=6),
            isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    act = result["regions"]["act"]
    added = ref.residual_add(x, y, np.array([21000, 13000]), 15)
    assert_array_equal(isasim.unpack_act(act[128:], 5, 6, p.rows), added)
    assert_array_equal(isasim.unpack_act(act[192:], 5, 6, p.rows), ref.lut_apply(added, lut))
    pooled = ref.mean_pool_int(ref.lut_apply(added, lut), 26000, 17)
    assert_array_equal(isasim.unpack_act(act[256:], 1, 6, p.rows)[0], pooled)
    assert result["csr"][Csr.PERF_INSTRET] == len(prog)
    assert result["csr"][Csr.PERF_VEC_BUSY] > 0


@pytest.mark.parametrize("m,c", [(8, 4), (1, 9), (13, 5)])
def test_controller_meanpool_matches_isasim(m, c):
    """VEC MEANPOOL of whole, single-token and ragged blocks: the controller reads a block's
    channel words and transposes them into token beats."""
    rng = np.random.default_rng(m * 31 + c)
    p = PARAMS
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    x = rng.integers(-128, 128, (m, c), dtype=np.int8)
    image.write("act", 0, isasim.pack_act(x, p.rows))
    image.write("quant", 8, isasim.pack_quant(isa.CHANNEL_WORD, mult=29000, shift=18))
    prog = [isa.vec(isa.VecFunc.MEANPOOL, a_addr=0, dst_addr=512, quant_addr=1, m=m, c=c),
            isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    assert_array_equal(isasim.unpack_act(result["regions"]["act"][512:], 1, c, p.rows)[0],
                       ref.mean_pool_int(x, 29000, 18))


ATTN_T, ATTN_HEADS, ATTN_HEAD_DIM, ATTN_WINDOW = 7, 2, 6, 5
ATTN_QUANT = dict(score_mult=23000, score_shift=17, out_mult=20000, out_shift=26)


def attn_image(rng, causal: bool, *, t: int = ATTN_T, heads: int = ATTN_HEADS,
               window: int = ATTN_WINDOW, p=PARAMS):
    """An image with a random act background, Q/K/V as column slices of one (T, 3 * width)
    tensor at act 0, and one ATTN (head_dim 6 of the unit's 8) + HALT; returns (image, qkv)."""
    hd = ATTN_HEAD_DIM
    width = heads * hd
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    qkv = rng.integers(-128, 128, (t, 3 * width), dtype=np.int8)
    image.write("act", 0, isasim.pack_act(qkv, p.rows))
    image.write("quant", 16, isasim.pack_quant(isa.ATTN_WORD, **ATTN_QUANT))
    prog = [isa.attn(q_addr=0, k_addr=width * p.rows, v_addr=2 * width * p.rows, dst_addr=DST,
                     quant_addr=2, t=t, heads=heads, head_dim=hd, window=window, causal=causal,
                     src_cols=3 * width, dst_cols=width),
            isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    return image, qkv


@pytest.mark.parametrize("causal", [True, False])
def test_controller_attn_matches_isasim(causal):
    """ATTN over 2 heads of a ragged head_dim (6 of the unit's 8) and T = 7 (not a multiple of
    the 4 rows of a block), Q/K/V column slices of one (T, 36) tensor."""
    rng = np.random.default_rng(17 + causal)
    p = PARAMS
    t, heads, hd, window = ATTN_T, ATTN_HEADS, ATTN_HEAD_DIM, ATTN_WINDOW
    width = heads * hd
    image, qkv = attn_image(rng, causal)
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    got = isasim.unpack_act(result["regions"]["act"][DST:], t, width, p.rows)
    params = ref.AttentionQuant(**ATTN_QUANT)
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        want = ref.windowed_attention_int(qkv[:, cols], qkv[:, width:][:, cols],
                                          qkv[:, 2 * width:][:, cols], window, causal, params)
        assert_array_equal(got[:, cols], want)
    assert result["csr"][Csr.PERF_ATTN_BUSY] > 0


#: Cycles from START to the reset: the first K/V and Q rows of the first head (the whole ATTN
#: takes 657 cycles), every cycle of them, so some reset comes while a gathered row is full.
RESET_POINTS = range(30, 70)


def test_controller_attn_after_resets_mid_run_matches_isasim():
    """A one-cycle reset of the whole top (the link's RESET) at each of forty cycles of an
    ATTN's run, the program started again after each; the run after the last reset ends as
    isasim's. The K/V and Q gatherers' registers have no domain reset, only their ATTN_HEAD
    restart: what a reset leaves in them (a full row not yet taken) must not reach the next
    run. (Without the restart of ``full`` this fails.)"""
    rng = np.random.default_rng(23)
    image, _ = attn_image(rng, causal=False)
    dut = Accelerator.from_params(image.params)
    reset = Signal()
    out: dict = {"resets": 0}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        for wait in RESET_POINTS:
            await host.write(word_address(image, "csr", Csr.ENTRY), 0)
            await host.write(word_address(image, "csr", Csr.CONTROL), int(Control.START))
            await ctx.tick().repeat(wait)
            ctx.set(reset, 1)
            await ctx.tick()
            ctx.set(reset, 0)
            out["resets"] += 1
        out["status"] = await run_program(host, image)
        out["csr"] = {c: await read_csr(host, image, c) for c in Csr}
        out["regions"] = {"act": await read_region(host, image, "act")}

    sim = Simulator(ResetInserter(reset)(dut))
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert out["resets"] == len(RESET_POINTS)
    _check_against_isasim(image, out)


@pytest.mark.parametrize("m,c", [
    (6, 7),                                  # ragged: 7 channels over 4-lane beats
    (5, 90),                                 # 23 beats a row: more than the beat FIFOs hold
])
def test_controller_lnorm_matches_isasim(m, c):
    """LNORM of a ragged tensor against sw.isasim."""
    rng = np.random.default_rng(23 + c)
    p = PARAMS if c < 64 else PARAMS.replace(act_depth=2048, wgt_depth=4096)
    dst = 512 if c < 64 else 1024
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    x = rng.integers(-128, 128, (m, c), dtype=np.int8)
    image.write("act", 0, isasim.pack_act(x, p.rows))
    gamma = rng.integers(-128, 128, c)
    beta = rng.integers(-20000, 20000, c)
    mult = rng.integers(1 << 14, 1 << 15, c)
    shift = rng.integers(14, 20, c)
    eps = 1000
    image.write("quant", 8 * 4, isasim.pack_quant(isa.EPS_WORD, eps=eps))
    image.write("quant", 8 * 5, isasim.pack_quant(isa.LNORM_WORD, gamma=gamma, beta=beta,
                                                  mult=mult, shift=shift))
    prog = [isa.lnorm(a_addr=0, dst_addr=dst, quant_addr=4, m=m, c=c), isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    want = ref.layernorm_int(x, gamma.astype(np.int8), beta.astype(np.int32), mult, shift, eps)
    assert_array_equal(isasim.unpack_act(result["regions"]["act"][dst:], m, c, p.rows), want)
    assert result["csr"][Csr.PERF_LNORM_BUSY] > 0


def test_controller_embed_matches_isasim():
    """EMBED of 6 token ids (ragged: 6 tokens over 4-row blocks) from a (10, 5) table."""
    rng = np.random.default_rng(29)
    p = PARAMS
    t, c, vocab = 6, 5, 10
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    ids = rng.integers(0, vocab, (t, 1)).astype(np.int32)
    ids[0, 0], ids[1, 0] = 0, vocab - 1
    table = rng.integers(-128, 128, (vocab, c), dtype=np.int8)
    image.write("act", 64, isasim.pack_act(ids, p.rows))
    image.write("wgt", 128, table.tobytes())
    prog = [isa.embed(ids_addr=64, table_addr=128, dst_addr=512, t=t, c=c, vocab=vocab),
            isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    result = run_on_accelerator(image)
    _check_against_isasim(image, result)
    got = isasim.unpack_act(result["regions"]["act"][512:], t, c, p.rows)
    assert_array_equal(got, ref.embedding_int(ids[:, 0], table))
    assert got.size == t * c


@pytest.mark.parametrize("bad", [0, 5])
def test_controller_embed_refuses_an_id_past_the_vocabulary(bad):
    """EMBED with one id >= vocab (the first, or the last: its verdict is the last one the
    id check gives, after the ids' copy) stops with BAD_TOKEN at the EMBED and writes no
    embedding row."""
    rng = np.random.default_rng(31 + bad)
    p = PARAMS
    t, c, vocab = 6, 5, 10
    image = isasim.MemoryImage(p)
    image.write("act", 0, rng.integers(0, 256, p.act_depth, dtype=np.uint8).tobytes())
    ids = rng.integers(0, vocab, (t, 1)).astype(np.int32)
    ids[bad, 0] = vocab
    image.write("act", 64, isasim.pack_act(ids, p.rows))
    image.write("wgt", 128, rng.integers(-128, 128, (vocab, c), dtype=np.int8).tobytes())
    prog = [isa.embed(ids_addr=64, table_addr=128, dst_addr=512, t=t, c=c, vocab=vocab),
            isa.halt()]
    image.load_program([isa.encode(i) for i in prog])
    result = run_on_accelerator(image)
    assert result["status"] == result["csr"][Csr.STATUS] == (
        Status.ERROR | ErrorCode.BAD_TOKEN << isa.STATUS_CODE_SHIFT)
    assert result["csr"][Csr.PC] == 0
    assert result["regions"]["act"] == bytes(image.regions["act"])


def test_controller_span_over_room_equals_the_plain_comparison():
    """The CHECK states' bounds comparison (``hw.controller._span_over_room``): ``span >
    room`` with the room kept as ``room >= 0`` and its low 16 bits (an act scratchpad of
    32 KiB), the span 48 bits. Every boundary (room - 1, room, room + 1, a span bit above the
    room's width, a negative room) and random vectors equal the integer comparison."""
    from amaranth.hdl import Module, Signal

    from hw.controller import _span_over_room

    depth = 1 << 15
    m = Module()
    span, fits, room = Signal(48), Signal(), Signal(depth.bit_length())
    bad = Signal()
    m.d.comb += bad.eq(_span_over_room(span, fits, room))
    rng = np.random.default_rng(7)
    vectors = []
    for r in (-1, -(1 << 40), 0, 1, 4, depth - 1, depth):
        for sp in (0, 1, r - 1, r, r + 1, depth, depth + 1, 1 << 16, 1 << 47, (1 << 48) - 1):
            if 0 <= sp < 1 << 48:
                vectors.append((sp, r))
    for _ in range(400):
        r = int(rng.integers(-depth, depth + 1))
        sp = int(rng.integers(0, 1 << int(rng.integers(1, 49))))
        vectors.append((sp, r))
    seen = []

    async def bench(ctx):
        for sp, r in vectors:
            ctx.set(span, sp)
            ctx.set(fits, r >= 0)
            ctx.set(room, r % (1 << len(room)))
            seen.append(ctx.get(bad))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [int(sp > r) for sp, r in vectors]
    assert len(seen) > 450 and 0 < sum(seen) < len(seen)


#: ``PARAMS`` without the attention and LayerNorm units: their instructions run on the host.
HOSTED = PARAMS.replace(host_units=("attn", "lnorm"))


def _lnorm_words(rng, image, quant_addr: int, c: int) -> None:
    image.write("quant", 8 * quant_addr, isasim.pack_quant(isa.EPS_WORD, eps=1000))
    image.write("quant", 8 * (quant_addr + 1), isasim.pack_quant(
        isa.LNORM_WORD, gamma=rng.integers(-128, 128, c), beta=rng.integers(-20000, 20000, c),
        mult=rng.integers(1 << 14, 1 << 15, c), shift=rng.integers(14, 20, c)))


def test_controller_without_a_unit_stops_at_its_instruction_and_resumes_after_it():
    """A design without LNORM's and ATTN's units (``host_units``): GEMM, LNORM of its result,
    a GEMM of that. The device stops at the LNORM with UNIT_ABSENT (PC 2, two retired, nothing
    written by it), as the ISA simulator does; the host runs the LNORM on the act bytes it
    reads back and writes the changed words; START at PC + 1 runs to HALT; the act bytes
    then equal a full design's run of the whole program."""
    rng = np.random.default_rng(41)
    image, _ = gemm_image(rng, 6, 5, 9, params=HOSTED)
    w2 = rng.integers(-127, 128, (9, 3), dtype=np.int8)
    image.write("wgt", 512, isasim.pack_wgt(w2, HOSTED.cols))
    image.write("quant", 8 * 30, isasim.pack_quant(isa.CHANNEL_WORD, bias=[5, -9, 100],
                                                   mult=[20000, 17000, 30000], shift=[10, 9, 11]))
    _lnorm_words(rng, image, 12, 9)
    first = isa.from_bytes(image.read("instr", 0, isa.INSTR_BYTES))[0]
    words = [first, isa.encode(isa.barrier()),
             isa.encode(isa.lnorm(a_addr=DST, dst_addr=768, quant_addr=12, m=6, c=9)),
             isa.encode(isa.barrier()),
             isa.encode(isa.gemm(a_addr=768, w_addr=512, dst_addr=896, quant_addr=30, m=6, k=9,
                                 n=3)),
             isa.encode(isa.halt())]
    image.load_program(words)
    full = isasim.MemoryImage(PARAMS)                  # the same bytes, every unit built
    full.regions = {r: bytearray(b) for r, b in image.regions.items()}
    isasim.run(full, entry=0)
    stopped = image.copy()
    with pytest.raises(isa.IsaError) as exc:
        isasim.run(stopped, entry=0)
    assert exc.value.code is ErrorCode.UNIT_ABSENT and exc.value.pc == 2
    dut = Accelerator.from_params(HOSTED)
    out: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        out["first"] = await run_program(host, image, 0)
        out["pc"] = await read_csr(host, image, Csr.PC)
        out["instret"] = await read_csr(host, image, Csr.PERF_INSTRET)
        act = await read_region(host, image, "act")
        out["act_stopped"] = act
        hosted = image.copy()
        hosted.write("act", 0, act)
        isasim.run_instruction(hosted, words[out["pc"]], out["pc"])
        new = bytes(hosted.regions["act"])
        base = word_address(image, "act")
        for i in range(0, len(new), 4):
            if new[i:i + 4] != act[i:i + 4]:
                await host.write(base + i // 4, int.from_bytes(new[i:i + 4], "little"))
        out["second"] = await run_program(host, image, out["pc"] + 1)
        out["act"] = await read_region(host, image, "act")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert out["first"] == stopped.read_csr(Csr.STATUS) == \
        Status.ERROR | ErrorCode.UNIT_ABSENT << isa.STATUS_CODE_SHIFT
    assert (out["pc"], out["instret"]) == (2, 2) == (stopped.read_csr(Csr.PC),
                                                      stopped.read_csr(Csr.PERF_INSTRET))
    assert out["act_stopped"] == bytes(stopped.regions["act"])
    assert out["second"] == Status.DONE
    assert out["act"] == bytes(full.regions["act"])
    assert out["act"] != out["act_stopped"]


def test_controller_without_a_unit_checks_the_opcode_before_the_fields():
    """On ``HOSTED``: an ATTN or LNORM stops with UNIT_ABSENT even with a reserved bit set
    (the host checks its fields), an illegal opcode is still ILLEGAL_OPCODE, and a GEMM with a
    reserved bit BAD_FIELD; the same STATUS and PC as the ISA simulator's."""
    rng = np.random.default_rng(43)
    image, _ = gemm_image(rng, 3, 4, 2, params=HOSTED)
    gemm = isa.from_bytes(image.read("instr", 0, isa.INSTR_BYTES))[0]
    attn_word, _ = attn_image(rng, True, p=HOSTED)
    attn = isa.from_bytes(attn_word.read("instr", 0, isa.INSTR_BYTES))[0]
    reserved = 1 << (isa.INSTR_BITS - 1)
    lnorm = isa.encode(isa.lnorm(a_addr=0, dst_addr=DST, quant_addr=4, m=3, c=4))
    halt = isa.encode(isa.halt())
    programs = [([gemm, isa.encode(isa.barrier()), attn | reserved, halt], 0),
                ([gemm, lnorm | reserved, halt], 0),
                ([0xFF, halt], 0),
                ([gemm | reserved, halt], 0),
                ([halt, attn, halt], 1)]
    csrs = run_programs_and_compare(image, programs)
    codes = [(c[Csr.STATUS] >> isa.STATUS_CODE_SHIFT, c[Csr.PC]) for c in csrs]
    assert codes == [(ErrorCode.UNIT_ABSENT, 2), (ErrorCode.UNIT_ABSENT, 1),
                     (ErrorCode.ILLEGAL_OPCODE, 0), (ErrorCode.BAD_FIELD, 0),
                     (ErrorCode.UNIT_ABSENT, 1)]
