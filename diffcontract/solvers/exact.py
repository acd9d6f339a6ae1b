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
from ..expectation import moments, with_weights
from ..expectation.backends import make_backend, resolve_backend
from ..formulation import binding_rewards, max_violation, residuals
from ..problem import without_input_order
from ._single import solve_single_participant
from ._solution import FEASIBILITY_TOL, Certificate, Solution, Status, host_menu_fields
from ._start import REWARDS, start_candidates

CONSTRAINT_SETS = ("simplified", "full")


_SCALE_OCTAVES = 3  # a contribution's data scale is at least 2^-3 of the largest


def _scales(problem, start_m) -> tuple[np.ndarray, float]:
    """Variable scales: (I,) data per unit of each scaled contribution, money per unit of value.

    Each contribution is scaled by its size at the best start, rounded down to a power of two of
    the largest scale L = max(m^res, start, 1) and at least L / 8: SLSQP's first quasi-Newton steps
    (identity Hessian) are then relative moves of every contribution. One common scale let a step
    from (97, 97, 435, 686, 1576) cut the smallest contributions to 0 and end at a KKT point 0.4 %
    below the one a relative step reaches (a costly type excluded instead of contributing a
    little). Powers of two, so a start whose contributions are within a factor 2 of L keeps the
    common scale (SLSQP's iteration count is sensitive to any rescaling: a uniform 0.89 turned 8
    iterations into 45 on a 9-type problem).
    """
    v_scale = float(problem.valuation(1.0) - problem.valuation(0.0))
    largest = max(float(np.max(problem.reservation_data)), float(np.max(start_m)), 1.0)
    ratio = largest / np.maximum(np.asarray(start_m, dtype=np.float64), 1e-300)
    octaves = np.clip(np.floor(np.log2(ratio)), 0, _SCALE_OCTAVES)
    return largest * 2.0 ** -octaves, v_scale


_weighted_table = jax.jit(with_weights)


_start_candidates = jax.jit(start_candidates, static_argnames="constraints")


def _start_menus(problem, menus, found, value) -> list[np.ndarray]:
    """Starting contributions (units of data), the best ``_start.start_candidates`` row first.

    The first is ``best_start``'s (the fallback m^res envelope when no candidate is feasible);
    then every other feasible candidate, by decreasing E[a], duplicates dropped.
    """
    order = [j for j in np.argsort(-value, kind="stable") if found[j]]
    if not order:
        return [np.maximum.accumulate(np.asarray(problem.reservation_data, dtype=np.float64))]
    starts: list[np.ndarray] = []
    for j in order:
        if not any(np.allclose(menus[j], other, rtol=1e-9, atol=0.0) for other in starts):
            starts.append(menus[j])
    return starts


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

    def constraint_vector(m, t, tbar, problem, v_scale, m_scale):
        res = residuals(m, t, tbar, problem.costs, problem.reservation_utility)
        num = m.shape[0]
        if constraints == "simplified":
            # t already makes IR_1 and the local downward ICs bind; what remains is the
            # budget, IR of the other types and monotone m (MODEL.md "Simplified constraint set").
            parts = [res.budget / v_scale, res.ir[1:] / v_scale, jnp.diff(m) / jnp.max(m_scale)]
        else:
            off = ~np.eye(num, dtype=bool)
            parts = [res.budget / v_scale, res.ir / v_scale, res.ic[off] / v_scale]
        return jnp.concatenate(parts)

    def stacked(x, problem, counts, scales):
        """(objective, constraints) as one vector: one pass over the outcomes serves both."""
        m, t = split(x, problem, scales)
        mom = moments(m, problem, counts)
        m_scale, v_scale = scales
        g = constraint_vector(m, t, mom.reward_bounds, problem, v_scale, m_scale)
        return jnp.concatenate([-mom.expected_accuracy[None], g])

    @jax.jit
    def evaluate(x, problem, counts, scales):
        # Forward mode over the I (or 2I) variables with the values as aux: the curve is evaluated
        # once per outcome and its derivative pushed along every direction, where
        # value_and_grad + jacfwd would pass over the outcomes three times.
        jac, out = jax.jacfwd(lambda z: (stacked(z, problem, counts, scales),) * 2, has_aux=True)(x)
        return out[0], jac[0], out[1:], jac[1:]

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
    feasibility_tol: float = FEASIBILITY_TOL,
    kkt_tol: float = 1e-6,
    restarts: int = 2,
    backend: str = "auto",
    backend_options: dict | None = None,
    max_starts: int = 2,
    *,
    _full_fallback: bool = True,
) -> Solution:
    """Solve the first-moment problem exactly (enumeration + SLSQP, float64).

    Args:
      problem: ``ContractProblem``.
      constraints: "simplified" (m monotone, binding local IC and IR_1: I variables) or "full"
        (m and t free, every IR and pairwise IC: 2I variables).
      max_iterations: SLSQP iteration limit.
      feasibility_tol: largest accepted constraint violation, *relative to the value scale*:
        violations up to ``feasibility_tol * (v(1) - v(0))`` money are accepted (default
        ``FEASIBILITY_TOL`` = 1e-10, i.e. 1e-8 money for v(r) = 100 r). Relative so that scaling v
        and every cost by one factor leaves the status unchanged.
      kkt_tol: largest accepted scaled stationarity residual.
      restarts: warm restarts of SLSQP from where it stopped while the tolerances are unmet.
      backend: expectation backend ("enumerate", "chunked", "convolution", "montecarlo" or
        "auto"; see ``diffcontract.expectation.backends``). Tolerances then refer to the backend's
        expectation (exact for enumerate/chunked; the lattice or sample-average problem otherwise).
      backend_options: keyword options of ``make_backend`` (chunk_size, bins, samples, seed, ...).
      max_starts: SLSQP runs from at most this many starting menus (see "Starts"; None: all).

    Returns:
      ``Solution`` with status CONVERGED only if the measured residuals meet both tolerances.

    Starts. The first-moment problem is not concave in general (SGB is convex below its
    inflection), its feasible set need not be connected, and SLSQP stops at a KKT point near its
    start. SLSQP runs from the ``max_starts`` best distinct feasible candidates of
    ``_start.start_candidates`` for the constraint set (pooled and floored menus with j costliest
    types excluded; the full set's with its least rewards; by E[a] at the start; all of them with
    ``max_starts=None``; each run costs a full SLSQP solve, which matters for large I) and the
    converged run with the largest E[a] is kept (the first run when none converged): a cheap
    multi-start over the menus that separate the basins seen in practice (a costly type excluded
    at m_i = 0 vs. contributing a little; a component of the feasible set worth 9x another).
    Contributions are scaled by their size at the best start (``_scales``).

    Statuses. CONVERGED: violation <= tol and stationarity <= kkt_tol. INFEASIBLE requires
    evidence that no feasible point exists, all of: (a) no candidate is feasible
    (one that is would be a feasible point), (b) every SLSQP run ends above tol, and (c) a phase-1
    problem, minimize s subject to g(x) + s >= 0, x >= 0, s >= 0 (the largest scaled violation),
    solved by SLSQP from the start and from the best run's end point, ends with a measured
    violation above tol too. Local evidence for a non-convex set, not a proof; but a point that
    phase 1 finds within tol is never called infeasible: SLSQP is restarted from it and its
    residuals decide. (SLSQP's own exit 4, "inequality constraints incompatible", is about one
    linearized subproblem and is not taken as evidence by itself.) MAX_ITERATIONS: SLSQP's
    iteration limit; STALLED: anything else above tolerance.

    The simplified set is a surrogate: its binding local downward ICs exclude every menu in which
    a cheaper type's IR binds above that IC (type i+1 would rather train alone than take item i),
    and then it can be empty while the full problem is feasible (seen for N >= 2 with f_1 = 0 and
    a large f_2). So when the simplified set meets (a)-(c), the full constraint set is solved
    instead and decides the status (its ``Solution`` says ``constraints="full"`` and the message
    why): INFEASIBLE is reported only for the first-moment problem itself.

    One participant (N = 1): the feasible set is one point (the reservation menu) and the
    simplified set is generally empty; that menu is returned, checked against the full
    constraint set, without SLSQP (``_single.solve_single_participant``).
    """
    if constraints not in CONSTRAINT_SETS:
        raise ValueError(f"constraints must be one of {CONSTRAINT_SETS}, got {constraints!r}")
    if problem.num_participants == 1:
        resolve_backend(backend, 1, problem.num_types)  # a bad name is an error whatever N
        return solve_single_participant(problem, "exact", constraints, feasibility_tol)
    start = time.perf_counter()
    with _precision.float64():
        problem = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        given, problem = problem, without_input_order(problem)  # one compilation for every type order
        # Padded to a shape ladder (compilations shared across N), weights computed once.
        backend_name, table = make_backend(problem, backend, **(backend_options or {}))
        counts = _weighted_table(problem, table)
        evaluate = _EVALUATORS[constraints]
        num = problem.num_types

        menus, found, value = (np.asarray(a) for a in _start_candidates(problem, counts, constraints))
        start_ms = _start_menus(problem, menus, found, value)[:max_starts]
        m_scale, v_scale = _scales(problem, start_ms[0])
        scales = (jnp.asarray(m_scale), v_scale)
        tol = feasibility_tol * v_scale  # money

        def to_x(m0):
            if constraints == "simplified":
                return m0 / m_scale
            t0 = np.asarray(REWARDS[constraints](jnp.asarray(m0), problem.costs, problem.reservation_utility))
            return np.concatenate([m0 / m_scale, t0 / v_scale])

        starts = [to_x(m0) for m0 in start_ms]

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

        def measure(x):
            x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
            if constraints == "simplified":
                m = jnp.asarray(x * m_scale)
                t = binding_rewards(m, problem.costs, problem.reservation_utility)
            else:
                m, t = jnp.asarray(x[:num] * m_scale), jnp.asarray(x[num:] * v_scale)
            mom, res, violation = _measure(m, t, problem, counts)
            _, grad, g, jac = evaluated(x)
            if np.all(np.isfinite(grad)) and np.all(np.isfinite(g)) and np.all(np.isfinite(jac)):
                lam, stationarity, complementarity = kkt_certificate(grad, g, jac, x <= 1e-12)
            else:  # NONFINITE below; nnls rejects NaN
                lam, stationarity, complementarity = np.zeros(g.size), float("inf"), float("inf")
            return x, m, t, mom, res, float(violation), lam, stationarity, complementarity

        def done(run):
            _, measured, _ = run
            violation, stationarity = measured[5], measured[7]
            return violation <= tol and stationarity <= kkt_tol

        simplified_optimum: dict = {}

        def descend(x0):
            """SLSQP from x0 with warm restarts: (last scipy result, measured tuple, iterations).

            A start that already meets both tolerances (a pooled candidate is often the optimum
            itself) is kept as is: SLSQP's QP steps can wander at such degenerate points, where
            every budget and monotonicity constraint binds at once.
            """
            at_start = measure(x0)
            if done((None, at_start, 0)):
                return optimize.OptimizeResult(x=at_start[0], status=0, success=True, nit=0,
                                               message="the starting menu meets the KKT tolerances"), at_start, 0
            result = run_slsqp(x0)
            measured = measure(result.x)
            iterations = int(result.nit)
            # SLSQP's line search can stop a hair short of the optimum ("positive directional
            # derivative"); a warm restart from where it stopped rebuilds its quasi-Newton model.
            for attempt in range(restarts):
                if done((result, measured, 0)) or not np.all(np.isfinite(measured[0])):
                    break
                start_x = measured[0]
                if constraints == "full" and attempt == restarts - 1:
                    # Last resort for the full set: start from the simplified optimum (a feasible
                    # point of the full set); the full KKT check below still decides the status.
                    if "x" not in simplified_optimum:  # solved once, whichever start needs it
                        simple = solve_exact(given, "simplified", max_iterations, feasibility_tol, kkt_tol,
                                             restarts, backend, backend_options, max_starts=max_starts, _full_fallback=False)
                        simplified_optimum["x"] = np.concatenate([np.asarray(simple.contributions) / m_scale,
                                                                  np.asarray(simple.rewards) / v_scale])
                    start_x = simplified_optimum["x"]
                result = run_slsqp(start_x)
                measured = measure(result.x)
                iterations += int(result.nit)
            if not done((result, measured, 0)) and np.all(np.isfinite(measured[0])):
                restored = measure(restore(measured[0]))
                if done((result, restored, 0)):
                    measured = restored
                    result.message = f"{result.message}; feasibility restored by a Gauss-Newton step"
            return result, measured, iterations

        def restore(x, steps: int = 3):
            """Minimum-norm Gauss-Newton steps J_A dx = -min(g_A, 0) on the violated and binding
            constraints A (g <= 1e-12, scaled): SLSQP's line search can stop at a stationary point
            whose budget is violated by ~1e-10 relative; this moves x by as much and no more."""
            for _ in range(steps):
                _, _, g, jac = evaluated(x)
                act = g <= 1e-12
                if not np.any(g < 0.0) or not (np.all(np.isfinite(g)) and np.all(np.isfinite(jac))):
                    break
                dx = np.linalg.lstsq(jac[act], -np.minimum(g[act], 0.0), rcond=None)[0]
                x = np.maximum(x + dx, 0.0)
            return x

        def phase_one(x0):
            """min s s.t. g(x) + s >= 0, x >= 0, s >= 0 from x0: the measured end point (x, ...)."""
            g0 = evaluated(np.maximum(x0, 0.0))[2]
            y0 = np.append(np.maximum(x0, 0.0), max(0.0, -float(np.min(g0))) if g0.size else 0.0)
            unit = np.zeros(y0.size)
            unit[-1] = 1.0
            found_y = optimize.minimize(
                lambda y: float(y[-1]), y0, jac=lambda y: unit, method="SLSQP", bounds=[(0.0, None)] * y0.size,
                constraints=[{"type": "ineq", "fun": lambda y: evaluated(y[:-1])[2] + y[-1],
                              "jac": lambda y: np.hstack([evaluated(y[:-1])[3], np.ones((g0.size, 1))])}],
                options={"maxiter": max_iterations, "ftol": 1e-15},
            )
            return found_y.x[:-1], int(found_y.nit)

        # Multi-start (see the docstring): keep the converged run with the largest E[a].
        runs = [descend(x0) for x0 in starts]
        iterations = sum(run[2] for run in runs)
        best = 0
        for k, run in enumerate(runs):
            gain = float(run[1][3].expected_accuracy) - float(runs[best][1][3].expected_accuracy)
            if done(run) and (not done(runs[best]) or gain > 1e-12):
                best = k
        result, measured, _ = runs[best]
        notes = [f"best of {len(runs)} starts (start {best + 1})"] if len(runs) > 1 else []

        # Infeasibility evidence (see the docstring): phase 1 only when no start was feasible.
        infeasible = False
        if not done(runs[best]) and measured[5] > tol and not np.any(found) and np.isfinite(measured[5]):
            lowest = np.inf
            for x_from in (starts[0], measured[0]):
                x1, nit = phase_one(x_from)
                iterations += nit
                low = measure(x1)[5]
                lowest = min(lowest, low)
                if low <= tol:  # a feasible point: optimize from it, and never call the problem infeasible
                    rerun = descend(x1)
                    iterations += rerun[2]
                    if done(rerun) or rerun[1][5] < measured[5]:
                        result, measured, _ = rerun
                        notes.append("restarted from a phase-1 feasible point")
                    break
            else:
                infeasible = True
                notes.append(f"phase 1 (minimize the largest violation) ends at {lowest:.3g} > tol {tol:.3g} money: "
                             "no feasible point found")
        x, m, t, mom, res, violation, lam, stationarity, complementarity = measured

    finite = bool(np.all(np.isfinite(x))) and np.isfinite(violation) and np.isfinite(stationarity)
    if not finite:
        status = Status.NONFINITE
    elif violation <= tol and stationarity <= kkt_tol:
        status = Status.CONVERGED
    elif infeasible:
        status = Status.INFEASIBLE
        if constraints == "simplified" and _full_fallback:  # see the docstring: the full set decides
            full = solve_exact(given, "full", max_iterations, feasibility_tol, kkt_tol, restarts, backend,
                               backend_options, max_starts=max_starts, _full_fallback=False)
            note = "; ".join([str(result.message), *notes])
            return full.replace(iterations=iterations + int(full.iterations), wall_time=time.perf_counter() - start,
                                message=f"simplified constraint set appears empty ({note}); full set: {full.message}")
    elif result.status == 9:
        status = Status.MAX_ITERATIONS
    else:
        status = Status.STALLED

    names = ["budget", "ir_others", "monotone"] if constraints == "simplified" else ["budget", "ir", "ic"]
    sizes = [num, num - 1, num - 1] if constraints == "simplified" else [num, num, num * (num - 1)]
    split_at = np.cumsum(sizes)[:-1]
    # Report multipliers in unscaled units: d E[a] per unit of money for budget/IR/IC residuals,
    # per unit of data for monotonicity.
    unscale = {"monotone": np.max(m_scale)}
    certificate = Certificate(
        multipliers={k: v / unscale.get(k, v_scale) for k, v in zip(names, np.split(lam, split_at))},
        stationarity=stationarity,
        complementarity=complementarity,
    )
    return Solution(
        problem=given,
        **{**host_menu_fields(problem, m, t, mom, res), "max_violation": violation},
        status=int(status),
        iterations=iterations,
        wall_time=time.perf_counter() - start,
        certificate=certificate,
        method="exact",
        constraints=constraints,
        backend=backend_name,
        message="; ".join([str(result.message), *notes]),
    )
