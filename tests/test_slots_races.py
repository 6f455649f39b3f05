"""Slot reuse (``tidb_jina.store._slots``) against readers that race the writer: filter
columns cached on the snapshot while an update is being applied, and buffers that must
never be written (a read-only matrix)."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from tidb_jina.store import VectorTable, _embedded
from tidb_jina.store._embedded import RECENT_SNAPSHOTS

D = 8


def _table(tmp_path, n=200, metric="cosine"):
    table = VectorTable(f"sqlite:///{tmp_path / 'r.db'}", table_name="r", metric=metric)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(n, D)).astype(np.float32)
    table.upsert(vectors, ids=[f"r{i}" for i in range(n)], metadatas=[{"c": "red"}] * n)
    table.search(vectors[0], k=1)  # the snapshot is loaded (its columns prebuilt)
    cache = table._backend.cache
    cache.snapshot.extras.pop("columns", None)  # as if no filter had run yet
    cache.snapshot.extras.pop("known", None)
    for _ in range(RECENT_SNAPSHOTS + 4):  # updates: dead slots, free once unheld
        ids = [f"r{int(i)}" for i in rng.choice(n, 10, replace=False)]
        table.upsert(
            rng.normal(size=(10, D)).astype(np.float32), ids=ids, metadatas=[{"c": "red"}] * 10
        )
    gc.collect()
    return table, cache, rng


def test_columns_cached_by_a_filter_during_an_update_never_describe_reused_slots(
    tmp_path, monkeypatch
):
    """A filter search on the current snapshot caches its columns (filling the
    snapshot's ``columns`` dict in place, without the load lock) while an update that
    decided to reuse dead slots is being applied: the new snapshot must not inherit
    columns whose values at the reused slots are the dead rows' (the filter would then
    miss the new rows, or match rows that do not match)."""
    table, cache, rng = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    table.search(q, k=3, filter={"c": "red"})  # builds the current snapshot's column
    snap = cache.snapshot
    columns = snap.extras.pop("columns")
    assert "c" in columns
    real = _embedded.write_rows

    def racing(buffer, sq_buffer, metric, old, *args):
        old.extras["columns"] = columns  # the concurrent filter finishes right now
        return real(buffer, sq_buffer, metric, old, *args)

    monkeypatch.setattr(_embedded, "write_rows", racing)
    ids = [f"r{i}" for i in range(5)]
    table.upsert(np.tile(q, (5, 1)), ids=ids, metadatas=[{"c": "blue"}] * 5)
    monkeypatch.setattr(_embedded, "write_rows", real)
    new = cache.snapshot
    assert new.size < snap.size + 5  # the update took dead slots
    blue = table.search(q, k=10, filter={"c": "blue"})
    assert sorted(h.id for h in blue) == ids
    red = table.search(q, k=10, filter={"c": "red"})
    assert not {h.id for h in red} & set(ids)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_a_read_only_buffer_is_copied_never_written(tmp_path, metric):
    """A snapshot buffer that may not be written (a read-only mapped matrix): an own
    update with dead slots free to reuse, and one appending, copy the rows into a new
    buffer instead of writing into it (which raised after the commit)."""
    table, cache, rng = _table(tmp_path, metric=metric)
    for buffer in (cache._buffer, cache._sq_buffer):
        if buffer is not None:
            buffer.flags.writeable = False
    frozen = cache._buffer
    before = frozen.copy()
    q = rng.normal(size=D).astype(np.float32)
    table.upsert(np.tile(q, (3, 1)), ids=["r0", "r1", "new"], metadatas=[{"c": "red"}] * 3)
    assert cache._buffer is not frozen and cache._buffer.flags.writeable
    assert frozen.tobytes() == before.tobytes()  # spare rows may hold NaN bits
    assert cache.snapshot.token == cache.watcher.token_now()  # applied, not dropped
    assert sorted(h.id for h in table.search(q, k=3)) == ["new", "r0", "r1"]
