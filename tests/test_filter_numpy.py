"""Filtered embedded search evaluated in NumPy gives exactly the reference's rows."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from _filter_reference import matches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidb_jina.store import VectorTable, _embedded, _filter_tree
from tidb_jina.store._filter_numpy import KeyColumn, mask, supported
from tidb_jina.store._filter_tree import parse_filter

KEYS = ["a", "b", "c"]
SCALARS = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([1.0, 2.5, -0.5, 2**60, 2**60 + 1]),
    st.sampled_from(["", "x", "y", "X", "é", "10", "a b", "\uffff", "\U0001f600"]),
    st.booleans(),
    st.none(),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2), st.just({"k": 1}))
METAS = st.lists(
    st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3), min_size=1, max_size=25
)
ORDERABLE = st.one_of(st.integers(-3, 3), st.sampled_from([2.5, 2**60, "x", "é", "", "\U0001f600"]))


def _leaf() -> st.SearchStrategy[dict]:
    key = st.sampled_from(KEYS)
    ops = st.one_of(
        SCALARS.map(lambda v: v),
        SCALARS.map(lambda v: {"$ne": v}),
        st.lists(SCALARS, max_size=3).map(lambda vs: {"$in": vs}),
        st.lists(SCALARS, max_size=3).map(lambda vs: {"$nin": vs}),
        st.tuples(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ORDERABLE).map(
            lambda t: {t[0]: t[1]}
        ),
        st.booleans().map(lambda b: {"$exists": b}),
        st.booleans().map(lambda b: {"$empty": b}),
    )
    return st.builds(lambda k, o: {k: o}, key, ops)


FILTERS = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
        inner.map(lambda f: {"$not": f}),
    ),
    max_leaves=5,
)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("np")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=METAS, flt=FILTERS)
@pytest.mark.slow
@pytest.mark.parametrize("ahead", [True, False], ids=["built-by-the-load", "read-by-sql"])
def test_numpy_filter_equals_reference(metas, flt, ahead):
    with mock.patch.object(_embedded, "META_TEXT_BYTES", _embedded.META_TEXT_BYTES * ahead):
        _numpy_filter_equals_reference(metas, flt)


def _numpy_filter_equals_reference(metas, flt):
    parsed = parse_filter(flt)  # None: the filter sets no condition ({"$nin": []})
    assert parsed is None or supported(parsed), "the strategy builds NumPy-evaluated filters"
    table = VectorTable("sqlite://", table_name="p")
    n = len(metas)
    table.upsert(
        np.eye(n, 4, dtype=np.float32) + 0.1, ids=[str(i) for i in range(n)], metadatas=metas
    )
    table.search(np.ones(4), k=1)  # load the snapshot, so the NumPy path answers
    got = {h.id for h in table.search(np.ones(4), k=n, filter=flt)}
    want = {str(i) for i, m in enumerate(metas) if matches(flt, m)}
    assert got == want
    # A filter that sets no condition (parsed is None) needs no column.
    assert parsed is None or "columns" in table._backend.cache.snapshot.extras or not want


def test_unsupported_operators_fall_back_to_sql():
    table = VectorTable("sqlite://", table_name="f")
    metas = [{"t": "TiDB docs", "tags": ["db"]}, {"t": "pasta", "tags": []}, {}]
    table.upsert(np.eye(3, dtype=np.float32), ids=["0", "1", "2"], metadatas=metas)
    assert not supported(parse_filter({"t": {"$like": "TiDB%"}}))
    assert [h.id for h in table.search(np.ones(3), k=3, filter={"t": {"$like": "TiDB%"}})] == ["0"]
    hits = table.search(np.ones(3), k=3, filter={"tags": {"$contains": "db"}, "t": {"$ne": "x"}})
    assert [h.id for h in hits] == ["0"]


def test_metadata_columns_follow_writes():
    table = VectorTable("sqlite://", table_name="w")
    table.upsert(np.eye(2, dtype=np.float32), ids=["a", "b"], metadatas=[{"g": 1}, {"g": 2}])
    assert [h.id for h in table.search([1, 1], k=2, filter={"g": 1})] == ["a"]
    table.upsert(np.eye(2, dtype=np.float32)[:1], ids=["b"], metadatas=[{"g": 1}])
    assert sorted(h.id for h in table.search([1, 1], k=2, filter={"g": 1})) == ["a", "b"]


def test_only_key_columns_are_held_in_memory_and_long_texts_are_not_built_ahead():
    """The load builds every key's column (``_meta_columns``) but long strings (text
    bodies, serialized nodes): those are read when a filter asks, never whole objects."""
    table = VectorTable("sqlite://", table_name="mem")
    metas = [{"g": i % 2, "big": "x" * 1000, "other": [1, 2]} for i in range(20)]
    table.upsert(
        np.eye(20, 4, dtype=np.float32) + 0.1, ids=[str(i) for i in range(20)], metadatas=metas
    )
    assert len(table.search(np.ones(4), k=20, filter={"g": 1})) == 10
    extras = table._backend.cache.snapshot.extras
    assert set(extras) <= {"columns", "index", "known"}
    assert set(extras["columns"]) == {"g", "other"}
    assert len(table.search(np.ones(4), k=20, filter={"big": "x" * 1000})) == 20
    assert set(extras["columns"]) == {"g", "other", "big"}


@pytest.mark.parametrize("key", ['q"uote', "back\\slash", "ünï", "emoji🙂"])
def test_keys_sqlite_paths_cannot_address_fall_back_to_sql(key):
    assert not supported(parse_filter({key: "v"}))
    table = VectorTable("sqlite://", table_name="odd")
    table.upsert(
        np.eye(3, dtype=np.float32), ids=["a", "b", "c"], metadatas=[{key: "v"}, {key: "w"}, {}]
    )
    assert [h.id for h in table.search(np.ones(3), k=3, filter={key: "v"})] == ["a"]
    assert sorted(h.id for h in table.search(np.ones(3), k=3, filter={key: {"$ne": "v"}})) == [
        "b",
        "c",
    ]


def test_metadata_written_with_unicode_escapes_by_other_tools(tmp_path):
    """Peer stores write json.dumps(..., ensure_ascii=True): '\\u00fc' escapes in the text."""
    import json

    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'peer.db'}"
    table = VectorTable(url, table_name="esc")
    table.upsert(np.eye(2, dtype=np.float32), ids=["a", "b"], metadatas=[{}, {}])
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for rid, meta in (("a", {"city": "Zürich", "größe": 1}), ("b", {"city": "Köln"})):
            conn.exec_driver_sql(
                "UPDATE esc SET meta = ? WHERE id = ?", (json.dumps(meta, ensure_ascii=True), rid)
            )
    assert [h.id for h in table.search([1, 1], k=2, filter={"city": "Zürich"})] == ["a"]
    assert [h.id for h in table.search([1, 1], k=2, filter={"größe": 1})] == ["a"]
    assert [h.id for h in table.search([1, 1], k=2, filter={"city": {"$gt": "L"}})] == ["a"]


def test_mask_evaluates_the_parsed_tree_without_parsing(monkeypatch):
    flt = parse_filter({"g": {"$in": [1, "x"]}, "$not": {"h": {"$exists": True}}})
    assert flt is not None and supported(flt) and supported(flt.node)

    def no_parse(*args):
        raise AssertionError("the NumPy evaluator parsed a filter")

    monkeypatch.setattr(_filter_tree, "_parse_filter", no_parse)
    columns = {
        "g": KeyColumn(["integer", "text", "integer", None], [1, "x", 2, None]),
        "h": KeyColumn([None, None, "null", None], [None, None, None, None]),
    }
    assert mask(flt, columns.__getitem__, 4).tolist() == [True, True, False, False]
    assert mask(flt.node, columns.__getitem__, 4).tolist() == [True, True, False, False]


def test_the_column_cache_is_bounded_least_recently_used_first(monkeypatch):
    from tidb_jina.store import _embedded

    table = VectorTable("sqlite://", table_name="lru")
    metas = [{"a": i, "b": f"s{i}", "c": i % 2} for i in range(200)]
    vectors = np.eye(200, 4, dtype=np.float32) + 0.1
    table.upsert(vectors, ids=[str(i) for i in range(200)], metadatas=metas)
    for key, low in (("a", 0), ("b", ""), ("c", 0)):  # typed forms made too
        assert len(table.search(np.ones(4), k=200, filter={key: {"$gte": low}})) == 200
    columns = table._backend.cache.snapshot.extras["columns"]
    assert list(columns) == ["a", "b", "c"]
    size = {key: _embedded.column_bytes(col) for key, col in columns.items()}
    limit = size["b"] + size["c"] + size["a"] // 2  # not room for all three
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", limit)
    assert [h.id for h in table.search(np.ones(4), k=5, filter={"b": "s7"})] == ["7"]
    assert list(columns) == ["c", "b"], "the least recently used key went first"
    for i in range(30):  # many distinct missing keys: memory stays bounded
        assert table.search(np.ones(4), k=5, filter={f"missing{i}": 1}) == []
    assert sum(_embedded.column_bytes(c) for c in columns.values()) <= limit
    # an evicted key is read again when needed, with the same answer
    hits = table.search(np.ones(4), k=5, filter={"a": {"$gte": 198}})
    assert sorted(h.id for h in hits) == ["198", "199"]


def test_integers_from_two_to_the_53_never_compare_through_float64() -> None:
    """2**53 + 1 reads as 2**53 in float64: such columns and values use exact ints."""
    from tidb_jina.store._filter_typed import Typed, compare

    values = np.array([2**53 + 1, 5], dtype=object)
    rows = np.arange(2)
    for value in (2**53, 2**53 + 1, 5):
        got = compare(Typed(), rows, values, "eq", value, False)
        assert got is None or list(got) == [v == value for v in values]


def test_in_is_a_typed_set_lookup_with_eq_semantics(monkeypatch) -> None:
    """``$in`` runs as ``np.isin`` on the typed arrays, with ``eq``'s rule per value:
    one JSON type, ``1 == 1.0``, ``True != 1``, strings exact, 2**53 + 1 exact."""
    from tidb_jina.store import _filter_numpy

    types = ["integer", "real", "true", "text", "real", "integer", "text", "null", None]
    values = [1, 1.0, 1, "1", -0.0, 7, "x", None, None]

    def run(wanted: list, cols: dict) -> list[bool]:
        flt = parse_filter({"g": {"$in": wanted}})
        assert flt is not None
        return mask(flt, cols.__getitem__, len(types)).tolist()

    def reference(wanted: list, vals: list) -> list[bool]:
        out = []
        for t, v in zip(types, vals, strict=True):
            kind = {"integer": int, "real": int, "text": str, "true": bool}.get(t or "")
            out.append(
                any(
                    (t == "true" and w is True)
                    or (kind is int and type(w) in (int, float) and w == v)
                    or (kind is str and isinstance(w, str) and w == v)
                    for w in wanted
                )
            )
        return out

    cases = [[1], [1.0, "x"], [True], ["1"], [0], [7, 2.5, "y"], ["zz"], [3], [2**53 + 1, 1]]
    for wanted in cases:
        cols = {"g": KeyColumn(types, values)}
        assert run(wanted, cols) == reference(wanted, values), wanted
    # the typed path answers (no per-row Python membership test) below 2**53
    calls = []
    real = _filter_numpy.typed_member
    monkeypatch.setattr(_filter_numpy, "typed_member", lambda *a: calls.append(r := real(*a)) or r)
    cols = {"g": KeyColumn(types, values)}
    assert run([1, "x"], cols) == [True, True, False, False, False, False, True, False, False]
    assert len(calls) == 2 and all(c is not None for c in calls)
    # a column holding 2**53 + 1 keeps the exact path: 2**53 does not match it
    big = [2**53 + 1, 1.0, 1, "1", -0.0, 7, "x", None, None]
    cols = {"g": KeyColumn(types, big)}
    assert run([2**53], cols) == [False] * 9
    assert run([2**53 + 1], cols) == [True] + [False] * 8


def test_a_filters_new_keys_are_read_in_one_pass(monkeypatch) -> None:
    """A first filter on several keys reads them in one statement over the rows (when
    the load kept no metadata texts to build them from)."""
    from tidb_jina.store import _embedded

    monkeypatch.setattr(_embedded, "META_TEXT_BYTES", 0)
    table = VectorTable("sqlite://", table_name="multi")
    metas = [{"a": i % 3, "b": f"s{i % 4}", "c": i % 2 == 0} for i in range(40)]
    metas[5] = {"a": "0", "b": None}  # look-alikes and missing keys
    table.upsert(
        np.eye(40, 4, dtype=np.float32) + 0.1, ids=[str(i) for i in range(40)], metadatas=metas
    )
    table.search(np.ones(4), k=1)
    reads: list[list[str]] = []
    real = _embedded._key_rows
    monkeypatch.setattr(
        _embedded,
        "_key_rows",
        lambda conn, t, keys, rowids: reads.append(keys) or real(conn, t, keys, rowids),
    )
    flt = {"$or": [{"a": 0}, {"b": {"$in": ["s1", "s2"]}}], "c": {"$ne": True}}
    got = {h.id for h in table.search(np.ones(4), k=40, filter=flt)}
    want = {str(i) for i, m in enumerate(metas) if matches(flt, m)}
    assert got == want and len(want) > 3
    assert reads == [["a", "b", "c"]]
    table.search(np.ones(4), k=40, filter={"a": {"$gte": 1}, "d": 1})  # only d is new: alone
    assert reads[1:] == [["d"]]
