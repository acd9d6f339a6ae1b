"""The computations of the two-process test, shared by the workers and the one-process reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import diffcontract as dc
from diffcontract.expectation import ChunkedEnumeration, moments

PROBLEM = dict(participants=10, probs=[0.2] * 5, costs=[0.5, 0.4, 0.03, 0.02, 0.001])  # Sec. 6.2 scenario 1
CHUNK = 64  # 1,001 outcomes in 16 chunks: 8 per device with two devices


def chunked_figures(devices: int) -> dict:
    """Moments at a fixed menu, and an exact solve, with the chunked backend over ``devices``."""
    problem = dc.ContractProblem(**PROBLEM)
    backend = ChunkedEnumeration(10, 5, chunk_size=CHUNK, devices=devices)
    with jax.enable_x64(True):  # float64 whatever the calling process set (the solvers do the same)
        problem64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        mom = moments(jnp.array([100.0, 200.0, 300.0, 400.0, 500.0]), problem64, backend)
        mom = [np.asarray(x) for x in mom]
    sol = dc.solve(problem, backend="chunked", backend_options={"devices": devices, "chunk_size": CHUNK})
    return {"moments": mom, "status": sol.status_name,
            "expected_value": sol.expected_value, "m": np.asarray(sol.m), "t": np.asarray(sol.t)}


def batch_figures(devices: int) -> dict:
    """A five-problem ``solve_batch`` (ALM) sweep over the cost of the cheap type, split over ``devices``."""
    problems = [dc.ContractProblem(participants=6, probs=[0.4, 0.6], costs=[0.03, c]) for c in
                (0.002, 0.005, 0.01, 0.015, 0.02)]
    sol = dc.solve_batch(problems, method="alm", devices=devices)
    return {"status": np.asarray(sol.status), "expected_value": np.asarray(sol.expected_value),
            "m": np.asarray(sol.m), "t": np.asarray(sol.t)}
