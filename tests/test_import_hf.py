# SPDX-License-Identifier: Apache-2.0
"""BERT-family import (sw.import_hf) and its fp32 twin (sw.bert) against transformers' own forward.

Checkpoints are tiny random BertModels written locally with ``save_pretrained``; transformers is a
test-only dependency, so the comparisons skip when it is not installed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sw.import_hf import (  # noqa: E402  (after the torch skip)
    LAYER_KEYS,
    encode_batch,
    load_config,
    load_hf,
    load_tokenizer,
)

WORDS = ("the cat dog sat ran on a mat hat red big small and is was very quick brown fox jumps "
         "over lazy ##s ##ed ##ing , .").split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
SENTENCES = ["The cat sat on the mat.", "A big red dog ran.",
             "The quick brown fox jumps over the lazy dogs, and the cat is very small."]
SHAPES = {  # name: (hidden, layers, heads, intermediate)
    "h32": (32, 2, 4, 64),
    "h48": (48, 2, 3, 96),
}


def _tiny_bert(folder, hidden: int, layers: int, heads: int, ffn: int, seed: int = 0, *,
               pooler: bool = True, tokenizer_json: bool = False):
    """Write a random BertModel + vocab.txt into ``folder``; return the transformers model."""
    transformers = pytest.importorskip("transformers", reason="transformers is the reference")
    cfg = transformers.BertConfig(
        vocab_size=len(VOCAB) + 3, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=32)
    torch.manual_seed(seed)
    model = transformers.BertModel(cfg, add_pooling_layer=pooler).eval()
    with torch.no_grad():                   # BERT's init (std 0.02) makes every layer ~identity
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.ndim > 1 else 0.1)
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.add_(1.0)
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    if tokenizer_json:
        tok = transformers.BertTokenizerFast.from_pretrained(folder, local_files_only=True)
        tok.save_pretrained(folder)
        assert (folder / "tokenizer.json").is_file()
    return model


@pytest.fixture(scope="module", params=sorted(SHAPES))
def checkpoint(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    model = _tiny_bert(folder, *SHAPES[request.param])
    return folder, model


def _reference(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids),
                    attention_mask=torch.from_numpy(mask.astype(np.int64)))
    return out.last_hidden_state.numpy()                                   # (B, T, C) float32


def test_import_hf_twin_matches_transformers(checkpoint):
    from sw.bert import BertEncoder

    folder, model = checkpoint
    imp = load_hf(folder)
    assert imp.unexpected_keys == []
    assert imp.has_pooler
    cfg = imp.config
    assert len(imp.tensors) == 5 + 2 + 12 * cfg.n_layers
    twin = BertEncoder.from_imported(imp)
    ids, mask = encode_batch(imp.tokenizer, SENTENCES[:1], max_seq_len=32)
    assert mask.all()
    with torch.no_grad():
        ours = twin(torch.from_numpy(ids)).numpy()
    ref = _reference(model, ids, mask)
    assert ours.shape == ref.shape == (1, ids.shape[1], cfg.d_model)
    assert float(ref.std()) > 0.5           # a real signal, not a collapsed output
    assert np.max(np.abs(ours - ref)) <= 1e-4


def test_import_hf_twin_padded_batch(checkpoint):
    from sw.bert import BertEncoder, mean_pool

    folder, model = checkpoint
    imp = load_hf(folder)
    twin = BertEncoder.from_imported(imp)
    ids, mask = encode_batch(imp.tokenizer, SENTENCES, max_seq_len=32)
    assert (~mask).sum() > 0                  # the batch really is padded
    with torch.no_grad():
        ours = twin(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    ref = _reference(model, ids, mask)
    # Padded query rows are not used by anyone (pooling masks them); compare the tokens.
    assert np.max(np.abs(ours - ref)[mask]) <= 1e-4
    # Padding must not change a sentence: each alone gives the same rows.
    for i, sentence in enumerate(SENTENCES):
        one, _ = encode_batch(imp.tokenizer, [sentence], max_seq_len=32)
        with torch.no_grad():
            alone = twin(torch.from_numpy(one)).numpy()[0]
        assert np.max(np.abs(alone - ours[i, :one.shape[1]])) <= 1e-4
    pooled = mean_pool(torch.from_numpy(ours), torch.from_numpy(mask)).numpy()
    want = np.stack([ref[i][mask[i]].mean(axis=0) for i in range(len(SENTENCES))])
    assert np.max(np.abs(pooled - want)) <= 1e-4


def test_import_hf_tokenizers_match_transformers(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is the reference")
    _tiny_bert(tmp_path, 32, 1, 2, 64, tokenizer_json=True)
    ref = transformers.BertTokenizerFast.from_pretrained(tmp_path, local_files_only=True)
    want = [ref(s)["input_ids"] for s in SENTENCES]
    assert max(len(w) for w in want) > 10
    assert all(VOCAB.index("[UNK]") not in w for w in want)     # every word is in VOCAB
    from_json = load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    from_vocab = load_tokenizer(tmp_path)
    for tok in (from_json, from_vocab):
        ids, mask = encode_batch(tok, SENTENCES, max_seq_len=32)
        got = [list(ids[i][mask[i]]) for i in range(len(SENTENCES))]
        assert got == want
    # A cased vocabulary: "The" is then not the vocabulary's "the".
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false}', encoding="utf-8")
    ids, _ = encode_batch(load_tokenizer(tmp_path), SENTENCES[:1], max_seq_len=32)
    assert ids[0, 1] == VOCAB.index("[UNK]") and ids[0, 2] == VOCAB.index("cat")


def test_import_hf_without_pooler_and_with_task_head(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is the reference")
    _tiny_bert(tmp_path / "plain", 32, 1, 2, 64, pooler=False)
    imp = load_hf(tmp_path / "plain")
    assert not imp.has_pooler and imp.unexpected_keys == []
    cfg = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=32, num_labels=3)
    transformers.BertForSequenceClassification(cfg).save_pretrained(tmp_path / "head")
    (tmp_path / "head" / "vocab.txt").write_text("\n".join(VOCAB), encoding="utf-8")
    imp = load_hf(tmp_path / "head")               # keys under "bert.", a classifier on top
    assert imp.unexpected_keys == ["classifier.bias", "classifier.weight"]
    assert imp.tensors["layers.0.attn.qkv.weight"].shape == (96, 32)


def test_import_hf_qkv_order(checkpoint):
    folder, model = checkpoint
    imp = load_hf(folder)
    sd = model.state_dict()
    qkv = imp.tensors["layers.1.attn.qkv.weight"]
    d = imp.config.d_model
    for j, name in enumerate(("query", "key", "value")):
        w = sd[f"encoder.layer.1.attention.self.{name}.weight"].numpy()
        np.testing.assert_array_equal(qkv[j * d:(j + 1) * d], w)
    assert sum(r.part is not None for r in LAYER_KEYS) == 6


# -- errors ----------------------------------------------------------------------------------------

def _write_config(folder, **overrides):
    cfg = {"model_type": "bert", "vocab_size": 40, "hidden_size": 32, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 32,
           "hidden_act": "gelu"}
    cfg.update(overrides)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")


def test_import_hf_error_missing_folder_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_hf(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_hf(tmp_path)
    _write_config(tmp_path)
    with pytest.raises(ValueError, match="no model.safetensors"):
        load_hf(tmp_path)


def test_import_hf_error_pickled_bin(tmp_path):
    _write_config(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ValueError, match="pytorch_model.bin.*pickle.*save_pretrained"):
        load_hf(tmp_path)


@pytest.mark.parametrize("overrides, needle", [
    ({"model_type": "gpt2"}, "model_type is 'gpt2'"),
    ({"hidden_act": "gelu_new"}, "hidden_act is 'gelu_new'"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type is 'relative_key'"),
    ({"is_decoder": True}, "is_decoder is True"),
    ({"num_attention_heads": 5}, "not a multiple of num_attention_heads 5"),
    ({"hidden_size": None}, "hidden_size is None"),
])
def test_import_hf_error_not_bert(tmp_path, overrides, needle):
    _write_config(tmp_path, **overrides)
    with pytest.raises(ValueError, match="cannot run") as info:
        load_config(tmp_path)
    assert needle in str(info.value)


def test_import_hf_error_names_every_difference(tmp_path):
    _write_config(tmp_path, model_type="roberta", hidden_act="relu")
    with pytest.raises(ValueError) as info:
        load_config(tmp_path)
    assert "model_type is 'roberta'" in str(info.value)
    assert "hidden_act is 'relu'" in str(info.value)


def test_import_hf_error_shape_and_missing_keys(tmp_path, checkpoint):
    import shutil

    folder, _ = checkpoint
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    shutil.copytree(folder, tmp_path / "m")
    cfg["intermediate_size"] += 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ValueError, match="intermediate.dense.weight has shape"):
        load_hf(tmp_path / "m")
    cfg["intermediate_size"] -= 1
    cfg["num_hidden_layers"] += 1
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    n = cfg["num_hidden_layers"] - 1
    with pytest.raises(ValueError, match=f"missing encoder.layer.{n}.attention.self.query"):
        load_hf(tmp_path / "m")


def test_import_hf_error_long_sentence_and_unknown_id(checkpoint):
    from sw.bert import BertEncoder

    folder, _ = checkpoint
    imp = load_hf(folder)
    with pytest.raises(ValueError, match="sentence 3 has .* tokens, more than max_seq_len 10"):
        encode_batch(imp.tokenizer, SENTENCES, max_seq_len=10)
    twin = BertEncoder.from_imported(imp)
    ids = torch.tensor([[2, 5, imp.config.vocab_size, 3]])
    with pytest.raises(ValueError, match=r"token id \d+ \(sentence 1, position 2\) is outside"):
        twin(ids)


# -- commands (import-hf, embed), run through their own parsers ----------------------------------

def _command(module, argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return module.run(p.parse_args(argv))


def test_import_hf_and_embed_commands(checkpoint, tmp_path, capsys):
    import sw.bert_int
    import sw.import_hf_command
    from sw.bert_int import load_bert_int

    folder, model = checkpoint
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS[:-5], size=rng.integers(3, 12))) + "." for _ in range(40)]
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(lines) + "\n", encoding="utf-8")
    art = tmp_path / "bert.safetensors"
    summary = tmp_path / "import.json"
    assert _command(sw.import_hf_command, [str(folder), "--out", str(art), "--max-seq-len", "24",
                                   "--calibration", str(calib), "--json", str(summary)]) == 0
    rep = json.loads(summary.read_text(encoding="utf-8"))
    assert rep["kind"] == "import-hf" and rep["schema_version"] == 1
    assert rep["calibration"]["sentences"] == 30 and rep["calibration"]["held_out"] == 10
    assert rep["calibration"]["mean_cosine_to_fp32"] >= 0.98
    assert 0.95 <= rep["calibration"]["mean_centred_cosine_to_fp32"] <= 1.0
    loaded, tok, info = load_bert_int(art)
    assert loaded.max_seq_len == 24 and info["source"]["pooler"]

    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n\n", encoding="utf-8")
    out = tmp_path / "emb.json"
    assert _command(sw.bert_int, ["--artifact", str(art), "--text-file", str(text),
                                  "--json", str(out), "--reference"]) == 0
    rep = json.loads(out.read_text(encoding="utf-8"))
    assert rep["kind"] == "embed" and rep["sentences"] == 3
    emb = np.array(rep["embeddings"])
    assert emb.shape == (3, loaded.config.d_model)
    ids, mask = encode_batch(tok, SENTENCES, 24)
    assert rep["tokens"] == mask.sum(axis=1).tolist()
    with torch.no_grad():
        ref = _reference(model, ids, mask)
    want = np.stack([ref[i][mask[i]].mean(axis=0) for i in range(3)])
    assert np.max(np.abs(np.array(rep["reference_embeddings"]) - want)) <= 1e-4
    assert len(rep["cosine_to_fp32"]) == 3
    assert rep["mean_cosine_to_fp32"] == pytest.approx(np.mean(rep["cosine_to_fp32"]))
    assert rep["mean_cosine_to_fp32"] >= 0.95
    capsys.readouterr()

    # Errors: a too-long sentence, a limit over the model's positions, a foreign file.
    text.write_text(" ".join(["cat"] * 30) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="sentence 1 has 32 tokens, more than max_seq_len 24"):
        _command(sw.bert_int, ["--artifact", str(art), "--text-file", str(text), "--json", "-"])
    with pytest.raises(SystemExit, match="--max-seq-len 64 is more than the model's 32"):
        _command(sw.import_hf_command, [str(folder), "--out", str(art), "--max-seq-len", "64"])
    with pytest.raises(ValueError, match="not a BERT artifact"):
        load_bert_int(folder / "model.safetensors")


def test_import_hf_twin_matches_transformers_d384(tmp_path):
    """The shape of the small sentence-embedding models (d 384, 12 heads, 6 layers)."""
    from sw.bert import BertEncoder

    model = _tiny_bert(tmp_path, 384, 6, 12, 1536, seed=3)
    imp = load_hf(tmp_path)
    assert (imp.config.d_model, imp.config.n_layers, imp.config.n_heads) == (384, 6, 12)
    ids, mask = encode_batch(imp.tokenizer, SENTENCES, max_seq_len=32)
    with torch.no_grad():
        ours = BertEncoder.from_imported(imp)(torch.from_numpy(ids), torch.from_numpy(mask))
    ref = _reference(model, ids, mask)
    assert np.max(np.abs(ours.numpy() - ref)[mask]) <= 1e-4


def test_import_hf_legacy_names_prefix_and_buffers(checkpoint, tmp_path):
    """TensorFlow-era names (LayerNorm gamma/beta), a ``bert.`` prefix and the position-id
    buffer import to the same tensors; float16 is widened; a bfloat16 tensor is refused with
    what to do."""
    import shutil

    from safetensors.numpy import load_file, save_file

    folder, _ = checkpoint
    want = load_hf(folder).tensors
    shutil.copytree(folder, tmp_path / "m")
    raw = load_file(folder / "model.safetensors")
    renamed = {}
    for key, value in raw.items():
        if "LayerNorm." in key:
            key = key.replace(".weight", ".gamma").replace(".bias", ".beta")
        renamed["bert." + key] = value
    renamed["bert.embeddings.position_ids"] = np.arange(32, dtype=np.int64)[None]
    renamed["cls.predictions.bias"] = np.zeros(3, dtype=np.float32)
    save_file(renamed, tmp_path / "m" / "model.safetensors")
    imp = load_hf(tmp_path / "m")
    assert imp.unexpected_keys == ["cls.predictions.bias"]
    assert set(imp.tensors) == set(want)
    for k, v in want.items():
        np.testing.assert_array_equal(imp.tensors[k], v)

    half = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in raw.items()}
    save_file(half, tmp_path / "m" / "model.safetensors")
    imp = load_hf(tmp_path / "m")
    assert all(v.dtype == np.float32 for v in imp.tensors.values())
    np.testing.assert_array_equal(imp.tensors["layers.0.ln1.weight"],
                                  want["layers.0.ln1.weight"].astype(np.float16))

    from safetensors.torch import save_file as save_torch
    bf16 = {k: torch.from_numpy(v) for k, v in raw.items()}
    bf16["pooler.dense.bias"] = bf16["pooler.dense.bias"].to(torch.bfloat16)
    save_torch(bf16, tmp_path / "m" / "model.safetensors")
    with pytest.raises(ValueError, match="'pooler.dense.bias' has a dtype NumPy cannot read"):
        load_hf(tmp_path / "m")
