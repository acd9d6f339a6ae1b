"""Fast compilation: the ALM solve kernel compiled at XLA's default level and at ``FAST_COMPILE_OPTIONS``.

Each measurement is a fresh process with JAX's persistent cache off: lower the driver's kernel
(``solvers.driver.solve_kernel`` with ``ALM()``), compile it with the package's ``COMPILER_OPTIONS``
(the baseline) or ``FAST_COMPILE_OPTIONS`` (``dc.fast_compile``: backend optimization level 0), and
time its warm run (median of 5 calls). The two option sets alternate, so the machine's load falls on
both alike; medians over ``--repeats`` processes; the ratio is fast / default in the same run.

Usage:
  python benchmarks/compile_levels.py [--repeats R] [--types 5,9]

Cases: N = 10, p uniform; I = 5 is Sec. 6.2 scenario 1's size (c = linspace(0.2, 0.04, 5)), other I
use c = linspace(1, 0.4, I) (the paper's scaling workload).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

ONE_PROCESS = r"""
import json, statistics, sys, time
import jax, jax.numpy as jnp, numpy as np
import diffcontract as dc
from diffcontract import _cache, _precision
from diffcontract.expectation.backends import make_backend
from diffcontract.solvers.alm import ALM
from diffcontract.solvers.driver import solve_kernel, without_input_order

jax.config.update("jax_compilation_cache_dir", None)
num_types, fast = int(sys.argv[1]), sys.argv[2] == "fast"
costs = [0.2, 0.16, 0.12, 0.08, 0.04] if num_types == 5 else list(np.linspace(1, 0.4, num_types))
problem = dc.ContractProblem(participants=10, probs=[1 / num_types] * num_types, costs=costs)
with _precision.float64():
    problem64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
    _, table = make_backend(problem64, "auto")
    canonical = without_input_order(problem64)
    options = _cache.FAST_COMPILE_OPTIONS if fast else _cache.COMPILER_OPTIONS
    kernel = jax.jit(solve_kernel, static_argnames="constraints", compiler_options=options)
    lowered = kernel.lower(ALM(), canonical, table, "simplified")
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_seconds = time.perf_counter() - start
    jax.block_until_ready(compiled(ALM(), canonical, table))
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        solution = jax.block_until_ready(compiled(ALM(), canonical, table))
        runs.append(time.perf_counter() - start)
print(json.dumps({"compile": compile_seconds, "run": statistics.median(runs),
                  "value": float(solution.expected_value), "status": int(solution.status)}))
"""


def measure(num_types: int, mode: str) -> dict:
    """One fresh process: compile and warm-run times of the ALM kernel, and its answer."""
    out = subprocess.run([sys.executable, "-c", ONE_PROCESS, str(num_types), mode], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per option set and case (median)")
    parser.add_argument("--types", default="5", help="comma-separated I (N = 10)")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print(f"{'case':<22} {'options':<9} {'compile s':>10} {'run s':>9} {'compile ratio':>14} {'run ratio':>10}  E[v]")
    for num_types in (int(t) for t in args.types.split(",")):
        rows = {"default": [], "fast": []}
        for _ in range(args.repeats):
            for mode in rows:  # alternating: the same load on both
                rows[mode].append(measure(num_types, mode))
        median = {mode: {k: statistics.median(r[k] for r in runs) for k in ("compile", "run")}
                  for mode, runs in rows.items()}
        for mode, runs in rows.items():
            ratio = {k: median[mode][k] / median["default"][k] for k in ("compile", "run")}
            values = sorted({f"{r['value']:.10f}" for r in runs})
            print(f"{'I = %d, N = 10, ALM' % num_types:<22} {mode:<9} {median[mode]['compile']:>10.2f} "
                  f"{median[mode]['run']:>9.4f} {ratio['compile']:>13.2f}x {ratio['run']:>9.2f}x  {', '.join(values)}")


if __name__ == "__main__":
    main()
