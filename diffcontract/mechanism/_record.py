"""Read a solved contract from a ``Solution`` or from its JSON record (``Solution.to_json``,
``analysis.solution_record``, ``diffcontract solve --json``).

Everything downstream (realization, verifier, simulation) takes either form. A record is rebuilt
into a validated ``ContractProblem`` (``ContractProblem.from_dict``: bad input fails with messages
that name the field; every curve kind of ``curves.io`` reads back) plus the menu (m, t) in
canonical type order (costliest first, docs/model.md). Only the menu and the problem are needed: a
hand-written ``{"m", "t", "problem"}`` is a record too.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..problem import ContractProblem

MAX_OUTCOMES = 20_000_000  # (K, I) int and float64 tables of ~1-2 GB at I = 5: beyond, no exact enumeration


class Contract(NamedTuple):
    """A menu and the problem it answers, canonical type order (costliest first).

    Attributes:
      problem: validated ``ContractProblem``.
      m: (I,) contributions, units of data.
      t: (I,) promised expected reward values, money.
      reported: figures the solver reported about itself (``t_bar``, ``expected_value``), for
        comparison only; never trusted by the checks.
    """

    problem: ContractProblem
    m: np.ndarray
    t: np.ndarray
    reported: dict


def is_number(value: Any, kinds: tuple = (int, float)) -> bool:
    """``value`` is an instance of ``kinds`` (Python numbers by default) and not a bool."""
    return isinstance(value, kinds) and not isinstance(value, bool)


def json_safe(value: Any) -> Any:
    """``value`` (a number, or dicts and lists of them) with every non-finite float replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def check_setting(name: str, value: Any, valid: bool, expected: str) -> None:
    """Raise a ValueError naming ``name`` and ``value`` unless ``valid`` ("{name} must be {expected}")."""
    if not valid:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def check_enumerable(problem: ContractProblem, who: str) -> int:
    """K = C(N + I - 1, I - 1); a ValueError naming ``participants`` when K exceeds ``MAX_OUTCOMES``.

    Args:
      problem: ``ContractProblem``.  who: what enumerates the outcomes, for the message.

    Returns:
      K, the number of outcomes.
    """
    N, num, K = problem.num_participants, problem.num_types, problem.num_outcomes
    if K > MAX_OUTCOMES:
        raise ValueError(f"participants: N = {N} with I = {num} types has {K} outcomes; {who} enumerates every "
                         f"outcome and stops at {MAX_OUTCOMES}")
    return K


def _field(record: dict, key: str) -> Any:
    """``record[key]``, or a ValueError naming the missing field."""
    if key not in record:
        raise ValueError(f"solution record is missing the field {key!r}")
    return record[key]


def _menu_vector(record: dict, key: str, size: int) -> np.ndarray:
    value = _field(record, key)
    check_setting(key, value, isinstance(value, list) and all(map(is_number, value)), f"a list of {size} numbers")
    if len(value) != size:
        raise ValueError(f"{key} has {len(value)} entries but the problem has {size} types")
    arr = np.asarray(value, dtype=np.float64)
    check_setting(key, value, bool(np.all(np.isfinite(arr))), "finite")
    return arr


def load_contract(solution: Any) -> Contract:
    """A ``Contract`` from a ``Solution`` or a JSON record (dict) of one.

    A record's lists are in the order of its ``problem`` (canonical when written by
    ``solution_record``); a record written in another order is put into canonical order here.

    Raises:
      ValueError naming the field on bad input (missing keys, wrong lengths, non-finite numbers,
      contributions whose pooled data overflows float64, an invalid problem).
    """
    if isinstance(solution, dict):
        problem = ContractProblem.from_dict(_field(solution, "problem"))
        record, order = solution, np.asarray(problem.type_order)  # canonical index -> record index
        t_bar = solution.get("t_bar")
        valid_t_bar = isinstance(t_bar, list) and len(t_bar) == problem.num_types and all(map(is_number, t_bar))
        reported = {"t_bar": np.asarray(t_bar, dtype=np.float64)[order]} if valid_t_bar else {}
        value = solution.get("expected_value")
        reported.update({"expected_value": float(value)} if is_number(value) and math.isfinite(value) else {})
    elif hasattr(solution, "contributions") and hasattr(solution, "problem"):
        problem = solution.problem
        if not isinstance(problem, ContractProblem):
            raise ValueError(f"solution.problem must be a ContractProblem, got {type(problem).__name__}")
        if np.ndim(problem.costs) != 1:
            raise ValueError("solution is a batch; take one member with unstack_solution(solution, k) first")
        # A Solution is in canonical order; its menu is checked as a record's would be.
        record = {"m": np.asarray(solution.contributions, dtype=np.float64).tolist(),
                  "t": np.asarray(solution.rewards, dtype=np.float64).tolist()}
        order = np.arange(problem.num_types)
        reported = {"t_bar": np.asarray(solution.reward_bounds, dtype=np.float64),
                    "expected_value": float(np.asarray(solution.expected_value))}
    else:
        raise ValueError(f"expected a Solution or a JSON record (dict) of one, got {type(solution).__name__}")
    m, t = (_menu_vector(record, key, problem.num_types)[order] for key in ("m", "t"))
    # Pooled data n . q m <= N max_i q_i m_i (the counts sum to N): finite for every outcome iff this is.
    if not math.isfinite(problem.num_participants * float(np.max(np.asarray(problem.quality) * m))):
        raise ValueError(f"m has a contribution whose pooled data N q_i m_i overflows float64: {m.tolist()}")
    return Contract(problem, m, t, reported)
