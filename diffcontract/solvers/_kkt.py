r"""The first-moment problem in the general form the first-order solvers work on.

Scaled variables x; minimize F(x) = -E[a(n . q m)] subject to G(x) >= 0 (nonlinear and linear
constraints handled by the augmented Lagrangian) and B(x) >= 0 (simple linear constraints handled
by an exact projection). Two parameterizations (MODEL.md "First-moment problem"):

* reduced: x = m / s_m (I,). t is the binding-IC/IR function of m; B = (m_1, m_2 - m_1, ...)
  (monotone, non-negative; the projection is isotonic regression); G = (budget, IR_2..IR_I) / s_v.
* full: x = (m / s_m, t / s_v) (2I,). B = x (non-negative; the projection clips);
  G = (budget, IR, pairwise IC) / s_v.

The KKT conditions (all of them: stationarity, primal feasibility of G and B, dual feasibility,
complementarity) are ``kkt_residuals``, testable on their own.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..expectation import moments
from ..formulation import binding_rewards, residuals
from ._projection import project_monotone_nonnegative
from ._qp import solve_qp

PARAMETERIZATIONS = ("reduced", "full")


class Scales(NamedTuple):
    """data: units of data per unit of x_m; value: money per unit of x_t and of G."""

    data: jnp.ndarray
    value: jnp.ndarray


def decode(x, problem, scales: Scales, parameterization: str):
    """Scaled variables -> (m, t) in data units and money."""
    num = problem.costs.shape[-1]
    if parameterization == "reduced":
        m = x * scales.data
        return m, binding_rewards(m, problem.costs, problem.reservation_utility)
    return x[:num] * scales.data, x[num:] * scales.value


def encode(m, t, scales: Scales, parameterization: str):
    if parameterization == "reduced":
        return m / scales.data
    return jnp.concatenate([m / scales.data, t / scales.value])


def objective(x, problem, table, scales: Scales, parameterization: str):
    """F(x) = -E[a(n . q m)] (accuracy units, to be minimized)."""
    m, _ = decode(x, problem, scales, parameterization)
    return -moments(m, problem, table).expected_accuracy


def general_constraints(x, problem, table, scales: Scales, parameterization: str):
    """G(x) >= 0, money / s_v."""
    m, t = decode(x, problem, scales, parameterization)
    tbar = moments(m, problem, table).reward_bounds
    res = residuals(m, t, tbar, problem.costs, problem.reservation_utility)
    if parameterization == "reduced":
        return jnp.concatenate([res.budget, res.ir[1:]]) / scales.value
    num = m.shape[0]
    off = np.nonzero(~np.eye(num, dtype=bool))
    return jnp.concatenate([res.budget, res.ir, res.ic[off]]) / scales.value


def simple_constraints(x, parameterization: str):
    """B(x) >= 0, enforced exactly by ``project``."""
    if parameterization == "reduced":
        return jnp.concatenate([x[:1], jnp.diff(x)])
    return x


def project(x, parameterization: str):
    """Exact Euclidean projection onto {B(x) >= 0}."""
    if parameterization == "reduced":
        return project_monotone_nonnegative(x)
    return jnp.maximum(x, 0.0)


def all_constraints(x, problem, table, scales, parameterization):
    """H(x) = (G(x), B(x))."""
    return jnp.concatenate([general_constraints(x, problem, table, scales, parameterization),
                            simple_constraints(x, parameterization)])


class KKTResiduals(NamedTuple):
    """stationarity: ||grad F - J_H^T mu||_inf / (1 + ||grad F||_inf); feasibility: max(0, -H) in
    scaled units; dual: max(0, -mu); complementarity: max |mu_j H_j|."""

    stationarity: jnp.ndarray
    feasibility: jnp.ndarray
    dual: jnp.ndarray
    complementarity: jnp.ndarray


def kkt_residuals(x, mu, problem, table, scales, parameterization) -> KKTResiduals:
    """Residuals of the KKT conditions of min F s.t. H >= 0 at (x, mu), mu over all of H."""
    grad = jax.grad(objective)(x, problem, table, scales, parameterization)
    h, vjp = jax.vjp(lambda z: all_constraints(z, problem, table, scales, parameterization), x)
    (jt_mu,) = vjp(mu)
    return KKTResiduals(
        stationarity=jnp.max(jnp.abs(grad - jt_mu)) / (1.0 + jnp.max(jnp.abs(grad))),
        feasibility=jnp.maximum(-jnp.min(h), 0.0),
        dual=jnp.maximum(-jnp.min(mu), 0.0),
        complementarity=jnp.max(jnp.abs(mu * h)),
    )


def nonnegative_least_squares(A, b, x0, iterations: int = 400):
    r"""min_{x >= 0} ||A x - b||^2 by accelerated projected gradient (FISTA), from ``x0``.

    Used for the KKT multipliers of a degenerate active set (e.g. all pairwise IC of a pool), where
    the least-squares multipliers are not unique and the minimum-norm ones may be negative.
    """
    lipschitz = jnp.maximum(jnp.linalg.norm(A, 2) ** 2, 1e-30)

    def body(_, carry):
        x, y, t = carry
        x_new = jnp.maximum(y - (A.T @ (A @ y - b)) / lipschitz, 0.0)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        return x_new, x_new + ((t - 1.0) / t_new) * (x_new - x), t_new

    x0 = jnp.maximum(x0, 0.0)
    x, _, _ = jax.lax.fori_loop(0, iterations, body, (x0, x0, jnp.asarray(1.0, A.dtype)))
    return x


def certificate_multipliers(x, active, mu_guess, problem, table, scales, parameterization):
    """Non-negative multipliers of the active constraints at x that best satisfy stationarity."""
    grad = jax.grad(objective)(x, problem, table, scales, parameterization)
    jac = jax.jacfwd(lambda w: all_constraints(w, problem, table, scales, parameterization))(x)
    A = jnp.where(active[:, None], jac, 0.0).T
    return jnp.where(active, nonnegative_least_squares(A, grad, jnp.where(active, mu_guess, 0.0)), 0.0)


def _least_squares_step(jac, rhs):
    r"""Least-squares solution of jac @ delta = rhs, also for singular jac (redundant active rows).

    Levenberg-Marquardt normal equations (J^T J + eps I) delta = J^T rhs with eps = 1e-13 of the
    largest diagonal, by Cholesky, plus one step of iterative refinement. Far cheaper than an SVD
    under ``vmap`` on the CPU (LAPACK runs once per batch member), and accurate to rounding for
    the well-scaled KKT systems of ``polish`` (the Newton iteration absorbs the tiny bias).
    """
    normal = jac.T @ jac
    eps = 1e-13 * jnp.max(jnp.diag(normal)) + 1e-300
    factor = jax.scipy.linalg.cho_factor(normal + eps * jnp.eye(normal.shape[0], dtype=normal.dtype))
    delta = jax.scipy.linalg.cho_solve(factor, jac.T @ rhs)
    return delta + jax.scipy.linalg.cho_solve(factor, jac.T @ (rhs - jac @ delta))


def polish(x, mu, active, problem, table, scales, parameterization, newton_steps: int = 16, rounds: int = 12):
    r"""Primal-dual active-set Newton refinement of an approximate KKT point.

    For a guessed active set A, Newton's method (least-squares steps, so redundant active
    constraints, e.g. the IC pairs of a pool of three, are fine) on

    .. math:: \nabla F(x) - J_H(x)^\top \mu = 0, \quad H_A(x) = 0, \quad \mu_{\bar A} = 0;

    then A drops constraints with negative multipliers and adds violated ones, until A is stable
    (at most ``rounds`` times).
    This turns the first-order solution into one exact to rounding, with pools exactly pooled.

    Returns:
      (x, mu, active) after the last round.
    """

    nx = x.shape[0]

    def lagrangian(xx, mm):
        return objective(xx, problem, table, scales, parameterization) - mm @ all_constraints(
            xx, problem, table, scales, parameterization)

    def residual_and_jacobian(z, act):
        # The mu-block of the KKT Jacobian is linear (-J^T and the identity on inactive rows), so
        # only the x-block needs second derivatives: nx forward-over-reverse passes, not nx + nh.
        xx, mm = z[:nx], z[nx:]
        grad_l, hess_l = jax.value_and_grad(lagrangian)(xx, mm), jax.hessian(lagrangian)(xx, mm)
        h = all_constraints(xx, problem, table, scales, parameterization)
        jac_h = jax.jacfwd(lambda w: all_constraints(w, problem, table, scales, parameterization))(xx)
        r = jnp.concatenate([grad_l[1], jnp.where(act, h, mm)])
        top = jnp.concatenate([hess_l, -jac_h.T], axis=1)
        bottom = jnp.concatenate([jnp.where(act[:, None], jac_h, 0.0),
                                  jnp.diag(jnp.where(act, 0.0, 1.0)).astype(jac_h.dtype)], axis=1)
        return r, jnp.concatenate([top, bottom], axis=0)

    def newton(z, act):
        def step(carry):
            zz, k, _ = carry
            r, jac = residual_and_jacobian(zz, act)
            delta = _least_squares_step(jac, -r)
            # Damping: no variable moves by more than half its magnitude (floored at a tenth of the
            # largest, so a variable near 0 can still grow) in one step; this keeps the iterate
            # where the model is valid, and near the solution steps are full (still quadratic).
            dx, xx = delta[:nx], zz[:nx]
            room = 0.5 * jnp.maximum(jnp.abs(xx), 0.1 * jnp.max(jnp.abs(xx)))
            alpha = jnp.minimum(1.0, jnp.min(jnp.where(jnp.abs(dx) > 0, room / jnp.abs(dx), jnp.inf)))
            alpha = jnp.where(jnp.isfinite(alpha) & (alpha > 0), alpha, 1.0)
            z_new = zz + alpha * delta
            ok = jnp.all(jnp.isfinite(z_new))
            # Stop once a full step moves nothing beyond rounding (quadratic convergence reached).
            done = (~ok) | ((alpha == 1.0) & (jnp.max(jnp.abs(delta)) <= 1e-12 * (1.0 + jnp.max(jnp.abs(zz)))))
            return jnp.where(ok, z_new, zz), k + 1, done

        def more(carry):
            _, k, done = carry
            return (~done) & (k < newton_steps)

        return jax.lax.while_loop(more, step, (z, 0, jnp.asarray(False)))[0]

    def update(z, act):
        # One change per round, as in active-set QP: add the most violated inactive constraint;
        # if none is violated, drop the active constraint with the most negative multiplier.
        xx, mm = z[:nx], z[nx:]
        h = all_constraints(xx, problem, table, scales, parameterization)
        tol = 1e-12
        violation = jnp.where(act, 0.0, -h)
        worst = jnp.argmax(violation)
        negative = jnp.where(act, mm, jnp.inf)
        most_negative = jnp.argmin(negative)
        add = violation[worst] > tol
        drop = (~add) & (negative[most_negative] < -tol)
        # An active set that Newton could not satisfy (e.g. the budgets of two pooled types with
        # different bounds, both guessed active) is inconsistent: release its slackest member.
        slack = jnp.where(act, h, -jnp.inf)
        slackest = jnp.argmax(slack)
        release = (~add) & (~drop) & (slack[slackest] > 1e-9)
        act = jnp.where(add, act.at[worst].set(True), act)
        act = jnp.where(release, act.at[slackest].set(False), act)
        return jnp.where(drop, act.at[most_negative].set(False), act)

    def round_(carry):
        z, act, _, k = carry
        z = newton(z, act)
        new_act = update(z, act)
        z = jnp.concatenate([z[: x.shape[0]], jnp.where(new_act, z[x.shape[0]:], 0.0)])
        return z, new_act, jnp.all(new_act == act), k + 1

    def more(carry):
        _, _, stable, k = carry
        return (~stable) & (k < rounds)

    z, act, _, _ = jax.lax.while_loop(more, round_, (jnp.concatenate([x, mu]), active, jnp.asarray(False), 0))
    return z[: x.shape[0]], z[x.shape[0]:], act


def sqp_polish(x, mu, problem, table, scales, parameterization, steps: int = 8, qp_iterations: int = 30):
    r"""Sequential quadratic programming from an approximate KKT point (x, mu) of min F s.t. H >= 0.

    Each step solves the QP (``_qp.solve_qp``, interior point)

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
    F = lambda w: objective(w, problem, table, scales, parameterization)  # noqa: E731
    H = lambda w: all_constraints(w, problem, table, scales, parameterization)  # noqa: E731

    def step(carry):
        xx, mm, k, _ = carry
        h, jac = H(xx), jax.jacfwd(H)(xx)
        hess = jax.hessian(lambda w: F(w) - mm @ H(w))(xx)
        hess = 0.5 * (hess + hess.T)
        eig = jnp.linalg.eigvalsh(hess)
        hess = hess + (jnp.maximum(0.0, -eig[0]) + 1e-8 * (1.0 + jnp.max(jnp.abs(eig)))) * eye
        radius = 0.5 * jnp.maximum(jnp.abs(xx), 0.1 * jnp.max(jnp.abs(xx)))
        A = jnp.concatenate([jac, eye, -eye])
        b = jnp.concatenate([-h, -radius, -radius])
        d, z = solve_qp(hess, jax.grad(F)(xx), A, b, qp_iterations)
        ok = jnp.all(jnp.isfinite(d)) & jnp.all(jnp.isfinite(z))
        done = (~ok) | (jnp.max(jnp.abs(d)) <= 1e-13 * (1.0 + jnp.max(jnp.abs(xx))))
        return (jnp.where(ok, xx + d, xx), jnp.where(ok, z[: h.shape[0]], mm), k + 1, done)

    def more(carry):
        _, _, k, done = carry
        return (~done) & (k < steps)

    x, mu, _, _ = jax.lax.while_loop(more, step, (x, mu, 0, jnp.asarray(False)))
    return x, mu
