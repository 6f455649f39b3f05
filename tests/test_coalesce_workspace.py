"""A coalesced product is written into one workspace the coalescer keeps (issue 18).

Allocated per batch by whichever reader led it, the (n, q) product and the q columns
copied out of it stayed in that thread's malloc arena: about 6 MB per reader thread at
100,000 x 768. The leader now writes into a reused workspace and copies each column into
an array its own caller allocated; a result never shares memory with the workspace, so
the next batch cannot change an answer already returned.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from _product_race import race

from tidb_jina.store import VectorTable


def _cache(tmp_path, metric, n=20_000, d=16):
    table = VectorTable(f"sqlite:///{tmp_path / 'w.db'}", table_name="w", metric=metric)
    rng = np.random.default_rng(4)
    table.upsert(rng.normal(size=(n, d)).astype(np.float32), ids=[str(i) for i in range(n)])
    table.search(rng.normal(size=d).astype(np.float32), k=3)  # loads the snapshot
    return table, table._backend.cache, rng


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_batches_reuse_one_workspace_and_answers_stay_as_returned(tmp_path, metric):
    table, cache, rng = _cache(tmp_path, metric)
    snap = cache.snapshot
    first_q = rng.normal(size=(3, 16)).astype(np.float32)
    calls, first = race(cache, snap, snap, first_q)
    assert calls == [(snap.size, 1), (snap.size, 2)]
    workspace = cache.coalescer._workspace
    assert workspace is not None and workspace.size == snap.size * 2
    kept = {name: scores.copy() for name, scores in first.items()}
    for name, scores in first.items():
        assert not np.shares_memory(scores, workspace), name

    second_q = rng.normal(size=(3, 16)).astype(np.float32)
    calls, second = race(cache, snap, snap, second_q)
    assert calls == [(snap.size, 1), (snap.size, 2)]
    assert cache.coalescer._workspace is workspace  # reused, not allocated again
    for name in first:  # the second batch wrote the workspace, not the first answers
        np.testing.assert_array_equal(first[name], kept[name])
    for name, q in zip(["leader", "old", "new"], second_q, strict=True):
        np.testing.assert_allclose(second[name], cache.distances_to(snap, q), atol=1e-5)

    cache.invalidate()  # the vectors left memory: so does the workspace
    assert cache.coalescer._workspace is None
    table.close()


def test_a_batch_allocates_no_product_once_the_workspace_exists(tmp_path):
    """Traced NumPy allocations during a batch of two on 20,000 rows: the two callers'
    results (80 KB each), not a 160 KB product plus two 80 KB column copies as before."""
    table, cache, rng = _cache(tmp_path, "cosine")
    snap = cache.snapshot
    race(cache, snap, snap, rng.normal(size=(3, 16)).astype(np.float32))  # makes it
    queries = rng.normal(size=(3, 16)).astype(np.float32)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        race(cache, snap, snap, queries)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    result = snap.size * 4
    assert peak < 3.5 * result, f"{peak} bytes traced at the peak of a batch"
    table.close()
