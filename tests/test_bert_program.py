# SPDX-License-Identifier: Apache-2.0
"""An imported BERT encoder lowered to a device program (sw.bert_program): the ISA simulator and
the driver on the Python board equal sw.bert_int bit for bit; limits are refused by name."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.testing import assert_array_equal

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from hw.params import PRESETS, preset  # noqa: E402
from sw import isasim  # noqa: E402
from sw.bert import random_bert  # noqa: E402
from sw.bert_int import calibration_sentences, embed_int, encode_int, quantize_from_text  # noqa: E402
from sw.bert_program import (  # noqa: E402
    TASK_EMBED,
    TASK_ENCODE,
    WORD_ROWS,
    board_fit,
    compile_bert,
    model_digest,
    run_bert,
    word_rows,
)
from sw.driver.accelerator import Accelerator  # noqa: E402
from sw.driver.isaboard import isa_board  # noqa: E402
from sw.driver.model import LinkServer  # noqa: E402
from sw.import_hf import BertConfig, encode_batch, wordpiece_from_text  # noqa: E402
from sw.program import FitError, load_program, save_program  # noqa: E402

TINY, LARGE = preset("tiny"), preset("sim_large")


@pytest.fixture(scope="module")
def text():
    calib, held = calibration_sentences()
    tok, vocab = wordpiece_from_text(calib, size=300)
    return tok, vocab, calib[:16], held


def _model(vocab, tok, calib, d=32, heads=2, layers=2, d_ff=64, seed=0):
    """A random encoder calibrated on a few sentences; head_dim 16 runs on ``tiny``."""
    cfg = BertConfig(vocab_size=len(vocab), d_model=d, n_layers=layers, n_heads=heads,
                     d_ff=d_ff, max_positions=64)
    return quantize_from_text(random_bert(cfg, seed=seed), tok, calib, max_seq_len=64)


@pytest.fixture(scope="module")
def model(text):
    tok, vocab, calib, _ = text
    return _model(vocab, tok, calib)


def _want(model, ids, window, pool):
    one = np.asarray(ids)[None]
    f = embed_int if pool else encode_int
    return f(model, one, np.ones(one.shape, bool), window=window)[0]


def test_padded_batch_rows_equal_each_sentence_alone(text, model):
    """What makes the device comparable: it runs each sentence unpadded (T = its tokens);
    encode_int on the padded batch gives the same real rows, with and without a window."""
    tok, _, _, held = text
    ids, mask = encode_batch(tok, held[:6], 64)
    assert (~mask).any()
    checked = 0
    for window in (None, 8, 5):
        batch = encode_int(model, ids, mask, window=window)
        pooled = embed_int(model, ids, mask, window=window)
        for b in range(len(ids)):
            n = int(mask[b].sum())
            assert_array_equal(batch[b, :n], _want(model, ids[b, :n], window, False))
            assert_array_equal(pooled[b], _want(model, ids[b, :n], window, True))
            checked += 1
    assert checked == 18


# (preset, T, window): T = 1; the widest full attention (2T - 1 = window); ragged T (not a
# multiple of the array's rows); a model window over a longer sentence, at and below the unit's.
CASES = [(LARGE, 1, None), (LARGE, 32, None), (LARGE, 17, None), (LARGE, 40, 64),
         (LARGE, 40, 7), (TINY, 1, None), (TINY, 4, None), (TINY, 13, 8), (TINY, 11, 5)]


@pytest.mark.parametrize("params, t, window", CASES,
                         ids=[f"{p.name}-T{t}-w{w}" for p, t, w in CASES])
def test_isasim_equals_the_integer_model(model, params, t, window):
    ids = np.random.default_rng(t).integers(0, model.config.vocab_size, t)
    checked = 0
    for mode in ("resident", "streamed"):
        for pool in (False, True):
            prog = compile_bert(model, params, seq_len=t, window=window, mode=mode, pool=pool)
            assert prog.mode == mode and prog.task == (TASK_EMBED if pool else TASK_ENCODE)
            got = isasim.simulate(prog, ids)
            assert got.shape == ((model.config.d_model,) if pool else (t, model.config.d_model))
            assert_array_equal(got, _want(model, ids, window, pool))
            checked += 1
    assert checked == 4


def test_ffn_in_row_chunks_and_three_runs_per_layer(text):
    """A layer whose FFN hidden layer does not fit the activations runs it over row chunks;
    weights larger than the scratchpad split each layer into attention / fc1 / fc2 runs."""
    tok, vocab, calib, held = text
    model = _model(vocab, tok, calib, d=64, heads=4, layers=2, d_ff=512)
    small = TINY.replace(name="small", act_depth=8192, wgt_depth=65536, window=32,
                         k_depth=512)
    t = 13
    ids = np.random.default_rng(3).integers(0, model.config.vocab_size, t)
    prog = compile_bert(model, small, seq_len=t)
    names = [layer for layer, _ in prog.runs]
    assert prog.mode == "streamed"
    assert names[:3] == ["embed", "layers.0.attn", "layers.0.fc1.0"]
    assert sum(n.startswith("layers.0.fc2.") for n in names) >= 2
    assert_array_equal(isasim.simulate(prog, ids), _want(model, ids, None, False))


def test_real_sentences_on_sim_large(text, model):
    tok, _, _, held = text
    ids, mask = encode_batch(tok, held[:4], 64)
    want = encode_int(model, ids, mask)
    checked = 0
    for b in range(len(ids)):
        n = int(mask[b].sum())
        if 2 * n - 1 > LARGE.window:
            continue
        prog = compile_bert(model, LARGE, seq_len=n)
        assert_array_equal(isasim.simulate(prog, ids[b, :n]), want[b, :n])
        checked += 1
    assert checked >= 3


def test_driver_runs_streamed_on_the_python_board(text, model):
    """Through the driver and the link, streamed: each run's weights written before it."""
    tok, _, _, held = text
    sentences = [s for s in held[:40] if len(tok.encode(s).ids) <= 16][:3]
    assert len(sentences) == 3
    ids, mask = encode_batch(tok, sentences, 64)
    rows = [ids[b, :int(mask[b].sum())] for b in range(len(ids))]
    window = TINY.window
    with LinkServer(isa_board(TINY)) as srv, Accelerator.open(srv.url, timeout=5.0) as acc:
        rep = run_bert(acc, model, rows, params=TINY, window=window)
        pooled = run_bert(acc, model, rows, params=TINY, window=window, pool=True)
        host = run_bert(acc, model, rows[:1], params=TINY, window=window, word_lookup="host")
    want = encode_int(model, ids, mask, window=window)
    for b, out in enumerate(rep["outputs"]):
        assert_array_equal(out, want[b, :len(rows[b])])
    assert_array_equal(np.stack(pooled["outputs"]), embed_int(model, ids, mask, window=window))
    assert rep["word_lookup"] == "device" and host["word_lookup"] == "host"
    assert_array_equal(host["outputs"][0], want[0, :len(rows[0])])
    assert rep["mode"] == ["streamed"] and all(r == 1 + model.config.n_layers
                                               for r in rep["runs"])
    assert len(rep["cycles"]) == 3 and all(c > 0 for c in rep["cycles"])


def test_run_bert_refuses_bad_sentences_before_touching_the_device(model):
    with pytest.raises(ValueError, match=r"sentence 2: token ids must be a non-empty 1-d"):
        run_bert(None, model, [np.arange(3), np.zeros((2, 2), int)], params=TINY)
    with pytest.raises(ValueError, match=r"token id 999 \(sentence 1, position 1\) is outside"):
        run_bert(None, model, [np.array([2, 999])], params=TINY)
    with pytest.raises(FitError, match="attention window"):
        run_bert(None, model, [np.arange(3), np.arange(9)], params=TINY)


def test_program_file_round_trip(tmp_path, model):
    prog = compile_bert(model, TINY, seq_len=6, window=8, mode="streamed")
    back = load_program(save_program(prog, tmp_path / "bert.safetensors"))
    ids = np.arange(6) + 5
    assert back.task == TASK_ENCODE and back.output.dtype == "int8"
    assert_array_equal(isasim.simulate(back, ids), isasim.simulate(prog, ids))


def test_limits_are_named(text, model):
    tok, vocab, calib, _ = text
    with pytest.raises(FitError, match=r"attention window \(full attention over 5 tokens.*"
                                       r"window=8\): needs 9, has 8 \(AccelParams.window\)"):
        compile_bert(model, TINY, seq_len=5)
    with pytest.raises(FitError, match=r"activation bytes: needs \d+, has 4096"):
        compile_bert(model, TINY, seq_len=64, window=8)
    wide_heads = _model(vocab, tok, calib, d=64, heads=2, layers=1, d_ff=64)
    with pytest.raises(FitError, match=r"head_dim: needs 32, has 16 \(AccelParams.head_dim\)"):
        compile_bert(wide_heads, TINY, seq_len=4)
    with pytest.raises(FitError, match=r"instructions: needs \d+, has 16 "
                                       r"\(AccelParams.instr_depth\)"):
        compile_bert(model, TINY.replace(name="few", instr_depth=16), seq_len=2)
    big_vocab = _model(vocab, tok, calib)
    big_vocab.arrays["embed.word"] = np.random.default_rng(0).integers(
        -127, 128, (2000, 32)).astype(np.int8)
    big_vocab.config = dataclasses.replace(big_vocab.config, vocab_size=2000)
    with pytest.raises(FitError, match=r"embedding tables \(word \+ position\) bytes; "
                                       r"word_lookup='host' .*: needs 64128, has 32768"):
        compile_bert(big_vocab, TINY, seq_len=4)
    # Gathered on the host, the same vocabulary runs, and equals the integer model.
    ids = np.array([1999, 5, 1234, 7])
    prog = compile_bert(big_vocab, TINY, seq_len=4, word_lookup="host")
    assert prog.input_kind == WORD_ROWS and prog.input.c == 32
    assert_array_equal(isasim.simulate(prog, word_rows(big_vocab, ids)),
                       _want(big_vocab, ids, None, False))
    with pytest.raises(ValueError, match="word_lookup must be one of"):
        compile_bert(model, TINY, seq_len=4, word_lookup="table")
    with pytest.raises(ValueError, match=r"seq_len must be an integer in \[1, 64\]"):
        compile_bert(model, TINY, seq_len=65)
    with pytest.raises(ValueError, match="window must be a positive integer"):
        compile_bert(model, TINY, seq_len=4, window=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        compile_bert(model, TINY, seq_len=4, mode="fast")


def test_board_fit_table(model):
    rows = {r["preset"]: r for r in board_fit(model, PRESETS, 4)}
    assert set(rows) == set(PRESETS)
    assert rows["tiny"]["fits"] and rows["sim_large"]["fits"]
    assert not rows["icebreaker"]["fits"] and rows["icebreaker"]["limits"]
    assert model_digest(model) == model_digest(model) and len(model_digest(model)) == 64


def test_embed_command_device_backend_equals_ref(tmp_path, text, model, capsys):
    """`lightformer embed --backend device --port URL` writes the same JSON embeddings as
    `--backend ref` (mean pool on the device), and refuses what does not fit by name."""
    import json

    from sw import cli
    from sw.bert_int import save_bert_int

    tok, _, _, held = text
    art = save_bert_int(tmp_path / "bert.safetensors", model, tok)
    lines = [s for s in held[:40] if len(tok.encode(s).ids) <= 12][:3]
    assert len(lines) == 3
    (tmp_path / "s.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ["embed", "--artifact", str(art), "--text-file", str(tmp_path / "s.txt"),
            "--window", "8"]
    assert cli.main(base + ["--json", str(tmp_path / "ref.json")]) == 0
    with LinkServer(isa_board(TINY)) as srv:
        assert cli.main(base + ["--backend", "device", "--port", srv.url, "--check",
                                "--json", str(tmp_path / "dev.json")]) == 0
        with pytest.raises(SystemExit, match=r"attention window \(full attention over \d+ "
                                              r"tokens"):
            cli.main(base[:-2] + ["--backend", "device", "--port", srv.url,
                                  "--json", str(tmp_path / "x.json")])
    ref = json.loads((tmp_path / "ref.json").read_text())
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert dev["embeddings"] == ref["embeddings"] and dev["tokens"] == ref["tokens"]
    assert len(dev["embeddings"]) == 3
    assert dev["device"]["mismatches"] == 0 and dev["device"]["preset"] == "tiny"
    assert dev["backend"] == "device" and ref["backend"] == "ref"
    with pytest.raises(SystemExit, match="--backend device needs --port"):
        cli.main(base + ["--backend", "device", "--json", str(tmp_path / "x.json")])
