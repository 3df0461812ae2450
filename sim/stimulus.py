# SPDX-License-Identifier: Apache-2.0
"""Jobs for the vector and LayerNorm units, shared by the ``amaranth.sim`` tests
(``tests/test_hw_vector.py``, ``tests/test_hw_layernorm.py``) and the cocotb benches
(``sim/tb_vector.py``, ``sim/tb_layernorm.py``), with their expected outputs from ``sw.ref``.

No cocotb here: the tier-1 tests import this module without the ``sim`` extra.

A vector job is ``{"cfg": {"op": VecOp, "table", "mult0", "mult1", "shift"}, "a": (n, cols),
"b": (n, cols), "kind"}``; a LayerNorm job is ``{"x": (rows, d), "gamma", "beta", "mult",
"shift": (d,), "eps", "kind"}`` (int64 arrays holding int8 / int32 values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hw.vector import VecOp
from sw import quant, ref

__all__ = ["MULT_MAX", "ln_corner_jobs", "ln_expected", "ln_job", "ln_random_job",
           "vec_corner_jobs", "vec_expected", "vec_job", "vec_outputs", "vec_random_job",
           "vec_tables"]

MULT_MAX = (1 << quant.MULT_BITS) - 1


# -- vector unit ---------------------------------------------------------------------------------

def vec_job(op: VecOp, a: Any, b: Any = None, *, table: int = 0, mult0: int = 0, mult1: int = 0,
            shift: int = 1, kind: str = "random") -> dict[str, Any]:
    a = np.asarray(a, dtype=np.int64)
    b = np.zeros_like(a) if b is None else np.asarray(b, dtype=np.int64)
    return {"cfg": {"op": op, "table": table, "mult0": int(mult0), "mult1": int(mult1),
                    "shift": int(shift)}, "a": a, "b": b, "kind": kind}


def vec_outputs(job: dict[str, Any]) -> int:
    """Output beats of a job: one per input beat, one per ``POOL`` job."""
    return 1 if job["cfg"]["op"] == VecOp.POOL else len(job["a"])


def vec_expected(job: dict[str, Any], tables: np.ndarray) -> np.ndarray:
    """The job's output beats ``(vec_outputs(job), cols)`` (int64) from ``sw.ref``."""
    c = job["cfg"]
    a, b = job["a"], job["b"]
    if c["op"] == VecOp.ADD:
        y = ref.residual_add(a.astype(np.int8), b.astype(np.int8),
                             np.array([c["mult0"], c["mult1"]]), c["shift"])
    elif c["op"] == VecOp.LUT:
        y = ref.lut_apply(a.astype(np.int8), np.asarray(tables[c["table"]], np.int8))
    elif c["op"] == VecOp.POOL:
        y = ref.mean_pool_int(a.astype(np.int8), c["mult0"], c["shift"])[None]
    else:
        y = a
    return np.asarray(y, dtype=np.int64)


def vec_tables(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` activation tables: a GELU table first, random int8 tables after it."""
    tables = rng.integers(-128, 128, (count, ref.LUT_SIZE)).astype(np.int8)
    tables[0] = ref.build_gelu_lut(0.05, 0.04)
    return tables


def vec_random_job(rng: np.random.Generator, cols: int, lut_count: int, *,
                   max_beats: int = 8) -> dict[str, Any]:
    """A job of a random op, 1..``max_beats`` beats, realistic or raw corner constants."""
    op = VecOp(int(rng.integers(0, 4)))
    n = int(rng.integers(1, max_beats + 1))
    if op == VecOp.PASS:
        return vec_job(op, rng.integers(quant.ACC_MIN, quant.ACC_MAX, (n, cols), endpoint=True))
    a = rng.integers(-128, 128, (n, cols))
    if op == VecOp.ADD:
        mult, shift = ref.residual_params(*2.0 ** rng.uniform(-4, 2, 3))
        if rng.random() < 0.2:                                # raw corner pairs
            mult = rng.choice([0, 1, MULT_MAX, int(rng.integers(0, MULT_MAX))], 2)
            shift = int(rng.choice([1, 47, int(rng.integers(1, 48))]))
        return vec_job(op, a, rng.integers(-128, 128, (n, cols)), mult0=mult[0], mult1=mult[1],
                       shift=shift)
    if op == VecOp.LUT:
        return vec_job(op, a, table=int(rng.integers(0, lut_count)))
    if rng.random() < 0.8:
        mult, shift = quant.quantize_multiplier(2.0 ** rng.uniform(-3, 1) / n)
    else:
        mult, shift = int(rng.integers(0, MULT_MAX + 1)), int(rng.integers(1, 48))
    return vec_job(op, a, mult0=mult, shift=shift)


def vec_corner_jobs(cols: int, lut_count: int) -> list[dict[str, Any]]:
    """Saturation, -128, ties, every address of every table, pool extremes, int32 ends."""
    full = np.full
    lanes = np.arange(cols)
    tie = np.where(lanes % 2 == 0, 1, -1)                       # +-0.5 with shift 1
    odd = tie * (2 * (lanes // 2 % 3) + 1)                       # +-1, +-3, +-5: x.5 ties
    jobs = [
        vec_job(VecOp.ADD, full((1, cols), 127), full((1, cols), 127), mult0=MULT_MAX,
                mult1=MULT_MAX, shift=1, kind="sat"),
        vec_job(VecOp.ADD, full((1, cols), -128), full((1, cols), -128), mult0=MULT_MAX,
                mult1=MULT_MAX, shift=1, kind="sat"),
        vec_job(VecOp.ADD, [0 * odd], [odd], mult1=1, shift=1, kind="ties"),
        vec_job(VecOp.ADD, [3 * tie], [0 * tie], mult0=1 << 14, shift=15, kind="ties"),
        vec_job(VecOp.ADD, full((2, cols), -128), full((2, cols), 127), mult0=MULT_MAX,
                mult1=MULT_MAX, shift=47, kind="shift47"),
        vec_job(VecOp.POOL, full((7, cols), -128), mult0=18725, shift=17, kind="pool_min"),
        vec_job(VecOp.POOL, full((16, cols), 127), mult0=MULT_MAX, shift=1, kind="pool_sat"),
        vec_job(VecOp.POOL, [tie], mult0=1, shift=1, kind="pool_tie"),
        vec_job(VecOp.POOL, full((1, cols), -128), mult0=MULT_MAX, shift=47, kind="pool_t1"),
        vec_job(VecOp.PASS, [np.where(lanes % 2 == 0, quant.ACC_MIN, quant.ACC_MAX)],
                kind="int32"),
    ]
    every = np.arange(-128, 128 + (-256) % cols).clip(max=127).reshape(-1, cols)
    jobs += [vec_job(VecOp.LUT, every, table=t, kind="lut_all") for t in range(lut_count)]
    return jobs


# -- LayerNorm unit ------------------------------------------------------------------------------

def ln_job(x: Any, gamma: Any, beta: Any, mult: Any, shift: Any, eps: int,
           kind: str = "random") -> dict[str, Any]:
    x = np.asarray(x, dtype=np.int64)
    d = x.shape[1]

    def per_channel(v: Any) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, np.int64), (d,))

    return {"x": x, "gamma": per_channel(gamma), "beta": per_channel(beta),
            "mult": per_channel(mult), "shift": per_channel(shift), "eps": int(eps),
            "kind": kind}


def ln_expected(job: dict[str, Any]) -> np.ndarray:
    """``sw.ref.layernorm_int`` of the job's rows, ``(rows, d)`` int64."""
    return ref.layernorm_int(job["x"].astype(np.int8), job["gamma"].astype(np.int8),
                             job["beta"].astype(np.int32), job["mult"], job["shift"],
                             job["eps"]).astype(np.int64)


def ln_random_job(rng: np.random.Generator, d: int, rows: int) -> dict[str, Any]:
    """``rows`` rows of width ``d``: uniform, a small spread around an offset, or constant with
    outliers; random affine constants, output requant and epsilon (0, 1, any legal, real)."""
    style = rng.random()
    if style < 0.6:
        x = rng.integers(-128, 128, (rows, d))
    elif style < 0.8:
        x = np.clip(rng.integers(-3, 4, (rows, d)) + rng.integers(-120, 120), -128, 127)
    else:
        x = np.full((rows, d), int(rng.integers(-128, 128)))
        x[rng.random((rows, d)) < 0.1] = rng.choice([-128, 127])
    pairs = [quant.quantize_multiplier(2.0 ** rng.uniform(-16, -4)) for _ in range(d)]
    eps = int(rng.choice([0, 1, int(rng.integers(0, d ** 4 << 16, endpoint=True)),
                          ref.layernorm_eps_q(d, 1e-5, 0.05)]))
    return ln_job(x, rng.integers(-128, 128, d), rng.integers(-(1 << 24), 1 << 24, d),
                  [p[0] for p in pairs], [p[1] for p in pairs], eps)


def ln_corner_jobs(max_dim: int) -> list[dict[str, Any]]:
    """``d = 1``, constant rows (``S = 0``), extreme spreads at ``d = max_dim``, the largest
    epsilon, saturation both ways and requant ties."""
    d = max_dim
    outlier = [[127] + [-128] * (d - 1), [-128] + [127] * (d - 1)]
    half = [[127] * (d // 2) + [-128] * (d - d // 2)]
    return [
        ln_job([[5], [-128], [127]], 7, -300, 1 << 14, 15, 0, "d1"),
        ln_job(np.full((2, 7), -128), 3, np.arange(7) * 1000, 1 << 14, 20, 0, "constant"),
        ln_job(np.full((1, 9), 127), -128, 0, MULT_MAX, 1, 1, "constant"),
        ln_job(outlier, 127, 0, MULT_MAX, 12, 0, "max_d"),
        ln_job(half, -128, (1 << 31) - (1 << 23), 1 << 14, 24, 1, "max_d"),
        ln_job(outlier, 1, 0, 1 << 14, 10, d ** 4 << 16, "max_eps"),
        ln_job([[1, -1, 2, -2, 3]], [127, -128, 127, -128, 1], 0, MULT_MAX, 1, 5 ** 4 << 16,
               "max_eps"),
        ln_job([[100, -100, 50, 0, 1]], [127, -128, 127, -128, 1], 0, MULT_MAX, 1, 0,
               "saturate"),
        ln_job([[3, -3, 0, 0]], 0, [1, -1, 3, -3], 1, 1, 0, "ties"),
    ]
