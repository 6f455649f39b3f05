"""Review of the coalescer's reused workspace (issue 18, fifth round).

Only one leader at a time writes the workspace, but ``release()`` (an invalidation, a
reload, ``close()``) runs on any thread at any moment; a product that fails must reach
every caller of its batch as an error; many threads at once must each get their own
query's distances on their own snapshot; and the kept workspace has a bound.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from _product_race import race

from tidb_jina.store import VectorTable, _coalesce


def _cache(tmp_path, metric="cosine", n=3000, d=16):
    table = VectorTable(f"sqlite:///{tmp_path / 'cr.db'}", table_name="cr", metric=metric)
    rng = np.random.default_rng(11)
    table.upsert(rng.normal(size=(n, d)).astype(np.float32), ids=[str(i) for i in range(n)])
    table.search(rng.normal(size=d).astype(np.float32), k=3)  # loads the snapshot
    return table, table._backend.cache, rng


def test_a_release_between_the_leaders_look_and_its_use_is_harmless(tmp_path):
    """``_space`` looked at ``self._workspace`` twice: a ``release()`` in between (another
    thread invalidating) made the batch fail with a raw ``TypeError`` for every caller."""
    table, cache, rng = _cache(tmp_path)
    coalescer = cache.coalescer
    snap = cache.snapshot

    class Releasing(np.ndarray):
        @property
        def size(self):  # the leader looks at the workspace: another thread drops it
            coalescer.release()
            return int(np.prod(self.shape))

    coalescer._workspace = np.zeros(snap.size * 2, dtype=np.float32).view(Releasing)
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    calls, got = race(cache, snap, snap, queries)
    assert calls == [(snap.size, 1), (snap.size, 2)]
    for name, q in zip(["leader", "old", "new"], queries, strict=True):
        np.testing.assert_allclose(got[name], cache.distances_to(snap, q), atol=1e-5)
    table.close()


def test_an_error_in_the_product_reaches_every_caller_and_the_next_batch_runs(tmp_path):
    table, cache, rng = _cache(tmp_path)
    snap = cache.snapshot
    real, gate, entered = cache._batch_distances, threading.Event(), threading.Event()

    def failing(key, queries, out=None):
        entered.set()
        assert gate.wait(10)
        raise MemoryError("no room for the product")

    cache._batch_distances = failing
    errors: dict[int, BaseException] = {}

    def run(slot: int) -> None:
        try:
            cache.distances(snap, rng.normal(size=16).astype(np.float32), None)
        except BaseException as exc:
            errors[slot] = exc

    threads = [threading.Thread(target=run, args=(s,)) for s in range(5)]
    threads[0].start()
    assert entered.wait(10)
    for t in threads[1:]:
        t.start()
    deadline = threading.Event()
    for _ in range(1000):  # the four others queue behind the failing leader
        if len(cache.coalescer._queue) == 4:
            break
        deadline.wait(0.01)
    gate.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a caller hangs after the product failed"
    assert sorted(errors) == list(range(5))
    assert all(isinstance(e, MemoryError) for e in errors.values())
    cache._batch_distances = real
    q = rng.normal(size=16).astype(np.float32)  # not stuck: the next search is scored
    np.testing.assert_allclose(
        cache.distances(snap, q, None), cache.distances_to(snap, q), atol=1e-5
    )
    assert not cache.coalescer._busy
    table.close()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_twelve_threads_each_get_their_own_query_on_their_own_snapshot(tmp_path, metric):
    """Twelve threads score distinct queries on two snapshots of one buffer (before and
    after a write of this process) while another thread keeps dropping the workspace:
    every answer is its own query's on its own snapshot, and batches did form."""
    table, cache, rng = _cache(tmp_path, metric)
    old = cache.snapshot
    ids = [str(i) for i in range(3000, 3040)]
    table.upsert(rng.normal(size=(len(ids), 16)).astype(np.float32), ids=ids)
    new = cache.snapshot
    assert new.matrix.base is old.matrix.base and new.size == old.size + len(ids)
    queries = rng.normal(size=(24, 16)).astype(np.float32)
    snaps = [old, new]
    expected = [[cache.distances_to(s, q) for q in queries] for s in snaps]
    batches, scored = cache.coalescer.batches, cache.coalescer.queries
    stop, bad, barrier = threading.Event(), [], threading.Barrier(13)

    def reader(slot: int) -> None:
        barrier.wait()
        for rep in range(30):
            i, s = (slot + rep) % len(queries), (slot + rep) % 2
            got = cache.distances(snaps[s], queries[i], None)
            if got.shape != expected[s][i].shape or not np.allclose(got, expected[s][i], atol=1e-4):
                bad.append((slot, rep, i, s))

    def releaser() -> None:
        barrier.wait()
        while not stop.is_set():
            cache.coalescer.release()
            stop.wait(0.0005)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(12)]
    dropper = threading.Thread(target=releaser)
    for t in [*threads, dropper]:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    dropper.join(10)
    assert not bad, bad[:5]
    assert cache.coalescer.queries - scored == 360
    assert cache.coalescer.batches - batches < 360  # some were scored together
    table.close()


def test_the_kept_workspace_is_bounded(tmp_path, monkeypatch):
    """A batch wider than ``WORKSPACE_QUERIES`` gets a product of its own: the kept
    workspace never grows past n x WORKSPACE_QUERIES floats."""
    monkeypatch.setattr(_coalesce, "WORKSPACE_QUERIES", 1)
    table, cache, rng = _cache(tmp_path)
    snap = cache.snapshot
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    calls, got = race(cache, snap, snap, queries)
    assert calls == [(snap.size, 1), (snap.size, 2)]
    workspace = cache.coalescer._workspace
    assert workspace is not None and workspace.size == snap.size  # the single query's
    for name, q in zip(["leader", "old", "new"], queries, strict=True):
        np.testing.assert_allclose(got[name], cache.distances_to(snap, q), atol=1e-5)
    table.close()


def test_a_reload_drops_the_workspace_sized_for_the_old_rows(tmp_path):
    table, cache, rng = _cache(tmp_path)
    snap = cache.snapshot
    race(cache, snap, snap, rng.normal(size=(3, 16)).astype(np.float32))
    assert cache.coalescer._workspace is not None
    import sqlite3

    with sqlite3.connect(tmp_path / "cr.db") as other:  # another connection's commit
        other.execute("DELETE FROM cr WHERE id = '7'")
    hits = table.search(rng.normal(size=16).astype(np.float32), k=3000)
    assert len(hits) == 2999 and "7" not in {h.id for h in hits}
    assert cache.snapshot is not snap  # reloaded
    assert cache.coalescer._workspace is None or cache.coalescer._workspace.size <= 2999
    table.close()


def test_the_watcher_is_never_mapped_even_where_sqlite_maps_by_default(tmp_path, monkeypatch):
    """A SQLite built with a nonzero ``SQLITE_DEFAULT_MMAP_SIZE`` (simulated: every new
    connection starts mapped) still gives the watcher no map: it sets
    ``PRAGMA mmap_size = 0`` itself when it connects."""
    import sqlite3

    from tidb_jina.store import _watch

    real = sqlite3.connect

    def mapped_by_default(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.execute("PRAGMA mmap_size = 268435456").fetchall()
        return conn

    monkeypatch.setattr(_watch.sqlite3, "connect", mapped_by_default)
    table, cache, rng = _cache(tmp_path)
    table.search(rng.normal(size=16).astype(np.float32), k=5)  # the fast path
    watcher = cache.watcher._conn
    assert watcher is not None
    assert watcher.execute("PRAGMA mmap_size").fetchone()[0] == 0
    table.close()


def test_a_waiter_interrupted_in_the_queue_hands_the_lead_on(tmp_path, monkeypatch):
    """A caller whose wait is interrupted (KeyboardInterrupt) stayed in the queue: picked
    to lead next, it never did, and every later search on the table hung."""
    table, cache, rng = _cache(tmp_path)
    snap = cache.snapshot
    real, gate, entered = cache._batch_distances, threading.Event(), threading.Event()

    def held(key, queries, out=None):
        entered.set()
        assert gate.wait(10)
        return real(key, queries, out)

    class Interrupted(threading.Event):
        def wait(self, timeout=None):
            if threading.current_thread().name == "victim":
                raise KeyboardInterrupt
            return super().wait(timeout)

    # the module's own name only (the threading module itself is left alone)
    monkeypatch.setattr(_coalesce, "threading", SimpleNamespace(Event=Interrupted))
    cache._batch_distances = held
    got: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            got[name] = cache.distances(snap, rng.normal(size=16).astype(np.float32), None)
        except BaseException as exc:
            got[name] = exc

    leader = threading.Thread(target=run, args=("leader",))
    leader.start()
    assert entered.wait(10)
    victim = threading.Thread(target=run, args=("victim",), name="victim")
    victim.start()
    victim.join(10)
    other = threading.Thread(target=run, args=("other",))
    other.start()
    for _ in range(1000):
        if len(cache.coalescer._queue) >= 1:
            break
        gate.wait(0.01)
    gate.set()
    for t in (leader, other):
        t.join(10)
        assert not t.is_alive(), "a search hangs behind an interrupted one"
    assert isinstance(got["victim"], KeyboardInterrupt)
    assert isinstance(got["leader"], np.ndarray) and isinstance(got["other"], np.ndarray)
    assert not cache.coalescer._busy
    table.close()
