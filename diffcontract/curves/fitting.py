r"""Fitting accuracy curves to learning-curve data with optax (parametric families and the learned curve).

One engine serves every model: a curve family maps an unconstrained parameter vector theta to a
curve (``CurveFamily.build``), host-side ``init`` proposes data-informed starting points, and
``fit_family_batch`` minimizes the (weighted) mean squared error

.. math::  L(\theta) = \sum_i w_i (a_\theta(x_i) - y_i)^2 / \sum_i w_i

with Adam (cosine-decayed step) from several random restarts at once: restarts, curves and
ensemble members are one ``vmap``-ed, ``jit``-compiled ``lax.scan``, so fitting a benchmark of a
hundred curves is one compiled call per family. Constraints hold by the parameterization
(asymptotes through a sigmoid, scales and exponents through exp), so every fitted curve is a
valid, monotone, bounded accuracy curve.

x (``sizes``) is in training samples; y (``accuracy``) in [0, 1]. Fitting runs in float64.

Data fits stop after Adam (``polish=0``) on purpose: on a development set of 300 LCDB curves an
L-BFGS polish to the exact least-squares optimum made extrapolation *worse* for every model
(median held-out MAE pow4 0.0143 -> 0.0177, pow3 0.0153 -> 0.0155, learned ~0.014 -> 0.0206):
the fixed Adam budget acts as a regularizer. ``distill`` (a noise-free fit) does polish.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._jit import jit
from .. import _precision
from .accuracy import GeneralizationBound, PowerLaw
from .families import MMF, Exp3, LogPower, Pow4, ScaledAccuracy, Weibull
from .learned import LearnedAccuracy

_EPS = 1e-4


def _logit(p):
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


class CurveFamily(NamedTuple):
    """A parametric family for fitting.

    name: registry key. num_params: P. build: (P,) unconstrained theta -> curve (traceable).
    init: host-side (rng, sizes (n,), accuracy (n,)) -> (P,) starting theta (randomized per restart).
    """

    name: str
    num_params: int
    build: Callable[[jnp.ndarray], Any]
    init: Callable[[np.random.Generator, np.ndarray, np.ndarray], np.ndarray]


def _top(rng, y):
    """A starting asymptote a little above the best observed accuracy."""
    return min(float(np.max(y)) + rng.uniform(0.005, 0.05), 0.999)


def _mid(rng, x):
    return float(np.exp(rng.uniform(np.log(x[0]), np.log(x[-1]))))


def _parametric_build(cls, th):
    """theta -> ``cls``, field by field: a_opt = sigmoid(theta_k), a_0 = a_opt sigmoid(theta_k), others exp(theta_k)."""
    params = {}
    for k, f in enumerate(dataclasses.fields(cls)):
        if f.name == "a_opt":
            params[f.name] = jax.nn.sigmoid(th[k])
        elif f.name == "a_0":
            params[f.name] = params["a_opt"] * jax.nn.sigmoid(th[k])
        else:
            params[f.name] = jnp.exp(th[k])
    return cls(**params)


def _parametric(name: str, cls, init) -> CurveFamily:
    """The family of ``cls`` with one unconstrained parameter per field (``_parametric_build``)."""
    return CurveFamily(name, len(dataclasses.fields(cls)), functools.partial(_parametric_build, cls), init)


def _power_init(shifted: bool, rng, x, y):
    """(a_opt, b, c[, d]) of ``PowerLaw`` (``Pow4`` when ``shifted``), through the first point."""
    a, c = _top(rng, y), rng.uniform(0.2, 1.0)
    d = x[0] * rng.uniform(0.05, 2.0) if shifted else 0.0
    b = max(a - y[0], 1e-3) * (x[0] + d) ** c
    return np.array([_logit(a), math.log(b), math.log(c)] + ([math.log(d)] if shifted else []))


def _sigmoidal_init(d_low, d_high, rng, x, y):
    """(a_opt, a_0, scale, d) of ``MMF`` and ``Weibull``: a_0 a random share of a_opt, d in [d_low, d_high]."""
    a = _top(rng, y)
    return np.array([_logit(a), _logit(rng.uniform(0.05, 0.6)), math.log(_mid(rng, x) / 4),
                     math.log(rng.uniform(d_low, d_high))])


def _logpower_init(rng, x, y):
    a, d = _top(rng, y), rng.uniform(0.3, 1.5)
    # through the first point: a / (1 + (x0 / h)^-d) = y0
    ratio = max(a / max(y[0], 1e-3) - 1.0, 1e-3)
    h = x[0] * ratio ** (1.0 / d)
    return np.array([_logit(a), math.log(h), math.log(d)])


def _exp3_init(rng, x, y):
    a, s = _top(rng, y), _mid(rng, x)
    b = max(a - y[0], 1e-3) * math.exp(x[0] / s)
    return np.array([_logit(a), math.log(b), math.log(s)])


def _sgb_kmax(a):
    # GeneralizationBound.validate: k <= 16 e^2 / a_opt^2 keeps the curve non-decreasing.
    return 16.0 * math.e**2 / a**2


def _sgb_build(th):
    a = jax.nn.sigmoid(th[0])
    k = _sgb_kmax(a) * jax.nn.sigmoid(th[1])
    return ScaledAccuracy(GeneralizationBound(a_opt=a, k=k), samples_per_unit=jnp.exp(th[2]))


def _sgb_init(rng, x, y):
    a = _top(rng, y)
    k = math.exp(rng.uniform(-1.0, 2.0))
    gap = max(a - y[-1], 1e-3)
    # scale s so that the SGB gap (sqrt(2k(2 + ln(u/k))) + 4)/sqrt(u) at u = s x_last matches the data
    lo, hi = math.log(k), 60.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        u = math.exp(mid)
        g = (math.sqrt(2 * k * (2 + math.log(u / k))) + 4) / math.sqrt(u)
        lo, hi = (mid, hi) if g > gap else (lo, mid)
    s = math.exp(lo) / x[-1]
    return np.array([_logit(a), _logit(k / _sgb_kmax(a)), math.log(s)])


FAMILIES: dict[str, CurveFamily] = {f.name: f for f in (
    CurveFamily("sgb", 3, _sgb_build, _sgb_init),
    _parametric("pow3", PowerLaw, functools.partial(_power_init, False)),
    _parametric("pow4", Pow4, functools.partial(_power_init, True)),
    _parametric("mmf", MMF, functools.partial(_sigmoidal_init, 0.3, 1.5)),
    _parametric("logpower", LogPower, _logpower_init),
    _parametric("exp3", Exp3, _exp3_init),
    _parametric("weibull", Weibull, functools.partial(_sigmoidal_init, 0.2, 1.0)),
)}


# ---------------------------------------------------------------------------- the engine
def _weighted_mse(curve, x, y, w):
    return jnp.sum(w * (curve(x) - y) ** 2) / jnp.sum(w)


@functools.partial(jit, static_argnames=("build", "steps", "polish"))
def _adam_fit(build, theta0, x, y, w, steps: int, learning_rate, polish: int = 0):
    """Minimize the weighted MSE from each row of ``theta0`` (vmapped; leading axis = runs).

    Adam with a cosine-decayed step explores (robust to poor starts); then ``polish`` L-BFGS
    iterations (zoom line search) converge fast from where Adam stopped.

    Args:
      build: theta -> curve. theta0: pytree with a leading run axis R. x, y, w: (R, n) data and
        weights (w = 0 masks padding).
    Returns:
      (theta, mse) with the leading run axis.
    """
    adam = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))
    lbfgs = optax.lbfgs()

    def one(theta, xr, yr, wr):
        def objective(th):
            return _weighted_mse(build(th), xr, yr, wr)

        def adam_step(carry, _):
            th, st = carry
            upd, st = adam.update(jax.grad(objective)(th), st, th)
            return (optax.apply_updates(th, upd), st), None

        (theta, _), _ = jax.lax.scan(adam_step, (theta, adam.init(theta)), None, length=steps)

        def lbfgs_step(carry, _):
            th, st = carry
            value, grad = jax.value_and_grad(objective)(th)
            upd, st = lbfgs.update(grad, st, th, value=value, grad=grad, value_fn=objective)
            new = optax.apply_updates(th, upd)
            # A failed line search can return a non-finite step; keep the last good point then.
            ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(new)]))
            return (jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, th), st), None

        if polish:
            (theta, _), _ = jax.lax.scan(lbfgs_step, (theta, lbfgs.init(theta)), None, length=polish)
        return theta, objective(theta)

    return jax.vmap(one)(theta0, x, y, w)


def _fit_runs(build, inits: list, x: np.ndarray, y: np.ndarray, w: np.ndarray, steps: int, learning_rate,
              polish: int):
    """``_adam_fit`` in float64 from each start of ``inits``, curve by curve (R = B runs per curve).

    Args:
      build: theta -> curve. inits: R starting thetas (arrays or tuples of arrays), grouped by curve.
      x, y: (B, n) data of the B curves. w: (R, n) weights of each run.
    Returns:
      (theta, mse) with the leading run axis R.
    """
    rep = lambda arr: jnp.asarray(np.repeat(arr, len(inits) // x.shape[0], axis=0))  # noqa: E731
    with _precision.float64():
        theta0 = jax.tree_util.tree_map(lambda *t: jnp.asarray(np.stack(t)), *inits)
        return _adam_fit(build, theta0, rep(x), rep(y), jnp.asarray(w), steps, learning_rate, polish)


WEIGHTINGS = ("uniform", "inverse_variance")
#: Floor on the standard error of a mean accuracy (accuracy units) in inverse-variance weights: a
#: curve measured at 1.000 with std 0 would otherwise get infinite weight; 0.005 is about the
#: resolution of an accuracy measured on a few hundred test samples.
SE_FLOOR = 0.005


def _weights(item, n: int, weighting: str) -> np.ndarray:
    if weighting == "uniform" or not hasattr(item, "std"):
        return np.ones(n)
    se2 = np.asarray(item.std, np.float64) ** 2 / np.maximum(np.asarray(item.count, np.float64), 1.0)
    w = 1.0 / (se2 + SE_FLOOR**2)
    return w / np.mean(w)


def _as_pairs(data, weighting: str) -> tuple:
    """(pairs, x, y, w): each curve's (sizes, accuracy), and (B, n_max) sizes, accuracies and weights,
    padded by repeating the last size with weight 0."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    out = []
    for item in data:
        sizes, acc = (item.sizes, item.mean) if hasattr(item, "sizes") else item
        sizes, acc = np.asarray(sizes, np.float64), np.asarray(acc, np.float64)
        if sizes.shape != acc.shape or sizes.ndim != 1 or sizes.size < 2:
            raise ValueError(f"each curve needs matching 1-D sizes and accuracies (>= 2 points), got {sizes.shape}, {acc.shape}")
        if np.any(sizes <= 0) or not np.all(np.isfinite(acc)):
            raise ValueError("sizes must be > 0 and accuracies finite")
        out.append((sizes, acc, _weights(item, sizes.size, weighting)))
    n = max(s.size for s, _, _ in out)
    padded = [(np.pad(s, (0, n - s.size), mode="edge"), np.pad(a, (0, n - s.size)), np.pad(w, (0, n - s.size)))
              for s, a, w in out]
    return [(s, a) for s, a, _ in out], *map(np.stack, zip(*padded))


def _host(tree):
    """Leaves to host numpy (0-d leaves to Python floats) so fitted curves do not carry device dtypes."""
    return jax.tree_util.tree_map(lambda a: float(a) if np.ndim(a) == 0 else np.asarray(a), tree)


class FitResult(NamedTuple):
    """curve: the fitted curve (batched: leading axis B on every leaf). mse: () or (B,) training MSE."""

    curve: Any
    mse: Any


def fit_family_batch(family: str | CurveFamily, data, restarts: int = 8, steps: int = 2000,
                     learning_rate: float = 0.05, seed: int = 0, weighting: str = "inverse_variance",
                     polish: int = 0) -> FitResult:
    """Fit one family to B curves at once; the best of ``restarts`` starts per curve.

    Args:
      family: a name in ``FAMILIES`` or a ``CurveFamily``.
      data: sequence of ``LearningCurve`` or (sizes, accuracy) pairs (sizes in samples).
      restarts, steps, learning_rate, seed: optimizer settings.
      weighting: "inverse_variance" (from a ``LearningCurve``'s std and count; uniform for bare
        pairs) or "uniform".

    Returns:
      ``FitResult`` whose curve leaves have a leading axis B (``unstack_curve(result.curve, b)``).
    """
    fam = FAMILIES[family] if isinstance(family, str) else family
    pairs, x, y, w = _as_pairs(data, weighting)
    rng = np.random.default_rng(seed)
    inits = [fam.init(rng, s, a) for s, a in pairs for _ in range(restarts)]
    fitted = _fit_runs(fam.build, inits, x, y, np.repeat(w, restarts, axis=0), steps, learning_rate, polish)
    theta, mse = _best(*fitted, len(pairs))
    with _precision.float64():
        return FitResult(_host(jax.vmap(fam.build)(jnp.asarray(theta))), mse)


def _best(theta, mse, curves: int):
    """The run of least finite MSE per curve, of runs grouped by curve: (theta (curves, ...), mse (curves,))."""
    mse = np.asarray(mse).reshape(curves, -1)
    mse = np.where(np.isfinite(mse), mse, np.inf)
    rows, best = np.arange(curves), np.argmin(mse, axis=1)
    pick = lambda t: np.asarray(t).reshape((curves, mse.shape[1]) + np.shape(t)[1:])[rows, best]  # noqa: E731
    return jax.tree_util.tree_map(pick, theta), mse[rows, best]


def _fit_one(fit_batch: Callable, sizes_or_curve, accuracy, options: dict) -> FitResult:
    """``fit_batch`` of one curve, given as a curve or as (sizes, accuracy), unbatched."""
    item = sizes_or_curve if accuracy is None else (sizes_or_curve, accuracy)
    result = fit_batch([item], **options)
    return FitResult(unstack_curve(result.curve, 0), float(result.mse[0]))


def fit_family(family: str | CurveFamily, sizes_or_curve, accuracy=None, **options) -> FitResult:
    """Fit one family to one curve: ``fit_family(name, curve)`` or ``fit_family(name, sizes, acc)``."""
    return _fit_one(functools.partial(fit_family_batch, family), sizes_or_curve, accuracy, options)


def unstack_curve(curve, index: int):
    """Curve ``index`` of a batch of curves (leading axis on every leaf)."""
    return _host(jax.tree_util.tree_map(lambda a: np.asarray(a)[index], curve))


# ---------------------------------------------------------------------------- the learned curve
@functools.lru_cache(maxsize=None)  # one function per setting, so the jit cache hits
def _member_build(min_width: float, cap: float):
    def build(theta):  # theta: (logits, centers, log_widths, raw_asymptote) of one member
        return LearnedAccuracy(*(t[None] for t in theta), cap=cap, min_width=min_width)

    return build


def _learned_init(rng, x, y, components: int, cap: float):
    """Centres spread over (and a quarter beyond) the observed log sizes; wide components.

    Wide starting widths (1 to 3 half-spans of the data in z) were chosen on a development set of
    300 LCDB curves disjoint from the benchmark's: narrow starts extrapolate worse (flatten early).
    """
    z = np.log1p(x)
    lo, hi = z[0], z[-1]
    span = max(hi - lo, 1.0)
    centers = np.sort(rng.uniform(lo - 0.25 * span, hi + 0.25 * span, components))
    log_widths = np.log(rng.uniform(1.0, 3.0, components) * span / 2.0)
    logits = rng.normal(0.0, 0.1, components)
    return logits, centers, log_widths, np.asarray(_logit(_top(rng, y) / cap))


#: (B, n) values of a batch of curves (leaves with a leading B) at their own (B, n) sizes: one program.
_batched_values = jit(jax.vmap(lambda curve, sizes: curve(sizes)))


def fit_learned_batch(data, members: int = 8, components: int = 3, steps: int = 3000, learning_rate: float = 0.05,
                      bootstrap: bool = True, cap: float = 1.0, min_width: float = 0.05, seed: int = 0,
                      weighting: str = "inverse_variance", polish: int = 0) -> FitResult:
    """Fit a ``LearnedAccuracy`` ensemble to each of B curves.

    Each of the M members starts from its own random initialization and, with ``bootstrap``,
    sees its own Bayesian-bootstrap weights (Dirichlet(1, ..., 1) over the observed sizes, Rubin
    1981) on top of the ``weighting``: the members' spread is then an uncertainty band.

    Args:
      data: sequence of ``LearningCurve`` or (sizes, accuracy) pairs (sizes in samples).
      members: M. components: K logistic components per member.
      steps, learning_rate, seed: Adam settings.
      bootstrap: reweight the data per member (else members differ only by their start).
      cap: upper bound on the asymptote (static). min_width: floor on the widths (static).
      weighting: "inverse_variance" (1 / (se^2 + SE_FLOOR^2) from a ``LearningCurve``'s std and
        count; uniform for bare pairs) or "uniform".

    Returns:
      ``FitResult``: a batched ``LearnedAccuracy`` (leaves (B, M, K) and (B, M)) and (B,) the
      ensemble mean's weighted MSE on the data.
    """
    pairs, x, y, m = _as_pairs(data, weighting)
    rng = np.random.default_rng(seed)
    inits = [_learned_init(rng, s, a, components, cap) for s, a in pairs for _ in range(members)]
    w = np.repeat(m, members, axis=0)
    if bootstrap:
        w = w * rng.exponential(1.0, size=w.shape)  # normalized exponentials = Dirichlet(1) weights
    theta, _ = _fit_runs(_member_build(min_width, cap), inits, x, y, w, steps, learning_rate, polish)
    leaves = [np.asarray(t).reshape((len(pairs), members) + np.shape(t)[1:]) for t in theta]
    with _precision.float64():
        curve = LearnedAccuracy(*leaves, cap=cap, min_width=min_width)
        pred = np.asarray(_batched_values(curve, jnp.asarray(x)))
    mse = np.sum(m * (pred - y) ** 2, axis=1) / np.sum(m, axis=1)
    return FitResult(_host(curve), mse)


def fit_learned(sizes_or_curve, accuracy=None, **options) -> FitResult:
    """Fit one ``LearnedAccuracy`` ensemble to one curve: ``fit_learned(curve)`` or ``fit_learned(sizes, acc)``."""
    return _fit_one(fit_learned_batch, sizes_or_curve, accuracy, options)


def distill(curve: LearnedAccuracy, components: int = 4, points: int = 256, restarts: int = 8, steps: int = 2000,
            polish: int = 300, learning_rate: float = 0.05, seed: int = 0) -> FitResult:
    """A one-member ``LearnedAccuracy`` that matches an ensemble's mean curve (cheaper to evaluate).

    An ensemble of M members with K components costs M K tanh per point; a contract solve
    evaluates the curve on every outcome of every trial contract, so for solving, the mean curve
    is refitted as one member with ``components`` logistics on ``points`` values of z = log(1 + x)
    spread over [0, max(mu + 6 s)] (beyond it every component is within 0.25 % of saturation).
    The band stays with the full ensemble.

    Returns:
      ``FitResult``: the one-member curve and the mean squared deviation from the ensemble mean
      on the grid (check ``max |distilled - curve|`` on your own range if it matters).
    """
    curve.validate()
    with _precision.float64():
        widths = curve.min_width + np.exp(np.asarray(curve.log_widths, np.float64))
        z_max = float(np.max(np.asarray(curve.centers, np.float64) + 6.0 * widths))
        x = np.expm1(np.linspace(0.0, max(z_max, 1.0), points))
        y = np.asarray(jit(lambda c, v: c(v))(curve, jnp.asarray(x)))
    rng = np.random.default_rng(seed)
    inits = [_learned_init(rng, x[1:], y[1:], components, curve.cap) for _ in range(restarts)]
    fitted = _fit_runs(_member_build(curve.min_width, curve.cap), inits, x[None], y[None],
                       np.ones((restarts, points)), steps, learning_rate, polish)
    leaves, mse = _best(*fitted, 1)
    return FitResult(_host(LearnedAccuracy(*leaves, cap=curve.cap, min_width=curve.min_width)), float(mse[0]))
