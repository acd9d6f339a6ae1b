"""Solving many problems in one compiled call (``vmap`` of the driver's kernel over a batch of problems)."""

from __future__ import annotations

import functools
import logging
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._cache import kernel_jit, short_passes
from .. import _precision
from ..expectation import OutcomeTable, bucket_length, num_outcomes, outcome_table
from ..expectation.planner import pass_seconds
from ..problem import ContractProblem, batch_size, stack_problems, unstack_problem
from ._single import solve_single_participant
from ._solution import Solution, Status
from .driver import check_constraints, check_menu, restart_menu, run, solve_kernel, solver_for

log = logging.getLogger(__name__)


def batch_tables(participants: Sequence[int], num_types: int, length: int | None = None) -> OutcomeTable:
    """Outcome tables for each N, padded with invalid rows: (B, K, I), (B, K).

    K is ``length`` if given (a sweep solved in chunks keeps one compiled shape), else the
    ``bucket_length`` of the largest N.
    """
    ns = [int(n) for n in np.asarray(participants).ravel()]
    needed = max(num_outcomes(n, num_types) for n in set(ns))
    if length is None:
        length = bucket_length(needed)
    elif length < needed:
        raise ValueError(f"table_length={length} is shorter than the {needed} outcomes of N={max(ns)}")
    cache = {n: outcome_table(n, num_types, length) for n in set(ns)}
    return OutcomeTable(np.stack([cache[n].counts for n in ns]), np.stack([cache[n].valid for n in ns]))


_batched_kernel = kernel_jit(jax.vmap(solve_kernel, in_axes=(None, 0, 0, None, 0, 0)), static_argnums=(3,))


@functools.lru_cache(maxsize=16)
def _sharded_kernel(devices: int, constraints: str):
    """``_batched_kernel`` with the members split over ``jax.devices()[:devices]`` (``shard_map`` on a
    1-D mesh, axis "problems"): each device solves its share, and one ``all_gather`` returns every
    member to every device, so the result is replicated (readable in every process under
    ``jax.distributed``, where ``jax.devices()`` lists every host's devices)."""
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:devices]), ("problems",))
    spec = jax.sharding.PartitionSpec

    def per_device(solver, problems, tables, warm_start, restart_from):
        local = jax.vmap(solve_kernel, in_axes=(None, 0, 0, None, 0, 0))(solver, problems, tables, constraints,
                                                                        warm_start, restart_from)
        return jax.tree_util.tree_map(lambda a: jax.lax.all_gather(a, "problems", tiled=True), local)

    return kernel_jit(jax.shard_map(per_device, mesh=mesh, in_specs=(spec(),) + (spec("problems"),) * 4,
                                 out_specs=spec(), check_vma=False), stored=False)  # the mesh is not an argument


def _solve_members(solver, problems, tables, constraints, warm_start, restart_from, devices: int = 1) -> Solution:
    """The batched kernel on one device, or sharded over ``devices`` (members padded to a multiple of it
    with copies of the first, which are dropped again). Returns host (numpy) leaves."""
    if devices == 1:
        with short_passes(pass_seconds(tables.counts.size + tables.valid.size)):  # B K (I + 1) entries
            return _host(_batched_kernel(solver, problems, tables, constraints, warm_start, restart_from))
    if not 1 <= devices <= jax.device_count():
        raise ValueError(f"devices must be in 1..{jax.device_count()} (jax.device_count()), got {devices!r}")
    num = tables.counts.shape[0]
    rows = np.concatenate([np.arange(num), np.zeros(-num % devices, dtype=int)])
    padded = [jax.tree_util.tree_map(lambda a: jnp.asarray(a)[rows], x)
              for x in (problems, tables, warm_start, restart_from)]
    sol = _host(_sharded_kernel(devices, constraints)(solver, *padded))
    return jax.tree_util.tree_map(lambda a: a[:num], sol)


def solve_batch(problems, method: str = "alm", constraints: str = "simplified", solver=None, progress: bool = False,
                table_length: int | None = None, warm_start=None, devices: int = 1, **options) -> Solution:
    """Solve a batch of problems; returns one ``Solution`` whose leaves have a leading batch axis.

    Args:
      problems: a list of ``ContractProblem`` (same I, conditioning and curve kinds; N, p, c, curve
        parameters may differ) or a batched problem from ``problem_grid``/``stack_problems``.
      method: "alm" (one compiled ``vmap`` of the driver's kernel; outcome tables padded to the largest
        N) or "exact" (the host solver per problem, then stacked); or give ``solver=`` directly.
      constraints: "simplified" or "full".  options: the solver's fields (``ALM``/``SLSQP``).
      progress: a progress bar over the problems (host solvers).
      table_length: pad outcome tables to this many rows (default: ``bucket_length`` of the largest
        N). Chunks of one sweep given the same length share one compilation.
      warm_start: optional (B, I) contributions (canonical order, non-decreasing rows), one start
        per member (jittable solvers).
      devices: split the members over ``jax.devices()[:devices]`` (jittable solvers; on several hosts,
        after ``jax.distributed.initialize()``, every process gets every member). 1: the default device.

    Returns:
      Batched ``Solution`` (canonical type order); ``unstack_solution(sol, k)`` extracts one. A vmapped
      while loop runs until its slowest member stops; each member's status says whether it converged.
      N = 1 members get their unique feasible menu (``_single``): they ride along in the vmapped call as
      copies of another member (they never converge there) and their rows are then replaced. As in
      ``driver.run``, members the simplified set does not converge on are solved on the full set in one
      more batched call over just those members; the message lists the replaced members, whose
      certificates are put in the simplified layout (``_in_simplified_layout``).
    """
    batch = problems if isinstance(problems, ContractProblem) and batch_size(problems) is not None \
        else stack_problems(problems)
    solver = solver if solver is not None else solver_for(method, options)
    check_constraints(constraints)
    num = batch_size(batch)
    if not solver.jittable:
        if devices != 1:
            raise ValueError(f"devices={devices!r}: only jittable solvers (method='alm') split a batch over devices")
        from .._progress import steps_with_progress

        sols = list(steps_with_progress(lambda k: run(unstack_problem(batch, k), solver, constraints), [1] * num,
                                        f"{solver.method} solves", enabled=progress))
        return _stack_solutions(sols)
    start = time.perf_counter()
    single = np.flatnonzero(np.asarray(batch.participants).ravel() == 1)
    singles = {int(k): solve_single_participant(unstack_problem(batch, int(k)), solver.method, constraints,
                                                solver.feasibility_tol) for k in single}
    replaced = []
    if single.size < num:  # N = 1 members ride along as copies of a solvable member
        rows = np.arange(num)
        rows[single] = np.setdiff1d(rows, single)[0]
        with _precision.float64():
            solvable = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[rows], jnp.float64), batch)
            tables = jax.tree_util.tree_map(jnp.asarray, batch_tables(solvable.participants, solvable.num_types,
                                                                      table_length))
            if warm_start is not None:
                warm_start = _checked_rows(warm_start, batch, rows)
            sol = _solve_members(solver, solvable, tables, constraints, warm_start, None, devices)
            if constraints == "simplified":
                sol, replaced = _with_full_fallback(sol, solver, solvable, tables, single, devices)
        sol = _replace_rows(sol, singles)
    else:
        sol = _stack_solutions(list(singles.values()))
    elapsed = time.perf_counter() - start
    log.info("batched %s: %d problems in %.3f s (compilation included on a first call)", solver.method, num, elapsed)
    note = f"; {single.size} N = 1 members: the reservation menu (solvers/_single.py)" if single.size else ""
    if single.size == num:
        note = "; every member has N = 1: the reservation menu"
    if replaced:
        note += f"; members {replaced} not converged with the simplified set: full set's solution"
    return sol.replace(problem=batch, wall_time=np.full(num, elapsed / num), method=solver.method,
                       constraints=constraints, backend="enumerate",
                       message=f"batched {solver.method} ({num} problems, {elapsed:.3f} s){note}")


def _host(sol: Solution) -> Solution:
    return jax.tree_util.tree_map(np.asarray, jax.block_until_ready(sol))


def _checked_rows(warm_start, batch, rows):
    warm = np.asarray(warm_start, dtype=np.float64)
    if warm.ndim != 2 or warm.shape[0] != rows.size:
        raise ValueError(f"warm_start must have shape ({rows.size}, I), got {warm.shape}")
    return jnp.stack([check_menu(row, unstack_problem(batch, k)) for k, row in enumerate(warm)])[rows]


def _with_full_fallback(sol: Solution, solver, batch64, tables: OutcomeTable, exclude,
                        devices: int = 1) -> tuple[Solution, list[int]]:
    """Re-solve the non-converged members on the full set (one batched call); replace a member's row
    when its simplified solve was infeasible or its full solve converged. Returns (solution, replaced)."""
    status = np.asarray(sol.status)
    members = np.setdiff1d(np.flatnonzero(status != Status.CONVERGED), exclude)
    if members.size == 0:
        return sol, []
    sub, sub_tables = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[members]), (batch64, tables))
    restart_from = jnp.asarray(restart_menu(np.asarray(sol.contributions)[members]))
    full = _solve_members(solver, sub, sub_tables, "full", None, restart_from, devices)
    rows = {}
    for k, member in enumerate(members):
        row = unstack_solution(full.replace(problem=sub), k)
        if status[member] == Status.INFEASIBLE or row.succeeded:
            rows[int(member)] = _in_simplified_layout(row)
    return _replace_rows(sol, rows), sorted(rows)


def _in_simplified_layout(full: Solution) -> Solution:
    """A full-set member in the simplified certificate layout: budget, IR_2..I; no monotone multipliers
    (the full set has none; ``solve(problem)`` gives the full certificate)."""
    mult = full.certificate.multipliers
    simplified = {"budget": mult["budget"], "ir_others": mult["ir"][1:], "monotone": np.zeros_like(mult["budget"])}
    return full.replace(certificate=full.certificate.replace(multipliers=simplified))


def _replace_rows(sol: Solution, rows: dict) -> Solution:
    """``sol`` (batched) with member k's row replaced by the unbatched ``rows[k]`` (same layout)."""
    if not rows:
        return sol
    leaves, treedef = jax.tree_util.tree_flatten(sol.replace(problem=None, message="", backend_reason=""))
    leaves = [np.array(leaf, copy=True) for leaf in leaves]
    for k, one in rows.items():
        one_leaves = jax.tree_util.tree_leaves(one.replace(problem=None, message="", backend_reason=""))
        if len(one_leaves) != len(leaves):
            raise RuntimeError("a replacement row does not match the batch's structure")
        for leaf, value in zip(leaves, one_leaves):
            leaf[k] = np.asarray(value, dtype=leaf.dtype)
    return jax.tree_util.tree_unflatten(treedef, leaves).replace(problem=sol.problem, message=sol.message,
                                                                 backend_reason=sol.backend_reason)


def _stack_solutions(solutions: Sequence[Solution]) -> Solution:
    first = solutions[0]
    problem = stack_problems([s.problem for s in solutions])
    stripped = [s.replace(problem=None, message="", backend_reason="") for s in solutions]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *stripped)
    return stacked.replace(problem=problem, method=first.method, constraints=first.constraints,
                           message=f"{len(solutions)} {first.method} solves")


def unstack_solution(solution: Solution, index: int) -> Solution:
    """Member ``index`` of a batched ``Solution``."""
    problem = unstack_problem(solution.problem, index)
    rest = jax.tree_util.tree_map(lambda a: np.asarray(a)[index], solution.replace(problem=None))
    return rest.replace(problem=problem)


def batch_status_counts(solution: Solution) -> dict[str, int]:
    """How many members of a batch ended in each ``Status``."""
    status = np.asarray(solution.status).ravel()
    return {s.name.lower(): int(np.sum(status == s)) for s in Status if np.any(status == s)}
