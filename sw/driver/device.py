# SPDX-License-Identifier: Apache-2.0
""":class:`Device`: the accelerator behind a link, request by request.

Every request is one frame and waits for its one reply (stop and wait). A reply that does not
come in time, or comes with a bad CRC, or a device answer of ``BAD_CRC`` / ``TIMEOUT`` (the
request was damaged on the way) is retried up to ``retries`` times with a fresh sequence
number; replies with another sequence number (late answers to an earlier attempt) are skipped.
All requests are safe to repeat: WRITE and READ are idempotent, and a repeated RUN whose first
attempt started the accelerator is answered ``BUSY``, which a retry accepts as success.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import NamedTuple

from hw.link import protocol as p
from sw.driver.errors import (
    AccelError,
    CrcError,
    DesignMismatchError,
    DeviceError,
    DeviceResetError,
    LinkTimeoutError,
    ProtocolError,
)
from sw.driver.framing import Reply, encode_request, read_reply
from sw.driver.transport import Transport

__all__ = ["Device", "DeviceStatus", "Perf", "Waited"]

_RETRY_STATUS = (p.Status.BAD_CRC, p.Status.TIMEOUT)


class DeviceStatus(NamedTuple):
    busy: bool          # the accelerator runs
    done: bool          # a RUN finished since the last RUN or RESET
    acc_status: int     # the accelerator's status word


class Waited(NamedTuple):
    busy: bool          # the budget ran out first: the run goes on
    done: bool
    acc_status: int
    run_cycles: int     # clock cycles of the run (so far, when still busy)


class Perf(NamedTuple):
    run_cycles: int     # clock cycles of the last (or current) run
    runs: int
    frames_ok: int      # frames answered OK since RESET (this PERF included)
    frames_failed: int


class Device:
    """A lightformer device on a link (a board or a virtual board).

    Parameters
    ----------
    transport : Transport
        The open link.
    timeout : float
        Seconds to wait for one reply.
    retries : int
        Extra attempts after a timeout or a damaged frame, 0..10.
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, retries: int = 3):
        _check_options(timeout, retries)
        self.transport = transport
        self.timeout = float(timeout)
        self.retries = retries
        self._seq = 0
        self.bytes_sent = self.bytes_received = 0

    @classmethod
    def open(cls, url: str, *, baud: int = 115200, timeout: float = 1.0,
             retries: int = 3) -> Device:
        """Open ``url`` (``/dev/ttyUSB0``, ``socket://127.0.0.1:PORT``, ``loop://``)."""
        _check_options(timeout, retries)
        return cls(Transport(url, baud=baud), timeout=timeout, retries=retries)

    @property
    def url(self) -> str:
        return self.transport.url

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests -------------------------------------------------------------------------------

    def request(self, opcode: p.Opcode, payload: bytes = b"", *,
                reply_bytes: int | None = None, extra_s: float = 0.0) -> bytes:
        """Send one request, return the OK reply's payload (retrying as the module says);
        ``extra_s``: seconds the device may take on top of :attr:`timeout` (a WAIT)."""
        last: AccelError | None = None
        for attempt in range(self.retries + 1):
            self._seq = (self._seq + 1) & 0xFF
            seq = self._seq
            if attempt:
                self.transport.discard_input()
            frame = encode_request(opcode, seq, payload)
            self.transport.write(frame)
            self.bytes_sent += len(frame)
            try:
                reply = self._await(seq, time.monotonic() + self.timeout + extra_s)
            except (LinkTimeoutError, CrcError) as exc:
                last = exc
                continue
            if reply.status in _RETRY_STATUS:
                last = DeviceError(reply.status, f"{opcode.name} to {self.url}")
                continue
            if reply.status == p.Status.BUSY and attempt and opcode == p.Opcode.RUN:
                return b""          # the lost first attempt started the run
            if reply.status != p.Status.OK:
                raise DeviceError(reply.status, f"{opcode.name} to {self.url}")
            if reply.opcode != opcode or (reply_bytes is not None
                                          and len(reply.payload) != reply_bytes):
                raise ProtocolError(
                    f"{opcode.name} to {self.url}: the reply (opcode 0x{reply.opcode:02x}, "
                    f"{len(reply.payload)} bytes) does not answer it")
            return reply.payload
        assert last is not None
        raise type(last)(f"{opcode.name} to {self.url} failed after {self.retries + 1} "
                         f"attempts: {last}") if not isinstance(last, DeviceError) else last

    def _await(self, seq: int, deadline: float) -> Reply:
        while True:
            reply = read_reply(self._read, deadline)
            if reply.seq == seq:
                return reply

    def _read(self, n: int) -> bytes:
        data = self.transport.read(n)
        self.bytes_received += len(data)
        return data

    def identify(self) -> p.Identity:
        """The device's protocol version, design digest and preset name."""
        ident = p.parse_identify(self.request(p.Opcode.IDENTIFY, reply_bytes=p.IDENTIFY_BYTES))
        if ident.version != p.PROTOCOL_VERSION:
            raise ProtocolError(
                f"the device at {self.url} speaks link protocol {ident.version}, this driver "
                f"{p.PROTOCOL_VERSION}; update the driver or the bitstream")
        return ident

    def check_design(self, design_id: int, preset: str | None = None) -> p.Identity:
        """:meth:`identify`, raising :class:`DesignMismatchError` unless the device runs
        ``design_id`` (``AccelParams.design_id`` of the program's preset)."""
        ident = self.identify()
        if ident.design_id != design_id:
            raise DesignMismatchError(self.url, ident.design_id, ident.name, design_id, preset)
        return ident

    def read(self, addr: int, n_words: int, stride: int = 1) -> list[int]:
        """``n_words`` 32-bit words from byte address ``addr``, ``stride`` words apart
        (1..``MAX_STRIDE``; chunked to ``MAX_WORDS`` per READ)."""
        _check_addr(addr)
        if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 0:
            raise ValueError(f"n_words must be a non-negative integer, not {n_words!r}")
        if isinstance(stride, bool) or not isinstance(stride, int) \
                or not 1 <= stride <= p.MAX_STRIDE:
            raise ValueError(f"stride must be an integer in [1, {p.MAX_STRIDE}], not {stride!r}")
        out: list[int] = []
        while len(out) < n_words:
            n = min(p.MAX_WORDS, n_words - len(out))
            at = addr + 4 * stride * len(out)
            # A plain READ when the stride is 1: 4 bytes less, and what protocol 1 had.
            args = struct.pack("<II", at, n) if stride == 1 else struct.pack("<3I", at, n, stride)
            payload = self.request(p.Opcode.READ, args, reply_bytes=4 * n)
            out += struct.unpack(f"<{n}I", payload)
        return out

    def write(self, addr: int, words: Sequence[int]) -> None:
        """Write 32-bit ``words`` from byte address ``addr`` (chunked to ``MAX_WORDS``)."""
        _check_addr(addr)
        words = [int(w) for w in words]
        bad = [w for w in words if not 0 <= w <= 0xFFFFFFFF]
        if bad:
            raise ValueError(f"words must be unsigned 32-bit values, not {bad[0]!r}")
        for i in range(0, len(words), p.MAX_WORDS):
            chunk = words[i:i + p.MAX_WORDS]
            payload = struct.pack(f"<I{len(chunk)}I", addr + 4 * i, *chunk)
            self.request(p.Opcode.WRITE, payload, reply_bytes=0)

    def read_bytes(self, addr: int, size: int) -> bytes:
        """``size`` bytes from any byte address (whole words are read around them)."""
        start = addr - addr % p.WORD_BYTES
        n = -(-(addr + size - start) // p.WORD_BYTES)
        data = struct.pack(f"<{n}I", *self.read(start, n))
        return data[addr - start:addr - start + size]

    def write_bytes(self, addr: int, data: bytes) -> None:
        """Write ``data`` at any byte address: a partly covered first or last word is read
        first, so the bytes around ``data`` keep their values."""
        if not data:
            return
        start = addr - addr % p.WORD_BYTES
        end = addr + len(data)
        stop = -(-end // p.WORD_BYTES) * p.WORD_BYTES
        buf = bytearray(stop - start)
        if start != addr:
            buf[:p.WORD_BYTES] = self.read_bytes(start, p.WORD_BYTES)
        if stop != end and stop - p.WORD_BYTES >= start + (p.WORD_BYTES if start != addr else 0):
            buf[-p.WORD_BYTES:] = self.read_bytes(stop - p.WORD_BYTES, p.WORD_BYTES)
        buf[addr - start:end - start] = data
        self.write(start, struct.unpack(f"<{len(buf) // 4}I", buf))

    def run(self, entry: int = 0) -> None:
        """Start the accelerator's program at ``entry``."""
        if isinstance(entry, bool) or not isinstance(entry, int) or not 0 <= entry < 1 << 32:
            raise ValueError(f"entry must be an unsigned 32-bit integer, not {entry!r}")
        self.request(p.Opcode.RUN, struct.pack("<I", entry), reply_bytes=0)

    def status(self) -> DeviceStatus:
        flags, acc = struct.unpack("<2I", self.request(p.Opcode.STATUS, reply_bytes=8))
        return DeviceStatus(bool(flags & p.STATUS_BUSY), bool(flags & p.STATUS_DONE), acc)

    def perf(self) -> Perf:
        return Perf(*struct.unpack("<4I", self.request(p.Opcode.PERF, reply_bytes=16)))

    def reset(self) -> None:
        """Pulse the accelerator's soft reset and clear the link's counters."""
        self.request(p.Opcode.RESET, reply_bytes=0)

    def wait_once(self, budget: int) -> Waited:
        """One WAIT: the device answers when the run ends or after ``budget`` clock cycles
        (at most ``MAX_WAIT_CYCLES``), whichever comes first."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise ValueError(f"budget must be a non-negative integer, not {budget!r}")
        budget = min(budget, p.MAX_WAIT_CYCLES)
        rate = self._cycles_per_s
        extra = budget / rate if rate else 0.0
        t0 = time.monotonic()
        flags, acc, cycles = struct.unpack(
            "<3I", self.request(p.Opcode.WAIT, struct.pack("<I", budget),
                                reply_bytes=4 * p.WAIT_WORDS, extra_s=extra))
        spent = time.monotonic() - t0
        if flags & p.STATUS_BUSY and spent > 0.01:
            # The device spent the whole budget: its clock rate (a board's, or a simulator's
            # far slower one) bounds the next budgets to well inside the reply timeout.
            self._cycles_per_s = budget / spent
        return Waited(bool(flags & p.STATUS_BUSY), bool(flags & p.STATUS_DONE), acc, cycles)

    _cycles_per_s: float | None = None

    def wait(self, timeout: float = 10.0, budget: int = 1 << 14) -> Waited:
        """WAIT until the run started by :meth:`run` ends: one request when it ends within
        ``budget`` cycles, else further ones with doubling budgets, each kept to about half
        the reply timeout at the device's measured clock rate. No polling: the device answers
        as soon as the run ends.

        :class:`LinkTimeoutError` after ``timeout`` seconds; :class:`DeviceResetError` when the
        accelerator is idle without a finished run (it was reset during the run).
        """
        deadline = time.monotonic() + timeout
        while True:
            rate = self._cycles_per_s
            if rate:
                budget = min(budget, max(1, int(rate * self.timeout / 2)))
            st = self.wait_once(budget)
            if not st.busy:
                if not st.done:
                    raise DeviceResetError(
                        f"the accelerator at {self.url} is idle but reports no finished run: "
                        f"it was reset or power-cycled during the run; load the program and "
                        f"its inputs again")
                return st
            if time.monotonic() > deadline:
                raise LinkTimeoutError(f"the accelerator at {self.url} is still busy after "
                                       f"{timeout:g} s (status word 0x{st.acc_status:08x})")
            if not self._cycles_per_s:
                time.sleep(0.001)       # a device without a clock (a model) answers at once
            budget = min(2 * budget, p.MAX_WAIT_CYCLES)


def _check_options(timeout: object, retries: object) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an integer, not {retries!r}")
    if not 0 <= retries <= 10:
        raise ValueError(f"retries must be an integer in [0, 10], not {retries!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
    if not 0 < timeout < 3600:
        raise ValueError(f"timeout must be in (0, 3600) seconds, not {timeout!r}")


def _check_addr(addr: object) -> None:
    if isinstance(addr, bool) or not isinstance(addr, int):
        raise TypeError(f"addr must be an integer, not {addr!r}")
    if not 0 <= addr < 1 << 32 or addr % p.WORD_BYTES:
        raise ValueError(f"addr must be a word-aligned byte address (a multiple of 4), "
                         f"not 0x{addr:x}")
