"""The short way of ``score_hits`` (``_quick_pick``) and the blocked gather of a filter's
rows (``_gathered``) give exactly the general way's winners and distances."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests._snapshots import prepared_snapshot
from tidb_jina.store import _gathered
from tidb_jina.store._embedded import Snapshot, VectorCache, score_hits
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._rounding import within

METRICS = [DistanceMetric.COSINE, DistanceMetric.INNER_PRODUCT, DistanceMetric.L2]


def _snapshot(metric: DistanceMetric, raw: np.ndarray) -> Snapshot:
    return prepared_snapshot(metric, raw)


def _adversarial(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Random rows, many exact duplicates, rows one ulp apart, tiny (denormal) values."""
    raw = rng.standard_normal((n, d)).astype(np.float32)
    raw[n // 4 : n // 2] = raw[0]  # a quarter of the rows tie exactly with row 0
    near = raw[1].copy()
    for i in range(n // 2, n // 2 + 40):  # rows a few ulps from row 1
        raw[i] = np.nextafter(near, np.float32(np.inf)) if i % 2 else near
        near = raw[i]
    raw[n - 5 :, : d // 2] = np.float32(1e-41)  # denormal halves
    return raw


def _general(monkeypatch: pytest.MonkeyPatch, *args: Any) -> tuple[np.ndarray, np.ndarray]:
    with monkeypatch.context() as m:
        m.setattr(_gathered, "quick_pick", lambda *a: None)
        return score_hits(*args)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("filtered", [False, True])
def test_quick_equals_general(
    monkeypatch: pytest.MonkeyPatch, metric: DistanceMetric, filtered: bool
) -> None:
    rng = np.random.default_rng(7)
    raw = _adversarial(rng, 2000, 64)
    snap = _snapshot(metric, raw)
    cache = VectorCache.__new__(VectorCache)
    cache.metric, cache.coalesce = metric, False
    positions = np.flatnonzero(np.arange(2000) % 3 != 1) if filtered else None
    taken = 0
    real = _gathered.quick_pick

    def counting(*a: Any) -> Any:
        nonlocal taken
        out = real(*a)
        taken += out is not None
        return out

    monkeypatch.setattr(_gathered, "quick_pick", counting)
    queries = [raw[0], raw[1], raw[n := 1500], rng.standard_normal(64).astype(np.float32)]
    queries += [raw[0] + np.float32(1e-7), raw[n] * np.float32(3)]
    for q in queries:
        for k in (1, 3, 10, 50):
            quick = score_hits(cache, snap, q, k, positions, None)
            slow = _general(monkeypatch, cache, snap, q, k, positions, None)
            assert np.array_equal(quick[0], slow[0])
            assert quick[1].tobytes() == slow[1].tobytes()
    assert taken > 0  # the short way answered some of them (not all: the tied rows)


def test_nan_rows_go_the_general_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero rows of a cosine table normalise to NaN: the short way never ranks them."""
    rng = np.random.default_rng(3)
    raw = rng.standard_normal((300, 16)).astype(np.float32)
    raw[::2] = 0  # half the rows have no cosine distance
    snap = _snapshot(DistanceMetric.COSINE, raw)
    cache = VectorCache.__new__(VectorCache)
    cache.metric, cache.coalesce = DistanceMetric.COSINE, False
    for k in (5, 140, 160):
        q = rng.standard_normal(16).astype(np.float32)
        quick = score_hits(cache, snap, q, k, None, None)
        slow = _general(monkeypatch, cache, snap, q, k, None, None)
        assert np.array_equal(quick[0], slow[0])
        assert quick[1].tobytes() == slow[1].tobytes()
        assert not np.isnan(quick[1][: min(k, 150)]).any()


@pytest.mark.parametrize("metric", METRICS)
def test_gathered_blocks_within_the_rounding_bound(metric: DistanceMetric) -> None:
    """Blocks of rows (more than one: 3,000 rows of 384) give the fast distances of
    ``distances_to`` within the bound ``score_hits`` relies on."""
    rng = np.random.default_rng(11)
    raw = rng.standard_normal((5000, 384)).astype(np.float32)
    snap = _snapshot(metric, raw)
    cache = VectorCache.__new__(VectorCache)
    cache.metric = metric
    positions = np.sort(rng.choice(5000, 3000, replace=False))
    assert positions.size > _gathered.BLOCK_ELEMENTS // 384  # several blocks
    q = rng.standard_normal(384).astype(np.float32)
    fast = _gathered.gathered_distances(metric, snap, q, positions)
    assert fast is not None and fast.dtype == np.float32 and fast.shape == positions.shape
    exact = cache.exact(snap, q, positions)
    for got, want in zip(fast.tolist(), exact.tolist(), strict=True):
        bound = within(metric, snap.matrix, snap.sq_norms, snap.extras, q, want)
        assert got <= bound
    assert np.allclose(fast, cache.distances_to(snap, q, positions), rtol=1e-5, atol=1e-4)
    assert _gathered.gathered_distances(DistanceMetric.L1, snap, q, positions) is None


def test_fast_made_hits_equal_regular_ones() -> None:
    """``_results.hit`` gives the very object ``SearchResult(...)`` gives: fields,
    equality, hash, repr, frozenness."""
    import dataclasses

    from tidb_jina.store._results import SearchResult, hit

    emb = np.ones(3, dtype=np.float32)
    fast = hit("a", None, {"x": 1}, 0.25, 0.75, emb)
    slow = SearchResult("a", None, {"x": 1}, 0.25, 0.75, emb)
    assert fast == slow and repr(fast) == repr(slow)
    assert dataclasses.asdict(fast).keys() == dataclasses.asdict(slow).keys()
    assert fast.text_score is None and fast.embedding is emb
    assert hit("b", "d", {}, 0.1, 0.9) == SearchResult("b", "d", {}, 0.1, 0.9)
    assert hit("b", "d", {}, 0.1, 0.9) != slow
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "c"  # type: ignore[misc]


def test_dead_rows_never_win(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows replaced or deleted since (``alive`` False), nearest of all, stay out."""
    rng = np.random.default_rng(5)
    raw = rng.standard_normal((500, 32)).astype(np.float32)
    base = _snapshot(DistanceMetric.COSINE, raw)
    alive = np.ones(500, dtype=bool)
    alive[:200:3] = False
    snap = Snapshot(base.token, base.rowids, base.matrix, None, alive)
    cache = VectorCache.__new__(VectorCache)
    cache.metric, cache.coalesce = DistanceMetric.COSINE, False
    for q in (raw[0], raw[3], raw[4]):
        quick = score_hits(cache, snap, q, 10, None, None)
        slow = _general(monkeypatch, cache, snap, q, 10, None, None)
        assert np.array_equal(quick[0], slow[0])
        assert quick[1].tobytes() == slow[1].tobytes()
        assert alive[quick[0] - 1].all()
