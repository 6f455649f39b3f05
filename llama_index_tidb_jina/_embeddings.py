"""LlamaIndex ``BaseEmbedding`` adapters over the core embedding clients.

Queries go through ``embed_query`` (the query task / prompt), texts through
``embed_documents`` (the passage task / prompt). LlamaIndex splits a batch into chunks of
``embed_batch_size`` and calls ``_get_text_embeddings`` once per chunk; the client sends
each chunk as one request (split further only past the provider's own limits), with
retries. The sync methods use the client's synchronous HTTP (no ``asyncio.run``), so they
work inside a running event loop (Jupyter, FastAPI); the async ones are native.
API keys live in the client, never in a pydantic field: ``to_dict()``, ``to_json()`` and
``repr()`` cannot show them.
"""

from __future__ import annotations

from typing import Any

import httpx
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager

from tidb_jina import ConfigurationError
from tidb_jina.embeddings import (
    DEFAULT_HF_BATCH_SIZE,
    DEFAULT_JINA_BATCH_SIZE,
    DEFAULT_JINA_MODEL,
    EmbeddingProvider,
    HuggingFaceClient,
    JinaClient,
)

__all__ = ["HuggingFaceInferenceAPIEmbedding", "JinaEmbedding", "ProviderEmbedding"]

# Tasks that name one side of retrieval; given as ``task=`` they mean "retrieval", so
# queries still get the query task (the peer's single-task bug, llama_index #16251).
_RETRIEVAL_TASKS = frozenset({"retrieval.query", "retrieval.passage"})


class ProviderEmbedding(BaseEmbedding):
    """A ``BaseEmbedding`` over any ``tidb_jina.embeddings.EmbeddingProvider``.

    ``ProviderEmbedding(provider=LexicalEmbedder())`` gives offline, deterministic
    embeddings for tests and demos.
    """

    _provider: Any = PrivateAttr()

    def __init__(self, provider: EmbeddingProvider | None = None, **kwargs: Any) -> None:
        if provider is None:
            raise ConfigurationError("ProviderEmbedding needs provider=<an EmbeddingProvider>")
        kwargs.setdefault("model_name", provider.model)
        super().__init__(**kwargs)
        self._provider = provider

    @classmethod
    def class_name(cls) -> str:
        return "TiDBJinaProviderEmbedding"

    @property
    def provider(self) -> EmbeddingProvider:
        """The core client doing the work."""
        return self._provider

    @property
    def dimension(self) -> int | None:
        """The output size when known (None until the first call for unknown models)."""
        return self._provider.dimension

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._provider.embed_query(query).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._provider.aembed_query(query)).tolist()

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._provider.embed_documents(texts).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return (await self._provider.aembed_documents(texts)).tolist()


class JinaEmbedding(ProviderEmbedding):
    """Jina AI embeddings (jina-embeddings-v2 ... v5, clip, code) for LlamaIndex.

    Accepts llama-index-embeddings-jinaai's arguments (``model``, ``api_key``, ``task``,
    ``dimensions``, ``late_chunking``, ``embed_batch_size``). Queries use
    ``retrieval.query`` and texts ``retrieval.passage`` on v3+ by default; ``task=`` a
    retrieval task keeps that split, any other task applies to both sides, and
    ``query_task`` / ``passage_task`` set each side. The key comes from ``api_key``,
    ``JINA_API_KEY`` or ``JINAAI_API_KEY``.
    """

    task: str | None = Field(default=None, description="Jina task for both sides.")
    query_task: str | None = Field(default=None, description="Task for queries.")
    passage_task: str | None = Field(default=None, description="Task for texts.")
    dimensions: int | None = Field(default=None, description="Matryoshka output size.")
    late_chunking: bool = Field(default=False, description="Jina late chunking.")
    base_url: str | None = Field(default=None, description="API base URL.")

    def __init__(
        self,
        model: str = DEFAULT_JINA_MODEL,
        api_key: str | None = None,
        *,
        task: str | None = None,
        query_task: str | None = None,
        passage_task: str | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        embed_batch_size: int = DEFAULT_JINA_BATCH_SIZE,
        base_url: str | None = None,
        encoding_queries: str | None = None,
        encoding_documents: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_concurrency: int | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        _check_float_encoding(encoding_queries, encoding_documents)
        split = task in _RETRIEVAL_TASKS
        client = JinaClient(
            model=model,
            api_key=api_key,
            base_url=base_url,
            task=None if split else task,
            query_task=query_task,
            passage_task=passage_task,
            dimensions=dimensions,
            late_chunking=late_chunking,
            max_batch_size=embed_batch_size,
            transport=transport,
            **_client_options(timeout, max_retries, max_concurrency),
        )
        super().__init__(
            provider=client,
            model_name=model,
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            task=task,
            query_task=client.query_task,
            passage_task=client.passage_task,
            dimensions=dimensions,
            late_chunking=late_chunking,
            base_url=client.base_url,
            **kwargs,
        )

    @classmethod
    def class_name(cls) -> str:
        return "TiDBJinaJinaEmbedding"


class HuggingFaceInferenceAPIEmbedding(ProviderEmbedding):
    """Hugging Face embeddings: the Inference Providers router or a TEI server.

    ``model_name`` (or ``model``) is the Hub id; ``base_url`` a Text Embeddings Inference
    server (self-hosted or an Inference Endpoint); ``router_url`` replaces the Inference
    Providers router. Model prompt conventions (e5
    ``query: ``/``passage: ``, Qwen3's query instruction) are applied per side. The token
    comes from ``token`` / ``api_key``, ``HF_TOKEN`` or ``HUGGINGFACEHUB_API_TOKEN``.
    llama-index-embeddings-huggingface-api's ``model_name``, ``token``,
    ``query_instruction``, ``text_instruction`` and ``embed_batch_size`` are accepted.
    """

    base_url: str | None = Field(default=None, description="TEI / endpoint URL.")
    normalize: bool = Field(default=True, description="Ask the server for unit vectors.")
    query_prefix: str | None = Field(default=None, description="Text put before queries.")
    passage_prefix: str | None = Field(default=None, description="Text put before texts.")

    def __init__(
        self,
        model_name: str | None = None,
        *,
        model: str | None = None,
        token: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        router_url: str | None = None,
        normalize: bool = True,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        query_instruction: str | None = None,
        text_instruction: str | None = None,
        embed_batch_size: int = DEFAULT_HF_BATCH_SIZE,
        timeout: float | None = None,
        max_retries: int | None = None,
        max_concurrency: int | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        # llama-index-embeddings-huggingface-api's instructions: "<instruction> <text>"
        query_prefix = query_prefix or (query_instruction and f"{query_instruction} ")
        passage_prefix = passage_prefix or (text_instruction and f"{text_instruction} ")
        client = HuggingFaceClient(
            model=model_name or model,
            api_key=token or api_key,
            base_url=base_url,
            normalize=normalize,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            max_batch_size=embed_batch_size,
            transport=transport,
            **_client_options(timeout, max_retries, max_concurrency, router_url=router_url),
        )
        super().__init__(
            provider=client,
            model_name=model_name or model or "unknown",
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            base_url=base_url,
            normalize=normalize,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            **kwargs,
        )

    @classmethod
    def class_name(cls) -> str:
        return "TiDBJinaHuggingFaceInferenceAPIEmbedding"


def _client_options(
    timeout: float | None,
    max_retries: int | None,
    max_concurrency: int | None,
    **extra: Any,
) -> dict[str, Any]:
    """Only the options the caller set, so the client's documented defaults apply."""
    options: dict[str, Any] = {
        "timeout": timeout,
        "max_retries": max_retries,
        "max_concurrency": max_concurrency,
        **extra,
    }
    return {k: v for k, v in options.items() if v is not None}


def _check_float_encoding(*encodings: str | None) -> None:
    for encoding in encodings:
        if encoding not in (None, "float"):
            raise ConfigurationError(
                f"encoding {encoding!r} is not supported: binary embeddings cannot be "
                "searched in a float VECTOR column; remove encoding_queries / "
                "encoding_documents (float is the default)"
            )
