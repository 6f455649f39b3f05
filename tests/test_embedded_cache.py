"""The embedded engine's in-memory vector copy is reused, and never stale."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tidb_jina.store import VectorTable, connect


@pytest.fixture(params=["memory", "file"])
def url_or_engine(request, tmp_path):
    if request.param == "memory":
        return connect("sqlite://")  # one shared in-memory database
    return f"sqlite:///{tmp_path / 'cache.db'}"


def _unit(i: int, d: int = 4) -> np.ndarray:
    v = np.zeros(d, dtype=np.float32)
    v[i] = 1.0
    return v


def test_snapshot_is_reused_while_nothing_changes(url_or_engine):
    table = VectorTable(url_or_engine, table_name="c")
    table.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    table.search(_unit(0), k=1)
    first = table._backend.cache.snapshot
    assert first is not None
    table.search(_unit(1), k=1, filter={"x": {"$exists": False}})
    assert table._backend.cache.snapshot is first, "an unchanged table must not be re-read"


def test_writes_through_another_handle_are_seen(url_or_engine):
    reader = VectorTable(url_or_engine, table_name="c")
    writer = VectorTable(url_or_engine, table_name="c")
    writer.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert [h.id for h in reader.search(_unit(0), k=1)] == ["a"]
    writer.upsert([_unit(2)], ids=["a"])  # in-place update: same rowid, new vector
    query = np.array([1.0, 0.5, 0.0, 0.0], dtype=np.float32)
    assert [h.id for h in reader.search(query, k=2)] == ["b", "a"]
    assert reader.search(_unit(2), k=1)[0].distance == pytest.approx(0.0, abs=1e-6)
    writer.delete(["b"])
    assert [h.id for h in reader.search(_unit(1), k=5)] == ["a"]


@pytest.mark.slow
def test_writes_from_another_process_are_seen(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    table = VectorTable(url, table_name="c")
    table.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert table.search(_unit(3), k=1)[0].id in {"a", "b"}
    script = textwrap.dedent(
        f"""
        import numpy as np
        from tidb_jina.store import VectorTable
        t = VectorTable({url!r}, table_name="c")
        t.upsert([np.array([0, 0, 0, 1], dtype=np.float32)], ids=["z"])
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    hits = table.search(_unit(3), k=1)
    assert hits[0].id == "z" and hits[0].distance == pytest.approx(0.0, abs=1e-6)


def test_cache_can_be_turned_off(url_or_engine):
    table = VectorTable(url_or_engine, table_name="c", search_cache=False)
    table.upsert([_unit(0), _unit(1)], ids=["a", "b"])
    assert table.search(_unit(1), k=1)[0].id == "b"
    assert table._backend.cache.snapshot is None


def test_l2_distances_are_exact_for_identical_vectors(url_or_engine):
    table = VectorTable(url_or_engine, table_name="l2", metric="l2")
    rng = np.random.default_rng(1)
    vectors = (rng.standard_normal((50, 64)) * 100).astype(np.float32)
    table.upsert(vectors, ids=[str(i) for i in range(50)])
    hit = table.search(vectors[7], k=1)[0]
    assert hit.id == "7" and hit.distance == 0.0 and hit.score == 1.0
