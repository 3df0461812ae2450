# SPDX-License-Identifier: Apache-2.0
"""int8 integer-only BERT vs its fp32 twin: cosine of mean-pooled sentence embeddings -> JSON.

Random BERT-family encoders (``sw.bert.random_bert``; no download) with a WordPiece vocabulary of
the calibration text's most common words, calibrated on ``pydoc_data.topics`` sentences
(``sw.bert_int.calibration_sentences``) and measured on its held-out sentences. Reported per
shape: mean/min cosine to fp32, the same after removing the fp32 mean embedding ("centred": random
encoders map every sentence near one vector, so this is the part that tells sentences apart),
the fp32 embeddings' own mean neighbour cosine (how alike the sentences look to begin with), and
wall time of the integer model on this machine.

    python bench/bert_cosine.py --json build/bench/bert_cosine.json
    python bench/bert_cosine.py --shapes 64x2x4 --calib 32 --held-out 16 --json -
    python bench/bert_cosine.py --gains 1 --outlier-gains 10,30 --json build/bench/outliers.json
    python bench/bert_cosine.py --study --gains 1 --json build/bench/bert_window_prune.json

``--study`` measures the project's efficiency methods on the imported-model path instead: the
integer model with its attention restricted to a centred sliding window (``--windows``) and with
the least important heads pruned (``--prune``), on passages of up to ``--max-seq-len`` tokens
(held-out sentences joined), against the full fp32 twin; the fp32 twin with the same restriction
is measured too, so the method's own cost and quantization's are told apart.

Random weights are a weak test of quantization: real checkpoints have outlier channels in the
residual stream that random ones lack.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from sw.report import bert_shape_type, json_path_type, write_json  # noqa: E402

# Trained BERTs carry a few residual-stream channels tens of times larger than the rest (they
# come from LayerNorm gains and shifts); --outlier-gains imitates that in this many channels.
OUTLIER_CHANNELS = 2


def _ints(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        out = []
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers like 16,32,64, not {text!r}")
    return out


def _fractions(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",")]
    except ValueError:
        out = []
    if not out or not all(0.0 <= f < 1.0 for f in out):
        raise argparse.ArgumentTypeError(
            f"expected fractions in [0, 1) like 0.25,0.5, not {text!r}")
    return out


def _encoder(d: int, layers: int, heads: int, max_seq_len: int, gain: float, seed: int):
    """``(calib, held, tokenizer, vocab, twin)``: the pydoc sentences, a WordPiece vocabulary of
    their 1000 commonest words and a random BERT encoder of that shape (1 torch thread)."""
    import torch

    from sw.bert import random_bert
    from sw.bert_int import calibration_sentences
    from sw.import_hf import BertConfig, wordpiece_from_text

    torch.set_num_threads(1)
    calib, held = calibration_sentences()
    tok, vocab = wordpiece_from_text(calib, size=1000)
    cfg = BertConfig(vocab_size=len(vocab), d_model=d, n_layers=layers, n_heads=heads,
                     d_ff=4 * d, max_positions=max_seq_len)
    return calib, held, tok, vocab, random_bert(cfg, seed=seed, gain=gain)


def measure(d: int, layers: int, heads: int, *, calib_n: int, held_n: int, max_seq_len: int,
            gain: float, seed: int, outlier_gain: float = 1.0) -> dict:
    import torch

    from sw.bert_int import cosine, cosine_to_fp32, quantize_from_text
    from sw.import_hf import encode_batch

    calib, held, tok, vocab, twin = _encoder(d, layers, heads, max_seq_len, gain, seed)
    with torch.no_grad():                  # outlier channels, as trained BERTs have them
        for name, p in twin.named_parameters():
            if ".ln." in name or ".ln1." in name or ".ln2." in name:
                p[:OUTLIER_CHANNELS] *= outlier_gain
    t0 = time.perf_counter()
    model = quantize_from_text(twin, tok, calib[:calib_n], max_seq_len)
    t1 = time.perf_counter()
    ids, mask = encode_batch(tok, held[:held_n], max_seq_len)
    cos, e_int, e_f = cosine_to_fp32(model, twin, ids, mask)
    t2 = time.perf_counter()
    mu = e_f.mean(axis=0)
    centred = cosine(e_int - mu, e_f - mu)
    return {"d_model": d, "n_layers": layers, "n_heads": heads, "d_ff": 4 * d, "gain": gain,
            "ln_outlier_gain": outlier_gain, "seed": seed, "calib_sentences": calib_n,
            "held_out": len(cos),
            "tokens_per_sentence": float(mask.sum(axis=1).mean()),
            "unk_fraction": float((ids[mask] == vocab.index("[UNK]")).mean()),
            "mean_cosine_to_fp32": float(cos.mean()), "min_cosine_to_fp32": float(cos.min()),
            "mean_centred_cosine": float(centred.mean()),
            "min_centred_cosine": float(centred.min()),
            "fp32_neighbour_cosine": float(cosine(e_f[:-1], e_f[1:]).mean()),
            "calibrate_s": round(t1 - t0, 1), "integer_model_s": round(t2 - t1, 1)}


def passages(tokenizer, sentences: list[str], max_seq_len: int, n: int) -> list[str]:
    """Up to ``n`` texts of consecutive sentences, each as long as fits ``max_seq_len`` tokens."""
    out: list[str] = []
    cur = ""
    for s in sentences:
        joined = f"{cur} {s}".strip()
        if len(tokenizer.encode(joined).ids) <= max_seq_len:
            cur = joined
            continue
        if cur:
            out.append(cur)
            if len(out) == n:
                return out
        cur = s if len(tokenizer.encode(s).ids) <= max_seq_len else ""
    return out + ([cur] if cur and len(out) < n else [])


def study(d: int, layers: int, heads: int, *, calib_n: int, held_n: int, max_seq_len: int,
          gain: float, seed: int, windows: list[int], prune: list[float]) -> list[dict]:
    """Sliding window and head pruning: one row per variant (``full`` first)."""
    import torch

    from sw.bert import head_importance, mean_pool
    from sw.bert_int import (
        cosine,
        embed_int,
        prune_by_importance,
        quantize_from_text,
    )
    from sw.import_hf import encode_batch

    calib, held, tok, vocab, twin = _encoder(d, layers, heads, max_seq_len, gain, seed)
    model = quantize_from_text(twin, tok, calib[:calib_n], max_seq_len)
    ids, mask = encode_batch(tok, passages(tok, held, max_seq_len, held_n), max_seq_len)
    c_ids, c_mask = encode_batch(tok, passages(tok, calib, max_seq_len, 16), max_seq_len)
    importance = head_importance(twin, torch.from_numpy(c_ids), torch.from_numpy(c_mask))
    ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)

    def fp32(**kw) -> np.ndarray:
        with torch.no_grad():
            return mean_pool(twin(ids_t, mask_t, **kw), mask_t).double().numpy()

    ref = fp32()                                                         # (B, C) full model
    mu = ref.mean(axis=0)
    variants = [("full", {})] + [(f"window {w}", {"window": w}) for w in windows] + [
        (f"prune {f:.0%} of heads", {"head_keep": prune_by_importance(importance, f)})
        for f in prune]
    rows = []
    for name, kw in variants:
        t0 = time.perf_counter()
        e_int = embed_int(model, ids, mask, **kw).astype(np.float64) * model.scales["pool"]
        seconds = time.perf_counter() - t0
        e_f = fp32(**kw) if kw else ref                                 # full: computed once
        keep = kw.get("head_keep")
        rows.append({
            "d_model": d, "n_layers": layers, "n_heads": heads, "gain": gain, "seed": seed,
            "variant": name, "window": kw.get("window"),
            "heads_pruned": 0 if keep is None else int((~keep).sum()),
            "passages": len(ids), "tokens_per_passage": float(mask.sum(axis=1).mean()),
            "int8_mean_cosine": float(cosine(e_int, ref).mean()),
            "int8_min_cosine": float(cosine(e_int, ref).min()),
            "int8_centred_cosine": float(cosine(e_int - mu, ref - mu).mean()),
            "fp32_mean_cosine": float(cosine(e_f, ref).mean()),
            "fp32_centred_cosine": float(cosine(e_f - mu, ref - mu).mean()),
            "integer_model_s": round(seconds, 1)})
        print(", ".join(f"{k} {v}" for k, v in rows[-1].items()), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", type=lambda s: [bert_shape_type(x) for x in s.split(",")],
                   default=[(64, 2, 4), (384, 6, 12)], metavar="DxLxH[,...]",
                   help="encoder shapes (default: 64x2x4,384x6x12)")
    p.add_argument("--gains", type=lambda s: [float(x) for x in s.split(",")], default=[1.0, 2.0],
                   help="random-weight gains (sw.bert.random_bert; default: 1,2)")
    p.add_argument("--outlier-gains", type=lambda s: [float(x) for x in s.split(",")],
                   default=[1.0], metavar="G[,...]",
                   help=f"multiply every LayerNorm's gain and shift in {OUTLIER_CHANNELS} channels "
                        "by G (default: 1, no outliers)")
    p.add_argument("--calib", type=int, default=128, help="calibration sentences (default 128)")
    p.add_argument("--held-out", type=int, default=64, help="held-out sentences (default 64)")
    p.add_argument("--max-seq-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--study", action="store_true",
                   help="sliding-window and head-pruning study on passages (see above)")
    p.add_argument("--windows", type=_ints, default=[16, 32, 64], metavar="W[,...]",
                   help="--study: centred attention windows (default: 16,32,64)")
    p.add_argument("--prune", type=_fractions, default=[0.25, 0.5], metavar="F[,...]",
                   help="--study: fractions of heads to prune by importance (default: 0.25,0.5)")
    p.add_argument("--json", type=json_path_type, default=None, metavar="PATH",
                   help="report (default: build/bench/bert_cosine.json, with --study "
                        "build/bench/bert_window_prune.json)")
    args = p.parse_args(argv)
    if args.json is None:
        args.json = json_path_type("build/bench/bert_window_prune.json" if args.study
                                   else "build/bench/bert_cosine.json")
    rows = []
    if args.study:
        for d, layers, heads in args.shapes:
            for gain in args.gains:
                rows += study(d, layers, heads, calib_n=args.calib, held_n=args.held_out,
                              max_seq_len=args.max_seq_len, gain=gain, seed=args.seed,
                              windows=args.windows, prune=args.prune)
        write_json(args.json, {"rows": rows, "machine": platform.machine(),
                               "python": platform.python_version(), "numpy": np.__version__},
                   kind="bench.bert_window_prune")
        return 0
    for d, layers, heads in args.shapes:
        for gain in args.gains:
            for og in args.outlier_gains:
                row = measure(d, layers, heads, calib_n=args.calib, held_n=args.held_out,
                              max_seq_len=args.max_seq_len, gain=gain, seed=args.seed,
                              outlier_gain=og)
                print(", ".join(f"{k} {v}" for k, v in row.items()), file=sys.stderr)
                rows.append(row)
    write_json(args.json, {"rows": rows, "machine": platform.machine(),
                           "python": platform.python_version(), "numpy": np.__version__},
               kind="bench.bert_cosine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
