"""The persistent compilation cache: on by default in the user's cache folder, never over a choice."""

from __future__ import annotations

import jax
import pytest

from diffcontract._cache import OPT_OUT, cache_dir, enable_compilation_cache


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
