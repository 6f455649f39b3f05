"""Review of issue 18's sixth round: the search that skips the facade's schema check.

``_vector_search.unchecked_search`` answers a loaded table's search from the snapshot in
memory before reading the schema; its answer stands only when the winners' rows were
read in the snapshot's own state, under the schema cookie the table's shape was read
with. Here other objects and connections drop, re-create (other dimension, other
metric), alter and add tables between two searches and in the middle of one (a proxy
around the watcher's connection runs them right before the rows are read); every answer
is checked against a brute-force reference over the table as it then is.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import numpy as np
import pytest

from tidb_jina import DimensionMismatchError, InvalidVectorError
from tidb_jina.store import VectorTable
from tidb_jina.store._backend import Query, SearchOptions
from tidb_jina.store._backend_tidb import TiDBBackend


def _fill(table: VectorTable, rng: np.random.Generator, n: int, d: int, tag: str) -> None:
    table.upsert(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[f"{tag}{i}" for i in range(n)],
        documents=[f"{tag} doc {i}" for i in range(n)],
        metadatas=[{"g": i % 4} for i in range(n)],
    )


def _reference(table: VectorTable, q: np.ndarray, k: int, g: int | None = None) -> list[str]:
    """The k nearest ids by the table's metric, computed here from ``get``."""
    records = [
        r for r in table.get(include_embeddings=True) if g is None or r.metadata.get("g") == g
    ]
    if not records:
        return []
    matrix = np.stack([np.asarray(r.embedding, dtype=np.float64) for r in records])
    query = q.astype(np.float64)
    if table.metric.value == "l2":
        dist = np.linalg.norm(matrix - query, axis=1)
    elif table.metric.value == "cosine":
        dist = 1 - matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    else:
        dist = -(matrix @ query)
    order = np.argsort(dist, kind="stable")[:k]
    return [records[i].id for i in order]


def _ids(hits: list[Any]) -> list[str]:
    return [h.id for h in hits]


def _fast_table(tmp_path, **kwargs: Any) -> tuple[VectorTable, np.random.Generator, str]:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    table = VectorTable(url, table_name="u", **kwargs)
    rng = np.random.default_rng(11)
    _fill(table, rng, 40, 6, "a")
    q = rng.normal(size=6).astype(np.float32)
    table.search(q, k=3)  # loads the snapshot
    table.search(q, k=3, filter={"g": 1})
    return table, rng, url


def _unchecked_answers(table: VectorTable, monkeypatch) -> list[bool]:
    """Record whether each search was answered by the unchecked way."""
    backend = type(table._backend)
    real = backend.search_unchecked
    answered: list[bool] = []

    def spy(self, *args: Any) -> Any:
        found = real(self, *args)
        answered.append(found is not None)
        return found

    monkeypatch.setattr(backend, "search_unchecked", spy)
    return answered


def test_a_loaded_table_searches_without_the_schema_check(tmp_path, monkeypatch):
    table, rng, _ = _fast_table(tmp_path)
    answered = _unchecked_answers(table, monkeypatch)
    q = rng.normal(size=6).astype(np.float32)
    assert _ids(table.search(q, k=5)) == _reference(table, q, 5)
    assert _ids(table.search(q, k=5, filter={"g": 2})) == _reference(table, q, 5, 2)
    assert answered == [True, True]
    table.close()


@pytest.mark.parametrize("dimension", [6, 3])
def test_a_table_recreated_by_another_object_is_noticed(tmp_path, dimension):
    table, rng, url = _fast_table(tmp_path)
    other = VectorTable(url, table_name="u")
    other.drop()
    _fill(other, rng, 9, dimension, "b")
    q = rng.normal(size=dimension).astype(np.float32)
    assert _ids(table.search(q, k=4)) == _reference(other, q, 4)
    assert _ids(table.search(q, k=4, filter={"g": 1})) == _reference(other, q, 4, 1)
    if dimension != 6:
        with pytest.raises(DimensionMismatchError, match=rf"VECTOR\({dimension}\)"):
            table.search(rng.normal(size=6).astype(np.float32), k=1)
    table.close()
    other.close()


def test_a_table_recreated_with_another_metric_is_searched_by_it(tmp_path, monkeypatch):
    """Same name, same dimension, same ids, l2 instead of cosine: a table opened without
    a metric must score by the new table's. The snapshot here is even loaded before this
    object noticed the change (a checked search racing the drop), so only the schema
    cookie read with the rows can tell: without it the answer would stand, by cosine."""
    table, rng, url = _fast_table(tmp_path)
    other = VectorTable(url, table_name="u", metric="l2")
    other.drop()
    _fill(other, rng, 40, 6, "a")
    q = rng.normal(size=6).astype(np.float32) * 10
    # the backend's search after a schema check that came just before the drop
    table._backend.search(table._state.table, Query(vector=q), SearchOptions(k=3))
    hits = table.search(q, k=5)
    assert table.metric.value == "l2"
    assert _ids(hits) == _reference(other, q, 5)
    (top,) = other.get([hits[0].id], include_embeddings=True)
    want = float(np.linalg.norm(np.asarray(top.embedding) - q))
    assert hits[0].distance == pytest.approx(want, rel=1e-5)
    table.close()
    other.close()


def test_a_table_whose_metric_came_from_its_record_still_notices_drops(tmp_path):
    """A table opened without a metric on an l2 table takes l2 from the table's record
    (a new backend): a drop and a re-creation with another dimension by another object
    must still be noticed (it used to fail with "holds vectors whose length is not 6")."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    rng = np.random.default_rng(4)
    first = VectorTable(url, table_name="m", metric="l2")
    _fill(first, rng, 20, 6, "a")
    table = VectorTable(url, table_name="m")
    q = rng.normal(size=6).astype(np.float32)
    assert _ids(table.search(q, k=3)) == _reference(first, q, 3)
    assert table.metric.value == "l2"
    other = VectorTable(url, table_name="m", metric="l2")
    other.drop()
    _fill(other, rng, 7, 4, "b")
    q4 = rng.normal(size=4).astype(np.float32)
    assert _ids(table.search(q4, k=3)) == _reference(other, q4, 3)
    assert table.dimension == 4
    for t in (first, table, other):
        t.close()


def test_a_table_dropped_by_another_object_answers_nothing(tmp_path):
    table, rng, url = _fast_table(tmp_path)
    VectorTable(url, table_name="u").drop()
    q = rng.normal(size=6).astype(np.float32)
    assert table.search(q, k=3) == []
    assert table.search(q, k=3, filter={"g": 1}) == []
    assert not table.exists()
    table.close()


@pytest.mark.parametrize(
    "ddl",
    [
        "ALTER TABLE u ADD COLUMN extra TEXT",
        "CREATE TABLE unrelated (x INTEGER)",
        "CREATE INDEX u_doc ON u (document)",
    ],
)
def test_schema_changes_beside_the_table_keep_answers_right(tmp_path, monkeypatch, ddl):
    table, rng, _ = _fast_table(tmp_path)
    q = rng.normal(size=6).astype(np.float32)
    other = sqlite3.connect(tmp_path / "u.db")
    with other:
        other.execute(ddl)
        other.execute("UPDATE u SET document = 'moved', meta = json_object('g', 9) WHERE id = 'a3'")
    other.close()
    answered = _unchecked_answers(table, monkeypatch)
    assert _ids(table.search(q, k=40, filter={"g": 9})) == ["a3"]
    assert table.search(q, k=40, filter={"g": 9})[0].document == "moved"
    assert _ids(table.search(q, k=5)) == _reference(table, q, 5)
    assert answered[0] is False  # the first search after the change: the checked way
    assert answered[-1] is True  # then the snapshot is trusted again
    table.close()


class _Cursor:
    def __init__(self, cursor: sqlite3.Cursor, before_rows: Any) -> None:
        self._cursor, self._before_rows = cursor, before_rows

    def execute(self, sql: str, params: Any = ()) -> _Cursor:
        if sql.startswith("SELECT rowid"):
            self._before_rows()
        self._cursor.execute(sql, params)
        return self

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def close(self) -> None:
        self._cursor.close()


class _Conn:
    """The watcher's connection, calling ``before_rows`` before the winners are read (and
    before the state is read when there is no winner)."""

    def __init__(self, conn: sqlite3.Connection, before_rows: Any) -> None:
        self._conn, self._before_rows = conn, before_rows

    def cursor(self) -> _Cursor:
        return _Cursor(self._conn.cursor(), self._before_rows)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if "pragma_data_version" in sql:
            self._before_rows()
        return self._conn.execute(sql, params)

    def close(self) -> None:
        self._conn.close()


def _recreate_same_ids(path: Any, document: str) -> None:
    """Drop and re-create ``u`` on another connection: same ids and vectors, same rowids,
    other documents and metadata (the rows the search will read by rowid exist)."""
    other = sqlite3.connect(path)
    with other:
        rows = other.execute("SELECT id, embedding, update_time FROM u ORDER BY rowid").fetchall()
        ddl = other.execute("SELECT sql FROM sqlite_master WHERE name = 'u'").fetchone()[0]
        other.execute("DROP TABLE u")
        other.execute(ddl)
        other.executemany(
            "INSERT INTO u (id, embedding, document, meta) VALUES (?, ?, ?, json_object('g', 1))",
            [(r[0], r[1], document) for r in rows],
        )
    other.close()


@pytest.mark.parametrize("filtered", [False, True, "none"])
def test_a_table_recreated_in_the_middle_of_a_search(tmp_path, filtered):
    """Right before the rows are read, another connection drops and re-creates the table
    with other documents and metadata (every row now in group 1): the search must answer
    the new state whole (new documents, the new filter membership), never the old
    snapshot's scores with the new rows, nor the old rows."""
    table, rng, _ = _fast_table(tmp_path)
    q = rng.normal(size=6).astype(np.float32)
    filters: dict[Any, Any] = {False: None, True: {"g": 2}, "none": {"g": 7}}
    watcher = table._backend.cache.watcher
    real = watcher._conn
    done: list[int] = []

    def before_rows() -> None:
        if not done:
            done.append(1)
            _recreate_same_ids(tmp_path / "u.db", "recreated")

    watcher._conn = _Conn(real, before_rows)
    try:
        hits = table.search(q, k=5, filter=filters[filtered])
    finally:
        watcher._conn = real
    assert done
    if filtered is True:
        assert hits == []  # every row is in group 1 now
    elif filtered == "none":
        assert hits == []
    else:
        assert _ids(hits) == _reference(table, q, 5)
        assert {h.document for h in hits} == {"recreated"}
        assert {h.metadata["g"] for h in hits} == {1}
    assert _ids(table.search(q, k=5, filter={"g": 1})) == _reference(table, q, 5, 1)
    table.close()


def test_the_unchecked_search_stands_only_under_the_noted_cookie(tmp_path):
    """``search_unchecked`` itself: a schema cookie other than the one noted gives None
    (the facade then checks the schema), the noted one an answer."""
    table, rng, _ = _fast_table(tmp_path)
    backend = table._backend
    q = rng.normal(size=6).astype(np.float32)
    options = SearchOptions(k=3)
    assert backend.search_unchecked(table._state.table, q, options) is not None
    seen = backend.cache.schema_seen
    backend.cache.schema_seen = seen - 1
    try:
        assert backend.search_unchecked(table._state.table, q, options) is None
    finally:
        backend.cache.schema_seen = seen
    table.close()


def test_bad_queries_keep_their_errors(tmp_path):
    """A wrong-dimension, NaN or all-zero query on a loaded table gives the same error
    as on a table not read yet (the checked way explains)."""
    table, rng, url = _fast_table(tmp_path)
    bad: list[Any] = [
        rng.normal(size=5).astype(np.float32),
        np.zeros(6, dtype=np.float32),
        np.array([np.nan] * 6, dtype=np.float32),
        [1.0] * 7,
        "not a vector",
    ]
    for query in bad:
        fresh = VectorTable(url, table_name="u")
        with pytest.raises((DimensionMismatchError, InvalidVectorError)) as cold:
            fresh.search(query, k=3)
        with pytest.raises(type(cold.value)) as warm:
            table.search(query, k=3)
        assert str(warm.value) == str(cold.value)
        fresh.close()
    table.close()


@pytest.mark.parametrize("how", ["search_cache", "memory"])
def test_no_unchecked_search_without_a_watched_snapshot(tmp_path, monkeypatch, how):
    if how == "memory":
        table = VectorTable("sqlite://", table_name="u")
    else:
        table = VectorTable(f"sqlite:///{tmp_path / 'n.db'}", table_name="u", search_cache=False)
    rng = np.random.default_rng(2)
    _fill(table, rng, 30, 6, "a")
    answered = _unchecked_answers(table, monkeypatch)
    q = rng.normal(size=6).astype(np.float32)
    for _ in range(2):
        assert _ids(table.search(q, k=4)) == _reference(table, q, 4)
        assert _ids(table.search(q, k=4, filter={"g": 3})) == _reference(table, q, 4, 3)
    assert answered == [False] * 4
    table.close()


def test_tidb_backend_never_searches_unchecked():
    backend = TiDBBackend.__new__(TiDBBackend)
    assert backend.search_unchecked(None, np.ones(3, dtype=np.float32), SearchOptions()) is None  # type: ignore[arg-type]


async def test_the_async_view_sees_a_recreated_table(tmp_path):
    table, rng, url = _fast_table(tmp_path)
    q = rng.normal(size=6).astype(np.float32)
    assert _ids(await table.aio.search(q, k=3)) == _reference(table, q, 3)
    other = VectorTable(url, table_name="u")
    other.drop()
    _fill(other, rng, 8, 6, "b")
    assert _ids(await table.aio.search(q, k=3)) == _reference(other, q, 3)
    assert _ids(table.search(q, k=3)) == _reference(other, q, 3)
    await table.aclose()
    other.close()


def test_a_fast_search_reads_once_and_sees_the_next_foreign_write(tmp_path):
    """The unchecked way after a foreign write: the next search's answer has it."""
    table, rng, _ = _fast_table(tmp_path)
    q = rng.normal(size=6).astype(np.float32)
    other = sqlite3.connect(tmp_path / "u.db")
    with other:
        other.execute("DELETE FROM u WHERE id IN (SELECT id FROM u LIMIT 10)")
    other.close()
    assert _ids(table.search(q, k=5)) == _reference(table, q, 5)
    assert table.count() == 30
    table.close()
