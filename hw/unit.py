# SPDX-License-Identifier: Apache-2.0
"""Units built from :class:`hw.params.AccelParams`: one ``from_params``, one build-cache key.

A unit that the boards, the simulator or the controller build from an ``AccelParams`` derives
from :class:`Unit` and names the fields it reads in ``params_fields``::

    class SystolicArray(Unit):
        params_fields = ("rows", "cols", "dsp_multipliers")

        def __init__(self, rows, cols, *, use_dsp=True, family=None):
            self._rows = check_int("rows", rows, 1, MAX_DIM)
            ...

:meth:`Unit.from_params` hands exactly those fields to the constructor, each under the
constructor's argument name (:data:`ARGUMENT_NAMES`: ``dsp_multipliers`` is ``use_dsp``,
``attn_lanes`` is ``lanes``), with keyword overrides on top (``family="ecp5"``). The constructor
checks every argument with :mod:`hw.checks` (wrong type: ``TypeError``; illegal value:
``ValueError``) and keeps it in ``self._<name>``. Each such argument is published read-only
(``unit.rows``, ``unit.use_dsp``) by a :class:`Setting` that :class:`Unit` adds by itself; a unit
declares a ``Setting`` only for its other parameters (``kv_slots = Setting("...")``).

:func:`unit_digest` names a unit's build caches by the same fields, so a change to a field the
unit does not read (the link's ``baud``) does not rebuild it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from amaranth.lib import wiring

from hw.params import AccelParams

__all__ = ["ARGUMENT_NAMES", "ParamSignature", "Setting", "Unit", "check_params", "unit_digest"]

#: Constructor argument of each ``AccelParams`` field whose name differs from the field's.
ARGUMENT_NAMES: dict[str, str] = {"dsp_multipliers": "use_dsp", "attn_lanes": "lanes",
                                   "ln_pipelines": "pipelines", "vec_dsp_products": "dsp_products",
                                   "ln_engines": "engines"}


def check_params(params: object) -> AccelParams:
    """``params`` if it is an :class:`~hw.params.AccelParams`; ``TypeError`` otherwise."""
    if not isinstance(params, AccelParams):
        raise TypeError(f"params must be an AccelParams, not {params!r}")
    return params


class Setting:
    """Read-only attribute ``name`` of a unit, backed by the ``_name`` its constructor set."""

    def __init__(self, doc: str | None = None):
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._attr = "_" + name

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self._attr)

    def __set__(self, obj: object, value: object) -> None:
        raise AttributeError(f"{self._name} is read-only")


class ParamSignature(wiring.Signature):
    """A signature fixed by a few named, already checked parameters.

    A subclass checks its arguments, then calls ``super().__init__(members, name=value, ...)``
    and declares each parameter as a :class:`Setting` (``addr_width = Setting(...)``). Two such
    signatures are equal when they are of one class with equal parameters (Amaranth compares a
    ``Signature`` subclass by identity otherwise), and the ``repr`` names the class and the
    parameters, as the constructor call that builds it.
    """

    def __init__(self, members: dict[str, object], **params: object) -> None:
        self._params = params
        for name, value in params.items():
            setattr(self, "_" + name, value)
        super().__init__(members)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params == other._params

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._params.items())
        return f"{type(self).__qualname__}({args})"


class Unit(wiring.Component):
    """A component built from :class:`~hw.params.AccelParams` (module docstring).

    Attributes
    ----------
    params_fields : tuple of str
        The ``AccelParams`` fields the unit reads: the arguments of :meth:`from_params` and
        the key of :func:`unit_digest`.
    """

    params_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for field in cls.params_fields:
            name = ARGUMENT_NAMES.get(field, field)
            if not hasattr(cls, name):
                setting = Setting(f"``AccelParams.{field}`` of this unit (read-only).")
                setting.__set_name__(cls, name)
                setattr(cls, name, setting)

    @classmethod
    def params_arguments(cls, params: AccelParams) -> dict[str, object]:
        """Constructor keyword arguments taken from ``params`` (``params_fields`` only)."""
        check_params(params)
        return {ARGUMENT_NAMES.get(f, f): getattr(params, f) for f in cls.params_fields}

    @classmethod
    def from_params(cls, params: AccelParams, **overrides: object):
        """The unit of ``params``; ``overrides`` replace or add constructor arguments."""
        return cls(**{**cls.params_arguments(params), **overrides})


def unit_digest(unit: type[Unit] | Unit, params: AccelParams) -> str:
    """16 hex digits naming ``unit`` (a :class:`Unit` class or instance) built from ``params``:
    ``params.digest(unit.params_fields)``, the key of the unit's build caches."""
    cls = unit if isinstance(unit, type) else type(unit)
    if not issubclass(cls, Unit):
        raise TypeError(f"unit must be a hw.unit.Unit class or instance, not {unit!r}")
    return check_params(params).digest(cls.params_fields)
