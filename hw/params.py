# SPDX-License-Identifier: Apache-2.0
"""``AccelParams``: the one source of truth for the accelerator's shape.

One frozen object (Gemmini's config class, VTA's config JSON) sizes the hardware: every unit
in ``hw/`` is built from it (:meth:`hw.unit.Unit.from_params`), and the board builds, the
Verilator benches and the CLI pick it by preset name. ``digest()`` names build caches (a unit's
own by the fields it reads, :func:`hw.unit.unit_digest`) and is the ``DESIGN_ID`` the device
reports. Numerics constants are not parameters: they live in :mod:`hw.numerics`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from hw.checks import check_bool, check_int, check_number, check_pow2
from hw.numerics import ACC_WIDTH, ACT_WIDTH, ATTN_MAX_HEAD_DIM, SOFTMAX_MAX_WINDOW, WGT_WIDTH

__all__ = ["AccelParams", "MAX_ATTN_LANES", "MAX_DIM", "PRESETS", "preset", "preset_names"]

#: Largest array ``rows`` / ``cols``.
MAX_DIM = 32
#: Largest ``attn_lanes`` (multipliers of each attention MAC stage).
MAX_ATTN_LANES = 64


@dataclass(frozen=True)
class AccelParams:
    """Accelerator parameters (frozen; validated on construction).

    Parameters
    ----------
    name : str
        Preset name (informational; part of the digest).
    rows, cols : int
        Systolic array geometry: ``rows`` output rows (activation lanes) by ``cols`` output
        columns (weight lanes). Each cycle the array consumes one int8 column of A (``rows``
        values) and one int8 row of W (``cols`` values). 1..32 each.
    k_depth : int
        Largest reduction length K of one GEMM tile (depth of the operand buffers of the GEMM
        core). Power of two, 16..4096.
    dsp_multipliers : bool
        Map PE multipliers to hard DSP blocks (``MULT18X18D`` on ECP5, ``SB_MAC16`` on iCE40)
        where the platform has them; ``False`` forces LUT multipliers.
    lut_columns : int
        The array's last ``lut_columns`` columns (0..cols) multiply with
        :class:`hw.lut_multiplier.LutMultiplier` (adders in the fabric, no DSP block) instead:
        a mixed array that holds more MACs than the part has DSP blocks. 0 (default): none.
    ln_pipelines : int
        Element pipelines of the LayerNorm unit (:class:`hw.layernorm_tokens.TokenLayerNorm`
        ``pipelines``): a divisor of ``rows``, each pipeline normalizing ``rows /
        ln_pipelines`` of a block's rows in turn. 0 (default): one per row. The unit's scalar
        engines take ``2 * 132`` cycles a block, so up to four rows a pipeline cost no time for
        ``d <= 64``.
    ln_engines : int
        Scalar engines of the LayerNorm unit (:class:`hw.layernorm_tokens.TokenLayerNorm`
        ``engines``), 1..``rows``; 0 (default): ``rows // 2``. Each is a sequential datapath
        of about 1,780 cells on ECP5 that takes a block's rows in turn: fewer engines, fewer
        cells and longer LNORM blocks (``rows * 135 / ln_engines`` cycles a block of width
        up to 128).
    host_units : tuple of str
        Units left out of the hardware (any of ``"attn"``, ``"lnorm"``; default none): an
        instruction of such a unit stops the program with ``ErrorCode.UNIT_ABSENT`` at its
        ``PC``, and the driver (:class:`sw.driver.Accelerator`) runs it on the host with the
        ISA simulator on the operand bytes it reads back, writes the result bytes and starts
        the device again at ``PC + 1``: bit-exact by construction, for parts too small for
        every unit. Enters the digest only when not empty (design ids of full designs kept).
    requant_lanes : int
        Lanes of the GEMM requantizer (:class:`hw.requant.Requantizer` ``lanes``),
        1..``cols``; 0 (default): ``cols``, a row a cycle. Fewer take a row in ``ceil(cols /
        requant_lanes)`` cycles on ``2 * requant_lanes`` DSP products instead of ``2 * cols``.
    vec_dsp_products : bool
        The vector unit's two int8 x 16-bit residual products per lane on DSP blocks
        (:func:`hw.multiplier.make_multiplier`: ``MULT18X18D`` on ECP5) instead of
        :class:`hw.lut_multiplier.LutMultiplier` (the default, for parts whose DSPs the GEMM
        core needs). ``2 * rows`` blocks more, about 600 cells of logic fewer a lane (8 lanes
        of the ``ulx3s_85f`` top, where the DSP outputs, placed where the blocks had room, then
        failed its routes: no preset uses it).
    window : int
        Sliding attention window (keys per query row), 1..256.
    head_dim : int
        Largest attention head dimension, 1..128.
    attn_lanes : int
        Multiply lanes of the attention unit (MACs per cycle), 1..64; must divide ``head_dim``.
    attn_causal : bool
        Recorded in the design id only: the attention unit takes a causal (keys
        ``t-window+1 .. t``) or centred (``t-window//2 .. t+(window-1)//2``, exactly ``window``
        keys) window per ``ATTN`` instruction (its ``CAUSAL`` flag), clipped to ``[0, T)``,
        whatever this field says. Kept so that existing design ids do not change.
    act_depth, wgt_depth : int
        Activation / weight scratchpad depth in bytes (power of two).
    instr_depth : int
        Instruction memory depth in words (power of two).
    lut_count : int
        Number of 256-entry activation LUTs.
    target_mhz : float
        Main clock target for board builds (MHz).
    baud : int
        Host link UART baud rate.
    """

    name: str = "custom"
    rows: int = 4
    cols: int = 4
    k_depth: int = 256
    dsp_multipliers: bool = True
    window: int = 8
    head_dim: int = 8
    attn_lanes: int = 4
    attn_causal: bool = True
    act_depth: int = 4096
    wgt_depth: int = 16384
    instr_depth: int = 256
    lut_count: int = 4
    target_mhz: float = 25.0
    baud: int = 115200
    lut_columns: int = 0
    ln_pipelines: int = 0
    vec_dsp_products: bool = False
    ln_engines: int = 0
    requant_lanes: int = 0
    host_units: tuple[str, ...] = ()

    # Fixed numerics (hw.numerics); part of the contract, not knobs.
    act_width: int = dataclasses.field(default=ACT_WIDTH, init=False)
    wgt_width: int = dataclasses.field(default=WGT_WIDTH, init=False)
    acc_width: int = dataclasses.field(default=ACC_WIDTH, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"AccelParams.name must be a non-empty string, not {self.name!r}")
        at = "AccelParams."                  # messages name the field as AccelParams.rows
        check_int(at + "rows", self.rows, 1, MAX_DIM)
        check_int(at + "cols", self.cols, 1, MAX_DIM)
        check_pow2(at + "k_depth", self.k_depth, 16, 4096)
        check_bool(at + "dsp_multipliers", self.dsp_multipliers)
        check_bool(at + "attn_causal", self.attn_causal)
        check_int(at + "window", self.window, 1, SOFTMAX_MAX_WINDOW)
        check_int(at + "head_dim", self.head_dim, 1, ATTN_MAX_HEAD_DIM)
        check_int(at + "attn_lanes", self.attn_lanes, 1, MAX_ATTN_LANES)
        if self.head_dim % self.attn_lanes:
            raise ValueError(
                f"AccelParams.attn_lanes must divide head_dim ({self.head_dim}), "
                f"not {self.attn_lanes!r}")
        check_pow2(at + "act_depth", self.act_depth, 64, 1 << 20)
        check_pow2(at + "wgt_depth", self.wgt_depth, 64, 1 << 22)
        check_pow2(at + "instr_depth", self.instr_depth, 16, 1 << 16)
        check_int(at + "lut_count", self.lut_count, 1, 64)
        # Stored as a float so that 25 and 25.0 name the same design (the digest is over
        # the JSON of the fields, where 25 and 25.0 differ).
        object.__setattr__(self, "target_mhz",
                           check_number(at + "target_mhz", self.target_mhz, 1.0, 500.0))
        check_int(at + "baud", self.baud, 9600, 12_000_000)
        check_int(at + "lut_columns", self.lut_columns, 0, self.cols)
        check_bool(at + "vec_dsp_products", self.vec_dsp_products)
        check_int(at + "ln_pipelines", self.ln_pipelines, 0, self.rows)
        check_int(at + "ln_engines", self.ln_engines, 0, self.rows)
        check_int(at + "requant_lanes", self.requant_lanes, 0, self.cols)
        object.__setattr__(self, "host_units", _check_host_units(self.host_units))
        if self.ln_pipelines and self.rows % self.ln_pipelines:
            raise ValueError(f"AccelParams.ln_pipelines must divide rows ({self.rows}) or be 0 "
                             f"(one per row), not {self.ln_pipelines!r}")

    # -- identity -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def digest(self, fields: Iterable[str] | None = None) -> str:
        """16 hex digits naming this configuration (``DESIGN_ID``) or a part of it.

        With ``fields`` (names of parameters), only those enter the digest: a unit's build cache
        is keyed by the parameters that unit reads (``params_fields`` of each unit), so changing
        the link's ``baud`` does not rebuild the Verilated GEMM core.
        """
        full = self.to_dict()
        if not full["host_units"]:             # (a later field: full designs keep their ids)
            del full["host_units"]
        if fields is None:
            chosen = full
        else:
            names = sorted(set(fields))
            unknown = [n for n in names if n not in full and n != "host_units"]
            if unknown:
                raise ValueError(
                    f"digest fields must be AccelParams fields, not {', '.join(unknown)}")
            chosen = {n: full[n] for n in names if n in full}
        blob = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2s(blob.encode(), digest_size=8).hexdigest()

    @property
    def ln_pipeline_count(self) -> int:
        """The LayerNorm unit's element pipelines (``ln_pipelines``, 0 meaning ``rows``)."""
        return self.ln_pipelines or self.rows

    @property
    def design_id(self) -> int:
        """32-bit ``DESIGN_ID`` readable on the device (the first 8 hex digits of ``digest()``)."""
        return int(self.digest()[:8], 16)

    def replace(self, **changes: object) -> AccelParams:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols


#: Units that ``AccelParams.host_units`` may leave to the host.
HOST_RUNNABLE_UNITS = ("attn", "lnorm")


def _check_host_units(value: object) -> tuple[str, ...]:
    """``host_units`` as a sorted tuple (a JSON list is accepted); one clear error otherwise."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)) \
            or not all(isinstance(u, str) for u in value):
        raise TypeError(f"AccelParams.host_units must be a tuple of unit names, not {value!r}")
    bad = [u for u in value if u not in HOST_RUNNABLE_UNITS]
    if bad or len(set(value)) != len(value):
        raise ValueError(f"AccelParams.host_units must name each of "
                         f"{', '.join(HOST_RUNNABLE_UNITS)} at most once, not {value!r}")
    return tuple(sorted(value))


PRESETS: dict[str, AccelParams] = {
    # Fast tests: small enough to Verilate in ~10 s.
    # head_dim 16 and 32 KiB of weights: the shipped digits model (2 heads of 16, 17 KiB of
    # weights) runs on it end to end.
    "tiny": AccelParams(name="tiny", rows=4, cols=4, k_depth=256, window=8, head_dim=16,
                        attn_lanes=4, act_depth=4096, wgt_depth=32768, target_mhz=25.0,
                        ln_pipelines=2),
    # iCE40UP5K: 5280 LUT4, 8 SB_MAC16, 30 EBR (120 kbit), 1 Mbit SPRAM. A 2x2 array: its 4 PE
    # products and the requantizer's 2 x 2 partial products use exactly the 8 SB_MAC16
    # (a 2x4 array needed 16 and 5333 of 5280 logic cells; docs/boards.md).
    "icebreaker": AccelParams(name="icebreaker", rows=2, cols=2, k_depth=256, window=8,
                              head_dim=8, attn_lanes=2, act_depth=2048, wgt_depth=8192,
                              instr_depth=64, lut_count=2, target_mhz=12.0, ln_pipelines=1),
    # ECP5 LFE5U-85F speed grade 6: 156 MULT18X18D, 208 EBR (18 kbit each). 32 KiB of
    # activations hold one encoder layer at d_model 64, T 64 (at least 5 T d bytes live at once).
    # The vector unit's residual products are LUT multipliers (vec_dsp_products off): on 16 of
    # the DSPs (138 of 156 in use) they saved about 4,800 cells, but the routed top of 3ea48a0
    # failed on DSP outputs placed across the die from their adders, the vector lanes' and the
    # GEMM requantizer's (docs/boards.md); the leaner array of dddad42 pays for the cells.
    # 100 MHz: the whole accelerator routed at 100.78 MHz (its GEMM core and attention unit
    # alone meet 125 MHz; docs/boards.md).
    "ulx3s_85f": AccelParams(name="ulx3s_85f", rows=8, cols=8, k_depth=1024, window=32,
                             head_dim=32, attn_lanes=8, act_depth=32768, wgt_depth=131072,
                             instr_depth=1024, lut_count=8, target_mhz=100.0, ln_pipelines=2),
    # ULX3S 85F with 144 MACs: an 8x18 array, its first 15 columns on 120 MULT18X18D, its last
    # 3 LUT multipliers (lut_columns). The rest of the top is trimmed to fit the cells and DSPs
    # beside it: 3 requantizer lanes (6 products), 1 LayerNorm engine and element pipeline,
    # 2 attention lanes, 64 KiB of weights (the DP16KDs the wider array's operand buffers
    # take): 154 of the 156 DSP blocks, 72 % of the LUT4s packed, as the 8x8 top (6 LUT
    # columns with 8 attention lanes, 6 requantizer lanes and 2 engines: 89 %, which no router
    # finished; with 4 lanes and 1 engine: 79 %). Its routes: docs/boards.md ("Past the DSP
    # count").
    "ulx3s_85f_8x18": AccelParams(name="ulx3s_85f_8x18", rows=8, cols=18, k_depth=1024,
                                  window=32, head_dim=32, attn_lanes=2, act_depth=32768,
                                  wgt_depth=65536, instr_depth=1024, lut_count=8,
                                  target_mhz=100.0, ln_pipelines=1, lut_columns=3,
                                  requant_lanes=3, ln_engines=1),
    # Colorlight 5A-75B (ECP5 LFE5U-25F speed grade 6): 28 MULT18X18D, 56 EBR. Sized for the
    # whole board top (tests/test_hw_resources.py): a 2x2 array, as every product of the
    # GEMM core (rows * cols + 2 * cols), vector (2 * rows) and LayerNorm (2 * ln_pipelines)
    # units, the attention unit (2 * attn_lanes + 4) and the controller and link checks (3) is a
    # MULT18X18D: 25 of 28 (a 4x4 array alone took 24). 64 instructions (the digits model has
    # 46): each of the 32 instruction byte lanes is then LUT RAM, not a DP16KD (hw.bram).
    "colorlight_5a75b": AccelParams(name="colorlight_5a75b", rows=2, cols=2, k_depth=512,
                                    window=16, head_dim=16, attn_lanes=2, act_depth=8192,
                                    wgt_depth=32768, instr_depth=64, lut_count=4,
                                    target_mhz=100.0, ln_pipelines=1,
                                    host_units=("attn", "lnorm")),
    # Simulation only: larger models than any board holds.
    "sim_large": AccelParams(name="sim_large", rows=16, cols=16, k_depth=4096, window=64,
                             head_dim=64, attn_lanes=16, act_depth=65536, wgt_depth=1 << 20,
                             instr_depth=4096, lut_count=16, target_mhz=100.0),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset(name: str) -> AccelParams:
    """The named preset; ``ValueError`` lists the known names.

    Preset names use underscores (``ulx3s_85f``), board names hyphens (``ulx3s-85f``): a
    preset asked for in the other spelling is answered with a hint.
    """
    if not isinstance(name, str):
        raise TypeError(f"preset name must be a str, not {name!r}")
    try:
        return PRESETS[name]
    except KeyError:
        pass
    spelled = name.replace("-", "_")
    if spelled in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; did you mean {spelled!r}? (preset names "
                         f"use underscores, board names hyphens)")
    raise ValueError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
