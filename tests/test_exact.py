"""The exact solver (enumeration + SLSQP, float64) against docs/model.md's reference figures and itself."""

from __future__ import annotations

import itertools

import hard_instances
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcontract
from diffcontract import ContractProblem
from diffcontract.expectation import moments, outcome_table, with_weights
from diffcontract.formulation import least_rewards
from diffcontract.solvers.driver import SolveError


CONSTRAINT_SETS = ["simplified", "full"]
FEASIBILITY = 1e-8  # the solver's own feasibility_tol (money); float64 makes it reachable


def scenario(costs, conditioning="truncated"):
    """docs/model.md "The paper's reference figures": N = 10, p = 0.2 each, SGB(1, 1), v = 100 r."""
    return ContractProblem(participants=10, probs=[0.2] * 5, costs=costs, conditioning=conditioning)


@pytest.fixture(scope="module")
def scenario_1():
    return scenario(np.linspace(0.2, 0.04, 5))


@pytest.fixture(scope="module")
def scenario_2():
    return scenario(np.linspace(1.0, 0.4, 5))


@pytest.fixture(scope="module")
def scenario_3():
    return scenario([0.5, 0.4, 0.03, 0.02, 0.001])


@pytest.fixture(scope="module")
def solved(scenario_1, scenario_2, scenario_3):
    """Every (scenario, constraint set) solved once for the whole module."""
    problems = {1: scenario_1, 2: scenario_2, 3: scenario_3}
    return {(k, c): diffcontract.solve(p, method="exact", constraints=c) for k, p in problems.items()
            for c in CONSTRAINT_SETS}


def assert_feasible(sol):
    """Independent numpy check of the first-moment constraints (docs/model.md) from the reported menu."""
    m, t, tbar = np.asarray(sol.contributions), np.asarray(sol.rewards), np.asarray(sol.reward_bounds)
    c, f = np.asarray(sol.problem.costs), np.asarray(sol.reservation_utilities)
    u = t - c * m
    assert np.all(m >= 0.0) and np.all(t >= -FEASIBILITY)
    assert np.all(t <= tbar + FEASIBILITY)  # budget
    assert np.all(u >= f - FEASIBILITY)  # IR
    deviation = t[None, :] - c[:, None] * m[None, :]  # [i, j]: type i taking item j
    assert np.all(u[:, None] >= deviation - FEASIBILITY)  # IC
    # Reported derived quantities: exact identities up to float64 rounding of O(100) money values.
    np.testing.assert_allclose(sol.utilities, u, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sol.information_rents, u - f, rtol=0, atol=1e-12)
    assert np.all(np.asarray(sol.information_rents) >= -FEASIBILITY)


# ----------------------------------------------------------------------------- docs/model.md scenarios 1 and 2
@pytest.mark.parametrize("constraints", CONSTRAINT_SETS)
def test_scenario_1(solved, constraints):
    sol = solved[1, constraints]
    assert sol.status_name == "converged" and sol.succeeded
    assert sol.max_violation <= FEASIBILITY
    # rtol 1e-7: float64 exact solver; docs/model.md's reference carries 9 significant digits.
    assert sol.expected_value == pytest.approx(86.4782760, rel=1e-7)
    m, t = np.asarray(sol.contributions), np.asarray(sol.rewards)
    # Types 1-4 pooled exactly (1e-6 relative: the "full" formulation's SQP holds the pool to ~1e-8).
    np.testing.assert_allclose(m[:4], m[0], rtol=1e-6)
    np.testing.assert_allclose(t[:4], t[0], rtol=1e-6)
    assert sol.pooled_groups(rtol=1e-6) == [[0, 1, 2, 3], [4]]
    # docs/model.md's structure figures carry 3 decimals: half a unit of the last digit.
    np.testing.assert_allclose(m, [391.909] * 4 + [425.393], rtol=0, atol=5e-4)
    np.testing.assert_allclose(t, [85.152] * 4 + [86.491], rtol=0, atol=5e-4)
    assert_feasible(sol)


@pytest.mark.parametrize("constraints", CONSTRAINT_SETS)
def test_scenario_2(solved, constraints):
    sol = solved[2, constraints]
    assert sol.status_name == "converged"
    assert sol.max_violation <= FEASIBILITY
    assert sol.expected_value == pytest.approx(69.0532528, rel=1e-7)  # float64 exact; 9-digit reference
    np.testing.assert_array_equal(sol.reservation_utilities, 0.0)  # f = 0 for all (docs/model.md)
    assert sol.pooled_groups(rtol=1e-6) == [[0, 1, 2, 3, 4]]
    # "all five pooled at m = t = 69.0533": 4 decimals given, half a unit of the last one.
    np.testing.assert_allclose(sol.contributions, 69.0533, rtol=0, atol=5e-5)
    np.testing.assert_allclose(sol.rewards, 69.0533, rtol=0, atol=5e-5)
    assert_feasible(sol)


# ----------------------------------------------------------------------------- scenario 3
def test_scenario_3_formulations_agree(solved):
    simplified, full = solved[3, "simplified"], solved[3, "full"]
    for sol in (simplified, full):
        assert sol.status_name == "converged" and sol.max_violation <= FEASIBILITY
        assert_feasible(sol)
    # docs/model.md: "some f_i = 0, some > 0".
    f = np.asarray(simplified.reservation_utilities)
    assert np.any(f == 0.0) and np.any(f > 0.0)
    # Two formulations of one problem, both solved to float64 KKT precision: 1e-7 relative.
    assert simplified.expected_value == pytest.approx(full.expected_value, rel=1e-7)
    np.testing.assert_allclose(simplified.contributions, full.contributions, rtol=1e-7)
    np.testing.assert_allclose(simplified.rewards, full.rewards, rtol=1e-7)


# ----------------------------------------------------------------------------- random instances
# (seed, conditioning): each conditioning on six seeds. Every distinct (N, I, conditioning) costs a
# compilation, and a simplified and a full solve each took 10-30 s in the default run (2 cores
# shared), so the default run keeps four (two per conditioning) and the other eight run under
# ``-m slow``: the default run also checks exact against ALM on 13 random I = 3, 5 problems and the
# hard instances (test_alm.py).
DEFAULT_RANDOM = 4
RANDOM_CASES = [pytest.param(seed, "truncated" if seed % 2 == 0 else "interim",
                             id=f"seed{seed}-{'truncated' if seed % 2 == 0 else 'interim'}",
                             marks=[pytest.mark.slow] if seed >= DEFAULT_RANDOM else [])
                for seed in range(12)]


def random_problem(seed, conditioning):
    rng = np.random.default_rng(seed)
    num_types = int(rng.integers(2, 6))  # I in 2..5
    participants = int(rng.integers(2, 13))  # N in 2..12
    probs = rng.dirichlet(np.ones(num_types))
    costs = np.exp(rng.uniform(np.log(0.005), np.log(0.5), num_types))  # log-uniform, unsorted
    assert np.unique(costs).size == num_types
    return ContractProblem(participants=participants, probs=probs, costs=costs, conditioning=conditioning)


@pytest.mark.parametrize("seed,conditioning", RANDOM_CASES)
def test_random_instances(seed, conditioning):
    problem = random_problem(seed, conditioning)
    solutions = {c: diffcontract.solve(problem, constraints=c) for c in CONSTRAINT_SETS}
    for sol in solutions.values():
        assert sol.status_name == "converged", sol.message
        assert sol.max_violation <= FEASIBILITY
        # Budget (t <= tbar + 1e-8), IR/IC, information rents >= -1e-8, u = t - c m: all in here.
        assert_feasible(sol)
        np.testing.assert_array_equal(sol.problem.costs, problem.costs)  # reported in the problem's canonical order
    # Same optimum from both formulations (docs/model.md: equivalent at the optimum), float64 KKT points.
    assert solutions["simplified"].expected_value == pytest.approx(solutions["full"].expected_value, rel=1e-7)


# ----------------------------------------------------------------------------- driver errors and status
@pytest.mark.parametrize("option,value", [("constraints", "bogus"), ("method", "bogus")])
def test_solve_rejects_unknown_options(scenario_1, option, value):
    with pytest.raises(ValueError, match=option):
        diffcontract.solve(scenario_1, **{option: value})


def test_status_reported_and_throw(scenario_1):
    # One SLSQP iteration cannot reach the optimum of scenario 1 (it needs ~8).
    sol = diffcontract.solve(scenario_1, method="exact", max_iterations=1, throw=False)
    assert sol.status_name != "converged" and not sol.succeeded
    assert sol.status_name == "max_iterations"
    with pytest.raises(SolveError) as excinfo:
        diffcontract.solve(scenario_1, method="exact", max_iterations=1, throw=True)
    assert excinfo.value.solution.status_name == sol.status_name
    # ... and throw=True is silent when the solve converges.
    assert diffcontract.solve(scenario_1, throw=True).status_name == "converged"


def test_input_type_order_needs_no_new_compilation():
    # type_order is static pytree data; the kernels get the identity-order view, so the same
    # problem given in another order reuses every compilation and maps the contract back.
    from diffcontract.solvers.exact import _evaluate

    given = dict(participants=5, probs=[0.2, 0.3, 0.5], costs=[0.3, 0.2, 0.1])
    first = diffcontract.solve(ContractProblem(**given))
    compiled = _evaluate._cache_size()
    reordered = ContractProblem(participants=5, probs=given["probs"][::-1], costs=given["costs"][::-1])
    second = diffcontract.solve(reordered)
    assert _evaluate._cache_size() == compiled
    assert second.problem.type_order == (2, 1, 0)
    np.testing.assert_array_equal(second.contributions, first.contributions)  # same kernel, same inputs


def test_the_start_search_compiles_once_with_and_without_a_restart_row():
    # The host path always passes a restart row (a placeholder, dropped, when there is none): the
    # full set's solve from a menu (fallback, binding-IR check) reuses the plain full solve's kernel.
    from diffcontract.solvers.driver import _host_starts

    problem = ContractProblem(participants=6, probs=[0.2, 0.3, 0.5], costs=[0.3, 0.2, 0.1])
    plain = diffcontract.solve(problem, constraints="full")
    compiled = _host_starts._cache_size()
    restarted = diffcontract.run(problem, diffcontract.SLSQP(), "full", restart_from=plain.contributions)
    assert _host_starts._cache_size() == compiled
    assert restarted.status_name == plain.status_name == "converged"
    # Same optimum from its own menu (float64 KKT points): 1e-12 relative.
    np.testing.assert_allclose(restarted.expected_value, plain.expected_value, rtol=1e-12)


def test_a_settled_run_stops_at_the_optimum_slsqp_would_end_at():
    # After each SLSQP iteration the certificate is measured; an iterate with violation and
    # stationarity <= settled_tol ends the run. settled_tol = 0 lets SLSQP's own test decide.
    problem = ContractProblem(participants=10, probs=[0.2] * 5, costs=[0.2, 0.16, 0.12, 0.08, 0.04])
    settled = diffcontract.solve(problem)
    crawled = diffcontract.solve(problem, settled_tol=0.0)
    assert settled.status_name == crawled.status_name == "converged"
    assert settled.iterations <= crawled.iterations
    assert settled.max_violation <= 1e-10 * 100.0  # settled_tol x (v(1) - v(0)), money
    # Both are the optimum to float64 rounding: 1e-13 relative (the end points differ by ulps).
    np.testing.assert_allclose(settled.expected_value, crawled.expected_value, rtol=1e-13)
    np.testing.assert_allclose(settled.contributions, crawled.contributions, rtol=1e-9)



# ----------------------------------------------------------------------------- global quality
BEST_KNOWN = {"disconnected": (hard_instances.DISCONNECTED_FEASIBLE_SET, hard_instances.DISCONNECTED_OPTIMUM),
              "long-step": (hard_instances.EXCLUDED_BY_A_LONG_STEP, hard_instances.EXCLUDED_BY_A_LONG_STEP_OPTIMUM),
              "pool-beats-exclusion": (hard_instances.POOL_BEATS_EXCLUSION,
                                       hard_instances.POOL_BEATS_EXCLUSION_OPTIMUM)}


@pytest.mark.parametrize("name", sorted(BEST_KNOWN))
def test_hard_instances_reach_the_best_known_optimum(name):
    # Each once ended at a worse KKT point (hard_instances.py: 6.44, 74.806, 58.559).
    problem, optimum = BEST_KNOWN[name]
    for constraints in CONSTRAINT_SETS:
        sol = diffcontract.solve(problem, constraints=constraints)
        assert sol.status_name == "converged", sol.message
        assert sol.expected_value == pytest.approx(optimum, rel=1e-9)  # float64 KKT point, both sets


def _grid_optimum(problem, points: int) -> float:
    """The best E[v(a)] over monotone menus on a grid (0 and a geometric ladder per type), each
    with the full set's least rewards, kept where every budget holds: a lower bound on the
    first-moment optimum found without any solver."""
    top = 20.0 * max(float(np.max(problem.reservation_data)), 50.0)
    ladder = np.concatenate([[0.0], np.geomspace(1.0, top, points - 1)])
    # Non-decreasing menus: the multisets of ladder levels, in lexicographic order (numpy, not a Python filter).
    menus = ladder[np.array(list(itertools.combinations_with_replacement(range(points), problem.num_types)))]
    with jax.enable_x64(True):
        table = with_weights(problem, outcome_table(problem.num_participants, problem.num_types))

        def score(m):
            mom = moments(m, problem, table)
            t = least_rewards(m, problem.costs, problem.reservation_utility)
            return jnp.where(jnp.all(mom.reward_bounds >= t), mom.expected_value, -jnp.inf)

        return float(jnp.max(jax.jit(jax.vmap(score))(jnp.asarray(menus))))


GRID_CASES = {"disconnected": hard_instances.DISCONNECTED_FEASIBLE_SET,
              "cheap-type-alone": hard_instances.CHEAP_TYPE_TRAINS_ALONE,
              **{f"random{seed}": seed for seed in range(4)}}


@pytest.mark.parametrize("name", sorted(GRID_CASES))
def test_at_least_as_good_as_a_grid_search(name):
    # A local solver on a non-concave problem: no guarantee, but it must not lose to brute force
    # on small problems (I <= 3 types, 60 levels each: up to ~37,000 monotone menus).
    problem = GRID_CASES[name]
    if isinstance(problem, int):
        rng = np.random.default_rng(problem)
        num = int(rng.integers(2, 4))
        problem = ContractProblem(participants=int(rng.integers(2, 9)), probs=rng.dirichlet(np.ones(num)),
                                  costs=np.exp(rng.uniform(np.log(0.005), np.log(0.8), num)))
    grid = _grid_optimum(problem, 60)
    sol = diffcontract.solve(problem)
    assert sol.status_name == "converged", sol.message
    assert sol.expected_value >= grid - 1e-9 * abs(grid)  # the grid's menus are exactly feasible
