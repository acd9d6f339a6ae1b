"""The learning-curve record shared by every data source (host side, numpy)."""

from __future__ import annotations

import dataclasses

import numpy as np

from .._cache import cache_dir  # noqa: F401  (data.cache_dir: the one cache folder)


@dataclasses.dataclass(frozen=True)
class LearningCurve:
    """Held-out accuracy of one learner on one dataset at increasing training-set sizes.

    Attributes:
      source: where it comes from: "lcdb" (the full LCDB table), "lcdb-extract" (the copy shipped
        in this package) or "sklearn" (trained here by ``diffcontract.data.sklearn_curves``).
      dataset: dataset name (an OpenML id for LCDB, a scikit-learn loader name otherwise).
      learner: learner name.
      sizes: (n,) training-set sizes, samples, strictly increasing.
      mean: (n,) mean held-out accuracy over the repetitions, in [0, 1].
      std: (n,) standard deviation of the accuracy over the repetitions (0 with one repetition).
      count: (n,) number of repetitions averaged at each size.
    """

    source: str
    dataset: str
    learner: str
    sizes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    count: np.ndarray

    def __post_init__(self):
        sizes = np.asarray(self.sizes, dtype=np.float64)
        n = sizes.shape
        for name in ("mean", "std", "count"):
            if np.shape(getattr(self, name)) != n:
                raise ValueError(f"LearningCurve.{name} must have the shape of sizes {n}, got "
                                 f"{np.shape(getattr(self, name))}")
        if sizes.ndim != 1 or sizes.size < 2 or np.any(np.diff(sizes) <= 0) or sizes[0] <= 0:
            raise ValueError(f"LearningCurve.sizes must be >= 2 positive, strictly increasing sizes, got {sizes}")
        if not np.all(np.isfinite(self.mean)) or np.any((self.mean < 0) | (self.mean > 1)):
            raise ValueError("LearningCurve.mean must be finite accuracies in [0, 1]")

    @property
    def key(self) -> str:
        """``source:dataset:learner``, the form ``diffcontract fit-curve --source`` takes."""
        return f"{self.source}:{self.dataset}:{self.learner}"

    def split(self, fit_fraction: float = 0.5, min_fit: int = 4) -> tuple["LearningCurve", "LearningCurve"]:
        """(fit part, held-out part): the first ``ceil(fit_fraction n)`` sizes (at least ``min_fit``)
        and the rest, for extrapolation checks."""
        cut = min(max(min_fit, int(np.ceil(fit_fraction * self.sizes.size))), self.sizes.size - 1)
        return self._take(slice(0, cut)), self._take(slice(cut, None))

    def _take(self, index) -> "LearningCurve":
        return dataclasses.replace(self, sizes=self.sizes[index], mean=self.mean[index], std=self.std[index],
                                   count=self.count[index])


def aggregate(keys: np.ndarray, sizes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean, std and count of ``scores`` per (key, size), NaN scores dropped.

    Args:
      keys: (R,) integer curve keys. sizes: (R,) training sizes. scores: (R,) accuracies.

    Returns:
      (keys, sizes, mean, std, count), one row per distinct (key, size), sorted by key then size.
    """
    ok = np.isfinite(scores)
    keys, sizes, scores = keys[ok], sizes[ok], scores[ok]
    order = np.lexsort((sizes, keys))
    keys, sizes, scores = keys[order], sizes[order], scores[order]
    start = np.flatnonzero(np.concatenate([[True], (np.diff(keys) != 0) | (np.diff(sizes) != 0)]))
    count = np.diff(np.concatenate([start, [keys.size]]))
    mean = np.add.reduceat(scores, start) / count
    sq = np.add.reduceat(scores**2, start)
    var = np.maximum(sq / count - mean**2, 0.0) * count / np.maximum(count - 1, 1)
    return keys[start], sizes[start], mean, np.sqrt(var), count
