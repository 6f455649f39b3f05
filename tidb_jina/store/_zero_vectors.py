"""Vectors without a cosine distance: all-zero vectors, and the NULL distances they give.

TiDB computes ``VEC_COSINE_DISTANCE`` as ``1 - a.b / (|a| |b|)``; when either side is all
zeros that is NaN, which ``pkg/expression/builtin_vec.go`` returns as SQL NULL (the same
for every distance function, and for a NULL ``embedding``). NULLs sort first in
``ORDER BY distance``. The rule, the same on both engines:

* writing an all-zero vector to a cosine table is an ``InvalidVectorError`` (raised
  before anything is written), and so is searching a cosine table with one;
* a row whose distance is undefined (NULL on TiDB, NaN on the embedded engine), which only
  a table filled by other tools can hold, is left out of the results, never ranked and
  never an error. TiDB's backend replaces the slots such rows took by one exact query
  that skips them (``_backend_tidb``), so ``k`` rows still come back when ``k`` exist.
"""

from __future__ import annotations

import math

import numpy as np

from tidb_jina._errors import InvalidVectorError
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import SearchResult


def _no_float32_norm(matrix: np.ndarray) -> np.ndarray:
    """Rows whose squared length is 0 in float32, as TiDB sums it (``pkg/types/vector.go``
    ``CosineDistance``: ``norma += va[i] * va[i]`` in float32): all zeros, or every value
    below about 1e-23. TiDB's cosine distance for such a row is NULL, or 0 (a clamped
    ``x / 0``) for every query, while numpy's scaled norm would still rank it.

    (A squared length that overflows, values above about 1e19, makes TiDB answer 1 or
    NULL; such vectors stay storable, since round-tripping float32's whole range is
    promised. Real embeddings are nowhere near either end.)"""
    m = matrix.astype(np.float32, copy=False)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        squares = np.einsum("ij,ij->i", m, m)
    return squares == 0


def _why(vector: np.ndarray) -> str:
    if not vector.any():
        return "is all zeros: it has no cosine distance to anything (TiDB returns NULL)"
    return (
        "has a squared length of 0 in float32 (every value below about 1e-23): TiDB "
        "computes no usable cosine distance for it"
    )


def check_rows(matrix: np.ndarray, metric: DistanceMetric) -> None:
    """Refuse rows of ``matrix`` without a cosine distance when the table compares by
    cosine: all zeros, or a squared length that is 0 in float32."""
    if metric is not DistanceMetric.COSINE or matrix.size == 0:
        return
    bad = _no_float32_norm(matrix.reshape(len(matrix), -1))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InvalidVectorError(
            f"vector {row} {_why(matrix[row])}, so a cosine table cannot store it. Check "
            "the embedding model's output (or normalize it), or use a table with "
            "metric='l2' or 'inner_product'"
        )


# A sum of float32 squares that is 0 has every square below 2**-150 (rounded to 0), so
# the true sum is below 16,384 * 2**-150 (about 1.2e-41) at the largest dimension, and no
# summation (float32 or double, any order, FMA or not) can show more than that.
_SURELY_NONZERO = 1e-30


def check_query(vector: np.ndarray, metric: DistanceMetric) -> None:
    """Refuse a query vector without a cosine distance on a cosine table (every
    distance would be NULL or meaningless).

    One BLAS dot product answers for every real query (a search's fixed cost); only a
    squared length near 0 is settled by TiDB's float32 sum (``_no_float32_norm``)."""
    if metric is not DistanceMetric.COSINE or not vector.size:
        return
    if vector.ndim == 1 and vector.dtype == np.float32:
        with np.errstate(over="ignore", invalid="ignore"):
            if float(vector.dot(vector)) > _SURELY_NONZERO:  # NaN: not this way
                return
    if _no_float32_norm(vector[None, :])[0]:
        raise InvalidVectorError(
            f"the query vector {_why(vector)}; check the embedding model's output"
        )


def is_undefined(distance: float | None) -> bool:
    """True for a distance TiDB returns as NULL (or the embedded engine as NaN)."""
    return distance is None or math.isnan(distance)


def defined(results: list[SearchResult]) -> list[SearchResult]:
    """``results`` without the rows whose distance is undefined."""
    if not any(math.isnan(r.distance) for r in results):
        return results
    return [r for r in results if not math.isnan(r.distance)]
