"""The filter column cache stays within its byte bound on the fast path too.

``COLUMN_CACHE_BYTES`` bounds one snapshot's filter columns (least recently used dropped
first). The transactional filter evicted after every search; the fast search
(``_fresh._cached_filter_positions``) made typed arrays and equality postings (at a
column's second equality) without evicting, so the cache grew past its bound until the
next transactional filter. Here every search of a long mixed sequence is followed by a
check of the bytes held, and every answer by the pure-Python reference's.
"""

from __future__ import annotations

import numpy as np
import pytest
from _filter_reference import matches

from tidb_jina.store import VectorTable, _embedded, _fresh

N, D, KEYS = 600, 8, 10


def _metas():
    out = []
    for i in range(N):
        meta = {f"k{j}": (i * (j + 3)) % (5 + j) for j in range(KEYS)}
        meta["name"] = f"person {i}"  # many distinct strings: encoded at first use
        out.append(meta)
    return out


def _held(table):
    columns = table._backend.cache.snapshot.extras.get("columns", {})
    return sum(_embedded.column_bytes(c) for c in list(columns.values()))


def _full_column_bytes(tmp_path):
    """Each column's bytes with every typed form and its postings, as searches make them."""
    table = VectorTable(f"sqlite:///{tmp_path / 'size.db'}", table_name="b")
    metas = _metas()
    table.upsert(np.ones((N, D), dtype=np.float32), ids=[str(i) for i in range(N)], metadatas=metas)
    q = np.ones(D, dtype=np.float32)
    for key, value in [("name", "person 3"), *((f"k{j}", 1) for j in range(KEYS))]:
        for _ in range(2):
            table.search(q, k=1, filter={key: value})
        table.search(q, k=1, filter={key: {"$gte": value}})
    columns = table._backend.cache.snapshot.extras["columns"]
    assert set(columns) == {"name", *(f"k{j}" for j in range(KEYS))}
    sizes = {key: _embedded.column_bytes(c) for key, c in columns.items()}
    table.close()
    return sizes


# The bound: room for ``whole`` numeric columns with their postings, less ``short`` bytes
# (a numeric column is read without its postings, made at its second equality on the
# fast path: one byte short makes that fast search overshoot unless it evicts).
@pytest.mark.parametrize(("whole", "short"), [(2, 1), (3, 1), (4, 1), (3, 2000), (5, 0)])
def test_fast_searches_never_hold_more_than_the_bound(tmp_path, monkeypatch, whole, short):
    sizes = _full_column_bytes(tmp_path)
    assert len({sizes[f"k{j}"] for j in range(KEYS)}) == 1  # every numeric column alike
    limit = whole * sizes["k0"] - short
    assert limit >= sizes["name"]  # the largest column fits alone
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", limit)
    fast = []
    real = _fresh._cached_filter_positions

    def counted(snap, flt):
        found = real(snap, flt)
        fast.append(found is not None)
        return found

    monkeypatch.setattr(_fresh, "_cached_filter_positions", counted)
    table = VectorTable(f"sqlite:///{tmp_path / 'bound.db'}", table_name="b")
    metas = _metas()
    rng = np.random.default_rng(4)
    table.upsert(
        rng.normal(size=(N, D)).astype(np.float32),
        ids=[str(i) for i in range(N)],
        metadatas=metas,
    )
    q = rng.normal(size=D).astype(np.float32)
    table.search(q, k=1)  # loads the snapshot (and the columns the bound holds)
    assert _held(table) <= limit
    filters = []
    for j in range(KEYS):  # each key several times: postings at the second equality
        filters += [{f"k{j}": 1}, {f"k{j}": 2}, {f"k{j}": {"$gt": 2}}, {f"k{j}": 0}]
    for j in range(KEYS):  # the strings encoded (many distinct: at first use) in between
        filters += [{"name": f"person {7 * j}"}, {f"k{j}": 3}, {"name": {"$lt": "person 2"}}]
    filters += filters[::-1]
    for flt in filters:
        got = {h.id for h in table.search(q, k=N, filter=flt)}
        want = {str(i) for i, meta in enumerate(metas) if matches(flt, meta)}
        assert got == want, flt
        assert _held(table) <= limit, flt
    assert sum(fast) > len(filters) // 2, "most searches took the fast path"
    table.close()


def test_strings_encoded_by_a_fast_search_stay_within_the_bound(tmp_path, monkeypatch):
    """A column made at load whose strings are nearly all distinct is dictionary-encoded
    at its first comparison: here a fast search's. The bound holds every column as the
    load made it, not the encoded one as well: the fast search evicts idle columns."""
    n = 1500  # more distinct strings than ``_meta_columns`` encodes at load (1024)
    metas = [{"j": i % 3, "k": i % 5, "name": f"person {i}"} for i in range(n)]

    def loaded(path):
        table = VectorTable(f"sqlite:///{path}", table_name="s")
        table.upsert(
            np.eye(n, D, dtype=np.float32) + 1, ids=[str(i) for i in range(n)], metadatas=metas
        )
        table.search(np.ones(D, dtype=np.float32), k=1)  # loads the snapshot and columns
        return table, table._backend.cache.snapshot.extras["columns"]

    probe, columns = loaded(tmp_path / "probe.db")
    assert list(columns) == ["j", "k", "name"]
    assert columns["name"].typed.strings is False  # left to its first comparison
    limit = sum(_embedded.column_bytes(c) for c in columns.values())
    probe.search(np.ones(D, dtype=np.float32), k=1, filter={"name": "person 3"})
    encoded = _embedded.column_bytes(columns["name"])
    assert encoded <= limit < encoded + sum(_embedded.column_bytes(columns[k]) for k in "jk")
    probe.close()

    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", limit)
    table, columns = loaded(tmp_path / "bound.db")
    assert list(columns) == ["j", "k", "name"]  # every column made at load, within it
    columns["j"] = columns.pop("j")  # "k" is now the least recently used
    for value in ("person 3", "person 1499", "nobody"):
        hits = table.search(np.ones(D, dtype=np.float32), k=n, filter={"name": value})
        assert [h.id for h in hits] == ([] if value == "nobody" else [value.split()[1]])
        assert isinstance(columns["name"].typed.strings, tuple)  # encoded by the fast path
        assert "k" not in columns  # the least recently used went first
        assert list(columns)[-1] == "name"  # the one in use stayed
        assert _held(table) <= limit
    table.close()


def test_eight_threads_of_fast_filtered_searches_under_a_tight_bound(tmp_path, monkeypatch):
    """Eight threads search on keys that evict each other (the bound holds about two
    columns): no ``RuntimeError`` from the shared dict, every answer the reference's,
    the bound kept once they stop."""
    import sys
    import threading

    sizes = _full_column_bytes(tmp_path)
    limit = 8 * sizes["k0"] + 1
    monkeypatch.setattr(_embedded, "COLUMN_CACHE_BYTES", limit)
    evicted = {"n": 0}
    real_evict = _embedded._evict

    def counting_evict(columns, used, bound):
        before = len(columns)
        real_evict(columns, used, bound)
        evicted["n"] += before - len(columns)

    monkeypatch.setattr(_embedded, "_evict", counting_evict)
    table = VectorTable(f"sqlite:///{tmp_path / 'threads.db'}", table_name="b")
    metas = _metas()
    rng = np.random.default_rng(5)
    table.upsert(
        rng.normal(size=(N, D)).astype(np.float32), ids=[str(i) for i in range(N)], metadatas=metas
    )
    q = rng.normal(size=D).astype(np.float32)
    table.search(q, k=1)
    filters = [{f"k{j}": v} for j in range(KEYS) for v in (1, 2)]
    filters += [{f"k{j}": {"$gte": 2}} for j in range(KEYS)] + [{"name": "person 9"}]
    want = {
        i: {str(r) for r, meta in enumerate(metas) if matches(flt, meta)}
        for i, flt in enumerate(filters)
    }
    errors: list[BaseException] = []
    wrong: list[dict] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        order = np.random.default_rng(seed).permutation(len(filters))
        start.wait()
        try:
            for _ in range(3):
                for i in order:
                    got = {h.id for h in table.search(q, k=N, filter=filters[i])}
                    if got != want[i]:
                        wrong.append(filters[i])
        except BaseException as exc:  # a RuntimeError from the dict, say
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between nearly any two bytecodes
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        sys.setswitchinterval(switch)
    assert not errors, errors[:3]
    assert not wrong, wrong[:3]
    assert evicted["n"] > 0  # the bound was at work all along
    table.search(q, k=1, filter={"k0": 1})  # one more search: the bound holds after
    assert _held(table) <= limit
    table.close()
