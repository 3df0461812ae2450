# SPDX-License-Identifier: Apache-2.0
"""Render ``docs/results.md`` from attention-study JSON (bench/attention_study.py).

Several JSON files may be given; a section found in a later file replaces the same section of an
earlier one (e.g. a quick CPU run for digits/MNIST-1D plus a GPU run for the family section).
Every section states where, when and with which command its numbers were produced.
``--lra`` adds the Long Range Arena ListOps section (bench/lra_listops.py JSON) and ``--plot`` its
accuracy-vs-cost PNG; given alone, it replaces just that section of an existing page.

    python bench/results_table.py build/bench/attention_study.json --out docs/results.md
    python bench/results_table.py --lra docs/lra/* --plot docs/lra_listops.png \\
        --out docs/results.md
"""

from __future__ import annotations

import argparse
import json
import re
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


# ---------------------------------------------------------------------------------------------
# Long Range Arena ListOps (bench/lra_listops.py)
#: Tay et al., "Long Range Arena", ICLR 2021, Table 1, ListOps column (test accuracy %).
LRA_PUBLISHED = {"Transformer": 36.37, "Local Attention": 15.82, "Sparse Transformer": 17.07,
                 "Longformer": 35.63, "Linformer": 35.70, "Reformer": 37.27,
                 "Sinkhorn Transformer": 33.67, "Synthesizer": 36.99, "BigBird": 36.05,
                 "Linear Transformer": 16.13, "Performer": 18.01}
#: Xiong et al., "Nyströmformer", AAAI 2021, its LRA table, ListOps.
NYSTROM_PUBLISHED = 37.15
#: Our variant -> (its published counterpart, that number); None: no counterpart.
LRA_COUNTERPART = {"full": ("Transformer", 36.37), "window": ("Local Attention", 15.82),
                   "random_sparse": ("BigBird", 36.05), "linformer": ("Linformer", 35.70),
                   "performer": ("Performer", 18.01),
                   "nystrom": ("Nyströmformer (its paper)", NYSTROM_PUBLISHED),
                   "lsh": ("Reformer", 37.27), "conv": None, "dynamic_window": None}
LRA_ORDER = tuple(LRA_COUNTERPART)
LRA_BEGIN, LRA_END = "<!-- lra:begin -->", "<!-- lra:end -->"
_LOG_STEP = re.compile(r"^(\w+): step (\d+) loss [\d.naninf]+ val ([\d.]+) \((\d+) s\)$")
_LOG_BEST = re.compile(r"^(\w+): best val ([\d.]+) at step (\d+), test ([\d.]+)$")


def lra_runs_from_log(path: Path) -> list[dict]:
    """Runs whose JSON did not come back, from a committed verbatim training log: the last
    ``VARIANT: step N ...`` line and the ``VARIANT: best val ... test ...`` line."""
    last: dict = {}
    runs = []
    for line in path.read_text().splitlines():
        m = _LOG_STEP.match(line.strip())
        if m:
            last[m[1]] = (int(m[2]), int(m[4]))
            continue
        m = _LOG_BEST.match(line.strip())
        if m and m[1] in last:
            runs.append(dict(variant=m[1], steps=last[m[1]][0], train_s=last[m[1]][1],
                             best_val_acc=float(m[2]), best_step=int(m[3]),
                             test_acc=float(m[4]), stopped_by="(log only)", file=path.name,
                             from_log=True))
    return runs


def load_lra(paths: list[Path]) -> dict:
    """``{"runs": [...], "timing": {variant: row}, "notes": {...}}`` from lra_listops.py JSON
    reports, verbatim logs (``*.log``) and ``notes.json`` (reasons and code commits)."""
    out: dict = dict(runs=[], timing={}, notes={}, timing_meta=None)
    for f in paths:
        if f.name == "notes.json":
            out["notes"] = json.loads(f.read_text())
        elif f.suffix == ".log":
            out["runs"] += lra_runs_from_log(f)
        else:
            doc = json.loads(f.read_text())
            if doc.get("kind") != "bench.lra_listops":
                raise ValueError(f"{f} must be a bench/lra_listops.py report")
            for t in doc.get("timing", []):
                out["timing"][t["variant"]] = t
                out["timing_meta"] = dict(doc["meta"], file=f.name)
            for r in doc.get("runs", []):
                out["runs"].append(dict(r, file=f.name, meta=doc["meta"],
                                        settings=doc["settings"], data=doc.get("data")))
    # a log only stands in for a report that did not come back from the same device call
    have = {(r["variant"], r["file"].split("_", 1)[0]) for r in out["runs"]
            if not r.get("from_log")}
    out["runs"] = [r for r in out["runs"] if not r.get("from_log")
                   or (r["variant"], r["file"].split("_", 1)[0]) not in have]
    return out


def _primary(runs: list[dict]) -> dict:
    """The run shown for a variant: one that finished its steps, else the one with most steps."""
    return max(runs, key=lambda r: (r.get("stopped_by") == "steps", r.get("steps", 0)))


#: The classifier of runs before ``--classifier``/``--positions``/``--pad-mask`` existed.
DEFAULT_HEAD = dict(classifier="mean", positions="learned", pad_mask=False, init="torch")


def _head(run: dict) -> tuple:
    """The run's classifier settings (LRA's CLS head, positions, padding mask, init) as a key."""
    h = dict(DEFAULT_HEAD, **run.get("head", {}))
    return h["classifier"], h["positions"], bool(h["pad_mask"]), h["init"]


def _head_label(run: dict) -> str:
    c, pos, mask, init = _head(run)
    return ", ".join([("CLS + MLP head" if c == "cls" else "mean pooling"), f"{pos} positions"]
                     + (["padding mask"] if mask else []) + (["LRA init"] if init == "lra" else []))


def _lra_groups(runs: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """``(variant, label, runs)`` in LRA_ORDER, one group per classifier setting of a variant:
    the LightTransformer's own (label = the variant) first, then LRA's, labelled with it."""
    out = []
    for v in LRA_ORDER:
        heads: dict = {}
        for r in runs:
            if r["variant"] == v:
                heads.setdefault(_head(r), []).append(r)
        default = _head({})
        for h in sorted(heads, key=lambda h: (h != default, h)):
            rs = heads[h]
            out.append((v, v if h == default else f"{v} ({_head_label(rs[0])})", rs))
    return out


def _same_setting(a: dict, b: dict) -> bool:
    """Runs that differ only in the model seed (and the call that ran them)."""
    keys = ("softmax_impl", "clip_norm", "steps", "batch", "precision")
    sa, sb = a.get("settings", {}), b.get("settings", {})
    return (all(sa.get(k) == sb.get(k) for k in keys)
            and a.get("micro_batch") == b.get("micro_batch") and _head(a) == _head(b))


def _seed_runs(runs: list[dict]) -> list[dict]:
    """The primary run and every other finished run of the same setting with another seed,
    sorted by seed: these are averaged in the table."""
    p = _primary(runs)
    if p.get("stopped_by") != "steps":
        return [p]
    same = {r.get("seed"): r for r in runs
            if r.get("stopped_by") == "steps" and _same_setting(p, r)}
    return [same[k] for k in sorted(same, key=lambda s: (s is None, s))]


def _seed_mean(runs: list[dict]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one run) of the test accuracy, in %."""
    accs = [100 * r["test_acc"] for r in runs]
    m = sum(accs) / len(accs)
    sd = (sum((a - m) ** 2 for a in accs) / (len(accs) - 1)) ** 0.5 if len(accs) > 1 else 0.0
    return m, sd


def _softmax_label(settings: dict) -> str:
    """How a softmax-attention run computed attention: the module's forward or SDPA (with the
    kernel it was held to, if any)."""
    impl = settings.get("softmax_impl", "sdpa")
    backend = settings.get("sdpa_backend", "auto")
    return f"{impl} ({backend})" if impl == "sdpa" and backend != "auto" else impl


def _g(x) -> str:
    return "–" if x is None else f"{x / 1e9:.2f}"


def render_lra(lra: dict) -> list[str]:
    notes = lra["notes"]
    by: dict = {}
    for r in lra["runs"]:
        by.setdefault(r["variant"], []).append(r)
    data = next((r["data"] for r in lra["runs"] if r.get("data")), {})
    st = next((r["settings"] for r in lra["runs"] if r.get("settings")), {})
    lines = [LRA_BEGIN, "# Long Range Arena ListOps (GPU)", "",
             ("ListOps at the LRA distribution from our own generator "
              "(`sw.data.listops_lra_generate`: 500 < length < 2000 tokens, depth <= 10, 2..10 "
              f"arguments; {data.get('n_train', '?'):,} train / {data.get('n_val', '?'):,} val / "
              f"{data.get('n_test', '?'):,} test, data seed {st.get('generator', {}).get('seed')}, "
              f"mean training length {data.get('length_mean_train')} tokens; majority class of "
              f"the test split {_pct(data.get('test_majority_acc'))} %). LRA's model and budget: "
              f"{st.get('n_layers')} layers, d_model {st.get('d_model')}, {st.get('n_heads')} "
              f"heads, MLP {st.get('d_ff')}, dropout {st.get('dropout')}, batch {st.get('batch')}, "
              f"{st.get('steps')} steps, lr {st.get('lr')} with {st.get('warmup')} warm-up steps "
              "and rsqrt decay, Adam(0.9, 0.98) with weight decay "
              f"{st.get('weight_decay')}; bf16 autocast on one H200, model seed 0 unless the row "
              "gives more seeds (then their mean ± standard deviation), mean pooling "
              "over the real tokens and learned positions unless the row names LRA's "
              "classifier (`--classifier cls`: a CLS token and an MLP head), the checkpoint "
              "with the best validation accuracy tested once. "
              "Settings, sources and deviations: [docs/lra.md](lra.md). Published: Tay et al. "
              "2021 (LRA), Table 1; Nyströmformer from its own paper. MACs are analytic per "
              "sample at T = 2000 (`sw.model.count_macs`); time is the measured bf16 forward "
              "pass per sample at T = 2000, batch 32, on the H200 (full, window and "
              "random_sparse through the fused SDPA kernel, whose dense-mask kernel visits all "
              "T x T pairs, so their times barely differ)."), ""]
    rows = []
    groups = _lra_groups(lra["runs"])
    for v, label, group in groups:
        r = _primary(group)
        cp = LRA_COUNTERPART[v]
        t = lra["timing"].get(v, {})
        macs = r.get("macs") or t.get("macs") or {}
        seeds = _seed_runs(group) if r.get("test_acc") is not None else [r]
        acc = None if r.get("test_acc") is None else _seed_mean(seeds)[0]
        gap = None if cp is None or acc is None else round(acc - cp[1], 2) + 0.0  # no "-0.00"
        if len(seeds) > 1:
            m, sd = _seed_mean(seeds)
            shown = (f"{m:.2f} ± {sd:.2f} ({len(seeds)} seeds: "
                     + ", ".join(_pct(s["test_acc"]) for s in seeds) + ")")
            val = ", ".join(f"{_pct(s.get('best_val_acc'))} @ {s.get('best_step', '?')}"
                            for s in seeds)
        else:
            shown = _pct(r.get("test_acc"))
            val = f"{_pct(r.get('best_val_acc'))} @ {r.get('best_step', '?')}"
        rows.append([label, cp[0] if cp else "–", f"{cp[1]:.2f}" if cp else "–",
                     shown, "–" if gap is None else f"{gap:+.2f}", val,
                     f"{r.get('steps', '?'):,} / {st.get('steps', 5000):,}",
                     r.get("stopped_by", "?"),
                     _int(r.get("params") or t.get("params")), _g(macs.get("total")),
                     _g(macs.get("attention")),
                     "–" if "ms_per_sample" not in t else f"{t['ms_per_sample']:.3f}",
                     ", ".join(f"`{s['file']}`" for s in seeds)])
    lines += _table(["variant", "LRA counterpart", "published %", "test acc %", "vs published",
                     "best val % @ step", "steps run", "stopped by", "params", "GMACs/sample",
                     "attention GMACs", "H200 ms/sample", "run"], rows)
    others = [k for k in LRA_PUBLISHED
              if k not in {c[0] for c in LRA_COUNTERPART.values() if c}]
    lines += ["Published ListOps numbers with no counterpart here: " +
              ", ".join(f"{k} {LRA_PUBLISHED[k]:.2f}" for k in others) + ".", ""]
    reasons = notes.get("reasons", {})
    flagged = []
    for v, label, group in groups:
        r, cp = _primary(group), LRA_COUNTERPART[v]
        acc = None if r.get("test_acc") is None else _seed_mean(_seed_runs(group))[0]
        if cp and acc is not None and acc < cp[1] - 3:
            flagged.append(f"- **{label}** ({acc:.2f} vs {cp[1]:.2f}): "
                           + reasons.get(label, "no reason recorded yet."))
    if flagged:
        lines += ["More than 3 points below the published number:", ""] + flagged + [""]
    for v, text in notes.get("remarks", {}).items():
        if v in by:
            lines += [f"- {v}: {text}"]
    if notes.get("remarks"):
        lines += [""]
    lines += [("Every run (the table shows, per variant, the run that finished its steps, else "
               "the longest; finished runs of the same setting with other seeds are "
               "averaged):"), ""]
    code = notes.get("code_commits", {})
    all_rows = []
    for v in LRA_ORDER:
        for r in sorted(by.get(v, []), key=lambda r: r["file"]):
            s = r.get("settings", {})
            m = r.get("meta", {})
            all_rows.append([v, f"`{r['file']}`", r.get("seed", "–"), m.get("utc", "–"),
                             code.get(r["file"].split("_", 1)[0], m.get("commit", "–")),
                             _softmax_label(s) if v in ("full", "window", "random_sparse")
                             else "–",
                             _head_label(r),
                             str(s.get("clip_norm") or "none"), r.get("micro_batch", "–"),
                             f"{r.get('steps', '?'):,}", r.get("stopped_by", "?"),
                             r.get("skipped_steps", 0), _pct(r.get("best_val_acc")),
                             _pct(r.get("test_acc")), r.get("train_s", "–")])
    lines += _table(["variant", "run", "seed", "started (UTC)", "code", "softmax", "classifier",
                     "clip",
                     "micro-batch", "steps", "stopped by", "skipped steps", "best val %",
                     "test acc %", "train s"], all_rows)
    if notes.get("code_note"):
        lines += [notes["code_note"], ""]
    tm = lra.get("timing_meta")
    if tm:
        lines += [(f"*Timing: {tm['utc']} on `{tm['host']}` ({tm['device_name']}, torch "
                   f"{tm['torch']}), `{tm['command']}` (`{tm['file']}`).*"), ""]
    if notes.get("plot"):
        lines += [f"![ListOps accuracy vs attention cost]({notes['plot']})", ""]
    lines += [("Regenerate this section and the plot from the committed JSON (no GPU); when "
               "the whole page is rebuilt from attention-study JSON, add the same `--lra` "
               "files, or this section is left out:"), "",
              "```sh", (".venv/bin/python bench/results_table.py --lra docs/lra/* "
                        "--plot docs/lra_listops.png --out docs/results.md"), "```", "", LRA_END]
    return lines


def plot_lra(lra: dict, path: Path) -> None:
    """Test accuracy against attention MACs (analytic) and measured time per sample, T = 2000;
    published counterparts as open markers at our variant's cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, xlabel in ((axes[0], "attention", "attention (token-mixing) GMACs per sample"),
                            (axes[1], "ms", "H200 bf16 forward ms per sample")):
        for i, (v, label, group) in enumerate(_lra_groups(lra["runs"])):
            if label != v:  # one point per variant: the LightTransformer's own classifier
                continue
            r = _primary(group)
            t = lra["timing"].get(v, {})
            macs = r.get("macs") or t.get("macs") or {}
            x = macs.get("attention", 0) / 1e9 if key == "attention" else t.get("ms_per_sample")
            if x is None or r.get("test_acc") is None:
                continue
            y = _seed_mean(_seed_runs(group))[0]
            ax.scatter([x], [y], color="C0", zorder=3)
            # stagger the labels: several variants share a cost or an accuracy
            ax.annotate(f"{v} ({r.get('steps', '?')} st.)", (x, y), textcoords="offset points",
                        xytext=(6, -14 + 9 * (i % 4)), fontsize=7)
            cp = LRA_COUNTERPART[v]
            if cp:
                ax.scatter([x], [cp[1]], facecolors="none", edgecolors="C3", zorder=3)
                ax.plot([x, x], [y, cp[1]], color="0.7", lw=0.8, zorder=1)
        data = next((r["data"] for r in lra["runs"] if r.get("data")), None)
        if data:
            ax.axhline(100 * data["test_majority_acc"], color="0.5", ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("ListOps test accuracy %")
        ax.grid(alpha=0.3)
    axes[0].scatter([], [], color="C0", label="ours (this project, see steps run)")
    axes[0].scatter([], [], facecolors="none", edgecolors="C3", label="published counterpart")
    axes[0].plot([], [], color="0.5", ls="--", lw=0.8, label="majority class")
    axes[0].legend(fontsize=8, loc="center right")
    fig.suptitle("Long Range Arena ListOps, T <= 2000: accuracy vs attention cost")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def splice(page: str, lines: list[str], begin: str, end: str) -> str:
    """``page`` with its section between the markers ``begin``/``end`` replaced, or appended."""
    block = "\n".join(lines)
    if begin in page and end in page:
        a, b = page.index(begin), page.index(end) + len(end)
        return page[:a] + block + page[b:]
    return page.rstrip() + "\n\n" + block + "\n"


def splice_lra(page: str, lra_lines: list[str]) -> str:
    """``page`` with its LRA section (between the markers) replaced, or appended."""
    return splice(page, lra_lines, LRA_BEGIN, LRA_END)


# BERT path: sliding window and head pruning (bench/bert_cosine.py --study) -----------------------

BERT_BEGIN, BERT_END = "<!-- bert-study:begin -->", "<!-- bert-study:end -->"


def render_bert_study(doc: dict, source: str) -> list[str]:
    """The BERT window / head-pruning section from a ``bench.bert_window_prune`` report."""
    rows = doc["rows"]
    r0 = rows[0]
    intro = (f"Random BERT-family encoders (`sw.bert.random_bert`, gain {r0['gain']:g}, "
             f"d_ff = 4 d) on {r0['passages']} held-out `pydoc_data.topics` passages of "
             f"{r0['tokens_per_passage']:.0f} tokens on average; every cosine is to the **full** "
             "fp32 model's mean-pooled embedding. \"fp32, same restriction\" applies the window "
             "or pruning to the fp32 twin too, so the gap to the int8 columns is what int8 adds. "
             "\"Centred\" subtracts the fp32 embeddings' mean first (the part that tells passages "
             "apart). Method, caveats (random weights have no redundant heads) and how to run it: "
             "[bert.md](bert.md).")
    out = [BERT_BEGIN, "", "## Imported BERT path: sliding window and head pruning", "", intro, ""]
    out += _table(["d / heads / layers", "variant", "int8 mean cosine", "int8 centred",
                   "fp32, same restriction: mean", "fp32 centred"],
                  [[f"{r['d_model']} / {r['n_heads']} / {r['n_layers']}", r["variant"]
                    + (f" ({r['heads_pruned']} of {r['n_heads'] * r['n_layers']})"
                       if r["heads_pruned"] else ""),
                    f"{r['int8_mean_cosine']:.4f}", f"{r['int8_centred_cosine']:.3f}",
                    f"{r['fp32_mean_cosine']:.4f}", f"{r['fp32_centred_cosine']:.3f}"]
                   for r in rows])
    out += ["", (f"*From `{source}` (`python bench/bert_cosine.py --study --gains 1 --calib 128 "
                 "--held-out 32`); regenerate this section with `python bench/results_table.py "
                 f"--bert {source} --out docs/results.md`.*"), "", BERT_END]
    return out

def _splice_all(page: str, lra_lines: list[str], bert_lines: list[str]) -> str:
    """``page`` with the LRA and BERT sections that were rendered (non-empty) spliced in."""
    if lra_lines:
        page = splice_lra(page, lra_lines)
    if bert_lines:
        page = splice(page, bert_lines, BERT_BEGIN, BERT_END)
    return page


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
    p.add_argument("json", type=Path, nargs="*", help="attention_study JSON file(s)")
    p.add_argument("--out", type=Path, default=Path("docs/results.md"))
    p.add_argument("--note", default=None, help="a paragraph placed under the introduction")
    p.add_argument("--patch", type=Path, nargs="*", default=[],
                   help="JSON of re-run rows (attention_study.py --variants): rows and scaling "
                        "entries replace those with the same label in the same section")
    p.add_argument("--longer", type=Path, nargs="*", default=[],
                   help="JSON of longer (full-mode) runs, rendered in a second part")
    p.add_argument("--lra", type=Path, nargs="*", default=[],
                   help="bench/lra_listops.py JSON reports, verbatim *.log files and notes.json: "
                        "render the LRA ListOps section; without attention_study JSON, only "
                        "that section of --out is replaced (or appended)")
    p.add_argument("--plot", type=Path, default=None,
                   help="with --lra: write the accuracy-vs-cost plot (PNG) here")
    p.add_argument("--bert", type=Path, default=None, metavar="JSON",
                   help="bench/bert_cosine.py --study report: render the BERT window / pruning "
                        "section; without attention_study JSON, only that section of --out is "
                        "replaced (or appended)")
    args = p.parse_args(argv)
    if not args.json and not args.lra and args.bert is None:
        p.error("give attention_study JSON files, --lra files, --bert, or several")
    bert_lines: list[str] = []
    if args.bert is not None:
        if not args.bert.is_file():
            p.error(f"--bert file must exist, not {str(args.bert)!r}")
        try:
            doc = json.loads(args.bert.read_text())
            if doc.get("kind") != "bench.bert_window_prune" or not doc.get("rows"):
                raise ValueError("must be a bench/bert_cosine.py --study report with rows")
            bert_lines = render_bert_study(doc, args.bert.as_posix())
        except (ValueError, KeyError, TypeError) as exc:
            p.error(f"--bert {args.bert}: {exc}")
    for f in args.lra:
        if not f.is_file():
            p.error(f"--lra file must exist, not {str(f)!r}")
    if args.plot is not None and not args.lra:
        p.error("--plot needs --lra")
    lra_lines: list[str] = []
    if args.lra:
        try:
            lra = load_lra(args.lra)
        except (ValueError, KeyError, json.JSONDecodeError) as exc:
            p.error(f"--lra: {exc}")
        if not lra["runs"]:
            p.error("--lra files must hold at least one training run")
        lra_lines = render_lra(lra)
        if args.plot is not None:
            plot_lra(lra, args.plot)
            print(f"wrote {args.plot}")
    if not args.json:
        from sw.report import atomic_write_text

        if not args.out.is_file():
            p.error(f"--out must be an existing page to update, not {str(args.out)!r}")
        atomic_write_text(args.out, _splice_all(args.out.read_text(), lra_lines, bert_lines))
        print(f"wrote {args.out}")
        return 0
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

    atomic_write_text(args.out, _splice_all(render(data, args.note, longer), lra_lines,
                                            bert_lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
