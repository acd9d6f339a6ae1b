r"""A duality-gap bound for the first-moment problem where it is concave (docs/model.md "The first-moment problem").

Write the problem as: maximize :math:`F(x) = E_n[a(n \cdot q m)]` over x = (m, t) subject to
:math:`g(x) \ge 0` (budget :math:`\bar t_i(m) - t_i`, IR, pairwise IC) and m, t >= 0.

**Where it is concave.** Every outcome pools all N participants, so
:math:`n \cdot q m \ge N \min_i q_i m_i`. On the region

.. math:: R = \{ m : N \min_i q_i m_i \ge x_c \}

where a is concave on :math:`[x_c, \infty)` and v is concave and non-decreasing, F is concave
(a concave function of a linear map, averaged) and so is every :math:`\bar t_i` (v o a is concave);
IR and IC are linear. So for any multipliers :math:`\lambda \ge 0` the Lagrangian
:math:`L = F + \lambda \cdot g` is concave on R and, for every feasible x in R,

.. math:: F(x) \le L(x) \le L(x^*) + \nabla L(x^*) \cdot (x - x^*)
          \le F(x^*) + \lambda \cdot g(x^*) + \sum_k \max\big(r_k (u_k - x^*_k),\; r_k (l_k - x^*_k)\big),

with :math:`r = \nabla L(x^*)` and [l, u] a box holding every feasible x in R:
:math:`x_c / (N q_i) \le m_i \le (v(1) - f_i) / c_i` (IR and budget give
:math:`c_i m_i \le t_i - f_i \le \bar t_i \le v(1)`) and :math:`0 \le t_i \le v(1)`. The right-hand
side minus F(x*) is the **gap bound**: no feasible contract in R has a higher expected accuracy than
the solution's by more than it. It holds for *any* point x* and any lambda >= 0 (even a poor
point; the bound is then large). Lambda is chosen to minimize the bound, a small linear program.

**What is numerical.** Concavity of a and v is checked on grids (a' non-increasing and a'' <= 0 at
every point of a 4,000-point log grid over the range of pooled data the box allows; v likewise
on [0, 1]), not proven between grid points; the curves shipped here are concave on an interval
[x_c, inf), which such a grid locates. Gradients come from JAX in float64.

**Where it does not apply** (``duality_gap_bound`` returns None): v not concave; a not concave on
the data range of the solution (``N min_i q_i m*_i < x_c``, e.g. SGB before its inflection or a
sigmoid curve); a non-finite point. Contracts outside R (some type contributing so little that
an outcome falls in a's convex part) are not covered by the bound.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from .._jit import jit
from .. import _precision
from ..expectation import enumerate_outcomes
from ..solvers import _kkt
from ._record import load_contract

GRID_SIZE = 4000


class DualityGapBound(NamedTuple):
    """A bound on the first-moment problem's optimality gap (accuracy units, see module docstring).

    gap: upper bound on max{E[a] : feasible contract in R} - E[a](solution); >= 0 for a feasible point.
    upper_bound: E[a](solution) + gap.   expected_accuracy: E[a](solution).
    region_min_data: x_c; the bound covers every feasible contract with N min_i q_i m_i >= x_c.
    multipliers: dict "budget" (I,), "ir" (I,), "ic" (I, I) (zero diagonal), per unit of money.
    stationarity: ``max |dL/dx|`` at the solution, scaled units (m / max m, t / (v(1) - v(0))).
    complementarity: lambda . g(x*) (accuracy units).
    """

    gap: float
    upper_bound: float
    expected_accuracy: float
    region_min_data: float
    stationarity: float
    complementarity: float
    multipliers: dict

    def to_dict(self) -> dict:
        """JSON-ready (the multipliers as nested lists)."""
        return {**self._asdict(), "multipliers": {k: np.asarray(v).tolist() for k, v in self.multipliers.items()}}


@jit
def _curve_derivatives(curve, x):
    slope = jax.grad(curve)
    return jax.vmap(slope)(x), jax.vmap(jax.grad(slope))(x)


def _derivatives(curve, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a'(x), a''(x)) in float64 by automatic differentiation (one compile per curve kind)."""
    with _precision.float64():
        return tuple(np.asarray(d) for d in _curve_derivatives(curve, jnp.asarray(x, jnp.float64)))


@jit
def _lagrangian_parts(x, problem, counts, m_scale, v_scale):
    """E[a], its gradient, the constraints g >= 0 and their Jacobian at x = (m / m_scale, t / v_scale).

    g = (budget, IR, off-diagonal IC) / v_scale (dimensionless, O(1)): the full set's G (``_kkt``).
    """
    args = (problem, counts, _kkt.Scales(m_scale, v_scale), "full")
    f, grad = jax.value_and_grad(lambda z: -_kkt.objective(z, *args))(x)
    constraints = lambda z: _kkt.general_constraints(z, *args)  # noqa: E731
    return f, grad, constraints(x), jax.jacfwd(constraints)(x)


def _concave_from(x: np.ndarray, d1: np.ndarray, d2: np.ndarray) -> int | None:
    """Index of the first grid point from which the curve is concave to the end of the grid, or None.

    Concave on the grid: the slope never rises between neighbours (this catches kinks such as the
    clip of SGB at 0, where a'' is 0 on both sides) and a'' <= 0. Rounding allowance: a rise of the
    slope below 1e-9 of its size, and a'' below 1e-9 |a'| / x, count as flat.
    """
    scale = np.maximum(np.abs(d1), np.abs(np.roll(d1, -1)))
    rises = np.append(d1[1:] - d1[:-1] > 1e-9 * scale[:-1] + 1e-300, False)  # the last point has no right neighbour
    bends_up = d2 > 1e-9 * np.abs(d1) / np.maximum(x, 1e-300) + 1e-300
    bad = np.flatnonzero(rises | bends_up | ~np.isfinite(d1) | ~np.isfinite(d2))
    start = int(bad[-1]) + 1 if bad.size else 0
    return start if start < x.size else None


def concavity_threshold(problem, data_max: float) -> tuple[float | None, str]:
    """x_c such that a is concave on [x_c, data_max] and v is concave, checked on grids.

    Returns:
      (x_c, reason): x_c = 0.0 when a is concave from 0; None with the reason when v is not concave
      on [0, 1] or a is not concave on the top of the range.
    """
    r = np.linspace(0.0, 1.0, 201)
    dv1, dv2 = _derivatives(problem.valuation, r)
    if _concave_from(r, dv1, dv2) != 0:
        return None, "the valuation v is not concave on [0, 1]"
    if np.any(dv1 < 0):
        return None, "the valuation v is not non-decreasing"
    x = np.concatenate([[0.0], np.geomspace(1e-6, max(data_max, 1e-3), GRID_SIZE - 1)])
    da1, da2 = _derivatives(problem.accuracy, x)
    start = _concave_from(x, da1, da2)
    if start is None:
        return None, f"the accuracy curve is not concave near the largest pooled data {data_max:.6g}"
    return float(x[start]), ""


def _bound_for(lam, grad_f, jac, g, lower, upper, x):
    """(gap bound, dL/dx) for multipliers ``lam`` >= 0 over the box [lower, upper] (module docstring)."""
    r = grad_f + jac.T @ lam
    return float(lam @ g + np.sum(np.maximum(r * (upper - x), r * (lower - x)))), r


def duality_gap_bound(solution: Any) -> DualityGapBound | None:
    """The duality-gap bound of a solved contract where the problem is concave, else None.

    Args:
      solution: ``Solution`` or its JSON record.

    Returns:
      ``DualityGapBound`` (see the module docstring for the statement and where it applies), or
      None where v is not concave or a is not concave over the solution's pooled data.
    """
    bound, _ = duality_gap_report(solution)
    return bound


def duality_gap_report(solution: Any) -> tuple[DualityGapBound | None, str]:
    """``duality_gap_bound`` and, when it is None, the reason."""
    contract = load_contract(solution)
    problem = contract.problem
    N, num = problem.num_participants, problem.num_types
    c, q, f = (np.asarray(x, np.float64) for x in (problem.costs, problem.quality, problem.reservation_utility))
    with _precision.float64():
        v0, v1 = (float(x) for x in np.asarray(problem.valuation(jnp.asarray([0.0, 1.0], jnp.float64))))
    m_upper = np.maximum((v1 - f) / c, 0.0)
    x_c, reason = concavity_threshold(problem, float(N * np.max(q * m_upper)))
    if x_c is None:
        return None, reason
    least = N * float(np.min(q * contract.m))
    if least < x_c:
        return None, (f"the solution pools as little as N min_i q_i m_i = {least:.6g} units of data, below "
                      f"x_c = {x_c:.6g} where the accuracy curve becomes concave")

    m_scale, v_scale = max(float(np.max(contract.m)), 1.0), v1 - v0
    x_np = np.concatenate([contract.m / m_scale, contract.t / v_scale])
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        counts = jnp.asarray(enumerate_outcomes(N, num), jnp.float64)
        parts = _lagrangian_parts(jnp.asarray(x_np), problem64, counts, m_scale, v_scale)
        f_star, grad_f, g, jac = (np.asarray(p, dtype=np.float64) for p in parts)
    f_star = float(f_star)
    if not (np.all(np.isfinite(grad_f)) and np.all(np.isfinite(jac)) and np.all(np.isfinite(g))):
        return None, "non-finite derivatives at the solution"
    lower = np.concatenate([x_c / (N * q) / m_scale, np.maximum(f + c * x_c / (N * q), 0.0) / v_scale])
    upper = np.maximum(np.concatenate([m_upper / m_scale, np.full(num, v1 / v_scale)]), lower)

    # Choose lambda >= 0 minimizing the bound: an LP in (lambda, s) with s_k >= r_k (u_k - x_k) and
    # s_k >= r_k (l_k - x_k), r = grad_f + J^T lambda, minimizing g . lambda + sum s.
    ng, nx = g.size, x_np.size
    du, dl = upper - x_np, lower - x_np
    a_ub = np.block([[jac.T * du[:, None], -np.eye(nx)], [jac.T * dl[:, None], -np.eye(nx)]])
    b_ub = np.concatenate([-grad_f * du, -grad_f * dl])
    lp = optimize.linprog(np.concatenate([g, np.ones(nx)]), A_ub=a_ub, b_ub=b_ub,
                          bounds=[(0.0, 1e6)] * ng + [(None, None)] * nx, method="highs")
    candidates = [np.zeros(ng)]
    if lp.status == 0:
        candidates.append(np.maximum(lp.x[:ng], 0.0))
    # Any lambda >= 0 gives a valid bound; recompute it in float64 for each candidate, keep the least.
    bounds = [_bound_for(lam, grad_f, jac, g, lower, upper, x_np) + (lam,) for lam in candidates]
    gap, r, lam = min(bounds, key=lambda b: b[0])
    lam_money = lam / v_scale  # multipliers per unit of money residual
    ic_mult = np.zeros((num, num))
    ic_mult[~np.eye(num, dtype=bool)] = lam_money[2 * num:]
    return DualityGapBound(
        gap=gap, upper_bound=f_star + gap, expected_accuracy=f_star, region_min_data=x_c,
        multipliers={"budget": lam_money[:num], "ir": lam_money[num:2 * num], "ic": ic_mult},
        stationarity=float(np.max(np.abs(r))), complementarity=float(lam @ g),
    ), ""
