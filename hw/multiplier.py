# SPDX-License-Identifier: Apache-2.0
"""Per-platform pipelined multipliers: one behaviour, two implementations.

:func:`make_multiplier` returns a signed ``a_width`` x ``b_width`` multiplier with registered
inputs and a registered output (``latency == 2`` enabled cycles) and a clock enable ``en``:

* on ECP5 (an Amaranth ``LatticePlatform`` whose ``family`` is ``"ecp5"``, or ``family="ecp5"``)
  it is a ``MULT18X18D`` instance with its A/B input registers and output register switched on
  (``REG_INPUTA_CLK = REG_INPUTB_CLK = REG_OUTPUT_CLK = "CLK0"``, ``CE0 = en``). Inferred ``*``
  with fabric registers around it reached ~104 MHz on an 8x8 array, the hard registers 147 MHz
  (nextpnr-ecp5 0.11, ECP5-85F speed grade 6);
* everywhere else, and in simulation (``platform is None``), it is a plain ``*`` between two
  fabric registers, with exactly the same latency and enable behaviour.

Verilator and ``amaranth.sim`` cannot simulate the ``MULT18X18D`` primitive, so simulation builds
always use the portable path; tests of the ECP5 path check the instance's wiring instead.
"""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.checks import check_bool, check_int
from hw.unit import Setting

__all__ = ["DSP_WIDTH", "ECP5Multiplier", "Multiplier", "PipelinedMultiplier", "check_dsp_options",
           "check_family", "make_multiplier"]

#: Operand width of the ECP5 ``MULT18X18D`` (signed 18 x 18 -> 36).
DSP_WIDTH = 18


def _check_width(name: str, value: object, hi: int | None = None) -> int:
    check_int(name, value, 1)
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be at most {hi} for a {DSP_WIDTH}x{DSP_WIDTH} DSP block, "
                         f"not {value!r}; use use_dsp=False or split the operand")
    return value


class Multiplier(wiring.Component):
    """Common interface of the multipliers built by :func:`make_multiplier`.

    Signed ``a * b`` with registered inputs and a registered output: when ``en`` is high in
    two consecutive cycles, ``p`` shows ``a * b`` of the first of them. With ``en`` low
    nothing moves (a clock enable on both register ranks). ``latency == 2`` (enabled cycles).

    Members
    -------
    a : In(signed(a_width))
        Multiplicand (integer).
    b : In(signed(b_width))
        Multiplier (integer).
    en : In(1)
        Clock enable of the input and output registers.
    p : Out(signed(a_width + b_width))
        Product, exact (integer).
    """

    latency = 2
    a_width = Setting("Bits of ``a``.")
    b_width = Setting("Bits of ``b``.")

    def __init__(self, a_width: int, b_width: int, *, max_width: int | None = None):
        self._a_width = _check_width("a_width", a_width, max_width)
        self._b_width = _check_width("b_width", b_width, max_width)
        super().__init__({
            "a": In(signed(self._a_width)),
            "b": In(signed(self._b_width)),
            "en": In(1),
            "p": Out(signed(self._a_width + self._b_width)),
        })


class PipelinedMultiplier(Multiplier):
    """Portable :class:`Multiplier`: ``*`` between an input and an output register rank.

    Synthesis tools infer a DSP block (or LUT logic) for the ``*``; the registers are plain
    fabric flip-flops. Used in simulation and on platforms without a dedicated mapping.
    """

    def elaborate(self, platform):
        m = Module()
        a_q = Signal.like(self.a)
        b_q = Signal.like(self.b)
        with m.If(self.en):
            m.d.sync += [
                a_q.eq(self.a),
                b_q.eq(self.b),
                self.p.eq(a_q * b_q),
            ]
        return m


class ECP5Multiplier(Multiplier):
    """:class:`Multiplier` as an ECP5 ``MULT18X18D`` with input and output registers on.

    Operands are sign-extended to 18 bits and ``SIGNEDA``/``SIGNEDB`` are tied high, so the
    36-bit product is signed. Both register ranks use ``CLK0``/``CE0``/``RST0`` (``RST0`` is tied
    low: the pipeline holds data only, its validity is tracked outside; ``GSR`` is disabled).
    ``a_width`` and ``b_width`` must be at most 18.
    """

    def __init__(self, a_width: int, b_width: int):
        super().__init__(a_width, b_width, max_width=DSP_WIDTH)

    def elaborate(self, platform):
        m = Module()
        a18 = Signal(signed(DSP_WIDTH))
        b18 = Signal(signed(DSP_WIDTH))
        p36 = Signal(signed(2 * DSP_WIDTH))
        m.d.comb += [
            a18.eq(self.a),                     # sign extension by assignment
            b18.eq(self.b),
            self.p.eq(p36[:self.a_width + self.b_width]),
        ]
        m.submodules.dsp = mult18x18d(a18, b18, p36, self.en)
        return m


def mult18x18d(a18, b18, p36, en, *, input_registers: bool = True) -> Instance:
    """An ECP5 ``MULT18X18D`` of the signed 18-bit ``a18`` and ``b18`` into the 36-bit ``p36``,
    its output register on (``CLK0``, enable ``en``) and its input registers on unless
    ``input_registers`` is false (then ``p36`` is the product of the operands one cycle
    before: the fabric registers the operands, and the product leaves the DSP block from its
    own register, not across the die from its multiplier)."""
    # Only CLK0/CE0/RST0 and the data ports are connected: tying the unused clock, enable,
    # reset and shift-cascade (SRIA/SRIB) inputs to constants made nextpnr-ecp5 0.11 fail to
    # route its GND net ("Failed to find a route for arc ... of net $PACKER_GND_NET").
    reg_in = "CLK0" if input_registers else "NONE"
    ports = {
        "p_REG_INPUTA_CLK": reg_in, "p_REG_INPUTA_CE": "CE0", "p_REG_INPUTA_RST": "RST0",
        "p_REG_INPUTB_CLK": reg_in, "p_REG_INPUTB_CE": "CE0", "p_REG_INPUTB_RST": "RST0",
        "p_REG_INPUTC_CLK": "NONE",
        "p_REG_PIPELINE_CLK": "NONE",
        "p_REG_OUTPUT_CLK": "CLK0", "p_REG_OUTPUT_CE": "CE0", "p_REG_OUTPUT_RST": "RST0",
        "p_CLK0_DIV": "ENABLED", "p_CLK1_DIV": "ENABLED", "p_CLK2_DIV": "ENABLED",
        "p_CLK3_DIV": "ENABLED",
        "p_GSR": "DISABLED", "p_CAS_MATCH_REG": "FALSE", "p_SOURCEB_MODE": "B_SHIFT",
        "p_MULT_BYPASS": "DISABLED", "p_RESETMODE": "SYNC",
        "i_SIGNEDA": Const(1), "i_SIGNEDB": Const(1),
        "i_SOURCEA": Const(0), "i_SOURCEB": Const(0),
        "i_CLK0": ClockSignal("sync"), "i_CE0": en, "i_RST0": Const(0),
    }
    for i in range(DSP_WIDTH):
        ports[f"i_A{i}"] = a18[i]
        ports[f"i_B{i}"] = b18[i]
        ports[f"i_C{i}"] = Const(0)
    for i in range(2 * DSP_WIDTH):
        ports[f"o_P{i}"] = p36[i]
    return Instance("MULT18X18D", **ports)


def check_dsp_options(use_dsp: object, family: object) -> None:
    """Raise ``TypeError`` unless ``use_dsp`` is a bool and ``family`` a string or ``None``: the
    options every multiplier user passes on to :func:`make_multiplier`."""
    check_bool("use_dsp", use_dsp)
    check_family(family)


def check_family(family: object) -> None:
    """Raise ``TypeError`` unless ``family`` (a platform-family override) is a str or ``None``."""
    if family is not None and not isinstance(family, str):
        raise TypeError(f"family must be a string or None, not {family!r}")


def _platform_family(platform: object) -> str | None:
    family = getattr(platform, "family", None)
    return family if isinstance(family, str) else None


def make_multiplier(platform: object, a_width: int, b_width: int, *, use_dsp: bool = True,
                    family: str | None = None) -> Multiplier:
    """A signed ``a_width`` x ``b_width`` :class:`Multiplier` for ``platform``.

    Parameters
    ----------
    platform : Platform or None
        The platform being elaborated for (``None`` in simulation).
    a_width, b_width : int
        Operand widths (signed). Sign-extend unsigned operands by one bit yourself.
    use_dsp : bool
        ``False`` forces the portable path (fabric registers around ``*``).
    family : str or None
        Overrides the platform's family (``"ecp5"`` selects ``MULT18X18D`` without a board).

    Raises
    ------
    TypeError
        If a width is not a positive integer, ``use_dsp`` is not a bool or ``family`` not a str.
    ValueError
        If the DSP path is selected and a width exceeds 18.
    """
    check_dsp_options(use_dsp, family)
    if family is None:
        family = _platform_family(platform)
    if use_dsp and family == "ecp5":
        return ECP5Multiplier(a_width, b_width)
    return PipelinedMultiplier(a_width, b_width)
