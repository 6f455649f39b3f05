"""The table object and its shape are read together (issue 18, seventh round).

``TableBase._loaded`` read the table object (``_load()``), then the shape, in two steps
with no lock: a drop by another thread in between (``drop()``, or ``_load`` noticing a
re-creation and resetting the state) gave the old table with no shape, so no dimension:
a query of the wrong size was sent to the engine, and the caller got "no such table:
... Check that the file exists" instead of the dimension error. ``_adopt`` also set the
table, then (after other work) the shape, so a reader could pair a new table with the
old shape.

Both now live in one immutable ``TableView`` that ``TableState`` replaces whole. The
interleaving is forced: the state pauses the searching thread right after it read the
table (``Pausing``), while the main thread drops the table.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import numpy as np
import pytest

from tidb_jina import DimensionMismatchError
from tidb_jina.store import VectorTable
from tidb_jina.store._backend import TableState

# the facade's methods that read the table object for a search (old and new names)
SEARCH_READERS = ("_load", "_load_view")


class Pausing(TableState):
    """``TableState`` that pauses the thread named ``victim`` once, right after it read
    the table (``table`` or ``view``) in one of the methods ``readers``."""

    paused: threading.Event
    gate: threading.Event
    readers: tuple[str, ...]

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if (
            name in ("table", "view")
            and threading.current_thread().name == "victim"
            and sys._getframe(1).f_code.co_name in super().__getattribute__("readers")
            and not super().__getattribute__("paused").is_set()
        ):
            super().__getattribute__("paused").set()
            assert super().__getattribute__("gate").wait(10)
        return value


def _pause(table: VectorTable, readers: tuple[str, ...] = SEARCH_READERS) -> Pausing:
    state = table._state
    state.__class__ = Pausing  # the same object (the backend shares it), now pausing
    assert isinstance(state, Pausing)
    state.paused, state.gate = threading.Event(), threading.Event()
    state.readers = readers
    return state


def _in_victim(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    got: dict[str, Any] = {}

    def run() -> None:
        try:
            got["result"] = call()
        except BaseException as exc:
            got["result"] = exc

    thread = threading.Thread(target=run, name="victim", daemon=True)
    thread.start()
    return thread, got


@pytest.fixture
def table(tmp_path):
    table = VectorTable(f"sqlite:///{tmp_path / 'v.db'}", table_name="v")
    rng = np.random.default_rng(3)
    table.upsert(rng.normal(size=(30, 4)).astype(np.float32), ids=[str(i) for i in range(30)])
    table.search(rng.normal(size=4).astype(np.float32), k=2)
    yield table
    table.close()


@pytest.mark.parametrize("many", [False, True])
def test_a_drop_between_the_table_and_its_shape_gives_the_dimension_error(table, many):
    """A query of 8 dimensions on a 4-dimension table, the table dropped meanwhile: the
    answer belongs to one state, the table before the drop (the dimension error) or
    after it (nothing found), never a query sent to a table it does not fit."""
    state = _pause(table)
    query = np.ones(8, dtype=np.float32)
    thread, got = _in_victim(
        (lambda: table.search_many([query], k=3)) if many else (lambda: table.search(query, k=3))
    )
    assert state.paused.wait(10)
    table.drop()  # another thread of the app
    state.gate.set()
    thread.join(10)
    assert not thread.is_alive()
    result = got["result"]
    assert isinstance(result, DimensionMismatchError) or result in ([], [[]]), repr(result)


@pytest.mark.parametrize("recreate", [False, True])
def test_a_write_racing_a_drop_is_checked_against_the_table_it_goes_to(table, recreate):
    """``_write`` read the table, then (after the model check) the shape. A drop by
    another thread in between left it no shape to check against, and the rows went to
    the dropped table ("no such table"). Now the table written and its shape are one
    state, read last: after a drop the table is made again (as for a write after the
    drop); after a re-creation with 8 dimensions the 4-dimension row is refused, never
    written with the wrong size."""
    state = _pause(table, ("_write",))
    thread, got = _in_victim(lambda: table.upsert([np.ones(4, dtype=np.float32)], ids=["x"]))
    assert state.paused.wait(10)
    table.drop()  # another thread of the app
    if recreate:
        table.upsert([np.ones(8, dtype=np.float32)], ids=["eight"])
    state.gate.set()
    thread.join(10)
    assert not thread.is_alive()
    if recreate:
        assert isinstance(got["result"], DimensionMismatchError), repr(got["result"])
        assert [h.id for h in table.search(np.ones(8, dtype=np.float32), k=5)] == ["eight"]
    else:
        assert got["result"] == ["x"], repr(got["result"])
        assert table.dimension == 4
        assert [h.id for h in table.search(np.ones(4, dtype=np.float32), k=5)] == ["x"]


def test_the_view_is_replaced_whole():
    from tidb_jina.store._backend import NO_TABLE, TableView

    state = TableState()
    assert state.view is NO_TABLE and state.table is None and state.shape is None
    view = TableView(table=None, shape=None)
    state.view = view
    state.reset()
    assert state.view is NO_TABLE and not state.loaded
