r"""Honest figures for the approximate backends ("convolution", "montecarlo").

A solver on an approximate backend meets its tolerance on the *approximate* moments; the contract
it returns is then feasible only up to the backend's error. ``settle_approximation`` makes the
``Solution`` say what is known, once, for every solver:

* **Exact check.** Where the planner would run an exact backend for the problem within the memory
  budget (``expectation.plan_backend("auto")`` picks "enumerate" or "chunked"), the contract is
  measured exactly at its menu (one pass): expected accuracy and value, tbar, every residual and
  the max violation reported are the exact ones, and ``error_bound`` is ``None``.
* **Error bound.** Otherwise the solution carries ``error_bound``: the lattice's Richardson estimate
  ``|E_M - E_2M|`` times ``LATTICE_SAFETY`` (its error is O(M^-3), so E_2M's is about 1/8 of
  E_M's and the difference bounds E_M's with room), or ``STANDARD_ERRORS`` Monte Carlo standard
  errors, for E[a], E[v] and every tbar_i; only the budget residuals tbar_i - t_i involve the
  moments (IR and IC are linear in (m, t)), so the residual bound is the largest tbar bound.

Either way the solution is CONVERGED only if the solver converged *and* the exact max violation,
or the approximate one plus the residual bound, is within the tolerance; a converged solve that
fails this is ``Status.INEXACT``, with the figures in its message.
"""

from __future__ import annotations

import numpy as np

from .._cache import kernel_jit
from ..expectation import Moments, moments, plan_backend
from ..expectation.backends import make_backend
from ..formulation import residuals
from ..problem import value_unit
from ._solution import Solution, Status, host_menu_fields

APPROXIMATE = ("convolution", "montecarlo")
LATTICE_SAFETY = 2.0  # x the Richardson estimate |E_M - E_2M| (module docstring)
STANDARD_ERRORS = 4.0  # Monte Carlo bound: 4 standard errors (two-sided Gaussian tail 6e-5)

_exact_moments = kernel_jit(moments)


def _exact_backend(problem, memory_budget: int):
    """An exact backend object for ``problem`` within ``memory_budget``, or None where none is tractable."""
    plan = plan_backend("auto", problem.num_participants, problem.num_types, memory_budget=memory_budget)
    if not plan.exact:
        return None, None
    return make_backend(problem, plan.backend, memory_budget=memory_budget)


def _error_bound(table, m, problem) -> Moments:
    """Bounds on the approximate moments at m (module docstring), as ``Moments`` of floats/arrays."""
    if table.name == "convolution":
        return Moments(*(LATTICE_SAFETY * np.asarray(e, np.float64) for e in table.error_estimate(m, problem)))
    return Moments(*(STANDARD_ERRORS * np.asarray(e, np.float64) for e in table.estimate(m, problem)[1]))


def settle_approximation(solution: Solution, problem, table, feasibility_tol: float, memory_budget: int) -> Solution:
    """``solution`` (canonical order, numpy leaves) measured exactly, or with its error bound, and its status.

    Args:
      solution: the solver's ``Solution`` on an approximate backend.
      problem: the canonical float64 ``ContractProblem`` it was solved for.
      table: the approximate backend object (``LatticeConvolution`` or ``MonteCarlo``).
      feasibility_tol: the solver's tolerance relative to v(1) - v(0).
      memory_budget: bytes, for the exact check's plan.

    Returns:
      The ``Solution`` with exact figures (``error_bound`` None) or with ``error_bound`` set, and a
      status that is CONVERGED only when feasibility holds including the error (module docstring).
    """
    tol = feasibility_tol * float(value_unit(problem))
    plan, exact = _exact_backend(problem, memory_budget)
    m, t = np.asarray(solution.contributions), np.asarray(solution.rewards)
    if exact is not None:
        mom = _exact_moments(m, problem, exact)
        res = residuals(m, t, mom.reward_bounds, problem.costs, problem.reservation_utility)
        solution = solution.replace(**host_menu_fields(problem, m, t, mom, res))
        violation, how = solution.max_violation, f"exact check ({plan.backend})"
    else:
        bound = _error_bound(table, m, problem)
        solution = solution.replace(error_bound=bound)
        violation = solution.max_violation + float(np.max(bound.reward_bounds))
        how = f"max violation {solution.max_violation:.3g} + error bound {float(np.max(bound.reward_bounds)):.3g}"
    if int(solution.status) == Status.CONVERGED and violation > tol:
        return solution.replace(status=int(Status.INEXACT), message=(
            f"{solution.message}; converged on the {table.name} moments, but the {how} gives {violation:.3g} money "
            f"> tol {tol:.3g}: feasibility is not certified"))
    return solution.replace(message=f"{solution.message}; figures by the {how}" if exact is not None
                            else f"{solution.message}; error bound attached ({how})")
