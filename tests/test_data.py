# SPDX-License-Identifier: Apache-2.0
"""sw.data: offline loaders, shapes, determinism, disjoint splits, ListOps semantics."""

from __future__ import annotations

import numpy as np
import pytest

from sw.data import LISTOPS_VOCAB, TASKS, listops_generate, load_task
from sw.data import _listops_eval as listops_eval


def _rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in a.reshape(len(a), -1)}


def _check_splits(t, dtype):
    for x, y in ((t.x_train, t.y_train), (t.x_val, t.y_val), (t.x_test, t.y_test)):
        assert len(x) == len(y) > 0
        assert x.dtype == dtype
        assert y.dtype == np.int64
    tr, va, te = _rows(t.x_train), _rows(t.x_val), _rows(t.x_test)
    assert not tr & va and not tr & te and not va & te


def test_data_digits_shapes_and_split():
    pytest.importorskip("sklearn")
    t = load_task("digits")
    assert t.x_train.shape[1:] == (8, 8) and len(t.x_train) + len(t.x_val) + len(t.x_test) == 1797
    assert t.x_train.min() >= 0 and t.x_train.max() <= 1
    assert t.config_hints == dict(task="classify", input_kind="patches", patch_dim=8, seq_len=8,
                                  n_classes=10)
    _check_splits(t, np.float32)
    t2 = load_task("digits")
    np.testing.assert_array_equal(t.x_test, t2.x_test)
    t3 = load_task("digits", seed=1)
    assert not np.array_equal(t.y_test, t3.y_test)


def test_data_mnist1d_generated_locally(tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")
    monkeypatch.chdir(tmp_path)  # the package's cache pickle would land here if ever written
    state = np.random.get_state()
    t = load_task("mnist1d", patch_dim=5)
    assert list(tmp_path.iterdir()) == []  # no download, no cache file
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global RNG untouched
    assert t.x_train.shape == (3500, 8, 5) and t.x_val.shape == (500, 8, 5)
    assert t.x_test.shape == (1000, 8, 5)
    assert t.config_hints["seq_len"] == 8
    _check_splits(t, np.float32)
    assert set(np.unique(t.y_train)) == set(range(10))
    np.testing.assert_array_equal(load_task("mnist1d", patch_dim=5).x_val, t.x_val)
    with pytest.raises(ValueError, match="patch_dim must divide 40"):
        load_task("mnist1d", patch_dim=3)


def test_data_listops_semantics():
    assert listops_eval(("[MAX", [2, ("[MIN", [9, 4]), 3])) == 4
    assert listops_eval(("[SM", [7, 8, ("[MED", [1, 5, 9, 2])])) == (7 + 8 + 3) % 10
    x, y = listops_generate(50, seq_len=64, seed=3)
    assert x.shape == (50, 64) and x.dtype == np.int64 and y.shape == (50,)
    lengths = (x > 0).sum(1)
    assert lengths.min() >= 16 and lengths.max() <= 64
    assert x.max() < len(LISTOPS_VOCAB) and 0 <= y.min() and y.max() <= 9
    # every sequence is a well-formed expression: brackets balance, ends with ']'
    opens = np.isin(x, [LISTOPS_VOCAB.index(o) for o in ("[MAX", "[MIN", "[MED", "[SM")]).sum(1)
    closes = (x == LISTOPS_VOCAB.index("]")).sum(1)
    np.testing.assert_array_equal(opens, closes)
    x2, y2 = listops_generate(50, seq_len=64, seed=3)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_data_listops_task():
    t = load_task("listops", seq_len=128, n_train=60, n_eval=20)
    assert t.x_train.shape == (60, 128)
    assert t.config_hints["vocab_size"] == len(LISTOPS_VOCAB)
    _check_splits(t, np.int64)


def test_data_pydoc_lm():
    t = load_task("pydoc_lm", seq_len=32, max_chars=50_000)
    assert t.x_train.shape[1] == 32 and t.y_train.shape == t.x_train.shape
    # y is x shifted by one character
    np.testing.assert_array_equal(t.x_train[0, 1:], t.y_train[0, :-1])
    assert t.config_hints["task"] == "lm" and t.config_hints["causal"]
    assert t.x_train.max() < t.config_hints["vocab_size"]
    _check_splits(t, np.int64)


@pytest.mark.parametrize("name", ["digit_copy", "digit_reverse", "digit_sort"])
def test_data_digit_seq2seq(name):
    t = load_task(name, n_train=300, n_eval=50)
    assert t.x_train.shape == (300, 8) and t.y_val.shape == (50, 8)
    _check_splits(t, np.int64)
    ref = {"digit_copy": lambda a: a, "digit_reverse": lambda a: a[:, ::-1],
           "digit_sort": lambda a: np.sort(a, 1)}[name]
    np.testing.assert_array_equal(t.y_test, ref(t.x_test))


def test_data_errors():
    with pytest.raises(ValueError, match="task name must be one of"):
        load_task("imagenet")
    with pytest.raises(ValueError, match="options for 'listops'"):
        load_task("listops", colour=3)
    with pytest.raises(ValueError, match="seed must be"):
        load_task("listops", seed=-1)
    assert "digits" in TASKS
