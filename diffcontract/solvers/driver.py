"""One entry point for every solver."""

from __future__ import annotations

from ._solution import Solution, Status
from .exact import solve_exact

METHODS = ("exact", "alm", "learned")


class SolveError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when the status is not CONVERGED."""

    def __init__(self, solution: Solution):
        super().__init__(f"solve did not converge: status={solution.status_name} ({solution.message})")
        self.solution = solution


def solve(problem, method: str = "exact", constraints: str = "simplified", throw: bool = False, welfare: bool = False,
          backend: str = "auto", **options) -> Solution:
    """Solve a ``ContractProblem``.

    Args:
      problem: the problem.
      method: "exact" (SLSQP on exact enumeration, float64), "alm" (augmented Lagrangian with
        optax, jit-compiled, float64) or "learned" (a trained mechanism network + exact-feasibility
        repair, ``diffcontract.learned``: status FEASIBLE, no optimality claim; option
        ``mechanism=`` a ``LearnedMechanism`` or a saved file, default the packaged I = 3 model).
        "alm" takes ``warm_start=`` contributions, or "learned" to start from the mechanism's
        contract (``mechanism=`` as above).
      constraints: "simplified" (alias "reduced") or "full" (MODEL.md).
      throw: raise ``SolveError`` unless the status is CONVERGED (default: return the status).
      backend: expectation backend: "enumerate" (exact, table in memory), "chunked" (exact, chunks
        unranked on the device), "convolution" (FFT lattice), "montecarlo" (sample average) or
        "auto" (by outcome count); ``Solution.backend`` names the one used. Backend settings go in
        ``backend_options={...}`` (see ``diffcontract.expectation.make_backend``).
      welfare: also solve the complete-information benchmark and fill ``Solution.information_cost``.
      **options: passed to the method's solver (tolerances, iteration limits).

    With one participant (N = 1) the feasible set is a single menu, the reservation menu
    (MODEL.md; ``solvers/_single.py``): both methods return it without optimizing, CONVERGED if it
    satisfies every IR and IC within the method's ``feasibility_tol`` and INFEASIBLE otherwise
    (then no contract is feasible). Iterative solvers cannot find such a point (no interior, no
    constraint qualification) and the simplified constraint set is generally empty there.
    """
    if method == "exact":
        solution = solve_exact(problem, constraints={"reduced": "simplified"}.get(constraints, constraints),
                               backend=backend, **options)
    elif method == "alm":
        from .alm import solve_alm

        if isinstance(options.get("warm_start"), str):
            if options["warm_start"] != "learned":
                raise ValueError(f"warm_start must be contributions or 'learned', got {options['warm_start']!r}")
            options["warm_start"] = _mechanism(options.pop("mechanism", None)).warm_start(problem)
        solution = solve_alm(problem, parameterization=constraints, backend=backend, **options)
    elif method == "learned":
        if backend not in ("auto", "enumerate"):
            raise ValueError(f"backend must be 'auto' or 'enumerate' for method='learned', got {backend!r}")
        mechanism = _mechanism(options.pop("mechanism", None))
        if options:
            raise ValueError(f"method='learned' takes only mechanism=, got {sorted(options)}")
        solution = mechanism.solve(problem)
    else:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if welfare:
        from ..analysis.welfare import welfare as welfare_of

        solution = solution.replace(information_cost=float(welfare_of(problem, solution).information_cost))
    if throw and int(solution.status) != Status.CONVERGED:
        raise SolveError(solution)
    return solution


def _mechanism(mechanism):
    """A ``LearnedMechanism`` from an instance, a saved file, or None (the packaged I = 3 model)."""
    from ..learned import LearnedMechanism, load_mechanism

    if isinstance(mechanism, LearnedMechanism):
        return mechanism
    return load_mechanism(mechanism)
