"""method="global": the bounds hold (against sampled and gridded feasible points), the certified optima
agree with the exact solver where it is right, and the status never claims an open gap."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcontract as dc
from diffcontract import curves
from diffcontract.expectation import outcome_table, with_weights
from diffcontract.formulation import least_rewards
from diffcontract.solvers.branch_and_bound import BranchAndBound, _bound_data, fitted_multipliers
from diffcontract.solvers.global_bounds import bound_boxes, exact_terms, least_rewards_lower, reward_pieces

import hard_instances as hard
from test_cli import run_cli

CURVES = [curves.GeneralizationBound(), curves.GeneralizationBound(a_opt=0.9, k=5.0), curves.PowerLaw(b=2.0, alpha=0.7),
          curves.Arctan(), curves.Pow4(b=3.0, c=0.5, d=2.0), curves.MMF(d=2.5, a_0=0.1), curves.LogPower(d=3.0),
          curves.Exp3(b=2.0), curves.Weibull(d=2.0), curves.ScaledAccuracy(curves.GeneralizationBound(), 3.0)]
SCENARIO_COSTS = {1: np.linspace(0.2, 0.04, 5), 2: np.linspace(1.0, 0.4, 5)}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: type(c).__name__)
def test_concave_from_is_where_the_curve_turns_concave(curve):
    x_c = curve.concave_from()
    x = np.geomspace(max(x_c, 1e-6), max(x_c, 1e-6) * 1e4 + 1e3, 100_001)
    slopes = np.diff(np.asarray(curve(jnp.asarray(x)))) / np.diff(x)
    assert np.max(np.diff(slopes)) <= 1e-9 * np.max(slopes)  # float64 divided differences: rounding only
    if x_c > 0.0:  # not vacuous: below x_c the curve is somewhere convex (a kink or an inflection)
        below = np.linspace(0.3 * x_c, x_c, 10_001)
        slopes = np.diff(np.asarray(curve(jnp.asarray(below)))) / np.diff(below)
        assert np.max(np.diff(slopes)) > 1e-6 * np.max(slopes)


def test_curves_that_cannot_bound_themselves_are_refused_by_name():
    learned = curves.LearnedAccuracy(logits=jnp.zeros((1, 2)), centers=jnp.array([[3.0, 5.0]]),
                                     log_widths=jnp.zeros((1, 2)), raw_asymptote=jnp.zeros(1))
    problem = dc.ContractProblem(participants=3, probs=[0.5, 0.5], costs=[0.02, 0.01], accuracy=learned)
    with pytest.raises(ValueError, match="LearnedAccuracy"):
        dc.solve(problem, method="global")
    with pytest.raises(ValueError, match="no option 'gap_tolerance'.*gap_tol"):
        dc.solve(dc.ContractProblem(participants=3, probs=[0.5, 0.5], costs=[0.02, 0.01]), method="global",
                 gap_tolerance=1e-3)


def test_reward_pieces_are_the_least_rewards():
    rng = np.random.default_rng(0)
    for num in (1, 2, 3, 5):
        costs = jnp.asarray(np.sort(rng.uniform(0.01, 1.0, num))[::-1])
        reservation = jnp.asarray(rng.uniform(0.0, 10.0, num))
        m = jnp.asarray(np.sort(rng.uniform(0.0, 500.0, (200, num)), axis=1))
        got = jnp.max(reservation[None, None, :] + jnp.einsum("ijk,bk->bij", reward_pieces(costs), m), axis=-1)
        want = jax.jit(jax.vmap(least_rewards, in_axes=(0, None, None)))(m, costs, reservation)  # one program
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)  # float64 rounding of the sums


def _sampled_boxes(problem, rng, boxes: int = 64, points: int = 200):
    """Random boxes inside the root box, and monotone points in each (NaN rows: none drawn there)."""
    top = (100.0 - np.asarray(problem.reservation_utility)) / np.asarray(problem.costs)
    corners = np.sort(rng.uniform(0.0, 1.0, (boxes, 2, problem.num_types)) ** 3 * top, axis=1)
    lo, hi = corners[:, 0], corners[:, 1]
    u = rng.uniform(0.0, 1.0, (boxes, points, problem.num_types))
    drawn = np.maximum.accumulate(lo[:, None] + u * (hi - lo)[:, None], axis=-1)
    inside = np.all(drawn <= hi[:, None], axis=-1, keepdims=True)  # the running max can leave a box
    return lo, hi, np.where(inside, drawn, np.nan)


@pytest.mark.parametrize("name", [pytest.param("CHEAP_TYPE_TRAINS_ALONE", marks=pytest.mark.slow),
                                  "DISCONNECTED_FEASIBLE_SET"])
def test_box_bounds_hold_at_every_sampled_feasible_point(name):
    problem = getattr(hard, name)
    table = outcome_table(problem.num_participants, problem.num_types)
    table = with_weights(problem, table._replace(counts=jnp.asarray(table.counts), valid=jnp.asarray(table.valid)))
    data = _bound_data(problem, table, curves.GeneralizationBound().concave_from())
    best = np.asarray(dc.solve(problem).m)
    lam, rho = fitted_multipliers(best, data)
    data = data.replace(budget_multipliers=jnp.asarray(lam), monotone_multipliers=jnp.asarray(rho))
    lo, hi, points = _sampled_boxes(problem, np.random.default_rng(1))
    out = bound_boxes(jnp.asarray(lo), jnp.asarray(hi), jnp.asarray(best), data)
    # Jitted: one program per check, not one per operation.
    value, tbar = jax.jit(jax.vmap(jax.vmap(lambda m: exact_terms(m, data))))(jnp.asarray(points))
    need = jax.jit(jax.vmap(jax.vmap(lambda m: least_rewards(m, data.costs, data.reservation))))(jnp.asarray(points))
    feasible = np.all(np.asarray(need) <= np.asarray(tbar), axis=-1)  # False at the NaN rows
    assert feasible.sum() > 100  # the check is not vacuous
    best_in_box = np.max(np.where(feasible, np.asarray(value), -np.inf), axis=1)
    assert np.all(best_in_box <= np.asarray(out.upper))  # rigorous bound (rounding margin included)
    lower = jax.jit(jax.vmap(least_rewards_lower, in_axes=(0, 0, None, None)))(jnp.asarray(lo), jnp.asarray(hi), data.costs,
                                                                           data.reservation)
    drawn = ~np.isnan(points[..., 0])
    assert np.all((np.asarray(lower)[:, None, :] <= np.asarray(need) + 1e-9)[drawn])  # money, rounding ~1e-13


@pytest.mark.slow  # an I = 5 compilation of the bounds and of the exact solver (~20 s on 2 cores)
@pytest.mark.parametrize("scenario", [1, 2])
def test_paper_scenarios_are_certified_and_agree_with_exact(scenario):
    problem = dc.ContractProblem(participants=10, probs=[0.2] * 5, costs=list(SCENARIO_COSTS[scenario]))
    certified, exact = dc.solve(problem, method="global"), dc.solve(problem)
    assert certified.status_name == "converged" and certified.gap <= 1e-6
    assert certified.upper_bound >= certified.expected_accuracy
    np.testing.assert_allclose(certified.expected_value, exact.expected_value, rtol=1e-9)  # the target


@pytest.mark.parametrize("name, optimum", [
    pytest.param("DISCONNECTED_FEASIBLE_SET", hard.DISCONNECTED_OPTIMUM, marks=pytest.mark.slow),
    pytest.param("EXCLUDED_BY_A_LONG_STEP", hard.EXCLUDED_BY_A_LONG_STEP_OPTIMUM, marks=pytest.mark.slow),
    pytest.param("POOL_BEATS_EXCLUSION", hard.POOL_BEATS_EXCLUSION_OPTIMUM, marks=pytest.mark.slow)])
def test_hard_instances_certified_at_or_above_the_best_known_value(name, optimum):
    sol = dc.solve(getattr(hard, name), method="global")
    assert sol.status_name == "converged"
    assert sol.expected_value >= optimum * (1 - 1e-10)  # the best KKT value is a feasible point
    assert 100.0 * sol.upper_bound >= optimum  # v = 100 r: the bound covers every feasible point


@pytest.mark.slow
def test_two_types_against_a_grid_of_every_menu():
    problem = dc.ContractProblem(participants=5, probs=[0.7, 0.3], costs=[0.05, 0.01])
    sol = dc.solve(problem, method="global")
    table = outcome_table(5, 2)
    table = with_weights(problem, table._replace(counts=jnp.asarray(table.counts), valid=jnp.asarray(table.valid)))
    data = _bound_data(problem, table, 0.0)
    m1, m2 = np.meshgrid(np.linspace(0, 2000, 801), np.linspace(0, 10000, 801), indexing="ij")
    grid = np.stack([m1.ravel(), np.maximum(m1, m2).ravel()], axis=1)
    measure = jax.jit(jax.vmap(lambda m: (*exact_terms(m, data), least_rewards(m, data.costs, data.reservation))))
    value, tbar, need = measure(jnp.asarray(grid))
    feasible = np.all(np.asarray(need) <= np.asarray(tbar), axis=1)
    grid_best = np.max(np.where(feasible, np.asarray(value), -np.inf))
    assert sol.status_name == "converged"
    assert grid_best <= sol.upper_bound  # no menu on the grid beats the certificate
    assert sol.expected_accuracy >= grid_best - 1e-4  # the grid is 2.5 x 12.5 units fine: E[a] within 1e-4


def test_an_exhausted_budget_never_reports_converged():
    problem = dc.ContractProblem(participants=4, probs=[0.3, 0.3, 0.4], costs=[0.3, 0.1, 0.01])
    sol = dc.solve(problem, method="global", max_nodes=2, gap_tol=1e-15)
    assert sol.status_name == "max_iterations" and sol.nodes >= 2
    assert sol.upper_bound >= sol.expected_accuracy and "max_nodes" in sol.message


def test_record_round_trip_and_cli(capsys):
    code, out, _ = run_cli(capsys, "solve", "-N", "6", "--probs", "0.4,0.6", "--costs", "0.03,0.01", "--method",
                           "global", "--json")
    record = json.loads(out)
    assert code == 0 and record["status"] == "converged" and record["gap"] <= 1e-6
    assert record["upper_bound"] >= record["expected_accuracy"] and isinstance(record["nodes"], int)
    again = dc.Solution.from_json(json.dumps(record))
    assert again.upper_bound == record["upper_bound"] and again.gap == record["gap"] and again.nodes == record["nodes"]
    code, _, err = run_cli(capsys, "solve", "-N", "40", "--probs", "0.2,0.2,0.2,0.2,0.2", "--costs",
                           "0.2,0.16,0.12,0.08,0.04", "--method", "global")
    assert code == 3 and "65,536" in err
    code, _, err = run_cli(capsys, "solve", "-N", "6", "--probs", "0.4,0.6", "--costs", "0.03,0.01", "--gap-tol", "1e-3")
    assert code == 2 and "--gap-tol needs --method global" in err


def test_options_are_validated_by_name():
    with pytest.raises(ValueError, match="gap_tol"):
        BranchAndBound(gap_tol=-1.0)
    with pytest.raises(ValueError, match="max_nodes"):
        BranchAndBound(max_nodes=0)
