"""GPU scaling check: the I = 19, N = 10 exact solve and the largest lattice-convolution case.

One command, for a device session:

  python benchmarks/gpu_scaling.py            # full sizes (GPU): I = 19, N = 10 (13.1 million
                                              # outcomes, chunked) and I = 50, N = 1000 (convolution)
  python benchmarks/gpu_scaling.py --small    # CPU-sized: I = 5, N = 10 and I = 10, N = 50

Per case: the platform, the backend, the solve's status and value, the wall time of a compiling
solve and the median of ``--repeats`` solves after it, and the throughput of one evaluation of
the moments and their Jacobian (outcomes per second for enumeration; lattice points per second
for the convolution). The issue-4 target for a GPU is the I = 19, N = 10 solve under 5 s. Absolute
times mean something only on the device; on a shared CPU read them as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import diffcontract  # noqa: E402
from diffcontract import ContractProblem  # noqa: E402
from diffcontract.expectation import make_backend, moments  # noqa: E402

FULL = [("exact I=19 N=10", 19, 10, "chunked", {"chunk_size": 1 << 20}),
        ("convolution I=50 N=1000", 50, 1000, "convolution", {})]
SMALL = [("exact I=5 N=10", 5, 10, "chunked", {"chunk_size": 256}),
         ("convolution I=10 N=50", 10, 50, "convolution", {})]


def _problem(num_types: int, participants: int) -> ContractProblem:
    return ContractProblem(participants=participants, probs=np.full(num_types, 1.0 / num_types),
                           costs=np.linspace(0.05, 0.01, num_types))


def run_case(label: str, num_types: int, participants: int, backend: str, options: dict, repeats: int) -> dict:
    problem = _problem(num_types, participants)
    start = time.perf_counter()
    sol = diffcontract.solve(problem, backend=backend, backend_options=options)
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sol = diffcontract.solve(problem, backend=backend, backend_options=options)
        times.append(time.perf_counter() - start)
    with jax.enable_x64(True):
        pr = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problem)
        _, table = make_backend(pr, backend, **options)
        evaluate = jax.jit(lambda m: (moments(m, pr, table), jax.jacfwd(lambda z: moments(z, pr, table))(m)))
        m = jnp.asarray(sol.m)
        jax.block_until_ready(evaluate(m))
        start = time.perf_counter()
        jax.block_until_ready(evaluate(m))
        eval_seconds = time.perf_counter() - start
    units = problem.num_outcomes if backend != "convolution" else table.fft_length * num_types
    return {"case": label, "platform": jax.devices()[0].platform, "device": str(jax.devices()[0]), "backend": sol.backend,
            "status": sol.status_name, "value": float(sol.expected_value), "outcomes": problem.num_outcomes,
            "first_seconds": first, "median_seconds": statistics.median(times) if times else first,
            "eval_seconds": eval_seconds, "throughput": units / eval_seconds,
            "throughput_unit": "outcomes/s" if backend != "convolution" else "lattice points x types/s"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized cases (used by the tests)")
    parser.add_argument("--repeats", type=int, default=3, help="timed solves after the compiling one (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [run_case(*case, repeats=args.repeats) for case in (SMALL if args.small else FULL)]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"jax {jax.__version__}, devices: {jax.devices()}")
    print(f"{'case':<26}{'backend':<13}{'status':<11}{'value':>14}{'outcomes':>12}{'first s':>10}"
          f"{'median s':>10}{'eval s':>10}  throughput")
    for r in rows:
        print(f"{r['case']:<26}{r['backend']:<13}{r['status']:<11}{r['value']:>14.8f}{r['outcomes']:>12.4g}"
              f"{r['first_seconds']:>10.2f}{r['median_seconds']:>10.3f}{r['eval_seconds']:>10.4f}  "
              f"{r['throughput']:.3g} {r['throughput_unit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
