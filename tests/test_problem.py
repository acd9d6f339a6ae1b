"""ContractProblem: validation, canonical type order, reservation utilities, pytree behaviour."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from scipy import optimize

import diffcontract as dc
from diffcontract import ContractProblem
from diffcontract.curves import (MMF, Arctan, Exp3, Exponential, GeneralizationBound, LearnedAccuracy, Linear, LogPower,
                                 Pow4, PowerLaw, ScaledAccuracy, Weibull)
from diffcontract.curves.io import CURVE_CLASSES
from diffcontract.problem import without_input_order


# ----------------------------------------------------------------------------- numpy references
def sgb(x, a_opt=1.0, k=1.0):
    """docs/model.md's SGB accuracy, scalar, independent of the library."""
    if x <= k * math.exp(-2.0):
        return 0.0
    return max(0.0, a_opt - (math.sqrt(2.0 * k * (2.0 + math.log(x / k))) + 4.0) / math.sqrt(x))


def sgb_slope(x, a_opt=1.0, k=1.0):
    """d/dx of the unclipped SGB branch: x^-3/2 [(sqrt(2ku) + 4)/2 - sqrt(2k)/(2 sqrt(u))], u = 2 + ln(x/k)."""
    u = 2.0 + math.log(x / k)
    return x**-1.5 * ((math.sqrt(2.0 * k * u) + 4.0) / 2.0 - math.sqrt(2.0 * k) / (2.0 * math.sqrt(u)))


def reservation_reference(cost, quality=1.0, accuracy=sgb, value=lambda r: 100.0 * r, v_max=100.0):
    """max(0, max_m v(a(q m)) - c m) by a coarse log grid, then bounded Brent in the best bracket."""
    def gain(m):
        return value(accuracy(quality * m)) - cost * m

    grid = np.geomspace(1e-6, v_max / cost, 4001)  # beyond v(1)/c training alone loses money
    values = np.array([gain(m) for m in grid])
    best = int(np.argmax(values))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    res = optimize.minimize_scalar(lambda m: -gain(m), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-10})
    if -res.fun <= 0.0:
        return 0.0, 0.0
    return -res.fun, res.x


# ----------------------------------------------------------------------------- reservation utilities
@pytest.fixture(scope="module")
def two_types():
    return ContractProblem(participants=10, probs=[0.5, 0.5], costs=[0.02, 0.01])


def test_reservation_matches_scipy(two_types):
    ref = [reservation_reference(c) for c in (0.02, 0.01)]
    f_ref = np.array([r[0] for r in ref])
    m_ref = np.array([r[1] for r in ref])
    # Both sides locate the maximum to ~1e-9 relative (golden section vs Brent, xatol 1e-10); the
    # objective is flat at its maximum, so 1e-6 leaves room for the argmax without being loose.
    np.testing.assert_allclose(two_types.reservation_utility, f_ref, rtol=1e-6)
    np.testing.assert_allclose(two_types.reservation_data, m_ref, rtol=1e-6)


def test_train_alone_data_is_the_root_of_the_first_order_condition():
    # v(a(m)) - c m is flat at its maximum, so compared values place m^res only to ~1e-8 relative,
    # and N = 1 pays that at first order (E[v] = sum_i p_i v(a(m^res_i))). The reference: the root of
    # 100 a'(m) = c by Brent, bracketed around the scipy maximizer.
    costs = [0.15, 0.05, 0.02, 0.01, 0.001]
    problem = ContractProblem(participants=1, probs=np.full(5, 0.2), costs=costs)
    roots = []
    for c in costs:
        near = reservation_reference(c)[1]
        roots.append(optimize.brentq(lambda m: 100.0 * sgb_slope(m) - c, 0.9 * near, 1.1 * near,
                                     xtol=1e-15 * near, rtol=8.9e-16))
    canonical = np.asarray(problem.reservation_data)[np.argsort(problem.type_order)]  # input order
    np.testing.assert_allclose(canonical, roots, rtol=1e-13)  # float64 roots of one smooth equation
    value = sum(0.2 * 100.0 * sgb(m) for m in roots)
    np.testing.assert_allclose(float(dc.solve(problem).expected_value), value, rtol=1e-13)  # float64, exact N = 1


def test_reservation_matches_model_figures(two_types):
    # docs/model.md quotes m^res ~ (715.56, 1148.50) and v(a(m^res)) ~ (69.567, 75.646). The exact
    # argmaxes are 715.6436 and 1148.3889: MODEL's figures are ~1e-4 off (a loosely converged
    # optimizer's), so compare at the precision they carry: rtol 2e-4 for m, 2e-3 absolute for values.
    np.testing.assert_allclose(two_types.reservation_data, [715.56, 1148.50], rtol=2e-4)
    with jax.enable_x64(True):
        values = np.asarray(two_types.valuation(two_types.accuracy(jnp.asarray(two_types.reservation_data))))
    np.testing.assert_allclose(values, [69.567, 75.646], atol=2e-3)
    # f = v(a(m^res)) - c m^res, by definition.
    np.testing.assert_allclose(two_types.reservation_utility, values - two_types.costs * two_types.reservation_data,
                               rtol=1e-12)  # float64, the same three numbers recombined


@pytest.mark.parametrize("quality", [None, [1.5, 0.5]], ids=["unit-quality", "quality"])
def test_reservation_first_order_condition(quality):
    problem = ContractProblem(participants=10, probs=[0.5, 0.5], costs=[0.02, 0.01], quality=quality)
    q = np.ones(2) if quality is None else np.asarray(quality)
    for i, (c, m) in enumerate(zip(problem.costs, problem.reservation_data)):
        # q v'(a(q m)) a'(q m) = c at an interior maximum; v' = 100 for the default valuation.
        marginal = q[i] * 100.0 * sgb_slope(q[i] * m)
        assert marginal == pytest.approx(c, rel=1e-6)  # argmax to ~1e-9; a' varies like m^-3/2
        f_ref, m_ref = reservation_reference(c, q[i])
        assert problem.reservation_utility[i] == pytest.approx(f_ref, rel=1e-6)  # as test_reservation_matches_scipy
        assert problem.reservation_data[i] == pytest.approx(m_ref, rel=1e-6)


def test_reservation_other_curves():
    accuracy, valuation = PowerLaw(a_opt=0.9, b=2.0, alpha=0.5), Exponential(scale=100.0, gamma=2.0)
    problem = ContractProblem(participants=4, probs=[0.3, 0.7], costs=[0.05, 0.002],
                              accuracy=accuracy, valuation=valuation)

    def power(x):
        return max(0.0, 0.9 - 2.0 * x**-0.5) if x > 0 else 0.0

    def value(r):
        return 100.0 * (1.0 - math.exp(-2.0 * r)) / (1.0 - math.exp(-2.0))

    for i, c in enumerate(problem.costs):
        f_ref, m_ref = reservation_reference(c, accuracy=power, value=value)
        assert f_ref > 0.0
        assert problem.reservation_utility[i] == pytest.approx(f_ref, rel=1e-6)  # argmax of a flat maximum, see above
        assert problem.reservation_data[i] == pytest.approx(m_ref, rel=1e-6)


def test_reservation_zero_when_training_alone_never_pays():
    # v(a(m)) <= 100 while a(m) = 0 for every m <= 20 = 100/5: no m earns back its cost at c = 5.
    problem = ContractProblem(participants=3, probs=[0.5, 0.5], costs=[5.0, 0.01])
    assert problem.reservation_utility[0] == 0.0
    assert problem.reservation_data[0] == 0.0
    assert problem.reservation_utility[1] > 0.0 and problem.reservation_data[1] > 0.0


# ----------------------------------------------------------------------------- canonical order
@pytest.mark.parametrize("costs", [[0.01, 0.02, 0.03], [0.02, 0.05, 0.01], [0.03, 0.02, 0.01]])
def test_types_sorted_costliest_first(costs):
    # Distinct c / q in every case (f depends on c / q only: q = 2 at c = 0.02 ties c = 0.01 at q = 1).
    probs, quality = [0.1, 0.3, 0.6], [1.0, 1.5, 0.8]
    problem = ContractProblem(participants=5, probs=probs, costs=costs, quality=quality)
    assert np.all(np.diff(problem.costs) < 0.0)  # c_1 > c_2 > ... > c_I
    # Each type keeps its own probability and quality through the sort.
    assert sorted(zip(problem.costs, problem.probs, problem.quality)) == sorted(zip(costs, probs, quality))
    np.testing.assert_array_equal(problem.to_input_order(problem.costs), costs)
    np.testing.assert_array_equal(problem.to_input_order(problem.probs), probs)
    np.testing.assert_array_equal(problem.to_input_order(problem.quality), quality)
    # Reservation utilities follow their types: compare against the canonical-order problem.
    canonical = ContractProblem(participants=5, probs=problem.probs, costs=problem.costs, quality=problem.quality)
    assert canonical.type_order == (0, 1, 2)
    np.testing.assert_array_equal(problem.reservation_utility, canonical.reservation_utility)
    f_input = problem.to_input_order(problem.reservation_utility)
    for j, c in enumerate(costs):  # input type j gets the reservation utility of its own cost
        assert f_input[j] == canonical.reservation_utility[list(canonical.costs).index(c)]
    assert len(set(f_input)) == 3  # distinct costs, distinct f: the check above cannot pass by accident


# ----------------------------------------------------------------------------- validation
@struct.dataclass
class DecayingAccuracy:
    """exp(-rate x): in [0, 1] but decreasing, so not an accuracy curve."""

    rate: float = 1e-3

    def __call__(self, x):
        return jnp.exp(-self.rate * jnp.asarray(x))


@struct.dataclass
class DecreasingValuation:
    scale: float = 100.0

    def __call__(self, r):
        return self.scale * (1.0 - jnp.asarray(r))


GOOD = {"participants": 4, "probs": [0.5, 0.5], "costs": [0.02, 0.01]}
nan, inf = float("nan"), float("inf")
BAD_INPUTS = [
    ({"participants": 0}, "participants"),
    ({"participants": -1}, "participants"),
    ({"participants": 2.5}, "participants"),
    ({"participants": 3.0}, "participants"),
    ({"participants": True}, "participants"),
    ({"participants": "3"}, "participants"),
    ({"probs": [0.5, 0.6]}, "probs"),
    ({"probs": [0.0, 1.0]}, "probs"),
    ({"probs": [-0.5, 1.5]}, "probs"),
    ({"probs": [nan, 0.5]}, "probs"),
    ({"probs": [0.5, 0.5, 0.0]}, "probs"),
    ({"costs": [0.0, 0.01]}, "costs"),
    ({"costs": [-0.02, 0.01]}, "costs"),
    ({"costs": [nan, 0.01]}, "costs"),
    ({"costs": [inf, 0.01]}, "costs"),
    ({"costs": [0.01, 0.01]}, "costs"),
    ({"probs": [0.2, 0.3, 0.5]}, "probs.*costs"),
    ({"costs": [0.03, 0.02, 0.01]}, "probs.*costs"),
    ({"quality": [1.0, 1.0, 1.0]}, "quality"),
    ({"quality": [1.0, 0.0]}, "quality"),
    ({"quality": [1.0, -2.0]}, "quality"),
    ({"conditioning": "foo"}, "conditioning"),
    ({"accuracy": DecayingAccuracy()}, "accuracy"),
    ({"valuation": DecreasingValuation()}, "valuation"),
    ({"accuracy": GeneralizationBound(a_opt=1.5)}, "a_opt"),
]


@pytest.mark.parametrize("change,field", BAD_INPUTS, ids=[f"{next(iter(c))}={next(iter(c.values()))!r}"
                                                          for c, _ in BAD_INPUTS])
def test_bad_inputs_rejected_naming_the_field(change, field):
    with pytest.raises(ValueError, match=field):
        ContractProblem(**{**GOOD, **change})


def test_sgb_large_k_rejected_as_non_monotone():
    # SGB(k=400) jumps at its kink and then falls (see test_curves): the problem must refuse it,
    # naming the curve's parameter.
    with pytest.raises(ValueError, match="GeneralizationBound.k"):
        ContractProblem(**GOOD, accuracy=GeneralizationBound(a_opt=1.0, k=400.0))


def test_integer_like_participants_accepted():
    assert ContractProblem(**{**GOOD, "participants": np.int64(7)}).num_participants == 7
    assert ContractProblem(**{**GOOD, "participants": 1}).num_outcomes == 2  # C(1 + 1, 1)


# ----------------------------------------------------------------------------- pytree
def test_pytree_round_trip(two_types):
    leaves, treedef = jax.tree_util.tree_flatten(two_types)
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(rebuilt, ContractProblem)
    assert rebuilt.type_order == two_types.type_order and rebuilt.conditioning == two_types.conditioning
    assert rebuilt.accuracy == two_types.accuracy and rebuilt.valuation == two_types.valuation
    for name in ("probs", "costs", "quality", "reservation_utility", "reservation_data"):
        np.testing.assert_array_equal(getattr(rebuilt, name), getattr(two_types, name))
    assert rebuilt.num_participants == two_types.num_participants
    # The numbers are leaves (changing them never recompiles); conditioning is not a leaf.
    assert all(not isinstance(leaf, str) for leaf in leaves)


def test_jit_of_a_function_taking_a_problem(two_types):
    traces = []

    @jax.jit
    def surplus(problem):
        traces.append(None)
        value = problem.valuation(problem.accuracy(problem.quality * problem.reservation_data))
        return value - problem.costs * problem.reservation_data

    with jax.enable_x64(True):
        got = np.asarray(surplus(two_types))
        # Same shapes, different numbers: one trace serves both.
        other = ContractProblem(participants=10, probs=[0.3, 0.7], costs=[0.03, 0.015])
        got_other = np.asarray(surplus(other))
        passed_through = jax.jit(lambda p: p)(two_types)
    assert len(traces) == 1
    np.testing.assert_allclose(got, two_types.reservation_utility, rtol=1e-12)  # float64, same formula as f
    np.testing.assert_allclose(got_other, other.reservation_utility, rtol=1e-12)
    assert isinstance(passed_through, ContractProblem) and passed_through.type_order == two_types.type_order
    np.testing.assert_array_equal(np.asarray(passed_through.costs), two_types.costs)


# ----------------------------------------------------------------------------- records (to_dict / from_dict)
def _learned():
    rng = np.random.default_rng(1)
    return LearnedAccuracy(rng.normal(size=(2, 3)), rng.normal(4, 1, (2, 3)), rng.normal(size=(2, 3)),
                           rng.normal(size=2), cap=0.95)


# Every registered kind: each accuracy family (with a valuation each), the learned ensemble, scaled curves.
RECORD_CURVES = [(GeneralizationBound(0.9, 2.0), Linear(100.0 / 3.0)),
                 (PowerLaw(0.9, 0.1 + 0.2, 0.4), Exponential(80.0, 1 / 7)),
                 (Arctan(0.02), Linear()), (Pow4(0.9, 1.0, 0.5, 2.0), Linear()), (MMF(0.9, 0.1, 30.0, 1.2), Linear()),
                 (LogPower(0.8, 10.0, 0.9), Linear()), (Exp3(0.95, 0.5, 100.0), Linear()),
                 (Weibull(0.9, 0.1, 20.0, 0.7), Linear()), (_learned(), Linear()),
                 (ScaledAccuracy(_learned(), 0.25), Exponential()), (ScaledAccuracy(PowerLaw(), 2.0), Linear())]


def test_records_cover_every_curve_kind():
    assert {type(c).__name__ for pair in RECORD_CURVES for c in pair} == set(CURVE_CLASSES)


@pytest.mark.parametrize("accuracy,valuation", RECORD_CURVES, ids=lambda c: type(c).__name__)
def test_dict_round_trip_is_exact(accuracy, valuation):
    # probs normalized by the problem are not a fixed point of normalizing again (1/6, 4/6, 1/6
    # sums to 1 - 1 ulp): from_dict must keep them as recorded.
    problem = ContractProblem(5, [1 / 6, 1 / 6, 4 / 6], [0.01, 0.03, 0.02], accuracy=accuracy, valuation=valuation,
                              quality=[1.0, 0.7, 1.3], conditioning="interim")
    assert not np.array_equal(problem.probs / problem.probs.sum(), problem.probs)
    record = json.loads(json.dumps(problem.to_dict()))
    rebuilt = ContractProblem.from_dict(record)
    assert rebuilt.to_dict() == record
    assert rebuilt.conditioning == "interim" and rebuilt.type_order == (0, 1, 2)  # records are canonical
    assert jax.tree_util.tree_structure(rebuilt) == jax.tree_util.tree_structure(without_input_order(problem))
    for a, b in zip(jax.tree_util.tree_leaves(rebuilt), jax.tree_util.tree_leaves(problem)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # every leaf, reservation utilities too


def test_from_dict_sorts_and_names_fields():
    record = {"participants": 4, "probs": [0.3, 0.7], "costs": [0.01, 0.02], "accuracy": {"kind": "sgb"},
              "valuation": {"kind": "Linear", "scale": 100}}  # input order, short names, an old flat node
    problem = ContractProblem.from_dict(record)
    assert problem.costs.tolist() == [0.02, 0.01] and problem.probs.tolist() == [0.7, 0.3]
    # Probabilities off by more than rounding (within the 1e-9 accepted) are normalized, as the constructor does.
    off = ContractProblem.from_dict({**record, "probs": [0.3, 0.7 - 1e-10]})
    np.testing.assert_array_equal(off.probs, np.array([0.7 - 1e-10, 0.3]) / (0.3 + (0.7 - 1e-10)))
    for change, match in [({"costs": [0.01, "0.02"]}, r"problem\.costs must be a list of numbers"),
                          ({"accuracy": {"kind": "Linear"}}, r"problem\.accuracy: unknown curve kind 'Linear'"),
                          ({"valuation": {"kind": "Linear", "scale": -1.0}}, r"problem\.valuation: Linear\.scale"),
                          ({"probs": [0.3, 0.6]}, r"problem: probs must sum to 1"), ({"extra": 1}, "unknown field"),
                          ({"conditioning": 1}, r"problem\.conditioning must be a string")]:
        with pytest.raises(ValueError, match=match):
            ContractProblem.from_dict({**record, **change})
    with pytest.raises(ValueError, match="missing the field 'valuation'"):
        ContractProblem.from_dict({k: v for k, v in record.items() if k != "valuation"})


def test_reservation_utilities_compile_once_for_every_type_count():
    # Types are solved one by one (vmap), padded to a power of two >= 4: I = 2, 3, 4 share one
    # compilation, I = 5 and a batch of 2 x 3 another, and the padding changes no value (the same
    # float64 kernel).
    from diffcontract.problem import _host_reservation, _reservation_jit, reservation

    first = ContractProblem(participants=3, probs=[0.5, 0.5], costs=[0.2, 0.1])
    compiled = _reservation_jit._cache_size()
    for costs in ([0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]):
        ContractProblem(participants=3, probs=np.full(len(costs), 1.0 / len(costs)), costs=costs)
    assert _reservation_jit._cache_size() == compiled
    ContractProblem(participants=3, probs=np.full(5, 0.2), costs=[0.5, 0.4, 0.3, 0.2, 0.1])
    costs = np.linspace(0.5, 0.01, 6).reshape(2, 3)
    f, m_res = _host_reservation(first.accuracy, first.valuation, costs, np.ones_like(costs))
    assert _reservation_jit._cache_size() <= compiled + 1  # + 1: eight lanes, unless an earlier test compiled it
    with jax.enable_x64(True):
        f_one, m_one = jax.jit(reservation)(first.accuracy, first.valuation, jnp.asarray(costs.ravel()),
                                            jnp.ones(costs.size))
    np.testing.assert_array_equal(f, np.asarray(f_one).reshape(2, 3))
    np.testing.assert_array_equal(m_res, np.asarray(m_one).reshape(2, 3))
