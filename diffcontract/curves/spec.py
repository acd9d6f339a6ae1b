"""Build curves from short text specs or dicts (CLI flags and TOML configs).

Spec grammar: ``kind`` or ``kind:param=value,param=value``; kinds are the keys of ``ACCURACY`` and
``VALUATION``. A dict ``{"kind": ..., **params}`` is the same thing from TOML or JSON.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .accuracy import Arctan, GeneralizationBound, PowerLaw
from .valuation import Exponential, Linear

ACCURACY = {"sgb": GeneralizationBound, "generalizationbound": GeneralizationBound, "power": PowerLaw,
            "powerlaw": PowerLaw, "arctan": Arctan}
VALUATION = {"linear": Linear, "exponential": Exponential, "cara": Exponential}


def _parse(spec: str | dict, field: str) -> tuple[str, dict]:
    if isinstance(spec, dict):
        params = dict(spec)
        kind = str(params.pop("kind", "")).lower()
        return kind, params
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{field} must be a spec like 'kind:param=value', got {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    params = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{field}: expected param=value in {spec!r}, got {item!r}")
        try:
            params[key.strip()] = float(value)
        except ValueError as err:
            raise ValueError(f"{field}: parameter {key.strip()!r} must be a number, got {value!r}") from err
    return kind.lower(), params


def _build(registry: dict, spec: str | dict, field: str) -> Any:
    kind, params = _parse(spec, field)
    if kind not in registry:
        raise ValueError(f"{field}: unknown kind {kind!r}; choose one of {sorted(set(registry))}")
    cls = registry[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(params) - names
    if unknown:
        raise ValueError(f"{field}: {cls.__name__} has no parameter(s) {sorted(unknown)}; it takes {sorted(names)}")
    curve = cls(**{k: float(v) for k, v in params.items()})
    curve.validate()
    return curve


def accuracy_from_spec(spec: str | dict) -> Any:
    """An accuracy curve from ``'sgb:a_opt=1,k=1'``, ``'power:a_opt=0.9,b=2,alpha=0.5'``, ``'arctan:s=0.01'``."""
    return _build(ACCURACY, spec, "accuracy")


def valuation_from_spec(spec: str | dict) -> Any:
    """A valuation from ``'linear:scale=100'`` or ``'exponential:scale=100,gamma=2'``."""
    return _build(VALUATION, spec, "valuation")
