r"""Planning a backend before anything is allocated: its peak memory and time per pass, auto's choice and why.

Every backend states, from (N, I) and its options alone, its estimated peak working memory and
the time of one pass over the outcomes (``estimate``). ``plan_backend`` turns a backend name into
a ``BackendPlan``: an explicit name is checked against the memory budget and the time limit and
refused with ``ProblemTooLarge`` (a ``ValueError``; CLI exit code 3) when it would exceed either;
"auto" picks

1. "enumerate" while the table has at most ``ENUMERATE_FASTEST`` rows and fits the budget (an
   in-memory table is fastest there; past it, the start search's full passes over the table cost
   more than the chunked backend's streamed ones: measured 35 s against 8 s at I = 13, N = 10);
2. else "chunked" (exact, O(chunk I) memory) up to ``AUTO_CHUNKED_MAX`` outcomes;
3. else the most accurate approximate backend that fits: "convolution" (to ~1e-8), then
   "montecarlo" (unbiased, with standard errors);

and the plan's ``reason`` says which rule decided (``Solution.backend_reason``, logged at ``-v``).

The memory budget is ``memory_budget`` bytes when given (``backend_options``, CLI
``--backend-option memory_budget=4e9``), else the environment variable
``DIFFCONTRACT_MEMORY_BUDGET`` (bytes), else ``DEFAULT_BUDGET_FRACTION`` of the memory the
operating system reports available. The estimates are working memory on top of the process
(about 0.45 GiB for Python, JAX and the compiled kernels). Their constants were measured as peak
resident memory of whole solves on a 2-core CPU (``benchmarks/planner.py`` re-measures them):
enumerate 77-205 bytes per table entry K (I + 1) across I = 2..13 (96 used: the large tables,
where it matters, sit at the low end); chunked about 170 MiB at I = 13 with 2^15-outcome chunks
(~ 48 float64 arrays of a chunk's (B, I + 1) entries), and by half-tables (``product``, N <= 48)
about 64 bytes per outcome (0.9 GiB at I = 19, N = 10, compilation included); the lattice holds about 8 complex arrays
of (I + 2) half spectra of its FFT length.
"""

from __future__ import annotations

import dataclasses
import math
import os

from .product import uses_product

GIB = 1 << 30
DEFAULT_BUDGET_FRACTION = 0.5  # of the memory the OS reports available
FALLBACK_AVAILABLE = 8 * GIB  # when the OS does not say
BUDGET_ENV = "DIFFCONTRACT_MEMORY_BUDGET"

ENUMERATE_FASTEST = 1 << 18  # outcomes: auto's in-memory table up to here (module docstring)
AUTO_CHUNKED_MAX = 1 << 27  # outcomes: auto streams exactly up to here (~15 s a pass on 2 CPU cores)
CHUNKED_LIMIT = 1 << 40  # outcomes: beyond it one exact pass would take more than a day on a CPU

ENUMERATE_BYTES_PER_ENTRY = 96  # per entry of the (K, I + 1) table and its weights, gradients, copies
CHUNKED_BYTES_PER_ENTRY = 384  # per entry of one chunk's (B, I + 1) arrays (checkpointed scan, Jacobian)
LATTICE_BYTES_PER_POINT = 128  # per half-spectrum point and type (complex128 psi, dpsi, powers, products)
HALF_TABLE_BYTES_PER_OUTCOME = 64  # chunked by half-tables (N <= 48): compilation and grids, per outcome
SAMPLE_BYTES_PER_ENTRY = 96  # per entry of the (S, I + 1) sampled table, as the enumerate table
ENTRIES_PER_SECOND = 1e8  # table entries a 2-core CPU passes per second (scaling.py: ~1e7 outcomes/s, I = 9)

EXACT = ("enumerate", "chunked")


class ProblemTooLarge(ValueError):
    """A problem refused by a backend as too large for the memory or time budget (CLI exit code 3)."""


@dataclasses.dataclass(frozen=True)
class BackendPlan:
    """A backend chosen for (N, I), with what it will cost.

    Attributes:
      backend: the concrete backend name.
      outcomes: K = C(N + I - 1, I - 1).
      peak_bytes: estimated peak working memory, bytes.
      seconds_per_pass: estimated time of one evaluation of the moments on a 2-core CPU, seconds.
      memory_budget: the budget it was planned against, bytes.
      reason: one sentence: why this backend (for ``Solution.backend_reason`` and ``-v`` logs).
      max_bins: "convolution" only: the largest lattice (bins per draw) within the budget.
    """

    backend: str
    outcomes: int
    peak_bytes: int
    seconds_per_pass: float
    memory_budget: int
    reason: str
    max_bins: int | None = None

    @property
    def exact(self) -> bool:
        return self.backend in EXACT


def available_memory() -> int:
    """Bytes of memory the operating system reports available (``MemAvailable``), else a fallback."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_AVAILABLE


def memory_budget(budget: float | None = None) -> int:
    """The memory budget in bytes: ``budget`` if given, else ``$DIFFCONTRACT_MEMORY_BUDGET``, else a
    ``DEFAULT_BUDGET_FRACTION`` of the available memory. A budget that is not a positive number is
    a ``ValueError`` naming where it came from."""
    source = "memory_budget"
    if budget is None and os.environ.get(BUDGET_ENV):
        budget, source = os.environ[BUDGET_ENV], BUDGET_ENV
    if budget is None:
        return int(DEFAULT_BUDGET_FRACTION * available_memory())
    try:
        value = float(budget)
    except (TypeError, ValueError):
        value = math.nan
    if not (value > 0 and math.isfinite(value)) or isinstance(budget, bool):
        raise ValueError(f"{source} must be a positive number of bytes, got {budget!r}")
    return int(value)


MAX_FFT_LENGTH = 1 << 24  # the lattice backend's largest FFT


def fft_length(participants: int, bins: int) -> int:
    """FFT length of the lattice backend: the next power of 2 above the support N (bins + 2) + 1."""
    return 1 << (participants * (bins + 2)).bit_length()


def pass_seconds(entries: float) -> float:
    """Estimated seconds of one pass over ``entries`` table entries on a 2-core CPU (module docstring)."""
    return entries / ENTRIES_PER_SECOND


def estimate(backend: str, participants: int, num_types: int, *, chunk_size: int = 1 << 15, bins: int = 64,
             samples: int = 1 << 16) -> tuple[int, float]:
    """(peak working bytes, seconds per pass) of ``backend`` for N = ``participants``, I = ``num_types``.

    Pure integer arithmetic on the sizes (no allocation), so it answers at any size. The constants
    and how they were measured: module docstring.
    """
    outcomes = math.comb(participants + num_types - 1, num_types - 1)
    width = num_types + 1
    if backend == "enumerate":
        return ENUMERATE_BYTES_PER_ENTRY * outcomes * width, pass_seconds(outcomes * width)
    if backend == "chunked":
        chunk = min(int(chunk_size), outcomes)
        tables = 8 * (participants + num_types) * (num_types + 1)  # binomials and log-factorials
        peak = CHUNKED_BYTES_PER_ENTRY * chunk * width + tables
        if uses_product(participants, num_types, 1):  # half-tables: less work per outcome, more memory
            return max(peak, HALF_TABLE_BYTES_PER_OUTCOME * outcomes), pass_seconds(outcomes)
        return peak, pass_seconds(outcomes * width)
    if backend == "convolution":
        length = fft_length(participants, int(bins))
        return (LATTICE_BYTES_PER_POINT * (length // 2 + 1) * (num_types + 2),
                pass_seconds(length * math.log2(length) * (num_types + 2)))
    if backend == "montecarlo":
        return SAMPLE_BYTES_PER_ENTRY * int(samples) * width, pass_seconds(int(samples) * width)
    raise ValueError(f"no estimate for backend {backend!r}")


def _mib(num_bytes: float) -> str:
    return f"{num_bytes / (1 << 20):,.0f} MiB"


def _largest_lattice(participants: int, num_types: int, budget: int, bins: int | None) -> int | None:
    """The largest power-of-2 bins whose lattice fits ``budget`` and the FFT cap (``bins`` itself if given).

    Without ``bins``, ``LatticeConvolution.for_problem`` chooses M by comparing M with 2M, so the
    plan needs at least 128 to fit (M = 64 and its check at 128), and it passes on half of it.
    """

    def fits(b: int) -> bool:
        return fft_length(participants, b) <= MAX_FFT_LENGTH and estimate(
            "convolution", participants, num_types, bins=b)[0] <= budget

    if bins is not None:
        return int(bins) if fits(int(bins)) else None
    best, candidate = None, 64
    while candidate <= 1 << 16 and fits(candidate):
        best, candidate = candidate, 2 * candidate
    return best if best is not None and best >= 128 else None


def _plan_of(name: str, participants: int, num_types: int, budget: int, options: dict, reason: str) -> BackendPlan:
    """The plan of a concrete backend, or ``ProblemTooLarge`` saying why it cannot run."""
    outcomes = math.comb(participants + num_types - 1, num_types - 1)
    max_bins = None
    if name == "convolution":
        max_bins = _largest_lattice(participants, num_types, budget, options.get("bins"))
        if max_bins is None:
            raise ProblemTooLarge(
                f"backend 'convolution': N = {participants} participants need a lattice FFT beyond the memory "
                f"budget of {_mib(budget)} or the FFT cap; use backend 'montecarlo' (unbiased, with standard "
                f"errors)")
    sizes = {key: int(options[key]) for key in ("chunk_size", "samples") if options.get(key) is not None}
    peak, seconds = estimate(name, participants, num_types, bins=max_bins or 64, **sizes)
    # Refused: the part before ";" is the reason "auto" quotes when it falls back to the next backend.
    size = f"N = {participants} participants with I = {num_types} types ({outcomes:.3g} outcomes)"
    alternatives = "use backend 'convolution' (to ~1e-8) or 'montecarlo' (unbiased, with standard errors), or 'auto'"
    if name == "chunked" and outcomes > CHUNKED_LIMIT:
        raise ProblemTooLarge(f"backend 'chunked': {size} is above its limit of {CHUNKED_LIMIT:.3g} outcomes (one "
                              f"exact pass would take over a day); {alternatives}")
    if peak > budget:
        raise ProblemTooLarge(f"backend {name!r}: {size} needs about {_mib(peak)}, above the memory budget of "
                              f"{_mib(budget)} (set backend option memory_budget, in bytes, or ${BUDGET_ENV}); "
                              f"{alternatives}")
    # The reason depends on (N, I) and the options only, not on the memory free at the time.
    return BackendPlan(name, outcomes, int(peak), float(seconds), budget,
                       f"{reason}; estimated peak {_mib(peak)}, ~{seconds:.2g} s a pass", max_bins)


def plan_backend(backend: str, participants: int, num_types: int, **options) -> BackendPlan:
    """The ``BackendPlan`` for ``backend`` ("auto" resolved as in the module docstring).

    Args:
      backend: "auto" or a concrete name ("enumerate", "chunked", "convolution", "montecarlo").
      participants: N >= 1.  num_types: I >= 1.
      **options: the backend options that change the cost (``memory_budget`` bytes, ``chunk_size``,
        ``bins``, ``samples``); others are ignored here.

    Returns:
      ``BackendPlan``. Raises ``ProblemTooLarge`` (before any allocation) when the named backend, or
      every backend for "auto", exceeds the budget or the time limit.
    """
    budget = memory_budget(options.get("memory_budget"))
    if backend != "auto":
        return _plan_of(backend, participants, num_types, budget, options, f"backend {backend!r} as asked")
    outcomes = math.comb(participants + num_types - 1, num_types - 1)
    reasons = []
    rules = [("enumerate", outcomes <= ENUMERATE_FASTEST, f"auto: {outcomes:,} outcomes <= {ENUMERATE_FASTEST:,}, "
                                                          "an in-memory table is fastest"),
             ("chunked", outcomes <= AUTO_CHUNKED_MAX, f"auto: exact streaming of {outcomes:.3g} outcomes"),
             ("convolution", True, f"auto: {outcomes:.3g} outcomes are too many to enumerate within "
                                   f"{AUTO_CHUNKED_MAX:.3g}; the lattice is the most accurate approximation"),
             ("montecarlo", True, "auto: no exact backend or lattice fits; Monte Carlo with standard errors")]
    for name, applies, reason in rules:
        if not applies:
            continue
        try:
            return _plan_of(name, participants, num_types, budget, options,
                            reason + "".join(f" ({r})" for r in reasons[-1:]))
        except ProblemTooLarge as err:
            reasons.append(str(err).split(";")[0])
    raise ProblemTooLarge(f"no backend fits N = {participants}, I = {num_types}: " + "; ".join(reasons))
