"""Search right after a delete: this process's deletes are applied to the in-memory
vectors; before issue 18 they made the next search reload every vector.

Each round, on a file table of ``--n`` x ``--dim`` (cosine):

1. this process deletes ``--rows`` rows (``VectorTable.delete``), timed;
2. the next search is timed ("right after our delete"), then the same search again on
   the same state ("no delete before it": the baseline);
3. a plain ``sqlite3`` connection deletes ``--rows`` other rows (a foreign commit, timed:
   the baseline of our delete), and the next search is timed: it reloads every vector,
   which is what our own deletes cost before.

Medians over ``--rounds``. Goal: a search right after our delete at most 1.5x one with
no delete before it.

    python bench/delete_then_search.py [--n 100000] [--dim 768] [--rows 100] [--rounds 9]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from _common import Row, random_vectors, table

from tidb_jina.store import VectorTable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if 2 * args.rows * args.rounds >= args.n:
        parser.error("--n must exceed 2 x --rows x --rounds (rows deleted in all)")
    folder = Path(tempfile.mkdtemp())
    try:
        run(args, folder / "deletes.db")
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # hundreds of MB at the default size


def run(args: argparse.Namespace, path: Path) -> None:
    vectors = random_vectors(args.n, args.dim)
    store = VectorTable(f"sqlite:///{path}", table_name="d")
    for start in range(0, args.n, 50_000):
        part = vectors[start : start + 50_000]
        store.upsert(part, ids=[str(i) for i in range(start, start + len(part))])
    queries = random_vectors(args.rounds, args.dim, seed=7)
    del vectors
    store.search(queries[0], k=10)  # the vectors are in memory from here on
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA busy_timeout = 10000")
    sql = f"DELETE FROM d WHERE id IN ({','.join('?' * args.rows)})"  # noqa: S608 (placeholders)
    times: dict[str, list[float]] = {k: [] for k in ("del", "after", "steady", "raw", "reload")}

    def clock(key: str, fn) -> None:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - start)

    next_id = 0
    for r in range(args.rounds):
        q = queries[r]
        ours = [str(i) for i in range(next_id, next_id + args.rows)]
        theirs = [str(i) for i in range(next_id + args.rows, next_id + 2 * args.rows)]
        next_id += 2 * args.rows
        clock("del", lambda ids=ours: store.delete(ids))
        clock("after", lambda q=q: store.search(q, k=10))
        clock("steady", lambda q=q: store.search(q, k=10))
        clock("raw", lambda ids=theirs: raw.execute(sql, ids))
        clock("reload", lambda q=q: store.search(q, k=10))
    raw.close()
    store.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"## Search right after a {args.rows}-row delete, {args.n:,} x {args.dim} "
        f"(median of {args.rounds})\n"
    )
    print(
        table(
            [
                Row(
                    "search right after our delete",
                    med["after"],
                    "search, no delete before it",
                    med["steady"],
                    "<= 1.5x",
                    1.5,
                ),
                Row(
                    "search after a foreign delete (reload; our deletes before)",
                    med["reload"],
                    "search, no delete before it",
                    med["steady"],
                    "-",
                ),
                Row(
                    f"our {args.rows}-row delete (applied to the snapshot)",
                    med["del"],
                    "raw sqlite3 DELETE ... IN",
                    med["raw"],
                    "-",
                ),
            ]
        )
    )


if __name__ == "__main__":
    main()
