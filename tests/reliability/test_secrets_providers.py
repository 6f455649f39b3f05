"""Issue 13 (provider keys): the API key never leaves through a message, and goes only
where it belongs.

- Answers that echo the request (a 200 whose body is not JSON, a Jina ``index`` or a rerank
  score that is the key, embedding values that are the key, TEI ``/info`` fields) give
  errors, tracebacks, ``repr``/``to_dict`` and log lines without it.
- A key from the environment goes only to the provider's own hosts (or to the base URL in
  the provider's own environment variable); a self-hosted server named in code gets a key
  only when ``api_key=`` is passed, in the core and through the LangChain adapter.
- A key sent over plain http to another machine logs one warning.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from _rel_helpers import FAST, KEY

from tidb_jina import ConfigurationError, MissingAPIKeyError, ResponseFormatError
from tidb_jina.embeddings import HuggingFaceClient, JinaClient
from tidb_jina.testing import FakeEmbeddingServer

HF_KEY = "hf_provider_token_0123456789SECRET"


def assert_clean(text: str, where: str) -> None:
    for secret in (KEY, HF_KEY):
        assert secret not in text, f"key leaked in {where}: {text[:300]}"
        assert secret[:16] not in text, f"part of a key leaked in {where}: {text[:300]}"


def assert_error_clean(exc: BaseException) -> None:
    assert_clean(str(exc), "str(error)")
    assert_clean(repr(exc.args), "error.args")
    shown = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert_clean(shown, "traceback")
    cause = exc.__cause__ or exc.__context__
    while cause is not None:  # attributes of chained errors (e.g. a decoder's .doc) too
        assert_clean(repr(vars(cause)) if hasattr(cause, "__dict__") else "", "cause")
        cause = cause.__cause__ or cause.__context__


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("tidb_jina", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def assert_logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert_clean(record.getMessage(), f"log {record.name}")


def run(mode: str, fn: Callable[[], Any], afn: Callable[[], Any]) -> Any:
    return fn() if mode == "sync" else asyncio.run(afn())


def echoing(body: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    return httpx.MockTransport(body)


def key_of(request: httpx.Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


# ---- answers that echo the key ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("offset", [0, 60, 75])  # the key inside and across the 80-char quote
def test_a_200_whose_body_is_not_json_is_quoted_without_the_key(
    mode: str, offset: int, logs: pytest.LogCaptureFixture
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="x" * offset + f"Bearer {key_of(request)} <html>")

    client = JinaClient(api_key=KEY, transport=echoing(answer), **FAST)
    with pytest.raises(ResponseFormatError) as info:
        run(mode, lambda: client.embed_query("q"), lambda: client.aembed_query("q"))
    assert "not JSON" in str(info.value)
    assert_error_clean(info.value)
    assert_logs_clean(logs)


@pytest.mark.parametrize(
    "item",
    [
        {"index": "KEY", "embedding": [0.1, 0.2]},  # a Jina index that is not an integer
        {"index": 0, "embedding": ["KEY", 0.2]},  # embedding values that are the key
        {"index": 0, "embedding": "KEY"},  # a "base64" embedding that is the key
    ],
)
def test_jina_embedding_fields_that_echo_the_key(item: dict[str, Any], logs: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        echoed = {k: (key_of(request) if v == "KEY" else v) for k, v in item.items()}
        if isinstance(echoed["embedding"], list):
            echoed["embedding"] = [key_of(request) if v == "KEY" else v for v in item["embedding"]]
        return httpx.Response(200, json={"data": [echoed]})

    client = JinaClient(api_key=KEY, model="custom-model", transport=echoing(answer), **FAST)
    with pytest.raises(ResponseFormatError) as info:
        client.embed_documents(["hello"])
    assert_error_clean(info.value)
    assert_logs_clean(logs)


@pytest.mark.parametrize("field", ["index", "relevance_score"])
def test_rerank_fields_that_echo_the_key(field: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        result = {"index": 0, "relevance_score": 0.5, field: key_of(request)}
        return httpx.Response(200, json={"results": [result]})

    client = JinaClient(api_key=KEY, transport=echoing(answer), **FAST)
    with pytest.raises(ResponseFormatError, match="not") as info:
        client.rerank("q", ["a"])
    assert_error_clean(info.value)


def test_tei_info_fields_that_echo_the_key() -> None:
    def not_embedding(request: httpx.Request) -> httpx.Response:
        key = key_of(request)
        return httpx.Response(200, json={"model_id": key, "model_type": {key: {}}})

    tei = HuggingFaceClient(
        base_url="https://tei.example.com", api_key=HF_KEY, transport=echoing(not_embedding)
    )
    with pytest.raises(ConfigurationError) as info:
        tei.embed_documents(["a"])
    assert_error_clean(info.value)

    def embedding(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/info":
            info = {"model_id": f"org/{key_of(request)}", "model_type": {"embedding": {}}}
            return httpx.Response(200, json={**info, "docker_label": key_of(request)})
        return httpx.Response(200, json=[[0.1, 0.2, 0.3]])

    tei = HuggingFaceClient(
        base_url="https://tei.example.com", api_key=HF_KEY, transport=echoing(embedding)
    )
    assert tei.embed_documents(["a"]).shape == (1, 3)
    for text in (repr(tei), str(tei.to_dict()), str(tei.server_info), tei.model):
        assert_clean(text, "TEI client after /info")


# ---- where an environment key may go -----------------------------------------------------------


def recorder() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/info":
            return httpx.Response(200, json={"model_type": {"embedding": {}}})
        if request.url.path.endswith("/embeddings"):
            return httpx.Response(200, json={"data": [{"index": 0, "embedding": [0.6, 0.8]}]})
        return httpx.Response(200, json=[[0.6, 0.8]])

    return seen, httpx.MockTransport(answer)


@pytest.mark.parametrize(
    "url",
    [
        "http://tei.internal:8080",
        "https://tei.example.com",
        "http://127.0.0.1:8080",
        "https://huggingface.co.evil.example",
    ],
)
def test_hf_token_from_the_environment_never_reaches_a_self_hosted_server(
    monkeypatch: pytest.MonkeyPatch, url: str, logs: Any
) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_KEY)
    seen, transport = recorder()
    client = HuggingFaceClient(base_url=url, transport=transport)
    client.embed_documents(["a"])
    assert seen and all("authorization" not in r.headers for r in seen)
    assert any("not sent to" in r.getMessage() for r in logs.records)
    assert_logs_clean(logs)
    # ... nor through the LangChain adapter, whose api_key field the environment fills.
    from langchain_tidb_jina import HuggingFaceEndpointEmbeddings

    seen.clear()
    lc = HuggingFaceEndpointEmbeddings(model=url)
    lc.client._transport = transport  # the same recorder under the adapter's client
    lc.embed_documents(["a"])
    assert seen and all("authorization" not in r.headers for r in seen)


def test_a_self_hosted_server_gets_a_key_passed_explicitly(logs: Any) -> None:
    seen, transport = recorder()
    client = HuggingFaceClient(
        base_url="https://tei.example.com", api_key=HF_KEY, transport=transport
    )
    client.embed_documents(["a"])
    assert {key_of(r) for r in seen} == {HF_KEY}


@pytest.mark.parametrize(
    ("env", "url", "sent"),
    [
        ({}, None, True),  # the router, router.huggingface.co
        ({}, "https://abc.us-east-1.aws.endpoints.huggingface.cloud", True),
        ({}, "https://someone-tei.hf.space", True),  # a Space
        ({"HF_INFERENCE_ENDPOINT": "https://tei.corp.example"}, None, False),  # own server
        ({}, "https://endpoints.huggingface.cloud.evil.example", False),
        ({}, "https://tei.corp.example", False),
    ],
)
def test_hf_token_goes_to_hugging_face_hosts_only(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], url: str | None, sent: bool
) -> None:
    monkeypatch.setenv("HF_TOKEN", HF_KEY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen, transport = recorder()
    client = HuggingFaceClient(model="BAAI/bge-m3", base_url=url, transport=transport)
    client._dimension = None
    client.embed_documents(["a"])
    keys = {key_of(r) for r in seen if r.url.path != "/info"}
    assert keys == ({HF_KEY} if sent else {""})


@pytest.mark.parametrize(
    "url",
    [
        "https://jina-proxy.example.com",
        "https://api.jina.ai.evil.example",
        "https://evil-jina.ai",
        "http://api.jina.ai",  # a Jina host, but not over https
    ],
)
def test_jina_key_from_the_environment_goes_to_jina_only(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("JINA_API_KEY", KEY)
    seen, transport = recorder()
    client = JinaClient(base_url=url, model="custom-model", transport=transport)
    with pytest.raises(MissingAPIKeyError, match="only sent to Jina AI's own hosts") as info:
        client.embed_documents(["a"])
    assert seen == [] and "api_key=" in str(info.value)
    assert_error_clean(info.value)
    # The default host, and the base URL from JINA_API_BASE_URL, do get it.
    for env_url in (None, "https://jina-proxy.example.com"):
        if env_url:
            monkeypatch.setenv("JINA_API_BASE_URL", env_url)
        JinaClient(model="custom-model", transport=transport).embed_documents(["a"])
    assert [key_of(r) for r in seen] == [KEY, KEY]
    assert [r.url.host for r in seen] == ["api.jina.ai", "jina-proxy.example.com"]


def test_langchain_jina_with_an_environment_key_and_a_custom_url_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from langchain_core.documents import Document

    from langchain_tidb_jina import JinaEmbeddings, JinaRerank

    monkeypatch.setenv("JINA_API_KEY", KEY)
    with FakeEmbeddingServer(api_key=KEY) as server:
        embeddings = JinaEmbeddings(base_url=server.url)
        reranker = JinaRerank(base_url=server.url)
        assert embeddings.api_key is not None  # filled from the environment (compatibility)
        with pytest.raises(MissingAPIKeyError):
            embeddings.embed_query("q")
        with pytest.raises(MissingAPIKeyError):
            reranker.compress_documents([Document(page_content="a")], "q")
        assert server.requests == []
        explicit = JinaEmbeddings(api_key=KEY, base_url=server.url)
        assert len(explicit.embed_query("q")) == 1024


# ---- plain http --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://tei.internal:8080", True),
        ("http://10.0.0.7:8080", True),
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8080", False),
        ("http://[::1]:8080", False),
        ("https://tei.internal:8080", False),
    ],
)
def test_a_key_over_plain_http_to_another_machine_warns_once(
    url: str, warned: bool, logs: pytest.LogCaptureFixture
) -> None:
    _, transport = recorder()
    client = HuggingFaceClient(base_url=url, api_key=HF_KEY, transport=transport)
    client.embed_documents(["a"])
    client.embed_documents(["b"])
    warnings = [r for r in logs.records if "plain http" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0)
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert_logs_clean(logs)


def test_no_key_over_plain_http_does_not_warn(logs: pytest.LogCaptureFixture) -> None:
    _, transport = recorder()
    HuggingFaceClient(base_url="http://tei.internal:8080", transport=transport).embed_documents(
        ["a"]
    )
    assert not [r for r in logs.records if "plain http" in r.getMessage()]


@pytest.mark.parametrize("status", [400, 401, 422, 503])
def test_error_answers_whose_code_or_detail_echo_the_key(status: int, logs: Any) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        key = key_of(request)
        return httpx.Response(status, json={"detail": {"message": key}, "code": key})

    client = JinaClient(api_key=KEY, transport=echoing(answer), max_retries=1, **FAST)
    with pytest.raises(Exception) as info:
        client.embed_query("q")
    assert_error_clean(info.value)
    assert_logs_clean(logs)


def test_the_endpoint_in_the_environment_takes_its_own_key_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tei_key = "tei-own-key-0123456789"
    monkeypatch.setenv("HF_TOKEN", HF_KEY)
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT", "https://tei.corp.example")
    monkeypatch.setenv("HF_INFERENCE_ENDPOINT_API_KEY", tei_key)
    seen, transport = recorder()
    HuggingFaceClient(transport=transport).embed_documents(["a"])
    assert {key_of(r) for r in seen} == {tei_key}  # its own key, never HF_TOKEN
    # The variable belongs to that endpoint: a server named in code does not get it.
    seen.clear()
    HuggingFaceClient(base_url="https://other.example", transport=transport).embed_documents(["a"])
    assert {key_of(r) for r in seen} == {""}


def test_doctor_does_not_send_hf_token_to_the_endpoint_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from tidb_jina import doctor

    with FakeEmbeddingServer(api_key=HF_KEY) as tei:  # would accept HF_TOKEN if it came
        monkeypatch.setenv("HF_TOKEN", HF_KEY)
        monkeypatch.setenv("HF_INFERENCE_ENDPOINT", tei.url)
        report = doctor(f"sqlite:///{tmp_path / 'd.db'}")
        assert tei.requests and not any(r.authorized for r in tei.requests)
    assert_clean(str(report), "doctor report")
