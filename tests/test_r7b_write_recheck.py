"""A write checks, inside its own transaction, that the table is the one its rows were
checked against (issue 18, seventh round; ``_write_check``).

Another process dropped the table and made it again with 8 dimensions between this
table's dimension check (4) and its write transaction: the 4-dimension row went into
the 8-dimension table, and every later search of it failed with "holds vectors whose
length is not 8". The interleaving is forced with the paused state of
``test_r7b_loaded_view`` (the write pauses right after it read the table).
"""

from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest
from test_r7b_loaded_view import _in_victim, _pause

from tidb_jina import DimensionMismatchError, SchemaError
from tidb_jina.store import VectorTable


@pytest.fixture(params=[True, False], ids=["snapshot", "no-cache"])
def table(request, tmp_path):
    table = VectorTable(
        f"sqlite:///{tmp_path / 'w.db'}", table_name="w", search_cache=request.param
    )
    rng = np.random.default_rng(4)
    table.upsert(rng.normal(size=(20, 4)).astype(np.float32), ids=[str(i) for i in range(20)])
    table.search(rng.normal(size=4).astype(np.float32), k=2)
    assert (table._backend.cache.snapshot is not None) is request.param
    yield table
    table.close()


def _write_while(table: VectorTable, meanwhile) -> object:
    """Upsert one 4-dimension row "x"; ``meanwhile()`` runs after the write read the
    table, before its transaction. Returns the upsert's result or error."""
    state = _pause(table, ("_write",))
    thread, got = _in_victim(lambda: table.upsert([np.ones(4, dtype=np.float32)], ids=["x"]))
    assert state.paused.wait(10)
    meanwhile()
    state.gate.set()
    thread.join(10)
    assert not thread.is_alive()
    state.paused.set()  # pauses no more
    return got["result"]


def test_a_table_made_again_with_another_dimension_is_never_written_the_old_size(table):
    url = str(table.engine.url)

    def recreate() -> None:
        other = VectorTable(url, table_name="w")  # another connection (or process)
        other.drop()
        other.upsert([np.ones(8, dtype=np.float32)], ids=["eight"])
        other.close()

    result = _write_while(table, recreate)
    assert isinstance(result, DimensionMismatchError), repr(result)
    assert "VECTOR(8)" in str(result) and "not written" in str(result)
    raw = sqlite3.connect(url.removeprefix("sqlite:///"))
    assert raw.execute("SELECT id, length(embedding) FROM w").fetchall() == [("eight", 32)]
    raw.close()
    hits = table.search(np.ones(8, dtype=np.float32), k=3)  # no "holds vectors whose ..."
    assert [h.id for h in hits] == ["eight"]


def test_a_table_dropped_meanwhile_says_so_and_the_write_again_makes_it(table):
    url = str(table.engine.url)

    def drop() -> None:
        other = VectorTable(url, table_name="w")
        other.drop()
        other.close()

    result = _write_while(table, drop)
    assert isinstance(result, SchemaError) and "dropped by another connection" in str(result)
    assert table.upsert([np.ones(4, dtype=np.float32)], ids=["x"]) == ["x"]
    assert [h.id for h in table.search(np.ones(4, dtype=np.float32), k=5)] == ["x"]


def test_another_table_created_meanwhile_lets_the_write_through(table):
    path = str(table.engine.url).removeprefix("sqlite:///")

    def unrelated() -> None:
        raw = sqlite3.connect(path)
        raw.execute("CREATE TABLE unrelated (x)")  # the schema cookie moves
        raw.commit()
        raw.close()

    assert _write_while(table, unrelated) == ["x"]
    hits = table.search(np.ones(4, dtype=np.float32), k=1)
    assert hits[0].id == "x" and len(table.get(["x"])) == 1


def test_a_view_refreshed_by_another_thread_meanwhile_still_refuses_the_old_size(table):
    """The in-transaction check skipped its shape read when the schema cookie equalled
    the cache's last seen one; another thread of this process that read the new schema
    meanwhile (any call: here ``dimension``) moved that cookie to the new table's, so
    the 4-dimension row went into the 8-dimension table unchecked."""
    url = str(table.engine.url)
    paused, gate = threading.Event(), threading.Event()
    upsert = table._backend.upsert

    def late_upsert(*args, **kwargs):  # the facade checked the rows; the write not begun
        paused.set()
        assert gate.wait(10)
        return upsert(*args, **kwargs)

    table._backend.upsert = late_upsert
    thread, got = _in_victim(lambda: table.upsert([np.ones(4, dtype=np.float32)], ids=["x"]))
    assert paused.wait(10)
    other = VectorTable(url, table_name="w")  # another connection (or process)
    other.drop()
    other.upsert([np.ones(8, dtype=np.float32)], ids=["eight"])
    other.close()
    assert table.dimension == 8  # this process has seen the new table (its cookie too)
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(got["result"], DimensionMismatchError), repr(got["result"])
    raw = sqlite3.connect(url.removeprefix("sqlite:///"))
    assert raw.execute("SELECT id, length(embedding) FROM w").fetchall() == [("eight", 32)]
    raw.close()
    assert [h.id for h in table.search(np.ones(8, dtype=np.float32), k=3)] == ["eight"]


def test_a_table_made_again_as_no_vector_table_is_never_written(table):
    path = str(table.engine.url).removeprefix("sqlite:///")

    def replace() -> None:
        raw = sqlite3.connect(path)
        raw.execute("DROP TABLE w")
        raw.execute("CREATE TABLE w (id TEXT PRIMARY KEY, embedding TEXT, document, meta)")
        raw.commit()
        raw.close()

    result = _write_while(table, replace)
    assert isinstance(result, SchemaError) and "not a vector table" in str(result), repr(result)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT count(*) FROM w").fetchone() == (0,)
    raw.close()


def test_a_re_creation_between_two_batches_keeps_the_first_and_writes_no_more(
    tmp_path, monkeypatch
):
    """A 6-row upsert in batches of 2; another connection makes the table again with 8
    dimensions after the first batch committed. As documented for a failure in batch k:
    the batches before it were committed (here into the table that was then dropped),
    nothing of the refused batch or after it is written, the error says so, and the
    table object then serves the new table."""
    from tidb_jina.store import _incremental

    url = f"sqlite:///{tmp_path / 'b.db'}"
    table = VectorTable(url, table_name="w", batch_rows=2)
    rng = np.random.default_rng(6)
    table.upsert(rng.normal(size=(4, 4)).astype(np.float32), ids=["a", "b", "c", "d"])
    table.search(rng.normal(size=4).astype(np.float32), k=1)  # the snapshot: kept up
    real_confirmed, done = _incremental._confirmed, []

    def confirmed_then_recreate(cache, conn, own):
        found = real_confirmed(cache, conn, own)
        if not done:  # after the first batch's commit, before the second's transaction
            done.append(True)
            other = VectorTable(url, table_name="w")
            other.drop()
            other.upsert([np.ones(8, dtype=np.float32)], ids=["eight"])
            other.close()
        return found

    monkeypatch.setattr(_incremental, "_confirmed", confirmed_then_recreate)
    with pytest.raises(DimensionMismatchError, match=r"VECTOR\(8\).*not written"):
        table.upsert(np.ones((6, 4), dtype=np.float32), ids=[f"n{i}" for i in range(6)])
    monkeypatch.undo()
    raw = sqlite3.connect(url.removeprefix("sqlite:///"))
    assert raw.execute("SELECT id, length(embedding) FROM w").fetchall() == [("eight", 32)]
    raw.close()
    assert table.dimension == 8
    assert [h.id for h in table.search(np.ones(8, dtype=np.float32), k=5)] == ["eight"]
    table.close()


def test_two_threads_making_the_table_with_two_dimensions_never_mix_sizes(tmp_path):
    """Two threads of one table object write the first rows of a new table, 4 and 8
    dimensions. The 4-dimension write found no table, then ``_create`` handed it the
    table the other thread had just made (8): the in-transaction check compared that
    table's own dimension with itself, and the 4-dimension row went in."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    table = VectorTable(url, table_name="w")
    real_create = table._create
    paused, gate = threading.Event(), threading.Event()

    def late_create(*args, **kwargs):
        if threading.current_thread().name == "victim":
            paused.set()
            assert gate.wait(10)
        return real_create(*args, **kwargs)

    table._create = late_create
    thread, got = _in_victim(lambda: table.upsert([np.ones(4, dtype=np.float32)], ids=["four"]))
    assert paused.wait(10)
    table.upsert([np.ones(8, dtype=np.float32)], ids=["eight"])
    gate.set()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(got["result"], DimensionMismatchError), repr(got["result"])
    assert "VECTOR(8)" in str(got["result"]) and "4-dimension" in str(got["result"])
    raw = sqlite3.connect(url.removeprefix("sqlite:///"))
    assert raw.execute("SELECT id, length(embedding) FROM w").fetchall() == [("eight", 32)]
    raw.close()
    table.close()
