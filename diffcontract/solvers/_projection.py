"""Exact Euclidean projections used by the first-order solvers.

Pooling in the optimum (MODEL.md: adjacent types with equal m) is a face of the monotone cone
{0 <= m_1 <= ... <= m_I}; projecting onto that cone exactly puts iterates *on* the face, so pooled
types come out exactly equal rather than nearly separated.
"""

from __future__ import annotations

import jax.numpy as jnp


def isotonic_regression(y: jnp.ndarray) -> jnp.ndarray:
    r"""Projection of y (n,) onto the non-decreasing cone {x_1 <= ... <= x_n} (isotonic regression).

    Uses the min-max formula of the pool-adjacent-violators solution,

    .. math:: x_i = \max_{j \le i} \min_{k \ge i} \operatorname{mean}(y_j, \dots, y_k),

    evaluated for all (i, j, k) at once: O(n^3) work with no data-dependent control flow, which is
    exact, jittable and vmappable, and cheap for the type counts this is used with (n <= ~50).
    """
    n = y.shape[-1]
    csum = jnp.concatenate([jnp.zeros(y.shape[:-1] + (1,), y.dtype), jnp.cumsum(y, axis=-1)], axis=-1)
    idx = jnp.arange(n)
    j, k = idx[:, None], idx[None, :]
    length = jnp.maximum(k - j + 1, 1).astype(y.dtype)
    means = (csum[..., 1:][..., None, :] - csum[..., :-1][..., :, None]) / length  # means[j, k], j <= k
    i = idx[:, None, None]
    allowed = (j[None] <= i) & (k[None] >= i)  # (i, j, k)
    big = jnp.asarray(jnp.finfo(y.dtype).max, y.dtype)
    inner = jnp.min(jnp.where(allowed, means[..., None, :, :], big), axis=-1)  # min over k -> (i, j)
    j_le_i = idx[None, :] <= idx[:, None]  # (i, j)
    return jnp.max(jnp.where(j_le_i, inner, -big), axis=-1)


def project_monotone_nonnegative(y: jnp.ndarray) -> jnp.ndarray:
    """Projection onto {0 <= x_1 <= ... <= x_n}: isotonic regression, then clipping at 0.

    Clipping the isotonic fit at a lower bound gives the bounded isotonic fit (the bound only
    merges a prefix of blocks into the bound), so this is the exact projection.
    """
    return jnp.maximum(isotonic_regression(y), 0.0)
