"""Accuracy curves and valuations (docs/model.md "Accuracy of the pooled data"): values, shape, gradients, pytree behaviour."""

from __future__ import annotations

import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcontract.curves import Arctan, Exponential, GeneralizationBound, Linear, PowerLaw


# ----------------------------------------------------------------------------- numpy references
def sgb_reference(x, a_opt=1.0, k=1.0):
    """docs/model.md's SGB, written independently of the library (numpy, float64)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    above = x > k * math.exp(-2.0)
    xa = x[above]
    out[above] = np.maximum(a_opt - (np.sqrt(2.0 * k * (2.0 + np.log(xa / k))) + 4.0) / np.sqrt(xa), 0.0)
    return out


def power_reference(x, a_opt, b, alpha):
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore"):
        error = np.where(x > 0, b * x ** (-alpha), np.inf)  # error term -> infinity as x -> 0
    return np.maximum(a_opt - error, 0.0)


def exponential_reference(r, scale, gamma):
    r = np.asarray(r, dtype=np.float64)
    return scale * (1.0 - np.exp(-gamma * r)) / (1.0 - np.exp(-gamma))


# Parameter sets on which every accuracy curve is monotone (see test_sgb_large_k_* for one that is not).
ACCURACY_CURVES = [
    GeneralizationBound(),
    GeneralizationBound(a_opt=0.9, k=3.0),
    GeneralizationBound(a_opt=1.0, k=100.0),
    PowerLaw(),
    PowerLaw(a_opt=0.9, b=2.0, alpha=0.3),
    Arctan(),
    Arctan(s=1e-4),
]
VALUATIONS = [Linear(), Linear(scale=3.5), Exponential(), Exponential(scale=50.0, gamma=0.1),
              Exponential(scale=100.0, gamma=5.0)]

# 0, then a log grid far past every kink and into the saturated regime; spacing ratio ~1.008.
X_GRID = np.concatenate([[0.0], np.geomspace(1e-6, 1e12, 5000)])
R_GRID = np.linspace(0.0, 1.0, 1001)


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("a_opt,k", [(1.0, 1.0), (0.9, 3.0), (0.75, 0.2), (1.0, 50.0), (1.0, 400.0)])
def test_sgb_matches_model_formula(a_opt, k):
    with jax.enable_x64(True):
        got = np.asarray(GeneralizationBound(a_opt=a_opt, k=k)(jnp.asarray(X_GRID)))
    # float64 on both sides, same formula evaluated in a different order: a few ulps of O(1) values.
    np.testing.assert_allclose(got, sgb_reference(X_GRID, a_opt, k), rtol=1e-13, atol=1e-14)


def test_sgb_closed_form_points():
    with jax.enable_x64(True):
        sgb = GeneralizationBound()
        # At x = e^6 (k = 1): 2 + ln(x/k) = 8, so a = 1 - (sqrt(16) + 4) / e^3 = 1 - 8 e^-3.
        assert float(sgb(math.exp(6.0))) == pytest.approx(1.0 - 8.0 * math.exp(-3.0), rel=1e-14)  # float64 ulps
        # At and below the kink k e^-2, and wherever the bracket exceeds a_opt, a = 0 exactly.
        assert float(sgb(0.0)) == 0.0
        assert float(sgb(math.exp(-2.0))) == 0.0
        assert float(sgb(math.exp(2.0))) == 0.0  # 1 - (sqrt(8) + 4) / e < 0: clipped


def test_power_law_and_arctan_closed_form_points():
    with jax.enable_x64(True):
        # 0.9 - 2 / sqrt(100) = 0.7
        assert float(PowerLaw(a_opt=0.9, b=2.0, alpha=0.5)(100.0)) == pytest.approx(0.7, rel=1e-14)  # float64 ulps
        np.testing.assert_allclose(np.asarray(PowerLaw(0.9, 2.0, 0.3)(jnp.asarray(X_GRID))),
                                   power_reference(X_GRID, 0.9, 2.0, 0.3), rtol=1e-13, atol=1e-14)  # float64 ulps
        # (2/pi) arctan(1) = 1/2 at x = 1/s.
        assert float(Arctan(s=0.01)(100.0)) == pytest.approx(0.5, rel=1e-14)  # float64 ulps
        assert float(Arctan(s=0.01)(0.0)) == 0.0


def test_valuation_values():
    with jax.enable_x64(True):
        assert float(Linear()(0.3)) == pytest.approx(30.0, rel=1e-15)  # one multiplication
        for gamma in (0.1, 1.0, 5.0):
            v = Exponential(scale=80.0, gamma=gamma)
            got = np.asarray(v(jnp.asarray(R_GRID)))
            # expm1 vs 1 - exp: equal to float64 rounding for these O(1) exponents.
            np.testing.assert_allclose(got, exponential_reference(R_GRID, 80.0, gamma), rtol=1e-12, atol=1e-12)
            assert float(v(0.0)) == 0.0
            assert float(v(1.0)) == pytest.approx(80.0, rel=1e-14)  # normalization v(1) = scale, float64
        # gamma -> 0 recovers the linear valuation: v(r) = s r (1 + O(gamma)).
        near_linear = np.asarray(Exponential(scale=100.0, gamma=1e-6)(jnp.asarray(R_GRID)))
        np.testing.assert_allclose(near_linear, 100.0 * R_GRID, rtol=1e-5, atol=1e-12)  # first-order term ~ gamma/2


# ----------------------------------------------------------------------------- shape
@pytest.mark.parametrize("curve", ACCURACY_CURVES, ids=repr)
def test_accuracy_non_decreasing_and_bounded(curve):
    with jax.enable_x64(True):
        values = np.asarray(curve(jnp.asarray(X_GRID)))
    assert np.all(np.isfinite(values))
    # Exact: each curve is monotone in exact arithmetic and the grid steps dwarf rounding.
    assert np.all(np.diff(values) >= 0.0)
    assert values.min() >= 0.0 and values.max() <= curve.a_max
    assert values[0] == 0.0  # no data, no accuracy
    assert values[-1] > 0.99 * curve.a_max  # and the curve really does saturate towards a_max


@pytest.mark.parametrize("valuation", VALUATIONS, ids=repr)
def test_valuation_non_decreasing(valuation):
    with jax.enable_x64(True):
        values = np.asarray(valuation(jnp.asarray(R_GRID)))
    assert np.all(np.diff(values) > 0.0)  # strictly increasing (docs/model.md "Accuracy of the pooled data")
    assert values[0] == 0.0


def test_sgb_large_k_jumps_at_the_kink():
    """With k > (4e)^2 the unclipped branch is already positive at x = k e^-2, so SGB jumps there."""
    with jax.enable_x64(True):
        sgb = GeneralizationBound(a_opt=1.0, k=400.0)
        x0 = 400.0 * math.exp(-2.0)
        assert float(sgb(x0)) == 0.0
        just_above = float(sgb(np.nextafter(x0, np.inf)))
    # a(x0+) = a_opt - 4 / sqrt(x0); the square-root term vanishes at the kink.
    assert just_above == pytest.approx(1.0 - 4.0 / math.sqrt(x0), rel=1e-6)  # sqrt(2k * ~1e-16) ~ 3e-7 left in the bracket


def test_sgb_large_k_rejected_by_validate():
    """k > 16 e^2 / a_opt^2 makes SGB jump at its kink and then decrease: not an accuracy curve."""
    with pytest.raises(ValueError, match="GeneralizationBound.k"):
        GeneralizationBound(a_opt=1.0, k=400.0).validate()
    GeneralizationBound(a_opt=1.0, k=100.0).validate()  # below 16 e^2 ~ 118.2: accepted


# ----------------------------------------------------------------------------- gradients
def _sgb_kink(k):
    return k * math.exp(-2.0)


def _power_clip(a_opt, b, alpha):
    return (b / a_opt) ** (1.0 / alpha)


GRADIENT_POINTS = [
    (GeneralizationBound(), 0.0),
    (GeneralizationBound(), _sgb_kink(1.0)),
    (GeneralizationBound(), 1e12),
    (GeneralizationBound(k=400.0), 0.0),
    (GeneralizationBound(k=400.0), _sgb_kink(400.0)),
    (GeneralizationBound(k=400.0), float(np.nextafter(_sgb_kink(400.0), np.inf))),
    (GeneralizationBound(k=400.0), _sgb_kink(400.0) * (1.0 + 1e-12)),
    (GeneralizationBound(k=400.0), 1e12),
    (PowerLaw(a_opt=0.9, b=2.0, alpha=0.5), 0.0),
    (PowerLaw(a_opt=0.9, b=2.0, alpha=0.5), _power_clip(0.9, 2.0, 0.5)),
    (PowerLaw(a_opt=0.9, b=2.0, alpha=0.5), float(np.nextafter(_power_clip(0.9, 2.0, 0.5), np.inf))),
    (PowerLaw(a_opt=0.9, b=2.0, alpha=0.5), 1e12),
    (Arctan(), 0.0),
    (Arctan(), 1e12),
]


@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("curve,x", GRADIENT_POINTS, ids=lambda v: repr(v) if not isinstance(v, float) else f"{v:.17g}")
def test_accuracy_gradient_finite(curve, x, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        dx = jax.grad(lambda x_: curve(x_))(jnp.asarray(x, dtype))
        dparams = jax.grad(lambda c: c(jnp.asarray(x, dtype)))(curve)
    assert np.isfinite(float(dx))
    assert all(np.isfinite(float(g)) for g in jax.tree_util.tree_leaves(dparams))


@pytest.mark.parametrize("valuation", VALUATIONS, ids=repr)
def test_valuation_gradient_finite_and_positive(valuation):
    with jax.enable_x64(True):
        grads = jax.vmap(jax.grad(lambda r: valuation(r)))(jnp.asarray(R_GRID))
    assert np.all(np.isfinite(np.asarray(grads))) and np.all(np.asarray(grads) > 0.0)


def test_sgb_gradient_matches_finite_difference():
    with jax.enable_x64(True):
        sgb = GeneralizationBound(a_opt=0.9, k=3.0)
        xs = np.array([300.0, 1000.0, 5000.0, 1e6])  # all past the clipped region
        grad = np.asarray(jax.vmap(jax.grad(lambda x: sgb(x)))(jnp.asarray(xs)))
        h = 1e-5 * xs
        fd = (sgb_reference(xs + h, 0.9, 3.0) - sgb_reference(xs - h, 0.9, 3.0)) / (2.0 * h)
    # central differences with relative step 1e-5: truncation ~1e-10 relative, rounding ~1e-11.
    np.testing.assert_allclose(grad, fd, rtol=1e-7)


# ----------------------------------------------------------------------------- pytrees: jit and vmap
BATCHES = [
    (GeneralizationBound, {"a_opt": [0.8, 0.9, 1.0], "k": [0.5, 1.0, 3.0]}),
    (PowerLaw, {"a_opt": [0.8, 0.9, 1.0], "b": [0.5, 1.0, 2.0], "alpha": [0.3, 0.5, 0.7]}),
    (Arctan, {"s": [1e-3, 1e-2, 1e-1]}),
    (Linear, {"scale": [1.0, 10.0, 100.0]}),
    (Exponential, {"scale": [10.0, 100.0, 50.0], "gamma": [0.5, 1.0, 3.0]}),
]


@pytest.mark.parametrize("cls,params", BATCHES, ids=[b[0].__name__ for b in BATCHES])
def test_vmap_over_curve_parameters_matches_loop(cls, params):
    xs = np.geomspace(1e-3, 1e6, 64) if cls not in (Linear, Exponential) else R_GRID[::16]
    with jax.enable_x64(True):
        batch = cls(**{k: jnp.asarray(v) for k, v in params.items()})
        assert len(jax.tree_util.tree_leaves(batch)) == len(params)  # every parameter is a leaf
        got = jax.vmap(lambda c, x: c(x), in_axes=(0, None))(batch, jnp.asarray(xs))
        want = np.stack([np.asarray(cls(**{k: v[b] for k, v in params.items()})(jnp.asarray(xs))) for b in range(3)])
    chex.assert_shape(got, (3, xs.size))
    # Same float64 arithmetic, batched vs one at a time.
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("cls,params", BATCHES, ids=[b[0].__name__ for b in BATCHES])
def test_jit_does_not_retrace_when_parameters_change(cls, params):
    traces = []

    @jax.jit
    def evaluate(curve, x):
        traces.append(None)  # runs only while tracing
        return curve(x)

    x = jnp.asarray([0.0, 0.5, 2.0, 1e3])
    for b in range(3):
        curve = cls(**{k: float(v[b]) for k, v in params.items()})
        np.testing.assert_allclose(np.asarray(evaluate(curve, x)), np.asarray(curve(x)), rtol=1e-6)  # float32 jit vs eager
    assert len(traces) == 1  # parameters are leaves, not static: new numbers reuse the compiled code


# ----------------------------------------------------------------------------- inverses
@pytest.mark.parametrize("valuation", VALUATIONS, ids=repr)
def test_inverse_round_trip(valuation):
    with jax.enable_x64(True):
        r = jnp.asarray(R_GRID)
        back = np.asarray(valuation.inverse(valuation(r)))
    # float64; the inverse is well conditioned on [0, 1] for gamma <= 5 (v'(1)/v'(0) = e^-5).
    np.testing.assert_allclose(back, R_GRID, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------- validation
BAD_PARAMETERS = [
    (GeneralizationBound, {"a_opt": 0.0}, "a_opt"),
    (GeneralizationBound, {"a_opt": 1.5}, "a_opt"),
    (GeneralizationBound, {"a_opt": float("nan")}, "a_opt"),
    (GeneralizationBound, {"k": 0.0}, "k"),
    (GeneralizationBound, {"k": -1.0}, "k"),
    (GeneralizationBound, {"k": float("inf")}, "k"),
    (PowerLaw, {"a_opt": 2.0}, "a_opt"),
    (PowerLaw, {"b": 0.0}, "b"),
    (PowerLaw, {"alpha": -0.5}, "alpha"),
    (PowerLaw, {"alpha": float("nan")}, "alpha"),
    (Arctan, {"s": 0.0}, "s"),
    (Arctan, {"s": -1.0}, "s"),
    (Linear, {"scale": 0.0}, "scale"),
    (Linear, {"scale": float("-inf")}, "scale"),
    (Exponential, {"scale": -100.0}, "scale"),
    (Exponential, {"gamma": 0.0}, "gamma"),
    (Exponential, {"gamma": float("nan")}, "gamma"),
]


@pytest.mark.parametrize("cls,params,field", BAD_PARAMETERS,
                         ids=[f"{c.__name__}-{f}={p[f]}" for c, p, f in BAD_PARAMETERS])
def test_validate_rejects_bad_parameters(cls, params, field):
    with pytest.raises(ValueError, match=re.escape(f"{cls.__name__}.{field}")):
        cls(**params).validate()


@pytest.mark.parametrize("curve", ACCURACY_CURVES + VALUATIONS, ids=repr)
def test_validate_accepts_good_parameters(curve):
    assert curve.validate() is None
