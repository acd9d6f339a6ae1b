"""The contract problem: validated inputs and reservation utilities (docs/model.md "Participants, types and outcomes").

``ContractProblem`` is a pytree: the static part (type order, conditioning) and the shapes (I, and
the outcome table built from N) fix compiled code; the numbers (N itself, probabilities, costs,
quality weights, curve parameters, reservation utilities) are leaves, so changing them never
recompiles and a stack of problems, even with different N (tables padded), can be ``vmap``-ed.

Types are stored in the canonical order of docs/model.md, costliest first (c_1 > c_2 > ... > c_I). A
problem given in another order is sorted; ``type_order`` maps canonical index -> input index so
results can be mapped back with ``to_input_order``.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._cache import kernel_jit
from ._jit import node_types
from . import _precision
from .curves import GeneralizationBound, Linear
from .curves._base import shown
from .curves.io import ACCURACY, VALUATION, curve_from_dict, curve_to_dict
from .numerics import bisection, golden_section_max

CONDITIONINGS = ("truncated", "interim")
PROB_SUM_TOL = 1e-9
MAX_PARTICIPANTS = 2**31 - 1  # N: type counts are int32 arrays on the device
# Types: reservation utilities are computed on at least this many (padded to a power of two). Every
# lane costs the same (~0.4 ms: a 2,048-point grid and four refined brackets), so 4 (I <= 4 in one
# compilation) made a two- or three-type problem 3x faster to build than 16 did (6.6 -> 2 ms), with
# bit-identical values (lanes are independent).
_RESERVATION_MIN_LENGTH = 4
_GOLDEN_STEPS = 200  # golden-section steps of ``reservation``: 0.618^200 ~ 1e-42, the bracket collapses to rounding
# Bisection steps on the sign of h' in a grid cell of ``reservation`` (log m; the cell is < 1 wide): 2^-64.
_SLOPE_STEPS = 64
_FLAT = 1e-12  # relative: h this close to its golden-section maximum is that maximum (a flat top in float64)
#: Keys of a problem record (``to_dict``); the first five are required.
RECORD_FIELDS = ("participants", "probs", "costs", "accuracy", "valuation", "quality", "conditioning")
#: Recorded probabilities within this of their normalization are normalized already (a few ulps).
NORMALIZED_RTOL = 4 * np.finfo(np.float64).eps


def _positive_array(name: str, value: Any, ndim: int = 1, size: int | None = None, sums_to_one: bool = False,
                    distinct: bool = False) -> np.ndarray:
    """``value`` as a float64 array of ``ndim`` dimensions, (I,) or (B, I), checked row by row.

    Raises a ValueError naming ``name`` (``name[b]`` for row b of a (B, I) array) unless it is
    non-empty, has ``size`` entries (the number of costs) if given, and every row is finite and > 0,
    sums to 1 within ``PROB_SUM_TOL`` (``sums_to_one``) and has distinct entries (``distinct``).
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a {ndim}-D sequence of numbers, got {shown(value)}") from err
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D sequence of numbers, got {shown(value)}")
    if size is not None and arr.size != size:
        raise ValueError(f"{name} has {arr.size} entries but costs has {size}; they must match")
    rows = np.atleast_2d(arr)
    with np.errstate(over="ignore", invalid="ignore"):  # a sum of huge entries is inf: rejected, not a warning
        checks = ((np.all(np.isfinite(rows) & (rows > 0.0), axis=1), "must be finite and > 0"),
                  ((not sums_to_one) | (np.abs(rows.sum(axis=1) - 1.0) <= PROB_SUM_TOL),
                   f"must sum to 1 (within {PROB_SUM_TOL})"),
                  ((not distinct) | np.all(np.diff(np.sort(rows, axis=1), axis=1) != 0.0, axis=1),
                   "must be distinct (one type per cost)"))
    for ok, requirement in checks:
        bad = np.flatnonzero(~ok)
        if bad.size:
            where = name if arr.ndim == 1 else f"{name}[{bad[0]}]"
            raise ValueError(f"{where} {requirement}, got {rows[bad[0]].tolist()}")
    return arr


def _validate_participants(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        raise ValueError(f"participants must be an integer, got the float {value!r}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"participants must be an integer >= 1, got {shown(value)}")
    if int(value) > MAX_PARTICIPANTS:
        raise ValueError(f"participants must be at most {MAX_PARTICIPANTS} (type counts are int32 on the device), "
                         f"got {int(value)}")
    return int(value)


@functools.partial(kernel_jit, always_fast=True)  # a curve on a grid: small whatever the problem
def _evaluate_curve(curve, x):
    return curve(x)


def _check_curve(name: str, curve: Any, domain: np.ndarray, lower: float | None = None, upper: float | None = None,
                 increasing: bool = False) -> None:
    """Raise naming ``name`` unless ``curve`` is valid, finite, non-decreasing and in [lower, upper] on
    ``domain`` (and, if ``increasing``, larger at its end than at its start).

    A curve must be a JAX pytree whose leaves are numbers or arrays (e.g. a ``flax.struct``
    dataclass such as ``GeneralizationBound``): it is an argument of compiled functions and a leaf
    of the problem's pytree. A plain function (a lambda, a closure) is one opaque leaf, which
    ``jax.jit`` rejects with a TypeError deep inside; say so here, naming the field.
    """
    if not callable(curve):
        raise ValueError(f"{name} must be a callable curve, got {curve!r}")
    if hasattr(curve, "validate"):  # first: it names the parameter ("GeneralizationBound.k")
        curve.validate()
    leaves = jax.tree_util.tree_leaves(curve)
    if any(leaf is curve for leaf in leaves):
        raise ValueError(f"{name} must be a JAX pytree curve (a flax.struct.dataclass such as GeneralizationBound, "
                         f"or a registered pytree with numeric parameters), got the plain callable {curve!r}")
    for leaf in leaves:
        if callable(leaf) or np.asarray(leaf).dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a JAX pytree curve whose leaves are numbers or arrays, got the "
                             f"leaf {leaf!r} in {curve!r}")
    values = np.asarray(_evaluate_curve(curve, jnp.asarray(domain)), dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} returns a non-finite value at {shown(domain[~np.isfinite(values)][0])}")
    drops = np.diff(values) < -1e-12 * max(1.0, float(np.max(np.abs(values))))
    if np.any(drops):
        raise ValueError(f"{name} must be non-decreasing, but it decreases near {domain[1:][drops][0]:.6g}")
    if lower is not None and np.min(values) < lower - 1e-12:
        raise ValueError(f"{name} must be >= {lower}, got {np.min(values):.6g}")
    if upper is not None and np.max(values) > upper + 1e-12:
        raise ValueError(f"{name} must be <= {upper}, got {np.max(values):.6g}")
    if increasing and not values[-1] > values[0]:
        raise ValueError(f"{name} must be increasing, got {shown(values[0])} at {shown(domain[0])} and "
                         f"{shown(values[-1])} at {shown(domain[-1])}")


def reservation(accuracy, valuation, costs, quality, grid_size: int = 2048, refinements: int = 4):
    r"""Reservation utilities :math:`f_i = \max(0, \max_{m \ge 0} v(a(q_i m)) - c_i m)` and argmaxes.

    A *global* 1-D maximization: a log-spaced grid over (0, v(1)/c_i] (beyond which the
    utility of training alone is negative), then golden-section refinement in the brackets of the
    ``refinements`` best grid points, keeping the best. Jittable and ``vmap``-ed over types.

    Args:
      accuracy, valuation: curves.
      costs: (I,) marginal costs, money per unit of data.
      quality: (I,) quality weights (effective data = q m).

    Returns:
      (f, m_res): (I,) reservation utilities (money) and (I,) data trained alone (0 where f = 0).
    """

    def one(c, q):
        def h(m):
            value = valuation(accuracy(q * m)) - c * m
            # A curve may return NaN where q m overflows; such an m is never the argmax.
            return jnp.where(jnp.isfinite(value), value, -jnp.inf)

        # log(v(1)/c) + 1 as a difference of logs: v(1)/c overflows for subnormal c (~1e-310),
        # which XLA moreover flushes to 0 (log c = -inf). The grid then ends where q m would
        # overflow instead; f ~ v(a_max) there, the supremum of training alone at a vanishing cost.
        log_m_max = jnp.log(jnp.finfo(jnp.result_type(c)).max) - 1.0 - jnp.log(jnp.maximum(q, 1.0))
        hi = jnp.minimum(jnp.log(valuation(1.0)) - jnp.log(c) + 1.0, log_m_max)
        grid = jnp.exp(jnp.linspace(jnp.log(1e-6), hi, grid_size))
        values = h(grid)
        _, best = jax.lax.top_k(values, refinements)

        def refine(idx):
            lo = jnp.log(grid[jnp.maximum(idx - 1, 0)])
            up = jnp.log(grid[jnp.minimum(idx + 1, grid_size - 1)])
            # Both points afresh every step (reuse=False): the f and m^res every result depends on.
            search = golden_section_max(lambda u: h(jnp.exp(u)), lo, up, _GOLDEN_STEPS, reuse=False)
            m = jnp.exp(0.5 * (search.lower + search.upper))
            # Compared values locate the argmax only to ~1e-8 relative (h is flat there), and N = 1
            # pays that at first order (E[v] = sum p v(a(q m_res))): the root of h' is found by
            # bisection on its sign, kept unless h is lower there beyond rounding (a second local maximum).
            slope = jax.grad(lambda u: h(jnp.exp(u)))
            root = jnp.exp(0.5 * sum(bisection(lambda u: slope(u) > 0.0, lo, up, _SLOPE_STEPS)))
            best, at_root = h(m), h(root)
            on_top = at_root >= best - _FLAT * jnp.abs(best)
            return jnp.where(on_top, at_root, best), jnp.where(on_top, root, m)

        vals, ms = jax.vmap(refine)(best)
        k = jnp.argmax(vals)
        f, m = vals[k], ms[k]
        positive = f > 0.0
        return jnp.where(positive, f, 0.0), jnp.where(positive, m, 0.0)

    return jax.vmap(one)(jnp.asarray(costs), jnp.asarray(quality))


_reservation_jit = kernel_jit(reservation, always_fast=True, static_argnames=("grid_size", "refinements"))


def _host_reservation(accuracy, valuation, costs: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``reservation`` in float64 for costs and quality of any shape ((I,) or (B, I)): numpy (f, m_res).

    The types are solved one by one (``vmap``), so they are padded (c = q = 1) to a power of two of
    at least ``_RESERVATION_MIN_LENGTH``: one compilation serves every I and batch size up to it.
    """
    size = costs.size
    length = max(_RESERVATION_MIN_LENGTH, 1 << max(size - 1, 0).bit_length())
    padded = [np.concatenate([np.ravel(x), np.ones(length - size)]) for x in (costs, quality)]
    with _precision.float64():
        f, m_res = _reservation_jit(accuracy, valuation, *(jnp.asarray(x) for x in padded))
    return np.asarray(f)[:size].reshape(costs.shape), np.asarray(m_res)[:size].reshape(costs.shape)


@jax.tree_util.register_pytree_node_class
class ContractProblem:
    """A first-moment contract problem (docs/model.md).

    Args:
      participants: N, number of participants (integer >= 1).
      probs: (I,) type probabilities p, each > 0, summing to 1 (within 1e-9).
      costs: (I,) marginal costs c > 0 per unit of data, all distinct; any order (sorted here).
      accuracy: accuracy curve a(x); default ``GeneralizationBound(1, 1)``.
      valuation: valuation v(r); default ``Linear(100)``.
      quality: (I,) quality weights q > 0 (effective data q_i m_i); default all ones.
      conditioning: "truncated" (E[. | n_i >= 1], the paper's) or "interim" (others ~
        Multinomial(N-1, p)).

    Attributes (canonical order, costliest type first):
      probs, costs, quality: (I,) arrays.
      reservation_utility: (I,) f, money.
      reservation_data: (I,) m^res, units of data.
      type_order: tuple, canonical index -> index in the input.
    """

    def __init__(self, participants: int, probs: Sequence[float], costs: Sequence[float], accuracy: Any = None,
                 valuation: Any = None, quality: Sequence[float] | None = None, conditioning: str = "truncated"):
        n = _validate_participants(participants)
        c = _positive_array("costs", costs, distinct=True)
        p = _positive_array("probs", probs, size=c.size, sums_to_one=True)
        q = np.ones_like(c) if quality is None else _positive_array("quality", quality, size=c.size)
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
        accuracy = GeneralizationBound() if accuracy is None else accuracy
        valuation = Linear() if valuation is None else valuation

        order = np.argsort(-c, kind="stable")
        with _precision.float64():
            _check_curve("accuracy", accuracy, np.concatenate([[0.0], np.geomspace(1e-3, 1e9, 2000)]), 0.0, 1.0)
            _check_curve("valuation", valuation, np.linspace(0.0, 1.0, 201), increasing=True)
        f, m_res = _host_reservation(accuracy, valuation, c[order], q[order])

        # The attributes, in the order of ``_static`` and ``_leaves``.
        self._fill((conditioning, tuple(int(i) for i in order)),
                   (n, p[order] / p.sum(), c[order], q[order], accuracy, valuation, f, m_res))

    # ----------------------------------------------------------------- pytree protocol
    # ``participants`` is a leaf so that problems with different N can be stacked and vmapped
    # (their outcome tables are padded to a common length); shapes come from the outcome table.
    _leaves = ("participants", "probs", "costs", "quality", "accuracy", "valuation", "reservation_utility",
               "reservation_data")
    _static = ("conditioning", "type_order")

    def tree_flatten(self):
        # The curves' node classes too: look-alike curve classes must make different structures (_jit).
        curve_classes = node_types(jax.tree_util.tree_structure((self.accuracy, self.valuation)))
        return (tuple(getattr(self, k) for k in self._leaves),
                (*(getattr(self, k) for k in self._static), curve_classes))

    def _fill(self, aux, children) -> None:
        for k, v in zip(self._static + self._leaves, (*aux[:len(self._static)], *children)):
            setattr(self, k, v)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)  # no validation: leaves may be tracers
        obj._fill(aux, children)
        return obj

    # ----------------------------------------------------------------- conveniences
    @property
    def num_types(self) -> int:
        """I, the number of types."""
        return len(self.type_order)

    @property
    def num_participants(self) -> int:
        """N as a Python int (host side; not available under a trace)."""
        return int(np.asarray(self.participants))

    @property
    def num_outcomes(self) -> int:
        """C(N + I - 1, I - 1), the number of type-count outcomes n."""
        return math.comb(self.num_participants + self.num_types - 1, self.num_types - 1)

    def to_input_order(self, values: Any) -> np.ndarray:
        """Map a (I,)-array in canonical order back to the order the types were given in."""
        return np.asarray(values)[np.argsort(self.type_order)]

    def replace(self, **changes) -> "ContractProblem":
        """A copy with some leaves replaced (no re-validation, no recomputed reservation)."""
        for k in changes:
            if k not in self._leaves:
                raise ValueError(f"replace() accepts only {self._leaves}, got {k!r}")
        flat, aux = self.tree_flatten()
        return ContractProblem.tree_unflatten(aux, [changes.get(k, v) for k, v in zip(self._leaves, flat)])

    def to_dict(self) -> dict:
        """The problem's record, JSON-safe (canonical order, costliest first; the input order is not kept).

        Returns:
          ``{"participants": N, "probs", "costs", "quality": (I,) lists, "conditioning": str,
          "accuracy", "valuation": curve records (``curves.curve_to_dict``)}``. Floats are float64
          and JSON writes their exact repr: ``from_dict`` gives back this problem exactly.
        """
        return {"participants": self.num_participants,
                **{key: np.asarray(getattr(self, key)).tolist() for key in ("probs", "costs", "quality")},
                "conditioning": self.conditioning, "accuracy": curve_to_dict(self.accuracy),
                "valuation": curve_to_dict(self.valuation)}

    @classmethod
    def from_dict(cls, data: Any, field: str = "problem") -> "ContractProblem":
        """Rebuild a validated problem from ``to_dict()`` output (a solution record's ``"problem"``).

        ``quality`` (default all ones) and ``conditioning`` (default "truncated") may be omitted;
        the other keys are required, and the lists may be in any type order. Probabilities that
        are normalized to rounding are kept as recorded: normalizing ``to_dict``'s output again
        would move about one draw in ten by an ulp, and the round trip is exact.

        Args:
          data: dict with the keys of ``to_dict``.
          field: name of ``data`` in error messages.

        Returns:
          The ``ContractProblem``.

        Raises:
          ValueError naming the field (``problem.costs``, ``problem.accuracy.k``, ...) on bad input.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{field} must be a JSON object (ContractProblem.to_dict()), got {type(data).__name__}")
        for key in RECORD_FIELDS[:5]:
            if key not in data:
                raise ValueError(f"{field} is missing the field {key!r}")
        unknown = set(data) - set(RECORD_FIELDS)
        if unknown:
            raise ValueError(f"{field} has unknown field(s) {sorted(unknown)}")
        for key in ("probs", "costs", "quality"):
            value = data.get(key)
            if value is not None and (not isinstance(value, list) or
                                      any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in value)):
                raise ValueError(f"{field}.{key} must be a list of numbers, got {value!r}")
        if not isinstance(data.get("conditioning", ""), str):
            raise ValueError(f"{field}.conditioning must be a string, got {data['conditioning']!r}")
        accuracy = curve_from_dict(data["accuracy"], f"{field}.accuracy", ACCURACY)
        valuation = curve_from_dict(data["valuation"], f"{field}.valuation", VALUATION)
        try:
            problem = cls(data["participants"], data["probs"], data["costs"], accuracy, valuation, data.get("quality"),
                          data.get("conditioning", "truncated"))
        except ValueError as err:
            raise ValueError(f"{field}: {err}") from err
        recorded = np.asarray(data["probs"], dtype=np.float64)[list(problem.type_order)]
        if np.allclose(recorded, problem.probs, rtol=NORMALIZED_RTOL, atol=0.0):
            problem.probs = recorded
        return problem

    def __repr__(self) -> str:
        return (f"ContractProblem(participants={self.num_participants}, probs={np.asarray(self.probs).tolist()}, "
                f"costs={np.asarray(self.costs).tolist()}, accuracy={self.accuracy!r}, "
                f"valuation={self.valuation!r}, conditioning={self.conditioning!r})")


def stack_problems(problems: Sequence[ContractProblem]) -> ContractProblem:
    """Stack validated problems into one batched ``ContractProblem`` (leading batch axis on every leaf).

    All must share I, conditioning and curve kinds; N, p, c, q and curve parameters may differ.
    The batch is in canonical type order (costliest first) whatever order each problem was given in.
    """
    problems = list(problems)
    if not problems:
        raise ValueError("problems must be a non-empty sequence of ContractProblem")
    for k, p in enumerate(problems):
        if not isinstance(p, ContractProblem):
            raise ValueError(f"problems[{k}] must be a ContractProblem, got {type(p).__name__}")
    for what, values in (("conditioning", {p.conditioning for p in problems}),
                         ("the number of types I", {p.num_types for p in problems}),
                         ("curve kinds (accuracy and valuation)",
                          {jax.tree_util.tree_structure((p.accuracy, p.valuation)) for p in problems})):
        if len(values) != 1:
            raise ValueError(f"problems in a batch must share {what}, got {sorted(map(str, values))}")
    # Arrays are in canonical (costliest-first) order already; the batch keeps that order.
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                  *map(without_input_order, problems))


def problem_grid(participants, probs, costs, accuracy: Any = None, valuation: Any = None, quality=None,
                 conditioning: str = "truncated") -> ContractProblem:
    """Build a batch of B problems at once (vectorized validation and reservation utilities).

    For sweeps of thousands of problems, where building each ``ContractProblem`` separately would
    cost more than solving them. Shared curves; per-problem N, p, c (and q).

    Args:
      participants: (B,) integers >= 1.
      probs: (B, I) rows > 0 summing to 1.  costs: (B, I) rows of distinct costs > 0, any order.
      quality: optional (B, I) or (I,) weights > 0.

    Returns:
      A batched ``ContractProblem`` (canonical order in every row).
    """
    n = np.asarray(participants)
    if n.ndim != 1 or n.size == 0 or not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
        raise ValueError(f"participants must be a non-empty 1-D array of integers >= 1, got {participants!r}")
    p = _positive_array("probs", probs, ndim=2, sums_to_one=True)
    c = _positive_array("costs", costs, ndim=2, distinct=True)
    if p.shape[0] != n.size or c.shape != p.shape:
        raise ValueError(f"probs and costs must both have shape (B, I) = ({n.size}, I), got {p.shape} and {c.shape}")
    q = np.ones_like(c) if quality is None else np.broadcast_to(np.asarray(quality, dtype=np.float64), c.shape).copy()
    _positive_array("quality", q, ndim=2)
    # Validate the curves (and the conditioning) once, through a single problem.
    template = ContractProblem(int(n[0]), p[0], c[0], accuracy=accuracy, valuation=valuation, quality=q[0],
                               conditioning=conditioning)
    order = np.argsort(-c, axis=1, kind="stable")
    c, p, q = (np.take_along_axis(a, order, axis=1) for a in (c, p, q))
    f, m_res = _host_reservation(template.accuracy, template.valuation, c, q)
    # Shared curves: every leaf gets a leading batch axis, (B,) + leaf.shape (array leaves too).
    curves = jax.tree_util.tree_map(
        lambda leaf: np.broadcast_to(np.asarray(leaf, np.float64), (n.size,) + np.shape(leaf)).copy(),
        (template.accuracy, template.valuation))
    leaves = (n.astype(np.int64), p / p.sum(axis=1, keepdims=True), c, q, curves[0], curves[1], f, m_res)
    return ContractProblem.tree_unflatten((conditioning, tuple(range(c.shape[1]))), leaves)


def value_unit(problem) -> jnp.ndarray:
    """v(1) - v(0), money: the unit of every relative tolerance and scaled constraint (jittable; () for one
    problem, (B,) for a batch), in the dtype of the problem's costs."""
    dtype = jnp.result_type(problem.costs)
    return problem.valuation(jnp.asarray(1.0, dtype)) - problem.valuation(jnp.asarray(0.0, dtype))


def without_input_order(problem: ContractProblem) -> ContractProblem:
    """``problem`` with the identity ``type_order``: the view that compiled kernels get.

    The arrays are in canonical order already; ``type_order`` only maps results back to the input
    order on the host. It is static pytree data, so a kernel given the problem itself would
    compile once per input order of the types; given this view, once for all orders. Results
    computed from it are canonical; keep ``problem`` for the ``Solution``.
    """
    flat, (conditioning, order, curve_classes) = problem.tree_flatten()
    return ContractProblem.tree_unflatten((conditioning, tuple(range(len(order))), curve_classes), flat)


def batch_size(problem: ContractProblem) -> int | None:
    """B for a batched problem (leaves with a leading axis), None for a single one."""
    shape = np.shape(problem.costs)
    return shape[0] if len(shape) == 2 else None


def unstack_problem(problem: ContractProblem, index: int) -> ContractProblem:
    """Problem ``index`` of a batch."""
    return jax.tree_util.tree_map(lambda a: np.asarray(a)[index], problem)
