"""Scaling benchmark: expectation backends over I (types) and N (participants), and the issue-4 solves.

Three tables, one run, every case in its own subprocess (so each peak-memory figure is that case's):

1. Evaluation throughput: one solver iteration's work, the moments *and* their Jacobian in m
   (what SLSQP asks per step), for I = 2..19 at N = 10 and N = 10..1000 at I = 5, per backend
   ("enumerate" while the table fits, "chunked" while the outcome count is tractable, "convolution"
   always). Median of ``--repeats`` calls after a compiling one; outcomes per second; peak resident
   memory; agreement with the exact backends (max relative difference over E[a], E[v] and tbar).
   The paper's method (``paper_baseline.py``: outcomes enumerated in Python, numpy objective) is
   timed on the same evaluation where it can run (I <= 9 at N = 10), and each row's ratio is
   against it.
2. Solves (issue 4's figures): I = 9, N = 10 exact (auto backend) against the paper-method
   baseline's full solve; I = 15, N = 10 (1.96 million outcomes) chunked; I = 50, N = 200
   convolution, checked against a 10^6-sample Monte Carlo estimate at the optimum (z-scores).
   Median of ``--repeats`` solves after a compiling one; peak memory of the subprocess.
3. A figure ``benchmarks/out/scaling.png``: evaluation time against I and against N.

Usage:
  python benchmarks/scaling.py [--repeats R] [--quick] [--skip-solves] [--json]
  (--quick: fewer sizes, for a smoke run; the tables' ratios are only meaningful within one run)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import pathlib
import resource
import statistics
import subprocess
import sys
import time

_HERE = pathlib.Path(__file__).resolve().parent
COSTS_RANGE = (0.05, 0.01)
ENUMERATE_LIMIT = 1 << 20  # outcomes: the largest table the evaluation plan enumerates whole


def _problem(num_types: int, participants: int):
    import numpy as np

    from diffcontract import ContractProblem

    return ContractProblem(participants=participants, probs=np.full(num_types, 1.0 / num_types),
                           costs=np.linspace(*COSTS_RANGE, num_types))


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _median_time(fn, repeats: int):
    fn()  # compile / warm up
    times = []
    out = None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


# ----------------------------------------------------------------------------- cases (subprocess side)
def case_evaluation(backend: str, num_types: int, participants: int, repeats: int) -> dict:
    """Time moments + Jacobian in m at a fixed contract; return the values for agreement checks."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from diffcontract.expectation import make_backend, moments

    jax.config.update("jax_enable_x64", True)
    problem = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), _problem(num_types, participants))
    m = jnp.linspace(300.0, 600.0, num_types)
    if backend == "paper":
        baseline = _load_baseline()
        prob = baseline.PaperProblem(participants, np.asarray(problem.probs), np.asarray(problem.costs),
                                     np.asarray(problem.reservation_utility))
        x = np.concatenate([np.asarray(m), np.zeros(num_types)])

        def run():
            return prob.objective(x), prob.gradient(x), prob.budget(x), prob.budget_jacobian(x)

        seconds, _ = _median_time(run, repeats)
        tbar = prob.tbar(np.asarray(m)) if hasattr(prob, "tbar") else None
        values = None if tbar is None else [float("nan"), float("nan")] + list(map(float, tbar))
        return {"seconds": seconds, "values": values, "peak_gib": _peak_gib()}
    options = {"bins": 64} if backend == "convolution" else {}
    _, table = make_backend(problem, backend, **options)

    @jax.jit
    def run(mm):
        out = moments(mm, problem, table)
        jac = jax.jacfwd(lambda z: moments(z, problem, table))(mm)
        return out, jac

    seconds, (out, _) = _median_time(lambda: jax.block_until_ready(run(m)), repeats)
    values = [float(out.expected_accuracy), float(out.expected_value)] + [float(v) for v in out.reward_bounds]
    return {"seconds": seconds, "values": values, "peak_gib": _peak_gib()}


def case_solve(name: str, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import diffcontract
    from diffcontract.expectation import MonteCarlo

    jax.config.update("jax_enable_x64", True)
    if name == "I9":
        problem, backend = _problem(9, 10), "auto"
    elif name == "I15":
        problem, backend = _problem(15, 10), "chunked"
    elif name == "I50":
        problem, backend = _problem(50, 200), "convolution"
    else:
        raise ValueError(f"unknown solve case {name!r}")
    seconds, sol = _median_time(lambda: diffcontract.solve(problem, backend=backend), repeats)
    row = {"seconds": seconds, "status": sol.status_name, "backend": sol.backend, "value": float(sol.expected_value),
           "peak_gib": _peak_gib(), "outcomes": problem.num_outcomes}
    if name == "I9":
        baseline = _load_baseline()
        start = time.perf_counter()
        out = baseline.solve_paper_baseline(9, np.asarray(sol.problem.probs), np.asarray(sol.problem.costs),
                                            np.asarray(sol.problem.reservation_utility))
        row.update(baseline_seconds=time.perf_counter() - start, baseline_value=float(out["value"]),
                   baseline_status="success" if out["success"] else f"fail({out['status']})")
    if name == "I50":
        # The optimum pools everyone (one m0): the pooled data is then the same in every outcome,
        # both estimates are exact and Monte Carlo's standard errors are 0. So the lattice is also
        # checked at a separating contract (m spread over [0.5, 1.5] m0), where they are not.
        from diffcontract.expectation import make_backend, moments

        with jax.enable_x64(True):
            pr = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), sol.problem)
            _, lattice = make_backend(pr, "convolution")
            estimate = jax.jit(MonteCarlo(200, 50, samples=1_000_000, chunk_size=50_000, seed=7).estimate)
            spread = jnp.asarray(sol.m) * jnp.linspace(0.5, 1.5, 50)
            for label, m in (("optimum", jnp.asarray(sol.m)), ("separating", spread)):
                ours = moments(m, pr, lattice)
                est, err = estimate(m, pr)
                ours = np.array([float(ours.expected_accuracy), float(ours.expected_value), *np.asarray(ours.reward_bounds)])
                est = np.array([float(est.expected_accuracy), float(est.expected_value), *np.asarray(est.reward_bounds)])
                err = np.array([float(err.expected_accuracy), float(err.expected_value), *np.asarray(err.reward_bounds)])
                diff = np.abs(ours - est)
                # Zero standard error: the quantity is constant across outcomes, and both are exact.
                exact_ok = bool(np.all(diff[err == 0] <= 1e-9 * np.abs(est[err == 0])))
                z = diff[err > 0] / err[err > 0]
                row[f"mc_{label}_max_z"] = float(z.max()) if z.size else 0.0
                row[f"mc_{label}_zero_se"] = int(np.sum(err == 0))
                row[f"mc_{label}_zero_se_agree"] = exact_ok
        row.update(mc_samples=1_000_000)
    return row


def _load_baseline():
    spec = importlib.util.spec_from_file_location("paper_baseline", _HERE / "paper_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _subprocess(args: list[str], timeout: float = 1800) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- driver
def evaluation_plan(quick: bool) -> list[tuple[str, int, int]]:
    plan = []
    types = [2, 3, 5, 9, 13] if quick else list(range(2, 20))
    sizes = [10, 50, 200] if quick else [10, 20, 50, 100, 200, 500, 1000]
    for num_types in types:
        count = math.comb(10 + num_types - 1, num_types - 1)
        if num_types <= 9:
            plan.append(("paper", num_types, 10))
        # Enumerate's forward-mode Jacobian holds I tangents of the whole table: past ~10^6 outcomes
        # (I >= 14 at N = 10) it thrashes memory for minutes; chunked is the exact reference there.
        if count <= ENUMERATE_LIMIT:
            plan.append(("enumerate", num_types, 10))
        if num_types >= 5:
            plan.append(("chunked", num_types, 10))
        plan.append(("convolution", num_types, 10))
    for n in sizes:
        if n == 10:
            continue
        count = math.comb(n + 4, 4)
        if count <= ENUMERATE_LIMIT:
            plan.append(("enumerate", 5, n))
        if count <= 1 << 24:
            plan.append(("chunked", 5, n))
        plan.append(("convolution", 5, n))
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-solves", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.case:  # subprocess side
        kind, *rest = args.case.split(":")
        if kind == "eval":
            backend, num_types, participants = rest[0], int(rest[1]), int(rest[2])
            print(json.dumps(case_evaluation(backend, num_types, participants, args.repeats)))
        else:
            print(json.dumps(case_solve(rest[0], args.repeats)))
        return 0

    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        tqdm = lambda x, **_: x  # noqa: E731
    rows = []
    for backend, num_types, participants in tqdm(evaluation_plan(args.quick), desc="evaluations", file=sys.stderr):
        res = _subprocess([f"--case=eval:{backend}:{num_types}:{participants}", f"--repeats={args.repeats}"])
        rows.append({"backend": backend, "I": num_types, "N": participants,
                     "outcomes": math.comb(participants + num_types - 1, num_types - 1), **res})
        # Each row as it completes (stderr), so an interrupted run keeps what it measured.
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "values"}), file=sys.stderr)
    # Agreement against the exact backends, and ratios against the paper's evaluation, per (I, N).
    for row in rows:
        same = [r for r in rows if (r["I"], r["N"]) == (row["I"], row["N"]) and "values" in r and r["values"]]
        exact = [r for r in same if r["backend"] in ("enumerate", "chunked")]
        if exact and row.get("values"):
            ref = exact[0]["values"]
            diffs = [abs(a - b) / abs(b) for a, b in zip(row["values"], ref) if math.isfinite(a) and b != 0]
            row["agreement"] = max(diffs) if diffs else None
        paper = [r for r in rows if (r["I"], r["N"]) == (row["I"], row["N"]) and r["backend"] == "paper" and "seconds" in r]
        if paper and "seconds" in row:
            row["ratio"] = paper[0]["seconds"] / row["seconds"]
        if "seconds" in row:
            row["outcomes_per_s"] = row["outcomes"] / row["seconds"]
    solves = []
    if not args.skip_solves:
        for name in tqdm(["I9", "I15", "I50"], desc="solves", file=sys.stderr):
            solves.append({"case": name, **_subprocess([f"--case=solve:{name}", f"--repeats={args.repeats}"])})
            print(json.dumps(solves[-1], default=str), file=sys.stderr)
    _figure(rows)
    if args.json:
        print(json.dumps({"evaluations": rows, "solves": solves}, default=str))
        return 0
    print(f"Evaluation = moments + Jacobian in m (one SLSQP step's work); median of {args.repeats} after compiling; "
          "ratio = paper-method evaluation time / this row's (same I, N); agreement = max relative difference "
          "to the exact backend")
    print(f"{'backend':<12}{'I':>4}{'N':>6}{'outcomes':>22}{'seconds':>11}{'outcomes/s':>13}{'peak GiB':>10}"
          f"{'ratio':>9}{'agreement':>11}")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:<12}{r['I']:>4}{r['N']:>6}{r['outcomes']:>22}  error: {r['error']}")
            continue
        ratio = f"{r['ratio']:.1f}x" if "ratio" in r else "-"
        agree = f"{r['agreement']:.1e}" if r.get("agreement") is not None else "-"
        print(f"{r['backend']:<12}{r['I']:>4}{r['N']:>6}{r['outcomes']:>22.4g}{r['seconds']:>11.4f}"
              f"{r['outcomes_per_s']:>13.3g}{r['peak_gib']:>10.2f}{ratio:>9}{agree:>11}")
    if solves:
        print("\nSolves (issue 4 figures; exact = SLSQP, float64)")
        for s in solves:
            if "error" in s:
                print(f"  {s['case']}: error: {s['error']}")
                continue
            extra = ""
            if "baseline_seconds" in s:
                extra = (f"; paper method {s['baseline_seconds']:.2f} s ({s['baseline_status']}, value "
                         f"{s['baseline_value']:.7f}), ratio {s['baseline_seconds'] / s['seconds']:.1f}x")
            if "mc_samples" in s:
                extra = "; Monte Carlo 10^6 samples, max |z| (target < 3): " + ", ".join(
                    f"{label} {s[f'mc_{label}_max_z']:.2f}"
                    + (f" ({s[f'mc_{label}_zero_se']} zero-variance moments, equal: {s[f'mc_{label}_zero_se_agree']})"
                       if s[f"mc_{label}_zero_se"] else "")
                    for label in ("optimum", "separating"))
            print(f"  {s['case']}: {s['outcomes']:.4g} outcomes, backend {s['backend']}, {s['status']}, "
                  f"value {s['value']:.8f}, {s['seconds']:.3f} s (median after compile), peak {s['peak_gib']:.2f} GiB"
                  f"{extra}")
    print(f"figure: {_HERE / 'out' / 'scaling.png'}")
    return 0


def _figure(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for backend in ("paper", "enumerate", "chunked", "convolution"):
        by_i = sorted((r["I"], r["seconds"]) for r in rows if r["backend"] == backend and r["N"] == 10 and "seconds" in r)
        by_n = sorted((r["N"], r["seconds"]) for r in rows if r["backend"] == backend and r["I"] == 5 and "seconds" in r)
        if by_i:
            axes[0].semilogy(*zip(*by_i), marker="o", label=backend)
        if by_n:
            axes[1].loglog(*zip(*by_n), marker="o", label=backend)
    axes[0].set(xlabel="types I (N = 10)", ylabel="seconds per evaluation (moments + Jacobian)")
    axes[1].set(xlabel="participants N (I = 5)", ylabel="seconds per evaluation")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    out = _HERE / "out"
    out.mkdir(exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
