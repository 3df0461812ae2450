# SPDX-License-Identifier: Apache-2.0
"""sw.model.LSHAttention: the batched, memory-lean forward computes the reference's function.

``LSHAttention.forward`` (one sort of all rounds, chunk blocks, :class:`sw.model._ChunkAttention`
with a recomputing backward) against ``LSHAttention._forward_reference`` (the per-round code):
outputs and every gradient (input, ``qkv``, ``proj``) in float32, on ragged lengths, several
bucket / round / chunk settings, causal and not.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

from helpers import assert_same_as_reference, outputs_and_grads  # noqa: E402

import sw.model as model  # noqa: E402
from sw.model import LightTransformer, ModelConfig, _ChunkAttention  # noqa: E402

torch.set_num_threads(1)

TOL = dict(rtol=1e-5, atol=1e-6)
# (buckets, rounds, chunk): chunk 0 = ceil(T / buckets); 1 bucket + chunks exercises the
# wrap-around look-back (chunk 0 sees the last chunk); chunk 64 > T is one chunk.
SETTINGS = [(1, 1, 0), (1, 2, 4), (2, 1, 0), (4, 2, 0), (4, 3, 3), (8, 2, 0), (8, 2, 5),
            (4, 2, 64)]
LENGTHS = [1, 13, 16, 31]  # ragged (not a multiple of the chunk) and exact


def _attn(buckets, rounds, chunk, causal, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    kw = dict(task="lm", input_kind="tokens", vocab_size=7, n_classes=7) if causal else {}
    cfg = ModelConfig(attention="lsh", lsh_buckets=buckets, lsh_rounds=rounds, lsh_chunk=chunk,
                      causal=causal, patch_dim=4, seq_len=64, n_classes=kw.pop("n_classes", 5),
                      d_model=32, n_heads=4, n_layers=1, d_ff=8, dropout=dropout, **kw)
    return LightTransformer(cfg).blocks[0].attn


def test_fast_forward_equals_reference():
    checked = 0
    for (nb, rounds, chunk), T, causal in itertools.product(SETTINGS, LENGTHS, (False, True)):
        attn = _attn(nb, rounds, chunk, causal).train()
        gen = torch.Generator().manual_seed(T * 100 + nb)
        x = torch.randn(2, T, 32, generator=gen) * 3  # scale: several buckets get used
        g = torch.randn(2, T, 32, generator=gen)
        assert_same_as_reference(attn, x, g, **TOL)
        checked += 1
    assert checked == len(SETTINGS) * len(LENGTHS) * 2 == 64


def test_chunks_really_sparse_and_buckets_used():
    """The equality above is not vacuous: several buckets occur and the chunking changes the
    function (the fast path is not a dense fallback)."""
    attn = _attn(8, 2, 5, False)
    x = torch.randn(2, 31, 32, generator=torch.Generator().manual_seed(1)) * 3
    qk, _ = attn._split(x)
    assert attn._hash(torch.nn.functional.normalize(qk, dim=-1)).unique().numel() >= 4
    dense = _attn(1, 1, 64, False)
    dense.qkv.load_state_dict(attn.qkv.state_dict())
    dense.proj.load_state_dict(attn.proj.state_dict())
    with torch.no_grad():
        assert not torch.allclose(attn(x), dense(x), atol=1e-3)


def test_slicing_does_not_change_the_result(monkeypatch):
    attn = _attn(4, 2, 3, False).train()
    x = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(2))
    g = torch.randn(2, 13, 32, generator=torch.Generator().manual_seed(3))
    whole = outputs_and_grads(attn, attn, x, g)
    monkeypatch.setattr(model, "_SCORE_BUDGET", 7)  # one row (N index) per slice
    assert len(model._slices(5, 100)) == 5
    sliced = outputs_and_grads(attn, attn, x, g)
    for a, b in zip(sliced, whole):
        torch.testing.assert_close(a, b, **TOL)


def _chunk_autograd(q, k, v, qb, kb, scale, drop):
    """Plain-autograd twin of ``_ChunkAttention`` (float64 inputs: float64 steps; the same
    dropout draws)."""
    s = (q @ k.transpose(-2, -1)) * scale
    s = s.masked_fill(qb.unsqueeze(-1) != kb.unsqueeze(-2), float("-inf"))
    lse = s.logsumexp(-1)
    p = (s - lse.unsqueeze(-1)).exp()
    if drop > 0:
        p = p * torch.empty_like(p).bernoulli_(1 - drop) / (1 - drop)
    return p.to(v.dtype) @ v, lse


@pytest.mark.parametrize("drop", [0.0, 0.3])
def test_chunk_attention_backward_matches_autograd(drop):
    """The hand-written backward (recomputed scores, replayed dropout) against autograd,
    gradients from both outputs (o and lse)."""
    gen = torch.Generator().manual_seed(4)
    N, nc, c, kc, hd = 3, 2, 5, 10, 8
    q, k, v = (torch.randn(N, nc, n, hd, generator=gen, dtype=torch.float64)
               for n in (c, kc, kc))
    qb = torch.randint(0, 2, (N, nc, c), generator=gen)
    kb = torch.cat([qb, torch.randint(0, 2, (N, nc, kc - c), generator=gen)], -1)  # sees self
    go, gl = torch.randn(N, nc, c, hd, generator=gen, dtype=torch.float64), \
        torch.randn(N, nc, c, generator=gen, dtype=torch.float64)
    grads = []
    for f in (lambda *a: _ChunkAttention.apply(*a[:5], None, None, *a[5:]), _chunk_autograd):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        torch.manual_seed(5)
        o, lse = f(*leaves, qb, kb, 0.25, drop)
        torch.manual_seed(6)  # the backward must not depend on the RNG state at that time
        ((o * go).sum() + (lse * gl).sum()).backward()
        grads.append([o.detach(), lse.detach()] + [t.grad for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_bf16_autocast_close_to_reference():
    """Under CPU bf16 autocast (the bench's precision) the paths agree to bf16 accuracy."""
    attn = _attn(4, 2, 0, False).eval()
    x = torch.randn(2, 31, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = attn(x), attn._forward_reference(x)
    torch.testing.assert_close(got.float(), ref.float(), rtol=3e-2, atol=3e-2)
