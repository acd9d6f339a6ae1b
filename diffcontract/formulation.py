r"""The first-moment problem as pure functions of the contract (docs/model.md "The first-moment problem").

Symbols (canonical type order, costliest first): m (I,) data contributions (units of data);
t (I,) promised expected reward values t_i = E[v(r_i) | i] (money); tbar (I,) the most that can be
promised, E[v(a(n . q m)) | i]; c (I,) costs; f (I,) reservation utilities.

Every constraint is written as a residual g >= 0 (satisfied) so that ``min(g)`` is the worst
violation and ``max(0, -g)`` is the violation:

* budget:  g = tbar_i - t_i
* IR:      g = t_i - c_i m_i - f_i
* IC:      g_ij = (t_i - c_i m_i) - (t_j - c_i m_j)   (type i does not prefer item j)
* monotone (simplified formulation): g = m_{i+1} - m_i
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from ._jit import compiled_when_eager


def _path_lengths(costs: jnp.ndarray, m: jnp.ndarray) -> jnp.ndarray:
    """(I,) sum_{k<i} costs_k (m_{k+1} - m_k), money: the reward increments of a chain of local ICs.

    Args:
      costs: (I-1,) the cost that prices each step.  m: (I,) contributions, units of data.
    """
    return jnp.concatenate([jnp.zeros((1,), m.dtype), jnp.cumsum(costs * jnp.diff(m))])


@compiled_when_eager
def binding_rewards(m: jnp.ndarray, costs: jnp.ndarray, reservation_utility: jnp.ndarray) -> jnp.ndarray:
    r"""Rewards t of the simplified constraint set, as a linear function of m.

    IR of the costliest type binds and every local downward IC binds:
    :math:`t_1 = f_1 + c_1 m_1`, :math:`t_{i+1} = t_i + c_{i+1}(m_{i+1} - m_i)`.

    Args:
      m: (I,) contributions. costs: (I,) c. reservation_utility: (I,) f.
    Returns:
      (I,) t, money.
    """
    return reservation_utility[0] + costs[0] * m[0] + _path_lengths(costs[1:], m)


@compiled_when_eager
def least_rewards(m: jnp.ndarray, costs: jnp.ndarray, reservation_utility: jnp.ndarray) -> jnp.ndarray:
    r"""The smallest rewards t that make the menu (m, t) satisfy every IR and every IC (full set).

    For monotone m (m_1 <= ... <= m_I, costs sorted c_1 > ... > c_I) the local ICs imply all the
    others (single crossing), so the IR and IC constraints are the difference constraints
    :math:`t_i \ge L_i = f_i + c_i m_i`, :math:`t_{k+1} \ge t_k + c_{k+1}(m_{k+1} - m_k)` (downward)
    and :math:`t_k \ge t_{k+1} - c_k(m_{k+1} - m_k)` (upward). Their least solution is the longest
    path from any lower bound,

    .. math:: t_i = \max\Big(\max_{j \le i} (L_j - P^\downarrow_j) + P^\downarrow_i,\;
                             \max_{j \ge i} (L_j - P^\uparrow_j) + P^\uparrow_i\Big),

    with :math:`P^\downarrow_i = \sum_{k<i} c_{k+1}(m_{k+1} - m_k)` and
    :math:`P^\uparrow_i = \sum_{k<i} c_k(m_{k+1} - m_k)` (a forward and a reverse cumulative max).
    So contributions m admit a feasible menu of the full first-moment problem iff
    :math:`\bar t(m) \ge` ``least_rewards(m)``. Where the simplified set's rewards
    (``binding_rewards``) satisfy every IR, the two coincide.

    Args:
      m: (I,) monotone contributions, units of data. costs: (I,) c. reservation_utility: (I,) f.
    Returns:
      (I,) t, money.
    """
    lower = reservation_utility + costs * m
    down, up = _path_lengths(costs[1:], m), _path_lengths(costs[:-1], m)
    from_below = lax.cummax(lower - down) + down
    from_above = lax.cummax(lower - up, reverse=True) + up
    return jnp.maximum(from_below, from_above)


def utilities(m: jnp.ndarray, t: jnp.ndarray, costs: jnp.ndarray) -> jnp.ndarray:
    """(I,) u_i = t_i - c_i m_i: each type's expected utility from its own menu item, money."""
    return t - costs * m


class Residuals(NamedTuple):
    """Constraint residuals g >= 0 (money units, except ``monotone`` in units of data).

    budget: (I,); ir: (I,); ic: (I, I) with a zero diagonal; monotone: (I-1,); nonnegative: (2I,)
    for m >= 0 and t >= 0.
    """

    budget: jnp.ndarray
    ir: jnp.ndarray
    ic: jnp.ndarray
    monotone: jnp.ndarray
    nonnegative: jnp.ndarray


@compiled_when_eager
def residuals(m, t, reward_bounds, costs, reservation_utility) -> Residuals:
    """All constraint residuals of a menu (m, t) given tbar(m)."""
    u = utilities(m, t, costs)
    # ic[i, j] = u_i - (t_j - c_i m_j)
    ic = u[:, None] - (t[None, :] - costs[:, None] * m[None, :])
    return Residuals(
        budget=reward_bounds - t,
        ir=u - reservation_utility,
        ic=ic,
        monotone=jnp.diff(m),
        nonnegative=jnp.concatenate([m, t]),
    )


@compiled_when_eager
def max_violation(res: Residuals) -> jnp.ndarray:
    """Largest violation max(0, -g) over budget, IR, IC and m, t >= 0 (money; m in data units).

    Monotonicity is not a constraint of the original first-moment problem (IC implies it), so it
    is not counted here.
    """
    g = jnp.concatenate([res.budget, res.ir, jnp.ravel(res.ic), res.nonnegative])
    return jnp.maximum(-jnp.min(g), 0.0)
