"""Dead slots of the snapshot buffer take new rows once no held snapshot sees them
alive (``tidb_jina.store._slots``), on a real embedded table.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

from tidb_jina.store import VectorTable
from tidb_jina.store._embedded import RECENT_SNAPSHOTS
from tidb_jina.store._slots import Slots

D = 8


def _table(tmp_path, metric="cosine", n=200, seed=0, metadatas=None):
    table = VectorTable(f"sqlite:///{tmp_path / 's.db'}", table_name="s", metric=metric)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, D)).astype(np.float32)
    table.upsert(vectors, ids=[f"r{i}" for i in range(n)], metadatas=metadatas)
    table.search(vectors[0], k=1)  # the snapshot is loaded
    return table, rng, vectors


def _cache(table):
    return table._backend.cache


def _brute(metric, state, q, k):
    keys = list(state)
    m = np.stack([state[i] for i in keys]).astype(np.float64)
    q = q.astype(np.float64)
    if metric == "cosine":
        d = 1 - (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    else:
        d = np.linalg.norm(m - q, axis=1)
    return [keys[j] for j in np.argsort(d, kind="stable")[:k]]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_updates_reuse_dead_slots_once_no_snapshot_sees_them(tmp_path, metric):
    table, rng, vectors = _table(tmp_path, metric)
    cache = _cache(table)
    state = {f"r{i}": vectors[i] for i in range(200)}
    pinned = cache.snapshot  # a reader holding the loaded state
    pinned_rows = pinned.matrix.copy()
    for _ in range(RECENT_SNAPSHOTS + 4):
        ids = [f"r{int(i)}" for i in rng.choice(200, 10, replace=False)]
        vecs = rng.normal(size=(10, D)).astype(np.float32)
        table.upsert(vecs, ids=ids)
        state.update(zip(ids, vecs, strict=True))
    grown = cache.snapshot.size
    assert grown == 200 + 10 * (RECENT_SNAPSHOTS + 4)  # every version appended
    # the pinned snapshot's rows were never written over
    assert np.array_equal(pinned.matrix, pinned_rows)
    del pinned
    gc.collect()
    for _ in range(RECENT_SNAPSHOTS + 4):
        ids = [f"r{int(i)}" for i in rng.choice(200, 10, replace=False)]
        vecs = rng.normal(size=(10, D)).astype(np.float32)
        table.upsert(vecs, ids=ids)
        state.update(zip(ids, vecs, strict=True))
    after = cache.snapshot
    assert after.size < grown + 10 * (RECENT_SNAPSHOTS + 4)  # dead slots took rows
    assert int(after.alive.sum()) == 200
    for q in rng.normal(size=(10, D)).astype(np.float32):
        assert [h.id for h in table.search(q, k=7)] == _brute(metric, state, q, 7)
    for rid, vec in list(state.items())[:20]:  # each row's stored vector is the last one
        got = table.search(vec, k=1)[0]
        assert got.id == rid


def test_a_snapshot_held_by_a_reader_keeps_its_dead_slots(tmp_path):
    """Slots dead from a held snapshot's successor stay untouched until it is dropped,
    even after the cache's recent snapshots have moved on."""
    table, rng, _ = _table(tmp_path)
    cache = _cache(table)
    table.upsert(rng.normal(size=(5, D)).astype(np.float32), ids=[f"r{i}" for i in range(5)])
    held = cache.snapshot  # r0..r4's new versions are alive here
    live = np.flatnonzero(held.alive)
    rows = held.matrix[live].copy()
    for _ in range(3 * RECENT_SNAPSHOTS):
        table.upsert(rng.normal(size=(5, D)).astype(np.float32), ids=[f"r{i}" for i in range(5)])
    assert np.array_equal(held.matrix[live], rows)
    assert not set(live.tolist()) & set(cache.slots.free.tolist())
    buffer = held.matrix.base
    del held
    gc.collect()
    for _ in range(2 * RECENT_SNAPSHOTS):
        table.upsert(rng.normal(size=(5, D)).astype(np.float32), ids=[f"r{i}" for i in range(5)])
    assert cache.snapshot.matrix.base is buffer  # no compaction: the same buffer
    assert not np.array_equal(buffer[live], rows)  # released: its slots took new rows


def test_no_reuse_while_filter_columns_are_cached_and_filters_stay_right(tmp_path):
    table, rng, vectors = _table(tmp_path, metadatas=[{"g": i % 3} for i in range(200)])
    cache = _cache(table)
    table.search(vectors[0], k=3, filter={"g": 1})  # the column is in memory
    for _ in range(RECENT_SNAPSHOTS + 6):
        ids = [f"r{int(i)}" for i in rng.choice(200, 10, replace=False)]
        table.upsert(
            rng.normal(size=(10, D)).astype(np.float32),
            ids=ids,
            metadatas=[{"g": 2} for _ in ids],
        )
    assert cache.snapshot.size == 200 + 10 * (RECENT_SNAPSHOTS + 6)  # appended only
    hits = table.search(vectors[0], k=500, filter={"g": 2})
    assert all(h.metadata == {"g": 2} for h in hits)


def test_a_reused_slot_row_with_a_key_the_load_never_saw_is_found(tmp_path):
    """The load saw no metadata keys (``known`` says none); a reused slot inside the
    loaded rows then holds a row with key ``x``: the filter must find it."""
    table, rng, vectors = _table(tmp_path)
    cache = _cache(table)
    for step in range(RECENT_SNAPSHOTS + 6):
        ids = [f"r{10 * step + j}" for j in range(10)]
        table.upsert(
            rng.normal(size=(10, D)).astype(np.float32),
            ids=ids,
            metadatas=[{"x": step} for _ in ids],
        )
    last = RECENT_SNAPSHOTS + 5
    assert cache.snapshot.size < 200 + 10 * (RECENT_SNAPSHOTS + 6)  # reused
    hits = table.search(vectors[0], k=50, filter={"x": last})
    assert sorted(h.id for h in hits) == sorted(f"r{10 * last + j}" for j in range(10))


def test_deleted_slots_are_reused_and_deleted_rows_never_return(tmp_path):
    table, rng, vectors = _table(tmp_path)
    cache = _cache(table)
    gone = [f"r{i}" for i in range(0, 200, 2)]
    table.delete(ids=gone)
    state = {f"r{i}": vectors[i] for i in range(1, 200, 2)}
    for step in range(RECENT_SNAPSHOTS + 4):
        ids = [f"n{step}_{j}" for j in range(10)]
        vecs = rng.normal(size=(10, D)).astype(np.float32)
        table.upsert(vecs, ids=ids)
        state.update(zip(ids, vecs, strict=True))
    assert cache.snapshot.size < 200 + 10 * (RECENT_SNAPSHOTS + 4)
    for q in rng.normal(size=(10, D)).astype(np.float32):
        found = [h.id for h in table.search(q, k=9)]
        assert found == _brute("cosine", state, q, 9)
        assert not set(found) & set(gone)


def test_concurrent_readers_while_the_writer_reuses_slots(tmp_path):
    """8 readers search while this process updates rows (reusing slots all along); every
    answer is the brute-force answer of one state committed during the search."""
    n, k = 150, 5
    table, rng, vectors = _table(tmp_path, n=n)
    cache = _cache(table)
    state = {f"r{i}": vectors[i] for i in range(n)}
    states, plan = [dict(state)], []
    for _ in range(80):
        ids = [f"r{int(i)}" for i in rng.choice(n, 6, replace=False)]
        vecs = rng.normal(size=(6, D)).astype(np.float32)
        state.update(zip(ids, vecs, strict=True))
        plan.append((ids, vecs))
        states.append(dict(state))
    queries = rng.normal(size=(12, D)).astype(np.float32)
    answers = {}  # (state, query) -> brute-force ids, computed on demand

    def brute(s: int, qi: int) -> list[str]:
        if (s, qi) not in answers:
            answers[s, qi] = _brute("cosine", states[s], queries[qi], k)
        return answers[s, qi]

    started, finished = [0], [0]
    stop = threading.Event()
    bad: list[str] = []
    lock = threading.Lock()

    def reader(slot: int) -> None:
        i = slot
        while not stop.is_set():
            qi = i % len(queries)
            i += 1
            lo = finished[0]
            got = [h.id for h in table.search(queries[qi], k=k)]
            hi = started[0]
            with lock:
                if not any(got == brute(s, qi) for s in range(lo, hi + 1)):
                    bad.append(f"{got} in none of states {lo}..{hi}")

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for ids, vecs in plan:
        started[0] += 1
        table.upsert(vecs, ids=ids)
        finished[0] += 1
    stop.set()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert cache.snapshot.size < n + 6 * 80  # slots were reused meanwhile


def test_the_map_falls_back_to_the_sorted_index_for_sparse_rowids(tmp_path):
    """A row another tool gave a huge rowid: the dense map is not built, updates still
    replace the right row (sorted index)."""
    import sqlite3

    table, rng, vectors = _table(tmp_path)
    table.close()
    with sqlite3.connect(tmp_path / "s.db") as other:
        other.execute("UPDATE s SET rowid = 9000000000 WHERE id = 'r5'")
    table = VectorTable(f"sqlite:///{tmp_path / 's.db'}", table_name="s")
    table.search(vectors[0], k=1)
    cache = _cache(table)
    assert cache.slots.locate(cache.snapshot, np.array([1], dtype=np.int64)) is None
    new = rng.normal(size=D).astype(np.float32)
    table.upsert([new], ids=["r5"])
    hit = table.search(new, k=1)[0]
    assert hit.id == "r5" and hit.distance < 1e-5
    assert int(cache.snapshot.alive.sum()) == 200


def test_slots_unit_generations():
    """``take`` hands out a slot only once every snapshot older than its death is gone."""

    class Snap:
        def __init__(self, matrix):
            self.matrix = matrix

    buffer = np.zeros((10, 2), dtype=np.float32)
    slots = Slots()
    s0 = Snap(buffer[:4])
    slots.published(s0)
    slots.retire(np.array([1, 2]))  # dead from generation 1
    s1 = Snap(buffer[:5])
    slots.published(s1)
    assert slots.take(5).size == 0  # s0 still sees them alive
    del s0
    gc.collect()
    assert sorted(slots.take(1).tolist() + slots.take(5).tolist()) == [1, 2]
    slots.published(Snap(np.zeros((3, 2), dtype=np.float32)))  # another buffer: reset
    assert slots.take(5).size == 0 and slots.gen == 0


def test_writes_give_freed_memory_back_at_most_once_per_trim_period(tmp_path, monkeypatch):
    from tidb_jina.store import _incremental

    calls = []
    monkeypatch.setattr(_incremental, "release_free_memory", lambda: calls.append(1))
    monkeypatch.setattr(_incremental, "_trimmed_at", [0.0])
    table, rng, _ = _table(tmp_path)
    monkeypatch.setattr(_incremental, "TRIM_SECONDS", 3600.0)
    for i in range(3):
        table.upsert(rng.normal(size=(2, D)).astype(np.float32), ids=[f"t{i}", "r1"])
    assert len(calls) == 1  # the first write trims, the next ones are within the period
    monkeypatch.setattr(_incremental, "TRIM_SECONDS", 0.0)
    table.upsert(rng.normal(size=(1, D)).astype(np.float32), ids=["t9"])
    assert len(calls) == 2


@pytest.mark.parametrize("name", ["select", "Mixed_Case", "_x1"])
def test_own_upserts_find_their_rowids_under_any_table_name(tmp_path, name):
    """The rowids of an upsert are read with the table's name quoted by the dialect."""
    table = VectorTable(f"sqlite:///{tmp_path / 'n.db'}", table_name=name)
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(50, D)).astype(np.float32)
    table.upsert(vectors, ids=[f"r{i}" for i in range(50)])
    table.search(vectors[0], k=1)
    new = rng.normal(size=(2, D)).astype(np.float32)
    table.upsert(new, ids=["r3", "fresh"])
    snap = _cache(table).snapshot
    assert snap.token == _cache(table).watcher.token_now()  # applied, not reloaded later
    assert [table.search(v, k=1)[0].id for v in new] == ["r3", "fresh"]
