"""Implicit derivatives of the optimal contract (diffcontract.sensitivity) against finite
differences of the exact solver, the envelope theorem, and at the paper's pooled optima."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import diffcontract as dc
from diffcontract import ContractProblem, Status, solve_exact
from diffcontract import sensitivity as S
from diffcontract.analysis import paper_scenario
from diffcontract.curves import GeneralizationBound, Linear

# The exact solver at tight tolerances: its optimum is then exact to ~1e-11 relative, which a
# central difference with relative step 1e-5 turns into ~1e-6 relative noise, well below 1e-4.
SOLVER = dict(feasibility_tol=1e-11, kkt_tol=1e-9)
STEP = 1e-5  # relative to |theta_k| (absolute for probs, moved along the simplex)
RTOL = 1e-4  # central FD, step 1e-5: truncation ~1e-10 relative, solver noise ~1e-6
# Derivatives compared as elasticities (relative change of an output per relative change of a
# parameter); near-zero ones only to this absolute level, the FD noise floor (~1e-11 / 1e-5).
ATOL_ELASTICITY = 1e-5


@jax.jit
def _gain(accuracy, valuation, costs, quality, m):
    """v(a(q_i m)) - c_i m on an (I, G) grid of m: training alone (docs/model.md "Accuracy of the pooled data")."""
    return valuation(accuracy(quality[:, None] * m)) - costs[:, None] * m


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# ----------------------------------------------------------------------------- finite differences
def local_reservation(theta: S.Parameters, m_base):
    """(f, m^res) re-optimized near the base problem's m^res: four 200x zooms of a 401-point grid
    (m^res to ~1e-9 relative). The package's global search costs 0.1 s a call, this ~1 ms."""
    m_base = np.asarray(m_base, np.float64)
    lo, hi = 0.8 * m_base, 1.25 * m_base
    rows = np.arange(m_base.size)
    for _ in range(4):
        grid = np.linspace(lo, hi, 401, axis=1)
        values = np.asarray(_gain(theta.accuracy, theta.valuation, jnp.asarray(theta.costs),
                                  jnp.asarray(theta.quality), jnp.asarray(grid)))
        best = np.clip(np.argmax(values, axis=1), 1, 399)
        lo, hi = grid[rows, best - 1], grid[rows, best + 1]
    positive = m_base > 0  # f_i = 0 (train alone never pays) stays so under a small perturbation
    return np.where(positive, values[rows, best], 0.0), np.where(positive, grid[rows, best], 0.0)


def perturbed(problem: ContractProblem, theta: S.Parameters) -> ContractProblem:
    """``problem`` (canonical order) at parameters theta, reservation re-optimized (docs/model.md "Accuracy of the pooled data").

    Through ``replace`` rather than the constructor: it takes a_opt beyond 1 (the paper's curve sits
    on that validation bound) and probabilities off the simplex (the "free" partials).
    """
    f, m_res = local_reservation(theta, problem.reservation_data)
    arr = lambda v: np.asarray(v, np.float64)  # noqa: E731
    return problem.replace(probs=arr(theta.probs), costs=arr(theta.costs), quality=arr(theta.quality),
                           accuracy=jax.tree_util.tree_map(arr, theta.accuracy),
                           valuation=jax.tree_util.tree_map(arr, theta.valuation),
                           reservation_utility=arr(f), reservation_data=arr(m_res))


def optimum(problem: ContractProblem, polish: bool = True) -> np.ndarray:
    """y = (m, t, E[v(a)], E[a]) of the exact solver's optimum (canonical order).

    ``polish``: m from Newton on the active set's KKT equations started at the solver's point
    (``kkt_point``), which removes SLSQP's ~1e-9 relative noise in m (1e-4 after dividing by the
    step); the values E[v(a)], E[a] are flat at the optimum and need no polish.
    """
    sol = solve_exact(problem, **SOLVER)
    if not sol.succeeded and polish:
        # Next to a degenerate optimum (a pool about to split) SLSQP can stall just short of the
        # tight tolerances; at its default ones it converges and the Newton polish finishes.
        sol = solve_exact(problem)
    assert sol.succeeded, f"FD solve did not converge: {sol.status_name}"
    m, t = np.asarray(sol.contributions), np.asarray(sol.rewards)
    if polish:
        polished, t = S.contract(S.kkt_point(problem, sol), problem)
        assert np.allclose(polished, m, rtol=1e-4)  # the same optimum, refined
        m = polished
    return np.concatenate([m, t, [sol.expected_value, sol.expected_accuracy]])


def canonical(problem: ContractProblem) -> ContractProblem:
    """The same problem with its types given costliest first (identity type order)."""
    flat, (conditioning, *_) = problem.tree_flatten()
    return ContractProblem.tree_unflatten((conditioning, tuple(range(problem.num_types))), flat)


def fd_directions(problem: ContractProblem) -> tuple[np.ndarray, np.ndarray]:
    """Columns of (flat) parameter directions matching ``sensitivities(probs="tangent")``, and the
    step of each: e_k - 1/I for probs (absolute step), unit vectors times |theta_k| otherwise."""
    flat, _ = ravel_pytree(S.parameters(problem))
    flat = np.asarray(flat)
    num = problem.num_types
    dirs = np.eye(flat.size)
    dirs[:num, :num] -= 1.0 / num
    steps = np.where(np.arange(flat.size) < num, STEP, STEP * np.abs(flat))
    return dirs, steps


def central_difference(problem: ContractProblem, column: np.ndarray, step: float, polish: bool = True):
    flat, unravel = ravel_pytree(S.parameters(problem))
    up = optimum(perturbed(problem, unravel(flat + step * column)), polish)
    down = optimum(perturbed(problem, unravel(flat - step * column)), polish)
    return (up - down) / (2.0 * step)


def flat_derivatives(sens: S.Sensitivities) -> np.ndarray:
    """(2I + 2, P) rows m, t, E[v(a)], E[a] of a canonical-order record, columns flat parameters."""
    rows = []
    for tree in (sens.d_contributions, sens.d_rewards):
        leaves = [np.reshape(np.asarray(v), (np.shape(v)[0], -1)) for v in jax.tree_util.tree_leaves(tree)]
        rows.append(np.concatenate(leaves, axis=1))
    for tree in (sens.d_expected_value, sens.d_expected_accuracy):
        rows.append(np.asarray(ravel_pytree(tree)[0])[None, :])
    return np.concatenate(rows, axis=0)


def assert_matches_fd(implicit, fd, y, theta_step_scale, rows=slice(None), what=""):
    """Elasticity comparison: |e - e_fd| <= RTOL |e_fd| + ATOL_ELASTICITY, e = D * theta / |y|."""
    y = np.abs(np.asarray(y))
    num = (y.size - 2) // 2
    y_scale = np.concatenate([np.full(num, y[:num].max()), np.full(num, y[num:2 * num].max()), y[2 * num:]])
    e_impl = np.asarray(implicit)[rows] * theta_step_scale / y_scale[rows]
    e_fd = np.asarray(fd)[rows] * theta_step_scale / y_scale[rows]
    np.testing.assert_array_less(np.abs(e_impl - e_fd), RTOL * np.abs(e_fd) + ATOL_ELASTICITY, err_msg=what)


def random_problem(rng, num_types=None, participants=None) -> ContractProblem:
    """Costs log-uniform in [0.005, 0.3] in random (input) order, Dirichlet(2) probabilities,
    quality in [0.5, 1.5], SGB(a_opt in [0.8, 1], k in [0.5, 2]), v = scale r with scale in [50, 150]."""
    num = int(rng.integers(2, 5)) if num_types is None else num_types
    n = int(rng.integers(2, 11)) if participants is None else participants
    probs = rng.dirichlet(np.full(num, 2.0))
    probs = np.maximum(probs, 0.02)
    return ContractProblem(
        n, probs / probs.sum(), np.exp(rng.uniform(np.log(0.005), np.log(0.3), num)),
        accuracy=GeneralizationBound(float(rng.uniform(0.8, 1.0)), float(rng.uniform(0.5, 2.0))),
        valuation=Linear(float(rng.uniform(50.0, 150.0))), quality=rng.uniform(0.5, 1.5, num))


def check_against_fd(problem: ContractProblem) -> str:
    """Every derivative of m, t, E[v(a)], E[a] against central differences of the exact solver.

    Returns "checked", or why the problem was skipped: the exact solver did not converge, or the
    optimum is degenerate (weakly active constraints or dependent active constraints), where some
    derivatives are one-sided by design (tested on the paper's scenarios below).
    """
    problem = canonical(problem)
    solution = solve_exact(problem, **SOLVER)
    if not solution.succeeded:
        return "not converged"
    sens = S.sensitivities(problem, solution, order="canonical")
    if not (sens.strictly_complementary and sens.linearly_independent):
        return "degenerate"
    D = flat_derivatives(sens)
    assert np.all(np.isfinite(D))  # nondegenerate: every derivative two-sided
    y = np.concatenate([sens.contributions, sens.rewards, [sens.expected_value, sens.expected_accuracy]])
    dirs, steps = fd_directions(problem)
    flat = np.asarray(ravel_pytree(S.parameters(problem))[0])
    scale = np.where(np.arange(flat.size) < problem.num_types, 1.0, np.abs(flat))
    for k in range(flat.size):
        fd = central_difference(problem, dirs[:, k], steps[k])
        assert_matches_fd(D[:, k], fd, y, scale[k], what=f"parameter {k} of {problem!r}")
    return "checked"


# ----------------------------------------------------------------------------- random problems
def test_random_problems_match_finite_differences():
    """5 random problems of one shape (I = 3, N = 8: one compilation), every parameter."""
    rng = np.random.default_rng(7)
    outcomes = [check_against_fd(random_problem(rng, num_types=3, participants=8)) for _ in range(5)]
    assert outcomes.count("checked") >= 4, outcomes


@pytest.mark.slow
def test_random_problems_match_finite_differences_sweep():
    """The issue's 20 random problems, I <= 4 and N <= 10 drawn at random, every derivative
    against central differences at 1e-4. Draws whose optimum is degenerate (derivatives one-sided
    by design, tested on the paper's scenarios) are skipped and counted; at most 30 draws."""
    rng = np.random.default_rng(2025)
    outcomes = []
    while outcomes.count("checked") < 20 and len(outcomes) < 30:
        outcomes.append(check_against_fd(random_problem(rng)))
    print({k: outcomes.count(k) for k in set(outcomes)})  # shown with pytest -s
    assert outcomes.count("checked") == 20 and "not converged" not in outcomes, outcomes


def test_envelope_theorem_matches_implicit_route():
    """dE[a]*/dtheta = -dL/dtheta at fixed (x, mu) equals the implicit-function derivative."""
    rng = np.random.default_rng(11)
    for problem in (canonical(random_problem(rng, num_types=3, participants=8)) for _ in range(2)):
        solution = solve_exact(problem, **SOLVER)
        for probs in ("tangent", "free"):
            sens = S.sensitivities(problem, solution, probs=probs)
            env = S.envelope(problem, solution, probs=probs)
            # rtol 1e-8: the same KKT point, two exact formulas; only rounding differs.
            for a, b in zip(jax.tree_util.tree_leaves(sens.d_expected_accuracy), jax.tree_util.tree_leaves(env)):
                np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12 * np.max(np.abs(b)))


def test_input_order_and_probability_conventions():
    rng = np.random.default_rng(3)
    problem = random_problem(rng, num_types=3, participants=8)
    shuffled = ContractProblem(8, problem.to_input_order(problem.probs)[::-1],
                               problem.to_input_order(problem.costs)[::-1], accuracy=problem.accuracy,
                               valuation=problem.valuation, quality=problem.to_input_order(problem.quality)[::-1])
    solution = solve_exact(shuffled, **SOLVER)
    inp = S.sensitivities(shuffled, solution, probs="free", order="input")
    can = S.sensitivities(shuffled, solution, probs="free", order="canonical")
    tangent = S.sensitivities(shuffled, solution, probs="tangent", order="input")
    # Input order is to_input_order on both axes (which type's output, which type's parameter).
    np.testing.assert_array_equal(inp.d_expected_value.costs, shuffled.to_input_order(can.d_expected_value.costs))
    np.testing.assert_array_equal(inp.contributions, shuffled.to_input_order(can.contributions))
    dm = np.asarray(can.d_contributions.costs)
    expect = np.empty_like(dm)
    order = np.asarray(shuffled.type_order)
    expect[np.ix_(order, order)] = dm
    np.testing.assert_array_equal(inp.d_contributions.costs, expect)
    # Tangent = free minus its mean: the gradient projected on {dp : sum dp = 0}.
    free = np.asarray(inp.d_expected_value.probs)
    np.testing.assert_allclose(tangent.d_expected_value.probs, free - free.mean(), rtol=1e-12, atol=1e-12)
    assert abs(np.sum(tangent.d_expected_value.probs)) <= 1e-9 * np.max(np.abs(free))
    # Through the public constructor, in input order: cost of input type 0, and moving
    # probability from input type 0 to input type 2 (stays on the simplex).
    c, p = np.asarray(shuffled.to_input_order(shuffled.costs)), np.asarray(shuffled.to_input_order(shuffled.probs))

    def value(costs, probs):
        sol = solve_exact(ContractProblem(8, probs, costs, accuracy=problem.accuracy, valuation=problem.valuation,
                                          quality=shuffled.to_input_order(shuffled.quality)), **SOLVER)
        assert sol.succeeded
        return sol.expected_value

    h = STEP * c[0]
    dc = (value(c + h * np.eye(3)[0], p) - value(c - h * np.eye(3)[0], p)) / (2 * h)
    np.testing.assert_allclose(inp.d_expected_value.costs[0], dc, rtol=RTOL)  # central FD, step 1e-5
    move = STEP * (np.eye(3)[0] - np.eye(3)[2])
    dp = (value(c, p + move) - value(c, p - move)) / (2 * STEP)
    g = np.asarray(tangent.d_expected_value.probs)
    np.testing.assert_allclose(g[0] - g[2], dp, rtol=RTOL)  # central FD, step 1e-5


# ----------------------------------------------------------------------------- pooled optima (docs/model.md)
@pytest.fixture(scope="module")
def scenario_2():
    with jax.enable_x64(True):
        problem = paper_scenario(2)
        solution = solve_exact(problem, **SOLVER)
        return problem, solution, S.sensitivities(problem, solution, order="canonical")


@pytest.fixture(scope="module")
def scenario_1():
    with jax.enable_x64(True):
        problem = paper_scenario(1)
        solution = solve_exact(problem, **SOLVER)
        return problem, solution, S.sensitivities(problem, solution, order="canonical")


def test_scenario_2_full_pool_moves_as_one(scenario_2):
    """All five types pooled; all five budgets bind (tbar_i = v(a(N m)) for every i on the pool),
    so the active constraints are dependent (LICQ fails) but strict complementarity holds: the
    pool persists and the derivative is that of the pooled solution."""
    problem, solution, sens = scenario_2
    assert solution.pooled_groups() == [[0, 1, 2, 3, 4]]
    assert sens.strictly_complementary and not sens.linearly_independent
    assert set(sens.active_constraints) == {f"budget[{i}]" for i in range(1, 6)} | {
        f"monotone[{i},{i + 1}]" for i in range(1, 5)}
    dm = np.asarray(sens.d_contributions.costs)
    np.testing.assert_allclose(dm, np.broadcast_to(dm[0], dm.shape), rtol=1e-9, atol=1e-9)  # the pool moves as one
    # Binding budget c_1 m = v(a(N m)) (f = 0): only the costliest type's cost moves the pool.
    np.testing.assert_allclose(dm[0, 1:], 0.0, atol=1e-9)
    assert dm[0, 0] < 0.0
    y = np.concatenate([sens.contributions, sens.rewards, [sens.expected_value, sens.expected_accuracy]])
    D = flat_derivatives(sens)
    dirs, steps = fd_directions(problem)
    flat = np.asarray(ravel_pytree(S.parameters(problem))[0])
    # c_1 (moves the pool), c_3 (does not), p_1 along the simplex, a_opt (flat index 15).
    for k in (5, 7, 0, 15):
        fd = central_difference(problem, dirs[:, k], steps[k])
        assert_matches_fd(D[:, k], fd, y, 1.0 if k < 5 else abs(flat[k]), what=f"parameter {k}")
    up = solve_exact(perturbed(problem, ravel_pytree(S.parameters(problem))[1](flat + steps[5] * dirs[:, 5])), **SOLVER)
    assert up.pooled_groups() == [[0, 1, 2, 3, 4]]  # the pool persists under the perturbation


def test_scenario_2_quality_is_a_kink(scenario_2):
    """A quality weight makes the pooled types' budgets differ: the binding one is a minimum, a kink.
    Flagged (NaN), and the one-sided finite differences indeed disagree."""
    problem, _, sens = scenario_2
    assert not np.any(np.asarray(sens.differentiable["expected_value"].quality))
    assert np.all(np.isnan(sens.d_expected_value.quality))
    dirs, steps = fd_directions(problem)
    flat, unravel = ravel_pytree(S.parameters(problem))
    k = 10  # q_1
    base = optimum(problem, polish=False)[-2]
    right = (optimum(perturbed(problem, unravel(flat + steps[k] * dirs[:, k])), polish=False)[-2] - base) / steps[k]
    left = (base - optimum(perturbed(problem, unravel(flat - steps[k] * dirs[:, k])), polish=False)[-2]) / steps[k]
    assert abs(right - left) > 1e-4 * abs(right)  # a 0.2 % kink; FD noise is ~1e-6 relative


def test_scenario_1_pool_held_by_zero_multipliers(scenario_1):
    """Types 1-4 pooled with *zero* monotonicity multipliers (equal cost gaps and equal p make the
    pooled point stationary by itself): strict complementarity fails, m(c) is only directionally
    differentiable. The value stays differentiable (envelope theorem, unique multipliers)."""
    problem, solution, sens = scenario_1
    assert solution.pooled_groups() == [[0, 1, 2, 3], [4]]
    assert not sens.strictly_complementary and sens.linearly_independent
    assert sens.weakly_active == ("monotone[1,2]", "monotone[2,3]", "monotone[3,4]")
    assert not np.any(np.asarray(sens.differentiable["contributions"].costs)[:4])
    assert np.all(np.isnan(np.asarray(sens.d_contributions.costs)[:4]))
    assert np.all(np.isfinite(sens.d_expected_value.costs))
    y = np.concatenate([sens.contributions, sens.rewards, [sens.expected_value, sens.expected_accuracy]])
    D = flat_derivatives(sens)
    dirs, steps = fd_directions(problem)
    flat, unravel = ravel_pytree(S.parameters(problem))
    flat = np.asarray(flat)
    for k in (6, 9):  # c_2 (m is one-sided in it), c_5: the value only (rows E[v(a)], E[a])
        fd = central_difference(problem, dirs[:, k], steps[k])
        assert_matches_fd(D[:, k], fd, y, abs(flat[k]), rows=slice(10, 12), what=f"parameter {k}")
    # One-sided in fact: m_1 responds to c_2 differently up and down.
    base = optimum(problem)[0]
    k = 6
    right = (optimum(perturbed(problem, unravel(flat + steps[k] * dirs[:, k])))[0] - base) / steps[k]
    left = (base - optimum(perturbed(problem, unravel(flat - steps[k] * dirs[:, k])))[0]) / steps[k]
    assert abs(right - left) > 1e-2 * max(abs(right), abs(left))
    # A uniform shift of every cost keeps the equal gaps, hence the structure: two-sided there.
    shift = S.Parameters(np.zeros(5), np.ones(5), np.zeros(5), GeneralizationBound(0.0, 0.0), Linear(0.0))
    values, ok = sens.directional(shift)
    assert all(np.all(v) for v in ok.values())
    column = np.concatenate([np.zeros(5), np.ones(5), np.zeros(8)])
    fd = central_difference(problem, column, 1e-5 * 0.1)
    implicit = np.concatenate([values["contributions"], values["rewards"],
                               [values["expected_value"], values["expected_accuracy"]]])
    assert_matches_fd(implicit, fd, y, 0.1, what="uniform cost shift")


# ----------------------------------------------------------------------------- JAX composition
def test_grad_of_optimal_value_is_the_implicit_derivative():
    rng = np.random.default_rng(5)
    problem = canonical(random_problem(rng, num_types=3, participants=8))
    sens = S.sensitivities(problem, probs="free", order="canonical", **SOLVER)
    # The set the default solve answers on: here the full one (type 3's IR binds and the full set's
    # optimum is above the simplified set's; solvers/driver.py "Binding IRs").
    constraints = dc.solve(problem, **SOLVER).constraints

    def value(theta):
        return S.optimal_value(problem.replace(probs=theta.probs, costs=theta.costs, quality=theta.quality,
                                               accuracy=theta.accuracy, valuation=theta.valuation),
                               constraints=constraints, **SOLVER)

    theta = jax.tree_util.tree_map(jnp.asarray, S.parameters(problem))
    np.testing.assert_allclose(value(theta), sens.expected_value, rtol=1e-10)  # the same exact solve
    grad = jax.grad(value)(theta)
    # rtol 1e-6: the forward pass recomputes f with m^res from a golden-section search, accurate to
    # ~1e-8 relative (f is flat there, but df/dc_i = -m_i^res inherits that error).
    for got, want in zip(jax.tree_util.tree_leaves(grad), jax.tree_util.tree_leaves(sens.d_expected_value)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # Free partials in p: central FD with p off the simplex (no renormalization), step 1e-5.
    e0 = np.eye(ravel_pytree(theta)[0].size)[:, 0]
    fd = central_difference(problem, e0, STEP, polish=False)[-2]
    np.testing.assert_allclose(grad.probs[0], fd, rtol=RTOL)


@pytest.mark.slow
def test_grad_under_jit_matches_eager():
    rng = np.random.default_rng(5)
    problem = canonical(random_problem(rng, num_types=3, participants=8))
    f = lambda c: S.optimal_contract(problem.replace(costs=c), **SOLVER).contributions.sum()  # noqa: E731
    c = jnp.asarray(problem.costs)
    np.testing.assert_allclose(jax.jit(jax.grad(f))(c), jax.grad(f)(c), rtol=1e-6)  # m^res rounding, see above


@pytest.mark.slow
def test_one_sided_gradients_are_nan_not_numbers(scenario_1):
    problem, _, sens = scenario_1
    problem = canonical(problem)
    c = jnp.asarray(problem.costs)
    grad_m = jax.grad(lambda c: S.optimal_contract(problem.replace(costs=c), **SOLVER).contributions[0])(c)
    assert np.all(np.isnan(grad_m))
    grad_v = jax.grad(lambda c: S.optimal_value(problem.replace(costs=c), **SOLVER))(c)
    # rtol 1e-6: m^res rounding (above); c_2..c_4 do not move the value (zero up to rounding).
    np.testing.assert_allclose(grad_v, sens.d_expected_value.costs, rtol=1e-6, atol=1e-12 * np.max(np.abs(grad_v)))
    keep = jax.grad(lambda c: S.optimal_contract(problem.replace(costs=c), nondifferentiable="keep",
                                                 **SOLVER).contributions[0])(c)
    assert np.all(np.isfinite(keep))


@pytest.mark.slow
def test_implicit_jacobian_jit_and_vmap_match_host():
    rng = np.random.default_rng(9)
    problems = [canonical(random_problem(rng, num_types=3, participants=6)) for _ in range(3)]
    points = [S.kkt_point(p, **SOLVER) for p in problems]
    from diffcontract.expectation import OutcomeTable, outcome_table
    from diffcontract.problem import stack_problems

    t = outcome_table(6, 3)
    table = OutcomeTable(jnp.asarray(t.counts), jnp.asarray(t.valid))
    one = jax.jit(S.implicit_jacobian)
    loop = [np.asarray(one(pt, p, table)[0]) for pt, p in zip(points, problems)]
    stacked_points = jax.tree_util.tree_map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *points)
    batched = jax.jit(jax.vmap(S.implicit_jacobian, in_axes=(0, 0, None)))
    batch = batched(stacked_points, stack_problems(problems), table)
    # Same formulas, batched vs one by one, jit-SVD vs host pinv: rounding only. Entries that are zero
    # up to rounding are compared against their row's magnitude.
    for D_batch, D, p in zip(np.asarray(batch[0]), loop, problems):
        row = 1e-10 * np.max(np.abs(D), axis=1, keepdims=True)
        np.testing.assert_array_less(np.abs(D_batch - D), 1e-9 * np.abs(D) + row)
        sens = S.sensitivities(p, probs="free", order="canonical", **SOLVER)
        np.testing.assert_array_less(np.abs(flat_derivatives(sens) - D), 1e-8 * np.abs(D) + row)


@pytest.mark.slow
def test_vmap_of_grad_matches_loop():
    rng = np.random.default_rng(5)
    problem = canonical(random_problem(rng, num_types=3, participants=8))
    f = jax.grad(lambda c: S.optimal_value(problem.replace(costs=c), **SOLVER))
    cs = jnp.stack([jnp.asarray(problem.costs), 1.1 * jnp.asarray(problem.costs)])
    np.testing.assert_allclose(jax.vmap(f)(cs), np.stack([f(c) for c in cs]), rtol=1e-9)


def test_needs_float64_and_a_converged_solution():
    problem = paper_scenario(2)
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="float64"):
            S.optimal_value(problem)
    stopped = solve_exact(problem).replace(status=int(Status.MAX_ITERATIONS))
    with pytest.raises(S.SensitivityError, match="did not converge"):
        S.sensitivities(problem, stopped)


# ----------------------------------------------------------------------------- CLI
def test_cli_sensitivities_keys(capsys):
    from diffcontract import cli

    previous = jax.config.jax_enable_x64
    try:
        code = cli.main(["solve", "-N", "8", "--probs", "0.5,0.3,0.2", "--costs", "0.05,0.01,0.02", "--json",
                         "--sensitivities"])
    finally:
        jax.config.update("jax_enable_x64", previous)
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["status"] == "converged"
    problem = ContractProblem(8, [0.5, 0.3, 0.2], [0.05, 0.01, 0.02])
    sens = S.sensitivities(problem)
    # Input order: the first entry is the derivative in the first --costs value, 0.05.
    np.testing.assert_allclose(record["d_value_d_costs"], sens.d_expected_value.costs, rtol=1e-9)
    np.testing.assert_allclose(record["d_value_d_probs"], sens.d_expected_value.probs, rtol=1e-9, atol=1e-12)
    assert abs(sum(record["d_value_d_probs"])) <= 1e-9 * max(map(abs, record["d_value_d_probs"]))
    assert np.argmin(record["d_value_d_costs"]) == 1  # the cheapest type's cost matters most here
