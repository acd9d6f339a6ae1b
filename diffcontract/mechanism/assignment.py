r"""Proportional assignment: realizing first-moment rewards outcome by outcome (docs/model.md).

Given a menu (m, t) with bounds tbar(m), in outcome n each present type-i participant receives a
model whose value is

.. math:: v(r_i(n)) = \frac{t_i}{\bar t_i}\, v\big(a(n \cdot q m)\big),

so :math:`E[v(r_i) \mid i] = t_i` and :math:`r_i(n) = v^{-1}(\cdot) \le a(n \cdot q m)` whenever
:math:`t_i \le \bar t_i` (ex-post budget).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class Realization(NamedTuple):
    """Rewards in every outcome.

    pooled_accuracy: (K,) a(n . q m), the joint model's accuracy.
    reward_values: (K, I) v(r_i(n)), money (defined for every n; meaningful where n_i >= 1).
    reward_accuracies: (K, I) r_i(n) = v^{-1}(v(r_i(n))).
    """

    pooled_accuracy: jnp.ndarray
    reward_values: jnp.ndarray
    reward_accuracies: jnp.ndarray


def ratio_or_zero(numerator, denominator, xp=jnp):
    """numerator / denominator where the denominator is > 0, else 0 (the share t_i / tbar_i of a bound of 0
    is 0: no model of any value exists where type i is present).

    Args:
      numerator, denominator: arrays of one shape.  xp: ``jax.numpy`` (jittable) or ``numpy`` (host side).

    Returns:
      the elementwise ratio, 0 where the denominator is <= 0.
    """
    positive = denominator > 0
    return xp.where(positive, numerator / xp.where(positive, denominator, 1.0), 0.0)


def proportional_assignment(m, t, reward_bounds, problem, counts) -> Realization:
    """Realized rewards of the menu (m, t) under proportional assignment.

    Args:
      m: (I,) contributions. t: (I,) promised rewards. reward_bounds: (I,) tbar(m), money.
      problem: ``ContractProblem``. counts: (K, I) outcomes.
    """
    pooled = jnp.asarray(counts, dtype=jnp.result_type(m)) @ (problem.quality * m)
    acc = problem.accuracy(pooled)
    values = problem.valuation(acc)[:, None] * ratio_or_zero(t, reward_bounds)[None, :]
    return Realization(acc, values, problem.valuation.inverse(values))
