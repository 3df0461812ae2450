# SPDX-License-Identifier: Apache-2.0
"""Offline data sets for the LightTransformer, each with a fixed, seeded train/val/test split.

Nothing here downloads anything:

``digits``        scikit-learn ``load_digits``: 8x8 images -> 8 tokens (rows) of 8 pixels / 16.
``mnist1d``       MNIST-1D built locally with the ``mnist1d`` package's templates and generator
                  (``make_dataset`` with its default arguments; its downloader is never called):
                  40-sample signals -> ``40 // patch_dim`` tokens of ``patch_dim`` samples.
``listops``       ListOps (Nangia & Bowman 2018), our own generator, ``seq_len`` 128..512 tokens;
                  ``lra=True``: the Long Range Arena distribution (500..2000 tokens, 96k/2k/2k).
``pydoc_lm``      char-level language modelling on ``pydoc_data.topics`` (the stdlib's help text).
``digit_copy``    seq2seq on digit strings: copy / reverse / sort (our own generator), used by
``digit_reverse`` :class:`sw.model.SeedLightTransformer`.
``digit_sort``

Only NumPy at import; scikit-learn and mnist1d are imported by the loaders that need them, so
``listops``, ``pydoc_lm`` and the digit tasks also run where only numpy + torch exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Task", "TASKS", "load_task", "listops_generate", "listops_lra_generate",
           "LRA_LISTOPS", "LISTOPS_VOCAB", "task_options"]

TASKS = ("digits", "mnist1d", "listops", "pydoc_lm", "digit_copy", "digit_reverse", "digit_sort")


@dataclass
class Task:
    """A data set with fixed splits. ``config_hints`` holds the :class:`sw.model.ModelConfig`
    fields the data determines (task, input_kind, patch_dim or vocab_size, seq_len, n_classes)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    config_hints: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def subset(self, n_train: int | None = None, n_eval: int | None = None) -> Task:
        """The first ``n_train`` training and ``n_eval`` val/test samples (for quick runs)."""
        return Task(self.name, self.x_train[:n_train], self.y_train[:n_train],
                    self.x_val[:n_eval], self.y_val[:n_eval], self.x_test[:n_eval],
                    self.y_test[:n_eval], dict(self.config_hints), dict(self.info))


def _split(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, ...]:
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * fractions[0])), int(round(n * fractions[1]))
    return perm[n_val + n_test:], perm[:n_val], perm[n_val:n_val + n_test]


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo or (
            hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be an integer {rng}, not {value!r}")
    return int(value)


def _digits(seed: int) -> Task:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)  # (N, 8, 8) float32 in [0, 1]: 8 tokens of 8 pixels
    y = d.target.astype(np.int64)
    tr, va, te = _split(len(y), (0.15, 0.15), seed)
    return Task("digits", x[tr], y[tr], x[va], y[va], x[te], y[te],
                dict(task="classify", input_kind="patches", patch_dim=8, seq_len=8, n_classes=10),
                dict(source="sklearn.datasets.load_digits", split_seed=seed))


def _mnist1d(seed: int, patch_dim: int = 4) -> Task:
    from mnist1d.data import get_dataset_args, make_dataset  # generator only, never get_dataset

    if 40 % _check_int("patch_dim", patch_dim, 1) != 0:
        raise ValueError(f"patch_dim must divide 40 (MNIST-1D signal length), not {patch_dim!r}")
    args = get_dataset_args()
    state = np.random.get_state()  # make_dataset reseeds the global NumPy RNG; leave it as it was
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(state)
    xtr = d["x"].astype(np.float32).reshape(-1, 40 // patch_dim, patch_dim)
    ytr = d["y"].astype(np.int64)
    perm = np.random.default_rng(seed).permutation(len(ytr))
    n_val = len(ytr) // 8  # 4000 train -> 3500 train + 500 val; the package's 1000 test stay test
    va, tr = perm[:n_val], perm[n_val:]
    xte = d["x_test"].astype(np.float32).reshape(-1, 40 // patch_dim, patch_dim)
    return Task("mnist1d", xtr[tr], ytr[tr], xtr[va], ytr[va], xte,
                d["y_test"].astype(np.int64),
                dict(task="classify", input_kind="patches", patch_dim=patch_dim,
                     seq_len=40 // patch_dim, n_classes=10),
                dict(source="mnist1d.data.make_dataset(get_dataset_args())", split_seed=seed,
                     generator_seed=args.seed))


# ---------------------------------------------------------------------------------------------
# ListOps
LISTOPS_OPS = ("[MAX", "[MIN", "[MED", "[SM")
LISTOPS_VOCAB = ("<pad>",) + tuple(str(i) for i in range(10)) + LISTOPS_OPS + ("]",)
_TOK = {t: i for i, t in enumerate(LISTOPS_VOCAB)}


def _listops_tree(rng: np.random.Generator, depth: int, max_depth: int, max_args: int,
                  p_leaf: float):
    if depth >= max_depth or (depth > 0 and rng.random() < p_leaf):
        return int(rng.integers(10))
    op = LISTOPS_OPS[int(rng.integers(len(LISTOPS_OPS)))]
    n = int(rng.integers(2, max_args + 1))
    return (op, [_listops_tree(rng, depth + 1, max_depth, max_args, p_leaf) for _ in range(n)])


def _listops_eval(t) -> int:
    if isinstance(t, int):
        return t
    op, args = t
    vals = [_listops_eval(a) for a in args]
    if op == "[MAX":
        return max(vals)
    if op == "[MIN":
        return min(vals)
    if op == "[MED":
        return int(np.median(vals))  # LRA's definition: int() of the median
    return sum(vals) % 10


def _listops_tokens(t, out: list[int]) -> None:
    if isinstance(t, int):
        out.append(_TOK[str(t)])
        return
    op, args = t
    out.append(_TOK[op])
    for a in args:
        _listops_tokens(a, out)
    out.append(_TOK["]"])


def listops_generate(n: int, *, seq_len: int = 128, min_len: int | None = None,
                     max_depth: int = 6, max_args: int = 5, seed: int = 0,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ListOps expressions of ``min_len..seq_len`` tokens, right-padded with 0 to ``seq_len``.

    Returns ``(x, y)``: (n, seq_len) int64 token ids (:data:`LISTOPS_VOCAB`) and (n,) int64 values
    0..9. Trees are sampled by rejection until their length falls in range; ``p_leaf`` is tuned to
    the target length so rejection stays cheap.
    """
    n = _check_int("n", n, 1)
    seq_len = _check_int("seq_len", seq_len, 8)
    min_len = seq_len // 4 if min_len is None else _check_int("min_len", min_len, 1, seq_len)
    rng = np.random.default_rng(seed)
    x = np.zeros((n, seq_len), dtype=np.int64)
    y = np.zeros(n, dtype=np.int64)
    # Expected length grows with depth and fan-out; a leaf probability that shrinks with the target
    # keeps most samples in range (measured, not derived).
    p_leaf = 0.35
    i = tries = 0
    while i < n:
        tries += 1
        if tries > 400 * n + 10_000:
            raise RuntimeError(f"ListOps generator could not reach lengths {min_len}..{seq_len} "
                               f"with max_depth={max_depth}, max_args={max_args}; raise max_depth")
        t = _listops_tree(rng, 0, max_depth, max_args, p_leaf)
        toks: list[int] = []
        _listops_tokens(t, toks)
        if not min_len <= len(toks) <= seq_len:
            # steer p_leaf towards the window
            p_leaf = min(0.9, p_leaf + 0.002) if len(toks) > seq_len else max(0.05, p_leaf - 0.002)
            continue
        x[i, :len(toks)] = toks
        y[i] = _listops_eval(t)
        i += 1
    return x, y


# ---------------------------------------------------------------------------------------------
# ListOps at Long Range Arena settings
#: LRA's ListOps distribution (google-research/long-range-arena, lra_benchmarks/data/listops.py,
#: flag defaults): 96,000 / 2,000 / 2,000 samples, depth <= 10, 2..10 arguments per operator,
#: lengths strictly between 500 and 2000 tokens, an operator node with probability 0.25.
LRA_LISTOPS = dict(n_train=96_000, n_val=2_000, n_test=2_000, min_len=500, max_len=2000,
                   max_depth=10, max_args=10, p_op=0.25)
#: Accepted samples per seeded chunk: the unit of parallel work, so the output does not depend on
#: the number of worker processes.
_LRA_CHUNK = 500
_OPEN = tuple(_TOK[o] for o in LISTOPS_OPS)
_END = _TOK["]"]


class _TooLong(Exception):
    pass


def _lra_tree(rnd, depth: int, max_depth: int, max_args: int, p_op: float, out: list[int],
              limit: int) -> int:
    """One LRA ListOps node appended to ``out`` as token ids; returns its value.

    LRA's ``generate_tree``: below ``max_depth`` a node is an operator with probability ``p_op``
    (``r <= VALUE_P``), else a digit 0..9; an operator has ``randint(2, max_args)`` children and a
    uniformly drawn operator. Raises :class:`_TooLong` as soon as ``out`` reaches ``limit`` tokens
    (such a tree would be rejected anyway; stopping early only saves time).
    """
    if depth < max_depth and rnd.random() <= p_op:
        at = len(out)
        out.append(0)  # the operator token, drawn after the children (LRA's order)
        vals = [_lra_tree(rnd, depth + 1, max_depth, max_args, p_op, out, limit)
                for _ in range(rnd.randint(2, max_args))]
        k = rnd.randrange(4)
        out[at] = _OPEN[k]
        out.append(_END)
        if len(out) >= limit:
            raise _TooLong
        if k == 0:
            return max(vals)
        if k == 1:
            return min(vals)
        if k == 2:  # int(np.median(vals)): the mean of the two middle values, truncated
            vals.sort()
            m = len(vals) // 2
            return vals[m] if len(vals) % 2 else (vals[m - 1] + vals[m]) // 2
        return sum(vals) % 10
    out.append(_TOK[str(rnd.randrange(10))])
    if len(out) >= limit:
        raise _TooLong
    return out[-1] - _TOK["0"]


def _lra_raw_tree(rnd, max_depth: int, max_args: int, p_op: float,
                  limit: int = 1 << 62) -> tuple[list[int], int] | None:
    """One unconditioned LRA tree (root at depth 1, as LRA calls ``generate_tree(1, ...)``):
    ``(tokens, value)``, or ``None`` when it reaches ``limit`` tokens."""
    out: list[int] = []
    try:
        value = _lra_tree(rnd, 1, max_depth, max_args, p_op, out, limit)
    except _TooLong:
        return None
    return out, value


def _lra_chunk(job: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Worker: ``count`` accepted samples of chunk ``index`` -> (tokens uint8 (count, max_len),
    lengths int16, values int64, trees drawn)."""
    import random

    seed, index, count, min_len, max_len, max_depth, max_args, p_op = job
    rnd = random.Random(int(np.random.SeedSequence([seed, index]).generate_state(1)[0]))
    x = np.zeros((count, max_len), dtype=np.uint8)
    lengths = np.zeros(count, dtype=np.int16)
    y = np.zeros(count, dtype=np.int64)
    i = drawn = 0
    while i < count:
        drawn += 1
        t = _lra_raw_tree(rnd, max_depth, max_args, p_op, limit=max_len)
        if t is None or len(t[0]) <= min_len:  # LRA keeps min_len < length < max_len
            continue
        x[i, :len(t[0])] = t[0]
        lengths[i], y[i] = len(t[0]), t[1]
        i += 1
    return x, lengths, y, drawn


def listops_lra_generate(n: int, *, seed: int = 0, min_len: int = LRA_LISTOPS["min_len"],
                         max_len: int = LRA_LISTOPS["max_len"],
                         max_depth: int = LRA_LISTOPS["max_depth"],
                         max_args: int = LRA_LISTOPS["max_args"], workers: int | None = None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` distinct ListOps samples drawn from the Long Range Arena distribution.

    Same process as LRA's ``lra_benchmarks/data/listops.py``: unconditioned random trees (see
    :func:`_lra_tree`) kept when ``min_len < length < max_len`` tokens, duplicates dropped. Tokens
    are :data:`LISTOPS_VOCAB` ids: digits, the operator (LRA's ``[MAX`` etc.) and ``]``; LRA's
    parentheses are dropped by its own input pipeline before tokenising, so they are never made.

    Returns ``(x, lengths, y)``: (n, max_len) uint8 token ids right-padded with 0 (uint8 keeps
    96,000 x 2000 tokens at 192 MB), (n,) int16 lengths and (n,) int64 values 0..9. The result
    depends only on the arguments, not on ``workers``: samples come in seeded chunks of
    ``_LRA_CHUNK``, chunk ``i`` seeded by ``SeedSequence([seed, i])``. ``workers`` > 1 spreads the
    chunks over that many processes (default: ``os.cpu_count()`` when ``n`` > 2 chunks).
    """
    import os

    n = _check_int("n", n, 1)
    _check_int("seed", seed, 0)
    max_len = _check_int("max_len", max_len, 3)
    min_len = _check_int("min_len", min_len, 0, max_len - 2)
    max_depth = _check_int("max_depth", max_depth, 2)
    max_args = _check_int("max_args", max_args, 2)
    if len(LISTOPS_VOCAB) > 256:
        raise AssertionError("uint8 tokens need a vocabulary of at most 256")
    if workers is None:
        workers = (os.cpu_count() or 1) if n > 2 * _LRA_CHUNK else 1
    workers = _check_int("workers", workers, 1)
    p_op = LRA_LISTOPS["p_op"]
    parts: list[tuple] = []
    seen: set[bytes] = set()
    have = index = 0
    pool = None
    try:
        while have < n:
            # a few spare chunks cover duplicates (vanishingly rare at LRA lengths)
            want = -(-(n - have) // _LRA_CHUNK) + (1 if index else 0)
            jobs = [(seed, index + j, _LRA_CHUNK, min_len, max_len, max_depth, max_args, p_op)
                    for j in range(want)]
            index += want
            if workers > 1 and len(jobs) > 1:
                if pool is None:
                    import multiprocessing
                    from concurrent.futures import ProcessPoolExecutor

                    pool = ProcessPoolExecutor(min(workers, len(jobs)),
                                               mp_context=multiprocessing.get_context("spawn"))
                results = list(pool.map(_lra_chunk, jobs))
            else:
                results = [_lra_chunk(j) for j in jobs]
            for x, lengths, y, _ in results:
                keep = []
                for i in range(len(y)):
                    key = x[i, :lengths[i]].tobytes()
                    if key not in seen and have + len(keep) < n:
                        seen.add(key)
                        keep.append(i)
                parts.append((x[keep], lengths[keep], y[keep]))
                have += len(keep)
    finally:
        if pool is not None:
            pool.shutdown()
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def _listops(seed: int, seq_len: int | None = None, n_train: int | None = None,
             n_eval: int | None = None, max_depth: int | None = None, lra: bool = False,
             workers: int | None = None) -> Task:
    if lra:
        return _listops_lra(seed, seq_len, n_train, n_eval, max_depth, workers)
    if workers is not None:
        raise ValueError("workers applies to lra=True only")
    seq_len = _check_int("seq_len", 128 if seq_len is None else seq_len, 16, 4096)
    n_train = 4000 if n_train is None else n_train
    n_eval = 500 if n_eval is None else n_eval
    depth = max_depth if max_depth is not None else (6 if seq_len <= 256 else 8)
    gen = dict(seq_len=seq_len, max_depth=depth, max_args=5)
    xtr, ytr = listops_generate(n_train, seed=seed * 3 + 0, **gen)
    xva, yva = listops_generate(n_eval, seed=seed * 3 + 1, **gen)
    xte, yte = listops_generate(n_eval, seed=seed * 3 + 2, **gen)
    return Task("listops", xtr, ytr, xva, yva, xte, yte,
                dict(task="classify", input_kind="tokens", vocab_size=len(LISTOPS_VOCAB),
                     seq_len=seq_len, n_classes=10),
                dict(source="sw.data.listops_generate", generator=gen, split_seed=seed))


def _listops_lra(seed: int, seq_len: int | None, n_train: int | None, n_eval: int | None,
                 max_depth: int | None, workers: int | None) -> Task:
    """LRA ListOps: one pool of distinct samples from :func:`listops_lra_generate`, split in order
    into train / val / test (LRA splits its de-duplicated set the same way)."""
    lra = LRA_LISTOPS
    seq_len = _check_int("seq_len", lra["max_len"] if seq_len is None else seq_len, 16, 4096)
    n_train = _check_int("n_train", lra["n_train"] if n_train is None else n_train, 1)
    n_eval = _check_int("n_eval", lra["n_val"] if n_eval is None else n_eval, 1)
    gen = dict(min_len=lra["min_len"] if seq_len == lra["max_len"] else seq_len // 4,
               max_len=seq_len, max_depth=lra["max_depth"] if max_depth is None else max_depth,
               max_args=lra["max_args"])
    x, _, y = listops_lra_generate(n_train + 2 * n_eval, seed=seed, workers=workers, **gen)
    s = slice(0, n_train), slice(n_train, n_train + n_eval), slice(n_train + n_eval, None)
    return Task("listops", x[s[0]], y[s[0]], x[s[1]], y[s[1]], x[s[2]], y[s[2]],
                dict(task="classify", input_kind="tokens", vocab_size=len(LISTOPS_VOCAB),
                     seq_len=seq_len, n_classes=10),
                dict(source="sw.data.listops_lra_generate (Long Range Arena distribution)",
                     generator=dict(gen, p_op=lra["p_op"]), split_seed=seed,
                     token_dtype="uint8"))


# ---------------------------------------------------------------------------------------------
# char-level LM on the stdlib's pydoc topics
def _pydoc_lm(seed: int, seq_len: int = 64, max_chars: int | None = 400_000) -> Task:
    from pydoc_data.topics import topics  # part of CPython's stdlib

    seq_len = _check_int("seq_len", seq_len, 2)
    text = "\n".join(topics[k] for k in sorted(topics))
    if max_chars is not None:
        text = text[:max_chars]
    # printable ASCII + newline; anything else maps to '?'
    chars = ["\n"] + [chr(c) for c in range(32, 127)]
    idx = {c: i for i, c in enumerate(chars)}
    unk = idx["?"]
    ids = np.fromiter((idx.get(c, unk) for c in text), dtype=np.int64, count=len(text))
    n_win = (len(ids) - 1) // seq_len
    starts = np.arange(n_win) * seq_len
    x = np.stack([ids[s:s + seq_len] for s in starts])  # (N, T) int64
    y = np.stack([ids[s + 1:s + seq_len + 1] for s in starts])  # (N, T) int64: next char
    # contiguous blocks (90/5/5) so that val/test text never overlaps training windows
    n_va = n_te = max(1, n_win // 20)
    n_tr = n_win - n_va - n_te
    del seed  # the split is positional and fixed
    return Task("pydoc_lm", x[:n_tr], y[:n_tr], x[n_tr:n_tr + n_va], y[n_tr:n_tr + n_va],
                x[n_tr + n_va:], y[n_tr + n_va:],
                dict(task="lm", input_kind="tokens", vocab_size=len(chars), seq_len=seq_len,
                     n_classes=len(chars), causal=True),
                dict(source="pydoc_data.topics", chars=len(text), alphabet="".join(chars)))


# ---------------------------------------------------------------------------------------------
# digit-string seq2seq (copy / reverse / sort)
DIGIT_BOS = 10


def _digit_seq2seq(kind: str, seed: int, length: int = 8, n_train: int = 8000,
                   n_eval: int = 1000) -> Task:
    length = _check_int("length", length, 1, 64)
    rng = np.random.default_rng(seed)
    n = n_train + 2 * n_eval
    x = rng.integers(0, 10, size=(2 * n + 64, length), dtype=np.int64)
    # drop duplicate strings so that no test string is in training
    _, first = np.unique(x, axis=0, return_index=True)
    x = x[np.sort(first)][:n]
    if len(x) < n:
        raise ValueError(f"length must be large enough for {n} distinct strings, not {length!r}")
    if kind == "copy":
        y = x.copy()
    elif kind == "reverse":
        y = x[:, ::-1].copy()
    else:
        y = np.sort(x, axis=1)
    s = slice(0, n_train), slice(n_train, n_train + n_eval), slice(n_train + n_eval, n)
    return Task(f"digit_{kind}", x[s[0]], y[s[0]], x[s[1]], y[s[1]], x[s[2]], y[s[2]],
                dict(task="seq2seq", input_kind="tokens", vocab_size=11, seq_len=length,
                     n_classes=11, bos=DIGIT_BOS),
                dict(source="sw.data (our generator)", split_seed=seed))


def load_task(name: str, *, seed: int = 0, **options) -> Task:
    """Load one of :data:`TASKS` with a fixed split seeded by ``seed``.

    ``options``: mnist1d ``patch_dim`` (divides 40, default 4); listops ``seq_len`` (default 128),
    ``n_train``, ``n_eval``, ``max_depth``, ``lra`` (True: :func:`listops_lra_generate`'s Long
    Range Arena distribution; seq_len 2000, 96,000 train and 2,000 val/test samples by default,
    uint8 tokens) and ``workers`` (lra only: generator processes); pydoc_lm ``seq_len``
    (default 64), ``max_chars``; digit_* ``length`` (default 8), ``n_train``, ``n_eval``.
    """
    if name not in TASKS:
        raise ValueError(f"task name must be one of {TASKS}, not {name!r}")
    _check_int("seed", seed, 0)
    try:
        if name == "digits":
            if options:
                raise TypeError(f"digits takes no options, not {sorted(options)!r}")
            return _digits(seed)
        if name == "mnist1d":
            return _mnist1d(seed, **options)
        if name == "listops":
            return _listops(seed, **options)
        if name == "pydoc_lm":
            return _pydoc_lm(seed, **options)
        return _digit_seq2seq(name.split("_", 1)[1], seed, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc) or "takes no options" in str(exc):
            raise ValueError(f"options for {name!r} must be among those in load_task's "
                             f"docstring: {exc}") from None
        raise


def task_options(task: str, config: dict) -> dict:
    """The :func:`load_task` options that rebuild the data a model of ``config`` (a
    ``sw.model.ModelConfig`` dict) was trained on: its ``patch_dim`` or ``seq_len``."""
    if task == "mnist1d":
        return {"patch_dim": int(config["patch_dim"])}
    if task in ("listops", "pydoc_lm"):
        return {"seq_len": int(config["seq_len"])}
    return {}
