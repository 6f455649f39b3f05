"""Queue searches on two snapshots behind a running product, to see how they are scored.

``race(cache, old, new, queries)``: a leader search on ``old`` starts a product that is
held until a search on ``old`` and one on ``new`` have queued behind it; then all run.
Returns the products computed, as (rows of the snapshot scored, queries), and each
search's distances ("leader", "old", "new")."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


def race(
    cache: Any, old: Any, new: Any, queries: np.ndarray
) -> tuple[list[tuple[int, int]], dict[str, np.ndarray]]:
    real, calls, gate = cache._batch_distances, [], threading.Event()

    def scorer(snap: Any, qs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        calls.append((snap.size, qs.shape[0]))
        if len(calls) == 1:
            assert gate.wait(10)  # the first product runs while the others queue
        return real(snap, qs, out)

    cache._batch_distances = scorer
    got: dict[str, np.ndarray] = {}

    def run(name: str, snap: Any, query: np.ndarray) -> None:
        got[name] = cache.distances(snap, query, None)

    try:
        leader = threading.Thread(target=run, args=("leader", old, queries[0]))
        leader.start()
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.001)
        followers = [
            threading.Thread(target=run, args=("old", old, queries[1])),
            threading.Thread(target=run, args=("new", new, queries[2])),
        ]
        for t in followers:
            t.start()
        while len(cache.coalescer._queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        gate.set()
        for t in [leader, *followers]:
            t.join(10)
    finally:
        gate.set()
        del cache._batch_distances  # the class's own method again
    return calls, got
