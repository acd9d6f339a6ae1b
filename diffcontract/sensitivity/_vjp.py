"""``optimal_contract`` / ``optimal_value``: the exact solve as a differentiable JAX function.

Forward: ``solve_exact`` and the degeneracy analysis on the host (``jax.pure_callback`` under a
trace, a direct call when eager). Backward (``jax.custom_vjp``): one adjoint solve of the KKT
system (``_system.evaluate``), pure JAX.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .. import _precision
from ..problem import ContractProblem, _reservation_jit
from ..solvers import _kkt, solve_exact
from ..solvers.driver import check_constraints
from ._analysis import SensitivityError, analyze, constraint_names, direction_flags, table
from ._api import check_options
from ._system import KKTPoint, Parameters, evaluate, parameters, pinv, reservation_utilities

_FAILED = -1  # status of a forward pass whose solution is not a KKT point the analysis applies to


class OptimalContract(NamedTuple):
    """Output of ``optimal_contract`` (canonical order, like the problem's leaves).

    Attributes:
      contributions: (I,) m, units of data.
      rewards: (I,) t, money.
      expected_value: () E[v(a)], money.
      expected_accuracy: () E[a].
      status: () int32 ``Status`` of the exact solve (outputs are NaN unless CONVERGED), or -1 where
        the solution is not a KKT point the implicit function theorem applies to.
    """

    contributions: jnp.ndarray
    rewards: jnp.ndarray
    expected_value: jnp.ndarray
    expected_accuracy: jnp.ndarray
    status: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class _Spec:
    participants: int
    conditioning: str
    num_types: int
    constraints: str
    policy: str
    active_tol: float
    solver_options: tuple

    def results(self, params: int) -> tuple:
        """(shape, dtype, value on failure) of each result of ``_host_solve``: x (nx,), mu (nh,), active
        (nh,), flags (Y, P), status (), scales (2,), in the variables of ``constraints``."""
        nx = self.num_types * (2 if self.constraints == "full" else 1)
        nh = len(constraint_names(self.num_types, self.constraints))
        return (((nx,), np.float64, np.nan), ((nh,), np.float64, 0.0), ((nh,), bool, False),
                ((2 * self.num_types + 2, params), bool, False), ((), np.int32, _FAILED), ((2,), np.float64, np.nan))

    def problem(self, theta: Parameters, reservation_data) -> ContractProblem:
        """A canonical-order problem from parameters (no validation: leaves may be traced). Leaf types
        match ``_analysis.canonical``'s, so eager calls reuse the host path's compilation of ``evaluate``."""
        leaves = (np.asarray(self.participants, np.int64), *theta, reservation_utilities(theta, reservation_data),
                  reservation_data)
        return ContractProblem.tree_unflatten((self.conditioning, tuple(range(self.num_types))), leaves)

    def evaluate(self, point: KKTPoint, theta: Parameters) -> dict:
        """``_system.evaluate`` at a point of the problem with parameters theta."""
        return evaluate(point, self.problem(theta, point.reservation_data), table(self.participants, self.num_types))


def _host_solve(spec: _Spec, theta: Parameters, reservation_data):
    """Host: solve exactly, analyze; returns (x, mu, active, flags (Y, P), status, scales)."""
    theta = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), theta)
    res = np.asarray(reservation_data, np.float64)
    P = np.asarray(ravel_pytree(theta)[0]).size
    fail = tuple(np.full(shape, value, dtype) for shape, dtype, value in spec.results(P))
    with _precision.float64():
        problem = spec.problem(theta, res)
        solution = solve_exact(problem, constraints=spec.constraints, **dict(spec.solver_options))
        if not solution.succeeded:
            return fail[:4] + (np.int32(solution.status), fail[5])
        if solution.constraints != spec.constraints:
            # The solver fell back to the full set (the simplified one appeared empty): its KKT
            # point has another shape than the one this compiled function was traced for.
            return fail
        try:
            an = analyze(problem, solution, spec.active_tol)
        except SensitivityError:
            return fail
    pt = an.point
    return (np.asarray(pt.x), np.asarray(pt.multipliers), np.asarray(pt.active), direction_flags(an, np.eye(P)),
            np.int32(solution.status), np.asarray([pt.scales.data, pt.scales.value]))


def _forward(spec: _Spec, theta: Parameters, reservation_data):
    num = spec.num_types
    shapes = tuple(jax.ShapeDtypeStruct(shape, dtype) for shape, dtype, _ in spec.results(ravel_pytree(theta)[0].size))
    host = functools.partial(_host_solve, spec)
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((theta, reservation_data))):
        x, mu, active, flags, status, sc = jax.pure_callback(host, shapes, theta, reservation_data,
                                                             vmap_method="sequential")
    else:
        # Eager (e.g. jax.grad without jit): call the host directly. Jitted functions called inside
        # a callback miss the compilation cache of the calling thread, so this saves compilations.
        x, mu, active, flags, status, sc = (jnp.asarray(a) for a in host(theta, reservation_data))
    point = KKTPoint(x, mu, active, _kkt.Scales(sc[0], sc[1]), reservation_data)
    y = jnp.where(status == 0, spec.evaluate(point, theta)["y"], jnp.nan)
    out = OptimalContract(y[:num], y[num:2 * num], y[2 * num], y[2 * num + 1], status)
    return out, (point, flags, theta)


def _backward(spec: _Spec, residuals, cotangent):
    """w . dy/dtheta = w . Yt - (pinv(K)^T [Yx^T w; 0]) . J: one adjoint solve (pure JAX)."""
    point, flags, theta = residuals
    w = jnp.concatenate([jnp.ravel(v) for v in cotangent[:4]])  # (m, t, E[v(a)], E[a])
    ev = spec.evaluate(point, theta)
    adjoint = pinv(ev["K"]).T @ jnp.concatenate([ev["Yx"].T @ w, jnp.zeros_like(point.multipliers)])
    grad = ev["Yt"].T @ w - ev["J"].T @ adjoint
    if spec.policy == "nan":
        # NaN where a one-sided derivative (flags False) meets a non-zero cotangent.
        bad = jnp.any((w != 0)[:, None] & ~flags, axis=0)
        grad = jnp.where(bad, jnp.nan, grad)
    return ravel_pytree(theta)[1](grad), jnp.zeros_like(point.reservation_data)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _optimal(spec: _Spec, theta: Parameters, reservation_data):
    return _forward(spec, theta, reservation_data)[0]


_optimal.defvjp(_forward, _backward)


def optimal_contract(problem: ContractProblem, *, constraints: str = "simplified", nondifferentiable: str = "nan",
                     active_tol: float = 1e-8, **solver_options) -> OptimalContract:
    r"""The exact optimal contract as a differentiable JAX function of the problem's parameters.

    Forward: ``solve_exact`` on the host (``jax.pure_callback``; runs under ``jit``, and under
    ``vmap`` one problem at a time). Backward (``jax.custom_vjp``): the implicit derivative of the
    KKT conditions (``implicit_jacobian``'s linear algebra, adjoint form). The reservation
    utilities are recomputed from the parameters (``problem.reservation`` kernel) and differentiated
    by the envelope theorem, so ``problem.replace(costs=c)`` is the problem with costs c. Gradients
    with respect to probs are the free partials (no renormalization: ``problem.replace(probs=p)``
    evaluates the formulas at p as given).

    Args:
      problem: ``ContractProblem`` whose parameter leaves may be traced; N (``participants``) and the
        static fields must be concrete. Leaves are in canonical order, and so are the outputs and
        the gradients (they follow the pytree).
      constraints: constraint set of the exact solve, "simplified" or "full" (static: it fixes the
        shape of the KKT system). Where the solver answers a simplified solve on the full set (the
        simplified set is empty, or a cheaper type's IR binds and the full set's optimum is higher:
        ``solvers/driver.py``), the "simplified" forward pass returns status -1 (NaN): use "full"
        there (``solve(problem).constraints`` says which).
      nondifferentiable: "nan" (default): gradient entries that are one-sided at this optimum and
        receive a non-zero cotangent are NaN; "keep": the active-set derivative regardless.
      **solver_options: passed to ``solve_exact`` (e.g. ``feasibility_tol``, ``kkt_tol``).

    Returns:
      ``OptimalContract``.

    jit, vmap: the forward pass is a host callback (``vmap`` runs it once per problem); the
    backward pass is pure JAX and batches. Forward mode (``jvp``, ``jacfwd``) is not defined.
    """
    check_options(nondifferentiable=nondifferentiable)
    check_constraints(constraints)
    if jax.dtypes.canonicalize_dtype(np.float64) != np.float64:  # also sees a scoped jax.enable_x64(False)
        raise RuntimeError("optimal_contract needs float64: run it under jax.enable_x64(True) "
                           "(or jax.config.update('jax_enable_x64', True))")
    try:
        participants = int(np.asarray(problem.participants))
    except jax.errors.ConcretizationTypeError as err:
        raise ValueError("optimal_contract needs a concrete number of participants N (close over the problem "
                         "and differentiate its float leaves)") from err
    spec = _Spec(participants, problem.conditioning, problem.num_types, constraints, nondifferentiable,
                 float(active_tol), tuple(sorted(solver_options.items())))
    theta = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), parameters(problem))
    # m^res is not differentiated (envelope theorem): no derivative of the golden-section search.
    _, m_res = _reservation_jit(*jax.lax.stop_gradient((theta.accuracy, theta.valuation, theta.costs, theta.quality)))
    return _optimal(spec, theta, jax.lax.stop_gradient(m_res))


def optimal_value(problem: ContractProblem, **options) -> jnp.ndarray:
    """E_n[v(a(n . q m*))] of the exact optimal contract, differentiable (``optimal_contract``).

    Args:
      problem, options: as ``optimal_contract``.

    Returns:
      () E[v(a)], money.
    """
    return optimal_contract(problem, **options).expected_value
