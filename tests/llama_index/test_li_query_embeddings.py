"""``get_agg_embedding_from_queries``: several queries (a ``QueryBundle``'s
``embedding_strs``, HyDE's) in one ``embed_queries`` request, with the vectors, aggregate,
callback event and retrieved nodes of llama-index's per-query loop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.schema import QueryBundle

from llama_index_tidb_jina import JinaEmbedding, ProviderEmbedding, TiDBVectorStore
from tidb_jina.testing import FakeEmbeddingServer

KEY = "jina_llama_test_key_0123456789"
QUERIES = ["what is tidb", "TiDB is a distributed SQL database with vector search"]


@pytest.fixture
def server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(api_key=KEY) as fake:
        yield fake


def _jina(server: FakeEmbeddingServer, cls: type = JinaEmbedding, **kwargs: Any) -> Any:
    return cls(api_key=KEY, base_url=server.url, max_retries=0, dimensions=64, **kwargs)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


async def _agg(model: Any, api: str, queries: list[str]) -> list[float]:
    if api == "sync":
        return model.get_agg_embedding_from_queries(queries)
    return await model.aget_agg_embedding_from_queries(queries)


async def _per_query(model: Any, api: str, queries: list[str]) -> list[float]:
    """llama-index's own loop: one ``get_query_embedding`` per query, then the mean."""
    if api == "sync":
        return BaseEmbedding.get_agg_embedding_from_queries(model, queries)
    return await BaseEmbedding.aget_agg_embedding_from_queries(model, queries)


async def test_one_request_same_aggregate(server: FakeEmbeddingServer, api: str) -> None:
    debug = LlamaDebugHandler()
    model = _jina(server, callback_manager=CallbackManager([debug]))
    got = await _agg(model, api, QUERIES)
    (request,) = server.api_requests()
    assert request.body["input"] == QUERIES and request.body["task"] == "retrieval.query"
    # One embedding event carrying every query and its vector.
    (pair,) = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert pair[1].payload is not None
    assert pair[1].payload[EventPayload.CHUNKS] == QUERIES
    assert len(pair[1].payload[EventPayload.EMBEDDINGS]) == 2
    want = await _per_query(model, api, QUERIES)
    assert len(server.api_requests()) == 1 + len(QUERIES)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert not np.allclose(got, await _agg(model, api, QUERIES[:1]))  # both queries count


class PrefixedQueries(JinaEmbedding):
    """Overrides the query method: llama-index's per-query loop must run it."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return super()._get_query_embedding(f"about {query}")

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await super()._aget_query_embedding(f"about {query}")


async def test_overridden_query_method_keeps_the_loop(
    server: FakeEmbeddingServer, api: str
) -> None:
    await _agg(_jina(server, PrefixedQueries), api, QUERIES)
    inputs = sorted(r.body["input"][0] for r in server.api_requests())
    assert inputs == sorted(f"about {q}" for q in QUERIES)


async def test_single_query_and_custom_agg(server: FakeEmbeddingServer, api: str) -> None:
    model = _jina(server)
    one = await _agg(model, api, QUERIES[:1])
    assert one == pytest.approx(model.get_query_embedding(QUERIES[0]))
    first: Callable[[list[list[float]]], list[float]] = lambda rows: rows[0]  # noqa: E731
    if api == "sync":
        got = model.get_agg_embedding_from_queries(QUERIES, first)
    else:
        got = await model.aget_agg_embedding_from_queries(QUERIES, first)
    assert got == pytest.approx(one)


async def test_retriever_with_several_embedding_strs(
    make_store: Callable[..., TiDBVectorStore], server: FakeEmbeddingServer, api: str
) -> None:
    """``VectorIndexRetriever`` on our store: one request for the bundle's strings, and
    the nodes llama-index's per-query loop finds."""
    model = _jina(server)
    texts = [
        "TiDB is a distributed SQL database",
        "vector search in TiDB",
        "basil and tomato recipes",
        "Kyoto temples in autumn",
    ]
    index = VectorStoreIndex.from_documents(
        [Document(text=t) for t in texts],
        storage_context=StorageContext.from_defaults(vector_store=make_store()),
        embed_model=model,
    )
    retriever = index.as_retriever(similarity_top_k=2)
    bundle = QueryBundle(query_str=QUERIES[0], custom_embedding_strs=QUERIES)
    before = len(server.api_requests())
    if api == "sync":
        nodes = retriever.retrieve(bundle)
    else:
        nodes = await retriever.aretrieve(bundle)
    assert len(server.api_requests()) == before + 1
    loop = ProviderEmbedding(provider=model.provider)  # same client, per-query loop
    vector = BaseEmbedding.get_agg_embedding_from_queries(loop, QUERIES)
    want = index.as_retriever(similarity_top_k=2).retrieve(
        QueryBundle(query_str=QUERIES[0], embedding=vector)
    )
    assert [n.node.get_content() for n in nodes] == [n.node.get_content() for n in want]
    assert "TiDB" in nodes[0].node.get_content()
