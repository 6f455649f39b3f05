"""The WAL-switch retry never stops the event loop (``_sqlite.pause``).

A new connection puts the file in WAL mode; while another connection holds the file's
lock (here a real ``sqlite3`` connection in a write transaction, rollback-journal mode)
SQLite answers "database is locked" at once, and the switch is tried again for up to
``WAL_SWITCH_SECONDS``. An async table's connections are set up on the event loop's
thread (aiosqlite through SQLAlchemy's greenlet bridge): a ``time.sleep`` there stopped
every other task for the whole wait. The loop now waits instead.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time

import numpy as np

from tidb_jina.store import VectorTable, _sqlite


def _rollback_file(path) -> None:
    table = VectorTable(f"sqlite:///{path}", table_name="t")
    table.upsert(np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32), ids=["a", "b"])
    table.close()
    plain = sqlite3.connect(path)
    assert plain.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    plain.close()


class _Sleeps:
    """``time`` for ``_sqlite``: records each ``sleep`` made while a loop runs there."""

    def __init__(self) -> None:
        self.on_loop = 0
        self.monotonic = time.monotonic

    def sleep(self, seconds: float) -> None:
        if asyncio._get_running_loop() is not None:
            self.on_loop += 1
        time.sleep(seconds)


def test_the_wal_switch_waits_without_stopping_the_event_loop(tmp_path, monkeypatch):
    path = tmp_path / "held.db"
    _rollback_file(path)
    monkeypatch.setattr(_sqlite, "WAL_SWITCH_SECONDS", 0.4)
    sleeps = _Sleeps()
    monkeypatch.setattr(_sqlite, "time", sleeps)
    pauses = []
    real_pause = _sqlite.pause

    def counted(seconds: float) -> None:
        pauses.append(seconds)
        real_pause(seconds)

    monkeypatch.setattr(_sqlite, "pause", counted)
    holder = sqlite3.connect(path, isolation_level=None)  # another program, writing
    holder.execute("BEGIN IMMEDIATE")
    table = VectorTable(f"sqlite:///{path}", table_name="t")

    async def main() -> tuple[list[str], int, float]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        hits = await table.aio.search([0.0, 1.0], k=1)
        waited = time.monotonic() - started
        done.set()
        await task
        await table.aclose()
        return [h.id for h in hits], ticks, waited

    try:
        ids, ticks, waited = asyncio.run(main())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert ids == ["b"]  # read in the file's own mode once the switch gave up
    assert waited >= 0.4  # the lock was really held: the switch retried, then gave up
    assert sleeps.on_loop == 0  # never a blocking sleep on the loop's thread
    assert ticks >= 20  # other tasks ran during the wait (0.4 s / 5 ms = 80 at best)
    assert len(pauses) > 10


def test_sync_connections_still_sleep(tmp_path, monkeypatch):
    """No event loop on the thread: the retry sleeps as before (and still gives up)."""
    path = tmp_path / "held.db"
    _rollback_file(path)
    monkeypatch.setattr(_sqlite, "WAL_SWITCH_SECONDS", 0.2)
    slept = []
    monkeypatch.setattr(_sqlite.time, "sleep", slept.append)  # the time module, in place
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    table = VectorTable(f"sqlite:///{path}", table_name="t")
    try:
        assert [h.id for h in table.search([1.0, 0.0], k=1)] == ["a"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        table.close()
    assert slept and set(slept) == {0.005}
