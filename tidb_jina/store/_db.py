"""Connections to one database: read and write transactions, and errors translated once.

A :class:`Database` wraps the SQLAlchemy engine a table uses. It knows nothing of vectors:
the engine backends (``_backend_tidb``, ``_backend_embedded``) and the ``VectorTable``
facade open every connection through it, so every driver error becomes a
:class:`~tidb_jina.DatabaseError` that names the database without its password, in one
place.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina._errors import DatabaseError, TiDBJinaError
from tidb_jina._redact import chain_leaks, connection_secrets, redact
from tidb_jina.store._engine import WRITE_OPTION, describe, engine_lock
from tidb_jina.store._tls import tls_hint


class Database:
    """The engine of one table, with transactions that translate driver errors."""

    def __init__(
        self,
        engine: sa.Engine,
        table_name: str,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self.engine = engine
        self.table_name = table_name
        self.dialect = engine.dialect
        # A shared in-memory SQLite connection is used under a lock; a no-op elsewhere.
        self._lock = engine_lock(engine) if lock is None else lock

    def rebind(self, engine: sa.Engine) -> Database:
        """The same table on another engine (the async view's, owned by one event loop)."""
        return Database(engine, self.table_name, lock=nullcontext())

    @property
    def serialized(self) -> bool:
        """True when every use shares one connection under a lock (``sqlite://``)."""
        return not isinstance(self._lock, nullcontext)

    @property
    def is_tidb(self) -> bool:
        return self.dialect.name == "mysql"

    def describe(self) -> str:
        """Where the database is, without the password (for messages and logs)."""
        return describe(self.engine)

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reads: one transaction (one snapshot) for all its statements.

        It is not committed: the pool's reset on return ends it, which saves TiDB a
        COMMIT round trip per search.
        """
        with self._lock, self.translate(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A connection in one write transaction, committed at the end."""
        with self.writer() as conn, conn.begin():
            yield conn

    @contextmanager
    def writer(self) -> Iterator[sa.Connection]:
        """A write connection; the caller begins and commits (one transaction per batch)."""
        with self._lock, self.translate(), self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            yield conn

    @contextmanager
    def raw(self) -> Iterator[sa.Connection]:
        """A plain connection (no write marker), errors translated."""
        with self._lock, self.translate(), self.engine.connect() as conn:
            yield conn

    def write_batches(
        self,
        statement: sa.Insert,
        columns: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        batches: Sequence[slice],
        check: Callable[[sa.Connection], None] | None = None,
    ) -> None:
        """Send validated, encoded rows: one connection, one transaction per batch
        (``check(conn)`` first in each: ``_write_check``).

        The rows go to the driver as they are (``executemany`` of the compiled SQL): they
        are already encoded, so SQLAlchemy's per-row parameter processing is skipped.
        """
        compiled = statement.compile(dialect=self.dialect)
        sql = str(compiled)
        if compiled.positional:  # qmark / format: tuples in the statement's order
            order = [columns.index(name) for name in compiled.positiontup or ()]

            def params(part: list[tuple[Any, ...]]) -> list[Any]:
                if order == list(range(len(columns))):
                    return part  # already in the statement's order (SQLite's upsert)
                return [tuple(row[i] for i in order) for row in part]

        else:  # pyformat / named: dicts

            def params(part: list[tuple[Any, ...]]) -> list[Any]:
                return [dict(zip(columns, row, strict=True)) for row in part]

        with self.writer() as conn:
            for part in batches:
                with conn.begin():
                    if check is not None:
                        check(conn)
                    conn.exec_driver_sql(sql, params(rows[part]))

    @contextmanager
    def translate(self) -> Iterator[None]:
        try:
            yield
        except TiDBJinaError:
            raise
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            message = driver_message(exc, self.engine)
            raise DatabaseError(
                f"{self.describe()} failed: {message}. "
                + (
                    tls_hint(message)
                    or _embedded_hint(self.dialect.name, message)
                    or "Check that the server is reachable and the URL, user and password are right"
                )
            ) from safe_cause(exc, self.engine)
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(
                f"{self.describe()} refused a statement on table "
                f"{self.table_name!r}: {driver_message(exc, self.engine)}"
            ) from safe_cause(exc, self.engine)
        except sqlite3.Error as exc:  # the embedded engine's own connections (watcher)
            message = redact(str(exc), connection_secrets(self.engine))
            hint = (
                "another connection holds it locked: try again"
                if "locked" in message
                else ("check that the file exists, is readable and its disk is not full")
            )
            raise DatabaseError(f"{self.describe()} failed: {message}; {hint}") from exc


def _embedded_hint(dialect: str, message: str) -> str | None:
    """What to do about an embedded database's error (SQLite has no server to reach)."""
    if dialect != "sqlite":
        return None
    if "no such table: main.tidb_jina_snapshots" in message:  # ``_snapshot_file``
        return (
            "The table tidb_jina_snapshots of snapshot_file= was dropped while its "
            "triggers on this table remain: open the table again with snapshot_file=True "
            "and search it once (the table is made again; connections opened before keep "
            "failing), or drop the '<table>__snap_*' triggers and index"
        )
    if "readonly database" in message:
        return (
            "It is open read-only: searches work, writes need a URL without mode=ro and "
            "immutable=1 (an immutable=1 file must never change: close every reader that "
            "opened it so before writing), and a file and directory this process can write"
        )
    if "locked" in message:
        return (
            "Another connection or process held it locked longer than the busy timeout "
            "(a long write): try again, or write from one process at a time"
        )
    return "Check that the file exists, is readable and writable, and its disk is not full"


def safe_cause(exc: BaseException, engine: sa.Engine) -> BaseException | None:
    """``exc`` to chain to our error, or None when it (or what it wraps) quotes the
    password: the message we raise is scrubbed, the driver's own is not."""
    return None if chain_leaks(exc, connection_secrets(engine)) else exc


def driver_message(exc: sa.exc.SQLAlchemyError, engine: sa.Engine | None = None) -> str:
    """The driver's message without SQLAlchemy's statement and parameter dump, and
    without the engine's password should a driver quote it."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else exc.__class__.__name__
    cause = getattr(orig, "__cause__", None)  # aiomysql keeps the TLS error only here
    if cause is not None and str(cause) not in text:
        text += f" ({cause})"
    return redact(text, connection_secrets(engine)) if engine is not None else text


def batch_slices(sizes: Sequence[int] | np.ndarray, max_rows: int, max_bytes: int) -> list[slice]:
    """Consecutive slices of rows bounded by ``max_rows`` rows and ``max_bytes`` bytes
    (sizes >= 0); a row bigger than ``max_bytes`` goes alone. One binary search per
    slice over the running total, not one Python step per row."""
    ends = np.zeros(len(sizes) + 1, dtype=np.int64)  # ends[i]: bytes of rows [0, i)
    np.cumsum(np.asarray(sizes, dtype=np.int64), out=ends[1:])
    n, out, start = len(sizes), [], 0
    while start < n:
        # the first row whose running total from ``start`` is over the byte bound
        over = int(np.searchsorted(ends, ends[start] + max_bytes, side="right")) - 1
        stop = max(start + 1, min(start + max_rows, over, n))
        out.append(slice(start, stop))
        start = stop
    return out
