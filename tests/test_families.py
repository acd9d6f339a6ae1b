"""Parametric learning-curve families (curves/families.py) as accuracy curves."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcontract.curves import MMF, Exp3, GeneralizationBound, LogPower, Pow4, PowerLaw, ScaledAccuracy, Weibull

CURVES = [
    Pow4(a_opt=0.95, b=2.0, c=0.6, d=5.0),
    Pow4(a_opt=0.9, b=0.5, c=0.3, d=1e-3),
    MMF(a_opt=0.97, a_0=0.1, x_half=40.0, d=1.3),
    MMF(a_opt=0.8, a_0=0.0, x_half=1e4, d=0.4),
    LogPower(a_opt=0.9, x_half=20.0, d=0.7),
    Exp3(a_opt=0.99, b=0.8, x_scale=300.0),
    Weibull(a_opt=0.93, a_0=0.2, x_scale=50.0, d=0.5),
    Weibull(a_opt=1.0, a_0=0.0, x_scale=5.0, d=3.0),
    ScaledAccuracy(GeneralizationBound(0.95, 0.01), samples_per_unit=8.0),
]
GRID = np.concatenate([[0.0], np.geomspace(1e-6, 1e12, 5000)])


@pytest.mark.parametrize("curve", CURVES, ids=lambda c: type(c).__name__)
def test_monotone_bounded_finite(curve):
    curve.validate()
    with jax.enable_x64(True):
        values = np.asarray(curve(GRID))
        slopes = np.asarray(jax.vmap(jax.grad(lambda x: curve(x)))(jnp.asarray(GRID)))
        param_grads = jax.grad(lambda c: jnp.sum(c(jnp.asarray([0.0, 1.0, 1e3, 1e12]))))(curve)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(slopes))
    # Exact: each family is a composition of monotone float operations; a tiny negative slope
    # would be a bug, not rounding.
    assert np.all(np.diff(values) >= -1e-15) and np.all(slopes >= 0.0)
    assert values.min() >= 0.0 and values.max() <= float(curve.a_max)
    chex.assert_tree_all_finite(param_grads)


def test_closed_form_points():
    with jax.enable_x64(True):
        # float64 evaluation of the same formula: relative 1e-13 covers the different operation order.
        assert float(Pow4(0.9, 2.0, 0.5, 0.0 + 4.0)(96.0)) == pytest.approx(0.9 - 2.0 / 10.0, rel=1e-13)
        assert float(MMF(0.9, 0.1, 50.0, 2.0)(50.0)) == pytest.approx(0.5, rel=1e-13)
        assert float(MMF(0.9, 0.1, 50.0, 2.0)(0.0)) == pytest.approx(0.1, rel=1e-13)
        assert float(LogPower(0.8, 10.0, 1.0)(30.0)) == pytest.approx(0.8 * 0.75, rel=1e-13)
        assert float(Exp3(0.9, 0.5, 100.0)(100.0)) == pytest.approx(0.9 - 0.5 / np.e, rel=1e-13)
        assert float(Weibull(0.9, 0.1, 10.0, 2.0)(10.0)) == pytest.approx(0.9 - 0.8 / np.e, rel=1e-13)


def test_scaled_accuracy_reads_units_of_data():
    inner = PowerLaw(0.9, 2.0, 0.5)
    scaled = ScaledAccuracy(inner, samples_per_unit=4.0)
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(scaled(GRID)), np.asarray(inner(4.0 * GRID)), rtol=1e-15, atol=0)
    assert scaled.a_max == inner.a_max
    with pytest.raises(ValueError, match="samples_per_unit"):
        ScaledAccuracy(inner, samples_per_unit=-1.0).validate()
    with pytest.raises(ValueError, match="a_opt"):
        ScaledAccuracy(PowerLaw(a_opt=1.5), 1.0).validate()


@pytest.mark.parametrize("curve, match", [
    (Pow4(a_opt=1.2), "a_opt"), (Pow4(d=0.0), "d"), (MMF(a_0=0.99, a_opt=0.9), "a_0"), (LogPower(x_half=-1.0), "x_half"),
    (Exp3(x_scale=0.0), "x_scale"), (Weibull(d=float("nan")), "d"),
])
def test_validate_rejects(curve, match):
    with pytest.raises(ValueError, match=match):
        curve.validate()
