r"""A trained mechanism: network + repair as a fast solver, and as a warm start for the ALM.

``learned_contract`` is the pure, jittable map (parameters, problem, table) -> proposal and repaired
contract; ``LearnedMechanism`` wraps a trained network with its ``ProblemDistribution`` and gives
``propose`` (network only), ``solve`` (network + repair, a ``Solution``) and ``warm_start``
(contributions for ``solve_alm(..., warm_start=...)``), for one problem or a batch in one compiled
call. Status of a learned solution: FEASIBLE (the repaired contract meets every constraint of the
full first-moment problem; no optimality claim: there is no certificate) or INFEASIBLE (no
feasible contract found on the repair segments: ``solve(method="exact")`` decides whether one
exists). The rewards are the full set's least feasible ones (``formulation.least_rewards``), so
problems whose simplified constraint set is empty are answered too.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._jit import jit
from .. import _precision
from ..expectation import OutcomeTable, with_weights
from ..problem import ContractProblem, batch_size
from ..solvers import AbstractSolver, Iterate, Solution, SolveArgs, Start, Status, _kkt, unstack_solution
from ..solvers._solution import FEASIBILITY_TOL, menu_fields
from ..solvers._start import exclusion_pooled_candidates, start_candidates
from ..solvers.batch import _host
from .distribution import ProblemDistribution
from .network import MechanismNetwork, decode_contributions, problem_features
from .repair import Repaired, improve, repair

_UNIT = _kkt.Scales(1.0, 1.0)  # scaled variables in data and money units: x = (m, t) exactly


class LearnedContract(NamedTuple):
    """proposal: (I,) network contributions before repair; repaired: ``Repaired``."""

    proposal: jnp.ndarray
    repaired: Repaired


def propose(params, network: MechanismNetwork, problem, table: OutcomeTable, participants_range, log10_cost_range,
            candidates=None):
    """(I,) proposed contributions for one problem (jittable, differentiable in params).

    ``table``: the problem's ``OutcomeTable`` with weights attached (``with_weights``);
    ``candidates``: its ``exclusion_pooled_candidates`` if already computed.
    """
    features = problem_features(problem, table, participants_range, log10_cost_range, candidates)
    return decode_contributions(network.apply({"params": params}, features), problem)


def learned_contract(params, network: MechanismNetwork, problem, table: OutcomeTable,
                     participants_range: tuple, log10_cost_range: tuple) -> LearnedContract:
    """Network proposal and its repair for one problem (jittable; vmap over problems and tables).

    The network's features use the simplified set's exclude-then-pool candidates (as in
    training); the repair's anchor and the improvement use the full set's candidates, a superset
    whose menus are feasible where the simplified set is empty."""
    table = with_weights(problem, table)
    m = propose(params, network, problem, table, participants_range, log10_cost_range)
    anchors = start_candidates(problem, table, "full")
    return LearnedContract(m, improve(repair(m, problem, table, anchors), problem, table, anchors))


def first_pass(params, network, problem, table, participants_range, log10_cost_range):
    """The network's contract improved without the repair's anchors, and whether the proposal was
    feasible as is (jittable; ``table`` weighted). Returns (``LearnedContract``, () bool)."""
    candidates = exclusion_pooled_candidates(problem, table)
    m = propose(params, network, problem, table, participants_range, log10_cost_range, candidates)
    start = Repaired.of(m, problem, table, jnp.zeros((), m.dtype), jnp.asarray(True))
    return LearnedContract(m, improve(start, problem, table, candidates)), start.feasible


def _solution_leaves(problem, table, contract: LearnedContract) -> dict:
    """The ``Solution`` fields of the repaired contract (``table`` weighted), its status and blend."""
    r = contract.repaired
    m, t, mom, res = _kkt.measure(_kkt.encode(r.m, r.t, _UNIT, "full"), problem, table, _UNIT, "full")
    status = jnp.where(r.feasible, Status.FEASIBLE, Status.INFEASIBLE)
    return dict(menu_fields(problem, m, t, mom, res), status=status, blend=r.blend)


@struct.dataclass
class LearnedSolver(AbstractSolver):
    """A learned mechanism through the solver protocol: one step, network + repair (jittable).

    params: the network's parameters (leaves).  network, participants_range, log10_cost_range:
    static. Run on the full set (least rewards). No optimality claim: the driver reports FEASIBLE
    when the repaired contract meets every constraint and INFEASIBLE when the repair found none.
    """

    params: Any
    network: Any = struct.field(pytree_node=False)
    participants_range: tuple = struct.field(pytree_node=False)
    log10_cost_range: tuple = struct.field(pytree_node=False)
    feasibility_tol: float = FEASIBILITY_TOL
    starts: int = struct.field(pytree_node=False, default=1)

    method: ClassVar[str] = "learned"
    claims_optimality: ClassVar[bool] = False

    def init(self, args: SolveArgs, start: Start):
        return start.x, jnp.asarray(False), jnp.asarray(False)

    def step(self, args: SolveArgs, state):
        ranges = (self.participants_range, self.log10_cost_range)
        quick, feasible = first_pass(self.params, self.network, args.problem, args.table, *ranges)
        menu = lambda c: (c.repaired.m, c.repaired.t, c.repaired.feasible)  # noqa: E731
        m, t, ok = jax.lax.cond(feasible, lambda: menu(quick), lambda: menu(learned_contract(
            self.params, self.network, args.problem, args.table, *ranges)))
        return _kkt.encode(m, t, args.scales, "full"), jnp.asarray(True), ok

    def terminate(self, args: SolveArgs, state):
        return state[1]

    def postprocess(self, args: SolveArgs, state) -> Iterate:
        x, _, feasible = state
        none = _kkt.KKTResiduals(*(jnp.asarray(jnp.inf, x.dtype) for _ in range(4)))
        multipliers = jnp.zeros((_kkt.all_constraints(x, *args.kkt_args).shape[0],), x.dtype)
        false = jnp.asarray(False)
        return Iterate(x, -_kkt.objective(x, *args.kkt_args), multipliers, none, false, false, ~feasible, jnp.asarray(0))


def _put_rows(rows: np.ndarray, into, values) -> np.ndarray:
    """A copy of ``into`` (B, ...) whose ``rows`` are the first ``rows.size`` rows of ``values``."""
    out = np.array(into, copy=True)
    out[rows] = values[:rows.size]
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class LearnedMechanism:
    """A trained mechanism network for one ``ProblemDistribution``.

    network: the Flax module.  params: its parameters.  distribution: the support it answers for.
    metadata: training settings and measured figures (JSON-serializable dict).
    """

    network: MechanismNetwork
    params: Any
    distribution: ProblemDistribution
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def _ranges(self) -> tuple:
        return tuple(self.distribution.participants), tuple(self.distribution.log10_costs)

    @functools.cached_property
    def _kernels(self) -> dict:
        """The compiled batch kernels (``vmap`` over problems and tables; kept by the instance).

        "propose": the network's contributions. "first": network + improvement without the repair's
        anchors (``first_pass``) as ``Solution`` leaves, and whether the proposal was feasible.
        "repair": network + repair + improvement (``learned_contract``). Under ``vmap`` every member
        pays for every branch, so the anchors (restorations, rescalings, segment searches: ~4x the
        rest) run in a second call on the members whose proposal is infeasible only (~1 in 10 for
        the packaged model).
        """
        network, ranges = self.network, self._ranges

        def first(params, problem, table):
            contract, feasible = first_pass(params, network, problem, table, *ranges)
            return _solution_leaves(problem, table, contract), feasible

        def repaired(params, problem, table):
            return _solution_leaves(problem, table, learned_contract(params, network, problem, table, *ranges))

        def batched(fn):  # vmap over the problems and their padded tables, weighted first
            return jit(jax.vmap(lambda params, problem, table: fn(params, problem, with_weights(problem, table)),
                                in_axes=(None, 0, 0)))

        return {"propose": batched(lambda params, problem, table: propose(params, network, problem, table, *ranges)),
                "first": batched(first), "repair": batched(repaired)}

    def solver(self) -> "LearnedSolver":
        """This mechanism as a solver of the protocol (``diffcontract.solvers.base``): ``run(problem,
        mechanism.solver(), "full")`` answers one problem as ``solve`` does."""
        return LearnedSolver(self.params, self.network, *self._ranges)

    def _inputs(self, problem: ContractProblem) -> tuple:
        """(batch, single, notes, (batch with float64 leaves, its padded outcome tables)) of a problem
        or a batch; raises where the mechanism cannot answer it (``ProblemDistribution.check``)."""
        if not isinstance(problem, ContractProblem):
            raise ValueError(f"problem must be a ContractProblem, got {type(problem).__name__}")
        notes = self.distribution.check(problem)
        single = batch_size(problem) is None
        if single:
            problem = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], problem)
        floats64 = jax.tree_util.tree_map(
            lambda a: np.asarray(a, np.float64 if np.issubdtype(np.asarray(a).dtype, np.floating) else None), problem)
        return problem, single, notes, (floats64, self.distribution.tables_for(problem.participants))

    def propose(self, problem: ContractProblem) -> np.ndarray:
        """Network contributions before repair: (I,) for one problem, (B, I) for a batch."""
        _, single, _, inputs = self._inputs(problem)
        with _precision.float64():
            out = np.asarray(self._kernels["propose"](self.params, *inputs))
        return out[0] if single else out

    def warm_start(self, problem: ContractProblem) -> np.ndarray:
        """Repaired contributions to start the ALM from (``solve_alm(..., warm_start=...)``)."""
        return np.asarray(self.solve(problem).contributions)

    def solve(self, problem: ContractProblem) -> Solution:
        """Network + repair for one problem or a batch (one compiled call); a ``Solution``.

        Status FEASIBLE or INFEASIBLE (see the module docstring); ``iterations`` 0; the message
        gives the repair's blend toward the safe menu (0: the network's contract as proposed).
        """
        batch, single, notes, inputs = self._inputs(problem)
        start = time.perf_counter()
        with _precision.float64():
            leaves, proposal_ok = _host(self._kernels["first"](self.params, *inputs))
            redo = np.flatnonzero(~proposal_ok)
            if redo.size:
                # Second pass, repair + improvement, on the infeasible proposals only; the subset is
                # padded to a power of two (by repeating a member) so few shapes are compiled.
                size = 1 << int(np.ceil(np.log2(redo.size)))
                index = np.concatenate([redo, np.full(size - redo.size, redo[0])])
                subset = jax.tree_util.tree_map(lambda a: a[index], inputs)
                fixed = _host(self._kernels["repair"](self.params, *subset))
                leaves = jax.tree_util.tree_map(functools.partial(_put_rows, redo), leaves, fixed)
        elapsed = time.perf_counter() - start
        blend = leaves.pop("blend")
        size, repaired = blend.shape[0], int(np.sum(blend > 0))
        parts = [f"learned mechanism ({self.metadata.get('name', 'network')}): {size - repaired} of {size} "
                 f"proposals feasible as is, {repaired} repaired (max blend {float(np.max(blend)):.3g})"]
        failed = int(np.sum(np.asarray(leaves["status"]) != Status.FEASIBLE))
        parts += [f"{failed} with no feasible contract found by the repair: solve those with solve(method='exact'), "
                  "which decides whether one exists"] if failed else []
        sol = Solution(problem=batch, iterations=np.zeros(size, np.int64), wall_time=np.full(size, elapsed / size),
                       certificate=None, method="learned", constraints="full", backend="enumerate",
                       message="; ".join(parts + notes), **leaves)
        return unstack_solution(sol, 0).replace(wall_time=float(elapsed)) if single else sol

    def __repr__(self) -> str:
        return (f"LearnedMechanism(I={self.distribution.num_types}, N in {list(self.distribution.participants)}, "
                f"hidden={list(self.network.hidden)}, name={self.metadata.get('name', '')!r})")
