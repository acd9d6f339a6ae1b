r"""Feasible starting contracts for every solver: the best "exclude-then-pool" and floored menus.

The candidates are m = (0, ..., 0, m0, ..., m0): the j costliest types contribute nothing (they
get t = f_1, excluded from the data pool) and the others pool at a common m0, with the rewards
of the simplified constraint set (IR_1 and the local downward ICs binding) or the full set's least
feasible rewards (``formulation.least_rewards``). Such a menu satisfies IC and monotonicity by
construction; for each j the largest m0 that also meets every budget and IR constraint is found by
a geometric grid plus regula falsi (Illinois), and the solvers start from the candidates with the
largest E[a(n . q m)].

Pooling everyone (j = 0) is the natural start, but when it is infeasible for every m0 > 0 (high
costs, f = 0) a start at m = 0 would sit in the flat zero region of curves such as SGB, a KKT
point of no value; excluding the costliest types then finds the contracts worth having. When a
cheap type's own training data m^res dwarfs what a costly type can afford, no common m0 is
feasible or worth having; a second family floors the contributions at the m^res envelope
(``start_candidates``, which the solvers use). The feasible set is not connected in general (a
pooled pair feasible for m0 <= 6 and again for 20 <= m0 <= 63, E[a] 0.06 against 0.53), so the
families are what lets a local solver start in the better component.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..expectation import MonteCarlo, OutcomeTable, moments, outcome_weights
from ..formulation import binding_rewards, least_rewards, residuals
from ..numerics import golden_section_max, regula_falsi
from ..problem import value_unit

_GRID_POINTS = 48  # geometric, ratio 1.48 between neighbours
_REFINEMENTS = 16  # Illinois steps; 40 bisections (1.48 * 2^-40 ~ 1e-12 relative) cost 2.5x as many passes
_GOLDEN_STEPS = 24  # narrows two grid steps (ratio 2.2) to 1e-5 of their log width: windows between grid points
_PROXY_SAMPLES = 4096
_REFINE_SPREAD = 1.25  # bracket of a proxy's m0 refined on a streaming backend (``_refined_on_backend``)
_REFINE_STEPS = 12  # its regula falsi steps: from a 1.56x bracket to ~1e-10 relative where the residual is smooth
_MAP_ROWS = 1 << 22  # outcome rows one batched evaluation of the search may touch (~32 MiB per float64 column)
ROUNDING_ALLOWANCE = 1e-13  # x (v(1) - v(0)) money, for the residuals that are 0 by construction
MARGIN = 1e-12  # x (v(1) - v(0)) money, for the residuals that cross zero (see ``_residuals``)
# The rewards of a candidate menu: the simplified set's (IR_1 and the local downward ICs binding)
# or the full set's least IC- and IR-feasible ones (``formulation.least_rewards``).
REWARDS = {"simplified": binding_rewards, "full": least_rewards}


def _map(fn, xs, table, evaluations_per_item: int = 1):
    """``fn`` over xs: ``vmap`` where the batched table fits ``_MAP_ROWS``, otherwise a sequential
    ``lax.map`` in batches that do. ``evaluations_per_item`` is how many table passes one item
    batches inside (a row of the grid search maps over ``_GRID_POINTS`` of them), so nested maps
    share the bound: the search's peak memory stays O(_MAP_ROWS I) whatever the table's length.
    Streaming backends (chunked, lattice, ...), whose per-call work is large, map 4 at a time."""
    if not isinstance(table, OutcomeTable):
        return jax.lax.map(fn, xs, batch_size=4)
    batch = max(_MAP_ROWS // (table.counts.shape[0] * evaluations_per_item), 1)
    if batch >= xs.shape[0]:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=batch)


def _proxy_table(problem, table):
    """A ``_PROXY_SAMPLES``-row unbiased Monte Carlo stand-in for ``table`` (jittable, vmappable).

    For an outcome table (N may be traced), rows are drawn with probability P(n) and carry the
    importance weights w_i(n) / (P(n) S); for other backends, ``MonteCarlo`` draws the outcomes.
    """
    if isinstance(table, OutcomeTable):
        prob, weights = outcome_weights(problem, table)
        # Inverse-CDF sampling (stratified uniforms: lower variance, O(S log K)).
        u = (jnp.arange(_PROXY_SAMPLES) + jax.random.uniform(jax.random.PRNGKey(0), (_PROXY_SAMPLES,))) / _PROXY_SAMPLES
        cdf = jnp.cumsum(prob)
        rows = jnp.clip(jnp.searchsorted(cdf, u * cdf[-1]), 0, prob.shape[0] - 1)
        rows = jnp.where(prob[rows] > 0, rows, jnp.argmax(prob))  # never a zero-probability row
        scale = 1.0 / (prob[rows] * _PROXY_SAMPLES)
        return OutcomeTable(jnp.asarray(table.counts)[rows], jnp.asarray(table.valid)[rows],
                            jnp.full((_PROXY_SAMPLES,), 1.0 / _PROXY_SAMPLES, prob.dtype), weights[rows] * scale[:, None])
    return MonteCarlo(table.participants, problem.costs.shape[0], samples=_PROXY_SAMPLES).prepare(problem)


def _menu(m0, excluded, floor):
    """Row ``excluded`` of a family: the first ``excluded`` types at 0, the rest at max(m0, floor)."""
    return jnp.where(jnp.arange(floor.shape[0]) >= excluded, jnp.maximum(m0, floor), 0.0)


def _residuals(m0, excluded, floor, problem, table, constraints: str = "simplified"):
    """(2I,) budget and IR residuals of the candidate, shifted (money): all >= 0 iff it is feasible.

    ``constraints`` (static) names the rewards (``REWARDS``). With the full set's least rewards
    every IR holds by construction (up to rounding, so all get the allowance) and so does every IC
    of a monotone menu: only the budgets decide.

    The IRs of the excluded types (f_1 - f_i) and of the first pooled one (index ``excluded``:
    f_1 - f_i + (c_i m0 - c_i m0)) are constant in m0 by construction, exact but for a few ulps of
    either sign. A strict test of them would let that sign decide (the largest feasible m0 jumped
    between grid points with the evaluation order), so they get ``ROUNDING_ALLOWANCE`` x (v(1) - v(0)). The budget and the other
    IRs, which cross zero at the largest feasible m0, must clear ``MARGIN`` x (v(1) - v(0)): the
    root finder lands on the boundary to a few ulps, and the margin keeps the candidate feasible
    in any other evaluation order (a batched call, the verifier, the learned mechanism's repair).
    """
    num = problem.costs.shape[0]
    m = _menu(m0, excluded, floor)
    t = REWARDS[constraints](m, problem.costs, problem.reservation_utility)
    res = residuals(m, t, moments(m, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
    constant = (jnp.arange(num) <= excluded) | (constraints == "full")
    v_scale = value_unit(problem)
    return jnp.concatenate([res.budget - MARGIN * v_scale,
                            res.ir + jnp.where(constant, ROUNDING_ALLOWANCE, -MARGIN) * v_scale])


def _family(problem, table, floor, windows=False, constraints: str = "simplified"):
    """The largest feasible m0 of every row of the family ``_menu(m0, j, floor)``, j = 0..I-1.

    ``table`` is an ``OutcomeTable`` (or the Monte Carlo proxy of a streaming backend). Returns
    (menus (I, I), found (I,), value (I,)) as ``exclusion_pooled_candidates``. The feasible m0 of a
    row need not start at 0 (a floor can make small m0 infeasible): the geometric grid finds the
    largest feasible grid point and regula falsi refines it towards the infeasible neighbour above.
    ``constraints`` (static): whose rewards the menus get (``REWARDS``).
    ``windows``: where no grid point is feasible, also look for a feasible window between two
    (golden section, ``_GOLDEN_STEPS`` more evaluations per row). The floored rows and the full
    set's need it; the simplified set's pooled rows keep the plain grid search (their feasible m0
    start at 0, so a window between grid points is a sliver there). A Python False compiles no
    golden section; a traced bool (``start_candidates`` maps one body over both families) computes
    it and uses it where True.
    """
    num = problem.costs.shape[0]
    m_ref = jnp.maximum(jnp.max(problem.reservation_data), 1.0)
    grid = m_ref * jnp.geomspace(1e-4, 1e4, _GRID_POINTS)

    def largest_m0(excluded):
        residual = lambda m0: _residuals(m0, excluded, floor, problem, table, constraints)  # noqa: E731
        res = _map(residual, grid, table)
        worst = jnp.min(res, axis=1)
        last = jnp.max(jnp.where(worst >= 0.0, jnp.arange(_GRID_POINTS), -1))
        # No feasible grid point: the feasible window may lie between two (an IR that needs m0 above
        # some level, a budget that caps it). Maximize the smallest residual around the best grid
        # point by golden section (it rises with the IRs and falls with the budgets there).
        best = jnp.argmax(worst)
        if windows is not False:
            # In log m0 (the grid is geometric); one evaluation per step.
            inner = jnp.exp(golden_section_max(lambda u: jnp.min(residual(jnp.exp(u))),
                                               jnp.log(grid[jnp.maximum(best - 1, 0)]),
                                               jnp.log(grid[jnp.minimum(best + 1, _GRID_POINTS - 1)]),
                                               _GOLDEN_STEPS).argmax)
            res_inner = residual(inner)
            in_window = windows & (last < 0) & (jnp.min(res_inner) >= 0.0)
        else:
            inner, res_inner, in_window = grid[0], res[0], jnp.asarray(False)
        found = (last >= 0) | in_window
        above = jnp.where(in_window, jnp.minimum(best + 1, _GRID_POINTS - 1), jnp.minimum(last + 1, _GRID_POINTS - 1))
        lo = jnp.where(in_window, inner, jnp.where(last >= 0, grid[jnp.maximum(last, 0)], 0.0))
        res_lo = jnp.where(in_window, res_inner, res[jnp.maximum(last, 0)])
        hi = jnp.where(found, grid[above], 0.0)
        # The secant follows the most violated residual at hi: IR_1 binds by construction and is 0
        # at every feasible point, so the smallest residual at lo would carry no slope.
        lo = regula_falsi(residual, lo, res_lo, hi, res[above], _REFINEMENTS).lower
        m = jnp.where(found, _menu(lo, excluded, floor), 0.0)
        return m, found, moments(m, problem, table).expected_accuracy

    return _map(largest_m0, jnp.arange(num), table, evaluations_per_item=_GRID_POINTS)


def _search_table(problem, table):
    # A streaming backend (chunked, lattice) would cost I * ~90 full passes per family: the
    # candidates are searched on a 4096-sample Monte Carlo proxy of the same problem instead
    # (fixed seed). It is a start only (the solvers measure everything with the real backend)
    # and, where the feasible pooled window is narrower than the proxy's error, an infeasible
    # one: the solvers then start from the m^res envelope.
    return table if isinstance(table, OutcomeTable) else _proxy_table(problem, table)


def exclusion_pooled_candidates(problem, table):
    """Every exclude-then-pool candidate, one per number j of excluded costliest types (jittable).

    Args:
      problem: ``ContractProblem``.  table: ``OutcomeTable`` (or a streaming backend's table).

    Returns:
      (menus, found, value): (I, I) contributions (row j: the j costliest types excluded, the rest
      pooled at the largest feasible m0; units of data), (I,) bool (False where no m0 > 0 is
      feasible; that row is then all zeros) and (I,) E[a(n . q m)] of each row.
    """
    return _family(problem, _search_table(problem, table), jnp.zeros_like(problem.costs))


def start_candidates(problem, table, constraints: str = "simplified"):
    """The solvers' starting candidates: (2I, I) menus, (2I,) found, (2I,) E[a].

    Rows 0..I-1 are the exclude-then-pool rows (``exclusion_pooled_candidates`` for the simplified
    set). Rows I..2I-1 are the *floored* family: the j costliest types excluded and the others at
    max(m0, cummax(m^res)_i), the largest feasible m0. Where a cheap type trains alone on much more
    data than a costly one (m^res = (0, 0, 2474)), a common m0 that is large enough for the cheap
    type's budget and IR is too large for a costly type's budget, so pooled rows are infeasible or
    poor (the cheap type alone: E[a] = 0.06 where the floored row reaches 0.57); the floored rows
    let the cheap types contribute their own data and the costly ones a little, which is where the
    optimum usually is. Their feasible m0 form windows that may lie between two grid points
    (``_family``'s ``windows``). The solvers start from the best rows by E[a].

    ``constraints`` (static): "simplified" gives the menus the simplified set's rewards
    (``binding_rewards``), "full" the full set's least rewards (``least_rewards``), with which a
    menu is feasible iff its budgets hold. The full set's candidates include every simplified one
    and more: where a cheap type's IR binds above its local IC, no simplified menu of a row may be
    feasible while a full one is (and the simplified set can be empty altogether). Every row's
    feasible m0 then form windows away from 0 (a pooled type with a large f needs t >= f), so the
    pooled rows search between grid points too.
    """
    search = _search_table(problem, table)
    floors = jnp.stack([jnp.zeros_like(problem.costs), jax.lax.cummax(problem.reservation_data)])
    windows = jnp.array([constraints == "full", True])
    # One compiled body for both families (vmap), half the compilation of two calls.
    families = jax.vmap(lambda floor, w: _family(problem, search, floor, w, constraints))(floors, windows)
    candidates = tuple(a.reshape(-1, *a.shape[2:]) for a in families)  # pooled rows, then floored ones
    if search is table:
        return candidates
    return _refined_on_backend(problem, table, candidates, constraints)


def _refined_on_backend(problem, table, candidates, constraints: str):
    """The best pooled candidate of a proxy search, its m0 found again on the backend itself.

    The proxy's m0 lands within its sampling error of the backend's boundary (4096 samples: a
    percent or so on the budgets), so the solver would spend its iterations walking there: 30-90
    SLSQP iterations, each a full pass with its Jacobian, on the paper's pooled scaling workload,
    whose pooled candidate *is* the optimum. A bracket of a factor ``_REFINE_SPREAD`` either way
    and ``_REFINE_STEPS`` regula falsi steps cost 2 + 12 passes without Jacobians. Where the bracket
    does not hold (lower end infeasible or upper end feasible on the backend), the row is kept.
    """
    menus, found, value = candidates
    num = problem.costs.shape[0]
    row = jnp.argmax(jnp.where(found[:num], value[:num], -jnp.inf))
    m0, floor = menus[row, row], jnp.zeros_like(problem.costs)  # row j: j types at 0, the rest at m0
    residual = lambda x: _residuals(x, row, floor, problem, table, constraints)  # noqa: E731
    lower, upper = m0 / _REFINE_SPREAD, m0 * _REFINE_SPREAD
    res_lower, res_upper = residual(lower), residual(upper)
    holds = found[row] & (jnp.min(res_lower) >= 0.0) & (jnp.min(res_upper) < 0.0)
    refined = regula_falsi(residual, lower, res_lower, upper, res_upper, _REFINE_STEPS).lower
    return menus.at[row].set(jnp.where(holds, _menu(refined, row, floor), menus[row])), found, value


def best_candidate(problem, candidates):
    """The best of already computed candidates (``start_candidates`` or
    ``exclusion_pooled_candidates``): (m, found), the feasible menu with the largest E[a], else
    the m^res envelope and False."""
    menus, found, value = candidates
    best = jnp.argmax(jnp.where(found, value, -jnp.inf))
    any_found = jnp.any(found)
    return jnp.where(any_found, menus[best], jax.lax.cummax(problem.reservation_data)), any_found
