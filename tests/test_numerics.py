"""The shared numerical routines (diffcontract/numerics.py) against scipy / scikit-learn references,
under jit, and under vmap against a Python loop."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq, minimize, minimize_scalar, nnls
from sklearn.isotonic import IsotonicRegression

from diffcontract.numerics import (GOLDEN_RATIO, bisection, golden_section_max, isotonic_regression,
                                   nonnegative_least_squares, project_monotone_nonnegative, regula_falsi, solve_qp)

GOLDEN_STEPS = 80  # 0.618^80 ~ 2e-17 of the bracket: collapsed to rounding


@pytest.fixture(autouse=True)
def _float64():
    """Every routine and reference here runs in float64 (the package's solvers call them so)."""
    with jax.enable_x64(True):
        yield


def _unimodal(x, peak, curvature):
    """A smooth unimodal function with its maximum at ``peak`` (jnp or float)."""
    return -curvature * (x - peak) ** 2 + jnp.sin(x - peak) * 0.1 * (x - peak) ** 2


# ------------------------------------------------------------------------------------ golden section
@pytest.mark.parametrize("reuse", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_golden_section_matches_scipy(seed, reuse):
    rng = np.random.default_rng(seed)
    peak, curvature = rng.uniform(-1.0, 2.0), rng.uniform(0.5, 3.0)
    lower, upper = peak - rng.uniform(0.5, 2.0), peak + rng.uniform(0.5, 2.0)
    out = jax.jit(lambda a, b: golden_section_max(lambda x: _unimodal(x, peak, curvature), a, b, GOLDEN_STEPS,
                                                  reuse=reuse))(jnp.asarray(lower), jnp.asarray(upper))
    ref = minimize_scalar(lambda x: -float(_unimodal(x, peak, curvature)), bounds=(lower, upper),
                          method="bounded", options={"xatol": 1e-12})
    # The maximizer of a smooth function is determined to ~sqrt(eps) ~ 1e-8 by its values alone.
    assert float(out.argmax) == pytest.approx(ref.x, abs=1e-7)
    assert float(out.argmax) == pytest.approx(peak, abs=1e-7)
    assert float(out.lower) <= float(out.argmax) <= float(out.upper)
    assert float(out.upper - out.lower) <= 1e-7
    # The value at argmax (compiled vs eager: XLA may fuse differently, hence not ==).
    assert float(out.maximum) == pytest.approx(float(_unimodal(out.argmax, peak, curvature)), rel=1e-12, abs=1e-15)


def test_golden_section_bracket_shrinks_by_the_golden_ratio():
    for steps in (0, 1, 5, 20):
        out = golden_section_max(lambda x: -(x - 0.3) ** 2, jnp.asarray(0.0), jnp.asarray(1.0), steps)
        assert float(out.upper - out.lower) == pytest.approx(GOLDEN_RATIO ** steps, rel=1e-9)  # rounding only
    assert GOLDEN_RATIO == pytest.approx(2.0 / (1.0 + math.sqrt(5.0)), rel=1e-15)


@pytest.mark.parametrize("reuse", [True, False])
def test_golden_section_vmaps_like_a_loop_and_works_elementwise(reuse):
    rng = np.random.default_rng(1)
    peaks = rng.uniform(-1.0, 1.0, 5)
    lower, upper = jnp.asarray(peaks - 1.3), jnp.asarray(peaks + 0.7)

    def one(a, b, p):
        return golden_section_max(lambda x: _unimodal(x, p, 1.0), a, b, 40, reuse=reuse)

    batched = jax.jit(jax.vmap(one))(lower, upper, jnp.asarray(peaks))
    elementwise = golden_section_max(lambda x: _unimodal(x, jnp.asarray(peaks), 1.0), lower, upper, 40,
                                     reuse=reuse)
    for k in range(peaks.size):
        single = one(lower[k], upper[k], peaks[k])
        for got, want, whole in zip(batched, single, elementwise):
            # Same arithmetic in float64: a batch changes nothing but XLA's fusion.
            np.testing.assert_allclose(got[k], want, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(whole[k], want, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------ root bracketing
def _falling(x, root, slope):
    """A smooth decreasing function with its zero at ``root``."""
    return slope * (root - x) + 0.3 * (root - x) ** 3


@pytest.mark.parametrize("seed", range(4))
def test_regula_falsi_finds_the_boundary_like_brentq(seed):
    # Two residuals; the feasible set {both >= 0} ends where the first one crosses zero.
    rng = np.random.default_rng(seed)
    root, slope = rng.uniform(0.5, 2.0), rng.uniform(0.2, 5.0)

    def fn(x):
        return jnp.stack([_falling(x, root, slope), 3.0 - 0.1 * x])

    lo, hi = jnp.asarray(0.0), jnp.asarray(3.0)
    out = jax.jit(lambda a, b: regula_falsi(fn, a, fn(a), b, fn(b), 30))(lo, hi)
    ref = brentq(lambda x: float(_falling(x, root, slope)), 0.0, 3.0, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    assert float(out.lower) == pytest.approx(ref, rel=1e-13)  # superlinear: 30 steps reach rounding
    assert float(jnp.min(fn(out.lower))) >= 0.0  # lower stays feasible
    assert float(jnp.min(fn(out.upper))) < 0.0 and float(out.upper) > float(out.lower)
    np.testing.assert_array_equal(np.asarray(out.f_upper) < 0.0, np.asarray(fn(out.upper)) < 0.0)


def test_regula_falsi_survives_a_kink():
    # Convex on the feasible side with a kink at the boundary: plain regula falsi would keep one
    # end fixed forever; the Illinois rule and the midpoint fallback still converge.
    def fn(x):
        return jnp.where(x < 1.0, (1.0 - x) ** 4, -50.0 * (x - 1.0))[None]

    lo, hi = jnp.asarray(0.0), jnp.asarray(4.0)
    out = regula_falsi(fn, lo, fn(lo), hi, fn(hi), 200)
    assert float(out.lower) <= 1.0 and float(out.lower) == pytest.approx(1.0, abs=1e-3)  # (1 - x)^4 = 1e-12 there
    assert float(out.upper) == pytest.approx(1.0, abs=1e-9)


def test_regula_falsi_vmaps_like_a_loop():
    roots = np.array([0.7, 1.1, 1.9, 2.4])

    def one(root):
        fn = lambda x: jnp.stack([_falling(x, root, 1.5), x + 1.0])  # noqa: E731
        lo, hi = jnp.asarray(0.0, root.dtype), jnp.asarray(3.0, root.dtype)
        return regula_falsi(fn, lo, fn(lo), hi, fn(hi), 12)

    batched = jax.jit(jax.vmap(one))(jnp.asarray(roots))
    for k, root in enumerate(roots):
        single = one(jnp.asarray(root))
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[k], want, rtol=1e-13, atol=1e-15)  # same arithmetic, float64


@pytest.mark.parametrize("seed", range(4))
def test_bisection_matches_brentq(seed):
    rng = np.random.default_rng(seed)
    roots, slope = rng.uniform(0.1, 2.9, 3), rng.uniform(0.2, 5.0)
    lo, hi = jnp.zeros(3), jnp.full(3, 3.0)
    a, b = jax.jit(lambda a, b: bisection(lambda x: _falling(x, jnp.asarray(roots), slope) >= 0.0, a, b, 40))(
        lo, hi)
    for k, root in enumerate(roots):
        ref = brentq(lambda x: float(_falling(x, root, slope)), 0.0, 3.0, xtol=1e-15)
        assert float(a[k]) == pytest.approx(ref, abs=3e-12)  # the final bracket is 3 * 2^-40 ~ 2.7e-12 wide
        assert float(_falling(a[k], root, slope)) >= 0.0 > float(_falling(b[k], root, slope))
    np.testing.assert_array_equal(np.asarray(b - a), 3.0 * 2.0 ** -40)  # 40 exact halvings of [0, 3]


def test_bisection_vmaps_like_a_loop():
    roots = jnp.asarray([0.3, 1.2, 2.5])
    one = lambda r: bisection(lambda x: _falling(x, r, 1.0) >= 0.0, jnp.zeros_like(r), jnp.full_like(r, 3.0), 30)  # noqa: E731
    batched = jax.vmap(one)(roots)
    for k in range(roots.shape[0]):
        for got, want in zip(batched, one(roots[k])):
            assert float(got[k]) == float(want)  # comparisons and halvings only: exact


# ------------------------------------------------------------------------------------ projections
@pytest.mark.parametrize("seed", range(6))
def test_isotonic_regression_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    y = rng.normal(size=n) + rng.uniform(-0.5, 0.5) * np.arange(n)  # a trend, up or down
    expected = IsotonicRegression().fit_transform(np.arange(y.size), y)
    got = np.asarray(jax.jit(isotonic_regression)(jnp.asarray(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)  # exact block means, float64 rounding


@pytest.mark.parametrize("seed", range(6))
def test_projection_matches_nnls_of_the_increments(seed):
    # {0 <= x_1 <= ... <= x_n} = {L z : z >= 0}, L lower triangular ones: the projection of y is
    # L z* with z* = argmin_{z >= 0} ||L z - y||, an NNLS problem scipy solves exactly.
    rng = np.random.default_rng(seed)
    y = rng.normal(size=7) * 2.0 + rng.uniform(-1.0, 1.0)
    L = np.tril(np.ones((7, 7)))
    expected = L @ nnls(L, y)[0]
    got = np.asarray(project_monotone_nonnegative(jnp.asarray(y)))
    again = np.asarray(project_monotone_nonnegative(jnp.asarray(got)))
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)  # active-set NNLS, float64
    # Idempotent: a fixed point, up to the ulp of a block mean recomputed from cumulative sums.
    np.testing.assert_allclose(again, got, rtol=1e-15, atol=1e-15)
    assert np.all(got >= 0.0) and np.all(np.diff(got) >= 0.0)


def test_projections_vmap_like_a_loop():
    rng = np.random.default_rng(3)
    ys = rng.normal(size=(5, 6))
    for fn in (isotonic_regression, project_monotone_nonnegative):
        batched = np.asarray(jax.vmap(fn)(jnp.asarray(ys)))
        for k in range(ys.shape[0]):
            single = np.asarray(fn(jnp.asarray(ys[k])))
            np.testing.assert_allclose(batched[k], single, rtol=1e-14, atol=1e-15)  # same arithmetic


# ------------------------------------------------------------------------------------- small QP
def _random_qp(seed, n=5, m=12):
    rng = np.random.default_rng(seed)
    root = rng.normal(size=(n, n))
    W = root @ root.T + 0.1 * np.eye(n)
    g = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    inside = rng.normal(size=n)
    b = A @ inside - rng.uniform(0.0, 1.0, m)  # feasible: A inside >= b
    return W, g, A, b, inside


@pytest.mark.parametrize("seed", range(8))
def test_solve_qp_matches_scipy(seed):
    W, g, A, b, inside = _random_qp(seed)
    d, z = (np.asarray(a) for a in jax.jit(solve_qp)(*(jnp.asarray(a) for a in (W, g, A, b))))
    ref = minimize(lambda x: 0.5 * x @ W @ x + g @ x, inside, jac=lambda x: W @ x + g, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: A @ x - b, "jac": lambda x: A}],
                   options={"ftol": 1e-15, "maxiter": 500})
    # SLSQP often ends "positive directional derivative" at the optimum: compare the points, and
    # check the QP's own KKT conditions below (a strictly convex QP has one minimizer).
    np.testing.assert_allclose(d, ref.x, rtol=1e-7, atol=1e-8)  # SLSQP's accuracy, float64
    # KKT of the QP: stationarity, feasibility, dual feasibility and complementarity.
    np.testing.assert_allclose(W @ d + g, A.T @ z, atol=1e-9)
    assert np.min(A @ d - b) >= -1e-10 and np.min(z) >= 0.0
    assert np.max(np.abs(z * (A @ d - b))) <= 1e-10


def test_solve_qp_vmaps_like_a_loop():
    qps = [_random_qp(seed)[:4] for seed in range(4)]
    stacked = [jnp.asarray(np.stack(a)) for a in zip(*qps)]
    batched, _ = jax.jit(jax.vmap(solve_qp))(*stacked)
    for k, qp in enumerate(qps):
        single, _ = solve_qp(*(jnp.asarray(a) for a in qp))
        np.testing.assert_allclose(batched[k], single, rtol=1e-10, atol=1e-12)  # same arithmetic, float64


# ------------------------------------------------------------------------------------------ NNLS
def _random_nnls(seed, m=12, n=5):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n)) + 2.0 * np.eye(m, n)  # well conditioned: FISTA converges in 400 steps
    b = rng.normal(size=m) * 2.0
    return A, b


@pytest.mark.parametrize("seed", range(6))
def test_nonnegative_least_squares_matches_scipy(seed):
    A, b = _random_nnls(seed)
    expected, _ = nnls(A, b)
    got = np.asarray(jax.jit(nonnegative_least_squares)(jnp.asarray(A), jnp.asarray(b), jnp.zeros(A.shape[1])))
    assert np.all(got >= 0.0)
    # FISTA converges linearly on a strongly convex problem (cond(A) < 10 here); 400 steps reach
    # rounding, and the active set (exact zeros) is found exactly by the projection.
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(got == 0.0, expected == 0.0)


def test_nonnegative_least_squares_vmaps_like_a_loop():
    problems = [_random_nnls(seed) for seed in range(4)]
    A, b = (jnp.asarray(np.stack(a)) for a in zip(*problems))
    batched = jax.jit(jax.vmap(nonnegative_least_squares))(A, b, jnp.ones((4, A.shape[2])))
    for k, (Ak, bk) in enumerate(problems):
        single = nonnegative_least_squares(jnp.asarray(Ak), jnp.asarray(bk), jnp.ones(Ak.shape[1]))
        np.testing.assert_allclose(batched[k], single, rtol=1e-10, atol=1e-12)  # same arithmetic, float64
