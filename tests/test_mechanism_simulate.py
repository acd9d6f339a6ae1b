"""Strategic Monte Carlo simulation (issue 6, item 3)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import diffcontract
from diffcontract import ContractProblem, cli
from diffcontract.analysis import solution_record
from diffcontract.curves import Exponential, PowerLaw
from diffcontract.mechanism import best_responses, simulate

SAMPLES = 20_000  # enough for standard errors ~1e-2 of v(1) = 100 on these problems, and fast


@pytest.fixture(scope="module")
def solutions():
    a = diffcontract.solve(ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.02, 0.01]))
    b = diffcontract.solve(ContractProblem(participants=5, probs=[0.2, 0.3, 0.5], costs=[0.05, 0.02, 0.01],
                                           accuracy=PowerLaw(a_opt=0.9, b=2.0, alpha=0.5),
                                           valuation=Exponential(scale=100.0, gamma=2.0), conditioning="interim"))
    assert a.succeeded and b.succeeded
    return {"truncated": a, "interim": b}


@pytest.mark.parametrize("which", ["truncated", "interim"])
def test_truthful_play_and_utilities_match(solutions, which):
    report = simulate(solutions[which], samples=SAMPLES, seed=1)
    assert report.ok, report.summary()
    assert report.truthful.all() and list(report.actions) == list(range(report.actions.size))
    # Margins: IR_1 and the local downward ICs bind at the optimum, so the own item ties its best
    # alternative up to the solver's ~1e-12 residuals; nothing beats it.
    assert np.all(report.model_margin >= -1e-9)
    # Pass criterion re-derived here: |simulated - predicted| within 5 s.e. (or float rounding).
    assert np.all(np.abs(report.utility_z) <= 5.0)
    assert np.all(report.utility_se > 0) and np.all(report.utility_se < 0.1)
    assert report.max_excess <= 1e-12  # ex-post budget in every simulated round
    assert abs(report.expected_accuracy - report.predicted_accuracy) <= 5 * report.accuracy_se
    json.dumps(report.to_dict(), allow_nan=False)


def test_reproducible_with_explicit_keys(solutions):
    solution = solutions["truncated"]
    a = simulate(solution, samples=5000, seed=7)
    b = simulate(solution, samples=5000, seed=7)
    c = simulate(solution, samples=5000, key=jax.random.PRNGKey(7))
    d = simulate(solution, samples=5000, seed=8)
    np.testing.assert_array_equal(a.empirical_utility, b.empirical_utility)
    np.testing.assert_array_equal(a.empirical_utility, c.empirical_utility)
    assert not np.array_equal(a.empirical_utility, d.empirical_utility)


def test_every_round_is_counted_once(solutions):
    # Interim estimates weight participants: the observations of all types add up to samples x N.
    # 5000 is not a multiple of the compiled chunk, so the masking of the last chunk is checked too.
    report = simulate(solutions["interim"], samples=5000, seed=0)
    assert report.observed.sum() == 5000 * 5


def test_standard_errors_are_calibrated(solutions):
    # Over independent seeds the z-scores of the simulated utilities behave like N(0, 1):
    # 40 seeds x 2 types; |mean| < 0.5 and 0.5 < sd < 1.6 hold with probability > 0.999 under N(0, 1).
    z = np.concatenate([simulate(solutions["truncated"], samples=2000, seed=s).utility_z for s in range(40)])
    assert abs(z.mean()) < 0.5 and 0.5 < z.std() < 1.6


def test_a_menu_that_is_not_incentive_compatible(solutions):
    solution = solutions["truncated"]
    t = np.asarray(solution.t).copy()
    t[1] -= 5.0  # type 2 now prefers item 1
    report = simulate(solution.replace(rewards=t), samples=SAMPLES, seed=0)
    # At this optimum IR_2 and the downward IC_21 both bind, so for type 2 the item of type 1 and
    # opting out tie at u = f_2 (to rounding): either is a best response, and which one the argmax
    # picks is decided by ~1e-14 differences. Both are a deviation of margin -5.
    assert not report.ok and not report.truthful[1] and report.actions[1] in (0, -1)
    assert report.model_margin[1] == pytest.approx(-5.0, abs=1e-6)
    assert any(f.startswith("type 2 is better off with") for f in report.failures)


def test_opting_out(solutions):
    solution = solutions["truncated"]
    t = np.asarray(solution.t).copy()
    t[0] -= 1.0  # below type 1's reservation utility
    m = np.asarray(solution.m).copy()
    actions, truthful, margin = best_responses(m, t, np.asarray(solution.problem.costs),
                                               np.asarray(solution.reservation_utilities), tie_tol=1e-7)
    assert actions[0] == -1 and not truthful[0] and margin[0] == pytest.approx(-1.0, abs=1e-9)
    report = simulate(solution.replace(rewards=t), samples=2000, seed=0)
    assert report.actions[0] == -1 and not report.ok
    # Who opts out earns f exactly.
    assert report.empirical_utility[0] == pytest.approx(float(solution.reservation_utilities[0]), abs=1e-12)


def test_cli_simulate(tmp_path, capsys, solutions):
    path = tmp_path / "solution.json"
    path.write_text(json.dumps(solution_record(solutions["truncated"])))
    previous = jax.config.jax_enable_x64
    try:
        code = cli.main(["simulate", str(path), "--samples", "3000", "--seed", "2", "--json"])
        again = cli.main(["simulate", str(path), "--samples", "3000", "--seed", "2", "--json"])
    finally:
        jax.config.update("jax_enable_x64", previous)
    out = capsys.readouterr().out.strip().splitlines()
    assert code == again == 0
    first, second = json.loads(out[0]), json.loads(out[1])
    assert first == second and first["ok"] and first["samples"] == 3000
