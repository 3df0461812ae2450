# SPDX-License-Identifier: Apache-2.0
"""sw.model.DynamicWindowAttention: the banded forward computes the dense reference's function.

``forward`` (query blocks against the key slice covering their windows) against
``_forward_reference`` (the (B, H, T, T) soft mask): outputs and every gradient (input, ``qkv``,
``span``, ``proj``) in float32, ragged lengths, several windows and block sizes, causal and not.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

from helpers import assert_same_as_reference  # noqa: E402

import sw.model as model  # noqa: E402
from sw.model import LightTransformer, ModelConfig  # noqa: E402

torch.set_num_threads(1)

TOL = dict(rtol=1e-5, atol=1e-6)
WINDOWS = [1, 2, 5, 8, 16]
LENGTHS = [1, 7, 13, 37]
BLOCKS = [3, 8, 64]  # 64 > T: one block


def _attn(window, causal, seed=0):
    torch.manual_seed(seed)
    kw = dict(task="lm", input_kind="tokens", vocab_size=7, n_classes=7) if causal else {}
    cfg = ModelConfig(attention="dynamic_window", window=window, causal=causal, patch_dim=4,
                      seq_len=64, n_classes=kw.pop("n_classes", 5), d_model=32, n_heads=4,
                      n_layers=1, d_ff=8, **kw)
    attn = LightTransformer(cfg).blocks[0].attn
    with torch.no_grad():  # spans spread over the ramp (the init is nearly constant)
        attn.span.weight.normal_(0, 0.5)
        attn.span.bias.zero_()
    return attn.train()


def test_banded_forward_equals_reference(monkeypatch):
    checked = 0
    for w, T, causal, blk in itertools.product(WINDOWS, LENGTHS, (False, True), BLOCKS):
        monkeypatch.setattr(model, "_DW_BLOCK", blk)
        attn = _attn(w, causal)
        gen = torch.Generator().manual_seed(T * 100 + w)
        x = torch.randn(2, T, 32, generator=gen)
        g = torch.randn(2, T, 32, generator=gen)
        assert_same_as_reference(attn, x, g, **TOL)
        checked += 1
    assert checked == len(WINDOWS) * len(LENGTHS) * 2 * len(BLOCKS) == 120


def test_span_gradient_is_exercised():
    """Not vacuous: the span receives a gradient (some keys sit on the ramp)."""
    attn = _attn(16, False)
    x = torch.randn(2, 37, 32, generator=torch.Generator().manual_seed(1))
    attn(x).square().sum().backward()
    assert attn.span.weight.grad.abs().sum() > 0


def test_bf16_autocast_close_to_reference():
    """Under CPU bf16 autocast (the bench's precision) the paths agree to bf16 accuracy."""
    attn = _attn(8, False).eval()
    x = torch.randn(2, 37, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got, ref = attn(x), attn._forward_reference(x)
    torch.testing.assert_close(got.float(), ref.float(), rtol=3e-2, atol=3e-2)
