"""The TiDB path through the public API, checked on the wire (``tidb_jina.testing``'s
``MySQLRecorder``): what each call sends, as PyMySQL would send it, and how many statements.

No server is involved: the recorder's PyMySQL connections never open a socket. The
statement shapes follow docs/decisions.md ("TiDB SQL"): batched multi-row upserts, one
statement per search, post-filter then pre-filter only when short, the vector index after
the table, the auto-embedding key sent once as a bound parameter.
"""

from __future__ import annotations

import logging
import re

import numpy as np
import orjson
import pytest

from tidb_jina import DatabaseError, InvalidInputError, UnsupportedFeatureError
from tidb_jina.store import AutoEmbedding
from tidb_jina.testing import MySQLRecorder

NO_TIFLASH = (
    1105,
    "the tiflash replica count: 1 should be less than the total tiflash server count: 0",
)
UPSERT_TAIL = (
    " ON DUPLICATE KEY UPDATE embedding = VALUES(embedding), "
    "document = VALUES(document), meta = VALUES(meta)"
)


def _flat(sql: str) -> str:
    return " ".join(sql.split())


def _sql(recorder: MySQLRecorder, *kinds: str) -> list[str]:
    return [_flat(s) for s in recorder.sql(*kinds)]


def _loaded(table):
    """The table's shape is read (one catalogue query), then the record starts afresh."""
    assert table.exists()
    return table


# --- upserts ----------------------------------------------------------------------------


def test_first_upsert_creates_the_table_then_the_index_then_inserts(stub, make_stub_table):
    table = make_stub_table(dimension=3)
    assert stub.count() == 0, "the constructor does no I/O"
    table.upsert([[1.0, 0.0, 0.0]], ids=["a"], documents=["it's \\ here"], metadatas=[{"k": 1}])
    ddl = [s for s in _sql(stub) if s.startswith(("CREATE", "ALTER", "INSERT"))]
    assert ddl[0].startswith(
        "CREATE TABLE IF NOT EXISTS docs ( "
        "id VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_bin NOT NULL, "
    ), "ids compare NO PAD: 'a' and 'a ' are two rows, as on the embedded engine"
    assert "embedding VECTOR(3) NOT NULL" in ddl[0]
    assert ddl[1:3] == [
        "ALTER TABLE docs SET TIFLASH REPLICA 1",
        "CREATE VECTOR INDEX IF NOT EXISTS vidx_docs ON docs "
        "((VEC_COSINE_DISTANCE(embedding))) USING HNSW",
    ]
    assert ddl[3] == (
        "INSERT INTO docs (id, embedding, document, meta) VALUES "
        "('a', '[1.0,0.0,0.0]', 'it\\'s \\\\ here', '{\\\"k\\\":1}')" + UPSERT_TAIL
    ), "values are escaped by PyMySQL, never pasted"
    assert table.index_status().kind == "hnsw"


def test_upserts_are_multi_row_inserts_one_transaction_per_batch(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table(batch_rows=100))
    stub.reset()
    ids = table.upsert(np.ones((250, 3)), ids=[f"id-{i:03}" for i in range(250)])
    assert len(ids) == 250
    inserts = [s for s in stub.statements if s.kind == "INSERT"]
    assert [s.sql.count("'id-") for s in inserts] == [100, 100, 50]
    assert all(_flat(s.sql).endswith(UPSERT_TAIL) for s in inserts)
    kinds = [s.kind for s in stub.statements if s.kind in ("INSERT", "COMMIT")]
    assert kinds == ["INSERT", "COMMIT"] * 3, "each batch commits on its own"
    assert stub.count("PING") == 1, "one connection checkout (pinged) for the whole upsert"


def test_upsert_batches_are_bounded_by_bytes(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table(batch_bytes=2_000))
    stub.reset()
    table.upsert(np.ones((100, 3)), documents=["x" * 50] * 100)
    inserts = [s for s in stub.statements if s.kind == "INSERT"]
    assert len(inserts) > 2
    assert sum(s.sql.count("'xxxxx") for s in inserts) == 100
    overhead = len(inserts[0].sql) - inserts[0].sql.index("VALUES")
    assert max(s.nbytes for s in inserts) < 2_000 + 2 * overhead + 200


def test_vectors_travel_as_float32_json_text_that_round_trips(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = make_stub_table()
    vectors = np.array([[0.1, -2.5e-5, 3.0], [1e-30, 3.4e38, 0.0]], dtype=np.float64)
    table.upsert(vectors, ids=["a", "b"])
    (insert,) = stub.sql("INSERT")
    texts = re.findall(r"'(\[[^']*\])'", insert)
    assert texts == ["[0.1,-0.000025,3.0]", "[1e-30,3.4e+38,0.0]"]
    for text, vector in zip(texts, vectors.astype(np.float32), strict=True):
        parsed = np.array(orjson.loads(text), dtype=np.float64).astype(np.float32)
        assert np.array_equal(parsed, vector), "float32 values must round-trip exactly"


def test_bad_rows_send_nothing(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    with pytest.raises(InvalidInputError):
        table.upsert([[1.0, 0.0, 0.0], [1.0, 0.0]], ids=["a", "b"])
    assert stub.sql("INSERT") == []


def test_a_refused_statement_is_a_database_error_naming_the_table(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = make_stub_table()
    stub.fail(r"^\s*INSERT", 1062, "Duplicate entry 'a' for key 'docs.PRIMARY'")
    with pytest.raises(DatabaseError, match="refused a statement on table 'docs'"):
        table.upsert([[1.0, 0.0, 0.0]], ids=["a"])
    assert "COMMIT" not in [s.kind for s in stub.statements[-3:]]


# --- searches ---------------------------------------------------------------------------


def test_unfiltered_search_is_one_statement(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    hits = table.search([1.0, 0.0, 0.0], k=5)
    assert _sql(stub) == [
        "SELECT docs.id, docs.document, docs.meta, "
        "VEC_COSINE_DISTANCE(docs.embedding, '[1.0,0.0,0.0]') AS distance "
        "FROM docs ORDER BY distance LIMIT 5"
    ]
    assert [h.id for h in hits] == [f"doc-{i}" for i in range(5)]
    assert hits[0].score == pytest.approx(0.5) and hits[0].metadata == {"group": 3}
    table.search(np.ones(3), k=2)
    assert len(stub.sql("SELECT")) == 2, "still one statement per search"


@pytest.mark.parametrize(
    ("metric", "function"),
    [("l2", "VEC_L2_DISTANCE"), ("inner_product", "VEC_NEGATIVE_INNER_PRODUCT")],
)
def test_search_uses_the_tables_metric(stub, make_stub_table, metric, function):
    stub.add_table("docs", 3)
    table = make_stub_table(metric=metric)
    table.search([np.float64(0.5)] * 3, k=1)
    (search,) = [s for s in _sql(stub, "SELECT") if "AS distance" in s]
    assert f"{function}(docs.embedding, '[0.5,0.5,0.5]') AS distance" in search
    assert "np.float64" not in search


def test_filtered_search_falls_back_to_prefilter_only_when_short(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.search_hits = 2  # the filter leaves fewer than k rows
    stub.reset()
    assert len(table.search([1.0, 0.0, 0.0], k=4, filter={"lang": "en"})) == 2
    post, pre = _sql(stub)
    assert "LIMIT 100) AS candidates WHERE" in post, "post-filter over max(10k, 100) rows"
    assert post.endswith("ORDER BY candidates.distance LIMIT 4")
    assert "FROM docs WHERE" in pre and pre.endswith("LIMIT 4"), "then the exact pre-filter"
    stub.reset()
    table.search([1.0, 0.0, 0.0], k=4, filter={"lang": "en"}, prefilter=False)
    assert len(_sql(stub)) == 1, "post-filter only: no second statement"
    stub.reset()
    table.search([1.0, 0.0, 0.0], k=4, filter={"lang": "en"}, prefilter=True)
    (only,) = _sql(stub)
    assert "FROM docs WHERE" in only and "candidates" not in only


def test_filtered_search_that_fills_k_is_one_statement(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    hits = table.search([1.0, 0.0, 0.0], k=4, filter={"lang": "en"}, num_candidates=777)
    (post,) = _sql(stub)
    assert len(hits) == 4 and "LIMIT 777) AS candidates" in post
    assert "JSON_EXTRACT(candidates.meta, '$.\\\"lang\\\"') = CAST('\\\"en\\\"' AS JSON)" in post


def test_search_by_ids_is_exact_and_one_statement(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    table.search([1.0, 0.0, 0.0], k=4, ids=["a", "b"], max_distance=0.3)
    (stmt,) = _sql(stub)
    assert "WHERE docs.id IN ('a', 'b')" in stmt
    assert "candidates.distance <= 0.3" in stmt


# --- reads and deletes ------------------------------------------------------------------


def test_get_count_delete_and_clear_statements(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reset()
    assert table.count() == 0
    assert table.get(["a", "b"]) == []
    assert table.delete(["a"]) == 0
    assert table.clear() == 0
    assert _sql(stub) == [
        "SELECT count(*) AS count_1 FROM docs",
        "SELECT docs.id, docs.document, docs.meta FROM docs WHERE docs.id IN ('a', 'b')",
        "DELETE FROM docs WHERE docs.id IN ('a')",
        "SELECT max(docs.id) AS max_1 FROM docs",  # clear(): an empty table ends here
    ]
    assert stub.count("COMMIT") == 1, "writes commit; reads do not"
    with pytest.raises(InvalidInputError, match="clear"):
        table.delete()
    assert len(_sql(stub)) == 4, "nothing sent for a refused call"


def test_get_keeps_the_callers_order_and_delete_reports_the_servers_count(stub, make_stub_table):
    stub.add_table("docs", 3)
    table = _loaded(make_stub_table())
    stub.reply(
        r"^\s*SELECT docs\.id, docs\.document, docs\.meta\s+FROM docs\s+WHERE docs\.id IN",
        columns=["id", "document", "meta"],
        rows=[("b", "B", '{"n": 2}'), ("a", "A", "{}")],
    )
    stub.reply(r"^\s*SELECT max\(docs\.id\)", columns=["max_1"], rows=[("c",)])
    stub.reply(r"^\s*SELECT docs\.id\s+FROM", columns=["id"], rows=[("a",), ("b",), ("c",)])
    stub.reply(r"^\s*DELETE", rowcount=3)
    records = table.get(["a", "missing", "b"])
    assert [(r.id, r.document, r.metadata) for r in records] == [
        ("a", "A", {}),
        ("b", "B", {"n": 2}),
    ]
    assert table.delete(filter={"n": {"$gt": 1}}) == 3
    (delete,) = _sql(stub, "DELETE")
    assert delete.startswith("DELETE FROM docs WHERE docs.id IN ('a', 'b', 'c') AND")
    assert "JSON" in delete, "the filter is checked again by the DELETE itself"


def test_a_table_that_does_not_exist_reads_as_empty(stub, make_stub_table):
    table = make_stub_table()
    assert (table.count(), table.get(["a"]), table.search([1.0, 0.0], k=3)) == (0, [], [])
    assert table.index_status().kind == "missing"
    assert not [s for s in _sql(stub) if "docs" in s and "INFORMATION_SCHEMA" not in s]


# --- vector index -----------------------------------------------------------------------


def test_starter_index_is_one_statement_with_replica_on_demand(make_stub_table):
    starter = MySQLRecorder(starter=True)
    table = make_stub_table(starter, dimension=3, metric="l2")
    table.upsert([[1.0, 0.0, 0.0]])
    index = [s for s in _sql(starter) if s.startswith(("ALTER", "CREATE VECTOR"))]
    assert index == [
        "CREATE VECTOR INDEX IF NOT EXISTS vidx_docs ON docs "
        "((VEC_L2_DISTANCE(embedding))) USING HNSW ADD_COLUMNAR_REPLICA_ON_DEMAND"
    ]
    assert table.index_status().kind == "hnsw"


def test_an_unindexable_metric_sends_no_index_ddl(stub, make_stub_table, caplog):
    table = make_stub_table(dimension=3, metric="inner_product")
    with caplog.at_level(logging.WARNING, logger="tidb_jina"):
        table.upsert([[1.0, 0.0, 0.0]])
    assert not [s for s in _sql(stub) if "VECTOR INDEX" in s or "TIFLASH" in s]
    with pytest.raises(UnsupportedFeatureError, match="only cosine and l2"):
        table.create_vector_index()
    status = table.index_status()
    assert status.kind == "exact"


def test_missing_tiflash_is_told_once_and_the_table_still_works(stub, make_stub_table, caplog):
    stub.fail("SET TIFLASH REPLICA", *NO_TIFLASH)
    table = make_stub_table(dimension=3)
    with caplog.at_level(logging.WARNING, logger="tidb_jina"):
        table.upsert([[1.0, 0.0, 0.0]], ids=["a"])
        table.drop()
        table.upsert([[1.0, 0.0, 0.0]], ids=["a"])  # a new table: the index is tried again
    attempts = [s for s in _sql(stub) if "TIFLASH REPLICA" in s]
    warnings = [r for r in caplog.records if "TiFlash" in r.getMessage()]
    assert len(attempts) == 2 and len(warnings) == 1
    assert len(_sql(stub, "INSERT")) == 2, "writes go on without the index"
    assert not [s for s in _sql(stub) if "CREATE VECTOR INDEX" in s]
    status = table.index_status()
    assert status.kind == "exact" and "no TiFlash" in status.note
    with pytest.raises(UnsupportedFeatureError, match="no TiFlash"):
        table.create_vector_index()
    assert table.search([1.0, 0.0, 0.0], k=2), "searches still work as exact scans"


# --- auto-embedding (TiDB Cloud Starter embeds) -----------------------------------------


def test_auto_embedding_key_is_sent_once_as_a_bound_parameter_and_never_logged(
    make_stub_table, caplog
):
    starter = MySQLRecorder(starter=True)
    auto = AutoEmbedding("jina_ai/jina-embeddings-v3", api_key="jina_KEY_0123")
    table = make_stub_table(starter, auto_embedding=auto, engine_args={"echo": True})
    with caplog.at_level(logging.DEBUG):
        ids = table.add_texts([f"text {i}" for i in range(120)], metadatas=[{"n": 1}] * 120)
        hits = table.search_text("hi there", k=3)
    sets = [s for s in starter.statements if s.kind == "SET" and "EMBED" in s.sql]
    assert len(sets) == 1, "the key is stored once per table"
    assert sets[0].template == "SET @@GLOBAL.TIDB_EXP_EMBED_JINA_AI_API_KEY = %s"
    assert sets[0].params == ("jina_KEY_0123",)
    carrying = [s for s in starter.statements if "jina_KEY_0123" in s.sql]
    assert carrying == sets, "only that statement carries the key"
    assert "VEC_EMBED_COSINE_DISTANCE" in caplog.text, "statements were logged..."
    assert "jina_KEY_0123" not in caplog.text, "...but never the key"
    assert len(ids) == 120 and len(hits) == 3


def test_server_side_inserts_send_text_not_vectors_in_small_batches(make_stub_table):
    starter = MySQLRecorder(starter=True)
    table = make_stub_table(starter, auto_embedding="jina_ai/jina-embeddings-v3")
    table.add_texts([f"text {i}" for i in range(120)], metadatas=[{"n": 1}] * 120)
    (create,) = [s for s in _sql(starter) if s.startswith("CREATE TABLE")]
    assert (
        "embedding VECTOR(1024) GENERATED ALWAYS AS (EMBED_TEXT('jina_ai/jina-embeddings-v3', "
        'document, \'{"task": "retrieval.passage", "task@search": "retrieval.query"}\')) '
        "STORED" in create
    )
    inserts = _sql(starter, "INSERT")
    assert [s.count("'text ") for s in inserts] == [50, 50, 20], "the server embeds each row"
    assert inserts[0].startswith("INSERT INTO docs (id, document, meta) VALUES (")
    assert inserts[0].endswith(
        "ON DUPLICATE KEY UPDATE document = VALUES(document), meta = VALUES(meta)"
    )
    assert "'[" not in "".join(inserts), "no vector is sent"


def test_text_search_lets_the_server_embed_the_query(make_stub_table):
    starter = MySQLRecorder(starter=True)
    starter.add_table("docs", 1024)
    table = make_stub_table(starter, auto_embedding="jina_ai/jina-embeddings-v3", metric="l2")
    _loaded(table)
    starter.reset()
    table.search_text("it's autumn", k=3)
    (search,) = [s for s in _sql(starter, "SELECT")]
    assert search == (
        "SELECT docs.id, docs.document, docs.meta, "
        "VEC_EMBED_L2_DISTANCE(docs.embedding, 'it\\'s autumn') AS distance "
        "FROM docs ORDER BY distance LIMIT 3"
    )


def test_a_refused_key_says_what_is_needed_and_hides_the_key(make_stub_table):
    starter = MySQLRecorder(starter=True)
    starter.fail("TIDB_EXP_EMBED", 1227, "Access denied; you need the SUPER privilege(s)")
    auto = AutoEmbedding("jina_ai/jina-embeddings-v3", api_key="jina_KEY_0123")
    table = make_stub_table(starter, auto_embedding=auto)
    with pytest.raises(DatabaseError, match="SET GLOBAL") as caught:
        table.add_texts(["hello"])
    error: BaseException | None = caught.value
    while error is not None:
        assert "jina_KEY_0123" not in str(error)
        error = error.__cause__ or error.__context__
    assert starter.sql("INSERT") == [], "nothing is written without the key"


def test_full_text_index_is_dropped_before_its_table(make_stub_table):
    starter = MySQLRecorder(starter=True)
    table = make_stub_table(starter, dimension=3, full_text=True)
    table.upsert([[1.0, 0.0, 0.0]], documents=["hello"])
    assert any(
        s.startswith("CREATE FULLTEXT INDEX IF NOT EXISTS ftidx_docs") for s in _sql(starter)
    )
    starter.reset()
    table.drop()
    ddl = [s for s in _sql(starter) if s.startswith(("ALTER", "DROP"))]
    assert ddl == ["ALTER TABLE docs DROP INDEX ftidx_docs", "DROP TABLE docs"]
