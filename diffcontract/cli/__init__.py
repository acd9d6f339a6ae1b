"""Command-line interface: ``diffcontract demo | solve | verify | simulate | fit-curve | sweep | bench``.

One module per command (``demo``, ``solve``, ``mechanism``: verify and simulate, ``fit_curve``,
``sweep``, ``bench``), each with ``add_parser(sub)``; ``_args`` holds what they share.

Exit codes (``EXIT_*``): 0 solved; 1 the solver did not converge (its output still printed, with
the status); 2 bad input, an unwritable output included (message on stderr naming the field); 3 the
problem was refused as too large for the memory or time budget. ``-v``/``-vv`` show the library's
log (``logging`` logger ``"diffcontract"``) at INFO/DEBUG on stderr; ``-q`` shows errors only and
hides progress bars.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import Sequence

from .._version import __version__
from . import bench, demo, fit_curve, mechanism, solve, sweep
from ._args import EXIT_BAD_INPUT, EXIT_NOT_CONVERGED, EXIT_OK, EXIT_TOO_LARGE, join_negative_lists

__all__ = ["EXIT_BAD_INPUT", "EXIT_NOT_CONVERGED", "EXIT_OK", "EXIT_TOO_LARGE", "build_parser", "main"]

EXIT_INTERRUPTED = 130  # the shell's code for SIGINT


@functools.lru_cache(maxsize=1)  # built once per process (~10 ms; a test suite calls ``main`` hundreds of times)
def build_parser() -> argparse.ArgumentParser:
    """The ``diffcontract`` parser: every command's subparser, in the order ``--help`` lists them.
    One instance per process: ``parse_args`` does not change it."""
    parser = argparse.ArgumentParser(
        prog="diffcontract", description="Optimal contracts for collaborative ML paid with models.",
        epilog="exit codes: 0 solved, 1 not converged, 2 bad input, 3 refused as too large")
    parser.add_argument("--version", action="version", version=f"diffcontract {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0,
                           help="log what the library does on stderr (-v: INFO, -vv: DEBUG)")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="errors only; no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (demo, solve, mechanism, fit_curve, sweep, bench):
        command.add_parser(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is at each record (test runners swap it)."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(verbose: int, quiet: bool) -> None:
    """One stderr handler on the ``"diffcontract"`` logger at the level ``-v``/``-q`` ask for."""
    logger = logging.getLogger("diffcontract")
    logger.setLevel(logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)])
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("diffcontract: %(levelname)s: %(name)s: %(message)s"))
        logger.addHandler(handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (bad input -> ``EXIT_BAD_INPUT``, a problem refused
    as too large -> ``EXIT_TOO_LARGE``; message on stderr, never a traceback)."""
    args = build_parser().parse_args(join_negative_lists(list(sys.argv[1:] if argv is None else argv)))
    configure_logging(args.verbose, args.quiet)
    import jax

    from .._cache import FAST_COMPILE_ENV, environment_flag, fast_compile
    from ..expectation import ProblemTooLarge

    jax.config.update("jax_enable_x64", True)  # the CLI owns its process: float64 throughout
    try:
        with fast_compile(environment_flag(FAST_COMPILE_ENV, True)):  # one command, one job: compile fast
            return args.func(args)
    except ProblemTooLarge as err:
        print(f"diffcontract {args.command}: refused: {err}", file=sys.stderr)
        return EXIT_TOO_LARGE
    except (ValueError, OSError) as err:  # OSError: a file a user named could not be read or written
        print(f"diffcontract {args.command}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"diffcontract {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
