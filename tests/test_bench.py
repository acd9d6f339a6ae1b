"""The evaluation harness: exact measures of a contract, scores against the stored certified optima,
reports, the stored suites' consistency and ``diffcontract bench``."""

from __future__ import annotations

import json

import numpy as np
import pytest

import diffcontract as dc
from diffcontract.bench import (SUITES, contract_menu, evaluate, load_suite, measure_contract, method_mechanism,
                                plot_gaps, reports_json, summary_table)
from diffcontract.bench.suites import data_file

from test_cli import run_cli

PROBLEM = dc.ContractProblem(participants=6, probs=[0.3, 0.3, 0.4], costs=[0.3, 0.1, 0.01])


@pytest.fixture(scope="module")
def exact():
    return dc.solve(PROBLEM)


def test_an_optimal_contract_has_no_regret_and_a_lie_is_measured(exact):
    measures = measure_contract(PROBLEM, exact.m, exact.t)
    assert measures.max_violation <= 1e-9 and np.max(measures.regret) <= 1e-9  # money, float64 solver
    np.testing.assert_allclose(measures.expected_accuracy, exact.expected_accuracy, rtol=1e-12)  # two enumerations
    c, m, t = np.asarray(PROBLEM.costs), np.asarray(exact.m), np.asarray(exact.t).copy()
    slack = (t[1] - c[1] * m[1]) - (t[2] - c[1] * m[2])  # type 2's IC slack against item 3, >= 0
    t[2] += slack + 0.5  # now type 2 gains exactly 0.5 money by claiming to be type 3
    lied = measure_contract(PROBLEM, exact.m, t)
    np.testing.assert_allclose(lied.regret[1], 0.5, atol=1e-9)  # money; other lies were <= 1e-9 before
    assert lied.budget >= 0.5 - 1e-9  # type 3's promise now exceeds tbar by at least 0.5 money


def test_contract_formats_and_their_errors(exact):
    m, t = np.asarray(exact.m), np.asarray(exact.t)
    for contract in (exact, (m, t), {"m": m, "t": t}):
        np.testing.assert_array_equal(contract_menu(contract, 3)[0], m)
    with pytest.raises(ValueError, match="keys 'm' and 't'"):
        contract_menu({"m": m}, 3)
    with pytest.raises(ValueError, match="the mechanism's t must be 3 finite numbers"):
        contract_menu((m, [1.0, np.nan, 2.0]), 3)


def test_scores_against_the_certified_optimum():
    suite = load_suite("paper-6.2").head(2)
    best = evaluate(method_mechanism("exact"), suite, name="exact")
    worse = evaluate(lambda p: (0.9 * np.asarray(dc.solve(p).m), np.asarray(dc.solve(p).t)), suite, name="less data")
    refusing = evaluate(lambda p: (_ for _ in ()).throw(ValueError("not for I = 5")), suite, name="refuses")
    assert best.aggregate["within_1e-6"] == 1.0 and abs(best.aggregate["max_gap"]) <= 1e-9  # exact is optimal here
    assert worse.aggregate["median_gap"] > 1e-3  # less data, less accuracy: a gap the harness sees
    assert np.all(worse.column("bound_gap") >= worse.column("gap"))  # the bound is above the incumbent
    assert refusing.aggregate["answered"] == 0 and refusing.rows[0]["status"].startswith("refused: not for I = 5")
    text = summary_table([best, worse, refusing])
    assert "exact" in text and "0/2" in text
    parsed = json.loads(reports_json([best, refusing]))
    assert parsed["reports"][1]["aggregate"]["median_gap"] is None  # NaN written as null
    assert best.to_csv().count("\n") == 3  # header and one row per problem


def test_gap_figure(tmp_path):
    report = evaluate(method_mechanism("exact"), load_suite("paper-6.2").head(1), name="exact")
    plot_gaps([report], str(tmp_path / "gaps.png"))
    assert (tmp_path / "gaps.png").stat().st_size > 1000


@pytest.mark.parametrize("name", sorted(SUITES))
def test_stored_suites_are_certified_and_consistent(name):
    suite = load_suite(name)
    assert len(suite) == len(suite.records) and data_file(name).startswith(name)
    for record in suite.records:
        certified = record["certified"]
        assert certified["status"] == "converged" and certified["gap"] <= 1e-6
        assert certified["upper_bound"] >= certified["expected_accuracy"]
        for method in ("exact", "alm"):  # no local answer above the certified bound
            assert record[method]["expected_accuracy"] <= certified["upper_bound"] * (1 + 1e-12)


def test_unknown_suite_is_named():
    with pytest.raises(ValueError, match="suite must be one of"):
        load_suite("random-i9")


def test_cli_bench(capsys):
    code, out, _ = run_cli(capsys, "-q", "bench", "--suite", "paper-6.2", "--methods", "exact", "--limit", "1", "--json")
    report = json.loads(out)["reports"][0]
    assert code == 0 and report["mechanism"] == "exact" and report["aggregate"]["problems"] == 1
    code, _, err = run_cli(capsys, "bench", "--suite", "paper-6.2", "--methods", "exact,simplex")
    assert code == 2 and "--methods must be" in err
