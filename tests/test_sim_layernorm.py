# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.layernorm.LayerNorm`` (preset ``tiny``, ``max_dim`` 1024) against
``sw.ref.layernorm_int``.

The bench is ``sim/tb_layernorm.py``; one cached Verilator build serves it. Effort:
``NUM_SAMPLES`` random rows per variant, else ``LF_EFFORT`` = ``fast`` (100), ``default`` (1000)
or ``slow`` (10000). ``LF_SEED`` changes the vectors.
"""

from __future__ import annotations

import pytest

from sim.runner import have_verilator
from sim.suites import effort_samples, env_seed, run_with_summary

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not have_verilator(), reason="verilator not installed")]

EFFORT_ROWS = {"fast": 100, "default": 1000, "slow": 10_000}


@pytest.fixture(scope="module")
def layernorm_build():
    from hw.layernorm import LayerNorm
    from hw.params import preset
    from sim import runner

    params = preset("tiny")
    return runner.build(lambda: LayerNorm.from_params(params), name="layernorm", params=params)


def test_sim_layernorm_rows_bit_exact_in_four_stream_variants(layernorm_build, tmp_path,
                                                               capsys):
    from hw.numerics import LN_MAX_DIM

    rows = effort_samples(EFFORT_ROWS)
    seed = env_seed()
    with capsys.disabled():
        summary = run_with_summary(
            layernorm_build, "sim.tb_layernorm", "layernorm_rows",
            tmp_path / "layernorm_rows.json",
            env={"LF_ROWS": rows, "LF_SEED": seed, "LF_MAX_DIM": LN_MAX_DIM},
            line=lambda name, v: (f"variant {name}: {v['rows']} rows in {v['jobs']} jobs "
                                  f"({v['corner_jobs']} corner + {v['random_jobs']} random, "
                                  f"d up to {v['max_d']}), {v['input_beats']} beats in, "
                                  f"{v['output_beats']} out, {v['row_mismatches']} mismatches, "
                                  f"seed {seed}"))
    assert sorted(summary) == sorted(
        f"idle={i} backpressure={b}" for i in ("on", "off") for b in ("on", "off"))
    for name, v in summary.items():
        assert v["random_rows"] >= rows > 0, name
        assert v["jobs"] == v["corner_jobs"] + v["random_jobs"], name
        assert v["max_d"] == LN_MAX_DIM, name
        assert v["mismatches"] == 0 and v["row_mismatches"] == 0, (name, v["errors"])
        assert v["unmatched"] == 0, name
