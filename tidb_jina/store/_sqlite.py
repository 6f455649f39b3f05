"""Set-up of the embedded engine's SQLite connections.

The embedded engine must give the same answers as TiDB, so each new connection gets:

* ``case_sensitive_like``: TiDB compares JSON strings with a binary collation, so
  ``$like`` is case-sensitive there; SQLite's LIKE is case-insensitive by default.
* a Unicode-aware ``lower()``: SQLite's built-in only folds ASCII; TiDB folds all of
  Unicode, which ``$ilike`` relies on.
* the TiDB vector functions (``VEC_COSINE_DISTANCE`` ...) over float32 BLOBs, so SQL
  written for TiDB reads the same here. Searches do not call them row by row (the table
  scores candidates with NumPy); they are for ad-hoc SQL and cross-checks.
* WAL and a busy timeout on file databases, so readers never block writers and two
  processes writing one file wait for each other instead of failing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import numpy as np
from sqlalchemy.exc import MissingGreenlet
from sqlalchemy.util import await_only

from tidb_jina.store import _vector

BUSY_TIMEOUT_MS = 30_000


def _blob_or_text(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, (bytes, memoryview)):
        return _vector.decode_blob(value)
    return _vector.decode_text(value)


def _distance(fn: Any) -> Any:
    def udf(a: Any, b: Any) -> float | None:
        x, y = _blob_or_text(a), _blob_or_text(b)
        if x is None or y is None:
            return None
        if x.shape != y.shape:
            raise ValueError(f"vectors have different dimensions: {x.shape[0]} and {y.shape[0]}")
        distance = float(fn(x.astype(np.float64), y.astype(np.float64)))
        return None if np.isnan(distance) else distance  # NaN is NULL, as on TiDB

    return udf


def _cosine(x: np.ndarray, y: np.ndarray) -> float:
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return 1.0 - float(x @ y) / denom if denom else float("nan")


_FUNCTIONS = {
    "VEC_COSINE_DISTANCE": _distance(_cosine),
    "VEC_L2_DISTANCE": _distance(lambda x, y: np.linalg.norm(x - y)),
    "VEC_NEGATIVE_INNER_PRODUCT": _distance(lambda x, y: -(x @ y)),
    "VEC_L1_DISTANCE": _distance(lambda x, y: np.abs(x - y).sum()),
}


def _vec_dims(value: Any) -> int | None:
    v = _blob_or_text(value)
    return None if v is None else int(v.shape[0])


def _vec_as_text(value: Any) -> str | None:
    v = _blob_or_text(value)
    return None if v is None else _vector.encode_text(v)


def _vec_from_text(value: Any) -> bytes | None:
    return None if value is None else _vector.encode_blob(_vector.decode_text(value))


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def configure_connection(dbapi_connection: sqlite3.Connection, *, file_backed: bool) -> None:
    """Prepare one new SQLite connection (called from SQLAlchemy's ``connect`` event)."""
    for name, fn in _FUNCTIONS.items():
        dbapi_connection.create_function(name, 2, fn, deterministic=True)
    dbapi_connection.create_function("VEC_DIMS", 1, _vec_dims, deterministic=True)
    dbapi_connection.create_function("VEC_AS_TEXT", 1, _vec_as_text, deterministic=True)
    dbapi_connection.create_function("VEC_FROM_TEXT", 1, _vec_from_text, deterministic=True)
    dbapi_connection.create_function("lower", 1, _lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA case_sensitive_like = ON")
        if file_backed:
            # NORMAL is durable in WAL mode only; a rollback journal needs FULL
            wal = _use_wal(cursor)
            cursor.execute(f"PRAGMA synchronous = {'NORMAL' if wal else 'FULL'}")
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS:d}")  # after the switch
    finally:
        cursor.close()


# How long a new connection tries to switch a file to WAL while another holds it open:
# long enough for connections creating one new file together (milliseconds), short
# enough that a file another tool keeps open in rollback-journal mode costs each new
# connection this much, not the whole busy timeout, before it goes on in that mode.
WAL_SWITCH_SECONDS = 2.0


def _use_wal(cursor: Any) -> bool:
    """Put the database file in WAL mode (it stays so: later connections only check);
    True when the file is in WAL mode.

    Switching needs an exclusive lock, and while another connection opens the same new
    file SQLite answers "database is locked" at once, without the busy wait (a shared
    lock waiting for an exclusive one could deadlock): two processes creating one
    database failed that way. Try again for a while (``WAL_SWITCH_SECONDS``); a file that
    cannot switch (read-only, or held open by another tool in rollback-journal mode) is
    used in its own mode: SQLite keeps that correct, WAL only lets readers and the writer
    overlap."""
    window = min(BUSY_TIMEOUT_MS / 1000, WAL_SWITCH_SECONDS)
    deadline = time.monotonic() + window
    # the switch waits on a reader's lock for the busy timeout: wait the window only
    cursor.execute(f"PRAGMA busy_timeout = {max(1, int(window * 1000)):d}")
    mode = ""
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            mode = str(cursor.fetchone()[0]).lower()
            if mode != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
                mode = str(cursor.fetchone()[0]).lower()
            return mode == "wal"
        except Exception as exc:  # sqlite3's, or the async driver's same-named error
            text = str(exc)
            if "readonly" in text or "read-only" in text:
                return False
            if "locked" not in text:
                raise
            if time.monotonic() > deadline:
                return False
            pause(0.005)


def pause(seconds: float) -> None:
    """Wait before trying again, without stopping an event loop: an async driver's new
    connection (aiosqlite through SQLAlchemy's greenlet bridge) is set up on the loop's
    thread, where ``time.sleep`` would stop every other task for the whole wait (up to
    ``WAL_SWITCH_SECONDS`` while another connection holds the file's lock). There the
    loop waits instead (``asyncio.sleep``) and runs the other tasks meanwhile."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop on this thread: a plain sleep stops nobody else
        time.sleep(seconds)
        return
    waiting = asyncio.sleep(seconds)
    try:
        await_only(waiting)
    except MissingGreenlet:  # sync code called from a coroutine: it blocks anyway
        waiting.close()
        time.sleep(seconds)
