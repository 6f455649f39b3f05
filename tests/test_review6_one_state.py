"""Review of issue 18's sixth round: under writes, every filtered answer is one state.

A writer (another connection, or this very object) moves rows between two tenants, and
marks every row of a state with that state's version, in one transaction per state;
readers search with ``{"t": "A"}`` meanwhile (the fast way without the schema check, the
checked way, the general path). Every answer must be exactly tenant A's rows of ONE
state: never a row of tenant B (a leak), never documents of two versions.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
import pytest

from tidb_jina.store import VectorTable

_N = 60


def _tenant_a(version: int) -> set[str]:
    rng = np.random.default_rng(version)
    return {f"r{i}" for i in np.flatnonzero(rng.random(_N) < 0.4).tolist()}


def _check(hits, seen: list[int], whole: bool = True) -> None:
    versions = {h.document for h in hits}
    assert len(versions) <= 1, versions  # one state
    for h in hits:
        assert h.metadata["t"] == "A", h  # never another tenant's row
    if hits:
        version = int(hits[0].document[1:])
        found, want = {h.id for h in hits}, _tenant_a(version)
        assert found == want if whole else found <= want  # tenant A's rows, nothing else
        seen.append(version)


@pytest.mark.parametrize("writer", ["other connection", "this object"])
def test_filtered_answers_are_one_state_under_writes(tmp_path, writer):
    path = tmp_path / "s.db"
    table = VectorTable(f"sqlite:///{path}", table_name="s")
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(_N, 8)).astype(np.float32)
    ids = [f"r{i}" for i in range(_N)]

    def state(version: int) -> tuple[list[str], list[dict[str, str]]]:
        a = _tenant_a(version)
        return [f"v{version}"] * _N, [{"t": "A" if i in a else "B"} for i in ids]

    docs, metas = state(0)
    table.upsert(vectors, ids=ids, documents=docs, metadatas=metas)
    q = rng.normal(size=8).astype(np.float32)
    table.search(q, k=_N, filter={"t": "A"})  # loaded, columns made
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            conn = sqlite3.connect(path, timeout=30) if writer == "other connection" else None
            version = 0
            while not stop.is_set():
                version += 1
                docs, metas = state(version)
                if conn is None:
                    table.upsert(vectors, ids=ids, documents=docs, metadatas=metas)
                else:
                    with conn:
                        conn.executemany(
                            "UPDATE s SET document = ?, meta = json_object('t', ?) WHERE id = ?",
                            [(d, m["t"], i) for d, m, i in zip(docs, metas, ids, strict=True)],
                        )
                time.sleep(0.002)
            if conn is not None:
                conn.close()
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    seen: list[int] = []

    def read() -> None:
        try:
            while not stop.is_set():
                _check(table.search(q, k=_N, filter={"t": "A"}), seen)
                _check(table.search(q, k=5, filter={"t": "A"}), seen, whole=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(set(seen)) > 3  # the readers really saw the states change
    _check(table.search(q, k=_N, filter={"t": "A"}), seen)
    table.close()
