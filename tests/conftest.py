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

What a later module compiles again is then read back from JAX's persistent compilation cache, one
folder per test session shared by every xdist worker and by the subprocesses tests start (through
the ``JAX_*`` environment variables, which JAX reads at import): the same ALM kernel that took 43 s
to compile loads in under 10 s (measured on the 2-core CPU). The folder is made by the first
process of a session (the xdist controller) and removed at its exit; set
``DIFFCONTRACT_TEST_JAX_CACHE`` to keep one across sessions.
"""

import atexit
import os
import shutil
import tempfile

if "DIFFCONTRACT_TEST_JAX_CACHE" not in os.environ:  # the session's first process: workers inherit it
    _cache = tempfile.mkdtemp(prefix="diffcontract-test-jax-cache-")
    os.environ["DIFFCONTRACT_TEST_JAX_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["DIFFCONTRACT_TEST_JAX_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402  (after the cache variables, which JAX reads at import)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# In case JAX was imported before this file (a plugin), set the same values through its config.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_executables():
    yield
    jax.clear_caches()
