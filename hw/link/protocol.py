# SPDX-License-Identifier: Apache-2.0
"""The host link's wire protocol, defined once (pure Python: no Amaranth, no NumPy).

The gateware frame engine (:mod:`hw.link.frame`), the host driver (:mod:`sw.driver`) and the
byte-level model of the engine (:mod:`sw.driver.model`) all import this module, so a byte value,
an error code or a limit cannot drift between the two ends. ``docs/protocol.md`` is the prose
version.

Frames (every multi-byte integer in a payload is little-endian; the CRC is big-endian)::

    request   SOF_REQUEST  opcode  seq  length  payload[length]  crc_hi crc_lo
    reply     SOF_REPLY    opcode  seq  status  length  payload[length]  crc_hi crc_lo

The CRC is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection, no final
XOR) over every byte after the start byte and before the CRC, as computed by
``binascii.crc_hqx(data, 0xFFFF)``. Sent most significant byte first, the CRC makes the
CRC of the whole frame after the start byte zero, which is what the gateware checks.

Words are 32 bits, little-endian; addresses are byte addresses and must be multiples of 4
(the accelerator's memories and CSRs are word-wide, so byte-granular access would only add
read-modify-write paths and nothing a driver needs).
"""

from __future__ import annotations

import binascii
import enum
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = [
    "CRC_INIT", "ERROR_TEXT", "HEADER_BYTES", "IDENTIFY_BYTES", "MAGIC", "MAX_LENGTH",
    "MAX_PAYLOAD", "MAX_WORDS", "NAME_BYTES", "Opcode", "PERF_WORDS", "PROTOCOL_VERSION",
    "REPLY_HEADER_BYTES", "SOF_REPLY", "SOF_REQUEST", "STATUS_BUSY", "STATUS_DONE",
    "STATUS_WORDS", "Status", "TIMEOUT_BYTES", "TIMEOUT_MIN_S", "WORD_BYTES", "AddressRange",
    "check_access", "crc16", "identify_payload", "request_length_ok", "timeout_cycles",
    "uart_divisor", "check_ranges", "Identity", "parse_identify", "CRC_BYTES", "MAX_STRIDE",
    "MAX_WAIT_CYCLES", "WAIT_WORDS", "read_span", "BAUD_TOLERANCE", "check_baud",
]

#: Bumped whenever a byte on the wire changes meaning; IDENTIFY reports it.
#: 2: READ takes an optional stride; WAIT (0x08).
PROTOCOL_VERSION = 2
#: First byte of a request (host -> device) and of a reply (device -> host).
SOF_REQUEST = 0xA5
SOF_REPLY = 0x5A
#: Bytes before the payload: start byte, opcode, sequence number, length (+ status in replies).
HEADER_BYTES = 4
REPLY_HEADER_BYTES = 5
CRC_BYTES = 2
WORD_BYTES = 4
#: Largest ``length`` byte; the device buffers a whole request before acting on it.
MAX_LENGTH = 255
#: Most data words in one WRITE request or READ reply; ``MAX_PAYLOAD`` is the longest legal
#: payload (a WRITE: address + ``MAX_WORDS`` words).
MAX_WORDS = 62
MAX_PAYLOAD = WORD_BYTES * (1 + MAX_WORDS)
#: Largest stride (in words) of a strided READ: an int32 row of the activation layout spreads
#: its words ``AccelParams.rows`` apart (``docs/isa.md``, "Tensor layouts").
MAX_STRIDE = 255
#: Longest WAIT, in clock cycles (0.67 s at 25 MHz); a larger budget waits this long.
MAX_WAIT_CYCLES = (1 << 24) - 1
CRC_INIT = 0xFFFF
#: A partial request is answered with ``Status.TIMEOUT`` after this much silence: the longer of
#: ``TIMEOUT_BYTES`` byte times and ``TIMEOUT_MIN_S`` (USB serial adapters can pause a
#: host's write for a millisecond or more between packets).
TIMEOUT_BYTES = 64
TIMEOUT_MIN_S = 0.010
#: Largest relative error of the device's bit time against the host's that a board build
#: accepts: a receiver samples mid-bit, so over a 10-bit character the two clocks may drift
#: half a bit apart in all, a quarter each side, 2.5 %; 2 % leaves the host's adapter room.
BAUD_TOLERANCE = 0.02


class Opcode(enum.IntEnum):
    """Request opcodes (the reply echoes the request's opcode)."""

    IDENTIFY = 0x01   # -> identity (IDENTIFY_BYTES): magic, version, max words, digest, name
    WRITE = 0x02      # addr u32, words u32[n] (1 <= n <= MAX_WORDS) -> empty
    READ = 0x03       # addr u32, n u32 (1 <= n <= MAX_WORDS) [, stride u32 (1..MAX_STRIDE)]
                      # -> words u32[n] from addr, addr + 4 * stride, ...
    RUN = 0x04        # entry u32 -> empty; pulses the accelerator's start
    STATUS = 0x05     # -> STATUS_WORDS words: flags, the accelerator's status word
    PERF = 0x06       # -> PERF_WORDS words: run cycles, runs, frames ok, frames failed
    RESET = 0x07      # -> empty; pulses the accelerator's soft reset, clears the counters
    WAIT = 0x08       # budget u32 (cycles) -> WAIT_WORDS words: flags, status word, run cycles;
                      # answered when the run ends or after min(budget, MAX_WAIT_CYCLES) cycles


class Status(enum.IntEnum):
    """The reply's status byte: ``OK`` or why the request was refused (nothing was done)."""

    OK = 0
    BAD_CRC = 1       # the request's CRC did not match
    BAD_OPCODE = 2    # opcode not in :class:`Opcode`
    BAD_LENGTH = 3    # length does not fit the opcode, or READ's n or stride out of range
    BAD_ADDRESS = 4   # address unaligned or the range leaves the memory map (or is read-only)
    BUSY = 5          # RUN or WRITE while the accelerator runs
    TIMEOUT = 6       # silence inside a request; the partial request was dropped


#: One line per status for error messages.
ERROR_TEXT: dict[Status, str] = {
    Status.OK: "ok",
    Status.BAD_CRC: "the device received a request with a bad CRC (line noise or a baud "
                    "rate mismatch)",
    Status.BAD_OPCODE: "the device does not know this opcode (protocol version mismatch?)",
    Status.BAD_LENGTH: "the request's length does not fit its opcode (or READ's word count "
                       "or stride is out of range)",
    Status.BAD_ADDRESS: "the address is unaligned, outside the device's memory map, or "
                        "read-only",
    Status.BUSY: "the accelerator is running; wait for STATUS to clear BUSY",
    Status.TIMEOUT: "the device timed out waiting for the rest of a request",
}

#: STATUS reply, word 0: flag bits.
STATUS_BUSY = 1 << 0    # the accelerator runs (its ``busy`` or a RUN not yet seen busy)
STATUS_DONE = 1 << 1    # a RUN finished since the last RUN or RESET
STATUS_WORDS = 2        # flags, the accelerator's status word
PERF_WORDS = 4          # cycles of the last (or current) run, runs, frames ok, frames failed
WAIT_WORDS = 3          # STATUS's two words, then the run cycles (PERF word 0)

MAGIC = b"LFRM"
NAME_BYTES = 16
_IDENTIFY = struct.Struct(f"<4sHH8s{NAME_BYTES}s")
IDENTIFY_BYTES = _IDENTIFY.size


def crc16(data: bytes | bytearray | memoryview, crc: int = CRC_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (the standard library's table, not ours)."""
    return binascii.crc_hqx(data, crc)


def request_length_ok(opcode: int, length: int) -> bool:
    """Whether ``length`` payload bytes fit ``opcode`` (READ's n and stride are checked
    separately)."""
    if opcode == Opcode.WRITE:
        return WORD_BYTES * 2 <= length <= MAX_PAYLOAD and length % WORD_BYTES == 0
    if opcode == Opcode.READ:
        return length in (2 * WORD_BYTES, 3 * WORD_BYTES)
    if opcode in (Opcode.RUN, Opcode.WAIT):
        return length == WORD_BYTES
    return length == 0


class AddressRange(NamedTuple):
    """One window of the device's memory map: bytes ``[base, base + size)``."""

    base: int
    size: int
    writable: bool


def check_ranges(ranges: Iterable[object]) -> tuple[AddressRange, ...]:
    """``ranges`` as validated :class:`AddressRange` tuples (word aligned, inside 32 bits).

    Each item is a ``(base, size, writable)`` tuple or an object with those attributes (such as
    the regions of :func:`hw.isa.memory_map`).
    """
    out = []
    for i, r in enumerate(ranges):
        if all(hasattr(r, a) for a in AddressRange._fields):
            base, size, writable = r.base, r.size, r.writable
        elif isinstance(r, Sequence) and len(r) == 3:
            base, size, writable = r
        else:
            raise TypeError(f"ranges[{i}] must be (base, size, writable), not {r!r}")
        for name, v in (("base", base), ("size", size)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"ranges[{i}].{name} must be an integer, not {v!r}")
        if not isinstance(writable, bool):
            raise TypeError(f"ranges[{i}].writable must be a bool, not {writable!r}")
        if base < 0 or size <= 0 or base % WORD_BYTES or size % WORD_BYTES \
                or base + size > 1 << 32:
            raise ValueError(
                f"ranges[{i}] must be a word-aligned, non-empty window inside 32 bits, "
                f"not (0x{base:x}, 0x{size:x})")
        out.append(AddressRange(base, size, writable))
    if not out:
        raise ValueError("ranges must name at least one address window, not none")
    return tuple(out)


def read_span(n_words: int, stride: int) -> int:
    """Words from the first to the last word (both included) of a READ of ``n_words`` words
    ``stride`` words apart."""
    return (n_words - 1) * stride + 1


def check_access(ranges: Sequence[AddressRange], addr: int, n_words: int, write: bool) -> bool:
    """Whether ``n_words`` words from byte address ``addr`` lie inside one window (writable
    for a write) and ``addr`` is word aligned."""
    if addr % WORD_BYTES:
        return False
    end = addr + WORD_BYTES * n_words
    return any(r.base <= addr and end <= r.base + r.size and (r.writable or not write)
               for r in ranges)


def identify_payload(design_digest: str, name: str) -> bytes:
    """The IDENTIFY reply's payload: magic, version, ``MAX_WORDS``, the 8-byte design digest
    (``AccelParams.digest()``; its first 4 bytes, big-endian, are ``design_id``) and the
    preset name (ASCII, NUL padded to ``NAME_BYTES``)."""
    digest = bytes.fromhex(design_digest)
    if len(digest) != 8:
        raise ValueError(f"design_digest must be 16 hex digits, not {design_digest!r}")
    raw = name.encode("ascii")[:NAME_BYTES]
    return _IDENTIFY.pack(MAGIC, PROTOCOL_VERSION, MAX_WORDS, digest, raw)


class Identity(NamedTuple):
    """A decoded IDENTIFY payload."""

    version: int
    max_words: int
    digest: str
    name: str

    @property
    def design_id(self) -> int:
        return int(self.digest[:8], 16)


def parse_identify(payload: bytes) -> Identity:
    """Decode an IDENTIFY payload; ``ValueError`` if it is not one."""
    if len(payload) != IDENTIFY_BYTES:
        raise ValueError(f"an IDENTIFY payload has {IDENTIFY_BYTES} bytes, not {len(payload)}")
    magic, version, max_words, digest, raw = _IDENTIFY.unpack(payload)
    if magic != MAGIC:
        raise ValueError(f"IDENTIFY magic must be {MAGIC!r}, not {magic!r}")
    return Identity(version, max_words, digest.hex(), raw.rstrip(b"\0").decode("ascii", "replace"))


def uart_divisor(clk_hz: float, baud: int) -> int:
    """Clock cycles per UART bit: ``round(clk_hz / baud)`` (at least 4, for mid-bit sampling)."""
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(
            f"baud {baud} is too fast for a {clk_hz / 1e6:g} MHz clock: the UART needs at "
            f"least 4 clock cycles per bit, not {clk_hz / baud:.2f}")
    return divisor


def check_baud(clk_hz: float, divisor: int, baud: int, *, wanted_hz: float | None = None) -> float:
    """The relative baud error of a UART that counts ``divisor`` cycles of a ``clk_hz`` clock
    per bit; ``ValueError`` if it exceeds :data:`BAUD_TOLERANCE`.

    ``wanted_hz`` is the clock the divisor was computed for (a board's PLL may make another
    one); the message names both.
    """
    error = (clk_hz / divisor - baud) / baud
    if abs(error) > BAUD_TOLERANCE:
        moved = wanted_hz is not None and wanted_hz != clk_hz
        wanted = f"computed for {wanted_hz / 1e6:g} MHz " if moved else ""
        fix = (f"choose a clock the board's PLL makes exactly (--target-mhz {clk_hz / 1e6:g}) "
               f"or another baud" if moved else
               f"at {clk_hz / 1e6:g} MHz the divisor is {round(clk_hz / baud)}")
        raise ValueError(
            f"the UART divisor {divisor} {wanted}gives {clk_hz / divisor:.0f} baud at "
            f"{clk_hz / 1e6:g} MHz, {100 * error:+.1f} % off {baud} (at most "
            f"{100 * BAUD_TOLERANCE:g} %): {fix}")
    return error


def timeout_cycles(clk_hz: float, baud: int) -> int:
    """Clock cycles of silence after which the device drops a partial request."""
    byte_time = 10 * uart_divisor(clk_hz, baud)
    return max(TIMEOUT_BYTES * byte_time, round(TIMEOUT_MIN_S * clk_hz))
