r"""The one KKT module: each constraint set in the general form every solver works on, its KKT
conditions, multiplier estimates, certificates and polish.

Scaled variables x; minimize F(x) = -E[a(n . q m)] subject to G(x) >= 0 (the nonlinear constraints:
an augmented Lagrangian penalizes them) and B(x) >= 0 (simple linear constraints: an exact
projection or bounds hold them). The two constraint sets (docs/model.md "The first-moment problem"):

* simplified: x = m / s_m (I,). t is the binding-IC/IR function of m; B = (m_1, m_2 - m_1, ...)
  (monotone, non-negative; the projection is isotonic regression); G = (budget, IR_2..IR_I) / s_v.
* full: x = (m / s_m, t / s_v) (2I,). B = x (non-negative; the projection clips);
  G = (budget, IR, pairwise IC) / s_v.

s_m is the data scale (a scalar, or one per contribution), s_v the value scale (money). Every
solver's certificate names its multipliers by ``multiplier_record``. The KKT conditions (all of
them: stationarity, primal feasibility of G and B, dual feasibility, complementarity) are
``kkt_residuals``, testable on their own; multipliers come from ``certificate_multipliers``
(jittable NNLS) or ``host_certificate`` (scipy NNLS); ``sqp_polish`` and ``polish`` refine an
approximate KKT point to one exact to rounding.
"""

from __future__ import annotations

import functools

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._jit import jit
from ..expectation import moments
from ..formulation import binding_rewards, max_violation, residuals
from ..numerics import nonnegative_least_squares, project_monotone_nonnegative, solve_qp

HOST_ACTIVE_TOL = 1e-7  # scaled slack under which a constraint enters the host certificate's NNLS
_REGULARIZATION = 1e-13  # x the largest diagonal of J^T J: Levenberg-Marquardt term of a least-squares step
_HESSIAN_SHIFT = 1e-8  # x (1 + largest |eigenvalue|): the SQP model Hessian's least eigenvalue
_STEP_ROOM, _ROOM_FLOOR = 0.5, 0.1  # a step moves a variable by at most half of max(|x_k|, max|x| / 10)
_NEWTON_ROUNDING = 1e-12  # a full Newton step at most this (relative) has converged
_SQP_ROUNDING = 1e-13  # an SQP step at most this (relative) has converged
_ACTIVE_SET_TOL = 1e-12  # scaled: a violation or a negative multiplier beyond this changes the active set
_INCONSISTENT_SLACK = 1e-9  # scaled: an active constraint this slack after Newton is released
_TINY = 1e-300


class Scales(NamedTuple):
    """data: units of data per unit of x_m; value: money per unit of x_t and of G."""

    data: jnp.ndarray
    value: jnp.ndarray


def decode(x, problem, scales: Scales, constraints: str):
    """Scaled variables -> (m, t) in data units and money."""
    num = problem.costs.shape[-1]
    if constraints != "full":
        m = x * scales.data
        return m, binding_rewards(m, problem.costs, problem.reservation_utility)
    return x[:num] * scales.data, x[num:] * scales.value


def encode(m, t, scales: Scales, constraints: str):
    if constraints != "full":
        return m / scales.data
    return jnp.concatenate([m / scales.data, t / scales.value])


# ``objective`` and ``measure`` (and ``expectation.moments``) are jitted: a kernel calls them dozens of
# times with one signature (the ALM: 13 and 23 times, under jvp, vmap and linearize), and a jitted
# function is traced and lowered once per signature, then inlined by XLA. Measured on the Sec. 6.2
# ALM kernel (2-core CPU): tracing 2.4 -> 2.0 s, lowering 1.1 -> 0.9 s, compilation 6.1 -> 4.8 s,
# the same result to the last bit.
@functools.partial(jit, static_argnames="constraints")
def objective(x, problem, table, scales: Scales, constraints: str):
    """F(x) = -E[a(n . q m)] (accuracy units, to be minimized)."""
    m, _ = decode(x, problem, scales, constraints)
    return -moments(m, problem, table).expected_accuracy


@functools.partial(jit, static_argnames="constraints")
def measure(x, problem, table, scales: Scales, constraints: str):
    """(m, t, ``Moments``, ``Residuals``) of the scaled variables x: one pass over the outcomes."""
    m, t = decode(x, problem, scales, constraints)
    mom = moments(m, problem, table)
    return m, t, mom, residuals(m, t, mom.reward_bounds, problem.costs, problem.reservation_utility)


def value_and_violation(x, problem, table, scales: Scales, constraints: str):
    """(E[a(n . q m)], the money violation ``money_violation``) at x: one pass over the outcomes."""
    _, _, mom, res = measure(x, problem, table, scales, constraints)
    return mom.expected_accuracy, max_violation(res)


def money_violation(x, problem, table, scales: Scales, constraints: str):
    """() the largest violation of budget, IR, IC and m, t >= 0 at x, money (``formulation.max_violation``)."""
    return max_violation(measure(x, problem, table, scales, constraints)[3])


def constraint_vector(res, constraints: str, value_scale=1.0):
    """G >= 0 of a constraint set from a menu's ``Residuals``, money / value_scale: (2I - 1,) budget and
    IR_2..I (simplified: IR_1 and the local downward ICs bind by construction) or (I^2 + I,) budget, IR
    and the off-diagonal ICs row by row (full)."""
    if constraints != "full":
        return jnp.concatenate([res.budget, res.ir[1:]]) / value_scale
    off = np.nonzero(~np.eye(res.budget.shape[0], dtype=bool))
    return jnp.concatenate([res.budget, res.ir, res.ic[off]]) / value_scale


def general_constraints(x, problem, table, scales: Scales, constraints: str):
    """G(x) >= 0, money / s_v: (budget, IR_2..I) simplified, (budget, IR, pairwise IC) full."""
    return constraint_vector(measure(x, problem, table, scales, constraints)[3], constraints, scales.value)


def multiplier_record(mu, scales: Scales, constraints: str) -> dict:
    """Multipliers over H = (G, B) (scaled) as named arrays in unscaled units, the one layout of
    every solver's ``Certificate``: per money for budget, IR, IC; per unit of data for the simple
    constraints (the simplified set's ``monotone`` (I,): m_1 >= 0, then m_{i+1} - m_i >= 0; the full
    set's ``nonnegative`` (2I,): m >= 0 per data, t >= 0 per money).

    Args:
      mu: (n_G + n_B,) multipliers: 3I - 1 simplified, I^2 + 3I full. scales: ``Scales`` (data () or (I,)).
      constraints: "simplified" or "full".
    """
    data = jnp.max(scales.data)
    if constraints != "full":
        num = (mu.shape[0] + 1) // 3
        return {"budget": mu[:num] / scales.value, "ir_others": mu[num:2 * num - 1] / scales.value,
                "monotone": mu[2 * num - 1:] / data}
    num = round((-3 + (9 + 4 * mu.shape[0]) ** 0.5) / 2)
    g = mu[: num * (num + 1)] / scales.value
    unit = jnp.concatenate([jnp.broadcast_to(scales.data, (num,)), jnp.broadcast_to(scales.value, (num,))])
    return {"budget": g[:num], "ir": g[num:2 * num], "ic": g[2 * num:], "nonnegative": mu[num * (num + 1):] / unit}


def simple_constraints(x, constraints: str):
    """B(x) >= 0, enforced exactly by ``project``."""
    if constraints != "full":
        return jnp.concatenate([x[:1], jnp.diff(x)])
    return x


def project(x, constraints: str):
    """Exact Euclidean projection onto {B(x) >= 0}."""
    if constraints != "full":
        return project_monotone_nonnegative(x)
    return jnp.maximum(x, 0.0)


def all_constraints(x, problem, table, scales, constraints):
    """H(x) = (G(x), B(x))."""
    return jnp.concatenate([general_constraints(x, problem, table, scales, constraints),
                            simple_constraints(x, constraints)])


class KKTResiduals(NamedTuple):
    """stationarity: ||grad F - J_H^T mu||_inf / (1 + ||grad F||_inf); feasibility: max(0, -H) in
    scaled units; dual: max(0, -mu); complementarity: max |mu_j H_j|."""

    stationarity: jnp.ndarray
    feasibility: jnp.ndarray
    dual: jnp.ndarray
    complementarity: jnp.ndarray


def kkt_residuals(x, mu, problem, table, scales, constraints) -> KKTResiduals:
    """Residuals of the KKT conditions of min F s.t. H >= 0 at (x, mu), mu over all of H."""
    grad = jax.grad(objective)(x, problem, table, scales, constraints)
    h, vjp = jax.vjp(lambda z: all_constraints(z, problem, table, scales, constraints), x)
    (jt_mu,) = vjp(mu)
    return KKTResiduals(
        stationarity=jnp.max(jnp.abs(grad - jt_mu)) / (1.0 + jnp.max(jnp.abs(grad))),
        feasibility=jnp.maximum(-jnp.min(h), 0.0),
        dual=jnp.maximum(-jnp.min(mu), 0.0),
        complementarity=jnp.max(jnp.abs(mu * h)),
    )


def _stationarity_system(x, active, problem, table, scales, constraints):
    """(J_A^T (n, n_G + n_B): the gradients of the ``active`` constraints of H as columns, zeros for
    the others; grad F (n,)) at x: stationarity asks J_A^T mu = grad F."""
    grad = jax.grad(objective)(x, problem, table, scales, constraints)
    jac = jax.jacfwd(lambda w: all_constraints(w, problem, table, scales, constraints))(x)
    return jnp.where(active[:, None], jac, 0.0).T, grad


def least_squares_multipliers(x, active, problem, table, scales, constraints):
    """(n_G + n_B,) least-squares multipliers of the ``active`` constraints of H = (G, B) at x (zeros off
    them; may be negative where the active set is wrong: the ALM's first estimate)."""
    mu = jnp.linalg.lstsq(*_stationarity_system(x, active, problem, table, scales, constraints))[0]
    return jnp.where(active, mu, 0.0)


def certificate_multipliers(x, active, mu_guess, problem, table, scales, constraints):
    """Non-negative multipliers of the active constraints at x that best satisfy stationarity."""
    A, grad = _stationarity_system(x, active, problem, table, scales, constraints)
    return jnp.where(active, nonnegative_least_squares(A, grad, jnp.where(active, mu_guess, 0.0)), 0.0)


def host_certificate(grad, g, jac, bounds_active, active_tol: float = HOST_ACTIVE_TOL):
    """Multipliers by non-negative least squares on the (nearly) active constraints (host, scipy).

    Solves min_{lambda >= 0} ||grad - J_A^T lambda - e_B mu|| where A are constraints with
    g <= active_tol and B the variables at their lower bound 0 (minimization of ``grad``'s
    objective subject to g >= 0, x >= 0, in scaled units).

    Returns:
      (lambda (n_g,) zeros off A, mu (n,) bound multipliers, stationarity, complementarity).
    """
    from scipy import optimize  # imported where used: not on every import of the package
    active = np.flatnonzero(g <= active_tol)
    bound_idx = np.flatnonzero(bounds_active)
    cols = [jac[active].T] if active.size else []
    if bound_idx.size:
        cols.append(np.eye(grad.size)[:, bound_idx])
    lam, mu = np.zeros(g.size), np.zeros(grad.size)
    resid = grad
    if cols:
        A = np.concatenate(cols, axis=1)
        coef, _ = optimize.nnls(A, grad, maxiter=50 * A.shape[1])
        lam[active] = coef[: active.size]
        mu[bound_idx] = coef[active.size:]
        resid = grad - A @ coef
    stationarity = float(np.max(np.abs(resid)) / (1.0 + np.max(np.abs(grad))))
    complementarity = float(np.max(np.abs(lam * g))) if g.size else 0.0
    return lam, mu, stationarity, complementarity


def _least_squares_step(jac, rhs):
    r"""Least-squares solution of jac @ delta = rhs, also for singular jac (redundant active rows).

    Levenberg-Marquardt normal equations (J^T J + eps I) delta = J^T rhs with eps = 1e-13 of the
    largest diagonal, by Cholesky, plus one step of iterative refinement. Far cheaper than an SVD
    under ``vmap`` on the CPU (LAPACK runs once per batch member), and accurate to rounding for
    the well-scaled KKT systems of ``polish`` (the Newton iteration absorbs the tiny bias).
    """
    normal = jac.T @ jac
    eps = _REGULARIZATION * jnp.max(jnp.diag(normal)) + _TINY
    factor = jax.scipy.linalg.cho_factor(normal + eps * jnp.eye(normal.shape[0], dtype=normal.dtype))
    delta = jax.scipy.linalg.cho_solve(factor, jac.T @ rhs)
    return delta + jax.scipy.linalg.cho_solve(factor, jac.T @ (rhs - jac @ delta))


@functools.partial(jit, static_argnames="constraints")
def second_order(x, mu, problem, table, scales, constraints):
    """(grad F (n,), Hessian of the Lagrangian F - mu . H (n, n), H (n_H,), J_H (n_H, n)) at x: the
    model both polishes step on, traced and lowered once for both."""
    H = lambda w: all_constraints(w, problem, table, scales, constraints)  # noqa: E731
    lagrangian = lambda w: objective(w, problem, table, scales, constraints) - mu @ H(w)  # noqa: E731
    return (jax.grad(objective)(x, problem, table, scales, constraints), jax.hessian(lagrangian)(x), H(x),
            jax.jacfwd(H)(x))


def _newton_system(z, act, nx: int, args: tuple):
    """Residual and Jacobian of the active-set KKT system at z = (x, mu) (see ``polish``).

    The mu-block of the KKT Jacobian is linear (-J^T and the identity on inactive rows), so only the
    x-block needs second derivatives: nx forward-over-reverse passes, not nx + nh.
    """
    xx, mm = z[:nx], z[nx:]
    grad_f, hess_l, h, jac_h = second_order(xx, mm, *args)
    r = jnp.concatenate([grad_f - jac_h.T @ mm, jnp.where(act, h, mm)])
    top = jnp.concatenate([hess_l, -jac_h.T], axis=1)
    bottom = jnp.concatenate([jnp.where(act[:, None], jac_h, 0.0),
                              jnp.diag(jnp.where(act, 0.0, 1.0)).astype(jac_h.dtype)], axis=1)
    return r, jnp.concatenate([top, bottom], axis=0)


def _step_room(x):
    """(n,) how far each variable may move in one polish step: half its magnitude, floored at a tenth of
    the largest (so a variable near 0 can still grow). This keeps the iterate where the model is valid,
    and near the solution steps are full (still quadratic)."""
    return _STEP_ROOM * jnp.maximum(jnp.abs(x), _ROOM_FLOOR * jnp.max(jnp.abs(x)))


def _newton(z, act, nx: int, args: tuple, newton_steps: int):
    """Damped Newton on the active set ``act`` from z = (x, mu), stopping once a full step moves nothing
    beyond rounding (quadratic convergence reached)."""

    def step(carry):
        zz, k, _ = carry
        r, jac = _newton_system(zz, act, nx, args)
        delta = _least_squares_step(jac, -r)
        dx = delta[:nx]  # damped: no variable moves beyond its ``_step_room``
        alpha = jnp.minimum(1.0, jnp.min(jnp.where(jnp.abs(dx) > 0, _step_room(zz[:nx]) / jnp.abs(dx), jnp.inf)))
        alpha = jnp.where(jnp.isfinite(alpha) & (alpha > 0), alpha, 1.0)
        z_new = zz + alpha * delta
        ok = jnp.all(jnp.isfinite(z_new))
        done = (~ok) | ((alpha == 1.0) & (jnp.max(jnp.abs(delta)) <= _NEWTON_ROUNDING * (1.0 + jnp.max(jnp.abs(zz)))))
        return jnp.where(ok, z_new, zz), k + 1, done

    more = lambda carry: (~carry[2]) & (carry[1] < newton_steps)  # noqa: E731
    return jax.lax.while_loop(more, step, (z, 0, jnp.asarray(False)))[0]


def _update_active(z, act, nx: int, args: tuple):
    """One change of the active set per round, as in active-set QP: add the most violated inactive
    constraint; if none is violated, drop the active constraint with the most negative multiplier;
    an active set Newton could not satisfy (e.g. the budgets of two pooled types with different
    bounds, both guessed active) is inconsistent: release its slackest member."""
    h = all_constraints(z[:nx], *args)
    violation = jnp.where(act, 0.0, -h)
    worst = jnp.argmax(violation)
    negative = jnp.where(act, z[nx:], jnp.inf)
    most_negative = jnp.argmin(negative)
    add = violation[worst] > _ACTIVE_SET_TOL
    drop = (~add) & (negative[most_negative] < -_ACTIVE_SET_TOL)
    slack = jnp.where(act, h, -jnp.inf)
    slackest = jnp.argmax(slack)
    release = (~add) & (~drop) & (slack[slackest] > _INCONSISTENT_SLACK)
    act = jnp.where(add, act.at[worst].set(True), act)
    act = jnp.where(release, act.at[slackest].set(False), act)
    return jnp.where(drop, act.at[most_negative].set(False), act)


def polish(x, mu, active, problem, table, scales, constraints, newton_steps: int = 16, rounds: int = 12):
    r"""Primal-dual active-set Newton refinement of an approximate KKT point.

    For a guessed active set A, Newton's method (least-squares steps, so redundant active
    constraints, e.g. the IC pairs of a pool of three, are fine) on

    .. math:: \nabla F(x) - J_H(x)^\top \mu = 0, \quad H_A(x) = 0, \quad \mu_{\bar A} = 0;

    then A drops constraints with negative multipliers and adds violated ones, until A is stable
    (at most ``rounds`` times). This turns the first-order solution into one exact to rounding, with
    pools exactly pooled.

    Args:
      x: (n,) scaled variables.  mu: (n_G + n_B,) multipliers.  active: (n_G + n_B,) bool guess.
      problem, table, scales, constraints: as ``objective``.
    Returns:
      (x, mu, active) after the last round.
    """
    nx, args = x.shape[0], (problem, table, scales, constraints)

    def round_(carry):
        z, act, _, k = carry
        z = _newton(z, act, nx, args, newton_steps)
        new_act = _update_active(z, act, nx, args)
        z = jnp.concatenate([z[:nx], jnp.where(new_act, z[nx:], 0.0)])
        return z, new_act, jnp.all(new_act == act), k + 1

    more = lambda carry: (~carry[2]) & (carry[3] < rounds)  # noqa: E731
    z, act, _, _ = jax.lax.while_loop(more, round_, (jnp.concatenate([x, mu]), active, jnp.asarray(False), 0))
    return z[:nx], z[nx:], act


def sqp_polish(x, mu, problem, table, scales, constraints, steps: int = 8, qp_iterations: int = 30):
    r"""Sequential quadratic programming from an approximate KKT point (x, mu) of min F s.t. H >= 0.

    Each step solves the QP (``numerics.solve_qp``, interior point)

    .. math:: \min_d \nabla F(x)^\top d + \tfrac12 d^\top W d \quad \text{s.t.} \quad
              H(x) + J_H(x) d \ge 0, \quad |d_k| \le \Delta_k,

    with W the Hessian of the Lagrangian F - mu . H, shifted by its most negative eigenvalue (plus
    1e-8 of its largest) to be positive definite, and a box Delta_k = max(|x_k|, max |x| / 10) / 2
    that keeps each step where the model holds (the polish's damping). The QP's multipliers are
    the next mu. Unlike a Newton step on a guessed active set, the QP picks the active set itself,
    so an iterate whose nearly binding constraints are not those of the optimum (a near-degenerate
    vertex, where a first-order method creeps along a flat valley) still converges, in a few steps.
    Stops when a step moves nothing beyond rounding or after ``steps`` steps; a step whose result
    is not finite ends it where it was.

    Returns:
      (x, mu): the last iterate and its multipliers over H (the last QP's).
    """
    nx = x.shape[0]
    eye = jnp.eye(nx, dtype=x.dtype)

    def step(carry):
        xx, mm, k, _ = carry
        grad_f, hess, h, jac = second_order(xx, mm, problem, table, scales, constraints)
        hess = 0.5 * (hess + hess.T)
        eig = jnp.linalg.eigvalsh(hess)
        hess = hess + (jnp.maximum(0.0, -eig[0]) + _HESSIAN_SHIFT * (1.0 + jnp.max(jnp.abs(eig)))) * eye
        radius = _step_room(xx)
        A = jnp.concatenate([jac, eye, -eye])
        b = jnp.concatenate([-h, -radius, -radius])
        d, z = solve_qp(hess, grad_f, A, b, qp_iterations)
        ok = jnp.all(jnp.isfinite(d)) & jnp.all(jnp.isfinite(z))
        done = (~ok) | (jnp.max(jnp.abs(d)) <= _SQP_ROUNDING * (1.0 + jnp.max(jnp.abs(xx))))
        return (jnp.where(ok, xx + d, xx), jnp.where(ok, z[: h.shape[0]], mm), k + 1, done)

    def more(carry):
        _, _, k, done = carry
        return (~done) & (k < steps)

    x, mu, _, _ = jax.lax.while_loop(more, step, (x, mu, 0, jnp.asarray(False)))
    return x, mu
