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

Even with every executable on disk, a warm process traced and lowered each kernel again before JAX
could look the executable up: about 2.3 s of a 3.4 s one-off ALM solve of Sec. 6.2 (its solve took
1.47 s, of which tracing 1.35 s). ``StoredKernel`` keeps each kernel's compiled executable
(``jax.experimental.serialize_executable``) in ``diffcontract-kernels/`` inside the compilation
cache folder, one file per call signature and option set, so a later process loads it and runs it
with no tracing, lowering or cache-key hashing. It first kept the exported program (``jax.export``)
and let JAX's cache find the executable: a warm process then still lowered each program's call and
hashed it (0.49 s and 0.64 s of a 1.3-1.8 s warm ALM solve), and a first process traced and lowered
the kernel twice (export, then the exported call) and wrote it twice (its program, JAX's entry):
``benchmarks/cold_start.py``, Sec. 6.2 ALM against ``import jax``, warm 2.4x -> 1.4x, empty cache
5.4x -> 4.3x (same machine, consecutive runs). An executable is only reused when everything that
shaped it is in its key: the package's source, the JAX version, backend and host CPU, the
configuration that changes tracing, the arguments' structure with its static data, their shapes
and dtypes, and the static arguments; anything else is the plain ``jax.jit``. Kept executables are
not also written to JAX's cache.

Fast compilation. Most of a first process's time is LLVM optimizing kernels that then run for
milliseconds: the Sec. 6.2 ALM kernel compiles in 5.5-7.7 s at XLA's default backend optimization
level and in 2.8-3.5 s at level 0 (``FAST_COMPILE_OPTIONS``), and runs in 38 ms against 72 ms; a
batch of the three Sec. 6.2 scenarios in 0.09 s against 0.19 s (alternating runs on the 2-core
CPU; at I = 9, N = 10: 9.1 s -> 3.7 s to compile, 1.6 s -> 2.6 s to run). That trade suits a
one-off process and not a loop, so it is a choice: within ``fast_compile()`` (the CLI runs in it:
one command is one job; ``$DIFFCONTRACT_FAST_COMPILE`` = 1 or 0 sets the default of any process),
a solve (one problem, a batch, the complete-information benchmark, a sensitivity) whose pass over
the outcomes is estimated at ``FAST_COMPILE_PASS_SECONDS`` or less (``short_passes``; at any length
with ``$DIFFCONTRACT_FAST_COMPILE=always``, which also compiles fast a kernel called outside a solve,
as the branch and bound's box bounds) compiles its kernels with ``FAST_COMPILE_OPTIONS``: a few
hundred passes then cost well under a second more, and the first process saves seconds. Level 0
rounds differently from the default (no fused multiply-adds): results agree to the solvers'
tolerances, not bit for bit, and each level is its own entry in the compilation cache.
``kernel_jit(..., always_fast=True)`` marks a kernel that is small whatever the problem (the
reservation utilities): always compiled fast, so its results do not depend on the choice.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import hashlib
import importlib.metadata
import inspect
import io
import math
import os
import pickle
import platform
import re
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import serialize_executable
from jax._src import config as jax_config  # trace_context: the flags JAX's own jit cache keys on
from jax._src.core import trace_state_clean  # False inside a user's jit, even for concrete arguments

from ._jit import jit

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
    if not environment_flag(OPT_OUT, True) or jax.config.jax_compilation_cache_dir:
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
FAST_COMPILE_OPTIONS = {**COMPILER_OPTIONS, "xla_backend_optimization_level": 0}  # "Fast compilation" above
FAST_COMPILE_PASS_SECONDS = 2.5e-4  # an estimated pass at or under this compiles fast within fast_compile()
FAST_COMPILE_ENV = "DIFFCONTRACT_FAST_COMPILE"
FAST_COMPILE_ALWAYS = "always"  # $FAST_COMPILE_ENV value: every solve compiles fast, whatever its passes
_FAST_CHOSEN = contextvars.ContextVar("diffcontract_fast_compile", default=None)  # None: $FAST_COMPILE_ENV
_FAST_NOW = contextvars.ContextVar("diffcontract_short_passes", default=None)  # short_passes' answer; None outside
_OPTION_SETS = (COMPILER_OPTIONS, FAST_COMPILE_OPTIONS)  # [fast]
_STORE_FOLDER = "diffcontract-kernels"  # kept executables, inside JAX's compilation cache folder
_OPTION_SUFFIXES = (".exe", ".fast.exe")  # [fast]: a kept executable's file is "<key><suffix>"
_STORE_MAX_BYTES = 1 << 30  # past this, the least recently used executables are removed
_LOWERED_KEPT = 4  # traced and lowered programs a kernel keeps in memory (StoredKernel._load)
_TRUSTED_MODULES = ("diffcontract", "builtins", "numpy", "jax", "jaxlib", "collections", "enum", "functools",
                    "copyreg", "ml_dtypes")
_TRACED_LIBRARIES = ("diffcontract", "jax", "jaxlib", "numpy", "ml_dtypes", "optax", "flax", "chex", "scipy")


def environment_flag(name: str, default: bool) -> bool:
    """An on/off environment variable: "0", "false", "no", "off" (any case) are off; unset is ``default``."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def fast_compile(enabled: bool = True):
    """Within this context, a solve of a small problem compiles its kernels about twice as fast, and
    they run about twice as slow (XLA's backend optimization level 0).

    "Small": one pass over the outcomes estimated at ``FAST_COMPILE_PASS_SECONDS`` (0.25 ms) or less
    on a 2-core CPU; Sec. 6.2 (N = 10, I = 5) is 0.06 ms, and its ALM kernel then compiles in ~3 s
    instead of ~6 s and runs in 72 ms instead of 38 ms. The better trade for a one-off process (the
    CLI runs each command in ``fast_compile()``); a loop of solves is faster without it. Outside any
    such context ``$DIFFCONTRACT_FAST_COMPILE`` (1 or 0) decides; unset: off. ``always`` chooses it
    too, and for a problem of any size wherever it is chosen (the test suite's setting: every kernel
    compiles once and runs a few times). Results agree with the default compilation to the solvers'
    tolerances, not bit for bit (no fused multiply-adds).

    Args:
      enabled: False turns it off within the context (inside an outer ``fast_compile()``, say).

    Example::

        with diffcontract.fast_compile():
            solution = diffcontract.solve(problem)
    """
    token = _FAST_CHOSEN.set(bool(enabled))
    try:
        yield
    finally:
        _FAST_CHOSEN.reset(token)


@contextlib.contextmanager
def short_passes(seconds_per_pass: float):
    """Within this context, the stored kernels compile with ``FAST_COMPILE_OPTIONS`` when fast compilation
    is chosen (``fast_compile``) and one pass over the outcomes is estimated at
    ``FAST_COMPILE_PASS_SECONDS`` or less, or at any length when ``$DIFFCONTRACT_FAST_COMPILE`` is
    ``always``.

    Args:
      seconds_per_pass: the caller's estimate (``BackendPlan.seconds_per_pass``, ``planner.pass_seconds``),
        seconds.
    """
    token = _FAST_NOW.set(_compiles_fast(seconds_per_pass))
    try:
        yield
    finally:
        _FAST_NOW.reset(token)


def _compiles_fast(seconds_per_pass: float) -> bool:
    """The rule: fast compilation is chosen (the innermost ``fast_compile`` context, else the
    environment) and the pass is short, or the environment says ``always``."""
    chosen = _FAST_CHOSEN.get()
    chosen = environment_flag(FAST_COMPILE_ENV, False) if chosen is None else chosen
    always = os.environ.get(FAST_COMPILE_ENV, "").strip().lower() == FAST_COMPILE_ALWAYS
    return chosen and (always or seconds_per_pass <= FAST_COMPILE_PASS_SECONDS)


def _compiles_fast_now() -> bool:
    """Whether a stored kernel called now compiles with ``FAST_COMPILE_OPTIONS``: as ``short_passes``
    decided inside one; outside (a kernel called on its own), as for a pass of unknown length."""
    now = _FAST_NOW.get()
    return _compiles_fast(math.inf) if now is None else now


def kernel_jit(fun, *, stored: bool = True, always_fast: bool = False, **jit_options):
    """``_jit.jit(fun, **jit_options)`` compiled with ``COMPILER_OPTIONS`` (the package's kernels).

    Args:
      fun: the kernel.  stored: keep its executables between processes (``StoredKernel``); False
        for a kernel that closes over values its arguments do not show (a device mesh; always
        compiled with ``COMPILER_OPTIONS``).  always_fast: compile it with ``FAST_COMPILE_OPTIONS``
        always (a kernel small whatever the problem); False: as ``short_passes`` says at each call.
      jit_options: ``jax.jit`` options (``static_argnums``, ``static_argnames``).
    Returns:
      A callable with ``jax.jit``'s behaviour (``StoredKernel`` when ``stored``, else ``_jit.jit``).
    """
    if not stored:
        return jit(fun, compiler_options=COMPILER_OPTIONS, **jit_options)
    caller = sys._getframe(1)  # the definition site tells two wrappers of one function apart (a vmap)
    return StoredKernel(fun, jit_options, f"{caller.f_globals.get('__name__')}:{caller.f_lineno}", always_fast)


class StoredKernel:
    """A jitted kernel whose compiled executables are kept on disk between processes (module docstring).

    Plain ``jax.jit`` (nothing kept) when the cache is off or is not a local folder; inside a user's
    trace (tracer arguments, or concrete ones under a ``jit``: the kernel is inlined into the caller's
    program); when an object in the arguments' structure or static arguments comes from outside
    ``_TRUSTED_MODULES`` (its code is not in the key: a user's own curve class); or when the program
    spans several devices (``shard_map`` over a mesh: its call needs that mesh). An executable that
    cannot be serialized (a host callback) runs from memory in its process; one read from disk that
    fails on its first call is removed and the plain jit runs.
    For the package's own kernels: the key holds the package's source, not a caller's.

    Args:
      fun: the kernel.  jit_options: its ``static_argnums`` / ``static_argnames``.  site: "module:line"
        of the definition (two wrappers of one function, e.g. a ``vmap``, are different kernels).
      always_fast: always compiled with ``FAST_COMPILE_OPTIONS``; False: as ``short_passes`` says.
    """

    def __init__(self, fun, jit_options: dict, site: str, always_fast: bool = False):
        self._fun, self._always_fast = fun, always_fast
        self.jitted = jit(fun, compiler_options=COMPILER_OPTIONS, **jit_options)
        self._fast_jitted = jit(fun, compiler_options=FAST_COMPILE_OPTIONS, **jit_options)
        # Compiler options are refused on a jit nested in another trace (it is inlined there anyway).
        self._nested = jit(fun, **jit_options)
        self._name = f"{getattr(fun, '__qualname__', type(fun).__name__)}@{site}"
        nums, names = jit_options.get("static_argnums", ()), jit_options.get("static_argnames", ())
        self._static_names = (names,) if isinstance(names, str) else tuple(names)
        try:  # a static name passed by position is static too (as jax.jit reads it)
            parameters = list(inspect.signature(fun).parameters)
        except (TypeError, ValueError):
            parameters = []
        self._static_nums = {nums} if isinstance(nums, int) else set(nums)
        self._static_nums |= {parameters.index(n) for n in self._static_names if n in parameters}
        self._calls: dict[tuple[str, bool], list | None] = {}  # (key, fast) -> [Compiled, out treedef, verified]
        self._lowered: collections.OrderedDict[str, tuple] = collections.OrderedDict()  # key -> (Lowered, out treedef)
        self._keys: dict[tuple, str | None] = {}  # call signature -> key, per process
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        tree, static, leaves = self._split(args, kwargs)
        if not trace_state_clean() or any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self._nested(*args, **kwargs)  # inside a user's jit, grad or vmap: inlined there
        fast = self._always_fast or _compiles_fast_now()  # bool: an index into the option sets
        jitted = self._fast_jitted if fast else self.jitted
        key, entry = self._entry(tree, static, leaves, fast)
        if entry is None:  # not kept: the cache is off, a foreign object, over several devices, a file that failed
            return jitted(*args, **kwargs)
        if isinstance(entry[0], concurrent.futures.Future):  # compiling in another thread (``prepare``)
            entry[0] = entry[0].result()
            if entry[0] is None:  # over several devices
                self._calls[key, fast] = None
                return jitted(*args, **kwargs)
        compiled, out_tree, verified = entry
        try:
            out = compiled(*leaves)
            if not verified:  # a file's first call: its errors surface when it has run
                jax.block_until_ready(out)
        except Exception:  # arguments on another device, a damaged file or one another machine wrote
            if not verified and not _on_other_devices(compiled, leaves):
                self._calls[key, fast] = None
                _kept_file(_store_folder(), key, fast).unlink(missing_ok=True)
            return jitted(*args, **kwargs)
        entry[2] = True
        return jax.tree_util.tree_unflatten(out_tree, out)

    def prepare(self, *args, executor: concurrent.futures.Executor | None = None, **kwargs):
        """Make the kernel ready for a call with these arguments, without running it: read its kept
        executable, or trace, lower and compile it, the compilation in ``executor`` when one is given
        (XLA compiles without holding Python's lock: a thread compiles this kernel while the caller
        traces and compiles the next one).

        Args:
          args, kwargs: as for a call; array leaves may be ``jax.ShapeDtypeStruct``.
          executor: optional ``concurrent.futures.Executor`` for the compilation.
        Returns:
          The outputs as a pytree of ``jax.ShapeDtypeStruct``; None when the kernel is not kept (the
          cache is off, a foreign object, a program over several devices: nothing prepared).
        """
        tree, static, leaves = self._split(args, kwargs)
        fast = self._always_fast or _compiles_fast_now()
        key, entry = self._entry(tree, static, leaves, fast, executor)
        if entry is None:
            return None
        stage = self._lowered[key][0] if key in self._lowered else entry[0]  # Lowered, or Compiled from a file
        return jax.tree_util.tree_unflatten(entry[1], jax.tree_util.tree_leaves(stage.out_info))

    def _split(self, args, kwargs):
        """(treedef, static arguments by name or position, leaves) of a call."""
        static = {k: kwargs[k] for k in self._static_names if k in kwargs}
        static.update({k: args[k] for k in self._static_nums if k < len(args)})
        dynamic = tuple(a for k, a in enumerate(args) if k not in static)
        leaves, tree = jax.tree_util.tree_flatten((dynamic, {k: v for k, v in kwargs.items() if k not in static}))
        return tree, static, leaves

    def _entry(self, tree, static: dict, leaves, fast: bool, executor=None):
        """(key, [Compiled or its Future, out treedef, verified]) of a call; the entry is None when the call
        is not kept (the cache is off, a foreign object, a program over several devices)."""
        folder = _store_folder()
        key = None if folder is None else self._key(folder, tree, static, leaves)
        if key is None:
            return None, None
        if (key, fast) not in self._calls:  # the file's path is built here only: not on every call
            self._calls[key, fast] = self._load(_kept_file(folder, key, fast), key, fast, tree, static, leaves,
                                                executor)
        return key, self._calls[key, fast]

    def __getattr__(self, name: str):
        """``lower`` and the rest: those of the plain jit (``_jit.jit``)."""
        if name in ("jitted", "_fun"):  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.jitted, name)

    def _key(self, folder: Path, tree, static: dict, leaves) -> str | None:
        """The store key of this call (None: not storable). Its pickle and hash (~45 us) are computed
        once per call signature and process: a host loop calls kernels hundreds of times (the exact
        solver: +35 % on a warm Sec. 6.2 solve without this memo)."""
        config = _tracing_config()
        try:
            signature = (folder, tree, tuple(static.items()), tuple(map(_spec, leaves)), config)
            hash(signature)
        except TypeError:  # an unhashable static value: no memo
            return _store_key(self._name, tree, static, leaves, config)
        if signature not in self._keys:
            self._keys[signature] = _store_key(self._name, tree, static, leaves, config)
        return self._keys[signature]

    def _cache_size(self) -> int:
        """Compiled executables held (``jax.jit``'s ``_cache_size`` over the plain jits, and the kept
        executables, over both option sets)."""
        return sum(jitted._cache_size() for jitted in (self.jitted, self._fast_jitted)) + sum(
            entry is not None for entry in self._calls.values())

    def _load(self, path: Path, key: str, fast: bool, tree, static: dict, leaves, executor=None) -> list | None:
        """[Compiled executable (or its Future, compiling in ``executor``), output treedef, verified] of one
        call signature and option set, read from ``path`` or compiled and written there; None when it
        cannot be kept (several devices)."""
        try:
            digest, payload = pickle.loads(path.read_bytes())
            if hashlib.sha256(payload).hexdigest() != digest:
                raise ValueError("damaged")
            serialized, in_tree, flat_out_tree, out_tree, device_ids = pickle.loads(payload)
            if _LAPACK_CALL.search(serialized):  # most programs call none: ~0.2 s saved in their process
                _load_lapack()
            # This process's own devices: jax.devices() spans every process of a jax.distributed run, and a
            # file naming another process's device is not loaded (KeyError: compiled afresh).
            devices = {device.id: device for device in jax.local_devices()}
            compiled = serialize_executable.deserialize_and_load(
                serialized, in_tree, flat_out_tree, execution_devices=[devices[i] for i in device_ids])
            os.utime(path)  # used: the last to be pruned
            return [compiled, out_tree, False]
        except Exception:  # absent, unreadable, half-written or another JAX's: compile afresh
            pass
        if key not in self._lowered:  # the latest few: another option set compiles without a new trace
            self._lowered[key] = self._lower(tree, static, leaves)
            while len(self._lowered) > _LOWERED_KEPT:  # each holds its MLIR module
                self._lowered.popitem(last=False)
        lowered, out_tree = self._lowered[key]
        if executor is not None:
            return [executor.submit(_compile, path, lowered, out_tree, fast), out_tree, True]
        compiled = _compile(path, lowered, out_tree, fast)
        return None if compiled is None else [compiled, out_tree, True]

    def _lower(self, tree, static: dict, leaves):
        """The kernel as a function of the flat leaves, traced and lowered for their shapes and dtypes.
        Returns (jax.stages.Lowered, out treedef)."""
        out_trees = []

        def flat(*flat_leaves):
            dynamic, kwargs = jax.tree_util.tree_unflatten(tree, flat_leaves)
            kwargs = {**kwargs, **{k: v for k, v in static.items() if isinstance(k, str)}}
            args, rest = [], iter(dynamic)
            for k in range(len(dynamic) + sum(isinstance(s, int) for s in static)):
                args.append(static[k] if k in static else next(rest))
            out, out_tree = jax.tree_util.tree_flatten(self._fun(*args, **kwargs))
            out_trees.append(out_tree)
            return out

        flat = functools.wraps(self._fun)(flat)
        flat.__name__ = f"stored_{flat.__name__}"  # in JAX's logs; never the name of a plain jit's program
        specs = [jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.result_type(x), weak_type=_weak(x)) for x in leaves]
        lowered = jax.jit(flat).lower(*specs)
        return lowered, out_trees[0]


def _compile(path: Path, lowered, out_tree, fast: bool):
    """Compile ``lowered`` (one call signature of a ``StoredKernel``) with one option set and write its
    executable to ``path`` (kept in memory only when it does not serialize). Returns the Compiled, or
    None when the program spans several devices."""
    hits = _JAX_CACHE_HITS[0]
    with jax_config.persistent_cache_min_compile_time_secs(math.inf):  # kept here: not JAX's cache too
        compiled = lowered.compile(compiler_options=_OPTION_SETS[fast])
    shardings = jax.tree_util.tree_leaves((compiled.input_shardings, compiled.output_shardings))
    devices = set().union(*(sharding.device_set for sharding in shardings))
    if len(devices) != 1:  # a program over several devices: its call needs the mesh
        return None
    if _JAX_CACHE_HITS[0] != hits:  # maybe read from JAX's cache: it would serialize without its code
        return compiled
    try:
        serialized, in_tree, flat_out_tree = serialize_executable.serialize(compiled)
        payload = pickle.dumps((serialized, in_tree, flat_out_tree, out_tree, [d.id for d in devices]))
    except Exception:  # a host callback, closed-over constants, an output that does not pickle
        return compiled
    _write_atomically(path, pickle.dumps((hashlib.sha256(payload).hexdigest(), payload)))
    _prune(path.parent, _STORE_MAX_BYTES)
    return compiled


def _kept_file(folder: Path, key: str, fast: bool) -> Path:
    """The file of one call signature's executable for one option set."""
    return folder / f"{key}{_OPTION_SUFFIXES[fast]}"


def _on_other_devices(compiled, leaves) -> bool:
    """Whether an argument is committed to another device than the one ``compiled`` runs on (its call
    then fails, and the plain jit runs where the argument is)."""
    expected = jax.tree_util.tree_leaves(compiled.input_shardings)
    return any(isinstance(x, jax.Array) and x.committed and x.sharding.device_set != sharding.device_set
               for x, sharding in zip(leaves, expected))


# JAX's persistent-cache hits in this process. An executable JAX read from its cache serializes
# without its machine code: loaded in another process it fails ("Function iota.7_kernel not found",
# jax 0.10.2), so a compilation that hit JAX's cache is never kept (``_compile``). Kept
# kernels' programs are named "stored_..." and never written to JAX's cache, so none hits.
_JAX_CACHE_HITS = [0]


def _count_jax_cache_hits(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _JAX_CACHE_HITS[0] += 1


jax.monitoring.register_event_listener(_count_jax_cache_hits)


def _store_folder() -> Path | None:
    """The kept executables' folder, inside JAX's compilation cache folder; None when that cache is off or
    is not a local folder (``gs://...``), or jit is disabled."""
    folder = jax.config.jax_compilation_cache_dir
    if not folder or "://" in folder or jax.config.jax_disable_jit:
        return None
    return Path(folder) / _STORE_FOLDER


# A LAPACK call's target in a serialized executable (lapack_dpotrf_ffi, ...; jax 0.8-0.10). Names in its
# debug locations may match too (a function "lapack_solve"): LAPACK is then loaded for nothing.
_LAPACK_CALL = re.compile(rb"lapack_[sdcz][a-z]")


@functools.cache
def _load_lapack() -> None:
    """Initialize JAX's CPU LAPACK kernels, once per process. JAX does it when it first lowers a LAPACK
    call; an executable read from disk lowers none, and with jax 0.8.0 a program's LAPACK calls then
    crashed the process (segmentation fault in the Sec. 6.2 ALM kernel). Called for executables that
    call LAPACK."""
    try:
        from jaxlib import lapack  # what JAX's lowering calls (it loads scipy's LAPACK: ~0.2 s)
        lapack.prepare_lapack_call("potrf_ffi", np.dtype(np.float64))
    except (ImportError, AttributeError):  # another jaxlib layout
        jax.jit(jnp.linalg.cholesky).lower(jax.ShapeDtypeStruct((2, 2), np.float32))


def _spec(x) -> tuple:
    """(type, shape, dtype, weak) of a leaf: what its program depends on (hashable, fast)."""
    if isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)):
        return type(x), x.shape, x.dtype, bool(getattr(x, "weak_type", False))
    return type(x), ()


def _tracing_config() -> tuple:
    """The configuration a kernel's program depends on: JAX's own trace context (what its jit cache
    keys on: x64, promotion rules, PRNG flags, default device, ...), less the axis environment (empty
    outside a trace), and the PRNG implementation."""
    context = jax_config.trace_context()  # present in every supported JAX (>= 0.8)
    return tuple(v for v in context if type(v).__name__ != "AxisEnv") + (jax.config.jax_default_prng_impl,)


def _weak(x) -> bool:
    """Whether a leaf is weakly typed (a Python number, or a weak-typed array)."""
    return (isinstance(x, (int, float, complex)) and not isinstance(x, bool)) or bool(getattr(x, "weak_type", False))


class _TrustedPickler(pickle.Pickler):
    """Pickles a call's structure and static arguments; refuses any object from an untrusted module
    (its code, which the key does not hold, could change between processes). No memo (``fast``): the
    bytes depend on values only, not on which of them are one object (a structure read back from a
    kept executable holds its own copy of a string the caller's structure shares: a key of its own,
    and the kernel it was passed to compiled again in the second process)."""

    def __init__(self, file, protocol=None):
        super().__init__(file, protocol)
        self.fast = True

    def reducer_override(self, obj):
        module = getattr(obj, "__module__", None) if isinstance(obj, type) or callable(obj) else type(obj).__module__
        if module is not None and module.split(".")[0] not in _TRUSTED_MODULES:
            raise pickle.PicklingError(f"untrusted {module}")
        return NotImplemented


def _store_key(name: str, tree, static: dict, leaves, config: tuple) -> str | None:
    """Hex key of one call (None: not storable, the call stays a plain ``jax.jit``)."""
    code = _code_fingerprint()
    if code is None or not all(isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct, bool, int,
                                              float, complex)) for x in leaves):
        return None
    buffer = io.BytesIO()
    try:
        _TrustedPickler(buffer, protocol=4).dump((tree, sorted(static.items(), key=lambda kv: str(kv[0]))))
    except Exception:
        return None
    avals = [(np.shape(x), str(jax.dtypes.result_type(x)), _weak(x)) for x in leaves]
    text = repr((code, _machine(), name, config, avals))
    return hashlib.sha256(text.encode() + buffer.getvalue()).hexdigest()


@functools.cache
def _code_fingerprint() -> str | None:
    """sha256 of the package's Python sources and of the versions of every library a kernel traces
    through (a changed kernel or library is never read from the store); None when no source file is
    found (a zipped or bytecode-only install: the store is off)."""
    sources = sorted(Path(__file__).parent.rglob("*.py"))
    if not sources:
        return None
    digest = hashlib.sha256()
    for path in sources:
        digest.update(path.read_bytes())
    for library in _TRACED_LIBRARIES:
        try:
            digest.update(f"{library}=={importlib.metadata.version(library)};".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library} absent;".encode())
    return digest.hexdigest()


@functools.cache
def _machine() -> str:
    """What a kept executable is machine code for: the default backend's platform, its version and
    device kind, the host CPU's architecture and features (``/proc/cpuinfo`` where there is one;
    a cache folder may be shared by several machines), and the process's index in a
    ``jax.distributed`` run (an executable names its device by a global id, and each process owns
    its own devices: process 1's first CPU is not device 0)."""
    device = jax.local_devices()[0]
    features = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            features = next((line for line in cpuinfo if line.startswith(("flags", "Features"))), features)
    except OSError:
        pass
    return (f"{device.platform} {device.client.platform_version} {device.device_kind} {platform.machine()} {features} "
            f"process {jax.process_index()}")


def _prune(folder: Path, max_bytes: int) -> None:
    """Remove the least recently used programs in ``folder`` until it holds at most ``max_bytes``
    (every upgrade of the package or of JAX starts a new set of programs)."""
    try:
        files = sorted((entry.stat().st_mtime, entry.stat().st_size, entry.path) for entry in os.scandir(folder)
                       if entry.name.endswith(".exe"))
        excess = sum(size for _, size, _ in files) - max_bytes
        for _, size, path in files:
            if excess <= 0:
                break
            os.remove(path)
            excess -= size
    except OSError:  # another process pruned first, or a read-only folder
        pass


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file (parallel processes never read half a file)."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError:  # a read-only or full cache: the kernel runs, it is only not kept
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
