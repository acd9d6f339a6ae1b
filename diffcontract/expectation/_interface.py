"""The common interface of expectation backends."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from .enumerate import conditional_weights, enumerate_outcomes


class Moments(NamedTuple):
    """Expectations of a contract's pooled model.

    expected_accuracy: () E_n[a(n . q m)].
    expected_value: () E_n[v(a(n . q m))], money.
    reward_bounds: (I,) tbar_i(m) = E[v(a(n . q m)) | i], money (MODEL.md "First-moment problem").
    """

    expected_accuracy: jnp.ndarray
    expected_value: jnp.ndarray
    reward_bounds: jnp.ndarray


class OutcomeTable(NamedTuple):
    """Outcomes of the enumeration backend.

    counts: (K, I) type counts n (float dtype, exact small integers).
    valid: (K,) bool; False marks padding rows (a table padded to a batch's largest N).
    prob, weights: optional precomputed (K,) P(n) and (K, I) conditional weights w_i(n) of one
      problem (``with_weights``). Solvers attach them once, so the lgamma-heavy multinomial law is
      not recomputed in every iteration; ``None`` means "compute from the problem".
    """

    counts: jnp.ndarray
    valid: jnp.ndarray
    prob: jnp.ndarray | None = None
    weights: jnp.ndarray | None = None


def bucket_length(num_outcomes: int) -> int:
    """A padded table length >= ``num_outcomes`` from a coarse ladder (4 sizes per power of 2, >= 16).

    Compiled solvers are specialized on the table's shape; padding to this ladder lets problems
    with different N (or I) share one compilation at the cost of at most 25 % padding rows.
    """
    k = max(int(num_outcomes), 16)
    step = 2 ** max(int(np.floor(np.log2(k))) - 2, 0)
    return int(-(-k // step) * step)


def outcome_table(participants: int, num_types: int, length: int | str | None = None) -> OutcomeTable:
    """The outcome table for (N, I), optionally padded with invalid rows to ``length``.

    ``length="bucket"`` pads to ``bucket_length`` (shared compilations across N).
    """
    counts = enumerate_outcomes(participants, num_types).astype(np.float64)
    valid = np.ones(len(counts), dtype=bool)
    if length == "bucket":
        length = bucket_length(len(counts))
    if length is not None:
        if length < len(counts):
            raise ValueError(f"length {length} is shorter than the {len(counts)} outcomes of N={participants}")
        pad = length - len(counts)
        counts = np.concatenate([counts, np.zeros((pad, num_types))])
        valid = np.concatenate([valid, np.zeros(pad, dtype=bool)])
    return OutcomeTable(counts, valid)


def outcome_weights(problem, table: OutcomeTable) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(K,) P(n) and (K, I) conditional weights w_i(n), zero on padding rows."""
    if table.prob is not None:
        return table.prob, table.weights
    prob, weights = conditional_weights(table.counts, problem.probs, problem.participants, problem.conditioning)
    valid = jnp.asarray(table.valid)
    return jnp.where(valid, prob, 0.0), jnp.where(valid[:, None], weights, 0.0)


def with_weights(problem, table: OutcomeTable) -> OutcomeTable:
    """``table`` with the problem's P(n) and w_i(n) attached (jittable; differentiable in p).

    Other backends (objects with ``prepare``) precompute their own per-problem data instead.
    """
    if not isinstance(table, OutcomeTable) and hasattr(table, "prepare"):
        return table.prepare(problem)
    prob, weights = outcome_weights(problem, table._replace(prob=None, weights=None))
    return table._replace(prob=prob, weights=weights)


def moments(m: jnp.ndarray, problem, table) -> Moments:
    """Exact moments by enumeration.

    Args:
      m: (I,) contributions, units of data (canonical type order).
      problem: ``ContractProblem`` (its leaves may be traced).
      table: ``OutcomeTable`` (or a bare (K, I) counts array, all rows valid), or any other backend
        object with a ``moments(m, problem)`` method (``ChunkedEnumeration``, ``LatticeConvolution``,
        ``MonteCarlo``): solvers pass it through unchanged, so every backend works with every solver.
    """
    if hasattr(table, "moments") and not isinstance(table, OutcomeTable):
        return table.moments(m, problem)
    if not isinstance(table, OutcomeTable):
        table = OutcomeTable(table, jnp.ones(jnp.shape(table)[0], dtype=bool))
    prob, weights = outcome_weights(problem, table)
    pooled = jnp.asarray(table.counts, dtype=prob.dtype) @ (problem.quality * m)
    acc = problem.accuracy(pooled)
    val = problem.valuation(acc)
    return Moments(prob @ acc, prob @ val, val @ weights)
