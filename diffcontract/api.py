"""``solve``: one entry point for every method, the learned mechanism and the welfare benchmark included.

It sits above every layer (solvers, learned, analysis) so that the solvers' driver never imports up.
"""

from __future__ import annotations

from .solvers._solution import Solution, Status
from .solvers.base import AbstractSolver
from .solvers.driver import SolveError, run, solver_for

METHODS = ("exact", "alm", "learned", "global")


def solve(problem, method: str = "exact", constraints: str = "simplified", throw: bool = False, welfare: bool = False,
          backend: str = "auto", backend_options: dict | None = None, solver: AbstractSolver | None = None,
          warm_start=None, mechanism=None, **options) -> Solution:
    """Solve a ``ContractProblem``.

    Args:
      problem: the problem.
      method: "exact" (``SLSQP``: scipy on exact expectations, float64), "alm" (``ALM``: augmented
        Lagrangian with optax, one compiled loop, float64), "learned" (a trained mechanism network +
        exact-feasibility repair, ``diffcontract.learned``: status FEASIBLE, no optimality claim) or
        "global" (``BranchAndBound``: a certified global optimum of the full set, with ``upper_bound``
        and ``gap``; CONVERGED only when gap <= gap_tol; enumeration, at most 2^16 outcomes).
      constraints: "simplified" or "full" (docs/model.md).
      throw: raise ``SolveError`` unless the status is CONVERGED (default: return the status).
      welfare: also solve the complete-information benchmark and fill ``Solution.information_cost``.
      backend: expectation backend: "enumerate", "chunked", "convolution", "montecarlo" or "auto";
        ``backend_options``: its ``make_backend`` options. ``Solution.backend`` names the one used.
      solver: an ``AbstractSolver`` instance (overrides ``method`` and ``options``), e.g.
        ``ALM(kkt_tol=1e-9)`` or a user's own solver class.
      warm_start: (I,) contributions (canonical order, non-decreasing), or "learned" for the learned
        mechanism's contract: the only start.
      mechanism: the ``LearnedMechanism`` (or a saved file) for "learned" and ``warm_start="learned"``;
        default the packaged I = 3 model.
      **options: the method's solver fields (``SLSQP``: feasibility_tol, kkt_tol, max_iterations,
        restarts, starts; ``ALM``: feasibility_tol, kkt_tol, learning_rate, max_outer, starts, ...;
        ``BranchAndBound``: gap_tol, time_limit, max_nodes, batch_size, local_searches, feasibility_tol).

    Returns:
      ``Solution``. With one participant (N = 1) the feasible set is a single menu, the reservation
      menu, returned without optimizing (``solvers/_single.py``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    notes = []
    if method == "learned" and solver is None:
        if options or warm_start is not None:
            raise ValueError(f"method='learned' takes only mechanism=, got {sorted(options) or ['warm_start']}")
        if backend not in ("auto", "enumerate"):
            raise ValueError(f"backend must be 'auto' or 'enumerate' for method='learned', got {backend!r}")
        learned = _mechanism(mechanism)
        notes = learned.distribution.check(problem)  # refuses what it was not trained for, by name
        solver, constraints = learned.solver(), "full"  # its contracts carry the full set's least rewards
    if method == "global" and solver is None:
        solution = _solve_global(problem, constraints, backend, warm_start, options)
    else:  # a KKT solver's (or the learned mechanism's) solve through the driver
        if isinstance(warm_start, str):
            if warm_start != "learned":
                raise ValueError(f"warm_start must be contributions or 'learned', got {warm_start!r}")
            warm_start = _mechanism(mechanism).warm_start(problem)
        solver = solver if solver is not None else solver_for(method, options)
        solution = run(problem, solver, constraints, backend, backend_options, warm_start=warm_start, notes=notes)
    if welfare:
        from .analysis.welfare import welfare as welfare_of

        solution = solution.replace(information_cost=float(welfare_of(problem, solution).information_cost))
    if throw and int(solution.status) != Status.CONVERGED:
        raise SolveError(solution)
    return solution


def _solve_global(problem, constraints: str, backend: str, warm_start, options: dict) -> Solution:
    """``method="global"``: options checked by name, then ``solve_global`` (``solvers/branch_and_bound.py``)."""
    from .solvers.branch_and_bound import BranchAndBound, solve_global
    from .solvers.driver import check_constraints, with_options

    check_constraints(constraints)  # either set: the full set's optimum is certified (it holds the simplified one's)
    if backend not in ("auto", "enumerate"):
        raise ValueError(f"backend must be 'auto' or 'enumerate' for method='global' (it enumerates every "
                         f"outcome in every box), got {backend!r}")
    if warm_start is not None:
        raise ValueError("method='global' takes no warm_start (its incumbent comes from the exact solver)")
    return solve_global(problem, with_options("global", BranchAndBound, options))


def _mechanism(mechanism):
    """A ``LearnedMechanism`` from an instance, a saved file, or None (the packaged I = 3 model)."""
    from .learned import LearnedMechanism, load_mechanism

    return mechanism if isinstance(mechanism, LearnedMechanism) else load_mechanism(mechanism)
