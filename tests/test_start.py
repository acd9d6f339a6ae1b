"""The exclude-then-pool starting candidates (solvers/_start.py): each is the largest feasible m0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcontract import ContractProblem, _precision
from diffcontract.expectation import moments, outcome_table, with_weights
from diffcontract.formulation import binding_rewards, least_rewards, residuals
from diffcontract.solvers._start import exclusion_pooled_candidates, start_candidates
from hard_instances import CHEAP_TYPE_TRAINS_ALONE, DISCONNECTED_FEASIBLE_SET


def _float64_problem_and_table(problem):
    """The problem in float64 and its weighted outcome table (call inside ``_precision.float64()``)."""
    p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
    return p64, with_weights(p64, outcome_table(int(problem.participants), problem.num_types))


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
        p64, table = _float64_problem_and_table(problem)
        menus, found, _ = (np.asarray(a) for a in jax.jit(exclusion_pooled_candidates)(p64, table))
        assert found.any()
        for j in np.flatnonzero(found):
            m0 = menus[j].max()
            np.testing.assert_array_equal(menus[j], np.where(np.arange(num) >= j, m0, 0.0))
            # Feasible (rounding: 1e-12 of v(1) - v(0) = 100), and 1e-8 more data breaks a constraint.
            assert _raw_residuals(jnp.asarray(menus[j]), p64, table).min() >= -1e-10
            assert _raw_residuals(jnp.asarray(menus[j] * (1 + 1e-8)), p64, table).min() < 0.0


def test_floored_family_finds_the_start_the_pooled_family_misses():
    # A cheap type trains alone on 2,331 units where the costlier ones train on none: no common m0
    # serves everyone (too small for the cheap type's IR, too large for a costly type's budget)
    # and every exclude-then-pool row is infeasible. The floored family (types at
    # max(m0, cummax m^res)) has a feasible window m0 in ~[96, 104], between two grid points.
    problem = CHEAP_TYPE_TRAINS_ALONE
    num = problem.num_types
    with _precision.float64():
        p64, table = _float64_problem_and_table(problem)
        menus, found, _ = (np.asarray(a) for a in jax.jit(start_candidates)(p64, table))
        assert menus.shape == (2 * num, num)
        assert not found[:num].any()  # no exclude-then-pool menu is feasible
        assert found[num]  # the floored row with no exclusion
        floor = np.maximum.accumulate(np.asarray(p64.reservation_data))
        m0 = menus[num][0]
        np.testing.assert_array_equal(menus[num], np.maximum(m0, floor))
        assert 90.0 < m0 < 110.0  # inside the window, which no grid point (ratio 1.48) hits
        # The largest feasible m0 of the window: feasible, and 1e-8 more breaks the budget.
        assert _raw_residuals(jnp.asarray(menus[num]), p64, table).min() >= -1e-10
        assert _raw_residuals(jnp.asarray(np.maximum(m0 * (1 + 1e-8), floor)), p64, table).min() < 0.0


def test_full_set_candidates_start_in_the_better_component():
    # DISCONNECTED_FEASIBLE_SET: the simplified set is empty (no simplified candidate), and the
    # full set's feasible region has two components; its floored candidate lies in the one worth
    # 0.53 in E[a], every exclude-then-pool row in the one worth 0.06.
    problem = DISCONNECTED_FEASIBLE_SET
    num = problem.num_types
    with _precision.float64():
        p64, table = _float64_problem_and_table(problem)
        search = jax.jit(start_candidates, static_argnames="constraints")
        assert not np.asarray(search(p64, table, "simplified")[1]).any()
        menus, found, value = (np.asarray(a) for a in search(p64, table, "full"))
        assert found[num] and value[num] > 0.5 and value[:num][found[:num]].max() < 0.07
        for j in np.flatnonzero(found):
            # Feasible with the least rewards (budgets: rounding 1e-12 of v(1) - v(0) = 100)...
            m = jnp.asarray(menus[j])
            t = least_rewards(m, p64.costs, p64.reservation_utility)
            assert np.min(np.asarray(moments(m, p64, table).reward_bounds - t)) >= -1e-10
            # ... and IR and IC hold by construction.
            res = residuals(m, t, jnp.full((num,), jnp.inf), p64.costs, p64.reservation_utility)
            assert np.asarray(res.ir).min() >= -1e-12 and np.asarray(res.ic).min() >= -1e-12
