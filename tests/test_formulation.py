"""The first-moment problem's pure functions (formulation.py): rewards, residuals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

from diffcontract.formulation import binding_rewards, least_rewards, residuals


def _random_menu(rng):
    num = int(rng.integers(2, 7))
    costs = np.sort(10.0 ** rng.uniform(-3.0, 0.0, num))[::-1]
    f = rng.uniform(0.0, 50.0, num) * (rng.random(num) < 0.6)
    m = np.sort(rng.uniform(0.0, 1000.0, num))
    m[: int(rng.integers(0, num))] = 0.0  # some costly types excluded
    return m, costs, f


def _least_rewards_by_lp(m, costs, f):
    """min sum(t) s.t. every IR and every pairwise IC (docs/model.md), by linear programming."""
    num = m.size
    rows, bounds = [], []
    for i in range(num):
        rows.append(-np.eye(num)[i])
        bounds.append(-(f[i] + costs[i] * m[i]))  # t_i >= f_i + c_i m_i
        for j in range(num):
            if j != i:
                rows.append(np.eye(num)[j] - np.eye(num)[i])
                bounds.append(-costs[i] * (m[i] - m[j]))  # t_i - c_i m_i >= t_j - c_i m_j
    lp = linprog(np.ones(num), A_ub=np.array(rows), b_ub=np.array(bounds), bounds=[(None, None)] * num,
                 method="highs")
    assert lp.status == 0
    return lp.x


@pytest.mark.parametrize("seed", range(40))
def test_least_rewards_is_the_least_ir_and_ic_feasible_reward(seed):
    m, costs, f = _random_menu(np.random.default_rng(seed))
    with jax.enable_x64(True):
        t = np.asarray(least_rewards(jnp.asarray(m), jnp.asarray(costs), jnp.asarray(f)))
        res = residuals(jnp.asarray(m), jnp.asarray(t), jnp.full(m.shape, jnp.inf), jnp.asarray(costs), jnp.asarray(f))
    # float64 sums of ~1e3-money terms; HiGHS solves the LP to ~1e-9.
    np.testing.assert_allclose(t, _least_rewards_by_lp(m, costs, f), rtol=1e-9, atol=1e-7)
    assert np.asarray(res.ir).min() >= -1e-12 and np.asarray(res.ic).min() >= -1e-12  # every IR and IC, to rounding


@pytest.mark.parametrize("seed", range(10))
def test_least_rewards_equal_the_binding_rewards_where_those_satisfy_every_ir(seed):
    m, costs, _ = _random_menu(np.random.default_rng(seed))
    f = np.zeros_like(m)  # then the simplified set's rewards satisfy every IR
    with jax.enable_x64(True):
        args = (jnp.asarray(m), jnp.asarray(costs), jnp.asarray(f))
        np.testing.assert_allclose(least_rewards(*args), binding_rewards(*args), rtol=1e-13, atol=1e-12)


def test_least_rewards_jit_and_vmap():
    menus = [_random_menu(np.random.default_rng(seed)) for seed in range(3)]
    menus = [(m[:2], c[:2], f[:2]) for m, c, f in menus]
    stacked = [jnp.asarray(np.stack(a)) for a in zip(*menus)]
    batched = jax.jit(jax.vmap(least_rewards))(*stacked)
    for k, (m, c, f) in enumerate(menus):
        np.testing.assert_allclose(batched[k], least_rewards(jnp.asarray(m), jnp.asarray(c), jnp.asarray(f)),
                                   rtol=1e-6)  # float32 by default: jit vs eager rounding
