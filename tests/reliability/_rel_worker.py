"""A writer process for the crash and two-process tests (run as a script).

    python _rel_worker.py DB_PATH TABLE START STOP BATCH_ROWS [TAG]

Upserts rows START..STOP-1 in ONE ``VectorTable.upsert`` call, which the table splits into
transactions of BATCH_ROWS rows. Every row is a pure function of its number (see ``row``),
so a reader can check any stored row completely.
"""

from __future__ import annotations

import sys

import numpy as np

DIM = 32


def row_id(i: int) -> str:
    return f"r{i:07d}"


def row_vector(i: int) -> np.ndarray:
    return (np.arange(DIM, dtype=np.float32) + np.float32(i % 1000)) / np.float32(100.0)


def row_document(i: int) -> str:
    return f"document number {i} " + "lorem ipsum " * 8


def row_meta(i: int, tag: str) -> dict:
    return {"i": i, "tag": tag, "even": i % 2 == 0}


def main() -> None:
    db_path, table_name, start, stop, batch_rows = sys.argv[1:6]
    tag = sys.argv[6] if len(sys.argv) > 6 else "crash"
    from tidb_jina.store import VectorTable

    numbers = range(int(start), int(stop))
    table = VectorTable(
        f"sqlite:///{db_path}", table_name=table_name, dimension=DIM, batch_rows=int(batch_rows)
    )
    table.upsert(
        np.stack([row_vector(i) for i in numbers]),
        ids=[row_id(i) for i in numbers],
        documents=[row_document(i) for i in numbers],
        metadatas=[row_meta(i, tag) for i in numbers],
    )
    print("done", table.count(), flush=True)


if __name__ == "__main__":
    main()
