"""Ranking maths shared by every adapter: maximal marginal relevance.

Vectorised with NumPy: one similarity matrix, then k greedy picks that each update
a running maximum, O(k * n) after the matrix instead of O(k^2 * n) re-computation.
"""

from __future__ import annotations

import numpy as np

from tidb_jina._errors import InvalidInputError


def cosine_similarity_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` with every row of ``b`` (zero rows -> 0)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    na[na == 0] = 1.0
    nb[nb == 0] = 1.0
    return (a / na) @ (b / nb).T


def maximal_marginal_relevance(
    query: np.ndarray, candidates: np.ndarray, *, k: int, lambda_mult: float = 0.5
) -> list[int]:
    """Indices of ``k`` candidates balancing relevance to ``query`` and mutual diversity.

    ``lambda_mult`` = 1 is pure relevance, 0 pure diversity (LangChain's convention).
    """
    if not 0.0 <= lambda_mult <= 1.0:
        raise InvalidInputError(f"lambda_mult must be within [0, 1], got {lambda_mult}")
    n = len(candidates)
    if k <= 0 or n == 0:
        return []
    relevance = cosine_similarity_matrix(np.asarray(query)[None, :], candidates)[0]
    pairwise = cosine_similarity_matrix(candidates, candidates)
    selected = [int(np.argmax(relevance))]
    redundancy = pairwise[selected[0]].copy()
    available = np.ones(n, dtype=bool)
    available[selected[0]] = False
    while len(selected) < min(k, n):
        scores = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        scores[~available] = -np.inf
        pick = int(np.argmax(scores))
        selected.append(pick)
        available[pick] = False
        np.maximum(redundancy, pairwise[pick], out=redundancy)
    return selected


def reciprocal_rank_fusion(rankings: list[list[str]], *, k: int = 60) -> dict[str, float]:
    """RRF: each id scores sum(1 / (k + rank)) over the rankings it appears in (rank from 1).

    Normalized to [0, 1] by the best possible score (first in every ranking), so the
    result is a relevance score like the others.
    """
    if k <= 0:
        raise InvalidInputError(f"rrf k must be positive, got {k}")
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1)
    return {key: value / best for key, value in scores.items()}


def weighted_fusion(
    vector_scores: dict[str, float], text_scores: dict[str, float], *, alpha: float = 0.5
) -> dict[str, float]:
    """``alpha * vector + (1 - alpha) * text``; text scores are divided by their maximum.

    ``alpha`` = 1 is pure vector search, 0 pure full-text (LlamaIndex's convention).
    Vector scores are already relevance scores in [0, 1]; BM25 scores are unbounded, so
    they are scaled per query. A row missing from one side gets 0 there.
    """
    if not 0.0 <= alpha <= 1.0:
        raise InvalidInputError(f"alpha must be within [0, 1], got {alpha}")
    top = max(text_scores.values(), default=0.0)
    text = {key: (value / top if top > 0 else 0.0) for key, value in text_scores.items()}
    keys = dict.fromkeys([*vector_scores, *text])
    return {
        key: alpha * vector_scores.get(key, 0.0) + (1.0 - alpha) * text.get(key, 0.0)
        for key in keys
    }
