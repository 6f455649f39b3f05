"""Batch retrieval: ``retriever.batch(queries)`` as one embedding call and one search.

LangChain's ``Runnable.batch`` / ``abatch`` on a retriever call ``invoke`` once per query
(a thread or task each). For ``search_type="similarity"`` and
``"similarity_score_threshold"`` with the store's own embeddings this mixin embeds every
query at once (``tidb_jina.embeddings.embed_queries``: the client's own
``embed_queries``, one request per batch, when it is faithful to ``embed_query``) and runs
``VectorTable.search_many`` (one read and one matrix product on the embedded engine, one
statement per query on TiDB). The answers are the documents ``invoke`` returns for each
query, and the callbacks fire as in ``BaseRetriever.invoke``: one retriever run per query,
started, then ended with that query's documents (or errored).

A threshold retriever's hits go, query by query, through langchain-core's own
``similarity_search_with_relevance_scores`` (the store's relevance function per metric,
its warning for scores outside [0, 1], its ``score_threshold`` cut and its log line when
nothing is left), so they are cut exactly as ``invoke`` cuts them. An error there (a
warning turned into an error) fails that query's run only, as it would in ``invoke``.
So does a query the provider refuses as too long (``InputTooLongError``, with
``truncate=False``): the batch is then answered query by query, as ``invoke`` would.

Anything the batched path does not cover (other search types, ``invoke`` keyword
arguments, search options other than ``k``, ``filter`` and ``score_threshold``, a store
whose table embeds the queries, a store or retriever subclass that overrides the search
methods ``invoke`` goes through, an input that is not a non-empty string) goes to
LangChain's per-query ``batch``, so its behaviour and errors are those of ``invoke``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager
from langchain_core.documents import Document
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import get_config_list
from langchain_core.vectorstores import VectorStore

from langchain_tidb_jina._documents import result_document
from tidb_jina import InputTooLongError
from tidb_jina.embeddings import aembed_queries, embed_queries

if TYPE_CHECKING:
    from langchain_tidb_jina._vectorstores import TiDBVectorStore

__all__ = ["BatchSearchMixin"]

# Search options the batched path answers like ``invoke``, per search type.
_BATCHED_OPTIONS = {
    "similarity": frozenset({"k", "filter"}),
    "similarity_score_threshold": frozenset({"k", "filter", "score_threshold"}),
}
# The store methods ``invoke`` goes through, per search type: a subclass overriding one of
# them gets LangChain's per-query ``batch``, so its override runs.
_STORE_METHODS = {
    "similarity": (
        "similarity_search",
        "asimilarity_search",
        "similarity_search_with_score",
        "asimilarity_search_with_score",
    ),
    "similarity_score_threshold": (
        "similarity_search_with_relevance_scores",
        "asimilarity_search_with_relevance_scores",
        "_similarity_search_with_relevance_scores",
        "_asimilarity_search_with_relevance_scores",
    ),
}
# ``Runnable.batch`` calls ``invoke`` per query: a retriever subclass that overrides it (or
# the methods it calls) must see every query, so it gets LangChain's per-query ``batch``.
_RETRIEVER_METHODS = ("invoke", "ainvoke", "_get_relevant_documents", "_aget_relevant_documents")


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
        answers: list[Any] = []
        try:
            hits = store.vector_table.search_many(
                _query_vectors(store, inputs), **self._batch_options()
            )
        except InputTooLongError:
            # One query's error, not the batch's: each query as invoke answers it, in its
            # own run, so the others still get their documents.
            for q, run in zip(inputs, runs, strict=True):
                try:
                    answers.append(self._get_relevant_documents(q, run_manager=run))  # type: ignore[attr-defined]
                except Exception as one:
                    answers.append(one)
        except Exception as error:
            for run in runs:
                run.on_retriever_error(error)
            if return_exceptions:
                return [error] * len(inputs)
            raise
        else:
            for q, results in zip(inputs, hits, strict=True):
                try:
                    answers.append(self._answer(store, q, results))
                except Exception as error:  # reported on that query's run only
                    answers.append(error)
        for run, answer in zip(runs, answers, strict=True):
            if isinstance(answer, Exception):
                run.on_retriever_error(answer)
            else:
                run.on_retriever_end(answer)
        return _returned(answers, return_exceptions)

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
        answers: list[Any] = []
        try:
            vectors = await _aquery_vectors(store, inputs)
            hits = await store.vector_table.aio.search_many(vectors, **self._batch_options())
        except InputTooLongError:
            for q, run in zip(inputs, runs, strict=True):
                try:
                    answers.append(await self._aget_relevant_documents(q, run_manager=run))  # type: ignore[attr-defined]
                except Exception as one:
                    answers.append(one)
        except Exception as error:
            for run in runs:
                await run.on_retriever_error(error)
            if return_exceptions:
                return [error] * len(inputs)
            raise
        else:
            for q, results in zip(inputs, hits, strict=True):
                try:
                    answers.append(await self._aanswer(store, q, results))
                except Exception as error:
                    answers.append(error)
        for run, answer in zip(runs, answers, strict=True):
            if isinstance(answer, Exception):
                await run.on_retriever_error(answer)
            else:
                await run.on_retriever_end(answer)
        return _returned(answers, return_exceptions)

    # --- helpers ------------------------------------------------------------------------

    def _batch_store(self, inputs: Sequence[Any], kwargs: dict[str, Any]) -> TiDBVectorStore | None:
        """The store when the batched path answers exactly like ``invoke``, else None."""
        allowed = _BATCHED_OPTIONS.get(self.search_type)
        if allowed is None or kwargs or len(inputs) < 2:
            return None
        if not set(self.search_kwargs) <= allowed:
            return None
        if not all(_embeddable(q) for q in inputs):
            return None  # invoke raises the clear per-query error
        store = self.vectorstore
        if getattr(store, "_embedding", None) is None:
            return None
        from langchain_tidb_jina._vectorstores import TiDBVectorStore, TiDBVectorStoreRetriever

        if _overrides(self, TiDBVectorStoreRetriever, _RETRIEVER_METHODS) or _overrides(
            store, TiDBVectorStore, _STORE_METHODS[self.search_type]
        ):
            return None
        return store  # type: ignore[no-any-return]

    def _batch_options(self) -> dict[str, Any]:
        """``search_many``'s options: ``k`` and ``filter`` as ``invoke`` passes them."""
        options = {"k": 4, "filter": None, **self.search_kwargs}
        options.pop("score_threshold", None)  # applied per query, on relevance scores
        return options

    def _answer(self, store: TiDBVectorStore, query: str, results: list[Any]) -> list[Document]:
        """One query's documents from its hits, as ``invoke`` would return them."""
        if self.search_type == "similarity":
            return [result_document(r) for r in results]
        answered = _Answered(store._relevance(results))
        pairs = VectorStore.similarity_search_with_relevance_scores(
            answered,  # type: ignore[arg-type]
            query,
            **self.search_kwargs,
        )
        return [doc for doc, _ in pairs]

    async def _aanswer(
        self, store: TiDBVectorStore, query: str, results: list[Any]
    ) -> list[Document]:
        if self.search_type == "similarity":
            return [result_document(r) for r in results]
        answered = _Answered(store._relevance(results))
        pairs = await VectorStore.asimilarity_search_with_relevance_scores(
            answered,  # type: ignore[arg-type]
            query,
            **self.search_kwargs,
        )
        return [doc for doc, _ in pairs]

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


class _Answered:
    """One query's ``(document, relevance)`` pairs, already searched, in the place of the
    store: langchain-core's ``similarity_search_with_relevance_scores`` then warns, cuts at
    ``score_threshold`` and logs exactly as it does inside ``invoke``."""

    def __init__(self, pairs: list[tuple[Document, float]]) -> None:
        self._pairs = pairs

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self._pairs

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        return self._pairs


def _returned(answers: list[Any], return_exceptions: bool) -> list[Any]:
    """As ``Runnable.batch``: the first error (in input order) unless errors are returned."""
    if not return_exceptions:
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
    return answers


def _embeddable(query: Any) -> bool:
    """A text the embedding clients accept (non-empty, valid Unicode): a bad one fails
    its own ``invoke`` only, so its batch goes query by query."""
    if not isinstance(query, str) or not query.strip():
        return False
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _overrides(obj: Any, base: type, names: Sequence[str]) -> bool:
    """True when ``obj``'s class replaces one of ``base``'s methods ``names``."""
    return any(getattr(type(obj), name) is not getattr(base, name) for name in names)


def _query_vectors(store: TiDBVectorStore, queries: list[str]) -> Any:
    """All query vectors, with the query-side semantics of ``embed_query``."""
    from langchain_tidb_jina._vectorstores import _core_client

    embedding = store.embeddings
    assert embedding is not None
    client = _core_client(embedding)
    if client is None:
        return [embedding.embed_query(q) for q in queries]
    # The client's own embed_queries (one request per batch) when faithful to embed_query.
    return embed_queries(client, queries)


async def _aquery_vectors(store: TiDBVectorStore, queries: list[str]) -> Any:
    from langchain_tidb_jina._vectorstores import _core_client

    embedding = store.embeddings
    assert embedding is not None
    client = _core_client(embedding)
    if client is None:
        return [await embedding.aembed_query(q) for q in queries]
    return await aembed_queries(client, queries)
