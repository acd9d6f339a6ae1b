r"""Strategic Monte Carlo simulation of a contract (MODEL.md "The contract", "Realizing rewards").

Each of ``samples`` independent rounds draws the types of N participants i.i.d. from p
(``jax.random.categorical``, explicit keys). Every participant picks the action with the highest
expected utility under the model: menu item j, worth :math:`t_j - c_i m_j`, or opting out to train
alone, worth :math:`f_i`. Ties go to the participant's own item (the usual tie-breaking of
mechanism design), then to the lowest index. The coordinator pools the data of those who joined,
:math:`x = \sum_k q_{type(k)} m_{item(k)}`, and pays each item holder a model of value
:math:`\min(t_j / \bar t_j, 1)\, v(a(x))` (proportional assignment, capped as in ``realize``).
Opting out earns f_i.

The report answers two questions.

* Is truthful self-selection a best response? From the model (exactly): each type's margin
  :math:`u_i - \max(f_i, \max_{j \ne i} t_j - c_i m_j)`. From the simulation: the empirical IR and IC
  matrix built from the realized rewards, each with its standard error.
* Do the empirical utilities match the predicted :math:`u_i = t_i - c_i m_i` within Monte Carlo
  error? The estimator matches the problem's conditioning: *truncated* averages the reward over
  rounds where type i is present (one value per round: all type-i participants of a round get the
  same model); *interim* averages over participants (rounds weighted by n_i; ratio estimator with a
  per-round, cluster-robust delta-method standard error).

A difference passes when it is within ``z`` standard errors (default 5: a false alarm in any of
the <= I^2 + 2I checks has probability < 1e-5) plus a float64 rounding allowance.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .. import _precision
from ..expectation import enumerate_outcomes, moments
from ._record import load_contract

CHUNK = 4096  # rounds per compiled step (fewer for large N, see _chunk_size): bounded memory
MAX_PARTICIPANTS = 100_000
MAX_OUTCOMES = 20_000_000  # tbar is computed by enumeration, as in the solvers


def _chunk_size(participants: int, num_types: int) -> int:
    """Rounds per step so that the (rounds, N, I) one-hot stays under ~2^22 entries (32 MiB)."""
    return int(min(CHUNK, max(1, 2**22 // (participants * num_types))))


@functools.partial(jax.jit, static_argnames=("participants", "chunk"))
def _round_statistics(key, log_p, choice, m, q, share, accuracy, valuation, valid, *, participants, chunk):
    """Sufficient statistics of ``chunk`` rounds (rows beyond ``valid`` are masked out).

    choice: (I, I) one-hot rows, type i -> its item (an all-zero row: type i opts out).
    Returns sums over the rounds (float64): see ``simulate``.
    """
    num = log_p.shape[0]
    types = jax.random.categorical(key, log_p, shape=(chunk, participants))
    counts = jnp.sum(jax.nn.one_hot(types, num, dtype=m.dtype), axis=1)  # (chunk, I) type counts
    keep = (jnp.arange(chunk) < valid).astype(m.dtype)
    joined = choice @ m  # (I,) data contributed by a type-i participant (0 if it opts out)
    pooled = counts @ (q * joined)
    acc = accuracy(pooled)
    value = valuation(acc)
    reward = value[:, None] * (choice @ share)[None, :]  # (chunk, I) v(r) of a type-i participant
    reward_acc = valuation.inverse(reward)
    excess = jnp.where(counts >= 1, reward_acc - acc[:, None], -jnp.inf)
    present = (counts >= 1).astype(m.dtype) * keep[:, None]
    weighted = counts * keep[:, None]
    y = weighted * reward  # interim: per-round total over the type-i participants
    return {
        "rounds": jnp.sum(keep),
        "acc": jnp.sum(keep * acc), "acc2": jnp.sum(keep * acc**2),
        "value": jnp.sum(keep * value), "value2": jnp.sum(keep * value**2),
        # truncated estimator: rounds with n_i >= 1
        "present": jnp.sum(present, axis=0), "r": jnp.sum(present * reward, axis=0),
        "r2": jnp.sum(present * reward**2, axis=0), "racc": jnp.sum(present * reward_acc, axis=0),
        # interim (ratio) estimator: sum Y, sum X, sum Y^2, sum XY, sum X^2 with X = n_i, Y = n_i v(r_i)
        "x": jnp.sum(weighted, axis=0), "x2": jnp.sum(weighted**2, axis=0), "y": jnp.sum(y, axis=0),
        "y2": jnp.sum(y**2, axis=0), "xy": jnp.sum(weighted * y, axis=0),
        "xracc": jnp.sum(weighted * reward_acc, axis=0),
        "max_excess": jnp.max(jnp.where(keep[:, None] > 0, excess, -jnp.inf)),
    }


class SimulationReport(NamedTuple):
    """Results of ``simulate`` (canonical type order; money unless stated).

    ok: truthful self-selection is a best response (model and simulation) and every empirical
      utility matches its prediction within ``z`` standard errors.
    samples, seed, z: the settings.
    actions: (I,) the action each type takes: its item index 0..I-1, or -1 to opt out.
    truthful: (I,) bool, type i takes its own item (or an identical one: pooled types).
    model_margin: (I,) u_i - best alternative payoff under the model (>= 0 when truthful).
    predicted_utility: (I,) the model's payoff of the action taken (t_i - c_i m_i when truthful).
    empirical_utility, utility_se: (I,) Monte Carlo mean and its standard error.
    utility_z: (I,) (empirical - predicted) / SE (0 where both are exact).
    empirical_reward, reward_se: (I,) E[v(r_i) | i] estimated.  predicted_reward: (I,) t.
    empirical_reward_accuracy: (I,) mean realized r_i over the same rounds.
    empirical_ir, empirical_ic: (I,), (I, I) the constraint residuals from the realized rewards.
    ir_se, ic_se: their standard errors (IC: SE_i + SE_j, a bound valid for any correlation).
    expected_accuracy, accuracy_se, predicted_accuracy: E[a] of the pooled model.
    max_excess: max over rounds of r_i - a (ex-post budget, <= 0 up to rounding).
    observed: (I,) rounds (truncated) or participants (interim) behind each estimate.
    failures: list of readable reasons when not ok.
    """

    ok: bool
    samples: int
    seed: int
    z: float
    conditioning: str
    actions: np.ndarray
    truthful: np.ndarray
    model_margin: np.ndarray
    predicted_utility: np.ndarray
    empirical_utility: np.ndarray
    utility_se: np.ndarray
    utility_z: np.ndarray
    predicted_reward: np.ndarray
    empirical_reward: np.ndarray
    reward_se: np.ndarray
    empirical_reward_accuracy: np.ndarray
    empirical_ir: np.ndarray
    ir_se: np.ndarray
    empirical_ic: np.ndarray
    ic_se: np.ndarray
    predicted_accuracy: float
    expected_accuracy: float
    accuracy_se: float
    max_excess: float
    observed: np.ndarray
    failures: list

    def to_dict(self) -> dict:
        """JSON-ready (non-finite numbers, e.g. the SE of a type never observed, become None)."""
        def clean(x):
            arr = np.asarray(x, dtype=float)
            out = np.where(np.isfinite(arr), arr, np.nan).tolist()
            if isinstance(out, float):
                return out if math.isfinite(out) else None
            return _none_for_nan(out)

        out = {"ok": self.ok, "samples": self.samples, "seed": self.seed, "z": self.z,
               "conditioning": self.conditioning, "actions": self.actions.tolist(),
               "truthful": self.truthful.tolist(), "failures": list(self.failures)}
        for name in ("model_margin", "predicted_utility", "empirical_utility", "utility_se", "utility_z",
                     "predicted_reward", "empirical_reward", "reward_se", "empirical_reward_accuracy",
                     "empirical_ir", "ir_se", "empirical_ic", "ic_se", "predicted_accuracy", "expected_accuracy",
                     "accuracy_se", "max_excess", "observed"):
            out[name] = clean(getattr(self, name))
        return out

    def summary(self) -> str:
        """Readable table, one row per type."""
        lines = [f"simulate: {'OK' if self.ok else 'FAILED'} ({self.samples} rounds, seed {self.seed}, "
                 f"{self.conditioning} conditioning, pass within {self.z:g} standard errors)",
                 f"{'type':>4} {'action':>7} {'margin':>10} {'u predicted':>12} {'u simulated':>12} {'s.e.':>9} "
                 f"{'z':>6} {'min emp. IC':>12}"]
        for i in range(self.actions.size):
            action = "opt out" if self.actions[i] < 0 else f"item {self.actions[i] + 1}"
            others = np.delete(self.empirical_ic[i], i)
            worst_ic = f"{np.min(others):12.4g}" if others.size else f"{'-':>12}"
            lines.append(f"{i + 1:>4} {action:>7} {self.model_margin[i]:10.4g} {self.predicted_utility[i]:12.6g} "
                         f"{self.empirical_utility[i]:12.6g} {self.utility_se[i]:9.2g} {self.utility_z[i]:6.2f} "
                         f"{worst_ic}")
        lines.append(f"E[a]: simulated {self.expected_accuracy:.6f} +- {self.accuracy_se:.1e}, predicted "
                     f"{self.predicted_accuracy:.6f};  max r_i - a over rounds = {self.max_excess:.1e}")
        lines.extend(f"  failed: {reason}" for reason in self.failures)
        return "\n".join(lines)


def _none_for_nan(value):
    if isinstance(value, list):
        return [_none_for_nan(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def best_responses(m, t, costs, reservation, tie_tol: float):
    """The model's best response of each type (MODEL.md IC and IR).

    Args:
      m, t: (I,) menu.  costs: (I,) c.  reservation: (I,) f.
      tie_tol: payoffs within this (money) of the best count as ties; ties go to the own item.

    Returns:
      (actions, truthful, margin): (I,) item index or -1 (opt out); (I,) bool; (I,) own payoff minus
      the best alternative's.
    """
    num = m.size
    payoff = t[None, :] - costs[:, None] * m[None, :]  # [i, j]: type i taking item j
    actions, truthful, margin = np.empty(num, int), np.empty(num, bool), np.empty(num)
    for i in range(num):
        own = payoff[i, i]
        # Items equal to the own one (pooled types) are not alternatives: m within 1e-9 relative.
        same_item = (np.abs(m - m[i]) <= 1e-9 * max(1.0, abs(m[i]))) & (np.abs(t - t[i]) <= tie_tol)
        alternatives = [reservation[i]] + [payoff[i, j] for j in range(num) if not same_item[j]]
        best_alt = max(alternatives)
        margin[i] = own - best_alt
        if own >= best_alt - tie_tol:
            actions[i], truthful[i] = i, True
        else:
            j = int(np.argmax(payoff[i]))
            actions[i] = j if payoff[i, j] > reservation[i] else -1
            truthful[i] = False
    return actions, truthful, margin


def simulate(solution: Any, samples: int = 100_000, seed: int = 0, z: float = 5.0, key=None) -> SimulationReport:
    """Monte Carlo of N strategic participants facing a solved contract.

    Args:
      solution: ``Solution`` or its JSON record (``analysis.solution_record``).
      samples: number of independent rounds (each draws N participants), >= 2.
      seed: seeds ``jax.random.PRNGKey(seed)`` when ``key`` is not given.
      z: pass threshold in standard errors.
      key: optional explicit ``jax.random`` key (overrides ``seed``).

    Returns:
      ``SimulationReport``. Reproducible: the same (key or seed, samples) gives the same numbers.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise ValueError(f"z must be a finite number > 0, got {z!r}")
    contract = load_contract(solution)
    problem = contract.problem
    if not hasattr(problem.valuation, "inverse"):
        raise ValueError(f"valuation: {type(problem.valuation).__name__} has no inverse, needed to realize rewards")
    m, t = contract.m, contract.t
    costs = np.asarray(problem.costs, dtype=np.float64)
    f = np.asarray(problem.reservation_utility, dtype=np.float64)
    num, N = problem.num_types, problem.num_participants
    if N > MAX_PARTICIPANTS or math.comb(N + num - 1, num - 1) > MAX_OUTCOMES:
        raise ValueError(f"participants: N = {N} with I = {num} types is too large to simulate (tbar is "
                         f"enumerated over C(N + I - 1, I - 1) outcomes; limits N <= {MAX_PARTICIPANTS}, "
                         f"{MAX_OUTCOMES} outcomes)")
    chunk = _chunk_size(N, num)
    with _precision.float64():
        v0, v1 = np.asarray(problem.valuation(jnp.asarray([0.0, 1.0], jnp.float64)))
    value_scale = float(v1 - v0)
    rounding = 1e-9 * value_scale  # float64 sums of O(samples) terms of size O(v(1)) agree to ~1e-12 relative

    actions, truthful, margin = best_responses(m, t, costs, f, tie_tol=rounding)
    choice = np.zeros((num, num))
    for i, a in enumerate(actions):
        if a >= 0:
            choice[i, a] = 1.0

    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        mom = moments(jnp.asarray(m), problem64, jnp.asarray(enumerate_outcomes(N, num), jnp.float64))
        tbar = np.asarray(mom.reward_bounds)
        share = np.where(tbar > 0, np.minimum(t / np.where(tbar > 0, tbar, 1.0), 1.0), 0.0)  # capped as in realize
        root = jax.random.PRNGKey(seed) if key is None else key
        chunks = -(-samples // chunk)
        keys = jax.random.split(root, chunks)
        log_p = jnp.log(jnp.asarray(problem.probs, jnp.float64))
        args = (jnp.asarray(choice), jnp.asarray(m), jnp.asarray(problem64.quality), jnp.asarray(share),
                problem64.accuracy, problem64.valuation)
        totals: dict = {}
        for k in range(chunks):
            valid = min(chunk, samples - k * chunk)
            stats = _round_statistics(keys[k], log_p, *args, jnp.asarray(valid), participants=N, chunk=chunk)
            for name, value in stats.items():
                value = np.asarray(value, dtype=np.float64)
                if name == "max_excess":
                    totals[name] = max(totals.get(name, -np.inf), float(value))
                else:
                    totals[name] = totals.get(name, 0.0) + value

    n_rounds = totals["rounds"]
    acc_mean = totals["acc"] / n_rounds
    acc_se = math.sqrt(max(totals["acc2"] / n_rounds - acc_mean**2, 0.0) / (n_rounds - 1))
    joined = actions >= 0
    if problem.conditioning == "truncated":
        observed = totals["present"]
        with np.errstate(invalid="ignore", divide="ignore"):
            reward = totals["r"] / observed
            var = np.maximum(totals["r2"] / observed - reward**2, 0.0) * observed / (observed - 1)
            reward_se = np.sqrt(var / observed)
            reward_acc = totals["racc"] / observed
    else:
        observed = totals["x"]
        with np.errstate(invalid="ignore", divide="ignore"):
            reward = totals["y"] / observed
            # Delta method for a ratio of sums over i.i.d. rounds: Var ~ sum (Y - mu X)^2 / (sum X)^2.
            resid2 = totals["y2"] - 2.0 * reward * totals["xy"] + reward**2 * totals["x2"]
            reward_se = np.sqrt(np.maximum(resid2, 0.0)) / observed
            reward_acc = totals["xracc"] / observed
    # An item nobody of that type holds (opted out) pays nothing; a type never drawn has no estimate.
    reward = np.where(joined, reward, 0.0)
    reward_se = np.where(joined, reward_se, 0.0)
    unseen = joined & ~(observed >= 2)
    reward = np.where(unseen, np.nan, reward)
    reward_se = np.where(unseen, np.inf, reward_se)

    taken = np.maximum(actions, 0)  # the item a type holds (ignored where it opts out)
    emp_u = np.where(joined, reward - costs * m[taken], f)
    pred_u = np.where(joined, t[taken] - costs * m[taken], f)  # the model's payoff of the action taken
    utility_se = reward_se
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = emp_u - pred_u
        utility_z = np.where(utility_se > 0, diff / np.where(utility_se > 0, utility_se, 1.0), 0.0)

    # Empirical IR / IC from the realized rewards of the items as held (truthful play: item i by type i).
    item_reward = np.where(truthful, reward, np.nan)
    item_se = np.where(truthful, reward_se, np.inf)
    emp_ir = item_reward - costs * m - f
    emp_ic = (item_reward - costs * m)[:, None] - (item_reward[None, :] - costs[:, None] * m[None, :])
    np.fill_diagonal(emp_ic, 0.0)
    ic_se = item_se[:, None] + item_se[None, :]
    np.fill_diagonal(ic_se, 0.0)

    failures = []
    for i in range(num):
        k = i + 1
        if not truthful[i]:
            what = "opting out" if actions[i] < 0 else f"the item of type {actions[i] + 1}"
            failures.append(f"type {k} is better off with {what} (model margin {margin[i]:.4g})")
        if unseen[i]:
            failures.append(f"type {k} was drawn fewer than 2 times: no Monte Carlo estimate (raise samples)")
            continue
        if abs(emp_u[i] - pred_u[i]) > z * utility_se[i] + rounding:
            failures.append(f"type {k}: simulated utility {emp_u[i]:.6g} differs from predicted {pred_u[i]:.6g} "
                            f"by {utility_z[i]:.2f} standard errors")
        if truthful[i] and emp_ir[i] < -(z * item_se[i] + rounding):
            failures.append(f"type {k}: simulated IR residual {emp_ir[i]:.4g} below -{z:g} s.e. ({item_se[i]:.2g})")
        for j in range(num):
            if j != i and truthful[i] and truthful[j] and emp_ic[i, j] < -(z * ic_se[i, j] + rounding):
                failures.append(f"IC[{k}->{j + 1}]: simulated residual {emp_ic[i, j]:.4g} below -{z:g} s.e. "
                                f"({ic_se[i, j]:.2g})")
    predicted_acc = float(mom.expected_accuracy)
    if bool(np.all(truthful)) and abs(acc_mean - predicted_acc) > z * acc_se + 1e-12:
        failures.append(f"E[a]: simulated {acc_mean:.6g} differs from predicted {predicted_acc:.6g} "
                        f"by more than {z:g} s.e. ({acc_se:.2g})")
    if totals["max_excess"] > 1e-12:  # ex-post budget: float64 rounding of v^{-1}(v(a)) only
        failures.append(f"ex-post budget: some participant got r - a = {totals['max_excess']:.3g} > 0")

    return SimulationReport(
        ok=not failures, samples=int(samples), seed=int(seed), z=float(z), conditioning=problem.conditioning,
        actions=actions, truthful=truthful, model_margin=margin, predicted_utility=pred_u, empirical_utility=emp_u,
        utility_se=utility_se, utility_z=utility_z, predicted_reward=np.asarray(t, dtype=np.float64),
        empirical_reward=reward, reward_se=reward_se, empirical_reward_accuracy=reward_acc,
        empirical_ir=emp_ir, ir_se=item_se, empirical_ic=emp_ic, ic_se=ic_se, predicted_accuracy=predicted_acc,
        expected_accuracy=float(acc_mean), accuracy_se=float(acc_se), max_excess=float(totals["max_excess"]),
        observed=np.asarray(observed, dtype=np.float64), failures=failures,
    )
