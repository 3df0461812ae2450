# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""The accelerator top's DSP budget on the ULX3S-85F (ECP5-85F: 156 ``MULT18X18D``), and the
Colorlight 5A-75B's whole board top on its LFE5U-25F (28 ``MULT18X18D``, 56 ``DP16KD``).

The top is elaborated for an ECP5 stand-in platform (the Colorlight's on its real platform) and
its RTLIL counted: ``MULT18X18D`` and ``DP16KD`` instances per unit, ``$mul`` cells between two
signals, which ``synth_ecp5`` would map to further ``MULT18X18D`` blocks (a constant
power-of-two factor becomes a shift instead), and memories left to Yosys.
"""

from __future__ import annotations

import math
import re

import pytest
from amaranth.back import rtlil
from helpers import FakePlatform

from boards.build import BOARD_TOP, board_platform, make_top, preset_for_board
from hw.accelerator import Accelerator
from hw.params import preset

#: ``MULT18X18D`` blocks of the ECP5-85F.
ECP5_85F_DSPS = 156
#: ``MULT18X18D`` and ``DP16KD`` blocks and LUT4s of the LFE5U-25F (Colorlight 5A-75B).
ECP5_25F_DSPS, ECP5_25F_BRAMS, ECP5_25F_LUTS = 28, 56, 24288
#: Bits of one ``DP16KD``.
DP16KD_BITS = 18432


def dsp_instances(text: str) -> dict[str, int]:
    """``MULT18X18D`` instances per RTLIL module (its hierarchical name) of ``text``."""
    counts = {}
    for module in text.split("\nmodule ")[1:]:
        n = module.count("cell \\MULT18X18D")
        if n:
            counts[module.split("\n", 1)[0].lstrip("\\")] = n
    return counts


def variable_products(text: str) -> list[str]:
    """Modules of the ``$mul`` cells whose two operands are signals, one entry per cell."""
    found = []
    for module in text.split("\nmodule ")[1:]:
        name = module.split("\n", 1)[0].lstrip("\\")
        for body in re.findall(r"cell \$mul \S+\n(.*?)\n +end", module, re.S):
            operands = re.findall(r"connect \\[AB] (.*)", body)
            if not any(re.fullmatch(r"\d+'[01x-]+", o.strip()) for o in operands):
                found.append(name)
    return found


def product_blocks(text: str) -> int:
    """``MULT18X18D`` blocks for the ``$mul`` cells between two signals: Yosys' ``mul2dsp``
    splits an operand wider than one block into 17-bit slices (unsigned)."""
    total = 0
    for module in text.split("\nmodule ")[1:]:
        for body in re.findall(r"cell \$mul \S+\n(.*?)\n +end", module, re.S):
            operands = re.findall(r"connect \\[AB] (.*)", body)
            if any(re.fullmatch(r"\d+'[01x-]+", o.strip()) for o in operands):
                continue
            widths = [int(w) for w in re.findall(r"parameter \\[AB]_WIDTH (\d+)", body)]
            total += math.prod(-(-w // 17) for w in widths)
    return total


def inferred_memories(text: str) -> list[tuple[int, int, str]]:
    """``(width, depth, ram_style)`` of each RTLIL ``memory`` (left to Yosys to map)."""
    found = []
    for attrs, width, depth in re.findall(
            r"((?:  attribute [^\n]*\n)*)  memory width (\d+) size (\d+) ", text):
        style = re.search(r'ram_style "(\w+)"', attrs)
        found.append((int(width), int(depth), style.group(1) if style else ""))
    return found


def _in_unit(counts: dict[str, int], unit: str) -> int:
    return sum(n for name, n in counts.items() if name == unit or name.startswith(unit + "."))


@pytest.fixture(scope="module")
def top_rtlil() -> str:
    return rtlil.convert(Accelerator.from_params(preset("ulx3s_85f")), name="top",
                         platform=FakePlatform("ecp5"))


def _module_inputs(text: str) -> dict[str, list[str]]:
    """The input wires of each RTLIL module (its hierarchical name) of ``text``."""
    return {module.split("\n", 1)[0].lstrip("\\"):
            re.findall(r"wire width \d+ input \d+ +\\(\S+)", module)
            for module in text.split("\nmodule ")[1:]}


def test_ulx3s_85f_units_reset_on_one_global_network(top_rtlil):
    """On ECP5 the four compute units run in the controller's ``units`` clock domain, whose
    reset (``units_reset``, a flip-flop high the cycle after ``FAIL`` and after the domain's
    reset) leaves a ``DCCA``: one global network to their flip-flops. No unit sees
    ``units_reset`` itself, which Yosys would OR into each flip-flop's reset (a LUT-driven
    fabric net to 31,000 ``LSR`` pins); without a platform the units take it through
    ``ResetInserter``."""
    inputs = _module_inputs(top_rtlil)
    units = ("top.ctrl.gemm", "top.ctrl.vec", "top.ctrl.lnorm", "top.ctrl.attn")
    for unit in units:
        assert inputs[unit][0] == "units_clk" and "units_rst" in inputs[unit], unit
        assert "units_reset" not in inputs[unit] and "rst" not in inputs[unit], unit
    ctrl = top_rtlil.split("\nmodule \\top.ctrl\n", 1)[1].split("\nend\n", 1)[0]
    assert ctrl.count("cell \\DCCA \\units_reset_buf") == 1
    # ... straight from the flip-flop `units_reset` (hw.reset: no OR with the domain's reset
    # in a LUT before the buffer)
    buf = ctrl.split("cell \\DCCA \\units_reset_buf\n", 1)[1].split("\n  end\n", 1)[0]
    assert "connect \\CLKI \\units_reset [0]" in buf, buf
    assert re.search(r"cell \$dff \S+\n(?:    [^\n]*\n)*?    connect \\Q \\units_reset\n",
                     ctrl), "units_reset is not a flip-flop's output"
    plain = _module_inputs(rtlil.convert(Accelerator.from_params(preset("tiny")), name="top"))
    for unit in units:
        assert "units_reset" in plain[unit] and "units_rst" not in plain[unit], unit


def test_counters_see_dsps_and_products():
    """The counting helpers can fail: a hand-written module with one of each."""
    text = ("module \\top.u\n  cell \\MULT18X18D \\dsp\n  end\n  cell $mul $1\n"
            "    parameter \\A_WIDTH 32\n    parameter \\B_WIDTH 16\n"
            "    connect \\A \\x [31:0]\n    connect \\B \\y\n  end\n  cell $mul $2\n"
            "    connect \\A \\x\n    connect \\B 4'0100\n  end\n"
            "  attribute \\ram_style \"distributed\"\n  memory width 8 size 64 \\lut\n"
            "  memory width 32 size 64 \\buf\nend\n")
    assert dsp_instances("\n" + text) == {"top.u": 1}
    assert variable_products("\n" + text) == ["top.u"]
    assert product_blocks("\n" + text) == 2
    assert inferred_memories(text) == [(8, 64, "distributed"), (32, 64, "")]


def test_ulx3s_85f_vector_and_layernorm_dsp_budget(top_rtlil):
    """The vector unit (``rows`` = 8 lanes) takes two ``MULT18X18D`` per lane (the requant
    lane's 32 x 15 product as two; its two int8 x 16-bit residual products are LUT
    multipliers, ``vec_dsp_products`` off) and the LayerNorm two per element pipeline
    (``ln_pipelines`` = 2, each serving four of the 8 lanes): its requant lanes' products. No
    ``$mul``: the LayerNorm's int8 products are LUT multipliers. The whole top's instances fit
    the chip."""
    p = preset("ulx3s_85f")
    assert not p.vec_dsp_products
    counts = dsp_instances(top_rtlil)
    assert _in_unit(counts, "top.ctrl.vec") == 2 * p.rows == 16
    assert _in_unit(counts, "top.ctrl.lnorm") == 2 * p.ln_pipelines == 4
    products = variable_products(top_rtlil)
    assert [n for n in products if n.startswith(("top.ctrl.vec", "top.ctrl.lnorm"))] == []
    total = sum(counts.values())
    assert total == _in_unit(counts, "top.ctrl")           # every DSP is in a compute unit
    assert total <= ECP5_85F_DSPS


def test_ulx3s_85f_attention_dsp_budget(top_rtlil):
    """The top asks its attention unit for LUT int8 products on ECP5 (``lut_int8_products``):
    the ``attn_lanes`` q.k and ``attn_lanes`` p.v products take no ``MULT18X18D`` and leave no
    ``$mul``; two per requant lane and two 17-bit slices each for the score scaler and the
    normalizer remain."""
    p = preset("ulx3s_85f")
    counts = dsp_instances(top_rtlil)
    assert _in_unit(counts, "top.ctrl.attn") == 2 * p.attn_lanes + 4 == 20
    assert [n for n in variable_products(top_rtlil) if n.startswith("top.ctrl.attn")] == []


def test_ulx3s_85f_top_within_dsp_target(top_rtlil):
    """Target: at most 140 of the 156 blocks, counting every ``$mul`` between signals as at
    least one more (synth_ecp5 maps it to ``MULT18X18D``), so a board build can place the top
    with room to spare. Today: GEMM core 80, vector 16 (its requant lanes; the residual
    products are LUT multipliers), LayerNorm 4, attention 20, and the controller's one shared
    32 x 16 product as two ``MULT18X18D`` (its 16 x 16 partial products, each registered inside
    its block; no ``$mul`` left) = 122."""
    counts = dsp_instances(top_rtlil)
    assert _in_unit(counts, "top.ctrl.gemm") == 80
    assert counts["top.ctrl"] == 2
    assert variable_products(top_rtlil) == []
    total = sum(counts.values()) + len(variable_products(top_rtlil))
    assert total == 122
    assert total <= 140


@pytest.mark.parametrize("lut_columns", [0, 2, 4])
def test_lut_columns_take_pe_products_off_the_dsps(lut_columns):
    """A mixed 4x4 GEMM core on ECP5: every PE of the last ``lut_columns`` columns multiplies
    in the fabric, so the core has ``4 * lut_columns`` fewer ``MULT18X18D`` (the requantizer's
    two per column stay) and no new ``$mul``."""
    from hw.gemm_core import GemmCore

    core = GemmCore(4, 4, k_depth=16, lut_columns=lut_columns)
    text = rtlil.convert(core, name="core", platform=FakePlatform("ecp5"))
    dsps = dsp_instances(text)
    pe = sum(n for name, n in dsps.items() if ".pe_" in name)
    assert pe == 4 * (4 - lut_columns)
    assert sum(dsps.values()) == 4 * (4 - lut_columns) + 2 * 4
    assert not variable_products(text)
@pytest.fixture(scope="module")
def colorlight_top_rtlil() -> str:
    """The whole board top (``lightformer synth --board colorlight-5a75b --unit top``) as the
    build elaborates it: the Colorlight platform, its default preset."""
    params = preset_for_board("colorlight-5a75b")
    platform = board_platform("colorlight-5a75b")()
    plan = platform.prepare(make_top(BOARD_TOP, params), "top", **platform.synth_overrides())
    return plan.files["top.il"]


def test_board_top_link_reset_on_one_global_network(colorlight_top_rtlil):
    """On an ECP5 board the link's RESET (``soft_reset``) reaches the accelerator's flip-flops
    through a ``DCCA``, as the domain's reset does: the accelerator runs in the ``accel`` domain,
    whose reset is ``accel_reset``, a flip-flop high the cycle after ``soft_reset`` or the
    board's reset (``hw.reset``), and no module of the accelerator sees either signal itself.
    The controller's ``units`` domain is reset from a flip-flop of the ``accel`` domain, so a
    RESET from the host also resets the compute units."""
    text = colorlight_top_rtlil
    inputs = _module_inputs(text)
    accel = {name: wires for name, wires in inputs.items()
             if name == "top.design.accel" or name.startswith("top.design.accel.")}
    assert len(accel) > 20, sorted(accel)
    for name, wires in accel.items():
        assert "soft_reset" not in wires and "rst" not in wires, (name, wires)
    assert "accel_rst" in inputs["top.design.accel"]
    assert "accel_rst" in inputs["top.design.accel.ctrl"]
    built = [u for u in ("gemm", "vec", "lnorm", "attn")
             if u not in preset_for_board("colorlight-5a75b").host_units]
    assert len(built) >= 2
    for unit in built:
        assert "units_rst" in inputs[f"top.design.accel.ctrl.{unit}"], unit
    design = text.split("\nmodule \\top.design\n", 1)[1].split("\nend\n", 1)[0]
    assert design.count("cell \\DCCA \\accel_reset_buf") == 1
    dcca = design.split("cell \\DCCA \\accel_reset_buf\n", 1)[1].split("\n  end\n", 1)[0]
    assert "connect \\CLKI \\accel_reset [0]" in dcca, dcca
    flops = re.findall(r"cell \$dff \S+\n(.*?)\n +end", design, re.S)
    assert [f for f in flops if "connect \\Q \\accel_reset\n" in f + "\n"], "not a flip-flop"
    ctrl = text.split("\nmodule \\top.design.accel.ctrl\n", 1)[1].split("\nend\n", 1)[0]
    buf = ctrl.split("cell \\DCCA \\units_reset_buf\n", 1)[1].split("\n  end\n", 1)[0]
    assert "connect \\CLKI \\units_reset [0]" in buf, buf


def test_colorlight_top_fits_the_lfe5u_25f(colorlight_top_rtlil):
    """The colorlight_5a75b board top fits the LFE5U-25F's hard blocks: every ``MULT18X18D``
    instance and the blocks of every variable ``$mul`` within 28, every ``DP16KD`` instance and
    one block per started 18 kbit of each memory left to Yosys (LUT RAM excepted) within 56."""
    text = colorlight_top_rtlil
    p = preset_for_board("colorlight-5a75b")
    counts = dsp_instances(text)
    # GEMM core: rows * cols PE products and two per requantizer column; the vector unit two
    # per lane (rows), the LayerNorm two per element pipeline; attention two per lane and four
    # for its scalers; none of a unit the preset leaves to the host (host_units: here both).
    assert _in_unit(counts, "top.design.accel.ctrl.gemm") == p.rows * p.cols + 2 * p.cols
    assert _in_unit(counts, "top.design.accel.ctrl.vec") == 2 * p.rows
    assert p.host_units == ("attn", "lnorm")
    assert _in_unit(counts, "top.design.accel.ctrl.lnorm") == 0
    assert _in_unit(counts, "top.design.accel.ctrl.attn") == 0
    assert not any(".ctrl.lnorm." in name or ".ctrl.attn." in name
                   for name in _module_inputs(text))
    dsps = sum(counts.values()) + product_blocks(text)
    assert dsps <= ECP5_25F_DSPS
    left_to_yosys = [(w, d) for w, d, style in inferred_memories(text) if style != "distributed"]
    brams = text.count("cell \\DP16KD ") + sum(-(-w * d // DP16KD_BITS)
                                                 for w, d in left_to_yosys)
    assert brams <= ECP5_25F_BRAMS
    # The 32 instruction byte lanes are LUT RAM (64 words each), not 32 DP16KD.
    lanes = [m for m in text.split("\nmodule ")[1:]
             if m.startswith("\\top.design.accel.instr_spad.lane")]
    assert len(lanes) == 32
    assert all("DP16KD" not in m and 'ram_style "distributed"' in m for m in lanes)


def test_ulx3s_85f_array_accumulators_are_k_depth_wide(top_rtlil):
    """Every PE of the top's GEMM array keeps ``accumulator_width(k_depth)`` bits (26 for the
    preset's K of 1024), not int32: the controller hands ``k_depth`` to the pipeline it builds
    (without it the top's array had 32-bit accumulators while the core alone had 26)."""
    from hw.numerics import accumulator_width

    p = preset("ulx3s_85f")
    widths = {}
    for module in top_rtlil.split("\nmodule ")[1:]:
        name = module.split("\n", 1)[0].lstrip("\\")
        if re.fullmatch(r"top\.ctrl\.gemm\.pipeline\.array\.pe_\d+_\d+", name):
            widths[name] = {int(w) for w in re.findall(r"wire width (\d+) [^\n]*\\result\b",
                                                       module)}
    assert len(widths) == p.rows * p.cols
    assert set().union(*widths.values()) == {accumulator_width(p.k_depth)} == {26}


def test_controller_multiplies_by_no_constant_but_a_power_of_two():
    """An array whose ``cols`` is not a power of two (6 here, 18 in the 144-MAC top): the
    controller's own products with a constant are all shifts (``hw.controller._times``), so
    Yosys puts none of them on a ``MULT18X18D`` (``col_tiles(N) * cols`` was one)."""
    from hw.controller import Controller

    text = rtlil.convert(Controller(preset("tiny").replace(cols=6)), name="top",
                         platform=FakePlatform("ecp5"))
    constants = []
    for module in text.split("\nmodule ")[1:]:
        if module.split("\n", 1)[0] != "\\top":
            continue
        for body in re.findall(r"cell \$mul \S+\n(.*?)\n +end", module, re.S):
            for operand in re.findall(r"connect \\[AB] (.*)", body):
                const = re.fullmatch(r"\d+'([01]+)", operand.strip())
                if const:
                    constants.append(int(const.group(1), 2))
    assert len(constants) >= 10                  # word selects and shifts: the count is real
    assert [c for c in constants if c & (c - 1)] == []


def test_ulx3s_85f_8x18_top_fits_the_dsps():
    """The 144-MAC preset on the 85F's 156 ``MULT18X18D``: GEMM core 8 x 15 DSP columns + 2 x 3
    requantizer lanes = 126, vector 16, LayerNorm 2, attention 2 x 2 + 4 = 8, controller 2
    = 154 (what nextpnr placed), and no ``$mul`` left for synthesis to map onto more blocks."""
    p = preset("ulx3s_85f_8x18")
    assert p.macs_per_cycle == 144
    text = rtlil.convert(Accelerator.from_params(p), name="top", platform=FakePlatform("ecp5"))
    counts = dsp_instances(text)
    assert _in_unit(counts, "top.ctrl.gemm") == p.rows * (p.cols - p.lut_columns) \
        + 2 * p.requant_lanes == 126
    assert _in_unit(counts, "top.ctrl.attn") == 2 * p.attn_lanes + 4 == 8
    assert variable_products(text) == []
    assert sum(counts.values()) == 154 <= 156
    # The GEMM side's wide buffers keep 3 copies of their flags (hw.skid.column_groups).
    for copies in ("out_valid", "skid_valid", "head_valid", "tail_valid", "q_loaded"):
        assert f"wire width 1 \\{copies}2\n" in text, copies
    assert text.count("module \\top.ctrl.gemm.pipeline.requant_rows") == 3


def test_ulx3s_85f_top_keeps_one_copy_of_its_flags(top_rtlil):
    """8 columns: one copy of each GEMM-side buffer's flags, the netlist the 8x8 top's routes
    were built from (hw.skid.column_groups)."""
    for copy in ("out_valid1", "skid_valid1", "head_valid1", "tail_valid1", "q_loaded1"):
        assert f"\\{copy}\n" not in top_rtlil
    assert "wire width 1 \\skid_valid\n" in top_rtlil
