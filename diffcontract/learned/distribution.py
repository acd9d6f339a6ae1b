r"""The distribution of problems a learned mechanism is trained on and answers for.

A learned mechanism maps a problem (N, p, c) with a fixed number of types I, fixed curves and a
fixed conditioning to a contract. ``ProblemDistribution`` states that support: N uniform on
``participants`` (inclusive), p ~ Dirichlet(``concentration``) floored at ``prob_floor`` and
renormalized, log10 c_i i.i.d. uniform on ``log10_costs`` (distinct by construction up to a
``min_cost_ratio`` between neighbours). Outside it the network extrapolates; ``check`` says so.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..curves import curve_to_dict
from ..expectation import OutcomeTable, bucket_length, num_outcomes
from ..problem import ContractProblem, batch_size, problem_grid
from ..solvers.batch import batch_tables

_LOG_COST_SLACK = 1e-12  # log10 c within this of the trained range counts as inside (rounding of 10 ** x)


@dataclasses.dataclass(frozen=True)
class ProblemDistribution:
    """Support and law of the training problems (hashable; curves are the problem's defaults if None).

    num_types: I (>= 2).  participants: (N_min, N_max), inclusive, N_min >= 2.
    log10_costs: (lo, hi) range of log10 c.  concentration: Dirichlet alpha of p.
    prob_floor: every p_i >= this before renormalizing.  min_cost_ratio: c_i / c_{i+1} >= this.
    accuracy, valuation: curves shared by every problem (default SGB(1, 1), v = 100 r).
    conditioning: "truncated" or "interim".
    """

    num_types: int = 3
    participants: tuple = (2, 12)
    log10_costs: tuple = (-3.0, 0.0)
    concentration: float = 1.0
    prob_floor: float = 0.05
    min_cost_ratio: float = 1.05
    accuracy: Any = None
    valuation: Any = None
    conditioning: str = "truncated"

    def __post_init__(self):
        if int(self.num_types) != self.num_types or self.num_types < 2:
            raise ValueError(f"num_types must be an integer >= 2, got {self.num_types!r}")
        lo, hi = self.participants
        if not (int(lo) == lo and int(hi) == hi and 2 <= lo <= hi):
            raise ValueError(f"participants must be integers (N_min, N_max) with 2 <= N_min <= N_max, got {self.participants!r}")
        a, b = self.log10_costs
        if not (np.isfinite(a) and np.isfinite(b) and a < b):
            raise ValueError(f"log10_costs must be a finite range (lo, hi) with lo < hi, got {self.log10_costs!r}")
        if not (0.0 < self.prob_floor * self.num_types < 1.0):
            raise ValueError(f"prob_floor must be in (0, 1/num_types), got {self.prob_floor!r}")
        if not self.concentration > 0.0:
            raise ValueError(f"concentration must be > 0, got {self.concentration!r}")
        span = (b - a) / max(self.num_types - 1, 1)
        if not (1.0 < self.min_cost_ratio and np.log10(self.min_cost_ratio) < span):
            raise ValueError(f"min_cost_ratio must be > 1 and leave room in log10_costs, got {self.min_cost_ratio!r}")

    # ------------------------------------------------------------------ sampling
    def sample(self, count: int, seed: int = 0) -> ContractProblem:
        """``count`` problems as one batched ``ContractProblem`` (canonical order, costliest first)."""
        rng = np.random.default_rng(seed)
        lo, hi = self.participants
        participants = rng.integers(lo, hi + 1, size=count)
        probs = np.maximum(rng.dirichlet(np.full(self.num_types, self.concentration), size=count), self.prob_floor)
        probs /= probs.sum(axis=1, keepdims=True)
        return problem_grid(participants, probs, self._costs(rng, count), accuracy=self.accuracy,
                            valuation=self.valuation, conditioning=self.conditioning)

    def _costs(self, rng: np.random.Generator, count: int) -> np.ndarray:
        a, b = self.log10_costs
        gap = np.log10(self.min_cost_ratio)
        # Sorted uniforms on a range shortened by the (I - 1) gaps, then the gaps added back:
        # a uniform draw of I log-costs conditioned on neighbours at least ``gap`` apart.
        u = np.sort(rng.uniform(a, b - gap * (self.num_types - 1), size=(count, self.num_types)), axis=1)
        logs = u + gap * np.arange(self.num_types)[None, :]
        return 10.0 ** logs[:, ::-1]  # costliest first

    # ------------------------------------------------------------------ outcome tables
    @property
    def table_length(self) -> int:
        """Rows of every padded outcome table (the bucket of N_max)."""
        return bucket_length(num_outcomes(self.participants[1], self.num_types))

    def tables_for(self, participants) -> OutcomeTable:
        """Padded tables for each N in ``participants``: (B, K, I) counts and (B, K) valid (numpy)."""
        return batch_tables(participants, self.num_types, self.table_length)

    # ------------------------------------------------------------------ support checks
    def check(self, problem: ContractProblem) -> list[str]:
        """Raise ``ValueError`` (naming the field) where the mechanism cannot answer ``problem``;
        return notes where it can but extrapolates (costs outside the training range)."""
        if problem.num_types != self.num_types:
            raise ValueError(f"problem.num_types={problem.num_types} but this mechanism was trained for I = {self.num_types}")
        if problem.conditioning != self.conditioning:
            raise ValueError(f"problem.conditioning={problem.conditioning!r} but the mechanism was trained with "
                             f"{self.conditioning!r}")
        reference = self._reference()
        for name in ("accuracy", "valuation"):
            if _curve_key(getattr(problem, name), batched=batch_size(problem) is not None) != _curve_key(getattr(reference, name)):
                raise ValueError(f"problem.{name}={getattr(problem, name)!r} differs from the training curve "
                                 f"{getattr(reference, name)!r}")
        quality = np.asarray(problem.quality)
        if not np.allclose(quality, 1.0):
            raise ValueError(f"problem.quality={quality.tolist()} but the mechanism was trained with unit quality weights")
        n = np.asarray(problem.participants).ravel()
        lo, hi = self.participants
        bad = n[(n < lo) | (n > hi)]
        if bad.size:
            raise ValueError(f"problem.participants={int(bad[0])} is outside the trained range N in [{lo}, {hi}]")
        logs, (a, b) = np.log10(np.asarray(problem.costs, dtype=float)), self.log10_costs
        outside = np.any(logs < a - _LOG_COST_SLACK) or np.any(logs > b + _LOG_COST_SLACK)
        return [f"costs outside the trained range 10^[{a:g}, {b:g}]: the network extrapolates "
                "(the repair still makes the contract feasible)"] if outside else []

    def _reference(self) -> ContractProblem:
        """A problem of the support: its curves are the distribution's, the problem's defaults filled in."""
        return ContractProblem(self.participants[0], np.full(self.num_types, 1.0 / self.num_types),
                               np.geomspace(1.0, 0.5, self.num_types), accuracy=self.accuracy,
                               valuation=self.valuation)

    def to_dict(self) -> dict:
        """The settings as a JSON-serializable dict (curves as ``curve_to_dict`` records); ``from_dict`` reads it."""
        reference = self._reference()
        return {**{field.name: getattr(self, field.name) for field in dataclasses.fields(self)},
                "participants": list(self.participants), "log10_costs": list(self.log10_costs),
                "accuracy": curve_to_dict(reference.accuracy), "valuation": curve_to_dict(reference.valuation)}

    @classmethod
    def from_dict(cls, data: dict) -> "ProblemDistribution":
        from ..curves.spec import accuracy_from_spec, valuation_from_spec

        return cls(num_types=int(data["num_types"]), participants=tuple(int(n) for n in data["participants"]),
                   log10_costs=tuple(float(x) for x in data["log10_costs"]),
                   **{name: float(data[name]) for name in ("concentration", "prob_floor", "min_cost_ratio")},
                   accuracy=accuracy_from_spec(data["accuracy"]), valuation=valuation_from_spec(data["valuation"]),
                   conditioning=data["conditioning"])


def _curve_key(curve, batched: bool = False) -> tuple:
    """(kind, parameters) of a curve; for a batched problem every member must share them."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(curve)
    values = []
    for leaf in leaves:
        arr = np.asarray(leaf, dtype=float)
        if batched and arr.ndim >= 1:
            if not np.allclose(arr, arr[0]):
                return (type(curve).__name__, "varies across the batch")
            arr = arr[0]
        values.append(tuple(np.round(np.ravel(arr), 12)))
    return (type(curve).__name__, str(treedef), tuple(values))
