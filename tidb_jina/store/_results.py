"""Plain result objects returned by the vector table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Record:
    """One stored row. ``embedding`` is set only when it was asked for."""

    id: str
    document: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SearchResult:
    """One search hit: the row, its raw ``distance`` and a relevance ``score`` in [0, 1].

    ``distance`` is what TiDB's ``VEC_*_DISTANCE`` function returns for the table's
    metric (smaller is closer); ``score`` is defined per metric in
    :mod:`tidb_jina.store._metrics` (larger is more relevant). Full-text hits carry their
    BM25 ``text_score``, a ``score`` scaled so the best hit is 1, and a NaN ``distance``
    (no vector was compared); hybrid hits carry the fused ``score`` and the real distance.
    """

    id: str
    document: str | None
    metadata: dict[str, Any]
    distance: float
    score: float
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    text_score: float | None = None  # raw BM25 for full-text and hybrid hits


_NEW = object.__new__


def hit(
    id: str,
    document: str | None,
    metadata: dict[str, Any],
    distance: float,
    score: float,
    embedding: np.ndarray | None = None,
) -> SearchResult:
    """``SearchResult(id, document, metadata, distance, score, embedding)``, made without
    the frozen dataclass's ``__init__`` (one ``object.__setattr__`` per field: about
    0.9 us a hit, a tenth of a 1%-filter search's own cost beyond NumPy's). Same fields,
    same equality and hash; the instance is as frozen as any other."""
    out = _NEW(SearchResult)
    out.__dict__.update(
        id=id,
        document=document,
        metadata=metadata,
        distance=distance,
        score=score,
        embedding=embedding,
        text_score=None,
    )
    return out
