"""Issue 9.2: a writer killed with SIGKILL mid-add leaves only whole batches.

A child process upserts many rows in one call (the table splits it into transactions of
``BATCH`` rows); the parent watches the row count and kills the child mid-way, twice, then
lets a third run finish. After each kill the file must pass ``PRAGMA integrity_check``, hold
a multiple of ``BATCH`` rows, exactly the first rows of the input, each one complete.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _rel_worker import DIM, row_document, row_id, row_meta, row_vector

from tidb_jina.store import VectorTable

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")

WORKER = Path(__file__).with_name("_rel_worker.py")
N, BATCH = 40_000, 200
TABLE = "crash_docs"


def start_writer(db: Path, start: int = 0, stop: int = N, tag: str = "crash") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), TABLE, str(start), str(stop), str(BATCH), tag],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def committed_rows(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=5)
    try:
        return conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0
    finally:
        conn.close()


def kill_when(db: Path, proc: subprocess.Popen, rows: int) -> None:
    """SIGKILL ``proc`` as soon as at least ``rows`` rows are committed."""
    deadline = time.monotonic() + 60
    while committed_rows(db) < rows:
        assert proc.poll() is None, f"writer ended before the kill: {proc.communicate()}"
        assert time.monotonic() < deadline, "writer made no progress"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def check_whole_batches(db: Path, *, expect_partial: bool) -> int:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        bad = conn.execute(
            f"SELECT count(*) FROM {TABLE} WHERE length(embedding) != ? OR document IS NULL "
            "OR NOT json_valid(meta)",
            (4 * DIM,),
        ).fetchone()[0]
    conn.close()
    assert bad == 0
    table = VectorTable(f"sqlite:///{db}", table_name=TABLE)
    try:
        count = table.count()
        assert count % BATCH == 0, f"{count} rows: a batch of {BATCH} was half written"
        if expect_partial:
            assert 0 < count < N, "the kill did not land mid-way"
        records = table.get(include_embeddings=True)
        # Batches commit in input order: exactly the first `count` rows, each complete.
        assert [r.id for r in records] == [row_id(i) for i in range(count)]
        assert [r.document for r in records] == [row_document(i) for i in range(count)]
        assert [r.metadata for r in records] == [row_meta(i, "crash") for i in range(count)]
        if count:
            np.testing.assert_array_equal(
                np.stack([r.embedding for r in records]),
                np.stack([row_vector(i) for i in range(count)]),
            )
    finally:
        table.engine.dispose()
    return count


@pytest.mark.slow
def test_sigkill_mid_add_leaves_whole_batches_and_rerun_completes(tmp_path):
    db = tmp_path / "crash.db"

    first = start_writer(db)
    kill_when(db, first, rows=N // 5)
    after_first = check_whole_batches(db, expect_partial=True)

    # The re-run rewrites what is there (no duplicates) and is killed again further on.
    second = start_writer(db)
    kill_when(db, second, rows=min(after_first + 10 * BATCH, N - 10 * BATCH))
    after_second = check_whole_batches(db, expect_partial=True)
    assert after_second >= after_first

    third = start_writer(db)
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0, err
    assert out.split() == ["done", str(N)]
    assert check_whole_batches(db, expect_partial=False) == N
