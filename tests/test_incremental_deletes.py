"""Deletes and clear() by this process are applied to the in-memory snapshot, not reloaded.

Each case counts full reads of the vectors (``load_vectors``) and compares every answer
with a reference table written from scratch with the expected rows (no cache).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import numpy as np
import pytest

from tidb_jina.store import VectorTable, _incremental, connect

DIM = 8
METRICS = ["cosine", "l2", "inner_product"]


@pytest.fixture(params=["file", "memory"])
def where(request, tmp_path):
    """A file database (URL) or the shared in-memory one (``sqlite://`` engine)."""
    if request.param == "memory":
        return connect("sqlite://")
    return f"sqlite:///{tmp_path / 'del.db'}"


@pytest.fixture
def loads(monkeypatch):
    """Counts full reads of the vectors (each call of the streamed loader), except the
    reference tables' (they keep no cache: every search reads their vectors)."""
    from tidb_jina.store import _embedded

    calls: list[int] = []
    real = _embedded.load_vectors

    def counted(conn, table, *args, **kwargs):
        if table.name != "ref":
            calls.append(1)
        return real(conn, table, *args, **kwargs)

    monkeypatch.setattr(_embedded, "load_vectors", counted)
    return calls


class Model:
    """The rows a table should hold, kept in Python."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[np.ndarray, dict]] = {}

    def upsert(self, table: VectorTable, vectors: np.ndarray, ids: list[str], metas: list[dict]):
        table.upsert(vectors, ids=ids, metadatas=metas)
        for i, v, m in zip(ids, vectors, metas, strict=True):
            self.rows[i] = (v, m)

    def reference(self, metric: str) -> VectorTable:
        ref = VectorTable("sqlite://", table_name="ref", metric=metric, search_cache=False)
        if self.rows:
            ids = list(self.rows)
            ref.upsert(
                np.stack([self.rows[i][0] for i in ids]),
                ids=ids,
                metadatas=[self.rows[i][1] for i in ids],
            )
        return ref


FILTERS = [None, {"g": 1}, {"g": {"$in": [0, 2]}}, {"tag": {"$exists": True}}]


def _same_answers(table: VectorTable, model: Model, metric: str, queries: np.ndarray) -> None:
    ref = model.reference(metric)
    try:
        for q in queries:
            for flt in FILTERS:
                got = table.search(q, k=6, filter=flt)
                want = ref.search(q, k=6, filter=flt) if model.rows else []
                assert [h.id for h in got] == [h.id for h in want], flt
                assert [h.distance for h in got] == pytest.approx(
                    [h.distance for h in want], abs=1e-5
                )
        assert table.count() == len(model.rows)
    finally:
        ref.close()


def _rows(rng: np.random.Generator, start: int, n: int) -> tuple[np.ndarray, list, list]:
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    ids = [f"r{i}" for i in range(start, start + n)]
    metas = [{"g": i % 3, **({"tag": "t"} if i % 5 == 0 else {})} for i in range(start, start + n)]
    return vectors, ids, metas


@pytest.mark.parametrize("metric", METRICS)
def test_own_deletes_and_clear_update_the_snapshot_without_a_reload(where, loads, metric):
    rng = np.random.default_rng(11)
    table = VectorTable(where, table_name="d", metric=metric)
    model = Model()
    model.upsert(table, *_rows(rng, 0, 60))
    queries = rng.normal(size=(3, DIM)).astype(np.float32)
    _same_answers(table, model, metric, queries)  # loads once, builds the filter columns
    assert len(loads) == 1

    assert table.delete(["r1", "r2", "r7", "r30"]) == 4  # by ids
    for gone in ("r1", "r2", "r7", "r30"):
        del model.rows[gone]
    columns = table._backend.cache.snapshot.extras.get("columns", {})
    assert {"g", "tag"} <= set(columns), "filter columns are carried over, not read again"
    _same_answers(table, model, metric, queries)

    assert table.delete(filter={"g": 2}) == sum(1 for i in range(60) if i % 3 == 2 and i != 2)
    model.rows = {i: r for i, r in model.rows.items() if r[1]["g"] != 2}
    _same_answers(table, model, metric, queries)

    # ids and a filter together: only the ids that match the filter go
    assert table.delete(["r3", "r4", "r5"], filter={"g": 0}) == 1
    del model.rows["r3"]
    _same_answers(table, model, metric, queries)

    # deleted ids written again: new rows (SQLite may reuse the highest rowids)
    vectors, _, metas = _rows(rng, 100, 3)
    model.upsert(table, vectors, ["r1", "r59", "r30"], metas)
    _same_answers(table, model, metric, queries)

    assert table.delete(["nope", "r1000"]) == 0  # ids that do not exist
    _same_answers(table, model, metric, queries)
    assert len(loads) == 1, "this process's own deletes must not reload the vectors"

    assert table.clear() == len(model.rows)
    model.rows.clear()
    assert table.search(queries[0], k=3) == []
    assert table.search(queries[0], k=3, filter={"g": 1}) == []
    model.upsert(table, *_rows(rng, 200, 10))  # written again after clear()
    _same_answers(table, model, metric, queries)
    assert len(loads) == 1, "clear() must not cost a reload"


def test_a_delete_that_removes_nothing_keeps_the_snapshot(where, loads):
    table = VectorTable(where, table_name="d")
    table.upsert(np.eye(DIM, dtype=np.float32)[:3], ids=["a", "b", "c"])
    table.search(np.eye(DIM, dtype=np.float32)[0], k=1)
    snap = table._backend.cache.snapshot
    assert table.delete(["x", "y"]) == 0
    assert table.delete(filter={"missing": 1}) == 0
    assert table._backend.cache.snapshot is snap
    assert [h.id for h in table.search(np.eye(DIM, dtype=np.float32)[1], k=1)] == ["b"]
    assert len(loads) == 1


@pytest.mark.parametrize("metric", METRICS)
def test_a_large_delete_compacts_and_keeps_filters_right(where, loads, metric):
    """More than a quarter of the rows dead (and over 1,024): the buffer is rebuilt."""
    rng = np.random.default_rng(3)
    table = VectorTable(where, table_name="d", metric=metric)
    model = Model()
    model.upsert(table, *_rows(rng, 0, 3000))
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    _same_answers(table, model, metric, queries)
    cache = table._backend.cache
    before = cache.snapshot
    assert table.delete([f"r{i}" for i in range(0, 3000, 2)]) == 1500
    for i in range(0, 3000, 2):
        del model.rows[f"r{i}"]
    after = cache.snapshot
    assert after.size == 1500 and after.alive is None, "the dead rows were compacted away"
    assert cache.current(before.token) is None or cache.current(before.token).size == 3000
    _same_answers(table, model, metric, queries)
    model.upsert(table, *_rows(rng, 5000, 20))
    _same_answers(table, model, metric, queries)
    assert len(loads) == 1


def test_compaction_never_labels_missing_rows_with_an_older_state(tmp_path):
    """A reader pinned at the state before a write must not get a snapshot lacking rows
    that state holds (the compacted buffer, before the write's rows are added)."""
    table = VectorTable(f"sqlite:///{tmp_path / 'c.db'}", table_name="c")
    rng = np.random.default_rng(4)
    n = 4000
    table.upsert(rng.normal(size=(n, DIM)).astype(np.float32), ids=[str(i) for i in range(n)])
    table.search(rng.normal(size=DIM).astype(np.float32), k=1)
    cache = table._backend.cache
    before = cache.snapshot.token
    # an update of 1,100 rows (over a quarter of the rows dead plus new: compaction)
    table.upsert(rng.normal(size=(1100, DIM)).astype(np.float32), ids=[str(i) for i in range(1100)])
    old = cache.current(before)
    assert old is None or old.size == n, "a snapshot labelled with the old state lacks rows"


class _Race:
    """A table of 40 rows with its vectors in memory (one load), and another connection
    (a second table object on the file) with 5 rows ready to commit at a chosen moment."""

    def __init__(self, path, seed: int, loads: list[int]) -> None:
        self.table = VectorTable(f"sqlite:///{path}", table_name="d")
        self.rng = np.random.default_rng(seed)
        self.model = Model()
        self.model.upsert(self.table, *_rows(self.rng, 0, 40))
        self.queries = self.rng.normal(size=(2, DIM)).astype(np.float32)
        _same_answers(self.table, self.model, "cosine", self.queries)
        assert len(loads) == 1
        self.foreign = VectorTable(f"sqlite:///{path}", table_name="d")
        self.extra = _rows(self.rng, 500, 5)

    def foreign_commit(self) -> None:
        self.foreign.upsert(self.extra[0], ids=self.extra[1], metadatas=self.extra[2])

    def check_one_reload(self, loads: list[int]) -> None:
        """Answers hold both writes, and the foreign commit cost exactly one reload."""
        for i, v, m in zip(self.extra[1], self.extra[0], self.extra[2], strict=True):
            self.model.rows[i] = (v, m)
        _same_answers(self.table, self.model, "cosine", self.queries)
        assert len(loads) == 2, "a foreign commit in between costs exactly one reload"


def test_a_delete_racing_a_foreign_commit_falls_back_to_one_reload(tmp_path, loads, monkeypatch):
    """Another connection commits between our delete's commit and its check: the
    snapshot is left alone, and the next search reloads once and sees both changes."""
    race = _Race(tmp_path / "race.db", 5, loads)
    real = _incremental._confirm_removal

    def foreign_commit_first(*args, **kwargs):
        race.foreign_commit()  # a real commit
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(_incremental, "_confirm_removal", foreign_commit_first)
        assert race.table.delete(["r0", "r1"]) == 2
    del race.model.rows["r0"], race.model.rows["r1"]
    race.check_one_reload(loads)


def test_deletes_racing_a_foreign_writer_end_in_correct_results(tmp_path):
    """Our deletes and another connection's upserts and deletes, at the same time."""
    path = tmp_path / "busy.db"
    table = VectorTable(f"sqlite:///{path}", table_name="d")
    rng = np.random.default_rng(6)
    model = Model()
    model.upsert(table, *_rows(rng, 0, 400))
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    table.search(queries[0], k=3, filter={"g": 1})
    foreign = VectorTable(f"sqlite:///{path}", table_name="d")
    extra = _rows(rng, 1000, 100)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for start in range(0, 100, 10):
                part = slice(start, start + 10)
                foreign.upsert(extra[0][part], ids=extra[1][part], metadatas=extra[2][part])
                foreign.delete([f"r{300 + start // 10}"])
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    for i in range(0, 200, 10):
        table.delete([f"r{j}" for j in range(i, i + 5)])
        table.search(queries[i % 2], k=4, filter={"g": {"$in": [0, 1]}})
    thread.join()
    assert not errors, errors
    for i in range(0, 200, 10):
        for j in range(i, i + 5):
            del model.rows[f"r{j}"]
    for i in range(10):
        del model.rows[f"r{300 + i}"]
    for i, v, m in zip(extra[1], extra[0], extra[2], strict=True):
        model.rows[i] = (v, m)
    _same_answers(table, model, "cosine", queries)


def test_the_async_view_deletes_without_a_reload(tmp_path, loads):
    table = VectorTable(f"sqlite:///{tmp_path / 'a.db'}", table_name="d")
    rng = np.random.default_rng(8)
    model = Model()
    model.upsert(table, *_rows(rng, 0, 30))
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    _same_answers(table, model, "cosine", queries)

    async def run() -> tuple[int, int]:
        deleted = await table.aio.delete(["r4", "r5"])
        by_filter = await table.aio.delete(filter={"g": 1})
        return deleted, by_filter

    assert asyncio.run(run()) == (2, 9)  # r4 (g=1) is gone already
    del model.rows["r4"], model.rows["r5"]
    model.rows = {i: r for i, r in model.rows.items() if r[1]["g"] != 1}
    _same_answers(table, model, "cosine", queries)
    assert asyncio.run(table.aio.clear()) == len(model.rows)
    model.rows.clear()
    _same_answers(table, model, "cosine", queries)
    assert len(loads) == 1
    table.close()


def test_a_delete_by_another_process_connection_is_still_seen(tmp_path, loads):
    """A plain sqlite3 connection deletes: not ours, so the next search reloads."""
    path = tmp_path / "plain.db"
    table = VectorTable(f"sqlite:///{path}", table_name="d")
    table.upsert(np.eye(DIM, dtype=np.float32)[:3], ids=["a", "b", "c"])
    assert table.search(np.eye(DIM, dtype=np.float32)[1], k=1)[0].id == "b"
    with sqlite3.connect(path) as raw:
        raw.execute("DELETE FROM d WHERE id = 'b'")
    assert [h.id for h in table.search(np.eye(DIM, dtype=np.float32)[1], k=3)] in (
        ["a", "c"],
        ["c", "a"],
    )
    assert len(loads) == 2


def test_without_returning_the_rows_are_selected_first(where, loads, monkeypatch):
    """SQLite before 3.35 has no ``DELETE ... RETURNING``: the rowids are selected under
    the same write lock, then deleted."""
    table = VectorTable(where, table_name="d")
    rng = np.random.default_rng(9)
    model = Model()
    model.upsert(table, *_rows(rng, 0, 50))
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    _same_answers(table, model, "cosine", queries)
    monkeypatch.setattr(table.engine.dialect, "delete_returning", False)
    assert table.delete(["r1", "r2"], filter={"g": 1}) == 1
    assert table.delete(filter={"g": 2}) == 16
    del model.rows["r1"]
    model.rows = {i: r for i, r in model.rows.items() if r[1]["g"] != 2}
    _same_answers(table, model, "cosine", queries)
    assert len(loads) == 1


def test_langchain_and_llama_index_deletes_go_through_the_snapshot(tmp_path, loads):
    """The adapters delete through the core: no reload either."""
    pytest.importorskip("langchain_core")
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from langchain_tidb_jina import ProviderEmbeddings
    from langchain_tidb_jina import TiDBVectorStore as LCStore
    from llama_index_tidb_jina import TiDBVectorStore as LIStore
    from tidb_jina.testing import LexicalEmbedder, lexical_embedding

    texts = [f"tidb vector {w} doc{i}" for i, w in enumerate(["sql", "basil", "rows"] * 4)]
    lc = LCStore(
        f"sqlite:///{tmp_path / 'lc.db'}",
        embedding=ProviderEmbeddings(provider=LexicalEmbedder(dimension=32)),
        table_name="lc",
    )
    ids = lc.add_texts(texts, metadatas=[{"g": i % 3} for i in range(12)])
    assert len(lc.similarity_search("basil", k=12)) == 12
    lc.delete([ids[0], ids[1]])
    lc.delete(filter={"g": 2})
    found = {d.id for d in lc.similarity_search("basil", k=12)}
    assert found == {ids[i] for i in range(2, 12) if i % 3 != 2}
    assert lc.clear() == len(found)
    assert lc.similarity_search("basil", k=3) == []

    li = LIStore(f"sqlite:///{tmp_path / 'li.db'}", table_name="li")
    nodes = []
    for i, text in enumerate(texts):
        node = TextNode(id_=f"n{i}", text=text, metadata={"g": i % 3})
        node.embedding = lexical_embedding([text], 32)[0].tolist()
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"d{i % 4}")
        nodes.append(node)
    li.add(nodes)
    query = VectorStoreQuery(
        query_embedding=lexical_embedding(["basil"], 32)[0].tolist(), similarity_top_k=12
    )
    assert len(li.query(query).ids) == 12
    li.delete("d1")  # every node of source document d1
    li.delete_nodes(["n0"])
    assert set(li.query(query).ids) == {f"n{i}" for i in range(12) if i % 4 != 1 and i != 0}
    li.clear()
    assert li.query(query).ids == []
    assert len(loads) == 2, "one load per store; their deletes must not reload"


def test_full_text_and_hybrid_search_after_own_deletes(where, loads):
    """The FTS5 triggers run with ``DELETE ... RETURNING``: deleted rows leave the text
    index too, and hybrid search (both sides) never returns them."""
    table = VectorTable(where, table_name="d")
    docs = [f"basil tomato recipe {i}" if i % 2 else f"tidb vector rows {i}" for i in range(20)]
    vectors = np.random.default_rng(2).normal(size=(20, DIM)).astype(np.float32)
    table.upsert(vectors, ids=[f"r{i}" for i in range(20)], documents=docs)
    assert len(table.full_text_search("basil", k=20)) == 10
    table.search(vectors[1], k=1)
    table.delete([f"r{i}" for i in range(0, 20, 3)])
    gone = {f"r{i}" for i in range(0, 20, 3)}
    found = {h.id for h in table.full_text_search("basil", k=20)}
    assert found == {f"r{i}" for i in range(1, 20, 2)} - gone
    hybrid = {h.id for h in table.hybrid_search(vectors[3], "basil", k=20)}
    assert hybrid and not hybrid & gone
    assert hybrid <= {f"r{i}" for i in range(20)} - gone
    table.clear()
    assert table.full_text_search("basil", k=5) == []
    assert table.hybrid_search(vectors[3], "basil", k=5) == []
    assert len(loads) == 1


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_random_writes_deletes_and_clears_match_a_fresh_table(where, loads, metric):
    """A seeded mix of upserts (inserts and updates, several batches), deletes by ids
    (some missing), by filter, and clear(), checked after every step."""
    rng = np.random.default_rng(21)
    table = VectorTable(where, table_name="d", metric=metric, batch_rows=7)
    model = Model()
    queries = rng.normal(size=(2, DIM)).astype(np.float32)
    model.upsert(table, *_rows(rng, 0, 40))
    _same_answers(table, model, metric, queries)
    done: list[str] = []
    for step in range(30):
        op = "clear" if step == 20 else rng.choice(["upsert", "ids", "filter"], p=[0.5, 0.4, 0.1])
        done.append(str(op))
        if op == "upsert":
            picks = rng.choice(120, size=int(rng.integers(1, 20)), replace=False)
            vectors = rng.normal(size=(picks.size, DIM)).astype(np.float32)
            metas = [{"g": int(i) % 3, **({"tag": "t"} if i % 5 == 0 else {})} for i in picks]
            model.upsert(table, vectors, [f"r{i}" for i in picks], metas)
        elif op == "ids":
            ids = [f"r{i}" for i in rng.choice(120, size=int(rng.integers(1, 15)), replace=False)]
            assert table.delete(ids) == sum(1 for i in ids if i in model.rows)
            for i in ids:
                model.rows.pop(i, None)
        elif op == "filter":
            g = int(rng.integers(0, 3))
            assert table.delete(filter={"g": g}) == sum(m["g"] == g for _, m in model.rows.values())
            model.rows = {i: r for i, r in model.rows.items() if r[1]["g"] != g}
        else:
            assert table.clear() == len(model.rows)
            model.rows.clear()
        _same_answers(table, model, metric, queries)
    assert {"upsert", "ids", "filter", "clear"} <= set(done)
    assert len(loads) == 1


@pytest.mark.parametrize("moment", ["before the token", "after the token"])
def test_an_upsert_racing_a_foreign_commit_falls_back_to_one_reload(
    tmp_path, loads, monkeypatch, moment
):
    """Another connection commits right after our upsert's commit, before or after the
    new token is read: the snapshot is left alone (the writer's own data_version moved),
    and the next search reloads once and sees both writes."""
    race = _Race(tmp_path / "race_up.db", 6, loads)
    cache = race.table._backend.cache
    real_token, real_own = cache.token, _incremental._own_version_now
    calls = {"token": 0}

    def token(conn, wait=True):
        calls["token"] += 1
        if moment == "before the token" and calls["token"] == 2:  # 1: before, 2: after
            race.foreign_commit()
        return real_token(conn, wait)

    def own_now(conn):
        if moment == "after the token":
            race.foreign_commit()
        return real_own(conn)

    mine = _rows(race.rng, 900, 3)
    with monkeypatch.context() as patch:
        patch.setattr(cache, "token", token)
        patch.setattr(_incremental, "_own_version_now", own_now)
        race.model.upsert(race.table, *mine)
    race.check_one_reload(loads)
