"""Review of issue 18's sixth round: ``$eq`` from postings gives exactly the mask's rows.

A metadata filter is an access-control boundary (one tenant's rows, never another's), so
the postings (``_filter_typed.Postings``, used by ``_filter_numpy.positions`` for a single
top-level ``$eq``) are checked against a brute-force reference written here from the
filter semantics (one JSON type, ``1 == 1.0``, ``True != 1``), for adversarial columns:
numbers at the int16 edges, -0.0, floats and integers mixed, numbers beside strings,
booleans, null, arrays and missing values in one key, odd strings; with and without dead
rows; on the column's first, second and later equalities (postings are made at the
second), on a prepared column (made at load) and on a lazy one. Then the same end to end
through ``VectorTable`` on both search paths, across writes by this object and by another
connection.
"""

from __future__ import annotations

import itertools
import json
import sqlite3

import numpy as np
import pytest
from _filter_reference import _kind  # JSON kind of a decoded value (missing: "object")

from tidb_jina.store import VectorTable
from tidb_jina.store._filter_numpy import NUMBER, STRING, KeyColumn, mask, positions
from tidb_jina.store._filter_tree import Pred, parse_filter
from tidb_jina.store._filter_typed import Postings, prepare
from tidb_jina.store._meta_columns import _column

_MISSING = object()

# (json_type, value) pairs as SQLite's json_type / json_extract give them
_NUMBERS = [
    0,
    1,
    -1,
    7,
    32766,
    32767,
    -32767,
    255,
    -256,
    1000,
]
_WIDE = [32768, -32768, -32769, 65535, 2**31, 2**53 - 1, -(2**53 - 1)]
_FLOATS = [0.5, -0.0, 1.0, 7.0, 32767.0, 1e-300, 2.5e10]
_STRINGS = ["", "a", "A", "a ", " a", "tenant-1", "tenant-10", "é", "e\u0301", "😀", "1", "[]"]
_PROBES = [
    *[0, -0.0, 0.0, 1, 1.0, -1, 7, 7.0, 7.5, 32766, 32767, 32767.0, 32768, -32767, -32768],
    *[-32769, 65535, 2**31, 2**53 - 1, -(2**53 - 1), 2**53, 2**53 + 1, 2**63 - 1],
    *[1e-300, 2.5e10, 0.5, 1e308, -1e308, 255, -256, 1000],
    *_STRINGS,
    *["b", "tenant-2", "zzz", "\U0010ffff"],
]


def _expected(raw: list[object], alive: np.ndarray | None, value: object) -> list[int]:
    return [
        i
        for i, v in enumerate(raw)
        if (alive is None or alive[i]) and _kind(v) == _kind(value) and v == value
    ]


def _sql_pair(value: object) -> tuple[str | None, object]:
    """What SQLite's json_type / json_extract give for a decoded value."""
    if value is _MISSING:
        return None, None
    if value is None:
        return "null", None
    if value is True:
        return "true", 1
    if value is False:
        return "false", 0
    if isinstance(value, int):
        return "integer", value
    if isinstance(value, float):
        return "real", value
    if isinstance(value, str):
        return "text", value
    return "array", json.dumps(value, separators=(",", ":"))


def _column_of(raw: list[object], prepared: bool) -> KeyColumn:
    pairs = [_sql_pair(v) for v in raw]
    col = KeyColumn([t for t, _ in pairs], [v for _, v in pairs])
    if prepared:  # as the load makes it (``_meta_columns``): typed forms and postings
        prepare(col.typed, col.kind == NUMBER, col.kind == STRING, col.values)
    return col


def _random_columns() -> list[list[object]]:
    rng = np.random.default_rng(18)
    pools = {
        "int16": _NUMBERS,
        "wide": _NUMBERS + _WIDE,
        "floats": _NUMBERS + _FLOATS,
        "strings": _STRINGS,
        "mixed": _NUMBERS + _STRINGS + [True, False, None, _MISSING, [1], [], {"a": 1}],
        "bools": [True, False, 0, 1, None, _MISSING],
        "sparse": [_MISSING] * 20 + [3, "3"],
    }
    out = []
    for pool in pools.values():
        for n in (1, 7, 300):
            picks = rng.integers(0, len(pool), size=n)
            out.append([pool[i] for i in picks])
    out.append([_MISSING] * 10)  # no value at all
    out.append([32767, -32767] * 5)  # exactly the edges
    out.append([32767, -32768])  # one past an edge: no number postings
    out.append([65535, -1, 1, 32768, 0] * 3)  # beyond int16 (as int16: -1 and -32768)
    out.append([1, 7.5, 7, 2])  # one number is not an integer
    out.append([1, 2**53 + 1])  # a number float64 cannot hold: the object path
    return out


@pytest.mark.parametrize("prepared", [False, True])
@pytest.mark.parametrize("column", range(len(_random_columns())))
def test_postings_give_exactly_the_reference_rows(column, prepared):
    raw = _random_columns()[column]
    rng = np.random.default_rng(column)
    dead = rng.random(len(raw)) < 0.3
    for alive in (None, ~dead):
        col = _column_of(raw, prepared)
        for value, _ in itertools.product(_PROBES, range(3)):  # first, second, later
            node = Pred("k", "eq", value)
            want = _expected(raw, alive, value)
            got = positions(node, lambda _key, c=col: c, len(raw), alive)
            assert got.tolist() == want, (raw, value)
            matched = mask(node, lambda _key, c=col: c, len(raw))
            if alive is not None:
                matched = matched & alive
            assert np.flatnonzero(matched).tolist() == want, (raw, value)


def test_postings_are_made_and_used_from_the_second_equality():
    raw: list[object] = [5, "x", 5, 6, "x", None, True]
    col = _column_of(raw, prepared=False)
    node = Pred("k", "eq", 5)
    assert positions(node, lambda _key: col, len(raw), None).tolist() == [0, 2]
    assert col.typed.number_rows is False  # one equality: no postings yet
    assert positions(node, lambda _key: col, len(raw), None).tolist() == [0, 2]
    assert isinstance(col.typed.number_rows, Postings)
    # the answer now really comes from the postings: corrupt them, see it
    col.typed.number_rows = Postings(np.array([5], dtype=np.int16), np.array([3]))
    assert positions(node, lambda _key: col, len(raw), None).tolist() == [3]


def test_postings_handed_out_are_never_written_through():
    raw: list[object] = [1, 1, 2, 1]
    col = _column_of(raw, prepared=True)
    got = positions(Pred("k", "eq", 1), lambda _key: col, len(raw), None)
    with pytest.raises(ValueError, match="read-only"):
        got[0] = 3
    again = positions(Pred("k", "eq", 1), lambda _key: col, len(raw), None)
    assert again.tolist() == [0, 1, 3]


def test_the_load_path_columns_match_the_reference():
    """Columns as the vector load builds them (``_meta_columns._column``: orjson's values,
    postings made at once), including many distinct strings (then the strings are made
    lazily and their postings at the second equality)."""
    dicts = [
        {"k": v}
        for v in [3, -32767, 32767, 3, "a", "b", "", True, None, [1], "a"]
        + [f"s{i}" for i in range(40)]
    ]
    dicts += [{} for _ in range(5)]
    raw: list[object] = [d.get("k", _MISSING) for d in dicts]
    col = _column("k", dicts, len(dicts), [], None)
    assert col is not None
    assert isinstance(col.typed.number_rows, Postings)
    for value in [3, 3.0, -32767, 32767, 32768, "a", "", "s7", "zz", 1, 0]:
        for _ in range(3):
            got = positions(Pred("k", "eq", value), lambda _key: col, len(raw), None)
            assert got.tolist() == _expected(raw, None, value), value


def test_only_a_single_top_level_equality_uses_postings(monkeypatch):
    """``$ne``, ``$nin``, ``$not``, ``$in`` and an ``$eq`` inside ``$and``/``$or`` go
    through the mask as before: poisoned postings change none of them."""
    raw: list[object] = [1, 2, 1, "1", None, _MISSING, True, 1.0, 2]
    col = _column_of(raw, prepared=True)
    col.typed.number_rows = Postings(np.array([1], dtype=np.int16), np.array([8]))
    filters = {
        '{"k": {"$ne": 1}}': [1, 3, 4, 5, 6, 8],
        '{"k": {"$nin": [1]}}': [1, 3, 4, 5, 6, 8],
        '{"$not": {"k": 1}}': [1, 3, 4, 5, 6, 8],
        '{"k": {"$in": [1]}}': [0, 2, 7],
        '{"$and": [{"k": 1}, {"k": {"$exists": true}}]}': [0, 2, 7],
        '{"$or": [{"k": 1}, {"k": "1"}]}': [0, 2, 3, 7],
    }
    for text, want in filters.items():
        parsed = parse_filter(json.loads(text))
        assert parsed is not None
        got = positions(parsed, lambda _key: col, len(raw), None)
        assert got.tolist() == want, text
    # and the single equality does use them (the poison shows): the test can fail
    parsed = parse_filter({"k": 1})
    assert parsed is not None
    assert positions(parsed, lambda _key: col, len(raw), None).tolist() == [8]


# --- end to end ------------------------------------------------------------------------

_META_VALUES: list[object] = [
    0,
    1,
    -1,
    32767,
    -32767,
    2,
    "t1",
    "t2",
    "",
    "é",
    True,
    False,
    None,
    [1],
]


def _metas(rng: np.random.Generator, n: int, pool: list[object]) -> list[dict[str, object]]:
    out = []
    for i in range(n):
        pick = pool[int(rng.integers(0, len(pool) + 1)) - 1] if i % 5 else _MISSING
        out.append({"i": i} if pick is _MISSING else {"i": i, "t": pick})
    return out


def _reference(table: VectorTable, value: object) -> list[str]:
    return sorted(
        r.id
        for r in table.get()
        if _kind(r.metadata.get("t", _MISSING)) == _kind(value)
        and r.metadata.get("t", _MISSING) == value
    )


@pytest.mark.parametrize("pool", ["int16", "wide", "mixed"])
def test_equality_search_matches_the_reference_across_writes(tmp_path, pool):
    """Every tenant value through ``search`` (fast path and ``search_cache=False``),
    ``count`` / ``get`` by filter, before and after this object's upserts (a row moved
    to another tenant keeps its old version's posting: it must not show) and deletes, and
    after another connection's write."""
    pools = {
        "int16": [0, 1, -1, 32767, -32767, 2],
        "wide": [0, 1, 32768, 2**40, 2.5],
        "mixed": _META_VALUES,
    }
    values = pools[pool]
    rng = np.random.default_rng(7)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    n = 120
    fast = VectorTable(url, table_name="p")
    fast.upsert(
        rng.normal(size=(n, 8)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        metadatas=_metas(rng, n, values),
    )
    slow = VectorTable(url, table_name="p", search_cache=False)
    q = rng.normal(size=8).astype(np.float32)
    probes = [*values, 1.0, -0.0, 3, "t3", 32768.0]

    def check() -> None:
        for value in probes:
            if isinstance(value, list) or value is None:
                continue
            want = _reference(slow, value)
            for _ in range(2):  # first and second equality on the column
                got = sorted(r.id for r in fast.search(q, k=1000, filter={"t": value}))
                assert got == want, value
            assert sorted(r.id for r in slow.search(q, k=1000, filter={"t": value})) == want
            assert fast.count(filter={"t": value}) == len(want)

    check()
    # this object's writes: move rows between tenants, add rows, delete some
    moved = [f"r{i}" for i in range(0, n, 7)]
    fast.upsert(
        rng.normal(size=(len(moved), 8)).astype(np.float32),
        ids=moved,
        metadatas=[{"t": values[(i + 1) % len(values)]} for i in range(len(moved))],
    )
    fast.upsert(
        rng.normal(size=(10, 8)).astype(np.float32),
        ids=[f"new{i}" for i in range(10)],
        metadatas=[{"t": values[i % len(values)]} for i in range(10)],
    )
    fast.delete(ids=[f"r{i}" for i in range(1, n, 11)])
    check()
    # another connection's write: a row changes tenant behind this object's back
    other = sqlite3.connect(tmp_path / "p.db")
    with other:
        other.execute("UPDATE p SET meta = json_object('t', 'intruder') WHERE id = 'r3'")
    other.close()
    check()
    assert [r.id for r in fast.search(q, k=1000, filter={"t": "intruder"})] == ["r3"]
    fast.close()
    slow.close()


def _tenant_rows(tenants: list[object], value: object) -> list[int]:
    return [i for i, t in enumerate(tenants) if _kind(t) == _kind(value) and t == value]


_TENANTS: list[object] = [1, 2, "1", 1.0, True, 32767, -32767, 0, -0.0, "", None]
_TENANT_PROBES: list[object] = [1, 2, "1", True, 32767, -32767, 0, -0.0, "", 3, 32768]


def test_langchain_equality_filters_match_the_reference(tmp_path):
    """LangChain's store passes its filter dict through: the same postings answer."""
    from langchain_core.embeddings import Embeddings

    from langchain_tidb_jina import TiDBVectorStore

    class _Embed(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0 + i % 5, 1.0, float(i % 3)] for i, _ in enumerate(texts)]

        def embed_query(self, text: str) -> list[float]:
            return [1.0, 1.0, 1.0]

    store = TiDBVectorStore(f"sqlite:///{tmp_path / 'lc.db'}", embedding=_Embed(), table_name="lc")
    tenants = _TENANTS * 3
    store.add_texts(
        [f"text {i}" for i in range(len(tenants))],
        metadatas=[{"tenant": t} for t in tenants],
    )
    for value in _TENANT_PROBES:
        want = sorted(f"text {i}" for i in _tenant_rows(tenants, value))
        for _ in range(3):
            docs = store.similarity_search("q", k=100, filter={"tenant": value})
            assert sorted(d.page_content for d in docs) == want, value


def test_llama_index_equality_filters_match_the_reference(tmp_path):
    """LlamaIndex's ``FilterOperator.EQ`` on a store of nodes (metadata held beside a
    serialized node: its columns are read lazily by SQL, then kept)."""
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import (
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
    )

    from llama_index_tidb_jina import TiDBVectorStore

    store = TiDBVectorStore(f"sqlite:///{tmp_path / 'li.db'}", table_name="li")
    tenants = [t for t in _TENANTS if t is not None] * 3
    store.add(
        [
            TextNode(
                text=f"text {i}",
                id_=f"n{i}",
                metadata={"tenant": t},
                embedding=[1.0 + i % 5, 1.0, float(i % 3)],
            )
            for i, t in enumerate(tenants)
        ]
    )
    for value in [v for v in _TENANT_PROBES if not isinstance(v, bool)]:
        want = sorted(f"n{i}" for i in _tenant_rows(tenants, value))
        query = VectorStoreQuery(
            query_embedding=[1.0, 1.0, 1.0],
            similarity_top_k=100,
            filters=MetadataFilters(
                filters=[MetadataFilter(key="tenant", value=value, operator=FilterOperator.EQ)]
            ),
        )
        for _ in range(3):
            found = store.query(query)
            assert sorted(found.ids or []) == want, value


def test_zero_and_sign_spellings_of_one_integer_share_a_posting():
    raw: list[object] = [0, -0.0, 0.0, 1.0, 1, 2, "0", False, True]
    for prepared in (False, True):
        col = _column_of(raw, prepared)
        for value in [0, -0.0, 1, 1.0, 2.0, "0", 3]:
            for _ in range(3):
                got = positions(Pred("k", "eq", value), lambda _key, c=col: c, len(raw), None)
                assert got.tolist() == _expected(raw, None, value), value


def test_columns_evicted_and_read_again_keep_answering_right(tmp_path, monkeypatch):
    """A column cache too small for two columns: each search on one key evicts the
    other, which is read again (a new column, its postings made anew)."""
    from tidb_jina.store import _embedded

    rng = np.random.default_rng(9)
    url = f"sqlite:///{tmp_path / 'e.db'}"
    table = VectorTable(url, table_name="e")
    n = 200
    metas: dict[str, dict[str, object]] = {
        f"r{i}": {"a": i % 7, "b": f"s{i % 5}", "c": float(i % 3)} for i in range(n)
    }
    table.upsert(
        rng.normal(size=(n, 4)).astype(np.float32),
        ids=list(metas),
        metadatas=list(metas.values()),
    )
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", 1)
    q = rng.normal(size=4).astype(np.float32)
    for round_ in range(3):
        for key, value in [("a", 3), ("b", "s2"), ("c", 1.0), ("a", 3), ("c", 1)]:
            want = sorted(name for name, m in metas.items() if m[key] == value)
            got = sorted(h.id for h in table.search(q, k=2 * n, filter={key: value}))
            assert got == want, (round_, key, value)
        table.upsert(  # rows appended: the columns are extended, or read again
            rng.normal(size=(3, 4)).astype(np.float32),
            ids=[f"r{round_}", f"r{round_ + 10}", f"x{round_}"],
            metadatas=[{"a": 3, "b": "s2", "c": 1}] * 3,
        )
        for name in (f"r{round_}", f"r{round_ + 10}", f"x{round_}"):
            metas[name] = {"a": 3, "b": "s2", "c": 1}
    table.close()
