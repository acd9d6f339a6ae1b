"""The curve registry and record format (curves/io.py): dicts (JSON), msgpack files, specs."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import serialization

from diffcontract.curves import (MMF, Arctan, Exp3, Exponential, GeneralizationBound, LearnedAccuracy, Linear, LogPower,
                                 Pow4, PowerLaw, ScaledAccuracy, Weibull, accuracy_from_spec, curve_from_dict,
                                 curve_to_dict, load_curve, save_curve, valuation_from_spec)
from diffcontract.curves.io import ACCURACY, CURVE_CLASSES, curve_from_bytes, curve_to_bytes

RNG = np.random.default_rng(0)
LEARNED = LearnedAccuracy(RNG.normal(size=(3, 2)), RNG.normal(4, 1, (3, 2)), RNG.normal(size=(3, 2)), RNG.normal(size=3),
                          cap=0.9, min_width=0.1)
# One instance of every registered kind, with parameters that are not round decimals (0.1 + 0.2,
# RNG draws): a round trip through text must keep every bit.
CURVES = [GeneralizationBound(0.9, 2.0), PowerLaw(0.9, 0.1 + 0.2, 0.4), Arctan(0.02), Pow4(0.9, 1.0, 0.5, 2.0),
          MMF(0.9, 0.1, 30.0, 1.2), LogPower(0.8, 10.0, 0.9), Exp3(0.95, 0.5, 100.0), Weibull(0.9, 0.1, 20.0, 0.7),
          LEARNED, ScaledAccuracy(LEARNED, 0.25), ScaledAccuracy(ScaledAccuracy(PowerLaw(), 2.0), 3.0),
          Linear(100.0 / 3.0), Exponential(100.0, 1.0 / 7.0)]


def test_every_registered_kind_is_tested():
    assert {type(c).__name__ for c in CURVES} == set(CURVE_CLASSES)


def assert_same_curve(loaded, curve):
    assert type(loaded) is type(curve)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(curve)  # static fields too
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(curve)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # float64 repr round-trips: bit-exact
    x = np.geomspace(1.0, 1e6, 20)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(curve(x)))


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: type(c).__name__)
def test_dict_round_trip_through_json_is_exact(curve):
    record = json.loads(json.dumps(curve_to_dict(curve)))
    assert record["kind"] == type(curve).__name__
    assert_same_curve(curve_from_dict(record), curve)


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: type(c).__name__)
def test_msgpack_round_trip_is_exact(curve, tmp_path):
    path = save_curve(tmp_path / "c.msgpack", curve, {"source": "test", "sizes": np.arange(3.0)})
    loaded, meta = load_curve(path, with_metadata=True)
    assert_same_curve(loaded, curve)
    assert meta["source"] == "test" and np.asarray(meta["sizes"]).tolist() == [0.0, 1.0, 2.0]


def test_old_records_still_load(tmp_path):
    # The flat nodes of records written before the registry (problem.to_dict, learned mechanisms).
    assert curve_from_dict({"kind": "Linear", "scale": 100}) == Linear(100.0)
    assert curve_from_dict({"kind": "GeneralizationBound", "a_opt": 1.0, "k": 1.0}) == GeneralizationBound()
    # A curve file of format v1: parameters under "leaves" (float64 arrays) and "static".
    def v1(node):
        leaves = {k: v1(v) if isinstance(v, dict) else np.asarray(v, dtype=np.float64)
                  for k, v in node.items() if k not in ("kind", "cap", "min_width")}
        static = {k: v for k, v in node.items() if k in ("cap", "min_width")}
        return {"kind": node["kind"], "leaves": leaves, "static": static}

    curve = ScaledAccuracy(LEARNED, 0.25)
    path = tmp_path / "v1.msgpack"
    path.write_bytes(serialization.msgpack_serialize({"format": "diffcontract-curve-v1",
                                                      "curve": v1(curve_to_dict(curve)), "metadata": {}}))
    assert_same_curve(load_curve(path), curve)


def test_specs_and_aliases():
    assert accuracy_from_spec("sgb:a_opt=0.9,k=2") == GeneralizationBound(0.9, 2.0)
    assert accuracy_from_spec({"kind": "power", "a_opt": 0.9}) == PowerLaw(a_opt=0.9)
    assert accuracy_from_spec("POW3:b=2") == accuracy_from_spec("PowerLaw:b=2") == PowerLaw(b=2.0)
    assert accuracy_from_spec("weibull:a_0=0.1") == Weibull(a_0=0.1)  # every family by its class name
    assert valuation_from_spec("cara:gamma=2") == Exponential(gamma=2.0)
    assert accuracy_from_spec(curve_to_dict(ScaledAccuracy(LEARNED, 0.25))).samples_per_unit == 0.25
    with pytest.raises(ValueError, match="accuracy: unknown curve kind 'linear'"):
        accuracy_from_spec("linear")  # a valuation is not an accuracy curve
    with pytest.raises(ValueError, match="valuation: unknown curve kind 'sgb'"):
        valuation_from_spec("sgb")


@pytest.mark.parametrize("node, match", [
    ({"kind": "os.system"}, r"problem\.accuracy: unknown curve kind 'os\.system'"),
    ("sgb", r"problem\.accuracy must be an object"),
    ({"kind": "PowerLaw", "q": 1.0}, r"PowerLaw has no parameter\(s\) \['q'\]"),
    ({"kind": "PowerLaw", "b": "2"}, r"problem\.accuracy\.b must be a number"),
    ({"kind": "PowerLaw", "b": True}, r"problem\.accuracy\.b must be a number"),
    ({"kind": "PowerLaw", "b": [2.0]}, r"problem\.accuracy\.b must be a number"),
    ({"kind": "PowerLaw", "b": 10**400}, r"problem\.accuracy\.b must be a number"),
    ({"kind": "PowerLaw", "a_opt": 1.5}, r"problem\.accuracy: PowerLaw\.a_opt"),
    ({"kind": "LearnedAccuracy", "logits": [[0.0]]}, r"problem\.accuracy: .*missing"),
    ({**curve_to_dict(LEARNED), "centers": [[1.0], [1.0, 2.0]]}, r"problem\.accuracy\.centers must be"),
    ({**curve_to_dict(LEARNED), "centers": [["x", 1.0]] * 3}, r"problem\.accuracy\.centers must be"),
    ({"kind": "ScaledAccuracy", "curve": 1.0}, r"problem\.accuracy\.curve must be an object"),
    ({"kind": "ScaledAccuracy", "curve": {"kind": "Linear"}}, r"problem\.accuracy\.curve: unknown curve kind"),
])
def test_bad_records_name_the_field(node, match):
    with pytest.raises(ValueError, match=match):
        curve_from_dict(node, "problem.accuracy", ACCURACY)


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="not a diffcontract curve"):
        curve_from_bytes(b"\x00\x01garbage")
    bad = serialization.msgpack_serialize({"format": "diffcontract-curve-v2", "curve": {"kind": "os.system"}})
    with pytest.raises(ValueError, match="unknown curve kind"):
        curve_from_bytes(bad)
    with pytest.raises(ValueError, match="not found"):
        load_curve(tmp_path / "missing.msgpack")
    with pytest.raises(ValueError, match="a_opt"):
        curve_from_bytes(curve_to_bytes(PowerLaw(a_opt=1.5)))  # loading validates
    with pytest.raises(ValueError, match="cannot record a curve of kind"):
        curve_to_dict(lambda x: x)
