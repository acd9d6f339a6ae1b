"""Command-line interface: ``diffcontract demo`` and ``diffcontract solve``.

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


CONFIG_KEYS = {"participants", "probs", "costs", "quality", "conditioning", "accuracy", "valuation", "method", "constraints"}


def problem_from_args(args: argparse.Namespace):
    """Merge ``--config`` (TOML) with flags (flags win) and build the ``ContractProblem``."""
    from .curves import accuracy_from_spec, valuation_from_spec
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
    for key in ("participants", "conditioning", "accuracy", "valuation", "method", "constraints"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    for key in ("participants", "probs", "costs"):
        if key not in cfg:
            raise ValueError(f"{key} is required (flag --{key} or key in --config)")
    problem = ContractProblem(
        participants=cfg["participants"],
        probs=cfg["probs"],
        costs=cfg["costs"],
        accuracy=accuracy_from_spec(cfg.get("accuracy", "sgb")),
        valuation=valuation_from_spec(cfg.get("valuation", "linear")),
        quality=cfg.get("quality"),
        conditioning=cfg.get("conditioning", "truncated"),
    )
    return problem, cfg.get("method", "exact"), cfg.get("constraints", "simplified")


def cmd_solve(args: argparse.Namespace) -> int:
    from .analysis import solution_record, solution_table
    from .solvers import solve

    problem, method, constraints = problem_from_args(args)
    solution = solve(problem, method=method, constraints=constraints)
    if args.json:
        print(json.dumps(solution_record(solution)))
    else:
        print(solution_table(solution))
    return EXIT_OK if solution.succeeded else EXIT_NOT_CONVERGED


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
    solve.add_argument("--accuracy", help="accuracy curve spec: sgb[:a_opt=1,k=1] | power:a_opt=,b=,alpha= | arctan:s=")
    solve.add_argument("--valuation", help="valuation spec: linear[:scale=100] | exponential:scale=,gamma=")
    solve.add_argument("--method", choices=["exact"], help="solver (default exact)")
    solve.add_argument("--constraints", choices=["simplified", "full"], help="constraint set (default simplified)")
    solve.add_argument("--conditioning", choices=["truncated", "interim"], help="conditioning of rewards (default truncated)")
    solve.add_argument("--config", help="TOML file with any of the keys above (flags override it)")
    solve.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    solve.set_defaults(func=cmd_solve)
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
