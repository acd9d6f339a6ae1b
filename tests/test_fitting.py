"""Fitting curves to learning-curve data (curves/fitting.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcontract.curves import (FAMILIES, MMF, LearnedAccuracy, PowerLaw, distill, fit_family, fit_family_batch,
                                 fit_learned, fit_learned_batch)
from diffcontract.data import LearningCurve, sklearn_curve

SIZES = np.round(16.0 * 2.0 ** (np.arange(14) / 2.0))  # LCDB anchors 16 ... 2048


def evaluate(curve, x):
    with jax.enable_x64(True):
        return np.asarray(jax.jit(lambda c, v: c(v))(curve, jnp.asarray(x)))


@pytest.mark.parametrize("family, truth", [
    ("pow3", PowerLaw(a_opt=0.93, b=1.6, alpha=0.55)),
    ("mmf", MMF(a_opt=0.95, a_0=0.1, x_half=60.0, d=1.1)),
])
def test_recovers_noise_free_curves(family, truth):
    y = evaluate(truth, SIZES)
    result = fit_family(family, SIZES, y)
    result.curve.validate()
    # Noise-free data from the family itself: Adam from 8 starts reaches the curve to within a few
    # 1e-3 accuracy points everywhere on the data (not to machine precision: no second-order polish).
    assert np.max(np.abs(evaluate(result.curve, SIZES) - y)) < 3e-3
    assert type(result.curve) is type(truth)


@pytest.mark.parametrize("names", [("pow4", "sgb"), pytest.param(tuple(FAMILIES), marks=pytest.mark.slow)],
                         ids=["two", "all"])
def test_batch_fits_families_and_shapes(names):
    curves = [sklearn_curve("digits", "logreg"), sklearn_curve("breast_cancer", "mlp")]
    for name in names:
        result = fit_family_batch(name, curves, restarts=2, steps=300)
        assert result.mse.shape == (2,) and np.all(np.isfinite(result.mse))
        for leaf in jax.tree_util.tree_leaves(result.curve):
            assert np.shape(leaf)[0] == 2


def test_learned_fits_real_curve_and_is_valid():
    data = sklearn_curve("digits", "logreg")
    result = fit_learned(data)
    curve = result.curve
    assert isinstance(curve, LearnedAccuracy) and curve.num_members == 8 and curve.num_components == 3
    curve.validate()
    fitted = evaluate(curve, data.sizes)
    # The digits curve is averaged over 20 splits (std of the mean about 0.003-0.015): an RMSE
    # below 0.01 is a fit at the noise level, not a memorized one.
    assert np.sqrt(np.mean((fitted - data.mean) ** 2)) < 0.01
    lo, hi = (np.asarray(b) for b in jax.jit(lambda c, x: c.band(x))(curve, jnp.asarray(data.sizes)))
    assert np.all(lo <= hi)
    assert float(curve.a_max) <= 1.0


@pytest.mark.slow
def test_batch_and_single_fits_agree():
    # Same seed, same data: the single fit is the batch fit of one curve.
    data = sklearn_curve("wine", "logreg")
    single = fit_learned(data, members=2, steps=300)
    batch = fit_learned_batch([data], members=2, steps=300)
    np.testing.assert_allclose(single.curve.centers, np.asarray(batch.curve.centers)[0], rtol=0, atol=0)


@pytest.mark.slow
def test_distill_matches_the_ensemble_mean():
    data = sklearn_curve("digits", "logreg")
    ensemble = fit_learned(data).curve
    small = distill(ensemble).curve
    assert small.num_members == 1 and small.num_components == 4
    grid = np.concatenate([[0.0], np.geomspace(1e-3, 1e9, 2000)])
    # 4 logistic components reproduce the 24-component mean to about 1e-3 accuracy points over
    # the whole contract domain (measured: ~1e-3 worst case, near x = 0); 3e-3 leaves margin.
    assert np.max(np.abs(evaluate(small, grid) - evaluate(ensemble, grid))) < 3e-3


def test_inverse_variance_weights_and_input_checks():
    c = sklearn_curve("wine", "mlp")
    flat = LearningCurve("x", "y", "z", c.sizes, c.mean, np.zeros_like(c.std), c.count)
    # All std zero -> every weight hits the same floor -> identical to uniform weighting.
    a = fit_family("pow3", flat, restarts=2, steps=200, weighting="inverse_variance")
    b = fit_family("pow3", flat, restarts=2, steps=200, weighting="uniform")
    assert a.mse == pytest.approx(b.mse, rel=1e-9)  # same weights up to normalization
    with pytest.raises(ValueError, match="weighting"):
        fit_family("pow3", c, weighting="bogus")
    with pytest.raises(ValueError, match="sizes"):
        fit_family("pow3", [1.0, 2.0, 3.0], [0.5, 0.6])
    with pytest.raises(KeyError):
        fit_family("pow9", c)


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_fits_lcdb_extract_reasonably(family):
    from diffcontract.data import lcdb_extract

    curves = lcdb_extract()
    result = fit_family_batch(family, curves)
    rmse = np.sqrt(result.mse)  # (inverse-variance weighted) training RMSE, accuracy points
    # Measured medians 0.004-0.008, except exp3 (exponential in x, too stiff for learning curves)
    # at 0.016: a median under 0.02 says the fit works. The worst
    # are OpenML 6 (letter), sigmoidal in log size from 0.09 to 0.93, which pow3/sgb miss by
    # ~0.05 at small sizes (measured 0.053): 0.1 bounds that without hiding a broken fit.
    assert np.median(rmse) < 0.02 and np.max(rmse) < 0.1
