"""JinaEmbedding / HuggingFaceInferenceAPIEmbedding against the loopback fake server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

from llama_index_tidb_jina import HuggingFaceInferenceAPIEmbedding, JinaEmbedding
from tidb_jina import AuthenticationError, ConfigurationError
from tidb_jina.testing import FakeEmbeddingServer

KEY = "jina_llama_test_key_0123456789"
HF_KEY = "hf_llama_test_token_0123456789"
E5 = "intfloat/multilingual-e5-large"


@pytest.fixture
def server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def hf_server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(api_key=HF_KEY) as fake:
        yield fake


def _jina(server: FakeEmbeddingServer, **kwargs: Any) -> JinaEmbedding:
    kwargs.setdefault("api_key", KEY)
    return JinaEmbedding(base_url=server.url, max_retries=0, **kwargs)


def _bodies(server: FakeEmbeddingServer) -> list[dict[str, Any]]:
    return [r.body for r in server.api_requests("/v1/embeddings")]


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    return request.param


async def _batch(model: Any, api: str, texts: list[str]) -> list[list[float]]:
    if api == "sync":
        return model.get_text_embedding_batch(texts)
    return await model.aget_text_embedding_batch(texts)


async def _query(model: Any, api: str, text: str) -> list[float]:
    if api == "sync":
        return model.get_query_embedding(text)
    return await model.aget_query_embedding(text)


async def test_jina_query_and_passage_tasks(server: FakeEmbeddingServer, api: str) -> None:
    model = _jina(server)
    assert len(await _query(model, api, "what is tidb")) == 1024
    assert len((await _batch(model, api, ["tidb is a database"]))[0]) == 1024
    tasks = [body["task"] for body in _bodies(server)]
    assert tasks == ["retrieval.query", "retrieval.passage"]


async def test_jina_batches_by_embed_batch_size(server: FakeEmbeddingServer, api: str) -> None:
    model = _jina(server, embed_batch_size=3)
    texts = [f"text number {i}" for i in range(7)]
    vectors = await _batch(model, api, texts)
    assert len(vectors) == 7
    assert sorted(len(body["input"]) for body in _bodies(server)) == [1, 3, 3]
    # the same text gives the same vector whatever batch it was in
    again = await _batch(model, api, [texts[5]])
    assert again[0] == pytest.approx(vectors[5])


async def test_sync_methods_work_inside_a_running_loop(server: FakeEmbeddingServer) -> None:
    asyncio.get_running_loop()  # as in Jupyter or a FastAPI handler
    model = _jina(server)
    assert len(model.get_query_embedding("tidb")) == 1024
    assert len(model.get_text_embedding_batch(["a", "b"])) == 2


async def test_jinaai_constructor_arguments(server: FakeEmbeddingServer, api: str) -> None:
    model = _jina(
        server,
        model="jina-embeddings-v3",
        task="retrieval.passage",
        dimensions=256,
        late_chunking=False,
        embed_batch_size=16,
    )
    assert len(await _query(model, api, "q")) == 256
    await _batch(model, api, ["p"])
    bodies = _bodies(server)
    assert [b["task"] for b in bodies] == ["retrieval.query", "retrieval.passage"]
    assert all(b["dimensions"] == 256 for b in bodies)
    matching = _jina(server, task="text-matching")
    assert matching.query_task == matching.passage_task == "text-matching"


def test_jina_late_chunking_is_sent(server: FakeEmbeddingServer) -> None:
    model = _jina(server, late_chunking=True)
    doc = TextNode(text="first chunk")  # nodes of one ref_doc_id: one late-chunking request
    nodes = [TextNode(text=t) for t in ("first chunk", "second chunk")]
    for node in nodes:
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=doc.node_id)
    model(nodes)
    assert _bodies(server)[0]["late_chunking"] is True and len(_bodies(server)[0]["input"]) == 2


def test_jina_key_from_jinaai_env(server: FakeEmbeddingServer, monkeypatch: Any) -> None:
    monkeypatch.setenv("JINAAI_API_KEY", KEY)
    monkeypatch.setenv("JINA_API_BASE_URL", server.url)  # env keys go to env URLs only
    model = JinaEmbedding()
    model.get_query_embedding("tidb")
    assert server.api_requests()[0].authorized is True


def test_jina_bad_key_raises_mapped_error(server: FakeEmbeddingServer) -> None:
    with pytest.raises(AuthenticationError) as info:
        _jina(server, api_key="jina_wrong").get_query_embedding("tidb")
    assert "jina_wrong" not in str(info.value)


def test_keys_never_serialized(server: FakeEmbeddingServer) -> None:
    model = _jina(server)
    hf = HuggingFaceInferenceAPIEmbedding(E5, token=HF_KEY, router_url=server.url)
    for obj in (model, hf):
        for text in (str(obj.to_dict()), obj.to_json(), repr(obj), str(obj.to_payload())):
            assert KEY not in text and HF_KEY not in text


def test_binary_encodings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="binary"):
        JinaEmbedding(api_key=KEY, encoding_queries="ubinary")


async def test_hf_router_prefixes_and_batches(hf_server: FakeEmbeddingServer, api: str) -> None:
    model = HuggingFaceInferenceAPIEmbedding(
        model_name=E5, token=HF_KEY, router_url=hf_server.url, embed_batch_size=2
    )
    assert len(await _query(model, api, "what is tidb")) == 1024
    assert len(await _batch(model, api, ["a", "b", "c"])) == 3
    inputs = [r.body["inputs"] for r in hf_server.api_requests()]
    assert inputs[0] == ["query: what is tidb"]
    # llama-index runs async batches concurrently: they may arrive in either order.
    assert sorted(inputs[1:]) == [["passage: a", "passage: b"], ["passage: c"]]


async def test_hf_tei_server(hf_server: FakeEmbeddingServer, api: str) -> None:
    model = HuggingFaceInferenceAPIEmbedding(base_url=hf_server.url, token=HF_KEY)
    vectors = await _batch(model, api, ["tidb", "vectors"])
    assert len(vectors) == 2 and len(vectors[0]) == 384


def test_hf_instructions_of_the_peer(hf_server: FakeEmbeddingServer) -> None:
    model = HuggingFaceInferenceAPIEmbedding(
        model_name="BAAI/bge-m3",
        token=HF_KEY,
        router_url=hf_server.url,
        query_instruction="Represent this question:",
        text_instruction="Represent this passage:",
    )
    model.get_query_embedding("what is tidb")
    model.get_text_embedding("tidb")
    inputs = [r.body["inputs"] for r in hf_server.api_requests()]
    assert inputs == [
        ["Represent this question: what is tidb"],
        ["Represent this passage: tidb"],
    ]
