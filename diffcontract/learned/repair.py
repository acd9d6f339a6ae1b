r"""Repair: any monotone contribution vector -> an exactly feasible contract (jittable, vmappable).

Given proposed contributions m (monotone, >= 0), the rewards t = binding_rewards(m) satisfy every
IC and the costliest type's IR by construction (MODEL.md's simplified set); the budget
t_i <= tbar_i(m) and the other IRs may fail. A known feasible menu m_safe (the best exclude-then-pool
contract of ``solvers/_start.py``, feasible whenever one exists) anchors a segment

.. math:: m(\lambda) = (1 - \lambda)\, m + \lambda\, m_{\mathrm{safe}},\qquad \lambda \in [0, 1],

every point of which is monotone and non-negative (a convex combination of two such vectors).
Where no exclude-then-pool menu is feasible (cheap types with high reservation utilities need
separating contracts), ``restore`` supplies a second anchor: a nearby strictly feasible point
found by descending the squared constraint violations from the proposal.
The repair returns the smallest feasible lambda found: lambda = 0 (the proposal itself) when
feasible, otherwise the first feasible point of a geometric grid refined by bisection against its
infeasible neighbour, so the repaired contract stays as close to the proposal as the search
resolves. Feasible means budget >= 0 and IR_i >= 0 for i >= 2 in float64, exactly (no tolerance):
IR_1 and the ICs hold by construction, up to the rounding of the reward recursion.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..expectation import moments
from ..formulation import binding_rewards, residuals
from ..solvers._start import exclusion_pooled_start
from .network import data_reference

GRID = 24  # lambda in {0} + geomspace(1e-6, 1, GRID)
BISECTIONS = 40  # refines lambda to ~1e-12 of its grid bracket
RESTORE_STEPS = 300  # Adam steps of the feasibility restoration (``restore``)
RESTORE_LR = 0.05  # Adam step in log-gap units (5 % moves)
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


def _slack(m, problem, table):
    """min over budget and IR_2..I residuals of (m, binding_rewards(m)), money (>= 0 iff feasible)."""
    t = binding_rewards(m, problem.costs, problem.reservation_utility)
    res = residuals(m, t, moments(m, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
    return jnp.minimum(jnp.min(res.budget), jnp.min(res.ir[1:]))


def restore(m, problem, table, steps: int = RESTORE_STEPS, margin: float = RESTORE_MARGIN):
    """A nearby strictly feasible point, or the closest attempt (jittable; fixed work).

    Adam on phi(o) = sum_j max(0, margin - G_j(m(o)))^2, G = (budget, IR_2..I) / (v(1) - v(0)), in
    the network's own coordinates m = m_ref cumsum(exp(o)) (monotone, positive), from the proposal.
    The anchor of last resort when no exclude-then-pool menu is feasible (cheap types with a high
    reservation utility need contracts that separate them).
    """
    dtype = jnp.result_type(m)
    m_ref = data_reference(problem)
    gaps = jnp.diff(jnp.concatenate([jnp.zeros((1,), dtype), m]))
    o = jnp.log(jnp.maximum(gaps, 1e-13 * m_ref) / m_ref)
    value_scale = problem.valuation(jnp.asarray(1.0, dtype)) - problem.valuation(jnp.asarray(0.0, dtype))
    to_m = lambda o: m_ref * jnp.cumsum(jnp.exp(jnp.clip(o, -40.0, 10.0)))  # noqa: E731

    def phi(o):
        mm = to_m(o)
        t = binding_rewards(mm, problem.costs, problem.reservation_utility)
        res = residuals(mm, t, moments(mm, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
        g = jnp.concatenate([res.budget, res.ir[1:]]) / value_scale
        return jnp.sum(jnp.maximum(margin - g, 0.0) ** 2)

    adam = optax.adam(RESTORE_LR)

    def body(_, carry):
        o, state = carry
        updates, state = adam.update(jax.grad(phi)(o), state, o)
        o_new = o + updates
        return jnp.where(jnp.all(jnp.isfinite(o_new)), o_new, o), state

    o, _ = jax.lax.fori_loop(0, steps, body, (o, adam.init(o)))
    out = to_m(o)
    return out, _slack(out, problem, table) >= 0.0


def _segment(m, anchor, anchor_ok, problem, table):
    """Smallest feasible lambda on the segment m -> anchor: (lambda, feasible)."""
    dtype = jnp.result_type(m)
    blend_at = lambda lam: (1.0 - lam) * m + lam * anchor  # noqa: E731
    lams = jnp.concatenate([jnp.zeros((1,), dtype), jnp.geomspace(1e-6, 1.0, GRID).astype(dtype)])
    ok = jax.vmap(lambda lam: _slack(blend_at(lam), problem, table))(lams) >= 0.0
    ok = ok.at[-1].set(ok[-1] & anchor_ok)
    any_ok = jnp.any(ok)
    first = jnp.argmax(ok)  # first feasible grid point (0 when none)
    lo, hi = lams[jnp.maximum(first - 1, 0)], lams[first]

    def halve(_, bounds):
        a, b = bounds
        mid = 0.5 * (a + b)
        feasible = _slack(blend_at(mid), problem, table) >= 0.0
        return jnp.where(feasible, a, mid), jnp.where(feasible, mid, b)

    _, hi = jax.lax.fori_loop(0, BISECTIONS, halve, (lo, hi))
    lam = jnp.where(first == 0, 0.0, hi)
    lam = jnp.where(any_ok, lam, 0.0)
    return lam, _slack(blend_at(lam), problem, table) >= 0.0


def repair(m, problem, table) -> Repaired:
    """Repair proposed contributions ``m`` (I,) for ``problem`` (see module docstring).

    Three anchors are tried, and the feasible result with the larger E[a] kept: the best feasible
    exclude-then-pool menu (``solvers/_start.py``) and ``restore``'s feasible points from the
    proposal and from the monotone envelope of m^res.

    Args:
      m: (I,) monotone non-decreasing, non-negative contributions (units of data).
      problem: one ``ContractProblem``.  table: its ``OutcomeTable`` with weights attached
        (``expectation.with_weights``).
    """
    safe, found = exclusion_pooled_start(problem, table)
    # Restorations from the proposal and from the m^res envelope (the exact solver's fallback
    # start): from far above the feasible set the first can run out of steps; the second starts
    # where every type's own reservation data already is.
    envelope = jax.lax.cummax(problem.reservation_data) + 1e-6 * data_reference(problem)
    restored, restored_ok = jax.vmap(lambda s: restore(s, problem, table))(jnp.stack([m, envelope]))
    anchors = jnp.concatenate([safe[None, :], restored])
    anchor_ok = jnp.concatenate([found[None], restored_ok])
    lams, feasible = jax.vmap(lambda a, ok: _segment(m, a, ok, problem, table))(anchors, anchor_ok)
    candidates = (1.0 - lams[:, None]) * m[None, :] + lams[:, None] * anchors
    value = jax.vmap(lambda mm: moments(mm, problem, table).expected_accuracy)(candidates)
    best = jnp.argmax(jnp.where(feasible, value, -jnp.inf))
    m_out, lam = candidates[best], lams[best]
    feasible = _slack(m_out, problem, table) >= 0.0
    t_out = binding_rewards(m_out, problem.costs, problem.reservation_utility)
    return Repaired(m_out, t_out, lam, feasible, found | restored_ok)


IMPROVE_ROUNDS = ((0.5, 4.0), (0.8, 1.25), (0.95, 1.05))  # factor ranges of the successive tail searches
IMPROVE_FACTORS = 12  # factors per range (geometric)


def improve(repaired: Repaired, problem, table) -> Repaired:
    """A feasible contract at least as good as ``repaired``, by a vectorized local search (jittable).

    Candidates, all monotone and non-negative: the current contract; every exclude-then-pool menu
    (``solvers/_start.py``); and for each type i and factor s of a geometric range, the contract
    with the contributions of types i..I multiplied by s (then made monotone by a running max).
    Each round evaluates all of them at once and keeps the best *feasible* one (same exact test as
    ``repair``), with ranges narrowing from [0.5, 4] to [0.95, 1.05]. The network is accurate to a
    few per cent in m; this search recovers most of what that costs in value (and the pooled
    optimum exactly when it is one of the menus), for about 120 evaluations per problem.
    """
    from ..solvers._start import exclusion_pooled_candidates

    num = repaired.m.shape[0]
    dtype = jnp.result_type(repaired.m)
    menus, found, _ = exclusion_pooled_candidates(problem, table)

    def score(m):
        feasible = _slack(m, problem, table) >= 0.0
        return jnp.where(feasible, moments(m, problem, table).expected_accuracy, -jnp.inf)

    best = repaired.m
    best_score = jnp.where(repaired.feasible, score(best), -jnp.inf)
    menu_scores = jnp.where(found, jax.vmap(score)(menus), -jnp.inf)
    k = jnp.argmax(menu_scores)
    take = menu_scores[k] > best_score
    best, best_score = jnp.where(take, menus[k], best), jnp.where(take, menu_scores[k], best_score)
    tails = (jnp.arange(num)[None, :] >= jnp.arange(num)[:, None]).astype(dtype)  # (I, I): row i masks types i..I
    for lo, hi in IMPROVE_ROUNDS:
        factors = jnp.geomspace(lo, hi, IMPROVE_FACTORS).astype(dtype)
        scale = 1.0 + tails[:, None, :] * (factors[None, :, None] - 1.0)  # (I, F, I)
        cands = jax.lax.cummax(best[None, None, :] * scale, axis=2).reshape(-1, num)
        scores = jax.vmap(score)(cands)
        k = jnp.argmax(scores)
        take = scores[k] > best_score
        best, best_score = jnp.where(take, cands[k], best), jnp.where(take, scores[k], best_score)
    feasible = _slack(best, problem, table) >= 0.0
    t = binding_rewards(best, problem.costs, problem.reservation_utility)
    return Repaired(best, t, repaired.blend, feasible, repaired.safe_found)
