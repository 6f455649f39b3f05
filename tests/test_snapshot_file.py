"""The opt-in snapshot file (``snapshot_file=``): used only with a proof of freshness.

Real files, real SQLite, and real second processes where it matters: the file is mapped
on reopen with results identical to the streamed load, and any write by anyone, a
VACUUM, a re-created table or a damaged file makes it ignored (and rebuilt), never used.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tidb_jina import ConfigurationError
from tidb_jina.store import VectorTable
from tidb_jina.store._snapshot_file import FORMAT_VERSION, MAGIC, STATE_TABLE

DIM = 16
N = 600
METRICS = ["cosine", "l2", "inner_product"]


def _vectors(n: int = N, dim: int = DIM, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'snap.db'}"


def _open(url: str, metric: str = "cosine", **kw) -> VectorTable:
    return VectorTable(url, table_name="t", metric=metric, snapshot_file=True, **kw)


def _hits(table: VectorTable, queries: np.ndarray, k: int = 10, **kw) -> list:
    return [[(h.id, h.distance) for h in table.search(q, k=k, **kw)] for q in queries]


def _used(table: VectorTable) -> bool:
    """Whether the table's last load mapped the file (after its first search)."""
    return table._backend.cache.file.used


def _settle(table: VectorTable) -> None:
    """Wait for the file written after a streamed load."""
    table._backend.cache.file.wait()


def _file(tmp_path: Path) -> Path:
    return tmp_path / "snap.db.t.vectors"


def _built(tmp_path: Path, metric: str = "cosine", n: int = N) -> tuple[str, np.ndarray]:
    """A table of ``n`` rows whose snapshot file is written and valid."""
    url = _url(tmp_path)
    vectors = _vectors(n)
    table = _open(url, metric)
    table.upsert(
        vectors, ids=[f"r{i}" for i in range(n)], metadatas=[{"g": i % 7} for i in range(n)]
    )
    table.search(vectors[0], k=1)  # the streamed load, then the file on a thread
    _settle(table)
    table.close()
    assert _file(tmp_path).exists()
    return url, vectors


def _reopened_uses_file(url: str, probe: np.ndarray, metric: str = "cosine") -> bool:
    table = _open(url, metric)
    try:
        table.search(probe, k=1)
        return _used(table)
    finally:
        table.close()


@pytest.mark.parametrize("metric", METRICS)
def test_reopen_maps_the_file_with_identical_results(tmp_path, metric):
    url, _ = _built(tmp_path, metric)
    queries = _vectors(8, seed=11)
    mapped = _open(url, metric)
    got = _hits(mapped, queries)
    assert _used(mapped)
    assert not mapped._backend.cache.snapshot.matrix.flags.writeable  # the map itself
    filtered = _hits(mapped, queries[:2], filter={"g": 3})
    streamed = VectorTable(url, table_name="t", metric=metric)  # no file: the rows
    assert got == _hits(streamed, queries)  # ids and distances, bit for bit
    assert filtered == _hits(streamed, queries[:2], filter={"g": 3})
    assert all(len(h) == 10 for h in got)
    mapped.close()
    streamed.close()


def test_write_by_another_connection_makes_it_stale(tmp_path):
    url, vectors = _built(tmp_path)
    for sql, args in [
        ("UPDATE t SET embedding = ? WHERE id = 'r5'", (np.ones(DIM, "<f4").tobytes(),)),
        ("DELETE FROM t WHERE id = 'r6'", ()),
        (
            "INSERT INTO t (id, embedding, meta) VALUES ('x', ?, '{}')",
            (np.ones(DIM, "<f4").tobytes(),),
        ),
        (
            "INSERT OR REPLACE INTO t (id, embedding, meta) VALUES ('r1', ?, '{}')",
            (np.zeros(DIM, "<f4").tobytes(),),
        ),
    ]:
        db = sqlite3.connect(tmp_path / "snap.db")
        db.execute(sql, args)
        db.commit()
        db.close()
        table = _open(url)
        table.search(vectors[0], k=1)
        assert not _used(table), sql
        _settle(table)  # rebuilt from the rows
        table.close()
        assert _reopened_uses_file(url, vectors[0]), sql
    table = _open(url)
    ones = table.search(np.ones(DIM, np.float32), k=2)
    assert [h.id for h in ones][:2] in (["x", "r5"], ["r5", "x"])
    assert table.get(ids=["r6"]) == []
    table.close()


def test_delete_all_rows_by_sql_makes_it_stale(tmp_path):
    url, vectors = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "snap.db")
    db.execute("DELETE FROM t")  # no WHERE: SQLite skips the truncation, triggers fire
    db.commit()
    db.close()
    table = _open(url)
    assert table.search(vectors[0], k=3) == []
    assert not _used(table)
    table.close()


def test_write_by_another_process_makes_it_stale(tmp_path):
    url, _ = _built(tmp_path)
    script = textwrap.dedent(
        """
        import sqlite3, sys
        import numpy as np
        db = sqlite3.connect(sys.argv[1])
        db.execute("UPDATE t SET embedding = ? WHERE id = 'r9'", (np.full(16, 7, '<f4').tobytes(),))
        db.commit()
        """
    )
    subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "snap.db")], check=True, timeout=60
    )
    table = _open(url)
    hit = table.search(np.full(DIM, 7, np.float32), k=1)[0]
    assert not _used(table)
    assert hit.id == "r9" and hit.distance == pytest.approx(0.0, abs=1e-6)
    table.close()


def test_rolled_back_write_leaves_it_valid(tmp_path):
    url, vectors = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "snap.db")
    db.execute("DELETE FROM t WHERE id = 'r2'")
    db.rollback()
    db.close()
    table = _open(url)
    assert table.search(vectors[2], k=1)[0].id == "r2"
    assert _used(table)
    table.close()


def test_vacuum_makes_it_stale(tmp_path):
    url, vectors = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "snap.db")
    db.execute("VACUUM")
    db.close()
    table = _open(url)
    assert table.search(vectors[4], k=1)[0].id == "r4"
    assert not _used(table)
    table.close()


def test_table_dropped_and_created_again_with_the_same_name(tmp_path):
    url, vectors = _built(tmp_path)
    other = VectorTable(url, table_name="t")  # no option: another user of the file
    other.drop()
    other.upsert(vectors[:3] * -1, ids=["a", "b", "c"])
    other.close()
    table = _open(url)
    assert table.search(vectors[0] * -1, k=3)[0].id == "a"
    assert not _used(table)
    assert table.count() == 3
    table.close()


def test_another_dimension_is_never_mapped(tmp_path):
    url, _ = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "snap.db")
    db.execute("DROP TABLE t")
    db.commit()
    db.close()
    table = _open(url)
    wide = _vectors(5, dim=DIM * 2)
    table.upsert(wide, ids=list("abcde"))
    assert table.search(wide[1], k=1)[0].id == "b"
    assert not _used(table)
    table.close()


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) - 100]
    elif how == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif how == "magic":
        data[:8] = b"NOTSNAP\x00"
    elif how == "version":
        data[8:12] = (FORMAT_VERSION + 1).to_bytes(4, "little")
    elif how == "header":
        data[16:40] = b"{not json at all........"
    elif how == "empty":
        data = bytearray()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "garbage", "magic", "version", "header", "empty"])
def test_damaged_file_is_ignored_and_rebuilt(tmp_path, how):
    url, vectors = _built(tmp_path)
    assert _file(tmp_path).read_bytes()[:8] == MAGIC
    _damage(_file(tmp_path), how)
    table = _open(url)
    assert table.search(vectors[7], k=1)[0].id == "r7"
    assert not _used(table)
    _settle(table)
    table.close()
    assert _reopened_uses_file(url, vectors[7])


def test_a_file_of_another_database_is_refused(tmp_path):
    """Two copies of one database that diverged never share a token."""
    url, vectors = _built(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "snap.db").write_bytes((tmp_path / "snap.db").read_bytes())
    table = _open(f"sqlite:///{copy / 'snap.db'}")
    table.upsert(vectors[:1] * 3, ids=["z"])  # a streamed load first, then its own file
    table.search(vectors[0], k=1)
    _settle(table)
    table.close()
    # the copy's file, laid beside the original: its token is not the original's
    os.replace(copy / "snap.db.t.vectors", _file(tmp_path))
    table = _open(url)
    assert table.search(vectors[0] * 3, k=1)[0].id == "r0"
    assert not _used(table)
    table.close()


def test_own_writes_after_a_mapped_open(tmp_path):
    url, vectors = _built(tmp_path, "l2")
    table = _open(url, "l2")
    table.search(vectors[0], k=1)
    assert _used(table)
    table.upsert(vectors[:5] + 100, ids=["n0", "n1", "n2", "n3", "n4"])  # appends
    table.upsert(vectors[10:11] - 50, ids=["r10"])  # replaces a mapped row
    table.delete(ids=["r11"])
    fresh = VectorTable(url, table_name="t", metric="l2")  # the rows, read now
    queries = np.concatenate([vectors[:3] + 100, vectors[10:12] - 50, vectors[11:12]])
    assert _hits(table, queries, k=5) == _hits(fresh, queries, k=5)
    assert table.search(vectors[10] - 50, k=1)[0].id == "r10"
    assert "r11" not in [h.id for h in table.search(vectors[11], k=5)]
    fresh.close()
    table.close()  # the file is behind our writes: written again
    again = _open(url, "l2")
    assert _hits(again, queries, k=5)[0][0][0] == "n0"
    assert _used(again)
    assert again.count() == N + 5 - 1
    again.close()


def test_clear_invalidates_and_drop_removes_the_file(tmp_path):
    url, vectors = _built(tmp_path)
    table = _open(url)
    table.search(vectors[0], k=1)
    assert table.clear() == N
    other = _open(url)  # before close() writes the (empty) file again
    assert other.search(vectors[0], k=1) == []
    assert not _used(other)
    other.close()
    table.close()
    table = _open(url)
    assert table.search(vectors[0], k=1) == []
    table.upsert(vectors[:4], ids=list("abcd"))
    table.drop()
    assert not _file(tmp_path).exists()
    db = sqlite3.connect(tmp_path / "snap.db")
    assert db.execute(f"SELECT count(*) FROM {STATE_TABLE} WHERE table_name = 't'").fetchone() == (
        0,
    )
    db.close()
    table.close()


def test_drop_existing_removes_the_file(tmp_path):
    url, vectors = _built(tmp_path)
    table = _open(url, drop_existing=True)
    assert not table.exists()
    assert not _file(tmp_path).exists()
    table.upsert(vectors[:2], ids=["a", "b"])
    assert [h.id for h in table.search(vectors[1], k=2)] == ["b", "a"]
    assert not _used(table)
    table.close()


def test_directory_option(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    url = _url(tmp_path)
    table = VectorTable(url, table_name="t", snapshot_file=folder)
    vectors = _vectors(50)
    table.upsert(vectors, ids=[str(i) for i in range(50)])
    table.search(vectors[0], k=1)
    _settle(table)
    table.close()
    (saved,) = folder.glob("snap.db.*.t.vectors")  # the database's own file in the folder
    table = VectorTable(url, table_name="t", snapshot_file=str(folder))
    assert table.search(vectors[9], k=1)[0].id == "9"
    assert _used(table)
    table.close()
    # another database of the same name, same folder: its own file, neither overwritten
    (tmp_path / "other").mkdir()
    other_url = _url(tmp_path / "other")
    other = VectorTable(other_url, table_name="t", snapshot_file=folder)
    other.upsert(vectors[:5], ids=[f"o{i}" for i in range(5)])
    other.search(vectors[0], k=1)
    _settle(other)
    other.close()
    assert len(list(folder.glob("snap.db.*.t.vectors"))) == 2 and saved.exists()
    for where, first in ((url, "9"), (other_url, "o3")):
        probe = vectors[int(first[-1])]
        table = VectorTable(where, table_name="t", snapshot_file=folder)
        assert table.search(probe, k=1)[0].id == first
        assert _used(table)
        table.close()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:shared_snap?mode=memory&cache=shared&uri=true",
        "mysql+pymysql://user:secret@127.0.0.1:4000/test",
        "sqlite:///file:/tmp/snap_ro.db?mode=ro&uri=true",
    ],
)
def test_option_refused_without_a_database_file(url):
    with pytest.raises(ConfigurationError, match="snapshot_file") as err:
        VectorTable(url, table_name="t", snapshot_file=True)
    assert "secret" not in str(err.value)


def test_bad_option_values(tmp_path, monkeypatch):
    url = _url(tmp_path)
    with pytest.raises(ConfigurationError, match="not an existing directory"):
        VectorTable(url, snapshot_file=tmp_path / "missing")
    with pytest.raises(ConfigurationError, match="True, False or a directory"):
        VectorTable(url, snapshot_file=3)
    with pytest.raises(ConfigurationError, match="not an existing directory"):
        VectorTable(url, snapshot_file="")  # not silently the current directory
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    real_access = os.access  # root may write anyway: the check is asked to say no
    monkeypatch.setattr(os, "access", lambda p, m: p != locked and real_access(p, m))
    with pytest.raises(ConfigurationError, match="cannot write to"):
        VectorTable(url, snapshot_file=locked)
    with pytest.raises(ConfigurationError, match="search_cache=True"):
        VectorTable(url, snapshot_file=True, search_cache=False)


def test_our_triggers_removed_means_no_trust(tmp_path):
    url, vectors = _built(tmp_path)
    db = sqlite3.connect(tmp_path / "snap.db")
    db.execute('DROP TRIGGER "t__snap_au"')
    db.commit()
    db.close()
    table = _open(url)
    table.search(vectors[0], k=1)
    assert not _used(table)  # the schema cookie moved, and a trigger is missing
    _settle(table)  # repaired with the new file
    table.close()
    assert _reopened_uses_file(url, vectors[0])


OPENER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from tidb_jina.store import VectorTable
    table = VectorTable(sys.argv[1], table_name="t", snapshot_file=True)
    q = np.random.default_rng(int(sys.argv[2])).standard_normal(16).astype(np.float32)
    for _ in range(3):
        hits = table.search(q, k=3)
    print(",".join(h.id for h in hits))
    table.close()
    """
)


def test_two_processes_opening_at_once(tmp_path):
    url, vectors = _built(tmp_path)
    _file(tmp_path).unlink()  # both load the rows and both write a file
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, url, str(seed)], stdout=subprocess.PIPE, text=True
        )
        for seed in (1, 2)
    ]
    outs = [run.communicate(timeout=120)[0].strip() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    reference = VectorTable(url, table_name="t")
    for seed, out in zip((1, 2), outs, strict=True):
        q = np.random.default_rng(seed).standard_normal(16).astype(np.float32)
        assert out == ",".join(h.id for h in reference.search(q, k=3))
    reference.close()
    assert not list(tmp_path.glob("*.tmp"))
    table = _open(url)
    assert table.search(vectors[5], k=1)[0].id == "r5"  # the file, or the rows: right
    _settle(table)
    table.close()
    assert _reopened_uses_file(url, vectors[5])


def test_an_older_file_is_refused(tmp_path):
    """A crash after the commit that set a new token, before the rename: the file in
    place is the previous one, whose token is no longer the stored one."""
    url, vectors = _built(tmp_path)
    older = tmp_path / "older"
    older.write_bytes(_file(tmp_path).read_bytes())
    table = _open(url)
    table.search(vectors[0], k=1)
    table.upsert(vectors[:1] * -1, ids=["r3"])  # own write: close() writes a new file
    table.close()
    os.replace(older, _file(tmp_path))
    table = _open(url)
    assert table.search(vectors[0] * -1, k=1)[0].id == "r3"
    assert not _used(table)
    table.close()


def test_temporary_files_of_ended_processes_are_removed(tmp_path):
    url, vectors = _built(tmp_path)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = tmp_path / f"snap.db.t.vectors.{ended.stdout.strip()}.abcd1234.tmp"
    orphan.write_bytes(b"half a file")
    _file(tmp_path).unlink()
    table = _open(url)
    table.search(vectors[0], k=1)
    _settle(table)
    table.close()
    assert not orphan.exists()
    assert _reopened_uses_file(url, vectors[0])


async def test_async_view_maps_the_file(tmp_path):
    url, vectors = _built(tmp_path, "inner_product")
    table = _open(url, "inner_product")
    hits = await table.aio.search(vectors[8], k=3)
    assert hits[0].id == "r8"
    assert _used(table)
    await table.aclose()


def test_a_save_is_seen_once_by_another_reader(tmp_path):
    """A save commits a new token: another table object reloads once, by mapping the new
    file, and writes none itself; the saver keeps its snapshot (relabelled, no reload)."""
    url, vectors = _built(tmp_path)
    _file(tmp_path).unlink()
    first = _open(url)
    first.search(vectors[0], k=1)  # reads the rows, then saves
    _settle(first)
    kept = first._backend.cache.snapshot
    second = _open(url)
    assert second.search(vectors[1], k=1)[0].id == "r1"
    assert _used(second)
    _settle(second)
    assert first.search(vectors[2], k=1)[0].id == "r2"
    assert first._backend.cache.snapshot.matrix is kept.matrix  # not loaded again
    assert second.search(vectors[3], k=1)[0].id == "r3"
    assert _used(second)
    first.close()
    second.close()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_delete_then_update_after_a_mapped_open(tmp_path, metric):
    """A delete leaves a dead slot in the mapped (read-only) matrix; the update after
    it may reuse dead slots (``_slots``): it must copy out of the map, never write it."""
    url, vectors = _built(tmp_path, metric)
    table = _open(url, metric)
    table.search(vectors[0], k=1)
    assert _used(table)
    table.delete(ids=["r1", "r2"])  # dead slots in the map
    table.upsert(vectors[20:23] * -1, ids=["r20", "r21", "r22"])  # updates
    table.upsert(vectors[30:31] * -1, ids=["r30"])
    fresh = VectorTable(url, table_name="t", metric=metric)  # the rows, read now
    queries = np.concatenate([vectors[1:3], -vectors[20:23], -vectors[30:31], _vectors(4, seed=9)])
    assert _hits(table, queries, k=5) == _hits(fresh, queries, k=5)
    assert _hits(table, queries[:3], k=5, filter={"g": 6}) == _hits(
        fresh, queries[:3], k=5, filter={"g": 6}
    )
    fresh.close()
    table.close()
