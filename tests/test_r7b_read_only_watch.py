"""The change watcher opens the database as the user's URI does (issue 18, seventh round).

The watcher used to open SQLite's absolute path of the database read-write, whatever the
URI said: a ``mode=ro`` database got a read-write watcher (as root, nothing stops its
writes), ``immutable=1`` a watcher that locks, and ``vfs=memdb`` a watcher on a file of
that name on disk (created there), which never saw a change: searches missed new rows.

Read-only is proven with SQLite itself (the tests may run as root, where file modes stop
nothing): the watcher's connection refuses a write with "attempt to write a readonly
database". The user's file stays byte-for-byte the same, and no journal, ``-wal`` or
``-shm`` appears beside a rollback-journal file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tidb_jina.store import VectorTable

N, D = 200, 8


def _vectors(seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def _database(path: Path, journal: str) -> np.ndarray:
    """A closed database file of N rows in ``journal`` mode; its vectors."""
    vectors = _vectors(0)
    table = VectorTable(f"sqlite:///{path}", table_name="t", metric="l2")
    table.upsert(vectors, ids=[f"r{i}" for i in range(N)])
    table.close()
    plain = sqlite3.connect(path)
    assert plain.execute(f"PRAGMA journal_mode = {journal}").fetchone()[0] == journal.lower()
    plain.close()
    return vectors


def _nearest(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[str]:
    order = np.argsort(((vectors - query) ** 2).sum(axis=1), kind="stable")[:k]
    return [ids[i] for i in order]


def _watcher(table: VectorTable) -> sqlite3.Connection:
    conn = table._backend.cache.watcher._conn
    assert conn is not None
    return conn


def _refuses_writes(conn: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError, match="attempt to write a readonly database"):
        conn.execute("CREATE TABLE watcher_wrote (x)")


@pytest.mark.parametrize("relative", [False, True])
def test_a_read_only_uri_gets_a_read_only_watcher_and_sees_other_writers(
    tmp_path, monkeypatch, relative
):
    path = tmp_path / "ro.db"
    vectors = _database(path, "DELETE")
    ids = [f"r{i}" for i in range(N)]
    monkeypatch.chdir(tmp_path)
    where = "ro.db" if relative else str(path)
    table = VectorTable(f"sqlite:///file:{where}?mode=ro&uri=true", table_name="t", metric="l2")
    query = _vectors(1, 1)[0]
    assert [h.id for h in table.search(query, k=5)] == _nearest(vectors, ids, query, 5)
    watcher = _watcher(table)
    _refuses_writes(watcher)
    assert watcher.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    monkeypatch.chdir("/")  # a later chdir changes nothing

    writer = sqlite3.connect(path)  # another process's writer (read-write)
    near = query + np.float32(1e-3)
    writer.execute(
        "INSERT INTO t (id, embedding, document, meta) VALUES (?, ?, NULL, '{}')",
        ("new", near.astype(np.float32).tobytes()),
    )
    writer.commit()
    writer.close()
    before = path.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())

    hits = table.search(query, k=5)
    assert hits[0].id == "new"
    assert [h.id for h in hits[1:]] == _nearest(vectors, ids, query, 4)
    table.search(query, k=5, filter={"missing": {"$exists": False}})
    table.close()
    assert path.read_bytes() == before  # nothing written by the table or its watcher
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no journal, -wal, -shm


def test_a_read_only_uri_on_a_wal_file_never_writes_the_file(tmp_path):
    """A WAL file opened read-only: SQLite's own read-only readers keep ``-wal`` and
    ``-shm`` beside it, but the database file's bytes never change, and the watcher
    refuses writes (the read-write watcher checkpointed on close, as the last
    connection)."""
    path = tmp_path / "wal.db"
    vectors = _database(path, "WAL")
    before = path.read_bytes()
    table = VectorTable(f"sqlite:///file:{path}?mode=ro&uri=true", table_name="t", metric="l2")
    query = _vectors(2, 1)[0]
    ids = [f"r{i}" for i in range(N)]
    assert [h.id for h in table.search(query, k=3)] == _nearest(vectors, ids, query, 3)
    _refuses_writes(_watcher(table))
    assert _watcher(table).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    table.close()
    assert path.read_bytes() == before


def test_immutable_reads_the_vectors_once_and_takes_no_lock(tmp_path):
    """``immutable=1`` promises SQLite that the file never changes: the watcher opens it
    so too (no lock, read-only), its change token never moves, and the vectors read on
    the first search serve every later one (no reload)."""
    path = tmp_path / "imm.db"
    vectors = _database(path, "DELETE")
    before = path.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())
    table = VectorTable(f"sqlite:///file:{path}?immutable=1&uri=true", table_name="t", metric="l2")
    ids = [f"r{i}" for i in range(N)]
    for seed in (3, 4, 5):
        query = _vectors(seed, 1)[0]
        assert [h.id for h in table.search(query, k=4)] == _nearest(vectors, ids, query, 4)
    cache = table._backend.cache
    snapshot, token = cache.snapshot, cache.watcher.token_now()
    _refuses_writes(_watcher(table))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a lock the watcher would wait for, if it locked
    try:
        assert cache.watcher.token_now(wait=False) == token  # no Busy: it takes no lock
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    table.search(_vectors(6, 1)[0], k=4)
    assert cache.snapshot is snapshot and cache.watcher.token_now() == token
    table.close()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_a_memdb_vfs_is_watched_in_memory_not_as_a_file_on_disk(tmp_path):
    """``vfs=memdb`` with a name starting with ``/`` is one in-memory database shared by
    the process's connections. The watcher opened a disk file of that name (created
    it) and never saw a commit: a second table object's rows were missed."""
    name = str(tmp_path / "mem.db")  # a memdb name; no such file may appear on disk
    url = f"sqlite:///file:{name}?vfs=memdb&uri=true"
    first = VectorTable(url, table_name="t", metric="l2")
    vectors = _vectors(7, 50)
    first.upsert(vectors, ids=[f"m{i}" for i in range(50)])
    query = _vectors(8, 1)[0]
    assert [h.id for h in first.search(query, k=3)] == _nearest(
        vectors, [f"m{i}" for i in range(50)], query, 3
    )
    second = VectorTable(url, table_name="t", metric="l2")  # another object, same data
    second.upsert([query + np.float32(1e-3)], ids=["other"])
    assert first.search(query, k=1)[0].id == "other"
    assert not Path(name).exists()
    second.close()
    first.close()


@pytest.mark.parametrize(
    ("path", "where", "expected"),
    [
        ("/d/a.db", "file:a.db?mode=ro", "file:/d/a.db?mode=ro"),
        ("/d/a.db", "file:a.db?immutable=1&mode=ro", "file:/d/a.db?immutable=1&mode=ro"),
        ("/d/a.db", "file:a.db?cache=shared&vfs=unix-dotfile", "file:/d/a.db?vfs=unix-dotfile"),
        ("/d/a.db", "file:a.db?mode=ro#frag", "file:/d/a.db?mode=ro"),
        ("/d/a.db", "file:a.db", "file:/d/a.db"),
        ("/d/a b?#%.db", "file:x?nolock=1", "file:/d/a%20b%3F%23%25.db?nolock=1"),
    ],
)
def test_same_uri_keeps_every_parameter_but_cache(path, where, expected):
    from tidb_jina.store._watch import same_uri

    assert same_uri(path, where) == expected


def test_a_file_name_sqlite_must_decode_is_opened(tmp_path):
    """The watcher's URI quotes the path: a file named with a space, ``#`` and ``%``
    (escaped twice in the URL: SQLAlchemy decodes it once, SQLite once more)."""
    path = tmp_path / "a b#%.db"
    vectors = _database(path, "DELETE")
    once = str(path).replace("%", "%25").replace("#", "%23").replace(" ", "%20")
    uri_path = once.replace("%", "%25")
    table = VectorTable(f"sqlite:///file:{uri_path}?mode=ro&uri=true", table_name="t")
    query = vectors[5]
    assert table.search(query, k=1)[0].id == "r5"
    _refuses_writes(_watcher(table))
    table.close()


@pytest.mark.parametrize("name", ["privmem", "file:sub/privmem"])
def test_a_private_memdb_lives_in_one_connection_and_every_thread_sees_its_rows(
    tmp_path, monkeypatch, name
):
    """``vfs=memdb`` with a name not starting with ``/`` is private to each connection:
    the engine pooled several, each with its own empty database, so a search in another
    thread answered no rows or "no such table", and the watcher opened a third one."""
    import threading

    monkeypatch.chdir(tmp_path)
    where = name if name.startswith("file:") else f"file:{name}"
    table = VectorTable(f"sqlite:///{where}?vfs=memdb&uri=true", table_name="t", metric="l2")
    vectors = _vectors(9, 40)
    ids = [f"p{i}" for i in range(40)]
    table.upsert(vectors, ids=ids)
    query = _vectors(10, 1)[0]
    expected = _nearest(vectors, ids, query, 3)
    answers: list[object] = []

    def search() -> None:
        try:
            answers.append([h.id for h in table.search(query, k=3)])
        except Exception as exc:  # the assertion below shows it
            answers.append(exc)

    threads = [threading.Thread(target=search) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [expected] * 6
    table.upsert([query], ids=["new"])  # a write in memory is seen at once
    assert table.search(query, k=1)[0].id == "new"
    assert table._backend.cache.watcher._conn is None  # nothing else can reach it
    assert list(tmp_path.iterdir()) == []  # no file of that name
    table.close()


@pytest.mark.parametrize(
    ("database", "vfs", "private"),
    [
        ("file:x", "memdb", True),
        ("file:/x", "memdb", False),
        ("file:///x", "memdb", False),
        ("file://localhost/x", "memdb", False),
        ("file:x", ("memdb", "unix"), False),
        ("file:x", ("unix", "memdb"), True),
        ("file:x", None, False),
        ("x.db", "memdb", False),
    ],
)
def test_private_memdb_names(database, vfs, private):
    from tidb_jina.store._memdb import private_memdb, uri_vfs

    assert private_memdb(database, vfs) is private
    assert uri_vfs("file:x?vfs=unix&a=1&vfs=memdb#vfs=no") == "memdb"


def test_a_shared_memdb_is_written_after_searches_and_deletes_too(tmp_path):
    """SQLite's memdb VFS refuses a reader while any connection holds the write lock:
    the write's change token, read on the watcher inside the write transaction, waited
    for that very write's lock, and every write after a search failed after 5 s with
    "database is locked". The write now applies nothing and the next search reloads."""
    url = f"sqlite:///file:/{tmp_path.name}-shared?vfs=memdb&uri=true"
    table = VectorTable(url, table_name="t", metric="l2")
    vectors = _vectors(11, 30)
    ids = [f"s{i}" for i in range(30)]
    table.upsert(vectors, ids=ids)
    query = _vectors(12, 1)[0]
    assert [h.id for h in table.search(query, k=2)] == _nearest(vectors, ids, query, 2)
    assert table._backend.cache.snapshot is not None  # the snapshot a write keeps up
    table.upsert([query], ids=["near"])
    assert table.search(query, k=1)[0].id == "near"
    table.delete(["near"])
    assert [h.id for h in table.search(query, k=2)] == _nearest(vectors, ids, query, 2)
    other = VectorTable(url, table_name="t", metric="l2")  # another object, same data
    other.upsert([query], ids=["theirs"])
    assert table.search(query, k=1)[0].id == "theirs"
    other.close()
    table.close()


@pytest.mark.parametrize("parameter", ["mode=ro", "immutable=1"])
def test_a_write_through_a_read_only_uri_says_how_to_write(tmp_path, parameter):
    """A write on a ``mode=ro`` / ``immutable=1`` URI said "Check that the file exists,
    is readable and writable": the file was fine, the URL was the cause."""
    from tidb_jina import DatabaseError

    path = tmp_path / "ro.db"
    vectors = _database(path, "DELETE")
    before = path.read_bytes()
    table = VectorTable(f"sqlite:///file:{path}?{parameter}&uri=true", table_name="t")
    assert len(table.search(vectors[0], k=3)) == 3
    for write in (
        lambda: table.upsert(vectors[:2], ids=["r0", "new"]),
        lambda: table.delete(["r1"]),
    ):
        with pytest.raises(DatabaseError, match=r"read-only.*without mode=ro and immutable=1"):
            write()
    table.close()
    assert path.read_bytes() == before


def test_vfs_memdb_without_uri_true_is_a_file_and_pooled(tmp_path, monkeypatch):
    """Without ``uri=true`` SQLAlchemy drops ``vfs=`` (with a warning) and opens a file
    named ``file:x``: a file database, pooled as any other."""
    import warnings

    from sqlalchemy.pool import StaticPool

    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = VectorTable("sqlite:///file:plain?vfs=memdb", table_name="t")
        table.upsert(_vectors(1, 5), ids=[f"f{i}" for i in range(5)])
    assert not isinstance(table.engine.pool, StaticPool)
    assert (tmp_path / "file:plain").exists()
    table.close()
    private = VectorTable("sqlite:///file:plain?vfs=memdb&uri=true", table_name="t")
    assert isinstance(private.engine.pool, StaticPool)
    private.close()
