"""The snapshot file when a process dies in the middle of writing it.

A child process is made to die (``os._exit``, no cleanup, as on SIGKILL) at each point
of a save: while the arrays are written, after the header but before the commit, and
after the commit but before the rename. Whatever is left on disk, the next open must
give the table's exact committed rows: the old file only if it still holds them.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tidb_jina.store import VectorTable

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX rename and mmap")

DIM, N = 16, 400

CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from tidb_jina.store import VectorTable, _snapshot_file as sf

    url, where, write = sys.argv[1], sys.argv[2], sys.argv[3] == "write"

    def die(*args, **kwargs):
        os._exit(9)

    if where == "arrays":
        sf._write_arrays = die
    elif where == "header":  # the header is in the file; the commit is not done
        real_header = sf._write_header
        def header_then_die(*args, **kwargs):
            real_header(*args, **kwargs)
            die()
        sf._write_header = header_then_die
    elif where == "rename":  # committed, not renamed
        sf.os.replace = die
    table = VectorTable(url, table_name="t", snapshot_file=True)
    table.search(np.ones(16, np.float32), k=1)
    cache = table._backend.cache
    cache.file.wait()
    if write:  # our own write: the file is behind, close() saves again
        table.upsert(np.full((1, 16), -3, np.float32), ids=["r0"])
        table.close()
    else:  # nothing written: save the same state again
        cache.file.save(cache, cache.snapshot)
    os._exit(0)
    """
)


def _vectors() -> np.ndarray:
    return np.random.default_rng(5).standard_normal((N, DIM)).astype(np.float32)


def _built(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    table = VectorTable(url, table_name="t", snapshot_file=True)
    table.upsert(_vectors(), ids=[f"r{i}" for i in range(N)])
    table.search(_vectors()[0], k=1)
    table._backend.cache.file.wait()
    table.close()
    return url


@pytest.mark.parametrize("where", ["arrays", "header", "rename"])
@pytest.mark.parametrize("write", [True, False], ids=["after-own-write", "same-state"])
def test_a_save_cut_short_never_gives_wrong_rows(tmp_path, where, write):
    url = _built(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, where, "write" if write else "same"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr
    table = VectorTable(url, table_name="t", snapshot_file=True)
    reference = VectorTable(url, table_name="t")  # the rows, read now
    queries = np.concatenate([_vectors()[:5], np.full((1, DIM), -3, np.float32)])
    for q in queries:
        got = [(h.id, h.distance) for h in table.search(q, k=5)]
        assert got == [(h.id, h.distance) for h in reference.search(q, k=5)]
    if write:  # the stored token moved (or is NULL): the old file is never used
        assert not table._backend.cache.file.used
        assert table.search(queries[-1], k=1)[0].id == "r0"
    elif where != "rename":  # nothing committed: the old file still holds the rows
        assert table._backend.cache.file.used
    else:  # a new token was committed, its file never renamed: the old one is refused
        assert not table._backend.cache.file.used
    table._backend.cache.file.wait()  # written again if refused; the dead child's temp gone
    table.close()
    reference.close()
    assert not list(tmp_path.glob("*.tmp"))
    again = VectorTable(url, table_name="t", snapshot_file=True)
    again.search(queries[0], k=1)
    assert again._backend.cache.file.used
    again.close()


FULL_DISK_CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    import numpy as np
    from tidb_jina.store import VectorTable

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail: EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))  # no file beyond 1 MiB
    table = VectorTable(sys.argv[1], table_name="t", snapshot_file=True)
    q = np.ones(int(sys.argv[2]), np.float32)
    first = [h.id for h in table.search(q, k=5)]
    table._backend.cache.file.wait()  # the save failed with OSError on the thread
    assert table._backend.cache.file.saved is None
    assert [h.id for h in table.search(q, k=5)] == first  # the table still works
    print(",".join(first))
    sys.stdout.flush()
    os._exit(0)
    """
)


def test_a_full_disk_while_writing_leaves_no_file_and_a_working_table(tmp_path):
    """The file system refuses the file's bytes (a real EFBIG from ``RLIMIT_FSIZE``):
    the save is given up with a warning, no file (not even a temporary one) is left,
    and the next open reads the rows and writes a good file."""
    url, dim, n = f"sqlite:///{tmp_path / 'full.db'}", 128, 3000  # a 1.5 MB file
    vectors = np.random.default_rng(2).standard_normal((n, dim)).astype(np.float32)
    table = VectorTable(url, table_name="t")  # no file yet
    table.upsert(vectors, ids=[f"r{i}" for i in range(n)])
    expected = [h.id for h in table.search(np.ones(dim, np.float32), k=5)]
    table.close()
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, url, str(dim)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ",".join(expected)
    assert "could not write the snapshot file" in done.stderr  # said, not hidden
    assert sorted(p.name for p in tmp_path.iterdir() if "vectors" in p.name) == []
    again = VectorTable(url, table_name="t", snapshot_file=True)
    assert [h.id for h in again.search(np.ones(dim, np.float32), k=5)] == expected
    again._backend.cache.file.wait()
    again.close()
    reopened = VectorTable(url, table_name="t", snapshot_file=True)
    assert [h.id for h in reopened.search(np.ones(dim, np.float32), k=5)] == expected
    assert reopened._backend.cache.file.used
    reopened.close()


EXIT_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tidb_jina.store import VectorTable

    table = VectorTable(sys.argv[1], table_name="t", snapshot_file=True)
    print(table.search(np.ones(16, np.float32), k=1)[0].id)
    # no close(), no wait: the interpreter ends while the file may still be written
    """
)


def test_a_script_that_ends_right_after_its_first_search_leaves_a_good_file(tmp_path):
    url = _built(tmp_path)
    (tmp_path / "crash.db.t.vectors").unlink()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_CHILD, url], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr  # nothing printed
    assert (tmp_path / "crash.db.t.vectors").exists()  # the thread finished first
    assert not list(tmp_path.glob("*.tmp"))
    table = VectorTable(url, table_name="t", snapshot_file=True)
    assert table.search(np.ones(16, np.float32), k=1)[0].id == done.stdout.strip()
    assert table._backend.cache.file.used
    table.close()
