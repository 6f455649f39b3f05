"""Behaviour of VectorTable on every engine (embedded always, TiDB when configured)."""

from __future__ import annotations

import math
import uuid

import numpy as np
import pytest

from tidb_jina import (
    DimensionMismatchError,
    InvalidFilterError,
    InvalidIdentifierError,
    InvalidInputError,
    InvalidVectorError,
    RecordTooLargeError,
    SchemaError,
)
from tidb_jina.store import DistanceMetric, Record, VectorTable
from tidb_jina.store._backend_tidb import results_from_rows
from tidb_jina.store._db import batch_slices

RNG = np.random.default_rng(7)


def _vectors(n: int, d: int = 8) -> np.ndarray:
    return RNG.standard_normal((n, d)).astype(np.float32)


def _snapshot(table: VectorTable) -> list[tuple]:
    """Everything stored, for 'the table is unchanged' assertions."""
    return [
        (r.id, r.document, r.metadata, r.embedding.tobytes())
        for r in table.get(include_embeddings=True)
    ]


def _seed(table: VectorTable, n: int = 6, d: int = 8) -> np.ndarray:
    vectors = _vectors(n, d)
    table.upsert(
        vectors,
        ids=[f"id{i}" for i in range(n)],
        documents=[f"doc {i}" for i in range(n)],
        metadatas=[{"i": i, "even": i % 2 == 0, "tag": "abc"[i % 3]} for i in range(n)],
    )
    return vectors


# --- life cycle ------------------------------------------------------------------------


def test_constructor_does_no_io_and_reads_are_empty_before_first_write(make_table):
    table = make_table()
    assert table.exists() is False
    assert table.count() == 0
    assert table.get(["nope"]) == []
    assert table.search([0.0] * 8, k=3) == []
    assert table.delete(["nope"]) == 0
    assert table.exists() is False, "reads must not create the table"


def test_first_write_creates_table_with_the_vectors_dimension(make_table):
    table = make_table()
    _seed(table, d=5)
    assert table.exists()
    assert table.dimension == 5
    assert make_table().dimension == 5, "a second handle reads the dimension from the table"


def test_create_without_dimension_is_a_clear_error(make_table):
    with pytest.raises(Exception, match="dimension="):
        make_table().create()


def test_declared_dimension_must_match_existing_table(make_table):
    _seed(make_table(), d=8)
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(8\).*dimension=4"):
        make_table(dimension=4).count()
    # The table's own size is named, not the declared one, whatever is called first.
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(8\).*dimension=4"):
        make_table(dimension=4).search([0.0] * 8)
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(8\).*dimension=4"):
        make_table(dimension=4).upsert([[0.0] * 8], ids=["x"])


def test_drop_removes_table_and_drop_existing_drops_on_first_use(make_table):
    table = make_table()
    _seed(table)
    fresh = make_table(drop_existing=True)
    assert fresh.count() == 0
    table.drop()
    table.drop()  # idempotent
    assert not table.exists()


# --- upsert / get ----------------------------------------------------------------------


def test_upsert_round_trips_vectors_exactly_and_metadata(make_table):
    table = make_table()
    vectors = _vectors(3, 8)
    vectors[0, 0] = np.float32(1e-30)
    vectors[1, 1] = np.float32(3.4e38)
    metas = [{"title": "Ünïcødé ✓", "n": 1.5, "tags": ["a", "b"]}, {}, {"nested": {"x": None}}]
    ids = table.upsert(vectors, ids=["a", "b", "c"], documents=["A", None, ""], metadatas=metas)
    assert ids == ["a", "b", "c"]
    got = table.get(["c", "a", "missing", "b"], include_embeddings=True)
    assert [r.id for r in got] == ["c", "a", "b"]
    by_id = {r.id: r for r in got}
    for i, key in enumerate(["a", "b", "c"]):
        assert by_id[key].embedding.dtype == np.float32
        assert np.array_equal(by_id[key].embedding, vectors[i])
        assert by_id[key].metadata == metas[i]
    assert by_id["a"].document == "A" and by_id["b"].document is None and by_id["c"].document == ""


def test_upsert_replaces_existing_ids(make_table):
    table = make_table()
    _seed(table)
    new = _vectors(1)
    table.upsert(new, ids=["id2"], documents=["changed"], metadatas=[{"v": 2}])
    assert table.count() == 6
    (rec,) = table.get(["id2"], include_embeddings=True)
    assert rec.document == "changed" and rec.metadata == {"v": 2}
    assert np.array_equal(rec.embedding, new[0])


def test_duplicate_ids_in_one_call_last_one_wins(make_table):
    table = make_table()
    vectors = _vectors(3)
    table.upsert(vectors, ids=["x", "y", "x"], documents=["first", "y", "last"])
    assert table.count() == 2
    (rec,) = table.get(["x"], include_embeddings=True)
    assert rec.document == "last" and np.array_equal(rec.embedding, vectors[2])


def test_missing_ids_are_generated_uuids(make_table):
    table = make_table()
    ids = table.upsert(_vectors(3))
    assert len(set(ids)) == 3
    assert all(uuid.UUID(i) for i in ids)
    assert {r.id for r in table.get(ids)} == set(ids)


def test_accepts_lists_float64_and_numpy_scalars(make_table):
    table = make_table()
    rows = [[np.float64(0.5), 1, 2.25], np.array([1.0, 2.0, 3.0]), (0.0, 0.0, 1.0)]
    table.upsert(rows, ids=["a", "b", "c"])
    assert table.count() == 3
    (rec,) = table.get(["a"], include_embeddings=True)
    assert rec.embedding.tolist() == [0.5, 1.0, 2.25]


def test_empty_upsert_is_a_no_op(make_table):
    table = make_table()
    assert table.upsert([]) == []
    assert not table.exists()


def test_get_by_filter_and_limit(make_table):
    table = make_table()
    _seed(table)
    assert [r.id for r in table.get(filter={"even": True})] == ["id0", "id2", "id4"]
    assert len(table.get(limit=2)) == 2
    assert [r.id for r in table.get(["id1", "id2"], filter={"even": True})] == ["id2"]


def test_batches_are_bounded_and_all_rows_land(make_table):
    table = make_table(batch_rows=3, batch_bytes=10_000)
    vectors = _vectors(20, 16)
    table.upsert(vectors, ids=[str(i) for i in range(20)], documents=["x" * 500] * 20)
    assert table.count() == 20
    batches = batch_slices([4000] * 10, table.batch_rows, table.batch_bytes)
    assert [b.stop - b.start for b in batches] == [2, 2, 2, 2, 2], "bytes split before rows"
    batches = batch_slices([1] * 7, table.batch_rows, table.batch_bytes)
    assert [(b.start, b.stop) for b in batches] == [(0, 3), (3, 6), (6, 7)]
    assert batch_slices([50_000, 1], 3, 10_000) == [slice(0, 1), slice(1, 2)], "big row alone"


# --- delete / count --------------------------------------------------------------------


def test_delete_by_ids_filter_and_both(make_table):
    table = make_table()
    _seed(table)
    assert table.delete(["id0", "nope"]) == 1
    assert table.delete(filter={"tag": "b"}) == 2  # id1, id4
    assert table.delete(["id2", "id3"], filter={"even": True}) == 1  # only id2
    assert sorted(r.id for r in table.get()) == ["id3", "id5"]
    assert table.delete([]) == 0


def test_delete_without_arguments_refuses_and_keeps_rows(make_table):
    table = make_table()
    _seed(table)
    with pytest.raises(InvalidInputError, match=r"clear\(\)"):
        table.delete()
    with pytest.raises(InvalidInputError):
        table.delete(filter={})
    assert table.count() == 6
    assert table.clear() == 6
    assert table.count() == 0 and table.exists()


def test_count_with_filter(make_table):
    table = make_table()
    _seed(table)
    assert table.count() == 6
    assert table.count({"i": {"$gte": 4}}) == 2
    assert table.count({"$or": [{"tag": "a"}, {"i": 1}]}) == 3


# --- search ----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", list(DistanceMetric))
def test_search_matches_numpy_brute_force_for_every_metric(make_table, metric):
    table = make_table(metric=metric)
    vectors = _vectors(200, 16)
    table.upsert(vectors, ids=[f"{i:03d}" for i in range(200)])
    query = _vectors(1, 16)[0]
    v64, q64 = vectors.astype(np.float64), query.astype(np.float64)
    expected = {
        DistanceMetric.COSINE: 1
        - (v64 @ q64) / (np.linalg.norm(v64, axis=1) * np.linalg.norm(q64)),
        DistanceMetric.L2: np.linalg.norm(v64 - q64, axis=1),
        DistanceMetric.INNER_PRODUCT: -(v64 @ q64),
        DistanceMetric.L1: np.abs(v64 - q64).sum(axis=1),
    }[metric]
    results = table.search(query, k=10)
    assert [r.id for r in results] == [f"{i:03d}" for i in np.argsort(expected)[:10]]
    for r in results:
        assert r.distance == pytest.approx(expected[int(r.id)], rel=1e-4, abs=1e-4)
        assert 0.0 <= r.score <= 1.0
        assert r.score == pytest.approx(metric.score(r.distance))
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_search_with_filter_threshold_k_and_embeddings(make_table):
    table = make_table()
    vectors = _seed(table)
    results = table.search(vectors[3], k=10, filter={"even": False})
    assert {r.id for r in results} == {"id1", "id3", "id5"}
    assert results[0].id == "id3" and results[0].distance == pytest.approx(0.0, abs=1e-5)
    assert results[0].score == pytest.approx(1.0, abs=1e-5)
    assert results[0].metadata == {"i": 3, "even": False, "tag": "a"}
    assert results[0].document == "doc 3"
    assert results[0].embedding is None
    near = table.search(vectors[3], k=10, max_distance=1e-4)
    assert [r.id for r in near] == ["id3"]
    with_vec = table.search(vectors[3], k=1, include_embeddings=True)
    assert np.array_equal(with_vec[0].embedding, vectors[3])
    assert len(table.search(vectors[0], k=100)) == 6


def test_search_rejects_bad_queries_clearly(make_table):
    table = make_table()
    _seed(table)
    with pytest.raises(DimensionMismatchError, match="VECTOR\\(8\\)"):
        table.search([1.0, 2.0], k=1)
    with pytest.raises(InvalidVectorError, match="NaN"):
        table.search([math.nan] * 8)
    with pytest.raises(InvalidInputError, match="k must be a positive integer"):
        table.search([0.0] * 8, k=0)
    with pytest.raises(InvalidFilterError, match=r"\$like"):
        table.search([0.0] * 8, filter={"i": {"$regex": "x"}})


def test_max_marginal_relevance_prefers_diverse_results(make_table):
    table = make_table()
    # a2 is a near-duplicate of a; b is less relevant but different; c is unrelated.
    vectors = np.array([[1, 0, 0], [1, 0.05, 0], [0.5, 1, 0], [0, 0, 1]], dtype=np.float32)
    table.upsert(vectors, ids=["a", "a2", "b", "c"])
    query = np.array([1.0, 0.5, 0.0], dtype=np.float32)
    assert [r.id for r in table.search(query, k=2)] == ["a2", "a"]
    mmr = table.max_marginal_relevance_search(query, k=2, fetch_k=4, lambda_mult=0.5)
    assert [r.id for r in mmr] == ["a2", "b"]
    assert all(r.embedding is None for r in mmr)
    pure = table.max_marginal_relevance_search(query, k=3, fetch_k=4, lambda_mult=1.0)
    assert [r.id for r in pure] == [r.id for r in table.search(query, k=3)]


# --- bad input leaves the table unchanged ----------------------------------------------


@pytest.mark.parametrize(
    ("vectors", "error", "message"),
    [
        ([[1.0] * 8, [math.nan] + [0.0] * 7], InvalidVectorError, "NaN"),
        ([[1.0] * 8, [math.inf] + [0.0] * 7], InvalidVectorError, "inf"),
        ([[1.0] * 8, [None] + [0.0] * 7], InvalidVectorError, "None at position 0"),
        ([[1.0] * 8, None], InvalidVectorError, "vector 1"),
        ([[1.0] * 8, [1e39] + [0.0] * 7], InvalidVectorError, "float32"),
        ([[1.0] * 8, [1.0] * 7], DimensionMismatchError, "lengths"),
        ([[1.0] * 4, [1.0] * 4], DimensionMismatchError, r"VECTOR\(8\)"),
        ([["a"] * 8, [1.0] * 8], InvalidVectorError, "not a number"),
    ],
)
def test_bad_vectors_raise_and_write_nothing(make_table, vectors, error, message):
    table = make_table()
    _seed(table)
    before = _snapshot(table)
    with pytest.raises(error, match=message):
        table.upsert(vectors, ids=["new1", "id0"], documents=["n", "overwrite?"])
    assert _snapshot(table) == before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ids": ["a", ""]}, InvalidInputError, "non-empty strings"),
        ({"ids": ["a", 5]}, InvalidInputError, "non-empty strings"),
        ({"ids": ["a"]}, InvalidInputError, "1 ids for 2 vectors"),
        ({"ids": ["a", "x" * 600]}, InvalidInputError, "at most 512"),
        ({"ids": ["a", "b\x00"]}, InvalidIdentifierError, "NUL"),
        ({"documents": ["a", 3]}, InvalidInputError, "must be str"),
        ({"metadatas": [{}, {"when": object()}]}, InvalidInputError, "JSON"),
        ({"metadatas": [{}, {"x": math.nan}]}, InvalidInputError, "JSON"),
        ({"metadatas": [{}, ["not", "a", "dict"]]}, InvalidInputError, "must be a dict"),
        ({"metadatas": [{}, {"": 1}]}, InvalidIdentifierError, "empty"),
        ({"metadatas": [{}, {"a\x00b": 1}]}, InvalidIdentifierError, "NUL"),
        ({"documents": ["a", "x" * (7 * 2**20)]}, RecordTooLargeError, "6 MiB"),
    ],
)
def test_bad_rows_raise_and_write_nothing(make_table, kwargs, error, message):
    table = make_table()
    _seed(table)
    before = _snapshot(table)
    kwargs.setdefault("ids", ["new1", "id0"])
    with pytest.raises(error, match=message):
        table.upsert(_vectors(2), **kwargs)
    assert _snapshot(table) == before


def test_metadata_accepts_numpy_values_and_keys_with_special_characters(make_table):
    table = make_table()
    meta = {"a.b": np.int64(3), 'q"uote': np.float64(0.5), "$d": [np.int32(1)], "sp ace": True}
    table.upsert(_vectors(1), ids=["m"], metadatas=[meta])
    assert table.get(["m"])[0].metadata == {"a.b": 3, 'q"uote': 0.5, "$d": [1], "sp ace": True}
    assert table.count({'q"uote': 0.5}) == 1
    assert table.count({"a.b": {"$gt": 2}}) == 1


@pytest.mark.parametrize(
    "name",
    [
        "bad'name",
        "semi;colon",
        "back`tick",
        "sp ace",
        "ünïcode",
        "1; DROP TABLE x",
        "",
        "x" * 65,
        "dash-name",
    ],
)
def test_unsafe_table_names_are_rejected(name):
    with pytest.raises(InvalidIdentifierError):
        VectorTable("sqlite://", table_name=name)


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(InvalidInputError, match="cosine, l2"):
        VectorTable("sqlite://", metric="hamming")


def test_foreign_table_is_reported_not_overwritten(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    with pytest.raises(SchemaError, match="not a vector table"):
        VectorTable(url, table_name="users").count()


def test_records_are_plain_dataclasses():
    rec = Record(id="a", document="d", metadata={"k": 1})
    assert rec == Record(id="a", document="d", metadata={"k": 1})


def test_search_restricted_to_ids(make_table):
    table = make_table()
    vectors = _seed(table)
    hits = table.search(vectors[0], k=5, ids=["id3", "id4", "nope"])
    assert sorted(h.id for h in hits) == ["id3", "id4"]
    assert table.search(vectors[0], k=5, ids=[]) == []
    both = table.search(vectors[0], k=5, ids=["id3", "id4"], filter={"even": True})
    assert [h.id for h in both] == ["id4"]
    mmr = table.max_marginal_relevance_search(vectors[0], k=2, ids=["id1", "id2", "id5"])
    assert {h.id for h in mmr} <= {"id1", "id2", "id5"} and len(mmr) == 2


# --- async twins -----------------------------------------------------------------------


async def test_async_twins_share_state_and_data_with_the_sync_table(make_table, store_url):
    import asyncio

    table = make_table()
    assert table.aio.native is (store_url != "sqlite://")
    vectors = _vectors(4)
    ids = await table.aio.upsert(vectors, ids=["a", "b", "c", "d"], documents=list("ABCD"))
    assert ids == ["a", "b", "c", "d"]
    assert table.count() == 4 and await table.aio.count() == 4
    assert table.dimension == 8
    hits = await table.aio.search(vectors[2], k=2)
    assert hits[0].id == "c" and hits == table.search(vectors[2], k=2)
    assert [r.id for r in await table.aio.get(["d", "a"])] == ["d", "a"]
    mmr = await table.aio.max_marginal_relevance_search(vectors[0], k=2)
    assert len(mmr) == 2 and mmr[0].id == "a"
    many = await asyncio.gather(*(table.aio.search(v, k=1) for v in vectors))
    assert [m[0].id for m in many] == ["a", "b", "c", "d"]
    assert await table.aio.delete(["a"]) == 1
    with pytest.raises(InvalidInputError, match="clear"):
        await table.aio.delete()
    assert await table.aio.clear() == 3
    await table.aio.dispose()


def test_a_table_created_by_the_peer_stores_opens_as_is(tmp_path):
    """langchain-community / llama-index TiDBVectorStore DDL (reference/peers.md)."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'peer.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE langchain_vector (id VARCHAR(36) PRIMARY KEY, "
            "embedding VECTOR(3) NOT NULL, document TEXT, meta JSON, "
            "create_time DATETIME DEFAULT CURRENT_TIMESTAMP, "
            "update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"
        )
    table = VectorTable(url, table_name="langchain_vector")
    assert table.dimension == 3
    table.upsert([[1.0, 0.0, 0.0]], ids=["0f8fad5b-d9cb-469f-a165-70867728950e"], documents=["x"])
    assert table.search([1.0, 0.0, 0.0], k=1)[0].document == "x"
    with pytest.raises(InvalidInputError, match="at most 36"):
        table.upsert([[0.0, 1.0, 0.0]], ids=["n" * 37])
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(3\)"):
        table.upsert([[1.0, 2.0]], ids=["short"])
    assert table.count() == 1


def test_index_status_on_the_embedded_engine_is_exact(make_table, store_url):
    table = make_table()
    assert table.index_status().kind == "missing"
    _seed(table)
    status = table.index_status()
    if store_url.startswith("sqlite"):
        assert status.kind == "exact" and status.ready
        table.create_vector_index()  # a no-op here, never an error
    else:
        assert status.kind in ("hnsw", "exact")


@pytest.mark.parametrize(
    ("options", "prefilter"),
    [
        ({}, True),
        ({"filter": {"even": True}}, True),
        ({"filter": {"even": True}}, False),
        ({"max_distance": 1.0}, True),
        ({"filter": {"tag": "a"}, "include_embeddings": True}, False),
    ],
)
def test_tidb_statement_shapes_run_and_agree_with_the_embedded_search(options, prefilter):
    """The SQL TiDB gets (pre- and post-filter), run for real on the embedded engine's
    VEC_* functions, ranks exactly like the NumPy search."""
    table = VectorTable("sqlite://", table_name="shapes")
    vectors = _seed(table, n=30)
    query = vectors[4]
    stmt = table.search_statement(query, k=5, prefilter=prefilter, **options)
    with table.engine.connect() as conn:
        via_sql = results_from_rows(conn.execute(stmt).all(), table.metric, stmt)
    via_numpy = table.search(query, k=5, **options)
    assert [h.id for h in via_sql] == [h.id for h in via_numpy]
    assert [h.distance for h in via_sql] == pytest.approx([h.distance for h in via_numpy], abs=1e-5)
    if options.get("include_embeddings"):
        assert np.array_equal(via_sql[0].embedding, via_numpy[0].embedding)


async def test_close_releases_what_the_table_opened(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'c.db'}"
    async with VectorTable(url, table_name="c") as table:
        table.upsert([[1.0, 0.0]], ids=["a"])
        assert table.search([1.0, 0.0], k=1)[0].id == "a"
        assert (await table.aio.search([1.0, 0.0], k=1))[0].id == "a"
        assert table._backend.cache._watcher is not None
    assert table._backend.cache._watcher is None
    assert table.engine.pool.checkedin() == 0, "the pool was disposed"
    assert table.count() == 1, "a closed table reconnects when used again"
    table.close()
    engine = sa.create_engine(url)
    with VectorTable(engine, table_name="c") as borrowed:
        assert borrowed.count() == 1
    with engine.connect() as conn:  # a caller's engine is not disposed behind its back
        assert conn.exec_driver_sql("SELECT count(*) FROM c").scalar_one() == 1


def test_none_ids_are_generated_one_by_one(make_table):
    """The adapters pass LangChain documents whose id may be None: each gets a UUID4."""
    table = make_table()
    ids = table.upsert(_vectors(3), ids=["given", None, None], documents=["a", "b", "c"])
    assert ids[0] == "given"
    assert len({*ids}) == 3 and all(uuid.UUID(i).version == 4 for i in ids[1:])
    assert [r.document for r in table.get(ids)] == ["a", "b", "c"]


def test_settings_fixed_at_construction_are_read_only():
    """The backend holds the same values: changing one on the facade alone would split them."""
    table = VectorTable("sqlite://", table_name="fixed", metric="l2", search_cache=False)
    assert (table.metric, table.search_cache, table.table_name) == (
        DistanceMetric.L2,
        False,
        "fixed",
    )
    for name, value in (("search_cache", True), ("metric", "cosine"), ("indexed_key", "k")):
        with pytest.raises(AttributeError):
            setattr(table, name, value)


def test_add_texts_with_nothing_to_add_touches_no_database():
    """Unreachable server, drop_existing: an empty call still returns [] and drops nothing."""
    from tidb_jina.testing import LexicalEmbedder

    table = VectorTable(
        "mysql+pymysql://u:p@127.0.0.1:1/db",
        table_name="never",
        drop_existing=True,
        embedder=LexicalEmbedder(dimension=8),
    )
    assert table.add_texts([]) == []
    with pytest.raises(InvalidInputError, match="ids"):
        table.add_texts([], ids=["x"])


async def test_async_search_text_checks_options_before_embedding():
    from tidb_jina.testing import LexicalEmbedder

    calls: list[str] = []

    class Counting(LexicalEmbedder):
        async def aembed_query(self, text: str) -> np.ndarray:
            calls.append(text)
            return await super().aembed_query(text)

    table = VectorTable("sqlite://", table_name="opts", embedder=Counting(dimension=16))
    table.add_texts(["alpha beta", "gamma"], ids=["a", "g"])
    with pytest.raises(InvalidInputError, match="k must be"):
        await table.aio.search_text("alpha", k=0)
    with pytest.raises(InvalidFilterError):
        await table.aio.search_text("alpha", filter={"x": {"$bogus": 1}})
    assert calls == [], "a bad option must not cost an embedding call"
    hits = await table.aio.search_text("alpha", k=1, filter={"$or": [{"a": 1}, {}]})
    assert calls == ["alpha"] and len(hits) <= 1
