# SPDX-License-Identifier: Apache-2.0
"""Tests of the pure-spec link protocol (hw.link.protocol) and the host port signature."""

from __future__ import annotations

import pytest

from hw.bus import HostBus
from hw.link import protocol as p
from hw.params import preset


def test_protocol_crc_check_value():
    # CRC-16/CCITT-FALSE's catalogue check value.
    assert p.crc16(b"123456789") == 0x29B1


def test_protocol_crc_residue_is_zero():
    body = bytes([p.Opcode.READ, 7, 8]) + bytes(range(8))
    crc = p.crc16(body)
    assert p.crc16(body + crc.to_bytes(2, "big")) == 0


def test_protocol_identify_round_trip():
    params = preset("tiny")
    ident = p.parse_identify(p.identify_payload(params.digest(), params.name))
    assert ident.design_id == params.design_id
    assert (ident.version, ident.max_words, ident.name) == (p.PROTOCOL_VERSION, p.MAX_WORDS,
                                                            "tiny")
    with pytest.raises(ValueError, match="magic"):
        p.parse_identify(b"XXXX" + bytes(p.IDENTIFY_BYTES - 4))


def test_protocol_request_lengths():
    assert p.request_length_ok(p.Opcode.WRITE, 8)
    assert p.request_length_ok(p.Opcode.WRITE, p.MAX_PAYLOAD)
    assert not p.request_length_ok(p.Opcode.WRITE, p.MAX_PAYLOAD + 4)
    assert not p.request_length_ok(p.Opcode.WRITE, 4)
    assert not p.request_length_ok(p.Opcode.WRITE, 10)
    assert p.request_length_ok(p.Opcode.READ, 8) and not p.request_length_ok(p.Opcode.READ, 4)
    assert p.request_length_ok(p.Opcode.RUN, 4)
    assert p.request_length_ok(p.Opcode.STATUS, 0) and not p.request_length_ok(p.Opcode.PERF, 1)
    assert p.MAX_PAYLOAD <= p.MAX_LENGTH


def test_protocol_check_access():
    ranges = p.check_ranges([(0x0, 0x100, True), (0x1000, 0x10, False)])
    assert p.check_access(ranges, 0xFC, 1, True)
    assert not p.check_access(ranges, 0xFC, 2, True)       # crosses the end
    assert not p.check_access(ranges, 0x2, 1, False)       # unaligned
    assert p.check_access(ranges, 0x1000, 4, False)
    assert not p.check_access(ranges, 0x1000, 1, True)     # read-only
    with pytest.raises(ValueError, match="word-aligned"):
        p.check_ranges([(2, 4, True)])
    with pytest.raises(TypeError, match="writable"):
        p.check_ranges([(0, 4, 1)])


def test_protocol_uart_divisor():
    assert p.uart_divisor(25e6, 115200) == 217
    with pytest.raises(ValueError, match="too fast"):
        p.uart_divisor(12e6, 12_000_000)
    assert p.timeout_cycles(25e6, 115200) == 250_000             # the 10 ms floor
    assert p.timeout_cycles(25e6, 9600) == 64 * 10 * 2604        # 64 byte times


def test_protocol_check_baud():
    """A divisor counted on another clock than its own: within 2 % it passes (the error is
    returned), beyond it one line names the divisor, both clocks, the baud and the fix."""
    assert p.check_baud(25e6, 217, 115200) == pytest.approx(25e6 / 217 / 115200 - 1)
    assert abs(p.check_baud(12e6, p.uart_divisor(12e6, 115200), 115200)) < 0.002
    assert p.check_baud(12.2e6, 104, 115200) == pytest.approx(0.0183, abs=1e-4)  # +1.8 %
    with pytest.raises(ValueError) as exc:
        p.check_baud(12.5e6, 104, 115200, wanted_hz=12e6)
    assert str(exc.value) == (
        "the UART divisor 104 computed for 12 MHz gives 120192 baud at 12.5 MHz, +4.3 % off "
        "115200 (at most 2 %): choose a clock the board's PLL makes exactly (--target-mhz 12.5) "
        "or another baud")
    with pytest.raises(ValueError, match=r"-2\.2 % off 115200 \(at most 2 %\): at 25 MHz the "
                       r"divisor is 217$"):
        p.check_baud(25e6, 222, 115200)


def test_bus_signature():
    sig = HostBus.Signature(addr_width=10)
    assert sig.members["w_en"].shape == 4 and sig.members["ready"].flow.name == "In"
    assert sig == HostBus.Signature(addr_width=10, data_width=32)
    with pytest.raises(ValueError, match="addr_width"):
        HostBus.Signature(addr_width=31)
