"""The embedded engine's in-memory copy follows the database it opened, whatever happens.

Each case once gave stale results or a raw error: a relative path and a later ``chdir``
(the change watcher opened another file), a shared-cache in-memory URI (the watcher
opened a *file* of that name), a table dropped or re-created with another dimension by
another object, hybrid search while rows change, and the pools left open by ``close``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from tidb_jina import DimensionMismatchError
from tidb_jina.store import VectorTable, connect


def _unit(i: int, d: int = 4) -> np.ndarray:
    v = np.zeros(d, dtype=np.float32)
    v[i % d] = 1.0
    return v


def test_a_relative_path_is_watched_after_chdir(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    monkeypatch.chdir(first)
    reader = VectorTable("sqlite:///rel.db", table_name="c")
    reader.upsert([_unit(0)], ids=["a"])
    monkeypatch.chdir(second)  # the engine keeps a/rel.db; the watcher must too
    assert [h.id for h in reader.search(_unit(0), k=1)] == ["a"]
    writer = VectorTable(f"sqlite:///{first / 'rel.db'}", table_name="c")
    writer.upsert([_unit(1)], ids=["b"])
    assert [h.id for h in reader.search(_unit(1), k=1)] == ["b"]
    assert not (second / "rel.db").exists(), "nothing may be created in the new cwd"
    reader.close()
    writer.close()


def test_a_shared_cache_memory_uri_is_watched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///file:fresh_mem?mode=memory&cache=shared&uri=true"
    keeper = connect(url)  # two engines, one shared in-memory database
    reader = VectorTable(keeper, table_name="c")
    writer = VectorTable(url, table_name="c")
    writer.upsert([_unit(0)], ids=["a"])
    assert [h.id for h in reader.search(_unit(0), k=1)] == ["a"]
    writer.upsert([_unit(1)], ids=["b"])
    assert [h.id for h in reader.search(_unit(1), k=1)] == ["b"]
    writer.delete(["a"])
    assert [h.id for h in reader.search(_unit(0), k=2)] == ["b"]
    assert os.listdir(tmp_path) == [], "a memory URI must not become a file"
    writer.close()
    keeper.dispose()


@pytest.fixture(params=["memory", "file"])
def url(request, tmp_path):
    if request.param == "memory":
        engine = connect("sqlite://")
        yield engine
        engine.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'f.db'}"


def test_a_table_recreated_with_another_dimension_is_noticed(url):
    old = VectorTable(url, table_name="c")
    old.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert old.search(_unit(0), k=1)[0].id == "a"
    other = VectorTable(url, table_name="c")
    other.drop()
    other.upsert([_unit(2, 8)], ids=["z"])
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(8\)"):
        old.upsert([_unit(0)], ids=["x"])  # never written with the old size
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(8\)"):
        old.search(_unit(0), k=1)
    assert old.dimension == 8
    assert [h.id for h in old.search(_unit(2, 8), k=5)] == ["z"]
    assert other.count() == 1


def test_a_table_recreated_under_a_declared_dimension_is_refused(url):
    old = VectorTable(url, table_name="c", dimension=4)
    old.upsert([_unit(0)], ids=["a"])
    other = VectorTable(url, table_name="c")
    other.drop()
    other.upsert([_unit(0, 8)], ids=["z"])
    with pytest.raises(DimensionMismatchError, match="dimension=4 was given"):
        old.search(_unit(0), k=1)


def test_a_table_dropped_by_another_object_recovers(url):
    old = VectorTable(url, table_name="c")
    old.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert old.search(_unit(0), k=1)[0].id == "a"
    VectorTable(url, table_name="c").drop()
    assert not old.exists()
    assert old.search(_unit(0), k=1) == []
    assert old.count() == 0
    old.upsert([_unit(3)], ids=["c"])  # re-created on write
    assert [h.id for h in old.search(_unit(3), k=5)] == ["c"]


def test_hybrid_search_during_writes_never_fails(tmp_path):
    url = f"sqlite:///{tmp_path / 'h.db'}"
    table = VectorTable(url, table_name="h")
    words = ["tidb vector", "sqlite engine", "vector search", "search engine"]
    ids = [f"r{i}" for i in range(40)]
    docs = [words[i % 4] + f" {i}" for i in range(40)]
    table.upsert([_unit(i) for i in range(40)], ids=ids, documents=docs)
    stop = threading.Event()
    writer = VectorTable(url, table_name="h")

    def churn() -> None:
        rng = np.random.default_rng(3)
        while not stop.is_set():
            some = [ids[i] for i in rng.choice(40, 8, replace=False)]
            writer.delete(some)
            vectors = [_unit(int(i)) + 0.1 for i in rng.integers(0, 4, 8)]
            writer.upsert(vectors, ids=some, documents=[f"vector search {s}" for s in some])

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(150):
            hits = table.hybrid_search(_unit(0), "vector search", k=5)
            assert hits and all(h.distance == h.distance for h in hits)  # real distances
    finally:
        stop.set()
        thread.join()
    writer.close()
    table.close()


def _open_fds(path: Path) -> int:
    """File descriptors of this process open on ``path`` (or its -wal / -shm files)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        count += target.startswith(str(path))
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc")
def test_close_releases_every_pool_it_opened(tmp_path):
    # Counted on this file only: other tests' threads may open and close descriptors.
    path = tmp_path / "p.db"
    url = f"sqlite:///{path}"
    VectorTable(f"sqlite:///{tmp_path / 'warm.db'}", table_name="warm").upsert(
        [_unit(0)], ids=["a"]
    )  # imports, caches
    table = VectorTable(url, table_name="p")
    table.upsert([_unit(0)], ids=["a"])
    table.search(_unit(0), k=1)

    async def use() -> None:
        assert (await table.aio.search(_unit(0), k=1))[0].id == "a"

    for _ in range(3):  # three event loops, three async pools
        asyncio.run(use())
    assert _open_fds(path) > 0
    table.close()
    assert _open_fds(path) == 0, "close() must release the watcher and every pool"
