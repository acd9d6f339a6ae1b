"""Contracts with a learned accuracy curve: the paper's Sec. 6.2 scenarios on a real learning curve.

1. Data: held-out accuracy of logistic regression on scikit-learn's digits at 16 ... 1347
   training samples (20 random splits), shipped with diffcontract (``sklearn:digits:logreg``).
2. Curves fitted to it, x in samples (one unit of data = one sample):
   * ``learned``: ``LearnedAccuracy`` ensemble (8 members x 3 logistic components, Bayesian
     bootstrap), distilled to one member for solving; its members give the band;
   * ``SGB fit``: the paper's SGB family a_opt - (sqrt(2k(2 + ln(s x / k))) + 4) / sqrt(s x),
     with a_opt, k and the unit scale s fitted to the same data;
   * ``pow4`` for reference.
3. The Sec. 6.2 scenarios (N = 10, p = 0.2 each, v = 100 a, the paper's costs per unit of data)
   solved with each curve (exact solver), and with each ensemble member (the contract's spread
   under the curve's uncertainty), next to the paper's own SGB(1, 1) contracts.

Run:  python examples/learned_contracts.py [--out examples/out]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

import diffcontract as dc
from diffcontract.analysis.scenarios import PAPER_SCENARIOS, paper_scenario
from diffcontract.curves import GeneralizationBound, distill, fit_family, fit_learned
from diffcontract.data import sklearn_curve


def fit_curves(data, seed: int = 0) -> tuple[dict, object]:
    ensemble = fit_learned(data, seed=seed).curve
    curves = {"learned": distill(ensemble, seed=seed).curve, "SGB fit": fit_family("sgb", data, seed=seed).curve,
              "pow4": fit_family("pow4", data, seed=seed).curve}
    return curves, ensemble


def describe(solution) -> str:
    groups = solution.pooled_groups()
    parts = []
    for g in groups:
        types = f"{g[0] + 1}" if len(g) == 1 else f"{g[0] + 1}-{g[-1] + 1}"
        parts.append(f"type {types}: m={solution.m[g[0]]:.1f}")
    return "; ".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out"))
    parser.add_argument("--no-members", action="store_true", help="skip the per-member solves (the band)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()

    data = sklearn_curve("digits", "logreg")
    curves, ensemble = fit_curves(data)
    print(f"data: {data.key}, {data.sizes.size} sizes from {data.sizes[0]:.0f} to {data.sizes[-1]:.0f} samples")
    with jax.enable_x64(True):
        for name, c in curves.items():
            rmse = np.sqrt(np.mean((np.asarray(c(data.sizes)) - data.mean) ** 2))
            print(f"  {name:8s} train RMSE {rmse:.4f}   a(100) = {float(c(100.0)):.4f}   "
                  f"a(5000) = {float(c(5000.0)):.4f}   a_max = {float(np.asarray(c.a_max)):.4f}")

    all_curves = {"paper SGB(1,1)": GeneralizationBound(), **curves}
    solutions = {}
    print("\nSec. 6.2 scenarios (N = 10, p = 0.2, v = 100 a; learned/SGB fit/pow4 in samples, paper SGB in its units)")
    for number, spec in PAPER_SCENARIOS.items():
        print(f"\nScenario {number}: costs {np.round(spec['costs'], 4).tolist()}")
        for name, curve in all_curves.items():
            sol = dc.solve(paper_scenario(number, accuracy=curve), method="exact")
            solutions[number, name] = sol
            print(f"  {name:15s} {sol.status_name:10s} E[v(a)] = {sol.expected_value:8.3f}   {describe(sol)}")
        if not args.no_members:
            values = []
            for j in range(ensemble.num_members):
                sol = dc.solve(paper_scenario(number, accuracy=ensemble.member(j)), method="exact")
                values.append((sol.expected_value, float(np.sum(sol.m)), sol.status_name))
            ev = np.array([v[0] for v in values])
            ms = np.array([v[1] for v in values])
            ok = sum(v[2] == "converged" for v in values)
            print(f"  {'members':15s} E[v(a)] {ev.min():.3f} .. {ev.max():.3f}; sum of m {ms.min():.0f} .. "
                  f"{ms.max():.0f} ({ok}/{len(values)} converged)")
            solutions[number, "members"] = (ev, ms)

    path = figure(data, curves, ensemble, solutions, os.path.join(args.out, "learned_contracts.png"))
    print(f"\nfigure: {path}\ndone in {time.perf_counter() - start:.0f} s")
    return 0


def figure(data, curves, ensemble, solutions, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffcontract.analysis.plots import draw_fits

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    draw_fits(axes[0], data, {"learned (ensemble)": ensemble, "SGB fit": curves["SGB fit"], "pow4": curves["pow4"]},
              extend=8.0)
    axes[0].set_title("digits / logistic regression: data, fits, 90% band")
    names = ["learned", "SGB fit", "pow4"]
    for k, number in enumerate((1, 2, 3)):
        ax = axes[k + 1]
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            sol = solutions[number, name]
            ax.bar(np.arange(5) + (j - 1) * width, sol.m, width, label=f"{name}: E[v]={sol.expected_value:.2f}")
        if number == 3:
            ax.set_yscale("log")  # contributions span two decades there
        else:
            low = min(float(np.min(solutions[number, n].m)) for n in names)
            ax.set_ylim(0.9 * low, None)
        ax.set_xticks(range(5), [f"type {i + 1}" for i in range(5)])
        ax.set_ylabel("contribution m_i (samples)")
        ax.set_title(f"scenario {number}: contracts")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    sys.exit(main())
