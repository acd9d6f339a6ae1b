"""One process of the two-process ``jax.distributed`` test (tests/test_distributed.py).

Usage: python tests/distributed_worker.py PROCESS_ID NUM_PROCESSES PORT OUT.json

Every process runs the same program (SPMD): the chunked backend sharded over every process's
device, and a ``solve_batch`` sweep split over them; process 0 writes the figures as JSON.
"""

from __future__ import annotations

import json
import sys

import jax

PROCESS_ID, NUM_PROCESSES, PORT, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
jax.config.update("jax_cpu_collectives_implementation", "gloo")  # cross-process collectives on CPU
jax.config.update("jax_enable_x64", True)
jax.distributed.initialize(f"127.0.0.1:{PORT}", num_processes=NUM_PROCESSES, process_id=PROCESS_ID)

import numpy as np  # noqa: E402

from distributed_cases import batch_figures, chunked_figures  # noqa: E402

devices = jax.device_count()
assert devices == NUM_PROCESSES * jax.local_device_count(), (devices, jax.local_device_count())
figures = {"devices": devices, "chunked": chunked_figures(devices), "batch": batch_figures(devices)}
if PROCESS_ID == 0:
    with open(OUT, "w") as fh:
        json.dump(figures, fh, default=lambda a: np.asarray(a).tolist())
