"""A KeyboardInterrupt at any step of a coalescer's leader (issue 18, seventh round).

The leader of a batch marked the coalescer busy, then took the queue in ``_lead``. An
interrupt between the two (after ``distances`` took the lead, before ``_lead`` took the
batch) left the coalescer busy with nobody to lead: every later search on the table
waited forever. An interrupt right after ``_lead`` took the batch, before its ``try``,
left the batch's other callers waiting forever.

The interrupt is raised deterministically by the coalescer's lock (``Interrupting``): on
entering or leaving the ``with self._lock`` of a named method, in a named thread, once.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import pytest

from tidb_jina.store import VectorTable

# (method whose ``with self._lock`` is interrupted, on entering or on leaving it)
POINTS = [("distances", "exit"), ("_lead", "enter"), ("_lead", "exit")]


class Interrupting:
    """A lock that raises KeyboardInterrupt once, in thread ``thread``, at one point."""

    def __init__(self, where: str, edge: str, thread: str) -> None:
        self._lock = threading.Lock()
        self.where, self.edge, self.thread = where, edge, thread
        self.fired = False

    def _maybe(self, edge: str) -> None:
        if self.fired or edge != self.edge or threading.current_thread().name != self.thread:
            return
        if sys._getframe(2).f_code.co_name != self.where:  # the caller of __enter__/__exit__
            return
        self.fired = True
        raise KeyboardInterrupt

    def __enter__(self) -> bool:
        self._maybe("enter")
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> bool:
        self._lock.__exit__(*exc)
        if exc[0] is None:
            self._maybe("exit")
        return False


@pytest.fixture
def cached(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 'ki.db'}", table_name="ki")
    rng = np.random.default_rng(5)
    table.upsert(rng.normal(size=(500, 8)).astype(np.float32), ids=[str(i) for i in range(500)])
    table.search(rng.normal(size=8).astype(np.float32), k=3)  # loads the snapshot
    yield table._backend.cache, rng
    table.close()


def _run(cache: Any, snap: Any, query: np.ndarray, got: dict[str, Any]) -> None:
    name = threading.current_thread().name
    try:
        got[name] = cache.distances(snap, query, None)
    except BaseException as exc:
        got[name] = exc


def _later_search_completes(cache: Any, snap: Any, rng: np.random.Generator) -> None:
    got: dict[str, Any] = {}
    q = rng.normal(size=8).astype(np.float32)
    later = threading.Thread(target=_run, args=(cache, snap, q, got), name="later", daemon=True)
    later.start()
    later.join(10)
    assert not later.is_alive(), "a later search hangs: the coalescer is stuck"
    np.testing.assert_allclose(got["later"], cache.distances_to(snap, q), atol=1e-5)
    assert not cache.coalescer._busy and not cache.coalescer._queue


@pytest.mark.parametrize(("where", "edge"), POINTS)
def test_a_lone_leader_interrupted_leaves_the_coalescer_usable(cached, where, edge):
    cache, rng = cached
    snap = cache.snapshot
    lock = Interrupting(where, edge, "victim")
    cache.coalescer._lock = lock
    got: dict[str, Any] = {}
    victim = threading.Thread(
        target=_run,
        args=(cache, snap, rng.normal(size=8).astype(np.float32), got),
        name="victim",
        daemon=True,
    )
    victim.start()
    victim.join(10)
    assert lock.fired and isinstance(got["victim"], KeyboardInterrupt)
    _later_search_completes(cache, snap, rng)


@pytest.mark.parametrize(("where", "edge"), POINTS)
def test_a_leader_woken_from_the_queue_and_interrupted_hands_the_lead_on(cached, where, edge):
    """A leader holds its product; the victim then another caller queue; the victim is
    woken to lead the queue and interrupted at the point: the other caller gets its
    distances (or, interrupted after the batch was taken, a clear error), nobody hangs,
    and later searches complete."""
    cache, rng = cached
    snap = cache.snapshot
    real, gate, entered = cache._batch_distances, threading.Event(), threading.Event()

    def held(key, queries, out=None):
        if threading.current_thread().name == "leader":
            entered.set()
            assert gate.wait(10)
        return real(key, queries, out)

    cache._batch_distances = held
    lock = Interrupting(where, edge, "victim")
    cache.coalescer._lock = lock
    got: dict[str, Any] = {}
    queries = {
        name: rng.normal(size=8).astype(np.float32) for name in ("leader", "victim", "other")
    }

    def start(name: str) -> threading.Thread:
        thread = threading.Thread(
            target=_run, args=(cache, snap, queries[name], got), name=name, daemon=True
        )
        thread.start()
        return thread

    threads = [start("leader")]
    assert entered.wait(10)
    threads.append(start("victim"))
    if (where, edge) != ("distances", "exit"):  # else the victim leaves the queue at once
        for _ in range(1000):
            if len(cache.coalescer._queue) == 1:
                break
            gate.wait(0.01)
        assert len(cache.coalescer._queue) == 1
    threads.append(start("other"))
    for _ in range(1000):
        if cache.coalescer._queue and cache.coalescer._queue[-1].query is queries["other"]:
            break
        gate.wait(0.01)
    gate.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive(), f"{thread.name} hangs behind an interrupted leader"
    assert lock.fired and isinstance(got["victim"], KeyboardInterrupt)
    for name in ("leader", "other"):
        if (where, edge, name) == ("_lead", "exit", "other"):  # in the batch the victim took
            assert isinstance(got[name], RuntimeError) and "run it again" in str(got[name])
        else:
            np.testing.assert_allclose(
                got[name], cache.distances_to(snap, queries[name]), atol=1e-5
            )
    del cache._batch_distances
    _later_search_completes(cache, snap, rng)


def test_an_interrupt_while_scoring_stays_in_the_leaders_thread():
    """The leader's KeyboardInterrupt during the product was handed to every caller of
    the batch as their error: other threads (a web server's workers) raised the
    interrupt meant for the main thread. They get "interrupted; run it again"; the
    leader gets its KeyboardInterrupt; the coalescer is idle after."""
    from tidb_jina.store._coalesce import Coalescer

    coalescer = Coalescer()
    queued = threading.Event()
    calls = {"n": 0}

    def scorer(key: Any, queries: np.ndarray, out: Any) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:  # the first caller alone: the others queue meanwhile
            assert queued.wait(10)
        elif calls["n"] == 2:  # their batch, led by the first of them: interrupted
            assert queries.shape[0] == 3
            raise KeyboardInterrupt
        return np.zeros((4, queries.shape[0]), dtype=np.float32)

    def call(got: dict[str, Any]) -> None:
        name = threading.current_thread().name
        try:
            got[name] = coalescer.distances("k", np.ones(2, dtype=np.float32), scorer)
        except BaseException as exc:
            got[name] = exc

    got: dict[str, Any] = {}
    leader = threading.Thread(target=call, args=(got,), name="leader", daemon=True)
    leader.start()
    while not coalescer._busy:
        pass
    waiters = [
        threading.Thread(target=call, args=(got,), name=f"w{i}", daemon=True) for i in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    while len(coalescer._queue) < 3:
        pass
    queued.set()
    for thread in (leader, *waiters):
        thread.join(10)
        assert not thread.is_alive()
    assert got["leader"].shape == (4,)
    errors = [got[f"w{i}"] for i in range(3)]
    assert sum(isinstance(e, KeyboardInterrupt) for e in errors) == 1, errors  # the leader
    others = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
    assert all(isinstance(e, RuntimeError) and "run it again" in str(e) for e in others), others
    assert not coalescer._busy and not coalescer._queue
    assert coalescer.distances("k", np.ones(2, dtype=np.float32), scorer).shape == (4,)
