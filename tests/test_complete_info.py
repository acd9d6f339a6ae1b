"""The complete-information benchmark (docs/model.md "The complete-information benchmark") and the welfare
comparisons built on it (docs/model.md "The complete-information benchmark")."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multinomial

import diffcontract
from diffcontract import ContractProblem, problem_grid, stack_problems
from diffcontract.analysis.scenarios import paper_scenario
from diffcontract.analysis.welfare import Welfare, information_cost, information_rents, welfare
from diffcontract.curves import Arctan, Exponential, PowerLaw
from diffcontract.expectation import enumerate_outcomes, outcome_table
from diffcontract.solvers._solution import Status
from diffcontract.solvers.complete_info import (BRACKET_TOL, complete_information_kernel, solve_complete_information,
                                                solve_complete_information_batch)

BRUTE_POINTS = 10**6 + 1  # grid of the brute-force search over [0, a_max]: spacing a_max * 1e-6


def make_problems() -> dict[str, ContractProblem]:
    """Small problems (I = 2, 3; N <= 6) covering f > 0, f = 0, mixed f, quality and other curves."""
    return {
        "sec61_N2": ContractProblem(2, [0.3, 0.7], [0.02, 0.01]),
        "sec61_N5": ContractProblem(5, [0.3, 0.7], [0.02, 0.01]),
        "three_mixed_f": ContractProblem(4, [0.2, 0.3, 0.5], [0.5, 0.1, 0.02]),
        "three_zero_f": ContractProblem(6, [0.3, 0.3, 0.4], [1.0, 0.7, 0.4]),
        "quality_powerlaw_exp": ContractProblem(4, [0.6, 0.4], [0.05, 0.02], accuracy=PowerLaw(0.9, 1.0, 0.5),
                                                valuation=Exponential(100.0, 2.0), quality=[1.5, 0.5]),
        "arctan": ContractProblem(3, [0.5, 0.5], [0.3, 0.05], accuracy=Arctan(0.01)),
        # f = 0 and data so dear that only some outcomes have a fixed point above A = 0.
        "zero_f_trivial": ContractProblem(3, [0.5, 0.5], [5.0, 0.4]),
    }


PROBLEMS = make_problems()


@pytest.fixture(scope="module")
def solved():
    return {name: solve_complete_information(p) for name, p in PROBLEMS.items()}


@jax.jit
def _brute_row(problem, counts, A):
    """Largest A on the grid with v(A) >= max_present f and A <= a(sum_i n_i q_i (v(A) - f_i) / c_i).

    Written from docs/model.md independently of the kernel (per-type m, no bracket, no root finding);
    returns -1 when no grid point is feasible.
    """
    present = counts >= 1
    f = problem.reservation_utility
    v = problem.valuation(A)
    m = (v[:, None] - f[None, :]) / problem.costs[None, :]
    pooled = jnp.sum(jnp.where(present[None, :], counts[None, :] * problem.quality[None, :] * m, 0.0), axis=1)
    h = problem.accuracy(jnp.maximum(pooled, 0.0))
    f_max = jnp.max(jnp.where(present, f, -jnp.inf))
    ok = (A <= h) & (v >= f_max)
    return jnp.max(jnp.where(ok, A, -1.0))


def h_of(problem, counts, A):
    """h(A) per outcome, numpy/JAX from docs/model.md: (K,) for counts (K, I) and A (K,)."""
    f, c, q = (np.asarray(x) for x in (problem.reservation_utility, problem.costs, problem.quality))
    v = np.asarray(problem.valuation(jnp.asarray(A)))
    m = np.where(counts >= 1, (v[:, None] - f[None, :]) / c[None, :], 0.0)
    return np.asarray(problem.accuracy(jnp.asarray(np.sum(counts * q[None, :] * m, axis=1))))


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_matches_brute_force(name, solved):
    problem, result = PROBLEMS[name], solved[name]
    with jax.enable_x64(True):
        a_max = float(problem.accuracy.a_max)
        grid = jnp.linspace(0.0, a_max, BRUTE_POINTS)
        spacing = a_max / (BRUTE_POINTS - 1)
        counts = np.asarray(result.counts)
        brute = np.array([float(_brute_row(problem, jnp.asarray(n), grid)) for n in counts])
    assert np.all(brute >= 0.0) and np.all(result.feasible)
    A = np.asarray(result.pooled_accuracy)
    # A brute-force feasible point is below the largest fixed point (h increasing), which the
    # kernel finds to its bracket 1e-12; 1e-9 absorbs the two codes' different float64 rounding.
    assert np.all(A >= brute - 1e-9)
    # ... and the largest fixed point is less than one grid spacing above the best feasible grid point.
    assert np.all(A <= brute + spacing + 1e-9)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_fixed_point_and_participation(name, solved):
    problem, result = PROBLEMS[name], solved[name]
    counts, A = np.asarray(result.counts), np.asarray(result.pooled_accuracy)
    with jax.enable_x64(True):
        h = h_of(problem, counts, A)
        v = np.asarray(problem.valuation(jnp.asarray(A)))
    f = np.asarray(problem.reservation_utility)
    f_max = np.max(np.where(counts >= 1, f[None, :], -np.inf), axis=1)
    assert np.all(result.feasible) and bool(result.all_feasible) and int(result.status) == Status.CONVERGED
    # Bisection bracket <= 1e-12 times a slope of h of order 1-10: far inside the 1e-9 contract.
    np.testing.assert_array_less(np.abs(h - A), 1e-9)
    assert np.all(A <= h)  # the lower end of the bracket is returned: feasible in floating point
    assert np.all(v >= f_max - 1e-9)
    np.testing.assert_allclose(result.pooled_value, v, rtol=0, atol=1e-12)  # same float64 expression
    # Ex-post IR binds: m_i = (v(A) - f_i) / c_i for present types, 0 for absent ones.
    m_expected = np.where(counts >= 1, (v[:, None] - f[None, :]) / np.asarray(problem.costs)[None, :], 0.0)
    np.testing.assert_allclose(result.contributions, m_expected, rtol=1e-12, atol=0)  # float64 rounding
    assert np.all(np.isfinite(result.contributions))


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_utilities_equal_reservation(name, solved):
    problem, result = PROBLEMS[name], solved[name]
    # u_i = E[v(A) - c_i m_i | i] with c_i m_i = v(A) - f_i: equal to f up to float64 rounding of
    # O(100) money values summed over <= 28 outcomes.
    np.testing.assert_allclose(result.utilities, problem.reservation_utility, rtol=0, atol=1e-10)
    # The rewards are what each present type receives in expectation.
    np.testing.assert_allclose(result.rewards - problem.costs * result.expected_contributions, result.utilities,
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_expectations_independent(name, solved):
    """Expectations against scipy's multinomial law (truncated conditioning, docs/model.md)."""
    problem, result = PROBLEMS[name], solved[name]
    counts = np.asarray(result.counts)
    N, p = problem.num_participants, np.asarray(problem.probs)
    pmf = multinomial.pmf(counts, N, p)
    present = counts >= 1
    w = pmf[:, None] * present / (pmf @ present)[None, :]
    # float64 sums of <= 28 terms of size <= 1e4 (data units), far above rounding.
    np.testing.assert_allclose(result.probabilities, pmf, rtol=1e-12, atol=0)
    np.testing.assert_allclose(result.expected_value, pmf @ result.pooled_value, rtol=1e-12)
    np.testing.assert_allclose(result.expected_accuracy, pmf @ result.pooled_accuracy, rtol=1e-12)
    np.testing.assert_allclose(result.expected_contributions, np.sum(w * result.contributions, axis=0), rtol=1e-10)


def test_batch_equals_one_by_one():
    cases = ((2, 0.1), (7, 0.5), (12, 0.9), (30, 0.3))
    problems = [ContractProblem(n, [p1, 1.0 - p1], [0.02, 0.01]) for n, p1 in cases]
    batch = solve_complete_information_batch(problems)
    assert np.asarray(batch.pooled_accuracy).shape[0] == len(problems)
    for k, p in enumerate(problems):
        one = solve_complete_information(p)
        K = p.num_outcomes
        valid = np.asarray(batch.valid[k])
        assert valid.sum() == K and np.all(valid[:K])
        # Same arithmetic on the same rows; any difference is rounding steering one bisection step
        # the other way, which still ends in a bracket <= 1e-12 around the same root.
        np.testing.assert_allclose(batch.pooled_accuracy[k, :K], one.pooled_accuracy, rtol=0, atol=1e-12)
        np.testing.assert_allclose(batch.contributions[k, :K], one.contributions, rtol=1e-10, atol=0)
        for field in ("expected_accuracy", "expected_value"):
            np.testing.assert_allclose(getattr(batch, field)[k], getattr(one, field), rtol=0, atol=1e-12)
        for field in ("expected_contributions", "rewards", "utilities"):
            np.testing.assert_allclose(getattr(batch, field)[k], getattr(one, field), rtol=1e-10, atol=1e-10)
        # Padding rows: zero probability and values, vacuously feasible.
        pad = ~valid
        assert np.all(batch.probabilities[k][pad] == 0.0) and np.all(batch.pooled_accuracy[k][pad] == 0.0)
        assert np.all(batch.contributions[k][pad] == 0.0) and np.all(batch.feasible[k][pad])
    assert np.all(batch.all_feasible) and np.all(batch.status == Status.CONVERGED)


def test_table_length_pads_without_changing_results():
    problems = [ContractProblem(n, [0.4, 0.6], [0.02, 0.01]) for n in (3, 9)]
    default = solve_complete_information_batch(problems)
    padded = solve_complete_information_batch(problems, table_length=40)
    assert padded.pooled_accuracy.shape == (2, 40)
    K = default.pooled_accuracy.shape[1]
    # Rows are solved independently by the same elementwise arithmetic: identical roots.
    np.testing.assert_array_equal(padded.pooled_accuracy[:, :K], default.pooled_accuracy)
    # Padding rows have zero weight; a longer reduction may only sum in another order.
    np.testing.assert_allclose(padded.expected_value, default.expected_value, rtol=1e-14)
    with pytest.raises(ValueError, match="shorter"):
        solve_complete_information_batch(problems, table_length=5)


def test_problem_grid_batch_equals_stacked():
    ns, p1 = np.array([4, 10, 16]), np.array([0.2, 0.6, 0.95])
    probs = np.stack([p1, 1.0 - p1], axis=1)
    grid = problem_grid(ns, probs, np.tile([0.02, 0.01], (3, 1)))
    stacked = stack_problems([ContractProblem(int(n), pr, [0.02, 0.01]) for n, pr in zip(ns, probs)])
    a, b = solve_complete_information_batch(grid), solve_complete_information_batch(stacked)
    # Reservation utilities come from the same jitted routine either way: equal to rounding.
    np.testing.assert_allclose(a.expected_value, b.expected_value, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.pooled_accuracy, b.pooled_accuracy, rtol=0, atol=1e-12)


def test_interim_conditioning():
    truncated = ContractProblem(6, [0.2, 0.3, 0.5], [0.5, 0.1, 0.02])
    interim = ContractProblem(6, [0.2, 0.3, 0.5], [0.5, 0.1, 0.02], conditioning="interim")
    a, b = solve_complete_information(truncated), solve_complete_information(interim)
    # The per-outcome contract does not depend on the conditioning, only its expectations do.
    np.testing.assert_array_equal(a.pooled_accuracy, b.pooled_accuracy)
    np.testing.assert_allclose(b.expected_value, a.expected_value, rtol=1e-14)  # unconditional: same sum
    counts, N, p = np.asarray(b.counts), 6, np.asarray(interim.probs)
    w = multinomial.pmf(counts, N, p)[:, None] * counts / (N * p)[None, :]  # docs/model.md interim weights
    np.testing.assert_allclose(b.expected_contributions, np.sum(w * b.contributions, axis=0), rtol=1e-10)
    np.testing.assert_allclose(b.rewards, b.pooled_value @ w, rtol=1e-10)
    # Ex-post IR binds in every outcome, so any conditioning gives u = f (rounding of O(100) values).
    np.testing.assert_allclose(b.utilities, interim.reservation_utility, rtol=0, atol=1e-10)
    assert not np.allclose(a.expected_contributions, b.expected_contributions, rtol=1e-6)
    batch = solve_complete_information_batch([interim, ContractProblem(3, [0.2, 0.3, 0.5], [0.5, 0.1, 0.02],
                                                                       conditioning="interim")])
    np.testing.assert_allclose(batch.expected_contributions[0], b.expected_contributions, rtol=1e-10)
    np.testing.assert_allclose(batch.utilities, np.stack([interim.reservation_utility] * 2), rtol=0, atol=1e-10)


def test_kernel_traces_once_for_equal_shapes():
    counter = chex.assert_max_traces(n=1)

    @jax.jit
    @counter
    def kernel(problem, table):
        return complete_information_kernel(problem, table)

    with jax.enable_x64(True):
        table = outcome_table(5, 2)
        first = ContractProblem(5, [0.3, 0.7], [0.02, 0.01])
        second = ContractProblem(5, [0.6, 0.4], [0.05, 0.03])  # other numbers, same shapes
        to64 = lambda p: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), p)  # noqa: E731
        r1 = kernel(to64(first), table)
        r2 = kernel(to64(second), table)
    assert float(r1.expected_value) != float(r2.expected_value)


def test_kernel_accepts_bare_counts_and_float32():
    """Without x64 the kernel runs in float32 (the package never switches precision in a kernel)."""
    problem = ContractProblem(4, [0.3, 0.7], [0.02, 0.01])
    reference = solve_complete_information(problem)
    counts = enumerate_outcomes(4, 2).astype(np.float32)
    to32 = lambda p: jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a, np.float32)), p)  # noqa: E731
    result = jax.jit(complete_information_kernel)(to32(problem), jnp.asarray(counts))
    assert result.pooled_accuracy.dtype == jnp.float32 and bool(result.all_feasible)
    # float32 curves carry ~1e-7 relative rounding; the root moves by that over the slope of g.
    np.testing.assert_allclose(result.pooled_accuracy, reference.pooled_accuracy, rtol=0, atol=1e-5)


def test_bracket_settings_change_nothing_material(solved):
    problem = PROBLEMS["three_zero_f"]
    coarse = solve_complete_information(problem, grid_size=16)
    fine = solve_complete_information(problem, grid_size=512, bracket_tol=BRACKET_TOL / 10)
    # Both bracket the same largest root to <= 1e-12.
    np.testing.assert_allclose(coarse.pooled_accuracy, fine.pooled_accuracy, rtol=0, atol=2e-12)
    np.testing.assert_allclose(coarse.pooled_accuracy, solved["three_zero_f"].pooled_accuracy, rtol=0, atol=2e-12)


def test_rejects_batch_in_single_entry():
    batch = stack_problems([PROBLEMS["sec61_N2"], PROBLEMS["sec61_N5"]])
    with pytest.raises(ValueError, match="batch"):
        solve_complete_information(batch)


# ----------------------------------------------------------------------------- welfare

@pytest.fixture(scope="module")
def paper_solutions():
    problems = [paper_scenario(k) for k in (1, 2, 3)]
    return problems, [diffcontract.solve(p, method="exact") for p in problems]


WELFARE_TOL = 1e-8  # the exact solver's feasibility tolerance (money), which bounds how far below 0 a rent can be


def test_paper_scenarios_welfare(paper_solutions):
    problems, solutions = paper_solutions
    for problem, solution in zip(problems, solutions):
        assert solution.succeeded
        complete = solve_complete_information(problem)
        cost = information_cost(solution, complete)
        assert cost.shape == () and cost >= -WELFARE_TOL
        rents = information_rents(solution)
        assert rents.shape == (problem.num_types,) and np.all(rents >= -WELFARE_TOL)
        w = welfare(problem, solution, complete=complete)
        assert isinstance(w, Welfare)
        np.testing.assert_allclose(w.information_cost, w.complete_value - w.incomplete_value, rtol=0, atol=1e-12)
        np.testing.assert_allclose(w.incomplete_value, solution.expected_value, rtol=0, atol=0)
        np.testing.assert_allclose(w.information_rents, solution.information_rents, rtol=0, atol=1e-10)
        # welfare() solving the benchmark itself gives the same figures.
        np.testing.assert_allclose(welfare(None, solution).information_cost, w.information_cost, rtol=0, atol=0)


def test_welfare_batched(paper_solutions):
    from diffcontract.solvers.batch import _stack_solutions

    problems, solutions = paper_solutions
    stacked = _stack_solutions(solutions)
    w = welfare(stacked.problem, stacked)
    assert w.information_cost.shape == (3,) and w.information_rents.shape == (3, 5)
    singles = [welfare(p, s) for p, s in zip(problems, solutions)]
    # Batched vs single benchmark: bisection brackets <= 1e-12, values O(100) money.
    np.testing.assert_allclose(w.information_cost, [s.information_cost for s in singles], rtol=0, atol=1e-9)
    np.testing.assert_allclose(w.information_rents, np.stack([s.information_rents for s in singles]), rtol=0, atol=0)
    assert np.all(w.information_cost >= -WELFARE_TOL) and np.all(w.information_rents >= -WELFARE_TOL)
    # A list of problems works as well as a batched problem.
    np.testing.assert_allclose(welfare(problems, stacked).information_cost, w.information_cost, rtol=0, atol=0)


def test_information_cost_shape_mismatch(paper_solutions):
    problems, solutions = paper_solutions
    batch = solve_complete_information_batch(problems[:2])
    with pytest.raises(ValueError, match="shapes differ"):
        information_cost(solutions[0], batch)
