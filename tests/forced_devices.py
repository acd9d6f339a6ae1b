"""The environment of a fresh Python process with several CPU devices, for tests that need them.

JAX reads the forced device count when it starts its CPU backend, so a test that needs two or four
devices runs its code in a subprocess. The process keeps the suite's own ``XLA_FLAGS``
(``conftest.py``: the classic CPU emitters) and adds the device count to them.
"""

from __future__ import annotations

import os


def forced_devices_env(count: int) -> dict:
    """``os.environ`` with ``--xla_force_host_platform_device_count=count`` added to ``XLA_FLAGS``, CPU only.

    Args:
      count: CPU devices the process will see.
    Returns:
      The environment for ``subprocess.run(..., env=...)``.
    """
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
