"""Enumeration of multinomial outcomes, their probabilities and conditional weights, and moments."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from diffcontract import ContractProblem
from diffcontract.curves import Exponential, GeneralizationBound
from diffcontract.expectation import conditional_weights, enumerate_outcomes, log_pmf, num_outcomes
from diffcontract.expectation._interface import moments


SHAPES = [(0, 1), (0, 3), (1, 1), (1, 2), (1, 4), (2, 1), (2, 3), (5, 2), (6, 4), (10, 5), (4, 7), (12, 3)]


def compositions(total, parts):
    """All n in N^parts with sum total, by brute force (independent of the library)."""
    return sorted(c for c in itertools.product(range(total + 1), repeat=parts) if sum(c) == total)


def random_probs(num_types, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(num_types))


# ----------------------------------------------------------------------------- the outcome table
@pytest.mark.parametrize("participants,num_types", SHAPES)
def test_enumerate_outcomes_is_every_composition_once(participants, num_types):
    out = enumerate_outcomes(participants, num_types)
    expected = math.comb(participants + num_types - 1, num_types - 1)
    assert out.shape == (expected, num_types)
    assert num_outcomes(participants, num_types) == expected
    assert np.all(out >= 0)
    assert np.all(out.sum(axis=1) == participants)
    assert len({tuple(row) for row in out.tolist()}) == expected  # rows distinct
    assert [tuple(row) for row in out.tolist()] == compositions(participants, num_types)  # documented: lexicographic


def test_problem_num_outcomes():
    problem = ContractProblem(participants=10, probs=[0.2] * 5, costs=np.linspace(0.2, 0.04, 5))
    assert problem.num_outcomes == math.comb(14, 4) == 1001


# ----------------------------------------------------------------------------- probabilities and weights
WEIGHT_CASES = [(1, 1, 0), (1, 3, 1), (3, 2, 2), (10, 5, 3), (7, 4, 4), (12, 3, 5), (30, 2, 6)]


def _weights(participants, num_types, seed, conditioning):
    probs = random_probs(num_types, seed)
    counts = enumerate_outcomes(participants, num_types)
    with jax.enable_x64(True):
        prob, weights = conditional_weights(jnp.asarray(counts, jnp.float64), jnp.asarray(probs), participants,
                                            conditioning)
        prob, weights = np.asarray(prob), np.asarray(weights)
    assert prob.dtype == np.float64 and weights.dtype == np.float64
    return probs, counts, prob, weights


@pytest.mark.parametrize("participants,num_types,seed", WEIGHT_CASES)
def test_log_pmf_matches_scipy(participants, num_types, seed):
    probs = random_probs(num_types, seed)
    counts = enumerate_outcomes(participants, num_types)
    with jax.enable_x64(True):
        prob = np.exp(np.asarray(log_pmf(jnp.asarray(counts, jnp.float64), jnp.asarray(probs), participants)))
    assert abs(prob.sum() - 1.0) <= 1e-12  # float64: the K terms sum to 1 to a few ulps
    np.testing.assert_allclose(prob, stats.multinomial.pmf(counts, participants, probs), rtol=1e-12)  # as below


@pytest.mark.parametrize("participants,num_types,seed", WEIGHT_CASES)
def test_outcome_probabilities_match_scipy(participants, num_types, seed):
    probs, counts, prob, _ = _weights(participants, num_types, seed, "truncated")
    # float64 log-space evaluation: the sum of K terms is 1 to a few ulps.
    assert abs(prob.sum() - 1.0) <= 1e-12
    # Both compute exp(gammaln(...) + n log p) in float64: agreement to ~|log P| ulps.
    np.testing.assert_allclose(prob, stats.multinomial.pmf(counts, participants, probs), rtol=1e-12)


@pytest.mark.parametrize("participants,num_types,seed", WEIGHT_CASES)
def test_truncated_weights(participants, num_types, seed):
    probs, counts, prob, weights = _weights(participants, num_types, seed, "truncated")
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=1e-12)  # each column a law; float64
    assert np.all(weights[counts == 0] == 0.0)  # conditioned on n_i >= 1
    # w_i(n) = P(n) / P(n_i >= 1) where n_i >= 1 (docs/model.md: the law restricted and renormalized).
    pmf = stats.multinomial.pmf(counts, participants, probs)
    present = 1.0 - (1.0 - probs) ** participants
    expected = np.where(counts >= 1, pmf[:, None] / present[None, :], 0.0)
    np.testing.assert_allclose(weights, expected, rtol=1e-12, atol=0)  # float64, independent formula


@pytest.mark.parametrize("participants,num_types,seed", WEIGHT_CASES)
def test_interim_weights_are_the_law_of_the_others(participants, num_types, seed):
    probs, counts, _, weights = _weights(participants, num_types, seed, "interim")
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=1e-12)  # float64
    assert np.all(weights[counts == 0] == 0.0)
    # E[g(n) | I am type i] with the other N-1 participants ~ Multinomial(N-1, p), n = n' + e_i.
    g = np.sqrt(counts @ np.arange(1.0, num_types + 1.0) + 1.0) * np.cos(counts[:, 0])  # any nonlinear g
    index = {tuple(row): k for k, row in enumerate(counts.tolist())}
    others = np.array(compositions(participants - 1, num_types)).reshape(-1, num_types)
    law = stats.multinomial.pmf(others, participants - 1, probs)
    for i in range(num_types):
        shifted = others + np.eye(num_types, dtype=others.dtype)[i]
        brute = sum(w * g[index[tuple(n)]] for w, n in zip(np.atleast_1d(law), shifted.tolist()))
        # float64 sums of at most a few hundred terms of |g| <= 10.
        assert weights[:, i] @ g == pytest.approx(brute, rel=1e-11, abs=1e-13)


# ----------------------------------------------------------------------------- moments
def _brute_force_moments(problem, m, a_opt, k, gamma, scale):
    """E[a], E[v], tbar by a python loop over outcomes, with math-module curves and pmf."""
    N, I = problem.num_participants, problem.num_types
    p, q = np.asarray(problem.probs), np.asarray(problem.quality)
    exp_acc = exp_val = 0.0
    tbar = np.zeros(I)
    present = [1.0 - (1.0 - p[i]) ** N for i in range(I)]
    for n in compositions(N, I):
        log_p = math.lgamma(N + 1) - sum(math.lgamma(x + 1) for x in n) + sum(x * math.log(pi) for x, pi in zip(n, p))
        pn = math.exp(log_p)
        x = sum(n_i * q_i * m_i for n_i, q_i, m_i in zip(n, q, m))
        acc = 0.0
        if x > k * math.exp(-2.0):  # docs/model.md SGB, clipped below at 0
            acc = max(0.0, a_opt - (math.sqrt(2 * k * (2 + math.log(x / k))) + 4) / math.sqrt(x))
        val = scale * (1.0 - math.exp(-gamma * acc)) / (1.0 - math.exp(-gamma))
        exp_acc += pn * acc
        exp_val += pn * val
        for i in range(I):
            if problem.conditioning == "truncated":
                tbar[i] += pn * val / present[i] if n[i] >= 1 else 0.0
            else:
                tbar[i] += pn * n[i] / (N * p[i]) * val
    return exp_acc, exp_val, tbar


@pytest.mark.parametrize("conditioning", ["truncated", "interim"])
@pytest.mark.parametrize("participants,probs,costs,quality,m", [
    (10, [0.2] * 5, np.linspace(0.2, 0.04, 5), None, [391.9, 391.9, 391.9, 391.9, 425.4]),
    (6, [0.1, 0.3, 0.6], [0.3, 0.05, 0.01], [1.0, 0.5, 2.0], [20.0, 150.0, 900.0]),
    (3, [0.7, 0.3], [0.02, 0.01], None, [0.0, 2000.0]),
    (1, [0.25, 0.75], [0.02, 0.01], [2.0, 1.0], [300.0, 2000.0]),
])
def test_moments_match_brute_force(conditioning, participants, probs, costs, quality, m):
    accuracy, valuation = GeneralizationBound(a_opt=0.95, k=2.0), Exponential(scale=120.0, gamma=1.5)
    problem = ContractProblem(participants=participants, probs=probs, costs=costs, quality=quality,
                              accuracy=accuracy, valuation=valuation, conditioning=conditioning)
    m = np.asarray(m, dtype=np.float64)
    with jax.enable_x64(True):
        counts = jnp.asarray(enumerate_outcomes(participants, problem.num_types), jnp.float64)
        got = moments(jnp.asarray(m), problem, counts)
        got = [np.asarray(x) for x in got]
    acc, val, tbar = _brute_force_moments(problem, m, 0.95, 2.0, 1.5, 120.0)
    assert 0.0 < acc < 1.0 and val > 0.0  # a non-trivial contract (not all outcomes clipped to 0)
    # float64 sums over <= 1001 outcomes in a different order and with different pmf code:
    # agreement to ~1e-13 relative; 1e-11 leaves room without hiding any modelling error.
    assert float(got[0]) == pytest.approx(acc, rel=1e-11)
    assert float(got[1]) == pytest.approx(val, rel=1e-11)
    np.testing.assert_allclose(got[2], tbar, rtol=1e-11)
