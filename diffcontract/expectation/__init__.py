"""Expectation backends over the multinomial outcome law (MODEL.md "First-moment problem").

One interface: a backend turns a problem into an ``Expectations`` evaluator ``m -> Moments``:
E[a(n . qm)], E[v(a(n . qm))] and tbar_i(m) = E[v(a(n . qm)) | type i present].
"""

from ._interface import Moments, OutcomeTable, bucket_length, moments, outcome_table, outcome_weights, with_weights
from .enumerate import conditional_weights, enumerate_outcomes, log_pmf, num_outcomes

__all__ = [
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
