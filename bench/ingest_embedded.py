"""Embedded ingest: our ``VectorTable.upsert`` against raw ``sqlite3`` executemany.

Measures the wall time to write ``n`` rows (id, float32 vector, document, metadata) into a
fresh embedded database file, starting from a NumPy matrix and Python dicts.

Baseline (same run, same file system, same table: the DDL our table was created with,
same pragmas: WAL, synchronous=NORMAL): Python's ``sqlite3`` with ``executemany`` of
``(id, float32 blob, document, metadata JSON)``, plain INSERT, encoding included
(``ndarray.tobytes``, ``json.dumps``); once in one transaction, once in transactions of
our batch size. Ours validates everything and upserts (INSERT ... ON CONFLICT DO UPDATE).

Goal (issue 18): at most 1.2x the baseline in transactions of our batch size (the same
commits as ours). The one-transaction row keeps the first goal (within 2x). Wall time is
the goal; CPU time (this process's, SQLite included) is printed too, because on a shared
machine the disk's load moves the wall time of both contestants by more than the gap.

    python bench/ingest_embedded.py [--n 100000] [--dim 768] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import Row, random_vectors, table, timed

from tidb_jina.store import VectorTable
from tidb_jina.store._backend_embedded import DEFAULT_EMBEDDED_BATCH_ROWS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    vectors = random_vectors(args.n, args.dim)
    ids = [str(i) for i in range(args.n)]
    docs = [f"document number {i}" for i in range(args.n)]
    metas = [{"group": i % 10} for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp:  # each run's files go as soon as it ends
        times, cpu = _runs(Path(tmp), args.repeat, vectors, ids, docs, metas)

    ours, one, batched = (statistics.median(times[k]) for k in ("ours", "one", "batched"))
    cpu_ours, cpu_batched = (statistics.median(cpu[k]) for k in ("ours", "batched"))
    batched_name = f"sqlite3 executemany, {DEFAULT_EMBEDDED_BATCH_ROWS:,}-row transactions"
    print(f"## Embedded ingest, {args.n:,} x {args.dim} float32 rows (median of {args.repeat})\n")
    print(
        table(
            [
                Row("upsert", ours, batched_name, batched, "<= 1.2x", 1.2),
                Row("upsert", ours, "sqlite3 executemany, 1 transaction", one, "<= 2x", 2.0),
                Row("upsert, CPU time", cpu_ours, f"{batched_name}, CPU time", cpu_batched, "-"),
            ]
        )
    )
    print(f"\nours: {args.n / ours:,.0f} rows/s; raw sqlite3: {args.n / batched:,.0f} rows/s")


def _runs(
    workdir: Path,
    repeat: int,
    vectors: np.ndarray,
    ids: list[str],
    docs: list[str],
    metas: list[dict],
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds of each contestant. Runs are interleaved and the order turns
    each repeat (ours first, then second, then third), so neither machine noise nor the
    write-back of the previous contestant's file favours one; each database is deleted
    once measured (100k x 768 is 0.4 GB a file)."""
    n = len(ids)
    ddl = _our_ddl(workdir, vectors.shape[1])
    times: dict[str, list[float]] = {"ours": [], "one": [], "batched": []}
    cpu: dict[str, list[float]] = {"ours": [], "one": [], "batched": []}
    batch = {"one": n, "batched": DEFAULT_EMBEDDED_BATCH_ROWS}
    names = list(times)
    for run in range(repeat):
        for name in names[run % 3 :] + names[: run % 3]:
            db = workdir / f"{name}.db"
            if name == "ours":
                store = VectorTable(f"sqlite:///{db}", table_name="bench")
                _measure(
                    times[name],
                    cpu[name],
                    lambda s=store: s.upsert(vectors, ids=ids, documents=docs, metadatas=metas),
                )
                assert store.count() == n
                store.close()
            else:
                conn = _raw_connection(db, ddl)
                _measure(
                    times[name],
                    cpu[name],
                    lambda c=conn, b=batch[name]: _raw_ingest(c, vectors, ids, docs, metas, b),
                )
                assert conn.execute("SELECT count(*) FROM bench").fetchone()[0] == n
                conn.close()
            _remove(db)
    return times, cpu


def _remove(db: Path) -> None:
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


def _measure(wall: list[float], cpu: list[float], fn: Callable[[], object]) -> None:
    """Append the wall time and this process's CPU time of one call of ``fn``."""
    start = time.process_time()
    wall.append(timed(fn))
    cpu.append(time.process_time() - start)


def _our_ddl(workdir: Path, dim: int) -> str:
    """The CREATE TABLE statement our store uses, so the baseline has the same schema."""
    db = workdir / "schema.db"
    VectorTable(f"sqlite:///{db}", table_name="bench").create(dim)
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT sql FROM sqlite_master WHERE name = 'bench'").fetchone()[0]


def _raw_connection(path: Path, ddl: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(ddl)
    return conn


def _raw_ingest(
    conn: sqlite3.Connection,
    vectors: np.ndarray,
    ids: list[str],
    docs: list[str],
    metas: list[dict],
    batch: int,
) -> None:
    sql = "INSERT INTO bench (id, embedding, document, meta) VALUES (?, ?, ?, ?)"
    for start in range(0, len(ids), batch):
        stop = start + batch
        rows = zip(
            ids[start:stop],
            (v.tobytes() for v in vectors[start:stop]),
            docs[start:stop],
            (json.dumps(m) for m in metas[start:stop]),
            strict=True,
        )
        conn.execute("BEGIN")
        conn.executemany(sql, rows)
        conn.execute("COMMIT")


if __name__ == "__main__":
    main()
