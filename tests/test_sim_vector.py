# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.vector.VectorUnit`` (preset ``tiny``) against ``sw.ref``.

The bench is ``sim/tb_vector.py``; one cached Verilator build serves it. Effort: ``NUM_SAMPLES``
random input rows per variant, else ``LF_EFFORT`` = ``fast`` (100), ``default`` (1000) or
``slow`` (10000). ``LF_SEED`` changes the vectors.
"""

from __future__ import annotations

from sim.suites import run_stream_variants, suite_marks, unit_build_fixture

pytestmark = suite_marks()


vector_build = unit_build_fixture("hw.vector:VectorUnit", "vector")


def test_sim_vector_jobs_bit_exact_in_four_stream_variants(vector_build, tmp_path, capsys):
    summary, _ = run_stream_variants(
        vector_build, "sim.tb_vector", "vector_jobs", tmp_path, capsys,
        samples_env="LF_ROWS", samples_key="random_rows",
        line=lambda name, v: (
            f"variant {name}: {v['jobs']} jobs ({v['corner_jobs']} corner + {v['random_jobs']} "
            f"random: {v['ops']}), {v['input_rows']} rows in, {v['output_rows']} out, "
            f"{v['table_writes']} table writes, {v['row_mismatches']} mismatches"))
    for name, v in summary.items():
        assert v["jobs"] == v["corner_jobs"] + v["random_jobs"], name
        assert set(v["ops"]) == {"ADD", "LUT", "POOL", "PASS"}, name
