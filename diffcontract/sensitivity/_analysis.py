"""Host side: locate the KKT point of a solution and analyze its degeneracies (numpy, scipy).

``locate`` polishes (x, mu) by Newton on the active set and picks interior multipliers by linear
programs; ``analyze`` solves the implicit system of the active set and of every pattern of
releasing weakly active constraints; ``direction_flags`` decides, per output and direction,
whether a derivative is two-sided (the package docstring explains the tests).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from scipy import optimize

from .._cache import short_passes
from ..expectation import OutcomeTable, outcome_table
from ..expectation.planner import pass_seconds
from ..problem import ContractProblem, value_unit, without_input_order
from ..solvers import _kkt
from ._system import RCOND, KKTPoint, evaluate, parameters

# Tolerances of the degeneracy tests, dimensionless (outputs per unit relative change of a
# parameter, divided by the output's magnitude): float64 KKT systems are solved to ~1e-12 here,
# a genuine kink or an incompatible active set shows up at O(1).
CONSISTENCY_TOL = 1e-7
ALTERNATIVE_TOL = 1e-7
WEAK_MULTIPLIER_TOL = 1e-7  # multipliers relative to ||grad F||_inf below this count as zero
MAX_WEAK_SUBSETS = 8  # all 2^|W| release patterns up to this many weakly active constraints
_RANK_TOL = 1e-10  # relative singular value under which active constraint gradients are dependent
_KKT_TOL = 1e-10  # stationarity and active residual a located point must reach (scaled units)
_NEWTON_STEPS = 30  # Newton steps per active set (quadratic convergence: a handful suffice)
_NEWTON_STEP_TOL = 1e-15  # relative step that ends the Newton iteration (rounding)
_VIOLATION_TOL = 1e-12  # an inactive constraint below -this after the polish joins the active set
_MULTIPLIER_CAP = 1e6  # bounds the LPs where the multiplier set is unbounded (MFCQ fails)
_MULTIPLIER_TOL = 1e-9  # negativity and stationarity residual allowed to unique multipliers (relative)
_TINY = 1e-300  # floors a norm that may be exactly 0


class SensitivityError(RuntimeError):
    """The solution is not a (converged) KKT point that the implicit function theorem applies to."""


def scales(problem) -> _kkt.Scales:
    """The scales of the KKT system: contributions by the largest m^res (at least 1), values by
    v(1) - v(0)."""
    m_scale = max(np.max(np.asarray(problem.reservation_data)), 1.0)
    return _kkt.Scales(np.float64(m_scale), np.float64(value_unit(problem)))


def canonical(problem: ContractProblem) -> ContractProblem:
    """Float64 leaves and identity type order, so jitted kernels are shared by every input order."""
    as64 = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), without_input_order(problem))
    return as64.replace(participants=np.asarray(problem.participants))


_cached_table = functools.lru_cache(maxsize=64)(outcome_table)  # numpy tables, kept on the host


def table(participants: int, num_types: int) -> OutcomeTable:
    """The (bucket-padded) enumeration table of (N, I) as device arrays (host-cached)."""
    # Padded to the shape ladder of ``bucket_length``: problems with nearby N share compilations.
    return jax.tree_util.tree_map(jnp.asarray, _cached_table(participants, num_types, length="bucket"))


def host_eval(point: KKTPoint, problem, tab) -> dict:
    """``evaluate`` with numpy results."""
    with short_passes(pass_seconds(tab.counts.size + tab.valid.size)):
        return {k: np.asarray(v) for k, v in evaluate(point, problem, tab).items()}


def constraint_names(num_types: int, constraints: str = "simplified") -> list[str]:
    """Names of the entries of H (canonical order, 1-based type numbers, costliest first).

    ``ic[i,j]``: type i does not prefer item j.  ``nonnegative``: m >= 0 (and t >= 0 when full).

    Args:
      num_types: I.  constraints: the constraint set, "simplified" or "full".

    Returns:
      nh names: 3I - 1 (simplified) or I^2 + 3I (full).
    """
    full = constraints == "full"
    names = [f"budget[{i + 1}]" for i in range(num_types)] + [f"ir[{i + 1}]" for i in range(1 - full, num_types)]
    if not full:
        return names + ["nonnegative[m1]"] + [f"monotone[{i + 1},{i + 2}]" for i in range(num_types - 1)]
    names += [f"ic[{i + 1},{j + 1}]" for i in range(num_types) for j in range(num_types) if i != j]
    return names + [f"nonnegative[{v}{i + 1}]" for v in "mt" for i in range(num_types)]


def constraint_units(num_types: int, constraints: str, sc: _kkt.Scales) -> np.ndarray:
    """(nh,) the unit of each entry of H: money (budget, IR, IC, t >= 0) or data (monotone, m >= 0)
    per unit of the scaled residual."""
    data = ("monotone", "nonnegative[m")
    return np.array([float(sc.data) if name.startswith(data) else float(sc.value)
                     for name in constraint_names(num_types, constraints)])


def interior_multipliers(jac_a, grad):
    """Multipliers of the active constraints: for each j, the largest mu_j >= 0 with J_A^T mu = grad.

    Args:
      jac_a: (k, nx) gradients of the k active constraints.  grad: (nx,) grad F.

    Returns:
      (mu_interior, largest): (k,) the average of the maximizers (positive wherever any
      multiplier vector is) and (k,) the largest attainable mu_j per constraint relative to
      ||grad||_inf (rows of J_A scaled to unit size); None if no non-negative multiplier exists.
    """
    k = jac_a.shape[0]
    norm = max(float(np.max(np.abs(grad))), _TINY)
    g = grad / norm
    if k == 0:
        return (np.zeros(0), np.zeros(0)) if np.max(np.abs(g)) <= _MULTIPLIER_TOL else None
    row_norm = np.maximum(np.max(np.abs(jac_a), axis=1), _TINY)
    A = (jac_a / row_norm[:, None]).T
    if np.linalg.matrix_rank(A, tol=_RANK_TOL) == k:  # independent (LICQ): the multipliers are unique
        mu, *_ = np.linalg.lstsq(A, g, rcond=None)
        if np.min(mu) < -_MULTIPLIER_TOL or np.max(np.abs(A @ mu - g)) > _MULTIPLIER_TOL:
            return None
        mu = np.maximum(mu, 0.0)
        return mu / row_norm * norm, mu
    sols = []  # row j: a multiplier vector with the largest mu_j
    for j in range(k):
        out = optimize.linprog(np.where(np.arange(k) == j, -1.0, 0.0), A_eq=A, b_eq=g,
                               bounds=[(0.0, _MULTIPLIER_CAP)] * k, method="highs")
        if out.status != 0:
            return None
        sols.append(out.x)
    return np.mean(sols, axis=0) / row_norm * norm, np.diagonal(np.array(sols)).copy()


def _newton(evaluate_at, x, active_tol: float, nh: int):
    """Newton on Phi = 0 with the active set {H <= active_tol} at x fixed, adding every constraint the
    polish violates.

    Args:
      evaluate_at: (x, mu, active) -> ``host_eval`` dict.  x: (nx,) start.  active_tol: scaled slack
      under which a constraint starts active.  nh: size of H.

    Returns:
      (x, mu, active, ev): the polished point, its multipliers (nh,), the active set and
      ``evaluate_at(x, mu, active)``.
    """
    num = x.size
    ev = evaluate_at(x, np.zeros(nh), np.zeros(nh, bool))  # its grad and jac_h give the first multipliers
    active = ev["h"] <= active_tol
    for _ in range(nh + 1):
        mu = np.zeros(nh)
        if active.any():
            mu[active] = np.linalg.lstsq(ev["jac_h"][active].T, ev["grad"], rcond=None)[0]
        z = np.concatenate([x, mu])
        for _ in range(_NEWTON_STEPS):  # least-squares steps: dependent active rows are fine
            ev = evaluate_at(z[:num], z[num:], active)
            delta = np.linalg.lstsq(ev["K"], -ev["phi"], rcond=None)[0]
            z = z + delta
            if np.max(np.abs(delta)) <= _NEWTON_STEP_TOL * (1.0 + np.max(np.abs(z))):
                break
        x, mu = z[:num], z[num:]
        ev = evaluate_at(x, mu, active)
        violated = (~active) & (ev["h"] < -_VIOLATION_TOL)
        if not violated.any():
            return x, mu, active, ev
        active = active | violated
    raise SensitivityError("no consistent active set found at the solution")


def locate(problem: ContractProblem, solution, active_tol: float, tab):
    """Polish (x, mu) by Newton on Phi = 0 with the active set {H <= active_tol} fixed (adding any
    constraint the polish violates), then pick interior multipliers by linear programs.

    Args:
      problem: canonical ``ContractProblem``.  solution: converged; its (m, t) and ``constraints``.
      active_tol: scaled slack under which a constraint is active.  tab: ``OutcomeTable``.

    Returns:
      (point, weak, licq): ``KKTPoint`` (in the variables of the solution's constraint set);
      indices of weakly active constraints (largest possible multiplier ~ 0); whether the active
      gradients are independent.
    """
    sc = scales(problem)
    res = np.asarray(problem.reservation_data, np.float64)
    constraints = "full" if getattr(solution, "constraints", "simplified") == "full" else "simplified"
    x = np.asarray(_kkt.encode(np.asarray(solution.contributions, np.float64), np.asarray(solution.rewards, np.float64),
                               sc, constraints))
    nh = len(constraint_names(problem.num_types, constraints))

    def point_at(x, mu, active):
        return KKTPoint(jnp.asarray(x), jnp.asarray(mu), jnp.asarray(active), sc, jnp.asarray(res))

    evaluate_at = lambda *z: host_eval(point_at(*z), problem, tab)  # noqa: E731
    x, mu, active, ev = _newton(evaluate_at, x, active_tol, nh)
    grad, jac_a, h = ev["grad"], ev["jac_h"][active], ev["h"]
    stationarity = np.max(np.abs(grad - jac_a.T @ mu[active])) / (1.0 + np.max(np.abs(grad)))
    infeasibility = np.max(np.abs(h[active]), initial=0.0)
    if not (stationarity <= _KKT_TOL and infeasibility <= _KKT_TOL):
        raise SensitivityError(f"the solution is not a KKT point on its active set (stationarity "
                               f"{stationarity:.1e}, active residual {infeasibility:.1e})")
    found = interior_multipliers(jac_a, grad)
    if found is None:
        raise SensitivityError("no non-negative KKT multipliers at the solution: not a local optimum")
    mu_a, largest = found
    mu = np.zeros(nh)
    mu[active] = mu_a
    weak = tuple(int(j) for j, v in zip(np.flatnonzero(active), largest) if v <= WEAK_MULTIPLIER_TOL)
    licq = not jac_a.size or bool(
        np.linalg.matrix_rank(jac_a, tol=_RANK_TOL * np.max(np.abs(jac_a))) == jac_a.shape[0])
    return point_at(x, mu, active), weak, licq


class Analysis(NamedTuple):
    """Host-side results of ``analyze`` (canonical order, flat parameters)."""

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


def _release_patterns(weak: tuple) -> list:
    """Every non-empty subset of the weakly active constraints, or (too many) each alone and all."""
    if len(weak) <= MAX_WEAK_SUBSETS:
        return [s for r in range(1, len(weak) + 1) for s in itertools.combinations(weak, r)]
    return [(j,) for j in weak] + [weak]


def analyze(problem: ContractProblem, solution, active_tol: float) -> Analysis:
    """Locate the KKT point, then solve the implicit system of its active set and of every pattern
    of releasing weakly active constraints (mu_j = 0 instead of H_j = 0).

    Args:
      problem: ``ContractProblem`` (any type order).  solution: converged.
      active_tol: as ``sensitivities``.

    Returns:
      ``Analysis``.
    """
    input_order, problem = problem.type_order, canonical(problem)
    tab = table(problem.num_participants, problem.num_types)
    point, weak, licq = locate(problem, solution, active_tol, tab)
    ev = host_eval(point, problem, tab)
    K, J, Yx, Yt = ev["K"], ev["J"], ev["Yx"], ev["Yt"]
    num = point.x.shape[-1]

    def solve(K_, J_):
        dz = -np.linalg.pinv(K_, rcond=RCOND) @ J_
        return Yt + Yx @ dz[:num], K_ @ dz + J_

    D, residual = solve(K, J)
    alternatives = []
    for pattern in _release_patterns(weak):
        K_, J_, rows = K.copy(), J.copy(), num + np.asarray(pattern)
        K_[rows], J_[rows] = 0.0, 0.0
        K_[rows, rows] = 1.0
        alternatives.append(solve(K_, J_)[0] - D)
    flat, unravel = ravel_pytree(parameters(problem))
    return Analysis(problem, tab, point, weak, licq, ev["y"], D, J, residual, alternatives, np.asarray(flat), unravel,
                    input_order)


def _output_scales(an: Analysis) -> np.ndarray:
    """Magnitude of each output (the largest |m| for every m_i, likewise t), floored above 0."""
    num = an.problem.num_types
    y = np.abs(an.y)
    blocks = [np.full(num, np.max(y[:num])), np.full(num, np.max(y[num:2 * num])), y[2 * num:]]
    return np.maximum(np.concatenate(blocks), _TINY)


def direction_flags(an: Analysis, directions: np.ndarray) -> np.ndarray:
    """(Y, Q) bool: is the derivative of output y along direction q (columns of ``directions``, flat
    parameter units) two-sided? Two tests (package docstring): the active set can persist (the
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
