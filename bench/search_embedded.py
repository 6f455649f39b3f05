"""Embedded exact search: our store against NumPy and the frameworks' in-memory stores.

Cosine, top-10, random float32 vectors. Baselines measured in the same run:
- NumPy: normalized float32 matrix in memory, one matrix-vector product, argpartition
  (the floor any exact search can reach in Python);
- langchain-core's InMemoryVectorStore and llama-index-core's SimpleVectorStore holding
  the same vectors (skipped with --no-peers).

Goal: within 2x of NumPy unfiltered, within 4x with a 10% selective metadata filter
(``{"group": 3}``), at least 10x faster than both framework stores. The first query
after ingest and after opening the file anew (both load the vectors) are printed apart.

    python bench/search_embedded.py [--n 100000] [--dim 768] [--queries 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import Row, median_seconds, paired_per_call, table, timed

from tidb_jina.store import VectorTable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    queries = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    ids = [str(i) for i in range(args.n)]
    metas = [{"group": i % 10} for i in range(args.n)]

    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    store = VectorTable(url, table_name="bench")
    start = time.perf_counter()
    store.upsert(vectors, ids=ids, metadatas=metas)
    ingest = time.perf_counter() - start
    start = time.perf_counter()
    store.search(queries[0], k=10)
    first = time.perf_counter() - start
    reopened = timed(lambda: VectorTable(url, table_name="bench").search(queries[1], k=10))

    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def numpy_top10(q: np.ndarray) -> np.ndarray:
        sims = unit @ (q / np.linalg.norm(q))
        top = np.argpartition(-sims, 10)[:10]
        return top[np.argsort(-sims[top])]

    for q in queries[:3]:  # same answers as the NumPy floor
        assert [h.id for h in store.search(q, k=10)] == [str(i) for i in numpy_top10(q)]

    ours, floor, filtered = paired_per_call(
        [
            lambda q: store.search(q, k=10),
            numpy_top10,
            lambda q: store.search(q, k=10, filter={"group": 3}),
        ],
        list(queries),
    )
    rows = [
        Row("search, unfiltered", ours, "NumPy", floor, "<= 2x", 2.0),
        Row("search, 10% filter", filtered, "NumPy (unfiltered)", floor, "<= 4x", 4.0),
    ]
    if not args.no_peers:
        rows += _peers(vectors, ids, queries, ours)
    print(f"## Embedded exact search, {args.n:,} x {args.dim}, cosine, top-10, per query\n")
    print(table(rows))
    print(f"\nfirst query after ingest (loads the vectors): {first * 1e3:.1f} ms")
    print(f"first query after opening the file in a new VectorTable: {reopened * 1e3:.1f} ms")
    print(f"ingest of {args.n:,} rows: {ingest:.2f} s")


def _peers(vectors, ids, queries, ours) -> list[Row]:
    from langchain_core.embeddings import FakeEmbeddings
    from langchain_core.vectorstores import InMemoryVectorStore
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores import SimpleVectorStore, VectorStoreQuery

    lc = InMemoryVectorStore(FakeEmbeddings(size=vectors.shape[1]))
    lc.store = {
        i: {"id": i, "vector": v.tolist(), "text": "", "metadata": {}}
        for i, v in zip(ids, vectors, strict=True)
    }
    li = SimpleVectorStore()
    li.add(
        [TextNode(id_=i, text="", embedding=v.tolist()) for i, v in zip(ids, vectors, strict=True)]
    )
    few = queries[:3]
    lc_time = median_seconds(
        lambda: [lc.similarity_search_by_vector(q.tolist(), k=10) for q in few], 1
    ) / len(few)
    li_time = median_seconds(
        lambda: [
            li.query(VectorStoreQuery(query_embedding=q.tolist(), similarity_top_k=10)) for q in few
        ],
        1,
    ) / len(few)
    return [
        Row("search, unfiltered", ours, "langchain InMemoryVectorStore", lc_time, "<= 0.1x", 0.1),
        Row("search, unfiltered", ours, "llama-index SimpleVectorStore", li_time, "<= 0.1x", 0.1),
    ]


if __name__ == "__main__":
    main()
