"""The learned accuracy curve (curves/learned.py): monotone and bounded by construction, pytree behaviour."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffcontract.curves import LearnedAccuracy
from diffcontract.curves.learned import stack_members


def random_curve(rng, members=4, components=3, cap=1.0, spread=3.0):
    """Random unconstrained parameters, deliberately wide (steep, flat, far-off components)."""
    shape = (members, components)
    return LearnedAccuracy(logits=rng.normal(0, spread, shape), centers=rng.normal(4, 2 * spread, shape),
                           log_widths=rng.normal(0, spread, shape), raw_asymptote=rng.normal(0, spread, members),
                           cap=cap)


def random_inputs(rng, n):
    """Zeros, tiny, moderate and huge data sizes: log-uniform over [1e-6, 1e12] plus exact zeros."""
    x = np.exp(rng.uniform(np.log(1e-6), np.log(1e12), n))
    x[rng.random(n) < 0.05] = 0.0
    return x


@pytest.mark.parametrize("x64", [True, False])
def test_monotone_and_bounded_on_1e5_random_inputs(x64):
    # The check: 10^5 random (curve, x) pairs, no negative derivative, no value outside
    # [0, a_max]. Exact comparisons, no tolerance: both properties hold by construction in
    # floating point (non-negative terms; a final clamp at a_max; tanh in [-1, 1]).
    rng = np.random.default_rng(0)
    per_point = jax.vmap(jax.value_and_grad(lambda c, x: c(x), argnums=1), in_axes=(None, 0))
    value_and_slope = jax.jit(jax.vmap(per_point))  # over (curves, points)
    for cap in (1.0, 0.6):  # cap is static: one compilation per value
        curves = [random_curve(rng, cap=cap) for _ in range(10)]
        batch = jax.tree_util.tree_map(lambda *a: np.stack(a), *curves)
        x = random_inputs(rng, 10 * 5_000).reshape(10, 5_000)
        with jax.enable_x64(x64):
            values, slopes = (np.asarray(v) for v in value_and_slope(batch, jnp.asarray(x)))
            a_max = np.asarray(jax.vmap(lambda c: c.a_max)(batch))[:, None]
        assert np.all(np.isfinite(values)) and np.all(np.isfinite(slopes))
        assert np.all(slopes >= 0.0), f"negative derivative {slopes.min()}"
        assert np.all(values >= 0.0) and np.all(values <= a_max), (values.min(), (values - a_max).max())
        assert np.all(a_max <= cap)


def test_values_nondecreasing_on_a_dense_grid():
    # Differences of consecutive values (not only derivatives) never go negative in float64.
    rng = np.random.default_rng(1)
    grid = np.concatenate([[0.0], np.geomspace(1e-6, 1e12, 20_000)])
    with jax.enable_x64(True):
        for _ in range(5):
            values = np.asarray(random_curve(rng)(grid))
            assert np.all(np.diff(values) >= 0.0)


def test_zero_data_is_finite_with_finite_gradients():
    curve = random_curve(np.random.default_rng(2))
    with jax.enable_x64(True):
        value, slope = (float(v) for v in jax.value_and_grad(lambda x: curve(x))(0.0))
        param_grads = jax.tree_util.tree_map(np.asarray, jax.grad(lambda c: c(0.0))(curve))
    assert np.isfinite(value) and np.isfinite(slope) and slope >= 0.0
    chex.assert_tree_all_finite(param_grads)


def test_closed_form_single_component():
    # One member, one component: a(x) = A sigmoid((log(1 + x) - mu) / s), s = min_width + e^rho.
    c = LearnedAccuracy(np.zeros((1, 1)), np.full((1, 1), np.log1p(99.0)), np.zeros((1, 1)), np.zeros(1), cap=0.8,
                        min_width=0.5)
    with jax.enable_x64(True):
        # At x = 99, z = mu: half the asymptote 0.8 * sigmoid(0) = 0.4 -> 0.2. float64 ulps.
        assert float(c(99.0)) == pytest.approx(0.2, rel=1e-14)
        z = np.log1p(1000.0)
        expected = 0.4 / (1.0 + np.exp(-(z - np.log1p(99.0)) / 1.5))
        assert float(c(1000.0)) == pytest.approx(expected, rel=1e-13)  # float64, tanh vs exp form


def test_ensemble_mean_members_and_band():
    curve = random_curve(np.random.default_rng(3), members=6)
    x = jnp.asarray(np.geomspace(1.0, 1e6, 50))
    with jax.enable_x64(True):
        members = np.asarray(curve.member_values(x))
        lo, hi = (np.asarray(b) for b in curve.band(x, 0.8))
        mean = np.asarray(curve(x))
        single = np.stack([np.asarray(curve.member(j)(x)) for j in range(6)], axis=-1)
    assert members.shape == (50, 6)
    np.testing.assert_allclose(single, members, rtol=1e-13, atol=1e-15)  # same formula, float64
    np.testing.assert_allclose(mean, members.mean(-1), rtol=1e-13, atol=1e-15)
    assert np.all(lo <= hi) and np.all(members.min(-1) <= lo) and np.all(hi <= members.max(-1))
    restacked = stack_members([curve.member(j) for j in range(6)])
    chex.assert_trees_all_close(restacked, curve)


def test_pytree_jit_vmap_grad():
    rng = np.random.default_rng(4)
    curves = [random_curve(rng) for _ in range(3)]
    batch = jax.tree_util.tree_map(lambda *a: np.stack(a), *curves)
    x = jnp.asarray(np.geomspace(1.0, 1e4, 7))
    with jax.enable_x64(True):
        batched = np.asarray(jax.vmap(lambda c: c(x))(batch))
        loop = np.stack([np.asarray(c(x)) for c in curves])
        grads = jax.jit(jax.grad(lambda c: jnp.sum(c(x))))(curves[0])
    np.testing.assert_allclose(batched, loop, rtol=1e-13, atol=1e-15)  # vmap vs loop, float64
    chex.assert_tree_all_finite(grads)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(curves[0])


def test_changing_parameters_does_not_retrace():
    rng = np.random.default_rng(5)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def evaluate(curve, x):
        return curve(x)

    x = jnp.ones(3)
    evaluate(random_curve(rng), x)
    evaluate(random_curve(rng), x)  # same shapes and static fields: one trace


@pytest.mark.parametrize("bad, match", [
    (dict(cap=1.5), "cap"),
    (dict(min_width=0.0), "min_width"),
    (dict(centers=np.zeros((2, 2))), "centers"),
    (dict(raw_asymptote=np.zeros(3)), "raw_asymptote"),
    (dict(logits=np.full((4, 3), np.nan)), "logits"),
])
def test_validate_rejects(bad, match):
    curve = random_curve(np.random.default_rng(6)).replace(**bad)
    with pytest.raises(ValueError, match=match):
        curve.validate()
