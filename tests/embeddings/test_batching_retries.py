"""Batching, bounded concurrency, ordering and retries, over loopback HTTP (sync and async)."""

from __future__ import annotations

import email.utils
import time

import httpx
import numpy as np
import pytest
from _emb_helpers import FAST, KEY
from hypothesis import given
from hypothesis import strategies as st

from tidb_jina import (
    AuthenticationError,
    EmbeddingError,
    InputTooLongError,
    InsufficientBalanceError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ProviderUnavailableError,
    RateLimitError,
    ResponseFormatError,
)
from tidb_jina.embeddings import JinaClient
from tidb_jina.embeddings._base import parse_retry_after
from tidb_jina.embeddings._inputs import plan_batches
from tidb_jina.testing import FakeEmbeddingServer, lexical_embedding


def make(server: FakeEmbeddingServer, **kwargs) -> JinaClient:
    options = {"api_key": KEY, "base_url": server.url, **FAST, **kwargs}
    return JinaClient(**options)


# ---- batching ----------------------------------------------------------------------------


@given(
    st.lists(st.text(min_size=1, max_size=30), max_size=60),
    st.integers(1, 10),
    st.integers(1, 80),
)
def test_plan_batches_covers_everything_in_order_within_limits(texts, max_count, max_chars):
    batches = plan_batches(texts, max_count, max_chars)
    assert [i for start, end in batches for i in range(start, end)] == list(range(len(texts)))
    for start, end in batches:
        assert 1 <= end - start <= max_count
        size = sum(len(t) for t in texts[start:end])
        assert size <= max_chars or end - start == 1  # an oversized text travels alone


def test_batches_by_count_and_by_characters(server, call):
    client = make(server, max_batch_size=4, max_batch_chars=25)
    texts = ["ten chars!"] * 6 + ["x" * 40] + ["short"] * 9
    vectors = call(client, "embed_documents", texts)
    np.testing.assert_allclose(vectors, lexical_embedding(texts, 1024), atol=1e-6)
    sizes = [len(r.body["input"]) for r in server.api_requests()]
    assert sum(sizes) == len(texts) and max(sizes) <= 4
    for request in server.api_requests():
        chars = sum(map(len, request.body["input"]))
        assert chars <= 25 or len(request.body["input"]) == 1


def test_v4_never_sends_more_than_512_inputs(server):
    client = make(server, model="jina-embeddings-v4", max_batch_size=2000, max_batch_chars=10**7)
    client.embed_documents([f"w{i}" for i in range(1100)])
    assert sorted(len(r.body["input"]) for r in server.api_requests()) == [76, 512, 512]


@pytest.mark.parametrize("concurrency", [1, 3, 5])
def test_concurrency_is_bounded_and_used(call, concurrency):
    # 0.2 s per answer: long enough that every worker starts one even on a loaded machine.
    with FakeEmbeddingServer(api_key=KEY, latency_s=0.2) as server:
        client = make(server, max_batch_size=2, max_concurrency=concurrency)
        call(client, "embed_documents", [f"text {i}" for i in range(24)])
        assert server.max_in_flight == concurrency  # threads (sync) or tasks (async)


@pytest.mark.slow
def test_ten_thousand_texts_complete_and_ordered_with_one_in_five_429(call):
    texts = [f"document {i} about topic {i % 97}" for i in range(10_000)]
    with FakeEmbeddingServer(
        api_key=KEY, fail_every=5, latency_s=0.01, max_concurrency=5, shuffle=True
    ) as server:
        # Backoff steps of 10-40 ms (vs 10 ms latency) keep five threads from falling into
        # lockstep, where the same thread would always draw the 5th, failing, slot; and 20
        # retries (not the default 5) let a thread that drew it six times in a row finish
        # (it did once in a CI run on a busy machine: a timing flake, not a client fault).
        client = make(
            server,
            model="jina-embeddings-v3",
            dimensions=32,
            backoff_base=0.02,
            backoff_max=0.1,
            max_retries=20,
        )
        vectors = call(client, "embed_documents", texts)
        statuses = [r.status for r in server.api_requests()]
    assert vectors.shape == (10_000, 32)
    np.testing.assert_allclose(vectors, lexical_embedding(texts, 32), atol=1e-6)
    assert statuses.count(429) >= len(statuses) // 5 - 1
    assert statuses.count(200) == 79  # ceil(10_000 / 128)


# ---- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(server, call, status):
    server.inject(status, status)
    vectors = call(make(server), "embed_documents", ["retry me"])
    assert vectors.shape == (1, 1024)
    assert [r.status for r in server.api_requests()] == [status, status, 200]


def test_dropped_connection_is_retried(server, call):
    server.inject("drop")
    assert call(make(server), "embed_documents", ["still here"]).shape == (1, 1024)
    assert len(server.api_requests()) == 2


def test_timeout_is_retried(server, call):
    server.inject(0.5)  # this answer comes after the client's timeout
    client = make(server, timeout=0.2)
    assert call(client, "embed_documents", ["slow"]).shape == (1, 1024)
    assert len(server.api_requests()) == 2


def test_partial_response_is_retried(server, call):
    server.inject("partial")
    vectors = call(make(server), "embed_documents", ["one", "two", "three"])
    assert vectors.shape == (3, 1024)
    assert len(server.api_requests()) == 2


def test_partial_response_every_time_is_a_response_format_error(server, call):
    server.inject(*["partial"] * 3)
    with pytest.raises(ResponseFormatError, match="2 of 3 embeddings"):
        call(make(server, max_retries=2), "embed_documents", ["one", "two", "three"])


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimitError), (503, ProviderUnavailableError)]
)
def test_retries_give_up_with_a_specific_error(server, call, status, error):
    server.inject(*[status] * 4)
    with pytest.raises(error, match="after 4 attempts") as info:
        call(make(server, max_retries=3), "embed_documents", ["x"])
    assert info.value.status_code == status
    assert len(server.api_requests()) == 4


def test_connection_refused_gives_provider_unavailable(call):
    client = JinaClient(api_key=KEY, base_url="http://127.0.0.1:9", max_retries=1, **FAST)
    with pytest.raises(ProviderUnavailableError, match="check the network"):
        call(client, "embed_documents", ["x"])


def test_retry_after_is_honoured(call):
    with FakeEmbeddingServer(api_key=KEY, retry_after="0.3", faults=[429]) as server:
        started = time.monotonic()
        call(make(server), "embed_documents", ["wait for it"])
        elapsed = time.monotonic() - started
        first, second = server.api_requests()
    assert second.at - first.at >= 0.3
    assert elapsed >= 0.3


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31  # type: ignore[operator]


# ---- no retry on client errors: each status maps to an exception that says what to do -------

JINA_ERRORS = [
    (400, {"detail": "Model 'x' not found", "code": "INPUT_MODEL_NOT_FOUND"}, ModelNotFoundError),
    (401, {"detail": "Invalid API key", "code": "AUTH_INVALID_API_KEY"}, AuthenticationError),
    (402, {"detail": "Payment required"}, InsufficientBalanceError),
    (
        403,
        {"detail": "Insufficient balance", "code": "AUTHZ_INSUFFICIENT_BALANCE"},
        InsufficientBalanceError,
    ),
    (403, {"detail": "Forbidden", "code": "AUTHZ_RESOURCE_LIMIT_EXCEEDED"}, PermissionDeniedError),
    (404, {"detail": "Not Found"}, ModelNotFoundError),
    (410, {"error": "api-inference is no longer supported"}, ModelNotFoundError),
    (413, {"detail": "Payload too large"}, InvalidRequestError),
    (422, {"detail": "Extra inputs are not permitted"}, InvalidRequestError),
    (422, {"detail": "Input is too long: 9000 tokens exceeds 8192"}, InputTooLongError),
    (409, {"detail": "Conflict", "code": "CONFLICT_RESOURCE_BUSY"}, InvalidRequestError),
]

HINTS = {  # what the message tells the user to do, per status
    400: "JINA_MODELS",
    401: "api_key",
    402: "top up",
    403: "top up|permissions",
    404: "JINA_MODELS",
    410: "JINA_MODELS",
    413: "max_batch_chars",
    422: "JINA_MODELS|truncate=True",
    409: "JINA_MODELS",
}


@pytest.mark.parametrize(("status", "body", "error"), JINA_ERRORS)
def test_client_errors_are_not_retried_and_say_what_to_do(call, status, body, error):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    client = JinaClient(api_key=KEY, transport=httpx.MockTransport(handler), **FAST)
    with pytest.raises(error) as info:
        call(client, "embed_documents", ["x"])
    assert type(info.value) is error
    assert isinstance(info.value, EmbeddingError) and info.value.status_code == status
    assert len(seen) == 1
    assert any(hint in str(info.value) for hint in HINTS[status].split("|"))
    assert body.get("code", "") in str(info.value)


def test_non_json_error_body_is_reported(call):
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="Not Found"))
    client = JinaClient(api_key=KEY, transport=transport, **FAST)
    with pytest.raises(ModelNotFoundError, match="404: Not Found"):
        call(client, "embed_query", "x")


def test_success_with_non_json_body_is_a_format_error(call):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>"))
    client = JinaClient(api_key=KEY, transport=transport, **FAST)
    with pytest.raises(ResponseFormatError, match="base URL"):
        call(client, "embed_query", "x")


@pytest.mark.parametrize(
    "data",
    [
        [{"index": 0, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}],
        [{"index": 5, "embedding": [0.1]}, {"index": 0, "embedding": [0.2]}],
        [{"index": 0, "embedding": [0.1]}, {"index": 1, "embedding": [0.2, 0.3]}],
        [{"index": 0, "embedding": {"x": 1}}, {"index": 1, "embedding": [0.2]}],
        [{"index": 0, "embedding": "!!notbase64"}, {"index": 1, "embedding": [0.2]}],
    ],
)
def test_malformed_results_are_format_errors(call, data):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"data": data}))
    client = JinaClient(api_key=KEY, transport=transport, **FAST)
    with pytest.raises(ResponseFormatError):
        call(client, "embed_documents", ["a", "b"])


def test_results_are_reordered_by_index_with_mock_transport(call):
    def handler(request: httpx.Request) -> httpx.Response:
        import orjson

        inputs = orjson.loads(request.content)["input"]
        data = [{"index": i, "embedding": [float(i), 1.0]} for i in range(len(inputs))]
        return httpx.Response(200, json={"data": data[::-1]})

    client = JinaClient(
        api_key=KEY,
        model="acme-x",
        normalized=False,
        transport=httpx.MockTransport(handler),
        max_batch_size=3,
    )
    vectors = call(client, "embed_documents", [f"t{i}" for i in range(7)])
    assert vectors[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_dimension_mismatch_between_batches_is_detected(call):
    sizes = iter([2, 3])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [1.0] * next(sizes)}]})

    client = JinaClient(
        api_key=KEY, model="acme-x", transport=httpx.MockTransport(handler), max_concurrency=1
    )
    call(client, "embed_query", "a")
    with pytest.raises(ResponseFormatError, match="3-dimensional"):
        call(client, "embed_query", "b")
