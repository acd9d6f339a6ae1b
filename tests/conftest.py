"""Test-wide JAX configuration.

Only one global switch: implicit rank promotion raises, so a kernel that silently broadcasts a
(K, I) array against an (I,) one is caught (as in optimistix's test suite). Precision is *not*
switched here: the library scopes float64 itself (``diffcontract._precision``), and tests that
compare at tight tolerances open ``jax.enable_x64(True)`` themselves. Warnings are already errors
(``filterwarnings`` in pyproject.toml).

Compiled executables are dropped after each test module (``jax.clear_caches``): every XLA CPU
executable holds several memory mappings, and ``pytest -m slow`` in one process compiled enough of
them to pass Linux's default ``vm.max_map_count`` (65,530) and crash inside XLA's compiler
(measured: 64,224 mappings at the 53rd slow test, then SIGABRT / SIGSEGV).
"""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_executables():
    yield
    jax.clear_caches()
