"""Plain-text tables and JSON records of solutions."""

from __future__ import annotations

import numpy as np

from ..solvers._record import solution_record  # noqa: F401  (analysis.solution_record: one record, Solution.to_json's)


def fixed(value, decimals: int = 4) -> str:
    """``value`` with ``decimals`` decimals, never "-0.0000": rounding noise below the last digit
    (a binding constraint's -1e-13 utility) prints as 0."""
    rounded = round(float(value), decimals) + 0.0  # -0.0 + 0.0 == +0.0
    return f"{rounded:.{decimals}f}"


def solution_table(solution) -> str:
    """A readable table: one row per type (canonical order, costliest first) and a summary line.

    Pooled types share a group label marked with ``*``.
    """
    p = solution.problem
    label = {i: f"G{g}" + ("*" if len(group) > 1 else "")  # type -> its group, pooled ones starred
             for g, group in enumerate(solution.pooled_groups(), start=1) for i in group}
    head = f"{'type':>4} {'cost c':>10} {'prob p':>7} {'f (resv.)':>10} {'m (data)':>12} {'t (reward)':>11} {'t_bar':>10} {'utility':>10} {'rent':>10} {'pool':>5}"
    rows = [head, "-" * len(head)]
    for i in range(p.num_types):
        numbers = [p.reservation_utility[i], solution.contributions[i], solution.rewards[i], solution.reward_bounds[i],
                   solution.utilities[i], solution.information_rents[i]]
        widths = (10, 12, 11, 10, 10, 10)
        cells = " ".join(f"{fixed(x):>{w}}" for x, w in zip(numbers, widths))
        rows.append(f"{i + 1:>4} {float(p.costs[i]):>10.5g} {float(p.probs[i]):>7.4g} {cells} {label.get(i, ''):>5}")
    rows.append(
        f"E[v(a)] = {float(solution.expected_value):.10g}   E[a] = {float(solution.expected_accuracy):.10g}   "
        f"max violation = {float(solution.max_violation):.2e}   status = {solution.status_name}   "
        f"method = {solution.method}/{solution.constraints}   iterations = {int(solution.iterations)}   "
        f"time = {float(solution.wall_time):.3f} s"
    )
    if solution.upper_bound is not None:
        rows.append(f"certified: E[a] <= {float(solution.upper_bound):.10g}   relative gap = {float(solution.gap):.2e}   "
                    f"boxes = {int(solution.nodes)}")
    return "\n".join(rows)


def sensitivity_record(problem, solution) -> dict:
    """``d_value_d_costs`` and ``d_value_d_probs`` for ``diffcontract solve --sensitivities``.

    Derivatives of expected_value (``diffcontract.sensitivity.sensitivities``) in the order the
    types were given to ``ContractProblem`` (input order, unlike the costliest-first lists of
    ``solution_record``); d/dprobs projected on the simplex's tangent space (entries sum to 0).
    ``None`` (JSON null) marks a one-sided derivative, and every entry is ``None`` when the
    solution is not a converged KKT point.
    """
    from ..sensitivity import SensitivityError, sensitivities

    num = problem.num_types
    try:
        sens = sensitivities(problem, solution, probs="tangent", order="input")
    except SensitivityError:
        return {"d_value_d_costs": [None] * num, "d_value_d_probs": [None] * num}

    def nullable(values) -> list:
        return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]

    return {"d_value_d_costs": nullable(sens.d_expected_value.costs),
            "d_value_d_probs": nullable(sens.d_expected_value.probs)}
