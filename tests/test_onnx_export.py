# SPDX-License-Identifier: Apache-2.0
"""ONNX export of the integer linear layers, cross-checked with onnxruntime bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from sw import compile as comp  # noqa: E402
from sw.artifact import load_artifact  # noqa: E402
from sw.model import LightTransformer, ModelConfig  # noqa: E402
from sw.ref import gemm_acc, gemm_requant  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    cfg = ModelConfig(task="classify", input_kind="patches", patch_dim=8, seq_len=8,
                      n_classes=10, d_model=16, n_heads=2, n_layers=2, d_ff=32,
                      attention="window", window=4, causal=True)
    model = LightTransformer(cfg)
    for p in model.parameters():                      # spread weights and biases
        p.data.add_(0.3 * torch.randn_like(p))
    calib = np.random.default_rng(0).random((64, 8, 8)).astype(np.float32)
    art = load_artifact(comp.export_artifact(model, cfg, calib, d / "m", task="digits",
                                             accuracy_fp32=None, eval_data=False))
    path = comp.export_onnx_linears(art, d / "linears.onnx")
    return art, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), path


def _inputs(art, rng):
    feeds = {}
    for name in comp._linear_names(art.config):
        k = art.arrays[name + ".w"].shape[0]
        x = rng.integers(-128, 128, (37, k)).astype(np.int8)
        x[0], x[1], x[2] = -128, 127, 0                    # extremes: saturation both ways
        feeds[name + ".x"] = x
    return feeds


def test_onnx_graph_is_integer_only(exported):
    import onnx
    _, _, path = exported
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" in ops and not ops & {"QuantizeLinear", "DequantizeLinear", "Div",
                                                 "Round"}
    assert all(t.data_type != onnx.TensorProto.FLOAT for t in model.graph.initializer)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_onnxruntime_matches_gemm_acc_and_requant(exported, seed):
    art, sess, _ = exported
    feeds = _inputs(art, np.random.default_rng(seed))
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(names, feeds)))
    saturated = 0
    for name in comp._linear_names(art.config):
        a = art.arrays
        x = feeds[name + ".x"]
        acc = outs[name + ".acc"]
        assert acc.dtype == np.int32
        np.testing.assert_array_equal(acc, gemm_acc(x, a[name + ".w"], a[name + ".b"]))
        y = outs[name + ".y"]
        assert y.dtype == np.int8
        np.testing.assert_array_equal(
            y, gemm_requant(x, a[name + ".w"], a[name + ".b"], a[name + ".mult"],
                            a[name + ".shift"]))
        saturated += int(np.sum(np.abs(y.astype(int)) >= 127))
    assert saturated > 0                                   # the clip path was exercised
