# SPDX-License-Identifier: Apache-2.0
"""Render ``docs/results.md`` from attention-study JSON (bench/attention_study.py).

Several JSON files may be given; a section found in a later file replaces the same section of an
earlier one (e.g. a quick CPU run for digits/MNIST-1D plus a GPU run for the family section).
Every section states where, when and with which command its numbers were produced.

    python bench/results_table.py build/bench/attention_study.json --out docs/results.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ORDER = ("digits", "mnist1d", "family", "family_seq", "prune", "kd", "seed")


def _pct(x, std=None) -> str:
    if x is None:
        return "–"
    s = f"{100 * x:.2f}"
    if std:
        s += f" ± {100 * std:.2f}"
    return s


def _int(x) -> str:
    return "–" if x is None else f"{int(x):,}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _portable(command: str) -> str:
    """The command with absolute paths (machine-specific) shortened to ``build/bench/NAME``."""
    return " ".join(f"build/bench/{Path(tok).name}" if tok.startswith("/") else tok
                    for tok in command.split())


def _where(meta: dict) -> str:
    dev = meta.get("device", "?")
    name = meta.get("device_name") or ""
    mode = meta.get("mode", "?")
    return (f"*Produced {meta.get('utc', '?')} on `{meta.get('host', '?')}` ({dev}"
            f"{', ' + name if name else ''}, {meta.get('cpu_count', '?')} CPU cores, "
            f"{meta.get('torch_threads', '?')} torch threads, "
            f"torch {meta.get('torch', '?')}), commit `{meta.get('commit', '?')}`, {mode} mode, "
            f"{meta.get('wall_s', '?')} s: `{_portable(meta.get('command', '?'))}`.*")


def _label(r: dict) -> str:
    if r.get("label"):
        return r["label"]
    return r["attention"] + (f" (window {r['window']})" if r.get("window") else "")


def render_accuracy(name: str, sec: dict) -> list[str]:
    title = {"digits": "scikit-learn digits", "mnist1d": "MNIST-1D"}[name]
    lines = [f"## fp32 vs int8: {title}", "",
             (f"{sec['n_train']} training / {sec['n_test']} test samples, T = {sec['seq_len']} "
             f"tokens, {sec['epochs']} epochs, d_model 32, 2 heads, 2 layers, d_ff 64; mean ± std "
             f"over seeds {sec['rows'][0].get('seeds')}. int8 = the integer-only NumPy model "
             "(`sw.ref.model_forward_int`) on a PTQ artifact from `sw.compile.export_artifact`."),
             ""]
    rows = []
    for r in sec["rows"]:
        gap = None
        if r.get("int8_acc") is not None:
            gap = f"{100 * (r['int8_acc'] - r['test_acc']):+.2f}"
        rows.append([_label(r), _pct(r["test_acc"], r.get("test_acc_std")),
                     _pct(r.get("int8_acc"), r.get("int8_acc_std")), gap or "–",
                     _int(r["params"]), _int(r["macs"]), _int(r["attention_macs"])])
    lines += _table(["attention", "fp32 test acc %", "int8 test acc %", "int8 − fp32 (pts)",
                     "params", "MACs/sample", "attention MACs"], rows)
    errs = {r.get("int8_error") for r in sec["rows"] if r.get("int8_error")}
    if errs:
        lines += [f"int8 column not available: {'; '.join(sorted(errs))}", ""]
    lines += [_where(sec["meta"]), ""]
    return lines


def render_family(sec: dict) -> list[str]:
    if sec["task"] == "listops":
        head = ["## The attention family on ListOps", "",
                (f"ListOps from our generator (`sw.data.listops_generate`), T = {sec['seq_len']} "
                 "(expressions of T/4..T tokens, zero-padded)")]
    else:
        head = ["## The attention family on sequence MNIST-1D", "",
                (f"MNIST-1D with one signal sample per token, T = {sec['seq_len']}")]
    lines = head[:2] + [
        (head[2] + f", {sec['n_train']} training / {sec['n_test']} test samples, "
         f"{sec['epochs']} epochs (lr {sec.get('lr', '?')}, batch {sec.get('batch_size', '?')}), "
         "d_model 32, 2 heads, 2 layers, d_ff 64, one seed. Majority class of the test split: "
         f"{_pct(sec['majority_acc'])} %. MACs are analytic per sample (`sw.model.count_macs`: "
         "projections, token mixing as an efficient kernel would visit it, FFN, head; no "
         "LayerNorm/softmax/GELU)."), ""]
    rows = [[_label(r), _pct(r["test_acc"]), _int(r["params"]), _int(r["macs"]),
             _int(r["attention_macs"]), f"{r['train_s']:.0f}"] for r in sec["rows"]]
    lines += _table(["variant", "test acc %", "params", "MACs/sample", "attention MACs",
                     "train s"], rows)
    notes = [f"Rows {', '.join(pt['labels'])} were re-run later: " + _where(pt["meta"])
             for pt in sec.get("patches", [])]
    if "scaling" not in sec:
        return lines + [_where(sec["meta"]), ""] + [x for n in notes for x in (n, "")]
    Ts = sorted({s["T"] for s in sec["scaling"]})
    labels = list(dict.fromkeys(s["label"] for s in sec["scaling"]))
    by = {(s["label"], s["T"]): s for s in sec["scaling"]}
    lines += ["### Cost as the sequence grows", "",
              "Analytic attention (token-mixing) MACs per sample, in thousands:", ""]
    lines += _table(["variant"] + [f"T={t}" for t in Ts],
                    [[lab] + [f"{by[(lab, t)]['attention_macs'] / 1e3:,.0f}" for t in Ts]
                     for lab in labels])
    lines += [(f"Measured forward time per sample (ms, batch {sec['scaling_batch']}, best of 3, "
              "this file's reference PyTorch code: the sparse variants compute dense masked "
              "scores, so their time does not fall with their MACs):"), ""]
    lines += _table(["variant"] + [f"T={t}" for t in Ts],
                    [[lab] + [f"{by[(lab, t)]['ms_per_sample']:.3f}" for t in Ts]
                     for lab in labels])
    lines += [_where(sec["meta"]), ""] + [x for n in notes for x in (n, "")]
    return lines


def render_prune(sec: dict) -> list[str]:
    lines = ["## Structured pruning (digits)", "",
             ("Base: windowed attention (window 8), d_model 32, 4 heads, 2 layers, d_ff 128. "
             "Heads/FFN neurons are physically removed (smaller `qkv`/`proj`/`fc1`/`fc2`), then "
             f"fine-tuned for {sec['finetune_epochs']} epochs (best validation epoch kept, the "
             "un-fine-tuned start included)."), ""]
    rows = [[r["label"], _pct(r.get("test_acc_after_prune")), _pct(r["test_acc"]),
             _int(r["params"]), _int(r["macs"])] for r in sec["rows"]]
    lines += _table(["model", "test acc right after pruning %", "test acc after fine-tune %",
                     "params", "MACs/sample"], rows)
    return lines + [_where(sec["meta"]), ""]


def render_kd(sec: dict) -> list[str]:
    lines = ["## Knowledge distillation (digits)", "",
             ("Teacher: window 8, d_model 64, 4 heads, 2 layers, d_ff 128. Student: window 8, "
             f"d_model 16, 2 heads, 1 layer, d_ff 32; mean ± std over {sec['seeds']} seeds."), ""]
    rows = [[r["label"], _pct(r["test_acc"], r.get("test_acc_std")), _int(r["params"]),
             _int(r["macs"])] for r in sec["rows"]]
    lines += _table(["model", "test acc %", "params", "MACs/sample"], rows)
    return lines + [_where(sec["meta"]), ""]


def render_seed(sec: dict) -> list[str]:
    lines = ["## The source's example: SeedLightTransformer (fp32 reference)", "",
             ("`nn.Transformer` encoder-decoder (2+2 layers, d_model 32, 2 heads, d_ff 64) with "
             "token embeddings and a vocabulary projection, trained with teacher forcing on "
             "digit strings; accuracy by greedy decoding on the test split. MACs: one "
             "teacher-forced forward pass."), ""]
    rows = [[r["task"], str(r["length"]), _pct(r["token_acc"]), _pct(r["seq_acc"]),
             _int(r["params"]), _int(r["macs"]), str(r["epochs"])] for r in sec["rows"]]
    lines += _table(["task", "length", "token acc %", "sequence acc %", "params",
                     "MACs/sample", "epochs"], rows)
    if sec.get("scaling"):
        sc = sec["scaling"]
        lines += [(f"Cost as the sequence grows (source = target length L; analytic MACs and "
                   f"measured forward time per sample, batch {sec['scaling_batch']}, best of 3):"),
                  ""]
        lines += _table(["", *[f"L={s['T']}" for s in sc]],
                        [["MACs/sample", *[_int(s["macs"]) for s in sc]],
                         ["ms/sample", *[f"{s['ms_per_sample']:.3f}" for s in sc]]])
    return lines + [_where(sec["meta"]), ""]


def _render_sections(data: dict, suffix: str = "") -> list[str]:
    lines: list[str] = []
    for name in ORDER:
        if name not in data:
            continue
        sec = data[name]
        if name in ("digits", "mnist1d"):
            part = render_accuracy(name, sec)
        else:
            part = dict(family=render_family, family_seq=render_family, prune=render_prune,
                        kd=render_kd, seed=render_seed)[name](sec)
        if suffix:
            part[0] += suffix.format(mode=sec.get("meta", {}).get("mode", "?"))
        lines += part
    return lines


def render(data: dict, note: str | None = None, longer: dict | None = None) -> str:
    lines = [("<!-- generated by bench/results_table.py from bench/attention_study.py JSON; "
             "do not edit by hand -->"), "", "# Results", "",
             ("Every number below was measured by `bench/attention_study.py` in the run named "
             "under its table; regenerate with"), "",
             "```sh", (".venv/bin/python bench/attention_study.py --quick "
             "--out build/bench/attention_study.json"),
             (".venv/bin/python bench/results_table.py build/bench/attention_study.json "
             "--out docs/results.md"), "```", "",
             ("Quick mode trains briefly (2 torch threads per run); the accuracies are lower "
             "bounds for the architectures, not tuned results. Test sets are small (digits: 270 "
             "samples, one sample = 0.37 points). Each section says where, when and how its "
             "numbers were produced; sections run on a GPU say so."), ""]
    if note:
        lines += [note, ""]
    lines += _render_sections(data)
    if longer:
        lines += ["# Longer runs", "",
                  ("The same sections trained longer (more epochs and seeds, `attention_study.py` "
                   "without `--quick`), to check conclusions that the quick runs leave open."), ""]
        lines += _render_sections(longer, " ({mode} mode)")
    return "\n".join(lines).rstrip() + "\n"


def _patch(base: dict, new: dict) -> None:
    """Replace rows (and scaling entries) of ``base`` by label with those of ``new``."""
    labels = {r["label"] for r in new["rows"]}
    base["rows"] = [next((n for n in new["rows"] if n["label"] == r["label"]), r)
                    for r in base["rows"]]
    if "scaling" in base and "scaling" in new:
        by = {(s["label"], s["T"]): s for s in new["scaling"]}
        base["scaling"] = [by.get((s["label"], s["T"]), s) for s in base["scaling"]]
    base.setdefault("patches", []).append(dict(labels=sorted(labels), meta=new["meta"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", type=Path, nargs="+", help="attention_study JSON file(s)")
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    p.add_argument("--note", default=None, help="a paragraph placed under the introduction")
    p.add_argument("--patch", type=Path, nargs="*", default=[],
                   help="JSON of re-run rows (attention_study.py --variants): rows and scaling "
                        "entries replace those with the same label in the same section")
    p.add_argument("--longer", type=Path, nargs="*", default=[],
                   help="JSON of longer (full-mode) runs, rendered in a second part")
    args = p.parse_args(argv)
    data: dict = {}
    for f in args.json:
        if not f.is_file():
            p.error(f"JSON file must exist, not {str(f)!r}: run bench/attention_study.py first")
        data.update({k: v for k, v in json.loads(f.read_text()).items() if k in ORDER})
    if not data:
        p.error("the JSON files must contain at least one study section")
    for f in args.patch:
        if not f.is_file():
            p.error(f"JSON file must exist, not {str(f)!r}")
        for name, sec in json.loads(f.read_text()).items():
            if name not in data:
                p.error(f"--patch section {name!r} must also be in the main JSON files")
            _patch(data[name], sec)
    longer: dict = {}
    for f in args.longer:
        if not f.is_file():
            p.error(f"JSON file must exist, not {str(f)!r}")
        longer.update({k: v for k, v in json.loads(f.read_text()).items() if k in ORDER})
    from sw.report import atomic_write_text

    atomic_write_text(args.out, render(data, args.note, longer))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
