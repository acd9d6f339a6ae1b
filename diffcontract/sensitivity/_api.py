"""Host-side entry points: ``sensitivities`` (the ``Sensitivities`` record), ``envelope``,
``kkt_point`` and ``contract``. Float64 is scoped here, as ``solve`` scopes it."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.flatten_util import ravel_pytree

from .. import _precision
from ..problem import ContractProblem
from ..solvers import _kkt, solve_exact
from ._analysis import (Analysis, SensitivityError, analyze, canonical, constraint_names, constraint_units,
                        direction_flags, host_eval, locate, table)
from ._system import OUTPUT_NAMES, KKTPoint, Parameters, constraint_set

PROBS_CONVENTIONS = ("tangent", "free")
ORDERS = ("input", "canonical")
POLICIES = ("nan", "keep")


def converged(problem, solution, solver_options):
    """``solution``, or ``solve_exact`` of the canonical problem when None; raises unless it converged."""
    if solution is None:
        # The canonical copy (identity type order) shares the solver's compilations across orders.
        solution = solve_exact(canonical(problem), **solver_options)
    if not solution.succeeded:
        raise SensitivityError(f"the solution did not converge (status {solution.status_name}); "
                               "sensitivities need a KKT point")
    return solution


def kkt_point(problem: ContractProblem, solution=None, *, active_tol: float = 1e-8, **solver_options) -> KKTPoint:
    """The polished ``KKTPoint`` of a solution (host side), the input of ``implicit_jacobian``.

    Args:
      problem: ``ContractProblem``.
      solution: converged ``Solution`` (any method; its (m, t) in the variables of its
        ``constraints``); default ``solve_exact``.
      active_tol: scaled slack under which a constraint is active (see ``sensitivities``).

    Returns:
      ``KKTPoint`` in canonical order, with interior multipliers (package docstring).
    """
    with _precision.float64():
        solution = converged(problem, solution, solver_options)
        problem = canonical(problem)
        return locate(problem, solution, active_tol, table(problem.num_participants, problem.num_types))[0]


def contract(point: KKTPoint, problem: ContractProblem) -> tuple[np.ndarray, np.ndarray]:
    """(m, t) of a ``KKTPoint`` (canonical order): (I,) units of data and (I,) money."""
    with _precision.float64():
        problem = canonical(problem)
        x = jnp.asarray(point.x)
        m, t = _kkt.decode(x, problem, point.scales, constraint_set(x, problem))
        return np.asarray(m), np.asarray(t)


def _directions(size: int, num: int, probs: str) -> np.ndarray:
    """(P, P) columns: unit vectors, with the probs block replaced by e_k - 1/I when "tangent"."""
    dirs = np.eye(size)
    if probs == "tangent":
        dirs[:num, :num] -= 1.0 / num
    return dirs


def _positions(type_order: tuple, order: str) -> np.ndarray:
    """pos[k]: where canonical type k goes in ``order`` (``to_input_order`` writes out[pos] = values)."""
    return np.asarray(type_order) if order == "input" else np.arange(len(type_order))


def _as_parameters(an: Analysis, block: np.ndarray, pos: np.ndarray) -> Parameters:
    """(..., P) flat derivatives -> ``Parameters`` with leading shape (...), the type axis of p, c, q in
    the requested order."""
    rows = jax.vmap(an.unravel)(jnp.asarray(block.reshape((-1, block.shape[-1]))))
    stacked = jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(block.shape[:-1] + a.shape[1:]), rows)
    inverse = np.argsort(pos)  # out[..., pos[k]] = v[..., k]
    return stacked._replace(**{name: np.take(getattr(stacked, name), inverse, axis=-1)
                               for name in ("probs", "costs", "quality")})


def _outputs(mat: np.ndarray, pos: np.ndarray) -> dict:
    """Rows of ``mat`` (Y, ...) by output name: (I, ...) in the order ``pos`` for m and t, else one row."""
    num, inverse = pos.size, np.argsort(pos)
    return dict(zip(OUTPUT_NAMES, (mat[:num][inverse], mat[num:2 * num][inverse], mat[2 * num], mat[2 * num + 1])))


@struct.dataclass
class Sensitivities:
    """Derivatives of a solved contract with respect to its problem's parameters.

    Type order: ``order`` ("input": the order the types were given to ``ContractProblem``, as
    ``ContractProblem.to_input_order``; "canonical": costliest first) on both the output axis
    (whose m or t) and the parameter axis (whose p, c or q).

    Attributes:
      contributions: (I,) m (units of data) of the (polished) solution.
      rewards: (I,) t (money) of the (polished) solution.
      expected_value: () E[v(a)], money.
      expected_accuracy: () E[a].
      d_contributions: ``Parameters`` with leaves of shape (I,) + parameter shape: d m_i / d theta
        (units of data per unit of theta).
      d_rewards: the same for d t_i / d theta (money per unit of theta).
      d_expected_value: ``Parameters`` shaped like the parameters.
      d_expected_accuracy: ``Parameters`` shaped like the parameters.
      differentiable: dict output name -> ``Parameters`` of bools: False where the derivative is
        only one-sided (package docstring); those entries are NaN unless ``nondifferentiable="keep"``.
      strictly_complementary: every active constraint has a positive multiplier in some multiplier
        vector.
      linearly_independent: the active constraints' gradients are independent (LICQ: unique
        multipliers).
      active_constraints: names (``constraint_names``: canonical type numbers).
      weakly_active: names of active constraints with a zero multiplier.
      multipliers: dict name -> multiplier of each active constraint, d E[a] per money of
        budget/IR/IC residual or per unit of data of monotone/m >= 0 residual (an interior choice
        when not unique).
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
        uniform shift of all costs at a pool held with zero multipliers, docs/model.md scenario 1).

        Args:
          direction: ``Parameters`` in this record's type order (curve leaves as numbers); its probs
            are taken as given (free coordinates): make them sum to zero to stay on the simplex.

        Returns:
          (values, ok): dicts output name -> (I,) array for contributions/rewards (this record's
          order) or a float.
        """
        an = self.analysis
        pos = _positions(an.input_order, self.order)
        d = direction._replace(**{name: np.asarray(getattr(direction, name), np.float64)[pos]  # canonical order
                                  for name in ("probs", "costs", "quality")})
        d = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), d)
        col = np.asarray(ravel_pytree(d)[0])[:, None]
        return _outputs((an.D @ col)[:, 0], pos), _outputs(direction_flags(an, col)[:, 0], pos)


def check_options(**options) -> None:
    allowed = {"probs": PROBS_CONVENTIONS, "order": ORDERS, "nondifferentiable": POLICIES}
    for name, value in options.items():
        if value not in allowed[name]:
            raise ValueError(f"{name} must be one of {allowed[name]}, got {value!r}")


def _active_multipliers(an: Analysis, constraints: str) -> dict:
    """Active constraint name -> multiplier in unscaled units (``constraint_units``)."""
    names = constraint_names(an.problem.num_types, constraints)
    # In numpy: ``_kkt.multiplier_record`` holds the same units, but XLA's division differs by an ulp.
    mu = np.asarray(an.point.multipliers) / constraint_units(an.problem.num_types, constraints, an.point.scales)
    return {names[j]: float(mu[j]) for j in np.flatnonzero(np.asarray(an.point.active))}


def sensitivities(problem: ContractProblem, solution=None, *, probs: str = "tangent", order: str = "input",
                  nondifferentiable: str = "nan", active_tol: float = 1e-8, **solver_options) -> Sensitivities:
    r"""Derivatives of the optimal contract (m, t) and optimal value (E[v(a)], E[a]) with respect to
    the problem's parameters, by the implicit function theorem on the KKT conditions of the
    solution's active set (package docstring: pooled optima, flags, conventions).

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
    check_options(probs=probs, order=order, nondifferentiable=nondifferentiable)
    with _precision.float64():
        solution = converged(problem, solution, solver_options)
        an = analyze(problem, solution, active_tol)
    num = problem.num_types
    dirs = _directions(an.theta_flat.size, num, probs)
    D, ok = an.D @ dirs, direction_flags(an, dirs)
    if nondifferentiable == "nan":
        D = np.where(ok, D, np.nan)
    pos = _positions(problem.type_order, order)
    derivative = lambda mat: {name: _as_parameters(an, v, pos) for name, v in _outputs(mat, pos).items()}  # noqa: E731
    values = _outputs(an.y, pos)
    constraints = constraint_set(an.point.x, an.problem)
    names = constraint_names(num, constraints)
    return Sensitivities(
        contributions=values["contributions"], rewards=values["rewards"],
        expected_value=float(values["expected_value"]), expected_accuracy=float(values["expected_accuracy"]),
        **{f"d_{name}": value for name, value in derivative(D).items()}, differentiable=derivative(ok),
        strictly_complementary=not an.weak, linearly_independent=an.licq,
        active_constraints=tuple(names[j] for j in np.flatnonzero(np.asarray(an.point.active))),
        weakly_active=tuple(names[j] for j in an.weak), multipliers=_active_multipliers(an, constraints),
        probs_convention=probs, order=order, constraints=solution.constraints, analysis=an)


def envelope(problem: ContractProblem, solution=None, *, probs: str = "tangent", order: str = "input",
             active_tol: float = 1e-8, **solver_options) -> Parameters:
    r"""Gradient of the optimal objective E[a]* by the envelope theorem: -dL/dtheta at fixed (x, mu).

    L = F - mu . H with F = -E[a] (package docstring); multipliers are the interior choice of
    ``sensitivities`` (every multiplier vector gives the same value where the derivative exists).
    Must equal ``sensitivities(...).d_expected_accuracy``; no linear system is solved.

    Returns:
      ``Parameters`` in the given type order and probs convention (as ``sensitivities``).
    """
    with _precision.float64():
        solution = converged(problem, solution, solver_options)
        an = analyze(problem, solution, active_tol)
        # E[a] = -F, so dE[a]*/dtheta = -dL/dtheta (L = F - mu . H) at the KKT point.
        flat = -host_eval(an.point, an.problem, an.table)["dL"]
    dirs = _directions(flat.size, problem.num_types, probs)
    return _as_parameters(an, flat @ dirs, _positions(problem.type_order, order))
