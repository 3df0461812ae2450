# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.layernorm.LayerNorm`` (preset ``tiny``, ``max_dim`` 1024) against
``sw.ref.layernorm_int``.

The bench is ``sim/tb_layernorm.py``; one cached Verilator build serves it. Effort:
``NUM_SAMPLES`` random rows per variant, else ``LF_EFFORT`` = ``fast`` (100), ``default`` (1000)
or ``slow`` (10000). ``LF_SEED`` changes the vectors.
"""

from __future__ import annotations

from sim.suites import run_stream_variants, suite_marks, unit_build_fixture

pytestmark = suite_marks()


layernorm_build = unit_build_fixture("hw.layernorm:LayerNorm", "layernorm")


def test_sim_layernorm_rows_bit_exact_in_four_stream_variants(layernorm_build, tmp_path,
                                                               capsys):
    from hw.numerics import LN_MAX_DIM

    summary, _ = run_stream_variants(
        layernorm_build, "sim.tb_layernorm", "layernorm_rows", tmp_path, capsys,
        samples_env="LF_ROWS", samples_key="random_rows", env={"LF_MAX_DIM": LN_MAX_DIM},
        line=lambda name, v: (f"variant {name}: {v['rows']} rows in {v['jobs']} jobs "
                              f"({v['corner_jobs']} corner + {v['random_jobs']} random, d up to "
                              f"{v['max_d']}), {v['input_beats']} beats in, {v['output_beats']} "
                              f"out, {v['row_mismatches']} mismatches"))
    for name, v in summary.items():
        assert v["max_d"] == LN_MAX_DIM, name
        assert v["jobs"] == v["corner_jobs"] + v["random_jobs"], name
        assert v["unmatched"] == 0, name
