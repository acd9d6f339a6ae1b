"""Learned mechanism (issue 7): optimality gap, feasibility, throughput against the exact solver,
and ALM warm starts, on held-out problems, in one run.

    python benchmarks/learned_mechanism.py [--problems 200] [--mechanism FILE] [--repeats 3] [--seed 2024]

Held-out problems come from the mechanism's ``ProblemDistribution`` with a seed disjoint from its
training pool. Per problem: the exact solver (``solve``, one by one, as a user would call it) and
the learned mechanism (network + repair, one compiled batched call). Reported:
  * optimality gap (E[v*] - E[v_learned]) / E[v*] over the problems the exact solver converged on
    (mean, median, 90th percentile, max), the repaired contracts' largest constraint violation and
    how many pass the independent verifier at 1e-9;
  * problems per second: exact (total time over the problems) and learned (median of ``--repeats``
    batched calls after a compiling one, including the repair) and their ratio, in the same process;
  * ALM iterations (inner Adam steps per problem; a warm start first polishes the start itself) and batched time, cold (default
    starts) against warm-started from the learned contracts (``solve_batch(..., warm_start=...)``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import diffcontract as dc  # noqa: E402
from diffcontract.learned import load_mechanism  # noqa: E402
from diffcontract.mechanism import verify  # noqa: E402
from diffcontract.problem import unstack_problem  # noqa: E402

VERIFY_TOL = 1e-9


def timed(fn, repeats: int):
    fn()  # compile
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--mechanism", default=None, help="saved mechanism (default: the packaged I = 3 model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--no-alm", action="store_true", help="skip the ALM warm-start comparison")
    args = parser.parse_args()

    mechanism = load_mechanism(args.mechanism)
    problems = mechanism.distribution.sample(args.problems, seed=args.seed)
    print(f"{mechanism!r}; {args.problems} held-out problems (seed {args.seed})")

    start = time.perf_counter()
    exact = [dc.solve(unstack_problem(problems, k)) for k in tqdm(range(args.problems), desc="exact solves")]
    exact_s = time.perf_counter() - start
    learned_s, learned = timed(lambda: mechanism.solve(problems), args.repeats)

    feasible_mask = np.asarray(learned.status) == dc.Status.FEASIBLE
    full_only = np.array([e.constraints == "full" for e in exact])  # simplified set empty: exact fell back to full
    ok = np.array([e.succeeded for e in exact]) & feasible_mask
    ev = np.array([float(e.expected_value) for e in exact])
    gaps = (ev - np.asarray(learned.expected_value)) / ev
    verified = sum(verify(dc.unstack_solution(learned, k), tol=VERIFY_TOL).ok for k in range(args.problems))
    feasible = int(np.sum(np.asarray(learned.status) == dc.Status.FEASIBLE))
    g = gaps[ok]
    answered_full = full_only & ok
    print(f"\n{int(full_only.sum())} problems have an empty simplified constraint set (the exact solver solved the full "
          f"set); the mechanism (least rewards, full set) answered {int(answered_full.sum())} of them"
          + (f", mean gap there {gaps[answered_full].mean():.3%}" if answered_full.any() else "")
          + f"; infeasible: {int(np.sum(full_only & ~feasible_mask))} of them, {int(np.sum(~full_only & ~feasible_mask))} others")
    print(f"optimality gap over {ok.sum()} problems the exact solver converged on and the mechanism answered: mean {g.mean():.3%}, "
          f"median {np.median(g):.3%}, 90th percentile {np.quantile(g, 0.9):.3%}, max {g.max():.3%}")
    viol = np.asarray(learned.max_violation)[feasible_mask]
    print(f"feasible after repair: {feasible}/{args.problems}; verifier (tol {VERIFY_TOL:g}) passes "
          f"{verified}/{args.problems}; largest violation of a returned feasible contract {float(np.max(viol)):.2e} money")
    if args.no_alm:
        print(f"\n{'method':<38}{'seconds':>9}{'problems/s':>12}{'ratio':>9}")
        for name, seconds in (("exact (SLSQP, one by one)", exact_s), ("learned (network + repair, batched)", learned_s)):
            print(f"{name:<38}{seconds:>9.3f}{args.problems / seconds:>12.1f}{exact_s / seconds:>9.1f}")
        return

    cold_s, cold = timed(lambda: dc.solve_batch(problems, method="alm", table_length=mechanism.distribution.table_length),
                         args.repeats)
    cold1_s, cold1 = timed(lambda: dc.solve_batch(problems, method="alm", starts=1,
                                                  table_length=mechanism.distribution.table_length), args.repeats)
    warm_m = np.asarray(learned.contributions)
    warm_s, warm = timed(lambda: dc.solve_batch(problems, method="alm", warm_start=warm_m,
                                                table_length=mechanism.distribution.table_length), args.repeats)

    rows = [("exact (SLSQP, one by one)", exact_s, None, int(ok.sum())),
            ("learned (network + repair, batched)", learned_s, None, feasible),
            ("ALM batched, cold (2 starts)", cold_s, cold, None),
            ("ALM batched, cold (1 start)", cold1_s, cold1, None),
            ("ALM batched, warm from learned", warm_s, warm, None)]
    print(f"\n{'method':<38}{'seconds':>9}{'problems/s':>12}{'ratio':>9}{'Adam steps':>12}{'converged':>11}")
    for name, seconds, sol, count in rows:
        rate = args.problems / seconds
        ratio = exact_s / seconds
        if sol is not None:
            steps = f"{np.mean(sol.iterations):.1f}"
            converged = int(np.sum(np.asarray(sol.status) == dc.Status.CONVERGED))
        else:
            steps, converged = "-", count
        print(f"{name:<38}{seconds:>9.3f}{rate:>12.1f}{ratio:>9.1f}{steps:>12}{converged:>11}")
    both = (np.asarray(cold.status) == dc.Status.CONVERGED) & (np.asarray(warm.status) == dc.Status.CONVERGED)
    w_it, c_it = np.asarray(warm.iterations)[both], np.asarray(cold.iterations)[both]
    print(f"Adam steps to convergence over the {both.sum()} problems both converged on (non-converged members run to "
          f"max_outer and say so): mean {w_it.mean():.1f} warm vs {c_it.mean():.1f} cold (2 starts), "
          f"{1 - w_it.mean() / c_it.mean():.0%} fewer")
    diff = np.abs(np.asarray(warm.expected_value) - np.asarray(cold.expected_value)) / np.asarray(cold.expected_value)
    print(f"(ratio = exact seconds / row seconds; Adam steps = mean inner optimizer steps per problem.) Warm vs "
          f"cold: mean Adam steps {np.mean(warm.iterations):.1f} vs {np.mean(cold.iterations):.1f} "
          f"({1 - np.mean(warm.iterations) / np.mean(cold.iterations):.0%} fewer), vs 1-start "
          f"{np.mean(cold1.iterations):.1f}; median {np.median(warm.iterations):.0f} warm vs {np.median(cold.iterations):.0f} "
          f"cold; converged with 0 Adam steps: {int(np.sum(np.asarray(warm.iterations) == 0))} warm vs "
          f"{int(np.sum(np.asarray(cold.iterations) == 0))} cold; value agreement where both converged ({both.sum()}): max rel. diff "
          f"{np.max(diff[both]) if both.any() else float('nan'):.1e}")


if __name__ == "__main__":
    main()
