"""The default test suite's wall time, with an empty compilation cache and with the cache it filled.

Rows, each a whole ``pytest`` process run from the repository root (the README's test command):

* baseline: ``python -c "import jax"``, median of 3 (how fast this machine is this hour);
* ``pytest`` with an empty cache folder (a new machine, or CI): every kernel compiles;
* ``pytest`` again on that folder (a second run on the same source): the kept executables are read.

Both runs use one temporary folder as ``$DIFFCONTRACT_TEST_JAX_CACHE`` (``tests/conftest.py``), so
the developer's own cache is neither read nor changed. Ratios are against the baseline of the same
run: machines are noisy, compare ratios, not seconds. Issue 17's target is the default suite in
under 5 minutes on an idle 2-core machine.

Usage:
  python benchmarks/suite_time.py [--fast-compile 1|0] [--json] [-- PYTEST_ARGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BASELINE_REPEATS = 3


def timed(argv: list[str], env: dict) -> tuple[float, str]:
    """(seconds from launch to exit, pytest's summary line) of one process; raises if it fails."""
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited {proc.returncode}: {proc.stdout[-1500:]}{proc.stderr[-800:]}")
    summary = next((line.strip("= ") for line in reversed(proc.stdout.splitlines()) if " in " in line), "")
    return elapsed, summary


def measure(fast_compile: str | None, pytest_args: list[str]) -> list[dict]:
    """The three rows (see the module docstring)."""
    env = dict(os.environ)
    if fast_compile is not None:
        env["DIFFCONTRACT_FAST_COMPILE"] = fast_compile
    baseline = statistics.median(timed([sys.executable, "-c", "import jax"], env)[0]
                                 for _ in range(BASELINE_REPEATS))
    rows = [{"what": 'python -c "import jax" (baseline)', "seconds": baseline, "tests": ""}]
    with tempfile.TemporaryDirectory(prefix="diffcontract-suite-cache-") as cache:
        env["DIFFCONTRACT_TEST_JAX_CACHE"] = cache
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args]
        for what in ("pytest, empty cache", "pytest, the cache it filled"):
            seconds, summary = timed(command, env)
            rows.append({"what": what, "seconds": seconds, "tests": summary})
    for row in rows:
        row["ratio"] = row["seconds"] / baseline
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast-compile", choices=("1", "0"), default=None,
                        help="DIFFCONTRACT_FAST_COMPILE for the runs (default: the suite's own, 1)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    rows = measure(args.fast_compile, args.pytest_args)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"default test suite, {os.cpu_count()} cores, {started}")
    print(f"{'what':36s} {'wall':>9s} {'ratio':>7s}  tests")
    for row in rows:
        minutes, seconds = divmod(row["seconds"], 60)
        print(f"{row['what']:36s} {int(minutes):3d}:{seconds:05.2f} {row['ratio']:6.1f}x  "
              f"{re.sub(r' in [0-9.]+s.*', '', row['tests'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
