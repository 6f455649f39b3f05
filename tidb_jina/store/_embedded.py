"""Exact search on the embedded engine at NumPy speed: an in-memory copy of the vectors.

``VectorCache`` holds the copy; ``EmbeddedBackend.search`` (``_backend_embedded``) uses it.

Reading every BLOB out of SQLite for each query costs far more than scoring them, so the
embedded engine keeps the table's vectors in one float32 matrix, prepared for the
table's metric (rows pre-normalized for cosine, squared norms kept for L2), and scores a
query with one matrix-vector product. A metadata filter still runs in SQL; it returns
row ids only, and the matching rows of the matrix are scored.

The copy is never stale. It is labelled with a change token read before it is loaded:
for a file database, ``PRAGMA data_version`` on a private watcher connection (it changes
whenever any other connection, in this process or another, commits); for an in-memory
database, the single connection's ``total_changes``. A search uses the copy only if the
token is unchanged, and checks it again after reading the winning rows, so the scores
and the rows always come from the same committed state.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina.store import _vector
from tidb_jina.store._filter_numpy import KeyColumn, mask, supported
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._metrics import DistanceMetric


@dataclass(frozen=True)
class Snapshot:
    """The table's vectors at one committed state, prepared for one metric."""

    token: Any
    rowids: np.ndarray  # sorted int64
    matrix: np.ndarray  # float32 (n, d): unit rows for cosine, raw otherwise
    sq_norms: np.ndarray | None  # float32 (n,), for L2
    # Parsed metadata and per-key filter columns, filled on the first filtered search.
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def positions(self, rowids: np.ndarray) -> np.ndarray:
        """Matrix rows of the given rowids (all present in this snapshot)."""
        return np.searchsorted(self.rowids, rowids)


class VectorCache:
    """One embedded table's vector snapshot plus the means to tell when it is stale."""

    def __init__(self, engine: sa.Engine, metric: DistanceMetric) -> None:
        self.metric = metric
        self.snapshot: Snapshot | None = None
        self._database = engine.url.database or ""
        self._file = self._database not in ("", ":memory:")
        self._watcher: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def token(self, conn: sa.Connection) -> Any:
        if not self._file:
            return conn.connection.dbapi_connection.total_changes  # type: ignore[union-attr]
        with self._lock:
            if self._watcher is None:
                self._watcher = sqlite3.connect(self._database, check_same_thread=False)
            return self._watcher.execute("PRAGMA data_version").fetchone()[0]

    def current(self, token: Any) -> Snapshot | None:
        snap = self.snapshot
        return snap if snap is not None and snap.token == token else None

    def load(self, conn: sa.Connection, table: sa.Table, token: Any, dimension: int) -> Snapshot:
        rowid = sa.literal_column("rowid", sa.Integer)
        blob = sa.type_coerce(table.c.embedding, sa.LargeBinary)
        rows = conn.execute(sa.select(rowid, blob).order_by(rowid)).all()
        if rows:
            ids, blobs = zip(*rows, strict=True)
            rowids = np.array(ids, dtype=np.int64)
            matrix = _vector.decode_blob_rows(blobs, dimension)
        else:
            rowids, matrix = np.empty(0, np.int64), np.empty((0, dimension), np.float32)
        snap = Snapshot(token, rowids, *self._prepare(matrix))
        self.snapshot = snap
        return snap

    def filter_positions(
        self, snap: Snapshot, conn: sa.Connection, table: sa.Table, filter: Filter
    ) -> np.ndarray | None:
        """Rows of ``snap`` matching ``filter``, by NumPy; None when SQL must do it."""
        if not supported(filter.node):
            return None
        columns: dict[str, KeyColumn] = snap.extras.setdefault("columns", {})
        stale = False

        def column(key: str) -> KeyColumn:
            nonlocal stale
            cached = columns.get(key)
            if cached is None:
                cached = _load_column(conn, table, key, snap.rowids)
                if cached is None:  # the rows are not the snapshot's: SQL answers instead
                    stale = True
                    cached = KeyColumn([None] * snap.rowids.size, [None] * snap.rowids.size)
                else:
                    columns[key] = cached
            return cached

        found = np.flatnonzero(mask(filter.node, column, snap.rowids.size))
        return None if stale else found  # stale: not the snapshot's state, let SQL answer

    def invalidate(self) -> None:
        self.snapshot = None

    def close(self) -> None:
        with self._lock:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None

    def _prepare(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if self.metric is DistanceMetric.COSINE:
            norms = np.linalg.norm(matrix, axis=1, keepdims=True)
            norms[norms == 0] = np.nan  # no cosine distance: NaN, left out like TiDB's NULL
            return np.ascontiguousarray(matrix / norms, dtype=np.float32), None
        if self.metric is DistanceMetric.L2:
            return np.ascontiguousarray(matrix), np.einsum("ij,ij->i", matrix, matrix)
        return np.ascontiguousarray(matrix), None

    def distances(
        self, snap: Snapshot, query: np.ndarray, positions: np.ndarray | None
    ) -> np.ndarray:
        """Distances from ``query`` to the snapshot's rows (all, or at ``positions``)."""
        matrix = snap.matrix if positions is None else snap.matrix[positions]
        if self.metric is DistanceMetric.COSINE:
            norm = np.float32(np.linalg.norm(query))
            unit = query / norm if norm > 0 else query
            return np.float32(1.0) - matrix @ unit
        if self.metric is DistanceMetric.INNER_PRODUCT:
            return -(matrix @ query)
        if self.metric is DistanceMetric.L2:
            sq = snap.sq_norms if positions is None else snap.sq_norms[positions]  # type: ignore[index]
            d2 = sq - 2 * (matrix @ query) + np.float32(query @ query)
            return np.sqrt(np.maximum(d2, 0, out=d2))
        return self.metric.distances(matrix, query)

    def exact(self, snap: Snapshot, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact distances for a few rows (the winners), free of cancellation error."""
        rows = snap.matrix[positions]
        if self.metric is DistanceMetric.L2:
            return self.metric.distances(rows, query)
        return self.distances(snap, query, positions)


def _load_column(
    conn: sa.Connection, table: sa.Table, key: str, rowids: np.ndarray
) -> KeyColumn | None:
    """One key's JSON type and value for every row, in rowid order (None: rows differ)."""
    # path_safe keys only: no quote or backslash to escape in the path
    path: sa.BindParameter[str] = sa.bindparam(None, f'$."{key}"', type_=sa.String)
    rowid = sa.literal_column("rowid", sa.Integer)
    stmt = sa.select(
        rowid, sa.func.json_type(table.c.meta, path), sa.func.json_extract(table.c.meta, path)
    ).order_by(rowid)
    rows = conn.execute(stmt).all()
    if len(rows) != rowids.size or not np.array_equal(
        np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), rowids
    ):
        return None
    return KeyColumn([r[1] for r in rows], [r[2] for r in rows])


# --- scoring on a snapshot --------------------------------------------------------------


def score_hits(
    cache: VectorCache,
    snap: Snapshot,
    query: np.ndarray,
    k: int,
    positions: np.ndarray | None,
    max_distance: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, distances) of the winners among ``positions`` (None: all), nearest first."""
    rowids = snap.rowids if positions is None else snap.rowids[positions]
    if rowids.size == 0:
        return rowids, np.empty(0, np.float32)
    approx = cache.distances(snap, query, positions)
    chosen = nearest(approx, rowids, k, max_distance)
    chosen_positions = chosen if positions is None else positions[chosen]
    exact = cache.exact(snap, query, chosen_positions)
    order = np.lexsort((rowids[chosen], exact))
    if max_distance is not None:
        order = order[exact[order] <= max_distance]
    return rowids[chosen][order], exact[order]


def nearest(
    distances: np.ndarray, rowids: np.ndarray, k: int, max_distance: float | None
) -> np.ndarray:
    """Indices of the k smallest distances (ties by rowid), optionally within a bound."""
    candidates = np.arange(distances.shape[0])
    if max_distance is not None:
        candidates = np.flatnonzero(distances <= max_distance)
    if k < candidates.size:
        part = np.argpartition(distances[candidates], k - 1)[:k]
        candidates = candidates[part]
    order = np.lexsort((rowids[candidates], distances[candidates]))
    return candidates[order]
