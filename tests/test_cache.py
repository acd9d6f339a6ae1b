"""The persistent compilation cache (on by default in the user's cache folder, never over a choice) and
the kernel store beside it."""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import pickle
import subprocess
import sys
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import diffcontract as dc
from diffcontract import _cache
from diffcontract._cache import (_STORE_FOLDER, FAST_COMPILE_ENV, OPT_OUT, cache_dir, enable_compilation_cache,
                                 fast_compile, kernel_jit, short_passes)
from diffcontract import cli
from diffcontract.solvers import driver
from forced_devices import forced_devices_env


@pytest.fixture
def unset_cache_dir():
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")
    saved = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    for name, value in saved.items():
        jax.config.update(name, value)


def test_a_cache_folder_the_user_chose_is_kept():
    chosen = jax.config.jax_compilation_cache_dir  # tests/conftest.py sets one per session
    assert chosen and enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir == chosen


def test_default_is_the_cache_folder(unset_cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFCONTRACT_CACHE", str(tmp_path))
    monkeypatch.delenv(OPT_OUT, raising=False)
    assert cache_dir() == tmp_path
    assert enable_compilation_cache() == str(tmp_path / "jax")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0  # every kernel: they are the cold start


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_opt_out(unset_cache_dir, tmp_path, monkeypatch, value):
    monkeypatch.setenv("DIFFCONTRACT_CACHE", str(tmp_path))
    monkeypatch.setenv(OPT_OUT, value)
    assert enable_compilation_cache() is None
    assert not jax.config.jax_compilation_cache_dir
    assert _cache._store_folder() is None  # no kept executables either


# --- the kernel store: compiled executables kept between processes (StoredKernel) ---


@pytest.fixture
def store(tmp_path, monkeypatch):
    """The kernel store in ``tmp_path`` for one test. (JAX's own cache folder stays: JAX binds its
    cache to the folder of its first compilation, and every later test would compile afresh.)"""
    monkeypatch.setattr(_cache, "_store_folder", lambda: tmp_path / _STORE_FOLDER)
    return tmp_path / _STORE_FOLDER


def _counted_kernel(traces: list):
    """A fresh ``StoredKernel`` at one definition site (so every call of this helper has the same
    store keys, as the same kernel has in a new process); ``traces`` grows by one per trace."""

    def scaled_sum(x, power: int, *, offset):
        traces.append(1)
        return {"sum": jnp.sum(x ** power) + sum(jax.tree_util.tree_leaves(offset)), "first": x[0]}

    return kernel_jit(scaled_sum, static_argnames="power")


def test_a_new_process_reads_the_kernel_without_tracing_it(store):
    traces = []
    x = jnp.arange(4.0)
    first = _counted_kernel(traces)(x, 2, offset=1.0)
    assert len(traces) == 1 and len(list(store.glob("*.exe"))) == 1
    again = _counted_kernel(traces)  # a new process: nothing in memory, the file on disk
    assert again(x, 2, offset=1.0) == first and len(traces) == 1
    assert again(x, power=2, offset=1.0) == first  # spelt another way: its own entry, the same answer
    assert float(again(x + 1.0, 2, offset=3.0)["sum"]) == 33.0  # leaves change freely
    assert len(traces) == 2 and again._cache_size() == 2
    again(x, 3, offset=1.0)  # a new static value is a new program
    again(jnp.arange(5.0), 2, offset=1.0)  # and so is a new shape
    assert len(traces) == 4 and len(list(store.glob("*.exe"))) == 4
    assert again.lower(x, 2, offset=1.0).compile()(x, offset=1.0) == first  # jax.jit's stages API


def test_lapack_is_loaded_only_for_an_executable_that_calls_it(store, monkeypatch):
    loads = []
    monkeypatch.setattr(_cache, "_load_lapack", lambda: loads.append(1))
    traces = []
    for _ in range(2):  # the second kernel reads the executable from disk, as a new process does
        _counted_kernel(traces)(jnp.arange(3.0), 2, offset=0.0)
    assert len(traces) == 1 and loads == []
    for _ in range(2):
        factor = kernel_jit(lambda a: jnp.linalg.cholesky(a))  # a LAPACK call on CPU
        np.testing.assert_allclose(factor(jnp.eye(2) * 4.0), jnp.eye(2) * 2.0)
    assert loads == [1]


def test_the_store_is_keyed_by_the_package_source_machine_and_jax_configuration(store, monkeypatch):
    traces = []
    _counted_kernel(traces)(jnp.ones(3), 2, offset=0.0)
    monkeypatch.setattr(_cache, "_code_fingerprint", lambda: "an edited package or another optax")
    _counted_kernel(traces)(jnp.ones(3), 2, offset=0.0)
    assert len(traces) == 2
    monkeypatch.setattr(_cache, "_machine", lambda: "cpu with other features")  # a cache folder shared by machines
    _counted_kernel(traces)(jnp.ones(3), 2, offset=0.0)
    assert len(traces) == 3
    with jax.numpy_rank_promotion("allow" if jax.config.jax_numpy_rank_promotion != "allow" else "warn"):
        _counted_kernel(traces)(jnp.ones(3), 2, offset=0.0)  # a flag JAX's own jit cache keys on
    assert len(traces) == 4


def test_a_damaged_or_wrong_file_is_never_used(store):
    traces = []
    first = _counted_kernel(traces)(jnp.arange(3.0), 2, offset=0.0)
    (path,) = store.glob("*.exe")
    digest, payload = pickle.loads(path.read_bytes())
    middle = len(payload) // 2
    flipped = payload[:middle] + bytes([payload[middle] ^ 1]) + payload[middle + 1:]
    path.write_bytes(pickle.dumps((digest, flipped)))  # one bit changed: its checksum fails
    assert _counted_kernel(traces)(jnp.arange(3.0), 2, offset=0.0) == first and len(traces) == 2
    _counted_kernel(traces)(jnp.arange(4.0), 2, offset=0.0)  # a valid executable for another shape ...
    (other,) = set(store.glob("*.exe")) - {path}
    path.write_bytes(other.read_bytes())  # ... under this call's key: its first call fails
    assert _counted_kernel(traces)(jnp.arange(3.0), 2, offset=0.0) == first and not path.exists()


def test_an_executable_jax_read_from_its_own_cache_is_not_kept(store, monkeypatch):
    # Such an executable serializes without its machine code: read in another process it failed
    # ("Function iota.7_kernel not found", jax 0.10.2). Kept kernels are named apart from plain jits,
    # so JAX's cache never holds theirs; this is the guard behind that.
    compile_ = jax.stages.Lowered.compile

    def compile_as_a_cache_hit(self, *args, **kwargs):
        compiled = compile_(self, *args, **kwargs)
        jax.monitoring.record_event("/jax/compilation_cache/cache_hits")  # what JAX records on a hit
        return compiled

    monkeypatch.setattr(jax.stages.Lowered, "compile", compile_as_a_cache_hit)
    traces = []
    assert float(_counted_kernel(traces)(jnp.arange(3.0), 2, offset=0.0)["sum"]) == 5.0
    assert not store.exists() or not list(store.glob("*.exe"))
    assert "stored_scaled_sum" in _counted_kernel(traces)._lower(*_flat_call(jnp.arange(3.0)))[0].as_text()


def _flat_call(x):
    """(treedef, static, leaves) of ``_counted_kernel(...)(x, 2, offset=0.0)``, as ``StoredKernel`` splits it."""
    leaves, tree = jax.tree_util.tree_flatten(((x,), {"offset": 0.0}))
    return tree, {1: 2}, leaves


def test_prepare_compiles_in_a_thread_from_shapes_alone(store, monkeypatch):
    traces = []
    x = jax.ShapeDtypeStruct((4,), jnp.float32)
    shapes = lambda specs: jax.tree_util.tree_map(lambda s: (s.shape, s.dtype, s.weak_type), specs)  # noqa: E731
    expected = {"sum": ((), jnp.float32, False), "first": ((), jnp.float32, False)}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert shapes(_counted_kernel(traces).prepare(x, 2, offset=0.0, executor=pool)) == expected
    assert len(traces) == 1 and len(list(store.glob("*.exe"))) == 1  # compiled and kept by the thread
    kernel = _counted_kernel(traces)  # a new process: reads what prepare wrote
    assert shapes(kernel.prepare(x, 2, offset=0.0)) == expected
    assert float(kernel(jnp.arange(4.0), 2, offset=0.0)["sum"]) == 14.0 and len(traces) == 1
    monkeypatch.setattr(_cache, "_store_folder", lambda: None)  # nothing kept: nothing prepared
    assert _counted_kernel(traces).prepare(x, 2, offset=0.0) is None and len(traces) == 1


def test_a_jittable_solve_is_two_kept_kernels_or_one_plain_one(monkeypatch):
    # The session's cache: the start search and the runs, kept (compiled side by side in a first
    # process). With nothing kept: the one fused kernel, the same optimum.
    problem = dc.ContractProblem(participants=3, probs=[0.4, 0.6], costs=[0.2, 0.1])
    fused = driver._fused_kernel._cache_size()
    split = dc.solve(problem, method="alm")
    assert driver._fused_kernel._cache_size() == fused and driver._runs_kernel._cache_size() >= 1
    monkeypatch.setattr(_cache, "_store_folder", lambda: None)
    whole = dc.solve(problem, method="alm")
    assert driver._fused_kernel._cache_size() == fused + 1
    assert split.status == whole.status == dc.Status.CONVERGED
    np.testing.assert_allclose(split.contributions, whole.contributions, rtol=1e-9)  # the ALM's KKT tolerance
    np.testing.assert_allclose(split.expected_value, whole.expected_value, rtol=1e-12)  # float64, first order


def test_the_key_depends_on_values_not_on_shared_objects(store):
    # A structure read back from a file holds its own copy of a string the caller's structure shares
    # with another argument: the same key (pickle's memo would have told them apart).
    shared = "".join(["simpl", "ified"])
    alone = "".join(["simp", "lified"])
    assert shared == alone and shared is not alone
    keys = [_cache._store_key("k", jax.tree_util.tree_structure(()), {"constraints": shared, "other": a}, [], ())
            for a in (shared, alone)]
    assert keys[0] == keys[1] is not None


def test_the_least_recently_used_executables_are_pruned(store, monkeypatch):
    traces = []
    for size in (2, 3):
        _counted_kernel(traces)(jnp.ones(size), 2, offset=0.0)
    one = max(path.stat().st_size for path in store.glob("*.exe"))
    monkeypatch.setattr(_cache, "_STORE_MAX_BYTES", int(2.5 * one))  # room for two of these executables
    oldest = min(store.glob("*.exe"), key=lambda path: path.stat().st_mtime)
    os.utime(oldest, (0, 0))  # as if written long ago
    _counted_kernel(traces)(jnp.ones(4), 2, offset=0.0)
    assert len(list(store.glob("*.exe"))) == 2 and not oldest.exists()


def test_inside_a_users_jit_the_kernel_is_inlined(store):
    traces = []
    kernel = _counted_kernel(traces)
    # Concrete arguments (closed-over constants) inside a trace: jax.jit refuses compiler options on a
    # nested jit, so the kernel is the plain nested jit there.
    total = jax.jit(lambda y: kernel(jnp.arange(3.0), 2, offset=0.0)["sum"] + y)(1.0)
    assert float(total) == 6.0 and not list(store.glob("*.exe"))


@chex.dataclass(frozen=True)
class _OutsideNode:  # a pytree node from outside the package: its code is not in the key
    value: jax.Array


def test_fast_compilation_is_one_more_executable_of_the_same_trace(store, monkeypatch):
    monkeypatch.setenv(FAST_COMPILE_ENV, "1")  # not the suite's "always": outside a solve, the default options
    traces = []
    kernel = _counted_kernel(traces)
    x = jnp.arange(4.0)
    default = kernel(x, 2, offset=1.0)
    with fast_compile(), short_passes(0.0):
        fast = kernel(x, 2, offset=1.0)
        with short_passes(math.inf):
            kernel(x, 2, offset=1.0)  # long passes: the default options, then the outer choice is back
        kernel(x, 2, offset=1.0)
    with short_passes(0.0):
        kernel(x, 2, offset=1.0)  # fast compilation not chosen: the default options
    assert kernel._cache_size() == 2 and len(traces) == 1  # one trace, an executable per option set
    assert sorted(path.name.split(".", 1)[1] for path in store.iterdir()) == ["exe", "fast.exe"]
    assert fast == default  # a sum of four small integers: exact at any optimization level
    again = _counted_kernel(traces)  # a new process reads both executables
    with fast_compile(), short_passes(0.0):
        assert again(x, 2, offset=1.0) == fast
    assert again(x, 2, offset=1.0) == default and again._cache_size() == 2 and len(traces) == 1


def _fast_now(seconds_per_pass: float = 0.0) -> bool:
    """Whether a kernel called now, in a solve of passes this long (seconds), compiles fast."""
    with short_passes(seconds_per_pass):
        return _cache._FAST_NOW.get()


@pytest.mark.parametrize("setting, library, command_line, long_passes", [
    (None, False, True, False), ("1", True, True, False), ("off", False, False, False), ("always", True, True, True)])
def test_fast_compilation_is_chosen_by_the_cli_or_the_environment(monkeypatch, setting, library, command_line,
                                                                  long_passes):
    if setting is None:
        monkeypatch.delenv(FAST_COMPILE_ENV, raising=False)
    else:
        monkeypatch.setenv(FAST_COMPILE_ENV, setting)
    assert _fast_now() == library  # the library: off unless the environment says on
    assert _fast_now(math.inf) == long_passes  # a long pass: fast only when the environment says always
    assert _cache._compiles_fast_now() == long_passes  # a kernel called outside any solve: likewise
    with fast_compile():
        assert _fast_now(math.inf) == long_passes
    with fast_compile(False):
        assert not _fast_now() and not _cache._compiles_fast_now()
    seen = []
    args = cli.build_parser().parse_args(["solve", "--participants", "2", "--probs", "1", "--costs", "0.1"])
    args.func = lambda _: seen.append(_fast_now()) or 0
    monkeypatch.setattr(cli, "build_parser", lambda: types.SimpleNamespace(parse_args=lambda argv: args))
    assert cli.main([]) == 0 and seen == [command_line]  # the CLI: on unless the environment says off
    assert _fast_now() == library  # and only while the command runs


def test_a_solve_compiles_fast_exactly_when_chosen_and_its_passes_are_short(monkeypatch):
    monkeypatch.setenv(FAST_COMPILE_ENV, "1")  # not the suite's "always": the pass estimate decides
    chosen = []

    @contextlib.contextmanager
    def recorded(seconds_per_pass):
        with short_passes(seconds_per_pass):
            chosen.append(_cache._FAST_NOW.get())
            yield

    monkeypatch.setattr(driver, "short_passes", recorded)
    problem = dc.ContractProblem(participants=10, probs=[0.2, 0.8], costs=[0.02, 0.01])
    with fast_compile():
        fast = dc.solve(problem, method="exact")  # 11 outcomes: a pass is estimated at ~3e-7 s
        assert chosen and all(chosen)
        monkeypatch.setattr(_cache, "FAST_COMPILE_PASS_SECONDS", 0.0)
        chosen.clear()
        default = dc.solve(problem, method="exact")
        assert chosen and not any(chosen)
    # LLVM -O0 rounds differently (no fused multiply-adds); both are certified optima.
    np.testing.assert_allclose(fast.contributions, default.contributions, rtol=1e-9)  # SLSQP's KKT tolerance
    np.testing.assert_allclose(fast.expected_value, default.expected_value, rtol=1e-12)  # float64, first order
    assert fast.status == default.status == dc.Status.CONVERGED


def test_transformations_and_foreign_nodes_are_the_plain_jit(store):
    traces = []
    kernel = _counted_kernel(traces)
    grad = jax.grad(lambda x: kernel(x, 2, offset=0.0)["sum"])(jnp.arange(3.0))
    np.testing.assert_array_equal(grad, [0.0, 2.0, 4.0])
    jax.vmap(lambda x: kernel(x, 2, offset=0.0))(jnp.ones((2, 3)))
    kernel(jnp.ones(3), 2, offset=_OutsideNode(value=jnp.zeros(())))
    assert not store.exists() or not list(store.glob("*.exe"))


def test_stored_kernels_give_the_plain_jits_answer_bit_for_bit(monkeypatch):
    # The session's cache (tests/conftest.py), so only the plain path compiles here.
    assert _cache._store_folder() is not None
    problem = dc.ContractProblem(participants=10, probs=[0.2, 0.8], costs=[0.02, 0.01])
    # The exact solver's kernels (start search, evaluation, measure, finish): the ALM's one kernel
    # would add ~25 s of compilation to a cold suite for the same question.
    stored = {method: dc.solve(problem, method=method) for method in ("exact",)}
    monkeypatch.setattr(_cache, "_store_folder", lambda: None)
    for method, solution in stored.items():
        plain = dc.solve(problem, method=method)
        chex.assert_trees_all_equal(solution.contributions, plain.contributions)  # exactly: the same program
        assert solution.expected_value == plain.expected_value and solution.status == plain.status


def test_a_kept_file_for_a_device_this_process_does_not_own_is_compiled_afresh(tmp_path):
    # A process of a jax.distributed run sees every process's devices in jax.devices() and owns only
    # jax.local_devices(). Simulated with two CPU devices, of which this "process" owns device 1: the
    # file written for device 0 must not be loaded (it was, onto process 0's device, and
    # tests/test_distributed.py failed), so the kernel is traced and compiled again.
    code = f"""
import jax, jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", {str(tmp_path)!r})
from diffcontract._cache import kernel_jit
traces = []
def double(x):
    traces.append(1)
    return 2.0 * x
def doubler():
    return kernel_jit(double)
print(float(doubler()(jnp.arange(3.0))[2]), float(doubler()(jnp.arange(3.0))[2]), len(traces))
jax.local_devices = lambda *args, **kwargs: [jax.devices()[1]]
print(float(doubler()(jnp.arange(3.0))[2]), len(traces))
"""
    env = forced_devices_env(2)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["4.0", "4.0", "1", "4.0", "2"]  # read back once, then traced afresh


def test_with_two_devices_a_mesh_program_is_the_plain_jit_and_a_kept_one_follows_its_arguments(tmp_path):
    # A fresh interpreter with two CPU devices (set before JAX initializes). A shard_map program can
    # only be called inside its mesh, so it is never kept: the second call (a new process, as far as
    # the store knows) must work, and nothing of it is on disk. A one-device executable is kept for
    # the device it was compiled on: called with an array committed to the other device, the kernel
    # answers on that device (the plain jit), as jax.jit does.
    code = f"""
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_compilation_cache_dir", {str(tmp_path)!r})
from diffcontract._cache import kernel_jit
mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("d",))
spec = jax.sharding.PartitionSpec
def total(x):
    return jax.shard_map(lambda b: jax.lax.psum(jnp.sum(b), "d"), mesh=mesh, in_specs=spec("d"), out_specs=spec())(x)
def kernel():
    return kernel_jit(total)
print(float(kernel()(jnp.arange(4.0))), float(kernel()(jnp.arange(4.0))))
import pathlib; print(len(list(pathlib.Path({str(tmp_path)!r}).glob("diffcontract-kernels/*.exe"))))
def double(x):
    return 2.0 * x
on_second = jax.device_put(jnp.arange(3.0), jax.devices()[1])
for _ in range(2):  # the second kernel reads the executable the first wrote
    for x in (jnp.arange(3.0), on_second):
        y = kernel_jit(double)(x)
        print(float(y[2]), y.devices() == x.devices())
"""
    env = forced_devices_env(2)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["6.0", "6.0", "0"] + ["4.0", "True"] * 4
    assert len(list(tmp_path.glob(f"{_STORE_FOLDER}/*.exe"))) == 1  # double's, for device 0
