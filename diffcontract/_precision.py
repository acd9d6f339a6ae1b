"""How diffcontract uses float64.

Decision (made once, here): library entry points that promise exact figures (problem
construction, ``solve``, the verifier) run their JAX work inside ``jax.enable_x64(True)``, a
*scoped* switch that leaves the user's global setting untouched. Pure kernels (curves,
expectations, formulation) never switch precision themselves: they compute in the dtype of their
inputs, so a user who enabled x64 globally, or who wants float32 on a GPU, gets what they asked
for. The CLI enables x64 globally because it owns the process.
"""

from __future__ import annotations

import jax


def float64():
    """A context manager: the enclosed JAX work runs in float64, the global default unchanged afterwards."""
    return jax.enable_x64(True)
