"""The streamed loader reads exactly the stored vectors, window by window, on real files."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from tidb_jina.store import VectorTable, _stream_load
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._stream_load import count_rows, load_vectors

DIM = 8
METRICS = [DistanceMetric.COSINE, DistanceMetric.L2, DistanceMetric.INNER_PRODUCT]


@pytest.fixture
def small_windows(monkeypatch):
    """Windows of 7 rows read in chunks of 3: every boundary case on a few rows."""
    monkeypatch.setattr(_stream_load, "WINDOW_ROWS", 7)
    monkeypatch.setattr(_stream_load, "WINDOWS", 10**9)
    monkeypatch.setattr(_stream_load, "CHUNK_BYTES", 3 * 4 * DIM)
    assert _stream_load.chunk_rows(DIM) == 3


def test_chunks_hold_about_a_mebibyte_of_vectors():
    """Big chunks of big rows were freed to the system and faulted in again each time."""
    assert _stream_load.chunk_rows(768) == 341  # 1 MiB / 3 KiB
    assert _stream_load.chunk_rows(4096) == 64
    assert _stream_load.chunk_rows(8) == _stream_load.MAX_CHUNK_ROWS  # small rows: capped
    assert _stream_load.chunk_rows(16_000_000) == 1  # a row above 1 MiB: one at a time


def _table(tmp_path, n: int, metas: bool = False) -> tuple[sa.Engine, sa.Table, np.ndarray]:
    url = f"sqlite:///{tmp_path / 'load.db'}"
    vectors = np.random.default_rng(7).standard_normal((n, DIM)).astype(np.float32)
    store = VectorTable(url, table_name="t", dimension=DIM)
    if n:
        meta = [{"i": i, "s": f"row {i}"} for i in range(n)] if metas else None
        store.upsert(vectors, ids=[f"r{i}" for i in range(n)], metadatas=meta)
    else:
        store.upsert(np.ones((1, DIM), np.float32), ids=["x"])
        store.delete(ids=["x"])
    store.close()
    engine = sa.create_engine(url)
    return engine, sa.Table("t", sa.MetaData(), autoload_with=engine), vectors


def _reference(engine: sa.Engine) -> tuple[np.ndarray, np.ndarray]:
    """(rowids, vectors) decoded one by one with NumPy, in rowid order."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT rowid, embedding FROM t ORDER BY rowid").all()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    vecs = np.array([np.frombuffer(r[1], dtype="<f4") for r in rows]).reshape(-1, DIM)
    return ids, vecs


@pytest.mark.parametrize("metric", METRICS)
def test_loaded_matrix_is_the_stored_vectors_prepared_for_the_metric(
    tmp_path, small_windows, metric
):
    engine, table, _ = _table(tmp_path, 40)
    with engine.begin() as conn:  # gaps, a negative and the largest rowid: window edges
        conn.exec_driver_sql("DELETE FROM t WHERE rowid IN (3, 7, 8, 21)")
        blob = np.arange(DIM, dtype="<f4").tobytes()
        conn.exec_driver_sql(
            "INSERT INTO t (rowid, id, embedding) VALUES (-5, 'neg', ?), (?, 'max', ?)",
            (blob, 2**63 - 1, blob),
        )
    ids, vecs = _reference(engine)
    with engine.connect() as conn:
        loaded = load_vectors(conn, table, DIM, metric)
    n = ids.size
    assert n == 38
    np.testing.assert_array_equal(loaded.rowids, ids)
    assert loaded.buffer.shape[0] >= n  # spare rows for appends
    matrix = loaded.buffer[:n]
    if metric is DistanceMetric.COSINE:
        expected = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        np.testing.assert_allclose(matrix, expected, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(matrix, vecs)
    if metric is DistanceMetric.L2:
        assert loaded.sq_norms is not None
        np.testing.assert_allclose(loaded.sq_norms[:n], (vecs * vecs).sum(axis=1), rtol=1e-5)
    else:
        assert loaded.sq_norms is None


def test_a_table_whose_row_count_is_a_multiple_of_the_window(tmp_path, small_windows):
    engine, table, vectors = _table(tmp_path, 14)  # two full windows, then an empty one
    with engine.connect() as conn:
        loaded = load_vectors(conn, table, DIM, DistanceMetric.INNER_PRODUCT)
    np.testing.assert_array_equal(loaded.buffer[:14], vectors)


@pytest.mark.parametrize("metric", METRICS)
def test_zero_rows(tmp_path, metric):
    engine, table, _ = _table(tmp_path, 0)
    with engine.connect() as conn:
        loaded = load_vectors(conn, table, DIM, metric, meta_bytes=1000)
    assert loaded.rowids.shape == (0,)
    assert loaded.buffer.shape[1] == DIM
    assert loaded.metas == []


@pytest.mark.parametrize(
    "bad",
    [
        np.ones(DIM - 1, "<f4").tobytes(),  # too short
        np.ones(DIM + 1, "<f4").tobytes(),  # too long
        "[1, 2, 3, 4, 5, 6, 7, 8]",  # text, not a BLOB
        42,
    ],
)
def test_a_vector_of_another_size_or_type_is_a_clear_error(tmp_path, small_windows, bad):
    engine, table, _ = _table(tmp_path, 10)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO t (rowid, id, embedding) VALUES (100, 'bad', ?)", (bad,))
    with engine.connect() as conn, pytest.raises(ValueError, match=f"not {DIM} float32"):
        load_vectors(conn, table, DIM, DistanceMetric.COSINE)
    store = VectorTable(f"sqlite:///{tmp_path / 'load.db'}", table_name="t")
    with pytest.raises(Exception, match="another dimension"):  # SchemaError at the facade
        store.search(np.ones(DIM, np.float32), k=3)
    store.close()


def test_the_count_uses_the_primary_key_index_and_agrees_with_count_star(tmp_path):
    engine, table, _ = _table(tmp_path, 25)
    with engine.connect() as conn:
        assert _stream_load._pk_index(conn, "t") is not None
        plan = conn.exec_driver_sql(
            'EXPLAIN QUERY PLAN SELECT count("id") FROM "t" INDEXED BY '
            f'"{_stream_load._pk_index(conn, "t")[0]}"'  # type: ignore[index]
        ).all()
        assert "COVERING INDEX" in str(plan)
        assert count_rows(conn, table) == 25
        conn.exec_driver_sql("CREATE TABLE peer (embedding BLOB, meta TEXT)")  # no key
        conn.exec_driver_sql("INSERT INTO peer VALUES (x'00', NULL), (x'01', NULL)")
        peer = sa.Table("peer", sa.MetaData(), autoload_with=conn)
        assert _stream_load._pk_index(conn, "peer") is None
        assert count_rows(conn, peer) == 2


def test_the_connection_mmap_setting_is_restored(tmp_path, small_windows):
    engine, table, _ = _table(tmp_path, 20)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA mmap_size = 4096").all()
        load_vectors(conn, table, DIM, DistanceMetric.COSINE)
        assert conn.exec_driver_sql("PRAGMA mmap_size").scalar() == 4096


def test_metadata_texts_are_kept_within_the_bound(tmp_path, small_windows):
    engine, table, _ = _table(tmp_path, 20, metas=True)
    with engine.connect() as conn:
        texts = [r[0] for r in conn.exec_driver_sql("SELECT meta FROM t ORDER BY rowid")]
        kept = load_vectors(conn, table, DIM, DistanceMetric.COSINE, meta_bytes=10**6)
        assert kept.metas == texts
        small = load_vectors(conn, table, DIM, DistanceMetric.COSINE, meta_bytes=50)
        assert small.metas is None  # over the bound: nothing kept
        none = load_vectors(conn, table, DIM, DistanceMetric.COSINE)
        assert none.metas is None


def _mapped_kb(path: str) -> int | None:
    """Resident KB of this process's mappings of ``path`` (None: no /proc here)."""
    try:
        with open("/proc/self/smaps") as smaps:
            lines = smaps.read().splitlines()
    except OSError:
        return None
    total, inside = 0, False
    for line in lines:
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's header line
            inside = line.endswith(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


def test_the_file_is_read_mapped_and_unmapped_after_each_window(tmp_path, monkeypatch):
    """The memory map is really used, and its pages leave the resident set per window."""
    monkeypatch.setattr(_stream_load, "WINDOW_ROWS", 64)
    monkeypatch.setattr(_stream_load, "WINDOWS", 10**9)
    engine, table, vectors = _table(tmp_path, 300)
    path = str(tmp_path / "load.db")
    if _mapped_kb(path) is None:
        pytest.skip("no /proc/self/smaps")
    seen: list[tuple[int, int]] = []
    real = _stream_load._unmap

    def unmap(conn):
        before = _mapped_kb(path)
        real(conn)
        seen.append((before, _mapped_kb(path)))  # type: ignore[arg-type]

    monkeypatch.setattr(_stream_load, "_unmap", unmap)
    with engine.connect() as conn:
        loaded = load_vectors(conn, table, DIM, DistanceMetric.INNER_PRODUCT)
    np.testing.assert_array_equal(loaded.buffer[:300], vectors)
    assert len(seen) == 5  # 300 rows in windows of 64
    assert any(before > 0 for before, _ in seen)  # pages were read through the map
    assert all(after == 0 for _, after in seen)  # and released after each window
    assert _mapped_kb(path) == 0
