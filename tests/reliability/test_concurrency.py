"""Issue 9.3: concurrent writers and readers on one embedded store.

Every write is a whole batch of ``B`` rows sharing a ``batch`` tag and a ``v`` (version) in
their metadata: an add, a re-upsert of the batch with the next version, or a delete of the
batch. So at every committed state each batch has 0 or ``B`` rows, all of one version,
and the table holds a multiple of ``B`` rows. Readers check exactly that while the writers
run; at the end the table must equal what the writers' own logs say.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _rel_worker import DIM as WORKER_DIM
from _rel_worker import row_id, row_meta, row_vector

from tidb_jina.store import VectorTable, connect

pytestmark = pytest.mark.slow  # load tests: threads, tasks, processes
B = 12  # rows per batch
DIM = 8
OWNERS, READERS = 6, 2  # 8 threads
OPS_PER_OWNER = 40


def batch_rows(tag: str, version: int) -> dict[str, Any]:
    seed = sum(map(ord, tag)) * 31 + version
    vectors = np.random.default_rng(seed).normal(size=(B, DIM)).astype(np.float32)
    return {
        "embeddings": vectors,
        "ids": [f"{tag}-{j:02d}" for j in range(B)],
        "documents": [f"{tag} row {j} v{version}" for j in range(B)],
        "metadatas": [{"batch": tag, "v": version, "j": j} for j in range(B)],
    }


class Invariants:
    """What any reader must see at any moment; records every violation it finds."""

    def __init__(self) -> None:
        self.tags: list[str] = []
        self.lock = threading.Lock()
        self.violations: list[str] = []
        self.checks = 0

    def known_tag(self, rng: random.Random) -> str | None:
        with self.lock:
            return rng.choice(self.tags) if self.tags else None

    def check_batch(self, what: str, rows: list[Any]) -> None:
        versions = {r.metadata["v"] for r in rows}
        with self.lock:
            self.checks += 1
            if len(rows) not in (0, B) or len(versions) > 1:
                self.violations.append(f"{what}: {len(rows)} rows, versions {sorted(versions)}")

    def check_total(self, count: int) -> None:
        if count % B:
            with self.lock:
                self.violations.append(f"count() = {count}: not whole batches")


def read_once(table: VectorTable, inv: Invariants, rng: random.Random) -> None:
    tag = inv.known_tag(rng)
    if tag is None:
        return
    flt = {"batch": tag}
    n = table.count(flt)
    if n not in (0, B):
        inv.check_batch(f"count({tag})", [None] * n)  # type: ignore[list-item]
    inv.check_batch(f"get({tag})", table.get(filter=flt))
    query = np.ones(DIM, dtype=np.float32)
    inv.check_batch(f"search({tag})", table.search(query, k=B + 5, filter=flt))
    mmr = table.max_marginal_relevance_search(query, k=2, fetch_k=B + 5, filter=flt)
    if len(mmr) not in (0, 2):
        with inv.lock:
            inv.violations.append(f"mmr({tag}) saw {len(mmr)} rows")
    inv.check_total(table.count())


class Owner:
    """A writer that owns its tags: its log says exactly what the table must hold for them."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self.rng = random.Random(seed)
        self.state: dict[str, int | None] = {}  # tag -> version, None when deleted
        self.created = 0

    def step(self, table: VectorTable, inv: Invariants) -> tuple[str, dict[str, Any] | str]:
        """Pick the next operation; returns (kind, payload) and records the outcome."""
        live = [t for t, v in self.state.items() if v is not None]
        roll = self.rng.random()
        if not live or roll < 0.45:
            tag = f"{self.name}b{self.created}"
            self.created += 1
            self.state[tag] = 0
            with inv.lock:
                inv.tags.append(tag)
            return "upsert", batch_rows(tag, 0)
        tag = self.rng.choice(live)
        if roll < 0.8:
            self.state[tag] = version = self.state[tag] + 1  # type: ignore[operator]
            return "upsert", batch_rows(tag, version)
        self.state[tag] = None
        return "delete", tag


def run_step(table: VectorTable, kind: str, payload: Any) -> None:
    if kind == "upsert":
        table.upsert(
            payload["embeddings"],
            ids=payload["ids"],
            documents=payload["documents"],
            metadatas=payload["metadatas"],
        )
    else:
        assert table.delete(filter={"batch": payload}) == B


def check_final(table: VectorTable, owners: list[Owner]) -> None:
    expected: dict[str, int] = {}
    for owner in owners:
        expected.update({t: v for t, v in owner.state.items() if v is not None})
    records = table.get()
    assert len(records) == len({r.id for r in records}) == B * len(expected) == table.count()
    by_tag: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        by_tag[r.metadata["batch"]].append(r)
    assert set(by_tag) == set(expected)
    for tag, version in expected.items():
        want = batch_rows(tag, version)
        got = sorted(by_tag[tag], key=lambda r: r.id)
        assert [r.id for r in got] == want["ids"]
        assert [r.document for r in got] == want["documents"]
        assert [r.metadata for r in got] == want["metadatas"]


@pytest.fixture(params=["file", "memory"])
def shared_table(request, db_url):
    url = db_url if request.param == "file" else "sqlite://"
    engine = connect(url)
    table = VectorTable(engine, table_name="shared", dimension=DIM)
    table.create()
    yield table
    engine.dispose()


def test_eight_threads_add_upsert_delete_and_search_without_loss_or_torn_batches(shared_table):
    inv = Invariants()
    owners = [Owner(f"w{i}", seed=i) for i in range(OWNERS)]
    errors: list[BaseException] = []
    writers_done = threading.Event()
    start = threading.Barrier(OWNERS + READERS)

    def owner_thread(owner: Owner) -> None:
        try:
            start.wait()
            for _ in range(OPS_PER_OWNER):
                run_step(shared_table, *owner.step(shared_table, inv))
                read_once(shared_table, inv, owner.rng)
        except BaseException as exc:
            errors.append(exc)

    def reader_thread(seed: int) -> None:
        rng = random.Random(100 + seed)
        try:
            start.wait()
            while not writers_done.is_set():
                read_once(shared_table, inv, rng)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=owner_thread, args=(o,)) for o in owners]
    readers = [threading.Thread(target=reader_thread, args=(i,)) for i in range(READERS)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(timeout=120)
    writers_done.set()
    for t in readers:
        t.join(timeout=30)
    assert not errors, errors[:3]
    assert not inv.violations, inv.violations[:5]
    assert inv.checks > OWNERS * OPS_PER_OWNER
    check_final(shared_table, owners)


async def test_async_tasks_add_upsert_delete_and_search_without_loss_or_torn_batches(db_url):
    table = VectorTable(db_url, table_name="shared_async", dimension=DIM)
    table.create()
    assert table.aio.native  # aiosqlite through the greenlet bridge, not a thread
    inv = Invariants()
    owners = [Owner(f"a{i}", seed=50 + i) for i in range(OWNERS)]
    writers_done = asyncio.Event()

    async def aread_once(rng: random.Random) -> None:
        tag = inv.known_tag(rng)
        if tag is None:
            return
        flt = {"batch": tag}
        n = await table.aio.count(flt)
        inv.check_batch(f"count({tag})", [None] * n if n not in (0, B) else [])  # type: ignore[list-item]
        inv.check_batch(f"get({tag})", await table.aio.get(filter=flt))
        query = np.ones(DIM, dtype=np.float32)
        inv.check_batch(f"search({tag})", await table.aio.search(query, k=B + 5, filter=flt))
        inv.check_total(await table.aio.count())

    async def owner_task(owner: Owner) -> None:
        for _ in range(OPS_PER_OWNER // 2):
            kind, payload = owner.step(table, inv)
            if kind == "upsert":
                await table.aio.upsert(
                    payload["embeddings"],
                    ids=payload["ids"],
                    documents=payload["documents"],
                    metadatas=payload["metadatas"],
                )
            else:
                assert await table.aio.delete(filter={"batch": payload}) == B
            await aread_once(owner.rng)

    async def reader_task(seed: int) -> None:
        rng = random.Random(200 + seed)
        while not writers_done.is_set():
            await aread_once(rng)
            await asyncio.sleep(0)

    readers = [asyncio.ensure_future(reader_task(i)) for i in range(READERS)]
    # asyncio.gather, not TaskGroup: the package supports Python 3.10.
    await asyncio.gather(*(owner_task(o) for o in owners))
    writers_done.set()
    await asyncio.gather(*readers)
    await table.aio.dispose()
    assert not inv.violations, inv.violations[:5]
    check_final(table, owners)
    table.engine.dispose()


# --- two processes, one file -------------------------------------------------------------

WORKER = Path(__file__).with_name("_rel_worker.py")
PROC_BATCH = 200


def test_two_processes_writing_one_file_both_succeed_and_the_file_stays_whole(db_path):
    """p1 writes rows 0..20k, p2 rows 10k..30k (the middle third overlaps), concurrently."""
    table_name = "two_procs"
    ranges = {"p1": (0, 20_000), "p2": (10_000, 30_000)}
    procs = {
        tag: subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                str(db_path),
                table_name,
                str(a),
                str(b),
                str(PROC_BATCH),
                tag,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag, (a, b) in ranges.items()
    }
    # Built before the writers create the table: it must see the table appear.
    reader = VectorTable(f"sqlite:///{db_path}", table_name=table_name)
    polls = 0
    try:
        while any(p.poll() is None for p in procs.values()) or polls == 0:
            polls += 1
            # Each writer's batch is one transaction, so a reader sees whole blocks.
            assert_whole_blocks(reader)
            time.sleep(0.01)
        results = {tag: p.communicate(timeout=60) for tag, p in procs.items()}
        for tag, p in procs.items():
            _out, err = results[tag]
            # Both succeed (WAL + busy timeout); the only acceptable failure is a clear error.
            assert p.returncode == 0 or "DatabaseError" in err, err
        assert all(p.returncode == 0 for p in procs.values()), results
        with reader.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        records = reader.get(include_embeddings=True)
        assert [r.id for r in records] == [row_id(i) for i in range(30_000)]
        for i, r in enumerate(records):
            assert r.metadata["i"] == i and r.metadata == row_meta(i, r.metadata["tag"])
            assert r.metadata["tag"] in {tag for tag, (a, b) in ranges.items() if a <= i < b}
        np.testing.assert_array_equal(
            np.stack([r.embedding for r in records]),
            np.stack([row_vector(i) for i in range(30_000)]),
        )
        assert records[0].embedding.shape == (WORKER_DIM,)
        assert_whole_blocks(reader)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
        reader.engine.dispose()
    assert polls >= 2  # the reader looked while the writers were running


def assert_whole_blocks(reader: VectorTable) -> None:
    """Every aligned block of PROC_BATCH ids is absent or complete, and from one writer."""
    blocks: dict[int, list[str]] = defaultdict(list)
    for r in reader.get():
        blocks[r.metadata["i"] // PROC_BATCH].append(r.metadata["tag"])
    for block, tags in blocks.items():
        assert len(tags) == PROC_BATCH and len(set(tags)) == 1, (block, len(tags), set(tags))


def test_a_table_created_by_another_writer_becomes_visible(db_url):
    early = VectorTable(db_url, table_name="late")
    assert early.count() == 0  # looked before the table existed
    other = VectorTable(db_url, table_name="late")
    other.upsert([[1.0, 2.0]], ids=["x"], documents=["hello"])
    try:
        assert early.get(["x"])[0].document == "hello"
        assert early.count() == 1
        assert early.delete(["x"]) == 1  # a delete must not silently do nothing
    finally:
        early.engine.dispose()
        other.engine.dispose()
