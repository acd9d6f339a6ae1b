"""Beyond one machine (issue 18): two processes joined by ``jax.distributed`` (coordinator on
127.0.0.1, one CPU device each, gloo collectives) give the one-process figures to 1e-12."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distributed_cases import batch_figures, chunked_figures

HERE = Path(__file__).parent
TIMEOUT = 600  # seconds for both processes (compilation included)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tmp_path):
    port, out = str(_free_port()), tmp_path / "figures.json"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(HERE)}
    env.pop("XLA_FLAGS", None)  # one device per process
    procs = [subprocess.Popen([sys.executable, str(HERE / "distributed_worker.py"), str(k), "2", port, str(out)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for k in range(2)]
    logs = [proc.communicate(timeout=TIMEOUT)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), "\n".join(logs)
    two = json.loads(out.read_text())
    assert two["devices"] == 2
    one = {"chunked": chunked_figures(1), "batch": batch_figures(1)}
    for part in ("chunked", "batch"):
        assert np.array_equal(np.asarray(two[part]["status"]), np.asarray(one[part]["status"])) if part == "batch" \
            else two[part]["status"] == one[part]["status"] == "converged"
        for key in ("expected_value", "m", "t"):
            # rtol 1e-12: float64 sums split over two processes differ from one process's only by rounding.
            np.testing.assert_allclose(two[part][key], one[part][key], rtol=1e-12, atol=0, err_msg=f"{part} {key}")
    for a, b in zip(two["chunked"]["moments"], one["chunked"]["moments"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)  # float64 partial sums, psum across processes
