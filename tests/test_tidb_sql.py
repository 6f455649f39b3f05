"""The TiDB path, checked as compiled SQL against the documented syntax (no server here).

reference/protocols.md section 3: VECTOR(D) DDL, vectors as JSON-array text, one
``ORDER BY VEC_<METRIC>_DISTANCE(...) LIMIT k`` statement per search, upserts as
``INSERT ... ON DUPLICATE KEY UPDATE`` with ``VALUES()`` (TiDB has no ``AS new`` alias).
Tables that need a database run over ``tidb_jina.testing.MySQLRecorder`` (the ``stub``
fixture); what goes on the wire per call is pinned in ``test_tidb_wire.py``.
"""

from __future__ import annotations

import re
import ssl

import numpy as np
import pymysql.converters
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina.store import DistanceMetric, VectorTable
from tidb_jina.testing import MySQLRecorder

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
def table(stub: MySQLRecorder, make_stub_table) -> VectorTable:
    """Table ``docs`` with VECTOR(3), existing on the recording stub."""
    stub.add_table("docs", 3)
    return make_stub_table()


def test_create_table_matches_peer_schema_with_wider_id(stub, make_stub_table):
    make_stub_table().create(768)
    (ddl,) = [" ".join(s.split()) for s in stub.sql("CREATE") if "CREATE TABLE" in s]
    assert ddl == (
        "CREATE TABLE IF NOT EXISTS docs ( "
        "id VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin NOT NULL, "
        "embedding VECTOR(768) NOT NULL, document MEDIUMTEXT, meta JSON, "
        "create_time DATETIME DEFAULT CURRENT_TIMESTAMP, "
        "update_time DATETIME DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP, "
        'PRIMARY KEY (id) )COMMENT=\'{"tidb_jina":1,"model":null,"dimension":768,'
        '"metric":"cosine","server_model":null}\''
    )
    assert "hnsw(distance" not in ddl, "the 2024 beta index comment builds no index today"


def test_upsert_is_insert_on_duplicate_key_update_with_values(table, stub):
    vectors = np.array([[0.1, -2.5e-5, 3.0], [1e-30, 3.4e38, 0.0]], dtype=np.float64)
    table.upsert(vectors, ids=["a", "b"], documents=["doc", None], metadatas=[{"k": 1}, {}])
    (insert,) = stub.sql("INSERT")
    assert " ".join(insert.split()) == (
        "INSERT INTO docs (id, embedding, document, meta) VALUES "
        "('a', '[0.1,-0.000025,3.0]', 'doc', '{\\\"k\\\":1}'),"
        "('b', '[1e-30,3.4e+38,0.0]', NULL, '{}') "
        "ON DUPLICATE KEY UPDATE embedding = VALUES(embedding), document = VALUES(document), "
        "meta = VALUES(meta)"
    )
    for literal in re.findall(r"'\[[^']*\]'", insert):
        assert re.fullmatch(r"'\[[-+0-9.e,]+\]'", literal), literal
        assert pymysql.converters.escape_item(literal[1:-1], "utf8mb4") == literal


def test_numpy_float64_values_never_reach_sql_as_repr(table):
    stmt = sa.select(sa.literal(1)).where(
        table.search_statement([np.float64(0.5)] * 3, k=1).exists()
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
def test_search_is_one_statement_ordered_by_the_tables_metric(
    stub, make_stub_table, metric, function
):
    stub.add_table("docs", 3)
    store = make_stub_table(metric=metric)
    stmt = store.search_statement(np.ones(3, np.float32), k=10)
    assert _sql(stmt) == (
        f"SELECT docs.id, docs.document, docs.meta, {function}(docs.embedding, %s) AS distance "
        "FROM docs ORDER BY distance LIMIT %s"
    )
    params = _processed_params(stmt)
    assert list(params.values()) == ["[1.0,1.0,1.0]", 10]


def test_search_fetches_the_vector_column_only_when_asked(table):
    assert "docs.embedding AS" not in _sql(table.search_statement(np.ones(3), k=5))
    assert "docs.embedding, VEC_" in _sql(
        table.search_statement(np.ones(3), k=5, include_embeddings=True)
    )


def test_prefilter_search_puts_filter_and_threshold_in_one_statement(table):
    stmt = table.search_statement(np.ones(3), k=5, filter={"lang": "en"}, max_distance=0.3)
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
    stmt = table.search_statement(
        np.ones(3), k=5, filter={"lang": "en"}, max_distance=0.3, prefilter=False
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
        np.ones(3), k=5, filter={"a": 1}, prefilter=False, num_candidates=777
    )
    assert 777 in _processed_params(custom).values()


def test_vector_index_ddl_self_managed_and_starter(make_stub_table):
    def index_ddl(recorder: MySQLRecorder, **kwargs) -> list[str]:
        make_stub_table(recorder, dimension=3, **kwargs).create()
        return [s for s in recorder.sql("ALTER", "CREATE") if "CREATE TABLE" not in s]

    assert index_ddl(MySQLRecorder()) == [
        "ALTER TABLE docs SET TIFLASH REPLICA 1",
        "CREATE VECTOR INDEX IF NOT EXISTS vidx_docs ON docs "
        "((VEC_COSINE_DISTANCE(embedding))) USING HNSW",
    ]
    assert index_ddl(MySQLRecorder(starter=True), metric="l2", full_text=True) == [
        "CREATE VECTOR INDEX IF NOT EXISTS vidx_docs ON docs "
        "((VEC_L2_DISTANCE(embedding))) USING HNSW ADD_COLUMNAR_REPLICA_ON_DEMAND",
        "CREATE FULLTEXT INDEX IF NOT EXISTS ftidx_docs ON docs (document) "
        "WITH PARSER MULTILINGUAL ADD_COLUMNAR_REPLICA_ON_DEMAND",
    ]
    starter = MySQLRecorder(starter=True)
    starter.add_table("docs", 3)
    make_stub_table(starter).create_full_text_index("standard")
    assert starter.sql("CREATE") == [
        "CREATE FULLTEXT INDEX IF NOT EXISTS ftidx_docs ON docs (document) "
        "WITH PARSER STANDARD ADD_COLUMNAR_REPLICA_ON_DEMAND"
    ]


def test_starter_hosts_are_recognised():
    from tidb_jina.store._tidb import is_missing_tiflash

    starter = "mysql://u:p@gateway01.us-west-2.prod.aws.tidbcloud.com:4000/test"
    assert VectorTable(starter).is_tidb_starter
    assert not VectorTable("mysql://u:p@tidb.internal.example.com:4000/test").is_tidb_starter
    assert not VectorTable("sqlite://").is_tidb_starter
    assert is_missing_tiflash(
        RuntimeError("Unsupported add vector index: unsupported TiFlash store count is 0")
    )
    assert is_missing_tiflash(RuntimeError("columnar replica must exist"))
    assert not is_missing_tiflash(RuntimeError("Duplicate entry"))


def test_unindexable_metric_and_missing_tiflash_are_explained(stub, make_stub_table):
    from tidb_jina import UnsupportedFeatureError

    stub.add_table("docs", 3)
    ip = make_stub_table(metric="inner_product")
    with pytest.raises(UnsupportedFeatureError, match="only cosine and l2"):
        ip.create_vector_index()
    stub.fail("SET TIFLASH REPLICA", 1105, "the total tiflash server count: 0")
    with pytest.raises(UnsupportedFeatureError, match="no TiFlash"):
        make_stub_table().create_vector_index()


def test_index_status_sums_tiflash_instances(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = make_stub_table()
    columns = [
        "INDEX_NAME",
        "INDEX_KIND",
        "ROWS_STABLE_INDEXED",
        "ROWS_STABLE_NOT_INDEXED",
        "ROWS_DELTA_INDEXED",
        "ROWS_DELTA_NOT_INDEXED",
        "ERROR_MESSAGE",
    ]

    def tiflash_answers(*rows):
        stub.reply("TIFLASH_INDEXES", columns=columns, rows=rows, times=1)
        return table.index_status()

    status = tiflash_answers(
        ("vidx_docs", "Vector", 10, 5, 0, 0, None), ("vidx_docs", "Vector", 20, 0, 0, 0, None)
    )
    assert (status.kind, status.rows_indexed, status.rows_pending, status.ready) == (
        "hnsw",
        30,
        5,
        False,
    )
    assert tiflash_answers(("other", "Vector", 1, 0, 0, 0, None)).kind == "exact"
    assert tiflash_answers(("vidx_docs", "Vector", 3, 0, 0, 0, None)).ready
    failed = tiflash_answers(("vidx_docs", "Vector", 3, 0, 0, 0, "disk full"))
    assert failed.error == "disk full" and not failed.ready


def test_metric_enum_carries_sql_function_and_indexability():
    assert DistanceMetric.COSINE.sql_function == "VEC_COSINE_DISTANCE"
    assert DistanceMetric.L2.indexable and DistanceMetric.COSINE.indexable
    assert not DistanceMetric.INNER_PRODUCT.indexable and not DistanceMetric.L1.indexable
    assert DistanceMetric.parse("EUCLIDEAN") is DistanceMetric.L2
    assert DistanceMetric.parse("max_inner_product") is DistanceMetric.INNER_PRODUCT


def test_tidb_engine_defaults():
    table = VectorTable(URL, table_name="docs")
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


def test_repr_and_errors_never_show_the_password():
    table = VectorTable(URL, table_name="docs")
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
    # A PyMySQL ssl dict goes through the same policy (issue 13 review): verified TLS.
    own_ctx = _connect_kwargs(own.engine)["ssl"]
    assert own_ctx.verify_mode == ssl.CERT_REQUIRED and own_ctx.check_hostname
