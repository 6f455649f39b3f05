"""Cold open: a new process opens a file table and answers its first search.

Baseline, in the same run: a new process ``np.load``-s the same float32 matrix from a
``.npy`` file (the floor for getting the vectors into memory). Each contestant runs in
its own fresh process (alternating, ``--rounds`` times, median) after the same imports,
and reports its wall time, its peak resident memory above the process's after imports
(``VmHWM``), and what stays resident after the first result.

Goals (``docs``: issue 18): time at most 2x ``np.load``; peak at most 1.3x the matrix;
resident afterwards at most 1.2x the matrix.

    python bench/cold_open.py [--n 100000] [--dim 768] [--rounds 3] [--meta] [--dir DIR]
                              [--snapshot-file]

A third contestant, also in its own new process, is the floor of any reader through the
``sqlite3`` driver: a bare loop that copies each row's BLOB into a preallocated matrix,
fetched in chunks of about 1 MiB as the store does (bigger chunks cost page faults)
(printed as "sqlite3 read loop": ours against it, and it against ``np.load``).

``--warm`` reads each contestant's files once right before it runs, so every contestant
(``np.load`` included) reads from the page cache: on a shared machine the cache may or
may not still hold a 3 GB file, and that alone moved ``np.load`` at 1M from 0.6 s to 3.9 s.

``--snapshot-file`` adds the opt-in snapshot file (``VectorTable(..., snapshot_file=True)``)
as two more contestants, each round: a first open with no file (it reads the rows, then
writes the file on a thread: its time to first result, and until the file is written)
and a second open that maps that file.

``--meta`` stores small metadata with every row (``{"g": i % 100, "title": "row i"}``);
``--dir`` keeps the database and the ``.npy`` file in DIR and reuses them when present
(at 1M x 768 they take about 7 GB: delete DIR afterwards).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import Row, fmt_bytes, random_vectors, table

from tidb_jina.store import VectorTable

CHILD = r"""
import json, sys, time
import numpy as np
from tidb_jina.store import VectorTable

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0

kind, target, dim = sys.argv[1], sys.argv[2], int(sys.argv[3])
query = np.ones(dim, dtype=np.float32)
base = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
    f.write("5")
start = time.perf_counter()
written = None
if kind == "npload":
    matrix = np.load(target)
    _ = matrix[:1] @ query
elif kind == "sqlite3":  # the floor of any reader through the sqlite3 module
    import sqlite3
    con = sqlite3.connect(target.removeprefix("sqlite:///"))
    key = 'INDEXED BY "sqlite_autoindex_cold_1"'  # the primary key's index: few pages
    count = con.execute(f'SELECT count(*) FROM "cold" {key}').fetchone()[0]
    matrix = np.empty((count, dim), dtype=np.float32)
    flat, width, at = memoryview(matrix.data).cast("B"), 4 * dim, 0
    cursor = con.execute('SELECT embedding FROM "cold" ORDER BY rowid')
    while rows := cursor.fetchmany(max(1, 2**20 // width)):  # 1 MiB chunks, as the store
        for (blob,) in rows:
            flat[at : at + width] = blob
            at += width
    assert at == matrix.nbytes, (at, matrix.nbytes)
    _ = matrix[:1] @ query
elif kind == "store":
    hits = VectorTable(target, table_name="cold").search(query, k=10)
    assert len(hits) == 10
else:  # snapbuild / snapmap: the opt-in snapshot file
    store = VectorTable(target, table_name="cold", snapshot_file=True)
    hits = store.search(query, k=10)
    assert len(hits) == 10
    assert store._backend.cache.file.used == (kind == "snapmap"), kind
seconds = time.perf_counter() - start
again = None
if kind == "npload":  # once more in this process: memory the system has handed out before
    del matrix
    restart = time.perf_counter()
    matrix = np.load(target)
    _ = matrix[:1] @ query
    again = time.perf_counter() - restart
if kind == "snapbuild":  # the file, written on a thread after the first result
    store._backend.cache.file.wait()
    written = time.perf_counter() - start
    assert store._backend.cache.file.saved is not None
print(json.dumps({"seconds": seconds, "peak": status("VmHWM:") - base,
                  "resident": status("VmRSS:") - base, "written": written,
                  "again": again}))
"""


def run(kind: str, target: str, dim: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, kind, target, str(dim)],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def read_through(path: Path) -> None:
    """Read a file once (into the page cache), in 16 MiB pieces."""
    piece = bytearray(16 * 2**20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(piece):
            pass


def build(url: str, npy: Path, n: int, dim: int, meta: bool) -> None:
    vectors = random_vectors(n, dim)
    np.save(npy, vectors)
    store = VectorTable(url, table_name="cold")
    for start in range(0, n, 50_000):
        part = vectors[start : start + 50_000]
        ids = range(start, start + len(part))
        metas = [{"g": i % 100, "title": f"row {i}"} for i in ids] if meta else None
        store.upsert(part, ids=[str(i) for i in ids], metadatas=metas)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--meta", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--snapshot-file", action="store_true")
    parser.add_argument("--warm", action="store_true")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'cold.db'}"
    npy = folder / "matrix.npy"
    matrix_bytes = 4 * args.n * args.dim
    if not (npy.exists() and (folder / "cold.db").exists()):
        build(url, npy, args.n, args.dim, args.meta)
    ours, base, floor, builds, maps = [], [], [], [], []
    snap = folder / "cold.db.cold.vectors"
    db = folder / "cold.db"

    def warm(*paths: Path) -> None:
        if args.warm:
            for path in paths:
                read_through(path)

    for _ in range(args.rounds):
        warm(npy)
        base.append(run("npload", str(npy), args.dim))
        warm(db)
        ours.append(run("store", url, args.dim))
        warm(db)
        floor.append(run("sqlite3", url, args.dim))
        if args.snapshot_file:
            snap.unlink(missing_ok=True)
            warm(db)
            builds.append(run("snapbuild", url, args.dim))
            warm(db, snap)
            maps.append(run("snapmap", url, args.dim))

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"## Cold open to first result, {args.n:,} x {args.dim} ({args.rounds} rounds)\n")
    print(
        table(
            [
                Row(
                    "open + first search",
                    med(ours, "seconds"),
                    "np.load",
                    med(base, "seconds"),
                    "<= 2x",
                    2.0,
                ),
                Row(
                    "open + first search",
                    med(ours, "seconds"),
                    "sqlite3 read loop",
                    med(floor, "seconds"),
                    "-",
                ),
                Row(
                    "sqlite3 read loop",
                    med(floor, "seconds"),
                    "np.load",
                    med(base, "seconds"),
                    "-",
                ),
            ]
        )
    )
    print()
    print(
        table(
            [
                Row("peak memory", med(ours, "peak"), "matrix", matrix_bytes, "<= 1.3x", 1.3),
                Row(
                    "resident after", med(ours, "resident"), "matrix", matrix_bytes, "<= 1.2x", 1.2
                ),
                Row("np.load peak", med(base, "peak"), "matrix", matrix_bytes, "-"),
            ],
            fmt=fmt_bytes,
        )
    )
    if args.snapshot_file:
        snapshot_rows(builds, maps, base, matrix_bytes)
        snap.unlink(missing_ok=True)


def snapshot_rows(
    builds: list[dict[str, float]],
    maps: list[dict[str, float]],
    base: list[dict[str, float]],
    matrix_bytes: int,
) -> None:
    """The opt-in snapshot file's two opens, next to the same run's ``np.load`` (also
    its second load in one process: on a VM, memory first handed to a process can cost
    several times a copy from the page cache, which inflates the first ``np.load``)."""

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    npload, npload_peak, again = med(base, "seconds"), med(base, "peak"), med(base, "again")

    print("\n### With `snapshot_file=True`\n")
    print(
        table(
            [
                Row(
                    "second open (maps the file)",
                    med(maps, "seconds"),
                    "np.load",
                    npload,
                    "<= 2x",
                    2.0,
                ),
                Row(
                    "second open (maps the file)",
                    med(maps, "seconds"),
                    "np.load again, same process",
                    again,
                    "<= 2x",
                    2.0,
                ),
                Row("first open, first result", med(builds, "seconds"), "np.load", npload, "-"),
                Row("first open, file written", med(builds, "written"), "np.load", npload, "-"),
            ]
        )
    )
    print()
    print(
        table(
            [
                Row("second open: peak", med(maps, "peak"), "matrix", matrix_bytes, "<= 1.3x", 1.3),
                Row(
                    "second open: resident after",
                    med(maps, "resident"),
                    "matrix",
                    matrix_bytes,
                    "<= 1.2x",
                    1.2,
                ),
                Row("first open: peak", med(builds, "peak"), "matrix", matrix_bytes, "-"),
                Row("np.load peak", npload_peak, "matrix", matrix_bytes, "-"),
            ],
            fmt=fmt_bytes,
        )
    )


if __name__ == "__main__":
    main()
