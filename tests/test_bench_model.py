# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench model``, ``lightformer bench layer`` and ``lightformer compile --preset``:
argument checks before any build (fast), and small end-to-end runs on the Verilated ``tiny``
board (``sim``; the board build is cached under ``build/sim/``) with every report key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import requires_verilator

from sw import cli
from sw.artifact import default_artifact_path

MODEL_KEYS = {"samples", "mismatches", "isa_mismatches", "bit_exact", "cycles_per_inference",
              "ideal_cycles", "utilization", "per_unit", "instructions", "projected_latency_us",
              "cpu_torch_latency_us", "cpu_torch", "macs", "runs", "plot", "plot_note",
              "preset", "commit", "mode", "accuracy", "accuracy_ref", "other_cycles"}
LAYER_KEYS = {"samples", "mismatches", "isa_mismatches", "bit_exact", "cycles", "ideal_cycles",
              "utilization", "per_unit", "instructions", "macs", "config", "runs",
              "program_cycles", "projected_latency_us", "other_cycles"}
UNITS = {"gemm", "attn", "vec", "lnorm"}


def _refused(argv: list[str], capsys) -> str:
    """Run ``lightformer ARGV`` in-process; it must exit 2 with one line on stderr."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("argv, message", [
    (["--heads", "3"], r"--heads \(3\) must divide --d-model \(64\)"),
    (["--heads", "1"], (r"head_dim 64 .* exceeds the ulx3s_85f preset's head_dim 32 "
                        r"\(AccelParams.head_dim\)")),
    (["--window", "64"], (r"--window 64 exceeds the ulx3s_85f preset's window 32 "
                          r"\(AccelParams.window\)")),
    (["--d-ff", "2048"], (r"--d-ff 2048 exceeds .* GEMM reduction length 1024 "
                          r"\(AccelParams.k_depth\)")),
    (["--seq-len", "1024"], (r"does not fit the 'ulx3s_85f' accelerator: activation bytes: "
                             r"needs \d+, has 32768 \(AccelParams.act_depth\)")),
    (["--d-model", "2048"], r"--d-model must be at most 1024"),
    (["--d-model", "0"], r"dimension must be a positive integer, not '0'"),
    (["--samples", "-1"], r"samples must be a positive integer"),
])
def test_bench_layer_refuses_what_does_not_fit(argv, message, capsys, tmp_path):
    out = tmp_path / "layer.json"
    err = _refused(["bench", "layer", "--preset", "ulx3s_85f", "--json", str(out), *argv],
                   capsys)
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["--samples", "0"], "samples must be a positive integer, not '0'"),
    (["--preset", "ulx3s-85f"], "did you mean 'ulx3s_85f'?"),
    (["--artifact", "/nonexistent/model.safetensors"], "lightformer bench model: "),
    (["--preset", "icebreaker", "--artifact", str(default_artifact_path())],
     "head_dim: needs 16, has 8 (AccelParams.head_dim)"),
    (["--json", "/proc/x.json"], "cannot write in the folder '/proc'"),
])
def test_bench_model_refuses_bad_arguments(argv, message, capsys, tmp_path):
    assert message in _refused(["bench", "model", "--no-torch", *argv], capsys)


def test_bench_model_imports_no_torch():
    code = ("import sys, sim.bench, sim.bench_model, sw.compile_command; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_compile_writes_the_program_of_an_artifact(tmp_path, capsys):
    from hw.params import preset
    from sw import isasim
    from sw.artifact import load_artifact
    from sw.program import compile_program, load_program
    from sw.testset import task_inputs

    report = tmp_path / "c.json"
    assert cli.main(["compile", str(default_artifact_path()), "--preset", "tiny",
                     "--out", str(tmp_path / "digits.tiny"), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["kind"] == "compile.program" and data["preset"] == "tiny"
    assert data["program"] == str(tmp_path / "digits.tiny.safetensors")
    program = load_program(data["program"])
    art = load_artifact(default_artifact_path())
    fresh = compile_program(art, preset("tiny"))
    assert program.words == fresh.words and data["instructions"] == len(fresh.words)
    x_q, _, _ = task_inputs(art, 2)
    assert (isasim.simulate(program, x_q) == isasim.simulate(fresh, x_q)).all()
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message, status", [
    (["--preset", "icebreaker"], "does not fit the 'icebreaker' accelerator: weight bytes", 1),
    ([], "is an int8 artifact; give --preset NAME", 2),
    (["--preset", "tiny", "--onnx", "{tmp}/m.onnx"], "--onnx only apply to quantizing", 2),
])
def test_compile_refuses_an_artifact_that_does_not_fit(argv, message, status, tmp_path,
                                                       capsys):
    argv = [a.format(tmp=tmp_path) for a in argv]
    out = tmp_path / "p"
    argv = ["compile", str(default_artifact_path()), "--out", str(out), *argv]
    if status == 2:
        err = _refused(argv, capsys)
    else:
        assert cli.main(argv) == 1
        err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "p.safetensors").exists()


def test_compile_refuses_to_overwrite_the_artifact(tmp_path, capsys):
    import shutil

    art = tmp_path / "m.safetensors"
    shutil.copy(default_artifact_path(), art)
    before = art.read_bytes()
    err = _refused(["compile", str(art), "--preset", "tiny", "--out", str(tmp_path / "m")],
                   capsys)
    assert "is the artifact itself" in err and art.read_bytes() == before


def test_program_file_sits_beside_the_artifact(tmp_path):
    from sw.compile_command import program_file

    assert program_file(tmp_path / "m", "tiny") == tmp_path / "m.tiny.program.safetensors"
    assert program_file(tmp_path / "m.safetensors", "ulx3s_85f") == \
        tmp_path / "m.ulx3s_85f.program.safetensors"


def test_cpu_torch_latency_measures_a_forward():
    pytest.importorskip("torch")
    from sim.bench_model import cpu_torch_latency
    from sw.artifact import load_artifact

    cpu = cpu_torch_latency(load_artifact(default_artifact_path()).config, warmup=1,
                            iterations=3)
    assert cpu["iterations"] == 3 and cpu["latency_us"] > 0 and cpu["note"] is None


def _per_unit_ok(data: dict, cycles: float) -> None:
    assert set(data["per_unit"]) == UNITS
    counted = sum(u["busy"] + u["stall"] for u in data["per_unit"].values())
    assert data["other_cycles"] == cycles - counted
    assert data["utilization"] == round(data["ideal_cycles"] / cycles, 4)


@pytest.mark.sim
@requires_verilator
def test_bench_model_on_the_tiny_board(tmp_path):
    out = tmp_path / "model.json"
    assert cli.main(["bench", "model", "--preset", "tiny", "--samples", "3", "--no-progress",
                     "--no-torch", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert MODEL_KEYS <= set(data) and data["kind"] == "bench.model"
    assert data["samples"] == 3 and data["mismatches"] == 0 and data["isa_mismatches"] == 0
    assert data["bit_exact"] is True and data["mode"] == "resident"
    assert data["accuracy"] == data["accuracy_ref"]
    cycles = data["cycles_per_inference"]
    _per_unit_ok(data, cycles)
    assert data["projected_latency_us"] == cycles / 25.0
    assert data["ideal_cycles"] == data["macs"]["total"] / 16
    assert data["cpu_torch_latency_us"] is None and "--no-torch" in data["cpu_torch"]["note"]
    # One run per inference (resident): it holds every counter.
    assert [r["layer"] for r in data["runs"]] == ["model"]
    assert data["runs"][0]["cycles"] == cycles
    assert data["runs"][0]["instructions"] == data["runs"][0]["isa_instructions"]
    assert data["instructions"] == data["program_instructions"]      # no branches: all retire
    assert (data["plot"] is None) == (data["plot_note"] is not None)


@pytest.mark.sim
@requires_verilator
def test_bench_layer_on_the_tiny_board(tmp_path):
    out = tmp_path / "layer.json"
    assert cli.main(["bench", "layer", "--preset", "tiny", "--d-model", "16", "--seq-len", "8",
                     "--samples", "2", "--no-progress", "--no-plot", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert LAYER_KEYS <= set(data) and data["kind"] == "bench.layer"
    assert data["samples"] == 2 and data["mismatches"] == 0 and data["isa_mismatches"] == 0
    assert data["config"] == {"d_model": 16, "seq_len": 8, "heads": 1, "head_dim": 16,
                              "d_ff": 64, "window": 8, "causal": True}
    assert [r["layer"] for r in data["runs"]] == ["embed", "blocks.0", "head"]
    layer = data["runs"][1]
    assert data["cycles"] == layer["cycles"] and data["program_cycles"] == sum(
        r["cycles"] for r in data["runs"])
    _per_unit_ok(data, data["cycles"])
    assert all(r["instructions"] == r["isa_instructions"] for r in data["runs"])
    # MACs of the layer: QKV, projection, FFN (T*d*(3d + d + 2 d_ff)) and attention.
    assert data["macs"]["gemm"] == 8 * 16 * (3 * 16 + 16 + 2 * 64)
    assert data["macs"]["attn"] == 2 * sum(min(t + 1, 8) for t in range(8)) * 16
    assert data["plot"] is None and data["plot_note"] == "--no-plot"


def test_reports_record_paths_under_the_working_directory_relatively(tmp_path, monkeypatch):
    from sim.benchkit import report_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.safetensors").write_bytes(b"")
    assert report_path(tmp_path / "a" / "m.safetensors") == "a/m.safetensors"
    assert report_path("sw.data.load_task('digits', seed=0)") == \
        "sw.data.load_task('digits', seed=0)"                    # a description stays as it is
    outside = tmp_path.parent
    assert report_path(outside) == str(outside)                 # not under the working dir
    for f in (Path(__file__).resolve().parents[1] / "docs" / "bench").glob("bench_*.json"):
        doc = json.loads(f.read_text())                          # committed: no machine folders
        assert not any(str(doc.get(k) or "").startswith("/") for k in ("artifact", "inputs",
                                                                          "plot")), f


def test_bench_model_merges_the_runs_of_a_step_the_host_interrupted():
    """On a design with ``host_units`` a program step is several device runs (the later ones
    start after each host-run instruction): ``sim.bench_model._by_step`` sums them into the
    step's counts, so the per-layer rows stay one per step."""
    from types import SimpleNamespace

    from sim.bench_model import _by_step

    program = SimpleNamespace(steps=lambda: [(0, ()), (40, ())])
    runs = [(0, {"cycles": 5}), (7, {"cycles": 3}), (12, {"cycles": 1}), (40, {"cycles": 9}),
            (45, {"cycles": 2}), (0, {"cycles": 6}), (40, {"cycles": 8})]
    merged = _by_step(program, runs, lambda a, b: {k: a[k] + b[k] for k in a})
    assert merged == [{"cycles": 9}, {"cycles": 11}, {"cycles": 6}, {"cycles": 8}]
