# SPDX-License-Identifier: Apache-2.0
"""sw.train: a tiny training run, its log, determinism, distillation, pruning flow, checkpoints,
the seq2seq seed model and the ``lightformer train`` command (tiny configs, seconds each)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sw.checkpoint import load_model, save_model  # noqa: E402
from sw.data import Task, load_task  # noqa: E402
from sw.model import LightTransformer, ModelConfig  # noqa: E402
from sw.train import (  # noqa: E402
    config_from_task,
    evaluate_fp32,
    kd_loss,
    prune_and_finetune,
    train,
    train_seq2seq,
)

TINY = dict(d_model=16, n_heads=2, n_layers=1, d_ff=32, attention="window", window=4)


@pytest.fixture(scope="module")
def digits():
    pytest.importorskip("sklearn")
    return load_task("digits").subset(400, 200)


def test_train_digits_one_epoch_writes_log(digits, tmp_path):
    cfg = config_from_task(digits, **TINY)
    model, hist = train(cfg, digits, epochs=2, lr=5e-3, batch_size=32, seed=0,
                        log_path=tmp_path / "log.json", checkpoint_path=tmp_path / "m.pt",
                        progress=False)
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["config"]["attention"] == "window" and log["seed"] == 0
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "time_s"} <= set(
        log["epochs"][0])
    assert log["epochs"][1]["train_loss"] < log["epochs"][0]["train_loss"]
    assert hist["test_acc"] > 0.2  # 10 classes: chance is 0.1
    assert hist["val_acc"] == max(e["val_acc"] for e in log["epochs"])  # best-on-val restored
    re = load_model(tmp_path / "m.pt")
    assert evaluate_fp32(re, digits.x_test, digits.y_test) == hist["test_acc"]


def test_train_is_deterministic(digits):
    cfg = config_from_task(digits, **TINY)
    small = digits.subset(128, 64)
    _, h1 = train(cfg, small, epochs=1, batch_size=32, seed=3, progress=False)
    _, h2 = train(cfg, small, epochs=1, batch_size=32, seed=3, progress=False)
    assert h1["epochs"][0]["train_loss"] == h2["epochs"][0]["train_loss"]
    assert h1["test_acc"] == h2["test_acc"]


def test_shortened_recipe_twice_gives_bit_identical_tensors(tmp_path, capsys):
    """The documented digits command cut to one epoch, run twice: every tensor of the checkpoint
    and of the int8 artifact is the same bit for bit (the slow test below runs all 40 epochs
    against the shipped file; this one keeps a nondeterministic kernel or an unseeded shuffle
    from reaching ``make test`` unnoticed, ~10 s)."""
    pytest.importorskip("sklearn")
    from sw.artifact import load_artifact
    from sw.cli import main

    runs = []
    for i in range(2):
        out = tmp_path / f"run{i}"
        assert main(["train", "--task", "digits", "--attention", "window", "--window", "4",
                     "--causal", "--epochs", "1", "--seed", "0", "--out", str(out),
                     "--artifact", str(out / "digits_int8"), "--no-progress"]) == 0
        runs.append((load_model(out / "model.pt").state_dict(), load_artifact(out / "digits_int8")))
    capsys.readouterr()
    (s1, a1), (s2, a2) = runs
    assert list(s1) == list(s2) and len(s1) > 10
    for name, t in s1.items():
        u = s2[name]
        assert t.dtype == u.dtype and t.shape == u.shape, name
        assert t.detach().numpy().tobytes() == u.detach().numpy().tobytes(), name
    assert set(a1.arrays) == set(a2.arrays)
    for name, arr in a1.arrays.items():
        assert arr.dtype == a2.arrays[name].dtype and arr.tobytes() == a2.arrays[name].tobytes()
    assert a1.scales == a2.scales and a1.model_id == a2.model_id


def test_kd_loss_terms():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5, requires_grad=True), torch.randn(6, 5)
    y = torch.randint(0, 5, (6,))
    ce = torch.nn.functional.cross_entropy(s, y)
    torch.testing.assert_close(kd_loss(s, t, y, 2.0, 0.0), ce)
    assert float(kd_loss(s, s.detach(), y, 3.0, 1.0).detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(s, t, y, 2.0, 1.0).detach()) > 0
    kd_loss(s, t, y, 2.0, 0.5).backward()
    assert s.grad is not None
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, y, 0.0, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        kd_loss(s, t, y, 1.0, 1.5)


def test_train_with_teacher_and_pruning_flow(digits):
    small = digits.subset(200, 100)
    teacher, _ = train(config_from_task(small, **dict(TINY, d_model=32, d_ff=64)), small,
                       epochs=1, seed=0, progress=False)
    student_cfg = config_from_task(small, **dict(TINY, n_heads=4))
    student, hist = train(student_cfg, small, epochs=1, seed=0, teacher=teacher,
                          kd_temperature=3.0, kd_alpha=0.7, progress=False)
    assert hist["kd"] == dict(temperature=3.0, alpha=0.7)
    p0 = hist["params"]
    pruned, ph = prune_and_finetune(student, small, keep_heads=2, ffn_keep_ratio=0.5,
                                    importance="taylor", epochs=1, progress=False)
    assert pruned.cfg.layer_heads == (2,) and pruned.cfg.layer_d_ff == (16,)
    assert ph["params"] < p0 and 0 <= ph["test_acc_after_prune"] <= 1
    # fine-tuning keeps the best validation weights, the pruned start included
    assert ph["val_acc"] >= ph["acc_after_prune"]


def test_train_lm_and_errors(tmp_path):
    t = load_task("pydoc_lm", seq_len=16, max_chars=20_000).subset(64, 16)
    cfg = config_from_task(t, **dict(TINY, attention="window"))
    model, hist = train(cfg, t, epochs=1, batch_size=16, progress=False)
    assert 0 <= hist["test_acc"] <= 1 and cfg.causal
    p = save_model(model, tmp_path / "lm.pt")
    assert load_model(p).cfg == cfg
    with pytest.raises(ValueError, match="epochs must be"):
        train(cfg, t, epochs=-1)
    with pytest.raises(ValueError, match="device must be"):
        train(cfg, t, epochs=1, device="tpu")
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(Exception, match="."):
        load_model(tmp_path / "bad.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="lightformer-torch-1"):
        load_model(tmp_path / "other.pt")


def test_train_seq2seq_seed_model():
    t = load_task("digit_copy", length=4, n_train=256, n_eval=32)
    model, hist = train_seq2seq(t, epochs=1, batch_size=64, d_model=16, nhead=2,
                                num_encoder_layers=1, num_decoder_layers=1,
                                dim_feedforward=32, progress=False)
    assert 0 <= hist["test"]["seq_acc"] <= hist["test"]["token_acc"] <= 1
    assert hist["params"] > 0


def test_train_cli(tmp_path, capsys):
    pytest.importorskip("sklearn")
    from sw.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--task", "digits", "--epochs", "1", "--d-model", "16", "--d-ff", "16",
               "--n-layers", "1", "--prune-ffn", "0.5", "--finetune-epochs", "1",
               "--out", str(out), "--no-progress", "--json", str(tmp_path / "train.json")])
    assert rc == 0
    assert "val" in capsys.readouterr().out
    sha = hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    for name in ("train_log.json", "prune_log.json"):             # both vouch for this model
        assert json.loads((out / name).read_text())["model_sha256"] == sha
    rep = json.loads((tmp_path / "train.json").read_text())
    assert rep["kind"] == "train" and rep["schema_version"] == 1 and rep["epochs"] == 1
    assert rep["model"] == str(out / "model.pt") and rep["log"] == str(out / "train_log.json")
    assert rep["pruned"]["ffn_keep_ratio"] == 0.5 and rep["artifact"] is None
    assert 0 <= rep["test_acc"] <= 1 and rep["best_epoch"] == 1
    with pytest.raises(SystemExit, match="n_heads must divide"):
        main(["train", "--task", "digits", "--n-heads", "3", "--out", str(out), "--no-progress"])


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be >= 1, not 0"),
    (["--batch-size", "-1"], "--batch-size must be >= 1"),
    (["--lr", "0"], "--lr and --kd-temperature must be > 0"),
    (["--prune-ffn", "1.5"], "--prune-ffn must be in \\(0, 1\\]"),
    (["--teacher", "no/such/model.pt"], "--teacher 'no/such/model.pt' is not a file"),
])
def test_train_cli_checks_arguments_before_training(argv, message, monkeypatch, tmp_path):
    import sw.data
    from sw.cli import main

    monkeypatch.setattr(sw.data, "load_task", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit, match=message):
        main(["train", *argv, "--out", str(tmp_path), "--no-progress"])


def test_train_cli_checks_output_paths_first(monkeypatch, tmp_path, capsys):
    import sw.data
    from sw.cli import main

    monkeypatch.setattr(sw.data, "load_task", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match="--out .*is a file"):
        main(["train", "--out", str(tmp_path / "file" / "run")])
    for option in ("--artifact", "--json"):                  # refused while parsing (exit 2)
        with pytest.raises(SystemExit) as exc:
            main(["train", option, str(tmp_path), "--out", str(tmp_path / "run")])
        assert exc.value.code == 2 and "must" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "--attention", "bogus"])
    assert exc.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_train_help_names_every_default_and_choice():
    from sw.cli import build_parser
    from sw.model import ATTENTIONS

    parser = build_parser("train")
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    options = {a.dest: a for a in train_parser._actions if a.option_strings}
    checked = 0
    for dest, action in options.items():
        if action.nargs == 0:                                   # flags: --causal, --qat, -h
            continue
        assert "default" in (action.help or ""), f"--{dest} help names no default"
        checked += 1
    assert checked == 24                                        # every valued option
    assert tuple(options["attention"].choices) == ATTENTIONS
    assert "digits" in options["task"].choices


def test_evaluate_fp32_checks_inputs():
    m = LightTransformer(ModelConfig(patch_dim=2, seq_len=4, d_model=8, n_heads=2, d_ff=8))
    x = np.zeros((3, 4, 2), np.float32)
    with pytest.raises(ValueError, match="same length"):
        evaluate_fp32(m, x, np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="NumPy arrays"):
        evaluate_fp32(m, [1], np.zeros(1, np.int64))
    with torch.no_grad():  # a head that always says class 7
        m.head.weight.zero_()
        m.head.bias.copy_(torch.arange(10.0) == 7)
    t = Task("x", x, np.zeros(3, np.int64), x, np.zeros(3, np.int64), x,
             np.array([7, 7, 1], np.int64))
    assert evaluate_fp32(m, t.x_test, t.y_test) == pytest.approx(2 / 3)


@pytest.mark.slow
def test_documented_command_rebuilds_the_shipped_artifact(tmp_path):
    """docs/artifact.md's command (minutes of CPU): the same tensors, scales and model_id."""
    pytest.importorskip("sklearn")
    from sw.artifact import default_artifact_path, load_artifact
    from sw.cli import main

    assert main(["train", "--task", "digits", "--attention", "window", "--window", "4",
                 "--causal", "--epochs", "40", "--seed", "0", "--out", str(tmp_path / "train"),
                 "--artifact", str(tmp_path / "digits_int8"), "--no-progress"]) == 0
    new, shipped = load_artifact(tmp_path / "digits_int8"), load_artifact(default_artifact_path())
    assert set(new.arrays) == set(shipped.arrays)
    for name, a in shipped.arrays.items():
        np.testing.assert_array_equal(new.arrays[name], a, err_msg=name)
    assert new.scales == shipped.scales and new.digest == shipped.digest
    assert new.model_id == shipped.model_id              # config, task, accuracies too
