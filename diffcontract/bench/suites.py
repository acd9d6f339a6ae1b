"""Versioned benchmark suites with certified optima stored in the package (``bench/data``).

A suite is a fixed list of problems (stored as ``ContractProblem.to_dict`` records, so loading does
not depend on a random generator's version) and, for each, what ``method="global"`` certified:
the best contract's E[a] and E[v(a)], the ``upper_bound`` on E[a] and the relative ``gap``, and
what the KKT solvers (``exact``, ``alm``) reached. ``benchmarks/certify_suites.py`` regenerates the
files from ``SUITES`` (seeded); the ``local-optima`` suite collects every problem of the others on
which a KKT solver stopped below the certified optimum.
"""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import numpy as np

from ..problem import ContractProblem, unstack_problem

#: (name -> (version, description, generator spec)). A spec is ``("paper",)`` or
#: ``("distribution", ProblemDistribution keyword arguments, count, seed)``.
SUITES = {
    "paper-6.2": (1, "the paper's Sec. 6.2 scenarios (I = 5, N = 10, p uniform)", ("paper",)),
    "random-i2": (1, "I = 2, N in 2..100, p ~ Dirichlet(1), log10 c in [-3, 0]",
                  ("distribution", {"num_types": 2, "participants": (2, 100)}, 200, 0)),
    "random-i3": (1, "I = 3, N in 2..12: the packaged learned mechanism's training law",
                  ("distribution", {"num_types": 3, "participants": (2, 12)}, 1000, 0)),
    "random-i3-interim": (1, "as random-i3 with interim conditioning",
                          ("distribution", {"num_types": 3, "participants": (2, 12), "conditioning": "interim"},
                           100, 1)),
    "random-i3-power": (1, "as random-i3 with the power-law curve a(x) = 1 - 2 x^-0.5",
                        ("distribution", {"num_types": 3, "participants": (2, 12), "accuracy": ("power", 1.0, 2.0, 0.5)},
                         100, 2)),
    "random-i4": (1, "I = 4, N in 2..15", ("distribution", {"num_types": 4, "participants": (2, 15)}, 100, 0)),
    "local-optima": (1, "problems of the other suites where exact or alm stopped below the certified optimum",
                     ("catalogue",)),
}


@dataclasses.dataclass(frozen=True)
class Suite:
    """A loaded suite: ``problems`` (list of ``ContractProblem``) and ``records`` (list of dicts, one
    per problem: ``certified`` {expected_accuracy, expected_value, upper_bound, gap, status, m} and
    the KKT solvers' ``exact`` / ``alm`` E[a])."""

    name: str
    version: int
    description: str
    problems: list
    records: list

    def __len__(self) -> int:
        return len(self.problems)

    def head(self, count: int | None) -> "Suite":
        """The first ``count`` problems (a quick run of a large suite); all of them for None."""
        return dataclasses.replace(self, problems=self.problems[:count], records=self.records[:count])


def check_suite_name(name: str) -> str:
    """``name`` if it is a suite, else ValueError naming the known ones."""
    if name not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {name!r}")
    return name


def generate_problems(name: str) -> list:
    """The problems of a seeded suite, freshly generated (``benchmarks/certify_suites.py``)."""
    from ..analysis.scenarios import paper_scenario
    from ..curves import PowerLaw
    from ..learned.distribution import ProblemDistribution

    spec = SUITES[check_suite_name(name)][2]
    if spec[0] == "paper":
        return [paper_scenario(k) for k in (1, 2, 3)]
    if spec[0] == "distribution":
        _, kwargs, count, seed = spec
        if "accuracy" in kwargs:  # stored as data (the spec is a constant): ("power", a_opt, b, alpha)
            _, a_opt, b, alpha = kwargs["accuracy"]
            kwargs = {**kwargs, "accuracy": PowerLaw(a_opt=a_opt, b=b, alpha=alpha)}
        batch = ProblemDistribution(**kwargs).sample(count, seed=seed)
        return [unstack_problem(batch, k) for k in range(count)]
    raise ValueError(f"suite {name!r} is compiled from the others' results, not generated")


def data_file(name: str) -> str:
    """File name of a suite's stored records."""
    version = SUITES[check_suite_name(name)][0]
    return f"{name}-v{version}.json"


def load_suite(name: str) -> Suite:
    """The stored suite ``name`` with its certified optima.

    Raises:
      ValueError naming an unknown suite, or one whose data were not generated
      (``python benchmarks/certify_suites.py --suites NAME``).
    """
    version, description, _ = SUITES[check_suite_name(name)]
    path = resources.files(__package__).joinpath("data", data_file(name))
    if not path.is_file():
        raise ValueError(f"suite {name!r} has no stored optima ({data_file(name)}); generate them with "
                         f"python benchmarks/certify_suites.py --suites {name}")
    stored = json.loads(path.read_text())
    problems = [ContractProblem.from_dict(record["problem"]) for record in stored["records"]]
    return Suite(name, version, description, problems, stored["records"])


def certified_accuracy(record: dict) -> float:
    """The certified optimum's E[a] of a stored record (NaN where it was not certified)."""
    certified = record["certified"]
    return float(certified["expected_accuracy"]) if certified["status"] == "converged" else float(np.nan)
