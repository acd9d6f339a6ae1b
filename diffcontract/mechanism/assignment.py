r"""Proportional assignment: realizing first-moment rewards outcome by outcome (MODEL.md).

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


def proportional_assignment(m, t, reward_bounds, problem, counts) -> Realization:
    """Realized rewards of the menu (m, t) under proportional assignment.

    Args:
      m: (I,) contributions. t: (I,) promised rewards. reward_bounds: (I,) tbar(m), money.
      problem: ``ContractProblem``. counts: (K, I) outcomes.
    """
    pooled = jnp.asarray(counts, dtype=jnp.result_type(m)) @ (problem.quality * m)
    acc = problem.accuracy(pooled)
    share = jnp.where(reward_bounds > 0, t / jnp.where(reward_bounds > 0, reward_bounds, 1.0), 0.0)
    values = problem.valuation(acc)[:, None] * share[None, :]
    return Realization(acc, values, problem.valuation.inverse(values))
