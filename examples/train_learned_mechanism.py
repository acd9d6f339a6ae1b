"""Train the amortized learned mechanism for I = 3 and save it (the packaged model came from this).

    python examples/train_learned_mechanism.py [--steps 6000] [--out examples/out/mechanism_i3.msgpack]
                                               [--validate 100] [--figure examples/out/mechanism_training.png]

Problems: N uniform in 2..12, p ~ Dirichlet(1) floored at 0.05, log10 c uniform in [-3, 0] (the
``ProblemDistribution`` defaults), SGB(1, 1) accuracy, v = 100 r. The network (MLP 3 x 128) is
trained on the augmented Lagrangian of ``diffcontract.learned.train`` (about 10 minutes on two CPU
cores, float64), then checked on ``--validate`` held-out problems against the exact solver
(mean and 90th percentile optimality gap in E[v], constraint violation after repair). To refresh
the packaged model, copy the output over ``diffcontract/learned/models/mechanism_i3.msgpack``.
"""

from __future__ import annotations

import argparse
import pathlib

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import diffcontract as dc  # noqa: E402
from diffcontract.learned import ProblemDistribution, TrainConfig, save_mechanism, train_mechanism  # noqa: E402
from diffcontract.problem import unstack_problem  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
VALIDATION_SEED = 12345  # disjoint from the training pool's seed (0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "out" / "mechanism_i3.msgpack")
    parser.add_argument("--validate", type=int, default=100, help="held-out problems solved exactly (0: skip)")
    parser.add_argument("--figure", type=pathlib.Path, default=HERE / "out" / "mechanism_training.png")
    args = parser.parse_args()

    distribution = ProblemDistribution()
    mechanism, history = train_mechanism(distribution, TrainConfig(steps=args.steps, seed=args.seed),
                                         name=f"mechanism_i3 (seed {args.seed}, {args.steps} steps)")
    print(f"trained in {history['seconds']:.0f} s; last block: mean E[a] {-history['objective'][-1]:.4f}, "
          f"mean violation before repair {history['violation'][-1]:.2e} (fraction of v(1) - v(0)), "
          f"share feasible before repair {history['feasible_share'][-1]:.2f}")

    if args.validate:
        problems = distribution.sample(args.validate, seed=VALIDATION_SEED)
        learned = mechanism.solve(problems)
        gaps, violations = [], []
        for k in tqdm(range(args.validate), desc="exact solves"):
            exact = dc.solve(unstack_problem(problems, k))
            if exact.succeeded:
                gaps.append((float(exact.expected_value) - float(learned.expected_value[k])) / float(exact.expected_value))
                violations.append(float(learned.max_violation[k]))
        gaps = np.asarray(gaps)
        summary = {"problems": len(gaps), "mean_gap": float(gaps.mean()), "p90_gap": float(np.quantile(gaps, 0.9)),
                   "max_gap": float(gaps.max()), "max_violation": float(max(violations)),
                   "feasible": int(np.sum(np.asarray(learned.status) == dc.Status.FEASIBLE))}
        mechanism.metadata["validation"] = summary
        print(f"held-out ({summary['problems']} problems the exact solver converged on): mean gap "
              f"{summary['mean_gap']:.3%}, 90th percentile {summary['p90_gap']:.3%}, max {summary['max_gap']:.3%}; "
              f"max violation after repair {summary['max_violation']:.1e}; "
              f"{summary['feasible']}/{args.validate} feasible")
    path = save_mechanism(mechanism, args.out)
    print(f"saved {path}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(history["step"], -history["objective"])
    axes[0].set(xlabel="step", ylabel="mean E[a] (proposals)")
    axes[1].semilogy(history["step"], np.maximum(history["violation"], 1e-12))
    axes[1].set(xlabel="step", ylabel="mean max violation / (v(1) - v(0))")
    axes[2].plot(history["step"], history["feasible_share"])
    axes[2].set(xlabel="step", ylabel="share feasible before repair", ylim=(0, 1))
    fig.tight_layout()
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=120)
    print(f"figure {args.figure}")


if __name__ == "__main__":
    main()
