r"""``method="global"``: spatial branch-and-bound with certified bounds (docs/howto/global.md).

The first-moment problem is not concave (the accuracy curve is convex or flat at small data), so
the KKT solvers' answers are local. This solver certifies a global optimum over the *full*
constraint set (whose feasible menus contain the simplified set's):

1. incumbents from the exact solver (``SLSQP``) on the simplified set and on the full set from
   there, the best one's multipliers (per piece of the least rewards, monotonicity) fitted by
   non-negative least squares on the stationarity of the problem in m (``global_bounds``);
2. best-first branch-and-bound over boxes of contributions, starting from
   [0, (v(a_max) - f) / c]: each round pops the ``batch_size`` boxes with the largest upper bound,
   halves each along its widest side (relative to the root box) and bounds the children in one
   vmapped call (``global_bounds.bound_boxes``): monotone, Lagrangian and feasibility bounds;
3. feasible candidate points of the boxes improve the incumbent, and so do KKT solves started in
   the most promising box that does not hold the incumbent (``local_searches`` of them);
4. it stops when the largest open upper bound is within ``gap_tol`` (relative) of the incumbent:
   status CONVERGED; or at ``max_nodes`` / ``time_limit``: status MAX_ITERATIONS with the bound
   reached; or when every box is pruned without a feasible point: INFEASIBLE, a proof.

``upper_bound`` bounds the optimal objective E[a(n . q m)] (accuracy units, as ``expected_accuracy``)
over every contract feasible within ``feasibility_tol`` (the tolerance that defines a converged
solution, so no converged answer of any method exceeds it), and
``gap = (upper_bound - expected_accuracy) / expected_accuracy``.

The host-side steps (the incumbent's value and violation, the stationarity terms its multipliers
are fitted to) are compiled kernels rather than eager JAX: eagerly, each of their few dozen
operations compiled on its own for every problem shape (``pytest -n 0 tests/test_global.py`` with
empty caches: 40.1 s before, 33.7 s after; the same answers).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import _precision
from .._cache import kernel_jit
from ..curves._base import concavity_start
from ..expectation import moments, outcome_table, with_weights
from ..expectation.enumerate import num_outcomes
from ..expectation.planner import ProblemTooLarge
from ..formulation import least_rewards, residuals
from ..problem import without_input_order
from ._solution import FEASIBILITY_TOL, Solution, Status, host_menu_fields, value_scale
from .global_bounds import BoundData, bound_boxes, exact_terms, piece_slacks, reward_pieces, value_and_violation

log = logging.getLogger(__name__)

#: Outcomes above which the enumeration of every box is refused (CLI exit 3): the bounds evaluate
#: the whole table about 8 times per box, and a useful search bounds 1e4-1e6 boxes.
MAX_OUTCOMES = 2**16
#: Relative tolerances that decide which constraints are active at the incumbent (its multipliers).
_ACTIVE_RTOL = 1e-7


@dataclasses.dataclass(frozen=True)
class BranchAndBound:
    """Options of ``method="global"``.

    gap_tol: relative optimality gap that ends the search as CONVERGED.  feasibility_tol: accepted
    violation of an incumbent, relative to v(1) - v(0) (as the KKT solvers).  max_nodes: boxes
    bounded before stopping.  time_limit: seconds before stopping.  batch_size: boxes split per
    round (2x that many bounded in one vmapped call).  local_searches: KKT solves started in
    promising boxes.  progress: print a line per 50 rounds to the log.
    """

    gap_tol: float = 1e-6
    feasibility_tol: float = FEASIBILITY_TOL
    max_nodes: int = 2_000_000
    time_limit: float = 600.0
    batch_size: int = 256
    local_searches: int = 8

    method = "global"

    def __post_init__(self):
        for name in ("gap_tol", "feasibility_tol", "time_limit"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise ValueError(f"global option {name} must be a finite number > 0, got {value!r}")
        for name, least in (("max_nodes", 1), ("batch_size", 1), ("local_searches", 0)):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= least):
                raise ValueError(f"global option {name} must be an integer >= {least}, got {value!r}")


def check_boundable(problem) -> float:
    """The accuracy curve's ``concave_from`` (ValueError naming a curve that cannot be bounded)."""
    if not getattr(problem.valuation, "concave", False):
        raise ValueError(f"valuation {type(problem.valuation).__name__} does not state that it is concave "
                         f"(concave = True), so method='global' cannot bound v(a); use Linear or Exponential")
    return concavity_start(problem.accuracy)


def _bound_data(problem, table, x_c: float, allowance: float = 0.0) -> BoundData:
    num = problem.num_types
    return BoundData(counts=jnp.asarray(table.counts) * problem.quality[None, :], prob=table.prob,
                     weights=table.weights, costs=problem.costs, reservation=problem.reservation_utility,
                     concave_from=jnp.asarray(x_c), allowance=jnp.asarray(allowance),
                     pieces=reward_pieces(problem.costs), budget_multipliers=jnp.zeros((num, num)), monotone_multipliers=jnp.zeros(num - 1),
                     accuracy=problem.accuracy, valuation=problem.valuation)


def _stationarity_terms(m, data: BoundData) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """At m (I,): grad F (I,), the piece slacks flattened (I * I,) and their Jacobian (I * I, I)."""
    def slack(z):
        return piece_slacks(exact_terms(z, data)[1], z, data).reshape(-1)

    return jax.grad(lambda z: exact_terms(z, data)[0])(m), slack(m), jax.jacobian(slack)(m)


# Host-side steps as kernels, not eager operations (module docstring). They pass over the outcome
# table as ``bound_boxes`` does, so they compile at the level it does (``_cache._compiles_fast_now``).
_stationarity_kernel = kernel_jit(_stationarity_terms)
_value_and_violation_kernel = kernel_jit(value_and_violation)


def fitted_multipliers(m, data: BoundData) -> tuple[np.ndarray, np.ndarray]:
    """Multipliers (lambda (I, I), rho (I-1,)) >= 0 of the problem in m at a KKT point ``m``.

    Non-negative least squares on stationarity, grad F + sum lambda_ij grad(slack_ij) + D^T rho +
    sigma = 0, over the constraints active at m (piece slacks, m_{k+1} - m_k, m_i >= 0); any such
    multipliers give valid bounds, good ones give tight bounds near m.
    """
    from scipy.optimize import nnls

    m_np = np.asarray(m)
    num = m_np.size
    grad_f, slack_m, jac = map(np.asarray, _stationarity_kernel(jnp.asarray(m), data))
    scale = max(float(np.max(np.abs(m_np))), 1.0)
    money = max(float(np.max(np.abs(np.asarray(data.reservation)))), float(np.max(np.abs(slack_m))), 1.0)
    pieces = np.flatnonzero(slack_m <= _ACTIVE_RTOL * money)
    monotone = np.flatnonzero(np.diff(m_np) <= _ACTIVE_RTOL * scale)
    floor = np.flatnonzero(m_np <= _ACTIVE_RTOL * scale)
    columns = [*jac[pieces], *np.diff(np.eye(num), axis=0)[monotone], *np.eye(num)[floor]]
    if not columns:
        return np.zeros((num, num)), np.zeros(num - 1)
    matrix = np.stack(columns, axis=1)
    norms = np.maximum(np.linalg.norm(matrix, axis=0), 1e-300)
    y, _ = nnls(matrix / norms, -grad_f)
    y = y / norms
    lam, rho = np.zeros(num * num), np.zeros(num - 1)
    lam[pieces] = y[:pieces.size]
    rho[monotone] = y[pieces.size:pieces.size + monotone.size]
    return lam.reshape(num, num), rho


def kkt_incumbent(problem, warm_start=None, constraints: str = "full", restart_from=None):
    """Contributions (I,) of an exact-solver (``SLSQP``) solve; None if it fails.

    Args:
      problem: canonical ``ContractProblem``.  warm_start: the only start (I,), or None for the
      solver's candidate starts.  constraints: the set solved.  restart_from: a first start (I,).
    """
    from .driver import restart_menu, run
    from .exact import SLSQP

    try:
        sol = run(problem, SLSQP(), constraints, warm_start=warm_start, restart_from=restart_from)
    except (ValueError, FloatingPointError) as err:  # a local solver's failure only costs the incumbent
        log.info("global: the KKT incumbent search failed: %s", err)
        return None
    m = restart_menu(sol.m)
    return m if np.all(np.isfinite(m)) else None


def first_incumbents(problem) -> list:
    """The exact solver's KKT points to start from: the simplified set's (the paper's analysis) and
    the full set's from there. The two optima differ where the simplified set's binding IC is not
    the full set's (``local-optima`` suite: a cheap type's IR binds instead)."""
    simplified = kkt_incumbent(problem, constraints="simplified")
    return [simplified, kkt_incumbent(problem, restart_from=simplified)]


class _Search:
    """The host state of one branch-and-bound run (open boxes in a heap keyed by upper bound)."""

    def __init__(self, data: BoundData, options: BranchAndBound, problem):
        self.data, self.options, self.problem = data, options, problem
        self.tol = options.feasibility_tol * value_scale(problem)
        self.lower, self.best = -np.inf, None
        self.pruned = -np.inf  # the largest upper bound of a box discarded by bound (not by infeasibility)
        self.nodes, self.rounds, self.searches = 0, 0, 0
        self.heap, self.counter = [], itertools.count()
        f, c = np.asarray(problem.reservation_utility), np.asarray(problem.costs)
        top = float(np.asarray(problem.valuation(problem.accuracy.a_max)))
        hi = np.minimum.accumulate(np.maximum((top - f) / c, 0.0)[::-1])[::-1]
        self.width = np.maximum(hi, 1e-300)
        self._push(np.inf, np.zeros(problem.num_types), hi)

    def _push(self, upper, lo, hi):
        heapq.heappush(self.heap, (-float(upper), next(self.counter), lo, hi))

    @property
    def upper(self) -> float:
        """The certified bound: the largest upper bound of an open box or of one pruned by bound."""
        return max(-self.heap[0][0] if self.heap else -np.inf, self.pruned)

    def _threshold(self) -> float:
        return self.lower + self.options.gap_tol * abs(self.lower) if np.isfinite(self.lower) else -np.inf

    def offer(self, m, kkt: bool = False) -> bool:
        """Take monotone ``m`` as the incumbent if it is feasible and better; refit multipliers at KKT points."""
        if m is None:
            return False
        value, violation = map(float, _value_and_violation_kernel(jnp.asarray(m), self.data))
        if violation > self.tol or value <= self.lower:
            return False
        self.lower, self.best = value, np.asarray(m, np.float64)
        if kkt:
            lam, rho = fitted_multipliers(self.best, self.data)
            self.data = self.data.replace(budget_multipliers=jnp.asarray(lam), monotone_multipliers=jnp.asarray(rho))
        return True

    def _children(self, uppers, lo, hi):
        """Each box (rows of lo, hi) halved along its widest side relative to the root box: the children
        (left, right of box 0, then of box 1, ...) and their parents' upper bounds."""
        rows, side = np.arange(len(lo)), np.argmax((hi - lo) / self.width, axis=1)
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[rows, side] = right_lo[rows, side] = 0.5 * (lo[rows, side] + hi[rows, side])
        shape = (2 * lo.shape[0], lo.shape[1])
        return (np.stack([lo, right_lo], axis=1).reshape(shape), np.stack([left_hi, hi], axis=1).reshape(shape),
                np.repeat(uppers, 2))

    def round(self) -> None:
        """Pop the best boxes, split them, bound the children, update the incumbent and the heap."""
        threshold, boxes = self._threshold(), []
        while self.heap and len(boxes) < self.options.batch_size and -self.heap[0][0] > threshold:
            boxes.append(heapq.heappop(self.heap))
        if not boxes:
            self.pruned = max(self.pruned, self.upper)
            self.heap.clear()
            return
        neg_uppers, _, lo, hi = zip(*boxes)
        lo, hi, parents = self._children(-np.asarray(neg_uppers), np.stack(lo), np.stack(hi))
        count, size = len(lo), 2 * self.options.batch_size
        pad = lambda a: np.concatenate([a, np.repeat(a[:1], size - count, axis=0)])  # noqa: E731
        anchor = self.best if self.best is not None else 0.5 * self.width
        out = jax.tree_util.tree_map(np.asarray, bound_boxes(jnp.asarray(pad(lo)), jnp.asarray(pad(hi)),
                                                             jnp.asarray(anchor), self.data))
        self.nodes += count
        self.rounds += 1
        for k in np.argsort(-out.candidate_value[:count]):
            if out.candidate_violation[k] <= self.tol and out.candidate_value[k] > self.lower:
                self.offer(out.candidate[k])
                break
        threshold = self._threshold()
        for k in range(count):
            upper = min(float(out.upper[k]), float(parents[k]))
            if upper > threshold:
                self._push(upper, out.lo[k], out.hi[k])
            else:
                self.pruned = max(self.pruned, upper)

    def local_search(self) -> None:
        """A KKT solve started in the best open box, unless that box holds the incumbent."""
        if not self.heap or self.searches >= self.options.local_searches:
            return
        _, _, lo, hi = self.heap[0]
        if self.best is not None and np.all(self.best >= lo) and np.all(self.best <= hi):
            return
        self.searches += 1
        start = np.maximum.accumulate(0.5 * (lo + hi))
        if self.offer(kkt_incumbent(self.problem, warm_start=start), kkt=True):
            log.info("global: a local search from box %s..%s improved the incumbent to %.12g", lo, hi, self.lower)

    def run(self, deadline: float) -> str:
        """Branch and bound until the gap closes, the heap empties or a budget runs out; why it stopped."""
        while self.heap:
            if self.upper - self.lower <= self.options.gap_tol * abs(self.lower):
                return "gap"
            if self.nodes >= self.options.max_nodes:
                return "nodes"
            if time.perf_counter() >= deadline:
                return "time"
            self.round()
            if self.rounds % 25 == 0:
                self.local_search()
            if self.rounds % 50 == 0:
                log.info("global: %d nodes, %d open, bounds [%.12g, %.12g]", self.nodes, len(self.heap), self.lower,
                         self.upper)
        return "gap" if self.best is not None else "empty"


#: Why a search stopped -> its status (before the measured checks) and its message's end (``BranchAndBound`` fields).
_ENDINGS = {"gap": (Status.CONVERGED, "within gap_tol {gap_tol:g}: a certified global optimum of the full set"),
            "nodes": (Status.MAX_ITERATIONS, "stopped at max_nodes = {max_nodes}"),
            "time": (Status.MAX_ITERATIONS, "stopped at time_limit = {time_limit:g} s"),
            "empty": (Status.INFEASIBLE,
                      "every box was pruned as infeasible: the full constraint set is empty (a proof)")}


def _solution(problem64, canonical, table, search: _Search, fallback, why: str) -> Solution:
    """The ``Solution`` of the incumbent (or of ``fallback`` contributions when there is none)."""
    m = jnp.asarray(search.best if search.best is not None else fallback)
    t = least_rewards(m, canonical.costs, canonical.reservation_utility)
    mom = moments(m, canonical, table)
    res = residuals(m, t, mom.reward_bounds, canonical.costs, canonical.reservation_utility)
    fields = host_menu_fields(canonical, m, t, mom, res)
    upper = search.upper
    gap = (upper - search.lower) / max(abs(search.lower), 1e-300) if search.best is not None else np.inf
    status, ending = _ENDINGS[why]
    if status == Status.CONVERGED and (not gap <= search.options.gap_tol or fields["max_violation"] > search.tol):
        status = Status.MAX_ITERATIONS  # never claim what the measured gap and residuals do not show
    message = (f"global: {search.nodes} boxes in {search.rounds} rounds, {search.searches} local searches; bounds "
               f"[{search.lower:.12g}, {upper:.12g}] on E[a], relative gap {gap:.3g}; "
               + ending.format(**dataclasses.asdict(search.options)))
    return Solution(problem=problem64, **fields, status=int(status), iterations=search.rounds, wall_time=0.0,
                    method="global", constraints="full", backend="enumerate", message=message,
                    upper_bound=float(upper), gap=float(gap), nodes=int(search.nodes))


def solve_global(problem, options: BranchAndBound | None = None) -> Solution:
    """Certified global optimum of the first-moment problem (full constraint set), by branch and bound.

    Args:
      problem: ``ContractProblem`` whose accuracy curve states ``concave_from`` and whose valuation
        is concave; at most ``MAX_OUTCOMES`` outcomes.
      options: ``BranchAndBound`` (gap_tol, max_nodes, time_limit, ...).
    Returns:
      ``Solution`` with ``upper_bound`` (on max E[a], accuracy units), ``gap`` (relative) and
      ``nodes``; CONVERGED only when gap <= gap_tol and the incumbent is feasible.
    Raises:
      ValueError naming a curve that cannot be bounded; ``ProblemTooLarge`` past ``MAX_OUTCOMES``.
    """
    from ._single import solve_single_participant

    options = options or BranchAndBound()
    start = time.perf_counter()
    x_c = check_boundable(problem)
    outcomes = num_outcomes(problem.num_participants, problem.num_types)
    if outcomes > MAX_OUTCOMES:
        raise ProblemTooLarge(f"method='global' enumerates every outcome in every box: {outcomes:,} outcomes "
                              f"(N = {problem.num_participants}, I = {problem.num_types}) exceed its limit of "
                              f"{MAX_OUTCOMES:,}")
    if problem.num_participants == 1:  # one feasible menu at most: its value is the optimum
        sol = solve_single_participant(problem, "global", "full", options.feasibility_tol)
        bound = sol.expected_accuracy if sol.succeeded else -np.inf
        return sol.replace(upper_bound=float(bound), gap=0.0 if sol.succeeded else np.inf, nodes=0)
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        canonical = without_input_order(problem64)
        # Padded to the bucket ladder (zero-probability rows): one compilation serves nearby N.
        empty = outcome_table(problem.num_participants, problem.num_types, length="bucket")
        table = with_weights(canonical, empty._replace(counts=jnp.asarray(empty.counts), valid=jnp.asarray(empty.valid)))
        allowance = options.feasibility_tol * value_scale(canonical)
        search = _Search(_bound_data(canonical, table, x_c, allowance), options, canonical)
        firsts = first_incumbents(canonical)
        for m in firsts:
            search.offer(m, kkt=True)
        fallback = next((m for m in firsts if m is not None), np.asarray(canonical.reservation_data))
        why = search.run(start + options.time_limit)
        sol = _solution(problem64, canonical, table, search, fallback, why)
    return sol.replace(wall_time=time.perf_counter() - start)
