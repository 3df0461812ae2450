# SPDX-License-Identifier: Apache-2.0
"""cocotb 2.x drivers for ``amaranth.lib.stream`` ports, plus payload packing.

An Amaranth stream port ``i_stream`` becomes the Verilog ports ``i_stream__payload``,
``i_stream__valid`` and ``i_stream__ready``. :class:`StreamSource` drives such a port,
:class:`StreamSink` consumes one. Both follow the Amaranth stream rules
(``amaranth:docs/stdlib/stream.rst``): a transfer happens on a rising edge where ``valid`` and
``ready`` are both high; a source never drops ``valid`` before its transfer; idle cycles are only
inserted *between* transfers; a sink may toggle ``ready`` freely.

Timing model (checked on Verilator 5.048 + cocotb 2.1, see ``docs/simulation.md``): at a
``RisingEdge`` callback every signal still holds its pre-edge value, so reading ``valid`` /
``ready`` / ``payload`` right after ``await RisingEdge(clk)`` observes the handshake of that edge,
and values written then take effect for the next cycle. Drivers are plain per-edge step
functions; an :class:`EdgeLoop` awaits the edge once per cycle and steps all drivers of that
clock, which keeps the Python cost per cycle (the simulation speed limit here) low.

Payloads are Python ints on the wire. :class:`Codec` converts them from/to NumPy arrays and dicts
following a layout *description* (a JSON-able tree, see :func:`describe`) made from the
component's ``data.StructLayout`` / ``data.ArrayLayout`` at build time, so no bench hand-codes
bit offsets.
"""

from __future__ import annotations

import collections
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "Codec", "EdgeLoop", "StreamSink", "StreamSource", "backpressure_generator", "describe",
    "idle_generator", "pack_fields", "pause_generator", "start_clock_and_drivers",
    "stream_ports", "unpack_fields", "VARIANTS",
]

# -- layouts -------------------------------------------------------------------------------------


def describe(layout: Any) -> dict[str, Any]:
    """Amaranth shape / ``data`` layout -> JSON-able description.

    ``{"kind": "int", "width": w, "signed": s}``, ``{"kind": "array", "elem": d, "length": n}``
    or ``{"kind": "struct", "fields": [[name, offset, d], ...]}`` (offsets in bits, LSB first).
    """
    from amaranth.hdl import Shape
    from amaranth.lib import data

    if isinstance(layout, dict) and "kind" in layout:
        return layout
    if isinstance(layout, data.ArrayLayout):
        return {"kind": "array", "elem": describe(layout.elem_shape), "length": layout.length}
    if isinstance(layout, data.StructLayout):
        return {"kind": "struct",
                "fields": [[name, f.offset, describe(f.shape)] for name, f in layout]}
    if isinstance(layout, data.Layout):
        raise TypeError(f"layout must be a StructLayout, ArrayLayout or plain shape, "
                        f"not {layout!r}")
    shape = Shape.cast(layout)
    return {"kind": "int", "width": shape.width, "signed": shape.signed}


def stream_ports(component: Any) -> dict[str, dict[str, Any]]:
    """``{port: payload description}`` for every stream member of a component's signature."""
    from amaranth.lib import stream

    ports = {}
    for name, member in component.signature.members.items():
        if member.is_signature and isinstance(member.signature, stream.Signature):
            ports[name] = describe(member.signature.members["payload"].shape)
    return ports


def _width(desc: Mapping[str, Any]) -> int:
    kind = desc["kind"]
    if kind == "int":
        return int(desc["width"])
    if kind == "array":
        return _width(desc["elem"]) * int(desc["length"])
    if kind == "struct":
        return max((off + _width(d) for _, off, d in desc["fields"]), default=0)
    raise ValueError(f"layout kind must be 'int', 'array' or 'struct', not {kind!r}")


_NP_INT = {(8, True): np.int8, (8, False): np.uint8, (16, True): np.int16,
           (16, False): np.uint16, (32, True): np.int32, (32, False): np.uint32,
           (64, True): np.int64, (64, False): np.uint64}


class Codec:
    """Packs/unpacks one payload layout (a :func:`describe` tree or an Amaranth layout).

    ``pack`` accepts an int (for int fields), a sequence / NumPy array (arrays) or a mapping
    (structs; missing fields are 0). Values must fit the field (signed fields take negative
    numbers). ``unpack`` returns an int, an int64 NumPy array or a dict of those.
    """

    def __init__(self, layout: Any) -> None:
        self.desc = describe(layout)
        self.width = _width(self.desc)

    def pack(self, value: Any) -> int:
        return _pack(self.desc, value, "payload")

    def pack_many(self, columns: Mapping[str, Any]) -> list[int]:
        """Pack ``n`` struct payloads at once: ``columns[field]`` is ``(n,)`` for an int field
        or ``(n, length)`` for an array field (missing fields are 0). Checks ranges like
        :meth:`pack`; the fast path for byte-sized elements makes a 256-deep tile ~0.2 ms."""
        if self.desc["kind"] != "struct":
            raise TypeError(f"pack_many needs a struct layout, not {self.desc['kind']!r}")
        fields = {name: (off, d) for name, off, d in self.desc["fields"]}
        unknown = set(columns) - set(fields)
        if unknown:
            raise ValueError(f"payload has no field(s) {sorted(unknown)}; "
                             f"fields: {sorted(fields)}")
        n = None
        raws: list[int] = []
        for name, value in columns.items():
            off, d = fields[name]
            arr = np.asarray(value)
            if n is None:
                n = arr.shape[0] if arr.ndim else 0
                raws = [0] * n
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(f"payload.{name} must have {n} rows, not shape {arr.shape}")
            if d["kind"] == "array" and d["elem"]["kind"] == "int" and \
                    (d["elem"]["width"], d["elem"]["signed"]) in _NP_INT:
                w, s = int(d["elem"]["width"]), bool(d["elem"]["signed"])
                length = int(d["length"])
                if arr.shape[1:] != (length,):
                    raise ValueError(f"payload.{name} must have shape ({n}, {length}), "
                                     f"not {arr.shape}")
                lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if s else (0, (1 << w) - 1)
                if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
                    raise ValueError(f"payload.{name} elements must be in [{lo}, {hi}]")
                rowbytes = length * w // 8
                blob = arr.astype(np.dtype(_NP_INT[w, s]).newbyteorder("<")).tobytes()
                frm = int.from_bytes
                vals = [frm(blob[i * rowbytes:(i + 1) * rowbytes], "little") for i in range(n)]
            else:
                vals = [_pack(d, v, f"payload.{name}") for v in arr]
            raws = [r | (v << off) for r, v in zip(raws, vals)]
        return raws

    def unpack_many(self, raws: Sequence[int]) -> dict[str, np.ndarray]:
        """Unpack ``n`` struct payloads at once: ``{field: (n,) or (n, length) int64}``.

        Byte-aligned fields of byte-sized integers are sliced out of one NumPy buffer (a
        256-deep tile in ~50 us); other fields fall back to per-item shifts."""
        if self.desc["kind"] != "struct":
            raise TypeError(f"unpack_many needs a struct layout, not {self.desc['kind']!r}")
        n = len(raws)
        nbytes = (self.width + 7) // 8
        for raw in raws:
            if not isinstance(raw, int) or raw < 0 or raw >> self.width:
                raise ValueError(f"raw payload must be an int in [0, 2**{self.width}), "
                                 f"not {raw!r}")
        buf = np.frombuffer(b"".join(r.to_bytes(nbytes, "little") for r in raws),
                            dtype=np.uint8).reshape(n, nbytes)
        out: dict[str, np.ndarray] = {}
        for name, off, d in self.desc["fields"]:
            elem = d["elem"] if d["kind"] == "array" else d
            length = int(d["length"]) if d["kind"] == "array" else 1
            key = (elem.get("width"), elem.get("signed"))
            if elem["kind"] == "int" and key in _NP_INT and off % 8 == 0:
                ew = int(elem["width"]) // 8
                dt = np.dtype(_NP_INT[key]).newbyteorder("<")
                chunk = np.ascontiguousarray(buf[:, off // 8: off // 8 + ew * length])
                vals = chunk.view(dt).astype(np.int64).reshape(n, length)
            else:
                vals = np.array([np.atleast_1d(_unpack(d, r >> off)) for r in raws],
                                dtype=np.int64).reshape(n, length)
            out[name] = vals if d["kind"] == "array" else vals[:, 0]
        return out

    def field_offset(self, name: str) -> int:
        """Bit offset of struct field ``name`` (e.g. to test a ``last`` flag on a raw int)."""
        for fname, off, _ in self.desc.get("fields", ()):
            if fname == name:
                return int(off)
        raise KeyError(f"payload has no field {name!r}")

    def unpack(self, raw: int) -> Any:
        if not isinstance(raw, int) or raw < 0 or raw >> self.width:
            raise ValueError(f"raw payload must be an int in [0, 2**{self.width}), not {raw!r}")
        return _unpack(self.desc, raw)


def pack_fields(layout: Any, value: Any) -> int:
    """One-shot :meth:`Codec.pack`."""
    return Codec(layout).pack(value)


def unpack_fields(layout: Any, raw: int) -> Any:
    """One-shot :meth:`Codec.unpack`."""
    return Codec(layout).unpack(raw)


def _pack(desc: Mapping[str, Any], value: Any, path: str) -> int:
    kind = desc["kind"]
    if kind == "int":
        w, s = int(desc["width"]), bool(desc["signed"])
        v = int(value)
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if s else (0, (1 << w) - 1)
        if not lo <= v <= hi:
            raise ValueError(f"{path} must be in [{lo}, {hi}], not {v!r}")
        return v & ((1 << w) - 1)
    if kind == "array":
        elem, n = desc["elem"], int(desc["length"])
        arr = np.asarray(value)
        if arr.shape != (n,):
            raise ValueError(f"{path} must have shape ({n},), not {arr.shape}")
        if elem["kind"] == "int" and (elem["width"], elem["signed"]) in _NP_INT:
            w, s = int(elem["width"]), bool(elem["signed"])
            if not np.issubdtype(arr.dtype, np.integer):
                raise TypeError(f"{path} must be an integer array, not {arr.dtype}")
            lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if s else (0, (1 << w) - 1)
            if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
                raise ValueError(f"{path} elements must be in [{lo}, {hi}], not {arr.tolist()!r}")
            # Fast path: element 0 at the LSB is exactly little-endian byte order.
            le = np.dtype(_NP_INT[w, s]).newbyteorder("<")
            return int.from_bytes(arr.astype(le).tobytes(), "little")
        ew = _width(elem)
        raw = 0
        for i, v in enumerate(arr.tolist() if arr.ndim else list(value)):
            raw |= _pack(elem, v, f"{path}[{i}]") << (i * ew)
        return raw
    if kind == "struct":
        if not isinstance(value, Mapping):
            raise TypeError(f"{path} must be a mapping of field values, not {value!r}")
        names = {name for name, _, _ in desc["fields"]}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"{path} has no field(s) {sorted(unknown)}; fields: {sorted(names)}")
        raw = 0
        for name, off, d in desc["fields"]:
            if name in value:
                raw |= _pack(d, value[name], f"{path}.{name}") << off
        return raw
    raise ValueError(f"layout kind must be 'int', 'array' or 'struct', not {kind!r}")


def _unpack(desc: Mapping[str, Any], raw: int) -> Any:
    kind = desc["kind"]
    if kind == "int":
        w = int(desc["width"])
        v = raw & ((1 << w) - 1)
        if desc["signed"] and v >> (w - 1):
            v -= 1 << w
        return v
    if kind == "array":
        elem, n = desc["elem"], int(desc["length"])
        ew = _width(elem)
        if elem["kind"] == "int" and (elem["width"], elem["signed"]) in _NP_INT:
            dt = np.dtype(_NP_INT[ew, bool(elem["signed"])]).newbyteorder("<")
            b = (raw & ((1 << (ew * n)) - 1)).to_bytes(ew * n // 8, "little")
            return np.frombuffer(b, dtype=dt).astype(np.int64)
        items = [_unpack(elem, raw >> (i * ew)) for i in range(n)]
        if elem["kind"] == "int":
            return np.array(items, dtype=np.int64)
        return items
    if kind == "struct":
        return {name: _unpack(d, raw >> off) for name, off, d in desc["fields"]}
    raise ValueError(f"layout kind must be 'int', 'array' or 'struct', not {kind!r}")


# -- idle / backpressure -------------------------------------------------------------------------

def pause_generator(kind: str | None, *, seed: int = 0, p: float = 0.25,
                    pattern: Iterable[int] = (0, 0, 0, 1)) -> Iterator[bool] | None:
    """Per-cycle pause decisions: ``True`` = pause this cycle.

    ``None`` -> no pauses (returns ``None``, the drivers' fast path); ``"random"`` -> pause with
    probability ``p`` from a seeded RNG; ``"cycle"`` -> repeat ``pattern`` (cocotbext-axi's
    ``itertools.cycle`` style).
    """
    if kind is None:
        return None
    if kind == "random":
        if not 0.0 <= p < 1.0:
            raise ValueError(f"pause probability must be in [0, 1), not {p!r}")
        rng = random.Random(seed)
        return (rng.random() < p for _ in itertools.count())
    if kind == "cycle":
        pat = [bool(x) for x in pattern]
        if not pat or all(pat):
            raise ValueError(f"pause pattern must contain a 0 (a cycle without pause), "
                             f"not {list(pattern)!r}")
        return itertools.cycle(pat)
    raise ValueError(f"pause kind must be None, 'random' or 'cycle', not {kind!r}")


async def start_clock_and_drivers(dut: Any, clock_ns: float, drivers: Iterable[Any], *,
                                  reset_cycles: int = 3) -> Any:
    """Start ``dut.clk`` (period ``clock_ns``), hold ``dut.rst`` for ``reset_cycles``, release
    it, wait one edge, then start every driver. Returns the cocotb ``Clock``."""
    from cocotb.clock import Clock
    from cocotb.triggers import ClockCycles, RisingEdge

    clock = Clock(dut.clk, clock_ns, unit="ns")
    clock.start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, reset_cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    for d in drivers:
        d.start()
    return clock


def idle_generator(kind: str | None = "random", **kw: Any) -> Iterator[bool] | None:
    """Source idle insertion (valid low between transfers); see :func:`pause_generator`."""
    return pause_generator(kind, **kw)


def backpressure_generator(kind: str | None = "random", **kw: Any) -> Iterator[bool] | None:
    """Sink backpressure (ready low); see :func:`pause_generator`."""
    return pause_generator(kind, **kw)


#: The four stream test variants (docs/architecture.md, conventions): (idle, backpressure).
VARIANTS: tuple[tuple[bool, bool], ...] = ((False, False), (True, False), (False, True),
                                           (True, True))


# -- drivers -------------------------------------------------------------------------------------

def _reader(handle: Any) -> Callable[[], int]:
    """Fast integer read of a signal (avoids building a LogicArray per cycle)."""
    gpi = getattr(handle, "_handle", None)
    if gpi is not None and hasattr(gpi, "get_signal_val_binstr"):
        get = gpi.get_signal_val_binstr

        def read() -> int:
            s = get()
            try:
                return int(s, 2)
            except ValueError:
                raise ValueError(f"{handle._path} is not a valid logic value: {s!r}") from None
        return read
    return lambda: int(handle.value)


class EdgeLoop:
    """One coroutine per clock that calls every registered driver's step on each rising edge.

    Each ``await`` costs more Python time than a driver's whole step, so drivers that share a
    clock share one loop: pass ``loop=`` to :class:`StreamSource` / :class:`StreamSink`.
    Steps see pre-edge values and their writes apply to the next cycle, so their order within
    an edge does not matter.
    """

    def __init__(self, clk: Any) -> None:
        self.clk = clk
        self.steps: list[Callable[[], None]] = []
        self._task: Any = None

    def add(self, step: Callable[[], None]) -> None:
        self.steps.append(step)
        if self._task is None:
            import cocotb

            self._task = cocotb.start_soon(self._run())

    def remove(self, step: Callable[[], None]) -> None:
        if step in self.steps:
            self.steps.remove(step)

    def stop(self) -> None:
        self.steps.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        from cocotb.triggers import RisingEdge

        edge = RisingEdge(self.clk)
        steps = self.steps
        while True:
            await edge
            for step in tuple(steps):
                step()


class _Driver:
    """What both drivers share. ``pause`` (the source's ``idle``, the sink's ``backpressure``)
    yields ``True`` on the cycles to pause; ``on_transfer(raw)`` sees every transferred payload;
    ``record_times`` keeps the simulation time of each transfer in :attr:`times`; drivers that
    share a clock should share one ``loop``."""

    def __init__(self, dut: Any, prefix: str, clk: Any, layout: Any | None,
                 pause: Iterator[bool] | None, *,
                 on_transfer: Callable[[int], None] | None = None,
                 record_times: bool = False, loop: EdgeLoop | None = None) -> None:
        try:
            self.valid = getattr(dut, f"{prefix}__valid")
            self.ready = getattr(dut, f"{prefix}__ready")
            self.payload = getattr(dut, f"{prefix}__payload")
        except AttributeError:
            raise AttributeError(
                f"{prefix!r} must name a stream port of the DUT (expected {prefix}__valid, "
                f"{prefix}__ready, {prefix}__payload)") from None
        self.prefix = prefix
        self.clk = clk
        self.codec = Codec(layout) if layout is not None else None
        self.pause = pause
        self.on_transfer = on_transfer
        self.record_times = record_times
        self.count = 0                   # transfers so far
        self.times: list[int] = []       # sim time (steps) of each transfer, if record_times
        self._loop = loop if loop is not None else EdgeLoop(clk)
        self._running = False

    def start(self) -> _Driver:
        """Begin driving at the next rising edge."""
        if not self._running:
            self._loop.add(self._step)
            self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self._loop.remove(self._step)
            self._running = False

    def _step(self) -> None:                             # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _now() -> int:
        from cocotb.simtime import get_sim_time

        return get_sim_time()


class StreamSource(_Driver):
    """Drives ``<prefix>__valid/payload`` and watches ``<prefix>__ready``.

    Queue raw ints with :meth:`send` / :meth:`extend` (or layout values with
    :meth:`send_value`); ``on_transfer(raw)`` is called for every item the DUT accepted, which
    is what a scoreboard's model must be fed with. ``idle`` pauses before presenting an item.
    Keyword options: ``on_transfer``, ``record_times`` (transfer times in :attr:`times`) and
    ``loop`` (a shared :class:`EdgeLoop`).
    """

    def __init__(self, dut: Any, prefix: str, clk: Any, layout: Any | None = None, *,
                 idle: Iterator[bool] | None = None, **options: Any) -> None:
        super().__init__(dut, prefix, clk, layout, idle, **options)
        self.queue: collections.deque[int] = collections.deque()
        self._read_ready = _reader(self.ready)
        self._busy = False
        self._valid_driven = 0
        self._current = 0
        self.valid.value = 0

    def send(self, raw: int) -> None:
        self.queue.append(raw)

    def extend(self, raws: Iterable[int]) -> None:
        self.queue.extend(raws)

    def send_value(self, value: Any) -> None:
        if self.codec is None:
            raise TypeError(f"StreamSource {self.prefix!r} has no layout; pass layout= to use "
                            "send_value, or send raw ints")
        self.queue.append(self.codec.pack(value))

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing on the port."""
        return not self.queue and not self._busy

    def _step(self) -> None:
        if self._busy and self._read_ready():
            self.count += 1
            if self.record_times:
                self.times.append(self._now())
            if self.on_transfer is not None:
                self.on_transfer(self._current)
            self._busy = False
        if not self._busy:
            if self.queue and (self.pause is None or not next(self.pause)):
                self._current = self.queue.popleft()
                self.payload.value = self._current
                self._busy = True
                if not self._valid_driven:
                    self.valid.value = self._valid_driven = 1
            elif self._valid_driven:
                self.valid.value = self._valid_driven = 0


class StreamSink(_Driver):
    """Drives ``<prefix>__ready`` and collects ``<prefix>__payload`` on each transfer.

    Received raw ints go to ``on_transfer(raw)`` if given, else to :attr:`received`.
    ``backpressure`` pauses (drops ``ready``) on the cycles it yields ``True``. Keyword options:
    ``on_transfer``, ``record_times`` and ``loop``, as for :class:`StreamSource`.
    """

    def __init__(self, dut: Any, prefix: str, clk: Any, layout: Any | None = None, *,
                 backpressure: Iterator[bool] | None = None, **options: Any) -> None:
        super().__init__(dut, prefix, clk, layout, backpressure, **options)
        self.received: collections.deque[int] = collections.deque()
        self._read_valid = _reader(self.valid)
        self._read_payload = _reader(self.payload)
        self._deliver = self.on_transfer or self.received.append
        self._ready_driven = 0 if backpressure is not None else 1
        self.ready.value = self._ready_driven

    def pop_value(self) -> Any:
        """Oldest received payload, decoded by the layout."""
        if self.codec is None:
            raise TypeError(f"StreamSink {self.prefix!r} has no layout; pass layout=")
        return self.codec.unpack(self.received.popleft())

    def _step(self) -> None:
        if self._ready_driven and self._read_valid():
            self.count += 1
            if self.record_times:
                self.times.append(self._now())
            self._deliver(self._read_payload())
        if self.pause is not None:
            want = 0 if next(self.pause) else 1
            if want != self._ready_driven:
                self.ready.value = self._ready_driven = want
