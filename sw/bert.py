# SPDX-License-Identifier: Apache-2.0
"""fp32 twin of an imported BERT-family encoder (PyTorch), the reference for its int8 model.

Post-LN, as BERT (unlike the pre-LN ``sw.model.LightTransformer``)::

    x = LN(word[ids] + pos[t] + type[0])                 embedding LayerNorm
    per layer:  x = LN1(x + proj(attn(x)))               additive padding mask on the scores
                x = LN2(x + fc2(gelu(fc1(x))))           exact erf GELU

Parameters carry the names of ``sw.import_hf`` (``embed.word.weight``, ``layers.0.attn.qkv.weight``
...), so an import loads with ``load_state_dict(strict=True)``. ``forward(..., record=dict)``
stores every activation the integer model quantizes (``sw.bert_int`` calibrates from it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sw.import_hf import BertConfig, ImportedBert, check_head_keep
from sw.ref import attention_window_bounds

__all__ = ["BertEncoder", "head_importance", "mean_pool", "random_bert"]


class _Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_positions, cfg.d_model)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.d_model)
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)


class _Attention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, rec: dict, p: str,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        hd = C // self.n_heads
        q, k, v = self.qkv(x).split(C, dim=-1)                          # 3 x (B, T, C)
        rec[p + "q"], rec[p + "k"], rec[p + "v"] = q, k, v
        q, k, v = (t.view(B, T, self.n_heads, hd).transpose(1, 2)
                   for t in (q, k, v))                                  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / hd ** 0.5 + bias              # (B, nh, T, T)
        y = att.softmax(dim=-1) @ v                                     # (B, nh, T, hs)
        if keep is not None:                                            # pruned heads give 0
            y = y * keep.to(y.dtype)[None, :, None, None]
        y = y.transpose(1, 2).reshape(B, T, C)                          # (B, T, C)
        rec[p + "attn"] = y
        return self.proj(y)


class _FeedForward(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, x: torch.Tensor, rec: dict, p: str) -> torch.Tensor:
        h = self.fc1(x)                                                 # (B, T, d_ff)
        g = F.gelu(h)                                                   # exact erf form
        rec[p + "fc1"], rec[p + "gelu"] = h, g
        return self.fc2(g)


class _Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attn = _Attention(cfg)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.ffn = _FeedForward(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, rec: dict, p: str,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        o = self.attn(x, bias, rec, p, keep)                                # (B, T, C)
        rec[p + "proj"] = o
        rec[p + "x1"] = x + o
        x = self.ln1(x + o)
        rec[p + "ln1"] = x
        f = self.ffn(x, rec, p)                                         # (B, T, C)
        rec[p + "fc2"] = f
        rec[p + "x2"] = x + f
        x = self.ln2(x + f)
        rec[p + "ln2"] = x
        return x


class BertEncoder(nn.Module):
    """BERT encoder (embeddings + post-LN layers, optional pooler) in float32."""

    def __init__(self, cfg: BertConfig, pooler: bool = False):
        super().__init__()
        self.cfg = cfg
        self.embed = _Embeddings(cfg)
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.n_layers))
        self.pooler = nn.Linear(cfg.d_model, cfg.d_model) if pooler else None

    @classmethod
    def from_imported(cls, imp: ImportedBert) -> BertEncoder:
        """The twin of an :func:`sw.import_hf.load_hf` result (strict: every tensor used)."""
        model = cls(imp.config, pooler=imp.has_pooler)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in imp.tensors.items()},
                              strict=True)
        return model.eval()

    def check_ids(self, ids: torch.Tensor) -> None:
        """``ValueError`` for ids outside the vocabulary or sequences past the position table."""
        if ids.ndim != 2 or ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"ids must be an integer (B, T) tensor, not {ids.dtype} "
                             f"{tuple(ids.shape)}")
        if ids.shape[1] > self.cfg.max_positions:
            raise ValueError(f"sequence of {ids.shape[1]} tokens is longer than the model's "
                             f"{self.cfg.max_positions} positions")
        bad = (ids < 0) | (ids >= self.cfg.vocab_size)
        if bool(bad.any()):
            b, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"token id {int(ids[b, t])} (sentence {b + 1}, position {t}) is "
                             f"outside the vocabulary of {self.cfg.vocab_size}; the tokenizer "
                             "does not belong to this checkpoint")

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
                record: dict | None = None, *, window: int | None = None,
                head_keep: np.ndarray | None = None) -> torch.Tensor:
        """Token ids ``(B, T)`` (+ bool key mask ``(B, T)``, True = token) -> ``(B, T, C)``.

        Token type 0 everywhere (single sentences). ``record``: filled with the activations
        named as the integer model's quantization points (``emb``, ``x0``, ``layers.i.q`` ...).
        ``window``: restrict every query to a centred window of keys
        (``sw.ref.attention_window_bounds``, as the integer model and the accelerator do).
        ``head_keep``: bool ``(n_layers, n_heads)``; a False head's output is zero (pruned).
        """
        self.check_ids(ids)
        B, T = ids.shape
        rec = {} if record is None else record
        if mask is None:
            mask = torch.ones(B, T, dtype=torch.bool)
        keep = check_head_keep(head_keep, self.cfg)
        # Additive mask as BERT: masked keys get the most negative float, so exp() is 0.
        allowed = mask[:, None, None, :]                                       # (B, 1, 1, T)
        if window is not None:
            lo, hi = attention_window_bounds(T, window, False)
            j = np.arange(T)
            span = torch.from_numpy((j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None]))
            allowed = allowed & span[None, None]                               # (B, 1, T, T)
        bias = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        e = self.embed
        pos = torch.arange(T)
        x = e.word(ids) + e.pos(pos)[None] + e.token_type(torch.zeros_like(ids))  # (B, T, C)
        rec["emb"] = x
        x = e.ln(x)                                                            # (B, T, C)
        rec["x0"] = x
        for i, layer in enumerate(self.layers):
            x = layer(x, bias, rec, f"layers.{i}.",
                      None if keep is None else torch.from_numpy(keep[i]))
        return x


def head_importance(twin: BertEncoder, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Importance of every head, ``(n_layers, n_heads)`` float64: the mean L2 norm of the
    head's contribution to the attention output (``y_h @ W_proj[:, h].T``) over real tokens.

    A forward-only proxy (no task loss to differentiate): a head whose output the projection
    maps to small vectors adds little to the residual stream.
    """
    cfg = twin.cfg
    hd = cfg.d_model // cfg.n_heads
    rec: dict = {}
    with torch.no_grad():
        twin(ids, mask, record=rec)
    real = mask.to(torch.float64)                                              # (B, T)
    out = np.zeros((cfg.n_layers, cfg.n_heads))
    for i, layer in enumerate(twin.layers):
        y = rec[f"layers.{i}.attn"].double()                                   # (B, T, C)
        w = layer.attn.proj.weight.detach().double()                           # (C, C)
        for h in range(cfg.n_heads):
            s = slice(h * hd, (h + 1) * hd)
            norm = (y[..., s] @ w[:, s].T).norm(dim=-1)                        # (B, T)
            out[i, h] = float((norm * real).sum() / real.sum())
    return out


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``h (B, T, C)`` over the tokens where ``mask (B, T)`` is True -> ``(B, C)``."""
    m = mask.to(h.dtype)[..., None]                                           # (B, T, 1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def random_bert(cfg: BertConfig, seed: int = 0, gain: float = 1.0) -> BertEncoder:
    """A BERT encoder with random weights whose activations stay O(1) through every layer.

    For tests and measurements without a download: dense weights ``N(0, gain**2 / fan_in)``,
    embeddings ``N(0, 1)``, biases and LayerNorm shifts ``N(0, 0.1**2)``, LayerNorm gains
    ``N(1, 0.1**2)``. (BERT's own init, std 0.02, makes every layer nearly the identity, which
    would test nothing.) ``gain > 1`` gives peakier attention and wider activation ranges.
    """
    g = torch.Generator().manual_seed(seed)
    model = BertEncoder(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and name.startswith("embed."):
                std, mean = 1.0, 0.0
            elif p.ndim == 2:
                std, mean = gain / p.shape[1] ** 0.5, 0.0
            else:
                std, mean = 0.1, (1.0 if ".ln" in name and name.endswith("weight") else 0.0)
            p.copy_(torch.randn(p.shape, generator=g) * std + mean)
    return model
