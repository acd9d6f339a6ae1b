"""``diffcontract sweep two-type``: the paper's Sec. 6.1 grid, saved as npz, csv and figures."""

from __future__ import annotations

import argparse
import json

from ._args import EXIT_NOT_CONVERGED, EXIT_OK, FIGURE_FORMATS, float_list, writable_folder


def cmd_sweep(args: argparse.Namespace) -> int:
    """The Sec. 6.1 two-type sweep; exit 1 if any problem did not converge (results still saved)."""
    import numpy as np

    from ..analysis.sweep import SEC61_COSTS, save_sweep, status_summary, two_type_sweep

    costs = float_list("costs", args.costs) if args.costs else list(SEC61_COSTS)
    if len(costs) != 2:
        raise ValueError(f"costs must hold two values for the two-type sweep, got {args.costs!r}")
    if not costs[0] > costs[1]:
        raise ValueError(f"costs must be given costliest first (c_1 > c_2: type 1, whose probability is p_1, is "
                         f"the costlier type), got {args.costs!r}")
    if args.max_participants < 2:
        raise ValueError(f"max-participants must be >= 2, got {args.max_participants}")
    if args.num_p1 < 1:
        raise ValueError(f"num-p1 must be >= 1, got {args.num_p1}")
    out = writable_folder("--out", args.out)  # before any computation
    result = two_type_sweep(costs=costs, participants=range(2, args.max_participants + 1, 2),
                            p1=np.linspace(0.01, 0.99, args.num_p1), progress=not (args.no_progress or getattr(args, "quiet", False)),
                            constraints=args.constraints)
    paths = save_sweep(result, out, figures=not args.no_figures, fmt=args.format)
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


def add_parser(sub) -> None:
    """Register ``sweep`` on an ``argparse`` subparsers object."""
    sweep = sub.add_parser("sweep", help="parameter sweeps of the paper (two-type: Sec. 6.1)")
    sweep.add_argument("kind", choices=["two-type"], help="two-type: c = (0.02, 0.01), N = 2..100 step 2, 30 values of p_1")
    sweep.add_argument("--out", default="diffcontract-sweep", help="folder for sweep.npz, sweep.csv and the figures (default ./diffcontract-sweep)")
    sweep.add_argument("--costs", help="two costs c_1 > c_2, comma-separated (default 0.02,0.01)")
    sweep.add_argument("--max-participants", type=int, default=100, help="largest N (default 100; N = 2..max step 2)")
    sweep.add_argument("--num-p1", type=int, default=30, help="number of p_1 values in linspace(0.01, 0.99) (default 30)")
    sweep.add_argument("--constraints", choices=["simplified", "full"], default="simplified",
                       help="constraint set of the ALM (default simplified)")
    sweep.add_argument("--format", choices=FIGURE_FORMATS, default="png", help="figure file format (default png)")
    sweep.add_argument("--no-figures", action="store_true", help="skip the figures")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    sweep.set_defaults(func=cmd_sweep)
