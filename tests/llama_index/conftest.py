"""Fixtures for the LlamaIndex adapter tests.

``make_store`` builds ``TiDBVectorStore`` objects on the engine of ``store_url`` (embedded
in memory and in a file always, TiDB when ``TIDB_DATABASE_URL`` answers) and one unique
table, and drops the table in the finalizer. ``embed_model`` is offline and lexical, so
rankings in end-to-end tests are meaningful.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from llama_index_tidb_jina import ProviderEmbedding, TiDBVectorStore
from tidb_jina.store import connect
from tidb_jina.testing import LexicalEmbedder

pytest.importorskip("llama_index.core")

DIM = 64
_KEY_ENV = ("JINA_API_KEY", "JINAAI_API_KEY", "HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN")


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests never see real keys or endpoints."""
    for name in (*_KEY_ENV, "JINA_API_BASE_URL", "HF_INFERENCE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make_store(
    store_url: str, table_name: str
) -> AsyncIterator[Callable[..., TiDBVectorStore]]:
    """Build stores on one engine and one unique table; drop the table afterwards.

    Async so the teardown can close the async pool of the test's event loop.
    """
    created: list[TiDBVectorStore] = []
    shared: dict[str, sa.Engine] = {}

    def factory(**kwargs: Any) -> TiDBVectorStore:
        kwargs.setdefault("table_name", table_name)
        if "connection_string" not in kwargs:
            connection: Any = store_url
            if store_url == "sqlite://":
                # every store of one test must see the same in-memory database
                connection = shared.setdefault("memory", connect(store_url))
            kwargs["connection_string"] = connection
        store = TiDBVectorStore(**kwargs)
        created.append(store)
        return store

    yield factory
    for store in created:
        await store.client.aio.dispose()
        store.drop_vectorstore()
        if store.client.engine is not shared.get("memory"):
            store.client.engine.dispose()


@pytest.fixture
def store(make_store: Callable[..., TiDBVectorStore]) -> TiDBVectorStore:
    return make_store()


@pytest.fixture
def embed_model() -> ProviderEmbedding:
    return ProviderEmbedding(provider=LexicalEmbedder(dimension=DIM))
