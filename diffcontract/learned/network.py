r"""The mechanism network: problem features -> monotone contributions m (a Flax MLP).

Features of a problem (N, p, c) with the training distribution's fixed curves (all dimensionless):
N mapped to [-1, 1] over the trained range; p; log10 c mapped to [-1, 1] over the trained range;
f / (v(1) - v(0)); m^res / m_ref; and the pooled frontier: for each number j of excluded costliest
types, log(m0_j / m_ref) / 10 of the largest feasible common contribution of the others and its
E[a] (``solvers/_start.py``; the optimum often pools, and this is where the budget binds). The output o in R^I is decoded as

.. math:: m = m_{\mathrm{ref}} \cdot \exp(\mathrm{iso}(o)),\qquad m_{\mathrm{ref}} = (v(1) - v(0)) / c_I,

with iso the isotonic regression: monotone non-decreasing from the costliest type to the cheapest
by construction (docs/model.md's simplified set), positive, and exactly pooled where the network's
levels are out of order; m_ref, the data whose cost to the cheapest type equals the whole value
scale, makes the outputs scale-free (contributions range over four orders of magnitude with c).
Exclusions (m_i = 0) are approached (o -> -inf), not reached; the repair step and the ALM polish
make them exact where it matters. The rewards are not an output: t follows from m by the binding
constraints (``formulation.binding_rewards``), so IC and the costliest type's IR hold by
construction and only the budget and the other IRs are learned (penalized) constraints.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from ..numerics import isotonic_regression
from ..problem import value_unit

_LOG_CLIP = (-30.0, 6.0)  # exp(o) in [1e-13, 403] m_ref: beyond either end m is no longer informative


class MechanismNetwork(nn.Module):
    """MLP from (F,) features to (I,) decoder logits o (see module docstring).

    num_types: I.  hidden: widths of the hidden layers (SiLU activations).
    """

    num_types: int
    hidden: Sequence[int] = (128, 128, 128)

    @nn.compact
    def __call__(self, features: jnp.ndarray) -> jnp.ndarray:
        h = features
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        # Start near m = 0.05 m_ref for every type: a small pooled contract.
        return nn.Dense(self.num_types, kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "normal"),
                        bias_init=nn.initializers.constant(jnp.log(0.05)))(h)


def data_reference(problem) -> jnp.ndarray:
    """m_ref = (v(1) - v(0)) / c_I, units of data (one problem; jittable)."""
    return value_unit(problem) / problem.costs[-1]


def problem_features(problem, table, participants_range: tuple, log10_cost_range: tuple,
                     candidates=None) -> jnp.ndarray:
    """(6I + 1,) dimensionless features of one problem (see module docstring; jittable).

    Args:
      problem: one ``ContractProblem``.  table: its ``OutcomeTable`` with weights attached.
      participants_range, log10_cost_range: the training distribution's ranges (for scaling).
      candidates: ``exclusion_pooled_candidates(problem, table)`` if already computed.
    """
    from ..solvers._start import exclusion_pooled_candidates

    dtype = jnp.result_type(problem.costs)
    lo, hi = participants_range
    n = (jnp.asarray(problem.participants, dtype) - lo) / max(hi - lo, 1) * 2.0 - 1.0
    a, b = log10_cost_range
    logc = (jnp.log10(problem.costs) - 0.5 * (a + b)) / (0.5 * (b - a))
    m_ref = data_reference(problem)
    # The pooled frontier: for j = 0..I-1 costliest types excluded, the largest feasible common
    # m0 of the rest and its E[a] (``solvers/_start.py``); 0 where none is feasible.
    menus, found, value = exclusion_pooled_candidates(problem, table) if candidates is None else candidates
    pooled = jnp.where(found, jnp.log(jnp.maximum(menus[:, -1] / m_ref, 1e-12)) / 10.0, -3.0)
    return jnp.concatenate([n[None], problem.probs, logc, problem.reservation_utility / value_unit(problem),
                            problem.reservation_data / m_ref, pooled, jnp.where(found, value, 0.0)])


def decode_contributions(logits: jnp.ndarray, problem) -> jnp.ndarray:
    """(I,) logits o -> (I,) monotone contributions m = m_ref exp(iso(o)), units of data.

    iso is the isotonic regression (projection onto non-decreasing vectors, ``numerics``):
    where the network's levels are out of order the types are pooled *exactly* (equal m), the
    bunching docs/model.md's optima show; gradients flow through the pooled means.
    """
    return data_reference(problem) * jnp.exp(isotonic_regression(jnp.clip(logits, *_LOG_CLIP)))
