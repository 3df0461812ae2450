# SPDX-License-Identifier: Apache-2.0
"""``bench/gpu_baseline.py`` rendering: the committed GPU/CPU reports and the accelerator's
``bench model``/``bench layer`` reports become one table (no GPU, no torch: seconds)."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINES = sorted((ROOT / "docs" / "baselines").glob("baseline_*.json"))
ACCEL = sorted((ROOT / "docs" / "bench").glob("bench_*.json"))


@pytest.fixture(scope="module")
def gpu_baseline():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu_baseline

    return gpu_baseline


def _reports(paths):
    return [(str(p), json.loads(p.read_text())) for p in paths]


def test_accelerator_rows_are_its_projected_latency(gpu_baseline):
    reports = _reports(ACCEL)
    rows = gpu_baseline.summary_rows(reports)
    assert len(rows) == len(reports) >= 2   # one row per digits-model or layer report
    for row in rows:
        assert row["precision"] == "int8" and row["saturating_batch"] == 1
        assert row["batch1_latency_us"] == row["saturated_per_sample_us"]
        assert row["saturated_samples_per_s"] == pytest.approx(1e6 / row["batch1_latency_us"])
        assert row["where"].startswith("projected:")
    by = {(r["workload"], r["device"].split("`")[1]): r for r in rows}
    for _, rep in reports:
        wl = "digits" if rep["bench"] == "model" else "layer"
        cycles = rep.get("cycles_per_inference", rep.get("cycles"))
        assert by[wl, rep["preset"]]["batch1_latency_us"] == pytest.approx(
            cycles / rep["clock_mhz"], rel=1e-4)


def test_a_run_that_was_not_bit_exact_is_refused(gpu_baseline):
    rep = json.loads(ACCEL[0].read_text())
    rep["bit_exact"] = False
    with pytest.raises(ValueError, match="not bit-exact"):
        gpu_baseline.summary_rows([("x.json", rep)])


def test_results_section_has_every_row_and_replaces_itself(gpu_baseline, tmp_path):
    assert len(BASELINES) >= 3
    paths = [p for p in BASELINES if "loaded" not in p.name] + ACCEL
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nkept\n")
    argv = ["--from-json", *map(str, paths), "--results", str(page)]
    assert gpu_baseline.main(argv) == 0
    assert gpu_baseline.main(argv) == 0       # replaced, not appended twice
    text = page.read_text()
    assert text.count(gpu_baseline.BASELINES_BEGIN) == 1 and "kept" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| digits |")
             or ln.startswith("| layer |")]
    n_torch = sum(len(json.loads(p.read_text())["summary"]) for p in paths if p in BASELINES)
    assert len(table) == n_torch + len(ACCEL) and n_torch >= 12
    assert all(ln.rstrip().endswith("|") and ("measured:" in ln or "projected:" in ln)
               for ln in table)
