"""The database file's pages a fast search touches do not stay resident (issue 18).

A fast search reads its winners' rows on the watcher's connection. Through a memory map,
every page it touched counted in the process's resident size until the map was dropped,
and the kernel maps 16 neighbouring pages per fault (fault-around): 1,024 random rows of
a 100,000 x 768 table kept about 64 MB of the file resident, a sixth of the matrix. The
rows are read with SQLite's ordinary reads now (its page cache is bounded by
``cache_size``). Measured from ``/proc/self/smaps``: Linux only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tidb_jina.store import VectorTable

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/smaps"),
    reason="reads /proc/self/smaps (Linux)",
)


def mapped_file_bytes(path: Path) -> int:
    """Resident bytes of every mapping of ``path`` in this process (``/proc/self/smaps``)."""
    target = str(path.resolve())
    total, inside = 0, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(maxsplit=5)
            if head and "-" in head[0] and len(head) >= 5 and ":" in head[3]:  # a mapping
                inside = len(head) == 6 and head[5].strip() == target
            elif inside and head[0] == "Rss:":
                total += int(head[1]) * 1024
    return total


def test_mapped_file_bytes_sees_a_mapped_file(tmp_path):
    """The measure itself: a file mapped and read shows as resident (else the bound
    below could not fail)."""
    import mmap

    path = tmp_path / "m.bin"
    path.write_bytes(os.urandom(4 * 2**20))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert mapped_file_bytes(path) < 2**20  # mapped, not read yet
        sum(m[i] for i in range(0, len(m), 4096))  # touch every page
        assert mapped_file_bytes(path) >= 4 * 2**20 - 8192
    assert mapped_file_bytes(path) == 0


def test_fast_searches_leave_no_file_pages_resident(tmp_path):
    n, d = 4000, 768  # rows of about 3 KB: one file page each, a 16 MB file
    path = tmp_path / "r.db"
    table = VectorTable(f"sqlite:///{path}", table_name="r")
    rng = np.random.default_rng(5)
    table.upsert(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[f"r{i}" for i in range(n)],
        metadatas=[{"g": i % 10} for i in range(n)],
    )
    queries = rng.normal(size=(50, d)).astype(np.float32)
    table.search(queries[0], k=10)  # loads the snapshot (the load's map is dropped)
    watcher = table._backend.cache.watcher
    reads = []
    real = watcher.read_then_token
    watcher.read_then_token = lambda statements: reads.append(1) or real(statements)
    peak = 0
    for i in range(300):  # 3,000 winners spread over the whole file
        flt = {"g": i % 10} if i % 2 else None
        hits = table.search(queries[i % 50], k=10, filter=flt)
        assert len(hits) == 10
        if i % 25 == 0:
            peak = max(peak, mapped_file_bytes(path))
    peak = max(peak, mapped_file_bytes(path))
    assert len(reads) == 300  # every search took the fast path
    assert os.path.getsize(path) > 12 * 2**20
    # through a map with fault-around this was most of the 16 MB file
    assert peak <= 2**20, f"{peak / 2**20:.1f} MiB of the database file resident"
    table.close()
