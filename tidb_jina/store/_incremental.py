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
2. the batch is written and committed;
3. the next ``BEGIN IMMEDIATE`` (the next batch's, or an empty one after the last) takes
   the lock again. The writing connection's own ``PRAGMA data_version`` changes only when
   *another* connection commits, so if it is unchanged since step 1, nothing slipped in
   between our commit and now; the change token read now labels the new snapshot.

Anything else (a foreign commit, a snapshot loaded meanwhile) leaves the snapshot as it
is: its token no longer matches and the next search reloads it, once for all readers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina.store._embedded import VectorCache
from tidb_jina.store._rows import IN_CHUNK, chunks

_LE_FLOAT32 = np.dtype("<f4")
_ROWID = sa.literal_column("rowid", sa.Integer)


def write_into_snapshot(
    cache: VectorCache,
    conn: sa.Connection,
    table: sa.Table,
    sql: str,
    rows: list[tuple[Any, ...]],
    batches: list[slice],
) -> None:
    """Upsert ``(id, embedding, document, meta)`` rows (``sql`` takes them in that order),
    one transaction per batch, applying each committed batch to ``cache``'s snapshot.

    The cache's load lock is held for the whole upsert, taken *before* SQLite's write
    lock (every writer of this cache takes them in that order, so none waits for the
    other's): a reader that sees a new state before it is applied waits for the apply
    instead of loading every vector again, and no load runs in between."""
    with cache.writing():
        pending: tuple[Any, int, list[tuple[Any, ...]]] | None = None
        for part in [*batches, None]:
            with conn.begin():  # BEGIN IMMEDIATE: nobody else commits until this one ends
                own = _own_version(conn)
                if pending is not None:
                    before, own_then, written = pending
                    pending = None
                    if own == own_then:  # no foreign commit since ours: the token is ours
                        _apply(cache, conn, table, before, cache.token(conn), written)
                if part is None:
                    break
                snap = cache.snapshot
                before = cache.token(conn)
                batch = rows[part]
                conn.exec_driver_sql(sql, batch)
                if snap is not None and snap.token == before:
                    pending = (before, own, batch)


def _own_version(conn: sa.Connection) -> int:
    return int(conn.exec_driver_sql("PRAGMA data_version").scalar_one())


def _apply(
    cache: VectorCache,
    conn: sa.Connection,
    table: sa.Table,
    before: Any,
    after: Any,
    written: list[tuple[Any, ...]],
) -> None:
    ids = [row[0] for row in written]
    found: dict[str, int] = {}
    for chunk in chunks(ids, IN_CHUNK):
        found.update(conn.execute(sa.select(table.c.id, _ROWID).where(table.c.id.in_(chunk))).all())  # type: ignore[arg-type]
    if len(found) != len(ids):
        cache.invalidate()  # cannot happen unless someone wrote inside our lock
        return
    rowids = np.array([found[i] for i in ids], dtype=np.int64)
    blobs = [row[1] for row in written]
    width = len(blobs[0])
    if width % 4 or any(len(b) != width for b in blobs):
        cache.invalidate()
        return
    vectors = np.frombuffer(b"".join(blobs), dtype=_LE_FLOAT32).reshape(len(blobs), width // 4)
    order = np.argsort(rowids, kind="stable")  # appended rows stay in rowid order
    cache.apply(before, after, rowids[order], vectors[order].astype(np.float32))
