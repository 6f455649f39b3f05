"""Review of issue 18's fresh-snapshot search and own-write confirmation: races and
driver errors that must end in correct answers or a translated error, and ties.

Each test reproduces a defect found in review (it failed before its fix)."""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from _product_race import race

from tidb_jina import DatabaseError
from tidb_jina.store import VectorTable, _embedded, _incremental
from tidb_jina.store import _backend_embedded as backend_module
from tidb_jina.store._embedded import nearest


def _table(tmp_path, metric="cosine", n=300, d=8, name="f.db"):
    table = VectorTable(f"sqlite:///{tmp_path / name}", table_name="f", metric=metric)
    rng = np.random.default_rng(7)
    table.upsert(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        metadatas=[{"g": i % 10, "h": i % 3} for i in range(n)],
    )
    return table, rng


def _ids(table, query, **kw):
    return [(h.id, round(h.distance, 5)) for h in table.search(query, **kw)]


class _Vanishing(dict):
    """A snapshot's filter columns where another thread evicts (or pops, to re-insert
    it last) a key right after this thread saw it."""

    def get(self, key, default=None):
        value = super().get(key, default)
        self.pop(key, None)
        return value


def test_a_filter_column_evicted_during_a_fresh_search_never_reaches_sql(tmp_path):
    """The fast path checked the columns, then asked ``filter_positions`` with no
    connection: a column popped in between (LRU re-insert or eviction by a concurrent
    search) made it run SQL on ``None`` (a raw AttributeError)."""
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    expected = _ids(table, q, k=5, filter={"g": 3})  # loads the snapshot and column g
    snap = table._backend.cache.snapshot
    snap.extras["columns"] = _Vanishing(snap.extras["columns"])
    assert _ids(table, q, k=5, filter={"g": 3}) == expected


def test_concurrent_filtered_searches_under_a_tiny_column_bound(tmp_path, monkeypatch):
    """Two keys, a column bound that holds one: every search evicts the other's column
    while fast-path searches run on it."""
    table, rng = _table(tmp_path)
    queries = rng.normal(size=(4, 8)).astype(np.float32)
    filters = [{"g": 3}, {"h": 1}]
    expected = {
        (i, j): _ids(table, q, k=4, filter=f)
        for i, q in enumerate(queries)
        for j, f in enumerate(filters)
    }
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", 1)
    errors: list[BaseException] = []

    def run(j: int) -> None:
        try:
            for _ in range(150):
                for i, q in enumerate(queries):
                    assert _ids(table, q, k=4, filter=filters[j]) == expected[i, j]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(j % 2,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


class _LockedWatcher:
    """The watcher's connection while another process holds the database locked."""

    def execute(self, sql, *args):
        raise sqlite3.OperationalError("database is locked")

    def cursor(self) -> _LockedWatcher:  # the fast search's row reads: locked as well
        return self

    def close(self) -> None:
        pass


def test_a_locked_watcher_gives_a_database_error_not_a_raw_one(tmp_path):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)
    watcher = table._backend.cache.watcher
    real, watcher._conn = watcher._conn, _LockedWatcher()
    try:
        with pytest.raises(DatabaseError, match="database is locked"):
            table.search(q, k=3)
        with pytest.raises(DatabaseError, match="database is locked"):
            table.search(q, k=3, filter={"g": 1})
    finally:
        watcher._conn = real
    assert len(table.search(q, k=3)) == 3


@pytest.mark.parametrize("step", ["token", "own_version"])
def test_an_error_confirming_a_committed_write_does_not_fail_it(tmp_path, monkeypatch, step):
    """The rows are committed when the confirmation (token, then the writer's own
    data_version) is read: a driver error there must not report the upsert or delete
    as failed (nor raise a raw sqlite3 error); the next search reloads instead."""
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)
    cache = table._backend.cache

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    if step == "token":
        real_token = cache.token
        calls = {"n": 0}

        def token(conn, wait=True):  # the token before the write works, the one after fails
            calls["n"] += 1
            if calls["n"] % 2 == 0:
                locked()
            return real_token(conn, wait)

        monkeypatch.setattr(cache, "token", token)
    else:
        monkeypatch.setattr(_incremental, "_own_version_now", locked)
    table.upsert([q], ids=["new"], metadatas=[{"g": 1}])  # committed: no error
    table.delete(ids=["r0"])
    monkeypatch.undo()
    hits = table.search(q, k=300)
    assert hits[0].id == "new" and "r0" not in {h.id for h in hits}
    monkeypatch.setattr(backend_module, "search_fresh", lambda *a, **k: None)
    assert [h.id for h in table.search(q, k=300)] == [h.id for h in hits]


def test_ties_at_the_kth_place_go_to_the_lowest_rowids():
    distances = np.ones(100, dtype=np.float32)
    rowids = np.arange(100)[::-1].copy()  # position i holds rowid 99 - i
    assert rowids[nearest(distances, rowids, 3, None)].tolist() == [0, 1, 2]
    distances[50] = 0.5
    assert rowids[nearest(distances, rowids, 3, None)].tolist() == [49, 0, 1]
    assert rowids[nearest(distances, rowids, 3, 1.0)].tolist() == [49, 0, 1]
    distances[:] = np.nan  # fewer numbers than k: every number, then no NaN first
    distances[[10, 20]] = [0.2, 0.1]
    assert rowids[nearest(distances, rowids, 3, None)][:2].tolist() == [79, 89]


def test_identical_vectors_are_returned_in_insertion_order(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 't.db'}", table_name="t", metric="l2")
    vectors = np.zeros((200, 4), dtype=np.float32)
    vectors[:, 0] = 1
    table.upsert(vectors, ids=[f"x{i:03d}" for i in range(200)])
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    first = [f"x{i:03d}" for i in range(5)]
    assert [h.id for h in table.search(q, k=5)] == first
    # rewritten rows keep their rowids but move to the end of the in-memory matrix
    table.upsert(vectors[:5], ids=first)
    assert [h.id for h in table.search(q, k=5)] == first


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_an_error_in_batch_k_keeps_the_committed_batches_and_no_more(tmp_path, metric):
    """A multi-batch upsert whose third batch fails in SQLite (a trigger refuses a row):
    the first two batches are committed and searched without a reload, the third is
    neither stored nor in memory, and every answer matches a table read from disk."""
    table, rng = _table(tmp_path, metric, n=50)
    table.batch_rows = 4
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)  # the snapshot exists: the upsert is applied to it
    with sqlite3.connect(tmp_path / "f.db") as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON f WHEN NEW.id = 'bad' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    table.search(q, k=3)  # the schema change is noticed and the snapshot reloaded
    loads = 0
    real = _embedded.load_vectors

    def counted(*args, **kwargs):
        nonlocal loads
        loads += 1
        return real(*args, **kwargs)

    new = rng.normal(size=(12, 8)).astype(np.float32)
    ids = [f"n{i}" for i in range(12)]
    ids[9] = "bad"  # third batch of four
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_embedded, "load_vectors", counted)
        with pytest.raises(DatabaseError, match="refused"):
            table.upsert(new, ids=ids)
        got = {h.id for h in table.search(new[0], k=100)}
        assert loads == 0  # batches one and two were applied in memory
    assert {f"n{i}" for i in range(8)} <= got and not {"n8", "bad", "n10", "n11"} & got
    reader = VectorTable(
        f"sqlite:///{tmp_path / 'f.db'}", table_name="f", metric=metric, search_cache=False
    )
    for v in new:
        assert _ids(table, v, k=10) == _ids(reader, v, k=10)


def _reference_nearest(distances, rowids, k, max_distance):
    """Sort by (NaN last, distance, rowid), keep those within the bound, take k."""
    nan = np.isnan(distances)
    order = np.lexsort((rowids, np.where(nan, 0, distances), nan))
    if max_distance is not None:
        order = order[distances[order] <= max_distance]
    return order[:k]


@pytest.mark.parametrize("seed", range(6))
def test_nearest_matches_a_full_sort_with_ties_nan_and_dead_rows(seed):
    """k below, at and above n; many ties (few distinct values); NaN rows (zero vectors
    on cosine); inf (dead rows); a bound or none; rowids in any order."""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        n = int(rng.integers(1, 120))
        distances = rng.integers(0, int(rng.integers(1, 6)), size=n).astype(np.float32) / 4
        distances[rng.random(n) < 0.1] = np.nan
        distances[rng.random(n) < 0.1] = np.inf
        rowids = rng.permutation(n * 2)[:n].astype(np.int64)
        k = int(rng.integers(1, 40))
        bound = None if rng.random() < 0.5 else float(rng.integers(0, 5)) / 4
        got = nearest(distances, rowids, k, bound)
        want = _reference_nearest(distances, rowids, k, bound)
        assert rowids[got].tolist() == rowids[want].tolist(), (n, k, bound)


@pytest.mark.parametrize("pool", ["queue", "null"])
def test_user_built_engines_take_the_fast_path_with_the_same_answers(tmp_path, pool):
    """An Engine the caller built (default pool or NullPool) reaches the fast path, and
    a commit by another process between searches is seen at once."""
    import sqlalchemy as sa

    kwargs = {"poolclass": sa.pool.NullPool} if pool == "null" else {}
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'u.db'}", **kwargs)
    table = VectorTable(engine, table_name="u", metric="l2")
    rng = np.random.default_rng(3)
    table.upsert(
        rng.normal(size=(60, 8)).astype(np.float32),
        ids=[f"u{i}" for i in range(60)],
        metadatas=[{"g": i % 4} for i in range(60)],
    )
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3, filter={"g": 1})
    begins = 0

    def on_begin(conn):
        nonlocal begins
        begins += 1

    sa.event.listen(engine, "begin", on_begin)
    fast = [_ids(table, q, k=4), _ids(table, q, k=4, filter={"g": 1})]
    assert begins == 0
    winner = fast[0][0][0]
    with sqlite3.connect(tmp_path / "u.db") as other:  # another process
        other.execute("DELETE FROM u WHERE id = ?", (winner,))
    after = _ids(table, q, k=4)
    assert winner not in [i for i, _ in after] and after[:3] == fast[0][1:]
    sa.event.remove(engine, "begin", on_begin)
    table.close()


def test_a_column_used_by_the_fast_path_is_evicted_last(tmp_path, monkeypatch):
    """Columns are dropped least recently used first: a key searched only through the
    fast path is recently used, so loading another key evicts an idle one instead.
    (Keys read one by one: the load keeps no metadata texts to build every column.)"""
    import sqlalchemy as sa

    monkeypatch.setattr(_embedded, "META_TEXT_BYTES", 0)
    table, rng = _table(tmp_path)
    with table.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE f SET meta = json_set(meta, '$.k', rowid % 4)")
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3, filter={"g": 1})  # loads g
    table.search(q, k=3, filter={"h": 1})  # loads h
    columns = table._backend.cache.snapshot.extras["columns"]
    assert list(columns) == ["g", "h"]
    begins = 0

    def on_begin(conn):
        nonlocal begins
        begins += 1

    sa.event.listen(table.engine, "begin", on_begin)
    table.search(q, k=3, filter={"g": 2})  # the fast path: g is now the most recent
    assert begins == 0
    # room for two columns, not three (g now holds postings: its second equality)
    room = _embedded.column_bytes(columns["g"]) + 1.1 * _embedded.column_bytes(columns["h"])
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", int(room))
    table.search(q, k=3, filter={"k": 1})  # loads k: one column must go
    columns = table._backend.cache.snapshot.extras["columns"]
    assert "g" in columns and "h" not in columns
    sa.event.remove(table.engine, "begin", on_begin)


@pytest.mark.parametrize("change", ["clear", "compaction", "reload"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_queries_on_two_buffers_are_never_scored_together(tmp_path, metric, change):
    """Snapshots share a product only when they share a buffer (one is a prefix of the
    other). After clear(), a rebuild (compaction) or a reload, readers still on the old
    buffer and readers on the new one are queued together: two products, each right."""
    table, rng = _table(tmp_path, metric, n=1500, d=16)
    cache = table._backend.cache
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    table.search(queries[0], k=1)
    old = cache.snapshot
    if change == "clear":
        table.clear()
        table.upsert(rng.normal(size=(5, 16)).astype(np.float32), ids=list("abcde"))
    elif change == "compaction":
        table.delete(ids=[f"r{i}" for i in range(1200)])
    else:
        with sqlite3.connect(tmp_path / "f.db") as other:  # another process writes
            other.execute("DELETE FROM f WHERE id = 'r7'")
        table.search(queries[0], k=1)
    new = cache.snapshot
    assert new.matrix.base is not old.matrix.base
    expected = [cache.distances_to(old, queries[1]), cache.distances_to(new, queries[2])]
    calls, got = race(cache, old, new, queries)
    assert sorted(calls[1:]) == sorted([(old.size, 1), (new.size, 1)])
    np.testing.assert_allclose(got["old"], expected[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["new"], expected[1], rtol=1e-5, atol=1e-5)


def test_a_snapshot_labelled_before_close_never_matches_a_later_watcher(tmp_path):
    """A search that read its token before ``close()`` may publish its snapshot after
    it. The next watcher's ``data_version`` counts from the start again, so the old
    label could equal a new token while the file changed: tokens carry the watcher's
    epoch, and the stale snapshot is never used."""
    table = VectorTable(f"sqlite:///{tmp_path / 'e.db'}", table_name="e", metric="l2")
    table.upsert(np.eye(4, dtype=np.float32), ids=list("abcd"), documents=list("ABCD"))
    q = np.array([1, 0, 0, 0], dtype=np.float32)
    assert table.search(q, k=1)[0].id == "a"  # the first token of the first watcher
    cache = table._backend.cache
    stale = cache.snapshot
    table.close()
    cache._publish(stale)  # the late search's snapshot, labelled by the closed watcher
    with sqlite3.connect(tmp_path / "e.db") as other:  # another process
        other.execute("DELETE FROM e WHERE id = 'a'")
        other.execute("UPDATE e SET document = 'changed' WHERE id = 'b'")
    hits = table.search(q, k=2)
    assert [(h.id, h.document) for h in hits] == [("b", "changed"), ("c", "C")]
