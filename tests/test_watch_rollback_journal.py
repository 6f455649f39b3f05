"""Readers and another process's writer on a file in rollback-journal mode (issue 18).

In that mode a reader cannot start while a writer commits, and the writer waits for the
readers that hold the file's shared lock. A search's read transaction used to wait, with
that shared lock held, for the change watcher, whose connection was itself waiting (up to
its busy timeout, holding the watcher's lock) for the writer: a deadlock, broken only by
the timeout, and searches failed with "database is locked". Now the watcher waits
without its lock, and a read transaction never waits for a commit (it looks again after
it; ``ChangeWatcher.token(..., wait=False)``).
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from tidb_jina.store import VectorTable
from tidb_jina.store._watch import Busy

N, D = 300, 8


def _rollback_table(tmp_path) -> VectorTable:
    path = tmp_path / "r.db"
    table = VectorTable(f"sqlite:///{path}", table_name="w")
    table.upsert(
        np.random.default_rng(0).normal(size=(N, D)).astype(np.float32),
        ids=[f"r{i}" for i in range(N)],
        documents=["v0"] * N,
        metadatas=[{"v": 0, "g": i % 3} for i in range(N)],
    )
    table.close()
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    plain.close()
    # read-only: this table cannot switch the file to WAL (another process writes it)
    return VectorTable(f"sqlite:///file:{path}?mode=ro&uri=true", table_name="w")


def test_a_watcher_read_waits_for_a_commit_without_holding_its_lock(tmp_path):
    table = _rollback_table(tmp_path)
    table.search(np.ones(D, dtype=np.float32), k=1)  # the watcher exists
    watcher = table._backend.cache.watcher
    assert watcher._conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    holder = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a writer committing: no reader may start
    try:
        started = time.monotonic()
        with pytest.raises(Busy):
            watcher.token_now(wait=False)
        assert time.monotonic() - started < 0.5  # at once, not after a busy timeout
        got: list[object] = []
        waiter = threading.Thread(target=lambda: got.append(watcher.token_now()))
        waiter.start()
        time.sleep(0.1)
        assert waiter.is_alive()  # it waits for the writer...
        assert watcher._lock.acquire(timeout=0.5)  # ...without the watcher's lock
        watcher._lock.release()
        holder.execute("UPDATE w SET document = 'v1'")
    finally:
        holder.execute("COMMIT")
        holder.close()
    waiter.join(5)
    assert got and got[0] is not None
    table.close()


def test_readers_and_another_process_writing_never_fail_or_mix_states(tmp_path):
    table = _rollback_table(tmp_path)
    stop = time.monotonic() + 2.0
    failures: list[BaseException] = []
    mixed: list[set[str]] = []
    searches = [0]

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while time.monotonic() < stop:
            q = rng.normal(size=D).astype(np.float32)
            flt = {"g": 1} if rng.random() < 0.5 else None
            try:
                hits = table.search(q, k=int(rng.choice([5, 50])), filter=flt)
            except BaseException as exc:
                failures.append(exc)
                return
            docs = {h.document for h in hits}
            if docs != {f"v{h.metadata['v']}" for h in hits} or len(docs) != 1:
                mixed.append(docs)
            searches[0] += 1

    def writer() -> None:  # another process, say: one commit changes every row
        other = sqlite3.connect(tmp_path / "r.db", isolation_level=None, timeout=30)
        version = 0
        while time.monotonic() < stop:
            version += 1
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "UPDATE w SET document = ?, meta = json_set(meta, '$.v', ?)",
                (f"v{version}", version),
            )
            other.execute("COMMIT")
            time.sleep(0.01)
        other.close()

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert mixed == []
    assert searches[0] > 20
    table.close()


def test_a_commit_waiting_on_a_search_s_transaction_is_let_through(tmp_path):
    """Another process commits right after a search's read transaction took its
    snapshot: the commit waits for that transaction, so the search must not wait for
    the commit (it used to, for the watcher's whole busy timeout, then failed)."""
    import sqlalchemy as sa

    table = _rollback_table(tmp_path)
    table.search(np.ones(D, dtype=np.float32), k=1)  # the watcher exists
    table._backend.cache.busy_until = time.monotonic() + 60  # the general path
    committed: list[float] = []

    def commit() -> None:
        other = sqlite3.connect(tmp_path / "r.db", isolation_level=None, timeout=30)
        other.execute("BEGIN IMMEDIATE")
        other.execute("UPDATE w SET document = 'v1', meta = json_set(meta, '$.v', 1)")
        other.execute("COMMIT")  # waits for the search's shared lock
        committed.append(time.monotonic())
        other.close()

    writer = threading.Thread(target=commit)

    def after(conn, cursor, statement, *args) -> None:
        if statement == "PRAGMA schema_version" and not writer.is_alive() and not committed:
            writer.start()  # the search's snapshot is taken: now a commit begins
            time.sleep(0.3)  # it holds the file's pending lock, waiting for ours

    sa.event.listen(table.engine, "after_cursor_execute", after)
    started = time.monotonic()
    hits = table.search(np.ones(D, dtype=np.float32), k=5)
    took = time.monotonic() - started
    sa.event.remove(table.engine, "after_cursor_execute", after)
    writer.join(30)
    assert committed
    assert took < 2.5  # not the watcher's busy timeout (5 s)
    assert {h.document for h in hits} == {"v1"}  # looked again after the commit
    table.close()
