"""``jax.jit`` whose caches tell pytree classes apart.

From jax 0.10.0 (0.8 and 0.9 were right; 0.10.2 still is not), two ``PyTreeDef`` s whose dataclass
nodes are of *different* classes with the same fields compare equal, although their hashes differ. A
jitted function's caches (compiled calls, traced programs, the traced bodies of loops) then now and
again return what was traced for the other class: in CI a user's convex valuation was differentiated
as the package's ``Linear``; through one jit, about one look-alike class in seven got another class's
result (tests/test_pytree_classes.py). Two guards, both keyed on ``node_types`` (a tuple of classes
compares by identity):

- ``jit`` keeps one ``jax.jit`` per tuple of the arguments' node classes, each of a fresh function,
  so no cache of JAX's holds two classes under one key. Every compiled function of the package is one.
- ``ContractProblem`` carries its curves' node classes in its auxiliary data, so a structure holding a
  problem (a user's own jit, a loop's carry) tells curve classes apart.

``compiled_when_eager`` runs a small pure function through ``jit`` when it is called outside any
trace (curves, outcome weights, reward formulas): op-by-op dispatch compiles every operation anew
for each argument shape, ~50 ms apiece on CPU (a curve: a dozen operations). The test suite's ~3,300
small compilations from an empty cache (2026-12-04) came mostly from such eager calls; this cut the
curve and problem tests' time from an empty cache by ~15 % (63 -> 54 s in one process).
Kernels worth keeping between processes (solver steps, a pass over an outcome table) are
``_cache.kernel_jit`` instead: compiled once per machine, not once per process.
"""

from __future__ import annotations

import functools

import jax
from jax._src.core import trace_state_clean  # False inside any trace, even with concrete arguments

_MEMO_SIZE = 4096  # structures whose classes are remembered (a solve meets a few dozen)


@functools.lru_cache(maxsize=_MEMO_SIZE)  # keyed on the full hash as well, which tells classes apart
def node_types(treedef) -> tuple[type, ...]:
    """The classes of every node of a structure, leaves excluded, in pre-order.

    Args:
      treedef: a ``jax.tree_util.PyTreeDef``.
    Returns:
      Classes, e.g. (tuple, ContractProblem, GeneralizationBound, Linear).
    """
    found, stack = [], [treedef]
    while stack:
        node = stack.pop()
        data = node.node_data()  # (class, auxiliary data); None for a leaf
        if data is not None:
            found.append(data[0])
            stack.extend(reversed(node.children()))
    return tuple(found)


class jit:  # noqa: N801  (used as jax.jit is)
    """``jax.jit(fun, **options)``, one per tuple of the arguments' node classes (module docstring).

    Args:
      fun: the function.  options: ``jax.jit``'s (``static_argnums``, ``static_argnames``,
        ``compiler_options``, ...).
    """

    def __init__(self, fun, **options):
        self._fun, self._options, self._by_classes = fun, options, {}
        functools.update_wrapper(self, fun)

    def _for(self, args, kwargs):
        """The ``jax.jit`` of ``fun`` for these arguments' node classes (made on first use)."""
        classes = node_types(jax.tree_util.tree_structure((args, kwargs)))
        jitted = self._by_classes.get(classes)
        if jitted is None:
            fun = self._fun

            @functools.wraps(fun)
            def one_set_of_classes(*args, **kwargs):  # a fresh function: caches of its own
                return fun(*args, **kwargs)

            jitted = self._by_classes[classes] = jax.jit(one_set_of_classes, **self._options)
        return jitted

    def __call__(self, *args, **kwargs):
        return self._for(args, kwargs)(*args, **kwargs)

    def lower(self, *args, **kwargs):
        """``jax.jit(fun).lower``."""
        return self._for(args, kwargs).lower(*args, **kwargs)

    def _cache_size(self) -> int:
        """Compiled executables held, over every set of classes."""
        return sum(jitted._cache_size() for jitted in self._by_classes.values())


def compiled_when_eager(fun=None, *, static_argnames: tuple[str, ...] = ()):
    """A pure function (or method: ``self`` a pytree) run as one compiled program when called outside
    any trace; usable as ``@compiled_when_eager`` or ``@compiled_when_eager(static_argnames=...)``.

    Called eagerly, each operation of a formula compiles on its own for every new argument shape
    (about 50 ms each on CPU: a curve's dozen operations cost ~0.5 s per shape in a verifier or a
    plot); through ``jit`` the whole formula compiles once per class and shape. Inside a trace (a
    solver's kernel, a user's ``jit``, ``grad`` or ``vmap``) the function is traced inline as
    written, so the programs that contain it are unchanged.

    Args:
      fun: pure JAX in its arguments' leaves.  static_argnames: arguments that are Python values
        (strings, flags), as for ``jax.jit``.
    Returns:
      The function, with ``fun``'s name and docstring.
    """
    if fun is None:
        return functools.partial(compiled_when_eager, static_argnames=static_argnames)
    jitted = jit(fun, static_argnames=static_argnames)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        if trace_state_clean():
            return jitted(*args, **kwargs)
        return fun(*args, **kwargs)

    return wrapped
