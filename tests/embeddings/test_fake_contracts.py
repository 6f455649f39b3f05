"""Issue 17.11: the fake server answers as strictly as the real services.

Each test pins one contract from ``../shared/reference/protocols.md`` sections 1-2 with a
raw ``httpx`` request (no client code in between), so a kinder fake cannot hide a client
bug such as sending 3,000 inputs in one request.
"""

from __future__ import annotations

import httpx
import pytest
from _emb_helpers import KEY

from tidb_jina.testing import FakeEmbeddingServer
from tidb_jina.testing._server import JINA_MAX_INPUTS


def _post(server: FakeEmbeddingServer, path: str, body: object, key: str = KEY) -> httpx.Response:
    return httpx.post(
        server.url + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _jina(server: FakeEmbeddingServer, inputs: list[str], **fields: object) -> httpx.Response:
    return _post(
        server, "/v1/embeddings", {"model": "jina-embeddings-v3", "input": inputs, **fields}
    )


def test_more_than_2048_inputs_is_a_400_and_2048_is_fine(server: FakeEmbeddingServer) -> None:
    assert _jina(server, ["x"] * JINA_MAX_INPUTS).status_code == 200
    answer = _jina(server, ["x"] * (JINA_MAX_INPUTS + 1))
    assert answer.status_code == 400
    assert "larger than the largest allowed size 2048" in answer.json()["detail"]


def test_v4_takes_at_most_512_inputs(server: FakeEmbeddingServer) -> None:
    body = {"model": "jina-embeddings-v4", "input": ["x"] * 512}
    assert _post(server, "/v1/embeddings", body).status_code == 200
    answer = _post(server, "/v1/embeddings", {**body, "input": ["x"] * 513})
    assert answer.status_code == 400
    assert "at most 512 items" in answer.json()["detail"]


def test_too_long_is_a_400_whose_detail_is_an_object_without_code() -> None:
    with FakeEmbeddingServer(api_key=KEY, max_input_tokens=5) as server:
        answer = _jina(server, ["one two three four five six"], truncate=False)
        assert answer.status_code == 400
        body = answer.json()
        assert set(body) == {"detail"} and set(body["detail"]) == {"message"}
        assert "too long" in body["detail"]["message"]
        assert _jina(server, ["one two three four five six"], truncate=True).status_code == 200


def test_late_chunking_inputs_must_fit_the_context_together() -> None:
    with FakeEmbeddingServer(api_key=KEY, max_input_tokens=10) as server:
        chunks = ["one two three four", "five six seven eight", "nine ten eleven"]
        assert _jina(server, chunks, truncate=True).status_code == 200  # separately: fine
        answer = _jina(server, chunks, truncate=True, late_chunking=True)  # joined: 11 tokens
        assert answer.status_code == 400
        assert "late chunking" in answer.json()["detail"]["message"]
        assert _jina(server, chunks[:2], late_chunking=True).status_code == 200


def test_tei_ignores_unknown_fields(server: FakeEmbeddingServer) -> None:
    with FakeEmbeddingServer() as tei:
        answer = _post(tei, "/embed", {"inputs": ["a"], "no_such_field": 1, "parameters": {}})
        assert answer.status_code == 200 and len(answer.json()) == 1


def test_router_single_input_comes_back_as_one_row_matrix(server: FakeEmbeddingServer) -> None:
    model = "sentence-transformers/all-MiniLM-L6-v2"
    path = f"/hf-inference/models/{model}/pipeline/feature-extraction"
    single = _post(server, path, {"inputs": "hello"}).json()
    assert isinstance(single, list) and len(single) == 1 and len(single[0]) == 384
    with FakeEmbeddingServer() as tei:
        assert len(_post(tei, "/embed", {"inputs": "hello"}).json()) == 1


def test_tei_401_has_an_empty_body() -> None:
    with FakeEmbeddingServer(api_key="tei-secret") as tei:
        for answer in (
            _post(tei, "/embed", {"inputs": ["a"]}, key="wrong"),
            httpx.get(tei.url + "/info", headers={"Authorization": "Bearer wrong"}),
        ):
            assert answer.status_code == 401 and answer.content == b""


def test_cloudflare_52x_is_plain_text(server: FakeEmbeddingServer) -> None:
    server.inject(522)
    answer = _jina(server, ["a"])
    assert answer.status_code == 522 and answer.text == "error code: 522"


def test_rerank_takes_truncation_and_at_most_1024_documents(server: FakeEmbeddingServer) -> None:
    body = {"model": "jina-reranker-v2-base-multilingual", "query": "q", "truncation": True}
    assert _post(server, "/v1/rerank", {**body, "documents": ["d"] * 1024}).status_code == 200
    assert _post(server, "/v1/rerank", {**body, "documents": ["d"] * 1025}).status_code == 400
    bad = _post(server, "/v1/rerank", {**body, "documents": ["d"], "truncation": "yes"})
    assert bad.status_code == 422
    wrong_name = _post(server, "/v1/rerank", {**body, "documents": ["d"], "truncate": True})
    assert wrong_name.status_code == 422  # the reranker's field is `truncation`


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/rerank"])
def test_jina_401_keeps_its_json_body(server: FakeEmbeddingServer, path: str) -> None:
    answer = _post(server, path, {"model": "jina-embeddings-v3", "input": ["a"]}, key="wrong")
    assert answer.status_code == 401 and answer.json()["code"] == "AUTH_INVALID_API_KEY"
