"""The one registry of curve kinds, and their record format (JSON dicts and msgpack files).

A curve is recorded as a node ``{"kind": class name, field: value, ...}``: a number for a scalar
parameter, a (nested) list for an array, a node for a curve inside a curve (``ScaledAccuracy``).
Python writes a float64 as its shortest repr, which reads back as the same float64, so a curve
round-trips exactly through JSON and msgpack alike. A node names a class of ``CURVE_CLASSES`` or
one of the short names of ``ALIASES`` (any case): a record never names code to import. The flat
nodes of old records (``{"kind": "Linear", "scale": 100}``) are this form already.

A curve file (``save_curve``) holds ``{"format": FORMAT, "curve": node, "metadata": {...}}``.
Files of format v1 kept a node's parameters under "leaves" and "static"; they still load.
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

FORMAT = "diffcontract-curve-v2"
FORMAT_V1 = "diffcontract-curve-v1"
ACCURACY = (GeneralizationBound, PowerLaw, Arctan, Pow4, MMF, LogPower, Exp3, Weibull, ScaledAccuracy, LearnedAccuracy)
VALUATION = (Linear, Exponential)
CURVE_CLASSES = {cls.__name__: cls for cls in ACCURACY + VALUATION}
#: Short names of the command line and TOML configs ("pow3" is ``fitting``'s name of the power law).
ALIASES = {"sgb": GeneralizationBound, "power": PowerLaw, "pow3": PowerLaw, "cara": Exponential}
_BY_NAME = {**{name.lower(): cls for name, cls in CURVE_CLASSES.items()}, **ALIASES}


def curve_to_dict(curve: Any) -> dict:
    """The record of a registered curve: ``{"kind": class name, field: number, list or node}``.

    Args:
      curve: an instance of a class of ``CURVE_CLASSES``; array parameters of any shape.

    Returns:
      A JSON-safe dict (Python floats and nested lists, float64 values).
    """
    cls = type(curve)
    if CURVE_CLASSES.get(cls.__name__) is not cls:
        raise ValueError(f"cannot record a curve of kind {cls.__name__}: only {sorted(CURVE_CLASSES)} are registered")
    def record(value):  # a curve inside a curve is a node; a parameter a number or a (nested) list
        return curve_to_dict(value) if dataclasses.is_dataclass(value) else np.asarray(value, np.float64).tolist()

    return {"kind": cls.__name__, **{f.name: record(getattr(curve, f.name)) for f in dataclasses.fields(curve)}}


def _numeric(value: Any) -> bool:
    if isinstance(value, list):
        return all(_numeric(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "iuf"
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _field_value(f: dataclasses.Field, value: Any, where: str) -> Any:
    if f.name == "curve":  # the curve inside a curve (ScaledAccuracy)
        return curve_from_dict(value, where, ACCURACY)
    scalar = isinstance(f.default, float)  # the parameters with a numeric default are numbers
    try:
        arr = np.asarray(value, dtype=np.float64) if _numeric(value) else None
    except (ValueError, OverflowError):  # a ragged list, an integer beyond float64
        arr = None
    if arr is None or (scalar and arr.ndim):
        raise ValueError(f"{where} must be {'a number' if scalar else 'a number or a (nested) list of numbers'}, "
                         f"got {value!r}")
    return float(arr) if arr.ndim == 0 else arr


def curve_from_dict(node: Any, field: str = "curve", kinds: tuple = ACCURACY + VALUATION) -> Any:
    """Rebuild and validate a curve from ``curve_to_dict`` output (or an old record's flat node).

    Args:
      node: ``{"kind": name, param: value, ...}``; the kind is a class name or an ``ALIASES`` key,
        in any case.
      field: name of ``node`` in error messages (e.g. ``problem.accuracy``).
      kinds: the classes accepted here (``ACCURACY``, ``VALUATION``; default every one).

    Returns:
      The curve (scalar parameters as floats, arrays as float64 ``np.ndarray``).

    Raises:
      ValueError naming ``field`` for an unknown kind, an unknown, missing or non-numeric parameter,
      or a curve that fails its own validation.
    """
    if not isinstance(node, dict) or not isinstance(node.get("kind"), str):
        raise ValueError(f"{field} must be an object like {{\"kind\": \"Linear\", \"scale\": 100}}, got {node!r}")
    cls = _BY_NAME.get(node["kind"].lower())
    if cls not in kinds:
        names = sorted([c.__name__ for c in kinds] + [a for a, c in ALIASES.items() if c in kinds])
        raise ValueError(f"{field}: unknown curve kind {node['kind']!r}; known: {names}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(node) - set(fields) - {"kind"}
    if unknown:
        raise ValueError(f"{field}: {cls.__name__} has no parameter(s) {sorted(unknown)}; it takes {sorted(fields)}")
    values = {k: _field_value(fields[k], v, f"{field}.{k}") for k, v in node.items() if k != "kind"}
    try:
        curve = cls(**values)
        curve.validate()
    except (TypeError, ValueError) as err:  # TypeError: a required parameter is missing
        raise ValueError(f"{field}: {err}") from err
    return curve


def _from_v1(node: Any) -> Any:
    """A format v1 node ``{"kind", "leaves": {...}, "static": {...}}`` in today's form."""
    if not isinstance(node, dict):
        return node
    leaves, static = node.get("leaves", {}), node.get("static", {})
    if not (isinstance(leaves, dict) and isinstance(static, dict)):
        return node
    return {"kind": node.get("kind"), **{k: _from_v1(v) for k, v in leaves.items()}, **static}


# ----------------------------------------------------------------------------- msgpack files
def curve_to_bytes(curve: Any, metadata: dict | None = None) -> bytes:
    """msgpack bytes of ``curve`` and an optional ``metadata`` dict (numbers, lists, arrays)."""
    return serialization.msgpack_serialize({"format": FORMAT, "curve": curve_to_dict(curve),
                                            "metadata": dict(metadata or {})})


def curve_from_bytes(data: bytes) -> tuple[Any, dict]:
    """(curve, metadata) from ``curve_to_bytes`` output; the curve is validated."""
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several unrelated types on garbage
        raise ValueError(f"not a diffcontract curve file: {err}") from err
    if not isinstance(tree, dict) or tree.get("format") not in (FORMAT, FORMAT_V1):
        raise ValueError(f"not a diffcontract curve file (expected format {FORMAT!r})")
    node = _from_v1(tree.get("curve")) if tree["format"] == FORMAT_V1 else tree.get("curve")
    return curve_from_dict(node, "curve file"), tree.get("metadata", {})


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

