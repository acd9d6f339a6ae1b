"""The exclude-then-pool starting candidates (solvers/_start.py): each is the largest feasible m0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcontract import ContractProblem, _precision
from diffcontract.expectation import moments, outcome_table, with_weights
from diffcontract.formulation import binding_rewards, residuals
from diffcontract.solvers._start import exclusion_pooled_candidates


def _raw_residuals(m, problem, table):
    t = binding_rewards(m, problem.costs, problem.reservation_utility)
    res = residuals(m, t, moments(m, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
    return np.concatenate([np.asarray(res.budget), np.asarray(res.ir)])


@pytest.mark.parametrize("seed", [0, 2])  # both failed before the rounding allowance
def test_each_candidate_is_the_largest_feasible_pooled_menu(seed):
    # Seed 0 includes I = 5, N = 9, f = 0: there the strict test of IR_1 and of the first pooled
    # type's IR (zero by construction, a few ulps of either sign) stopped the old bisection at
    # m0 = 64.8 for one excluded type where the largest feasible m0 is 76.6.
    rng = np.random.default_rng(seed)
    num, participants = int(rng.integers(3, 6)), int(rng.integers(2, 13))
    probs = np.maximum(rng.dirichlet(np.ones(num)), 0.02)
    problem = ContractProblem(participants=participants, probs=probs / probs.sum(),
                              costs=np.sort(rng.uniform(0.001, 1.0, num))[::-1])
    with _precision.float64():
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        table = with_weights(p64, outcome_table(participants, num))
        menus, found, _ = (np.asarray(a) for a in jax.jit(exclusion_pooled_candidates)(p64, table))
        assert found.any()
        for j in np.flatnonzero(found):
            m0 = menus[j].max()
            np.testing.assert_array_equal(menus[j], np.where(np.arange(num) >= j, m0, 0.0))
            # Feasible (rounding: 1e-12 of v(1) - v(0) = 100), and 1e-8 more data breaks a constraint.
            assert _raw_residuals(jnp.asarray(menus[j]), p64, table).min() >= -1e-10
            assert _raw_residuals(jnp.asarray(menus[j] * (1 + 1e-8)), p64, table).min() < 0.0
