"""HuggingFaceClient against the fake HF router and TEI server, and httpx.MockTransport."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest
from _emb_helpers import FAST, HF_KEY

from tidb_jina import (
    AuthenticationError,
    ConfigurationError,
    InputTooLongError,
    InsufficientBalanceError,
    InvalidRequestError,
    ModelNotFoundError,
    ResponseFormatError,
)
from tidb_jina.embeddings import QWEN3_QUERY_TASK, EmbeddingProvider, HuggingFaceClient
from tidb_jina.testing import FakeEmbeddingServer, lexical_embedding

E5 = "intfloat/multilingual-e5-large"
QWEN = "Qwen/Qwen3-Embedding-0.6B"


@pytest.fixture
def hf_server():
    with FakeEmbeddingServer(api_key=HF_KEY, token_level_models={"bert-base-uncased"}) as fake:
        yield fake


def router(server: FakeEmbeddingServer, model: str, **kwargs) -> HuggingFaceClient:
    return HuggingFaceClient(model=model, api_key=HF_KEY, router_url=server.url, **FAST, **kwargs)


def test_router_url_and_top_level_parameters(hf_server, call):
    client = router(hf_server, E5, truncation_direction="left")
    assert client.embed_url == (
        f"{hf_server.url}/hf-inference/models/{E5}/pipeline/feature-extraction"
    )
    vectors = call(client, "embed_documents", ["hello world"])
    assert vectors.shape == (1, 1024) and client.dimension == 1024
    (request,) = hf_server.api_requests()
    assert request.path == f"/hf-inference/models/{E5}/pipeline/feature-extraction"
    assert request.body == {
        "inputs": ["passage: hello world"],
        "normalize": True,
        "truncate": True,
        "truncation_direction": "left",
    }


def test_default_router_url():
    client = HuggingFaceClient(model="BAAI/bge-m3")
    assert client.embed_url == (
        "https://router.huggingface.co/hf-inference/models/BAAI/bge-m3/pipeline/feature-extraction"
    )
    assert client.dimension == 1024


def test_e5_prefixes_split_queries_and_passages(hf_server, call):
    client = router(hf_server, E5)
    call(client, "embed_documents", ["a", "b"])
    call(client, "embed_query", "c")
    docs, query = hf_server.api_requests()
    assert docs.body["inputs"] == ["passage: a", "passage: b"]
    assert query.body["inputs"] == ["query: c"]


def test_qwen3_instruction_on_queries_only(hf_server, call):
    client = router(hf_server, QWEN)
    call(client, "embed_documents", ["doc"])
    call(client, "embed_query", "what is tidb")
    docs, query = hf_server.api_requests()
    assert docs.body["inputs"] == ["doc"]
    assert query.body["inputs"] == [f"Instruct: {QWEN3_QUERY_TASK}\nQuery:what is tidb"]


def test_model_prompts_can_be_disabled_or_overridden(hf_server):
    router(hf_server, E5, use_model_prompts=False).embed_query("plain")
    router(hf_server, E5, query_prefix="q: ", passage_prefix="").embed_query("custom")
    assert [r.body["inputs"] for r in hf_server.api_requests()] == [["plain"], ["q: custom"]]


def test_plain_models_get_no_prefix(hf_server):
    router(hf_server, "sentence-transformers/all-MiniLM-L6-v2").embed_query("x")
    assert hf_server.api_requests()[0].body["inputs"] == ["x"]


def test_prompt_name_is_a_top_level_field(call):
    with FakeEmbeddingServer(tei_prompts={"query"}) as server:
        client = HuggingFaceClient(base_url=server.url, query_prompt_name="query", **FAST)
        call(client, "embed_query", "x")
        call(client, "embed_documents", ["y"])
        query, doc = server.api_requests()
        assert query.body["prompt_name"] == "query" and "prompt_name" not in doc.body
        bad = HuggingFaceClient(base_url=server.url, prompt_name="nope", **FAST)
        with pytest.raises(InvalidRequestError, match="remove prompt_name"):
            call(bad, "embed_query", "x")


def test_token_level_output_is_rejected_clearly(hf_server, call):
    client = router(hf_server, "bert-base-uncased")
    with pytest.raises(ResponseFormatError, match="token-level"):
        call(client, "embed_documents", ["x"])


def test_not_served_model_is_model_not_found(call):
    with (
        FakeEmbeddingServer(api_key=HF_KEY, hf_models={E5}) as server,
        pytest.raises(ModelNotFoundError, match="inference=warm"),
    ):
        call(router(server, "someone/private-model"), "embed_query", "x")


def test_router_needs_a_token_but_only_at_first_use(hf_server):
    client = HuggingFaceClient(model=E5, router_url=hf_server.url, **FAST)
    with pytest.raises(Exception, match="HF_TOKEN or HUGGINGFACEHUB_API_TOKEN"):
        client.embed_query("x")
    assert hf_server.requests == []


def test_bad_token_is_authentication_error(hf_server, call):
    client = HuggingFaceClient(model=E5, api_key="hf_wrong", router_url=hf_server.url, **FAST)
    with pytest.raises(AuthenticationError, match="Inference Providers"):
        call(client, "embed_query", "x")


def test_bill_to_header(hf_server):
    router(hf_server, E5, bill_to="my-org").embed_query("x")
    assert hf_server.api_requests()[0].headers["x-hf-bill-to"] == "my-org"


# ---- TEI ------------------------------------------------------------------------------------


def test_tei_reads_info_once_and_caps_batches(call):
    with FakeEmbeddingServer(tei_max_client_batch_size=8) as server:
        client = HuggingFaceClient(base_url=server.url, max_batch_size=100, **FAST)
        texts = [f"text {i}" for i in range(30)]
        vectors = call(client, "embed_documents", texts)
        call(client, "embed_query", "more")
        assert client.model == "sentence-transformers/all-MiniLM-L6-v2"
        assert client.dimension == 384
        np.testing.assert_allclose(vectors, lexical_embedding(texts, 384), atol=1e-6)
        assert [r.path for r in server.requests].count("/info") == 1
        sizes = [len(r.body["inputs"]) for r in server.api_requests("/embed")]
        assert sorted(sizes[:4]) == [6, 8, 8, 8] and max(sizes) <= 8
        assert "authorization" not in server.requests[0].headers  # no key, none needed


def test_tei_with_api_key(call):
    with FakeEmbeddingServer(api_key="tei-secret") as server:
        client = HuggingFaceClient(base_url=server.url, api_key="tei-secret", **FAST)
        assert call(client, "embed_query", "x").shape == (384,)
        with pytest.raises(AuthenticationError):
            call(HuggingFaceClient(base_url=server.url, **FAST), "embed_query", "x")


def test_tei_batch_size_error_names_the_fix(call):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            return httpx.Response(404)
        error = {
            "error": "batch size 40 > maximum allowed batch size 16",
            "error_type": "Validation",
        }
        return httpx.Response(422, json=error)

    client = HuggingFaceClient(
        base_url="http://tei.local", transport=httpx.MockTransport(handler), **FAST
    )
    with pytest.raises(InvalidRequestError, match="max_batch_size=16"):
        call(client, "embed_documents", ["x"] * 40)


def test_tei_input_too_long(call):
    with FakeEmbeddingServer(tei_max_input_length=5) as server:
        client = HuggingFaceClient(base_url=server.url, truncate=False, **FAST)
        with pytest.raises(InputTooLongError, match="truncate=True"):
            call(client, "embed_query", "one two three four five six seven")


def test_tei_env_endpoint(monkeypatch, call):
    with FakeEmbeddingServer() as server:
        monkeypatch.setenv("HF_INFERENCE_ENDPOINT", server.url + "/")
        client = HuggingFaceClient(**FAST)
        assert client.mode == "tei" and client.base_url == server.url
        assert call(client, "embed_query", "x").shape == (384,)


def test_full_feature_extraction_url_is_used_as_is(hf_server, call):
    url = hf_server.router_url("BAAI/bge-m3")
    client = HuggingFaceClient(model="BAAI/bge-m3", base_url=url, api_key=HF_KEY, **FAST)
    assert client.mode == "endpoint"
    assert call(client, "embed_query", "x").shape == (1024,)


def test_tei_serving_a_reranker_is_a_configuration_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"model_id": "BAAI/bge-reranker", "model_type": {"reranker": {}}}
        )

    client = HuggingFaceClient(base_url="http://tei.local", transport=httpx.MockTransport(handler))
    with pytest.raises(ConfigurationError, match="not an embedding model"):
        client.embed_query("x")


# ---- response shapes and errors (MockTransport) -----------------------------------------------


def mock_client(handler, **kwargs) -> HuggingFaceClient:
    return HuggingFaceClient(
        model="acme/tiny-embedder",
        api_key=HF_KEY,
        transport=httpx.MockTransport(handler),
        **FAST,
        **kwargs,
    )


def test_always_sends_a_list_and_accepts_a_flat_vector_for_one_input(call):
    def handler(request: httpx.Request) -> httpx.Response:
        assert isinstance(orjson.loads(request.content)["inputs"], list)
        return httpx.Response(200, json=[0.6, 0.8])

    assert call(mock_client(handler), "embed_query", "x").tolist() == pytest.approx([0.6, 0.8])


def test_wrong_number_of_vectors_is_a_format_error(call):
    client = mock_client(lambda request: httpx.Response(200, json=[[0.1, 0.2]]))
    with pytest.raises(ResponseFormatError, match="1 vectors for 2 inputs"):
        call(client, "embed_documents", ["a", "b"])


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            402,
            {"error": "You have exceeded your monthly included credits"},
            InsufficientBalanceError,
        ),
        (410, {"error": "api-inference.huggingface.co is no longer supported"}, ModelNotFoundError),
        (422, {"error": "Input validation error", "error_type": "Validation"}, InvalidRequestError),
    ],
)
def test_hf_errors_are_mapped_and_not_retried(call, status, body, error):
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    with pytest.raises(error):
        call(mock_client(handler), "embed_query", "x")
    assert len(seen) == 1


def test_hf_503_is_retried(call):
    answers = iter(
        [httpx.Response(503, json={"error": "loading"}), httpx.Response(200, json=[[1.0, 0.0]])]
    )
    assert call(mock_client(lambda request: next(answers)), "embed_query", "x").shape == (2,)


def test_router_requires_a_model():
    with pytest.raises(ConfigurationError, match="model is required"):
        HuggingFaceClient()


def test_client_is_an_embedding_provider():
    assert isinstance(HuggingFaceClient(model=E5), EmbeddingProvider)
