r"""Strategic Monte Carlo simulation of a contract (docs/model.md "The contract", "Realizing rewards").

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

from .._jit import jit
from .. import _precision
from ..expectation import enumerate_outcomes, moments
from ._record import check_enumerable, check_setting, is_number, json_safe, load_contract
from .assignment import ratio_or_zero

CHUNK = 4096  # rounds per compiled step (fewer for large N, see _play_rounds): bounded memory
ONE_HOT_ENTRIES = 2**22  # cap on the (rounds, N, I) one-hot of a step: 32 MiB of float64
MAX_PARTICIPANTS = 100_000
# Float64 sums of O(samples) terms of size O(v(1)) agree to ~1e-12 relative; this allowance (times
# v(1) - v(0)) is added to every z-test in money and is the tie tolerance of the best responses.
ROUNDING_RTOL = 1e-9
ACCURACY_ROUNDING = 1e-12  # the same allowance for accuracies in [0, 1] (E[a], v^{-1}(v(a)) round trips)
SAME_ITEM_RTOL = 1e-9  # items whose m agree to this (relative) are one item: pooled types


@functools.partial(jit, static_argnames=("participants", "chunk", "interim"))
def _round_statistics(key, log_p, choice, m, q, share, accuracy, valuation, valid, *, participants, chunk, interim):
    """Sufficient statistics of ``chunk`` rounds (rows beyond ``valid`` are masked out).

    choice: (I, I) one-hot rows, type i -> its item (an all-zero row: type i opts out).
    interim: the estimator's per-round weight of type i is X = n_i (interim: participants) or
      X = [n_i >= 1] (truncated: rounds where type i is present); Y = X v(r_i).
    Returns sums over the rounds (float64): the rounds, E[a] terms, and per type sum X, X^2, Y, Y^2,
    XY and X r_i (see ``_reward_estimates``); the largest r_i - a of a present type.
    """
    num = log_p.shape[0]
    types = jax.random.categorical(key, log_p, shape=(chunk, participants))
    counts = jnp.sum(jax.nn.one_hot(types, num, dtype=m.dtype), axis=1)  # (chunk, I) type counts
    keep = (jnp.arange(chunk) < valid).astype(m.dtype)
    acc = accuracy(counts @ (q * (choice @ m)))  # choice @ m: data of a type-i participant (0 if it opts out)
    reward = valuation(acc)[:, None] * (choice @ share)[None, :]  # (chunk, I) v(r) of a type-i participant
    reward_acc = valuation.inverse(reward)
    x = (counts if interim else (counts >= 1).astype(m.dtype)) * keep[:, None]
    y = x * reward
    excess = jnp.where((counts >= 1) & (keep[:, None] > 0), reward_acc - acc[:, None], -jnp.inf)
    return {"rounds": jnp.sum(keep), "acc": jnp.sum(keep * acc), "acc2": jnp.sum(keep * acc**2),
            "x": jnp.sum(x, axis=0), "x2": jnp.sum(x**2, axis=0), "y": jnp.sum(y, axis=0),
            "y2": jnp.sum(y**2, axis=0), "xy": jnp.sum(x * y, axis=0), "racc": jnp.sum(x * reward_acc, axis=0),
            "max_excess": jnp.max(excess)}


class SimulationReport(NamedTuple):
    """Results of ``simulate`` (canonical type order; money unless stated).

    Attributes:
      ok: truthful self-selection is a best response (model and simulation) and every empirical
        utility matches its prediction within ``z`` standard errors.
      samples: the number of rounds simulated.
      seed: the PRNG seed.
      z: the z-score bound of the utility check.
      actions: (I,) the action each type takes: its item index 0..I-1, or -1 to opt out.
      truthful: (I,) bool, type i takes its own item (or an identical one: pooled types).
      model_margin: (I,) u_i - best alternative payoff under the model (>= 0 when truthful).
      predicted_utility: (I,) the model's payoff of the action taken (t_i - c_i m_i when truthful).
      empirical_utility: (I,) Monte Carlo mean of the utility.
      utility_se: (I,) its standard error (the reward's: the utility is the reward less the fixed c_i m_i).
      utility_z: (I,) (empirical - predicted) / SE (0 where both are exact).
      empirical_reward: (I,) E[v(r_i) | i] estimated.
      reward_se: (I,) its standard error.
      predicted_reward: (I,) t.
      empirical_reward_accuracy: (I,) mean realized r_i over the same rounds.
      empirical_ir: (I,) the IR residuals from the realized rewards.
      empirical_ic: (I, I) the IC residuals from the realized rewards.
      ir_se: (I,) standard errors of ``empirical_ir``.
      ic_se: (I, I) standard errors of ``empirical_ic`` (SE_i + SE_j, a bound valid for any
        correlation).
      expected_accuracy: simulated E[a] of the pooled model.
      accuracy_se: its standard error.
      predicted_accuracy: the model's E[a].
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
    failures: list
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

    def to_dict(self) -> dict:
        """JSON-ready (non-finite numbers, e.g. the SE of a type never observed, become None)."""
        return json_safe({name: value.tolist() if isinstance(value, np.ndarray) else value
                          for name, value in self._asdict().items()})

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


def best_responses(m, t, costs, reservation, tie_tol: float):
    """The model's best response of each type (docs/model.md IC and IR).

    Args:
      m, t: (I,) menu.  costs: (I,) c.  reservation: (I,) f.
      tie_tol: payoffs within this (money) of the best count as ties; ties go to the own item.

    Returns:
      (actions, truthful, margin): (I,) item index or -1 (opt out); (I,) bool; (I,) own payoff minus
      the best alternative's.
    """
    m, t, costs, reservation = (np.asarray(x) for x in (m, t, costs, reservation))
    payoff = t[None, :] - costs[:, None] * m[None, :]  # [i, j]: type i taking item j
    own, rows = np.diag(payoff), np.arange(m.size)
    # Items equal to the own one (pooled types) are not alternatives.
    same_item = ((np.abs(m[None, :] - m[:, None]) <= SAME_ITEM_RTOL * np.maximum(1.0, np.abs(m))[:, None])
                 & (np.abs(t[None, :] - t[:, None]) <= tie_tol))
    best_alt = np.maximum(reservation, np.max(np.where(same_item, -np.inf, payoff), axis=1))
    truthful = own >= best_alt - tie_tol
    best = np.argmax(payoff, axis=1)
    actions = np.where(truthful, rows, np.where(payoff[rows, best] > reservation, best, -1))
    return actions, truthful, own - best_alt


def _play_rounds(problem, m, t, actions, samples: int, seed: int, key):
    """The menu's moments and the round statistics of ``_round_statistics`` summed over ``samples`` rounds.

    One key per chunk of rounds, split from ``key`` (or ``PRNGKey(seed)``), all in float64.
    """
    num, N = problem.num_types, problem.num_participants
    chunk = int(min(CHUNK, max(1, ONE_HOT_ENTRIES // (N * num))))  # the (rounds, N, I) one-hot under the cap
    choice = (actions[:, None] == np.arange(num)[None, :]).astype(np.float64)  # opting out (-1): a zero row
    with _precision.float64():
        problem64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), problem)
        mom = moments(jnp.asarray(m), problem64, jnp.asarray(enumerate_outcomes(N, num), jnp.float64))
        share = np.minimum(ratio_or_zero(t, np.asarray(mom.reward_bounds), np), 1.0)  # capped as in realize
        chunks = -(-samples // chunk)
        keys = jax.random.split(jax.random.PRNGKey(seed) if key is None else key, chunks)
        args = (jnp.log(jnp.asarray(problem.probs, jnp.float64)), jnp.asarray(choice), jnp.asarray(m),
                jnp.asarray(problem64.quality), jnp.asarray(share), problem64.accuracy, problem64.valuation)
        steps = [jax.tree_util.tree_map(np.asarray, _round_statistics(
            keys[k], *args, jnp.asarray(min(chunk, samples - k * chunk)), participants=N, chunk=chunk,
            interim=problem.conditioning == "interim")) for k in range(chunks)]
    # Sums over the chunks in order (a left fold from 0), the maximum for the ex-post excess.
    totals = {name: sum((step[name] for step in steps), 0.0) for name in steps[0]}
    totals["max_excess"] = max(-np.inf, *(float(step["max_excess"]) for step in steps))
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
    observed = totals["x"]
    with np.errstate(invalid="ignore", divide="ignore"):
        reward = totals["y"] / observed
        if conditioning == "truncated":  # a mean over rounds (X = 0 or 1): sample variance / rounds
            var = np.maximum(totals["y2"] / observed - reward**2, 0.0) * observed / (observed - 1)
            reward_se = np.sqrt(var / observed)
        else:
            # Delta method for a ratio of sums over i.i.d. rounds: Var ~ sum (Y - mu X)^2 / (sum X)^2.
            resid2 = totals["y2"] - 2.0 * reward * totals["xy"] + reward**2 * totals["x2"]
            reward_se = np.sqrt(np.maximum(resid2, 0.0)) / observed
        reward_acc = totals["racc"] / observed
    # An item nobody of that type holds (opted out) pays nothing; a type never drawn has no estimate.
    unseen = joined & ~(observed >= 2)
    reward = np.where(unseen, np.nan, np.where(joined, reward, 0.0))
    reward_se = np.where(unseen, np.inf, np.where(joined, reward_se, 0.0))
    return observed, reward, reward_se, reward_acc


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
        failures.extend(f"IC[{k}->{j + 1}]: simulated residual {emp_ic[i, j]:.4g} below -{z:g} s.e. ({ic_se[i, j]:.2g})"
                        for j in range(truthful.size)
                        if j != i and truthful[i] and truthful[j] and emp_ic[i, j] < -(z * ic_se[i, j] + rounding))
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
    check_setting("samples", samples, is_number(samples, (int, np.integer)) and samples >= 2, "an integer >= 2")
    check_setting("seed", seed, is_number(seed, (int, np.integer)) and 0 <= seed < 2**32, "an integer in [0, 2^32)")
    check_setting("z", z, is_number(z) and math.isfinite(z) and z > 0, "a finite number > 0")
    contract = load_contract(solution)
    problem, m, t = contract.problem, contract.m, contract.t
    if not hasattr(problem.valuation, "inverse"):
        raise ValueError(f"valuation: {type(problem.valuation).__name__} has no inverse, needed to realize rewards")
    if problem.num_participants > MAX_PARTICIPANTS:
        raise ValueError(f"participants: N = {problem.num_participants} is too large to simulate (at most "
                         f"{MAX_PARTICIPANTS} participants a round)")
    check_enumerable(problem, "simulate (for tbar)")
    costs, f = (np.asarray(x, dtype=np.float64) for x in (problem.costs, problem.reservation_utility))
    with _precision.float64():
        v0, v1 = np.asarray(problem.valuation(jnp.asarray([0.0, 1.0], jnp.float64)))
    rounding = ROUNDING_RTOL * float(v1 - v0)

    actions, truthful, margin = best_responses(m, t, costs, f, tie_tol=rounding)
    mom, totals = _play_rounds(problem, m, t, actions, samples, seed, key)
    n_rounds = totals["rounds"]
    acc_mean = totals["acc"] / n_rounds
    acc_se = math.sqrt(max(totals["acc2"] / n_rounds - acc_mean**2, 0.0) / (n_rounds - 1))
    joined = actions >= 0
    observed, reward, reward_se, reward_acc = _reward_estimates(totals, problem.conditioning, joined)

    taken = np.maximum(actions, 0)  # the item a type holds (ignored where it opts out)
    emp_u = np.where(joined, reward - costs * m[taken], f)
    pred_u = np.where(joined, t[taken] - costs * m[taken], f)  # the model's payoff of the action taken
    with np.errstate(invalid="ignore", divide="ignore"):
        utility_z = ratio_or_zero(emp_u - pred_u, reward_se, np)
    # The constraints from the realized rewards of the items as held (truthful: item i by type i); a type
    # that does not play truthfully has NaN residuals and an inf SE. IC's SE_i + SE_j holds for any correlation.
    item_reward, item_se = np.where(truthful, reward, np.nan), np.where(truthful, reward_se, np.inf)
    emp_ic = (item_reward - costs * m)[:, None] - (item_reward[None, :] - costs[:, None] * m[None, :])
    ic_se = item_se[:, None] + item_se[None, :]
    np.fill_diagonal(emp_ic, 0.0)
    np.fill_diagonal(ic_se, 0.0)
    report = SimulationReport(
        ok=False, samples=int(samples), seed=int(seed), z=float(z), conditioning=problem.conditioning,
        actions=actions, truthful=truthful, model_margin=margin, predicted_utility=pred_u, empirical_utility=emp_u,
        utility_se=reward_se, utility_z=utility_z, predicted_reward=np.asarray(t, dtype=np.float64),
        empirical_reward=reward, reward_se=reward_se, empirical_reward_accuracy=reward_acc,
        empirical_ir=item_reward - costs * m - f, ir_se=item_se, empirical_ic=emp_ic, ic_se=ic_se,
        predicted_accuracy=float(mom.expected_accuracy), expected_accuracy=float(acc_mean),
        accuracy_se=float(acc_se), max_excess=float(totals["max_excess"]),
        observed=np.asarray(observed, dtype=np.float64), failures=[],
    )
    failures = _failures(report, rounding)
    return report._replace(ok=not failures, failures=failures)
