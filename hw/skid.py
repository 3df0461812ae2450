# SPDX-License-Identifier: Apache-2.0
"""A register slice for a stream: every signal that crosses it comes from a flip-flop.

:class:`SkidBuffer` sits between a unit's output stream and the logic that consumes it when
the two are far apart on the die: the producer's ``ready`` is a register (no path from the
consumer's state machine back into the producer's pipeline enables), and the consumer's
``valid`` and ``payload`` are registers (no path from the producer's output logic into the
consumer's). It holds two entries, so a consumer that is always ready takes one transfer per
cycle, one cycle after it entered: full throughput, one cycle of latency.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_int

__all__ = ["COLUMNS_PER_FLAG_COPY", "SkidBuffer", "bit_groups", "column_groups"]

#: The GEMM side's wide stream buffers (the array's output buffer and rows slice, the
#: requantizer's parameter flag and row FIFO, the controller's result rows) keep one copy of
#: their flags per this many columns (:func:`column_groups`): the 8x8 ``ulx3s_85f`` top routes
#: with one copy, the 8x18 top's single copies were its most congested nets.
COLUMNS_PER_FLAG_COPY = 8


class SkidBuffer(wiring.Component):
    """Two-entry register slice (stream rules in ``hw/README.md``).

    ``o_stream.valid`` / ``payload`` are the output register; ``i_stream.ready`` is "the skid
    register is empty", a register too. While the output register is held (``valid`` and not
    ``ready``) an incoming transfer goes to the skid register; ``i_stream.ready`` then drops
    for the one cycle in which the skid entry moves into the output register.

    Parameters
    ----------
    layout : ShapeLike
        Payload shape.
    groups : int
        The payload's bits in this many contiguous groups (:func:`bit_groups`), each with
        flags of its own (1, the default: one pair of flags). A wide slice's flags drive an
        enable and a multiplexer select per payload bit: on the 8x18 array's 577-bit rows one
        flag's net reached across the die (the nets that nextpnr's ``router2`` found most
        congested). Copies per group keep each net local to its columns; the slice behaves
        the same whatever ``groups``.

    Members
    -------
    i_stream : In(stream.Signature(layout))
    o_stream : Out(stream.Signature(layout))
        The entries in order, ``latency`` = 1 cycle after their transfer on ``i_stream``.
    flush : In(1)
        Drop both entries (no transfer on either side this cycle: ``o_stream.valid`` and
        ``i_stream.ready`` are low the next cycle, then ``i_stream.ready`` is high again).
    """

    latency = 1

    def __init__(self, layout, *, groups: int = 1):
        self._layout = layout
        self._groups = check_int("groups", groups, 1, max(1, Shape.cast(layout).width))
        super().__init__({
            "i_stream": In(stream.Signature(layout)),
            "o_stream": Out(stream.Signature(layout)),
            "flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        groups = bit_groups(Shape.cast(self._layout).width, self._groups)
        for g, (lo, hi) in enumerate(groups):
            # Each group of payload bits has flags of its own, updated from its own state and
            # the shared inputs: all copies are equal in every cycle, and the first one
            # answers the handshake. (A copy's next value reads its own flags, so Yosys
            # cannot merge them: each drives only its group's enables and multiplexers.)
            # (One group: the names and order of the first version, so that its netlist stays
            # the one the routed tops were built from.)
            one = len(groups) == 1
            if one:
                i_part, o_part = self.i_stream.payload, self.o_stream.payload
            else:
                i_part = Value.cast(self.i_stream.payload)[lo:hi]
                o_part = Value.cast(self.o_stream.payload)[lo:hi]
            shape = self._layout if one else hi - lo
            out, out_valid = (Signal(shape, name=_group_name("out", g, one)),
                              Signal(name=_group_name("out_valid", g, one)))
            skid, skid_valid = (Signal(shape, name=_group_name("skid", g, one)),
                                Signal(name=_group_name("skid_valid", g, one)))
            take = Signal(name=_group_name("take", g, one))
            first = [self.o_stream.valid.eq(out_valid)] if g == 0 else []
            m.d.comb += [*first, o_part.eq(out)]
            if g == 0:
                m.d.comb += self.i_stream.ready.eq(~skid_valid)
            m.d.comb += take.eq(self.i_stream.valid & ~skid_valid)
            with m.If(~out_valid | self.o_stream.ready):
                # The output register is free this cycle: the skid entry first (no transfer
                # can come in then), else the incoming one.
                with m.If(skid_valid):
                    m.d.sync += [out.eq(skid), out_valid.eq(1), skid_valid.eq(0)]
                with m.Else():
                    m.d.sync += [out.eq(i_part), out_valid.eq(take)]
            with m.Elif(~skid_valid):
                # The skid register loads whenever it is free and the output is held, a
                # transfer or not (skid_valid says which): its enable does not wait for
                # i_stream.valid, a net from the upstream unit's logic (the ATTN rows' skid
                # of a routed ulx3s_85f top: the attention FIFO's r_rdy into 257 enables,
                # 10.27 ns).
                m.d.sync += [skid.eq(i_part), skid_valid.eq(self.i_stream.valid)]
            with m.If(self.flush):
                m.d.sync += [out_valid.eq(0), skid_valid.eq(0)]
        return m


def _group_name(base: str, g: int, one: bool) -> str | None:
    # None (Amaranth names the signal after its variable, as the one-group version did).
    return None if one else f"{base}{g}"


def column_groups(cols: int) -> int:
    """Copies of a wide GEMM-side buffer's flags for ``cols`` columns: one per
    :data:`COLUMNS_PER_FLAG_COPY` columns or part of it."""
    return -(-check_int("cols", cols, 1) // COLUMNS_PER_FLAG_COPY)


def bit_groups(width: int, groups: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` bit ranges that split ``width`` bits into ``groups`` contiguous groups as
    even as they go (the first ``width % groups`` one bit wider)."""
    check_int("width", width, 1)
    check_int("groups", groups, 1, width)
    size, extra = divmod(width, groups)
    bounds = [0]
    for g in range(groups):
        bounds.append(bounds[-1] + size + (g < extra))
    return list(zip(bounds, bounds[1:]))
