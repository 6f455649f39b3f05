"""``VectorTable``: one vector table on TiDB or the embedded engine (the facade).

The facade validates input, parses a filter once, and calls the engine's
:class:`~tidb_jina.store._backend.Backend` (``_backend_tidb`` or ``_backend_embedded``),
which owns everything engine-specific. ``TableBase`` (``_table_base``) holds the
lifecycle and writes; reads and deletes that are the same SQL everywhere are in
``_crud``; hybrid search and MMR in ``_search``; the async view's machinery in
``_async``.

Life cycle: the constructor does no I/O. The table's shape is read on first use; the
table is created on first write (``CREATE TABLE IF NOT EXISTS``), with its dimension
taken from ``dimension=`` or the first vectors written.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina._errors import ConfigurationError, InvalidInputError, UnsupportedFeatureError
from tidb_jina.embeddings._inputs import validate_texts
from tidb_jina.embeddings._late import rows_embed
from tidb_jina.store import _crud, _search, _vector
from tidb_jina.store._async import same_signature, twin
from tidb_jina.store._backend import Query, SearchOptions, positive
from tidb_jina.store._db import batch_slices
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._results import Record, SearchResult
from tidb_jina.store._rows import last_occurrences
from tidb_jina.store._table_base import (
    DEFAULT_TABLE_NAME,
    FilterArg,
    PreparedRows,
    TableBase,
    _ids,
    _parse,
)
from tidb_jina.store._vector_search import vector_search

__all__ = ["DEFAULT_TABLE_NAME", "AsyncVectorTable", "VectorTable"]


class VectorTable(TableBase):
    """A table of ``(id, embedding, document, meta)`` rows with vector search.

    Args:
        connection: ``mysql+pymysql://...`` (or ``mysql://``) for TiDB,
            ``sqlite:///path.db`` / ``sqlite://`` for the embedded engine, or an existing
            SQLAlchemy ``Engine``. When omitted, ``$TIDB_DATABASE_URL`` is used; with
            neither, ``ConfigurationError`` (never a silent throwaway store).
        table_name: ASCII letters, digits and underscores.
        dimension: the vector dimension. Optional: an existing table's dimension is read
            (and checked against this), a new table takes the first vectors' length.
        metric: ``"cosine"`` (default), ``"l2"``, ``"inner_product"`` or ``"l1"``.
        engine_args: extra ``sqlalchemy.create_engine`` arguments (URL only).
        drop_existing: drop the table before first use.
        batch_rows, batch_bytes: upper bounds of one upsert batch (one transaction).
        vector_index: TiDB only: give new tables an HNSW vector index for ``metric``
            (cosine and l2; TiFlash required, else searches stay exact and you are told
            once). See :meth:`create_vector_index` and :meth:`index_status`.
        embedder: an ``EmbeddingProvider`` (``JinaClient``, ``HuggingFaceClient``,
            ``LexicalEmbedder`` ...) that :meth:`add_texts` and :meth:`search_text` use.
        auto_embedding: let the table embed (an :class:`AutoEmbedding` or its model
            name): on TiDB Cloud Starter the server does it (``EMBED_TEXT`` generated
            column); elsewhere the matching core client does, the same way.
        indexed_key: a metadata key to index in new tables (a generated column
            ``meta_<key>`` with its value, plus an index), so ``$eq`` / ``$in`` filters on
            it, e.g. deleting a LlamaIndex document by ``ref_doc_id``, do not scan the
            table. Its values must be scalars (strings of at most 512 characters).
        full_text: create the full-text index with the table (TiDB Cloud Starter only;
            the embedded engine builds its FTS5 index on first use anyway).
        verify_tls: TiDB Cloud only: ``False`` skips certificate verification (logs a
            warning). Verified TLS is the default.
        search_cache: embedded engine only: keep the vectors in memory between searches
            (always exact: see :mod:`tidb_jina.store._embedded`). Costs 4 bytes per
            dimension per row of RAM.
        snapshot_file: embedded file databases only, opt-in: also keep the vectors in a
            file the next open maps (True: beside the database, or a directory). README.
    """

    @property
    def aio(self) -> AsyncVectorTable:
        """The async view of this table: the same methods, ``async def``.

        TiDB and file databases get a native async driver (aiomysql / aiosqlite) that runs
        this very code through SQLAlchemy's greenlet bridge; an in-memory database or an
        Engine you passed in is served from a worker thread instead.
        """
        if self._aio is None:
            self._aio = AsyncVectorTable(self)
        return self._aio

    def __enter__(self) -> VectorTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> VectorTable:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- reads and deletes --------------------------------------------------------------

    def delete(self, ids: Iterable[str] | None = None, *, filter: FilterArg = None) -> int:
        """Delete rows by id and/or metadata filter; returns how many were deleted.

        Both empty is an error: deleting every row needs an explicit :meth:`clear`.
        Ids that do not exist are ignored.
        """
        id_list = _ids(ids)
        parsed = _parse(filter)
        if id_list is None and parsed is None:
            given = "" if filter is None else f" (the filter {filter!r} sets no condition)"
            raise InvalidInputError(
                f"delete() needs ids or a filter{given}; to delete every row call clear()"
            )
        table = self._load()
        if table is None or id_list == []:
            return 0
        where = self._where(table, parsed)
        return self._backend.delete(table, id_list, where)

    def clear(self) -> int:
        """Delete every row (the table stays). Returns how many were deleted."""
        table = self._load()
        return 0 if table is None else self._backend.clear(table)

    def _where(self, table: sa.Table, filter: Filter | None) -> sa.ColumnElement[bool] | None:
        return _crud.where_clause(table, filter, self.engine.dialect.name, self.indexed_key)

    def count(self, filter: FilterArg = None) -> int:
        parsed = _parse(filter)
        table = self._load()
        return 0 if table is None else _crud.count(self._db, table, self._where(table, parsed))

    def get(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: FilterArg = None,
        limit: int | None = None,
        include_embeddings: bool = False,
    ) -> list[Record]:
        """Rows by id (in the order given; missing ids are skipped) and/or filter."""
        parsed = _parse(filter)
        id_list = _ids(ids)
        limit = None if limit is None else positive(limit, "limit")
        table = self._load()
        if table is None or id_list == []:
            return []
        where = self._where(table, parsed)
        return _crud.get(self._db, table, id_list, where, limit, include_embeddings)

    def search(
        self,
        vector: Any,
        *,
        k: int = 4,
        filter: FilterArg = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
        prefilter: bool | None = None,
        num_candidates: int | None = None,
    ) -> list[SearchResult]:
        """The ``k`` nearest rows to ``vector`` by the table's metric, nearest first.

        ``filter`` is a metadata filter (see :mod:`tidb_jina.store._filter_tree`);
        ``max_distance`` drops rows farther than it; ``ids`` restricts the search to
        those rows.

        Filtered search on TiDB (the embedded engine is always exact):
        ``prefilter=None`` (default) runs the index-friendly post-filter (nearest
        ``num_candidates`` rows first, default ``max(10 * k, 100)``, then the filter) and,
        if that yields fewer than ``k`` rows, one exact pre-filter query;
        ``prefilter=False`` is post-filter only (fastest, may return fewer than ``k``);
        ``prefilter=True`` is the exact pre-filter only (scans every matching row).
        """
        options = self._search_options(
            k=k,
            filter=filter,
            ids=ids,
            max_distance=max_distance,
            include_embeddings=include_embeddings,
            prefilter=prefilter,
            num_candidates=num_candidates,
        )
        return self._vector_search(vector, options)

    def search_text(
        self,
        text: str,
        *,
        k: int = 4,
        filter: FilterArg = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
        prefilter: bool | None = None,
        num_candidates: int | None = None,
    ) -> list[SearchResult]:
        """Search by the meaning of ``text``: embedded as a query (the query task) by the
        table's embedder, or by TiDB itself (``VEC_EMBED_*_DISTANCE``) in auto-embedding
        mode. Same options and results as :meth:`search`."""
        options = self._search_options(
            k=k,
            filter=filter,
            ids=ids,
            max_distance=max_distance,
            include_embeddings=include_embeddings,
            prefilter=prefilter,
            num_candidates=num_candidates,
        )
        (text,) = validate_texts([text], "query")
        if not self.server_embeds:
            return self._vector_search(self.query_vector(text), options)
        table = self._load()
        if table is None or options.ids == []:
            return []
        return self._backend.search(table, Query(text=text), options)

    def _vector_search(self, vector: Any, options: SearchOptions) -> list[SearchResult]:
        return vector_search(self, vector, options)

    def query_vector(self, text: str) -> np.ndarray:
        """The query vector of ``text`` (the query task of the table's embedder).

        Raises ``UnsupportedFeatureError`` when TiDB embeds (auto-embedding on TiDB Cloud
        Starter): the server keeps that vector to itself; use :meth:`search_text`.
        """
        (text,) = validate_texts([text], "query")
        return _vector.as_vector(self.text_embedder().embed_query(text))

    def text_embedder(self) -> Any:
        """The client that embeds texts on this side: ``embedder=``, else the client that
        matches ``auto_embedding`` (raises when TiDB embeds and no embedder was given)."""
        if self.embedder is None and self.server_embeds:
            raise UnsupportedFeatureError(
                "TiDB embeds texts itself in auto-embedding mode and keeps the query's vector "
                "to itself: use search_text(); for MMR or hybrid search pass embedder= (a "
                "client that embeds like the server) to the table"
            )
        if self.embedder is None and self.auto_embedding is not None:
            self.embedder = self.auto_embedding.client()
        if self.embedder is None:
            raise ConfigurationError(
                "this table has no embedder: pass embedder=JinaClient(...) (or any "
                "EmbeddingProvider) or auto_embedding='jina_ai/jina-embeddings-v3', or "
                "embed the texts yourself and call upsert()"
            )
        self._check_embedder(self.embedder)  # it may have been set after construction
        return self.embedder

    def add_texts(
        self,
        texts: Iterable[str],
        *,
        ids: Iterable[str | None] | None = None,
        metadatas: Iterable[Mapping[str, Any] | None] | None = None,
        embed: Callable[[list[str]], Any] | None = None,
    ) -> list[str]:
        """Embed ``texts`` as passages and upsert them; returns the ids.

        The texts, ids and metadata are checked before anything is embedded or sent.
        ``embed`` (texts -> vectors, e.g. a provider's ``embed_documents``) overrides the
        table's embedder; in auto-embedding mode on TiDB Cloud, TiDB embeds them itself.
        """
        text_list = validate_texts(texts)
        if not text_list:  # nothing to write: check the other columns, touch nothing
            self._prepare(0, ids, text_list, metadatas)
            return []
        self._load()  # the table's id length bounds the ids
        prepared = self._prepare(len(text_list), ids, text_list, metadatas)
        if embed is None and self.server_embeds:
            return self._insert_texts(prepared)
        if embed is None:
            embedder = self.text_embedder()
            embed = rows_embed(embedder, prepared.metas) or embedder.embed_documents
        self._check_embedder(embed)  # before paying for the embeddings
        vectors = embed(text_list)
        return self._write(_vector.as_matrix(vectors, self.dimension), prepared, embed)

    def _insert_texts(self, prepared: PreparedRows) -> list[str]:
        """Rows whose vectors TiDB computes (auto-embedding on TiDB Cloud Starter)."""
        id_list, documents, metas = prepared
        table = self._load()
        if table is None:
            table = self._create(self.dimension)  # type: ignore[arg-type]
        keep = last_occurrences(id_list)
        rows = [(id_list[i], documents[i], metas[i]) for i in keep]
        sizes = [self._row_size(id_list[i], documents[i], metas[i], 0) for i in keep]
        max_rows = min(self.batch_rows, self._backend.text_batch_rows)
        self._backend.insert_texts(table, rows, batch_slices(sizes, max_rows, self.batch_bytes))
        return id_list

    # --- full-text, hybrid and MMR ------------------------------------------------------

    def full_text_search(
        self,
        text: str,
        *,
        k: int = 4,
        filter: FilterArg = None,
        ids: Iterable[str] | None = None,
    ) -> list[SearchResult]:
        """Rows whose document matches the words of ``text``, best BM25 score first.

        Words are OR-ed, as TiDB's ``FTS_MATCH_WORD`` does; ``ids`` restricts the search
        to those rows. See :class:`SearchResult` for the scores.
        """
        k = positive(k, "k")
        parsed = _parse(filter)
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, got {type(text).__name__}")
        if self._backend.full_text_error:
            raise UnsupportedFeatureError(self._backend.full_text_error)
        return self._text_search(text, k, parsed, _ids(ids))

    def _text_search(
        self, text: str, k: int, filter: Filter | None, ids: list[str] | None
    ) -> list[SearchResult]:
        table = self._load()
        if table is None or not text.strip() or ids == []:
            return []
        where = _crud.where_clause(table, filter, self.engine.dialect.name, self.indexed_key, ids)
        rows = self._backend.full_text_rows(table, text, k, where)
        top = max((float(r.text_score) for r in rows), default=0.0)
        return [
            SearchResult(
                id=r.id,
                document=r.document,
                metadata=r.meta or {},
                distance=math.nan,
                score=float(r.text_score) / top if top > 0 else 0.0,
                text_score=float(r.text_score),
            )
            for r in rows
        ]

    def hybrid_search(
        self,
        vector: Any,
        text: str,
        *,
        k: int = 4,
        filter: FilterArg = None,
        fusion: str = "rrf",
        rrf_k: int = 60,
        alpha: float = 0.5,
        num_candidates: int | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[SearchResult]:
        """Vector search and full-text search, fused.

        ``fusion="rrf"`` (default): reciprocal rank fusion with ``rrf_k`` (60), scaled to
        [0, 1]. ``fusion="weighted"``: ``alpha * vector score + (1 - alpha) * BM25 / max``
        (``alpha`` = 1 is pure vector search). Each side contributes its best
        ``num_candidates`` rows (default ``max(4 * k, 40)``). Every hit carries its real
        vector distance and, when the text matched, its BM25 ``text_score``.
        """
        k = positive(k, "k")
        parsed = _parse(filter)
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, got {type(text).__name__}")
        if self._backend.full_text_error:
            raise UnsupportedFeatureError(self._backend.full_text_error)
        pool = positive(num_candidates, "num_candidates") if num_candidates else max(4 * k, 40)
        self._load()
        query = _vector.as_vector(vector, self.dimension)
        return _search.hybrid(
            self,
            query,
            text,
            k=k,
            filter=parsed,
            fusion=fusion,
            rrf_k=rrf_k,
            alpha=alpha,
            pool=pool,
            ids=_ids(ids),
        )

    def max_marginal_relevance_search(
        self,
        vector: Any,
        *,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterArg = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
    ) -> list[SearchResult]:
        """Fetch ``fetch_k`` nearest rows, then pick ``k`` by maximal marginal relevance."""
        k, fetch_k = positive(k, "k"), positive(fetch_k, "fetch_k")
        parsed = _parse(filter)
        self._load()
        query = _vector.as_vector(vector, self.dimension)
        return _search.mmr(
            self,
            query,
            k=k,
            fetch_k=fetch_k,
            lambda_mult=lambda_mult,
            filter=parsed,
            include_embeddings=include_embeddings,
            ids=_ids(ids),
        )


class AsyncVectorTable:
    """The async view of a :class:`VectorTable` (get it as ``table.aio``): the same
    methods and signatures, ``async def``. Embedding calls use the providers' async API."""

    def __init__(self, table: VectorTable) -> None:
        self._table = table
        self._runner = table._runner

    def __repr__(self) -> str:
        return f"{self._table!r}.aio"

    @property
    def native(self) -> bool:
        """True when calls run on an async driver, False when on a worker thread."""
        return self._runner.native

    async def dispose(self) -> None:
        """Close the async connection pool of the running event loop."""
        await self._runner.dispose()

    async def add_texts(
        self,
        texts: Iterable[str],
        *,
        ids: Iterable[str | None] | None = None,
        metadatas: Iterable[Mapping[str, Any] | None] | None = None,
        embed: Callable[[list[str]], Awaitable[Any]] | None = None,
    ) -> list[str]:
        """Async :meth:`VectorTable.add_texts`: ``embed`` (or the table's embedder's
        ``aembed_documents``) is awaited; rows are checked before it is called."""
        table = self._table
        if embed is None and table.server_embeds:
            return await self._runner.run("add_texts", texts, ids=ids, metadatas=metadatas)  # type: ignore[no-any-return]
        text_list = validate_texts(texts)
        if not text_list:  # nothing to write: check the other columns, touch nothing
            table._prepare(0, ids, text_list, metadatas)
            return []
        await self.exists()  # loads the table's shape (its id length bounds the ids)
        prepared = table._prepare(len(text_list), ids, text_list, metadatas)
        if embed is None:
            embedder = table.text_embedder()
            embed = rows_embed(embedder, prepared.metas, aio=True) or embedder.aembed_documents
        table._check_embedder(embed, load=False)  # no sync I/O on the event loop
        vectors = await embed(text_list)
        matrix = _vector.as_matrix(vectors, table.dimension)
        return await self._runner.run("_write", matrix, prepared, embed)  # type: ignore[no-any-return]

    async def query_vector(self, text: str) -> np.ndarray:
        """Async :meth:`VectorTable.query_vector`: the provider's async API."""
        (text,) = validate_texts([text], "query")
        return _vector.as_vector(await self._table.text_embedder().aembed_query(text))

    @same_signature(VectorTable.search_text)
    async def search_text(self, text: str, **options: Any) -> list[SearchResult]:
        """Async :meth:`VectorTable.search_text` (same options, checked before embedding)."""
        table = self._table
        if table.server_embeds:
            return await self._runner.run("search_text", text, **options)  # type: ignore[no-any-return]
        parsed = table._search_options(**options)  # bad options cost no embedding call
        vector = await self.query_vector(text)
        return await self._runner.run("_vector_search", vector, parsed)  # type: ignore[no-any-return]

    exists = twin(VectorTable.exists)
    create = twin(VectorTable.create)
    drop = twin(VectorTable.drop)
    upsert = twin(VectorTable.upsert)
    delete = twin(VectorTable.delete)
    clear = twin(VectorTable.clear)
    count = twin(VectorTable.count)
    get = twin(VectorTable.get)
    search = twin(VectorTable.search)
    search_many = twin(VectorTable.search_many)
    max_marginal_relevance_search = twin(VectorTable.max_marginal_relevance_search)
    full_text_search = twin(VectorTable.full_text_search)
    hybrid_search = twin(VectorTable.hybrid_search)
    create_full_text_index = twin(VectorTable.create_full_text_index)
    create_vector_index = twin(VectorTable.create_vector_index)
    index_status = twin(VectorTable.index_status)
