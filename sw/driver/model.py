# SPDX-License-Identifier: Apache-2.0
"""A byte-level model of the device's frame engine and memory, and a TCP server for it.

:class:`FrameEngineModel` answers request bytes exactly as the gateware
(:class:`hw.link.frame.FrameEngine`) does -- the same replies, byte for byte, for valid,
corrupted, truncated and garbage input (a differential test feeds both the same bytes).
:class:`LinkServer` serves a model on a loopback TCP port, so the driver's tests run against
``socket://127.0.0.1:PORT`` without Verilator, with faults injected on demand.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Sequence

from hw.link import protocol as p
from sw.driver.framing import encode_reply

__all__ = ["Faults", "FrameEngineModel", "LinkServer"]

_RX_STATES = ("OPCODE", "SEQ", "LENGTH", "PAYLOAD", "CRC_HI", "CRC_LO")


class FrameEngineModel:
    """The frame engine's behaviour at byte level (``docs/protocol.md``).

    Parameters
    ----------
    identity : bytes
        The IDENTIFY payload (:func:`hw.link.protocol.identify_payload`).
    ranges : sequence of (base, size, writable)
        The memory map (byte addresses) that READ and WRITE may touch.
    memory : dict of int to int, optional
        Initial word contents by *word* address; other words read as 0.
    on_run : callable, optional
        ``on_run(entry, memory) -> cycles``: what a RUN does (default: nothing, 0 cycles).
    run_csrs : (int, int, int), optional
        ``(entry_addr, control_addr, start_value)``: RUN first writes its entry and then
        ``start_value`` to these byte addresses (as the gateware's ``run_csrs``).

    Attributes
    ----------
    busy : bool
        The accelerator's ``busy`` input. ``on_run`` may set it to model a long run; clearing
        it then ends the run (STATUS reports DONE).
    acc_status : int
        The accelerator's status word (STATUS word 1).

    The model has no clock: a WAIT is answered at once, with what the gateware answers when
    the run has ended or the budget is spent (``busy`` only changes between requests here).
    """

    def __init__(self, identity: bytes, ranges: Iterable[Sequence[object]], *,
                 memory: dict[int, int] | None = None,
                 on_run: Callable[[int, dict[int, int]], int] | None = None,
                 run_csrs: tuple[int, int, int] | None = None):
        if len(identity) != p.IDENTIFY_BYTES:
            raise ValueError(f"identity must be {p.IDENTIFY_BYTES} bytes, not {len(identity)}")
        self.identity = bytes(identity)
        self.ranges = p.check_ranges(ranges)
        self._initial = dict(memory or {})
        self.memory: dict[int, int] = dict(self._initial)
        self.on_run = on_run
        self.run_csrs = run_csrs
        self._busy = self._running = False
        self.acc_status = 0
        self._clear_counters()
        self._state = "IDLE"
        self._frame = bytearray()

    @property
    def busy(self) -> bool:
        return self._busy

    @busy.setter
    def busy(self, value: bool) -> None:
        if self._busy and not value and self._running:
            self.done, self._running = True, False
        self._busy = bool(value)

    def power_cycle(self) -> None:
        """A board reset: memory back to its initial contents, counters, run and receiver
        state cleared."""
        self.memory = dict(self._initial)
        self._busy = False
        self._clear_counters()
        self._state = "IDLE"

    def _clear_counters(self) -> None:
        self.done = self._running = False
        self.run_cycles = self.runs = self.frames_ok = self.frames_failed = 0

    # -- input ----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> bytes:
        """Consume request bytes; return the reply bytes they complete."""
        out = bytearray()
        for byte in data:
            out += self._byte(byte)
        return bytes(out)

    def silence(self) -> bytes:
        """The receive timeout expired: a partial request gets a TIMEOUT reply."""
        if self._state == "IDLE":
            return b""
        opcode, seq = (list(self._frame[:2]) + [0, 0])[:2]
        self._state = "IDLE"
        return self._reply(opcode, seq, p.Status.TIMEOUT)

    def _byte(self, byte: int) -> bytes:
        if self._state == "IDLE":
            if byte == p.SOF_REQUEST:
                self._frame = bytearray()
                self._state = "OPCODE"
            return b""
        self._frame.append(byte)
        if self._state == "LENGTH":
            self._state = "PAYLOAD" if byte else "CRC_HI"
        elif self._state == "PAYLOAD":
            if len(self._frame) == 3 + self._frame[2]:
                self._state = "CRC_HI"
        elif self._state == "CRC_LO":
            self._state = "IDLE"
            return self._execute(bytes(self._frame))
        else:
            self._state = _RX_STATES[_RX_STATES.index(self._state) + 1]
        return b""

    # -- execution ------------------------------------------------------------------------------

    def _check(self, frame: bytes) -> p.Status:
        opcode, length, payload = frame[0], frame[2], frame[3:-2]
        if p.crc16(frame) != 0:
            return p.Status.BAD_CRC
        if opcode not in p.Opcode.__members__.values():
            return p.Status.BAD_OPCODE
        if not p.request_length_ok(opcode, length):
            return p.Status.BAD_LENGTH
        if opcode in (p.Opcode.READ, p.Opcode.WRITE):
            addr = int.from_bytes(payload[:4], "little")
            if opcode == p.Opcode.READ:
                n = int.from_bytes(payload[4:8], "little")
                stride = int.from_bytes(payload[8:12], "little") if length == 12 else 1
                if not 1 <= n <= p.MAX_WORDS or not 1 <= stride <= p.MAX_STRIDE:
                    return p.Status.BAD_LENGTH
                n = p.read_span(n, stride)
            else:
                n = length // 4 - 1
            if not p.check_access(self.ranges, addr, n, opcode == p.Opcode.WRITE):
                return p.Status.BAD_ADDRESS
        if opcode in (p.Opcode.RUN, p.Opcode.WRITE) and self.busy:
            return p.Status.BUSY
        return p.Status.OK

    def _execute(self, frame: bytes) -> bytes:
        opcode, seq, payload = frame[0], frame[1], frame[3:-2]
        status = self._check(frame)
        if status != p.Status.OK:
            return self._reply(opcode, seq, status)
        words = struct.unpack(f"<{len(payload) // 4}I", payload)
        if opcode == p.Opcode.WRITE:
            for i, word in enumerate(words[1:]):
                self.memory[words[0] // 4 + i] = word
        elif opcode == p.Opcode.RUN:
            if self.run_csrs is not None:
                entry_addr, control_addr, start_value = self.run_csrs
                self.memory[entry_addr // 4] = words[0]
                self.memory[control_addr // 4] = start_value
            self.runs += 1
            self.done, self._running = False, True
            self.run_cycles = self.on_run(words[0], self.memory) if self.on_run else 0
            if not self._busy:
                self.done, self._running = True, False
        elif opcode == p.Opcode.RESET:
            self._clear_counters()
        return self._reply(opcode, seq, p.Status.OK, words)

    def _reply(self, opcode: int, seq: int, status: p.Status,
               args: Sequence[int] = ()) -> bytes:
        # The counters count this frame too: a PERF reply includes itself.
        if status == p.Status.OK:
            self.frames_ok += 1
        else:
            self.frames_failed += 1
            return encode_reply(opcode, seq, status)
        if opcode == p.Opcode.IDENTIFY:
            payload = self.identity
        elif opcode == p.Opcode.READ:
            stride = args[2] if len(args) > 2 else 1
            payload = _words([self.memory.get(args[0] // 4 + stride * i, 0)
                              for i in range(args[1])])
        elif opcode in (p.Opcode.STATUS, p.Opcode.WAIT):
            flags = (p.STATUS_BUSY if self.busy else 0) | (p.STATUS_DONE if self.done else 0)
            payload = _words([flags, self.acc_status]
                             + ([self.run_cycles] if opcode == p.Opcode.WAIT else []))
        elif opcode == p.Opcode.PERF:
            payload = _words([self.run_cycles, self.runs, self.frames_ok, self.frames_failed])
        else:
            payload = b""
        return encode_reply(opcode, seq, status, payload)


def _words(values: Sequence[int]) -> bytes:
    return struct.pack(f"<{len(values)}I", *(v & 0xFFFFFFFF for v in values))


@dataclasses.dataclass
class Faults:
    """Faults a :class:`LinkServer` injects, each for the next ``n`` replies."""

    drop_replies: int = 0       # process the request, send nothing back
    corrupt_replies: int = 0    # flip one bit of the reply's last byte (its CRC)
    close_after: int = -1       # answer this many more requests, then close (-1: never)
    mute: bool = False          # swallow every byte, answer nothing


class LinkServer:
    """Serve a :class:`FrameEngineModel` on ``127.0.0.1`` (one client at a time).

    ``silence_s`` of no input inside a request triggers the model's receive timeout.
    Use as a context manager; :attr:`url` is the ``socket://`` URL for the driver.
    """

    def __init__(self, model: FrameEngineModel, *, port: int = 0, silence_s: float = 0.05):
        self.model = model
        self.faults = Faults()
        self.silence_s = silence_s
        self._listener = socket.create_server(("127.0.0.1", port))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="LinkServer", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def __enter__(self) -> LinkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(self.silence_s)
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
                if not data:
                    return
            except TimeoutError:
                data = None
            with self._lock:
                if self.faults.mute:
                    continue
                reply = self.model.feed(data) if data is not None else self.model.silence()
                if reply and not self._send(conn, reply):
                    return

    def _send(self, conn: socket.socket, reply: bytes) -> bool:
        """Send ``reply`` with the injected faults; ``False`` once the connection is closed."""
        f = self.faults
        if f.close_after == 0:
            f.close_after = -1
            return False                    # close instead of answering
        if f.close_after > 0:
            f.close_after -= 1
        if f.drop_replies > 0:
            f.drop_replies -= 1
        elif f.corrupt_replies > 0:
            f.corrupt_replies -= 1
            conn.sendall(reply[:-1] + bytes([reply[-1] ^ 0x01]))
        else:
            conn.sendall(reply)
        return True
