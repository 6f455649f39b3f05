"""Read a table's vectors into one float32 matrix, streamed, with one copy.

A million 768-dimension rows are 2.9 GB as float32. Materialising them as a list of
``bytes`` (plus SQLAlchemy rows), joining the list, then normalising into a second array
costs three times that at the peak and fragments the heap. Instead the rows are counted
(on the primary key's small index: ``count(*)`` would read every vector page), a matrix
(with some spare rows for later appends) is allocated once, and the cursor's rows are
copied into it chunk by chunk, each BLOB straight into its row; each chunk is prepared
for the metric in place while it is hot in the cache (unit rows for cosine, squared
norms for L2). SQLite reads the file through a memory map, one window of rows at a time,
unmapped after each (no system call per page, and the mapped pages never pile up in the
resident memory). Afterwards the C heap is trimmed so the freed chunk buffers go back to
the system. The same pass can keep each row's metadata text (``_meta_columns`` builds
the filter columns from them).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa

from tidb_jina.store._metrics import DistanceMetric

# Rows fetched at a time: about 1 MiB of vectors (341 rows of 768 dimensions), at most
# 4096. The driver makes one ``bytes`` per row; a chunk's worth is freed before the next
# is fetched, and a small chunk's memory is reused by the next from malloc's free lists.
# 4096 rows of 768 dimensions (12 MB) were handed back to the system after each chunk and
# faulted in again by the next: the load's fetching took 2.1-2.4 s at 1M x 768 against
# 1.6-1.8 s in chunks of 128-512 rows (issue 18, seventh round).
CHUNK_BYTES = 2**20
MAX_CHUNK_ROWS = 4096
# Rows read by one statement: a 32nd of the table, at least WINDOW_ROWS. SQLite maps the
# file while a window is read (no system call and no copy per page) and unmaps it after,
# so the mapped pages add about 3% of the matrix to the resident memory at a time; fewer,
# bigger windows pay fewer unmaps (1M x 768: 8192-row windows were slower than none).
WINDOW_ROWS = 4096
WINDOWS = 32
MMAP_BYTES = 2**40  # SQLite caps it at its compile-time limit (usually 2 GB)
_ROWID = sa.literal_column("rowid", sa.Integer)
_BIG_ENDIAN = sys.byteorder != "little"


class Loaded(NamedTuple):
    rowids: np.ndarray  # int64 (n,), ascending
    buffer: np.ndarray  # float32 (capacity, d); rows [:n] hold the vectors
    sq_norms: np.ndarray | None  # float32 (capacity,) for L2
    # Each row's metadata text (None: NULL), when asked for and within ``meta_bytes``
    metas: list[Any] | None = None


def spare_rows(n: int) -> int:
    """Rows kept free after ``n`` for appends by later writes: half as many again. They
    cost address space only: the system backs a page with memory when a row is first
    written there, so the resident size grows with the rows appended, and the whole
    buffer is copied only once the table has grown by half (a copy needs the old and
    the new buffer at once while searches still read the old one)."""
    return max(1024, n // 2)


def prepare_rows(block: np.ndarray, metric: DistanceMetric, sq_out: np.ndarray | None) -> None:
    """Prepare rows in place: unit length for cosine (a zero row becomes NaN: it has no
    cosine distance and is left out of results, like TiDB's NULL), |x|^2 for L2."""
    if metric is DistanceMetric.COSINE:
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        norms[norms == 0] = np.nan
        block /= norms[:, None]
    elif metric is DistanceMetric.L2 and sq_out is not None:
        np.einsum("ij,ij->i", block, block, out=sq_out)


def load_vectors(
    conn: sa.Connection,
    table: sa.Table,
    dimension: int,
    metric: DistanceMetric,
    meta_bytes: int = 0,
) -> Loaded:
    """All rows' (rowid, vector), in rowid order, read in one transaction on ``conn``.

    ``meta_bytes`` > 0: also keep each row's metadata text, read in the same pass (it
    lies on the page just read), unless they add up to more than ``meta_bytes``.
    Raises ``ValueError`` when a stored vector is not ``dimension`` float32 values.
    """
    count = count_rows(conn, table)
    capacity = count + spare_rows(count)
    buffer = np.empty((capacity, dimension), dtype=np.float32)
    rowids = np.empty(count, dtype=np.int64)
    sq = np.zeros(capacity, dtype=np.float32) if metric is DistanceMetric.L2 else None
    blob = sa.type_coerce(table.c.embedding, sa.LargeBinary)
    columns = [_ROWID, blob] + ([sa.type_coerce(table.c.meta, sa.Text)] if meta_bytes else [])
    start_at = sa.bindparam("start", type_=sa.Integer)
    limit = sa.bindparam("limit", type_=sa.Integer)
    stmt = sa.select(*columns).where(start_at <= _ROWID).order_by(_ROWID).limit(limit)
    compiled = stmt.compile(dialect=conn.dialect)
    sql, names = str(compiled), compiled.positiontup or []
    width = 4 * dimension
    chunk = chunk_rows(dimension)
    flat = memoryview(buffer.data).cast("B")  # rows are copied straight into the matrix
    metas: list[Any] | None = [] if meta_bytes else None
    held = 0  # metadata characters kept
    at, start = 0, -(2**63)
    size = max(WINDOW_ROWS, count // WINDOWS)
    last = start
    with _mapped(conn) as mapped:
        while True:  # windows of rows from rowid ``start`` on
            window = compiled.construct_params({"start": start, "limit": size})
            result = conn.exec_driver_sql(sql, tuple(window[name] for name in names))
            cursor = result.cursor  # the driver's own cursor: no per-row SQLAlchemy rows
            try:
                read = 0
                while rows := cursor.fetchmany(chunk):
                    m = len(rows)
                    if at + m > count:
                        raise ValueError("the table grew during a read transaction")
                    ids, blobs, *meta = zip(*rows, strict=True)
                    _copy_rows(blobs, flat, at * width, dimension)
                    rowids[at : at + m] = ids
                    block = buffer[at : at + m]
                    if _BIG_ENDIAN:  # stored little-endian
                        block.byteswap(inplace=True)
                    prepare_rows(block, metric, None if sq is None else sq[at : at + m])
                    if metas is not None:
                        held += _text_size(meta[0])
                        if held <= meta_bytes:
                            metas.extend(meta[0])
                        else:  # too much to keep: filters read their keys in SQL
                            metas = None
                    at, read, last = at + m, read + m, ids[-1]
                    del rows, ids, blobs, meta
            finally:
                result.close()
            if mapped:  # the window's file pages leave this process's resident memory
                _unmap(conn)
            if read < size or last == 2**63 - 1:
                break
            start = last + 1
    if at != count:
        raise ValueError("the table shrank during a read transaction")
    del flat
    release_free_memory()
    return Loaded(rowids, buffer, sq, metas)


def chunk_rows(dimension: int) -> int:
    """Rows per ``fetchmany``: ``CHUNK_BYTES`` of vectors, 1 to ``MAX_CHUNK_ROWS``."""
    return min(MAX_CHUNK_ROWS, max(1, CHUNK_BYTES // (4 * dimension)))


def _text_size(values: Sequence[Any]) -> int:
    """Characters of the texts among ``values`` (a JSON column may hold numbers too)."""
    try:
        return sum(map(len, filter(None, values)))
    except TypeError:
        return sum(len(v) for v in values if isinstance(v, (str, bytes)))


def _copy_rows(blobs: Sequence[Any], flat: memoryview, offset: int, dimension: int) -> None:
    """Each BLOB into ``flat`` from byte ``offset`` on (no joined copy)."""
    width = 4 * dimension
    try:
        for value in blobs:
            flat[offset : offset + width] = value  # raises unless exactly ``width`` bytes
            offset += width
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"a stored vector is not {dimension} float32 values") from None


def count_rows(conn: sa.Connection, table: sa.Table) -> int:
    """The table's row count. ``count(*)`` walks every leaf page of the table (the
    vectors' pages: seconds at 1M x 768); the primary key's index on a NOT NULL column
    has one small entry per row, so it is counted there when there is one."""
    key = _pk_index(conn, table.name)
    if key is None:
        stmt = sa.select(sa.func.count()).select_from(table)
        return int(conn.execute(stmt).scalar_one())
    index, column = key  # names only, quoted by the dialect (no value enters the text)
    quote = conn.dialect.identifier_preparer.quote
    sql = f"SELECT count({quote(column)}) FROM {quote(table.name)} INDEXED BY {quote(index)}"  # noqa: S608
    return int(conn.exec_driver_sql(sql).scalar_one())


def _pk_index(conn: sa.Connection, name: str) -> tuple[str, str] | None:
    """(index, column) of a one-column, NOT NULL primary key's own index, if any."""
    quote = conn.dialect.identifier_preparer.quote
    info = conn.exec_driver_sql(f"PRAGMA table_info({quote(name)})").all()
    keys = [row for row in info if row[5]]  # (cid, name, type, notnull, default, pk)
    if len(keys) != 1 or not keys[0][3]:
        return None
    column = keys[0][1]
    for row in conn.exec_driver_sql(f"PRAGMA index_list({quote(name)})").all():
        seq_name, origin, partial = row[1], row[3], row[4]  # (seq, name, unique, origin, partial)
        if origin == "pk" and not partial:
            cols = conn.exec_driver_sql(f"PRAGMA index_info({quote(seq_name)})").all()
            if [c[2] for c in cols] == [column]:
                return seq_name, column
    return None


@contextmanager
def _mapped(conn: sa.Connection) -> Iterator[bool]:
    """Let SQLite read the file through a memory map for this load (True: mapped), and
    restore the connection's setting after."""
    before = conn.exec_driver_sql("PRAGMA mmap_size").scalar()
    if before is None:  # an in-memory database: nothing to map
        yield False
        return
    _set_mmap(conn, MMAP_BYTES)
    try:
        yield True
    finally:
        _set_mmap(conn, before)


def _unmap(conn: sa.Connection) -> None:
    """Unmap the file (its pages leave the resident set); the next read maps it again."""
    _set_mmap(conn, 0)
    _set_mmap(conn, MMAP_BYTES)


def _set_mmap(conn: sa.Connection, size: int) -> None:
    conn.exec_driver_sql(f"PRAGMA mmap_size={int(size)}").all()


_LIBC: ctypes.CDLL | bool | None = False


def release_free_memory() -> None:
    """Give freed heap pages back to the system (glibc ``malloc_trim``; else nothing)."""
    global _LIBC
    if _LIBC is False:
        name = ctypes.util.find_library("c")
        try:
            _LIBC = ctypes.CDLL(name) if name else None
            if _LIBC is not None and not hasattr(_LIBC, "malloc_trim"):
                _LIBC = None
        except OSError:
            _LIBC = None
    if _LIBC:
        _LIBC.malloc_trim(0)  # type: ignore[union-attr]
