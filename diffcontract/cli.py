"""Command-line interface: ``diffcontract demo | solve | sweep | verify | simulate | fit-curve``.

Exit codes: 0 success; 1 the solver did not converge (its output still printed, with the status);
2 bad input (message on stderr naming the field).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT = 0, 1, 2


def _float_list(field: str, text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"{field} must be a comma-separated list of numbers, got {text!r}") from err


def _load_config(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise ValueError(f"config file not found: {path!r}") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {path!r} is not valid TOML: {err}") from err


CONFIG_KEYS = {"participants", "probs", "costs", "quality", "conditioning", "accuracy", "valuation", "method", "constraints",
               "backend"}


def problem_from_args(args: argparse.Namespace):
    """Merge ``--config`` (TOML) with flags (flags win) and build the ``ContractProblem``."""
    from .curves import valuation_from_spec
    from .curves.cli_commands import accuracy_from_arg
    from .problem import ContractProblem

    cfg: dict[str, Any] = {}
    if getattr(args, "config", None):
        cfg = _load_config(args.config)
        unknown = set(cfg) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"config: unknown key(s) {sorted(unknown)}; allowed {sorted(CONFIG_KEYS)}")
    for key in ("probs", "costs", "quality"):
        if getattr(args, key, None) is not None:
            cfg[key] = _float_list(key, getattr(args, key))
    for key in ("participants", "conditioning", "accuracy", "valuation", "method", "constraints", "backend"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    for key in ("participants", "probs", "costs"):
        if key not in cfg:
            raise ValueError(f"{key} is required (flag --{key} or key in --config)")
    problem = ContractProblem(
        participants=cfg["participants"],
        probs=cfg["probs"],
        costs=cfg["costs"],
        accuracy=accuracy_from_arg(cfg.get("accuracy", "sgb")),
        valuation=valuation_from_spec(cfg.get("valuation", "linear")),
        quality=cfg.get("quality"),
        conditioning=cfg.get("conditioning", "truncated"),
    )
    return problem, cfg.get("method", "exact"), cfg.get("constraints", "simplified"), cfg.get("backend", "auto")


def cmd_solve(args: argparse.Namespace) -> int:
    from .analysis import solution_record, solution_table
    from .solvers import solve

    problem, method, constraints, backend = problem_from_args(args)
    options = {}
    if getattr(args, "mechanism", None) is not None:
        if method != "learned" and getattr(args, "warm_start", None) is None:
            raise ValueError("--mechanism needs --method learned or --warm-start learned")
        options["mechanism"] = args.mechanism
    if getattr(args, "warm_start", None) is not None:
        if method != "alm":
            raise ValueError(f"--warm-start needs --method alm, got --method {method}")
        options["warm_start"] = args.warm_start
    solution = solve(problem, method=method, constraints=constraints, backend=backend, **options)
    extra = {}
    if getattr(args, "sensitivities", False):
        from .analysis.report import sensitivity_record

        extra = sensitivity_record(problem, solution)
    if args.json:
        print(json.dumps({**solution_record(solution), **extra}))
    else:
        print(solution_table(solution))
        for key, values in extra.items():
            print(f"{key} = {values}")
    # A learned contract is FEASIBLE (every constraint holds; no optimality claim): the job is done.
    done = solution.succeeded or (method == "learned" and solution.status_name == "feasible")
    return EXIT_OK if done else EXIT_NOT_CONVERGED


def cmd_demo(args: argparse.Namespace) -> int:
    from .analysis import PAPER_SCENARIOS, paper_scenario, solution_table
    from .solvers import solve

    start = time.perf_counter()
    out = os.path.abspath(args.out)
    worst = EXIT_OK
    print("diffcontract demo: the paper's Sec. 6.2 (N = 10, p = 0.2 each, SGB(1,1), v = 100 r)")
    for number, spec in PAPER_SCENARIOS.items():
        solution = solve(paper_scenario(number), method="exact", constraints="simplified")
        ref = spec["reference_value"]
        ref_text = f" (MODEL.md: {ref:.7f}, rel. diff {abs(solution.expected_value - ref) / ref:.1e})" if ref else ""
        print(f"\nScenario {number}: costs {[round(float(c), 4) for c in spec['costs']]}")
        print(solution_table(solution))
        print(f"optimal E_n[v(a)] = {solution.expected_value:.7f}{ref_text}")
        if not args.no_figures:
            from .analysis.plots import save_solution_figures

            for path in save_solution_figures(solution, out, f"scenario{number}"):
                print(f"  figure: {path}")
        if not solution.succeeded:
            worst = EXIT_NOT_CONVERGED
    if not args.no_figures:
        print(f"\nFigures written to {out}")
    print(f"Done in {time.perf_counter() - start:.1f} s (including compilation).")
    return worst


def read_solution_record(path: str) -> dict:
    """A solution record (``diffcontract solve --json`` output) from a file, or stdin for ``-``."""
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except FileNotFoundError as err:
        raise ValueError(f"solution file not found: {path!r}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"solution file {path!r} cannot be read: {err}") from err
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"solution file {path!r} is not valid JSON: {err}") from err
    if not isinstance(record, dict):
        raise ValueError(f"solution file {path!r} must hold a JSON object (diffcontract solve --json), "
                         f"got {type(record).__name__}")
    return record


def cmd_verify(args: argparse.Namespace) -> int:
    """Independent check of IR, IC, first-moment and ex-post budgets; exit 1 naming each violation."""
    from .mechanism.verify import verify

    report = verify(read_solution_record(args.solution), tol=args.tol)
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    if not report.ok and not args.json:
        for violation in report.violations:
            print(f"diffcontract verify: violated {violation}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_NOT_CONVERGED


def cmd_simulate(args: argparse.Namespace) -> int:
    """Monte Carlo of strategic participants; exit 1 unless truthful play is a best response and
    simulated utilities match the predicted ones within Monte Carlo error."""
    from .mechanism.simulate import simulate

    report = simulate(read_solution_record(args.solution), samples=args.samples, seed=args.seed)
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return EXIT_OK if report.ok else EXIT_NOT_CONVERGED


def add_mechanism_parsers(sub) -> None:
    """Register ``verify`` and ``simulate`` (both read a ``solve --json`` record)."""
    verify = sub.add_parser("verify", help="check a solution (solve --json output) independently; exit 1 "
                                           "naming each violated constraint")
    verify.add_argument("solution", help="JSON file written by 'diffcontract solve --json' ('-' for stdin)")
    verify.add_argument("--tol", type=float, default=1e-6,
                        help="absolute tolerance in each constraint's units (money; accuracy for ex-post), default 1e-6")
    verify.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    verify.set_defaults(func=cmd_verify)

    simulate = sub.add_parser("simulate", help="Monte Carlo of strategic participants facing a solution")
    simulate.add_argument("solution", help="JSON file written by 'diffcontract solve --json' ('-' for stdin)")
    simulate.add_argument("--samples", type=int, default=100_000, help="rounds of N participants (default 100000)")
    simulate.add_argument("--seed", type=int, default=0, help="seed of jax.random.PRNGKey (default 0)")
    simulate.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    simulate.set_defaults(func=cmd_simulate)


def cmd_sweep(args: argparse.Namespace) -> int:
    """The Sec. 6.1 two-type sweep; exit 1 if any problem did not converge (results still saved)."""
    import numpy as np

    from .analysis.sweep import SEC61_COSTS, save_sweep, status_summary, two_type_sweep

    costs = _float_list("costs", args.costs) if args.costs else list(SEC61_COSTS)
    if len(costs) != 2:
        raise ValueError(f"costs must hold two values for the two-type sweep, got {costs}")
    if args.max_participants < 2:
        raise ValueError(f"max-participants must be >= 2, got {args.max_participants}")
    if args.num_p1 < 1:
        raise ValueError(f"num-p1 must be >= 1, got {args.num_p1}")
    result = two_type_sweep(costs=costs, participants=range(2, args.max_participants + 1, 2),
                            p1=np.linspace(0.01, 0.99, args.num_p1), progress=not args.no_progress,
                            constraints=args.constraints)
    paths = save_sweep(result, os.path.abspath(args.out), figures=not args.no_figures)
    summary = {
        "problems": int(result.status.size),
        "incomplete_status": status_summary(result.status),
        "complete_status": status_summary(result.complete_status),
        "seconds": {k: round(v, 3) for k, v in result.timings.items()},
        "information_cost": {"min": float(result.information_cost.min()), "max": float(result.information_cost.max())},
        "max_violation": float(result.max_violation.max()),
        "files": paths,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"Sec. 6.1 sweep: {summary['problems']} problems x (incomplete, complete information)")
        print(f"  incomplete information (ALM): {summary['incomplete_status']}, {result.timings['incomplete']:.2f} s (incl. compilation)")
        print(f"  complete information:         {summary['complete_status']}, {result.timings['complete']:.2f} s (incl. compilation)")
        print(f"  information cost in [{summary['information_cost']['min']:.4g}, {summary['information_cost']['max']:.4g}] (money)")
        for path in paths:
            print(f"  wrote {path}")
    ok = np.all(result.status == 0) and np.all(result.complete_status == 0)
    return EXIT_OK if ok else EXIT_NOT_CONVERGED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffcontract", description="Optimal contracts for collaborative ML paid with models.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="solve the paper's Sec. 6.2 scenarios, print tables, write figures")
    demo.add_argument("--out", default="diffcontract-demo", help="folder for the PNG figures (default: ./diffcontract-demo)")
    demo.add_argument("--no-figures", action="store_true", help="skip the figures")
    demo.set_defaults(func=cmd_demo)

    solve = sub.add_parser("solve", help="solve one contract problem")
    solve.add_argument("--participants", "-N", type=int, help="number of participants N")
    solve.add_argument("--probs", help="type probabilities, comma-separated (e.g. 0.2,0.8)")
    solve.add_argument("--costs", help="marginal costs per unit of data, comma-separated (e.g. 0.02,0.01)")
    solve.add_argument("--quality", help="quality weights, comma-separated (default all 1)")
    solve.add_argument("--accuracy", help="accuracy curve spec: sgb[:a_opt=1,k=1] | power:a_opt=,b=,alpha= | arctan:s= | FILE.msgpack (from diffcontract fit-curve)")
    solve.add_argument("--valuation", help="valuation spec: linear[:scale=100] | exponential:scale=,gamma=")
    solve.add_argument("--method", choices=["exact", "alm", "learned"],
                       help="solver: exact (SLSQP), alm (augmented Lagrangian, optax) or learned (trained mechanism "
                            "network + feasibility repair; status 'feasible', exit 0); default exact")
    solve.add_argument("--mechanism", help="saved learned mechanism (.msgpack) for --method learned or --warm-start "
                                           "learned (default: the packaged I = 3 model)")
    solve.add_argument("--warm-start", choices=["learned"], help="alm only: start from the learned mechanism's contract")
    solve.add_argument("--constraints", choices=["simplified", "full"], help="constraint set (default simplified)")
    solve.add_argument("--backend", choices=["auto", "enumerate", "chunked", "convolution", "montecarlo"],
                       help="expectation backend (default auto: enumerate up to 2^18 outcomes, chunked up to 2^27, "
                            "else convolution); the JSON's \"backend\" key names the one used")
    solve.add_argument("--conditioning", choices=["truncated", "interim"], help="conditioning of rewards (default truncated)")
    solve.add_argument("--config", help="TOML file with any of the keys above (flags override it)")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    solve.add_argument("--sensitivities", action="store_true",
                       help="add d_value_d_costs and d_value_d_probs: derivatives of expected_value by implicit "
                            "differentiation of the KKT conditions, in the order the types were given (not the "
                            "costliest-first order of the other lists); d/dprobs is projected on the simplex (entry "
                            "i is the derivative along e_i - (1/I) sum_j e_j, so the entries sum to 0); null where "
                            "the derivative is one-sided or the solve did not converge")
    solve.set_defaults(func=cmd_solve)
    add_mechanism_parsers(sub)
    from .curves.cli_commands import add_fit_curve_parser

    add_fit_curve_parser(sub)

    sweep = sub.add_parser("sweep", help="parameter sweeps of the paper (two-type: Sec. 6.1)")
    sweep.add_argument("kind", choices=["two-type"], help="two-type: c = (0.02, 0.01), N = 2..100 step 2, 30 values of p_1")
    sweep.add_argument("--out", default="diffcontract-sweep", help="folder for sweep.npz, sweep.csv and PNGs (default ./diffcontract-sweep)")
    sweep.add_argument("--costs", help="two costs c_1 > c_2, comma-separated (default 0.02,0.01)")
    sweep.add_argument("--max-participants", type=int, default=100, help="largest N (default 100; N = 2..max step 2)")
    sweep.add_argument("--num-p1", type=int, default=30, help="number of p_1 values in linspace(0.01, 0.99) (default 30)")
    sweep.add_argument("--constraints", choices=["reduced", "full"], default="reduced", help="ALM parameterization")
    sweep.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)  # the CLI owns its process: float64 throughout
    try:
        return args.func(args)
    except ValueError as err:
        print(f"diffcontract {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
