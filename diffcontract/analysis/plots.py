"""Figures for a paper: a solved contract (the paper's Sec. 6.2), the Sec. 6.1 sweep, learning-curve fits.

Functions named ``*_figure(s)`` build ``matplotlib.figure.Figure`` objects (tests inspect them); the
``save_*`` / ``plot_*`` functions write them as PNG, PDF or SVG (``fmt``). Figures are made without
``pyplot``, so no backend is selected and a user's own matplotlib set-up is left alone.

* ``menu_figure`` / ``draw_menu``: the menu (m_i, t_i), one marker per pooled group, against the
  train-alone curve v(a(q m)), with each type's reservation line t = f_i + c_i m and isoprofit line
  through its own item t = u_i + c_i m.
* ``reward_figure``: each type's law of v(r_i(n)) given it is present, under proportional assignment
  (a discrete law: drawn as point masses), with its mean t_i; one shared probability scale.
* ``sweep_figures`` / ``plot_sweep``: the Sec. 6.1 heatmaps over (p_1, N) and information cost.
* ``fit_figure`` / ``draw_fits`` / ``plot_fits``: learning-curve data with error bars, fitted curves,
  the learned curve's band.

Every drawn line, marker, bar and band has a legend entry; heatmaps have a labelled colorbar; money is
in the valuation's units (v), data in units of data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from .._jit import jit
from .. import _precision
from ..expectation import conditional_weights, enumerate_outcomes
from ..mechanism import proportional_assignment

#: File formats the save functions write (``fmt``).
FORMATS = ("png", "pdf", "svg")
#: PNG resolution: print quality at the figure sizes used here (vector formats ignore it).
RASTER_DPI = 200
#: Upper axis limit over the highest data point, so no line or marker touches the frame.
HEADROOM = 1.08
#: Above this many distinct reward values per type, a law is drawn as a histogram, not as stems.
MAX_STEMS = 150
#: Number of histogram bins when a law has more than ``MAX_STEMS`` atoms.
HISTOGRAM_BINS = 60
#: Reward values closer than this (relative to the largest) are one atom: float noise of one value.
ATOM_RTOL = 1e-9
#: The money unit in axis labels.
MONEY = "money, units of $v$"
_LEGEND_FONT = 7.5
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def check_format(fmt: str) -> str:
    """``fmt`` lower-cased if it is one of ``FORMATS``; else ``ValueError`` naming it."""
    name = fmt.lower() if isinstance(fmt, str) else fmt
    if name not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    return name


def _save(fig: Figure, path, fmt: str) -> str:
    fig.savefig(path, format=fmt, dpi=RASTER_DPI, bbox_inches="tight", pad_inches=0.05)
    return str(path)


def _colors(num: int) -> list:
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.05, 0.85, num)]


def _padded(lo: float, hi: float, fraction: float = 0.04) -> tuple[float, float]:
    """(lo, hi) widened by ``fraction`` of the span; a point (lo == hi) by 1 % of its size."""
    size = max(abs(lo), abs(hi), 1.0)
    pad = 0.01 * size if hi - lo <= 1e-12 * size else fraction * (hi - lo)
    return lo - pad, hi + pad


def _finish(ax, legend: bool = True, title: str | None = None) -> None:
    """Legend outside the axes (it cannot cover data), no offset on linear tick labels."""
    if legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=_LEGEND_FONT,
                  frameon=False, title=title, title_fontsize=_LEGEND_FONT)
    for axis in (ax.xaxis, ax.yaxis):
        if isinstance(axis.get_major_formatter(), ScalarFormatter):
            axis.get_major_formatter().set_useOffset(False)


def _group_label(group, costs) -> str:
    """'type 5 (c = 0.04)' for one type, 'types 1-4 (pooled)' for a pooled run (0-based indices in)."""
    if len(group) == 1:
        return f"type {group[0] + 1} ($c$ = {float(costs[group[0]]):.3g})"
    return f"types {group[0] + 1}-{group[-1] + 1} (pooled)"


def _words(stem: str) -> str:
    """A file stem as words: 'scenario1' -> 'Scenario 1', 'my_run-2' -> 'My run 2'."""
    text = re.sub(r"(?<=[A-Za-z])(?=\d)", " ", stem).replace("_", " ").replace("-", " ")
    return text[:1].upper() + text[1:]


def draw_menu(ax, solution, title: str | None = None):
    """Draw the contract menu on ``ax`` against the train-alone curve v(a(q m)); returns ``ax``.

    Args:
      ax: a matplotlib Axes.
      solution: a ``Solution`` (canonical type order, type 1 the costliest).
      title: the axes title (default "Contract menu").
    """
    p = solution.problem
    m, t, u, f, c = (np.asarray(x, float) for x in (solution.contributions, solution.rewards, solution.utilities,
                                                     solution.reservation_utilities, p.costs))
    with _precision.float64():
        m_max = 1.3 * max(float(np.max(m)), float(np.max(np.asarray(p.reservation_data))), 1.0)
        # Contributions can span orders of magnitude (scenario 3: 1e2 to 1e4); use a log axis then.
        log_axis = float(np.max(m)) > 20.0 * max(float(np.min(m)), 1e-9)
        grid = np.geomspace(1e-2 * max(float(np.min(m)), 1.0), m_max, 600) if log_axis else np.linspace(0.0, m_max, 600)
        curve = np.asarray(jit(lambda pr, x: pr.valuation(pr.accuracy(x)))(p, jnp.asarray(grid)))
    top = HEADROOM * max(float(np.max(curve)), float(np.max(t)))
    ax.plot(grid, curve, color="black", lw=1.6, label="value of training alone, $v(a(m))$")
    colors = _colors(p.num_types)
    for i in range(p.num_types):
        k = i + 1
        for base, style, text in ((f[i], ":", f"reservation line $t = f_{{{k}}} + c_{{{k}}} m$"),
                                  (u[i], "--", f"isoprofit line $t = u_{{{k}}} + c_{{{k}}} m$")):
            line = base + c[i] * grid
            keep = line <= top  # end each line at the top of the axes instead of clipping it there
            ax.plot(grid[keep], line[keep], color=colors[i], ls=style, lw=1.0,
                    label=f"{_group_label([i], c)}: {text}")
    for j, group in enumerate(solution.pooled_groups()):
        i = group[0]
        ax.plot([m[i]], [t[i]], ls="none", marker=_MARKERS[j % len(_MARKERS)], ms=8, mfc=colors[i], mec="black",
                zorder=5, label=f"{_group_label(group, c)}: menu item $(m, t)$")
    if log_axis:
        ax.set_xscale("log")
    ax.set(xlim=(grid[0], m_max), ylim=(0.0, top), xlabel="data contribution $m$ (units of data)",
           ylabel=f"reward value $t$ ({MONEY})", title=title or "Contract menu")
    _finish(ax)
    return ax


def menu_figure(solution, caption: str | None = None) -> Figure:
    """One-panel figure of ``draw_menu``; ``caption`` (e.g. "Scenario 1") starts the title."""
    fig = Figure(figsize=(10.0, 5.0), layout="constrained")
    draw_menu(fig.add_subplot(), solution, f"{caption}: contract menu" if caption else None)
    return fig


def _reward_laws(solution) -> tuple[np.ndarray, np.ndarray]:
    """(values, weights): (K, I) v(r_i(n)) in money and (K, I) P(n | type i present) (0 where absent)."""
    p = solution.problem
    with _precision.float64():
        counts = jnp.asarray(enumerate_outcomes(p.num_participants, p.num_types))
        _, weights = conditional_weights(counts, jnp.asarray(p.probs), p.participants, p.conditioning)
        real = proportional_assignment(jnp.asarray(solution.contributions), jnp.asarray(solution.rewards),
                                       jnp.asarray(solution.reward_bounds), p, counts)
        return np.asarray(real.reward_values), np.asarray(weights)


def _atoms(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The discrete law of ``values`` under ``weights``: (A,) distinct values ascending, (A,) probabilities."""
    keep = weights > 0
    order = np.argsort(values[keep])
    v, w = values[keep][order], weights[keep][order]
    new = np.concatenate([[True], np.diff(v) > ATOM_RTOL * max(float(np.max(np.abs(v))), 1.0)])
    return v[new], np.bincount(np.cumsum(new) - 1, w)


def _law_groups(solution, laws) -> list[list[int]]:
    """Pooled groups split where two types' reward laws differ (0-based, canonical order)."""
    def same(a, b):
        return a[0].size == b[0].size and all(np.allclose(x, y, rtol=ATOM_RTOL, atol=0.0) for x, y in zip(a, b))

    groups = []
    for group in solution.pooled_groups():
        for i in group:
            if groups and groups[-1][0] in group and same(laws[groups[-1][0]], laws[i]):
                groups[-1].append(i)
            else:
                groups.append([i])
    return groups


def reward_figure(solution, caption: str | None = None) -> Figure:
    """Each type's law of realized reward value v(r_i(n)) given it is present, one panel per group of
    types with the same law; point masses as stems, one shared probability scale and value range.

    Args:
      solution: a ``Solution``. caption: e.g. "Scenario 1", starts the figure title.
    Returns:
      a ``Figure`` whose panels share x and y limits (money; probability).
    """
    p, t = solution.problem, np.asarray(solution.rewards, float)
    values, weights = _reward_laws(solution)
    laws = [_atoms(values[:, i], weights[:, i]) for i in range(p.num_types)]
    groups = _law_groups(solution, laws)
    stems = all(laws[g[0]][0].size <= MAX_STEMS for g in groups)
    lo, hi = _padded(min(float(laws[g[0]][0][0]) for g in groups), max(float(laws[g[0]][0][-1]) for g in groups))
    bins = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
    heights = [laws[g[0]][1] if stems else np.histogram(values[:, g[0]], bins, weights=weights[:, g[0]])[0]
               for g in groups]
    fig = Figure(figsize=(8.0, 1.0 + 1.9 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), 1, squeeze=False, sharey=True)[:, 0]
    colors = _colors(p.num_types)
    for ax, group, height in zip(axes, groups, heights):
        i = group[0]
        if stems:
            stem = ax.stem(laws[i][0], height, basefmt=" ", label="probability of each value")
            stem.markerline.set(color=colors[i], markersize=4, clip_on=False)  # whole dots at probability ~0
            stem.stemlines.set(color=colors[i], linewidth=1.2)
        else:
            ax.stairs(height, bins, fill=True, color=colors[i], label="probability per bin")
        ax.axvline(t[i], color="black", ls="--", lw=0.9, label=f"mean = promised reward $t$ = {t[i]:.4g}")
        ax.set(xlim=(lo, hi), ylim=(0.0, HEADROOM * max(float(np.max(h)) for h in heights)),
               xlabel=f"realized reward value $v(r_i(n))$ ({MONEY})",
               ylabel="probability\n(type present)" if stems else "probability per bin\n(type present)")
        ax.set_title(_group_label(group, p.costs), fontsize=10)
        _finish(ax)
    lead = f"{caption}: realized" if caption else "Realized"
    fig.suptitle(f"{lead} reward values under proportional assignment, given the type is present")
    return fig


def solution_figures(solution, caption: str | None = None) -> dict[str, Figure]:
    """{"menu": ``menu_figure``, "rewards": ``reward_figure``} of one solved contract."""
    return {"menu": menu_figure(solution, caption), "rewards": reward_figure(solution, caption)}


def save_solution_figures(solution, folder, stem: str, fmt: str = "png", caption: str | None = None) -> list[str]:
    """Write ``<stem>_menu.<fmt>`` and ``<stem>_rewards.<fmt>`` into ``folder``; return the paths.

    Args:
      solution: a ``Solution``. folder: output folder (created). stem: file-name stem.
      fmt: "png", "pdf" or "svg". caption: words starting the titles (default: ``stem`` as words,
        "scenario1" -> "Scenario 1").
    """
    fmt = check_format(fmt)
    os.makedirs(folder, exist_ok=True)
    figures = solution_figures(solution, caption or _words(stem))
    return [_save(fig, os.path.join(folder, f"{stem}_{name}.{fmt}"), fmt) for name, fig in figures.items()]


def _edges(x) -> np.ndarray:
    """Cell edges around grid points x (midpoints; a lone point gets a cell of 20 % of its size)."""
    x = np.asarray(x, float)
    if x.size == 1:
        return x[0] + 0.1 * max(abs(float(x[0])), 1.0) * np.array([-1.0, 1.0])
    mid = 0.5 * (x[1:] + x[:-1])
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def _heatmap(ax, result, values, title: str, norm, cmap: str = "viridis"):
    """A heatmap of (N, p_1) ``values`` on ``ax``; returns the mesh (its colorbar is the caller's)."""
    p1_edges = np.clip(_edges(result.p1), 0.0, 1.0)  # a probability: no cell beyond [0, 1]
    mesh = ax.pcolormesh(p1_edges, _edges(result.participants), values, cmap=cmap, norm=norm)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # N is a count
    ax.set(xlabel="probability $p_1$ of type 1", ylabel="number of participants $N$")
    ax.set_title(title, fontsize=10)
    _finish(ax, legend=False)
    return mesh


def _norm(values) -> Normalize:
    return Normalize(*_padded(float(np.nanmin(values)), float(np.nanmax(values)), 0.0))


def _sweep_contracts_figure(result) -> Figure:
    """2 x 2 heatmaps: contributions (top) and rewards (bottom) per type; one color scale per row."""
    fig = Figure(figsize=(10.0, 7.5), layout="constrained")
    axes = fig.subplots(2, 2, sharey=True)
    rows = ((result.contributions, "contribution", "m", "units of data"), (result.rewards, "reward", "t", MONEY))
    for row, (values, what, symbol, unit) in enumerate(rows):
        norm = _norm(values)  # one scale per row: the two types' panels are compared
        for i in range(2):
            mesh = _heatmap(axes[row, i], result, values[..., i],
                            f"type {i + 1} ($c_{i + 1}$ = {result.costs[i]:g}): {what} ${symbol}_{i + 1}$", norm)
        _finish(fig.colorbar(mesh, ax=list(axes[row]), label=f"{what} ${symbol}$ ({unit})").ax, legend=False)
    fig.suptitle("Optimal contract under incomplete information (paper Sec. 6.1)")
    return fig


def _sweep_welfare_figure(result) -> Figure:
    """Information rent of type 2 and information cost over (p_1, N), and the cost against p_1 by N."""
    fig = Figure(figsize=(15.0, 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = ((result.information_rents[..., 1], f"Information rent of type 2 ($c_2$ = {result.costs[1]:g})",
               "information rent $u_2 - f_2$"),
              (result.information_cost, "Information cost of incomplete information",
               r"$E[v(A_{CI})] - E[v(a(n \cdot m^*))]$"))
    for ax, (values, title, label) in zip(axes, panels):
        mesh = _heatmap(ax, result, values, title, _norm(values), cmap="magma")
        _finish(fig.colorbar(mesh, ax=ax, label=f"{label} ({MONEY})").ax, legend=False)
    ax = axes[2]
    for k in range(0, result.participants.size, max(1, result.participants.size // 5)):
        ax.plot(result.p1, result.information_cost[k], marker="o", ms=3, lw=1.2,
                label=f"$N$ = {result.participants[k]}")
    ax.set(ylim=_padded(float(np.nanmin(result.information_cost)), float(np.nanmax(result.information_cost))),
           xlabel="probability $p_1$ of type 1", ylabel=f"information cost ({MONEY})")
    ax.set_title("Information cost against $p_1$", fontsize=10)
    _finish(ax, title="participants")
    fig.suptitle("Welfare: incomplete against complete information (paper Sec. 6.1)")
    return fig


def sweep_figures(result) -> dict[str, Figure]:
    """{"sweep_contracts": contracts heatmaps, "sweep_welfare": rents and information cost} of a
    ``SweepResult`` (money in units of v, data in units of data)."""
    return {"sweep_contracts": _sweep_contracts_figure(result), "sweep_welfare": _sweep_welfare_figure(result)}


def plot_sweep(result, out_dir, fmt: str = "png") -> list[str]:
    """Write ``sweep_contracts.<fmt>`` and ``sweep_welfare.<fmt>`` into ``out_dir``; return the paths.

    Args:
      result: a ``SweepResult``. out_dir: existing folder. fmt: "png", "pdf" or "svg".
    """
    fmt = check_format(fmt)
    return [_save(fig, os.path.join(out_dir, f"{name}.{fmt}"), fmt) for name, fig in sweep_figures(result).items()]


def draw_fits(ax, data, curves: Mapping[str, Any], fit_up_to: float | None = None, extend: float = 4.0,
              coverage: float = 0.9, title: str | None = None):
    """Draw on a matplotlib ``ax``: the data (mean +- std), each curve, and bands where a curve has one.

    Args:
      data: a ``LearningCurve``. curves: name -> curve (x in samples).
      fit_up_to: draw the cut-off between fitted and held-out sizes. extend: x range up to
        ``extend`` times the largest size. coverage: band coverage.
      title: the axes title (default "Learning curve <data.key>").
    Returns:
      ``ax``.
    """
    grid = np.geomspace(max(1.0, data.sizes[0] / 2), data.sizes[-1] * extend, 300)
    ax.errorbar(data.sizes, data.mean, yerr=data.std, fmt="o", ms=3.5, color="black", ecolor="0.6", lw=1,
                label="observed accuracy (mean $\\pm$ 1 std over splits)", zorder=5)
    for name, curve in curves.items():
        with jax.enable_x64(True):
            values = np.asarray(jit(lambda c, x: c(x))(curve, grid))
            (line,) = ax.plot(grid, values, lw=1.6, label=f"fit: {name}")
            if hasattr(curve, "band") and getattr(curve, "num_members", 1) > 1:
                lo, hi = (np.asarray(b) for b in jit(lambda c, x: c.band(x, coverage))(curve, grid))
                ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, lw=0,
                                label=f"{name}: {int(round(100 * coverage))}% band")
    if fit_up_to is not None:
        ax.axvline(fit_up_to, color="0.4", ls="--", lw=1, label="fit cut-off (larger sizes held out)")
    ax.set(xscale="log", xlabel="training-set size (samples)", ylabel="held-out accuracy",
           title=title or f"Learning curve {data.key}")
    _finish(ax)
    return ax


def fit_figure(data, curves: Mapping[str, Any], fit_up_to: float | None = None, **options) -> Figure:
    """One-panel figure of ``draw_fits`` (``options``: extend, coverage, title)."""
    fig = Figure(figsize=(8.0, 4.2), layout="constrained")
    draw_fits(fig.add_subplot(), data, curves, fit_up_to, **options)
    return fig


def plot_fits(data, curves: Mapping[str, Any], path, fit_up_to: float | None = None, fmt: str | None = None,
              **options) -> str:
    """Write ``fit_figure`` to ``path``; returns the path written.

    Args:
      path: output file; a missing suffix gets ``.<fmt>``.
      fmt: "png", "pdf" or "svg"; default: the suffix of ``path`` (png if it has none). A ``fmt``
        that contradicts the suffix is a ``ValueError``.
      options: extend, coverage, title (``draw_fits``).
    """
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if fmt is None and suffix and suffix not in FORMATS:
        raise ValueError(f"path must end in one of {tuple('.' + f for f in FORMATS)} (or pass fmt), got {str(path)!r}")
    fmt = check_format(fmt if fmt is not None else suffix or "png")
    if suffix and suffix != fmt:
        raise ValueError(f"fmt {fmt!r} contradicts the suffix of path {str(path)!r}")
    return _save(fit_figure(data, curves, fit_up_to, **options), path if suffix else path.with_suffix("." + fmt), fmt)
