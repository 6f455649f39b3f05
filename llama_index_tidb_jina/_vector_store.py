"""``TiDBVectorStore``: a LlamaIndex vector store over the core ``VectorTable``.

Translation only. Nodes are stored the way llama-index-vector-stores-tidbvector stores
them (``id`` = node id, ``document`` = the node's text, ``meta`` =
``node_to_metadata_dict(node, remove_text=True)``: the user metadata at the top level, next
to ``_node_content``, ``_node_type``, ``document_id``, ``doc_id`` and ``ref_doc_id``), so
tables written by either package are read by the other. Searches, filters, MMR and
scores are the core's; every sync method has an async twin over ``VectorTable.aio``.
The nodes' embeddings (lists of floats) go to the core as they are: it converts them to
one float32 matrix and checks them, with the ids and metadata, before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from llama_index_tidb_jina import _config
from llama_index_tidb_jina._filters import and_filters, to_core_filter
from llama_index_tidb_jina._query_many import arun_plan, plan_queries, run_plan
from tidb_jina import InvalidInputError, UnsupportedFeatureError
from tidb_jina.store import AutoEmbedding, DistanceMetric, Record, SearchResult, VectorTable
from tidb_jina.store._engine import safe_url

__all__ = ["DEFAULT_VECTOR_TABLE_NAME", "TiDBVectorStore"]

# The same defaults as llama-index-vector-stores-tidbvector, so its users keep their table.
DEFAULT_VECTOR_TABLE_NAME = "llama_index_vector_store"
DEFAULT_DISTANCE_STRATEGY = "cosine"
# MMR: candidates fetched per result, as llama-index's PGVectorStore.
DEFAULT_MMR_PREFETCH_FACTOR = 4.0
DEFAULT_MMR_THRESHOLD = 0.5
REF_DOC_ID_KEY = "ref_doc_id"

_VECTOR_MODES = (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR)
_TEXT_MODES = (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.HYBRID)


class TiDBVectorStore(BasePydanticVectorStore):
    """LlamaIndex vector store on TiDB (``mysql+pymysql://``) or the embedded engine.

    Args:
        connection_string: ``mysql+pymysql://USER:PASSWORD@HOST:4000/DB`` for TiDB,
            ``sqlite:///path.db`` / ``sqlite://`` for the embedded engine, or a SQLAlchemy
            ``Engine``. Omitted: ``$TIDB_DATABASE_URL``.
        table_name: the table (created on the first ``add``).
        distance_strategy: ``"cosine"``, ``"l2"``, ``"inner_product"``, ``"l1"``. Omitted:
            the table's own metric (its record, or the ``hnsw(distance=...)`` comment of a
            llama-index-vector-stores-tidbvector table), cosine for a new table.
        vector_dimension: the embedding size; optional (read from the table or the
            first vectors).
        engine_args: extra ``sqlalchemy.create_engine`` arguments.
        drop_existing_table: drop the table before first use.
        flat_metadata: refuse nested metadata values (as ``node_to_metadata_dict``).
        snapshot_file: embedded file databases only, opt-in: ``True`` (or a directory)
            also keeps the table's vectors in a file that a new process maps instead of
            reading every row (see ``VectorTable``'s ``snapshot_file``).

    The constructor does no I/O. ``to_dict()`` / ``to_json()`` hold the URL with its
    password masked (``database_url``), never the password, and every other option but
    ``engine_args`` and ``drop_existing_table``; ``from_dict`` / ``from_json`` and pickling
    make an equal store again (``from_dict(data, connection_string=URL)`` when the URL had
    a password; see ``_config``).
    """

    stores_text: bool = True
    flat_metadata: bool = False
    table_name: str = DEFAULT_VECTOR_TABLE_NAME
    distance_strategy: str | None = None  # None: the table's own (cosine for a new one)
    vector_dimension: int | None = None
    database_url: str = Field(default="", description="Connection URL, password masked.")
    auto_embedding_model: str | None = None
    auto_embedding_dimension: int | None = None
    auto_embedding_options: dict[str, Any] | None = None
    snapshot_file: bool | str = False

    _table: VectorTable = PrivateAttr()

    def __init__(
        self,
        connection_string: str | sa.URL | sa.Engine | None = None,
        table_name: str = DEFAULT_VECTOR_TABLE_NAME,
        distance_strategy: str | None = None,
        vector_dimension: int | None = None,
        *,
        engine_args: Mapping[str, Any] | None = None,
        drop_existing_table: bool = False,
        flat_metadata: bool = False,
        auto_embedding: AutoEmbedding | str | None = None,
        snapshot_file: bool | str | os.PathLike[str] = False,
    ) -> None:
        table = VectorTable(
            connection_string,
            table_name=table_name,
            dimension=vector_dimension,
            metric=distance_strategy,
            engine_args=engine_args,
            drop_existing=drop_existing_table,
            # delete(ref_doc_id) looks rows up through an index, not a scan.
            indexed_key=REF_DOC_ID_KEY,
            auto_embedding=auto_embedding,
            snapshot_file=snapshot_file,
        )
        auto = table.auto_embedding
        super().__init__(  # type: ignore[call-arg]  # pydantic fields (no mypy plugin)
            table_name=table.table_name,
            distance_strategy=None
            if distance_strategy is None
            else DistanceMetric.parse(distance_strategy).value,
            vector_dimension=vector_dimension,
            database_url=safe_url(table.engine.url),
            flat_metadata=flat_metadata,
            auto_embedding_model=auto.model if auto else None,
            auto_embedding_dimension=auto.dimension if auto else None,
            auto_embedding_options=dict(auto.options) if auto and auto.options else None,
            snapshot_file=snapshot_file
            if isinstance(snapshot_file, bool)
            else os.fspath(snapshot_file),
            # Retrievers then pass the question's text and let the table embed it.
            is_embedding_query=auto is None,
        )
        self._table = table

    @classmethod
    def class_name(cls) -> str:
        return "TiDBVectorStore"

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> TiDBVectorStore:  # type: ignore[override]
        """The store ``to_dict()`` describes (``kwargs`` win: ``connection_string=`` when
        the URL had a password, ``engine_args=``; see ``_config`` for what is carried)."""
        _config.check_data(data, cls.class_name())  # only what to_dict() writes
        return cls(**_config.init_kwargs({**data, **kwargs}))

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its ``to_dict()``, made again by ``from_dict`` (a new connection
        pool). A store whose URL has a password is refused: the copy could not connect,
        and the password is never written down."""
        data = self.to_dict()
        if _config.has_password(self.database_url):
            raise TypeError(
                "a TiDBVectorStore whose URL has a password cannot be pickled (the password "
                "is never serialised): send to_dict() and call "
                "TiDBVectorStore.from_dict(data, connection_string=URL) where it is used"
            )
        return (_from_dict, (type(self), data))

    def __repr__(self) -> str:
        return (
            f"TiDBVectorStore(table_name={self.table_name!r}, "
            f"distance_strategy={self.distance_strategy!r}, database_url={self.database_url!r})"
        )

    __str__ = __repr__

    @property
    def client(self) -> VectorTable:
        """The core ``VectorTable`` (``.aio`` for its async twin)."""
        return self._table

    def close(self) -> None:
        """Release the table's connections (see ``VectorTable.close``)."""
        self._table.close()

    async def aclose(self) -> None:
        """:meth:`close`, plus the async pool of the running event loop."""
        await self._table.aclose()

    # --- writes ---------------------------------------------------------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Upsert ``nodes`` by node id; returns their ids.

        Each node needs an embedding, except with ``auto_embedding``: then the table
        embeds the node text (node embeddings, if any, are not used).
        """
        rows = self._rows(nodes)
        if not rows["ids"]:
            return []
        if self.auto_embedding_model:
            return self._table.add_texts(rows["documents"], **_text_rows(rows))
        return self._table.upsert(**rows)

    async def async_add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Async :meth:`add`."""
        rows = self._rows(nodes)
        if not rows["ids"]:
            return []
        if self.auto_embedding_model:
            return await self._table.aio.add_texts(rows["documents"], **_text_rows(rows))
        return await self._table.aio.upsert(**rows)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        self._table.delete(filter=_ref_doc_filter(ref_doc_id))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async :meth:`delete`."""
        await self._table.aio.delete(filter=_ref_doc_filter(ref_doc_id))

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete nodes by id and/or filter (both: nodes matching both).

        With neither (or an empty filter and no ids) nothing is deleted: use
        :meth:`clear` to empty the store.
        """
        args = _selection(node_ids, filters)
        if args is not None:
            self._table.delete(**args)

    async def adelete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Async :meth:`delete_nodes`."""
        args = _selection(node_ids, filters)
        if args is not None:
            await self._table.aio.delete(**args)

    def clear(self) -> None:
        """Delete every node (the table stays)."""
        self._table.clear()

    async def aclear(self) -> None:
        """Async :meth:`clear`."""
        await self._table.aio.clear()

    def drop_vectorstore(self) -> None:
        """Drop the table (as llama-index-vector-stores-tidbvector's method)."""
        self._table.drop()

    async def adrop_vectorstore(self) -> None:
        """Async :meth:`drop_vectorstore`."""
        await self._table.aio.drop()

    # --- reads ----------------------------------------------------------------------

    def get_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Nodes by id (in the order given, missing ids skipped) and/or filter.

        With neither, every node (ordered by id).
        """
        records = self._table.get(node_ids, filter=to_core_filter(filters))
        return [_to_node(r) for r in records]

    async def aget_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
    ) -> list[BaseNode]:
        """Async :meth:`get_nodes`."""
        records = await self._table.aio.get(node_ids, filter=to_core_filter(filters))
        return [_to_node(r) for r in records]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Search by ``query.query_embedding``, honouring every field that applies.

        ``similarity_top_k``, ``filters``, ``doc_ids`` (ref doc ids) and ``node_ids``
        (an empty list means no restriction, as in every LlamaIndex store), and
        ``mode``: DEFAULT; MMR (``mmr_threshold`` is the relevance/diversity
        trade-off, default 0.5; keyword ``mmr_prefetch_k`` / ``mmr_prefetch_factor`` set
        the candidate pool); TEXT_SEARCH (BM25 on ``query_str``, ``sparse_top_k`` or
        ``similarity_top_k`` hits); HYBRID (vector + full-text: weighted by ``alpha``
        when it is set, 1 = pure vector, else reciprocal rank fusion; ``hybrid_top_k``
        or ``similarity_top_k`` hits). Similarities are the core's relevance scores in
        [0, 1]. Full-text needs TiDB Cloud Starter or the embedded engine.
        """
        vector = None
        if self._needs_table_vector(query):
            vector = self._table.query_vector(query.query_str or "")
        method, args = self._search_call(query, kwargs, vector)
        return _to_result(getattr(self._table, method)(**args))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query`."""
        vector = None
        if self._needs_table_vector(query):
            vector = await self._table.aio.query_vector(query.query_str or "")
        method, args = self._search_call(query, kwargs, vector)
        return _to_result(await getattr(self._table.aio, method)(**args))

    def query_many(
        self, queries: Sequence[VectorStoreQuery], **kwargs: Any
    ) -> list[VectorStoreQueryResult]:
        """:meth:`query` for each of ``queries``, in order; default-mode queries with an
        embedding and the same top-k, filters and ids share one ``search_many``."""
        plan = plan_queries(self, queries, kwargs)
        return run_plan(
            plan,
            len(queries),
            lambda i: self.query(queries[i], **kwargs),
            lambda vectors, args: [_to_result(h) for h in self._table.search_many(vectors, **args)],
        )

    async def aquery_many(
        self, queries: Sequence[VectorStoreQuery], **kwargs: Any
    ) -> list[VectorStoreQueryResult]:
        """Async :meth:`query_many`."""
        plan = plan_queries(self, queries, kwargs)

        async def many(vectors: list[Any], args: dict[str, Any]) -> list[VectorStoreQueryResult]:
            return [_to_result(h) for h in await self._table.aio.search_many(vectors, **args)]

        return await arun_plan(
            plan, len(queries), lambda i: self.aquery(queries[i], **kwargs), many
        )

    def _table_embeds_query(self, query: VectorStoreQuery) -> bool:
        """Auto-embedding: the table embeds ``query_str`` when no embedding came with it."""
        return (
            bool(self.auto_embedding_model)
            and query.query_embedding is None
            and bool(query.query_str)
            and _check_mode(query.mode) is not VectorStoreQueryMode.TEXT_SEARCH
        )

    def _needs_table_vector(self, query: VectorStoreQuery) -> bool:
        """MMR and hybrid need the vector itself: the table's embedder makes it (on
        TiDB Cloud Starter, where the server embeds, that is a clear error)."""
        return (
            self._table_embeds_query(query)
            and _check_mode(query.mode) is not VectorStoreQueryMode.DEFAULT
        )

    # --- translation ------------------------------------------------------------------

    @staticmethod
    def _common_args(query: VectorStoreQuery) -> dict[str, Any]:
        return {
            "k": query.similarity_top_k,
            "filter": and_filters(
                to_core_filter(query.filters),
                {REF_DOC_ID_KEY: {"$in": list(query.doc_ids)}} if query.doc_ids else None,
            ),
            # An empty list means "no restriction" in LlamaIndex: VectorStoreIndex's
            # retriever passes node_ids=[] for every store that keeps the text itself.
            "ids": list(query.node_ids) if query.node_ids else None,
        }

    def _rows(self, nodes: Sequence[BaseNode]) -> dict[str, Any]:
        ids, embeddings, documents, metadatas = [], [], [], []
        for node in nodes:
            if node.embedding is None and not self.auto_embedding_model:
                raise InvalidInputError(
                    f"node {node.node_id!r} has no embedding; embed the nodes first (e.g. "
                    "VectorStoreIndex(nodes, embed_model=...)) or set node.embedding"
                )
            ids.append(node.node_id)
            embeddings.append(node.embedding)
            documents.append(node.get_content(metadata_mode=MetadataMode.NONE))
            metadatas.append(
                node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
            )
        return {
            # With auto-embedding the table embeds the documents: vectors are not used.
            # Otherwise the core converts the lists once (and says what is wrong with them).
            "embeddings": None if self.auto_embedding_model else embeddings,
            "ids": ids,
            "documents": documents,
            "metadatas": metadatas,
        }

    def _search_call(
        self, query: VectorStoreQuery, kwargs: Mapping[str, Any], vector: Any = None
    ) -> tuple[str, dict[str, Any]]:
        """The core method and its arguments for ``query`` (shared by sync and async).

        ``vector``: the query vector the table made (auto-embedding, MMR and hybrid).
        """
        mode = _check_mode(query.mode)
        if mode is VectorStoreQueryMode.DEFAULT and self._table_embeds_query(query):
            # The table embeds the question (on TiDB Cloud Starter the server does).
            return "search_text", {"text": query.query_str, **self._common_args(query)}
        if vector is None:
            vector = query.query_embedding
        if mode in _TEXT_MODES:
            return _text_call(mode, query, self._common_args(query), vector)
        if mode is VectorStoreQueryMode.DEFAULT and _is_empty_query(vector):
            # VectorIndexAutoRetriever's filter-only questions carry its
            # default_empty_query_vector (zeros by convention): there is nothing to rank
            # by (a zero vector has no cosine distance), so the filtered rows are returned.
            args = self._common_args(query)
            return "get", {"ids": args["ids"], "filter": args["filter"], "limit": args["k"]}
        if vector is None:
            raise InvalidInputError(
                f"VectorStoreQuery.query_embedding is required for mode={mode.value!r}; "
                "pass an embed_model to the index or set query_embedding (for the "
                "filter-only questions of VectorIndexAutoRetriever, pass it "
                "default_empty_query_vector=[0.0] * dimension)"
            )
        args = {"vector": vector, **self._common_args(query)}
        if mode is VectorStoreQueryMode.DEFAULT:
            return "search", args
        args["lambda_mult"] = (
            DEFAULT_MMR_THRESHOLD if query.mmr_threshold is None else query.mmr_threshold
        )
        args["fetch_k"] = _mmr_fetch_k(query.similarity_top_k, kwargs)
        return "max_marginal_relevance_search", args


# --- helpers ------------------------------------------------------------------------


def _check_mode(value: Any) -> VectorStoreQueryMode:
    try:
        mode = VectorStoreQueryMode(value)
    except ValueError:
        raise UnsupportedFeatureError(
            f"unknown query mode {value!r}; use 'default' or 'mmr'"
        ) from None
    if mode in _VECTOR_MODES or mode in _TEXT_MODES:
        return mode
    raise UnsupportedFeatureError(
        f"query mode {mode.value!r} is not supported by TiDBVectorStore; use 'default', "
        "'mmr', 'text_search' or 'hybrid'"
    )


def _text_call(
    mode: VectorStoreQueryMode, query: VectorStoreQuery, args: dict[str, Any], vector: Any
) -> tuple[str, dict[str, Any]]:
    """Core call for TEXT_SEARCH / HYBRID: both need the query text."""
    if not query.query_str:
        raise InvalidInputError(
            f"mode={mode.value!r} searches the text of the query: set VectorStoreQuery."
            "query_str (retrievers do this from the question)"
        )
    if mode is VectorStoreQueryMode.TEXT_SEARCH:
        args["k"] = query.sparse_top_k or query.similarity_top_k
        return "full_text_search", {"text": query.query_str, **args}
    if vector is None:
        raise InvalidInputError(
            "mode='hybrid' also needs VectorStoreQuery.query_embedding; pass an embed_model"
        )
    args["k"] = query.hybrid_top_k or query.similarity_top_k
    args.update(vector=vector, text=query.query_str)
    if query.alpha is not None:
        args.update(fusion="weighted", alpha=query.alpha)
    return "hybrid_search", args


def _from_dict(cls: type[TiDBVectorStore], data: dict[str, Any]) -> TiDBVectorStore:
    """Unpickling: ``cls.from_dict(data)`` (a module-level name pickle can find)."""
    return cls.from_dict(data)


def _text_rows(rows: dict[str, Any]) -> dict[str, Any]:
    return {"ids": rows["ids"], "metadatas": rows["metadatas"]}


def _mmr_fetch_k(top_k: int, kwargs: Mapping[str, Any]) -> int:
    prefetch_k = kwargs.get("mmr_prefetch_k")
    if prefetch_k is not None:
        return max(int(prefetch_k), top_k)
    factor = kwargs.get("mmr_prefetch_factor", DEFAULT_MMR_PREFETCH_FACTOR)
    return max(int(top_k * float(factor)), top_k)


def _ref_doc_filter(ref_doc_id: str) -> dict[str, Any]:
    if not isinstance(ref_doc_id, str) or not ref_doc_id:
        raise InvalidInputError(f"ref_doc_id must be a non-empty string, got {ref_doc_id!r}")
    return {REF_DOC_ID_KEY: ref_doc_id}


def _selection(
    node_ids: list[str] | None, filters: MetadataFilters | None
) -> dict[str, Any] | None:
    """``delete`` arguments, or None when nothing is selected (never "delete all")."""
    flt = to_core_filter(filters)
    if node_ids is None and flt is None:
        return None
    return {"ids": node_ids, "filter": flt}


def _to_node(record: Record | SearchResult) -> BaseNode:
    """The stored node; rows written by other tools (no ``_node_content``) become TextNodes."""
    metadata = record.metadata or {}
    if "_node_content" in metadata:
        return metadata_dict_to_node(metadata, text=record.document)
    return TextNode(id_=record.id, text=record.document or "", metadata=dict(metadata))


def _is_empty_query(vector: Any) -> bool:
    """True for an all-zero query vector (the "no question" convention)."""
    if vector is None:
        return False
    try:
        array = np.asarray(vector, dtype=np.float64)
    except (TypeError, ValueError):
        return False  # the core says what is wrong with it
    return array.ndim == 1 and array.size > 0 and not array.any()


def _to_result(results: list[SearchResult] | list[Record]) -> VectorStoreQueryResult:
    """Search hits with their scores; filter-only rows (``get``) have no similarity."""
    scored = all(isinstance(r, SearchResult) for r in results)
    return VectorStoreQueryResult(
        nodes=[_to_node(r) for r in results],
        similarities=[r.score for r in results] if scored else None,  # type: ignore[union-attr]
        ids=[r.id for r in results],
    )
