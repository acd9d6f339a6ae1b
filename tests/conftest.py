"""Test-wide JAX configuration.

Only one global switch: implicit rank promotion raises, so a kernel that silently broadcasts a
(K, I) array against an (I,) one is caught (as in optimistix's test suite). Precision is *not*
switched here: the library scopes float64 itself (``diffcontract._precision``), and tests that
compare at tight tolerances open ``jax.enable_x64(True)`` themselves. Warnings are already errors
(``filterwarnings`` in pyproject.toml).

Compiled executables are dropped after a test module once the process holds more than half of
Linux's ``vm.max_map_count`` memory mappings (``jax.clear_caches``): every XLA CPU executable holds
several, and ``pytest -m slow`` in one process compiled enough of them to pass the default limit
(65,530) and crash inside XLA's compiler (measured: 64,224 mappings at the 53rd slow test, then
SIGABRT / SIGSEGV). Below that they are kept: a default run's worker holds a few thousand, and
dropping them after every module made each later module read its kernels back from the cache.

Solves compile fast (``DIFFCONTRACT_FAST_COMPILE=always``, ``diffcontract.fast_compile``: XLA's
backend optimization level 0, as the CLI does for small problems, here at every size: each kernel
of the suite compiles once and runs a few times) unless the variable is set: an empty cache's suite
is mostly compilation. Results are certified by their measured residuals at either level, and the
tests that compare the two levels choose their level themselves; ``DIFFCONTRACT_FAST_COMPILE=0
pytest`` runs the whole suite at XLA's default level, as the library's own default. Everything else
the suite compiles (eager operations, plain jits, the tests' own) uses XLA's classic CPU emitters,
as the package's kernels do (``diffcontract._cache.COMPILER_OPTIONS``: same results, faster
compilation), through ``XLA_FLAGS`` unless it already names ``xla_cpu_use_fusion_emitters``: an
empty cache's suite took 6 min 28 s instead of 7 min 22 s (2 cores, one run each, the same hour).

What a later module compiles again is then read back from JAX's persistent compilation cache,
shared by every xdist worker and by the subprocesses tests start (through the ``JAX_*`` environment
variables, which JAX reads at import): the same ALM kernel that took 43 s to compile loads in under
10 s (measured on the 2-core CPU). The folder is kept across sessions, so a second ``pytest`` reads
what the first compiled (cache keys hold the program, the compiler options and the JAX version, so
a changed kernel compiles afresh): ``$DIFFCONTRACT_TEST_JAX_CACHE`` when set, else
``test-jax`` in diffcontract's cache folder (``diffcontract._cache.cache_dir``), pruned to
``_CACHE_MAX_BYTES`` at the start of a session (oldest files first, the exported kernels of
``diffcontract._cache.StoredKernel`` included; JAX's own size limit needs the ``filelock``
package, which is not a dependency). ``DIFFCONTRACT_TEST_JAX_CACHE=fresh``
uses a new folder removed at the session's end: the first run on a new machine, as CI runs.
"""

import atexit
import os
import shutil
import tempfile

_CACHE_MAX_BYTES = 2 << 30
_chosen = os.environ.get("DIFFCONTRACT_TEST_JAX_CACHE", "")
if _chosen in ("", "fresh"):  # the session's first process decides: workers and subprocesses inherit it
    if _chosen == "fresh":
        _cache = tempfile.mkdtemp(prefix="diffcontract-test-jax-cache-")
        atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    else:
        # diffcontract._cache.cache_dir(), spelt out: importing it would import JAX before the variables are set.
        _home = os.environ.get("DIFFCONTRACT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "diffcontract")
        _cache = os.path.join(_home, "test-jax")
        os.makedirs(_cache, exist_ok=True)
        _files = [os.path.join(folder, name) for folder, _, names in os.walk(_cache) for name in names]
        _entries = sorted((os.stat(path).st_mtime, os.stat(path).st_size, path) for path in _files)
        _excess = sum(size for _, size, _ in _entries) - _CACHE_MAX_BYTES
        for _, size, path in _entries:  # oldest first, until the folder fits
            if _excess <= 0:
                break
            os.remove(path)
            _excess -= size
    os.environ["DIFFCONTRACT_TEST_JAX_CACHE"] = _cache
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["DIFFCONTRACT_TEST_JAX_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("DIFFCONTRACT_FAST_COMPILE", "always")  # the module docstring says why
_CLASSIC_EMITTERS = "--xla_cpu_use_fusion_emitters=false"  # as diffcontract._cache.COMPILER_OPTIONS
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):  # read when JAX starts its CPU backend
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_CLASSIC_EMITTERS}".strip()

import jax  # noqa: E402  (after the cache variables, which JAX reads at import)
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# In case JAX was imported before this file (a plugin), set the same values through its config.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"]))


def _memory_mappings_near_the_limit() -> bool:
    """Whether this process holds more than half of ``vm.max_map_count`` memory mappings (True where
    Linux's ``/proc`` cannot be read: then every module drops its executables, the safe side)."""
    try:
        with open("/proc/sys/vm/max_map_count") as limit, open("/proc/self/maps") as maps:
            return sum(1 for _ in maps) > int(limit.read()) // 2
    except (OSError, ValueError):
        return True


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_executables():
    yield
    if _memory_mappings_near_the_limit():
        jax.clear_caches()
