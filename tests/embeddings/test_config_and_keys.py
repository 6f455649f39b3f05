"""Configuration from arguments and environment, key hygiene, input validation, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import pickle

import httpx
import pytest
from _emb_helpers import FAST, HF_KEY, KEY

from tidb_jina import AuthenticationError, InvalidInputError, MissingAPIKeyError, RateLimitError
from tidb_jina.embeddings import HuggingFaceClient, JinaClient
from tidb_jina.testing import FakeEmbeddingServer


@pytest.mark.parametrize("env", ["JINA_API_KEY", "JINAAI_API_KEY"])
def test_jina_key_from_environment(monkeypatch, server, env):
    # An environment key goes to Jina's hosts or to the environment's own base URL only.
    monkeypatch.setenv(env, KEY)
    monkeypatch.setenv("JINA_API_BASE_URL", server.url)
    client = JinaClient()
    assert client.embed_query("x").shape == (1024,)
    assert server.requests[0].authorized


@pytest.mark.parametrize("env", ["HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN"])
def test_hf_token_from_environment(monkeypatch, env):
    with FakeEmbeddingServer(api_key=HF_KEY) as server:
        monkeypatch.setenv(env, HF_KEY)
        # An environment token goes to Hugging Face hosts only: the router here.
        client = HuggingFaceClient(model="BAAI/bge-m3")
        assert client.base_url == "https://router.huggingface.co/hf-inference"
        assert client._api_key() is not None and client._api_key().get() == HF_KEY
        # Not to a server named in HF_INFERENCE_ENDPOINT: that one needs api_key=.
        monkeypatch.setenv("HF_INFERENCE_ENDPOINT", server.router_url("BAAI/bge-m3"))
        with pytest.raises(MissingAPIKeyError, match="only sent to Hugging Face's own hosts"):
            HuggingFaceClient(model="BAAI/bge-m3").embed_query("x")
        assert server.requests == []


def test_key_set_in_env_after_construction_is_used(monkeypatch, server):
    monkeypatch.setenv("JINA_API_BASE_URL", server.url)
    client = JinaClient()
    monkeypatch.setenv("JINA_API_KEY", KEY)
    assert client.embed_query("x").shape == (1024,)


def test_base_url_from_environment(monkeypatch, server):
    monkeypatch.setenv("JINA_API_BASE_URL", server.url + "/")
    client = JinaClient(api_key=KEY)
    assert client.base_url == server.url
    client.embed_query("x")
    assert len(server.requests) == 1


def test_missing_key_is_a_clear_error_at_first_use_not_bearer_none(server, call):
    client = JinaClient(base_url=server.url)  # constructing is fine
    with pytest.raises(MissingAPIKeyError, match="JINA_API_KEY or JINAAI_API_KEY"):
        call(client, "embed_documents", ["x"])
    with pytest.raises(MissingAPIKeyError):
        call(client, "rerank", "q", ["d"])
    assert server.requests == []


def test_wrong_key_is_authentication_error(server, call):
    client = JinaClient(api_key="jina_wrong", base_url=server.url, **FAST)
    with pytest.raises(AuthenticationError, match="AUTH_INVALID_API_KEY"):
        call(client, "embed_documents", ["x"])
    assert len(server.requests) == 1  # not retried


def test_key_never_appears_in_repr_str_config_pickle_logs_or_errors(caplog, monkeypatch):
    secret = "jina_SUPERSECRET_do_not_leak_0123456789"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {secret}"
        # A hostile server echoing the key back must not get it into our messages.
        return httpx.Response(429, json={"detail": f"slow down {secret}"})

    client = JinaClient(
        api_key=secret, transport=httpx.MockTransport(handler), max_retries=2, **FAST
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RateLimitError) as info:
        client.embed_documents(["x"])
    texts = [
        repr(client),
        str(client),
        str(client.to_dict()),
        str(info.value),
        repr(info.value),
        caplog.text,
        repr(client._key),
        f"{client._key}",
    ]
    for text in texts:
        assert secret not in text
    assert "**********" in repr(client)
    with pytest.raises(TypeError, match="not serialized"):
        pickle.dumps(client._key)

    monkeypatch.setenv("HF_TOKEN", secret)
    hf = HuggingFaceClient(model="BAAI/bge-m3")
    hf._api_key()
    assert secret not in repr(hf) and secret not in str(hf.to_dict())


@pytest.mark.parametrize(
    ("texts", "needle"),
    [
        (["ok", ""], r"texts\[1\] is empty"),
        (["ok", "ok", "   \n"], r"texts\[2\] is empty"),
        (["ok", None], r"texts\[1\] is None"),
        ([3], r"texts\[0\] is a int"),
        ("a single string", "wrap it in a list"),
    ],
)
def test_bad_inputs_fail_before_any_request(server, call, texts, needle):
    client = JinaClient(api_key=KEY, base_url=server.url)
    with pytest.raises(InvalidInputError, match=needle):
        call(client, "embed_documents", texts)
    with pytest.raises(InvalidInputError):
        call(client, "embed_query", "  ")
    assert server.requests == []


def test_injected_clients_are_used_and_left_open(server):
    sync_client = httpx.Client()
    async_client = httpx.AsyncClient()
    client = JinaClient(
        api_key=KEY, base_url=server.url, http_client=sync_client, async_http_client=async_client
    )

    async def both() -> None:
        async with client:
            await client.aembed_query("async")
        assert not async_client.is_closed
        await async_client.aclose()

    with client:
        client.embed_query("sync")
    assert not sync_client.is_closed
    asyncio.run(both())
    sync_client.close()
    assert len(server.requests) == 2


def test_async_client_survives_several_event_loops(server):
    client = JinaClient(api_key=KEY, base_url=server.url)
    for _ in range(3):  # e.g. a notebook calling asyncio.run() per cell
        assert asyncio.run(client.aembed_query("x")).shape == (1024,)
    client.close()


async def test_async_context_manager_closes_owned_clients(server):
    async with JinaClient(api_key=KEY, base_url=server.url) as client:
        await client.aembed_documents(["a", "b"])
        client.embed_documents(["c"])
        owned_async, owned_sync = client._owned_async_client, client._owned_client
    assert owned_async is not None and owned_async.is_closed
    assert owned_sync is not None and owned_sync.is_closed


def test_constructors_do_no_io():
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    transport = httpx.MockTransport(handler)
    JinaClient(transport=transport)
    HuggingFaceClient(base_url="http://tei.local", transport=transport)


def test_timeout_is_configurable():
    assert JinaClient(timeout=3.5).timeout == httpx.Timeout(3.5)
    assert HuggingFaceClient(model="m", timeout=httpx.Timeout(2.0)).timeout.read == 2.0
