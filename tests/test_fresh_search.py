"""A search on a fresh snapshot skips the transaction, and answers as the general path.

``tidb_jina.store._fresh``: when the in-memory snapshot is the newest committed state,
a search is scored and its rows read in one plain SELECT, with the change token checked
before and after. Each test compares with the general path (the fast path switched off)
or checks the fallback when something changes in between.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from _begins import Begins

from tidb_jina.store import VectorTable, _fresh
from tidb_jina.store import _backend_embedded as backend_module

METRICS = ["cosine", "l2", "inner_product"]


def _table(tmp_path, metric="cosine", n=400, d=8, seed=0):
    table = VectorTable(f"sqlite:///{tmp_path / 'f.db'}", table_name="f", metric=metric)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    table.upsert(
        vectors,
        ids=[f"r{i}" for i in range(n)],
        documents=[f"doc {i}" for i in range(n)],
        metadatas=[{"g": i % 10, "name": f"n{i % 7}", "flag": i % 2 == 0} for i in range(n)],
    )
    return table, rng


def _answer(table, query, **kw):
    return [(h.id, h.document, h.metadata, round(h.distance, 5)) for h in table.search(query, **kw)]


@pytest.mark.parametrize("metric", METRICS)
def test_a_fresh_snapshot_is_searched_without_a_transaction(tmp_path, monkeypatch, metric):
    table, rng = _table(tmp_path, metric)
    queries = rng.normal(size=(12, 8)).astype(np.float32)
    filters = [None, {"g": 3}, {"name": {"$in": ["n1", "n2"]}}, {"flag": True, "g": {"$gte": 5}}]
    for f in filters:  # the general path loads the snapshot and the filter columns
        table.search(queries[0], k=5, filter=f)
    begins = Begins(table.engine)
    fast = [_answer(table, q, k=5, filter=f) for q in queries for f in filters]
    assert begins.count == 0  # every one of them took the fast path
    begins.close()
    monkeypatch.setattr(backend_module, "search_fresh", lambda *a, **k: None)
    general = [_answer(table, q, k=5, filter=f) for q in queries for f in filters]
    assert fast == general
    assert all(len(answer) == 5 for answer in fast[::4])


def test_cases_the_fast_path_leaves_to_the_general_one(tmp_path):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)
    begins = Begins(table.engine)
    table.search(q, k=3, filter={"never_read": 1})  # a key not in memory yet: SQL reads it
    table.search(q, k=3, ids=["r1", "r2"])
    table.search(q, k=3, include_embeddings=True)
    assert begins.count == 3
    begins.close()


def test_a_commit_between_token_and_rows_falls_back_to_the_new_state(tmp_path, monkeypatch):
    """Another connection commits while the fast path reads the winners' rows: the token
    check after the SELECT sees it, and the general path answers from the new state."""
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    before = _answer(table, q, k=3)
    winner = before[0][0]
    real = _fresh._read_rows
    path = str(tmp_path / "f.db")

    def foreign_write_then_read(cache, tbl, rowids):
        # the rows (and the token read with them) come after the commit
        with sqlite3.connect(path) as other:  # another process would do the same
            other.execute("UPDATE f SET document = 'changed' WHERE id = ?", (winner,))
        return real(cache, tbl, rowids)

    monkeypatch.setattr(_fresh, "_read_rows", foreign_write_then_read)
    after = _answer(table, q, k=3)
    monkeypatch.setattr(_fresh, "_read_rows", real)
    assert after[0][0] == winner and after[0][1] == "changed"
    assert _answer(table, q, k=3) == after


def test_a_driver_error_in_the_fast_path_falls_back(tmp_path, monkeypatch):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    expected = _answer(table, q, k=4)

    def locked(cache, tbl, rowids):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(_fresh, "_read_rows", locked)
    assert _answer(table, q, k=4) == expected


def test_own_writes_are_seen_at_once(tmp_path):
    """An upsert or delete of this process is searched right after it returns."""
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=1)
    table.upsert([q], ids=["exact"], documents=["the query itself"], metadatas=[{"g": 3}])
    hit = table.search(q, k=1, filter={"g": 3})[0]
    assert (hit.id, hit.document) == ("exact", "the query itself")
    table.delete(ids=["exact"])
    assert table.search(q, k=1, filter={"g": 3})[0].id != "exact"


def test_searches_go_the_general_way_after_a_foreign_commit_overtook_one(tmp_path, monkeypatch):
    """Under steady foreign writes most transaction-free searches would be overtaken by
    a commit and scored twice: after a fast search another connection's commit
    overtook, searches take the general path for ``BUSY_SECONDS``, then the fast one.
    A write of this process does not send them away (``_overtaken``)."""
    monkeypatch.setattr(_fresh, "BUSY_SECONDS", 0.3)
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)
    begins = Begins(table.engine)
    table.search(q, k=3)
    assert begins.count == 0
    table.upsert(rng.normal(size=(2, 8)).astype(np.float32), ids=["w1", "w2"])
    writes = begins.count  # the upsert's own transactions
    assert writes >= 1
    before = begins.count
    expected = _answer(table, q, k=3)
    assert begins.count == before  # our own write: still the fast path

    real = _fresh._read_rows
    path = str(tmp_path / "f.db")
    bystander = next(f"r{i}" for i in range(400) if f"r{i}" not in {a[0] for a in expected})

    def overtaken(cache, tbl, rowids):
        with sqlite3.connect(path) as other:
            other.execute("UPDATE f SET document = 'changed' WHERE id = ?", (bystander,))
        return real(cache, tbl, rowids)

    monkeypatch.setattr(_fresh, "_read_rows", overtaken)
    assert _answer(table, q, k=3) == expected  # overtaken: answered by the general path
    monkeypatch.setattr(_fresh, "_read_rows", real)
    before = begins.count
    table.search(q, k=3)
    assert begins.count == before + 1  # still busy after being overtaken
    begins.close()
