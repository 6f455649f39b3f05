"""A fast search overtaken by this process's own write keeps its answer only when the
write cannot have changed it (``tidb_jina.store._overtaken``).

Unit cases on real snapshots of a real table (``kept``), the fast path overtaken in the
middle of a search by an own upsert or delete (compared with the general path on the
new state), and concurrent readers against one writer of this process, every answer
checked against a brute-force NumPy answer of a state the search could have seen.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from _begins import Begins

from tidb_jina.store import VectorTable, _fresh
from tidb_jina.store import _backend_embedded as backend_module
from tidb_jina.store._embedded import score_hits
from tidb_jina.store._overtaken import kept

D = 8


def _table(tmp_path, metric="cosine", n=300, seed=0):
    table = VectorTable(f"sqlite:///{tmp_path / 'o.db'}", table_name="o", metric=metric)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, D)).astype(np.float32)
    ids = [f"r{i}" for i in range(n)]
    table.upsert(vectors, ids=ids, documents=[f"{i}@0" for i in ids])
    return table, rng, vectors


def _cache(table):
    return table._backend.cache


def _answer(table, query, **kw):
    return [(h.id, h.document, round(h.distance, 5)) for h in table.search(query, **kw)]


def _hits_before_and_after(table, q, k, write):
    """(cache, snapshot before, its hits, snapshot after ``write()``)."""
    table.search(q, k=k)  # the snapshot is loaded
    cache = _cache(table)
    snap = cache.snapshot
    hits = score_hits(cache, snap, q, k, None, None)
    write()
    later = cache.snapshot
    assert later is not snap and later.token != snap.token
    return cache, snap, hits, later


@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_kept_when_the_write_touches_no_winner_and_adds_nothing_nearer(tmp_path, metric):
    table, rng, _ = _table(tmp_path, metric)
    q = rng.normal(size=D).astype(np.float32)
    k = 5
    far = -q * 100 if metric == "inner_product" else -q  # ranks last for every metric
    table.search(q, k=k)
    winners = {h.id for h in table.search(q, k=k)}
    bystander = next(f"r{i}" for i in range(300) if f"r{i}" not in winners)

    def write():
        table.upsert([far, far], ids=[bystander, "new"])

    cache, snap, hits, later = _hits_before_and_after(table, q, k, write)
    assert kept(cache, snap, later, q, hits, k)
    again = score_hits(cache, later, q, k, None, None)
    assert np.array_equal(again[0], hits[0]) and np.array_equal(again[1], hits[1])


def test_not_kept_when_a_winner_is_updated(tmp_path):
    table, rng, vectors = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    k = 5
    winner = table.search(q, k=k)[-1].id
    row = vectors[int(winner[1:])]

    def write():  # the same vector: only the document changes, the answer's row too
        table.upsert([row], ids=[winner], documents=["changed"])

    cache, snap, hits, later = _hits_before_and_after(table, q, k, write)
    assert not kept(cache, snap, later, q, hits, k)


def test_not_kept_when_a_winner_is_deleted(tmp_path):
    table, rng, _ = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    winner = table.search(q, k=3)[1].id
    cache, snap, hits, later = _hits_before_and_after(
        table, q, 3, lambda: table.delete(ids=[winner])
    )
    assert not kept(cache, snap, later, q, hits, 3)


def test_not_kept_when_a_new_row_ranks_before_the_kth(tmp_path):
    table, rng, _ = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    cache, snap, hits, later = _hits_before_and_after(
        table, q, 5, lambda: table.upsert([q], ids=["the query"])
    )
    assert not kept(cache, snap, later, q, hits, 5)


def test_a_tie_with_the_kth_goes_by_rowid(tmp_path):
    """An updated row given the k-th winner's exact vector ties with it: it enters the
    answer when its rowid is lower (``score_hits``' order), so the answer is not kept;
    with a higher rowid it ranks after, and the answer is kept."""
    table, rng, vectors = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    k = 4
    answer = table.search(q, k=k)
    kth = answer[-1].id
    winners = {h.id for h in answer}
    kth_row = vectors[int(kth[1:])]
    lower = next(f"r{i}" for i in range(int(kth[1:])) if f"r{i}" not in winners)
    higher = next(f"r{i}" for i in range(int(kth[1:]) + 1, 300) if f"r{i}" not in winners)

    cache, snap, hits, later = _hits_before_and_after(
        table, q, k, lambda: table.upsert([kth_row], ids=[higher])
    )
    assert kept(cache, snap, later, q, hits, k)
    cache, snap, hits, later = _hits_before_and_after(
        table, q, k, lambda: table.upsert([kth_row], ids=[lower])
    )
    assert not kept(cache, snap, later, q, hits, k)
    assert lower in [h.id for h in table.search(q, k=k)]


def test_not_kept_with_fewer_winners_than_k_and_a_new_row(tmp_path):
    table, rng, _ = _table(tmp_path, n=3)
    q = rng.normal(size=D).astype(np.float32)
    cache, snap, hits, later = _hits_before_and_after(
        table, q, 10, lambda: table.upsert([-q], ids=["far"])
    )
    assert hits[0].size == 3
    assert not kept(cache, snap, later, q, hits, 10)


def test_not_kept_across_a_reload(tmp_path):
    """A state loaded again (another buffer) is never compared position by position."""
    table, rng, _ = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    table.search(q, k=3)
    cache = _cache(table)
    snap = cache.snapshot
    hits = score_hits(cache, snap, q, 3, None, None)
    cache.invalidate()
    table.search(q, k=3)
    later = cache.snapshot
    assert later.token == snap.token and later is not snap
    assert not kept(cache, snap, later, q, hits, 3)
    assert kept(cache, snap, snap, q, hits, 3)


def _overtake(monkeypatch, write):
    """The fast path's row read runs ``write`` (once) between reading the rows and
    reading the change token (``read_then_token`` reads both under the watcher's lock;
    an own write confirms its commit on the watcher, so the write is run between the
    rows and a second token read here, as if it had committed inside that hold)."""
    real = _fresh._read_rows
    done = []

    def read_then_write(cache, tbl, rowids):
        read = real(cache, tbl, rowids)
        if read is None or done:
            return read
        done.append(True)
        write()
        return read[0], cache.watcher.token_now(), read[2]

    monkeypatch.setattr(_fresh, "_read_rows", read_then_write)
    return real


def _general(monkeypatch, table, q, **kw):
    monkeypatch.setattr(backend_module, "search_fresh", lambda *a, **k: None)
    try:
        return _answer(table, q, **kw)
    finally:
        monkeypatch.undo()


def test_an_overtaken_search_keeps_its_answer_without_a_transaction(tmp_path, monkeypatch):
    table, rng, _ = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    expected = _answer(table, q, k=5)
    bystander = next(f"r{i}" for i in range(300) if f"r{i}" not in {a[0] for a in expected})
    _overtake(monkeypatch, lambda: table.upsert([-q], ids=[bystander], documents=["far"]))
    begins = Begins(table.engine)
    got = _answer(table, q, k=5)
    fast_begins = begins.count
    begins.close()
    assert got == expected
    assert fast_begins == 1  # the upsert's own transaction only: the search had none
    assert _general(monkeypatch, table, q, k=5) == got  # and it is the new state's answer


@pytest.mark.parametrize("case", ["winner updated", "winner deleted", "nearer row"])
def test_an_overtaken_search_whose_answer_changed_gives_the_new_one(tmp_path, monkeypatch, case):
    table, rng, vectors = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    before = _answer(table, q, k=5)
    winner = before[2][0]
    writes = {
        "winner updated": lambda: table.upsert(
            [vectors[int(winner[1:])]], ids=[winner], documents=["changed"]
        ),
        "winner deleted": lambda: table.delete(ids=[winner]),
        "nearer row": lambda: table.upsert([q], ids=["q"], documents=["the query"]),
    }
    write = writes[case]
    _overtake(monkeypatch, write)
    got = _answer(table, q, k=5)
    assert got != before
    assert got == _general(monkeypatch, table, q, k=5)
    if case == "winner updated":
        assert (winner, "changed") in [(a[0], a[1]) for a in got]
    elif case == "winner deleted":
        assert winner not in [a[0] for a in got]
    else:
        assert got[0][:2] == ("q", "the query")


def test_an_overtaken_filtered_search_counts_new_rows_as_matching(tmp_path, monkeypatch):
    """The new row does not match the filter, but is nearer: the rule gives up (never
    keeps a wrong answer), and the general path gives the unchanged answer."""
    table = VectorTable(f"sqlite:///{tmp_path / 'g.db'}", table_name="g")
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(200, D)).astype(np.float32)
    ids = [f"r{i}" for i in range(200)]
    table.upsert(vectors, ids=ids, metadatas=[{"g": i % 2} for i in range(200)])
    q = rng.normal(size=D).astype(np.float32)
    expected = _answer(table, q, k=4, filter={"g": 1})
    _overtake(monkeypatch, lambda: table.upsert([q], ids=["q"], metadatas=[{"g": 0}]))
    assert _answer(table, q, k=4, filter={"g": 1}) == expected
    assert _general(monkeypatch, table, q, k=4, filter={"g": 1}) == expected


def test_concurrent_readers_and_an_own_writer_see_whole_states(tmp_path):
    """8 readers search while this process upserts (half updates, half new rows) and
    deletes; each answer must be the brute-force answer of one state committed during
    the search (ids, their documents, in order), never a mix or a superseded version."""
    n, k, writes = 300, 5, 60
    table, rng, vectors = _table(tmp_path, n=n)
    state: dict[str, tuple[np.ndarray, str]] = {f"r{i}": (vectors[i], f"r{i}@0") for i in range(n)}
    plan: list[tuple[list[str], np.ndarray | None, list[str]]] = []  # one per commit
    states = [dict(state)]
    next_id = n
    for v in range(1, writes + 1):
        updated = [f"r{int(i)}" for i in rng.choice(n, 4, replace=False)]
        updated = [i for i in updated if i in state]
        new = [f"r{next_id + j}" for j in range(4)]
        next_id += 4
        ids = updated + new
        vecs = rng.normal(size=(len(ids), D)).astype(np.float32)
        docs = [f"{i}@{v}" for i in ids]
        for i, vec, doc in zip(ids, vecs, docs, strict=True):
            state[i] = (vec, doc)
        plan.append((ids, vecs, docs))
        states.append(dict(state))
        if v % 5 == 0:  # a delete: its own commit
            gone = [next(iter(state))]
            del state[gone[0]]
            plan.append((gone, None, []))
            states.append(dict(state))

    def brute(s: dict[str, tuple[np.ndarray, str]], q: np.ndarray) -> list[tuple[str, str]]:
        keys = list(s)
        m = np.stack([s[i][0] for i in keys]).astype(np.float64)
        d = 1 - (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
        return [(keys[j], s[keys[j]][1]) for j in np.argsort(d, kind="stable")[:k]]

    queries = rng.normal(size=(16, D)).astype(np.float32)
    table.search(queries[0], k=k)
    started, finished = [0], [0]
    stop = threading.Event()
    bad: list[str] = []
    seen = [0]

    def writer() -> None:
        for ids, vecs, docs in plan:
            started[0] += 1
            if vecs is None:
                table.delete(ids=ids)
            else:
                table.upsert(vecs, ids=ids, documents=docs)
            finished[0] += 1
        stop.set()

    def reader(slot: int) -> None:
        i = slot
        while not stop.is_set():
            q = queries[i % len(queries)]
            i += 1
            lo = finished[0]
            got = [(h.id, h.document) for h in table.search(q, k=k)]
            hi = started[0]
            seen[0] += 1
            if not any(got == brute(states[s], q) for s in range(lo, hi + 1)):
                bad.append(f"{got} in none of states {lo}..{hi}")

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    writer()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert seen[0] > 8


@pytest.mark.parametrize("nearer", [True, False])
def test_a_search_starting_while_an_own_write_is_applied_answers_its_state(
    tmp_path, monkeypatch, nearer
):
    """The own upsert has committed but not yet published its snapshot (its apply is
    held back): a search started then scores the previous snapshot without waiting
    (``starting``), and must still answer the committed state: the new row when it is
    nearer (the answer is rejected, the general path gives it), else the same rows."""
    from tidb_jina.store._embedded import VectorCache

    table, rng, _ = _table(tmp_path)
    q = rng.normal(size=D).astype(np.float32)
    before = _answer(table, q, k=4)
    cache = _cache(table)
    committed, release = threading.Event(), threading.Event()
    real_apply = VectorCache.apply

    def slow_apply(self, *args):
        committed.set()
        release.wait(5)
        return real_apply(self, *args)

    monkeypatch.setattr(VectorCache, "apply", slow_apply)
    row = q if nearer else -q
    writer = threading.Thread(
        target=lambda: table.upsert([row], ids=["new"], documents=["new row"])
    )
    writer.start()
    assert committed.wait(5)
    old = cache.snapshot
    assert cache.watcher.token_now() != old.token  # committed, not yet published
    timer = threading.Timer(0.2, release.set)
    timer.start()
    got = _answer(table, q, k=4)
    writer.join()
    timer.join()
    monkeypatch.setattr(VectorCache, "apply", real_apply)
    if nearer:
        assert got[0][:2] == ("new", "new row")
    else:
        assert got == before
    assert got == _answer(table, q, k=4)
