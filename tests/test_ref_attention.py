# SPDX-License-Identifier: Apache-2.0
"""Integer softmax and windowed attention reference (``sw/ref.py``): golden tables + properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sim.bench_attention import float_attention
from sw import quant, ref

ONE = 1 << ref.SOFTMAX_PROB_BITS           # 1.0 in Q1.15


def _loop_attention(q, k, v, window, causal, params):
    """Independent per-row implementation (slices, no mask) of windowed_attention_int."""
    lo, hi = ref.attention_window_bounds(q.shape[0], window, causal)
    out = np.zeros(q.shape, dtype=np.int8)
    for t in range(q.shape[0]):
        kk, vv = k[lo[t]:hi[t]].astype(np.int64), v[lo[t]:hi[t]].astype(np.int64)
        s = kk @ q[t].astype(np.int64)
        p = ref.softmax_int(s, params.score_mult, params.score_shift).astype(np.int64)
        out[t] = quant.requantize(p @ vv, params.out_mult, params.out_shift)
    return out


# -- golden tables ----------------------------------------------------------------------------

def test_exp_table_matches_formula():
    want = [round(2 ** 15 * 2 ** (-f / 64)) for f in range(64)]
    assert ref.SOFTMAX_EXP_TABLE.tolist() == want
    assert ref.SOFTMAX_EXP_TABLE[0] == ONE
    assert np.all(np.diff(ref.SOFTMAX_EXP_TABLE) < 0)
    assert ref.SOFTMAX_EXP_TABLE.min() > 1 << 14       # 16-bit unsigned entries, top bit = 1.0
    assert ref.SOFTMAX_U_MAX == 1023 and ref.SOFTMAX_NORM_SHIFT == 23


@pytest.mark.parametrize("u, e", [
    (0, 32768), (1, 32415), (63, 16562), (64, 16384), (65, 16207), (128, 8192),
    (640, 32), (896, 2), (959, 1), (960, 1), (961, 0), (1023, 0),
])
def test_softmax_exp_golden(u, e):
    assert ref.softmax_exp_int(np.array([u]))[0] == e


@pytest.mark.parametrize("diff, mult, shift, u", [
    (0, 30000, 20, 0),
    (1, 1, 1, 1),                    # 0.5 -> 1: ties toward +infinity
    (3, 1, 2, 1),                    # 0.75 -> 1
    (2, 1, 2, 1),                    # 0.5 -> 1
    (1, 1, 2, 0),                    # 0.25 -> 0
    (1023, 1, 1, 512),
    (2046, 1, 1, 1023),
    (2047, 1, 1, 1023),              # 1023.5 -> 1024 -> saturates at 1023
    (1 << 22, (1 << 15) - 1, 1, 1023),   # largest difference x largest multiplier
])
def test_softmax_u_golden(diff, mult, shift, u):
    assert ref.softmax_u_int(np.array([diff]), mult, shift)[0] == u


@pytest.mark.parametrize("total, r", [
    (1 << 15, 1 << 23), (1 << 23, 1 << 15), (3 << 15, 2796202), (32769, 8388352),
    ((1 << 15) + 12345, 6093097),
])
def test_softmax_recip_golden(total, r):
    assert ref.softmax_recip_int(np.array([total]))[0] == r
    assert r == (1 << 38) // total


@pytest.mark.parametrize("scores, probs", [
    ([5], [ONE]),                                   # T=1 / a single key: exactly 1.0
    ([7, 7, 7], [10923, 10923, 10923]),             # all equal, odd count
    ([-3] * 8, [4096] * 8),                         # all equal, power of two: exact
    ([0, -100000, -100000], [ONE, 0, 0]),           # one-hot: others underflow to e = 0
    ([0, -1920, -1920], [32766, 1, 1]),             # u = 960: e = 1, the others keep 1 LSB
    ([0, -1922, -2046], [ONE, 0, 0]),               # u = 961, 1023: e = 0
    ([2 ** 21, -(2 ** 21)], [ONE, 0]),              # saturating scores (|q.k| = 2**21)
])
def test_softmax_int_golden(scores, probs):
    # score_mult / 2**20 = 0.5 log2-units per score step.
    got = ref.softmax_int(np.array(scores, dtype=np.int32), 1 << 14, 15)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, np.array(probs, dtype=np.uint16))


def test_softmax_power_of_two_edge():
    """1.0 (2**15) is a 16th, integer bit; p == 2**15 iff the row has exactly one nonzero e."""
    r = ref.softmax_recip_int(np.array([ONE]))
    assert ref.softmax_normalize_int(np.array([ONE]), r)[0] == ONE
    # The smallest possible competitor (e = 1) already pulls the winner below 1.0.
    r = ref.softmax_recip_int(np.array([ONE + 1]))
    np.testing.assert_array_equal(ref.softmax_normalize_int(np.array([ONE, 1]), r), [32767, 1])


def test_window_bounds_golden():
    lo, hi = ref.attention_window_bounds(5, 3, True)
    assert lo.tolist() == [0, 0, 0, 1, 2] and hi.tolist() == [1, 2, 3, 4, 5]
    lo, hi = ref.attention_window_bounds(5, 3, False)
    assert lo.tolist() == [0, 0, 1, 2, 3] and hi.tolist() == [2, 3, 4, 5, 5]
    lo, hi = ref.attention_window_bounds(6, 4, False)                 # t-2 .. t+1
    assert lo.tolist() == [0, 0, 0, 1, 2, 3] and hi.tolist() == [2, 3, 4, 5, 6, 6]
    lo, hi = ref.attention_window_bounds(4, 1, False)
    assert lo.tolist() == [0, 1, 2, 3] and hi.tolist() == [1, 2, 3, 4]


def test_windowed_attention_golden_t1():
    q = np.array([[1, 2]], dtype=np.int8)
    v = np.array([[-128, 127]], dtype=np.int8)
    params = ref.AttentionQuant(20000, 20, 1 << 14, 15)               # out = acc / 2
    y = ref.windowed_attention_int(q, q, v, 4, True, params)
    # p = 2**15, acc = 2**15 * v, out = (acc * 2**14 + 2**14) >> 15 = v * 2**14 -> saturates.
    np.testing.assert_array_equal(y, [[-128, 127]])
    params = ref.AttentionQuant(20000, 20, 1 << 14, 30)               # x 2**-16 / 2
    y = ref.windowed_attention_int(q, q, v, 4, False, params)
    np.testing.assert_array_equal(y, [[-64, 64]])                     # 63.5 -> 64 (half up)


def test_windowed_attention_golden_small():
    """A hand-checkable 3-token causal example, window 2."""
    q = np.array([[1, 0], [1, 0], [1, 0]], dtype=np.int8)
    k = np.array([[0, 0], [64, 0], [0, 0]], dtype=np.int8)
    v = np.array([[100, -100], [20, 0], [-40, 10]], dtype=np.int8)
    params = ref.AttentionQuant(1 << 14, 15, 1 << 14, 30)             # u = diff/2, out = acc/2**16
    y = ref.windowed_attention_int(q, k, v, 2, True, params)
    # t=0: only key 0 -> out = v0 / 2.  t=1: scores (0, 64): u = (32, 0), e = (23170, 32768),
    # S = 55938, r = 4913974, p = (13573, 19195); t=2: scores (64, 0): p = (19195, 13573).
    p1 = np.array([13573, 19195])
    np.testing.assert_array_equal(ref.softmax_int(np.array([0, 64]), 1 << 14, 15), p1)
    acc1 = p1 @ v[0:2].astype(np.int64)
    acc2 = p1[::-1] @ v[1:3].astype(np.int64)
    want = np.array([[50, -50], quant.requantize(acc1, 1 << 14, 30),
                     quant.requantize(acc2, 1 << 14, 30)], dtype=np.int8)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(want, [[50, -50], [27, -21], [-2, 2]])


def test_full_attention_when_window_covers_sequence():
    rng = np.random.default_rng(1)
    q, k, v = (rng.integers(-128, 128, (9, 8)).astype(np.int8) for _ in range(3))
    params = ref.AttentionQuant.from_scales(0.02, 0.02, 0.03, 0.02, 8)
    np.testing.assert_array_equal(ref.windowed_attention_int(q, k, v, 9, True, params),
                                  ref.windowed_attention_int(q, k, v, 256, True, params))
    np.testing.assert_array_equal(ref.windowed_attention_int(q, k, v, 17, False, params),
                                  ref.windowed_attention_int(q, k, v, 256, False, params))
    # Causal, centred and full differ on random data (the windows are really applied).
    assert not np.array_equal(ref.windowed_attention_int(q, k, v, 3, True, params),
                              ref.windowed_attention_int(q, k, v, 3, False, params))


def test_from_scales():
    params = ref.AttentionQuant.from_scales(0.05, 0.04, 0.02, 0.01, 16)
    real_s = 0.05 * 0.04 / 4 * math.log2(math.e) * 64
    assert abs(params.score_mult / 2 ** params.score_shift / real_s - 1) < 2 ** -14
    real_o = 0.02 / 2 ** 15 / 0.01
    assert abs(params.out_mult / 2 ** params.out_shift / real_o - 1) < 2 ** -14


@pytest.mark.parametrize("seq_len, head_dim, window, causal", [
    (64, 8, 8, True), (64, 32, 32, False), (100, 16, 256, True), (40, 128, 5, False),
])
def test_accuracy_vs_float(seq_len, head_dim, window, causal):
    """Within one output LSB of float softmax attention on the same int8 inputs."""
    rng = np.random.default_rng(seq_len + head_dim + window)
    qf, kf, vf = (rng.normal(size=(seq_len, head_dim)) for _ in range(3))
    scales = [np.abs(x).max() / 127 for x in (qf, kf, vf)]
    q, k, v = (quant.quantize_act(x, s) for x, s in zip((qf, kf, vf), scales))
    want_f = float_attention(q * scales[0], k * scales[1], v * scales[2], window, causal)
    scale_out = np.abs(want_f).max() / 127
    params = ref.AttentionQuant.from_scales(*scales, scale_out, head_dim)
    y = ref.windowed_attention_int(q, k, v, window, causal, params)
    err = np.abs(y - want_f / scale_out)
    assert err.max() < 1.0
    assert err.mean() < 0.3                 # rounding the float result alone gives 0.25


# -- errors -----------------------------------------------------------------------------------

def test_errors():
    q = np.zeros((4, 8), dtype=np.int8)
    params = ref.AttentionQuant(1, 1, 1, 1)
    with pytest.raises(TypeError, match="q must be a int8 array"):
        ref.windowed_attention_int(q.astype(np.int16), q, q, 4, True, params)
    with pytest.raises(ValueError, match="one shape"):
        ref.windowed_attention_int(q, q[:3], q, 4, True, params)
    with pytest.raises(ValueError, match="window must be"):
        ref.windowed_attention_int(q, q, q, 0, True, params)
    with pytest.raises(ValueError, match="window must be"):
        ref.windowed_attention_int(q, q, q, 257, True, params)
    with pytest.raises(TypeError, match="causal must be a bool"):
        ref.windowed_attention_int(q, q, q, 4, 1, params)
    with pytest.raises(TypeError, match="params must be"):
        ref.windowed_attention_int(q, q, q, 4, True, (1, 1, 1, 1))
    with pytest.raises(ValueError, match="score_mult must be in"):
        ref.AttentionQuant(1 << 15, 1, 1, 1)
    with pytest.raises(ValueError, match="out_shift must be in"):
        ref.AttentionQuant(1, 1, 1, 0)
    with pytest.raises(TypeError, match="score_shift must be an integer"):
        ref.AttentionQuant(1, 1.0, 1, 1)
    with pytest.raises(ValueError, match="scale_v must be"):
        ref.AttentionQuant.from_scales(1.0, 1.0, 0.0, 1.0, 8)
    with pytest.raises(ValueError, match="head_dim must be"):
        ref.AttentionQuant.from_scales(1.0, 1.0, 1.0, 1.0, 129)
    with pytest.raises(ValueError, match="too large"):
        ref.AttentionQuant.from_scales(100.0, 100.0, 1.0, 1.0, 1)
    with pytest.raises(ValueError, match="at least one|1..256 valid keys"):
        ref.softmax_int(np.zeros((2, 3), np.int32), 1, 1, np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="u must be in"):
        ref.softmax_exp_int(np.array([1024]))
    with pytest.raises(ValueError, match="exp sum must be in"):
        ref.softmax_recip_int(np.array([100]))


# -- properties -------------------------------------------------------------------------------

_row = hnp.arrays(np.int64, st.integers(1, 40),
                  elements=st.integers(-(2 ** 21), 2 ** 21))
_mult = st.integers(0, (1 << 15) - 1)
_shift = st.integers(1, 47)


@settings(max_examples=200, deadline=None)
@given(_row, _mult, _shift, st.integers(-(2 ** 21), 2 ** 21))
def test_softmax_properties(scores, mult, shift, offset):
    p = ref.softmax_int(scores, mult, shift).astype(np.int64)
    n = scores.size
    assert np.all((p >= 0) & (p <= ONE))
    assert ONE - n <= p.sum() <= ONE + n                      # each p within 1 LSB of exact
    assert p[np.argmax(scores)] == p.max() > 0
    order = np.argsort(scores, kind="stable")                 # monotone in the score
    assert np.all(np.diff(p[order]) >= 0)
    if np.count_nonzero(p) == 1:
        assert p.max() == ONE                                 # the 1.0 edge case, exactly
    else:
        assert p.max() < ONE
    # Only differences to the row max matter: a shift of every score changes nothing.
    np.testing.assert_array_equal(
        ref.softmax_int(scores + offset, mult, shift).astype(np.int64), p)


@settings(max_examples=100, deadline=None)
@given(_row, _mult, _shift, st.data())
def test_softmax_mask_equals_slice(scores, mult, shift, data):
    mask = data.draw(hnp.arrays(np.bool_, scores.shape))
    mask[data.draw(st.integers(0, scores.size - 1))] = True
    p = ref.softmax_int(scores, mult, shift, mask)
    assert np.all(p[~mask] == 0)
    np.testing.assert_array_equal(p[mask], ref.softmax_int(scores[mask], mult, shift))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 20), st.integers(1, 12), st.integers(1, 24), st.booleans(),
       _mult, _shift, st.integers(1 << 14, (1 << 15) - 1), st.integers(15, 40), st.data())
def test_windowed_attention_equals_row_loop(seq_len, head_dim, window, causal, s_mult, s_shift,
                                            o_mult, o_shift, data):
    arr = hnp.arrays(np.int8, (seq_len, head_dim))
    q, k, v = data.draw(arr), data.draw(arr), data.draw(arr)
    params = ref.AttentionQuant(s_mult, s_shift, o_mult, o_shift)
    y = ref.windowed_attention_int(q, k, v, window, causal, params)
    assert y.dtype == np.int8 and y.shape == q.shape
    np.testing.assert_array_equal(y, _loop_attention(q, k, v, window, causal, params))
    lo, hi = ref.attention_window_bounds(seq_len, window, causal)
    assert np.all(hi - lo <= window) and np.all(hi - lo >= 1)
    assert np.all((lo <= np.arange(seq_len)) & (np.arange(seq_len) < hi))
