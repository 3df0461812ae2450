# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.layernorm_tokens.TokenLayerNorm`` (preset ``tiny``: blocks of 4
tokens, ``max_dim`` 1024) against ``sw.ref.layernorm_int``.

The bench is ``sim/tb_layernorm_tokens.py``; one cached Verilator build serves it. Effort:
``NUM_SAMPLES`` random rows per variant, else ``LF_EFFORT`` = ``fast`` (100), ``default`` (1000)
or ``slow`` (10000). ``LF_SEED`` changes the vectors.
"""

from __future__ import annotations

from sim.suites import run_stream_variants, suite_marks, unit_build_fixture

pytestmark = suite_marks()


layernorm_tokens_build = unit_build_fixture("hw.layernorm_tokens:TokenLayerNorm",
                                            "layernorm_tokens")


def test_sim_token_layernorm_blocks_bit_exact_in_four_stream_variants(layernorm_tokens_build,
                                                                      tmp_path, capsys):
    from hw.numerics import LN_MAX_DIM

    summary, _ = run_stream_variants(
        layernorm_tokens_build, "sim.tb_layernorm_tokens", "token_layernorm_blocks", tmp_path,
        capsys, samples_env="LF_ROWS", samples_key="random_rows", env={"LF_MAX_DIM": LN_MAX_DIM},
        line=lambda name, v: (f"variant {name}: {v['rows']} rows in {v['blocks']} blocks of "
                              f"{v['jobs']} jobs ({v['corner_jobs']} corner + "
                              f"{v['random_jobs']} random, d up to {v['max_d']}), "
                              f"{v['input_beats']} beats in, {v['output_beats']} out, "
                              f"{v['row_mismatches']} mismatches"))
    for name, v in summary.items():
        assert v["max_d"] == LN_MAX_DIM, name
        assert v["jobs"] == v["corner_jobs"] + v["random_jobs"], name
        assert v["unmatched"] == 0, name
        assert v["rows"] >= v["random_rows"] >= 1, name
