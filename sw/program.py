# SPDX-License-Identifier: Apache-2.0
"""The program compiler: an int8 artifact + ``AccelParams`` -> device program + memory image.

:func:`compile_program` lowers :func:`sw.ref.model_forward_int` to ``hw.isa`` instructions (an
encoder layer is 9 operations and 9 barriers) and lays the model's integer tensors out in the
scratchpads in the layouts the units stream (``docs/isa.md``):

* GEMM weights in K-major tiles of ``cols`` columns (``hw.isa.wgt_offset``), token embedding
  tables row-major, in the weight scratchpad; per-channel bias/requant words, LayerNorm words,
  attention and residual words in the quant scratchpad; the GELU tables in the LUT scratchpad;
  the positional table (a constant activation) in the activation scratchpad;
* activations in row blocks of ``rows`` tokens (``hw.isa.act_offset``), in four buffers reused
  by every layer: the residual stream ``x``, a wide buffer for QKV and the FFN hidden layer, a
  narrow one for LayerNorm, attention and FFN outputs, plus the input and the logits.

The result is a :class:`Program`: the instruction words, the constant contents as named
:class:`Block` s (one per tensor, grouped by layer), where the input goes and where the logits
come out. A model that does not fit raises :class:`FitError` naming every exceeded limit.

Two modes (:attr:`Program.mode`). *Resident*: every constant is written once and one run from
``entry`` to HALT is an inference. *Streamed*, for a model whose weights (or quant words or
LUTs) exceed the preset's scratchpads: every layer (``embed``, ``blocks.i``, ``head``) ends
with a HALT and its weight, quant and LUT blocks are laid out from offset 0 of their regions,
so one layer's constants fit at a time; the host writes a layer's blocks, runs it from its
entry, waits for the HALT and goes on with the next (:meth:`Program.steps`). The activations
stay in the activation scratchpad between the runs, so both modes compute the same logits.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hw import isa
from hw.isa import VecFunc
from hw.link import protocol as lp
from hw.numerics import LUT_SIZE
from hw.params import AccelParams
from sw import quant, ref
from sw.isasim import MemoryImage, pack_act, pack_quant, pack_wgt, unpack_act

__all__ = ["MODES", "PROGRAM_FORMAT", "PROGRAM_FORMAT_VERSION", "STREAMED_REGIONS", "Block",
           "FitError", "Program",
           "ProgramFileError", "RandomArtifact", "TensorRef", "compile_program", "load_program",
           "random_artifact", "save_program"]

PROGRAM_FORMAT = "lightformer-program"
PROGRAM_FORMAT_VERSION = 2            # 2: mode and runs (version 1 files are resident)
#: ``Program.mode`` values.
MODES = ("resident", "streamed")
#: Regions whose blocks a streamed program writes layer by layer (the activation scratchpad's
#: constants stay resident: the activations between layers live there too).
STREAMED_REGIONS = ("wgt", "quant", "lut")
#: Limits that streaming can relieve (``FitError.limits`` entries' first field).
_STREAMABLE = ("weight bytes", "quant words", "GELU LUTs")


class FitError(ValueError):
    """The model does not fit the accelerator; ``limits`` lists every exceeded limit as
    ``(what, need, have, AccelParams field)`` (or, for a limit of the ISA itself, the
    ``hw.`` constant that sets it)."""

    def __init__(self, params: AccelParams, limits: list[tuple[str, int, int, str]]) -> None:
        self.limits = limits
        lines = "; ".join(f"{what}: needs {need}, has {have} "
                          f"({knob if knob.startswith('hw.') else 'AccelParams.' + knob})"
                          for what, need, have, knob in limits)
        super().__init__(f"the model does not fit the {params.name!r} accelerator: {lines}; "
                         "choose a larger preset (lightformer info lists them) or a smaller "
                         "model")


@dataclass(frozen=True)
class Block:
    """Constant bytes of the memory image: ``data`` at ``offset`` of ``region``; ``layer``
    groups the blocks of one layer (``"embed"``, ``"blocks.0"``, ..., ``"head"``)."""

    name: str
    layer: str
    region: str
    offset: int
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class TensorRef:
    """An activation tensor ``(m, c)`` of ``dtype`` at ``offset`` of the activation
    scratchpad (``hw.isa.act_offset`` layout); ``bus_address`` is where the host reads or
    writes it."""

    name: str
    offset: int
    m: int
    c: int
    dtype: str
    bus_address: int
    size: int


@dataclass(frozen=True)
class Program:
    """A compiled model: run it with :func:`sw.isasim.simulate` or on the device.

    Attributes
    ----------
    params : AccelParams
        The accelerator it was compiled for (its ``design_id`` must match the device's).
    instructions : tuple of hw.isa.Instruction
        Loaded at instruction index ``entry``.
    blocks : tuple of Block
        The constant image contents (weights, quant words, LUTs, the positional table).
    input, output : TensorRef
        Where one sample goes (int8 patches ``(T, patch_dim)`` or int32 token ids ``(T, 1)``)
        and where the int32 logits come out (``(1, n_classes)`` or ``(T, n_classes)``).
    usage : dict
        Bytes (instructions: words) used per region, and each region's capacity (streamed:
        the largest layer's bytes in the streamed regions).
    mode : str
        ``"resident"`` or ``"streamed"`` (module docstring).
    runs : tuple of (str, int)
        Streamed: ``(layer, entry)`` of each run, in order; resident: empty.
    """

    params: AccelParams
    instructions: tuple[isa.Instruction, ...]
    blocks: tuple[Block, ...]
    input: TensorRef
    output: TensorRef
    input_kind: str
    task: str
    seq_len: int
    artifact_digest: str
    usage: dict[str, dict[str, int]]
    entry: int = 0
    mode: str = "resident"
    runs: tuple[tuple[str, int], ...] = ()

    def resident_blocks(self) -> list[Block]:
        """The blocks written once, when the program is loaded."""
        if self.mode == "resident":
            return list(self.blocks)
        return [b for b in self.blocks if b.region not in STREAMED_REGIONS]

    def steps(self) -> list[tuple[int, list[Block]]]:
        """One inference: ``(entry, blocks to write first)`` per run, in order."""
        if self.mode == "resident":
            return [(self.entry, [])]
        return [(entry, [b for b in self.layer_blocks(layer) if b.region in STREAMED_REGIONS])
                for layer, entry in self.runs]

    @property
    def words(self) -> tuple[int, ...]:
        return tuple(isa.encode(i) for i in self.instructions)

    def layers(self) -> list[str]:
        """Layer names in image order (for writing a layer's blocks separately)."""
        return list(dict.fromkeys(b.layer for b in self.blocks))

    def layer_blocks(self, layer: str) -> list[Block]:
        return [b for b in self.blocks if b.layer == layer]

    def image(self) -> MemoryImage:
        """A fresh memory image holding the program and its resident blocks (every constant
        block of a resident program)."""
        image = MemoryImage(self.params)
        for b in self.resident_blocks():
            image.write(b.region, b.offset, b.data)
        image.load_program(self.words, self.entry)
        image.write_csr(isa.Csr.ENTRY, self.entry)
        return image

    def pack_input(self, sample: np.ndarray) -> bytes:
        """The bytes of one sample at ``input.offset`` (``sw.ref.quantize_input`` form:
        int8 ``(T, patch_dim)`` or token ids ``(T,)``)."""
        x = np.asarray(sample)
        t, c = self.input.m, self.input.c
        if self.input_kind == "tokens":
            if x.shape != (t,) or x.dtype.kind not in "iu":
                raise ValueError(f"input must be {t} integer token ids, not {x.dtype.name} "
                                 f"{x.shape}")
            if x.size and (x.min() < -(1 << 31) or x.max() >= 1 << 31):
                raise ValueError("token ids must fit int32")
            x = x.astype(np.int32)[:, None]
        elif x.shape != (t, c) or x.dtype != np.int8:
            raise ValueError(f"input must be int8 ({t}, {c}) (sw.ref.quantize_input), not "
                             f"{x.dtype.name} {x.shape}")
        return pack_act(x, self.params.rows)

    def write_input(self, image: MemoryImage, sample: np.ndarray) -> None:
        image.write("act", self.input.offset, self.pack_input(sample))

    def unpack_output(self, data: bytes) -> np.ndarray:
        """The output from the bytes at ``output.offset``, in ``output.dtype``: int32 logits
        ``(n_classes,)`` for a classifier, ``(T, n_classes)`` for a language model (as
        ``sw.ref.model_forward_int``); a BERT program's int8 last hidden state ``(T, d)`` or
        pooled embedding ``(d,)`` (``sw.bert_program``)."""
        y = unpack_act(data, self.output.m, self.output.c, self.params.rows,
                       np.dtype(self.output.dtype))
        return y[0] if self.task in ("classify", "bert-embed") else y

    def output_read(self) -> tuple[int, int, int] | None:
        """``(bus address, words, stride in words)`` of one strided READ that fetches a
        classifier's logits, or ``None`` (read the whole ``output.size`` block). The logits are
        one int32 row: logit ``n`` is the word at ``n * rows * 4`` (``docs/isa.md``), so the
        ``n_classes`` words are all the host needs of the ``rows * n_classes * 4`` bytes."""
        out, rows = self.output, self.params.rows
        if self.task != "classify" or out.m != 1 or out.dtype != "int32" \
                or rows > lp.MAX_STRIDE:
            return None
        return out.bus_address, out.c, rows

    def output_from_words(self, words: Sequence[int]) -> np.ndarray:
        """The logits from the words :meth:`output_read` names (as :meth:`unpack_output`)."""
        if self.output_read() is None or len(words) != self.output.c:
            raise ValueError(f"output_from_words takes the {self.output.c} words of a "
                             f"classifier's logits row, not {len(words)}")
        return np.array(words, dtype=np.uint32).view(np.int32)

    def read_output(self, image: MemoryImage) -> np.ndarray:
        return self.unpack_output(image.read("act", self.output.offset, self.output.size))

    @property
    def input_ndim(self) -> int:
        """Dimensions of one sample (2 for patches, 1 for tokens)."""
        return 1 if self.input_kind == "tokens" else 2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (for reports)."""
        def ref_dict(r: TensorRef) -> dict[str, Any]:
            return {"offset": r.offset, "bus_address": r.bus_address, "shape": [r.m, r.c],
                    "dtype": r.dtype, "bytes": r.size}
        return {"preset": self.params.name, "design_id": f"{self.params.design_id:08x}",
                "artifact_sha256": self.artifact_digest, "seq_len": self.seq_len,
                "instructions": len(self.instructions), "entry": self.entry,
                "mode": self.mode, "runs": [list(r) for r in self.runs],
                "input": ref_dict(self.input), "output": ref_dict(self.output),
                "usage": self.usage, "layers": self.layers()}


class _Alloc:
    """Bump allocator over one region, in the region's address units (bytes; quant words and
    LUTs count whole entries); offsets are rounded up to ``align``."""

    def __init__(self, region: str, align: int = 1) -> None:
        self.region = region
        self.align = align
        self.top = 0

    def take(self, size: int) -> int:
        self.top = -(-self.top // self.align) * self.align
        offset = self.top
        self.top += size
        return offset


class _Builder:
    def __init__(self, artifact: Any, params: AccelParams, seq_len: int) -> None:
        self.a = artifact.arrays
        self.cfg = artifact.config
        self.params = params
        self.rows = params.rows
        self.t = seq_len
        self.mem = {"act": _Alloc("act", params.rows), "wgt": _Alloc("wgt", params.cols),
                    "quant": _Alloc("quant"), "lut": _Alloc("lut")}
        self.blocks: list[Block] = []
        self.code: list[isa.Instruction] = []
        self.layer = "embed"
        self.k_max = 0
        self.streamed = False
        self.runs: list[tuple[str, int]] = [("embed", 0)]
        self.peak = dict.fromkeys(STREAMED_REGIONS, 0)

    def start_layer(self, name: str) -> None:
        """Constants from here on belong to layer ``name``; streamed, the previous layer's
        run ends with a HALT and the streamed regions are laid out from offset 0 again."""
        if self.streamed:
            self.code.append(isa.halt())
            for region in STREAMED_REGIONS:
                self.peak[region] = max(self.peak[region], self.mem[region].top)
                self.mem[region].top = 0
            self.runs.append((name, len(self.code)))
        self.layer = name

    def top(self, region: str) -> int:
        """The region's use: its allocator's top, or streamed the largest layer's."""
        return max(self.peak.get(region, 0), self.mem[region].top)

    # constants

    def check_fit(self, unit: str, extra: list[tuple[str, int, int, str]]) -> dict[str, Any]:
        """The scratchpad usage of the program built so far (``unit``: what one streamed run
        holds, e.g. "layer"); :class:`FitError` naming every limit it exceeds, the scratchpads'
        and instructions' first, then ``extra`` ``(what, needed, available, knob)`` rows."""
        params = self.params
        mmap = isa.memory_map(params)
        used = {"instr": len(self.code) * isa.INSTR_BYTES, "act": self.mem["act"].top,
                "wgt": self.top("wgt"), "quant": self.top("quant") * isa.QUANT_WORD_BYTES,
                "lut": self.top("lut") * LUT_SIZE}
        per = f" of the largest {unit}" if self.streamed else ""
        limits = [
            ("weight bytes" + per, used["wgt"], params.wgt_depth, "wgt_depth"),
            ("quant words" + per, self.top("quant"), isa.quant_depth(params),
             "wgt_depth; the quant scratchpad holds wgt_depth // 32 words"),
            ("activation bytes", used["act"], params.act_depth, "act_depth"),
            ("instructions", len(self.code), params.instr_depth, "instr_depth"),
            ("GELU LUTs" + per, self.top("lut"), params.lut_count, "lut_count"),
            *extra,
        ]
        over = [lim for lim in limits if lim[1] > lim[2]]
        if over:
            raise FitError(params, over)
        return {name: {"used": used[name], "size": mmap.region(name).size} for name in used}
    def block(self, name: str, region: str, data: bytes, unit: int = 1) -> int:
        offset = self.mem[region].take(len(data) // unit)
        self.blocks.append(Block(name, self.layer, region, offset * unit, data))
        return offset

    def quant(self, name: str, layout, **values) -> int:
        return self.block(name, "quant", pack_quant(layout, **values), isa.QUANT_WORD_BYTES)

    def linear(self, name: str, label: str | None = None) -> tuple[int, int, int, int]:
        """``(w_addr, quant_addr, K, N)`` of a linear layer's weight and channel words (blocks
        named ``label``, default ``name``: a layer placed twice needs two names)."""
        w = self.a[name + ".w"]
        label = name if label is None else label
        self.k_max = max(self.k_max, w.shape[0])
        w_addr = self.block(label + ".w", "wgt", pack_wgt(w, self.params.cols))
        q_addr = self.quant(label + ".quant", isa.CHANNEL_WORD, bias=self.a[name + ".b"],
                            mult=self.a[name + ".mult"], shift=self.a[name + ".shift"])
        return w_addr, q_addr, w.shape[0], w.shape[1]

    def layernorm(self, name: str) -> int:
        eps = self.quant(name + ".eps", isa.EPS_WORD, eps=self.a[name + ".eps"])
        self.quant(name + ".channels", isa.LNORM_WORD, beta=self.a[name + ".beta"],
                   mult=self.a[name + ".mult"], shift=self.a[name + ".shift"],
                   gamma=self.a[name + ".gamma"])
        return eps

    def residual(self, name: str) -> int:
        mult = self.a[name + ".mult"]
        return self.quant(name, isa.RESID_WORD, mult_a=mult[0], mult_b=mult[1],
                          shift=self.a[name + ".shift"])

    def tensor(self, name: str, m: int, c: int, dtype: str = "int8") -> TensorRef:
        elem = np.dtype(dtype).itemsize
        size = isa.act_span(m, width=c, cols=c, rows=self.rows, elem=elem)
        offset = self.mem["act"].take(size)
        base = isa.memory_map(self.params).region("act").base
        return TensorRef(name, offset, m, c, dtype, base + offset, size)

    # code
    def emit(self, instr: isa.Instruction) -> None:
        """An operation and the barrier after it (each operation reads its predecessor's
        result, so nothing may overlap across them)."""
        self.code += [instr, isa.barrier()]

    def gemm(self, name: str, src: TensorRef, dst: TensorRef, **kw) -> None:
        w_addr, q_addr, k, n = self.linear(name)
        self.emit(isa.gemm(a_addr=src.offset, w_addr=w_addr, dst_addr=dst.offset,
                           quant_addr=q_addr, m=self.t, k=k, n=n, **kw))

    def add(self, name: str, x: TensorRef, other_addr: int) -> None:
        self.emit(isa.vec(VecFunc.ADD, a_addr=x.offset, b_addr=other_addr, dst_addr=x.offset,
                          quant_addr=self.residual(name), m=self.t, c=x.c))

    def lnorm(self, name: str, src: TensorRef, dst: TensorRef) -> None:
        self.emit(isa.lnorm(a_addr=src.offset, dst_addr=dst.offset,
                            quant_addr=self.layernorm(name), m=self.t, c=src.c))


def _span(cfg: dict[str, Any], seq_len: int) -> tuple[int, bool]:
    """Attention window of the ATTN instructions: the model's span, clamped to the widest
    window that still differs from full attention at ``seq_len`` (``T`` causal, ``2T - 1``
    centred): the same keys, so the same result, on a smaller unit."""
    window, causal = ref._attention_span(cfg, seq_len)
    return min(window, seq_len if causal else 2 * seq_len - 1), causal


def compile_program(artifact: Any, params: AccelParams, *, seq_len: int | None = None,
                    mode: str | None = None) -> Program:
    """Lower ``artifact`` (:class:`sw.artifact.Artifact`) to a :class:`Program` for ``params``.

    ``seq_len``: tokens per sample (default and, for classifiers, required: the model's).
    ``mode``: ``"resident"``, ``"streamed"`` or ``None`` (default): resident when the model's
    constants fit the scratchpads, else streamed (module docstring).
    Raises :class:`FitError` naming every limit the model exceeds (weights, quant words,
    activations, instructions, LUTs, head_dim, window, GEMM depth); in the default mode, the
    streamed program's limits when streaming does not make it fit either.
    """
    if mode is None:
        try:
            return _compile(artifact, params, seq_len, "resident")
        except FitError as exc:
            if not all(what in _STREAMABLE for what, *_ in exc.limits):
                raise
        return _compile(artifact, params, seq_len, "streamed")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES} or None, not {mode!r}")
    return _compile(artifact, params, seq_len, mode)


def _compile(artifact: Any, params: AccelParams, seq_len: int | None, mode: str) -> Program:
    cfg, a = artifact.config, artifact.arrays
    t = cfg["seq_len"] if seq_len is None else seq_len
    if isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= cfg["seq_len"]:
        raise ValueError(f"seq_len must be an integer in [1, {cfg['seq_len']}], not {t!r}")
    if cfg["task"] == "classify" and t != cfg["seq_len"]:
        raise ValueError(f"a classifier takes exactly seq_len={cfg['seq_len']} tokens, not {t}")
    d, n_heads, n_layers = cfg["d_model"], cfg["n_heads"], cfg["n_layers"]
    hd = d // n_heads
    window, causal = _span(cfg, t)
    b = _Builder(artifact, params, t)
    b.streamed = mode == "streamed"

    # Activation buffers (reused by every layer).
    if cfg["input_kind"] == "patches":
        inp = b.tensor("input", t, cfg["patch_dim"])
    else:
        inp = b.tensor("input", t, 1, "int32")
    x = b.tensor("x", t, d)
    wide = b.tensor("wide", t, max(3 * d, cfg["d_ff"]))
    narrow = b.tensor("narrow", t, d)
    qkv = TensorRef("qkv", wide.offset, t, 3 * d, "int8", wide.bus_address, wide.size)
    ffn = TensorRef("ffn", wide.offset, t, cfg["d_ff"], "int8", wide.bus_address, wide.size)
    classify = cfg["task"] == "classify"
    pooled = b.tensor("pooled", 1, d) if classify else None
    logits = b.tensor("logits", 1 if classify else t, cfg["n_classes"], "int32")
    pos = b.block("pos.table", "act", pack_act(np.ascontiguousarray(a["pos.table"][:t]),
                                               params.rows))

    # Input projection (a GEMM) or embedding gather, then the positional add (a residual add
    # with a constant tensor): no opcode of their own beyond EMBED.
    if cfg["input_kind"] == "patches":
        b.gemm("embed", inp, x)
    else:
        table = a["embed.table"]
        addr = b.block("embed.table", "wgt", np.ascontiguousarray(table).tobytes())
        b.emit(isa.embed(ids_addr=inp.offset, table_addr=addr, dst_addr=x.offset, t=t, c=d,
                         vocab=table.shape[0]))
    b.add("pos.add", x, pos)

    for i in range(n_layers):
        p = f"blocks.{i}."
        b.start_layer(f"blocks.{i}")
        b.lnorm(p + "ln1", x, narrow)
        b.gemm(p + "attn.qkv", narrow, qkv)
        quant = a[p + "attn.quant"]
        q_addr = b.quant(p + "attn.quant", isa.ATTN_WORD, score_mult=quant[0],
                         score_shift=quant[1], out_mult=quant[2], out_shift=quant[3])
        b.emit(isa.attn(q_addr=qkv.offset, k_addr=qkv.offset + d * params.rows,
                        v_addr=qkv.offset + 2 * d * params.rows, dst_addr=narrow.offset,
                        quant_addr=q_addr, t=t, heads=n_heads, head_dim=hd, window=window,
                        causal=causal, src_cols=3 * d, dst_cols=d))
        proj = TensorRef("proj", wide.offset, t, d, "int8", wide.bus_address, wide.size)
        b.gemm(p + "attn.proj", narrow, proj)
        b.add(p + "add1", x, proj.offset)
        b.lnorm(p + "ln2", x, narrow)
        lut = b.block(p + "ffn.gelu_lut", "lut", a[p + "ffn.gelu_lut"].tobytes(), LUT_SIZE)
        b.gemm(p + "ffn.fc1", narrow, ffn, lut=lut)
        b.gemm(p + "ffn.fc2", ffn, narrow)
        b.add(p + "add2", x, narrow.offset)

    b.start_layer("head")
    b.lnorm("ln_f", x, narrow)
    head_in = narrow
    if classify:
        pool = b.quant("pool", isa.CHANNEL_WORD, mult=a["pool.mult"], shift=a["pool.shift"])
        b.emit(isa.vec(VecFunc.MEANPOOL, a_addr=narrow.offset, dst_addr=pooled.offset,
                       quant_addr=pool, m=t, c=d))
        head_in = pooled
    w_addr = b.block("head.w", "wgt", pack_wgt(a["head.w"], params.cols))
    q_head = b.quant("head.quant", isa.CHANNEL_WORD, bias=a["head.b"])
    b.code.append(isa.gemm(a_addr=head_in.offset, w_addr=w_addr, dst_addr=logits.offset,
                           quant_addr=q_head, m=logits.m, k=d, n=cfg["n_classes"], out32=True))
    b.k_max = max(b.k_max, d)
    b.code.append(isa.halt())

    usage = b.check_fit("layer", [
        ("head_dim", hd, params.head_dim, "head_dim"),
        ("attention window", window, params.window, "window"),
        ("GEMM reduction length K", b.k_max, params.k_depth, "k_depth"),
    ])
    return Program(params=params, instructions=tuple(b.code), blocks=tuple(b.blocks),
                   input=inp, output=logits, input_kind=cfg["input_kind"], task=cfg["task"],
                   seq_len=t, artifact_digest=artifact.digest, usage=usage, mode=mode,
                   runs=tuple(b.runs) if b.streamed else ())


# -- program files --------------------------------------------------------------------------------

class ProgramFileError(ValueError):
    """A program file is missing, corrupt, of another format or version."""


def save_program(program: Program, path: str | os.PathLike[str]) -> Path:
    """Write ``program`` to one ``.safetensors`` file (atomically): every constant block and the
    instruction bytes as uint8 tensors, the rest as a JSON manifest in the metadata."""
    import safetensors.numpy

    from sw.report import atomic_write_bytes

    tensors = {"instr": np.frombuffer(isa.to_bytes(program.words), np.uint8)}
    for b in program.blocks:
        tensors[f"{b.region}:{b.name}"] = np.frombuffer(b.data, np.uint8)
    manifest = {
        "format": PROGRAM_FORMAT, "format_version": PROGRAM_FORMAT_VERSION,
        "isa_version": isa.ISA_VERSION,
        "params": {f.name: getattr(program.params, f.name)
                   for f in dataclasses.fields(program.params) if f.init},
        "design_id": program.params.design_id, "entry": program.entry,
        "mode": program.mode, "runs": [list(r) for r in program.runs],
        "input_kind": program.input_kind, "task": program.task, "seq_len": program.seq_len,
        "artifact_digest": program.artifact_digest, "usage": program.usage,
        "input": dataclasses.asdict(program.input), "output": dataclasses.asdict(program.output),
        "blocks": [{"name": b.name, "layer": b.layer, "region": b.region, "offset": b.offset}
                   for b in program.blocks],
    }
    data = safetensors.numpy.save(tensors, metadata={PROGRAM_FORMAT: json.dumps(manifest)})
    return atomic_write_bytes(path, data)


def load_program(path: str | os.PathLike[str]) -> Program:
    """Read a file of :func:`save_program`; :class:`ProgramFileError` says what is wrong."""
    import safetensors
    import safetensors.numpy

    path = Path(path)
    redo = "compile it again with sw.program.compile_program"
    if not path.is_file():
        raise ProgramFileError(f"{path}: file not found; check the path or {redo}")
    data = path.read_bytes()
    try:
        tensors = safetensors.numpy.load(data)
        with safetensors.safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
        manifest = json.loads(meta[PROGRAM_FORMAT])
    except (KeyError, ValueError, OSError, safetensors.SafetensorError) as exc:
        raise ProgramFileError(f"{path}: not a {PROGRAM_FORMAT} file ({exc}); {redo}") from None
    if manifest.get("format_version") not in (1, PROGRAM_FORMAT_VERSION) \
            or manifest.get("isa_version") != isa.ISA_VERSION:
        raise ProgramFileError(
            f"{path}: program format {manifest.get('format_version')!r} / ISA "
            f"{manifest.get('isa_version')!r}, this lightformer reads {PROGRAM_FORMAT_VERSION} / "
            f"{isa.ISA_VERSION}; {redo}")
    params = AccelParams(**manifest["params"])
    if params.design_id != manifest["design_id"]:
        raise ProgramFileError(f"{path}: the parameters no longer give design id "
                               f"{manifest['design_id']:08x}; {redo}")
    try:
        blocks = tuple(Block(b["name"], b["layer"], b["region"], b["offset"],
                             tensors[f"{b['region']}:{b['name']}"].tobytes())
                       for b in manifest["blocks"])
        words = isa.from_bytes(tensors["instr"].tobytes())
    except KeyError as exc:
        raise ProgramFileError(f"{path}: tensor {exc} is missing; {redo}") from None
    return Program(params=params, instructions=tuple(isa.decode(w, i) for i, w in
                                                     enumerate(words)),
                   blocks=blocks, input=TensorRef(**manifest["input"]),
                   output=TensorRef(**manifest["output"]), input_kind=manifest["input_kind"],
                   task=manifest["task"], seq_len=manifest["seq_len"],
                   artifact_digest=manifest["artifact_digest"], usage=manifest["usage"],
                   entry=manifest["entry"], mode=manifest.get("mode", "resident"),
                   runs=tuple((str(layer), int(entry))
                              for layer, entry in manifest.get("runs", [])))


# -- random models (tests and benchmarks) ---------------------------------------------------------

@dataclass(frozen=True)
class RandomArtifact:
    """A model of random integer tensors with what :func:`compile_program` and
    :func:`sw.ref.model_forward_int` read of a :class:`sw.artifact.Artifact`."""

    config: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(repr=False)
    digest: str
    scales: dict[str, float] = field(default_factory=lambda: {"input": 0.05})

    @property
    def task(self) -> str:
        return self.config["task"]


_RANDOM_DEFAULTS = dict(task="classify", input_kind="patches", attention="window", causal=True,
                        n_layers=1)


def random_artifact(config: dict[str, Any], *, seed: int = 0) -> RandomArtifact:
    """Random int8 weights of every tensor a model of ``config`` has (``sw.artifact``'s schema),
    with requant constants that keep the activations spread over int8: neither saturated nor
    zero. ``config`` holds ``sw.model.ModelConfig`` fields (task, input_kind, patch_dim or
    vocab_size, seq_len, n_classes, d_model, n_heads, n_layers, d_ff, attention, window, causal);
    a window-attention causal classifier of one layer unless it says otherwise."""
    from sw.artifact import expected_arrays, validate_config

    cfg = validate_config(dict(_RANDOM_DEFAULTS, **config), "random model config")
    want = expected_arrays(cfg)
    rng = np.random.default_rng(seed)
    scale = 0.05                                      # every activation's nominal scale
    arrays: dict[str, np.ndarray] = {}

    def mults(shape: tuple[int, ...]) -> np.ndarray:
        return rng.integers(1 << 14, 1 << 15, shape)

    for name, (dtype, shape) in want.items():
        base, kind = name.rsplit(".", 1)
        if name == "pos.table":
            value = rng.integers(-60, 61, shape)
        elif kind in ("w", "table", "gamma"):
            value = rng.integers(-127, 128, shape)
        elif kind in ("b", "beta"):
            value = rng.integers(-3000, 3000, shape)
        elif kind == "mult" and shape == (2,):          # residual add: unequal input scales
            value, shift = ref.residual_params(scale, 0.6 * scale, 1.4 * scale)
            arrays[base + ".shift"] = np.array(shift, want[base + ".shift"][0])
        elif kind == "mult" and base == "pool":
            value, shift = quant.quantize_multiplier(1.0 / cfg["seq_len"])
            arrays["pool.shift"] = np.array(shift, want["pool.shift"][0])
        elif kind == "mult" and base + ".gamma" in want:  # LayerNorm: n (Q.10) * gamma ~ 2**16
            value = mults(shape)
            arrays[base + ".shift"] = np.full(shape, 26, want[base + ".shift"][0])
        elif kind == "mult":                              # linear: |acc| ~ sqrt(K) * 127 * 70
            value = mults(shape)
            k = want[base + ".w"][1][0]
            shift = 15 + int(np.log2(np.sqrt(k) * 127 * 70 / 40))
            arrays[base + ".shift"] = np.full(shape, shift, want[base + ".shift"][0])
        elif kind == "shift":
            continue                                      # set beside its multiplier
        elif kind == "eps":
            value = ref.layernorm_eps_q(cfg["d_model"], 1e-5, scale)
        elif kind == "gelu_lut":
            value = ref.build_gelu_lut(scale, scale)
        elif name.endswith(".attn.quant"):
            q = ref.AttentionQuant.from_scales(scale, scale, scale, scale,
                                               cfg["d_model"] // cfg["n_heads"])
            value = [q.score_mult, q.score_shift, q.out_mult, q.out_shift]
        else:
            raise AssertionError(f"no random values for tensor {name!r}")
        arrays[name] = np.asarray(value).astype(dtype).reshape(shape)
    digest = hashlib.sha256(b"".join(arrays[n].tobytes() for n in sorted(arrays))).hexdigest()
    return RandomArtifact(cfg, arrays, digest)
