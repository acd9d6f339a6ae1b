r"""Repair: any monotone contribution vector -> an exactly feasible contract (jittable, vmappable).

Given proposed contributions m (monotone, >= 0), the rewards t = least_rewards(m) (the full
set's least IR- and IC-feasible rewards, ``formulation.least_rewards``) satisfy every IR and IC by
construction; only the budgets t_i <= tbar_i(m) may fail. (Where the simplified set's rewards
satisfy every IR they are the same; where a cheaper type's IR binds above its local IC, which the
simplified set excludes and which can leave it empty, the least rewards still give a contract.)
A known feasible menu m_safe (the best candidate of ``solvers/_start.py`` for the full set,
feasible whenever one exists) anchors a segment

.. math:: m(\lambda) = (1 - \lambda)\, m + \lambda\, m_{\mathrm{safe}},\qquad \lambda \in [0, 1],

every point of which is monotone and non-negative (a convex combination of two such vectors).
``restore`` supplies further anchors: nearby strictly feasible points found by Gauss-Newton
steps on the violated budgets from the proposal and from the m^res envelope.
The repair returns the smallest feasible lambda found: lambda = 0 (the proposal itself) when
feasible, otherwise the first feasible point of a geometric grid refined by bisection against its
infeasible neighbour, so the repaired contract stays as close to the proposal as the search
resolves. Feasible means every budget >= 0 in float64, exactly (no tolerance): IR and IC hold by
construction, up to the rounding of the reward formula.

Training (``train.py``) penalizes the simplified set's constraints (``learned_constraints``); the
repair and the returned contracts use the full set's (``contract_constraints``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..expectation import moments
from ..formulation import least_rewards
from ..numerics import bisection
from ..solvers import _kkt
from ..solvers._start import best_candidate, exclusion_pooled_candidates, start_candidates
from ..problem import value_unit
from .network import data_reference

GRID = 24  # lambda in {0} + geomspace(1e-6, 1, GRID)
BISECTIONS = 40  # refines lambda to ~1e-12 of its grid bracket
RESTORE_STEPS = 40  # Gauss-Newton steps of the feasibility restoration (``restore``)
SEARCH_MARGIN = 1e-14  # the searches' acceptance slack (x (v(1) - v(0))); see ``_clears``
RESTORE_MARGIN = 1e-6  # restoration aims at this slack (fraction of v(1) - v(0)), so it lands inside


class Repaired(NamedTuple):
    """m: (I,) repaired contributions (data); t: (I,) rewards (money); blend: () lambda in [0, 1];
    feasible: () bool, the repaired contract meets the budget and every IR; safe_found: () bool,
    a feasible anchor was found (an exclude-then-pool menu or a restored point)."""

    m: jnp.ndarray
    t: jnp.ndarray
    blend: jnp.ndarray
    feasible: jnp.ndarray
    safe_found: jnp.ndarray

    @classmethod
    def of(cls, m, problem, table, blend, safe_found) -> "Repaired":
        """The record of contributions m: the least rewards, feasible iff every budget residual >= 0."""
        return cls(m, least_rewards(m, problem.costs, problem.reservation_utility), blend,
                   _slack(m, problem, table) >= 0.0, safe_found)


def learned_constraints(m, problem, table):
    """(``Moments``, (2I - 1,) G money) of the menu (m, binding_rewards(m)).

    G = (budget residuals, IR residuals of types 2..I): the constraints a contract with binding
    local ICs and IR_1 does not meet by construction (the training Lagrangian's and the repair's).
    """
    _, _, mom, res = _kkt.measure(m, problem, table, _kkt.Scales(1.0, 1.0), "simplified")
    return mom, _kkt.constraint_vector(res, "simplified")


def contract_constraints(m, problem, table):
    """(I,) budget residuals tbar_i(m) - t_i, money, of the menu (m, least_rewards(m)).

    The only constraints such a menu does not meet by construction (the repair's and the
    returned contracts'; see the module docstring).
    """
    return moments(m, problem, table).reward_bounds - least_rewards(m, problem.costs, problem.reservation_utility)


def _slack(m, problem, table):
    """min budget residual (``contract_constraints``), money: >= 0 iff (m, least_rewards(m)) is feasible."""
    return jnp.min(contract_constraints(m, problem, table))


def _clears(m, problem, table):
    """Whether the slack is at least ``SEARCH_MARGIN`` x (v(1) - v(0)): the test inside searches.

    A search that accepted slack >= 0 would end within a few ulps of the boundary, where another
    evaluation order (the final check, the verifier) can round the slack below 0. The margin,
    1e-14 of the value scale (1e-12 money for v = 100 r), is some 30 times that rounding for the
    tables of a learned mechanism (I = 3, N <= 12: at most 91 outcomes) and far below any tolerance.
    """
    return _slack(m, problem, table) >= SEARCH_MARGIN * value_unit(problem)


def restore(m, problem, table, steps: int = RESTORE_STEPS, margin: float = RESTORE_MARGIN):
    """A nearby exactly feasible point, or the closest attempt: ((I,) m, feasible) (jittable).

    Gauss-Newton on the violated constraints in the network's own coordinates o = log of the gaps
    of m / m_ref (m = m_ref cumsum(exp(o)): monotone, positive): each step is the least-norm
    solution of the linearized system G_j(o) + J_j(o) d = margin over the constraints below the
    margin (G = budgets / (v(1) - v(0)), ``contract_constraints``), damped to at most 0.5 per
    coordinate, and the iteration stops at the first exactly feasible point. An anchor near the
    proposal, and the one of last resort when no candidate menu is feasible (cheap types with a high
    reservation utility need separating contracts).
    """
    m_ref = data_reference(problem)
    o = jnp.log(jnp.maximum(jnp.diff(m, prepend=0.0), 1e-13 * m_ref) / m_ref)
    to_m = lambda o: m_ref * jnp.cumsum(jnp.exp(jnp.clip(o, -40.0, 10.0)))  # noqa: E731

    def constraints(o):
        return contract_constraints(to_m(o), problem, table) / value_unit(problem)

    def body(_, o):
        g = constraints(o)
        jac = jax.jacfwd(constraints)(o)
        below = g < margin
        jac_b = jnp.where(below[:, None], jac, 0.0)
        rhs = jnp.where(below, margin - g, 0.0)
        gram = jac_b @ jac_b.T + 1e-12 * jnp.eye(g.shape[0], dtype=jnp.result_type(m))
        step = jac_b.T @ jnp.linalg.solve(gram, rhs)
        step = step / jnp.maximum(1.0, jnp.max(jnp.abs(step)) / 0.5)
        o_new = o + step
        moved = jnp.all(jnp.isfinite(o_new)) & (jnp.min(g) < 0.0)  # stop once exactly feasible
        return jnp.where(moved, o_new, o)

    o = jax.lax.fori_loop(0, steps, body, o)
    out = to_m(o)
    return out, _slack(out, problem, table) >= 0.0


SCALE_FACTORS = 40  # geometric factors in [1/20, 20] of the scaled-proposal anchor search


def _scaled_anchor(m, problem, table):
    """The best feasible rescaling of the proposal: ((I,) m, found) (jittable; 2 I x 40 evaluations).

    Candidates: for each type i and factor s in geomspace(1/20, 20), type i alone or types i..I
    multiplied by s, made monotone by a running max. The network's typical error is one type's
    level (a cheap type over- or under-contributing), which one such rescaling undoes.
    """
    # (2I, I) masks: type i alone (row i), types i..I (row I + i)
    masks = jnp.concatenate([jnp.eye(m.shape[0], dtype=m.dtype), jnp.triu(jnp.ones((m.shape[0],) * 2, m.dtype))])
    best, score = _best_feasible(_rescalings(m, masks, jnp.geomspace(0.05, 20.0, SCALE_FACTORS).astype(m.dtype)),
                                 problem, table)
    return best, jnp.isfinite(score)


def _rescalings(m, masks, factors) -> jnp.ndarray:
    """(M F, I) copies of m with the types of each mask row multiplied by each factor, made
    monotone by a running max."""
    scale = 1.0 + masks[:, None, :] * (factors[None, :, None] - 1.0)
    return jax.lax.cummax(m[None, None, :] * scale, axis=2).reshape(-1, m.shape[0])


def _feasible_value(m, problem, table):
    """E[a] of (m, least_rewards(m)) where feasible with the search margin (``_clears``), else -inf."""
    return jnp.where(_clears(m, problem, table), moments(m, problem, table).expected_accuracy, -jnp.inf)


def _best_feasible(cands, problem, table, ok=True):
    """The row of ``cands`` (M, I) with the largest ``_feasible_value`` among those ``ok``: ((I,), () score,
    -inf where none clears)."""
    scores = jnp.where(ok, jax.vmap(lambda c: _feasible_value(c, problem, table))(cands), -jnp.inf)
    k = jnp.argmax(scores)
    return cands[k], scores[k]


def _segment(m, anchor, anchor_ok, problem, table):
    """Smallest feasible lambda on the segment m -> anchor: (lambda, feasible)."""
    dtype = jnp.result_type(m)
    blend_at = lambda lam: (1.0 - lam) * m + lam * anchor  # noqa: E731
    lams = jnp.concatenate([jnp.zeros((1,), dtype), jnp.geomspace(1e-6, 1.0, GRID).astype(dtype)])
    ok = jax.vmap(lambda lam: _clears(blend_at(lam), problem, table))(lams)
    ok = ok.at[-1].set(ok[-1] & anchor_ok)
    first = jnp.argmax(ok)  # first feasible grid point (0 when none)
    lo, hi = lams[jnp.maximum(first - 1, 0)], lams[first]

    # Infeasible at lo, feasible at hi: bisect on "does not clear".
    _, hi = bisection(lambda lam: ~_clears(blend_at(lam), problem, table), lo, hi, BISECTIONS)
    lam = jnp.where(jnp.any(ok) & (first != 0), hi, 0.0)
    return lam, _slack(blend_at(lam), problem, table) >= 0.0


def repair(m, problem, table, candidates=None) -> Repaired:
    """Repair proposed contributions ``m`` (I,) for ``problem`` (see module docstring).

    Four anchors are tried, and the feasible result with the larger E[a] kept: the best feasible
    candidate menu of the full set (``solvers/_start.py``), ``restore``'s feasible points from the
    proposal and from the monotone envelope of m^res, and the best feasible rescaling of the
    proposal (``_scaled_anchor``).

    Args:
      m: (I,) monotone non-decreasing, non-negative contributions (units of data).
      problem: one ``ContractProblem``.  table: its ``OutcomeTable`` with weights attached
        (``expectation.with_weights``).
      candidates: ``start_candidates(problem, table, "full")`` if already computed.
    """
    candidates = start_candidates(problem, table, "full") if candidates is None else candidates
    safe, found = best_candidate(problem, candidates)
    # Restorations from the proposal and from the m^res envelope (the exact solver's fallback
    # start): from far above the feasible set the first can run out of steps; the second starts
    # where every type's own reservation data already is.
    envelope = jax.lax.cummax(problem.reservation_data) + 1e-6 * data_reference(problem)
    restored, restored_ok = jax.vmap(lambda s: restore(s, problem, table))(jnp.stack([m, envelope]))
    scaled, scaled_ok = _scaled_anchor(m, problem, table)
    anchors = jnp.concatenate([safe[None, :], restored, scaled[None, :]])
    anchor_ok = jnp.concatenate([found[None], restored_ok, scaled_ok[None]])
    lams, feasible = jax.vmap(lambda a, ok: _segment(m, a, ok, problem, table))(anchors, anchor_ok)
    candidates = (1.0 - lams[:, None]) * m[None, :] + lams[:, None] * anchors
    value = jax.vmap(lambda mm: moments(mm, problem, table).expected_accuracy)(candidates)
    best = jnp.argmax(jnp.where(feasible, value, -jnp.inf))
    return Repaired.of(candidates[best], problem, table, lams[best], found | restored_ok)


IMPROVE_ROUNDS = ((0.5, 4.0), (0.8, 1.25), (0.95, 1.05))  # factor ranges of the successive tail searches
IMPROVE_FACTORS = 12  # factors per range (geometric)


def improve(repaired: Repaired, problem, table, candidates=None) -> Repaired:
    """A feasible contract at least as good as ``repaired``, by a vectorized local search (jittable).

    Candidates, all monotone and non-negative: the current contract; every candidate menu
    (``candidates``: the simplified set's exclude-then-pool menus by default, which the network's
    features use; the repair's full-set ones work too); and for each type i and factor s of a
    geometric range, the contract
    with the contributions of types i..I multiplied by s (then made monotone by a running max).
    Each round evaluates all of them at once and keeps the best *feasible* one (same exact test as
    ``repair``), with ranges narrowing from [0.5, 4] to [0.95, 1.05]. The network is accurate to a
    few per cent in m; this search recovers most of what that costs in value (and the pooled
    optimum exactly when it is one of the menus), for about 120 evaluations per problem.
    """
    num, dtype = repaired.m.shape[0], jnp.result_type(repaired.m)
    menus, found, _ = exclusion_pooled_candidates(problem, table) if candidates is None else candidates

    def keep_better(best, best_score, cands, ok=True):
        cand, score = _best_feasible(cands, problem, table, ok)
        take = score > best_score
        return jnp.where(take, cand, best), jnp.where(take, score, best_score)

    start_score = jnp.where(repaired.feasible, _feasible_value(repaired.m, problem, table), -jnp.inf)
    best, best_score = keep_better(repaired.m, start_score, menus, found)
    tails = jnp.triu(jnp.ones((num, num), dtype))  # row i: types i..I
    for lo, hi in IMPROVE_ROUNDS:
        factors = jnp.geomspace(lo, hi, IMPROVE_FACTORS).astype(dtype)
        best, best_score = keep_better(best, best_score, _rescalings(best, tails, factors))
    return Repaired.of(best, problem, table, repaired.blend, repaired.safe_found)
