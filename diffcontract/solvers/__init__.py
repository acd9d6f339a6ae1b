"""Solvers of the first-moment contract problem: the protocol (``base``), the driver, ALM and SLSQP, and the
certified global branch and bound (``branch_and_bound``)."""

from ._solution import Certificate, Solution, Status
from .alm import ALM
from .base import AbstractSolver, Iterate, SolveArgs, Start, iterate
from .branch_and_bound import BranchAndBound, solve_global
from .batch import batch_status_counts, solve_batch, unstack_solution
from .complete_info import (CompleteInformation, complete_information_kernel, solve_complete_information,
                            solve_complete_information_batch)
from .driver import SolveError, run, solve_alm, solve_exact
from .exact import SLSQP

__all__ = ["ALM", "AbstractSolver", "BranchAndBound", "Certificate", "CompleteInformation", "Iterate", "SLSQP", "Solution", "SolveArgs",
           "SolveError", "Start", "Status", "batch_status_counts", "complete_information_kernel", "iterate", "run",
           "solve_alm", "solve_batch", "solve_complete_information", "solve_complete_information_batch", "solve_exact",
           "solve_global", "unstack_solution"]
