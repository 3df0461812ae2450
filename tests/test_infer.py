# SPDX-License-Identifier: Apache-2.0
"""``lightformer infer`` and the streamed mode, against the Python virtual board (the frame-engine
model in front of the ISA simulator, served on TCP): the shipped digits model runs bit-exact
from its shipped test set, the report's keys and exit codes, bad arguments refused before any
link is opened, and a model larger than the weight scratchpad runs streamed, bit-exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hw.params import preset
from sw import cli, isasim, ref
from sw.artifact import default_artifact_path, load_artifact
from sw.driver.accelerator import Accelerator
from sw.driver.infer import infer
from sw.driver.isaboard import isa_board
from sw.driver.model import LinkServer
from sw.program import FitError, compile_program, load_program, random_artifact, save_program
from sw.testset import inputs_path, load_testset, task_inputs

TINY = preset("tiny")
REPORT_KEYS = {"samples", "bit_exact", "mismatches", "accuracy", "accuracy_ref",
               "cycles_per_inference", "projected_latency_us", "link_bytes_per_inference",
               "mode", "transport"}


@pytest.fixture
def board():
    with LinkServer(isa_board(TINY)) as srv:
        yield srv


def test_shipped_testset_matches_the_artifact():
    art = load_artifact(default_artifact_path())
    x_q, y = load_testset(art)
    assert inputs_path(art.path).name == "digits_int8.test.safetensors"
    assert x_q.dtype == np.int8 and x_q.shape == (art.manifest["eval_samples"], 8, 8)
    acc = float(np.mean(np.argmax(ref.model_forward_int(art, x_q), -1) == y))
    assert acc == art.manifest["accuracy_int8"]
    x5, y5, source = task_inputs(art, 5)
    assert len(x5) == len(y5) == 5 and source.endswith(".test.safetensors")


def test_testset_of_another_model_is_refused(tmp_path):
    art = load_artifact(default_artifact_path())
    scales = dict(art.manifest["scales"], input=art.manifest["scales"]["input"] * 2)
    other = type(art)(dict(art.manifest, scales=scales), art.arrays, art.path)
    with pytest.raises(ValueError, match="quantized for"):
        load_testset(other)


def test_infer_command_digits_bit_exact(board, tmp_path, capsys):
    out = tmp_path / "infer.json"
    rc = cli.main(["infer", "--port", board.url, "--samples", "12", "--no-progress",
                   "--json", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, capsys.readouterr()
    assert REPORT_KEYS <= set(report) and report["kind"] == "infer"
    assert report["samples"] == 12 and report["mismatches"] == 0 and report["bit_exact"]
    assert report["accuracy"] == report["accuracy_ref"]
    assert report["mode"] == "resident" and report["transport"] == "socket"
    assert report["preset"] == "tiny" and report["cycles_per_inference"] > 0
    # Resident: per inference the input (64 B) and the logits block (1 of 4 rows used) go over
    # the link, plus the RUN, STATUS, PERF and READ frames.
    program = compile_program(load_artifact(default_artifact_path()), TINY)
    assert report["link_bytes_per_inference"] <= 2 * (64 + program.output.size) + 64
    assert "bit-exact vs sw.ref.model_forward_int: yes" in capsys.readouterr().out


def test_infer_refuses_bad_arguments_before_the_link(tmp_path, capsys):
    bad = [["--samples", "0"], ["--timeout", "0"], ["--json", str(tmp_path)]]
    for extra in bad:
        with pytest.raises(SystemExit) as exc:
            cli.main(["infer", "--port", "socket://127.0.0.1:1", *extra])
        assert exc.value.code == 2, extra
    assert cli.main(["infer", "--port", "loop://"]) == 2
    assert cli.main(["infer", "--port", "socket://127.0.0.1:1", "--preset", "ulx3s-85f"]) == 2
    assert cli.main(["infer", "--port", "socket://127.0.0.1:1",
                     "--artifact", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "samples must be a positive integer" in err and "did you mean 'ulx3s_85f'" in err


def test_infer_reports_a_design_mismatch(tmp_path, capsys):
    with LinkServer(isa_board(preset("ulx3s_85f"))) as srv:
        rc = cli.main(["infer", "--port", srv.url, "--preset", "tiny", "--samples", "2",
                       "--no-progress"])
    assert rc == 1 and "runs design" in capsys.readouterr().err


#: Layers of 8 KiB of weights: more layers than the weight scratchpad holds at once.
def _big_config(params):
    return dict(task="classify", input_kind="patches", patch_dim=8, seq_len=4, n_classes=10,
                d_model=32, n_heads=4, n_layers=params.wgt_depth // 8192 + 1, d_ff=64,
                window=4)


def test_streamed_model_larger_than_the_weight_scratchpad_is_bit_exact(board):
    art = random_artifact(_big_config(TINY), seed=5)
    weights = sum(v.size for k, v in art.arrays.items() if k.endswith(".w"))
    assert weights > TINY.wgt_depth
    with pytest.raises(FitError, match="weight bytes"):
        compile_program(art, TINY, mode="resident")
    program = compile_program(art, TINY)
    assert program.mode == "streamed"
    assert [layer for layer, _ in program.runs] == program.layers()
    assert program.usage["wgt"]["used"] <= TINY.wgt_depth
    x = np.random.default_rng(6).integers(-128, 128, (3, 4, 8), dtype=np.int8)
    want = ref.model_forward_int(art, x)
    np.testing.assert_array_equal(isasim.simulate(program, x), want)
    with Accelerator.open(board.url, timeout=2.0) as acc:
        acc.load(program)
        report = infer(acc, x, want=want)
    np.testing.assert_array_equal(report["logits"], want)
    assert report["mode"] == "streamed" and report["mismatches"] == 0
    # Streamed: every inference carries every layer's weights.
    assert report["link_bytes_per_inference"] > weights


def test_streamed_and_resident_agree_and_survive_a_program_file(tmp_path):
    cfg = dict(_big_config(TINY), n_layers=2)
    art = random_artifact(cfg, seed=7)
    x = np.random.default_rng(8).integers(-128, 128, (2, 4, 8), dtype=np.int8)
    resident = compile_program(art, TINY)
    streamed = compile_program(art, TINY, mode="streamed")
    assert resident.mode == "resident" and resident.runs == ()
    assert len(streamed.instructions) == len(resident.instructions) + len(streamed.runs) - 1
    loaded = load_program(save_program(streamed, tmp_path / "p.safetensors"))
    assert loaded.mode == "streamed" and loaded.runs == streamed.runs
    want = ref.model_forward_int(art, x)
    for program in (resident, streamed, loaded):
        np.testing.assert_array_equal(isasim.simulate(program, x), want)
    with pytest.raises(ValueError, match="mode must be"):
        compile_program(art, TINY, mode="paged")


def test_infer_shipped_artifact_for_each_preset_fits_and_runs_on_the_python_board():
    """Every board preset has a shipped model that compiles for it, and 20 test images of it run
    bit-exact through the driver on the Python virtual board (the Verilated boards: docs)."""
    from hw.params import preset
    from sw.artifact import load_artifact, shipped_artifact_path
    from sw.driver.isaboard import isa_board
    from sw.driver.model import LinkServer
    from sw.infer_command import run_inference, shipped_artifact_for
    from sw.testset import task_inputs

    expected = {"tiny": "digits_int8", "ulx3s_85f": "digits_int8",
                "colorlight_5a75b": "digits_int8", "icebreaker": "digits_ice40_int8"}
    checked = 0
    for name, model in expected.items():
        params = preset(name)
        path = shipped_artifact_for(params)
        assert path == shipped_artifact_path(model), name
        art = load_artifact(path)
        x_q, y, _ = task_inputs(art, 20)
        with LinkServer(isa_board(params)) as srv:
            r = run_inference(srv.url, art, x_q, y, params=params, progress=False,
                              say=lambda *_: None)
        assert (r["samples"], r["mismatches"], r["mode"]) == (20, 0, "resident"), name
        checked += r["samples"]
    assert checked == 80
