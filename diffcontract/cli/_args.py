"""What the commands share: exit codes, number lists, output paths, backend flags, and the problem
from flags and a TOML config.

Errors are ``ValueError`` naming the field; ``cli.main`` turns them into ``EXIT_BAD_INPUT`` (and
``ProblemTooLarge``, a ``ValueError``, into ``EXIT_TOO_LARGE``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import tempfile
from typing import Any

EXIT_OK, EXIT_NOT_CONVERGED, EXIT_BAD_INPUT, EXIT_TOO_LARGE = 0, 1, 2, 3

#: Keys of a ``--config`` file; all but ``backend_options`` are flags of ``solve`` too.
CONFIG_KEYS = ("participants", "probs", "costs", "quality", "conditioning", "accuracy", "valuation", "method",
               "constraints", "backend", "backend_options")
#: A setting that neither the config nor a flag gives.
DEFAULTS = {"accuracy": "sgb", "valuation": "linear", "conditioning": "truncated", "method": "exact",
            "constraints": "simplified", "backend": "auto", "backend_options": {}}
FIGURE_FORMATS = ("png", "pdf", "svg")
LIST_FLAGS = ("--probs", "--costs", "--quality")  # comma-separated numbers: a leading minus is a value, not a flag
_NUMBER_LIST = re.compile(r"^-[0-9.][0-9eE.+\-]*(,[-+]?[0-9.][0-9eE.+\-]*)*,?$")


def float_list(field: str, text: str) -> list[float]:
    """``"0.2,0.8"`` -> ``[0.2, 0.8]``; a ``ValueError`` naming ``field`` otherwise."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"{field} must be a comma-separated list of numbers, got {text!r}") from err


def join_negative_lists(argv: list[str]) -> list[str]:
    """``["--costs", "-0.02,0.01"]`` -> ``["--costs=-0.02,0.01"]``, so that argparse hands a negative
    number list to the validation (which names the field) instead of taking it for an option."""
    out: list[str] = []
    for token in argv:
        if out and out[-1] in LIST_FLAGS and _NUMBER_LIST.match(token):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def writable_folder(field: str, path: str) -> str:
    """Create ``path`` (a folder for outputs) and write a probe file in it, before any computation.

    Returns:
      The absolute path. Raises ``ValueError`` naming ``field`` when it cannot be created or written.
    """
    folder = os.path.abspath(path)
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ValueError(f"{field}: cannot write to the output folder {path!r}: {err.strerror or err}") from err
    return folder


def writable_file(field: str, path: str) -> str:
    """Check, by opening it for appending, that the output file ``path`` can be written, before any
    computation (a file that did not exist is removed again). Returns the absolute path."""
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise ValueError(f"{field}: {path!r} is a folder, expected a file name")
    existed = os.path.exists(target)
    try:
        with open(target, "ab"):
            pass
    except OSError as err:
        raise ValueError(f"{field}: cannot write {path!r}: {err.strerror or err}") from err
    if not existed:
        os.remove(target)
    return target


def backend_options(pairs: list[str] | None, seed: int | None) -> dict[str, Any]:
    """``["chunk_size=4096", "devices=2"]`` and ``--seed`` -> the ``backend_options`` dict of ``solve``.

    Values are parsed as int, then float, then kept as text; the seed goes in ``"seed"``.
    """
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"backend-option must be key=value, got {pair!r}")
        options[key.strip().replace("-", "_")] = _number_or_text(text.strip())
    if seed is not None:
        options["seed"] = seed
    return options


def _number_or_text(text: str):
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    return text


def add_backend_flags(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--backend-option key=value`` (repeatable) and ``--seed``: the same in every command."""
    from ..expectation.backends import BACKENDS
    from ..expectation.planner import AUTO_CHUNKED_MAX, ENUMERATE_FASTEST

    parser.add_argument("--backend", choices=BACKENDS,
                        help=f"expectation backend (default auto: within the memory budget, enumerate up to "
                             f"{ENUMERATE_FASTEST:,} outcomes, chunked up to {AUTO_CHUNKED_MAX:,}, else convolution, "
                             f"else montecarlo); the JSON's \"backend\" and \"backend_reason\" say which and why; a "
                             f"backend that would exceed the budget is refused (exit 3)")
    parser.add_argument("--backend-option", action="append", metavar="KEY=VALUE", dest="backend_option",
                        help="backend option, repeatable: chunk_size=, devices=, bins=, lattice_rtol=, samples=, "
                             "seed=, memory_budget= (bytes; default half the available memory or "
                             "$DIFFCONTRACT_MEMORY_BUDGET) (as backend_options= of diffcontract.solve)")
    parser.add_argument("--seed", type=int, help="Monte Carlo seed of the montecarlo backend (default 0)")


def _load_config(path: str) -> dict:
    import tomllib

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
      ``(problem, settings)``: settings has ``method``, ``constraints``, ``backend`` and
      ``backend_options`` (the config's table updated by ``--backend-option`` and ``--seed``).
    """
    from ..curves import valuation_from_spec
    from ..problem import ContractProblem

    cfg: dict[str, Any] = _load_config(args.config) if args.config else {}
    unknown = set(cfg) - set(CONFIG_KEYS)
    if unknown:
        raise ValueError(f"config: unknown key(s) {sorted(unknown)}; allowed {sorted(CONFIG_KEYS)}")
    for key in CONFIG_KEYS[:-1]:  # the flags, which win
        value = getattr(args, key)
        if value is not None:
            cfg[key] = float_list(key, value) if f"--{key}" in LIST_FLAGS else value
    for key in ("participants", "probs", "costs"):
        if key not in cfg:
            raise ValueError(f"{key} is required (flag --{key} or key in --config)")
    cfg = {**DEFAULTS, **cfg}
    if not isinstance(cfg["backend_options"], dict):
        raise ValueError(f"config: backend_options must be a table, got {cfg['backend_options']!r}")
    options = {**cfg["backend_options"], **backend_options(args.backend_option, args.seed)}
    problem = ContractProblem(
        participants=cfg["participants"],
        probs=cfg["probs"],
        costs=cfg["costs"],
        accuracy=accuracy_from_arg(cfg["accuracy"]),
        valuation=valuation_from_spec(cfg["valuation"]),
        quality=cfg.get("quality"),
        conditioning=cfg["conditioning"],
    )
    settings = {key: cfg[key] for key in ("method", "constraints", "backend")}
    return problem, {**settings, "backend_options": options}
