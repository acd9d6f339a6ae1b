r"""Classic parametric learning-curve families as accuracy curves (Viering & Loog 2022, Domhan et al. 2015).

Each is a ``flax.struct`` dataclass like the curves in ``accuracy.py``: parameters are pytree
leaves; the curve is non-decreasing in x, bounded in [0, a_max], and has finite values and
gradients for every x >= 0 (x = 0 included). x is in whatever unit the curve was fitted in (training
samples for ``fit_family``); ``ScaledAccuracy`` converts to the contract's units of data.

Family names used by ``diffcontract.curves.fitting`` (``pow3`` is ``accuracy.PowerLaw``, ``sgb`` is
``ScaledAccuracy(GeneralizationBound(a_opt, k), s)``):

===========  =====================================================  ============================
name         a(x)                                                   class
===========  =====================================================  ============================
pow3         max(0, a - b x^-c)                                     ``PowerLaw``
pow4         max(0, a - b (x + d)^-c)                               ``Pow4``
mmf          a0 + (a - a0) / (1 + (x / x_half)^-d)  (Morgan-Mercer-Flodin)  ``MMF``
logpower     a / (1 + (x / x_half)^-d)                              ``LogPower``
exp3         max(0, a - b exp(-x / x_scale))                        ``Exp3``
weibull      a - (a - a0) exp(-(x / x_scale)^d)                     ``Weibull``
===========  =====================================================  ============================
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .._jit import compiled_when_eager
from ._base import CONCAVITY_MARGIN, ParametricCurve, SaturatingCurve, concavity_start, safe_positive


def _inflection(scale, d, shift: float = 1.0) -> float:
    """0 for d <= 1, else scale ((d - 1) / (d + shift))^(1 / d): where the Hill function x^d / (x^d + scale^d)
    (shift 1) or the Weibull 1 - exp(-(x / scale)^d) (shift 0) turns concave, plus ``CONCAVITY_MARGIN``."""
    d = float(d)
    return 0.0 if d <= 1.0 else float(scale) * ((d - 1.0) / (d + shift)) ** (1.0 / d) * (1.0 + CONCAVITY_MARGIN)


def _log_sigmoid_term(x: jnp.ndarray, x_half, d) -> jnp.ndarray:
    """1 / (1 + (x / x_half)^-d) = sigmoid(d log(x / x_half)), 0 at x <= 0 with a finite gradient there."""
    valid = x > 0.0
    xs = safe_positive(x, valid, 1.0)
    return jnp.where(valid, jax.nn.sigmoid(d * jnp.log(xs / x_half)), 0.0)


@struct.dataclass
class ScaledAccuracy(ParametricCurve):
    r"""A curve read in other units: :math:`a(x) = \mathrm{curve}(s\,x)`.

    Curves fitted on learning-curve data take training *samples*; the contract's x is in *units of
    data*. With ``samples_per_unit = s`` one unit of data is s samples (s = 1: a unit is a sample).

    Args:
      curve: any accuracy curve (its parameters stay pytree leaves).
      samples_per_unit: s > 0, samples per unit of data.
    """

    curve: Any
    samples_per_unit: float = 1.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Accuracy at ``x`` units of data (any shape)."""
        return self.curve(self.samples_per_unit * jnp.asarray(x))

    def concave_from(self) -> float:
        """Host side: the inner curve's x_c in units of data (x_c / s)."""
        return concavity_start(self.curve) / float(self.samples_per_unit)

    @property
    def a_max(self):
        return self.curve.a_max


@struct.dataclass
class Pow4(SaturatingCurve):
    r"""Shifted power law :math:`a(x) = \max(0, a_{opt} - b (x + d)^{-c})`.

    Args:
      a_opt: asymptote in (0, 1]. b: error scale > 0. c: decay exponent > 0. d: shift > 0, samples.
    """

    a_opt: float = 1.0
    b: float = 1.0
    c: float = 0.5
    d: float = 1.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        base = jnp.maximum(jnp.asarray(x), 0.0) + self.d  # d > 0 keeps the power finite at x = 0
        return jnp.maximum(self.a_opt - self.b * base ** (-self.c), 0.0)

    def concave_from(self) -> float:
        """Host side: the zero crossing max(0, (b / a_opt)^(1 / c) - d); the branch is concave."""
        zero = (float(self.b) / float(self.a_opt)) ** (1.0 / float(self.c)) - float(self.d)
        return max(zero, 0.0) * (1.0 + CONCAVITY_MARGIN)


@struct.dataclass
class MMF(SaturatingCurve):
    r"""Morgan-Mercer-Flodin curve :math:`a(x) = a_0 + (a_{opt} - a_0) / (1 + (x / x_{half})^{-d})`.

    Sigmoid in log x from a_0 (at x = 0) to a_opt; reaches the midpoint at x_half.

    Args:
      a_opt: asymptote in (0, 1]. a_0: value at zero data, in [0, a_opt]. x_half: midpoint > 0.
      d: slope in log x, > 0.
    """

    a_opt: float = 1.0
    a_0: float = 0.0
    x_half: float = 100.0
    d: float = 1.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.a_0 + (self.a_opt - self.a_0) * _log_sigmoid_term(jnp.asarray(x), self.x_half, self.d)

    def concave_from(self) -> float:
        """Host side: the Hill function's inflection (0 for d <= 1)."""
        return _inflection(self.x_half, self.d)


@struct.dataclass
class LogPower(SaturatingCurve):
    r"""Log-power curve :math:`a(x) = a_{opt} / (1 + (x / x_{half})^{-d})` (Domhan et al. 2015, as accuracy).

    Args:
      a_opt: asymptote in (0, 1]. x_half: data at half the asymptote, > 0. d: slope in log x, > 0.
    """

    a_opt: float = 1.0
    x_half: float = 100.0
    d: float = 1.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.a_opt * _log_sigmoid_term(jnp.asarray(x), self.x_half, self.d)

    def concave_from(self) -> float:
        """Host side: the Hill function's inflection (0 for d <= 1)."""
        return _inflection(self.x_half, self.d)


@struct.dataclass
class Exp3(SaturatingCurve):
    r"""Exponential approach :math:`a(x) = \max(0, a_{opt} - b\, e^{-x / x_{scale}})`.

    Args:
      a_opt: asymptote in (0, 1]. b: gap at x = 0, > 0. x_scale: data scale > 0, samples.
    """

    a_opt: float = 1.0
    b: float = 1.0
    x_scale: float = 100.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = jnp.maximum(jnp.asarray(x), 0.0)
        return jnp.maximum(self.a_opt - self.b * jnp.exp(-x / self.x_scale), 0.0)

    def concave_from(self) -> float:
        """Host side: the zero crossing max(0, x_scale ln(b / a_opt)); the branch is concave."""
        return max(float(self.x_scale) * math.log(float(self.b) / float(self.a_opt)), 0.0) * (1.0 + CONCAVITY_MARGIN)


@struct.dataclass
class Weibull(SaturatingCurve):
    r"""Weibull curve :math:`a(x) = a_{opt} - (a_{opt} - a_0)\, e^{-(x / x_{scale})^d}`.

    Args:
      a_opt: asymptote in (0, 1]. a_0: value at zero data, in [0, a_opt]. x_scale: data scale > 0.
      d: shape > 0.
    """

    a_opt: float = 1.0
    a_0: float = 0.0
    x_scale: float = 100.0
    d: float = 1.0

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x = jnp.asarray(x)
        valid = x > 0.0
        xs = safe_positive(x, valid, 1.0)
        # exp(-e^40) is already 0: capping the exponent keeps e^(.) finite, so the gradient is 0, not NaN.
        power = jnp.where(valid, jnp.exp(jnp.minimum(self.d * jnp.log(xs / self.x_scale), 40.0)), 0.0)
        return self.a_opt - (self.a_opt - self.a_0) * jnp.exp(-power)

    def concave_from(self) -> float:
        """Host side: the Weibull inflection x_scale ((d - 1) / d)^(1 / d) (0 for d <= 1)."""
        return _inflection(self.x_scale, self.d, shift=0.0)
