"""Solve time with learned curves vs the paper's SGB(1,1), on the Sec. 6.2 scenarios (exact solver).

Curves compared (contract x in units of data; for the learned curves one unit = one sample):

* ``SGB(1,1)``: the paper's curve, the reference time.
* ``learned~SGB (distilled)``: a ``LearnedAccuracy`` ensemble (8 members x 3 components) fitted to
  SGB(1,1) sampled at LCDB's sizes 16 * 2^(k/2), then ``distill``-ed to one member with 4
  components. Same problem geometry as SGB(1,1), so the ratio isolates the curve's cost.
* ``learned~SGB (ensemble)``: the same ensemble, not distilled.
* ``learned digits (distilled)``: fitted to the scikit-learn digits/logreg curve trained here.
  A different problem (other optimum, other iteration count): shown for information.

Times are warm (compiled code reused; median of ``--repeats`` solves); the first, cold solve of
each curve (compilation included) is reported separately.

Run:  python benchmarks/solve_time.py [--repeats 3] [--method exact]
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import diffcontract as dc
from diffcontract.analysis.scenarios import paper_scenario
from diffcontract.curves import GeneralizationBound, distill, fit_learned
from diffcontract.data import sklearn_curve


def curves(include_ensemble: bool = True) -> dict:
    sgb = GeneralizationBound()
    sizes = np.round(16.0 * 2.0 ** (np.arange(26) / 2.0))
    with jax.enable_x64(True):
        values = np.asarray(sgb(sizes))
    ensemble = fit_learned(sizes, values).curve
    out = {"SGB(1,1)": sgb, "learned~SGB (distilled)": distill(ensemble).curve}
    if include_ensemble:
        out["learned~SGB (ensemble)"] = ensemble
    out["learned digits (distilled)"] = distill(fit_learned(sklearn_curve("digits", "logreg")).curve).curve
    return out


def time_solves(curve, method: str, repeats: int):
    """Per scenario: (cold seconds, warm median seconds, solution)."""
    rows = []
    for number in (1, 2, 3):
        problem = paper_scenario(number, accuracy=curve)
        start = time.perf_counter()
        solution = dc.solve(problem, method=method)
        cold = time.perf_counter() - start
        warm = []
        for _ in range(repeats):
            start = time.perf_counter()
            solution = dc.solve(problem, method=method)
            warm.append(time.perf_counter() - start)
        rows.append((cold, float(np.median(warm)), solution))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="exact", choices=["exact", "alm"])
    parser.add_argument("--no-ensemble", action="store_true", help="skip the undistilled ensemble (slow with exact)")
    args = parser.parse_args(argv)
    results = {name: time_solves(c, args.method, args.repeats) for name, c in curves(not args.no_ensemble).items()}
    ref = sum(r[1] for r in results["SGB(1,1)"])
    print(f"method={args.method}; warm = median of {args.repeats} solves; cold = first solve incl. compilation")
    print(f"{'curve':28s} {'scen':>4s} {'status':>15s} {'iters':>5s} {'E[v(a)]':>10s} {'cold s':>7s} {'warm s':>7s}")
    for name, rows in results.items():
        for number, (cold, warm, sol) in enumerate(rows, start=1):
            print(f"{name:28s} {number:4d} {sol.status_name:>15s} {sol.iterations:5d} {sol.expected_value:10.5f} "
                  f"{cold:7.2f} {warm:7.3f}")
    print()
    for name, rows in results.items():
        total = sum(r[1] for r in rows)
        print(f"{name:28s} warm total {total:7.3f} s   ratio to SGB(1,1) {total / ref:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
