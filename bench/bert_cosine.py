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

from sw.report import json_path_type, write_json  # noqa: E402

# Trained BERTs carry a few residual-stream channels tens of times larger than the rest (they
# come from LayerNorm gains and shifts); --outlier-gains imitates that in this many channels.
OUTLIER_CHANNELS = 2


def _shape(text: str) -> tuple[int, int, int]:
    try:
        d, layers, heads = (int(x) for x in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"shape must be DxLxH (e.g. 384x6x12), not {text!r}") from None
    return d, layers, heads


def measure(d: int, layers: int, heads: int, *, calib_n: int, held_n: int, max_seq_len: int,
            gain: float, seed: int, outlier_gain: float = 1.0) -> dict:
    import torch

    from sw.bert import random_bert
    from sw.bert_int import calibration_sentences, cosine, cosine_to_fp32, quantize_from_text
    from sw.import_hf import BertConfig, encode_batch, wordpiece_from_text

    torch.set_num_threads(1)
    calib, held = calibration_sentences()
    tok, vocab = wordpiece_from_text(calib, size=1000)
    cfg = BertConfig(vocab_size=len(vocab), d_model=d, n_layers=layers, n_heads=heads,
                     d_ff=4 * d, max_positions=max_seq_len)
    twin = random_bert(cfg, seed=seed, gain=gain)
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", type=lambda s: [_shape(x) for x in s.split(",")],
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
    p.add_argument("--json", type=json_path_type, default="build/bench/bert_cosine.json",
                   metavar="PATH")
    args = p.parse_args(argv)
    rows = []
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
