r"""The paper's Sec. 6.1 sweep: two types over a grid of (N, p_1), incomplete and complete information.

Grid (docs/model.md): c = (0.02, 0.01), N = 2..100 step 2, p_1 in linspace(0.01, 0.99, 30) — 1,500
problems. Each is solved by the batched ALM (one compiled ``vmap`` per chunk, every chunk the same
shape so one compilation serves all) and by the complete-information benchmark; the welfare
comparison (information cost, rents) follows. Results are arrays shaped (num_N, num_p1[, 2]).
"""

from __future__ import annotations

import csv
import os
import time
from typing import NamedTuple, Sequence

import numpy as np

from ..expectation import bucket_length, num_outcomes
from ..problem import problem_grid
from ..solvers import Status, solve_batch, solve_complete_information_batch

#: docs/model.md Sec. 6.1 grid.
SEC61_COSTS = (0.02, 0.01)
SEC61_PARTICIPANTS = tuple(range(2, 101, 2))
SEC61_P1 = tuple(np.linspace(0.01, 0.99, 30))
#: The fields of a batched ``Solution`` a ``SweepResult`` keeps.
_SOLUTION_FIELDS = ("contributions", "rewards", "utilities", "information_rents", "reservation_utilities",
                    "expected_value", "status", "max_violation")


class SweepResult(NamedTuple):
    """Arrays over the (N, p_1) grid; money in the valuation's units, data in units of data.

    participants: (A,) N values.  p1: (P,) probability of type 1 (the costlier type).
    contributions, rewards, utilities, information_rents, reservation_utilities: (A, P, 2).
    expected_value: (A, P) E[v(a(n . m*))] (incomplete information).
    complete_value: (A, P) E[v(A_CI(n))].  information_cost: (A, P) complete - incomplete.
    status, complete_status: (A, P) ``Status`` ints.  max_violation: (A, P) money.
    timings: dict of seconds ("incomplete", "complete", "build") measured in this run.
    """

    participants: np.ndarray
    p1: np.ndarray
    costs: np.ndarray
    contributions: np.ndarray
    rewards: np.ndarray
    utilities: np.ndarray
    information_rents: np.ndarray
    reservation_utilities: np.ndarray
    expected_value: np.ndarray
    complete_value: np.ndarray
    information_cost: np.ndarray
    status: np.ndarray
    complete_status: np.ndarray
    max_violation: np.ndarray
    timings: dict


def two_type_sweep(costs: Sequence[float] = SEC61_COSTS, participants: Sequence[int] = SEC61_PARTICIPANTS,
                   p1: Sequence[float] = SEC61_P1, accuracy=None, valuation=None, chunk_size: int = 500,
                   progress: bool = True, constraints: str = "simplified") -> SweepResult:
    """Solve the two-type grid (incomplete and complete information) and compare welfare.

    Args:
      costs: (2,) c_1 > c_2.  participants: N values.  p1: type-1 probabilities in (0, 1).
      accuracy, valuation: curves (default SGB(1, 1), v = 100 r).
      chunk_size: problems per compiled call (bounds memory; the progress bar advances per chunk).
      progress: show the compilation (with the first chunk) as its own step, then a tqdm bar.
      constraints: constraint set of the ALM, "simplified" or "full".
    """
    import jax

    from .._progress import steps_with_progress

    ns = np.asarray(participants, dtype=int)
    ps = np.asarray(p1, dtype=float)
    grid_n, grid_p = np.meshgrid(ns, ps, indexing="ij")
    flat_n, flat_p = grid_n.ravel(), grid_p.ravel()
    num = flat_n.size
    start = time.perf_counter()
    batch = problem_grid(flat_n, np.stack([flat_p, 1.0 - flat_p], axis=1), np.tile(np.asarray(costs, float), (num, 1)),
                         accuracy=accuracy, valuation=valuation)
    timings = {"build": time.perf_counter() - start, "incomplete": 0.0, "complete": 0.0}
    length = bucket_length(num_outcomes(int(ns.max()), 2))
    chunk_size = max(1, min(int(chunk_size), num))
    starts = range(0, num, chunk_size)
    sizes = [min(chunk_size, num - lo) for lo in starts]

    def solve_chunk(k: int):
        lo = starts[k]
        idx = np.arange(lo, lo + chunk_size).clip(max=num - 1)  # the last chunk repeats its last member
        chunk = jax.tree_util.tree_map(lambda a: np.asarray(a)[idx] if np.ndim(a) and np.shape(a)[0] == num else a, batch)
        t0 = time.perf_counter()
        sol = solve_batch(chunk, method="alm", constraints=constraints, table_length=length)
        timings["incomplete"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        ci = solve_complete_information_batch(chunk, table_length=length)
        timings["complete"] += time.perf_counter() - t0
        arrays = {name: getattr(sol, name) for name in _SOLUTION_FIELDS}
        arrays.update(complete_value=ci.expected_value, complete_status=ci.status)
        return {name: np.asarray(a)[:sizes[k]] for name, a in arrays.items()}

    pieces = list(steps_with_progress(solve_chunk, sizes, "Sec. 6.1 sweep", enabled=progress))
    fields = {}
    for name in pieces[0]:  # the chunks' values on the (N, p_1) grid
        values = np.concatenate([piece[name] for piece in pieces])
        fields[name] = values.reshape(grid_n.shape + values.shape[1:])
    return SweepResult(participants=ns, p1=ps, costs=np.asarray(costs, float), timings=timings,
                       information_cost=fields["complete_value"] - fields["expected_value"], **fields)


def status_summary(status: np.ndarray) -> dict[str, int]:
    """Count of each ``Status`` name in an array of status ints."""
    flat = np.asarray(status).ravel()
    return {s.name.lower(): int(np.sum(flat == s)) for s in Status if np.any(flat == s)}


def save_sweep(result: SweepResult, out_dir: str, figures: bool = True, fmt: str = "png") -> list[str]:
    """Write ``sweep.npz``, ``sweep.csv`` (one row per problem) and, optionally, the figures.

    Args:
      result: a ``SweepResult``. out_dir: output folder (created).
      figures: also write ``sweep_contracts.<fmt>`` and ``sweep_welfare.<fmt>`` (``plots.plot_sweep``).
      fmt: figure format, "png", "pdf" or "svg" (checked before anything is written).
    Returns:
      the paths written.
    """
    if figures:
        from .plots import check_format, plot_sweep

        fmt = check_format(fmt)
    os.makedirs(out_dir, exist_ok=True)
    arrays = {k: v for k, v in result._asdict().items() if k != "timings"}
    paths = [os.path.join(out_dir, "sweep.npz"), os.path.join(out_dir, "sweep.csv")]
    np.savez(paths[0], **arrays)
    with open(paths[1], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["N", "p1", "m1", "m2", "t1", "t2", "rent1", "rent2", "expected_value", "complete_value",
                         "information_cost", "status", "complete_status", "max_violation"])
        for a, n in enumerate(result.participants):
            for b, p in enumerate(result.p1):
                numbers = [*result.contributions[a, b], *result.rewards[a, b], *result.information_rents[a, b],
                           result.expected_value[a, b], result.complete_value[a, b], result.information_cost[a, b]]
                statuses = (Status(int(s[a, b])).name.lower() for s in (result.status, result.complete_status))
                writer.writerow([int(n), f"{p:.6g}", *(f"{x:.12g}" for x in numbers), *statuses,
                                 f"{result.max_violation[a, b]:.3e}"])
    if figures:
        paths += plot_sweep(result, out_dir, fmt)
    return paths
