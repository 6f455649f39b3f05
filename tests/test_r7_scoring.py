"""The embedded search's scoring helpers (issue 18, seventh round).

* A query whose float32 norm overflows (values above about 1e19) ranks as before (cosine:
  distance 1 for every row, as TiDB's float32 ``CosineDistance`` gives; L2: every
  distance inf), ties by rowid, and NumPy's overflow ``RuntimeWarning`` never reaches
  the caller: the scoring runs under a scoped ``np.errstate``, so a program that turns
  warnings into errors keeps working.
* ``score_hits`` never writes into an ``approx`` array its caller passes (a batch
  search's column): rows dead in the snapshot are marked in a copy.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from tidb_jina.store import VectorTable, _embedded, _gathered
from tidb_jina.store._metrics import DistanceMetric

N, D = 60, 8


def _table(tmp_path, metric, cache=True):
    table = VectorTable(
        f"sqlite:///{tmp_path / 'r7.db'}", table_name="s", metric=metric, search_cache=cache
    )
    rng = np.random.default_rng(5)
    table.upsert(
        rng.normal(size=(N, D)).astype(np.float32),
        ids=[f"r{i:02d}" for i in range(N)],
        metadatas=[{"g": i % 3} for i in range(N)],
    )
    return table


# (metric, the distance every row shows for a query whose norm overflows)
OVERFLOWING = [("cosine", 1.0), ("l2", float("inf"))]


@pytest.mark.parametrize("scale", [3e19, 1e30])
@pytest.mark.parametrize("cache", [True, False], ids=["snapshot", "general"])
@pytest.mark.parametrize(("metric", "distance"), OVERFLOWING)
def test_an_overflowing_query_is_silent_and_ranks_as_before(
    tmp_path, metric, distance, cache, scale
):
    table = _table(tmp_path, metric, cache)
    query = np.full(D, scale, dtype=np.float32)
    query[1] = -scale  # a sign mixed in: the products overflow both ways
    everyone = [f"r{i:02d}" for i in range(N)]
    in_group = [f"r{i:02d}" for i in range(1, N, 3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails the search
        for _ in range(2):  # the first search loads the snapshot; the second is the fast one
            for flt, ids in ((None, everyone), ({"g": 1}, in_group)):
                hits = table.search(query, k=4, filter=flt)
                assert [h.id for h in hits] == ids[:4]  # all tied: by rowid
                assert [h.distance for h in hits] == [distance] * 4
                many = table.search_many([query, query * np.float32(0.5)], k=4, filter=flt)
                for got in many:
                    assert [h.id for h in got] == ids[:4]
                    assert [h.distance for h in got] == [distance] * 4
    table.close()


@pytest.mark.parametrize("cache", [True, False], ids=["snapshot", "general"])
@pytest.mark.parametrize("metric", ["cosine", "l2", "inner_product"])
def test_a_query_near_float32s_largest_is_silent_too(tmp_path, metric, cache):
    """Values near float32's largest (3e38): L2 leaves the rows it cannot score (NaN)
    out, as before; a batch answers like single searches, and nothing warns."""
    table = _table(tmp_path, metric, cache)
    query = np.full(D, 3e38, dtype=np.float32)
    query[1] = -3e38
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for flt in (None, {"g": 1}, {"g": {"$in": [0, 2]}}):
            one = [(h.id, h.distance) for h in table.search(query, k=4, filter=flt)]
            again = [(h.id, h.distance) for h in table.search(query, k=4, filter=flt)]
            many = table.search_many([query], k=4, filter=flt)[0]
            assert one == again == [(h.id, h.distance) for h in many]
            assert one  # some rows always rank
    table.close()


def test_warnings_outside_the_search_are_left_as_the_caller_set_them(tmp_path):
    """The silence is scoped: after a search, NumPy's own settings are what they were."""
    table = _table(tmp_path, "cosine")
    before = np.geterr()
    table.search(np.full(D, 3e19, dtype=np.float32), k=2)
    assert np.geterr() == before
    with pytest.warns(RuntimeWarning):
        np.float32(3e38) * np.float32(10.0)
    table.close()


def _dead_rows_snapshot(tmp_path):
    """A loaded snapshot with rows marked dead (replaced and deleted since the load)."""
    table = _table(tmp_path, "cosine")
    rng = np.random.default_rng(9)
    table.search(rng.normal(size=D).astype(np.float32), k=1)  # loads the snapshot
    table.upsert(rng.normal(size=(3, D)).astype(np.float32), ids=["r00", "r05", "new"])
    table.delete(["r10", "r11"])
    cache = table._backend.cache
    snap = cache.snapshot
    assert snap is not None and snap.alive is not None and not snap.alive.all()
    return table, cache, snap, rng


def test_score_hits_never_writes_the_callers_approx(tmp_path):
    table, cache, snap, rng = _dead_rows_snapshot(tmp_path)
    queries = rng.normal(size=(3, D)).astype(np.float32)
    approx = cache.many_distances(snap, queries, None)
    kept = approx.copy()
    for i, q in enumerate(queries):
        given = _embedded.score_hits(cache, snap, q, 5, None, None, approx[:, i])
        alone = _embedded.score_hits(cache, snap, q, 5, None, None)
        assert np.array_equal(given[0], alone[0])
        assert np.array_equal(given[1], alone[1])
        assert snap.positions(np.sort(given[0])) is not None  # alive rows only
    assert np.array_equal(approx, kept)  # not one inf written into the caller's array
    table.close()


def test_a_batch_search_with_dead_rows_answers_like_single_searches(tmp_path):
    table, _, _, rng = _dead_rows_snapshot(tmp_path)
    queries = rng.normal(size=(4, D)).astype(np.float32)
    for flt in (None, {"g": 2}):
        many = table.search_many(queries, k=6, filter=flt)
        for q, got in zip(queries, many, strict=True):
            want = table.search(q, k=6, filter=flt)
            assert [(h.id, h.distance) for h in got] == [(h.id, h.distance) for h in want]
            assert not {"r10", "r11"} & {h.id for h in got}
    table.close()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"filter": {"g": 1}},  # a few rows: one gather, one product
        {"filter": {"g": {"$in": [0, 1, 2]}}},  # every row, gathered in blocks
        {"max_distance": 0.9},  # the general way's exact re-scores
        {"filter": {"g": 2}, "max_distance": 1.2},
    ],
    ids=["all", "filter", "blocks", "bound", "filter-bound"],
)
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "transaction"])
def test_cosine_distances_are_the_exact_formulas_bits(tmp_path, fast, options):
    """Cosine multiplies the rows by the query's unit vector for the fast distances and
    again for the exact ones (``_gathered.product_vector``, twice: issue 18's seventh
    round measured making it once as no faster, see ``bench/README.md``). Whatever the
    way (fast or transactional, blocked gather or not, a bound), every distance returned
    is the exact formula's bits: ``einsum`` of the stored unit rows and the unit query;
    a batch gives the same bits."""
    n, d = 3000, 384  # all rows above ``_gathered.SINGLE_ELEMENTS``: the blocked gather
    table = VectorTable(f"sqlite:///{tmp_path / 'u.db'}", table_name="u", metric="cosine")
    rng = np.random.default_rng(21)
    table.upsert(
        rng.normal(size=(n, d)).astype(np.float32),
        ids=[str(i) for i in range(n)],
        metadatas=[{"g": i % 3} for i in range(n)],
    )
    query = rng.normal(size=d).astype(np.float32)
    table.search(query, k=1, **options)  # loads the snapshot and the columns
    if not fast:  # searches take the transactional way (as after a foreign commit)
        table._backend.cache.busy_until = time.monotonic() + 3600
    hits = table.search(query, k=10, **options)
    assert hits
    snap = table._backend.cache.snapshot
    assert snap is not None
    unit = _gathered.product_vector(DistanceMetric.COSINE, query)
    at = snap.positions(np.asarray([int(h.id) + 1 for h in hits]))  # rowid = id + 1 here
    want = np.float32(1.0) - np.einsum("ij,j->i", snap.matrix[at], unit)
    assert [h.distance for h in hits] == want.tolist()  # bit for bit
    many = table.search_many([query, query], k=10, **options)
    for got in many:
        assert [(h.id, h.distance) for h in got] == [(h.id, h.distance) for h in hits]
    table.close()
