"""Accuracy curves a(x): accuracy of a model trained on x units of (effective) data.

Every curve is an immutable pytree (``flax.struct.dataclass``) whose parameters are leaves, so a
curve can be passed through ``jit``/``vmap``/``grad`` and its parameters differentiated. Each is
non-decreasing in x, bounded in [0, a_max], and has finite values and gradients for every x >= 0,
including x = 0 and the kinks where a clipped branch begins.
"""

from __future__ import annotations

import math
import sys

import jax.numpy as jnp
from flax import struct

from .._jit import compiled_when_eager
from ._base import CONCAVITY_MARGIN, ParametricCurve, SaturatingCurve, root_of_increasing, safe_positive

#: Concavity of the SGB's unclipped branch: with L = 2 + ln(x/k) it is concave where 3L^2 - 4L - 1 > 0,
#: i.e. L > (2 + sqrt 7) / 3 (the second derivative of sqrt(L / x), docs/howto/global.md).
_SGB_CONCAVE_LOG = (2.0 + math.sqrt(7.0)) / 3.0


@struct.dataclass
class GeneralizationBound(SaturatingCurve):
    r"""Standard generalization bound (SGB) accuracy curve (docs/model.md, "Accuracy of the pooled data").

    .. math::
        a(x) = \max\Big(0,\ a_{opt} - \frac{\sqrt{2k(2 + \ln(x/k))} + 4}{\sqrt{x}}\Big)
        \quad (x > k e^{-2}), \qquad a(x) = 0 \quad (x \le k e^{-2}).

    Args:
      a_opt: asymptotic accuracy, in (0, 1].
      k: capacity (VC-dimension-like) constant, > 0.
    """

    a_opt: float = 1.0
    k: float = 1.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Accuracy at data size ``x`` (any shape, units of data)."""
        x = jnp.asarray(x)
        x0 = self.k * jnp.exp(-2.0)
        valid = x > x0
        xs = safe_positive(x, valid, 2.0 * x0)
        # The square root has an infinite slope exactly at x0; a floor on its argument keeps the
        # gradient finite there (the clipped branch usually hides it anyway).
        inner = jnp.maximum(2.0 + jnp.log(xs / self.k), 1e-30)
        raw = self.a_opt - (jnp.sqrt(2.0 * self.k * inner) + 4.0) / jnp.sqrt(xs)
        return jnp.where(valid, jnp.maximum(raw, 0.0), 0.0)

    def concave_from(self) -> float:
        """Host side: x_c (units of data) such that a is concave and smooth on [x_c, inf).

        The larger of the zero crossing of the unclipped branch (below it a = 0: the kink) and the
        branch's own inflection k exp((2 + sqrt 7) / 3 - 2), plus ``CONCAVITY_MARGIN``.
        """
        a_opt, k = float(self.a_opt), float(self.k)

        def raw(x: float) -> float:
            return a_opt - (math.sqrt(2.0 * k * max(2.0 + math.log(x / k), 0.0)) + 4.0) / math.sqrt(x)

        zero = root_of_increasing(raw, k * math.exp(-2.0) * (1.0 + CONCAVITY_MARGIN))
        return max(zero, k * math.exp(_SGB_CONCAVE_LOG - 2.0)) * (1.0 + CONCAVITY_MARGIN)

    def validate(self) -> None:
        super().validate()
        a_opt, k = float(self.a_opt), float(self.k)
        # a(x) > 0 needs a_opt > 4 / sqrt(x), i.e. x > 16 / a_opt^2: beyond the largest float the
        # curve is 0 at every representable data size (and a_opt**2 below underflows to 0).
        if a_opt < 4.0 / math.sqrt(sys.float_info.max):
            raise ValueError(f"GeneralizationBound.a_opt must be >= {4.0 / math.sqrt(sys.float_info.max):.3g}: "
                             f"a(x) > 0 needs x > 16 / a_opt^2, beyond every float64, got {a_opt!r}")
        # For k > 16 e^2 / a_opt^2 the unclipped branch is already positive at the kink k e^-2:
        # the curve jumps there and then decreases, so it is not an accuracy curve.
        k_max = 16.0 * math.e**2 / a_opt / a_opt
        if k > k_max:
            raise ValueError(f"GeneralizationBound.k must be <= 16 e^2 / a_opt^2 = {k_max:.6g} for a "
                             f"non-decreasing curve, got {k!r}")


@struct.dataclass
class PowerLaw(SaturatingCurve):
    r"""Power-law learning curve :math:`a(x) = \max(0, a_{opt} - b x^{-\alpha})`.

    Args:
      a_opt: asymptotic accuracy, in (0, 1].
      b: scale of the error term, > 0.
      alpha: decay exponent, > 0.
    """

    a_opt: float = 1.0
    b: float = 1.0
    alpha: float = 0.5

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = jnp.asarray(x)
        # Below x_min = b^(1/alpha) / a_opt^(1/alpha) the raw value is negative and clipped.
        x_min = (self.b / self.a_opt) ** (1.0 / self.alpha)
        valid = x > x_min
        xs = safe_positive(x, valid, 2.0 * x_min)
        raw = self.a_opt - self.b * xs ** (-self.alpha)
        return jnp.where(valid, jnp.maximum(raw, 0.0), 0.0)

    def concave_from(self) -> float:
        """Host side: x_c with a concave on [x_c, inf): the zero crossing (b / a_opt)^(1 / alpha)."""
        return (float(self.b) / float(self.a_opt)) ** (1.0 / float(self.alpha)) * (1.0 + CONCAVITY_MARGIN)


@struct.dataclass
class Arctan(ParametricCurve):
    r"""Saturating curve :math:`a(x) = \frac{2}{\pi} \arctan(s x)`, bounded by 1.

    Args:
      s: rate, per unit of data, > 0.
    """

    s: float = 0.01

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = jnp.maximum(jnp.asarray(x), 0.0)
        return (2.0 / jnp.pi) * jnp.arctan(self.s * x)

    def concave_from(self) -> float:
        """Host side: 0, arctan is concave on [0, inf)."""
        return 0.0

    @property
    def a_max(self) -> float:
        return 1.0
