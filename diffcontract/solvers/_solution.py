"""The record every solver returns, and the enum of outcomes."""

from __future__ import annotations

import enum
import json
from typing import Any

import jax
import numpy as np
from flax import struct

from ..formulation import Residuals, max_violation, utilities
from ..problem import value_unit


#: Default feasibility tolerance of every solver, *relative to the value scale* v(1) - v(0): a
#: solution is accepted with constraint violations up to ``FEASIBILITY_TOL * (v(1) - v(0))``
#: money (1e-8 money for the paper's v(r) = 100 r). Every money residual (budget, IR, IC) scales
#: with v when v and all costs are multiplied by one factor, and the optimal m does not change
#: (docs/model.md), so a relative tolerance gives the same status for both problems; an absolute one
#: did not.
FEASIBILITY_TOL = 1e-10


def value_scale(problem) -> float:
    """v(1) - v(0), money: the unit of the relative ``FEASIBILITY_TOL`` (host side, float)."""
    return float(np.asarray(value_unit(problem)))


def menu_fields(problem, m, t, mom, res) -> dict:
    """The ``Solution`` fields every solver measures for a menu (m, t), as one dict.

    Args: problem; m, t: (I,) menu; mom: its ``Moments``; res: its ``Residuals``. Pure array
    arithmetic (jittable, vmappable); host callers convert the leaves themselves.
    """
    u = utilities(m, t, problem.costs)
    return dict(contributions=m, rewards=t, reward_bounds=mom.reward_bounds, expected_accuracy=mom.expected_accuracy,
                expected_value=mom.expected_value, utilities=u, reservation_utilities=problem.reservation_utility,
                information_rents=u - problem.reservation_utility, residuals=res, max_violation=max_violation(res))


def host_menu_fields(problem, m, t, mom, res) -> dict:
    """``menu_fields`` as numpy arrays and Python floats (the exact solver's and N = 1 records)."""
    with jax.enable_x64(True):  # called after the solvers' float64 blocks: keep the arithmetic in float64
        fields = jax.tree_util.tree_map(np.asarray, menu_fields(problem, m, t, mom, res))
    for key in ("expected_accuracy", "expected_value", "max_violation"):
        fields[key] = float(fields[key])
    return fields


class Status(enum.IntEnum):
    """How a solve ended, decided from measured residuals, never from "the loop ended".

    Attributes:
      CONVERGED: feasibility and KKT (stationarity) residuals within tolerance.
      MAX_ITERATIONS: the iteration budget ran out before the residuals met tolerance.
      INFEASIBLE: no contract satisfying the constraints was found (the constraint set appears empty).
      NONFINITE: a NaN or infinity appeared in the iterates.
      STALLED: the optimizer stopped early (line search failure, no progress) with residuals above
        tolerance.
      FEASIBLE: every constraint holds but optimality is not claimed (no KKT certificate): the
        learned mechanism's repaired contracts (``diffcontract.learned``).
      INEXACT: the solver converged on an approximate backend's moments, but the exact residuals
        (or, where no exact pass is tractable, the residuals plus the backend's error bound) exceed
        the tolerance (``solvers/_approximate.py``).
    """

    CONVERGED = 0
    MAX_ITERATIONS = 1
    INFEASIBLE = 2
    NONFINITE = 3
    STALLED = 4
    FEASIBLE = 5
    INEXACT = 6


@struct.dataclass
class Certificate:
    """Optimality evidence: Lagrange multipliers and KKT residuals (scaled units).

    Attributes:
      multipliers: dict name -> array of multipliers (>= 0) of the constraints g >= 0 of that name.
      stationarity: ``||grad objective - J^T lambda||_inf / (1 + ||grad objective||_inf)``.
      complementarity: ``max_j lambda_j abs(g_j)`` (money units).
    """

    multipliers: dict
    stationarity: Any
    complementarity: Any


@struct.dataclass
class Solution:
    """A solved contract menu and everything measured about it (canonical type order, costliest first).

    ``m``, ``t`` and ``t_bar`` are short names of ``contributions``, ``rewards`` and ``reward_bounds``.

    Attributes:
      contributions: (I,) m, units of data.
      rewards: (I,) t, promised E[v(r_i) | i], money.
      reward_bounds: (I,) tbar(m), money.
      expected_accuracy: () E[a(n . q m)].
      expected_value: () E[v(a(n . q m))], money (the optimal E_n[v(a)] of the paper's figures).
      utilities: (I,) t - c m, money.
      reservation_utilities: (I,) f, money.
      information_rents: (I,) u - f, money.
      residuals: ``Residuals`` (g >= 0 form).
      max_violation: () money.
      status: int ``Status``.
      iterations: () int.
      wall_time: () seconds.
      backend_reason: why this backend (``expectation.planner``: the rule of "auto", the estimated
        peak memory and time per pass); empty where no plan was made (N = 1, batches).
      error_bound: ``Moments`` of bounds on the approximate figures (E[a], E[v] money, tbar (I,)
        money) where they come from an approximate backend with no exact check; else ``None``.
      information_cost: () E[v(A_CI)] - E[v(a(n . q m))], money, against the complete-information
        benchmark (docs/model.md); ``None`` unless requested (``solve(..., welfare=True)``).
      upper_bound: () certified upper bound on the optimal E[a(n . q m)] (accuracy units, as
        ``expected_accuracy``); ``method="global"`` only, else ``None``.
      gap: () (upper_bound - expected_accuracy) / expected_accuracy; ``method="global"`` only.
      nodes: () int, boxes bounded by ``method="global"``; else ``None``.
    """

    problem: Any
    contributions: Any
    rewards: Any
    reward_bounds: Any
    expected_accuracy: Any
    expected_value: Any
    utilities: Any
    reservation_utilities: Any
    information_rents: Any
    residuals: Residuals
    max_violation: Any
    status: Any
    iterations: Any
    wall_time: Any
    certificate: Any = None
    information_cost: Any = None
    error_bound: Any = None
    upper_bound: Any = None
    gap: Any = None
    nodes: Any = None
    method: str = struct.field(pytree_node=False, default="exact")
    constraints: str = struct.field(pytree_node=False, default="simplified")
    backend: str = struct.field(pytree_node=False, default="enumerate")
    backend_reason: str = struct.field(pytree_node=False, default="")
    message: str = struct.field(pytree_node=False, default="")

    # Short aliases in the paper's notation.
    @property
    def m(self):
        return self.contributions

    @property
    def t(self):
        return self.rewards

    @property
    def t_bar(self):
        return self.reward_bounds

    @property
    def status_name(self) -> str:
        return Status(int(np.asarray(self.status))).name.lower()

    @property
    def succeeded(self) -> bool:
        return int(np.asarray(self.status)) == Status.CONVERGED

    def pooled_groups(self, rtol: float = 1e-6) -> list[list[int]]:
        """Runs of adjacent types (0-based, canonical order) with equal m and t within ``rtol``."""
        def same(a):  # (I - 1,) bool: entry i + 1 equals entry i within rtol
            a = np.asarray(a, dtype=float)
            return np.abs(np.diff(a)) <= rtol * np.maximum(np.maximum(np.abs(a[1:]), np.abs(a[:-1])), 1e-300)

        breaks = np.flatnonzero(~(same(self.contributions) & same(self.rewards))) + 1
        return [group.tolist() for group in np.split(np.arange(np.size(self.contributions)), breaks)]

    def to_json(self) -> str:
        """This solution's JSON record, as ``diffcontract solve --json`` prints it (``solvers/_record.py``).

        Returns:
          A JSON object as text: the menu (lists in canonical order), measured figures, status,
          certificate, problem, ``format`` and ``version``; floats written exactly.
        """
        from ._record import solution_record

        return json.dumps(solution_record(self))

    @classmethod
    def from_json(cls, text: str) -> "Solution":
        """The ``Solution`` a ``to_json`` record describes, number for number.

        Args:
          text: the JSON text (keys other than the record's, such as sensitivities, are ignored).

        Returns:
          The ``Solution`` ((I,) fields as float64 arrays; the problem in canonical type order).
          A malformed record raises ValueError naming the field.
        """
        from ._record import solution_from_record

        return solution_from_record(json.loads(text))
