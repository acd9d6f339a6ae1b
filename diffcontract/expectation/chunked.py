r"""Exact expectations by enumeration in fixed-size chunks generated on the device.

The C(N+I-1, I-1) outcomes are never stored. Chunk c holds the outcomes of ranks
c*B .. c*B + B - 1 (B = ``chunk_size``), produced inside ``jit`` by *unranking* in the
combinatorial number system: an outcome n is a placement of I-1 bars among N+I-1 slots (stars and
bars), i.e. an (I-1)-subset {b_1 < ... < b_{I-1}} of {0..N+I-2}, and its rank is
:math:`r = \sum_j \binom{b_j}{j}`. Unranking is greedy: for j = I-1 down to 1,
:math:`b_j = \max\{b : \binom{b}{j} \le r\}` (a ``searchsorted`` in a table of binomials) and
r -= C(b_j, j). The counts are the gaps between bars:
n_1 = b_1, n_j = b_j - b_{j-1} - 1, n_I = N+I-2 - b_{I-1}.

Each chunk's contribution to E[a], E[v] and the conditional sums tbar_i is accumulated by
``lax.scan``; the chunk body is rematerialized (``jax.checkpoint``) so reverse-mode derivatives
store only the running sums. Peak memory is O(B I), whatever the outcome count. The first
derivatives are analytic (``custom_jvp``):

.. math:: \partial E[a] / \partial m_j = E[a'(s) n_j q_j],\qquad
          \partial \bar t_i / \partial m_j = \sum_n w_i(n) v'(a(s)) a'(s) n_j q_j,

accumulated as one (B, I)^T (B, I) product per chunk, so a full Jacobian costs one pass (not I).
Ranks are int64 (float64 mode) or int32; tables of up to 2^62 outcomes are addressable.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._jit import compiled_when_eager
from ._interface import Moments, add_problem_tangent, curve_values, moment_sums_zeros
from .enumerate import log_pmf, num_outcomes, presence_weights
from .product import product_sums, uses_product

DEFAULT_CHUNK = 1 << 15
_COMPARE_ALL_MAX = 256  # binomial-table rows up to which unranking compares against all of them at once


def _binomial_table(participants: int, num_types: int) -> np.ndarray:
    """(N+I-1, I) table C(b, j) for b = 0..N+I-2 and j = 0..I-1 (exact integers, int64)."""
    slots = participants + num_types - 1  # columns 0 and 1 in closed form: at I = 2 the table has N + 1 rows
    columns = [np.ones(slots, np.int64), np.arange(slots, dtype=np.int64)]
    columns += [np.array([math.comb(b, j) for b in range(slots)], dtype=np.int64) for j in range(2, num_types)]
    return np.stack(columns[:num_types], axis=1)


def unrank_outcomes(ranks: jnp.ndarray, participants: int, num_types: int) -> jnp.ndarray:
    """Outcomes (type counts) of the given ranks in the combinatorial number system.

    Args:
      ranks: (B,) integer ranks in [0, C(N+I-1, I-1)); out-of-range ranks give garbage rows that
        callers mask.
      participants, num_types: N and I (static).

    Returns:
      (B, I) int32 counts, each row summing to N. Jittable; the order is a bijection with
      ``enumerate_outcomes`` rows (not the same order).
    """
    if num_types == 1:
        return jnp.full((ranks.shape[0], 1), participants, dtype=jnp.int32)
    binom = jnp.asarray(_binomial_table(participants, num_types), dtype=ranks.dtype)
    remaining = ranks
    bars = []
    # compare_all is one vectorized pass (fastest for short tables) but holds a (B, N + I - 1)
    # comparison; past _COMPARE_ALL_MAX slots a binary search keeps unranking O(B) in memory.
    method = "compare_all" if binom.shape[0] <= _COMPARE_ALL_MAX else "scan"
    for j in range(num_types - 1, 1, -1):
        b = jnp.searchsorted(binom[:, j], remaining, side="right", method=method) - 1
        remaining = remaining - binom[b, j]
        bars.append(b)
    # C(b, 1) = b: the first bar is the remaining rank itself.
    bars = jnp.stack([remaining] + bars[::-1], axis=1).astype(jnp.int32)  # (B, I-1), increasing
    edges = jnp.pad(bars, ((0, 0), (1, 1)), constant_values=((0, 0), (-1, participants + num_types - 1)))
    return jnp.diff(edges, axis=1) - 1


@struct.dataclass
class ChunkedEnumeration:
    """Backend: exact enumeration in chunks of ``chunk_size`` outcomes, generated inside jit.

    Attributes:
      participants: N (static: it fixes the number of chunks).
      num_types: I (static).
      chunk_size: outcomes per chunk B; peak memory ~ B * I * 8 bytes * (a few arrays).
      devices: shard the chunks over this many devices (``jax.devices()[:devices]``, a 1-D
        ``Mesh`` with axis "outcomes"): each device scans its own chunks and the sums meet in one
        ``psum``. 1 (default) runs on the default device. On several hosts, call
        ``jax.distributed.initialize()`` first; ``jax.devices()`` then lists every host's devices.
    """

    participants: int = struct.field(pytree_node=False)
    num_types: int = struct.field(pytree_node=False)
    chunk_size: int = struct.field(pytree_node=False, default=DEFAULT_CHUNK)
    devices: int = struct.field(pytree_node=False, default=1)

    name = "chunked"

    def __post_init__(self):
        if int(self.chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size!r}")
        if not 1 <= int(self.devices) <= jax.device_count():
            raise ValueError(f"devices must be in 1..{jax.device_count()} (jax.device_count()), got {self.devices!r}")

    @property
    def num_outcomes(self) -> int:
        return num_outcomes(self.participants, self.num_types)

    @property
    def num_chunks(self) -> int:
        """Chunks to scan, rounded up to a multiple of ``devices`` (extra chunks are all padding)."""
        chunks = -(-self.num_outcomes // self.chunk_size)
        return -(-chunks // self.devices) * self.devices

    def prepare(self, problem) -> "ChunkedEnumeration":
        """Nothing to precompute (weights are rebuilt per chunk)."""
        return self

    @compiled_when_eager(static_argnames=("self",))  # one program, not one per operation
    def moments(self, m: jnp.ndarray, problem) -> Moments:
        """Exact moments (same values as the enumeration backend to rounding); see module docstring."""
        return _chunked_moments(self, m, problem)

    def chunk(self, index, problem):
        """(counts (B, I) float, P(n) (B,), w_i(n) (B, I)) of chunk ``index``; padding rows weigh 0."""
        dtype = jnp.result_type(problem.probs)
        rank_dtype = jnp.int64 if jax.config.jax_enable_x64 else jnp.int32
        if self.num_outcomes >= np.iinfo(np.dtype(rank_dtype)).max // 2:
            raise ValueError(f"{self.num_outcomes} outcomes (N={self.participants}, I={self.num_types}) exceed "
                             f"{np.dtype(rank_dtype).name} ranks; use backend='convolution' or 'montecarlo'")
        ranks = jnp.asarray(index, rank_dtype) * self.chunk_size + jnp.arange(self.chunk_size, dtype=rank_dtype)
        valid = ranks < self.num_outcomes
        counts_int = unrank_outcomes(jnp.where(valid, ranks, 0), self.participants, self.num_types)
        counts = counts_int.astype(dtype)
        # log P(n) by lgamma, as the enumeration backend computes it (a table of log k! for k <= N was
        # an O(N) constant in every compiled kernel: 8 MB at N = 10^6).
        prob = jnp.where(valid, jnp.exp(log_pmf(counts, problem.probs, self.participants)), 0.0)
        return counts, prob, presence_weights(prob, counts, problem.probs, self.participants, problem.conditioning)


def _scan_chunks(backend: ChunkedEnumeration, indices, m, problem, with_jacobian: bool):
    """Sums over the chunks ``indices`` of the moments and (optionally) their Jacobians in m."""
    dtype = jnp.result_type(m, problem.probs)
    qm = problem.quality * m

    @jax.checkpoint
    def body(carry, index):
        counts, prob, weights = backend.chunk(index, problem)
        acc, val, dacc, dv = curve_values(problem, counts @ qm, with_jacobian)
        out = [prob @ acc, prob @ val, val @ weights]
        if with_jacobian:
            dn = counts * problem.quality[None, :]  # d pooled / d m_j = n_j q_j
            out += [(prob * dacc) @ dn, (prob * dv) @ dn, (weights * dv[:, None]).T @ dn]
        return jax.tree_util.tree_map(jnp.add, carry, tuple(out)), None

    return jax.lax.scan(body, tuple(moment_sums_zeros(backend.num_types, with_jacobian, dtype)), indices)[0]


def _accumulate(backend: ChunkedEnumeration, m, problem, with_jacobian: bool):
    """Sums over all outcomes: by half-tables (``product``) where that path applies, else over the
    unranked chunks, on one device or sharded over ``backend.devices``."""
    if uses_product(backend.participants, backend.num_types, backend.devices):
        cells = backend.chunk_size * (backend.num_types + 1)  # a block's grid holds about a chunk's memory
        return product_sums(backend.participants, backend.num_types, cells, m, problem, with_jacobian)
    indices = jnp.arange(backend.num_chunks)
    if backend.devices == 1:
        return _scan_chunks(backend, indices, m, problem, with_jacobian)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[: backend.devices]), ("outcomes",))
    spec = jax.sharding.PartitionSpec

    def per_device(local_indices, m_, problem_):
        return jax.lax.psum(_scan_chunks(backend, local_indices, m_, problem_, with_jacobian), "outcomes")

    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(spec("outcomes"), spec(), spec()), out_specs=spec(),
                            check_vma=False)
    return sharded(indices, m, problem)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _chunked_moments(backend, m, problem):
    return Moments(*_accumulate(backend, m, problem, with_jacobian=False))


def _chunked_moments_jvp(backend, primals, tangents):
    m, problem = primals
    dm, dproblem = tangents
    ea, ev, tbar, grad_ea, grad_ev, jac_tbar = _accumulate(backend, m, problem, with_jacobian=True)
    if isinstance(dm, jax.custom_derivatives.SymbolicZero):
        dm = jnp.zeros_like(m)
    # The problem's own leaves by plain autodiff of one (checkpointed) pass.
    tangent = add_problem_tangent(Moments(grad_ea @ dm, grad_ev @ dm, jac_tbar @ dm),
                                  lambda pr: _accumulate(backend, m, pr, with_jacobian=False), problem, dproblem)
    return Moments(ea, ev, tbar), tangent


_chunked_moments.defjvp(_chunked_moments_jvp, symbolic_zeros=True)
