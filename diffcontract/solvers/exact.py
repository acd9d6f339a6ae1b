"""Exact reference solver: scipy SLSQP on the first-moment problem with JAX derivatives, float64.

The problem is smooth once the expectation is exact (enumeration), so a mature active-set SQP
method finds its KKT points to machine precision. Active linear constraints (monotonicity in the
simplified formulation, the IC pairs of a pool in the full one) hold *exactly* in each QP step,
which is what makes pooled optima come out exactly pooled rather than nearly separated.

Variables are scaled (m by a data scale, t by a value scale) because contributions span tens to
tens of thousands of units while values are O(100).
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from .. import _precision
from ..expectation import OutcomeTable, moments, outcome_table, with_weights
from ..formulation import binding_rewards, max_violation, residuals, utilities
from ._solution import Certificate, Solution, Status
from ._start import exclusion_pooled_start

CONSTRAINT_SETS = ("simplified", "full")


def _scales(problem) -> tuple[float, float]:
    v_scale = float(problem.valuation(1.0) - problem.valuation(0.0))
    m_scale = float(max(np.max(problem.reservation_data), 1.0))
    return m_scale, v_scale


_weighted_table = jax.jit(with_weights)


_exclusion_pooled_start = jax.jit(exclusion_pooled_start)


def _make_functions(constraints: str) -> Callable:
    """Jitted (objective, gradient, constraints, Jacobian) in scaled variables."""

    def split(x, problem, scales):
        m_scale, v_scale = scales
        num = problem.costs.shape[0]
        if constraints == "simplified":
            m = x * m_scale
            t = binding_rewards(m, problem.costs, problem.reservation_utility)
        else:
            m, t = x[:num] * m_scale, x[num:] * v_scale
        return m, t

    def objective(x, problem, counts, scales):
        m, _ = split(x, problem, scales)
        return -moments(m, problem, counts).expected_accuracy

    def cons(x, problem, counts, scales):
        m, t = split(x, problem, scales)
        _, v_scale = scales
        tbar = moments(m, problem, counts).reward_bounds
        res = residuals(m, t, tbar, problem.costs, problem.reservation_utility)
        num = m.shape[0]
        if constraints == "simplified":
            # t already makes IR_1 and the local downward ICs bind; what remains is the
            # budget, IR of the other types and monotone m (MODEL.md "Simplified constraint set").
            parts = [res.budget / v_scale, res.ir[1:] / v_scale, jnp.diff(x)]
        else:
            off = ~np.eye(num, dtype=bool)
            parts = [res.budget / v_scale, res.ir / v_scale, res.ic[off] / v_scale]
        return jnp.concatenate(parts)

    @jax.jit
    def evaluate(x, problem, counts, scales):
        obj, grad = jax.value_and_grad(objective)(x, problem, counts, scales)
        g = cons(x, problem, counts, scales)
        jac = jax.jacfwd(cons)(x, problem, counts, scales)
        return obj, grad, g, jac

    return evaluate


_EVALUATORS = {name: _make_functions(name) for name in CONSTRAINT_SETS}


@jax.jit
def _measure(m, t, problem, counts):
    mom = moments(m, problem, counts)
    res = residuals(m, t, mom.reward_bounds, problem.costs, problem.reservation_utility)
    return mom, res, max_violation(res)


def kkt_certificate(grad, g, jac, bounds_active, active_tol: float = 1e-7):
    """Multipliers by non-negative least squares on the (nearly) active constraints.

    Solves min_{lambda >= 0} ||grad - J_A^T lambda - e_B mu|| where A are constraints with
    g <= active_tol and B the variables at their lower bound 0 (minimization of ``grad``'s
    objective subject to g >= 0, x >= 0, in the solver's scaled units).

    Returns:
      (lambda over all constraints (zeros off A), stationarity residual, complementarity).
    """
    active = np.flatnonzero(g <= active_tol)
    bound_idx = np.flatnonzero(bounds_active)
    cols = [jac[active].T] if active.size else []
    if bound_idx.size:
        cols.append(np.eye(grad.size)[:, bound_idx])
    lam = np.zeros(g.size)
    if cols:
        A = np.concatenate(cols, axis=1)
        coef, _ = optimize.nnls(A, grad, maxiter=50 * A.shape[1])
        lam[active] = coef[: active.size]
        resid = grad - A @ coef
    else:
        resid = grad
    stationarity = float(np.max(np.abs(resid)) / (1.0 + np.max(np.abs(grad))))
    complementarity = float(np.max(np.abs(lam * g))) if g.size else 0.0
    return lam, stationarity, complementarity


def solve_exact(
    problem,
    constraints: str = "simplified",
    max_iterations: int = 1000,
    feasibility_tol: float = 1e-8,
    kkt_tol: float = 1e-6,
    restarts: int = 2,
) -> Solution:
    """Solve the first-moment problem exactly (enumeration + SLSQP, float64).

    Args:
      problem: ``ContractProblem``.
      constraints: "simplified" (m monotone, binding local IC and IR_1: I variables) or "full"
        (m and t free, every IR and pairwise IC: 2I variables).
      max_iterations: SLSQP iteration limit.
      feasibility_tol: largest accepted constraint violation, money units.
      kkt_tol: largest accepted scaled stationarity residual.
      restarts: warm restarts of SLSQP from where it stopped while the tolerances are unmet.

    Returns:
      ``Solution`` with status CONVERGED only if the measured residuals meet both tolerances.
    """
    if constraints not in CONSTRAINT_SETS:
        raise ValueError(f"constraints must be one of {CONSTRAINT_SETS}, got {constraints!r}")
    start = time.perf_counter()
    with _precision.float64():
        problem = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        # Padded to a shape ladder (compilations shared across N), weights computed once.
        table = outcome_table(problem.num_participants, problem.num_types, length="bucket")
        counts = _weighted_table(problem, OutcomeTable(jnp.asarray(table.counts), jnp.asarray(table.valid)))
        m_scale, v_scale = _scales(problem)
        scales = (m_scale, v_scale)
        evaluate = _EVALUATORS[constraints]
        num = problem.num_types

        m0 = np.asarray(_exclusion_pooled_start(problem, counts)[0])
        if constraints == "simplified":
            x0 = m0 / m_scale
        else:
            t0 = np.asarray(binding_rewards(jnp.asarray(m0), problem.costs, problem.reservation_utility))
            x0 = np.concatenate([m0 / m_scale, t0 / v_scale])

        cache: dict = {}

        def evaluated(x):
            key = x.tobytes()
            if cache.get("key") != key:
                out = evaluate(jnp.asarray(x), problem, counts, scales)
                cache["key"], cache["val"] = key, [np.asarray(v, dtype=np.float64) for v in out]
            return cache["val"]

        def run_slsqp(start_x):
            return optimize.minimize(
                lambda x: float(evaluated(x)[0]),
                start_x,
                jac=lambda x: evaluated(x)[1],
                method="SLSQP",
                bounds=[(0.0, None)] * start_x.size,
                constraints=[{"type": "ineq", "fun": lambda x: evaluated(x)[2], "jac": lambda x: evaluated(x)[3]}],
                options={"maxiter": max_iterations, "ftol": 1e-15},
            )

        def measure(result):
            x = np.maximum(np.asarray(result.x, dtype=np.float64), 0.0)
            if constraints == "simplified":
                m = jnp.asarray(x * m_scale)
                t = binding_rewards(m, problem.costs, problem.reservation_utility)
            else:
                m, t = jnp.asarray(x[:num] * m_scale), jnp.asarray(x[num:] * v_scale)
            mom, res, violation = _measure(m, t, problem, counts)
            _, grad, g, jac = evaluated(x)
            lam, stationarity, complementarity = kkt_certificate(grad, g, jac, x <= 1e-12)
            return x, m, t, mom, res, float(violation), lam, stationarity, complementarity

        result = run_slsqp(x0)
        x, m, t, mom, res, violation, lam, stationarity, complementarity = measure(result)
        iterations = int(result.nit)
        # SLSQP's line search can stop a hair short of the optimum ("positive directional
        # derivative"); a warm restart from where it stopped rebuilds its quasi-Newton model.
        for attempt in range(restarts):
            if violation <= feasibility_tol and stationarity <= kkt_tol or not np.all(np.isfinite(x)):
                break
            start_x = x
            if constraints == "full" and attempt == restarts - 1:
                # Last resort for the full set: start from the simplified optimum (a feasible
                # point of the full set); the full KKT check below still decides the status.
                simple = solve_exact(problem, "simplified", max_iterations, feasibility_tol, kkt_tol, restarts)
                start_x = np.concatenate([np.asarray(simple.contributions) / m_scale, np.asarray(simple.rewards) / v_scale])
            result = run_slsqp(start_x)
            x, m, t, mom, res, violation, lam, stationarity, complementarity = measure(result)
            iterations += int(result.nit)

    finite = bool(np.all(np.isfinite(x))) and np.isfinite(violation) and np.isfinite(stationarity)
    if not finite:
        status = Status.NONFINITE
    elif violation <= feasibility_tol and stationarity <= kkt_tol:
        status = Status.CONVERGED
    elif violation > feasibility_tol and result.status == 4:  # SLSQP: constraints incompatible
        status = Status.INFEASIBLE
    elif result.status == 9:
        status = Status.MAX_ITERATIONS
    else:
        status = Status.STALLED

    u = utilities(m, t, problem.costs)
    names = ["budget", "ir_others", "monotone"] if constraints == "simplified" else ["budget", "ir", "ic"]
    sizes = [num, num - 1, num - 1] if constraints == "simplified" else [num, num, num * (num - 1)]
    split_at = np.cumsum(sizes)[:-1]
    # Report multipliers in unscaled units: d E[a] per unit of money for budget/IR/IC residuals,
    # per unit of data for monotonicity.
    unscale = {"monotone": m_scale}
    certificate = Certificate(
        multipliers={k: v / unscale.get(k, v_scale) for k, v in zip(names, np.split(lam, split_at))},
        stationarity=stationarity,
        complementarity=complementarity,
    )
    return Solution(
        problem=problem,
        contributions=np.asarray(m),
        rewards=np.asarray(t),
        reward_bounds=np.asarray(mom.reward_bounds),
        expected_accuracy=float(mom.expected_accuracy),
        expected_value=float(mom.expected_value),
        utilities=np.asarray(u),
        reservation_utilities=np.asarray(problem.reservation_utility),
        information_rents=np.asarray(u - problem.reservation_utility),
        residuals=jax.tree_util.tree_map(np.asarray, res),
        max_violation=violation,
        status=int(status),
        iterations=iterations,
        wall_time=time.perf_counter() - start,
        certificate=certificate,
        method="exact",
        constraints=constraints,
        backend="enumerate",
        message=str(result.message),
    )
