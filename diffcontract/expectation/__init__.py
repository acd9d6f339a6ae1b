"""Expectation backends over the multinomial outcome law (docs/model.md "The first-moment problem").

One interface: ``moments(m, problem, backend)`` -> ``Moments`` (E[a(n . qm)], E[v(a(n . qm))] and
tbar_i(m) = E[v(a(n . qm)) | type i present]), where ``backend`` is an ``OutcomeTable`` (full
enumeration) or a ``ChunkedEnumeration``, ``LatticeConvolution`` or ``MonteCarlo`` object;
``make_backend`` builds one by name (see ``backends``).
"""

from ._interface import Moments, OutcomeTable, bucket_length, moments, outcome_table, outcome_weights, with_weights
from .backends import BACKENDS, make_backend, resolve_backend
from .planner import BackendPlan, ProblemTooLarge, memory_budget, plan_backend
from .chunked import ChunkedEnumeration, unrank_outcomes
from .convolution import LatticeConvolution
from .enumerate import conditional_weights, enumerate_outcomes, log_pmf, num_outcomes
from .montecarlo import MonteCarlo, sample_outcomes

__all__ = [
    "BACKENDS",
    "ChunkedEnumeration",
    "LatticeConvolution",
    "MonteCarlo",
    "make_backend",
    "ProblemTooLarge",
    "BackendPlan",
    "memory_budget",
    "plan_backend",
    "resolve_backend",
    "sample_outcomes",
    "unrank_outcomes",
    "Moments",
    "bucket_length",
    "conditional_weights",
    "enumerate_outcomes",
    "log_pmf",
    "OutcomeTable",
    "moments",
    "outcome_table",
    "outcome_weights",
    "with_weights",
    "num_outcomes",
]
