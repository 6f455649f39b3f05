"""Slots of the matrix buffer: where each row's live version sits, and which dead slots
may take new rows.

Snapshots of one buffer share it (``VectorCache.apply``): an update by this process
marks the row's old slot dead in the new snapshot's ``alive`` mask and writes the new
version elsewhere. Appending every new version past the end grows the buffer by a row
per update (about 60 MB in 10 s of 100-row upserts at 768 dimensions), so an update's
row goes into a dead slot instead, once that is safe.

**When a dead slot may be written.** Every snapshot published on the buffer gets the
next generation number. A slot that dies in the snapshot of generation ``g`` is alive
in the snapshots before ``g`` and dead in those from ``g`` on, until it is written again.
It is reused only when no snapshot of a generation below ``g`` is still held by anyone
(each published snapshot is tracked by a weak reference; a snapshot nobody references is
gone and can never be handed out again: readers only get snapshots from the cache's
strong references, ``snapshot`` and the recent ones). Every snapshot still held then
sees the slot dead. A reader of such a snapshot never uses a dead slot's contents:

- a product over all rows (``_products``, the coalesced one included) reads the slot
  while it may be written, but each output is one row's dot product, and ``score_hits``
  sets a dead row's distance to ``inf`` and drops dead rows from the winners, the
  exact re-scoring and the rounding-margin pass;
- filtered searches take positions from ``matched & alive``; ``_overtaken`` compares only
  alive positions (a reused slot's new rowid makes it a new row there);
- the largest row norm (``_rounding``) may include a dead slot's old or new values: it
  stays an upper bound of the alive rows' norms (their values never change), and a NaN
  makes the margin infinite (every row is scored exactly), never too small.

The new snapshot copies its ``rowids`` and ``alive`` mask (never shared with older ones),
writes the rows (prepared in a separate block, so a concurrent product sees each
element either old or new), and is published after.

Filter columns are aligned by position and only extended for appended rows
(``_extend_column``), so slots are reused only by snapshots without cached filter columns;
a snapshot that reuses slots drops the load's key list (``known``), as a reused slot's
row may hold keys the load did not see. (Patching the columns from the upsert's own
metadata would lift that; not done.)

**Where a row's live version is.** A dense ``rowid -> slot`` array for the newest
snapshot, kept up to date by each write of this process, instead of a sorted index of
every snapshot (an argsort and two arrays of ``n`` per write). Rowids far beyond the row
count (written by another tool) make it fall back to the sorted index.

Everything here runs under the cache's load lock.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._stream_load import prepare_rows

# The dense map is used while the largest rowid is at most this many times the rows
# (plus a constant): SQLite gives rowids max + 1, so they are dense unless another tool
# chose them.
SPARSE_FACTOR = 8


def root(array: np.ndarray) -> np.ndarray:
    """The array owning ``array``'s memory (snapshots of one buffer share it)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


class Slots:
    """The slot bookkeeping of one cache's current buffer (module docstring)."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, buffer: np.ndarray | None) -> None:
        self.buffer = buffer  # the buffer described; None: none
        self.gen = -1  # generation of the newest snapshot published on it
        self.live: list[tuple[int, weakref.ref[Any]]] = []
        self.pending: list[tuple[int, np.ndarray]] = []  # (dead from generation, slots)
        self.free = np.empty(0, dtype=np.intp)  # dead in every snapshot still held
        self.where: np.ndarray | None = None  # rowid -> slot in ``latest`` (-1: none)
        self.latest: Any = None

    def published(self, snap: Any) -> None:
        """``snap`` was made the cache's current snapshot (None: no snapshot)."""
        if snap is None:
            self._reset(None)
            return
        buffer = root(snap.matrix)
        if buffer is not self.buffer:
            self._reset(buffer)
        self.gen += 1
        self.live.append((self.gen, weakref.ref(snap)))
        if self.latest is not snap:
            self.where, self.latest = None, None

    def replaced(self, snap: Any, rowids: np.ndarray) -> np.ndarray:
        """The slots of ``snap`` holding live versions of ``rowids`` (rows replaced)."""
        found = self.locate(snap, rowids)
        if found is not None:
            return found[found >= 0]
        keys, positions = snap._index()  # rowids the map cannot hold: the sorted index
        if not keys.size:
            return np.empty(0, dtype=np.intp)
        at = np.minimum(np.searchsorted(keys, rowids), keys.size - 1)
        return positions[at[keys[at] == rowids]]  # type: ignore[no-any-return]

    def locate(self, snap: Any, rowids: np.ndarray) -> np.ndarray | None:
        """The slots of the live versions of ``rowids`` in ``snap`` (-1: not there), or
        None when the map cannot be used (the caller uses the sorted index)."""
        if (self.latest is not snap or self.where is None) and not self._build(snap):
            return None
        where = self.where
        assert where is not None
        out = np.full(rowids.size, -1, dtype=np.intp)
        inside = (rowids >= 0) & (rowids < where.size)
        out[inside] = where[rowids[inside]]
        return out

    def _build(self, snap: Any) -> bool:
        if root(snap.matrix) is not self.buffer:
            return False
        slots = np.arange(snap.size) if snap.alive is None else np.flatnonzero(snap.alive)
        ids = snap.rowids[slots]
        top = int(ids.max()) if ids.size else 0
        if ids.size and (int(ids.min()) < 0 or top > SPARSE_FACTOR * ids.size + 2**20):
            self.where, self.latest = None, None
            return False
        where = np.full(top + 1 + max(1024, top // 2), -1, dtype=np.intp)
        where[ids] = slots
        self.where, self.latest = where, snap
        return True

    def advance(self, old: Any, new: Any, rowids: np.ndarray, slots: np.ndarray) -> None:
        """``new`` is ``old`` with ``rowids`` now at ``slots`` (-1: deleted)."""
        where = self.where
        if self.latest is not old or where is None:
            return
        if rowids.size and (int(rowids.min()) < 0 or int(rowids.max()) >= where.size):
            top = int(rowids.max())
            if int(rowids.min()) < 0 or top > SPARSE_FACTOR * max(new.size, 1) + 2**20:
                self.where, self.latest = None, None
                return
            grown = np.full(top + 1 + max(1024, top // 2), -1, dtype=np.intp)
            grown[: where.size] = where
            where = self.where = grown
        where[rowids] = slots
        self.latest = new

    def retire(self, slots: np.ndarray) -> None:
        """``slots`` are dead from the snapshot about to be published."""
        if slots.size:
            self.pending.append((self.gen + 1, slots.astype(np.intp, copy=False)))

    def take(self, count: int) -> np.ndarray:
        """Up to ``count`` slots dead in every snapshot anyone still holds."""
        if count <= 0:
            return np.empty(0, dtype=np.intp)
        self.live = [(g, ref) for g, ref in self.live if ref() is not None]
        low = min((g for g, _ in self.live), default=self.gen + 1)
        ready = [slots for g, slots in self.pending if g <= low]
        if ready:
            self.pending = [(g, slots) for g, slots in self.pending if g > low]
            self.free = np.concatenate([self.free, *ready])
        taken, self.free = self.free[:count], self.free[count:]
        return taken


def write_rows(
    buffer: np.ndarray,
    sq_buffer: np.ndarray | None,
    metric: DistanceMetric,
    snap: Any,
    alive: np.ndarray,
    rowids: np.ndarray,
    vectors: np.ndarray,
    reuse: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(rowids, matrix, squared norms, alive) of ``snap`` (with ``alive``) plus the rows:
    the first ones written into the ``reuse`` slots, the others past the end."""
    n, r, m = snap.size, reuse.size, rowids.size
    end = n + m - r
    buffer[n:end] = vectors[r:]
    prepare_rows(buffer[n:end], metric, None if sq_buffer is None else sq_buffer[n:end])
    ids = np.concatenate([snap.rowids, rowids[r:]])  # each snapshot its own copy
    mask = np.concatenate([alive, np.ones(m - r, dtype=bool)])
    if r:  # prepared apart: a product running meanwhile sees old or new values
        block = np.array(vectors[:r], dtype=np.float32)
        sq = None if sq_buffer is None else np.empty(r, dtype=np.float32)
        prepare_rows(block, metric, sq)
        buffer[reuse] = block
        if sq_buffer is not None:
            sq_buffer[reuse] = sq
        ids[reuse], mask[reuse] = rowids[:r], True
    sq_norms = None if sq_buffer is None else sq_buffer[:end]
    return ids, buffer[:end], sq_norms, None if mask.all() else mask
