# SPDX-License-Identifier: Apache-2.0
"""Per-platform block RAM with a registered read: one behaviour, two implementations.

:func:`make_block_ram` returns a simple dual-port ``width`` x ``depth`` RAM (one write port, one
read port, one clock domain) whose read goes through two register ranks, each with its own
clock enable, so a stalled consumer can hold both the word in flight and the word it is being
offered (``latency == 2``):

* ``r_en`` enables the first rank: the address is sampled and the word read out of the array;
* ``r_oce`` enables the second rank, the output register that drives ``r_data``.

Implementations:

* on ECP5 (an Amaranth ``LatticePlatform`` whose ``family`` is ``"ecp5"``, or ``family="ecp5"``)
  a RAM of more than :data:`ECP5_DISTRIBUTED_MAX_BITS` bits is a column of ``DP16KD`` instances
  with the port B output register switched on (``REGMODE_B = "OUTREG"``, ``CEB = r_en``,
  ``OCEB = r_oce``). Yosys (0.70 here) maps memories to ``DP16KD`` without that register
  (``REGMODE NOREG``), which nextpnr times at a 5.8 ns clock-to-out on speed grade 6 -- most
  of a 125 MHz cycle spent before the word leaves the block (``docs/boards.md``). A smaller RAM
  is the portable model below with ``ram_style = "distributed"``: Yosys builds it from
  ``TRELLIS_DPR16X4`` LUT RAM and flip-flops. One ``DP16KD`` per RAM wastes most of an 18 kbit
  block on a small one (a scratchpad byte lane of 64 words, the quant buffer of up to 4
  columns), and the LFE5U-25F has only 56;
* everywhere else, and in simulation (``platform is None``), it is an Amaranth ``Memory`` read
  port (``en = r_en``) followed by a fabric register (enable ``r_oce``): the same latency and
  enable behaviour, cycle for cycle.

A read of the address being written in the same cycle returns an undefined word (``DP16KD``
``WRITEMODE_A = "NORMAL"`` on the other port; the portable model's ``no_rw_check``): users
must not read a word while writing it. In simulation (``platform is None``) the portable RAM
returns the bitwise complement of the old word for such a read, so a user that breaks the rule
fails its bit-exact tests instead of passing on read-old-data behaviour the hardware does not
have. Contents start undefined (zero in simulation).

Verilator and ``amaranth.sim`` cannot simulate the ``DP16KD`` primitive (Yosys ships it as a
blackbox), so simulation builds always use the portable path; the tests of the ECP5 path check
the instances' wiring against the address and byte-enable conventions of Yosys' own
``DP16KD`` mapping (``techlibs/lattice/brams_map_16kd.v``).
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Mux, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.checks import check_int
from hw.multiplier import _platform_family, check_family
from hw.unit import Setting

__all__ = ["DP16KD_MODES", "ECP5_DISTRIBUTED_MAX_BITS", "RAM_DELAY_MIN", "BlockRAM",
           "ECP5BlockRAM", "PortableBlockRAM", "delay_line", "make_block_ram"]

#: ``DP16KD`` port geometries as ``(data width, depth, low address bits unused)``: the 14-bit
#: address ``ADx13..ADx0`` counts bits, so a ``w``-bit word uses ``ADx13..ADx(k)`` with
#: ``2**k`` the word size rounded down to a power of two (18-bit words: ``ADx1``/``ADx0`` are
#: the two 9-bit byte enables).
DP16KD_MODES = ((18, 1024, 4), (9, 2048, 3), (4, 4096, 2), (2, 8192, 1), (1, 16384, 0))

#: The largest ECP5 RAM (``width * depth`` bits) built in LUT RAM instead of ``DP16KD``: 512 bits
#: are eight ``TRELLIS_DPR16X4`` (16 x 4 bits each) and a 4:1 read multiplexer per bit at most,
#: under 1/32 of a block's 18 kbit.
ECP5_DISTRIBUTED_MAX_BITS = 512


class BlockRAM(wiring.Component):
    """Common interface of the RAMs built by :func:`make_block_ram`.

    A word written with ``w_en`` at ``w_addr`` can be read from the next cycle on. A read issued
    in cycle ``t`` (``r_en`` high, address ``r_addr``) lands in the first rank at ``t + 1``;
    in the first cycle ``t' > t`` with ``r_oce`` high it moves to the output register and shows
    on ``r_data`` from ``t' + 1``. With ``r_en`` low the first rank holds its word, with
    ``r_oce`` low ``r_data`` holds. ``latency == 2``.

    Members
    -------
    w_en : In(1)
        Write strobe.
    w_addr : In(range(depth))
        Write address.
    w_data : In(width)
        Word written.
    r_en : In(1)
        Clock enable of the read-address / first rank.
    r_addr : In(range(depth))
        Read address, sampled when ``r_en`` is high.
    r_oce : In(1)
        Clock enable of the output register.
    r_data : Out(width)
        The output register.
    """

    latency = 2
    width = Setting("Bits of a word.")
    depth = Setting("Words.")

    def __init__(self, *, width: int, depth: int) -> None:
        self._width = check_int("BlockRAM width", width, 1)
        self._depth = check_int("BlockRAM depth", depth, 2)
        super().__init__({
            "w_en": In(1),
            "w_addr": In(range(depth)),
            "w_data": In(width),
            "r_en": In(1),
            "r_addr": In(range(depth)),
            "r_oce": In(1),
            "r_data": Out(width),
        })


class PortableBlockRAM(BlockRAM):
    """Portable :class:`BlockRAM`: an Amaranth ``Memory`` read port and a fabric output register.

    Synthesis tools infer block RAM for the memory (``ram_style = "block"``, also for small
    ones, and ``no_rw_check``: no bypass logic for a same-address read and write, which users
    must avoid anyway); the output register is a
    plain flip-flop rank. Used in simulation and on platforms without a dedicated mapping,
    and with ``ram_style = "distributed"`` (LUT RAM) for the small RAMs of ECP5.

    Parameters
    ----------
    ram_style : str
        The memory's ``ram_style`` attribute for synthesis: ``"block"`` or ``"distributed"``.
    """

    ram_style = Setting("The memory's ram_style attribute (block or distributed).")

    def __init__(self, *, width: int, depth: int, ram_style: str = "block") -> None:
        if ram_style not in ("block", "distributed"):
            raise ValueError(f"ram_style must be 'block' or 'distributed', not {ram_style!r}")
        self._ram_style = ram_style
        super().__init__(width=width, depth=depth)

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=unsigned(self._width), depth=self._depth,
                                        init=[],
                                        attrs={"no_rw_check": 1, "ram_style": self._ram_style})
        wr = mem.write_port()
        rd = mem.read_port()
        m.d.comb += [
            wr.en.eq(self.w_en),
            wr.addr.eq(self.w_addr),
            wr.data.eq(self.w_data),
            rd.en.eq(self.r_en),
            rd.addr.eq(self.r_addr),
        ]
        word = rd.data
        if platform is None:
            # Simulation: poison a read that collides with a write (see the module docstring).
            collided = Signal()
            with m.If(self.r_en):
                m.d.sync += collided.eq(self.w_en & (self.w_addr == self.r_addr))
            word = Mux(collided, ~rd.data, rd.data)
        with m.If(self.r_oce):
            m.d.sync += self.r_data.eq(word)
        return m


def dp16kd_mode(depth: int) -> tuple[int, int, int]:
    """The widest ``DP16KD`` geometry of :data:`DP16KD_MODES` that holds ``depth`` words."""
    for mode in DP16KD_MODES:
        if mode[1] >= depth:
            return mode
    raise ValueError(f"ECP5BlockRAM depth {depth} exceeds one DP16KD column ({DP16KD_MODES[-1][1]} "
                     f"words); split the buffer or use PortableBlockRAM")


class ECP5BlockRAM(BlockRAM):
    """:class:`BlockRAM` as a column of ECP5 ``DP16KD`` with the read output register on.

    The word is sliced into ``ceil(width / w)`` instances of the widest geometry ``w`` deep
    enough (:func:`dp16kd_mode`): port A writes (``WEA = CEA = w_en``), port B reads
    (``CEB = r_en``, ``OCEB = r_oce``, ``REGMODE_B = "OUTREG"``). Resets are tied low and
    ``GSR`` is disabled: the RAM holds data only, validity is tracked by its user.
    """

    def __init__(self, *, width: int, depth: int) -> None:
        super().__init__(width=width, depth=depth)
        self._mode = dp16kd_mode(depth)

    @property
    def mode(self) -> tuple[int, int, int]:
        """``(data width, depth, unused low address bits)`` of each instance."""
        return self._mode

    @property
    def instances(self) -> int:
        return -(-self._width // self._mode[0])

    def elaborate(self, platform):
        m = Module()
        lane, _, low = self._mode
        abits = len(self.w_addr)
        for i in range(self.instances):
            lo = i * lane
            n = min(lane, self._width - lo)
            dout = Signal(lane, name=f"dout{i}")
            m.d.comb += self.r_data[lo:lo + n].eq(dout[:n])
            ports = {
                "p_DATA_WIDTH_A": lane, "p_DATA_WIDTH_B": lane,
                "p_REGMODE_A": "NOREG", "p_REGMODE_B": "OUTREG",
                "p_RESETMODE": "SYNC", "p_ASYNC_RESET_RELEASE": "SYNC",
                "p_CSDECODE_A": "0b000", "p_CSDECODE_B": "0b000",
                "p_WRITEMODE_A": "NORMAL", "p_WRITEMODE_B": "NORMAL",
                "p_GSR": "DISABLED",
                "i_CLKA": ClockSignal("sync"), "i_CLKB": ClockSignal("sync"),
                "i_CEA": self.w_en, "i_OCEA": Const(1), "i_WEA": self.w_en, "i_RSTA": Const(0),
                "i_CEB": self.r_en, "i_OCEB": self.r_oce, "i_WEB": Const(0), "i_RSTB": Const(0),
            }
            for cs in range(3):
                ports[f"i_CSA{cs}"] = Const(0)
                ports[f"i_CSB{cs}"] = Const(0)
            for bit in range(14):
                if bit < low:
                    # 18-bit words: ADx1/ADx0 are the byte enables (both bytes written).
                    a_bit = b_bit = Const(1 if lane == 18 and bit < 2 else 0)
                elif bit - low < abits:
                    a_bit, b_bit = self.w_addr[bit - low], self.r_addr[bit - low]
                else:
                    a_bit = b_bit = Const(0)
                ports[f"i_ADA{bit}"] = a_bit
                ports[f"i_ADB{bit}"] = b_bit
            for bit in range(18):
                ports[f"i_DIA{bit}"] = self.w_data[lo + bit] if bit < n else Const(0)
                ports[f"i_DIB{bit}"] = Const(0)
                if bit < lane:
                    ports[f"o_DOB{bit}"] = dout[bit]
            m.submodules[f"ram{i}"] = Instance("DP16KD", **ports)
        return m


def make_block_ram(platform: object, *, width: int, depth: int,
                   family: str | None = None) -> BlockRAM:
    """A ``width`` x ``depth`` :class:`BlockRAM` with a registered read for ``platform``.

    Parameters
    ----------
    width, depth : int
        Word width in bits and number of words (``depth >= 2``).
    platform, family
        As for :func:`hw.multiplier.make_multiplier`; family ``"ecp5"`` selects ``DP16KD``, or
        LUT RAM for at most :data:`ECP5_DISTRIBUTED_MAX_BITS` bits.

    Raises
    ------
    TypeError
        If ``width`` or ``depth`` is not a positive integer or ``family`` is not a string.
    ValueError
        If ``depth < 2``, or on ECP5 if ``depth`` exceeds one ``DP16KD`` (16384 words).
    """
    check_family(family)
    if family is None:
        family = _platform_family(platform)
    if family == "ecp5":
        if check_int("BlockRAM width", width, 1) * check_int("BlockRAM depth", depth, 2) \
                <= ECP5_DISTRIBUTED_MAX_BITS:
            return PortableBlockRAM(width=width, depth=depth, ram_style="distributed")
        return ECP5BlockRAM(width=width, depth=depth)
    return PortableBlockRAM(width=width, depth=depth)


def unshared_register(m: Module, value, *, name: str, platform: object = None,
                      family: str | None = None, enable=None) -> Signal:
    """``value`` through a register of its own (no enable, no reset), which synthesis keeps
    apart from identical copies: the RAM lanes of a scratchpad each take their addresses from
    one. Yosys merges identical flip-flops (``opt_merge``), which made one address register
    drive all 64 ``DP16KD`` of the ``ulx3s_85f`` weight scratchpad across the die (20 ns of
    wire: the critical path of that top's first route). On ECP5 the copy is ``TRELLIS_FF``
    instances, which ``opt_merge`` leaves alone; elsewhere (simulation) a plain register.

    ``platform`` and ``family`` as for :func:`make_block_ram`. Call it outside any
    ``m.If`` / ``m.Switch`` / ``m.FSM``: on ECP5 the copy loads in every cycle whatever the
    context, so a conditional register in simulation would not be the same circuit.

    ``enable``: the copy loads only in cycles with ``enable`` high, through the flip-flops'
    clock enable (on ECP5 the ``TRELLIS_FF``'s ``CE``), so that a register that holds its
    value costs no LUT per bit for the hold (``None``: loads in every cycle)."""
    check_family(family)
    if getattr(m.domain, "_depth", 0):     # Amaranth 0.5: the nesting of m.If / m.FSM bodies
        raise SyntaxError(f"unshared_register {name!r} inside a control block: it loads in "
                          "every cycle, call it at the top level of the module")
    if family is None:
        family = _platform_family(platform)
    value = Value.cast(value)
    q = Signal(len(value), name=name, reset_less=True)
    if family == "ecp5":
        ce = {} if enable is None else {"p_CEMUX": "CE", "i_CE": Value.cast(enable)}
        for bit in range(len(value)):
            m.submodules[f"{name}_ff{bit}"] = Instance(
                "TRELLIS_FF", **{"p_CEMUX": "1", **ce}, p_GSR="DISABLED", p_CLKMUX="CLK",
                p_LSRMUX="LSR", p_REGSET="RESET", i_CLK=ClockSignal("sync"), i_LSR=Const(0),
                i_DI=value[bit], o_Q=q[bit])
    elif enable is None:
        m.d.sync += q.eq(value)
    else:
        with m.If(enable):
            m.d.sync += q.eq(value)
    return q


#: The shortest :func:`delay_line` built in LUT RAM: below it a chain of flip-flops costs less
#: than a ring's pointers and output register.
RAM_DELAY_MIN = 3


def delay_line(m: Module, value, n: int, *, en, name: str, ram_min: int | None = RAM_DELAY_MIN):
    """``value`` ``n`` enabled cycles later (cycles with ``en`` high): what a chain of ``n``
    registers that load on ``en`` shows, without its ``n * len(value)`` flip-flops where ``n``
    is ``ram_min`` or more.

    Such a line is a ring of at least ``n - 1`` words in LUT RAM (an asynchronous read; on
    ECP5 Yosys builds it from ``TRELLIS_DPR16X4``, 16 words of 4 bits each) followed by one
    output register: each enabled cycle writes ``value`` at a write pointer and loads the
    output register from the word written ``n - 1`` enabled cycles before (a read pointer as
    far behind), and both pointers step. The ring needs no reset, so its first ``n - 1``
    outputs after a reset are the old contents, where a chain shows zeros: users must ignore
    them (the systolic array's lanes carry a valid flag of their own). Shorter lines
    (``n < ram_min``, or any with ``ram_min=None``) are the chain; ``n = 0`` is ``value``."""
    check_int(f"{name} delay", n, 0)
    if ram_min is not None:
        check_int(f"{name} ram_min", ram_min, 2)
    value = Value.cast(value)
    out = value
    if ram_min is None or n < ram_min:
        for i in range(n):
            reg = Signal(value.shape(), name=f"{name}_d{i + 1}")
            with m.If(en):
                m.d.sync += reg.eq(out)
            out = reg
        return out
    depth = max(16, 1 << (n - 2).bit_length())          # a power of two >= n - 1
    m.submodules[f"{name}_ring"] = ring = Memory(shape=value.shape(), depth=depth, init=[])
    write, read = ring.write_port(), ring.read_port(domain="comb")
    w_ptr = Signal(range(depth), name=f"{name}_wptr")
    r_ptr = Signal(range(depth), name=f"{name}_rptr", init=-(n - 1) % depth)
    out = Signal(value.shape(), name=f"{name}_out")
    m.d.comb += [write.addr.eq(w_ptr), write.data.eq(value), write.en.eq(en),
                 read.addr.eq(r_ptr)]
    with m.If(en):
        m.d.sync += [w_ptr.eq(w_ptr + 1), r_ptr.eq(r_ptr + 1), out.eq(read.data)]
    return out
