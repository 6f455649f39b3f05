"""Jina reranker requests: bounded in size, split and merged by score.

- **Documents per request.** Jina's OpenAPI spec sets no maximum for ``documents``, but
  Jina's own MCP server caps a rerank call at 1,024 documents, and a request is one
  model pass over every pair; a larger set is split into requests of at most
  ``JINA_RERANK_MAX_DOCUMENTS`` (``rerank_batch_size=``), sent concurrently, and the
  results merged by ``relevance_score``. Cross-encoders (v1, v2, colbert) score each
  (query, document) pair on its own, so merged scores compare exactly; the listwise
  ``jina-reranker-v3`` scores documents in the context of their request, so a split set
  is ranked per request and then merged, an approximation of one pass.
- **``truncation``** (the reranker's field name; ``truncate`` is the embeddings' one) is
  sent to the text rerankers and v3, which document it, and not to ``jina-reranker-m0``
  or names we do not know.
- Answers are checked: an ``index`` out of range or a score that is not a number is a
  ``ResponseFormatError`` that names the type it got, never the value (a server that
  echoes the request could put the API key there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tidb_jina._errors import ConfigurationError, ResponseFormatError
from tidb_jina.embeddings._http import _Call
from tidb_jina.embeddings._types import RerankResult

__all__ = ["JINA_RERANK_MAX_DOCUMENTS", "accepts_truncation", "merge", "parse", "plan"]

JINA_RERANK_MAX_DOCUMENTS = 1024
"""Documents per rerank request (Jina's MCP server's cap; the spec sets none)."""

_TRUNCATION_PREFIXES = ("jina-reranker-v1", "jina-reranker-v2", "jina-reranker-v3", "jina-colbert")


@dataclass(frozen=True)
class _RerankCall(_Call):
    """A rerank request over ``documents[offset:offset + size]`` of the caller's list."""

    offset: int = 0


def accepts_truncation(model: str) -> bool:
    """Whether Jina's spec lists ``truncation`` for this reranker (not m0, not unknown)."""
    return model.startswith(_TRUNCATION_PREFIXES)


def plan(
    url: str,
    *,
    model: str,
    query: str,
    documents: list[str],
    top_n: int | None,
    batch: int,
    truncation: bool,
) -> list[_RerankCall]:
    """The requests for one rerank: ``documents`` in slices of at most ``batch``."""
    if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
        raise ConfigurationError(f"top_n must be >= 1 or None (all documents); got {top_n!r}")
    calls = []
    for offset in range(0, len(documents), batch):
        part = documents[offset : offset + batch]
        payload: dict[str, Any] = {
            "model": model,
            "query": query,
            "documents": part,
            "return_documents": False,  # we hold the texts; don't pay to download them again
        }
        if top_n is not None:
            payload["top_n"] = min(top_n, len(part))
        if accepts_truncation(model):
            payload["truncation"] = truncation
        calls.append(_RerankCall("POST", url, payload, len(part), offset=offset))
    return calls


def parse(data: Any, call: _Call) -> list[RerankResult]:
    """One answer's results, with ``index`` into the caller's whole list."""
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise ResponseFormatError("Jina AI rerank answered without a 'results' list")
    documents = call.payload["documents"]
    offset = call.offset if isinstance(call, _RerankCall) else 0
    out: list[RerankResult] = []
    seen: set[int] = set()
    for item in results:
        index = item.get("index") if isinstance(item, dict) else None
        score = item.get("relevance_score") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool):
            raise ResponseFormatError(
                f"Jina AI rerank returned an index that is not an integer ({type(index).__name__})"
            )
        if not 0 <= index < len(documents) or index in seen:
            raise ResponseFormatError(
                f"Jina AI rerank returned a bad or repeated index: {index} for "
                f"{len(documents)} documents"
            )
        seen.add(index)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise ResponseFormatError(
                f"Jina AI rerank returned a score that is not a number ({type(score).__name__})"
            )
        out.append(RerankResult(offset + index, float(score), documents[index]))
    return out


def merge(parts: Sequence[list[RerankResult]], top_n: int | None) -> list[RerankResult]:
    """All requests' results, best score first (ties: input order), cut to ``top_n``."""
    merged = sorted((r for part in parts for r in part), key=lambda r: (-r.score, r.index))
    return merged if top_n is None else merged[:top_n]
