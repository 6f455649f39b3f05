"""Tables that embed text themselves: TiDB's EMBED_TEXT, or the matching core client."""

from __future__ import annotations

import re
from contextlib import contextmanager, nullcontext

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina import ConfigurationError, InvalidInputError
from tidb_jina.store import AutoEmbedding, VectorTable
from tidb_jina.store._schema import build_table
from tidb_jina.store._table import _QueryText
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder

STARTER = "mysql+pymysql://u.root:pw@gateway01.us-west-2.prod.aws.tidbcloud.com:4000/test"
DIALECT = mysql.pymysql.dialect()
DOCS = ["TiDB is a distributed SQL database", "Pasta with tomato sauce", "Kyoto in autumn"]


def _sql(stmt: sa.ClauseElement) -> str:
    return " ".join(str(stmt.compile(dialect=DIALECT)).split())


def test_embedder_table_adds_and_searches_text(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 'a.db'}", embedder=LexicalEmbedder(dimension=64))
    ids = table.add_texts(DOCS, ids=["t", "p", "k"], metadatas=[{"n": i} for i in range(3)])
    assert ids == ["t", "p", "k"] and table.dimension == 64
    hits = table.search_text("what is the TiDB database?", k=2)
    assert hits[0].id == "t" and hits[0].document == DOCS[0]
    assert table.search_text("tomato", k=1, filter={"n": {"$gt": 0}})[0].id == "p"
    before = table.count()
    for bad in (["ok", ""], ["ok", "   "], ["ok", None], "not a list"):
        with pytest.raises(InvalidInputError):
            table.add_texts(bad)
    with pytest.raises(InvalidInputError):
        table.search_text("  ")
    assert table.count() == before


def test_a_table_without_embedder_says_how_to_get_one():
    with pytest.raises(ConfigurationError, match="embedder="):
        VectorTable("sqlite://").add_texts(["x"])


async def test_async_text_api_uses_the_async_provider(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 'a.db'}", embedder=LexicalEmbedder(dimension=32))
    await table.aio.add_texts(DOCS, ids=["t", "p", "k"])
    hits = await table.aio.search_text("kyoto autumn", k=1)
    assert hits[0].id == "k"
    await table.aio.dispose()


def test_auto_embedding_off_tidb_calls_the_matching_client(tmp_path, monkeypatch):
    with FakeEmbeddingServer(api_key="jina_test") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_test")
        auto = AutoEmbedding("jina_ai/jina-embeddings-v3", options={"dimensions": 64})
        table = VectorTable(f"sqlite:///{tmp_path / 'a.db'}", auto_embedding=auto)
        assert table.dimension == 64 and not table.server_embeds
        table.add_texts(DOCS, ids=["t", "p", "k"])
        assert table.search_text("TiDB database", k=1)[0].id == "t"
        bodies = [r.body for r in server.requests if r.path.endswith("/embeddings")]
    assert [b["task"] for b in bodies] == ["retrieval.passage", "retrieval.query"]
    assert all(b["dimensions"] == 64 for b in bodies)


def test_auto_embedding_config_is_validated_and_never_shows_the_key():
    for bad in ("openai/text-embedding-3", "jina_ai/", "jina_ai/x'; DROP TABLE t; --", ""):
        with pytest.raises(ConfigurationError, match="jina_ai/"):
            AutoEmbedding(bad)
    with pytest.raises(ConfigurationError, match="dimensions"):
        AutoEmbedding("huggingface/BAAI/bge-m3", options={"dimensions": 256})
    with pytest.raises(ConfigurationError, match="dimension"):
        AutoEmbedding("huggingface/acme/unknown-model").resolved_dimension()
    assert AutoEmbedding("huggingface/BAAI/bge-m3").resolved_dimension() == 1024
    assert AutoEmbedding("jina_ai/jina-embeddings-v4").resolved_dimension() == 2048
    secret = AutoEmbedding("jina_ai/jina-embeddings-v3", api_key="jina_SECRET")
    assert "jina_SECRET" not in repr(secret)
    with pytest.raises(ConfigurationError, match="cosine or l2"):
        VectorTable(STARTER, auto_embedding=secret, metric="inner_product")


def test_tidb_starter_table_is_a_generated_embed_text_column():
    table = VectorTable(STARTER, table_name="docs", auto_embedding="jina_ai/jina-embeddings-v3")
    assert table.server_embeds and table.dimension == 1024
    ddl = _sql(
        sa.schema.CreateTable(
            build_table("docs", 1024, "mysql", generated=table._generated_sql()),
            if_not_exists=True,
        )
    )
    assert (
        "embedding VECTOR(1024) GENERATED ALWAYS AS (EMBED_TEXT('jina_ai/jina-embeddings-v3', "
        'document, \'{"task": "retrieval.passage", "task@search": "retrieval.query"}\')) '
        "STORED" in ddl
    )
    stmt = table.search_statement(build_table("docs", 1024, "mysql"), _QueryText("hi"), 3)
    assert _sql(stmt) == (
        "SELECT docs.id, docs.document, docs.meta, VEC_EMBED_COSINE_DISTANCE(docs.embedding, "
        "%s) AS distance FROM docs ORDER BY distance LIMIT %s"
    )
    assert "hi" in stmt.compile(dialect=DIALECT).params.values()
    l2 = VectorTable(STARTER, auto_embedding="jina_ai/jina-embeddings-v3", metric="l2")
    assert "VEC_EMBED_L2_DISTANCE" in _sql(
        l2.search_statement(build_table("d", 1024, "mysql"), _QueryText("x"), 1)
    )


def test_provider_key_is_a_bound_parameter_on_a_raw_cursor(monkeypatch):
    table = VectorTable(
        STARTER, auto_embedding=AutoEmbedding("jina_ai/jina-embeddings-v3", api_key="jina_KEY")
    )
    executed = []

    class Cursor:
        def execute(self, sql, params):
            executed.append((sql, params))

        def close(self):
            pass

    class Conn:
        connection = type("C", (), {"dbapi_connection": type("D", (), {"cursor": Cursor})()})()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(table, "engine", type("E", (), {"connect": lambda self: Conn()})())
    table._send_provider_key()
    table._send_provider_key()  # once per table
    assert executed == [("SET @@GLOBAL.TIDB_EXP_EMBED_JINA_AI_API_KEY = %s", ("jina_KEY",))]
    assert not re.search("jina_KEY", executed[0][0])


def test_server_side_inserts_send_no_vectors(monkeypatch):
    table = VectorTable(STARTER, table_name="docs", auto_embedding="jina_ai/jina-embeddings-v3")
    t = build_table("docs", 1024, "mysql", generated=table._generated_sql())
    monkeypatch.setattr(table, "_load", lambda: t)
    table._state.table = t
    monkeypatch.setattr(table, "_send_provider_key", lambda: None)
    sent = []

    class Conn:
        def exec_driver_sql(self, sql, rows):
            sent.append((" ".join(sql.split()), rows))

        def begin(self):
            return nullcontext()

    @contextmanager
    def fake_writer():
        yield Conn()

    monkeypatch.setattr(table, "_writer", fake_writer)
    ids = table.add_texts([f"text {i}" for i in range(120)], metadatas=[{"n": 1}] * 120)
    assert len(ids) == 120
    assert [len(rows) for _, rows in sent] == [50, 50, 20], "small batches: the server embeds"
    assert sent[0][0] == (
        "INSERT INTO docs (id, document, meta) VALUES (%(id)s, %(document)s, %(meta)s) "
        "ON DUPLICATE KEY UPDATE document = VALUES(document), meta = VALUES(meta)"
    )
    assert sent[0][1][0] == {"id": ids[0], "document": "text 0", "meta": '{"n":1}'}
    assert all(set(row) == {"id", "document", "meta"} for _, rows in sent for row in rows)
