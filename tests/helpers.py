# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the ``amaranth.sim`` unit tests (``tests/test_hw_*.py``).

``FakePlatform`` stands in for a board platform where only its ``family`` matters (the
multiplier and block-RAM factories pick the ECP5 primitives by it). The lane helpers pack and
unpack words of two's-complement lanes (``ArrayLayout(signed(8), n)`` payloads and the GEMM
core's write words). The stream helpers follow the Amaranth stream rules (``hw/README.md``):
``valid`` never waits for ``ready``, a payload is held until it is taken.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = ["FakePlatform", "array_operands", "pack_lanes", "random_operand_tiles",
           "check_lane_unit_arguments", "run_testbenches", "set_ports", "stream_get", "stream_put",
           "unpack_lanes"]


class FakePlatform:
    """A platform object with only a ``family`` (``"ecp5"``, ``"iCE40"``)."""

    def __init__(self, family: str):
        self.family = family


def pack_lanes(values: Iterable[int], width: int = 8) -> int:
    """``values`` as two's-complement ``width``-bit lanes, lane 0 in the low bits."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (width * i)
    return word


def unpack_lanes(bits: int, count: int, width: int = 8, offset: int = 0) -> list[int]:
    """``count`` signed ``width``-bit lanes of ``bits``, the first at bit ``offset``."""
    out = []
    for i in range(count):
        v = (bits >> (offset + i * width)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


def check_lane_unit_arguments(cls: type) -> None:
    """The argument checks every ``cols``-lane unit shares: ``from_params`` refuses what is not
    an ``AccelParams``, ``cols`` outside ``[1, 32]`` or not an integer, ``use_dsp`` not a bool."""
    import pytest

    with pytest.raises(TypeError, match="params must be an AccelParams"):
        cls.from_params(4)
    for bad, exc in ((0, ValueError), (33, ValueError), ("4", TypeError), (True, TypeError),
                     (None, TypeError)):
        with pytest.raises(exc, match="cols must be"):
            cls(bad)
    with pytest.raises(TypeError, match="use_dsp must be a bool"):
        cls(2, use_dsp=0)


def set_ports(ctx, dut, **values: int) -> None:
    """``ctx.set`` each port ``dut.<name>`` named in ``values`` (they take effect together)."""
    for name, value in values.items():
        ctx.set(getattr(dut, name), value)


async def stream_put(ctx, port, payload, rng=None, *, max_idle: int = 2) -> None:
    """Offer one ``payload`` (an int is the raw bits) on ``port`` until it is taken; with
    ``rng``, idle 1..``max_idle`` cycles (``valid`` low) before it, 40 % of the time."""
    if rng is not None and rng.random() < 0.4:
        ctx.set(port.valid, 0)
        await ctx.tick().repeat(int(rng.integers(1, max_idle + 1)))
    ctx.set(port.valid, 1)
    if isinstance(payload, int):
        ctx.set(Value.cast(port.payload), payload)
    else:
        ctx.set(port.payload, payload)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, count: int, rng=None, *, ready_rate: float = 0.6) -> list[int]:
    """``count`` raw payloads taken from ``port``; with ``rng``, ``ready`` is high in a
    ``ready_rate`` share of the cycles (backpressure)."""
    out = []
    while len(out) < count:
        ready = 1 if rng is None else int(rng.random() < ready_rate)
        ctx.set(port.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(port.valid, Value.cast(port.payload))
        if valid and ready:
            out.append(payload)
    ctx.set(port.ready, 0)
    return out


def run_testbenches(dut, *testbenches, deadline_us: float | None = 2000) -> None:
    """Simulate ``dut`` at 1 MHz with ``testbenches`` until ``deadline_us`` (``None``: until
    every testbench has returned)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    if deadline_us is None:
        sim.run()
    else:
        sim.run_until(deadline_us * 1e-6)


def watch_selects(sim, dut) -> dict:
    """Add a background testbench to ``sim`` that checks, every cycle, that no two selects of
    one of the controller's exclusive sets are high (``dut``: a ``Controller``, or an
    ``Accelerator``, whose ``controller`` it watches; ``hw.controller.Controller``'s
    ``select_conflict``). Returns what it saw, filled while the simulation runs: ``cycles``,
    ``active`` (cycles with a select high) and ``conflicts`` (``(cycle, [set names])``).
    Elaborate first (``Simulator(dut)``)."""
    seen: dict = {"cycles": 0, "active": 0, "conflicts": []}
    ctrl = getattr(dut, "controller", None) or dut
    sets = ctrl.select_conflicts
    assert sets, "elaborate the design (Simulator(dut)) before watch_selects"

    async def watch(ctx):
        while True:
            await ctx.tick()
            seen["cycles"] += 1
            seen["active"] += ctx.get(ctrl.select_active)
            if ctx.get(ctrl.select_conflict):
                seen["conflicts"].append(
                    (seen["cycles"], [name for name, c in sets.items() if ctx.get(c)]))
    sim.add_testbench(watch, background=True)
    return seen


def assert_selects_exclusive(seen: dict) -> None:
    """The checks of :func:`watch_selects`: no conflict, and some select seen (not vacuous)."""
    assert not seen["conflicts"], f"exclusive selects high together: {seen['conflicts'][:5]}"
    assert seen["active"] > 0 and seen["cycles"] > seen["active"], seen


def array_operands(A: np.ndarray, W: np.ndarray, k: int) -> dict:
    """Transfer ``k`` of a tile on ``SystolicArray.i_stream``: ``A[:, k]``, ``W[k, :]``, last."""
    return {"act": [int(x) for x in A[:, k]], "wgt": [int(x) for x in W[k]],
            "last": int(k == A.shape[1] - 1)}


def random_operand_tiles(rng, rows: int, cols: int, ks) -> list[tuple[np.ndarray, np.ndarray]]:
    """One random int8 ``(A, W)`` pair per reduction length in ``ks``."""
    return [(rng.integers(-128, 128, (rows, K), dtype=np.int8),
             rng.integers(-128, 128, (K, cols), dtype=np.int8)) for K in ks]


def outputs_and_grads(f, module, x, g) -> list:
    """``f(x)`` and the gradients of ``<f(x), g>`` with respect to ``x`` and every parameter of
    ``module`` (torch tensors; torch is imported by the caller's test)."""
    x = x.detach().clone().requires_grad_(True)
    module.zero_grad(set_to_none=True)
    y = f(x)
    (y * g).sum().backward()
    return [y.detach(), x.grad] + [p.grad.clone() for p in module.parameters()]


def assert_same_as_reference(attn, x, g, **tol) -> None:
    """``attn``'s forward and its ``_forward_reference`` give the same output and the same
    gradients (:func:`outputs_and_grads`), all finite, within ``torch.testing.assert_close``
    tolerances ``tol``."""
    import torch

    got = outputs_and_grads(attn, attn, x, g)
    ref = outputs_and_grads(attn._forward_reference, attn, x, g)
    assert len(got) == len(ref) == 2 + len(list(attn.parameters()))
    for a, b in zip(got, ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, **tol)
