"""diffcontract: optimal contracts for collaborative machine learning paid with models, in JAX.

Implements the first-moment contract problem of Wang, Wu, Liu, Low, "Paid with Models: Optimal
Contract Design for Collaborative Machine Learning" (AAAI 2025); the model in our words is in the
documentation (``docs/model.md``).

The library never prints: it logs through the ``logging`` logger named ``"diffcontract"`` (and its
children, one per module), which has no handler of its own until an application (the CLI's
``-v``/``-q``) adds one.
"""

import logging as _logging

from ._cache import enable_compilation_cache, fast_compile
from ._version import __version__

enable_compilation_cache()  # compiled kernels persist between processes (opt out: DIFFCONTRACT_JAX_CACHE=0)
from . import curves, expectation, formulation
from .problem import ContractProblem, problem_grid, stack_problems
from .api import solve
from .solvers import (ALM, SLSQP, AbstractSolver, BranchAndBound, Certificate, CompleteInformation, Solution, SolveError, Status, run,
                      solve_alm, solve_batch, solve_complete_information, solve_complete_information_batch, solve_exact,
                      solve_global, unstack_solution)

_logging.getLogger(__name__).addHandler(_logging.NullHandler())


def __getattr__(name: str):
    """``diffcontract.data`` (learning-curve sources) loads on first use, not with ``import diffcontract``."""
    if name == "data":
        import importlib

        return importlib.import_module(".data", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["__version__", "fast_compile", "ALM", "SLSQP", "AbstractSolver", "BranchAndBound", "solve_global", "SolveError", "run", "Certificate", "CompleteInformation", "ContractProblem", "solve_complete_information",
           "solve_complete_information_batch", "Solution", "Status", "curves", "data", "expectation", "formulation",
           "problem_grid", "solve", "solve_alm", "solve_batch", "solve_exact", "stack_problems", "unstack_solution"]
