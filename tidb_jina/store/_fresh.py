"""A search on a fresh snapshot: no transaction, one statement.

The general path (``EmbeddedBackend.search``) checks a connection out of the pool, begins
a read transaction, pins it to a change token (two PRAGMAs), builds a SELECT for the
winners through SQLAlchemy and rolls back: about a millisecond of fixed cost, which is
most of a search below about 50,000 rows.

When the in-memory snapshot already is the newest committed state, none of that is
needed to know what the search sees:

1. the watcher's change token (``_watch``: read with the facade's schema check at the
   start of the call, one statement on its private connection) equals the snapshot's,
   so the snapshot holds exactly the committed rows;
2. the snapshot is scored (filters only from filter columns already in memory);
3. the winners' rows are read in one plain SELECT on the watcher's connection, which
   also returns the change token and the schema cookie of the state it read
   (``data_version`` and ``schema_version`` in the same read transaction);
4. that token equals the snapshot's: the rows are the snapshot's state, and the answer
   is the one the general path would give. (Until issue 18's sixth round the token was
   read again after the SELECT, one more read transaction per search.)

A loaded table's search skips step 1 and the facade's schema check altogether
(``schema``, from ``_vector_search.unchecked_search``): the snapshot in memory is taken
as the newest state, step 4 says whether it was, and the cookie of step 3 must be the
one the table's shape was read under. So a search on a fresh snapshot reads the
database once.

A search overtaken by a write of *this* process (the new state is in memory, applied to
the same buffer) keeps its answer when that write cannot have changed it: no winner was
written and no new row ranks before the k-th (``_overtaken``, with the proof). Under a
steady writer of this process that is nearly every overtaken search; when the rule gives
up, that one search is answered by the general path. A search overtaken by another
connection's commit is answered by the general path too, and searches take the general
path for a second after it: under steady foreign writes most fast searches would be
overtaken, and each would be scored twice.
(Until issue 18's fourth round, every own write also sent searches the general way.)

Anything else (a token that moved, a filter key not yet in memory, id lists, embeddings
asked for, an async engine, ``sqlite://``'s one shared connection) returns None, and the
general path answers.
"""

from __future__ import annotations

import functools
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from tidb_jina.store._backend import SearchOptions
from tidb_jina.store._embedded import (
    Snapshot,
    VectorCache,
    filter_keys,
    keep_bound,
    score_hits,
)
from tidb_jina.store._filter_numpy import KeyColumn, positions, supported
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._overtaken import applied, kept, starting
from tidb_jina.store._rows import IN_CHUNK, chunks
from tidb_jina.store._types import MetadataJSON, load_metadata
from tidb_jina.store._watch import COOKIE_COLUMN, VERSION_COLUMN

if TYPE_CHECKING:
    from tidb_jina.store._db import Database

# (id, document, metadata, embedding) by rowid, as ``_backend_embedded._fetch_rows``
Rows = dict[int, tuple[Any, Any, Any, None]]


def search_fresh(
    cache: VectorCache,
    db: Database,
    table: sa.Table,
    vector: np.ndarray,
    options: SearchOptions,
    schema: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], Rows] | None:
    """(hits, rows) of a search answered without a transaction; None: take the general
    path (see the module docstring for when).

    ``schema``: the search before the facade's schema check (``search_unchecked``): no
    token is read first (the snapshot in memory is taken as the newest state, and the
    token read with the rows says whether it was, as for a search overtaken by a
    commit); the answer stands only when the rows were read under this schema cookie."""
    snap = cache.snapshot
    if (
        snap is None
        or time.monotonic() < cache.busy_until
        or options.ids is not None
        or options.include_embeddings
        or db.serialized
        or db.dialect.is_async
        or not isinstance(table.c.meta.type, MetadataJSON)
        or snap.matrix.shape[1] != vector.shape[0]
    ):
        return None
    try:  # read with the facade's schema check of this call, else now
        token = snap.token if schema is not None else _token(cache)
    except sqlite3.Error:
        return None  # the general path tries again and translates a lasting failure
    if token is None:
        return None
    if token != snap.token:  # a newer state: in memory, or being applied right now
        snap = starting(cache, snap, token)
        if snap is None or snap.matrix.shape[1] != vector.shape[0]:
            return None
    positions = None
    if options.filter is not None:
        positions = _cached_filter_positions(snap, options.filter)
        if positions is None:
            return None
    hits = score_hits(cache, snap, vector, options.k, positions, options.max_distance)
    try:
        read = _read_rows(cache, table, hits[0])
        if read is None:
            return None  # the watcher was closed meanwhile
        rows, after, cookie = read
        if schema is not None and cookie != schema:
            return None  # a table made or dropped: the facade reads the shape again
        if after != snap.token:
            later = None if after is None else applied(cache, after)
            if later is None:  # another connection's commit (or one not in memory)
                note_busy(cache)  # the next searches go the general way for a while
                return None
            with np.errstate(over="ignore", invalid="ignore"):  # as ``score_hits``
                unchanged = kept(cache, snap, later, vector, hits, options.k)
            if not unchanged:
                return None  # our own write changed this answer: this one search
        if len(rows) != hits[0].size:
            return None
    except (sqlite3.Error, sa.exc.SQLAlchemyError):
        return None  # the general path tries again and explains any lasting failure
    return hits, rows


def _token(cache: VectorCache) -> Any:
    """The change token read with the facade's schema check of this call, else now."""
    return cache.watcher.recent_token() or cache.watcher.token_now()


BUSY_SECONDS = 1.0


def note_busy(cache: VectorCache) -> None:
    """Send this table's searches the general way for ``BUSY_SECONDS`` (it is written)."""
    cache.busy_until = time.monotonic() + BUSY_SECONDS


def _cached_filter_positions(snap: Snapshot, filter: Filter) -> np.ndarray | None:
    """The filter's rows from columns already in memory for every row of ``snap``;
    None when a column is missing or behind (reading it needs SQL)."""
    if not supported(filter.node):
        return None
    columns = snap.extras.get("columns")
    if not columns:
        return None
    # Taken once: a concurrent search may pop a key from the shared dict (to re-insert
    # it last, or to evict it) at any moment, so the dict is never read again here and
    # no SQL is ever needed (this path has no connection).
    taken: dict[str, KeyColumn] = {}
    for key in filter_keys(filter.node):
        column = columns.get(key)
        if column is None or len(column.kind) != snap.size:
            return None
        taken[key] = column
    made = sum(column.typed.made() for column in taken.values())
    found = positions(filter.node, taken.__getitem__, snap.size, snap.alive)
    for key in taken:  # now the most recently used: evicted last (``_evict``)
        popped = columns.pop(key, None)
        if popped is not None:  # unless another search put one back meanwhile
            columns.setdefault(key, popped)
    if sum(column.typed.made() for column in taken.values()) != made:
        keep_bound(columns, set(taken))  # typed forms or postings made: the byte bound
    return found


def _read_rows(
    cache: VectorCache, table: sa.Table, rowids: np.ndarray
) -> tuple[Rows, Any, int | None] | None:
    """(the rows' (id, document, metadata), the change token and the schema cookie of the
    state they were read from), in plain SELECTs on the watcher's connection
    (``ChangeWatcher.read_then_token``: no pool checkout); None when the watcher is
    closed."""
    statements = [
        (_rows_sql(table, len(chunk)), chunk) for chunk in chunks(rowids.tolist(), IN_CHUNK)
    ]
    read = cache.watcher.read_then_token(statements)
    if read is None:
        return None
    fetched: Rows = {}
    for rowid, id_, document, meta in read[0]:
        fetched[rowid] = (id_, document, load_metadata(meta, id_), None)
    return fetched, read[1], read[2]


def _rows_sql(table: sa.Table, count: int) -> str:
    """SQLite's ``SELECT rowid, id, document, meta ... WHERE rowid IN (?, ...)``."""
    return _rows_sql_for(table.name, table.schema, count)


@functools.lru_cache(maxsize=64)
def _rows_sql_for(name: str, schema: str | None, count: int) -> str:
    """The text for a table by name: the cache keeps strings, not ``sa.Table`` objects
    (with their metadata) alive after the tables are gone."""
    table = sa.table(name, sa.column("id"), sa.column("document"), sa.column("meta"))
    table.schema = schema
    rowid = sa.literal_column("rowid", sa.Integer)
    marks = [sa.bindparam(f"r{i}", type_=sa.Integer) for i in range(count)]
    version: sa.ColumnClause[int] = sa.literal_column(VERSION_COLUMN, sa.Integer)
    cookie: sa.ColumnClause[int] = sa.literal_column(COOKIE_COLUMN, sa.Integer)
    stmt = sa.select(rowid, table.c.id, table.c.document, table.c.meta, version, cookie)
    return str(stmt.where(rowid.in_(marks)).compile(dialect=_SQLITE))


_SQLITE = sqlite_dialect.dialect(paramstyle="qmark")
