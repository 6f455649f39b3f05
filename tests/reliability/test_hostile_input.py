"""Issue 9.4: hostile and malformed input is a clear error and leaves the table unchanged.

Every case runs against a seeded file-backed table; ``table_snapshot`` (every raw column of
every row) is taken before and compared after. Where input is legal but hostile (odd
metadata keys, SQL in filter values), it must be stored or matched literally.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

import numpy as np
import pytest
from _rel_helpers import KEY, ingest, jina_client, sqlite_tables, table_snapshot

from tidb_jina import (
    DimensionMismatchError,
    InvalidFilterError,
    InvalidIdentifierError,
    InvalidInputError,
    InvalidVectorError,
    RecordTooLargeError,
    TiDBJinaError,
)
from tidb_jina.store import VectorTable
from tidb_jina.testing import FakeEmbeddingServer

DIM = 4
SEED_ROWS = {
    "ids": ["a", "b", "c"],
    "documents": ["alpha", "beta", "gamma"],
    "metadatas": [{"lang": "en", "n": 1}, {"lang": "it", "n": 2}, {"lang": "en", "n": 3}],
}


@pytest.fixture
def seeded(make_table) -> VectorTable:
    table = make_table(batch_rows=2)
    table.upsert(np.eye(3, DIM, dtype=np.float32), **SEED_ROWS)
    return table


def unchanged(table: VectorTable, before: list[Any]) -> None:
    assert table_snapshot(table) == before
    assert table.count() == 3


# --- identifiers -------------------------------------------------------------------------

HOSTILE_TABLE_NAMES = [
    'docs"; DROP TABLE x; --',
    "docs'",
    "do`cs",
    "docs; DELETE FROM t",
    "my docs",
    "döcs",
    "表",
    "docs\x00",
    "",
    "1docs",
    "x" * 65,
    "docs-v2",
    "docs.v2",
    "[docs]",
]


@pytest.mark.parametrize("name", HOSTILE_TABLE_NAMES)
def test_hostile_table_names_are_refused_before_any_sql(seeded, db_url, name):
    before, tables = table_snapshot(seeded), sqlite_tables(seeded)
    with pytest.raises(InvalidIdentifierError, match="table name"):
        VectorTable(db_url, table_name=name)
    assert sqlite_tables(seeded) == tables
    unchanged(seeded, before)


ODD_KEYS = [
    'q"x',
    "it's",
    "a.b",
    "a$.b",
    "[0]",
    "a[0].b",
    "`tick`",
    "semi;colon",
    " sp ",
    "ü",
    "\\",
]


def test_odd_metadata_keys_are_stored_and_filtered_literally(seeded):
    meta = {key: f"v{i}" for i, key in enumerate(ODD_KEYS)}
    meta["$dollar"] = "d"
    seeded.upsert([[1.0, 1.0, 0.0, 0.0]], ids=["odd"], metadatas=[meta])
    assert seeded.get(["odd"])[0].metadata == meta
    for i, key in enumerate(ODD_KEYS):
        assert [r.id for r in seeded.get(filter={key: f"v{i}"})] == ["odd"], key
        assert seeded.count({key: {"$exists": True}}) == 1, key
    # "a.b" is a literal key, never the path a -> b.
    seeded.upsert([[0.0, 1.0, 1.0, 0.0]], ids=["nested"], metadatas=[{"a": {"b": "v2"}}])
    assert [r.id for r in seeded.get(filter={"a.b": "v2"})] == ["odd"]


def test_a_dollar_key_cannot_be_filtered_on_and_says_so(seeded):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidFilterError, match=r"start with '\$' cannot be filtered"):
        seeded.delete(filter={"$dollar": "d"})
    unchanged(seeded, before)


@pytest.mark.parametrize(
    "meta",
    [{"a\x00b": 1}, {"": 1}, {1: "x"}, {None: "x"}, {("t",): 1}, {"\ud800": 1}],
    ids=["nul", "empty", "int", "none", "tuple", "surrogate"],
)
def test_bad_metadata_keys_are_refused_and_nothing_is_written(seeded, meta):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidIdentifierError):
        seeded.upsert(np.ones((2, DIM)), ids=["ok", "bad"], metadatas=[{"fine": 1}, meta])
    unchanged(seeded, before)


# --- filters -----------------------------------------------------------------------------

SQL_VALUES = [
    "en' OR '1'='1",
    'en" OR "1"="1',
    "en'); DROP TABLE t; --",
    "%' OR 1=1 --",
    "\\'; DELETE FROM t; --",
    "en` OR 1=1 #",
    "1 UNION SELECT id FROM t",
    "$.lang",
]


@pytest.mark.parametrize("payload", SQL_VALUES)
def test_sql_in_filter_values_and_keys_matches_literally_and_deletes_nothing(seeded, payload):
    before = table_snapshot(seeded)
    filters = [
        {"lang": payload},
        {"lang": {"$in": [payload, "zz"]}},
        {"lang": {"$like": payload}},
        {"lang": {"$ilike": payload}},
        {"lang": {"$gt": payload, "$lt": payload}},
    ]
    if not payload.startswith("$"):  # as a key too ('$...' keys are refused, tested above)
        filters += [
            {payload: "en"},
            {payload: {"$exists": True}},
            {"$or": [{"lang": payload}, {payload: 1}]},
        ]
    for flt in filters:
        assert seeded.count(flt) == 0, flt
        assert seeded.delete(filter=flt) == 0, flt
        assert seeded.search(np.ones(DIM), k=3, filter=flt) == [], flt
    unchanged(seeded, before)
    # The very same string stored as a value is found, and only that row.
    seeded.upsert([[0.5, 0.5, 0.5, 0.5]], ids=["evil"], metadatas=[{"lang": payload}])
    assert [r.id for r in seeded.get(filter={"lang": payload})] == ["evil"]


@pytest.mark.parametrize(
    "flt",
    [
        {"lang": {"$regex": ".*"}},
        {"lang": {"$where": "1=1"}},
        {"$expr": {"lang": "en"}},
        {"lang": {"$in": "en"}},
        {"$or": {"lang": "en"}},
        {"n": {"$gt": [1]}},
        {"n": {"$gt": float("nan")}},
        {"n": {"$lt": math.inf}},
        {"lang": {"$eq": {"$ne": 1}}},
        {"lang": {"$like": 5}},
        {"n": {"$gt": 2**70}},
        {"lang": object()},
    ],
    ids=lambda f: repr(f)[:40],
)
def test_malformed_filters_are_refused_for_every_operation(seeded, flt):
    before = table_snapshot(seeded)
    for op in (
        lambda: seeded.count(flt),
        lambda: seeded.get(filter=flt),
        lambda: seeded.search(np.ones(DIM), filter=flt),
        lambda: seeded.delete(filter=flt),
    ):
        with pytest.raises(InvalidFilterError):
            op()
    unchanged(seeded, before)


def test_delete_without_ids_or_filter_is_refused(seeded):
    before = table_snapshot(seeded)
    for kwargs in (
        {},
        {"filter": {}},
        {"filter": None},
        # issue 14: filters that set no condition are no condition, not "delete all"
        {"filter": {"$and": []}},
        {"filter": {"$nor": []}},
        {"filter": {"$and": [{}, {"$and": []}]}},
    ):
        with pytest.raises(InvalidInputError, match="clear"):
            seeded.delete(**kwargs)
    unchanged(seeded, before)


# --- vectors -----------------------------------------------------------------------------

BAD_VECTORS = [
    pytest.param([1.0, float("nan"), 0.0, 0.0], InvalidVectorError, "NaN", id="nan"),
    pytest.param([1.0, math.inf, 0.0, 0.0], InvalidVectorError, "infinity", id="inf"),
    pytest.param([-math.inf, 0.0, 0.0, 0.0], InvalidVectorError, "infinity", id="-inf"),
    pytest.param([1.0, None, 0.0, 0.0], InvalidVectorError, "None", id="none-value"),
    pytest.param(None, InvalidVectorError, "NoneType", id="none-vector"),
    pytest.param([1.0, "two", 0.0, 0.0], InvalidVectorError, "not a number", id="string-value"),
    pytest.param([1e39, 0.0, 0.0, 0.0], InvalidVectorError, "float32", id="beyond-float32"),
    pytest.param([1.0, 0.0, 0.0], DimensionMismatchError, "VECTOR\\(4\\)", id="short"),
    pytest.param([1.0] * 5, DimensionMismatchError, "VECTOR\\(4\\)", id="long"),
    pytest.param([], DimensionMismatchError, "different lengths", id="empty"),
]


@pytest.mark.parametrize(("bad", "error", "message"), BAD_VECTORS)
def test_bad_vectors_are_refused_and_nothing_is_written(seeded, bad, error, message):
    before = table_snapshot(seeded)
    rows = [[0.1, 0.2, 0.3, 0.4]] * 3 + [bad]  # only the last row is bad, in a later batch
    with pytest.raises(error, match=message):
        seeded.upsert(rows, ids=["n1", "n2", "n3", "n4"])
    unchanged(seeded, before)
    if bad is not None and len(bad) == DIM:
        with pytest.raises(error):
            seeded.search(bad)


def test_numpy_nan_and_wrong_dimension_arrays_are_refused(seeded):
    before = table_snapshot(seeded)
    matrix = np.ones((5, DIM), dtype=np.float32)
    matrix[4, 2] = np.nan
    with pytest.raises(InvalidVectorError, match="vector 4"):
        seeded.upsert(matrix)
    with pytest.raises(DimensionMismatchError):
        seeded.upsert(np.ones((2, DIM + 1)))
    with pytest.raises(DimensionMismatchError):
        VectorTable(seeded.engine, table_name=seeded.table_name, dimension=DIM + 1).count()
    unchanged(seeded, before)


def test_numeric_strings_inside_vectors_are_refused(seeded):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidVectorError):
        seeded.upsert([[1.0, "2", 0.0, 0.0]], ids=["s"])
    unchanged(seeded, before)


def test_a_bare_string_as_ids_is_refused(seeded):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidInputError, match="list"):
        seeded.upsert(np.ones((2, DIM)), ids="pq")
    unchanged(seeded, before)


# --- texts (the embedding step of an ingest) ---------------------------------------------


@pytest.mark.parametrize(
    "texts",
    [["fine", ""], ["fine", "   \n\t"], ["fine", None], ["fine", 3], "a single string"],
    ids=["empty", "whitespace", "none", "int", "bare-string"],
)
def test_bad_texts_fail_before_any_request_and_nothing_is_written(seeded, texts):
    before = table_snapshot(seeded)
    with FakeEmbeddingServer(api_key=KEY) as server:
        client = jina_client(server.url, dimensions=DIM)
        with pytest.raises(InvalidInputError, match=r"texts|string"):
            ingest(client, seeded, texts, ["n1", "n2"], batch_size=10)
        assert server.api_requests() == []  # nothing billed
    unchanged(seeded, before)


def test_bad_documents_ids_and_counts_are_refused(seeded):
    before = table_snapshot(seeded)
    one = np.ones((1, DIM))
    cases: list[dict[str, Any]] = [
        {"ids": [""]},
        {"ids": [5]},
        {"ids": ["a\x00b"]},
        {"ids": ["x" * 513]},
        {"ids": ["x", "y"]},
        {"documents": [b"bytes"]},
        {"documents": ["a", "b"]},
        {"metadatas": ["not a dict"]},
        {"metadatas": [{}, {}]},
    ]
    for kwargs in cases:
        with pytest.raises(InvalidInputError):
            seeded.upsert(one, **kwargs)
    unchanged(seeded, before)


# --- metadata values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, float("nan"), math.inf, b"bytes", datetime.date(2024, 1, 1), 1j],
    ids=["object", "set", "nan", "inf", "bytes", "date", "complex"],
)
def test_non_json_metadata_is_refused_and_nothing_is_written(seeded, value):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        seeded.upsert(
            np.ones((3, DIM)), ids=["x", "y", "z"], metadatas=[{"k": 1}, {"k": 2}, {"k": value}]
        )
    unchanged(seeded, before)


def test_nested_non_string_metadata_keys_are_refused(seeded):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidInputError):
        seeded.upsert(np.ones((1, DIM)), ids=["x"], metadatas=[{"pages": {1: "intro"}}])
    unchanged(seeded, before)


# --- size limits -------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["document", "metadata"])
def test_rows_over_tidbs_6_mib_limit_are_refused_and_nothing_is_written(seeded, where):
    before = table_snapshot(seeded)
    big = "x" * (6 * 1024 * 1024)
    documents = ["small", big if where == "document" else "small"]
    metadatas = [{}, {"blob": big} if where == "metadata" else {}]
    with pytest.raises(RecordTooLargeError, match="6 MiB") as info:
        seeded.upsert(
            np.ones((2, DIM)), ids=["ok", "huge"], documents=documents, metadatas=metadatas
        )
    assert "huge" in str(info.value)
    unchanged(seeded, before)
    # Just under the limit is fine (multi-byte text counts in bytes).
    seeded.upsert(np.ones((1, DIM)), ids=["large"], documents=["é" * (2 * 1024 * 1024)])
    assert len(seeded.get(["large"])[0].document) == 2 * 1024 * 1024


# --- duplicate ids -----------------------------------------------------------------------


def test_duplicate_ids_in_one_call_last_one_wins_across_batches(seeded):
    vectors = np.arange(5 * DIM, dtype=np.float32).reshape(5, DIM) + 1
    ids = ["d", "e", "d", "a", "d"]  # batch_rows=2: the copies of "d" land in three batches
    returned = seeded.upsert(
        vectors,
        ids=ids,
        documents=["d1", "e1", "d2", "a2", "d3"],
        metadatas=[{"k": i} for i in range(5)],
    )
    assert returned == ids
    assert seeded.count() == 5  # a, b, c, d, e: once each
    d, a = seeded.get(["d", "a"], include_embeddings=True)
    assert (d.document, d.metadata) == ("d3", {"k": 4})
    np.testing.assert_array_equal(d.embedding, vectors[4])
    assert (a.document, a.metadata) == ("a2", {"k": 3})


def test_every_refusal_is_a_tidb_jina_error_and_a_value_error():
    for error in (
        InvalidVectorError,
        DimensionMismatchError,
        InvalidFilterError,
        InvalidIdentifierError,
        RecordTooLargeError,
    ):
        assert issubclass(error, TiDBJinaError) and issubclass(error, ValueError)


# --- issue 14: everything validated before the first write ---------------------------------
# Each case: a clear error naming the problem, and the table byte-for-byte unchanged. The
# bad row is the last of five with batch_rows=2, so a late failure would have committed
# two batches already.


def _five_rows_last_bad(**last: Any) -> dict[str, Any]:
    rows: dict[str, Any] = {
        "ids": ["n1", "n2", "n3", "n4", "n5"],
        "documents": ["d1", "d2", "d3", "d4", "d5"],
        "metadatas": [{"k": i} for i in range(5)],
    }
    for column, value in last.items():
        rows[column][-1] = value
    return rows


BAD_LATE_ROWS = [
    pytest.param({"metadatas": {"tenant": "acme\x00evil"}}, "NUL", id="nul-value"),
    pytest.param({"metadatas": {"t": {"x": ["a\x00"]}}}, "NUL", id="nul-nested-value"),
    pytest.param({"metadatas": {"t": {"a\x00b": 1}}}, "NUL", id="nul-nested-key"),
    pytest.param({"metadatas": {"tenant": "\ud800"}}, "lone surrogate", id="surrogate-value"),
    pytest.param({"metadatas": {"t": {"\udfff": 1}}}, "lone surrogate", id="surrogate-key"),
    pytest.param({"metadatas": {"t": [["x\ud800"]]}}, "lone surrogate", id="surrogate-deep"),
    pytest.param({"ids": "n\ud800"}, "lone surrogate", id="surrogate-id"),
    pytest.param({"documents": "text \udc80"}, "lone surrogate", id="surrogate-document"),
    pytest.param(
        {"metadatas": {"arr": np.array([{1: "x"}], dtype=object)}},
        "key 1 \\(int\\)",
        id="int-key-in-numpy-object-array",
    ),
    pytest.param({"metadatas": {"t": {(1, 2): "x"}}}, "JSON keys must be strings", id="tuple-key"),
    # Review of issue 14: SQLite's JSON reads these as REAL, so 2**63 + 1 == 2.0**63.
    pytest.param({"metadatas": {"n": 2**63}}, "outside the signed 64-bit", id="int-2**63"),
    pytest.param({"metadatas": {"n": -(2**63) - 1}}, "outside the signed 64", id="int-below"),
    pytest.param({"metadatas": {"t": [{"n": 10**30}]}}, "outside the signed 64", id="int-deep"),
    pytest.param(
        {"metadatas": {"n": np.uint64(2**64 - 1)}}, "outside the signed 64", id="numpy-uint64"
    ),
    pytest.param(
        {"metadatas": {"a": np.array([1, 2**63], dtype=np.uint64)}},
        "outside the signed 64",
        id="numpy-uint64-array",
    ),
]


@pytest.mark.parametrize(("last", "message"), BAD_LATE_ROWS)
def test_a_bad_late_row_is_refused_before_any_batch_is_written(seeded, last, message):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidInputError, match=message):
        seeded.upsert(np.ones((5, DIM)), **_five_rows_last_bad(**last))
    unchanged(seeded, before)


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"k": value} if i % 2 else [value]
    return value


def test_deep_metadata_is_a_clear_error_not_a_recursion_error(seeded):
    before = table_snapshot(seeded)
    for depth in (65, 1_000, 100_000):
        with pytest.raises(InvalidInputError, match="nests more than 64 levels"):
            seeded.upsert(np.ones((5, DIM)), **_five_rows_last_bad(metadatas={"d": _nested(depth)}))
    unchanged(seeded, before)
    seeded.upsert(np.ones((1, DIM)), ids=["deep-ok"], metadatas=[{"d": _nested(62)}])
    assert seeded.get(["deep-ok"])[0].metadata == {"d": _nested(62)}


def _deep_filter(depth: int) -> dict[str, Any]:
    flt: dict[str, Any] = {"lang": "en"}
    for i in range(depth):
        flt = {"$not": flt} if i % 2 else {"$and": [flt]}
    return flt


def test_deep_filters_are_a_clear_error_not_a_recursion_error(seeded):
    before = table_snapshot(seeded)
    for depth in (40, 400, 5_000):
        flt = _deep_filter(depth)
        for op in (
            lambda f: seeded.count(f),
            lambda f: seeded.get(filter=f),
            lambda f: seeded.search(np.ones(DIM), filter=f),
            lambda f: seeded.delete(filter=f),
        ):
            with pytest.raises(InvalidFilterError, match="nests more than 32 levels"):
                op(flt)
    unchanged(seeded, before)
    assert seeded.count(_deep_filter(20)) == 2  # an even number of $not: lang == "en"


def test_a_nul_in_a_filter_value_is_refused_not_truncated(seeded):
    before = table_snapshot(seeded)
    for flt in ({"lang": "en\x00"}, {"lang": {"$in": ["en\x00x"]}}, {"lang": {"$like": "e\x00%"}}):
        with pytest.raises(InvalidFilterError, match="NUL"):
            seeded.delete(filter=flt)
        with pytest.raises(InvalidFilterError, match="NUL"):
            seeded.search(np.ones(DIM), filter=flt)
    unchanged(seeded, before)


def test_row_size_counts_utf8_bytes_of_metadata_and_ids(seeded):
    before = table_snapshot(seeded)
    # 3.3 million characters, 6.6 MB in UTF-8: over TiDB's 6 MiB, though under in chars.
    meta = {"blob": "é" * 3_300_000}
    with pytest.raises(RecordTooLargeError, match="6 MiB"):
        seeded.upsert(np.ones((5, DIM)), **_five_rows_last_bad(metadatas=meta))
    unchanged(seeded, before)


BAD_COMPONENTS = [
    pytest.param([[0.1, True, 0.0, 0.0]], "True \\(bool\\)", id="bool-in-list"),
    pytest.param([[0.1, "0.5", 0.0, 0.0]], "'0.5' \\(str\\)", id="numeric-string"),
    pytest.param([[0.1, 1 + 2j, 0.0, 0.0]], "complex", id="python-complex"),
    pytest.param(np.ones((1, DIM), dtype=np.complex64), "complex", id="numpy-complex"),
    pytest.param(np.ones((1, DIM), dtype=bool), "bool", id="numpy-bool"),
    pytest.param([np.array([1, 2, 3, True], dtype=object)], "True", id="object-array-bool"),
]


@pytest.mark.parametrize(("vectors", "message"), BAD_COMPONENTS)
def test_vector_components_must_be_real_numbers(seeded, vectors, message):
    before = table_snapshot(seeded)
    with pytest.raises(InvalidVectorError, match=message):
        seeded.upsert(vectors, ids=["v"])
    one = vectors[0]
    with pytest.raises(InvalidVectorError):
        seeded.search(one)
    unchanged(seeded, before)


@pytest.mark.parametrize("component", [True, "0.5"], ids=["json-true", "json-string"])
def test_a_providers_non_numeric_component_is_refused_and_nothing_is_written(seeded, component):
    """A provider answering ``true`` or ``"0.5"`` (real HTTP on loopback)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tidb_jina import ResponseFormatError
    from tidb_jina.embeddings import JinaClient

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = [
                {"index": i, "embedding": [0.5, component, 0.1, 0.2]}
                for i in range(len(body["input"]))
            ]
            payload = json.dumps({"data": data, "usage": {"total_tokens": 1}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    before = table_snapshot(seeded)
    try:
        client = JinaClient(
            api_key=KEY, base_url=f"http://127.0.0.1:{server.server_port}", dimensions=DIM
        )
        with pytest.raises(ResponseFormatError, match="components must be numbers"):
            seeded.add_texts(["one", "two"], ids=["p1", "p2"], embed=client.embed_documents)
    finally:
        server.shutdown()
        server.server_close()
    unchanged(seeded, before)


@pytest.mark.parametrize("bad", [float("nan"), math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_max_distance_must_be_finite(seeded, bad):
    with pytest.raises(InvalidInputError, match="finite"):
        seeded.search(np.ones(DIM), max_distance=bad)


def test_a_10000_value_in_list_works_on_every_path(seeded):
    """Issue 14: it used to fail with "Expression tree is too large" after seconds."""
    wanted = ["en", *(f"pad{i}" for i in range(10_000))]
    numbers = [1, *range(10**6, 10**6 + 10_000)]
    assert seeded.count({"lang": {"$in": wanted}}) == 2
    assert {r.id for r in seeded.get(filter={"lang": {"$in": wanted}})} == {"a", "c"}
    assert len(seeded.search(np.ones(DIM), k=5, filter={"n": {"$in": numbers}})) == 1
    assert seeded.count({"$or": [{"n": v} for v in numbers]}) == 1
    assert seeded.count({"lang": {"$nin": wanted}}) == 1
    assert seeded.delete(filter={"lang": {"$in": wanted}}) == 2
    assert [r.id for r in seeded.get()] == ["b"]


def test_empty_means_the_same_on_every_path(seeded):
    """Issue 14: the string "[]" was empty for search (NumPy) but not for get/count/delete."""
    seeded.upsert(
        np.ones((4, DIM)),
        ids=["str-brackets", "arr-empty", "str-empty", "arr-full"],
        metadatas=[{"e": "[]"}, {"e": []}, {"e": ""}, {"e": ["x"]}],
    )
    flt = {"e": {"$empty": True}}
    sql_search = VectorTable(seeded.engine, table_name=seeded.table_name, search_cache=False)
    want = {"a", "b", "c", "arr-empty", "str-empty"}  # the seed rows lack "e"
    assert {r.id for r in seeded.get(filter=flt)} == want
    assert seeded.count(flt) == len(want)
    assert {h.id for h in seeded.search(np.ones(DIM), k=10, filter=flt)} == want
    assert {h.id for h in sql_search.search(np.ones(DIM), k=10, filter=flt)} == want
    assert seeded.delete(filter=flt) == len(want)
    assert {r.id for r in seeded.get()} == {"str-brackets", "arr-full"}


def test_a_parsed_filter_that_sets_no_condition_deletes_nothing(seeded):
    from tidb_jina.store import Filter
    from tidb_jina.store._filter_tree import And

    before = table_snapshot(seeded)
    with pytest.raises(InvalidInputError, match="clear"):
        seeded.delete(filter=Filter(And(())))
    unchanged(seeded, before)


def test_int64_edges_are_stored_exactly_and_never_equal_a_nearby_float(seeded):
    """Review of issue 14: integers are exact up to the signed 64-bit edges, on every path."""
    values = [2**53, 2**53 + 1, 2**63 - 1, -(2**63), float(2**53)]
    ids = [f"big{i}" for i in range(len(values))]
    seeded.upsert(np.ones((len(values), DIM)), ids=ids, metadatas=[{"v": v} for v in values])
    assert [r.metadata["v"] for r in seeded.get(ids)] == values
    sql_search = VectorTable(seeded.engine, table_name=seeded.table_name, search_cache=False)
    cases = {
        2**53 + 1: {"big1"},
        float(2**53): {"big0", "big4"},  # 2**53 == 2.0**53 exactly; 2**53 + 1 is not
        2**63 - 1: {"big2"},
        float(2**63): set(),  # no stored integer equals 2.0**63
    }
    for value, want in cases.items():
        for flt in ({"v": value}, {"v": {"$in": [value, *range(100, 110)]}}):
            assert {r.id for r in seeded.get(filter=flt)} == want, flt
            assert {h.id for h in seeded.search(np.ones(DIM), k=10, filter=flt)} == want
            assert {h.id for h in sql_search.search(np.ones(DIM), k=10, filter=flt)} == want
    assert {r.id for r in seeded.get(filter={"v": {"$gte": float(2**63)}})} == set()


TRUE_BY_STRUCTURE = [
    {"$or": [{"lang": {"$nin": []}}, {"lang": "en"}]},
    {"$or": [{}, {"lang": "en"}]},
    {"lang": {"$not": {"$in": []}}},
    {"$nor": [{"$or": []}, {"$and": [{"n": 1}, {"n": {"$in": []}}]}]},
    {"$and": [{"$or": [{"$nor": []}]}, {"$not": {"lang": {"$in": []}}}]},
]


@pytest.mark.parametrize("flt", TRUE_BY_STRUCTURE)
def test_a_filter_true_by_structure_at_any_depth_deletes_nothing(seeded, flt):
    """Review of issue 14: only the top level was recognised, so an always-true branch
    inside $or made delete(filter=...) empty the table."""
    before = table_snapshot(seeded)
    assert seeded.count(flt) == 3 and len(seeded.get(filter=flt)) == 3
    with pytest.raises(InvalidInputError, match=r"sets no condition.*clear"):
        seeded.delete(filter=flt)
    unchanged(seeded, before)
    assert seeded.delete(["a"], filter=flt) == 1  # with ids it restricts nothing more
