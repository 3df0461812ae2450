# SPDX-License-Identifier: Apache-2.0
"""Link fuzzing: random and mutated bytes interleaved with valid frames, against any device URL.

:func:`fuzz` sends bursts of bit-flipped, truncated, wrong-length, bad-CRC and
unknown-opcode frames, frames to addresses outside the memory map, RUN followed at once by a
STATUS, and plain garbage, back to back (a truncated frame swallows what follows as its
payload: more garbage), each burst followed by a silence longer than the device's receive
timeout so that the engine is idle again, then a flush of zero bytes (one maximal frame's worth:
it completes a frame the engine still holds -- a host stalled longer than the silence -- and an
idle engine ignores it; such replies count as ``late_replies``); between the bursts it sends
valid frames (IDENTIFY, STATUS, WAIT, READ -- plain and strided -- and WRITE inside
``window``) and requires each to be answered OK. A shadow copy of ``window`` follows the valid
writes; at the end the window is read back and every word that differs is a memory
corruption. It never raises on a device's misbehaviour: it counts it.
"""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hw.link import protocol as p
from sw.driver.device import Device
from sw.driver.errors import AccelError, CrcError
from sw.driver.framing import encode_request, read_reply

__all__ = ["fuzz"]

#: Zero bytes that complete any partial request (opcode, seq, length, 255 bytes, CRC).
_FLUSH = bytes(3 + 255 + 2)
_BAD_KINDS = ("bit_flip", "truncated", "wrong_length", "bad_crc", "bad_opcode", "bad_address",
              "bad_stride", "garbage", "during_run")
#: Opcodes no protocol version has used.
_UNKNOWN_OPCODES = (0x00, 0x09, 0x42, 0xFF)


class _Fuzzer:
    def __init__(self, dev: Device, window: tuple[int, int], outside: int, seed: int,
                 silence_s: float):
        self.dev = dev
        self.base, self.size = window
        self.outside = outside
        self.rng = random.Random(seed)
        self.silence_s = silence_s
        self.seq = 0
        self.shadow: list[int] = []
        self.stats: dict[str, Any] = {"bytes": 0, "valid_frames": 0, "valid_answered_ok": 0,
                                      "hangs": 0, "unexpected_ok": 0, "late_replies": 0,
                                      "flush_bytes": 0}
        self.errors: Counter[str] = Counter()
        self.mutations: Counter[str] = Counter()

    def send(self, data: bytes) -> None:
        self.dev.transport.write(data)
        self.stats["bytes"] += len(data)

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFF
        return self.seq

    def valid_frame(self) -> tuple[int, bytes, list[int] | None]:
        """(opcode, frame, the words a WRITE stores at the window offset it names)."""
        rng, seq = self.rng, self.next_seq()
        kind = rng.choice(["IDENTIFY", "STATUS", "WAIT", "READ", "STRIDED", "WRITE", "WRITE"])
        n_max = min(p.MAX_WORDS, self.size // 4)
        n = rng.randint(1, n_max)
        index = rng.randrange(self.size // 4 - n + 1)
        addr = self.base + 4 * index
        if kind == "WRITE":
            words = [rng.getrandbits(32) for _ in range(n)]
            payload = struct.pack(f"<{n + 1}I", addr, *words)
            return p.Opcode.WRITE, encode_request(p.Opcode.WRITE, seq, payload), [index] + words
        if kind == "READ":
            return p.Opcode.READ, encode_request(p.Opcode.READ, seq,
                                                 struct.pack("<2I", addr, n)), None
        if kind == "STRIDED":
            stride = rng.choice([2, 4, 16, p.MAX_STRIDE])
            n = rng.randint(1, min(n_max, (self.size // 4 - 1) // stride + 1))
            span = p.read_span(n, stride)
            addr = self.base + 4 * rng.randrange(self.size // 4 - span + 1)
            return p.Opcode.READ, encode_request(p.Opcode.READ, seq,
                                                 struct.pack("<3I", addr, n, stride)), None
        if kind == "WAIT":
            budget = rng.choice([0, 1, 100, 10_000])
            return p.Opcode.WAIT, encode_request(p.Opcode.WAIT, seq,
                                                 struct.pack("<I", budget)), None
        op = p.Opcode[kind]
        return op, encode_request(op, seq), None

    def bad_bytes(self) -> tuple[str, bytes]:
        rng = self.rng
        kind = rng.choice(_BAD_KINDS)
        _, frame, _ = self.valid_frame()
        frame = bytearray(frame)
        if kind == "bit_flip":
            i = rng.randrange(1, len(frame))
            frame[i] ^= 1 << rng.randrange(8)
        elif kind == "truncated":
            frame = frame[:rng.randrange(1, len(frame))]
        elif kind == "wrong_length":
            frame[3] = (frame[3] + rng.choice([-4, -1, 1, 4])) & 0xFF
        elif kind == "bad_crc":
            frame[-1] ^= 0xFF
        elif kind == "bad_opcode":
            frame = bytearray(encode_request(rng.choice(_UNKNOWN_OPCODES), self.next_seq()))
        elif kind == "bad_address":
            addr = rng.choice([self.outside, self.base + 2, 0xFFFFFFFC])
            frame = bytearray(encode_request(p.Opcode.WRITE, self.next_seq(),
                                             struct.pack("<2I", addr, 0xDEAD)))
        elif kind == "bad_stride":
            # A stride out of 1..MAX_STRIDE, or one whose second word is past the map.
            stride = rng.choice([0, p.MAX_STRIDE + 1, 1 << 31, 2])
            frame = bytearray(encode_request(p.Opcode.READ, self.next_seq(), struct.pack(
                "<3I", self.outside - 4 if stride == 2 else self.base, 2, stride)))
        elif kind == "during_run":
            # RUN, then at once a request without side effects (answered OK or BUSY).
            frame = bytearray(encode_request(p.Opcode.RUN, self.next_seq(), struct.pack("<I", 0))
                              + encode_request(p.Opcode.STATUS, self.next_seq()))
        else:
            frame = bytearray(rng.randbytes(rng.randrange(1, 512)))
        self.mutations[kind] += 1
        return kind, bytes(frame)

    def drain(self, ok_expected: bool) -> None:
        """Count the replies to bad bytes until none has come for ``silence_s`` (a loaded
        host may deliver them late: each one restarts the wait)."""
        deadline = time.monotonic() + self.silence_s
        while time.monotonic() < deadline:
            try:
                reply = read_reply(self.dev.transport.read, deadline)
            except CrcError:
                continue                    # a stop mid-reply: skip to the next start byte
            except AccelError:
                return
            deadline = time.monotonic() + self.silence_s
            if reply.status == p.Status.OK:
                self.stats["unexpected_ok"] += not ok_expected
            else:
                self.errors[_status_name(reply.status)] += 1

    def valid(self, timeout: float) -> None:
        opcode, frame, write = self.valid_frame()
        seq = frame[2]
        self.stats["valid_frames"] += 1
        self.send(frame)
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = read_reply(self.dev.transport.read, deadline)
            except CrcError:
                continue                    # the tail of a reply to bad bytes: resynchronise
            except AccelError:
                self.stats["hangs"] += 1
                return
            if reply.seq == seq and reply.opcode == opcode:
                break
            if reply.status != p.Status.OK:                     # a late answer to bad bytes
                self.errors[_status_name(reply.status)] += 1
            self.stats["late_replies"] += 1
        if reply.status != p.Status.OK:
            self.errors[_status_name(reply.status)] += 1
            return
        self.stats["valid_answered_ok"] += 1
        if write is not None:
            index, *words = write
            self.shadow[index:index + len(words)] = words


def _status_name(code: int) -> str:
    try:
        return p.Status(code).name
    except ValueError:
        return f"status_{code}"


def fuzz(dev: Device, *, window: tuple[int, int], outside: int, n_bytes: int, seed: int = 0,
         silence_s: float = 0.05, timeout: float = 1.0, burst: int = 8,
         progress: Any = None) -> dict[str, Any]:
    """Fuzz the device behind ``dev`` with about ``n_bytes`` bytes (module docstring).

    ``window`` = (base, size): a writable, word-aligned part of the memory map the valid WRITEs
    use (its old contents are overwritten); ``outside``: a byte address outside every window of
    the map; the accelerator must never write ``window`` itself (a RUN may start whatever
    program is loaded): the weight scratchpad is such a window. ``silence_s`` must exceed the
    device's receive timeout with a margin (else a bad frame still open swallows the next valid
    one); ``burst``: at most this many bad items per silence. Returns the report: bytes,
    valid_frames, valid_answered_ok, error_replies (by status name), memory_corruptions, hangs,
    unexpected_ok (OK replies to bad bytes: a mutation that happened to be valid), mutations
    (bad items sent, by kind), late_replies (replies to bad bytes after the silence), flush_bytes
    (not counted in bytes).
    """
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be a positive integer, not {burst!r}")
    base, size = window
    if base % 4 or size % 4 or size <= 0:
        raise ValueError(f"window must be a word-aligned (base, size), not {window!r}")
    f = _Fuzzer(dev, (base, size), outside, seed, silence_s)
    f.shadow = dev.read(base, size // 4)
    saved = dev.transport.read_timeout
    dev.transport.read_timeout = min(saved, silence_s / 4)   # drain() ends on time
    try:
        while f.stats["bytes"] < n_bytes:
            if f.rng.random() < 0.5:
                f.valid(timeout)
            else:
                kinds = []
                for _ in range(f.rng.randint(1, burst)):
                    kind, data = f.bad_bytes()
                    f.send(data)
                    kinds.append(kind)
                f.drain("during_run" in kinds)
                f.dev.transport.write(_FLUSH)
                f.stats["flush_bytes"] += len(_FLUSH)
            if progress is not None:
                progress(f.stats["bytes"])
    finally:
        dev.transport.read_timeout = saved
    dev.transport.discard_input()
    final = dev.read(base, size // 4)
    report = dict(f.stats)
    report["error_replies"] = dict(sorted(f.errors.items()))
    report["mutations"] = dict(sorted(f.mutations.items()))
    report["memory_corruptions"] = sum(a != b for a, b in zip(final, f.shadow))
    return report


def outside_address(ranges: Sequence[object]) -> int:
    """A word-aligned byte address outside every window of ``ranges``."""
    rs = p.check_ranges(ranges)
    end = max(r.base + r.size for r in rs)
    return end if end < 1 << 32 else next(a for a in range(0, 1 << 32, 4)
                                           if not p.check_access(rs, a, 1, False))
