"""Read a solved contract from a ``Solution`` or from its JSON record (``analysis.solution_record``).

Everything downstream (realization, verifier, simulation) takes either form. A record is rebuilt
into a validated ``ContractProblem`` (so bad input fails with the problem's own messages, which name
the field) plus the menu (m, t) in canonical type order (costliest first, MODEL.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

from ..curves import spec as _spec
from ..problem import ContractProblem

REQUIRED_PROBLEM_FIELDS = ("participants", "probs", "costs", "accuracy", "valuation")


def _curve_registry(kind_of: str) -> dict:
    """Curve classes a record may name, keyed by lower-case class or spec name."""
    if kind_of == "accuracy":
        registry = dict(_spec.ACCURACY)
        try:  # the learning-curve families, where this checkout has them
            from ..curves import families

            for name in ("Pow4", "MMF", "LogPower", "Exp3", "Weibull"):
                if hasattr(families, name):
                    registry[name.lower()] = getattr(families, name)
        except ImportError:  # pragma: no cover - optional module
            pass
    else:
        registry = dict(_spec.VALUATION)
    for cls in list(registry.values()):
        registry.setdefault(cls.__name__.lower(), cls)
    return registry


def curve_from_dict(kind_of: str, spec: Any, field: str | None = None) -> Any:
    """Rebuild a curve from ``{"kind": ClassName, param: value, ...}`` (``problem.to_dict`` output).

    Args:
      kind_of: "accuracy" or "valuation" (which registry to look the kind up in).
      spec: the dict.
      field: name used in error messages (default ``problem.<kind_of>``).

    Raises:
      ValueError naming ``field`` for an unknown kind, a missing or non-numeric parameter, or a
      curve that fails its own validation.
    """
    field = field or f"problem.{kind_of}"
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"{field} must be an object like {{\"kind\": \"Linear\", \"scale\": 100}}, got {spec!r}")
    registry = _curve_registry(kind_of)
    kind = str(spec["kind"]).lower()
    if kind not in registry:
        raise ValueError(f"{field}: cannot rebuild a curve of kind {spec['kind']!r} from JSON; "
                         f"known kinds: {sorted({c.__name__ for c in registry.values()})}")
    cls = registry[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    params = {k: v for k, v in spec.items() if k != "kind"}
    unknown = set(params) - names
    if unknown:
        raise ValueError(f"{field}: {cls.__name__} has no parameter(s) {sorted(unknown)}; it takes {sorted(names)}")
    values = {}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{field}.{key} must be a number, got {value!r}")
        values[key] = float(value)
    try:
        curve = cls(**values)
        curve.validate()
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from err
    except TypeError as err:  # a required parameter is missing
        raise ValueError(f"{field}: {err}") from err
    return curve


def problem_from_dict(data: Any, field: str = "problem") -> ContractProblem:
    """Rebuild a validated ``ContractProblem`` from ``ContractProblem.to_dict()`` output.

    ``quality`` (default all ones) and ``conditioning`` (default "truncated") may be omitted; the
    other keys are required. Raises ValueError naming the field on bad input.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{field} must be a JSON object (ContractProblem.to_dict()), got {type(data).__name__}")
    for key in REQUIRED_PROBLEM_FIELDS:
        if key not in data:
            raise ValueError(f"{field} is missing the field {key!r}")
    unknown = set(data) - set(REQUIRED_PROBLEM_FIELDS) - {"quality", "conditioning"}
    if unknown:
        raise ValueError(f"{field} has unknown field(s) {sorted(unknown)}")
    for key in ("probs", "costs", "quality"):
        value = data.get(key)
        if value is not None and (not isinstance(value, list) or
                                  any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value)):
            raise ValueError(f"{field}.{key} must be a list of numbers, got {value!r}")
    accuracy = curve_from_dict("accuracy", data["accuracy"], f"{field}.accuracy")
    valuation = curve_from_dict("valuation", data["valuation"], f"{field}.valuation")
    conditioning = data.get("conditioning", "truncated")
    if not isinstance(conditioning, str):
        raise ValueError(f"{field}.conditioning must be a string, got {conditioning!r}")
    try:
        return ContractProblem(participants=data["participants"], probs=data["probs"], costs=data["costs"],
                               accuracy=accuracy, valuation=valuation, quality=data.get("quality"),
                               conditioning=conditioning)
    except ValueError as err:
        raise ValueError(f"{field}: {err}") from err


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
        problem = problem_from_dict(solution["problem"])
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
