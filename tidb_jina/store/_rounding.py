"""How far a fast (BLAS) distance can be from the exact one: the margin that lets
``score_hits`` pick winners by exact distance without missing one the fast pass
ranked too far, and honour ``max_distance`` exactly.

A float32 dot product of length d, in any summation order, is within
``d * eps * |r| * |q|`` of the true one (Higham, "Accuracy and Stability of Numerical
Algorithms", 3.1); the margin doubles that, plus a few roundings of the subtraction.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tidb_jina.store._metrics import DistanceMetric

_EPS = float(np.finfo(np.float32).eps)


def _max_norm(matrix: np.ndarray, sq_norms: np.ndarray | None, extras: dict[str, Any]) -> float:
    """The largest row norm of a snapshot (kept in its ``extras``: snapshots never change)."""
    cached = extras.get("max_norm")
    if cached is None:
        if matrix.shape[0] == 0:
            cached = 0.0
        elif sq_norms is not None:
            cached = float(np.sqrt(np.max(sq_norms.astype(np.float64))))
        else:
            # float32 (one pass, like a product); 1% over for its rounding; overflow: inf
            with np.errstate(over="ignore", invalid="ignore"):
                sq = np.einsum("ij,ij->i", matrix, matrix)
            cached = float(np.sqrt(np.max(sq.astype(np.float64)))) * 1.01
        extras["max_norm"] = cached
    return float(cached)


def within(
    metric: DistanceMetric,
    matrix: np.ndarray,
    sq_norms: np.ndarray | None,
    extras: dict[str, Any],
    query: np.ndarray,
    bound: float,
) -> float:
    """The largest fast distance a row whose exact distance is at most ``bound`` can show
    (``inf`` when nothing useful bounds it, e.g. NaN or overflowing values)."""
    d = matrix.shape[1] if matrix.ndim == 2 else 1
    gamma = 2.0 * (d + 8) * _EPS
    if metric is DistanceMetric.COSINE:  # unit (or zero) rows, unit (or zero) query
        slack = gamma * 2.0
    elif metric is DistanceMetric.INNER_PRODUCT:
        q = float(np.linalg.norm(query.astype(np.float64)))
        slack = gamma * (_max_norm(matrix, sq_norms, extras) * q + 1.0)
    elif metric is DistanceMetric.L2:
        q = float(np.linalg.norm(query.astype(np.float64)))
        r = _max_norm(matrix, sq_norms, extras)
        sq_slack = gamma * (r + q) ** 2 + gamma
        top = float(np.sqrt(max(bound, 0.0) ** 2 + sq_slack))
        return top if np.isfinite(top) else float("inf")
    else:  # L1: the fast distance is computed row by row like the exact one
        slack = gamma * (bound + 1.0)
    top = bound + slack
    return top if np.isfinite(top) else float("inf")
