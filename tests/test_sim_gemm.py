# SPDX-License-Identifier: Apache-2.0
"""cocotb + Verilator: ``hw.gemm.GemmPipeline`` (preset ``tiny``, and ``tiny`` with two LUT
columns) against ``sw.ref.gemm_requant``.

The bench is ``sim/tb_gemm.py``; one cached Verilator build serves every test here. Effort:
``NUM_SAMPLES`` random tiles per variant, else ``LF_EFFORT`` = ``fast`` (100), ``default``
(1000) or ``slow`` (10000). ``LF_SEED`` changes the vectors.
"""

from __future__ import annotations

import json

import pytest

from sim.suites import build_unit, run_stream_variants, suite_marks

pytestmark = suite_marks()


@pytest.fixture(scope="module", params=["tiny", "tiny_lut2"])
def gemm_build(request):
    """Preset ``tiny``, and the same with its last two columns on fabric multipliers
    (``lut_columns=2``: a mixed DSP/LUT array, cycle for cycle the same)."""
    from hw.params import preset

    if request.param == "tiny":
        return build_unit("hw.gemm:GemmPipeline", "gemm")
    return build_unit("hw.gemm:GemmPipeline", "gemm_lut2", preset("tiny").replace(lut_columns=2))


def test_sim_gemm_tiles_bit_exact_in_four_stream_variants(gemm_build, tmp_path, capsys):
    summary, tiles = run_stream_variants(
        gemm_build, "sim.tb_gemm", "gemm_tiles", tmp_path, capsys, tag="tiles",
        samples_env="LF_TILES", samples_key="random_tiles",
        line=lambda name, v: (f"variant {name}: {v['tiles']} tiles, {v['mismatches']} mismatches "
                              f"({v['corner_tiles']} corner + {v['random_tiles']} random, "
                              f"{v['operand_transfers']} operand transfers)"))
    for name, v in summary.items():
        assert v["random_tiles"] == tiles, name
        assert v["tiles"] == v["random_tiles"] + v["corner_tiles"], name


def test_sim_gemm_bench_bit_exact_and_steady_state_utilization(gemm_build, tmp_path):
    from sim import bench, runner

    cases = [(8, 16, 8), (16, 128, 16), (16, 256, 8)]
    out = tmp_path / "bench.json"
    runner.run(gemm_build, "sim.tb_gemm", testcase="gemm_bench", tag="bench",
               env={"LF_BENCH_CASES": json.dumps(cases), "LF_RESULT_JSON": out})
    res = json.loads(out.read_text())["bench"]["cases"]
    assert [(c["M"], c["K"], c["N"]) for c in res] == cases
    for c in res:
        assert c["mismatches"] == 0, c
        # Cycles can never beat one MAC per PE per cycle; a smaller count is a counting bug.
        assert c["ideal_cycles"] == c["M"] * c["K"] * c["N"] // 16
        assert c["cycles"] >= c["ideal_cycles"], c
    ss = bench.steady_state_utilization(res)
    assert ss is not None and ss >= 0.90, res        # issue target for K >= 128
