"""Exact search on the embedded engine at NumPy speed: an in-memory copy of the vectors.

``VectorCache`` holds the copy; ``EmbeddedBackend.search`` (``_backend_embedded``) uses it.

Reading every BLOB out of SQLite for each query costs far more than scoring them, so the
embedded engine keeps the table's vectors in one float32 matrix, prepared for the
table's metric (rows pre-normalized for cosine, squared norms kept for L2), and scores a
query with one matrix-vector product (concurrent queries share one matrix-matrix product:
``_coalesce``). Common metadata filters run as NumPy masks on per-key columns
(``_filter_numpy``); the others select row ids in SQL.

The copy is never stale. Each published :class:`Snapshot` is labelled with the change
token (``_watch``) of the committed state it holds, and is never modified: a search pins
its read transaction to one token and uses the snapshot of that token, so its scores and
the rows it reads agree. Another connection's commit makes the next search load the
vectors again (once, for every reader: single flight; streamed, ``_stream_load``); this
process's own upserts are applied to a new snapshot that shares the matrix buffer
(``_incremental``). With ``snapshot_file=``, a load first tries the table's mapped
snapshot file, used only with a proof that it holds the same state (``_snapshot_file``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina.store import _gathered
from tidb_jina.store._coalesce import Coalescer
from tidb_jina.store._filter_numpy import NUMBER, KeyColumn, positions, supported
from tidb_jina.store._filter_tree import Filter, Node, Not, Pred
from tidb_jina.store._filter_typed import Typed
from tidb_jina.store._meta_columns import META_TEXT_BYTES, Known
from tidb_jina.store._meta_columns import build as build_columns
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._rounding import within
from tidb_jina.store._rows import IN_CHUNK, chunks
from tidb_jina.store._slots import Slots, write_rows
from tidb_jina.store._snapshot_file import SnapshotFile
from tidb_jina.store._stream_load import load_vectors, spare_rows
from tidb_jina.store._watch import ChangeWatcher

RECENT_SNAPSHOTS = 8
# Filter columns of one snapshot are kept up to about this many bytes, least recently
# used dropped first (a 1M-row numeric key is about 60 MB with its typed form).
COLUMN_CACHE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Snapshot:
    """The table's vectors at one committed state, prepared for one metric.

    Never changed once published: a write by this process publishes a new snapshot that
    shares the old one's matrix buffer (updated and deleted rows are marked dead in a new
    ``alive`` mask; new versions go past the old one's end, or into a slot dead in every
    snapshot still held: ``_slots``), so a reader holding the old one keeps seeing
    exactly its state (its alive rows are never written over).
    """

    token: Any
    rowids: np.ndarray  # int64 (n,), ascending unless rows were appended out of order
    matrix: np.ndarray  # float32 (n, d): unit rows for cosine, raw otherwise
    sq_norms: np.ndarray | None  # float32 (n,), for L2
    alive: np.ndarray | None = None  # bool (n,); None: every row is alive
    # Per-key filter columns, filled on the first filtered search (and carried forward).
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> int:
        return int(self.rowids.size)

    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted rowids of the alive rows, their positions), made once per snapshot."""
        index = self.extras.get("index")
        if index is None:
            if self.alive is None and _ascending(self.rowids):
                positions = np.arange(self.size)
                index = (self.rowids, positions)
            else:
                alive = self.alive
                positions = np.arange(self.size) if alive is None else np.flatnonzero(alive)
                keys = self.rowids[positions]
                order = np.argsort(keys, kind="stable")
                index = (keys[order], positions[order])
            self.extras["index"] = index
        return index  # type: ignore[no-any-return]

    def positions(self, rowids: np.ndarray) -> np.ndarray | None:
        """Matrix rows of the given rowids; None if one is not an alive row here (stale)."""
        keys, positions = self._index()
        if rowids.size == 0:
            return np.empty(0, dtype=np.intp)
        at = np.searchsorted(keys, rowids)
        if at.max() >= keys.size or not np.array_equal(keys[at], rowids):
            return None
        return positions[at]


def _newer(a: Any, b: Any) -> bool:
    """Whether token ``a`` is a later state than ``b`` (tokens of one kind only grow)."""
    return bool(type(a) is type(b) and a[0] == b[0] and a > b)


def _distinct(values: np.ndarray) -> bool:
    """No value twice (cheap when ascending, as rows read in rowid order usually are)."""
    return _ascending(values) or np.unique(values).size == values.size


def _ascending(values: np.ndarray) -> bool:
    return values.size < 2 or bool((values[1:] > values[:-1]).all())


class VectorCache:
    """One embedded table's vector snapshot plus the means to tell when it is stale.

    Loads are single-flight: when the table changed, the first reader reloads and every
    other reader waits for that load instead of reading its own copy.
    """

    def __init__(self, engine: sa.Engine, metric: DistanceMetric) -> None:
        self.metric = metric
        self.snapshot: Snapshot | None = None  # the newest published
        # The last few published snapshots by token: a reader whose transaction started
        # just before a write of this process finds its state here instead of reloading.
        self._recent: dict[Any, Snapshot] = {}
        self.watcher = ChangeWatcher(engine)
        # reentrant: the async view runs greenlets on one thread, which must not block
        # each other (they may load twice; threads still load once)
        self._load_lock = threading.RLock()
        self._buffer: np.ndarray | None = None  # the matrix's rows plus spare rows
        self.schema_seen: int | None = None  # PRAGMA schema_version when the shape was read
        self._sq_buffer: np.ndarray | None = None
        self.coalescer = Coalescer()
        self.slots = Slots()  # where rows live in the buffer, which dead slots to reuse
        self.busy_until = 0.0  # ``_fresh``: no transaction-free search before then
        self.coalesce = True  # False: every search does its own product (benches)
        self.file: SnapshotFile | None = None  # ``snapshot_file=`` (``_snapshot_file``)

    @property
    def _watcher(self) -> Any:
        return self.watcher._conn

    def token(self, conn: sa.Connection, wait: bool = True) -> Any:
        return self.watcher.token(conn, wait)

    def current(self, token: Any) -> Snapshot | None:
        return self._recent.get(token)

    def _publish(self, snap: Snapshot | None, *, history: bool = True) -> None:
        recent = dict(self._recent) if history and snap is not None else {}
        if snap is not None:
            recent[snap.token] = snap
            while len(recent) > RECENT_SNAPSHOTS:
                del recent[next(iter(recent))]
        self.slots.published(snap)
        self._recent, self.snapshot = recent, snap  # readers see old or new, never half

    def load(
        self, conn: sa.Connection, table: sa.Table, token: Any, dimension: int
    ) -> tuple[Snapshot, bool] | None:
        """The snapshot of state ``token``, which ``conn``'s transaction reads:
        (snapshot, True) if read now, (snapshot, False) if another thread loaded it
        meanwhile (one load for every reader waiting on the lock). None when a newer
        state is already in memory: the caller should begin again on that one rather
        than load an old state."""
        with self._load_lock:
            snap = self._recent.get(token)
            if snap is not None and snap.matrix.shape[1] == dimension:
                return snap, False
            latest = self.snapshot
            if latest is not None and _newer(latest.token, token):
                return None
            self._publish(None)  # free the old copy before reading the new one
            self._buffer = self._sq_buffer = None
            self.coalescer.release()  # sized for the old rows: made again when needed
            file = self.file  # the opt-in snapshot file (``_snapshot_file``)
            mapped = None if file is None else file.read(conn, table, dimension)
            loaded = mapped or load_vectors(conn, table, dimension, self.metric, META_TEXT_BYTES)
            n = loaded.rowids.size
            self._buffer, self._sq_buffer = loaded.buffer, loaded.sq_norms
            sq = None if loaded.sq_norms is None else loaded.sq_norms[:n]
            snap = Snapshot(token, loaded.rowids, loaded.buffer[:n], sq)
            _prebuild_columns(snap, conn, loaded.metas)
            self._publish(snap)
            if file is not None and mapped:
                file.saved = token  # the file holds this state
            elif file is not None:  # that was slow: the next open maps a file instead
                file.save_later(self, snap)
            return snap, True

    def writing(self) -> threading.RLock:
        """The load lock, held by a write of this process (see ``_incremental``)."""
        return self._load_lock

    def load_private(
        self, conn: sa.Connection, table: sa.Table, token: Any, dimension: int
    ) -> Snapshot:
        """A snapshot read on ``conn`` for one caller only (not kept, not shared)."""
        loaded = load_vectors(conn, table, dimension, self.metric)
        n = loaded.rowids.size
        sq = None if loaded.sq_norms is None else loaded.sq_norms[:n]
        return Snapshot(token, loaded.rowids, loaded.buffer[:n], sq)

    def apply(self, before: Any, after: Any, rowids: np.ndarray, vectors: np.ndarray) -> bool:
        """Publish the snapshot at ``after``: the one at ``before`` plus rows written by
        this process (``rowids`` with their new ``vectors``). False if ``before`` is not
        the current snapshot's state (the next search reloads instead)."""
        with self._load_lock:
            snap = self.snapshot
            if snap is None or snap.token != before or self._buffer is None:
                return False
            if vectors.shape[1] != snap.matrix.shape[1]:
                self._publish(None)
                return False
            n, m = snap.size, rowids.size
            alive = np.ones(n, dtype=bool) if snap.alive is None else snap.alive.copy()
            replaced = self.slots.replaced(snap, rowids)
            alive[replaced] = False
            # dead slots no snapshot still held sees alive take rows first (``_slots``)
            # a read-only buffer (a mapped file) is never written: copied first
            fixed = not _writable(self._buffer, self._sq_buffer)
            reuse = self.slots.take(0 if fixed or snap.extras.get("columns") else m)
            extra = m - reuse.size  # rows appended past the end
            dead = n - int(alive.sum()) - reuse.size
            if fixed or n + extra > self._buffer.shape[0] or dead > max(1024, n // 4):
                self._compact(snap, alive, n + m)
                snap = self.snapshot
                assert snap is not None
                n, alive = snap.size, np.ones(snap.size, dtype=bool)
                replaced, reuse, extra = reuse[:0], reuse[:0], m
            buffer, sq_buffer = self._buffer, self._sq_buffer
            assert buffer is not None
            parts = write_rows(buffer, sq_buffer, self.metric, snap, alive, rowids, vectors, reuse)
            new = Snapshot(after, *parts)
            columns = snap.extras.get("columns")
            # a filter may cache columns on ``snap`` meanwhile (in place, without this
            # lock): never inherited by a snapshot whose reused slots they would misdescribe
            if columns and not reuse.size:
                new.extras["columns"] = dict(columns)  # extended lazily for the new rows
            if "known" in snap.extras and not reuse.size:  # what the first rows hold
                new.extras["known"] = snap.extras["known"]
            self.slots.retire(replaced)
            slots = np.concatenate([reuse, np.arange(n, n + extra)])
            self.slots.advance(snap, new, rowids, slots)
            self._publish(new)
            return True

    def _compact(self, snap: Snapshot, alive: np.ndarray, need: int) -> None:
        """Move the alive rows into a new buffer with room for ``need`` - dead rows."""
        keep = np.flatnonzero(alive)
        rows = keep.size + (need - snap.size)
        capacity = rows + spare_rows(rows)
        buffer = np.empty((capacity, snap.matrix.shape[1]), dtype=np.float32)
        # mode="clip": with ``out`` the default mode="raise" gathers into a temporary
        # copy of the whole result first (one more matrix at the peak); ``keep`` comes
        # from ``flatnonzero`` over the snapshot's rows, so no index can be out of range
        np.take(snap.matrix, keep, axis=0, out=buffer[: keep.size], mode="clip")
        sq = None
        if self._sq_buffer is not None:
            sq = np.zeros(capacity, dtype=np.float32)
            assert snap.sq_norms is not None
            sq[: keep.size] = snap.sq_norms[keep]
        self._buffer, self._sq_buffer = buffer, sq
        self._publish(
            Snapshot(
                None,  # no committed state: rows dead in the coming one are gone already
                snap.rowids[keep],
                buffer[: keep.size],
                None if sq is None else sq[: keep.size],
            ),
            history=False,  # older snapshots would keep the old buffer alive
        )

    def filter_positions(
        self, snap: Snapshot, conn: sa.Connection, table: sa.Table, filter: Filter
    ) -> np.ndarray | None:
        """Rows of ``snap`` matching ``filter``, by NumPy; None when SQL must do it."""
        if not supported(filter.node):
            return None
        columns: dict[str, KeyColumn] = snap.extras.setdefault("columns", {})
        stale = False
        used: set[str] = set()
        known: Known | None = snap.extras.get("known")
        absent = {k for k in filter_keys(filter.node) if known and k not in known.keys}
        new_keys = [k for k in filter_keys(filter.node) if k not in columns and k not in absent]
        # Keys read together: one pass over the rows (SQLite parses each row's JSON once)
        loaded = _load_columns(conn, table, new_keys, snap) if len(new_keys) > 1 else {}

        def column(key: str) -> KeyColumn:
            nonlocal stale
            used.add(key)
            cached = columns.pop(key, None)  # re-inserted last: least recently used first
            if cached is None and key in absent and known is not None:
                cached = _missing_column(known.size)  # no row of the load holds the key
            if cached is not None and len(cached.kind) < snap.size:
                cached = _extend_column(conn, table, key, snap, cached)
            elif cached is None and key in loaded:
                cached = loaded.pop(key)
            elif cached is None:
                cached = _load_column(conn, table, key, snap)
            if cached is None:  # the rows are not the snapshot's: SQL answers instead
                stale = True
                return _missing_column(snap.size)
            columns[key] = cached
            return cached

        found = positions(filter.node, column, snap.size, snap.alive)
        _evict(columns, used, COLUMN_CACHE_BYTES)
        return None if stale else found

    def invalidate(self) -> None:
        with self._load_lock:
            self._publish(None)
            self._buffer = self._sq_buffer = None
            self.coalescer.release()

    def close(self) -> None:
        if self.file is not None:
            self.file.on_close(self)
        self.invalidate()  # a new watcher counts from the start again
        self.watcher.close()

    def distances(
        self, snap: Snapshot, query: np.ndarray, positions: np.ndarray | None
    ) -> np.ndarray:
        """Distances from ``query`` to the snapshot's rows (all, or at ``positions``).

        All rows: concurrent callers on one snapshot share one matrix-matrix product
        (``_coalesce``)."""
        if positions is None and self.coalesce and self.metric is not DistanceMetric.L1:
            # snapshots sharing a buffer are prefixes of one another (see ``apply``)
            group = id(snap.matrix if snap.matrix.base is None else snap.matrix.base)
            return self.coalescer.distances(snap, query, self._batch_distances, group, snap.size)
        return self.distances_to(snap, query, positions)

    def distances_to(
        self, snap: Snapshot, query: np.ndarray, positions: np.ndarray | None = None
    ) -> np.ndarray:
        """Distances from one query to the rows (all, or at ``positions``), on its own."""
        # np.take gathers rows 10-20% faster than fancy indexing (1% of 100k x 768)
        matrix = snap.matrix if positions is None else np.take(snap.matrix, positions, axis=0)
        if self.metric is DistanceMetric.L1:
            return self.metric.distances(matrix, query)
        sq = snap.sq_norms
        if sq is not None and positions is not None:
            sq = sq[positions]
        products = matrix @ _gathered.product_vector(self.metric, query)
        return _gathered.from_products(self.metric, products, sq, query)

    @_gathered.silent_overflow
    def many_distances(
        self, snap: Snapshot, queries: np.ndarray, positions: np.ndarray | None
    ) -> np.ndarray:
        """(rows, q) distances of many queries to the rows (all, or at ``positions``);
        silent on overflow, as ``score_hits``."""
        if self.metric is DistanceMetric.L1 or queries.shape[0] == 1:
            return np.stack([self.distances_to(snap, q, positions) for q in queries], axis=1)
        if positions is None:
            return self._batch_distances(snap, queries)
        sq = None if snap.sq_norms is None else snap.sq_norms[positions]
        return self._batch_distances(
            Snapshot(snap.token, snap.rowids[positions], snap.matrix[positions], sq), queries
        )

    def _batch_distances(
        self, snap: Snapshot, queries: np.ndarray, out: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, q) distances from every row to each query: one pass over the matrix
        (written into ``out`` when given, except for a single query)."""
        if queries.shape[0] == 1 and out is None:  # alone: a matrix-vector product
            return self.distances_to(snap, queries[0])[:, None]
        if self.metric is DistanceMetric.COSINE:
            norms = np.linalg.norm(queries, axis=1, keepdims=True)
            norms[norms == 0] = 1.0
            out = _products(snap.matrix, queries / norms, out)
            return np.subtract(np.float32(1.0), out, out=out)
        if self.metric is DistanceMetric.INNER_PRODUCT:
            out = _products(snap.matrix, queries, out)
            return np.negative(out, out=out)
        assert snap.sq_norms is not None  # L2
        d2 = _products(snap.matrix, queries, out)
        d2 *= np.float32(-2.0)
        d2 += snap.sq_norms[:, None]
        d2 += np.einsum("ij,ij->i", queries, queries)[None, :]
        return np.sqrt(np.maximum(d2, 0, out=d2), out=d2)

    def exact(self, snap: Snapshot, query: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Exact distances for a few rows (the winners), free of cancellation error, each
        row's computed alone (``einsum``, not BLAS: the same bits whichever rows are
        scored with it, so a batch and a single search rank them alike)."""
        rows = snap.matrix[positions]
        if self.metric is DistanceMetric.L2:
            return self.metric.distances(rows, query)
        if self.metric is DistanceMetric.COSINE:
            unit = _gathered.product_vector(self.metric, query)
            return np.float32(1.0) - np.einsum("ij,j->i", rows, unit)
        if self.metric is DistanceMetric.INNER_PRODUCT:
            return -np.einsum("ij,j->i", rows, query)
        return self.distances_to(snap, query, positions)


# Rows per matrix-matrix product: a block of 2048 x 768 float32 (6 MB) stays in the
# cache while BLAS packs it; one product over 100,000 rows and 8 queries took 33-37 ms,
# blocks of 2048 rows 25 ms (a single matrix-vector product: 12-14 ms).
BLOCK_ROWS = 2048


def _products(matrix: np.ndarray, queries: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``matrix @ queries.T`` (float32 (n, q)), computed block of rows by block (into
    ``out`` when given: the coalescer's workspace)."""
    n = matrix.shape[0]
    qt = np.ascontiguousarray(queries.T, dtype=np.float32)
    if out is None:
        out = np.empty((n, qt.shape[1]), dtype=np.float32)
    if qt.shape[1] == 1:  # one query: a matrix-vector product (gemv beats gemm here)
        np.matmul(matrix, qt[:, 0], out=out[:, 0])
        return out
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        np.matmul(matrix[start:stop], qt, out=out[start:stop])
    return out


_ROWID = sa.literal_column("rowid", sa.Integer)


def _key_rows(
    conn: sa.Connection, table: sa.Table, keys: list[str], rowids: list[int] | None
) -> Any:
    """(rowid, type, value, type, value, ...) per row: each key's JSON type and value."""
    cols: list[Any] = [_ROWID]
    for key in keys:
        # path_safe keys only: no quote or backslash to escape in the path
        path: sa.BindParameter[str] = sa.bindparam(None, f'$."{key}"', type_=sa.String)
        cols += [sa.func.json_type(table.c.meta, path), sa.func.json_extract(table.c.meta, path)]
    stmt = sa.select(*cols)
    if rowids is None:
        return _driver_rows(conn, stmt)
    rows: list[Any] = []
    for chunk in chunks(rowids, IN_CHUNK):
        rows.extend(_driver_rows(conn, stmt.where(_ROWID.in_(chunk))))
    return rows


def _driver_rows(conn: sa.Connection, stmt: sa.Select[Any]) -> list[Any]:
    """All rows as the driver's tuples: SQLAlchemy's row objects cost twice the query
    itself here (these columns need no result processing)."""
    result = conn.execute(stmt)
    try:
        return list(result.cursor.fetchall())  # type: ignore[attr-defined]
    finally:
        result.close()


def _column_at(rows: Any, snap: Snapshot, start: int, at: int = 1) -> KeyColumn | None:
    """The key's column for snapshot positions ``start:`` from rows of (rowid, ...) with
    its type and value at ``at`` and ``at + 1``; None unless the rows are exactly the
    snapshot's alive rows there."""
    n = snap.size - start
    ids = np.fromiter(map(itemgetter(0), rows), dtype=np.int64, count=len(rows))
    positions = snap.positions(ids)
    if positions is None or not _distinct(positions):
        return None
    alive = snap.alive[start:] if snap.alive is not None else None
    expected = n if alive is None else int(alive.sum())
    if start:
        positions = positions - start
        if positions.size and positions.min() < 0:
            return None
    if len(rows) != expected:
        return None
    if len(rows) == n and _ascending(positions):  # distinct, ascending, n of n: 0..n-1
        return KeyColumn(list(map(itemgetter(at), rows)), list(map(itemgetter(at + 1), rows)))
    types = np.full(n, None, dtype=object)
    values = np.full(n, None, dtype=object)
    types[positions] = _objects(list(map(itemgetter(at), rows)))
    values[positions] = _objects(list(map(itemgetter(at + 1), rows)))
    return KeyColumn(types.tolist(), values.tolist())


def _objects(items: list[Any]) -> np.ndarray:
    """``items`` as a 1-d object array, each element as it is (no numeric coercion)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _load_column(
    conn: sa.Connection, table: sa.Table, key: str, snap: Snapshot
) -> KeyColumn | None:
    """One key's JSON type and value for every row of ``snap`` (None: rows differ)."""
    return _column_at(_key_rows(conn, table, [key], None), snap, 0)


def _load_columns(
    conn: sa.Connection, table: sa.Table, keys: list[str], snap: Snapshot
) -> dict[str, KeyColumn | None]:
    """Several keys' columns from one pass over the rows (None: rows differ)."""
    rows = _key_rows(conn, table, keys, None)
    return {key: _column_at(rows, snap, 0, 1 + 2 * i) for i, key in enumerate(keys)}


def filter_keys(node: Node) -> list[str]:
    """The keys a filter tree reads, each once, in order."""
    if isinstance(node, Pred):
        return [node.key]
    if isinstance(node, Not):
        return filter_keys(node.item)
    return list(dict.fromkeys(key for child in node.items for key in filter_keys(child)))


def _extend_column(
    conn: sa.Connection, table: sa.Table, key: str, snap: Snapshot, done: KeyColumn
) -> KeyColumn | None:
    """``done`` (the first rows' column) extended to rows appended since it was made."""
    start = len(done.kind)
    new = snap.rowids[start:]
    if snap.alive is not None:
        new = new[snap.alive[start:]]
    tail = _column_at(_key_rows(conn, table, [key], new.tolist()), snap, start)
    if tail is None:
        return None
    joined = KeyColumn.__new__(KeyColumn)
    joined.kind = np.concatenate([done.kind, tail.kind])
    joined.values = np.concatenate([done.values, tail.values])
    joined.empty = np.concatenate([done.empty, tail.empty])
    joined.typed = Typed()
    return joined


def column_bytes(col: KeyColumn) -> int:
    """About what a column holds: its arrays, and 40 bytes per boxed value."""
    boxed = int(np.count_nonzero(col.kind >= NUMBER))
    arrays = col.kind.nbytes + col.empty.nbytes + col.values.nbytes
    return arrays + 40 * boxed + col.typed.nbytes()


def _evict(columns: dict[str, KeyColumn], used: set[str], limit: int) -> None:
    """Drop least recently used columns (not those of the current filter) over ``limit``."""
    total = sum(column_bytes(c) for c in list(columns.values()))
    for key in list(columns):
        if total <= limit:
            return
        if key not in used:
            col = columns.pop(key, None)
            total -= 0 if col is None else column_bytes(col)


def keep_bound(columns: dict[str, KeyColumn], used: set[str]) -> None:
    """The snapshot's filter columns back within ``COLUMN_CACHE_BYTES``, least recently
    used dropped first, never those in ``used`` (the current search's), after a search
    that made typed forms or postings (the fast path: ``_fresh``)."""
    _evict(columns, used, COLUMN_CACHE_BYTES)


def _prebuild_columns(snap: Snapshot, conn: sa.Connection, metas: list[Any] | None) -> None:
    """Every key's filter column from the metadata texts the load read (``_meta_columns``)."""
    if metas is None:
        return
    built = build_columns(conn, metas, COLUMN_CACHE_BYTES, column_bytes)
    if built is not None:
        snap.extras["columns"], snap.extras["known"] = built


def _writable(buffer: np.ndarray, sq_buffer: np.ndarray | None) -> bool:
    return bool(buffer.flags.writeable) and (sq_buffer is None or sq_buffer.flags.writeable)


def _missing_column(n: int) -> KeyColumn:
    return KeyColumn([None] * n, [None] * n)


# --- scoring on a snapshot --------------------------------------------------------------


@_gathered.silent_overflow
def score_hits(
    cache: VectorCache,
    snap: Snapshot,
    query: np.ndarray,
    k: int,
    positions: np.ndarray | None,
    max_distance: float | None,
    approx: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, distances) of the winners among ``positions`` (None: all), nearest first.

    ``approx``: the query's distances to those rows, when already computed (batch); never
    written. Silent on overflow (``_gathered.silent_overflow``)."""
    given = approx is not None  # the caller's array (a batch's column): never written
    rowids = snap.rowids if positions is None else snap.rowids[positions]
    if rowids.size == 0:
        return rowids, np.empty(0, np.float32)
    if approx is None and positions is not None:  # a filter's rows: gathered in blocks
        approx = _gathered.gathered_distances(cache.metric, snap, query, positions)
    if approx is None:
        approx = cache.distances(snap, query, positions)
    # A few more than k by the fast (approximate) distances, then the k best by exact
    # ones, ties by rowid: the winners do not depend on the rounding of the product
    # (one query's matrix-vector product and a batch's matrix-matrix one differ there).
    wide = k + max(8, k // 2)
    live = snap.alive if positions is None else None
    if live is not None and given:  # rows replaced or deleted since: a marked copy
        approx = np.where(live, approx, np.float32(np.inf))
    elif live is not None:  # our own array: marked in place
        approx[~live] = np.inf

    def fast_bound(bound: float) -> float:  # a row exactly within shows at most this
        return within(cache.metric, snap.matrix, snap.sq_norms, snap.extras, query, bound)

    if fast_bound(0.0) == np.inf:  # values overflow: a NaN fast distance proves nothing
        approx = np.where(np.isnan(approx), -np.inf, approx)  # so score those rows exactly
    if max_distance is None:
        quick = _gathered.quick_pick(
            cache, snap, query, k, wide, positions, rowids, approx, fast_bound
        )
        if quick is not None:
            return quick
    top = None if max_distance is None else fast_bound(max_distance)
    chosen = nearest(approx, rowids, wide, top)
    if live is not None:
        chosen = chosen[live[chosen]]
    exact = cache.exact(snap, query, chosen if positions is None else positions[chosen])
    # Any row nearer (exactly) than the k-th exact winner shows a fast distance within
    # the rounding margin of it: score them all exactly when the wide pick missed some.
    finite = np.sort(exact[~np.isnan(exact)])
    limit = finite[k - 1] if finite.size >= k else max_distance
    if limit is not None and max_distance is not None:
        limit = min(float(limit), max_distance)
    if limit is not None:
        wider = np.flatnonzero(approx <= fast_bound(float(limit)))
        if live is not None:
            wider = wider[live[wider]]
        if wider.size > chosen.size:
            chosen = wider
            exact = cache.exact(snap, query, chosen if positions is None else positions[chosen])
    order = np.lexsort((rowids[chosen], exact))
    if max_distance is not None:
        order = order[exact[order] <= max_distance]
    order = order[:k]
    return rowids[chosen][order], exact[order]


def nearest(
    distances: np.ndarray, rowids: np.ndarray, k: int, max_distance: float | None
) -> np.ndarray:
    """Indices of the k smallest distances (ties by rowid), optionally within a bound."""
    n = distances.shape[0]
    if max_distance is None and k < n:
        # the k-th smallest value, then every row at or under it: a partitioned copy of
        # the values is cheaper than argpartition's full index array, and ties at the
        # k-th place are all kept so the lowest rowids win them
        kth = np.partition(distances, k - 1)[k - 1]
        candidates = np.flatnonzero(distances <= kth) if kth == kth else np.arange(n)
    elif max_distance is None:
        candidates = np.arange(n)
    else:
        candidates = np.flatnonzero(distances <= max_distance)
    if k < candidates.size:
        if candidates.size <= 4 * k:  # a few ties: sort them all so ties go by rowid
            part = np.lexsort((rowids[candidates], distances[candidates]))[:k]
            candidates = candidates[part]
        else:
            candidates = _k_lowest(distances, rowids, candidates, k)
    order = np.lexsort((rowids[candidates], distances[candidates]))
    return candidates[order]


def _k_lowest(
    distances: np.ndarray, rowids: np.ndarray, candidates: np.ndarray, k: int
) -> np.ndarray:
    """The k nearest of many candidates: every one under the k-th value, then the lowest
    rowids among those equal to it (argpartition alone picks among ties at random)."""
    values = distances[candidates]
    kth = np.partition(values, k - 1)[k - 1]
    if kth != kth:  # fewer numbers than k: all of them, then NaN rows (dropped later)
        below, tied = candidates[~np.isnan(values)], candidates[np.isnan(values)]
    else:
        below, tied = candidates[values < kth], candidates[values == kth]
    need = k - below.size
    if tied.size > need:
        tied = tied[np.argsort(rowids[tied], kind="stable")[:need]]
    return np.concatenate([below, tied])
