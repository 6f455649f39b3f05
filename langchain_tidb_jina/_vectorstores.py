"""``TiDBVectorStore``: LangChain's ``VectorStore`` over the core ``VectorTable``.

Translation only: LangChain ``Document`` objects and keyword arguments become
``VectorTable`` calls, ``Record`` / ``SearchResult`` objects become ``Document`` objects
with ``id`` set. Distances and relevance scores come from the core (per metric, scores in
[0, 1]); nothing here touches SQL or computes a score. Ids, metadata, lengths and vectors
are validated by the core, which also generates missing ids.

Vectors stay NumPy: with tidb-jina's own embeddings (not a subclass overriding their
methods) the core client's float32 matrix reaches the table as it is; another
``Embeddings``' lists go to the core, which converts and checks them once. The texts, ids
and metadata are checked by the core before anything is embedded
(``VectorTable.add_texts(..., embed=...)``).

The constructor takes langchain-community's ``TiDBVectorStore`` arguments
(``connection_string``, ``embedding_function``, ``table_name``, ``distance_strategy``,
``engine_args``, ``drop_existing_table``) so its examples run with only the import
changed, plus ``embedding``, ``engine``, ``vector_table`` and ``vector_dimension``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever
from typing_extensions import Self

from langchain_tidb_jina._embeddings import (
    HuggingFaceEndpointEmbeddings,
    JinaEmbeddings,
    ProviderEmbeddings,
    _ClientEmbeddings,
)
from tidb_jina._errors import ConfigurationError, InvalidInputError, SchemaError
from tidb_jina.store import AutoEmbedding, DistanceMetric, Record, SearchResult, VectorTable

__all__ = ["DEFAULT_DISTANCE_STRATEGY", "DEFAULT_TABLE_NAME", "TiDBVectorStore"]

# langchain-community's defaults, so a table created by it opens under the same name.
DEFAULT_TABLE_NAME = "langchain_vector"
DEFAULT_DISTANCE_STRATEGY = "cosine"

Filter = Mapping[str, Any]


class TiDBVectorStore(VectorStore):
    """A LangChain vector store on TiDB (or the embedded engine for local work).

    Args:
        connection_string: ``mysql+pymysql://USER:PASSWORD@HOST:4000/DB`` for TiDB or
            ``sqlite:///path.db`` / ``sqlite://`` for the embedded engine. When no
            connection is given at all, ``$TIDB_DATABASE_URL`` is used.
        embedding_function: the LangChain ``Embeddings`` (langchain-community's name).
        table_name: the table (default ``"langchain_vector"``, as langchain-community).
        distance_strategy: ``"cosine"``, ``"l2"`` / ``"euclidean"``,
            ``"inner_product"`` / ``"max_inner_product"``, ``"l1"``, or a
            ``DistanceStrategy`` member of another library. Omitted: the table's own
            metric (its record, or a langchain-community table's ``hnsw(distance=...)``
            comment), cosine for a new table. A different one than the table's raises.
        embedding: the same as ``embedding_function`` (LangChain's usual name).
        engine: an existing SQLAlchemy ``Engine`` instead of a connection string.
        vector_table: an existing core ``VectorTable`` to wrap (then no other
            connection, table or metric argument may be given).
        vector_dimension: the vector dimension. When omitted it is read from the
            existing table, or taken from the embeddings' ``dimension`` when the model
            is known (tidb-jina's embeddings), or from the first vectors written.
        engine_args: extra ``sqlalchemy.create_engine`` arguments.
        drop_existing_table: drop the table before first use.
        check_metadata: False opens a table whose recorded embedding model or metric
            differs from this store's (otherwise a ``SchemaError`` names both).

    The constructor does no I/O: the table is read or created on first use.
    """

    def __init__(
        self,
        connection_string: str | sa.URL | None = None,
        embedding_function: Embeddings | None = None,
        table_name: str = DEFAULT_TABLE_NAME,
        distance_strategy: Any = None,
        *,
        embedding: Embeddings | None = None,
        engine: sa.Engine | None = None,
        vector_table: VectorTable | None = None,
        vector_dimension: int | None = None,
        engine_args: Mapping[str, Any] | None = None,
        drop_existing_table: bool = False,
        auto_embedding: AutoEmbedding | str | None = None,
        check_metadata: bool = True,
    ) -> None:
        self._embedding = _one_embedding(
            embedding_function, embedding, optional=auto_embedding is not None
        )
        if vector_table is not None:
            _check_wrapped(vector_table, connection_string, engine, engine_args)
            self._table = vector_table
            return
        if connection_string is not None and engine is not None:
            raise ConfigurationError("pass connection_string= or engine=, not both")
        self._table = VectorTable(
            engine if engine is not None else connection_string,
            table_name=table_name,
            dimension=vector_dimension or _known_dimension(self._embedding),
            metric=None if distance_strategy is None else DistanceMetric.parse(distance_strategy),
            engine_args=engine_args,
            drop_existing=drop_existing_table,
            auto_embedding=auto_embedding,
            check_metadata=check_metadata,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(table={self._table!r}, "
            f"embedding={type(self._embedding).__name__})"
        )

    # --- properties ---------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings | None:
        """The embeddings used for documents and queries."""
        return self._embedding

    @property
    def vector_table(self) -> VectorTable:
        """The core ``VectorTable`` this store translates to."""
        return self._table

    @property
    def tidb_vector_client(self) -> VectorTable:
        """The underlying table client (langchain-community's name for it)."""
        return self._table

    @property
    def table_name(self) -> str:
        return self._table.table_name

    @property
    def distance_strategy(self) -> str:
        """The metric's name: ``"cosine"``, ``"l2"``, ``"inner_product"`` or ``"l1"``."""
        return self._table.metric.value

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """The core's per-metric distance -> [0, 1] score function."""
        return self._table.metric.score

    # --- writes -------------------------------------------------------------------------

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` (as documents) and upsert them; returns their ids.

        Missing ids (``None`` entries or no ``ids``) get UUID4s; an existing id is
        replaced. Texts are checked (no ``None``, empty or whitespace-only text) before
        anything is embedded. ``texts`` may be any iterable, including a generator.
        """
        _no_extra(kwargs, "add_texts")
        return self._table.add_texts(texts, ids=ids, metadatas=metadatas, embed=self._embed())

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`."""
        _no_extra(kwargs, "aadd_texts")
        return await self._table.aio.add_texts(
            texts, ids=ids, metadatas=metadatas, embed=self._aembed()
        )

    def _embed(self) -> Callable[[list[str]], Any] | None:
        """Texts -> vectors: the core client's float32 matrix, or a user's lists (converted
        once; None when the table embeds. The core checks the rows before calling it."""
        if self._embedding is None:
            return None
        client = _core_client(self._embedding)
        if client is not None:
            return client.embed_documents  # type: ignore[no-any-return]
        return self._embedding.embed_documents  # lists: the core converts them once

    def _aembed(self) -> Callable[[list[str]], Awaitable[Any]] | None:
        """Async :meth:`_embed`."""
        if self._embedding is None:
            return None
        client = _core_client(self._embedding)
        if client is not None:
            return client.aembed_documents  # type: ignore[no-any-return]
        return self._embedding.aembed_documents

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert ``documents``; ``ids=`` wins over ``Document.id``, missing ids are new."""
        ids = kwargs.pop("ids", None)
        texts, metadatas, doc_ids = _split_documents(documents)
        return self.add_texts(texts, metadatas, ids=ids or doc_ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async :meth:`add_documents`."""
        ids = kwargs.pop("ids", None)
        texts, metadatas, doc_ids = _split_documents(documents)
        return await self.aadd_texts(texts, metadatas, ids=ids or doc_ids, **kwargs)

    def delete(
        self, ids: list[str] | None = None, *, filter: Filter | None = None, **kwargs: Any
    ) -> bool:
        """Delete by ids and/or metadata filter. Missing ids are ignored.

        With neither, nothing is deleted and ``InvalidInputError`` is raised: deleting
        every row takes an explicit :meth:`clear`.
        """
        _no_extra(kwargs, "delete")
        self._table.delete(ids, filter=filter)
        return True

    async def adelete(
        self, ids: list[str] | None = None, *, filter: Filter | None = None, **kwargs: Any
    ) -> bool:
        """Async :meth:`delete`."""
        _no_extra(kwargs, "adelete")
        await self._table.aio.delete(ids, filter=filter)
        return True

    def clear(self) -> int:
        """Delete every row (the table stays); returns how many were deleted."""
        return self._table.clear()

    async def aclear(self) -> int:
        """Async :meth:`clear`."""
        return await self._table.aio.clear()

    def drop_vectorstore(self) -> None:
        """Drop the table and everything in it (langchain-community's name)."""
        self._table.drop()

    async def adrop_vectorstore(self) -> None:
        """Async :meth:`drop_vectorstore`."""
        await self._table.aio.drop()

    async def aclose(self) -> None:
        """Close the async connection pool of the running event loop (if one was opened).

        Async calls on TiDB and file databases use a pool per event loop; call this before
        the loop ends to close its connections cleanly.
        """
        await self._table.aclose()

    def close(self) -> None:
        """Release the table's connections (see ``VectorTable.close``)."""
        self._table.close()

    # --- reads --------------------------------------------------------------------------

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents for ``ids`` (missing ids are skipped), with ``Document.id`` set."""
        return [_record_document(r) for r in self._table.get(list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids`."""
        return [_record_document(r) for r in await self._table.aio.get(list(ids))]

    def similarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents nearest to ``query``; ``filter`` in tidb-jina's language."""
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        pairs = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [doc for doc, _ in pairs]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, distance)`` pairs, nearest first (lower is closer, as the peer).

        For a [0, 1] relevance score use :meth:`similarity_search_with_relevance_scores`.
        """
        return _with_distance(self._search_query(query, k, filter, kwargs))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        return _with_distance(await self._asearch_query(query, k, filter, kwargs))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents nearest to ``embedding``."""
        return [_result_document(r) for r in self._search(embedding, k, filter, kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        return [_result_document(r) for r in await self._asearch(embedding, k, filter, kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, distance)`` pairs for ``embedding``, nearest first."""
        return _with_distance(self._search(embedding, k, filter, kwargs))

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score_by_vector`."""
        return _with_distance(await self._asearch(embedding, k, filter, kwargs))

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, relevance)`` pairs; the score is the core's, in [0, 1]."""
        filter = kwargs.pop("filter", None)
        return _with_score(self._search_query(query, k, filter, kwargs))

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        return _with_score(await self._asearch_query(query, k, filter, kwargs))

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents picked by maximal marginal relevance among ``fetch_k`` nearest."""
        vector = self._query_vector(query)
        return self.max_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **kwargs
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search`."""
        vector = await self._aquery_vector(query)
        return await self.amax_marginal_relevance_search_by_vector(
            vector, k, fetch_k, lambda_mult, filter, **kwargs
        )

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """MMR around ``embedding``."""
        _no_extra(kwargs, "max_marginal_relevance_search")
        results = self._table.max_marginal_relevance_search(
            embedding, k=k, fetch_k=fetch_k, lambda_mult=lambda_mult, filter=filter
        )
        return [_result_document(r) for r in results]

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter | None = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search_by_vector`."""
        _no_extra(kwargs, "amax_marginal_relevance_search")
        results = await self._table.aio.max_marginal_relevance_search(
            embedding, k=k, fetch_k=fetch_k, lambda_mult=lambda_mult, filter=filter
        )
        return [_result_document(r) for r in results]

    def _search(
        self, vector: Any, k: int, filter: Filter | None, kwargs: dict[str, Any]
    ) -> list[SearchResult]:
        options = _search_options(kwargs, "similarity_search")
        return self._table.search(vector, k=k, filter=filter, **options)

    async def _asearch(
        self, vector: Any, k: int, filter: Filter | None, kwargs: dict[str, Any]
    ) -> list[SearchResult]:
        options = _search_options(kwargs, "asimilarity_search")
        return await self._table.aio.search(vector, k=k, filter=filter, **options)

    def _search_query(
        self, query: str, k: int, filter: Filter | None, kwargs: dict[str, Any]
    ) -> list[SearchResult]:
        if self._embedding is not None:
            return self._search(self._query_vector(query), k, filter, kwargs)
        # The table embeds the query (on TiDB Cloud Starter the server does).
        options = _search_options(kwargs, "similarity_search")
        return self._table.search_text(query, k=k, filter=filter, **options)

    async def _asearch_query(
        self, query: str, k: int, filter: Filter | None, kwargs: dict[str, Any]
    ) -> list[SearchResult]:
        if self._embedding is not None:
            return await self._asearch(await self._aquery_vector(query), k, filter, kwargs)
        options = _search_options(kwargs, "asimilarity_search")
        return await self._table.aio.search_text(query, k=k, filter=filter, **options)

    def _query_vector(self, query: str) -> Any:
        """The query's vector (the table's when it embeds: MMR and hybrid need one)."""
        if self._embedding is None:
            return self._table.query_vector(query)
        client = _core_client(self._embedding)
        if client is not None:
            return client.embed_query(query)
        return self._embedding.embed_query(query)

    async def _aquery_vector(self, query: str) -> Any:
        if self._embedding is None:
            return await self._table.aio.query_vector(query)
        client = _core_client(self._embedding)
        if client is not None:
            return await client.aembed_query(query)
        return await self._embedding.aembed_query(query)

    # --- full-text and hybrid -------------------------------------------------------------

    def full_text_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None
    ) -> list[tuple[Document, float]]:
        """``(document, score)`` by BM25 on the words of ``query`` (best hit scores 1).

        TiDB Cloud Starter or the embedded engine; ``retriever search_type="full_text"``.
        """
        return _with_score(self._table.full_text_search(query, k=k, filter=filter))

    async def afull_text_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None
    ) -> list[tuple[Document, float]]:
        """Async :meth:`full_text_search_with_score`."""
        return _with_score(await self._table.aio.full_text_search(query, k=k, filter=filter))

    def full_text_search(
        self, query: str, k: int = 4, filter: Filter | None = None
    ) -> list[Document]:
        """The ``k`` documents best matching the words of ``query`` (BM25)."""
        return [doc for doc, _ in self.full_text_search_with_score(query, k, filter)]

    async def afull_text_search(
        self, query: str, k: int = 4, filter: Filter | None = None
    ) -> list[Document]:
        """Async :meth:`full_text_search`."""
        return [doc for doc, _ in await self.afull_text_search_with_score(query, k, filter)]

    def hybrid_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **options: Any
    ) -> list[tuple[Document, float]]:
        """``(document, fused score in [0, 1])``: vector and full-text search fused.

        ``options``: ``fusion="rrf"`` (default, ``rrf_k=60``) or ``"weighted"`` with
        ``alpha`` (1 = pure vector), and ``num_candidates`` per side.
        """
        vector = self._query_vector(query)
        results = self._table.hybrid_search(vector, query, k=k, filter=filter, **options)
        return _with_score(results)

    async def ahybrid_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **options: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`hybrid_search_with_score`."""
        vector = await self._aquery_vector(query)
        results = await self._table.aio.hybrid_search(vector, query, k=k, filter=filter, **options)
        return _with_score(results)

    def hybrid_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **options: Any
    ) -> list[Document]:
        """The ``k`` best documents by vector + full-text search (see the ``_with_score``)."""
        return [doc for doc, _ in self.hybrid_search_with_score(query, k, filter, **options)]

    async def ahybrid_search(
        self, query: str, k: int = 4, filter: Filter | None = None, **options: Any
    ) -> list[Document]:
        """Async :meth:`hybrid_search`."""
        pairs = await self.ahybrid_search_with_score(query, k, filter, **options)
        return [doc for doc, _ in pairs]

    def as_retriever(self, **kwargs: Any) -> TiDBVectorStoreRetriever:
        """A retriever; ``search_type`` is ``"similarity"`` (default),
        ``"similarity_score_threshold"``, ``"mmr"``, ``"hybrid"`` or ``"full_text"``."""
        tags = kwargs.pop("tags", None) or [*self._get_retriever_tags()]
        return TiDBVectorStoreRetriever(vectorstore=self, tags=tags, **kwargs)

    # --- factories ----------------------------------------------------------------------

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Build a store (``kwargs`` are constructor arguments) and add ``texts``."""
        store = cls(embedding=embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> Self:
        """Async :meth:`from_texts`."""
        store = cls(embedding=embedding, **kwargs)
        await store.aadd_texts(texts, metadatas, ids=ids)
        return store

    @classmethod
    def from_existing_vector_table(
        cls,
        embedding: Embeddings,
        connection_string: str | sa.URL | None = None,
        table_name: str = DEFAULT_TABLE_NAME,
        distance_strategy: Any = None,
        **kwargs: Any,
    ) -> Self:
        """Open a table that exists (raises ``SchemaError`` if it does not)."""
        store = cls(connection_string, embedding, table_name, distance_strategy, **kwargs)
        _require_table(store._table, store._table.exists())
        return store

    @classmethod
    async def afrom_existing_vector_table(
        cls,
        embedding: Embeddings,
        connection_string: str | sa.URL | None = None,
        table_name: str = DEFAULT_TABLE_NAME,
        distance_strategy: Any = None,
        **kwargs: Any,
    ) -> Self:
        """Async :meth:`from_existing_vector_table`."""
        store = cls(connection_string, embedding, table_name, distance_strategy, **kwargs)
        _require_table(store._table, await store._table.aio.exists())
        return store


# --- translation helpers ---------------------------------------------------------------


class TiDBVectorStoreRetriever(VectorStoreRetriever):
    """LangChain's vector-store retriever plus ``hybrid`` and ``full_text`` search types."""

    allowed_search_types: ClassVar[Collection[str]] = (
        "similarity",
        "similarity_score_threshold",
        "mmr",
        "hybrid",
        "full_text",
    )

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        store = self.vectorstore
        assert isinstance(store, TiDBVectorStore)
        if self.search_type == "hybrid":
            return store.hybrid_search(query, **(self.search_kwargs | kwargs))
        if self.search_type == "full_text":
            return store.full_text_search(query, **(self.search_kwargs | kwargs))
        return super()._get_relevant_documents(query, run_manager=run_manager, **kwargs)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        store = self.vectorstore
        assert isinstance(store, TiDBVectorStore)
        if self.search_type == "hybrid":
            return await store.ahybrid_search(query, **(self.search_kwargs | kwargs))
        if self.search_type == "full_text":
            return await store.afull_text_search(query, **(self.search_kwargs | kwargs))
        return await super()._aget_relevant_documents(query, run_manager=run_manager, **kwargs)


def _search_options(kwargs: dict[str, Any], method: str) -> dict[str, Any]:
    """Core search options a caller may pass through (TiDB filter strategy)."""
    options: dict[str, Any] = {
        key: kwargs.pop(key) for key in ("prefilter", "num_candidates") if key in kwargs
    }
    _no_extra(kwargs, method)
    return options


_OUR_EMBEDDINGS = (JinaEmbeddings, HuggingFaceEndpointEmbeddings, ProviderEmbeddings)


def _core_client(embedding: Embeddings) -> Any:
    """The core client behind tidb-jina's own embeddings (float32 NumPy out), else None.

    Only when the embedding methods are ours: a subclass that overrides them (prefixes,
    caching, logging) is called like any other ``Embeddings``.
    """
    if not isinstance(embedding, _OUR_EMBEDDINGS):
        return None
    own = all(
        getattr(type(embedding), name) is getattr(_ClientEmbeddings, name)
        for name in ("embed_documents", "aembed_documents", "embed_query", "aembed_query")
    )
    return embedding.client if own else None


def _split_documents(
    documents: Iterable[Document],
) -> tuple[list[str], list[dict[str, Any]], list[str | None] | None]:
    docs = list(documents)
    doc_ids = [doc.id for doc in docs]
    return (
        [doc.page_content for doc in docs],
        [doc.metadata for doc in docs],
        doc_ids if any(doc_ids) else None,
    )


def _record_document(record: Record) -> Document:
    return Document(id=record.id, page_content=record.document or "", metadata=record.metadata)


def _result_document(result: SearchResult) -> Document:
    return Document(id=result.id, page_content=result.document or "", metadata=result.metadata)


def _with_distance(results: list[SearchResult]) -> list[tuple[Document, float]]:
    return [(_result_document(r), r.distance) for r in results]


def _with_score(results: list[SearchResult]) -> list[tuple[Document, float]]:
    return [(_result_document(r), r.score) for r in results]


def _one_embedding(
    embedding_function: Embeddings | None, embedding: Embeddings | None, *, optional: bool = False
) -> Embeddings | None:
    if (
        embedding_function is not None
        and embedding is not None
        and embedding_function is not embedding
    ):
        raise ConfigurationError("pass embedding= or embedding_function=, not both")
    chosen = embedding if embedding is not None else embedding_function
    if chosen is None and optional:
        return None  # the table embeds (auto-embedding)
    if chosen is None:
        raise ConfigurationError(
            "TiDBVectorStore needs embeddings: pass embedding=JinaEmbeddings(...) (or "
            "embedding_function=, langchain-community's name), or let the table embed "
            "with auto_embedding='jina_ai/jina-embeddings-v3'"
        )
    if not isinstance(chosen, Embeddings):
        raise ConfigurationError(
            f"embedding must be a langchain_core Embeddings, not {type(chosen).__name__}"
        )
    return chosen


def _known_dimension(embedding: Embeddings | None) -> int | None:
    """The model's output size when the embeddings know it without a call (ours do)."""
    dimension = getattr(embedding, "dimension", None)
    return dimension if isinstance(dimension, int) and not isinstance(dimension, bool) else None


def _check_wrapped(
    table: VectorTable,
    connection_string: Any,
    engine: Any,
    engine_args: Any,
) -> None:
    if not isinstance(table, VectorTable):
        raise ConfigurationError(
            f"vector_table must be a tidb_jina.store.VectorTable, not {type(table).__name__}"
        )
    if connection_string is not None or engine is not None or engine_args:
        raise ConfigurationError(
            "vector_table= already has its connection; drop connection_string, engine and "
            "engine_args"
        )


def _require_table(table: VectorTable, exists: bool) -> None:
    if not exists:
        raise SchemaError(
            f"table {table.table_name!r} does not exist in this database; create it with "
            "TiDBVectorStore.from_texts(...) / from_documents(...), or check table_name "
            "and the connection string"
        )


def _no_extra(kwargs: Mapping[str, Any], method: str) -> None:
    """Unknown keyword arguments are errors, never silently ignored."""
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise InvalidInputError(f"{method}() got unsupported keyword arguments: {names}")
