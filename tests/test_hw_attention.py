# SPDX-License-Identifier: Apache-2.0
"""``hw.attention.WindowedAttention`` in amaranth.sim against ``sw.ref.windowed_attention_int``.

Short sequences only (amaranth.sim runs a few thousand cycles per second); the long random runs
with idle/backpressure variants are the Verilator benches (``tests/test_sim_attention.py``).
"""

from __future__ import annotations

import gc
import re
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import UnusedElaboratable
from amaranth.sim import Simulator
from helpers import pack_lanes, stream_put, unpack_lanes

from hw.attention import WindowedAttention
from hw.params import preset
from sw import ref


def pack_cfg(dut: WindowedAttention, seq_len, window, causal, params) -> int:
    layout = dut.cfg_layout
    fields = {"seq_len": seq_len, "window": window, "causal": int(causal),
              "score_mult": params.score_mult, "score_shift": params.score_shift,
              "out_mult": params.out_mult, "out_shift": params.out_shift}
    return sum(v << layout[name].offset for name, v in fields.items())


def run_unit(dut: WindowedAttention, sequences, *, max_cycles=5_000):
    """Run ``sequences`` = [(q, k, v, window, causal, params), ...] back to back.

    Returns (outputs per sequence, last flags, cycle of each i_q transfer, cycle of each output).
    """
    d = dut.head_dim
    outs: list[list[np.ndarray]] = [[] for _ in sequences]
    lasts: list[list[int]] = [[] for _ in sequences]
    q_times: list[int] = []
    o_times: list[int] = []
    cycle = [0]                                 # clock edges so far

    async def clock_counter(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def kv_driver(ctx):
        # K/V on its own process: the unit takes K/V rows as soon as its ring has room, so
        # centred windows (keys ahead of the query) never block the query stream.
        for _q, k, v, *_ in sequences:
            for kr, vr in zip(k, v):
                await stream_put(ctx, dut.i_kv, pack_lanes(kr) | (pack_lanes(vr) << (8 * d)))

    async def q_driver(ctx):
        for q, _k, _v, window, causal, params in sequences:
            await stream_put(ctx, dut.i_cfg, pack_cfg(dut, q.shape[0], window, causal, params))
            for qr in q:
                await stream_put(ctx, dut.i_q, pack_lanes(qr))
                q_times.append(cycle[0])
            # The next i_cfg is only taken after the sequence's last output row.

    async def sink(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for s, (q, *_rest) in enumerate(sequences):
            for _ in range(q.shape[0]):
                raw, = await ctx.tick().sample(dut.o_stream.payload.as_value()).until(
                    dut.o_stream.valid)
                o_times.append(cycle[0])
                outs[s].append(np.array(unpack_lanes(raw, d), dtype=np.int8))
                lasts[s].append(raw >> (8 * d))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(clock_counter, background=True)
    sim.add_testbench(q_driver)
    sim.add_testbench(kv_driver)
    sim.add_testbench(sink)
    while sim.advance() and cycle[0] < max_cycles:
        pass
    assert all(len(o) == s[0].shape[0] for o, s in zip(outs, sequences)), "unit hung"
    return [np.array(o) for o in outs], lasts, q_times, o_times


def _random_seq(rng, seq_len, d, window, causal, *, scale=0.02):
    q, k, v = (rng.integers(-128, 128, (seq_len, d)).astype(np.int8) for _ in range(3))
    params = ref.AttentionQuant.from_scales(scale, scale, 0.03, 0.02, d)
    return q, k, v, window, causal, params


@pytest.fixture(scope="module", params=[False, True], ids=["dsp_products", "lut_products"])
def tiny_unit(request):
    """The ``tiny`` unit, its int8 products on (portable) multipliers or LUT multipliers."""
    return WindowedAttention.from_params(preset("tiny"), lut_int8_products=request.param)


def test_attention_parameters():
    # Units built only to read their parameters (or rejected) are never elaborated: silence
    # Amaranth's UnusedElaboratable for them (the file pragma cannot be line 1, SPDX is).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        dut = WindowedAttention.from_params(preset("ulx3s_85f"))
        assert (dut.head_dim, dut.window, dut.lanes) == (32, 32, 8)
        assert dut.cycles_per_row == 128
        assert dut.kv_slots >= dut.window + dut.ring
        assert dut.latency == dut.row_latency(32)
        with pytest.raises(ValueError, match="lanes must divide head_dim"):
            WindowedAttention(head_dim=8, window=8, lanes=3)
        with pytest.raises(ValueError, match=r"window must be an integer in \[1, 256\]"):
            WindowedAttention(head_dim=8, window=0, lanes=4)
        with pytest.raises(TypeError, match="head_dim must be an integer"):
            WindowedAttention(head_dim=8.0, window=8, lanes=4)
        del dut
        gc.collect()


def test_attention_matches_reference(tiny_unit):
    rng = np.random.default_rng(0)
    d, w = tiny_unit.head_dim, tiny_unit.window
    seqs = [_random_seq(rng, 11, d, w, True), _random_seq(rng, 12, d, 5, False),
            _random_seq(rng, 3, d, w, False), _random_seq(rng, 1, d, w, True)]
    outs, lasts, _, _ = run_unit(tiny_unit, seqs)
    for out, last, (q, k, v, window, causal, params) in zip(outs, lasts, seqs):
        want = ref.windowed_attention_int(q, k, v, window, causal, params)
        np.testing.assert_array_equal(out, want)
        assert last == [0] * (q.shape[0] - 1) + [1]


def test_attention_latency_and_throughput(tiny_unit):
    """The first row's latency is ``row_latency(1)``; full rows leave every cycles_per_row."""
    rng = np.random.default_rng(1)
    seq = _random_seq(rng, 24, tiny_unit.head_dim, tiny_unit.window, True)
    outs, _, q_times, o_times = run_unit(tiny_unit, [seq])
    np.testing.assert_array_equal(outs[0], ref.windowed_attention_int(*seq))
    assert o_times[0] - q_times[0] == tiny_unit.row_latency(1)
    gaps = np.diff(o_times[12:])
    assert np.all(gaps == tiny_unit.cycles_per_row), gaps


def test_attention_corner_cases(tiny_unit):
    """One-hot rows, all-equal scores, saturating scores, the 1.0 edge, window 1, T=1."""
    d, w = tiny_unit.head_dim, tiny_unit.window
    ones = np.ones((6, d), dtype=np.int8)
    v = np.arange(6 * d).reshape(6, d).astype(np.int8) - 24
    loud = np.full((6, d), -128, dtype=np.int8)
    alt = np.where(np.arange(6)[:, None] % 2 == 0, -128, 127).repeat(d, 1).astype(np.int8)
    params = ref.AttentionQuant.from_scales(0.05, 0.05, 0.03, 0.02, d)
    big = ref.AttentionQuant((1 << 15) - 1, 1, 1 << 14, 29)            # every difference saturates
    onehot_k = np.zeros((6, d), dtype=np.int8)
    onehot_k[3] = 127
    seqs = [
        (ones, ones, v, w, True, params),                              # all-equal scores
        (ones * 10, onehot_k, v, w, False, params),                    # one-hot rows
        (loud, loud, v, w, True, params),                              # |q.k| = 128 * 128 * d
        (loud, alt, v, w, False, big),                                 # saturating differences
        (ones, ones, v, 1, True, params),                              # window 1: p = 1.0
        (ones[:1], ones[:1], v[:1], w, False, params),                 # T = 1
    ]
    outs, lasts, _, _ = run_unit(tiny_unit, seqs)
    for out, last, seq in zip(outs, lasts, seqs):
        np.testing.assert_array_equal(out, ref.windowed_attention_int(*seq))
        assert last[-1] == 1 and sum(last) == 1


@pytest.mark.parametrize("window, causal", [(1, True), (2, False), (4, True)])
def test_attention_small_windows_full_speed(tiny_unit, window, causal):
    """Runtime windows below the build's keep one row per window * CH cycles."""
    rng = np.random.default_rng(window)
    seq = _random_seq(rng, 40, tiny_unit.head_dim, window, causal)
    outs, _, _, o_times = run_unit(tiny_unit, [seq])
    np.testing.assert_array_equal(outs[0], ref.windowed_attention_int(*seq))
    chunks = tiny_unit.head_dim // tiny_unit.lanes
    assert np.all(np.diff(o_times[10:30]) == window * chunks)


@pytest.mark.parametrize("lut_int8_products", [False, True])
def test_attention_one_chunk_per_row(lut_int8_products):
    """lanes == head_dim (one chunk per key): every counter and flag at its shortest."""
    dut = WindowedAttention(head_dim=4, window=3, lanes=4, lut_int8_products=lut_int8_products)
    rng = np.random.default_rng(3)
    seqs = [_random_seq(rng, 9, 4, 3, True), _random_seq(rng, 7, 4, 1, False),
            _random_seq(rng, 2, 4, 3, False), _random_seq(rng, 10, 4, 2, True)]
    outs, lasts, _, o_times = run_unit(dut, seqs)
    for out, last, seq in zip(outs, lasts, seqs):
        np.testing.assert_array_equal(out, ref.windowed_attention_int(*seq))
        assert last == [0] * (seq[0].shape[0] - 1) + [1]


def test_attention_dsp_multipliers_flag():
    """``dsp_multipliers`` reaches every product: MULT18X18D on ECP5, none with the flag off."""
    dsp = WindowedAttention.from_params(preset("tiny"), family="ecp5")
    text = rtlil.convert(dsp, name="attention")
    # q.k and p.v: one per lane each; the output requant: two per lane; the score scaler and
    # the normalizer: two 17-bit slices each.
    assert len(re.findall(r"^\s*cell \\MULT18X18D ", text, re.M)) == 4 * dsp.lanes + 4
    lut = WindowedAttention.from_params(preset("tiny").replace(dsp_multipliers=False),
                                        family="ecp5")
    assert lut.use_dsp is False
    assert "MULT18X18D" not in rtlil.convert(lut, name="attention")


def test_attention_lut_int8_products():
    """``lut_int8_products`` takes the q.k and p.v products (one per lane each) off the DSPs:
    on ECP5 only the requant lanes, the score scaler and the normalizer keep ``MULT18X18D``,
    no ``$mul`` between two signals is left for synthesis to map, and the latency is the same."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        dsp = WindowedAttention.from_params(preset("tiny"), family="ecp5")
        lut = WindowedAttention.from_params(preset("tiny"), family="ecp5", lut_int8_products=True)
        assert (dsp.lut_int8_products, lut.lut_int8_products) == (False, True)
        assert lut.latency == dsp.latency and lut.row_latency(1) == dsp.row_latency(1)
        with pytest.raises(TypeError, match="lut_int8_products must be a bool"):
            WindowedAttention(head_dim=8, window=8, lanes=4, lut_int8_products=1)
        del dsp
        gc.collect()
    text = rtlil.convert(lut, name="attention")
    assert len(re.findall(r"^\s*cell \\MULT18X18D ", text, re.M)) == 2 * lut.lanes + 4
    products = re.findall(r"^module \\attention\.((?:qk|pv)_mul\d+)$", text, re.M)
    assert sorted(products) == sorted([f"qk_mul{l}" for l in range(lut.lanes)]
                                      + [f"pv_mul{l}" for l in range(lut.lanes)])
    for body in re.findall(r"cell \$mul \S+\n(.*?)\n +end", text, re.S):
        operands = re.findall(r"connect \\[AB] (.*)", body)
        assert any(re.fullmatch(r"\d+'[01x-]+", o.strip()) for o in operands), body
