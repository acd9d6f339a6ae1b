"""Real learning-curve data: LCDB (optional extra, plus a shipped extract) and curves trained here.

Every source returns ``LearningCurve`` records (sizes in training samples, held-out accuracy).
``load_source("lcdb:<openml id>:<learner>")``, ``load_source("lcdb-extract:<id>:<learner>")`` and
``load_source("sklearn:<dataset>:<learner>")`` name one curve by a short spec (the CLI's
``--source``). Nothing here downloads anything.
"""

from ._record import LearningCurve, cache_dir
from .lcdb import lcdb_curve, lcdb_curves, lcdb_extract, load_lcdb_table
from .sklearn_curves import shipped_sklearn_curves, sklearn_curve, sklearn_curves, train_curve

SOURCES = ("lcdb", "lcdb-extract", "sklearn")


def load_source(spec: str) -> LearningCurve:
    """One curve from ``source:dataset:learner`` (see the module docstring)."""
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"source must look like 'sklearn:digits:logreg' or 'lcdb:<openml id>:<learner>', got {spec!r}")
    source, dataset, learner = parts
    if source == "sklearn":
        return sklearn_curve(dataset, learner)
    if source == "lcdb":
        if not dataset.isdigit():
            raise ValueError(f"an LCDB dataset is an OpenML id (an integer), got {dataset!r}")
        return lcdb_curve(int(dataset), learner)
    if source == "lcdb-extract":
        for curve in lcdb_extract():
            if curve.dataset == dataset and curve.learner.lower() == learner.lower():
                return curve
        have = sorted(f"{c.dataset}:{c.learner}" for c in lcdb_extract())
        raise ValueError(f"the shipped LCDB extract has no curve {dataset}:{learner}; it has {have}")
    raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")


__all__ = ["LearningCurve", "SOURCES", "cache_dir", "lcdb_curve", "lcdb_curves", "lcdb_extract", "load_lcdb_table",
           "load_source", "shipped_sklearn_curves", "sklearn_curve", "sklearn_curves", "train_curve"]
