"""The penalty-method baseline: a mechanism network trained with fixed multipliers, as most papers train one.

RegretNet-style training with the multipliers held at 0 and a fixed penalty rho (``TrainConfig(
targets=False, multiplier_step=False, penalty_growth=1)``): the loss is -E[a] + rho/2 sum max(0,
epsilon - G)^2 over the constraints the network does not meet by construction (budget, IR of types
2..I), on the packaged learned mechanism's training law (the ``random-i3`` suite's). The network
is saved to ``benchmarks/models/penalty-i3.msgpack``; then the suite is scored with the harness:
exact, alm, the packaged learned mechanism (network + repair) and the baseline's raw proposals.

    python benchmarks/penalty_baseline.py                 # train (about 3 min on 2 cores), then score
    python benchmarks/penalty_baseline.py --no-train      # score the saved network
"""

from __future__ import annotations

import argparse
import pathlib
import time

from diffcontract.bench import evaluate, load_suite, method_mechanism, network_mechanism, summary_table
from diffcontract.learned import ProblemDistribution, TrainConfig, load_mechanism, save_mechanism, train_mechanism

MODEL = pathlib.Path(__file__).parent / "models" / "penalty-i3.msgpack"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-train", action="store_true", help="score the saved network only")
    parser.add_argument("--steps", type=int, default=20000, help="Adam steps (the packaged mechanism's)")
    parser.add_argument("--penalty", type=float, default=100.0, help="the fixed penalty rho")
    parser.add_argument("--limit", type=int, default=None, help="score the first problems of the suite only")
    parser.add_argument("--no-score", action="store_true", help="train and save only")
    args = parser.parse_args()
    if not args.no_train:
        start = time.perf_counter()
        config = TrainConfig(steps=args.steps, targets=False, multiplier_step=False, penalty_growth=1.0,
                             penalty_init=args.penalty, penalty_max=args.penalty)
        mechanism, history = train_mechanism(ProblemDistribution(num_types=3, participants=(2, 12)), config,
                                             name="penalty baseline (fixed multipliers)")
        save_mechanism(mechanism, MODEL)
        print(f"trained in {time.perf_counter() - start:.0f} s: mean E[a] {-history['objective'][-1]:.4f}, "
              f"mean violation {history['violation'][-1]:.2e}, feasible share {history['feasible_share'][-1]:.2f}")
    if args.no_score:
        return
    suite = load_suite("random-i3")
    suite = suite.head(args.limit) if args.limit else suite
    reports = [evaluate(method_mechanism(m), suite, name=m, progress=True) for m in ("exact", "alm", "learned")]
    reports.append(evaluate(network_mechanism(load_mechanism(MODEL)), suite, name="penalty", progress=True))
    print(summary_table(reports))


if __name__ == "__main__":
    main()
