"""The JSON record of a ``Solution``: ``Solution.to_json``, ``analysis.solution_record``, ``solve --json``.

One flat object: the menu and what was measured about it (lists in canonical type order, costliest
first), the status, the KKT certificate, the problem (``ContractProblem.to_dict``), and ``format``
and ``version`` (of diffcontract, that wrote it). Python writes a float64 as its shortest repr,
which reads back as the same float64: ``Solution.from_json(s.to_json())`` holds the same numbers.
``reservation_data`` and ``pooled_groups`` are written for readers and not read back (the problem
and the menu give them). The verifier reads these records with its own reader
(``mechanism/_record.py``), which needs only ``m``, ``t`` and ``problem``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._version import __version__
from ..expectation import Moments
from ..formulation import Residuals
from ..problem import ContractProblem
from ._solution import Certificate, Solution, Status

FORMAT = "diffcontract-solution-v1"
# record key -> Solution field, for the numbers and (I,)-lists of the menu.
NUMBERS = {"m": "contributions", "t": "rewards", "t_bar": "reward_bounds", "expected_accuracy": "expected_accuracy",
           "expected_value": "expected_value", "reservation_utility": "reservation_utilities",
           "utility": "utilities", "information_rent": "information_rents", "max_violation": "max_violation",
           "wall_time": "wall_time"}
TEXT = ("method", "constraints", "backend", "message")
OPTIONAL_TEXT = ("backend_reason",)  # absent from records written before 0.3 (read as "")
# record key -> ``Moments`` field of ``error_bound`` (approximate backends without an exact check).
ERROR_BOUND = {"expected_accuracy": "expected_accuracy", "expected_value": "expected_value", "t_bar": "reward_bounds"}
# ``method="global"``'s certificate: key -> the value a JSON null (a non-finite number) reads back as.
GLOBAL_BOUNDS = {"upper_bound": -np.inf, "gap": np.inf, "nodes": 0}


def _plain(value: Any) -> Any:
    """A number or an array as a float64 Python float or (nested) list."""
    return np.asarray(value, dtype=np.float64).tolist()


def solution_record(solution: Solution) -> dict:
    """The JSON-ready record of one (unbatched) ``Solution``; see the module docstring.

    Args:
      solution: a ``Solution`` of one problem (canonical order; take a batch apart first).

    Returns:
      dict with ``format``, ``version``, the keys of ``NUMBERS`` (money, units of data, seconds),
      ``reservation_data``, ``pooled_groups``, ``residuals`` (every ``Residuals`` field, money),
      ``status`` (a ``Status`` name), ``iterations``, ``method``, ``constraints``, ``backend``,
      ``backend_reason``, ``message``, ``problem``, and ``information_cost``, ``error_bound``
      (E[a], E[v] money, t_bar money), ``upper_bound`` and ``gap`` (E[a] units; ``null`` where not
      finite) and ``nodes`` of ``method="global"``, and ``certificate`` where the solution has them.
    """
    if np.ndim(solution.expected_value) != 0:
        raise ValueError("solution is a batch; take one member with unstack_solution(solution, k) first")
    record = {"format": FORMAT, "version": __version__}
    record.update({key: _plain(getattr(solution, name)) for key, name in NUMBERS.items()})
    record.update(reservation_data=_plain(solution.problem.reservation_data), pooled_groups=solution.pooled_groups(),
                  residuals={k: _plain(v) for k, v in solution.residuals._asdict().items()},
                  status=solution.status_name, iterations=int(solution.iterations),
                  **{key: getattr(solution, key) for key in TEXT + OPTIONAL_TEXT}, problem=solution.problem.to_dict())
    if solution.information_cost is not None:
        record["information_cost"] = _plain(solution.information_cost)
    if solution.error_bound is not None:
        record["error_bound"] = {key: _plain(getattr(solution.error_bound, name)) for key, name in ERROR_BOUND.items()}
    for key in GLOBAL_BOUNDS:
        value = getattr(solution, key)
        if value is not None:
            record[key] = (int(value) if key == "nodes" else _plain(value)) if np.isfinite(value) else None  # JSON has no inf
    cert = solution.certificate
    if cert is not None:
        record["certificate"] = {"stationarity": _plain(cert.stationarity),
                                 "complementarity": _plain(cert.complementarity),
                                 "multipliers": {k: _plain(v) for k, v in cert.multipliers.items()}}
    return record


def _get(record: Any, key: str, where: str = "solution record") -> Any:
    if not isinstance(record, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(record).__name__}")
    if key not in record:
        raise ValueError(f"{where} is missing the field {key!r}")
    return record[key]


def _numbers(record: Any, key: str, where: str = "solution record") -> Any:
    """``record[key]`` as a float or a float64 array; ValueError naming the key unless it is numbers."""
    value = _get(record, key, where)
    try:
        arr = np.asarray(value)
    except ValueError:  # a ragged list
        arr = np.asarray(None)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: {key} must be a number or a list of numbers, got {value!r}")
    arr = arr.astype(np.float64)
    return float(arr) if arr.ndim == 0 else arr


def _error_bound(record: dict) -> Moments | None:
    """The record's ``error_bound`` as ``Moments``, or None where it has none."""
    bound = record.get("error_bound")
    return None if bound is None else Moments(*(_numbers(bound, key, "error_bound") for key in ERROR_BOUND))


def solution_from_record(record: Any) -> Solution:
    """The ``Solution`` a record describes (the inverse of ``solution_record``, number for number).

    Args:
      record: dict written by ``solution_record`` (extra keys, such as ``solve --sensitivities``'
        derivatives, are ignored).

    Returns:
      A ``Solution``: (I,) fields as float64 arrays, scalars as floats, the problem rebuilt by
      ``ContractProblem.from_dict`` (canonical type order).

    Raises:
      ValueError naming the field for a missing or malformed field or another record format.
    """
    if _get(record, "format") != FORMAT:
        raise ValueError(f"solution record has format {record['format']!r}; this version reads {FORMAT!r}")
    status = _get(record, "status")
    if not isinstance(status, str) or status.upper() not in Status.__members__:
        raise ValueError(f"solution record: status must be one of {[s.name.lower() for s in Status]}, got {status!r}")
    texts = {key: _get(record, key) for key in TEXT} | {key: record.get(key, "") for key in OPTIONAL_TEXT}
    bad = [key for key, value in texts.items() if not isinstance(value, str)]
    if bad:
        raise ValueError(f"solution record: {bad[0]} must be a string, got {texts[bad[0]]!r}")
    residuals = _get(record, "residuals")
    certificate = record.get("certificate")
    if certificate is not None:
        multipliers = _get(certificate, "multipliers", "certificate")
        certificate = Certificate(
            multipliers={k: _numbers(multipliers, k, "certificate.multipliers") for k in multipliers or {}},
            stationarity=_numbers(certificate, "stationarity", "certificate"),
            complementarity=_numbers(certificate, "complementarity", "certificate"))
    iterations = _numbers(record, "iterations")
    if np.ndim(iterations) or not float(iterations).is_integer():
        raise ValueError(f"solution record: iterations must be an integer, got {iterations!r}")
    return Solution(problem=ContractProblem.from_dict(_get(record, "problem")),
                    **{name: _numbers(record, key) for key, name in NUMBERS.items()},
                    residuals=Residuals(*(_numbers(residuals, k, "residuals") for k in Residuals._fields)),
                    status=int(Status[status.upper()]), iterations=int(iterations), certificate=certificate,
                    information_cost=_numbers(record, "information_cost") if "information_cost" in record else None,
                    error_bound=_error_bound(record), **_global_bounds(record), **texts)


def _global_bounds(record: dict) -> dict:
    """``upper_bound``, ``gap`` and ``nodes`` of a ``method="global"`` record (absent: none)."""
    found = {key: (missing if record[key] is None else _numbers(record, key))
             for key, missing in GLOBAL_BOUNDS.items() if key in record}
    if "nodes" in found:
        found["nodes"] = int(found["nodes"])
    return found
