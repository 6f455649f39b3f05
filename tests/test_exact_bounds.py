"""Winners and ``max_distance`` by exact distance, even where the fast (BLAS) distances
cancel badly: rows far from the origin and close to one another (L2 and inner product
on raw vectors, near-duplicate chunks for cosine)."""

from __future__ import annotations

import numpy as np
import pytest

from tidb_jina.store import VectorTable, connect


def _table(metric: str, n: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=8).astype(np.float32) * 300
    rows = (base + rng.normal(size=(n, 8)).astype(np.float32) * 0.05).astype(np.float32)
    query = (base + rng.normal(size=8).astype(np.float32) * 0.05).astype(np.float32)
    engine = connect("sqlite://")
    table = VectorTable(engine, table_name="x", metric=metric)
    table.upsert(rows, ids=[f"r{i}" for i in range(n)])
    return engine, table, rows, query


def _exact(metric: str, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Each row's distance computed alone, as ``VectorCache.exact`` does."""
    if metric == "l2":
        diff = rows - query
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))
    if metric == "inner_product":
        return -np.einsum("ij,j->i", rows, query)
    unit_rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    unit = query / np.float32(np.linalg.norm(query))
    return np.float32(1.0) - np.einsum("ij,j->i", unit_rows, unit)


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product"])
def test_max_distance_keeps_a_row_at_exactly_its_distance(metric):
    engine, table, _rows, query = _table(metric)
    try:
        ranked = table.search(query, k=240)
        assert len(ranked) == 240
        for hit in ranked[::6]:
            got = table.search(query, k=240, max_distance=hit.distance)
            assert hit.id in {h.id for h in got}, (metric, hit)
            assert all(h.distance <= hit.distance for h in got)
            [many] = table.search_many(query[None, :], k=240, max_distance=hit.distance)
            assert [h.id for h in many] == [h.id for h in got]
    finally:
        engine.dispose()


@pytest.mark.parametrize("metric", ["l2", "inner_product"])  # raw rows: same bits
def test_winners_are_the_exact_nearest_even_past_the_wide_pick(metric):
    engine, table, rows, query = _table(metric, seed=3)
    try:
        exact = _exact(metric, rows, query)
        for k in (1, 5, 20):
            want = [f"r{i}" for i in np.lexsort((np.arange(len(rows)), exact))[:k]]
            assert [h.id for h in table.search(query, k=k)] == want, (metric, k)
            pair = np.stack([query, query * np.float32(1.0)])
            for got in table.search_many(pair, k=k):
                assert [h.id for h in got] == want, (metric, k)
    finally:
        engine.dispose()
