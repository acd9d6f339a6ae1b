"""Learned and parametric-family curves inside contract problems: solvers, jit, grad, vmap."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcontract as dc
from diffcontract.curves import MMF, LearnedAccuracy, Pow4, ScaledAccuracy
from diffcontract.expectation import enumerate_outcomes, moments

# A hand-set two-member learned curve in units of data: rises around x ~ 50-500 towards ~0.95.
LEARNED = LearnedAccuracy(logits=np.array([[0.0, -1.0], [0.3, -0.5]]),
                          centers=np.array([[np.log1p(60.0), np.log1p(400.0)], [np.log1p(80.0), np.log1p(600.0)]]),
                          log_widths=np.log(np.array([[0.9, 1.4], [1.0, 1.2]])),
                          raw_asymptote=np.array([3.0, 2.8]))
CURVES = {"learned": LEARNED, "scaled": ScaledAccuracy(LEARNED, 2.0), "pow4": Pow4(0.95, 4.0, 0.5, 2.0),
          "mmf": MMF(0.95, 0.0, 80.0, 1.1)}


def small_problem(curve, costs=(0.02, 0.01)):
    return dc.ContractProblem(participants=4, probs=[0.4, 0.6], costs=list(costs), accuracy=curve)


# Each curve structure compiles the exact solver's kernels afresh (~5 s): the learned curve runs
# by default, the other kinds with -m slow.
@pytest.mark.parametrize("name", [n if n == "learned" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in sorted(CURVES)])
def test_exact_solver_converges_in_both_formulations(name):
    values = []
    for constraints in ("simplified", "full"):
        solution = dc.solve(small_problem(CURVES[name]), method="exact", constraints=constraints)
        assert solution.status_name == "converged", solution.message
        assert solution.max_violation <= 1e-8  # the exact solver's own feasibility tolerance (money)
        assert np.all(solution.information_rents >= -1e-8)  # IR holds within that tolerance
        values.append(solution.expected_value)
    # Both reach KKT points of the same problem to 1e-6 scaled stationarity: values agree to ~1e-7.
    assert values[0] == pytest.approx(values[1], rel=1e-6)


def test_jit_and_grad_through_the_curve_parameters():
    problem = small_problem(LEARNED)
    with jax.enable_x64(True):
        counts = jnp.asarray(enumerate_outcomes(4, 2), jnp.float64)
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        m = jnp.asarray([100.0, 150.0])

        def value(curve):
            return moments(m, p64.replace(accuracy=curve), counts).expected_value

        grads = jax.jit(jax.grad(value))(p64.accuracy)
        # Finite difference in one parameter (central, step 1e-6): agreement to ~1e-6 relative.
        bump = np.zeros((2,))
        bump[0] = 1e-6
        up = p64.accuracy.replace(raw_asymptote=p64.accuracy.raw_asymptote + bump)
        down = p64.accuracy.replace(raw_asymptote=p64.accuracy.raw_asymptote - bump)
        fd = (value(up) - value(down)) / 2e-6
    chex.assert_tree_all_finite(grads)
    assert float(grads.raw_asymptote[0]) == pytest.approx(float(fd), rel=1e-6)


def test_vmap_over_a_stack_of_problems_with_learned_curves():
    other = LEARNED.replace(raw_asymptote=LEARNED.raw_asymptote - 0.5)
    problems = [small_problem(LEARNED), small_problem(other)]
    batch = dc.stack_problems(problems)
    with jax.enable_x64(True):
        counts = jnp.asarray(enumerate_outcomes(4, 2), jnp.float64)
        m = jnp.asarray([100.0, 150.0])
        batched = jax.vmap(lambda p: moments(m, p, counts).expected_value)(
            jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), batch))
        loop = [float(moments(m, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), p),
                              counts).expected_value) for p in problems]
    np.testing.assert_allclose(np.asarray(batched), loop, rtol=1e-13)  # vmap vs loop, float64


def test_problem_grid_with_a_learned_curve():
    batch = dc.problem_grid([4, 4], [[0.4, 0.6]] * 2, [[0.02, 0.01]] * 2, accuracy=LEARNED)
    single = dc.ContractProblem(participants=4, probs=[0.4, 0.6], costs=[0.02, 0.01], accuracy=LEARNED)
    # Same global reservation search, vectorized vs one at a time: float64 rounding only.
    np.testing.assert_allclose(np.asarray(batch.reservation_utility)[1], single.reservation_utility, rtol=1e-9)
    leaves = jax.tree_util.tree_leaves(batch.accuracy)
    assert all(np.shape(leaf)[0] == 2 for leaf in leaves)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CURVES))
def test_alm_and_batch_solvers(name):
    problem = small_problem(CURVES[name])
    exact = dc.solve(problem, method="exact")
    alm = dc.solve(problem, method="alm")
    assert alm.status_name == "converged"
    # Both converge to the same optimum: the ALM's tolerance is ~1e-8 relative on the value.
    assert alm.expected_value == pytest.approx(exact.expected_value, rel=1e-6)
    batch = dc.solve_batch([problem, small_problem(CURVES[name], (0.03, 0.01))], method="alm")
    assert np.all(np.asarray(batch.status) == int(dc.Status.CONVERGED))


@pytest.mark.slow
def test_paper_scenarios_with_a_fitted_distilled_curve():
    from diffcontract.analysis.scenarios import paper_scenario
    from diffcontract.curves import distill, fit_learned
    from diffcontract.data import sklearn_curve

    curve = distill(fit_learned(sklearn_curve("digits", "logreg")).curve).curve
    for number in (1, 2, 3):
        solution = dc.solve(paper_scenario(number, accuracy=curve), method="exact")
        assert solution.status_name == "converged"
