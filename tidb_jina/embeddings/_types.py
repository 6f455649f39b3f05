"""The provider protocol the vector store codes against, and the rerank result type."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["EmbeddingProvider", "RerankResult"]


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Anything that turns texts into float32 vectors, sync and async.

    ``dimension`` is known before any call when the model is known or ``dimensions`` was
    set, and learned from the first response otherwise (``None`` until then). Documents and
    queries are embedded by different methods because asymmetric models (Jina v3/v4/v5, e5,
    Qwen3) encode them differently.

    Optional, not part of the protocol (so existing providers still satisfy it):
    ``embed_queries(texts)`` / ``aembed_queries(texts)``, many queries in one call, row ``i``
    equal to ``embed_query(texts[i])``. ``JinaClient``, ``HuggingFaceClient`` and
    ``LexicalEmbedder`` have them; the LangChain adapter uses them when a provider does and
    calls ``embed_query`` per query otherwise.
    """

    model: str

    @property
    def dimension(self) -> int | None: ...

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 array of shape ``(len(texts), dimension)``."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Float32 array of shape ``(dimension,)``."""
        ...

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    async def aembed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class RerankResult:
    """One reranked document: its position in the input list, its score and its text."""

    index: int
    score: float
    document: str
