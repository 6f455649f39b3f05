"""Many connections opening one brand-new database file at the same moment.

The first connection to a new file switches it to WAL mode, which needs an exclusive
lock; SQLite answers a connection that holds a shared lock meanwhile "database is locked"
at once, without waiting (deadlock avoidance). Two processes creating one table lost
their write that way (``test_two_writers_creating_one_table_with_different_models`` was
flaky on a loaded machine).
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from tidb_jina.store import connect


def test_connections_opening_one_new_file_at_once_all_succeed(tmp_path):
    errors: list[BaseException] = []
    for attempt in range(25):
        url = f"sqlite:///{tmp_path / f'new{attempt}.db'}"
        engines = [connect(url) for _ in range(6)]
        barrier = threading.Barrier(len(engines))

        def open_one(engine: sa.Engine, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                with engine.connect() as conn:
                    mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
                    assert str(mode).lower() == "wal"
            except BaseException as exc:  # collected: the assertion below names it
                errors.append(exc)

        threads = [threading.Thread(target=open_one, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for engine in engines:
            engine.dispose()
    assert not errors, errors[:3]


def test_a_locked_file_says_so_not_server_advice(tmp_path, monkeypatch):
    """An embedded write that outwaits the busy timeout names the lock and what to do,
    not TiDB's "check that the server is reachable"."""
    import sqlite3

    import numpy as np
    import pytest

    from tidb_jina import DatabaseError
    from tidb_jina.store import VectorTable, _sqlite

    path = tmp_path / "locked.db"
    VectorTable(f"sqlite:///{path}", table_name="t").upsert([[1.0, 0.0]], ids=["a"])
    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT_MS", 50)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        table = VectorTable(f"sqlite:///{path}", table_name="t")
        with pytest.raises(DatabaseError) as caught:
            table.upsert(np.array([[0.0, 1.0]], dtype=np.float32), ids=["b"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = str(caught.value)
    assert "locked" in message and "held it locked" in message
    assert "server is reachable" not in message
    assert [r.id for r in table.get()] == ["a"]  # nothing half-written


def _rollback_file(path) -> None:
    """A table of ours in a file another tool has put back in rollback-journal mode."""
    import sqlite3

    from tidb_jina.store import VectorTable

    table = VectorTable(f"sqlite:///{path}", table_name="t")
    table.upsert([[1.0, 0.0], [0.0, 1.0]], ids=["a", "b"])
    table.close()
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    plain.close()


def test_a_read_only_uri_opens_and_searches(tmp_path):
    """``mode=ro`` cannot switch to WAL: the file is read in its own mode (it failed
    with 'attempt to write a readonly database' on every connection)."""
    from tidb_jina.store import VectorTable

    path = tmp_path / "ro.db"
    _rollback_file(path)
    table = VectorTable(f"sqlite:///file:{path}?mode=ro&uri=true", table_name="t")
    try:
        assert [h.id for h in table.search([1.0, 0.1], k=2)] == ["a", "b"]
    finally:
        table.close()


def test_a_file_another_tool_holds_open_in_rollback_mode(tmp_path, monkeypatch):
    """Another program reading the file (rollback journal, a read transaction open):
    each new connection gives up the WAL switch after ``WAL_SWITCH_SECONDS`` (not the
    30 s busy timeout, then 'database is locked'), works in the file's mode with full
    sync, and writes once the reader is done."""
    import sqlite3
    import time

    from tidb_jina.store import VectorTable, _sqlite

    path = tmp_path / "held.db"
    _rollback_file(path)
    monkeypatch.setattr(_sqlite, "WAL_SWITCH_SECONDS", 0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN")
    assert holder.execute("SELECT count(*) FROM t").fetchone()[0] == 2
    table = VectorTable(f"sqlite:///{path}", table_name="t")
    try:
        started = time.monotonic()
        assert [h.id for h in table.search([0.0, 1.0], k=1)] == ["b"]
        assert time.monotonic() - started < 10
        with table.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "delete"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
        holder.execute("COMMIT")
        table.upsert([[1.0, 1.0]], ids=["c"])
        assert table.count() == 3
    finally:
        holder.close()
        table.close()
