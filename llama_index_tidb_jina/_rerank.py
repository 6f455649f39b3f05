"""``JinaRerank``: a LlamaIndex node postprocessor over the core Jina rerank call."""

from __future__ import annotations

from typing import Any

import httpx
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from tidb_jina import InvalidInputError
from tidb_jina.embeddings import (
    DEFAULT_JINA_RERANK_MODEL,
    JinaClient,
    RerankResult,
    RetryPolicy,
    TimeoutLike,
)
from tidb_jina.embeddings._config import named_parameters, unknown_options_error

__all__ = ["JinaRerank"]


class JinaRerank(BaseNodePostprocessor):
    """Reorder retrieved nodes with a Jina reranker; keeps the best ``top_n``.

    Accepts llama-index-postprocessor-jinaai-rerank's arguments (``top_n``, ``model``,
    ``api_key``). Each node's score becomes the reranker's relevance score. The key comes
    from ``api_key``, ``JINA_API_KEY`` or ``JINAAI_API_KEY`` and is never serialized.
    ``retry`` and ``timeout`` take ``tidb_jina.RetryPolicy`` / ``Timeouts`` (or seconds);
    an unknown argument is a ``ConfigurationError`` naming the accepted ones.
    """

    model: str = Field(default=DEFAULT_JINA_RERANK_MODEL, description="Jina reranker model.")
    top_n: int = Field(default=2, description="How many nodes to keep.", gt=0)
    base_url: str | None = Field(default=None, description="API base URL.")

    _client: JinaClient = PrivateAttr()

    def __init__(
        self,
        top_n: int = 2,
        model: str = DEFAULT_JINA_RERANK_MODEL,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: TimeoutLike = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        client: JinaClient | None = None,
        **kwargs: Any,
    ) -> None:
        own = BaseNodePostprocessor.model_fields  # callback_manager
        unknown = [name for name in kwargs if name not in own]
        if unknown:
            valid = [*named_parameters(JinaRerank.__init__), *own]
            raise unknown_options_error(type(self).__name__, unknown, valid)
        jina = client or JinaClient(
            api_key=api_key,
            base_url=base_url,
            rerank_model=model,
            retry=retry,
            timeout=timeout,
            transport=transport,
        )
        # pydantic fields; mypy without the pydantic plugin cannot see them
        super().__init__(top_n=top_n, model=model, base_url=jina.base_url, **kwargs)  # type: ignore[call-arg]
        self._client = jina

    @classmethod
    def class_name(cls) -> str:
        return "TiDBJinaJinaRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = _inputs(nodes, query_bundle)
        if not texts:
            return []
        results = self._client.rerank(query, texts, top_n=self._top_n(texts), model=self.model)
        return _reordered(nodes, results)

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        query, texts = _inputs(nodes, query_bundle)
        if not texts:
            return []
        results = await self._client.arerank(
            query, texts, top_n=self._top_n(texts), model=self.model
        )
        return _reordered(nodes, results)

    def _top_n(self, texts: list[str]) -> int:
        return min(self.top_n, len(texts))


def _inputs(nodes: list[NodeWithScore], query_bundle: QueryBundle | None) -> tuple[str, list[str]]:
    if query_bundle is None:
        raise InvalidInputError("JinaRerank needs the query: pass query_bundle or query_str")
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    return query_bundle.query_str, texts


def _reordered(nodes: list[NodeWithScore], results: list[RerankResult]) -> list[NodeWithScore]:
    return [NodeWithScore(node=nodes[r.index].node, score=r.score) for r in results]
