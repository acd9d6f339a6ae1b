"""diffcontract: optimal contracts for collaborative machine learning paid with models, in JAX.

Implements the first-moment contract problem of Wang, Wu, Liu, Low, "Paid with Models: Optimal
Contract Design for Collaborative Machine Learning" (AAAI 2025), as specified in MODEL.md.
"""

from . import curves, expectation, formulation
from .problem import ContractProblem, problem_grid, stack_problems
from .solvers import (ALMOptions, Certificate, Solution, Status, solve, solve_alm, solve_batch, solve_exact,
                      unstack_solution)

__version__ = "0.1.0"

__all__ = ["ALMOptions", "Certificate", "ContractProblem", "Solution", "Status", "curves", "expectation", "formulation",
           "problem_grid", "solve", "solve_alm", "solve_batch", "solve_exact", "stack_problems", "unstack_solution"]
