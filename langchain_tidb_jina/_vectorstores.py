"""``TiDBVectorStore``: LangChain's ``VectorStore`` over the core ``VectorTable``.

Translation only: LangChain ``Document`` objects and keyword arguments become
``VectorTable`` calls, ``Record`` / ``SearchResult`` objects become ``Document`` objects
with ``id`` set. Distances come from the core; LangChain relevance scores are
langchain-core's own functions of them (``_relevance``); nothing here touches SQL.
Ids, metadata, lengths and vectors are validated by the core, which also generates
missing ids.

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

import os
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

from langchain_tidb_jina._batch_search import BatchSearchMixin
from langchain_tidb_jina._batches import aadd_in_batches, add_in_batches, pop_batch_size
from langchain_tidb_jina._documents import (
    record_document,
    result_document,
    split_documents,
    with_distance,
    with_score,
)
from langchain_tidb_jina._embeddings import (
    HuggingFaceEndpointEmbeddings,
    JinaEmbeddings,
    ProviderEmbeddings,
    _ClientEmbeddings,
    alate_chunking_embed,
    late_chunking_embed,
)
from langchain_tidb_jina._relevance import relevance_fn
from langchain_tidb_jina._setup import check_wrapped, known_dimension, one_embedding, require_table
from langchain_tidb_jina._setup import no_extra as _no_extra
from langchain_tidb_jina._sql_client import TiDBVectorClient
from tidb_jina import ConfigurationError
from tidb_jina.store import AutoEmbedding, DistanceMetric, SearchResult, VectorTable

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
        snapshot_file: embedded file databases only, opt-in: ``True`` (or a directory)
            also keeps the table's vectors in a file that a new process maps instead of
            reading every row (see ``VectorTable``'s ``snapshot_file``).

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
        snapshot_file: bool | str | os.PathLike[str] = False,
    ) -> None:
        self._embedding = one_embedding(
            embedding_function, embedding, optional=auto_embedding is not None
        )
        if vector_table is not None:
            check_wrapped(vector_table, connection_string, engine, engine_args, snapshot_file)
            self._table = vector_table
            return
        if connection_string is not None and engine is not None:
            raise ConfigurationError("pass connection_string= or engine=, not both")
        self._table = VectorTable(
            engine if engine is not None else connection_string,
            table_name=table_name,
            dimension=vector_dimension or known_dimension(self._embedding),
            metric=None if distance_strategy is None else DistanceMetric.parse(distance_strategy),
            engine_args=engine_args,
            drop_existing=drop_existing_table,
            auto_embedding=auto_embedding,
            check_metadata=check_metadata,
            snapshot_file=snapshot_file,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Refused with what to do instead (a raw "Can't pickle local object" before)."""
        raise TypeError(
            f"a {type(self).__name__} cannot be pickled: it holds a connection pool, and its "
            "embeddings may hold an API key (never serialised here); make it again where it "
            "is used: TiDBVectorStore(connection_string=..., embedding=..., table_name=...)"
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
    def tidb_vector_client(self) -> TiDBVectorClient:
        """langchain-community's raw-SQL client: ``execute(sql, params)`` with tidb-vector's
        result shape; every other attribute is the core ``VectorTable``'s."""
        return TiDBVectorClient(self._table)

    @property
    def table_name(self) -> str:
        return self._table.table_name

    @property
    def distance_strategy(self) -> str:
        """The metric's name: ``"cosine"``, ``"l2"``, ``"inner_product"`` or ``"l1"``."""
        return self._table.metric.value

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """langchain-core's own distance -> relevance function for this metric (as PGVector
        and Chroma use), so a ``score_threshold`` carries over between stores; L1, which
        LangChain has none for, keeps the core's ``1 / (1 + d)``, and a negative inner
        product scores 0 (see ``_relevance``)."""
        return relevance_fn(self._table.metric)

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
        ``batch_size=n`` (LangChain's indexing API passes it) writes at most ``n`` rows
        per embedding call and write, in order; every row is checked before the first.
        If a later group fails (provider or database error), the groups before it stay
        written and the error's note lists them; calling again with the same ids
        completes the set (see ``langchain_tidb_jina._batches``).
        """
        batch_size = pop_batch_size(kwargs)
        _no_extra(kwargs, "add_texts")
        if batch_size is not None:
            return add_in_batches(self._table, texts, metadatas, ids, batch_size, self._embed)
        return self._table.add_texts(
            texts, ids=ids, metadatas=metadatas, embed=self._embed(metadatas)
        )

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`."""
        batch_size = pop_batch_size(kwargs)
        _no_extra(kwargs, "aadd_texts")
        if batch_size is not None:
            embed_for = self._aembed
            return await aadd_in_batches(self._table, texts, metadatas, ids, batch_size, embed_for)
        embed = self._aembed(metadatas)
        return await self._table.aio.add_texts(texts, ids=ids, metadatas=metadatas, embed=embed)

    def _embed(self, metadatas: Sequence[Any] | None = None) -> Callable[[list[str]], Any] | None:
        """Texts -> vectors: the core client's float32 matrix, or a user's lists (converted
        once; None when the table embeds. The core checks the rows before calling it.
        With late chunking, the chunks of each document (``metadatas``) share requests."""
        if self._embedding is None:
            return None
        late = late_chunking_embed(self._embedding, metadatas)  # type: ignore[arg-type]
        if late is not None:
            return late
        client = _core_client(self._embedding)
        if client is not None:
            return client.embed_documents  # type: ignore[no-any-return]
        return self._embedding.embed_documents  # lists: the core converts them once

    def _aembed(
        self, metadatas: Sequence[Any] | None = None
    ) -> Callable[[list[str]], Awaitable[Any]] | None:
        """Async :meth:`_embed`."""
        if self._embedding is None:
            return None
        late = alate_chunking_embed(self._embedding, metadatas)  # type: ignore[arg-type]
        if late is not None:
            return late
        client = _core_client(self._embedding)
        if client is not None:
            return client.aembed_documents  # type: ignore[no-any-return]
        return self._embedding.aembed_documents

    def add_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Upsert ``documents``; ``ids=`` wins over ``Document.id``, missing ids are new."""
        ids = kwargs.pop("ids", None)
        texts, metadatas, doc_ids = split_documents(documents)
        return self.add_texts(texts, metadatas, ids=ids or doc_ids, **kwargs)

    async def aadd_documents(self, documents: list[Document], **kwargs: Any) -> list[str]:
        """Async :meth:`add_documents`."""
        ids = kwargs.pop("ids", None)
        texts, metadatas, doc_ids = split_documents(documents)
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
        return [record_document(r) for r in self._table.get(list(ids))]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids`."""
        return [record_document(r) for r in await self._table.aio.get(list(ids))]

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
        return with_distance(self._search_query(query, k, filter, kwargs))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`."""
        return with_distance(await self._asearch_query(query, k, filter, kwargs))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents nearest to ``embedding``."""
        return [result_document(r) for r in self._search(embedding, k, filter, kwargs)]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        return [result_document(r) for r in await self._asearch(embedding, k, filter, kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, distance)`` pairs for ``embedding``, nearest first."""
        return with_distance(self._search(embedding, k, filter, kwargs))

    async def asimilarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score_by_vector`."""
        return with_distance(await self._asearch(embedding, k, filter, kwargs))

    def _similarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """``(document, relevance)``: LangChain's relevance function of the distance."""
        filter = kwargs.pop("filter", None)
        return self._relevance(self._search_query(query, k, filter, kwargs))

    async def _asimilarity_search_with_relevance_scores(
        self, query: str, k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        filter = kwargs.pop("filter", None)
        return self._relevance(await self._asearch_query(query, k, filter, kwargs))

    def _relevance(self, results: list[SearchResult]) -> list[tuple[Document, float]]:
        fn = self._select_relevance_score_fn()
        return [(result_document(r), fn(r.distance)) for r in results]

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
        return [result_document(r) for r in results]

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
        return [result_document(r) for r in results]

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
        return with_score(self._table.full_text_search(query, k=k, filter=filter))

    async def afull_text_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None
    ) -> list[tuple[Document, float]]:
        """Async :meth:`full_text_search_with_score`."""
        return with_score(await self._table.aio.full_text_search(query, k=k, filter=filter))

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
        return with_score(results)

    async def ahybrid_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **options: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`hybrid_search_with_score`."""
        vector = await self._aquery_vector(query)
        results = await self._table.aio.hybrid_search(vector, query, k=k, filter=filter, **options)
        return with_score(results)

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
        require_table(store._table, store._table.exists())
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
        require_table(store._table, await store._table.aio.exists())
        return store


# --- translation helpers ---------------------------------------------------------------


class TiDBVectorStoreRetriever(BatchSearchMixin, VectorStoreRetriever):
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
