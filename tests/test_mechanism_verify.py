"""The independent verifier (issue 6, item 2): its own building blocks, verdicts and the CLI."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest
from scipy import stats

import diffcontract
from diffcontract import ContractProblem, cli
from diffcontract.analysis import solution_record
from diffcontract.curves import Exponential, PowerLaw
from diffcontract.expectation import conditional_weights, enumerate_outcomes
from diffcontract.mechanism import load_contract, verify
from diffcontract.mechanism.verify import (conditioning_weights, enumerate_counts, multinomial_pmf,
                                           reservation_lower_bound)


@pytest.fixture(scope="module")
def solved():
    """Two converged solutions at the shapes the property tests compile: SGB/linear/truncated
    (I = 2, N = 4) and power/exponential/interim (I = 3, N = 5)."""
    a = diffcontract.solve(ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01]))
    b = diffcontract.solve(ContractProblem(participants=5, probs=[0.2, 0.3, 0.5], costs=[0.05, 0.02, 0.01],
                                           accuracy=PowerLaw(a_opt=0.9, b=2.0, alpha=0.5),
                                           valuation=Exponential(scale=100.0, gamma=2.0), conditioning="interim"))
    assert a.succeeded and b.succeeded
    return {"linear": a, "exponential": b}


def record_of(solution):
    return json.loads(json.dumps(solution_record(solution)))


# ----------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("participants,num_types", [(1, 1), (7, 1), (1, 3), (4, 2), (5, 3), (12, 5), (3, 6)])
def test_enumeration_is_every_outcome_once(participants, num_types):
    mine = enumerate_counts(participants, num_types)
    assert mine.shape == (math.comb(participants + num_types - 1, num_types - 1), num_types)
    assert np.all(mine >= 0) and np.all(mine.sum(axis=1) == participants)
    # The library's table, listed by different code, holds the same set of outcomes.
    assert sorted(map(tuple, mine.tolist())) == sorted(map(tuple, enumerate_outcomes(participants, num_types).tolist()))


@pytest.mark.parametrize("conditioning", ["truncated", "interim"])
def test_law_and_weights_match_scipy_and_library(conditioning):
    probs, participants = np.array([0.1, 0.25, 0.65]), 6
    counts = enumerate_counts(participants, 3)
    prob = multinomial_pmf(counts, probs, participants)
    # 1e-13: lgamma sums against scipy's own log-space pmf, both float64, for probabilities >= 1e-6.
    np.testing.assert_allclose(prob, stats.multinomial.pmf(counts, participants, probs), rtol=1e-13, atol=0)
    assert prob.sum() == pytest.approx(1.0, abs=1e-14)  # K = 28 terms of float64 rounding
    weights = conditioning_weights(counts, prob, probs, participants, conditioning)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=0, atol=1e-14)
    with jax.enable_x64(True):
        _, lib = conditional_weights(counts.astype(np.float64), probs, participants, conditioning)
    np.testing.assert_allclose(weights, np.asarray(lib), rtol=1e-12, atol=1e-300)  # two float64 formulas


def test_reservation_lower_bound_matches_problem():
    problem = ContractProblem(participants=4, probs=[0.5, 0.5], costs=[0.02, 0.01])
    for i in range(2):
        f = reservation_lower_bound(problem.accuracy, problem.valuation, problem.costs[i], 1.0)
        # Both maximize the same flat 1-D function to ~1e-9 in m; the value agrees to ~1e-12 relative.
        assert f == pytest.approx(problem.reservation_utility[i], rel=1e-10)


# ----------------------------------------------------------------------------- verdicts on solved contracts
@pytest.mark.parametrize("key", ["linear", "exponential"])
def test_converged_solutions_pass(solved, key):
    solution = solved[key]
    report = verify(solution)
    assert report.ok, report.summary()
    assert -report.ex_post.min() <= 1e-12  # max_n r_i(n) - a(n . qm): float64 rounding of v^{-1}(v(a)) only
    # The verifier's tbar, IR and IC agree with the solver's own residuals: two float64 computations
    # of sums of O(v(1)) terms agree to ~1e-12 of v(1).
    np.testing.assert_allclose(report.reward_bounds, solution.reward_bounds, rtol=1e-12)
    np.testing.assert_allclose(report.budget, solution.residuals.budget, rtol=0, atol=1e-10)
    np.testing.assert_allclose(report.ir, solution.residuals.ir, rtol=0, atol=1e-9)
    np.testing.assert_allclose(report.ic, solution.residuals.ic, rtol=0, atol=1e-9)
    assert report.expected_value == pytest.approx(float(solution.expected_value), rel=1e-12)
    # From the JSON record: the same verdict and the same numbers.
    from_json = verify(record_of(solution))
    assert from_json.ok
    np.testing.assert_allclose(from_json.budget, report.budget, rtol=0, atol=1e-12)
    json.dumps(report.to_dict(), allow_nan=False)  # strict JSON


def tampered(solution, **changes):
    record = record_of(solution)
    for key, fn in changes.items():
        record[key] = fn(list(record[key]))
    return record


def names(report):
    return {v.name for v in report.violations}


def test_promise_above_bound_is_a_budget_violation(solved):
    solution = solved["linear"]
    slack = float(solution.reward_bounds[1] - solution.rewards[1])
    report = verify(tampered(solution, t=lambda t: [t[0], t[1] + slack + 0.5]))
    assert not report.ok and {"budget[2]", "promise[2]"} <= names(report)
    assert report.budget[1] == pytest.approx(-0.5, abs=1e-9)  # money; float64 re-evaluation of tbar
    # Rewards are capped at the joint model: the ex-post budget still holds; the promise falls short.
    assert -report.ex_post.min() <= 1e-12
    assert report.promise[1] == pytest.approx(-0.5, abs=1e-9)


def test_lower_reward_breaks_ir_and_ic(solved):
    solution = solved["linear"]
    report = verify(tampered(solution, t=lambda t: [t[0] - 1.0, t[1]]))
    assert "IR[1]" in names(report)  # IR of the costliest type binds at the optimum
    report = verify(tampered(solution, t=lambda t: [t[0], t[1] - 5.0]))
    assert "IC[2->1]" in names(report)  # the local downward IC binds: type 2 now prefers item 1
    assert report.ic[1, 0] == pytest.approx(-5.0, abs=1e-6)  # binding IC residual ~1e-13 minus 5
    report = verify(tampered(solution, m=lambda m: [-1.0, m[1]]))
    assert "nonnegative m[1]" in names(report)


def test_tolerance_decides(solved):
    record = tampered(solved["linear"], t=lambda t: [t[0] - 1e-5, t[1]])
    assert not verify(record, tol=1e-6).ok
    assert verify(record, tol=1e-4).ok
    with pytest.raises(ValueError, match="tol"):
        verify(record, tol=float("nan"))


def test_record_in_another_order_is_put_in_canonical_order(solved):
    solution = solved["exponential"]
    record = record_of(solution)
    order = [2, 0, 1]
    for key in ("m", "t", "t_bar"):
        record[key] = [record[key][j] for j in order]
    for key in ("probs", "costs", "quality"):
        record["problem"][key] = [record["problem"][key][j] for j in order]
    contract = load_contract(record)
    np.testing.assert_array_equal(contract.m, solution.m)  # exact: a permutation only
    assert verify(record).ok


def test_problem_round_trip(solved):
    problem = solved["exponential"].problem
    rebuilt = ContractProblem.from_dict(json.loads(json.dumps(problem.to_dict())))
    assert rebuilt.to_dict() == problem.to_dict()
    # Same inputs bit for bit (the record keeps float64 exactly), so the same reservation utilities.
    np.testing.assert_array_equal(rebuilt.reservation_utility, problem.reservation_utility)


# ----------------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    previous = jax.config.jax_enable_x64
    try:
        code = cli.main(list(argv))
    finally:
        jax.config.update("jax_enable_x64", previous)
    return (code, *capsys.readouterr())


def test_cli_verify(tmp_path, capsys, solved):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(record_of(solved["linear"])))
    code, out, err = run_cli(capsys, "verify", str(good))
    assert code == 0 and "verify: OK" in out and err == ""
    code, out, _ = run_cli(capsys, "verify", str(good), "--json")
    assert code == 0 and json.loads(out)["ok"] is True

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(tampered(solved["linear"], t=lambda t: [t[0], t[1] - 5.0])))
    code, out, err = run_cli(capsys, "verify", str(bad), "--tol", "1e-6")
    assert code == cli.EXIT_NOT_CONVERGED
    assert "IC[2->1]" in err and "IC[2->1]" in out  # each violated constraint named
    code, out, _ = run_cli(capsys, "verify", str(bad), "--json")
    assert code == 1 and "IC[2->1]" in {v["constraint"] for v in json.loads(out)["violations"]}


def test_cli_solve_then_verify_round_trip(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "solve", "-N", "4", "--probs", "0.5,0.5", "--costs", "0.01,0.02", "--json")
    assert code == 0
    path = tmp_path / "solution.json"
    path.write_text(out)
    code, out, _ = run_cli(capsys, "verify", str(path))
    assert code == 0, out
