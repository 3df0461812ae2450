# SPDX-License-Identifier: Apache-2.0
"""PyTorch LightTransformer and its efficient-attention family (fp32 reference for the int8 stack).

One config dataclass (:class:`ModelConfig`), one model (:class:`LightTransformer`), nanoGPT style:
token/patch embedding + learned positions, pre-LN blocks
``x = x + attn(ln1(x)); x = x + ffn(ln2(x))``, final LayerNorm and a head (mean-pooled
classifier, or per-token causal LM logits).

Attention is pluggable (``ModelConfig.attention``):

``full``            softmax(q k^T / sqrt(hd) + mask) v; mask is causal for ``causal=True``.
``window``          the hardware's sliding window (:func:`window_mask`), causal or centred.
``dynamic_window``  content-dependent span: each head predicts a soft radius per query
                    (adaptive-span ramp mask, differentiable), bounded by ``window``.
``random_sparse``   fixed seeded random key subsets + the local window + global token 0 (BigBird).
``linformer``       K and V projected along the sequence to ``proj_len`` rows.
``performer``       FAVOR+ positive orthogonal random features (linear; causal: prefix sums).
``nystrom``         Nyströmformer: segment-mean landmarks, Newton–Schulz pseudo-inverse.
``conv``            depthwise-separable 1-D convolution mixer (no attention at all).
``lsh``             Reformer: shared QK, random-rotation hashing into buckets, sorted chunked
                    attention, several hash rounds combined by their log-sum-exp.

Plus Funnel-style strided mean pooling between blocks (``funnel_stride``), structured pruning that
physically shrinks the matrices (:func:`prune_heads`, :func:`prune_ffn`), analytic cost counting
(:func:`count_params`, :func:`count_macs`), and :class:`SeedLightTransformer`, the source material's
``nn.Transformer`` encoder-decoder example fixed so it runs.

The integer model in ``sw/ref.py`` implements only ``full``/``window``; the others are fp32 studies.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ATTENTIONS",
    "ModelConfig",
    "LightTransformer",
    "SeedLightTransformer",
    "window_mask",
    "prune_heads",
    "prune_ffn",
    "head_importance",
    "ffn_importance",
    "select_heads",
    "count_params",
    "count_macs",
]

ATTENTIONS = ("full", "window", "dynamic_window", "random_sparse", "linformer", "performer",
              "nystrom", "conv", "lsh")
TASKS = ("classify", "lm")
INPUT_KINDS = ("patches", "tokens")
# Variants whose algorithm has no causal form here (they mix the whole sequence at once).
_NON_CAUSAL = ("linformer", "nystrom")


def _check_int(name: str, value, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
            hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an integer {rng}, not {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Every knob of :class:`LightTransformer`; validated on construction.

    ``layer_heads`` / ``layer_d_ff`` are set by pruning (per-layer head count / FFN width); ``None``
    means every layer has ``n_heads`` / ``d_ff``. ``head_dim`` is always ``d_model // n_heads``.
    """

    task: str = "classify"          # "classify" (mean-pool over tokens -> head) | "lm" (causal)
    input_kind: str = "patches"     # "patches": x (B, T, patch_dim) float | "tokens": (B, T) int64
    patch_dim: int = 8              # for patches
    vocab_size: int = 0             # for tokens
    seq_len: int = 8                # max T
    n_classes: int = 10             # classify: classes; lm: = vocab_size
    d_model: int = 32
    n_heads: int = 2
    n_layers: int = 2
    d_ff: int = 64
    attention: str = "window"
    window: int = 8                 # window: keys per query row; dynamic_window: max span
    causal: bool = False            # causal: t-window+1..t; centred: t-window//2..t+(window-1)//2
    dropout: float = 0.0
    # variant knobs
    n_random: int = 2               # random_sparse: random keys per query (besides local + global)
    proj_len: int = 16              # linformer: projected sequence length k
    n_features: int = 32            # performer: random features per head
    n_landmarks: int = 8            # nystrom: landmarks (<= seq_len)
    conv_kernel: int = 3            # conv: depthwise kernel size (odd)
    lsh_buckets: int = 4            # lsh: buckets per round (1, or even)
    lsh_rounds: int = 2             # lsh: hash rounds
    lsh_chunk: int = 0              # lsh: chunk length; 0 = ceil(T / lsh_buckets)
    funnel_stride: int = 1          # >1: mean-pool the sequence by this stride between blocks
    variant_seed: int = 1234        # seeds fixed random structure (sparse, features, hashes)
    layer_heads: tuple[int, ...] | None = None
    layer_d_ff: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, not {self.task!r}")
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind must be one of {INPUT_KINDS}, not {self.input_kind!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, not {self.attention!r}")
        for name in ("seq_len", "n_classes", "d_model", "n_heads", "n_layers", "d_ff", "window",
                     "proj_len", "n_features", "n_landmarks", "lsh_rounds", "funnel_stride"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_random", self.n_random, 0)
        _check_int("lsh_chunk", self.lsh_chunk, 0)
        _check_int("lsh_buckets", self.lsh_buckets, 1)
        if self.lsh_buckets > 1 and self.lsh_buckets % 2:
            raise ValueError(f"lsh_buckets must be 1 or even (random-rotation hashing), "
                             f"not {self.lsh_buckets!r}")
        _check_int("conv_kernel", self.conv_kernel, 1)
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, not {self.conv_kernel!r}")
        if self.input_kind == "patches":
            _check_int("patch_dim", self.patch_dim, 1)
        else:
            if isinstance(self.vocab_size, bool) or not isinstance(self.vocab_size, int) or \
                    self.vocab_size < 2:
                raise ValueError(f"vocab_size must be an integer >= 2 for input_kind='tokens', "
                                 f"not {self.vocab_size!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads must divide d_model ({self.d_model}), not {self.n_heads!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")
        if self.task == "lm":
            if not self.causal:
                raise ValueError("causal must be True for task='lm' (a language model may not see "
                                 "future tokens); pass causal=True")
            if self.input_kind == "tokens" and self.n_classes != self.vocab_size:
                raise ValueError(f"n_classes must equal vocab_size ({self.vocab_size}) for "
                                 f"task='lm', not {self.n_classes!r}")
        if self.causal and self.attention in _NON_CAUSAL:
            raise ValueError(f"attention {self.attention!r} has no causal form; use one of "
                             f"{tuple(a for a in ATTENTIONS if a not in _NON_CAUSAL)}")
        if self.attention == "nystrom" and self.n_landmarks > self.seq_len:
            raise ValueError(f"n_landmarks must be <= seq_len ({self.seq_len}), "
                             f"not {self.n_landmarks!r}")
        for name, n in (("layer_heads", self.layer_heads), ("layer_d_ff", self.layer_d_ff)):
            if n is None:
                continue
            if not isinstance(n, tuple) or len(n) != self.n_layers:
                raise ValueError(f"{name} must be None or a tuple of n_layers ({self.n_layers}) "
                                 f"integers, not {n!r}")
            for v in n:
                _check_int(name + " entries", v, 1)
        if self.layer_heads is not None and max(self.layer_heads) > self.n_heads:
            raise ValueError(f"layer_heads entries must be <= n_heads ({self.n_heads}), "
                             f"not {self.layer_heads!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def heads(self, layer: int) -> int:
        return self.n_heads if self.layer_heads is None else self.layer_heads[layer]

    def ffn_width(self, layer: int) -> int:
        return self.d_ff if self.layer_d_ff is None else self.layer_d_ff[layer]

    def seq_len_at(self, layer: int, seq_len: int | None = None) -> int:
        """Sequence length seen by block ``layer`` (funnel pooling shrinks it)."""
        t = self.seq_len if seq_len is None else seq_len
        for _ in range(layer):
            t = _pooled_len(t, self.funnel_stride)
        return t

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("layer_heads", "layer_d_ff"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        for k in ("layer_heads", "layer_d_ff"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"config keys must be ModelConfig fields, not {sorted(unknown)!r}")
        return cls(**d)


def _pooled_len(t: int, stride: int) -> int:
    return -(-t // stride)


# --------------------------------------------------------------------------------------------
# masks
def window_mask(T: int, window: int, causal: bool) -> torch.Tensor:
    """(T, T) bool, True where query row t may attend to key column j.

    causal: ``t - window < j <= t``; centred: ``t - window//2 <= j <= t + (window-1)//2``; both
    clipped to ``[0, T)``. Identical to the integer model's definition in ``sw/ref.py``.
    """
    _check_int("T", T, 1)
    _check_int("window", window, 1)
    t = torch.arange(T).unsqueeze(1)  # (T, 1) int64
    j = torch.arange(T).unsqueeze(0)  # (1, T) int64
    if causal:
        return (j <= t) & (j > t - window)  # (T, T) bool
    return (j >= t - window // 2) & (j <= t + (window - 1) // 2)  # (T, T) bool


def _causal_mask(T: int, device=None) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()  # (T, T) bool


def random_sparse_mask(T: int, window: int, n_random: int, causal: bool, seed: int) -> torch.Tensor:
    """(T, T) bool: local window + global token 0 + ``n_random`` seeded random keys per row."""
    m = window_mask(T, window, causal).clone()  # (T, T) bool
    m[:, 0] = True
    if causal:
        m &= _causal_mask(T)
        m[0, 0] = True
    g = torch.Generator().manual_seed(seed + 7919 * T)
    for t in range(T):
        hi = t + 1 if causal else T
        k = min(n_random, hi)
        if k:
            m[t, torch.randperm(hi, generator=g)[:k]] = True
    return m


# --------------------------------------------------------------------------------------------
# attention family
class _HeadedAttention(nn.Module):
    """Shared parts: ``qkv`` (d -> parts * n_heads * hd, split [q | k | v]) and ``proj``."""

    qkv_parts = 3

    def __init__(self, cfg: ModelConfig, n_heads: int):
        super().__init__()
        self.cfg = cfg
        self.n_heads = n_heads
        self.head_dim = cfg.head_dim
        inner = n_heads * self.head_dim
        self.qkv = nn.Linear(cfg.d_model, self.qkv_parts * inner)
        self.proj = nn.Linear(inner, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def _split(self, x: torch.Tensor) -> list[torch.Tensor]:
        B, T, _ = x.shape
        parts = self.qkv(x).split(self.n_heads * self.head_dim, dim=-1)  # parts x (B, T, H*hd)
        return [p.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd) float32
                for p in parts]

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        B, H, T, hd = y.shape
        y = y.transpose(1, 2).reshape(B, T, H * hd)  # (B, T, H*hd) float32
        return self.drop(self.proj(y))  # (B, T, C) float32


class SoftmaxAttention(_HeadedAttention):
    """``full``, ``window`` and ``random_sparse``: softmax(q k^T / sqrt(hd) + mask) v with a fixed
    boolean mask (built once per (T, device) and cached)."""

    def __init__(self, cfg: ModelConfig, n_heads: int):
        super().__init__(cfg, n_heads)
        self._masks: dict = {}

    def mask(self, T: int, device=None) -> torch.Tensor | None:
        key = (T, str(device))
        if key not in self._masks:
            cfg = self.cfg
            if cfg.attention == "window":
                m = window_mask(T, cfg.window, cfg.causal)
            elif cfg.attention == "random_sparse":
                m = random_sparse_mask(T, cfg.window, cfg.n_random, cfg.causal, cfg.variant_seed)
            else:
                m = _causal_mask(T) if cfg.causal else None
            self._masks[key] = None if m is None else m.to(device)
        return self._masks[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(x)  # (B, H, T, hd) float32 each
        T = x.shape[1]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T) float32
        m = self.mask(T, x.device)
        if m is not None:
            att = att.masked_fill(~m, float("-inf"))
        att = self.drop(att.softmax(dim=-1))  # (B, H, T, T) float32
        return self._merge(att @ v)  # (B, T, C) float32


#: Query rows per block of :class:`DynamicWindowAttention`'s banded forward.
_DW_BLOCK = 64


class DynamicWindowAttention(_HeadedAttention):
    """Content-dependent window inside the fixed one: each head predicts a span per query.

    Soft ramp mask (adaptive span, Sukhbaatar et al. 2019):
    ``m(d) = clamp((r - d) / ramp + 1, 0, 1)`` with ``d`` the query-key distance (causal:
    t - j >= 0; centred: |t - j|) and ``r = r_max * sigmoid(span(x))`` (``r_max = window``
    causal, ``window / 2`` centred), applied as ``log(m)`` to the scores so that the span is
    learned by gradient descent. The mask is cut to :func:`window_mask` (``window``), so a
    banded kernel never visits more keys than the fixed window; :func:`count_macs` counts that
    band. :meth:`forward` is that banded computation (blocks of ``_DW_BLOCK`` queries);
    :meth:`_forward_reference` is the dense (T, T) code it is tested equal to.
    """

    def __init__(self, cfg: ModelConfig, n_heads: int):
        super().__init__(cfg, n_heads)
        self.span = nn.Linear(cfg.d_model, n_heads)
        nn.init.zeros_(self.span.weight)
        nn.init.constant_(self.span.bias, 2.0)  # start near the full window
        self.r_max = float(cfg.window if cfg.causal else cfg.window / 2)
        self.ramp = max(1.0, self.r_max / 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Banded: query blocks of ``_DW_BLOCK`` rows against the key slice that covers their
        windows (``block + window - 1`` keys), so the scores are (B, H, T/b, b, b + window - 1)
        rather than (B, H, T, T). For block i, row a, slice column l the distance is
        ``t - j = a + left - l`` whatever i, so ramp, band and diagonal are one (b, L) pattern;
        keys outside [0, T) are masked. Computes :meth:`_forward_reference`'s function."""
        q, k, v = self._split(x)  # (B, H, T, hd) each
        B, H, T, hd = q.shape
        w = self.cfg.window
        left, right = (w - 1, 0) if self.cfg.causal else (w // 2, (w - 1) // 2)
        b = min(T, _DW_BLOCK)
        nb = -(-T // b)
        L = b + left + right  # keys per query block
        dev = x.device
        r = self.r_max * torch.sigmoid(self.span(x)).transpose(1, 2)  # (B, H, T)
        r = F.pad(r, (0, nb * b - T)).view(B, H, nb, b, 1)  # padded queries: r = 0
        qb = F.pad(q, (0, 0, 0, nb * b - T)).view(B, H, nb, b, hd)
        pad_k = (left, nb * b - T + right)
        kb = F.pad(k, (0, 0) + pad_k).unfold(2, L, b).transpose(-2, -1)  # (B, H, nb, L, hd)
        vb = F.pad(v, (0, 0) + pad_k).unfold(2, L, b).transpose(-2, -1)  # (B, H, nb, L, hd)
        a = torch.arange(b, device=dev).view(b, 1)
        col = torch.arange(L, device=dev).view(1, L)
        d = (a + left - col).to(x.dtype)  # (b, L) t - j
        dist = d if self.cfg.causal else d.abs()
        band = (d >= 0) & (d < w) if self.cfg.causal else (d <= w // 2) & (d >= -((w - 1) // 2))
        j = (torch.arange(nb, device=dev) * b).view(nb, 1, 1) + col - left  # (nb, 1, L) key
        band = band & (j >= 0) & (j < T)  # (nb, b, L) bool
        soft = ((r - dist) / self.ramp + 1).clamp(0, 1)  # (B, H, nb, b, L)
        soft = soft * band
        diag = (a + left == col).expand(nb, b, L)  # (nb, b, L) bool: j == t
        soft = soft.masked_fill(diag, 1.0)  # a query always sees itself
        att = (qb @ kb.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, nb, b, L)
        att = att + torch.log(soft.clamp_min(1e-30))
        att = att.masked_fill(soft == 0, float("-inf"))
        att = self.drop(att.softmax(dim=-1))
        y = (att @ vb).reshape(B, H, nb * b, hd)[:, :, :T]  # (B, H, T, hd)
        return self._merge(y)  # (B, T, C)

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The dense (B, H, T, T) soft-mask code :meth:`forward` is tested equal to."""
        q, k, v = self._split(x)  # (B, H, T, hd) float32
        B, T, _ = x.shape
        r = self.r_max * torch.sigmoid(self.span(x)).transpose(1, 2)  # (B, H, T) float32
        pos = torch.arange(T, device=x.device, dtype=x.dtype)
        d = pos.view(T, 1) - pos.view(1, T)  # (T, T) float32, t - j
        dist = d if self.cfg.causal else d.abs()
        band = window_mask(T, self.cfg.window, self.cfg.causal).to(x.device)  # (T, T) bool
        soft = ((r.unsqueeze(-1) - dist) / self.ramp + 1).clamp(0, 1)  # (B, H, T, T) float32
        soft = soft * band
        soft[..., torch.arange(T), torch.arange(T)] = 1.0  # a query always sees itself
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, T) float32
        att = att + torch.log(soft.clamp_min(1e-30))
        att = att.masked_fill(soft == 0, float("-inf"))
        att = self.drop(att.softmax(dim=-1))
        return self._merge(att @ v)  # (B, T, C) float32


class LinformerAttention(_HeadedAttention):
    """Linformer: K, V projected along the sequence with ``E, F`` (seq_len -> proj_len)."""

    def __init__(self, cfg: ModelConfig, n_heads: int, seq_len: int):
        super().__init__(cfg, n_heads)
        self.E = nn.Parameter(torch.randn(cfg.proj_len, seq_len) / math.sqrt(cfg.proj_len))
        self.F = nn.Parameter(torch.randn(cfg.proj_len, seq_len) / math.sqrt(cfg.proj_len))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(x)  # (B, H, T, hd) float32
        T = x.shape[1]
        k = self.E[:, :T] @ k  # (B, H, k, hd) float32
        v = self.F[:, :T] @ v  # (B, H, k, hd) float32
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, k) float32
        att = self.drop(att.softmax(dim=-1))
        return self._merge(att @ v)  # (B, T, C) float32


def _orthogonal_features(m: int, d: int, g: torch.Generator) -> torch.Tensor:
    """(m, d) Gaussian orthogonal random features (FAVOR+), row norms chi-distributed."""
    blocks = []
    for _ in range(-(-m // d)):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
        blocks.append(q.T)
    w = torch.cat(blocks)[:m]  # (m, d) float32
    norms = torch.randn(m, d, generator=g).norm(dim=1, keepdim=True)  # (m, 1) float32
    return w * norms


class PerformerAttention(_HeadedAttention):
    """Performer FAVOR+: phi(x) = exp(w x - |x|^2 / 2) / sqrt(m), fixed orthogonal features."""

    def __init__(self, cfg: ModelConfig, n_heads: int):
        super().__init__(cfg, n_heads)
        g = torch.Generator().manual_seed(cfg.variant_seed)
        self.register_buffer("features", _orthogonal_features(cfg.n_features, cfg.head_dim, g))

    def _phi(self, x: torch.Tensor, is_query: bool) -> torch.Tensor:
        x = x * self.head_dim ** -0.25  # (B, H, T, hd) float32
        wx = x @ self.features.T  # (B, H, T, m) float32
        sq = (x * x).sum(-1, keepdim=True) / 2  # (B, H, T, 1) float32
        # subtracting a max keeps exp finite; it cancels in the normalisation
        stab = wx.amax(-1, keepdim=True) if is_query else wx.amax(dim=(-2, -1), keepdim=True)
        return torch.exp(wx - sq - stab.detach()) / math.sqrt(self.features.shape[0]) + 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(x)  # (B, H, T, hd) float32
        qp, kp = self._phi(q, True), self._phi(k, False)  # (B, H, T, m) float32
        if self.cfg.causal:
            kv = torch.einsum("bhtm,bhtd->bhtmd", kp, v).cumsum(2)  # (B, H, T, m, hd) float32
            num = torch.einsum("bhtm,bhtmd->bhtd", qp, kv)  # (B, H, T, hd) float32
            den = (qp * kp.cumsum(2)).sum(-1, keepdim=True)  # (B, H, T, 1) float32
        else:
            kv = kp.transpose(-2, -1) @ v  # (B, H, m, hd) float32
            num = qp @ kv  # (B, H, T, hd) float32
            den = qp @ kp.sum(2, keepdim=True).transpose(-2, -1)  # (B, H, T, 1) float32
        return self._merge(num / den)  # (B, T, C) float32


def _newton_schulz_pinv(a: torch.Tensor, iters: int = 6) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse by Newton-Schulz iterations (Xiong et al. 2021)."""
    eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
    z = a.transpose(-2, -1) / (a.abs().sum(-1).amax(-1) * a.abs().sum(-2).amax(-1))[..., None, None]
    for _ in range(iters):
        az = a @ z
        z = 0.25 * z @ (13 * eye - az @ (15 * eye - az @ (7 * eye - az)))
    return z


class NystromAttention(_HeadedAttention):
    """Nyströmformer: softmax(Q K_l^T) pinv(softmax(Q_l K_l^T)) softmax(Q_l K^T) V, segment-mean
    landmarks ``Q_l, K_l``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(x)  # (B, H, T, hd) float32
        B, H, T, hd = q.shape
        L = min(self.cfg.n_landmarks, T)
        q = q / math.sqrt(math.sqrt(hd))
        k = k / math.sqrt(math.sqrt(hd))
        pool = lambda t: F.adaptive_avg_pool1d(  # noqa: E731
            t.reshape(B * H, T, hd).transpose(1, 2), L).transpose(1, 2).reshape(B, H, L, hd)
        ql, kl = pool(q), pool(k)  # (B, H, L, hd) float32
        a = (q @ kl.transpose(-2, -1)).softmax(-1)  # (B, H, T, L) float32
        b = (ql @ kl.transpose(-2, -1)).softmax(-1)  # (B, H, L, L) float32
        c = (ql @ k.transpose(-2, -1)).softmax(-1)  # (B, H, L, T) float32
        y = a @ (_newton_schulz_pinv(b) @ (c @ v))  # (B, H, T, hd) float32
        return self._merge(self.drop(y))  # (B, T, C) float32


class ConvMixer(nn.Module):
    """Depthwise-separable convolution token mixer: depthwise Conv1d (kernel ``conv_kernel``, left
    padding only when causal) then pointwise ``proj``. No heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.dw = nn.Conv1d(cfg.d_model, cfg.d_model, cfg.conv_kernel, groups=cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.cfg.conv_kernel
        pad = (k - 1, 0) if self.cfg.causal else ((k - 1) // 2, (k - 1) // 2)
        y = self.dw(F.pad(x.transpose(1, 2), pad))  # (B, C, T) float32
        return self.drop(self.proj(F.gelu(y.transpose(1, 2))))  # (B, T, C) float32


def _rng_state(device: torch.device) -> torch.Tensor:
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _chunk_blocked(qb, kb, qp, kp) -> torch.Tensor:
    """(..., c, kc) bool, True where a query may not see a key: another bucket, or (when
    ``qp``/``kp`` are given, causal) a key after the query."""
    blocked = qb.unsqueeze(-1) != kb.unsqueeze(-2)
    if qp is not None:
        blocked |= kp.unsqueeze(-2) > qp.unsqueeze(-1)
    return blocked


#: Most float32 score elements :class:`_ChunkAttention` materialises at once (1 GiB).
_SCORE_BUDGET = 1 << 28


def _slices(n: int, per_row: int) -> list[slice]:
    """Split ``n`` rows of ``per_row`` score elements into slices of at most ``_SCORE_BUDGET``
    elements (one row at least), bounding the transient (c, kc) tensors of
    :class:`_ChunkAttention`."""
    step = max(1, _SCORE_BUDGET // max(per_row, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


class _ChunkAttention(torch.autograd.Function):
    """Masked softmax attention of each query chunk to its key block, returning the output and
    the row log-sum-exp, flash-attention style: nothing of size (c, kc) is saved for backward.

    ``q`` (N, nc, c, hd), ``k``/``v`` (N, nc, kc, hd), already in the compute dtype;
    ``qb``/``kb`` (N, nc, c) / (N, nc, kc) bucket ids, a key is allowed where they are equal;
    ``qp``/``kp`` positions for the causal rule ``kp <= qp`` (or None). Every query row must
    allow at least one key (LSH: itself). Scores, log-sum-exp and probabilities are float32 (or
    the inputs' dtype if wider); ``o = dropout(exp(s - lse)) @ v`` in the compute dtype, ``lse``
    (N, nc, c).

    ``q`` is multiplied by ``scale`` before the scores (the saved ``q`` is the scaled one).
    Backward recomputes the scores slice by slice; dropout is replayed from the RNG state saved
    in forward (the same draws in the same order). With D = rowsum(dO * o) (dropout included):
    ``ds = p * (dropout'(dO v^T) - D + dlse)``.
    """

    @staticmethod
    def forward(ctx, q, k, v, qb, kb, qp, kp, scale: float, drop: float):
        N, nc, c, hd = q.shape
        kc = k.shape[2]
        acc = torch.promote_types(q.dtype, torch.float32)  # scores: float32 at least
        state = _rng_state(q.device) if drop > 0 else None
        o = q.new_empty(N, nc, c, v.shape[-1])  # (N, nc, c, hd) compute dtype
        lse = torch.empty(N, nc, c, device=q.device, dtype=acc)
        q = q * scale  # scaled once here, not the (c, kc) scores
        for sl in _slices(N, nc * c * kc):
            s = (q[sl] @ k[sl].transpose(-2, -1)).to(acc)  # (n, nc, c, kc) acc
            s.masked_fill_(_chunk_blocked(qb[sl], kb[sl], None if qp is None else qp[sl],
                                          None if kp is None else kp[sl]), float("-inf"))
            lse[sl] = s.logsumexp(-1)
            p = s.sub_(lse[sl].unsqueeze(-1)).exp_()  # (n, nc, c, kc) float32, in place
            if drop > 0:
                p.mul_(torch.empty_like(p).bernoulli_(1 - drop)).div_(1 - drop)
            o[sl] = p.to(v.dtype) @ v[sl]
        ctx.save_for_backward(q, k, v, qb, kb, qp, kp, o, lse)
        ctx.scale, ctx.drop, ctx.state = scale, drop, state
        return o, lse

    @staticmethod
    def backward(ctx, do, dlse):
        q, k, v, qb, kb, qp, kp, o, lse = ctx.saved_tensors
        scale, drop = ctx.scale, ctx.drop
        N, nc, c, hd = q.shape
        kc = k.shape[2]
        if do is None:
            do = torch.zeros_like(o)
        do = do.to(v.dtype)
        if dlse is None:
            dlse = torch.zeros_like(lse)
        delta = (do.to(lse.dtype) * o.to(lse.dtype)).sum(-1) - dlse  # (N, nc, c) acc
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        devices = [q.device] if q.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=drop > 0):
            if drop > 0:
                if q.device.type == "cuda":
                    torch.cuda.set_rng_state(ctx.state, q.device)
                else:
                    torch.set_rng_state(ctx.state)
            for sl in _slices(N, nc * c * kc):
                s = (q[sl] @ k[sl].transpose(-2, -1)).to(lse.dtype)  # (n, nc, c, kc)
                s.masked_fill_(_chunk_blocked(qb[sl], kb[sl], None if qp is None else qp[sl],
                                              None if kp is None else kp[sl]), float("-inf"))
                p = s.sub_(lse[sl].unsqueeze(-1)).exp_()  # (n, nc, c, kc) float32
                dp = (do[sl] @ v[sl].transpose(-2, -1)).to(lse.dtype)  # (n, nc, c, kc)
                if drop > 0:
                    keep = torch.empty_like(p).bernoulli_(1 - drop).div_(1 - drop)
                    dv[sl] = (p * keep).to(v.dtype).transpose(-2, -1) @ do[sl]
                    dp.mul_(keep)
                    del keep
                else:
                    dv[sl] = p.to(v.dtype).transpose(-2, -1) @ do[sl]
                ds = p.mul_(dp.sub_(delta[sl].unsqueeze(-1))).to(q.dtype)  # d(scaled scores)
                del dp
                dq[sl] = (ds @ k[sl]).mul_(scale)
                dk[sl] = ds.transpose(-2, -1) @ q[sl]  # q is the scaled q
        return dq, dk, dv, None, None, None, None, None, None


class LSHAttention(_HeadedAttention):
    """Reformer LSH attention (Kitaev et al. 2020).

    Shared QK (keys are the unit-normalised queries), ``qkv`` outputs ``[qk | v]``. Each of
    ``lsh_rounds`` rounds hashes with a fixed random rotation ``R`` (``argmax([xR, -xR])``),
    sorts by (bucket, position), splits into chunks of ``lsh_chunk`` and lets each chunk attend to
    itself and the previous chunk, same bucket only. Causal: one chunk (bucket + causal mask,
    dense), since chunking by sorted order would leak future hashes into past outputs. Rounds are
    combined with weights ``softmax`` of their log-sum-exp. With one bucket and one chunk it is
    exactly full shared-QK attention. Self-attention is not masked (unlike the paper) for that.

    :meth:`forward` does all rounds in one sort and one gather and runs :class:`_ChunkAttention`
    (scores recomputed in backward), so no (T, T) or (c, 2c)-sized tensor outlives the call;
    :meth:`_forward_reference` is the plain per-round code it is tested equal to.
    """

    qkv_parts = 2

    def __init__(self, cfg: ModelConfig, n_heads: int):
        super().__init__(cfg, n_heads)
        g = torch.Generator().manual_seed(cfg.variant_seed)
        half = max(cfg.lsh_buckets // 2, 1)
        self.register_buffer("rotations",
                             torch.randn(cfg.lsh_rounds, cfg.head_dim, half, generator=g))

    def chunk_len(self, T: int) -> int:
        return self.cfg.lsh_chunk or -(-T // self.cfg.lsh_buckets)

    def _hash(self, key: torch.Tensor) -> torch.Tensor:
        """(R, B, H, T) int64 bucket of every unit key in every round (one rotation each)."""
        R = self.cfg.lsh_rounds
        if self.cfg.lsh_buckets == 1:
            return torch.zeros(R, *key.shape[:-1], dtype=torch.long, device=key.device)
        buckets = []
        for r in range(R):  # per round, so that each projection is the reference's matmul
            proj = key @ self.rotations[r]  # (B, H, T, nb/2)
            buckets.append(torch.cat([proj, -proj], -1).argmax(-1))  # (B, H, T) int64
        return torch.stack(buckets)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All rounds at once: one sort of (R, B, H, T), one gather into chunks of the sorted
        order, :class:`_ChunkAttention` on [this chunk | previous chunk] (no (T, T) tensor and
        nothing of size (c, 2c) kept for backward), one inverse-permutation gather back.
        Computes :meth:`_forward_reference`'s function (same buckets, order, chunks, masks)."""
        qk, v = self._split(x)  # (B, H, T, hd) each
        B, H, T, hd = qk.shape
        R = self.cfg.lsh_rounds
        dev = x.device
        # Causal: one chunk (dense same-bucket mask); see the class docstring.
        c = T if self.cfg.causal else min(self.chunk_len(T), T)
        nc = -(-T // c)
        pad = nc * c - T
        pos = torch.arange(T, device=dev)
        bucket = self._hash(F.normalize(qk, dim=-1))  # (R, B, H, T) int64
        order = (bucket * T + pos).argsort(-1)  # (R, B, H, T) int64, keys unique: a total order
        inv = torch.empty_like(order).scatter_(-1, order, pos.expand_as(order))  # undo the sort
        # sorted [qk | v]; the key is normalised after the gather (a per-row op: same values)
        qkv = torch.cat([qk, v], -1).expand(R, B, H, T, 2 * hd)
        s = qkv.gather(3, order.unsqueeze(-1).expand(-1, -1, -1, -1, 2 * hd))
        s = s.reshape(R * B * H, T, 2 * hd)  # (N, T, 2hd) sorted order
        sb = bucket.gather(3, order).reshape(R * B * H, T)  # (N, T) int64
        sp = order.reshape(R * B * H, T)  # sorted position = the sort index
        if pad:  # padded keys get bucket -1: no real query sees them, padded queries see them
            s = F.pad(s, (0, 0, 0, pad))
            sb = F.pad(sb, (0, pad), value=-1)
        N = R * B * H
        sq, sv = s[..., :hd], s[..., hd:]
        sk = F.normalize(sq, dim=-1)
        if torch.is_autocast_enabled(dev.type):
            dt = torch.get_autocast_dtype(dev.type)
        else:
            dt = torch.promote_types(torch.promote_types(sq.dtype, sk.dtype), sv.dtype)
        cq = sq.to(dt).view(N, nc, c, hd)  # (N, nc, c, hd) compute dtype
        ck, cv = sk.to(dt).view(N, nc, c, hd), sv.to(dt).view(N, nc, c, hd)
        cb = sb.view(N, nc, c)  # (N, nc, c) int64
        if nc > 1:  # look one chunk back (chunk 0 looks at the last one, as roll does)
            look = lambda t: torch.cat([t, t.roll(1, dims=1)], dim=2)  # noqa: E731
            kk, vv, kb = look(ck), look(cv), look(cb)  # (N, nc, 2c, ...)
        else:
            kk, vv, kb = ck, cv, cb
        qp = kp = None
        if self.cfg.causal:  # nc == 1, no padding
            qp = kp = sp.view(N, 1, T)
        drop = self.drop.p if self.training else 0.0
        o, lse = _ChunkAttention.apply(cq, kk, vv, cb, kb, qp, kp, 1 / math.sqrt(hd), drop)
        o = o.reshape(R, B, H, nc * c, hd)[..., :T, :]  # (R, B, H, T, hd) sorted order
        lse = lse.reshape(R, B, H, nc * c)[..., :T]  # (R, B, H, T) float32
        o = o.gather(3, inv.unsqueeze(-1).expand(-1, -1, -1, -1, hd))  # (R, B, H, T, hd)
        lse = lse.gather(3, inv)  # (R, B, H, T) float32
        w = lse.softmax(0).unsqueeze(-1)  # (R, B, H, T, 1) float32
        y = (o * w).sum(0)  # (B, H, T, hd)
        return self._merge(y)  # (B, T, C)

    def _forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The plain per-round implementation :meth:`forward` is tested against: each round
        sorts, gathers and builds (B, H, nc, c, 2c) scores and masks, all kept by autograd."""
        qk, v = self._split(x)  # (B, H, T, hd) float32 each
        B, H, T, hd = qk.shape
        key = F.normalize(qk, dim=-1)  # (B, H, T, hd) float32
        # Causal: one chunk (dense same-bucket mask). With chunks, a future token's hash shifts the
        # sorted order and moves past keys between chunks, which leaks the future into the past.
        c = T if self.cfg.causal else min(self.chunk_len(T), T)
        nc = -(-T // c)
        pad = nc * c - T
        pos = torch.arange(T, device=x.device)
        outs, lses = [], []
        for r in range(self.cfg.lsh_rounds):
            if self.cfg.lsh_buckets == 1:
                bucket = torch.zeros(B, H, T, dtype=torch.long, device=x.device)
            else:
                proj = key @ self.rotations[r]  # (B, H, T, nb/2) float32
                bucket = torch.cat([proj, -proj], -1).argmax(-1)  # (B, H, T) int64
            order = (bucket * T + pos).argsort(-1)  # (B, H, T) int64
            gather = lambda t, o=order: t.gather(  # noqa: E731
                2, o.unsqueeze(-1).expand(-1, -1, -1, t.shape[-1]))
            sq, sk, sv = gather(qk), gather(key), gather(v)  # (B, H, T, hd) float32
            sb = bucket.gather(2, order)  # (B, H, T) int64
            sp = pos.expand(B, H, T).gather(2, order)  # (B, H, T) int64
            if pad:
                sq, sk, sv = (F.pad(t, (0, 0, 0, pad)) for t in (sq, sk, sv))
                sb = F.pad(sb, (0, pad), value=-1)
                sp = F.pad(sp, (0, pad), value=-1)
            cq = sq.view(B, H, nc, c, hd)  # (B, H, nc, c, hd) float32
            ck, cv = sk.view(B, H, nc, c, hd), sv.view(B, H, nc, c, hd)
            cb, cp = sb.view(B, H, nc, c), sp.view(B, H, nc, c)  # (B, H, nc, c) int64
            if nc > 1:  # look one chunk back
                look = lambda t: torch.cat([t, t.roll(1, dims=2)], dim=3)  # noqa: E731
                kk, vv, kb, kp = look(ck), look(cv), look(cb), look(cp)  # (B, H, nc, 2c, ...)
            else:
                kk, vv, kb, kp = ck, cv, cb, cp
            s = (cq @ kk.transpose(-2, -1)) / math.sqrt(hd)  # (B, H, nc, c, kc) float32
            allowed = (cb.unsqueeze(-1) == kb.unsqueeze(-2)) & (kp.unsqueeze(-2) >= 0)
            if self.cfg.causal:
                allowed &= kp.unsqueeze(-2) <= cp.unsqueeze(-1)
            s = s.masked_fill(~allowed, float("-inf"))
            lse = s.logsumexp(-1, keepdim=True)  # (B, H, nc, c, 1) float32
            lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))  # padded rows
            o = self.drop((s - lse).exp()) @ vv  # (B, H, nc, c, hd) float32
            o = o.reshape(B, H, nc * c, hd)[:, :, :T]  # (B, H, T, hd) sorted order
            lse = lse.reshape(B, H, nc * c)[:, :, :T]  # (B, H, T)
            inv = order.argsort(-1)  # (B, H, T) int64: undo the sort
            outs.append(o.gather(2, inv.unsqueeze(-1).expand(-1, -1, -1, hd)))
            lses.append(lse.gather(2, inv))
        w = torch.stack(lses).softmax(0).unsqueeze(-1)  # (R, B, H, T, 1) float32
        y = (torch.stack(outs) * w).sum(0)  # (B, H, T, hd) float32
        return self._merge(y)  # (B, T, C) float32


def _make_attention(cfg: ModelConfig, layer: int) -> nn.Module:
    h = cfg.heads(layer)
    a = cfg.attention
    if a in ("full", "window", "random_sparse"):
        return SoftmaxAttention(cfg, h)
    if a == "dynamic_window":
        return DynamicWindowAttention(cfg, h)
    if a == "linformer":
        return LinformerAttention(cfg, h, cfg.seq_len_at(layer))
    if a == "performer":
        return PerformerAttention(cfg, h)
    if a == "nystrom":
        return NystromAttention(cfg, h)
    if a == "conv":
        return ConvMixer(cfg)
    if a == "lsh":
        return LSHAttention(cfg, h)
    raise AssertionError(a)  # unreachable: ModelConfig validates


# --------------------------------------------------------------------------------------------
# blocks and model
class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig, d_ff: int):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, d_ff)
        self.act = nn.GELU()  # exact erf form (the integer model's LUT is built from it)
        self.fc2 = nn.Linear(d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))  # (B, T, C) float32


class Block(nn.Module):
    """Pre-LN block: ``x = x + attn(ln1(x)); x = x + ffn(ln2(x))``."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = _make_attention(cfg, layer)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ffn = FeedForward(cfg, cfg.ffn_width(layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # (B, T, C) float32
        return x + self.ffn(self.ln2(x))  # (B, T, C) float32


def _funnel_pool(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Strided mean pooling along T (ceil mode: the last group may be shorter)."""
    B, T, C = x.shape
    pad = _pooled_len(T, stride) * stride - T
    ones = torch.ones(B, T, 1, dtype=x.dtype, device=x.device)
    xs = F.pad(x, (0, 0, 0, pad)).view(B, -1, stride, C).sum(2)  # (B, T', C) float32
    n = F.pad(ones, (0, 0, 0, pad)).view(B, -1, stride, 1).sum(2)  # (B, T', 1) float32
    return xs / n


def _funnel_upsample(x: torch.Tensor, T: int, stride: int, causal: bool) -> torch.Tensor:
    """Back to length T. Non-causal: repeat each pooled token ``stride`` times. Causal: token t
    takes the last pooled group that ends at or before t (zeros before the first complete group),
    so no future token leaks into the LM's logits."""
    B, Tp, C = x.shape
    t = torch.arange(T, device=x.device)
    if not causal:
        return x[:, (t // stride).clamp_max(Tp - 1)]  # (B, T, C) float32
    g = (t + 1) // stride - 1  # (T,) int64: last complete group
    y = x[:, g.clamp(0, Tp - 1)]  # (B, T, C) float32
    return y * (g >= 0).to(x.dtype).view(1, T, 1)


class LightTransformer(nn.Module):
    """The LightTransformer (see module docstring). ``forward(x) -> logits``: (B, n_classes) for
    ``classify``, (B, T, n_classes) for ``lm``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError(f"cfg must be a ModelConfig, not {cfg!r}")
        self.cfg = cfg
        if cfg.input_kind == "patches":
            self.embed = nn.Linear(cfg.patch_dim, cfg.d_model)
        else:
            self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Parameter(torch.randn(cfg.seq_len, cfg.d_model) * 0.02)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def _check_input(self, x: torch.Tensor) -> None:
        cfg = self.cfg
        if cfg.input_kind == "patches":
            if x.ndim != 3 or x.shape[-1] != cfg.patch_dim or not x.is_floating_point():
                raise ValueError(f"x must be a float tensor (B, T, {cfg.patch_dim}), "
                                 f"not {x.dtype} {tuple(x.shape)}")
        elif x.ndim != 2 or x.dtype != torch.int64:
            raise ValueError(f"x must be an int64 token tensor (B, T), not {x.dtype} "
                             f"{tuple(x.shape)}")
        if not 1 <= x.shape[1] <= cfg.seq_len:
            raise ValueError(f"sequence length must be in 1..seq_len ({cfg.seq_len}), "
                             f"not {x.shape[1]!r}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final-LayerNorm token features (B, T, C) (T shrinks with funnel pooling unless lm)."""
        self._check_input(x)
        T = x.shape[1]
        h = self.drop(self.embed(x) + self.pos[:T])  # (B, T, C) float32
        s = self.cfg.funnel_stride
        h0 = h
        for i, blk in enumerate(self.blocks):
            if i and s > 1:
                h = _funnel_pool(h, s)  # (B, T', C) float32
            h = blk(h)
        if self.cfg.task == "lm" and h.shape[1] != T:
            h = h0 + _funnel_upsample(h, T, s ** (len(self.blocks) - 1), self.cfg.causal)
        return self.ln_f(h)  # (B, T, C) float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (B, T, C) float32
        if self.cfg.task == "lm":
            return self.head(h)  # (B, T, n_classes) float32
        return self.head(h.mean(dim=1))  # (B, n_classes) float32


# --------------------------------------------------------------------------------------------
# the source material's example, fixed
class SeedLightTransformer(nn.Module):
    """The source material's ``LightTransformer`` example (``nn.Transformer`` + vocabulary
    projection), fixed so it runs: real token embeddings (it fed embeddings directly and left
    ``vocab_size`` undefined), learned positions, a causal target mask, ``batch_first``.

    ``forward(src, tgt_in)``: src (B, S) int64, tgt_in (B, L) int64 (BOS-prefixed, teacher forcing)
    -> (B, L, vocab_size) logits. :meth:`generate` decodes greedily.
    """

    def __init__(self, vocab_size: int, *, d_model: int = 32, nhead: int = 2,
                 num_encoder_layers: int = 2, num_decoder_layers: int = 2,
                 dim_feedforward: int = 64, max_len: int = 32, dropout: float = 0.0):
        super().__init__()
        _check_int("vocab_size", vocab_size, 2)
        _check_int("max_len", max_len, 1)
        if d_model % nhead:
            raise ValueError(f"nhead must divide d_model ({d_model}), not {nhead!r}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.config = dict(vocab_size=vocab_size, d_model=d_model, nhead=nhead,
                           num_encoder_layers=num_encoder_layers,
                           num_decoder_layers=num_decoder_layers,
                           dim_feedforward=dim_feedforward, max_len=max_len, dropout=dropout)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        self.transformer = nn.Transformer(
            d_model=d_model, nhead=nhead, num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers, dim_feedforward=dim_feedforward,
            dropout=dropout, batch_first=True)
        self.fc_out = nn.Linear(d_model, vocab_size)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        S, L = src.shape[1], tgt_in.shape[1]
        if S > self.max_len or L > self.max_len:
            raise ValueError(f"sequence lengths must be <= max_len ({self.max_len}), not {S}, {L}")
        s = self.embed(src) + self.pos[:S]  # (B, S, C) float32
        t = self.embed(tgt_in) + self.pos[:L]  # (B, L, C) float32
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=src.device)  # (L, L)
        h = self.transformer(s, t, tgt_mask=mask, tgt_is_causal=True)  # (B, L, C) float32
        return self.fc_out(h)  # (B, L, vocab) float32

    def count_macs(self, src_len: int, tgt_len: int) -> int:
        """Analytic MACs of one teacher-forced forward pass per sample (same conventions as
        :func:`count_macs`: projections, attention pairs, FFN, vocabulary projection)."""
        c = self.config
        d, ff, S, L = c["d_model"], c["dim_feedforward"], src_len, tgt_len
        enc = c["num_encoder_layers"] * (4 * S * d * d + 2 * S * S * d + 2 * S * d * ff)
        dec = c["num_decoder_layers"] * (
            4 * L * d * d + 2 * (L * (L + 1) // 2) * d  # causal self-attention
            + 2 * L * d * d + 2 * S * d * d + 2 * L * S * d  # cross-attention
            + 2 * L * d * ff)
        return enc + dec + L * d * c["vocab_size"]

    @torch.no_grad()
    def generate(self, src: torch.Tensor, length: int, bos: int) -> torch.Tensor:
        """Greedy decoding of ``length`` tokens -> (B, length) int64."""
        out = torch.full((src.shape[0], 1), bos, dtype=torch.long, device=src.device)
        for _ in range(length):
            nxt = self(src, out)[:, -1].argmax(-1, keepdim=True)  # (B, 1) int64
            out = torch.cat([out, nxt], dim=1)
        return out[:, 1:]


# --------------------------------------------------------------------------------------------
# structured pruning
def _headed(model: LightTransformer, layer: int) -> _HeadedAttention:
    attn = model.blocks[layer].attn
    if not isinstance(attn, _HeadedAttention):
        raise ValueError(f"prune_heads needs an attention with heads; {model.cfg.attention!r} "
                         "has none (prune_ffn still works)")
    return attn


def head_importance(model: LightTransformer, x: torch.Tensor | None = None,
                    y: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Per-layer (n_heads,) importance. Without data: weight norm of the head's qkv rows and proj
    columns. With a batch ``(x, y)``: first-order Taylor score |sum(w * dL/dw)| over the same
    weights (Molchanov et al. 2019), the loss being the task's cross-entropy."""
    grads = None
    if x is not None:
        if y is None:
            raise ValueError("y must be given together with x for gradient-based importance")
        model.zero_grad()
        logits = model(x)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        grads = True
    scores = []
    for i in range(len(model.blocks)):
        a = _headed(model, i)
        H, hd = a.n_heads, a.head_dim
        w_qkv = a.qkv.weight.view(a.qkv_parts, H, hd, -1)  # (P, H, hd, C)
        w_proj = a.proj.weight.view(-1, H, hd)  # (C, H, hd)
        if grads:
            s = (w_qkv * a.qkv.weight.grad.view_as(w_qkv)).sum((0, 2, 3)).abs() + \
                (w_proj * a.proj.weight.grad.view_as(w_proj)).sum((0, 2)).abs()
        else:
            s = w_qkv.pow(2).sum((0, 2, 3)).sqrt() * w_proj.pow(2).sum((0, 2)).sqrt()
        scores.append(s.detach())
    if grads:
        model.zero_grad()
    return scores


def select_heads(model: LightTransformer, keep_per_layer: int, x=None, y=None) -> dict:
    """The ``keep_per_layer`` most important heads of every layer, as ``{layer: [heads]}``."""
    scores = head_importance(model, x, y)
    return {i: sorted(s.topk(min(keep_per_layer, len(s))).indices.tolist())
            for i, s in enumerate(scores)}


@torch.no_grad()
def prune_heads(model: LightTransformer, keep: dict[int, list[int]]) -> LightTransformer:
    """Physically remove attention heads in place: ``keep[layer]`` lists the heads to keep (layers
    not in ``keep`` are untouched). Shrinks ``qkv`` rows and ``proj`` columns and updates
    ``model.cfg.layer_heads``. Returns the model."""
    layer_heads = [model.cfg.heads(i) for i in range(len(model.blocks))]
    for layer, heads in keep.items():
        if not isinstance(layer, int) or not 0 <= layer < len(model.blocks):
            raise ValueError(f"layer must be in 0..{len(model.blocks) - 1}, not {layer!r}")
        a = _headed(model, layer)
        H, hd = a.n_heads, a.head_dim
        heads = sorted(set(heads))
        if not heads or any(not 0 <= h < H for h in heads):
            raise ValueError(f"heads to keep must be a non-empty subset of 0..{H - 1}, "
                             f"not {keep[layer]!r}")
        idx = torch.tensor(heads)
        w = a.qkv.weight.view(a.qkv_parts, H, hd, -1)[:, idx].reshape(-1, a.qkv.in_features)
        b = a.qkv.bias.view(a.qkv_parts, H, hd)[:, idx].reshape(-1)
        a.qkv = _linear_like(a.qkv, w, b)
        pw = a.proj.weight.view(-1, H, hd)[:, idx].reshape(a.proj.out_features, -1)
        a.proj = _linear_like(a.proj, pw, a.proj.bias)
        if isinstance(a, DynamicWindowAttention):
            a.span = _linear_like(a.span, a.span.weight[idx], a.span.bias[idx])
        a.n_heads = len(heads)
        layer_heads[layer] = len(heads)
    model.cfg = replace(model.cfg, layer_heads=tuple(layer_heads))
    return model


def ffn_importance(model: LightTransformer) -> list[torch.Tensor]:
    """Per-layer (d_ff,) neuron importance: ||fc1 row|| * ||fc2 column||."""
    return [(b.ffn.fc1.weight.norm(dim=1) * b.ffn.fc2.weight.norm(dim=0)).detach()
            for b in model.blocks]


@torch.no_grad()
def prune_ffn(model: LightTransformer, keep_ratio: float,
              scores: list[torch.Tensor] | None = None) -> LightTransformer:
    """Physically keep the ``ceil(keep_ratio * d_ff)`` most important FFN neurons of every layer
    (fc1 rows, fc2 columns), in place; updates ``model.cfg.layer_d_ff``. Returns the model."""
    if not isinstance(keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1], not {keep_ratio!r}")
    scores = ffn_importance(model) if scores is None else scores
    widths = []
    for blk, s in zip(model.blocks, scores):
        n = max(1, math.ceil(keep_ratio * blk.ffn.fc1.out_features))
        idx = s.topk(n).indices.sort().values
        f = blk.ffn
        f.fc1 = _linear_like(f.fc1, f.fc1.weight[idx], f.fc1.bias[idx])
        f.fc2 = _linear_like(f.fc2, f.fc2.weight[:, idx], f.fc2.bias)
        widths.append(n)
    model.cfg = replace(model.cfg, layer_d_ff=tuple(widths))
    return model


def _linear_like(old: nn.Linear, w: torch.Tensor, b: torch.Tensor | None) -> nn.Linear:
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None,
                    device=w.device, dtype=w.dtype)
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new


# --------------------------------------------------------------------------------------------
# cost
def count_params(model: nn.Module) -> int:
    """Trainable parameters (buffers such as fixed random features are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _mixer_macs(cfg: ModelConfig, layer: int, T: int) -> tuple[int, int]:
    """(projection MACs, token-mixing MACs) of one block's attention at length T, per sample.

    Token mixing is counted for the algorithm as an efficient kernel runs it (a banded or sparse
    kernel visits only allowed pairs), not for this file's dense PyTorch reference code."""
    d, H, hd = cfg.d_model, cfg.heads(layer), cfg.head_dim
    inner = H * hd
    a = cfg.attention
    if a == "conv":
        return T * d * d, T * d * cfg.conv_kernel
    parts = 2 if a == "lsh" else 3
    proj = T * d * parts * inner + T * inner * d
    if a in ("full", "window", "random_sparse", "dynamic_window"):
        if a == "full":
            pairs = T * (T + 1) // 2 if cfg.causal else T * T
        elif a == "window" or a == "dynamic_window":
            pairs = int(window_mask(T, cfg.window, cfg.causal).sum())
        else:
            pairs = int(random_sparse_mask(T, cfg.window, cfg.n_random, cfg.causal,
                                           cfg.variant_seed).sum())
        extra = T * d * H if a == "dynamic_window" else 0  # span predictor
        return proj + extra, 2 * pairs * inner
    if a == "linformer":
        k = cfg.proj_len
        return proj, 2 * k * T * inner + 2 * T * k * inner
    if a == "performer":
        m = cfg.n_features
        return proj, 2 * T * m * inner + 2 * T * m * inner + 2 * T * m * H
    if a == "nystrom":
        L = min(cfg.n_landmarks, T)
        pinv = 6 * 4 * L ** 3 * H  # 6 Newton-Schulz iterations, 4 (L x L) products each
        return proj, T * L * inner + L * L * inner + L * T * inner + L * T * inner + pinv + \
            T * L * L * H + T * L * inner
    if a == "lsh":
        c = min(cfg.lsh_chunk or -(-T // cfg.lsh_buckets), T)
        kc = c if c >= T else 2 * c
        hashing = T * hd * max(cfg.lsh_buckets // 2, 1) * H if cfg.lsh_buckets > 1 else 0
        if cfg.causal:  # expected same-bucket past pairs, buckets assumed balanced
            return proj, cfg.lsh_rounds * (hashing + 2 * (T * (T + 1) // 2) * inner
                                           // cfg.lsh_buckets)
        return proj, cfg.lsh_rounds * (hashing + 2 * T * kc * inner)
    raise AssertionError(a)


def count_macs(cfg: ModelConfig, *, seq_len: int | None = None,
               breakdown: bool = False) -> int | dict[str, int]:
    """Analytic multiply-accumulates per sample at sequence length ``seq_len`` (default
    ``cfg.seq_len``): embedding, Q/K/V/output projections, token mixing (attention), FFN and head.
    LayerNorm, softmax, GELU and pooling are not MACs and are not counted. ``breakdown=True``
    returns ``{"embed", "proj", "attention", "ffn", "head", "total"}``."""
    T = cfg.seq_len if seq_len is None else seq_len
    _check_int("seq_len", T, 1)
    d = cfg.d_model
    out = dict(embed=T * cfg.patch_dim * d if cfg.input_kind == "patches" else 0,
               proj=0, attention=0, ffn=0, head=0)
    t = T
    for i in range(cfg.n_layers):
        if i and cfg.funnel_stride > 1:
            t = _pooled_len(t, cfg.funnel_stride)
        p, m = _mixer_macs(cfg, i, t)
        out["proj"] += p
        out["attention"] += m
        out["ffn"] += 2 * t * d * cfg.ffn_width(i)
    out["head"] = (T if cfg.task == "lm" else 1) * d * cfg.n_classes
    out["total"] = sum(out.values())
    return out if breakdown else out["total"]

