"""Filter columns built by the vector load equal the ones SQLite's json_extract gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidb_jina.store import VectorTable, _embedded, _meta_columns
from tidb_jina.store._filter_numpy import NUMBER, STRING

# Texts other tools may write, each a case where a fast parse could disagree with SQLite.
FOREIGN = [
    '{"g": 1, "s": "x"}',  # spaces after separators
    '{"\\u0067": 5, "s": "escaped label"}',  # SQLite's path does not find an escaped label
    '{"g": 1, "g": 2}',  # duplicate labels: SQLite takes the first
    '{"g" : 7}',  # a space before the colon
    '{"a" :1, "g":2, "g":3}',  # a duplicate hidden by a space before a colon
    '{"n": {"g": 1, "g": 2}, "g": 4}',  # a nested duplicate
    '{"s": "a\\u0000b"}',  # SQLite cuts a string at an escaped NUL
    '{"s": "\\ud83d\\ude00", "t": "say \\"hi\\""}',  # escapes
    '{"f": 0.1, "g": 3}',  # a float: that key is read by SQL
    '{"h": 1e400}',  # orjson refuses it
    '{"b": 18446744073709551615}',  # beyond SQLite's 64-bit integers
    '{"c": 9007199254740993, "d": -9223372036854775808}',  # 2**53 + 1, int64 min
    "[1, 2]",
    '"a string"',
    "null",
    "{}",
    '{"n": {"g": 3, "s": "nested"}, "l": [{"g": 4}]}',
    '{"a": [], "e": "[]", "z": ""}',
    '{"a": [1], "e": {}, "z": false, "y": true}',
]
KEYS = ["g", "s", "t", "f", "h", "b", "c", "d", "n", "l", "a", "e", "z", "y", "never"]


ANCHOR = np.array([1, 2, 3, 4], np.float32)  # the nearest row to load with: plain metadata


def _table(tmp_path, texts: list[str | None], name: str = "m") -> VectorTable:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    store = VectorTable(url, table_name=name, dimension=4)
    n = len(texts)
    store.upsert(np.ones((n, 4), np.float32) + np.eye(n, 4), ids=[f"r{i}" for i in range(n)])
    store.upsert(ANCHOR[None, :], ids=["anchor"], metadatas=[{}])
    with store.engine.begin() as conn:  # the texts exactly as other tools wrote them
        for i, text in enumerate(texts):
            conn.exec_driver_sql(f"UPDATE {name} SET meta = ? WHERE id = ?", (text, f"r{i}"))
    return store


def _assert_columns_equal_the_lazy_ones(store: VectorTable, keys: list[str]) -> set[str]:
    """Every key's column as the load built it (or known missing) equals SQLite's."""
    assert store.search(ANCHOR, k=1)[0].id == "anchor"  # load
    snap = store._backend.cache.snapshot
    built = dict(snap.extras.get("columns", {}))
    known = snap.extras["known"]
    table = sa.Table(store.table_name, sa.MetaData(), autoload_with=store.engine)
    with store.engine.connect() as conn:
        for key in keys:
            lazy = _embedded._load_column(conn, table, key, snap)
            assert lazy is not None
            if key not in known.keys:
                assert (lazy.kind == 0).all(), key  # known missing: truly missing
                continue
            col = built.get(key)
            if col is None:
                continue  # left to the lazy pass
            np.testing.assert_array_equal(col.kind, lazy.kind, err_msg=key)
            np.testing.assert_array_equal(col.empty, lazy.empty, err_msg=key)
            scalar = (lazy.kind == NUMBER) | (lazy.kind == STRING)
            for a, b in zip(col.values[scalar], lazy.values[scalar], strict=True):
                assert type(a) is type(b) and a == b, (key, a, b)
    return set(built)


def test_columns_built_by_the_load_equal_sqlites_for_foreign_texts(tmp_path):
    store = _table(tmp_path, [*FOREIGN, None])
    built = _assert_columns_equal_the_lazy_ones(store, KEYS)
    assert {"g", "s", "a", "e", "z", "c", "d"} <= built  # answered ahead
    assert "f" not in built and "b" not in built  # a float, an integer past 64 bits
    store.close()


def test_a_table_with_only_our_own_texts_is_parsed_fast_and_exactly(tmp_path):
    metas = [
        {"g": i % 5, "s": f"v{i % 3}", "ok": i % 2 == 0, "l": [i] * (i % 2)} for i in range(60)
    ]
    store = _table(tmp_path, [json.dumps(m, separators=(",", ":")) for m in metas])
    built = _assert_columns_equal_the_lazy_ones(store, ["g", "s", "ok", "l", "never"])
    assert built == {"g", "s", "ok", "l"}
    hits = store.search(np.ones(4), k=60, filter={"g": 2, "ok": True})
    assert sorted(h.id for h in hits) == sorted(
        f"r{i}" for i, m in enumerate(metas) if m["g"] == 2 and m["ok"]
    )
    store.close()


JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["", "x", "[]", 'q"uote', "back\\slash", "nul\x00", "é", "\U0001f600"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["g", "s"]), inner)
    ),
    max_leaves=4,
)
OBJECTS = st.dictionaries(st.sampled_from(["g", "s", "t"]), JSON, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=st.lists(st.one_of(OBJECTS, JSON), min_size=1, max_size=12), spaced=st.booleans())
@pytest.mark.slow
def test_columns_equal_sqlites_for_any_json(tmp_path_factory, metas, spaced):
    texts = [
        json.dumps(m, ensure_ascii=spaced, separators=(", ", " : ") if spaced else None)
        for m in metas
    ]
    store = _table(tmp_path_factory.mktemp("h"), texts)
    _assert_columns_equal_the_lazy_ones(store, ["g", "s", "t", "never"])
    store.close()


def test_columns_follow_own_upserts_and_foreign_commits(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = VectorTable(url, table_name="w", dimension=4)
    store.upsert(
        np.eye(4, dtype=np.float32), ids=list("abcd"), metadatas=[{"g": i % 2} for i in range(4)]
    )
    assert sorted(h.id for h in store.search(np.ones(4), k=9, filter={"g": 1})) == ["b", "d"]
    assert store.search(np.ones(4), k=9, filter={"z": 1}) == []  # known missing: no SQL
    snap = store._backend.cache.snapshot
    assert "z" not in snap.extras["known"].keys
    # own upserts: appended to the snapshot; columns are extended for the new rows
    store.upsert(
        np.ones((2, 4), np.float32), ids=["e", "b"], metadatas=[{"z": 1}, {"g": 0, "z": 1}]
    )
    assert store._backend.cache.snapshot is not snap  # applied, not reloaded...
    assert "known" in store._backend.cache.snapshot.extras
    assert sorted(h.id for h in store.search(np.ones(4), k=9, filter={"z": 1})) == ["b", "e"]
    assert sorted(h.id for h in store.search(np.ones(4), k=9, filter={"g": 1})) == ["d"]
    # a commit by another object: reloaded, columns built again
    other = VectorTable(url, table_name="w")
    other.upsert(np.ones((1, 4), np.float32), ids=["f"], metadatas=[{"g": 1, "new": "k"}])
    assert sorted(h.id for h in store.search(np.ones(4), k=9, filter={"g": 1})) == ["d", "f"]
    assert [h.id for h in store.search(np.ones(4), k=9, filter={"new": "k"})] == ["f"]
    assert "new" in store._backend.cache.snapshot.extras["known"].keys
    store.close()
    other.close()


def test_built_columns_stay_within_the_cache_bound(tmp_path, monkeypatch):
    metas = [{f"k{j}": (i * j) % 7 for j in range(12)} for i in range(300)]
    store = _table(tmp_path, [json.dumps(m) for m in metas])
    one = 300 * (1 + 1 + 8 + 40 + 8)  # about one integer column, as column_bytes counts
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", 3 * one)
    store.search(ANCHOR, k=1)
    columns = store._backend.cache.snapshot.extras["columns"]
    assert 1 <= len(columns) <= 3
    assert sum(_embedded.column_bytes(c) for c in columns.values()) <= 3 * one
    for j in (0, 5, 11):  # built or not, every key answers exactly
        hits = store.search(np.ones(4), k=300, filter={f"k{j}": 3})
        assert sorted(h.id for h in hits) == sorted(
            f"r{i}" for i, m in enumerate(metas) if m[f"k{j}"] == 3
        )
    store.close()


def test_too_much_metadata_text_keeps_nothing(tmp_path, monkeypatch):
    store = _table(tmp_path, [json.dumps({"g": i}) for i in range(50)])
    monkeypatch.setattr(_embedded, "META_TEXT_BYTES", 100)
    store.search(ANCHOR, k=1)
    assert "known" not in store._backend.cache.snapshot.extras
    assert [h.id for h in store.search(np.ones(4), k=9, filter={"g": 7})] == ["r7"]
    store.close()


def test_a_malformed_text_keeps_nothing_and_sql_reports_it(tmp_path):
    store = _table(tmp_path, ['{"g": 1}', "{not json"])
    with pytest.raises(Exception, match="malformed JSON"):
        store.search(np.ones(4), k=9, filter={"g": 1})
    assert "known" not in store._backend.cache.snapshot.extras
    assert _meta_columns.build is not None
    store.close()


def test_a_table_without_metadata_answers_filters_without_sql(tmp_path, monkeypatch):
    store = _table(tmp_path, [None] * 5)
    store.search(ANCHOR, k=1)
    assert store._backend.cache.snapshot.extras["known"].keys == frozenset()

    def no_sql(*args):
        raise AssertionError("no key is read by SQL")

    monkeypatch.setattr(_embedded, "_key_rows", no_sql)
    assert store.search(ANCHOR, k=9, filter={"g": 1}) == []
    assert len(store.search(ANCHOR, k=9, filter={"g": {"$exists": False}})) == 6
    store.close()
