"""Jina rerank, the lexical embedder, the fake server's own contract, and the public exports."""

from __future__ import annotations

import subprocess
import sys

import httpx
import numpy as np
import pytest
from _emb_helpers import FAST, KEY

from tidb_jina import ConfigurationError, ModelNotFoundError, ResponseFormatError
from tidb_jina.embeddings import EmbeddingProvider, JinaClient, RerankResult
from tidb_jina.testing import FakeEmbeddingServer, LexicalEmbedder, lexical_embedding

DOCS = [
    "TiDB is a distributed SQL database",
    "Cats like to sleep in the sun",
    "Jina AI builds embedding and reranker models",
    "A distributed database scales SQL horizontally",
]

# ---- rerank -------------------------------------------------------------------------------


def test_rerank_returns_original_indices_best_first(server, call):
    client = JinaClient(api_key=KEY, base_url=server.url, **FAST)
    results = call(client, "rerank", "distributed SQL database", DOCS, top_n=2)
    assert [r.index for r in results] == [0, 3]
    assert all(isinstance(r, RerankResult) for r in results)
    assert results[0].document == DOCS[0] and results[0].score >= results[1].score
    (request,) = server.api_requests()
    assert request.path == "/v1/rerank"
    assert request.body == {
        "model": "jina-reranker-v2-base-multilingual",
        "query": "distributed SQL database",
        "documents": DOCS,
        "return_documents": False,
        "top_n": 2,
        "truncation": True,  # the reranker's name for it (17.7)
    }


def test_rerank_all_documents_and_other_model(server, call):
    client = JinaClient(api_key=KEY, base_url=server.url, rerank_model="jina-reranker-v3")
    results = call(client, "rerank", "cats sun", DOCS)
    assert sorted(r.index for r in results) == [0, 1, 2, 3] and results[0].index == 1
    assert "top_n" not in server.api_requests()[0].body
    with pytest.raises(ModelNotFoundError):
        call(client, "rerank", "x", DOCS, model="no-such-reranker")


def test_rerank_edge_cases(server, call):
    client = JinaClient(api_key=KEY, base_url=server.url)
    assert call(client, "rerank", "q", []) == []
    with pytest.raises(ConfigurationError, match="top_n"):
        call(client, "rerank", "q", ["d"], top_n=0)
    assert server.requests == []


def test_rerank_sorts_and_validates_provider_results(call):
    results = [{"index": 1, "relevance_score": 0.2}, {"index": 0, "relevance_score": 0.9}]
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"results": results}))
    client = JinaClient(api_key=KEY, transport=transport)
    assert [r.index for r in call(client, "rerank", "q", ["a", "b"])] == [0, 1]
    bad = httpx.MockTransport(
        lambda r: httpx.Response(200, json={"results": [{"index": 7, "relevance_score": 1}]})
    )
    with pytest.raises(ResponseFormatError):
        call(JinaClient(api_key=KEY, transport=bad), "rerank", "q", ["a"])


# ---- lexical embeddings -------------------------------------------------------------------------


def test_lexical_embedding_is_normalized_and_lexical():
    vectors = lexical_embedding(["red apple pie", "apple pie recipe", "blue ocean", "!!!"], 128)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    sims = vectors @ vectors[0]
    assert sims[1] > 0.5 > abs(sims[2])


@pytest.mark.slow
def test_lexical_embedding_is_case_insensitive_and_stable_across_processes():
    here = lexical_embedding(["Hello World"], 64)
    np.testing.assert_array_equal(here, lexical_embedding(["hello world"], 64))
    code = (
        "from tidb_jina.testing import lexical_embedding;"
        "print(lexical_embedding(['Hello World'], 64).tobytes().hex())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert out.stdout.strip() == here.tobytes().hex()


async def test_lexical_embedder_is_an_offline_provider():
    embedder = LexicalEmbedder(dimension=32)
    assert isinstance(embedder, EmbeddingProvider) and embedder.dimension == 32
    docs = embedder.embed_documents(DOCS)
    query = await embedder.aembed_query("sleepy cats")
    assert docs.shape == (4, 32) and int(np.argmax(docs @ query)) == 1
    assert (await embedder.aembed_documents(["x"])).shape == (1, 32)
    np.testing.assert_array_equal(embedder.embed_query("sleepy cats"), query)


# ---- the fake server's own contract -------------------------------------------------------------


def test_fake_server_contract_errors_and_log(server):
    with httpx.Client(base_url=server.url) as http:
        assert http.post("/v1/embeddings", json={"model": "x", "input": ["a"]}).status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        body = {"model": "jina-embeddings-v2-base-en", "input": ["a"], "task": "retrieval.query"}
        answer = http.post("/v1/embeddings", json=body, headers=auth)
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "task"
        body = {"model": "jina-embeddings-v4", "input": ["a"], "normalized": True}
        assert http.post("/v1/embeddings", json=body, headers=auth).status_code == 422
        assert http.get("/nowhere").status_code == 405
        assert http.post("/nowhere", headers=auth).status_code == 404
    assert [r.status for r in server.requests] == [401, 422, 422, 405, 404]
    assert not server.requests[0].authorized and server.requests[1].authorized
    assert all("authorization" not in r.headers for r in server.requests)


def test_fake_server_concurrency_cap_and_retry_after():
    import threading

    with FakeEmbeddingServer(latency_s=1.0, max_concurrency=1, retry_after=2) as server:
        statuses: list[httpx.Response] = []

        def post() -> None:
            with httpx.Client() as http:
                body = {"model": "jina-embeddings-v3", "input": ["a"]}
                statuses.append(http.post(server.url + "/v1/embeddings", json=body))

        threads = [threading.Thread(target=post) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    codes = sorted(r.status_code for r in statuses)
    assert codes == [200, 429, 429]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited[0].json()["code"] == "RATE_CONCURRENCY_LIMIT_EXCEEDED"
    assert limited[0].headers["retry-after"] == "2"


def test_fake_server_url_before_start_is_an_error():
    with pytest.raises(RuntimeError, match="context manager"):
        _ = FakeEmbeddingServer().url
