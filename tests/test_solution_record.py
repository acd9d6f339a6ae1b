"""The JSON record of a Solution (solvers/_record.py): Solution.to_json / from_json, analysis.solution_record."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import diffcontract
from diffcontract import ContractProblem, Solution
from diffcontract.analysis import solution_record
from diffcontract.curves import Exponential, ScaledAccuracy, Weibull


@pytest.fixture(scope="module")
def solution():
    # Input order is not canonical; a curve inside a curve and a concave valuation (not the flat defaults).
    problem = ContractProblem(4, [0.3, 0.7], [0.01, 0.02], accuracy=ScaledAccuracy(Weibull(0.9, 0.1, 20.0, 0.7), 0.5),
                              valuation=Exponential(100.0, 2.0))
    solution = diffcontract.solve(problem)
    assert solution.succeeded and solution.certificate is not None
    return solution.replace(information_cost=0.1 + 0.2)  # the optional field, with a non-round float


def assert_same_solution(back: Solution, solution: Solution):
    assert back.problem.to_dict() == solution.problem.to_dict()
    for a, b in zip(jax.tree_util.tree_leaves(back.problem), jax.tree_util.tree_leaves(solution.problem)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    rest = lambda s: s.replace(problem=None)  # noqa: E731
    assert jax.tree_util.tree_structure(rest(back)) == jax.tree_util.tree_structure(rest(solution))  # static too
    for a, b in zip(jax.tree_util.tree_leaves(rest(back)), jax.tree_util.tree_leaves(rest(solution))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # float64 repr round-trips: bit-exact


def test_to_json_from_json_is_exact(solution):
    back = Solution.from_json(solution.to_json())
    assert_same_solution(back, solution)
    assert back.status_name == "converged" and back.information_cost == 0.1 + 0.2
    assert Solution.from_json(back.to_json()).to_json() == back.to_json()


def test_one_record(solution):
    record = json.loads(solution.to_json())
    assert solution_record(solution) == record
    assert record["format"] == "diffcontract-solution-v1" and record["version"] == diffcontract.__version__
    # The keys README's "Command line" documents for solve --json.
    for key in ("m", "t", "t_bar", "expected_accuracy", "expected_value", "reservation_utility", "utility",
                "information_rent", "max_violation", "residuals", "status", "method", "certificate", "problem"):
        assert key in record
    # solve --sensitivities adds keys; a reader ignores them.
    assert_same_solution(Solution.from_json(json.dumps({**record, "d_value_d_costs": [None, None]})), solution)


@pytest.mark.parametrize("change, match", [
    (lambda r: r.pop("format"), "missing the field 'format'"),
    (lambda r: r.__setitem__("format", "diffcontract-solution-v0"), "has format"),
    (lambda r: r.pop("t_bar"), "missing the field 't_bar'"),
    (lambda r: r.__setitem__("m", ["x", 1.0]), "m must be a number or a list of numbers"),
    (lambda r: r["residuals"].pop("monotone"), "residuals is missing the field 'monotone'"),
    (lambda r: r.__setitem__("status", "done"), "status must be one of"),
    (lambda r: r.__setitem__("iterations", 2.5), "iterations must be an integer"),
    (lambda r: r.__setitem__("method", None), "method must be a string"),
    (lambda r: r["problem"].__setitem__("costs", [0.02, 0.02]), "problem: costs must be distinct"),
])
def test_bad_records_name_the_field(solution, change, match):
    record = json.loads(solution.to_json())
    change(record)
    with pytest.raises(ValueError, match=match):
        Solution.from_json(json.dumps(record))


def test_a_batch_is_refused(solution):
    with pytest.raises(ValueError, match="batch"):
        solution.replace(expected_value=np.zeros(2)).to_json()
