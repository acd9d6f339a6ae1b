"""Realized rewards under proportional assignment (issue 6, item 1; docs/model.md "Realizing rewards: proportional assignment")."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcontract
from diffcontract import ContractProblem
from diffcontract.analysis import solution_record
from diffcontract.curves import Exponential, PowerLaw
from diffcontract.mechanism import realize


@pytest.fixture(scope="module", params=["linear", "exponential"])
def solution(request):
    if request.param == "linear":
        problem = ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01])
    else:
        problem = ContractProblem(participants=5, probs=[0.2, 0.3, 0.5], costs=[0.05, 0.02, 0.01],
                                  accuracy=PowerLaw(a_opt=0.9, b=2.0, alpha=0.5),
                                  valuation=Exponential(scale=100.0, gamma=2.0), conditioning="interim")
    sol = diffcontract.solve(problem)
    assert sol.succeeded
    return sol


def test_realized_rewards_keep_the_promises(solution):
    real = realize(solution)
    K, I = real.outcomes.shape
    assert K == solution.problem.num_outcomes and I == solution.problem.num_types
    assert real.prob.sum() == pytest.approx(1.0, abs=1e-13)  # K <= 21 float64 terms
    # E[v(r_i) | i] = min(t_i, tbar_i) = t_i up to the solver's ~1e-14 budget slack.
    np.testing.assert_allclose(real.expected_rewards, solution.t, rtol=0, atol=1e-10)
    # Ex-post budget in every outcome, present types only: float64 rounding of v^{-1}(share v(a)).
    assert real.max_excess <= 1e-12
    assert np.all(np.ma.getmaskarray(real.reward_values) == (real.outcomes == 0))
    # Absent types are masked, present ones hold numbers.
    assert np.all(np.isfinite(real.reward_values.compressed()))


def test_inverse_valuation_round_trip(solution):
    real = realize(solution)
    problem = solution.problem
    with jax.enable_x64(True):
        values = np.asarray(problem.valuation(jnp.asarray(real.reward_accuracies.filled(0.0))))
        pooled = np.asarray(problem.accuracy(jnp.asarray(real.outcomes @ (np.asarray(problem.quality) * solution.m))))
    # v(v^{-1}(y)) = y to float64 rounding of O(100) values (expm1/log1p pair for the exponential v).
    np.testing.assert_allclose(values[real.present], real.reward_values.compressed(), rtol=1e-12)
    np.testing.assert_allclose(real.pooled_accuracy, pooled, rtol=1e-14)
    # Proportional: every present type's value is its share of the joint model's value.
    ratio = real.reward_values / real.pooled_value[:, None]
    for i in range(ratio.shape[1]):
        col = ratio[:, i].compressed()
        np.testing.assert_allclose(col, real.shares[i], rtol=1e-12)


def test_record_and_solution_agree(solution):
    from_record = realize(json.loads(json.dumps(solution_record(solution))))
    real = realize(solution)
    np.testing.assert_allclose(from_record.reward_values.filled(0.0), real.reward_values.filled(0.0), rtol=1e-13)


def test_promise_above_bound_is_capped(solution):
    t = np.asarray(solution.t).copy()
    t[-1] = solution.reward_bounds[-1] + 1.0  # a budget violation of 1 money unit
    real = realize(solution.replace(rewards=t))
    assert real.shares[-1] == 1.0
    assert real.max_excess <= 1e-12  # nobody gets a better model than the joint one
    assert real.expected_rewards[-1] == pytest.approx(float(solution.reward_bounds[-1]), rel=1e-12)
