"""Shared helpers for curves: host-side validation and a safe-gradient toolkit."""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np


def check_positive_scalar(owner: str, name: str, value: Any) -> float:
    """Return ``value`` as a float, or raise naming ``owner.name`` if not finite and > 0."""
    try:
        x = float(np.asarray(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{owner}.{name} must be a finite positive number, got {value!r}") from err
    if not math.isfinite(x) or x <= 0.0:
        raise ValueError(f"{owner}.{name} must be a finite positive number, got {value!r}")
    return x


def safe_positive(x: jnp.ndarray, valid: jnp.ndarray, fill: float | jnp.ndarray = 1.0) -> jnp.ndarray:
    """Replace ``x`` by ``fill`` where ``valid`` is false, *before* a singular function is applied.

    The "double where" trick: ``jnp.where(valid, f(x), 0)`` alone still differentiates
    ``f`` at the invalid ``x`` and turns a NaN there into a NaN gradient.
    """
    return jnp.where(valid, x, fill)
