"""Concurrent searches on one file table: 8 threads against 1, default BLAS settings.

Unfiltered top-10 cosine searches for ``--seconds`` each: one thread (the baseline),
then ``--threads`` threads with concurrent queries coalesced into one matrix-matrix
product (our default), then the same threads with every search doing its own
matrix-vector product (how it was). Printed as time per search (1 / throughput); the
goal is 8 threads giving at least 2x the throughput of one (ratio <= 0.5x).

    python bench/concurrency.py [--n 100000] [--dim 768] [--seconds 5]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import Row, random_vectors, table

from tidb_jina.store import VectorTable


def throughput(store: VectorTable, queries: np.ndarray, threads: int, seconds: float) -> float:
    stop = threading.Event()
    counts = [0] * threads

    def worker(slot: int) -> None:
        i = slot
        while not stop.is_set():
            store.search(queries[i % len(queries)], k=10)
            counts[slot] += 1
            i += threads

    workers = [threading.Thread(target=worker, args=(s,)) for s in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'conc.db'}"
    store = VectorTable(url, table_name="conc")
    store.upsert(random_vectors(args.n, args.dim), ids=[str(i) for i in range(args.n)])
    queries = random_vectors(64, args.dim, seed=1)
    store.search(queries[0], k=10)
    cache = store._backend.cache  # type: ignore[attr-defined]
    one = throughput(store, queries, 1, args.seconds)
    many = throughput(store, queries, args.threads, args.seconds)
    cache.coalesce = False
    uncoalesced = throughput(store, queries, args.threads, args.seconds)
    cache.coalesce = True
    one_again = throughput(store, queries, 1, args.seconds)  # the machine drifts
    single = (one + one_again) / 2
    print(f"## Concurrency: {args.threads} threads vs 1, {args.n:,} x {args.dim}\n")
    print(
        table(
            [
                Row(
                    f"{args.threads} threads, coalesced",
                    1 / many,
                    "1 thread",
                    1 / single,
                    "<= 0.5x (>= 2x throughput)",
                    0.5,
                ),
                Row(
                    f"{args.threads} threads, each its own product",
                    1 / uncoalesced,
                    "1 thread",
                    1 / single,
                    "-",
                ),
            ]
        )
    )
    print(
        f"\nsearches/s: 1 thread {single:.1f}, {args.threads} coalesced {many:.1f}, "
        f"{args.threads} uncoalesced {uncoalesced:.1f}; "
        f"{cache.coalescer.queries} queries in {cache.coalescer.batches} products"
    )
    store.close()


if __name__ == "__main__":
    main()
