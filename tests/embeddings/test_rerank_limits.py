"""Issue 17.7: rerank requests stay within 1,024 documents, larger sets are split and
merged by score, and ``truncation`` is sent to the rerankers that document it."""

from __future__ import annotations

import random
from typing import Any

import pytest
from _emb_helpers import KEY

from tidb_jina import ConfigurationError
from tidb_jina.embeddings import JinaClient
from tidb_jina.testing import FakeEmbeddingServer

WORDS = ["tidb", "vector", "search", "pasta", "kyoto", "sql", "index", "rain", "cat", "sun"]


def documents(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(6)) + f" n{i}" for i in range(n)]


@pytest.mark.parametrize("top_n", [5, None])
def test_3000_documents_go_in_requests_of_at_most_1024_and_merge_by_score(
    call: Any, top_n: int | None
) -> None:
    docs = documents(3000)
    query = "tidb vector search sql"
    with FakeEmbeddingServer(api_key=KEY) as server:
        client = JinaClient(api_key=KEY, base_url=server.url)
        results = call(client, "rerank", query, docs, top_n=top_n)
        sizes = sorted(len(r.body["documents"]) for r in server.api_requests())
        assert sizes == [952, 1024, 1024]
        assert all(r.status == 200 for r in server.api_requests())
    # The same ranking as one pass over all 3,000 (the fake's scores are per pair).
    with FakeEmbeddingServer(api_key=KEY, rerank_max_documents=5000) as whole:
        one = JinaClient(api_key=KEY, base_url=whole.url, rerank_batch_size=5000)
        expected = call(one, "rerank", query, docs, top_n=top_n)
        assert len(whole.api_requests()) == 1
    assert [(r.index, r.score) for r in results] == [(r.index, r.score) for r in expected]
    assert len(results) == (top_n or 3000)
    assert all(docs[r.index] == r.document for r in results)
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)


def test_the_fake_refuses_what_we_never_send() -> None:
    with FakeEmbeddingServer(api_key=KEY) as server:
        unbounded = JinaClient(api_key=KEY, base_url=server.url, rerank_batch_size=5000)
        with pytest.raises(Exception, match="1024 allowed"):
            unbounded.rerank("q", documents(1500))


@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("jina-reranker-v2-base-multilingual", True),
        ("jina-reranker-v1-turbo-en", True),
        ("jina-reranker-v3", True),
        ("jina-colbert-v2", True),
        ("jina-reranker-m0", False),
    ],
)
def test_truncation_is_sent_where_documented(
    server: FakeEmbeddingServer, model: str, sent: bool
) -> None:
    JinaClient(api_key=KEY, base_url=server.url, rerank_model=model).rerank("q", ["a b"])
    JinaClient(api_key=KEY, base_url=server.url, truncate=False).rerank("q", ["a"], model=model)
    first, second = (r.body for r in server.api_requests())
    assert ("truncation" in first) is sent and ("truncation" in second) is sent
    if sent:
        assert first["truncation"] is True and second["truncation"] is False
    assert "truncate" not in first


def test_rerank_batch_size_is_checked_and_adapters_split_too(server: FakeEmbeddingServer) -> None:
    with pytest.raises(ConfigurationError, match="rerank_batch_size"):
        JinaClient(rerank_batch_size=0)
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from langchain_tidb_jina import JinaRerank as LCRerank
    from llama_index_tidb_jina import JinaRerank as LIRerank

    docs = documents(1500)
    lc = LCRerank(api_key=KEY, base_url=server.url, top_n=3)
    kept = lc.compress_documents([Document(page_content=d) for d in docs], "tidb sql")
    li = LIRerank(api_key=KEY, base_url=server.url, top_n=3)
    nodes = li.postprocess_nodes(
        [NodeWithScore(node=TextNode(text=d), score=0.0) for d in docs],
        QueryBundle("tidb sql"),
    )
    assert len(kept) == 3 and len(nodes) == 3
    assert [d.page_content for d in kept] == [n.node.get_content() for n in nodes]
    assert sorted(len(r.body["documents"]) for r in server.api_requests()) == [
        476,
        476,
        1024,
        1024,
    ]


def test_a_repeated_rerank_index_is_a_format_error_not_a_duplicate_result() -> None:
    """A server answering one document twice would make it appear twice after merging."""
    import httpx

    from tidb_jina import ResponseFormatError

    def answer(request: httpx.Request) -> httpx.Response:
        results = [{"index": 1, "relevance_score": 0.9}, {"index": 1, "relevance_score": 0.8}]
        return httpx.Response(200, json={"results": results})

    client = JinaClient(api_key=KEY, transport=httpx.MockTransport(answer), max_retries=0)
    with pytest.raises(ResponseFormatError, match="bad or repeated index: 1 for 3"):
        client.rerank("q", ["a", "b", "c"])
