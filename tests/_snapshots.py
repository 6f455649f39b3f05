"""A ``Snapshot`` built by hand from raw rows, prepared for its metric as a load does
(unit rows for cosine, squared norms for L2), for tests of the scoring helpers."""

from __future__ import annotations

import numpy as np

from tidb_jina.store._embedded import Snapshot
from tidb_jina.store._metrics import DistanceMetric


def prepared_snapshot(
    metric: DistanceMetric,
    raw: np.ndarray,
    rowids: np.ndarray | None = None,
    alive: np.ndarray | None = None,
) -> Snapshot:
    """Rowids 1..n unless given; a zero row becomes NaN for cosine, as in a load."""
    raw = raw.astype(np.float32)
    if metric is DistanceMetric.COSINE:
        with np.errstate(invalid="ignore", divide="ignore"):
            matrix = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    else:
        matrix = raw
    sq = np.einsum("ij,ij->i", raw, raw) if metric is DistanceMetric.L2 else None
    if rowids is None:
        rowids = np.arange(1, raw.shape[0] + 1, dtype=np.int64)
    return Snapshot(("t", 1), rowids, matrix, sq, alive)
