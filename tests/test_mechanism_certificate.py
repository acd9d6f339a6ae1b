"""The duality-gap bound where the first-moment problem is concave (issue 6, item 6)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

import diffcontract
from diffcontract import ContractProblem
from diffcontract.analysis import solution_record
from diffcontract.curves import Arctan, Exponential, PowerLaw
from diffcontract.mechanism import concavity_threshold, duality_gap_bound, duality_gap_report, verify


@pytest.fixture(scope="module")
def solution():
    sol = diffcontract.solve(ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01]))
    assert sol.succeeded
    return sol


def test_bound_at_the_optimum_is_tiny(solution):
    bound = duality_gap_bound(solution)
    assert bound is not None
    # The solver's KKT residuals are ~1e-16 (scaled) and its feasibility slack ~1e-14 money, so the
    # bound is rounding-sized; 1e-10 (accuracy units) leaves room for the box width (~1e4 data units)
    # times a ~1e-16 gradient residual.
    assert -1e-12 <= bound.gap <= 1e-10
    assert bound.expected_accuracy == pytest.approx(float(solution.expected_accuracy), rel=1e-12)
    assert bound.region_min_data <= 4 * min(solution.m)  # the solution lies in the region it covers
    for name in ("budget", "ir", "ic"):
        assert np.all(np.asarray(bound.multipliers[name]) >= 0.0)
    json.dumps(bound.to_dict(), allow_nan=False)
    from_record = duality_gap_bound(json.loads(json.dumps(solution_record(solution))))
    assert from_record.gap == pytest.approx(bound.gap, abs=1e-12)


def suboptimal(solution, factor):
    """The optimal m scaled by ``factor`` with every IR binding (t = f + c m).

    Feasible for factors a little below 1 here: IC holds while m_1 <= (f_2 - f_1) / (c_1 - c_2) <= m_2,
    and the budget while tbar(m) >= t (checked by the verifier in each test).
    """
    m = np.asarray(solution.m) * factor
    t = np.asarray(solution.reservation_utilities) + np.asarray(solution.problem.costs) * m
    return solution.replace(contributions=m, rewards=t)


@pytest.mark.parametrize("factor", [0.8, 0.95, 1.05])
def test_bound_at_a_worse_point_covers_the_true_gap(solution, factor):
    point = suboptimal(solution, factor)
    # Feasible below 1 (binding IRs: rounding-level residuals); above 1 the budget fails, and the bound
    # must still hold: it needs no feasibility of the point, only concavity.
    assert verify(point, tol=1e-9).ok == (factor < 1)
    bound = duality_gap_bound(point)
    true_gap = float(solution.expected_accuracy) - bound.expected_accuracy
    assert abs(true_gap) > 1e-4  # the point is genuinely away from the optimum
    # Weak duality: upper_bound >= the optimum's E[a]; 1e-12 absorbs float64 rounding of E[a].
    assert bound.upper_bound >= float(solution.expected_accuracy) - 1e-12
    assert bound.gap >= true_gap - 1e-12


def test_random_feasible_contracts_stay_below_the_bound(solution):
    bound = duality_gap_bound(solution)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):
        candidate = suboptimal(solution, np.exp(rng.normal(0.0, 0.2, size=2)))
        m = candidate.m
        report = verify(candidate, tol=1e-9)  # binding IR_1: residuals of rounding size
        if report.ok and 4 * m.min() >= bound.region_min_data:
            checked += 1
            assert report.expected_accuracy <= bound.upper_bound + 1e-12  # float64 rounding of E[a]
    assert checked >= 5  # the check above was not vacuous


def test_concavity_thresholds():
    problem = ContractProblem(participants=2, probs=[0.5, 0.5], costs=[0.02, 0.01])
    x_c, _ = concavity_threshold(problem, 1e6)
    # SGB(1, 1) is 0 up to its root near x = 27 and convex just after it: x_c is past the root.
    assert 27.0 < x_c < 1e3
    arctan = ContractProblem(participants=2, probs=[0.5, 0.5], costs=[0.02, 0.01], accuracy=Arctan(0.01))
    # Concave from 0; autodiff of max(x, 0) at exactly 0 halves a'(0), so the grid may start at its
    # first point after 0 (1e-6 units of data).
    assert concavity_threshold(arctan, 1e6)[0] <= 1e-6
    power = ContractProblem(participants=2, probs=[0.5, 0.5], costs=[0.02, 0.01],
                            accuracy=PowerLaw(a_opt=0.9, b=2.0, alpha=0.5), valuation=Exponential(100.0, 2.0))
    x_c, _ = concavity_threshold(power, 1e6)
    # Concave right after the clip at x_min = (b / a_opt)^(1 / alpha) = 4.94; one grid step (0.4 %) of slack.
    assert (2.0 / 0.9) ** 2 <= x_c <= (2.0 / 0.9) ** 2 * 1.01


@struct.dataclass
class Quadratic:
    """v(r) = scale r^2: increasing on [0, 1] but convex."""

    scale: float = 100.0

    def __call__(self, r):
        return self.scale * jnp.asarray(r) ** 2

    def inverse(self, value):
        return jnp.sqrt(jnp.asarray(value) / self.scale)


def test_none_where_not_concave(solution):
    # A contract pooling less data than the concave region starts at.
    small = solution.replace(contributions=np.array([1.0, 1.0]), rewards=np.array([0.0, 0.0]))
    bound, reason = duality_gap_report(small)
    assert bound is None and "below" in reason
    # A convex valuation.
    problem = ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01], valuation=Quadratic())
    convex = solution.replace(problem=problem)
    bound, reason = duality_gap_report(convex)
    assert bound is None and "valuation" in reason
    assert duality_gap_bound(convex) is None
