"""Time the complete-information benchmark on the paper's Sec. 6.1 grid (not a test).

1,500 two-type problems: c = (0.02, 0.01), N = 2..100 step 2, p_1 in linspace(0.01, 0.99, 30),
SGB(1, 1), v = 100 r. One ``jit(vmap)`` call over the whole batch (outcome tables padded to
N = 100). The first call compiles and is not timed; the reported time is the median of
``--repeats`` calls after it, end to end (padded tables + the compiled call + copy to numpy).
The CPU time is printed too: on a busy machine it bounds what an idle one would take.

Usage:
  python benchmarks/time_complete_info.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from diffcontract import problem_grid
from diffcontract.solvers.complete_info import solve_complete_information_batch


def sec61_grid():
    ns = np.arange(2, 101, 2)
    p1 = np.linspace(0.01, 0.99, 30)
    N, P = np.meshgrid(ns, p1, indexing="ij")
    probs = np.stack([P.ravel(), 1.0 - P.ravel()], axis=1)
    costs = np.tile([0.02, 0.01], (N.size, 1))
    return problem_grid(N.ravel(), probs, costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    batch = sec61_grid()
    build = time.perf_counter() - start
    start = time.perf_counter()
    result = solve_complete_information_batch(batch)
    first = time.perf_counter() - start
    times, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = solve_complete_information_batch(batch)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    print(f"problems: {len(np.asarray(batch.participants))}, outcome rows (padded): {result.valid.size}")
    print(f"problem_grid (validation + reservation utilities): {build:.3f} s")
    print(f"first call (compile + run): {first:.3f} s")
    print(f"after compilation, median of {args.repeats}: {statistics.median(times):.3f} s  (all: "
          + ", ".join(f"{t:.3f}" for t in times) + f"); CPU time (all threads), median: "
          f"{statistics.median(cpu):.3f} s")
    print(f"all outcomes feasible: {bool(np.all(result.all_feasible))}; "
          f"E[v(A_CI)] range: {result.expected_value.min():.4f} .. {result.expected_value.max():.4f}")


if __name__ == "__main__":
    main()
