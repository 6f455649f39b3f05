"""Which relevance function LangChain's ``similarity_search_with_relevance_scores`` uses.

The core scores every hit in [0, 1] its own way (``SearchResult.score``). LangChain has
its own conventions per metric, which PGVector and Chroma follow, and a
``score_threshold`` tuned on one of them should mean the same here. So the LangChain
store maps the raw distance with langchain-core's own functions (nothing is recomputed
here):

============== ================================ =====================================
metric         distance (core)                  LangChain relevance
============== ================================ =====================================
cosine         1 - cos                          ``1 - d`` (the cosine similarity)
l2             Euclidean distance               ``1 - d / sqrt(2)`` (negative beyond
                                                sqrt(2): meant for unit vectors)
inner_product  -(a . b)                         ``max(-d, 0)``: the dot product, 0 when
                                                it is negative (see below)
l1             Manhattan distance               the core's ``1 / (1 + d)``: LangChain
                                                has no L1 convention
============== ================================ =====================================

Inner product: langchain-core's ``_max_inner_product_relevance_score_fn`` returns ``-d``
(the dot product) when ``d <= 0`` and ``1 - d`` otherwise. With a distance of ``-(a . b)``
(ours, and PGVector's) the second branch gives an *opposed* vector (dot product -0.3) the
relevance 0.7, above a matching one with dot product 0.5, so a ``score_threshold`` of 0.6
would keep the opposed document and drop the matching one. Here a negative dot product
scores 0 instead; wherever the dot product is >= 0 the number is langchain-core's.
"""

from __future__ import annotations

from collections.abc import Callable

from langchain_core.vectorstores import VectorStore

from tidb_jina.store import DistanceMetric

__all__ = ["relevance_fn"]


def relevance_fn(metric: DistanceMetric) -> Callable[[float], float]:
    """langchain-core's distance -> relevance function for ``metric``."""
    if metric is DistanceMetric.COSINE:
        return _cosine_relevance
    if metric is DistanceMetric.L2:
        return VectorStore._euclidean_relevance_score_fn
    if metric is DistanceMetric.INNER_PRODUCT:
        return _inner_product_relevance
    return metric.score


def _inner_product_relevance(distance: float) -> float:
    """langchain-core's function where it is monotonic (dot product >= 0), else 0."""
    return VectorStore._max_inner_product_relevance_score_fn(distance) if distance <= 0 else 0.0


def _cosine_relevance(distance: float) -> float:
    """langchain-core's ``1 - d``; a cosine distance is never below 0, so float rounding
    just under it (``-1e-7`` for the query's own vector) counts as 0, keeping scores <= 1
    (langchain-core warns about a score above 1)."""
    return VectorStore._cosine_relevance_score_fn(max(distance, 0.0))
