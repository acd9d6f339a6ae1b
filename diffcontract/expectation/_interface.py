"""The common interface of expectation backends."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._jit import jit
from .enumerate import conditional_weights, enumerate_outcomes


class Moments(NamedTuple):
    """Expectations of a contract's pooled model.

    expected_accuracy: () E_n[a(n . q m)].
    expected_value: () E_n[v(a(n . q m))], money.
    reward_bounds: (I,) tbar_i(m) = E[v(a(n . q m)) | i], money (docs/model.md "The first-moment problem").
    """

    expected_accuracy: jnp.ndarray
    expected_value: jnp.ndarray
    reward_bounds: jnp.ndarray


class OutcomeTable(NamedTuple):
    """Outcomes of the enumeration backend.

    Attributes:
      counts: (K, I) type counts n (float dtype, exact small integers).
      valid: (K,) bool; False marks padding rows (a table padded to a batch's largest N).
      prob: optional precomputed (K,) P(n) of one problem (``with_weights``); ``None`` means
        "compute from the problem".
      weights: optional precomputed (K, I) conditional weights w_i(n) of one problem. Solvers attach
        ``prob`` and ``weights`` once, so the lgamma-heavy multinomial law is not recomputed in
        every iteration.
    """

    counts: jnp.ndarray
    valid: jnp.ndarray
    prob: jnp.ndarray | None = None
    weights: jnp.ndarray | None = None


BATCH_MIN_ROWS = 16  # the shortest padded table of a batch (``bucket_length``)
# The shortest padded table of one problem (``outcome_table(..., length="bucket")``): every problem
# with up to 128 outcomes (N <= 126 at I = 2, N <= 14 at I = 3, N <= 5 at I = 5) shares one
# compilation per I and constraint set. Warm solves of such problems take a few ms longer
# (measured, 2-core CPU: ALM 26 -> 31 ms at I = 2, N = 10 and 42 -> 53 ms at I = 3, N = 8; the exact
# solver within noise); a new N costs no compilation (3-10 s each). A batch keeps ``BATCH_MIN_ROWS``:
# its passes cover B tables at once.
ONE_PROBLEM_MIN_ROWS = 128


def bucket_length(num_outcomes: int, minimum: int = BATCH_MIN_ROWS) -> int:
    """A padded table length >= ``num_outcomes`` from a coarse ladder (4 sizes per power of 2, >= ``minimum``).

    Compiled solvers are specialized on the table's shape; padding to this ladder lets problems
    with different N (or I) share one compilation at the cost of at most 25 % padding rows (above
    ``minimum``).
    """
    k = max(int(num_outcomes), int(minimum))
    step = 2 ** max(int(np.floor(np.log2(k))) - 2, 0)
    return int(-(-k // step) * step)


def outcome_table(participants: int, num_types: int, length: int | str | None = None) -> OutcomeTable:
    """The outcome table for (N, I), optionally padded with invalid rows to ``length``.

    ``length="bucket"`` pads to ``bucket_length`` with at least ``ONE_PROBLEM_MIN_ROWS`` rows (one
    problem's table: shared compilations across N).
    """
    counts = enumerate_outcomes(participants, num_types).astype(np.float64)
    if length == "bucket":
        length = bucket_length(len(counts), ONE_PROBLEM_MIN_ROWS)
    length = len(counts) if length is None else length
    if length < len(counts):
        raise ValueError(f"length {length} is shorter than the {len(counts)} outcomes of N={participants}")
    return OutcomeTable(np.pad(counts, ((0, length - len(counts)), (0, 0))), np.arange(length) < len(counts))


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
    return _table_moments(m, problem, table)


@jit
def _table_moments(m, problem, table: OutcomeTable) -> Moments:
    """``moments`` over an outcome table. Jitted: a solver kernel calls it dozens of times with one
    signature, and a jitted function is traced and lowered once per signature (``solvers._kkt``)."""
    prob, weights = outcome_weights(problem, table)
    acc, val, _, _ = curve_values(problem, jnp.asarray(table.counts, dtype=prob.dtype) @ (problem.quality * m), False)
    return Moments(prob @ acc, prob @ val, val @ weights)


def curve_values(problem, pooled, with_jacobian: bool):
    """a(s), v(a(s)) at pooled data s of any shape, and (``with_jacobian``) da/ds and dv(a(s))/ds.

    The one chain rule of the streaming backends' closed-form Jacobians (``chunked``, ``product``).

    Returns:
      (acc, val, dacc, dval): arrays shaped like ``pooled``; the slopes are None without Jacobian.
    """
    if not with_jacobian:
        acc = problem.accuracy(pooled)
        return acc, problem.valuation(acc), None, None
    flat = jnp.ravel(pooled)
    acc, dacc = jax.vmap(jax.value_and_grad(problem.accuracy))(flat)
    val, dval = jax.vmap(jax.value_and_grad(problem.valuation))(acc)
    shape = jnp.shape(pooled)
    return acc.reshape(shape), val.reshape(shape), dacc.reshape(shape), (dval * dacc).reshape(shape)


def moment_sums_zeros(num_types: int, with_jacobian: bool, dtype) -> list:
    """Zero accumulators of the streaming backends' sums: E[a], E[v], tbar (I,) and, with
    ``with_jacobian``, their Jacobians in m: (I,), (I,), (I, I)."""
    shapes = [(), (), (num_types,)] + ([(num_types,), (num_types,), (num_types, num_types)] if with_jacobian else [])
    return [jnp.zeros(shape, dtype) for shape in shapes]


def add_problem_tangent(tangent: Moments, fn: Callable, problem, dproblem) -> Moments:
    """``tangent`` plus the JVP of ``fn`` (problem -> the three moments) along ``dproblem``.

    For the ``custom_jvp`` rules of the backends (``symbolic_zeros=True``): their closed-form
    derivatives cover the contributions m; derivatives in the problem's own leaves (p, q, curve
    parameters) are needed only by sensitivity analysis, never by the solvers, and come from plain
    autodiff of ``fn`` here. When every leaf of ``dproblem`` is a ``SymbolicZero``, ``tangent`` as is.
    """
    zero = jax.custom_derivatives.SymbolicZero
    is_zero = lambda t: isinstance(t, zero)  # noqa: E731
    if all(is_zero(t) for t in jax.tree_util.tree_leaves(dproblem, is_leaf=is_zero)):
        return tangent
    dproblem = jax.tree_util.tree_map(
        lambda t, v: jnp.zeros(jnp.shape(v), jax.dtypes.float0 if jnp.issubdtype(jnp.result_type(v), jnp.integer)
                               else jnp.result_type(v)) if is_zero(t) else t,
        dproblem, problem, is_leaf=is_zero)
    _, extra = jax.jvp(fn, (problem,), (dproblem,))
    return Moments(*(t + e for t, e in zip(tangent, extra)))
