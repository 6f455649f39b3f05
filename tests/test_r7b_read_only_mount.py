"""A read-only URI on a read-only file system (issue 18, seventh round).

The tests may run as root, where file modes stop no write; a read-only mount does. In a
private mount namespace (``unshare -m``; skipped where that is not allowed), a tmpfs is
filled, remounted read-only, and the table searched through ``mode=ro`` (rollback
journal) and ``immutable=1`` (a WAL file without its ``-shm``, which a read-only reader
could not make): the results are right and the watcher refuses writes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, sqlite3, subprocess, sys
    import numpy as np
    from tidb_jina.store import VectorTable

    where = sys.argv[1]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(100, 8)).astype(np.float32)
    ids = [f"r{i}" for i in range(100)]
    for name, journal in (("ro.db", "delete"), ("imm.db", "wal")):
        path = os.path.join(where, name)
        table = VectorTable(f"sqlite:///{path}", table_name="t", metric="l2")
        table.upsert(vectors, ids=ids)
        table.close()
        plain = sqlite3.connect(path)
        plain.execute(f"PRAGMA journal_mode = {journal}")
        plain.close()
    subprocess.run(["mount", "-o", "remount,ro", where], check=True)
    try:
        open(os.path.join(where, "probe"), "w")
        raise SystemExit("the mount is writable")
    except OSError:
        pass
    query = rng.normal(size=8).astype(np.float32)
    nearest = [ids[i] for i in np.argsort(((vectors - query) ** 2).sum(axis=1))[:5]]
    for name, option in (("ro.db", "mode=ro"), ("imm.db", "immutable=1")):
        path = os.path.join(where, name)
        before = sorted(os.listdir(where))
        table = VectorTable(f"sqlite:///file:{path}?{option}&uri=true", table_name="t", metric="l2")
        got = [h.id for h in table.search(query, k=5)]
        assert got == nearest, (name, got, nearest)
        watcher = table._backend.cache.watcher._conn
        try:
            watcher.execute("CREATE TABLE z (x)")
            raise SystemExit("the watcher wrote")
        except sqlite3.OperationalError as exc:
            assert "readonly" in str(exc), exc
        table.close()
        assert sorted(os.listdir(where)) == before
    print("read-only mount: ok")
    """
)


def test_read_only_uris_on_a_read_only_mount(tmp_path):
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs unshare and mount")
    where = tmp_path / "mnt"
    where.mkdir()
    script = tmp_path / "ro_mount.py"
    script.write_text(SCRIPT)
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()}")
    shell = f"mount -t tmpfs -o size=32m tmpfs '{where}' && "
    shell += f"exec '{sys.executable}' '{script}' '{where}'"
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read-only mount: ok" in done.stdout
