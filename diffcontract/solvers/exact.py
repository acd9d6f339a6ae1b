"""Exact reference solver: scipy SLSQP on the first-moment problem with JAX derivatives, float64.

The problem is smooth once the expectation is exact (enumeration), so a mature active-set SQP
method finds its KKT points to machine precision. Active linear constraints (monotonicity in the
simplified set, the IC pairs of a pool in the full one) hold *exactly* in each QP step, which is
what makes pooled optima come out exactly pooled rather than nearly separated.

A run (``SLSQP.step``) is one SLSQP solve; SLSQP's line search can stop a hair short of the
optimum ("positive directional derivative"), so up to ``restarts`` warm restarts from where it
stopped rebuild its quasi-Newton model, and a run that ends within ~1e-10 of feasibility gets
minimum-norm Gauss-Newton steps on its violated and binding constraints (``_restore``). A start
that already meets both tolerances (a pooled candidate is often the optimum itself) is kept as is:
SLSQP's QP steps can wander at such degenerate points, where every budget and monotonicity
constraint binds at once. Contributions are scaled per variable (``driver.variable_scales``) so
SLSQP's first quasi-Newton steps are relative moves.

Settled. SLSQP's own test (``ftol`` 1e-15 on the objective) can keep a run crawling long after it
is at the optimum: at N = 3e5, I = 2 (E[a] = 0.99964, flat) it took 48 iterations and ~430 passes
over the outcomes, where iteration 7 was feasible with stationarity <= 1e-12 and equal to the end
point to every digit; on Sec. 6.2 scenario 1 the first such iterate is within 7e-16 of the end
point. So after every SLSQP iteration the KKT certificate is measured, and an iterate whose
violation (relative to v(1) - v(0)) and stationarity are both <= ``settled_tol`` ends the run
(1e-12, a hundred times below ``feasibility_tol``: a point feasible only to ``feasibility_tol``
can sit 3e-12 relative above the optimum).

Infeasibility evidence (``find_feasible``): a phase-1 problem, minimize s subject to
g(x) + s >= 0, x >= 0, s >= 0 (the largest scaled violation), solved by SLSQP. Local evidence for
a non-convex set, not a proof; a point it finds within tolerance is never called infeasible: the
driver restarts from it and its residuals decide. (SLSQP's own exit 4, "inequality constraints
incompatible", is about one linearized subproblem and is not taken as evidence by itself.)
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._cache import kernel_jit
from . import _kkt
from ._solution import FEASIBILITY_TOL
from ..formulation import max_violation
from .base import AbstractSolver, Iterate, SolveArgs, Start

_SLSQP_FTOL = 1e-15  # SLSQP's own stopping test; the KKT certificate decides convergence
_SLSQP_ITERATION_LIMIT = 9  # scipy's SLSQP exit status "iteration limit reached"
_ZERO = 1e-12  # scaled: a variable at most this is at its bound 0; a constraint at most this is binding
_RESTORE_STEPS = 3
_SETTLED_TOL = 1e-12  # relative violation and scaled stationarity of an iterate that is the optimum to rounding


def _stacked(x, args: SolveArgs):
    """(-E[a], constraints) in one vector: G, and for the simplified set monotone m (data / max scale);
    and the money violation (``_kkt.money_violation``) from the same pass."""
    _, _, mom, res = _kkt.measure(x, *args.kkt_args)
    parts = [-mom.expected_accuracy[None], _kkt.constraint_vector(res, args.constraints, args.scales.value)]
    if args.constraints != "full":
        parts.append(jnp.diff(x * args.scales.data) / jnp.max(args.scales.data))
    return jnp.concatenate(parts), max_violation(res)


@kernel_jit
def _evaluate(x, args: SolveArgs):
    """(objective, gradient, constraints, Jacobian, money violation) in scaled variables. Forward mode
    over the I (or 2I) variables with the values as aux: the curve is evaluated once per outcome and its
    derivative pushed along every direction (value_and_grad + jacfwd would pass over the outcomes three
    times)."""
    def both(z):
        out, violation = _stacked(z, args)
        return out, (out, violation)

    jac, (out, violation) = jax.jacfwd(both, has_aux=True)(x)
    return out[0], jac[0], out[1:], jac[1:], violation




class _Evaluator:
    """``_evaluate`` on the host with a one-point cache (scipy asks for f, grad, g, J at one x in turn)."""

    def __init__(self, args: SolveArgs):
        self.args, self.key, self.value = args, None, None

    def __call__(self, x) -> list[np.ndarray]:
        key = np.asarray(x).tobytes()
        if key != self.key:
            out = _evaluate(jnp.asarray(x), self.args)
            self.key, self.value = key, [np.asarray(v, dtype=np.float64) for v in out]
        return self.value


@struct.dataclass
class SLSQP(AbstractSolver):
    """scipy SLSQP from each start (host loop; see the module docstring).

    feasibility_tol: accepted violation relative to v(1) - v(0) (1e-10: 1e-8 money for v = 100 r;
    relative, so scaling v and every cost by one factor leaves the status unchanged).  kkt_tol:
    accepted scaled stationarity.  settled_tol: relative violation and scaled stationarity at which
    an SLSQP iterate ends the run before SLSQP's own stopping test (module docstring, "Settled").
    max_iterations: SLSQP iterations per solve.  restarts: warm restarts while the tolerances are
    unmet.  starts: runs from this many best distinct candidates (None: all of them).
    """

    feasibility_tol: float = FEASIBILITY_TOL
    kkt_tol: float = 1e-6
    settled_tol: float = _SETTLED_TOL
    max_iterations: int = struct.field(pytree_node=False, default=1000)
    restarts: int = struct.field(pytree_node=False, default=2)
    starts: Any = struct.field(pytree_node=False, default=2)

    jittable: ClassVar[bool] = False
    method: ClassVar[str] = "exact"
    scale_octaves: ClassVar[int] = 3  # a contribution's data scale is at least 2^-3 of the largest

    def init(self, args: SolveArgs, start: Start) -> dict:
        state = {"evaluate": _Evaluator(args), "runs": 0, "iterations": 0, "exit": 0, "message": "start"}
        state.update(self._measure(args, state, np.asarray(start.x, np.float64)))
        return state

    def step(self, args: SolveArgs, state: dict) -> dict:
        from scipy import optimize  # imported where used: not on every import of the package
        evaluate, settled, count = state["evaluate"], {}, 0

        def stop_when_settled(x):  # after each SLSQP iteration (module docstring, "Settled")
            nonlocal count
            count += 1
            measured = self._measure(args, state, x)
            if self._done(args, measured, self.settled_tol):
                settled.update(measured)
                raise StopIteration  # scipy >= 1.11 ends the run; an older one passes it on, caught below

        try:
            result = optimize.minimize(
                lambda x: float(evaluate(x)[0]), state["x"], jac=lambda x: evaluate(x)[1], method="SLSQP",
                bounds=[(0.0, None)] * state["x"].size, callback=stop_when_settled,
                constraints=[{"type": "ineq", "fun": lambda x: evaluate(x)[2], "jac": lambda x: evaluate(x)[3]}],
                options={"maxiter": self.max_iterations, "ftol": _SLSQP_FTOL})
        except StopIteration:
            result = None
        if settled:
            x, nit, exit_code = settled["x"], count, 0
            message = f"settled: violation and stationarity <= {self.settled_tol:g}"
        else:
            x, nit, exit_code, message = result.x, int(result.nit), int(result.status), str(result.message)
        state = {**state, "runs": state["runs"] + 1, "iterations": state["iterations"] + nit, "exit": exit_code,
                 "message": message}
        state.update(self._measure(args, state, x))
        if not self._done(args, state) and state["runs"] > self.restarts and np.all(np.isfinite(state["x"])):
            restored = {**state, **self._measure(args, state, _restore(evaluate, state["x"]))}
            if self._done(args, restored):
                state = {**restored, "message": state["message"] + "; feasibility restored by a Gauss-Newton step"}
        return state

    def terminate(self, args: SolveArgs, state: dict) -> bool:
        return (self._done(args, state) or state["runs"] > self.restarts
                or not np.all(np.isfinite(state["x"])))

    def postprocess(self, args: SolveArgs, state: dict) -> Iterate:
        return Iterate(x=state["x"], value=state["value"], multipliers=state["lam"], kkt=state["kkt"], converged=self._done(args, state),
                       out_of_iterations=state["exit"] == _SLSQP_ITERATION_LIMIT, infeasible=False,
                       iterations=state["iterations"])

    def find_feasible(self, args: SolveArgs, x0) -> tuple[np.ndarray, int]:
        """Phase 1 from x0: min s s.t. g(x) + s >= 0, x >= 0, s >= 0. Returns (x, SLSQP iterations)."""
        from scipy import optimize  # imported where used: not on every import of the package
        evaluate = _Evaluator(args)
        x0 = np.maximum(np.asarray(x0, np.float64), 0.0)
        g0 = evaluate(x0)[2]
        y0 = np.append(x0, max(0.0, -float(np.min(g0))) if g0.size else 0.0)
        unit = np.eye(y0.size)[-1]  # the gradient of s
        found = optimize.minimize(
            lambda y: float(y[-1]), y0, jac=lambda y: unit, method="SLSQP", bounds=[(0.0, None)] * y0.size,
            constraints=[{"type": "ineq", "fun": lambda y: evaluate(y[:-1])[2] + y[-1],
                          "jac": lambda y: np.hstack([evaluate(y[:-1])[3], np.ones((g0.size, 1))])}],
            options={"maxiter": self.max_iterations, "ftol": _SLSQP_FTOL})
        return found.x[:-1], int(found.nit)

    def _done(self, args: SolveArgs, state: dict, tol=None) -> bool:
        """Feasible within ``feasibility_tol`` (relative to the value scale) and stationary within
        ``kkt_tol``; with ``tol``, both within ``tol`` instead."""
        feasibility, stationarity = (self.feasibility_tol, self.kkt_tol) if tol is None else (tol, tol)
        return (state["violation"] <= feasibility * float(args.scales.value)
                and state["kkt"].stationarity <= stationarity)

    def _measure(self, args: SolveArgs, state: dict, x) -> dict:
        """The measured point: x (clipped to x >= 0), money violation, multipliers over (G, B), KKT residuals."""
        x = np.maximum(np.asarray(x, dtype=np.float64), 0.0)
        f, grad, g, jac, violation = state["evaluate"](x)
        violation = float(violation)
        if np.all(np.isfinite(grad)) and np.all(np.isfinite(g)) and np.all(np.isfinite(jac)):
            lam_g, lam_b, stationarity, complementarity = _kkt.host_certificate(grad, g, jac, x <= _ZERO)
        else:  # NONFINITE; nnls rejects NaN
            lam_g, lam_b, stationarity, complementarity = np.zeros(g.size), np.zeros(x.size), np.inf, np.inf
        kkt = _kkt.KKTResiduals(stationarity, violation, 0.0, complementarity)
        return {"x": x, "value": -float(f), "violation": violation, "lam": _to_h_layout(lam_g, lam_b, args), "kkt": kkt}


def _to_h_layout(lam_g, lam_b, args: SolveArgs) -> np.ndarray:
    """SLSQP's multipliers (its constraints: G, then for the simplified set monotone m in data / max
    scale; bounds x >= 0) over H = (G, B) of ``_kkt``, B's entries per unit of max(data scale)."""
    if args.constraints == "full":
        return np.concatenate([lam_g, lam_b])
    num_g = lam_g.size - (lam_b.size - 1)
    data = np.asarray(args.scales.data, np.float64) * np.ones(lam_b.size)
    first = lam_b[:1] * np.max(data) / data[:1]  # the bound x_1 >= 0, per m_1 / max scale
    return np.concatenate([lam_g[:num_g], first, lam_g[num_g:]])


def _restore(evaluate: _Evaluator, x, steps: int = _RESTORE_STEPS):
    """Minimum-norm Gauss-Newton steps J_A dx = -min(g_A, 0) on the violated and binding constraints
    A (g <= 1e-12, scaled): SLSQP's line search can stop at a stationary point whose budget is violated
    by ~1e-10 relative; this moves x by as much and no more."""
    for _ in range(steps):
        _, _, g, jac, _ = evaluate(x)
        act = g <= _ZERO
        if not np.any(g < 0.0) or not (np.all(np.isfinite(g)) and np.all(np.isfinite(jac))):
            break
        dx = np.linalg.lstsq(jac[act], -np.minimum(g[act], 0.0), rcond=None)[0]
        x = np.maximum(x + dx, 0.0)
    return x
