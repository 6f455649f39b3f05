"""LangChain's standard embeddings suites, unmodified, against the loopback fake server."""

from __future__ import annotations

from typing import Any

import pytest
from _lc_helpers import API_KEY, E5
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_tidb_jina import HuggingFaceEndpointEmbeddings, JinaEmbeddings
from tidb_jina.testing import FakeEmbeddingServer


class _OnFakeServer:
    """Points ``embedding_model_params`` at the session's fake server."""

    server: FakeEmbeddingServer

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _bind_server(cls, fake_server: FakeEmbeddingServer) -> None:
        cls.server = fake_server


class TestJinaEmbeddingsUnit(_OnFakeServer, EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[JinaEmbeddings]:
        return JinaEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": "jina-embeddings-v3", "api_key": API_KEY, "base_url": self.server.url}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {"JINA_API_KEY": "jina_from_env"},
            {"model_name": "jina-embeddings-v2-base-en"},
            {"api_key": "jina_from_env", "model": "jina-embeddings-v2-base-en"},
        )


class TestJinaEmbeddingsIntegration(_OnFakeServer, EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[JinaEmbeddings]:
        return JinaEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {
            "model": "jina-embeddings-v3",
            "api_key": API_KEY,
            "base_url": self.server.url,
            "dimensions": 64,
        }


class TestHuggingFaceEmbeddingsUnit(_OnFakeServer, EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[HuggingFaceEndpointEmbeddings]:
        return HuggingFaceEndpointEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": E5, "api_key": API_KEY, "base_url": self.server.router_url(E5)}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return ({"HF_TOKEN": "hf_from_env"}, {"repo_id": E5}, {"api_key": "hf_from_env"})


class TestHuggingFaceRouterIntegration(_OnFakeServer, EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[HuggingFaceEndpointEmbeddings]:
        return HuggingFaceEndpointEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": E5, "api_key": API_KEY, "base_url": self.server.router_url(E5)}


class TestHuggingFaceTEIIntegration(_OnFakeServer, EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[HuggingFaceEndpointEmbeddings]:
        return HuggingFaceEndpointEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": self.server.url, "api_key": API_KEY}  # a TEI URL in model=
