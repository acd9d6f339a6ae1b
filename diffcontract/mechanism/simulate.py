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
ONE_HOT_ENTRIES = 2**22  # cap on the (rounds, N, I) one-hot of a step: 32 MiB of float64
MAX_PARTICIPANTS = 100_000
MAX_OUTCOMES = 20_000_000  # tbar is computed by enumeration, as in the solvers
# Float64 sums of O(samples) terms of size O(v(1)) agree to ~1e-12 relative; this allowance (times
# v(1) - v(0)) is added to every z-test in money and is the tie tolerance of the best responses.
ROUNDING_RTOL = 1e-9
ACCURACY_ROUNDING = 1e-12  # the same allowance for accuracies in [0, 1] (E[a], v^{-1}(v(a)) round trips)
SAME_ITEM_RTOL = 1e-9  # items whose m agree to this (relative) are one item: pooled types


def _chunk_size(participants: int, num_types: int) -> int:
    """Rounds per step so that the (rounds, N, I) one-hot stays under ``ONE_HOT_ENTRIES``."""
    return int(min(CHUNK, max(1, ONE_HOT_ENTRIES // (participants * num_types))))


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
        out = {"ok": self.ok, "samples": self.samples, "seed": self.seed, "z": self.z,
               "conditioning": self.conditioning, "actions": self.actions.tolist(),
               "truthful": self.truthful.tolist(), "failures": list(self.failures)}
        for name in ("model_margin", "predicted_utility", "empirical_utility", "utility_se", "utility_z",
                     "predicted_reward", "empirical_reward", "reward_se", "empirical_reward_accuracy",
                     "empirical_ir", "ir_se", "empirical_ic", "ic_se", "predicted_accuracy", "expected_accuracy",
                     "accuracy_se", "max_excess", "observed"):
            out[name] = _none_for_nan(np.asarray(getattr(self, name), dtype=float).tolist())
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
    """``value`` (a number or nested lists) with every non-finite float replaced by None."""
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
        # Items equal to the own one (pooled types) are not alternatives.
        same_item = (np.abs(m - m[i]) <= SAME_ITEM_RTOL * max(1.0, abs(m[i]))) & (np.abs(t - t[i]) <= tie_tol)
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


def _is_integer(value) -> bool:
    """A Python or numpy integer, not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def _check_settings(samples, seed, z) -> None:
    """Raise a ValueError naming ``samples``, ``seed`` or ``z`` when it is out of range."""
    if not _is_integer(samples) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2, got {samples!r}")
    if not _is_integer(seed) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise ValueError(f"z must be a finite number > 0, got {z!r}")


def _load_simulable(solution):
    """The contract of ``solution``, refused by field when it cannot be simulated."""
    contract = load_contract(solution)
    problem = contract.problem
    if not hasattr(problem.valuation, "inverse"):
        raise ValueError(f"valuation: {type(problem.valuation).__name__} has no inverse, needed to realize rewards")
    num, N = problem.num_types, problem.num_participants
    if N > MAX_PARTICIPANTS or math.comb(N + num - 1, num - 1) > MAX_OUTCOMES:
        raise ValueError(f"participants: N = {N} with I = {num} types is too large to simulate (tbar is "
                         f"enumerated over C(N + I - 1, I - 1) outcomes; limits N <= {MAX_PARTICIPANTS}, "
                         f"{MAX_OUTCOMES} outcomes)")
    return contract


def _value_scale(valuation) -> float:
    """v(1) - v(0), money, in float64."""
    with _precision.float64():
        v0, v1 = np.asarray(valuation(jnp.asarray([0.0, 1.0], jnp.float64)))
    return float(v1 - v0)


def _choice_matrix(actions: np.ndarray) -> np.ndarray:
    """(I, I) one-hot rows: type i -> the item it takes (an all-zero row where it opts out)."""
    choice = np.zeros((actions.size, actions.size))
    for i, a in enumerate(actions):
        if a >= 0:
            choice[i, a] = 1.0
    return choice


def _ratio_or_zero(numerator, denominator):
    """numerator / denominator where the denominator is > 0, else 0."""
    positive = denominator > 0
    return np.where(positive, numerator / np.where(positive, denominator, 1.0), 0.0)


def _play_rounds(problem, m, t, choice, samples: int, seed: int, key):
    """The menu's moments and the round statistics of ``_round_statistics`` summed over ``samples`` rounds.

    One key per chunk of rounds, split from ``key`` (or ``PRNGKey(seed)``), all in float64.
    """
    num, N = problem.num_types, problem.num_participants
    chunk = _chunk_size(N, num)
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        mom = moments(jnp.asarray(m), problem64, jnp.asarray(enumerate_outcomes(N, num), jnp.float64))
        share = np.minimum(_ratio_or_zero(t, np.asarray(mom.reward_bounds)), 1.0)  # capped as in realize
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
    return mom, totals


def _reward_estimates(totals: dict, conditioning: str, joined: np.ndarray):
    """(observed, reward, reward_se, reward_accuracy), each (I,), from the summed round statistics.

    Args:
      totals: sums from ``_play_rounds``.  conditioning: "truncated" or "interim".
      joined: (I,) bool, the type takes an item (it does not opt out).

    Returns:
      observed: rounds (truncated) or participants (interim) behind each estimate. reward, reward_se:
      E[v(r_i) | i] and its standard error, money (0 where the type opts out; NaN and inf where it was
      drawn fewer than 2 times). reward_accuracy: mean realized r_i, accuracy.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if conditioning == "truncated":
            observed = totals["present"]
            reward = totals["r"] / observed
            var = np.maximum(totals["r2"] / observed - reward**2, 0.0) * observed / (observed - 1)
            reward_se = np.sqrt(var / observed)
            reward_acc = totals["racc"] / observed
        else:
            observed = totals["x"]
            reward = totals["y"] / observed
            # Delta method for a ratio of sums over i.i.d. rounds: Var ~ sum (Y - mu X)^2 / (sum X)^2.
            resid2 = totals["y2"] - 2.0 * reward * totals["xy"] + reward**2 * totals["x2"]
            reward_se = np.sqrt(np.maximum(resid2, 0.0)) / observed
            reward_acc = totals["xracc"] / observed
    # An item nobody of that type holds (opted out) pays nothing; a type never drawn has no estimate.
    unseen = joined & ~(observed >= 2)
    reward = np.where(unseen, np.nan, np.where(joined, reward, 0.0))
    reward_se = np.where(unseen, np.inf, np.where(joined, reward_se, 0.0))
    return observed, reward, reward_se, reward_acc


def _empirical_constraints(truthful, reward, reward_se, m, costs, f):
    """(item_se, IR, IC, IC_se) from the realized rewards of the items as held (truthful: item i by type i).

    All (I,) or (I, I), money; a type that does not play truthfully has NaN residuals and an inf SE.
    The IC standard error is SE_i + SE_j, a bound valid for any correlation.
    """
    item_reward = np.where(truthful, reward, np.nan)
    item_se = np.where(truthful, reward_se, np.inf)
    emp_ir = item_reward - costs * m - f
    emp_ic = (item_reward - costs * m)[:, None] - (item_reward[None, :] - costs[:, None] * m[None, :])
    np.fill_diagonal(emp_ic, 0.0)
    ic_se = item_se[:, None] + item_se[None, :]
    np.fill_diagonal(ic_se, 0.0)
    return item_se, emp_ir, emp_ic, ic_se


def _failures(report: SimulationReport, rounding: float) -> list:
    """Readable reasons why ``report`` does not pass (its ``ok`` and ``failures`` are not read)."""
    z, failures = report.z, []
    unseen = (report.actions >= 0) & ~(report.observed >= 2)
    truthful, emp_u, pred_u = report.truthful, report.empirical_utility, report.predicted_utility
    emp_ir, item_se, emp_ic, ic_se = report.empirical_ir, report.ir_se, report.empirical_ic, report.ic_se
    for i in range(truthful.size):
        k = i + 1
        if not truthful[i]:
            what = "opting out" if report.actions[i] < 0 else f"the item of type {report.actions[i] + 1}"
            failures.append(f"type {k} is better off with {what} (model margin {report.model_margin[i]:.4g})")
        if unseen[i]:
            failures.append(f"type {k} was drawn fewer than 2 times: no Monte Carlo estimate (raise samples)")
            continue
        if abs(emp_u[i] - pred_u[i]) > z * report.utility_se[i] + rounding:
            failures.append(f"type {k}: simulated utility {emp_u[i]:.6g} differs from predicted {pred_u[i]:.6g} "
                            f"by {report.utility_z[i]:.2f} standard errors")
        if truthful[i] and emp_ir[i] < -(z * item_se[i] + rounding):
            failures.append(f"type {k}: simulated IR residual {emp_ir[i]:.4g} below -{z:g} s.e. ({item_se[i]:.2g})")
        for j in range(truthful.size):
            if j != i and truthful[i] and truthful[j] and emp_ic[i, j] < -(z * ic_se[i, j] + rounding):
                failures.append(f"IC[{k}->{j + 1}]: simulated residual {emp_ic[i, j]:.4g} below -{z:g} s.e. "
                                f"({ic_se[i, j]:.2g})")
    acc, predicted, acc_se = report.expected_accuracy, report.predicted_accuracy, report.accuracy_se
    if bool(np.all(truthful)) and abs(acc - predicted) > z * acc_se + ACCURACY_ROUNDING:
        failures.append(f"E[a]: simulated {acc:.6g} differs from predicted {predicted:.6g} "
                        f"by more than {z:g} s.e. ({acc_se:.2g})")
    if report.max_excess > ACCURACY_ROUNDING:  # ex-post budget: float64 rounding of v^{-1}(v(a)) only
        failures.append(f"ex-post budget: some participant got r - a = {report.max_excess:.3g} > 0")
    return failures


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
    _check_settings(samples, seed, z)
    contract = _load_simulable(solution)
    problem, m, t = contract.problem, contract.m, contract.t
    costs = np.asarray(problem.costs, dtype=np.float64)
    f = np.asarray(problem.reservation_utility, dtype=np.float64)
    rounding = ROUNDING_RTOL * _value_scale(problem.valuation)

    actions, truthful, margin = best_responses(m, t, costs, f, tie_tol=rounding)
    mom, totals = _play_rounds(problem, m, t, _choice_matrix(actions), samples, seed, key)
    n_rounds = totals["rounds"]
    acc_mean = totals["acc"] / n_rounds
    acc_se = math.sqrt(max(totals["acc2"] / n_rounds - acc_mean**2, 0.0) / (n_rounds - 1))
    joined = actions >= 0
    observed, reward, reward_se, reward_acc = _reward_estimates(totals, problem.conditioning, joined)

    taken = np.maximum(actions, 0)  # the item a type holds (ignored where it opts out)
    emp_u = np.where(joined, reward - costs * m[taken], f)
    pred_u = np.where(joined, t[taken] - costs * m[taken], f)  # the model's payoff of the action taken
    with np.errstate(invalid="ignore", divide="ignore"):
        utility_z = _ratio_or_zero(emp_u - pred_u, reward_se)
    item_se, emp_ir, emp_ic, ic_se = _empirical_constraints(truthful, reward, reward_se, m, costs, f)
    report = SimulationReport(
        ok=False, samples=int(samples), seed=int(seed), z=float(z), conditioning=problem.conditioning,
        actions=actions, truthful=truthful, model_margin=margin, predicted_utility=pred_u, empirical_utility=emp_u,
        utility_se=reward_se, utility_z=utility_z, predicted_reward=np.asarray(t, dtype=np.float64),
        empirical_reward=reward, reward_se=reward_se, empirical_reward_accuracy=reward_acc,
        empirical_ir=emp_ir, ir_se=item_se, empirical_ic=emp_ic, ic_se=ic_se,
        predicted_accuracy=float(mom.expected_accuracy), expected_accuracy=float(acc_mean),
        accuracy_se=float(acc_se), max_excess=float(totals["max_excess"]),
        observed=np.asarray(observed, dtype=np.float64), failures=[],
    )
    failures = _failures(report, rounding)
    return report._replace(ok=not failures, failures=failures)
