r"""A learned accuracy curve: monotone and bounded by construction, fitted with optax.

The model (a one-hidden-layer monotone network in log data size, averaged over an ensemble):

.. math::
    a(x) = \frac{1}{M} \sum_{m=1}^{M} A_m \sum_{k=1}^{K} w_{mk}\,
           \sigma\!\Big(\frac{z - \mu_{mk}}{s_{mk}}\Big), \qquad z = \log(1 + x),

with :math:`A_m = \mathrm{cap}\cdot\sigma(\alpha_m)`, :math:`w_{m\cdot} = \mathrm{softmax}(\beta_{m\cdot})`,
:math:`s_{mk} = s_{min} + e^{\rho_{mk}}`. Every term is a positive weight times an increasing
function of x, so a is non-decreasing; each member lies in [0, A_m) and the mean in
[0, a_max) with a_max = mean_m A_m <= cap <= 1. It is smooth (C-infinity) in x >= 0, and
z = log(1 + x) (not log x) keeps a(0) and a'(0) = (1/M) sum_mk A_m w_mk sigma'(.) / s_mk finite.
The logistic is evaluated as sigma(u) = (1 + tanh(u / 2)) / 2, whose derivative (1 - tanh^2) / 4
is >= 0 in floating point too, and z is computed once per x (not per member): the curve's cost
is one log1p and M K tanh per point (see ``fitting.distill`` for a cheaper single member).

Each component's tail is a power law, 1 - sigma((z - mu)/s) ~ (1 + x)^(-1/s) e^(mu/s), so
the model extrapolates like a sum of ``pow3`` terms, not like a flat plateau. The members are
fitted on Bayesian-bootstrap reweightings of the data (``fitting.fit_learned``); their spread is
the uncertainty band (``band``).

x is in the units the curve was fitted in (training samples for the shipped data); wrap it in
``ScaledAccuracy`` to read it in the contract's units of data.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._jit import compiled_when_eager

#: The fitted (pytree) parameters, in the order of the fields.
_PARAMETERS = ("logits", "centers", "log_widths", "raw_asymptote")


@struct.dataclass
class LearnedAccuracy:
    """Monotone mixture-of-logistics accuracy curve in log(1 + x), averaged over M members.

    Args (all unconstrained, as fitted; shapes (M, K) unless stated):
      logits: mixture logits beta (weights w = softmax over K).
      centers: component centres mu, in z = log(1 + x / d).
      log_widths: rho, with widths s = min_width + exp(rho), in z units.
      raw_asymptote: (M,) alpha, asymptote A = cap * sigmoid(alpha).
      cap: static upper bound on the asymptote, in (0, 1].
      min_width: static floor on the widths (in z units) so every component stays smooth.
    """

    logits: jnp.ndarray
    centers: jnp.ndarray
    log_widths: jnp.ndarray
    raw_asymptote: jnp.ndarray
    cap: float = struct.field(pytree_node=False, default=1.0)
    min_width: float = struct.field(pytree_node=False, default=0.05)

    # ------------------------------------------------------------------ evaluation
    def asymptotes(self) -> jnp.ndarray:
        """(M,) asymptote A_m of each member."""
        return self.cap * jax.nn.sigmoid(self.raw_asymptote)

    def member_values(self, x: jnp.ndarray) -> jnp.ndarray:
        """(..., M) accuracy of each member at ``x`` (any shape; the unit it was fitted in)."""
        x = jnp.asarray(x)
        lead = (1,) * x.ndim  # explicit broadcasting (no implicit rank promotion)
        z = jnp.log1p(jnp.maximum(x, 0.0))[..., None, None]
        half_slopes = jnp.reshape(0.5 / (self.min_width + jnp.exp(self.log_widths)), lead + self.logits.shape)
        weights = jnp.reshape(jax.nn.softmax(self.logits, axis=-1), lead + self.logits.shape)
        centers = jnp.reshape(self.centers, lead + self.logits.shape)
        cdf = 0.5 + 0.5 * jnp.tanh((z - centers) * half_slopes)  # = sigmoid((z - mu) / s)
        return jnp.reshape(self.asymptotes(), lead + self.logits.shape[:1]) * jnp.sum(weights * cdf, axis=-1)

    @compiled_when_eager
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """Ensemble-mean accuracy at ``x`` (any shape; the unit it was fitted in)."""
        x = jnp.asarray(x)
        members = self.logits.shape[0]
        coef = jnp.reshape(jax.nn.softmax(self.logits, axis=-1) * self.asymptotes()[:, None], (-1,)) / members
        half_slopes = jnp.reshape(0.5 / (self.min_width + jnp.exp(self.log_widths)), (-1,))
        centers = jnp.reshape(self.centers, (-1,))
        z = jnp.log1p(jnp.maximum(x, 0.0))
        # The M K terms are summed one by one (a static unroll) rather than as a reduction over a
        # small trailing axis: XLA on CPU fuses the unrolled form into one loop, 4-5x faster. Each
        # term coef * (1 + tanh) / 2 is >= 0 and non-decreasing in x exactly, in floating point.
        value = jnp.zeros_like(z)
        for j in range(centers.shape[0]):
            value = value + coef[j] * (0.5 + 0.5 * jnp.tanh((z - centers[j]) * half_slopes[j]))
        # Mathematically value < a_max already; the clamp only removes a last-ulp rounding excess
        # (softmax weights can sum to 1 + eps), so "bounded by a_max" holds in floating point too.
        return jnp.minimum(value, self.a_max)

    def band(self, x: jnp.ndarray, coverage: float = 0.9) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(lower, upper): the central ``coverage`` quantiles of the members at ``x``."""
        values = self.member_values(x)
        tail = 0.5 * (1.0 - coverage)
        return jnp.quantile(values, tail, axis=-1), jnp.quantile(values, 1.0 - tail, axis=-1)

    def member(self, index: int) -> "LearnedAccuracy":
        """Member ``index`` alone, as a one-member curve."""
        return self.replace(**{name: getattr(self, name)[index:index + 1] for name in _PARAMETERS})

    @property
    def a_max(self):
        """Supremum of the curve, mean_m A_m (approached as x -> infinity, never reached)."""
        return jnp.mean(self.asymptotes())

    @property
    def num_members(self) -> int:
        return int(np.shape(self.logits)[-2])

    @property
    def num_components(self) -> int:
        return int(np.shape(self.logits)[-1])

    def validate(self) -> None:
        """Host-side check of shapes, finiteness and the static bounds."""
        if not (isinstance(self.cap, (int, float)) and 0.0 < self.cap <= 1.0):
            raise ValueError(f"LearnedAccuracy.cap must be in (0, 1], got {self.cap!r}")
        if not (isinstance(self.min_width, (int, float)) and self.min_width > 0.0 and math.isfinite(self.min_width)):
            raise ValueError(f"LearnedAccuracy.min_width must be a finite number > 0, got {self.min_width!r}")
        shape = np.shape(self.logits)
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"LearnedAccuracy.logits must have shape (members, components), got {shape}")
        for name, want in zip(_PARAMETERS, (shape, shape, shape, shape[:1])):
            if np.shape(getattr(self, name)) != want:
                raise ValueError(f"LearnedAccuracy.{name} must have shape {want}, got {np.shape(getattr(self, name))}")
        for name in _PARAMETERS:
            if not np.all(np.isfinite(np.asarray(getattr(self, name), dtype=np.float64))):
                raise ValueError(f"LearnedAccuracy.{name} must be finite")


def stack_members(members: list[LearnedAccuracy]) -> LearnedAccuracy:
    """One ensemble from several curves (members concatenated)."""
    return members[0].replace(**{name: jnp.concatenate([jnp.asarray(getattr(m, name)) for m in members], axis=0)
                                 for name in _PARAMETERS})
