"""``BenchReport``: per-problem rows and aggregate figures of one mechanism on one suite; JSON, CSV, figure."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np

from ..mechanism._record import json_safe

#: A contract counts as optimal within this relative gap (the certificates' default gap_tol).
OPTIMAL_RTOL = 1e-6
#: A contract counts as feasible with violations up to this, money (``verify``'s default tolerance);
#: the gap of an infeasible one is no achievement, so the figure and ``within_1e-6`` leave it out.
FEASIBLE_TOL = 1e-6
#: Columns of the CSV and of each JSON row.
COLUMNS = ("index", "expected_accuracy", "optimum", "gap", "bound_gap", "budget", "ir", "ic", "max_violation",
           "max_regret", "seconds", "status")


@dataclasses.dataclass(frozen=True)
class BenchReport:
    """mechanism: its label.  suite, version: what it was scored on.  rows: one dict per problem (``COLUMNS``)."""

    mechanism: str
    suite: str
    version: int
    rows: list

    def column(self, key: str) -> np.ndarray:
        return np.asarray([row[key] for row in self.rows], dtype=np.float64)

    def feasible(self) -> np.ndarray:
        """(problems,) bool: answered, with every violation <= ``FEASIBLE_TOL`` (a refused row's NaN is not)."""
        return self.column("max_violation") <= FEASIBLE_TOL

    @property
    def aggregate(self) -> dict:
        """Problems answered (not refused) and feasible (``FEASIBLE_TOL``); median and max gap, the share
        feasible and within ``OPTIMAL_RTOL`` (of all), worst violation and regret (money) over the
        answered ones; seconds:
        the first call (compilation included) and the median of the others, and problems per second."""
        gap, seconds = self.column("gap"), self.column("seconds")
        answered = ~np.isnan(self.column("expected_accuracy"))
        feasible = self.feasible()
        rest = seconds[1:] if seconds.size > 1 else seconds
        worst = lambda key: float(np.max(self.column(key)[answered])) if answered.any() else float("nan")  # noqa: E731
        return {"problems": len(self.rows), "answered": int(answered.sum()),
                "median_gap": float(np.median(gap[answered])) if answered.any() else float("nan"),
                "max_gap": worst("gap"), "feasible": int(feasible.sum()),
                "within_1e-6": float(np.mean(feasible & (gap <= OPTIMAL_RTOL))),
                "max_violation": worst("max_violation"), "max_regret": worst("max_regret"),
                "first_seconds": float(seconds[0]), "median_seconds": float(np.median(rest)),
                "problems_per_second": float(len(self.rows) / np.sum(seconds))}

    def to_dict(self) -> dict:
        return {"mechanism": self.mechanism, "suite": self.suite, "version": self.version,
                "aggregate": self.aggregate, "rows": self.rows}

    def to_csv(self) -> str:
        """The rows as CSV text, one line per problem, with a ``mechanism`` column first."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(("mechanism",) + COLUMNS)
        for row in self.rows:
            writer.writerow([self.mechanism] + [row[key] for key in COLUMNS])
        return out.getvalue()


def reports_json(reports: list) -> str:
    """Several reports as one JSON document (NaN written as null)."""
    return json.dumps({"reports": [json_safe(report.to_dict()) for report in reports]})


def summary_table(reports: list) -> str:
    """One line per mechanism: the aggregate figures."""
    head = (f"{'mechanism':<10} {'answered':>9} {'feasible':>8} {'median gap':>11} {'max gap':>10} {'<= 1e-6':>8} "
            f"{'max viol.':>10} {'max regret':>10} {'first s':>8} {'median s':>9} {'per s':>8}")
    lines = [head, "-" * len(head)]
    for report in reports:
        a = report.aggregate
        answered = f"{a['answered']}/{a['problems']}"
        lines.append(f"{report.mechanism:<10} {answered:>9} {a['feasible']:>8d} {a['median_gap']:>11.2e} {a['max_gap']:>10.2e} "
                     f"{a['within_1e-6']:>8.1%} {a['max_violation']:>10.2e} {a['max_regret']:>10.2e} "
                     f"{a['first_seconds']:>8.2f} {a['median_seconds']:>9.4f} {a['problems_per_second']:>8.1f}")
    return "\n".join(lines)


def plot_gaps(reports: list, path: str) -> None:
    """Figure: the distribution of gaps to the certified optimum, one curve per mechanism (an ECDF on a
    log axis; gaps below 1e-16 drawn at 1e-16; an infeasible or refused contract never arrives, so a
    curve ends at its feasible share)."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend and figures stay as they are

    fig = Figure(figsize=(6.0, 3.6))
    ax = fig.subplots()
    for report in reports:
        feasible = report.feasible()
        gap = np.sort(np.where(feasible, np.clip(report.column("gap"), 1e-16, None), np.inf))
        label = report.mechanism + ("" if feasible.all() else f" ({int((~feasible).sum())} infeasible)")
        ax.step(gap, np.arange(1, gap.size + 1) / gap.size, where="post", label=label)
    ax.set_xscale("log")
    ax.axvline(OPTIMAL_RTOL, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("gap to the certified optimum of E[a] (relative)")
    ax.set_ylabel("share of problems")
    ax.set_title(f"{reports[0].suite} (v{reports[0].version}), {len(reports[0].rows)} problems")
    ax.legend(loc="center", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
