"""Jina AI embeddings (``POST /v1/embeddings``) and reranker (``POST /v1/rerank``) client.

Defaults and why (the first three are ``DEFAULT_JINA_LIMITS``, a ``BatchLimits``):

- ``max_batch_size=128`` inputs per request: what Jina's own client uses; v4 is further capped
  at its documented 512 (a smaller user value always wins).
- ``max_batch_chars=200_000`` characters per request (about 50K tokens): keeps one request a
  small share of the free tier's 1M tokens per minute and well inside the 60 s timeout.
- ``max_concurrency=5``: the free tier allows 5 concurrent requests; beyond that Jina answers
  429 ``RATE_CONCURRENCY_LIMIT_EXCEEDED``. Paid tiers allow 50-500, raise it there.
- ``truncate=True``: an over-long input is cut at the model's limit instead of failing the
  whole batch; pass ``truncate=False`` to get ``InputTooLongError`` instead.
- ``normalized=True``, sent explicitly where the model accepts the field (sources disagree on
  its default); v4 and the code models lack the field, so the client normalizes them itself.
- Tasks: ``embed_documents`` sends ``retrieval.passage`` and ``embed_query`` (and
  ``embed_queries``, many queries per request) ``retrieval.query`` on v3/v4/v5 (clip-v2:
  ``retrieval.query`` for queries only; code models: ``nl2code.passage`` /
  ``nl2code.query``), unless ``task``, ``query_task`` or ``passage_task`` is given.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np

from tidb_jina._errors import ConfigurationError, InvalidInputError, ResponseFormatError
from tidb_jina.embeddings import _rerank
from tidb_jina.embeddings._base import (
    BaseEmbeddingClient,
    Kind,
    _Call,
    _ErrorInfo,
    _Retry,
    rows_to_matrix,
)
from tidb_jina.embeddings._config import BatchLimits, ClientOptions, RetryPolicy, TimeoutLike
from tidb_jina.embeddings._http import resolve_url
from tidb_jina.embeddings._inputs import l2_normalize, plan_batches, validate_texts
from tidb_jina.embeddings._keys import JINA_HOSTS
from tidb_jina.embeddings._late import group_positions, plan_windows
from tidb_jina.embeddings._models import (
    JINA_MAX_INPUTS,
    LATE_CHUNKING_DEFAULT_CONTEXT,
    JinaModelInfo,
    jina_model_info,
)
from tidb_jina.embeddings._rerank import JINA_RERANK_MAX_DOCUMENTS
from tidb_jina.embeddings._types import RerankResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_JINA_BATCH_CHARS",
    "DEFAULT_JINA_BATCH_SIZE",
    "DEFAULT_JINA_CONCURRENCY",
    "DEFAULT_JINA_LIMITS",
    "DEFAULT_JINA_MODEL",
    "DEFAULT_JINA_RERANK_MODEL",
    "JINA_BASE_URL",
    "JinaClient",
]

JINA_BASE_URL = "https://api.jina.ai"
DEFAULT_JINA_MODEL = "jina-embeddings-v3"
DEFAULT_JINA_RERANK_MODEL = "jina-reranker-v2-base-multilingual"
DEFAULT_JINA_BATCH_SIZE = 128
DEFAULT_JINA_BATCH_CHARS = 200_000
DEFAULT_JINA_CONCURRENCY = 5
DEFAULT_JINA_LIMITS = BatchLimits(
    max_batch_size=DEFAULT_JINA_BATCH_SIZE,
    max_batch_chars=DEFAULT_JINA_BATCH_CHARS,
    max_concurrency=DEFAULT_JINA_CONCURRENCY,
)

EmbeddingType = Literal["float", "base64"]


class JinaClient(BaseEmbeddingClient):
    """Embeds texts and reranks documents with the Jina AI API.

    >>> client = JinaClient(model="jina-embeddings-v3", dimensions=256)  # no I/O yet
    >>> client.dimension
    256
    """

    provider_name = "Jina AI"
    default_limits = DEFAULT_JINA_LIMITS
    api_key_env = ("JINA_API_KEY", "JINAAI_API_KEY")
    key_hosts = JINA_HOSTS
    key_hint = (
        "Jina keys start with 'jina_'; get or check one at https://jina.ai/api-dashboard "
        "and pass it as api_key= or JINA_API_KEY."
    )
    balance_hint = (
        "The Jina account is out of tokens; top up at https://jina.ai/api-dashboard or use "
        "another key."
    )
    model_hint = (
        "Jina does not know this model; use one of tidb_jina.embeddings.JINA_MODELS "
        "(e.g. 'jina-embeddings-v3') or check the spelling and the base URL."
    )

    def __init__(
        self,
        *,
        model: str = DEFAULT_JINA_MODEL,
        api_key: str | None = None,
        base_url: str | None = None,
        task: str | None = None,
        query_task: str | None = None,
        passage_task: str | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        normalized: bool = True,
        truncate: bool = True,
        embedding_type: EmbeddingType = "float",
        rerank_model: str = DEFAULT_JINA_RERANK_MODEL,
        rerank_batch_size: int = JINA_RERANK_MAX_DOCUMENTS,
        retry: RetryPolicy | None = None,
        limits: BatchLimits | None = None,
        timeout: TimeoutLike = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(
            api_key=api_key,
            retry=retry,
            limits=limits,
            timeout=timeout,
            options=options,
            http_client=http_client,
            async_http_client=async_http_client,
            transport=transport,
        )
        if not model:
            raise ConfigurationError("model must be a Jina model name, e.g. 'jina-embeddings-v3'")
        self.model = model
        self.info: JinaModelInfo = jina_model_info(model)
        self._url_from_env = not base_url and bool(os.environ.get("JINA_API_BASE_URL"))
        self.base_url = resolve_url(base_url, "JINA_API_BASE_URL", JINA_BASE_URL, strip="/v1") or ""
        self.query_task = query_task or task or self.info.query_task
        self.passage_task = passage_task or task or self.info.passage_task
        self.dimensions = dimensions
        self.late_chunking = late_chunking
        self.normalized = normalized
        self.truncate = truncate
        self.embedding_type = embedding_type
        self.rerank_model = rerank_model
        if not isinstance(rerank_batch_size, int) or rerank_batch_size < 1:
            raise ConfigurationError(
                f"rerank_batch_size must be an int >= 1 (documents per rerank request); got "
                f"{rerank_batch_size!r}"
            )
        self.rerank_batch_size = rerank_batch_size
        self._validate_options(task, query_task, passage_task)
        self._dimension = dimensions or self.info.dimension

    def _validate_options(self, *tasks: str | None) -> None:
        info, name = self.info, self.model
        if self.embedding_type not in ("float", "base64"):
            raise ConfigurationError(
                f"embedding_type must be 'float' or 'base64', not {self.embedding_type!r}"
            )
        known = info.family != "generic"
        for task in (t for t in tasks if t):
            if known and not info.accepts_task:
                raise ConfigurationError(
                    f"{name} does not accept a task; remove task/query_task/passage_task"
                )
            if known and task not in info.tasks:
                raise ConfigurationError(
                    f"{name} does not know the task {task!r}; use one of {', '.join(info.tasks)}"
                )
        if self.dimensions is not None:
            if known and info.max_dimensions is None:
                raise ConfigurationError(
                    f"{name} does not accept dimensions (its output is fixed); remove "
                    "dimensions= or use jina-embeddings-v3/v4/v5"
                )
            upper = info.max_dimensions or 1 << 16
            if not isinstance(self.dimensions, int) or not 1 <= self.dimensions <= upper:
                raise ConfigurationError(
                    f"{name} accepts dimensions between 1 and {upper}; got {self.dimensions!r}"
                )
        if self.late_chunking and known and not info.accepts_late_chunking:
            raise ConfigurationError(
                f"{name} does not support late_chunking; use jina-embeddings-v3 or -v4, or "
                "pass late_chunking=False"
            )

    def __repr__(self) -> str:
        key = "'**********'" if self._explicit_key or self._key else "None"
        return (
            f"JinaClient(model={self.model!r}, base_url={self.base_url!r}, "
            f"dimensions={self.dimensions!r}, query_task={self.query_task!r}, "
            f"passage_task={self.passage_task!r}, api_key={key})"
        )

    def to_dict(self) -> dict[str, Any]:
        """The client's settings, safe to log or serialize: the API key is never included."""
        return {
            "provider": "jina",
            "model": self.model,
            "base_url": self.base_url,
            "query_task": self.query_task,
            "passage_task": self.passage_task,
            "dimensions": self.dimensions,
            "late_chunking": self.late_chunking,
            "normalized": self.normalized,
            "truncate": self.truncate,
            "embedding_type": self.embedding_type,
            "rerank_model": self.rerank_model,
            "rerank_batch_size": self.rerank_batch_size,
            "max_batch_size": self.max_batch_size,
            "max_batch_chars": self.max_batch_chars,
            "max_concurrency": self.max_concurrency,
            "max_retries": self.max_retries,
        }

    # ---- embeddings: request builder and parser (shared by sync and async) ------------------

    def _batch_limits(self) -> tuple[int, int]:
        return min(self.max_batch_size, self._max_inputs()), self.max_batch_chars

    def _max_inputs(self) -> int:
        """The API's inputs per request: 2,048, or the model's lower limit (v4: 512)."""
        return self.info.max_batch_size or JINA_MAX_INPUTS

    def _plan_calls(self, texts: list[str], kind: Kind) -> list[_Call]:
        if kind == "document" and self.late_chunking:
            return self._window_calls(texts)
        return self._batch_calls(texts, kind)

    def _batch_calls(self, texts: list[str], kind: Kind) -> list[_Call]:
        """Independent inputs: batches by count and characters, no late chunking."""
        count, chars = self._batch_limits()
        return [
            self._build_embed_call(texts[start:end], kind, late=False)
            for start, end in plan_batches(texts, count, chars)
        ]

    def _window_calls(self, chunks: list[str]) -> list[_Call]:
        """One document's chunks for late chunking: one request per window that fits the
        model's context and the API's input count (``max_batch_size`` does not split it)."""
        windows = plan_windows(
            chunks,
            max_inputs=self._max_inputs(),
            max_tokens=self.info.max_input_tokens or LATE_CHUNKING_DEFAULT_CONTEXT,
            max_chars=self.max_batch_chars,
        )
        return [self._build_embed_call(chunks[a:b], "document", late=True) for a, b in windows]

    def build_payload(
        self, texts: Sequence[str], kind: Kind, *, late: bool | None = None
    ) -> dict[str, Any]:
        """The JSON body for embedding ``texts`` as queries or documents: only the fields this
        model family accepts. ``late`` (default: the client's ``late_chunking`` for
        documents) asks Jina to embed ``texts`` as the chunks of one document."""
        info = self.info
        task = self.query_task if kind == "query" else self.passage_task
        payload: dict[str, Any] = {"model": self.model}
        if task:
            payload["task"] = task
        if self.dimensions is not None:
            payload["dimensions"] = self.dimensions
        if info.accepts_normalized:
            payload["normalized"] = self.normalized
        if late is None:
            late = self.late_chunking and kind == "document"
        if late:
            payload["late_chunking"] = True
        payload["embedding_type"] = self.embedding_type
        payload["truncate"] = self.truncate
        payload["input"] = list(texts)
        return payload

    def _build_embed_call(self, texts: list[str], kind: Kind, late: bool | None = None) -> _Call:
        return _Call(
            "POST",
            f"{self.base_url}/v1/embeddings",
            self.build_payload(texts, kind, late=late),
            len(texts),
        )

    def _parse_embeddings(self, data: Any, call: _Call) -> np.ndarray:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ResponseFormatError(
                "Jina AI answered without a 'data' list; check base_url points at the Jina API"
            )
        rows: dict[int, Any] = {}
        for item in items:
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or isinstance(index, bool):
                # The type, never the value: an echoing server could put the key there.
                raise ResponseFormatError(
                    f"Jina AI returned an index that is not an integer ({type(index).__name__})"
                )
            if not 0 <= index < call.size or index in rows:
                raise ResponseFormatError(
                    f"Jina AI returned a bad or repeated index: {index} for {call.size} inputs"
                )
            rows[index] = self._decode(item.get("embedding"))
        if len(rows) != call.size:
            missing = sorted(set(range(call.size)) - rows.keys())[:10]
            # Jina's own client retries inputs missing from a response; retry the whole batch.
            raise _Retry(
                ResponseFormatError(
                    f"Jina AI returned {len(rows)} of {call.size} embeddings "
                    f"(missing indices {missing}...)"
                )
            )
        matrix = rows_to_matrix([rows[i] for i in range(call.size)], self.provider_name)
        if self.normalized and not self.info.accepts_normalized:
            matrix = l2_normalize(matrix)
        return matrix

    def _decode(self, embedding: Any) -> Any:
        if isinstance(embedding, str):
            raw = _b64_or_none(embedding)
            if raw is None:  # raised outside the except: the decoder's error is not chained
                raise ResponseFormatError("Jina AI returned an invalid base64 embedding")
            if len(raw) % 4:
                raise ResponseFormatError("Jina AI returned a base64 embedding of odd length")
            return np.frombuffer(raw, dtype="<f4")
        if not isinstance(embedding, list):
            raise ResponseFormatError(
                f"Jina AI returned an embedding of type {type(embedding).__name__}; expected "
                "a list of floats or a base64 string"
            )
        return embedding

    def _invalid_hint(self, info: _ErrorInfo) -> str:
        return (
            f"{self.model} may not accept one of the fields sent; see "
            "tidb_jina.embeddings.JINA_MODELS for what each model accepts"
        )

    # ---- late chunking: only one document's chunks in a request --------------------------

    def embed_documents(
        self, texts: Sequence[str], *, late_chunking: bool | None = None
    ) -> np.ndarray:
        """Embed texts to be stored: float32 array of shape ``(len(texts), d)``.

        With late chunking (the client's ``late_chunking``, or ``late_chunking=True`` here)
        ``texts`` are the chunks of **one** document, embedded in each other's context,
        window by window when they exceed the model's context. For many documents use
        ``embed_chunked_documents`` or ``embed_grouped``; ``late_chunking=False`` embeds
        each text on its own.
        """
        if late_chunking is None:
            return super().embed_documents(texts)
        return self._finish_or_empty(self._map_sync(*self._documents_plan(texts, late_chunking)))

    async def aembed_documents(
        self, texts: Sequence[str], *, late_chunking: bool | None = None
    ) -> np.ndarray:
        """Async ``embed_documents``."""
        if late_chunking is None:
            return await super().aembed_documents(texts)
        plan = self._documents_plan(texts, late_chunking)
        return self._finish_or_empty(await self._map_async(*plan))

    def _documents_plan(self, texts: Sequence[str], late: bool) -> tuple[list[_Call], Any]:
        self._check_late(late)
        items = validate_texts(texts)
        calls = self._window_calls(items) if late else self._batch_calls(items, "document")
        return calls, self._parse_embeddings

    def _finish_or_empty(self, parts: list[np.ndarray]) -> np.ndarray:
        return self._finish(parts) if parts else self._empty()

    def _check_late(self, late: bool) -> None:
        if late and self.info.family != "generic" and not self.info.accepts_late_chunking:
            raise ConfigurationError(
                f"{self.model} does not support late chunking; use jina-embeddings-v3 or -v4"
            )

    def _chunk_plan(self, documents: Sequence[Sequence[str]]) -> tuple[list[_Call], list[int]]:
        """Every document's window calls, and how many calls each document has."""
        if not self.late_chunking:
            raise ConfigurationError(
                "embed_chunked_documents needs late_chunking=True; otherwise use embed_documents"
            )
        calls: list[_Call] = []
        counts: list[int] = []
        for i, chunks in enumerate(documents):
            own = self._window_calls(validate_texts(chunks, f"documents[{i}]"))
            calls.extend(own)
            counts.append(len(own))
        return calls, counts

    def _regroup(self, parts: list[np.ndarray], counts: list[int]) -> list[np.ndarray]:
        out, position = [], 0
        for count in counts:
            out.append(self._finish_or_empty(parts[position : position + count]))
            position += count
        return out

    def embed_chunked_documents(self, documents: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Late chunking of many documents: each request carries chunks of one document
        only (a long document takes several windows); requests run concurrently. Returns
        one ``(n_chunks, d)`` array per document."""
        calls, counts = self._chunk_plan(documents)
        return self._regroup(self._map_sync(calls, self._parse_embeddings), counts)

    async def aembed_chunked_documents(
        self, documents: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """Async ``embed_chunked_documents``."""
        calls, counts = self._chunk_plan(documents)
        return self._regroup(await self._map_async(calls, self._parse_embeddings), counts)

    def embed_grouped(
        self, texts: Sequence[str], documents: Sequence[Hashable | None]
    ) -> np.ndarray:
        """Late chunking of a flat list: ``documents[i]`` names the document ``texts[i]``
        belongs to (``None``: a document of its own). Chunks of one document are embedded
        together; the result is in input order, shape ``(len(texts), d)``."""
        items, groups = self._grouping(texts, documents)
        parts = self.embed_chunked_documents([[items[p] for p in group] for group in groups])
        return self._scatter(groups, parts, len(items))

    async def aembed_grouped(
        self, texts: Sequence[str], documents: Sequence[Hashable | None]
    ) -> np.ndarray:
        """Async ``embed_grouped``."""
        items, groups = self._grouping(texts, documents)
        chunked = [[items[p] for p in group] for group in groups]
        return self._scatter(groups, await self.aembed_chunked_documents(chunked), len(items))

    def _grouping(
        self, texts: Sequence[str], documents: Sequence[Hashable | None]
    ) -> tuple[list[str], list[list[int]]]:
        items = validate_texts(texts)
        if len(documents) != len(items):
            raise InvalidInputError(
                f"embed_grouped got {len(items)} texts but {len(documents)} document keys; "
                "pass one key per text"
            )
        return items, group_positions(documents)

    def _scatter(self, groups: list[list[int]], parts: list[np.ndarray], n: int) -> np.ndarray:
        if not n:
            return self._empty()
        matrix = np.empty((n, parts[0].shape[1]), dtype=np.float32)
        for group, part in zip(groups, parts, strict=True):
            matrix[group] = part
        return matrix

    # ---- rerank (requests built and read by ``_rerank``) --------------------------------------

    def _rerank_calls(
        self, query: str, documents: Sequence[str], top_n: int | None, model: str | None
    ) -> list[_rerank._RerankCall]:
        validate_texts([query], "query")
        return _rerank.plan(
            f"{self.base_url}/v1/rerank",
            model=model or self.rerank_model,
            query=query,
            documents=validate_texts(documents, "documents"),
            top_n=top_n,
            batch=self.rerank_batch_size,
            truncation=self.truncate,
        )

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        model: str | None = None,
    ) -> list[RerankResult]:
        """Score ``documents`` against ``query``; best first, ``index`` into ``documents``.

        More than ``rerank_batch_size`` (1,024) documents go in several requests, merged
        by score. ``truncation`` (the client's ``truncate``) is sent to the rerankers that
        document it, so an over-long document is cut rather than failing the call.
        """
        calls = self._rerank_calls(query, documents, top_n, model)
        return _rerank.merge(self._map_sync(calls, _rerank.parse), top_n)

    async def arerank(
        self,
        query: str,
        documents: Sequence[str],
        top_n: int | None = None,
        *,
        model: str | None = None,
    ) -> list[RerankResult]:
        """Async ``rerank``."""
        calls = self._rerank_calls(query, documents, top_n, model)
        return _rerank.merge(await self._map_async(calls, _rerank.parse), top_n)


def _b64_or_none(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
