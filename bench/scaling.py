"""Scaling of embedded exact search: latency at growing table sizes.

For each size (default 10,000 x 768, 100,000 x 768 and 1,000,000 x 384: 1M x 768 would
need 3 GB for the in-memory copy alone) it ingests random float32 vectors with
``{"group": i % 10}`` metadata into a fresh embedded file, then measures: ingest time,
the first query (loads the vectors), the median unfiltered top-10 cosine query, the
median query with a 10% selective filter, and the NumPy floor (normalized float32 matrix
in memory, one matrix-vector product, argpartition) measured in the same run.

There is no pass/fail goal: the table shows how cost grows (exact search is linear in
rows x dimension). The per-size ratio to NumPy carries item 1's goals (<= 2x unfiltered,
<= 4x filtered) so a size where they stop holding is visible.

    python bench/scaling.py [--sizes 10000x768,100000x768,1000000x384] [--queries 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import fmt_seconds, paired_per_call, random_vectors, timed, verdict

from tidb_jina.store import VectorTable

CHUNK = 100_000  # rows per upsert call: bounds the memory of the encoded rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000x768,100000x768,1000000x384")
    parser.add_argument("--queries", type=int, default=10)
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    print("## Embedded exact search by table size, cosine, top-10, per query\n")
    print(
        "| rows x dim | ingest | first query | search | NumPy | ratio (<= 2x) "
        "| 10% filter | ratio (<= 4x) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n, dim in sizes:
        print(_measure(n, dim, args.queries), flush=True)


def _measure(n: int, dim: int, n_queries: int) -> str:
    vectors = random_vectors(n, dim, seed=n)
    queries = random_vectors(n_queries, dim, seed=1)
    store = VectorTable(f"sqlite:///{Path(tempfile.mkdtemp()) / 'scale.db'}", table_name="t")
    ingest = timed(lambda v=vectors: _ingest(store, v))
    first = timed(lambda: store.search(queries[0], k=10))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    del vectors

    def numpy_top10(q: np.ndarray) -> np.ndarray:
        sims = unit @ (q / np.linalg.norm(q))
        top = np.argpartition(-sims, 10)[:10]
        return top[np.argsort(-sims[top])]

    ours, floor, filtered = paired_per_call(
        [
            lambda q: store.search(q, k=10),
            numpy_top10,
            lambda q: store.search(q, k=10, filter={"group": 3}),
        ],
        list(queries),
    )
    r1, r2 = ours / floor, filtered / floor
    return (
        f"| {n:,} x {dim} | {fmt_seconds(ingest)} | {fmt_seconds(first)} "
        f"| {fmt_seconds(ours)} | {fmt_seconds(floor)} | {r1:.2f}x {verdict(r1 <= 2)} "
        f"| {fmt_seconds(filtered)} | {r2:.2f}x {verdict(r2 <= 4)} |"
    )


def _ingest(store: VectorTable, vectors: np.ndarray) -> None:
    for start in range(0, len(vectors), CHUNK):
        rows = range(start, min(len(vectors), start + CHUNK))
        store.upsert(
            vectors[start : start + CHUNK],
            ids=[str(i) for i in rows],
            metadatas=[{"group": i % 10} for i in rows],
        )


if __name__ == "__main__":
    main()
