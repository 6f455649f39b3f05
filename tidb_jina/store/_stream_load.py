"""Read a table's vectors into one float32 matrix, streamed, with one copy.

A million 768-dimension rows are 2.9 GB as float32. Materialising them as a list of
``bytes`` (plus SQLAlchemy rows), joining the list, then normalising into a second array
costs three times that at the peak and fragments the heap. Instead the rows are counted,
a matrix (with some spare rows for later appends) is allocated once, and the cursor's
rows are copied into it chunk by chunk; each chunk is prepared for the metric in place
while it is hot in the cache (unit rows for cosine, squared norms for L2). Afterwards
the C heap is trimmed so the freed chunk buffers go back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import NamedTuple

import numpy as np
import sqlalchemy as sa

from tidb_jina.store._metrics import DistanceMetric

CHUNK_ROWS = 4096
_LE_FLOAT32 = np.dtype("<f4")


class Loaded(NamedTuple):
    rowids: np.ndarray  # int64 (n,), ascending
    buffer: np.ndarray  # float32 (capacity, d); rows [:n] hold the vectors
    sq_norms: np.ndarray | None  # float32 (capacity,) for L2


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
    conn: sa.Connection, table: sa.Table, dimension: int, metric: DistanceMetric
) -> Loaded:
    """All rows' (rowid, vector), in rowid order, read in one transaction on ``conn``.

    Raises ``ValueError`` when a stored vector is not ``dimension`` float32 values.
    """
    rowid = sa.literal_column("rowid", sa.Integer)
    count = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    capacity = count + spare_rows(count)
    buffer = np.empty((capacity, dimension), dtype=np.float32)
    rowids = np.empty(count, dtype=np.int64)
    sq = np.zeros(capacity, dtype=np.float32) if metric is DistanceMetric.L2 else None
    blob = sa.type_coerce(table.c.embedding, sa.LargeBinary)
    stmt = sa.select(rowid, blob).order_by(rowid)
    sql = str(stmt.compile(dialect=conn.dialect))
    width = 4 * dimension
    result = conn.exec_driver_sql(sql)
    cursor = result.cursor  # the driver's own cursor: no per-row SQLAlchemy rows
    at = 0
    try:
        while True:
            rows = cursor.fetchmany(CHUNK_ROWS)
            if not rows:
                break
            m = len(rows)
            if at + m > count:
                raise ValueError("the table grew during a read transaction")
            ids, blobs = zip(*rows, strict=True)
            if any(not isinstance(b, bytes) or len(b) != width for b in blobs):
                raise ValueError(f"a stored vector is not {dimension} float32 values")
            rowids[at : at + m] = ids
            block = buffer[at : at + m]
            block[:] = np.frombuffer(b"".join(blobs), dtype=_LE_FLOAT32).reshape(m, dimension)
            prepare_rows(block, metric, None if sq is None else sq[at : at + m])
            at += m
            del rows, ids, blobs
    finally:
        result.close()
    if at != count:
        raise ValueError("the table shrank during a read transaction")
    release_free_memory()
    return Loaded(rowids, buffer, sq)


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
