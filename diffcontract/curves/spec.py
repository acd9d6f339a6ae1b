"""Curves from short text specs or dicts (CLI flags and TOML configs).

Spec grammar: ``kind`` or ``kind:param=value,param=value``, where a kind is a class name of
``io.CURVE_CLASSES`` in any case or one of the short names of ``io.ALIASES`` ('sgb', 'power', ...).
A dict ``{"kind": ..., **params}`` (TOML, JSON) is a curve record, read by ``io.curve_from_dict``.
"""

from __future__ import annotations

from typing import Any

from .io import ACCURACY, VALUATION, curve_from_dict


def _node(spec: str | dict, field: str) -> dict:
    if isinstance(spec, dict):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{field} must be a spec like 'kind:param=value', got {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    node: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{field}: expected param=value in {spec!r}, got {item!r}")
        try:
            node[key.strip()] = float(value)
        except ValueError as err:
            raise ValueError(f"{field}: parameter {key.strip()!r} must be a number, got {value!r}") from err
    return {**node, "kind": kind}


def accuracy_from_spec(spec: str | dict) -> Any:
    """An accuracy curve from ``'sgb:a_opt=1,k=1'``, ``'power:a_opt=0.9,b=2,alpha=0.5'``, ``'arctan:s=0.01'``."""
    return curve_from_dict(_node(spec, "accuracy"), "accuracy", ACCURACY)


def valuation_from_spec(spec: str | dict) -> Any:
    """A valuation from ``'linear:scale=100'`` or ``'exponential:scale=100,gamma=2'``."""
    return curve_from_dict(_node(spec, "valuation"), "valuation", VALUATION)
