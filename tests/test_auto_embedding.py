"""Tables that embed text themselves: TiDB's EMBED_TEXT, or the matching core client."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from tidb_jina import ConfigurationError, InvalidInputError
from tidb_jina.store import AutoEmbedding, VectorTable
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder, MySQLRecorder

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


def test_tidb_starter_table_is_a_generated_embed_text_column(make_stub_table):
    starter = MySQLRecorder(starter=True)
    table = make_stub_table(starter, auto_embedding="jina_ai/jina-embeddings-v3")
    assert table.server_embeds and table.dimension == 1024
    table.create()
    (ddl,) = [" ".join(s.split()) for s in starter.sql("CREATE") if "CREATE TABLE" in s]
    assert (
        "embedding VECTOR(1024) GENERATED ALWAYS AS (EMBED_TEXT('jina_ai/jina-embeddings-v3', "
        'document, \'{"task": "retrieval.passage", "task@search": "retrieval.query"}\')) '
        "STORED" in ddl
    )
    stmt = table.search_statement(text="hi", k=3)
    assert _sql(stmt) == (
        "SELECT docs.id, docs.document, docs.meta, VEC_EMBED_COSINE_DISTANCE(docs.embedding, "
        "%s) AS distance FROM docs ORDER BY distance LIMIT %s"
    )
    assert "hi" in stmt.compile(dialect=DIALECT).params.values()
    l2 = make_stub_table(starter, auto_embedding="jina_ai/jina-embeddings-v3", metric="l2")
    assert "VEC_EMBED_L2_DISTANCE" in _sql(l2.search_statement(text="x", k=1))


def test_provider_key_is_sent_once_per_table_as_a_bound_parameter(make_stub_table):
    starter = MySQLRecorder(starter=True)
    auto = AutoEmbedding("jina_ai/jina-embeddings-v3", api_key="jina_KEY")
    table = make_stub_table(starter, auto_embedding=auto)
    table.add_texts(["one"])
    table.add_texts(["two"])
    table.search_text("three", k=1)
    (sent,) = [s for s in starter.statements if s.kind == "SET" and "EMBED" in s.sql]
    assert (sent.template, sent.params) == (
        "SET @@GLOBAL.TIDB_EXP_EMBED_JINA_AI_API_KEY = %s",
        ("jina_KEY",),
    )


def test_an_embedder_beside_server_auto_embedding_gives_query_vectors():
    """TiDB embeds rows and text queries; an embedder that embeds like it serves MMR."""
    from tidb_jina.testing import LexicalEmbedder, MySQLRecorder

    recorder = MySQLRecorder(starter=True)
    table = VectorTable(
        recorder.url,
        table_name="docs",
        engine_args=recorder.engine_args(),
        auto_embedding="jina_ai/jina-embeddings-v3",
        embedder=LexicalEmbedder(dimension=1024),
    )
    assert table.server_embeds
    assert table.query_vector("hello").shape == (1024,)
    table.add_texts(["TiDB"], ids=["t"])
    assert not any("embedding" in s.split("VALUES")[0] for s in recorder.sql("INSERT")), (
        "rows are still embedded by the server"
    )
    table.max_marginal_relevance_search(table.query_vector("TiDB"), k=1)
    assert any("VEC_COSINE_DISTANCE" in s for s in recorder.sql("SELECT"))
