r"""An independent verifier of a solved contract (docs/model.md "The contract", "First-moment problem",
"Realizing rewards: proportional assignment").

It shares no code path with the solvers beyond the problem's curves: numpy float64 throughout, its
own enumeration of outcomes (``itertools``), its own multinomial law (``math.lgamma``), its own
conditioning weights and reward bounds, and its own reservation utilities. For a menu (m, t):

* first-moment budget  :math:`\bar t_i(m) - t_i \ge 0`;
* ex-post budget       :math:`a(n \cdot q m) - r_i(n) \ge 0` for every outcome n with n_i >= 1,
  where :math:`v(r_i(n)) = \min(t_i / \bar t_i, 1)\, v(a(n \cdot q m))` (proportional assignment;
  the cap only bites where the budget is violated, and then the promise check reports it) and
  :math:`r_i = v^{-1}(\cdot)`;
* IR  :math:`R_i - c_i m_i - f_i \ge 0` and IC :math:`(R_i - c_i m_i) - (R_j - c_i m_j) \ge 0` with
  :math:`R_i = E[v(r_i) \mid i]` the expected *realized* reward (equal to t_i when the promise is
  kept, which is checked too: :math:`|R_i - t_i|`);
* m >= 0 and t >= 0.

Every check carries its residual (g >= 0 form: negative is a violation). Tolerances are absolute,
in each constraint's units: money for budget, IR, IC, promise and t >= 0; accuracy for the
ex-post budget; units of data for m >= 0.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from .._jit import jit
from ._record import check_enumerable, check_setting, is_number, load_contract

BISECTION_STEPS = 64  # 2^-64 < float64 spacing at 1: v^{-1} on [0, 1] converged to the last bit
# Reservation utilities: the gain v(a(q m)) - c m is scanned on a log grid of m from GRID_START (units
# of data) to v(1)/c (beyond which training alone loses money), capped at GRID_CAP where v(1)/c
# overflows (denormal costs); GRID_POINTS points bracket the maximum for a bounded Brent search whose
# step tolerance is BRENT_XTOL relative to the bracket's top.
GRID_START = 1e-6
GRID_CAP = 1e300
GRID_POINTS = 4001
BRENT_XTOL = 1e-12
#: The residual families of a ``VerificationReport``, in the order they are reported.
FAMILIES = ("budget", "ex_post", "ir", "ic", "promise", "nonnegative")


# ----------------------------------------------------------------------------- numpy building blocks
def enumerate_counts(participants: int, num_types: int) -> np.ndarray:
    """Every n in N^I with sum N, by stars and bars: (K, I) int64, K = C(N + I - 1, I - 1).

    The I - 1 bars sit at positions b_1 < ... < b_{I-1} of N + I - 1 slots; n_k is the number of
    stars between bars k - 1 and k.
    """
    slots = participants + num_types - 1
    count = math.comb(slots, num_types - 1)
    bars = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(slots), num_types - 1)),
                       dtype=np.int64, count=count * (num_types - 1)).reshape(count, num_types - 1)
    edges = np.concatenate([np.full((count, 1), -1), bars, np.full((count, 1), slots)], axis=1)
    return np.diff(edges, axis=1) - 1


def multinomial_pmf(counts: np.ndarray, probs: np.ndarray, participants: int) -> np.ndarray:
    """P(n) = N! / prod n_i! * prod p_i^{n_i}, via a table of math.lgamma; (K,)."""
    log_fact = np.array([math.lgamma(k + 1.0) for k in range(participants + 1)])
    log_p = np.log(probs)
    # 0 * log p is 0 even where p is tiny: the product is taken only over the counts present.
    return np.exp(log_fact[participants] - log_fact[counts].sum(axis=1) + (counts * log_p[None, :]).sum(axis=1))


def conditioning_weights(counts: np.ndarray, prob: np.ndarray, probs: np.ndarray, participants: int,
                         conditioning: str) -> np.ndarray:
    """(K, I) weights w_i(n) of E[. | type i] (docs/model.md "The first-moment problem").

    truncated: the law restricted to n_i >= 1, renormalized by its own total (summed here, not
      the closed form 1 - (1 - p_i)^N).
    interim: P(n) n_i / (N p_i) (the other N - 1 participants ~ Multinomial(N - 1, p)).
    """
    if conditioning == "truncated":
        present = (counts >= 1) * prob[:, None]
        return present / present.sum(axis=0)[None, :]
    if conditioning == "interim":
        return prob[:, None] * counts / (participants * probs)[None, :]
    raise ValueError(f"conditioning must be 'truncated' or 'interim', got {conditioning!r}")


@jit
def _apply(curve, x):
    """curve(x), compiled once per curve kind and shape."""
    return curve(x)


def evaluate(curve, x: np.ndarray) -> np.ndarray:
    """A problem curve evaluated in float64 on a numpy array (the only JAX the verifier runs).

    ``curve`` is any callable pytree (a curve, or a bound method such as ``valuation.inverse``,
    whose instance is a pytree leaf of the ``Partial``); compiled once per curve kind and shape.
    """
    # A bound method (``valuation.inverse``) is not a pytree: its instance becomes the Partial's leaf.
    func, owner = (curve.__func__, curve.__self__) if hasattr(curve, "__func__") else (type(curve).__call__, curve)
    with jax.enable_x64(True):
        return np.asarray(_apply(jax.tree_util.Partial(func, owner), jnp.asarray(x, jnp.float64)), dtype=np.float64)


def inverse_valuation(valuation, values: np.ndarray) -> np.ndarray:
    """r = v^{-1}(values): the curve's ``inverse`` if it has one, else bisection of v on [0, 1].

    Values outside v's range come back non-finite from ``inverse`` (or clipped to [0, 1] by the
    bisection); callers treat that as "no model of that value exists".
    """
    values = np.asarray(values, dtype=np.float64)
    if hasattr(valuation, "inverse"):
        with np.errstate(all="ignore"):
            return evaluate(valuation.inverse, values)
    lo, hi = np.zeros_like(values), np.ones_like(values)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        below = evaluate(valuation, mid) < values
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


def reservation_lower_bound(accuracy, valuation, cost: float, quality: float, candidates=()) -> float:
    r"""max(0, max_m v(a(q m)) - c m), computed here: a ``GRID_POINTS`` log grid over (0, v(1)/c] (beyond
    which training alone loses money), bounded Brent in the bracket of the best grid point, and
    any ``candidates`` (e.g. the problem's own argmax). Every value is h(m) at some m, so the result
    is a certified lower bound on the true f and the largest of them is the best one.

    Args:
      accuracy, valuation: the problem's curves.  cost: c, money per unit of data.  quality: q.
      candidates: extra contributions m to try, units of data (non-finite or <= 0 are skipped).

    Returns:
      the lower bound on f, money, >= 0.
    """
    v_max = float(evaluate(valuation, np.array([1.0]))[0])

    def gain(m):
        m = np.atleast_1d(np.asarray(m, dtype=np.float64))
        return evaluate(valuation, evaluate(accuracy, quality * m)) - cost * m

    with np.errstate(all="ignore"):
        upper = min(max(v_max / cost, GRID_START), GRID_CAP)
        grid = np.geomspace(GRID_START, upper, GRID_POINTS) if upper > GRID_START else np.array([GRID_START])
        values = gain(grid)
    values = np.where(np.isfinite(values), values, -np.inf)  # a curve overflowing far out is no candidate
    best = int(np.argmax(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    found = [float(values[best])]
    if hi > lo and np.isfinite(values[best]):
        res = optimize.minimize_scalar(lambda m: -float(gain(m)[0]), bounds=(lo, hi), method="bounded",
                                       options={"xatol": BRENT_XTOL * hi})
        found.append(-float(res.fun))
    found.extend(float(gain(m)[0]) for m in candidates if np.isfinite(m) and m > 0.0)
    return max(0.0, max(x for x in found if np.isfinite(x)))


# ----------------------------------------------------------------------------- the report
class Violation(NamedTuple):
    """One violated constraint: ``name`` (e.g. "IC[2->4]"), its residual and the tolerance."""

    name: str
    residual: float
    tolerance: float
    meaning: str

    def __str__(self) -> str:
        return f"{self.name}: slack {self.residual:.6g} < -{self.tolerance:g} ({self.meaning})"


class VerificationReport(NamedTuple):
    """What the verifier measured (canonical type order, costliest first; types 1-based in names).

    ok: every constraint holds within ``tol``.  violations: list of ``Violation``.
    budget: (I,) tbar - t.  ex_post: (I,) min over outcomes with n_i >= 1 of a(n . qm) - r_i(n).
    ir: (I,) R - c m - f.  ic: (I, I) (R_i - c_i m_i) - (R_j - c_i m_j), zero diagonal.
    promise: (I,) ``-|R - t|``.  nonnegative: (2I,) (m, t).
    reward_bounds: (I,) tbar, money.  realized_rewards: (I,) R, money.  reservation: (I,) f used.
    num_outcomes: K.  total_probability: sum_n P(n) (1 up to rounding).
    reported: solver-reported figures minus the verifier's (t_bar, expected value), for information.
    """

    ok: bool
    tol: float
    violations: list
    budget: np.ndarray
    ex_post: np.ndarray
    ir: np.ndarray
    ic: np.ndarray
    promise: np.ndarray
    nonnegative: np.ndarray
    reward_bounds: np.ndarray
    realized_rewards: np.ndarray
    reservation: np.ndarray
    expected_accuracy: float
    expected_value: float
    num_outcomes: int
    total_probability: float
    reported: dict

    @property
    def worst(self) -> dict:
        """The smallest slack of each family (g >= 0 form: a constraint holds when its slack is >= -tol)."""
        residuals = {family: getattr(self, family) for family in FAMILIES}
        residuals["ic"] = self.ic[~np.eye(self.ic.shape[0], dtype=bool)]  # off the diagonal (none when I = 1)
        return {family: float(np.min(r)) if r.size else 0.0 for family, r in residuals.items()}

    def to_dict(self) -> dict:
        """JSON-ready (every number finite by construction)."""
        fields = ("constraint", "residual", "tolerance", "meaning")
        return {"ok": self.ok, "tol": self.tol, "violations": [dict(zip(fields, v)) for v in self.violations],
                "worst": self.worst, "residuals": {family: getattr(self, family).tolist() for family in FAMILIES},
                "reward_bounds": self.reward_bounds.tolist(), "realized_rewards": self.realized_rewards.tolist(),
                "reservation_utility": self.reservation.tolist(), "expected_accuracy": self.expected_accuracy,
                "expected_value": self.expected_value, "num_outcomes": self.num_outcomes,
                "total_probability": self.total_probability,
                "reported_minus_verified": {k: np.asarray(v).tolist() for k, v in self.reported.items()}}

    def summary(self) -> str:
        """Readable text: one line per family, then each violation."""
        lines = [f"verify: {'OK' if self.ok else 'VIOLATED'} (tolerance {self.tol:g}; {self.num_outcomes} outcomes, "
                 f"sum P(n) - 1 = {self.total_probability - 1.0:.1e})"]
        lines.append(f"  smallest slack per family (g >= 0 form: holds when >= -{self.tol:g}):")
        lines += [f"  {family:<12} {value: .3e}" for family, value in self.worst.items()]
        lines.append(f"  E[a] = {self.expected_accuracy:.10g}   E[v(a)] = {self.expected_value:.10g}")
        lines += [f"  reported {key} - verified: {np.max(np.abs(value)):.2e}" for key, value in self.reported.items()]
        lines.extend(f"  violated {v}" for v in self.violations)
        return "\n".join(lines)


def _proportional_assignment(valuation, counts, weights, acc, val, tbar, t):
    """(ex-post budget residuals (I,), accuracy; realized rewards R (I,), money) of proportional assignment.

    Share capped at 1: no one can be handed a better model than the joint one, so a promise above
    tbar (a solver's budget slack, up to its feasibility tolerance) is paid short by exactly that
    slack, which the budget and promise checks report. A bound of 0 (no model of any value where
    type i is present) pays nothing.
    """
    positive = tbar > 0.0
    share = np.where(positive, np.minimum(t / np.where(positive, tbar, 1.0), 1.0), 0.0)
    reward_val = val[:, None] * share[None, :]
    reward_acc = inverse_valuation(valuation, reward_val)
    v0, v1 = evaluate(valuation, np.array([0.0, 1.0]))
    # Where v^{-1} is undefined (a value above v(1): no model is that good) the excess in value units,
    # divided by the mean slope v(1) - v(0), stands in for the accuracy excess: still > 0, still finite.
    gap = np.where(np.isfinite(reward_acc), acc[:, None] - reward_acc, -(reward_val - val[:, None]) / (v1 - v0))
    ex_post = np.where(counts >= 1, gap, np.inf).min(axis=0)
    return ex_post, (weights * reward_val).sum(axis=0)


def _violations(report: VerificationReport, tol: float, t: np.ndarray, u: np.ndarray) -> list:
    """Every residual of ``report`` below -tol, as ``Violation`` (its ``ok`` and ``violations`` are not read)."""
    num = t.size
    tbar, realized, f = report.reward_bounds, report.realized_rewards, report.reservation
    checks = []  # (name, residual, meaning), in the order reported
    for i in range(num):
        k = i + 1
        checks += [(f"budget[{k}]", report.budget[i], f"t_{k} = {t[i]:.6g} exceeds tbar_{k} = {tbar[i]:.6g}"),
                   (f"ex_post[{k}]", report.ex_post[i],
                    f"type {k} gets a better model than the joint one in some outcome"),
                   (f"IR[{k}]", report.ir[i], f"type {k} earns {u[i]:.6g} < {f[i]:.6g} from training alone"),
                   (f"promise[{k}]", report.promise[i],
                    f"E[v(r_{k}) | {k}] = {realized[i]:.6g} differs from t_{k} = {t[i]:.6g}")]
        checks += [(f"IC[{k}->{j + 1}]", report.ic[i, j], f"type {k} prefers the item of type {j + 1}")
                   for j in range(num) if j != i]
    checks += [(f"nonnegative {'m' if idx < num else 't'}[{idx % num + 1}]", x, "must be >= 0")
               for idx, x in enumerate(report.nonnegative)]
    return [Violation(name, float(residual), tol, meaning) for name, residual, meaning in checks if not residual >= -tol]  # NaN: a violation


def verify(solution: Any, tol: float = 1e-6) -> VerificationReport:
    """Check a solved contract against docs/model.md, independently of the solvers.

    Args:
      solution: a ``Solution`` or its JSON record (``analysis.solution_record``, a dict).
      tol: absolute tolerance, >= 0, in each constraint's units (money; accuracy for ex-post).

    Returns:
      ``VerificationReport``; ``ok`` is True iff every constraint holds within ``tol``.

    Raises:
      ValueError naming the field on bad input.
    """
    check_setting("tol", tol, is_number(tol) and math.isfinite(tol) and tol >= 0, "a finite number >= 0")
    contract = load_contract(solution)
    problem = contract.problem
    N, num = problem.num_participants, problem.num_types
    K = check_enumerable(problem, "the verifier")
    p = np.asarray(problem.probs, dtype=np.float64)
    p = p / p.sum()
    c, q, m, t = (np.asarray(x, dtype=np.float64) for x in (problem.costs, problem.quality, contract.m, contract.t))

    counts = enumerate_counts(N, num)
    prob = multinomial_pmf(counts, p, N)
    weights = conditioning_weights(counts, prob, p, N, problem.conditioning)
    if not np.all(np.isfinite(weights)):  # P(n_i >= 1) underflowed: a probability near 1e-308
        raise ValueError(f"probs: {p.tolist()} has a type too rare to condition on in float64")
    acc = evaluate(problem.accuracy, counts @ (q * m))
    val = evaluate(problem.valuation, acc)
    tbar = weights.T @ val
    ex_post, realized = _proportional_assignment(problem.valuation, counts, weights, acc, val, tbar, t)
    f = np.array([reservation_lower_bound(problem.accuracy, problem.valuation, c_i, q_i, candidates=(float(m_res),))
                  for c_i, q_i, m_res in zip(c, q, np.asarray(problem.reservation_data))])
    u = realized - c * m
    ic = u[:, None] - (realized[None, :] - c[:, None] * m[None, :])
    np.fill_diagonal(ic, 0.0)
    value = float(prob @ val)  # E[v(a)], money
    reported = {key: contract.reported[key] - mine for key, mine in (("t_bar", tbar), ("expected_value", value))
                if key in contract.reported}
    report = VerificationReport(
        ok=False, tol=float(tol), violations=[], budget=tbar - t, ex_post=ex_post, ir=u - f, ic=ic,
        promise=-np.abs(realized - t), nonnegative=np.concatenate([m, t]), reward_bounds=tbar,
        realized_rewards=realized, reservation=f, expected_accuracy=float(prob @ acc),
        expected_value=value, num_outcomes=K, total_probability=float(prob.sum()), reported=reported,
    )
    violations = _violations(report, tol, t, u)
    return report._replace(ok=not violations, violations=violations)
