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


def check_rows(matrix: np.ndarray, metric: DistanceMetric) -> None:
    """Refuse all-zero rows of ``matrix`` when the table compares by cosine."""
    if metric is not DistanceMetric.COSINE or matrix.size == 0:
        return
    zero = ~matrix.any(axis=1)
    if zero.any():
        row = int(np.flatnonzero(zero)[0])
        raise InvalidVectorError(
            f"vector {row} is all zeros: it has no cosine distance to anything (TiDB returns "
            "NULL), so a cosine table cannot store it. Check the embedding model's output, "
            "or use a table with metric='l2' or 'inner_product'"
        )


def check_query(vector: np.ndarray, metric: DistanceMetric) -> None:
    """Refuse an all-zero query vector on a cosine table (every distance would be NULL)."""
    if metric is DistanceMetric.COSINE and vector.size and not vector.any():
        raise InvalidVectorError(
            "the query vector is all zeros: it has no cosine distance to any row; "
            "check the embedding model's output"
        )


def is_undefined(distance: float | None) -> bool:
    """True for a distance TiDB returns as NULL (or the embedded engine as NaN)."""
    return distance is None or math.isnan(distance)


def defined(results: list[SearchResult]) -> list[SearchResult]:
    """``results`` without the rows whose distance is undefined."""
    if not any(math.isnan(r.distance) for r in results):
        return results
    return [r for r in results if not math.isnan(r.distance)]
