"""The fixed cost of a search on a fresh snapshot (issue 18: the 1% filter).

A fast search (``_fresh``) looks at the schema once, reads the change token, scores,
then reads the winners' rows and the token again on the watcher's own connection
(``ChangeWatcher.read_then_token``): no pool checkout, no transaction. The rows are
read without a memory map, so the file pages they touch never pile up in the resident
memory (``test_fast_search_resident``). The statement text is cached by table name,
keeping no ``sa.Table`` alive.
"""

from __future__ import annotations

import gc
import sqlite3
import weakref

import numpy as np
import pytest
import sqlalchemy as sa

from tidb_jina.store import VectorTable, _fresh


def _table(tmp_path, n=300, d=8):
    table = VectorTable(f"sqlite:///{tmp_path / 'o.db'}", table_name="o")
    rng = np.random.default_rng(3)
    table.upsert(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        documents=[f"doc {i}" for i in range(n)],
        metadatas=[{"g": i % 10} for i in range(n)],
    )
    return table, rng


def _answer(hits):
    return [(h.id, h.document, h.metadata, h.distance) for h in hits]


def test_a_fast_search_looks_at_the_schema_once_and_checks_out_nothing(tmp_path):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    expected = _answer(table.search(q, k=5, filter={"g": 3}))  # loads the snapshot
    statements: list[str] = []
    table._backend.cache.watcher._conn.set_trace_callback(statements.append)
    checkouts = []
    sa.event.listen(table.engine, "checkout", lambda *a: checkouts.append(1))
    assert _answer(table.search(q, k=5, filter={"g": 3})) == expected
    assert checkouts == []  # the rows came from the watcher's connection
    own = [s for s in statements if not s.startswith("--")]  # "--": a pragma function's
    # One statement, one read transaction (four until issue 18's sixth round): the rows,
    # with the change token and the schema cookie of the state they come from
    assert len(own) == 1
    assert own[0].startswith("SELECT rowid")
    assert "data_version" in own[0] and "schema_version" in own[0]
    table.close()


def test_rows_read_on_the_watcher_equal_the_general_paths(tmp_path):
    """Every answer equals the general path's, and a foreign commit plus a checkpoint
    (the file's pages change under the watcher's page cache) is seen."""
    table, rng = _table(tmp_path)
    general = VectorTable(f"sqlite:///{tmp_path / 'o.db'}", table_name="o", search_cache=False)
    for i in range(40):
        q = rng.normal(size=8).astype(np.float32)
        flt = {"g": i % 10}
        assert _answer(table.search(q, k=7, filter=flt)) == _answer(
            general.search(q, k=7, filter=flt)
        )
    q = rng.normal(size=8).astype(np.float32)
    first = table.search(q, k=1)[0]
    with sqlite3.connect(tmp_path / "o.db") as other:
        other.execute("UPDATE o SET document = 'changed' WHERE id = ?", (first.id,))
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()
    for _ in range(2):  # the general path after the commit, then the fast one again
        hit = table.search(q, k=1)[0]
        assert (hit.id, hit.document) == (first.id, "changed")
    general.close()
    table.close()


def test_a_closed_watcher_sends_the_search_the_general_way(tmp_path):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    expected = _answer(table.search(q, k=4))
    cache, sa_table = table._backend.cache, table.table
    cache.watcher.close()  # e.g. close() racing a search in flight
    assert _fresh._read_rows(cache, sa_table, np.array([1, 2])) is None
    assert _answer(table.search(q, k=4)) == expected
    table.close()


def test_the_statement_cache_keeps_no_table_alive(tmp_path):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)  # loads the snapshot: the next search is a fast one
    _fresh._rows_sql_for.cache_clear()
    table.search(q, k=3)
    assert _fresh._rows_sql_for.cache_info().currsize == 1  # made by this table's search
    ref = weakref.ref(table.table)
    table.close()
    del table
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("name", ["order", "Group_1"])  # a keyword, mixed case
def test_the_cached_statement_quotes_the_table_name(tmp_path, name):
    table = VectorTable(f"sqlite:///{tmp_path / 'q.db'}", table_name=name)
    table.upsert(np.eye(3, dtype=np.float32), ids=["x", "y", "z"], metadatas=[{"k": 1}] * 3)
    table.search([1.0, 0.0, 0.0], k=1)
    hit = table.search([0.0, 1.0, 0.0], k=1)[0]
    assert (hit.id, hit.metadata) == ("y", {"k": 1})
    table.close()
