"""RetryPolicy, BatchLimits and Timeouts: validated once, shared by both clients."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, get_type_hints

import httpx
import pytest
from _emb_helpers import HF_KEY, KEY

from tidb_jina import BatchLimits, ConfigurationError, RetryPolicy, Timeouts
from tidb_jina.embeddings import (
    CLIENT_OPTIONS,
    DEFAULT_HF_LIMITS,
    DEFAULT_JINA_LIMITS,
    ClientOptions,
    HuggingFaceClient,
    JinaClient,
)

CLIENTS = {
    "jina": lambda **kw: JinaClient(api_key=KEY, **kw),
    "hf": lambda **kw: HuggingFaceClient(model="BAAI/bge-m3", api_key=HF_KEY, **kw),
}
DEFAULTS = {"jina": DEFAULT_JINA_LIMITS, "hf": DEFAULT_HF_LIMITS}


@pytest.fixture(params=sorted(CLIENTS))
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


def test_flat_options_are_exactly_the_config_fields() -> None:
    fields = [f.name for cls in (RetryPolicy, BatchLimits) for f in dataclasses.fields(cls)]
    assert list(CLIENT_OPTIONS) == fields
    assert list(get_type_hints(ClientOptions)) == fields


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: RetryPolicy(max_retries=-1), r"RetryPolicy.max_retries must be an int >= 0"),
        (lambda: RetryPolicy(max_retries=True), "max_retries"),
        (lambda: RetryPolicy(max_retries=1.5), "max_retries"),  # type: ignore[arg-type]
        (lambda: RetryPolicy(backoff_base=-0.1), r"RetryPolicy.backoff_base must be seconds"),
        (lambda: RetryPolicy(backoff_max=math.nan), "backoff_max"),
        (lambda: RetryPolicy(max_retry_after=math.inf), "max_retry_after"),
        (lambda: BatchLimits(max_batch_size=0), r"BatchLimits.max_batch_size must be an int >= 1"),
        (lambda: BatchLimits(max_concurrency=-2), "or None for the default"),
        (lambda: BatchLimits(max_batch_chars="10"), "max_batch_chars"),  # type: ignore[arg-type]
        (lambda: Timeouts(read=0), r"Timeouts.read must be seconds > 0 or None for no limit"),
        (lambda: Timeouts(connect=-1), "connect"),
        (lambda: Timeouts(pool=math.nan), "pool"),
        (lambda: Timeouts.of("30s"), "timeout must be seconds"),  # type: ignore[arg-type]
    ],
)
def test_config_objects_validate_their_values(build: Any, needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        build()


def test_config_objects_are_frozen_and_comparable() -> None:
    policy = RetryPolicy(max_retries=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.max_retries = 3  # type: ignore[misc]
    assert policy == RetryPolicy(max_retries=2) and hash(policy) == hash(RetryPolicy(2))
    assert Timeouts.of(5) == Timeouts(5.0, 5.0, 5.0, 5.0)
    assert Timeouts.of(httpx.Timeout(3.0, connect=1.0)) == Timeouts(1.0, 3.0, 3.0, 3.0)
    assert Timeouts.of(None) == Timeouts() and Timeouts().to_httpx() == httpx.Timeout(
        60, connect=10
    )
    assert BatchLimits(max_batch_size=3).over(DEFAULT_JINA_LIMITS) == BatchLimits(3, 200_000, 5)


def test_clients_take_the_config_objects(provider: str) -> None:
    policy = RetryPolicy(max_retries=1, backoff_base=0.25)
    client = CLIENTS[provider](
        retry=policy, limits=BatchLimits(max_concurrency=2), timeout=Timeouts(read=7.0)
    )
    assert client.retry is policy
    assert (client.max_retries, client.backoff_base) == (1, 0.25)
    defaults = DEFAULTS[provider]
    assert client.limits == dataclasses.replace(defaults, max_concurrency=2)
    assert client.max_batch_size == defaults.max_batch_size and client.max_concurrency == 2
    assert client.timeouts == Timeouts(read=7.0)
    assert client.timeout == httpx.Timeout(60.0, connect=10.0, read=7.0)


def test_flat_options_build_the_same_config_objects(provider: str) -> None:
    client = CLIENTS[provider](
        max_retries=2, backoff_base=0.1, max_batch_size=3, max_concurrency=None, timeout=4
    )
    assert client.retry == RetryPolicy(max_retries=2, backoff_base=0.1)
    assert client.limits == dataclasses.replace(DEFAULTS[provider], max_batch_size=3)
    assert client.timeouts == Timeouts(4.0, 4.0, 4.0, 4.0)
    assert CLIENTS[provider]().retry == RetryPolicy()  # defaults: one declaration


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"retry": RetryPolicy(), "max_retries": 1}, r"max_retries=1 and retry= both given"),
        ({"retry": RetryPolicy(), "backoff_max": 1.0}, r"RetryPolicy\(backoff_max=1.0, \.\.\.\)"),
        ({"limits": BatchLimits(), "max_batch_size": 8}, "max_batch_size=8 and limits="),
    ],
)
def test_a_flat_option_and_its_config_object_together_is_an_error(
    provider: str, options: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        CLIENTS[provider](**options)


def test_unknown_options_and_wrong_types_are_clear_errors(provider: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CLIENTS[provider](max_retry=3, bogus_option=1)
    message = str(info.value)
    assert "unknown options 'bogus_option', 'max_retry'" in message
    assert "did you mean max_retries instead of max_retry" in message
    assert "Valid options:" in message and "limits" in message and "api_key" in message
    with pytest.raises(ConfigurationError, match=r"retry= must be a tidb_jina.RetryPolicy"):
        CLIENTS[provider](retry={"max_retries": 1})
    with pytest.raises(ConfigurationError, match=r"limits= must be a tidb_jina.BatchLimits"):
        CLIENTS[provider](limits=RetryPolicy())


def _counting_transport(status: int, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if status != 200:
            return httpx.Response(status, json={"detail": "busy"})
        n = len(json.loads(request.content)["input"])
        return httpx.Response(
            200, json={"data": [{"index": i, "embedding": [1.0, 0.0]} for i in range(n)]}
        )

    return httpx.MockTransport(handler)


def test_the_policy_governs_retries_batches_and_timeouts(call: Any) -> None:
    seen: list[httpx.Request] = []
    fast = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_max=0.002)
    failing = JinaClient(api_key=KEY, transport=_counting_transport(503, seen), retry=fast)
    with pytest.raises(Exception, match="gave up after 3 attempts"):
        call(failing, "embed_documents", ["x"])
    assert len(seen) == 3

    seen.clear()
    client = JinaClient(
        api_key=KEY,
        model="acme-embed",  # unknown model: dimension learned from the answer
        transport=_counting_transport(200, seen),
        limits=BatchLimits(max_batch_size=2, max_concurrency=1),
        timeout=Timeouts(connect=1.5, read=9.0),
    )
    matrix = call(client, "embed_documents", ["a", "b", "c", "d", "e"])
    assert matrix.shape == (5, 2) and str(matrix.dtype) == "float32"
    assert [len(json.loads(r.content)["input"]) for r in seen] == [2, 2, 1]
    assert seen[0].extensions["timeout"] == {
        "connect": 1.5,
        "read": 9.0,
        "write": 60.0,
        "pool": 60.0,
    }
