r"""Augmented-Lagrangian solver: contracts optimized by gradient descent (optax), fully jitted.

For min F(x) s.t. G(x) >= 0, x in the projection set {B(x) >= 0} (see ``_kkt``), the
Powell-Hestenes-Rockafellar augmented Lagrangian is

.. math:: L_\rho(x, \lambda) = F(x) + \frac{1}{2\rho}\sum_j \big(\max(0, \lambda_j - \rho G_j(x))^2 - \lambda_j^2\big).

Each outer iteration runs ``inner_steps`` of projected Adam on L_rho (projection exact: isotonic
regression for the reduced parameterization, so pools are exact), then updates the multipliers
lambda <- max(0, lambda - rho G) and raises rho only when the measured violation did not fall
by ``penalty_patience`` (a residual-driven schedule, not a table of magic numbers), in the spirit of
RegretNet's trainer but automatic. When the measured KKT residuals are small enough to trust the
active set, a primal-dual active-set Newton step (``_kkt.polish``) refines the point to rounding.
The whole solve is one ``lax.while_loop``: jittable, vmappable over problems, no host round trips.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import _precision
from ..expectation import OutcomeTable, moments, with_weights
from ..expectation.backends import make_backend, resolve_backend
from ..formulation import max_violation, residuals
from ..problem import without_input_order
from . import _kkt
from ._kkt import PARAMETERIZATIONS, Scales
from ._projection import isotonic_regression
from ._single import solve_single_participant
from ._solution import FEASIBILITY_TOL, Certificate, Solution, Status, menu_fields
from ._start import REWARDS, best_candidate, best_start, start_candidates


# Whose rewards the starting candidates get (``_start.REWARDS``): the reduced parameterization is the
# simplified set; the full one starts from the full set's least IC- and IR-feasible rewards.
_CANDIDATES = {"reduced": "simplified", "full": "full"}


class ALMOptions(NamedTuple):
    """Solver settings (hashable: a static argument of the compiled solver).

    max_outer: total outer (multiplier) iterations over all stages.
    inner_steps: inner optimizer steps per outer iteration. The reduced parameterization uses
      projected Adam in log m (projection = isotonic regression, so pools are found exactly and
      early); the full one, which needs no projection in log (m, t), uses L-BFGS with a zoom line
      search. Both from optax.
    long_after / long_inner_steps: from outer iteration ``long_after`` on, the reduced
      parameterization's blocks run ``long_inner_steps`` (a problem not converged by then usually
      needs longer inner solves between multiplier updates, e.g. contributions that must travel far
      from the start; most problems converge within a few outer iterations and never pay for them). Only the first
      start's run lengthens: a later start that does not converge (it often heads for a worse
      KKT point) would otherwise hold a vmapped batch 2.75x longer.
    learning_rate / lr_decay / lr_min: initial Adam step in log units (0.02 = 2 % moves). After
      each block the step adapts to the progress ratio (net displacement / path length): it grows
      1.5x (up to 5x the initial) while the iterate drifts steadily and shrinks by ``lr_decay`` when
      it zig-zags; floored at ``lr_min``. Within a block it decays 5x so each block ends settled.
    penalty_init / penalty_growth / penalty_max: rho schedule; rho grows only when the measured
      violation did not fall below ``penalty_patience`` times its previous value.
    pool_tol: log-contribution gap under which adjacent types are taken as pooled when polishing.
    zero_tol: scaled variable (m / data scale, t / value scale) under which it is taken as 0
      when polishing (exclusion: m_i = 0).
    active_tol: scaled constraint slack under which a constraint counts as binding (the start's
      multiplier estimate; the constraints the SQP polish found binding, for its final Newton).
    polish: after every outer iteration, polish the current iterate: a few SQP steps
      (``_kkt.sqp_polish``: QP subproblems by interior point, so the QP picks the active set),
      then active-set Newton on the constraints the SQP found binding (pools and exclusions
      exact); the solve ends as soon as a polished point meets the tolerances.
    sqp_steps / qp_iterations: SQP steps per polish (stopping early once a step moves nothing
      beyond rounding) and interior-point iterations per QP.
    newton_steps / polish_rounds: Newton steps per active set (stopping early once a full step
      moves nothing beyond rounding) and active-set changes (one per round) of the final Newton.
    feasibility_tol: accepted max violation *relative to the value scale*: violations up to
      ``feasibility_tol * (v(1) - v(0))`` money are accepted (``FEASIBILITY_TOL`` = 1e-10, i.e.
      1e-8 money for v(r) = 100 r; the exact solver's rule, so both methods give the same verdict
      and scaling v and every cost by one factor leaves it unchanged).  kkt_tol: accepted scaled
      stationarity (and complementarity).
    full_start: where the full parameterization starts when no ``x0`` or ``warm_start`` is given:
      "reduced" (first from the reduced solve's contract, whose rewards the full solve then
      re-optimizes with every IR and pairwise IC penalized, so agreement certifies the simplified
      constraint set there; then from the ``starts`` best candidates) or "candidates" (only the
      candidates: the full set's, with its least rewards, ``_start.start_candidates``).
    starts: the solve runs from the ``starts`` best feasible candidate menus in turn
      (``lax.map`` inside the kernel; ``_start``) and keeps the converged run with the largest E[a]
      (the exact solver's multi-start). The objective is not concave (the accuracy curve's
      convex part near 0; ``tests/test_mechanism_properties.py``), and from the best start alone
      the ALM can end at a KKT point with a costly type excluded while pooling it pays more.
      Each start costs a full solve (the loop runs until the slower one stops); 1 turns it off (on
      60 random I = 3, 4 problems, ``benchmarks/alm_vs_exact.py``, the second start changed no
      result and cost 2-2.6x the batched time).
      A given ``x0`` is the only start.
    infeasible_patience: the run stops ("infeasible") after this many consecutive outer
      iterations with rho at ``penalty_max``, the violation above ``active_tol`` (scaled) and not
      below 0.9 times its previous value: more iterations cannot help (an empty simplified set,
      ``solve_alm``'s full fallback), and under ``vmap`` they would hold the whole batch.
    """

    max_outer: int = 40
    inner_steps: int = 60
    long_after: int = 10
    long_inner_steps: int = 200
    learning_rate: float = 0.02
    lr_decay: float = 0.5
    lr_min: float = 1e-6
    penalty_init: float = 10.0
    penalty_growth: float = 10.0
    penalty_max: float = 1e9
    penalty_patience: float = 0.25
    pool_tol: float = 1e-3
    zero_tol: float = 1e-6
    active_tol: float = 1e-4
    feasibility_tol: float = FEASIBILITY_TOL
    kkt_tol: float = 1e-8
    polish: bool = True
    sqp_steps: int = 8
    qp_iterations: int = 30
    newton_steps: int = 10
    polish_rounds: int = 3
    full_start: str = "reduced"
    starts: int = 2
    infeasible_patience: int = 3


class ALMState(NamedTuple):
    z: jnp.ndarray  # log of the scaled variables
    lam: jnp.ndarray
    rho: jnp.ndarray
    violation: jnp.ndarray
    outer: jnp.ndarray
    x: jnp.ndarray  # the latest polished (or snapped) candidate and its certificate
    mu: jnp.ndarray
    kkt: _kkt.KKTResiduals
    polished: jnp.ndarray
    converged: jnp.ndarray
    lr: jnp.ndarray  # current Adam step (reduced parameterization)
    steps: jnp.ndarray  # inner optimizer steps taken
    stuck: jnp.ndarray  # consecutive outer iterations at penalty_max without the violation falling
    long_blocks: jnp.ndarray  # whether blocks lengthen after ``long_after`` (the first start only)


class ALMResult(NamedTuple):
    """Raw kernel output (scaled units); ``status`` is a ``Status`` int."""

    x: jnp.ndarray
    multipliers: jnp.ndarray  # over H = (G, B)
    scales: Scales
    status: jnp.ndarray
    outer_iterations: jnp.ndarray
    steps: jnp.ndarray
    kkt: _kkt.KKTResiduals
    polished: jnp.ndarray


def _to_x(z, parameterization: str):
    """Log-parameters z -> scaled variables x = exp(z) (> 0; monotone for reduced by projection)."""
    return jnp.exp(z)


def _from_x(x, parameterization: str):
    return jnp.log(x)


def alm_kernel(problem, table: OutcomeTable, x0=None, *, parameterization: str = "reduced",
               options: ALMOptions = ALMOptions(), warm_start=None, restart_from=None) -> ALMResult:
    """The jittable, vmappable ALM solve of one problem (see module docstring).

    Args:
      problem: ``ContractProblem`` (leaves may be traced; N may differ across a vmapped batch).
      table: ``OutcomeTable`` for the problem (padded rows allowed).
      x0: optional warm start in scaled units (from a previous ``ALMResult.x`` with the same scales).
      parameterization: "reduced" or "full" (static).
      options: ``ALMOptions`` (static).
      warm_start: optional (I,) contributions m (units of data, monotone), e.g. a learned
        mechanism's (``diffcontract.learned``): the only start, with the rewards of the
        parameterization's candidates (``_start.REWARDS``). The first iteration then polishes the
        start before any Adam step (a warm start near the optimum converges without descending at
        all); its inner steps are not counted.
      restart_from: optional (I,) contributions m (monotone) where an earlier solve stopped: the
        first start, before the ``options.starts`` best candidates (``_full_fallback``).
    """
    dtype = jnp.result_type(problem.costs)
    table = with_weights(problem, table)
    warm = x0 is not None or warm_start is not None
    constraints = _CANDIDATES[parameterization]
    rewards = lambda m: REWARDS[constraints](m, problem.costs, problem.reservation_utility)  # noqa: E731
    start_ms, distinct = _start_menus(problem, table, 1 if warm else options.starts, constraints)
    data_scale = jnp.maximum(jnp.maximum(jnp.max(start_ms[0]), jnp.max(problem.reservation_data)), 1.0)
    value_scale = problem.valuation(jnp.asarray(1.0, dtype)) - problem.valuation(jnp.asarray(0.0, dtype))
    scales = Scales(data_scale, value_scale)
    feasibility_money = options.feasibility_tol * value_scale  # relative tolerance -> money
    if parameterization == "full" and not warm and restart_from is None and options.full_start == "reduced":
        reduced = alm_kernel(problem, table, parameterization="reduced", options=options)
        restart_from = _kkt.decode(reduced.x, problem, reduced.scales, "reduced")[0]
    if restart_from is not None:
        start_ms = jnp.concatenate([jnp.asarray(restart_from, dtype)[None, :], start_ms])
        distinct = jnp.concatenate([jnp.ones((1,), bool), distinct])
    start_ms = jnp.maximum(start_ms, 1e-3 * data_scale)  # log-parameterized: no exact zeros
    if warm_start is not None:  # as given (a zero is snapped back to an exact exclusion by the polish)
        start_ms, distinct = jnp.asarray(warm_start, dtype)[None, :], jnp.ones((1,), bool)
    x_starts = jax.vmap(lambda m: _kkt.encode(m, rewards(m), scales, parameterization))(start_ms)
    if x0 is not None:
        x_starts, distinct = jnp.asarray(x0, dtype)[None, :], jnp.ones((1,), bool)
    x_starts = jnp.maximum(jax.vmap(lambda x: _kkt.project(x, parameterization))(x_starts), 1e-9)

    args = (problem, table, scales, parameterization)
    F = lambda x: _kkt.objective(x, *args)  # noqa: E731
    G = lambda x: _kkt.general_constraints(x, *args)  # noqa: E731
    num_g = G(x_starts[0]).shape[0]

    def lagrangian(z, lam, rho):
        x = _to_x(z, parameterization)
        shifted = jnp.maximum(0.0, lam - rho * G(x))
        return F(x) + jnp.sum(shifted**2 - lam**2) / (2.0 * rho)

    if parameterization == "reduced":
        adam = optax.inject_hyperparams(optax.adam)(learning_rate=options.learning_rate)

        def inner_solve(z, lam, rho, lr, num_steps):
            def inner(k, carry):
                u, opt_state, path = carry
                opt_state.hyperparams["learning_rate"] = lr * 0.2 ** (k / num_steps)
                grad = jax.grad(lagrangian)(u, lam, rho)
                updates, opt_state = adam.update(grad, opt_state, u)
                # Monotone m <=> monotone log m: the projection is isotonic regression of u.
                u_new = isotonic_regression(u + updates)
                u_new = jnp.where(jnp.all(jnp.isfinite(u_new)), u_new, u)
                return u_new, opt_state, path + jnp.max(jnp.abs(u_new - u))

            u, _, path = jax.lax.fori_loop(0, num_steps, inner, (z, adam.init(z), jnp.zeros((), dtype)))
            # Adapt the step to the progress ratio (net displacement / path length): steady drift
            # keeps the step, zig-zag around a point halves it. Contributions far from the optimum
            # keep moving fast; near it the iterate settles.
            ratio = jnp.max(jnp.abs(u - z)) / jnp.maximum(path, 1e-300)
            new_lr = jnp.where(ratio > 0.5, jnp.minimum(lr * 1.5, options.learning_rate * 5.0), lr * options.lr_decay)
            return u, jnp.maximum(new_lr, options.lr_min)
    else:
        lbfgs = optax.lbfgs()

        def inner_solve(z, lam, rho, lr, num_steps):
            fn = lambda w: lagrangian(w, lam, rho)  # noqa: E731
            value_and_grad = optax.value_and_grad_from_state(fn)

            def inner(_, carry):
                w, opt_state = carry
                value, grad = value_and_grad(w, state=opt_state)
                updates, opt_state = lbfgs.update(grad, opt_state, w, value=value, grad=grad, value_fn=fn)
                w_new = w + updates
                return jnp.where(jnp.all(jnp.isfinite(w_new)), w_new, w), opt_state

            return jax.lax.fori_loop(0, num_steps, inner, (z, lbfgs.init(z)))[0], lr

    def block_steps(state):
        # Inner steps of the next block (see ``ALMOptions.long_after``).
        if parameterization == "full":  # 60 L-BFGS steps with line searches already go far
            return jnp.asarray(options.inner_steps)
        long = state.long_blocks & (state.outer >= options.long_after)
        return jnp.where(long, options.long_inner_steps, options.inner_steps)

    def alm_update(state: ALMState):
        z, lr = inner_solve(state.z, state.lam, state.rho, state.lr, block_steps(state))
        g = G(_to_x(z, parameterization))
        lam = jnp.maximum(0.0, state.lam - state.rho * g)
        violation = jnp.maximum(-jnp.min(g), 0.0)
        # Raise rho only when feasibility is lagging: the violation fell by less than the patience
        # factor and is above the feasibility tolerance (a needless rho only ill-conditions the
        # inner solve; a violation left above tolerance, e.g. 4e-5 with an L-BFGS inner solve that
        # no longer moves, would hold the iterate there for good).
        grow = (violation > options.penalty_patience * state.violation) & (violation > options.feasibility_tol)
        rho = jnp.where(grow, jnp.minimum(state.rho * options.penalty_growth, options.penalty_max), state.rho)
        return z, lam, rho, violation, lr

    def guess_active(x, lam):
        # Active if nearly binding or if the ALM multiplier estimate is positive.
        g_active = (lam > 0.0) | (G(x) <= options.active_tol)
        b_active = _kkt.simple_constraints(x, parameterization) <= 1e-14
        return jnp.concatenate([g_active, b_active])

    def ls_multipliers(x, active):
        # Least-squares multipliers of the active constraints of H = (G, B) at x.
        grad = jax.grad(F)(x)
        jac_h = jax.jacfwd(lambda w: _kkt.all_constraints(w, *args))(x)
        mu = jnp.linalg.lstsq(jnp.where(active[:, None], jac_h, 0.0).T, grad)[0]
        return jnp.where(active, mu, 0.0)

    def snap(z):
        # Gaps below pool_tol (in log m) become exact pools before the Newton polish, and scaled
        # variables below zero_tol become exact zeros (a type excluded from the contract, m_i = 0,
        # which the log-parameterization only approaches); the polish's active set then keeps or
        # releases them by the sign of their multipliers.
        if parameterization == "reduced":
            gaps = jnp.diff(z)
            z = z[0] + jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum(jnp.where(gaps <= options.pool_tol, 0.0, gaps))])
        else:
            # Full: m is not projected, so a pool is only approached (and may be out of order by
            # ulps); adjacent types whose log m differ by at most pool_tol get their group's mean
            # log m and log t (a pool's items are equal: its IC pairs force equal t).
            num = problem.costs.shape[0]
            group = jnp.concatenate([jnp.zeros((1,), jnp.int32),
                                     jnp.cumsum(jnp.abs(jnp.diff(z[:num])) > options.pool_tol)])
            same = (group[:, None] == group[None, :]).astype(dtype)
            mean = same @ jnp.reshape(z, (2, num)).T / jnp.sum(same, axis=1)[:, None]
            z = jnp.reshape(mean.T, (2 * num,))
        x = _to_x(z, parameterization)
        return jnp.where(x < options.zero_tol, 0.0, x)

    def certify(x, mu, active):
        # Certificate multipliers: non-negative least squares on the active set (robust when it is
        # degenerate and the multipliers are not unique), then the KKT residuals and their score.
        mu = _kkt.certificate_multipliers(x, active | (mu > 0), mu, *args)
        kkt = _kkt.kkt_residuals(x, mu, *args)
        score = jnp.maximum(jnp.maximum(kkt.stationarity, kkt.feasibility), kkt.complementarity)
        ok = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(mu))
        return x, mu, kkt, jnp.where(ok, score, jnp.inf)

    def polish(x, lam):
        """SQP from the snapped iterate (``_kkt.sqp_polish``), then active-set Newton on the
        constraints the SQP found binding (``_kkt.polish``: pools and exclusions exact, to
        rounding); the better certified of the two: (x, mu, kkt, score)."""
        mu = jnp.concatenate([lam, jnp.zeros((x.shape[0],), dtype)])
        xs, mus = _kkt.sqp_polish(x, mu, *args, steps=options.sqp_steps, qp_iterations=options.qp_iterations)
        xs = jnp.where(jnp.all(jnp.isfinite(xs)), _kkt.project(xs, parameterization), x)
        mus = jnp.where(jnp.all(jnp.isfinite(mus)), jnp.maximum(mus, 0.0), mu)
        binding = (_kkt.all_constraints(xs, *args) <= options.active_tol) & (mus > 1e-12)
        binding = binding | jnp.concatenate([jnp.zeros((num_g,), bool), _kkt.simple_constraints(xs, parameterization) <= 1e-14])
        xn, mun, actn = _kkt.polish(xs, mus, binding, *args, newton_steps=options.newton_steps,
                                    rounds=options.polish_rounds)
        ok = jnp.all(jnp.isfinite(xn)) & jnp.all(jnp.isfinite(mun))
        xn, mun, actn = jnp.where(ok, xn, xs), jnp.where(ok, mun, mus), jnp.where(ok, actn, binding)
        candidates = [certify(xs, mus, binding), certify(xn, mun, actn)]
        newton_better = candidates[1][3] <= candidates[0][3]
        return jax.tree_util.tree_map(lambda a, c: jnp.where(newton_better, a, c), *candidates[::-1])

    def attempt(z, lam):
        """Snap, polish, certify: (x, mu, kkt, polished, converged)."""
        x = snap(z)
        active = guess_active(x, lam)
        mu0 = jnp.maximum(ls_multipliers(x, active), 0.0)
        kkt0 = _kkt.kkt_residuals(x, mu0, *args)
        if options.polish:
            xp, mup, kktp, score = polish(x, lam)
            score0 = jnp.maximum(jnp.maximum(kkt0.stationarity, kkt0.feasibility), kkt0.complementarity)
            better = score < score0
            x = jnp.where(better, xp, x)
            mu = jnp.where(better, mup, mu0)
            kkt = jax.tree_util.tree_map(lambda a, c: jnp.where(better, a, c), kktp, kkt0)
        else:
            mu, kkt, better = mu0, kkt0, jnp.asarray(False)
        m, t = _kkt.decode(x, problem, scales, parameterization)
        res = residuals(m, t, moments(m, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
        converged = ((max_violation(res) <= feasibility_money) & (kkt.stationarity <= options.kkt_tol)
                     & (kkt.complementarity <= options.kkt_tol) & jnp.all(jnp.isfinite(x)))
        return x, jnp.maximum(mu, 0.0), kkt, better, converged

    def body(state: ALMState) -> ALMState:
        if warm_start is not None:
            # Polish the warm start itself first: no Adam steps in the first iteration.
            first = state.outer == 0
            z, lam, rho, violation, lr = jax.lax.cond(
                first, lambda s: (s.z, s.lam, s.rho, s.violation, s.lr), alm_update, state)
            steps = state.steps + jnp.where(first, 0, block_steps(state))
        else:
            z, lam, rho, violation, lr = alm_update(state)
            steps = state.steps + block_steps(state)
        x, mu, kkt, polished, converged = attempt(z, lam)
        hopeless = (rho >= options.penalty_max) & (violation > options.active_tol) & (violation > 0.9 * state.violation)
        stuck = jnp.where(hopeless, state.stuck + 1, 0)
        return ALMState(z, lam, rho, violation, state.outer + 1, x, mu, kkt, polished, converged, lr, steps, stuck,
                        state.long_blocks)

    def cond(state: ALMState):
        return ((~state.converged) & (state.outer < options.max_outer) & jnp.all(jnp.isfinite(state.z))
                & (state.stuck < options.infeasible_patience))

    def run_from(start):
        x_start, index = start
        # Start the multipliers at their least-squares estimate for the start's near-active constraints.
        lam_start = jnp.maximum(ls_multipliers(x_start, guess_active(x_start, jnp.zeros((num_g,), dtype)))[:num_g], 0.0)
        z_start = _from_x(x_start, parameterization)
        if parameterization == "reduced":
            z_start = isotonic_regression(z_start)
        # No separate polish of the start: one traced copy of ``attempt`` (inside the loop) halves
        # the compile time, and under vmap every member would pay for it anyway.
        kkt_none = _kkt.KKTResiduals(*(jnp.asarray(jnp.inf, dtype) for _ in range(4)))
        return jax.lax.while_loop(cond, body, ALMState(
            z=z_start, lam=lam_start, rho=jnp.asarray(options.penalty_init, dtype),
            violation=jnp.asarray(jnp.inf, dtype), outer=jnp.asarray(0), x=x_start,
            mu=jnp.zeros((num_g + x_start.shape[0],), dtype), kkt=kkt_none,
            polished=jnp.asarray(False), converged=jnp.asarray(False), lr=jnp.asarray(options.learning_rate, dtype),
            steps=jnp.asarray(0), stuck=jnp.asarray(0), long_blocks=index == 0))

    # One start after the other (``lax.map``): a vmap over starts nested in a vmap over problems
    # deadlocked XLA's CPU runtime at batches of 256 (jax 0.10.2); a vmapped while loop runs until
    # its slowest member anyway, so the sequential form costs about the same.
    runs = jax.lax.map(run_from, (x_starts, jnp.arange(x_starts.shape[0])))
    # Keep the converged run with the largest E[a] (the first start's run when none converged).
    run_values = jax.vmap(F)(runs.x)
    score = jnp.where(runs.converged & jnp.all(jnp.isfinite(runs.x), axis=1), run_values, jnp.inf)
    chosen = jnp.where(jnp.any(jnp.isfinite(score)), jnp.argmin(score), 0)
    st = jax.tree_util.tree_map(lambda a: a[chosen], runs)
    outer_total = jnp.sum(jnp.where(distinct, runs.outer, 0))
    steps_total = jnp.sum(jnp.where(distinct, runs.steps, 0))
    x = st.x
    m, t = _kkt.decode(x, problem, scales, parameterization)
    res = residuals(m, t, moments(m, problem, table).reward_bounds, problem.costs, problem.reservation_utility)
    violation_money = max_violation(res)
    finite = jnp.all(jnp.isfinite(x)) & jnp.isfinite(st.kkt.stationarity)
    infeasible = (st.rho >= options.penalty_max) & (violation_money > feasibility_money)
    status = jnp.where(
        st.converged & finite, Status.CONVERGED,
        jnp.where(~finite, Status.NONFINITE,
                  jnp.where(infeasible, Status.INFEASIBLE,
                            jnp.where(st.outer >= options.max_outer, Status.MAX_ITERATIONS, Status.STALLED))))
    return ALMResult(x, st.mu, scales, status, outer_total, steps_total, st.kkt,
                     st.polished)


def _check_warm_start(warm_start, problem, name: str = "warm_start") -> jnp.ndarray:
    """``warm_start`` as a float64 (I,) array; ValueError naming it when it is not a valid menu."""
    m = np.asarray(warm_start, dtype=np.float64)
    num = problem.costs.shape[-1]
    if m.shape != (num,):
        raise ValueError(f"{name} must have shape ({num},) (contributions, canonical order), got {m.shape}")
    if not np.all(np.isfinite(m)) or np.any(m < 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {m.tolist()}")
    if np.any(np.diff(m) < 0.0):
        raise ValueError(f"{name} must be non-decreasing (canonical order, costliest type first), got {m.tolist()}")
    return jnp.asarray(m)


def _start_menus(problem, table, count: int, constraints: str = "simplified"):
    """The ``count`` best feasible starting menus (``_start.start_candidates`` of ``constraints``):
    ((count', I) contributions, (count',) bool).

    count' = min(count, 2I). Row 0 is ``best_start``'s menu (the m^res envelope when none is
    feasible); a later row with no further feasible candidate repeats row 0 (the same run, no
    extra iterations) and is flagged False in the second output ("distinct start"). Candidates
    equal to a better one within 1e-9 relative are skipped (as the exact solver's ``_start_menus``).
    """
    if count == 1:
        return best_start(problem, table, constraints)[0][None, :], jnp.ones((1,), bool)
    candidates = start_candidates(problem, table, constraints)
    menus, found, value = candidates
    count = min(count, menus.shape[0])
    # A menu found twice (a floored row whose floor is inactive equals its pooled row) is one start.
    by_value = jnp.argsort(jnp.where(found, -value, jnp.inf))
    sorted_menus = menus[by_value]
    same = jnp.all(jnp.abs(sorted_menus[:, None, :] - sorted_menus[None, :, :])
                   <= 1e-9 * jnp.abs(sorted_menus[None, :, :]), axis=-1)
    earlier = jnp.any(jnp.tril(same, k=-1) & found[by_value][None, :], axis=1)
    found = found.at[by_value].set(found[by_value] & ~earlier)
    order = jnp.argsort(jnp.where(found, -value, jnp.inf))[:count]
    first, _ = best_candidate(problem, candidates)
    distinct = found[order] | (jnp.arange(count) == 0)
    return jnp.where(distinct[:, None], menus[order], first[None, :]).at[0].set(first), distinct


_alm_jit = jax.jit(alm_kernel, static_argnames=("parameterization", "options"))


def _solution_from_result(problem, table, result: ALMResult, parameterization: str, wall_time: float,
                          backend: str = "enumerate") -> Solution:
    """Assemble the ``Solution`` record (jittable and vmappable: all leaves are arrays)."""
    m, t = _kkt.decode(result.x, problem, result.scales, parameterization)
    mom = moments(m, problem, table)
    res = residuals(m, t, mom.reward_bounds, problem.costs, problem.reservation_utility)
    num_g = result.multipliers.shape[-1] - result.x.shape[-1]
    lam_g = result.multipliers[:num_g] / result.scales.value
    num = m.shape[0]
    if parameterization == "reduced":
        mult = {"budget": lam_g[:num], "ir_others": lam_g[num:],
                "monotone": result.multipliers[num_g:] / result.scales.data}
    else:
        mult = {"budget": lam_g[:num], "ir": lam_g[num:2 * num], "ic": lam_g[2 * num:],
                "nonnegative": result.multipliers[num_g:]}
    cert = Certificate(multipliers=mult, stationarity=result.kkt.stationarity,
                       complementarity=result.kkt.complementarity)
    return Solution(
        problem=problem, **menu_fields(problem, m, t, mom, res), status=result.status,
        iterations=result.steps, wall_time=wall_time, certificate=cert, method="alm",
        constraints=parameterization, backend=backend, message="",
    )


def solve_alm(problem, parameterization: str = "reduced", options: ALMOptions | None = None, x0=None,
              backend: str = "auto", backend_options: dict | None = None, warm_start=None, restart_from=None,
              **overrides) -> Solution:
    """Solve one problem with the augmented-Lagrangian method (float64).

    Args:
      problem: ``ContractProblem``.
      parameterization: "reduced" (binding IC/IR, monotone m by projection) or "full" (every IR
        and pairwise IC penalized). The aliases "simplified" -> "reduced" are accepted.
      options: ``ALMOptions``; keyword ``overrides`` replace single fields.
      x0: optional warm start (scaled units, as in ``ALMResult.x``).
      warm_start: optional (I,) contributions m (units of data, canonical order, non-decreasing),
        e.g. ``LearnedMechanism.warm_start(problem)``: the only start (see ``alm_kernel``).
      restart_from: optional (I,) contributions (as ``warm_start``): the first of the starts, before
        the candidates (``alm_kernel``; the reduced solve's end point in ``_full_fallback``).
      backend, backend_options: expectation backend and its ``make_backend`` options (as for
        ``solve_exact``). The ALM's polish uses second derivatives: with "chunked" or
        "convolution" each costs a pass over the outcomes or the lattice per Hessian column.

    One participant (N = 1): the feasible set is one point, which an augmented Lagrangian cannot
    approach (it ends "infeasible"); the reservation menu is returned instead, checked against
    the full constraint set (``_single.solve_single_participant``), without compiling anything.

    A reduced solve that does not converge is not final (``_full_fallback``): INFEASIBLE (penalty
    at ``penalty_max`` and the violation above tolerance) can mean only that the simplified
    constraint set is empty while the full problem is feasible, and MAX_ITERATIONS or STALLED is
    often finished by the full parameterization from where the reduced one stopped. The full
    parameterization is then solved and its ``Solution`` returned (``constraints="full"``, the
    message says why) when the reduced one was infeasible or the full one converged.
    """
    parameterization = {"simplified": "reduced"}.get(parameterization, parameterization)
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"constraints/parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}")
    options = (options or ALMOptions())._replace(**overrides)
    if problem.num_participants == 1:
        resolve_backend(backend, 1, problem.num_types)  # a bad name is an error whatever N
        return solve_single_participant(problem, "alm", parameterization, options.feasibility_tol)
    start = time.perf_counter()
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        backend_name, table = make_backend(problem64, backend, **(backend_options or {}))
        if warm_start is not None:
            warm_start = _check_warm_start(warm_start, problem64)
        if restart_from is not None:
            restart_from = _check_warm_start(restart_from, problem64, "restart_from")
        kernel_problem = without_input_order(problem64)  # one compilation for every type order
        result = _alm_jit(kernel_problem, table, x0, parameterization=parameterization, options=options,
                          warm_start=warm_start, restart_from=restart_from)
        jax.block_until_ready(result)
        sol = _solution_from_result(kernel_problem, table, result, parameterization, 0.0, backend_name)
        sol = jax.tree_util.tree_map(np.asarray, sol.replace(problem=problem64))
    status = int(sol.status)
    message = f"ALM: {int(result.outer_iterations)} outer iterations, polished={bool(result.polished)}"
    sol = sol.replace(wall_time=time.perf_counter() - start, status=status, iterations=int(sol.iterations),
                      message=message)
    if (status != Status.CONVERGED and parameterization == "reduced" and x0 is None and warm_start is None
            and restart_from is None):
        return _full_fallback(problem, sol, options, backend, backend_options, start)
    return sol


def restart_menu(m) -> np.ndarray:
    """A reduced solve's contributions (..., I) as ``restart_from`` for the full parameterization:
    where it stopped, clipped to the monotone non-negative menus ``_check_warm_start`` accepts (the
    polish can leave ulps off)."""
    return np.maximum.accumulate(np.maximum(np.asarray(m, np.float64), 0.0), axis=-1)


def _full_fallback(problem, reduced: Solution, options, backend, backend_options, start: float) -> Solution:
    """The full parameterization's solve of a problem the reduced one did not converge on.

    The reduced parameterization is MODEL.md's simplified set, whose binding local ICs can make it
    empty while the full problem is feasible (a cheaper type's IR binding above that IC; see
    ``solve_exact``): an "infeasible" reduced solve is never final, and the full solve is returned
    whatever its status. A reduced solve that ran out of iterations (or stalled) near a point where
    the simplified set's binding constraints degenerate is often finished by the full
    parameterization from where it stopped (its L-BFGS moves m and t freely). The full solve runs
    from there first, then from the full set's best candidates (``_start.start_candidates`` with
    the least rewards: where the simplified set is empty, the reduced end point can lie in a poor
    basin, e.g. E[a] 0.06 where a floored candidate starts at 0.57), keeping its best converged
    run. It is returned when it converged (or the reduced set was infeasible), else the reduced
    one, whose message says so. (One more compilation, only here.)
    """
    full = solve_alm(problem, "full", options, None, backend, backend_options, restart_from=restart_menu(reduced.m))
    reason = "appears empty" if int(reduced.status) == Status.INFEASIBLE else "did not converge"
    if int(reduced.status) == Status.INFEASIBLE or full.succeeded:
        return full.replace(wall_time=time.perf_counter() - start,
                            iterations=int(reduced.iterations) + int(full.iterations),
                            message=f"reduced (simplified) set {reason} ({reduced.message}, {reduced.status_name}); "
                                    f"full: {full.message}")
    return reduced.replace(wall_time=time.perf_counter() - start,
                           message=f"{reduced.message}; the full parameterization did not converge either "
                                   f"({full.status_name}: {full.message})")
