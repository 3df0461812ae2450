# SPDX-License-Identifier: Apache-2.0
"""An imported BERT encoder on the Verilated accelerator, through the driver, vs the integer model.

:func:`device_run` starts the virtual board of a preset (``sim.vboard``; or uses a running
device's URL), runs sentences there with ``sw.bert_program.run_bert`` (streamed by default: each
run's weights written before it) and compares every sentence's int8 last hidden state with
``sw.bert_int.encode_int`` on the padded batch (its real rows), bit for bit.

    python -m sim.bert_device --preset sim_large --shape 384x6x12 --sentences 2 \\
        --json build/bench/bert_device.json
    python -m sim.bert_device --artifact bert.safetensors --port socket://127.0.0.1:5555 ...

Without ``--artifact`` the model is a random encoder (``sw.bert.random_bert``, d_ff = 4 d,
WordPiece vocabulary of the calibration text's 1000 commonest words) calibrated on
``pydoc_data.topics`` sentences, as ``bench/bert_cosine.py`` builds them; the sentences are
held-out ones short enough for the preset's full attention (``2T - 1 <= window``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from sw.report import bert_shape_type, source_commit

__all__ = ["device_run", "hf_checkpoint", "import_checkpoint", "random_model",
           "short_sentences"]

ROOT = Path(__file__).resolve().parent.parent


def random_model(d: int, layers: int, heads: int, *, vocab_words: int = 1000,
                 calib: int = 64, seed: int = 0, max_seq_len: int = 128):
    """``(BertInt, tokenizer)``: a random encoder calibrated on ``calib`` pydoc sentences."""
    from sw.bert import random_bert
    from sw.bert_int import calibration_sentences, quantize_from_text
    from sw.import_hf import BertConfig, wordpiece_from_text

    sentences, _ = calibration_sentences()
    tok, vocab = wordpiece_from_text(sentences, size=vocab_words)
    cfg = BertConfig(vocab_size=len(vocab), d_model=d, n_layers=layers, n_heads=heads,
                     d_ff=4 * d, max_positions=max(max_seq_len, 64))
    model = quantize_from_text(random_bert(cfg, seed=seed), tok, sentences[:calib],
                               max_seq_len=max_seq_len)
    return model, tok


def hf_checkpoint(folder: Path, d: int, layers: int, heads: int, *, vocab_words: int = 1000,
                  seed: int = 0) -> Path:
    """Write a random ``transformers.BertModel`` (d_ff = 4 d) and its ``vocab.txt`` (the
    calibration text's ``vocab_words`` commonest words) to ``folder`` with ``save_pretrained``,
    with ``sw.bert.random_bert``'s weight distribution (BERT's own init, std 0.02, makes every
    layer nearly the identity). Needs ``transformers`` (a test-only dependency)."""
    import torch
    import transformers

    from sw.bert_int import calibration_sentences
    from sw.import_hf import wordpiece_from_text

    sentences, _ = calibration_sentences()
    _, vocab = wordpiece_from_text(sentences, size=vocab_words)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=d, num_hidden_layers=layers,
                                  num_attention_heads=heads, intermediate_size=4 * d,
                                  max_position_embeddings=128)
    torch.manual_seed(seed)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 2 and name.startswith("embeddings."):
                p.normal_(0.0, 1.0)
            elif p.ndim == 2:
                p.normal_(0.0, p.shape[1] ** -0.5)
            else:
                p.normal_(1.0 if "LayerNorm.weight" in name else 0.0, 0.1)
    folder = Path(folder)
    model.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


def import_checkpoint(folder: Path, *, calib: int = 128, max_seq_len: int = 128):
    """``(BertInt, tokenizer)`` of a Hugging Face folder, as ``lightformer import-hf`` does:
    ``sw.import_hf.load_hf``, the fp32 twin, calibration on ``calib`` pydoc sentences."""
    from sw.bert import BertEncoder
    from sw.bert_int import calibration_sentences, quantize_from_text
    from sw.import_hf import load_hf

    imp = load_hf(folder)
    sentences, _ = calibration_sentences()
    model = quantize_from_text(BertEncoder.from_imported(imp), imp.tokenizer,
                               sentences[:calib], max_seq_len=max_seq_len)
    return model, imp.tokenizer


def short_sentences(tokenizer, n: int, max_tokens: int) -> list[str]:
    """The first ``n`` held-out pydoc sentences of at most ``max_tokens`` tokens."""
    from sw.bert_int import calibration_sentences

    _, held = calibration_sentences()
    out = [s for s in held if len(tokenizer.encode(s).ids) <= max_tokens][:n]
    if len(out) < n:
        raise ValueError(f"only {len(out)} held-out sentences have at most {max_tokens} "
                         f"tokens; ask for fewer")
    return out


def device_run(model, tokenizer, sentences: list[str], params, *, url: str | None = None,
               window: int | None = None, mode: str | None = "streamed",
               timeout: float = 600.0, say=None) -> dict[str, Any]:
    """Run ``sentences`` on the device at ``url`` (default: a virtual board of ``params``
    started here) and compare with ``encode_int``; a JSON-ready report."""
    from sim import vboard
    from sw.bert_int import encode_int
    from sw.bert_program import run_bert
    from sw.driver import Accelerator
    from sw.import_hf import encode_batch

    say = say or (lambda line: None)
    commit = source_commit()                      # the code that runs (before anything changes)
    ids, mask = encode_batch(tokenizer, sentences, model.max_seq_len, model.config.pad_token_id)
    t0 = time.perf_counter()
    want = encode_int(model, ids, mask, window=window)                  # (B, T, C) int8
    ref_s = time.perf_counter() - t0
    rows = [ids[b, :int(mask[b].sum())] for b in range(len(ids))]
    board = None
    if url is None:
        say(f"bert_device: building / starting the virtual board of {params.name}")
        board = vboard.start(params, progress=True)
        url = board.url
    try:
        t0 = time.perf_counter()
        with Accelerator.open(url, baud=params.baud, timeout=timeout) as acc:
            rep = run_bert(acc, model, rows, params=params, window=window, mode=mode,
                           timeout=timeout,
                           progress=lambda i: say(f"bert_device: sentence {i} of {len(rows)} "
                                                  f"done ({time.perf_counter() - t0:.0f} s)"))
        wall = time.perf_counter() - t0
    finally:
        if board is not None:
            board.stop()
    mismatched = [b for b, out in enumerate(rep["outputs"])
                  if not np.array_equal(out, want[b, :len(rows[b])])]
    values = int(sum(out.size for out in rep["outputs"]))
    differing = int(sum(int((out != want[b, :len(rows[b])]).sum())
                        for b, out in enumerate(rep["outputs"])))
    cfg = model.config
    return {
        "preset": params.name, "design_id": f"{params.design_id:08x}", "url": url,
        "virtual_board": board is not None,
        "model": {"d_model": cfg.d_model, "n_heads": cfg.n_heads, "n_layers": cfg.n_layers,
                  "d_ff": cfg.d_ff, "vocab_size": cfg.vocab_size},
        "window": window, "mode": rep["mode"], "word_lookup": rep["word_lookup"],
        "sentences": len(rows),
        "tokens": [len(r) for r in rows], "runs_per_sentence": rep["runs"],
        "compared_against": "sw.bert_int.encode_int (padded batch, real rows)",
        "mismatched_sentences": len(mismatched), "values_compared": values,
        "values_differing": differing, "bit_exact": not mismatched,
        "cycles": rep["cycles"], "link_bytes": rep["link_bytes"],
        "wall_seconds": round(wall, 1), "reference_seconds": round(ref_s, 2),
        "vboard": None if board is None else board.stats,
        "commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    from hw.params import preset
    from sim.benchkit import preset_type
    from sw.report import json_path_type, write_json

    p = argparse.ArgumentParser(prog="python -m sim.bert_device", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", type=preset_type, default="sim_large")
    p.add_argument("--shape", type=bert_shape_type, default=(384, 6, 12), metavar="DxLxH",
                   help="random encoder: d_model x layers x heads (default 384x6x12)")
    p.add_argument("--artifact", type=Path, default=None,
                   help="a `lightformer import-hf` artifact instead of a random encoder")
    p.add_argument("--hf-checkpoint", type=Path, default=None, metavar="DIR",
                   help="write a random transformers BertModel of --shape to DIR with "
                        "save_pretrained and import it from there (needs transformers)")
    p.add_argument("--sentences", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=None,
                   help="longest sentence (default: the preset's full attention, (window+1)/2)")
    p.add_argument("--window", type=int, default=None,
                   help="the model's centred attention window (default: full attention)")
    p.add_argument("--port", default=None, metavar="URL",
                   help="a running device (default: start the preset's virtual board)")
    p.add_argument("--fit", type=int, default=None, metavar="T",
                   help="only print, per preset, whether the model fits sentences of T tokens "
                        "(sw.bert_program.board_fit; with --window) and exit")
    p.add_argument("--json", type=json_path_type, default=None, metavar="PATH")
    args = p.parse_args(argv)
    if args.fit is None and args.json is None:
        p.error("--json PATH is required (unless --fit T)")
    params = preset(args.preset)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    if args.artifact is not None:
        from sw.bert_int import load_bert_int
        model, tok, _ = load_bert_int(args.artifact)
    elif args.hf_checkpoint is not None:
        model, tok = import_checkpoint(hf_checkpoint(args.hf_checkpoint, *args.shape))
    else:
        model, tok = random_model(*args.shape)
    say(f"bert_device: model ready in {time.perf_counter() - t0:.0f} s")
    if args.fit is not None:
        from hw.params import PRESETS
        from sw.bert_program import board_fit

        for r in board_fit(model, PRESETS, args.fit, args.window):
            what = (f"fits, {r['mode']}, {r['runs']} run(s), word lookup on the "
                    f"{r['word_lookup']}" if r["fits"]
                    else "does not fit: " + "; ".join(r["limits"]))
            print(f"{r['preset']:<18} {what}")
        return 0
    longest = args.max_tokens or ((params.window + 1) // 2 if args.window is None else 64)
    sentences = short_sentences(tok, args.sentences, longest)
    report = device_run(model, tok, sentences, params, url=args.port, window=args.window,
                        say=say)
    report["sentences_text"] = sentences
    report["artifact"] = None if args.artifact is None else str(args.artifact)
    report["source"] = ("artifact" if args.artifact is not None else "hf-checkpoint (imported "
                        "with sw.import_hf.load_hf)" if args.hf_checkpoint is not None
                        else "sw.bert.random_bert")
    write_json(args.json, report, kind="bert-device")
    say(f"bert_device: {report['sentences']} sentences, {report['mismatched_sentences']} "
        f"mismatched ({report['values_differing']} of {report['values_compared']} values "
        f"differ), cycles {report['cycles']}, wall {report['wall_seconds']} s")
    return 0 if report["bit_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
