# SPDX-License-Identifier: Apache-2.0
"""Bad input gets one clear error, never a traceback and never a vacuous pass: the simulation
knobs (``NUM_SAMPLES``, ``LF_SEED``, ``LF_EFFORT``) and every command's arguments and output
paths, checked before any long job starts. Each case is fast (no simulation, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from sim import suites
from sw import quant, ref

GOOD = {"NUM_SAMPLES": "", "LF_SEED": "", "LF_EFFORT": "default"}


# -- the simulation knobs -------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("NUM_SAMPLES", "0", "NUM_SAMPLES must be an integer >= 1, not '0'"),
    ("NUM_SAMPLES", "-1", "NUM_SAMPLES must be an integer >= 1, not '-1'"),
    ("NUM_SAMPLES", "abc", "NUM_SAMPLES must be an integer >= 1, not 'abc'"),
    ("NUM_SAMPLES", "1.5", "NUM_SAMPLES must be an integer >= 1, not '1.5'"),
    ("LF_SEED", "abc", "LF_SEED must be an integer >= 0, not 'abc'"),
    ("LF_SEED", "-3", "LF_SEED must be an integer >= 0, not '-3'"),
    ("LF_EFFORT", "bogus", "LF_EFFORT must be one of fast, default, slow, not 'bogus'"),
    ("LF_EFFORT", "", "LF_EFFORT must be one of fast, default, slow, not ''"),
    ("NUM_SAMPLES", "1e3", "NUM_SAMPLES must be an integer >= 1, not '1e3'"),
    ("NUM_SAMPLES", "0x10", "NUM_SAMPLES must be an integer >= 1, not '0x10'"),
    ("LF_SEED", "1.0", "LF_SEED must be an integer >= 0, not '1.0'"),
    ("LF_SEED", "0x1", "LF_SEED must be an integer >= 0, not '0x1'"),
    ("LF_SEED", "nan", "LF_SEED must be an integer >= 0, not 'nan'"),
    ("LF_EFFORT", "FAST", "LF_EFFORT must be one of fast, default, slow, not 'FAST'"),
    ("LF_EFFORT", " fast", "LF_EFFORT must be one of fast, default, slow, not ' fast'"),
    ("LF_EFFORT", "none", "LF_EFFORT must be one of fast, default, slow, not 'none'"),
    ("LF_EFFORT", "1", "LF_EFFORT must be one of fast, default, slow, not '1'"),
])
def test_knobs_refuse_values_that_would_check_nothing(monkeypatch, name, value, message):
    for key, good in GOOD.items():
        monkeypatch.setenv(key, good)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{message}$"):
        suites.effort_samples({"fast": 1, "default": 2, "slow": 3})
    with pytest.raises(ValueError, match=f"^{message}$"):
        suites.check_knobs()


def test_knobs_good_values(monkeypatch):
    monkeypatch.delenv("NUM_SAMPLES", raising=False)
    monkeypatch.delenv("LF_SEED", raising=False)
    monkeypatch.setenv("LF_EFFORT", "fast")
    assert suites.effort_samples({"fast": 7, "default": 70, "slow": 700}) == 7
    assert suites.env_seed() == 1
    monkeypatch.setenv("NUM_SAMPLES", " 12 ")
    monkeypatch.setenv("LF_SEED", "0")
    assert suites.effort_samples({"fast": 7, "default": 70, "slow": 700}) == 12
    assert suites.env_seed() == 0


@pytest.mark.parametrize("env, argv, message", [
    ({"NUM_SAMPLES": "0"}, [], "lightformer sim: NUM_SAMPLES must be an integer >= 1, not '0'"),
    ({"LF_SEED": "abc"}, [], "lightformer sim: LF_SEED must be an integer >= 0, not 'abc'"),
    ({"LF_EFFORT": "bogus"}, [], "lightformer sim: LF_EFFORT must be one of fast"),
    ({}, ["--seed", "-1"], "lightformer sim: LF_SEED must be an integer >= 0, not '-1'"),
])
def test_sim_command_refuses_bad_knobs_before_running(monkeypatch, capsys, env, argv, message):
    import subprocess

    from sw.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("pytest was started"))
    assert main(["sim", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


# -- command arguments and output paths: one line, exit status 2, before any work -----------------

BAD = "/proc/lightformer-test/x.json"          # /proc takes no new files, not even from root


def _cases(tmp: str) -> list[tuple[list[str], str]]:
    garbage = f"{tmp}/garbage.pt"
    return [
        (["train", "--epochs", "0"], "--epochs must be >= 1, not 0"),
        (["train", "--epochs", "-1"], "--epochs must be >= 1, not -1"),
        (["train", "--batch-size", "0"], "--batch-size must be >= 1, not 0"),
        (["train", "--lr", "0"], "--lr and --kd-temperature must be > 0"),
        (["train", "--lr", "-0.001"], "--lr and --kd-temperature must be > 0"),
        (["train", "--lr", "nan"], "--lr and --kd-temperature must be > 0"),
        (["train", "--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
        (["train", "--artifact", ""], "artifact path must name a file .* not an empty string"),
        (["train", "--artifact", "/proc/x"], "cannot write in the folder '/proc'"),
        (["train", "--out", ""], "argument --out: must be a path, not an empty string"),
        (["train", "--out", "/proc/x"], "--out '/proc/x/model.pt': cannot write in the folder"),
        (["train", "--json", BAD], "argument --json: .*cannot write in the folder '/proc'"),
        (["train", "--json", "/dev/null"], "'/dev/null' exists and is not a regular file"),
        (["train", "--json", tmp], "--json must be a file path"),
        (["train", "--teacher", garbage], "--teacher: checkpoint .* it cannot be read"),
        (["compile", garbage, "--task", "digits", "--out", f"{tmp}/o"],
         "lightformer compile: checkpoint must be a lightformer-torch-1 file"),
        (["compile", "", "--out", f"{tmp}/o"], "argument checkpoint: must be a path, not an empty"),
        (["compile", f"{tmp}/none.pt", "--out", f"{tmp}/o"], "checkpoint must be a model.pt file"),
        (["compile", garbage, "--out", ""], "artifact path must name a file"),
        (["compile", garbage, "--out", "/proc/o"], "cannot write in the folder '/proc'"),
        (["compile", garbage, "--out", f"{tmp}/o", "--json", BAD], "cannot write in the folder"),
        (["compile", garbage, "--out", f"{tmp}/o", "--onnx", BAD], "--onnx: .*cannot write"),
        (["compile", garbage, "--out", f"{tmp}/o", "--calib-samples", "0"],
         "--calib-samples: must be an integer >= 1, not '0'"),
        (["compile", garbage, "--out", f"{tmp}/o", "--qat-epochs", "-1"],
         "--qat-epochs must be >= 0"),
        (["compile", garbage, "--out", f"{tmp}/o", "--task", "bogus"],
         "argument --task: invalid choice: 'bogus'"),
        (["eval", "--artifact", ""], "argument --artifact: must be a path, not an empty string"),
        (["eval", "--artifact", tmp], "is a folder, not an artifact"),
        (["eval", "--artifact", f"{tmp}/none"], "none.safetensors: file not found"),
        (["eval", "--artifact", garbage], "not a safetensors file, or truncated"),
        (["eval", "--json", BAD], "cannot write in the folder '/proc'"),
        (["eval", "--limit", "0"], "--limit must be >= 1, not 0"),
        (["eval", "--task", "bogus"], "argument --task: invalid choice: 'bogus'"),
        (["info", "--json", BAD], "cannot write in the folder '/proc'"),
        (["bench", "gemm", "--json", BAD], "cannot write in the folder '/proc'"),
        (["demo", "--json", BAD], "cannot write in the folder '/proc'"),
        (["demo", "--samples", "0"], "samples must be a positive integer"),
        (["synth", "--json", BAD], "cannot write in the folder '/proc'"),
        (["synth", "--report-json", BAD], "cannot write in the folder '/proc'"),
        (["synth", "--board", "bogus"], "argument --board: board must be one of"),
        (["synth", "--board", "icebreaker", "--target-mhz", "0"], "target_mhz must be a finite"),
        (["synth", "--board", "icebreaker", "--target-mhz", "nan"], "target_mhz must be a finite"),
        (["synth", "--board", "icebreaker", "--build-dir", ""], "--build-dir: must be a path"),
        (["synth", "--board", "icebreaker", "--build-dir", "/proc/x"], "in the folder '/proc'"),
        (["bench", "gemm", "--preset", "bogus"], "argument --preset: preset must be one of"),
        (["bench", "gemm", "--seed", "-1"], "seed must be a non-negative integer"),
        (["bench", "gemm", "--json", ""], "--json must be a file path, not an empty string"),
        (["demo", "--preset", "bogus"], "argument --preset: preset must be one of"),
        (["sim", "--effort", "bogus"], "argument --effort: invalid choice: 'bogus'"),
        (["sim", "--seed", "abc"], "argument --seed: invalid int value: 'abc'"),
        (["sim", "nosuch"], "unknown suite"),
    ]


def _more_cases(tmp: str) -> list[tuple[list[str], str]]:
    """Every subcommand: bad numbers, bad names, bad paths (the message's distinctive part)."""
    sock = ["--port", "socket://127.0.0.1:1"]          # refused before it is ever dialled
    presets = "preset must be one of tiny, icebreaker"
    usage_only = "the following arguments are required"
    train_ranges = "--lr and --kd-temperature must be > 0 and finite"
    return [
        (["train", "--d-model", "0"], "--d-model must be >= 1, not 0"),
        (["train", "--n-heads", "0"], "--n-heads must be >= 1, not 0"),
        (["train", "--n-layers", "0"], "--n-layers must be >= 1, not 0"),
        (["train", "--d-ff", "0"], "--d-ff must be >= 1, not 0"),
        (["train", "--window", "0"], "--window must be >= 1, not 0"),
        (["train", "--dropout", "1.5"], train_ranges),
        (["train", "--dropout", "-0.1"], train_ranges),
        (["train", "--lr", "inf"], train_ranges),
        (["train", "--kd-temperature", "0"], train_ranges),
        (["train", "--kd-temperature", "inf"], train_ranges),
        (["train", "--kd-alpha", "2"], train_ranges),
        (["train", "--kd-alpha", "-1"], train_ranges),
        (["train", "--seq-len", "0"], "digits takes no options, not \\['seq_len'\\]"),
        (["train", "--patch-dim", "0"], "digits takes no options, not \\['patch_dim'\\]"),
        (["train", "--attention", "bogus"], "argument --attention: invalid choice: 'bogus'"),
        (["train", "--task", "bogus"], "argument --task: invalid choice: 'bogus'"),
        (["train", "--seed", "-1"], "--seed must be >= 0, not -1"),
        (["train", "--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["train", "--batch-size", "x"], "argument --batch-size: invalid int value: 'x'"),
        (["train", "--lr", "x"], "argument --lr: invalid float value: 'x'"),
        (["train", "--prune-ffn", "0"], "--prune-ffn must be in \\(0, 1\\], not 0.0"),
        (["train", "--prune-ffn", "1.5"], "--prune-ffn must be in \\(0, 1\\], not 1.5"),
        (["train", "--prune-ffn", "x"], "argument --prune-ffn: invalid float value: 'x'"),
        (["train", "--prune-heads", "0"], "--prune-heads must be >= 1, not 0"),
        (["train", "--prune-heads", "-1"], "--prune-heads must be >= 1, not -1"),
        (["train", "--finetune-epochs", "-1"], "--finetune-epochs must be >= 1, not -1"),
        (["train", "--teacher", tmp], "--teacher '.*' is not a file"),
        (["train", "--teacher", ""], "argument --teacher: must be a path, not an empty string"),
        (["train", "--epochs", "1.5"], "argument --epochs: invalid int value: '1.5'"),
        (["train", "--device", "bogus"], "device must be 'cpu' or 'cuda', not 'bogus'"),
        (["train", "--n-heads", "3"], "n_heads must divide d_model \\(32\\), not 3"),
        (["train", "--qat", "--epochs", "0"], "--epochs must be >= 1, not 0"),
        (["train", "--out", f"{tmp}/garbage.pt"], "'.*garbage.pt' is a file, so the folder"),
        (["train", "--json", ""], "--json must be a file path, not an empty string"),
        (["compile"], f"{usage_only}: checkpoint, --out"),
        (["compile", f"{tmp}/garbage.pt"], f"{usage_only}: --out"),
        (["compile", f"{tmp}/garbage.pt", "--out", f"{tmp}/o", "--calibration", "bogus"],
         "argument --calibration: invalid choice: 'bogus'"),
        (["compile", f"{tmp}/garbage.pt", "--out", f"{tmp}/o", "--qat-lr", "x"],
         "argument --qat-lr: invalid float value: 'x'"),
        (["compile", f"{tmp}/garbage.pt", "--out", f"{tmp}/o", "--calib-samples", "x"],
         "--calib-samples: must be an integer >= 1, not 'x'"),
        (["compile", f"{tmp}/garbage.pt", "--out", f"{tmp}/o", "--calib-samples", "-5"],
         "--calib-samples: must be an integer >= 1, not '-5'"),
        (["compile", f"{tmp}/garbage.pt", "--out", tmp], "artifact path must name a file"),
        (["compile", tmp, "--out", f"{tmp}/o"], "checkpoint must be a model.pt file or a"),
        (["compile", f"{tmp}/garbage.pt", "--out", f"{tmp}/o", "--json", ""],
         "--json must be a file path, not an empty string"),
        (["eval", "--artifact", "/proc/x"], "/proc/x.safetensors: file not found"),
        (["eval", "--limit", "-1"], "--limit must be >= 1, not -1"),
        (["eval", "--limit", "x"], "argument --limit: invalid int value: 'x'"),
        (["eval", "--json", ""], "--json must be a file path, not an empty string"),
        (["eval", "--json", tmp], "--json must be a file path .*not the folder"),
        (["eval", "--json", "/dev/null"], "'/dev/null' exists and is not a regular file"),
        (["info", "--json", ""], "--json must be a file path, not an empty string"),
        (["info", "--json", tmp], "--json must be a file path .*not the folder"),
        (["info", "--json", "/dev/null"], "'/dev/null' exists and is not a regular file"),
        (["info", "--bogus"], "unrecognized arguments: --bogus"),
        (["demo", "--samples", "-1"], "samples must be a positive integer, not '-1'"),
        (["demo", "--samples", "x"], "samples must be a positive integer, not 'x'"),
        (["demo", "--backend", "bogus"], "argument --backend: invalid choice: 'bogus'"),
        (["demo", "--uart", "--backend", "python"], "--uart needs --backend vboard"),
        (["demo", "--json", tmp], "--json must be a file path .*not the folder"),
        (["demo", "--json", ""], "--json must be a file path, not an empty string"),
        (["demo", "--preset", "ulx3s-85f"], "did you mean 'ulx3s_85f'"),
        (["bench"], "choose a benchmark: gemm, attention or fuzz"),
        (["bench", "bogus"], "argument BENCH: invalid choice: 'bogus'"),
        (["bench", "gemm", "--seed", "x"], "seed must be a non-negative integer, not 'x'"),
        (["bench", "gemm", "--json", tmp], "--json must be a file path .*not the folder"),
        (["bench", "attention", "--preset", "bogus"], presets),
        (["bench", "attention", "--seed", "-1"], "seed must be a non-negative integer"),
        (["bench", "attention", "--json", BAD], "cannot write in the folder '/proc'"),
        (["bench", "fuzz", "--bytes", "0"], "bytes must be a positive integer, not '0'"),
        (["bench", "fuzz", "--bytes", "-1"], "bytes must be a positive integer, not '-1'"),
        (["bench", "fuzz", "--bytes", "x"], "bytes must be a positive integer, not 'x'"),
        (["bench", "fuzz", "--preset", "bogus"], presets),
        (["bench", "fuzz", "--json", BAD], "cannot write in the folder '/proc'"),
        (["bench", "fuzz", "--port", ""], "--port: must be a serial port or a URL"),
        (["bench", "fuzz", "--port", " "], "--port: must be a serial port or a URL"),
        (["bench", "fuzz", "--port", "loop://", "--python"], "not allowed with argument"),
        (["synth", "--unit", "bogus"], "argument --unit: invalid choice: 'bogus'"),
        (["synth", "--board", "icebreaker", "--preset", "bogus"], "Unknown preset 'bogus'"),
        (["synth", "--board", "icebreaker", "--target-mhz", "x"], "invalid float value: 'x'"),
        (["synth", "--board", "icebreaker", "--target-mhz", "-5"], "target_mhz must be a finite"),
        (["synth", "--board", "icebreaker", "--target-mhz", "inf"], "target_mhz must be a finite"),
        (["synth", "--board", "icebreaker", "--target-mhz", "10000"], "in \\[1, 500\\]"),
        (["synth", "--board", ""], "board must be one of ulx3s-85f, icebreaker"),
        (["synth", "--board", "icebreaker", "--json", tmp], "--json must be a file path"),
        (["synth", "--board", "icebreaker", "--build-dir", f"{tmp}/garbage.pt"],
         "garbage.pt' is a file, so the folder cannot exist"),
        (["program"], f"{usage_only}: --board"),
        (["program", "--board", "bogus"], "board must be one of ulx3s-85f"),
        (["program", "--board", "icebreaker", "--bitstream", ""], "loads a .bin bitstream"),
        (["program", "--board", "icebreaker", "--bitstream", f"{tmp}/x.bit"], "a .bin bitstream"),
        (["program", "--board", "icebreaker", "--bitstream", tmp], "loads a .bin bitstream"),
        (["program", "--board", "colorlight-5a75b", "--bitstream", f"{tmp}/garbage.pt"],
         "loads a .bit bitstream"),
        (["program", "--board", "icebreaker", "--cable", ""], "--cable must be an openFPGALoader"),
        (["vboard", "--port", "-1"], "must be a TCP port in \\[0, 65535\\], not '-1'"),
        (["vboard", "--port", "70000"], "must be a TCP port in \\[0, 65535\\], not '70000'"),
        (["vboard", "--port", "x"], "must be a TCP port in \\[0, 65535\\], not 'x'"),
        (["vboard", "--preset", "bogus"], presets),
        (["vboard", "--preset", "ulx3s-85f"], "did you mean 'ulx3s_85f'"),
        (["ports", "--bogus"], "unrecognized arguments: --bogus"),
        (["ports", "extra"], "unrecognized arguments: extra"),
        (["infer"], f"{usage_only}: --port"),
        (["infer", "--port", ""], "--port: must be a serial port or a URL"),
        (["infer", "--port", "loop://"], "--port loop:// has no device behind it"),
        (["infer", "--samples", "0", *sock], "samples must be a positive integer, not '0'"),
        (["infer", "--samples", "x", *sock], "samples must be a positive integer, not 'x'"),
        (["infer", "--timeout", "0", *sock], "timeout must be in \\(0, 3600\\) seconds"),
        (["infer", "--timeout", "-1", *sock], "timeout must be in \\(0, 3600\\) seconds"),
        (["infer", "--timeout", "nan", *sock], "timeout must be in \\(0, 3600\\) seconds"),
        (["infer", "--baud", "0", *sock], "baud must be a positive integer, not '0'"),
        (["infer", "--baud", "x", *sock], "baud must be a positive integer, not 'x'"),
        (["infer", "--preset", "bogus", *sock], "--preset: Unknown preset 'bogus'"),
        (["infer", "--artifact", f"{tmp}/garbage.pt", *sock], "not a safetensors file"),
        (["infer", "--artifact", "", *sock], "artifact path must name a file, not an empty"),
        (["infer", "--json", tmp, *sock], "--json must be a file path .*not the folder"),
        (["infer", "--json", BAD, *sock], "cannot write in the folder '/proc'"),
        (["import-hf"], f"{usage_only}: folder, --out"),
        (["import-hf", tmp], f"{usage_only}: --out"),
        (["import-hf", tmp, "--out", ""], "--out must be a file path, not an empty string"),
        (["import-hf", tmp, "--out", "/proc/x"], "cannot write in the folder '/proc'"),
        (["import-hf", tmp, "--max-seq-len", "0"], "must be an integer >= 1, not '0'"),
        (["import-hf", tmp, "--max-seq-len", "x"], "must be an integer >= 1, not 'x'"),
        (["import-hf", tmp, "--calib-sentences", "0"], "must be an integer >= 1, not '0'"),
        (["import-hf", tmp, "--held-out", "-1"], "must be an integer >= 1, not '-1'"),
        (["import-hf", tmp, "--json", BAD], "cannot write in the folder '/proc'"),
        (["embed"], f"{usage_only}: --artifact, --text-file, --json"),
        (["embed", "--artifact", f"{tmp}/none"], "argument --artifact: '.*none' is not a file"),
        (["embed", "--artifact", ""], "argument --artifact: '' is not a file"),
        (["embed", "--text-file", f"{tmp}/none.txt"], "--text-file: '.*none.txt' is not a file"),
        (["embed", "--text-file", ""], "argument --text-file: '' is not a file"),
        (["embed", "--json", BAD], "cannot write in the folder '/proc'"),
        (["sim", "--bogus"], "unrecognized arguments: --bogus"),
        (["sim", "--seed", "-5"], "LF_SEED must be an integer >= 0, not '-5'"),
        (["sim", "--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
        (["sim", "--effort", ""], "argument --effort: invalid choice: ''"),
        (["bogus"], "argument COMMAND: invalid choice: 'bogus'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--debug", "bogus"], "argument COMMAND: invalid choice: 'bogus'"),
    ]


CASES = _cases("{tmp}") + _more_cases("{tmp}")


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_command_refuses_bad_arguments_with_one_line(tmp_path, capsys, monkeypatch, argv,
                                                     message):
    import subprocess

    from sw.cli import main

    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint\n" * 4)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("a job was started"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a job was started"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("a job was started"))
    try:
        rc = main(argv)
    except SystemExit as exc:                       # argparse exits by itself
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert len(err) == 1 and "Traceback" not in err[0], err
    import re
    assert re.search(message, err[0]), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.pt"]    # nothing written


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5", "inf", "+2", "-0", "2 threads"])
def test_train_refuses_a_bad_thread_count(monkeypatch, capsys, tmp_path, value):
    import sw.data
    from sw.cli import main

    monkeypatch.setattr(sw.data, "load_task", lambda *a, **k: pytest.fail("work started"))
    monkeypatch.setenv("LIGHTFORMER_THREADS", value)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == (
        f"lightformer train: LIGHTFORMER_THREADS must be an integer >= 1, not {value!r}")


def test_training_threads_do_not_follow_the_machine(monkeypatch):
    from sw.train import TRAIN_THREADS, train_threads

    monkeypatch.delenv("LIGHTFORMER_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")           # the weights must not depend on it
    assert train_threads() == TRAIN_THREADS == 2
    monkeypatch.setenv("LIGHTFORMER_THREADS", "3")
    assert train_threads() == 3


@pytest.mark.parametrize("log, message", [
    ('{"task": "digits", "seed": "abc"}', "'seed' must be an integer >= 0 and 'task' a string"),
    ('{"task": "digits", "seed": -1}', "'seed' must be an integer >= 0"),
    ('{"task": 7, "seed": 0}', "'task' a string"),
    ("[" * 100_000, "not valid JSON"),
    ('{"task": "digits"', "not valid JSON"),
])
def test_compile_refuses_a_bad_train_log(tmp_path, capsys, log, message):
    from sw.cli import main

    (tmp_path / "model.pt").write_bytes(b"not read: the log is checked first")
    (tmp_path / "train_log.json").write_text(log)
    with pytest.raises(SystemExit) as exc:
        main(["compile", str(tmp_path), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "m.safetensors").exists()


# -- the integer API (sw.quant, sw.ref): one exception with one clear line per bad call ----------

def _i8(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.int8)


API = [
    (lambda: ref.gemm_acc(np.zeros((2, 3)), _i8(3, 2)), TypeError, "a_q must be a int8 array"),
    (lambda: ref.gemm_acc(_i8(2, 0), _i8(0, 2)), ValueError, "K must be at least 1"),
    (lambda: ref.gemm_acc(_i8(2, 3), _i8(4, 2)), ValueError, "inner dimensions differ"),
    (lambda: ref.gemm_acc(_i8(2, 3), _i8(3, 2), np.zeros(2, np.int64)), TypeError,
     "bias_q must be a int32 array"),
    (lambda: ref.softmax_int(np.zeros((1, 4)), 1 << 14, 10), TypeError, "scores must be an "),
    (lambda: ref.softmax_int(np.zeros((1, 4), np.int32), 1 << 14, 10, np.ones((1, 4), np.int8)),
     ValueError, "mask must be a bool array"),
    (lambda: ref.softmax_int(np.zeros((1, 4), np.int32), 1 << 14, 0), ValueError,
     "score_shift must be in \\[1, 47\\]"),
    (lambda: ref.softmax_int(np.zeros((1, 300), np.int32), 1 << 14, 10), ValueError,
     "every softmax row needs 1..256 valid keys"),
    (lambda: ref.softmax_exp_int(np.array([1024])), ValueError, "u must be in \\[0, 1023\\]"),
    (lambda: ref.softmax_exp_int(np.array([1.5])), TypeError, "u must be an integer"),
    (lambda: ref.softmax_recip_int(np.array([5])), ValueError, "exp sum must be in"),
    (lambda: ref.attention_window_bounds(4, 0, True), ValueError, "window must be a positive"),
    (lambda: ref.AttentionQuant.from_scales("a", 1, 1, 1, 16), TypeError,
     "scale_q must be a positive finite number"),
    (lambda: ref.AttentionQuant.from_scales(0.01, 0.01, 0.01, 0.01, 0), ValueError,
     "head_dim must be an integer in \\[1, 128\\]"),
    (lambda: ref.AttentionQuant(1.5, 10, 1, 1), TypeError, "score_mult must be an integer"),
    (lambda: ref.isqrt_int(np.array([2.0])), TypeError, "must be an integer array"),
    (lambda: ref.isqrt_int(np.array([-1])), ValueError, "must be in \\[0, 2\\*\\*62\\)"),
    (lambda: ref.layernorm_eps_q(4, float("nan"), 1.0), ValueError, "finite and >= 0"),
    (lambda: ref.lut_apply(_i8(3), _i8(10)), ValueError, "lut must have 256 entries"),
    (lambda: ref.lut_apply(np.zeros(3), _i8(256)), TypeError, "x_q must be an int8 array"),
    (lambda: ref.build_gelu_lut(0.0, 1.0), ValueError, "scale_in must be a positive finite"),
    (lambda: ref.residual_params(-1.0, 1.0, 1.0), ValueError, "scale_a must be a positive"),
    (lambda: ref.residual_params(1e6, 1.0, 1e-3), ValueError, "must be < 2\\*\\*14"),
    (lambda: ref.residual_add(_i8(2), _i8(3), np.array([1, 1]), 3), ValueError,
     "must have one shape"),
    (lambda: ref.embedding_int(np.array([0.5]), _i8(4, 2)), TypeError, "tokens must be an "),
    (lambda: ref.embedding_int(np.array([-1]), _i8(4, 2)), ValueError, "token ids must be in"),
    (lambda: ref.mean_pool_int(_i8(4), 1, 1), TypeError, "x_q must be an int8 array"),
    (lambda: quant.requantize(1 << 31, 1, 1), ValueError, "accumulator outside int32"),
    (lambda: quant.requantize(1, 1 << 15, 1), ValueError, "multiplier must be in \\[0, 2\\*\\*15"),
    (lambda: quant.quantize_multiplier(2.0 ** 14), ValueError, "is too large"),
    (lambda: quant.quantize_multiplier(-0.5), ValueError, "must be non-negative"),
    (lambda: quant.round_shift(1, 1, "half_even"), ValueError, "Unsupported rounding rule"),
    (lambda: quant.quantize_weight_per_channel(np.array([["a"]])), TypeError,
     "weights must be a real number or array"),
    (lambda: quant.requant_params(np.array([np.nan]), 1.0), ValueError,
     "input scales contains NaN or infinity"),
]

NAN, INF = float("nan"), float("inf")
API += [
    (lambda: quant.round_shift(np.array([1.5]), 1), TypeError, "x must be an integer"),
    (lambda: quant.round_shift("3", 1), TypeError, "x must be an integer"),
    (lambda: quant.round_shift(4, -1), ValueError, "shift must be in \\[1, 47\\]"),
    (lambda: quant.round_shift(4, 64), ValueError, "shift must be in \\[1, 47\\]"),
    (lambda: quant.round_shift(4, 1.0), TypeError, "shift must be an integer"),
    (lambda: quant.round_shift(np.array([2 ** 62]), 1), ValueError, "cannot overflow int64"),
    (lambda: quant.requantize(1.9, 1, 1), TypeError, "accumulator must be an integer"),
    (lambda: quant.requantize(1, 1.9, 1), TypeError, "multiplier must be an integer"),
    (lambda: quant.requantize(1, -1, 1), ValueError, "multiplier must be in \\[0, 2\\*\\*15"),
    (lambda: quant.requantize(1, 1, 0), ValueError, "requant shift must be in \\[1, 47\\]"),
    (lambda: quant.requantize(1, 1, 64), ValueError, "requant shift must be in \\[1, 47\\]"),
    (lambda: quant.quantize_multiplier(NAN), ValueError, "must be a finite number, not nan"),
    (lambda: quant.quantize_multiplier(INF), ValueError, "must be a finite number, not inf"),
    (lambda: quant.quantize_multiplier("0.5"), TypeError, "must be a finite number, not '0.5'"),
    (lambda: quant.quantize_multiplier(None), TypeError, "must be a finite number, not None"),
    (lambda: quant.requant_params(1.0, -1.0), ValueError, "output scale must be a positive"),
    (lambda: quant.requant_params(1.0, 0.0), ValueError, "output scale must be a positive"),
    (lambda: quant.requant_params(1.0, NAN), ValueError, "output scale must be a positive"),
    (lambda: quant.requant_params(np.array([0.0]), 1.0), ValueError, "input scales must be"),
    (lambda: quant.quantize_weight_per_channel(np.array([[NAN, 1.0]])), ValueError,
     "weights contains NaN or infinity"),
    (lambda: quant.quantize_weight_per_channel(np.array([[INF, 1.0]])), ValueError,
     "weights contains NaN or infinity"),
    (lambda: quant.quantize_weight_per_channel(np.zeros((0, 3))), ValueError,
     "weights must be a non-empty array with a channel axis"),
    (lambda: quant.quantize_weight_per_channel(np.float64(1.0)), ValueError,
     "weights must be a non-empty array with a channel axis"),
    (lambda: quant.quantize_weight_per_channel(np.ones((2, 3)), axis=5), ValueError,
     "axis must be an integer in \\[-2, 2\\)"),
    (lambda: quant.quantize_weight_per_channel(np.ones((2, 3)), axis=1.0), ValueError,
     "axis must be an integer"),
    (lambda: quant.quantize_act(np.array([NAN]), 0.1), ValueError, "contains NaN or infinity"),
    (lambda: quant.quantize_act(np.array([INF]), 0.1), ValueError, "contains NaN or infinity"),
    (lambda: quant.quantize_act(np.array([1.0]), 0.0), ValueError, "activation scale must be"),
    (lambda: quant.quantize_act(np.array([1.0]), -0.1), ValueError, "activation scale must be"),
    (lambda: quant.quantize_act(np.array([1.0]), NAN), ValueError, "activation scale must be"),
    (lambda: quant.quantize_act(np.array(["a"]), 0.1), TypeError, "must be a real number"),
    (lambda: quant.quantize_bias(np.array([NAN]), 0.1, np.array([0.1])), ValueError,
     "bias contains NaN or infinity"),
    (lambda: quant.quantize_bias(np.array([1.0]), -0.1, np.array([0.1])), ValueError,
     "input scale must be a positive finite number"),
    (lambda: quant.quantize_bias(np.array([1.0]), 0.1, np.array([-0.1])), ValueError,
     "weight scales must be positive"),
    (lambda: quant.check_weights("w", np.array([-128], np.int8)), ValueError,
     "w holds -128; int8 weights are in \\[-127, 127\\]"),
    (lambda: quant.check_weights("w", np.array([1.0])), TypeError, "w must be an int8 array"),
    (lambda: quant.saturate(np.array([1.5])), TypeError, "saturate input must be an integer"),
    (lambda: ref.gemm_acc(_i8(3), _i8(3, 2)), ValueError, "a_q must have 2 dimension"),
    (lambda: ref.gemm_acc(np.zeros((2, 3), np.int16), _i8(3, 2)), TypeError,
     "a_q must be a int8 array, not int16"),
    (lambda: ref.gemm_requant(_i8(2, 3), _i8(3, 2), None, 1.5, 10), TypeError,
     "mult must be an integer"),
    (lambda: ref.linear_int(_i8(2, 3), np.full((3, 2), -128, np.int8), np.zeros(2, np.int32),
                            np.ones(2, np.int64), np.full(2, 20, np.int64)), ValueError,
     "w_q holds -128"),
    (lambda: ref.isqrt_int(np.array([2 ** 62])), ValueError, "must be in \\[0, 2\\*\\*62\\)"),
    (lambda: ref.softmax_exp_int(np.array([-1])), ValueError, "u must be in \\[0, 1023\\]"),
    (lambda: ref.softmax_recip_int(np.array([0])), ValueError, "exp sum must be in"),
    (lambda: ref.attention_window_bounds(4, -1, True), ValueError, "window must be a positive"),
    (lambda: ref.attention_window_bounds(0, 4, True), ValueError, "seq_len must be a positive"),
    (lambda: ref.attention_window_bounds(4, 2, "yes"), TypeError, "causal must be a bool"),
    (lambda: ref.layernorm_eps_q(4, -1.0, 1.0), ValueError, "finite and >= 0"),
    (lambda: ref.layernorm_eps_q(4, 1e-5, 0.0), ValueError,
     "LayerNorm input scale must be a positive finite number, not 0.0"),
    (lambda: ref.layernorm_eps_q(4, 1e-5, -0.5), ValueError, "LayerNorm input scale must be"),
    (lambda: ref.layernorm_eps_q(0, 1e-5, 1.0), ValueError, "width d must be a positive"),
    (lambda: ref.build_gelu_lut(1.0, NAN), ValueError, "scale_out must be a positive finite"),
    (lambda: ref.residual_params(INF, 1.0, 1.0), ValueError, "scale_a must be a positive"),
    (lambda: ref.residual_params(1.0, 1.0, NAN), ValueError, "scale_out must be a positive"),
    (lambda: ref.embedding_int(np.array([0]), np.zeros((4, 2))), TypeError,
     "table_q must be a int8 array"),
    (lambda: ref.embedding_int(np.array([4]), _i8(4, 2)), ValueError, "token ids must be in"),
    (lambda: ref.mean_pool_int(np.zeros((2, 3)), 1, 1), TypeError, "x_q must be an int8 array"),
    (lambda: ref.AttentionQuant(1, 0, 1, 1), ValueError, "score_shift must be in \\[1, 47\\]"),
    (lambda: ref.AttentionQuant(-1, 10, 1, 1), ValueError, "score_mult must be in \\[0, 2"),
    (lambda: ref.AttentionQuant.from_scales(NAN, 0.01, 0.01, 0.01, 16), ValueError,
     "scale_q must be a positive finite number, not nan"),
]


@pytest.mark.parametrize("call, kind, message", API)
def test_integer_api_refuses_bad_input(call, kind, message):
    with pytest.raises(kind, match=message) as exc:
        call()
    assert "\n" not in str(exc.value)


# -- one place for errors: one line and status 2 / 1, or the traceback with --debug -------------

def _exit_status(call) -> int:
    try:
        return call()
    except SystemExit as exc:
        if isinstance(exc.code, str):               # Python prints it and exits 1
            print(exc.code, file=__import__("sys").stderr)
            return 1
        return exc.code


def _crash(args):
    raise ValueError("broken in the middle of a job\nsecond line of detail")


@pytest.mark.parametrize("debug", [False, True])
def test_a_runtime_error_is_one_line_and_status_1_unless_debug(monkeypatch, capsys, debug):
    import sw.info

    monkeypatch.setattr(sw.info, "run", _crash)
    from sw.cli import main

    rc = _exit_status(lambda: main(["--debug", "info"] if debug else ["info"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1, (rc, err)
    if debug:
        assert err[0].startswith("Traceback") and "ValueError: broken" in "\n".join(err)
    else:
        assert err == [("lightformer info: ValueError: broken in the middle of a job "
                        "(+1 lines; --debug shows them)")]


@pytest.mark.parametrize("debug", [False, True])
def test_a_usage_error_is_one_line_and_status_2_unless_debug(capsys, debug):
    from sw.cli import main

    argv = ["eval", "--limit", "0"]
    rc = _exit_status(lambda: main(["--debug", *argv] if debug else argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, (rc, err)
    if debug:
        assert err[0].startswith("Traceback") and "UsageError" in err[-1]
    else:
        assert err == ["lightformer eval: --limit must be >= 1, not 0"]


def test_a_runtime_exit_message_keeps_its_line_and_status_1(monkeypatch, capsys):
    import sw.info

    def stop(args):
        raise SystemExit("lightformer info: the board did not answer")

    monkeypatch.setattr(sw.info, "run", stop)
    from sw.cli import main

    assert _exit_status(lambda: main(["info"])) == 1
    assert capsys.readouterr().err.strip() == "lightformer info: the board did not answer"


# -- the build knobs and the build cache (sim.runner) ----------------------------------------------

@pytest.mark.parametrize("value", ["2", "-1", "yes", "true", "on", "ture", "1.0", "0x1", "1 1"])
def test_waves_must_be_0_or_1(monkeypatch, value):
    from sim import runner

    monkeypatch.setenv("WAVES", value)
    with pytest.raises(runner.KnobError, match=f"^WAVES must be 0 or 1, not {value!r}$"):
        runner.waves_enabled()


@pytest.mark.parametrize("value, on", [("1", True), (" 1 ", True), ("0", False), ("", False),
                                       (None, False)])
def test_waves_good_values(monkeypatch, value, on):
    from sim import runner

    if value is None:
        monkeypatch.delenv("WAVES", raising=False)
    else:
        monkeypatch.setenv("WAVES", value)
    assert runner.waves_enabled() is on


def _build_cases(tmp: str) -> list[tuple[str, str]]:
    return [
        ("", "not ''$"),
        ("   ", "not '   '$"),
        (f"{tmp}/file", "is not a folder"),
        (f"{tmp}/file/sub", "is not a folder"),
        ("/proc/lightformer-test", "cannot write in '/proc'"),
        ("/proc/lightformer-test/deeper", "cannot write in '/proc'"),
        ("/dev/null", "is not a folder"),
        ("/dev/null/x", "is not a folder"),
    ]


@pytest.mark.parametrize("value, message", _build_cases("{tmp}"))
def test_lightformer_build_must_be_a_writable_folder(monkeypatch, tmp_path, value, message):
    import re

    from sim import runner

    (tmp_path / "file").write_text("a file, not a folder")
    value = value.replace("{tmp}", str(tmp_path))
    monkeypatch.setenv("LIGHTFORMER_BUILD", value)
    with pytest.raises(runner.KnobError) as exc:
        runner.build_root()
    text = str(exc.value)
    assert text.startswith(f"LIGHTFORMER_BUILD must be a writable folder path, not {value!r}")
    assert re.search(message, text) and "\n" not in text, text


def test_lightformer_build_may_name_a_folder_still_to_make(monkeypatch, tmp_path):
    from sim import runner

    monkeypatch.setenv("LIGHTFORMER_BUILD", str(tmp_path / "a" / "b"))
    assert runner.build_root() == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()            # checked, not made
    assert list(tmp_path.iterdir()) == []           # the probe file is gone
    monkeypatch.delenv("LIGHTFORMER_BUILD")
    assert runner.build_root() == runner.ROOT / "build"


@pytest.mark.parametrize("command", [["bench", "gemm"], ["demo", "--backend", "python"],
                                     ["vboard"], ["sim"]])
@pytest.mark.parametrize("knob, value, message", [
    ("WAVES", "yes", "WAVES must be 0 or 1, not 'yes'"),
    ("LIGHTFORMER_BUILD", "/proc/x", "LIGHTFORMER_BUILD must be a writable folder path, not "),
])
def test_building_commands_refuse_a_bad_build_knob_first(monkeypatch, capsys, command, knob,
                                                         value, message):
    import importlib

    from sw.cli import COMMANDS, main

    monkeypatch.setenv(knob, value)
    module = importlib.import_module(COMMANDS[command[0]][0])
    monkeypatch.setattr(module, "run", lambda args: pytest.fail("the command started"))
    rc = _exit_status(lambda: main(command))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"lightformer {command[0]}: {err[0].split(': ', 1)[1]}"], err
    assert err[0].split(": ", 1)[1].startswith(message), err


def test_cache_key_covers_the_compiler_and_the_python_environment(monkeypatch):
    import shutil
    import subprocess
    import sys

    from sim import runner

    key = runner.cache_key("module m; endmodule")
    env = runner.build_env()
    assert f"python={sys.prefix}:" in env
    if shutil.which("c++"):
        first = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout
        assert f"cxx={first.splitlines()[0].strip()} " in env
    monkeypatch.setattr(runner, "_cxx_version", lambda cxx: "c++ (Other) 99.1")
    assert runner.cache_key("module m; endmodule") != key
    monkeypatch.undo()
    assert runner.cache_key("module m; endmodule") == key
    monkeypatch.setattr(sys, "prefix", "/another/venv")
    assert runner.cache_key("module m; endmodule") != key
    monkeypatch.undo()
    monkeypatch.setenv("CXX", "clang++-that-is-not-installed")
    assert "cxx=- " in runner.build_env()


def test_a_cached_build_without_its_executable_is_rebuilt(monkeypatch, tmp_path, capsys):
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from sim import runner

    class Inverter(wiring.Component):
        def __init__(self):            # annotations are strings here (postponed evaluation)
            super().__init__({"a": In(1), "y": Out(1)})

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.y.eq(~self.a)
            return m

    made: list[str] = []

    def verilate(directory, vfile, name, waves):
        made.append(name)
        (directory / "obj").mkdir()
        (directory / "obj" / "sim").write_bytes(b"\x7fELF not really")

    monkeypatch.setenv("LIGHTFORMER_BUILD", str(tmp_path))
    monkeypatch.delenv("WAVES", raising=False)
    monkeypatch.setattr(runner, "_prepare_env", lambda: None)

    def build():
        return runner.build(Inverter, name="inv", verilate=verilate, product="obj/sim")

    first = build()
    assert not first.cached and made == ["inv"]
    assert build().cached and made == ["inv"]
    exe = first.directory / "obj" / "sim"
    for damage in (lambda: exe.write_bytes(b""), exe.unlink):
        capsys.readouterr()
        damage()
        again = build()
        assert not again.cached and again.key == first.key, "the stamp alone was trusted"
        assert "rebuilding, the cached build's sim is missing or empty" in capsys.readouterr().err
        assert exe.stat().st_size > 0
    assert made == ["inv"] * 3


# -- AccelParams: every field, wrong type, out of range, not a power of two ----------------------

def _accel_cases() -> list[tuple[str, object, type, str]]:
    from hw.numerics import ATTN_MAX_HEAD_DIM, SOFTMAX_MAX_WINDOW
    from hw.params import MAX_ATTN_LANES, MAX_DIM

    ints = {"rows": (1, MAX_DIM), "cols": (1, MAX_DIM), "k_depth": (16, 4096),
            "window": (1, SOFTMAX_MAX_WINDOW), "head_dim": (1, ATTN_MAX_HEAD_DIM),
            "attn_lanes": (1, MAX_ATTN_LANES), "act_depth": (64, 1 << 20),
            "wgt_depth": (64, 1 << 22), "instr_depth": (16, 1 << 16), "lut_count": (1, 64),
            "baud": (9600, 12_000_000)}
    pow2 = {"k_depth": 24, "act_depth": 100, "wgt_depth": 96, "instr_depth": 48}
    out: list[tuple[str, object, type, str]] = []
    for name, (lo, hi) in ints.items():
        # A float, a string, None, a bool and a NumPy integer: none is silently converted.
        for bad in (float(lo), str(lo), None, True, np.int64(lo)):
            out.append((name, bad, TypeError, "must be an integer, not"))
        for bad in (lo - 1, hi + 1):
            out.append((name, bad, ValueError, f"must be an integer in \\[{lo}, {hi}\\], not"))
    for name, bad in pow2.items():
        out.append((name, bad, ValueError, f"must be a power of two, not {bad}"))
    for name in ("dsp_multipliers", "attn_causal"):
        for bad in (1, 0, "True", None):
            out.append((name, bad, TypeError, "must be a bool, not"))
    for bad in ("25", None, True, [25]):
        out.append(("target_mhz", bad, TypeError, "must be a number, not"))
    for bad in (0.5, 500.5, -25, float("nan"), float("inf"), float("-inf")):
        out.append(("target_mhz", bad, ValueError, "must be a finite number in \\[1, 500\\]"))
    for bad in ("", 7, None):
        out.append(("name", bad, TypeError, "must be a non-empty string, not"))
    out.append(("attn_lanes", 3, ValueError, "must divide head_dim \\([0-9]+\\), not 3"))
    return out


ACCEL = _accel_cases()


@pytest.mark.parametrize("field, value, kind, message", ACCEL,
                         ids=[f"{f}={v!r}" for f, v, _, _ in ACCEL])
def test_accel_params_refuse_bad_fields(field, value, kind, message):
    from hw.params import AccelParams, preset

    for make in (lambda: AccelParams(**{field: value}),
                 lambda: preset("tiny").replace(**{field: value})):
        with pytest.raises(kind, match=f"^AccelParams.{field} {message}") as exc:
            make()
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name, kind, message", [
    ("bogus", ValueError, "^Unknown preset 'bogus'; choose one of: tiny, icebreaker"),
    ("ulx3s-85f", ValueError, "did you mean 'ulx3s_85f'"),
    ("", ValueError, "^Unknown preset ''; choose one of"),
    ("TINY", ValueError, "^Unknown preset 'TINY'; choose one of"),
    (7, TypeError, "preset name must be a str, not 7"),
    (None, TypeError, "preset name must be a str, not None"),
])
def test_preset_refuses_bad_names(name, kind, message):
    from hw.params import preset

    with pytest.raises(kind, match=message) as exc:
        preset(name)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("fields", [["bogus"], ["rows", "nope"], ["Rows"]])
def test_accel_params_digest_refuses_unknown_fields(fields):
    from hw.params import AccelParams

    with pytest.raises(ValueError, match="^digest fields must be AccelParams fields, not "):
        AccelParams().digest(fields)


# -- the artifact loader: damaged, edited and foreign files, each one ArtifactError line --------

@pytest.fixture(scope="module")
def shipped_parts():
    """The shipped artifact's manifest and tensors: every case edits a copy of them."""
    from sw import artifact as art

    a = art.load_artifact(art.default_artifact_path())
    return dict(a.manifest), dict(a.arrays)


def _container(manifest: dict | str, arrays: dict) -> bytes:
    import json

    import safetensors.numpy

    from sw import artifact as art

    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    return safetensors.numpy.save(arrays, metadata={art.FORMAT: text})


def _seal(m: dict) -> dict:
    """Recompute the model_id, as a tool that knows the scheme would: the checks behind it run."""
    from sw import artifact as art

    return dict(m, model_id=art.model_id(m))


def _edit(seal: bool = False, **changes):
    def make(m: dict, arrays: dict) -> bytes:
        m = dict(m, **changes)
        return _container(_seal(m) if seal else m, arrays)
    return make


def _edit_config(seal: bool = False, **changes):
    def make(m: dict, arrays: dict) -> bytes:
        m = dict(m, config=dict(m["config"], **changes))
        return _container(_seal(m) if seal else m, arrays)
    return make


def _without(field: str):
    def make(m: dict, arrays: dict) -> bytes:
        return _container({k: v for k, v in m.items() if k != field}, arrays)
    return make


def _raw(make_bytes):
    return lambda m, arrays: make_bytes(_container(m, arrays))


_TYPES = [
    ("task", 7, "a non-empty string"), ("task", "", "a non-empty string"),
    ("task", None, "a non-empty string"),
    ("task_seed", -1, "an integer >= 0"), ("task_seed", "0", "an integer >= 0"),
    ("task_seed", 1.5, "an integer >= 0"), ("task_seed", True, "an integer >= 0"),
    ("method", "int4", '"ptq" or "qat"'), ("method", None, '"ptq" or "qat"'),
    ("calibration", 7, "a string or null"), ("calibration", ["max"], "a string or null"),
    ("calibration_samples", -1, "an integer >= 0"),
    ("calibration_samples", "512", "an integer >= 0"),
    ("accuracy_fp32", 1.5, "a number in \\[0, 1\\] or null"),
    ("accuracy_fp32", "0.9", "a number in \\[0, 1\\] or null"),
    ("accuracy_fp32", -0.1, "a number in \\[0, 1\\] or null"),
    ("accuracy_int8", 2, "a number in \\[0, 1\\] or null"),
    ("accuracy_int8", True, "a number in \\[0, 1\\] or null"),
    ("eval_samples", -1, "an integer >= 0 or null"),
    ("eval_samples", 1.5, "an integer >= 0 or null"),
    ("eval_split", 7, "a string or null"),
    ("created", "today", "an object"), ("created", [], "an object"),
    ("config", [], "an object"), ("config", "x", "an object"),
    ("scales", [], "an object of positive finite numbers"),
    ("scales", {"input": 0}, "an object of positive finite numbers"),
    ("scales", {"input": -1}, "an object of positive finite numbers"),
    ("scales", {"input": "x"}, "an object of positive finite numbers"),
    ("scales", {"input": None}, "an object of positive finite numbers"),
    ("requirements", [], "an object"), ("requirements", 7, "an object"),
    ("arrays", [], "an object mapping tensor names to records"),
    ("arrays", {"x": 1}, "an object mapping tensor names to records"),
    ("tensors_sha256", "abc", "64 lower-case hex digits"),
    ("tensors_sha256", "g" * 64, "64 lower-case hex digits"),
    ("tensors_sha256", 7, "64 lower-case hex digits"),
    ("model_id", "abc", "64 lower-case hex digits"),
    ("model_id", "A" * 64, "64 lower-case hex digits"),
    ("model_id", None, "64 lower-case hex digits"),
]

_EDITED = "does not match its model_id .* was edited after export"

ARTIFACT = [
    *[(f"{f}={v!r}", _edit(**{f: v}), f"manifest field '{f}' must be {what}, not")
      for f, v, what in _TYPES],
    # Edits that change results (the accuracy moved 0.97 -> 0.11..0.99 under one model ID).
    ("attention=full", _edit_config(attention="full"), _EDITED),
    ("window=8", _edit_config(window=8), _EDITED),
    ("causal=false", _edit_config(causal=False), _EDITED),
    ("n_heads=4", _edit_config(n_heads=4), _EDITED),
    ("n_layers=1", _edit_config(n_layers=1), _EDITED),
    ("input scale x2", lambda m, a: _container(
        dict(m, scales=dict(m["scales"], input=m["scales"]["input"] * 2)), a), _EDITED),
    ("task_seed=1", _edit(task_seed=1), _EDITED),
    ("task=mnist1d", _edit(task="mnist1d"), _EDITED),
    ("accuracy_int8=0.5", _edit(accuracy_int8=0.5), _EDITED),
    ("tensors_sha256 of another file", _edit(tensors_sha256="0" * 64), _EDITED),
    # Sealed edits reach the config checks (and the tensors' schema).
    ("sealed attention=bogus", _edit_config(True, attention="bogus"),
     "config attention must be one of window, full, not 'bogus'"),
    ("sealed causal=yes", _edit_config(True, causal="yes"), "config causal must be true or"),
    ("sealed task=x", _edit_config(True, task="x"), "config task must be one of classify, lm"),
    ("sealed input_kind=x", _edit_config(True, input_kind="x"), "config input_kind must be"),
    ("sealed d_model=0", _edit_config(True, d_model=0), "d_model"),
    ("sealed n_heads=3", _edit_config(True, n_heads=3), "n_heads \\(3\\) must divide d_model"),
    ("sealed window=0", _edit_config(True, window=0), "window"),
    ("sealed seq_len=0", _edit_config(True, seq_len=0), "seq_len"),
    ("sealed n_layers='2'", _edit_config(True, n_layers="2"), "n_layers"),
    ("sealed funnel_stride=2", _edit_config(True, funnel_stride=2), "funnel pooling"),
    ("sealed tensors_sha256 of another file", _edit(True, tensors_sha256="0" * 64),
     "tensors_sha256 does not match the tensors"),
    ("sealed scales without input", lambda m, a: _container(_seal(dict(m, scales={
        k: v for k, v in m["scales"].items() if k != "input"})), a), "lacks the input scale"),
    # The container and the manifest's framing.
    ("format=other", _edit(format="other"), "not a lightformer-int8 manifest \\(format 'other'\\)"),
    ("format_version=1", _edit(format_version=1), "unsupported format version 1"),
    ("format_version=3", _edit(format_version=3), "unsupported format version 3"),
    ("format_version='2'", _edit(format_version="2"), "unsupported format version '2'"),
    *[(f"without {f}", _without(f), f"manifest lacks the field '{f}'")
      for f in ("config", "scales", "arrays", "requirements", "tensors_sha256", "model_id")],
    ("manifest cut short", lambda m, a: _container(__import__("json").dumps(m)[:-20], a),
     "manifest is not valid JSON"),
    ("manifest a list", lambda m, a: _container("[]", a), "not a lightformer-int8 manifest"),
    ("manifest nested deep", lambda m, a: _container("[" * 100_000, a), "not valid JSON"),
    ("manifest with NaN", lambda m, a: _container(
        __import__("json").dumps(m).replace('"task_seed": 0', '"task_seed": NaN'), a),
     "not valid JSON"),
    ("a tensor changed", lambda m, a: _container(m, dict(a, **{
        "head.w": np.ascontiguousarray(a["head.w"][::-1])})), "checksum \\(SHA-256\\) does not"),
    ("a tensor dropped", lambda m, a: _container(m, {k: v for k, v in a.items()
                                                     if k != "head.w"}),
     "tensor names differ from the manifest"),
    ("a tensor widened", lambda m, a: _container(m, dict(a, **{
        "head.w": a["head.w"].astype(np.int16)})), "but the manifest says int8"),
    ("empty file", lambda m, a: b"", "not a safetensors file, or truncated"),
    ("seven bytes", lambda m, a: b"\x01" * 7, "not a safetensors file, or truncated"),
    ("huge header length", lambda m, a: (1 << 60).to_bytes(8, "little") + b"{}",
     "not a safetensors file, or truncated"),
    ("cut in half", _raw(lambda b: b[:len(b) // 2]), "truncated"),
    ("cut by one byte", _raw(lambda b: b[:-1]), "file is truncated"),
    ("trailing bytes", _raw(lambda b: b + b"\0" * 16), "longer than its header says"),
    ("other tool's safetensors", lambda m, a: __import__("safetensors.numpy").numpy.save(a),
     "safetensors metadata holds no"),
    ("text file", lambda m, a: b"hello, not an artifact\n", "not a safetensors file"),
]


@pytest.mark.parametrize("make, message", [c[1:] for c in ARTIFACT],
                         ids=[c[0] for c in ARTIFACT])
def test_artifact_loader_refuses_bad_files_with_one_line(tmp_path, capsys, shipped_parts, make,
                                                         message):
    import re

    from sw import artifact as art
    from sw.cli import main

    manifest, arrays = shipped_parts
    path = tmp_path / "m.safetensors"
    path.write_bytes(make(dict(manifest), dict(arrays)))
    with pytest.raises(art.ArtifactError) as exc:
        art.load_artifact(path)
    text = str(exc.value)
    assert "\n" not in text and text.startswith(f"{path}: "), text
    assert re.search(message, text), text
    # The command says the same in one line and exits 2 before evaluating anything.
    assert _exit_status(lambda: main(["eval", "--artifact", str(path), "--no-progress"])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]) and "Traceback" not in err[0], err


# -- a handful through a real process: the console entry prints exactly what the in-process runs see

@pytest.mark.parametrize("env, argv, status, first", [
    ({}, ["eval", "--limit", "0"], 2, "lightformer eval: --limit must be >= 1, not 0"),
    ({}, ["--debug", "eval", "--limit", "0"], 2, "Traceback (most recent call last):"),
    ({"WAVES": "yes"}, ["bench", "gemm"], 2, "lightformer bench: WAVES must be 0 or 1, not 'yes'"),
    ({}, ["infer", "--port", "socket://127.0.0.1:1", "--samples", "1", "--no-progress"], 1,
     "lightformer infer: cannot open socket://127.0.0.1:1"),
])
def test_the_console_entry_gives_one_line_and_the_status(env, argv, status, first):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-m", "sw.cli", *argv], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == status, (proc.returncode, err)
    assert err and err[0].startswith(first), err
    if "--debug" not in argv:
        assert len(err) == 1, err


# -- the corpus's size, as docs/cli.md states it ---------------------------------------------------

CORPUS = {
    "environment knobs": ["test_knobs_refuse_values_that_would_check_nothing",
                          "test_sim_command_refuses_bad_knobs_before_running",
                          "test_train_refuses_a_bad_thread_count", "test_waves_must_be_0_or_1",
                          "test_lightformer_build_must_be_a_writable_folder",
                          "test_building_commands_refuse_a_bad_build_knob_first"],
    "commands": ["test_command_refuses_bad_arguments_with_one_line",
                 "test_compile_refuses_a_bad_train_log",
                 "test_a_runtime_error_is_one_line_and_status_1_unless_debug",
                 "test_a_usage_error_is_one_line_and_status_2_unless_debug",
                 "test_a_runtime_exit_message_keeps_its_line_and_status_1",
                 "test_the_console_entry_gives_one_line_and_the_status"],
    "artifact loader": ["test_artifact_loader_refuses_bad_files_with_one_line"],
    "integer API": ["test_integer_api_refuses_bad_input"],
    "AccelParams": ["test_accel_params_refuse_bad_fields", "test_preset_refuses_bad_names",
                    "test_accel_params_digest_refuses_unknown_fields"],
}


def corpus_sizes() -> dict[str, int]:
    """Cases per area: each listed test's parametrized cases (the product over its tables)."""
    sizes = {}
    for area, names in CORPUS.items():
        total = 0
        for name in names:
            n = 1
            for mark in getattr(globals()[name], "pytestmark", []):
                if mark.name == "parametrize":
                    n *= len(mark.args[1])
            total += n
        sizes[area] = total
    return sizes


def test_the_corpus_holds_at_least_300_cases_and_the_docs_say_how_many():
    from pathlib import Path

    sizes = corpus_sizes()
    total = sum(sizes.values())
    assert total >= 300, sizes
    assert min(sizes.values()) >= 10, sizes            # no area is a token
    doc = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    assert f"{total} cases" in doc, f"docs/cli.md should state the corpus size: {total} cases"
    for area, n in sizes.items():
        assert f"{area}: {n}" in doc, (area, n)
