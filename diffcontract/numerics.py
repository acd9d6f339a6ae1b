r"""Small numerical routines shared by the package: one copy of each, pure, jittable and vmappable.

* 1-D searches with a fixed number of steps (``lax.fori_loop``, so a vmapped batch never waits on
  a while loop): ``golden_section_max`` (maximum of a unimodal function), ``regula_falsi`` (the
  boundary of a feasible set along a line, Illinois rule) and ``bisection`` (the boundary of a
  predicate). Each works elementwise on arrays of brackets, or on one bracket under ``vmap``.
* Projections: ``isotonic_regression`` onto the non-decreasing cone and
  ``project_monotone_nonnegative`` onto {0 <= x_1 <= ... <= x_n}. Pooling in the optimum (docs/model.md:
  adjacent types with equal m) is a face of that cone; projecting onto it exactly puts iterates
  *on* the face, so pooled types come out exactly equal rather than nearly separated.
* Small dense problems: ``solve_qp`` (convex QP with inequality constraints, interior point) and
  ``nonnegative_least_squares`` (FISTA).

Imports nothing from ``diffcontract``: it is the bottom layer, beside ``curves``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ._jit import compiled_when_eager

#: 1 / phi: a golden-section step keeps this fraction of its bracket.
GOLDEN_RATIO = (math.sqrt(5.0) - 1.0) / 2.0
#: The interior-point step goes this fraction of the way to the boundary of s, z > 0.
_FRACTION_TO_BOUNDARY = 0.99
_TINY = 1e-300  # guards a division by a gap or a norm that may be exactly 0


class GoldenSection(NamedTuple):
    """Result of ``golden_section_max``, each leaf shaped like the bracket.

    lower, upper: the final bracket.  argmax: the better of the last two points evaluated (inside
    the bracket).  maximum: fn(argmax).
    """

    lower: jnp.ndarray
    upper: jnp.ndarray
    argmax: jnp.ndarray
    maximum: jnp.ndarray


def _golden_points(lower, upper):
    """The two interior points of a golden-section bracket: (left, right), left <= right."""
    return upper - GOLDEN_RATIO * (upper - lower), lower + GOLDEN_RATIO * (upper - lower)


def golden_section_max(fn: Callable, lower, upper, steps: int, reuse: bool = True) -> GoldenSection:
    r"""Golden-section search for the maximum of a unimodal ``fn`` on [lower, upper] (Kiefer 1953).

    Each step keeps [lower, right] if fn(left) >= fn(right) (ties go left), else [left, upper],
    and so shrinks the bracket by ``GOLDEN_RATIO``.

    Args:
      fn: elementwise function, array shaped like the bracket -> array of the same shape.
      lower, upper: () or (...,) bracket ends (independent searches elementwise).
      steps: number of steps (static).
      reuse: True: one evaluation per step, the surviving interior point is reused. False: both
        interior points are recomputed from the bracket and evaluated at every step (two
        evaluations; the bracket then differs from the reused one by rounding only).

    Returns:
      ``GoldenSection`` (final bracket, best point evaluated and its value).
    """
    left, right = _golden_points(lower, upper)

    def step(_, state):
        lo, hi, left, f_left, right, f_right = state
        if not reuse:
            left, right = _golden_points(lo, hi)
            f_left, f_right = fn(left), fn(right)
        keep_left = f_left >= f_right  # the maximum is in [lo, right]
        lo, hi = jnp.where(keep_left, lo, left), jnp.where(keep_left, right, hi)
        if not reuse:
            return lo, hi, left, f_left, right, f_right
        inner, outer = _golden_points(lo, hi)
        probe = jnp.where(keep_left, inner, outer)
        f_probe = fn(probe)
        return (lo, hi, jnp.where(keep_left, probe, right), jnp.where(keep_left, f_probe, f_right),
                jnp.where(keep_left, left, probe), jnp.where(keep_left, f_left, f_probe))

    state = (lower, upper, left, fn(left), right, fn(right))
    lo, hi, left, f_left, right, f_right = jax.lax.fori_loop(0, steps, step, state)
    better = f_left >= f_right
    return GoldenSection(lo, hi, jnp.where(better, left, right), jnp.where(better, f_left, f_right))


class Bracket(NamedTuple):
    """A bracket [lower, upper] of ``regula_falsi``: lower feasible, upper not.

    lower, upper: () points.  f_lower, f_upper: (R,) residual vectors there.
    """

    lower: jnp.ndarray
    f_lower: jnp.ndarray
    upper: jnp.ndarray
    f_upper: jnp.ndarray


def regula_falsi(fn: Callable, lower, f_lower, upper, f_upper, steps: int) -> Bracket:
    r"""Regula falsi with the Illinois rule for the largest feasible point of [lower, upper].

    Feasible means every residual of ``fn`` is >= 0; ``lower`` is feasible and ``upper`` is not.
    The secant follows the residual most violated at ``upper``: where it crosses zero smoothly at
    the boundary this converges superlinearly (a residual that is 0 at every feasible point would
    carry no slope). A secant point not strictly inside the bracket (or not finite) is replaced by
    the midpoint. The Illinois rule (Dowell & Jarratt 1971) halves the residuals kept at an end
    that stays put twice running, so neither end sticks where the residual is convex or has a kink.

    Args:
      fn: () point -> (R,) residuals.
      lower, upper: () bracket ends, lower < upper.  f_lower, f_upper: (R,) fn at each end.
      steps: number of steps (static); one evaluation of ``fn`` each.

    Returns:
      ``Bracket`` after ``steps`` steps; its ``lower`` is the largest feasible point found.
    """

    def step(_, state):
        a, ra, b, rb, side = state  # side: +1 if the last step moved a, -1 if it moved b
        k = jnp.argmin(rb)
        sa, sb = ra[k], rb[k]
        width = b - a
        secant = a + sa * width / (sa - sb)
        inside = (sa >= 0.0) & (sb < 0.0) & jnp.isfinite(secant) & (secant > a) & (secant < b)
        c = jnp.where(inside, secant, a + 0.5 * width)
        rc = fn(c)
        feasible = jnp.min(rc) >= 0.0
        return (jnp.where(feasible, c, a), jnp.where(feasible, rc, jnp.where(side == -1, 0.5, 1.0) * ra),
                jnp.where(feasible, b, c), jnp.where(feasible, jnp.where(side == 1, 0.5, 1.0) * rb, rc),
                jnp.where(feasible, 1, -1))

    a, ra, b, rb, _ = jax.lax.fori_loop(0, steps, step, (lower, f_lower, upper, f_upper, jnp.asarray(0)))
    return Bracket(a, ra, b, rb)


def bisection(predicate: Callable, lower, upper, steps: int):
    """Bisection of a bracket on which ``predicate`` is True at ``lower`` and False at ``upper``.

    Args:
      predicate: elementwise function, array shaped like the bracket -> bool array.
      lower, upper: () or (...,) bracket ends (independent bisections elementwise).
      steps: number of halvings (static): the bracket ends (upper - lower) 2^-steps wide.

    Returns:
      (lower, upper): the final bracket; predicate is True at ``lower`` and False at ``upper``
      wherever it was so at the start.
    """

    def step(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        ok = predicate(mid)
        return jnp.where(ok, mid, a), jnp.where(ok, b, mid)

    return jax.lax.fori_loop(0, steps, step, (lower, upper))


@compiled_when_eager
def isotonic_regression(y: jnp.ndarray) -> jnp.ndarray:
    r"""Projection of y onto the non-decreasing cone {x_1 <= ... <= x_n} (isotonic regression).

    Uses the min-max formula of the pool-adjacent-violators solution,

    .. math:: x_i = \max_{j \le i} \min_{k \ge i} \operatorname{mean}(y_j, \dots, y_k),

    evaluated for all (i, j, k) at once: O(n^3) work with no data-dependent control flow, which is
    exact, jittable and vmappable, and cheap for the type counts this is used with (n <= ~50).

    Args:
      y: (n,) a point (``vmap`` for a batch).

    Returns:
      (n,) its projection, non-decreasing.
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


@compiled_when_eager
def project_monotone_nonnegative(y: jnp.ndarray) -> jnp.ndarray:
    """Projection onto {0 <= x_1 <= ... <= x_n}: isotonic regression, then clipping at 0.

    Clipping the isotonic fit at a lower bound gives the bounded isotonic fit (the bound only
    merges a prefix of blocks into the bound), so this is the exact projection.

    Args:
      y: (n,) a point (``vmap`` for a batch).

    Returns:
      (n,) its projection.
    """
    return jnp.maximum(isotonic_regression(y), 0.0)


def solve_qp(W, g, A, b, iterations: int = 30, gap_floor: float = 1e-14):
    r"""min_d 1/2 d^T W d + g^T d subject to A d >= b, by a primal-dual interior point method.

    Mehrotra's predictor-corrector on the slack form A d - s = b, s >= 0 with multipliers z >= 0
    (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Sec. 16.6): each iteration factors the
    reduced system W + A^T (Z / S) A (n x n, Cholesky) once and solves it twice. A fixed number of
    iterations; an iteration whose step would leave the interior or is not finite, or that starts
    with the complementarity gap s.z / m below ``gap_floor``, keeps the iterate (the usual end:
    converged to rounding). An infeasible QP (no d with A d >= b) ends at a point that violates
    some rows: the caller measures what it gets.

    Args:
      W: (n, n) symmetric positive definite.  g: (n,).  A: (m, n).  b: (m,).
      iterations: interior-point iterations (static).
      gap_floor: complementarity gap under which the iterate is kept (the caller's units; the SQP
        polish's are O(1)).

    Returns:
      (d, z): (n,) the minimizer and (m,) the constraints' multipliers.
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
        centering = jnp.clip((affine_gap / jnp.maximum(gap, _TINY)) ** 3, 0.0, 1.0)
        dd, ds, dz = direction(centering * gap - ds * dz)  # corrector
        alpha = _FRACTION_TO_BOUNDARY * jnp.minimum(max_step(s, ds), max_step(z, dz))
        new = (d + alpha * dd, s + alpha * ds, z + alpha * dz)
        ok = (gap > gap_floor) & jnp.all(jnp.isfinite(new[0])) & jnp.all(new[1] > 0) & jnp.all(new[2] > 0)
        return tuple(jnp.where(ok, a, c) for a, c in zip(new, carry))

    d, _, z = jax.lax.fori_loop(0, iterations, body, (d, s, z))
    return d, z


def nonnegative_least_squares(A, b, x0, iterations: int = 400):
    r"""min_{x >= 0} ||A x - b||^2 by accelerated projected gradient (FISTA; Beck & Teboulle 2009).

    Used for the KKT multipliers of a degenerate active set (e.g. all pairwise IC of a pool), where
    the least-squares multipliers are not unique and the minimum-norm ones may be negative.

    Args:
      A: (m, n).  b: (m,).  x0: (n,) start (clipped at 0).
      iterations: number of steps (static); step size 1 / ||A||_2^2.

    Returns:
      (n,) x >= 0.
    """
    lipschitz = jnp.maximum(jnp.linalg.norm(A, 2) ** 2, 1e-30)

    def body(_, carry):
        x, y, t = carry
        x_new = jnp.maximum(y - (A.T @ (A @ y - b)) / lipschitz, 0.0)
        t_new = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
        return x_new, x_new + ((t - 1.0) / t_new) * (x_new - x), t_new

    x0 = jnp.maximum(x0, 0.0)
    x, _, _ = jax.lax.fori_loop(0, iterations, body, (x0, x0, jnp.asarray(1.0, A.dtype)))
    return x


__all__ = ["GOLDEN_RATIO", "Bracket", "GoldenSection", "bisection", "golden_section_max", "isotonic_regression",
           "nonnegative_least_squares", "project_monotone_nonnegative", "regula_falsi", "solve_qp"]
