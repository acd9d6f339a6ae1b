r"""Realized rewards of a solved contract in every outcome (docs/model.md "Realizing rewards: proportional assignment").

``realize`` enumerates the outcomes n, their probabilities P(n) and conditioning weights, and
applies ``proportional_assignment``: each present type-i participant receives a model of value
:math:`v(r_i(n)) = \min(t_i / \bar t_i, 1)\, v(a(n \cdot q m))` and accuracy
:math:`r_i(n) = v^{-1}(\cdot)` (the valuation's inverse, so nonlinear v is handled exactly). The cap
at 1 only bites where t_i > tbar_i (a budget violation, e.g. within a solver's tolerance): no one is
handed a better model than the joint one, and the promise falls short by t_i - tbar_i. Entries of
absent types (n_i = 0) are masked.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _precision
from ..expectation import conditional_weights, enumerate_outcomes
from ._record import check_enumerable, load_contract
from .assignment import proportional_assignment, ratio_or_zero


class RealizedRewards(NamedTuple):
    """Every outcome of a contract (canonical type order, costliest first; K outcomes).

    outcomes: (K, I) int type counts n.       prob: (K,) P(n).
    weights: (K, I) w_i(n) of E[. | type i] (the problem's conditioning; columns sum to 1).
    present: (K, I) bool, n_i >= 1.
    pooled_data: (K,) n . q m, units of effective data.
    pooled_accuracy: (K,) a(n . q m).  pooled_value: (K,) v(a(n . q m)), money.
    reward_values: (K, I) masked array of v(r_i(n)), money (masked where n_i = 0).
    reward_accuracies: (K, I) masked array of r_i(n) (masked where n_i = 0).
    reward_bounds: (I,) tbar used for the shares, money.  shares: (I,) min(t / tbar, 1).
    expected_rewards: (I,) E[v(r_i) | i] over the realized rewards (= min(t, tbar)).
    """

    outcomes: np.ndarray
    prob: np.ndarray
    weights: np.ndarray
    present: np.ndarray
    pooled_data: np.ndarray
    pooled_accuracy: np.ndarray
    pooled_value: np.ndarray
    reward_values: np.ma.MaskedArray
    reward_accuracies: np.ma.MaskedArray
    reward_bounds: np.ndarray
    shares: np.ndarray
    expected_rewards: np.ndarray

    @property
    def max_excess(self) -> float:
        """max over outcomes and present types of r_i(n) - a(n . q m) (<= 0: ex-post budget holds)."""
        return float(np.ma.max(self.reward_accuracies - self.pooled_accuracy[:, None]))


def realize(solution: Any) -> RealizedRewards:
    """Realized rewards, outcome by outcome, of a ``Solution`` or its JSON record.

    Args:
      solution: ``Solution`` or dict from ``analysis.solution_record``.

    Returns:
      ``RealizedRewards``.
    """
    contract = load_contract(solution)
    problem = contract.problem
    check_enumerable(problem, "realize")
    counts = enumerate_outcomes(problem.num_participants, problem.num_types)
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        cts = jnp.asarray(counts, jnp.float64)
        prob, weights = conditional_weights(cts, problem64.probs, problem64.participants, problem.conditioning)
        pooled = cts @ (problem64.quality * contract.m)
        value = problem64.valuation(problem64.accuracy(pooled))
        tbar = value @ weights
        # Shares capped at 1 (t replaced by min(t, tbar)): a promise above tbar, which a solver may
        # return within its feasibility tolerance, would otherwise hand out a model better than the
        # joint one in every outcome. Where t <= tbar this is docs/model.md's assignment unchanged.
        real = proportional_assignment(contract.m, jnp.minimum(contract.t, tbar), tbar, problem64, cts)
        real, prob, weights, pooled, value, tbar = jax.tree_util.tree_map(
            np.asarray, (real, prob, weights, pooled, value, tbar))
    present = counts >= 1
    return RealizedRewards(
        outcomes=np.asarray(counts), prob=prob, weights=weights, present=present, pooled_data=pooled,
        pooled_accuracy=real.pooled_accuracy, pooled_value=value,
        reward_values=np.ma.masked_array(real.reward_values, mask=~present),
        reward_accuracies=np.ma.masked_array(real.reward_accuracies, mask=~present), reward_bounds=tbar,
        shares=np.minimum(ratio_or_zero(contract.t, tbar, np), 1.0),
        expected_rewards=np.asarray((weights * real.reward_values).sum(axis=0)),
    )
