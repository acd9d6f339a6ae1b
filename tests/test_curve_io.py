"""Saving and loading curves (curves/io.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from diffcontract.curves import (MMF, Arctan, Exp3, GeneralizationBound, LearnedAccuracy, LogPower, Pow4, PowerLaw,
                                 ScaledAccuracy, Weibull, load_curve, save_curve)
from diffcontract.curves.io import curve_from_bytes, curve_to_bytes

RNG = np.random.default_rng(0)
LEARNED = LearnedAccuracy(RNG.normal(size=(3, 2)), RNG.normal(4, 1, (3, 2)), RNG.normal(size=(3, 2)), RNG.normal(size=3),
                          cap=0.9, min_width=0.1)
CURVES = [GeneralizationBound(0.9, 2.0), PowerLaw(0.9, 2.0, 0.4), Arctan(0.02), Pow4(0.9, 1.0, 0.5, 2.0),
          MMF(0.9, 0.1, 30.0, 1.2), LogPower(0.8, 10.0, 0.9), Exp3(0.95, 0.5, 100.0), Weibull(0.9, 0.1, 20.0, 0.7),
          LEARNED, ScaledAccuracy(LEARNED, 0.25), ScaledAccuracy(ScaledAccuracy(PowerLaw(), 2.0), 3.0)]


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: type(c).__name__)
def test_round_trip_is_exact(curve, tmp_path):
    path = save_curve(tmp_path / "c.msgpack", curve, {"source": "test", "sizes": np.arange(3.0)})
    loaded, meta = load_curve(path, with_metadata=True)
    assert type(loaded) is type(curve)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(curve)  # static fields too
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(curve)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # float64 stored: bit-exact
    assert meta["source"] == "test" and np.asarray(meta["sizes"]).tolist() == [0.0, 1.0, 2.0]
    x = np.geomspace(1.0, 1e6, 20)
    with jax.enable_x64(True):
        np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(curve(x)))


def test_rejects_garbage_and_unknown_kinds(tmp_path):
    with pytest.raises(ValueError, match="not a diffcontract curve"):
        curve_from_bytes(b"\x00\x01garbage")
    from flax import serialization

    bad = serialization.msgpack_serialize({"format": "diffcontract-curve-v1",
                                           "curve": {"kind": "os.system", "leaves": {}, "static": {}}})
    with pytest.raises(ValueError, match="unknown curve kind"):
        curve_from_bytes(bad)
    with pytest.raises(ValueError, match="not found"):
        load_curve(tmp_path / "missing.msgpack")
    invalid = curve_to_bytes(PowerLaw(a_opt=1.5))
    with pytest.raises(ValueError, match="a_opt"):
        curve_from_bytes(invalid)  # loading validates


@pytest.mark.parametrize("curve", [LEARNED, ScaledAccuracy(LEARNED, 0.25), Pow4(0.9, 1.0, 0.5, 2.0)],
                         ids=lambda c: type(c).__name__)
def test_json_round_trip(curve):
    import json

    from diffcontract.curves.io import curve_from_json, curve_to_json

    back = curve_from_json(json.loads(json.dumps(curve_to_json(curve))))
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(curve)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # repr of a float64 is exact
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(curve)
