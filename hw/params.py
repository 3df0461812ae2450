# SPDX-License-Identifier: Apache-2.0
"""``AccelParams``: the one source of truth for the accelerator's shape.

The hardware generators, the NumPy reference model, the compiler, the driver and the board
builds all read the same frozen object (Gemmini's config class, VTA's config JSON).
``digest()`` names every build cache and is the ``DESIGN_ID`` the device reports.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["AccelParams", "PRESETS", "preset", "preset_names"]


def _check_int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"AccelParams.{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"AccelParams.{name} must be in [{lo}, {hi}], not {value!r}")


def _is_pow2(x: int) -> bool:
    return x > 0 and (x & (x - 1)) == 0


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
    window : int
        Sliding attention window (keys per query row), 1..256.
    head_dim : int
        Largest attention head dimension, 1..128.
    attn_lanes : int
        Multiply lanes of the attention unit (MACs per cycle), 1..64; must divide ``head_dim``.
    attn_causal : bool
        Causal (keys ``t-window+1 .. t``) or centred (``t-window//2 .. t+(window-1)//2``, exactly
        ``window`` keys) window, clipped to ``[0, T)``.
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

    # Fixed numerics (see sw/quant.py); part of the contract, not knobs.
    act_width: int = dataclasses.field(default=8, init=False)
    wgt_width: int = dataclasses.field(default=8, init=False)
    acc_width: int = dataclasses.field(default=32, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"AccelParams.name must be a non-empty string, not {self.name!r}")
        _check_int("rows", self.rows, 1, 32)
        _check_int("cols", self.cols, 1, 32)
        _check_int("k_depth", self.k_depth, 16, 4096)
        if not _is_pow2(self.k_depth):
            raise ValueError(f"AccelParams.k_depth must be a power of two, not {self.k_depth!r}")
        for flag in ("dsp_multipliers", "attn_causal"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"AccelParams.{flag} must be a bool, not {getattr(self, flag)!r}")
        _check_int("window", self.window, 1, 256)
        _check_int("head_dim", self.head_dim, 1, 128)
        _check_int("attn_lanes", self.attn_lanes, 1, 64)
        if self.head_dim % self.attn_lanes:
            raise ValueError(
                f"AccelParams.attn_lanes must divide head_dim ({self.head_dim}), "
                f"not {self.attn_lanes!r}")
        for field, lo, hi in (("act_depth", 64, 1 << 20), ("wgt_depth", 64, 1 << 22),
                              ("instr_depth", 16, 1 << 16)):
            value = getattr(self, field)
            _check_int(field, value, lo, hi)
            if not _is_pow2(value):
                raise ValueError(f"AccelParams.{field} must be a power of two, not {value!r}")
        _check_int("lut_count", self.lut_count, 1, 64)
        if isinstance(self.target_mhz, bool) or not isinstance(self.target_mhz, (int, float)):
            raise TypeError(f"AccelParams.target_mhz must be a number, not {self.target_mhz!r}")
        if not 1.0 <= self.target_mhz <= 500.0:
            raise ValueError(
                f"AccelParams.target_mhz must be in [1, 500] MHz, not {self.target_mhz!r}")
        _check_int("baud", self.baud, 9600, 12_000_000)

    # -- identity -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def digest(self, fields: Iterable[str] | None = None) -> str:
        """16 hex digits naming this configuration (``DESIGN_ID``) or a part of it.

        With ``fields`` (names of parameters), only those enter the digest: a unit's build cache
        is keyed by the parameters that unit reads (``unit_fields`` of each unit), so changing
        the link's ``baud`` does not rebuild the Verilated GEMM core.
        """
        full = self.to_dict()
        if fields is None:
            chosen = full
        else:
            names = sorted(set(fields))
            unknown = [n for n in names if n not in full]
            if unknown:
                raise ValueError(
                    f"digest fields must be AccelParams fields, not {', '.join(unknown)}")
            chosen = {n: full[n] for n in names}
        blob = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2s(blob.encode(), digest_size=8).hexdigest()

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


PRESETS: dict[str, AccelParams] = {
    # Fast tests: small enough to Verilate in ~10 s.
    "tiny": AccelParams(name="tiny", rows=4, cols=4, k_depth=256, window=8, head_dim=8,
                        attn_lanes=4, act_depth=4096, wgt_depth=16384, target_mhz=25.0),
    # iCE40UP5K: 5280 LUT4, 8 SB_MAC16, 30 EBR (120 kbit), 1 Mbit SPRAM. A 2x2 array: its 4 PE
    # products and the requantizer's 2 x 2 partial products use exactly the 8 SB_MAC16
    # (a 2x4 array needed 16 and 5333 of 5280 logic cells; docs/boards.md).
    "icebreaker": AccelParams(name="icebreaker", rows=2, cols=2, k_depth=256, window=8,
                              head_dim=8, attn_lanes=2, act_depth=2048, wgt_depth=8192,
                              instr_depth=64, lut_count=2, target_mhz=12.0),
    # ECP5 LFE5U-85F speed grade 6: 156 MULT18X18D, 208 EBR (18 kbit each).
    "ulx3s_85f": AccelParams(name="ulx3s_85f", rows=8, cols=8, k_depth=1024, window=32,
                             head_dim=32, attn_lanes=8, act_depth=16384, wgt_depth=131072,
                             instr_depth=1024, lut_count=8, target_mhz=125.0),
    # Colorlight 5A-75B (ECP5 LFE5U-25F speed grade 6): 28 MULT18X18D, 56 EBR.
    "colorlight_5a75b": AccelParams(name="colorlight_5a75b", rows=4, cols=4, k_depth=512,
                                    window=16, head_dim=16, attn_lanes=4, act_depth=8192,
                                    wgt_depth=32768, instr_depth=256, lut_count=4,
                                    target_mhz=125.0),
    # Simulation only: larger models than any board holds.
    "sim_large": AccelParams(name="sim_large", rows=16, cols=16, k_depth=4096, window=64,
                             head_dim=64, attn_lanes=16, act_depth=65536, wgt_depth=1 << 20,
                             instr_depth=4096, lut_count=16, target_mhz=100.0),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset(name: str) -> AccelParams:
    """The named preset; ``ValueError`` lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
