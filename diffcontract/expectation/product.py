r"""Exact sums over the outcomes as products of two half-tables (the chunked backend's path for N <= 48).

Split the types into A = {1..h} and B = {h+1..I}. An outcome n is a pair (a, b) of half-outcomes
with |a| = k and |b| = N - k, and everything the moments need factorizes over the halves:

* the law: :math:`P(n) = N!\, \alpha(a)\, \beta(b)` with :math:`\alpha(a) = \prod_{i \in A} p_i^{a_i} / a_i!`
  (and :math:`\beta` alike; N! is shared between them in log space, so neither overflows);
* the pooled data: :math:`s = a \cdot (qm)_A + b \cdot (qm)_B`, an outer sum;
* the conditioning factor of type i (``presence_weights``: 1[n_i >= 1] / P(n_i >= 1), or
  n_i / (N p_i)) depends on a alone for i in A, on b alone for i in B.

So for each k the values g(s) on the grid A_k x B_{N-k} are one outer sum and one elementwise curve
evaluation (``S``), and every moment and every entry of its Jacobian in m is a matrix product of
that grid with (|A_k|, .) and (|B_k|, .) factors; with F_A the factors of the types in A and
D = d v(a(s)) / ds on the grid,

.. math:: \bar t_A = (F_A \circ \alpha)^\top V \beta, \qquad
          \partial \bar t_A / \partial m_B = (F_A \circ \alpha)^\top D\, (B \circ \beta)\, \mathrm{diag}(q_B),

and the other blocks alike. The K outcomes are visited once each, with one curve evaluation and a
few fused multiply-adds apiece: no unranking, no per-outcome log-factorials, and the (I, I)
Jacobian is GEMMs instead of a per-outcome outer product. Each k is one ``lax.scan`` over equal
pieces of A_k's rows (so no grid exceeds a cell budget); the N + 1 scans have different static
shapes and are unrolled in one ``jit``, which is why this path is taken only up to
``PRODUCT_MAX_PARTICIPANTS``; the unranking path serves larger N.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ._interface import curve_values, moment_sums_zeros
from .enumerate import enumerate_outcomes, presence_weights

PRODUCT_MAX_PARTICIPANTS = 48  # N + 1 blocks unrolled in one jit: compile time grows with N
PRODUCT_MIN_TYPES = 4  # below this the unranking is a few integer operations per outcome anyway


@functools.lru_cache(maxsize=64)
def half_blocks(participants: int, num_types: int, max_cells: int) -> tuple:
    """The blocks of the split, every outcome in exactly one: for each k = 0..N, (A pieces, valid, B).

    A_k are the compositions of k into h = I // 2 parts and B the compositions of N - k into I - h
    parts. A_k is cut into pieces of equal row count, so that no piece's grid exceeds
    ``max_cells`` (but always at least one row), stacked as (P, rows, h) int32 with a (P, rows) bool
    mask (the last piece padded with invalid rows); the pieces of one k are then one ``lax.scan``.
    """
    split = num_types // 2
    blocks = []
    for k in range(participants + 1):
        rows_a = enumerate_outcomes(k, split)
        rows_b = enumerate_outcomes(participants - k, num_types - split)
        step = min(max(max_cells // len(rows_b), 1), len(rows_a))
        pieces = -(-len(rows_a) // step)
        padded = np.zeros((pieces * step, split), np.int32)
        padded[: len(rows_a)] = rows_a
        valid = np.arange(pieces * step) < len(rows_a)
        blocks.append((padded.reshape(pieces, step, split), valid.reshape(pieces, step), rows_b))
    return tuple(blocks)


def _log_half_law(rows, log_p, half_log_factorial_n):
    """log(N!^(1/2) prod_i p_i^{n_i} / n_i!) of each row: half of the multinomial law's log."""
    rows = jnp.asarray(rows, log_p.dtype)
    return half_log_factorial_n + rows @ log_p - jnp.sum(jax.scipy.special.gammaln(rows + 1.0), axis=1)


def _block_sums(rows_a, valid_a, rows_b, split: int, n: int, m, problem, with_jacobian: bool):
    """One piece's contribution to the sums of ``product_sums`` (module docstring); N = ``n`` static.

    rows_a: (R, h) counts of the piece (traced), valid_a: (R,) False on padding rows; rows_b: (|B|, I - h).
    """
    dtype = jnp.result_type(m, problem.probs)
    half = 0.5 * math.lgamma(n + 1.0)
    log_p = jnp.log(problem.probs)
    qm = problem.quality * m
    a, b = jnp.asarray(rows_a, dtype), jnp.asarray(rows_b, dtype)
    alpha = jnp.where(valid_a, jnp.exp(_log_half_law(rows_a, log_p[:split], half)), 0.0)
    beta = jnp.exp(_log_half_law(rows_b, log_p[split:], half))
    f_a = presence_weights(alpha, a, problem.probs[:split], n, problem.conditioning)  # (|A|, h) alpha * factor
    f_b = presence_weights(beta, b, problem.probs[split:], n, problem.conditioning)
    acc, val, dacc, dv = curve_values(problem, (a @ qm[:split])[:, None] + (b @ qm[split:])[None, :], with_jacobian)
    val_beta, alpha_val = val @ beta, alpha @ val
    out = [alpha @ acc @ beta, alpha @ val_beta, jnp.concatenate([f_a.T @ val_beta, f_b.T @ alpha_val])]
    if with_jacobian:
        q_a, q_b = problem.quality[:split], problem.quality[split:]
        a_alpha, b_beta = a * alpha[:, None], b * beta[:, None]

        def gradient(grid):  # d/dm of alpha^T grid-valued sums: (I,)
            return jnp.concatenate([(a_alpha.T @ (grid @ beta)) * q_a, (b_beta.T @ (alpha @ grid)) * q_b])

        dv_beta, alpha_dv = dv @ beta, alpha @ dv
        top = jnp.concatenate([(f_a.T @ (a * dv_beta[:, None])) * q_a[None, :], (f_a.T @ dv @ b_beta) * q_b[None, :]],
                              axis=1)
        bottom = jnp.concatenate([(f_b.T @ dv.T @ a_alpha) * q_a[None, :],
                                  (f_b.T @ (b * alpha_dv[:, None])) * q_b[None, :]], axis=1)
        out += [gradient(dacc), gradient(dv), jnp.concatenate([top, bottom], axis=0)]
    return out


def product_sums(participants: int, num_types: int, max_cells: int, m, problem, with_jacobian: bool) -> tuple:
    """E[a], E[v], tbar (I,) and, with ``with_jacobian``, their Jacobians in m ((I,), (I,), (I, I)).

    The same sums as the chunked backend's scan over unranked chunks (module docstring); jittable,
    N and I static.
    """
    split, num = num_types // 2, int(num_types)
    total = moment_sums_zeros(num, with_jacobian, jnp.result_type(m, problem.probs))
    for pieces, valid, rows_b in half_blocks(int(participants), num, int(max_cells)):

        def body(carry, piece, rows_b=rows_b):
            part = _block_sums(piece[0], piece[1], rows_b, split, int(participants), m, problem, with_jacobian)
            return [c + p for c, p in zip(carry, part)], None

        total = jax.lax.scan(body, total, (jnp.asarray(pieces), jnp.asarray(valid)))[0]
    return tuple(total)


def uses_product(participants: int, num_types: int, devices: int) -> bool:
    """Whether the chunked backend sums by half-tables (one device, 4 <= I, N <= 48)."""
    return devices == 1 and num_types >= PRODUCT_MIN_TYPES and participants <= PRODUCT_MAX_PARTICIPANTS

