"""Test-wide JAX configuration.

Only one global switch: implicit rank promotion raises, so a kernel that silently broadcasts a
(K, I) array against an (I,) one is caught (as in optimistix's test suite). Precision is *not*
switched here: the library scopes float64 itself (``diffcontract._precision``), and tests that
compare at tight tolerances open ``jax.enable_x64(True)`` themselves. Warnings are already errors
(``filterwarnings`` in pyproject.toml).
"""

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")
