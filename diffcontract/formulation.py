r"""The first-moment problem as pure functions of the contract (MODEL.md "First-moment problem").

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


def binding_rewards(m: jnp.ndarray, costs: jnp.ndarray, reservation_utility: jnp.ndarray) -> jnp.ndarray:
    r"""Rewards t of the simplified constraint set, as a linear function of m.

    IR of the costliest type binds and every local downward IC binds:
    :math:`t_1 = f_1 + c_1 m_1`, :math:`t_{i+1} = t_i + c_{i+1}(m_{i+1} - m_i)`.

    Args:
      m: (I,) contributions. costs: (I,) c. reservation_utility: (I,) f.
    Returns:
      (I,) t, money.
    """
    increments = costs[1:] * jnp.diff(m)
    return reservation_utility[0] + costs[0] * m[0] + jnp.concatenate([jnp.zeros((1,), m.dtype), jnp.cumsum(increments)])


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


def max_violation(res: Residuals) -> jnp.ndarray:
    """Largest violation max(0, -g) over budget, IR, IC and m, t >= 0 (money; m in data units).

    Monotonicity is not a constraint of the original first-moment problem (IC implies it), so it
    is not counted here.
    """
    g = jnp.concatenate([res.budget, res.ir, jnp.ravel(res.ic), res.nonnegative])
    return jnp.maximum(-jnp.min(g), 0.0)
