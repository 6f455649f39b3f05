"""``_gathered.quick_pick`` and ``gathered_distances`` against a brute-force reference:
every live row scored by ``VectorCache.exact``, sorted by (distance, rowid)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from tests._snapshots import prepared_snapshot
from tidb_jina.store import _gathered
from tidb_jina.store._embedded import Snapshot, VectorCache, score_hits
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import SearchResult, hit

ALL = [DistanceMetric.COSINE, DistanceMetric.INNER_PRODUCT, DistanceMetric.L2, DistanceMetric.L1]


def _snap(metric: DistanceMetric, raw: np.ndarray, alive: np.ndarray | None = None) -> Snapshot:
    rowids = np.arange(1, raw.shape[0] + 1, dtype=np.int64)[::-1].copy()  # not sorted
    return prepared_snapshot(metric, raw, rowids, alive)


def _cache(metric: DistanceMetric) -> VectorCache:
    cache = VectorCache.__new__(VectorCache)
    cache.metric, cache.coalesce = metric, False
    return cache


def _brute(
    cache: VectorCache, snap: Snapshot, q: np.ndarray, k: int, positions: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(snap.rowids.shape[0]) if positions is None else positions
    if positions is None and snap.alive is not None:
        rows = rows[snap.alive[rows]]
    exact = cache.exact(snap, q, rows)
    ids = snap.rowids[rows]
    order = np.lexsort((ids, exact))[:k]
    return ids[order], exact[order]


def _same(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray]) -> None:
    assert got[0].tolist() == want[0].tolist()
    assert got[1].tobytes() == want[1].tobytes()


def _tied_data(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    raw = rng.integers(-3, 4, size=(n, d)).astype(np.float32)  # many exact ties
    raw[: n // 3] = raw[0]  # a third of the rows equal
    raw[n - 4 :] = 0  # zero rows: NaN under cosine
    return raw


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("filtered", [False, True])
@pytest.mark.parametrize("dead", [False, True])
def test_score_hits_equals_brute_force(metric: DistanceMetric, filtered: bool, dead: bool) -> None:
    rng = np.random.default_rng(21)
    n, d = 120, 8
    raw = _tied_data(rng, n, d)
    alive = None
    if dead and not filtered:
        alive = np.ones(n, dtype=bool)
        alive[::4] = False
    snap = _snap(metric, raw, alive)
    cache = _cache(metric)
    positions = np.flatnonzero(np.arange(n) % 5 != 2) if filtered else None
    m = n if positions is None else positions.size
    queries = [raw[0], raw[5], raw[n // 2], rng.standard_normal(d).astype(np.float32)]
    for q in queries:
        for k in (1, 2, 9, 40, 70, m - 9, m - 8, m - 1, m, m + 5):  # 70: dead rows in reach
            got = score_hits(cache, snap, q, k, positions, None)
            want = _brute(cache, snap, q, k, positions)
            if metric is DistanceMetric.COSINE:  # zero rows (NaN) rank last or not at all
                keep = ~np.isnan(want[1])
                assert not np.isnan(got[1][: int(keep.sum())]).any()
                want = (want[0][keep], want[1][keep])
                got = (got[0][: want[0].size], got[1][: want[0].size])
            _same(got, want)


def test_all_rows_tied_and_k_at_the_edges() -> None:
    raw = np.ones((50, 4), dtype=np.float32)
    for metric in ALL:
        snap, cache = _snap(metric, raw), _cache(metric)
        for k in (1, 10, 49, 50, 60):
            got = score_hits(cache, snap, raw[0], k, None, None)
            _same(got, _brute(cache, snap, raw[0], k, None))
            assert got[0].tolist() == list(range(1, min(k, 50) + 1))  # ties: lowest rowid


def test_infinite_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows that overflow float32 (inner product -inf, L2 NaN fast distances: the squared
    norms overflow) do not break the pick: brute force's answer, the short way's and the
    general way's alike."""
    rng = np.random.default_rng(4)
    raw = rng.standard_normal((60, 4)).astype(np.float32)
    raw[:5] = np.float32(3e38)
    q = np.full(4, np.float32(3e38))
    with np.errstate(over="ignore", invalid="ignore"):
        snap, cache = _snap(DistanceMetric.INNER_PRODUCT, raw), _cache(DistanceMetric.INNER_PRODUCT)
        for k in (1, 3, 10):
            got = score_hits(cache, snap, q, k, None, None)
            _same(got, _brute(cache, snap, q, k, None))
            assert np.isneginf(got[1][: min(k, 5)]).all()
        snap, cache = _snap(DistanceMetric.L2, raw), _cache(DistanceMetric.L2)
        for k in (1, 3, 10):
            quick = score_hits(cache, snap, q, k, None, None)
            with monkeypatch.context() as m:
                m.setattr(_gathered, "quick_pick", lambda *a: None)
                general = score_hits(cache, snap, q, k, None, None)
            _same(quick, general)
            _same(quick, _brute(cache, snap, q, k, None))
            assert quick[1][: min(k, 5)].tolist() == [0.0] * min(k, 5)  # the equal rows


class _Stub:
    """A cache whose exact distances are given: only ``exact`` is used by quick_pick."""

    def __init__(self, exact: np.ndarray) -> None:
        self.values = exact

    def exact(self, snap: Any, query: Any, positions: np.ndarray) -> np.ndarray:
        return self.values[positions]


def test_a_row_at_the_wide_place_is_a_candidate() -> None:
    """The wide-th fast distance ``kth`` equals the k-th winner's bound, and a row showing
    exactly ``kth`` ties that winner with a lower rowid: it must be re-scored (the pick
    is ``approx <= kth``; ``<`` would return the wrong winner)."""
    k, wide, n = 1, 9, 20
    approx = np.full(n, 3.5, dtype=np.float32)
    exact = approx.copy()
    approx[:8] = exact[:8] = 1.0
    approx[8], exact[8] = 2.0, 1.0  # within the margin (1.0) of its exact distance
    rowids = np.arange(10, 10 + n, dtype=np.int64)
    rowids[8] = 1  # the lowest rowid
    margin = 1.0
    assert np.all(np.abs(approx - exact) <= margin)  # the bound below is valid
    stub, snap = _Stub(exact), Snapshot(("t", 1), rowids, np.zeros((n, 1), np.float32), None)
    got = _gathered.quick_pick(
        stub, snap, np.zeros(1, np.float32), k, wide, None, rowids, approx, lambda b: b + margin
    )
    assert got is not None  # the short way answered...
    assert got[0].tolist() == [1] and got[1].tolist() == [1.0]  # ...with the true winner


def test_near_ties_across_block_boundaries() -> None:
    """Rows equal or one ulp apart placed in different gathered blocks: the blocked fast
    distances choose candidates only; the winners and bits are brute force's."""
    rng = np.random.default_rng(8)
    n, d = 6000, 384
    raw = rng.standard_normal((n, d)).astype(np.float32)
    positions = np.arange(0, n, 2)  # 3000 rows: above SINGLE_ELEMENTS, several blocks
    step = _gathered.BLOCK_ELEMENTS // d
    assert positions.size * d > _gathered.SINGLE_ELEMENTS and positions.size > 3 * step
    base = raw[0].copy()
    # copies of row 0 and its one-ulp neighbours at the ends of blocks 0, 1, 2, 3
    for j, b in enumerate((step - 1, step, 2 * step - 1, 2 * step, 3 * step + 5)):
        p = positions[b]
        raw[p] = base if j % 2 else np.nextafter(base, np.float32(np.inf))
    for metric in (DistanceMetric.COSINE, DistanceMetric.INNER_PRODUCT, DistanceMetric.L2):
        snap, cache = _snap(metric, raw), _cache(metric)
        fast = _gathered.gathered_distances(metric, snap, base, positions)
        assert fast is not None  # the blocked path is the one under test
        for q in (base, base * np.float32(1.0000001), rng.standard_normal(d).astype(np.float32)):
            for k in (1, 3, 6, 20):
                got = score_hits(cache, snap, q, k, positions, None)
                _same(got, _brute(cache, snap, q, k, positions))


def test_fast_hits_behave_like_regular_ones() -> None:
    emb = np.arange(3, dtype=np.float32)
    fast = hit("a", "doc", {"x": [1, 2]}, 0.25, 0.75, emb)
    slow = SearchResult("a", "doc", {"x": [1, 2]}, 0.25, 0.75, emb)
    assert vars(fast).keys() == vars(slow).keys()  # every field set, in the same order
    assert [f.name for f in dataclasses.fields(SearchResult)] == list(vars(fast))
    back = pickle.loads(pickle.dumps(fast))
    assert back == slow and back.embedding is not None and back.embedding.tolist() == [0, 1, 2]
    assert copy.deepcopy(fast) == slow and copy.copy(fast) == slow
    assert dataclasses.asdict(fast)["metadata"] == {"x": [1, 2]}
    changed = dataclasses.replace(fast, score=0.5)
    assert changed == SearchResult("a", "doc", {"x": [1, 2]}, 0.25, 0.5, emb)
    with pytest.raises(TypeError):  # a dict field: as unhashable as a regular one
        hash(fast)
    plain = hit("b", None, {}, 0.1, 0.9)
    with pytest.raises(TypeError):
        hash(plain)
    for name in ("id", "distance", "text_score", "embedding"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(fast, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        del fast.id
