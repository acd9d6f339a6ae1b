"""The backend planner (issue 18): memory and time stated before allocating, auto's choice and why,
refusals that name the backend, and honest figures from approximate backends."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import diffcontract
from diffcontract import ContractProblem
from diffcontract.expectation import BackendPlan, ProblemTooLarge, memory_budget, plan_backend, planner
from diffcontract.mechanism import verify

GIB = 1 << 30
# The problem: the lattice converges on its own moments, exactly the budget misses by 3.6e-8 money.
LATTICE_MISS = dict(participants=12, probs=[0.162, 0.716, 0.122], costs=[0.4179, 0.231, 0.0089])


@pytest.mark.parametrize("participants, types, expected", [
    (10, 5, "enumerate"),  # 1,001 outcomes
    (10, 15, "chunked"),  # 1.96 million: past the in-memory table's sweet spot
    (1_000_000, 2, "chunked"),  # a million rows of two columns, streamed
    (10, 30, "convolution"),  # 6.4e8 outcomes: too many to stream within auto's limit
    (200, 50, "convolution"),
])
def test_auto_picks_by_size_and_says_why(participants, types, expected):
    plan = plan_backend("auto", participants, types, memory_budget=8 * GIB)
    assert isinstance(plan, BackendPlan) and plan.backend == expected
    assert plan.outcomes == math.comb(participants + types - 1, types - 1)
    assert plan.reason.startswith("auto: ") and "MiB" in plan.reason
    assert 0 < plan.peak_bytes <= plan.memory_budget == 8 * GIB
    assert plan.exact == (expected in ("enumerate", "chunked"))


def test_auto_falls_back_within_a_small_budget():
    # 43,758 outcomes: the table needs ~40 MiB; with 4 MiB auto streams exactly in small chunks.
    plan = plan_backend("auto", 10, 9, memory_budget=4 << 20, chunk_size=512)
    assert plan.backend == "chunked" and "enumerate" in plan.reason and plan.peak_bytes <= 4 << 20
    with pytest.raises(ProblemTooLarge, match="no backend fits"):
        plan_backend("auto", 10, 9, memory_budget=1000)


@pytest.mark.parametrize("backend, participants, types, match", [
    ("enumerate", 10, 30, "needs about .* MiB, above the memory budget"),  # the 19.5 GiB case
    ("enumerate", 5, 200, "above the memory budget"),
    ("chunked", 10_000, 19, "above its limit of"),  # more than a day per pass
    ("convolution", 10**8, 3, "lattice FFT beyond"),
])
def test_a_named_backend_that_cannot_fit_is_refused_before_allocating(backend, participants, types, match):
    with pytest.raises(ProblemTooLarge, match=match) as err:
        plan_backend(backend, participants, types, memory_budget=8 * GIB)
    assert f"backend {backend!r}" in str(err.value) and isinstance(err.value, ValueError)


def test_explicit_enumerate_too_large_is_refused_by_solve():
    probs = [1 / 30] * 30
    costs = list(np.linspace(1.0, 0.4, 30) / 50)
    problem = ContractProblem(participants=10, probs=probs, costs=costs)
    with pytest.raises(ProblemTooLarge, match="backend 'enumerate'"):
        diffcontract.solve(problem, backend="enumerate")


@pytest.mark.parametrize("value", [0, -5, "lots", float("nan"), True])
def test_bad_budgets_name_the_setting(value, monkeypatch):
    with pytest.raises(ValueError, match="memory_budget must be a positive number of bytes"):
        memory_budget(value)
    monkeypatch.setenv(planner.BUDGET_ENV, "two gigabytes")
    with pytest.raises(ValueError, match=planner.BUDGET_ENV):
        memory_budget()


def test_budget_sources(monkeypatch):
    monkeypatch.delenv(planner.BUDGET_ENV, raising=False)
    assert memory_budget() == int(planner.DEFAULT_BUDGET_FRACTION * planner.available_memory())
    monkeypatch.setenv(planner.BUDGET_ENV, "3e9")
    assert memory_budget() == 3_000_000_000 and memory_budget(1e6) == 1_000_000  # an explicit budget wins


def test_estimates_grow_with_the_work():
    small, large = (planner.estimate("enumerate", 10, i)[0] for i in (5, 9))
    assert small < large
    chunk_small, chunk_large = (planner.estimate("chunked", 10, 13, chunk_size=b)[0] for b in (1 << 10, 1 << 15))
    assert chunk_small < chunk_large  # chunked memory is set by the chunk, not by K
    assert planner.estimate("chunked", 10, 13)[0] < planner.estimate("enumerate", 10, 13)[0]
    assert planner.fft_length(10, 64) == 1024  # 10 * 66 + 1 = 661 points -> next power of 2


def test_participants_beyond_int32_name_the_field():
    with pytest.raises(ValueError, match="participants must be at most 2147483647"):
        ContractProblem(participants=2**70, probs=[0.2, 0.8], costs=[0.02, 0.01])


def test_the_solution_says_which_backend_and_why():
    sol = diffcontract.solve(ContractProblem(participants=6, probs=[0.3, 0.7], costs=[0.02, 0.01]))
    assert sol.backend == "enumerate" and sol.backend_reason.startswith("auto: ")
    record = json.loads(sol.to_json())
    assert record["backend_reason"] == sol.backend_reason and "error_bound" not in record


def test_an_approximate_solve_is_measured_exactly_where_tractable():
    problem = ContractProblem(**LATTICE_MISS)
    sol = diffcontract.solve(problem, backend="convolution", backend_options={"lattice_rtol": 1e-8})
    # The lattice's own residuals meet tol; the exact ones (91 outcomes) do not: not converged.
    assert sol.status_name == "inexact" and "exact check (enumerate)" in sol.message
    assert sol.error_bound is None
    report = verify(json.loads(sol.to_json()), tol=1e-8)
    assert not report.ok  # the independent verifier agrees with the status
    # The reported budget residuals are the exact ones: the verifier's, to rounding.
    np.testing.assert_allclose(sol.residuals.budget, report.budget, rtol=0, atol=1e-11)  # money, float64 sums


def test_without_an_exact_check_the_error_bound_decides(monkeypatch):
    monkeypatch.setattr(planner, "ENUMERATE_FASTEST", 0)  # as if the problem were too large to enumerate
    monkeypatch.setattr(planner, "AUTO_CHUNKED_MAX", 0)
    problem = ContractProblem(**LATTICE_MISS)
    loose = diffcontract.solve(problem, backend="convolution", backend_options={"lattice_rtol": 1e-8})
    assert loose.status_name == "inexact" and "error bound" in loose.message
    assert float(np.max(loose.error_bound.reward_bounds)) > 1e-8  # money: larger than the tolerance
    fine = diffcontract.solve(problem, backend="convolution")  # the default lattice target: 1e-11 relative
    bound = float(np.max(fine.error_bound.reward_bounds))
    assert fine.status_name == "converged" and fine.max_violation + bound <= 1e-8
    record = json.loads(fine.to_json())
    assert record["error_bound"]["t_bar"] == pytest.approx(list(fine.error_bound.reward_bounds), rel=0)
    back = diffcontract.Solution.from_json(fine.to_json())
    np.testing.assert_array_equal(back.error_bound.reward_bounds, fine.error_bound.reward_bounds)  # exact round trip
