# SPDX-License-Identifier: Apache-2.0
"""Integer reference model (NumPy). The hardware must equal these functions bit for bit.

Every function validates its inputs, widens to int64 before arithmetic and returns the
narrowest exact dtype. Numerics are defined in :mod:`sw.quant`.
"""

from __future__ import annotations

import numpy as np

from sw import quant

__all__ = ["gemm_acc", "gemm_requant"]


def _check_int_array(name: str, x: np.ndarray, dtype: type, ndim: int) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must be a {np.dtype(dtype).name} array, not {x.dtype.name}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), not shape {x.shape}")
    return x


def gemm_acc(a_q: np.ndarray, w_q: np.ndarray, bias_q: np.ndarray | None = None) -> np.ndarray:
    """int8 ``(M, K)`` x int8 ``(K, N)`` (+ int32 ``(N,)`` bias) -> int32 ``(M, N)``.

    ``OverflowError`` if any sum leaves int32 (the hardware accumulator is 32 bits wide).
    """
    a_q = _check_int_array("a_q", a_q, np.int8, 2)
    w_q = _check_int_array("w_q", w_q, np.int8, 2)
    if a_q.shape[1] != w_q.shape[0]:
        raise ValueError(f"inner dimensions differ: a_q is {a_q.shape}, w_q is {w_q.shape}")
    if a_q.shape[1] == 0:
        raise ValueError("K must be at least 1")
    acc = a_q.astype(np.int64) @ w_q.astype(np.int64)                   # (M, N) int64
    if bias_q is not None:
        bias_q = _check_int_array("bias_q", bias_q, np.int32, 1)
        if bias_q.shape[0] != w_q.shape[1]:
            raise ValueError(f"bias_q must have N={w_q.shape[1]} entries, not {bias_q.shape[0]}")
        acc = acc + bias_q.astype(np.int64)[None, :]
    if np.any(acc < quant.ACC_MIN) or np.any(acc > quant.ACC_MAX):
        raise OverflowError("GEMM accumulator overflows int32; reduce K or the bias magnitude")
    return acc.astype(np.int32)


def gemm_requant(a_q: np.ndarray, w_q: np.ndarray, bias_q: np.ndarray, mult: np.ndarray,
                 shift: np.ndarray) -> np.ndarray:
    """int8 ``(M, K)`` x int8 ``(K, N)`` + int32 bias ``(N,)`` -> int8 ``(M, N)``.

    Requantized per output channel with ``(mult[n], shift[n])`` by :func:`sw.quant.requantize`.
    """
    acc = gemm_acc(a_q, w_q, bias_q)                                      # (M, N) int32
    n = acc.shape[1]
    mult = np.broadcast_to(np.asarray(mult, dtype=np.int64), (n,))
    shift = np.broadcast_to(np.asarray(shift, dtype=np.int64), (n,))
    return quant.requantize(acc, mult[None, :], shift[None, :])          # (M, N) int8
