"""Sizes a backend refuses: the outcome count beyond which a computation cannot finish in memory or time.

``ProblemTooLarge`` (a ``ValueError``, so code that catches bad input still catches it; the CLI
maps it to exit code 3) is raised *before* any allocation, naming the backend, the outcome count
K = C(N + I - 1, I - 1) and the limit:

* ``"enumerate"`` holds the whole (K, I) table and a few float64 arrays of the same shape; beyond
  ``ENUMERATE_LIMIT`` = 2^26 rows (about 2 GiB of counts at I = 8, and several times that while
  differentiating) it would exhaust a workstation's memory.
* ``"chunked"`` streams the table, so memory is bounded, but time grows with K: at the ~10^7
  outcomes per second measured on a 2-core CPU (``benchmarks/scaling.py``), one evaluation of the
  moments beyond ``CHUNKED_LIMIT`` = 2^40 outcomes would take more than a day.
* ``"convolution"`` and ``"montecarlo"`` cost does not grow with K: they are never refused here.
"""

from __future__ import annotations

import math

ENUMERATE_LIMIT = 1 << 26
CHUNKED_LIMIT = 1 << 40
LIMITS = {"enumerate": ENUMERATE_LIMIT, "chunked": CHUNKED_LIMIT}


class ProblemTooLarge(ValueError):
    """A problem refused by a backend as too large for the memory or time budget (CLI exit code 3)."""


def check_size(backend: str, participants: int, num_types: int) -> None:
    """Raise ``ProblemTooLarge`` when ``backend`` cannot handle K = C(N + I - 1, I - 1) outcomes.

    Args:
      backend: a concrete backend name ("enumerate", "chunked", "convolution", "montecarlo").
      participants: N.  num_types: I.
    """
    limit = LIMITS.get(backend)
    count = math.comb(participants + num_types - 1, num_types - 1)
    if limit is not None and count > limit:
        raise ProblemTooLarge(
            f"backend {backend!r}: N = {participants} participants with I = {num_types} types have "
            f"{count:.3g} outcomes, above its limit of {limit:.3g}; use backend 'convolution' (to ~1e-8) "
            f"or 'montecarlo' (unbiased, with standard errors), or 'auto'")
