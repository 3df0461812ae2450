# SPDX-License-Identifier: Apache-2.0
"""Fast checks of the virtual board's pieces (no Verilator): ``hw.system.LinkedAccelerator``'s
ports and link timing, and the ``vboard`` and ``ports`` commands' arguments and output."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hw.link import protocol as lp
from hw.params import preset
from hw.system import LINKS, LinkedAccelerator
from sim import vboard
from sw import cli

TINY = preset("tiny")


def test_linked_accelerator_ports_follow_the_link():
    uart = LinkedAccelerator.from_params(TINY)
    stream = LinkedAccelerator.from_params(TINY, link="stream")
    assert LINKS == ("uart", "stream") and uart.link == "uart" and stream.link == "stream"
    assert set(uart.signature.members) == {"rx", "tx", "frame_error", "overrun", "busy"}
    assert set(stream.signature.members) == {"i_stream", "o_stream", "busy"}
    clk_hz = TINY.target_mhz * 1e6
    assert uart.divisor == lp.uart_divisor(clk_hz, TINY.baud) == 217
    assert uart.timeout_cycles == lp.timeout_cycles(clk_hz, TINY.baud) == 250_000
    assert vboard.link_timing(TINY, uart=True) == {"timeout_cycles": 250_000, "divisor": 217}
    assert vboard.link_timing(TINY, uart=False) == {"timeout_cycles": 250_000}


def test_linked_accelerator_checks_its_arguments():
    with pytest.raises(ValueError, match="link must be one of 'uart', 'stream', not 'usb'"):
        LinkedAccelerator(TINY, link="usb")
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        LinkedAccelerator("tiny")
    with pytest.raises(ValueError, match="too fast"):             # 4 cycles per bit at least
        LinkedAccelerator(TINY.replace(baud=12_000_000))


@pytest.mark.parametrize("argv, message", [
    (["--port", "70000"], "must be a TCP port in [0, 65535], not '70000'"),
    (["--port", "x"], "must be a TCP port"),
    (["--preset", "ulx3s-85f"], "did you mean 'ulx3s_85f'?"),
    (["--baud", "9600"], "unrecognized arguments: --baud"),
])
def test_vboard_refuses_bad_arguments_before_building(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(vboard, "build", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(SystemExit) as exc:
        cli.main(["vboard", *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


class _FakeBoard:
    url = "socket://127.0.0.1:4321"
    stats = {"cycles": 1234, "busy_cycles": 56, "bytes_in": 7, "bytes_out": 8}

    def __init__(self):
        self.calls = []

    def wait(self):
        self.calls.append("wait")
        return 0


def test_vboard_prints_the_url_first(monkeypatch, capsys):
    fake = _FakeBoard()
    started = []
    monkeypatch.setattr(vboard, "start", lambda params, **kw: started.append((params, kw))
                        or fake)
    assert cli.main(["vboard", "--preset", "icebreaker", "--port", "4321", "--once"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [fake.url]
    assert started == [(preset("icebreaker"), {"uart": False, "port": 4321, "once": True,
                                                "progress": True})]
    assert "1234 cycles simulated (56 busy), 7 bytes in, 8 bytes out" in err
    assert f"0x{preset('icebreaker').design_id:08x}" in err and fake.calls == ["wait"]


def test_ports_lists_ports_or_says_there_are_none(monkeypatch, capsys):
    from serial.tools import list_ports

    monkeypatch.setattr(list_ports, "comports", lambda: [])
    assert cli.main(["ports"]) == 0
    assert "no serial ports found" in capsys.readouterr().out
    ports = [SimpleNamespace(device="/dev/ttyUSB1", vid=0x0403, pid=0x6015,
                             description="FT231X USB UART"),
             SimpleNamespace(device="/dev/ttyS0", vid=None, pid=None, description="n/a")]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    assert cli.main(["ports"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["PORT", "USB", "ID", "DESCRIPTION"]
    assert lines[1].split() == ["/dev/ttyS0", "-", "-"]
    assert lines[2].split() == ["/dev/ttyUSB1", "0403:6015", "FT231X", "USB", "UART"]


def test_vboard_build_is_remembered_by_its_sources(tmp_path, monkeypatch):
    """A second build() of unchanged sources reuses the stamped build without the Verilog
    export; a build whose executable is gone, or other params, go through the runner again."""
    from sim import runner

    monkeypatch.setenv("LIGHTFORMER_BUILD", str(tmp_path))
    calls = []

    def fake_build(top_factory, *, name, params, **kwargs):
        calls.append(params.name)
        directory = tmp_path / "sim" / f"{name}-{len(calls):016x}"
        (directory / "obj_dir").mkdir(parents=True)
        (directory / "obj_dir" / "vboard_sim").write_bytes(b"\x7fELF")
        (directory / runner._STAMP).write_text("{}")
        return runner.Build(name=name, key=f"{len(calls):016x}", directory=directory,
                            verilog=directory / f"{name}.v", params=params.to_dict(),
                            waves=False, ports={}, latency=None, cached=False, seconds=1.0)

    monkeypatch.setattr(runner, "build", fake_build)
    first = vboard.build(TINY)
    again = vboard.build(TINY)
    assert calls == ["tiny"] and not first.cached and again.cached
    assert again.directory == first.directory and again.key == first.key
    assert vboard.executable(again).exists()
    vboard.executable(first).unlink()
    third = vboard.build(TINY)
    assert calls == ["tiny", "tiny"] and third.directory != first.directory
    vboard.build(preset("icebreaker"))
    assert calls == ["tiny", "tiny", "icebreaker"]
