# SPDX-License-Identifier: Apache-2.0
"""hw.unit: building every unit from AccelParams, overrides, read-only settings, digests."""

from __future__ import annotations

import pytest

from hw.attention import WindowedAttention
from hw.gemm import GemmPipeline
from hw.gemm_core import GemmCore
from hw.params import AccelParams, preset
from hw.requant import Requantizer
from hw.systolic import SystolicArray
from hw.unit import ARGUMENT_NAMES, Setting, Unit, unit_digest

UNITS = [SystolicArray, GemmPipeline, Requantizer, GemmCore, WindowedAttention]


@pytest.mark.parametrize("cls", UNITS)
def test_unit_from_params_reads_its_fields(cls):
    p = AccelParams(rows=3, cols=5, k_depth=64, head_dim=16, window=4, attn_lanes=8,
                    dsp_multipliers=False)
    unit = cls.from_params(p)
    assert isinstance(unit, Unit)
    assert cls.params_fields, "a unit names the AccelParams fields it reads"
    for field in cls.params_fields:
        assert getattr(unit, ARGUMENT_NAMES.get(field, field)) == getattr(p, field)


@pytest.mark.parametrize("cls", UNITS)
def test_unit_from_params_rejects_other_objects(cls):
    with pytest.raises(TypeError, match="params must be an AccelParams, not 'tiny'"):
        cls.from_params("tiny")


def test_unit_from_params_overrides():
    arr = SystolicArray.from_params(preset("tiny"), use_dsp=False, family="ecp5")
    assert (arr.rows, arr.use_dsp) == (4, False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):
        SystolicArray.from_params(preset("tiny"), depth=3)


def test_unit_settings_are_read_only():
    arr = SystolicArray(2, 3)
    with pytest.raises(AttributeError, match="rows is read-only"):
        arr.rows = 4
    assert arr.rows == 2


@pytest.mark.parametrize("cls", UNITS)
def test_unit_digest_keys_only_the_fields_read(cls):
    p = preset("tiny")
    assert unit_digest(cls, p) == p.digest(cls.params_fields) == unit_digest(
        cls.from_params(p), p)
    assert len(unit_digest(cls, p)) == 16
    # A field no unit reads (the link's baud) leaves every unit's digest alone ...
    assert unit_digest(cls, p.replace(baud=9600)) == unit_digest(cls, p)
    # ... and each field it reads changes it.
    changed = {"rows": 2, "cols": 2, "k_depth": 128, "dsp_multipliers": False, "head_dim": 4,
               "window": 4, "attn_lanes": 2, "lut_columns": 1}
    for field in cls.params_fields:
        assert unit_digest(cls, p.replace(**{field: changed[field]})) != unit_digest(cls, p)


def test_unit_digest_rejects_non_units():
    with pytest.raises(TypeError, match="unit must be a hw.unit.Unit"):
        unit_digest(int, preset("tiny"))
    with pytest.raises(TypeError, match="params must be an AccelParams"):
        unit_digest(SystolicArray, {"rows": 2})


def test_unit_adds_a_setting_per_field_unless_declared():
    class Toy(Unit):
        params_fields = ("rows", "attn_lanes")
        rows = Setting("Declared by the unit.")

        def __init__(self, rows, lanes):
            self._rows, self._lanes = rows, lanes
            super().__init__({})

    toy = Toy.from_params(preset("tiny"))
    assert (toy.rows, toy.lanes) == (4, 4)
    assert Toy.rows.__doc__ == "Declared by the unit."
    assert "AccelParams.attn_lanes" in Toy.lanes.__doc__
    with pytest.raises(AttributeError, match="lanes is read-only"):
        toy.lanes = 2
