# SPDX-License-Identifier: Apache-2.0
"""Argument validation shared by every unit, ``AccelParams`` and the pure-spec modules.

One rule everywhere: a value of the wrong *type* raises ``TypeError``; a value of the right type
outside its legal range raises ``ValueError``. Messages follow Amaranth's style:
``"rows must be an integer in [1, 32], not 40"``. ``bool`` is never accepted as an integer.
Each function returns the checked value, so a constructor reads
``self._rows = check_int("rows", rows, 1, 32)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["check_bool", "check_choice", "check_int", "check_number", "check_pow2",
           "is_pow2"]


def is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


def check_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an ``int`` in ``[lo, hi]`` (either bound may be ``None``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        if lo is not None and hi is not None:
            rng = f"in [{lo}, {hi}]"
        elif lo is not None:
            rng = f">= {lo}"
        else:
            rng = f"<= {hi}"
        raise ValueError(f"{name} must be an integer {rng}, not {value!r}")
    return value


def check_pow2(name: str, value: object, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as a power-of-two ``int`` in ``[lo, hi]``."""
    value = check_int(name, value, lo, hi)
    if not is_pow2(value):
        raise ValueError(f"{name} must be a power of two, not {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {value!r}")
    return value


def check_number(name: str, value: object, lo: float | None = None,
                 hi: float | None = None) -> float:
    """``value`` (an int or a float, finite) as a ``float`` in ``[lo, hi]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    value = float(value)
    if not math.isfinite(value) or (lo is not None and value < lo) or \
            (hi is not None and value > hi):
        rng = f" in [{lo:g}, {hi:g}]" if lo is not None and hi is not None else ""
        raise ValueError(f"{name} must be a finite number{rng}, not {value!r}")
    return value


def check_choice(name: str, value: object, choices: Iterable[object]) -> object:
    """``value`` if it is one of ``choices``; the message lists them."""
    choices = tuple(choices)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}, not {value!r}")
    return value
