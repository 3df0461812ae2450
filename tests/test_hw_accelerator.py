# SPDX-License-Identifier: Apache-2.0
"""``hw.accelerator.Accelerator`` in amaranth.sim through its host port: the CSR block, holes of
the memory map, and bad programs -- each ends with the documented error code in ``STATUS``
(equal to ``sw.isasim``'s), writes nothing, and the next START runs a good program."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from helpers import assert_selects_exclusive, watch_selects
from hostbus import HostDriver, read_csr, read_region, run_program, word_address, write_image
from test_hw_controller import PARAMS, gemm_image

from hw import isa
from hw.accelerator import Accelerator
from hw.bus import HostBus
from hw.isa import Control, Csr, ErrorCode, IsaError, Status
from hw.params import preset
from hw.scratchpad import Scratchpad
from sw import isasim


def _simulate(dut, bench) -> None:
    """Run ``bench`` on ``dut`` (an Accelerator), checking the controller's exclusive selects
    every cycle (``helpers.watch_selects``)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    seen = watch_selects(sim, dut)
    sim.run()
    assert_selects_exclusive(seen)


def _isasim_outcome(image, entry: int):
    """(STATUS, PC, PERF_INSTRET) and the image after ``sw.isasim`` runs from ``entry``."""
    expected = image.copy()
    try:
        isasim.run(expected, entry=entry)
    except IsaError:
        pass
    return tuple(expected.read_csr(c) for c in (Csr.STATUS, Csr.PC, Csr.PERF_INSTRET)), expected


def _run_compiled(params, program, image, after=None) -> dict:
    """Load ``image`` into an Accelerator of ``params``, run ``program`` from its entry; returns
    its STATUS, logit bytes and PERF_CYCLES, and whatever ``after(host, out)`` adds."""
    dut = Accelerator.from_params(params)
    out: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        out["status"] = await run_program(host, image, program.entry, max_polls=100_000)
        out["logits"] = await read_region(host, image, "act", program.output.offset,
                                          program.output.size)
        out["cycles"] = await read_csr(host, image, Csr.PERF_CYCLES)
        if after is not None:
            await after(host, out)

    _simulate(dut, bench)
    return out


def _bad_program(image):
    """Instruction memory: one bad instruction per entry, a good GEMM + HALT, then NOPs to the
    end. Returns ``{entry: expected error code}``."""
    p = PARAMS
    good = dict(a_addr=0, w_addr=64, dst_addr=512, quant_addr=3, m=5, k=7, n=6)
    # Quant words with shift 0 at word 40: a BAD_QUANT for an int8 GEMM.
    image.write("quant", 8 * 40, isasim.pack_quant(isa.CHANNEL_WORD, bias=[1] * 6,
                                                   mult=[1 << 14] * 6, shift=[9, 9, 0, 9, 9, 9]))
    cases = {
        0: (0x42, ErrorCode.ILLEGAL_OPCODE),
        1: (isa.encode(isa.gemm(**{**good, "dst_addr": p.act_depth - 4})), ErrorCode.BAD_ADDRESS),
        2: (isa.encode(isa.gemm(**{**good, "a_addr": 2})), ErrorCode.BAD_ADDRESS),
        3: (isa.encode(isa.gemm(**{**good, "k": p.k_depth + 1})), ErrorCode.BAD_SHAPE),
        4: (isa.encode(isa.gemm(**good)) | 1 << 100, ErrorCode.BAD_FIELD),
        5: (isa.encode(isa.gemm(**{**good, "quant_addr": 40})), ErrorCode.BAD_QUANT),
        6: (isa.encode(isa.gemm(**good, lut=p.lut_count)), ErrorCode.BAD_FIELD),
        7: (isa.encode(isa.gemm(**{**good, "quant_addr": 60})), ErrorCode.BAD_ADDRESS),
        10: (isa.encode(isa.vec(isa.VecFunc.ADD, a_addr=0, b_addr=0, dst_addr=512, m=5, c=7))
             | 3 << 16, ErrorCode.BAD_FIELD),                  # VEC func 3
        11: (isa.encode(isa.vec(isa.VecFunc.ADD, a_addr=0, b_addr=0, dst_addr=512, m=5, c=7,
                                quant_addr=50)), ErrorCode.BAD_QUANT),   # shift 0
        12: (isa.encode(isa.vec(isa.VecFunc.LUT, a_addr=0, dst_addr=512, m=5, c=7, lut=0,
                                quant_addr=1)), ErrorCode.BAD_FIELD),
        13: (isa.encode(isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=512, quant_addr=2, t=5,
                                 heads=1, head_dim=p.head_dim + 1, window=2, causal=True,
                                 src_cols=16, dst_cols=16)), ErrorCode.BAD_SHAPE),
        14: (isa.encode(isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=512, quant_addr=50, t=5,
                                 heads=1, head_dim=2, window=2, causal=True, src_cols=7,
                                 dst_cols=7)), ErrorCode.BAD_QUANT),
        15: (isa.encode(isa.lnorm(a_addr=0, dst_addr=512, quant_addr=3, m=5, c=0)),
             ErrorCode.BAD_SHAPE),
        16: (isa.encode(isa.lnorm(a_addr=0, dst_addr=512, quant_addr=40, m=5, c=3)),
             ErrorCode.BAD_QUANT),              # epsilon 1 | 2**14 << 32 > 3**4 * 2**16
        17: (isa.encode(isa.embed(ids_addr=0, table_addr=0, dst_addr=512, t=5, c=3, vocab=9)),
             ErrorCode.BAD_TOKEN),              # the ids are A's random bytes
        18: (isa.encode(isa.gemm(**{**good, "dst_addr": 48})), ErrorCode.BAD_ADDRESS),  # over A
        # ATTN operands past the act words: dst's span ((2 - 1) * 7 + 2) * 4 = 36 > 16 bytes
        # left; K's the same with src_cols (the check's room registers, hw.controller).
        19: (isa.encode(isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=p.act_depth - 16,
                                 quant_addr=2, t=5, heads=1, head_dim=2, window=2, causal=True,
                                 src_cols=7, dst_cols=7)), ErrorCode.BAD_ADDRESS),
        20: (isa.encode(isa.attn(q_addr=0, k_addr=p.act_depth - 32, v_addr=0, dst_addr=512,
                                 quant_addr=2, t=5, heads=1, head_dim=2, window=2, causal=True,
                                 src_cols=7, dst_cols=7)), ErrorCode.BAD_ADDRESS),
        21: (isa.encode(isa.nop()), ErrorCode.NO_HALT),     # NOPs from here to the end
    }
    words = [isa.encode(isa.nop())] * p.instr_depth
    for entry, (word, _) in cases.items():
        words[entry] = word
    words[8] = isa.encode(isa.gemm(**good))
    words[9] = isa.encode(isa.halt())
    image.load_program(words)
    return {entry: code for entry, (_, code) in cases.items()}


def test_accelerator_bad_programs_fail_cleanly():
    rng = np.random.default_rng(11)
    image, _ = gemm_image(rng, 5, 7, 6)
    codes = _bad_program(image)
    dut = Accelerator.from_params(PARAMS)
    seen: dict[int, tuple] = {}
    regions = ("act", "wgt", "quant", "lut")
    out: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        for entry in codes:
            status = await run_program(host, image, entry)
            seen[entry] = (status, await read_csr(host, image, Csr.PC),
                           await read_csr(host, image, Csr.PERF_INSTRET))
            assert ctx.get(dut.busy) == 0 and ctx.get(dut.done) == 0
        out["untouched"] = {r: await read_region(host, image, r) for r in regions}
        out["good"] = await run_program(host, image, 8)
        out["act"] = await read_region(host, image, "act")
        assert ctx.get(dut.done) == 1, (out["good"], seen)

    _simulate(dut, bench)
    for entry, code in codes.items():
        want, _ = _isasim_outcome(image, entry)
        assert seen[entry] == want, (entry, code)
        assert seen[entry][0] == Status.ERROR | int(code) << isa.STATUS_CODE_SHIFT
    for region in regions:                   # no failed instruction wrote anything
        assert out["untouched"][region] == bytes(image.regions[region]), region
    _, expected = _isasim_outcome(image, 8)
    assert out["good"] == Status.DONE
    assert out["act"] == bytes(expected.regions["act"])
    assert out["act"] != bytes(image.regions["act"])
    assert len(seen) == 20


def test_accelerator_lnorm_epsilon_bound_is_exact():
    """LNORM's epsilon check (``eps <= c**4 << 16``, else ``BAD_QUANT``), decided in register
    stages after the word lands: at the bound and one past it, in the high and the low bits,
    with one channel (the shortest copy: the verdict's latest slot) and with two. Every
    outcome and the act scratchpad equal ``sw.isasim``'s."""
    image, _ = gemm_image(np.random.default_rng(3), 5, 7, 6)
    words = [isa.encode(isa.nop())] * PARAMS.instr_depth
    cases = []
    for c in (1, 2):
        bound = c ** 4 << 16
        for eps in (0, bound, bound + 1, bound + (1 << 16), (1 << 62) - 1):
            k = len(cases)
            qaddr = 20 + 4 * k
            image.write("quant", 8 * qaddr, isasim.pack_quant(isa.EPS_WORD, eps=eps))
            image.write("quant", 8 * (qaddr + 1), isasim.pack_quant(
                isa.LNORM_WORD, gamma=[3] * c, beta=[0] * c, mult=[1 << 14] * c,
                shift=[16] * c))
            words[2 * k] = isa.encode(isa.lnorm(a_addr=0, dst_addr=512, quant_addr=qaddr,
                                                m=5, c=c))
            words[2 * k + 1] = isa.encode(isa.halt())
            cases.append((2 * k, eps > bound))
    image.load_program(words)
    dut = Accelerator.from_params(PARAMS)
    seen: dict[int, tuple] = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        for entry, _ in cases:
            status = await run_program(host, image, entry)
            seen[entry] = (status, await read_csr(host, image, Csr.PC),
                           await read_csr(host, image, Csr.PERF_INSTRET),
                           await read_region(host, image, "act"))

    _simulate(dut, bench)
    failed = 0
    expected = image
    for entry, bad in cases:               # one image, as the board's: the runs in order
        want, expected = _isasim_outcome(expected, entry)
        assert seen[entry][:3] == want, entry
        assert seen[entry][3] == bytes(expected.regions["act"]), entry
        if bad:
            assert want[0] == Status.ERROR | int(ErrorCode.BAD_QUANT) << isa.STATUS_CODE_SHIFT
            failed += 1
        else:
            assert want[0] == Status.DONE, entry
    assert (len(seen), failed) == (10, 6)


def test_accelerator_csrs_and_holes():
    image = isasim.MemoryImage(PARAMS)
    dut = Accelerator.from_params(PARAMS)
    seen: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        csr = lambda c: word_address(image, "csr", c)   # noqa: E731
        seen["id"] = await host.read(csr(Csr.DESIGN_ID))
        seen["version"] = await host.read(csr(Csr.ISA_VERSION))
        await host.write(csr(Csr.ENTRY), 0x12345678)
        await host.write(csr(Csr.ENTRY), 0xAB, en=0b0001)
        seen["entry"] = await host.read(csr(Csr.ENTRY))
        await host.write(csr(Csr.DESIGN_ID), 0)          # read-only: ignored
        seen["id_after"] = await host.read(csr(Csr.DESIGN_ID))
        seen["control"] = await host.read(csr(Csr.CONTROL))
        seen["status"] = await host.read(csr(Csr.STATUS))
        # Holes: past a region, past the CSR block, past every region.
        holes = [word_address(image, "act", PARAMS.act_depth), csr(isa.CSR_BLOCK_BYTES),
                 (len(isa.REGION_NAMES) << isa.REGION_SHIFT) >> 2]
        for addr in holes:
            await host.write(addr, 0xFFFFFFFF)
        seen["holes"] = [await host.read(addr) for addr in holes]
        seen["act0"] = await host.read(word_address(image, "act", 0))
        # A program at ENTRY 0x...AB is past the instruction memory: NO_HALT, start pulses.
        ctx.set(dut.host.addr, csr(Csr.CONTROL))
        ctx.set(dut.host.w_data, int(Control.START))
        ctx.set(dut.host.w_en, 0xF)
        ctx.set(dut.host.write, 1)
        ctx.set(dut.host.valid, 1)
        # The CONTROL write goes through the host stage, then reaches the controller a cycle
        # later (a register): `start` pulses two cycles after the transfer, and `busy` and
        # STATUS show BUSY from that pulse on.
        seen["start"] = [ctx.get(dut.start)]
        await ctx.tick()
        ctx.set(dut.host.valid, 0)
        seen["start"] += [ctx.get(dut.start), ctx.get(dut.busy)]
        await ctx.tick()
        seen["start"] += [ctx.get(dut.start), ctx.get(dut.busy),
                          ctx.get(dut.status) & Status.BUSY]
        await ctx.tick()
        seen["start"] += [ctx.get(dut.start), ctx.get(dut.busy)]
        for _ in range(10):
            await ctx.tick()
        seen["status_err"] = await host.read(csr(Csr.STATUS))
        seen["status_port"] = ctx.get(dut.status)
        seen["pc"] = await host.read(csr(Csr.PC))
        await host.write(csr(Csr.CONTROL), int(Control.CLEAR))
        seen["status_clear"] = await host.read(csr(Csr.STATUS))

    _simulate(dut, bench)
    assert seen["id"] == seen["id_after"] == PARAMS.design_id
    assert seen["version"] == isa.ISA_VERSION
    assert seen["entry"] == 0x123456AB
    assert seen["control"] == 0 and seen["status"] == 0
    assert seen["holes"] == [0, 0, 0] and seen["act0"] == 0
    assert seen["status_err"] == Status.ERROR | ErrorCode.NO_HALT << isa.STATUS_CODE_SHIFT
    assert seen["status_port"] == seen["status_err"]
    assert seen["pc"] == 0x123456AB
    assert seen["start"] == [0, 0, 0, 1, 1, Status.BUSY, 0, 1]
    assert seen["status_clear"] == 0


def test_accelerator_host_port_signature():
    dut = Accelerator.from_params(PARAMS)
    width = isa.memory_map(PARAMS).address_width - 2
    assert dut.host.signature.flip() == HostBus.Signature(addr_width=width)
    assert dut.memory_map == isa.memory_map(PARAMS)
    # host stage, request stage, the RAM's two ranks, each block's answer register, the
    # top's answer
    assert Accelerator.read_latency == 6
    assert Scratchpad.latency == 4                # a unit read: the issue stage in front
    with pytest.raises(TypeError):
        Accelerator.from_params(None)


@pytest.mark.parametrize("extra", [{}, {"requant_lanes": 3, "ln_engines": 1}],
                         ids=["preset", "fewer-requant-lanes-and-ln-engines"])
def test_accelerator_runs_a_whole_model(extra):
    """A compiled random LightTransformer layer (input projection, LayerNorms, ragged attention
    heads, FFN with GELU LUT, residual adds, mean pool, int32 head): the logits equal
    ``sw.ref.model_forward_int`` and ``sw.isasim`` bit for bit -- the three-way contract. Also
    with the GEMM requantizer on 3 lanes for the 4 columns (a row in 2 phases) and one
    LayerNorm scalar engine."""
    from sw import ref
    from sw.program import compile_program, random_artifact

    params = PARAMS.replace(act_depth=2048, wgt_depth=8192, instr_depth=64, head_dim=8, **extra)
    cfg = dict(task="classify", input_kind="patches", patch_dim=5, seq_len=6, n_classes=3,
               d_model=12, n_heads=2, n_layers=1, d_ff=20, window=4)
    art = random_artifact(cfg, seed=2)
    program = compile_program(art, params)
    assert program.mode == "resident"
    x = np.random.default_rng(9).integers(-128, 128, size=(6, 5), dtype=np.int8)
    image = program.image()
    program.write_input(image, x)
    out = _run_compiled(params, program, image)
    want = ref.model_forward_int(art, x)
    assert out["status"] == Status.DONE
    got = program.unpack_output(out["logits"])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, isasim.simulate(program, x))
    assert got.shape == (3,) and out["cycles"] > 0


@pytest.mark.slow                    # ~35k cycles per image: about 2 CPU minutes in amaranth.sim
def test_accelerator_runs_the_shipped_digits_model():
    """The shipped int8 digits model, resident on ``tiny`` grown to its head_dim of 16: two
    test images (the second writes only its input, as the driver does), logits equal to
    ``sw.ref.model_forward_int`` bit for bit."""
    from pathlib import Path

    from sw import ref
    from sw.artifact import load_artifact
    from sw.program import compile_program
    from sw.testset import load_testset

    art = load_artifact(Path(__file__).resolve().parent.parent / "sw" / "artifacts"
                        / "digits_int8.safetensors")
    x_q, _ = load_testset(art)
    params = preset("tiny").replace(head_dim=16)
    program = compile_program(art, params)
    assert program.mode == "resident"
    image = program.image()
    dut = Accelerator.from_params(params)
    samples = x_q[:2]
    got: list = []
    cycles: list = []

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        for sample in samples:
            await host.write_bytes(word_address(image, "act", program.input.offset),
                                   program.pack_input(sample))
            assert await run_program(host, image, program.entry,
                                     max_polls=200_000) == Status.DONE
            got.append(program.unpack_output(await read_region(
                host, image, "act", program.output.offset, program.output.size)))
            cycles.append(await read_csr(host, image, Csr.PERF_CYCLES))

    _simulate(dut, bench)
    want = ref.model_forward_int(art, samples)
    np.testing.assert_array_equal(np.stack(got), want)
    assert len(got) == 2 and min(cycles) > 0
    print(f"digits on tiny (head_dim 16): {cycles} cycles per inference")


def _fence(monkeypatch, fence_words: int, connect=None):
    """Fence the act words at ``fence_words`` behind the controller's instruction checks
    (which still allow the whole ``act_depth``): reads through :func:`_fenced_connect` (the act
    scratchpad's ``r_error``), writes through the controller's own run-time check of each
    posted write (``hw.controller`` asks ``unit_words_of`` for the act words). So the bounds
    errors that no program can reach past the instruction checks are reached here."""
    import hw.accelerator
    import hw.controller
    import hw.scratchpad

    monkeypatch.setattr(hw.accelerator, "connect", connect or _fenced_connect(fence_words))
    monkeypatch.setattr(hw.controller, "unit_words_of", lambda params, region: (
        fence_words if region == "act" else hw.scratchpad.unit_words_of(params, region)))


def _fenced_connect(fence_words: int):
    """A stand-in for ``hw.accelerator.connect`` that puts a fence between the controller's act
    port and the act scratchpad: unit words at or past ``fence_words`` are refused (``r_error``
    / ``w_error``) and dropped, as by a scratchpad of that size."""
    from amaranth.hdl import Signal
    from amaranth.lib.wiring import connect

    def fenced(m, ctrl_port, spad_port):
        if ctrl_port.r_en.name != "act__r_en":
            return connect(m, ctrl_port, spad_port)
        r_out = ctrl_port.r_addr >= fence_words
        w_out = ctrl_port.w_addr >= fence_words
        # Reported a cycle after the request, as the scratchpad's issue stage does.
        r_refused = Signal(name="fence_r_refused")
        w_refused = Signal(name="fence_w_refused")
        m.d.sync += [r_refused.eq(ctrl_port.r_en & r_out), w_refused.eq(ctrl_port.w_en & w_out)]
        m.d.comb += [
            spad_port.r_en.eq(ctrl_port.r_en & ~r_out), spad_port.r_addr.eq(ctrl_port.r_addr),
            spad_port.w_en.eq(ctrl_port.w_en & ~w_out), spad_port.w_addr.eq(ctrl_port.w_addr),
            spad_port.w_data.eq(ctrl_port.w_data), spad_port.w_mask.eq(ctrl_port.w_mask),
            ctrl_port.r_data.eq(spad_port.r_data),
            ctrl_port.r_error.eq(spad_port.r_error | r_refused),
            ctrl_port.w_error.eq(spad_port.w_error | w_refused),
        ]
    return fenced


def _fenced_program(image, cases: dict, good: dict) -> None:
    """Load ``cases`` (``{entry: instruction}``), a good GEMM at 8 and HALT at 9, NOPs elsewhere."""
    words = [isa.encode(isa.nop())] * PARAMS.instr_depth
    for entry, instr in cases.items():
        words[entry] = isa.encode(instr)
    words[8] = isa.encode(isa.gemm(**good, dst_addr=256))
    words[9] = isa.encode(isa.halt())
    image.load_program(words)


def _fenced_image(monkeypatch, *, seed: int):
    """A GEMM image (A at act 0, W at wgt 64, quant word 3) with an ATTN word at quant 16, a
    MEANPOOL channel word at 20 and LNORM's epsilon and channel words at 24 and 25, behind an
    act port fenced at 512 bytes (:func:`_fence`)."""
    _fence(monkeypatch, 512 // PARAMS.rows)
    image, _ = gemm_image(np.random.default_rng(seed), 5, 7, 6)
    image.write("quant", 8 * 16, isasim.pack_quant(isa.ATTN_WORD, score_mult=23000,
                                                   score_shift=17, out_mult=20000, out_shift=26))
    image.write("quant", 8 * 20, isasim.pack_quant(isa.CHANNEL_WORD, mult=29000, shift=18))
    image.write("quant", 8 * 24, isasim.pack_quant(isa.EPS_WORD, eps=1000))
    image.write("quant", 8 * 25, isasim.pack_quant(isa.LNORM_WORD, gamma=[3] * 7, beta=[0] * 7,
                                                   mult=[1 << 14] * 7, shift=[16] * 7))
    return image


def test_accelerator_scratchpad_bounds_errors_stop_the_program(monkeypatch):
    """The backstop behind the controller's checks: a read the act scratchpad refuses (GEMM's A
    feeder, VEC's copy engine, ATTN's K gather, LNORM's x gather) and a write the controller's
    run-time check of its posted writes refuses (VEC MEANPOOL's write back, GEMM's drainer)
    each end the program with ``BAD_ADDRESS`` at that instruction, retire nothing and write
    nothing; a START after them runs a good program (and after each of them, a program of
    every unit: :func:`test_accelerator_units_recover_from_a_failure_mid_job`)."""
    p = PARAMS
    image = _fenced_image(monkeypatch, seed=5)
    good = dict(a_addr=0, w_addr=64, quant_addr=3, m=5, k=7, n=6)
    past = p.act_depth - 256                            # past the fence, inside act_depth
    cases = {
        1: isa.gemm(**{**good, "a_addr": past}, dst_addr=256),        # feeder reads
        2: isa.vec(isa.VecFunc.ADD, a_addr=0, b_addr=past, dst_addr=256, m=5, c=7,
                   quant_addr=3),                                     # copy-engine reads
        3: isa.attn(q_addr=0, k_addr=past, v_addr=0, dst_addr=256, quant_addr=16, t=5,
                    heads=1, head_dim=2, window=2, causal=True, src_cols=7, dst_cols=7),
        4: isa.lnorm(a_addr=past, dst_addr=256, quant_addr=24, m=5, c=7),  # x gather reads
        5: isa.vec(isa.VecFunc.MEANPOOL, a_addr=0, dst_addr=past, quant_addr=20, m=5, c=7),
        0: isa.gemm(**good, dst_addr=past),                           # drainer writes
    }
    _fenced_program(image, cases, good)
    dut = Accelerator.from_params(p)
    seen: dict[int, tuple] = {}
    act: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        for entry in cases:
            if entry == 0:
                seen["good"] = await run_program(host, image, 8)
                act["good"] = await read_region(host, image, "act")
            status = await run_program(host, image, entry)
            seen[entry] = (status, await read_csr(host, image, Csr.PC),
                           await read_csr(host, image, Csr.PERF_INSTRET))
            act[entry] = await read_region(host, image, "act")

    _simulate(dut, bench)
    bad = Status.ERROR | int(ErrorCode.BAD_ADDRESS) << isa.STATUS_CODE_SHIFT
    assert seen.pop("good") == Status.DONE
    assert seen == {entry: (bad, entry, 0) for entry in cases}
    for entry in (1, 2, 3, 4, 5):
        assert act[entry] == bytes(image.regions["act"]), entry
    _, expected = _isasim_outcome(image, 8)
    assert act["good"] == act[0] == bytes(expected.regions["act"]) != bytes(image.regions["act"])


def test_accelerator_units_recover_from_a_failure_mid_job(monkeypatch):
    """A program that fails while a unit is mid-job leaves nothing behind for the next one:
    GEMM's drainer refused with tiles still in the core, VEC's copy refused after some beats
    reached the vector unit, ATTN's K gather, LNORM's x gather and MEANPOOL's write back
    refused. After each failure a program of every unit (GEMM, VEC ADD, ATTN, LNORM, MEANPOOL)
    must leave the act scratchpad exactly as ``sw.isasim`` does (the controller holds the
    units in reset for a cycle after FAIL)."""
    p = PARAMS
    image = _fenced_image(monkeypatch, seed=7)
    gemm = dict(a_addr=0, w_addr=64, quant_addr=3, m=5, k=7, n=6)
    past = p.act_depth - 256                            # past the fence, inside act_depth
    attn = dict(q_addr=0, v_addr=0, quant_addr=16, t=5, heads=1, head_dim=2, window=2,
                causal=True, src_cols=7, dst_cols=7)
    failing = {
        0: isa.gemm(**gemm, dst_addr=past),                           # drainer writes
        1: isa.vec(isa.VecFunc.ADD, a_addr=0, b_addr=past, dst_addr=256, m=5, c=7,
                   quant_addr=3),                                     # copy-engine reads
        2: isa.attn(**attn, k_addr=past, dst_addr=256),               # K gather reads
        3: isa.lnorm(a_addr=past, dst_addr=256, quant_addr=24, m=5, c=7),  # x gather reads
        4: isa.vec(isa.VecFunc.MEANPOOL, a_addr=0, dst_addr=past, quant_addr=20, m=5, c=7),
    }
    every_unit = [                                      # entry 10: inside the fence
        isa.gemm(**gemm, dst_addr=256),
        isa.vec(isa.VecFunc.ADD, a_addr=0, b_addr=0, dst_addr=320, m=5, c=7, quant_addr=3),
        isa.attn(**attn, k_addr=0, dst_addr=384),
        isa.lnorm(a_addr=0, dst_addr=448, quant_addr=24, m=5, c=7),
        isa.vec(isa.VecFunc.MEANPOOL, a_addr=0, dst_addr=200, quant_addr=20, m=5, c=7),
        isa.halt(),
    ]
    words = [isa.encode(isa.nop())] * p.instr_depth
    for entry, instr in failing.items():
        words[entry] = isa.encode(instr)
    for k, instr in enumerate(every_unit):
        words[10 + k] = isa.encode(instr)
    image.load_program(words)
    dut = Accelerator.from_params(p)
    statuses: dict = {}
    acts: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        for entry in failing:
            statuses[entry] = await run_program(host, image, entry)
            statuses[f"after {entry}"] = await run_program(host, image, 10)
            acts[entry] = await read_region(host, image, "act")

    _simulate(dut, bench)
    bad = Status.ERROR | int(ErrorCode.BAD_ADDRESS) << isa.STATUS_CODE_SHIFT
    assert statuses == {**{entry: bad for entry in failing},
                        **{f"after {entry}": Status.DONE for entry in failing}}
    _, expected = _isasim_outcome(image, 10)
    assert bytes(expected.regions["act"]) != bytes(image.regions["act"])
    assert len(acts) == 5
    want = np.frombuffer(bytes(expected.regions["act"]), np.uint8)
    wrong = {entry: np.flatnonzero(np.frombuffer(act, np.uint8) != want).tolist()[:12]
             for entry, act in acts.items()}
    assert wrong == {entry: [] for entry in failing}


def test_accelerator_touches_no_scratchpad_while_idle(monkeypatch):
    """The top grants the host a scratchpad on ``not busy`` (``Scratchpad(host_when_idle=True)``),
    so the controller must leave every unit port alone while idle, also right after a program
    failed mid-run: ATTN's scatter refused mid-row (a row's first element inside a fenced act
    port, the second past it, two more to go), VEC MEANPOOL's write back and GEMM's drainer
    refused. Every cycle is watched; the programs and the idle cycles checked are counted.
    (Without the scatter's stop at FAIL, the act port is written while idle.)"""
    p = PARAMS
    fence_words = 512 // p.rows
    fenced = _fenced_connect(fence_words)
    ports = []

    def recording(m, ctrl_port, spad_port):
        ports.append(ctrl_port)
        return fenced(m, ctrl_port, spad_port)

    _fence(monkeypatch, fence_words, recording)
    rng = np.random.default_rng(6)
    image, _ = gemm_image(rng, 5, 7, 6)                 # A at 0, W at wgt 64, quant 3
    image.write("quant", 8 * 16, isasim.pack_quant(isa.ATTN_WORD, score_mult=23000,
                                                   score_shift=17, out_mult=20000, out_shift=26))
    image.write("quant", 8 * 20, isasim.pack_quant(isa.CHANNEL_WORD, mult=29000, shift=18))
    good = dict(a_addr=0, w_addr=64, quant_addr=3, m=5, k=7, n=6)
    past = p.act_depth - 256
    cases = {
        1: isa.attn(q_addr=0, k_addr=0, v_addr=0, dst_addr=(fence_words - 1) * p.rows,
                    quant_addr=16, t=5, heads=1, head_dim=4, window=2, causal=True,
                    src_cols=7, dst_cols=7),                           # scatter mid-row
        2: isa.vec(isa.VecFunc.MEANPOOL, a_addr=0, dst_addr=past, quant_addr=20, m=5, c=7),
        0: isa.gemm(**good, dst_addr=past),                            # drainer writes
    }
    _fenced_program(image, cases, good)
    dut = Accelerator.from_params(p)
    seen: dict = {"idle_cycles": 0, "busy_cycles": 0, "touched": []}
    statuses: dict = {}

    async def bench(ctx):
        host = HostDriver(ctx, dut.host)
        await write_image(host, image)
        statuses["good"] = await run_program(host, image, 8)
        for entry in cases:
            statuses[entry] = await run_program(host, image, entry)
            for _ in range(20):                         # the cycles right after the FAIL
                await ctx.tick()
        seen["done"] = True

    async def watch(ctx):
        while not seen.get("done"):
            await ctx.tick()
            if ctx.get(dut.busy):
                seen["busy_cycles"] += 1
                continue
            seen["idle_cycles"] += 1
            for port in ports:
                for enable in (port.r_en, port.w_en):
                    if ctx.get(enable):
                        seen["touched"].append(enable.name)

    sim = Simulator(dut)                                # elaborates: the ports are recorded
    assert len(ports) == 5
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(watch)
    sim.run()
    bad = Status.ERROR | int(ErrorCode.BAD_ADDRESS) << isa.STATUS_CODE_SHIFT
    assert statuses == {"good": Status.DONE, **{entry: bad for entry in cases}}
    assert seen["touched"] == []
    assert seen["idle_cycles"] > 200 and seen["busy_cycles"] > 100


@pytest.mark.parametrize("cols", [6, 3])
def test_accelerator_non_power_of_two_cols(cols):
    """An array of 6 or 3 columns (weight words of 6 or 3 bytes: 3 or 12-byte scratchpad rows,
    3 host words a row): the weight addresses, column tiles and embedding rows go through the
    sequential dividers (``DIVIDE``, ``EMBED_ROW_DIV``) and the host's weight writes through
    the scratchpad's. A token model (EMBED, causal attention, an LM head over 9 columns) and a
    GEMM with a misaligned weight address; the logits equal ``sw.ref.model_forward_int`` and
    ``sw.isasim``."""
    from sw import ref
    from sw.program import compile_program, random_artifact

    params = PARAMS.replace(cols=cols, act_depth=2048, wgt_depth=8192, instr_depth=64,
                            head_dim=8)
    cfg = dict(task="lm", input_kind="tokens", vocab_size=9, seq_len=5, n_classes=9,
               d_model=8, n_heads=1, n_layers=1, d_ff=10, window=4, causal=True)
    art = random_artifact(cfg, seed=5)
    program = compile_program(art, params)
    x = np.random.default_rng(3).integers(0, 9, size=5)
    image = program.image()
    program.write_input(image, x)
    # Behind the program's HALT, a GEMM whose weights start mid-word: BAD_ADDRESS.
    bad_entry = params.instr_depth - 2
    bad = isa.gemm(a_addr=0, w_addr=cols + 1, dst_addr=1024, quant_addr=0, m=4, k=2, n=2)
    image.write("instr", isa.INSTR_BYTES * bad_entry, b"".join(
        isa.encode(i).to_bytes(isa.INSTR_BYTES, "little") for i in (bad, isa.halt())))

    async def run_bad(host, out):
        out["bad"] = await run_program(host, image, bad_entry, max_polls=1_000)
        out["bad_pc"] = await read_csr(host, image, Csr.PC)

    out = _run_compiled(params, program, image, after=run_bad)
    want = ref.model_forward_int(art, x)
    assert out["status"] == Status.DONE
    got = program.unpack_output(out["logits"])
    assert got.shape == want.shape == (5, 9)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, isasim.simulate(program, x))
    (status, pc, _), _ = _isasim_outcome(image, bad_entry)
    assert out["bad"] == status == Status.ERROR | ErrorCode.BAD_ADDRESS << isa.STATUS_CODE_SHIFT
    assert out["bad_pc"] == pc == bad_entry
