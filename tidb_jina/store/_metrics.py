"""Distance metrics: what each one is called in SQL, how NumPy computes it, and its score.

Every search returns the raw distance (exactly what TiDB's ``VEC_*`` function returns)
and a relevance score in [0, 1] (higher is more relevant) defined per metric:

============== ====================================== =======================================
metric         distance                                relevance score
============== ====================================== =======================================
cosine         1 - cos(a, b), in [0, 2]                clamp(1 - distance, 0, 1): the cosine
                                                       similarity, 0 for opposed vectors
l2             Euclidean distance, >= 0                1 / (1 + distance)
inner_product  -(a . b)  (VEC_NEGATIVE_INNER_PRODUCT)  clamp(-distance, 0, 1): the dot
                                                       product, equal to cosine similarity for
                                                       normalized embeddings
l1             Manhattan distance, >= 0                1 / (1 + distance)
============== ====================================== =======================================

Cosine and inner product agree on normalized vectors (Jina and TEI normalize by
default), so a ``score_threshold`` means the same thing on both.
"""

from __future__ import annotations

import enum

import numpy as np

from tidb_jina._errors import InvalidInputError


class DistanceMetric(str, enum.Enum):
    """How vectors are compared. Members carry their TiDB SQL function."""

    COSINE = "cosine"
    L2 = "l2"
    INNER_PRODUCT = "inner_product"
    L1 = "l1"

    @property
    def sql_function(self) -> str:
        return _SQL_FUNCTIONS[self]

    @property
    def indexable(self) -> bool:
        """Whether TiDB can build an HNSW vector index for this metric."""
        return self in (DistanceMetric.COSINE, DistanceMetric.L2)

    @classmethod
    def parse(cls, value: DistanceMetric | str) -> DistanceMetric:
        """Accept a member, its value, or the names other libraries use.

        ``"cosine"``, ``"COSINE"``, ``"euclidean"``, ``"l2"``, ``"inner_product"``,
        ``"dot"``, ``"max_inner_product"``, ``"l1"``, ``"manhattan"``, and enum members of
        other libraries whose ``.value`` is one of these.
        """
        if isinstance(value, DistanceMetric):
            return value
        raw = getattr(value, "value", value)
        key = str(raw).strip().lower().replace("-", "_").replace(" ", "_")
        try:
            return _ALIASES[key]
        except KeyError:
            raise InvalidInputError(
                f"unknown distance metric {raw!r}; use one of: cosine, l2 (euclidean), "
                "inner_product (dot), l1 (manhattan)"
            ) from None

    def distances(self, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Distances from ``query`` to every row of ``matrix`` (float32, vectorised)."""
        if self is DistanceMetric.COSINE:
            norms = np.linalg.norm(matrix, axis=1) * np.float32(np.linalg.norm(query))
            dots = matrix @ query
            with np.errstate(divide="ignore", invalid="ignore"):
                # A zero vector has no cosine distance: NaN (TiDB returns NULL).
                sims = np.where(norms > 0, dots / norms, np.float32(np.nan))
            return np.float32(1.0) - sims
        if self is DistanceMetric.INNER_PRODUCT:
            return -(matrix @ query)
        if self is DistanceMetric.L2:
            diff = matrix - query
            return np.sqrt(np.einsum("ij,ij->i", diff, diff))
        return np.abs(matrix - query).sum(axis=1)

    def score(self, distance: float) -> float:
        """Relevance score in [0, 1] for one distance (see the module table)."""
        if self is DistanceMetric.COSINE:
            return min(1.0, max(0.0, 1.0 - distance))
        if self is DistanceMetric.INNER_PRODUCT:
            return min(1.0, max(0.0, -distance))
        return 1.0 / (1.0 + max(0.0, distance))

    def max_distance_for_score(self, score: float) -> float:
        """The largest distance whose score is still >= ``score`` (for thresholds)."""
        if not 0.0 <= score <= 1.0:
            raise InvalidInputError(f"score threshold must be within [0, 1], got {score}")
        if self is DistanceMetric.COSINE:
            return 1.0 - score
        if self is DistanceMetric.INNER_PRODUCT:
            return -score
        return float("inf") if score == 0 else 1.0 / score - 1.0


_SQL_FUNCTIONS = {
    DistanceMetric.COSINE: "VEC_COSINE_DISTANCE",
    DistanceMetric.L2: "VEC_L2_DISTANCE",
    DistanceMetric.INNER_PRODUCT: "VEC_NEGATIVE_INNER_PRODUCT",
    DistanceMetric.L1: "VEC_L1_DISTANCE",
}

_ALIASES = {
    "cosine": DistanceMetric.COSINE,
    "cos": DistanceMetric.COSINE,
    "l2": DistanceMetric.L2,
    "euclidean": DistanceMetric.L2,
    "euclidean_distance": DistanceMetric.L2,
    "inner_product": DistanceMetric.INNER_PRODUCT,
    "ip": DistanceMetric.INNER_PRODUCT,
    "dot": DistanceMetric.INNER_PRODUCT,
    "dot_product": DistanceMetric.INNER_PRODUCT,
    "max_inner_product": DistanceMetric.INNER_PRODUCT,
    "negative_inner_product": DistanceMetric.INNER_PRODUCT,
    "l1": DistanceMetric.L1,
    "manhattan": DistanceMetric.L1,
}
