"""The lifecycle and writes of a vector table: ``TableBase``, under ``VectorTable``.

``TableBase`` holds what every call needs: the engine's :class:`~._db.Database` and
:class:`~._backend.Backend`, the table's shape (read on first use, created on first
write), the indexes, and the validated, batched writes. ``VectorTable`` (``_table.py``)
adds the reads and searches on top of it.

Writes are validated completely before the first statement is sent (ids, vectors,
documents, metadata, row sizes), then sent as upserts in batches bounded by row count and
bytes, one transaction each. Bad input never leaves a half-written table; a failure
mid-way (network, crash) leaves only whole batches behind, and re-running the same upsert
completes the set without duplicates. Within one call, a repeated id keeps its last
occurrence.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa

from tidb_jina._errors import (
    ConfigurationError,
    DimensionMismatchError,
    InvalidIdentifierError,
    InvalidInputError,
    SchemaError,
    UnsupportedFeatureError,
)
from tidb_jina.store import _filter_tree, _table_meta, _tidb, _validate, _vector, _zero_vectors
from tidb_jina.store._async import AsyncRunner
from tidb_jina.store._auto import AutoEmbedding
from tidb_jina.store._backend import (
    NO_TABLE,
    Backend,
    Query,
    SearchOptions,
    TableSettings,
    TableState,
    TableView,
    positive,
)
from tidb_jina.store._backend_embedded import EmbeddedBackend
from tidb_jina.store._backend_tidb import TiDBBackend, distance_expression, search_statement
from tidb_jina.store._batch_checks import ids_ok, rows_to_write
from tidb_jina.store._db import Database, batch_slices
from tidb_jina.store._engine import async_source, connect
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import SearchResult
from tidb_jina.store._rows import last_occurrences, prepare_documents, prepare_metadatas, unique
from tidb_jina.store._schema import (
    ID_LENGTH,
    TableShape,
    build_table,
    check_ids,
    check_indexed_key,
    check_table_name,
    indexed_key_column,
    read_shape,
)
from tidb_jina.store._snapshot_file import check_option as check_snapshot_option

DEFAULT_TABLE_NAME = "tidb_jina_vectors"
MAX_ROW_BYTES = _validate.MAX_ROW_BYTES  # TiDB's 6 MiB per row, less headroom
FilterArg = Mapping[str, Any] | Filter | None


class PreparedRows(NamedTuple):
    """Validated ids, documents and serialised metadata of rows about to be written."""

    ids: list[str]
    documents: list[str | None]
    metas: list[str]


def backend_for(db: Database, settings: TableSettings, state: TableState) -> Backend:
    """The engine implementation for ``db``: TiDB for MySQL dialects, else embedded."""
    if db.is_tidb:  # the embedded backend checks its own option (it keeps the place)
        check_snapshot_option(settings.snapshot_file, db.engine)  # refused: files of SQLite only
        return TiDBBackend(db, settings, state)
    return EmbeddedBackend(db, settings, state)


def _parse(filter: FilterArg) -> Filter | None:
    return _filter_tree.parse_filter(filter)  # the one parse per call


def _ids(ids: Iterable[str] | None) -> list[str] | None:
    return None if ids is None else unique(ids)


def _model_of(given: str | None, embedder: Any, auto: AutoEmbedding | str | None) -> str | None:
    """The model a table object embeds with: given, the embedder's, or auto-embedding's."""
    if given is not None:
        if not isinstance(given, str) or not given.strip():
            raise ConfigurationError(
                f"embedding_model must be a model id such as 'jina-embeddings-v3', got {given!r}"
            )
        return given.strip()[: _table_meta.MAX_MODEL_CHARS]  # as recorded
    if embedder is not None:
        return _table_meta.model_name(embedder)
    if isinstance(auto, AutoEmbedding):
        return auto.provider_model
    return AutoEmbedding(auto).provider_model if isinstance(auto, str) else None


class TableBase:
    """The table's engine, shape, lifecycle and writes (see ``VectorTable``)."""

    def __init__(
        self,
        connection: str | sa.URL | sa.Engine | None = None,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        dimension: int | None = None,
        metric: DistanceMetric | str | None = None,
        engine_args: Mapping[str, Any] | None = None,
        drop_existing: bool = False,
        batch_rows: int | None = None,
        batch_bytes: int | None = None,
        search_cache: bool = True,
        vector_index: bool = True,
        verify_tls: bool = True,
        full_text: bool = False,
        embedder: Any | None = None,
        auto_embedding: AutoEmbedding | str | None = None,
        indexed_key: str | None = None,
        embedding_model: str | None = None,
        check_metadata: bool = True,
        snapshot_file: bool | str | os.PathLike[str] = False,
    ) -> None:
        table_name = check_table_name(table_name)
        self._declared_dimension = None if dimension is None else _vector.check_dimension(dimension)
        self._owns_engine = not isinstance(connection, sa.Engine)
        self.engine = connect(connection, engine_args=engine_args, verify_tls=verify_tls)
        if isinstance(auto_embedding, str):
            auto_embedding = AutoEmbedding(auto_embedding)
        self.embedder = embedder
        self.full_text = full_text
        self._metric_given = metric is not None
        self._check_metadata = bool(check_metadata)
        self._model = _model_of(embedding_model, embedder, auto_embedding)
        self._state = TableState(drop_pending=drop_existing)
        self._db = Database(self.engine, table_name)
        settings = TableSettings(
            table_name,
            DistanceMetric.parse(metric or DistanceMetric.COSINE),
            None if indexed_key is None else check_indexed_key(indexed_key),
            vector_index,
            search_cache,
            auto_embedding,
            snapshot_file,
        )
        # Fixed for the table's life (read-only below): the backend holds the same values.
        self._settings = settings
        self._backend = backend_for(self._db, settings, self._state)
        self.batch_rows = positive(batch_rows or self._backend.default_batch_rows, "batch_rows")
        self.batch_bytes = positive(batch_bytes or self._backend.default_batch_bytes, "batch_bytes")
        if full_text and self._backend.full_text_error:
            raise UnsupportedFeatureError(self._backend.full_text_error)
        if auto_embedding is not None:
            if self._declared_dimension is None:
                self._declared_dimension = auto_embedding.resolved_dimension()
            if self.server_embeds:
                auto_embedding.distance_function(self._settings.metric)  # cosine or l2 only
        self._runner = AsyncRunner(
            self, async_source(connection, engine_args, verify_tls), self._on_engine
        )
        self._aio: Any = None  # VectorTable.aio, made on first use

    def _on_engine(self, engine: sa.Engine) -> Any:
        """This table on another engine (the async view's), sharing its state."""
        view = copy.copy(self)
        view.engine = engine
        view._db = self._db.rebind(engine)
        view._backend = self._backend.bind(view._db)
        return view

    @property
    def table_name(self) -> str:
        return self._settings.table_name

    @property
    def metric(self) -> DistanceMetric:
        """The distance metric: as given, else the table's recorded one (cosine for a
        new table, or a peer table without an ``hnsw(distance=...)`` comment)."""
        if not self._metric_given:
            self._load()
        return self._settings.metric

    @property
    def recorded(self) -> _table_meta.TableMeta | None:
        """What the table records about its vectors: embedding model, dimension, metric
        and auto-embedding server model (None for a missing table, or one made before
        tables recorded it; a peer table's ``TableMeta`` knows only its metric)."""
        self._load()
        return self._state.recorded

    @property
    def embedding_model(self) -> str | None:
        """The model this table object embeds with (``embedding_model=``, else the
        embedder's ``model``, else the auto-embedding model), or None if unknown."""
        return self._model

    @property
    def indexed_key(self) -> str | None:
        return self._settings.indexed_key

    @property
    def vector_index(self) -> bool:
        return self._settings.vector_index

    @property
    def search_cache(self) -> bool:
        return self._settings.search_cache

    @property
    def auto_embedding(self) -> AutoEmbedding | None:
        return self._settings.auto_embedding

    def __repr__(self) -> str:
        shape = self._state.shape
        dimension = self._declared_dimension or (shape.dimension if shape else None)
        return (
            f"VectorTable(table_name={self.table_name!r}, metric={self._settings.metric.value!r}, "
            f"dimension={dimension!r}, database={self.database!r})"
        )

    # --- properties and lifecycle -------------------------------------------------------

    @property
    def dimension(self) -> int | None:
        """The vector dimension: declared, or read from the table (None if unknown yet)."""
        if self._declared_dimension is not None:
            return self._declared_dimension
        shape = self._load_view().shape  # read once (a drop may replace the view)
        return shape.dimension if shape else None

    @property
    def database(self) -> str:
        """Where the table lives, without the password (for messages and logs)."""
        return self._db.describe()

    @property
    def table(self) -> sa.Table | None:
        """The SQLAlchemy ``Table`` (None while the table does not exist)."""
        return self._load()

    @property
    def is_tidb(self) -> bool:
        """True on TiDB (a MySQL-protocol engine), False on the embedded engine."""
        return self._db.is_tidb

    @property
    def is_tidb_starter(self) -> bool:
        """True for a TiDB Cloud Starter (serverless) host."""
        return self._db.is_tidb and _tidb.is_starter_host(self.engine.url.host)

    @property
    def server_embeds(self) -> bool:
        """True when TiDB itself embeds (auto-embedding on TiDB Cloud Starter)."""
        return self._backend.server_embeds

    def close(self) -> None:
        """Release what this table opened: the cache's watcher connection and the pool of
        an engine it created (not one you passed in). Idempotent; the table reconnects if
        used again. For the running loop's async pool use ``await table.aclose()``."""
        self._backend.close()
        self._runner.dispose_idle()
        if self._owns_engine:
            self.engine.dispose()

    async def aclose(self) -> None:
        """:meth:`close`, plus the async pool of the running event loop."""
        await self._runner.dispose()
        await asyncio.to_thread(self._backend.close)  # may write a snapshot file: off the loop
        self.close()

    def exists(self) -> bool:
        return self._load() is not None

    def create(self, dimension: int | None = None) -> None:
        """Create the table now if it does not exist (normally it is created lazily)."""
        dim = dimension if dimension is not None else self._declared_dimension
        if dim is None and not self.exists():
            raise ConfigurationError(
                f"cannot create table {self.table_name!r} without a dimension: pass "
                "dimension=... (the embedding model's output size)"
            )
        if self._load() is None:
            self._create(_vector.check_dimension(dim))  # type: ignore[arg-type]
        elif dim is not None:
            self._state.view.check_dimension(self.table_name, dim)

    def drop(self) -> None:
        """Drop the table and everything in it (no error if it does not exist)."""
        table = build_table(self.table_name, None, self.engine.dialect.name)
        with self._state.lock, self._db.write() as conn:
            self._backend.drop_extras(conn)
            table.drop(conn, checkfirst=True)
            _table_meta.forget(conn, self.table_name)
            self._state.reset()

    def _load(self) -> sa.Table | None:
        return self._load_view().table

    def _load_view(self) -> TableView:  # the table and its shape after the schema check
        state = self._state
        if not state.loaded or self._backend.schema_changed():
            with state.lock:
                if state.loaded and self._backend.schema_changed():
                    state.reset()  # dropped or re-created by someone else: read it again
                if not state.loaded:
                    if state.drop_pending:
                        self.drop()
                    with self._db.read() as conn:
                        self._backend.note_schema(conn)
                        shape = read_shape(conn, self.table_name)
                        recorded = _table_meta.read(conn, self.table_name) if shape else None
                    self._adopt(shape, recorded)
        view = state.view
        if state.metric is not None and state.metric is not self._settings.metric:
            self._use_metric(state.metric)
        return view

    def _loaded(self) -> tuple[sa.Table | None, int | None, DistanceMetric]:
        """Table, dimension and metric from one schema check; table and shape: one view."""
        table, shape = self._load_view()  # settles metric and shape
        dimension = self._declared_dimension or (shape.dimension if shape else None)
        return table, dimension, self._settings.metric

    def _use_metric(self, metric: DistanceMetric) -> None:
        """Search by the table's recorded metric (the caller gave none)."""
        old = self._backend
        self._settings = dataclasses.replace(self._settings, metric=metric)
        self._backend = backend_for(self._db, self._settings, self._state)
        with self._state.lock:  # the new backend has noted no schema: it reads the shape
            self._state.loaded = False  # again (else a drop by anyone went unnoticed)
        old.close()

    def _check_recorded(self, recorded: _table_meta.TableMeta | None) -> None:
        """Refuse a table filled by another model or metric (unless told not to check)."""
        self._state.recorded = recorded
        if recorded is None:
            return
        if recorded.metric is not None and not self._metric_given:
            self._state.metric = recorded.metric
        if not self._check_metadata:
            return
        ours = self._settings.metric
        if self._metric_given and recorded.metric not in (None, ours):
            raise SchemaError(
                f"table {self.table_name!r} was made for {recorded.metric.value} distance "  # type: ignore[union-attr]
                f"({recorded.describe()}) but metric={ours.value!r} was given; pass "
                f"metric={recorded.metric.value!r} (distance_strategy= in the framework "  # type: ignore[union-attr]
                "stores) or leave it out, use a new table_name, or pass "
                "check_metadata=False to search it by another metric anyway"
            )
        self._check_model(self._model, recorded)
        auto = self.auto_embedding
        if auto is not None and recorded.server_model not in (None, auto.model):
            raise SchemaError(
                f"table {self.table_name!r} is embedded by {recorded.server_model} but "
                f"auto_embedding={auto.model!r} was given; use the same model or a new "
                "table_name (or check_metadata=False)"
            )

    def _check_model(
        self, model: str | None, recorded: _table_meta.TableMeta | None = None
    ) -> None:
        """Raise when ``model`` is not the model the table's vectors came from."""
        if model is None or not self._check_metadata:
            return
        if recorded is None:
            self._load()
            recorded = self._state.recorded
        if recorded is not None and not _table_meta.same_model(recorded.model or model, model):
            raise SchemaError(
                f"table {self.table_name!r} holds vectors of {recorded.model} "
                f"({recorded.describe()}), but this table embeds with {model}: vectors of "
                "two models cannot be compared. Use the same model, a new table_name, or "
                "re-embed (the CLI's ingest does); check_metadata=False opens it anyway"
            )

    def _new_meta(self, dimension: int, model: str | None) -> _table_meta.TableMeta:
        auto = self.auto_embedding
        return _table_meta.TableMeta(
            model=model or self._model,
            dimension=dimension,
            metric=self._settings.metric,
            server_model=auto.model if auto is not None and self.server_embeds else None,
        )

    def _adopt(
        self, shape: TableShape | None, recorded: _table_meta.TableMeta | None = None
    ) -> None:
        view = NO_TABLE
        if shape is not None:
            self._check_recorded(recorded)
            declared = self._declared_dimension
            if declared is not None and shape.dimension not in (None, declared):
                raise DimensionMismatchError(
                    f"table {self.table_name!r} has VECTOR({shape.dimension}) but "
                    f"dimension={declared} was given; use a model with "
                    f"{shape.dimension} dimensions, or a new table_name"
                )
            indexed = self.indexed_key
            table = build_table(
                self.table_name,
                shape.dimension,
                self.engine.dialect.name,
                id_length=shape.id_length,
                id_collation=shape.id_collation,
                generated=self._backend.generated_sql(),
                indexed_key=indexed
                if indexed and indexed_key_column(indexed) in shape.columns
                else None,
            )
            view = TableView(table, shape)
        self._state.view = view  # the table and its shape replaced in one step
        # A missing table is looked up again next time: someone may create it meanwhile.
        self._state.loaded = shape is not None

    def _create(self, dimension: int, model: str | None = None) -> sa.Table:
        with self._state.lock:
            if self._state.table is not None:
                return self._state.table
            meta = self._new_meta(dimension, model)
            table = build_table(
                self.table_name,
                dimension,
                self.engine.dialect.name,
                generated=self._backend.generated_sql(),
                indexed_key=self.indexed_key,
                full_text=self.full_text,  # TiDB: in CREATE TABLE, so both exist or neither
                comment=_table_meta.table_comment(meta),
            )
            with self._db.write() as conn:
                _table_meta.write(conn, self.table_name, meta)  # only if the table is new
                conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
                self._backend.check_created(conn, table)  # its warnings: right after it
                for index in table.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
                self._backend.note_schema(conn)
                shape = read_shape(conn, self.table_name)
                recorded = _table_meta.read(conn, self.table_name)
            self._adopt(shape, recorded)  # someone else may have created it first (size, model)
            self._state.view.check_dimension(self.table_name, dimension)
            self._backend.after_create(self._state.table)  # type: ignore[arg-type]
            if self.full_text:
                self.create_full_text_index()
            assert self._state.table is not None
            return self._state.table

    def _existing(self, what: str) -> sa.Table:
        table = self._load()
        if table is None:
            raise ConfigurationError(f"table {self.table_name!r} does not exist yet; {what}")
        return table

    # --- indexes ------------------------------------------------------------------------

    def create_vector_index(self) -> None:
        """Give the table an HNSW index for its metric (TiDB; idempotent; a no-op on the
        embedded engine, which searches exactly). Self-managed TiDB gets a TiFlash replica
        first; TiDB Cloud Starter creates it on demand. Raises ``UnsupportedFeatureError``
        when the metric cannot be indexed or the cluster has no TiFlash. The index builds
        in the background: see :meth:`index_status`."""
        table = self._load()  # first: it may settle the metric (and so the backend)
        self._backend.create_vector_index(table)

    def index_status(self) -> _tidb.IndexStatus:
        """How far TiDB has built the vector index (exact search on the embedded engine)."""
        if self._load() is None:
            return _tidb.IndexStatus(kind="missing", note="the table does not exist yet")
        return self._backend.index_status()

    def create_full_text_index(self, parser: str = "MULTILINGUAL") -> None:
        """Index ``document`` for full-text search (idempotent).

        TiDB Cloud Starter: ``FULLTEXT INDEX ... WITH PARSER MULTILINGUAL|STANDARD``
        (built in the background by TiFlash). Embedded engine: an FTS5 index kept in sync
        by triggers (also created automatically on the first full-text search).
        """
        if self._backend.full_text_error:
            raise UnsupportedFeatureError(self._backend.full_text_error)
        if self._state.fulltext_ready:
            return
        self._existing("add documents first")
        with self._state.lock:
            self._backend.create_full_text_index(parser)
            self._state.fulltext_ready = True

    # --- writes -------------------------------------------------------------------------

    def upsert(
        self,
        embeddings: Iterable[Any],
        *,
        ids: Iterable[str | None] | None = None,
        documents: Iterable[str | None] | None = None,
        metadatas: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Insert rows, replacing rows whose id exists. Returns the ids in input order.

        ``embeddings`` is a float32 matrix (used as is) or any sequence of vectors. Missing
        ids (``ids=None``, or ``None`` entries) are generated (UUID4). Everything is
        validated before anything is written; rows are sent in batches, one transaction
        each.
        """
        self._load()  # an existing table's dimension outranks a declared one in errors
        matrix = _vector.as_matrix(embeddings, self.dimension)
        return self._write(matrix, self._prepare(len(matrix), ids, documents, metadatas))

    def _prepare(
        self,
        n: int,
        ids: Iterable[str | None] | None,
        documents: Iterable[str | None] | None,
        metadatas: Iterable[Mapping[str, Any] | None] | None,
    ) -> PreparedRows:
        """Check and serialise the columns of ``n`` rows (no I/O; before any embedding)."""
        return PreparedRows(
            self._prepare_ids(ids, n),
            prepare_documents(documents, n),
            prepare_metadatas(metadatas, n, self.indexed_key),
        )

    def _check_embedder(self, embedder: Any, *, load: bool = True) -> None:
        """Raise when ``embedder`` (or its bound method) names another model than the
        table's record; ``load=False`` checks only a record already read."""
        if load or self._state.loaded:
            self._check_model(_table_meta.model_name(embedder))

    def _write(self, matrix: np.ndarray, prepared: PreparedRows, embed: Any = None) -> list[str]:
        """Upsert ``prepared`` rows with ``matrix``'s vectors, made by ``embed`` (its model,
        when it names one: checked against the table's record, recorded in a new table;
        read after embedding, when a TEI server's model is known)."""
        model = None if embed is None else _table_meta.model_name(embed)
        id_list = prepared.ids
        if len(matrix) != len(id_list):
            raise InvalidInputError(
                f"got {len(matrix)} vectors for {len(id_list)} rows; pass one vector per row"
            )
        if not id_list:
            return []
        _zero_vectors.check_rows(matrix, self.metric)  # TiDB has no cosine for them
        keep = last_occurrences(id_list)
        if len(keep) < len(id_list):
            matrix = matrix[keep]  # a repeated id is written once: its last occurrence
        vectors = self._backend.encode_vectors(matrix)
        stored = 4 * matrix.shape[1] + 4
        rows, sizes = rows_to_write(prepared, keep, vectors, stored, self._row_size)
        if self._state.table is not None:
            self._check_model(model)  # (a new table records it)
        view = self._state.view  # the table written and its shape: one state, read last
        if view.table is None:
            table = self._create(matrix.shape[1], model)  # checks the dimension itself
        else:
            table = view.table
            view.check_dimension(self.table_name, matrix.shape[1])
        self._backend.upsert(table, rows, batch_slices(sizes, self.batch_rows, self.batch_bytes))
        return id_list

    def _row_size(self, id: str, document: str | None, meta: str, stored_vector: int) -> int:
        return _validate.row_bytes(id, document, meta, stored_vector)  # UTF-8 bytes

    def _prepare_ids(self, ids: Iterable[str | None] | None, n: int) -> list[str]:
        if ids is None:
            return [str(uuid.uuid4()) for _ in range(n)]
        if isinstance(ids, (str, bytes)):
            raise InvalidInputError("ids must be a list of strings, not one string")
        id_list = [str(uuid.uuid4()) if value is None else value for value in ids]
        if len(id_list) != n:
            raise InvalidInputError(
                f"got {len(id_list)} ids for {n} vectors; pass one id per vector"
            )
        limit = getattr(self._state.shape, "id_length", ID_LENGTH)  # one read (None: default)
        checked = ids_ok(id_list, limit)  # the whole column at once; else name the bad one
        for i, value in enumerate([] if checked else id_list):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(
                    f"id {i} is {value!r}: ids must be non-empty strings (use str(...) for "
                    "numbers or UUIDs)"
                )
            if "\x00" in value:
                raise InvalidIdentifierError(f"id {i} contains a NUL character")
            _validate.check_text(value, f"id {i}")
            if limit is not None and len(value) > limit:
                raise InvalidInputError(
                    f"id {value[:40]!r}... is {len(value)} characters but table "
                    f"{self.table_name!r} stores ids of at most {limit}; use shorter ids "
                    "(e.g. a hash) or a new table"
                )
        check_ids(self._state.table, id_list)  # type: ignore[arg-type]
        return id_list  # type: ignore[return-value]

    def _search_options(
        self,
        *,
        k: int = 4,
        filter: FilterArg = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
        prefilter: bool | None = None,
        num_candidates: int | None = None,
    ) -> SearchOptions:
        """The checked options of one search (the filter parsed here, once)."""
        return SearchOptions.of(
            k=k,
            filter=_parse(filter),
            ids=_ids(ids),
            max_distance=max_distance,
            include_embeddings=include_embeddings,
            prefilter=prefilter,
            num_candidates=num_candidates,
        )

    def search_many(
        self,
        vectors: Iterable[Any],
        *,
        k: int = 4,
        filter: FilterArg = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
    ) -> list[list[SearchResult]]:
        """:meth:`VectorTable.search` for many query vectors at once, same options:
        one list of hits per vector, in order. The embedded engine scores them all in
        one pass over the vectors (a matrix-matrix product) and one read transaction;
        TiDB runs one statement per vector."""
        options = self._search_options(
            k=k,
            filter=filter,
            ids=ids,
            max_distance=max_distance,
            include_embeddings=include_embeddings,
        )
        table, dimension, _ = self._loaded()
        queries = _vector.as_matrix(vectors, dimension)
        if table is None or options.ids == [] or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        return self._backend.search_many(table, queries, options)

    def search_statement(
        self,
        vector: Any = None,
        *,
        text: str | None = None,
        k: int = 4,
        filter: FilterArg = None,
        ids: Iterable[str] | None = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        prefilter: bool = True,
        num_candidates: int | None = None,
    ) -> sa.Select[Any]:
        """The search statement TiDB gets (public so it can be inspected or run).

        Pre-filter: ``SELECT ..., VEC_<METRIC>_DISTANCE(embedding, :q) AS distance FROM t
        [WHERE filter] ORDER BY distance LIMIT :k``; post-filter (``prefilter=False``):
        that without WHERE and with ``LIMIT :num_candidates`` as a subquery (the shape
        TiDB's HNSW index serves), the filter and the distance threshold outside it.
        ``text`` instead of ``vector``: ``VEC_EMBED_<METRIC>_DISTANCE`` (auto-embedding).
        """
        if (vector is None) == (text is None):
            raise InvalidInputError("pass either a vector or text=")
        options = self._search_options(
            k=k,
            filter=filter,
            ids=ids,
            max_distance=max_distance,
            include_embeddings=include_embeddings,
            prefilter=prefilter,
            num_candidates=num_candidates,
        )
        table = self._load()
        if table is None:
            dimension = self._declared_dimension
            generated = self._backend.generated_sql()
            table = build_table(
                self.table_name, dimension, self.engine.dialect.name, generated=generated
            )
        query = Query(text=text) if text is not None else Query(vector=_vector.as_vector(vector))
        distance = distance_expression(table, self._backend.settings, query)
        dialect = self.engine.dialect.name
        return search_statement(
            table, distance, options, dialect, self.indexed_key, prefilter=prefilter
        )
