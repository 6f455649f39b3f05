"""Issue 17.10: Cloudflare 52x retried with a true message, ``/v1`` base URLs not doubled,
TEI's 401 explained as TEI's, and the retry policy's documented worst case computed."""

from __future__ import annotations

import random
from typing import Any

import pytest
from _emb_helpers import FAST, KEY

from tidb_jina import AuthenticationError, MissingAPIKeyError, ProviderUnavailableError
from tidb_jina.embeddings import (
    DEFAULT_MAX_RETRIES,
    RETRY_STATUSES,
    HuggingFaceClient,
    JinaClient,
    RetryPolicy,
)
from tidb_jina.embeddings._http import _Retry
from tidb_jina.testing import FakeEmbeddingServer


@pytest.mark.parametrize("status", [520, 521, 522, 523, 524, 525, 526, 527])
def test_cloudflare_52x_is_retried(server: FakeEmbeddingServer, call: Any, status: int) -> None:
    assert status in RETRY_STATUSES
    server.inject(status)
    client = JinaClient(api_key=KEY, base_url=server.url, **FAST)
    assert call(client, "embed_documents", ["hello"]).shape == (1, 1024)
    assert [r.status for r in server.api_requests()] == [status, 200]


def test_52x_on_every_attempt_says_so_truthfully(server: FakeEmbeddingServer, call: Any) -> None:
    server.inject(522, 522, 522)
    client = JinaClient(api_key=KEY, base_url=server.url, max_retries=2, **FAST)
    with pytest.raises(ProviderUnavailableError) as info:
        call(client, "embed_documents", ["hello"])
    message = str(info.value)
    assert len(server.api_requests()) == 3
    assert "522" in message and "every attempt" in message and "after 3 attempts" in message


@pytest.mark.parametrize("status", [501, 505])
def test_a_5xx_that_is_not_retried_does_not_claim_it_was(
    server: FakeEmbeddingServer, call: Any, status: int
) -> None:
    server.inject(status)
    client = JinaClient(api_key=KEY, base_url=server.url, **FAST)
    with pytest.raises(ProviderUnavailableError) as info:
        call(client, "embed_documents", ["hello"])
    assert len(server.api_requests()) == 1
    assert "every attempt" not in str(info.value) and "not retried" in str(info.value)


@pytest.mark.parametrize("suffix", ["/v1", "/v1/", "/V1"])
def test_a_base_url_ending_in_v1_is_not_doubled(
    server: FakeEmbeddingServer, call: Any, suffix: str
) -> None:
    client = JinaClient(api_key=KEY, base_url=server.url + suffix)
    assert client.base_url == server.url
    call(client, "embed_documents", ["hello"])
    call(client, "rerank", "hello", ["hello", "world"])
    assert [r.path for r in server.api_requests()] == ["/v1/embeddings", "/v1/rerank"]
    assert {r.status for r in server.api_requests()} == {200}


def test_llama_index_and_langchain_v1_base_urls(server: FakeEmbeddingServer) -> None:
    from langchain_tidb_jina import JinaEmbeddings
    from llama_index_tidb_jina import JinaEmbedding

    li = JinaEmbedding(api_key=KEY, base_url=server.url + "/v1")
    lc = JinaEmbeddings(api_key=KEY, base_url=server.url + "/v1")
    li.get_query_embedding("hello")
    lc.embed_query("hello")
    assert [r.path for r in server.api_requests()] == ["/v1/embeddings"] * 2


def test_tei_401_points_at_the_servers_own_key_not_a_hugging_face_token(call: Any) -> None:
    with FakeEmbeddingServer(api_key="tei-secret") as tei:
        for key in ("wrong-key", None):
            client = HuggingFaceClient(base_url=tei.url, api_key=key, **FAST)
            with pytest.raises(AuthenticationError) as info:
                call(client, "embed_documents", ["hello"])
            message = str(info.value)
            assert "--api-key" in message
            assert "huggingface.co/settings/tokens" not in message
            assert "Inference Providers" not in message
        # The router's 401 still says how to get a Hugging Face token.
        router = HuggingFaceClient(model="BAAI/bge-m3", router_url=tei.url, api_key="hf_bad")
        with pytest.raises(AuthenticationError, match=r"huggingface\.co/settings/tokens"):
            call(router, "embed_documents", ["hello"])


def test_the_documented_worst_case_wait_is_the_real_one(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RetryPolicy().worst_case_wait() == 15.5  # DEFAULT_MAX_RETRIES' docstring
    assert RetryPolicy().max_retries == DEFAULT_MAX_RETRIES
    monkeypatch.setattr(random, "uniform", lambda low, high: high)  # every jitter at its top
    client = JinaClient(api_key=KEY)
    error = ProviderUnavailableError("x")
    for retry_after, expected in (
        (None, 15.5),
        (1000.0, RetryPolicy().worst_case_wait(retry_after=True)),
    ):
        waits = [client._next_delay(n, _Retry(error, retry_after)) for n in range(5)]
        assert sum(waits) == pytest.approx(expected)
        with pytest.raises(ProviderUnavailableError):
            client._next_delay(5, _Retry(error, retry_after))
    assert RetryPolicy().worst_case_wait(retry_after=True) == pytest.approx(5 * 120 + 15.5 / 4)


def test_no_key_for_a_custom_jina_url_explains_the_environment_rule(
    server: FakeEmbeddingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_API_KEY", KEY)
    client = JinaClient(base_url=server.url)
    with pytest.raises(MissingAPIKeyError, match="only sent to Jina AI's own hosts"):
        client.embed_query("x")
    assert server.requests == []


def test_an_error_detail_ending_in_a_period_reads_as_one_sentence(
    server: FakeEmbeddingServer,
) -> None:
    from tidb_jina import InputTooLongError

    client = JinaClient(api_key=KEY, base_url=server.url, truncate=False, **FAST)
    with pytest.raises(InputTooLongError) as info:
        client.embed_documents(["word " * 9000])
    message = str(info.value)
    assert "or shorter inputs. pass truncate=True" in message
    assert ".." not in message
