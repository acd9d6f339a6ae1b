"""Solvers of the first-moment contract problem and the ``solve`` driver."""

from ._solution import Certificate, Solution, Status
from .exact import solve_exact
from .driver import solve
from .alm import ALMOptions, solve_alm
from .batch import batch_status_counts, solve_batch, unstack_solution
from .complete_info import (CompleteInformation, complete_information_kernel, solve_complete_information,
                            solve_complete_information_batch)

__all__ = ["ALMOptions", "Certificate", "CompleteInformation", "complete_information_kernel",
           "solve_complete_information", "solve_complete_information_batch", "Solution", "Status", "batch_status_counts", "solve", "solve_alm", "solve_batch",
           "solve_exact", "unstack_solution"]
