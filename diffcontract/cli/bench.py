"""``diffcontract bench``: score methods on a stored suite against its certified optima (``diffcontract.bench``)."""

from __future__ import annotations

import argparse
import pathlib

from ._args import EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    """Evaluate each method on the suite; print a table (or JSON); optional CSV and figure files."""
    from ..bench import (METHODS, SUITES, evaluate, load_suite, method_mechanism, network_mechanism, plot_gaps,
                         reports_json, summary_table)

    if args.suite not in SUITES:
        raise ValueError(f"--suite must be one of {sorted(SUITES)}, got {args.suite!r}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not set(methods) <= set(METHODS) or not (methods or args.network):
        raise ValueError(f"--methods must be a comma-separated subset of {list(METHODS)}, got {args.methods!r}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    suite = load_suite(args.suite).head(args.limit)
    mechanisms = [(m, method_mechanism(m)) for m in methods]
    for path in args.network or []:
        from ..learned import load_mechanism

        mechanisms.append((pathlib.Path(path).stem, network_mechanism(load_mechanism(path))))
    reports = [evaluate(mechanism, suite, name=name, progress=not args.json and not args.quiet)
               for name, mechanism in mechanisms]
    print(reports_json(reports) if args.json else summary_table(reports))
    if args.csv:
        text = "".join(r.to_csv() if k == 0 else r.to_csv().split("\n", 1)[1] for k, r in enumerate(reports))
        pathlib.Path(args.csv).write_text(text)
    if args.figure:
        plot_gaps(reports, args.figure)
    return EXIT_OK


def add_parser(sub) -> None:
    """Register ``bench`` on an ``argparse`` subparsers object."""
    bench = sub.add_parser("bench", help="score methods on a benchmark suite against certified optima")
    bench.add_argument("--suite", default="random-i3", help="suite name (default random-i3; see diffcontract.bench.SUITES)")
    bench.add_argument("--methods", default="exact,alm,learned",
                       help="comma-separated methods: exact, alm, learned, global (default exact,alm,learned)")
    bench.add_argument("--network", action="append", metavar="FILE",
                       help="also score a saved mechanism network's raw proposals (no repair), labelled by the file's "
                            "name; repeatable (e.g. the penalty baseline of benchmarks/penalty_baseline.py)")
    bench.add_argument("--limit", type=int, help="score only the first LIMIT problems")
    bench.add_argument("--json", action="store_true", help="print one JSON object (aggregates and per-problem rows)")
    bench.add_argument("--csv", help="also write the per-problem rows to this CSV file")
    bench.add_argument("--figure", help="also draw the gap distribution to this image file (PNG, PDF, ...)")
    bench.set_defaults(func=cmd_bench)
