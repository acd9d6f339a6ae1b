r"""A feasible starting contract for every solver: the best "exclude-then-pool" menu.

The candidates are m = (0, ..., 0, m0, ..., m0): the j costliest types contribute nothing (they
get t = f_1, excluded from the data pool) and the others pool at a common m0, with the rewards
of the simplified constraint set (IR_1 and the local downward ICs binding). Such a menu satisfies
IC and monotonicity by construction; for each j the largest m0 that also meets every budget and IR
constraint is found by a geometric grid plus bisection, and the candidate with the largest
E[a(n . q m)] is returned.

Pooling everyone (j = 0) is the natural start, but when it is infeasible for every m0 > 0 (high
costs, f = 0) a start at m = 0 would sit in the flat zero region of curves such as SGB, a KKT
point of no value; excluding the costliest types then finds the contracts worth having.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..expectation import moments
from ..formulation import binding_rewards, residuals

_GRID_POINTS = 128
_BISECTIONS = 50


def _menu(m0, excluded, num):
    return jnp.where(jnp.arange(num) >= excluded, m0, 0.0)


def _slack(m0, excluded, problem, table):
    """min over budget and IR residuals of the candidate (money): >= 0 iff feasible."""
    m = _menu(m0, excluded, problem.costs.shape[0])
    t = binding_rewards(m, problem.costs, problem.reservation_utility)
    res = residuals(m, t, moments(m, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
    return jnp.minimum(jnp.min(res.budget), jnp.min(res.ir))


def exclusion_pooled_start(problem, table):
    """The best feasible exclude-then-pool contract (jittable, vmappable).

    Args:
      problem: ``ContractProblem``.  table: ``OutcomeTable``.

    Returns:
      (m, found): (I,) contributions (units of data) and a bool, False when no candidate with
      m0 > 0 is feasible (then m is the monotone envelope of the reservation data m^res, a
      reasonable but infeasible start).
    """
    num = problem.costs.shape[0]
    m_ref = jnp.maximum(jnp.max(problem.reservation_data), 1.0)
    grid = m_ref * jnp.geomspace(1e-4, 1e4, _GRID_POINTS)

    def largest_m0(excluded):
        ok = jax.vmap(lambda m0: _slack(m0, excluded, problem, table))(grid) >= 0.0
        last = jnp.max(jnp.where(ok, jnp.arange(_GRID_POINTS), -1))
        lo = jnp.where(last >= 0, grid[jnp.maximum(last, 0)], 0.0)
        hi = jnp.where(last >= 0, grid[jnp.minimum(last + 1, _GRID_POINTS - 1)], 0.0)

        def halve(_, bounds):
            a, b = bounds
            mid = 0.5 * (a + b)
            feasible = _slack(mid, excluded, problem, table) >= 0.0
            return jnp.where(feasible, mid, a), jnp.where(feasible, b, mid)

        lo, _ = jax.lax.fori_loop(0, _BISECTIONS, halve, (lo, hi))
        m = _menu(lo, excluded, num)
        return m, last >= 0, moments(m, problem, table).expected_accuracy

    menus, found, value = jax.vmap(largest_m0)(jnp.arange(num))
    best = jnp.argmax(jnp.where(found, value, -jnp.inf))
    fallback = jax.lax.cummax(problem.reservation_data)
    any_found = jnp.any(found)
    return jnp.where(any_found, menus[best], fallback), any_found
