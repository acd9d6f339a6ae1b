"""Shared helpers for curves: host-side validation and a safe-gradient toolkit."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import numpy as np


def shown(value: Any) -> str:
    """``repr`` for error messages, numpy scalars and arrays as plain Python (``0.6``, not
    ``np.float64(0.6)``; ``[1.0, nan]``, not ``array([1., nan])``)."""
    if isinstance(value, (np.generic, np.ndarray)) or type(value).__module__.startswith("jax"):
        try:
            return repr(np.asarray(value).tolist())
        except (TypeError, ValueError):
            pass
    return repr(value)


def _number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number."""
    try:
        return float(np.asarray(value))
    except (TypeError, ValueError):
        return None


class ParametricCurve:
    """Base of the parametric curves (accuracy curves, families and valuations).

    ``validate`` reads its table of checks from the dataclass fields, by name: ``a_opt`` (an
    asymptote) must be in (0, 1], ``a_0`` (the value at zero data) in [0, a_opt], a curve inside a
    curve (``ScaledAccuracy.curve``) validates itself last, and every other parameter must be a
    finite number > 0. A subclass with further conditions calls it first, then checks them.
    """

    def validate(self) -> None:
        """Host-side check of the parameters; raises ValueError naming ``Class.field``."""
        owner = type(self).__name__
        for f in sorted(dataclasses.fields(self), key=lambda f: callable(getattr(self, f.name))):
            value = getattr(self, f.name)
            if callable(value):
                getattr(value, "validate", lambda: None)()
                continue
            x = _number(value)
            if f.name == "a_0":
                a_opt = float(np.asarray(self.a_opt))
                if x is None:
                    raise ValueError(f"{owner}.a_0 must be a number in [0, a_opt], got {shown(value)}")
                if not 0.0 <= x <= a_opt:
                    raise ValueError(f"{owner}.a_0 must be in [0, a_opt] = [0, {a_opt}], got {shown(value)}")
            elif x is None or not math.isfinite(x) or x <= 0.0:
                raise ValueError(f"{owner}.{f.name} must be a finite positive number, got {shown(value)}")
            elif f.name == "a_opt" and x > 1.0:
                raise ValueError(f"{owner}.a_opt must be in (0, 1], got {shown(x)}")


#: Relative margin added to a computed inflection or zero crossing in ``concave_from``: the declared
#: point lies strictly inside the smooth concave branch, never on a kink.
CONCAVITY_MARGIN = 1e-9


def root_of_increasing(fn, lower: float) -> float:
    """Host-side: a point just above the zero crossing of ``fn``, increasing past ``lower``, by bisection.

    Args:
      fn: float -> float, < 0 at ``lower`` and increasing to > 0 beyond it.
      lower: a point where ``fn`` < 0.
    Returns:
      The upper end of the final bracket (``fn`` > 0 there), to float64 resolution.
    """
    low, high = float(lower), 2.0 * float(lower) + 1.0
    while fn(high) <= 0.0:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        low, high = (mid, high) if fn(mid) <= 0.0 else (low, mid)
    return high


def concavity_start(curve) -> float:
    """Host side: the curve's ``concave_from()``: x_c >= 0 with the curve concave on [x_c, inf).

    Global optimization (``method="global"``) bounds a curve over an interval of data by its
    concavity there; a curve that does not state where it is concave cannot be bounded.

    Raises:
      ValueError naming the curve's class when it has no ``concave_from``.
    """
    method = getattr(curve, "concave_from", None)
    if method is None:
        raise ValueError(f"accuracy curve {type(curve).__name__} does not state where it is concave (it has no "
                         f"concave_from()), so method='global' cannot bound it; use a parametric curve "
                         f"(GeneralizationBound, PowerLaw, the families of curves.families)")
    value = float(method())
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"{type(curve).__name__}.concave_from() must be a finite number >= 0, got {value!r}")
    return value


class SaturatingCurve(ParametricCurve):
    """A parametric accuracy curve that saturates at its asymptote ``a_opt``."""

    @property
    def a_max(self):
        """Supremum of the curve, the asymptote a_opt."""
        return self.a_opt


def safe_positive(x: jnp.ndarray, valid: jnp.ndarray, fill: float | jnp.ndarray = 1.0) -> jnp.ndarray:
    """Replace ``x`` by ``fill`` where ``valid`` is false, *before* a singular function is applied.

    The "double where" trick: ``jnp.where(valid, f(x), 0)`` alone still differentiates
    ``f`` at the invalid ``x`` and turns a NaN there into a NaN gradient.
    """
    return jnp.where(valid, x, fill)
