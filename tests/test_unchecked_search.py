"""A loaded table's search without the facade's schema check first (``_vector_search``).

The embedded fast search reads its winners' rows with the change token and the schema
cookie of the state they come from; its answer stands without the schema check only
when that cookie is the one the table's shape was read under. Anything else takes the
checked way, whose answers and errors are the ones a search always gave.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tidb_jina import DimensionMismatchError, InvalidVectorError
from tidb_jina.store import VectorTable
from tidb_jina.store import _backend_embedded as backend_module


def _table(tmp_path, n=50, d=8):
    table = VectorTable(f"sqlite:///{tmp_path / 'u.db'}", table_name="u")
    rng = np.random.default_rng(11)
    table.upsert(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        documents=[f"doc {i}" for i in range(n)],
        metadatas=[{"g": i % 5} for i in range(n)],
    )
    return table, rng


class _Checked:
    """Counts the checked searches (``EmbeddedBackend.search``) of one table."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = backend_module.EmbeddedBackend.search

        def search(backend, *args, **kwargs):
            self.count += 1
            return real(backend, *args, **kwargs)

        monkeypatch.setattr(backend_module.EmbeddedBackend, "search", search)


def _answer(hits):
    return [(h.id, h.document, h.distance) for h in hits]


def test_a_loaded_table_is_searched_without_the_check(tmp_path, monkeypatch):
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    expected = _answer(table.search(q, k=5, filter={"g": 2}))  # loads the table
    checked = _Checked(monkeypatch)
    cookie_reads = []
    table._backend.cache.watcher._conn.set_trace_callback(cookie_reads.append)
    assert _answer(table.search(q, k=5, filter={"g": 2})) == expected
    assert checked.count == 0
    assert not any(s.startswith("SELECT data_version, schema_version") for s in cookie_reads)
    table.close()


def test_a_schema_change_by_anyone_sends_the_search_the_checked_way(tmp_path, monkeypatch):
    """Another connection creates an unrelated table: the cookie moves, that search is
    checked (and answers rightly), and the next ones skip the check again."""
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    expected = _answer(table.search(q, k=5))
    checked = _Checked(monkeypatch)
    with sqlite3.connect(tmp_path / "u.db") as other:
        other.execute("CREATE TABLE unrelated (x)")
    other.close()
    assert _answer(table.search(q, k=5)) == expected
    assert checked.count == 1
    assert _answer(table.search(q, k=5)) == expected
    assert checked.count == 1
    table.close()


def test_a_stale_cookie_is_never_answered_unchecked(tmp_path):
    """The shape was read under another cookie than the rows' state (a table re-created
    between the shape's read and the snapshot's load): the unchecked search declines,
    even though the snapshot is the committed state (its token matches)."""
    table, rng = _table(tmp_path)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=3)
    backend, options, sa_table = table._backend, table._search_options(k=3), table.table
    assert backend.search_unchecked(sa_table, q, options) is not None
    backend.cache.schema_seen -= 1  # (``table.table`` would check the schema: not read)
    assert backend.search_unchecked(sa_table, q, options) is None
    table.close()


def test_a_table_recreated_with_the_same_dimension_gives_the_new_rows(tmp_path):
    """Same name, same dimension, same rowids, other vectors: the old snapshot's scores
    must never be paired with the new table's rows."""
    table = VectorTable(f"sqlite:///{tmp_path / 'u.db'}", table_name="u")
    eye = np.eye(4, dtype=np.float32)
    table.upsert(eye[:2], ids=["r0", "r1"], documents=["old 0", "old 1"])
    assert table.search(eye[0], k=1)[0].id == "r0"
    fresh = VectorTable(f"sqlite:///{tmp_path / 'u.db'}", table_name="u")
    fresh.drop()
    fresh.upsert([eye[1], eye[0]], ids=["new-a", "new-b"], documents=["a", "b"])
    fresh.close()
    hit = table.search(eye[0], k=1)[0]
    assert (hit.id, hit.document) == ("new-b", "b")
    assert hit.distance == pytest.approx(0.0, abs=1e-6)
    table.close()


def test_a_query_that_no_longer_fits_gets_the_checked_error(tmp_path):
    """The table was re-created with another dimension: a query of the old size is
    refused by the checked way (which reads the new shape), a query of the new size
    answers from the new table."""
    table, rng = _table(tmp_path, d=8)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=1)
    other = VectorTable(f"sqlite:///{tmp_path / 'u.db'}", table_name="u")
    other.drop()
    other.upsert(np.eye(16, dtype=np.float32)[:2], ids=["x", "y"])
    other.close()
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(16\)"):
        table.search(q, k=1)
    assert [h.id for h in table.search(np.eye(16, dtype=np.float32)[1], k=1)] == ["y"]
    table.close()


@pytest.mark.parametrize(
    ("query", "error", "match"),
    [
        (np.zeros(8, dtype=np.float32), InvalidVectorError, "all zeros"),
        (np.full(8, 1e-30, dtype=np.float32), InvalidVectorError, "squared length of 0"),
        (np.ones(7, dtype=np.float32), DimensionMismatchError, "8"),
        (np.array([np.nan] * 8, dtype=np.float32), InvalidVectorError, "NaN"),
    ],
    ids=["zeros", "underflow", "dimension", "nan"],
)
def test_bad_queries_get_the_same_errors(tmp_path, query, error, match):
    table, rng = _table(tmp_path)
    table.search(rng.normal(size=8).astype(np.float32), k=1)
    with pytest.raises(error, match=match):
        table.search(query, k=1)
    table.close()


# NumPy warns of the huge query's overflowing norm inside the cosine distances (as
# before this change; TiDB's float32 cosine distance of such a vector is 1 or NULL too)
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_huge_and_tiny_queries_are_still_searched(tmp_path):
    """The one-dot checks fall back to the exact ones where the dot overflows or comes
    near 0: such vectors are valid queries."""
    table, rng = _table(tmp_path)
    table.search(rng.normal(size=8).astype(np.float32), k=1)
    huge = np.full(8, 3e30, dtype=np.float32)  # its dot product overflows float32
    tiny = np.zeros(8, dtype=np.float32)
    tiny[0] = 1e-20  # square 1e-40: a float32 subnormal, not 0
    for query in (huge, tiny):
        hits = table.search(query, k=3)
        assert len(hits) == 3
    table.close()
