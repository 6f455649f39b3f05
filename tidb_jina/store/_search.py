"""Searches built on the engines' own: hybrid (fusion), maximal marginal relevance.

Both run on any engine, through the table's vector search, full-text search and ``get``
(the :class:`Searchable` Protocol, which ``VectorTable`` satisfies), so they hold no SQL
and no engine branches.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import nan
from typing import Protocol

import numpy as np

from tidb_jina._errors import InvalidInputError
from tidb_jina._maths import maximal_marginal_relevance, reciprocal_rank_fusion, weighted_fusion
from tidb_jina.store._backend import SearchOptions
from tidb_jina.store._filter_tree import Filter
from tidb_jina.store._metrics import DistanceMetric
from tidb_jina.store._results import Record, SearchResult
from tidb_jina.store._rows import without_embedding


class Searchable(Protocol):
    @property
    def metric(self) -> DistanceMetric: ...

    def _vector_search(self, vector: np.ndarray, options: SearchOptions) -> list[SearchResult]: ...

    def _text_search(
        self, text: str, k: int, filter: Filter | None, ids: list[str] | None
    ) -> list[SearchResult]: ...

    def get(
        self, ids: Iterable[str] | None = None, *, include_embeddings: bool = False
    ) -> list[Record]: ...


FUSIONS = ("rrf", "weighted")


def hybrid(
    table: Searchable,
    query: np.ndarray,
    text: str,
    *,
    k: int,
    filter: Filter | None,
    fusion: str,
    rrf_k: int,
    alpha: float,
    pool: int,
    ids: list[str] | None,
) -> list[SearchResult]:
    """Vector and full-text hits fused by RRF (scaled to [0, 1]) or weighted scores."""
    if fusion not in FUSIONS:
        raise InvalidInputError(f"fusion must be 'rrf' or 'weighted', got {fusion!r}")
    for attempt in range(HYBRID_TRIES):
        results = _hybrid_once(
            table, query, text, k, filter, fusion, rrf_k, alpha, pool, ids, attempt
        )
        if results is not None:
            return results
    raise AssertionError("the last try always answers")


HYBRID_TRIES = 3


def _hybrid_once(
    table: Searchable,
    query: np.ndarray,
    text: str,
    k: int,
    filter: Filter | None,
    fusion: str,
    rrf_k: int,
    alpha: float,
    pool: int,
    ids: list[str] | None,
    attempt: int,
) -> list[SearchResult] | None:
    """One fusion; None when a row found by text was deleted before its vector was read
    (the table changed between the searches: the caller tries again). The last try
    leaves such rows out: they no longer exist."""
    options = SearchOptions(k=pool, filter=filter, ids=ids)
    by_vector = table._vector_search(query, options)
    by_text = table._text_search(text, pool, filter, ids)
    if fusion == "rrf":
        fused = reciprocal_rank_fusion(
            [[r.id for r in by_vector], [r.id for r in by_text]], k=rrf_k
        )
    else:
        fused = weighted_fusion(
            {r.id: r.score for r in by_vector},
            {r.id: r.text_score or 0.0 for r in by_text},
            alpha=alpha,
        )
    winners = sorted(fused, key=lambda key: -fused[key])[:k]
    vector_hits = {r.id: r for r in by_vector}
    text_hits = {r.id: r for r in by_text}
    missing = [key for key in winners if key not in vector_hits]
    distances = _distances_for(table, missing, query)
    if any(key not in distances for key in missing):
        if attempt < HYBRID_TRIES - 1:
            return None
        winners = [key for key in winners if key in vector_hits or key in distances]
    results = []
    for key in winners:
        base = vector_hits.get(key) or text_hits[key]
        distance = vector_hits[key].distance if key in vector_hits else distances.get(key, nan)
        results.append(
            SearchResult(
                id=key,
                document=base.document,
                metadata=base.metadata,
                distance=distance,
                score=fused[key],
                text_score=text_hits[key].text_score if key in text_hits else None,
            )
        )
    return results


def _distances_for(table: Searchable, ids: list[str], query: np.ndarray) -> dict[str, float]:
    """Vector distances of rows found only by full-text search.

    A row without a vector distance (a NULL embedding, or an all-zero one under cosine,
    in a table filled by other tools) keeps its text rank with distance NaN."""
    if not ids:
        return {}
    records = table.get(ids, include_embeddings=True)
    found = {r.id: nan for r in records}
    vectors = [r for r in records if r.embedding is not None]
    if vectors:
        matrix = np.stack([np.asarray(r.embedding) for r in vectors]).astype(np.float32)
        values = table.metric.distances(matrix, query)
        found.update({r.id: float(d) for r, d in zip(vectors, values, strict=True)})
    return found


def mmr(
    table: Searchable,
    query: np.ndarray,
    *,
    k: int,
    fetch_k: int,
    lambda_mult: float,
    filter: Filter | None,
    include_embeddings: bool,
    ids: list[str] | None,
) -> list[SearchResult]:
    """Fetch ``fetch_k`` nearest rows, then pick ``k`` by maximal marginal relevance."""
    options = SearchOptions(k=max(fetch_k, k), filter=filter, ids=ids, include_embeddings=True)
    candidates = table._vector_search(query, options)
    if not candidates:
        return []
    picked = maximal_marginal_relevance(
        query,
        np.stack([c.embedding for c in candidates]),  # type: ignore[misc]
        k=k,
        lambda_mult=lambda_mult,
    )
    chosen = [candidates[i] for i in picked]
    return chosen if include_embeddings else [without_embedding(c) for c in chosen]
