# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.attention.WindowedAttention`` against ``sw.ref.windowed_attention_int``.

The bench is ``sim/tb_attention.py``. Three builds: the ``tiny`` preset (head_dim 16, window 8,
lanes 4), a non-power-of-two one (head_dim 12, window 6, lanes 4: three chunks per row) and the
``tiny`` preset with ``lut_int8_products`` (the q.k and p.v products on
``hw.lut_multiplier.LutMultiplier``, as the accelerator top builds the unit on ECP5).
The window (1..max) and causal/centred are chosen per sequence at run time, so one build covers
both modes and every smaller window. Effort: ``NUM_SAMPLES`` random query rows per mode and
stream variant, else ``LF_EFFORT`` = ``fast`` (200), ``default`` (1000) or ``slow`` (10000).
"""

from __future__ import annotations

import json

import pytest

from sim.runner import have_verilator
from sim.suites import effort_samples, env_seed, run_with_summary

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not have_verilator(), reason="verilator not installed")]

EFFORT_ROWS = {"fast": 200, "default": 1000, "slow": 10_000}


def _params(name: str):
    from hw.params import AccelParams, preset

    if name in ("tiny", "tiny_lut"):
        return preset("tiny")
    return AccelParams(name="attn_d12_w6", head_dim=12, window=6, attn_lanes=4)


@pytest.fixture(scope="module", params=["tiny", "d12_w6", "tiny_lut"])
def attention_build(request):
    from hw.attention import WindowedAttention
    from sim import runner

    params = _params(request.param)
    lut = request.param.endswith("_lut")
    return runner.build(lambda: WindowedAttention.from_params(params, lut_int8_products=lut),
                        name="attention_lut" if lut else "attention", params=params)


def test_sim_attention_rows_bit_exact(attention_build, tmp_path, capsys):
    """Both window modes x four stream variants, each >= the effort's random rows."""
    rows = effort_samples(EFFORT_ROWS)
    seed = env_seed()
    with capsys.disabled():
        summary = run_with_summary(
            attention_build, "sim.tb_attention", "attention_rows",
            tmp_path / "attention_rows.json", tag="rows", env={"LF_ROWS": rows, "LF_SEED": seed},
            line=lambda name, v: (f"{name}: {v['rows']} rows, {v['mismatches']} mismatches "
                                  f"({v['corner_rows']} corner + {v['random_rows']} random "
                                  f"rows in {v['sequences']} sequences, seed {seed})"))
    assert len(summary) == 8, sorted(summary)
    for name, v in summary.items():
        assert v["random_rows"] >= rows > 0, name
        assert v["mismatches"] == 0, (name, v["errors"])


def test_sim_attention_bench_throughput(attention_build, tmp_path):
    """Full-window rows leave at the ideal rate; every case bit exact."""
    from sim import runner

    w = attention_build.params["window"]
    cases = [[w, 4 * w, True], [w, 4 * w, False], [max(1, w // 2), 3 * w, True]]
    out = tmp_path / "bench.json"
    runner.run(attention_build, "sim.tb_attention", testcase="attention_bench", tag="bench",
               env={"LF_BENCH_CASES": json.dumps(cases), "LF_RESULT_JSON": out})
    res = json.loads(out.read_text())["bench"]["cases"]
    assert [[c["window"], c["seq_len"], c["causal"]] for c in res] == cases
    for c in res:
        assert c["mismatches"] == 0, c
        # No row can beat the MAC bound; a smaller count would be a counting bug.
        assert c["cycles_per_row"] >= c["mac_bound_cycles_per_row"] - 1e-9, c
    for c in res[:2]:
        assert c["cycles_per_row"] <= 1.25 * c["ideal_cycles_per_row"], c
