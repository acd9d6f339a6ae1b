"""The common interface of expectation backends."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp

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


def enumeration_tables(problem):
    """Host-side constants of the enumeration backend: the (K, I) outcome array."""
    return enumerate_outcomes(problem.participants, problem.num_types)


def moments(m: jnp.ndarray, problem, counts: jnp.ndarray) -> Moments:
    """Exact moments by enumeration.

    Args:
      m: (I,) contributions, units of data (canonical type order).
      problem: ``ContractProblem`` (its leaves may be traced).
      counts: (K, I) outcomes from ``enumerate_outcomes``.
    """
    prob, weights = conditional_weights(counts, problem.probs, problem.participants, problem.conditioning)
    pooled = jnp.asarray(counts, dtype=prob.dtype) @ (problem.quality * m)
    acc = problem.accuracy(pooled)
    val = problem.valuation(acc)
    return Moments(prob @ acc, prob @ val, val @ weights)


def make_moments(problem) -> Callable[[jnp.ndarray, object], Moments]:
    """A function ``(m, problem) -> Moments`` with the outcome table bound (for the given shapes)."""
    counts = jnp.asarray(enumeration_tables(problem))

    def fn(m, prob):
        return moments(m, prob, counts)

    return fn
