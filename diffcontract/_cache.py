"""Where diffcontract keeps files between processes, and JAX's persistent compilation cache there.

A one-off solve is mostly compilation: a fresh ``diffcontract solve`` spends over 99 % of its time
compiling kernels that a warm process runs in milliseconds (issue 18's measurements). JAX can keep
compiled executables on disk; ``enable_compilation_cache`` points it at
``cache_dir() / "jax"`` when ``diffcontract`` is imported, so the second process reads what the
first compiled (measured: a cold ALM solve 43 s, the same solve in a second process 9.8 s, on the
2-core CPU). Every kernel is cached (minimum compile time 0: most of ours compile in well under the
default one second, and together they are the whole cold start).

It changes nothing for a user who chose otherwise: when ``jax_compilation_cache_dir`` is already
set (by ``jax.config`` or ``JAX_COMPILATION_CACHE_DIR``, as the test suite does) it is left alone,
and ``DIFFCONTRACT_JAX_CACHE=0`` turns the cache off.

The package's kernels are compiled with ``COMPILER_OPTIONS`` (``kernel_jit``): XLA's CPU compiler
builds them 30-45 % faster with its classic elemental emitters than with its MLIR fusion emitters
(measured on the 2-core CPU, alternating runs: the Sec. 6.2 ALM kernel 13.3-13.6 s -> 7.4-9.4 s,
the exact solver's start search 2.2-2.3 s -> 1.4-1.5 s), with bit-identical results and the same
run time. It is an option of the CPU compiler only (other platforms ignore it), given per kernel,
so a user's own JAX code is compiled as they configured it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

OPT_OUT = "DIFFCONTRACT_JAX_CACHE"


def cache_dir() -> Path:
    """Folder for cached files (tables, compiled kernels): ``$DIFFCONTRACT_CACHE`` or ``~/.cache/diffcontract``."""
    path = Path(os.environ.get("DIFFCONTRACT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "diffcontract"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def enable_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at ``cache_dir() / "jax"`` unless the user chose.

    Returns:
      The folder used, or None when the cache was left as it was (opted out, already set, or the
      folder cannot be created).
    """
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return None
    try:
        folder = cache_dir() / "jax"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(folder)


COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}  # the module docstring says why


def kernel_jit(fun, **jit_options):
    """``jax.jit(fun, **jit_options)`` compiled with ``COMPILER_OPTIONS`` (the package's kernels)."""
    return jax.jit(fun, compiler_options=COMPILER_OPTIONS, **jit_options)
