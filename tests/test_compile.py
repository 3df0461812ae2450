# SPDX-License-Identifier: Apache-2.0
"""``sw.qat`` (the float mirror, PTQ calibration, QAT) and ``sw.compile`` (export and
``lightformer compile``)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sw import compile as comp  # noqa: E402
from sw import qat  # noqa: E402
from sw.artifact import load_artifact  # noqa: E402
from sw.model import LightTransformer, ModelConfig  # noqa: E402
from sw.ref import model_forward_int, quantize_input  # noqa: E402

PATCH = dict(task="classify", input_kind="patches", patch_dim=8, seq_len=8, n_classes=10,
             d_model=16, n_heads=2, n_layers=2, d_ff=32, attention="window", window=4,
             causal=True)


@pytest.fixture(scope="module")
def digits():
    from sw.data import load_task
    return load_task("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A tiny windowed model trained briefly on 400 digits (~5 s)."""
    from sw.train import train
    model, hist = train(ModelConfig(**PATCH), digits.subset(400, 200), epochs=3, lr=1e-2,
                        seed=0, progress=False)
    return model, hist


@pytest.mark.parametrize("cfg", [
    PATCH,
    dict(PATCH, attention="full", causal=False),
    dict(PATCH, attention="window", window=3, causal=False),
    dict(task="lm", input_kind="tokens", vocab_size=11, seq_len=6, n_classes=11, d_model=8,
         n_heads=2, n_layers=1, d_ff=16, attention="full", causal=True),
])
def test_forward_quant_off_is_the_float_model(cfg):
    torch.manual_seed(0)
    model = LightTransformer(ModelConfig(**cfg)).eval()
    for p in model.parameters():                      # break the init's symmetry (zero biases)
        p.data.add_(0.1 * torch.randn_like(p))
    x = (torch.randint(0, 11, (3, cfg["seq_len"])) if cfg["input_kind"] == "tokens"
         else torch.rand(3, cfg["seq_len"], cfg["patch_dim"]))
    with torch.no_grad():
        torch.testing.assert_close(qat.forward_quant(model, x, None), model(x), rtol=0, atol=0)


def test_activation_points_cover_the_model():
    pts = qat.activation_points(ModelConfig(**PATCH))
    assert pts[:3] == ["input", "embed", "x0"] and pts[-2:] == ["ln_f", "pool"]
    assert len(pts) == 3 + 12 * 2 + 2


def test_calibrate_percentile_clips_below_max(trained, digits):
    model, _ = trained
    qmax = qat.calibrate(model, digits.x_train[:200], method="max")
    qpct = qat.calibrate(model, digits.x_train[:200], method="percentile", percentile=99.0)
    for name in qmax.points:
        assert qpct.amax[name] <= qmax.amax[name] + 1e-12
        if name.endswith(("x0", "x1", "x2")):
            assert qpct.amax[name] == qmax.amax[name]
    assert qpct.amax["blocks.0.fc1"] < qmax.amax["blocks.0.fc1"]


def test_ptq_integer_model_tracks_float_model(trained, digits, tmp_path):
    model, hist = trained
    x, y = digits.x_test[:200], digits.y_test[:200]
    path = comp.export_artifact(model, model.cfg, digits.x_train[:256], tmp_path / "m",
                                task="digits", accuracy_fp32=hist["test_acc"],
                                eval_data=(x, y))
    a = load_artifact(path)
    logits = model_forward_int(a, quantize_input(a, x))                     # (200, 10) int32
    assert logits.dtype == np.int32
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()                            # (200, 10) float32
    real = logits * a.scales["logits"]
    assert np.mean(np.argmax(real, -1) == np.argmax(ref, -1)) >= 0.95
    assert np.abs(real - ref).mean() < 0.1 * np.abs(ref).mean()
    assert a.manifest["accuracy_int8"] == np.mean(np.argmax(logits, -1) == y)
    assert a.manifest["eval_samples"] == 200 and a.manifest["method"] == "ptq"


def test_fake_quant_forward_tracks_integer_model(trained, digits):
    """The fake-quant torch forward (QAT) rounds where the integer model rounds."""
    model, _ = trained
    qs = qat.calibrate(model, digits.x_train[:256])
    arrays, scales = comp.build_arrays(model, qs.scales())
    from sw.artifact import Artifact
    a = Artifact(manifest={"config": model.cfg.to_dict(), "scales": scales}, arrays=arrays,
                 path=None)
    x = digits.x_test[:100]
    qs.mode, qs.fake_weights = "fake", True
    with torch.no_grad():
        fq = qat.forward_quant(model, torch.from_numpy(x), qs).numpy()
    real = model_forward_int(a, quantize_input(a, x)) * scales["logits"]
    assert np.mean(np.argmax(real, -1) == np.argmax(fq, -1)) >= 0.97
    assert np.abs(real - fq).mean() < 0.05 * np.abs(fq).mean()


def test_prepare_qat_keeps_modules_and_trains(digits, tmp_path):
    torch.manual_seed(0)
    model = LightTransformer(ModelConfig(**PATCH))
    keys = list(model.state_dict())
    names = [n for n, _ in model.named_modules()]
    model = qat.prepare_qat(model, digits.x_train[:128])
    assert list(model.state_dict()) == keys and [n for n, _ in model.named_modules()] == names
    model.train()
    xb = torch.from_numpy(digits.x_train[:64])
    loss = torch.nn.functional.cross_entropy(model(xb), torch.from_numpy(digits.y_train[:64]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0   # STE passes grads
    before = dict(model.quant_state.amax)
    model.eval()
    with torch.no_grad():
        model(xb * 3)                                  # eval: scales frozen
    assert model.quant_state.amax == before
    path = comp.export_artifact(model, model.cfg, digits.x_train[:64], tmp_path / "q",
                                task="digits", accuracy_fp32=None, method="qat",
                                eval_data=(digits.x_test[:50], digits.y_test[:50]))
    a = load_artifact(path)
    assert a.manifest["method"] == "qat" and a.scales["input"] == model.quant_state.scale("input")


def test_qat_training_through_sw_train(digits):
    from sw.train import train
    model, hist = train(ModelConfig(**PATCH), digits.subset(256, 100), epochs=1, seed=0,
                        qat=True, progress=False)
    assert hasattr(model, "quant_state") and hist["qat"] is True


def test_export_rejects_what_the_integer_model_cannot_run(tmp_path):
    model = LightTransformer(ModelConfig(**dict(PATCH, attention="performer")))
    with pytest.raises(ValueError, match="supports attention full or window, not 'performer'"):
        comp.export_artifact(model, model.cfg, np.zeros((4, 8, 8), np.float32), tmp_path / "m",
                             task="digits", accuracy_fp32=None, eval_data=False)
    model = LightTransformer(ModelConfig(**PATCH))
    with pytest.raises(ValueError, match="method must be 'ptq' or 'qat'"):
        comp.export_artifact(model, model.cfg, np.zeros((4, 8, 8), np.float32), tmp_path / "m",
                             task="digits", accuracy_fp32=None, method="fp16")
    with pytest.raises(ValueError, match="prepare_qat"):
        comp.export_artifact(model, model.cfg, np.zeros((4, 8, 8), np.float32), tmp_path / "m",
                             task="digits", accuracy_fp32=None, method="qat")


def test_compile_cli(trained, tmp_path, capsys):
    from sw.checkpoint import save_model
    from sw.cli import main
    model, _ = trained
    ckpt = save_model(model, tmp_path / "run" / "model.pt")
    rc = main(["compile", str(ckpt.parent), "--task", "digits", "--calib-samples", "128",
               "--out", str(tmp_path / "art" / "m"), "--onnx", str(tmp_path / "m.onnx"),
               "--json", "-"])
    assert rc == 0
    cap = capsys.readouterr()
    assert "fits" in cap.err and "int8" in cap.err and (tmp_path / "m.onnx").is_file()
    a = load_artifact(tmp_path / "art" / "m")
    assert a.manifest["calibration_samples"] == 128 and a.manifest["eval_samples"] == 270
    rep = json.loads(cap.out)
    assert rep["kind"] == "compile" and rep["schema_version"] == 1
    assert rep["artifact"] == str(tmp_path / "art" / "m.safetensors") == str(a.path)
    assert rep["artifact_bytes"] == a.path.stat().st_size and rep["digest"] == a.digest
    assert rep["accuracy_int8"] == a.manifest["accuracy_int8"] and rep["eval_samples"] == 270
    assert rep["onnx"] == str(tmp_path / "m.onnx") and rep["method"] == "ptq"
    with pytest.raises(SystemExit, match="checkpoint must be a model.pt"):
        main(["compile", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(SystemExit, match="lightformer compile: checkpoint must be a "
                       "lightformer-torch-1 file .* cannot be read"):
        main(["compile", str(tmp_path / "junk.pt"), "--task", "digits",
              "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):                           # refused while parsing
        main(["compile", str(ckpt), "--out", str(tmp_path)])
    assert "artifact path must name a file" in capsys.readouterr().err


def test_compile_refuses_a_log_of_another_model(trained, tmp_path):
    from sw.checkpoint import save_model
    from sw.cli import main
    from sw.train import write_log
    model, hist = trained
    ckpt = save_model(model, tmp_path / "model.pt")
    write_log(dict(hist), tmp_path / "train_log.json", ckpt)
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["model_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    save_model(LightTransformer(ModelConfig(**PATCH)), ckpt)     # a newer model, the old log
    with pytest.raises(SystemExit, match="train_log.json describes another model.pt"):
        main(["compile", str(tmp_path), "--out", str(tmp_path / "m")])


@pytest.mark.parametrize("cfg", [
    dict(task="lm", input_kind="tokens", vocab_size=13, seq_len=12, n_classes=13, d_model=16,
         n_heads=2, n_layers=2, d_ff=32, attention="full", causal=True),
    dict(PATCH, attention="full", causal=False),
    dict(PATCH, attention="window", window=3, causal=False),
])
def test_integer_model_tracks_fake_quant_model(cfg, tmp_path):
    """Token LM, full and centred attention: the integer model equals the fake-quant forward
    up to the integer softmax / LayerNorm rounding."""
    torch.manual_seed(1)
    model = LightTransformer(ModelConfig(**cfg)).eval()
    for p in model.parameters():
        p.data.add_(0.2 * torch.randn_like(p))
    rng = np.random.default_rng(0)
    if cfg["input_kind"] == "tokens":
        x = rng.integers(0, cfg["vocab_size"], (64, cfg["seq_len"]))
    else:
        x = rng.random((64, cfg["seq_len"], cfg["patch_dim"])).astype(np.float32)
    a = load_artifact(comp.export_artifact(model, model.cfg, x[:32], tmp_path / "m",
                                           task="digits", accuracy_fp32=None, eval_data=False))
    qs = qat.calibrate(model, x[:32])
    qs.mode, qs.fake_weights = "fake", True
    with torch.no_grad():
        fq = qat.forward_quant(model, torch.from_numpy(x), qs).numpy()
    real = model_forward_int(a, quantize_input(a, x)) * a.scales["logits"]
    assert real.shape == fq.shape
    assert np.abs(real - fq).mean() < 0.05 * np.abs(fq).mean()
    assert np.mean(np.argmax(real, -1) == np.argmax(fq, -1)) >= 0.9


def test_compile_cli_qat(trained, tmp_path, monkeypatch):
    import sw.data
    from sw.checkpoint import save_model
    from sw.cli import main
    load_task = sw.data.load_task
    monkeypatch.setattr(sw.data, "load_task",                   # fine-tune on 256 images only
                        lambda *a, **k: load_task(*a, **k).subset(256, 100))
    model, _ = trained
    ckpt = save_model(model, tmp_path / "run" / "model.pt")
    assert main(["compile", str(ckpt), "--task", "digits", "--qat-epochs", "1", "--no-progress",
                 "--out", str(tmp_path / "q")]) == 0
    m = load_artifact(tmp_path / "q").manifest
    assert m["method"] == "qat" and m["qat"]["epochs"] == 1 and m["calibration"] is None
    assert 0.0 <= m["accuracy_int8"] <= 1.0
    with pytest.raises(SystemExit, match="--qat-epochs must be >= 0"):
        main(["compile", str(ckpt), "--task", "digits", "--qat-epochs", "-1",
              "--out", str(tmp_path / "x")])
