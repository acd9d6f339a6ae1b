"""Issue 18's size targets in one run: whole processes, with their baselines measured in the same run.

Rows (each a fresh process, so its time includes import and compilation unless marked warm, and
its peak memory is its own):

1. ``python -c "import jax"``: the baseline of every whole-process row (ratio = row / baseline).
2. I = 2, N = 10^4, 3e5, 10^6 (``diffcontract solve``, default backend): time, exit code, backend.
3. I = 30, N = 10, ``--backend enumerate``: refused (exit 3) -- time and peak memory.
4. I = 13, N = 10, default backend: peak memory (the scaling workload: p uniform, c = linspace(1, 0.4, I)).
5. The scaling workload at I = 15 and I = 19 (chunked), in-process: the first solve (compilation
   included) and the median of later ones (warm).
6. One chunked evaluation at I = 15, N = 10 (moments and their Jacobian in m), by half-tables
   against the unranking path (the baseline) in the same process.

Usage: python benchmarks/large_problems.py [--repeats R] [--skip-i19] [--evaluation-types 15,19] [--only-evaluations]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

SOLVE = [sys.executable, "-m", "diffcontract.cli"]


def _whole_process(argv: list[str], repeats: int) -> dict:
    """Median wall time, exit code and peak resident memory (GiB) of ``argv`` as a fresh process."""
    times, code, peak = [], None, 0.0
    for _ in range(repeats):
        wrapped = [sys.executable, "-c", _MEASURE, json.dumps(argv)]
        out = json.loads(subprocess.run(wrapped, capture_output=True, text=True, check=True).stdout)
        times.append(out["seconds"])
        code, peak = out["code"], max(peak, out["peak_gib"])
    return {"seconds": statistics.median(times), "code": code, "peak_gib": peak}


# Runs argv as a child, timing it and reading the child's peak resident memory.
_MEASURE = """
import json, resource, subprocess, sys, time
argv = json.loads(sys.argv[1])
start = time.perf_counter()
proc = subprocess.run(argv, capture_output=True, text=True)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
print(json.dumps({"seconds": seconds, "code": proc.returncode, "peak_gib": peak}))
"""


def _types(num: int) -> tuple[str, str]:
    import numpy as np

    probs = np.full(num, 1.0 / num)
    probs[-1] = 1.0 - probs[:-1].sum()
    return ",".join(repr(float(p)) for p in probs), ",".join(repr(float(c)) for c in np.linspace(1.0, 0.4, num))


def _in_process_solves(num_types: int, repeats: int) -> dict:
    """First and warm solve times of the scaling workload at I = ``num_types`` (own process)."""
    code = f"""
import json, statistics, time
import numpy as np
import diffcontract as dc
p = dc.ContractProblem(10, np.full({num_types}, 1 / {num_types}), np.linspace(1, 0.4, {num_types}))
start = time.perf_counter(); s = dc.solve(p); first = time.perf_counter() - start
warm = []
for _ in range({repeats}):
    start = time.perf_counter(); s = dc.solve(p); warm.append(time.perf_counter() - start)
print(json.dumps({{"first": first, "warm": statistics.median(warm), "status": s.status_name,
                  "value": s.expected_value, "backend": s.backend, "iterations": int(s.iterations)}}))
"""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def _evaluation(repeats: int, num_types: int = 15) -> dict:
    """Moments + Jacobian at I = ``num_types``, N = 10: half-tables vs unranking (baseline), same process."""
    code = f"""
import json, statistics, time
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
import diffcontract as dc
from diffcontract.expectation import ChunkedEnumeration, chunked, moments
p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                           dc.ContractProblem(10, np.full({num_types}, 1 / {num_types}), np.linspace(1, 0.4, {num_types})))
backend, m = ChunkedEnumeration(10, {num_types}), jnp.linspace(50.0, 300.0, {num_types})
def timed():
    fn = jax.jit(lambda x: (moments(x, p, backend), jax.jacfwd(lambda y: moments(y, p, backend))(x)))
    jax.block_until_ready(fn(m))
    times = []
    for _ in range({repeats}):
        start = time.perf_counter(); jax.block_until_ready(fn(m)); times.append(time.perf_counter() - start)
    return statistics.median(times)
halves = timed()
chunked.uses_product = lambda *args: False  # the unranking path, the baseline
jax.clear_caches()  # no traced half-table path (a jitted helper of it) may be reused
print(json.dumps({{"halves": halves, "unranking": timed()}}))
"""
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-i19", action="store_true", help="leave out I = 19 (about a minute)")
    parser.add_argument("--evaluation-types", default="15", help="comma-separated I of the evaluation rows")
    parser.add_argument("--only-evaluations", action="store_true", help="just the chunked evaluation rows")
    args = parser.parse_args(argv)
    if not args.only_evaluations:
        _whole_process_rows(args)
    for num in (int(i) for i in args.evaluation_types.split(",")):
        ev = _evaluation(args.repeats, num)
        print(f"I = {num}, N = 10 chunked evaluation (moments + Jacobian): half-tables {ev['halves']:.4f} s, "
              f"unranking (baseline) {ev['unranking']:.4f} s, ratio {ev['unranking'] / ev['halves']:.1f}x")
    return 0


def _whole_process_rows(args) -> None:
    """The whole-process table and the in-process scaling workload (module docstring, rows 1-5)."""
    base = _whole_process([sys.executable, "-c", "import jax"], args.repeats)
    rows = [("python -c 'import jax' (baseline)", base, "")]
    two = ["--probs", "0.2,0.8", "--costs", "0.02,0.01"]
    for n in (10_000, 300_000, 1_000_000):
        rows.append((f"solve I = 2, N = {n:,} (default backend)", _whole_process(SOLVE + ["solve", "-N", str(n)] + two, 1), ""))
    probs30, costs30 = _types(30)
    rows.append(("solve I = 30, N = 10 --backend enumerate (refused)",
                 _whole_process(SOLVE + ["solve", "-N", "10", "--probs", probs30, "--costs", costs30,
                                         "--backend", "enumerate"], args.repeats), ""))
    probs13, costs13 = _types(13)
    rows.append(("solve I = 13, N = 10 (default backend)",
                 _whole_process(SOLVE + ["solve", "-N", "10", "--probs", probs13, "--costs", costs13], 1), ""))
    print(f"{'whole process':<52}{'seconds':>9}{'x import jax':>14}{'exit':>6}{'peak GiB':>10}")
    for label, row, _ in rows:
        print(f"{label:<52}{row['seconds']:>9.2f}{row['seconds'] / base['seconds']:>13.1f}x{row['code']:>6}"
              f"{row['peak_gib']:>10.2f}")
    print(f"\n{'scaling workload, in process (N = 10)':<40}{'first s':>9}{'warm s':>9}{'iterations':>12}  value, status")
    for num in (15,) if args.skip_i19 else (15, 19):
        r = _in_process_solves(num, args.repeats)
        print(f"{'I = ' + str(num) + ' (' + r['backend'] + ')':<40}{r['first']:>9.2f}{r['warm']:>9.3f}"
              f"{r['iterations']:>12}  {r['value']:.7f}, {r['status']}")
    print()


if __name__ == "__main__":
    raise SystemExit(main())
