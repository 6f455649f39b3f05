"""Review of issue 18's fast search round: the windows the freshness proof must close.

``ChangeWatcher.read_then_token`` reads the winners' rows with the change token of the
state they come from (one column of the same statement) on the watcher's connection. A
commit landing between two chunks of rows must be seen: the search then answers from the
new state, never from rows of two states. A commit after the only chunk came after the
search's read: its answer is the state before it, whole. The commits here are made by
another connection at exactly those points (a proxy around the watcher's connection).

Also: a query array is taken as is only when it is a plain float32 ndarray (NaN and
infinities still refused), and the JSON5 constants another tool may have written read as
SQLite reads them.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import numpy as np
import pytest

from tidb_jina import InvalidVectorError, SchemaError
from tidb_jina.store import VectorTable, _fresh
from tidb_jina.store._backend import SearchOptions
from tidb_jina.store._types import load_metadata
from tidb_jina.store._vector import as_vector


class _Cursor:
    def __init__(self, cursor: sqlite3.Cursor, after_rows: Any) -> None:
        self._cursor, self._after_rows = cursor, after_rows
        self._sql = ""

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        self._sql = sql
        self._cursor.execute(sql, params)
        return self

    def fetchall(self) -> list[Any]:
        rows = self._cursor.fetchall()
        if self._sql.startswith("SELECT rowid"):
            self._after_rows()
        return rows

    def close(self) -> None:
        self._cursor.close()


class _Conn:
    """The watcher's connection, calling ``after_rows`` once each chunk of rows is read."""

    def __init__(self, conn: sqlite3.Connection, after_rows: Any) -> None:
        self._conn, self._after_rows = conn, after_rows

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor(), self._after_rows)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    def close(self) -> None:
        self._conn.close()


def _table(tmp_path, n):
    table = VectorTable(f"sqlite:///{tmp_path / 'w.db'}", table_name="w")
    rng = np.random.default_rng(5)
    table.upsert(
        rng.normal(size=(n, 8)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        documents=[f"doc {i}" for i in range(n)],
        metadatas=[{"g": i % 10} for i in range(n)],
    )
    return table, rng


@pytest.mark.parametrize(
    ("n", "k", "commit_after"),
    [(300, 5, 1), (1200, 1000, 1)],  # after the only chunk; between two chunks (900 + 100)
    ids=["rows-then-token", "between-chunks"],
)
def test_a_commit_after_the_rows_are_read_is_seen(tmp_path, n, k, commit_after):
    table, rng = _table(tmp_path, n)
    q = rng.normal(size=8).astype(np.float32)
    first = table.search(q, k=k)  # loads the snapshot: the next search takes the fast path
    winner = first[0].id
    watcher = table._backend.cache.watcher
    real = watcher._conn
    chunks_read = []

    def commit_now() -> None:
        chunks_read.append(1)
        if len(chunks_read) == commit_after:
            with sqlite3.connect(tmp_path / "w.db") as other:  # another process, say
                other.execute("UPDATE w SET document = 'changed' WHERE id = ?", (winner,))
            other.close()

    watcher._conn = _Conn(real, commit_now)
    try:
        fresh = _fresh.search_fresh(
            table._backend.cache, table._backend.db, table.table, q, _options(k)
        )
        assert len(chunks_read) == (1 if k < 900 else 2)  # the rows were really read
    finally:
        watcher._conn = real
    if k < 900:
        # One statement: its rows and its change token come from one read transaction,
        # before the commit, so the fast answer is that state's, whole (the commit came
        # after it was read, as if it had come after the search).
        assert fresh is not None
        hits, rows = fresh
        assert [rows[r][:2] for r in hits[0].tolist()] == [(h.id, h.document) for h in first]
    else:
        assert fresh is None  # two statements read in two states: the general path answers
    hits = table.search(q, k=k)
    assert (hits[0].id, hits[0].document) == (winner, "changed")
    assert len(hits) == k
    table.close()


def _options(k):
    return SearchOptions(k=k, filter=None, ids=None, max_distance=None, include_embeddings=False)


def test_without_a_commit_the_proxy_path_answers_fast(tmp_path):
    """The same proxy and no commit: the fast path answers (the test above is not
    passing merely because the proxy breaks the fast path)."""
    table, rng = _table(tmp_path, 300)
    q = rng.normal(size=8).astype(np.float32)
    expected = [(h.id, h.document) for h in table.search(q, k=5)]
    watcher = table._backend.cache.watcher
    real = watcher._conn
    watcher._conn = _Conn(real, lambda: None)
    try:
        fresh = _fresh.search_fresh(
            table._backend.cache, table._backend.db, table.table, q, _options(5)
        )
    finally:
        watcher._conn = real
    assert fresh is not None
    hits, rows = fresh
    assert [(rows[r][0], rows[r][1]) for r in hits[0].tolist()] == expected
    table.close()


# --- the query taken as is ------------------------------------------------------------


def test_a_plain_float32_query_is_taken_as_is():
    q = np.arange(1, 5, dtype=np.float32)
    assert as_vector(q, 4) is q


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_float32_query_with_nan_or_inf_is_refused(tmp_path, bad):
    q = np.ones(8, dtype=np.float32)
    q[3] = bad
    with pytest.raises(InvalidVectorError):
        as_vector(q, 8)
    table, _ = _table(tmp_path, 20)
    table.search(np.ones(8, dtype=np.float32), k=1)  # snapshot loaded: the fast path
    with pytest.raises(InvalidVectorError):
        table.search(q, k=1)
    table.close()


def test_subclasses_and_other_layouts_come_back_as_plain_float32(tmp_path):
    base = np.arange(1, 9, dtype=np.float32)
    masked = np.ma.array(base, mask=[0, 1, 0, 0, 0, 0, 0, 0])
    mapped = np.memmap(tmp_path / "q.bin", dtype=np.float32, mode="w+", shape=(8,))
    mapped[:] = base
    for query in [masked, mapped, base.astype(">f4"), np.repeat(base, 2)[::2]]:
        out = as_vector(query, 8)
        assert type(out) is np.ndarray and out.dtype == np.float32, type(query)
        assert out.flags.c_contiguous
        assert out.tolist() == base.tolist()


# --- JSON5 constants another tool wrote -----------------------------------------------


def test_json5_constants_read_as_sqlite_reads_them():
    """SQLite 3.42+ reads NaN as null and Infinity as 9e999: so does the fallback (a NaN
    in the metadata would compare unlike in any filter engine)."""
    got = load_metadata('{"a": NaN, "b": Infinity, "c": -Infinity, "d": [NaN, 1]}', "r1")
    assert got == {"a": None, "b": math.inf, "c": -math.inf, "d": [None, 1]}


def test_a_nan_written_by_another_tool_reads_as_null_on_search(tmp_path):
    table, rng = _table(tmp_path, 20)
    table.close()
    with sqlite3.connect(tmp_path / "w.db") as other:
        other.execute("UPDATE w SET meta = '{\"g\": NaN}' WHERE id = 'r3'")
    other.close()
    for cache in (True, False):
        table = VectorTable(f"sqlite:///{tmp_path / 'w.db'}", table_name="w", search_cache=cache)
        q = rng.normal(size=8).astype(np.float32)
        table.search(q, k=1)
        hits = {h.id: h.metadata for h in table.search(q, k=20)}
        assert hits["r3"] == {"g": None}
        assert table.get(["r3"])[0].metadata == {"g": None}
        table.close()


def test_a_commit_after_the_rows_is_seen_in_rollback_journal_mode(tmp_path, monkeypatch):
    """A file that stays in rollback-journal mode (opened read-only, so it cannot switch
    to WAL): ``data_version`` still moves when another connection commits (here between
    two chunks of the winners' rows: chunks of 2 rows)."""
    monkeypatch.setattr(_fresh, "IN_CHUNK", 2)
    table, rng = _table(tmp_path, 60)
    table.close()
    plain = sqlite3.connect(tmp_path / "w.db")
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    plain.close()
    table = VectorTable(f"sqlite:///file:{tmp_path / 'w.db'}?mode=ro&uri=true", table_name="w")
    q = rng.normal(size=8).astype(np.float32)
    winner = table.search(q, k=3)[0].id
    watcher = table._backend.cache.watcher
    real = watcher._conn
    assert real.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    committed = []

    def commit_now() -> None:
        committed.append(1)
        if len(committed) == 1:
            with sqlite3.connect(tmp_path / "w.db") as other:
                other.execute("UPDATE w SET document = 'changed' WHERE id = ?", (winner,))
            other.close()

    watcher._conn = _Conn(real, commit_now)
    try:
        fresh = _fresh.search_fresh(
            table._backend.cache, table._backend.db, table.table, q, _options(3)
        )
    finally:
        watcher._conn = real
    assert len(committed) == 2 and fresh is None
    hit = table.search(q, k=3)[0]
    assert (hit.id, hit.document) == (winner, "changed")
    table.close()


def test_metadata_that_is_not_json_names_the_row_on_the_fast_path(tmp_path, monkeypatch):
    table = VectorTable(f"sqlite:///{tmp_path / 'w.db'}", table_name="w")
    eye = np.eye(8, dtype=np.float32)
    table.upsert(eye, ids=[f"r{i}" for i in range(8)], metadatas=[{"x": i} for i in range(8)])
    table.close()
    with sqlite3.connect(tmp_path / "w.db") as other:
        other.execute("UPDATE w SET meta = '{not json' WHERE id = 'r7'")
    other.close()
    table = VectorTable(f"sqlite:///{tmp_path / 'w.db'}", table_name="w")
    assert [h.id for h in table.search(eye[0], k=1)] == ["r0"]  # loads the snapshot
    used = []
    real = _fresh._read_rows
    monkeypatch.setattr(_fresh, "_read_rows", lambda *a: used.append(1) or real(*a))
    with pytest.raises(SchemaError, match=r"'r7'.*not JSON.*json_valid"):
        table.search(eye[7], k=1)
    assert used  # raised by the fast path's own read
    table.close()


def test_the_watcher_reads_the_rows_without_a_memory_map(tmp_path):
    """Mapped file pages count in the resident size (16 per fault with the kernel's
    fault-around): the watcher reads the winners' rows with SQLite's ordinary reads."""
    table, rng = _table(tmp_path, 100)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=5)  # loads the snapshot (general path)
    watcher = table._backend.cache.watcher
    statements: list[str] = []
    watcher._conn.set_trace_callback(statements.append)
    for _ in range(3):
        table.search(q, k=5)
    assert sum(s.startswith("SELECT rowid") for s in statements) == 3  # the fast path
    assert watcher._conn.execute("PRAGMA mmap_size").fetchone()[0] == 0
    table.close()


def test_a_sync_table_used_inside_a_coroutine_still_waits_for_the_wal_switch(tmp_path, monkeypatch):
    """A loop runs on the thread but the sync driver's connection is made outside
    SQLAlchemy's greenlet bridge (a notebook calling the sync API): the retry cannot
    hand the wait to the loop and sleeps, as before (no ``MissingGreenlet``)."""
    import asyncio

    from tidb_jina.store import _sqlite

    path = tmp_path / "held.db"
    table, _ = _table(tmp_path, 4)
    table.close()
    (tmp_path / "w.db").rename(path)
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    plain.close()
    monkeypatch.setattr(_sqlite, "WAL_SWITCH_SECONDS", 0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def main() -> list[str]:
        inside = VectorTable(f"sqlite:///{path}", table_name="w")
        try:
            return [h.id for h in inside.search(np.ones(8, dtype=np.float32), k=2)]
        finally:
            inside.close()

    try:
        ids = asyncio.run(main())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(ids) == 2
