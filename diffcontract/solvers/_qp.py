r"""A small dense convex QP solver (primal-dual interior point), jittable and vmappable.

Solves

.. math:: \min_d \tfrac12 d^\top W d + g^\top d \quad \text{s.t.} \quad A d \ge b

for a positive definite W (n, n) and A (m, n), the subproblem of the SQP polish (``_kkt.sqp_polish``).
Mehrotra's predictor-corrector on the slack form A d - s = b, s >= 0 with multipliers z >= 0
(Nocedal & Wright, *Numerical Optimization*, 2nd ed., Sec. 16.6): each iteration factors the
reduced system W + A^T (Z / S) A (n x n, Cholesky) once and solves it twice. A fixed number of
iterations (``lax.fori_loop``, so a vmapped batch does not wait on a while loop); an iteration
whose step would leave the interior or is not finite, or that starts with the complementarity
gap s.z / m below ``gap_floor``, keeps the iterate (the usual end: converged to rounding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def solve_qp(W, g, A, b, iterations: int = 30, gap_floor: float = 1e-14):
    """Solve the QP above: returns (d (n,), z (m,)), the minimizer and the constraints' multipliers.

    Args:
      W: (n, n) symmetric positive definite. g: (n,). A: (m, n). b: (m,).
      iterations: interior-point iterations (static). gap_floor: complementarity gap under which
        the iterate is kept (scaled units of the caller; the SQP's are O(1)).

    An infeasible QP (no d with A d >= b) ends at a point that violates some rows: the caller
    measures what it gets.
    """
    m = A.shape[0]
    dtype = W.dtype
    d = jnp.zeros(W.shape[:1], dtype)
    s = jnp.maximum(-b, 1.0)
    z = jnp.ones((m,), dtype)

    def max_step(v, dv):
        # Largest alpha in (0, 1] with v + alpha dv >= 0.
        return jnp.minimum(1.0, jnp.min(jnp.where(dv < 0, -v / dv, jnp.inf)))

    def body(_, carry):
        d, s, z = carry
        dual_residual = W @ d + g - A.T @ z
        primal_residual = A @ d - s - b
        gap = jnp.dot(s, z) / m
        scaling = z / s
        factor = jax.scipy.linalg.cho_factor(W + A.T @ (scaling[:, None] * A))

        def direction(target):
            # Newton step on (W d + g - A^T z, A d - s - b, s z - target) = 0.
            rhs = -dual_residual + A.T @ (-scaling * primal_residual + (target - s * z) / s)
            dd = jax.scipy.linalg.cho_solve(factor, rhs)
            ds = A @ dd + primal_residual
            return dd, ds, (target - s * z - z * ds) / s

        dd, ds, dz = direction(jnp.zeros((m,), dtype))  # predictor (affine scaling)
        affine_gap = jnp.dot(s + max_step(s, ds) * ds, z + max_step(z, dz) * dz) / m
        centering = jnp.clip((affine_gap / jnp.maximum(gap, 1e-300)) ** 3, 0.0, 1.0)
        dd, ds, dz = direction(centering * gap - ds * dz)  # corrector
        alpha = 0.99 * jnp.minimum(max_step(s, ds), max_step(z, dz))
        new = (d + alpha * dd, s + alpha * ds, z + alpha * dz)
        ok = (gap > gap_floor) & jnp.all(jnp.isfinite(new[0])) & jnp.all(new[1] > 0) & jnp.all(new[2] > 0)
        return tuple(jnp.where(ok, a, c) for a, c in zip(new, carry))

    d, _, z = jax.lax.fori_loop(0, iterations, body, (d, s, z))
    return d, z
