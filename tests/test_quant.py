# SPDX-License-Identifier: Apache-2.0
"""Golden tables for the numerics spec (sw/quant.py). A change here is a numerics change."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sw import quant
from sw.quant import Round, quantize_multiplier, requantize, round_shift

# (acc, mult, shift, expected int8)
REQUANT_GOLDEN = [
    (0, 1 << 14, 1, 0),
    # ties: x = acc*mult / 2**shift exactly .5 -> toward +infinity
    (5, 1 << 14, 15, 3),            # 2.5 -> 3
    (-5, 1 << 14, 15, -2),          # -2.5 -> -2
    (1, 1 << 14, 15, 1),            # 0.5 -> 1
    (-1, 1 << 14, 15, 0),           # -0.5 -> 0
    (3, 1 << 14, 15, 2),            # 1.5 -> 2
    (-3, 1 << 14, 15, -1),          # -1.5 -> -1
    # just off the tie
    (-5 * 2 - 1, 1 << 14, 16, -3),  # -2.75 -> -3
    (-201, 1 << 14, 16, -50),       # -50.25 -> -50
    # saturation both ways
    (256, 1 << 14, 14, 127),
    (-258, 1 << 14, 14, -128),
    (127, 1 << 14, 14, 127),
    (-128, 1 << 14, 14, -128),
    (-129, 1 << 14, 14, -128),
    # most negative / positive int32 accumulators
    (-(1 << 31), (1 << 15) - 1, 47, 0),    # -2**31*(2**15-1)/2**47 = -0.49998... -> 0
    ((1 << 31) - 1, (1 << 15) - 1, 47, 0),
    (-(1 << 31), (1 << 15) - 1, 1, -128),
    ((1 << 31) - 1, (1 << 15) - 1, 1, 127),
    (-(1 << 31), 1 << 14, 38, -128),       # exactly -128.0
    (-(1 << 31), 1 << 14, 39, -64),
    # mult 0 gives 0 for any acc
    (-(1 << 31), 0, 1, 0),
    ((1 << 31) - 1, 0, 47, 0),
]


@pytest.mark.parametrize(("acc", "mult", "shift", "expected"), REQUANT_GOLDEN)
def test_requantize_golden(acc, mult, shift, expected):
    got = requantize(np.array([acc], dtype=np.int64), mult, shift)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, np.array([expected], dtype=np.int8))


def _exact_half_up(acc: int, mult: int, shift: int) -> int:
    """Independent definition: floor(acc*mult/2**shift + 1/2) with Python's exact integers."""
    num = acc * mult
    den = 1 << shift
    return max(-128, min(127, (2 * num + den) // (2 * den)))


@given(acc=st.integers(quant.ACC_MIN, quant.ACC_MAX),
       mult=st.integers(0, (1 << quant.MULT_BITS) - 1),
       shift=st.integers(quant.SHIFT_MIN, quant.SHIFT_MAX))
def test_requantize_matches_exact_rational_rounding(acc, mult, shift):
    assert int(requantize(acc, mult, shift)) == _exact_half_up(acc, mult, shift)


def test_round_shift_ties_toward_plus_infinity():
    x = np.array([5, -5, 7, -7, 1, -1, 3, -3], dtype=np.int64)
    np.testing.assert_array_equal(round_shift(x, 1), [3, -2, 4, -3, 1, 0, 2, -1])


def test_requantize_per_channel_broadcast():
    acc = np.array([[100, 100, 100]], dtype=np.int64)
    mult = np.array([1 << 14, 1 << 14, 0])
    shift = np.array([15, 14, 1])
    np.testing.assert_array_equal(requantize(acc, mult, shift), [[50, 100, 0]])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"acc": 1 << 31, "mult": 1, "shift": 1}, "outside int32"),
    ({"acc": -(1 << 31) - 1, "mult": 1, "shift": 1}, "outside int32"),
    ({"acc": 0, "mult": 1 << 15, "shift": 1}, "multiplier must be in"),
    ({"acc": 0, "mult": -1, "shift": 1}, "multiplier must be in"),
    ({"acc": 0, "mult": 1, "shift": 0}, "shift must be in"),
    ({"acc": 0, "mult": 1, "shift": 48}, "shift must be in"),
])
def test_requantize_rejects_out_of_range(kwargs, match):
    with pytest.raises(ValueError, match=match):
        requantize(**kwargs)


def test_only_one_rounding_rule():
    assert [r.name for r in Round] == ["HALF_UP"]
    assert quant.ROUNDING is Round.HALF_UP


# (real, mult, shift)
MULTIPLIER_GOLDEN = [
    (0.0, 0, 1),
    (0.5, 1 << 14, 15),
    (1.0, 1 << 14, 14),
    (0.75, 3 << 13, 15),
    (2.0 ** -20, 1 << 14, 34),
    (2.0 ** -33, 1 << 14, 47),
    (2.0 ** -34, 1 << 13, 47),          # denormalised
    (2.0 ** -49, 0, 1),                 # rounds to zero
    (1 - 2.0 ** -17, 1 << 14, 14),      # rounds up into the next binade
]


@pytest.mark.parametrize(("real", "mult", "shift"), MULTIPLIER_GOLDEN)
def test_quantize_multiplier_golden(real, mult, shift):
    assert quantize_multiplier(real) == (mult, shift)


def test_quantize_multiplier_largest_scale():
    mult, shift = quantize_multiplier(16383.4)
    assert (mult, shift) == ((1 << 15) - 1, 1)
    with pytest.raises(ValueError, match="too large"):
        quantize_multiplier(16384.0)


@given(st.floats(min_value=2.0 ** -30, max_value=1000.0))
def test_quantize_multiplier_relative_error(real):
    mult, shift = quantize_multiplier(real)
    assert (1 << 14) <= mult < (1 << 15)
    assert quant.SHIFT_MIN <= shift <= quant.SHIFT_MAX
    assert abs(mult / 2.0 ** shift - real) <= real * 2.0 ** -15


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_quantize_multiplier_rejects(bad):
    with pytest.raises(ValueError):
        quantize_multiplier(bad)


@pytest.mark.parametrize("bad", ["0.5", True, None, [0.5]])
def test_quantize_multiplier_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="requant scale must be a finite number"):
        quantize_multiplier(bad)


# -- the strict integer API: no truncation, no wrap-around, no NaN --------------------------------

@pytest.mark.parametrize("call", [
    lambda: requantize(100, 1.9, 3), lambda: requantize(100, 1 << 14, "3"),
    lambda: requantize(100.0, 1 << 14, 3), lambda: requantize(True, 1 << 14, 3),
    lambda: requantize(np.array([1.5]), 1 << 14, 3), lambda: round_shift(7.9, 1),
    lambda: round_shift(7, 2.0), lambda: round_shift("7", 1), lambda: round_shift(None, 1),
    lambda: quant.saturate(300.7), lambda: quant.saturate(np.array(["1"])),
])
def test_integer_arguments_refuse_floats_bools_and_strings(call):
    with pytest.raises(TypeError, match="must be an integer or an integer array"):
        call()


@pytest.mark.parametrize("x, shift, match", [
    (1 << 62, 1, "round_shift input must be in \\(-2\\*\\*62, 2\\*\\*62\\)"),
    (-(1 << 62), 5, "round_shift input must be in"),
    (np.array([0, (1 << 63) - 1]), 47, "round_shift input must be in"),
    (1, 0, "shift must be in \\[1, 47\\]"), (1, 48, "shift must be in \\[1, 47\\]"),
    (1, 62, "shift must be in \\[1, 47\\]"),
    (1 << 63, 1, "must be within int64"), (1 << 70, 1, "must be within int64"),
    ([1, 1 << 70], 1, "must be within int64"),
])
def test_round_shift_cannot_wrap(x, shift, match):
    with pytest.raises(ValueError, match=match):
        round_shift(x, shift)


def test_round_shift_largest_inputs_are_exact():
    big = (1 << 62) - 1
    np.testing.assert_array_equal(round_shift(np.array([big, -big]), 47),
                                  [(big + (1 << 46)) >> 47, (-big + (1 << 46)) >> 47])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_quantizers_refuse_nan_and_infinity(bad):
    x = np.array([0.5, bad])
    with pytest.raises(ValueError, match="activations contains NaN or infinity"):
        quant.quantize_act(x, 0.1)
    with pytest.raises(ValueError, match="bias contains NaN or infinity"):
        quant.quantize_bias(x, 0.1, np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="weights contains NaN or infinity"):
        quant.quantize_weight_per_channel(x[None])
    with pytest.raises(ValueError, match="weight scales contains NaN"):
        quant.quantize_bias(np.ones(2), 0.1, x)


@pytest.mark.parametrize("scale", [0.0, -0.5, np.nan, np.inf])
def test_quantizers_refuse_bad_scales(scale):
    with pytest.raises(ValueError, match="activation scale must be a positive finite number"):
        quant.quantize_act(np.ones(2), scale)
    with pytest.raises(ValueError, match="input scale must be a positive finite number"):
        quant.quantize_bias(np.ones(2), scale, np.ones(2))
    with pytest.raises(ValueError, match="output scale must be a positive finite number"):
        quant.requant_params(0.5, scale)


def test_negative_weight_scale_does_not_flip_the_bias():
    with pytest.raises(ValueError, match="weight scales must be positive, not -1.0"):
        quant.quantize_bias(np.ones(2), 0.5, np.array([0.25, -1.0]))
    with pytest.raises(ValueError, match="input scales must be positive, not 0.0"):
        quant.requant_params(np.array([0.5, 0.0]), 1.0)


@pytest.mark.parametrize("call", [
    lambda: quant.quantize_act(np.array(["1.0"]), 0.1),
    lambda: quant.quantize_act(np.ones(2), "0.1"),
    lambda: quant.quantize_act(np.ones(2), True),
    lambda: quant.quantize_bias(np.ones(2), "0.5", np.ones(2)),
    lambda: quant.quantize_weight_per_channel(np.array([[True, False]])),
    lambda: quant.requant_params(np.array(["0.5"]), 1.0),
])
def test_quantizers_refuse_non_numbers(call):
    with pytest.raises(TypeError, match="must be a (real|positive finite) number"):
        call()


def test_weights_of_minus_128_are_refused():
    with pytest.raises(ValueError, match="w holds -128; int8 weights are in \\[-127, 127\\]"):
        quant.check_weights("w", np.array([[0, -128]], np.int8))
    with pytest.raises(TypeError, match="w must be an int8 array, not int16"):
        quant.check_weights("w", np.zeros(2, np.int16))
    np.testing.assert_array_equal(quant.check_weights("w", np.array([-127, 127], np.int8)),
                                  [-127, 127])


def test_weight_quantization_per_channel_narrow_range():
    w = np.array([[1.0, -0.5], [-2.0, 0.25], [0.0, 0.0]])
    w_q, scale = quant.quantize_weight_per_channel(w, axis=-1)
    np.testing.assert_allclose(scale, [2.0 / 127, 0.5 / 127])
    np.testing.assert_array_equal(w_q, [[64, -127], [-127, 64], [0, 0]])
    assert w_q.min() >= -127


def test_weight_quantization_zero_channel_and_nan():
    w_q, scale = quant.quantize_weight_per_channel(np.zeros((3, 2)), axis=-1)
    np.testing.assert_array_equal(w_q, 0)
    np.testing.assert_array_equal(scale, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        quant.quantize_weight_per_channel(np.array([[np.nan]]))


def test_activation_quantization_saturates_and_rounds_half_away():
    x = np.array([0.5, -0.5, 1.5, 200.0, -200.0, -128.0])
    np.testing.assert_array_equal(quant.quantize_act(x, 1.0), [1, -1, 2, 127, -128, -128])
    with pytest.raises(ValueError, match="positive"):
        quant.quantize_act(x, 0.0)


def test_bias_quantization_int32_saturation():
    b = quant.quantize_bias(np.array([1.0, -1e30, 1e30]), 0.5, np.array([0.25, 1.0, 1.0]))
    assert b.dtype == np.int32
    np.testing.assert_array_equal(b, [8, quant.ACC_MIN, quant.ACC_MAX])


def test_requant_params_per_channel():
    mult, shift = quant.requant_params(np.array([0.5, 0.25]), 1.0)
    np.testing.assert_array_equal(mult, [1 << 14, 1 << 14])
    np.testing.assert_array_equal(shift, [15, 16])
    with pytest.raises(ValueError, match="output scale"):
        quant.requant_params(0.5, 0.0)
