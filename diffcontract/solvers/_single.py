r"""One participant (N = 1): the feasible set of the first-moment problem is a single menu.

With N = 1 the only outcome in which type i is present is n = e_i (truncated and interim
conditioning alike), so :math:`\bar t_i(m) = v(a(q_i m_i))` depends on m_i alone, and budget plus
IR give, for every type,

.. math:: v(a(q_i m_i)) - c_i m_i \ge t_i - c_i m_i \ge f_i = \max\big(0, \max_{m \ge 0} v(a(q_i m)) - c_i m\big),

so m_i maximizes the utility of training alone, m_i = m^res_i (0 where f_i = 0), and
t_i = v(a(q_i m^res_i)): the *reservation menu* (docs/model.md "Training alone: reservation utilities"), whatever the objective.
It is the optimum if it satisfies the pairwise ICs, and otherwise no contract is feasible: status
INFEASIBLE, a proof rather than numerical evidence, given that each m^res_i is the unique
maximizer (as it is generically; with tied maximizers another combination could be feasible).

The simplified constraint set of docs/model.md (local downward ICs binding) is generally empty here:
it needs t_{i+1} - c_{i+1} m_{i+1} = t_i - c_{i+1} m_i, which the reservation menu meets only by
coincidence; its equivalence with the full set at the optimum needs N >= 2. So every method and
constraint set gets this menu, checked against the full constraint set (every IR and pairwise IC).

Certificate: at an isolated feasible point the tangent cone is {0}, so first-order optimality
holds with nothing to measure (no feasible direction exists); Lagrange multipliers need not exist
(type i's budget and IR gradients are opposite at m^res_i, so no constraint qualification holds).
The multipliers are reported as zeros, and stationarity and complementarity as 0: the residuals
of first-order optimality on that tangent cone, not of a multiplier rule.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from .. import _precision
from ..expectation import moments, outcome_table, with_weights
from ..formulation import max_violation, residuals
from ._solution import FEASIBILITY_TOL, Certificate, Solution, Status, host_menu_fields, value_scale

MESSAGE = ("N = 1: the feasible set is the single reservation menu (m_i = m^res_i, t_i = v(a(q_i m^res_i)); "
           "solvers/_single.py), returned without optimization")


def _zero_multipliers(num: int, constraints: str) -> dict:
    """Zeros in the one certificate layout of the constraint set (``_kkt.multiplier_record``)."""
    if constraints == "full":
        return {"budget": np.zeros(num), "ir": np.zeros(num), "ic": np.zeros(num * (num - 1)),
                "nonnegative": np.zeros(2 * num)}
    return {"budget": np.zeros(num), "ir_others": np.zeros(num - 1), "monotone": np.zeros(num)}


def solve_single_participant(problem, method: str = "exact", constraints: str = "simplified",
                             feasibility_tol: float = FEASIBILITY_TOL) -> Solution:
    """The unique feasible menu of a problem with N = 1, or INFEASIBLE (see the module docstring).

    Args:
      problem: ``ContractProblem`` with ``participants == 1``.
      method: the method the caller asked for ("exact" or "alm"); names the ``Solution`` and fixes
        the shapes of its certificate.
      constraints: "simplified" or "full"; recorded as given, though the menu is checked against the full set.
      feasibility_tol: accepted violation relative to v(1) - v(0) (as the solvers' option).

    Returns:
      ``Solution``: status CONVERGED if the reservation menu's measured violation of the full
      constraint set is within ``feasibility_tol * (v(1) - v(0))`` money, else INFEASIBLE.
    """
    if problem.num_participants != 1:
        raise ValueError(f"participants must be 1 here, got {problem.num_participants}")
    start = time.perf_counter()
    with _precision.float64():
        problem = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        table = outcome_table(1, problem.num_types)  # the I outcomes n = e_i
        table = with_weights(problem, table._replace(counts=jnp.asarray(table.counts), valid=jnp.asarray(table.valid)))
        m = jnp.asarray(problem.reservation_data)
        mom = moments(m, problem, table)
        t = mom.reward_bounds  # tbar_i(m) = v(a(q_i m_i)): every budget binds
        res = residuals(m, t, mom.reward_bounds, problem.costs, problem.reservation_utility)
        violation = float(max_violation(res))
        tol = feasibility_tol * value_scale(problem)
    finite = bool(np.all(np.isfinite(np.asarray(t)))) and np.isfinite(violation)
    if not finite:
        status, note = Status.NONFINITE, "non-finite reservation menu"
    elif violation <= tol:
        status, note = Status.CONVERGED, "it satisfies every IR and IC"
    else:
        status, note = Status.INFEASIBLE, (f"it violates the constraints by {violation:.6g} money, so no contract "
                                           "is feasible")
    return Solution(
        problem=problem,
        **host_menu_fields(problem, m, t, mom, res),
        status=int(status),
        iterations=0,
        wall_time=time.perf_counter() - start,
        certificate=Certificate(multipliers=_zero_multipliers(problem.num_types, constraints),
                                stationarity=0.0, complementarity=0.0),
        method=method,
        constraints=constraints,
        backend="enumerate",
        message=f"{MESSAGE}; {note}",
    )
