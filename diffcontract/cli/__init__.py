"""Command-line interface: ``diffcontract demo | solve | verify | simulate | fit-curve | sweep``.

One module per command (``demo``, ``solve``, ``mechanism``: verify and simulate, ``fit_curve``,
``sweep``), each with ``add_parser(sub)``; ``_args`` holds what they share.

Exit codes: 0 success; 1 the solver did not converge (its output still printed, with the status);
2 bad input (message on stderr naming the field).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import demo, fit_curve, mechanism, solve, sweep
from ._args import EXIT_BAD_INPUT, EXIT_NOT_CONVERGED, EXIT_OK

__all__ = ["EXIT_BAD_INPUT", "EXIT_NOT_CONVERGED", "EXIT_OK", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``diffcontract`` parser: every command's subparser, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="diffcontract", description="Optimal contracts for collaborative ML paid with models.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, solve, mechanism, fit_curve, sweep):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (``ValueError`` -> ``EXIT_BAD_INPUT``, message on stderr)."""
    args = build_parser().parse_args(argv)
    import jax

    jax.config.update("jax_enable_x64", True)  # the CLI owns its process: float64 throughout
    try:
        return args.func(args)
    except ValueError as err:
        print(f"diffcontract {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
