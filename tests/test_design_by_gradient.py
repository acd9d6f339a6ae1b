"""The design-by-gradient example (issue 7, item 2): implicit dW/du against finite differences."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

_PATH = pathlib.Path(__file__).resolve().parents[1] / "examples" / "design_by_gradient.py"


def _example():
    spec = importlib.util.spec_from_file_location("design_by_gradient", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # ~20 s of exact solves; the implicit gradients themselves are in test_sensitivity's default run
def test_welfare_gradient_matches_finite_differences_and_the_example_runs(capsys):
    example = _example()
    with jax.enable_x64(True):
        problem = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), example.design_problem())
        value, grad = jax.value_and_grad(example.welfare)(jnp.asarray(0.5), problem)
        step = 1e-5
        central = (float(example.welfare(jnp.asarray(0.5 + step), problem))
                   - float(example.welfare(jnp.asarray(0.5 - step), problem))) / (2 * step)
    assert np.isfinite(float(value))
    np.testing.assert_allclose(float(grad), central, rtol=1e-4)  # central FD, step 1e-5 (issue 7's bar)
    assert example.main(["--steps", "2", "--grid", "2"]) == 0
    out = capsys.readouterr().out
    assert "gradient ascent (implicit)" in out and "grid search" in out
