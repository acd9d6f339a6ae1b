"""Look-alike pytree classes (same fields, different code) are never confused by a compiled function.

With jax 0.10 two structures whose dataclass nodes are of different classes with the same fields
compare equal, and a jitted function's caches sometimes return the program traced for the other class
(CI: a user's convex ``Quadratic`` valuation differentiated as the package's ``Linear``). Each test runs
many look-alike classes through one compiled function: without the guards in ``diffcontract._jit`` and
``ContractProblem``'s structure, about one class in seven got another class's result (jax 0.10.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import struct

from diffcontract import ContractProblem
from diffcontract._jit import jit, node_types
from diffcontract.mechanism import concavity_threshold
from diffcontract.problem import _evaluate_curve

LOOK_ALIKES = 48  # P(no confusion | no guard) ~ 0.85^48 < 1e-3 per test
BASE = ContractProblem(participants=2, probs=[0.5, 0.5], costs=[0.02, 0.01])


def look_alike_valuations(count: int) -> list[type]:
    """Valuations v_k(r) = scale r^(1 + k mod 2) (k + 1): one field each, linear for even k, convex for odd."""
    classes = []
    for k in range(count):
        power, factor = 1 + k % 2, float(k + 1)

        def call(self, r, power=power, factor=factor):
            return factor * self.scale * jnp.asarray(r) ** power

        namespace = {"__annotations__": {"scale": float}, "scale": 100.0, "__call__": call, "factor": factor}
        classes.append(struct.dataclass(type(f"Valuation{k}", (), namespace)))
    return classes


def test_look_alike_structures_have_different_node_classes():
    first, second = look_alike_valuations(2)
    structures = [jax.tree_util.tree_structure(cls()) for cls in (first, second)]
    assert node_types(structures[0]) != node_types(structures[1])
    problems = [ContractProblem(participants=2, probs=[0.5, 0.5], costs=[0.02, 0.01], valuation=cls())
                for cls in (first, second)]
    assert jax.tree_util.tree_structure(problems[0]) != jax.tree_util.tree_structure(problems[1])


@pytest.mark.parametrize("evaluate", [jit(lambda curve, r: curve(r)), _evaluate_curve], ids=["jit", "kernel_jit"])
def test_jit_runs_each_class_own_code(evaluate):
    for cls in look_alike_valuations(LOOK_ALIKES):
        assert float(evaluate(cls(), 1.0)) == pytest.approx(100.0 * cls.factor, rel=1e-6)  # float32 product


def test_a_jit_over_problems_tells_their_curves_apart():
    value_of_perfect_model = jax.jit(lambda problem: problem.valuation(1.0))  # a user's own jit
    for cls in look_alike_valuations(LOOK_ALIKES):
        problem = BASE.replace(valuation=cls())  # not validated: only the jit under test compiles
        assert float(value_of_perfect_model(problem)) == pytest.approx(100.0 * cls.factor, rel=1e-6)


def test_certificates_run_each_class_own_code():
    for k, cls in enumerate(look_alike_valuations(LOOK_ALIKES)):
        problem = BASE.replace(valuation=cls())
        x_c, reason = concavity_threshold(problem, 1e3)
        convex = k % 2 == 1
        assert (x_c is None) == convex and ("valuation" in reason) == convex, (k, x_c, reason)
