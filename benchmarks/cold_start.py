"""Cold start: what a user's one-off process costs (import, compilation, solve), cache empty and warm.

Every row is a whole process (``subprocess``), timed from launch to exit, median of ``--repeats``:

* baseline: ``python -c "import jax"`` (the floor any JAX program pays);
* ``python -c "import diffcontract"``;
* ``diffcontract solve`` of Sec. 6.2 scenario 1 (N = 10, five types, c = linspace(0.2, 0.04, 5)),
  ``--method exact`` and ``--method alm``, with (a) the persistent compilation cache turned off
  (``DIFFCONTRACT_JAX_CACHE=0``), (b) an empty cache folder (a first process ever) and (c) the cache
  the previous run filled (every later process);
* the paper's method as a whole process (``paper_baseline.py``: numpy enumeration + scipy
  trust-constr; its reservation utilities from ``ContractProblem``, so it imports JAX too).

Ratios are against the ``import jax`` row of the same run (issue 18's targets: warm <= 2.5x, empty
cache <= 5x). Machines are noisy: compare ratios, not seconds.

Usage:
  python benchmarks/cold_start.py [--repeats R] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
SCENARIO_1 = ["solve", "--participants", "10", "--probs", "0.2,0.2,0.2,0.2,0.2", "--costs",
              "0.2,0.16,0.12,0.08,0.04", "--json"]
PAPER_METHOD = f"""
import sys; sys.path.insert(0, {str(HERE)!r})
import numpy as np
import diffcontract as dc
from paper_baseline import solve_paper_baseline
p = dc.ContractProblem(participants=10, probs=np.full(5, 0.2), costs=np.linspace(0.2, 0.04, 5))
out = solve_paper_baseline(10, np.asarray(p.probs), np.asarray(p.costs), np.asarray(p.reservation_utility))
"""


def timed(argv: list[str], env: dict) -> float:
    """Seconds from launch to exit of one process; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stderr[-800:]}")
    return elapsed


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffcontract.cli", *args]


def measure(repeats: int) -> list[dict]:
    base_env = dict(os.environ)
    base_env.pop("JAX_COMPILATION_CACHE_DIR", None)
    rows = []

    def row(name: str, make_argv, env_for) -> None:
        times = []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as folder:
                times.append(timed(make_argv(), env_for(folder)))
        rows.append({"what": name, "seconds": statistics.median(times), "all": times})

    fresh = lambda folder: {**base_env, "DIFFCONTRACT_CACHE": folder}  # noqa: E731
    off = lambda folder: {**base_env, "DIFFCONTRACT_JAX_CACHE": "0"}  # noqa: E731
    row('python -c "import jax" (baseline)', lambda: [sys.executable, "-c", "import jax"], off)
    row('python -c "import diffcontract"', lambda: [sys.executable, "-c", "import diffcontract"], off)
    for method in ("exact", "alm"):
        argv = lambda: cli(*SCENARIO_1, "--method", method)  # noqa: E731
        row(f"solve scenario 1, {method}, cache off", argv, off)
        row(f"solve scenario 1, {method}, empty cache", argv, fresh)
        with tempfile.TemporaryDirectory() as warm:
            timed(argv(), fresh(warm))  # fills the cache
            row(f"solve scenario 1, {method}, warm cache", argv, lambda _: fresh(warm))
    row("paper's method (whole process)", lambda: [sys.executable, "-c", PAPER_METHOD], off)
    baseline = rows[0]["seconds"]
    for r in rows:
        r["ratio"] = r["seconds"] / baseline
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per row (median)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = parser.parse_args()
    rows = measure(args.repeats)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"Whole-process times, median of {args.repeats}; ratio = time / (python -c \"import jax\") in this run")
    print(f"{'what':<44} {'seconds':>8} {'ratio':>7}")
    for r in rows:
        print(f"{r['what']:<44} {r['seconds']:>8.2f} {r['ratio']:>6.1f}x")


if __name__ == "__main__":
    main()
