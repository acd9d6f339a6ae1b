"""Read a solved contract from a ``Solution`` or from its JSON record (``Solution.to_json``,
``analysis.solution_record``, ``diffcontract solve --json``).

Everything downstream (realization, verifier, simulation) takes either form. A record is rebuilt
into a validated ``ContractProblem`` (``ContractProblem.from_dict``: bad input fails with messages
that name the field; every curve kind of ``curves.io`` reads back) plus the menu (m, t) in
canonical type order (costliest first, MODEL.md). Only the menu and the problem are needed: a
hand-written ``{"m", "t", "problem"}`` is a record too.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..problem import ContractProblem


class Contract(NamedTuple):
    """A menu and the problem it answers, canonical type order (costliest first).

    problem: validated ``ContractProblem``.  m: (I,) contributions, units of data.
    t: (I,) promised expected reward values, money.
    reported: figures the solver reported about itself (``t_bar``, ``expected_value``, ``status``,
      ``method``), for comparison only; never trusted by the checks.
    """

    problem: ContractProblem
    m: np.ndarray
    t: np.ndarray
    reported: dict


def _menu_vector(record: dict, key: str, size: int) -> np.ndarray:
    if key not in record:
        raise ValueError(f"solution record is missing the field {key!r}")
    value = record[key]
    if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value):
        raise ValueError(f"{key} must be a list of {size} numbers, got {value!r}")
    if len(value) != size:
        raise ValueError(f"{key} has {len(value)} entries but the problem has {size} types")
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return arr


def load_contract(solution: Any) -> Contract:
    """A ``Contract`` from a ``Solution`` or a JSON record (dict) of one.

    A record's lists are in the order of its ``problem`` (canonical when written by
    ``solution_record``); a record written in another order is put into canonical order here.

    Raises:
      ValueError naming the field on bad input (missing keys, wrong lengths, non-finite numbers,
      an invalid problem).
    """
    if isinstance(solution, dict):
        if "problem" not in solution:
            raise ValueError("solution record is missing the field 'problem'")
        problem = ContractProblem.from_dict(solution["problem"])
        num = problem.num_types
        order = np.asarray(problem.type_order)  # canonical index -> record index
        m = _menu_vector(solution, "m", num)[order]
        t = _menu_vector(solution, "t", num)[order]
        reported = {}
        t_bar = solution.get("t_bar")
        if isinstance(t_bar, list) and len(t_bar) == num and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in t_bar):
            reported["t_bar"] = np.asarray(t_bar, dtype=np.float64)[order]
        for key in ("expected_value", "expected_accuracy"):
            value = solution.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                reported[key] = float(value)
        for key in ("status", "method", "constraints"):
            if isinstance(solution.get(key), str):
                reported[key] = solution[key]
        return Contract(problem, m, t, reported)
    if hasattr(solution, "contributions") and hasattr(solution, "problem"):
        problem = solution.problem
        if not isinstance(problem, ContractProblem):
            raise ValueError(f"solution.problem must be a ContractProblem, got {type(problem).__name__}")
        if np.ndim(problem.costs) != 1:
            raise ValueError("solution is a batch; take one member with unstack_solution(solution, k) first")
        m = np.asarray(solution.contributions, dtype=np.float64)
        t = np.asarray(solution.rewards, dtype=np.float64)
        if m.shape != (problem.num_types,) or t.shape != m.shape:
            raise ValueError(f"solution contributions/rewards must have shape ({problem.num_types},), "
                             f"got {m.shape} and {t.shape}")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(t))):
            raise ValueError("solution contributions (m) and rewards (t) must be finite")
        reported = {"t_bar": np.asarray(solution.reward_bounds, dtype=np.float64),
                    "expected_value": float(np.asarray(solution.expected_value)),
                    "expected_accuracy": float(np.asarray(solution.expected_accuracy)),
                    "status": solution.status_name, "method": solution.method, "constraints": solution.constraints}
        return Contract(problem, m, t, reported)
    raise ValueError(f"expected a Solution or a JSON record (dict) of one, got {type(solution).__name__}")
