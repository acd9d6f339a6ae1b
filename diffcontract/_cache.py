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
