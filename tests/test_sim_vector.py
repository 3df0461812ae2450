# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.vector.VectorUnit`` (preset ``tiny``) against ``sw.ref``.

The bench is ``sim/tb_vector.py``; one cached Verilator build serves it. Effort: ``NUM_SAMPLES``
random input rows per variant, else ``LF_EFFORT`` = ``fast`` (100), ``default`` (1000) or
``slow`` (10000). ``LF_SEED`` changes the vectors.
"""

from __future__ import annotations

import pytest

from sim.runner import have_verilator
from sim.suites import effort_samples, env_seed, run_with_summary

pytestmark = [pytest.mark.sim,
              pytest.mark.skipif(not have_verilator(), reason="verilator not installed")]

EFFORT_ROWS = {"fast": 100, "default": 1000, "slow": 10_000}


@pytest.fixture(scope="module")
def vector_build():
    from hw.params import preset
    from hw.vector import VectorUnit
    from sim import runner

    params = preset("tiny")
    return runner.build(lambda: VectorUnit.from_params(params), name="vector", params=params)


def test_sim_vector_jobs_bit_exact_in_four_stream_variants(vector_build, tmp_path, capsys):
    rows = effort_samples(EFFORT_ROWS)
    seed = env_seed()
    with capsys.disabled():
        summary = run_with_summary(
            vector_build, "sim.tb_vector", "vector_jobs", tmp_path / "vector_jobs.json",
            env={"LF_ROWS": rows, "LF_SEED": seed},
            line=lambda name, v: (f"variant {name}: {v['jobs']} jobs ({v['corner_jobs']} corner "
                                  f"+ {v['random_jobs']} random: {v['ops']}), "
                                  f"{v['input_rows']} rows in, {v['output_rows']} out, "
                                  f"{v['table_writes']} table writes, {v['row_mismatches']} "
                                  f"mismatches, seed {seed}"))
    assert sorted(summary) == sorted(
        f"idle={i} backpressure={b}" for i in ("on", "off") for b in ("on", "off"))
    for name, v in summary.items():
        assert v["random_rows"] >= rows > 0, name
        assert v["jobs"] == v["corner_jobs"] + v["random_jobs"], name
        assert set(v["ops"]) == {"ADD", "LUT", "POOL", "PASS"}, name
        assert v["mismatches"] == 0 and v["row_mismatches"] == 0, (name, v["errors"])
