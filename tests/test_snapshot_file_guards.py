"""The snapshot file's proof against writes that fire no trigger, and a save that must
give way to ``drop()``.

* A BLOB handle (``sqlite3_blob_open``; Python's ``Connection.blobopen``) writes a
  vector's bytes in place and fires no trigger: our zero-row guard index on an
  expression makes SQLite refuse to open one for writing, and a file whose guard index
  is gone is not trusted.
* ``drop()`` holds SQLite's write lock while it waits for a save on the thread: the save
  gives up at once (no wait for the lock, no warning), and no file is left.
* SQL from outside, in the forms the sqlite3 CLI allows (UPSERT, an UPDATE that changes
  nothing, REPLACE, ALTER TABLE RENAME, VACUUM INTO restored, ATTACH): the file is
  refused and the results are the rows'; a rolled-back SAVEPOINT leaves it valid.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tidb_jina import DatabaseError
from tidb_jina.store import VectorTable
from tidb_jina.store import _snapshot_file as sf

DIM, N = 16, 300


def _vectors(n: int = N, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)


def _open(url: str) -> VectorTable:
    return VectorTable(url, table_name="t", snapshot_file=True)


def _built(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    table = _open(url)
    table.upsert(_vectors(), ids=[f"r{i}" for i in range(N)])
    table.search(_vectors(1)[0], k=1)
    table._backend.cache.file.wait()
    table.close()
    assert (tmp_path / "g.db.t.vectors").exists()
    return url


def _mapped_and_right(url: str) -> bool:
    """Whether a reopen maps the file; asserts its results are the rows' either way."""
    probe = _vectors(1, seed=9)[0]
    mapped, streamed = _open(url), VectorTable(url, table_name="t")
    try:
        got = [(h.id, h.distance) for h in mapped.search(probe, k=N)]
        assert got == [(h.id, h.distance) for h in streamed.search(probe, k=N)]
        return bool(mapped._backend.cache.file.used)
    finally:
        mapped.close()
        streamed.close()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Connection.blobopen is 3.11+")
def test_a_blob_handle_cannot_write_the_vectors_behind_the_triggers(tmp_path):
    url = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "g.db")
    rowid = db.execute("SELECT rowid FROM t WHERE id = 'r3'").fetchone()[0]
    with pytest.raises(sqlite3.OperationalError, match="indexed"):
        db.blobopen("t", "embedding", rowid)  # writable: refused
    with db.blobopen("t", "embedding", rowid, readonly=True) as blob:  # reading: fine
        assert len(blob.read()) == 4 * DIM
    db.close()
    assert _mapped_and_right(url)  # nothing changed: still the valid file


def test_guard_index_removed_means_no_trust(tmp_path):
    url = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "g.db")
    db.execute('DROP INDEX "t__snap_nb"')
    db.commit()
    db.close()
    assert not _mapped_and_right(url)  # refused (and a new file written, guard repaired)
    assert _mapped_and_right(url)
    db = sqlite3.connect(tmp_path / "g.db")
    found = db.execute("SELECT sql FROM sqlite_master WHERE name = 't__snap_nb'").fetchone()
    assert found == (sf.trigger_sql("t")["t__snap_nb"],)
    db.close()


def test_drop_during_a_save_does_not_wait_for_it(tmp_path, monkeypatch, caplog):
    url = _built(tmp_path)
    (tmp_path / "g.db.t.vectors").unlink()  # the next open loads the rows and saves
    gate = threading.Event()
    real_write = sf._write_arrays

    def gated_write(*args, **kwargs):
        gate.wait(10)  # until drop() holds SQLite's write lock
        return real_write(*args, **kwargs)

    monkeypatch.setattr(sf, "_write_arrays", gated_write)
    table = _open(url)
    file = table._backend.cache.file
    real_forget = file.forget

    def forget_inside_drop(conn):
        gate.set()  # the save goes on now, and meets drop's lock
        time.sleep(0.2)
        real_forget(conn)

    monkeypatch.setattr(file, "forget", forget_inside_drop)
    table.search(_vectors(1)[0], k=1)
    assert file._thread is not None and file._thread.is_alive()
    caplog.set_level(logging.DEBUG, logger=sf.__name__)
    started = time.monotonic()
    table.drop()
    took = time.monotonic() - started
    assert took < sf.BUSY_SECONDS, took  # the save gave up instead of waiting 2 s
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not file._thread.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir() if ".vectors" in p.name) == []
    assert not table.exists()
    table.close()


async def test_aclose_writes_the_file_off_the_event_loop(tmp_path, monkeypatch):
    """``aclose()`` may write the file (our own writes left it behind): the loop keeps
    running meanwhile, and the file is written and valid afterwards."""
    url = _built(tmp_path)
    table = _open(url)
    await table.aio.search(_vectors(1)[0], k=1)  # maps the file
    await table.aio.upsert(_vectors(1, seed=4), ids=["new"])  # now the file is behind
    real_save = sf.SnapshotFile.save

    def slow_save(self, cache, snap):
        time.sleep(0.6)  # as a big matrix's write would take
        return real_save(self, cache, snap)

    monkeypatch.setattr(sf.SnapshotFile, "save", slow_save)
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    await table.aclose()
    await asyncio.sleep(0.05)  # one more tick: a blocked loop shows as one long gap
    ticker.cancel()
    gaps = np.diff(ticks)
    assert gaps.max() < 0.4, gaps.max()  # the loop was never blocked by the save
    monkeypatch.setattr(sf.SnapshotFile, "save", real_save)
    assert _mapped_and_right(url)  # the file written at close holds the new row too


def test_a_commit_while_the_arrays_are_written_is_never_saved_as_fresh(tmp_path, monkeypatch):
    """The arrays are written with no lock held: a foreign commit landing then must make
    the save give up (checked again under the write lock), not label old arrays with a
    new token."""
    url = _built(tmp_path)
    (tmp_path / "g.db.t.vectors").unlink()
    real_write = sf._write_arrays

    def write_then_foreign_commit(*args, **kwargs):
        rows = real_write(*args, **kwargs)
        db = sqlite3.connect(tmp_path / "g.db")
        db.execute(
            "INSERT INTO t (id, embedding, meta) VALUES ('late', ?, '{}')",
            (np.full(DIM, 7, "<f4").tobytes(),),
        )
        db.commit()
        db.close()
        return rows

    monkeypatch.setattr(sf, "_write_arrays", write_then_foreign_commit)
    table = _open(url)
    table.search(_vectors(1)[0], k=1)
    file = table._backend.cache.file
    file.wait()
    assert file.saved is None  # gave up
    table.close()
    monkeypatch.setattr(sf, "_write_arrays", real_write)
    assert not (tmp_path / "g.db.t.vectors").exists()
    _mapped_and_right(url)  # the rows, with 'late'; then a good file
    reopened = _open(url)
    assert reopened.search(np.ones(DIM, np.float32), k=1)[0].id == "late"
    assert reopened._backend.cache.file.used
    reopened.close()


def test_a_missing_trigger_is_refused_even_with_the_cookie_set_back(tmp_path):
    """Our trigger dropped, a vector changed (nothing marks the file stale) and the
    schema cookie set back: the trigger check still refuses the file."""
    url = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    cookie = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute('DROP TRIGGER "t__snap_au"')
    db.execute("UPDATE t SET embedding = ? WHERE id = 'r5'", (np.ones(DIM, "<f4").tobytes(),))
    db.execute(f"PRAGMA schema_version = {cookie}")
    db.close()
    assert not _mapped_and_right(url)


@pytest.mark.skipif(sys.platform != "linux", reason="MADV_POPULATE_READ is Linux's")
def test_a_kernel_without_populate_read_still_maps_the_file(tmp_path, monkeypatch):
    """An advice the kernel refuses (older kernels: EINVAL for MADV_POPULATE_READ) only
    loses the prefetch: the file is mapped and the pages are read as they are touched."""
    url = _built(tmp_path)
    monkeypatch.setattr(sf, "_MADV_POPULATE_READ", 9999)  # EINVAL on every kernel
    assert _mapped_and_right(url)


ONE = np.full(DIM, 5, "<f4").tobytes()


def _rename_ours(db: sqlite3.Connection, folder: Path) -> None:
    """Our table renamed away, a copy in another rowid order under its name, written."""
    db.execute("ALTER TABLE t RENAME TO t_old")
    ddl = db.execute("SELECT sql FROM sqlite_master WHERE name = 't_old'").fetchone()[0]
    db.execute(ddl.replace('"t_old"', "t").replace("t_old", "t", 1))
    db.execute("INSERT INTO t SELECT * FROM t_old ORDER BY id DESC")
    db.execute("UPDATE t SET embedding = ? WHERE id = 'r2'", (ONE,))
    db.execute("DROP TABLE t_old")


def _vacuum_into_restored(db: sqlite3.Connection, folder: Path) -> None:
    """A ``VACUUM INTO`` copy of the saved state (same token; rowids may be renumbered:
    the rows deleted before the save left gaps) moved over the database."""
    db.close()
    table = _open(f"sqlite:///{folder / 'g.db'}")
    table.delete(ids=[f"r{i}" for i in range(0, N, 3)])
    table.search(_vectors(1)[0], k=1)
    table.close()  # the file saved again, with the gaps
    db = sqlite3.connect(folder / "g.db", isolation_level=None)
    db.execute("VACUUM INTO ?", (str(folder / "copy.db"),))
    db.close()
    (folder / "copy.db").replace(folder / "g.db")


ATTACKS = {
    "upsert": lambda db, folder: db.execute(
        "INSERT INTO t (id, embedding, meta) VALUES ('r1', ?, '{}') "
        "ON CONFLICT(id) DO UPDATE SET embedding = excluded.embedding",
        (ONE,),
    ),
    "update-no-change": lambda db, folder: db.execute("UPDATE t SET id = id WHERE id = 'r1'"),
    "replace-recursive": lambda db, folder: (
        db.execute("PRAGMA recursive_triggers = ON"),
        db.execute("REPLACE INTO t (id, embedding, meta) VALUES ('r7', ?, '{}')", (ONE,)),
    ),
    "rename-ours": _rename_ours,
    "rename-token-table": lambda db, folder: (
        db.execute(f"ALTER TABLE {sf.STATE_TABLE} RENAME TO elsewhere"),
        db.execute("UPDATE t SET embedding = ? WHERE id = 'r2'", (ONE,)),
    ),
    "vacuum-into-restored": _vacuum_into_restored,
    "attach": lambda db, folder: (
        db.execute("ATTACH ? AS aux", (str(folder / "g.db"),)),
        db.execute("UPDATE aux.t SET embedding = ? WHERE id = 'r4'", (ONE,)),
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_sql_from_outside_never_leaves_an_accepted_stale_file(tmp_path, attack):
    url = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    ATTACKS[attack](db, tmp_path)
    db.close()
    assert not _mapped_and_right(url)  # refused, and the rows' results
    assert _mapped_and_right(url)  # the file written again is good


def test_a_rolled_back_savepoint_leaves_the_file_valid(tmp_path):
    url = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    db.execute("BEGIN")
    db.execute("SAVEPOINT s")
    db.execute("UPDATE t SET embedding = ? WHERE id = 'r3'", (ONE,))
    db.execute("ROLLBACK TO s")
    db.execute("RELEASE s")
    db.execute("COMMIT")
    db.close()
    assert _mapped_and_right(url)


def test_a_mapped_file_deleted_or_replaced_keeps_answering(tmp_path):
    """The map holds the file's inode: deleting the file, or another file renamed over
    its name, changes nothing for the table that mapped it (and nothing is rewritten
    into a map: it is read-only)."""
    url = _built(tmp_path)
    probe = _vectors(1, seed=9)[0]
    table, reference = _open(url), VectorTable(url, table_name="t")
    before = [(h.id, h.distance) for h in table.search(probe, k=20)]
    assert table._backend.cache.file.used
    path = tmp_path / "g.db.t.vectors"
    path.unlink()
    assert [(h.id, h.distance) for h in table.search(probe, k=20)] == before
    path.write_bytes(b"\xff" * 4096 * 4)  # a new inode under the name
    assert [(h.id, h.distance) for h in table.search(probe, k=20)] == before
    assert before == [(h.id, h.distance) for h in reference.search(probe, k=20)]
    with pytest.raises(ValueError, match="read-only"):
        table._backend.cache.snapshot.matrix[0, 0] = 1.0
    table.upsert(_vectors(1, seed=4), ids=["r0"])  # own write: copied out of the map
    got = [(h.id, h.distance) for h in table.search(probe, k=20)]
    assert got == [(h.id, h.distance) for h in reference.search(probe, k=20)]
    table.close()
    reference.close()


def test_token_table_dropped_by_hand_gives_a_clear_error_and_a_search_repairs(tmp_path):
    """Our triggers name the token table: dropping it by hand makes writes fail (SQLite
    compiles the triggers with each write). The error says what to do, and doing it
    works. (SQLite keeps failing on a connection that cached the schema without the
    table, even once it exists again: hence a new table object.)"""
    url = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "g.db")
    db.execute(f"DROP TABLE {sf.STATE_TABLE}")
    db.commit()
    db.close()
    table = _open(url)
    with pytest.raises(DatabaseError, match="open the table again with snapshot_file=True"):
        table.upsert(_vectors(1, seed=4), ids=["new"])
    table.close()
    table = _open(url)
    assert table.search(_vectors(1)[0], k=1)  # the rows (no token: no trust), then a save
    table._backend.cache.file.wait()
    table.close()
    table = _open(url)
    table.upsert(_vectors(1, seed=4), ids=["new"])  # the token table is back
    assert table.get(ids=["new"])[0].id == "new"
    table.close()  # (it searched nothing: no file written at close)
    assert not _mapped_and_right(url)  # the write made the file stale: the rows
    assert _mapped_and_right(url)
