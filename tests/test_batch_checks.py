"""Issue 18 item 7: the fast ingest path writes what the row-by-row path wrote, and
refuses what it refused, with the same error, before anything is written.

The row-by-row path is still in the code (``_rows``, ``_validate``, ``_prepare_ids``): it
runs whenever ``_batch_checks`` cannot vouch for a batch. ``row_by_row()`` forces it (and
the old per-row ``tobytes`` encoding), so each test compares the two on the same input:
random metadata, ids and documents (hostile ones included), the raw bytes of every
column in a file table, and the batches the rows are sent in.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
import json
import pickle
import re
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidb_jina import InvalidInputError, InvalidVectorError, RecordTooLargeError, TiDBJinaError
from tidb_jina.store import VectorTable, _batch_checks, _rows, _table_base, _validate, _vector
from tidb_jina.store._db import batch_slices

DIM = 4


def _old_encode_blob_rows(matrix: np.ndarray) -> list[bytes]:
    """The encoding before issue 18 item 7: one ``tobytes`` per row."""
    return [row.tobytes() for row in matrix.astype("<f4", copy=False)]


@contextmanager
def row_by_row() -> Iterator[None]:
    """Every write check and encoding as before the fast path (one row at a time)."""
    with (
        mock.patch.object(_batch_checks, "metadata_texts", lambda metas, key: None),
        mock.patch.object(_batch_checks, "texts_ok", lambda texts: False),
        mock.patch.object(_table_base, "ids_ok", lambda ids, limit: False),
        mock.patch.object(_vector, "encode_blob_rows", _old_encode_blob_rows),
    ):
        yield


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    """("ok", result) or ("error", (type, message)): comparable across the two paths."""
    try:
        return "ok", fn(*args)
    except (TiDBJinaError, TypeError, ValueError) as exc:
        return "error", (type(exc).__name__, str(exc))


def raw_rows(path: Path, table: str) -> list[tuple[Any, ...]]:
    """Every stored column of every row, as SQLite holds it (bytes for BLOBs)."""
    with sqlite3.connect(path) as conn:
        columns = "rowid, id, embedding, typeof(embedding), document, meta, typeof(meta)"
        return conn.execute(f'SELECT {columns} FROM "{table}" ORDER BY rowid').fetchall()


# --- strategies: metadata as users send it, hostile values included ---------------------


class Colour(enum.IntEnum):
    RED = 1


class Tag(str):
    pass


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"d": value}
    return value


KEYS = st.one_of(
    st.sampled_from(["a", "b", "ü", 'q"k', "d.o.t", "*", "n", "ref_doc_id", "k" * 40]),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff"]),  # refused
    st.sampled_from([1, 2.5, None, True, (1, 2)]),  # not strings: refused
)
CLEAN_KEYS = st.sampled_from(["a", "b", "ü", 'q"k', "d.o.t", "*", "n", "ref_doc_id"])
TEXT = st.lists(
    st.sampled_from([*"aZ %_'\"\\\n\t\x7f\x1f", "é", "ключ", "\u2028", "😀", "{}", "[1]"]),
    max_size=5,
).map("".join)
CLEAN_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.sampled_from([0, -0.0, 1e16, 1e-7, 5e-324, 2**53 + 1, 2**63 - 1, -(2**63)]),
)
HOSTILE_SCALARS = st.one_of(
    st.sampled_from([2**63, -(2**63) - 1, 10**30, float("nan"), float("inf"), -float("inf")]),
    st.sampled_from(["a\x00", "\x00", "\ud800", "ok\udfffok"]),
    st.sampled_from([datetime.date(2024, 1, 1), b"bytes", {1, 2}, object()]),
    st.sampled_from([np.int64(7), np.float32(0.1), np.float64(2.5), np.bool_(True)]),
    st.sampled_from([np.uint64(2**64 - 1), np.str_("np"), np.str_("n\x00p")]),
    st.sampled_from([np.array([1, 2]), np.array(["x", "y\x00"]), np.array([2**63], np.uint64)]),
    st.sampled_from([Colour.RED, Tag("sub"), Tag("s\x00")]),
    st.sampled_from([_nested(62), _nested(63), _nested(64), _nested(70)]),
)


def _json(scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> Any:
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.lists(inner, max_size=3).map(tuple),
            st.dictionaries(keys, inner, max_size=3),
        ),
        max_leaves=6,
    )


CLEAN_META = st.dictionaries(CLEAN_KEYS, _json(CLEAN_SCALARS, CLEAN_KEYS), max_size=4)
ANY_META = st.one_of(
    st.none(),
    CLEAN_META,
    st.dictionaries(KEYS, _json(st.one_of(CLEAN_SCALARS, HOSTILE_SCALARS), KEYS), max_size=4),
    CLEAN_META.map(OrderedDict),
    st.sampled_from(["not a dict", 3, ["a"]]),
)
INDEXED = st.sampled_from([None, "ref_doc_id", "a"])


def _legacy_metadatas(metas: list[Any], key: str | None) -> list[str]:
    with row_by_row():
        return _rows.prepare_metadatas(metas, len(metas), key)


# --- metadata -------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(metas=st.lists(ANY_META, max_size=6), key=INDEXED)
def test_metadata_fast_path_matches_the_row_by_row_path(metas, key):
    """Same texts, or the same error (type and message), for any batch; and when the
    fast path vouches for a batch, the row-by-row path accepts it and writes the same."""
    old = outcome(_legacy_metadatas, metas, key)
    new = outcome(_rows.prepare_metadatas, metas, len(metas), key)
    assert new == old
    fast = _batch_checks.metadata_texts(metas, key)
    if fast is not None:
        assert old == ("ok", fast)


@settings(max_examples=200, deadline=None)
@given(metas=st.lists(st.one_of(st.none(), CLEAN_META), min_size=1, max_size=6))
def test_clean_metadata_takes_the_fast_path_and_is_json_dumps_text(metas):
    texts = _batch_checks.metadata_texts(metas, None)
    assert texts is not None, "plain dicts of JSON values must not fall back"
    expected = [
        json.dumps(m or {}, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        for m in metas
    ]
    assert texts == expected


FLAT_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(1e-6, 1e-3) | st.floats(1e15, 1e17),  # around both ends of orjson's range
    st.integers(-(2**63), 2**63 - 1),
    st.text(),
    TEXT,
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(metas=st.lists(st.dictionaries(CLEAN_KEYS, FLAT_VALUES, max_size=5), min_size=1))
def test_flat_rows_through_orjson_are_json_dumps_text(metas):
    """Flat rows of plain values go through orjson; every float, string and integer must
    come out as ``json.dumps`` writes it (``1e-05`` stays ``1e-05``)."""
    assert _batch_checks._orjson_agrees()
    got = _batch_checks.metadata_texts(metas, None)
    refused = any(
        isinstance(v, str) and ("\x00" in v or any(0xD800 <= ord(c) <= 0xDFFF for c in v))
        for m in metas
        for v in m.values()
    )
    if refused:  # NUL or a lone surrogate: the row-by-row path refuses it and names it
        assert got is None
        return
    expected = [
        json.dumps(m, ensure_ascii=False, allow_nan=False, separators=(",", ":")) for m in metas
    ]
    assert got == expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"k": "a\x00"}, "NUL"),
        ({"k": {"x": ["\ud800"]}}, "lone surrogate"),
        ({"k": 2**63}, "outside the signed 64-bit"),
        ({"k": float("nan")}, "not valid JSON"),
        ({"k": {1: "x"}}, "JSON keys must be strings"),
        ({"": 1}, "must not be empty"),
        ({"k": _nested(70)}, "nests more than"),
        ({"k": datetime.date(2024, 1, 1)}, "not valid JSON"),
        ({"ref_doc_id": "x" * 1000}, "is indexed"),
    ],
)
def test_a_bad_row_anywhere_fails_the_fast_path_and_is_named(bad, message):
    """The fast path never vouches for a batch with a bad row; the row-by-row path then
    names that row (its position, not the first row's)."""
    metas: list[Any] = [{"k": i} for i in range(50)]
    metas[37] = bad
    assert _batch_checks.metadata_texts(metas, "ref_doc_id") is None
    with pytest.raises(TiDBJinaError, match=message) as caught:
        _rows.prepare_metadatas(metas, len(metas), "ref_doc_id")
    assert re.findall(r"metadata (\d+)", str(caught.value)) in ([], ["37"])


class LooksLikeA:
    """A key that is not a string but compares (and hashes) equal to "a"."""

    def __eq__(self, other: object) -> bool:
        return other == "a"

    def __hash__(self) -> int:
        return hash("a")


@pytest.mark.parametrize(
    "odd", [LooksLikeA(), Tag("a"), Tag("a\x00")], ids=["looks-like-a", "subclass", "subclass-nul"]
)
def test_every_key_is_checked_even_when_keys_compare_equal(odd):
    metas = [{"a": 1}, {odd: 2}]
    assert outcome(_rows.prepare_metadatas, metas, 2, None) == outcome(
        _legacy_metadatas, metas, None
    )
    if type(odd) is LooksLikeA:
        assert _batch_checks.metadata_texts(metas, None) is None


def test_numpy_values_in_metadata_are_written_as_before():
    metas = [{"f": np.float32(0.1), "i": np.int64(3), "a": np.arange(3), "b": np.bool_(True)}]
    assert _rows.prepare_metadatas(metas, 1) == _legacy_metadatas(metas, None)
    assert _rows.prepare_metadatas(metas, 1) == [
        '{"f":0.10000000149011612,"i":3,"a":[0,1,2],"b":true}'
    ]


def test_the_encoder_is_json_dumps_even_after_an_error():
    """One encoder serves a whole batch; an error (NaN) must not leave it in a state that
    changes later output (its circular-reference marks), and the batch falls back."""
    shared = {"x": [1, 2]}
    metas = [{"s": shared}, {"s": shared}, {"bad": float("nan")}]
    assert _batch_checks.metadata_texts(metas, None) is None
    good = [{"s": shared}, {"s": shared}]
    assert _batch_checks.metadata_texts(good, None) == ['{"s":{"x":[1,2]}}'] * 2


# --- ids, documents, sizes, batches ---------------------------------------------------------

IDS = st.one_of(
    st.text(st.sampled_from([*"ab -_", "é", "😀"]), min_size=1, max_size=5),
    st.sampled_from(["", "a\x00", "\ud800", "x" * 513, "é" * 512]),
    st.sampled_from([1, b"b", 2.5]),
    st.text(st.sampled_from("ab"), min_size=1).map(Tag),
)


@settings(max_examples=300, deadline=None)
@given(ids=st.lists(IDS, max_size=6))
def test_ids_fast_check_matches_the_row_by_row_check(ids):
    table = VectorTable("sqlite://", table_name="ids_check")
    old = outcome(lambda: _with_row_by_row(table._prepare_ids, ids, len(ids)))
    new = outcome(table._prepare_ids, ids, len(ids))
    assert new == old
    if _batch_checks.ids_ok(ids, 512):
        assert old == ("ok", ids)


def _with_row_by_row(fn: Any, *args: Any) -> Any:
    with row_by_row():
        return fn(*args)


DOCS = st.one_of(st.none(), TEXT, st.sampled_from(["\ud800", "x\udfffy", 3, b"doc"]))


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(DOCS, max_size=6))
def test_documents_fast_check_matches_the_row_by_row_check(docs):
    old = outcome(lambda: _with_row_by_row(_rows.prepare_documents, docs, len(docs)))
    new = outcome(_rows.prepare_documents, docs, len(docs))
    assert new == old
    if _batch_checks.texts_ok(docs):
        assert old == ("ok", docs)


def _old_rows_and_sizes(
    prepared: Any, keep: list[int], vectors: list[Any], stored: int
) -> tuple[list[tuple[Any, ...]], list[int]]:
    """``TableBase._write``'s loop before issue 18 item 7."""
    ids, docs, metas = prepared
    rows, sizes = [], []
    for vector, i in zip(vectors, keep, strict=True):
        size = _validate.row_bytes(ids[i], docs[i], metas[i], stored)
        rows.append((ids[i], vector, docs[i], metas[i]))
        sizes.append(size + len(vector))
    return rows, sizes


SIZED = st.lists(st.sampled_from(["a", "é", "ключ", "😀", "\u2028"]), max_size=5).map("".join)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(st.tuples(SIZED, st.none() | SIZED, SIZED), min_size=1, max_size=8),
    repeat=st.booleans(),
    stored=st.sampled_from([20, _validate.MAX_ROW_BYTES - 12, _validate.MAX_ROW_BYTES - 2]),
)
def test_rows_and_sizes_match_the_old_loop(rows, repeat, stored):
    ids = [f"{i}{r[0]}" for i, r in enumerate(rows)]
    if repeat:
        ids[-1] = ids[0]
    prepared = (ids, [r[1] for r in rows], [r[2] for r in rows])
    keep = _rows.last_occurrences(ids)
    vectors = [b"v" * 16 for _ in keep]
    old = outcome(_old_rows_and_sizes, prepared, keep, vectors, stored)
    new = outcome(
        lambda: _batch_checks.rows_to_write(prepared, keep, vectors, stored, _validate.row_bytes)
    )
    if old[0] == "ok":
        assert new[0] == "ok"
        assert new[1][0] == old[1][0]
        assert new[1][1].tolist() == old[1][1]
    else:
        assert new == old
        assert old[1][0] == "RecordTooLargeError"


def _old_batch_slices(sizes: list[int], max_rows: int, max_bytes: int) -> list[slice]:
    out, start, total = [], 0, 0
    for i, size in enumerate(sizes):
        if i > start and (i - start >= max_rows or total + size > max_bytes):
            out.append(slice(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        out.append(slice(start, len(sizes)))
    return out


@settings(max_examples=500, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 60), max_size=40),
    max_rows=st.integers(1, 12),
    max_bytes=st.integers(1, 100),
)
def test_batch_slices_match_the_row_by_row_loop(sizes, max_rows, max_bytes):
    assert batch_slices(sizes, max_rows, max_bytes) == _old_batch_slices(sizes, max_rows, max_bytes)
    assert batch_slices(np.array(sizes, dtype=np.int64), max_rows, max_bytes) == (
        _old_batch_slices(sizes, max_rows, max_bytes)
    )


# --- vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "matrix",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4) - 5.5),
        (np.arange(12, dtype=np.float32).reshape(3, 4) * 1e30).astype(">f4"),
        np.arange(24, dtype=np.float32).reshape(3, 8)[:, ::2],  # strided
    ],
    ids=["c-order", "fortran", "big-endian", "strided"],
)
def test_blob_rows_are_each_rows_little_endian_float32_bytes(matrix):
    rows = _vector.encode_blob_rows(matrix)
    assert [bytes(r) for r in rows] == [_vector.encode_blob(v) for v in matrix]
    assert [len(r) for r in rows] == [4 * matrix.shape[1]] * len(matrix)
    assert b"".join(rows) == np.asarray(matrix, dtype="<f4").tobytes()


def _old_check_values(matrix: np.ndarray) -> str | None:
    finite = np.isfinite(matrix)
    if not finite.all():
        row, col = (int(i) for i in np.argwhere(~finite)[0])
        return f"vector {row} has {matrix[row, col]!r} at position {col}"
    if matrix.dtype != np.float32:
        too_big = np.abs(matrix) > float(np.finfo(np.float32).max)
        if too_big.any():
            row, col = (int(i) for i in np.argwhere(too_big)[0])
            return f"vector {row} has {matrix[row, col]!r} at position {col}, outside"
    return None


SPECIALS = st.sampled_from([np.nan, np.inf, -np.inf, 3.5e38, -1e39, 1.0, -2.0])


@settings(max_examples=200, deadline=None)
@given(
    cells=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3), SPECIALS), max_size=4),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_vector_checks_name_the_same_first_bad_value(cells, dtype):
    matrix = np.ones((5, 4), dtype=np.float64)
    for row, col, value in cells:
        matrix[row, col] = value
    with np.errstate(over="ignore"):
        matrix = matrix.astype(dtype)
    expected = _old_check_values(matrix)
    if expected is None:
        assert _vector.as_matrix(matrix, 4).tobytes() == matrix.astype(np.float32).tobytes()
    else:
        with pytest.raises(InvalidVectorError) as caught:
            _vector.as_matrix(matrix, 4)
        assert str(caught.value).startswith(expected)


# --- end to end: the same bytes in the table ---------------------------------------------


def _mixed_rows(n: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    docs = [None if i % 5 == 0 else f"doc {i} é ключ 😀" * (i % 3) for i in range(n)]
    metas = [
        None
        if i % 7 == 0
        else {
            "i": i,
            "f": i / 3,
            "s": f'v{i}\n"q"',
            "nested": {"tags": ["a", "ü", i], "ok": i % 2 == 0, "none": None},
            "np": np.float32(i / 7),
        }
        for i in range(n)
    ]
    ids = [f"id-{i % (n - 3)}" for i in range(n)]  # three repeated ids: last one wins
    return {
        "embeddings": rng.normal(size=(n, DIM)),  # float64: converted as before
        "ids": ids,
        "documents": docs,
        "metadatas": metas,
    }


@pytest.mark.parametrize("loaded", [False, True], ids=["fresh", "snapshot-in-memory"])
def test_the_fast_path_stores_the_same_bytes_as_the_row_by_row_path(tmp_path, loaded):
    """Two file tables, one written row by row as before: every stored column is
    byte-identical (vectors as float32 BLOBs, metadata JSON text), in several batches,
    with and without an in-memory snapshot being kept up to date."""
    rows = _mixed_rows(40)
    stored = {}
    for name, context in (("fast", _nothing), ("old", row_by_row)):
        path = tmp_path / f"{name}.db"
        table = VectorTable(f"sqlite:///{path}", table_name="t", batch_rows=6)
        table.upsert(np.ones((1, DIM)), ids=["seed"])
        if loaded:
            table.search(np.ones(DIM), k=1)  # the snapshot the upsert then extends
        with context():
            assert table.upsert(**rows) == rows["ids"]
        stored[name] = raw_rows(path, "t")
        got = table.get([rows["ids"][-1]], include_embeddings=True)[0]
        assert got.embedding.tobytes() == rows["embeddings"][-1].astype("<f4").tobytes()
        if loaded:
            hit = table.search(rows["embeddings"][-1], k=1)[0]
            assert hit.id == rows["ids"][-1]
        table.close()
    assert stored["fast"] == stored["old"]
    assert len(stored["fast"]) == 1 + 37
    blob = dict((r[1], r[2]) for r in stored["fast"])["id-0"]
    assert blob == rows["embeddings"][37].astype("<f4").tobytes()  # the last "id-0"


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_an_ndarray_adapter_registered_by_the_app_does_not_change_what_is_stored(tmp_path):
    """A common recipe registers a sqlite3 adapter that pickles NumPy arrays; the rows
    must still be raw float32 bytes."""
    key = (np.ndarray, sqlite3.PrepareProtocol)
    assert key not in sqlite3.adapters
    sqlite3.register_adapter(np.ndarray, pickle.dumps)
    try:
        table = VectorTable(f"sqlite:///{tmp_path / 'a.db'}", table_name="t")
        vectors = np.arange(8, dtype=np.float32).reshape(2, DIM)
        table.upsert(vectors, ids=["a", "b"])
        stored = raw_rows(tmp_path / "a.db", "t")
        assert [r[2] for r in stored] == [v.tobytes() for v in vectors]
        table.close()
    finally:
        del sqlite3.adapters[key]


def test_async_upsert_stores_the_same_bytes(tmp_path):
    path = tmp_path / "async.db"
    table = VectorTable(f"sqlite:///{path}", table_name="t", batch_rows=3)
    vectors = np.random.default_rng(3).normal(size=(8, DIM)).astype(np.float32)

    async def main() -> None:
        await table.aio.upsert(vectors, ids=[str(i) for i in range(8)], metadatas=[{"i": 1}] * 8)
        await table.aclose()

    asyncio.run(main())
    stored = raw_rows(path, "t")
    assert [r[2] for r in stored] == [v.tobytes() for v in vectors]
    assert {r[5] for r in stored} == {'{"i":1}'}


@pytest.mark.parametrize(
    ("column", "bad", "error"),
    [
        ("metadatas", {"k": "x\x00"}, InvalidInputError),
        ("metadatas", {"k": [[float("inf")]]}, InvalidInputError),
        ("ids", "\ud800", InvalidInputError),
        ("documents", "d\udfff", InvalidInputError),
        ("documents", "é" * 3_300_000, RecordTooLargeError),
    ],
)
def test_a_bad_last_row_of_many_batches_writes_nothing(tmp_path, column, bad, error):
    path = tmp_path / "bad.db"
    table = VectorTable(f"sqlite:///{path}", table_name="t", batch_rows=10)
    table.upsert(np.ones((1, DIM)), ids=["seed"], metadatas=[{"k": 0}])
    before = raw_rows(path, "t")
    n = 95
    rows: dict[str, Any] = {
        "ids": [f"r{i}" for i in range(n)],
        "documents": [f"d{i}" for i in range(n)],
        "metadatas": [{"k": i} for i in range(n)],
    }
    rows[column][-1] = bad
    with row_by_row(), pytest.raises(error) as old:
        table.upsert(np.ones((n, DIM)), **rows)
    with pytest.raises(error) as new:
        table.upsert(np.ones((n, DIM)), **rows)
    assert str(new.value) == str(old.value)
    assert raw_rows(path, "t") == before
    table.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=st.lists(ANY_META, min_size=1, max_size=8))
def test_any_batch_is_stored_as_before_or_refused_as_before(metas):
    """End to end on a file table: the stored rows (or the error, with nothing written)
    are the row-by-row path's."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, context in (("fast", _nothing), ("old", row_by_row)):
            path = Path(tmp) / f"{name}.db"
            table = VectorTable(f"sqlite:///{path}", table_name="t", batch_rows=3)
            table.upsert(np.ones((1, DIM)), ids=["seed"])
            ids = [f"r{i}" for i in range(len(metas))]
            with context():
                write = partial(table.upsert, ids=ids, metadatas=metas)
                result = outcome(write, np.ones((len(metas), DIM)))
            results[name] = (result, [r[1:] for r in raw_rows(path, "t")])
            table.close()
        assert results["fast"] == results["old"]
        if results["fast"][0][0] == "error":
            assert len(results["fast"][1]) == 1  # only the seed row
