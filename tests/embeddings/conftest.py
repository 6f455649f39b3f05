"""Fixtures for the embedding client tests: a fake server, fast retries, a clean environment."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _emb_helpers import KEY

from tidb_jina.testing import FakeEmbeddingServer


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """Unit tests never see real keys or endpoints (the root ``clean_env``; live tests,
    marked ``network``, opt out)."""


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
