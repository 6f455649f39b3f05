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
