r"""Sensitivities of a solved contract: implicit differentiation of its KKT conditions.

Parameters: theta = (probs p, costs c, quality q, accuracy-curve parameters, valuation parameters),
``Parameters`` below. The reservation utilities are *not* separate parameters: MODEL.md defines
:math:`f_i = \max(0, \max_{m \ge 0} v(a(q_i m)) - c_i m)`, and by the envelope theorem
:math:`\partial f_i / \partial\theta = \partial_\theta [v(a(q_i m)) - c_i m]` at :math:`m = m^{res}_i`
(zero where f_i = 0); every derivative here includes that channel.

The optimum is a KKT point of the first-moment problem in the solver's scaled variables
(``solvers._kkt``). For a solution of the simplified constraint set (MODEL.md "Simplified
constraint set", the default) x = m / s_m and

.. math:: \min_x F(x;\theta) = -E[a(n \cdot q m)] \quad \text{s.t.} \quad
          H(x;\theta) = (\text{budget}_{1..I}, \text{IR}_{2..I}, x_1, x_{i+1} - x_i) \ge 0 ;

for one of the full set (``constraints="full"``, or the exact solver's fallback when the
simplified set appears empty) x = (m / s_m, t / s_v) and H = (budget, IR, pairwise IC, x).

On the active set A with multipliers mu the KKT conditions are the square system

.. math:: \Phi(x, \mu; \theta) = [\nabla_x F - J_H^\top \mu;\ H_A;\ \mu_{\bar A}] = 0,

and the implicit function theorem gives :math:`dz/d\theta = -(\partial_z\Phi)^{-1}\partial_\theta\Phi`,
z = (x, mu) (Fiacco 1976; the ``custom_root`` of jaxopt, Blondel et al. 2022). Outputs y(x; theta)
(m, t, E[v(a)], E[a]) then have :math:`dy/d\theta = \partial_\theta y + \partial_x y\, dx/d\theta`.
The envelope theorem gives the optimal objective directly: :math:`dE[a]^*/d\theta = -\partial_\theta L`
at fixed (x, mu), L = F - mu . H (``envelope``); the two routes must agree.

**Pooled (degenerate) optima.** With the simplified constraint set a pool of adjacent types is a
set of active monotonicity constraints x_i = x_{i+1} (with the full set: active IC pairs i -> j and
j -> i). Where strict complementarity holds (some
multiplier vector is positive on every active constraint) the active set is locally stable: the
pool persists under small perturbations, and the derivative is the derivative of the *pooled*
solution (the common m of the pool moves as one). Two degeneracies are detected and reported:

* *Weakly active constraints* (multiplier 0 on an active constraint, strict complementarity fails;
  e.g. MODEL.md scenario 1, whose equally spaced costs make the pool of types 1-4 hold with zero
  monotonicity multipliers): the active set may change in one direction of a perturbation and not
  the other, so x(theta) is only directionally differentiable. The derivative of an output is
  reported as two-sided only if every choice of keeping or releasing the weakly active constraints
  gives the same value; otherwise it is flagged (``differentiable`` False, value NaN by default).
  The optimal objective E[a] stays differentiable (envelope theorem) when its multipliers are unique.
* *Dependent active constraints* (LICQ fails; e.g. scenario 2, where all five types pool and all
  five budgets bind with tbar_i = v(a(N m)) for every i): multipliers are not unique and the
  Jacobian of Phi is singular; it is solved in the least-squares (pseudo-inverse) sense. The
  derivative exists in a direction only if the perturbed active constraints stay compatible
  (the linear system is consistent); otherwise the optimum moves along a kink (e.g. quality
  weights that make the pooled budgets differ) and the derivative is flagged.

The flags are per output and per parameter coordinate (and ``Sensitivities.directional`` tests
any direction: at scenario 1 a uniform shift of all costs keeps the pool and is two-sided).

**Probabilities** live on the simplex. ``sensitivities`` reports by default the gradient projected
on its tangent space (``probs="tangent"``): g_i - mean(g), whose dot product with any
perturbation dp summing to zero is the first-order change; ``probs="free"`` gives the plain partial
derivatives of the formulas with each p_i free (the multinomial mass and conditional weights of
``expectation`` evaluated at unnormalized p), which is what ``jax.grad`` of ``optimal_value``
returns.

**Composition with JAX.**

* ``implicit_jacobian`` (given a ``KKTPoint`` from ``kkt_point``) is pure JAX: jittable and
  vmappable over a batch of points and problems. It returns the active-set derivative and the
  consistency residual; the weak-constraint test (which needs linear programs) is host-side.
* ``optimal_contract`` / ``optimal_value`` are ``jax.custom_vjp`` functions: the forward pass calls
  the exact solver (host, through ``jax.pure_callback``, so it also runs under ``jit`` and, one
  problem after the other, under ``vmap``) and the backward pass is the implicit derivative, so
  ``jax.grad(lambda c: optimal_value(problem.replace(costs=c)))`` works, also jitted. N and the
  type order must be concrete (they fix the outcome table); forward-mode (``jvp``) is not defined.
* ``sensitivities`` and ``envelope`` are host-side entry points (scipy linear programs decide
  which constraints are weakly active).

Everything needs float64 (``jax.enable_x64``): the host entry points scope it themselves (as
``solve`` does); ``optimal_contract`` runs inside the caller's transformations and raises if x64 is off.
Expectations use the full enumeration table (K = C(N+I-1, I-1) outcomes), whatever backend the
solution was computed with.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.flatten_util import ravel_pytree
from scipy import optimize

from . import _precision
from .expectation import OutcomeTable, moments, outcome_table
from .problem import ContractProblem, reservation
from .solvers import _kkt
from .solvers.exact import solve_exact

PARAMETER_NAMES = ("probs", "costs", "quality", "accuracy", "valuation")
OUTPUT_NAMES = ("contributions", "rewards", "expected_value", "expected_accuracy")
PROBS_CONVENTIONS = ("tangent", "free")
ORDERS = ("input", "canonical")
POLICIES = ("nan", "keep")
# The KKT system is written in the solver's variables: "reduced" x = m / s_m (I,) for a solution of
# the simplified constraint set, "full" x = (m / s_m, t / s_v) (2I,) for one of the full set. Which
# one is read off the shape of x (static under jit).
PARAMETERIZATIONS = {"simplified": "reduced", "full": "full"}

# Tolerances of the degeneracy tests, dimensionless (outputs per unit relative change of a
# parameter, divided by the output's magnitude): float64 KKT systems are solved to ~1e-12 here,
# a genuine kink or an incompatible active set shows up at O(1).
CONSISTENCY_TOL = 1e-7
ALTERNATIVE_TOL = 1e-7
WEAK_MULTIPLIER_TOL = 1e-7  # multipliers relative to ||grad F||_inf below this count as zero
RCOND = 1e-10  # singular values of the KKT Jacobian below RCOND * largest are a dependency
MAX_WEAK_SUBSETS = 8  # all 2^|W| release patterns up to this many weakly active constraints


class SensitivityError(RuntimeError):
    """The solution is not a (converged) KKT point that the implicit function theorem applies to."""


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

    x: (I,) m / s_m ("reduced", simplified constraint set) or (2I,) (m / s_m, t / s_v) ("full").
    multipliers: (nh,) mu >= 0 of H (``constraint_names``: (budget, IR_2..I, x_1, diff x), nh = 3I-1,
      reduced; (budget, IR, pairwise IC, x), nh = I^2 + 3I, full), zero off the active set.
    active: (nh,) bool.  scales: ``_kkt.Scales`` (s_m data, s_v money).
    reservation_data: (I,) m^res at which f is differentiated (envelope theorem).
    """

    x: jnp.ndarray
    multipliers: jnp.ndarray
    active: jnp.ndarray
    scales: _kkt.Scales
    reservation_data: jnp.ndarray


def parameters(problem: ContractProblem) -> Parameters:
    """The ``Parameters`` of a problem (canonical order, costliest type first)."""
    return Parameters(problem.probs, problem.costs, problem.quality, problem.accuracy, problem.valuation)


def reservation_utilities(theta: Parameters, reservation_data) -> jnp.ndarray:
    r"""f_i = v(a(q_i m_i^res)) - c_i m_i^res where m_i^res > 0, else 0 (MODEL.md "Curves").

    Equal to ``reservation``'s f at its argmax m^res, and with the right derivative in theta by
    the envelope theorem as long as m^res is held fixed (it is not differentiated).
    """
    m = jax.lax.stop_gradient(jnp.asarray(reservation_data))
    positive = m > 0.0
    ms = jnp.where(positive, m, 1.0)
    gain = theta.valuation(theta.accuracy(theta.quality * ms)) - theta.costs * ms
    return jnp.where(positive, gain, 0.0)


def _problem_at(problem, theta: Parameters, reservation_data):
    f = reservation_utilities(theta, reservation_data)
    return problem.replace(probs=theta.probs, costs=theta.costs, quality=theta.quality, accuracy=theta.accuracy,
                           valuation=theta.valuation, reservation_utility=f)


def _parameterization(x, problem) -> str:
    return "full" if x.shape[-1] == 2 * problem.costs.shape[-1] else "reduced"


def _objective(x, theta, point_res, problem, table, scales):
    pr = _problem_at(problem, theta, point_res)
    return _kkt.objective(x, pr, table, scales, _parameterization(x, problem))


def _constraints(x, theta, point_res, problem, table, scales):
    pr = _problem_at(problem, theta, point_res)
    return _kkt.all_constraints(x, pr, table, scales, _parameterization(x, problem))


def _lagrangian(x, mu, theta, point_res, problem, table, scales):
    args = (theta, point_res, problem, table, scales)
    return _objective(x, *args) - mu @ _constraints(x, *args)


def kkt_conditions(z, active, theta, reservation_data, problem, table, scales):
    r"""Phi(z; theta) = [grad_x L(x, mu); where(active, H(x), mu)], z = (x, mu): zero at a KKT point.

    Args:
      z: (nx + nh,) scaled variables x and multipliers.  active: (nh,) bool.
      theta: ``Parameters``.  reservation_data: (I,) m^res.  problem: ``ContractProblem`` (supplies
      N and conditioning; its parameter leaves are replaced by theta).  table: ``OutcomeTable``.
      scales: ``_kkt.Scales``.
    """
    nx = z.shape[-1] - active.shape[-1]
    x, mu = z[:nx], z[nx:]
    grad = jax.grad(_lagrangian)(x, mu, theta, reservation_data, problem, table, scales)
    h = _constraints(x, theta, reservation_data, problem, table, scales)
    return jnp.concatenate([grad, jnp.where(active, h, mu)])


def _outputs(x, theta, reservation_data, problem, table, scales):
    """y = (m (I), t (I), E[v(a)], E[a]) as a function of the scaled x and theta."""
    pr = _problem_at(problem, theta, reservation_data)
    m, t = _kkt.decode(x, pr, scales, _parameterization(x, problem))
    mom = moments(m, pr, table)
    return jnp.concatenate([m, t, mom.expected_value[None], mom.expected_accuracy[None]])


def _system(point: KKTPoint, problem, table):
    """Jacobians at a KKT point: K = dPhi/dz (n, n), J = dPhi/dtheta (n, P), Yx (Y, nx), Yt (Y, P)."""
    theta = parameters(problem)
    flat, unravel = ravel_pytree(theta)
    num, nz = point.x.shape[-1], point.x.shape[-1] + point.multipliers.shape[-1]
    z = jnp.concatenate([point.x, point.multipliers])
    args = (point.reservation_data, problem, table, point.scales)
    # One forward-mode pass over (z, theta) each: half the tracing (and compile time) of two.
    KJ = jax.jacfwd(lambda w: kkt_conditions(w[:nz], point.active, unravel(w[nz:]), *args))(
        jnp.concatenate([z, flat]))
    Y = jax.jacfwd(lambda w: _outputs(w[:num], unravel(w[num:]), *args))(jnp.concatenate([point.x, flat]))
    return KJ[:, :nz], KJ[:, nz:], Y[:, :num], Y[:, num:]


def _pinv(K, rcond=RCOND):
    """Moore-Penrose inverse by SVD (jittable): the least-squares, minimum-norm solution operator,
    which also serves the singular KKT systems of dependent active constraints."""
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
    K, J, Yx, Yt = _system(point, problem, table)
    dz = -_pinv(K) @ J
    num = point.x.shape[-1]
    D = Yt + Yx @ dz[:num]
    resid = jnp.max(jnp.abs(K @ dz + J), axis=0) / (jnp.max(jnp.abs(J), axis=0) + 1e-300)
    return D, resid


# ------------------------------------------------------------------------------------------ host side
def _scales(problem) -> _kkt.Scales:
    # The exact solver's scales: contributions by the largest m^res, values by v(1) - v(0).
    v_scale = float(problem.valuation(1.0) - problem.valuation(0.0))
    m_scale = float(max(np.max(np.asarray(problem.reservation_data)), 1.0))
    return _kkt.Scales(np.float64(m_scale), np.float64(v_scale))


def _canonical(problem: ContractProblem) -> ContractProblem:
    """Float64 leaves and identity type order, so jitted kernels are shared by every input order."""
    flat, (conditioning, _) = problem.tree_flatten()
    leaves = [np.asarray(flat[0])] + [jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), v) for v in flat[1:]]
    return ContractProblem.tree_unflatten((conditioning, tuple(range(problem.num_types))), leaves)


@functools.lru_cache(maxsize=64)
def _table_np(participants: int, num_types: int) -> OutcomeTable:
    # Padded to the shape ladder of ``bucket_length``: problems with nearby N share compilations.
    return outcome_table(participants, num_types, length="bucket")


def _table(participants: int, num_types: int) -> OutcomeTable:
    table = _table_np(participants, num_types)
    return OutcomeTable(jnp.asarray(table.counts), jnp.asarray(table.valid))


@jax.jit
def _evaluate(point: KKTPoint, problem, table):
    """Everything needed at a point, in one compilation (shared by the host entry points and the
    custom VJP): Phi, its Jacobians K and J, the outputs y and their Jacobians Yx and Yt, the
    constraints h, grad F, J_H, and the envelope gradient dL/dtheta at fixed (x, mu)."""
    theta = parameters(problem)
    flat, unravel = ravel_pytree(theta)
    z = jnp.concatenate([point.x, point.multipliers])
    args = (point.reservation_data, problem, table, point.scales)
    phi = kkt_conditions(z, point.active, theta, *args)
    K, J, Yx, Yt = _system(point, problem, table)
    y = _outputs(point.x, theta, *args)
    h = _constraints(point.x, theta, *args)
    grad = jax.grad(_objective)(point.x, theta, *args)
    jac_h = jax.jacfwd(lambda x: _constraints(x, theta, *args))(point.x)
    dL = jax.grad(lambda f: _lagrangian(point.x, point.multipliers, unravel(f), *args))(flat)
    return dict(phi=phi, K=K, J=J, Yx=Yx, Yt=Yt, y=y, h=h, grad=grad, jac_h=jac_h, dL=dL)


def _host_eval(point: KKTPoint, problem, table) -> dict:
    return {k: np.asarray(v) for k, v in _evaluate(point, problem, table).items()}


def constraint_names(num_types: int, parameterization: str = "reduced") -> list[str]:
    """Names of the entries of H (canonical order, 1-based type numbers, costliest first).

    ``ic[i,j]``: type i does not prefer item j.  ``nonnegative``: m >= 0 (and t >= 0 when full).
    """
    names = [f"budget[{i + 1}]" for i in range(num_types)]
    if parameterization == "reduced":
        names += [f"ir[{i + 1}]" for i in range(1, num_types)]
        names += ["nonnegative[m1]"]
        return names + [f"monotone[{i + 1},{i + 2}]" for i in range(num_types - 1)]
    names += [f"ir[{i + 1}]" for i in range(num_types)]
    names += [f"ic[{i + 1},{j + 1}]" for i in range(num_types) for j in range(num_types) if i != j]
    return names + [f"nonnegative[m{i + 1}]" for i in range(num_types)] + [
        f"nonnegative[t{i + 1}]" for i in range(num_types)]


def _constraint_units(num_types: int, parameterization: str, scales) -> np.ndarray:
    """Scaled residual -> money (budget, IR, IC, t >= 0) or units of data (monotone, m >= 0)."""
    v, d = float(scales.value), float(scales.data)
    if parameterization == "reduced":
        return np.array([v] * (2 * num_types - 1) + [d] * num_types)
    return np.array([v] * (num_types * num_types + num_types) + [d] * num_types + [v] * num_types)


def _interior_multipliers(jac_a, grad):
    """Multipliers of the active constraints: for each j, the largest mu_j >= 0 with J_A^T mu = grad.

    Returns (mu_interior, largest): the average of the maximizers (positive wherever any
    multiplier vector is) and the largest attainable mu_j per constraint relative to
    ||grad||_inf (rows of J_A scaled to unit size); None if no non-negative multiplier exists.
    """
    k = jac_a.shape[0]
    norm = max(float(np.max(np.abs(grad))), 1e-300)
    g = grad / norm
    if k == 0:
        return (np.zeros(0), np.zeros(0)) if np.max(np.abs(g)) <= 1e-9 else None
    row_norm = np.maximum(np.max(np.abs(jac_a), axis=1), 1e-300)
    A = (jac_a / row_norm[:, None]).T
    if np.linalg.matrix_rank(A, tol=1e-10) == k:  # independent (LICQ): the multipliers are unique
        mu, *_ = np.linalg.lstsq(A, g, rcond=None)
        if np.min(mu) < -1e-9 or np.max(np.abs(A @ mu - g)) > 1e-9:
            return None
        mu = np.maximum(mu, 0.0)
        return mu / row_norm * norm, mu
    sols, largest = [], np.zeros(k)
    for j in range(k):
        cost = np.zeros(k)
        cost[j] = -1.0
        # The cap bounds the LP where the multiplier set is unbounded (MFCQ fails).
        out = optimize.linprog(cost, A_eq=A, b_eq=g, bounds=[(0.0, 1e6)] * k, method="highs")
        if out.status != 0:
            return None
        sols.append(out.x)
        largest[j] = out.x[j]
    mu = np.mean(sols, axis=0)
    return mu / row_norm * norm, largest


def _locate(problem: ContractProblem, solution, active_tol: float, table):
    """Polish (x, mu) by Newton on Phi = 0 with the active set {H <= active_tol} fixed (adding any
    constraint the polish violates), then pick interior multipliers by linear programs.

    Returns:
      (point, weak, licq): ``KKTPoint`` (in the variables of the solution's constraint set);
      indices of weakly active constraints (largest possible multiplier ~ 0); whether the active
      gradients are independent.
    """
    scales = _scales(problem)
    res = np.asarray(problem.reservation_data, np.float64)
    parameterization = PARAMETERIZATIONS.get(getattr(solution, "constraints", "simplified"), "reduced")
    x = np.asarray(_kkt.encode(np.asarray(solution.contributions, np.float64), np.asarray(solution.rewards, np.float64),
                               scales, parameterization))
    num = x.size
    nh = len(constraint_names(problem.num_types, parameterization))

    def evaluate(x, mu, active):
        return _host_eval(KKTPoint(jnp.asarray(x), jnp.asarray(mu), jnp.asarray(active), scales, jnp.asarray(res)),
                          problem, table)

    ev = evaluate(x, np.zeros(nh), np.zeros(nh, bool))
    active = ev["h"] <= active_tol
    for _ in range(nh + 1):
        mu = np.zeros(nh)
        if active.any():
            mu[active] = np.linalg.lstsq(ev["jac_h"][active].T, ev["grad"], rcond=None)[0]
        z = np.concatenate([x, mu])
        for _ in range(30):  # Newton with least-squares steps: dependent active rows are fine
            ev = evaluate(z[:num], z[num:], active)
            delta = np.linalg.lstsq(ev["K"], -ev["phi"], rcond=None)[0]
            z = z + delta
            if np.max(np.abs(delta)) <= 1e-15 * (1.0 + np.max(np.abs(z))):
                break
        x, mu = z[:num], z[num:]
        ev = evaluate(x, mu, active)
        violated = (~active) & (ev["h"] < -1e-12)
        if not violated.any():
            break
        active = active | violated
    else:
        raise SensitivityError("no consistent active set found at the solution")
    grad, jac_a, h = ev["grad"], ev["jac_h"][active], ev["h"]
    stationarity = np.max(np.abs(grad - jac_a.T @ mu[active])) / (1.0 + np.max(np.abs(grad)))
    infeasibility = np.max(np.abs(h[active]), initial=0.0)
    if not (stationarity <= 1e-10 and infeasibility <= 1e-10):
        raise SensitivityError(f"the solution is not a KKT point on its active set (stationarity "
                               f"{stationarity:.1e}, active residual {infeasibility:.1e})")
    found = _interior_multipliers(jac_a, grad)
    if found is None:
        raise SensitivityError("no non-negative KKT multipliers at the solution: not a local optimum")
    mu_a, largest = found
    mu = np.zeros(nh)
    mu[active] = mu_a
    weak = tuple(int(j) for j, v in zip(np.flatnonzero(active), largest) if v <= WEAK_MULTIPLIER_TOL)
    licq = True
    if jac_a.size:
        licq = bool(np.linalg.matrix_rank(jac_a, tol=1e-10 * np.max(np.abs(jac_a))) == jac_a.shape[0])
    point = KKTPoint(jnp.asarray(x), jnp.asarray(mu), jnp.asarray(active), scales, jnp.asarray(res))
    return point, weak, licq


def kkt_point(problem: ContractProblem, solution=None, *, active_tol: float = 1e-8, **solver_options) -> KKTPoint:
    """The polished ``KKTPoint`` of a solution (host side), the input of ``implicit_jacobian``.

    Args:
      problem: ``ContractProblem``.
      solution: converged ``Solution`` (any method; its (m, t) in the variables of its
        ``constraints``); default ``solve_exact``.
      active_tol: scaled slack under which a constraint is active (see ``sensitivities``).

    Returns:
      ``KKTPoint`` in canonical order, with interior multipliers (module docstring).
    """
    with _precision.float64():
        solution = _converged(problem, solution, solver_options)
        canonical = _canonical(problem)
        return _locate(canonical, solution, active_tol, _table(canonical.num_participants, canonical.num_types))[0]


def contract(point: KKTPoint, problem: ContractProblem) -> tuple[np.ndarray, np.ndarray]:
    """(m, t) of a ``KKTPoint`` (canonical order): units of data and money."""
    with _precision.float64():
        problem = _canonical(problem)
        x = jnp.asarray(point.x)
        m, t = _kkt.decode(x, problem, point.scales, _parameterization(x, problem))
        return np.asarray(m), np.asarray(t)


def _converged(problem, solution, solver_options):
    if solution is None:
        # The canonical copy (identity type order) shares the solver's compilations across orders.
        solution = solve_exact(_canonical(problem), **solver_options)
    if not solution.succeeded:
        raise SensitivityError(f"the solution did not converge (status {solution.status_name}); "
                               "sensitivities need a KKT point")
    return solution


class _Analysis(NamedTuple):
    """Host-side results of ``_analyze`` (canonical order, flat parameters)."""

    problem: Any  # canonical ContractProblem
    table: Any
    point: KKTPoint
    weak: tuple
    licq: bool
    y: np.ndarray  # (Y,) outputs
    D: np.ndarray  # (Y, P) derivatives on the active set
    J: np.ndarray  # (n, P) dPhi/dtheta
    residual: np.ndarray  # (n, P) K dz + J: non-zero where the active set cannot persist
    alternatives: list  # [(Y, P)]: D_S - D for each release pattern S of the weakly active constraints
    theta_flat: np.ndarray
    unravel: Any
    input_order: tuple = ()  # the user's type order (``ContractProblem.type_order``)


def _analyze(problem: ContractProblem, solution, active_tol: float) -> _Analysis:
    """Locate the KKT point, then solve the implicit system of its active set and of every pattern
    of releasing weakly active constraints (mu_j = 0 instead of H_j = 0)."""
    problem = _canonical(problem)
    table = _table(problem.num_participants, problem.num_types)
    point, weak, licq = _locate(problem, solution, active_tol, table)
    ev = _host_eval(point, problem, table)
    K, J, Yx, Yt = ev["K"], ev["J"], ev["Yx"], ev["Yt"]
    num = point.x.shape[-1]

    def solve(K_, J_):
        dz = -np.linalg.pinv(K_, rcond=RCOND) @ J_
        return Yt + Yx @ dz[:num], K_ @ dz + J_

    D, residual = solve(K, J)
    if len(weak) <= MAX_WEAK_SUBSETS:
        patterns = [s for r in range(1, len(weak) + 1) for s in itertools.combinations(weak, r)]
    else:  # too many to enumerate: each alone, and all at once
        patterns = [(j,) for j in weak] + [weak]
    alternatives = []
    for pattern in patterns:
        K_, J_ = K.copy(), J.copy()
        for j in pattern:
            K_[num + j] = 0.0
            K_[num + j, num + j] = 1.0
            J_[num + j] = 0.0
        alternatives.append(solve(K_, J_)[0] - D)
    flat, unravel = ravel_pytree(parameters(problem))
    return _Analysis(problem, table, point, weak, licq, ev["y"], D, J, residual, alternatives, np.asarray(flat),
                     unravel)


def _output_scales(an: _Analysis) -> np.ndarray:
    """Magnitude of each output (the largest |m| for every m_i, likewise t), floored above 0."""
    num = an.problem.num_types
    y = np.abs(an.y)
    blocks = [np.full(num, np.max(y[:num])), np.full(num, np.max(y[num:2 * num])), y[2 * num:]]
    return np.maximum(np.concatenate(blocks), 1e-300)


def _direction_flags(an: _Analysis, directions: np.ndarray) -> np.ndarray:
    """(Y, Q) bool: is the derivative of output y along direction q (columns of ``directions``, flat
    parameter units) two-sided? Two tests (module docstring): the active set can persist (the
    implicit system is consistent), and releasing weakly active constraints changes nothing."""
    # Directions in units of relative parameter change, outputs relative to their magnitude.
    weight = np.where(an.theta_flat != 0, np.abs(an.theta_flat), 1.0)[:, None]
    size = np.max(np.abs(directions) * weight, axis=0)
    dirs = directions / np.where(size > 0, size, 1.0)[None, :]
    rhs = np.max(np.abs(an.J @ dirs), axis=0)
    consistent = np.max(np.abs(an.residual @ dirs), axis=0) <= CONSISTENCY_TOL * rhs
    ok = np.broadcast_to(consistent, (an.D.shape[0], dirs.shape[1])).copy()
    ys = _output_scales(an)[:, None]
    for alt in an.alternatives:
        ok &= np.abs(alt @ dirs) / ys <= ALTERNATIVE_TOL
    return ok


def _directions(size: int, num: int, probs: str) -> np.ndarray:
    """(P, P) columns: unit vectors, with the probs block replaced by e_k - 1/I when "tangent"."""
    dirs = np.eye(size)
    if probs == "tangent":
        dirs[:num, :num] -= 1.0 / num
    return dirs


def _positions(type_order: tuple, order: str) -> np.ndarray:
    """pos[k]: where canonical type k goes in ``order`` (``to_input_order`` writes out[pos] = values)."""
    return np.asarray(type_order) if order == "input" else np.arange(len(type_order))


def _as_parameters(an: _Analysis, block: np.ndarray, pos: np.ndarray) -> Parameters:
    """(..., P) flat derivatives -> ``Parameters`` with leading shape (...), the type axis of p, c, q in
    the requested order."""
    lead = block.shape[:-1]
    rows = [an.unravel(jnp.asarray(r)) for r in block.reshape((-1, block.shape[-1]))]
    stacked = jax.tree_util.tree_map(
        lambda *a: np.stack([np.asarray(v) for v in a]).reshape(lead + np.shape(a[0])), *rows)

    def reorder(v):
        out = np.empty_like(v)
        out[..., pos] = v
        return out

    return Parameters(reorder(stacked.probs), reorder(stacked.costs), reorder(stacked.quality), stacked.accuracy,
                      stacked.valuation)


def _output_block(an: _Analysis, mat: np.ndarray, name: str, pos: np.ndarray) -> np.ndarray:
    num = an.problem.num_types
    if name in ("contributions", "rewards"):
        block = mat[:num] if name == "contributions" else mat[num:2 * num]
        out = np.empty_like(block)
        out[pos] = block
        return out
    return mat[2 * num] if name == "expected_value" else mat[2 * num + 1]


# ------------------------------------------------------------------------------------------ records
@struct.dataclass
class Sensitivities:
    """Derivatives of a solved contract with respect to its problem's parameters.

    Type order: ``order`` ("input": the order the types were given to ``ContractProblem``, as
    ``ContractProblem.to_input_order``; "canonical": costliest first) on both the output axis
    (whose m or t) and the parameter axis (whose p, c or q).

    contributions, rewards: (I,) m (units of data) and t (money) of the (polished) solution.
    expected_value, expected_accuracy: () E[v(a)] (money) and E[a].
    d_contributions, d_rewards: ``Parameters`` with leaves of shape (I,) + parameter shape:
      d m_i / d theta (units of data per unit of theta) and d t_i / d theta (money per unit).
    d_expected_value, d_expected_accuracy: ``Parameters`` shaped like the parameters.
    differentiable: dict output name -> ``Parameters`` of bools: False where the derivative is only
      one-sided (module docstring); those entries are NaN unless ``nondifferentiable="keep"``.
    strictly_complementary: every active constraint has a positive multiplier in some multiplier vector.
    linearly_independent: the active constraints' gradients are independent (LICQ: unique multipliers).
    active_constraints, weakly_active: names (``constraint_names``: canonical type numbers).
    multipliers: dict name -> multiplier of each active constraint, d E[a] per money of budget/IR/IC
      residual or per unit of data of monotone/m >= 0 residual (an interior choice when not unique).
    probs_convention: "tangent" or "free".
    constraints: the solution's constraint set, "simplified" (KKT system in m alone; pools are
      active monotonicity constraints) or "full" (in m and t; pools are active IC pairs).
    """

    contributions: Any
    rewards: Any
    expected_value: Any
    expected_accuracy: Any
    d_contributions: Parameters
    d_rewards: Parameters
    d_expected_value: Parameters
    d_expected_accuracy: Parameters
    differentiable: dict
    strictly_complementary: bool = struct.field(pytree_node=False, default=True)
    linearly_independent: bool = struct.field(pytree_node=False, default=True)
    active_constraints: tuple = struct.field(pytree_node=False, default=())
    weakly_active: tuple = struct.field(pytree_node=False, default=())
    multipliers: dict = struct.field(pytree_node=False, default_factory=dict)
    probs_convention: str = struct.field(pytree_node=False, default="tangent")
    order: str = struct.field(pytree_node=False, default="input")
    constraints: str = struct.field(pytree_node=False, default="simplified")
    analysis: Any = struct.field(pytree_node=False, default=None)

    def directional(self, direction: Parameters) -> tuple[dict, dict]:
        """Derivatives of every output along ``direction``, and whether each is two-sided.

        Useful where partial derivatives are one-sided but a direction keeps the structure (e.g. a
        uniform shift of all costs at a pool held with zero multipliers, MODEL.md scenario 1).

        Args:
          direction: ``Parameters`` in this record's type order (curve leaves as numbers); its probs
            are taken as given (free coordinates): make them sum to zero to stay on the simplex.

        Returns:
          (values, ok): dicts output name -> (I,) array for contributions/rewards (this record's
          order) or a float.
        """
        an = self.analysis
        pos = _positions(an.input_order, self.order)

        def vec(v):
            return np.asarray(v, np.float64)[pos]  # to canonical order

        d = Parameters(vec(direction.probs), vec(direction.costs), vec(direction.quality),
                       jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), direction.accuracy),
                       jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), direction.valuation))
        col = np.asarray(ravel_pytree(d)[0])[:, None]
        values, ok = (an.D @ col)[:, 0], _direction_flags(an, col)[:, 0]
        split = lambda v: {n: _output_block(an, v, n, pos) for n in OUTPUT_NAMES}  # noqa: E731
        return split(values), split(ok)


def sensitivities(problem: ContractProblem, solution=None, *, probs: str = "tangent", order: str = "input",
                  nondifferentiable: str = "nan", active_tol: float = 1e-8, **solver_options) -> Sensitivities:
    r"""Derivatives of the optimal contract (m, t) and optimal value (E[v(a)], E[a]) with respect to
    the problem's parameters, by the implicit function theorem on the KKT conditions of the
    solution's active set (module docstring: pooled optima, flags, conventions).

    Args:
      problem: ``ContractProblem``.
      solution: a converged ``Solution`` of it (any method or constraint set: its (m, t) is used, then
        polished by Newton on the active set); default ``solve_exact(problem, **solver_options)``.
      probs: "tangent" (derivatives projected on the simplex's tangent space: each row sums to
        zero; p_i's entry is the derivative along e_i - 1/I) or "free" (plain partials, p_i free).
      order: "input" (types as given to ``ContractProblem``) or "canonical" (costliest first).
      nondifferentiable: "nan" (default: one-sided derivatives become NaN) or "keep" (report the
        derivative of the present active set, which is at best one of the one-sided derivatives).
      active_tol: constraints with scaled slack H_j <= active_tol are active (H in units of
        v(1) - v(0) for money constraints, of max m^res for data ones; at the exact solver's
        default feasibility tolerance, 1e-8 money, active slacks are ~1e-10 here).

    Returns:
      ``Sensitivities``.

    Raises:
      SensitivityError: the solution did not converge or is not a KKT point.
    """
    for name, value, allowed in (("probs", probs, PROBS_CONVENTIONS), ("order", order, ORDERS),
                                 ("nondifferentiable", nondifferentiable, POLICIES)):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    with _precision.float64():
        solution = _converged(problem, solution, solver_options)
        an = _analyze(problem, solution, active_tol)
    an = an._replace(input_order=problem.type_order)
    num = problem.num_types
    dirs = _directions(an.theta_flat.size, num, probs)
    D, ok = an.D @ dirs, _direction_flags(an, dirs)
    if nondifferentiable == "nan":
        D = np.where(ok, D, np.nan)
    pos = _positions(problem.type_order, order)

    def derivative(mat, name):
        return _as_parameters(an, _output_block(an, mat, name, pos), pos)

    parameterization = "full" if an.point.x.shape[-1] == 2 * num else "reduced"
    names = constraint_names(num, parameterization)
    active_idx = np.flatnonzero(np.asarray(an.point.active))
    mu = np.asarray(an.point.multipliers)
    unit = _constraint_units(num, parameterization, an.point.scales)
    record = Sensitivities(
        contributions=_output_block(an, an.y, "contributions", pos), rewards=_output_block(an, an.y, "rewards", pos),
        expected_value=float(an.y[2 * num]), expected_accuracy=float(an.y[2 * num + 1]),
        d_contributions=derivative(D, "contributions"), d_rewards=derivative(D, "rewards"),
        d_expected_value=derivative(D, "expected_value"), d_expected_accuracy=derivative(D, "expected_accuracy"),
        differentiable={name: derivative(ok, name) for name in OUTPUT_NAMES},
        strictly_complementary=not an.weak, linearly_independent=an.licq,
        active_constraints=tuple(names[j] for j in active_idx), weakly_active=tuple(names[j] for j in an.weak),
        multipliers={names[j]: float(mu[j] / unit[j]) for j in active_idx},
        probs_convention=probs, order=order, constraints=solution.constraints, analysis=an)
    return record


def envelope(problem: ContractProblem, solution=None, *, probs: str = "tangent", order: str = "input",
             active_tol: float = 1e-8, **solver_options) -> Parameters:
    r"""Gradient of the optimal objective E[a]* by the envelope theorem: -dL/dtheta at fixed (x, mu).

    L = F - mu . H with F = -E[a] (module docstring); multipliers are the interior choice of
    ``sensitivities`` (every multiplier vector gives the same value where the derivative exists).
    Must equal ``sensitivities(...).d_expected_accuracy``; no linear system is solved.

    Returns:
      ``Parameters`` in the given type order and probs convention (as ``sensitivities``).
    """
    with _precision.float64():
        solution = _converged(problem, solution, solver_options)
        an = _analyze(problem, solution, active_tol)
        # E[a] = -F, so dE[a]*/dtheta = -dL/dtheta (L = F - mu . H) at the KKT point.
        flat = -_host_eval(an.point, an.problem, an.table)["dL"]
    dirs = _directions(flat.size, problem.num_types, probs)
    return _as_parameters(an, flat @ dirs, _positions(problem.type_order, order))


# ------------------------------------------------------------------------------------ custom_vjp
class OptimalContract(NamedTuple):
    """Output of ``optimal_contract`` (canonical order, like the problem's leaves).

    contributions: (I,) m.  rewards: (I,) t.  expected_value: () E[v(a)].  expected_accuracy: () E[a].
    status: () int32 ``Status`` of the exact solve (outputs are NaN unless CONVERGED), or -1 where
      the solution is not a KKT point the implicit function theorem applies to.
    """

    contributions: jnp.ndarray
    rewards: jnp.ndarray
    expected_value: jnp.ndarray
    expected_accuracy: jnp.ndarray
    status: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class _Spec:
    participants: int
    conditioning: str
    num_types: int
    constraints: str
    policy: str
    active_tol: float
    solver_options: tuple

    @property
    def sizes(self) -> tuple[int, int]:
        """(nx, nh): sizes of x and H in the variables of ``constraints``."""
        parameterization = PARAMETERIZATIONS[self.constraints]
        nx = self.num_types * (2 if parameterization == "full" else 1)
        return nx, len(constraint_names(self.num_types, parameterization))


def _host_solve(spec: _Spec, theta: Parameters, reservation_data):
    """Host: solve exactly, analyze; returns (x, mu, active, flags (Y, P), status, scales)."""
    num = spec.num_types
    nx, nh = spec.sizes
    theta = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), theta)
    res = np.asarray(reservation_data, np.float64)
    P = np.asarray(ravel_pytree(theta)[0]).size
    fail = (np.full(nx, np.nan), np.zeros(nh), np.zeros(nh, bool), np.zeros((2 * num + 2, P), bool), np.int32(-1),
            np.full(2, np.nan))
    with _precision.float64():
        f = np.asarray(reservation_utilities(theta, res))
        leaves = (np.int64(spec.participants), theta.probs, theta.costs, theta.quality, theta.accuracy,
                  theta.valuation, f, res)
        problem = ContractProblem.tree_unflatten((spec.conditioning, tuple(range(num))), leaves)
        solution = solve_exact(problem, constraints=spec.constraints, **dict(spec.solver_options))
        if not solution.succeeded:
            return fail[:4] + (np.int32(solution.status), fail[5])
        if solution.constraints != spec.constraints:
            # The solver fell back to the full set (the simplified one appeared empty): its KKT
            # point has another shape than the one this compiled function was traced for.
            return fail
        try:
            an = _analyze(problem, solution, spec.active_tol)
        except SensitivityError:
            return fail
    flags = _direction_flags(an, np.eye(P))
    pt = an.point
    return (np.asarray(pt.x), np.asarray(pt.multipliers), np.asarray(pt.active), flags, np.int32(solution.status),
            np.asarray([pt.scales.data, pt.scales.value]))


def _template(participants, conditioning: str, theta: Parameters, reservation_data) -> ContractProblem:
    """A canonical-order problem from parameters (no validation: leaves may be traced). Leaf types
    match ``_canonical``'s, so eager calls reuse the host path's compilation of ``_evaluate``."""
    leaves = (np.asarray(participants, np.int64), theta.probs, theta.costs, theta.quality, theta.accuracy,
              theta.valuation, reservation_utilities(theta, reservation_data), reservation_data)
    return ContractProblem.tree_unflatten((conditioning, tuple(range(theta.costs.shape[-1]))), leaves)


def _forward(spec: _Spec, theta: Parameters, reservation_data):
    num = spec.num_types
    nx, nh = spec.sizes
    P = ravel_pytree(theta)[0].size
    f64 = jnp.float64
    shapes = (jax.ShapeDtypeStruct((nx,), f64), jax.ShapeDtypeStruct((nh,), f64), jax.ShapeDtypeStruct((nh,), bool),
              jax.ShapeDtypeStruct((2 * num + 2, P), bool), jax.ShapeDtypeStruct((), jnp.int32),
              jax.ShapeDtypeStruct((2,), f64))
    host = functools.partial(_host_solve, spec)
    leaves = jax.tree_util.tree_leaves((theta, reservation_data))
    if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
        x, mu, active, flags, status, sc = jax.pure_callback(host, shapes, theta, reservation_data,
                                                             vmap_method="sequential")
    else:
        # Eager (e.g. jax.grad without jit): call the host directly. Jitted functions called inside
        # a callback miss the compilation cache of the calling thread, so this saves compilations.
        x, mu, active, flags, status, sc = (jnp.asarray(a) for a in host(theta, reservation_data))
    point = KKTPoint(x, mu, active, _kkt.Scales(sc[0], sc[1]), reservation_data)
    problem = _template(spec.participants, spec.conditioning, theta, reservation_data)
    y = _evaluate(point, problem, _table(spec.participants, num))["y"]
    y = jnp.where(status == 0, y, jnp.nan)
    out = OptimalContract(y[:num], y[num:2 * num], y[2 * num], y[2 * num + 1], status)
    return out, (point, flags, theta)


def _backward(spec: _Spec, residuals, cotangent):
    """w . dy/dtheta = w . Yt - (pinv(K)^T [Yx^T w; 0]) . J: one adjoint solve (pure JAX)."""
    point, flags, theta = residuals
    w = jnp.concatenate([cotangent.contributions, cotangent.rewards, cotangent.expected_value[None],
                         cotangent.expected_accuracy[None]])
    problem = _template(spec.participants, spec.conditioning, theta, point.reservation_data)
    ev = _evaluate(point, problem, _table(spec.participants, spec.num_types))
    adjoint = _pinv(ev["K"]).T @ jnp.concatenate([ev["Yx"].T @ w, jnp.zeros_like(point.multipliers)])
    grad = ev["Yt"].T @ w - ev["J"].T @ adjoint
    if spec.policy == "nan":
        # NaN where a one-sided derivative (flags False) meets a non-zero cotangent.
        bad = jnp.any((w != 0)[:, None] & ~flags, axis=0)
        grad = jnp.where(bad, jnp.nan, grad)
    return ravel_pytree(theta)[1](grad), jnp.zeros_like(point.reservation_data)


_reservation = jax.jit(reservation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _optimal(spec: _Spec, theta: Parameters, reservation_data):
    return _forward(spec, theta, reservation_data)[0]


_optimal.defvjp(_forward, _backward)


def optimal_contract(problem: ContractProblem, *, constraints: str = "simplified", nondifferentiable: str = "nan",
                     active_tol: float = 1e-8, **solver_options) -> OptimalContract:
    r"""The exact optimal contract as a differentiable JAX function of the problem's parameters.

    Forward: ``solve_exact`` on the host (``jax.pure_callback``; runs under ``jit``, and under
    ``vmap`` one problem at a time). Backward (``jax.custom_vjp``): the implicit derivative of the
    KKT conditions (``implicit_jacobian``'s linear algebra, adjoint form). The reservation
    utilities are recomputed from the parameters (``problem.reservation`` kernel) and differentiated
    by the envelope theorem, so ``problem.replace(costs=c)`` is the problem with costs c. Gradients
    with respect to probs are the free partials (no renormalization: ``problem.replace(probs=p)``
    evaluates the formulas at p as given).

    Args:
      problem: ``ContractProblem`` whose parameter leaves may be traced; N (``participants``) and the
        static fields must be concrete. Leaves are in canonical order, and so are the outputs and
        the gradients (they follow the pytree).
      constraints: constraint set of the exact solve, "simplified" or "full" (static: it fixes the
        shape of the KKT system). Where the solver finds the simplified set empty and falls back to
        the full one, the "simplified" forward pass returns status -1 (NaN): use "full" there.
      nondifferentiable: "nan" (default): gradient entries that are one-sided at this optimum and
        receive a non-zero cotangent are NaN; "keep": the active-set derivative regardless.
      **solver_options: passed to ``solve_exact`` (e.g. ``feasibility_tol``, ``kkt_tol``).

    Returns:
      ``OptimalContract``.

    jit, vmap: the forward pass is a host callback (``vmap`` runs it once per problem); the
    backward pass is pure JAX and batches. Forward mode (``jvp``, ``jacfwd``) is not defined.
    """
    if nondifferentiable not in POLICIES:
        raise ValueError(f"nondifferentiable must be one of {POLICIES}, got {nondifferentiable!r}")
    if constraints not in PARAMETERIZATIONS:
        raise ValueError(f"constraints must be one of {tuple(PARAMETERIZATIONS)}, got {constraints!r}")
    if jax.dtypes.canonicalize_dtype(np.float64) != np.float64:  # also sees a scoped jax.enable_x64(False)
        raise RuntimeError("optimal_contract needs float64: run it under jax.enable_x64(True) "
                           "(or jax.config.update('jax_enable_x64', True))")
    try:
        participants = int(np.asarray(problem.participants))
    except jax.errors.ConcretizationTypeError as err:
        raise ValueError("optimal_contract needs a concrete number of participants N (close over the problem "
                         "and differentiate its float leaves)") from err
    spec = _Spec(participants, problem.conditioning, problem.num_types, constraints, nondifferentiable,
                 float(active_tol), tuple(sorted(solver_options.items())))
    theta = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), parameters(problem))
    # m^res is not differentiated (envelope theorem): no derivative of the golden-section search.
    _, m_res = _reservation(*jax.lax.stop_gradient((theta.accuracy, theta.valuation, theta.costs, theta.quality)))
    return _optimal(spec, theta, jax.lax.stop_gradient(m_res))


def optimal_value(problem: ContractProblem, **options) -> jnp.ndarray:
    """E_n[v(a(n . q m*))] of the exact optimal contract, differentiable (``optimal_contract``)."""
    return optimal_contract(problem, **options).expected_value
