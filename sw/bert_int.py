# SPDX-License-Identifier: Apache-2.0
"""int8 integer-only model of an imported BERT encoder (NumPy), built on ``sw.ref``'s operators.

Quantization points (one int8 scale each, calibrated on sentences run through the fp32 twin
``sw.bert.BertEncoder``; q, k and v get one scale per head)::

    word[ids] (+) (pos + type[0])[t] -> emb -> LN -> x0
    per layer i:  x -> qkv -> q, k, v (per head) -> masked attention -> attn -> proj
                  (x + proj) x1 -> LN1 -> ln1
                  ln1 -> fc1 -> GELU LUT -> gelu -> fc2 -> (ln1 + fc2) x2 -> LN2 -> ln2
    mean over the sentence's tokens -> pool

Every operator is ``sw.ref``'s (``linear_int``, ``layernorm_int``, ``residual_add``,
``lut_apply``, ``softmax_int``, ``mean_pool_int``, ``embedding_int``) with the compile-time
constants of ``sw.compile`` / ``sw.quant``. Two things ``sw.ref`` does not have are composed here
from its pieces: the padding mask of BERT's attention (the additive ``-inf`` on padded keys is, in
integers, ``softmax_int``'s key mask: a masked key neither sets the row maximum nor adds to the
sum) and a mean pool over a variable number of tokens (one ``(mult, shift)`` per length, so
``1/L`` folds into the requant as ``mean_pool_int``'s fixed ``1/T`` does).

The token-type embedding of type 0 (single sentences) is folded into the position table at
compile time (an exact float add before quantization).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sw import quant
from sw.import_hf import BertConfig, check_head_keep, encode_batch
from sw.ref import (
    ATTN_MAX_HEAD_DIM,
    LN_MAX_DIM,
    SOFTMAX_MAX_WINDOW,
    AttentionQuant,
    attention_window_bounds,
    embedding_int,
    layernorm_int,
    linear_int,
    lut_apply,
    mean_pool_int,
    residual_add,
    softmax_int,
)

__all__ = [
    "FORMAT", "FORMAT_VERSION", "BertInt", "add_arguments", "attention_int",
    "calibration_sentences", "check_head_keep", "cosine", "cosine_to_fp32", "embed_int",
    "encode_int", "load_bert_int", "prune_by_importance", "quantize_bert", "quantize_from_text",
    "run", "save_bert_int",
]


# -- calibration text ------------------------------------------------------------------------------

def calibration_sentences(path: Path | str | None = None) -> tuple[list[str], list[str]]:
    """``(calibration, held_out)`` sentences.

    ``path``: a UTF-8 text file, one sentence per line (blank lines skipped). ``None``: prose
    sentences of CPython's own help text (``pydoc_data.topics``, part of the standard library, so
    nothing is downloaded). Duplicates are dropped, then every fourth sentence is held out for
    measuring, never calibrated on.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such calibration file; give a text file with "
                                    "one sentence per line")
        lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines()]
        sentences = [s for s in lines if s]
    else:
        from pydoc_data.topics import topics  # part of CPython's stdlib

        text = re.sub(r"\s+", " ", " ".join(topics[k] for k in sorted(topics)))
        # Prose only: code, grammar rules and tables would calibrate on punctuation runs.
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text)
                     if 40 <= len(s) <= 160 and s[0].isupper()
                     and not any(c in s for c in "*=>{}[]()`:_")]
    sentences = list(dict.fromkeys(sentences))     # the help text repeats some sentences
    if len(sentences) < 2:
        raise ValueError(f"{path or 'pydoc_data.topics'}: {len(sentences)} sentence(s); need at "
                         "least 2 (one to calibrate, one held out)")
    held = [s for i, s in enumerate(sentences) if i % 4 == 3]
    calib = [s for i, s in enumerate(sentences) if i % 4 != 3]
    return calib, held


# -- integer operators this model adds on top of sw.ref ------------------------------------------

def attention_int(q: np.ndarray, k: np.ndarray, v: np.ndarray, key_mask: np.ndarray,
                  params: list[AttentionQuant], window: int | None = None) -> np.ndarray:
    """Multi-head attention with a padding mask: int8 ``(B, T, H, hd)`` x3 -> int8 same shape.

    ``key_mask (B, T)`` bool marks real tokens; padded keys are masked out of ``softmax_int``
    (BERT's additive mask) for every real query. ``window``: optionally also restrict keys to a
    centred window (``sw.ref.attention_window_bounds``). ``params[h]`` holds head ``h``'s
    constants.
    """
    B, T, H, _ = q.shape
    real = np.asarray(key_mask, dtype=bool)                              # (B, T)
    span = np.ones((T, T), dtype=bool)                                   # (T, T) query x key
    if window is not None:
        lo, hi = attention_window_bounds(T, window, False)
        j = np.arange(T)
        span = (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])
    # Real queries see the real keys of their span (never empty: it holds the query itself).
    # Padded queries, whose rows nobody reads, see their whole span so that no row is empty.
    keep = np.where(real[:, :, None], span[None] & real[:, None, :], span[None])   # (B, T, T)
    out = np.empty_like(q)                                                # (B, T, H, hd) int8
    for h, p in enumerate(params):
        qh, kh, vh = (t[:, :, h].astype(np.int64) for t in (q, k, v))   # (B, T, hd) int64
        scores = qh @ kh.transpose(0, 2, 1)                              # (B, T, T) int32 range
        prob = softmax_int(scores, p.score_mult, p.score_shift, keep)    # (B, T, T) Q1.15
        acc = prob.astype(np.int64) @ vh                                 # (B, T, hd) < 2**23
        out[:, :, h] = quant.requantize(acc, p.out_mult, p.out_shift)
    return out


def prune_by_importance(importance: np.ndarray, fraction: float) -> np.ndarray:
    """Bool keep mask that drops the ``round(fraction * heads)`` least important heads of the
    whole model (a global ranking, as Michel et al. 2019; ties broken by position)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction of heads to prune must be in [0, 1), not {fraction!r}")
    imp = np.asarray(importance, dtype=np.float64)
    n = int(round(fraction * imp.size))
    keep = np.ones(imp.size, dtype=bool)
    keep[np.argsort(imp, axis=None, kind="stable")[:n]] = False
    return keep.reshape(imp.shape)


def _pool_table(scale_in: float, scale_out: float, max_len: int) -> np.ndarray:
    """``(max_len, 2)`` int64: the ``(mult, shift)`` of a mean over ``L = 1..max_len`` tokens."""
    return np.array([quant.quantize_multiplier(scale_in / (n * scale_out))
                     for n in range(1, max_len + 1)], dtype=np.int64)


# -- the model -------------------------------------------------------------------------------------

@dataclass
class BertInt:
    """A quantized BERT encoder: integer tensors, their real scales, the sequence limit."""

    config: BertConfig
    arrays: dict[str, np.ndarray]
    scales: dict[str, float | list[float]]
    max_seq_len: int
    calib_sentences: int = 0               # how many sentences set the scales (0: not recorded)

    def check_input(self, ids: np.ndarray, mask: np.ndarray) -> None:
        """``ValueError`` for a bad shape, a sequence over ``max_seq_len`` or an unknown id."""
        ids, mask = np.asarray(ids), np.asarray(mask)
        if ids.ndim != 2 or ids.dtype.kind not in "iu" or mask.shape != ids.shape \
                or mask.dtype != np.bool_:
            raise ValueError(f"ids must be integer (B, T) with a bool mask of the same shape, "
                             f"not {ids.dtype.name} {ids.shape} and {mask.dtype.name} "
                             f"{mask.shape}")
        if ids.shape[1] > self.max_seq_len:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than max_seq_len "
                             f"{self.max_seq_len}; shorten it or quantize with a larger limit")
        if not mask.any(axis=1).all():
            raise ValueError("every sentence needs at least one token (a row of mask is empty)")
        bad = (ids < 0) | (ids >= self.config.vocab_size)
        if bad.any():
            b, t = np.argwhere(bad)[0]
            raise ValueError(f"token id {int(ids[b, t])} (sentence {b + 1}, position {t}) is "
                             f"outside the vocabulary of {self.config.vocab_size}; the tokenizer "
                             "does not belong to this checkpoint")


def _absmax(t, mask: np.ndarray, heads: int | None = None) -> float | np.ndarray:
    """Largest |t| over real tokens (per head when ``heads``); padded rows are never seen."""
    x = np.abs(t.detach().double().numpy())[mask]                             # (N, C) float64
    if heads is not None:
        return x.reshape(len(x), heads, -1).max(axis=(0, 2))                 # (H,)
    return float(x.max())


def _scale(amax: float | np.ndarray) -> float | np.ndarray:
    return np.maximum(np.asarray(amax, dtype=np.float64), 1e-8) / quant.INT8_MAX


def quantize_bert(twin, calib_ids: np.ndarray, calib_mask: np.ndarray, *,
                  max_seq_len: int | None = None, batch_size: int = 32) -> BertInt:
    """Calibrate the fp32 ``twin`` (``sw.bert.BertEncoder``) on token ids and quantize it.

    Activation scales are ``max|x| / 127`` over the real tokens of the calibration batch (q, k,
    v: per head); weights are int8 per output channel (``sw.compile``'s Linear/LayerNorm export).
    ``max_seq_len`` (default: 128 or the model's positions, the smaller) bounds the inputs.
    """
    import torch

    from sw.bert import mean_pool
    from sw.compile import (
        _block_tail_arrays,
        _layernorm_arrays,
        _linear_arrays,
        _residual,
        _table_q,
    )

    cfg = twin.cfg
    if max_seq_len is None:
        max_seq_len = min(128, cfg.max_positions)
    if not 1 <= max_seq_len <= cfg.max_positions:
        raise ValueError(f"max_seq_len must be in [1, {cfg.max_positions}] (the model's "
                         f"positions), not {max_seq_len}")
    limits = [(f"head size {cfg.head_dim}", cfg.head_dim, ATTN_MAX_HEAD_DIM),
              (f"d_model {cfg.d_model}", cfg.d_model, LN_MAX_DIM),
              (f"max_seq_len {max_seq_len}", max_seq_len, SOFTMAX_MAX_WINDOW)]
    over = [f"{what} is more than {most}" for what, value, most in limits if value > most]
    if over:
        raise ValueError("the integer model cannot run this encoder: " + "; ".join(over) +
                         " (limits of the integer attention and LayerNorm, hw.numerics)")
    calib_ids, calib_mask = np.asarray(calib_ids), np.asarray(calib_mask, dtype=bool)
    if calib_ids.ndim != 2 or len(calib_ids) == 0:
        raise ValueError(f"calibration ids must be a non-empty (B, T) array, not "
                         f"{calib_ids.shape}")
    H = cfg.n_heads
    amax: dict[str, float | np.ndarray] = {}
    with torch.no_grad():
        for i in range(0, len(calib_ids), batch_size):
            ids, mask = calib_ids[i:i + batch_size], calib_mask[i:i + batch_size]
            rec: dict = {}
            h = twin(torch.from_numpy(ids), torch.from_numpy(mask), record=rec)
            rec["pool"] = mean_pool(h, torch.from_numpy(mask))[:, None]     # (B, 1, C)
            for name, t in rec.items():
                m = np.ones(t.shape[:2], bool) if name == "pool" else mask
                per_head = H if name.rsplit(".", 1)[-1] in ("q", "k", "v") else None
                amax[name] = np.maximum(amax.get(name, 0.0), _absmax(t, m, per_head))
    s = {name: _scale(a) for name, a in amax.items()}

    arrays: dict[str, np.ndarray] = {}

    def put(prefix: str, items: dict[str, np.ndarray]) -> None:
        arrays.update({f"{prefix}.{k}": v for k, v in items.items()})

    e = twin.embed
    word = e.word.weight.detach().double().numpy()                           # (V, C) float64
    pos = (e.pos.weight.detach().double().numpy()[:max_seq_len]
           + e.token_type.weight.detach().double().numpy()[0])               # (T, C) float64
    arrays["embed.word"], s_word = _table_q(word)
    arrays["embed.pos"], s_pos = _table_q(pos)
    put("embed.add", _residual(s_word, s_pos, s["emb"]))
    put("embed.ln", _layernorm_arrays(e.ln, s["emb"], s["x0"]))
    hd = cfg.head_dim
    x_prev = "x0"
    for i, layer in enumerate(twin.layers):
        p = f"layers.{i}."
        s_qkv = np.concatenate([np.repeat(s[p + n], hd) for n in ("q", "k", "v")])  # (3C,)
        put(p + "attn.qkv", _linear_arrays(layer.attn.qkv, s[x_prev], s_qkv))
        arrays[p + "attn.quant"] = np.array(
            [[getattr(AttentionQuant.from_scales(s[p + "q"][h], s[p + "k"][h], s[p + "v"][h],
                                                 s[p + "attn"], hd), f)
              for f in ("score_mult", "score_shift", "out_mult", "out_shift")]
             for h in range(H)], dtype=np.int32)                             # (H, 4)
        # Post-LN: the FFN reads ln1 and adds onto it; ln2 closes the layer.
        arrays.update(_block_tail_arrays(layer, p, s, x_prev, "ln1", p + "ln1"))
        put(p + "ln2", _layernorm_arrays(layer.ln2, s[p + "x2"], s[p + "ln2"]))
        x_prev = p + "ln2"
    arrays["pool.table"] = _pool_table(s[x_prev], s["pool"], max_seq_len)
    scales = {k: (v.tolist() if np.ndim(v) else float(v)) for k, v in s.items()}
    scales.update(embed_word=float(s_word), embed_pos=float(s_pos))
    return BertInt(config=cfg, arrays=arrays, scales=scales, max_seq_len=max_seq_len,
                   calib_sentences=len(calib_ids))


def encode_int(model: BertInt, ids: np.ndarray, mask: np.ndarray,
               window: int | None = None, head_keep: np.ndarray | None = None) -> np.ndarray:
    """Token ids ``(B, T)`` + bool mask -> int8 last hidden state ``(B, T, C)`` (integers only).

    Rows of padded positions are computed but meaningless (as in BERT); :func:`embed_int`
    ignores them. ``window``: optional centred attention window (the accelerator's).
    ``head_keep``: optional bool ``(n_layers, n_heads)``; a pruned (False) head's int8 output
    is 0 before the output projection (symmetric int8: 0 is exactly 0.0).
    """
    model.check_input(ids, mask)
    keep = check_head_keep(head_keep, model.config)
    a, cfg = model.arrays, model.config
    B, T = np.shape(ids)
    C, H = cfg.d_model, cfg.n_heads

    def lin(name: str, t: np.ndarray) -> np.ndarray:
        return linear_int(t, a[name + ".w"], a[name + ".b"], a[name + ".mult"],
                          a[name + ".shift"])

    def ln(name: str, t: np.ndarray) -> np.ndarray:
        return layernorm_int(t, a[name + ".gamma"], a[name + ".beta"], a[name + ".mult"],
                             a[name + ".shift"], int(a[name + ".eps"]))

    def add(name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return residual_add(x, y, a[name + ".mult"], int(a[name + ".shift"]))

    word = embedding_int(ids, a["embed.word"])                          # (B, T, C) int8
    pos = np.broadcast_to(a["embed.pos"][:T], word.shape)                # (B, T, C) int8
    x = ln("embed.ln", add("embed.add", word, pos))                      # (B, T, C) int8
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        qkv = lin(p + "attn.qkv", x)                                     # (B, T, 3C) int8
        q, k, v = (qkv[..., j * C:(j + 1) * C].reshape(B, T, H, C // H)
                   for j in range(3))                                    # (B, T, H, hd) int8
        params = [AttentionQuant(*(int(c) for c in row)) for row in a[p + "attn.quant"]]
        att = attention_int(q, k, v, mask, params, window)               # (B, T, H, hd) int8
        if keep is not None:
            att[:, :, ~keep[i]] = 0
        o = lin(p + "attn.proj", att.reshape(B, T, C))                   # (B, T, C) int8
        x = ln(p + "ln1", add(p + "add1", x, o))                         # (B, T, C) int8
        f = lut_apply(lin(p + "ffn.fc1", x), a[p + "ffn.gelu_lut"])      # (B, T, d_ff) int8
        x = ln(p + "ln2", add(p + "add2", x, lin(p + "ffn.fc2", f)))     # (B, T, C) int8
    return x


def embed_int(model: BertInt, ids: np.ndarray, mask: np.ndarray,
              window: int | None = None, head_keep: np.ndarray | None = None) -> np.ndarray:
    """Mean-pooled sentence embeddings, int8 ``(B, C)``; real values are ``* scales['pool']``.

    ``window``, ``head_keep``: as :func:`encode_int`.
    """
    h = encode_int(model, ids, mask, window, head_keep)                 # (B, T, C) int8
    table = model.arrays["pool.table"]
    out = np.empty((h.shape[0], h.shape[2]), dtype=np.int8)              # (B, C) int8
    for b in range(h.shape[0]):
        n = int(mask[b].sum())
        out[b] = mean_pool_int(h[b][mask[b]], int(table[n - 1, 0]), int(table[n - 1, 1]))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(B, C)`` float arrays -> ``(B,)`` float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(den, 1e-30)


def cosine_to_fp32(model: BertInt, twin, ids: np.ndarray, mask: np.ndarray,
                   window: int | None = None, head_keep: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(cosine (B,), int8 embeddings dequantized (B, C), fp32 embeddings (B, C))``.

    The fp32 side is the twin's mean-pooled last hidden state over the same tokens, always of
    the whole model (full attention, every head): ``window`` and ``head_keep`` restrict only the
    integer model, so the cosine is what quantization and the restriction cost together.
    """
    import torch

    from sw.bert import mean_pool

    e_int = embed_int(model, ids, mask, window, head_keep).astype(np.float64)
    e_int *= model.scales["pool"]
    with torch.no_grad():
        h = twin(torch.from_numpy(np.asarray(ids)), torch.from_numpy(np.asarray(mask)))
        e_f = mean_pool(h, torch.from_numpy(np.asarray(mask))).double().numpy()
    return cosine(e_int, e_f), e_int, e_f


def quantize_from_text(twin, tokenizer, sentences: list[str], max_seq_len: int = 128) -> BertInt:
    """:func:`quantize_bert` on sentences (tokenized with the checkpoint's tokenizer).

    Sentences longer than ``max_seq_len`` tokens are left out of the calibration (the model
    never sees them); ``ValueError`` when none is short enough.
    """
    fit = [s for s, e in zip(sentences, tokenizer.encode_batch(list(sentences)))
           if len(e.ids) <= max_seq_len]
    if not fit:
        raise ValueError(f"none of the {len(sentences)} calibration sentences fits in "
                         f"max_seq_len {max_seq_len} tokens; give shorter sentences")
    ids, mask = encode_batch(tokenizer, fit, max_seq_len, twin.cfg.pad_token_id)
    return quantize_bert(twin, ids, mask, max_seq_len=max_seq_len)


# -- artifact: one safetensors file, integer tensors + a JSON manifest in its metadata -------------

FORMAT = "lightformer-bert-int8"
FORMAT_VERSION = 1


def _array_names(cfg: BertConfig) -> set[str]:
    """Every tensor name of a quantized model of ``cfg`` (what a loaded artifact must hold)."""
    lin, ln, add = ("w", "b", "mult", "shift"), ("gamma", "beta", "mult", "shift", "eps"), (
        "mult", "shift")
    names = {"embed.word", "embed.pos", "pool.table"}
    names |= {f"embed.add.{k}" for k in add} | {f"embed.ln.{k}" for k in ln}
    for i in range(cfg.n_layers):
        p = f"layers.{i}."
        names |= {p + "attn.quant", p + "ffn.gelu_lut"}
        for name, keys in (("attn.qkv", lin), ("attn.proj", lin), ("ffn.fc1", lin),
                           ("ffn.fc2", lin), ("ln1", ln), ("ln2", ln), ("add1", add),
                           ("add2", add)):
            names |= {f"{p}{name}.{k}" for k in keys}
    return names


def save_bert_int(path: Path | str, model: BertInt, tokenizer, info: dict | None = None) -> Path:
    """Write ``model`` (and the tokenizer, as JSON) to ``path`` atomically; returns the path."""
    import json

    import safetensors.numpy

    from sw.report import atomic_write_bytes

    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "config": model.config.to_dict(), "max_seq_len": model.max_seq_len,
                "scales": model.scales, "tokenizer": tokenizer.to_str(), "info": info or {}}
    # np.array, not np.ascontiguousarray: the latter turns 0-d constants (shifts) into 1-d.
    data = safetensors.numpy.save({k: np.array(v, order="C") for k, v in model.arrays.items()},
                                  metadata={FORMAT: json.dumps(manifest)})
    return atomic_write_bytes(path, data)


def load_bert_int(path: Path | str) -> tuple[BertInt, object, dict]:
    """Read an artifact of :func:`save_bert_int`: ``(model, tokenizer, info)``.

    ``ValueError`` (what, where, what to do) for a file that is not such an artifact, of another
    format version, or whose tensors do not match its config.
    """
    import json

    from safetensors import SafetensorError, safe_open
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such artifact; write one with "
                                "`lightformer import-hf DIR --out ARTIFACT`")
    redo = "write it again with `lightformer import-hf DIR --out ARTIFACT`"
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as exc:
        raise ValueError(f"{path}: not a safetensors file ({exc}); {redo}") from None
    if FORMAT not in meta:
        raise ValueError(f"{path}: not a BERT artifact (no {FORMAT!r} manifest; a "
                         f"LightTransformer artifact is read by `lightformer eval`); {redo}")
    try:
        m = json.loads(meta[FORMAT])
        version = m["format_version"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: damaged manifest ({exc!r}); {redo}") from None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version!r}, this lightformer reads "
                         f"{FORMAT_VERSION}; {redo}")
    try:
        cfg = BertConfig(**m["config"])
        model = BertInt(config=cfg, arrays=arrays, scales=m["scales"],
                        max_seq_len=int(m["max_seq_len"]))
        tokenizer = Tokenizer.from_str(m["tokenizer"])
    except Exception as exc:                  # the tokenizer parser (Rust) raises plain Exception
        raise ValueError(f"{path}: damaged manifest ({exc!r}); {redo}") from None
    want = _array_names(cfg)
    if set(arrays) != want:
        missing, extra = sorted(want - set(arrays)), sorted(set(arrays) - want)
        raise ValueError(f"{path}: tensors do not match the config (missing {missing[:4]}, "
                         f"unexpected {extra[:4]}); {redo}")
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return model, tokenizer, m.get("info", {})


# -- `lightformer embed` ---------------------------------------------------------------------------

def add_arguments(p) -> None:
    import argparse

    from sw.report import json_path_type

    def existing_file(text: str) -> Path:
        if not Path(text).is_file():
            raise argparse.ArgumentTypeError(f"{text!r} is not a file")
        return Path(text)

    p.add_argument("--artifact", type=existing_file, required=True, metavar="ARTIFACT",
                   help="artifact written by `lightformer import-hf`")
    p.add_argument("--text-file", type=existing_file, required=True, metavar="FILE",
                   help="UTF-8 text, one sentence per line (blank lines are skipped)")
    p.add_argument("--json", type=json_path_type, required=True, metavar="PATH",
                   help="write the embeddings as JSON to PATH, or - for stdout")
    p.add_argument("--reference", action="store_true",
                   help="also run the fp32 twin (re-imported from the folder the artifact was "
                        "made from) and report cosine_to_fp32 per sentence")
    p.add_argument("--hf-dir", type=Path, default=None, metavar="DIR",
                   help="with --reference: the Hugging Face folder, if it has moved")
    p.add_argument("--backend", choices=("ref", "device"), default="ref",
                   help="ref: the NumPy integer model (default); device: the accelerator at "
                        "--port, through the driver (sw.bert_program), bit-exact with ref")
    p.add_argument("--port", default=None, metavar="URL",
                   help="with --backend device: the device, a serial port or a virtual board's "
                        "socket://127.0.0.1:PORT (lightformer vboard prints it)")
    p.add_argument("--preset", default=None, metavar="PRESET",
                   help="with --backend device: the device's AccelParams preset (default: the "
                        "one it names)")
    p.add_argument("--window", type=int, default=None, metavar="W",
                   help="centred attention window of W keys (the accelerator's; default: full "
                        "attention). A device runs full attention over T tokens only if "
                        "2T - 1 <= its window")
    p.add_argument("--check", action="store_true",
                   help="with --backend device: also run the integer model and report "
                        "mismatches (sentences whose embedding differs in any value)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="with --backend device: seconds to wait for one device run "
                        "(default 60)")


def run(args) -> int:
    import hashlib

    from sw.report import info_stream, write_json

    try:
        model, tokenizer, info = load_bert_int(args.artifact)
        lines = [s.strip() for s in args.text_file.read_text(encoding="utf-8").splitlines()]
        sentences = [s for s in lines if s]
        ids, mask = encode_batch(tokenizer, sentences, model.max_seq_len,
                                 model.config.pad_token_id)
        if args.window is not None and args.window < 1:
            raise ValueError(f"--window must be a positive integer, not {args.window}")
        device = None
        if args.backend == "device":
            emb_q, device = _embed_on_device(args, model, ids, mask)
        else:
            if args.port is not None or args.preset is not None or args.check:
                raise ValueError("--port, --preset and --check go with --backend device")
            emb_q = embed_int(model, ids, mask, window=args.window)
        emb = emb_q.astype(np.float64) * model.scales["pool"]
    except (ValueError, FileNotFoundError, UnicodeDecodeError) as exc:
        raise SystemExit(f"lightformer embed: {exc}") from None
    report = {"artifact": str(args.artifact), "sentences": len(sentences),
              "tokens": [int(n) for n in mask.sum(axis=1)], "embeddings": emb.tolist(),
              "backend": args.backend, "window": args.window}
    if device is not None:
        report["device"] = device
    out = info_stream(args.json)
    if device is not None:
        print(f"device {device['preset']} at {device['url']}: {device['mode']} mode, "
              f"{sum(device['cycles'])} cycles for {len(sentences)} sentence(s)"
              + ("" if device["mismatches"] is None else
                 f"; {device['mismatches']} mismatch(es) vs the integer model"), file=out)
    if args.reference:
        from sw.bert import BertEncoder
        from sw.import_hf import load_hf

        source = info.get("source", {})
        folder = args.hf_dir or Path(source.get("folder", ""))
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise SystemExit(f"lightformer embed: --reference needs the Hugging Face folder the "
                             f"artifact was made from ({str(folder)!r} has no model.safetensors);"
                             " pass it with --hf-dir DIR")
        if hashlib.sha256(weights.read_bytes()).hexdigest() != source.get("model_sha256"):
            raise SystemExit(f"lightformer embed: {weights} is not the checkpoint the artifact "
                             "was made from (its SHA-256 differs); pass the right --hf-dir")
        import torch

        from sw.bert import mean_pool

        twin = BertEncoder.from_imported(load_hf(folder))
        with torch.no_grad():
            m = torch.from_numpy(mask)
            e_f = mean_pool(twin(torch.from_numpy(ids), m), m).double().numpy()
        cos = cosine(emb, e_f)                # the same as cosine_to_fp32 on this backend
        report.update(reference_embeddings=e_f.tolist(), cosine_to_fp32=cos.tolist(),
                      mean_cosine_to_fp32=float(cos.mean()))
        print(f"mean cosine to fp32 {cos.mean():.4f} (min {cos.min():.4f})", file=out)
    where = write_json(args.json, report, kind="embed")
    print(f"{len(sentences)} embedding(s) of {model.config.d_model} values -> {where}", file=out)
    return 1 if device is not None and device["mismatches"] else 0


def _embed_on_device(args, model: BertInt, ids: np.ndarray, mask: np.ndarray
                     ) -> tuple[np.ndarray, dict]:
    """int8 embeddings ``(B, C)`` from the accelerator at ``args.port``: each sentence runs
    unpadded, the mean pool on the device (``VEC MEANPOOL``, equal to :func:`embed_int`); and
    the report's ``device`` entry. ``SystemExit`` on a device or fit error."""
    import time

    from hw.params import preset, preset_names
    from sw.bert_program import run_bert
    from sw.driver import Accelerator, AccelError
    from sw.driver.infer import transport_kind
    from sw.program import FitError

    if args.port is None:
        raise ValueError("--backend device needs --port URL (a serial port, or the socket:// "
                         "URL `lightformer vboard` prints)")
    if transport_kind(args.port) == "loop":
        raise ValueError("--port loop:// has no device behind it; give a serial port or a "
                         "virtual board's socket:// URL")
    params = preset(args.preset) if args.preset is not None else None
    rows = [ids[b, :int(mask[b].sum())] for b in range(len(ids))]
    try:
        baud = params.baud if params is not None else 115200
        with Accelerator.open(args.port, baud=baud, timeout=args.timeout) as acc:
            if params is None:
                name = acc.identify().name
                if name not in preset_names():
                    raise ValueError(f"the device at {args.port} names preset {name!r}, which "
                                     "this lightformer does not have; pass --preset")
                params = preset(name)
            t0 = time.perf_counter()
            rep = run_bert(acc, model, rows, params=params, window=args.window, pool=True,
                           mode=None, timeout=args.timeout)
            seconds = time.perf_counter() - t0
    except (AccelError, FitError, OSError) as exc:
        raise SystemExit(f"lightformer embed: {exc}") from None
    emb = np.stack(rep["outputs"])                                       # (B, C) int8
    mismatches = None
    if args.check:
        want = embed_int(model, ids, mask, window=args.window)
        mismatches = int(sum(not np.array_equal(g, w) for g, w in zip(emb, want)))
    device = {"url": args.port, "preset": params.name, "design_id": f"{params.design_id:08x}",
              "mode": ", ".join(rep["mode"]), "cycles": rep["cycles"],
              "runs": rep["runs"], "link_bytes": rep["link_bytes"],
              "seconds": round(seconds, 3), "pooling": "device (VEC MEANPOOL)",
              "mismatches": mismatches}
    return emb, device
