"""One entry point for every solver."""

from __future__ import annotations

from ._solution import Solution, Status
from .exact import solve_exact

METHODS = ("exact", "alm")


class SolveError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when the status is not CONVERGED."""

    def __init__(self, solution: Solution):
        super().__init__(f"solve did not converge: status={solution.status_name} ({solution.message})")
        self.solution = solution


def solve(problem, method: str = "exact", constraints: str = "simplified", throw: bool = False, welfare: bool = False,
          **options) -> Solution:
    """Solve a ``ContractProblem``.

    Args:
      problem: the problem.
      method: "exact" (SLSQP on exact enumeration, float64) or "alm" (augmented Lagrangian with
        optax, jit-compiled, float64).
      constraints: "simplified" (alias "reduced") or "full" (MODEL.md).
      throw: raise ``SolveError`` unless the status is CONVERGED (default: return the status).
      welfare: also solve the complete-information benchmark and fill ``Solution.information_cost``.
      **options: passed to the method's solver (tolerances, iteration limits).
    """
    if method == "exact":
        solution = solve_exact(problem, constraints={"reduced": "simplified"}.get(constraints, constraints), **options)
    elif method == "alm":
        from .alm import solve_alm

        solution = solve_alm(problem, parameterization=constraints, **options)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if welfare:
        from ..analysis.welfare import welfare as welfare_of

        solution = solution.replace(information_cost=float(welfare_of(problem, solution).information_cost))
    if throw and int(solution.status) != Status.CONVERGED:
        raise SolveError(solution)
    return solution
