"""Change tokens of an embedded database: has anything been committed since we looked?

The embedded search keeps the vectors in memory (``_embedded``) and must know when that
copy is stale. ``PRAGMA data_version`` answers it: on one connection, its value changes
whenever *another* connection (in this process or another) commits. The watcher is that
one private connection, which never writes.

It must open exactly the database the engine opened, whatever form the URL had:

* a file: the absolute path SQLite itself reports for the engine's connection
  (``PRAGMA database_list``), so a relative path followed by ``os.chdir`` still watches
  the right file, and a ``file:`` URI is not mistaken for a file named ``file:...``;
  a ``file:`` URI's parameters come along (``same_uri``): ``mode=ro`` keeps the watcher
  read-only, ``immutable=1``, ``vfs=`` and the others open the file the same way;
* a shared-cache in-memory URI (``file:name?mode=memory&cache=shared``): the same URI,
  opened as a URI (every connection to it shares the data, so ``data_version`` works);
* a private in-memory database (``sqlite://``): nothing else can reach it; it lives in
  one connection used under a lock, whose ``total_changes`` is the token instead.

``PRAGMA schema_version`` (same connection) tells when a table was dropped or created by
anyone, so the facade re-reads the table's shape instead of writing to a table that is no
longer the one it knew.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from tidb_jina.store._memdb import private_memdb, uri_parameters, uri_vfs

# The winners' rows of a fast search (``read_then_token``) are read with SQLite's
# ordinary reads (``pread`` into the connection's page cache, bounded by its
# ``cache_size``: 2 MB by default), never through a memory map. Mapped file pages count
# in the process's resident size, and the kernel maps 16 neighbouring pages per fault
# (fault-around): 1,024 random rows of a 100,000 x 768 table left 64 MB of the file
# resident. ``pread`` was also the faster of the two inside real searches (issue 18's
# fifth round: 94-100 us against 124-137 us median per read, the map's drops included).
MAP_BYTES = 0

# How long a watcher read waits for a file another connection locks (rollback-journal
# mode: a writer committing). The wait is spent outside the watcher's lock (see
# ``ChangeWatcher._on_watcher``), so the other readers are never queued behind it.
WAIT_SECONDS = 5.0


class Busy(Exception):
    """The file is locked for a commit in progress (rollback-journal mode), and the
    caller asked not to wait (``token(..., wait=False)``)."""


class ChangeWatcher:
    """Change and schema tokens of the database behind one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._recent = threading.local()  # ``recent_token``: read with the schema cookie
        self._conn: sqlite3.Connection | None = None
        self._private: bool | None = None  # a private in-memory database (no watcher)
        # data_version counts from the start again on a new connection: each connection
        # (after close()) is a new epoch, part of the token, so a snapshot labelled by
        # an earlier connection never equals a token of a later one
        self._epoch = 0

    def _watcher(self, dbapi: Any) -> sqlite3.Connection | None:
        """The private connection (made once, from the engine's own connection).

        The engine's connection may be an async driver's, whose calls switch greenlets:
        it is never used while ``_lock`` is held (another task on this thread would wait
        for the lock forever)."""
        if self._private is None:
            target = _target(self._engine, dbapi)
            with self._lock:
                if self._private is None:
                    self._private = target is None
                    if target is not None:
                        where, uri = target
                        # timeout=0: a locked file is waited for outside the lock
                        self._conn = sqlite3.connect(
                            where,
                            uri=uri,
                            check_same_thread=False,
                            isolation_level=None,
                            timeout=0,
                        )
                        # never mapped, whatever SQLite's compile-time default (MAP_BYTES)
                        self._conn.execute(f"PRAGMA mmap_size = {MAP_BYTES:d}").fetchall()
                        self._epoch += 1
        return self._conn

    def _on_watcher(self, read: Callable[[sqlite3.Connection], Any], wait: bool = True) -> Any:
        """``read(connection)`` under the lock; None when there is no watcher (closed
        meanwhile: reopened on the next call).

        In rollback-journal mode a reader cannot start while a writer commits. SQLite's
        busy wait would keep the lock for all that time, and a reader holding the file's
        shared lock while it waits for ours would hold up that very commit (a deadlock
        until the busy timeout: searches failed with "database is locked"). So the
        connection does not wait (``timeout=0``) and the wait happens here, without the
        lock; with ``wait=False`` a locked file raises ``Busy`` at once."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            with self._lock:
                if self._conn is None:
                    return None
                try:
                    return read(self._conn)
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc):
                        raise
                    if not wait:
                        raise Busy(str(exc)) from exc
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.001)

    def _read(self, dbapi: Any, pragma: str) -> int | None:
        """``pragma`` on the watcher; None when there is none (private memory)."""
        if self._watcher(dbapi) is None:
            return None
        return self._on_watcher(lambda conn: int(conn.execute(pragma).fetchone()[0]))

    def token(self, conn: sa.Connection, wait: bool = True) -> Any:
        """A value that changes whenever anyone commits a change to the database.

        ``wait=False``: ``Busy`` instead of waiting for a commit in progress (a caller
        holding a read transaction open must not wait for a writer that waits for it)."""
        dbapi = _dbapi(conn)
        if self._watcher(dbapi) is not None:
            token = self.token_now(wait)
            if token is not None:
                return token
        # one connection under the engine's lock: its own count of changed rows, and
        # the schema cookie (DROP TABLE changes no rows)
        cookie = _pragma(dbapi, "PRAGMA schema_version")[0][0]
        return ("changes", dbapi.total_changes, cookie)

    def token_now(self, wait: bool = True) -> Any:
        """``token`` read on the watcher alone (no engine connection); None before the
        watcher exists, and for a private in-memory database."""

        def read(conn: sqlite3.Connection) -> Any:
            return ("version", self._epoch, int(conn.execute("PRAGMA data_version").fetchone()[0]))

        return self._on_watcher(read, wait)

    def read_then_token(
        self, statements: list[tuple[str, Sequence[Any]]]
    ) -> tuple[list[Any], Any, int | None] | None:
        """(rows of ``statements``, the change token of the state they were read from, the
        schema cookie of that state), read on the watcher under one hold of its lock (no
        pool checkout: a fast search's winners are a few rows); None when there is no
        watcher. Read-only statements only: the watcher never writes.

        Each statement ends with the columns ``VERSION_COLUMN`` and ``COOKIE_COLUMN``
        (SQLite's ``data_version`` and ``schema_version`` read in the statement's own read
        transaction: the state its rows come from), which are taken off the rows.
        Statements read in different states (a commit between two of them) give the
        token None. With no row at all, both are read after the statements (a token
        unchanged from one read before them: nothing was committed meanwhile)."""
        with self._lock:
            conn = self._conn
            if conn is None:
                return None
            rows: list[Any] = []
            states: set[tuple[int, int]] = set()
            cursor = conn.cursor()
            try:
                for sql, params in statements:
                    for row in cursor.execute(sql, params).fetchall():
                        states.add(row[-2:])
                        rows.append(row[:-2])
            finally:
                cursor.close()
            if not states:
                states.add(tuple(conn.execute(_STATE_SQL).fetchone()))
            if len(states) > 1:
                return rows, None, None
            version, cookie = states.pop()
            return rows, ("version", self._epoch, int(version)), int(cookie)

    def schema_version(self, conn: sa.Connection) -> int:
        """SQLite's schema cookie: it changes whenever any table is created or dropped."""
        dbapi = _dbapi(conn)
        version = self._read(dbapi, "PRAGMA schema_version")
        if version is not None:
            return version
        return int(_pragma(dbapi, "PRAGMA schema_version")[0][0])

    def schema_version_now(self) -> int | None:
        """The schema cookie read on the watcher; None before it exists (or in memory).

        The change token is read in the same statement (one read of the database, not
        two) and kept for this thread's next ``recent_token()``."""

        def read(conn: sqlite3.Connection) -> tuple[Any, int]:
            version, cookie = conn.execute(_STATE_SQL).fetchone()
            return ("version", self._epoch, int(version)), int(cookie)

        state = self._on_watcher(read)
        if state is None:
            return None
        self._recent.token = state[0]
        return int(state[1])

    def recent_token(self) -> Any:
        """The change token read with this thread's last ``schema_version_now()``, once
        (None afterwards, and before). The facade checks the schema at the start of
        every call, so a search takes the token it needs from that read instead of
        reading it again. Any token read before a fast search scores serves its proof
        (``_fresh``: the token its rows were read with must equal it), a recent one
        only makes that proof likelier to hold."""
        token = getattr(self._recent, "token", None)
        self._recent.token = None
        return token

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn, self._private = None, None


# ``PRAGMA data_version`` and ``PRAGMA schema_version`` as columns of a SELECT
# (``read_then_token``): the same read transaction as the statement's rows.
VERSION_COLUMN = "(SELECT data_version FROM pragma_data_version)"
COOKIE_COLUMN = "(SELECT schema_version FROM pragma_schema_version)"

# ``PRAGMA data_version`` and ``PRAGMA schema_version`` as one statement (SQLite's
# table-valued pragma functions, 3.16+): one read transaction instead of two.
_STATE_SQL = "SELECT data_version, schema_version FROM pragma_data_version, pragma_schema_version"


def _dbapi(conn: sa.Connection) -> Any:
    return conn.connection.dbapi_connection


def _pragma(dbapi: Any, sql: str) -> list[Any]:
    """Run a PRAGMA on the driver connection itself (no SQLAlchemy transaction begins)."""
    cursor = dbapi.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def _target(engine: sa.Engine, dbapi: sqlite3.Connection) -> tuple[str, bool] | None:
    """(what to open, is it a URI) for the engine's database; None for private memory."""
    rows = _pragma(dbapi, "PRAGMA database_list")
    path = next((row[2] for row in rows if row[1] == "main"), "")
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    where = str(args[0]) if args else str(kwargs.get("database", ""))
    uri = bool(kwargs.get("uri"))
    if uri and private_memdb(where, uri_vfs(where)):
        return None  # a private memdb lives in the engine's one connection
    if path:  # a file: SQLite's own absolute path, immune to a later chdir
        return (same_uri(path, where), True) if uri else (path, False)
    if uri and "cache=shared" in where:
        return where, True  # a shared-cache in-memory URI reaches the same data
    return None


def same_uri(path: str, where: str) -> str:
    """A ``file:`` URI of ``path`` (SQLite's absolute path of the engine's database) with
    the parameters of the URI the engine opened, ``where``, so the watcher opens the
    file as the user asked: ``mode=ro`` stays read-only (nothing created, written or
    switched to WAL), ``immutable=1`` takes no lock and never sees a change (the file
    is promised never to change: the vectors are read once), ``vfs=`` goes through the
    same VFS (``vfs=memdb``'s ``/name`` is no file on disk), ``nolock=1``, ``psow=`` ...
    likewise. ``cache=`` alone is left out: it says how this process shares pages, not
    which data or what access, and a watcher in the engine's shared cache would wait on
    its table locks.

    The parameters are read as SQLite reads them: after the first ``?``, up to ``#``."""
    kept = [part for part in uri_parameters(where) if part and part.split("=", 1)[0] != "cache"]
    return f"file:{quote(path, safe='/')}" + (f"?{'&'.join(kept)}" if kept else "")
