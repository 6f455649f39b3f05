"""Concurrent searches on one snapshot scored together: one pass over the matrix.

Scoring a query is a matrix-vector product (BLAS gemv), bound by memory bandwidth. Eight
threads each doing their own product read the matrix eight times and, with NumPy's BLAS
threads on top, oversubscribe the cores: 8 concurrent searches gave a quarter of the
throughput of one. Instead, queries that arrive while a product is running wait, and the
next product scores all of them at once (a matrix-matrix product: the matrix is read
once for all of them).

No query waits for a timer: the first caller computes at once (the leader); callers that
arrive meanwhile queue. When the leader is done it returns, and the first caller of the
queue becomes the leader and scores the whole queue in one product (so no caller keeps
computing for others forever).

Queries on different snapshots are scored together only when one snapshot's rows are a
prefix of the other's (a write of this process appends rows to the shared buffer and
publishes a longer snapshot): the product runs once on the longest, and each query takes
the first rows of its own snapshot. Under a steady writer, readers pinned to the previous
and the new state would otherwise need two products.

Memory: the product is written into one workspace kept by the coalescer (only the leader
uses it, one leader at a time), and each query's column is copied into an array its own
caller allocated before waiting. Allocated per batch by the leader (an (n, q) product and
q columns: 6.4 MB at 100,000 rows and 8 queries), they stayed in every reader thread's
malloc arena once it had led, about 6 MB per arena, 48 MB for 8 readers at 100k x 768
(issue 18's fifth round). The workspace costs n x q x 4 bytes while the vectors are in
memory (q: the most queries scored together, at most ``WORKSPACE_QUERIES``; 1% of the
matrix at 768 dimensions and 8 queries, q/d of it in general).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

# (snapshot key, queries (q, d), workspace (n, q) or None) -> distances (n, q), written
# into the workspace when one is given
Scorer = Callable[[Any, np.ndarray, "np.ndarray | None"], np.ndarray]

# The most queries whose product the kept workspace holds: n x 16 x 4 bytes at most (16/d
# of the matrix: 2% at 768 dimensions). A wider batch (more than 16 callers at once)
# gets a product of its own, freed after the batch, as before the workspace.
WORKSPACE_QUERIES = 16


class _Waiting:
    __slots__ = (
        "done",
        "error",
        "group",
        "key",
        "lead",
        "out",
        "query",
        "result",
        "rows",
        "scorer",
    )

    def __init__(
        self, key: Any, query: np.ndarray, scorer: Scorer, group: Hashable, rows: int
    ) -> None:
        self.key, self.query, self.scorer = key, query, scorer
        self.group, self.rows = group, rows
        self.done = threading.Event()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        # this caller is to score the queue (it came first, or was woken to): set under
        # the coalescer's lock, cleared when its ``_lead`` takes the batch
        self.lead = False
        # the result's array, allocated by the caller's thread (its own malloc arena)
        self.out = np.empty(rows, dtype=np.float32) if rows >= 0 else None


class Coalescer:
    """Runs ``scorer`` for many queries in one call when they arrive together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._busy = False
        self.batches = 0  # products computed (for tests and benches)
        self.queries = 0
        self._workspace: np.ndarray | None = None  # the leader's product (flat float32)

    def distances(
        self,
        key: Any,
        query: np.ndarray,
        scorer: Scorer,
        group: Hashable | None = None,
        rows: int = -1,
    ) -> np.ndarray:
        """``scorer(key, query[None])[:, 0]``, computed with whatever else is waiting.

        ``group``: keys of one group are prefixes of each other: the first ``rows`` rows
        of any wider key's scores are this key's (default: the key alone)."""
        item = _Waiting(key, query, scorer, id(key) if group is None else group, rows)
        try:
            with self._lock:
                self._queue.append(item)
                if not self._busy:  # the one statement that makes this caller the leader
                    self._busy = item.lead = True
            if not item.lead:
                item.done.wait()
            if item.lead:
                self._lead(item)
        except BaseException:  # interrupted (KeyboardInterrupt): leave the queue, and
            self._abandon(item)  # pass the lead on if it was this caller's to take
            raise
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result

    def _lead(self, own: _Waiting) -> None:
        """Score everything queued now, then hand the lead to the next caller queued.

        Until the batch is taken, ``own.lead`` says that this caller still owes the
        coalescer its lead: interrupted before (KeyboardInterrupt between any two steps),
        ``distances`` hands it on (``_abandon``). Taking the batch clears it in the same
        hold of the lock; from then on the ``finally`` below answers the batch and hands
        the lead on."""
        batch: list[_Waiting] = []
        try:
            with self._lock:
                batch, self._queue = self._queue, []
                own.lead = False
            groups: dict[Hashable, list[_Waiting]] = {}
            for item in batch:
                groups.setdefault(item.group, []).append(item)
            for items in groups.values():
                self._score(items)
        finally:  # even interrupted between groups: no caller of the batch hangs
            if batch:
                for item in batch:
                    if not item.done.is_set():
                        item.error = RuntimeError("the search was interrupted; run it again")
                        item.done.set()
                self._hand_off(None)

    def _hand_off(self, leaving: _Waiting | None) -> None:
        """Wake the first caller queued to lead (or mark the coalescer idle). ``leaving``:
        a caller whose wait was interrupted, taken out of the queue first (if it was
        picked to lead, the next one is picked instead)."""
        with self._lock:
            if leaving is not None:
                if leaving in self._queue:
                    self._queue.remove(leaving)
                if not leaving.lead:
                    return  # not picked: the running leader hands off later
            if not self._queue:
                self._busy = False
                return
            successor = self._queue[0]
            successor.lead = True  # picked under the lock (``_abandon`` reads it there)
        successor.done.set()

    def _abandon(self, item: _Waiting) -> None:
        """A waiter interrupted before its answer: it leaves the queue; if it had been
        picked to lead, the lead passes on, so the callers behind it never hang."""
        self._hand_off(item)

    def _score(self, items: list[_Waiting]) -> None:
        try:
            queries = np.stack([item.query for item in items])
            widest = max(items, key=lambda item: item.rows)
            scores = widest.scorer(widest.key, queries, self._space(widest.rows, len(items)))
            self.batches += 1
            self.queries += len(items)
            for i, item in enumerate(items):
                if item.out is None:
                    item.result = np.ascontiguousarray(scores[:, i])
                else:
                    np.copyto(item.out, scores[: item.rows, i])
                    item.result = item.out
        except Exception as exc:  # every waiter gets the error, none hangs
            for item in items:
                item.error = exc
        except BaseException:  # the leader's interrupt is raised in the leader's thread
            for item in items:  # alone (``_lead``'s ``finally``: "run it again")
                if item.error is None and item.result is None:
                    item.error = RuntimeError("the search was interrupted; run it again")
            raise
        finally:
            for item in items:
                item.done.set()

    def _space(self, rows: int, queries: int) -> np.ndarray | None:
        """The (rows, queries) workspace for the leader's product (grown as needed);
        None when the number of rows is unknown or the batch is wider than
        ``WORKSPACE_QUERIES`` (the scorer then allocates a product of its own, not kept).

        Read once into a local: ``release()`` may run on another thread at any moment
        (an invalidation), and must not turn this batch into a raw ``TypeError``."""
        if rows < 0 or queries > WORKSPACE_QUERIES:
            return None
        need = rows * queries
        space = self._workspace
        if space is None or space.size < need:
            space = np.empty(need, dtype=np.float32)
            self._workspace = space
        return space[:need].reshape(rows, queries)

    def release(self) -> None:
        """Drop the workspace (the table's vectors left memory; made again when needed)."""
        self._workspace = None
