r"""Augmented-Lagrangian solver: contracts optimized by gradient descent (optax), fully jitted.

For min F(x) s.t. G(x) >= 0, x in the projection set {B(x) >= 0} (see ``_kkt``), the
Powell-Hestenes-Rockafellar augmented Lagrangian is

.. math:: L_\rho(x, \lambda) = F(x) + \frac{1}{2\rho}\sum_j \big(\max(0, \lambda_j - \rho G_j(x))^2 - \lambda_j^2\big).

Each outer iteration (``ALM.step``) runs a block of projected Adam steps on L_rho in log m (the
simplified set: projection by isotonic regression, so pools are exact) or L-BFGS in log (m, t) (the
full set), then updates the multipliers lambda <- max(0, lambda - rho G) and raises rho only when the
measured violation did not fall by ``penalty_patience`` (a residual-driven schedule, not a table of
magic numbers, in the spirit of RegretNet's trainer). Every outer iteration polishes the iterate: SQP
steps whose QP subproblems are solved by interior point (``_kkt.sqp_polish``: the QP picks the active
set), then active-set Newton on the constraints the SQP found binding (``_kkt.polish``: pools and
exclusions exact to rounding); the run ends as soon as a polished point meets the tolerances.

Design notes (measured). Adam's step adapts to the progress ratio (net displacement / path length)
after each block: it grows 1.5x (up to 5x the initial) while the iterate drifts and shrinks by
``lr_decay`` when it zig-zags; within a block it decays 5x so each block ends settled. From outer
iteration ``long_after`` on, the first start's blocks run ``long_inner_steps`` (a problem not
converged by then needs longer inner solves; a later start that does not converge would otherwise
hold a vmapped batch 2.75x longer). Two starts (the driver's best candidates) because the objective
is not concave: from the best start alone the ALM can end with a costly type excluded where pooling
it pays more; on 60 random I = 3, 4 problems the second start cost 2-2.6x the batched time.
``infeasible_patience`` outer iterations at ``penalty_max`` without progress end a run (an empty
simplified set, which the driver's full fallback then solves; under ``vmap`` more iterations would
hold the whole batch).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from . import _kkt
from ..numerics import isotonic_regression
from ._solution import FEASIBILITY_TOL
from .base import AbstractSolver, Iterate, SolveArgs, Start

_ADAM_BLOCK_DECAY = 0.2  # the Adam step decays 5x within a block, so each block ends settled
_LR_GROWTH, _LR_CEILING = 1.5, 5.0  # steady drift: step x1.5, up to 5x the initial
_STEADY_RATIO = 0.5  # progress ratio above which the drift counts as steady
_STALL_RATIO = 0.9  # at penalty_max, a violation above 0.9x its previous value counts as no progress
_BOUND_ACTIVE = 1e-14  # scaled: a simple constraint (m_1, m_{i+1} - m_i, x_i) at most this is active
_MULTIPLIER_POSITIVE = 1e-12  # a multiplier above this marks its constraint binding (the SQP's active set)
_TINY = 1e-300  # guards a division by a path length of 0


@struct.dataclass
class ALM(AbstractSolver):
    """The augmented-Lagrangian solver (jittable, vmappable; see the module docstring).

    Leaves (a new value compiles nothing): learning_rate, lr_decay, lr_min (Adam step in log
    units, 0.02 = 2 % moves); penalty_init, penalty_growth, penalty_max, penalty_patience (rho
    schedule); pool_tol (log-m gap under which adjacent types are pooled when snapping); zero_tol
    (scaled variable under which it is snapped to an exact 0, an excluded type); active_tol
    (scaled slack under which a constraint counts as binding); feasibility_tol (accepted violation
    relative to v(1) - v(0): 1e-10, 1e-8 money for v = 100 r, the exact solver's rule); kkt_tol
    (accepted scaled stationarity and complementarity).
    Static (loop bounds and code paths): max_outer, inner_steps, long_after, long_inner_steps,
    polish, sqp_steps, qp_iterations, newton_steps, polish_rounds, starts (runs from the ``starts``
    best candidates, keeping the best converged), infeasible_patience, full_start ("simplified":
    a full solve first runs from the simplified solve's contract; "candidates": only candidates).
    """

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
    max_outer: int = struct.field(pytree_node=False, default=40)
    inner_steps: int = struct.field(pytree_node=False, default=60)
    long_after: int = struct.field(pytree_node=False, default=10)
    long_inner_steps: int = struct.field(pytree_node=False, default=200)
    polish: bool = struct.field(pytree_node=False, default=True)
    sqp_steps: int = struct.field(pytree_node=False, default=8)
    qp_iterations: int = struct.field(pytree_node=False, default=30)
    newton_steps: int = struct.field(pytree_node=False, default=10)
    polish_rounds: int = struct.field(pytree_node=False, default=3)
    full_start: str = struct.field(pytree_node=False, default="simplified")
    starts: int = struct.field(pytree_node=False, default=2)
    infeasible_patience: int = struct.field(pytree_node=False, default=3)

    jittable: ClassVar[bool] = True
    method: ClassVar[str] = "alm"
    log_parameterized: ClassVar[bool] = True

    def init(self, args: SolveArgs, start: Start) -> "ALMState":
        dtype = start.x.dtype
        num_g = _kkt.general_constraints(start.x, *args.kkt_args).shape[0]
        # The multipliers start at their least-squares estimate for the start's near-active constraints.
        active = self._guess_active(args, start.x, jnp.zeros((num_g,), dtype))
        lam = jnp.maximum(_kkt.least_squares_multipliers(start.x, active, *args.kkt_args)[:num_g], 0.0)
        z = jnp.log(start.x)
        if args.constraints != "full":
            z = isotonic_regression(z)
        inf, zero = jnp.asarray(jnp.inf, dtype), jnp.asarray(0)
        return ALMState(z=z, lam=lam, rho=jnp.asarray(self.penalty_init, dtype), violation=inf, outer=zero, x=start.x,
                        mu=jnp.zeros((num_g + start.x.shape[0],), dtype), kkt=_kkt.KKTResiduals(inf, inf, inf, inf),
                        converged=jnp.asarray(False), lr=jnp.asarray(self.learning_rate, dtype), steps=zero, stuck=zero,
                        long_blocks=jnp.asarray(start.primary), polish_first=jnp.asarray(start.polish_first))

    def step(self, args: SolveArgs, state: "ALMState") -> "ALMState":
        # A warm start near the optimum is polished before any descent: no inner steps in iteration 0.
        skip = (state.outer == 0) & state.polish_first
        z, lam, rho, violation, lr = jax.lax.cond(
            skip, lambda s: (s.z, s.lam, s.rho, s.violation, s.lr), lambda s: self._update(args, s), state)
        steps = state.steps + jnp.where(skip, 0, self._block_steps(args, state))
        x, mu, kkt, converged = self._attempt(args, z, lam)
        hopeless = ((rho >= self.penalty_max) & (violation > self.active_tol)
                    & (violation > _STALL_RATIO * state.violation))
        return state._replace(z=z, lam=lam, rho=rho, violation=violation, outer=state.outer + 1, x=x, mu=mu, kkt=kkt,
                              converged=converged, lr=lr, steps=steps,
                              stuck=jnp.where(hopeless, state.stuck + 1, 0))

    def terminate(self, args: SolveArgs, state: "ALMState"):
        return (state.converged | (state.outer >= self.max_outer) | ~jnp.all(jnp.isfinite(state.z))
                | (state.stuck >= self.infeasible_patience))

    def postprocess(self, args: SolveArgs, state: "ALMState") -> Iterate:
        return Iterate(x=state.x, value=-_kkt.objective(state.x, *args.kkt_args), multipliers=state.mu, kkt=state.kkt,
                       converged=state.converged, out_of_iterations=state.outer >= self.max_outer,
                       infeasible=state.rho >= self.penalty_max, iterations=state.steps)

    # --- one outer iteration -------------------------------------------------------------------
    def _block_steps(self, args, state):
        if args.constraints == "full":  # 60 L-BFGS steps with line searches already go far
            return jnp.asarray(self.inner_steps)
        long = state.long_blocks & (state.outer >= self.long_after)
        return jnp.where(long, self.long_inner_steps, self.inner_steps)

    def _update(self, args, state):
        inner = _adam_block if args.constraints != "full" else _lbfgs_block
        z, lr = inner(self, args, state.z, state.lam, state.rho, state.lr, self._block_steps(args, state))
        g = _kkt.general_constraints(jnp.exp(z), *args.kkt_args)
        lam = jnp.maximum(0.0, state.lam - state.rho * g)
        violation = jnp.maximum(-jnp.min(g), 0.0)
        # Raise rho only while feasibility lags: a needless rho ill-conditions the inner solve, and a
        # violation left above tolerance (4e-5 with an L-BFGS that no longer moves) would stay for good.
        grow = (violation > self.penalty_patience * state.violation) & (violation > self.feasibility_tol)
        rho = jnp.where(grow, jnp.minimum(state.rho * self.penalty_growth, self.penalty_max), state.rho)
        return z, lam, rho, violation, lr

    def _guess_active(self, args, x, lam):
        """Active if nearly binding or if the ALM multiplier estimate is positive."""
        g_active = (lam > 0.0) | (_kkt.general_constraints(x, *args.kkt_args) <= self.active_tol)
        return jnp.concatenate([g_active, _kkt.simple_constraints(x, args.constraints) <= _BOUND_ACTIVE])

    def _snap(self, args, z):
        """Gaps below pool_tol (log m) become exact pools and variables below zero_tol exact zeros (an
        excluded type, which the log-parameterization only approaches); the polish's active set then
        keeps or releases them by the sign of their multipliers."""
        if args.constraints != "full":
            gaps = jnp.diff(z)
            z = z[0] + jnp.concatenate([jnp.zeros((1,), z.dtype), jnp.cumsum(jnp.where(gaps <= self.pool_tol, 0.0, gaps))])
        else:
            # m is not projected, so a pool is only approached: adjacent types whose log m differ by at
            # most pool_tol get their group's mean log m and log t (a pool's IC pairs force equal t).
            num = args.problem.costs.shape[0]
            group = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(jnp.abs(jnp.diff(z[:num])) > self.pool_tol)])
            same = (group[:, None] == group[None, :]).astype(z.dtype)
            mean = same @ jnp.reshape(z, (2, num)).T / jnp.sum(same, axis=1)[:, None]
            z = jnp.reshape(mean.T, (2 * num,))
        x = jnp.exp(z)
        return jnp.where(x < self.zero_tol, 0.0, x)

    def _polish(self, args, x, lam):
        """SQP from the snapped iterate, then active-set Newton on the constraints it found binding;
        the better certified of the two: (x, mu, kkt, score)."""
        num_g = lam.shape[0]
        mu = jnp.concatenate([lam, jnp.zeros((x.shape[0],), x.dtype)])
        xs, mus = _kkt.sqp_polish(x, mu, *args.kkt_args, steps=self.sqp_steps, qp_iterations=self.qp_iterations)
        xs = jnp.where(jnp.all(jnp.isfinite(xs)), _kkt.project(xs, args.constraints), x)
        mus = jnp.where(jnp.all(jnp.isfinite(mus)), jnp.maximum(mus, 0.0), mu)
        binding = (_kkt.all_constraints(xs, *args.kkt_args) <= self.active_tol) & (mus > _MULTIPLIER_POSITIVE)
        binding = binding | jnp.concatenate([jnp.zeros((num_g,), bool),
                                             _kkt.simple_constraints(xs, args.constraints) <= _BOUND_ACTIVE])
        newton = _kkt.polish(xs, mus, binding, *args.kkt_args, newton_steps=self.newton_steps,
                             rounds=self.polish_rounds)
        ok = jnp.all(jnp.isfinite(newton[0])) & jnp.all(jnp.isfinite(newton[1]))
        sqp, newton = _certify(args, xs, mus, binding), _certify(args, *_where(ok, newton, (xs, mus, binding)))
        return _where(newton[3] <= sqp[3], newton, sqp)

    def _attempt(self, args, z, lam):
        """Snap, polish, certify: (x, mu, kkt, converged)."""
        x = self._snap(args, z)
        mu = jnp.maximum(_kkt.least_squares_multipliers(x, self._guess_active(args, x, lam), *args.kkt_args), 0.0)
        kkt = _kkt.kkt_residuals(x, mu, *args.kkt_args)
        if self.polish:
            xp, mup, kktp, score = self._polish(args, x, lam)
            x, mu, kkt = _where(score < _score(kkt), (xp, mup, kktp), (x, mu, kkt))
        violation = _kkt.money_violation(x, *args.kkt_args)
        converged = ((violation <= self.feasibility_tol * args.scales.value) & (kkt.stationarity <= self.kkt_tol)
                     & (kkt.complementarity <= self.kkt_tol) & jnp.all(jnp.isfinite(x)))
        return x, jnp.maximum(mu, 0.0), kkt, converged


class ALMState(NamedTuple):
    """One ALM run: z log scaled variables; lam, rho multipliers and penalty; violation the scaled max
    violation of G; x, mu, kkt, converged the latest polished candidate and its certificate;
    lr the Adam step; steps inner steps taken; stuck outer iterations at penalty_max without progress;
    long_blocks, polish_first the start's flags (``Start``)."""

    z: jnp.ndarray
    lam: jnp.ndarray
    rho: jnp.ndarray
    violation: jnp.ndarray
    outer: jnp.ndarray
    x: jnp.ndarray
    mu: jnp.ndarray
    kkt: _kkt.KKTResiduals
    converged: jnp.ndarray
    lr: jnp.ndarray
    steps: jnp.ndarray
    stuck: jnp.ndarray
    long_blocks: jnp.ndarray
    polish_first: jnp.ndarray


def _lagrangian(args, z, lam, rho):
    x = jnp.exp(z)
    shifted = jnp.maximum(0.0, lam - rho * _kkt.general_constraints(x, *args.kkt_args))
    return _kkt.objective(x, *args.kkt_args) + jnp.sum(shifted**2 - lam**2) / (2.0 * rho)


def _adam_block(solver: ALM, args, z, lam, rho, lr, num_steps):
    """Projected Adam on L_rho in log m (monotone m <=> monotone log m: isotonic projection); the
    step adapted to the block's progress ratio. Returns (z, next step)."""
    import optax  # imported where used: not on every import of the package
    adam = optax.inject_hyperparams(optax.adam)(learning_rate=lr)

    def inner(k, carry):
        u, opt_state, path = carry
        opt_state.hyperparams["learning_rate"] = lr * _ADAM_BLOCK_DECAY ** (k / num_steps)
        updates, opt_state = adam.update(jax.grad(_lagrangian, argnums=1)(args, u, lam, rho), opt_state, u)
        u_new = isotonic_regression(u + updates)
        u_new = jnp.where(jnp.all(jnp.isfinite(u_new)), u_new, u)
        return u_new, opt_state, path + jnp.max(jnp.abs(u_new - u))

    u, _, path = jax.lax.fori_loop(0, num_steps, inner, (z, adam.init(z), jnp.zeros((), z.dtype)))
    ratio = jnp.max(jnp.abs(u - z)) / jnp.maximum(path, _TINY)
    new_lr = jnp.where(ratio > _STEADY_RATIO, jnp.minimum(lr * _LR_GROWTH, solver.learning_rate * _LR_CEILING),
                       lr * solver.lr_decay)
    return u, jnp.maximum(new_lr, solver.lr_min)


def _lbfgs_block(solver: ALM, args, z, lam, rho, lr, num_steps):
    """L-BFGS (zoom line search) on L_rho in log (m, t). Returns (z, the unchanged step)."""
    import optax  # imported where used: not on every import of the package
    lbfgs = optax.lbfgs()
    fn = lambda w: _lagrangian(args, w, lam, rho)  # noqa: E731
    value_and_grad = optax.value_and_grad_from_state(fn)

    def inner(_, carry):
        w, opt_state = carry
        value, grad = value_and_grad(w, state=opt_state)
        updates, opt_state = lbfgs.update(grad, opt_state, w, value=value, grad=grad, value_fn=fn)
        w_new = w + updates
        return jnp.where(jnp.all(jnp.isfinite(w_new)), w_new, w), opt_state

    return jax.lax.fori_loop(0, num_steps, inner, (z, lbfgs.init(z)))[0], lr


def _where(condition, a, b):
    """The pytree a where ``condition`` (a () bool) holds, else b."""
    return jax.tree_util.tree_map(lambda u, v: jnp.where(condition, u, v), a, b)


def _score(kkt):
    return jnp.maximum(jnp.maximum(kkt.stationarity, kkt.feasibility), kkt.complementarity)


def _certify(args, x, mu, active):
    """Non-negative least-squares multipliers on the active set (robust where it is degenerate and
    the multipliers are not unique), the KKT residuals and their score: (x, mu, kkt, score)."""
    mu = _kkt.certificate_multipliers(x, active | (mu > 0), mu, *args.kkt_args)
    kkt = _kkt.kkt_residuals(x, mu, *args.kkt_args)
    ok = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(mu))
    return x, mu, kkt, jnp.where(ok, _score(kkt), jnp.inf)
