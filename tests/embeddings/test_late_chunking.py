"""Issue 17.6: late chunking sends only one document's chunks per request, within limits.

The fake server enforces the real limits (2,048 inputs, 512 for v4, and the joined
inputs of a late-chunking request within the model's context), and every chunk's text
carries its document's tag, so each recorded request shows which documents it mixed.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from typing import Any

import numpy as np
import pytest
from _emb_helpers import KEY

from tidb_jina.embeddings import JINA_MODELS, JinaClient
from tidb_jina.embeddings._late import estimate_tokens, group_positions, plan_windows
from tidb_jina.testing import FakeEmbeddingServer, lexical_embedding

TAG = re.compile(r"^doc(\d+) ")
V3_CONTEXT = JINA_MODELS["jina-embeddings-v3"].max_input_tokens


def corpus(n_docs: int = 50, per_doc: int = 100, seed: int = 7) -> tuple[list[str], list[str]]:
    """``n_docs * per_doc`` chunks, interleaved; one in five documents far longer than the
    v3 context (100 chunks of 150 words = 15,000 words), the rest short."""
    rng = random.Random(seed)
    texts, keys = [], []
    for doc in range(n_docs):
        words = 150 if doc % 5 == 0 else rng.randint(5, 40)
        for chunk in range(per_doc):
            body = " ".join(f"w{rng.randint(0, 999)}" for _ in range(words))
            texts.append(f"doc{doc} chunk{chunk} {body}")
            keys.append(f"doc-{doc}")
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [keys[i] for i in order]


def check_requests(server: FakeEmbeddingServer, max_inputs: int, context: int) -> int:
    """Every late-chunking request holds one document's chunks within the limits."""
    requests = server.api_requests("/v1/embeddings")
    for request in requests:
        assert request.status == 200, request.status
        inputs = request.body["input"]
        assert request.body["late_chunking"] is True
        assert len({TAG.match(text).group(1) for text in inputs}) == 1  # type: ignore[union-attr]
        assert len(inputs) <= max_inputs
        assert sum(len(text.split()) for text in inputs) <= context  # the fake's tokens
    return len(requests)


def test_5000_chunks_of_50_documents_never_share_a_request(call: Any) -> None:
    texts, keys = corpus()
    with FakeEmbeddingServer(api_key=KEY) as server:
        client = JinaClient(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=32)
        vectors = call(client, "embed_grouped", texts, keys)
        sent = check_requests(server, 2048, V3_CONTEXT)
    assert vectors.shape == (5000, 32)
    # The fake embeds each input by its own words: the rows are back in input order.
    expected = lexical_embedding(texts, 32)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    # 40 short documents fit one request each; the 10 long ones need several windows.
    assert 50 < sent < 50 + 10 * 8


def test_v4_windows_stay_within_512_inputs(call: Any) -> None:
    chunks = [f"doc1 chunk {i}" for i in range(1200)]
    with FakeEmbeddingServer(api_key=KEY) as server:
        client = JinaClient(
            model="jina-embeddings-v4", api_key=KEY, base_url=server.url, late_chunking=True
        )
        (vectors,) = call(client, "embed_chunked_documents", [chunks])
        assert vectors.shape == (1200, 2048)
        sizes = [len(r.body["input"]) for r in server.api_requests()]
    assert sorted(sizes) == [176, 512, 512]  # concurrent requests: any order


def test_a_flat_list_is_one_document_split_into_windows_in_order(call: Any) -> None:
    long_chunks = [f"doc3 part{i} " + "word " * 900 for i in range(20)]  # 18,000 words
    with FakeEmbeddingServer(api_key=KEY) as server:
        client = JinaClient(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=16)
        vectors = call(client, "embed_documents", long_chunks)
        windows = [r.body["input"] for r in server.api_requests()]
        check_requests(server, 2048, V3_CONTEXT)
    windows.sort(key=lambda window: long_chunks.index(window[0]))  # sent concurrently
    assert len(windows) > 2 and [t for w in windows for t in w] == long_chunks  # contiguous
    np.testing.assert_allclose(vectors, lexical_embedding(long_chunks, 16), atol=1e-6)


def test_late_chunking_can_be_turned_off_per_call(server: FakeEmbeddingServer, call: Any) -> None:
    client = JinaClient(
        api_key=KEY, base_url=server.url, late_chunking=True, max_batch_size=2, dimensions=8
    )
    call(client, "embed_documents", ["a", "b", "c"], late_chunking=False)
    bodies = [r.body for r in server.api_requests()]
    assert sorted(len(b["input"]) for b in bodies) == [1, 2]
    assert not any("late_chunking" in b for b in bodies)


def test_flat_requests_never_exceed_the_api_input_limit(server: FakeEmbeddingServer) -> None:
    client = JinaClient(api_key=KEY, base_url=server.url, max_batch_size=5000, dimensions=8)
    assert client.embed_documents(["x"] * 3000).shape == (3000, 8)
    assert sorted(len(r.body["input"]) for r in server.api_requests()) == [952, 2048]


def test_empty_documents_and_bad_keys(server: FakeEmbeddingServer) -> None:
    client = JinaClient(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=8)
    parts = client.embed_chunked_documents([["doc1 a"], [], ["doc2 b", "doc2 c"]])
    assert [p.shape for p in parts] == [(1, 8), (0, 8), (2, 8)]
    assert client.embed_grouped([], []).shape == (0, 8)
    with pytest.raises(Exception, match="one key per text"):
        client.embed_grouped(["a", "b"], ["k"])
    v2 = JinaClient(model="jina-embeddings-v2-base-en", api_key=KEY, base_url=server.url)
    with pytest.raises(Exception, match="does not support late chunking"):
        v2.embed_documents(["a"], late_chunking=True)


def test_windows_and_groups() -> None:
    assert group_positions(["a", None, "b", "a", None, "b"]) == [[0, 3], [1], [2, 5], [4]]
    chunks = ["x " * 10] * 7
    cost = estimate_tokens(chunks[0])
    assert cost >= 10
    assert plan_windows(chunks, max_inputs=3, max_tokens=10_000, max_chars=10**6) == [
        (0, 3),
        (3, 6),
        (6, 7),
    ]
    assert plan_windows(chunks, max_inputs=100, max_tokens=cost * 2, max_chars=10**6) == [
        (0, 2),
        (2, 4),
        (4, 6),
        (6, 7),
    ]
    # One chunk over the budget alone still gets a window (the API truncates it).
    assert plan_windows(["a " * 50], max_inputs=5, max_tokens=3, max_chars=10**6) == [(0, 1)]
    assert estimate_tokens("東京都") >= 3  # CJK: about one token per character


# ---- the adapters -----------------------------------------------------------------------------


def test_llama_index_nodes_of_one_ref_doc_id_share_requests(caplog: Any) -> None:
    from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler
    from llama_index.core.callbacks.schema import CBEventType, EventPayload
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    from llama_index_tidb_jina import JinaEmbedding

    texts, keys = corpus(n_docs=6, per_doc=30, seed=3)
    nodes = []
    for text, key in zip(texts, keys, strict=True):
        node = TextNode(text=text)
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=key)
        nodes.append(node)
    nodes.append(TextNode(text="doc99 an orphan node without a document"))
    debug = LlamaDebugHandler()
    with FakeEmbeddingServer(api_key=KEY) as server:
        model = JinaEmbedding(
            api_key=KEY,
            base_url=server.url,
            late_chunking=True,
            dimensions=16,
            callback_manager=CallbackManager([debug]),
        )
        model(nodes)
        check_requests(server, 2048, V3_CONTEXT)
        # The EMBEDDING callback event fires as for get_text_embedding_batch (token counters).
        ((_, end),) = debug.get_event_pairs(CBEventType.EMBEDDING)
        assert end.payload[EventPayload.CHUNKS] == [n.get_content("embed") for n in nodes]
        np.testing.assert_allclose(
            [n.embedding for n in nodes], lexical_embedding([t.text for t in nodes], 16), atol=1e-6
        )
        server.reset()
        import asyncio

        for node in nodes:
            node.embedding = None
        asyncio.run(model.acall(nodes))
        assert all(n.embedding is not None for n in nodes)
        check_requests(server, 2048, V3_CONTEXT)
        # Bare texts (VectorStoreIndex's own step) carry no boundaries: no late chunking.
        server.reset()
        with caplog.at_level(logging.WARNING):
            model.get_text_embedding_batch(["doc1 a", "doc2 b"])
            model.get_text_embedding_batch(["doc1 c"])
        assert not any("late_chunking" in r.body for r in server.api_requests())
        assert sum("each on its own" in r.getMessage() for r in caplog.records) == 1


def test_langchain_documents_of_one_source_share_requests(tmp_path: Any, caplog: Any) -> None:
    from langchain_core.documents import Document

    from langchain_tidb_jina import JinaEmbeddings, TiDBVectorStore

    texts, keys = corpus(n_docs=6, per_doc=30, seed=5)
    docs = [
        Document(page_content=t, metadata={"source": k}) for t, k in zip(texts, keys, strict=True)
    ]
    docs.append(Document(page_content="doc77 no source at all", metadata={}))
    with FakeEmbeddingServer(api_key=KEY) as server:
        emb = JinaEmbeddings(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=16)
        store = TiDBVectorStore(embedding=emb, connection_string=f"sqlite:///{tmp_path / 'lc.db'}")
        ids = store.add_documents(docs)
        check_requests(server, 2048, V3_CONTEXT)
        stored = store.get_by_ids(ids[:3])
        assert [d.page_content for d in stored] == texts[:3]
        server.reset()
        import asyncio

        asyncio.run(store.aadd_documents(docs[:40]))
        check_requests(server, 2048, V3_CONTEXT)
        server.reset()
        with caplog.at_level(logging.WARNING):
            emb.embed_documents(["doc1 a", "doc2 b"])
        assert not any("late_chunking" in r.body for r in server.api_requests())
        assert any("embeds each text on its own" in r.getMessage() for r in caplog.records)
        store._table.engine.dispose()


def test_a_chunk_longer_than_the_context_goes_alone_and_is_truncated(call: Any) -> None:
    with FakeEmbeddingServer(api_key=KEY, max_input_tokens=50) as server:
        client = JinaClient(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=8)
        client.info = dataclasses.replace(client.info, max_input_tokens=50)  # a tiny context
        chunks = ["doc1 a b c", "doc1 " + "long " * 80, "doc1 d e f"]
        vectors = call(client, "embed_documents", chunks)
        sizes = sorted(len(r.body["input"]) for r in server.api_requests())
    assert vectors.shape[0] == 3 and sizes == [1, 1, 1]


def test_llama_index_from_documents_with_the_embed_model_as_a_transformation() -> None:
    """The documented VectorStoreIndex path: late chunking per document, no flat call."""
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter

    from llama_index_tidb_jina import JinaEmbedding

    docs = [
        Document(text=" ".join(f"doc{d} sentence {i} about topic{d}." for i in range(60)))
        for d in range(4)
    ]
    with FakeEmbeddingServer(api_key=KEY) as server:
        model = JinaEmbedding(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=16)
        index = VectorStoreIndex.from_documents(
            docs,
            embed_model=model,
            transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), model],
        )
        embedded = [r for r in server.api_requests() if "late_chunking" in r.body]
        assert len(embedded) >= 4  # one document per request at least
        check_requests(server, 2048, V3_CONTEXT)
        hits = index.as_retriever(similarity_top_k=1).retrieve("doc2 topic2")
    assert "doc2" in hits[0].get_content()


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "async"])
def test_table_add_texts_never_joins_unrelated_rows(aio: bool) -> None:
    """``VectorTable.add_texts`` with a late-chunking client: rows of one
    ``metadata["source"]`` share requests, rows without one go alone, order is kept."""
    import asyncio

    from tidb_jina.store import VectorTable

    texts = ["doc1 a cats", "doc2 b dogs", "doc1 c mice", "doc3 d owls", "doc4 e bats"]
    metas = [{"source": "x"}, {"source": "y"}, {"source": "x"}, None, {"source": ["list"]}]
    with FakeEmbeddingServer(api_key=KEY) as server:
        client = JinaClient(api_key=KEY, base_url=server.url, late_chunking=True, dimensions=32)
        table = VectorTable("sqlite://", table_name="late", embedder=client)
        if aio:
            asyncio.run(table.aio.add_texts(texts, ids=list("abcde"), metadatas=metas))
        else:
            table.add_texts(texts, ids=list("abcde"), metadatas=metas)
        sent = sorted(r.body["input"] for r in server.api_requests("/v1/embeddings"))
        assert all(r.body["late_chunking"] for r in server.api_requests("/v1/embeddings"))
    assert sent == [
        ["doc1 a cats", "doc1 c mice"],
        ["doc2 b dogs"],
        ["doc3 d owls"],
        ["doc4 e bats"],
    ]
    stored = {r.id: r.embedding for r in table.get(list("abcde"), include_embeddings=True)}
    expected = lexical_embedding(texts, 32)
    for i, row_id in enumerate("abcde"):
        np.testing.assert_allclose(stored[row_id], expected[i], atol=1e-6)
