"""Reading and writing the small curve tables shipped in this package (plain CSV, ``#`` comments)."""

from __future__ import annotations

import csv
import io
from importlib import resources
from typing import Iterable, Sequence

import numpy as np

from ._record import LearningCurve

COLUMNS = ("source", "dataset", "learner", "size", "mean", "std", "count")


def write_curves(path, curves: Iterable[LearningCurve], header: Sequence[str] = ()) -> None:
    """Write curves as one CSV row per (curve, size), preceded by ``# `` comment lines."""
    with open(path, "w", newline="") as fh:
        for line in header:
            fh.write(f"# {line}\n")
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for c in curves:
            for s, m, d, n in zip(c.sizes, c.mean, c.std, c.count):
                writer.writerow([c.source, c.dataset, c.learner, f"{s:g}", f"{m:.6f}", f"{d:.6f}", int(n)])


def parse_curves(text: str) -> list[LearningCurve]:
    """Curves from the text of a file written by ``write_curves``, in file order."""
    rows = csv.reader(line for line in io.StringIO(text) if not line.startswith("#"))
    head = next(rows)
    if tuple(head) != COLUMNS:
        raise ValueError(f"curve table must have columns {COLUMNS}, got {head}")
    groups: dict[tuple[str, str, str], list[list[float]]] = {}
    for row in rows:
        if row:
            groups.setdefault((row[0], row[1], row[2]), []).append([float(v) for v in row[3:]])
    out = []
    for (source, dataset, learner), values in groups.items():
        arr = np.asarray(values, dtype=np.float64)
        out.append(LearningCurve(source, dataset, learner, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3].astype(np.int64)))
    return out


def shipped_text(name: str) -> str:
    """Text of a data file shipped in ``diffcontract/data``."""
    return resources.files("diffcontract.data").joinpath(name).read_text()


def shipped_comments(name: str) -> list[str]:
    """The ``#`` header lines of a shipped table (its provenance and licence)."""
    return [line[1:].strip() for line in shipped_text(name).splitlines() if line.startswith("#")]
