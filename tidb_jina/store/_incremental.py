"""Writes by this process applied to the in-memory snapshot, instead of a reload.

Reloading every vector after each commit costs seconds on a large table, and a RAG app
that ingests while it serves commits all the time. When this process upserts rows, it
already holds their vectors, so it adds them to the snapshot (``VectorCache.apply``),
batch by batch, as each batch commits.

That is only right if the snapshot plus this batch *is* the new committed state: nobody
else may commit in between. Each batch runs in ``BEGIN IMMEDIATE`` (SQLite's write lock:
no other connection can commit until it ends):

1. under the lock, before writing: the change token must still be the snapshot's, so the
   snapshot is the state being written on;
2. the batch is written, the rowids of its rows read (still under the lock, so they are
   the rows just written), and the transaction committed;
3. the change token is read, *and then* the writing connection's own
   ``PRAGMA data_version``. That value changes only when *another* connection commits,
   so if it is unchanged since step 1, nobody committed between step 1 and the token's
   read: the token is exactly our batch's state, and labels the new snapshot.

Everything slow (the rowids, decoding the vectors) happens in step 2, so the moment
between the commit and the new snapshot's publication (when readers that see the new
state wait for it) is two PRAGMA reads. (Until the third round of issue 18, step 3 took
an empty ``BEGIN IMMEDIATE ... COMMIT`` and read the rowids there: about 2 ms more.)

Deletes and ``clear()`` by this process (``delete_from_snapshot``) are one transaction
too: step 1, then the ``DELETE``, whose deleted rowids come back from the statement
itself (``RETURNING rowid``; on SQLite before 3.35 they are selected first, under the
same lock), then step 3. The new snapshot marks the rows dead in a new ``alive`` mask
(the matrix buffer and the cached filter columns stay as they are, aligned by
position); ``clear()`` publishes an empty snapshot.

Anything else (a foreign commit, a snapshot loaded meanwhile) leaves the snapshot as it
is: its token no longer matches and the next search reloads it, once for all readers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina.store._embedded import Snapshot, VectorCache
from tidb_jina.store._rows import IN_CHUNK, chunks
from tidb_jina.store._stream_load import release_free_memory, spare_rows
from tidb_jina.store._watch import Busy

_LE_FLOAT32 = np.dtype("<f4")
_ROWID = sa.literal_column("rowid", sa.Integer)


def write_into_snapshot(
    cache: VectorCache,
    conn: sa.Connection,
    table: sa.Table,
    sql: str,
    rows: list[tuple[Any, ...]],
    batches: list[slice],
    check: Callable[[sa.Connection], None] | None = None,
) -> None:
    """Upsert ``(id, embedding, document, meta)`` rows (``sql`` takes them in that order),
    one transaction per batch, applying each committed batch to ``cache``'s snapshot.

    The cache's load lock is held for the whole upsert, taken *before* SQLite's write
    lock (every writer of this cache takes them in that order, so none waits for the
    other's): a reader that sees a new state before it is applied waits for the apply
    instead of loading every vector again, and no load runs in between."""
    with cache.writing():
        for part in batches:
            with conn.begin():  # BEGIN IMMEDIATE: nobody else commits until this one ends
                if check is not None:  # the table is still the one checked (_write_check)
                    check(conn)
                own = _own_version(conn)
                snap = cache.snapshot
                before = _write_token(cache, conn)
                batch = rows[part]
                conn.exec_driver_sql(sql, batch)
                written = None
                if snap is not None and before is not None and snap.token == before:
                    written = _written(conn, table, batch)
                    if written is None:  # cannot happen unless someone wrote inside our lock
                        cache.invalidate()
            if written is not None:
                after = _confirmed(cache, conn, own)
                if after is not None:  # nobody else committed: ``after`` is ours
                    cache.apply(before, after[0], *written)
    trim_now()


# Freed heap memory is given back to the system at most this often by writes of this
# process (``trim_now``).
TRIM_SECONDS = 1.0
_trimmed_at = [0.0]


def trim_now() -> None:
    """Return freed heap pages to the system, at most once per ``TRIM_SECONDS``.

    Under reads and writes, searches in 8 threads leave their temporaries (a query's
    distances: 4 bytes a row; a coalesced product: 4 bytes a row per query) free in each
    thread's malloc arena: about 60-90 MB at 100k rows, most of the mixed load's memory
    above the matrix. ``malloc_trim`` (as after a load) releases the free pages; it changes
    no allocator setting of the process. A trim took 1.9 ms (median; 6.9 ms at most) in
    the mixed bench, in the writing thread after it released the snapshot lock."""
    now = time.monotonic()
    if now - _trimmed_at[0] >= TRIM_SECONDS:
        _trimmed_at[0] = now
        release_free_memory()


def _write_token(cache: VectorCache, conn: sa.Connection) -> Any:
    """The change token read inside our write transaction; None when the watcher cannot
    read beside a writer: SQLite's ``memdb`` VFS refuses a reader while any connection
    holds the write lock (a file never does: WAL readers never wait, and a rollback
    journal's only while a commit holds PENDING, which ours excludes). Waiting for our
    own lock failed every write after a search with "database is locked"; None applies
    nothing, so the next search loads the table again."""
    try:
        return cache.token(conn, wait=False)
    except Busy:
        return None


def _own_version(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA data_version").scalar_one())


def _confirmed(cache: VectorCache, conn: sa.Connection, own: int) -> tuple[Any] | None:
    """After our commit: ``(token,)`` of exactly our commit's state, or None when another
    connection committed meanwhile or the reads failed. The rows are committed by then,
    so a driver error here (a database locked by another process) must not fail the
    write: the snapshot keeps its old token, and the next search reloads."""
    try:
        after = cache.token(conn)
        return (after,) if _own_version_now(conn) == own else None
    except (sqlite3.Error, sa.exc.DBAPIError):
        return None


def _own_version_now(conn: sa.Connection) -> int:
    """``_own_version`` outside a transaction: on the driver's connection, so that
    SQLAlchemy does not begin one (a write connection's begin is BEGIN IMMEDIATE)."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("PRAGMA data_version")
        return int(cursor.fetchall()[0][0])
    finally:
        cursor.close()


def _written(
    conn: sa.Connection, table: sa.Table, batch: list[tuple[Any, ...]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(rowids, float32 vectors) of the rows just upserted, in rowid order (appended rows
    stay in rowid order); None if a row is missing or a vector has an odd size."""
    ids = [row[0] for row in batch]
    found: dict[str, int] = {}
    # the ids go to the driver as the upsert sent them; a plain statement, not a compiled
    # SELECT with an expanding IN (about 1 ms of Python per 100-row batch, GIL held).
    # Only identifiers quoted by the dialect enter the text; the ids are bound.
    quote = conn.dialect.identifier_preparer
    head = f"SELECT {quote.quote('id')}, rowid FROM {quote.format_table(table)} WHERE "  # noqa: S608
    for chunk in chunks(ids, IN_CHUNK):
        marks = ", ".join("?" * len(chunk))
        sql = f"{head}{quote.quote('id')} IN ({marks})"
        found.update(conn.exec_driver_sql(sql, tuple(chunk)).all())  # type: ignore[arg-type]
    if len(found) != len(ids):
        return None
    rowids = np.array([found[i] for i in ids], dtype=np.int64)
    blobs = [row[1] for row in batch]
    width = len(blobs[0])
    if width % 4 or any(len(b) != width for b in blobs):
        return None
    vectors = np.frombuffer(b"".join(blobs), dtype=_LE_FLOAT32).reshape(len(blobs), width // 4)
    order = np.argsort(rowids, kind="stable")
    return rowids[order], vectors[order].astype(np.float32)


def delete_from_snapshot(
    cache: VectorCache,
    conn: sa.Connection,
    table: sa.Table,
    statements: Sequence[sa.Delete] | None,
) -> int:
    """Run ``statements`` (None: delete every row) in one transaction, then remove the
    deleted rows from ``cache``'s snapshot; returns how many rows were deleted.

    The same proof as an upsert's (module docstring): the snapshot's token is checked
    under the write lock before deleting, and the writer's own ``data_version`` after
    the commit (``_confirm_removal``).
    The load lock is taken first, as by every writer of this cache."""
    with cache.writing():
        with conn.begin():  # BEGIN IMMEDIATE
            own = _own_version(conn)
            snap = cache.snapshot
            before = _write_token(cache, conn)
            if statements is None:
                rowids = None
                deleted = int(conn.execute(sa.delete(table)).rowcount)
            else:
                rowids = _deleted_rowids(conn, table, statements)
                deleted = int(rowids.size)
        if (
            snap is not None and before is not None and snap.token == before
        ):  # else the next search reloads
            _confirm_removal(cache, conn, own, before, rowids)
        return deleted


def _confirm_removal(
    cache: VectorCache, conn: sa.Connection, own: int, before: Any, rowids: np.ndarray | None
) -> None:
    """After the delete's commit: read the new token, *then* the writer's own
    ``data_version``. If the latter did not move, nobody else committed between our
    transaction's start and that read, so the token is exactly our delete's state.
    (No second transaction is needed, unlike between an upsert's batches: a delete is
    one transaction, and the empty ``BEGIN IMMEDIATE`` ... ``COMMIT`` cost about 1.5 ms.)"""
    after = _confirmed(cache, conn, own)
    if after is not None:
        _remove(cache, before, after[0], rowids)


def _deleted_rowids(
    conn: sa.Connection, table: sa.Table, statements: Sequence[sa.Delete]
) -> np.ndarray:
    """Run the deletes; the rowids they deleted (sorted, each once)."""
    found: list[int] = []
    for stmt in statements:
        if conn.dialect.delete_returning:  # SQLite 3.35+: one pass
            found.extend(conn.execute(stmt.returning(_ROWID)).scalars())
            continue
        where = stmt.whereclause
        select = sa.select(_ROWID).select_from(table)
        ids = list(conn.execute(select if where is None else select.where(where)).scalars())
        for chunk in chunks(ids, IN_CHUNK):  # we hold the write lock: the same rows
            conn.execute(sa.delete(table).where(_ROWID.in_(chunk)))
        found.extend(ids)
    return np.unique(np.array(found, dtype=np.int64))


def _remove(cache: VectorCache, before: Any, after: Any, rowids: np.ndarray | None) -> None:
    """Publish the snapshot at ``after``: the one at ``before`` without ``rowids``
    (None: without every row). Called with the load lock held."""
    snap = cache.snapshot
    if snap is None or snap.token != before or cache._buffer is None:
        return
    if rowids is None:  # clear(): an empty snapshot, and the old buffer freed
        capacity, width = spare_rows(0), snap.matrix.shape[1]
        cache._buffer = np.empty((capacity, width), dtype=np.float32)
        if cache._sq_buffer is not None:
            cache._sq_buffer = np.zeros(capacity, dtype=np.float32)
        sq = None if cache._sq_buffer is None else cache._sq_buffer[:0]
        empty = Snapshot(after, np.empty(0, dtype=np.int64), cache._buffer[:0], sq)
        cache._publish(empty, history=False)  # older snapshots would keep the old buffer
        return
    if rowids.size == 0 and after == before:
        return  # nothing deleted: the snapshot stays as it is
    positions = snap.positions(rowids)
    if positions is None:  # a deleted row the snapshot does not hold: never ours to fix
        cache.invalidate()
        return
    alive = np.ones(snap.size, dtype=bool) if snap.alive is None else snap.alive.copy()
    alive[positions] = False
    dead = snap.size - int(alive.sum())
    if dead > max(1024, snap.size // 4):  # as ``VectorCache.apply``: rebuild the buffer
        cache._compact(snap, alive, snap.size)
        done = cache.snapshot
        assert done is not None
        new = Snapshot(after, done.rowids, done.matrix, done.sq_norms)
    else:
        new = Snapshot(after, snap.rowids, snap.matrix, snap.sq_norms, alive)
        columns = snap.extras.get("columns")
        if columns:  # same positions: the alive mask hides the deleted rows
            new.extras["columns"] = dict(columns)
        cache.slots.retire(positions)  # reusable once no snapshot sees them (``_slots``)
        cache.slots.advance(snap, new, rowids, np.full(rowids.size, -1, dtype=np.intp))
    cache._publish(new)
