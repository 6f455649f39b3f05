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
