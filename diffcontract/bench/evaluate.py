"""``evaluate(mechanism, suite)``: score any problem -> contract map against certified optima.

A *mechanism* is any callable taking a ``ContractProblem`` and returning its contract: a
``Solution``, an (m, t) pair of (I,) arrays, or a dict with keys ``m`` and ``t`` (canonical type
order, costliest first; money for t, units of data for m). Each returned contract is measured
exactly and independently (``measure.measure_contract``) and compared with the suite's certified
optimum of E[a]:

* ``gap`` = (E[a]* - E[a]) / E[a]*, against the certified incumbent (negative: better than it,
  possible only up to the certificate's own gap, or for an infeasible contract);
* ``bound_gap`` = (U - E[a]) / U with U the certified upper bound: the true gap is at most this;
* the largest budget / IR / IC violation and the largest regret of a type, money;
* seconds per call: the first call (compilation included) and the median of the rest.

A mechanism that raises ``ValueError`` on a problem (e.g. a learned mechanism outside its training
law) gets a row with status ``refused: ...`` and NaN figures; the aggregate counts it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ..api import METHODS, solve  # METHODS: those of ``diffcontract.solve``, which the harness knows by name
from .measure import measure_contract
from .report import COLUMNS, BenchReport
from .suites import Suite, certified_accuracy


def method_mechanism(method: str, **options) -> Callable:
    """The mechanism ``problem -> diffcontract.solve(problem, method=method, **options)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return lambda problem: solve(problem, method=method, **options)


def network_mechanism(mechanism) -> Callable:
    """A ``LearnedMechanism``'s *raw* network, as most papers score one: the proposed m with
    t = ``binding_rewards(m)`` (IC and the costliest type's IR hold by construction), no repair."""
    from ..formulation import binding_rewards

    def answer(problem):
        m = np.asarray(mechanism.propose(problem), np.float64)
        return m, np.asarray(binding_rewards(m, np.asarray(problem.costs), np.asarray(problem.reservation_utility)))

    return answer


def contract_menu(contract: Any, num_types: int) -> tuple[np.ndarray, np.ndarray]:
    """(m, t) of a mechanism's answer (module docstring); ValueError naming what is wrong."""
    if hasattr(contract, "contributions") and hasattr(contract, "rewards"):
        m, t = contract.contributions, contract.rewards
    elif isinstance(contract, dict):
        if "m" not in contract or "t" not in contract:
            raise ValueError(f"a mechanism's dict must have keys 'm' and 't', got {sorted(contract)}")
        m, t = contract["m"], contract["t"]
    elif isinstance(contract, (tuple, list)) and len(contract) == 2:
        m, t = contract
    else:
        raise ValueError(f"a mechanism must return a Solution, an (m, t) pair or a dict with m and t, "
                         f"got {type(contract).__name__}")
    m, t = np.asarray(m, np.float64), np.asarray(t, np.float64)
    for name, value in (("m", m), ("t", t)):
        if value.shape != (num_types,) or not np.all(np.isfinite(value)):
            raise ValueError(f"the mechanism's {name} must be {num_types} finite numbers, got {value.tolist()}")
    return m, t


def _score(problem, record: dict, contract, seconds: float) -> dict:
    m, t = contract_menu(contract, problem.num_types)
    measures = measure_contract(problem, m, t)
    optimum, upper = certified_accuracy(record), float(record["certified"]["upper_bound"])
    return {"expected_accuracy": measures.expected_accuracy, "optimum": optimum,
            "gap": (optimum - measures.expected_accuracy) / optimum,
            "bound_gap": (upper - measures.expected_accuracy) / upper, "budget": measures.budget, "ir": measures.ir,
            "ic": measures.ic, "max_violation": measures.max_violation, "max_regret": float(np.max(measures.regret)),
            "seconds": seconds, "status": getattr(contract, "status_name", "")}


def evaluate(mechanism: Callable, suite: Suite, name: str = "", progress: bool = False) -> BenchReport:
    """Score ``mechanism`` on every problem of ``suite``.

    Args:
      mechanism: problem -> contract (module docstring); e.g. ``method_mechanism("alm")``.
      suite: a ``Suite`` (``load_suite``).  name: the mechanism's label in the report.
      progress: show a progress bar.
    Returns:
      ``BenchReport``: one row per problem and the aggregate figures.
    """
    from tqdm.auto import tqdm

    rows = []
    for index, (problem, record) in enumerate(tqdm(list(zip(suite.problems, suite.records)), desc=name or "bench",
                                                    disable=not progress, unit="problem")):
        start = time.perf_counter()
        try:
            contract = mechanism(problem)
        except ValueError as err:  # a mechanism may refuse a problem (outside what it was trained for)
            rows.append({"index": index, **dict.fromkeys(COLUMNS[1:-2], float("nan")),
                         "seconds": time.perf_counter() - start, "status": f"refused: {err}"})
            continue
        rows.append({"index": index, **_score(problem, record, contract, time.perf_counter() - start)})
    return BenchReport(mechanism=name or getattr(mechanism, "__name__", "mechanism"), suite=suite.name,
                       version=suite.version, rows=rows)
