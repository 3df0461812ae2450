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

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


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

    def __init__(self, layout):
        self._layout = layout
        super().__init__({
            "i_stream": In(stream.Signature(layout)),
            "o_stream": Out(stream.Signature(layout)),
            "flush": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        out, out_valid = Signal(self._layout), Signal()
        skid, skid_valid = Signal(self._layout), Signal()
        take = Signal()
        m.d.comb += [
            self.o_stream.valid.eq(out_valid),
            self.o_stream.payload.eq(out),
            self.i_stream.ready.eq(~skid_valid),
            take.eq(self.i_stream.valid & ~skid_valid),
        ]
        with m.If(~out_valid | self.o_stream.ready):
            # The output register is free this cycle: the skid entry first (no transfer can
            # come in then), else the incoming one.
            with m.If(skid_valid):
                m.d.sync += [out.eq(skid), out_valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [out.eq(self.i_stream.payload), out_valid.eq(take)]
        with m.Elif(~skid_valid):
            # The skid register loads whenever it is free and the output is held, a transfer
            # or not (skid_valid says which): its enable does not wait for i_stream.valid, a
            # net from the upstream unit's logic (the ATTN rows' skid of a routed ulx3s_85f
            # top: the attention FIFO's r_rdy into 257 enables, 10.27 ns).
            m.d.sync += [skid.eq(self.i_stream.payload), skid_valid.eq(self.i_stream.valid)]
        with m.If(self.flush):
            m.d.sync += [out_valid.eq(0), skid_valid.eq(0)]
        return m
