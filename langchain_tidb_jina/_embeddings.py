"""LangChain ``Embeddings`` over the core Jina and Hugging Face clients.

``embed_documents`` uses the passage side (Jina ``retrieval.passage``, e5 ``passage: ``),
``embed_query`` the query side; ``aembed_*`` are native async. Batching, retries, timeouts
and error mapping live in the core clients; here the pydantic fields are translated into
client arguments and NumPy arrays into lists of floats.

Constructor arguments of langchain-community's ``JinaEmbeddings`` (``jina_api_key``,
``model_name``) and langchain-huggingface's ``HuggingFaceEndpointEmbeddings`` (``repo_id``,
``huggingfacehub_api_token``) are accepted as aliases of ours. Keys are ``SecretStr``: never
in ``repr`` or serialized output.

Retries, batching and timeouts are the core's config objects, passed through as they are:
``retry=RetryPolicy(...)``, ``limits=BatchLimits(...)``, ``timeout=Timeouts(...)`` or seconds.
The flat ``batch_size``, ``max_concurrency`` and ``max_retries`` fields stay as documented
shorthands; the core rejects one given together with its config object. An unknown argument
is a ``ConfigurationError`` naming the accepted ones.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import httpx
import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.utils import secret_from_env
from pydantic import BaseModel, ConfigDict, Field, InstanceOf, PrivateAttr, SecretStr

from tidb_jina.embeddings import (
    DEFAULT_JINA_MODEL,
    BatchLimits,
    HuggingFaceClient,
    JinaClient,
    RetryPolicy,
    Timeouts,
)
from tidb_jina.embeddings._config import unknown_options_error
from tidb_jina.embeddings._late import GroupedEmbed

__all__ = ["HuggingFaceEndpointEmbeddings", "JinaEmbeddings", "ProviderEmbeddings"]

logger = logging.getLogger("langchain_tidb_jina")

LATE_CHUNKING_KEY = "source"
"""The metadata key whose value names a chunk's document for late chunking (LangChain's
document loaders set ``source``)."""
JINA_KEY_ENV = ["JINA_API_KEY", "JINAAI_API_KEY"]
HF_TOKEN_ENV = ["HF_TOKEN", "HUGGINGFACEHUB_API_TOKEN"]


class _ClientEmbeddings(BaseModel, Embeddings):
    """Shared translation: a core client built once from the fields, arrays to lists."""

    model_config = ConfigDict(
        populate_by_name=True,
        extra="forbid",
        protected_namespaces=(),
        arbitrary_types_allowed=True,
    )

    _client: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        _reject_unknown(type(self), data)
        super().__init__(**data)
        # Built outside pydantic validation so the core's own errors (ConfigurationError,
        # InvalidInputError) reach the caller unwrapped. The client does no I/O here.
        self._client = self._build_client()

    def _build_client(self) -> Any:
        raise NotImplementedError

    @property
    def client(self) -> Any:
        """The core client (``JinaClient`` / ``HuggingFaceClient``)."""
        return self._client

    @property
    def dimension(self) -> int | None:
        """The output size when known without a call (known model or ``dimensions``)."""
        return self._client.dimension

    def close(self) -> None:
        """Close the HTTP connections the client opened (sync)."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the HTTP connections the client opened (sync and this loop's async)."""
        await self._client.aclose()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts as documents (passages)."""
        return _rows(self._embed_texts(texts))

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return self._client.embed_documents(texts)

    async def _aembed_texts(self, texts: list[str]) -> np.ndarray:
        return await self._client.aembed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query."""
        return _row(self._client.embed_query(text))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`."""
        return _rows(await self._aembed_texts(texts))

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return _row(await self._client.aembed_query(text))


class ProviderEmbeddings(_ClientEmbeddings):
    """LangChain ``Embeddings`` over any core ``EmbeddingProvider``.

    >>> from tidb_jina.testing import LexicalEmbedder
    >>> emb = ProviderEmbeddings(provider=LexicalEmbedder())  # offline, deterministic
    """

    provider: Any = Field(exclude=True)

    def _build_client(self) -> Any:
        return self.provider

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

    async def aclose(self) -> None:
        aclose = getattr(self._client, "aclose", None)
        if callable(aclose):
            await aclose()


class _HTTPEmbeddings(_ClientEmbeddings):
    """The HTTP options both providers' clients take, declared once (``retry``, ``limits``,
    ``timeout``, and langchain-community's flat names for three of them)."""

    retry: InstanceOf[RetryPolicy] | None = None
    limits: InstanceOf[BatchLimits] | None = None
    timeout: float | InstanceOf[Timeouts] | InstanceOf[httpx.Timeout] | None = None
    batch_size: int | None = None
    max_concurrency: int | None = None
    max_retries: int | None = None

    def _http_options(self) -> dict[str, Any]:
        return {
            "retry": self.retry,
            "limits": self.limits,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "max_batch_size": self.batch_size,
            "max_concurrency": self.max_concurrency,
        }


class JinaEmbeddings(_HTTPEmbeddings):
    """Jina AI embeddings (``jina-embeddings-v3`` by default).

    >>> emb = JinaEmbeddings(model="jina-embeddings-v3", dimensions=256, api_key="jina_...")
    >>> emb.dimension
    256

    The key comes from ``api_key`` (or ``jina_api_key``), else ``JINA_API_KEY`` /
    ``JINAAI_API_KEY``. ``task`` sets both sides; ``query_task`` / ``passage_task`` one.
    ``retry``, ``limits`` and ``timeout`` take ``tidb_jina.RetryPolicy`` / ``BatchLimits`` /
    ``Timeouts``; ``batch_size`` is ``BatchLimits.max_batch_size``.

    ``late_chunking=True`` embeds the chunks of one document in each other's context, so
    only one document's chunks may share a request. ``TiDBVectorStore.add_documents`` /
    ``add_texts`` group chunks by ``metadata[late_chunking_key]`` (``"source"``, what
    LangChain's loaders set; chunks without it are each a document of their own), and
    ``embed_chunked_documents`` takes the chunks already grouped. ``embed_documents``
    gets a flat list from any vector store, with no document boundaries, so there each
    text is embedded on its own (without late chunking) and a warning says so once.
    """

    model: str = Field(default=DEFAULT_JINA_MODEL, alias="model_name")
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(JINA_KEY_ENV, default=None), alias="jina_api_key"
    )
    base_url: str | None = None
    task: str | None = None
    query_task: str | None = None
    passage_task: str | None = None
    dimensions: int | None = None
    late_chunking: bool = False
    late_chunking_key: str = LATE_CHUNKING_KEY
    normalized: bool = True
    truncate: bool = True

    _warned_flat: bool = PrivateAttr(default=False)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return self._client.embed_documents(texts, late_chunking=self._flat_late())

    async def _aembed_texts(self, texts: list[str]) -> np.ndarray:
        return await self._client.aembed_documents(texts, late_chunking=self._flat_late())

    def _flat_late(self) -> bool | None:
        """A flat list has no document boundaries: no late chunking there (warned once)."""
        if not self.late_chunking:
            return None
        if not self._warned_flat:
            self._warned_flat = True
            logger.warning(
                "JinaEmbeddings(late_chunking=True).embed_documents() cannot tell which texts "
                "belong to one document, so it embeds each text on its own. Use "
                "TiDBVectorStore.add_documents() (chunks grouped by metadata[%r]) or "
                "embed_chunked_documents([[chunk, ...], ...]) for late chunking.",
                self.late_chunking_key,
            )
        return False

    def embed_chunked_documents(self, documents: list[list[str]]) -> list[list[list[float]]]:
        """Late chunking: one list of chunks per document; one list of vectors back per
        document. Only one document's chunks share a request."""
        return [_rows(part) for part in self._client.embed_chunked_documents(documents)]

    async def aembed_chunked_documents(self, documents: list[list[str]]) -> list[list[list[float]]]:
        """Async :meth:`embed_chunked_documents`."""
        parts = await self._client.aembed_chunked_documents(documents)
        return [_rows(part) for part in parts]

    def _build_client(self) -> JinaClient:
        return JinaClient(
            model=self.model,
            api_key=_explicit_key(self),
            base_url=self.base_url,
            task=self.task,
            query_task=self.query_task,
            passage_task=self.passage_task,
            dimensions=self.dimensions,
            late_chunking=self.late_chunking,
            normalized=self.normalized,
            truncate=self.truncate,
            **self._http_options(),
        )


class HuggingFaceEndpointEmbeddings(_HTTPEmbeddings):
    """Hugging Face embeddings: a model id on the Inference Providers router, or a TEI URL.

    >>> HuggingFaceEndpointEmbeddings(model="intfloat/multilingual-e5-large")  # router
    >>> HuggingFaceEndpointEmbeddings(model="http://localhost:8080")  # self-hosted TEI

    The token comes from ``api_key`` (or ``huggingfacehub_api_token``), else ``HF_TOKEN`` /
    ``HUGGINGFACEHUB_API_TOKEN``; a TEI server without ``--api-key`` needs none.
    """

    model: str | None = Field(default=None, alias="repo_id")
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(HF_TOKEN_ENV, default=None),
        alias="huggingfacehub_api_token",
    )
    base_url: str | None = None
    provider: str | None = None
    normalize: bool = True
    truncate: bool = True
    prompt_name: str | None = None
    query_prompt_name: str | None = None
    passage_prompt_name: str | None = None
    query_prefix: str | None = None
    passage_prefix: str | None = None

    def _build_client(self) -> HuggingFaceClient:
        model, base_url = self.model, self.base_url
        if model and model.startswith(("http://", "https://")) and base_url is None:
            model, base_url = None, model  # a URL in model= is an endpoint / TEI server
        options: dict[str, Any] = {"provider": self.provider} if self.provider else {}
        return HuggingFaceClient(
            model=model,
            api_key=_explicit_key(self),
            base_url=base_url,
            normalize=self.normalize,
            truncate=self.truncate,
            prompt_name=self.prompt_name,
            query_prompt_name=self.query_prompt_name,
            passage_prompt_name=self.passage_prompt_name,
            query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix,
            **self._http_options(),
            **options,
        )


def late_chunking_embed(
    embedding: Embeddings | None, metadatas: list[dict[str, Any]] | None
) -> Callable[[list[str]], np.ndarray] | None:
    """For ``TiDBVectorStore.add_texts``: texts -> vectors with each document's chunks
    embedded together (grouped by ``metadata[late_chunking_key]``), or None when
    ``embedding`` does not do late chunking."""
    client = _late_client(embedding)
    if client is None:
        return None
    keys = _document_keys(embedding, metadatas)
    return GroupedEmbed(client.embed_grouped, keys, client.model)


def alate_chunking_embed(
    embedding: Embeddings | None, metadatas: list[dict[str, Any]] | None
) -> Callable[[list[str]], Awaitable[np.ndarray]] | None:
    """Async :func:`late_chunking_embed`."""
    client = _late_client(embedding)
    if client is None:
        return None
    keys = _document_keys(embedding, metadatas)
    return GroupedEmbed(client.aembed_grouped, keys, client.model)


def _late_client(embedding: Embeddings | None) -> JinaClient | None:
    if isinstance(embedding, JinaEmbeddings) and embedding.late_chunking:
        return embedding.client  # type: ignore[no-any-return]
    return None


def _document_keys(
    embedding: Any, metadatas: list[dict[str, Any]] | None
) -> Callable[[int], list[Hashable | None]]:
    key = embedding.late_chunking_key

    def keys(count: int) -> list[Hashable | None]:
        if metadatas is None:
            return [None] * count
        values = [(metadata or {}).get(key) for metadata in metadatas]
        # A key value that cannot be hashed (a list, a dict) names no document we can group.
        return [value if isinstance(value, Hashable) else None for value in values]

    return keys


def _reject_unknown(cls: type[BaseModel], data: dict[str, Any]) -> None:
    """Unknown arguments fail with the list of accepted ones (pydantic's error has none)."""
    valid = {name for name in cls.model_fields} | {
        field.alias for field in cls.model_fields.values() if field.alias
    }
    unknown = [name for name in data if name not in valid]
    if unknown:
        raise unknown_options_error(cls.__name__, unknown, valid)


def _explicit_key(model: BaseModel) -> str | None:
    """``api_key`` when the caller passed it; None when pydantic filled it from the
    environment, so the core applies its rule for environment keys (sent only to the
    provider's own hosts, never to a self-hosted URL)."""
    value = getattr(model, "api_key", None)
    if value is None or "api_key" not in model.model_fields_set:
        return None
    return value.get_secret_value()  # type: ignore[no-any-return]


def _rows(matrix: np.ndarray) -> list[list[float]]:
    return np.asarray(matrix, dtype=np.float64).tolist()


def _row(vector: np.ndarray) -> list[float]:
    return np.asarray(vector, dtype=np.float64).tolist()
