r"""The complete-information benchmark (docs/model.md "The complete-information benchmark").

A coordinator who saw every participant's type would, in each outcome n, give every present type
the joint model and make each individual-rationality constraint bind *ex post*:

.. math::
    m_i(A) = \frac{v(A) - f_i}{c_i} \quad (n_i \ge 1), \qquad
    h(A) = a\Big(\sum_i n_i q_i\, m_i(A)\Big),

and take the largest joint accuracy A with :math:`v(A) \ge \max_{i: n_i \ge 1} f_i` and
:math:`A \le h(A)`. Since v and a are increasing, h is increasing in A; the feasible set is closed
and every A with :math:`A \le h(A)` lies below the largest fixed point of h (Tarski), so the answer
is the largest root of :math:`g(A) = h(A) - A`.

Bracket (per outcome). Lower end: with :math:`i^* = \arg\max_{i \text{ present}} f_i`,

* if :math:`f_{i^*} > 0`, :math:`A_{lo} = a(q_{i^*} m^{res}_{i^*})`. Then
  :math:`v(A_{lo}) = f_{i^*} + c_{i^*} m^{res}_{i^*} \ge f_j` for every present j, so
  :math:`m_{i^*}(A_{lo}) = m^{res}_{i^*}`, every :math:`m_j(A_{lo}) \ge 0`, and
  :math:`h(A_{lo}) \ge a(q_{i^*} m^{res}_{i^*}) = A_{lo}`: :math:`A_{lo}` is feasible;
* if every present f is 0, :math:`A_{lo} = v^{-1}(0)` (clipped to >= 0; 0 for v(0) = 0), the
  contract where nobody contributes.

Upper end: the curve's supremum :math:`a_{max}`, where :math:`h(a_{max}) < a_{max}` because a never
reaches its supremum at finite data (if it does in floating point, :math:`a_{max}` is returned).

Root finding: g on a uniform grid of ``grid_size`` points over :math:`[A_{lo}, a_{max}]`, the last
grid point with g >= 0, and a golden-section refinement of the grid's largest g (so a positive
excursion of g narrower than the grid spacing is not missed when g is unimodal around it); then a
fixed number of bisection steps on the last sign change, to a bracket of width <= ``bracket_tol``.
The lower end (g >= 0) is returned, so the reported contract is feasible in floating point.
Why a grid of 128 suffices: where some present f > 0, h is concave on :math:`[A_{lo}, a_{max}]` for
a linear v and a convex-then-concave curve (the SGB, whose only inflection, near x = 56 k, lies
below every training-alone optimum, as the second-order condition at :math:`m^{res}` requires),
and for a concave v with a curve concave from :math:`q_{i^*} m^{res}_{i^*}` on (power laws,
arctan). Then {g >= 0} is an interval starting at :math:`A_{lo}` and *any* grid finds its right
end. The grid matters for other curves and where every present f is 0: then g is not concave
(a = 0 on the first units of data) and a stretch with g >= 0 must be found at all.

Everything is vectorized over outcomes and ``vmap``-able over problems: the Sec. 6.1 grid (1,500
two-type problems, N up to 100) is one ``jit(vmap)`` call (``solve_complete_information_batch``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._cache import kernel_jit, short_passes
from .. import _precision
from ..expectation import OutcomeTable, outcome_table, outcome_weights
from ..expectation.planner import pass_seconds
from ..numerics import GOLDEN_RATIO, bisection, golden_section_max
from ..problem import ContractProblem, batch_size, stack_problems, without_input_order
from ._solution import Status

#: Points of the scan over [A_lo, a_max]; see the module docstring for why 128 is enough.
GRID_SIZE = 128
#: Width of the final bisection bracket (accuracy units): A is found to well within 1e-9.
BRACKET_TOL = 1e-12
#: Slack of the per-outcome feasibility flag: fixed-point residual (accuracy units) and
#: v(A) >= max f (money, relative to 1 + |max f|). Far above float64 rounding, far below any
#: economically meaningful gap.
FIXED_POINT_TOL = 1e-9


@struct.dataclass
class CompleteInformation:
    """The complete-information contract of one problem (canonical type order, costliest first).

    Per outcome: K rows of the outcome table; padding rows carry zero probability, zero values and
    ``feasible`` True. Expectations: under the problem's conditioning (docs/model.md, "The
    first-moment problem").

    Attributes:
      counts: (K, I) type counts n.
      valid: (K,) bool, False on padding rows.
      probabilities: (K,) P(n).
      pooled_accuracy: (K,) A(n), the largest feasible joint accuracy (everyone present gets it).
      pooled_value: (K,) v(A(n)), money.
      contributions: (K, I) m_i(n) = (v(A) - f_i) / c_i, units of data; 0 for absent types.
      feasible: (K,) bool: everything finite, h(A) - A >= -tol and v(A) >= max_{present} f - tol
        (``FIXED_POINT_TOL``). Never NaN: rows with non-finite values hold zeros.
      expected_accuracy: () E_n[A(n)].
      expected_value: () E_n[v(A(n))], money.
      expected_contributions: (I,) E[m_i | i], units of data.
      rewards: (I,) E[v(A) | i], money.
      utilities: (I,) E[v(A) - c_i m_i | i], money (= f_i by construction, computed from the
        per-outcome contract).
      all_feasible: () bool over valid rows.
      status: () int ``Status`` (CONVERGED, INFEASIBLE, or NONFINITE).
    """

    counts: Any
    valid: Any
    probabilities: Any
    pooled_accuracy: Any
    pooled_value: Any
    contributions: Any
    feasible: Any
    expected_accuracy: Any
    expected_value: Any
    expected_contributions: Any
    rewards: Any
    utilities: Any
    all_feasible: Any
    status: Any


_PER_OUTCOME = ("counts", "valid", "probabilities", "pooled_accuracy", "pooled_value", "contributions", "feasible")


def _bisection_steps(grid_size: int, bracket_tol: float) -> int:
    # A scan cell is at most (a_max - A_lo) / (grid_size - 1) <= 1 / (grid_size - 1) wide (a <= 1).
    return max(0, math.ceil(math.log2(1.0 / ((grid_size - 1) * bracket_tol))))


def _golden_steps(grid_size: int, bracket_tol: float) -> int:
    # The refinement window is two cells, <= 2 / (grid_size - 1) wide; shrink it (x 0.618 a step)
    # to sqrt(bracket_tol). An excursion of g >= 0 narrower than that rises at most ~|g''| times
    # (sqrt(tol) / 2)^2 ~ tol above zero: a tangency the bisection could not resolve anyway.
    return max(0, math.ceil(math.log(math.sqrt(bracket_tol) * (grid_size - 1) / 2.0) / math.log(GOLDEN_RATIO)))


def _largest_root(g, a_lo, width, grid_size: int, bracket_tol: float):
    """Per outcome, the largest A in [A_lo, A_lo + width] with g(A) >= 0 (module docstring: a grid
    scan, a golden-section look between grid points, then bisection of the last sign change).

    Args:
      g: (K,) A -> (K,) h(A) - A, elementwise.  a_lo, width: (K,) the bracket, accuracy units.
      grid_size, bracket_tol: static, as ``complete_information_kernel``.

    Returns:
      (K,) the lower end of the final bracket (g >= 0 there), accuracy units.
    """
    dtype = a_lo.dtype

    # Scan: last grid point with g >= 0 (the first point, A_lo, is feasible by the module docstring,
    # so it counts as such even when rounding makes g(A_lo) a hair negative) and the grid point of
    # largest g. Streamed one grid column at a time: a (K, G) array per problem would cost more in
    # memory traffic than the evaluations themselves.
    def point(j):
        return a_lo + width * (j.astype(dtype) / (grid_size - 1))

    def scan(j, state):
        last, best, best_g = state
        gj = g(point(j))
        last = jnp.where(gj >= 0.0, j, last)
        better = gj > best_g
        return last, jnp.where(better, j, best), jnp.where(better, gj, best_g)

    zero = jnp.zeros(a_lo.shape, jnp.int32)
    last, best, _ = jax.lax.fori_loop(1, grid_size, scan, (zero, zero, g(a_lo)))
    top = grid_size - 1
    lo, hi = point(last), point(jnp.minimum(last + 1, top))

    # Golden-section refinement of the grid's largest g: catches a g >= 0 excursion narrower than
    # a cell beyond the last nonnegative grid point (only possible where g is not concave).
    window = golden_section_max(g, point(jnp.maximum(best - 1, 0)),
                                point(jnp.minimum(best + 1, top)), _golden_steps(grid_size, bracket_tol))
    peak = 0.5 * (window.lower + window.upper)
    use_peak = (g(peak) >= 0.0) & (peak > lo)
    # Every grid point above ``peak`` then has g < 0; the first of them closes the bracket.
    above = jnp.where(peak < point(best), best, jnp.minimum(best + 1, top))
    lo = jnp.where(use_peak, peak, lo)
    hi = jnp.where(use_peak, point(above), hi)

    return bisection(lambda A: g(A) >= 0.0, lo, hi, _bisection_steps(grid_size, bracket_tol))[0]


def complete_information_kernel(problem: ContractProblem, table, grid_size: int = GRID_SIZE,
                                bracket_tol: float = BRACKET_TOL) -> CompleteInformation:
    r"""Complete-information contract of one problem: pure, jittable, ``vmap``-able over problems.

    Per outcome n, the largest A with :math:`A \le h(A) = a(\sum_i n_i q_i (v(A) - f_i)/c_i)` and
    :math:`v(A) \ge \max_{n_i \ge 1} f_i` (module docstring for the bracket and its proof).
    Computes in the dtype of the problem's leaves (float64 for the 1e-12 bracket).

    Args:
      problem: ``ContractProblem`` (leaves may be traced).
      table: ``OutcomeTable`` (padding rows allowed) or a bare (K, I) counts array.
      grid_size: static, points of the scan over [A_lo, a_max] (>= 2).
      bracket_tol: static, width of the final bisection bracket, accuracy units.

    Returns:
      ``CompleteInformation`` (per-outcome arrays of length K, expectations over valid rows).
    """
    if grid_size < 2:
        raise ValueError(f"grid_size must be >= 2, got {grid_size}")
    if not isinstance(table, OutcomeTable):
        table = OutcomeTable(table, jnp.ones(jnp.shape(table)[0], dtype=bool))
    prob, weights = outcome_weights(problem, table)  # (K,), (K, I); zero on padding rows
    dtype = prob.dtype
    accuracy, valuation = problem.accuracy, problem.valuation
    c = jnp.asarray(problem.costs, dtype)
    q = jnp.asarray(problem.quality, dtype)
    f = jnp.asarray(problem.reservation_utility, dtype)
    m_res = jnp.asarray(problem.reservation_data, dtype)
    counts = jnp.asarray(table.counts, dtype)
    valid = jnp.asarray(table.valid)
    present = (counts >= 1.0) & valid[:, None]  # (K, I)

    # S(A) = sum_i n_i q_i (v(A) - f_i) / c_i = slope * v(A) - offset, affine in v(A).
    load = counts * (q / c)[None, :]  # (K, I), zero for absent types
    slope = jnp.sum(load, axis=1)  # (K,)
    offset = load @ f  # (K,)

    def g(A):
        """(K,) h(A) - A for A: (K,) accuracies, one per outcome."""
        return accuracy(jnp.maximum(slope * valuation(A) - offset, 0.0)) - A

    # Lower bracket: the training-alone accuracy of the present type with the largest f.
    f_present = jnp.where(present, f[None, :], -jnp.inf)
    star = jnp.argmax(f_present, axis=1)  # (K,)
    f_max = jnp.where(valid, jnp.max(f_present, axis=1), 0.0)  # (K,)
    a_max = jnp.asarray(getattr(accuracy, "a_max", 1.0), dtype)
    alone = accuracy(q[star] * m_res[star])
    nobody = jnp.clip(valuation.inverse(jnp.zeros((), dtype)), 0.0, a_max)
    a_lo = jnp.where(f_max > 0.0, alone, nobody)  # (K,)
    a_lo = jnp.where(valid, jnp.minimum(a_lo, a_max), 0.0)
    width = a_max - a_lo  # (K,)

    A = _largest_root(g, a_lo, width, grid_size, bracket_tol)

    value = valuation(A)
    m = jnp.where(present, jnp.maximum(value[:, None] - f[None, :], 0.0) / c[None, :], 0.0)  # (K, I)
    residual = g(A)
    finite = jnp.isfinite(A) & jnp.isfinite(value) & jnp.all(jnp.isfinite(m), axis=1) & jnp.isfinite(residual)
    ok = (finite & (residual >= -FIXED_POINT_TOL)
          & (value >= f_max - FIXED_POINT_TOL * (1.0 + jnp.abs(f_max))))
    feasible = ok | ~valid
    keep = finite & valid
    A = jnp.where(keep, A, 0.0)
    value = jnp.where(keep, value, 0.0)
    m = jnp.where(keep[:, None], m, 0.0)

    utility = jnp.where(present, value[:, None] - c[None, :] * m, 0.0)  # (K, I), ex-post = f
    all_feasible = jnp.all(feasible)
    status = jnp.where(all_feasible, Status.CONVERGED,
                       jnp.where(jnp.all(finite | ~valid), Status.INFEASIBLE, Status.NONFINITE))
    return CompleteInformation(
        counts=counts, valid=valid, probabilities=prob, pooled_accuracy=A, pooled_value=value, contributions=m,
        feasible=feasible, expected_accuracy=prob @ A, expected_value=prob @ value,
        expected_contributions=jnp.sum(weights * m, axis=0), rewards=value @ weights,
        utilities=jnp.sum(weights * utility, axis=0), all_feasible=all_feasible, status=status.astype(jnp.int32))


_kernel_jit = kernel_jit(complete_information_kernel, static_argnames=("grid_size", "bracket_tol"))
_batched_kernel = kernel_jit(jax.vmap(complete_information_kernel, in_axes=(0, 0, None, None)), static_argnums=(2, 3))


@functools.lru_cache(maxsize=8)
def _padded_tables(participants: tuple, num_types: int, length: int | None) -> OutcomeTable:
    # Host-side enumeration of every N of a sweep costs more than the compiled solve; a sweep
    # re-solved (other curves, other costs, timing) reuses its tables.
    from .batch import batch_tables  # batch.py imports the ALM; keep this module light to import

    tables = batch_tables(participants, num_types, length)
    for arr in tables[:2]:
        arr.setflags(write=False)
    return tables


def solve_complete_information(problem: ContractProblem, grid_size: int = GRID_SIZE,
                               bracket_tol: float = BRACKET_TOL) -> CompleteInformation:
    """Complete-information benchmark of one problem (float64; builds the outcome table).

    Args:
      problem: a single ``ContractProblem``.
      grid_size, bracket_tol: root-finding settings (``complete_information_kernel``).

    Returns:
      ``CompleteInformation`` with numpy leaves; K = C(N + I - 1, I - 1) outcomes, no padding.
    """
    if not isinstance(problem, ContractProblem):
        raise ValueError(f"problem must be a ContractProblem, got {type(problem).__name__}")
    if batch_size(problem) is not None:
        raise ValueError("problem is a batch; use solve_complete_information_batch")
    with _precision.float64():
        # Padded to the shared length ladder so that nearby N reuse one compilation; the padding
        # rows (zero weight) are cut off again below.
        table = outcome_table(problem.num_participants, problem.num_types, length="bucket")
        table = OutcomeTable(jnp.asarray(table.counts), jnp.asarray(table.valid))
        problem64 = without_input_order(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem))
        with short_passes(pass_seconds(table.counts.size + table.valid.size)):
            result = _kernel_jit(problem64, table, grid_size=grid_size, bracket_tol=bracket_tol)
            result = jax.tree_util.tree_map(np.asarray, result)  # waits for the device
    rows = slice(0, problem.num_outcomes)
    return result.replace(**{name: getattr(result, name)[rows] for name in _PER_OUTCOME})


def solve_complete_information_batch(problems, grid_size: int = GRID_SIZE, bracket_tol: float = BRACKET_TOL,
                                     table_length: int | None = None) -> CompleteInformation:
    """Complete-information benchmark of a batch of problems in one compiled ``jit(vmap)`` call.

    Outcome tables are padded to a common length (padding rows: zero weight).

    Args:
      problems: a list of ``ContractProblem`` (same I, conditioning and curve kinds) or a batched
        problem from ``problem_grid`` / ``stack_problems``.
      grid_size, bracket_tol: root-finding settings (``complete_information_kernel``).
      table_length: pad outcome tables to this many rows (default: the ``bucket_length`` of the
        largest N); a sweep solved in chunks passes one length so that one compilation serves all.

    Returns:
      ``CompleteInformation`` with numpy leaves and a leading batch axis B: per-outcome fields
      (B, K_max[, I]), expectations (B,) or (B, I).
    """
    if isinstance(problems, ContractProblem) and batch_size(problems) is None:
        problems = [problems]
    batch = problems if isinstance(problems, ContractProblem) else stack_problems(problems)
    with _precision.float64():
        ns = tuple(int(n) for n in np.asarray(batch.participants).ravel())
        tables = _padded_tables(ns, batch.num_types, None if table_length is None else int(table_length))
        tables = OutcomeTable(jnp.asarray(tables.counts), jnp.asarray(tables.valid))
        batch64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), batch)
        with short_passes(pass_seconds(tables.counts.size + tables.valid.size)):
            return jax.tree_util.tree_map(np.asarray, _batched_kernel(batch64, tables, grid_size, bracket_tol))


__all__ = ["BRACKET_TOL", "CompleteInformation", "FIXED_POINT_TOL", "GRID_SIZE", "complete_information_kernel",
           "solve_complete_information", "solve_complete_information_batch"]
