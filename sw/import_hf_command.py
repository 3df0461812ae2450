# SPDX-License-Identifier: Apache-2.0
"""``lightformer import-hf``: a local Hugging Face BERT-family folder -> one int8 artifact.

Reads the folder (:func:`sw.import_hf.load_hf`), builds the fp32 twin (``sw.bert``), calibrates and
quantizes it (``sw.bert_int``), measures the cosine to fp32 on held-out sentences and writes the
artifact (:func:`sw.bert_int.save_bert_int`). ``docs/bert.md`` describes all of it.
"""

from __future__ import annotations

from pathlib import Path

from sw.import_hf import encode_batch, load_hf

__all__ = ["add_arguments", "run"]

def _output_path(text: str) -> Path:
    import argparse

    from sw.report import check_output_path

    try:
        return check_output_path(text, option="--out")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p) -> None:
    from sw.compile import _positive_int
    from sw.report import add_json_argument

    p.add_argument("folder", type=Path,
                   help="local Hugging Face folder: config.json, model.safetensors and "
                        "tokenizer.json or vocab.txt")
    p.add_argument("--out", type=_output_path, required=True, metavar="ARTIFACT",
                   help="int8 artifact to write (one .safetensors file)")
    p.add_argument("--max-seq-len", type=_positive_int, default=128, metavar="N",
                   help="longest input in tokens, [CLS] and [SEP] included (default: "
                        "%(default)s)")
    p.add_argument("--calibration", type=Path, default=None, metavar="FILE",
                   help="calibration text, one sentence per line; every fourth line is held "
                        "out and measured (default: the prose of Python's pydoc_data.topics)")
    p.add_argument("--calib-sentences", type=_positive_int, default=256, metavar="N",
                   help="calibrate on at most N sentences (default: %(default)s)")
    p.add_argument("--held-out", type=_positive_int, default=32, metavar="N",
                   help="measure cosine to fp32 on at most N held-out sentences (default: "
                        "%(default)s)")
    add_json_argument(p, what="a summary (artifact, sizes, cosine to fp32)")


def run(args) -> int:
    import hashlib

    from sw.bert import BertEncoder
    from sw.bert_int import (
        calibration_sentences,
        cosine,
        cosine_to_fp32,
        quantize_from_text,
        save_bert_int,
    )
    from sw.report import info_stream, write_json

    try:
        imp = load_hf(args.folder)
        cfg = imp.config
        if args.max_seq_len > cfg.max_positions:
            raise ValueError(f"--max-seq-len {args.max_seq_len} is more than the model's "
                             f"{cfg.max_positions} positions; give at most that")
        calib, held = calibration_sentences(args.calibration)
        twin = BertEncoder.from_imported(imp)
        model = quantize_from_text(twin, imp.tokenizer, calib[:args.calib_sentences],
                                   args.max_seq_len)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"lightformer import-hf: {exc}") from None
    encs = imp.tokenizer.encode_batch(held)
    held = [s for s, e in zip(held, encs) if len(e.ids) <= args.max_seq_len][:args.held_out]
    cos = centred = None
    if held:
        ids, mask = encode_batch(imp.tokenizer, held, args.max_seq_len, cfg.pad_token_id)
        cos, e_int, e_f = cosine_to_fp32(model, twin, ids, mask)
        # Without the shared mean: the part of the embeddings that tells sentences apart.
        centred = cosine(e_int - e_f.mean(axis=0), e_f - e_f.mean(axis=0))
    weights = imp.folder / "model.safetensors"
    info = {"source": {"folder": str(imp.folder.resolve()),
                       "model_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                       "unexpected_keys": imp.unexpected_keys, "pooler": imp.has_pooler},
            "calibration": {"source": str(args.calibration or "pydoc_data.topics"),
                            "sentences": model.calib_sentences, "held_out": len(held),
                            "mean_cosine_to_fp32": None if cos is None else float(cos.mean()),
                            "mean_centred_cosine_to_fp32":
                                None if centred is None else float(centred.mean())}}
    path = save_bert_int(args.out, model, imp.tokenizer, info)
    out = info_stream(args.json)
    if imp.unexpected_keys:
        print(f"ignored {len(imp.unexpected_keys)} checkpoint tensor(s) that are not part of the "
              f"encoder: {', '.join(imp.unexpected_keys[:6])}", file=out)
    shown = "no held-out sentence fits" if cos is None else (
        f"mean cosine to fp32 {cos.mean():.4f} (min {cos.min():.4f}; centred "
        f"{centred.mean():.4f}) on {len(held)} held-out sentences")
    print(f"wrote {path}: d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, "
          f"max_seq_len {model.max_seq_len}; {shown}", file=out)
    if args.json is not None:
        write_json(args.json, {"artifact": str(path), "artifact_bytes": path.stat().st_size,
                               "config": cfg.to_dict(), "max_seq_len": model.max_seq_len,
                               **info}, kind="import-hf")
    return 0
