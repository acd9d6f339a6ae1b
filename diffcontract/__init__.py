"""diffcontract: optimal contracts for collaborative machine learning paid with models, in JAX.

Implements the first-moment contract problem of Wang, Wu, Liu, Low, "Paid with Models: Optimal
Contract Design for Collaborative Machine Learning" (AAAI 2025), as specified in MODEL.md.
"""

from . import curves, expectation, formulation
from .problem import ContractProblem
from .solvers import Certificate, Solution, Status, solve, solve_exact

__version__ = "0.1.0"

__all__ = ["Certificate", "ContractProblem", "Solution", "Status", "curves", "expectation", "formulation", "solve", "solve_exact"]
