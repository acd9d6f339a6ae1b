"""``diffcontract verify`` and ``diffcontract simulate``: both read a ``solve --json`` record."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from ._args import EXIT_NOT_CONVERGED, EXIT_OK


def read_solution_record(path: str) -> dict:
    """A solution record (``diffcontract solve --json`` output) from a file, or stdin for ``-``."""
    try:
        text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text(encoding="utf-8")
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
    from ..mechanism.verify import verify

    report = verify(read_solution_record(args.solution), tol=args.tol)
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    if not report.ok and not args.json:
        for violation in report.violations:
            print(f"diffcontract verify: violated {violation}", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_NOT_CONVERGED


def cmd_simulate(args: argparse.Namespace) -> int:
    """Monte Carlo of strategic participants; exit 1 unless truthful play is a best response and
    simulated utilities match the predicted ones within Monte Carlo error."""
    from ..mechanism.simulate import simulate

    report = simulate(read_solution_record(args.solution), samples=args.samples, seed=args.seed)
    print(json.dumps(report.to_dict()) if args.json else report.summary())
    return EXIT_OK if report.ok else EXIT_NOT_CONVERGED


def add_parser(sub) -> None:
    """Register ``verify`` and ``simulate`` on an ``argparse`` subparsers object."""
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
