"""Choosing an expectation backend: one name in, one object every solver accepts out.

Backends (all exact to rounding unless said):

* "enumerate": the whole (K, I) outcome table in memory (``OutcomeTable``); fastest for
  K = C(N+I-1, I-1) up to ~10^6.
* "chunked": exact enumeration in chunks unranked inside jit (``ChunkedEnumeration``); memory set
  by the chunk, time linear in K; for K up to ~10^9.
* "convolution": the law of the pooled data on a lattice by FFT powers (``LatticeConvolution``);
  error O(M^-2), grid chosen from a Richardson error estimate; cost O(I N M log) whatever K.
* "montecarlo": sample averages with common random numbers (``MonteCarlo``); unbiased, with
  standard errors.
* "auto": the fastest exact backend within the memory budget, else the most accurate approximate
  one (``planner``); every name is planned (peak memory, time per pass) and refused with
  ``ProblemTooLarge`` before allocating when it would not fit. The ``Solution`` and the JSON name
  the one chosen and why (``backend_reason``).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

from ._interface import outcome_table
from .chunked import ChunkedEnumeration
from .convolution import LatticeConvolution
from .montecarlo import MonteCarlo
from .planner import BackendPlan, plan_backend

BACKENDS = ("enumerate", "chunked", "convolution", "montecarlo", "auto")
# The lattice's default error target, relative to v(1) - v(0): a tenth of the solvers'
# FEASIBILITY_TOL (1e-10), so that a solution's error bound can fit within the tolerance.
LATTICE_RTOL = 1e-11


def resolve_backend(backend: str, participants: int, num_types: int, memory_budget: float | None = None) -> str:
    """The concrete backend name for ``backend`` ("auto" resolved by ``planner.plan_backend``)."""
    return plan_backend(check_backend_name(backend), participants, num_types, memory_budget=memory_budget).backend


def check_backend_name(backend) -> str:
    """``backend`` if it is a name from ``BACKENDS``; a ``ValueError`` naming it otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def make_backend(problem, backend: str = "auto", *, chunk_size: int | None = None, devices: int = 1,
                 bins: int | None = None, lattice_rtol: float = LATTICE_RTOL, samples: int = 1 << 16, seed: int = 0,
                 memory_budget: float | None = None) -> tuple[BackendPlan, object]:
    """(plan, backend object) for ``problem``: an ``OutcomeTable`` (padded to a ``bucket_length``)
    or a ``ChunkedEnumeration`` / ``LatticeConvolution`` / ``MonteCarlo``, planned first.

    Args:
      problem: ``ContractProblem`` (float64 leaves for exact work).
      backend: a name from ``BACKENDS``.
      chunk_size: outcomes per chunk ("chunked").  devices: devices to shard the chunks over ("chunked").
      bins: lattice points per largest draw ("convolution"); default: chosen by
        ``LatticeConvolution.for_problem`` at the reservation contributions to ``lattice_rtol``
        (relative to v(1) - v(0)), at most the largest lattice within the memory budget (the
        finest one if that does not reach ``lattice_rtol``: the solution's error bound says so).
      samples, seed: Monte Carlo sample count and seed.
      memory_budget: bytes (default: ``planner.memory_budget()``).

    Returns:
      (``BackendPlan``, backend object). Raises ``ProblemTooLarge`` before allocating when the
      backend (or, for "auto", every backend) would exceed the memory budget or the time limit.
    """
    n, num = problem.num_participants, problem.num_types
    plan = plan_backend(check_backend_name(backend), n, num, memory_budget=memory_budget, chunk_size=chunk_size,
                        bins=bins, samples=samples)
    name = plan.backend
    if name == "enumerate":
        return plan, jax.tree_util.tree_map(jnp.asarray, outcome_table(n, num, length="bucket"))
    if name == "chunked":
        sizes = {} if chunk_size is None else {"chunk_size": int(chunk_size)}
        return plan, ChunkedEnumeration(n, num, devices=int(devices), **sizes)
    if name == "convolution":
        if bins is None:
            return plan, LatticeConvolution.for_problem(problem, jnp.asarray(problem.reservation_data),
                                                        rtol=lattice_rtol, max_bins=plan.max_bins // 2,
                                                        strict=False)
        return plan, LatticeConvolution(n, int(bins))
    return plan, MonteCarlo(n, num, samples=int(samples), seed=int(seed))


def checked_backend_options(options: dict | None) -> dict:
    """``backend_options`` with every key a ``make_backend`` option; a ``ValueError`` naming the others."""
    known = [name for name, p in inspect.signature(make_backend).parameters.items() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ValueError(f"backend_options: unknown option(s) {unknown}; the options are {known}")
    return dict(options or {})
