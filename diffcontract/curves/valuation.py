"""Valuations v(r): the money value of a model of accuracy r in [0, 1].

Each is increasing with v(0) = 0, an immutable pytree, and has an ``inverse`` (used to realize
rewards under proportional assignment, docs/model.md "Realizing rewards: proportional assignment").
"""

from __future__ import annotations

from typing import ClassVar

import jax.numpy as jnp
from flax import struct

from .._jit import compiled_when_eager
from ._base import ParametricCurve


@struct.dataclass
class Linear(ParametricCurve):
    """Linear valuation v(r) = scale * r (the paper's default, scale = 100)."""

    scale: float = 100.0
    concave: ClassVar[bool] = True  # v'' = 0: v(a) is concave wherever a is (method="global")

    @compiled_when_eager
    def __call__(self, r: jnp.ndarray) -> jnp.ndarray:
        return self.scale * jnp.asarray(r)

    def inverse(self, value: jnp.ndarray) -> jnp.ndarray:
        return jnp.asarray(value) / self.scale


@struct.dataclass
class Exponential(ParametricCurve):
    r"""Concave (CARA) valuation :math:`v(r) = s \frac{1 - e^{-\gamma r}}{1 - e^{-\gamma}}`.

    Normalized so that v(1) = scale; gamma -> 0 recovers the linear valuation.

    Args:
      scale: value of a perfect model, money units, > 0.
      gamma: risk aversion / curvature, > 0.
    """

    scale: float = 100.0
    gamma: float = 1.0
    concave: ClassVar[bool] = True  # increasing and concave: v(a) is concave wherever a is

    @compiled_when_eager
    def __call__(self, r: jnp.ndarray) -> jnp.ndarray:
        return self.scale * jnp.expm1(-self.gamma * jnp.asarray(r)) / jnp.expm1(-self.gamma)

    def inverse(self, value: jnp.ndarray) -> jnp.ndarray:
        z = jnp.asarray(value) / self.scale * jnp.expm1(-self.gamma)
        return -jnp.log1p(z) / self.gamma
