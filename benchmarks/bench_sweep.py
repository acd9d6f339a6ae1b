"""Sec. 6.1 sweep timing: 1,500 incomplete- + 1,500 complete-information two-type problems.

    python benchmarks/bench_sweep.py [--repeats 3] [--baseline-samples 10]

Times the compiled sweep (after one warm-up run that compiles) as the median of repeats, and the
paper-method baseline (``paper_baseline.py``: Python enumeration, numpy, trust-constr) on a random
sample of grid problems in the same process; the baseline's full-grid time is extrapolated from
its mean time per problem (running all 1,500 would take many minutes). Ratio = baseline / ours.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from diffcontract.analysis.sweep import status_summary, two_type_sweep  # noqa: E402
from diffcontract.problem import ContractProblem  # noqa: E402


def _baseline_module():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_baseline.py")
    spec = importlib.util.spec_from_file_location("paper_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    first = two_type_sweep(progress=False)
    compile_run = time.perf_counter() - start
    incomplete, complete, total = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        result = two_type_sweep(progress=False)
        total.append(time.perf_counter() - start)
        incomplete.append(result.timings["incomplete"])
        complete.append(result.timings["complete"])
    assert np.allclose(result.expected_value, first.expected_value, rtol=0, atol=0), "sweep not reproducible"

    baseline = _baseline_module()
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(result.status.size, size=args.baseline_samples, replace=False)
    times, rel = [], []
    for k in picks:
        a, b = np.unravel_index(k, result.status.shape)
        n, p1 = int(result.participants[a]), float(result.p1[b])
        problem = ContractProblem(participants=n, probs=[p1, 1 - p1], costs=list(result.costs))
        out = baseline.solve_paper_baseline(n, [p1, 1 - p1], list(result.costs), np.asarray(problem.reservation_utility))
        times.append(out["time"])
        rel.append(abs(out["value"] - result.expected_value[a, b]) / result.expected_value[a, b])
    per_problem = float(np.mean(times))
    extrapolated = per_problem * result.status.size

    rows = [
        ("paper method (extrapolated)", extrapolated, "-"),
        ("ALM incomplete information", float(np.median(incomplete)), status_summary(result.status)),
        ("complete information", float(np.median(complete)), status_summary(result.complete_status)),
        ("sweep total (build + both)", float(np.median(total)), "-"),
    ]
    print(f"Sec. 6.1 sweep, {result.status.size} problems each; median of {args.repeats} after a compiling run "
          f"({compile_run:.1f} s); jax {jax.__version__} on {jax.devices()[0].platform}")
    print(f"{'what':32s} {'seconds':>10s} {'ratio':>8s}  status")
    for name, sec, status in rows:
        print(f"{name:32s} {sec:10.3f} {extrapolated / sec:7.1f}x  {status}")
    print(f"baseline: {args.baseline_samples} sampled grid problems, mean {per_problem:.3f} s each; "
          f"max relative value gap (baseline below ours) {max(rel):.2e}")
    print(f"ALM + complete information after compilation: {np.median(incomplete) + np.median(complete):.2f} s "
          f"(target < 10 s on a 2-core CPU)")


if __name__ == "__main__":
    main()
