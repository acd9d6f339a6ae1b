"""Figures: a solved contract (the paper's Sec. 6.2 figures), the Sec. 6.1 sweep, learning-curve
fits. matplotlib, Agg backend.

* ``plot_menu``: the menu (m_i, t_i) against the train-alone curve v(a(q m)), with each type's
  reservation line t = f_i + c_i m and isoprofit line through its own item t = u_i + c_i m.
* ``plot_reward_distributions``: each type's law of v(r_i(n)) given it is present, under
  proportional assignment, with its mean t_i.
* ``plot_sweep``: the Sec. 6.1 heatmaps over (p_1, N).
* ``draw_fits`` / ``plot_fits``: learning-curve data with error bars, fitted curves, the learned
  curve's band.
"""

from __future__ import annotations

from typing import Any, Mapping

import matplotlib

matplotlib.use("Agg")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import _precision  # noqa: E402
from ..expectation import conditional_weights, enumerate_outcomes  # noqa: E402
from ..mechanism import proportional_assignment  # noqa: E402


def _colors(num: int):
    cmap = plt.get_cmap("viridis")
    return [cmap(x) for x in np.linspace(0.05, 0.85, num)]


def plot_menu(solution, ax=None, title: str | None = None):
    """Contract menu against the curve v(a(m)); returns the Axes."""
    p = solution.problem
    m = np.asarray(solution.contributions, float)
    t = np.asarray(solution.rewards, float)
    f = np.asarray(p.reservation_utility, float)
    u = np.asarray(solution.utilities, float)
    c = np.asarray(p.costs, float)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.8))
    m_max = 1.3 * max(float(np.max(m)), float(np.max(p.reservation_data)), 1.0)
    # Contributions can span orders of magnitude (scenario 3: 1e2 to 1e4); use a log axis then.
    log_axis = float(np.max(m)) > 20.0 * max(float(np.min(m)), 1e-9)
    grid = np.geomspace(1e-2 * max(float(np.min(m)), 1.0), m_max, 600) if log_axis else np.linspace(0.0, m_max, 600)
    with _precision.float64():
        curve = np.asarray(jax.jit(lambda pr, x: pr.valuation(pr.accuracy(x)))(p, jnp.asarray(grid)))
    ax.plot(grid, curve, color="black", lw=1.6, label="v(a(m)) (train alone)")
    colors = _colors(p.num_types)
    for i in range(p.num_types):
        ax.plot(grid, f[i] + c[i] * grid, color=colors[i], ls=":", lw=1.0)
        ax.plot(grid, u[i] + c[i] * grid, color=colors[i], ls="--", lw=1.0)
        ax.scatter([m[i]], [t[i]], color=colors[i], s=60 - 8 * i, zorder=5, edgecolor="black",
                   label=f"type {i + 1}: c={c[i]:.3g}")
    if log_axis:
        ax.set_xscale("log")
        ax.set_xlim(grid[0], m_max)
    else:
        ax.set_xlim(0.0, m_max)
    ax.set_ylim(0.0, 1.1 * max(float(np.max(curve)), float(np.max(t))))
    ax.set_xlabel("data contribution m (units)")
    ax.set_ylabel("value (money)")
    ax.set_title(title or "Contract menu: items (m_i, t_i); dotted: reservation t = f_i + c_i m; dashed: isoprofit")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_reward_distributions(solution, ax=None, title: str | None = None):
    """Each type's distribution of realized reward value v(r_i(n)) given n_i >= 1; returns the Axes."""
    p = solution.problem
    with _precision.float64():
        counts = enumerate_outcomes(p.num_participants, p.num_types)
        _, weights = conditional_weights(jnp.asarray(counts), jnp.asarray(p.probs), p.participants, p.conditioning)
        real = proportional_assignment(jnp.asarray(solution.contributions), jnp.asarray(solution.rewards),
                                       jnp.asarray(solution.reward_bounds), p, jnp.asarray(counts))
        values, weights = np.asarray(real.reward_values), np.asarray(weights)
    colors = _colors(p.num_types)
    lo, hi = float(np.min(values[weights > 1e-12])), float(np.max(values))
    bins = np.linspace(lo - 1e-9, hi + 1e-9, 50)
    if ax is None:
        _, ax = plt.subplots(p.num_types, 1, figsize=(7, 1.3 + 1.1 * p.num_types), sharex=True, squeeze=False)
        ax = ax[:, 0]
    axes = np.atleast_1d(ax)
    for i in range(p.num_types):
        a = axes[i] if axes.size == p.num_types else axes[0]
        a.hist(values[:, i], bins=bins, weights=weights[:, i], color=colors[i], alpha=0.8,
               label=f"type {i + 1} (c={float(p.costs[i]):.3g}): mean t={float(solution.rewards[i]):.3f}")
        a.axvline(float(solution.rewards[i]), color="black", ls="--", lw=0.8)
        a.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("realized reward value v(r_i(n)) (money)")
    axes[0].set_title(title or "Reward distributions under proportional assignment (P given type present)")
    return ax


def save_solution_figures(solution, folder, stem: str) -> list[str]:
    """Write ``<stem>_menu.png`` and ``<stem>_rewards.png`` into ``folder``; return the paths."""
    import os

    os.makedirs(folder, exist_ok=True)
    paths = []
    num = solution.problem.num_types
    for name, fn in (("menu", plot_menu), ("rewards", plot_reward_distributions)):
        if name == "menu":
            fig, ax = plt.subplots(figsize=(7, 4.8))
        else:
            fig, ax = plt.subplots(num, 1, figsize=(7, 1.3 + 1.1 * num), sharex=True, squeeze=False)
            ax = ax[:, 0]
        fn(solution, ax=ax, title=f"{stem}: {name}")
        path = os.path.join(folder, f"{stem}_{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _heatmap(ax, result, values, title, cmap="viridis"):
    extent = [result.p1[0], result.p1[-1], result.participants[0], result.participants[-1]]
    image = ax.imshow(values, origin="lower", aspect="auto", extent=extent, cmap=cmap, interpolation="nearest")
    ax.set_xlabel("p_1 (probability of the costlier type)")
    ax.set_ylabel("N (participants)")
    ax.set_title(title, fontsize=10)
    plt.colorbar(image, ax=ax)


def plot_sweep(result, out_dir: str) -> list[str]:
    """The Sec. 6.1 figures as heatmaps over (p_1, N): contracts (m, t per type), and welfare
    (information rent of the cheaper type, information cost). Returns the PNG paths."""
    import os

    paths = []
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    for i in range(2):
        _heatmap(axes[0, i], result, result.contributions[..., i], f"m_{i + 1} (units of data), c_{i + 1} = {result.costs[i]:g}")
        _heatmap(axes[1, i], result, result.rewards[..., i], f"t_{i + 1} (money), c_{i + 1} = {result.costs[i]:g}")
    fig.suptitle("Optimal contract under incomplete information (Sec. 6.1)")
    paths.append(os.path.join(out_dir, "sweep_contracts.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), constrained_layout=True)
    _heatmap(axes[0], result, result.information_rents[..., 1], "information rent of type 2 (money)", "magma")
    _heatmap(axes[1], result, result.information_cost, "information cost E[v(A_CI)] - E[v(a(n.m*))]", "magma")
    for k in range(0, result.participants.size, max(1, result.participants.size // 5)):
        axes[2].plot(result.p1, result.information_cost[k], label=f"N = {result.participants[k]}")
    axes[2].set_xlabel("p_1")
    axes[2].set_ylabel("information cost (money)")
    axes[2].legend(fontsize=8)
    axes[2].set_title("information cost against p_1", fontsize=10)
    fig.suptitle("Welfare: incomplete vs complete information (Sec. 6.1)")
    paths.append(os.path.join(out_dir, "sweep_welfare.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


def draw_fits(ax, data, curves: Mapping[str, Any], fit_up_to: float | None = None, extend: float = 4.0,
              coverage: float = 0.9):
    """Draw on a matplotlib ``ax``: the data (mean +- std), each curve, and bands where a curve has one.

    Args:
      data: a ``LearningCurve``. curves: name -> curve (x in samples).
      fit_up_to: draw the cut-off between fitted and held-out sizes. extend: x range up to
        ``extend`` times the largest size. coverage: band coverage.
    """
    grid = np.geomspace(max(1.0, data.sizes[0] / 2), data.sizes[-1] * extend, 300)
    ax.errorbar(data.sizes, data.mean, yerr=data.std, fmt="o", ms=3.5, color="black", ecolor="0.6", lw=1,
                label=f"data ({data.key})", zorder=5)
    for name, curve in curves.items():
        with jax.enable_x64(True):
            values = np.asarray(jax.jit(lambda c, x: c(x))(curve, grid))
            (line,) = ax.plot(grid, values, lw=1.6, label=name)
            if hasattr(curve, "band") and getattr(curve, "num_members", 1) > 1:
                lo, hi = (np.asarray(b) for b in jax.jit(lambda c, x: c.band(x, coverage))(curve, grid))
                ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, lw=0,
                                label=f"{name}: {int(round(100 * coverage))}% band")
    if fit_up_to is not None:
        ax.axvline(fit_up_to, color="0.4", ls="--", lw=1, label="fit cut-off")
    ax.set_xscale("log")
    ax.set_xlabel("training-set size (samples)")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_fits(data, curves: Mapping[str, Any], path, fit_up_to: float | None = None, **options) -> str:
    """Write a one-panel PNG of ``draw_fits`` to ``path``; returns the path."""
    fig, ax = plt.subplots(figsize=(6, 4))
    draw_fits(ax, data, curves, fit_up_to, **options)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
