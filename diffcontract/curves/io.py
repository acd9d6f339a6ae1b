"""Saving and loading curves (flax msgpack serialization).

A file holds one curve as a nested dict: ``{"format": ..., "curve": node, "metadata": {...}}``
where a node is ``{"kind": class name, "leaves": {field: array or node}, "static": {field: value}}``.
Only the curve classes of ``diffcontract.curves`` (``CURVE_CLASSES``) can be loaded, by name: a
file never names code to import. Leaves are stored as float64 arrays, so a curve round-trips
exactly.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from .accuracy import Arctan, GeneralizationBound, PowerLaw
from .families import MMF, Exp3, LogPower, Pow4, ScaledAccuracy, Weibull
from .learned import LearnedAccuracy
from .valuation import Exponential, Linear

FORMAT = "diffcontract-curve-v1"
CURVE_CLASSES = {cls.__name__: cls for cls in (GeneralizationBound, PowerLaw, Arctan, Pow4, MMF, LogPower, Exp3, Weibull,
                                               ScaledAccuracy, LearnedAccuracy, Linear, Exponential)}


def _is_static(field: dataclasses.Field) -> bool:
    return not field.metadata.get("pytree_node", True)


def _encode(curve: Any) -> dict:
    cls = type(curve)
    if CURVE_CLASSES.get(cls.__name__) is not cls:
        raise ValueError(f"cannot save a {cls.__name__}: only {sorted(CURVE_CLASSES)} are supported")
    leaves, static = {}, {}
    for f in dataclasses.fields(curve):
        value = getattr(curve, f.name)
        if _is_static(f):
            static[f.name] = value
        elif dataclasses.is_dataclass(value):
            leaves[f.name] = _encode(value)
        else:
            leaves[f.name] = np.asarray(value, dtype=np.float64)
    return {"kind": cls.__name__, "leaves": leaves, "static": static}


def _decode(node: dict) -> Any:
    kind = node.get("kind")
    if kind not in CURVE_CLASSES:
        raise ValueError(f"unknown curve kind {kind!r} in file; known: {sorted(CURVE_CLASSES)}")
    cls = CURVE_CLASSES[kind]
    kwargs = {}
    for name, value in node.get("leaves", {}).items():
        if isinstance(value, dict):
            kwargs[name] = _decode(value)
        else:
            arr = np.asarray(value, dtype=np.float64)
            kwargs[name] = float(arr) if arr.ndim == 0 else arr
    kwargs.update(node.get("static", {}))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(kwargs) - names
    if unknown:
        raise ValueError(f"{kind} has no field(s) {sorted(unknown)}")
    return cls(**kwargs)


def curve_to_bytes(curve: Any, metadata: dict | None = None) -> bytes:
    """msgpack bytes of ``curve`` (and an optional JSON-like ``metadata`` dict, arrays allowed)."""
    return serialization.msgpack_serialize({"format": FORMAT, "curve": _encode(curve), "metadata": dict(metadata or {})})


def curve_from_bytes(data: bytes) -> tuple[Any, dict]:
    """(curve, metadata) from ``curve_to_bytes`` output; the curve is validated."""
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"not a diffcontract curve file: {err}") from err
    if not isinstance(tree, dict) or tree.get("format") != FORMAT:
        raise ValueError(f"not a diffcontract curve file (expected format {FORMAT!r})")
    curve = _decode(tree["curve"])
    if hasattr(curve, "validate"):
        curve.validate()
    return curve, tree.get("metadata", {})


def encode_curve(curve: Any) -> dict:
    """The nested-dict form of a curve (to embed one curve in another file's metadata)."""
    return _encode(curve)


def decode_curve(node: dict) -> Any:
    """Inverse of ``encode_curve`` (validated)."""
    curve = _decode(node)
    if hasattr(curve, "validate"):
        curve.validate()
    return curve


def _jsonable(node):
    if isinstance(node, dict):
        return {k: _jsonable(v) for k, v in node.items()}
    if isinstance(node, np.ndarray):
        return node.tolist()
    return node


def curve_to_json(curve: Any) -> dict:
    """``encode_curve`` with arrays as (nested) lists: for JSON records of problems and solutions.

    Unlike ``problem.to_dict``'s flat ``{"kind", param: float}``, this carries curves whose
    parameters are arrays (``LearnedAccuracy``) and nested curves (``ScaledAccuracy``).
    ``curve_from_json`` inverts it exactly (float64 round-trips through JSON's repr).
    """
    return _jsonable(_encode(curve))


def curve_from_json(node: dict) -> Any:
    """Inverse of ``curve_to_json`` (validated)."""
    return decode_curve(node)


def save_curve(path, curve: Any, metadata: dict | None = None) -> Path:
    """Write ``curve`` to ``path`` (conventionally ``*.msgpack``); returns the path."""
    path = Path(path)
    path.write_bytes(curve_to_bytes(curve, metadata))
    return path


def load_curve(path, with_metadata: bool = False):
    """Read a curve written by ``save_curve`` (``with_metadata``: return (curve, metadata))."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"curve file not found: {str(path)!r}")
    curve, metadata = curve_from_bytes(path.read_bytes())
    return (curve, metadata) if with_metadata else curve
