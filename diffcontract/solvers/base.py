r"""The solver protocol: what every solver implements, and the loops that run one.

In the manner of optimistix (``AbstractIterativeSolver``): a solver is a frozen pytree dataclass whose
numbers (tolerances, learning rates, penalties) are *leaves*, so a new tolerance is a new number for
one compiled function, not a new compilation; only loop bounds and choices of code path are static
fields. It implements four pure functions of the problem data ``args`` (``SolveArgs``):

* ``init(args, start) -> state``: the state of a run from a ``Start``;
* ``step(args, state) -> state``: one iteration (an outer ALM iteration, an SLSQP run);
* ``terminate(args, state) -> bool``: whether the run is over;
* ``postprocess(args, state) -> Iterate``: the end point, its multipliers and the measured KKT
  residuals, in the scaled units of ``args.scales``.

``iterate`` runs one start: ``lax.while_loop`` for a jittable solver, a Python loop for a host one.
Everything else every solver needs (the canonical problem, the backend, N = 1, starts, scales, the
status decision, the ``Solution``, the simplified -> full fallback) is done once by the driver
(``solvers/driver.py``). A user adds a solver by writing one such class.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, NamedTuple

import jax
from flax import struct

from .._cache import kernel_jit
from . import _kkt
from ._kkt import KKTResiduals, Scales


@struct.dataclass
class SolveArgs:
    """Problem data of one solve (a pytree: one compiled function serves every problem of its shapes).

    problem: canonical ``ContractProblem`` (float64, identity type order).
    table: its weighted outcome table (or a streaming backend's table).
    scales: ``Scales`` (data per unit of x_m; money per unit of x_t and of the constraints).
    constraints: "simplified" or "full" (static).
    """

    problem: Any
    table: Any
    scales: Scales
    constraints: str = struct.field(pytree_node=False, default="simplified")

    @property
    def kkt_args(self) -> tuple:
        """The positional problem arguments of the ``_kkt`` functions."""
        return self.problem, self.table, self.scales, self.constraints


class Start(NamedTuple):
    """Where a run starts.

    x: (n,) scaled variables.  primary: () bool, the first (best) start: a solver may give it more
    budget.  polish_first: () bool, a warm start near the optimum: refine it before descending.
    """

    x: Any
    primary: Any
    polish_first: Any


class Iterate(NamedTuple):
    """Where a run ended, in scaled units (``SolveArgs.scales``).

    x: (n,) variables.  value: () E[a(n . q m)] at x, accuracy units (the driver ranks runs by it).
    multipliers: (n_G + n_B,) over the constraints H = (G, B) of ``_kkt``.
    kkt: ``KKTResiduals`` at (x, multipliers).  converged: () bool, the solver's own verdict that
    the run met its tolerances (the driver decides the status from measured residuals).
    out_of_iterations: () bool.  infeasible: () bool, the solver's evidence that no feasible point
    is reachable.  iterations: () int, the solver's unit of work (inner steps, SLSQP iterations).
    """

    x: Any
    value: Any
    multipliers: Any
    kkt: KKTResiduals
    converged: Any
    out_of_iterations: Any
    infeasible: Any
    iterations: Any


class AbstractSolver(abc.ABC):
    """A solver of the first-moment problem (see the module docstring).

    Subclasses are ``flax.struct.dataclass`` es; ``jittable`` says whether ``iterate`` may trace them;
    ``claims_optimality`` False marks a solver without a certificate (a learned mechanism).
    ``feasibility_tol`` (relative to v(1) - v(0)) and ``kkt_tol`` (scaled stationarity) are the
    tolerances the driver's status decision uses.
    """

    jittable: ClassVar[bool] = True
    method: ClassVar[str] = "custom"
    claims_optimality: ClassVar[bool] = True  # False: FEASIBLE / INFEASIBLE only, no certificate
    log_parameterized: ClassVar[bool] = False  # True: starts get no exact zeros (the driver floors them)

    @abc.abstractmethod
    def init(self, args: SolveArgs, start: Start) -> Any:
        """State of a run from ``start``."""

    @abc.abstractmethod
    def step(self, args: SolveArgs, state) -> Any:
        """One iteration."""

    @abc.abstractmethod
    def terminate(self, args: SolveArgs, state) -> Any:
        """() bool: the run is over."""

    @abc.abstractmethod
    def postprocess(self, args: SolveArgs, state) -> Iterate:
        """The run's end point and its certificate."""


def iterate(solver: AbstractSolver, args: SolveArgs, start: Start) -> Iterate:
    """Run ``solver`` from ``start`` until it terminates: one ``lax.while_loop`` if jittable, else a host loop."""
    state = solver.init(args, start)
    if solver.jittable:
        state = jax.lax.while_loop(lambda s: ~solver.terminate(args, s), lambda s: solver.step(args, s), state)
    else:
        while not bool(solver.terminate(args, state)):
            state = solver.step(args, state)
    return solver.postprocess(args, state)


@kernel_jit
def measure_point(x, args: SolveArgs):
    """(E[a], money violation) at the scaled point x (host solvers' and the driver's one compiled check)."""
    return _kkt.value_and_violation(x, *args.kkt_args)

