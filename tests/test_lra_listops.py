# SPDX-License-Identifier: Apache-2.0
"""The Long Range Arena ListOps generator (``sw.data.listops_lra_generate``) against LRA's own
process, and smoke runs of ``bench/lra_listops.py`` and its results renderer (seconds, CPU)."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sw import data  # noqa: E402

OPS = {data.LISTOPS_VOCAB.index(o): o for o in data.LISTOPS_OPS}
END = data.LISTOPS_VOCAB.index("]")


def _lra_reference(rnd: random.Random, depth: int, max_depth: int, max_args: int):
    """LRA's ``generate_tree`` + ``to_value`` (lra_benchmarks/data/listops.py), rewritten here
    without the nested-tuple form: returns (length, value)."""
    r = rnd.random() if depth < max_depth else 1
    if r > 0.25:
        return 1, rnd.choice(range(10))
    length, vals = 2, []
    for _ in range(rnd.randint(2, max_args)):
        sub_l, sub_v = _lra_reference(rnd, depth + 1, max_depth, max_args)
        length += sub_l
        vals.append(sub_v)
    op = rnd.choice(["[MIN", "[MAX", "[MED", "[SM"])
    value = {"[MIN": min(vals), "[MAX": max(vals), "[MED": int(np.median(vals)),
             "[SM": int(np.sum(vals) % 10)}[op]
    return length, value


def _evaluate(tokens) -> tuple[int, int, int]:
    """Independent stack evaluation of a token sequence -> (value, max depth, max arguments)."""
    stack: list[tuple[str, list[int]]] = []
    depth = max_args = 0
    result = None
    for t in tokens:
        t = int(t)
        if t in OPS:
            stack.append((OPS[t], []))
            depth = max(depth, len(stack))
        elif t == END:
            op, vals = stack.pop()
            max_args = max(max_args, len(vals))
            v = {"[MIN": min, "[MAX": max}.get(op)
            v = v(vals) if v else (int(np.median(vals)) if op == "[MED" else sum(vals) % 10)
            if stack:
                stack[-1][1].append(v)
            else:
                result = v
        else:
            d = int(data.LISTOPS_VOCAB[t])
            if stack:
                stack[-1][1].append(d)
            else:
                result = d
    assert not stack
    return result, depth, max_args


def test_lra_constants_are_lras():
    assert data.LRA_LISTOPS == dict(n_train=96_000, n_val=2_000, n_test=2_000, min_len=500,
                                    max_len=2000, max_depth=10, max_args=10, p_op=0.25)


def test_raw_trees_follow_lras_distribution():
    # unconditioned trees (before the length window), max_depth 6 to keep it fast
    n = 4000
    rnd = random.Random(1)
    ref = np.array([_lra_reference(rnd, 1, 6, 10) for _ in range(n)])
    rnd = random.Random(2)
    ours = []
    for _ in range(n):
        toks, value = data._lra_raw_tree(rnd, 6, 10, 0.25)
        ours.append((len(toks), value))
    ours = np.array(ours)
    # a root is a digit with probability 0.75
    assert abs((ours[:, 0] == 1).mean() - 0.75) < 0.03
    assert abs((ref[:, 0] == 1).mean() - (ours[:, 0] == 1).mean()) < 0.04
    # two-sample Kolmogorov-Smirnov distance of the lengths and of the values
    for col in (0, 1):
        grid = np.union1d(ref[:, col], ours[:, col])
        cdf = lambda a, g=grid: np.searchsorted(np.sort(a), g, side="right") / len(a)  # noqa: E731
        assert np.abs(cdf(ref[:, col]) - cdf(ours[:, col])).max() < 0.05


def test_generated_samples_are_in_range_and_labelled_right():
    x, lengths, y = data.listops_lra_generate(60, seed=3, min_len=40, max_len=160)
    assert x.shape == (60, 160) and x.dtype == np.uint8
    assert lengths.dtype == np.int16 and y.dtype == np.int64
    assert ((lengths > 40) & (lengths < 160)).all()  # LRA: min_len < length < max_len
    assert ((x != 0).sum(1) == lengths).all()
    assert len({row.tobytes() for row in x}) == 60  # distinct
    for row, n, label in zip(x, lengths, y):
        assert (row[n:] == 0).all() and row[0] in OPS and row[n - 1] == END
        value, depth, max_args = _evaluate(row[:n])
        assert value == label
        assert depth <= 9 and 2 <= max_args <= 10  # operators sit at depth 1..max_depth - 1


def test_generation_is_reproducible_and_independent_of_workers():
    a = data.listops_lra_generate(30, seed=5, min_len=20, max_len=80)
    b = data.listops_lra_generate(30, seed=5, min_len=20, max_len=80)
    c = data.listops_lra_generate(30, seed=6, min_len=20, max_len=80)
    assert all((u == v).all() for u, v in zip(a, b))
    assert not (a[0] == c[0]).all()
    n = data._LRA_CHUNK + 20  # two chunks: the parallel path
    one = data.listops_lra_generate(n, seed=7, min_len=5, max_len=40, workers=1)
    two = data.listops_lra_generate(n, seed=7, min_len=5, max_len=40, workers=2)
    assert all((u == v).all() for u, v in zip(one, two))


def test_load_task_lra_and_old_api():
    t = data.load_task("listops", seed=1, lra=True, n_train=20, n_eval=5, seq_len=128)
    assert t.x_train.shape == (20, 128) and t.x_val.shape == t.x_test.shape == (5, 128)
    assert t.config_hints["seq_len"] == 128 and t.info["generator"]["p_op"] == 0.25
    rows = {r.tobytes() for r in np.concatenate([t.x_train, t.x_val, t.x_test])}
    assert len(rows) == 30  # splits are disjoint
    old = data.load_task("listops", seed=0, n_train=8, n_eval=4, seq_len=32)
    assert old.x_train.shape == (8, 32) and old.x_train.dtype == np.int64
    with pytest.raises(ValueError, match="workers"):
        data.load_task("listops", seed=0, n_train=8, n_eval=4, workers=2)
    with pytest.raises(ValueError, match="max_len"):
        data.listops_lra_generate(4, max_len=2)


def test_sw_data_stays_torch_free():
    import ast

    tree = ast.parse((ROOT / "sw" / "data.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module}
    assert "torch" not in names


def test_training_script_smoke_and_render(tmp_path):
    pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    import lra_listops
    import results_table

    out = tmp_path / "lra.json"
    assert lra_listops.main(["--smoke", "--variants", "full,conv", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "bench.lra_listops" and doc["settings"]["smoke"]
    assert [r["variant"] for r in doc["runs"]] == ["full", "conv"]
    for r in doc["runs"]:
        assert r["status"] == "done" and r["steps"] == 3 and 0 <= r["test_acc"] <= 1
        assert r["test_evaluations"] == 1 and r["curve"]
    page = tmp_path / "results.md"
    page.write_text("# Results\n")
    png = tmp_path / "lra.png"
    assert results_table.main(["--lra", str(out), "--plot", str(png), "--out", str(page)]) == 0
    text = page.read_text()
    assert text.count(results_table.LRA_BEGIN) == 1 and "| full | Transformer | 36.37 |" in text
    assert png.stat().st_size > 1000
    assert results_table.main(["--lra", str(out), "--out", str(page)]) == 0  # replaced, not added
    assert page.read_text().count(results_table.LRA_BEGIN) == 1


def test_script_rejects_bad_arguments_before_work(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import lra_listops

    for argv in (["--variants", "nope"], ["--make-data"], ["--steps", "0"],
                 ["--json", str(tmp_path)], ["--smoke", "--data-cache", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            lra_listops.parse_args(argv)
        assert exc.value.code == 2


def test_render_averages_finished_seeds_of_one_setting():
    sys.path.insert(0, str(ROOT / "bench"))
    import results_table

    st = dict(softmax_impl="module", clip_norm=1.0, steps=5000, batch=32, precision="bf16")

    def run(seed, acc, steps=5000, stop="steps", **kw):
        return dict(variant="full", seed=seed, test_acc=acc, best_val_acc=0.37, best_step=250,
                    steps=steps, stopped_by=stop, micro_batch=16, file=f"c{seed}_full.json",
                    settings=dict(st, **kw), meta={},
                    data=dict(n_train=96000, n_val=2000, n_test=2000, test_majority_acc=0.173))

    runs = [run(2, 0.362), run(0, 0.3615), run(1, 0.3625),
            run(0, 0.3095, steps=1961, stop="non-finite loss"),  # unfinished: not averaged
            run(3, 0.40, softmax_impl="sdpa")]                   # another setting: not averaged
    seeds = results_table._seed_runs(runs)
    assert [r["seed"] for r in seeds] == [0, 1, 2]
    mean, sd = results_table._seed_mean(seeds)
    assert mean == pytest.approx(36.20) and sd == pytest.approx(0.05)
    lines = results_table.render_lra(dict(runs=runs, timing={}, notes={}, timing_meta=None))
    row = next(ln for ln in lines if ln.startswith("| full |"))
    assert "36.20 ± 0.05 (3 seeds: 36.15, 36.25, 36.20)" in row and "| -0.17 |" in row
    assert sum(ln.startswith("| full | `c") for ln in lines) == 5   # every run still listed


def test_lra_classifier_ignores_padding_and_trains(tmp_path):
    """--classifier cls --positions sinusoidal --pad-mask: with padding keys masked, a row's
    logits do not depend on how much padding follows it (eval mode); without the mask they do,
    so the check can fail. Then the options run through the training script."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    import lra_listops

    torch.manual_seed(0)
    n_checked = 0
    for pad_mask in (True, False):
        argv = ["--smoke", "--classifier", "cls", "--positions", "sinusoidal"]
        args = lra_listops.parse_args(argv + (["--pad-mask"] if pad_mask else []))
        _, model, _ = lra_listops.build_model("full", args, torch.device("cpu"))
        assert model.cls is not None and model.pos.shape == (args.seq_len + 1, args.d_model)
        assert "pos" not in dict(model.base.named_parameters())  # the fixed table replaced it
        model.eval()
        x = torch.randint(1, 10, (3, 40))
        x[1, 25:] = 0  # row 1 is 25 real tokens + padding
        with torch.no_grad():
            a = lra_listops.logits_of(model, x)
            b = lra_listops.logits_of(model, x[:, :30])  # less padding after the same rows
        diff = float((a[1] - b[1]).abs().max())
        if pad_mask:
            torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)
        else:
            assert diff > 1e-4, diff
        n_checked += 1
    assert n_checked == 2
    pe = lra_listops.sinusoidal_positions(5, 4)
    torch.testing.assert_close(pe[3], torch.tensor([math.sin(3), math.cos(3),
                                                    math.sin(3 / 100), math.cos(3 / 100)]))
    out = tmp_path / "lra_cls.json"
    assert lra_listops.main(["--smoke", "--variants", "full", "--classifier", "cls",
                             "--positions", "sinusoidal", "--pad-mask",
                             "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    run = doc["runs"][0]
    assert run["status"] == "done" and run["steps"] == 3
    assert run["head"] == dict(classifier="cls", positions="sinusoidal", pad_mask=True,
                               init="torch")
    assert doc["settings"]["classifier"] == "cls" and doc["settings"]["pad_mask"]
    for argv in (["--pad-mask", "--softmax-impl", "sdpa"], ["--classifier", "max"]):
        with pytest.raises(SystemExit):
            lra_listops.parse_args(argv)
    with pytest.raises(lra_listops.UsageError, match="softmax attention only"):
        lra_listops.build_model("conv", lra_listops.parse_args(["--smoke", "--pad-mask"]),
                                torch.device("cpu"))


def test_lra_init_matches_lras_initialisers():
    """--init lra: embedding N(0, 1), each of q/k/v and the other block kernels Xavier-uniform
    (bound sqrt(6 / (fan_in + fan_out)) on the d x d or d x d_ff matrix), tiny biases, the
    CLS head LeCun-normal; the torch default stays the LightTransformer's N(0, 0.02)."""
    torch = pytest.importorskip("torch")
    sys.path.insert(0, str(ROOT / "bench"))
    import lra_listops

    argv = ["--smoke", "--classifier", "cls", "--positions", "sinusoidal", "--pad-mask"]
    _, plain, _ = lra_listops.build_model("full", lra_listops.parse_args(argv),
                                          torch.device("cpu"))
    args = lra_listops.parse_args(argv + ["--init", "lra"])
    _, model, _ = lra_listops.build_model("full", args, torch.device("cpu"))
    assert float(plain.base.embed.weight.detach().std()) < 0.05
    assert 0.8 < float(model.base.embed.weight.detach().std()) < 1.2
    d, f = args.d_model, args.d_ff
    n_checked = 0
    for blk in model.base.blocks:
        for w in blk.attn.qkv.weight.detach().split(d, dim=0):
            bound = math.sqrt(6 / (d + d))
            assert float(w.abs().max()) <= bound and float(w.abs().max()) > 0.8 * bound
            n_checked += 1
        for lin, bound in ((blk.ffn.fc1, math.sqrt(6 / (d + f))),
                           (blk.ffn.fc2, math.sqrt(6 / (d + f))),
                           (blk.attn.proj, math.sqrt(6 / (d + d)))):
            assert float(lin.weight.detach().abs().max()) <= bound
            assert float(lin.bias.detach().abs().max()) < 1e-4
            n_checked += 1
    first = model.base.head[0]
    std = 1 / math.sqrt(d) / 0.87962566103423978
    assert float(first.weight.detach().abs().max()) <= 2 * std
    assert float(first.bias.detach().abs().max()) == 0
    assert n_checked == 6 * args.n_layers
    assert lra_listops.lra_head_settings(args)["init"] == "lra"
