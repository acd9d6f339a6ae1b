r"""What the harness measures of one contract, exactly and independently of the solvers.

Numpy float64 with the verifier's own enumeration, multinomial law and conditioning weights
(``mechanism.verify``); the solvers' code is not used. For a menu (m, t) of a problem:

* E[a(n . q m)] and tbar_i(m) by enumeration;
* violations (money): budget t_i - tbar_i, IR f_i - u_i, IC max_j (t_j - c_i m_j) - u_i, with
  u_i = t_i - c_i m_i (the first-moment constraints of docs/model.md);
* regret of type i: the best gain from any misreport j or from opting out,
  :math:`\max(0, \max_{j \ne i} (t_j - c_i m_j) - u_i, f_i - u_i)`, over the finite menu.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..mechanism.verify import conditioning_weights, enumerate_counts, evaluate, multinomial_pmf


class ContractMeasures(NamedTuple):
    """expected_accuracy: () E[a].  budget, ir, ic: () largest violation of each family (money, >= 0).
    regret: (I,) per type, money.  max_violation: () the largest of the three, money."""

    expected_accuracy: float
    budget: float
    ir: float
    ic: float
    regret: np.ndarray
    max_violation: float


def measure_contract(problem, m, t) -> ContractMeasures:
    """Measure the menu (m, t) (canonical order, (I,) each) of ``problem`` (module docstring)."""
    m, t = np.asarray(m, np.float64), np.asarray(t, np.float64)
    c, q = np.asarray(problem.costs, np.float64), np.asarray(problem.quality, np.float64)
    f = np.asarray(problem.reservation_utility, np.float64)
    p = np.asarray(problem.probs, np.float64)
    counts = enumerate_counts(problem.num_participants, problem.num_types)
    prob = multinomial_pmf(counts, p / p.sum(), problem.num_participants)
    weights = conditioning_weights(counts, prob, p / p.sum(), problem.num_participants, problem.conditioning)
    acc = evaluate(problem.accuracy, counts @ (q * m))
    tbar = weights.T @ evaluate(problem.valuation, acc)
    u = t - c * m
    others = t[None, :] - c[:, None] * m[None, :]
    np.fill_diagonal(others, -np.inf)
    best_lie = np.max(others, axis=1)  # -inf for a single type: no one to claim to be
    regret = np.maximum(np.maximum(best_lie - u, f - u), 0.0)
    budget, ir = float(np.max(np.maximum(t - tbar, 0.0))), float(np.max(np.maximum(f - u, 0.0)))
    ic = float(np.max(np.maximum(best_lie - u, 0.0)))
    return ContractMeasures(float(prob @ acc), budget, ir, ic, regret, max(budget, ir, ic))
