# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests of the hw.multiplier factory: portable and ECP5 ``MULT18X18D`` multipliers."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.sim import Simulator
from helpers import FakePlatform

from hw.gemm import GemmPipeline
from hw.multiplier import (
    ECP5Multiplier,
    Multiplier,
    PipelinedMultiplier,
    make_multiplier,
)

# -- multiplier factory ----------------------------------------------------------------------

def test_multiplier_factory_selects_by_family():
    assert isinstance(make_multiplier(None, 8, 8), PipelinedMultiplier)
    assert isinstance(make_multiplier(FakePlatform("ecp5"), 8, 8), ECP5Multiplier)
    assert isinstance(make_multiplier(None, 8, 8, family="ecp5"), ECP5Multiplier)
    assert isinstance(make_multiplier(FakePlatform("ecp5"), 8, 8, use_dsp=False),
                      PipelinedMultiplier)
    assert isinstance(make_multiplier(FakePlatform("iCE40"), 8, 8), PipelinedMultiplier)
    # The real board platform (amaranth-boards) is recognised too.
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    assert isinstance(make_multiplier(ULX3S_85F_Platform(), 8, 8), ECP5Multiplier)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"a_width": 0, "b_width": 8}, ValueError, "a_width must be an integer >= 1, not 0"),
    ({"a_width": 8, "b_width": "8"}, TypeError, "b_width must be an integer, not '8'"),
    ({"a_width": 8, "b_width": 8, "use_dsp": 1}, TypeError, "use_dsp must be a bool"),
    ({"a_width": 8, "b_width": 8, "family": 5}, TypeError, "family must be a string"),
    ({"a_width": 19, "b_width": 8, "family": "ecp5"}, ValueError, "a_width must be at most 18"),
])
def test_multiplier_rejects_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        make_multiplier(None, **kwargs)


def test_multiplier_portable_latency_and_enable():
    dut = PipelinedMultiplier(9, 6)
    rng = np.random.default_rng(0)
    ops = [(int(rng.integers(-256, 256)), int(rng.integers(-32, 32))) for _ in range(40)]
    ens = [int(rng.random() < 0.7) for _ in ops]

    async def tb(ctx):
        # Model: two enabled register ranks.
        stage_in, stage_out = (0, 0), 0
        for (a, b), en in zip(ops, ens):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                stage_out = stage_in[0] * stage_in[1]
                stage_in = (a, b)
            assert ctx.get(dut.p) == stage_out

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert dut.latency == Multiplier.latency == 2


def test_multiplier_ecp5_instance_wiring():
    text = rtlil.convert(ECP5Multiplier(8, 8), name="mul")
    assert "MULT18X18D" in text
    for param, value in [("REG_INPUTA_CLK", "CLK0"), ("REG_INPUTB_CLK", "CLK0"),
                         ("REG_OUTPUT_CLK", "CLK0"), ("REG_INPUTA_CE", "CE0"),
                         ("REG_OUTPUT_CE", "CE0"), ("REG_PIPELINE_CLK", "NONE")]:
        assert re.search(rf'parameter \\{param} "{value}"', text), param
    # Signed operands, enable on CE0, the sync clock on CLK0.
    assert re.search(r"connect \\SIGNEDA 1'1", text)
    assert re.search(r"connect \\SIGNEDB 1'1", text)
    assert re.search(r"connect \\CE0 \\en", text)
    assert re.search(r"connect \\CLK0 \\clk", text)
    # int8 sign-extended to 18 bits: A17 is driven by the sign bit of a (a[7]).
    assert re.search(r"connect \\A17 ", text)


def test_multiplier_ecp5_counts_in_gemm_pipeline():
    text = verilog.convert(GemmPipeline(2, 3, family="ecp5"), name="gemm", emit_src=False)
    # One DSP per PE plus two per requantizer lane.
    assert len(re.findall(r"^\s*MULT18X18D\b", text, re.M)) == 2 * 3 + 2 * 3
    text = verilog.convert(GemmPipeline(2, 3, family="ecp5", use_dsp=False), name="gemm",
                           emit_src=False)
    assert "MULT18X18D" not in text
