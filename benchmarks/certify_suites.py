"""Regenerate the benchmark suites' certified optima (``diffcontract/bench/data``) and the local-optima catalogue.

For every problem of each seeded suite (``diffcontract.bench.SUITES``): ``method="global"`` (the
certified optimum, its upper bound and gap), then ``exact`` and ``alm`` (their E[a] and status). A
problem where a KKT solver's E[a] is below the certified optimum by more than ``--miss-rtol`` goes
to the ``local-optima`` suite. Prints, per suite, how often each KKT solver missed and the
certification times (median, max).

    python benchmarks/certify_suites.py                       # every suite (about 30 min, 2 cores)
    python benchmarks/certify_suites.py --suites paper-6.2 --time-limit 600
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

import diffcontract as dc
from diffcontract.bench import suites as bench_suites

DATA = pathlib.Path(bench_suites.__file__).parent / "data"
#: Problems per child process for I >= 4 (10x that for I <= 3): a process that compiles a few thousand
#: kernels (I = 4: ~20 table sizes, each with the exact, ALM and bounding kernels of both constraint
#: sets) runs out of memory mappings.
CHUNK = 25
SEEDED = [name for name, (_, _, spec) in bench_suites.SUITES.items() if spec[0] != "catalogue"]


def certify(problem, time_limit: float) -> dict:
    start = time.perf_counter()
    sol = dc.solve(problem, method="global", time_limit=time_limit)
    seconds = time.perf_counter() - start
    record = {"problem": problem.to_dict(), "certified": {
        "expected_accuracy": float(sol.expected_accuracy), "expected_value": float(sol.expected_value),
        "upper_bound": float(sol.upper_bound), "gap": float(sol.gap), "status": sol.status_name,
        "nodes": int(sol.nodes), "seconds": seconds, "m": np.asarray(sol.m).tolist()}}
    for method in ("exact", "alm"):
        local = dc.solve(problem, method=method)
        record[method] = {"expected_accuracy": float(local.expected_accuracy), "status": local.status_name}
    return record


def missed(record: dict, method: str, rtol: float) -> bool:
    best = record["certified"]["expected_accuracy"]
    return record["certified"]["status"] == "converged" and record[method]["expected_accuracy"] < best * (1 - rtol)


def certify_chunk(name: str, start: int, stop: int, time_limit: float, path: pathlib.Path) -> None:
    """Certify problems [start, stop) of suite ``name`` and write their records to ``path``."""
    problems = bench_suites.generate_problems(name)[start:stop]
    path.write_text(json.dumps([certify(problem, time_limit) for problem in problems]))


def run_suite(name: str, time_limit: float, rtol: float, limit: int | None) -> list:
    """Certify a whole suite, ``CHUNK`` problems per child process, and store it."""
    problems = bench_suites.generate_problems(name)
    count, chunk = min(len(problems), limit or 10**9), CHUNK if problems[0].num_types >= 4 else 10 * CHUNK
    records = []
    with tempfile.TemporaryDirectory() as folder:
        for start in range(0, count, chunk):
            part = pathlib.Path(folder) / f"{start}.json"
            subprocess.run([sys.executable, __file__, "--chunk", f"{name}:{start}:{min(start + chunk, count)}",
                            "--time-limit", str(time_limit), "--part", str(part)], check=True)
            records += json.loads(part.read_text())
            print(f"  {name}: {len(records)}/{count}", flush=True)
    version, description, _ = bench_suites.SUITES[name]
    (DATA / bench_suites.data_file(name)).write_text(json.dumps(
        {"suite": name, "version": version, "description": description, "records": records}))
    seconds = [r["certified"]["seconds"] for r in records]
    certified = sum(r["certified"]["status"] == "converged" for r in records)
    print(f"{name:20s} {len(records):5d} problems, certified {certified}, seconds median {np.median(seconds):.2f} "
          f"max {np.max(seconds):.2f}; missed by exact {sum(missed(r, 'exact', rtol) for r in records)}, "
          f"by alm {sum(missed(r, 'alm', rtol) for r in records)}", flush=True)
    return records


def write_catalogue(rtol: float) -> None:
    """The ``local-optima`` suite: every stored problem a KKT solver missed."""
    catalogue = []
    for name in SEEDED:
        path = DATA / bench_suites.data_file(name)
        if path.is_file():
            catalogue += [{**r, "source": name} for r in json.loads(path.read_text())["records"]
                          if missed(r, "exact", rtol) or missed(r, "alm", rtol)]
    version, description, _ = bench_suites.SUITES["local-optima"]
    (DATA / bench_suites.data_file("local-optima")).write_text(json.dumps(
        {"suite": "local-optima", "version": version, "description": description, "records": catalogue}))
    print(f"local-optima: {len(catalogue)} problems", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=",".join(SEEDED), help="comma-separated seeded suites")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per certification")
    parser.add_argument("--miss-rtol", type=float, default=1e-6, help="relative shortfall that counts as a miss")
    parser.add_argument("--limit", type=int, default=None, help="first problems of each suite only (a quick run)")
    parser.add_argument("--chunk", help=argparse.SUPPRESS)  # NAME:START:STOP, in a child process
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.chunk:
        name, start, stop = args.chunk.split(":")
        certify_chunk(name, int(start), int(stop), args.time_limit, pathlib.Path(args.part))
        return
    DATA.mkdir(exist_ok=True)
    for name in args.suites.split(","):
        run_suite(name, args.time_limit, args.miss_rtol, args.limit)
    write_catalogue(args.miss_rtol)


if __name__ == "__main__":
    main()
