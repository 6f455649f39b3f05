"""Metadata texts SQLite reads as JSON but orjson refuses, written by another tool.

A row whose ``meta`` is ``{"x": 1e400}`` (a number beyond float64), ``{"x": -1e400}`` or
an escaped lone surrogate is valid JSON to SQLite, so SQL filters match it; orjson
refuses it, and every read of such a row used to raise a raw ``orjson.JSONDecodeError``.
Now it reads as Python's ``json`` reads it (``inf``, ``-inf``, the surrogate), on every
read path, and filters on the key agree between the NumPy and the SQL engines. A text
that is not JSON at all is a ``SchemaError`` naming the row and the repair.
"""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest

from tidb_jina import SchemaError
from tidb_jina.store import VectorTable, _embedded, _fresh
from tidb_jina.store._types import load_metadata

N = 40
ODD = {
    "r3": '{"x": 1e400, "tag": "big"}',
    "r4": '{"x": -1e400, "tag": "small"}',
    "r5": '{"x": 7, "s": "\\ud800"}',
}
EXPECTED = {
    "r3": {"x": math.inf, "tag": "big"},
    "r4": {"x": -math.inf, "tag": "small"},
    "r5": {"x": 7, "s": "\ud800"},
}
# (filter, the ids it matches); x is i for the other rows
FILTERS = [
    ({"x": {"$gt": 1000}}, {"r3"}),
    ({"x": {"$gte": 39}}, {"r3", "r39"}),
    ({"x": {"$lt": -1}}, {"r4"}),
    ({"x": {"$lte": 0}}, {"r0", "r4"}),
    ({"x": {"$ne": 7}}, {f"r{i}" for i in range(N)} - {"r5", "r7"}),
    ({"x": {"$in": [7, 1]}}, {"r1", "r5", "r7"}),
    ({"x": {"$nin": [7, 1]}}, {f"r{i}" for i in range(N)} - {"r1", "r5", "r7"}),
    ({"tag": "big"}, {"r3"}),
    ({"$and": [{"x": {"$gt": 30}}, {"x": {"$lt": 1e300}}]}, {f"r{i}" for i in range(31, N)}),
]


def _url(tmp_path):
    return f"sqlite:///{tmp_path / 'odd.db'}"


def _fill(tmp_path, texts=ODD):
    """A table of N rows (x = i), then ``texts`` written by another tool (sqlite3)."""
    table = VectorTable(_url(tmp_path), table_name="t")
    rng = np.random.default_rng(0)
    table.upsert(
        rng.normal(size=(N, 4)).astype(np.float32),
        ids=[f"r{i}" for i in range(N)],
        documents=[f"doc {i}" for i in range(N)],
        metadatas=[{"x": i} for i in range(N)],
    )
    table.close()
    with sqlite3.connect(tmp_path / "odd.db") as other:
        for id_, text in texts.items():
            other.execute("UPDATE t SET meta = ? WHERE id = ?", (text, id_))
    other.close()
    return rng


def _metadata_of(hits):
    return {h.id: h.metadata for h in hits if h.id in EXPECTED}


def _same(got, want):
    assert got.keys() == want.keys()
    for key, meta in want.items():
        assert got[key].keys() == meta.keys()
        for name, value in meta.items():
            assert got[key][name] == value, (key, name)


def test_load_metadata_falls_back_to_the_standard_library():
    assert load_metadata('{"a": 1}') == {"a": 1}
    assert load_metadata('{"a": 1e400}') == {"a": math.inf}
    assert load_metadata('{"a": -1e400}') == {"a": -math.inf}
    assert load_metadata('{"a": "\\udc00"}') == {"a": "\udc00"}
    assert load_metadata(3) == 3  # the text "3" stored as a number (numeric affinity)
    with pytest.raises(SchemaError, match=r"'r9'.*not JSON.*json_valid\(meta\) = 0"):
        load_metadata("{not json", "r9")


@pytest.mark.parametrize("path", ["fast", "general", "sql"])
def test_search_reads_the_rows_on_every_path(tmp_path, path, monkeypatch):
    rng = _fill(tmp_path)
    cache = path != "sql"
    table = VectorTable(_url(tmp_path), table_name="t", search_cache=cache)
    query = rng.normal(size=4).astype(np.float32)
    table.search(query, k=1)  # the snapshot is loaded (fast path from now on)
    used = []
    real = _fresh._read_rows

    def spy(*args):
        used.append(True)
        return real(*args)

    monkeypatch.setattr(_fresh, "_read_rows", spy)
    if path == "general":
        monkeypatch.setattr(_fresh, "search_fresh", lambda *a: None)
        monkeypatch.setattr("tidb_jina.store._backend_embedded.search_fresh", lambda *a: None)
    hits = table.search(query, k=N)
    assert bool(used) == (path == "fast")
    _same(_metadata_of(hits), EXPECTED)
    many = table.search_many([query, -query], k=N)
    assert all(_metadata_of(h).keys() == EXPECTED.keys() for h in many)
    table.close()


def test_get_reads_the_rows(tmp_path):
    _fill(tmp_path)
    table = VectorTable(_url(tmp_path), table_name="t")
    _same({r.id: r.metadata for r in table.get(list(EXPECTED))}, EXPECTED)
    big = table.get(filter={"x": {"$gt": 1000}})
    _same({r.id: r.metadata for r in big}, {"r3": EXPECTED["r3"]})
    table.close()


@pytest.mark.parametrize("columns", ["from the load", "lazy SQL pass", "SQL filter"])
def test_filters_on_the_key_agree_between_engines(tmp_path, columns, monkeypatch):
    """``$gt`` / ``$lt`` / ``$in`` against +-inf: the NumPy columns (built by the load
    from the metadata texts, or by the lazy ``json_extract`` pass) and SQL agree."""
    rng = _fill(tmp_path)
    if columns == "lazy SQL pass":
        monkeypatch.setattr(_embedded, "META_TEXT_BYTES", 0)
    table = VectorTable(_url(tmp_path), table_name="t", search_cache=columns != "SQL filter")
    query = rng.normal(size=4).astype(np.float32)
    table.search(query, k=1)
    snap = table._backend.cache.snapshot
    for flt, want in FILTERS:
        got = {h.id for h in table.search(query, k=N, filter=flt)}
        assert got == want, flt
        assert table.count(filter=flt) == len(want), flt  # SQL, always
        assert {r.id for r in table.get(filter=flt)} == want, flt
    if columns != "SQL filter":  # infinities compare as typed float64 (no object path)
        assert isinstance(snap.extras["columns"]["x"].typed.numbers, np.ndarray)
    table.close()


def test_langchain_store_returns_the_values_json_gives(tmp_path):
    from langchain_core.embeddings import DeterministicFakeEmbedding

    from langchain_tidb_jina import TiDBVectorStore

    _fill(tmp_path)
    store = TiDBVectorStore(
        embedding=DeterministicFakeEmbedding(size=4),
        connection_string=_url(tmp_path),
        table_name="t",
    )
    docs = store.similarity_search("anything", k=N, filter={"x": {"$gt": 1000}})
    assert [d.metadata for d in docs] == [{"x": math.inf, "tag": "big"}]
    store.close()


@pytest.mark.parametrize("cache", [True, False])
def test_metadata_that_is_not_json_names_the_row(tmp_path, cache):
    """A text SQLite refuses too: a clear error with the row's id on the search paths."""
    rng = _fill(tmp_path, {"r8": "{not json"})
    table = VectorTable(_url(tmp_path), table_name="t", search_cache=cache)
    query = rng.normal(size=4).astype(np.float32)
    with pytest.raises(SchemaError, match=r"'r8'.*not JSON"):
        table.search(query, k=N)
    with pytest.raises(SchemaError, match="not JSON"):
        table.get(["r8"])
    assert {h.id for h in table.search(query, k=N, ids=["r1", "r2"])} == {"r1", "r2"}
    table.close()
