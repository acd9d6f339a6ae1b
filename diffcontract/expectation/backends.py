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
* "auto": "enumerate" while the table has at most ``ENUMERATE_MAX`` rows, "chunked" up to
  ``CHUNKED_MAX``, else "convolution". The ``Solution`` and the JSON name the one chosen.
"""

from __future__ import annotations

import inspect
import math

import jax.numpy as jnp

from ._interface import OutcomeTable, outcome_table
from .chunked import ChunkedEnumeration
from .convolution import LatticeConvolution
from .limits import check_size
from .montecarlo import MonteCarlo

BACKENDS = ("enumerate", "chunked", "convolution", "montecarlo", "auto")
ENUMERATE_MAX = 1 << 18
CHUNKED_MAX = 1 << 27


def resolve_backend(backend: str, participants: int, num_types: int) -> str:
    """The concrete backend name for ``backend`` (resolving "auto" by the outcome count)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    count = math.comb(participants + num_types - 1, num_types - 1)
    if count <= ENUMERATE_MAX:
        return "enumerate"
    if count <= CHUNKED_MAX:
        return "chunked"
    return "convolution"


def make_backend(problem, backend: str = "auto", *, chunk_size: int | None = None, devices: int = 1,
                 bins: int | None = None, lattice_rtol: float = 1e-8, samples: int = 1 << 16, seed: int = 0):
    """(name, backend object) for ``problem``: an ``OutcomeTable`` (padded to a ``bucket_length``)
    or a ``ChunkedEnumeration`` / ``LatticeConvolution`` / ``MonteCarlo``.

    Args:
      problem: ``ContractProblem`` (float64 leaves for exact work).
      backend: a name from ``BACKENDS``.
      chunk_size: outcomes per chunk ("chunked").  devices: devices to shard the chunks over ("chunked").
      bins: lattice points per largest draw ("convolution"); default: chosen by
        ``LatticeConvolution.for_problem`` at the reservation contributions to ``lattice_rtol``.
      samples, seed: Monte Carlo sample count and seed.
    """
    n, num = problem.num_participants, problem.num_types
    name = resolve_backend(backend, n, num)
    check_size(name, n, num)
    if name == "enumerate":
        table = outcome_table(n, num, length="bucket")
        return name, OutcomeTable(jnp.asarray(table.counts), jnp.asarray(table.valid))
    if name == "chunked":
        sizes = {} if chunk_size is None else {"chunk_size": int(chunk_size)}
        return name, ChunkedEnumeration(n, num, devices=int(devices), **sizes)
    if name == "convolution":
        if bins is None:
            return name, LatticeConvolution.for_problem(problem, jnp.asarray(problem.reservation_data), rtol=lattice_rtol)
        return name, LatticeConvolution(n, int(bins))
    return name, MonteCarlo(n, num, samples=int(samples), seed=int(seed))


def checked_backend_options(options: dict | None) -> dict:
    """``backend_options`` with every key a ``make_backend`` option; a ``ValueError`` naming the others."""
    known = [name for name, p in inspect.signature(make_backend).parameters.items() if p.kind == p.KEYWORD_ONLY]
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ValueError(f"backend_options: unknown option(s) {unknown}; the options are {known}")
    return dict(options or {})
