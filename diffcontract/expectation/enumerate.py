r"""Exact expectations over the multinomial type counts by vectorized enumeration.

All outcomes n = (n_1..n_I) with sum N are listed once (host, numpy) and shipped to the device
as a (K, I) array, K = C(N+I-1, I-1). Probabilities are computed in log space,

.. math:: \log P(n) = \log N! - \sum_i \log n_i! + \sum_i n_i \log p_i,

so they are exact to rounding for any N, and differentiable in p. The conditional weights of
docs/model.md ("The first-moment problem") are columns of a (K, I) matrix:

* truncated: :math:`w_i(n) = P(n)\,1[n_i \ge 1] / (1 - (1 - p_i)^N)`;
* interim:   :math:`w_i(n) = P(n)\, n_i / (N p_i)`.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from .._jit import compiled_when_eager


def _lex_combinations(slots: int, size: int) -> np.ndarray:
    """Every ``size``-subset of {0..slots-1} as increasing rows, in lexicographic order. O(C(slots, size) size).

    Built from the last column back: step k lists the k-subsets of {size-k .. slots-1} (the only
    possible last k elements). Those of step k-1 whose elements all exceed x are a contiguous *tail*
    of its lexicographic list (length C(slots-1-x, k-1)), so prefixing each admissible x to its tail
    is one vectorized gather per column; the tables grow geometrically up to the final one.
    """
    table = np.zeros((1, 0), dtype=np.int32)
    for k in range(1, size + 1):
        firsts = np.arange(size - k, slots - k + 1)
        lengths = np.array([math.comb(slots - 1 - int(x), k - 1) for x in firsts], dtype=np.int64)
        block_starts = np.cumsum(lengths) - lengths
        # Row r of block x is row (len(table) - lengths[x]) + (r - block_starts[x]) of the previous table.
        shift = np.repeat(len(table) - lengths - block_starts, lengths)
        rows = np.arange(int(lengths.sum()), dtype=np.int64) + shift
        table = np.concatenate([np.repeat(firsts, lengths).astype(np.int32)[:, None], table[rows]], axis=1)
    return table


@functools.lru_cache(maxsize=512)
def _outcomes_cached(participants: int, num_types: int) -> np.ndarray:
    # Stars and bars: n is a placement of I - 1 bars among N + I - 1 slots; lexicographic order of the
    # bars is lexicographic order of n, and n_j is the gap between consecutive bars.
    bars = _lex_combinations(participants + num_types - 1, num_types - 1)
    edges = np.pad(bars, ((0, 0), (1, 1)), constant_values=((0, 0), (-1, participants + num_types - 1)))
    out = np.ascontiguousarray(np.diff(edges, axis=1) - 1, dtype=np.int32)
    out.setflags(write=False)
    return out


def enumerate_outcomes(participants: int, num_types: int) -> np.ndarray:
    """Every type-count vector n with sum ``participants``.

    Returns:
      (K, I) int32 array, K = C(N + I - 1, I - 1), rows in lexicographic order of (n_1, ..., n_I).
    """
    if participants < 0 or num_types < 1:
        raise ValueError(f"need participants >= 0 and num_types >= 1, got {participants}, {num_types}")
    return _outcomes_cached(int(participants), int(num_types))


def num_outcomes(participants: int, num_types: int) -> int:
    """C(N + I - 1, I - 1)."""
    return math.comb(participants + num_types - 1, num_types - 1)


@compiled_when_eager
def log_pmf(counts: jnp.ndarray, probs: jnp.ndarray, participants) -> jnp.ndarray:
    """log Multinomial(N, p) mass of each row of ``counts`` ((K, I) -> (K,)). Jittable."""
    counts = jnp.asarray(counts, dtype=jnp.result_type(probs))
    log_coef = gammaln(participants + 1.0) - jnp.sum(gammaln(counts + 1.0), axis=-1)
    return log_coef + counts @ jnp.log(probs)


@compiled_when_eager(static_argnames=("conditioning",))
def conditional_weights(counts, probs, participants, conditioning: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Outcome probabilities and conditional weights.

    Args:
      counts: (K, I) outcomes.
      probs: (I,) type probabilities.
      participants: N (a Python int or a traced scalar).
      conditioning: "truncated" or "interim" (static).

    Returns:
      (prob, weights): (K,) P(n) and (K, I) w_i(n), each column summing to 1.
    """
    dtype = jnp.result_type(probs)
    counts = jnp.asarray(counts, dtype=dtype)
    participants = jnp.asarray(participants, dtype=dtype)
    prob = jnp.exp(log_pmf(counts, probs, participants))
    return prob, presence_weights(prob, counts, probs, participants, conditioning)


@compiled_when_eager(static_argnames=("conditioning",))
def presence_weights(scale, counts, probs, participants, conditioning: str) -> jnp.ndarray:
    """scale_k times the conditioning factor of "type i is present" (the one formula of every backend).

    truncated: 1[n_i >= 1] / P(n_i >= 1) with P(n_i >= 1) = 1 - (1 - p_i)^N (via expm1/log1p, precise
    for tiny p_i); interim: n_i / (N p_i).

    Args:
      scale: (K,) per-outcome multiplier (P(n) for a table, v(a) for Monte Carlo terms, ones).
      counts: (K, I) outcomes.  probs: (I,) p.  participants: N.  conditioning: "truncated" or "interim".
    Returns:
      (K, I) scale_k * factor_i(n_k).
    """
    if conditioning == "truncated":
        present = -jnp.expm1(participants * jnp.log1p(-probs))
        return scale[:, None] * (counts >= 1) / present[None, :]
    if conditioning == "interim":
        return scale[:, None] * counts / (participants * probs)[None, :]
    raise ValueError(f"conditioning must be 'truncated' or 'interim', got {conditioning!r}")
