"""LlamaIndex ``BaseEmbedding`` adapters over the core embedding clients.

Queries go through ``embed_query`` (the query task / prompt), texts through
``embed_documents`` (the passage task / prompt); several queries aggregated into one
(``get_agg_embedding_from_queries``) through ``tidb_jina.embeddings.embed_queries``.
LlamaIndex splits a batch into chunks of ``embed_batch_size`` and calls
``_get_text_embeddings`` once per chunk; the client sends
each chunk as one request (split further only past the provider's own limits), with
retries. The sync methods use the client's synchronous HTTP (no ``asyncio.run``), so they
work inside a running event loop (Jupyter, FastAPI); the async ones are native.
API keys live in the client, never in a pydantic field: ``to_dict()``, ``to_json()`` and
``repr()`` cannot show them.

Retries, batching and timeouts are the core's config objects, passed through as they are
(``retry=RetryPolicy(...)``, ``limits=BatchLimits(...)``, ``timeout=Timeouts(...)`` or
seconds), and the core's flat spellings (``max_retries=``, ``max_concurrency=``, ...) go to
the client too. llama-index's own fields (``embed_batch_size``, ``num_workers``,
``callback_manager``, ...) stay accepted; any other argument is a ``ConfigurationError``
naming the accepted ones, where ``BaseEmbedding`` alone would drop it silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

import httpx
from llama_index.core.base.embeddings.base import BaseEmbedding, mean_agg
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import BaseNode, MetadataMode

from tidb_jina import ConfigurationError
from tidb_jina.embeddings import (
    CLIENT_OPTIONS,
    DEFAULT_HF_BATCH_SIZE,
    DEFAULT_JINA_BATCH_SIZE,
    DEFAULT_JINA_MODEL,
    BatchLimits,
    ClientOptions,
    EmbeddingProvider,
    HuggingFaceClient,
    JinaClient,
    RetryPolicy,
    TimeoutLike,
    aembed_queries,
    embed_queries,
)
from tidb_jina.embeddings._config import named_parameters, unknown_options_error

__all__ = ["HuggingFaceInferenceAPIEmbedding", "JinaEmbedding", "ProviderEmbedding"]

logger = logging.getLogger("llama_index_tidb_jina")
_dispatcher = get_dispatcher(__name__)

# Tasks that name one side of retrieval; given as ``task=`` they mean "retrieval", so
# queries still get the query task (the peer's single-task bug, llama_index #16251).
_RETRIEVAL_TASKS = frozenset({"retrieval.query", "retrieval.passage"})
# llama-index's own BaseEmbedding fields: model_name, embed_batch_size, num_workers, ...
_LLAMA_FIELDS = tuple(BaseEmbedding.model_fields)


class ProviderEmbedding(BaseEmbedding):
    """A ``BaseEmbedding`` over any ``tidb_jina.embeddings.EmbeddingProvider``.

    ``ProviderEmbedding(provider=LexicalEmbedder())`` gives offline, deterministic
    embeddings for tests and demos.
    """

    _provider: Any = PrivateAttr()

    def __init__(self, provider: EmbeddingProvider | None = None, **kwargs: Any) -> None:
        if provider is None:
            raise ConfigurationError("ProviderEmbedding needs provider=<an EmbeddingProvider>")
        fields = type(self).model_fields
        unknown = [name for name in kwargs if name not in fields]
        if unknown:
            raise unknown_options_error(type(self).__name__, unknown, ["provider", *fields])
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

    def get_agg_embedding_from_queries(
        self, queries: list[str], agg_fn: Callable[..., list[float]] | None = None
    ) -> list[float]:
        """llama-index's aggregate of several query embeddings (``VectorIndexRetriever``
        with a ``QueryBundle`` of several ``embedding_strs``, e.g. HyDE), the queries
        embedded in one ``embed_queries`` call (one request per batch) instead of one
        request each. Same vectors, same aggregate, and the same events: one embedding
        event per query carrying that query and its vector, as ``get_query_embedding``
        emits them (the first one spans the request)."""
        if not self._batches_queries(queries, asynchronous=False):
            return super().get_agg_embedding_from_queries(queries, agg_fn)
        if self.rate_limiter is not None:
            self.rate_limiter.acquire()
        with _query_events(self, list(queries)) as done:
            rows = done(embed_queries(self._provider, queries))
        return (agg_fn or mean_agg)(rows)

    async def aget_agg_embedding_from_queries(
        self, queries: list[str], agg_fn: Callable[..., list[float]] | None = None
    ) -> list[float]:
        """Async :meth:`get_agg_embedding_from_queries`."""
        if not self._batches_queries(queries, asynchronous=True):
            return await super().aget_agg_embedding_from_queries(queries, agg_fn)
        if self.rate_limiter is not None:
            await self.rate_limiter.async_acquire()
        with _query_events(self, list(queries)) as done:
            rows = done(await aembed_queries(self._provider, queries))
        return (agg_fn or mean_agg)(rows)

    def _batches_queries(self, queries: Sequence[str], *, asynchronous: bool) -> bool:
        """True when one batch call gives what llama-index's per-query loop gives: two or
        more queries, no embeddings cache (it is keyed per query), and neither query
        method overridden by a subclass (its override must run)."""
        if len(queries) < 2 or self.embeddings_cache:
            return False
        if not all(_embeddable(q) for q in queries):
            return False  # the loop raises its own error, in that query's own event
        public, own = (
            ("aget_query_embedding", "_aget_query_embedding")
            if asynchronous
            else ("get_query_embedding", "_get_query_embedding")
        )
        # Compared by defining class: llama-index's instrumentation wraps these methods in
        # descriptors that give a new object on every attribute access.
        return _definer(type(self), public) is BaseEmbedding and (
            _definer(type(self), own) is ProviderEmbedding
        )

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
    ``query_task`` / ``passage_task`` set each side. ``truncate`` and ``normalized`` are
    Jina's request fields. The key comes from ``api_key``, ``JINA_API_KEY`` or
    ``JINAAI_API_KEY``. ``embed_batch_size`` is also the client's request size unless
    ``limits`` / ``max_batch_size`` says otherwise.

    ``late_chunking=True`` needs document boundaries: used as a transformation
    (``embed_model(nodes)``, ``IngestionPipeline``, ``from_documents(transformations=
    [splitter, embed_model])``) it embeds the nodes of each ``ref_doc_id`` together, window
    by window within the model's context. Called with bare texts (``VectorStoreIndex``'s
    own embedding step, ``get_text_embedding_batch``) it cannot know them, so it embeds
    each text on its own and warns once.
    """

    task: str | None = Field(default=None, description="Jina task for both sides.")
    query_task: str | None = Field(default=None, description="Task for queries.")
    passage_task: str | None = Field(default=None, description="Task for texts.")
    dimensions: int | None = Field(default=None, description="Matryoshka output size.")
    late_chunking: bool = Field(default=False, description="Jina late chunking.")
    truncate: bool = Field(default=True, description="Cut over-long inputs, not fail.")
    normalized: bool = Field(default=True, description="Ask Jina for unit vectors.")
    base_url: str | None = Field(default=None, description="API base URL.")

    _warned_flat: bool = PrivateAttr(default=False)

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
        truncate: bool = True,
        normalized: bool = True,
        embed_batch_size: int = DEFAULT_JINA_BATCH_SIZE,
        base_url: str | None = None,
        encoding_queries: str | None = None,
        encoding_documents: str | None = None,
        retry: RetryPolicy | None = None,
        limits: BatchLimits | None = None,
        timeout: TimeoutLike = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        _check_float_encoding(encoding_queries, encoding_documents)
        options, llama = _split_options(type(self), kwargs)
        model = llama.pop("model_name", None) or model  # BaseEmbedding's name for it
        limits = _default_batch_size(limits, options, embed_batch_size)
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
            truncate=truncate,
            normalized=normalized,
            retry=retry,
            limits=limits,
            timeout=timeout,
            transport=transport,
            **options,
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
            truncate=truncate,
            normalized=normalized,
            base_url=client.base_url,
            **llama,
        )

    @classmethod
    def class_name(cls) -> str:
        return "TiDBJinaJinaEmbedding"

    # ---- late chunking: nodes of one document together ------------------------------------

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """As a transformation (``IngestionPipeline``, ``from_documents(transformations=
        [splitter, embed_model])``): with late chunking, the nodes of one ``ref_doc_id``
        are embedded together, never with another document's nodes."""
        if not self.late_chunking:
            return super().__call__(nodes, **kwargs)
        texts, keys = _node_texts(nodes)
        with _embedding_event(self, texts) as done:
            return _set_embeddings(nodes, done(self._client().embed_grouped(texts, keys)))

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Async :meth:`__call__`."""
        if not self.late_chunking:
            return await super().acall(nodes, **kwargs)
        texts, keys = _node_texts(nodes)
        with _embedding_event(self, texts) as done:
            matrix = await self._client().aembed_grouped(texts, keys)
            return _set_embeddings(nodes, done(matrix))

    def _client(self) -> JinaClient:
        return cast(JinaClient, self._provider)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._client().embed_documents(texts, late_chunking=self._flat_late()).tolist()

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        late = self._flat_late()
        return (await self._client().aembed_documents(texts, late_chunking=late)).tolist()

    def _flat_late(self) -> bool | None:
        """Texts without their nodes have no document boundaries: no late chunking there."""
        if not self.late_chunking:
            return None
        if not self._warned_flat:
            self._warned_flat = True
            logger.warning(
                "JinaEmbedding(late_chunking=True) got texts without their nodes (e.g. from "
                "VectorStoreIndex), so it cannot tell which belong to one document and embeds "
                "each on its own. Run the embedding as a transformation to late-chunk per "
                "ref_doc_id: VectorStoreIndex.from_documents(docs, transformations=[splitter, "
                "embed_model]) or an IngestionPipeline."
            )
        return False


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
    truncate: bool = Field(default=True, description="Cut over-long inputs, not fail.")
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
        truncate: bool = True,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        query_instruction: str | None = None,
        text_instruction: str | None = None,
        embed_batch_size: int = DEFAULT_HF_BATCH_SIZE,
        retry: RetryPolicy | None = None,
        limits: BatchLimits | None = None,
        timeout: TimeoutLike = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        options, llama = _split_options(type(self), kwargs)
        limits = _default_batch_size(limits, options, embed_batch_size)
        # llama-index-embeddings-huggingface-api's instructions: "<instruction> <text>"
        query_prefix = query_prefix or (query_instruction and f"{query_instruction} ")
        passage_prefix = passage_prefix or (text_instruction and f"{text_instruction} ")
        router: dict[str, Any] = {"router_url": router_url} if router_url else {}
        client = HuggingFaceClient(
            model=model_name or model,
            api_key=token or api_key,
            base_url=base_url,
            normalize=normalize,
            truncate=truncate,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            retry=retry,
            limits=limits,
            timeout=timeout,
            transport=transport,
            **router,
            **options,
        )
        super().__init__(
            provider=client,
            model_name=model_name or model or "unknown",
            embed_batch_size=embed_batch_size,
            callback_manager=callback_manager,
            base_url=base_url,
            normalize=normalize,
            truncate=truncate,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            **llama,
        )

    @classmethod
    def class_name(cls) -> str:
        return "TiDBJinaHuggingFaceInferenceAPIEmbedding"


def _embeddable(query: Any) -> bool:
    """Non-empty valid Unicode text (what ``embed_queries`` accepts)."""
    if not isinstance(query, str) or not query.strip():
        return False
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _definer(cls: type, name: str) -> type:
    return next(c for c in cls.__mro__ if name in vars(c))


def _node_texts(nodes: Sequence[BaseNode]) -> tuple[list[str], list[str | None]]:
    """What ``BaseEmbedding.__call__`` embeds for each node, and its document id."""
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    return texts, [node.ref_doc_id for node in nodes]


def _set_embeddings(nodes: Sequence[BaseNode], rows: list[list[float]]) -> Sequence[BaseNode]:
    for node, row in zip(nodes, rows, strict=True):
        node.embedding = row
    return nodes


@contextmanager
def _embedding_event(
    model: BaseEmbedding, texts: list[str]
) -> Iterator[Callable[[Any], list[list[float]]]]:
    """The callback and instrumentation events ``get_text_embedding_batch`` emits (token
    counters and tracers rely on them), around one grouped late-chunking call. Yields
    ``done(matrix)``, which ends the events and returns the rows as lists."""
    payload = model.to_payload()
    _dispatcher.event(EmbeddingStartEvent(model_dict=payload))
    with model.callback_manager.event(
        CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: payload}
    ) as event:

        def done(matrix: Any) -> list[list[float]]:
            rows: list[list[float]] = matrix.tolist()
            event.on_end(payload={EventPayload.CHUNKS: texts, EventPayload.EMBEDDINGS: rows})
            _dispatcher.event(EmbeddingEndEvent(chunks=texts, embeddings=rows))
            return rows

        yield done


@contextmanager
def _query_events(
    model: BaseEmbedding, queries: list[str]
) -> Iterator[Callable[[Any], list[list[float]]]]:
    """The events llama-index's per-query loop emits, around one batched call: for each
    query a start event, a callback ``EMBEDDING`` event whose payload is that query and its
    vector, and an end event, in query order (token counters and tracers count them). The
    first query's events span the call; yields ``done(matrix)``, which returns the rows.
    On an error only the first event ends (with the exception), as in the loop."""
    payload = model.to_payload()
    rows: list[list[float]] = []
    _dispatcher.event(EmbeddingStartEvent(model_dict=payload))
    with model.callback_manager.event(
        CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: payload}
    ) as event:

        def done(matrix: Any) -> list[list[float]]:
            rows.extend(matrix.tolist())
            event.on_end(
                payload={EventPayload.CHUNKS: queries[:1], EventPayload.EMBEDDINGS: rows[:1]}
            )
            return rows

        yield done
    _dispatcher.event(EmbeddingEndEvent(chunks=queries[:1], embeddings=rows[:1]))
    for query, row in zip(queries[1:], rows[1:], strict=True):
        _dispatcher.event(EmbeddingStartEvent(model_dict=payload))
        with model.callback_manager.event(
            CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: payload}
        ) as event:
            event.on_end(payload={EventPayload.CHUNKS: [query], EventPayload.EMBEDDINGS: [row]})
        _dispatcher.event(EmbeddingEndEvent(chunks=[query], embeddings=[row]))


def _split_options(
    cls: type[BaseEmbedding], kwargs: dict[str, Any]
) -> tuple[ClientOptions, dict[str, Any]]:
    """``kwargs`` split into the core client's flat options and llama-index's own fields;
    anything else is an error naming every accepted argument."""
    options = {name: value for name, value in kwargs.items() if name in CLIENT_OPTIONS}
    llama = {name: value for name, value in kwargs.items() if name in _LLAMA_FIELDS}
    unknown = [name for name in kwargs if name not in options and name not in llama]
    if unknown:
        valid = [*named_parameters(cls.__init__), *CLIENT_OPTIONS, *_LLAMA_FIELDS]
        raise unknown_options_error(cls.__name__, unknown, valid)
    return cast(ClientOptions, options), llama


def _default_batch_size(
    limits: BatchLimits | None, options: ClientOptions, embed_batch_size: int
) -> BatchLimits | None:
    """``embed_batch_size`` as the request size, unless ``limits`` / ``max_batch_size`` set
    one (both set is the core's error)."""
    if options.get("max_batch_size") is not None:
        return limits
    if limits is None:
        options["max_batch_size"] = embed_batch_size
        return None
    if limits.max_batch_size is None:
        return replace(limits, max_batch_size=embed_batch_size)
    return limits


def _check_float_encoding(*encodings: str | None) -> None:
    for encoding in encodings:
        if encoding not in (None, "float"):
            raise ConfigurationError(
                f"encoding {encoding!r} is not supported: binary embeddings cannot be "
                "searched in a float VECTOR column; remove encoding_queries / "
                "encoding_documents (float is the default)"
            )
