"""``search_many``: many query vectors in one call answer exactly like one call each."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tidb_jina import DimensionMismatchError
from tidb_jina.store import VectorTable, connect


@pytest.fixture(params=["memory", "file"])
def url(request, tmp_path):
    if request.param == "memory":
        engine = connect("sqlite://")
        yield engine
        engine.dispose()
    else:
        yield f"sqlite:///{tmp_path / 'many.db'}"


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product", "l1"])
def test_search_many_equals_one_search_per_vector(url, metric):
    table = VectorTable(url, table_name="m", metric=metric)
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    metas = [{"g": i % 4, "t": f"doc {i}"} for i in range(300)]
    table.upsert(vectors, ids=[f"r{i}" for i in range(300)], metadatas=metas)
    table.upsert(vectors[:5] * 2, ids=[f"r{i}" for i in range(5)])  # updated rows
    table.delete(["r7", "r8"])
    queries = rng.normal(size=(6, 16)).astype(np.float32)
    cases = [
        {},
        {"filter": {"g": 1}},
        {"filter": {"t": {"$like": "doc 1%"}}},  # SQL-only operator
        {"ids": ["r1", "r2", "r3", "r7"]},
        {"max_distance": 4.0 if metric in ("l2", "l1") else 0.9},
        {"include_embeddings": True, "k": 2},
    ]
    for options in cases:
        options = {"k": 5, **options}
        many = table.search_many(queries, **options)
        assert len(many) == len(queries)
        for q, got in zip(queries, many, strict=True):
            want = table.search(q, **options)
            assert [h.id for h in got] == [h.id for h in want], options
            assert [h.distance for h in got] == pytest.approx([h.distance for h in want], abs=1e-5)
            assert [h.metadata for h in got] == [h.metadata for h in want]
            if options.get("include_embeddings"):
                assert all(
                    np.array_equal(a.embedding, b.embedding) for a, b in zip(got, want, strict=True)
                )


def test_search_many_edges(url):
    table = VectorTable(url, table_name="e")
    assert table.search_many([[1.0, 0.0]]) == [[]]  # no table yet
    table.upsert([[1.0, 0.0], [0.0, 1.0]], ids=["a", "b"])
    assert table.search_many([]) == []
    assert table.search_many([[1.0, 0.0]], ids=[]) == [[]]
    assert [[h.id for h in hits] for hits in table.search_many([[1, 0], [0, 1]], k=1)] == [
        ["a"],
        ["b"],
    ]
    with pytest.raises(DimensionMismatchError, match="VECTOR\\(2\\)"):
        table.search_many([[1.0, 0.0, 0.0]])


def test_search_many_async(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 'a.db'}", table_name="a")
    table.upsert([[1.0, 0.0], [0.0, 1.0]], ids=["a", "b"])

    async def run():
        return await table.aio.search_many([[1.0, 0.1], [0.1, 1.0]], k=1)

    assert [[h.id for h in hits] for hits in asyncio.run(run())] == [["a"], ["b"]]
    table.close()


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_near_ties_rank_alike_in_a_batch_and_alone(tmp_path, metric):
    """Rows within rounding of each other (near-duplicate chunks) and exact duplicates:
    a batch (matrix-matrix product) and single searches (matrix-vector) round the fast
    distances differently, yet return the same rows with the same distances, bit for
    bit, exact ties going to the row written first."""
    rng = np.random.default_rng(11)
    base = rng.normal(size=(40, 64)).astype(np.float32)
    rows = np.concatenate(
        [base + rng.normal(scale=1e-6, size=base.shape).astype(np.float32) for _ in range(6)]
        + [base, base]  # exact duplicates: ties broken by rowid
    )
    table = VectorTable(f"sqlite:///{tmp_path / 'ties.db'}", table_name="t", metric=metric)
    table.upsert(rows, ids=[f"r{i:04d}" for i in range(len(rows))])
    queries = base[:12] + rng.normal(scale=1e-3, size=(12, 64)).astype(np.float32)
    for k in (1, 5, 9):
        batch = table.search_many(queries, k=k)
        alone = [table.search(q, k=k) for q in queries]
        for got, want in zip(batch, alone, strict=True):
            assert [(h.id, h.distance) for h in got] == [(h.id, h.distance) for h in want]
    if metric != "inner_product":  # the 8 copies of row 3 come first, ties by rowid
        hits = table.search(base[3], k=8)
        assert sorted(h.id for h in hits) == [f"r{40 * c + 3:04d}" for c in range(8)]
        assert [(h.distance, h.id) for h in hits] == sorted((h.distance, h.id) for h in hits)
