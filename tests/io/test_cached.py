"""facegcn.io.cached.cached_arrays: built once, read back equal; a corrupt file is rebuilt; a cache
that cannot be created or written still returns the built arrays."""

import numpy as np

from facegcn.io import cached as cache
from facegcn.errors import OutputError


def test_cached_arrays_builds_once_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "b": np.linspace(0, 1, 4)}

    first = cache.cached_arrays("t", "k", build)
    second = cache.cached_arrays("t", "k", build)
    assert len(calls) == 1 and (tmp_path / "t" / "k.npz").is_file()
    for k in ("a", "b"):
        assert np.array_equal(first[k], second[k]) and first[k].dtype == second[k].dtype
    (tmp_path / "t" / "k.npz").write_bytes(b"not an npz")
    assert np.array_equal(cache.cached_arrays("t", "k", build)["a"], first["a"]) and len(calls) == 2
    assert np.array_equal(cache.cached_arrays("t", "k", build)["b"], first["b"]) and len(calls) == 2  # rewritten


def test_cached_arrays_without_a_usable_cache(tmp_path, monkeypatch):
    build = lambda: {"a": np.ones(3)}  # noqa: E731
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "file" / "cache"))  # cannot be created
    assert np.array_equal(cache.cached_arrays("t", "k", build)["a"], np.ones(3))
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path / "ok"))

    def refuse(*a, **k):
        raise OutputError("cannot write")

    monkeypatch.setattr(cache, "atomic_open", refuse)  # cannot be written
    assert np.array_equal(cache.cached_arrays("t", "k", build)["a"], np.ones(3))
    assert not (tmp_path / "ok" / "t" / "k.npz").exists()
