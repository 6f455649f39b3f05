"""A transaction-free search overtaken by this process's own write keeps its answer when
the write cannot have changed it.

``_fresh`` scores the snapshot of state ``t0`` and reads the winners' rows in one
autocommit ``SELECT``; if the change token then reads ``t1 != t0``, some commit landed in
between and the rows read may belong to any state from ``t0`` to ``t1``. Under a steady
writer (a RAG app ingesting while it serves) that happens to most searches.

When every state from ``t0`` to ``t1`` was written by this process, the snapshot of ``t1``
is in memory and shares ``t0``'s matrix buffer (``VectorCache.apply`` / ``_remove`` only
ever derive a snapshot from the current one, after proving nobody else committed; a
reload or a compaction makes a new buffer). Rows are then *versions at positions*: an
own update or delete marks the row's position dead and appends the new version past
the end; a dead position is never alive again in a later snapshot of the same buffer
while a snapshot that sees it alive is still held (``_slots``), and that snapshot is
held here. So, comparing the two snapshots position by position:

- a winner whose position is still alive in ``t1`` (same rowid there) was not written in
  any state from ``t0`` to ``t1``: its id, document and metadata read by the ``SELECT``
  are the same in all of them, and its exact distance too (its matrix row is untouched);
- the rows that may enter ``t1``'s answer are the positions alive in ``t1`` and not in
  ``t0``: the appended versions (and any reused slot). Their exact distances are computed
  (a few hundred rows per write at most), each row alone as ``VectorCache.exact`` does.

The answer is kept when no winner changed and no such row ranks before the k-th winner
(exact distance below it, or equal with a lower rowid: ``score_hits``' order). Then the
answer *is* ``t1``'s: ``score_hits`` on ``t1`` returns the k nearest rows by exact
distance, ties by rowid, and the alive rows of ``t1`` are ``t0``'s minus some non-winners
plus rows that all rank after the k-th winner. With fewer than k winners (a distance
bound, or a small table) any such row could enter, so the answer is kept only when there
is none. A filter is not re-evaluated on the new rows: each counts as matching, which can
only make the rule give up more often, never keep a wrong answer.

Anything else (a state not in memory, another buffer, a foreign commit in between) is
not kept: the general path answers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tidb_jina.store._embedded import Snapshot, VectorCache
from tidb_jina.store._slots import root


def applied(cache: VectorCache, token: Any) -> Snapshot | None:
    """The snapshot of ``token`` if this process has it or is applying it right now.

    An own write publishes its state two PRAGMA reads after its commit, holding the load
    lock meanwhile: a reader that sees the new token first waits for that (and not for a
    reload: with the lock free and the state unknown, None at once)."""
    snap = cache.current(token)
    if snap is not None:
        return snap
    with cache.writing():
        return cache.current(token)


def starting(cache: VectorCache, snap: Snapshot, token: Any) -> Snapshot | None:
    """The snapshot a fast search that read ``token`` (newer than ``snap``) scores.

    ``token``'s own when in memory. While the load lock is held (a write of this process
    is between its commit and its apply, or a load runs), ``snap`` itself, without
    waiting: the search ends with the same check as one overtaken meanwhile (``kept``
    against the state read after its rows), which already covers every state from
    ``snap``'s on, so the product overlaps the writer's apply instead of waiting for it.
    None when the lock is free and the state is not in memory (another connection's
    commit: the general path reloads)."""
    newer = cache.current(token)
    if newer is not None:
        return newer
    lock = cache.writing()
    if not lock.acquire(blocking=False):
        return snap
    try:
        return cache.current(token)
    finally:
        lock.release()


def kept(
    cache: VectorCache,
    snap: Snapshot,
    later: Snapshot,
    query: np.ndarray,
    hits: tuple[np.ndarray, np.ndarray],
    k: int,
) -> bool:
    """Whether ``hits`` (``snap``'s answer) is also ``later``'s (module docstring)."""
    if later is snap:
        return True
    if (
        later.size < snap.size
        or later.matrix.shape[1] != snap.matrix.shape[1]
        or root(later.matrix) is not root(snap.matrix)
    ):
        return False
    was = _alive(snap, later.size)
    same = _alive(later, later.size)  # alive in ``later`` ...
    same[: snap.size] &= later.rowids[: snap.size] == snap.rowids  # ... as the same row
    same &= was
    gone = (was & ~same)[: snap.size]  # versions replaced or deleted since ``snap``
    if gone.any() and np.isin(hits[0], snap.rowids[gone]).any():
        return False  # a winner was written
    entered = np.flatnonzero(_alive(later, later.size) & ~same)
    if entered.size == 0:
        return True
    rowids, distances = hits
    if rowids.size < k:
        return False  # room for a new row
    exact = cache.exact(later, query, entered)
    kth, kth_id = distances[-1], rowids[-1]
    if kth != kth:
        return False
    ids = later.rowids[entered]
    return not bool(((exact < kth) | ((exact == kth) & (ids < kth_id))).any())


def _alive(snap: Snapshot, n: int) -> np.ndarray:
    """``snap``'s alive mask over ``n`` positions (positions past its end: not alive)."""
    out = np.zeros(n, dtype=bool)
    if snap.alive is None:
        out[: snap.size] = True
    else:
        out[: snap.size] = snap.alive
    return out
