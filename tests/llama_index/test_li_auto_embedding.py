"""A LlamaIndex store whose table embeds (auto-embedding): no embed_model needed for text."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery

from llama_index_tidb_jina import TiDBVectorStore
from tidb_jina import UnsupportedFeatureError
from tidb_jina.store import AutoEmbedding
from tidb_jina.testing import FakeEmbeddingServer

AUTO = AutoEmbedding("jina_ai/jina-embeddings-v3", options={"dimensions": 64})


def test_store_embeds_nodes_and_queries(tmp_path, monkeypatch) -> None:
    with FakeEmbeddingServer(api_key="jina_test") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_test")
        store = TiDBVectorStore(f"sqlite:///{tmp_path / 'a.db'}", auto_embedding=AUTO)
        assert store.is_embedding_query is False
        assert store.to_dict()["auto_embedding_model"] == "jina_ai/jina-embeddings-v3"
        store.add(
            [TextNode(id_="t", text="TiDB is a SQL database"), TextNode(id_="p", text="pesto")]
        )
        result = store.query(VectorStoreQuery(query_str="which SQL database?", similarity_top_k=1))
        assert result.ids == ["t"]
        mmr = VectorStoreQuery(query_str="pesto", similarity_top_k=1, mode="mmr")
        assert store.query(mmr).ids == ["p"]
        tasks = [r.body["task"] for r in server.requests if r.path.endswith("/embeddings")]
    assert tasks[0] == "retrieval.passage" and set(tasks[1:]) == {"retrieval.query"}


async def test_index_and_retriever_with_a_placeholder_embed_model(tmp_path, monkeypatch) -> None:
    with FakeEmbeddingServer(api_key="jina_test") as server:
        monkeypatch.setenv("JINA_API_BASE_URL", server.url)
        monkeypatch.setenv("JINA_API_KEY", "jina_test")
        store = TiDBVectorStore(f"sqlite:///{tmp_path / 'b.db'}", auto_embedding=AUTO)
        index = VectorStoreIndex.from_documents(
            [Document(text="TiDB is a distributed SQL database"), Document(text="Kyoto temples")],
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=MockEmbedding(embed_dim=8),  # its vectors are not used: the table embeds
        )
        retriever = index.as_retriever(similarity_top_k=1)
        assert "TiDB" in retriever.retrieve("Which database is distributed?")[0].get_content()
        nodes = await retriever.aretrieve("temples in Kyoto")
        assert "Kyoto" in nodes[0].get_content()
        await store.client.aio.dispose()


async def test_on_tidb_cloud_the_question_goes_to_the_server(monkeypatch) -> None:
    url = "mysql+pymysql://u.root:p@gateway01.us-west-2.prod.aws.tidbcloud.com:4000/test"
    store = TiDBVectorStore(url, auto_embedding="jina_ai/jina-embeddings-v3")
    table = store.client
    assert table.server_embeds
    seen: list[Any] = []

    def search_text(text: str, **kw: Any) -> list[Any]:
        seen.append((text, kw["k"], kw["ids"]))
        return []

    async def asearch_text(text: str, **kw: Any) -> list[Any]:
        return search_text(text, **kw)

    monkeypatch.setattr(table, "search_text", search_text)
    monkeypatch.setattr(table.aio, "search_text", asearch_text)
    assert store.query(VectorStoreQuery(query_str="What is TiDB?", similarity_top_k=2)).ids == []
    await store.aquery(VectorStoreQuery(query_str="TiDB?", node_ids=["a"]))
    assert seen == [("What is TiDB?", 2, None), ("TiDB?", 1, ["a"])]
    # MMR needs the question's vector, which the server keeps to itself.
    with pytest.raises(UnsupportedFeatureError, match="search_text"):
        store.query(VectorStoreQuery(query_str="TiDB", mode="mmr"))
