# SPDX-License-Identifier: Apache-2.0
"""Instruction-level simulator of the accelerator (NumPy): runs a program over a memory image.

:class:`MemoryImage` holds the bytes of every scratchpad of the memory map (``hw.isa``);
:func:`run` fetches instructions from its ``instr`` region from ``ENTRY``, decodes and checks
them exactly as ``hw.isa`` specifies, reads the operands from the scratchpads in the documented
layouts, computes with the integer functions of :mod:`sw.ref` (nothing here re-implements the
arithmetic) and writes the results back. A program that the hardware would refuse ends with
:class:`hw.isa.IsaError` carrying the :class:`hw.isa.ErrorCode` that the ``STATUS`` register
would hold (the simulator writes ``STATUS`` and ``PC`` into the image's CSR block too).

The simulator also checks what the hardware cannot: that a ``BARRIER`` separates every pair of
instructions where one reads or writes bytes that an earlier one (since the last barrier)
writes, or writes bytes it reads (``HAZARD``), and that no int32 accumulator overflows
(``OVERFLOW``). It counts the work of each unit (:class:`SimStats`) for the benchmarks.

The three-way contract: ``sw.ref.model_forward_int(artifact, x) == simulate(program, x)`` (and
== the Verilated accelerator), bit for bit.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw import isa
from hw.isa import ErrorCode, IsaError, Opcode, VecFunc
from hw.numerics import LUT_SIZE, SHIFT_MAX, SHIFT_MIN
from hw.params import AccelParams
from sw import ref

__all__ = [
    "MemoryImage", "SimStats", "instruction_accesses", "pack_act", "pack_quant", "pack_wgt", "run",
    "run_instruction", "simulate", "unpack_act", "unpack_quant",
]


# -- layouts (NumPy forms of hw.isa.act_offset / wgt_offset) --------------------------------------

@functools.lru_cache(maxsize=256)
def _act_index(m: int, width: int, cols: int, rows: int, elem: int) -> np.ndarray:
    """Byte offsets ``(m, width, elem)`` of an activation slice (``hw.isa.act_offset``)."""
    t = np.arange(m, dtype=np.int64)[:, None, None]
    c = np.arange(width, dtype=np.int64)[None, :, None]
    b = np.arange(elem, dtype=np.int64)[None, None, :]
    index = ((t // rows) * cols * rows + c * rows + t % rows) * elem + b
    index.flags.writeable = False                  # shared by the cache
    return index


def _dtype(elem: int) -> np.dtype:
    return np.dtype({1: "i1", 4: "<i4"}[elem])


def pack_act(x: np.ndarray, rows: int) -> bytes:
    """An int8 or int32 ``(M, C)`` tensor in the activation layout (padding rows zero)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.dtype not in (np.int8, np.int32):
        raise TypeError(f"activation must be an int8 or int32 (M, C) array, not "
                        f"{x.dtype.name} {x.shape}")
    m, c = x.shape
    elem = x.dtype.itemsize
    out = np.zeros(isa.act_span(m, width=c, cols=c, rows=rows, elem=elem), np.uint8)
    out[_act_index(m, c, c, rows, elem)] = x.astype(_dtype(elem)).view(np.uint8).reshape(m, c,
                                                                                         elem)
    return out.tobytes()


def unpack_act(data: bytes | bytearray | memoryview, m: int, c: int, rows: int,
               dtype: type = np.int8, *, cols: int | None = None) -> np.ndarray:
    """The ``(M, C)`` tensor (or column slice of row width ``cols``) at the start of ``data``."""
    elem = np.dtype(dtype).itemsize
    buf = np.frombuffer(data, np.uint8)
    raw = buf[_act_index(m, c, c if cols is None else cols, rows, elem)]
    return np.ascontiguousarray(raw).view(_dtype(elem)).reshape(m, c).astype(dtype)


def pack_wgt(w: np.ndarray, cols: int) -> bytes:
    """An int8 GEMM weight ``(K, N)`` in K-major tiles of ``cols`` columns (zero-padded)."""
    w = np.asarray(w)
    if w.ndim != 2 or w.dtype != np.int8:
        raise TypeError(f"weight must be an int8 (K, N) array, not {w.dtype.name} {w.shape}")
    k, n = w.shape
    tiles = -(-n // cols)
    padded = np.zeros((k, tiles * cols), np.int8)
    padded[:, :n] = w
    return padded.reshape(k, tiles, cols).transpose(1, 0, 2).tobytes()


def _read_wgt(data: np.ndarray, k: int, n: int, cols: int) -> np.ndarray:
    tiles = -(-n // cols)
    w = data[:tiles * k * cols].view(np.int8).reshape(tiles, k, cols).transpose(1, 0, 2)
    return np.ascontiguousarray(w.reshape(k, tiles * cols)[:, :n])


def pack_quant(layout: tuple[isa.Field, ...], **values: Any) -> bytes:
    """64-bit quant words of ``layout`` from per-field values (arrays broadcast together)."""
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in values.items()}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    words = np.zeros(shape, np.uint64)
    for f in layout:
        v = np.broadcast_to(arrays.pop(f.name, np.int64(0)), shape)
        if np.any(v < f.lo) or np.any(v > f.hi):
            raise ValueError(f"quant field {f.name} must be in [{f.lo}, {f.hi}]")
        words |= (v.astype(np.uint64) & np.uint64((1 << f.width) - 1)) << np.uint64(f.lsb)
    if arrays:
        raise ValueError(f"unknown quant field {sorted(arrays)[0]!r}")
    return words.astype("<u8").tobytes()


def unpack_quant(layout: tuple[isa.Field, ...], data: bytes | np.ndarray) -> dict[str, np.ndarray]:
    """Per-field int64 arrays of the 64-bit quant words in ``data``."""
    words = np.frombuffer(bytes(data), "<u8").astype(np.uint64)
    out = {}
    for f in layout:
        v = ((words >> np.uint64(f.lsb)) & np.uint64((1 << f.width) - 1)).astype(np.int64)
        if f.signed:
            v = np.where(v >> (f.width - 1), v - (1 << f.width), v)
        out[f.name] = v
    return out


# -- memory image ---------------------------------------------------------------------------------

class MemoryImage:
    """The bytes of every region of ``hw.isa.memory_map(params)`` (zero-initialised)."""

    def __init__(self, params: AccelParams) -> None:
        self.params = params
        self.map = isa.memory_map(params)
        self.regions = {r.name: bytearray(r.size) for r in self.map.regions}
        self.write_csr(isa.Csr.DESIGN_ID, params.design_id)
        self.write_csr(isa.Csr.ISA_VERSION, isa.ISA_VERSION)

    def copy(self) -> MemoryImage:
        other = MemoryImage.__new__(MemoryImage)
        other.params, other.map = self.params, self.map
        other.regions = {k: bytearray(v) for k, v in self.regions.items()}
        return other

    def write(self, region: str, offset: int, data: bytes) -> None:
        buf = self.regions[self.map.region(region).name]
        if offset < 0 or offset + len(data) > len(buf):
            raise ValueError(f"{len(data)} bytes at {region} offset {offset} leave the region "
                             f"of {len(buf)} bytes")
        buf[offset:offset + len(data)] = data

    def read(self, region: str, offset: int, size: int) -> bytes:
        buf = self.regions[self.map.region(region).name]
        if offset < 0 or offset + size > len(buf):
            raise ValueError(f"{size} bytes at {region} offset {offset} leave the region of "
                             f"{len(buf)} bytes")
        return bytes(buf[offset:offset + size])

    def bus_write(self, address: int, data: bytes) -> None:
        """Write at a bus byte address (``hw.isa.memory_map``)."""
        region, offset = self.map.locate(address, len(data))
        self.write(region.name, offset, data)

    def bus_read(self, address: int, size: int) -> bytes:
        region, offset = self.map.locate(address, size)
        return self.read(region.name, offset, size)

    def write_csr(self, csr: isa.Csr, value: int) -> None:
        self.write("csr", int(csr), int(value & 0xFFFFFFFF).to_bytes(4, "little"))

    def read_csr(self, csr: isa.Csr) -> int:
        return int.from_bytes(self.read("csr", int(csr), 4), "little")

    def load_program(self, words: list[int] | tuple[int, ...], entry: int = 0) -> None:
        self.write("instr", entry * isa.INSTR_BYTES, isa.to_bytes(words))


# -- statistics -----------------------------------------------------------------------------------

@dataclass
class SimStats:
    """Work counted by :func:`run` (accumulates over calls when passed back in).

    ``macs``: useful multiply-accumulates per unit (GEMM ``M*K*N``; attention ``2 * keys *
    head_dim`` per query row and head: ``q.k`` and ``p.v``). ``array_macs``: what the
    ``rows x cols`` array spends on the GEMM tiles, ragged edges included. ``elements``: values
    produced by the VEC (also EMBED) and LNORM units.
    """

    instructions: int = 0
    runs: int = 0
    by_opcode: Counter = field(default_factory=Counter)
    macs: Counter = field(default_factory=Counter)
    array_macs: int = 0
    elements: Counter = field(default_factory=Counter)

    def add(self, other: SimStats) -> None:
        """Accumulate ``other``'s counts into these."""
        self.instructions += other.instructions
        self.runs += other.runs
        self.by_opcode.update(other.by_opcode)
        self.macs.update(other.macs)
        self.array_macs += other.array_macs
        self.elements.update(other.elements)

    def to_dict(self) -> dict[str, Any]:
        return {"instructions": self.instructions, "runs": self.runs,
                "by_opcode": dict(self.by_opcode), "macs": dict(self.macs),
                "array_macs": self.array_macs, "elements": dict(self.elements)}


# -- execution ------------------------------------------------------------------------------------

class _Machine:
    """One program run: operand access, quant-word checks and the per-opcode semantics."""

    def __init__(self, image: MemoryImage, stats: SimStats) -> None:
        self.image = image
        self.params = image.params
        self.rows = image.params.rows
        self.stats = stats
        self.pc = 0

    def fail(self, code: ErrorCode, msg: str):
        raise IsaError(code, msg, self.pc)

    # operands
    def act(self, addr: int, m: int, c: int, cols: int | None = None, elem: int = 1):
        buf = np.frombuffer(self.image.regions["act"], np.uint8)[addr:]
        return unpack_act(buf, m, c, self.rows, _dtype(elem).type, cols=cols)

    def put_act(self, addr: int, x: np.ndarray, cols: int | None = None) -> None:
        m, c = x.shape
        elem = x.dtype.itemsize
        idx = addr + _act_index(m, c, c if cols is None else cols, self.rows, elem)
        buf = np.frombuffer(self.image.regions["act"], np.uint8)
        buf[idx] = np.ascontiguousarray(x.astype(_dtype(elem))).view(np.uint8).reshape(m, c,
                                                                                      elem)

    def quant(self, layout, addr: int, count: int) -> dict[str, np.ndarray]:
        data = self.image.regions["quant"][addr * 8:(addr + count) * 8]
        return unpack_quant(layout, data)

    def shifts_ok(self, what: str, *shifts: np.ndarray) -> None:
        for s in shifts:
            if np.any(s < SHIFT_MIN) or np.any(s > SHIFT_MAX):
                bad = int(s[(s < SHIFT_MIN) | (s > SHIFT_MAX)].ravel()[0])
                self.fail(ErrorCode.BAD_QUANT, f"{what} quant word holds shift {bad}, outside "
                          f"[{SHIFT_MIN}, {SHIFT_MAX}]")

    def lut(self, index: int) -> np.ndarray:
        lo = index * LUT_SIZE
        return np.frombuffer(self.image.regions["lut"], np.int8)[lo:lo + LUT_SIZE].copy()

    # opcodes
    def gemm(self, f: dict[str, int]) -> None:
        m, k, n, cols = f["m"], f["k"], f["n"], self.params.cols
        a = self.act(f["a_addr"], m, k)
        wbuf = np.frombuffer(self.image.regions["wgt"], np.uint8)[f["w_addr"]:]
        w = _read_wgt(wbuf, k, n, cols)
        q = self.quant(isa.CHANNEL_WORD, f["quant_addr"], n)
        bias = q["bias"].astype(np.int32)
        out32 = bool(f["flags"] & isa.GemmFlag.OUT32)
        try:
            if out32:
                y = ref.gemm_acc(a, w, bias)                                  # (M, N) int32
            else:
                self.shifts_ok("GEMM", q["shift"])
                y = ref.gemm_requant(a, w, bias, q["mult"], q["shift"])      # (M, N) int8
        except OverflowError as exc:
            self.fail(ErrorCode.OVERFLOW, f"GEMM: {exc}")
        if f["flags"] & isa.GemmFlag.LUT:
            y = ref.lut_apply(y, self.lut(f["lut"]))
        self.put_act(f["dst_addr"], y)
        self.stats.macs["gemm"] += m * k * n
        self.stats.array_macs += (-(-m // self.rows) * self.rows * -(-n // cols) * cols * k)

    def attn(self, f: dict[str, int]) -> None:
        t, heads, hd = f["t"], f["heads"], f["head_dim"]
        width = heads * hd
        q, k, v = (self.act(f[name], t, width, cols=f["src_cols"])
                   for name in ("q_addr", "k_addr", "v_addr"))               # (T, H*hd) int8
        w = self.quant(isa.ATTN_WORD, f["quant_addr"], 1)
        self.shifts_ok("ATTN", w["score_shift"], w["out_shift"])
        params = ref.AttentionQuant(*(int(w[name][0]) for name in
                                      ("score_mult", "score_shift", "out_mult", "out_shift")))
        causal = bool(f["flags"] & isa.AttnFlag.CAUSAL)
        out = np.empty((t, width), np.int8)
        for h in range(heads):
            s = slice(h * hd, (h + 1) * hd)
            out[:, s] = ref.windowed_attention_int(q[:, s], k[:, s], v[:, s], f["window"],
                                                   causal, params)
        self.put_act(f["dst_addr"], out, cols=f["dst_cols"])
        lo, hi = ref.attention_window_bounds(t, f["window"], causal)
        self.stats.macs["attn"] += 2 * int((hi - lo).sum()) * hd * heads

    def lnorm(self, f: dict[str, int]) -> None:
        m, c = f["m"], f["c"]
        x = self.act(f["a_addr"], m, c)
        eps = int(self.quant(isa.EPS_WORD, f["quant_addr"], 1)["eps"][0])
        if eps > (c ** 4 << 16):
            self.fail(ErrorCode.BAD_QUANT, f"LNORM epsilon {eps} exceeds c**4 * 2**16")
        q = self.quant(isa.LNORM_WORD, f["quant_addr"] + 1, c)
        self.shifts_ok("LNORM", q["shift"])
        y = ref.layernorm_int(x, q["gamma"].astype(np.int8), q["beta"].astype(np.int32),
                              q["mult"], q["shift"], eps)
        self.put_act(f["dst_addr"], y)
        self.stats.elements["lnorm"] += m * c

    def vec(self, f: dict[str, int]) -> None:
        m, c = f["m"], f["c"]
        x = self.act(f["a_addr"], m, c)
        func = VecFunc(f["func"])
        if func is VecFunc.ADD:
            w = self.quant(isa.RESID_WORD, f["quant_addr"], 1)
            self.shifts_ok("VEC ADD", w["shift"])
            mult = np.array([w["mult_a"][0], w["mult_b"][0]], np.int64)
            y = ref.residual_add(x, self.act(f["b_addr"], m, c), mult, int(w["shift"][0]))
        elif func is VecFunc.LUT:
            y = ref.lut_apply(x, self.lut(f["lut"]))
        else:
            w = self.quant(isa.CHANNEL_WORD, f["quant_addr"], 1)
            self.shifts_ok("VEC MEANPOOL", w["shift"])
            y = ref.mean_pool_int(x, int(w["mult"][0]), int(w["shift"][0]))[None]   # (1, C)
        self.put_act(f["dst_addr"], y)
        self.stats.elements["vec"] += y.size

    def embed(self, f: dict[str, int]) -> None:
        t, c, vocab = f["t"], f["c"], f["vocab"]
        ids = self.act(f["ids_addr"], t, 1, elem=4)[:, 0]                     # (T,) int32
        if np.any(ids < 0) or np.any(ids >= vocab):
            bad = int(ids[(ids < 0) | (ids >= vocab)][0])
            self.fail(ErrorCode.BAD_TOKEN, f"EMBED token id {bad} outside [0, {vocab})")
        lo = f["table_addr"]
        table = np.frombuffer(self.image.regions["wgt"], np.int8)[lo:lo + vocab * c]
        self.put_act(f["dst_addr"], ref.embedding_int(ids, table.reshape(vocab, c)))
        self.stats.elements["vec"] += t * c


@functools.lru_cache(maxsize=4096)
def _checked(word: int, params: AccelParams) -> tuple[isa.Instruction, list[isa.Access]]:
    """Decoded and validated instruction (the same words run once per sample)."""
    instr = isa.decode(word)
    return instr, isa.validate(instr, params)


def _fetch(word: int, params: AccelParams, pc: int) -> tuple[isa.Instruction, list[isa.Access]]:
    if params.host_units:
        try:
            opcode = Opcode(word & 0xFF)
        except ValueError:
            opcode = None                           # ILLEGAL_OPCODE below
        if opcode is not None and isa.host_runs(opcode, params):
            raise IsaError(ErrorCode.UNIT_ABSENT, f"{opcode.name}'s unit is not built into "
                           f"design {params.name} (host_units): the host runs it", pc)
    try:
        return _checked(word, params)
    except IsaError:
        instr = isa.decode(word, pc)                  # raise again, naming the instruction
        return instr, isa.validate(instr, params, pc)


def _verb(access: isa.Access) -> str:
    return "writes" if access.write else "reads"


def _handlers(m: _Machine) -> dict[Opcode, Callable[[dict[str, int]], None]]:
    return {Opcode.GEMM: m.gemm, Opcode.ATTN: m.attn, Opcode.LNORM: m.lnorm, Opcode.VEC: m.vec,
            Opcode.EMBED: m.embed}


def instruction_accesses(word: int, params: AccelParams, pc: int) -> list[isa.Access]:
    """What the instruction ``word`` at ``pc`` reads and writes, checked as a design with every
    unit would check it (``host_units`` ignored): the bytes a host that runs it needs."""
    return _fetch(word, params.replace(host_units=()), pc)[1]


def run_instruction(image: MemoryImage, word: int, pc: int,
                    stats: SimStats | None = None) -> list[isa.Access]:
    """Check and execute the one instruction ``word`` (at ``pc``) on ``image`` as a design with
    every unit (``host_units`` ignored); returns its accesses. This is how the host runs an
    instruction that stopped a device with ``UNIT_ABSENT`` (:class:`sw.driver.Accelerator`):
    the bytes of its read accesses must be in ``image``; its results are in the bytes of its
    write accesses afterwards. Raises :class:`hw.isa.IsaError` as :func:`run` does; the CSR
    block is left alone."""
    instr, accesses = _fetch(word, image.params.replace(host_units=()), pc)
    m = _Machine(image, SimStats() if stats is None else stats)
    m.pc = pc
    handler = _handlers(m).get(instr.opcode)
    if handler is not None:
        handler(instr.fields)
    m.stats.by_opcode[instr.opcode.name] += 1
    return accesses


def run(image: MemoryImage, *, entry: int | None = None, stats: SimStats | None = None,
        check_hazards: bool = True) -> SimStats:
    """Run the program in ``image`` from instruction ``entry`` (default: the ``ENTRY`` CSR)
    to its HALT, updating the image in place; returns (and accumulates into) ``stats``.

    Raises :class:`hw.isa.IsaError` with the code the hardware reports; ``STATUS`` and ``PC``
    in the image's CSR block are set either way.
    """
    stats = SimStats() if stats is None else stats
    m = _Machine(image, stats)
    depth = image.params.instr_depth
    m.pc = image.read_csr(isa.Csr.ENTRY) if entry is None else int(entry)
    pending: list[tuple[int, isa.Access]] = []             # since the last barrier
    retired = 0
    image.write_csr(isa.Csr.STATUS, isa.Status.BUSY)
    handlers = _handlers(m)
    try:
        while True:
            if not 0 <= m.pc < depth:
                m.fail(ErrorCode.NO_HALT, f"the program counter left the instruction memory "
                       f"of {depth} words without a HALT")
            raw = image.regions["instr"][m.pc * isa.INSTR_BYTES:(m.pc + 1) * isa.INSTR_BYTES]
            instr, accesses = _fetch(int.from_bytes(raw, "little"), image.params, m.pc)
            if instr.opcode in (Opcode.BARRIER, Opcode.HALT):
                pending.clear()
            if check_hazards:
                for acc in accesses:
                    for pc, old in pending:
                        if acc.overlaps(old) and (acc.write or old.write):
                            m.fail(ErrorCode.HAZARD, f"{instr.opcode.name} {_verb(acc)} "
                                   f"{acc.region} bytes [{acc.offset}, {acc.offset + acc.size}) "
                                   f"that instruction {pc} {_verb(old)} with no BARRIER "
                                   "between them")
                pending.extend((m.pc, acc) for acc in accesses)
            if instr.opcode in handlers:
                handlers[instr.opcode](instr.fields)
            retired += 1
            stats.by_opcode[instr.opcode.name] += 1
            if instr.opcode is Opcode.HALT:
                break
            m.pc += 1
    except IsaError as exc:
        image.write_csr(isa.Csr.STATUS, isa.Status.ERROR | (int(exc.code)
                                                            << isa.STATUS_CODE_SHIFT))
        image.write_csr(isa.Csr.PC, m.pc)
        image.write_csr(isa.Csr.PERF_INSTRET, retired)
        stats.instructions += retired
        raise
    image.write_csr(isa.Csr.STATUS, isa.Status.DONE)
    image.write_csr(isa.Csr.PC, m.pc)
    image.write_csr(isa.Csr.PERF_INSTRET, retired)
    stats.instructions += retired
    stats.runs += 1
    return stats


def _runs_with_host_steps(image: MemoryImage, entry: int):
    """Run from ``entry`` to HALT as the driver does on a design with ``host_units``: each
    ``UNIT_ABSENT`` stop's instruction runs on the host (:func:`run_instruction`) and the
    device starts again after it. Yields ``(entry, stats)`` of every device run (the host's
    instructions counted in the run they stopped)."""
    while True:
        stats = SimStats()
        try:
            yield entry, run(image, entry=entry, stats=stats)
            return
        except IsaError as exc:
            if exc.code is not ErrorCode.UNIT_ABSENT:
                raise
        pc = image.read_csr(isa.Csr.PC)
        raw = image.read("instr", pc * isa.INSTR_BYTES, isa.INSTR_BYTES)
        run_instruction(image, int.from_bytes(raw, "little"), pc, stats)
        stats.instructions += 1
        yield entry, stats
        entry = pc + 1


def simulate(program, x_q: np.ndarray, *, image: MemoryImage | None = None,
             stats: SimStats | None = None,
             after_run: Callable[[int, SimStats], None] | None = None) -> np.ndarray:
    """Run a compiled :class:`sw.program.Program` on each sample of ``x_q`` (as
    :func:`sw.ref.model_forward_int` takes it: with or without the batch axis); returns the
    int32 logits in the same shape as ``sw.ref.model_forward_int``.

    On a design with ``host_units``, each instruction the device stops at with
    ``UNIT_ABSENT`` runs on the host and the run goes on after it, as
    :class:`sw.driver.Accelerator` does. ``image`` (default: ``program.image()``) is reused
    between samples, as the device keeps the model resident and only the input changes; a
    streamed program's layer blocks are
    written before each layer's run, as the driver does (``Program.steps``). ``stats``
    accumulates every run's counts; ``after_run(entry, run_stats)`` is called after every run
    with that run's own (as ``sw.driver.Accelerator.predict``'s hook, where the device's perf
    counters are read).
    """
    image = program.image() if image is None else image
    x = np.asarray(x_q)
    single = x.ndim == program.input_ndim
    batch = x[None] if single else x
    out = []
    for sample in batch:
        program.write_input(image, sample)
        for entry, blocks in program.steps():
            for b in blocks:
                image.write(b.region, b.offset, b.data)
            for start, one in _runs_with_host_steps(image, entry):
                if stats is not None:
                    stats.add(one)
                if after_run is not None:
                    after_run(start, one)
        out.append(program.read_output(image))
    logits = np.stack(out)
    return logits[0] if single else logits
