"""LCDB, the Learning Curve Database (Mohr, Viering, Loog, van Rijn, ECML-PKDD 2022).

The PyPI package ``lcdb`` (optional extra: ``pip install -e ".[lcdb]"``) ships ``database-accuracy.csv``
with held-out accuracies of 20 scikit-learn learners on OpenML datasets at training sizes
16 * 2^(k/2) (16, 23, 32, 45, 64, ...), each under several outer x inner random splits. It is read
here *lazily* and without importing ``lcdb`` itself (its ``__init__`` imports ``openml`` and
``pandas``, which we do not need): the first call parses the CSV (about 2 M rows, tens of
seconds) and caches the per-size means as ``.npz`` in ``diffcontract.data.cache_dir()``.

A small extract (a few curves, per-size mean/std/count of the validation accuracy) is shipped in
this package as ``lcdb_extract.csv`` with the LCDB licence (MIT, Copyright (c) 2021 Felix Mohr) in
``LCDB-LICENSE.txt``; ``lcdb_extract()`` reads it and needs nothing installed.
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Sequence

import numpy as np

from ._csv import parse_curves, shipped_text
from ._record import LearningCurve, aggregate, cache_dir

SCORES = ("valid", "test")
EXTRACT_FILE = "lcdb_extract.csv"
CACHE_VERSION = 1


def _short(learner: str) -> str:
    return learner.rsplit(".", 1)[-1]


def lcdb_csv_path() -> Path:
    """Path of ``database-accuracy.csv`` in the installed ``lcdb`` package.

    Raises:
      ModuleNotFoundError: if ``lcdb`` is not installed (``pip install -e ".[lcdb]"``).
    """
    spec = importlib.util.find_spec("lcdb")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError('the LCDB table needs the optional extra: pip install -e ".[lcdb]" '
                                  "(or use lcdb_extract() for the curves shipped with diffcontract)")
    path = Path(list(spec.submodule_search_locations)[0]) / "database-accuracy.csv"
    if not path.is_file():
        raise FileNotFoundError(f"the installed lcdb package has no {path.name} at {path}")
    return path


def _parse_csv(path: Path, score: str) -> dict[str, np.ndarray]:
    column = f"score_{score}"
    learners: dict[str, int] = {}
    ids, lids, sizes, values = [], [], [], []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        head = next(reader)
        i_id, i_learner, i_size, i_score = (head.index(c) for c in ("openmlid", "learner", "size_train", column))
        for row in reader:
            ids.append(int(row[i_id]))
            lids.append(learners.setdefault(row[i_learner], len(learners)))
            sizes.append(float(row[i_size]))
            try:
                values.append(float(row[i_score]))
            except ValueError:
                values.append(np.nan)
    key = np.asarray(ids, np.int64) * 1000 + np.asarray(lids, np.int64)
    k, s, mean, std, count = aggregate(key, np.asarray(sizes), np.asarray(values))
    return {"openml_id": k // 1000, "learner_index": k % 1000, "size": s, "mean": mean, "std": std,
            "count": count, "learners": np.asarray(sorted(learners, key=learners.get))}


def load_lcdb_table(score: str = "valid", refresh: bool = False) -> dict[str, np.ndarray]:
    """The whole LCDB accuracy table aggregated per (dataset, learner, size), cached on first use.

    Args:
      score: "valid" (LCDB's validation split, default) or "test".
      refresh: re-parse the CSV even if a cache exists.

    Returns:
      dict of (R,) arrays ``openml_id``, ``learner_index``, ``size`` (samples), ``mean``, ``std``,
      ``count``, and ``learners`` (names indexed by ``learner_index``).
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    path = lcdb_csv_path()
    stat = path.stat()
    cache = cache_dir() / f"lcdb-accuracy-{score}-v{CACHE_VERSION}-{stat.st_size}-{int(stat.st_mtime)}.npz"
    if cache.is_file() and not refresh:
        with np.load(cache, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    table = _parse_csv(path, score)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **table)
    tmp.replace(cache)
    return table


def _resolve_learner(names: Sequence[str], learner: str) -> int:
    for i, name in enumerate(names):
        if learner in (name, _short(name)):
            return i
    lowered = [i for i, name in enumerate(names) if _short(name).lower() == learner.lower()]
    if len(lowered) == 1:
        return lowered[0]
    raise ValueError(f"unknown LCDB learner {learner!r}; choose one of {sorted(_short(n) for n in names)}")


def _curves_from_table(table: dict[str, np.ndarray], rows: np.ndarray, min_sizes: int) -> list[LearningCurve]:
    """The curves of the table ``rows`` that have at least ``min_sizes`` sizes."""
    out = []
    key = table["openml_id"][rows] * 1000 + table["learner_index"][rows]
    for k in np.unique(key):
        sel = rows[key == k]
        if sel.size < min_sizes:
            continue
        name = _short(str(table["learners"][table["learner_index"][sel[0]]]))
        out.append(LearningCurve("lcdb", str(int(table["openml_id"][sel[0]])), name, table["size"][sel],
                                 np.clip(table["mean"][sel], 0.0, 1.0), table["std"][sel], table["count"][sel]))
    return out


def lcdb_curve(openml_id: int | str, learner: str, score: str = "valid") -> LearningCurve:
    """One LCDB curve: ``learner`` (full or short sklearn name, e.g. "LogisticRegression", "SVC_rbf")
    on OpenML dataset ``openml_id``. Needs the ``lcdb`` extra."""
    curves = lcdb_curves(learners=[learner], datasets=[int(openml_id)], score=score)
    if not curves:
        raise ValueError(f"LCDB has no curve (>= 2 sizes) for dataset {openml_id} and learner {learner!r}")
    return curves[0]


def lcdb_curves(min_sizes: int = 2, learners: Sequence[str] | None = None, datasets: Sequence[int] | None = None,
                score: str = "valid") -> list[LearningCurve]:
    """All LCDB curves with at least ``min_sizes`` training sizes, optionally filtered. Needs the extra."""
    table = load_lcdb_table(score)
    keep = np.ones(table["size"].shape, dtype=bool)
    if learners is not None:
        names = [str(n) for n in table["learners"]]
        keep &= np.isin(table["learner_index"], [_resolve_learner(names, lrn) for lrn in learners])
    if datasets is not None:
        keep &= np.isin(table["openml_id"], np.asarray(datasets, dtype=np.int64))
    return _curves_from_table(table, np.flatnonzero(keep), min_sizes)


def lcdb_extract() -> list[LearningCurve]:
    """The LCDB curves shipped with diffcontract (no extra needed); ``source`` is "lcdb-extract"."""
    return parse_curves(shipped_text(EXTRACT_FILE))
