"""The opt-in snapshot file: a table's prepared vectors on disk, mapped on the next open.

A cold open reads every vector through the ``sqlite3`` driver, which makes one Python
``bytes`` object per row (1M x 768: seconds, whatever the loader does with them). With
``VectorTable(..., snapshot_file=True)`` the prepared matrix (unit rows for cosine,
squared norms for L2) and the rowids are also written to a file next to the database,
and the next open maps that file read-only instead of reading the rows: the matrix *is*
the map (no copy; its pages are read as the first product touches them).

The file is used only with a proof that it holds the table's committed state:

* the package keeps a table ``tidb_jina_snapshots(table_name, token)`` and three
  triggers on the vector table (AFTER INSERT / UPDATE / DELETE) that set the table's
  ``token`` to NULL (only while it is not NULL: one UPDATE per write transaction, the
  other rows pay a primary-key lookup). Every SQL write by anyone, in any process or
  tool, fires them; a write that rolls back rolls the NULL back with it. A zero-row
  index on an expression (``<table>__snap_nb``) makes SQLite refuse writable BLOB
  handles (``Connection.blobopen``), which write in place without firing triggers;
* writing a file: the arrays go to a temporary file first (no lock held), then ONE write
  transaction (``BEGIN IMMEDIATE``) checks that the snapshot the file was written from
  is exactly the committed state (its change token is the watcher's, read under the
  write lock), creates the table, triggers and index if missing, sets ``token`` to a
  new ``randomblob(16)``, writes the token and ``PRAGMA schema_version`` into the file's
  header and syncs it, commits, then renames the file into place;
* opening: in the read transaction that would otherwise load the rows, the file is
  accepted only if its token equals the stored one, the schema cookie is the same (a
  ``VACUUM`` may renumber rowids; ``DROP`` / ``CREATE`` / ``ALTER`` of any table bump
  it), the three triggers and the index exist with exactly our SQL, and name,
  dimension, metric, row count and file size agree. Anything else (a missing, torn,
  foreign or stale file) is ignored: the rows are read as usual, and a new file is
  written for the next open.

Crash orders: before the commit, the stored token is unchanged (the old file, if it
matches, still holds exactly that state) and only a temporary file is left (removed
by a later save once its process is gone); after the commit and before the rename, the
old file holds the old token: rejected. Two writers (threads or processes) each rename
a complete file; the loser's token is no longer the stored one: rejected, rebuilt.

Not covered (see ``docs/decisions.md``): dropping our triggers, writing, re-creating
them and setting ``PRAGMA schema_version=`` back; a TEMP trigger of another connection
made to suppress our UPDATE (``RAISE(IGNORE)``); editing the file's bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import mmap
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from tidb_jina._errors import ConfigurationError
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._stream_load import Loaded, count_rows

# ``_embedded`` imports this module: its VectorCache and Snapshot are typed ``Any`` here
VectorCache = Any
Snapshot = Any
log = logging.getLogger(__name__)

MAGIC = b"TJVSNAP\x00"
FORMAT_VERSION = 1
HEADER_BYTES = 4096  # magic, version, header length, JSON; the arrays start after it
ALIGN = 64
STATE_TABLE = "tidb_jina_snapshots"
SUFFIX = ".vectors"
BUSY_SECONDS = 2.0  # how long a save waits for SQLite's write lock before giving up
POLL_SECONDS = 0.05  # ... asking again this often (``forget`` may stop it meanwhile)
WRITE_ROWS = 8192  # rows per write of the matrix
_BIG_ENDIAN = sys.byteorder != "little"
_MADV_POPULATE_READ = 22  # Linux 5.14+: fault the mapped pages in with one call


def check_option(option: Any, engine: sa.Engine) -> Path | bool:
    """``snapshot_file=`` checked at construction: False, True or an existing directory.
    Raises ``ConfigurationError`` for a database with no file to sit beside."""
    if option is False or option is None:
        return False
    if not isinstance(option, (bool, str, os.PathLike)):
        raise ConfigurationError(
            f"snapshot_file must be True, False or a directory path, got {option!r}"
        )
    if engine.dialect.name != "sqlite":
        raise ConfigurationError(
            "snapshot_file= is for the embedded engine's file databases (sqlite:///path.db); "
            "TiDB keeps the vectors itself: remove the option"
        )
    url = engine.url
    database = url.database or ""
    memory = "mode=memory" in database or url.query.get("mode") == "memory"
    if memory or database in ("", ":memory:"):
        raise ConfigurationError(
            "snapshot_file= needs a database file (sqlite:///path.db): an in-memory database "
            "is gone when the process ends, so a file of its vectors could never be reused; "
            "remove the option or use a file"
        )
    read_only = url.query.get("mode") == "ro" or "mode=ro" in database
    if read_only or url.query.get("immutable") == "1" or "immutable=1" in database:
        raise ConfigurationError(
            "snapshot_file= records a token in the database on every save, and this URL "
            "opens it read-only: remove the option, or open the file read-write"
        )
    if option is True:
        return True
    given = os.fspath(option)  # type: ignore[arg-type]  # a str or PathLike by now
    folder = Path(given).expanduser().absolute()
    if not given or not folder.is_dir():
        raise ConfigurationError(
            f"snapshot_file={given!r} is not an existing directory: create it, "
            "or pass True to keep the file next to the database"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"snapshot_file={given!r} is a directory this process cannot write to: "
            "give it write permission, or pass another directory (or True)"
        )
    return folder


def trigger_sql(table_name: str) -> dict[str, str]:
    """Our three triggers' and our guard index's names and SQL, as SQLite stores them in
    ``sqlite_master``.

    The index holds no row (``WHERE 0``: nothing to store or update) and exists for one
    effect: SQLite refuses to open a writable BLOB handle (``sqlite3_blob_open``,
    Python's ``Connection.blobopen``) on a table with an index on an expression, and a
    BLOB handle writes bytes in place without firing any trigger.

    ``table_name`` is a checked identifier (letters, digits, underscores): it is quoted
    here, and no value ever enters the text."""
    where = f"{STATE_TABLE} WHERE table_name = '{table_name}'"
    guard = f"{table_name}__snap_nb"
    out = {guard: f'CREATE INDEX "{guard}" ON "{table_name}"((0)) WHERE 0'}
    for event, tag in (("INSERT", "ai"), ("UPDATE", "au"), ("DELETE", "ad")):
        name = f"{table_name}__snap_{tag}"
        reset = f"UPDATE {STATE_TABLE} SET token = NULL WHERE table_name = '{table_name}'"  # noqa: S608
        head = f'CREATE TRIGGER "{name}" AFTER {event} ON "{table_name}" '
        out[name] = f"{head}WHEN (SELECT token FROM {where}) IS NOT NULL BEGIN {reset}; END"  # noqa: S608
    return out


def layout(rows: int, dimension: int, l2: bool) -> tuple[int, int, int, int]:
    """(rowids, matrix, sq_norms, end) byte offsets of a file's arrays."""

    def up(at: int) -> int:
        return -(-at // ALIGN) * ALIGN

    rowids = HEADER_BYTES
    matrix = up(rowids + 8 * rows)
    sq = up(matrix + 4 * rows * dimension)
    end = up(sq + 4 * rows) if l2 else sq
    return rowids, matrix, sq, end


class SnapshotFile:
    """One table's snapshot file: where it is, reading it, writing it."""

    def __init__(self, place: Path | bool, table_name: str, metric: DistanceMetric) -> None:
        self.place = place
        self.table_name = table_name
        self.metric = metric
        self.database: str | None = None  # SQLite's absolute path of the main database
        self.path: str | None = None
        self.saved: Any = None  # the cache token of the state the file holds
        self.used = False  # the last load mapped the file
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set by ``forget``: a save under way gives up

    # --- where ------------------------------------------------------------------------

    def locate(self, conn: sa.Connection) -> str | None:
        """The file's path, from SQLite's own path of the database (immune to chdir)."""
        if self.path is None:
            rows = conn.exec_driver_sql("PRAGMA database_list").all()
            database = next((row[2] for row in rows if row[1] == "main"), "")
            if not database:
                return None
            name = f"{Path(database).name}.{self.table_name}{SUFFIX}"
            folder = Path(database).parent
            if self.place is not True:  # a folder shared by databases of the same name:
                folder = Path(str(self.place))  # one file each, not one they overwrite
                where = hashlib.sha256(database.encode()).hexdigest()[:12]
                name = f"{Path(database).name}.{where}.{self.table_name}{SUFFIX}"
            self.database, self.path = database, str(folder / name)
        return self.path

    # --- reading ----------------------------------------------------------------------

    def read(self, conn: sa.Connection, table: sa.Table, dimension: int) -> Loaded | None:
        """The file's arrays, mapped, when it provably holds the state ``conn``'s read
        transaction sees; else None (and why, in the debug log)."""
        self.used = False
        path = self.locate(conn)
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                header = _header(f)
                why = "torn or not a snapshot file" if header is None else None
                if header is not None:
                    why = self._mismatch(header, conn, table, dimension, os.fstat(f.fileno()))
                if header is None or why is not None:
                    log.debug("snapshot file %s not used: %s", path, why)
                    return None
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.debug("snapshot file %s not used: %s", path, exc)
            return None
        loaded = _arrays(mapped, header["rows"], dimension, self.metric)
        if loaded is None:
            return None
        self.used = True  # ``VectorCache.load`` records the state it holds (``saved``)
        _remove_orphans(path)  # saves cut short by a dead process (each a whole copy)
        return loaded

    def _mismatch(
        self,
        header: dict[str, Any],
        conn: sa.Connection,
        table: sa.Table,
        dimension: int,
        stat: os.stat_result,
    ) -> str | None:
        """Why the file is not the committed state ``conn`` reads; None when it is."""
        rows = header.get("rows")
        if not isinstance(rows, int) or rows < 0:
            return "no row count"
        l2 = self.metric is DistanceMetric.L2
        if stat.st_size != layout(rows, dimension, l2)[3]:
            return "wrong size"
        mine = (self.table_name, dimension, self.metric.value)
        if (header.get("table"), header.get("dimension"), header.get("metric")) != mine:
            return "another table, dimension or metric"
        found = conn.exec_driver_sql(
            "SELECT type, name, sql FROM sqlite_master WHERE (type IN ('trigger', 'index')"
            " AND tbl_name = ?)"
            " OR (type = 'table' AND name = ?)",
            (self.table_name, STATE_TABLE),
        ).all()
        if not any(kind == "table" for kind, _, _ in found):
            return "no token table"
        guards = {name: sql for kind, name, sql in found if kind != "table"}
        if any(guards.get(name) != sql for name, sql in trigger_sql(self.table_name).items()):
            return "our triggers or guard index are missing or changed"
        token = conn.exec_driver_sql(
            f"SELECT token FROM {STATE_TABLE} WHERE table_name = ?",  # noqa: S608
            (self.table_name,),
        ).scalar()
        if token is None or bytes(token).hex() != header.get("token"):
            return "the table was written since"
        if conn.exec_driver_sql("PRAGMA schema_version").scalar() != header.get("schema_version"):
            return "the schema changed since"
        if count_rows(conn, table) != rows:
            return "another row count"
        return None

    # --- writing ----------------------------------------------------------------------

    def save_later(self, cache: VectorCache, snap: Snapshot) -> None:
        """Write the file from ``snap`` on a thread (the open that read the rows is slow
        already; its first search need not wait for the disk too). Not a daemon: a
        script that ends right after its first search still leaves the file."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._save_quietly, args=(cache, snap), name="tidb-jina-snapshot-file"
            )
            self._thread.start()

    def on_close(self, cache: VectorCache) -> None:
        """At ``close()``: finish a save under way, then write the file again if this
        process's own writes left it behind the committed state held in memory (the
        next open maps it instead of reading every row: see ``docs/decisions.md``)."""
        self.wait()
        snap = cache.snapshot
        if snap is None or snap.token is None or snap.token == self.saved:
            return
        if cache.watcher.token_now() == snap.token:
            try:
                self.save(cache, snap)
            except (OSError, sqlite3.Error):
                log.warning("could not write the snapshot file %s", self.path, exc_info=True)

    def wait(self) -> None:
        """Until a save on the thread has ended."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def _save_quietly(self, cache: VectorCache, snap: Snapshot) -> None:
        try:
            self.save(cache, snap)
        except Exception:  # an optimisation only: the next open reads the rows
            log.warning("could not write the snapshot file %s", self.path, exc_info=True)

    def save(self, cache: VectorCache, snap: Snapshot) -> bool:
        """Write the file of ``snap`` (True: done). Gives up when ``snap`` is not the
        committed state, or SQLite's write lock stays taken for ``BUSY_SECONDS``."""
        path, database = self.path, self.database
        if path is None or database is None or snap.token is None:
            return False
        if cache.watcher.token_now() != snap.token:
            return False  # not the committed state any more: no file to write
        _remove_orphans(path)
        temp = f"{path}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
        try:
            with open(temp, "w+b") as f:
                rows = _write_arrays(f, snap, self.metric, self._stop)
                if self._stop.is_set():
                    return False
                f.flush()
                os.fsync(f.fileno())
                return self._commit(cache, snap, f, rows, database, path, temp)
        finally:
            if os.path.exists(temp):
                os.unlink(temp)

    def _commit(
        self,
        cache: VectorCache,
        snap: Snapshot,
        f: Any,
        rows: int,
        database: str,
        path: str,
        temp: str,
    ) -> bool:
        """The one write transaction that makes the temporary file the valid one."""
        with cache.writing():  # the load lock first, then SQLite's (as every writer)
            db = sqlite3.connect(database, timeout=POLL_SECONDS, isolation_level=None)
            try:
                if not _begin(db, self._stop):
                    log.debug("snapshot file %s not written: the database stayed locked", path)
                    return False
                try:
                    own = _one(db, "PRAGMA data_version")
                    if cache.watcher.token_now() != snap.token:
                        db.execute("ROLLBACK")  # not the committed state (any more)
                        return False
                    cookie_before = _one(db, "PRAGMA schema_version")
                    _install(db, self.table_name)
                    db.execute(
                        f"INSERT OR REPLACE INTO {STATE_TABLE} (table_name, token) "  # noqa: S608
                        "VALUES (?, randomblob(16))",
                        (self.table_name,),
                    )
                    token = bytes(
                        db.execute(
                            f"SELECT token FROM {STATE_TABLE} WHERE table_name = ?",  # noqa: S608
                            (self.table_name,),
                        ).fetchone()[0]
                    )
                    cookie = _one(db, "PRAGMA schema_version")
                    dimension = snap.matrix.shape[1]
                    _write_header(f, self.table_name, dimension, self.metric, rows, token, cookie)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                os.replace(temp, path)
                _sync_folder(path)
                after = cache.watcher.token_now()
                if after is not None and _one(db, "PRAGMA data_version") == own:
                    # nobody else committed since our BEGIN: ``after`` is our commit's state
                    _relabel(cache, snap, after)
                    self.saved = after
                if cache.schema_seen == cookie_before:  # our triggers only: same tables
                    cache.schema_seen = cookie
                return True
            finally:
                db.close()

    def forget(self, conn: sa.Connection) -> None:
        """The table is being dropped: its token row and its file go (in ``conn``'s
        transaction; the file even if that rolls back: it is only rebuilt then).

        ``conn`` holds SQLite's write lock: a save under way is told to give up (it
        would wait for that lock), and is waited for."""
        self._stop.set()
        try:
            self.wait()
        finally:
            self._stop.clear()
        path = self.locate(conn)
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (STATE_TABLE,)
        ).first()
        if exists:
            conn.exec_driver_sql(
                f"DELETE FROM {STATE_TABLE} WHERE table_name = ?",  # noqa: S608
                (self.table_name,),
            )
        if path is not None:  # a file that cannot go (mapped elsewhere, on Windows) is
            with contextlib.suppress(OSError):  # stale anyway: its token row is gone
                os.unlink(path)
        self.saved, self.used = None, False


def _begin(db: sqlite3.Connection, stop: threading.Event) -> bool:
    """``BEGIN IMMEDIATE`` on ``db``, retried while the database is locked, for at most
    ``BUSY_SECONDS``; False when it stayed locked or ``stop`` was set meanwhile."""
    deadline = time.monotonic() + BUSY_SECONDS
    while not stop.is_set():
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                return False
            continue
        db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")  # for the COMMIT
        return True
    return False


def _one(db: sqlite3.Connection, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


def _install(db: sqlite3.Connection, table_name: str) -> None:
    """The token table and our triggers, made or repaired (inside the caller's write)."""
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (table_name TEXT PRIMARY KEY, token BLOB)"
    )
    have = dict(
        db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type IN ('trigger', 'index')"
            " AND tbl_name = ?",
            (table_name,),
        ).fetchall()
    )
    for name, sql in trigger_sql(table_name).items():
        if have.get(name) != sql:
            kind = "INDEX" if sql.startswith("CREATE INDEX") else "TRIGGER"
            db.execute(f'DROP {kind} IF EXISTS "{name}"')
            db.execute(sql)


def _relabel(cache: VectorCache, snap: Snapshot, token: Any) -> None:
    """Publish ``snap``'s arrays under ``token`` (our commit changed only the token row)."""
    if cache.snapshot is not snap:
        return
    extras = {k: (dict(v) if k == "columns" else v) for k, v in snap.extras.items()}
    cache._publish(dataclasses.replace(snap, token=token, extras=extras))


def _write_arrays(f: Any, snap: Snapshot, metric: DistanceMetric, stop: threading.Event) -> int:
    """The alive rows' rowids, matrix and squared norms, in rowid order; the row count.
    Stops early (a partial temporary file) when ``stop`` is set."""
    rowids = snap.rowids
    order: np.ndarray | None = None
    if snap.alive is not None or not (rowids.size < 2 or bool((rowids[1:] > rowids[:-1]).all())):
        live = np.arange(snap.size) if snap.alive is None else np.flatnonzero(snap.alive)
        order = live[np.argsort(rowids[live], kind="stable")]
        rowids = rowids[order]
    rows, dimension = int(rowids.size), snap.matrix.shape[1]
    at_ids, at_matrix, at_sq, end = layout(rows, dimension, metric is DistanceMetric.L2)
    f.write(bytes(HEADER_BYTES))  # written last, inside the transaction
    f.seek(at_ids)
    f.write(np.ascontiguousarray(rowids, dtype="<i8").data)
    f.seek(at_matrix)
    for start in range(0, rows, WRITE_ROWS):
        if stop.is_set():
            return rows
        end_row = min(rows, start + WRITE_ROWS)
        block = snap.matrix[start:end_row] if order is None else snap.matrix[order[start:end_row]]
        f.write(np.ascontiguousarray(block, dtype="<f4").data)
    if metric is DistanceMetric.L2:
        assert snap.sq_norms is not None
        sq = snap.sq_norms if order is None else snap.sq_norms[order]
        f.seek(at_sq)
        f.write(np.ascontiguousarray(sq, dtype="<f4").data)
    f.truncate(end)
    return rows


def _write_header(
    f: Any,
    table_name: str,
    dimension: int,
    metric: DistanceMetric,
    rows: int,
    token: bytes,
    cookie: int,
) -> None:
    fields = {
        "table": table_name,
        "dimension": dimension,
        "metric": metric.value,
        "rows": rows,
        "token": token.hex(),
        "schema_version": cookie,
    }
    text = json.dumps(fields, sort_keys=True).encode()
    head = MAGIC + FORMAT_VERSION.to_bytes(4, "little") + len(text).to_bytes(4, "little") + text
    if len(head) > HEADER_BYTES:
        raise ValueError("snapshot file header too long")
    f.seek(0)
    f.write(head)
    f.flush()
    os.fsync(f.fileno())


def _header(f: Any) -> dict[str, Any] | None:
    """The header's fields; None unless magic, version and JSON are all right."""
    head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES or head[:8] != MAGIC:
        return None
    if int.from_bytes(head[8:12], "little") != FORMAT_VERSION:
        return None
    size = int.from_bytes(head[12:16], "little")
    if size > HEADER_BYTES - 16:
        return None
    try:
        fields = json.loads(head[16 : 16 + size])
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def _arrays(mapped: mmap.mmap, rows: int, dimension: int, metric: DistanceMetric) -> Loaded | None:
    """Read-only arrays over the map (no copy)."""
    l2 = metric is DistanceMetric.L2
    at_ids, at_matrix, at_sq, _ = layout(rows, dimension, l2)
    rowids = np.frombuffer(mapped, dtype="<i8", count=rows, offset=at_ids)
    matrix = np.frombuffer(mapped, dtype="<f4", count=rows * dimension, offset=at_matrix)
    matrix = matrix.reshape(rows, dimension)
    sq = np.frombuffer(mapped, dtype="<f4", count=rows, offset=at_sq) if l2 else None
    if _BIG_ENDIAN:  # stored little-endian: a native copy (the map cannot be used as is)
        rowids, matrix = rowids.astype(np.int64), matrix.astype(np.float32)
        sq = None if sq is None else sq.astype(np.float32)
    if rows > 1 and not bool((rowids[1:] > rowids[:-1]).all()):
        return None
    if sys.platform == "linux" and hasattr(mapped, "madvise") and rows:  # 22: Linux only
        with contextlib.suppress(OSError):  # fault the pages in with one call
            mapped.madvise(_MADV_POPULATE_READ)
    return Loaded(rowids, matrix, sq, None)


def _sync_folder(path: str) -> None:
    """Make the rename durable (POSIX); nothing to do where folders cannot be opened."""
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_orphans(path: str) -> None:
    """Temporary files left by processes that ended during a save."""
    folder, name = os.path.split(path)
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(name + ".") and entry.endswith(".tmp")):
            continue
        pid = entry[len(name) + 1 :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
