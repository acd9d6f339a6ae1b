"""Figures of learning-curve fits: data with error bars, fitted curves, the learned curve's band."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def draw_fits(ax, data, curves: Mapping[str, Any], fit_up_to: float | None = None, extend: float = 4.0,
              coverage: float = 0.9):
    """Draw on a matplotlib ``ax``: the data (mean +- std), each curve, and bands where a curve has one.

    Args:
      data: a ``LearningCurve``. curves: name -> curve (x in samples).
      fit_up_to: draw the cut-off between fitted and held-out sizes. extend: x range up to
        ``extend`` times the largest size. coverage: band coverage.
    """
    import jax

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    draw_fits(ax, data, curves, fit_up_to, **options)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
