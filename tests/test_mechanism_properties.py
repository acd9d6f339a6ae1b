"""Property-based tests (hypothesis) of the solvers through the independent verifier (issue 6, item 4).

On random valid problems (I <= 5, N <= 12):

* every solution with a success status passes ``mechanism.verify`` at 1e-6, including the ex-post
  budget (max_n r_i(n) - a(n . qm) <= 1e-12), from the ``Solution`` and from its JSON record;
* giving the types in another order yields the same contract, mapped back (``to_input_order``);
* multiplying v and every cost by the same factor leaves m unchanged and multiplies t by it.

Compilation dominates the cost (one compile per solver x (I, number of outcomes, curve kinds,
conditioning); about 10 s for "exact" and 45 s for "alm" on this project's machines), so each
run draws its shapes from a pool: the default suite from one or two signatures, the slow
500-example runs from every (I, N) with I <= 5, N <= 12 ("exact"; SGB/linear, and other curve kinds
and interim conditioning on a third of the shapes each) or a pool of eight shapes spanning that
range ("alm").
"""

from __future__ import annotations

import json
import os
from collections import Counter

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import diffcontract
from diffcontract import ContractProblem
from diffcontract.analysis import solution_record
from diffcontract.curves import Arctan, Exponential, GeneralizationBound, Linear, PowerLaw
from diffcontract.mechanism import verify

VERIFY_TOL = 1e-6  # the tolerance (money; accuracy for ex-post); the solvers aim at 1e-8
EX_POST_TOL = 1e-12  # r_i(n) <= a(n . qm) up to float64 rounding of v^{-1}(share * v(a)) (share <= 1)
# Permutation and scaling: the canonical problems agree to the last bit (scaling: to rounding of
# the scaled numbers), so the solves agree to the solvers' own accuracy; 1e-6 of the largest
# contribution / reward leaves room for an SLSQP path that rounds differently, nothing more.
AGREE_RTOL = 1e-6

ALL_SHAPES = [(i, n) for i in range(1, 6) for n in range(1, 13)]
ALM_SLOW_SHAPES = [(1, 7), (2, 1), (2, 12), (3, 4), (3, 9), (4, 6), (5, 3), (5, 12)]

CURVES = {
    "sgb/linear": (
        st.builds(GeneralizationBound, a_opt=st.floats(0.7, 1.0), k=st.floats(0.5, 4.0)),
        st.builds(Linear, scale=st.floats(10.0, 1000.0)),
    ),
    "power/exponential": (
        st.builds(PowerLaw, a_opt=st.floats(0.7, 1.0), b=st.floats(0.5, 3.0), alpha=st.floats(0.3, 0.8)),
        st.builds(Exponential, scale=st.floats(10.0, 1000.0), gamma=st.floats(0.2, 3.0)),
    ),
    "arctan/exponential": (
        st.builds(Arctan, s=st.floats(1e-3, 1e-1)),
        st.builds(Exponential, scale=st.floats(10.0, 1000.0), gamma=st.floats(0.2, 3.0)),
    ),
}


@st.composite
def problem_inputs(draw, signatures):
    """Keyword arguments of a valid ``ContractProblem`` in a random input order.

    signatures: list of (I, N, curves key, conditioning) to draw the compiled shape from.
    """
    num, participants, curves, conditioning = draw(st.sampled_from(signatures))
    exponents = draw(st.lists(st.floats(-3.0, 0.0), min_size=num, max_size=num, unique=True))
    costs = [10.0**e for e in exponents]
    if len(set(costs)) < num:  # two exponents that round to the same cost
        costs = sorted(set(costs)) + [2.0 * max(costs) * (k + 1) for k in range(num - len(set(costs)))]
    weights = np.asarray(draw(st.lists(st.floats(0.02, 1.0), min_size=num, max_size=num)))
    probs = (weights / weights.sum()).tolist()
    quality = draw(st.one_of(st.none(), st.lists(st.floats(0.5, 2.0), min_size=num, max_size=num)))
    accuracy_st, valuation_st = CURVES[curves]
    return dict(participants=participants, probs=probs, costs=costs, quality=quality,
                accuracy=draw(accuracy_st), valuation=draw(valuation_st), conditioning=conditioning)


def signatures(shapes, curve_kinds=("sgb/linear",), conditionings=("truncated",)):
    return [(i, n, c, cond) for i, n in shapes for c in curve_kinds for cond in conditionings]


def assert_verified(solution):
    """The verifier accepts a successful solution, from the object and from its JSON record."""
    report = verify(solution, tol=VERIFY_TOL)
    assert report.ok, report.summary()
    assert -np.min(report.ex_post) <= EX_POST_TOL, report.summary()
    record = json.loads(json.dumps(solution_record(solution)))
    from_json = verify(record, tol=VERIFY_TOL)
    assert from_json.ok, from_json.summary()
    # Same menu, same problem rebuilt from JSON: the residuals agree to float64 rounding of O(v(1)) sums.
    np.testing.assert_allclose(from_json.budget, report.budget, rtol=0, atol=1e-9 * (1 + np.max(np.abs(report.budget))))


def assert_same(a, b, scale_t: float = 1.0):
    """Two solutions (of the same problem up to order or units) give the same contract.

    a, b: ``Solution``s; b's problem has v and costs multiplied by ``scale_t``. Contributions agree
    to AGREE_RTOL of the largest one, rewards to AGREE_RTOL of v(1) (money scale, not t itself: t
    can be ~0). Where the optimum is the trivial contract (E[a] = 0: no contract pools enough data
    for a > 0, so every small enough m is optimal) only the optimal value is compared.
    """
    if float(a.expected_accuracy) <= 1e-12:
        assert float(b.expected_accuracy) <= 1e-12
        return
    m_a, m_b = np.asarray(a.m), np.asarray(b.m)
    np.testing.assert_allclose(m_b, m_a, rtol=0, atol=AGREE_RTOL * max(1.0, np.max(np.abs(m_a))))
    with jax.enable_x64(True):
        value_scale = float(a.problem.valuation(1.0) - a.problem.valuation(0.0))
    np.testing.assert_allclose(np.asarray(b.t), scale_t * np.asarray(a.t), rtol=0,
                               atol=AGREE_RTOL * scale_t * value_scale)
    # Objective: E[a] to AGREE_RTOL. Not tighter: where the feasible set is (nearly) one point, e.g.
    # N = 1, the solver's 1e-8 feasibility slack lets m, and so E[a], move by ~1e-9 relative.
    assert abs(float(b.expected_accuracy) - float(a.expected_accuracy)) <= AGREE_RTOL * float(a.expected_accuracy)


# Disagreements between a problem and its permuted / scaled twin (a different status, or a different
# converged contract) are solver findings, not verifier failures. The default suite runs a fixed
# (derandomized) set of examples and asserts them; the slow 500-example runs count them instead
# (written with the failing inputs to $DIFFCONTRACT_PROPERTY_TALLY when set) so that one finding
# does not hide the verifier's record over all 500 examples; DIFFCONTRACT_STRICT=1 asserts there too.
# Fixed findings: the solvers' feasibility_tol was absolute money, so scaling v by 2 doubled a 5e-9
# violation past 1e-8 and "converged" became "stalled"; it is now relative to v(1) - v(0)
# (test_exact_status_is_scale_invariant). On non-concave instances both solvers now keep the best of
# several starts (exact: SLSQP per start; ALM: ``ALM.starts``); a KKT point worse than the scaled
# twin's remains possible where neither start lies in the global optimum's basin.
TALLY: Counter = Counter()
FINDINGS: list = []
STRICT = os.environ.get("DIFFCONTRACT_STRICT") == "1"


@pytest.fixture(scope="module", autouse=True)
def _write_tally():
    yield
    _flush_tally()


def _flush_tally() -> None:
    # After every example, so that a run that dies (e.g. in XLA) still leaves its record.
    path = os.environ.get("DIFFCONTRACT_PROPERTY_TALLY")
    if path:
        with open(path, "w") as fh:
            json.dump({"counts": dict(TALLY), "findings": FINDINGS}, fh, indent=1, sort_keys=True)


def _agree(strict: bool, method: str, what: str, kwargs, check) -> None:
    """Run ``check`` (raises AssertionError on disagreement); assert or count it."""
    try:
        check()
        TALLY[f"{method} {what} agrees"] += 1
    except AssertionError as err:
        TALLY[f"{method} {what} disagrees"] += 1
        event(f"{method}: {what} disagrees")
        FINDINGS.append({"method": method, "what": what, "problem": repr(kwargs), "error": str(err)[-600:]})
        if strict or STRICT:
            raise


def _twin_status(original, twin):
    assert twin.succeeded, (f"original converged but the twin ended {twin.status_name} "
                            f"(max violation {twin.max_violation:.3g} vs {original.max_violation:.3g})")


def check_properties(kwargs, method, permutation_seed, factor, strict=True):
    TALLY["examples"] += 1
    if os.environ.get("DIFFCONTRACT_PROPERTY_TALLY"):  # the input in hand, should the process die
        with open(os.environ["DIFFCONTRACT_PROPERTY_TALLY"] + ".current", "w") as fh:
            fh.write(repr({**kwargs, "permutation_seed": permutation_seed, "factor": factor}))
    problem = ContractProblem(**kwargs)
    solution = diffcontract.solve(problem, method=method)
    event(f"{method}: {solution.status_name}")
    TALLY[f"{method} original {solution.status_name}"] += 1
    if not solution.succeeded:
        return
    assert_verified(solution)
    TALLY[f"{method} verified"] += 1

    # Another input order: the same contract, mapped back to the order given.
    num = problem.num_types
    perm = np.random.default_rng(permutation_seed).permutation(num)
    permuted_kwargs = {**kwargs, **{k: [kwargs[k][j] for j in perm] for k in ("probs", "costs")}}
    if kwargs["quality"] is not None:
        permuted_kwargs["quality"] = [kwargs["quality"][j] for j in perm]
    permuted = ContractProblem(**permuted_kwargs)
    other = diffcontract.solve(permuted, method=method)
    if other.succeeded:
        assert_verified(other)
        TALLY[f"{method} verified"] += 1

    def same_after_permutation():
        _twin_status(solution, other)
        # Input index j of the permuted problem is input index perm[j] of the original: map both
        # contracts to the original input order, then compare them as solutions.
        back_m, back_t = np.empty(num), np.empty(num)
        back_m[perm], back_t[perm] = permuted.to_input_order(other.m), permuted.to_input_order(other.t)
        mine = solution.replace(contributions=problem.to_input_order(solution.m),
                                rewards=problem.to_input_order(solution.t))
        assert_same(mine, other.replace(contributions=back_m, rewards=back_t))

    _agree(strict, method, "permuted", kwargs, same_after_permutation)

    # v and costs scaled by the same factor: m unchanged, t scaled.
    valuation = kwargs["valuation"]
    scaled_kwargs = {**kwargs, "costs": [factor * c for c in kwargs["costs"]],
                     "valuation": valuation.replace(scale=factor * valuation.scale)}
    scaled = diffcontract.solve(ContractProblem(**scaled_kwargs), method=method)
    if scaled.succeeded:
        assert_verified(scaled)
        TALLY[f"{method} verified"] += 1

    def same_after_scaling():
        _twin_status(solution, scaled)
        assert_same(solution, scaled, scale_t=factor)

    _agree(strict, method, "scaled", {**kwargs, "factor": factor}, same_after_scaling)


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# The default suite runs a fixed set of examples (derandomize): a solver finding on a new random
# example must not make the suite flaky for everyone; the slow runs explore.
DEFAULT_SETTINGS = dict(SETTINGS, derandomize=True, database=None)
factors = st.sampled_from([0.1, 0.5, 3.0, 10.0]) | st.floats(0.1, 10.0)


# ----------------------------------------------------------------------------- default suite
@settings(max_examples=12, **DEFAULT_SETTINGS)  # the 500-example runs are under -m slow
@given(kwargs=problem_inputs(signatures([(2, 4)]) + signatures([(3, 5)], ["power/exponential"], ["interim"])),
       permutation_seed=st.integers(0, 2**31), factor=factors)
def test_exact_solutions_verify(kwargs, permutation_seed, factor):
    check_properties(kwargs, "exact", permutation_seed, factor)


@settings(max_examples=6, **DEFAULT_SETTINGS)
@given(kwargs=problem_inputs(signatures([(2, 4)])), permutation_seed=st.integers(0, 2**31), factor=factors)
def test_alm_solutions_verify(kwargs, permutation_seed, factor):
    check_properties(kwargs, "alm", permutation_seed, factor)


# ----------------------------------------------------------------------------- slow: 500 examples each
SLOW_EXAMPLES = int(os.environ.get("DIFFCONTRACT_PROPERTY_EXAMPLES", "500"))
# No shrinking in the long runs: each example costs seconds (compiles), and the raw failing example
# is reported anyway.
SLOW_SETTINGS = dict(SETTINGS, phases=[Phase.generate], database=None)


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SLOW_SETTINGS)
@given(kwargs=problem_inputs(signatures(ALL_SHAPES) + signatures(ALL_SHAPES[::3], ["power/exponential"], ["interim"])
                             + signatures(ALL_SHAPES[1::3], ["arctan/exponential"], ["truncated"])),
       permutation_seed=st.integers(0, 2**31), factor=factors)
def test_exact_solutions_verify_500(kwargs, permutation_seed, factor):
    try:
        check_properties(kwargs, "exact", permutation_seed, factor, strict=False)
    finally:
        _flush_tally()


@pytest.mark.slow
@settings(max_examples=SLOW_EXAMPLES, **SLOW_SETTINGS)
@given(kwargs=problem_inputs(signatures(ALM_SLOW_SHAPES, ["sgb/linear", "power/exponential"], ["truncated"])
                             + signatures(ALM_SLOW_SHAPES[::2], ["sgb/linear"], ["interim"])),
       permutation_seed=st.integers(0, 2**31), factor=factors)
def test_alm_solutions_verify_500(kwargs, permutation_seed, factor):
    try:
        check_properties(kwargs, "alm", permutation_seed, factor, strict=False)
    finally:
        _flush_tally()


# ----------------------------------------------------------------------------- solver findings
# Found by the property tests above: feasibility_tol was absolute money, so the status was not invariant
# to scaling v and costs; it is relative to v(1) - v(0) now (solvers/_solution.py FEASIBILITY_TOL).
def test_exact_status_is_scale_invariant():
    kwargs = dict(participants=5, probs=[0.3333333333333333, 0.125, 0.5416666666666666],
                  costs=[0.1778279410038923, 1.0, 0.001],
                  accuracy=PowerLaw(a_opt=0.75, b=0.9375, alpha=0.3359375), conditioning="interim")
    base = diffcontract.solve(ContractProblem(**kwargs, valuation=Exponential(scale=80.0, gamma=0.375)))
    scaled = diffcontract.solve(ContractProblem(**{**kwargs, "costs": [2 * c for c in kwargs["costs"]]},
                                                valuation=Exponential(scale=160.0, gamma=0.375)))
    # The two menus agree to ~1e-12 relative (1e-9 allows another rounding path); only the verdict differs.
    np.testing.assert_allclose(scaled.m, base.m, rtol=1e-9)
    assert base.status_name == scaled.status_name


LOCAL_OPTIMUM = dict(participants=6, probs=[0.5, 0.5], costs=[0.03086926510686249, 0.010998140523139464],
                     accuracy=GeneralizationBound(a_opt=0.7, k=0.7065768275950645))


# Non-concave instance (found by the property test above): from the best exclude-then-pool start,
# m = (0, 423), the solvers once stopped at m_1 ~ 0 with E[a] = 0.4665644, while the same problem with v
# and costs scaled by 0.1 starts from the pooled menu and reaches m = (34.34, 366.67), E[a] = 0.4671328.
# Both solvers now run from the best feasible exclude-then-pool candidates (exact: SLSQP per start;
# ALM: ``ALM.starts`` = 2, vmapped inside the kernel) and keep the best converged run.
@pytest.mark.parametrize("method", ["exact", pytest.param("alm", marks=pytest.mark.slow)])
def test_global_optimum_on_a_non_concave_instance(method):
    solution = diffcontract.solve(ContractProblem(**LOCAL_OPTIMUM, valuation=Linear(scale=10.0)), method=method)
    better = diffcontract.solve(ContractProblem(**{**LOCAL_OPTIMUM, "costs": [0.1 * c for c in LOCAL_OPTIMUM["costs"]]},
                                                valuation=Linear(scale=1.0)), method=method)
    assert solution.succeeded and better.succeeded and verify(better).ok
    # 1e-9: the two optima differ by 5.7e-4; a solver at the global optimum matches to its KKT accuracy.
    assert float(solution.expected_accuracy) >= float(better.expected_accuracy) - 1e-9


def single_participant():
    return ContractProblem(participants=1, probs=[0.5, 0.5], costs=[0.1, 0.005])


def test_single_participant_problem_is_feasible():
    # With N = 1, tbar_i(m) = v(a(m_i)) and the menu of reservation items (m_res_i, v(a(m_res_i)))
    # satisfies IR (with equality), IC (type j taking item i earns at most its own f_j) and both
    # budgets: the problem is feasible, and the solvers return exactly this menu (test below).
    problem = single_participant()
    m = np.asarray(problem.reservation_data)
    with jax.enable_x64(True):
        t = np.asarray(problem.valuation(problem.accuracy(jax.numpy.asarray(m))))
    record = {"m": m.tolist(), "t": t.tolist(), "problem": problem.to_dict()}
    assert verify(record, tol=1e-9).ok  # binding IRs: rounding-level residuals


# N = 1: the feasible set is one point, which neither SLSQP (exact ended 'stalled', violation ~10) nor
# the ALM ('infeasible') could reach; both now return the reservation menu (solvers/_single.py).
@pytest.mark.parametrize("method", ["exact", pytest.param("alm", marks=pytest.mark.slow)])
def test_single_participant_solved(method):
    problem = single_participant()
    solution = diffcontract.solve(problem, method=method)
    assert solution.succeeded
    np.testing.assert_array_equal(solution.m, problem.reservation_data)
    assert verify(solution, tol=1e-9).ok  # binding IRs and budgets: rounding-level residuals
