# SPDX-License-Identifier: Apache-2.0
"""sw.model: shapes, masks, causality, pruning, cost counting, config validation (tiny configs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sw.model import (  # noqa: E402
    ATTENTIONS,
    LightTransformer,
    ModelConfig,
    SeedLightTransformer,
    count_macs,
    count_params,
    head_importance,
    prune_ffn,
    prune_heads,
    select_heads,
    window_mask,
)

torch.set_num_threads(1)
CAUSAL_OK = [a for a in ATTENTIONS if a not in ("linformer", "nystrom")]


def _cfg(**kw) -> ModelConfig:
    base = dict(patch_dim=4, seq_len=12, n_classes=5, d_model=16, n_heads=2, n_layers=2, d_ff=24,
                window=4, n_landmarks=4, proj_len=6, n_features=8)
    base.update(kw)
    return ModelConfig(**base)


def _lm_cfg(**kw) -> ModelConfig:
    return _cfg(task="lm", input_kind="tokens", vocab_size=7, n_classes=7, causal=True, **kw)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_model_classify_forward_backward(attention):
    torch.manual_seed(0)
    m = LightTransformer(_cfg(attention=attention))
    x = torch.randn(3, 12, 4)
    y = m(x)
    assert y.shape == (3, 5) and y.dtype == torch.float32
    y.logsumexp(-1).sum().backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert m.embed.weight.grad.abs().sum() > 0
    assert m(torch.randn(2, 5, 4)).shape == (2, 5)  # shorter sequences work


def _outputs_before_after(f, x, pos, change):
    """``f(x)`` and ``f`` of ``x`` with position ``pos`` replaced by ``change(x[:, pos])``."""
    x2 = x.clone()
    x2[:, pos] = change(x2[:, pos])
    with torch.no_grad():
        return f(x), f(x2)


@pytest.mark.parametrize("attention", CAUSAL_OK)
def test_model_lm_causality(attention):
    """Changing a future token leaves every earlier position's logits unchanged."""
    torch.manual_seed(0)
    m = LightTransformer(_lm_cfg(attention=attention)).eval()
    a, b = _outputs_before_after(m, torch.randint(0, 7, (2, 12)), 7, lambda t: (t + 1) % 7)
    assert a.shape == (2, 12, 7)
    torch.testing.assert_close(a[:, :7], b[:, :7], rtol=0, atol=1e-5)
    assert not torch.allclose(a[:, 7:], b[:, 7:])


@pytest.mark.parametrize("attention", ["window", "dynamic_window", "random_sparse"])
@pytest.mark.parametrize("causal", [False, True])
def test_model_windowed_variants_stay_in_window(attention, causal):
    """One layer, window 3: a token outside query t's window cannot change its features."""
    torch.manual_seed(0)
    m = LightTransformer(_cfg(attention=attention, window=3, n_random=0, n_layers=1,
                              causal=causal)).eval()
    a, b = _outputs_before_after(m.features, torch.randn(2, 12, 4), 9, lambda t: t + 5.0)
    # keys of query 5: causal 3..5, centred 4..6; token 0 is a global key for random_sparse
    torch.testing.assert_close(a[:, 5], b[:, 5], rtol=0, atol=1e-6)
    assert not torch.allclose(a[:, 9], b[:, 9])


@pytest.mark.parametrize("attention", ["full", "window", "performer", "lsh"])
def test_model_lm_causality_with_funnel(attention):
    torch.manual_seed(0)
    m = LightTransformer(_lm_cfg(attention=attention, funnel_stride=2, n_layers=3)).eval()
    a, b = _outputs_before_after(m, torch.randint(0, 7, (2, 12)), 6, lambda t: (t + 3) % 7)
    assert a.shape == (2, 12, 7)
    torch.testing.assert_close(a[:, :6], b[:, :6], rtol=0, atol=1e-5)


def test_model_funnel_classify_shapes_and_macs():
    cfg = _cfg(attention="full", funnel_stride=2, n_layers=3)
    m = LightTransformer(cfg)
    assert m.features(torch.randn(2, 12, 4)).shape == (2, 3, 16)  # 12 -> 6 -> 3
    assert m(torch.randn(2, 12, 4)).shape == (2, 5)
    flat = count_macs(dataclasses.replace(cfg, funnel_stride=1), breakdown=True)
    pooled = count_macs(cfg, breakdown=True)
    assert pooled["ffn"] == 2 * (12 + 6 + 3) * 16 * 24
    assert pooled["total"] < flat["total"]


def test_window_mask_semantics():
    c = window_mask(6, 3, causal=True)
    assert c[4].tolist() == [False, False, True, True, True, False]
    assert c[0].tolist() == [True] + [False] * 5  # clipped at 0
    z = window_mask(6, 4, causal=False)  # centred even window: 2 back, 1 ahead
    assert z[3].tolist() == [False, True, True, True, True, False]
    assert z[5].tolist() == [False, False, False, True, True, True]  # clipped at T
    z3 = window_mask(6, 3, causal=False)  # odd window: symmetric
    assert z3[2].tolist() == [False, True, True, True, False, False]
    # T < window
    assert window_mask(3, 8, causal=True).tolist() == torch.ones(3, 3).tril().bool().tolist()
    assert window_mask(3, 8, causal=False).all()
    # window 1 is the diagonal
    assert torch.equal(window_mask(5, 1, causal=True), torch.eye(5, dtype=torch.bool))
    assert torch.equal(window_mask(5, 1, causal=False), torch.eye(5, dtype=torch.bool))


@pytest.mark.parametrize("T", [1, 3, 8, 13])
@pytest.mark.parametrize("window", [1, 2, 3, 4, 8, 9])
@pytest.mark.parametrize("causal", [False, True])
def test_window_mask_matches_integer_model(T, window, causal):
    from sw.ref import attention_window_bounds

    lo, hi = attention_window_bounds(T, window, causal)
    j = np.arange(T)
    expected = (j[None, :] >= lo[:, None]) & (j[None, :] < hi[:, None])
    np.testing.assert_array_equal(window_mask(T, window, causal).numpy(), expected)


def test_window_at_least_t_equals_full():
    """Causal window >= T (centred: >= 2T-1) is full attention, in the mask and in the model."""
    T = 12
    assert torch.equal(window_mask(T, T, True), torch.ones(T, T, dtype=torch.bool).tril())
    assert window_mask(T, 2 * T - 1, False).all()
    assert not window_mask(T, 2 * T - 2, False).all()
    for causal, w in ((False, 2 * T - 1), (True, T)):
        kw = dict(task="lm", input_kind="tokens", vocab_size=7, n_classes=7) if causal else {}
        torch.manual_seed(0)
        full = LightTransformer(_cfg(attention="full", causal=causal, **kw)).eval()
        win = LightTransformer(_cfg(attention="window", window=w, causal=causal, **kw)).eval()
        win.load_state_dict(full.state_dict())
        x = torch.randint(0, 7, (2, T)) if causal else torch.randn(2, T, 4)
        with torch.no_grad():
            torch.testing.assert_close(win(x), full(x), rtol=0, atol=0)


def test_window_smaller_than_t_differs_from_full():
    torch.manual_seed(0)
    full = LightTransformer(_cfg(attention="full")).eval()
    win = LightTransformer(_cfg(attention="window", window=3)).eval()
    win.load_state_dict(full.state_dict())
    x = torch.randn(2, 12, 4)
    with torch.no_grad():
        assert not torch.allclose(win(x), full(x))


def _shared_qk_full(attn, x, causal):
    """Reference: full softmax attention with Reformer's shared QK (keys = normalised queries)."""
    qk, v = attn._split(x)
    key = torch.nn.functional.normalize(qk, dim=-1)
    s = qk @ key.transpose(-2, -1) / attn.head_dim ** 0.5
    if causal:
        T = x.shape[1]
        s = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
    return attn._merge(s.softmax(-1) @ v)


@pytest.mark.parametrize("causal", [False, True])
def test_lsh_one_bucket_equals_full(causal):
    torch.manual_seed(0)
    kw = dict(task="lm", input_kind="tokens", vocab_size=7, n_classes=7) if causal else {}
    m = LightTransformer(_cfg(attention="lsh", lsh_buckets=1, lsh_rounds=3, causal=causal, **kw))
    attn = m.blocks[0].attn
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), _shared_qk_full(attn, x, causal),
                                   rtol=1e-5, atol=1e-6)


def test_lsh_several_buckets_is_sparse():
    torch.manual_seed(0)
    m = LightTransformer(_cfg(attention="lsh", lsh_buckets=4, lsh_rounds=1, lsh_chunk=2))
    attn = m.blocks[0].attn
    x = torch.randn(2, 12, 16)
    with torch.no_grad():
        assert not torch.allclose(attn(x), _shared_qk_full(attn, x, False), atol=1e-4)


def test_prune_nothing_is_identity_and_pruning_shrinks():
    torch.manual_seed(0)
    cfg = _cfg(attention="window", n_heads=4)
    m = LightTransformer(cfg).eval()
    x = torch.randn(3, 12, 4)
    with torch.no_grad():
        before = m(x)
        n0 = count_params(m)
        prune_heads(m, {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]})
        prune_ffn(m, 1.0)
        torch.testing.assert_close(m(x), before, rtol=0, atol=0)
        assert count_params(m) == n0
        prune_heads(m, {0: [1, 3], 1: [2]})
        prune_ffn(m, 0.5)
    assert m.cfg.layer_heads == (2, 1) and m.cfg.layer_d_ff == (12, 12)
    assert m.blocks[0].attn.qkv.weight.shape == (3 * 2 * 4, 16)
    assert m.blocks[1].attn.proj.weight.shape == (16, 4)
    assert m.blocks[0].ffn.fc1.weight.shape == (12, 16)
    assert count_params(m) < n0
    assert count_macs(m.cfg) < count_macs(cfg)
    y = m(x)
    assert y.shape == (3, 5)
    y.sum().backward()
    # a fresh model from the pruned config has the same shapes: checkpoints reload
    LightTransformer(m.cfg).load_state_dict(m.state_dict())


def test_prune_heads_keeps_the_chosen_heads_exactly():
    """Zeroing a head's proj columns is the same as removing it."""
    torch.manual_seed(0)
    m = LightTransformer(_cfg(attention="full", n_heads=4, n_layers=1)).eval()
    x = torch.randn(2, 12, 4)
    with torch.no_grad():
        m.blocks[0].attn.proj.weight[:, 4:8] = 0  # kill head 1
        ref = m(x)
        prune_heads(m, {0: [0, 2, 3]})
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attention", ["dynamic_window", "performer", "lsh", "linformer"])
def test_prune_heads_other_variants(attention):
    torch.manual_seed(0)
    m = LightTransformer(_cfg(attention=attention, n_heads=4))
    prune_heads(m, select_heads(m, 2))
    assert m(torch.randn(2, 12, 4)).shape == (2, 5)


def test_head_importance_taylor_and_errors():
    torch.manual_seed(0)
    m = LightTransformer(_cfg(attention="full", n_heads=4))
    x, y = torch.randn(8, 12, 4), torch.randint(0, 5, (8,))
    s = head_importance(m, x, y)
    assert len(s) == 2 and s[0].shape == (4,) and (s[0] >= 0).all()
    assert all(p.grad is None or not p.grad.any() for p in m.parameters())
    assert len(select_heads(m, 1, x, y)[1]) == 1
    with pytest.raises(ValueError, match="heads to keep"):
        prune_heads(m, {0: [7]})
    with pytest.raises(ValueError, match="keep_ratio"):
        prune_ffn(m, 0.0)
    conv = LightTransformer(_cfg(attention="conv"))
    with pytest.raises(ValueError, match="has none"):
        prune_heads(conv, {0: [0]})


def test_count_macs_scaling():
    full = _cfg(attention="full", seq_len=512)
    win = _cfg(attention="window", window=8, causal=False, seq_len=512)
    a = [count_macs(full, seq_len=t, breakdown=True)["attention"] for t in (64, 128, 256)]
    b = [count_macs(win, seq_len=t, breakdown=True)["attention"] for t in (64, 128, 256)]
    assert a == [2 * 2 * t * t * 16 for t in (64, 128, 256)]  # 2 layers, quadratic
    assert b[2] - b[1] == 2 * (b[1] - b[0])  # linear (same edge effects at every T)
    # window covering the sequence costs what full costs
    assert count_macs(_cfg(attention="window", window=23)) == count_macs(_cfg(attention="full"))
    for a_ in ATTENTIONS:
        kw = dict(seq_len=512, n_landmarks=8)
        assert count_macs(_cfg(attention=a_, **kw), seq_len=256) > 0


def test_count_macs_dense_layers_by_hand():
    cfg = _cfg(attention="full")
    T, d, ff = 12, 16, 24
    br = count_macs(cfg, breakdown=True)
    assert br["embed"] == T * 4 * d
    assert br["proj"] == 2 * (T * d * 3 * d + T * d * d)
    assert br["ffn"] == 2 * 2 * T * d * ff
    assert br["head"] == d * 5
    assert br["total"] == sum(v for k, v in br.items() if k != "total")


@pytest.mark.parametrize("kw, match", [
    (dict(n_heads=3), "n_heads must divide d_model"),
    (dict(attention="flash"), "attention must be one of .*'full'"),
    (dict(window=0), "window must be an integer >= 1"),
    (dict(task="seq"), "task must be one of"),
    (dict(input_kind="tokens", vocab_size=0), "vocab_size must be"),
    (dict(task="lm"), "causal must be True"),
    (dict(attention="linformer", causal=True), "has no causal form"),
    (dict(attention="lsh", lsh_buckets=3), "lsh_buckets must be 1 or even"),
    (dict(conv_kernel=2), "conv_kernel must be odd"),
    (dict(dropout=1.5), "dropout must be in"),
    (dict(attention="nystrom", n_landmarks=40), "n_landmarks must be <= seq_len"),
    (dict(layer_heads=(1,)), "layer_heads must be None or a tuple"),
])
def test_model_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_model_input_validation_and_config_roundtrip():
    m = LightTransformer(_cfg())
    with pytest.raises(ValueError, match="sequence length"):
        m(torch.randn(1, 13, 4))
    with pytest.raises(ValueError, match="float tensor"):
        m(torch.randn(1, 12, 3))
    with pytest.raises(TypeError, match="ModelConfig"):
        LightTransformer({"d_model": 8})
    cfg = _cfg(layer_heads=(1, 2))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="ModelConfig fields"):
        ModelConfig.from_dict({"bogus": 1})


def test_seed_transformer_shapes_and_decoder_causality():
    torch.manual_seed(0)
    m = SeedLightTransformer(11, d_model=16, nhead=2, num_encoder_layers=1,
                             num_decoder_layers=1, dim_feedforward=32, max_len=9).eval()
    src = torch.randint(0, 10, (2, 8))
    tgt = torch.randint(0, 11, (2, 6))
    with torch.no_grad():
        a = m(src, tgt)
        tgt2 = tgt.clone()
        tgt2[:, 4] = (tgt2[:, 4] + 1) % 11
        b = m(src, tgt2)
        assert a.shape == (2, 6, 11)
        torch.testing.assert_close(a[:, :4], b[:, :4], rtol=0, atol=1e-5)
        out = m.generate(src, 8, bos=10)
    assert out.shape == (2, 8) and out.dtype == torch.int64
    # analytic MACs, by hand: encoder 18432 + decoder 27776 + vocabulary projection 1408
    assert m.count_macs(8, 8) == 18432 + 27776 + 8 * 16 * 11
    assert m.count_macs(8, 8) < m.count_macs(9, 9)
    with pytest.raises(ValueError, match="nhead must divide"):
        SeedLightTransformer(11, d_model=10, nhead=3)
