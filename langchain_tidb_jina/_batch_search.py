"""Batch retrieval: ``retriever.batch(queries)`` as one embedding call and one search.

LangChain's ``Runnable.batch`` / ``abatch`` on a retriever call ``invoke`` once per query
(a thread or task each). For ``search_type="similarity"`` with the store's own embeddings
this mixin embeds every query at once and runs ``VectorTable.search_many`` (one read and
one matrix product on the embedded engine, one statement per query on TiDB). The answers
are the documents ``invoke`` returns for each query, and the callbacks fire as in
``BaseRetriever.invoke``: one retriever run per query, started, then ended with that
query's documents (or errored).

Anything the batched path does not cover (other search types, ``invoke`` keyword
arguments, search options other than ``k`` and ``filter``, a store whose table embeds the
queries, an input that is not a non-empty string) goes to LangChain's per-query ``batch``,
so its behaviour and errors are those of ``invoke``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list

from langchain_tidb_jina._documents import result_document
from tidb_jina.embeddings._base import BaseEmbeddingClient

if TYPE_CHECKING:
    from langchain_tidb_jina._vectorstores import TiDBVectorStore

__all__ = ["BatchSearchMixin"]

_BATCHED_OPTIONS = frozenset({"k", "filter"})


class BatchSearchMixin:
    """``batch`` / ``abatch`` for ``TiDBVectorStoreRetriever`` (see the module docstring)."""

    # Fields of VectorStoreRetriever / BaseRetriever, read here.
    vectorstore: Any
    search_type: str
    search_kwargs: dict[str, Any]
    tags: list[str] | None
    metadata: dict[str, Any] | None

    def batch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Documents for each query; one embedding call and one search when possible."""
        store = self._batch_store(inputs, kwargs)
        if store is None:
            return super().batch(  # type: ignore[misc,no-any-return]
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        configs = get_config_list(config, len(inputs))
        runs = [
            self._callback_manager(CallbackManager, c).on_retriever_start(
                None,
                query,
                name=c.get("run_name") or self.get_name(),  # type: ignore[attr-defined]
            )
            for query, c in zip(inputs, configs, strict=True)
        ]
        try:
            hits = store.vector_table.search_many(
                _query_vectors(store, inputs), **self._batch_options()
            )
        except Exception as error:
            for run in runs:
                run.on_retriever_error(error)
            if return_exceptions:
                return [error] * len(inputs)
            raise
        answers = _documents(hits)
        for run, docs in zip(runs, answers, strict=True):
            run.on_retriever_end(docs)
        return answers

    async def abatch(
        self,
        inputs: list[str],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """Async :meth:`batch`."""
        store = self._batch_store(inputs, kwargs)
        if store is None:
            return await super().abatch(  # type: ignore[misc,no-any-return]
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        configs = get_config_list(config, len(inputs))
        runs = [
            await self._callback_manager(AsyncCallbackManager, c).on_retriever_start(
                None,
                query,
                name=c.get("run_name") or self.get_name(),  # type: ignore[attr-defined]
            )
            for query, c in zip(inputs, configs, strict=True)
        ]
        try:
            vectors = await _aquery_vectors(store, inputs)
            hits = await store.vector_table.aio.search_many(vectors, **self._batch_options())
        except Exception as error:
            for run in runs:
                await run.on_retriever_error(error)
            if return_exceptions:
                return [error] * len(inputs)
            raise
        answers = _documents(hits)
        for run, docs in zip(runs, answers, strict=True):
            await run.on_retriever_end(docs)
        return answers

    # --- helpers ------------------------------------------------------------------------

    def _batch_store(self, inputs: Sequence[Any], kwargs: dict[str, Any]) -> TiDBVectorStore | None:
        """The store when the batched path answers exactly like ``invoke``, else None."""
        if self.search_type != "similarity" or kwargs or len(inputs) < 2:
            return None
        if not set(self.search_kwargs) <= _BATCHED_OPTIONS:
            return None
        if not all(isinstance(q, str) and q.strip() for q in inputs):
            return None  # invoke raises the clear per-query error
        store = self.vectorstore
        return store if getattr(store, "_embedding", None) is not None else None

    def _batch_options(self) -> dict[str, Any]:
        return {"k": 4, "filter": None, **self.search_kwargs}

    def _callback_manager(self, cls: Any, config: RunnableConfig) -> Any:
        # As BaseRetriever.invoke / ainvoke configure theirs (no invoke kwargs here).
        return cls.configure(
            config.get("callbacks"),
            None,
            verbose=False,
            inheritable_tags=config.get("tags"),
            local_tags=self.tags,
            inheritable_metadata={
                **(config.get("metadata") or {}),
                **self._get_ls_params(),  # type: ignore[attr-defined]
            },
            local_metadata=self.metadata,
        )


def _query_vectors(store: TiDBVectorStore, queries: list[str]) -> Any:
    """All query vectors, with the query-side semantics of ``embed_query``."""
    from langchain_tidb_jina._vectorstores import _core_client

    embedding = store.embeddings
    assert embedding is not None
    client = _core_client(embedding)
    if isinstance(client, BaseEmbeddingClient):
        # One request plan for every query, each embedded as a query (query task / prompt).
        return client._embed_sync(queries, "query")
    if client is not None:
        return [client.embed_query(q) for q in queries]
    return [embedding.embed_query(q) for q in queries]


async def _aquery_vectors(store: TiDBVectorStore, queries: list[str]) -> Any:
    from langchain_tidb_jina._vectorstores import _core_client

    embedding = store.embeddings
    assert embedding is not None
    client = _core_client(embedding)
    if isinstance(client, BaseEmbeddingClient):
        return await client._embed_async(queries, "query")
    if client is not None:
        return [await client.aembed_query(q) for q in queries]
    return [await embedding.aembed_query(q) for q in queries]


def _documents(hits: list[list[Any]]) -> list[list[Document]]:
    return [[result_document(r) for r in results] for results in hits]
