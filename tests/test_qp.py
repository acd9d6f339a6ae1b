"""The interior-point QP solver (solvers/_qp.py) against scipy, under jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from diffcontract.solvers._qp import solve_qp


def _random_qp(seed, n=5, m=12):
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(n, n))
    W = root @ root.T + 0.1 * np.eye(n)
    g = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    inside = rng.normal(size=n)
    b = A @ inside - rng.uniform(0.0, 1.0, m)  # feasible: A inside >= b
    return W, g, A, b, inside


@pytest.mark.parametrize("seed", range(8))
def test_solve_qp_matches_scipy(seed):
    W, g, A, b, inside = _random_qp(seed)
    with jax.enable_x64(True):
        d, z = (np.asarray(a) for a in jax.jit(solve_qp)(*(jnp.asarray(a) for a in (W, g, A, b))))
    ref = minimize(lambda x: 0.5 * x @ W @ x + g @ x, inside, jac=lambda x: W @ x + g, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: A @ x - b, "jac": lambda x: A}],
                   options={"ftol": 1e-15, "maxiter": 500})
    # SLSQP often ends "positive directional derivative" at the optimum: compare the points, and
    # check the QP's own KKT conditions below (a strictly convex QP has one minimizer).
    np.testing.assert_allclose(d, ref.x, rtol=1e-7, atol=1e-8)  # SLSQP's accuracy, float64
    # KKT of the QP: stationarity, feasibility, dual feasibility and complementarity.
    np.testing.assert_allclose(W @ d + g, A.T @ z, atol=1e-9)
    assert np.min(A @ d - b) >= -1e-10 and np.min(z) >= 0.0
    assert np.max(np.abs(z * (A @ d - b))) <= 1e-10


def test_solve_qp_vmaps_like_a_loop():
    qps = [_random_qp(seed)[:4] for seed in range(4)]
    with jax.enable_x64(True):
        stacked = [jnp.asarray(np.stack(a)) for a in zip(*qps)]
        batched, _ = jax.jit(jax.vmap(solve_qp))(*stacked)
        for k, qp in enumerate(qps):
            single, _ = solve_qp(*(jnp.asarray(a) for a in qp))
            np.testing.assert_allclose(batched[k], single, rtol=1e-10, atol=1e-12)  # same arithmetic, float64
