# SPDX-License-Identifier: Apache-2.0
"""Integer whole-model ops of ``sw.ref``: golden tables and hypothesis properties (NumPy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sw import quant, ref

# -- isqrt ----------------------------------------------------------------------------------------

ISQRT_GOLDEN = [(0, 0), (1, 1), (2, 1), (3, 1), (4, 2), (15, 3), (16, 4), (17, 4), (99, 9),
                (100, 10), (2**32, 2**16), (2**62 - 1, 2**31 - 1), ((2**31 - 1) ** 2, 2**31 - 1),
                ((2**31 - 1) ** 2 - 1, 2**31 - 2)]


def test_isqrt_int_golden():
    x = np.array([g[0] for g in ISQRT_GOLDEN], dtype=np.int64)
    np.testing.assert_array_equal(ref.isqrt_int(x), [g[1] for g in ISQRT_GOLDEN])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**62 - 1))
def test_isqrt_int_is_floor_sqrt(x):
    r = int(ref.isqrt_int(np.int64(x)))
    assert r == math.isqrt(x)
    assert r * r <= x < (r + 1) * (r + 1)


def test_isqrt_int_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 2\*\*62\)"):
        ref.isqrt_int(np.int64(-1))
    with pytest.raises(TypeError, match="integer array"):
        ref.isqrt_int(np.array([1.0]))


# -- LayerNorm ------------------------------------------------------------------------------------

def _ln_unit(d: int):
    """gamma 64 (int8), beta 0, requant by 2**-16 -> output = round(64 * n) (n in Q.10)."""
    return (np.full(d, 64, np.int8), np.zeros(d, np.int32), np.int64(1 << 14), np.int64(24))


def test_layernorm_int_golden():
    x = np.array([[1, -1, 1, -1], [3, 0, 0, 0], [5, 5, 5, 5], [-128, 127, -128, 127],
                  [127, 127, 127, -128]], np.int8)
    # [3,0,0,0]: c = [9,-3,-3,-3], S = 108, k = 17, r = isqrt(432 << 34) = 2724810,
    # inv = 2**48 // r = 103300852, n = round(9*4*inv / 2**21) = 1773 -> 1773 * 64 / 2**10.
    want = np.array([[64, -64, 64, -64], [111, -37, -37, -37], [0, 0, 0, 0],
                     [-64, 64, -64, 64], [37, 37, 37, -111]])
    np.testing.assert_array_equal(ref.layernorm_int(x, *_ln_unit(4), eps_q=0), want)


def test_layernorm_int_beta_and_eps():
    # A constant row normalises to 0, so the output is beta alone: 1000 * 2**14 / 2**24 -> 0.98
    x = np.full((1, 8), -7, np.int8)
    out = ref.layernorm_int(x, np.full(8, 127, np.int8), np.full(8, 1000, np.int32),
                            np.int64(1 << 14), np.int64(10), eps_q=10**6)
    np.testing.assert_array_equal(out, np.full((1, 8), 127))        # 1000 * 16 saturates
    # eps shrinks the normalised value: var 1 in x units, eps = var -> n = 1/sqrt(2)
    d = 4
    x = np.array([[1, -1, 1, -1]], np.int8)
    out = ref.layernorm_int(x, *_ln_unit(d), eps_q=ref.layernorm_eps_q(d, 1.0, 1.0))
    np.testing.assert_array_equal(out, [[45, -45, 45, -45]])        # 64 / sqrt(2) = 45.25


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int8, st.tuples(st.integers(1, 4), st.integers(2, 64))))
def test_layernorm_int_matches_float(x):
    """Within one LSB (plus rounding of the Q.10 value) of the float LayerNorm."""
    d = x.shape[-1]
    out = ref.layernorm_int(x, *_ln_unit(d), eps_q=0).astype(np.float64)
    xf = x.astype(np.float64)
    std = xf.std(axis=-1, keepdims=True)
    n = np.where(std > 0, (xf - xf.mean(axis=-1, keepdims=True)) / np.where(std > 0, std, 1), 0)
    assert np.all(np.abs(out - np.clip(64 * n, -128, 127)) <= 1.0)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.int8, st.tuples(st.integers(1, 3), st.integers(1, 32))),
       st.integers(-5, 5))
def test_layernorm_int_is_shift_invariant(x, delta):
    """Adding a constant to a row (without saturating) never changes the output."""
    d = x.shape[-1]
    y = np.clip(x.astype(np.int64) + delta, -128, 127).astype(np.int8)
    same = np.all(y.astype(np.int64) - x == delta, axis=-1)
    a = ref.layernorm_int(x, *_ln_unit(d), eps_q=3)
    b = ref.layernorm_int(y, *_ln_unit(d), eps_q=3)
    np.testing.assert_array_equal(a[same], b[same])


def test_layernorm_int_rejects_bad_input():
    g, b, m, s = _ln_unit(4)
    with pytest.raises(TypeError, match="int8"):
        ref.layernorm_int(np.zeros((1, 4), np.int16), g, b, m, s, 0)
    with pytest.raises(ValueError, match="d=4"):
        ref.layernorm_int(np.zeros((1, 4), np.int8), g[:3], b, m, s, 0)
    with pytest.raises(ValueError, match="eps_q"):
        ref.layernorm_int(np.zeros((1, 4), np.int8), g, b, m, s, -1)


# -- LUTs -----------------------------------------------------------------------------------------

def test_lut_apply_addresses_by_byte_pattern():
    lut = np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8)   # identity on bytes
    x = np.array([0, 1, 127, -128, -1], np.int8)
    np.testing.assert_array_equal(ref.lut_apply(x, lut), x)
    neg = (-np.arange(256, dtype=np.int64).astype(np.uint8).view(np.int8).astype(np.int64))
    neg = np.clip(neg, -128, 127).astype(np.int8)                          # lut[i] = -int8(i)
    np.testing.assert_array_equal(ref.lut_apply(x, neg), [0, -1, -127, 127, 1])


def test_gelu_lut_golden():
    lut = ref.build_gelu_lut(0.05, 0.05)
    x = np.array([0, 20, -20, 127, -128, 1, -1], np.int8)
    # gelu(1.0) = 0.841345 -> 16.83 -> 17; gelu(-1.0) = -0.158655 -> -3.17 -> -3;
    # gelu(6.35) = 6.35 -> 127; gelu(-6.4) ~ -5e-10 -> 0; gelu(0.05) = 0.02599 -> 0.52 -> 1.
    np.testing.assert_array_equal(ref.lut_apply(x, lut), [0, 17, -3, 127, 0, 1, 0])


@settings(max_examples=30, deadline=None)
@given(st.floats(1e-3, 0.2), st.floats(1e-3, 0.2))
def test_gelu_lut_is_exact_rounding(scale_in, scale_out):
    lut = ref.build_gelu_lut(scale_in, scale_out)
    x = np.arange(-128, 128).astype(np.int8)
    g = ref.gelu_f(x.astype(np.float64) * scale_in) / scale_out
    y = ref.lut_apply(x, lut).astype(np.float64)
    inside = (g > -128.5) & (g < 127.5)
    assert np.all(np.abs(y[inside] - g[inside]) <= 0.5 + 1e-9)
    assert np.all(y[g >= 127.5] == 127) and np.all(y[g <= -128.5] == -128)


def test_lut_apply_rejects_bad_tables():
    with pytest.raises(ValueError, match="256 entries"):
        ref.lut_apply(np.zeros(3, np.int8), np.zeros(255, np.int8))
    with pytest.raises(TypeError, match="int8"):
        ref.lut_apply(np.zeros(3, np.uint8), np.zeros(256, np.int8))


# -- residual add ---------------------------------------------------------------------------------

def test_residual_params_golden():
    mult, shift = ref.residual_params(0.1, 0.05, 0.1)          # ratios 1 and 0.5
    assert (mult.tolist(), shift) == ([16384, 8192], 14)
    mult, shift = ref.residual_params(0.02, 0.03, 0.1)         # 0.2, 0.3
    assert shift == 16 and mult.tolist() == [13107, 19661]
    with pytest.raises(ValueError, match="2\\*\\*14"):
        ref.residual_params(1.0, 1.0, 1e-5)


def test_residual_add_golden():
    a = np.array([10, -10, 127, -128, 3, -3], np.int8)
    b = np.array([5, -5, 127, -128, 1, -1], np.int8)
    mult, shift = np.array([16384, 8192]), 15                   # a/2 + b/4
    # 10/2 + 5/4 = 6.25 -> 6; -6.25 -> -6; 95.25 -> 95; -96; 1.75 -> 2; -1.75 -> -2
    np.testing.assert_array_equal(ref.residual_add(a, b, mult, shift), [6, -6, 95, -96, 2, -2])
    # ties round up: 3/2 + 0 = 1.5 -> 2, -1.5 -> -1
    np.testing.assert_array_equal(
        ref.residual_add(np.array([3, -3], np.int8), np.array([0, 0], np.int8), mult, shift),
        [2, -1])
    # saturation
    np.testing.assert_array_equal(
        ref.residual_add(np.array([127, -128], np.int8), np.array([127, -128], np.int8),
                         np.array([16384, 16384]), 14), [127, -128])


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.int8, 16), hnp.arrays(np.int8, 16),
       st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_residual_add_matches_float(a, b, sa, sb, so):
    if max(sa, sb) / so >= 2**13:
        return
    mult, shift = ref.residual_params(sa, sb, so)
    y = ref.residual_add(a, b, mult, shift).astype(np.float64)
    exact = (a * sa + b * sb) / so
    err_mult = (np.abs(a.astype(np.int64)) + np.abs(b.astype(np.int64))) * 2.0 ** -shift
    assert np.all(np.abs(y - np.clip(exact, -128, 127)) <= 0.5 + err_mult + 1e-9)


def test_residual_add_rejects_bad_input():
    z = np.zeros(2, np.int8)
    with pytest.raises(ValueError, match="one shape"):
        ref.residual_add(z, np.zeros(3, np.int8), np.array([1, 1]), 1)
    with pytest.raises(ValueError, match="15-bit"):
        ref.residual_add(z, z, np.array([1 << 15, 1]), 1)
    with pytest.raises(ValueError, match="shift"):
        ref.residual_add(z, z, np.array([1, 1]), 0)


# -- embedding, pooling, linear -------------------------------------------------------------------

def test_embedding_int_reads_rows():
    table = np.arange(12, dtype=np.int8).reshape(4, 3)
    np.testing.assert_array_equal(ref.embedding_int(np.array([[3, 0]]), table),
                                  [[[9, 10, 11], [0, 1, 2]]])
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        ref.embedding_int(np.array([4]), table)


def test_mean_pool_int_golden():
    x = np.array([[[1, -1], [2, -2], [4, -4], [0, 1]]], np.int8)   # sums 7, -6
    m, s = quant.quantize_multiplier(1 / 4)                         # mean at the same scale
    np.testing.assert_array_equal(ref.mean_pool_int(x, m, s), [[2, -1]])   # 1.75, -1.5


def test_linear_int_matches_gemm_requant():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 5, 7)).astype(np.int8)
    w = rng.integers(-127, 128, (7, 3)).astype(np.int8)
    b = rng.integers(-1000, 1000, 3).astype(np.int32)
    mult, shift = np.array([20000, 17000, 30000]), np.array([20, 21, 22])
    y = ref.linear_int(x, w, b, mult, shift)
    np.testing.assert_array_equal(y.reshape(10, 3),
                                  ref.gemm_requant(x.reshape(10, 7), w, b, mult, shift))


def test_model_ops_refuse_non_integer_constants_and_minus_128_weights():
    x = np.ones((2, 7), np.int8)
    w, b = np.ones((7, 3), np.int8), np.zeros(3, np.int32)
    mult, shift = np.full(3, 1 << 14), np.full(3, 15)
    with pytest.raises(ValueError, match="w_q holds -128"):
        ref.linear_int(x, np.full((7, 3), -128, np.int8), b, mult, shift)
    with pytest.raises(TypeError, match="mult must be an integer"):
        ref.gemm_requant(x, w, b, mult + 0.9, shift)
    with pytest.raises(TypeError, match="shift must be an integer"):
        ref.gemm_requant(x, w, b, mult, "15")
    a = np.ones((2, 4), np.int8)
    with pytest.raises(TypeError, match="residual shift must be an integer"):
        ref.residual_add(a, a, np.array([1 << 14, 1 << 14]), 15.9)
    with pytest.raises(TypeError, match="residual mult must be an integer"):
        ref.residual_add(a, a, np.array([16384.5, 1.0]), 15)
    g, bb, m, s = _ln_unit(4)
    with pytest.raises(TypeError, match="eps_q must be an integer"):
        ref.layernorm_int(a, g, bb, m, s, 2.5)
    with pytest.raises(TypeError, match="requant multiplier must be an integer"):
        ref.mean_pool_int(np.ones((1, 4, 2), np.int8), 8192.0, 15)
    with pytest.raises(TypeError, match="AttentionQuant.score_mult must be an integer"):
        ref.softmax_u_int(np.array([1, 2]), 100.5, 10)


def test_quantize_input_refuses_nan_pixels():
    class Art:
        config = {"input_kind": "patches", "patch_dim": 2}
        scales = {"input": 0.1}
    with pytest.raises(ValueError, match="activations contains NaN or infinity"):
        ref.quantize_input(Art(), np.array([[[0.5, np.nan]]]))
    np.testing.assert_array_equal(ref.quantize_input(Art(), np.array([[[0.5, -0.5]]])),
                                  [[[5, -5]]])


@pytest.mark.parametrize("d, std", [(16, 5), (32, 20), (64, 40), (256, 60)])
def test_layernorm_int_accuracy_vs_float(d, std):
    """docs/numerics.md numbers: full LayerNorm (gamma, beta, eps) against float at one scale."""
    rng = np.random.default_rng(0)
    x = np.clip(np.round(rng.normal(0, std, (4000, d))), -128, 127).astype(np.int8)
    gamma, beta, s_x, eps = rng.normal(1, 0.3, d), rng.normal(0, 0.3, d), 0.05, 1e-5
    xf = x * s_x
    yf = (xf - xf.mean(-1, keepdims=True)) / np.sqrt(xf.var(-1, keepdims=True) + eps)
    yf = yf * gamma + beta
    s_out = np.abs(yf).max() / 127
    g_q, s_g = quant.quantize_weight_per_channel(gamma[None, :], axis=-1)
    s_acc = s_g * 2.0 ** -ref.LN_FRAC_BITS
    pairs = [quant.quantize_multiplier(s / s_out) for s in s_acc]
    y = ref.layernorm_int(x, g_q[0], np.round(beta / s_acc).astype(np.int32),
                          np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]),
                          ref.layernorm_eps_q(d, eps, s_x))
    err = np.abs(y - np.clip(yf / s_out, -128, 127))
    assert err.mean() < 0.26 and err.max() < 0.6          # rounding alone: 0.25 and 0.5
