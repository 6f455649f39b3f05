"""Fixtures for the embedding client tests: a fake server, fast retries, a clean environment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _emb_helpers import KEY

from tidb_jina.testing import FakeEmbeddingServer

_KEY_ENV = (
    "JINA_API_KEY",
    "JINAAI_API_KEY",
    "HF_TOKEN",
    "HUGGINGFACEHUB_API_TOKEN",
    "JINA_API_BASE_URL",
    "HF_INFERENCE_ENDPOINT",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Unit tests never see real keys or endpoints (live tests opt out)."""
    if request.node.get_closest_marker("network"):
        return
    for name in _KEY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(api_key=KEY) as fake:
        yield fake


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def call(mode: str) -> Callable[..., Any]:
    """``call(client, "embed_documents", texts)`` runs the sync method or its async twin."""

    def run(obj: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        if mode == "sync":
            return getattr(obj, method)(*args, **kwargs)
        return asyncio.run(getattr(obj, "a" + method)(*args, **kwargs))

    return run
