# SPDX-License-Identifier: Apache-2.0
"""The link fuzzer (sw.driver.fuzz) against the frame-engine model served on TCP: every valid
frame answered OK, every error kind seen, no memory corruption, no hang -- and a device that
corrupts memory or stops answering is caught."""

from __future__ import annotations

import json

import pytest

from hw.link import protocol as p
from sw.driver import Device
from sw.driver.fuzz import _BAD_KINDS, fuzz, outside_address
from sw.driver.model import FrameEngineModel, LinkServer

RANGES = [(0x0, 0x400, True), (0x1000, 0x40, False)]
WINDOW = (0x100, 0x200)


def _server():
    return LinkServer(FrameEngineModel(p.identify_payload("00" * 8, "fuzz"), RANGES),
                      silence_s=0.01)


def test_driver_fuzz_model_is_clean():
    with _server() as srv, Device.open(srv.url, timeout=0.5) as dev:
        report = fuzz(dev, window=WINDOW, outside=outside_address(RANGES), n_bytes=12_000,
                      seed=1, silence_s=0.1)     # margin over the server's 0.01 s
    assert report["bytes"] >= 12_000
    assert report["valid_frames"] >= 25
    assert set(report["mutations"]) == set(_BAD_KINDS)             # every kind was sent
    assert report["valid_answered_ok"] == report["valid_frames"]
    assert report["memory_corruptions"] == 0 and report["hangs"] == 0
    assert report["unexpected_ok"] == 0
    assert {"BAD_CRC", "BAD_OPCODE", "BAD_ADDRESS", "TIMEOUT"} <= set(report["error_replies"])


def _fuzz_faulty(fault, n_bytes=2_000):
    """Fuzz a model whose frame execution goes through ``fault(real, frame, count)``."""
    with _server() as srv, Device.open(srv.url, timeout=0.2) as dev:
        real = srv.model._execute
        count = []

        def execute(frame):
            count.append(frame)
            return fault(srv.model, real, frame, len(count))

        srv.model._execute = execute
        return fuzz(dev, window=WINDOW, outside=outside_address(RANGES), n_bytes=n_bytes,
                    seed=2, silence_s=0.03, timeout=0.2)


def test_driver_fuzz_catches_a_stray_write():
    def stray_write(model, real, frame, n):
        out = real(frame)
        if n == 10:                                  # one stray write, mid-run
            word = WINDOW[0] // 4 + 3
            model.memory[word] = model.memory.get(word, 0) ^ 0x0BAD0BAD
        return out

    report = _fuzz_faulty(stray_write)
    assert report["memory_corruptions"] == 1
    assert report["valid_answered_ok"] == report["valid_frames"]


def test_driver_fuzz_catches_unanswered_frames():
    def deaf(model, real, frame, n):
        out = real(frame)
        return out if n < 5 or n % 3 else b""        # every third frame goes unanswered

    report = _fuzz_faulty(deaf)
    assert report["hangs"] >= 1
    assert report["valid_answered_ok"] + report["hangs"] == report["valid_frames"]


def test_bench_fuzz_python_board(tmp_path, capsys):
    from sw import cli

    out = tmp_path / "fuzz.json"
    assert cli.main(["bench", "fuzz", "--python", "--bytes", "4000", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["kind"] == "bench.fuzz" and report["device"] == "python"
    assert report["bytes"] >= 4000 and report["valid_frames"] >= 5
    assert report["valid_answered_ok"] == report["valid_frames"]
    assert report["memory_corruptions"] == 0 and report["hangs"] == 0
    assert report["error"] is None and sum(report["error_replies"].values()) > 0
    for bad in (["--bytes", "0"], ["--python", "--port", "socket://127.0.0.1:1"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(["bench", "fuzz", *bad])
        assert exc.value.code == 2
    assert "bytes must be a positive integer" in capsys.readouterr().err
