# SPDX-License-Identifier: Apache-2.0
"""AccelParams: validation messages, presets, digest stability."""

from __future__ import annotations

import dataclasses

import pytest

from hw.params import PRESETS, AccelParams, preset


@pytest.mark.parametrize(("field", "value", "exc", "match"), [
    ("rows", 0, ValueError, r"AccelParams.rows must be an integer in \[1, 32\], not 0"),
    ("cols", 33, ValueError, r"AccelParams.cols must be an integer in \[1, 32\], not 33"),
    ("rows", 4.0, TypeError, "AccelParams.rows must be an integer, not 4.0"),
    ("rows", True, TypeError, "AccelParams.rows must be an integer"),
    ("k_depth", 100, ValueError, "AccelParams.k_depth must be a power of two, not 100"),
    ("k_depth", 8, ValueError, r"AccelParams.k_depth must be an integer in \[16, 4096\]"),
    ("window", 0, ValueError, "AccelParams.window"),
    ("attn_lanes", 3, ValueError, r"AccelParams.attn_lanes must divide head_dim \(8\), not 3"),
    ("act_depth", 1000, ValueError, "AccelParams.act_depth must be a power of two"),
    ("target_mhz", 0.5, ValueError, "AccelParams.target_mhz"),
    ("target_mhz", "fast", TypeError, "AccelParams.target_mhz must be a number"),
    ("dsp_multipliers", 1, TypeError, "AccelParams.dsp_multipliers must be a bool"),
    ("baud", 300, ValueError, "AccelParams.baud"),
    ("name", "", TypeError, "AccelParams.name"),
    ("host_units", "attn", TypeError, "AccelParams.host_units must be a tuple of unit names"),
    ("host_units", ("gemm",), ValueError, "must name each of attn, lnorm at most once"),
    ("host_units", ("attn", "attn"), ValueError, "at most once, not"),
])
def test_params_invalid_field_message(field, value, exc, match):
    with pytest.raises(exc, match=match):
        AccelParams(**{field: value})


def test_params_frozen():
    p = preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rows = 8  # type: ignore[misc]


def test_params_presets_valid_and_named():
    assert {"tiny", "icebreaker", "ulx3s_85f", "sim_large"} <= set(PRESETS)
    for name, p in PRESETS.items():
        assert p.name == name
    assert preset("ulx3s_85f").rows >= 8 and preset("ulx3s_85f").cols >= 8
    assert preset("ulx3s_85f").target_mhz >= 100


def test_params_unknown_preset_lists_names():
    with pytest.raises(ValueError, match="Unknown preset 'nope'; choose one of: tiny"):
        preset("nope")


def test_params_preset_in_board_spelling_gets_a_hint():
    with pytest.raises(ValueError, match="did you mean 'ulx3s_85f'"):
        preset("ulx3s-85f")


def test_params_digest_stable_and_sensitive():
    a = preset("tiny")
    assert a.digest() == AccelParams(**{f.name: getattr(a, f.name)
                                        for f in dataclasses.fields(a) if f.init}).digest()
    assert len(a.digest()) == 16
    assert a.replace(rows=2).digest() != a.digest()
    assert len({p.digest() for p in PRESETS.values()}) == len(PRESETS)
    assert 0 <= a.design_id < 2 ** 32


def test_params_replace_revalidates():
    with pytest.raises(ValueError, match="rows"):
        preset("tiny").replace(rows=0)


def test_params_integer_and_float_clock_are_one_design():
    from hw.params import AccelParams

    a, b = AccelParams(target_mhz=25), AccelParams(target_mhz=25.0)
    assert a == b and a.digest() == b.digest() and a.design_id == b.design_id
    assert isinstance(a.target_mhz, float)


def test_params_host_units_enter_the_digest_only_when_set():
    """``host_units`` (added after the other fields) leaves the digest of a full design as it
    was (its blake2s over the other fields alone); set, it changes the design id, in any order
    of the names and through a JSON round trip (a list)."""
    import hashlib
    import json

    a = preset("tiny")
    fields = {k: v for k, v in a.to_dict().items() if k != "host_units"}
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    assert a.digest() == hashlib.blake2s(blob, digest_size=8).hexdigest()
    b = a.replace(host_units=("lnorm", "attn"))
    assert b.host_units == ("attn", "lnorm") and b.digest() != a.digest()
    d = json.loads(json.dumps(b.to_dict()))
    for k in ("act_width", "wgt_width", "acc_width"):
        d.pop(k)
    assert isinstance(d["host_units"], list) and AccelParams(**d) == b
    assert a.digest(["rows", "host_units"]) == a.digest(["rows"])
    assert b.digest(["rows", "host_units"]) != b.digest(["rows"])
