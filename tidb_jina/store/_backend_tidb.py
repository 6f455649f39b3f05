"""TiDB's side of a vector table: vector text, index DDL, search statements, full text.

Searches are one statement: ``SELECT id, document, meta, VEC_<METRIC>_DISTANCE(embedding,
:q) AS distance ... ORDER BY distance LIMIT :k``. A filtered search is a post-filter by
default (the nearest ``num_candidates`` rows in a subquery, the shape TiDB's HNSW index
serves, then the filter); when that yields fewer than ``k`` rows, one exact pre-filter
query follows. The DDL and catalogue statements are in :mod:`tidb_jina.store._tidb`.

In auto-embedding mode on TiDB Cloud Starter the server embeds: rows are inserted
without a vector (``EMBED_TEXT`` generated column) and a text query is compared with
``VEC_EMBED_<METRIC>_DISTANCE(embedding, :text)``; the provider key is stored once in
TiDB's global variable as a bound parameter, on a raw cursor no log can see.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_dialect

from tidb_jina._errors import (
    ConfigurationError,
    DatabaseError,
    UnsupportedFeatureError,
)
from tidb_jina.store import _crud, _tidb, _tidb_names, _vector
from tidb_jina.store._auto import set_key_statement
from tidb_jina.store._backend import Query, SearchOptions, TableSettings, TableState
from tidb_jina.store._crud import where_clause
from tidb_jina.store._db import Database
from tidb_jina.store._engine import logger
from tidb_jina.store._filter_sql import compile_filter
from tidb_jina.store._results import SearchResult

# 100-500 rows per multi-row INSERT keeps statements far below max_allowed_packet and
# TiDB Cloud Starter's historical 10 MiB transaction cap (reference 3.11).
DEFAULT_TIDB_BATCH_ROWS = 500
DEFAULT_TIDB_BATCH_BYTES = 4 * 1024 * 1024
# The server calls the provider for every auto-embedded row: keep statements small.
AUTO_EMBED_BATCH_ROWS = 50
# Rows per delete transaction: TiDB's "Delete Data" guide asks for batched deletes above
# about ten thousand rows (txn-total-size-limit); 1,000 keys stay far below any limit.
DELETE_BATCH_ROWS = 1_000


class TiDBBackend:
    """A vector table on TiDB (self-managed v8.4+ or TiDB Cloud)."""

    default_batch_rows = DEFAULT_TIDB_BATCH_ROWS
    default_batch_bytes = DEFAULT_TIDB_BATCH_BYTES
    text_batch_rows = AUTO_EMBED_BATCH_ROWS
    delete_batch_rows: int | None = DELETE_BATCH_ROWS
    name = "tidb"

    def __init__(self, db: Database, settings: TableSettings, state: TableState) -> None:
        self.db = db
        self.settings = settings
        self.state = state
        self.starter = _tidb.is_starter_host(db.engine.url.host)

    def bind(self, db: Database) -> TiDBBackend:
        other = copy.copy(self)
        other.db = db
        return other

    # --- capabilities -------------------------------------------------------------------

    @property
    def server_embeds(self) -> bool:
        return self.settings.auto_embedding is not None and self.starter

    @property
    def full_text_error(self) -> str | None:
        if self.starter:
            return None
        return (
            f"full-text search runs only on TiDB Cloud Starter (AWS regions), not on "
            f"{self.db.describe()}; use vector search there, or the embedded engine"
        )

    def generated_sql(self) -> str | None:
        auto = self.settings.auto_embedding
        return auto.generated_sql(self.db.dialect) if auto and self.server_embeds else None

    # --- schema -------------------------------------------------------------------------

    def after_create(self, table: sa.Table) -> None:
        """Index a new table. Any refusal of the index DDL (no TiFlash, an unindexable
        metric, or whatever else the server says) is handled one way: a warning, once per
        table object; searches stay exact; :meth:`index_status` gives the reason. The write
        that created the table goes on: the table itself is fine."""
        if not self.settings.vector_index:
            return
        try:
            self.create_vector_index(table)
        except DatabaseError as exc:  # UnsupportedFeatureError included
            note = str(exc)
            if not isinstance(exc, UnsupportedFeatureError):
                note = (
                    f"TiDB refused the vector index ({exc}); searches on this table are "
                    "exact scans. Fix the cause, then call create_vector_index()"
                )
            if self.state.index_note is None:
                logger.warning("table %s: %s", self.settings.table_name, note)
            self.state.index_note = note

    def check_created(self, conn: sa.Connection, table: sa.Table) -> None:
        """Right after ``CREATE TABLE``, on its connection: a TiDB without full-text search
        skips an inline ``FULLTEXT INDEX`` with warning 1214 and creates the table anyway.
        Then the table we just made (no 1050 "exists" warning, still empty) is dropped
        again and ``full_text=True`` is refused, so no table is left without its index."""
        if not _tidb.has_fulltext_clause(table):
            return
        codes = {int(row[1]) for row in conn.exec_driver_sql("SHOW WARNINGS")}
        if _tidb.WARN_FULLTEXT_SKIPPED not in codes:
            return
        name = self.settings.table_name
        new = _tidb.WARN_TABLE_EXISTS not in codes
        if new and conn.execute(sa.select(table.c.id).limit(1)).first() is None:
            conn.exec_driver_sql(f"DROP TABLE {_tidb_names.quote(self.db.dialect, name)}")
        raise UnsupportedFeatureError(
            f"{self.db.describe()} skipped the full-text index of table {name!r} (warning "
            "1214: this TiDB has no full-text search), so full_text=True cannot hold; "
            "full-text search runs on TiDB Cloud Starter in the regions PingCAP lists. "
            "Use full_text=False here, or a cluster in such a region"
        )

    def drop_extras(self, conn: sa.Connection) -> None:
        # TiDB refuses DROP TABLE while a full-text index exists: drop it first.
        name = self.settings.table_name
        names = conn.execute(_tidb.TABLE_INDEXES_SQL, {"table": name})
        fulltext = _tidb.fulltext_index_name(name)
        if fulltext in {row[0] for row in names}:
            conn.exec_driver_sql(_tidb.drop_index_ddl(self.db.dialect, name, fulltext))

    def create_vector_index(self, table: sa.Table | None) -> None:
        metric, name = self.settings.metric, self.settings.table_name
        if not metric.indexable:
            raise UnsupportedFeatureError(
                f"TiDB cannot index {metric.value} distance (only cosine and l2); "
                "searches on this table are exact scans. Use metric='cosine' or 'l2' "
                "for an indexed table"
            )
        if table is None:
            raise ConfigurationError(f"table {name!r} does not exist yet; add vectors first")
        statements = _tidb.vector_index_ddl(self.db.dialect, name, metric, starter=self.starter)
        try:
            for statement in statements:
                with self.db.write() as conn:
                    conn.exec_driver_sql(statement)
        except DatabaseError as exc:
            if _tidb.is_missing_tiflash(exc.__cause__ or exc):
                raise UnsupportedFeatureError(
                    f"{self.db.describe()} has no TiFlash, which TiDB's vector index "
                    "needs; searches still work as exact scans. Add a TiFlash node (or use "
                    "TiDB Cloud), then call create_vector_index() again"
                ) from exc
            raise

    def index_status(self) -> _tidb.IndexStatus:
        name = self.settings.table_name
        with self.db.read() as conn:
            rows = conn.execute(_tidb.INDEX_STATUS_SQL, {"table": name}).all()
        status = _tidb.index_status_from_rows(list(rows), _tidb.vector_index_name(name))
        if status.kind == "exact" and self.state.index_note:
            return _tidb.IndexStatus(kind="exact", note=self.state.index_note)
        return status

    def create_full_text_index(self, parser: str) -> None:
        ddl = _tidb.fulltext_index_ddl(self.db.dialect, self.settings.table_name, parser)
        with self.db.write() as conn:
            conn.exec_driver_sql(ddl)

    # --- writes -------------------------------------------------------------------------

    def encode_vectors(self, matrix: np.ndarray) -> list[Any]:
        return _vector.encode_text_rows(matrix)

    def upsert(self, table: sa.Table, rows: list[tuple[Any, ...]], batches: list[slice]) -> None:
        """``INSERT ... ON DUPLICATE KEY UPDATE`` of ``(id, embedding, document, meta)``."""
        columns = ("id", "embedding", "document", "meta")
        stmt = mysql_dialect.insert(table).values({c: sa.bindparam(c) for c in columns})
        stmt = stmt.on_duplicate_key_update(
            embedding=stmt.inserted.embedding,
            document=stmt.inserted.document,
            meta=stmt.inserted.meta,
        )
        self.db.write_batches(stmt, columns, rows, batches)

    def insert_texts(
        self, table: sa.Table, rows: list[tuple[Any, ...]], batches: list[slice]
    ) -> None:
        """Rows ``(id, document, meta)`` whose vectors TiDB computes (``EMBED_TEXT``)."""
        self.send_provider_key()
        columns = ("id", "document", "meta")
        stmt = mysql_dialect.insert(table).values({c: sa.bindparam(c) for c in columns})
        stmt = stmt.on_duplicate_key_update(
            document=stmt.inserted.document, meta=stmt.inserted.meta
        )
        self.db.write_batches(stmt, columns, rows, batches)

    def delete(
        self, table: sa.Table, ids: list[str] | None, where: sa.ColumnElement[bool] | None
    ) -> int:
        return _crud.delete(self.db, table, ids, where, self.delete_batch_rows)

    def clear(self, table: sa.Table) -> int:
        return _crud.clear(self.db, table, self.delete_batch_rows)

    def send_provider_key(self) -> None:
        """Store the provider key in TiDB's global variable, once, as a bound parameter."""
        auto = self.settings.auto_embedding
        key = auto.resolved_api_key() if auto else None
        if auto is None or key is None or self.state.key_sent:
            return
        statement = set_key_statement(auto.key_variable)
        with self.db.raw() as conn:
            # A raw cursor: SQLAlchemy's echo/logging must never see the key.
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(statement, (key,))
            except Exception as exc:  # the driver's own errors: not SQLAlchemy-wrapped here
                raise DatabaseError(
                    f"{self.db.describe()} refused to store the {auto.key_variable} key "
                    f"({type(exc).__name__}); auto-embedding keys need a TiDB Cloud Starter "
                    "user allowed to SET GLOBAL"
                ) from None  # the statement's parameters hold the key: no chaining
            finally:
                cursor.close()
        self.state.key_sent = True

    # --- search -------------------------------------------------------------------------

    def search(self, table: sa.Table, query: Query, options: SearchOptions) -> list[SearchResult]:
        if query.text is not None:
            self.send_provider_key()
        filtered = options.filter is not None or options.ids is not None
        # ids are looked up by primary key: exact and cheap, so never post-filtered.
        post = filtered and options.prefilter is not True and options.ids is None
        distance = distance_expression(table, self.settings, query)
        key = self.settings.indexed_key

        def statement(prefilter: bool, skip_null: bool = False) -> sa.Select[Any]:
            return search_statement(
                table, distance, options, "mysql", key, prefilter=prefilter, skip_null=skip_null
            )

        results, undefined = self._run(statement(prefilter=not post))
        if len(results) < options.k and (
            (post and options.prefilter is None) or (not post and undefined)
        ):
            # Rows without a distance (NULL: zero or NULL vectors written by other tools)
            # took slots, or the post-filter came up short: one exact query that skips them.
            results, _ = self._run(statement(prefilter=True, skip_null=True))
        return results

    def _run(self, stmt: sa.Select[Any]) -> tuple[list[SearchResult], int]:
        """The results of ``stmt`` and how many rows had no distance (left out)."""
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        results = results_from_rows(rows, self.settings.metric, stmt)
        return results, len(rows) - len(results)

    def full_text_rows(
        self, table: sa.Table, text: str, k: int, where: sa.ColumnElement[bool] | None
    ) -> list[Any]:
        stmt = _tidb.fulltext_search_statement(table, text, k, where)
        with self.db.read() as conn:
            if not self.state.fulltext_ready:
                self._require_fulltext_index(conn)
            return list(conn.execute(stmt).all())

    def _require_fulltext_index(self, conn: sa.Connection) -> None:
        """Raise a clear error, not the server's, when ``document`` has no full-text
        index (``FTS_MATCH_WORD`` needs one). Checked once per table object."""
        name = self.settings.table_name
        found = conn.execute(_tidb.FULLTEXT_INDEXES_SQL, {"table": name}).first()
        if found is None:  # the catalogue TiFlash keeps, as pytidb asks it
            found = conn.execute(_tidb.FULLTEXT_TIFLASH_INDEXES_SQL, {"table": name}).first()
        if found is None:
            raise ConfigurationError(
                f"table {name!r} has no full-text index, which full-text and hybrid search "
                "need on TiDB: call table.create_full_text_index() once (or create the "
                "table with full_text=True); TiDB Cloud Starter builds it in the background"
            )
        self.state.fulltext_ready = True

    def search_many(
        self, table: sa.Table, queries: np.ndarray, options: SearchOptions
    ) -> list[list[SearchResult]]:
        return [self.search(table, Query(vector=q), options) for q in queries]

    def note_schema(self, conn: sa.Connection) -> None:
        return None  # a TiDB table's shape is read once (DDL by others is not tracked)

    def schema_changed(self) -> bool:
        return False

    def search_unchecked(
        self, table: sa.Table, vector: np.ndarray, options: SearchOptions
    ) -> list[SearchResult] | None:
        return None  # every TiDB search is one statement already

    def close(self) -> None:
        return None


def distance_expression(table: sa.Table, settings: TableSettings, query: Query) -> sa.Label[Any]:
    """``VEC_<METRIC>_DISTANCE(embedding, :q)``, or ``VEC_EMBED_..._DISTANCE`` for text."""
    if query.text is None:
        return table.c.embedding.distance(settings.metric, query.vector).label("distance")
    auto = settings.auto_embedding
    if auto is None:
        raise ConfigurationError("a text query needs auto_embedding on the table")
    function = auto.distance_function(settings.metric)
    return getattr(sa.func, function)(table.c.embedding, query.text, type_=sa.Float).label(
        "distance"
    )


def search_statement(
    table: sa.Table,
    distance: sa.Label[Any],
    options: SearchOptions,
    dialect: str,
    indexed_key: str | None,
    *,
    prefilter: bool,
    skip_null: bool = False,
) -> sa.Select[Any]:
    """Pre-filter: ``SELECT ..., VEC_<METRIC>_DISTANCE(embedding, :q) AS distance FROM t
    [WHERE filter] ORDER BY distance LIMIT :k``. Post-filter: that without WHERE and with
    ``LIMIT :num_candidates`` as a subquery (the shape TiDB's HNSW index serves), the
    filter and the distance threshold outside it. ``skip_null`` (pre-filter only) adds
    ``distance IS NOT NULL`` to the WHERE: an exact query, which no index serves anyway.
    Without it, a pre-filter threshold also lets NULL distances through (``... OR distance
    IS NULL``): they took slots of ``LIMIT k``, and the caller must see them to refill."""
    columns = [table.c.id, table.c.document, table.c.meta]
    if options.include_embeddings:
        columns.append(table.c.embedding)
    stmt = sa.select(*columns, distance)
    k, max_distance = options.k, options.max_distance
    if prefilter:
        where = where_clause(table, options.filter, dialect, indexed_key, options.ids)
        if where is not None:
            stmt = stmt.where(where)
        if skip_null:
            stmt = stmt.where(distance.element.is_not(None))
        stmt = stmt.order_by(distance).limit(k)
        if max_distance is None:
            return stmt
        nearest = stmt.subquery("candidates")
        within = nearest.c.distance <= max_distance
        if not skip_null:  # NULL rows took slots of LIMIT k: return them, to be counted
            within = sa.or_(within, nearest.c.distance.is_(None))
        return sa.select(*nearest.c).where(within).order_by(nearest.c.distance)
    knn = stmt.order_by(distance).limit(options.num_candidates or max(10 * k, 100))
    candidates = knn.subquery("candidates")
    conditions = [compile_filter(options.filter, candidates.c.meta, dialect)]
    if options.ids is not None:
        conditions.append(candidates.c.id.in_(options.ids))
    if max_distance is not None:
        conditions.append(candidates.c.distance <= max_distance)
    return (
        sa.select(*candidates.c)
        .where(*[c for c in conditions if c is not None])
        .order_by(candidates.c.distance)
        .limit(k)
    )


def results_from_rows(rows: Any, metric: Any, stmt: sa.Select[Any]) -> list[SearchResult]:
    """Search results from the rows of :func:`search_statement`.

    A row whose distance is NULL (TiDB's answer for an all-zero or NULL vector under
    cosine, see :mod:`._zero_vectors`) is left out: it has no place in a ranking."""
    include_embeddings = "embedding" in stmt.selected_columns
    score = metric.score
    return [
        SearchResult(
            id=row.id,
            document=row.document,
            metadata=row.meta or {},
            distance=float(row.distance),
            score=score(float(row.distance)),
            embedding=row.embedding if include_embeddings else None,
        )
        for row in rows
        if row.distance is not None
    ]
