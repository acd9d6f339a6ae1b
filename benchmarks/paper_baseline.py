"""The paper's solver, re-implemented as a benchmark baseline (docs/model.md, "The first-moment problem").

Wang, Wu, Liu, Low, "Paid with Models: Optimal Contract Design for Collaborative Machine Learning"
(AAAI 2025, arXiv 2412.11122), Sec. 6, solve the first-moment problem in its *simplified* form with
``scipy.optimize.minimize(method="trust-constr")``: every outcome n ~ Multinomial(N, p) is enumerated
in Python, expectations are numpy sums over the enumerated outcomes, and derivatives are written by
hand. This module does the same, independently of diffcontract's solver code (it takes the
reservation utilities f_i as an input, so it needs nothing from diffcontract at all):

  variables  x = (m_1..m_I, t_1..t_I)   m: units of data, t: money (promised E[v(r_i) | n_i >= 1])
  minimize   -E_n[a(n . m)]                                        (accuracy units, as the paper)
  subject to m_i <= m_{i+1}                                        (monotone, i = 1..I-1)
             t_{i+1} - c_{i+1} m_{i+1} = t_i - c_{i+1} m_i          (local downward IC binds)
             t_1 - c_1 m_1 = f_1                                   (IR of the costliest type binds)
             t_i - c_i m_i >= f_i                                  (IR, i >= 2)
             tbar_i(m) - t_i >= 0                                  (budget, nonlinear)
             m >= 0, t >= 0
  with tbar_i(m) = E[v(a(n . m)) | n_i >= 1] (truncated conditioning: the outcomes with n_i >= 1,
  renormalized), a = SGB(a_opt, k) and v(r) = value_scale * r (default 100 r).

Choices taken from the paper's published code, so that timings and end points are comparable:
trust-constr with its default tolerances, ``maxiter=2000`` and exact (hand-written) Hessians as in
its Sec. 6.2 runs (``hessian="bfgs"`` uses quasi-Newton Hessians instead), and its starting point:
the pooled contract m_i = m0 where m0 solves v(a(N m0)) = c_1 m0 + f_1 (``scipy.optimize.fsolve``
from (v(1) - f_1) / c_1), with t_i = a(m0) (``start="paper"``; that start is not feasible, t being
in accuracy units there; ``start="pooled"`` uses the feasible t_i = f_1 + c_1 m0). One deliberate
difference: the paper's code sums with Python's built-in ``sum`` over numpy rows and rebuilds the
conditional outcome sets at every call; here those are ``np.dot`` products with precomputed
weights, which makes the baseline faster than the original, never slower.
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from typing import Sequence

import numpy as np
from scipy import optimize

HESSIANS = ("exact", "bfgs", "sr1")
STARTS = ("paper", "pooled")


# ----------------------------------------------------------------------------- enumeration
def enumerate_outcomes(participants: int, num_types: int) -> np.ndarray:
    """All type-count vectors n with sum n = N: (C(N+I-1, I-1), I) ints, by a Python loop.

    Each outcome is a placement of I - 1 bars among N + I - 1 slots (stars and bars).
    """
    rows = []
    for bars in itertools.combinations(range(participants + num_types - 1), num_types - 1):
        edges = (-1,) + bars + (participants + num_types - 1,)
        rows.append([edges[j + 1] - edges[j] - 1 for j in range(num_types)])
    return np.asarray(rows, dtype=np.int64).reshape(-1, num_types)


def multinomial_pmf(outcomes: np.ndarray, probs: Sequence[float]) -> np.ndarray:
    """P(n) = N! prod_i p_i^{n_i} / n_i! for each row n, through ``math.lgamma`` in a Python loop."""
    logp = [math.log(p) for p in probs]
    out = np.empty(len(outcomes))
    for row, n in enumerate(outcomes.tolist()):
        total = sum(n)
        log_pmf = math.lgamma(total + 1) + sum(k * lp - math.lgamma(k + 1) for k, lp in zip(n, logp))
        out[row] = math.exp(log_pmf)
    return out


# ----------------------------------------------------------------------------- curves
def sgb(x: np.ndarray, a_opt: float = 1.0, k: float = 1.0) -> np.ndarray:
    """SGB accuracy a(x) = max(0, a_opt - (sqrt(2k(2 + ln(x/k))) + 4) / sqrt(x)) for x > k e^-2, else 0."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    live = x > k * math.exp(-2.0)
    xs = x[live]
    out[live] = np.maximum(a_opt - (np.sqrt(2.0 * k * (2.0 + np.log(xs / k))) + 4.0) / np.sqrt(xs), 0.0)
    return out


def sgb_derivatives(x: np.ndarray, a_opt: float = 1.0, k: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """a(x), a'(x), a''(x) of the SGB curve, by hand; both derivatives are 0 where a is clipped to 0.

    With s = sqrt(2k(2 + ln(x/k))) and h = (s + 4)/2 - k/s:
      a'(x)  = h / x^{3/2}
      a''(x) = (-3/2 h + (k/s)(1/2 + k/s^2)) / x^{5/2}       (using ds/dx = k / (x s)).
    """
    x = np.asarray(x, dtype=np.float64)
    a, d1, d2 = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    live = x > k * math.exp(-2.0)
    xs = x[live]
    s = np.sqrt(2.0 * k * (2.0 + np.log(xs / k)))
    raw = a_opt - (s + 4.0) / np.sqrt(xs)
    h = 0.5 * (s + 4.0) - k / s
    positive = raw > 0.0
    a[live] = np.where(positive, raw, 0.0)
    d1[live] = np.where(positive, h / xs**1.5, 0.0)
    d2[live] = np.where(positive, (-1.5 * h + (k / s) * (0.5 + k / s**2)) / xs**2.5, 0.0)
    return a, d1, d2


# ----------------------------------------------------------------------------- the problem
class PaperProblem:
    """Objective, budget constraints and their hand-written derivatives over enumerated outcomes.

    Args:
      participants: N.  probs: (I,) p.  costs: (I,) c, costliest first (c_1 > ... > c_I).
      reservation_utilities: (I,) f, money.  a_opt, k: SGB parameters.  value_scale: v(r) = value_scale r.
    """

    def __init__(self, participants: int, probs: Sequence[float], costs: Sequence[float],
                 reservation_utilities: Sequence[float], a_opt: float = 1.0, k: float = 1.0,
                 value_scale: float = 100.0):
        self.N = int(participants)
        self.p = np.asarray(probs, dtype=np.float64)
        self.c = np.asarray(costs, dtype=np.float64)
        self.f = np.asarray(reservation_utilities, dtype=np.float64)
        if not (self.p.shape == self.c.shape == self.f.shape and self.c.ndim == 1):
            raise ValueError("probs, costs and reservation_utilities must be 1-D of equal length")
        if np.any(np.diff(self.c) >= 0.0):
            raise ValueError(f"costs must be strictly decreasing (costliest first), got {self.c.tolist()}")
        self.I = self.c.size
        self.a_opt, self.k, self.vs = float(a_opt), float(k), float(value_scale)
        self.outcomes = enumerate_outcomes(self.N, self.I)
        self.pmf = multinomial_pmf(self.outcomes, self.p)
        self.n = self.outcomes.astype(np.float64)
        # Truncated conditioning: weight P(n) 1[n_i >= 1] / P(n_i >= 1); column i serves type i.
        present = (self.outcomes >= 1).astype(np.float64)
        self.cond = self.pmf[:, None] * present
        self.cond /= self.cond.sum(axis=0, keepdims=True)

    # --- objective: -E[a(n . m)]
    def objective(self, x: np.ndarray) -> float:
        a = sgb(self.n @ x[: self.I], self.a_opt, self.k)
        return -float(self.pmf @ a)

    def gradient(self, x: np.ndarray) -> np.ndarray:
        _, d1, _ = sgb_derivatives(self.n @ x[: self.I], self.a_opt, self.k)
        return np.concatenate([-(self.pmf * d1) @ self.n, np.zeros(self.I)])

    def hessian(self, x: np.ndarray) -> np.ndarray:
        _, _, d2 = sgb_derivatives(self.n @ x[: self.I], self.a_opt, self.k)
        out = np.zeros((2 * self.I, 2 * self.I))
        out[: self.I, : self.I] = -(self.n * (self.pmf * d2)[:, None]).T @ self.n
        return out

    # --- budget: tbar_i(m) - t_i >= 0, tbar_i = E[v(a(n . m)) | n_i >= 1]
    def reward_bounds(self, m: np.ndarray) -> np.ndarray:
        return self.vs * (self.cond.T @ sgb(self.n @ m, self.a_opt, self.k))

    def budget(self, x: np.ndarray) -> np.ndarray:
        return self.reward_bounds(x[: self.I]) - x[self.I:]

    def budget_jacobian(self, x: np.ndarray) -> np.ndarray:
        _, d1, _ = sgb_derivatives(self.n @ x[: self.I], self.a_opt, self.k)
        jac_m = self.vs * (self.cond * d1[:, None]).T @ self.n  # [i, j] = d tbar_i / d m_j
        return np.hstack([jac_m, -np.eye(self.I)])

    def budget_hessian(self, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """sum_i weights_i * Hessian of budget row i (trust-constr's constraint Hessian)."""
        _, _, d2 = sgb_derivatives(self.n @ x[: self.I], self.a_opt, self.k)
        w = self.vs * (self.cond @ np.asarray(weights, dtype=np.float64)) * d2
        out = np.zeros((2 * self.I, 2 * self.I))
        out[: self.I, : self.I] = (self.n * w[:, None]).T @ self.n
        return out

    # --- linear constraints: monotone m, binding local downward IC, IR (type 1 binding)
    def linear_constraint(self) -> optimize.LinearConstraint:
        I, c, f = self.I, self.c, self.f
        rows, lo, hi = [], [], []
        for i in range(I - 1):  # m_{i+1} - m_i >= 0
            r = np.zeros(2 * I)
            r[i], r[i + 1] = -1.0, 1.0
            rows.append(r), lo.append(0.0), hi.append(np.inf)
        for i in range(I - 1):  # t_{i+1} - c_{i+1} m_{i+1} - t_i + c_{i+1} m_i = 0
            r = np.zeros(2 * I)
            r[I + i + 1], r[i + 1], r[I + i], r[i] = 1.0, -c[i + 1], -1.0, c[i + 1]
            rows.append(r), lo.append(0.0), hi.append(0.0)
        for i in range(I):  # t_i - c_i m_i >= f_i, equality for i = 1
            r = np.zeros(2 * I)
            r[I + i], r[i] = 1.0, -c[i]
            rows.append(r), lo.append(f[i]), hi.append(f[i] if i == 0 else np.inf)
        return optimize.LinearConstraint(np.asarray(rows), np.asarray(lo), np.asarray(hi))

    def pooled_contribution(self) -> float:
        """The paper's start: m0 with v(a(N m0)) - c_1 m0 - f_1 = 0, by fsolve from (v(1) - f_1) / c_1."""

        def gap(m):
            m = np.atleast_1d(m)
            return self.vs * sgb(self.N * m, self.a_opt, self.k) - self.c[0] * m - self.f[0]

        root = float(optimize.fsolve(gap, (self.vs * 1.0 - self.f[0]) / self.c[0])[0])
        return root if gap(root)[0] >= -1e-8 and root > 0.0 else 0.0

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of any constraint at x (money units for budget/IR/IC, data for m)."""
        lin = self.linear_constraint()
        g = lin.A @ x
        worst = max(float(np.max(lin.lb - g, initial=0.0)), float(np.max(g - lin.ub, initial=0.0)))
        return max(worst, float(np.max(-self.budget(x), initial=0.0)), float(np.max(-x, initial=0.0)))


def solve_paper_baseline(participants: int, probs: Sequence[float], costs: Sequence[float],
                         reservation_utilities: Sequence[float], *, a_opt: float = 1.0, k: float = 1.0,
                         value_scale: float = 100.0, hessian: str = "exact", start: str = "paper",
                         maxiter: int = 2000, verbose: int = 0) -> dict:
    """Solve the simplified first-moment problem the paper's way (enumeration + trust-constr).

    Args:
      participants: N.  probs: (I,) type probabilities p.
      costs: (I,) marginal costs, costliest first (c_1 > ... > c_I), money per unit of data.
      reservation_utilities: (I,) f, money (e.g. ``ContractProblem.reservation_utility``).
      a_opt, k: SGB accuracy curve.  value_scale: v(r) = value_scale * r.
      hessian: "exact" (hand-written, the paper's Sec. 6.2 setting), "bfgs" or "sr1" (quasi-Newton).
      start: "paper" (t_i = a(m0), as the paper's code) or "pooled" (feasible t_i = f_1 + c_1 m0).
      maxiter: trust-constr iteration limit (2000 in the paper's Sec. 6.2 runs).

    Returns:
      dict with m: (I,) contributions, t: (I,) promised rewards (money), value: E_n[v(a(n . m))]
      (money), time: seconds of the whole call (enumeration included, as in the paper's timings),
      nit: iterations, success: scipy's flag, status/message: scipy's, max_violation: largest
      constraint violation at the returned point, tbar: (I,) tbar(m).
    """
    if hessian not in HESSIANS:
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    begin = time.perf_counter()
    prob = PaperProblem(participants, probs, costs, reservation_utilities, a_opt=a_opt, k=k,
                        value_scale=value_scale)
    I = prob.I
    m0 = prob.pooled_contribution()
    t0 = sgb(np.asarray([m0]), a_opt, k)[0] if start == "paper" else prob.f[0] + prob.c[0] * m0
    x0 = np.concatenate([np.full(I, m0), np.full(I, t0)])

    if hessian == "exact":
        objective_hess, budget_hess = prob.hessian, prob.budget_hessian
    else:
        make = optimize.BFGS if hessian == "bfgs" else optimize.SR1
        objective_hess, budget_hess = make(), make()
    budget = optimize.NonlinearConstraint(prob.budget, 0.0, np.inf, jac=prob.budget_jacobian, hess=budget_hess)
    with warnings.catch_warnings():
        # Quasi-Newton updates warn when a step leaves the gradient unchanged (t enters linearly);
        # scipy then skips the update, which is the paper's behaviour too.
        warnings.filterwarnings("ignore", message="delta_grad == 0.0", category=UserWarning)
        res = optimize.minimize(prob.objective, x0, method="trust-constr", jac=prob.gradient, hess=objective_hess,
                                constraints=[prob.linear_constraint(), budget],
                                bounds=optimize.Bounds(np.zeros(2 * I), np.full(2 * I, np.inf)),
                                options={"maxiter": int(maxiter), "verbose": int(verbose)})
    elapsed = time.perf_counter() - begin
    x = np.asarray(res.x, dtype=np.float64)
    return {
        "m": x[:I].copy(),
        "t": x[I:].copy(),
        "value": -value_scale * prob.objective(x),
        "time": elapsed,
        "nit": int(res.nit),
        "success": bool(res.success),
        "status": int(res.status),
        "message": str(res.message),
        "max_violation": prob.max_violation(x),
        "tbar": prob.reward_bounds(x[:I]),
    }
