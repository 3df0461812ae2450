# SPDX-License-Identifier: Apache-2.0
"""``LinkedAccelerator``: the accelerator top behind its host link -- what a board builds.

One component: :class:`hw.accelerator.Accelerator` with :class:`hw.link.frame.FrameEngine` as
the only master of its host port. A board adds clocks and pins and nothing else; the virtual
board (``sim/vboard``) Verilates the same component. ``link`` picks the edge of the link:

* ``"uart"`` -- the UART PHY (:class:`hw.link.host.HostLink`): ``rx``/``tx`` pins at the
  preset's baud (``AccelParams.baud`` at ``AccelParams.target_mhz``). What the boards build,
  and what ``lightformer vboard --uart`` drives bit by bit.
* ``"stream"`` -- the frame engine's byte streams as ports, no PHY: the same engine, CSRs and
  timeouts, a byte per cycle instead of one per ``10 * divisor`` cycles (the virtual board's
  fast default).

The link's RUN starts a program through the ``ENTRY`` and ``CONTROL`` CSRs (the engine's
``run_csrs``), so a RUN and a host that writes those CSRs itself do the same thing; the link's
RESET resets the accelerator's logic (its scratchpads keep their contents). The IDENTIFY reply
carries ``params.digest()`` and ``params.name``; READ and WRITE may touch exactly the regions of
:func:`hw.isa.memory_map`.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw import isa
from hw.accelerator import Accelerator
from hw.bus import HostBusSlice
from hw.link import protocol as lp
from hw.link.frame import FrameEngine
from hw.link.host import HostLink
from hw.params import AccelParams
from hw.reset import add_with_reset
from hw.unit import Setting, Unit, check_params

__all__ = ["LINKS", "LinkedAccelerator"]

#: The two edges of the link: UART pins (the boards) or byte streams (the fast virtual board).
LINKS = ("uart", "stream")


class LinkedAccelerator(Unit):
    """The accelerator top and its host link (module docstring).

    Parameters
    ----------
    params : AccelParams
        The design; the link's identity, baud divisor and receive timeout come from it too.
    link : str
        ``"uart"`` or ``"stream"`` (:data:`LINKS`).
    use_dsp : bool or None
        DSP multipliers (``None``: ``params.dsp_multipliers``).

    Members
    -------
    rx : In(1, init=1)
        (``link="uart"``) The serial line from the host.
    tx : Out(1, init=1)
        (``link="uart"``) The serial line to the host.
    frame_error, overrun : Out(1)
        (``link="uart"``) The UART receiver's error pulses.
    i_stream : In(stream.Signature(8))
        (``link="stream"``) Request bytes.
    o_stream : Out(stream.Signature(8))
        (``link="stream"``) Reply bytes.
    busy : Out(1)
        A program runs (``STATUS.BUSY``): a simulator keeps clocking while it is high.

    Attributes
    ----------
    divisor : int
        Clock cycles per UART bit at the preset's clock and baud.
    timeout_cycles : int
        Silence inside a request after which the engine answers ``TIMEOUT``.
    """

    params_fields = Accelerator.params_fields
    params = Setting("The AccelParams the design was built from.")
    link = Setting("The link's edge: 'uart' or 'stream'.")
    divisor = Setting("Clock cycles per UART bit.")
    timeout_cycles = Setting("Silence inside a request after which the engine answers TIMEOUT.")

    def __init__(self, params: AccelParams, *, link: str = "uart",
                 use_dsp: bool | None = None) -> None:
        self._params = check_params(params)
        if link not in LINKS:
            raise ValueError(f"link must be one of {', '.join(map(repr, LINKS))}, not {link!r}")
        self._link = link
        self._use_dsp = use_dsp
        clk_hz = params.target_mhz * 1e6
        self._divisor = lp.uart_divisor(clk_hz, params.baud)
        self._timeout_cycles = lp.timeout_cycles(clk_hz, params.baud)
        if link == "uart":
            members = {"rx": In(1, init=1), "tx": Out(1, init=1),
                       "frame_error": Out(1), "overrun": Out(1)}
        else:
            members = {"i_stream": In(stream.Signature(8)), "o_stream": Out(stream.Signature(8))}
        super().__init__({**members, "busy": Out(1)})

    @classmethod
    def params_arguments(cls, params) -> dict[str, object]:
        return {"params": check_params(params)}

    def _engine_arguments(self, accel: Accelerator) -> dict[str, object]:
        p = self._params
        csr = accel.memory_map.region("csr").base
        return {
            "identity": lp.identify_payload(p.digest(), p.name),
            "ranges": accel.memory_map.regions,
            "addr_width": len(accel.host.addr),
            "timeout_cycles": self._timeout_cycles,
            "run_csrs": (csr + isa.Csr.ENTRY, csr + isa.Csr.CONTROL, int(isa.Control.START)),
        }

    def elaborate(self, platform):
        m = Module()
        accel = Accelerator(self._params, use_dsp=self._use_dsp)
        args = self._engine_arguments(accel)
        if self._link == "uart":
            link = HostLink(divisor=self._divisor, **args)
            m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx),
                         self.frame_error.eq(link.frame_error), self.overrun.eq(link.overrun)]
        else:
            link = FrameEngine(**args)
            wiring.connect(m, wiring.flipped(self.i_stream), link.i_stream)
            wiring.connect(m, link.o_stream, wiring.flipped(self.o_stream))
        m.submodules.link = link
        # RESET: the accelerator's registers go back to their reset values (a running program
        # stops, STATUS clears, the units drop their work); block RAM keeps the program and the
        # data. On ECP5 through a `DCCA` (hw.reset): one global network to its flip-flops.
        add_with_reset(m, platform, link.soft_reset, {"accel": accel}, domain="accel")
        # The engine's requests reach the host port through a register slice (hw.bus): no
        # path from the engine's state machine into the top's region decode.
        m.submodules.host_slice = host_slice = HostBusSlice(addr_width=len(accel.host.addr))
        wiring.connect(m, link.bus, host_slice.i_bus)
        wiring.connect(m, host_slice.o_bus, accel.host)
        # The engine counts a run from its START write's transfer until `busy` falls, and
        # reads `busy` two cycles after that transfer; behind the slice the write reaches the
        # CSRs later than that (later still when the ENTRY write ahead of it holds the host
        # stage). `run_pending` bridges the gap: from the engine's start pulse until the
        # accelerator's own busy is seen (a START always raises it for at least a cycle).
        run_pending = Signal()
        with m.If(link.start):
            m.d.sync += run_pending.eq(1)
        with m.Elif(accel.busy | link.soft_reset):
            m.d.sync += run_pending.eq(0)
        busy = accel.busy | run_pending
        m.d.comb += [link.busy.eq(busy), link.status.eq(accel.status), self.busy.eq(busy)]
        return m
