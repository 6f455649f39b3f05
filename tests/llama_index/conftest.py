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
from tidb_jina.testing import LexicalEmbedder

pytest.importorskip("llama_index.core")

DIM = 64


@pytest.fixture(autouse=True)
def _no_real_keys(clean_env: None) -> None:
    """These tests never see real keys or endpoints (the root ``clean_env``)."""


@pytest.fixture
async def make_store(
    store_connection: str | sa.Engine, table_name: str
) -> AsyncIterator[Callable[..., TiDBVectorStore]]:
    """Build stores on one engine and one unique table; drop the table afterwards.

    Async so the teardown can close the async pool of the test's event loop.
    """
    created: list[TiDBVectorStore] = []

    def factory(**kwargs: Any) -> TiDBVectorStore:
        kwargs.setdefault("table_name", table_name)
        kwargs.setdefault("connection_string", store_connection)
        store = TiDBVectorStore(**kwargs)
        created.append(store)
        return store

    yield factory
    for store in created:
        await store.client.aio.dispose()
        store.drop_vectorstore()
        if store.client.engine is not store_connection:
            store.client.engine.dispose()


@pytest.fixture
def store(make_store: Callable[..., TiDBVectorStore]) -> TiDBVectorStore:
    return make_store()


@pytest.fixture
def embed_model() -> ProviderEmbedding:
    return ProviderEmbedding(provider=LexicalEmbedder(dimension=DIM))
