"""LangChain's standard vector-store suite, unmodified, on every engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from langchain_tidb_jina import TiDBVectorStore


class TestTiDBVectorStoreStandard(VectorStoreIntegrationTests):
    """Every standard test, none overridden: sync, async and get_by_ids."""

    @pytest.fixture
    def vectorstore(  # type: ignore[override]
        self, make_store: Callable[..., TiDBVectorStore]
    ) -> Iterator[VectorStore]:
        yield make_store(self.get_embeddings())
