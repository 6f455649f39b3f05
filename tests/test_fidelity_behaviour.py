"""Issue 17 (TiDB) as behaviour: the same rules on every engine, with real SQL.

Runs on the embedded engine (memory and file) always, and on TiDB when
``TIDB_DATABASE_URL`` is set (the ``tidb`` marker; the statements are those
``test_tidb_fidelity.py`` pins on the wire). One table per test, dropped afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from tidb_jina import (
    ConfigurationError,
    InvalidInputError,
    InvalidVectorError,
    UnsupportedFeatureError,
)
from tidb_jina.store import _crud
from tidb_jina.store._tidb_names import TIDB_ONLY_RESERVED_WORDS

VECTORS = {"a": [1.0, 0.0, 0.0], "b": [0.8, 0.6, 0.0], "c": [0.6, 0.8, 0.0], "d": [0.0, 0.0, 1.0]}


def _fill(table, **extra):
    ids = list(VECTORS)
    table.upsert(list(VECTORS.values()), ids=ids, documents=ids, **extra)


def _insert_raw(table, rows):
    """Rows written by another tool: straight SQL, none of our checks."""
    with table.engine.begin() as conn:
        conn.execute(sa.insert(table.table), rows)


# --- 1. zero vectors --------------------------------------------------------------------


def test_zero_vectors_are_refused_on_cosine_and_stored_on_l2(make_table):
    table = make_table(dimension=3)
    with pytest.raises(InvalidVectorError, match="all zeros"):
        table.upsert([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], ids=["a", "z"])
    assert table.exists() is False, "refused before the table was created"
    _fill(table)
    with pytest.raises(InvalidVectorError, match="all zeros"):
        table.upsert([[0.0, 0.0, 0.0]], ids=["z"])
    with pytest.raises(InvalidVectorError, match="query vector is all zeros"):
        table.search([0.0, 0.0, 0.0])
    assert table.count() == 4
    l2 = make_table(table_name=f"{table.table_name}_l2", metric="l2")
    l2.upsert([[0.0, 0.0, 0.0]], ids=["z"])
    assert [h.id for h in l2.search([0.0, 0.0, 0.0], k=1)] == ["z"]


def test_vectors_whose_float32_length_is_zero_are_refused_on_cosine(make_table):
    # TiDB sums squares in float32 (pkg/types/vector.go): 1e-30 squared is 0 there, so
    # this vector's cosine distance would be 0 (a clamped x / 0) or NULL for every query.
    table = make_table(dimension=3)
    _fill(table)
    with pytest.raises(InvalidVectorError, match="squared length of 0 in float32"):
        table.upsert([[1e-30, 1e-30, 0.0]], ids=["tiny"])
    with pytest.raises(InvalidVectorError, match="query vector has a squared length of 0"):
        table.search([1e-30, 0.0, 0.0])
    assert table.count() == 4
    assert table.upsert([[1e-15, 1e-15, 0.0]], ids=["small"]) == ["small"], "still fine"
    assert table.upsert([[1e-30, 1.0, 0.0]], ids=["mixed"]) == ["mixed"], "one normal value"
    l2 = make_table(table_name=f"{table.table_name}_l2", metric="l2")
    assert l2.upsert([[1e-30, 1e-30, 0.0]], ids=["tiny"]) == ["tiny"], "L2 is not cosine"


def test_rows_without_a_cosine_distance_are_left_out_on_every_engine(make_table):
    table = make_table(dimension=3)
    _fill(table)
    zero = np.zeros(3, dtype=np.float32)
    _insert_raw(
        table,
        [{"id": f"z{i}", "embedding": zero, "document": "zero", "meta": {}} for i in range(3)],
    )
    assert table.count() == 7
    hits = table.search([1.0, 0.0, 0.0], k=4)
    assert [h.id for h in hits] == ["a", "b", "c", "d"], "k rows, none of them zero rows"
    assert all(np.isfinite(h.distance) for h in hits)
    assert [h.id for h in table.search([1.0, 0.0, 0.0], k=10)] == ["a", "b", "c", "d"]
    within = table.search([1.0, 0.0, 0.0], k=3, max_distance=1.5)
    assert [h.id for h in within] == ["a", "b", "c"], "a threshold keeps the k slots too"
    filtered = table.search([1.0, 0.0, 0.0], k=2, filter={"missing": {"$exists": False}})
    assert [h.id for h in filtered] == ["a", "b"]
    mmr = table.max_marginal_relevance_search([1.0, 0.0, 0.0], k=3, fetch_k=10)
    assert {h.id for h in mmr} <= set(VECTORS)


# --- 2. ids -----------------------------------------------------------------------------


def test_ids_that_differ_by_trailing_spaces_are_different_rows(make_table):
    table = make_table(dimension=3)
    assert table.upsert([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], ids=["a", "a "]) == ["a", "a "]
    assert table.count() == 2
    assert [r.id for r in table.get(["a "])] == ["a "]
    assert [h.id for h in table.search([0.0, 1.0, 0.0], k=1, ids=["a "])] == ["a "]
    assert table.delete(["a "]) == 1
    assert [r.id for r in table.get(["a", "a "])] == ["a"]


# --- 3. names TiDB reserves -------------------------------------------------------------


@pytest.mark.parametrize("word", sorted(TIDB_ONLY_RESERVED_WORDS))
def test_tables_and_metadata_keys_named_with_tidbs_reserved_words(make_table, word):
    table = make_table(table_name=word, dimension=3, indexed_key="ref_doc_id")
    metas = [{word: i, "ref_doc_id": "doc"} for i in range(4)]
    _fill(table, metadatas=metas)
    assert [h.id for h in table.search([1.0, 0.0, 0.0], k=2, filter={word: {"$gte": 1}})] == [
        "b",
        "c",
    ]
    assert table.count(filter={word: 3}) == 1
    assert table.delete(filter={"ref_doc_id": "doc", word: {"$lt": 2}}) == 2
    assert table.clear() == 2
    assert table.count() == 0  # the fixture's finalizer drops it (DROP TABLE `word`)


# --- 4. bounded deletes -----------------------------------------------------------------


def test_batched_deletes_report_the_total_and_keep_what_does_not_match(make_table):
    table = make_table(dimension=3)
    table._backend.delete_batch_rows = 7  # TiDB's real batches are 1,000 rows
    n = 60
    table.upsert(
        np.tile([1.0, 0.0, 0.0], (n, 1)),
        ids=[f"id-{i:03}" for i in range(n)],
        metadatas=[{"even": i % 2 == 0} for i in range(n)],
    )
    assert table.delete(filter={"even": True}) == 30
    assert table.count() == 30 and table.count(filter={"even": True}) == 0
    assert table.delete([f"id-{i:03}" for i in range(0, n, 3)]) == 10  # the odd ones of them
    assert table.clear() == 20
    assert table.count() == 0 and table.clear() == 0


def test_a_key_order_delete_is_exact_while_others_insert(tmp_path):
    """The batched walk with commits from another connection before every batch (real SQL
    on a file): rows present at the start go, rows past the walk stay, the total is
    exact, and the walk ends however many rows keep arriving."""
    from tidb_jina.store import VectorTable

    url = f"sqlite:///{tmp_path / 'walk.db'}"
    table = VectorTable(url, table_name="walk", dimension=3)
    other = VectorTable(url, table_name="walk", dimension=3)
    try:
        table.upsert(np.ones((30, 3)), ids=[f"m-{i:04}" for i in range(30)])
        inserted: list[list[str]] = []
        write = table._db.write

        def write_after_someone_else():  # another writer commits between our batches
            batch = [f"{p}-{len(inserted):04}" for p in ("a", "n", "z")]
            other.upsert(np.ones((3, 3)), ids=batch)
            inserted.append(batch)
            return write()

        table._db.write = write_after_someone_else  # type: ignore[method-assign]
        assert table._load() is not None
        deleted = _crud.delete_in_key_order(table._db, table.table, None, batch_rows=4)
        table._db.write = write  # type: ignore[method-assign]
        remaining = {r.id for r in table.get()}
        assert len(inserted) == 8, "31 rows to walk (30 + the first 'a'), 4 a transaction"
        assert not {f"m-{i:04}" for i in range(30)} & remaining, "every row of the start goes"
        assert {i for b in inserted for i in b[1:]} <= remaining, "rows past the end stay"
        assert inserted[0][0] not in remaining, "inserted ahead of the walk: deleted"
        assert {b[0] for b in inserted[1:]} <= remaining, "inserted behind it: kept"
        assert deleted == 30 + 3 * len(inserted) - len(remaining), "the total is exact"
    finally:
        table.close()
        other.close()


# --- 5. full-text -----------------------------------------------------------------------


@pytest.mark.tidb
def test_full_text_needs_its_index_on_tidb(make_table):
    table = make_table(dimension=3)
    if not table.is_tidb:
        pytest.skip("the embedded engine builds its FTS5 index itself")
    _fill(table)
    if not table.is_tidb_starter:
        with pytest.raises(UnsupportedFeatureError, match="Starter"):
            table.full_text_search("a")
        return
    with pytest.raises(ConfigurationError, match=r"create_full_text_index\(\)"):
        table.full_text_search("a")
    table.create_full_text_index()
    table.full_text_search("a")  # built in the background: results may still be empty


def test_bad_ids_are_input_errors_not_database_errors(make_table):
    table = make_table(dimension=3)
    with pytest.raises(InvalidInputError):
        table.upsert([[1.0, 0.0, 0.0]], ids=[""])


def test_a_new_tidb_table_reports_its_vector_index_or_why_it_has_none(make_table):
    table = make_table(dimension=3)
    if not table.is_tidb:
        pytest.skip("the embedded engine always searches exactly")
    _fill(table)
    status = table.index_status()
    assert status.kind == "hnsw" or (
        status.kind == "exact" and "create_vector_index()" in status.note
    ), status
    assert [h.id for h in table.search([1.0, 0.0, 0.0], k=2)] == ["a", "b"]
