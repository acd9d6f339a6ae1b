"""The KKT system of a solved contract and its implicit derivative: pure JAX (jit, vmap).

Everything here is a function of a ``KKTPoint`` (scaled variables x, multipliers mu, active set)
and of the parameters theta; the host side (``_analysis``) decides the active set and the
degeneracies, the custom VJP (``_vjp``) reuses ``evaluate``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from .._cache import kernel_jit
from ..solvers import _kkt

PARAMETER_NAMES = ("probs", "costs", "quality", "accuracy", "valuation")
OUTPUT_NAMES = ("contributions", "rewards", "expected_value", "expected_accuracy")
RCOND = 1e-10  # singular values of the KKT Jacobian below RCOND * largest are a dependency
_TINY = 1e-300  # floors a norm that may be exactly 0


class Parameters(NamedTuple):
    """The differentiable parameters of a ``ContractProblem`` (a pytree; canonical order inside).

    probs, costs, quality: (I,) arrays.  accuracy, valuation: the curve dataclasses themselves
    (their fields are the leaves). Derivatives are reported in the same structure.
    """

    probs: Any
    costs: Any
    quality: Any
    accuracy: Any
    valuation: Any


class KKTPoint(NamedTuple):
    """A KKT point in the scaled variables of ``solvers._kkt`` (canonical order).

    Attributes:
      x: (I,) m / s_m (simplified constraint set) or (2I,) (m / s_m, t / s_v) (full set).
      multipliers: (nh,) mu >= 0 of H (``constraint_names``: (budget, IR_2..I, x_1, diff x),
        nh = 3I-1, simplified; (budget, IR, pairwise IC, x), nh = I^2 + 3I, full), zero off the
        active set.
      active: (nh,) bool.
      scales: ``_kkt.Scales`` (s_m data, s_v money).
      reservation_data: (I,) m^res at which f is differentiated (envelope theorem).
    """

    x: jnp.ndarray
    multipliers: jnp.ndarray
    active: jnp.ndarray
    scales: _kkt.Scales
    reservation_data: jnp.ndarray


def parameters(problem) -> Parameters:
    """The ``Parameters`` of a problem (canonical order, costliest type first)."""
    return Parameters(problem.probs, problem.costs, problem.quality, problem.accuracy, problem.valuation)


def reservation_utilities(theta: Parameters, reservation_data) -> jnp.ndarray:
    r"""f_i = v(a(q_i m_i^res)) - c_i m_i^res where m_i^res > 0, else 0 (docs/model.md "Accuracy of the pooled data").

    Equal to ``reservation``'s f at its argmax m^res, and with the right derivative in theta by
    the envelope theorem as long as m^res is held fixed (it is not differentiated).

    Args:
      theta: ``Parameters``.  reservation_data: (I,) m^res, units of data.

    Returns:
      (I,) f, money.
    """
    m = jax.lax.stop_gradient(jnp.asarray(reservation_data))
    positive = m > 0.0
    ms = jnp.where(positive, m, 1.0)
    gain = theta.valuation(theta.accuracy(theta.quality * ms)) - theta.costs * ms
    return jnp.where(positive, gain, 0.0)


def constraint_set(x, problem) -> str:
    """"full" where x holds (m, t) (2I,), else "simplified" (m alone; static under jit)."""
    return "full" if x.shape[-1] == 2 * problem.costs.shape[-1] else "simplified"


def _kkt_args(x, theta: Parameters, reservation_data, problem, table, scales) -> tuple:
    """The ``_kkt`` arguments of x at parameters theta: (problem at theta, table, scales, constraint set)."""
    f = reservation_utilities(theta, reservation_data)
    problem_at = problem.replace(probs=theta.probs, costs=theta.costs, quality=theta.quality,
                                 accuracy=theta.accuracy, valuation=theta.valuation, reservation_utility=f)
    return problem_at, table, scales, constraint_set(x, problem)


def _objective(x, *args):
    return _kkt.objective(x, *_kkt_args(x, *args))


def _constraints(x, *args):
    return _kkt.all_constraints(x, *_kkt_args(x, *args))


def _lagrangian(x, mu, *args):
    return _objective(x, *args) - mu @ _constraints(x, *args)


def kkt_conditions(z, active, theta, reservation_data, problem, table, scales):
    r"""Phi(z; theta) = [grad_x L(x, mu); where(active, H(x), mu)], z = (x, mu): zero at a KKT point.

    Args:
      z: (nx + nh,) scaled variables x and multipliers.  active: (nh,) bool.
      theta: ``Parameters``.  reservation_data: (I,) m^res.  problem: ``ContractProblem`` (supplies
      N and conditioning; its parameter leaves are replaced by theta).  table: ``OutcomeTable``.
      scales: ``_kkt.Scales``.

    Returns:
      (nx + nh,) Phi.
    """
    nx = z.shape[-1] - active.shape[-1]
    x, mu = z[:nx], z[nx:]
    grad = jax.grad(_lagrangian)(x, mu, theta, reservation_data, problem, table, scales)
    h = _constraints(x, theta, reservation_data, problem, table, scales)
    return jnp.concatenate([grad, jnp.where(active, h, mu)])


def _outputs(x, theta, reservation_data, problem, table, scales):
    """y = (m (I), t (I), E[v(a)], E[a]) as a function of the scaled x and theta."""
    m, t, mom, _ = _kkt.measure(x, *_kkt_args(x, theta, reservation_data, problem, table, scales))
    return jnp.concatenate([m, t, mom.expected_value[None], mom.expected_accuracy[None]])


def pinv(K, rcond=RCOND):
    """Moore-Penrose inverse by SVD (jittable): the least-squares, minimum-norm solution operator,
    which also serves the singular KKT systems of dependent active constraints.

    Args:
      K: (n, n).  rcond: singular values below rcond times the largest count as zero.

    Returns:
      (n, n) the pseudo-inverse.
    """
    U, s, Vt = jnp.linalg.svd(K)
    s_inv = jnp.where(s > rcond * s[0], 1.0 / jnp.where(s > 0, s, 1.0), 0.0)
    return (Vt.T * s_inv[None, :]) @ U.T


def implicit_jacobian(point: KKTPoint, problem, table):
    r"""Derivatives of the outputs at a KKT point on its active set (pure JAX: jit, vmap).

    Args:
      point: ``KKTPoint`` (from ``kkt_point``; may be batched under ``vmap``).
      problem: ``ContractProblem`` (canonical order; its leaves may be traced).
      table: ``OutcomeTable`` of the problem's (N, I) (``expectation.outcome_table``).

    Returns:
      (D, residual): D (2I+2, P) = d(m, t, E[v(a)], E[a]) / d theta_flat, theta flattened by
      ``jax.flatten_util.ravel_pytree(parameters(problem))`` (probs as free coordinates);
      residual (P,) = ||K dz + J||_inf per parameter, relative to ||J||_inf: O(1) where the active
      set cannot persist under that perturbation (see the module docstring), ~1e-12 otherwise.
    """
    ev = evaluate(point, problem, table)
    dz = -pinv(ev["K"]) @ ev["J"]
    D = ev["Yt"] + ev["Yx"] @ dz[:point.x.shape[-1]]
    return D, jnp.max(jnp.abs(ev["K"] @ dz + ev["J"]), axis=0) / (jnp.max(jnp.abs(ev["J"]), axis=0) + _TINY)


@kernel_jit
def evaluate(point: KKTPoint, problem, table) -> dict:
    """Everything needed at a point, in one compilation (shared by the host entry points and the
    custom VJP).

    Returns:
      dict of arrays: phi (n,) = Phi; K (n, n), J (n, P), the Jacobians of Phi in z and theta;
      y (Y,) the outputs, Yx (Y, nx), Yt (Y, P) their Jacobians; h (nh,) the constraints H;
      grad (nx,) grad F; jac_h (nh, nx) J_H; dL (P,) the envelope gradient dL/dtheta at fixed (x, mu).
    """
    theta = parameters(problem)
    flat, unravel = ravel_pytree(theta)
    nx, nz = point.x.shape[-1], point.x.shape[-1] + point.multipliers.shape[-1]
    z = jnp.concatenate([point.x, point.multipliers])
    args = (point.reservation_data, problem, table, point.scales)
    # One forward-mode pass over (z, theta) each: half the tracing (and compile time) of two.
    KJ = jax.jacfwd(lambda w: kkt_conditions(w[:nz], point.active, unravel(w[nz:]), *args))(
        jnp.concatenate([z, flat]))
    Y = jax.jacfwd(lambda w: _outputs(w[:nx], unravel(w[nx:]), *args))(jnp.concatenate([point.x, flat]))
    dL = jax.grad(lambda f: _lagrangian(point.x, point.multipliers, unravel(f), *args))(flat)
    return dict(phi=kkt_conditions(z, point.active, theta, *args), K=KJ[:, :nz], J=KJ[:, nz:],
                y=_outputs(point.x, theta, *args), Yx=Y[:, :nx], Yt=Y[:, nx:],
                h=_constraints(point.x, theta, *args), grad=jax.grad(_objective)(point.x, theta, *args),
                jac_h=jax.jacfwd(_constraints)(point.x, theta, *args), dL=dL)
