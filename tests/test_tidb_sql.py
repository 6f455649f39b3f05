"""The TiDB path, checked as compiled SQL against the documented syntax (no server here).

reference/protocols.md section 3: VECTOR(D) DDL, vectors as JSON-array text, one
``ORDER BY VEC_<METRIC>_DISTANCE(...) LIMIT k`` statement per search, upserts as
``INSERT ... ON DUPLICATE KEY UPDATE`` with ``VALUES()`` (TiDB has no ``AS new`` alias).
"""

from __future__ import annotations

import re
import ssl

import numpy as np
import orjson
import pymysql.converters
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina.store import DistanceMetric, VectorTable
from tidb_jina.store._schema import build_table

DIALECT = mysql.pymysql.dialect()
URL = "mysql+pymysql://root:s3cr3t-pw@127.0.0.1:4000/test"


def _sql(statement: sa.ClauseElement) -> str:
    return " ".join(str(statement.compile(dialect=DIALECT)).split())


def _processed_params(statement: sa.ClauseElement) -> dict:
    """Parameters as the driver receives them (after our bind processors)."""
    compiled = statement.compile(dialect=DIALECT)
    params = compiled.construct_params()
    processors = compiled._bind_processors
    return {k: processors[k](v) if k in processors else v for k, v in params.items()}


@pytest.fixture
def table() -> VectorTable:
    return VectorTable(URL, table_name="docs", dimension=3)


def test_create_table_matches_peer_schema_with_wider_id():
    ddl = _sql(sa.schema.CreateTable(build_table("docs", 768, "mysql"), if_not_exists=True))
    assert ddl == (
        "CREATE TABLE IF NOT EXISTS docs ( id VARCHAR(512) NOT NULL, "
        "embedding VECTOR(768) NOT NULL, document MEDIUMTEXT, meta JSON, "
        "create_time DATETIME DEFAULT CURRENT_TIMESTAMP, "
        "update_time DATETIME DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, "
        "PRIMARY KEY (id) )"
    )
    assert "hnsw(distance" not in ddl, "the 2024 beta index comment builds no index today"


def test_upsert_is_insert_on_duplicate_key_update_with_values(table):
    stmt = table._upsert_statement(build_table("docs", 3, "mysql"))
    assert _sql(stmt) == (
        "INSERT INTO docs (id, embedding, document, meta) VALUES (%s, %s, %s, %s) "
        "ON DUPLICATE KEY UPDATE embedding = VALUES(embedding), document = VALUES(document), "
        "meta = VALUES(meta)"
    )


def test_rows_are_sent_as_json_array_text_of_float32(table):
    vectors = np.array([[0.1, -2.5e-5, 3.0], [1e-30, 3.4e38, 0.0]], dtype=np.float64)
    rows, sizes = table._encode_rows(
        vectors.astype(np.float32), ["a", "b"], ["doc", None], ['{"k":1}', "{}"], [0, 1]
    )
    assert [r[1] for r in rows] == ["[0.1,-0.000025,3.0]", "[1e-30,3.4e+38,0.0]"]
    assert all(type(r[1]) is str for r in rows), "plain str for the driver"
    assert sizes == [1 + 7 + 3 + len(rows[0][1]), 1 + 2 + len(rows[1][1])]
    for row, vector in zip(rows, vectors.astype(np.float32), strict=True):
        parsed = np.array(orjson.loads(row[1]), dtype=np.float64).astype(np.float32)
        assert np.array_equal(parsed, vector), "float32 values must round-trip exactly"
        literal = pymysql.converters.escape_item(row[1], "utf8mb4")
        assert re.fullmatch(r"'\[[-+0-9.e,]+\]'", literal), literal


def test_numpy_float64_values_never_reach_sql_as_repr(table):
    stmt = sa.select(sa.literal(1)).where(
        table.search_statement(build_table("docs", 3, "mysql"), [np.float64(0.5)] * 3, 1).exists()
    )
    params = _processed_params(stmt)
    vector_text = next(v for v in params.values() if isinstance(v, str) and v.startswith("["))
    assert vector_text == "[0.5,0.5,0.5]"
    assert "np.float64" not in vector_text


@pytest.mark.parametrize(
    ("metric", "function"),
    [
        ("cosine", "VEC_COSINE_DISTANCE"),
        ("l2", "VEC_L2_DISTANCE"),
        ("inner_product", "VEC_NEGATIVE_INNER_PRODUCT"),
        ("l1", "VEC_L1_DISTANCE"),
    ],
)
def test_search_is_one_statement_ordered_by_the_tables_metric(metric, function):
    store = VectorTable(URL, table_name="docs", metric=metric)
    stmt = store.search_statement(build_table("docs", 3, "mysql"), np.ones(3, np.float32), 10)
    assert _sql(stmt) == (
        f"SELECT docs.id, docs.document, docs.meta, {function}(docs.embedding, %s) AS distance "
        "FROM docs ORDER BY distance LIMIT %s"
    )
    params = _processed_params(stmt)
    assert list(params.values()) == ["[1.0,1.0,1.0]", 10]


def test_search_fetches_the_vector_column_only_when_asked(table):
    t = build_table("docs", 3, "mysql")
    assert "docs.embedding AS" not in _sql(table.search_statement(t, np.ones(3), 5))
    assert "docs.embedding, VEC_" in _sql(
        table.search_statement(t, np.ones(3), 5, include_embeddings=True)
    )


def test_prefilter_search_puts_filter_and_threshold_in_one_statement(table):
    t = build_table("docs", 3, "mysql")
    stmt = table.search_statement(t, np.ones(3), 5, filter={"lang": "en"}, max_distance=0.3)
    sql = _sql(stmt)
    assert sql.startswith("SELECT candidates.id, candidates.document, candidates.meta, ")
    assert "VEC_COSINE_DISTANCE(docs.embedding, %s) AS distance FROM docs WHERE " in sql
    assert "JSON_EXTRACT(docs.meta, %s)" in sql
    assert "ORDER BY distance LIMIT %s) AS candidates WHERE candidates.distance <= %s" in sql
    assert sql.endswith("ORDER BY candidates.distance")
    assert not re.search(r"['\"]en['\"]", sql), "no value is pasted into the SQL"
    params = _processed_params(stmt).values()
    assert any("en" in str(p) for p in params), "the value travels as a bound parameter"


def test_postfilter_keeps_the_knn_block_free_of_where(table):
    """reference 3.5: the HNSW index serves only ORDER BY distance LIMIT n without WHERE."""
    t = build_table("docs", 3, "mysql")
    stmt = table.search_statement(
        t, np.ones(3), 5, filter={"lang": "en"}, max_distance=0.3, prefilter=False
    )
    sql = _sql(stmt)
    inner = re.search(r"FROM \((SELECT .*?)\) AS candidates", sql).group(1)
    assert inner == (
        "SELECT docs.id AS id, docs.document AS document, docs.meta AS meta, "
        "VEC_COSINE_DISTANCE(docs.embedding, %s) AS distance FROM docs "
        "ORDER BY distance LIMIT %s"
    )
    outer = sql.split(") AS candidates", 1)[1]
    assert "JSON_EXTRACT(candidates.meta, %s)" in outer
    assert "candidates.distance <= %s" in outer
    assert outer.endswith("ORDER BY candidates.distance LIMIT %s")
    params = list(_processed_params(stmt).values())
    assert params[1] == 100 and params[-1] == 5, "max(10k, 100) candidates, then k"
    custom = table.search_statement(
        t, np.ones(3), 5, filter={"a": 1}, prefilter=False, num_candidates=777
    )
    assert 777 in _processed_params(custom).values()


def test_filtered_search_falls_back_to_prefilter_only_when_short(table, monkeypatch):
    t = build_table("docs", 3, "mysql")
    monkeypatch.setattr(table, "_load", lambda: t)
    executed = []

    def fake_run(stmt):
        executed.append(_sql(stmt))
        return ["hit"] * (2 if len(executed) == 1 else 4)

    monkeypatch.setattr(table, "_run_search", fake_run)
    assert table.search(np.ones(3), k=4, filter={"lang": "en"}) == ["hit"] * 4
    assert len(executed) == 2
    assert "AS candidates WHERE" in executed[0] and "FROM docs WHERE" in executed[1]
    executed.clear()
    table.search(np.ones(3), k=4, filter={"lang": "en"}, prefilter=False)
    assert len(executed) == 1, "post-filter only: no second statement"
    executed.clear()
    table.search(np.ones(3), k=4, filter={"lang": "en"}, prefilter=True)
    assert len(executed) == 1 and "FROM docs WHERE" in executed[0]
    executed.clear()
    table.search(np.ones(3), k=2)
    assert executed == [
        "SELECT docs.id, docs.document, docs.meta, VEC_COSINE_DISTANCE(docs.embedding, %s) "
        "AS distance FROM docs ORDER BY distance LIMIT %s"
    ]


def test_vector_index_ddl_self_managed_and_starter():
    from tidb_jina.store._tidb import fulltext_index_ddl, vector_index_ddl

    assert vector_index_ddl(DIALECT, "docs", DistanceMetric.COSINE, starter=False) == [
        "ALTER TABLE docs SET TIFLASH REPLICA 1",
        "CREATE VECTOR INDEX IF NOT EXISTS vidx_docs ON docs "
        "((VEC_COSINE_DISTANCE(embedding))) USING HNSW",
    ]
    assert vector_index_ddl(DIALECT, "docs", DistanceMetric.L2, starter=True) == [
        "CREATE VECTOR INDEX IF NOT EXISTS vidx_docs ON docs "
        "((VEC_L2_DISTANCE(embedding))) USING HNSW ADD_COLUMNAR_REPLICA_ON_DEMAND"
    ]
    assert fulltext_index_ddl(DIALECT, "docs", "standard") == (
        "CREATE FULLTEXT INDEX IF NOT EXISTS ftidx_docs ON docs (document) "
        "WITH PARSER STANDARD ADD_COLUMNAR_REPLICA_ON_DEMAND"
    )


def test_starter_hosts_are_recognised():
    from tidb_jina.store._tidb import is_missing_tiflash, is_starter_host

    assert is_starter_host("gateway01.us-west-2.prod.aws.tidbcloud.com")
    assert not is_starter_host("tidb.internal.example.com")
    assert is_missing_tiflash(
        RuntimeError("Unsupported add vector index: unsupported TiFlash store count is 0")
    )
    assert is_missing_tiflash(RuntimeError("columnar replica must exist"))
    assert not is_missing_tiflash(RuntimeError("Duplicate entry"))


def test_unindexable_metric_and_missing_tiflash_are_explained():
    from tidb_jina import UnsupportedFeatureError

    ip = VectorTable(URL, table_name="docs", metric="inner_product")
    with pytest.raises(UnsupportedFeatureError, match="only cosine and l2"):
        ip.create_vector_index()


def test_index_status_sums_tiflash_instances():
    from types import SimpleNamespace

    from tidb_jina.store._tidb import index_status_from_rows

    def row(indexed, pending, error=None, name="vidx_docs"):
        return SimpleNamespace(
            INDEX_NAME=name,
            ROWS_STABLE_INDEXED=indexed,
            ROWS_DELTA_INDEXED=0,
            ROWS_STABLE_NOT_INDEXED=pending,
            ROWS_DELTA_NOT_INDEXED=0,
            ERROR_MESSAGE=error,
        )

    status = index_status_from_rows([row(10, 5), row(20, 0)], "vidx_docs")
    assert (status.kind, status.rows_indexed, status.rows_pending, status.ready) == (
        "hnsw",
        30,
        5,
        False,
    )
    assert index_status_from_rows([row(1, 0, name="other")], "vidx_docs").kind == "exact"
    assert index_status_from_rows([row(3, 0)], "vidx_docs").ready


def test_metric_enum_carries_sql_function_and_indexability():
    assert DistanceMetric.COSINE.sql_function == "VEC_COSINE_DISTANCE"
    assert DistanceMetric.L2.indexable and DistanceMetric.COSINE.indexable
    assert not DistanceMetric.INNER_PRODUCT.indexable and not DistanceMetric.L1.indexable
    assert DistanceMetric.parse("EUCLIDEAN") is DistanceMetric.L2
    assert DistanceMetric.parse("max_inner_product") is DistanceMetric.INNER_PRODUCT


def test_tidb_engine_defaults(table):
    url = table.engine.url
    assert url.drivername == "mysql+pymysql"
    assert url.query["charset"] == "utf8mb4"
    assert table.engine.pool._recycle == 300
    assert table.engine.pool._pre_ping is True
    plain = VectorTable("mysql://u:p@10.0.0.1:4000/db")
    assert plain.engine.url.drivername == "mysql+pymysql"


def test_tidb_cloud_hosts_get_verified_tls():
    cloud = VectorTable("mysql://x.root:pw@gateway01.us-west-2.prod.aws.tidbcloud.com:4000/test")
    kwargs = _connect_kwargs(cloud.engine)
    ctx = kwargs["ssl"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    local = VectorTable("mysql://root@127.0.0.1:4000/test")
    assert "ssl" not in _connect_kwargs(local.engine)


def _connect_kwargs(engine: sa.Engine) -> dict:
    """The keyword arguments the engine will pass to pymysql.connect()."""
    captured = {}

    def fake_connect(*args, **kwargs):
        captured.update(kwargs)
        raise RuntimeError("stop")

    original = engine.dialect.loaded_dbapi.connect
    engine.dialect.loaded_dbapi.connect = fake_connect
    try:
        with pytest.raises(Exception, match="stop"):
            engine.connect()
    finally:
        engine.dialect.loaded_dbapi.connect = original
    return captured


def test_repr_and_errors_never_show_the_password(table):
    assert "s3cr3t-pw" not in repr(table)
    assert "s3cr3t-pw" not in str(table.engine.url)


def test_async_twin_uses_aiomysql_with_the_same_settings():
    from tidb_jina.store._engine import connect_async

    cloud = "mysql+pymysql://x.root:pw@gateway01.eu-central-1.prod.aws.tidbcloud.com:4000/db"
    engine = connect_async(cloud)
    assert engine.url.drivername == "mysql+aiomysql"
    assert engine.url.query["charset"] == "utf8mb4"
    assert engine.sync_engine.pool._recycle == 300
    table = VectorTable(cloud)
    assert table.aio.native
    plain_engine = VectorTable(sa.create_engine("sqlite://"))
    assert not plain_engine.aio.native, "a caller's sync Engine is served from a thread"


def test_missing_tiflash_is_told_once_and_the_table_still_works(caplog, monkeypatch):
    from tidb_jina import UnsupportedFeatureError

    table = VectorTable(URL, table_name="docs")
    calls = []

    def no_tiflash():
        calls.append(1)
        raise UnsupportedFeatureError("has no TiFlash, which TiDB's vector index needs")

    monkeypatch.setattr(table, "create_vector_index", no_tiflash)
    with caplog.at_level("WARNING", logger="tidb_jina"):
        table._try_vector_index()
        table._try_vector_index()
    warnings = [r for r in caplog.records if "TiFlash" in r.getMessage()]
    assert len(calls) == 2 and len(warnings) == 1
    assert "no TiFlash" in table._state.index_note


def test_turning_tls_verification_off_is_explicit_and_logged(caplog):
    host = "gateway01.us-east-1.prod.aws.tidbcloud.com"
    with caplog.at_level("WARNING", logger="tidb_jina"):
        table = VectorTable(f"mysql://u.root:pw@{host}:4000/db", verify_tls=False)
    ctx = _connect_kwargs(table.engine)["ssl"]
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)
    assert "pw" not in caplog.text.replace("prod", "")
    custom = {"connect_args": {"ssl": {"ca": "/etc/ssl/certs/ca-certificates.crt"}}}
    own = VectorTable(f"mysql://u.root:pw@{host}:4000/db", engine_args=custom)
    assert _connect_kwargs(own.engine)["ssl"] == {"ca": "/etc/ssl/certs/ca-certificates.crt"}
