"""``diffcontract demo``: the paper's Sec. 6.2 scenarios, tables and figures."""

from __future__ import annotations

import argparse
import time

from ._args import EXIT_NOT_CONVERGED, EXIT_OK, FIGURE_FORMATS, writable_folder


def cmd_demo(args: argparse.Namespace) -> int:
    """Solve scenarios 1-3 exactly, print each table; exit 1 if any did not converge."""
    from .. import solve  # diffcontract.solve, the public entry point
    from ..analysis import PAPER_SCENARIOS, paper_scenario, solution_table

    start = time.perf_counter()
    out = None if args.no_figures else writable_folder("--out", args.out)  # before any computation
    worst = EXIT_OK
    print("diffcontract demo: the paper's Sec. 6.2 (N = 10, p = 0.2 each, SGB(1,1), v = 100 r)")
    for number, spec in PAPER_SCENARIOS.items():
        solution = solve(paper_scenario(number), method="exact", constraints="simplified")
        ref = spec["reference_value"]
        ref_text = f" (paper: {ref:.7f}, rel. diff {abs(solution.expected_value - ref) / ref:.1e})" if ref else ""
        print(f"\nScenario {number}: costs {[round(float(c), 4) for c in spec['costs']]}")
        print(solution_table(solution))
        print(f"optimal E_n[v(a)] = {solution.expected_value:.7f}{ref_text}")
        if not args.no_figures:
            from ..analysis.plots import save_solution_figures

            for path in save_solution_figures(solution, out, f"scenario{number}", fmt=args.format):
                print(f"  figure: {path}")
        if not solution.succeeded:
            worst = EXIT_NOT_CONVERGED
    if not args.no_figures:
        print(f"\nFigures written to {out}")
    print(f"Done in {time.perf_counter() - start:.1f} s (including compilation).")
    return worst


def add_parser(sub) -> None:
    """Register ``demo`` on an ``argparse`` subparsers object."""
    demo = sub.add_parser("demo", help="solve the paper's Sec. 6.2 scenarios, print tables, write figures")
    demo.add_argument("--out", default="diffcontract-demo", help="folder for the figures (default: ./diffcontract-demo)")
    demo.add_argument("--format", choices=FIGURE_FORMATS, default="png", help="figure file format (default png)")
    demo.add_argument("--no-figures", action="store_true", help="skip the figures")
    demo.set_defaults(func=cmd_demo)
