"""The embedded engine's side of a vector table: SQLite with float32 BLOBs and NumPy search.

Vectors are stored as little-endian float32 BLOBs. Searches score an in-memory snapshot
of the vectors (:class:`~tidb_jina.store._embedded.VectorCache`) with NumPy; common
filters run as NumPy masks on that snapshot, the others (and id lists) select rowids in
SQL. The winners' rows are read in the same read transaction, and the snapshot's change
token is checked again afterwards, so scores and rows always come from one committed
state. Full-text search is an FTS5 index kept in sync by triggers (:mod:`._fulltext`).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from tidb_jina._errors import ConfigurationError, SchemaError
from tidb_jina.store import _crud, _fulltext, _tidb, _vector
from tidb_jina.store._backend import Query, SearchOptions, TableSettings, TableState
from tidb_jina.store._crud import where_clause
from tidb_jina.store._db import Database
from tidb_jina.store._embedded import Snapshot, VectorCache, score_hits
from tidb_jina.store._fresh import search_fresh
from tidb_jina.store._incremental import delete_from_snapshot, write_into_snapshot
from tidb_jina.store._results import SearchResult, hit
from tidb_jina.store._rows import IN_CHUNK, chunks
from tidb_jina.store._snapshot_file import SnapshotFile, check_option
from tidb_jina.store._types import load_metadata
from tidb_jina.store._watch import Busy
from tidb_jina.store._write_check import same_table

# Larger transactions amortise the WAL commit.
DEFAULT_EMBEDDED_BATCH_ROWS = 5_000
DEFAULT_EMBEDDED_BATCH_BYTES = 64 * 1024 * 1024
_ROWID = sa.literal_column("rowid", sa.Integer)


class EmbeddedBackend:
    """A vector table in SQLite (a file, or ``sqlite://`` in memory)."""

    default_batch_rows = DEFAULT_EMBEDDED_BATCH_ROWS
    default_batch_bytes = DEFAULT_EMBEDDED_BATCH_BYTES
    text_batch_rows = DEFAULT_EMBEDDED_BATCH_ROWS
    delete_batch_rows: int | None = None  # SQLite: no transaction size limit, one delete
    name = "embedded"
    server_embeds = False
    full_text_error = None

    def __init__(self, db: Database, settings: TableSettings, state: TableState) -> None:
        self.db = db
        self.settings = settings
        self.state = state
        self.cache = VectorCache(db.engine, settings.metric)
        place = check_option(settings.snapshot_file, db.engine)
        if place and not settings.search_cache:
            raise ConfigurationError(
                "snapshot_file= keeps the in-memory vectors on disk; it needs "
                "search_cache=True (the default): remove one of the two options"
            )
        if place:
            self.cache.file = SnapshotFile(place, settings.table_name, settings.metric)

    def bind(self, db: Database) -> EmbeddedBackend:
        other = copy.copy(self)  # shares the cache: one snapshot per table object
        other.db = db
        return other

    def generated_sql(self) -> str | None:
        return None

    # --- schema -------------------------------------------------------------------------

    def after_create(self, table: sa.Table) -> None:
        return None  # every search is exact: no vector index to build

    def check_created(self, conn: sa.Connection, table: sa.Table) -> None:
        return None  # SQLite builds what CREATE TABLE says, or fails

    def drop_extras(self, conn: sa.Connection) -> None:
        _fulltext.run(conn, _fulltext.drop_ddl(self.db.dialect, self.settings.table_name))
        if self.cache.file is not None:  # its token row and its file go with the table
            self.cache.file.forget(conn)
        self.cache.invalidate()
        self.cache.schema_seen = None

    def create_vector_index(self, table: sa.Table | None) -> None:
        return None  # the embedded engine always searches exactly

    def index_status(self) -> _tidb.IndexStatus:
        return _tidb.IndexStatus(
            kind="exact", note="the embedded engine searches exactly (no index needed)"
        )

    def create_full_text_index(self, parser: str) -> None:
        """The FTS5 index with CJK bigrams (:mod:`._fulltext`); a table indexed before
        that existed migrates here (old index dropped, new one built from the rows)."""
        name, dialect = self.settings.table_name, self.db.dialect
        with self.db.write() as conn:
            if not conn.execute(_fulltext.exists_statement(name)).scalar_one():
                if conn.execute(_fulltext.old_index_exists_statement(name)).scalar_one():
                    _fulltext.run(conn, _fulltext.old_index_ddl(dialect, name))
                _fulltext.run(conn, _fulltext.ddl(dialect, name))
                _fulltext.build(conn, name)

    # --- writes -------------------------------------------------------------------------

    def encode_vectors(self, matrix: np.ndarray) -> list[Any]:
        return _vector.encode_blob_rows(matrix)

    def upsert(self, table: sa.Table, rows: list[tuple[Any, ...]], batches: list[slice]) -> None:
        """``INSERT ... ON CONFLICT (id) DO UPDATE`` of ``(id, embedding, document, meta)``."""
        columns = ("id", "embedding", "document", "meta")
        stmt = sqlite_dialect.insert(table).values({c: sa.bindparam(c) for c in columns})
        updates: dict[str, Any] = {
            "embedding": stmt.excluded.embedding,
            "document": stmt.excluded.document,
            "meta": stmt.excluded.meta,
        }
        shape = self.state.shape
        if shape is None or shape.has_update_time:
            updates["update_time"] = sa.func.current_timestamp()
        upsert = stmt.on_conflict_do_update(index_elements=[table.c.id], set_=updates)
        check = same_table(table, rows)  # in each transaction: nobody re-created it
        if self.cache.snapshot is None:  # nothing in memory to keep up to date
            self.db.write_batches(upsert, columns, rows, batches, check)
            return
        compiled = upsert.compile(dialect=self.db.dialect)
        assert list(compiled.positiontup or ()) == list(columns)  # rows go in as they are
        sql = str(compiled)
        with self.db.writer() as conn:
            write_into_snapshot(self.cache, conn, table, sql, rows, batches, check)

    def insert_texts(
        self, table: sa.Table, rows: list[tuple[Any, ...]], batches: list[slice]
    ) -> None:
        raise AssertionError("the embedded engine never embeds on the server")

    def delete(
        self, table: sa.Table, ids: list[str] | None, where: sa.ColumnElement[bool] | None
    ) -> int:
        """One transaction; the deleted rows leave the snapshot too (``_incremental``)."""
        if self.cache.snapshot is None:  # nothing in memory to keep up to date
            return _crud.delete(self.db, table, ids, where)
        statements = _crud.delete_statements(table, ids, where)
        with self.db.writer() as conn:
            return delete_from_snapshot(self.cache, conn, table, statements)

    def clear(self, table: sa.Table) -> int:
        if self.cache.snapshot is None:
            return _crud.clear(self.db, table)
        with self.db.writer() as conn:
            return delete_from_snapshot(self.cache, conn, table, None)

    # --- search -------------------------------------------------------------------------

    def search_unchecked(
        self, table: sa.Table, vector: np.ndarray, options: SearchOptions
    ) -> list[SearchResult] | None:
        """The fast search without the schema check at its start (one read transaction
        less): it stands when its rows were read in the snapshot's own state, under the
        schema cookie the facade's shape was read with (``_fresh.search_fresh``)."""
        seen = self.cache.schema_seen
        if not self.settings.search_cache or seen is None:
            return None
        fresh = search_fresh(self.cache, self.db, table, vector, options, seen)
        return None if fresh is None else self._results(fresh[0], fresh[1], options)

    def search(self, table: sa.Table, query: Query, options: SearchOptions) -> list[SearchResult]:
        assert query.vector is not None  # only TiDB embeds query text itself
        vector, k, bound = query.vector, options.k, options.max_distance
        cache = self.cache
        if self.settings.search_cache:
            fresh = search_fresh(cache, self.db, table, vector, options)
            if fresh is not None:  # the snapshot is the newest state: no transaction
                return self._results(fresh[0], fresh[1], options)
        for attempt in range(3):
            last = attempt == 2  # the last try never gives up
            with self.db.read() as conn:
                token = self._pinned_token(conn)
                if token is None and not last:
                    continue  # a commit landed as the transaction began: look again
                snap = self._snapshot(conn, table, vector.shape[0], token, last)
                if snap is None:
                    continue  # our transaction began before a newer state in memory
                positions = self._matching(snap, conn, table, options)
                if positions is False:  # cannot happen: snapshot and transaction agree
                    continue
                assert positions is not True
                if last or not self.db.serialized:
                    hits = score_hits(cache, snap, vector, k, positions, bound)
                    rows = _fetch_rows(conn, table, hits[0], options.include_embeddings)
                    return self._results(hits, rows, options)
            # sqlite:// is one connection under a lock: score without holding it
            hits = score_hits(cache, snap, vector, k, positions, bound)
            with self.db.read() as conn:
                rows = _fetch_rows(conn, table, hits[0], options.include_embeddings)
                if len(rows) == hits[0].size and cache.token(conn) == snap.token:
                    return self._results(hits, rows, options)
        raise AssertionError("the last try always answers")

    def _pinned_token(self, conn: sa.Connection) -> Any:
        """The change token of the state ``conn``'s read transaction sees, or None when a
        commit landed while it began (then the state is unknown).

        Read before and after the transaction takes its snapshot (its first read): equal
        tokens mean nothing was committed in between, so the transaction sees exactly
        that state, for all its statements. Scores (from the snapshot of that token) and
        rows (read on ``conn``) then always agree, however busy the writers are."""
        before = self.cache.token(conn)
        conn.exec_driver_sql("PRAGMA schema_version").scalar_one()  # takes the snapshot
        try:  # never wait here for a commit: it waits for this transaction to end
            return before if self.cache.token(conn, wait=False) == before else None
        except Busy:  # rollback-journal mode, a writer committing: look again after it
            return None

    def search_many(
        self, table: sa.Table, queries: np.ndarray, options: SearchOptions
    ) -> list[list[SearchResult]]:
        """Many queries with the same options: one read transaction, one product."""
        cache, k, bound = self.cache, options.k, options.max_distance
        for attempt in range(3):
            last = attempt == 2
            with self.db.read() as conn:
                token = self._pinned_token(conn)
                if token is None and not last:
                    continue
                snap = self._snapshot(conn, table, queries.shape[1], token, last)
                if snap is None:
                    continue
                positions = self._matching(snap, conn, table, options)
                if positions is False:
                    continue
                assert positions is not True
                size = snap.size if positions is None else positions.size
                approx = cache.many_distances(snap, queries, positions) if size else None
                hits = [
                    score_hits(
                        cache,
                        snap,
                        q,
                        k,
                        positions,
                        bound,
                        None if approx is None else approx[:, i],
                    )
                    for i, q in enumerate(queries)
                ]
                wanted = np.unique(np.concatenate([h[0] for h in hits])) if hits else None
                rows = (
                    {}
                    if wanted is None
                    else _fetch_rows(conn, table, wanted, options.include_embeddings)
                )
                return [self._results(h, rows, options) for h in hits]
        raise AssertionError("the last try always answers")

    def _results(
        self, hits: tuple[np.ndarray, np.ndarray], rows: dict[int, Any], options: SearchOptions
    ) -> list[SearchResult]:
        score, embeddings = self.settings.metric.score, options.include_embeddings
        out = []
        for rid, dist in zip(hits[0].tolist(), hits[1].tolist(), strict=True):  # floats
            row = rows[rid]
            embedding = row[3] if embeddings else None
            out.append(hit(row[0], row[1], row[2] or {}, dist, score(dist), embedding))
        return out

    def _snapshot(
        self, conn: sa.Connection, table: sa.Table, dim: int, token: Any, last: bool
    ) -> Snapshot | None:
        """The vectors of the state ``conn`` reads (``token``; None: unknown, read them);
        None when a newer state is in memory (begin again on that one)."""
        cache = self.cache
        keep = self.settings.search_cache and token is not None
        try:
            if keep:
                snap = cache.current(token)
                if snap is not None:
                    return snap
                loaded = cache.load(conn, table, token, dim)
                if loaded is not None or not last:
                    return None if loaded is None else loaded[0]
            return cache.load_private(conn, table, token, dim)
        except ValueError as exc:
            raise SchemaError(
                f"table {self.settings.table_name!r} holds vectors whose length is not "
                f"{dim}; it was written with another dimension. Drop it or use another "
                "table_name"
            ) from exc

    def _matching(
        self, snap: Snapshot, conn: sa.Connection, table: sa.Table, options: SearchOptions
    ) -> np.ndarray | bool | None:
        """Snapshot rows passing the filter / ids (None: all; False: snapshot is stale)."""
        if options.filter is None and options.ids is None:
            return None
        if options.ids is None:
            assert options.filter is not None
            positions = self.cache.filter_positions(snap, conn, table, options.filter)
            if positions is not None:
                return positions
        where = where_clause(
            table, options.filter, "sqlite", self.settings.indexed_key, options.ids
        )
        assert where is not None  # a filter or ids were given
        selected = np.array(
            conn.execute(sa.select(_ROWID).select_from(table).where(where)).scalars().all(),
            dtype=np.int64,
        )
        selected.sort()
        found = snap.positions(selected)
        return False if found is None else found

    def note_schema(self, conn: sa.Connection) -> None:
        self.cache.schema_seen = int(conn.exec_driver_sql("PRAGMA schema_version").scalar_one())
        self.cache.watcher.recent_token()  # an earlier call's: not for this call's search

    def schema_changed(self) -> bool:
        seen = self.cache.schema_seen
        if seen is None:
            return False
        with self.db.translate():  # a locked database is a DatabaseError, never raw
            now = self.cache.watcher.schema_version_now()
        if now is None:  # sqlite:// has no watcher: ask its one connection
            with self.db.raw() as conn:
                now = self.cache.watcher.schema_version(conn)
        return now != seen

    def full_text_rows(
        self, table: sa.Table, text: str, k: int, where: sa.ColumnElement[bool] | None
    ) -> list[Any]:
        match = _fulltext.match_expression(text)
        if match is None:
            return []
        if not self.state.fulltext_ready:
            with self.state.lock:  # one thread builds the index; the others wait for it
                if not self.state.fulltext_ready:
                    self.create_full_text_index("")
                    self.state.fulltext_ready = True
        stmt = _fulltext.search_statement(self.db.dialect, table, match, k, where)
        probe = _fulltext.pending_probe(self.db.dialect, self.settings.table_name)
        for _ in range(3):
            with self.db.read() as conn:
                if conn.exec_driver_sql(probe).first() is None:  # the index is up to date
                    return list(conn.execute(stmt).all())
            with self.db.write() as conn:  # index the rows written since the last search
                _fulltext.sync(conn, self.settings.table_name)
        with self.db.write() as conn:  # writers keep coming: index and search in one go
            _fulltext.sync(conn, self.settings.table_name)
            return list(conn.execute(stmt).all())

    def close(self) -> None:
        self.cache.close()


def _fetch_rows(
    conn: sa.Connection, table: sa.Table, rowids: np.ndarray, include_embeddings: bool
) -> dict[int, Any]:
    meta = sa.type_coerce(table.c.meta, sa.Text)  # the text: decoded below, with its id
    columns = [_ROWID, table.c.id, table.c.document, meta]
    if include_embeddings:
        columns.append(table.c.embedding)
    fetched = {}
    for chunk in chunks(rowids.tolist(), IN_CHUNK):
        for row in conn.execute(sa.select(*columns).where(_ROWID.in_(chunk))):
            decoded = (row[1], row[2], load_metadata(row[3], row[1]))
            fetched[row[0]] = decoded + (tuple(row[4:]) if include_embeddings else (None,))
    return fetched
