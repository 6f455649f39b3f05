"""Fixtures for the LangChain adapter tests.

``make_store`` builds ``TiDBVectorStore`` objects on one unique table of the engine chosen by
the root ``store_url`` fixture (embedded in memory, embedded file, and TiDB when
``TIDB_DATABASE_URL`` answers) and drops the table in the finalizer. ``fake_server`` is the
loopback Jina / HF / TEI server; no test here touches the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from _lc_helpers import API_KEY, DIMENSION
from langchain_core.embeddings import Embeddings

from langchain_tidb_jina import JinaEmbeddings, TiDBVectorStore
from tidb_jina.store import VectorTable
from tidb_jina.testing import FakeEmbeddingServer


@pytest.fixture(autouse=True)
def _clean_env(clean_env: None) -> None:
    """No real key or endpoint from the environment reaches these tests (root fixture)."""


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def store_kwargs(store_connection: str | sa.Engine, table_name: str) -> Iterator[dict[str, Any]]:
    """Constructor arguments for one unique table on this engine; dropped afterwards."""
    where: dict[str, Any] = (
        {"engine": store_connection}
        if isinstance(store_connection, sa.Engine)
        else {"connection_string": store_connection}
    )
    yield {**where, "table_name": table_name}
    table = VectorTable(store_connection, table_name=table_name)
    table.drop()
    table.close()


@pytest.fixture
async def make_store(store_kwargs: dict[str, Any]) -> AsyncIterator[Callable[..., TiDBVectorStore]]:
    """``make_store(embedding, **kwargs)``: a store on this test's table.

    Async so that teardown runs on the test's event loop and closes the async pools.
    """
    stores: list[TiDBVectorStore] = []

    def factory(embedding: Embeddings, **kwargs: Any) -> TiDBVectorStore:
        store = TiDBVectorStore(embedding=embedding, **{**store_kwargs, **kwargs})
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.aclose()
        if "engine" not in store_kwargs:  # each URL store owns its engine
            store.vector_table.engine.dispose()


@pytest.fixture
async def jina(fake_server: FakeEmbeddingServer) -> AsyncIterator[JinaEmbeddings]:
    """Jina v3 embeddings (64 dimensions) served by the fake server over loopback HTTP."""
    embeddings = JinaEmbeddings(api_key=API_KEY, base_url=fake_server.url, dimensions=DIMENSION)
    yield embeddings
    await embeddings.aclose()
