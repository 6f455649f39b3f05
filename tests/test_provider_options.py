"""Provider options across the four embedding adapters: the core's config objects pass
through unchanged, and every adapter rejects an unknown option naming the valid ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tidb_jina import BatchLimits, ConfigurationError, RetryPolicy, Timeouts
from tidb_jina.embeddings import DEFAULT_HF_LIMITS, DEFAULT_JINA_LIMITS

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

import langchain_tidb_jina as lc
import llama_index_tidb_jina as li

KEY = "jina_options_test_key_0123456789"
HF_KEY = "hf_options_test_token_0123456789"
E5 = "intfloat/multilingual-e5-large"

# name -> (build(**options), the core client of what was built)
ADAPTERS: dict[str, tuple[Callable[..., Any], Callable[[Any], Any]]] = {
    "langchain-jina": (lambda **kw: lc.JinaEmbeddings(api_key=KEY, **kw), lambda e: e.client),
    "langchain-hf": (
        lambda **kw: lc.HuggingFaceEndpointEmbeddings(model=E5, api_key=HF_KEY, **kw),
        lambda e: e.client,
    ),
    "llama-index-jina": (lambda **kw: li.JinaEmbedding(api_key=KEY, **kw), lambda e: e.provider),
    "llama-index-hf": (
        lambda **kw: li.HuggingFaceInferenceAPIEmbedding(E5, token=HF_KEY, **kw),
        lambda e: e.provider,
    ),
}


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JINA_API_KEY", "JINAAI_API_KEY", "HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("JINA_API_BASE_URL", "HF_INFERENCE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(params=sorted(ADAPTERS))
def adapter(request: pytest.FixtureRequest) -> tuple[Callable[..., Any], Callable[[Any], Any]]:
    return ADAPTERS[request.param]


def test_unknown_option_is_a_clear_error(adapter: Any) -> None:
    build, _ = adapter
    with pytest.raises(ConfigurationError) as info:
        build(bogus_option=1)
    message = str(info.value)
    assert "unknown option 'bogus_option'" in message
    assert "Valid options:" in message
    assert all(name in message for name in ("retry", "limits", "timeout", "truncate"))


def test_config_objects_reach_the_core_client(adapter: Any) -> None:
    build, core = adapter
    policy = RetryPolicy(max_retries=1, backoff_base=0.01)
    limits = BatchLimits(max_batch_size=7, max_concurrency=2)
    timeouts = Timeouts(read=12.0)
    client = core(build(retry=policy, limits=limits, timeout=timeouts))
    assert client.retry is policy
    assert (client.max_batch_size, client.max_concurrency) == (7, 2)
    assert client.timeouts is timeouts
    # seconds work too, and the flat shorthand builds the same policy
    assert core(build(timeout=5)).timeouts == Timeouts(5.0, 5.0, 5.0, 5.0)
    assert core(build(max_retries=1)).retry == RetryPolicy(max_retries=1)


def test_a_flat_option_with_its_config_object_is_an_error(adapter: Any) -> None:
    build, _ = adapter
    with pytest.raises(ConfigurationError, match="max_retries=2 and retry= both given"):
        build(retry=RetryPolicy(), max_retries=2)


def test_defaults_are_the_providers() -> None:
    assert lc.JinaEmbeddings(api_key=KEY).client.limits == DEFAULT_JINA_LIMITS
    assert lc.HuggingFaceEndpointEmbeddings(model=E5).client.limits == DEFAULT_HF_LIMITS
    # LlamaIndex: embed_batch_size is the request size unless limits says otherwise
    assert li.JinaEmbedding(embed_batch_size=16).provider.max_batch_size == 16
    custom = li.JinaEmbedding(embed_batch_size=16, limits=BatchLimits(max_batch_size=64))
    assert custom.provider.max_batch_size == 64 and custom.embed_batch_size == 16
    assert li.HuggingFaceInferenceAPIEmbedding(E5).provider.limits == DEFAULT_HF_LIMITS


UNIT = [0.6, 0.8] + [0.0] * 1022  # jina-embeddings-v3 and multilingual-e5-large: 1024


def _recording(bodies: list[dict[str, Any]], jina: bool) -> httpx.MockTransport:
    """Records each JSON body and answers like Jina (``data``) or the HF router (lists)."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        texts = body["input"] if jina else body["inputs"]
        if jina:
            data = [{"index": i, "embedding": UNIT} for i in range(len(texts))]
            return httpx.Response(200, json={"data": data})
        return httpx.Response(200, json=[UNIT for _ in texts])

    return httpx.MockTransport(handler)


def test_llama_index_jina_truncate_and_normalized_reach_the_request() -> None:
    with pytest.raises(ConfigurationError, match="bogus_option"):
        li.JinaEmbedding(truncate=False, normalized=False, bogus_option=1)
    bodies: list[dict[str, Any]] = []
    model = li.JinaEmbedding(
        api_key=KEY, truncate=False, normalized=False, transport=_recording(bodies, jina=True)
    )
    assert model.get_query_embedding("q") == pytest.approx(UNIT)
    asyncio.run(model.aget_text_embedding_batch(["a", "b"]))
    assert [(b["truncate"], b["normalized"]) for b in bodies] == [(False, False)] * 2
    assert (model.truncate, model.normalized) == (False, False)  # visible in to_dict()
    assert model.to_dict()["truncate"] is False
    default = li.JinaEmbedding(api_key=KEY, transport=_recording(bodies, jina=True))
    default.get_query_embedding("q")
    assert (bodies[-1]["truncate"], bodies[-1]["normalized"]) == (True, True)


def test_llama_index_hf_truncate_and_normalize_reach_the_request() -> None:
    bodies: list[dict[str, Any]] = []
    model = li.HuggingFaceInferenceAPIEmbedding(
        E5, token=HF_KEY, truncate=False, normalize=False, transport=_recording(bodies, False)
    )
    model.get_text_embedding("tidb")
    assert (bodies[0]["truncate"], bodies[0]["normalize"]) == (False, False)


def test_llama_index_own_fields_are_still_accepted() -> None:
    model = li.JinaEmbedding(
        api_key=KEY, embed_batch_size=8, num_workers=2, callback_manager=None, max_concurrency=3
    )
    assert (model.embed_batch_size, model.num_workers) == (8, 2)
    assert model.provider.max_concurrency == 3
    # BaseEmbedding's own name for the model works as an alias of ``model``
    named = li.JinaEmbedding(model_name="jina-embeddings-v2-base-en", api_key=KEY)
    assert named.provider.model == named.model_name == "jina-embeddings-v2-base-en"
    hf = li.HuggingFaceInferenceAPIEmbedding(E5, num_workers=2, max_retries=0)
    assert hf.num_workers == 2 and hf.provider.max_retries == 0


def test_provider_wrappers_reject_unknown_options() -> None:
    from tidb_jina.testing import LexicalEmbedder

    with pytest.raises(ConfigurationError, match="ProviderEmbedding got unknown option 'dims'"):
        li.ProviderEmbedding(provider=LexicalEmbedder(), dims=8)
    with pytest.raises(ConfigurationError, match="ProviderEmbeddings got unknown option 'dims'"):
        lc.ProviderEmbeddings(provider=LexicalEmbedder(), dims=8)
    assert li.ProviderEmbedding(provider=LexicalEmbedder(), num_workers=2).num_workers == 2


def test_langchain_rerank_takes_the_same_retry_policy() -> None:
    policy = RetryPolicy(max_retries=0)
    reranker = lc.JinaRerank(api_key=KEY, retry=policy, timeout=Timeouts(read=3.0))
    assert reranker.client.retry is policy and reranker.client.timeouts.read == 3.0
    with pytest.raises(ConfigurationError, match="did you mean top_n instead of topn"):
        lc.JinaRerank(api_key=KEY, topn=2)


def test_llama_index_rerank_takes_the_retry_policy_and_rejects_unknown_options() -> None:
    policy = RetryPolicy(max_retries=0)
    reranker = li.JinaRerank(api_key=KEY, retry=policy, timeout=2.5)
    assert reranker._client.retry is policy and reranker._client.timeouts.read == 2.5
    with pytest.raises(ConfigurationError, match="did you mean top_n instead of topn"):
        li.JinaRerank(api_key=KEY, topn=3)
