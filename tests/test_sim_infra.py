# SPDX-License-Identifier: Apache-2.0
"""Fast tests of the simulation infrastructure (no Verilator): payload packing, pause
generators, the build cache key, the GEMM scoreboard and the CLI argument errors."""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from sim import runner, streams

OPERANDS = data.StructLayout({"act": data.ArrayLayout(signed(8), 4),
                              "wgt": data.ArrayLayout(signed(8), 4), "last": 1})
QUANT = data.StructLayout({"bias": data.ArrayLayout(signed(32), 4),
                           "mult": data.ArrayLayout(unsigned(15), 4),
                           "shift": data.ArrayLayout(unsigned(6), 4)})
OUTPUT = data.StructLayout({"data": data.ArrayLayout(signed(8), 4), "last": 1})


# -- packing -------------------------------------------------------------------------------------

def test_streams_pack_matches_amaranth_const_layout():
    # Amaranth itself packs the same value into a Const: our bit layout must equal it.
    value = {"act": [-128, 127, 0, -1], "wgt": [1, -2, 3, -4], "last": 1}
    const = OPERANDS.const(value)
    assert streams.pack_fields(OPERANDS, value) == const.as_value().value
    q = {"bias": [-(1 << 31), (1 << 31) - 1, 0, -5], "mult": [0, 1, (1 << 15) - 1, 12345],
         "shift": [1, 47, 63, 0]}
    assert streams.pack_fields(QUANT, q) == QUANT.const(q).as_value().value


def test_streams_pack_unpack_round_trip_random():
    rng = np.random.default_rng(0)
    codec = streams.Codec(QUANT)
    assert codec.width == 4 * 32 + 4 * 15 + 4 * 6
    for _ in range(200):
        q = {"bias": rng.integers(-(1 << 31), 1 << 31, size=4),
             "mult": rng.integers(0, 1 << 15, size=4), "shift": rng.integers(0, 64, size=4)}
        back = codec.unpack(codec.pack(q))
        for k in q:
            np.testing.assert_array_equal(back[k], q[k])
            assert back[k].dtype == np.int64


def test_streams_pack_many_equals_pack():
    rng = np.random.default_rng(1)
    codec = streams.Codec(OPERANDS)
    a = rng.integers(-128, 128, size=(4, 37))             # (rows, K)
    w = rng.integers(-128, 128, size=(37, 4))             # (K, cols)
    last = np.zeros(37, dtype=np.int64)
    last[-1] = 1
    many = codec.pack_many({"act": a.T, "wgt": w, "last": last})
    one = [codec.pack({"act": a[:, k], "wgt": w[k], "last": last[k]}) for k in range(37)]
    assert many == one


def test_streams_non_byte_elements_use_generic_path():
    layout = data.StructLayout({"x": data.ArrayLayout(signed(5), 3), "y": unsigned(3)})
    codec = streams.Codec(layout)
    v = {"x": [-16, 15, -1], "y": 5}
    raw = codec.pack(v)
    assert raw == layout.const(v).as_value().value
    back = codec.unpack(raw)
    np.testing.assert_array_equal(back["x"], v["x"])
    assert back["y"] == 5


@pytest.mark.parametrize("value, match", [
    ({"act": [128, 0, 0, 0]}, r"payload\.act elements must be in \[-128, 127\]"),
    ({"act": [0, 0, 0]}, r"payload\.act must have shape \(4,\)"),
    ({"nope": 1}, r"has no field\(s\) \['nope'\]"),
    ({"last": 2}, r"payload\.last must be in \[0, 1\], not 2"),
])
def test_streams_pack_rejects_bad_values(value, match):
    with pytest.raises(ValueError, match=match):
        streams.pack_fields(OPERANDS, value)


def test_streams_unpack_rejects_too_wide_raw():
    with pytest.raises(ValueError, match=r"raw payload must be an int in \[0, 2\*\*33\)"):
        streams.unpack_fields(OUTPUT, 1 << 33)


def test_streams_describe_is_json_round_trippable():
    desc = streams.describe(QUANT)
    assert streams.Codec(json.loads(json.dumps(desc))).width == streams.Codec(QUANT).width


# -- pause generators ----------------------------------------------------------------------------

def test_streams_pause_generators():
    assert streams.idle_generator(None) is None
    assert streams.backpressure_generator(None) is None
    cyc = streams.pause_generator("cycle", pattern=[1, 1, 1, 0])
    assert list(itertools.islice(cyc, 8)) == [True, True, True, False] * 2
    r1 = list(itertools.islice(streams.pause_generator("random", seed=3, p=0.25), 4000))
    r2 = list(itertools.islice(streams.pause_generator("random", seed=3, p=0.25), 4000))
    r3 = list(itertools.islice(streams.pause_generator("random", seed=4, p=0.25), 4000))
    assert r1 == r2 and r1 != r3
    assert 0.2 < sum(r1) / len(r1) < 0.3
    assert len(streams.VARIANTS) == 4 and len(set(streams.VARIANTS)) == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "sometimes"}, "pause kind must be None, 'random' or 'cycle'"),
    ({"kind": "random", "p": 1.0}, r"pause probability must be in \[0, 1\)"),
    ({"kind": "cycle", "pattern": [1, 1]}, "pause pattern must contain a 0"),
])
def test_streams_pause_generator_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        streams.pause_generator(**kwargs)


# -- runner cache key ----------------------------------------------------------------------------

def test_runner_cache_key_tracks_verilog_params_and_waves():
    from hw.params import preset

    tiny, ice = preset("tiny"), preset("icebreaker")
    v = "module top(input clk); endmodule\n"
    k = runner.cache_key(v, tiny)
    assert k == runner.cache_key(v, tiny) and len(k) == 16
    assert k != runner.cache_key(v + "// changed\n", tiny)
    assert k != runner.cache_key(v, ice)
    assert k != runner.cache_key(v, tiny, waves=True)
    assert k != runner.cache_key(v, None)


def test_runner_cache_key_reads_only_the_named_params_fields():
    from hw.params import preset

    tiny = preset("tiny")
    v = "module top(input clk); endmodule\n"
    gemm_fields = ("rows", "cols", "k_depth", "dsp_multipliers")
    k = runner.cache_key(v, tiny, fields=gemm_fields)
    assert k == runner.cache_key(v, tiny.replace(baud=921_600), fields=gemm_fields)
    assert k != runner.cache_key(v, tiny.replace(k_depth=512), fields=gemm_fields)
    # Without a field list every field counts, the link's baud included.
    assert runner.cache_key(v, tiny) != runner.cache_key(v, tiny.replace(baud=921_600))


def _fake_builds(tmp_path, monkeypatch, calls):
    """runner.build with the Verilog export and Verilator replaced by stand-ins."""
    def fake_verilate(directory, vfile, name, waves):
        calls.append(directory)
        (directory / name).write_text("exe")

    monkeypatch.setenv("LIGHTFORMER_BUILD", str(tmp_path))
    monkeypatch.setattr(runner, "_prepare_env", lambda: None)
    monkeypatch.setattr(runner, "to_verilog", lambda top, name: "module t; endmodule\n")
    monkeypatch.setattr(runner, "_verilate", fake_verilate)


def test_runner_build_is_keyed_by_the_units_params_fields(tmp_path, monkeypatch):
    from hw.params import preset

    class GemmLike:                                # stands in for a unit that declares its fields
        params_fields = ("rows", "cols", "k_depth", "dsp_multipliers")

        def elaborate(self, platform):             # pragma: no cover - never elaborated
            raise AssertionError

    class Unlisted(GemmLike):                      # declares nothing: every field counts
        params_fields = None

    calls = []
    _fake_builds(tmp_path, monkeypatch, calls)
    tiny = preset("tiny")
    first = runner.build(GemmLike(), name="g", params=tiny)
    again = runner.build(GemmLike(), name="g", params=tiny.replace(baud=921_600))
    assert (first.cached, again.cached) == (False, True) and first.key == again.key
    assert again.params["baud"] == 921_600          # the bench still sees the real params
    assert len(calls) == 1
    other = runner.build(GemmLike(), name="g", params=tiny.replace(k_depth=512))
    assert not other.cached and other.key != first.key and len(calls) == 2
    u1 = runner.build(Unlisted(), name="u", params=tiny)
    u2 = runner.build(Unlisted(), name="u", params=tiny.replace(baud=921_600))
    assert u1.key != u2.key and len(calls) == 4
    stamp = json.loads((first.directory / runner._STAMP).read_text())
    assert stamp["params_fields"] == sorted(GemmLike.params_fields)


def test_runner_verilog_export_is_deterministic_and_tracks_rtl():
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Adder(wiring.Component):
        def __init__(self, k):
            self.k = k
            super().__init__({"a": In(8), "y": Out(8)})

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.y.eq(self.a + self.k)
            return m

    v1 = runner.to_verilog(Adder(1), name="adder")
    assert v1 == runner.to_verilog(Adder(1), name="adder")
    assert "module adder" in v1 and "/work" not in v1          # emit_src=False: no paths
    assert runner.cache_key(v1) != runner.cache_key(runner.to_verilog(Adder(2), name="adder"))


def test_runner_rejects_bad_names_and_testcases():
    with pytest.raises(ValueError, match="build name must be a Verilog identifier"):
        runner.build(lambda: None, name="not a name")
    assert runner._test_filter(None) is None
    rx = runner._test_filter("gemm_tiles")
    import re
    assert re.search(rx, "sim.tb_gemm.gemm_tiles/idle=True/backpressure=False")
    assert re.search(rx, "sim.tb_gemm.gemm_tiles")
    assert not re.search(rx, "sim.tb_gemm.gemm_tiles_more")
    with pytest.raises(ValueError, match="testcase must name at least one"):
        runner._test_filter(" , ")


def test_runner_parses_failures_from_results_xml(tmp_path):
    xml = tmp_path / "results.xml"
    xml.write_text(
        '<testsuites><testsuite name="tb"><testcase classname="tb" name="ok" time="0.5">'
        '<properties><property name="sim_time_duration" value="90.0"/></properties></testcase>'
        '<testcase classname="tb" name="bad" time="1"><failure message="boom"/></testcase>'
        '</testsuite></testsuites>')
    tests = runner._parse_results(xml)
    assert [(t["name"], t["status"]) for t in tests] == [("ok", "passed"), ("bad", "failed")]
    assert tests[0]["sim_time"] == 90.0 and tests[1]["message"] == "boom"


# -- GEMM scoreboard (pure Python; proves the bench can fail) -------------------------------------

def _scoreboard():
    pytest.importorskip("cocotb")
    from sim.tb_gemm import GemmScoreboard

    ports = {"i_stream": streams.describe(OPERANDS), "i_quant": streams.describe(QUANT),
             "o_stream": streams.describe(OUTPUT)}
    return GemmScoreboard(ports, 4, 4), streams.Codec(OPERANDS), streams.Codec(QUANT), \
        streams.Codec(OUTPUT)


def _feed_tile(sb, op, qc, tile):
    a, w = tile["a"], tile["w"]
    k = a.shape[1]
    last = np.zeros(k, dtype=np.int64)
    last[-1] = 1
    for raw in op.pack_many({"act": a.T, "wgt": w, "last": last}):
        sb.on_operand(raw)
    sb.on_quant(qc.pack({"bias": tile["bias"], "mult": tile["mult"], "shift": tile["shift"]}))


def test_tb_gemm_scoreboard_accepts_model_output_and_flags_errors():
    from sim.tb_gemm import corner_tiles, random_tile
    from sw.ref import gemm_requant

    sb, op, qc, oc = _scoreboard()
    rng = np.random.default_rng(5)
    tiles = corner_tiles(4, 4, 256) + [random_tile(rng, 4, 4, 256) for _ in range(20)]
    for i, t in enumerate(tiles):
        _feed_tile(sb, op, qc, t)
        y = gemm_requant(t["a"], t["w"], t["bias"], t["mult"], t["shift"])
        for r in range(4):
            row = y[r].astype(np.int64)
            if i == 3 and r == 2:
                row = row.copy()
                row[1] = row[1] + 1 if row[1] < 127 else row[1] - 1      # one wrong element
            last = int(r == 3 if i != 7 else 0)                           # one wrong last flag
            sb.on_output(oc.pack({"data": row, "last": last}))
    assert sb.tiles_in == sb.tiles_out == len(tiles)
    assert sb.tiles_bad == {3, 7}
    assert sb.row_mismatches == 2
    assert "tile 3 row 2" in sb.errors[0]


def test_tb_gemm_random_tiles_respect_the_model_limits():
    from sim.tb_gemm import corner_tiles, random_k, random_tile
    from sw.ref import gemm_requant

    rng = np.random.default_rng(7)
    ks = [random_k(rng, 256) for _ in range(2000)]
    assert min(ks) == 1 and max(ks) == 256
    for t in corner_tiles(4, 4, 256) + [random_tile(rng, 4, 4, 256) for _ in range(300)]:
        gemm_requant(t["a"], t["w"], t["bias"], t["mult"], t["shift"])   # raises if invalid


# -- CLI argument errors -------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["bench", "gemm", "--preset", "nope"], "preset must be one of tiny"),
    (["bench", "gemm", "--seed", "-1"], "seed must be a non-negative integer, not '-1'"),
    (["demo", "--samples", "x"], "samples must be a positive integer, not 'x'"),
    (["demo", "--preset", "big"], "preset must be one of tiny"),
    (["bench", "attention", "--preset", "ulx3s-85f"], "did you mean 'ulx3s_85f'?"),
    (["demo", "--backend", "fpga"], "invalid choice: 'fpga'"),
])
def test_cli_bench_and_demo_argument_errors_are_clear(argv, message, capsys):
    from sw.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_bench_json_must_be_a_file(tmp_path, capsys):
    from sw.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "gemm", "--json", str(tmp_path)])
    assert "--json must be a file path" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["demo", "--backend", "python", "--uart"], "--uart needs --backend vboard"),
    (["bench"], "choose a benchmark: gemm, attention or fuzz"),
    (["sim", "nosuchsuite"], "unknown suite(s) 'nosuchsuite'"),
])
def test_cli_semantic_errors_exit_2_before_simulating(argv, message, capsys):
    from sw.cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_runner_prunes_only_old_run_folders_beyond_the_newest(tmp_path):
    import os
    import time

    runs = tmp_path / "runs"
    now = time.time()
    for i in range(6):
        d = runs / f"r{i}"
        d.mkdir(parents=True)
        age = 7200 if i < 4 else 10                # r0..r3 old, r4/r5 fresh
        os.utime(d, (now - age - i, now - age - i))
    runner._prune_runs(runs, keep=2)
    # The two newest stay; of the rest only the old ones go (a fresh folder may be in use).
    assert sorted(p.name for p in runs.iterdir()) == ["r4", "r5"]
    (runs / "r6").mkdir()
    runner._prune_runs(runs, keep=1)
    assert sorted(p.name for p in runs.iterdir()) == ["r4", "r5", "r6"]


def test_streams_unpack_many_equals_unpack():
    rng = np.random.default_rng(2)
    for layout, make in (
        (OPERANDS, lambda: {"act": rng.integers(-128, 128, 4), "wgt": rng.integers(-128, 128, 4),
                            "last": int(rng.integers(0, 2))}),
        (QUANT, lambda: {"bias": rng.integers(-(1 << 31), 1 << 31, 4),
                         "mult": rng.integers(0, 1 << 15, 4), "shift": rng.integers(0, 64, 4)}),
    ):
        codec = streams.Codec(layout)
        raws = [codec.pack(make()) for _ in range(50)]
        many = codec.unpack_many(raws)
        for i, raw in enumerate(raws):
            one = codec.unpack(raw)
            for k, v in one.items():
                np.testing.assert_array_equal(many[k][i], v)
    assert streams.Codec(OPERANDS).field_offset("last") == 64


def test_runner_concurrent_builds_of_one_design_verilate_once(tmp_path, monkeypatch):
    import threading
    import time

    class Top:                                     # stands in for a wiring.Component
        latency = 3

        def elaborate(self, platform):             # pragma: no cover - never elaborated
            raise AssertionError

    calls = []

    def fake_verilate(directory, vfile, name, waves):
        calls.append(directory)
        time.sleep(0.3)                            # long enough for the others to queue up
        (directory / name).write_text("exe")

    monkeypatch.setenv("LIGHTFORMER_BUILD", str(tmp_path))
    monkeypatch.setattr(runner, "_prepare_env", lambda: None)
    monkeypatch.setattr(runner, "to_verilog", lambda top, name: "module t; endmodule\n")
    monkeypatch.setattr(runner, "_verilate", fake_verilate)
    results = []
    threads = [threading.Thread(target=lambda: results.append(runner.build(Top(), name="t")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len({b.key for b in results}) == 1 and sorted(b.cached for b in results) == [
        False, True, True]
    assert results[0].latency == 3 and results[0].directory.parent == tmp_path / "sim"
    # A build that died half-way (no stamp) is redone, not reused.
    (results[0].directory / runner._STAMP).unlink()
    assert runner.build(Top(), name="t").cached is False and len(calls) == 2


def test_runner_prunes_old_builds_of_the_same_design_only(tmp_path):
    import os
    import time

    sim_root = tmp_path / "sim"
    now = time.time()
    made = {}
    for i, (name, age) in enumerate([("gemm", 10), ("gemm", 7200), ("gemm", 7300),
                                     ("gemm", 7400), ("gemm", 7500), ("gemm_core", 9000),
                                     ("attention", 9000)]):
        d = sim_root / f"{name}-{i:016x}"
        d.mkdir(parents=True)
        stamp = d / runner._STAMP
        stamp.write_text("{}")
        os.utime(stamp, (now - age, now - age))
        made[d.name] = d
    keep = sim_root / "gemm-0000000000000004"       # in use now, although least recently
    runner._prune_builds(sim_root, "gemm", keep=keep, count=2)
    left = sorted(p.name for p in sim_root.iterdir() if p.is_dir())
    # The 2 most recently used gemm builds, the one in use, and other designs' builds stay.
    assert left == ["attention-0000000000000006", "gemm-0000000000000000",
                    "gemm-0000000000000001", "gemm-0000000000000004",
                    "gemm_core-0000000000000005"]


# -- suites --------------------------------------------------------------------------------------

def test_suites_declare_every_sim_test_module():
    from sim import suites

    here = sorted(p.stem[len("test_sim_"):] for p in suites.ROOT.joinpath("tests")
                  .glob("test_sim_*.py") if p.stem != "test_sim_infra")
    assert here, "no sim suites found"
    assert set(here) <= set(suites.SUITES), "add the new suite to sim.suites.SUITES"
    assert set(here) <= set(suites.available_suites())


def test_suites_without_a_tests_folder_say_so(tmp_path, monkeypatch, capsys):
    from sim import suites
    from sw.cli import main

    monkeypatch.setattr(suites, "ROOT", tmp_path)            # an installed package: no tests/
    assert suites.available_suites() == []
    assert main(["sim"]) == 2
    assert "run from a source checkout" in capsys.readouterr().err
    assert main(["sim", "--list"]) == 0
    assert capsys.readouterr().out.count("(not in this checkout)") == len(suites.SUITES)


# -- bench commands ------------------------------------------------------------------------------

def test_benchkit_report_to_stdout_has_schema_and_kind(capsys):
    from sim import benchkit

    say = benchkit.say_for("-")
    say("table line")
    benchkit.write_report("-", {"bench": "gemm", "cases": []}, kind="bench.gemm", say=say)
    out, err = capsys.readouterr()
    assert json.loads(out) == {"schema_version": 1, "kind": "bench.gemm", "bench": "gemm",
                               "cases": []}
    assert err == "table line\n"                  # human lines keep stdout pure JSON


def test_benchkit_report_to_a_file_is_written_and_said(tmp_path, capsys):
    from sim import benchkit

    path = tmp_path / "deep" / "r.json"
    benchkit.write_report(path, {"x": 1}, kind="demo", say=benchkit.say_for(path))
    assert json.loads(path.read_text())["kind"] == "demo"
    assert capsys.readouterr().out == f"wrote {path}\n"


def _fake_bench_run(monkeypatch, writes: dict | None, fails: bool):
    """runner.run replaced: optionally writes ``writes`` to LF_RESULT_JSON, optionally fails."""
    from pathlib import Path

    seen = {}

    def fake_run(b, module, *, testcase, tag, env):
        seen.update(env=env, module=module, testcase=testcase)
        if writes is not None:
            Path(env["LF_RESULT_JSON"]).write_text(json.dumps(writes))
        if fails:
            raise runner.SimulationError("cocotb tests failed in sim.tb_x: x_bench")
        return runner.Results(xml=Path("r.xml"), directory=Path("."), log=Path("l"),
                              tests=[{"seconds": 2.0}])

    monkeypatch.setattr(runner, "run", fake_run)
    return seen


class _B:
    name = "gemm"


def test_benchkit_run_bench_test_reads_results_and_keeps_a_failure(monkeypatch):
    from sim import benchkit

    seen = _fake_bench_run(monkeypatch, {"bench": {"cases": [{"m": 1}], "rows": 4}}, False)
    r = benchkit.run_bench_test(_B(), "sim.tb_x", "x_bench", [(8, 16, 8)], seed=3, what="x",
                                progress=False)
    assert r.cases == [{"m": 1}] and r.result["rows"] == 4 and r.error is None
    assert r.sim_s == 2.0 and json.loads(seen["env"]["LF_BENCH_CASES"]) == [[8, 16, 8]]
    assert seen["env"]["LF_SEED"] == 3 and not os.path.exists(seen["env"]["LF_RESULT_JSON"])
    # A failed test that still wrote its cases: the numbers come back with the error.
    _fake_bench_run(monkeypatch, {"bench": {"cases": [{"m": 2}]}}, True)
    r = benchkit.run_bench_test(_B(), "sim.tb_x", "x_bench", [], seed=1, what="x",
                                progress=False)
    assert r.cases == [{"m": 2}] and "x_bench" in r.error


@pytest.mark.parametrize("fails", [False, True])
def test_benchkit_run_bench_test_without_results_raises(monkeypatch, fails):
    from sim import benchkit

    _fake_bench_run(monkeypatch, None, fails)
    match = "x_bench" if fails else "wrote no results"
    with pytest.raises(runner.SimulationError, match=match):
        benchkit.run_bench_test(_B(), "sim.tb_x", "x_bench", [], seed=1, what="x",
                                progress=False)


def test_cli_bench_json_dash_is_accepted_and_a_folder_refused(tmp_path, capsys):
    from sw.cli import build_parser

    argv = ["bench", "attention", "--json", "-", "--seed", "0x10"]
    args = build_parser("bench").parse_args(argv)
    assert args.json == "-" and args.seed == 16 and args.preset == "tiny"
    with pytest.raises(SystemExit):
        build_parser("demo").parse_args(["demo", "--json", str(tmp_path)])
    assert "--json must be a file path" in capsys.readouterr().err
