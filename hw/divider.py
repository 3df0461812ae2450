# SPDX-License-Identifier: Apache-2.0
"""Division by a constant that is not a power of two, one quotient bit per cycle.

The accelerator divides by its array's ``cols`` (a weight word is ``cols`` bytes) and by the
host words of a scratchpad row. For a power of two that is a bit slice; for 12, 18 or 9 it
would be a combinational divider, a chain of ``width`` subtractors that no 100 MHz clock
allows. These divisions happen once per instruction or per host access, so a restoring
divider that takes ``width`` cycles costs a few dozen cycles of a long instruction and
almost no logic: the remainder never reaches the divisor, so its subtractor is
``divisor.bit_length() + 1`` bits wide whatever ``width`` is.

:class:`ConstDivider` loads ``x`` on ``start`` and, ``width + 1`` cycles later, holds
``quotient = x // divisor`` and ``remainder = x % divisor`` with ``done`` high until the next
``start``. :func:`pow2_divmod` is the power-of-two case's bit slices, for callers that take
either path.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_int

__all__ = ["ConstDivider", "is_pow2", "pow2_divmod"]


def is_pow2(d: int) -> bool:
    """``d`` (a positive integer) is a power of two: division by it is a bit slice."""
    return d > 0 and d & (d - 1) == 0


def pow2_divmod(value, d: int):
    """``(value // d, value % d)`` for a power of two ``d``, as bit slices of ``value``."""
    if not is_pow2(d):
        raise ValueError(f"pow2_divmod needs a power of two, not {d!r}; use ConstDivider")
    bits = d.bit_length() - 1
    return value[bits:], value[:bits]


class ConstDivider(wiring.Component):
    """Unsigned ``x // divisor`` and ``x % divisor`` for a constant ``divisor``, sequentially.

    Restoring division from the most significant bit: each cycle shifts the next bit of ``x``
    into the partial remainder and subtracts ``divisor`` where it fits (that quotient bit is
    1). ``start`` loads ``x`` (in any cycle, also while busy: the division starts over);
    ``done`` rises ``latency`` cycles later and stays high, with ``quotient`` and ``remainder``
    held, until the next ``start``.

    Parameters
    ----------
    width : int
        Bits of ``x`` (and of ``quotient``), 1..64.
    divisor : int
        The constant divisor, 1..2**16.

    Members
    -------
    start : In(1)
        Load ``x`` and begin.
    x : In(width)
        The dividend, sampled on ``start``.
    done : Out(1)
        ``quotient`` and ``remainder`` are valid: high from ``latency`` cycles after
        ``start`` until the cycle after the next ``start`` (low after reset until the first
        division ends).
    quotient : Out(width)
    remainder : Out(range(divisor))

    Attributes
    ----------
    latency : int
        ``width + 1``: from the cycle of ``start`` to the first with ``done`` (one cycle
        loads ``x``, one per bit).
    """

    def __init__(self, width: int, divisor: int):
        self._width = check_int("width", width, 1, 64)
        self._divisor = check_int("divisor", divisor, 1, 1 << 16)
        super().__init__({
            "start": In(1),
            "x": In(width),
            "done": Out(1),
            "quotient": Out(width),
            "remainder": Out(range(divisor)),
        })

    @property
    def latency(self) -> int:
        return self._width + 1

    def elaborate(self, platform):
        m = Module()
        w, d = self._width, self._divisor
        rbits = max(1, (d - 1).bit_length())
        # The quotient register doubles as the dividend's shift register: the dividend's bits
        # leave at the top while the quotient's enter at the bottom.
        qx = Signal(w, name="qx")
        rem = Signal(rbits, name="rem")
        left = Signal(range(w + 1), name="left")
        shifted = Cat(qx[-1], rem)                       # rem * 2 + next bit: < 2 * divisor
        fits = shifted >= d
        with m.If(self.start):
            m.d.sync += [qx.eq(self.x), rem.eq(0), left.eq(w)]
        with m.Elif(left != 0):
            m.d.sync += [qx.eq(Cat(fits, qx[:-1])),
                         rem.eq(Mux(fits, shifted - d, shifted)[:rbits]),
                         left.eq(left - 1)]
        done = Signal(name="done_r")
        m.d.sync += done.eq(~self.start & ((left == 1) | done))
        m.d.comb += [self.done.eq(done), self.quotient.eq(qx), self.remainder.eq(rem)]
        return m
