# amaranth: UnusedElaboratable=no
# SPDX-License-Identifier: Apache-2.0
"""Tier-1 tests of hw.lut_multiplier: exact signed products, the Multiplier timing, no ``$mul``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Const
from helpers import run_testbenches

from hw.lut_multiplier import LutMultiplier
from hw.multiplier import Multiplier


def _corners(width: int) -> list[int]:
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    return sorted({lo, lo + 1, -1, 0, 1, hi - 1, hi} & set(range(lo, hi + 1)))


def _expected(ops: list[tuple[int, int]], ens: list[int]) -> list[int]:
    """``p`` after each cycle of two register ranks behind one enable."""
    held, out, seen = (0, 0), 0, []
    for op, en in zip(ops, ens, strict=True):
        if en:
            held, out = op, held[0] * held[1]
        seen.append(out)
    return seen


def _check_products(dut: LutMultiplier, ops: list[tuple[int, int]], ens: list[int]) -> list[int]:
    """Drive ``ops`` with enables ``ens``; assert ``p`` of every cycle; return it."""
    got = []

    async def tb(ctx):
        for (a, b), en in zip(ops, ens, strict=True):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            await ctx.tick()
            got.append(ctx.get(dut.p))

    run_testbenches(dut, tb, deadline_us=None)
    np.testing.assert_array_equal(got, _expected(ops, ens))
    return got


@pytest.mark.parametrize("a_width, b_width", [(1, 5), (2, 3), (3, 4), (4, 4), (5, 2), (8, 8)])
def test_lut_multiplier_exhaustive_small(a_width, b_width):
    dut = LutMultiplier(a_width, b_width)
    ops = list(itertools.product(range(-(1 << (a_width - 1)), 1 << (a_width - 1)),
                                 range(-(1 << (b_width - 1)), 1 << (b_width - 1))))
    ops += [(0, 0)] * 2                                  # flush the last two products out
    seen = _check_products(dut, ops, [1] * len(ops))
    assert len(seen) == len(ops) == (1 << (a_width + b_width)) + 2


@pytest.mark.parametrize("a_nonneg, b_nonneg", [(False, True), (True, False), (True, True)])
@pytest.mark.parametrize("a_width, b_width", [(2, 2), (3, 5), (5, 6)])
def test_lut_multiplier_nonnegative_operands_exhaustive(a_width, b_width, a_nonneg, b_nonneg):
    """``a_nonnegative`` / ``b_nonnegative``: every operand pair the promise allows (the
    sign bit 0), exact; no row bit is a constant (nothing for Yosys to merge across units)
    where both are non-negative."""
    dut = LutMultiplier(a_width, b_width, a_nonnegative=a_nonneg, b_nonnegative=b_nonneg)

    def values(width, nonneg):
        return range(0 if nonneg else -(1 << (width - 1)), 1 << (width - 1))

    ops = list(itertools.product(values(a_width, a_nonneg), values(b_width, b_nonneg)))
    ops += [(0, 0)] * 2
    seen = _check_products(dut, ops, [1] * len(ops))
    assert len(seen) == len(values(a_width, a_nonneg)) * len(values(b_width, b_nonneg)) + 2
    rows = dut.rows()
    if a_nonneg and b_nonneg:
        assert len(rows) == a_width - 1 and all(len(bits) == b_width - 1 for _, bits in rows)
        assert not any(isinstance(bit, Const) for _, bits in rows for bit in bits)
    with pytest.raises(ValueError, match="a_nonnegative needs a_width >= 2"):
        LutMultiplier(1, 8, a_nonnegative=True)


@pytest.mark.parametrize("a_width, b_width",
                         [(8, 8), (8, 16), (8, 17), (8, 18), (8, 25), (13, 13), (16, 16)])
def test_lut_multiplier_random_and_corners_with_enable(a_width, b_width):
    """The widths the PEs, vector, attention and LayerNorm units use (``dim_square``'s
    ``len(dim) + 1`` square ones among them); ``en`` low holds both ranks."""
    rng = np.random.default_rng(a_width * 100 + b_width)
    ops = list(itertools.product(_corners(a_width), _corners(b_width)))
    corners = len(ops)
    ops += [(int(rng.integers(-(1 << (a_width - 1)), 1 << (a_width - 1))),
             int(rng.integers(-(1 << (b_width - 1)), 1 << (b_width - 1)))) for _ in range(300)]
    # the corners enabled, each in turn; the random operands under a random enable
    ens = [1] * corners + [int(rng.random() < 0.8) for _ in ops[corners:]]
    seen = _check_products(LutMultiplier(a_width, b_width), ops, ens)
    # The extreme product (-2**(a-1)) * (-2**(b-1)) appears, so the top bit is exercised.
    assert (1 << (a_width + b_width - 2)) in seen
    assert corners >= 16 and 200 < sum(ens[corners:]) < 300    # some held cycles


def test_lut_multiplier_has_no_mul_cell():
    """No ``$mul``: synth_ecp5 would map one to MULT18X18D blocks."""
    text = rtlil.convert(LutMultiplier(8, 18), name="top")
    assert text.count("cell $mul ") == 0
    assert "MULT18X18D" not in text
    # Baugh-Wooley rows: unsigned, added only (no subtracted copy), one adder per pair of
    # overlapping rows: 7 for the 8 rows of an 8 x 8 product (its constant's two bits sit on
    # top of rows 0 and 7).
    dut = LutMultiplier(8, 8)
    assert [at for at, _ in dut.rows()] == list(range(8))
    text = rtlil.convert(dut, name="top")
    assert (text.count("cell $add "), text.count("cell $sub ")) == (7, 0)
    assert LutMultiplier(8, 8).latency == Multiplier.latency == 2
    with pytest.raises(ValueError, match="a_width must be an integer >= 1"):
        LutMultiplier(0, 8)
