"""The embedded engine's in-memory vector copy is reused, and never stale."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from _product_race import race

from tidb_jina.store import VectorTable, connect


@pytest.fixture(params=["memory", "file"])
def url_or_engine(request, tmp_path):
    if request.param == "memory":
        return connect("sqlite://")  # one shared in-memory database
    return f"sqlite:///{tmp_path / 'cache.db'}"


def _unit(i: int, d: int = 4) -> np.ndarray:
    v = np.zeros(d, dtype=np.float32)
    v[i] = 1.0
    return v


def test_snapshot_is_reused_while_nothing_changes(url_or_engine):
    table = VectorTable(url_or_engine, table_name="c")
    table.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    table.search(_unit(0), k=1)
    first = table._backend.cache.snapshot
    assert first is not None
    table.search(_unit(1), k=1, filter={"x": {"$exists": False}})
    assert table._backend.cache.snapshot is first, "an unchanged table must not be re-read"


def test_writes_through_another_handle_are_seen(url_or_engine):
    reader = VectorTable(url_or_engine, table_name="c")
    writer = VectorTable(url_or_engine, table_name="c")
    writer.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert [h.id for h in reader.search(_unit(0), k=1)] == ["a"]
    writer.upsert([_unit(2)], ids=["a"])  # in-place update: same rowid, new vector
    query = np.array([1.0, 0.5, 0.0, 0.0], dtype=np.float32)
    assert [h.id for h in reader.search(query, k=2)] == ["b", "a"]
    assert reader.search(_unit(2), k=1)[0].distance == pytest.approx(0.0, abs=1e-6)
    writer.delete(["b"])
    assert [h.id for h in reader.search(_unit(1), k=5)] == ["a"]


@pytest.mark.slow
def test_writes_from_another_process_are_seen(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    table = VectorTable(url, table_name="c")
    table.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert table.search(_unit(3), k=1)[0].id in {"a", "b"}
    script = textwrap.dedent(
        f"""
        import numpy as np
        from tidb_jina.store import VectorTable
        t = VectorTable({url!r}, table_name="c")
        t.upsert([np.array([0, 0, 0, 1], dtype=np.float32)], ids=["z"])
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    hits = table.search(_unit(3), k=1)
    assert hits[0].id == "z" and hits[0].distance == pytest.approx(0.0, abs=1e-6)


def test_cache_can_be_turned_off(url_or_engine):
    table = VectorTable(url_or_engine, table_name="c", search_cache=False)
    table.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert table.search(_unit(1), k=1)[0].id == "b"
    assert table._backend.cache.snapshot is None


def test_l2_distances_are_exact_for_identical_vectors(url_or_engine):
    table = VectorTable(url_or_engine, table_name="l2", metric="l2")
    rng = np.random.default_rng(1)
    vectors = (rng.standard_normal((50, 64)) * 100).astype(np.float32)
    table.upsert(vectors, ids=[str(i) for i in range(50)])
    hit = table.search(vectors[7], k=1)[0]
    assert hit.id == "7" and hit.distance == 0.0 and hit.score == 1.0


# --- incremental snapshots and single-flight loads ---------------------------------------


@pytest.fixture
def loads(monkeypatch):
    """Counts full reads of the vectors (each call of the streamed loader)."""
    from tidb_jina.store import _embedded

    calls = []
    real = _embedded.load_vectors

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_embedded, "load_vectors", counted)
    return calls


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_own_writes_update_the_snapshot_without_a_reload(url_or_engine, loads, metric):
    table = VectorTable(url_or_engine, table_name="inc", metric=metric)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    ids = [f"r{i}" for i in range(30)]
    metas = [{"g": i % 3} for i in range(30)]
    table.upsert(vectors, ids=ids, metadatas=metas)
    table.search(vectors[0], k=1)
    table.search(vectors[0], k=3, filter={"g": 1})  # builds the "g" filter column
    assert len(loads) == 1
    # updates (same rowid, new vector and metadata) and inserts, over several batches
    table.batch_rows = 4
    changed = rng.normal(size=(10, 8)).astype(np.float32)
    new_ids = ids[:5] + [f"n{i}" for i in range(5)]
    table.upsert(changed, ids=new_ids, metadatas=[{"g": 9}] * 10)
    vectors = np.vstack([vectors, changed[5:]])
    vectors[:5] = changed[:5]
    ids, metas = ids + new_ids[5:], metas + [{"g": 9}] * 5
    for i in range(5):
        metas[i] = {"g": 9}
    queries = [(q, f) for q in rng.normal(size=(5, 8)) for f in (None, [9], [1, 9])]
    got = [table.search(q, k=7, filter=f and {"g": {"$in": f}}) for q, f in queries]
    assert len(loads) == 1, "this process's own writes must not reload the vectors"
    reference = VectorTable("sqlite://", table_name="ref", metric=metric, search_cache=False)
    reference.upsert(vectors, ids=ids, metadatas=metas)
    for hits, (q, f) in zip(got, queries, strict=True):
        want = reference.search(q, k=7, filter=f and {"g": {"$in": f}})
        assert [h.id for h in hits] == [h.id for h in want]
        assert [h.distance for h in hits] == pytest.approx([h.distance for h in want], abs=1e-5)
    assert table.count() == 35


def test_a_write_by_another_handle_reloads_once_for_all_readers(tmp_path, loads):
    url = f"sqlite:///{tmp_path / 'sf.db'}"
    table = VectorTable(url, table_name="c")
    table.upsert(np.eye(4, dtype=np.float32), ids=list("abcd"))
    table.search(_unit(0), k=1)
    other = VectorTable(url, table_name="c")
    other.upsert([_unit(1)], ids=["z"])  # another connection: a foreign commit
    loads.clear()
    barrier = threading.Barrier(8)
    found = []

    def reader() -> None:
        barrier.wait()
        found.append([h.id for h in table.search(_unit(1), k=2)])

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(sorted(f) == ["b", "z"] for f in found), found
    assert len(loads) == 1, f"{len(loads)} loads for 8 readers: loads must be single-flight"


def test_deleted_rows_disappear_and_reused_rowids_are_right(url_or_engine):
    table = VectorTable(url_or_engine, table_name="del")
    table.upsert(np.eye(4, dtype=np.float32), ids=list("abcd"))
    table.search(_unit(0), k=1)
    table.delete(["c", "d"])  # the highest rowids: SQLite may hand them out again
    table.upsert([_unit(2), _unit(3)], ids=["e", "f"])
    table.upsert([_unit(3)], ids=["a"])  # update: a moves to dimension 3
    assert [h.id for h in table.search(_unit(2), k=1)] == ["e"]
    assert sorted(h.id for h in table.search(_unit(3), k=2)) == ["a", "f"]
    assert sorted(h.id for h in table.search(_unit(0), k=10)) == ["a", "b", "e", "f"]


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_concurrent_searches_are_coalesced_and_answer_like_one_search(tmp_path, metric):
    table = VectorTable(f"sqlite:///{tmp_path / 'co.db'}", table_name="co", metric=metric)
    rng = np.random.default_rng(5)
    table.upsert(rng.normal(size=(3000, 32)).astype(np.float32), ids=[str(i) for i in range(3000)])
    queries = rng.normal(size=(16, 32)).astype(np.float32)
    alone = [[(h.id, h.distance) for h in table.search(q, k=5)] for q in queries]
    cache = table._backend.cache
    before = cache.coalescer.queries
    barrier = threading.Barrier(8)
    got: dict[int, list] = {}

    def worker(slot: int) -> None:
        barrier.wait()
        for rep in range(6):
            i = (slot + rep * 8) % len(queries)
            got[slot * 100 + rep] = (i, [(h.id, h.distance) for h in table.search(queries[i], k=5)])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, hits in got.values():
        assert [h[0] for h in hits] == [h[0] for h in alone[i]]
        assert [h[1] for h in hits] == pytest.approx([h[1] for h in alone[i]], abs=1e-5)
    assert cache.coalescer.queries - before == 48


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_searches_on_an_older_and_a_newer_snapshot_share_one_product(tmp_path, metric):
    """A write of this process appends to the shared buffer: readers still pinned to the
    state before it and readers on the new state are scored by one product, each on
    exactly its own rows."""
    table = VectorTable(f"sqlite:///{tmp_path / 'pre.db'}", table_name="pre", metric=metric)
    rng = np.random.default_rng(8)
    table.upsert(rng.normal(size=(500, 16)).astype(np.float32), ids=[str(i) for i in range(500)])
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    table.search(queries[0], k=3)
    cache = table._backend.cache
    old = cache.snapshot
    ids = [str(i) for i in range(500, 520)] + ["1", "2", "3"]
    table.upsert(rng.normal(size=(len(ids), 16)).astype(np.float32), ids=ids)
    new = cache.snapshot
    assert new.matrix.base is old.matrix.base and new.size == old.size + len(ids)
    expected = [cache.distances_to(old, queries[1]), cache.distances_to(new, queries[2])]

    calls, got = race(cache, old, new, queries)
    assert calls == [(old.size, 1), (new.size, 2)]  # the two queued: one product, widest
    assert got["old"].shape == (old.size,) and got["new"].shape == (new.size,)
    np.testing.assert_allclose(got["old"], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["new"], expected[1], rtol=1e-5, atol=1e-5)
