# SPDX-License-Identifier: Apache-2.0
"""An imported-model BERT encoder on the Verilated accelerator (``sim.vboard``) through the
driver, streamed, bit-exact with ``sw.bert_int.encode_int`` (``sim.bert_device``).

``tiny`` (built in CI) runs a d 32 / 2 heads of 16 / 2 layers encoder with the unit's window of
8; the ``sim_large`` run of the issue's shape (d 384, 12 heads, 6 layers) is ``slow``: its
Verilator build takes many minutes and each sentence streams ~18 MB of weights."""

from __future__ import annotations

import pytest
from conftest import requires_verilator

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from hw.params import preset  # noqa: E402
from sim.bert_device import device_run, random_model, short_sentences  # noqa: E402

pytestmark = [pytest.mark.sim, requires_verilator]


def test_bert_streamed_on_the_tiny_virtual_board():
    params = preset("tiny")
    model, tok = random_model(32, 2, 2, vocab_words=300, calib=16)
    sentences = short_sentences(tok, 3, 14)
    rep = device_run(model, tok, sentences, params, window=params.window)
    assert rep["sentences"] == 3 and rep["mismatched_sentences"] == 0
    assert rep["values_differing"] == 0
    assert rep["values_compared"] == 32 * sum(rep["tokens"])
    assert rep["mode"] == ["streamed"] and all(r == 3 for r in rep["runs_per_sentence"])
    assert all(c > 0 for c in rep["cycles"])
    assert rep["vboard"]["cycles"] > sum(rep["cycles"])


def test_embed_command_on_the_tiny_virtual_board(tmp_path):
    """`lightformer embed --backend device --port URL` on the Verilated board equals
    `--backend ref` (JSON embeddings, mean pool on the device)."""
    import json

    from sim import vboard
    from sw import cli
    from sw.bert_int import save_bert_int

    params = preset("tiny")
    model, tok = random_model(32, 2, 2, vocab_words=300, calib=16)
    art = save_bert_int(tmp_path / "bert.safetensors", model, tok)
    (tmp_path / "s.txt").write_text("\n".join(short_sentences(tok, 2, 12)) + "\n",
                                    encoding="utf-8")
    base = ["embed", "--artifact", str(art), "--text-file", str(tmp_path / "s.txt"),
            "--window", str(params.window)]
    assert cli.main(base + ["--json", str(tmp_path / "ref.json")]) == 0
    with vboard.start(params) as vb:
        assert cli.main(base + ["--backend", "device", "--port", vb.url, "--check",
                                "--json", str(tmp_path / "dev.json")]) == 0
    ref = json.loads((tmp_path / "ref.json").read_text())
    dev = json.loads((tmp_path / "dev.json").read_text())
    assert len(dev["embeddings"]) == 2 and dev["embeddings"] == ref["embeddings"]
    assert dev["device"]["mismatches"] == 0 and dev["device"]["preset"] == "tiny"


@pytest.mark.slow
def test_bert_384x12x6_streamed_on_the_sim_large_virtual_board():
    params = preset("sim_large")
    model, tok = random_model(384, 6, 12)
    sentences = short_sentences(tok, 2, (params.window + 1) // 2)
    rep = device_run(model, tok, sentences, params)
    assert rep["sentences"] == 2 and rep["mismatched_sentences"] == 0
    assert rep["values_differing"] == 0 and rep["values_compared"] == 384 * sum(rep["tokens"])
