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
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import QueryBundle

from llama_index_tidb_jina import JinaEmbedding, ProviderEmbedding, TiDBVectorStore
from tidb_jina import AuthenticationError, InvalidInputError
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


class Events(BaseEventHandler):
    """Embedding start / end events from llama-index's instrumentation, in order."""

    seen: list[tuple[str, Any, Any]] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, EmbeddingStartEvent):
            self.seen.append(("start", None, None))
        elif isinstance(event, EmbeddingEndEvent):
            self.seen.append(("end", event.chunks, event.embeddings))


@pytest.fixture
def events() -> Iterator[Events]:
    handler = Events(seen=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def _pairs(debug: LlamaDebugHandler) -> list[tuple[Any, Any]]:
    """Each embedding event's (chunks, embeddings), in order."""
    return [
        (end.payload[EventPayload.CHUNKS], end.payload[EventPayload.EMBEDDINGS])
        for _, end in debug.get_event_pairs(CBEventType.EMBEDDING)
        if end.payload is not None
    ]


@pytest.mark.parametrize("queries", [QUERIES, [*QUERIES, "kyoto in autumn"]])
async def test_one_request_same_aggregate_and_events(
    server: FakeEmbeddingServer, api: str, events: Events, queries: list[str]
) -> None:
    debug = LlamaDebugHandler()
    model = _jina(server, callback_manager=CallbackManager([debug]))
    got = await _agg(model, api, queries)
    (request,) = server.api_requests()
    assert request.body["input"] == queries and request.body["task"] == "retrieval.query"
    ours, our_events = _pairs(debug), list(events.seen)
    debug.flush_event_logs()
    events.seen.clear()
    want = await _per_query(model, api, queries)
    assert len(server.api_requests()) == 1 + len(queries)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The loop's events: one per query, carrying that query and its vector, in order.
    assert [chunks for chunks, _ in ours] == [[q] for q in queries]
    assert ours == _pairs(debug)
    assert our_events == events.seen and len(our_events) == 2 * len(queries)
    assert not np.allclose(got, await _agg(model, api, queries[:1]))  # every query counts


async def test_failed_request_ends_the_first_event_with_the_error(
    server: FakeEmbeddingServer, api: str, events: Events
) -> None:
    debug = LlamaDebugHandler()
    model = _jina(server, callback_manager=CallbackManager([debug]))
    server.inject(401)
    with pytest.raises(AuthenticationError):
        await _agg(model, api, QUERIES)
    ((_start, end),) = debug.get_event_pairs(CBEventType.EMBEDDING)
    assert end.payload is not None and isinstance(
        end.payload[EventPayload.EXCEPTION], AuthenticationError
    )
    assert events.seen == [("start", None, None)]  # no end event, as in the loop


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


@pytest.mark.parametrize("bad", ["", "  ", "bad \ud800"])
async def test_a_bad_query_fails_as_in_the_loop(
    server: FakeEmbeddingServer, api: str, bad: str
) -> None:
    """The loop embeds the good query (its own event), then fails on the bad one with the
    single-query message; the aggregate does the same."""
    debug = LlamaDebugHandler()
    model = _jina(server, callback_manager=CallbackManager([debug]))
    with pytest.raises(InvalidInputError) as ours:
        await _agg(model, api, [QUERIES[0], bad])
    ours_pairs = len(debug.get_event_pairs(CBEventType.EMBEDDING))
    debug.flush_event_logs()
    with pytest.raises(InvalidInputError) as loop:
        await _per_query(model, api, [QUERIES[0], bad])
    assert str(ours.value) == str(loop.value) and "text[0]" in str(ours.value)
    assert ours_pairs == len(debug.get_event_pairs(CBEventType.EMBEDDING)) == 2
