# SPDX-License-Identifier: Apache-2.0
"""Import a BERT-family encoder from a local Hugging Face folder (no network, no ``transformers``).

A folder as ``save_pretrained`` writes it::

    config.json              model_type "bert", sizes, hidden_act, position_embedding_type, ...
    model.safetensors        the weights (read with the safetensors NumPy API; never pickles)
    tokenizer.json           a ``tokenizers`` tokenizer, or else
    vocab.txt                a WordPiece vocabulary (+ ``tokenizer_config.json``'s do_lower_case)

:func:`load_hf` checks the config (one error naming every field lightformer cannot run), maps every
checkpoint key through one explicit table (:data:`EMBEDDING_KEYS`, :data:`LAYER_KEYS`,
:data:`POOLER_KEYS`: Hugging Face name -> our name, transpose flag, q/k/v part), checks every
shape, and returns an :class:`ImportedBert`: float32 tensors named as ``sw.bert.BertEncoder``'s
state dict, the tokenizer and the keys it did not use. The query, key and value projections
become one ``qkv`` matrix, as in the LightTransformer (``sw.model``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "EMBEDDING_KEYS", "LAYER_KEYS", "POOLER_KEYS", "BertConfig", "ImportedBert", "KeyMap",
    "check_head_keep", "encode_batch", "load_config", "load_hf", "load_tokenizer", "load_weights",
    "wordpiece_from_text",
]


class KeyMap(NamedTuple):
    """One row of the key table.

    ``transpose`` says whether the stored matrix must be transposed into our layout; BERT stores
    every dense weight as ``nn.Linear`` does, ``(out, in)``, which is also ours, so no BERT row
    transposes (checkpoints of ``Conv1D`` models store ``(in, out)``; they are not BERT-family).
    ``part`` is ``(index, count)`` when several checkpoint tensors are stacked along axis 0 into
    one of ours (query, key, value -> ``qkv``), else ``None``.
    """

    hf: str
    ours: str
    transpose: bool = False
    part: tuple[int, int] | None = None


#: Embeddings: word, position and token-type tables and the embedding LayerNorm.
EMBEDDING_KEYS: tuple[KeyMap, ...] = (
    KeyMap("embeddings.word_embeddings.weight", "embed.word.weight"),
    KeyMap("embeddings.position_embeddings.weight", "embed.pos.weight"),
    KeyMap("embeddings.token_type_embeddings.weight", "embed.token_type.weight"),
    KeyMap("embeddings.LayerNorm.weight", "embed.ln.weight"),
    KeyMap("embeddings.LayerNorm.bias", "embed.ln.bias"),
)

#: One encoder layer; ``{i}`` is the layer index on both sides.
LAYER_KEYS: tuple[KeyMap, ...] = (
    KeyMap("encoder.layer.{i}.attention.self.query.weight", "layers.{i}.attn.qkv.weight",
           part=(0, 3)),
    KeyMap("encoder.layer.{i}.attention.self.query.bias", "layers.{i}.attn.qkv.bias", part=(0, 3)),
    KeyMap("encoder.layer.{i}.attention.self.key.weight", "layers.{i}.attn.qkv.weight",
           part=(1, 3)),
    KeyMap("encoder.layer.{i}.attention.self.key.bias", "layers.{i}.attn.qkv.bias", part=(1, 3)),
    KeyMap("encoder.layer.{i}.attention.self.value.weight", "layers.{i}.attn.qkv.weight",
           part=(2, 3)),
    KeyMap("encoder.layer.{i}.attention.self.value.bias", "layers.{i}.attn.qkv.bias",
           part=(2, 3)),
    KeyMap("encoder.layer.{i}.attention.output.dense.weight", "layers.{i}.attn.proj.weight"),
    KeyMap("encoder.layer.{i}.attention.output.dense.bias", "layers.{i}.attn.proj.bias"),
    KeyMap("encoder.layer.{i}.attention.output.LayerNorm.weight", "layers.{i}.ln1.weight"),
    KeyMap("encoder.layer.{i}.attention.output.LayerNorm.bias", "layers.{i}.ln1.bias"),
    KeyMap("encoder.layer.{i}.intermediate.dense.weight", "layers.{i}.ffn.fc1.weight"),
    KeyMap("encoder.layer.{i}.intermediate.dense.bias", "layers.{i}.ffn.fc1.bias"),
    KeyMap("encoder.layer.{i}.output.dense.weight", "layers.{i}.ffn.fc2.weight"),
    KeyMap("encoder.layer.{i}.output.dense.bias", "layers.{i}.ffn.fc2.bias"),
    KeyMap("encoder.layer.{i}.output.LayerNorm.weight", "layers.{i}.ln2.weight"),
    KeyMap("encoder.layer.{i}.output.LayerNorm.bias", "layers.{i}.ln2.bias"),
)

#: Optional: the pooler (tanh(W h_[CLS] + b)); imported when both tensors are present.
POOLER_KEYS: tuple[KeyMap, ...] = (
    KeyMap("pooler.dense.weight", "pooler.weight"),
    KeyMap("pooler.dense.bias", "pooler.bias"),
)

# Buffers some checkpoints carry that hold no weights (position ids 0..max-1).
_BUFFERS = ("embeddings.position_ids",)
# BERT vocabularies start with these (ids 0..4 in the uncased models).
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Task heads (BertForMaskedLM, BertForSequenceClassification, ...) prefix the encoder with this.
_ENCODER_PREFIX = "bert."
# Checkpoints converted from TensorFlow name LayerNorm parameters gamma/beta.
_LEGACY_SUFFIXES = ((".gamma", ".weight"), (".beta", ".bias"))
# "gelu" in Hugging Face configs is the exact erf GELU (torch.nn.GELU()); the tanh forms differ.
_EXACT_GELU = ("gelu", "gelu_python")
# config.json fields the twin and the integer model depend on: key, default, accepted, in words.
_RUNNABLE = (
    ("model_type", None, ("bert",), "'bert'"),
    ("hidden_act", "gelu", _EXACT_GELU, "'gelu', the exact erf form"),
    ("position_embedding_type", "absolute", ("absolute",), "'absolute'"),
    ("is_decoder", False, (False,), "false"),
    ("add_cross_attention", False, (False,), "false"),
)


def _fail(where: Path | str, what: str, todo: str) -> ValueError:
    return ValueError(f"{where}: {what}; {todo}")


@dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT encoder (from ``config.json``; names as in ``sw.model.ModelConfig``)."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_positions: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def check_head_keep(head_keep, cfg) -> np.ndarray | None:
    """``head_keep`` as a bool ``(n_layers, n_heads)`` array (``None`` stays ``None``).

    ``ValueError`` naming the expected shape when it does not match the model.
    """
    if head_keep is None:
        return None
    keep = np.asarray(head_keep)
    if keep.dtype != np.bool_ or keep.shape != (cfg.n_layers, cfg.n_heads):
        raise ValueError(f"head_keep must be a bool array of shape (n_layers, n_heads) = "
                         f"({cfg.n_layers}, {cfg.n_heads}), not {keep.dtype} {keep.shape}")
    return keep


def load_config(folder: Path | str) -> BertConfig:
    """Read and check ``folder/config.json``.

    One ``ValueError`` names every field whose value lightformer cannot run (model type, GELU
    form, position embeddings, decoder or cross-attention flags, head split), so a user sees all
    differences at once.
    """
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no config.json; pass the folder that save_pretrained "
                                "wrote (config.json, model.safetensors, vocab.txt/tokenizer.json)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({exc})", "restore the file from the model") from None
    if not isinstance(raw, dict):
        raise _fail(path, "must hold a JSON object", "restore the file from the model")
    diffs = [f"{key} is {raw.get(key, default)!r} (need {need})"
             for key, default, accepted, need in _RUNNABLE if raw.get(key, default) not in accepted]
    sizes = {}
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            diffs.append(f"{key} is {value!r} (need a positive integer)")
        sizes[key] = value
    if not diffs and sizes["hidden_size"] % sizes["num_attention_heads"]:
        diffs.append(f"hidden_size {sizes['hidden_size']} is not a multiple of "
                     f"num_attention_heads {sizes['num_attention_heads']}")
    if diffs:
        raise _fail(path, "describes a model lightformer cannot run: " + "; ".join(diffs),
                    "lightformer imports BERT-family encoders (model_type 'bert', exact GELU, "
                    "absolute positions, post-LN, no decoder)")
    return BertConfig(
        vocab_size=sizes["vocab_size"], d_model=sizes["hidden_size"],
        n_layers=sizes["num_hidden_layers"], n_heads=sizes["num_attention_heads"],
        d_ff=sizes["intermediate_size"], max_positions=sizes["max_position_embeddings"],
        type_vocab_size=int(raw.get("type_vocab_size", 2)),
        layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        pad_token_id=int(raw.get("pad_token_id") or 0))


def _expected_shapes(cfg: BertConfig) -> dict[str, tuple[int, ...]]:
    """Our name -> shape (the shapes of ``sw.bert.BertEncoder``'s parameters)."""
    d, f = cfg.d_model, cfg.d_ff
    shapes: dict[str, tuple[int, ...]] = {
        "embed.word.weight": (cfg.vocab_size, d), "embed.pos.weight": (cfg.max_positions, d),
        "embed.token_type.weight": (cfg.type_vocab_size, d), "embed.ln.weight": (d,),
        "embed.ln.bias": (d,), "pooler.weight": (d, d), "pooler.bias": (d,)}
    per_layer = {"attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
                 "attn.proj.weight": (d, d), "attn.proj.bias": (d,), "ln1.weight": (d,),
                 "ln1.bias": (d,), "ffn.fc1.weight": (f, d), "ffn.fc1.bias": (f,),
                 "ffn.fc2.weight": (d, f), "ffn.fc2.bias": (d,), "ln2.weight": (d,),
                 "ln2.bias": (d,)}
    for i in range(cfg.n_layers):
        shapes.update({f"layers.{i}.{k}": v for k, v in per_layer.items()})
    return shapes


def _key_table(cfg: BertConfig) -> list[KeyMap]:
    rows = list(EMBEDDING_KEYS)
    for i in range(cfg.n_layers):
        rows += [KeyMap(r.hf.format(i=i), r.ours.format(i=i), r.transpose, r.part)
                 for r in LAYER_KEYS]
    return rows


_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    out = {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():
                try:
                    tensor = f.get_tensor(key)
                    problem = None
                except TypeError as exc:               # NumPy has no bfloat16 of its own
                    tensor, problem = None, str(exc)
                # With ml_dtypes imported (onnx, jax and others do), NumPy reads bfloat16 as a
                # kind-'V' dtype: refuse it the same way, whatever was imported before.
                if tensor is not None and not (tensor.dtype in _FLOAT_DTYPES
                                               or tensor.dtype.kind in "iub"):
                    problem = f"dtype {tensor.dtype}"
                if problem is not None:
                    raise _fail(path, f"tensor {key!r} has a dtype NumPy cannot read ({problem})",
                                "save the model in float32 or float16 (e.g. "
                                "model.float().save_pretrained(DIR))")
                out[key] = tensor
    except SafetensorError as exc:
        raise _fail(path, f"not a readable safetensors file ({exc})",
                    "re-save the model with save_pretrained(DIR)") from None
    return out


def load_weights(folder: Path | str, cfg: BertConfig) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map ``folder/model.safetensors`` to our names: ``(tensors, unexpected_keys)``.

    Every key of the table must be present with its shape (one ``ValueError`` lists all missing
    or misshapen keys); the pooler is optional. Checkpoint keys the table does not use (task
    heads such as ``cls.*`` or ``classifier.*``) are returned as ``unexpected_keys``.
    """
    folder = Path(folder)
    path = folder / "model.safetensors"
    if not path.is_file():
        if (folder / "pytorch_model.bin").is_file():
            raise _fail(folder, "holds pytorch_model.bin, a pickle, which lightformer does not "
                        "load (unpickling can run code from the file)",
                        "convert it once, where you trust the file, with transformers: "
                        "AutoModel.from_pretrained(DIR).save_pretrained(DIR) writes "
                        "model.safetensors")
        raise _fail(folder, "no model.safetensors",
                    "pass a folder written by save_pretrained with one model.safetensors file "
                    "(sharded checkpoints are not supported)")
    raw = _read_safetensors(path)
    prefix = _ENCODER_PREFIX if _ENCODER_PREFIX + EMBEDDING_KEYS[0].hf in raw else ""
    names = {}
    for key in raw:                                    # table key -> checkpoint key
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        if "LayerNorm." in k:
            for old, new in _LEGACY_SUFFIXES:
                if k.endswith(old):
                    k = k[: -len(old)] + new
        names[k] = key
    shapes = _expected_shapes(cfg)
    rows = _key_table(cfg)
    if all(r.hf in names for r in POOLER_KEYS):
        rows += POOLER_KEYS
    parts: dict[str, list[np.ndarray | None]] = {}
    problems, used = [], set()
    for r in rows:
        if r.hf not in names:
            problems.append(f"missing {prefix + r.hf}")
            continue
        used.add(names[r.hf])
        t = np.asarray(raw[names[r.hf]], dtype=np.float32)
        if r.transpose:
            t = t.T
        want = shapes[r.ours]
        if r.part is not None:
            want = (want[0] // r.part[1],) + want[1:]
        if t.shape != want:
            problems.append(f"{names[r.hf]} has shape {t.shape}, config.json implies {want}")
            continue
        index, count = r.part if r.part is not None else (0, 1)
        parts.setdefault(r.ours, [None] * count)[index] = t
    if problems:
        shown = "; ".join(problems[:8]) + (f"; ... ({len(problems)} in all)"
                                           if len(problems) > 8 else "")
        raise _fail(path, f"does not match a BERT encoder of config.json: {shown}",
                    "check that config.json and model.safetensors come from one model")
    tensors = {k: np.ascontiguousarray(np.concatenate(v, axis=0)) for k, v in parts.items()}
    unexpected = sorted(k for k in raw if k not in used
                        and k[len(prefix):] not in _BUFFERS and k not in _BUFFERS)
    return tensors, unexpected


def load_tokenizer(folder: Path | str):
    """The folder's tokenizer (a ``tokenizers`` tokenizer; padding and truncation off).

    ``tokenizer.json`` when present, else a WordPiece tokenizer over ``vocab.txt``, lower-casing
    as ``tokenizer_config.json``'s ``do_lower_case`` says (default True, as BERT's tokenizer).
    """
    from tokenizers import Tokenizer
    from tokenizers.implementations import BertWordPieceTokenizer

    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        try:
            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:                       # the Rust parser raises plain Exception
            raise _fail(folder / "tokenizer.json", f"not a readable tokenizer ({exc})",
                        "restore the file, or delete it to use vocab.txt") from None
    elif (folder / "vocab.txt").is_file():
        lower = True
        cfg_path = folder / "tokenizer_config.json"
        if cfg_path.is_file():
            lower = bool(json.loads(cfg_path.read_text(encoding="utf-8")).get(
                "do_lower_case", True))
        tok = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=lower)
    else:
        raise FileNotFoundError(f"{folder}: no tokenizer.json or vocab.txt; copy the model's "
                                "tokenizer files into the folder")
    tok.no_padding()
    tok.no_truncation()
    return tok


def wordpiece_from_text(sentences: list[str], size: int = 1000):
    """A lower-casing WordPiece tokenizer over the ``size`` most common words of ``sentences``.

    For random test models (no download): ids 0..4 are [PAD] [UNK] [CLS] [SEP] [MASK], as in
    BERT's vocabularies; words are split as BERT's pre-tokenizer splits them (word characters,
    single punctuation marks). Returns ``(tokenizer, vocab list)``.
    """
    import collections
    import re

    from tokenizers.implementations import BertWordPieceTokenizer

    words = collections.Counter(w for s in sentences
                                for w in re.findall(r"\w+|[^\w\s]", s.lower()))
    vocab = [*_SPECIAL_TOKENS, *(w for w, _ in words.most_common(size))]
    return BertWordPieceTokenizer({w: i for i, w in enumerate(vocab)}, lowercase=True), vocab


def encode_batch(tokenizer, sentences: list[str], max_seq_len: int,
                 pad_token_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sentences -> ``(ids (B, T) int64, mask (B, T) bool)``, right-padded to the longest.

    ``ValueError`` naming the sentence when one is longer than ``max_seq_len`` tokens (with the
    [CLS]/[SEP] the tokenizer adds): shorten it or raise the limit.
    """
    if not sentences:
        raise ValueError("no sentences to encode; give at least one line of text")
    encs = tokenizer.encode_batch(list(sentences))
    lengths = [len(e.ids) for e in encs]
    for i, n in enumerate(lengths):
        if n > max_seq_len:
            raise ValueError(f"sentence {i + 1} has {n} tokens, more than max_seq_len "
                             f"{max_seq_len}; shorten it or raise --max-seq-len")
    ids = np.full((len(encs), max(lengths)), pad_token_id, dtype=np.int64)   # (B, T) int64
    mask = np.zeros(ids.shape, dtype=bool)                                   # (B, T) bool
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)] = e.ids
        mask[i, :len(e.ids)] = True
    return ids, mask


@dataclass
class ImportedBert:
    """What :func:`load_hf` read: config, float32 tensors (our names), tokenizer, leftovers."""

    folder: Path
    config: BertConfig
    tensors: dict[str, np.ndarray]
    tokenizer: Any
    unexpected_keys: list[str] = field(default_factory=list)

    @property
    def has_pooler(self) -> bool:
        return "pooler.weight" in self.tensors


def load_hf(folder: Path | str) -> ImportedBert:
    """Read a local Hugging Face BERT-family folder (config, weights, tokenizer); see module doc."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder; pass the folder that save_pretrained "
                                "wrote (config.json, model.safetensors, vocab.txt/tokenizer.json)")
    cfg = load_config(folder)
    tensors, unexpected = load_weights(folder, cfg)
    return ImportedBert(folder=folder, config=cfg, tensors=tensors,
                        tokenizer=load_tokenizer(folder), unexpected_keys=unexpected)

