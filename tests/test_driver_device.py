# SPDX-License-Identifier: Apache-2.0
"""The driver (sw.driver) against the byte-level frame-engine model served on a loopback TCP
port: every failure is one clear AccelError within seconds, never a hang."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from hw.link import protocol as p
from hw.params import preset
from sw.driver import (
    CrcError,
    DesignMismatchError,
    Device,
    DeviceError,
    DeviceResetError,
    LinkClosedError,
    LinkError,
    LinkTimeoutError,
)
from sw.driver.model import FrameEngineModel, LinkServer

PARAMS = preset("tiny")
RANGES = [(0x0, 0x1000, True), (0x8000, 0x40, False)]
TIMEOUT = 0.3
RETRIES = 2


@pytest.fixture
def server():
    model = FrameEngineModel(p.identify_payload(PARAMS.digest(), PARAMS.name), RANGES,
                             memory={0x8000 // 4: 0xFEEDF00D},
                             on_run=lambda entry, mem: 1000 + entry)
    with LinkServer(model) as srv:
        yield srv


@pytest.fixture
def dev(server):
    with Device.open(server.url, timeout=TIMEOUT, retries=RETRIES) as d:
        yield d


def test_driver_identify_and_design_check(dev):
    ident = dev.identify()
    assert (ident.design_id, ident.name, ident.version) == (PARAMS.design_id, "tiny",
                                                            p.PROTOCOL_VERSION)
    assert dev.check_design(PARAMS.design_id, "tiny") == ident
    other = preset("ulx3s_85f")
    with pytest.raises(DesignMismatchError) as info:
        dev.check_design(other.design_id, other.name)
    msg = str(info.value)
    assert f"runs design 0x{PARAMS.design_id:08x} (preset tiny)" in msg
    assert f"compiled for 0x{other.design_id:08x} (preset ulx3s_85f)" in msg
    assert dev.url in msg and "rebuild" in msg


def test_driver_write_read_chunked(dev, server):
    words = [(i * 2654435761) & 0xFFFFFFFF for i in range(3 * p.MAX_WORDS + 5)]
    dev.write(0x100, words)
    assert dev.read(0x100, len(words)) == words
    assert dev.read(0x8000, 1) == [0xFEEDF00D]
    perf = dev.perf()
    assert (perf.frames_ok, perf.frames_failed) == (4 + 4 + 1 + 1, 0)   # 4 WRITEs, 4 READs
    assert server.model.memory[0x100 // 4 + len(words) - 1] == words[-1]


def test_driver_strided_read_and_wait(dev, server):
    words = [(i * 40503) & 0xFFFFFFFF for i in range(4 * 70)]
    dev.write(0x200, words)
    sent = dev.bytes_sent
    assert dev.read(0x200, 70, stride=4) == words[::4]                # two READs: 62 + 8
    assert dev.bytes_sent - sent == 2 * (4 + 12 + 2)
    assert dev.read(0x200, 3, stride=p.MAX_STRIDE) == [words[0], words[255], 0]
    for stride in (0, p.MAX_STRIDE + 1, True):
        with pytest.raises(ValueError, match="stride must be"):
            dev.read(0x200, 1, stride=stride)
    dev.run(5)
    st = dev.wait_once(100)
    assert (st.busy, st.done, st.run_cycles) == (False, True, 1005)
    assert dev.wait() == st
    server.model.busy = True
    assert dev.wait_once(1 << 40).busy                                 # clamped, not refused
    with pytest.raises(ValueError, match="budget must be"):
        dev.wait_once(-1)


def test_driver_device_errors_are_clear(dev):
    with pytest.raises(DeviceError, match="BAD_ADDRESS") as info:
        dev.write(0x8000, [1])                 # read-only window
    assert info.value.code == p.Status.BAD_ADDRESS and "READ" not in str(info.value)
    with pytest.raises(DeviceError, match="outside the device's memory map"):
        dev.read(0x1000, 1)
    with pytest.raises(ValueError, match="word-aligned"):
        dev.read(0x2, 1)
    with pytest.raises(ValueError, match="unsigned 32-bit"):
        dev.write(0, [-1])


def test_driver_run_status_perf_reset(dev, server):
    dev.run(24)
    st = dev.wait(timeout=1.0)
    assert (st.busy, st.done) == (False, True)
    assert dev.perf()[:2] == (1024, 1)
    server.model.busy = True
    with pytest.raises(DeviceError, match="BUSY"):
        dev.run(0)
    with pytest.raises(LinkTimeoutError, match="still busy"):
        dev.wait(timeout=0.1)
    server.model.busy = False
    assert dev.wait().done                     # the earlier run's DONE is still reported
    dev.reset()
    assert dev.perf() == (0, 0, 2, 0)


def test_driver_board_reset_mid_run(dev, server):
    def long_run(entry, memory):
        server.model.busy = True
        return 0

    dev.write(0x0, [5])
    server.model.on_run = long_run             # a long run...
    dev.run(0)
    assert dev.status()[:2] == (True, False)
    server.model.power_cycle()                 # ...and the board resets under it
    with pytest.raises(DeviceResetError, match="reset or power-cycled during the run"):
        dev.wait(timeout=1.0)
    assert dev.read(0x0, 1) == [0]             # the memory is gone too


def test_driver_retries_after_a_dropped_reply(dev, server):
    server.faults.drop_replies = 1
    t0 = time.monotonic()
    assert dev.read(0x8000, 1) == [0xFEEDF00D]
    assert TIMEOUT <= time.monotonic() - t0 < 3 * TIMEOUT
    assert dev.perf().frames_ok == 3           # the dropped READ was answered on the device


def test_driver_retries_a_corrupted_reply_then_gives_up(dev, server):
    server.faults.corrupt_replies = 1
    assert dev.identify().name == "tiny"
    server.faults.corrupt_replies = RETRIES + 1
    with pytest.raises(CrcError, match=f"after {RETRIES + 1} attempts"):
        dev.identify()
    assert dev.identify().name == "tiny"       # the link works again


def test_driver_times_out_never_hangs(dev, server):
    server.faults.mute = True
    t0 = time.monotonic()
    with pytest.raises(LinkTimeoutError, match="IDENTIFY .* failed after 3 attempts"):
        dev.identify()
    assert time.monotonic() - t0 < (RETRIES + 1) * TIMEOUT + 1.0


def test_driver_request_damaged_on_the_way_is_retried(dev, server):
    # A truncated request times out on the device: the stale TIMEOUT reply is skipped.
    dev.transport.write(bytes([p.SOF_REQUEST, p.Opcode.READ]))
    time.sleep(2 * server.silence_s)
    assert dev.read(0x8000, 1) == [0xFEEDF00D]


def test_driver_closed_socket(dev, server):
    server.faults.close_after = 0
    with pytest.raises(LinkClosedError, match="closed the connection"):
        dev.identify()


def test_driver_cannot_open():
    srv = LinkServer(FrameEngineModel(p.identify_payload(PARAMS.digest(), "x"), RANGES))
    url = srv.url
    srv.close()
    with pytest.raises(LinkError, match="cannot open socket://"):
        Device.open(url, timeout=TIMEOUT)


def test_driver_loop_url_times_out():
    # loop:// echoes the request; a request is not a reply, so nothing answers.
    with Device.open("loop://", timeout=0.1, retries=1) as dev:
        with pytest.raises(LinkTimeoutError):
            dev.identify()


def test_driver_checks_arguments():
    with pytest.raises(ValueError, match="retries"):
        Device.open("loop://", retries=-1)
    with pytest.raises(TypeError, match="timeout"):
        Device.open("loop://", timeout="1")
    with pytest.raises(TypeError, match="url"):
        Device.open("")


def test_driver_imports_neither_torch_nor_amaranth():
    code = ("import sys, sw.driver, sw.driver.model, sw.driver.isaboard, sw.program; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'amaranth')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
