# SPDX-License-Identifier: Apache-2.0
"""amaranth.sim tests of the integer-softmax pieces (``hw/softmax.py``) against ``sw/ref.py``."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw import numerics
from hw import softmax as hs
from sw import ref


def _run_pipeline(dut, inputs: dict[str, list[int]], outputs: list[str], static=None):
    """Drive one input vector per cycle; collect outputs ``dut.latency`` cycles later."""
    n = len(next(iter(inputs.values())))
    got: dict[str, list[int]] = {name: [] for name in outputs}

    async def bench(ctx):
        for name, value in (static or {}).items():
            ctx.set(getattr(dut, name), value)
        for i in range(n + dut.latency):
            if i < n:
                for name, values in inputs.items():
                    ctx.set(getattr(dut, name), values[i])
            await ctx.tick()
            if i + 1 - dut.latency >= 0 and i + 1 - dut.latency < n:
                for name in outputs:
                    got[name].append(ctx.get(getattr(dut, name)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return {name: np.array(v, dtype=np.int64) for name, v in got.items()}


def test_softmax_widths_hold_the_formats():
    # The signal widths are derived from hw.numerics; each must hold its format's extremes.
    assert numerics.SOFTMAX_U_MAX < 1 << hs.U_WIDTH
    assert max(numerics.SOFTMAX_EXP_TABLE) == 1 << numerics.SOFTMAX_EXP_BITS < 1 << hs.EXP_WIDTH
    assert 1 << numerics.SOFTMAX_PROB_BITS < 1 << hs.PROB_WIDTH
    assert numerics.SOFTMAX_MAX_WINDOW << numerics.SOFTMAX_EXP_BITS < 1 << hs.SUM_WIDTH
    recip_max = (1 << numerics.SOFTMAX_RECIP_BITS) // (1 << numerics.SOFTMAX_EXP_BITS)
    assert recip_max < 1 << hs.RECIP_WIDTH
    assert list(numerics.SOFTMAX_EXP_TABLE) == ref.softmax_exp_int(
        np.arange(1 << numerics.SOFTMAX_EXP_FRAC_BITS)).tolist()


def test_exp_all_inputs():
    u = np.arange(numerics.SOFTMAX_U_MAX + 1)
    got = _run_pipeline(hs.SoftmaxExp(), {"u": u.tolist()}, ["e"])
    np.testing.assert_array_equal(got["e"], ref.softmax_exp_int(u))


@pytest.mark.parametrize("mult, shift", [(1, 1), (22787, 20), ((1 << 15) - 1, 47), (16384, 15),
                                         (0, 1), (30001, 31)])
def test_score_scaler(mult, shift):
    rng = np.random.default_rng(mult + shift)
    diff = np.concatenate([np.arange(0, 40), rng.integers(0, 1 << 23, 200),
                           [(1 << 23) - 1, 2046, 2047, 1 << 22]])
    dut = hs.ScoreScaler(23)
    got = _run_pipeline(dut, {"diff": diff.tolist()}, ["u"], {"mult": mult, "shift": shift})
    np.testing.assert_array_equal(got["u"], ref.softmax_u_int(diff, mult, shift))


def test_reciprocal():
    rng = np.random.default_rng(5)
    total = np.concatenate([[1 << 15, (1 << 15) + 1, 3 << 15, (1 << 23) - 1, 1 << 23],
                            rng.integers(1 << 15, (1 << 23) + 1, 300)])
    tags = (np.arange(total.size) % 8).tolist()
    got = _run_pipeline(hs.Reciprocal(tag_width=3), {"total": total.tolist(), "tag": tags},
                        ["r", "o_tag"])
    np.testing.assert_array_equal(got["r"], ref.softmax_recip_int(total))
    np.testing.assert_array_equal(got["o_tag"], tags)


def test_normalizer():
    rng = np.random.default_rng(6)
    total = rng.integers(1 << 15, (1 << 23) + 1, 300)
    e = np.minimum(rng.integers(0, (1 << 15) + 1, 300), total)
    e[:3] = [1 << 15, 1 << 15, 1]
    total[:3] = [1 << 15, (1 << 15) + 1, (1 << 15) + 1]
    r = ref.softmax_recip_int(total)
    got = _run_pipeline(hs.Normalizer(), {"e": e.tolist(), "r": r.tolist()}, ["p"])
    np.testing.assert_array_equal(got["p"], ref.softmax_normalize_int(e, r))
    assert got["p"][:3].tolist() == [1 << 15, 32767, 1]

