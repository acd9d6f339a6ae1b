r"""Monte Carlo expectations with common random numbers, unbiased, with standard errors.

Outcomes are sampled as n ~ Multinomial(N, p) by sequential binomials
(n_1 ~ Bin(N, p_1), n_2 ~ Bin(N - n_1, p_2 / (1 - p_1)), ...), from a fixed key: every evaluation
at every m sees the same outcomes (common random numbers), so an optimizer works on one smooth
sample-average problem. With S samples n^(s), the unbiased estimators are

* E[g(n . q m)] ~ (1/S) sum_s g(n^(s) . q m);
* truncated: tbar_i ~ (1/S) sum_s v(a(n^(s) . q m)) 1[n_i^(s) >= 1] / (1 - (1 - p_i)^N) (exact
  normalizer);
* interim: tbar_i ~ (1/S) sum_s v(a(n^(s) . q m)) n_i^(s) / (N p_i).

Standard errors are the sample standard deviations of those summands over sqrt(S).
``MonteCarlo.estimate`` streams samples in chunks (memory O(chunk I)) for very large S;
``prepare`` draws the S outcomes once as an ``OutcomeTable`` for the solvers (derivatives in m are
exact derivatives of the sample average; p enters only through the sampling and the weights, so
derivatives in p are not provided: ``prepare`` stops them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from ._interface import Moments, OutcomeTable, curve_values, moments
from .enumerate import presence_weights


def sample_outcomes(key, probs: jnp.ndarray, participants: int, samples: int) -> jnp.ndarray:
    """(samples, I) multinomial counts by sequential conditional binomials (float dtype of probs).

    One ``lax.scan`` over the types (one compiled binomial sampler, whatever I).
    """
    dtype = jnp.result_type(probs)
    probs = jax.lax.stop_gradient(probs)
    # Share of type i among the types not yet drawn: p_i / (p_i + ... + p_I).
    tail = jnp.cumsum(probs[::-1])[::-1]
    shares = jnp.clip(probs[:-1] / jnp.maximum(tail[:-1], 1e-300), 0.0, 1.0)
    keys = jax.random.split(key, probs.shape[0] - 1)

    def draw(remaining, key_share):
        key_i, share = key_share
        n_i = jnp.minimum(jnp.round(jax.random.binomial(key_i, remaining, share, dtype=dtype)), remaining)
        return remaining - n_i, n_i

    remaining, cols = jax.lax.scan(draw, jnp.full((samples,), float(participants), dtype), (keys, shares))
    return jnp.concatenate([cols.T, remaining[:, None]], axis=1)


def _summands(counts, m, problem):
    """Per-sample summands (acc (S,), val (S,), tbar terms (S, I))."""
    acc, val, _, _ = curve_values(problem, counts @ (problem.quality * m), False)
    return acc, val, presence_weights(val, counts, problem.probs, problem.participants, problem.conditioning)


@struct.dataclass
class MonteCarlo:
    """Backend: sample averages over ``samples`` multinomial outcomes drawn from ``seed``.

    participants, num_types: N and I.  samples: S.  seed: PRNG seed (same seed, same outcomes).
    chunk_size: samples per chunk in ``estimate`` (memory bound).
    """

    participants: int = struct.field(pytree_node=False)
    num_types: int = struct.field(pytree_node=False)
    samples: int = struct.field(pytree_node=False, default=1 << 16)
    seed: int = struct.field(pytree_node=False, default=0)
    chunk_size: int = struct.field(pytree_node=False, default=1 << 16)

    name = "montecarlo"

    def __post_init__(self):
        if int(self.samples) < 2:
            raise ValueError(f"samples must be >= 2, got {self.samples!r}")

    def prepare(self, problem) -> OutcomeTable:
        """The S sampled outcomes as an ``OutcomeTable`` with unbiased-estimator weights."""
        counts = sample_outcomes(jax.random.PRNGKey(self.seed), problem.probs, self.participants, self.samples)
        probs = jax.lax.stop_gradient(problem.probs)
        n = float(self.participants)
        prob = jnp.full((self.samples,), 1.0 / self.samples, counts.dtype)
        weights = presence_weights(jnp.ones((self.samples,), counts.dtype), counts, probs, n, problem.conditioning)
        return OutcomeTable(counts, jnp.ones((self.samples,), bool), prob, weights / self.samples)

    def moments(self, m: jnp.ndarray, problem) -> Moments:
        """Sample-average moments (draws the outcomes; solvers call ``prepare`` once instead)."""
        return moments(m, problem, self.prepare(problem))

    def estimate(self, m: jnp.ndarray, problem) -> tuple[Moments, Moments]:
        """(estimates, standard errors) of the moments at m, streamed in chunks (jittable).

        Chunk c uses ``fold_in(PRNGKey(seed), c)``; S is rounded up to whole chunks.
        """
        chunk = min(int(self.chunk_size), int(self.samples))
        num_chunks = -(-int(self.samples) // chunk)
        total = num_chunks * chunk
        base = jax.random.PRNGKey(self.seed)
        dtype = jnp.result_type(m, problem.probs)

        def body(carry, c):
            counts = sample_outcomes(jax.random.fold_in(base, c), problem.probs, self.participants, chunk)
            stats = tuple((jnp.sum(t, 0), jnp.sum(t**2, 0)) for t in _summands(counts, m, problem))
            return jax.tree_util.tree_map(jnp.add, carry, stats), None

        init = tuple((jnp.zeros(shape, dtype),) * 2 for shape in ((), (), problem.probs.shape[:1]))
        sums, _ = jax.lax.scan(body, init, jnp.arange(num_chunks))

        def mean_se(s1, s2):
            mean = s1 / total
            var = jnp.maximum(s2 / total - mean**2, 0.0) * total / (total - 1)
            return mean, jnp.sqrt(var / total)

        means, errors = zip(*(mean_se(s1, s2) for s1, s2 in sums))
        return Moments(*means), Moments(*errors)
