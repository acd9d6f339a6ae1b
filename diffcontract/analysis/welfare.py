r"""Welfare comparisons (docs/model.md "The complete-information benchmark").

* Information cost: what the coordinator loses by not seeing types,
  :math:`E_n[v(A_{CI}(n))] - E_n[v(a(n \cdot q m^*))] \ge 0` (money), with :math:`A_{CI}` the
  complete-information benchmark and :math:`m^*` the first-moment optimum.
* Information rents: what each type gains from its private information,
  :math:`(t_i - c_i m_i) - f_i \ge 0` (money).

Every function works on one solution or on a batch (leading batch axis on every leaf), and
returns arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from ..problem import ContractProblem, batch_size
from ..solvers.complete_info import CompleteInformation, solve_complete_information, solve_complete_information_batch


class Welfare(NamedTuple):
    """Welfare of a first-moment solution against the complete-information benchmark (money).

    Shapes: () for one problem, (B,) / (B, I) for a batch of B.
      information_cost: E[v(A_CI)] - E[v(a(n . q m*))], >= 0 up to solver tolerance.
      information_rents: (I,) utilities - reservation utilities, >= 0 up to solver tolerance.
      complete_value: E[v(A_CI)].       incomplete_value: E[v(a(n . q m*))].
    """

    information_cost: Any
    information_rents: Any
    complete_value: Any
    incomplete_value: Any


def information_cost(solution, complete: CompleteInformation):
    """E_n[v(A_CI(n))] - E_n[v(a(n . q m*))], money; () or (B,).

    Args:
      solution: a ``Solution`` (single or batched).
      complete: the ``CompleteInformation`` of the same problem(s), same batch shape.
    """
    complete_value = np.asarray(complete.expected_value)
    incomplete_value = np.asarray(solution.expected_value)
    if complete_value.shape != incomplete_value.shape:
        raise ValueError(f"solution and complete-information batch shapes differ: {incomplete_value.shape} vs "
                         f"{complete_value.shape}")
    return complete_value - incomplete_value


def information_rents(solution):
    """(t_i - c_i m_i) - f_i per type, money; (I,) or (B, I), canonical order (costliest first)."""
    return np.asarray(solution.utilities) - np.asarray(solution.reservation_utilities)


def welfare(problem_or_batch, solution, complete: CompleteInformation | None = None) -> Welfare:
    """Information cost and rents of ``solution``, solving the complete-information benchmark.

    Args:
      problem_or_batch: the ``ContractProblem`` ``solution`` solves, a batched one (from
        ``problem_grid`` / ``stack_problems``) or a list of problems; ``None`` takes
        ``solution.problem``.
      solution: a ``Solution``; batched (leading axis B) for a batch of problems.
      complete: optional precomputed ``CompleteInformation`` (else solved here, float64).

    Returns:
      ``Welfare`` of numpy arrays: () / (I,) for one problem, (B,) / (B, I) for a batch.
    """
    problem = solution.problem if problem_or_batch is None else problem_or_batch
    if complete is None:
        single = isinstance(problem, ContractProblem) and batch_size(problem) is None
        complete = (solve_complete_information if single else solve_complete_information_batch)(problem)
    return Welfare(information_cost(solution, complete), information_rents(solution),
                   np.asarray(complete.expected_value), np.asarray(solution.expected_value))


__all__ = ["Welfare", "information_cost", "information_rents", "welfare"]
