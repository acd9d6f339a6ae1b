"""Saving and loading a ``LearnedMechanism`` (flax msgpack), and the packaged I = 3 model."""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import numpy as np
from flax import serialization

from .distribution import ProblemDistribution
from .mechanism import LearnedMechanism
from .network import MechanismNetwork

FORMAT = "diffcontract.learned_mechanism/1"
PACKAGED = pathlib.Path(__file__).resolve().parent / "models" / "mechanism_i3.msgpack"


def save_mechanism(mechanism: LearnedMechanism, path) -> pathlib.Path:
    """Write ``mechanism`` (parameters, network widths, distribution, metadata) to ``path``."""
    path = pathlib.Path(path)
    record = {"format": FORMAT, "hidden": list(mechanism.network.hidden),
              "distribution": json.dumps(mechanism.distribution.to_dict()),
              "metadata": json.dumps(mechanism.metadata), "params": mechanism.params}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(serialization.msgpack_serialize(serialization.to_state_dict(record)))
    return path


def load_mechanism(path=None) -> LearnedMechanism:
    """Read a mechanism written by ``save_mechanism``; ``None`` loads the packaged I = 3 model."""
    return pretrained() if path is None else _load(pathlib.Path(path))


def _load(path: pathlib.Path) -> LearnedMechanism:
    if not path.is_file():
        raise ValueError(f"mechanism file {str(path)!r} does not exist")
    try:
        record = serialization.msgpack_restore(path.read_bytes())
    except Exception as err:  # msgpack raises several unrelated types on junk
        raise ValueError(f"mechanism file {str(path)!r} is not a diffcontract mechanism ({err})") from err
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"mechanism file {str(path)!r} has format {record.get('format') if isinstance(record, dict) else None!r}, "
                         f"expected {FORMAT!r}")
    distribution = ProblemDistribution.from_dict(json.loads(record["distribution"]))
    hidden = tuple(int(w) for w in (record["hidden"].values() if isinstance(record["hidden"], dict) else record["hidden"]))
    network = MechanismNetwork(distribution.num_types, hidden)
    params = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float64), record["params"])
    return LearnedMechanism(network, params, distribution, json.loads(record["metadata"]))


@functools.lru_cache(maxsize=1)
def pretrained() -> LearnedMechanism:
    """The packaged mechanism for I = 3 (``examples/train_learned_mechanism.py`` made it).

    Loaded once per process: the one instance keeps its compiled solve between calls.
    """
    return _load(PACKAGED)
