"""``VectorTable``: one vector table on TiDB or the embedded engine.

Life cycle: the constructor does no I/O. The table's shape is read on first use;
the table is created on first write (``CREATE TABLE IF NOT EXISTS``), with its dimension
taken from ``dimension=`` or the first vectors written.

Writes are validated completely before the first statement is sent (ids, vectors,
documents, metadata, row sizes), then sent as upserts in batches bounded by row count
and bytes, one transaction per batch. So bad input never leaves a half-written table,
and a failure mid-way (network, crash) leaves only whole batches behind; re-running the
same upsert completes the set without duplicates. Within one call, a repeated id keeps
its last occurrence.

Searches: on TiDB, exactly one statement
``SELECT id, document, meta, VEC_<METRIC>_DISTANCE(embedding, :q) AS distance ... ORDER
BY distance LIMIT :k``. On the embedded engine, the candidate vectors (after the metadata
filter, in SQL) are scored with NumPy in one matrix-vector product, and the k winners'
rows are read back in the same read transaction.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from tidb_jina._errors import (
    ConfigurationError,
    DatabaseError,
    DimensionMismatchError,
    InvalidIdentifierError,
    InvalidInputError,
    RecordTooLargeError,
    TiDBJinaError,
    UnsupportedFeatureError,
)
from tidb_jina._maths import maximal_marginal_relevance, reciprocal_rank_fusion, weighted_fusion
from tidb_jina.embeddings._base import validate_texts
from tidb_jina.store import _fulltext, _tidb, _vector
from tidb_jina.store._auto import AutoEmbedding, set_key_statement
from tidb_jina.store._embedded import VectorCache, search_embedded
from tidb_jina.store._engine import (
    WRITE_OPTION,
    async_source,
    connect,
    describe,
    engine_lock,
    logger,
)
from tidb_jina.store._filters import (
    compile_filter,
    validate_filter,
)
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import Record, SearchResult
from tidb_jina.store._rows import (
    IN_CHUNK,
    chunks,
    driver_message,
    last_occurrences,
    positive,
    prepare_documents,
    prepare_metadatas,
    record_from_row,
    unique,
    without_embedding,
)
from tidb_jina.store._schema import (
    ID_LENGTH,
    TableShape,
    build_table,
    check_indexed_key,
    check_table_name,
    indexed_key_column,
    read_shape,
)

if TYPE_CHECKING:
    from tidb_jina.store._async import AsyncVectorTable

DEFAULT_TABLE_NAME = "tidb_jina_vectors"
# TiDB: 100-500 rows per multi-row INSERT keeps statements far below max_allowed_packet
# and TiDB Cloud Starter's historical 10 MiB transaction cap (reference 3.11).
DEFAULT_TIDB_BATCH_ROWS = 500
DEFAULT_TIDB_BATCH_BYTES = 4 * 1024 * 1024
# Embedded: larger transactions amortise the WAL commit.
DEFAULT_EMBEDDED_BATCH_ROWS = 5_000
DEFAULT_EMBEDDED_BATCH_BYTES = 64 * 1024 * 1024
# TiDB's txn-entry-size-limit is 6 MiB per row; keep headroom for the row encoding.
MAX_ROW_BYTES = 6 * 1024 * 1024 - 64 * 1024
AUTO_EMBED_BATCH_ROWS = 50
_UPSERT_COLUMNS = ("id", "embedding", "document", "meta")


@dataclass
class _TableState:
    """What is known about the table; shared by a VectorTable and its async view."""

    drop_pending: bool = False
    loaded: bool = False
    shape: TableShape | None = None
    table: sa.Table | None = None
    cache: VectorCache | None = None  # embedded engine only
    index_note: str | None = None  # why a TiDB table has no vector index, told once
    fulltext_ready: bool = False
    key_sent: bool = False  # auto-embedding provider key stored on the server
    lock: threading.RLock = field(default_factory=threading.RLock)

    def reset(self) -> None:
        self.drop_pending, self.loaded, self.shape, self.table = False, False, None, None
        self.fulltext_ready = False
        if self.cache is not None:
            self.cache.invalidate()


class VectorTable:
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
    """

    def __init__(
        self,
        connection: str | sa.URL | sa.Engine | None = None,
        *,
        table_name: str = DEFAULT_TABLE_NAME,
        dimension: int | None = None,
        metric: DistanceMetric | str = DistanceMetric.COSINE,
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
    ) -> None:
        self.table_name = check_table_name(table_name)
        self.metric = DistanceMetric.parse(metric)
        self._declared_dimension = None if dimension is None else _vector.check_dimension(dimension)
        self._owns_engine = not isinstance(connection, sa.Engine)
        self.engine = connect(connection, engine_args=engine_args, verify_tls=verify_tls)
        self._async_source = async_source(connection, engine_args, verify_tls)
        self.is_tidb = self.engine.dialect.name == "mysql"
        self.batch_rows = positive(
            batch_rows
            or (DEFAULT_TIDB_BATCH_ROWS if self.is_tidb else DEFAULT_EMBEDDED_BATCH_ROWS),
            "batch_rows",
        )
        self.batch_bytes = positive(
            batch_bytes
            or (DEFAULT_TIDB_BATCH_BYTES if self.is_tidb else DEFAULT_EMBEDDED_BATCH_BYTES),
            "batch_bytes",
        )
        self.search_cache = search_cache
        self.vector_index = vector_index
        self.full_text = full_text
        if full_text:
            self._check_full_text_supported()
        if isinstance(auto_embedding, str):
            auto_embedding = AutoEmbedding(auto_embedding)
        self.auto_embedding = auto_embedding
        self.embedder = embedder
        self.indexed_key = None if indexed_key is None else check_indexed_key(indexed_key)
        if auto_embedding is not None:
            if self._declared_dimension is None:
                self._declared_dimension = auto_embedding.resolved_dimension()
            if self.server_embeds:
                auto_embedding.distance_function(self.metric)  # cosine or l2 only
        self._state = _TableState(drop_pending=drop_existing)
        self._engine_lock = engine_lock(self.engine)
        self._aio: AsyncVectorTable | None = None

    def __repr__(self) -> str:
        shape = self._state.shape
        dimension = self._declared_dimension or (shape.dimension if shape else None)
        return (
            f"VectorTable(table_name={self.table_name!r}, metric={self.metric.value!r}, "
            f"dimension={dimension!r}, database={describe(self.engine)!r})"
        )

    # --- schema ----------------------------------------------------------------------

    @property
    def dimension(self) -> int | None:
        """The vector dimension: declared, or read from the table (None if unknown yet)."""
        if self._declared_dimension is not None:
            return self._declared_dimension
        self._load()
        return self._state.shape.dimension if self._state.shape else None

    @property
    def database(self) -> str:
        """Where the table lives, without the password (for messages and logs)."""
        return describe(self.engine)

    @property
    def table(self) -> sa.Table | None:
        """The SQLAlchemy ``Table`` (None while the table does not exist)."""
        return self._load()

    def close(self) -> None:
        """Release what this table opened: the cache's watcher connection, the pool of an
        engine it created (not one you passed in), and async pools of closed loops.

        Idempotent; the table reconnects if used again. For the running loop's async pool
        use ``await table.aclose()``.
        """
        if self._state.cache is not None:
            self._state.cache.close()
        if self._owns_engine:
            self.engine.dispose()

    async def aclose(self) -> None:
        """:meth:`close`, plus the async pool of the running event loop."""
        if self._aio is not None:
            await self._aio.dispose()
        self.close()

    def __enter__(self) -> VectorTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> VectorTable:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def aio(self) -> AsyncVectorTable:
        """The async view of this table: the same methods, ``async def``.

        TiDB and file databases get a native async driver (aiomysql / aiosqlite) that runs
        this very code through SQLAlchemy's greenlet bridge; an in-memory database or an
        Engine you passed in is served from a worker thread instead.
        """
        if self._aio is None:
            from tidb_jina.store._async import AsyncVectorTable  # imports this module

            self._aio = AsyncVectorTable(self)
        return self._aio

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
            self._check_dimension(dim)

    def drop(self) -> None:
        """Drop the table and everything in it (no error if it does not exist)."""
        table = build_table(self.table_name, None, self.engine.dialect.name)
        with self._state.lock, self._write() as conn:
            if self.is_tidb:
                # TiDB refuses DROP TABLE while a full-text index exists: drop it first.
                names = conn.execute(_tidb.TABLE_INDEXES_SQL, {"table": self.table_name})
                fulltext = _tidb.fulltext_index_name(self.table_name)
                if fulltext in {row[0] for row in names}:
                    conn.exec_driver_sql(
                        _tidb.drop_index_ddl(self.engine.dialect, self.table_name, fulltext)
                    )
            else:
                conn.exec_driver_sql(_fulltext.drop_ddl(self.engine.dialect, self.table_name))
            table.drop(conn, checkfirst=True)
            self._state.reset()

    def _load(self) -> sa.Table | None:
        state = self._state
        if state.loaded:
            return state.table
        with state.lock:
            if state.loaded:
                return state.table
            if state.drop_pending:
                self.drop()
            with self._read() as conn:
                shape = read_shape(conn, self.table_name)
            self._adopt(shape)
            return state.table

    def _adopt(self, shape: TableShape | None) -> None:
        if shape is not None:
            if (
                self._declared_dimension is not None
                and shape.dimension is not None
                and shape.dimension != self._declared_dimension
            ):
                raise DimensionMismatchError(
                    f"table {self.table_name!r} has VECTOR({shape.dimension}) but "
                    f"dimension={self._declared_dimension} was given; use a model with "
                    f"{shape.dimension} dimensions, or a new table_name"
                )
            self._state.table = build_table(
                self.table_name,
                shape.dimension,
                self.engine.dialect.name,
                id_length=shape.id_length,
                generated=self._generated_sql(),
                indexed_key=self.indexed_key
                if self.indexed_key and indexed_key_column(self.indexed_key) in shape.columns
                else None,
            )
        self._state.shape = shape
        # A missing table is looked up again next time: someone may create it meanwhile.
        self._state.loaded = shape is not None

    def _create(self, dimension: int) -> sa.Table:
        with self._state.lock:
            if self._state.table is not None:
                return self._state.table
            table = build_table(
                self.table_name,
                dimension,
                self.engine.dialect.name,
                generated=self._generated_sql(),
                indexed_key=self.indexed_key,
            )
            with self._write() as conn:
                conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
                shape = read_shape(conn, self.table_name)
            # Someone else may have created it first with another dimension.
            self._adopt(shape)
            self._check_dimension(dimension)
            if self.is_tidb and self.vector_index:
                self._try_vector_index()
            if self.full_text:
                self.create_full_text_index()
            assert self._state.table is not None
            return self._state.table

    def _check_dimension(self, dimension: int) -> None:
        table_dim = self._state.shape.dimension if self._state.shape else None
        if table_dim is not None and table_dim != dimension:
            raise DimensionMismatchError(
                f"table {self.table_name!r} has VECTOR({table_dim}) but the vectors have "
                f"{dimension} dimensions; use a model with {table_dim} dimensions (e.g. "
                f"dimensions={table_dim} for Jina v3+) or a new table_name"
            )

    # --- TiDB vector index -------------------------------------------------------------

    @property
    def is_tidb_starter(self) -> bool:
        """True for a TiDB Cloud Starter (serverless) host."""
        return self.is_tidb and _tidb.is_starter_host(self.engine.url.host)

    def create_vector_index(self) -> None:
        """Give the table an HNSW index for its metric (TiDB; idempotent).

        Self-managed TiDB gets a TiFlash replica first; TiDB Cloud Starter creates it on
        demand. Raises ``UnsupportedFeatureError`` when the metric cannot be indexed or
        the cluster has no TiFlash. The index builds in the background: see
        :meth:`index_status`.
        """
        if not self.is_tidb:
            return  # the embedded engine always searches exactly
        if not self.metric.indexable:
            raise UnsupportedFeatureError(
                f"TiDB cannot index {self.metric.value} distance (only cosine and l2); "
                "searches on this table are exact scans. Use metric='cosine' or 'l2' "
                "for an indexed table"
            )
        if self._load() is None:
            raise ConfigurationError(
                f"table {self.table_name!r} does not exist yet; add vectors first"
            )
        statements = _tidb.vector_index_ddl(
            self.engine.dialect, self.table_name, self.metric, starter=self.is_tidb_starter
        )
        try:
            for statement in statements:
                with self._write() as conn:
                    conn.exec_driver_sql(statement)
        except DatabaseError as exc:
            if _tidb.is_missing_tiflash(exc.__cause__ or exc):
                raise UnsupportedFeatureError(
                    f"{describe(self.engine)} has no TiFlash, which TiDB's vector index "
                    "needs; searches still work as exact scans. Add a TiFlash node (or use "
                    "TiDB Cloud), then call create_vector_index() again"
                ) from exc
            raise

    def _try_vector_index(self) -> None:
        """Index a new table; without TiFlash (or an indexable metric) say so once."""
        try:
            self.create_vector_index()
        except UnsupportedFeatureError as exc:
            if self._state.index_note is None:
                self._state.index_note = str(exc)
                logger.warning("table %s: %s", self.table_name, exc)

    def index_status(self) -> _tidb.IndexStatus:
        """How far TiDB has built the vector index (exact search on the embedded engine)."""
        if self._load() is None:
            return _tidb.IndexStatus(kind="missing", note="the table does not exist yet")
        if not self.is_tidb:
            return _tidb.IndexStatus(
                kind="exact", note="the embedded engine searches exactly (no index needed)"
            )
        with self._read() as conn:
            rows = conn.execute(_tidb.INDEX_STATUS_SQL, {"table": self.table_name}).all()
        status = _tidb.index_status_from_rows(list(rows), _tidb.vector_index_name(self.table_name))
        if status.kind == "exact" and self._state.index_note:
            return _tidb.IndexStatus(kind="exact", note=self._state.index_note)
        return status

    def _where(
        self, table: sa.Table, filter: Mapping[str, Any] | None
    ) -> sa.ColumnElement[bool] | None:
        """The filter over ``table``'s meta column, using the indexed key's column."""
        indexed = {}
        if self.indexed_key and indexed_key_column(self.indexed_key) in table.c:
            indexed[self.indexed_key] = table.c[indexed_key_column(self.indexed_key)]
        return compile_filter(filter, table.c.meta, self.engine.dialect.name, indexed)

    # --- connections -----------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        """A connection for reads: one transaction (one snapshot) for all its statements.

        It is not committed: the pool's reset on return ends it, which saves TiDB a
        COMMIT round trip per search.
        """
        with self._engine_lock, self._translate(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A connection in one write transaction, committed at the end."""
        with self._writer() as conn, conn.begin():
            yield conn

    @contextmanager
    def _writer(self) -> Iterator[sa.Connection]:
        """A write connection; the caller begins and commits (one transaction per batch)."""
        with self._engine_lock, self._translate(), self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            yield conn

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except TiDBJinaError:
            raise
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise DatabaseError(
                f"{describe(self.engine)} failed: {driver_message(exc)}. Check that the server is "
                "reachable and the URL, user and password are right"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(
                f"{describe(self.engine)} refused a statement on table "
                f"{self.table_name!r}: {driver_message(exc)}"
            ) from exc

    # --- writes ----------------------------------------------------------------------

    def upsert(
        self,
        embeddings: Iterable[Any],
        *,
        ids: Iterable[str] | None = None,
        documents: Iterable[str | None] | None = None,
        metadatas: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Insert rows, replacing rows whose id exists. Returns the ids in input order.

        Missing ids are generated (UUID4). Everything is validated before anything is
        written; rows are sent in batches, one transaction each.
        """
        self._load()  # an existing table's dimension outranks a declared one in errors
        matrix = _vector.as_matrix(embeddings, self.dimension)
        n = len(matrix)
        id_list = self._prepare_ids(ids, n)
        doc_list = prepare_documents(documents, n)
        meta_list = prepare_metadatas(metadatas, n, self.indexed_key)
        if n == 0:
            return []
        keep = last_occurrences(id_list)
        rows, sizes = self._encode_rows(matrix, id_list, doc_list, meta_list, keep)
        table = self._state.table
        if table is None:
            table = self._create(matrix.shape[1])
        self._check_dimension(matrix.shape[1])
        statement = self._upsert_statement(table)
        self._write_batches(statement, _UPSERT_COLUMNS, rows, sizes)
        return id_list

    def _write_batches(
        self,
        statement: sa.Insert,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        sizes: list[int],
        max_rows: int | None = None,
    ) -> None:
        """Send validated, encoded rows: one connection, one transaction per batch.

        The rows go to the driver as they are (``executemany`` of the compiled SQL): they
        are already encoded, so SQLAlchemy's per-row parameter processing is skipped.
        """
        compiled = statement.compile(dialect=self.engine.dialect)
        sql = str(compiled)
        if compiled.positional:  # qmark / format: tuples in the statement's order
            order = [columns.index(name) for name in compiled.positiontup or ()]

            def params(part: list[tuple[Any, ...]]) -> list[Any]:
                return [tuple(row[i] for i in order) for row in part]

        else:  # pyformat / named: dicts

            def params(part: list[tuple[Any, ...]]) -> list[Any]:
                return [dict(zip(columns, row, strict=True)) for row in part]

        with self._writer() as conn:
            for part in self._batches(sizes, max_rows):
                with conn.begin():
                    conn.exec_driver_sql(sql, params(rows[part]))

    def _prepare_ids(self, ids: Iterable[str] | None, n: int) -> list[str]:
        if ids is None:
            return [str(uuid.uuid4()) for _ in range(n)]
        if isinstance(ids, (str, bytes)):
            raise InvalidInputError("ids must be a list of strings, not one string")
        id_list = list(ids)
        if len(id_list) != n:
            raise InvalidInputError(
                f"got {len(id_list)} ids for {n} vectors; pass one id per vector"
            )
        limit = self._state.shape.id_length if self._state.shape else ID_LENGTH
        for i, value in enumerate(id_list):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(
                    f"id {i} is {value!r}: ids must be non-empty strings (use str(...) for "
                    "numbers or UUIDs)"
                )
            if "\x00" in value:
                raise InvalidIdentifierError(f"id {i} contains a NUL character")
            if limit is not None and len(value) > limit:
                raise InvalidInputError(
                    f"id {value[:40]!r}... is {len(value)} characters but table "
                    f"{self.table_name!r} stores ids of at most {limit}; use shorter ids "
                    "(e.g. a hash) or a new table"
                )
        return id_list

    def _encode_rows(
        self,
        matrix: np.ndarray,
        ids: list[str],
        documents: list[str | None],
        metas: list[str],
        keep: list[int],
    ) -> tuple[list[tuple[Any, ...]], list[int]]:
        """``(id, embedding, document, meta)`` rows ready for the driver, and their sizes."""
        if self.is_tidb:
            vectors: list[Any] = _vector.encode_text_rows(matrix[keep])
        else:
            vectors = _vector.encode_blob_rows(matrix[keep])
        stored_vector = 4 * matrix.shape[1] + 4
        rows, sizes = [], []
        for vector, i in zip(vectors, keep, strict=True):
            doc = documents[i]
            size = len(ids[i]) + len(metas[i]) + (len(doc.encode()) if doc else 0)
            if size + stored_vector > MAX_ROW_BYTES:
                raise RecordTooLargeError(
                    f"record {ids[i][:40]!r} is {(size + stored_vector) / 2**20:.1f} MiB; TiDB "
                    "stores at most 6 MiB per row: split the document into smaller chunks"
                )
            rows.append((ids[i], vector, doc, metas[i]))
            sizes.append(size + len(vector))
        return rows, sizes

    def _batches(self, sizes: list[int], max_rows: int | None = None) -> Iterator[slice]:
        """Consecutive slices of rows bounded by ``batch_rows`` (or ``max_rows``) and bytes."""
        limit = min(self.batch_rows, max_rows or self.batch_rows)
        start, total = 0, 0
        for i, size in enumerate(sizes):
            if i > start and (i - start >= limit or total + size > self.batch_bytes):
                yield slice(start, i)
                start, total = i, 0
            total += size
        if start < len(sizes):
            yield slice(start, len(sizes))

    def _upsert_statement(self, table: sa.Table) -> sa.Insert:
        values: dict[str, Any] = {
            c: sa.bindparam(c) for c in ("id", "embedding", "document", "meta")
        }
        if self.is_tidb:
            tidb = mysql_dialect.insert(table).values(values)
            return tidb.on_duplicate_key_update(
                embedding=tidb.inserted.embedding,
                document=tidb.inserted.document,
                meta=tidb.inserted.meta,
            )
        embedded = sqlite_dialect.insert(table).values(values)
        updates: dict[str, Any] = {
            "embedding": embedded.excluded.embedding,
            "document": embedded.excluded.document,
            "meta": embedded.excluded.meta,
        }
        if self._state.shape is None or self._state.shape.has_update_time:
            updates["update_time"] = sa.func.current_timestamp()
        return embedded.on_conflict_do_update(index_elements=[table.c.id], set_=updates)

    def delete(
        self, ids: Iterable[str] | None = None, *, filter: Mapping[str, Any] | None = None
    ) -> int:
        """Delete rows by id and/or metadata filter; returns how many were deleted.

        Both empty is an error: deleting every row needs an explicit :meth:`clear`.
        Ids that do not exist are ignored.
        """
        id_list = None if ids is None else unique(ids)
        if id_list is None and not filter:
            raise InvalidInputError(
                "delete() needs ids or a filter; to delete every row call clear()"
            )
        validate_filter(filter)
        table = self._load()
        if table is None or id_list == []:
            return 0
        where = self._where(table, filter)
        deleted = 0
        with self._write() as conn:
            if id_list is None:
                assert where is not None  # a filter was required above
                return int(conn.execute(sa.delete(table).where(where)).rowcount)
            for chunk in chunks(id_list, IN_CHUNK):
                stmt = sa.delete(table).where(table.c.id.in_(chunk))
                if where is not None:
                    stmt = stmt.where(where)
                deleted += int(conn.execute(stmt).rowcount)
        return deleted

    def clear(self) -> int:
        """Delete every row (the table stays). Returns how many were deleted."""
        table = self._load()
        if table is None:
            return 0
        with self._write() as conn:
            return int(conn.execute(sa.delete(table)).rowcount)

    # --- reads -----------------------------------------------------------------------

    def count(self, filter: Mapping[str, Any] | None = None) -> int:
        validate_filter(filter)
        table = self._load()
        if table is None:
            return 0
        stmt = sa.select(sa.func.count()).select_from(table)
        where = self._where(table, filter)
        if where is not None:
            stmt = stmt.where(where)
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def get(
        self,
        ids: Iterable[str] | None = None,
        *,
        filter: Mapping[str, Any] | None = None,
        limit: int | None = None,
        include_embeddings: bool = False,
    ) -> list[Record]:
        """Rows by id (in the order given; missing ids are skipped) and/or filter."""
        validate_filter(filter)
        id_list = None if ids is None else unique(ids)
        table = self._load()
        if table is None or id_list == []:
            return []
        columns = [table.c.id, table.c.document, table.c.meta]
        if include_embeddings:
            columns.append(table.c.embedding)
        where = self._where(table, filter)
        base = sa.select(*columns)
        if where is not None:
            base = base.where(where)
        with self._read() as conn:
            if id_list is None:
                stmt = base.order_by(table.c.id)
                if limit is not None:
                    stmt = stmt.limit(positive(limit, "limit"))
                rows = conn.execute(stmt).all()
            else:
                found = {}
                for chunk in chunks(id_list, IN_CHUNK):
                    for row in conn.execute(base.where(table.c.id.in_(chunk))):
                        found[row[0]] = row
                rows = [found[i] for i in id_list if i in found][:limit]
        return [record_from_row(row, include_embeddings) for row in rows]

    def search(
        self,
        vector: Any,
        *,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
        prefilter: bool | None = None,
        num_candidates: int | None = None,
    ) -> list[SearchResult]:
        """The ``k`` nearest rows to ``vector`` by the table's metric, nearest first.

        ``filter`` is a metadata filter (see :mod:`tidb_jina.store._filters`);
        ``max_distance`` drops rows farther than it; ``ids`` restricts the search to
        those rows.

        Filtered search on TiDB (the embedded engine is always exact):
        ``prefilter=None`` (default) runs the index-friendly post-filter (nearest
        ``num_candidates`` rows first, default ``max(10 * k, 100)``, then the filter) and,
        if that yields fewer than ``k`` rows, one exact pre-filter query;
        ``prefilter=False`` is post-filter only (fastest, may return fewer than ``k``);
        ``prefilter=True`` is the exact pre-filter only (scans every matching row).
        """
        k = positive(k, "k")
        validate_filter(filter)
        id_list = None if ids is None else unique(ids)
        if num_candidates is not None:
            positive(num_candidates, "num_candidates")
        self._load()
        query = (
            vector if isinstance(vector, _QueryText) else _vector.as_vector(vector, self.dimension)
        )
        table = self._load()
        if table is None or id_list == []:
            return []
        if not self.is_tidb:
            assert not isinstance(query, _QueryText)  # only TiDB embeds query text
            return search_embedded(
                self, table, query, k, filter, id_list, max_distance, include_embeddings
            )
        options: dict[str, Any] = {
            "filter": filter,
            "ids": id_list,
            "max_distance": max_distance,
            "include_embeddings": include_embeddings,
            "num_candidates": num_candidates,
        }
        filtered = bool(filter) or id_list is not None
        # ids are looked up by primary key: exact and cheap, so never post-filtered.
        post = filtered and prefilter is not True and id_list is None
        results = self._run_search(
            self.search_statement(table, query, k, prefilter=not post, **options)
        )
        if post and prefilter is None and len(results) < k:
            results = self._run_search(self.search_statement(table, query, k, **options))
        return results

    def search_statement(
        self,
        table: sa.Table,
        query: Any,
        k: int,
        *,
        filter: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        prefilter: bool = True,
        num_candidates: int | None = None,
    ) -> sa.Select[Any]:
        """The TiDB search statement, one per search (public so it can be inspected).

        Pre-filter: ``SELECT ..., VEC_<METRIC>_DISTANCE(embedding, :q) AS distance FROM t
        [WHERE filter] ORDER BY distance LIMIT :k``. Post-filter: that without WHERE and
        with ``LIMIT :num_candidates`` as a subquery (the shape TiDB's HNSW index serves),
        the filter and the distance threshold outside it.
        """
        dialect = self.engine.dialect.name
        if isinstance(query, _QueryText):  # TiDB embeds the query text itself
            function = self.auto_embedding.distance_function(self.metric)  # type: ignore[union-attr]
            distance = getattr(sa.func, function)(
                table.c.embedding, str(query), type_=sa.Float
            ).label("distance")
        else:
            distance = table.c.embedding.distance(self.metric, query).label("distance")
        columns = [table.c.id, table.c.document, table.c.meta]
        if include_embeddings:
            columns.append(table.c.embedding)
        stmt = sa.select(*columns, distance)
        if prefilter:
            where = self._where(table, filter)
            if ids is not None:
                in_ids = table.c.id.in_(list(ids))
                where = in_ids if where is None else sa.and_(where, in_ids)
            if where is not None:
                stmt = stmt.where(where)
            stmt = stmt.order_by(distance).limit(k)
            if max_distance is None:
                return stmt
            nearest = stmt.subquery("candidates")
            return (
                sa.select(*nearest.c)
                .where(nearest.c.distance <= float(max_distance))
                .order_by(nearest.c.distance)
            )
        knn = stmt.order_by(distance).limit(num_candidates or max(10 * k, 100))
        candidates = knn.subquery("candidates")
        conditions = [compile_filter(filter, candidates.c.meta, dialect)]
        if ids is not None:
            conditions.append(candidates.c.id.in_(list(ids)))
        if max_distance is not None:
            conditions.append(candidates.c.distance <= float(max_distance))
        return (
            sa.select(*candidates.c)
            .where(*[c for c in conditions if c is not None])
            .order_by(candidates.c.distance)
            .limit(k)
        )

    def _run_search(self, stmt: sa.Select[Any]) -> list[SearchResult]:
        include_embeddings = "embedding" in stmt.selected_columns
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        return [self._result(row, include_embeddings) for row in rows]

    # --- text in, vectors made by the table (auto-embedding / embedder) -----------------

    @property
    def server_embeds(self) -> bool:
        """True when TiDB itself embeds (auto-embedding on TiDB Cloud Starter)."""
        return self.auto_embedding is not None and self.is_tidb_starter

    def _generated_sql(self) -> str | None:
        if not self.server_embeds:
            return None
        return self.auto_embedding.generated_sql(self.engine.dialect)  # type: ignore[union-attr]

    def text_embedder(self) -> Any:
        """The client that embeds texts here (None when TiDB embeds them)."""
        if self.server_embeds:
            return None
        if self.embedder is None and self.auto_embedding is not None:
            self.embedder = self.auto_embedding.client()
        if self.embedder is None:
            raise ConfigurationError(
                "this table has no embedder: pass embedder=JinaClient(...) (or any "
                "EmbeddingProvider) or auto_embedding='jina_ai/jina-embeddings-v3', or "
                "embed the texts yourself and call upsert()"
            )
        return self.embedder

    def add_texts(
        self,
        texts: Iterable[str],
        *,
        ids: Iterable[str] | None = None,
        metadatas: Iterable[Mapping[str, Any] | None] | None = None,
    ) -> list[str]:
        """Embed ``texts`` as passages and upsert them (TiDB embeds them itself in
        auto-embedding mode). Empty, blank or non-string texts raise before anything is
        sent. Returns the ids."""
        text_list = validate_texts(texts)
        if not self.server_embeds:
            vectors = self.text_embedder().embed_documents(text_list)
            return self.upsert(vectors, ids=ids, documents=text_list, metadatas=metadatas)
        n = len(text_list)
        id_list = self._prepare_ids(ids, n)
        metas = prepare_metadatas(metadatas, n)
        if n == 0:
            return []
        table = self._load()
        if table is None:
            assert self.dimension is not None  # auto-embedding declares it
            table = self._create(self.dimension)
        self._send_provider_key()
        keep = last_occurrences(id_list)
        rows = [(id_list[i], text_list[i], metas[i]) for i in keep]
        sizes = [len(text_list[i].encode()) + len(metas[i]) for i in keep]
        columns = ("id", "document", "meta")
        stmt = mysql_dialect.insert(table).values({c: sa.bindparam(c) for c in columns})
        stmt = stmt.on_duplicate_key_update(
            document=stmt.inserted.document, meta=stmt.inserted.meta
        )
        # The server calls the provider for every row: keep statements small.
        self._write_batches(stmt, columns, rows, sizes, max_rows=AUTO_EMBED_BATCH_ROWS)
        return id_list

    def search_text(
        self,
        text: str,
        *,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        max_distance: float | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
        prefilter: bool | None = None,
        num_candidates: int | None = None,
    ) -> list[SearchResult]:
        """Search by the meaning of ``text``: embedded as a query (the query task), or
        by TiDB's ``VEC_EMBED_*_DISTANCE`` in auto-embedding mode. Same options and
        results as :meth:`search`."""
        options: dict[str, Any] = {
            "k": k,
            "filter": filter,
            "max_distance": max_distance,
            "include_embeddings": include_embeddings,
            "ids": ids,
            "prefilter": prefilter,
            "num_candidates": num_candidates,
        }
        return self.search(self.query_vector(text), **options)

    def query_vector(self, text: str) -> Any:
        """What :meth:`search` needs for the query ``text``: its vector (the query task),
        or, when TiDB embeds (auto-embedding), the text itself for the server."""
        (text,) = validate_texts([text], "query")
        if not self.server_embeds:
            return self.text_embedder().embed_query(text)
        self._send_provider_key()
        return _QueryText(text)

    def _send_provider_key(self) -> None:
        """Store the provider key in TiDB's global variable, once, as a bound parameter."""
        auto = self.auto_embedding
        key = auto.resolved_api_key() if auto else None
        if key is None or self._state.key_sent:
            return
        statement = set_key_statement(auto.key_variable)  # type: ignore[union-attr]
        with self._engine_lock, self._translate(), self.engine.connect() as conn:
            # A raw cursor: SQLAlchemy's echo/logging must never see the key.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(statement, (key,))
            except Exception as exc:  # the driver's own errors: not SQLAlchemy-wrapped here
                raise DatabaseError(
                    f"{describe(self.engine)} refused to store the "
                    f"{auto.key_variable} key ({type(exc).__name__}); "  # type: ignore[union-attr]
                    "auto-embedding keys need a TiDB Cloud Starter user allowed to SET GLOBAL"
                ) from None  # the statement's parameters hold the key: no chaining
            finally:
                cursor.close()
        self._state.key_sent = True

    # --- full-text and hybrid search ------------------------------------------------------

    def _check_full_text_supported(self) -> None:
        if self.is_tidb and not self.is_tidb_starter:
            raise UnsupportedFeatureError(
                f"full-text search runs only on TiDB Cloud Starter (AWS regions), not on "
                f"{describe(self.engine)}; use vector search there, or the embedded engine"
            )

    def create_full_text_index(self, parser: str = "MULTILINGUAL") -> None:
        """Index ``document`` for full-text search (idempotent).

        TiDB Cloud Starter: ``FULLTEXT INDEX ... WITH PARSER MULTILINGUAL|STANDARD``
        (built in the background by TiFlash). Embedded engine: an FTS5 index kept in sync
        by triggers (also created automatically on the first full-text search).
        """
        self._check_full_text_supported()
        if self._state.fulltext_ready:
            return
        if self._load() is None:
            raise ConfigurationError(
                f"table {self.table_name!r} does not exist yet; add documents first"
            )
        with self._state.lock, self._write() as conn:
            if self.is_tidb:
                ddl = _tidb.fulltext_index_ddl(self.engine.dialect, self.table_name, parser)
                conn.exec_driver_sql(ddl)
            elif not conn.execute(_fulltext.exists_statement(self.table_name)).scalar_one():
                for statement in _fulltext.ddl(self.engine.dialect, self.table_name):
                    conn.exec_driver_sql(statement)
            self._state.fulltext_ready = True

    def full_text_search(
        self,
        text: str,
        *,
        k: int = 4,
        filter: Mapping[str, Any] | None = None,
        ids: Iterable[str] | None = None,
    ) -> list[SearchResult]:
        """Rows whose document matches the words of ``text``, best BM25 score first.

        Words are OR-ed, as TiDB's ``FTS_MATCH_WORD`` does; ``ids`` restricts the search
        to those rows. See :class:`SearchResult` for the scores.
        """
        k = positive(k, "k")
        validate_filter(filter)
        id_list = None if ids is None else unique(ids)
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a string, got {type(text).__name__}")
        self._check_full_text_supported()
        table = self._load()
        if table is None or not text.strip() or id_list == []:
            return []
        where = self._where(table, filter)
        if id_list is not None:
            in_ids = table.c.id.in_(id_list)
            where = in_ids if where is None else sa.and_(where, in_ids)
        if self.is_tidb:
            stmt = _tidb.fulltext_search_statement(table, text, k, where)
        else:
            match = _fulltext.match_expression(text)
            if match is None:
                return []
            self.create_full_text_index()
            stmt = _fulltext.search_statement(self.engine.dialect, table, match, k, where)
        with self._read() as conn:
            rows = conn.execute(stmt).all()
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
        filter: Mapping[str, Any] | None = None,
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
        _needs_vector(vector, "hybrid search")
        if fusion not in ("rrf", "weighted"):
            raise InvalidInputError(f"fusion must be 'rrf' or 'weighted', got {fusion!r}")
        query = _vector.as_vector(vector, self.dimension)
        pool = positive(num_candidates, "num_candidates") if num_candidates else max(4 * k, 40)
        id_list = None if ids is None else unique(ids)
        by_vector = self.search(query, k=pool, filter=filter, ids=id_list)
        by_text = self.full_text_search(text, k=pool, filter=filter, ids=id_list)
        if fusion == "rrf":
            fused = reciprocal_rank_fusion(
                [[r.id for r in by_vector], [r.id for r in by_text]], k=rrf_k
            )
        else:
            fused = weighted_fusion(
                {r.id: r.score for r in by_vector},
                {r.id: r.text_score or 0.0 for r in by_text},
                alpha=alpha,
            )
        winners = sorted(fused, key=lambda key: -fused[key])[:k]
        vector_hits = {r.id: r for r in by_vector}
        text_hits = {r.id: r for r in by_text}
        distances = self._distances_for([key for key in winners if key not in vector_hits], query)
        results = []
        for key in winners:
            base = vector_hits.get(key) or text_hits[key]
            distance = vector_hits[key].distance if key in vector_hits else distances[key]
            results.append(
                SearchResult(
                    id=key,
                    document=base.document,
                    metadata=base.metadata,
                    distance=distance,
                    score=fused[key],
                    text_score=text_hits[key].text_score if key in text_hits else None,
                )
            )
        return results

    def _distances_for(self, ids: list[str], query: np.ndarray) -> dict[str, float]:
        """Vector distances of rows found only by full-text search."""
        if not ids:
            return {}
        records = self.get(ids, include_embeddings=True)
        matrix = np.stack([np.asarray(r.embedding) for r in records]).astype(np.float32)
        values = self.metric.distances(matrix, query)
        return {r.id: float(d) for r, d in zip(records, values, strict=True)}

    def max_marginal_relevance_search(
        self,
        vector: Any,
        *,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Mapping[str, Any] | None = None,
        include_embeddings: bool = False,
        ids: Iterable[str] | None = None,
    ) -> list[SearchResult]:
        """Fetch ``fetch_k`` nearest rows, then pick ``k`` by maximal marginal relevance."""
        k = positive(k, "k")
        _needs_vector(vector, "maximal marginal relevance")
        candidates = self.search(
            vector,
            k=max(positive(fetch_k, "fetch_k"), k),
            filter=filter,
            include_embeddings=True,
            ids=ids,
        )
        if not candidates:
            return []
        picked = maximal_marginal_relevance(
            _vector.as_vector(vector),
            np.stack([c.embedding for c in candidates]),  # type: ignore[misc]
            k=k,
            lambda_mult=lambda_mult,
        )
        chosen = [candidates[i] for i in picked]
        if include_embeddings:
            return chosen
        return [without_embedding(c) for c in chosen]

    def _result(self, row: Any, include_embeddings: bool) -> SearchResult:
        distance = float(row.distance)
        return SearchResult(
            id=row.id,
            document=row.document,
            metadata=row.meta or {},
            distance=distance,
            score=self.metric.score(distance),
            embedding=row.embedding if include_embeddings else None,
        )


# --- helpers ---------------------------------------------------------------------------


class _QueryText(str):
    """A query given as text, for TiDB to embed (auto-embedding mode)."""

    __slots__ = ()


def _needs_vector(vector: Any, what: str) -> None:
    if isinstance(vector, _QueryText):
        raise UnsupportedFeatureError(
            f"{what} needs the query's vector, which TiDB keeps to itself in auto-embedding "
            "mode; pass embedder= (a client that embeds like the server) to the table"
        )
