"""The paper's experiments as problem factories (docs/model.md "The paper's reference figures", paper Sec. 6.2)."""

from __future__ import annotations

import numpy as np

from ..problem import ContractProblem

#: Sec. 6.2: N = 10, p = 0.2 each, SGB(1, 1), v = 100 r. Optimal E_n[v(a)] where docs/model.md states it.
PAPER_SCENARIOS = {
    1: {"costs": np.linspace(0.2, 0.04, 5), "reference_value": 86.4782760},
    2: {"costs": np.linspace(1.0, 0.4, 5), "reference_value": 69.0532528},
    3: {"costs": np.array([0.5, 0.4, 0.03, 0.02, 0.001]), "reference_value": None},
}


def paper_scenario(number: int, **overrides) -> ContractProblem:
    """Problem of Sec. 6.2 scenario ``number`` (1, 2 or 3); keyword overrides go to ``ContractProblem``."""
    if number not in PAPER_SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(PAPER_SCENARIOS)}, got {number!r}")
    kwargs = {"participants": 10, "probs": np.full(5, 0.2), "costs": PAPER_SCENARIOS[number]["costs"]}
    kwargs.update(overrides)
    return ContractProblem(**kwargs)
