"""Fast distances from one query to a subset of a snapshot's rows (a filter's matches).

NumPy's way (``matrix[rows] @ query``) gathers every matching row into one new array,
then multiplies it, and OpenBLAS splits a matrix-vector product over its threads from
about 460,000 elements. Above ``SINGLE_ELEMENTS`` (4 MB of rows: a 10% filter of 100,000
x 768 is 30 MB) the rows are gathered and multiplied here in blocks of about 1 MB
(``BLOCK_ELEMENTS``): each block is still in the core's own cache when it is multiplied,
and each product is small enough that OpenBLAS runs it on the calling thread. Measured
on this machine (2 shared cores), 10,000 rows: 3.4-3.6 ms against 4.5-4.9 ms for one
gather and one product; ``filtered_search.py`` 10% filter 0.66-0.93x NumPy's
mask-and-gather (0.91-1.06x before). Smaller sets keep one gather and one product: at
1,000 rows the blocks were faster alone (135 us against 225-280 us) but not in the
bench (1% filter 1.58x / 1.67x NumPy in blocks, 1.45x / 1.47x in one piece).
``quick_pick`` (below) is the shorter exact re-score of ``score_hits``.

These are the *fast* distances only: ``score_hits`` re-scores its winners exactly
(``VectorCache.exact``), and the rounding bound it relies on (``_rounding``) holds for a
float32 dot product in any summation order, so the blocks change no result. The
formulas (``product_vector``, ``from_products``) are ``VectorCache.distances_to``'s too
(L1 is left to it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import numpy as np

from tidb_jina.store._metrics import DistanceMetric

P = ParamSpec("P")
R = TypeVar("R")

# ``snap``: an ``_embedded.Snapshot`` (typed Any here: ``_embedded`` imports this module)

# Floats per gathered block: 1 MB, half a core's L2 cache here, and under OpenBLAS's
# threshold for a threaded matrix-vector product (115200 * 4 elements).
BLOCK_ELEMENTS = 2**18
# Up to this many floats (4 MB: a 1% filter of 100,000 x 768), one gather and one product
# (see the module docstring).
SINGLE_ELEMENTS = 2**20


def gathered_distances(
    metric: DistanceMetric, snap: Any, query: np.ndarray, positions: np.ndarray
) -> np.ndarray | None:
    """The fast distances from ``query`` to ``snap``'s rows at ``positions`` (float32, in
    that order); None for L1 (computed row by row elsewhere) and for sets of at most
    ``SINGLE_ELEMENTS`` floats (``VectorCache.distances_to`` scores those)."""
    if metric is DistanceMetric.L1 or query.dtype != np.float32:
        return None
    matrix = snap.matrix
    m = positions.shape[0]
    if m * matrix.shape[1] <= SINGLE_ELEMENTS:
        return None  # small: ``VectorCache.distances_to``'s one gather and one product
    vector = product_vector(metric, query)
    out = np.empty(m, dtype=np.float32)
    step = max(16, BLOCK_ELEMENTS // max(1, matrix.shape[1]))
    block = np.empty((step, matrix.shape[1]), dtype=np.float32)
    for start in range(0, m, step):
        part = positions[start : start + step]
        rows = block[: part.shape[0]]
        # mode="clip": with ``out``, "raise" would gather into a temporary first;
        # positions come from the snapshot's own masks, never out of range
        np.take(matrix, part, axis=0, out=rows, mode="clip")
        np.matmul(rows, vector, out=out[start : start + part.shape[0]])
    sq = None if snap.sq_norms is None else np.take(snap.sq_norms, positions)
    return from_products(metric, out, sq, query)


def silent_overflow(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` under ``np.errstate(over="ignore", invalid="ignore")`` (about 1 us a call):
    a query whose float32 norm or products overflow (values above about 1e19) ranks as
    TiDB ranks it (cosine: distance 1 or NULL), without NumPy's ``RuntimeWarning``
    reaching the caller. Scoped to the call, never a global filter: the caller's own
    NumPy settings and warning filters are left as they were."""

    @functools.wraps(func)
    def quiet(*args: P.args, **kwargs: P.kwargs) -> R:
        with np.errstate(over="ignore", invalid="ignore"):
            return func(*args, **kwargs)

    return quiet


def product_vector(metric: DistanceMetric, query: np.ndarray) -> np.ndarray:
    """What the rows are multiplied by: the unit query for cosine (rows are stored unit
    length; a zero query stays as it is), the query itself otherwise."""
    if metric is DistanceMetric.COSINE:
        norm = np.float32(np.linalg.norm(query))
        return query / norm if norm > 0 else query
    return query


def from_products(
    metric: DistanceMetric, products: np.ndarray, sq_norms: np.ndarray | None, query: np.ndarray
) -> np.ndarray:
    """The fast distances of rows from their products with ``product_vector`` (written
    over ``products``); ``sq_norms``: those rows' squared norms (L2 only). Not L1."""
    if metric is DistanceMetric.COSINE:
        return np.subtract(np.float32(1.0), products, out=products)
    if metric is DistanceMetric.INNER_PRODUCT:
        return np.negative(products, out=products)
    assert metric is DistanceMetric.L2 and sq_norms is not None
    d2 = sq_norms - np.float32(2.0) * products + np.float32(query @ query)
    return np.sqrt(np.maximum(d2, 0, out=d2))


def quick_pick(
    cache: Any,
    snap: Any,
    query: np.ndarray,
    k: int,
    wide: int,
    positions: np.ndarray | None,
    rowids: np.ndarray,
    approx: np.ndarray,
    fast_bound: Callable[[float], float],
) -> tuple[np.ndarray, np.ndarray] | None:
    """``score_hits`` without ``max_distance``, in fewer steps; None: take the general way.

    The same winners and the same distances as the general way, by the same argument:
    ``chosen`` holds every row whose fast distance is at most the ``wide``-th smallest
    (``kth``); the winners are the k first of ``chosen`` by (exact distance, rowid). A row
    outside ``chosen`` shows a fast distance above ``kth``; if the k-th exact winner's
    bound (the largest fast distance a row exactly as near can show) is at most ``kth``,
    no such row can be as near as that winner, so none was missed. Otherwise (a near tie
    around the ``wide``-th place, NaN rows, many equal distances) the general way answers.
    The exact distances come from ``VectorCache.exact`` alone, as on the general way, so a
    search and a batch search still return the same bits."""
    n = approx.shape[0]
    if wide >= n:
        return None
    kth = np.partition(approx, wide - 1)[wide - 1]
    if kth != kth or kth == np.inf:
        return None  # NaN or dead rows within reach: the general way handles them
    chosen = np.flatnonzero(approx <= kth)
    if chosen.size > 4 * wide:
        return None  # many ties at the ``wide``-th place
    live = snap.alive if positions is None else None
    if live is not None:
        chosen = chosen[live[chosen]]
    exact = cache.exact(snap, query, chosen if positions is None else positions[chosen])
    ids = rowids[chosen]
    order = np.lexsort((ids, exact))[:k]
    if order.size < k:
        return None
    limit = float(exact[order[-1]])
    if limit != limit or fast_bound(limit) > kth:
        return None  # a row outside ``chosen`` might rank: the general way looks wider
    return ids[order], exact[order]
