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
1.47 s, of which tracing 1.35 s). ``StoredKernel`` keeps each kernel's exported program
(``jax.export``, StableHLO serialized with flatbuffers) in ``diffcontract-kernels/`` inside the
compilation cache folder, so a later process deserializes it and compiles it (a cache hit) without
tracing: the same solve took 0.69 s (``benchmarks/cold_start.py``, warm, against ``import jax``: ALM
2.7x -> 1.8x, exact 2.3x -> 2.2x; the exact solver's host loop traces little). A stored program is only reused when
everything that shaped it is in its key: the package's source, the JAX version and backend, the
configuration that changes tracing, the arguments' structure with its static data, their shapes and
dtypes, and the static arguments; anything else is the plain ``jax.jit``.

Fast compilation. Most of a first process's time is LLVM optimizing kernels that then run for
milliseconds: the Sec. 6.2 ALM kernel compiles in 5.5-7.7 s at XLA's default backend optimization
level and in 2.8-3.5 s at level 0 (``FAST_COMPILE_OPTIONS``), and runs in 38 ms against 72 ms; a
batch of the three Sec. 6.2 scenarios in 0.09 s against 0.19 s (alternating runs on the 2-core
CPU; at I = 9, N = 10: 9.1 s -> 3.7 s to compile, 1.6 s -> 2.6 s to run). That trade suits a
one-off process and not a loop, so it is a choice: within ``fast_compile()`` (the CLI runs in it:
one command is one job; ``$DIFFCONTRACT_FAST_COMPILE`` = 1 or 0 sets the default of any process),
a solve (one problem, a batch, the complete-information benchmark, a sensitivity) whose pass over
the outcomes is estimated at ``FAST_COMPILE_PASS_SECONDS`` or less (``short_passes``) compiles its
kernels with ``FAST_COMPILE_OPTIONS``: a few hundred passes then cost well under a second more,
and the first process saves seconds. Level 0 rounds differently from the default (no fused
multiply-adds): results agree to the solvers' tolerances, not bit for bit, and each level is its
own entry in the compilation cache. ``kernel_jit(..., always_fast=True)`` marks a kernel that is
small whatever the problem (the reservation utilities): always compiled fast, so its results do
not depend on the choice.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib.metadata
import inspect
import io
import os
import pickle
import re
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import export as jax_export
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
_FAST_CHOSEN = contextvars.ContextVar("diffcontract_fast_compile", default=None)  # None: $FAST_COMPILE_ENV
_FAST_NOW = contextvars.ContextVar("diffcontract_short_passes", default=False)  # inside short_passes, if chosen
_STORE_FOLDER = "diffcontract-kernels"  # exported kernels, inside JAX's compilation cache folder
_STORE_MAX_BYTES = 1 << 30  # past this, the least recently used programs are removed (I = 19: ~18 MB each)
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
    such context ``$DIFFCONTRACT_FAST_COMPILE`` (1 or 0) decides; unset: off. Results agree with the
    default compilation to the solvers' tolerances, not bit for bit (no fused multiply-adds).

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
    ``FAST_COMPILE_PASS_SECONDS`` or less.

    Args:
      seconds_per_pass: the caller's estimate (``BackendPlan.seconds_per_pass``, ``planner.pass_seconds``),
        seconds.
    """
    chosen = _FAST_CHOSEN.get()
    chosen = environment_flag(FAST_COMPILE_ENV, False) if chosen is None else chosen
    token = _FAST_NOW.set(chosen and seconds_per_pass <= FAST_COMPILE_PASS_SECONDS)
    try:
        yield
    finally:
        _FAST_NOW.reset(token)


def kernel_jit(fun, *, stored: bool = True, always_fast: bool = False, **jit_options):
    """``_jit.jit(fun, **jit_options)`` compiled with ``COMPILER_OPTIONS`` (the package's kernels).

    Args:
      fun: the kernel.  stored: keep its traced program between processes (``StoredKernel``); False
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
    """A jitted kernel whose exported program is kept on disk between processes (module docstring).

    Plain ``jax.jit`` (nothing kept) when the cache is off or is not a local folder; inside a user's
    trace (tracer arguments, or concrete ones under a ``jit``: the kernel is inlined into the caller's
    program); when an object in the arguments' structure or static arguments comes from outside
    ``_TRUSTED_MODULES`` (its code is not in the key: a user's own curve class); or when the program
    cannot be exported (a host callback), spans several devices (``shard_map`` over a mesh: its call
    needs that mesh), or a program read from disk fails on its first call (the file is removed).
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
        self._loaded: dict[str, list | None] = {}  # key -> [(default, fast) calls, out treedef, verified]
        self._keys: dict[tuple, str | None] = {}  # call signature -> key, per process
        functools.update_wrapper(self, fun)

    def __call__(self, *args, **kwargs):
        static = {k: kwargs[k] for k in self._static_names if k in kwargs}
        static.update({k: args[k] for k in self._static_nums if k < len(args)})
        dynamic = tuple(a for k, a in enumerate(args) if k not in static)
        leaves, tree = jax.tree_util.tree_flatten((dynamic, {k: v for k, v in kwargs.items() if k not in static}))
        if not trace_state_clean() or any(isinstance(x, jax.core.Tracer) for x in leaves):
            return self._nested(*args, **kwargs)  # inside a user's jit, grad or vmap: inlined there
        fast = self._always_fast or _FAST_NOW.get()  # bool: an index into the calls
        jitted = self._fast_jitted if fast else self.jitted
        folder = _store_folder()
        key = None if folder is None else self._key(folder, tree, static, leaves)
        entry = None if key is None else self._loaded[key] if key in self._loaded else self._load(
            folder / f"{key}.bin", key, tree, static, leaves)
        if entry is None:  # not kept: the cache is off, a foreign object, a host callback, ...
            return jitted(*args, **kwargs)
        calls, out_tree, verified = entry
        call = calls[fast]
        if verified:
            return jax.tree_util.tree_unflatten(out_tree, call(*leaves))
        try:
            out = call(*leaves)
        except Exception:  # a damaged file, or one another platform wrote: never read again
            self._loaded[key] = None
            (folder / f"{key}.bin").unlink(missing_ok=True)
            return jitted(*args, **kwargs)
        entry[2] = True
        return jax.tree_util.tree_unflatten(out_tree, out)

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
        """Compiled executables held (``jax.jit``'s ``_cache_size``, over the plain and stored paths and
        both option sets)."""
        return sum(jitted._cache_size() for jitted in (self.jitted, self._fast_jitted)) + sum(
            call._cache_size() for entry in self._loaded.values() if entry for call in entry[0])

    def _load(self, path: Path, key: str, tree, static: dict, leaves) -> list | None:
        """[(jitted calls of the exported program: default, fast options), output treedef, verified],
        read from ``path`` or exported there; None when the kernel cannot be kept."""
        verified = True
        try:
            digest, payload = pickle.loads(path.read_bytes())
            if hashlib.sha256(payload).hexdigest() != digest:
                raise ValueError("damaged")
            serialized, out_tree = pickle.loads(payload)
            exported, verified = jax_export.deserialize(serialized), False
            if _LAPACK_CALL.search(serialized):  # most programs call none: ~0.2 s saved in their process
                _load_lapack()
            os.utime(path)  # used: the last to be pruned
        except Exception:  # absent, unreadable or half-written: export afresh
            try:
                exported, out_tree = self._export(tree, static, leaves)
                if exported.nr_devices != 1:  # a program over several devices: its call needs the mesh
                    raise ValueError("several devices")
                payload = pickle.dumps((exported.serialize(), out_tree))
            except Exception:  # a host callback, an output that does not pickle, no flatbuffers, ...
                self._loaded[key] = None
                return None
            _write_atomically(path, pickle.dumps((hashlib.sha256(payload).hexdigest(), payload)))
            _prune(path.parent, _STORE_MAX_BYTES)
            exported = jax_export.deserialize(pickle.loads(payload)[0])  # what later processes call
        call = functools.wraps(self._fun)(lambda *flat_leaves: exported.call(*flat_leaves))  # named as the kernel
        calls = tuple(jax.jit(call, compiler_options=options) for options in (COMPILER_OPTIONS, FAST_COMPILE_OPTIONS))
        self._loaded[key] = [calls, out_tree, verified]  # calls[fast]
        return self._loaded[key]

    def _export(self, tree, static: dict, leaves):
        """``jax.export`` of the kernel as a function of the flat leaves. Returns (Exported, out treedef)."""
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

        specs = [jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.result_type(x), weak_type=_weak(x)) for x in leaves]
        exported = jax_export.export(jax.jit(flat))(*specs)
        return exported, out_trees[0]


def _store_folder() -> Path | None:
    """The kept programs' folder, inside JAX's compilation cache folder; None when that cache is off or
    is not a local folder (``gs://...``), or jit is disabled."""
    folder = jax.config.jax_compilation_cache_dir
    if not folder or "://" in folder or jax.config.jax_disable_jit:
        return None
    return Path(folder) / _STORE_FOLDER


# A LAPACK call's target in a serialized program (lapack_dpotrf_ffi, ...; jax 0.8-0.10). Names in its
# debug locations may match too (a function "lapack_solve"): LAPACK is then loaded for nothing.
_LAPACK_CALL = re.compile(rb"lapack_[sdcz][a-z]")


@functools.cache
def _load_lapack() -> None:
    """Initialize JAX's CPU LAPACK kernels, once per process. JAX does it when it first lowers a LAPACK
    call; a program read from disk lowers none, and with jax 0.8.0 its LAPACK calls then crashed the
    process (segmentation fault in the Sec. 6.2 ALM kernel). Called for programs that call LAPACK."""
    try:
        from jaxlib import lapack  # what JAX's lowering calls (it loads scipy's LAPACK: ~0.2 s)
        lapack.prepare_lapack_call("potrf_ffi", np.dtype(np.float64))
    except (ImportError, AttributeError):  # another jaxlib layout
        jax.jit(jnp.linalg.cholesky).lower(jax.ShapeDtypeStruct((2, 2), np.float32))


def _spec(x) -> tuple:
    """(type, shape, dtype, weak) of a leaf: what its program depends on (hashable, fast)."""
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
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
    (its code, which the key does not hold, could change between processes)."""

    def reducer_override(self, obj):
        module = getattr(obj, "__module__", None) if isinstance(obj, type) or callable(obj) else type(obj).__module__
        if module is not None and module.split(".")[0] not in _TRUSTED_MODULES:
            raise pickle.PicklingError(f"untrusted {module}")
        return NotImplemented


def _store_key(name: str, tree, static: dict, leaves, config: tuple) -> str | None:
    """Hex key of one call (None: not storable, the call stays a plain ``jax.jit``)."""
    code = _code_fingerprint()
    if code is None or not all(isinstance(x, (jax.Array, np.ndarray, np.generic, bool, int, float, complex))
                               for x in leaves):
        return None
    buffer = io.BytesIO()
    try:
        _TrustedPickler(buffer, protocol=4).dump((tree, sorted(static.items(), key=lambda kv: str(kv[0]))))
    except Exception:
        return None
    avals = [(np.shape(x), str(jax.dtypes.result_type(x)), _weak(x)) for x in leaves]
    text = repr((code, jax.default_backend(), name, config, avals))
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


def _prune(folder: Path, max_bytes: int) -> None:
    """Remove the least recently used programs in ``folder`` until it holds at most ``max_bytes``
    (every upgrade of the package or of JAX starts a new set of programs)."""
    try:
        files = sorted((entry.stat().st_mtime, entry.stat().st_size, entry.path) for entry in os.scandir(folder)
                       if entry.name.endswith(".bin"))
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
