"""The driver: what every solver needs, done once (see ``base`` for the protocol).

``run`` solves one problem with any ``AbstractSolver``: the canonical problem (float64, identity type
order: one compilation serves every input order), the expectation backend, N = 1 (``_single``), the
start candidates (``_start``: the best distinct feasible menus), the variable scales, running each
start (``base.iterate``; jittable solvers inside compiled kernels: one problem's start search and runs
compiled side by side, ``_jitted_solve``; a batch's as one), keeping the best converged run,
the status decision from measured residuals, the ``Solution``, and the simplified -> full fallback.

Fallback. The simplified set is a surrogate: its binding local downward ICs exclude every menu in which
a cheaper type's IR binds above that IC, so it can be empty while the full problem is feasible (seen for
N >= 2 with f_1 = 0 and a large f_2), and a run that stops near a point where its binding constraints
degenerate is often finished by the full set from there. So a simplified solve that does not converge
is solved again on the full set, from where it stopped and from the full set's candidates; the full
solution is returned when the simplified one was infeasible or the full one converged.

Binding IRs. The simplified set's optimum is not always the full set's: where a cheaper type's IR
binds at it, the full set may gain by letting the local downward IC above that type go slack (the
certified optima of ``diffcontract.bench`` found 3 such problems in 1,200 random ones, up to 5.8 %
below). So a converged simplified solve where some type i >= 2 has no information rent is solved
again on the full set from its menu, and the better of the two is returned (``_binding_ir_check``).

Starts. Every distinct candidate start is run and the best converged run kept, except on a streaming
backend (chunked, convolution) with a host solver, where each pass over the outcomes is costly: there
the runs stop at the first converged one (the best candidate by E[a] runs first, and its pooled row
has been re-found on the backend itself, ``_start._refined_on_backend``); and a solve given a restart
menu (the fallback, the binding-IR check) runs from it alone first, scaled at it, and searches the
candidates only if that run does not converge (the search evaluates 2 I x 48 menus over every
outcome: 0.84 s of each solve at I = 2, N = 10^6, where the binding-IR check solves twice).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._cache import kernel_jit, short_passes
from .. import _precision
from ..expectation import OutcomeTable, with_weights
from ..expectation.backends import check_backend_name, checked_backend_options, make_backend
from ..problem import value_unit, without_input_order
from . import _kkt
from ._approximate import APPROXIMATE, settle_approximation
from ._single import solve_single_participant
from ._solution import Certificate, Solution, Status, menu_fields, value_scale
from ._start import REWARDS, best_candidate, start_candidates
from .base import AbstractSolver, SolveArgs, Start, iterate, measure_point

log = logging.getLogger(__name__)

CONSTRAINT_SETS = ("simplified", "full")
_SAME_MENU_RTOL = 1e-9  # two candidate menus within this (relative, every entry) are one start
_TIE = 1e-12  # E[a]: a later start must beat an earlier converged one by more than this
_SCALE_FLOOR = 1.0  # units of data: the data scale is at least this
_ALM_START_FLOOR = 1e-3  # x data scale: the least contribution of a log-parameterized start
_LOG_FLOOR = 1e-9  # scaled: the least variable of a log-parameterized start (after projection)
_TINY = 1e-300  # guards a division by a contribution of 0
_BINDING_RENT = 1e-8  # x (v(1) - v(0)): an information rent this small is a binding IR


class SolveError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when the status is not CONVERGED."""

    def __init__(self, solution: Solution):
        super().__init__(f"solve did not converge: status={solution.status_name} ({solution.message})")
        self.solution = solution


def check_constraints(constraints: str) -> str:
    """``constraints`` if it names a constraint set, else ValueError naming it."""
    if constraints not in CONSTRAINT_SETS:
        raise ValueError(f"constraints must be one of {CONSTRAINT_SETS}, got {constraints!r}")
    return constraints


def check_menu(m, problem, name: str = "warm_start") -> jnp.ndarray:
    """Contributions ``m`` as a float64 (I,) array; ValueError naming ``name`` unless a valid monotone menu."""
    m = np.asarray(m, dtype=np.float64)
    num = problem.costs.shape[-1]
    if m.shape != (num,):
        raise ValueError(f"{name} must have shape ({num},) (contributions, canonical order), got {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {m.tolist()}")
    if np.any(np.diff(m) < 0.0):
        raise ValueError(f"{name} must be non-decreasing (canonical order, costliest type first), got {m.tolist()}")
    return jnp.asarray(m)


def restart_menu(m) -> np.ndarray:
    """Contributions (..., I) where a solve stopped, clipped to the monotone non-negative menus
    ``check_menu`` accepts (a polish can leave ulps off)."""
    return np.maximum.accumulate(np.maximum(np.asarray(m, np.float64), 0.0), axis=-1)


def distinct_starts(problem, table, count: int, constraints: str):
    """The ``count`` best distinct feasible candidate menus (jittable).

    Returns:
      (menus, distinct, any_found): (count', I) contributions, count' = min(count, 2I); (count',) bool,
      False for a row that repeats row 0 (no further distinct feasible candidate: the same run, not
      counted); () bool, whether any candidate is feasible. Row 0 is the best candidate (the m^res
      envelope when none is feasible).
    """
    candidates = start_candidates(problem, table, constraints)
    menus, found, value = candidates
    count = min(count, menus.shape[0])
    by_value = jnp.argsort(jnp.where(found, -value, jnp.inf))
    ranked = menus[by_value]
    same = jnp.all(jnp.abs(ranked[:, None, :] - ranked[None, :, :]) <= _SAME_MENU_RTOL * jnp.abs(ranked[None, :, :]),
                   axis=-1)
    earlier = jnp.any(jnp.tril(same, k=-1) & found[by_value][None, :], axis=1)
    unique = found.at[by_value].set(found[by_value] & ~earlier)
    order = jnp.argsort(jnp.where(unique, -value, jnp.inf))[:count]
    first, any_found = best_candidate(problem, candidates)
    distinct = unique[order] | (jnp.arange(count) == 0)
    return jnp.where(distinct[:, None], menus[order], first[None, :]).at[0].set(first), distinct, any_found


def variable_scales(problem, start_m, octaves: int) -> _kkt.Scales:
    """Scales of the variables: data per unit of each x_m ((I,)), money per unit of x_t and of G.

    The largest data scale is L = max(m^res, start, 1). With ``octaves`` > 0 each contribution is scaled
    by its size at the start, rounded down to a power of two of L and at least L / 2^octaves, so a
    quasi-Newton method's first steps (identity Hessian) are relative moves: one common scale let an
    SLSQP step from (97, 97, 435, 686, 1576) cut the smallest contributions to 0 and end 0.4 % below.
    Powers of two, so a start within a factor 2 of L keeps the common scale (a uniform 0.89 rescale
    turned 8 SLSQP iterations into 45 on a 9-type problem).
    """
    largest = jnp.maximum(jnp.maximum(jnp.max(start_m), jnp.max(problem.reservation_data)), _SCALE_FLOOR)
    ratio = largest / jnp.maximum(start_m, _TINY)
    data = largest * 2.0 ** -jnp.clip(jnp.floor(jnp.log2(ratio)), 0, octaves)
    return _kkt.Scales(data, value_unit(problem))


def start_point(solver: AbstractSolver, m, args: SolveArgs, warm):
    """Scaled variables of the menu with contributions m and the constraint set's start rewards
    (binding or least, ``_start.REWARDS``). A log-parameterized solver (``log_parameterized``) gets no
    exact zeros."""
    problem = args.problem
    if solver.log_parameterized:
        m = jnp.where(warm, m, jnp.maximum(m, _ALM_START_FLOOR * jnp.max(args.scales.data)))
    x = _kkt.encode(m, REWARDS[args.constraints](m, problem.costs, problem.reservation_utility), args.scales,
                    args.constraints)
    return jnp.maximum(_kkt.project(x, args.constraints), _LOG_FLOOR) if solver.log_parameterized else x


def best_run(values, converged):
    """Index of the converged run with the largest E[a] (values: (k,) E[a]), the earlier of two within
    ``_TIE``; run 0 when none converged. Works on numpy and traced arrays alike."""
    score = jnp.where(converged, values, -jnp.inf)
    top = jnp.max(score)
    return jnp.where(jnp.isfinite(top), jnp.argmax(score >= top - _TIE), 0)


def _decide(solver, it, violation, tol):
    """The one status decision of every solver, from the end point's measured violation (money) and
    the solver's verdicts (``base.Iterate``); ``tol`` the accepted violation, money. Without a claim of
    optimality: NONFINITE, FEASIBLE or INFEASIBLE; else CONVERGED (the solver's verdict and the measured
    violation), NONFINITE, INFEASIBLE (the solver's evidence and a violation above ``tol``),
    MAX_ITERATIONS or STALLED, in that order of precedence. () int32, jittable."""
    finite = jnp.all(jnp.isfinite(it.x)) & jnp.isfinite(violation)
    feasible = violation <= tol
    if not solver.claims_optimality:
        return jnp.where(~finite, Status.NONFINITE,
                         jnp.where(feasible & ~it.infeasible, Status.FEASIBLE, Status.INFEASIBLE))
    finite = finite & jnp.isfinite(it.kkt.stationarity)
    return jnp.where(it.converged & feasible & finite, Status.CONVERGED,
                     jnp.where(~finite, Status.NONFINITE,
                               jnp.where(it.infeasible & ~feasible, Status.INFEASIBLE,
                                         jnp.where(it.out_of_iterations, Status.MAX_ITERATIONS, Status.STALLED))))


def _args_scaled_at(solver, problem, table, constraints, m) -> SolveArgs:
    """``SolveArgs`` with the variable scales of the menu with contributions m ((I,))."""
    return SolveArgs(problem, table, variable_scales(problem, m, getattr(solver, "scale_octaves", 0)), constraints)


def _starts_and_args(solver, problem, table, constraints, warm_start, restart_from):
    """(SolveArgs, batched ``Start``, distinct (k,), any_found) of one solve (jittable)."""
    warm = warm_start is not None
    count = 2 * problem.num_types if solver.starts is None else solver.starts
    menus, distinct, found = distinct_starts(problem, table, 1 if warm else count, constraints)
    args = _args_scaled_at(solver, problem, table, constraints, menus[0])
    if restart_from is not None:
        menus = jnp.concatenate([jnp.asarray(restart_from, menus.dtype)[None, :], menus])
        distinct = jnp.concatenate([jnp.ones((1,), bool), distinct])
    if warm:
        menus, distinct = jnp.asarray(warm_start, menus.dtype)[None, :], jnp.ones((1,), bool)
    x = jax.vmap(lambda m: start_point(solver, m, args, warm))(menus)
    first = jnp.arange(x.shape[0]) == 0
    return args, Start(x, first, first & warm), distinct, found


def solve_kernel(solver: AbstractSolver, problem, table, constraints: str, warm_start=None, restart_from=None):
    """One jittable solve (``solver.jittable``): every start in turn (``lax.map``), the best converged run.

    Args:
      solver: the solver (a pytree: its leaves may change without recompiling).
      problem: canonical ``ContractProblem``.  table: its ``OutcomeTable`` (unweighted).
      constraints: "simplified" or "full" (static).  warm_start: optional (I,) contributions, the only
      start (polished before descending).  restart_from: optional (I,) contributions, a first start
      before the candidates.
    Returns:
      ``Solution`` (arrays; ``method``, ``backend`` and ``message`` filled in by the caller).
    """
    table = with_weights(problem, table)
    if (constraints == "full" and warm_start is None and restart_from is None
            and getattr(solver, "full_start", "candidates") == "simplified"):
        first = solve_kernel(solver, problem, table, "simplified")
        restart_from = first.contributions
    args, starts, distinct, _ = _starts_and_args(solver, problem, table, constraints, warm_start, restart_from)
    return _best_of_runs(solver, args, starts, distinct)


def _best_of_runs(solver: AbstractSolver, args: SolveArgs, starts: Start, distinct) -> Solution:
    """Run every start in turn (``lax.map``) and finish the best converged run (jittable): the second
    half of ``solve_kernel``, after the start search."""
    # One start after the other: a vmap over starts nested in a vmap over problems deadlocked XLA's CPU
    # runtime at batches of 256 (jax 0.10.2); a vmapped while loop runs until its slowest member anyway.
    runs = jax.lax.map(lambda s: iterate(solver, args, s), starts)
    ok = runs.converged & jnp.all(jnp.isfinite(runs.x), axis=1)
    it = jax.tree_util.tree_map(lambda a: a[best_run(runs.value, ok)], runs)
    return _finish(solver, args, it, jnp.sum(jnp.where(distinct, runs.iterations, 0)))


def _weighted_starts(solver, problem, table, constraints, warm_start, restart_from):
    """``_starts_and_args`` on the weighted table (jittable): the first half of ``solve_kernel``."""
    return _starts_and_args(solver, problem, with_weights(problem, table), constraints, warm_start, restart_from)


_start_search = kernel_jit(_weighted_starts, static_argnames="constraints")
_runs_kernel = kernel_jit(_best_of_runs)
_fused_kernel = kernel_jit(solve_kernel, static_argnames="constraints")


def _jitted_solve(solver: AbstractSolver, problem, table, constraints: str, warm_start, restart_from) -> Solution:
    """``solve_kernel`` of one problem as its two halves, the start search and the runs, compiled side by side.

    A first process spends most of a one-off solve compiling (``diffcontract._cache``): the start search
    compiles in a thread while this one traces and compiles the runs (XLA compiles without holding
    Python's lock), so the two cores of a laptop share the work (the Sec. 6.2 ALM kernel: 0.7 s and
    3.3 s to compile, 4.4-5.2 s as one kernel). A later process reads both executables. A solve whose
    kernels are not kept (``_cache.StoredKernel``), and a batch (``batch``), run ``solve_kernel`` whole.
    """
    if (constraints == "full" and warm_start is None and restart_from is None
            and getattr(solver, "full_start", "candidates") == "simplified"):
        restart_from = _jitted_solve(solver, problem, table, "simplified", None, None).contributions
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="diffcontract-compile") as pool:
        searched = _start_search.prepare(solver, problem, table, constraints, warm_start, restart_from, executor=pool)
        if searched is None:  # not kept (the cache is off, a curve class of the user's): the one kernel
            return _fused_kernel(solver, problem, table, constraints, warm_start, restart_from)
        _runs_kernel.prepare(solver, *searched[:3])
        args, starts, distinct, _ = _start_search(solver, problem, table, constraints, warm_start, restart_from)
    return _runs_kernel(solver, args, starts, distinct)


def _host_solve(solver: AbstractSolver, problem, table, constraints, warm_start, restart_from):
    """``solve_kernel`` for a host solver: a Python loop over the starts, phase-1 evidence of infeasibility.
    Returns (Solution, notes)."""
    table = _weighted(problem, table)
    if restart_from is not None and warm_start is None and not isinstance(table, OutcomeTable):
        # No candidate search. Host copies: a one-device program's results are committed to this process's
        # device, which a kernel sharded over several processes' devices refuses (jax.distributed).
        args, x = jax.tree_util.tree_map(np.asarray, _host_restart(solver, problem, table, constraints, restart_from))
        run = _as_arrays(iterate(solver, args, Start(np.asarray(x), True, False)))
        if bool(run.converged):
            return _host_finish(solver, args, run, int(run.iterations)), ["from the restart menu alone (streaming backend)"]
    # Always a restart row (a placeholder when there is none, dropped here): one compilation of the
    # start search serves a solve with and without ``restart_from`` (the fallback, the binding-IR check).
    placeholder = restart_from is None and warm_start is None
    first = jnp.zeros_like(problem.costs) if placeholder else restart_from
    args, starts, distinct, found = _host_starts(solver, problem, table, constraints, warm_start, first)
    distinct = np.array(distinct)
    distinct[0] &= not placeholder
    xs = [np.asarray(x) for x, d in zip(starts.x, distinct) if d]
    runs = []
    for k, x in enumerate(xs):
        runs.append(_as_arrays(iterate(solver, args, Start(x, k == 0, False))))
        if bool(runs[-1].converged) and not isinstance(table, OutcomeTable):
            break  # a streaming backend's pass is costly: the first converged start is kept (module docstring)
    best = int(best_run(np.array([float(r.value) for r in runs]), np.array([bool(r.converged) for r in runs])))
    it, iterations = runs[best], sum(int(r.iterations) for r in runs)
    notes = [f"best of {len(runs)} starts (start {best + 1})"] if len(runs) > 1 else []
    if len(runs) < len(xs):
        notes.append(f"start {len(runs)} converged: {len(xs) - len(runs)} more not run (streaming backend)")
    if not bool(it.converged) and not bool(found) and hasattr(solver, "find_feasible"):
        violation = float(measure_point(it.x, args)[1])
        if solver.feasibility_tol * float(args.scales.value) < violation < np.inf:
            it, extra, note = _phase_one(solver, args, it, violation, xs[0])
            iterations, notes = iterations + extra, notes + [note]
    return _host_finish(solver, args, it, iterations), notes


def _as_arrays(it):
    """A host solver's ``Iterate`` with array leaves (one compiled ``_host_finish`` for every run)."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64 if isinstance(a, float) else None), it)


def _finish(solver, args: SolveArgs, it, iterations) -> Solution:
    """The ``Solution`` of the chosen run ``it`` (``base.Iterate``) with its status, measured in money and data
    units: one pass over the outcomes."""
    m, t, mom, res = _kkt.measure(it.x, *args.kkt_args)
    fields = menu_fields(args.problem, m, t, mom, res)
    cert = Certificate(multipliers=_kkt.multiplier_record(it.multipliers, args.scales, args.constraints),
                       stationarity=it.kkt.stationarity, complementarity=it.kkt.complementarity)
    return Solution(problem=args.problem, **fields, iterations=iterations, wall_time=0.0, method=solver.method,
                    status=_decide(solver, it, fields["max_violation"], solver.feasibility_tol * args.scales.value),
                    certificate=cert if solver.claims_optimality else None, constraints=args.constraints, backend="")


def _phase_one(solver, args: SolveArgs, it, violation: float, x_start):
    """Look for a feasible point from the first start and from the run's end (``find_feasible``); restart
    from one within tolerance. Returns (end point, with ``infeasible`` set when none is found; iterations;
    note)."""
    tol = solver.feasibility_tol * float(args.scales.value)
    lowest, iterations = np.inf, 0
    for x_from in (x_start, np.asarray(it.x)):
        x1, nit = solver.find_feasible(args, x_from)
        iterations += nit
        low = float(measure_point(jnp.asarray(x1), args)[1])
        lowest = min(lowest, low)
        if low <= tol:  # a feasible point: optimize from it, and never call the problem infeasible
            rerun = _as_arrays(iterate(solver, args, Start(x1, True, False)))
            better = bool(rerun.converged) or float(measure_point(rerun.x, args)[1]) < violation
            return (rerun if better else it), iterations + int(rerun.iterations), "restarted from a phase-1 feasible point"
    note = f"phase 1 (minimize the largest violation) ends at {lowest:.3g} > tol {tol:.3g} money: no feasible point found"
    return it._replace(infeasible=jnp.asarray(True)), iterations, note


_weighted = kernel_jit(with_weights)


def _restart_args(solver, problem, table, constraints, restart_from):
    """(SolveArgs scaled at ``restart_from``, its scaled start point): a solve from one menu (jittable)."""
    args = _args_scaled_at(solver, problem, table, constraints, restart_from)
    return args, start_point(solver, restart_from, args, False)


_host_starts = kernel_jit(_starts_and_args, static_argnames=("constraints",))
_host_restart = kernel_jit(_restart_args, static_argnames=("constraints",))
_host_finish = kernel_jit(_finish)


def run(problem, solver: AbstractSolver, constraints: str = "simplified", backend: str = "auto",
        backend_options: dict | None = None, warm_start=None, restart_from=None, notes=()) -> Solution:
    """Solve one ``ContractProblem`` with ``solver`` (see the module docstring).

    Args:
      problem: ``ContractProblem``.  solver: an ``AbstractSolver`` (``ALM()``, ``SLSQP()``, ...).
      constraints: "simplified" or "full" (docs/model.md).  backend, backend_options: the expectation
      backend and its ``make_backend`` options.  warm_start: optional (I,) contributions (canonical
      order, non-decreasing), the only start.  restart_from: optional (I,) contributions, a first
      start before the candidates.  notes: strings appended to the message.
    Returns:
      ``Solution`` (numpy leaves) in canonical type order; CONVERGED only if the measured residuals
      meet the solver's tolerances.
    """
    check_constraints(constraints)
    if problem.num_participants == 1:
        check_backend_name(backend)  # a bad name is an error whatever N
        return solve_single_participant(problem, solver.method, constraints, solver.feasibility_tol)
    start = time.perf_counter()
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        plan, table = make_backend(problem64, backend, **checked_backend_options(backend_options))
        log.info("backend %s: %s", plan.backend, plan.reason)
        menus = [None if m is None else check_menu(m, problem64, name)
                 for m, name in ((warm_start, "warm_start"), (restart_from, "restart_from"))]
        canonical = without_input_order(problem64)  # one compilation for every type order
        with short_passes(plan.seconds_per_pass):  # compiled fast if chosen (_cache.fast_compile)
            if solver.jittable:
                sol, extra = _jitted_solve(solver, canonical, table, constraints, *menus), []
            else:
                sol, extra = _host_solve(solver, canonical, table, constraints, *menus)
            sol = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(sol))
    sol = sol.replace(problem=problem64, method=solver.method, backend=plan.backend, backend_reason=plan.reason,
                      status=int(sol.status), iterations=int(sol.iterations),
                      message="; ".join([solver.method, *notes, *extra]),
                      expected_value=float(sol.expected_value), expected_accuracy=float(sol.expected_accuracy),
                      max_violation=float(sol.max_violation))
    if plan.backend in APPROXIMATE:
        with _precision.float64():
            sol = settle_approximation(sol, canonical, table, solver.feasibility_tol, plan.memory_budget)
    log.debug("%s on the %s set, backend %s (I = %d, N = %d): %s after %d iterations, max violation %.2e",
              solver.method, constraints, plan.backend, problem.num_types, problem.num_participants,
              Status(sol.status).name.lower(), sol.iterations, sol.max_violation)
    if constraints == "simplified" and warm_start is None and restart_from is None:
        if sol.status == Status.CONVERGED:
            sol = _binding_ir_check(problem, solver, sol, backend, backend_options)
        elif sol.status != Status.INEXACT:
            log.info("%s: the simplified set gave %s; solving on the full set", solver.method, sol.status_name)
            sol = _full_fallback(problem, solver, sol, backend, backend_options)
    return sol.replace(wall_time=time.perf_counter() - start)


def _full_fallback(problem, solver, simplified: Solution, backend, backend_options) -> Solution:
    """The full set's solve of a problem the simplified set did not converge on (module docstring)."""
    full = run(problem, solver, "full", backend, backend_options, restart_from=restart_menu(simplified.m))
    reason = "appears empty" if simplified.status == Status.INFEASIBLE else "did not converge"
    iterations = simplified.iterations + full.iterations
    if simplified.status == Status.INFEASIBLE or full.succeeded:
        return full.replace(iterations=iterations, message=f"simplified set {reason} ({simplified.message}, "
                                                           f"{simplified.status_name}); full set: {full.message}")
    return simplified.replace(message=f"{simplified.message}; the full set did not converge either "
                                      f"({full.status_name}: {full.message})")


def _binding_ir_check(problem, solver, simplified: Solution, backend, backend_options) -> Solution:
    """The full set's solve from a converged simplified optimum where a cheaper type's IR binds; the
    better converged one of the two (module docstring, "Binding IRs")."""
    with _precision.float64():
        tol = _BINDING_RENT * value_scale(simplified.problem)
    if not np.any(np.asarray(simplified.information_rents)[1:] <= tol):
        return simplified
    full = run(problem, solver, "full", backend, backend_options, restart_from=restart_menu(simplified.m))
    if full.succeeded and full.expected_accuracy > simplified.expected_accuracy + _TIE:
        return full.replace(iterations=simplified.iterations + full.iterations, message=(
            f"{full.message}; the simplified set's optimum E[a] = {simplified.expected_accuracy:.12g} is below "
            f"the full set's (a cheaper type's IR binds)"))
    return simplified


def solver_for(method: str, options: dict) -> AbstractSolver:
    """The solver of ``method`` ("exact": ``SLSQP``, "alm": ``ALM``) with ``options`` as its fields."""
    from .alm import ALM
    from .exact import SLSQP

    classes = {"exact": SLSQP, "alm": ALM}
    if method not in classes:
        raise ValueError(f"method must be one of {sorted(classes)}, got {method!r}")
    return with_options(method, classes[method], options)


def with_options(method: str, cls, options: dict):
    """``cls(**options)`` for the dataclass of ``method``'s options; ValueError naming an unknown option
    (with the close match) before any is applied."""
    known = sorted(field.name for field in dataclasses.fields(cls))
    for name in sorted(set(options) - set(known)):
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"method={method!r} has no option {name!r}{hint}; its options are {known}")
    return cls(**options)


def solve_exact(problem, constraints: str = "simplified", backend: str = "auto", backend_options: dict | None = None,
                **options) -> Solution:
    """``run(problem, SLSQP(**options), ...)``: the exact reference solver (``exact.SLSQP``)."""
    return run(problem, solver_for("exact", options), constraints, backend, backend_options)


def solve_alm(problem, constraints: str = "simplified", backend: str = "auto", backend_options: dict | None = None,
              warm_start=None, **options) -> Solution:
    """``run(problem, ALM(**options), ...)``: the augmented-Lagrangian solver (``alm.ALM``)."""
    return run(problem, solver_for("alm", options), constraints, backend, backend_options, warm_start=warm_start)
