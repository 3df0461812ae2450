# SPDX-License-Identifier: Apache-2.0
"""Frames of the host link protocol (:mod:`hw.link.protocol`): encode, decode, CRC check."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from hw.link import protocol as p
from sw.driver.errors import CrcError, LinkTimeoutError

__all__ = ["Reply", "decode_reply", "encode_reply", "encode_request", "read_reply"]


def _check_byte(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be in [0, 255], not {value!r}")
    return value


def _with_crc(sof: int, body: bytes) -> bytes:
    return bytes([sof]) + body + p.crc16(body).to_bytes(p.CRC_BYTES, "big")


def encode_request(opcode: int, seq: int, payload: bytes = b"") -> bytes:
    """One request frame: start byte, opcode, seq, length, payload, CRC."""
    _check_byte("opcode", opcode)
    _check_byte("seq", seq)
    if len(payload) > p.MAX_LENGTH:
        raise ValueError(f"payload must be at most {p.MAX_LENGTH} bytes, not {len(payload)}")
    return _with_crc(p.SOF_REQUEST, bytes([opcode, seq, len(payload)]) + payload)


def encode_reply(opcode: int, seq: int, status: int, payload: bytes = b"") -> bytes:
    """One reply frame: start byte, opcode, seq, status, length, payload, CRC."""
    if len(payload) > p.MAX_LENGTH:
        raise ValueError(f"payload must be at most {p.MAX_LENGTH} bytes, not {len(payload)}")
    return _with_crc(p.SOF_REPLY, bytes([opcode, seq, status, len(payload)]) + payload)


class Reply(NamedTuple):
    """A decoded reply frame."""

    opcode: int
    seq: int
    status: int
    payload: bytes


def decode_reply(frame: bytes) -> Reply:
    """Decode one whole reply frame; :class:`CrcError` on a CRC mismatch."""
    if len(frame) < p.REPLY_HEADER_BYTES + p.CRC_BYTES or frame[0] != p.SOF_REPLY:
        raise ValueError(f"not a reply frame: {frame.hex()}")
    length = frame[4]
    if len(frame) != p.REPLY_HEADER_BYTES + length + p.CRC_BYTES:
        raise ValueError(f"reply frame of length {length} has {len(frame)} bytes: {frame.hex()}")
    if p.crc16(frame[1:]) != 0:
        raise CrcError(f"reply CRC mismatch in {frame.hex()}")
    return Reply(frame[1], frame[2], frame[3], bytes(frame[5:-p.CRC_BYTES]))


def read_reply(read: Callable[[int], bytes], deadline: float) -> Reply:
    """Read one reply with ``read(n)`` (returns at most ``n`` bytes, b"" on its own timeout).

    Bytes before a reply start byte are skipped. :class:`LinkTimeoutError` when
    ``time.monotonic()`` passes ``deadline`` first; :class:`CrcError` on a bad CRC.
    """

    def take(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if time.monotonic() > deadline:
                raise LinkTimeoutError(
                    f"timed out waiting for a reply ({len(buf)} of {n} bytes of a frame part)")
            buf += read(n - len(buf))
        return bytes(buf)

    while take(1)[0] != p.SOF_REPLY:
        pass
    header = take(p.REPLY_HEADER_BYTES - 1)
    rest = take(header[3] + p.CRC_BYTES)
    return decode_reply(bytes([p.SOF_REPLY]) + header + rest)
