"""Solving many problems in one compiled call (``vmap`` over a batch of problems)."""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import _precision
from ..expectation import OutcomeTable, bucket_length, num_outcomes, outcome_table
from ..problem import ContractProblem, batch_size, stack_problems, unstack_problem
from .alm import ALMOptions, _solution_from_result, alm_kernel, restart_menu
from ._kkt import PARAMETERIZATIONS
from ._solution import Solution, Status


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


def _batched_kernel(problem, table, warm_start, restart_from, parameterization, options):
    result = alm_kernel(problem, table, parameterization=parameterization, options=options, warm_start=warm_start,
                        restart_from=restart_from)
    return _solution_from_result(problem, table, result, parameterization, 0.0)


_batched_alm = jax.jit(jax.vmap(_batched_kernel, in_axes=(0, 0, 0, 0, None, None)), static_argnums=(4, 5))


def solve_batch(problems, method: str = "alm", constraints: str = "reduced", options: ALMOptions | None = None,
                progress: bool = False, table_length: int | None = None, warm_start=None, **overrides) -> Solution:
    """Solve a batch of problems; returns one ``Solution`` whose leaves have a leading batch axis.

    Args:
      problems: a list of ``ContractProblem`` (same I, conditioning and curve kinds; N, p, c, curve
        parameters may differ) or a batched problem from ``problem_grid``/``stack_problems``.
      method: "alm" (one compiled ``vmap`` call; outcome tables padded to the largest N) or
        "exact" (scipy per problem on the host, then stacked).
      constraints: "reduced"/"simplified" or "full".
      options: ``ALMOptions`` for "alm"; ``overrides`` replace fields (for "exact": solver options).
      progress: show a progress bar (exact method).
      table_length: pad outcome tables to this many rows (default: ``bucket_length`` of the largest
        N). Chunks of one sweep given the same length share one compilation.
      warm_start: optional (B, I) contributions (canonical order, non-decreasing rows), one start
        per member ("alm"; e.g. ``LearnedMechanism.solve(batch).contributions``); see ``alm_kernel``.

    Returns:
      Batched ``Solution`` (canonical type order). ``unstack_solution(sol, k)`` extracts one. A
      vmapped while-loop runs until its slowest member stops; each member's status says whether it
      converged. Members with one participant (N = 1) get their unique feasible menu, as from
      ``solve`` (``solvers/_single.py``); under "alm" they ride along in the vmapped call as copies
      of another member (an N = 1 member never converges there and would keep the loop running to
      ``max_outer``), and their rows are then replaced.
      As in ``solve_alm`` (``alm._full_fallback``), members the reduced parameterization does not
      converge on are re-solved with the full one, in one more batched call over just those
      members (compiled only when needed): a member's row is replaced when its reduced solve was
      "infeasible" (the simplified set can be empty while the full problem is feasible) or its
      full solve converged. The message lists the replaced members. The batch keeps the reduced
      certificate layout: a replaced row's "budget" and "ir_others" multipliers are the full
      solve's budget and IR_2..I multipliers, its "monotone" ones are 0 (the full set has none;
      its IC multipliers are not in the layout: ``solve(problem, method="alm")`` gives the full
      certificate), and its stationarity and complementarity are the full solve's.
    """
    if isinstance(problems, ContractProblem) and batch_size(problems) is not None:
        batch = problems
    else:
        batch = stack_problems(problems)
    if method == "exact":
        from tqdm.auto import tqdm

        from .exact import solve_exact

        constraints = {"reduced": "simplified"}.get(constraints, constraints)
        num = batch_size(batch)
        sols = [solve_exact(unstack_problem(batch, k), constraints=constraints, **overrides)
                for k in tqdm(range(num), disable=not progress, desc="exact solves")]
        return _stack_solutions(sols)
    if method != "alm":
        raise ValueError(f"method must be 'alm' or 'exact' for solve_batch, got {method!r}")
    constraints = {"simplified": "reduced"}.get(constraints, constraints)
    if constraints not in PARAMETERIZATIONS:
        raise ValueError(f"constraints must be one of {PARAMETERIZATIONS}, got {constraints!r}")
    options = (options or ALMOptions())._replace(**overrides)
    start = time.perf_counter()
    num = batch_size(batch)
    single = np.flatnonzero(np.asarray(batch.participants).ravel() == 1)
    if single.size == num:  # nothing for the ALM: every member's menu is the reservation menu
        sols = [_single_solution(unstack_problem(batch, k), constraints, options.feasibility_tol) for k in range(num)]
        elapsed = time.perf_counter() - start
        return _stack_solutions(sols).replace(
            problem=batch, wall_time=np.full(num, elapsed / num),
            message=f"batched ALM ({num} problems, {elapsed:.3f} s); every member has N = 1: the reservation menu")
    # N = 1 members cannot converge in the ALM (one feasible point) and would keep the vmapped loop
    # running to max_outer: they ride along as copies of a solvable member, then get their own rows.
    rows = np.arange(num)
    rows[single] = np.setdiff1d(rows, single)[0]
    with _precision.float64():
        solvable = jax.tree_util.tree_map(lambda a: np.asarray(a)[rows], batch) if single.size else batch
        tables = batch_tables(solvable.participants, solvable.num_types, table_length)
        batch64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), solvable)
        tables = OutcomeTable(jnp.asarray(tables.counts), jnp.asarray(tables.valid))
        if warm_start is not None:
            from .alm import _check_warm_start

            warm = np.asarray(warm_start, dtype=np.float64)
            if warm.ndim != 2 or warm.shape[0] != num:
                raise ValueError(f"warm_start must have shape ({num}, I), got {warm.shape}")
            checked = [_check_warm_start(row, unstack_problem(batch, k)) for k, row in enumerate(warm)]
            warm_start = jnp.stack([checked[k] for k in rows])
        sol = _batched_alm(batch64, tables, warm_start, None, constraints, options)
        sol = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(sol))
        replaced = []
        if constraints == "reduced":
            sol, replaced = _with_full_fallback(sol, batch64, tables, options, exclude=single)
    if single.size:
        sol = _with_single_participant_members(sol, batch, single, constraints, options.feasibility_tol)
    elapsed = time.perf_counter() - start
    note = f"; {single.size} N = 1 members: the reservation menu (solvers/_single.py)" if single.size else ""
    if replaced:
        note += (f"; members {replaced} not converged with the reduced parameterization: "
                 "full parameterization's solution")
    return sol.replace(problem=batch, wall_time=np.full(num, elapsed / num),
                       message=f"batched ALM ({num} problems, {elapsed:.3f} s){note}")


def _with_full_fallback(sol: Solution, batch64, tables: OutcomeTable, options: ALMOptions,
                        exclude) -> tuple[Solution, list[int]]:
    """Re-solve the non-converged members with the full parameterization (one batched call).

    Returns the solution with replaced rows (see ``solve_batch``) and the replaced members' indices.
    ``exclude``: members not to re-solve (the N = 1 copies).
    """
    status = np.asarray(sol.status)
    members = np.setdiff1d(np.flatnonzero(status != Status.CONVERGED), exclude)
    if members.size == 0:
        return sol, []
    take = lambda a: jnp.asarray(np.asarray(a)[members])  # noqa: E731
    sub = jax.tree_util.tree_map(take, batch64)
    sub_tables = OutcomeTable(take(tables.counts), take(tables.valid))
    restart_from = jnp.asarray(restart_menu(np.asarray(sol.contributions)[members]))
    full = jax.tree_util.tree_map(np.asarray, jax.block_until_ready(
        _batched_alm(sub, sub_tables, None, restart_from, "full", options)))
    rows = {}
    for k, member in enumerate(members):
        row = unstack_solution(full.replace(problem=sub), k)
        if status[member] == Status.INFEASIBLE or row.succeeded:
            rows[int(member)] = _in_reduced_layout(row)
    return _replace_rows(sol, rows), sorted(rows)


def _in_reduced_layout(full: Solution) -> Solution:
    """A full-parameterization member in the reduced certificate layout (see ``solve_batch``)."""
    mult = full.certificate.multipliers
    reduced = {"budget": mult["budget"], "ir_others": mult["ir"][1:],
               "monotone": np.zeros_like(mult["budget"])}
    return full.replace(certificate=full.certificate.replace(multipliers=reduced))


def _replace_rows(sol: Solution, rows: dict) -> Solution:
    """``sol`` (batched) with member k's row replaced by the unbatched ``rows[k]`` (same layout)."""
    if not rows:
        return sol
    leaves, treedef = jax.tree_util.tree_flatten(sol.replace(problem=None, message=""))
    leaves = [np.array(leaf, copy=True) for leaf in leaves]
    for k, one in rows.items():
        one_leaves = jax.tree_util.tree_leaves(one.replace(problem=None, message=""))
        if len(one_leaves) != len(leaves):
            raise RuntimeError("a replacement row does not match the batch's structure")
        for leaf, value in zip(leaves, one_leaves):
            leaf[k] = np.asarray(value, dtype=leaf.dtype)
    return jax.tree_util.tree_unflatten(treedef, leaves).replace(problem=sol.problem, message=sol.message)


def _with_single_participant_members(sol: Solution, batch, members, parameterization: str,
                                     feasibility_tol: float) -> Solution:
    """``sol`` with the rows of the N = 1 members replaced by their unique feasible menu.

    The vmapped ALM cannot solve N = 1 (its feasible set is one point, see ``_single``) and reports
    it "infeasible"; ``solve_alm`` returns the reservation menu instead, and so does a batch.
    """
    return _replace_rows(sol, {int(k): _single_solution(unstack_problem(batch, int(k)), parameterization,
                                                        feasibility_tol) for k in members})


def _single_solution(problem, parameterization: str, feasibility_tol: float) -> Solution:
    from ._single import solve_single_participant

    return solve_single_participant(problem, "alm", parameterization, feasibility_tol)


def _stack_solutions(solutions: Sequence[Solution]) -> Solution:
    first = solutions[0]
    problem = stack_problems([s.problem if isinstance(s.problem, ContractProblem) else s.problem for s in solutions])
    stripped = [s.replace(problem=None, message="") for s in solutions]
    stacked = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *stripped)
    return stacked.replace(problem=problem, method=first.method, constraints=first.constraints,
                           message=f"{len(solutions)} exact solves")


def unstack_solution(solution: Solution, index: int) -> Solution:
    """Member ``index`` of a batched ``Solution``."""
    problem = unstack_problem(solution.problem, index)
    rest = jax.tree_util.tree_map(lambda a: np.asarray(a)[index], solution.replace(problem=None))
    return rest.replace(problem=problem)


def batch_status_counts(solution: Solution) -> dict[str, int]:
    """How many members of a batch ended in each ``Status``."""
    status = np.asarray(solution.status).ravel()
    return {s.name.lower(): int(np.sum(status == s)) for s in Status if np.any(status == s)}
