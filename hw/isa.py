# SPDX-License-Identifier: Apache-2.0
"""The accelerator's instruction set and memory map, defined once.

Pure Python (no Amaranth, no NumPy): the controller in ``hw/``, the compiler
(:mod:`sw.program`), the instruction-level simulator (:mod:`sw.isasim`) and the host driver all
import this module, so an opcode, a field position, an error code or a region base cannot drift
between them. ``docs/isa.md`` is the prose version of this file.

* **Instructions** are fixed-width 256-bit words (:data:`INSTR_BYTES` = 32 bytes = eight 32-bit
  host-link words, little-endian: bit ``i`` of the instruction is bit ``i % 32`` of link word
  ``i // 32``). The opcode is bits 0..7; every opcode has a table of named fields
  (:data:`FORMATS`); bits that no field of the opcode covers are reserved and must be 0.
* **Operands** are region-relative byte offsets (activations, weights) or word indices (quant
  words); :func:`validate` checks them against an :class:`hw.params.AccelParams` and returns the
  bytes each instruction reads and writes.
* **Memory map**: :func:`memory_map` -- one 16 MiB window per region at a fixed base
  (``region index << 24``), the region's size from the parameters.
* **Tensor layouts** (what the units stream): activations in row blocks of ``rows`` tokens
  (:func:`act_offset`), GEMM weights in ``cols``-wide K-major tiles (:func:`wgt_offset`), 64-bit
  quant words (:data:`CHANNEL_WORD` and friends), 256-byte LUTs.

Errors the hardware reports in ``STATUS`` are :class:`ErrorCode` members; the software raises
:class:`IsaError` carrying the same code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from hw.numerics import LN_MAX_DIM, LUT_SIZE
from hw.params import AccelParams

__all__ = [
    "ATTN_WORD", "CHANNEL_WORD", "CSR_ACCESS", "CSR_BLOCK_BYTES", "EPS_WORD", "FORMATS",
    "INSTR_BITS", "INSTR_BYTES", "ISA_VERSION", "LNORM_WORD", "LINK_WORD_BYTES", "QUANT_WORD_BYTES",
    "REGION_NAMES", "REGION_SHIFT", "RESID_WORD", "STATUS_CODE_SHIFT", "UNITS", "Access",
    "AttnFlag", "Control", "Csr",
    "ErrorCode", "Field", "GemmFlag", "Instruction", "IsaError", "MemoryMap", "Opcode", "Region",
    "Status", "VecFunc", "act_offset", "act_span", "attn", "barrier", "decode", "embed", "encode",
    "from_bytes", "gemm", "halt", "lnorm", "memory_map", "nop", "pack_fields", "quant_depth",
    "to_bytes", "unit_of", "unpack_fields", "validate", "vec", "wgt_offset", "wgt_span",
]

ISA_VERSION = 1
INSTR_BITS = 256
INSTR_BYTES = INSTR_BITS // 8
LINK_WORD_BYTES = 4                        # the host link moves little-endian 32-bit words
QUANT_WORD_BYTES = 8                       # one 64-bit quant word


class Opcode(enum.IntEnum):
    """Bits 0..7 of every instruction. Any other value is :attr:`ErrorCode.ILLEGAL_OPCODE`."""

    NOP = 0          # nothing (a zeroed instruction memory is NOPs: running off the end is NO_HALT)
    GEMM = 1         # int8 (M, K) x (K, N) + bias -> requant [-> LUT] int8, or int32
    ATTN = 2         # windowed multi-head attention with integer softmax
    LNORM = 3        # integer LayerNorm over each row
    VEC = 4          # elementwise / reduction: residual add, LUT, mean pool (VecFunc)
    EMBED = 5        # token ids -> rows of an int8 table (embedding gather)
    BARRIER = 6      # wait until every earlier instruction has finished
    HALT = 7         # wait for every unit, set STATUS.DONE, stop


class VecFunc(enum.IntEnum):
    """``func`` field of :attr:`Opcode.VEC`."""

    ADD = 0          # residual add with requant (sw.ref.residual_add)
    LUT = 1          # 256-entry int8 LUT (sw.ref.lut_apply)
    MEANPOOL = 2     # mean over the M rows -> one row (sw.ref.mean_pool_int)


class GemmFlag(enum.IntFlag):
    LUT = 1          # apply LUT ``lut`` to the int8 result
    OUT32 = 2        # int32 result (sw.ref.gemm_acc: bias added, no requant)


class AttnFlag(enum.IntFlag):
    CAUSAL = 1       # keys t-window+1 .. t; else centred t-window//2 .. t+(window-1)//2


class ErrorCode(enum.IntEnum):
    """``STATUS.CODE``: why the last program stopped (0: it reached HALT)."""

    OK = 0
    ILLEGAL_OPCODE = 1   # opcode not in Opcode
    BAD_FIELD = 2        # a reserved bit set, an unknown flag / VEC func, a LUT index >= lut_count
    BAD_SHAPE = 3        # M, K, N, T, C, heads, head_dim or window outside the unit's range
    BAD_ADDRESS = 4      # an operand outside its scratchpad, misaligned, or a GEMM dst over A
    NO_HALT = 5          # the program counter left the instruction memory without a HALT
    BAD_QUANT = 6        # a quant word holds a shift outside [1, 47] or epsilon out of range
    BAD_TOKEN = 7        # an embedding id outside [0, vocab)
    OVERFLOW = 8         # simulator only: an int32 accumulator overflowed (hardware wraps)
    HAZARD = 9           # simulator only: a missing BARRIER between dependent instructions
    UNIT_ABSENT = 10     # the opcode's unit is not built (AccelParams.host_units): the host
                         # runs the instruction and starts the program again at PC + 1


class IsaError(Exception):
    """A program or instruction the accelerator refuses; ``code`` is what ``STATUS`` reports.

    ``pc`` is the index of the offending instruction when known.
    """

    def __init__(self, code: ErrorCode, message: str, pc: int | None = None) -> None:
        self.code = ErrorCode(code)
        self.pc = pc
        where = "" if pc is None else f"instruction {pc}: "
        super().__init__(f"{where}{message} ({self.code.name}, code {int(self.code)})")


# -- fields ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    """``width`` bits at bit ``lsb`` of a word (two's complement when ``signed``)."""

    name: str
    lsb: int
    width: int
    signed: bool = False

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


def _word(index: int, name: str) -> Field:
    """A whole 32-bit word of the instruction (word 0 holds the opcode)."""
    return Field(name, 32 * index, 32)


_OPCODE = Field("opcode", 0, 8)
_FLAGS = Field("flags", 8, 8)
_M = Field("m", 192, 16)
_C = Field("c", 208, 16)

#: Field tables of every opcode (the opcode field itself is implied).
FORMATS: dict[Opcode, tuple[Field, ...]] = {
    Opcode.NOP: (),
    Opcode.GEMM: (_FLAGS, Field("lut", 24, 8), _word(1, "a_addr"), _word(2, "w_addr"),
                  _word(4, "dst_addr"), _word(5, "quant_addr"), _M, Field("k", 208, 16),
                  Field("n", 224, 16)),
    Opcode.ATTN: (_FLAGS, Field("heads", 16, 8), Field("head_dim", 24, 8), _word(1, "q_addr"),
                  _word(2, "k_addr"), _word(3, "v_addr"), _word(4, "dst_addr"),
                  _word(5, "quant_addr"), Field("t", 192, 16), Field("window", 208, 16),
                  Field("src_cols", 224, 16), Field("dst_cols", 240, 16)),
    Opcode.LNORM: (_word(1, "a_addr"), _word(4, "dst_addr"), _word(5, "quant_addr"), _M, _C),
    Opcode.VEC: (Field("func", 16, 8), Field("lut", 24, 8), _word(1, "a_addr"),
                 _word(2, "b_addr"), _word(4, "dst_addr"), _word(5, "quant_addr"), _M, _C),
    Opcode.EMBED: (_word(1, "ids_addr"), _word(2, "table_addr"), _word(4, "dst_addr"),
                   Field("t", 192, 16), _C, Field("vocab", 224, 32)),
    Opcode.BARRIER: (),
    Opcode.HALT: (),
}


def _check_layout(fields: tuple[Field, ...], bits: int) -> None:
    used = 0
    for f in fields:
        if f.lsb < 0 or f.lsb + f.width > bits or used & f.mask:
            raise AssertionError(f"field {f.name} overlaps or leaves the word")
        used |= f.mask


for _fmt in FORMATS.values():
    _check_layout((_OPCODE, *_fmt), INSTR_BITS)


def pack_fields(layout: tuple[Field, ...], values: Mapping[str, int]) -> int:
    """Pack named integers into one word; ``ValueError`` for a value outside its field."""
    names = {f.name for f in layout}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(names))}")
    word = 0
    for f in layout:
        value = values.get(f.name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            try:
                value = int(value.__index__())       # NumPy integers
            except AttributeError:
                raise TypeError(f"field {f.name} must be an integer, not {value!r}") from None
        if not f.lo <= value <= f.hi:
            raise ValueError(f"field {f.name} must be in [{f.lo}, {f.hi}] ({f.width} bits), "
                             f"not {value!r}")
        word |= (value & ((1 << f.width) - 1)) << f.lsb
    return word


def unpack_fields(layout: tuple[Field, ...], word: int) -> dict[str, int]:
    """The named integers of a packed word (sign-extended where the field is signed)."""
    out = {}
    for f in layout:
        value = (word >> f.lsb) & ((1 << f.width) - 1)
        if f.signed and value >> (f.width - 1):
            value -= 1 << f.width
        out[f.name] = value
    return out


# -- instructions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Instruction:
    """One decoded instruction: an :class:`Opcode` and the values of its fields (absent = 0).

    Construct with the builders (:func:`gemm`, :func:`attn`, ...) or :func:`decode`; field values
    are checked against their bit widths here and against an ``AccelParams`` by
    :func:`validate`.
    """

    opcode: Opcode
    fields: Mapping[str, int]

    def __post_init__(self) -> None:
        try:
            opcode = Opcode(self.opcode)
        except ValueError:
            raise ValueError(f"opcode must be an Opcode, not {self.opcode!r}") from None
        object.__setattr__(self, "opcode", opcode)
        pack_fields(FORMATS[opcode], self.fields)          # names and widths
        values = {f.name: int(self.fields.get(f.name, 0)) for f in FORMATS[opcode]}
        object.__setattr__(self, "fields", values)

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.fields.items() if v)
        return f"{self.opcode.name}({args})"


def encode(instr: Instruction) -> int:
    """The 256-bit instruction word (an ``int``)."""
    return int(instr.opcode) | pack_fields(FORMATS[instr.opcode], instr.fields)


def decode(word: int, pc: int | None = None) -> Instruction:
    """Instruction of a 256-bit word; :class:`IsaError` ``ILLEGAL_OPCODE`` or ``BAD_FIELD``
    (a reserved bit set), as the hardware decoder reports them."""
    if not 0 <= word < (1 << INSTR_BITS):
        raise ValueError(f"instruction word must be in [0, 2**{INSTR_BITS}), not {word!r}")
    raw = word & 0xFF
    try:
        opcode = Opcode(raw)
    except ValueError:
        raise IsaError(ErrorCode.ILLEGAL_OPCODE, f"illegal opcode {raw}", pc) from None
    layout = FORMATS[opcode]
    used = _OPCODE.mask
    for f in layout:
        used |= f.mask
    if word & ~used:
        bits = [i for i in range(INSTR_BITS) if (word & ~used) >> i & 1]
        raise IsaError(ErrorCode.BAD_FIELD, f"{opcode.name} has reserved bit {bits[0]} set "
                       "(reserved bits must be 0)", pc)
    return Instruction(opcode, unpack_fields(layout, word))


def to_bytes(words: list[int] | tuple[int, ...]) -> bytes:
    """Instruction words -> the little-endian bytes of the instruction memory."""
    return b"".join(int(w).to_bytes(INSTR_BYTES, "little") for w in words)


def from_bytes(data: bytes) -> list[int]:
    """Bytes of the instruction memory -> instruction words (``len(data)`` a multiple of 32)."""
    if len(data) % INSTR_BYTES:
        raise ValueError(f"instruction bytes must be a multiple of {INSTR_BYTES}, "
                         f"not {len(data)}")
    return [int.from_bytes(data[i:i + INSTR_BYTES], "little")
            for i in range(0, len(data), INSTR_BYTES)]


def nop() -> Instruction:
    return Instruction(Opcode.NOP, {})


def barrier() -> Instruction:
    return Instruction(Opcode.BARRIER, {})


def halt() -> Instruction:
    return Instruction(Opcode.HALT, {})


def gemm(*, a_addr: int, w_addr: int, dst_addr: int, quant_addr: int, m: int, k: int, n: int,
         lut: int | None = None, out32: bool = False) -> Instruction:
    """``dst (M, N) = A (M, K) x W (K, N)`` with the N channel words at ``quant_addr``:
    int8 ``sw.ref.gemm_requant`` (then ``sw.ref.lut_apply`` with LUT ``lut`` if given), or int32
    ``sw.ref.gemm_acc`` with ``out32``."""
    flags = (GemmFlag.LUT if lut is not None else 0) | (GemmFlag.OUT32 if out32 else 0)
    return Instruction(Opcode.GEMM, dict(
        flags=int(flags), lut=0 if lut is None else lut, a_addr=a_addr, w_addr=w_addr,
        dst_addr=dst_addr, quant_addr=quant_addr, m=m, k=k, n=n))


def attn(*, q_addr: int, k_addr: int, v_addr: int, dst_addr: int, quant_addr: int, t: int,
         heads: int, head_dim: int, window: int, causal: bool, src_cols: int,
         dst_cols: int) -> Instruction:
    """Every head ``h`` of ``sw.ref.windowed_attention_int``: columns ``h*head_dim ..`` of the
    Q/K/V column slices (row width ``src_cols``) -> the same columns of ``dst`` (row width
    ``dst_cols``)."""
    return Instruction(Opcode.ATTN, dict(
        flags=int(AttnFlag.CAUSAL) if causal else 0, heads=heads, head_dim=head_dim,
        q_addr=q_addr, k_addr=k_addr, v_addr=v_addr, dst_addr=dst_addr, quant_addr=quant_addr,
        t=t, window=window, src_cols=src_cols, dst_cols=dst_cols))


def lnorm(*, a_addr: int, dst_addr: int, quant_addr: int, m: int, c: int) -> Instruction:
    """``sw.ref.layernorm_int`` of every row of ``A (M, C)``; quant words: epsilon, then C
    :data:`LNORM_WORD` channel words."""
    return Instruction(Opcode.LNORM, dict(a_addr=a_addr, dst_addr=dst_addr,
                                          quant_addr=quant_addr, m=m, c=c))


def vec(func: VecFunc, *, a_addr: int, dst_addr: int, m: int, c: int, b_addr: int = 0,
        quant_addr: int = 0, lut: int = 0) -> Instruction:
    """:class:`VecFunc` ``func`` over ``A (M, C)`` (and ``B`` for ``ADD``)."""
    return Instruction(Opcode.VEC, dict(func=int(VecFunc(func)), lut=lut, a_addr=a_addr,
                                        b_addr=b_addr, dst_addr=dst_addr, quant_addr=quant_addr,
                                        m=m, c=c))


def embed(*, ids_addr: int, table_addr: int, dst_addr: int, t: int, c: int,
          vocab: int) -> Instruction:
    """``dst (T, C) = table[ids]`` (``sw.ref.embedding_int``); ids are int32."""
    return Instruction(Opcode.EMBED, dict(ids_addr=ids_addr, table_addr=table_addr,
                                          dst_addr=dst_addr, t=t, c=c, vocab=vocab))


# -- quant words (64 bits each, in the QUANT scratchpad) -----------------------------------------

#: Per output channel of a GEMM (and the mean pool's one word, bias unused): the same bit
#: positions as ``hw.gemm_core.QUANT_LAYOUT``, so the GEMM core takes the low 53 bits as is.
CHANNEL_WORD = (Field("bias", 0, 32, True), Field("mult", 32, 15), Field("shift", 47, 6))
#: Per channel of a LayerNorm: ``beta`` (int32), requant pair, ``gamma`` (int8).
LNORM_WORD = (Field("beta", 0, 32, True), Field("mult", 32, 15), Field("shift", 47, 6),
              Field("gamma", 53, 8, True))
#: The word in front of a LayerNorm's channel words: ``eps_q`` of ``sw.ref.layernorm_int``.
EPS_WORD = (Field("eps", 0, 62),)
#: One attention instruction's ``sw.ref.AttentionQuant``.
ATTN_WORD = (Field("score_mult", 0, 15), Field("score_shift", 15, 6), Field("out_mult", 21, 15),
             Field("out_shift", 36, 6))
#: One residual add's ``(mult (2,), shift)`` of ``sw.ref.residual_add``.
RESID_WORD = (Field("mult_a", 0, 15), Field("mult_b", 15, 15), Field("shift", 30, 6))

for _fmt in (CHANNEL_WORD, LNORM_WORD, EPS_WORD, ATTN_WORD, RESID_WORD):
    _check_layout(_fmt, 8 * QUANT_WORD_BYTES)


# -- tensor layouts -------------------------------------------------------------------------------

def act_offset(t: int, c: int, *, cols: int, rows: int, elem: int = 1) -> int:
    """Byte offset of element ``(t, c)`` of an activation tensor with row width ``cols``.

    Activations are stored in blocks of ``rows`` (the array's rows) tokens: block ``t // rows``
    holds ``cols`` column words of ``rows`` elements, word ``c`` = ``x[block rows, c]`` -- exactly
    one operand word of the GEMM core's A buffer. A column slice starting at column ``c0`` is
    the tensor at ``base + c0 * rows * elem`` with the same ``cols``.
    """
    return ((t // rows) * cols * rows + c * rows + t % rows) * elem


def act_span(m: int, *, width: int, cols: int, rows: int, elem: int = 1) -> int:
    """Bytes from the base of an ``(m, width)`` column slice (row width ``cols``) to its end;
    for a whole tensor (``width == cols``) ``ceil(m / rows) * rows * cols * elem``. The rows of
    the last block past ``m`` are padding: units may write anything there and never read it
    into a result."""
    blocks = -(-m // rows)
    return ((blocks - 1) * cols + width) * rows * elem


def wgt_offset(k: int, n: int, *, k_len: int, cols: int) -> int:
    """Byte offset of ``W[k, n]`` of a GEMM weight ``(K, N)``: tiles of ``cols`` output columns,
    tile ``n // cols`` holds ``K`` rows of ``cols`` bytes (K-major, the order the GEMM core
    reads a tile); the last tile is zero-padded to ``cols`` columns."""
    return (n // cols) * k_len * cols + k * cols + n % cols


def wgt_span(k_len: int, n: int, *, cols: int) -> int:
    """Bytes of a tiled ``(K, N)`` weight: ``ceil(N / cols) * K * cols``."""
    return -(-n // cols) * k_len * cols


# -- memory map -----------------------------------------------------------------------------------

REGION_SHIFT = 24                           # each region has a 16 MiB window
REGION_NAMES = ("csr", "instr", "act", "wgt", "quant", "lut")
CSR_BLOCK_BYTES = 0x100


def quant_depth(params: AccelParams) -> int:
    """Quant words (64 bits each) of the QUANT scratchpad: ``max(64, wgt_depth // 32)``: one
    word per output channel, and a layer has far fewer channels than weight bytes / 32 unless
    it is narrower than 32 inputs."""
    return max(64, params.wgt_depth // 32)


class Csr(enum.IntEnum):
    """Byte offsets of the 32-bit control/status registers in the ``csr`` region."""

    DESIGN_ID = 0x00           # RO  AccelParams.design_id
    ISA_VERSION = 0x04         # RO  ISA_VERSION
    STATUS = 0x08              # RO  Status bits, CODE in bits 8..15
    CONTROL = 0x0C             # WO  Control bits (reads 0)
    ENTRY = 0x10               # RW  instruction index START begins at
    PC = 0x14                  # RO  instruction running / that halted / that failed
    PERF_CYCLES = 0x20         # RO  cycles from START to DONE or error
    PERF_INSTRET = 0x24        # RO  instructions retired
    PERF_GEMM_BUSY = 0x28      # RO  per unit: cycles working / cycles stalled on memory
    PERF_GEMM_STALL = 0x2C
    PERF_ATTN_BUSY = 0x30
    PERF_ATTN_STALL = 0x34
    PERF_VEC_BUSY = 0x38
    PERF_VEC_STALL = 0x3C
    PERF_LNORM_BUSY = 0x40
    PERF_LNORM_STALL = 0x44


CSR_ACCESS: dict[Csr, str] = {c: "ro" for c in Csr}
CSR_ACCESS[Csr.CONTROL] = "wo"
CSR_ACCESS[Csr.ENTRY] = "rw"


class Status(enum.IntFlag):
    BUSY = 1                   # a program is running
    DONE = 2                   # the last program reached HALT
    ERROR = 4                  # the last program stopped with CODE != 0


STATUS_CODE_SHIFT = 8          # STATUS bits 8..15: ErrorCode of the last program


class Control(enum.IntFlag):
    START = 1                  # run from ENTRY (ignored while BUSY); clears DONE, ERROR, PERF_*
    CLEAR = 2                  # clear DONE, ERROR and CODE


#: Units with perf counters, and the unit each opcode runs on.
UNITS = ("gemm", "attn", "vec", "lnorm")
_UNIT_OF = {Opcode.GEMM: "gemm", Opcode.ATTN: "attn", Opcode.VEC: "vec", Opcode.EMBED: "vec",
            Opcode.LNORM: "lnorm"}


def unit_of(opcode: Opcode) -> str | None:
    """The unit that executes ``opcode`` (``None`` for NOP, BARRIER and HALT)."""
    return _UNIT_OF.get(Opcode(opcode))


def host_runs(opcode: Opcode, params: AccelParams) -> bool:
    """Whether ``opcode``'s unit is left out of ``params``' hardware (``host_units``): the
    device stops at it with ``UNIT_ABSENT`` before checking its fields."""
    return unit_of(opcode) in params.host_units


class Region(NamedTuple):
    """``size`` bytes at bus byte address ``base``; ``writable`` by the host. A named tuple:
    ``for name, base, size, writable in memory_map(params).regions`` works."""

    name: str
    base: int
    size: int
    writable: bool

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class MemoryMap:
    """The host-visible address map of an accelerator built from ``params``.

    ``regions`` lists ``Region(name, base, size, writable)`` in :data:`REGION_NAMES` order.
    Addresses are byte addresses; the host link moves aligned 32-bit words, so every base and
    size is a multiple of 4. An access outside every region is refused by the link.
    """

    params: AccelParams
    regions: tuple[Region, ...]

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise ValueError(f"region must be one of {', '.join(REGION_NAMES)}, not {name!r}")

    def locate(self, address: int, length: int = LINK_WORD_BYTES) -> tuple[Region, int]:
        """``(region, offset)`` of ``length`` bytes at bus ``address``; ``ValueError`` if they
        are not inside one region."""
        for r in self.regions:
            if r.base <= address and address + length <= r.end:
                return r, address - r.base
        raise ValueError(f"address {address:#x} (+{length} bytes) is outside every region: "
                         + ", ".join(f"{r.name} [{r.base:#x}, {r.end:#x})" for r in self.regions))

    @property
    def address_width(self) -> int:
        """Bits of a bus byte address (every region fits below ``2**address_width``)."""
        return max(r.end for r in self.regions).bit_length()


def memory_map(params: AccelParams) -> MemoryMap:
    """The memory map of ``params`` (an :class:`hw.params.AccelParams`). Bases are fixed
    (``REGION_NAMES.index(name) << REGION_SHIFT``); sizes follow the parameters."""
    sizes = {
        "csr": CSR_BLOCK_BYTES,
        "instr": params.instr_depth * INSTR_BYTES,
        "act": params.act_depth,
        "wgt": params.wgt_depth,
        "quant": quant_depth(params) * QUANT_WORD_BYTES,
        "lut": params.lut_count * LUT_SIZE,
    }
    regions = []
    for i, name in enumerate(REGION_NAMES):
        if sizes[name] > 1 << REGION_SHIFT:
            raise ValueError(f"{name} region of {sizes[name]} bytes exceeds its 16 MiB window")
        regions.append(Region(name, i << REGION_SHIFT, sizes[name], True))
    return MemoryMap(params, tuple(regions))


# -- semantic checks ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """``size`` bytes at ``offset`` of region ``region`` that an instruction reads or writes
    (quant offsets in bytes too: word index * 8)."""

    region: str
    offset: int
    size: int
    write: bool

    def overlaps(self, other: Access) -> bool:
        return (self.region == other.region and self.offset < other.offset + other.size
                and other.offset < self.offset + self.size)


def _fail(code: ErrorCode, pc: int | None, msg: str):
    raise IsaError(code, msg, pc)


def validate(instr: Instruction, params: AccelParams, pc: int | None = None) -> list[Access]:
    """Check ``instr`` against ``params`` as the controller does before it dispatches it.

    Returns every operand as an :class:`Access`. Raises :class:`IsaError` with ``BAD_FIELD``,
    ``BAD_SHAPE`` or ``BAD_ADDRESS`` (quant word *values* and token ids are checked when they
    are read: ``BAD_QUANT``, ``BAD_TOKEN``).
    """
    op, f = instr.opcode, instr.fields
    rows, cols = params.rows, params.cols
    sizes = {r.name: r.size for r in memory_map(params).regions}
    out: list[Access] = []

    def shape(name: str, lo: int, hi: int, what: str = "") -> int:
        value = f[name]
        if not lo <= value <= hi:
            _fail(ErrorCode.BAD_SHAPE, pc, f"{op.name} {name} must be in [{lo}, {hi}]{what}, "
                  f"not {value}")
        return value

    def access(region: str, name: str, size: int, write: bool, align: int = 1) -> None:
        offset = f[name]
        if region == "quant":
            offset, size = offset * QUANT_WORD_BYTES, size * QUANT_WORD_BYTES
        if offset % align:
            _fail(ErrorCode.BAD_ADDRESS, pc, f"{op.name} {name} {offset} must be a multiple of "
                  f"{align} (a {region} word)")
        if offset + size > sizes[region]:
            _fail(ErrorCode.BAD_ADDRESS, pc, f"{op.name} {name} {offset} + {size} bytes leaves "
                  f"the {region} scratchpad of {sizes[region]} bytes")
        out.append(Access(region, offset, size, write))

    def lut_index() -> None:
        if f["lut"] >= params.lut_count:
            _fail(ErrorCode.BAD_FIELD, pc, f"{op.name} lut {f['lut']} must be < lut_count "
                  f"{params.lut_count}")
        out.append(Access("lut", f["lut"] * LUT_SIZE, LUT_SIZE, False))

    def zero(*names: str) -> None:
        for name in names:
            if f[name]:
                _fail(ErrorCode.BAD_FIELD, pc, f"{op.name} field {name} is unused here and "
                      f"must be 0, not {f[name]}")

    def tensor(name: str, m: int, c: int, write: bool, elem: int = 1) -> None:
        access("act", name, act_span(m, width=c, cols=c, rows=rows, elem=elem), write, rows)

    if op is Opcode.GEMM:
        flags = f["flags"]
        if flags & ~int(GemmFlag.LUT | GemmFlag.OUT32) or flags == GemmFlag.LUT | GemmFlag.OUT32:
            _fail(ErrorCode.BAD_FIELD, pc, f"GEMM flags {flags:#x}: only LUT or OUT32")
        m, k, n = shape("m", 1, 0xFFFF), shape("k", 1, params.k_depth, " (k_depth)"), \
            shape("n", 1, 0xFFFF)
        tensor("a_addr", m, k, False)
        access("wgt", "w_addr", wgt_span(k, n, cols=cols), False, cols)
        access("quant", "quant_addr", n, False)
        if flags & GemmFlag.LUT:
            lut_index()
        else:
            zero("lut")
        tensor("dst_addr", m, n, True, 4 if flags & GemmFlag.OUT32 else 1)
        a, d = out[0], out[-1]
        if a.offset < d.offset + d.size and d.offset < a.offset + a.size:
            # The hardware writes a tile's results while later tiles still read A (and, with
            # the next tile's operands loaded under the current one's compute, before this
            # tile's own A block is done), so a result overlapping A would corrupt it.
            _fail(ErrorCode.BAD_ADDRESS, pc, f"GEMM dst_addr {d.offset} + {d.size} bytes "
                  f"overlaps A at a_addr {a.offset} + {a.size} bytes (no in-place GEMM)")
    elif op is Opcode.ATTN:
        if f["flags"] & ~int(AttnFlag.CAUSAL):
            _fail(ErrorCode.BAD_FIELD, pc, f"ATTN flags {f['flags']:#x}: only CAUSAL")
        t = shape("t", 1, 0xFFFF)
        heads = shape("heads", 1, 0xFF)
        hd = shape("head_dim", 1, params.head_dim, " (head_dim)")
        shape("window", 1, params.window, " (window)")
        width = heads * hd
        src = shape("src_cols", width, 0xFFFF, " (at least heads * head_dim)")
        dst = shape("dst_cols", width, 0xFFFF, " (at least heads * head_dim)")
        for name in ("q_addr", "k_addr", "v_addr"):
            access("act", name, act_span(t, width=width, cols=src, rows=rows), False, rows)
        access("quant", "quant_addr", 1, False)
        access("act", "dst_addr", act_span(t, width=width, cols=dst, rows=rows), True, rows)
    elif op is Opcode.LNORM:
        m, c = shape("m", 1, 0xFFFF), shape("c", 1, LN_MAX_DIM)
        tensor("a_addr", m, c, False)
        access("quant", "quant_addr", 1 + c, False)
        tensor("dst_addr", m, c, True)
    elif op is Opcode.VEC:
        try:
            func = VecFunc(f["func"])
        except ValueError:
            _fail(ErrorCode.BAD_FIELD, pc, f"VEC func {f['func']} is not one of "
                  + ", ".join(f"{v.value} ({v.name})" for v in VecFunc))
        m, c = shape("m", 1, 0xFFFF), shape("c", 1, 0xFFFF)
        tensor("a_addr", m, c, False)
        if func is VecFunc.ADD:
            zero("lut")
            tensor("b_addr", m, c, False)
            access("quant", "quant_addr", 1, False)
            tensor("dst_addr", m, c, True)
        elif func is VecFunc.LUT:
            zero("b_addr", "quant_addr")
            lut_index()
            tensor("dst_addr", m, c, True)
        else:
            zero("b_addr", "lut")
            access("quant", "quant_addr", 1, False)
            tensor("dst_addr", 1, c, True)
    elif op is Opcode.EMBED:
        t, c = shape("t", 1, 0xFFFF), shape("c", 1, 0xFFFF)
        vocab = shape("vocab", 1, 0xFFFFFFFF)
        tensor("ids_addr", t, 1, False, 4)
        access("wgt", "table_addr", vocab * c, False, cols)
        tensor("dst_addr", t, c, True)
    return out
