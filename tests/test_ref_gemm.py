# SPDX-License-Identifier: Apache-2.0
"""sw.ref GEMM reference: exactness, widening, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from sw import quant
from sw.ref import gemm_acc, gemm_requant


def test_gemm_acc_widens_before_arithmetic():
    a = np.full((2, 256), -128, dtype=np.int8)
    w = np.full((256, 3), -128, dtype=np.int8)
    acc = gemm_acc(a, w)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, np.full((2, 3), 256 * 16384, dtype=np.int32))


def test_gemm_requant_matches_loop_definition():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (5, 17), dtype=np.int8)
    w = rng.integers(-127, 128, (17, 4), dtype=np.int8)
    b = rng.integers(-1000, 1000, 4, dtype=np.int32)
    mult = np.array([16384, 20000, 32767, 0])
    shift = np.array([10, 12, 20, 1])
    got = gemm_requant(a, w, b, mult, shift)
    for m in range(5):
        for n in range(4):
            acc = sum(int(a[m, k]) * int(w[k, n]) for k in range(17)) + int(b[n])
            exp = max(-128, min(127, (acc * int(mult[n]) + (1 << (int(shift[n]) - 1)))
                                >> int(shift[n])))
            assert got[m, n] == exp


def test_gemm_overflow_is_an_error():
    a = np.full((1, 4), -128, dtype=np.int8)
    w = np.full((4, 1), -128, dtype=np.int8)
    with pytest.raises(OverflowError, match="overflows int32"):
        gemm_acc(a, w, np.array([quant.ACC_MAX], dtype=np.int32))


@pytest.mark.parametrize(("a", "w", "b", "exc", "match"), [
    (np.zeros((2, 3), np.int16), np.zeros((3, 2), np.int8), None, TypeError, "a_q must be a int8"),
    (np.zeros((2, 3), np.int8), np.zeros((4, 2), np.int8), None, ValueError, "inner dimensions"),
    (np.zeros((3,), np.int8), np.zeros((3, 2), np.int8), None, ValueError, "a_q must have 2"),
    (np.zeros((2, 0), np.int8), np.zeros((0, 2), np.int8), None, ValueError, "K must be"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), np.zeros(3, np.int32), ValueError,
     "bias_q must have N=2"),
    (np.zeros((2, 3), np.int8), np.zeros((3, 2), np.int8), np.zeros(2, np.int64), TypeError,
     "bias_q must be a int32"),
])
def test_gemm_bad_inputs(a, w, b, exc, match):
    with pytest.raises(exc, match=match):
        gemm_acc(a, w, b)
