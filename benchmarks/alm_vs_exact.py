"""ALM against the exact solver on random instances: how often the ALM reaches the exact optimum.

    python benchmarks/alm_vs_exact.py [--per-size 40] [--sizes 2 3 4 5] [--starts 1 2] [--seed 0]

Random problems (I types, N uniform in 2..12, Dirichlet probabilities floored at 0.02, costs
log-uniform in [1e-3, 1], SGB accuracy and linear valuation; issue 3's I <= 5, N <= 12) are
solved by ``solve(method="exact")`` one by one and by ``solve_batch(method="alm")`` per I (one
compiled call), once for each ``ALM.starts``. A row counts the instances where the exact
solver succeeded ("compared"), where the ALM value is within 1e-6 relative of it ("agree", issue
3's bar), where the ALM is below it ("local optimum"), and where the ALM failed to converge. The
batched ALM time is the median of ``--repeats`` calls after a compiling one; the exact time is
the sum over the instances, in the same process.
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

VALUE_RTOL = 1e-6  # issue 3: ALM expected value within 1e-6 relative of the exact solver


def random_problems(rng: np.random.Generator, num_types: int, count: int) -> list:
    problems = []
    for _ in range(count):
        probs = np.maximum(rng.dirichlet(np.ones(num_types)), 0.02)
        costs = np.sort(10.0 ** rng.uniform(-3.0, 0.0, num_types))[::-1]
        problems.append(dc.ContractProblem(participants=int(rng.integers(2, 13)), probs=probs / probs.sum(),
                                           costs=costs))
    return problems


def compare(problems, exact, batch) -> dict:
    out = {"compared": 0, "agree": 0, "local": 0, "alm_failed": 0, "above": 0, "worst_gap": 0.0}
    for k, ex in enumerate(exact):
        if not ex.succeeded:
            continue
        out["compared"] += 1
        alm = dc.unstack_solution(batch, k)
        scale = max(abs(float(ex.expected_value)), 1.0)
        gap = (float(ex.expected_value) - float(alm.expected_value)) / scale
        if not alm.succeeded:
            out["alm_failed"] += 1
        elif abs(gap) <= VALUE_RTOL:
            out["agree"] += 1
        elif gap > 0:
            out["local"] += 1
        else:
            out["above"] += 1
        if alm.succeeded:
            out["worst_gap"] = max(out["worst_gap"], gap)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-size", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--starts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for num in args.sizes:
        problems = random_problems(rng, num, args.per_size)
        t0 = time.perf_counter()
        exact = [dc.solve(p, method="exact") for p in tqdm(problems, desc=f"exact I={num}", leave=False)]
        exact_s = time.perf_counter() - t0
        for starts in args.starts:
            dc.solve_batch(problems, method="alm", starts=starts)  # compile
            times, batch = [], None
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                batch = dc.solve_batch(problems, method="alm", starts=starts)
                times.append(time.perf_counter() - t0)
            rows.append(dict(I=num, starts=starts, alm_s=statistics.median(times), exact_s=exact_s,
                             **compare(problems, exact, batch)))
            print(rows[-1], flush=True)
    print(f"\nALM (batched) vs exact, {args.per_size} random problems per I, N in 2..12, seed {args.seed}; "
          f"agree = |value gap| <= {VALUE_RTOL:g} relative; times: ALM median of {args.repeats} after compiling, "
          "exact = sum over the problems; ratio = exact / ALM")
    print(f"{'I':>3}{'starts':>7}{'compared':>9}{'agree':>7}{'local opt':>10}{'failed':>7}{'above':>6}"
          f"{'worst gap':>11}{'ALM s':>9}{'exact s':>9}{'ratio':>8}")
    for r in rows:
        print(f"{r['I']:>3}{r['starts']:>7}{r['compared']:>9}{r['agree']:>7}{r['local']:>10}{r['alm_failed']:>7}"
              f"{r['above']:>6}{r['worst_gap']:>11.2e}{r['alm_s']:>9.3f}{r['exact_s']:>9.2f}"
              f"{r['exact_s'] / r['alm_s']:>8.1f}")


if __name__ == "__main__":
    main()
