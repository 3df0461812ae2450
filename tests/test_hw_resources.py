# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""The accelerator top's DSP budget on the ULX3S-85F (ECP5-85F: 156 ``MULT18X18D``).

The top is elaborated for an ECP5 stand-in platform and its RTLIL counted: ``MULT18X18D``
instances per unit, and ``$mul`` cells between two signals, which ``synth_ecp5`` would map to
further ``MULT18X18D`` blocks (a constant power-of-two factor becomes a shift instead).
"""

from __future__ import annotations

import re

import pytest
from amaranth.back import rtlil
from helpers import FakePlatform

from hw.accelerator import Accelerator
from hw.params import preset

#: ``MULT18X18D`` blocks of the ECP5-85F.
ECP5_85F_DSPS = 156


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


def _in_unit(counts: dict[str, int], unit: str) -> int:
    return sum(n for name, n in counts.items() if name == unit or name.startswith(unit + "."))


@pytest.fixture(scope="module")
def top_rtlil() -> str:
    return rtlil.convert(Accelerator.from_params(preset("ulx3s_85f")), name="top",
                         platform=FakePlatform("ecp5"))


def test_counters_see_dsps_and_products():
    """The counting helpers can fail: a hand-written module with one of each."""
    text = ("module \\top.u\n  cell \\MULT18X18D \\dsp\n  end\n  cell $mul $1\n"
            "    connect \\A \\x [7:0]\n    connect \\B \\y\n  end\n  cell $mul $2\n"
            "    connect \\A \\x\n    connect \\B 4'0100\n  end\nend\n")
    assert dsp_instances("\n" + text) == {"top.u": 1}
    assert variable_products("\n" + text) == ["top.u"]


def test_ulx3s_85f_vector_and_layernorm_dsp_budget(top_rtlil):
    """The vector unit (``rows`` = 8 lanes) and the LayerNorm (``cols`` = 8 lanes) take two
    ``MULT18X18D`` per lane (the requant lanes' 32 x 15 products) and no ``$mul``: their int8
    products are LUT multipliers. The whole top's instances fit the chip."""
    p = preset("ulx3s_85f")
    counts = dsp_instances(top_rtlil)
    assert _in_unit(counts, "top.ctrl.vec") == 2 * p.rows == 16
    assert _in_unit(counts, "top.ctrl.lnorm") == 2 * p.cols == 16
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
    with room to spare. Today: GEMM core 80, vector 16, LayerNorm 16, attention 20, and the
    controller's one shared 32 x 16 product (``$mul``) = 133."""
    counts = dsp_instances(top_rtlil)
    assert _in_unit(counts, "top.ctrl.gemm") == 80
    assert variable_products(top_rtlil) == ["top.ctrl"]
    total = sum(counts.values()) + len(variable_products(top_rtlil))
    assert total == 133
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
