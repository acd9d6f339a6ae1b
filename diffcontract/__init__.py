"""diffcontract: optimal contracts for collaborative machine learning paid with models, in JAX.

Implements the first-moment contract problem of Wang, Wu, Liu, Low, "Paid with Models: Optimal
Contract Design for Collaborative Machine Learning" (AAAI 2025), as specified in MODEL.md.
"""

from . import curves, data, expectation, formulation
from .problem import ContractProblem, problem_grid, stack_problems
from .api import solve
from .solvers import (ALM, SLSQP, AbstractSolver, Certificate, CompleteInformation, Solution, SolveError, Status, run,
                      solve_alm, solve_batch, solve_complete_information, solve_complete_information_batch, solve_exact,
                      unstack_solution)

__version__ = "0.1.0"

__all__ = ["ALM", "SLSQP", "AbstractSolver", "SolveError", "run", "Certificate", "CompleteInformation", "ContractProblem", "solve_complete_information",
           "solve_complete_information_batch", "Solution", "Status", "curves", "data", "expectation", "formulation",
           "problem_grid", "solve", "solve_alm", "solve_batch", "solve_exact", "stack_problems", "unstack_solution"]
