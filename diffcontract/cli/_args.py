"""What the commands share: exit codes, number lists, and the problem from flags and a TOML config.

Errors are ``ValueError`` naming the field; ``cli.main`` turns them into ``EXIT_BAD_INPUT``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT = 0, 1, 2

CONFIG_KEYS = {"participants", "probs", "costs", "quality", "conditioning", "accuracy", "valuation", "method", "constraints",
               "backend"}


def float_list(field: str, text: str) -> list[float]:
    """``"0.2,0.8"`` -> ``[0.2, 0.8]``; a ``ValueError`` naming ``field`` otherwise."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"{field} must be a comma-separated list of numbers, got {text!r}") from err


def _load_config(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise ValueError(f"config file not found: {path!r}") from err
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config {path!r} is not valid TOML: {err}") from err


def accuracy_from_arg(value: Any):
    """An accuracy curve from a spec (``sgb:a_opt=1,k=1``, a TOML dict) or a saved ``*.msgpack`` file."""
    from ..curves import accuracy_from_spec, load_curve

    if isinstance(value, str) and (value.endswith(".msgpack") or os.path.isfile(value)):
        return load_curve(value)
    return accuracy_from_spec(value)


def problem_from_args(args: argparse.Namespace):
    """Merge ``--config`` (TOML) with flags (flags win) and build the ``ContractProblem``.

    Returns:
      ``(problem, method, constraints, backend)``.
    """
    from ..curves import valuation_from_spec
    from ..problem import ContractProblem

    cfg: dict[str, Any] = {}
    if getattr(args, "config", None):
        cfg = _load_config(args.config)
        unknown = set(cfg) - CONFIG_KEYS
        if unknown:
            raise ValueError(f"config: unknown key(s) {sorted(unknown)}; allowed {sorted(CONFIG_KEYS)}")
    for key in ("probs", "costs", "quality"):
        if getattr(args, key, None) is not None:
            cfg[key] = float_list(key, getattr(args, key))
    for key in ("participants", "conditioning", "accuracy", "valuation", "method", "constraints", "backend"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    for key in ("participants", "probs", "costs"):
        if key not in cfg:
            raise ValueError(f"{key} is required (flag --{key} or key in --config)")
    problem = ContractProblem(
        participants=cfg["participants"],
        probs=cfg["probs"],
        costs=cfg["costs"],
        accuracy=accuracy_from_arg(cfg.get("accuracy", "sgb")),
        valuation=valuation_from_spec(cfg.get("valuation", "linear")),
        quality=cfg.get("quality"),
        conditioning=cfg.get("conditioning", "truncated"),
    )
    return problem, cfg.get("method", "exact"), cfg.get("constraints", "simplified"), cfg.get("backend", "auto")
