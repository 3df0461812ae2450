# SPDX-License-Identifier: Apache-2.0
"""Bad input gets one clear error, never a traceback and never a vacuous pass: the simulation
knobs (``NUM_SAMPLES``, ``LF_SEED``, ``LF_EFFORT``) and every command's arguments and output
paths, checked before any long job starts. Each case is fast (no simulation, no training)."""

from __future__ import annotations

import pytest

from sim import suites

GOOD = {"NUM_SAMPLES": "", "LF_SEED": "", "LF_EFFORT": "default"}


# -- the simulation knobs -------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("NUM_SAMPLES", "0", "NUM_SAMPLES must be an integer >= 1, not '0'"),
    ("NUM_SAMPLES", "-1", "NUM_SAMPLES must be an integer >= 1, not '-1'"),
    ("NUM_SAMPLES", "abc", "NUM_SAMPLES must be an integer >= 1, not 'abc'"),
    ("NUM_SAMPLES", "1.5", "NUM_SAMPLES must be an integer >= 1, not '1.5'"),
    ("LF_SEED", "abc", "LF_SEED must be an integer >= 0, not 'abc'"),
    ("LF_SEED", "-3", "LF_SEED must be an integer >= 0, not '-3'"),
    ("LF_EFFORT", "bogus", "LF_EFFORT must be one of fast, default, slow, not 'bogus'"),
    ("LF_EFFORT", "", "LF_EFFORT must be one of fast, default, slow, not ''"),
])
def test_knobs_refuse_values_that_would_check_nothing(monkeypatch, name, value, message):
    for key, good in GOOD.items():
        monkeypatch.setenv(key, good)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{message}$"):
        suites.effort_samples({"fast": 1, "default": 2, "slow": 3})
    with pytest.raises(ValueError, match=f"^{message}$"):
        suites.check_knobs()


def test_knobs_good_values(monkeypatch):
    monkeypatch.delenv("NUM_SAMPLES", raising=False)
    monkeypatch.delenv("LF_SEED", raising=False)
    monkeypatch.setenv("LF_EFFORT", "fast")
    assert suites.effort_samples({"fast": 7, "default": 70, "slow": 700}) == 7
    assert suites.env_seed() == 1
    monkeypatch.setenv("NUM_SAMPLES", " 12 ")
    monkeypatch.setenv("LF_SEED", "0")
    assert suites.effort_samples({"fast": 7, "default": 70, "slow": 700}) == 12
    assert suites.env_seed() == 0


@pytest.mark.parametrize("env, argv, message", [
    ({"NUM_SAMPLES": "0"}, [], "lightformer sim: NUM_SAMPLES must be an integer >= 1, not '0'"),
    ({"LF_SEED": "abc"}, [], "lightformer sim: LF_SEED must be an integer >= 0, not 'abc'"),
    ({"LF_EFFORT": "bogus"}, [], "lightformer sim: LF_EFFORT must be one of fast"),
    ({}, ["--seed", "-1"], "lightformer sim: LF_SEED must be an integer >= 0, not '-1'"),
])
def test_sim_command_refuses_bad_knobs_before_running(monkeypatch, capsys, env, argv, message):
    import subprocess

    from sw.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: pytest.fail("pytest was started"))
    assert main(["sim", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
