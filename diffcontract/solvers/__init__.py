"""Solvers of the first-moment contract problem and the ``solve`` driver."""

from ._solution import Certificate, Solution, Status
from .exact import solve_exact
from .driver import solve

__all__ = ["Certificate", "Solution", "Status", "solve", "solve_exact"]
