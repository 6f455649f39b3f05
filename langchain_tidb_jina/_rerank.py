"""``JinaRerank``: a LangChain document compressor over the core Jina rerank call.

Documents go to ``JinaClient.rerank`` as their ``page_content``; the best ``top_n`` come
back in score order, each a copy of the input ``Document`` (``id`` kept) with the
provider's score in ``metadata["relevance_score"]`` (langchain-community's key).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.utils import secret_from_env
from pydantic import ConfigDict, Field, InstanceOf, PrivateAttr, SecretStr

from langchain_tidb_jina._embeddings import _explicit_key, _reject_unknown
from tidb_jina.embeddings import (
    DEFAULT_JINA_RERANK_MODEL,
    JinaClient,
    RerankResult,
    RetryPolicy,
    Timeouts,
)

__all__ = ["JinaRerank"]

DEFAULT_TOP_N = 3  # langchain-community's default


class JinaRerank(BaseDocumentCompressor):
    """Rerank retrieved documents with a Jina reranker (multilingual v2 by default).

    >>> reranker = JinaRerank(top_n=3)  # key from JINA_API_KEY / JINAAI_API_KEY
    >>> retriever = ContextualCompressionRetriever(base_compressor=reranker,
    ...                                            base_retriever=store.as_retriever())

    ``top_n=None`` keeps every document, reordered. ``retry`` and ``timeout`` take
    ``tidb_jina.RetryPolicy`` / ``Timeouts``, as the embeddings do.
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid", protected_namespaces=())

    model: str = DEFAULT_JINA_RERANK_MODEL
    top_n: int | None = DEFAULT_TOP_N
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(["JINA_API_KEY", "JINAAI_API_KEY"], default=None),
        alias="jina_api_key",
    )
    base_url: str | None = None
    retry: InstanceOf[RetryPolicy] | None = None
    timeout: float | InstanceOf[Timeouts] | InstanceOf[httpx.Timeout] | None = None
    max_retries: int | None = None

    _client: JinaClient = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        _reject_unknown(type(self), data)
        super().__init__(**data)
        key = _explicit_key(self)  # an environment key is left to the core's host rule
        self._client = JinaClient(
            api_key=key,
            base_url=self.base_url,
            rerank_model=self.model,
            retry=self.retry,
            timeout=self.timeout,
            max_retries=self.max_retries,
        )

    @property
    def client(self) -> JinaClient:
        """The core ``JinaClient``."""
        return self._client

    def close(self) -> None:
        """Close the HTTP connections the client opened (sync)."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the HTTP connections the client opened (sync and this loop's async)."""
        await self._client.aclose()

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """The ``top_n`` documents most relevant to ``query``, best first."""
        docs = list(documents)
        if not docs:
            return []
        results = self._client.rerank(query, [d.page_content for d in docs], self.top_n)
        return _ranked(docs, results)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`."""
        docs = list(documents)
        if not docs:
            return []
        results = await self._client.arerank(query, [d.page_content for d in docs], self.top_n)
        return _ranked(docs, results)


def _ranked(documents: list[Document], results: list[RerankResult]) -> list[Document]:
    out = []
    for result in results:
        doc = documents[result.index]
        metadata = {**doc.metadata, "relevance_score": result.score}
        out.append(doc.model_copy(update={"metadata": metadata}))
    return out
