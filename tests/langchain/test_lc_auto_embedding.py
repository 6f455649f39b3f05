"""A LangChain store with no embedding object: the table embeds (auto-embedding)."""

from __future__ import annotations

from typing import Any

import pytest

from langchain_tidb_jina import TiDBVectorStore
from tidb_jina import ConfigurationError, UnsupportedFeatureError
from tidb_jina.store import AutoEmbedding
from tidb_jina.testing import FakeEmbeddingServer

TEXTS = ["TiDB is a distributed SQL database", "Basil pesto from Genoa"]


def test_store_without_embeddings_lets_the_table_embed(tmp_path, monkeypatch) -> None:
    with FakeEmbeddingServer(api_key="jina_test") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_test")
        store = TiDBVectorStore(
            connection_string=f"sqlite:///{tmp_path / 'a.db'}",
            table_name="auto",
            auto_embedding=AutoEmbedding("jina_ai/jina-embeddings-v3", options={"dimensions": 64}),
        )
        assert store.embeddings is None
        store.add_texts(TEXTS, [{"topic": "db"}, {"topic": "food"}], ids=["db", "food"])
        assert store.similarity_search("What is TiDB?", k=1)[0].id == "db"
        doc, score = store.similarity_search_with_relevance_scores("pesto", k=1)[0]
        assert doc.id == "food" and 0 < score <= 1
        assert store.max_marginal_relevance_search("TiDB", k=1)[0].id == "db"
        assert store.hybrid_search("Genoa pesto", k=1)[0].id == "food"
        tasks = [r.body["task"] for r in server.requests if r.path.endswith("/embeddings")]
    assert tasks[0] == "retrieval.passage" and set(tasks[1:]) == {"retrieval.query"}


async def test_async_store_without_embeddings(tmp_path, monkeypatch) -> None:
    with FakeEmbeddingServer(api_key="jina_test") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_test")
        store = TiDBVectorStore(
            connection_string=f"sqlite:///{tmp_path / 'a.db'}",
            auto_embedding=AutoEmbedding("jina_ai/jina-embeddings-v3", options={"dimensions": 32}),
        )
        await store.aadd_texts(TEXTS, ids=["db", "food"])
        assert (await store.asimilarity_search("TiDB database", k=1))[0].id == "db"
        await store.aclose()


async def test_on_tidb_cloud_the_query_text_goes_to_the_server(monkeypatch) -> None:
    url = "mysql+pymysql://u.root:p@gateway01.us-west-2.prod.aws.tidbcloud.com:4000/test"
    # The metric is given, so relevance scores need no read of the (unreachable) table.
    store = TiDBVectorStore(
        connection_string=url,
        auto_embedding="jina_ai/jina-embeddings-v3",
        distance_strategy="cosine",
    )
    table = store.vector_table
    assert table.server_embeds
    seen: list[Any] = []

    def search_text(text: str, **kw: Any) -> list[Any]:
        seen.append((text, kw))
        return []

    async def asearch_text(text: str, **kw: Any) -> list[Any]:
        return search_text(text, **kw)

    monkeypatch.setattr(table, "search_text", search_text)
    monkeypatch.setattr(table.aio, "search_text", asearch_text)
    store.similarity_search("What is TiDB?", k=2, filter={"topic": "db"})
    store.similarity_search_with_relevance_scores("TiDB", k=3)
    await store.asimilarity_search_with_score("TiDB?", k=1, prefilter=True)
    assert seen == [
        ("What is TiDB?", {"k": 2, "filter": {"topic": "db"}}),
        ("TiDB", {"k": 3, "filter": None}),
        ("TiDB?", {"k": 1, "filter": None, "prefilter": True}),
    ]
    # MMR needs the query's vector, which the server keeps to itself.
    with pytest.raises(UnsupportedFeatureError, match="search_text"):
        store.max_marginal_relevance_search("TiDB", k=1)


def test_no_embedding_and_no_auto_embedding_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="auto_embedding="):
        TiDBVectorStore(connection_string="sqlite://")
