r"""Rigorous bounds of the first-moment problem over boxes of contributions (``method="global"``).

The problem in m alone (docs/howto/global.md). IC forces m_1 <= ... <= m_I, and for monotone m the
least rewards satisfying every IR and IC are ``formulation.least_rewards(m)`` (a max of linear
functions of m); m admits a feasible menu of the *full* constraint set iff

.. math:: G_i(m) = \bar t_i(m) - T_i(m) \ge 0, \qquad T = \text{least\_rewards}(m).

So the first-moment problem is :math:`\max_m F(m) = E_n[a(n \cdot q m)]` over monotone m >= 0 with
G(m) >= 0, every constraint relaxed by ``allowance`` (the feasibility tolerance, so that no converged
solution of any method lies above the bound). Over a box B = [lo, hi] three bounds hold for every
feasible m in B:

* **monotone**: a is non-decreasing and n . q m is non-decreasing in m, so F(m) <= F(hi).
* **Lagrangian** (weak duality): for multipliers lambda_ij >= 0 (tbar_i >= the j-th linear piece of
  T_i) and rho >= 0 (m_k <= m_{k+1}),
  F(m) <= L(m) = F^(m) + sum_ij lambda_ij (tbar^_i(m) - f_j - A_ij . m) + rho . diff(m), where F^ and tbar^ replace
  a(x_k) by a concave over-estimate on outcome k's interval [n_k . q lo, n_k . q hi]: a itself where
  the interval lies in the curve's concave part (x >= ``concave_from``), else an affine
  over-estimate through (n_k . q hi, a(n_k . q hi)) (``_chord_over``; likewise for v(a)). Then L is concave on B (T is convex), so for any m0 in B,
  :math:`\max_B L \le L(m0) + \sum_j \max(s_j (hi_j - m0_j), s_j (lo_j - m0_j))`, s = grad L(m0).
* **feasibility**: T_i is a max of linear pieces whose coefficient signs are known, so its least
  value over B is T^lo_i (each piece at its minimizing corner); a box with T^lo_i > tbar_i(hi)
  holds no feasible m.

Boxes are first *reduced* to the part that can hold feasible points: lo <- cummax(lo) and
hi <- reverse cummin(hi) (monotonicity), hi_i <- (tbar_i(hi) - f_i) / c_i (budget and IR). Every
function here is pure and vmapped over boxes, so one compiled call bounds a batch of boxes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from jax import lax

from .._cache import kernel_jit
from .._jit import compiled_when_eager
from ..formulation import least_rewards

#: Relative margin added to every upper bound for floating-point rounding (float64 sums of at most
#: ~1e6 terms in [0, 1] err by < 1e-12 relative; the certified gaps are >= 1e-9).
ROUNDING_MARGIN = 1e-12
#: Projected-gradient steps towards the box maximizer of L before its tangent plane is taken.
ASCENT_STEPS = 16


@struct.dataclass
class BoundData:
    """What the bounds need of one canonical problem (float64 pytree).

    Attributes:
      counts: (K, I) effective outcome counts n_k * q (units per unit of m).
      prob: (K,) P(n_k).  weights: (K, I) conditional weights w_i(n_k) (columns sum to 1).
      costs: (I,) c.  reservation: (I,) f, money.  concave_from: () x_c, units of data.
      pieces: (I, I, I) coefficients A of the linear pieces of the least rewards (``reward_pieces``).
      budget_multipliers: (I, I) lambda_ij >= 0 of tbar_i >= f_j + A_ij . m, accuracy per money.
      monotone_multipliers: (I-1,) rho >= 0, accuracy per unit of data.
      accuracy, valuation: the problem's curves.
    """

    counts: jnp.ndarray
    prob: jnp.ndarray
    weights: jnp.ndarray
    costs: jnp.ndarray
    reservation: jnp.ndarray
    concave_from: jnp.ndarray
    allowance: jnp.ndarray
    pieces: jnp.ndarray
    budget_multipliers: jnp.ndarray
    monotone_multipliers: jnp.ndarray
    accuracy: Any
    valuation: Any


class BoxBound(NamedTuple):
    """The bounds of one box (one row each when vmapped).

    upper: () upper bound on F over the box's feasible points (-inf: none).
    lo, hi: (I,) the reduced box.  candidate: (I,) a monotone point in the box.
    candidate_value: () F(candidate).  candidate_violation: () max(0, T - tbar) at it, money.
    """

    upper: jnp.ndarray
    lo: jnp.ndarray
    hi: jnp.ndarray
    candidate: jnp.ndarray
    candidate_value: jnp.ndarray
    candidate_violation: jnp.ndarray


@compiled_when_eager
def reward_pieces(costs) -> jnp.ndarray:
    r"""(I, I, I) A with ``least_rewards(m)_i = max_j (f_j + A[i, j] . m)`` for monotone m.

    Row (i, j) is the path from type j's IR to type i: for j <= i (downward ICs)
    :math:`c_j m_j + \sum_{k=j}^{i-1} c_{k+1}(m_{k+1} - m_k)`, for j > i (upward ICs)
    :math:`c_j m_j - \sum_{k=i}^{j-1} c_k (m_{k+1} - m_k)` (``formulation.least_rewards``).
    """
    num = costs.shape[0]
    eye = jnp.eye(num, dtype=costs.dtype)
    step_down = costs[1:, None] * (eye[1:] - eye[:-1])   # (I-1, I): c_{k+1} (e_{k+1} - e_k)
    step_up = costs[:-1, None] * (eye[1:] - eye[:-1])    # (I-1, I): c_k (e_{k+1} - e_k)
    k = jnp.arange(num - 1)[None, None, :]
    i, j = jnp.arange(num)[:, None, None], jnp.arange(num)[None, :, None]
    down = jnp.where((k >= j) & (k < i), 1.0, 0.0) @ step_down   # (I, I, I), j <= i
    up = jnp.where((k >= i) & (k < j), 1.0, 0.0) @ step_up       # (I, I, I), j > i
    return costs[None, :, None] * eye[None, :, :] + down - up


@compiled_when_eager
def exact_terms(m: jnp.ndarray, data: BoundData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """F(m) = E[a(n . q m)] () and tbar(m) (I,), money, by enumeration."""
    acc = data.accuracy(data.counts @ m)
    return data.prob @ acc, data.valuation(acc) @ data.weights


def value_and_violation(m: jnp.ndarray, data: BoundData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(F(m) (), max(0, max_i T_i(m) - tbar_i(m)) () money) of a monotone m, T = ``least_rewards``."""
    value, tbar = exact_terms(m, data)
    return value, jnp.maximum(jnp.max(least_rewards(m, data.costs, data.reservation) - tbar), 0.0)


def _chord_over(fn, x, low, high, knee):
    """Concave (affine) over-estimate of a non-decreasing ``fn`` concave on [knee, inf), on [low, high].

    The line through (high, fn(high)) with slope s = min(fn'(high), (fn(high) - fn(knee)) / (high - low)):
    above fn on [knee, high] (the tangent at ``high`` is, and s is no steeper) and on [low, knee]
    (it is >= fn(knee) >= fn there). s = 0 (the constant fn(high)) where high <= knee.
    """
    top, slope = jax.vmap(jax.value_and_grad(fn))(high)
    chord = (top - fn(knee)) / jnp.maximum(high - low, 1e-300)
    slope = jnp.where(high > knee, jnp.clip(jnp.minimum(slope, chord), 0.0), 0.0)
    return top + slope * (x - high)


def relaxed_terms(m, lo, hi, data: BoundData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """F^(m) and tbar^(m): concave on [lo, hi] and >= F, tbar there (module docstring).

    Outcome k uses a(n_k . q m) where its whole interval lies in the concave part, else an affine
    over-estimate (``_chord_over``) of a, and of v(a), on its interval.
    """
    low, high, x = data.counts @ lo, data.counts @ hi, data.counts @ m
    concave = low >= data.concave_from
    value_of = lambda z: data.valuation(data.accuracy(z))  # noqa: E731
    acc = jnp.where(concave, data.accuracy(x), _chord_over(data.accuracy, x, low, high, data.concave_from))
    val = jnp.where(concave, data.valuation(data.accuracy(x)), _chord_over(value_of, x, low, high, data.concave_from))
    return data.prob @ acc, val @ data.weights


def least_rewards_lower(lo, hi, costs, reservation) -> jnp.ndarray:
    r"""(I,) a lower bound of ``least_rewards(m)`` over monotone m in [lo, hi].

    The pieces reached from below, :math:`f_j + \sum_{k=j}^{i-1} (c_k - c_{k+1}) m_k + c_i m_i`, are
    non-decreasing in m (their lower bound is at lo); the pieces reached from above,
    :math:`f_j + c_i m_i - \sum_{k=i+1}^{j} (c_{k-1} - c_k) m_k`, are smallest at m_i = lo_i and
    m_k = hi_k.
    """
    zero = jnp.zeros((1,), lo.dtype)
    climb = jnp.concatenate([zero, jnp.cumsum(costs[1:] * jnp.diff(lo))])
    from_below = lax.cummax(reservation + costs * lo - climb) + climb
    drop = jnp.concatenate([zero, jnp.cumsum((costs[:-1] - costs[1:]) * hi[1:])])
    from_above = lax.cummax(reservation - drop, reverse=True) + drop + costs * lo
    return jnp.maximum(from_below, from_above)


def reduce_box(lo, hi, data: BoundData) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The part of [lo, hi] that can hold feasible points (monotone, budget and IR; module docstring)."""
    lo = lax.cummax(lo)
    hi = lax.cummin(hi, reverse=True)
    _, tbar_hi = exact_terms(hi, data)
    hi = jnp.minimum(hi, jnp.maximum((tbar_hi + data.allowance - data.reservation) / data.costs, 0.0))
    return lo, lax.cummin(hi, reverse=True)


def piece_slacks(tbar, m, data: BoundData) -> jnp.ndarray:
    """(I, I) tbar_i - (f_j + A_ij . m): all >= 0 iff the least rewards fit under tbar (feasible m)."""
    return tbar[:, None] - data.reservation[None, :] - data.pieces @ m


def lagrangian(m, lo, hi, data: BoundData) -> jnp.ndarray:
    """L(m) on the box [lo, hi]: concave there, >= F(m) at every feasible m in it (accuracy units).

    One multiplier per linear piece of the least rewards (not one per type): L stays smooth, and
    stationarity at an optimum where two pieces tie (a kink of ``least_rewards``) is exact.
    """
    value, tbar = relaxed_terms(m, lo, hi, data)
    return (value + jnp.sum(data.budget_multipliers * (piece_slacks(tbar, m, data) + data.allowance))
            + data.monotone_multipliers @ jnp.diff(m))


def tangent_bound(m0, lo, hi, data: BoundData) -> jnp.ndarray:
    """max over [lo, hi] of the tangent plane of the concave L at m0: an upper bound of L there."""
    value, slope = jax.value_and_grad(lagrangian)(m0, lo, hi, data)
    return value + jnp.sum(jnp.maximum(slope * (hi - m0), slope * (lo - m0)))


def ascend(m0, lo, hi, data: BoundData, steps: int = ASCENT_STEPS) -> jnp.ndarray:
    """A better tangent point: projected gradient ascent of the concave L over [lo, hi] from m0.

    The step is 1 / (a Gershgorin bound of -Hessian at m0): a monotone ascent for the smooth part of L.
    Any point gives a valid bound (``tangent_bound``); the box maximizer gives the tightest.
    """
    hessian = jax.hessian(lagrangian)(m0, lo, hi, data)
    step = 1.0 / jnp.maximum(jnp.max(jnp.sum(jnp.abs(hessian), axis=1)), 1e-300)

    def body(_, m):
        return jnp.clip(m + step * jax.grad(lagrangian)(m, lo, hi, data), lo, hi)

    return lax.fori_loop(0, steps, body, m0)


def bound_box(lo, hi, incumbent, data: BoundData) -> BoxBound:
    """Bounds of one box and its best candidate point (module docstring).

    Args:
      lo, hi: (I,) the box, units of data.  incumbent: (I,) the best feasible m known (its
        projection on the box is the first tangent point and candidate).
      data: ``BoundData``.
    Returns:
      ``BoxBound``; ``upper`` is -inf for a box that holds no feasible point.
    """
    lo, hi = reduce_box(lo, hi, data)
    value_hi, tbar_hi = exact_terms(hi, data)
    needed = least_rewards_lower(lo, hi, data.costs, data.reservation)
    empty = jnp.any(lo > hi) | jnp.any(needed > tbar_hi + data.allowance)
    hi = jnp.maximum(hi, lo)  # keep an empty box's arithmetic finite; it is discarded anyway
    centre = lax.cummax(0.5 * (lo + hi))
    near = lax.cummax(jnp.clip(incumbent, lo, hi))
    lagrange = jnp.minimum(tangent_bound(near, lo, hi, data), tangent_bound(centre, lo, hi, data))
    lagrange = jnp.minimum(lagrange, tangent_bound(ascend(near, lo, hi, data), lo, hi, data))
    upper = jnp.minimum(value_hi, lagrange)
    upper = jnp.where(empty, -jnp.inf, upper + ROUNDING_MARGIN * jnp.maximum(1.0, jnp.abs(upper)))
    points = jnp.stack([near, centre, lo])
    values, violations = jax.vmap(value_and_violation, in_axes=(0, None))(points, data)
    best = jnp.argmax(jnp.where(violations <= 0.0, values, -jnp.inf) - violations)
    return BoxBound(upper, lo, hi, points[best], values[best], violations[best])


bound_boxes = kernel_jit(jax.vmap(bound_box, in_axes=(0, 0, None, None)))
