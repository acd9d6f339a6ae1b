"""Benchmark: the paper's method (``paper_baseline.py``) against diffcontract's exact and ALM solvers.

One run times, on the same machine and in the same process:
  * Sec. 6.2 (N = 10, p = 0.2 each, three cost scenarios): the baseline, ``solve(method="exact")``
    and ``solve(method="alm")`` per scenario, and ``solve_batch(method="alm")`` on all three at once;
  * a slice of the Sec. 6.1 grid (two types, c = (0.02, 0.01), N x p_1): the baseline and the
    exact solver one problem at a time, and ALM batched over the whole slice.
Times are medians over ``--repeats`` repeats; every JAX path is called once first (compilation)
and that call is not timed. The baseline is pure numpy/scipy and needs no warm-up. Objective
values are E_n[v(a(n . m))] in money; "rel diff" is the largest |value - exact| / |exact| over the
case's problems, "violation" the largest constraint violation (money units) a method reports.

Usage:
  python benchmarks/bench_solvers.py [--repeats R] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import statistics
import sys
import time
from collections import Counter

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import diffcontract  # noqa: E402
from diffcontract.analysis.scenarios import PAPER_SCENARIOS, paper_scenario  # noqa: E402

_HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("paper_baseline", _HERE / "paper_baseline.py")
paper_baseline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(paper_baseline)

SCENARIOS = (1, 2, 3)
SPEEDUP_TARGET = 20.0  # issue 3: batched ALM on the three Sec. 6.2 scenarios vs the paper's method
GRID_COSTS = (0.02, 0.01)
P1_AXIS = np.linspace(0.01, 0.99, 30)  # the paper's Sec. 6.1 axis; a slice of it is used


def grid_slice(quick: bool) -> list[tuple[int, float]]:
    """(N, p_1) pairs of the Sec. 6.1 slice: N in 2..20 step 2 x 5 values of p_1 (quick: 3 x 2)."""
    if quick:
        ns, p1 = range(2, 13, 5), P1_AXIS[[7, 22]]
    else:
        ns, p1 = range(2, 21, 2), P1_AXIS[[0, 7, 14, 22, 29]]
    return [(int(n), float(p)) for n in ns for p in p1]


def timed(fn, repeats: int, desc: str | None = None):
    """(median seconds, last result) of ``repeats`` calls of ``fn``."""
    times, out = [], None
    for _ in tqdm(range(repeats), desc=desc, leave=False, disable=desc is None, file=sys.stderr):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# ----------------------------------------------------------------------------- the solvers, uniformly
def run_baseline(problem, hessian: str) -> dict:
    """The paper's method on a ``ContractProblem`` (canonical order: costliest first)."""
    out = paper_baseline.solve_paper_baseline(problem.num_participants, np.asarray(problem.probs),
                                              np.asarray(problem.costs), np.asarray(problem.reservation_utility),
                                              hessian=hessian)
    return {"value": float(out["value"]), "violation": float(out["max_violation"]),
            "status": "success" if out["success"] else f"fail({out['status']})", "nit": out["nit"]}


def summarize(sol) -> dict:
    """The reported fields of a (single) diffcontract ``Solution``."""
    return {"value": float(np.asarray(sol.expected_value)), "violation": float(np.asarray(sol.max_violation)),
            "status": sol.status_name, "nit": int(np.asarray(sol.iterations))}


def run_single(problem, method: str) -> dict:
    sol = diffcontract.solve(problem, method=method)
    np.asarray(sol.expected_value)  # results are on the host before the clock stops
    return summarize(sol)


def run_batch(problems) -> list[dict]:
    sol = diffcontract.solve_batch(problems, method="alm")
    return [summarize(diffcontract.unstack_solution(sol, k)) for k in range(len(problems))]


# ----------------------------------------------------------------------------- rows of the table
def row(case: str, method: str, seconds: float, results: list[dict], exact: list[dict] | None) -> dict:
    values = [r["value"] for r in results]
    rel = None
    if exact is not None:
        rel = max(abs(v - e["value"]) / abs(e["value"]) for v, e in zip(values, exact))
    statuses = Counter(r["status"] for r in results)
    return {"case": case, "method": method, "seconds": seconds, "values": values, "rel_diff_to_exact": rel,
            "max_violation": max(r["violation"] for r in results),
            "statuses": dict(statuses), "iterations": [r["nit"] for r in results]}


def bench_scenarios(repeats: int, hessian: str) -> list[dict]:
    problems = {k: paper_scenario(k) for k in SCENARIOS}
    rows, per = [], {}
    for k, prob in problems.items():
        base_t, base = timed(lambda: run_baseline(prob, hessian), repeats, f"baseline, scenario {k}")
        run_single(prob, "exact"), run_single(prob, "alm")  # compile
        exact_t, exact = timed(lambda: run_single(prob, "exact"), repeats)
        alm_t, alm = timed(lambda: run_single(prob, "alm"), repeats)
        per[k] = {"baseline": (base_t, base), "exact": (exact_t, exact), "alm": (alm_t, alm)}
        for method in ("baseline", "exact", "alm"):
            t, r = per[k][method]
            rows.append(row(f"6.2 scenario {k}", method, t, [r], [exact]))
    batch = list(problems.values())
    run_batch(batch)  # compile
    batch_t, batch_res = timed(lambda: run_batch(batch), repeats, "batched ALM, Sec. 6.2")
    exact_all = [per[k]["exact"][1] for k in SCENARIOS]
    for method in ("baseline", "exact", "alm"):
        total = sum(per[k][method][0] for k in SCENARIOS)
        rows.append(row("6.2 all three", f"{method} (sum)", total, [per[k][method][1] for k in SCENARIOS], exact_all))
    rows.append(row("6.2 all three", "alm batched", batch_t, batch_res, exact_all))
    return rows


def bench_grid(repeats: int, quick: bool, hessian: str) -> list[dict]:
    pairs = grid_slice(quick)
    problems = [diffcontract.ContractProblem(n, [p, 1.0 - p], GRID_COSTS) for n, p in pairs]
    case = f"6.1 slice ({len(problems)} problems)"

    def loop(fn, desc):
        return [fn(p) for p in tqdm(problems, desc=desc, leave=False, file=sys.stderr)]

    base_t, base = timed(lambda: loop(lambda p: run_baseline(p, hessian), "baseline, Sec. 6.1 slice"), repeats)
    loop(lambda p: run_single(p, "exact"), "exact, compile")  # one compile per N
    exact_t, exact = timed(lambda: loop(lambda p: run_single(p, "exact"), "exact, Sec. 6.1 slice"), repeats)
    run_batch(problems)  # compile
    batch_t, batch = timed(lambda: run_batch(problems), repeats, "batched ALM, Sec. 6.1 slice")
    return [row(case, "baseline (loop)", base_t, base, exact), row(case, "exact (loop)", exact_t, exact, exact),
            row(case, "alm batched", batch_t, batch, exact)]


# ----------------------------------------------------------------------------- output
def add_ratios(rows: list[dict]) -> None:
    baseline = {r["case"]: r["seconds"] for r in rows if r["method"].startswith("baseline")}
    for r in rows:
        r["speedup_vs_baseline"] = baseline[r["case"]] / r["seconds"]


def fmt_values(values: list[float]) -> str:
    if len(values) <= 3:
        return ", ".join(f"{v:.7f}" for v in values)
    return f"mean {np.mean(values):.6f} [{min(values):.4f}, {max(values):.4f}]"


def print_table(rows: list[dict], header: str) -> None:
    cols = ("case", "method", "median s", "ratio", "E_n[v(a)]", "rel diff vs exact", "violation", "statuses")
    lines = [(r["case"], r["method"], f"{r['seconds']:.4f}", f"{r['speedup_vs_baseline']:.1f}x",
              fmt_values(r["values"]), "-" if r["rel_diff_to_exact"] is None else f"{r['rel_diff_to_exact']:.2e}",
              f"{r['max_violation']:.1e}", " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())))
             for r in rows]
    widths = [max(len(c), *(len(line[j]) for line in lines)) for j, c in enumerate(cols)]
    print(header)
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    previous = None
    for line in lines:
        if previous is not None and line[0] != previous:
            print()
        previous = line[0]
        print("  ".join(x.ljust(w) for x, w in zip(line, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median); default 3")
    parser.add_argument("--quick", action="store_true", help="one repeat and a 6-problem grid slice")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--baseline-hessian", choices=paper_baseline.HESSIANS, default="exact",
                        help="Hessians of the baseline's trust-constr (the paper's Sec. 6.2 runs: exact)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be >= 1")

    rows = bench_scenarios(repeats, args.baseline_hessian) + bench_grid(repeats, args.quick, args.baseline_hessian)
    add_ratios(rows)
    reference = {f"6.2 scenario {k}": v["reference_value"] for k, v in PAPER_SCENARIOS.items()}
    batched = next(r for r in rows if r["case"] == "6.2 all three" and r["method"] == "alm batched")
    verdict = "met" if batched["speedup_vs_baseline"] >= SPEEDUP_TARGET else "NOT met"
    if args.json:
        print(json.dumps({"repeats": repeats, "quick": args.quick, "baseline_hessian": args.baseline_hessian,
                          "jax": jax.__version__, "backend": jax.default_backend(), "reference_values": reference,
                          "speedup_target": SPEEDUP_TARGET, "rows": rows}, indent=1))
    else:
        header = (f"diffcontract {diffcontract.__version__} vs the paper's method (trust-constr, "
                  f"{args.baseline_hessian} Hessians); jax {jax.__version__} on {jax.default_backend()}; "
                  f"median of {repeats} repeat(s); ratio = baseline time / method time")
        print_table(rows, header)
        print(f"\nSec. 6.2 batched ALM vs paper's method: {batched['speedup_vs_baseline']:.1f}x "
              f"(target >= {SPEEDUP_TARGET:.0f}x: {verdict}). docs/model.md optima: "
              + ", ".join(f"{k.split()[-1]}: {v}" for k, v in reference.items() if v is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
