# SPDX-License-Identifier: Apache-2.0
"""int8 integer-only BERT model (sw.bert_int) on tiny random encoders calibrated on pydoc text."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from sw.bert import BertEncoder, mean_pool, random_bert  # noqa: E402  (after the torch skip)
from sw.bert_int import (  # noqa: E402
    attention_int,
    calibration_sentences,
    cosine,
    embed_int,
    encode_int,
    quantize_bert,
    quantize_from_text,
)
from sw.import_hf import BertConfig, encode_batch, wordpiece_from_text  # noqa: E402
from sw.ref import AttentionQuant, windowed_attention_int  # noqa: E402

N_CALIB, N_HELD = 64, 24


@pytest.fixture(scope="module")
def text():
    calib, held = calibration_sentences()
    tok, vocab = wordpiece_from_text(calib, size=600)
    return tok, vocab, calib[:N_CALIB], held[:N_HELD]


def _model(vocab, d=48, layers=2, heads=4, seed=0) -> BertEncoder:
    cfg = BertConfig(vocab_size=len(vocab), d_model=d, n_layers=layers, n_heads=heads,
                     d_ff=2 * d, max_positions=64)
    return random_bert(cfg, seed=seed)


def _fp32_embeddings(twin, ids, mask) -> np.ndarray:
    with torch.no_grad():
        h = twin(torch.from_numpy(ids), torch.from_numpy(mask))
        return mean_pool(h, torch.from_numpy(mask)).double().numpy()       # (B, C) float64


def test_bert_int_calibration_sentences_split(tmp_path):
    calib, held = calibration_sentences()
    assert len(calib) >= 300 and len(held) >= 100
    assert not set(calib) & set(held)
    f = tmp_path / "calib.txt"
    f.write_text("One sentence here.\n\nTwo sentences.\nThree.\nFour is held out.\n",
                 encoding="utf-8")
    calib, held = calibration_sentences(f)
    assert calib == ["One sentence here.", "Two sentences.", "Three."]
    assert held == ["Four is held out."]
    with pytest.raises(FileNotFoundError, match="no such calibration file"):
        calibration_sentences(tmp_path / "none.txt")
    f.write_text("Only one.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="1 sentence"):
        calibration_sentences(f)


def test_bert_int_masked_attention_equals_unpadded():
    rng = np.random.default_rng(1)
    B, T, H, hd = 3, 9, 2, 8
    q, k, v = (rng.integers(-128, 128, (B, T, H, hd)).astype(np.int8) for _ in range(3))
    lengths = [9, 4, 1]
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]              # (B, T) bool
    params = [AttentionQuant.from_scales(0.05, 0.04, 0.03, 0.02, hd),
              AttentionQuant.from_scales(0.02, 0.06, 0.05, 0.03, hd)]
    out = attention_int(q, k, v, mask, params)
    for b, n in enumerate(lengths):
        for h in range(H):
            want = windowed_attention_int(q[b, :n, h], k[b, :n, h], v[b, :n, h], 2 * n - 1,
                                          False, params[h])
            np.testing.assert_array_equal(out[b, :n, h], want)
    # Without the mask the padded keys would be attended: the first padded sentence changes.
    unmasked = attention_int(q, k, v, np.ones_like(mask), params)
    assert np.any(unmasked[1, :4] != out[1, :4])
    # A window narrower than the sentence restricts the keys as sw.ref's centred window does.
    win = attention_int(q, k, v, mask, params, window=3)
    want = windowed_attention_int(q[0, :, 0], k[0, :, 0], v[0, :, 0], 3, False, params[0])
    np.testing.assert_array_equal(win[0, :, 0], want)


def test_bert_int_padding_invariant(text):
    tok, vocab, calib, held = text
    twin = _model(vocab)
    model = quantize_from_text(twin, tok, calib[:16], max_seq_len=64)
    ids, mask = encode_batch(tok, held[:4], 64)
    assert (~mask).sum() > 0
    h = encode_int(model, ids, mask)
    assert h.dtype == np.int8 and h.shape == (4, ids.shape[1], 48)
    pooled = embed_int(model, ids, mask)
    for i in range(4):
        one, m1 = encode_batch(tok, held[i:i + 1], 64)
        np.testing.assert_array_equal(encode_int(model, one, m1)[0], h[i, :one.shape[1]])
        np.testing.assert_array_equal(embed_int(model, one, m1)[0], pooled[i])


@pytest.mark.parametrize("shape", [(32, 2, 4), (48, 2, 3)])
def test_bert_int_cosine_to_fp32(text, shape):
    tok, vocab, calib, held = text
    d, layers, heads = shape
    twin = _model(vocab, d, layers, heads)
    model = quantize_from_text(twin, tok, calib, max_seq_len=64)
    assert model.arrays["layers.0.attn.quant"].shape == (heads, 4)
    assert len(set(model.scales["layers.0.q"])) == heads                  # one scale per head
    ids, mask = encode_batch(tok, held, 64)
    assert float((ids[mask] == vocab.index("[UNK]")).mean()) < 0.2        # real words, not [UNK]
    e_int = embed_int(model, ids, mask).astype(np.float64) * model.scales["pool"]
    e_f = _fp32_embeddings(twin, ids, mask)
    cos = cosine(e_int, e_f)
    assert cos.shape == (N_HELD,)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98
    # Random encoders map every sentence near one mean vector; the part that tells sentences
    # apart must survive too.
    mu = e_f.mean(axis=0)
    assert cosine(e_int - mu, e_f - mu).mean() >= 0.95
    # And the integer embeddings do tell the sentences apart.
    assert len({tuple(r) for r in embed_int(model, ids, mask)}) == N_HELD


def test_bert_int_mismatched_model_fails_cosine(text):
    """The cosine check can fail: another model's integer weights give far lower similarity."""
    tok, vocab, calib, held = text
    twin, other = _model(vocab, seed=0), _model(vocab, seed=1)
    model = quantize_from_text(other, tok, calib, max_seq_len=64)
    ids, mask = encode_batch(tok, held, 64)
    e_f = _fp32_embeddings(twin, ids, mask)
    mu = e_f.mean(axis=0)
    e_int = embed_int(model, ids, mask).astype(np.float64) * model.scales["pool"]
    assert cosine(e_int - mu, e_f - mu).mean() < 0.5


def test_bert_int_errors(text):
    tok, vocab, calib, held = text
    twin = _model(vocab, d=32, layers=1, heads=2)
    with pytest.raises(ValueError, match=r"max_seq_len must be in \[1, 64\]"):
        quantize_from_text(twin, tok, calib[:4], max_seq_len=65)
    with pytest.raises(ValueError, match="none of the 2 calibration sentences fits"):
        quantize_from_text(twin, tok, calib[:2], max_seq_len=4)
    model = quantize_from_text(twin, tok, calib[:8], max_seq_len=16)
    assert model.arrays["pool.table"].shape == (16, 2)
    ids, mask = encode_batch(tok, held, 64)
    with pytest.raises(ValueError, match="longer than max_seq_len 16"):
        embed_int(model, ids, mask)
    ids = np.array([[2, 7, len(vocab), 3]])
    with pytest.raises(ValueError, match=r"token id \d+ \(sentence 1, position 2\) is outside"):
        embed_int(model, ids, np.ones_like(ids, dtype=bool))
    with pytest.raises(ValueError, match="at least one token"):
        embed_int(model, ids[:, :2] * 0 + 2, np.zeros((1, 2), dtype=bool))
    wide = BertConfig(vocab_size=len(vocab), d_model=260, n_layers=1, n_heads=1, d_ff=8,
                      max_positions=300)
    with pytest.raises(ValueError, match="head size 260 is more than 128; max_seq_len 300 is"):
        quantize_bert(random_bert(wide), np.full((1, 4), 2), np.ones((1, 4), dtype=bool),
                      max_seq_len=300)
    with pytest.raises(ValueError, match="non-empty"):
        quantize_bert(twin, np.zeros((0, 4), dtype=np.int64), np.zeros((0, 4), dtype=bool))


def test_bert_int_artifact_round_trip(text, tmp_path):
    import json

    import safetensors.numpy

    from sw.bert_int import load_bert_int, save_bert_int

    tok, vocab, calib, held = text
    model = quantize_from_text(_model(vocab, d=32, layers=1, heads=2), tok, calib[:16], 48)
    path = save_bert_int(tmp_path / "m.safetensors", model, tok, {"note": "x"})
    loaded, tok2, info = load_bert_int(path)
    assert info == {"note": "x"} and loaded.config == model.config
    assert set(loaded.arrays) == set(model.arrays)
    for k, v in model.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[k], v)
        assert loaded.arrays[k].dtype == v.dtype and loaded.arrays[k].shape == np.shape(v)
    ids, mask = encode_batch(tok, held[:3], 48)
    ids2, mask2 = encode_batch(tok2, held[:3], 48)
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(embed_int(model, ids, mask), embed_int(loaded, ids2, mask2))
    # A tensor removed, and a manifest of another version, are refused by name.
    arrays = {k: np.array(v, order="C") for k, v in model.arrays.items()}
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        manifest = json.loads(f.metadata()["lightformer-bert-int8"])
    bad = dict(arrays)
    del bad["layers.0.ln2.eps"]
    safetensors.numpy.save_file(bad, tmp_path / "bad.safetensors",
                                metadata={"lightformer-bert-int8": json.dumps(manifest)})
    with pytest.raises(ValueError, match=r"missing \['layers.0.ln2.eps'\]"):
        load_bert_int(tmp_path / "bad.safetensors")
    manifest["format_version"] = 99
    safetensors.numpy.save_file(arrays, tmp_path / "v99.safetensors",
                                metadata={"lightformer-bert-int8": json.dumps(manifest)})
    with pytest.raises(ValueError, match="format version 99"):
        load_bert_int(tmp_path / "v99.safetensors")


# -- sliding window and head pruning (the seed's methods on an imported model) -------------------

def test_bert_window_in_fp32_twin_equals_an_explicit_key_mask(text):
    """The twin's ``window`` is the integer model's centred window: a window that covers the whole
    sequence changes nothing, and a window of 1 makes attention the identity on V."""
    tok, vocab, _, held = text
    twin = _model(vocab)
    ids, mask = encode_batch(tok, held[:6], 64)
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
    T = ids.shape[1]
    with torch.no_grad():
        full = twin(ids_t, mask_t)
        assert torch.equal(twin(ids_t, mask_t, window=2 * T - 1), full)
        rec: dict = {}
        twin(ids_t, mask_t, rec, window=1)
    real = mask_t                                          # padded queries' rows are meaningless
    torch.testing.assert_close(rec["layers.0.attn"][real], rec["layers.0.v"][real],
                               rtol=0, atol=1e-6)          # the softmax of one key is 1
    assert not torch.allclose(twin(ids_t, mask_t, window=3), full)


def test_bert_head_keep_zeroes_exactly_the_pruned_heads(text):
    """Pruning a head equals zeroing its columns of the output projection, in both models; every
    head kept equals no pruning at all (bit for bit in the integer model)."""
    from sw.bert import head_importance
    from sw.bert_int import prune_by_importance

    tok, vocab, calib, held = text
    twin = _model(vocab)
    ids, mask = encode_batch(tok, held[:8], 64)
    model = quantize_from_text(twin, tok, calib, max_seq_len=64)
    cfg = twin.cfg
    all_kept = np.ones((cfg.n_layers, cfg.n_heads), dtype=bool)
    np.testing.assert_array_equal(encode_int(model, ids, mask, head_keep=all_kept),
                                  encode_int(model, ids, mask))
    imp = head_importance(twin, torch.from_numpy(ids), torch.from_numpy(mask))
    assert imp.shape == (cfg.n_layers, cfg.n_heads) and (imp > 0).all()
    keep = prune_by_importance(imp, 0.25)
    assert int((~keep).sum()) == 2 and imp[~keep].max() <= imp[keep].min()
    # Integer model: pruning equals zeroing the heads' input rows of the projection (K, N).
    hd = cfg.d_model // cfg.n_heads
    zeroed = type(model)(model.config, dict(model.arrays), model.scales, model.max_seq_len)
    for i in range(cfg.n_layers):
        w = model.arrays[f"layers.{i}.attn.proj.w"].copy()                 # (C, C) int8
        for h in np.flatnonzero(~keep[i]):
            w[h * hd:(h + 1) * hd] = 0
        zeroed.arrays[f"layers.{i}.attn.proj.w"] = w
    pruned = encode_int(model, ids, mask, head_keep=keep)
    np.testing.assert_array_equal(pruned, encode_int(zeroed, ids, mask))
    assert not np.array_equal(pruned, encode_int(model, ids, mask))
    # fp32 twin: the same heads pruned by zeroing the projection's input columns.
    ref = BertEncoder(cfg)
    ref.load_state_dict(twin.state_dict())
    with torch.no_grad():
        for i in range(cfg.n_layers):
            for h in np.flatnonzero(~keep[i]):
                ref.layers[i].attn.proj.weight[:, h * hd:(h + 1) * hd] = 0
        ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
        torch.testing.assert_close(twin(ids_t, mask_t, head_keep=keep), ref(ids_t, mask_t),
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"shape \(n_layers, n_heads\) = \(2, 4\)"):
        encode_int(model, ids, mask, head_keep=np.ones((2, 3), dtype=bool))
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune_by_importance(imp, 1.0)


def test_bert_study_bench_and_results_section(text, tmp_path):
    """``bench/bert_cosine.py --study`` writes one row per variant, and ``results_table.py --bert``
    renders them into a page (replacing its own section on a second run, never duplicating)."""
    import json
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "bench"))
    import bert_cosine
    import results_table

    out = tmp_path / "study.json"
    assert bert_cosine.main(["--study", "--shapes", "32x1x2", "--gains", "1", "--calib", "16",
                             "--held-out", "3", "--windows", "8", "--prune", "0.5",
                             "--max-seq-len", "64", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "bench.bert_window_prune"
    assert [r["variant"] for r in doc["rows"]] == ["full", "window 8", "prune 50% of heads"]
    assert doc["rows"][0]["fp32_mean_cosine"] == pytest.approx(1.0)
    assert doc["rows"][2]["heads_pruned"] == 1 and doc["rows"][1]["window"] == 8
    page = tmp_path / "results.md"
    page.write_text("# Results\n")
    for _ in range(2):
        assert results_table.main(["--bert", str(out), "--out", str(page)]) == 0
    body = page.read_text()
    assert body.count(results_table.BERT_BEGIN) == 1 and "| 32 / 2 / 1 | window 8 |" in body
    with pytest.raises(SystemExit):
        results_table.main(["--bert", str(tmp_path / "none.json"), "--out", str(page)])
