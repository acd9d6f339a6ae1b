r"""Sensitivities of a solved contract: implicit differentiation of its KKT conditions.

Parameters: theta = (probs p, costs c, quality q, accuracy-curve parameters, valuation parameters),
``Parameters`` below. The reservation utilities are *not* separate parameters: docs/model.md defines
:math:`f_i = \max(0, \max_{m \ge 0} v(a(q_i m)) - c_i m)`, and by the envelope theorem
:math:`\partial f_i / \partial\theta = \partial_\theta [v(a(q_i m)) - c_i m]` at :math:`m = m^{res}_i`
(zero where f_i = 0); every derivative here includes that channel.

The optimum is a KKT point of the first-moment problem in the solver's scaled variables
(``solvers._kkt``). For a solution of the simplified constraint set (docs/model.md "Simplified
constraint set", the default) x = m / s_m and

.. math:: \min_x F(x;\theta) = -E[a(n \cdot q m)] \quad \text{s.t.} \quad
          H(x;\theta) = (\text{budget}_{1..I}, \text{IR}_{2..I}, x_1, x_{i+1} - x_i) \ge 0 ;

for one of the full set (``constraints="full"``, or the exact solver's fallback when the
simplified set appears empty) x = (m / s_m, t / s_v) and H = (budget, IR, pairwise IC, x).

On the active set A with multipliers mu the KKT conditions are the square system

.. math:: \Phi(x, \mu; \theta) = [\nabla_x F - J_H^\top \mu;\ H_A;\ \mu_{\bar A}] = 0,

and the implicit function theorem gives :math:`dz/d\theta = -(\partial_z\Phi)^{-1}\partial_\theta\Phi`,
z = (x, mu) (Fiacco 1976; the ``custom_root`` of jaxopt, Blondel et al. 2022). Outputs y(x; theta)
(m, t, E[v(a)], E[a]) then have :math:`dy/d\theta = \partial_\theta y + \partial_x y\, dx/d\theta`.
The envelope theorem gives the optimal objective directly: :math:`dE[a]^*/d\theta = -\partial_\theta L`
at fixed (x, mu), L = F - mu . H (``envelope``); the two routes must agree.

**Pooled (degenerate) optima.** With the simplified constraint set a pool of adjacent types is a
set of active monotonicity constraints x_i = x_{i+1} (with the full set: active IC pairs i -> j and
j -> i). Where strict complementarity holds (some
multiplier vector is positive on every active constraint) the active set is locally stable: the
pool persists under small perturbations, and the derivative is the derivative of the *pooled*
solution (the common m of the pool moves as one). Two degeneracies are detected and reported:

* *Weakly active constraints* (multiplier 0 on an active constraint, strict complementarity fails;
  e.g. docs/model.md scenario 1, whose equally spaced costs make the pool of types 1-4 hold with zero
  monotonicity multipliers): the active set may change in one direction of a perturbation and not
  the other, so x(theta) is only directionally differentiable. The derivative of an output is
  reported as two-sided only if every choice of keeping or releasing the weakly active constraints
  gives the same value; otherwise it is flagged (``differentiable`` False, value NaN by default).
  The optimal objective E[a] stays differentiable (envelope theorem) when its multipliers are unique.
* *Dependent active constraints* (LICQ fails; e.g. scenario 2, where all five types pool and all
  five budgets bind with tbar_i = v(a(N m)) for every i): multipliers are not unique and the
  Jacobian of Phi is singular; it is solved in the least-squares (pseudo-inverse) sense. The
  derivative exists in a direction only if the perturbed active constraints stay compatible
  (the linear system is consistent); otherwise the optimum moves along a kink (e.g. quality
  weights that make the pooled budgets differ) and the derivative is flagged.

The flags are per output and per parameter coordinate (and ``Sensitivities.directional`` tests
any direction: at scenario 1 a uniform shift of all costs keeps the pool and is two-sided).

**Probabilities** live on the simplex. ``sensitivities`` reports by default the gradient projected
on its tangent space (``probs="tangent"``): g_i - mean(g), whose dot product with any
perturbation dp summing to zero is the first-order change; ``probs="free"`` gives the plain partial
derivatives of the formulas with each p_i free (the multinomial mass and conditional weights of
``expectation`` evaluated at unnormalized p), which is what ``jax.grad`` of ``optimal_value``
returns.

**Composition with JAX.**

* ``implicit_jacobian`` (given a ``KKTPoint`` from ``kkt_point``) is pure JAX: jittable and
  vmappable over a batch of points and problems. It returns the active-set derivative and the
  consistency residual; the weak-constraint test (which needs linear programs) is host-side.
* ``optimal_contract`` / ``optimal_value`` are ``jax.custom_vjp`` functions: the forward pass calls
  the exact solver (host, through ``jax.pure_callback``, so it also runs under ``jit`` and, one
  problem after the other, under ``vmap``) and the backward pass is the implicit derivative, so
  ``jax.grad(lambda c: optimal_value(problem.replace(costs=c)))`` works, also jitted. N and the
  type order must be concrete (they fix the outcome table); forward-mode (``jvp``) is not defined.
* ``sensitivities`` and ``envelope`` are host-side entry points (scipy linear programs decide
  which constraints are weakly active).

Everything needs float64 (``jax.enable_x64``): the host entry points scope it themselves (as
``solve`` does); ``optimal_contract`` runs inside the caller's transformations and raises if x64 is off.
Expectations use the full enumeration table (K = C(N+I-1, I-1) outcomes), whatever backend the
solution was computed with.

Modules: ``_system`` (the KKT system and its implicit derivative, pure JAX), ``_analysis`` (host
side: locating the KKT point, degeneracy tests), ``_api`` (``sensitivities``, ``envelope``,
``kkt_point``, ``contract``), ``_vjp`` (``optimal_contract``, ``optimal_value``).
"""

from ._analysis import (ALTERNATIVE_TOL, CONSISTENCY_TOL, MAX_WEAK_SUBSETS, WEAK_MULTIPLIER_TOL, SensitivityError,
                        constraint_names)
from ._api import ORDERS, POLICIES, PROBS_CONVENTIONS, Sensitivities, contract, envelope, kkt_point, sensitivities
from ._system import (OUTPUT_NAMES, PARAMETER_NAMES, RCOND, KKTPoint, Parameters, implicit_jacobian, kkt_conditions,
                      parameters, reservation_utilities)
from ._vjp import OptimalContract, optimal_contract, optimal_value

__all__ = ["ALTERNATIVE_TOL", "CONSISTENCY_TOL", "KKTPoint", "MAX_WEAK_SUBSETS", "ORDERS", "OUTPUT_NAMES",
           "OptimalContract", "PARAMETER_NAMES", "POLICIES", "PROBS_CONVENTIONS", "Parameters", "RCOND",
           "SensitivityError", "Sensitivities", "WEAK_MULTIPLIER_TOL", "constraint_names", "contract", "envelope",
           "implicit_jacobian", "kkt_conditions", "kkt_point", "optimal_contract", "optimal_value", "parameters",
           "reservation_utilities", "sensitivities"]
