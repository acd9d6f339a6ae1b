r"""Training a mechanism network over a distribution of problems on an augmented Lagrangian.

In the style of RegretNet (Duetting et al., 2019), with one multiplier per training problem and
constraint: for network parameters theta and a minibatch of problems b with proposed contributions
m_b = net_theta(b) and t_b = binding_rewards(m_b), Adam minimizes the minibatch mean of the
Powell-Hestenes-Rockafellar augmented Lagrangian

.. math::
    L_b(\theta) = -E[a(n\cdot m_b)]
       + \frac{1}{2\rho} \sum_j \big(\max(0, \lambda_{bj} - \rho (G_{bj}(m_b) - \epsilon))^2 - \lambda_{bj}^2\big),

where G_b = (budget residuals, IR residuals of types 2..I) / (v(1) - v(0)) are the constraints the
construction does not meet by itself (``network``) and epsilon = ``margin`` asks for a little
slack so that most proposals need no repair. After each step the visited problems' multipliers
take lambda_b <- max(0, lambda_b - rho (G_b - epsilon)); every ``update_every`` steps rho grows by
``penalty_growth`` up to ``penalty_max``. Per-problem multipliers let every problem's own binding
constraints be priced (a multiplier shared across problems, RegretNet's, prices all alike and
leaves the network conservative where a constraint is slack). One compiled ``lax.scan`` runs each
block of steps; the host loop over blocks shows a progress bar.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._jit import jit
from .. import _precision
from .._progress import steps_with_progress
from ..expectation import with_weights
from ..problem import batch_size, value_unit
from ..solvers import Status, solve_batch
from .distribution import ProblemDistribution
from .mechanism import LearnedMechanism
from .network import MechanismNetwork, data_reference, decode_contributions, problem_features
from .repair import learned_constraints

log = logging.getLogger(__name__)

TARGET_FLOOR = 1e-6  # m / m_ref below this counts as excluded in the imitation term
TARGET_CHUNK = 256  # problems per batched-ALM call: one compilation, and a vmapped solve waits for its slowest
GRADIENT_CLIP = 10.0  # global-norm cap on Adam's gradient: steps stay bounded as rho grows towards penalty_max
HISTORY_STEPS = 10  # a block's history entry averages its last steps: less noisy than one minibatch


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    Attributes:
      hidden: MLP widths.
      steps: Adam steps (rounded up to whole blocks).
      batch: problems per step.
      pool: training problems drawn once (seed) and sampled from.
      learning_rate: Adam's initial step, cosine-decayed to ``final_lr_fraction`` of it.
      penalty_init: with ``penalty_growth``, ``penalty_max`` and ``update_every``, the multiplier
        and penalty schedule (see module docstring).
      margin: requested constraint slack epsilon (fraction of v(1) - v(0)).
      seed: initialization, pool and minibatch seed.
      targets: solve the pool first with the batched ALM (``solve_batch``) and use its KKT points:
        each converged problem's multipliers start its lambda (the augmented Lagrangian's minimizer
        is then the optimum from the first step), and an imitation term
        ``imitation_weight * ||log m - log m*||^2`` (logs of m / m_ref, floored at 1e-6) guides the
        network there; its weight decays linearly to 0 at ``imitation_until`` of the steps, after
        which the augmented Lagrangian alone trains. Without targets the multipliers start at 0.
      multiplier_step: update the multipliers after each step (the augmented Lagrangian). False keeps
        them where they start: with ``targets=False`` and ``penalty_growth=1`` that is the fixed
        quadratic penalty rho/2 max(0, epsilon - G)^2 of the penalty-method baseline most papers train
        (``benchmarks/penalty_baseline.py``).
    """

    hidden: tuple = (128, 128, 128)
    steps: int = 20000
    batch: int = 256
    pool: int = 2048
    learning_rate: float = 2e-3
    final_lr_fraction: float = 0.02
    penalty_init: float = 10.0
    penalty_growth: float = 1.05
    penalty_max: float = 1e3
    update_every: int = 100
    margin: float = 2e-5
    seed: int = 0
    targets: bool = True
    imitation_weight: float = 1.0
    imitation_until: float = 0.5
    multiplier_step: bool = True

    def __post_init__(self):
        for name in ("steps", "batch", "pool", "update_every"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("learning_rate", "penalty_init", "penalty_max"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")
        if not (np.isfinite(self.penalty_growth) and self.penalty_growth >= 1.0):
            raise ValueError(f"penalty_growth must be finite and >= 1, got {self.penalty_growth!r}")
        if not (0.0 <= self.margin < 1.0):
            raise ValueError(f"margin must be in [0, 1), got {self.margin!r}")


def _constraint_terms(params, network, problem, table, features):
    """(objective, G (2I - 1,)) of one problem's proposal: -E[a] and the scaled constraints G >= 0."""
    m = decode_contributions(network.apply({"params": params}, features), problem)
    mom, g = learned_constraints(m, problem, table)
    return -mom.expected_accuracy, g / value_unit(problem)


def _alm_targets(pool, distribution: ProblemDistribution, progress: bool):
    """Batched-ALM KKT points of the pool: (log(m*/m_ref) floored, converged mask, (B, 2I-1) multipliers).

    Solved in chunks of ``TARGET_CHUNK`` (one compilation; a vmapped solve runs until its slowest member
    stops). Multipliers are those of G = (budget, IR_2..I) / (v(1) - v(0)) against -E[a], the
    training Lagrangian's own scaling (the ``Solution`` stores them divided by v(1) - v(0)).
    """
    size = batch_size(pool)
    logs, ok, lams = [], [], []
    starts = range(0, size, TARGET_CHUNK)

    def solve_chunk(k: int):
        part = jax.tree_util.tree_map(lambda a: np.asarray(a)[starts[k]:starts[k] + TARGET_CHUNK], pool)
        return part, solve_batch(part, method="alm", table_length=distribution.table_length)

    sizes = [min(TARGET_CHUNK, size - start) for start in starts]
    for part, sol in steps_with_progress(solve_chunk, sizes, "ALM targets", enabled=progress):
        m_ref = np.asarray(jax.vmap(data_reference)(jax.tree_util.tree_map(jnp.asarray, part)))
        logs.append(np.log(np.maximum(np.asarray(sol.contributions) / m_ref[:, None], TARGET_FLOOR)))
        ok.append(np.asarray(sol.status) == Status.CONVERGED)
        mult = sol.certificate.multipliers
        lams.append(np.concatenate([mult["budget"], mult["ir_others"]], axis=1) * np.asarray(value_unit(part))[:, None])
    ok = np.concatenate(ok)
    lam = np.where(ok[:, None], np.concatenate(lams), 0.0)
    return jnp.asarray(np.concatenate(logs)), jnp.asarray(ok), jnp.asarray(lam)


def _pool_with_features(distribution: ProblemDistribution, config: TrainConfig):
    """(pool, outcome tables, features (pool, F)) of the training problems, float64 (call under float64).

    Features do not depend on the parameters: computed once for the whole pool.
    """
    ranges = (tuple(distribution.participants), tuple(distribution.log10_costs))
    pool = jax.tree_util.tree_map(jnp.asarray, distribution.sample(config.pool, seed=config.seed))
    tables = jax.tree_util.tree_map(jnp.asarray, distribution.tables_for(np.asarray(pool.participants)))
    tables = jax.vmap(with_weights)(pool, tables)
    features = jit(jax.vmap(lambda prob, tab: problem_features(prob, tab, *ranges)))(pool, tables)
    return pool, tables, features


def _loss(params, network, margin, minibatch, lam_b, rho, weight):
    """Minibatch mean of the augmented Lagrangian plus the imitation term; aux (-E[a] (B,), G (B, 2I - 1)).

    minibatch: (problems, weighted tables, features, target log(m*/m_ref), has a target) of B problems.
    """
    batch, tabs, feats, targets_b, has_b = minibatch
    objective, g = jax.vmap(lambda *one: _constraint_terms(params, network, *one))(batch, tabs, feats)
    shifted = jnp.maximum(0.0, lam_b - rho * (g - margin))
    penalty = jnp.sum(shifted**2 - lam_b**2, axis=1) / (2.0 * rho)
    m = jax.vmap(lambda f, prob: decode_contributions(network.apply({"params": params}, f), prob))(feats, batch)
    m_ref = jax.vmap(data_reference)(batch)
    log_m = jnp.log(jnp.maximum(m / m_ref[:, None], TARGET_FLOOR))
    imitation = jnp.where(has_b, jnp.sum((log_m - targets_b) ** 2, axis=1), 0.0)
    return jnp.mean(objective + penalty + weight * imitation), (objective, g)


def _block_function(network, optimizer, config: TrainConfig, data: tuple, total_steps: int):
    """The compiled block of ``config.update_every`` Adam steps, then the penalty update.

    data: (pool, weighted tables, features, target log(m*/m_ref), has a target), one row per pool problem.

    Returns:
      block(state, key) -> (state, stats), state = (params, opt_state, lam, rho, count), with stats
      (mean -E[a], mean max violation, feasible share) averaged over the block's last steps.
    """
    def step(carry, key):
        params, opt_state, lam, rho, count = carry
        index = jax.random.randint(key, (config.batch,), 0, config.pool)
        weight = config.imitation_weight * jnp.maximum(0.0, 1.0 - count / (config.imitation_until * total_steps))
        weight = jnp.where(config.targets, weight, 0.0)
        (_, (objective, g)), grads = jax.value_and_grad(_loss, has_aux=True)(
            params, network, config.margin, jax.tree_util.tree_map(lambda a: a[index], data), lam[index], rho, weight)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        # First-order multiplier step of the visited problems (PHR: lambda <- max(0, lambda - rho G)).
        if config.multiplier_step:
            lam = lam.at[index].set(jnp.maximum(0.0, lam[index] - rho * (g - config.margin)))
        violation = jnp.max(jnp.maximum(-g, 0.0), axis=1)
        stats = (jnp.mean(objective), jnp.mean(violation), jnp.mean(violation <= 0.0))
        return (params, opt_state, lam, rho, count + 1), stats

    @jit
    def block(state, key):
        keys = jax.random.split(key, config.update_every)
        (params, opt_state, lam, rho, count), stats = jax.lax.scan(step, state, keys)
        rho = jnp.minimum(rho * config.penalty_growth, config.penalty_max)
        recent = jax.tree_util.tree_map(lambda a: a[-HISTORY_STEPS:].mean(axis=0), stats)
        return (params, opt_state, lam, rho, count), recent

    return block


def _metadata(name: str, config: TrainConfig, history: dict) -> dict:
    """The ``LearnedMechanism`` metadata: name, settings, final training figures and time."""
    return {"name": name, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                     for k, v in dataclasses.asdict(config).items()},
            "final": {"mean_expected_accuracy": -float(history["objective"][-1]),
                      "mean_violation": float(history["violation"][-1]),
                      "feasible_share": float(history["feasible_share"][-1])},
            "training_seconds": history["seconds"]}


def train_mechanism(distribution: ProblemDistribution = ProblemDistribution(), config: TrainConfig = TrainConfig(),
                    progress: bool = True, name: str = "") -> tuple[LearnedMechanism, dict]:
    """Train a ``LearnedMechanism`` for ``distribution`` (float64, deterministic for a seed).

    Args:
      distribution: the problems to train on.  config: the training settings.
      progress: show progress bars.  name: stored in the mechanism's metadata.

    Returns:
      (mechanism, history): history holds per-block arrays "step", "objective" (mean -E[a]),
      "violation" (mean max violation before repair, fraction of v(1) - v(0)), "feasible_share"
      (share of the minibatch with no violation beyond the margin), "rho", and "seconds".
    """
    start = time.perf_counter()
    network = MechanismNetwork(distribution.num_types, tuple(config.hidden))
    blocks = -(-config.steps // config.update_every)
    total_steps = blocks * config.update_every
    num = distribution.num_types
    with _precision.float64():
        pool, tables, features = _pool_with_features(distribution, config)
        key, init_key = jax.random.split(jax.random.PRNGKey(config.seed))
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                        network.init(init_key, features[0])["params"])
        schedule = optax.cosine_decay_schedule(config.learning_rate, total_steps, alpha=config.final_lr_fraction)
        optimizer = optax.chain(optax.clip_by_global_norm(GRADIENT_CLIP), optax.adam(schedule))
        # Without targets: no imitation, and one multiplier per problem and constraint (budget, IR_2..I) at 0.
        target_log, has_target, lam = _alm_targets(pool, distribution, progress) if config.targets else (
            jnp.zeros((config.pool, num)), jnp.zeros((config.pool,), bool), jnp.zeros((config.pool, 2 * num - 1)))
        block = _block_function(network, optimizer, config, (pool, tables, features, target_log, has_target),
                                total_steps)
        state = (params, optimizer.init(params), lam, jnp.asarray(config.penalty_init, jnp.float64),
                 jnp.asarray(0.0, jnp.float64))
        def train_block(b: int) -> tuple:
            """Block b: (step, mean -E[a], mean violation, feasible share, rho); one key split off per block."""
            nonlocal state, key
            key, sub = jax.random.split(key)
            state, stats = block(state, sub)
            row = ((b + 1) * config.update_every, *(float(v) for v in stats), float(state[3]))
            log.debug("block %d: E[a] %.4f, violation %.1e, feasible share %.2f", b, -row[1], row[2], row[3])
            return row

        rows = list(steps_with_progress(train_block, [config.update_every] * blocks, "training mechanism",
                                        unit="step", enabled=progress))
        params = jax.tree_util.tree_map(np.asarray, state[0])
    history = dict(zip(("step", "objective", "violation", "feasible_share", "rho"), map(np.asarray, zip(*rows))))
    history["seconds"] = time.perf_counter() - start
    return LearnedMechanism(network, params, distribution, metadata=_metadata(name, config, history)), history
