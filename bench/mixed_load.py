"""Reads while writing: 8 reader threads, with and without one writer, on one file table.

A RAG app ingests while it serves. Phase 1: 8 threads search for ``--seconds``
(readers only: the baseline). Phase 2: the same 8 readers while a ninth thread upserts
100 rows every 50 ms (half new rows, half updates of existing ones). The two phases
alternate in ``--slices`` slices (5 by default; 1: one phase after the other, as before
issue 18's fourth round), so a change of the shared machine's speed weighs on both
alike. Printed as ratios of phase 2 to phase 1, measured in the same run:

- reader throughput (goal: at least 0.7x of readers-only),
- median search latency (goal: at most 2x),
- peak resident memory above the process's before the first search, against the size of
  the float32 matrix (goal: at most 1.5x the matrix); the readers-only peak (of the
  first slice, before any write) is printed too (8 threads' BLAS and SQLite buffers
  count in both).

    python bench/mixed_load.py [--n 100000] [--dim 768] [--seconds 10] [--slices 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import Row, fmt_bytes, table

from tidb_jina.store import VectorTable
from tidb_jina.store._stream_load import release_free_memory


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRss:
    """Samples the resident set every 5 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def resident_by_kind(buffer: int = 0) -> dict[str, int]:
    """Resident bytes by kind of mapping (``/proc/self/smaps``): the vector buffer (the
    mapping holding address ``buffer``), the heap, other anonymous regions (glibc's
    per-thread malloc arenas, BLAS buffers, large temporaries), the database file,
    other files."""
    kinds: dict[str, int] = {}
    kind = ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                name = head[5].strip() if len(head) == 6 else ""
                if lo <= buffer < hi:
                    kind = "vector buffer"
                elif name == "[heap]":
                    kind = "heap"
                elif name.endswith((".db", ".db-wal", ".db-shm")):
                    kind = "database file"
                elif name.startswith("/"):
                    kind = "other files"
                elif name:
                    kind = name
                else:
                    kind = "anonymous (malloc arenas, BLAS, temporaries)"
            elif head and head[0] == "Rss:":
                kinds[kind] = kinds.get(kind, 0) + int(head[1]) * 1024
    return kinds


def run_readers(
    store: VectorTable, queries: np.ndarray, seconds: float, threads: int
) -> tuple[int, list[float]]:
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def reader(slot: int) -> None:
        i = slot
        while not stop.is_set():
            start = time.perf_counter()
            store.search(queries[i % len(queries)], k=10)
            latencies[slot].append(time.perf_counter() - start)
            i += threads

    workers = [threading.Thread(target=reader, args=(s,)) for s in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    flat = [x for per in latencies for x in per]
    return len(flat), flat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--readers", type=int, default=8)
    parser.add_argument("--slices", type=int, default=5, help="alternations of the phases")
    parser.add_argument(
        "--where", action="store_true", help="print where the memory is (Linux smaps)"
    )
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    queries = rng.standard_normal((64, args.dim)).astype(np.float32)
    url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'mixed.db'}"
    store = VectorTable(url, table_name="mixed")
    store.upsert(vectors, ids=[str(i) for i in range(args.n)])
    matrix_bytes = vectors.nbytes
    del vectors
    release_free_memory()  # what ingest freed is not the search's
    base_rss = rss_bytes()
    base_kinds = resident_by_kind() if args.where else {}
    store.search(queries[0], k=10)  # load the snapshot

    coalescer = store._backend.cache.coalescer  # type: ignore[attr-defined]
    writes = [0]
    writer_rng = np.random.default_rng(1)
    next_id = [args.n]

    def writer(stop: threading.Event) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            fresh = [str(next_id[0] + j) for j in range(50)]
            next_id[0] += 50
            updated = [str(int(x)) for x in writer_rng.integers(0, args.n, 50)]
            ids = fresh + list(dict.fromkeys(updated))[:50]
            batch = writer_rng.standard_normal((len(ids), args.dim)).astype(np.float32)
            store.upsert(batch, ids=ids)  # the same table object: this process's writes
            writes[0] += 1
            time.sleep(max(0.0, 0.05 - (time.perf_counter() - start)))

    def safe_writer(stop: threading.Event) -> None:
        try:
            writer(stop)
        except Exception as exc:  # report, do not hang the bench
            print("writer failed:", exc)

    # The phases alternate in slices (readers only, mixed, readers only, ...): on a
    # shared machine a change of speed during the run then weighs on both alike.
    part = args.seconds / args.slices
    count_r = count_m = 0
    lat_r: list[float] = []
    lat_m: list[float] = []
    products = {"r": [0, 0], "m": [0, 0]}  # queries, products
    peak_readers = peak_bytes = 0
    for i in range(args.slices):
        coalescer.queries = coalescer.batches = 0
        sampler = PeakRss()
        count, lat = run_readers(store, queries, part, args.readers)
        peak = sampler.stop() - base_rss
        if i == 0:  # before any write: what the readers alone need
            peak_readers = peak
        count_r += count
        lat_r += lat
        products["r"][0] += coalescer.queries
        products["r"][1] += coalescer.batches

        coalescer.queries = coalescer.batches = 0
        sampler = PeakRss()
        stop = threading.Event()
        w = threading.Thread(target=safe_writer, args=(stop,))
        w.start()
        count, lat = run_readers(store, queries, part, args.readers)
        stop.set()
        w.join()
        peak_bytes = max(peak_bytes, sampler.stop() - base_rss)
        count_m += count
        lat_m += lat
        products["m"][0] += coalescer.queries
        products["m"][1] += coalescer.batches
    per_product_r = products["r"][0] / max(1, products["r"][1])
    per_product_m = products["m"][0] / max(1, products["m"][1])

    thr_r, thr_m = count_r / args.seconds, count_m / args.seconds
    p50_r, p50_m = statistics.median(lat_r), statistics.median(lat_m)
    print(
        f"## Mixed load: {args.readers} readers + 1 writer, {args.n:,} x {args.dim} "
        f"({args.seconds:.0f} s per phase in {args.slices} alternating slices, "
        f"{writes[0]} upserts of 100 rows)\n"
    )
    limit = 1 / 0.7
    print(
        table(
            [
                Row(
                    "time per search (1 / throughput)",
                    1 / thr_m,
                    "readers only",
                    1 / thr_r,
                    "<= 1.43x (throughput >= 0.7x)",
                    limit,
                ),
                Row("p50 search latency", p50_m, "readers only", p50_r, "<= 2x", 2.0),
            ]
        )
    )
    print()
    print(
        table(
            [
                Row("peak memory, mixed", peak_bytes, "matrix", matrix_bytes, "<= 1.5x", 1.5),
                Row(
                    "peak memory, readers only (first slice)",
                    peak_readers,
                    "matrix",
                    matrix_bytes,
                    "-",
                ),
            ],
            fmt=fmt_bytes,
        )
    )
    print(f"\nqueries per product: {per_product_m:.1f} mixed, {per_product_r:.1f} readers only")
    if args.where:  # at the end of the run (not at the peak), growth since the start
        print("\nresident growth by kind of mapping, end of run:")
        buffer = store._backend.cache._buffer  # type: ignore[attr-defined]
        at = 0 if buffer is None else buffer.ctypes.data + buffer.nbytes // 2  # inside
        for kind, size in sorted(resident_by_kind(at).items(), key=lambda kv: -kv[1]):
            grown = size - base_kinds.get(kind, 0)
            if abs(grown) >= 2**20:
                print(f"- {kind}: {fmt_bytes(grown)}")
    store.close()


if __name__ == "__main__":
    main()
