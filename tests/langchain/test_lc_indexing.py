"""LangChain's indexing API on the store: ``index()`` / ``aindex()`` with record managers.

The record manager remembers which document hashes were written; ``index`` then skips
unchanged documents, and its cleanup modes delete what the sources no longer hold. It
calls ``add_documents(docs, ids=..., batch_size=...)`` and ``delete(ids)``, so these run
the store's real write and delete paths on every engine (embedded in memory and in a
file; TiDB when ``TIDB_DATABASE_URL`` answers), with both record managers: langchain-core's
``InMemoryRecordManager`` and langchain-classic's ``SQLRecordManager`` (on SQLite).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.indexing import InMemoryRecordManager, RecordManager, aindex, index

from langchain_tidb_jina import ProviderEmbeddings, TiDBVectorStore
from tidb_jina import DatabaseError, InvalidInputError
from tidb_jina.testing import LexicalEmbedder

pytest.importorskip("langchain_classic")
from langchain_classic.indexes import SQLRecordManager

MakeStore = Callable[..., TiDBVectorStore]
SOURCES = {
    "a.md": ["TiDB stores vectors next to rows", "TiDB speaks the MySQL protocol"],
    "b.md": ["Basil pesto comes from Genoa", "Pesto needs pine nuts and basil"],
    "c.md": ["Jina embeddings map text to vectors", "Rerankers reorder search hits"],
}


def _docs(sources: dict[str, list[str]]) -> list[Document]:
    """Each source split into its chunks (what a loader plus a text splitter yields)."""
    return [
        Document(page_content=text, metadata={"source": name, "chunk": i})
        for name, chunks in sources.items()
        for i, text in enumerate(chunks)
    ]


@pytest.fixture
def store(make_store: MakeStore) -> TiDBVectorStore:
    return make_store(ProviderEmbeddings(provider=LexicalEmbedder(dimension=64)))


@pytest.fixture(params=["in-memory", "sql"])
def record_manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordManager]:
    if request.param == "in-memory":
        manager: Any = InMemoryRecordManager(namespace="tidb/docs")
    else:
        manager = SQLRecordManager("tidb/docs", db_url=f"sqlite:///{tmp_path / 'records.db'}")
    manager.create_schema()
    yield manager
    if request.param == "sql":
        manager.engine.dispose()


def _run(docs: list[Document], manager: RecordManager, store: TiDBVectorStore, **kw: Any) -> Any:
    return index(docs, manager, store, key_encoder="sha256", **kw)


def _contents(store: TiDBVectorStore) -> set[str]:
    return {d.page_content for d in store.similarity_search("TiDB pesto Jina", k=20)}


def test_full_cleanup_skips_unchanged_and_deletes_a_removed_source(
    store: TiDBVectorStore, record_manager: RecordManager
) -> None:
    docs = _docs(SOURCES)
    first = _run(docs, record_manager, store, cleanup="full")
    assert first == {"num_added": 6, "num_updated": 0, "num_skipped": 0, "num_deleted": 0}
    assert store.vector_table.count() == 6

    second = _run(docs, record_manager, store, cleanup="full")
    assert second == {"num_added": 0, "num_updated": 0, "num_skipped": 6, "num_deleted": 0}
    assert store.vector_table.count() == 6

    without_b = _docs({k: v for k, v in SOURCES.items() if k != "b.md"})
    third = _run(without_b, record_manager, store, cleanup="full")
    assert third == {"num_added": 0, "num_updated": 0, "num_skipped": 4, "num_deleted": 2}
    assert store.vector_table.count() == 4
    assert _contents(store) == {d.page_content for d in without_b}
    assert store.similarity_search("pesto", k=4, filter={"source": "b.md"}) == []


@pytest.mark.parametrize(
    ("cleanup", "expected", "left"),
    [
        # None: the changed chunk is added, its old version and c.md stay
        (None, {"num_added": 1, "num_skipped": 3, "num_deleted": 0}, 7),
        # incremental: the old version of a.md's chunk goes; c.md (not seen) stays
        ("incremental", {"num_added": 1, "num_skipped": 3, "num_deleted": 1}, 6),
        # scoped_full: like incremental, for the sources seen in this run
        ("scoped_full", {"num_added": 1, "num_skipped": 3, "num_deleted": 1}, 6),
        # full: everything not in this run goes (the old chunk and c.md's two)
        ("full", {"num_added": 1, "num_skipped": 3, "num_deleted": 3}, 4),
    ],
)
def test_every_cleanup_mode(
    store: TiDBVectorStore,
    record_manager: RecordManager,
    cleanup: str | None,
    expected: dict[str, int],
    left: int,
) -> None:
    assert (
        _run(_docs(SOURCES), record_manager, store, cleanup=cleanup, source_id_key="source")[
            "num_added"
        ]
        == 6
    )
    changed = {"a.md": ["TiDB stores vectors next to rows", "TiDB 8.4 added vector search"]}
    changed["b.md"] = SOURCES["b.md"]
    result = _run(_docs(changed), record_manager, store, cleanup=cleanup, source_id_key="source")
    assert result == {"num_updated": 0, **expected}
    assert store.vector_table.count() == left
    assert "TiDB 8.4 added vector search" in _contents(store)
    old_chunk_kept = "TiDB speaks the MySQL protocol" in _contents(store)
    assert old_chunk_kept is (cleanup is None)


def test_force_update_rewrites_in_place(
    store: TiDBVectorStore, record_manager: RecordManager
) -> None:
    docs = _docs(SOURCES)
    _run(docs, record_manager, store, cleanup="full")
    again = _run(docs, record_manager, store, cleanup="full", force_update=True)
    assert again == {"num_added": 0, "num_updated": 6, "num_skipped": 0, "num_deleted": 0}
    assert store.vector_table.count() == 6  # upserted by id, no duplicates


async def test_aindex_syncs_the_store_on_the_async_path(
    store: TiDBVectorStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    managers: list[Any] = [
        InMemoryRecordManager(namespace="async"),
        SQLRecordManager(
            "async", db_url=f"sqlite+aiosqlite:///{tmp_path / 'arecords.db'}", async_mode=True
        ),
    ]
    for manager in managers:
        await manager.acreate_schema()
        await store.aclear()
        docs = _docs(SOURCES)
        first = await aindex(docs, manager, store, cleanup="full", key_encoder="sha256")
        assert first["num_added"] == 6
        second = await aindex(docs, manager, store, cleanup="full", key_encoder="sha256")
        assert second == {"num_added": 0, "num_updated": 0, "num_skipped": 6, "num_deleted": 0}
        without_c = _docs({k: v for k, v in SOURCES.items() if k != "c.md"})
        third = await aindex(
            without_c,
            manager,
            store,
            cleanup="incremental",
            source_id_key="source",
            key_encoder="sha256",
            batch_size=3,
        )
        # incremental only cleans sources it saw: c.md's chunks stay
        assert third == {"num_added": 0, "num_updated": 0, "num_skipped": 4, "num_deleted": 0}
        fourth = await aindex(without_c, manager, store, cleanup="full", key_encoder="sha256")
        assert fourth["num_deleted"] == 2
        assert await store.vector_table.aio.count() == 4
    await managers[1].engine.dispose()


# --- batch_size and the other keyword arguments --------------------------------------------


def _count_writes(store: TiDBVectorStore) -> list[int]:
    """Rows per INSERT round trip on the store's engine (one entry per write)."""
    writes: list[int] = []
    table = store.vector_table.table_name

    @sa.event.listens_for(store.vector_table.engine, "before_cursor_execute")
    def spy(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "REPLACE")) and table in statement:
            writes.append(len(params) if many else statement.count("),(") + 1)

    return writes


def test_batch_size_bounds_the_rows_per_write(
    store: TiDBVectorStore, record_manager: RecordManager
) -> None:
    store.add_texts(["warm-up"], ids=["w"])  # the table exists before counting
    writes = _count_writes(store)
    result = _run(_docs(SOURCES), record_manager, store, cleanup=None, batch_size=4)
    assert result["num_added"] == 6
    assert len(writes) == 2 and max(writes) <= 4  # index() batches of 4 and 2

    writes.clear()
    ids = store.add_texts([f"text number {i}" for i in range(5)], batch_size=2)
    assert len(ids) == 5 and len(set(ids)) == 5
    assert len(writes) == 3 and max(writes) <= 2
    assert {d.id for d in store.get_by_ids(ids)} == set(ids)


async def test_async_batch_size_bounds_the_rows_per_write(store: TiDBVectorStore) -> None:
    await store.aadd_texts(["warm-up"], ids=["w"])
    writes = _count_writes(store)
    docs = [Document(page_content=f"chunk {i}", id=f"d{i}") for i in range(5)]
    ids = await store.aadd_documents(docs, batch_size=2)
    assert ids == [f"d{i}" for i in range(5)]
    if not store.vector_table.aio.native:  # an async engine has its own event hooks
        assert len(writes) == 3 and max(writes) <= 2
    assert len(await store.aget_by_ids(ids)) == 5


def test_a_bad_row_in_a_later_batch_writes_nothing(store: TiDBVectorStore) -> None:
    texts = ["fine one", "fine two", "fine three", "   "]
    with pytest.raises(InvalidInputError, match=r"empty|whitespace"):
        store.add_texts(texts, batch_size=2)
    metas: list[Any] = [{"n": 1}, {"n": 2}, {"n": float("nan")}]
    with pytest.raises(InvalidInputError):
        store.add_texts(["a", "b", "c"], metas, batch_size=1)
    with pytest.raises(InvalidInputError, match="ids"):
        store.add_texts(["a", "b", "c"], ids=["1", "2"], batch_size=1)
    assert not store.vector_table.exists() or store.vector_table.count() == 0


async def test_async_a_bad_row_in_a_later_batch_writes_nothing(store: TiDBVectorStore) -> None:
    with pytest.raises(InvalidInputError, match=r"empty|whitespace"):
        await store.aadd_texts(["fine one", "fine two", "fine three", "   "], batch_size=2)
    metas: list[Any] = [{"n": 1}, {"n": 2}, {"n": float("nan")}]
    with pytest.raises(InvalidInputError):
        await store.aadd_texts(["a", "b", "c"], metas, batch_size=1)
    with pytest.raises(InvalidInputError, match="ids"):
        await store.aadd_texts(["a", "b", "c"], ids=["1", "2"], batch_size=1)
    assert not await store.vector_table.aio.exists() or await store.vector_table.aio.count() == 0


def test_batch_size_may_be_a_numpy_integer(store: TiDBVectorStore) -> None:
    assert store.add_texts(["x", "y", "z"], ids=["1", "2", "3"], batch_size=np.int64(2)) == [
        "1",
        "2",
        "3",
    ]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", True, np.float64(2.0), np.int64(0)])
def test_batch_size_must_be_a_positive_integer(store: TiDBVectorStore, bad: Any) -> None:
    with pytest.raises(InvalidInputError, match="batch_size must be a positive integer"):
        store.add_texts(["x"], batch_size=bad)


def test_unknown_keywords_are_still_errors(
    store: TiDBVectorStore, record_manager: RecordManager
) -> None:
    with pytest.raises(InvalidInputError, match="unsupported keyword arguments: vector_field"):
        store.add_documents([Document(page_content="x")], vector_field="embedding")
    with pytest.raises(InvalidInputError, match="vector_field"):
        _run(_docs(SOURCES), record_manager, store, upsert_kwargs={"vector_field": "v"})
    assert not store.vector_table.exists() or store.vector_table.count() == 0


# --- a failure half-way: the exact state it leaves -------------------------------------------


def _fail_on_insert_of(store: TiDBVectorStore, row_id: str) -> None:
    """A real driver error: a SQLite trigger refuses the row ``row_id`` (embedded only;
    TiDB has no triggers)."""
    if store.vector_table.is_tidb:
        pytest.skip("TiDB has no triggers to make a real write fail on one row")
    if not store.vector_table.exists():
        store.add_texts(["warm-up"], ids=["w"])
    name = store.vector_table.table_name
    with store.vector_table.engine.begin() as conn:
        conn.exec_driver_sql(
            f"CREATE TRIGGER refuse_{name} BEFORE INSERT ON {name} WHEN NEW.id = '{row_id}' "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )


def _stop_failing(store: TiDBVectorStore) -> None:
    name = store.vector_table.table_name
    with store.vector_table.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER refuse_{name}")


def _ids(store: TiDBVectorStore) -> list[str]:
    return sorted(r.id for r in store.vector_table.get())


def test_a_database_error_in_a_later_batch_keeps_earlier_batches_and_says_so(
    store: TiDBVectorStore,
) -> None:
    _fail_on_insert_of(store, "r4")
    texts = [f"text number {i}" for i in range(7)]
    ids = [f"r{i}" for i in range(7)]
    with pytest.raises(DatabaseError, match="refused by trigger") as caught:
        store.add_texts(texts, ids=ids, batch_size=2)
    # batches 1-2 (r0..r3) committed whole; batch 3 (r4, r5) and batch 4 (r6) not written
    assert _ids(store) == ["r0", "r1", "r2", "r3", "w"]
    (note,) = caught.value.__notes__
    assert "batch 3 of 4 (rows 5-6) failed" in note
    assert "batches 1-2 were written and committed (4 of 7 rows, ids 'r0' to 'r3')" in note
    _stop_failing(store)
    assert store.add_texts(texts, ids=ids, batch_size=2) == ids  # the same call completes
    assert _ids(store) == [*ids, "w"] and store.vector_table.count() == 8


async def test_async_database_error_in_a_later_batch_leaves_the_same_state(
    store: TiDBVectorStore,
) -> None:
    _fail_on_insert_of(store, "r2")
    texts = [f"text number {i}" for i in range(5)]
    ids = [f"r{i}" for i in range(5)]
    with pytest.raises(DatabaseError, match="refused by trigger") as caught:
        await store.aadd_texts(texts, ids=ids, batch_size=2)
    assert _ids(store) == ["r0", "r1", "w"]
    assert "batch 1 was written and committed (2 of 5 rows" in caught.value.__notes__[0]
    _stop_failing(store)
    assert await store.aadd_texts(texts, ids=ids, batch_size=2) == ids
    assert _ids(store) == [*ids, "w"]


def test_a_failure_in_the_first_batch_writes_nothing(store: TiDBVectorStore) -> None:
    _fail_on_insert_of(store, "r1")
    with pytest.raises(DatabaseError) as caught:
        store.add_texts(["a", "b", "c"], ids=["r0", "r1", "r2"], batch_size=2)
    assert _ids(store) == ["w"]  # r0 shared the failing batch's transaction
    assert (
        "batch 1 of 2 (rows 1-2) failed; nothing was written before it"
        in (caught.value.__notes__[0])
    )


class _FailingOnCall(Embeddings):
    """LexicalEmbedder's vectors, except that call number ``fail_on`` raises."""

    def __init__(self, fail_on: int) -> None:
        self.inner = ProviderEmbeddings(provider=LexicalEmbedder(dimension=64))
        self.fail_on, self.calls = fail_on, 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("provider went away")
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_embedding_error_in_a_later_batch_keeps_earlier_batches(
    make_store: MakeStore, mode: str
) -> None:
    embedding = _FailingOnCall(fail_on=3)
    store = make_store(embedding)
    texts, ids = [f"text number {i}" for i in range(5)], [f"r{i}" for i in range(5)]
    with pytest.raises(RuntimeError, match="provider went away") as caught:
        if mode == "sync":
            store.add_texts(texts, ids=ids, batch_size=2)
        else:
            await store.aadd_texts(texts, ids=ids, batch_size=2)
    assert _ids(store) == ["r0", "r1", "r2", "r3"]
    assert "batch 3 of 3 (rows 5-5) failed" in caught.value.__notes__[0]


def test_index_rerun_after_a_failed_batch_completes_without_duplicates(
    store: TiDBVectorStore, record_manager: RecordManager
) -> None:
    docs = _docs(SOURCES)
    assert _run(docs, record_manager, store, cleanup="full", batch_size=2)["num_added"] == 6
    # the id index() gives the 3rd chunk (a hash of the document): its batch will fail
    (third,) = store.similarity_search("pesto", k=1, filter={"source": "b.md", "chunk": 0})
    store.vector_table.clear()
    record_manager.delete_keys(record_manager.list_keys())
    _fail_on_insert_of(store, str(third.id))
    with pytest.raises(DatabaseError, match="refused by trigger"):
        _run(docs, record_manager, store, cleanup="full", batch_size=2)
    assert store.vector_table.count() == 2  # index()'s first batch only
    assert len(record_manager.list_keys()) == 2  # and the record manager agrees
    _stop_failing(store)
    again = _run(docs, record_manager, store, cleanup="full", batch_size=2)
    assert again == {"num_added": 4, "num_updated": 0, "num_skipped": 2, "num_deleted": 0}
    assert store.vector_table.count() == 6
