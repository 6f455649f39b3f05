"""Many queries from any ``EmbeddingProvider``: one ``embed_queries`` call when it has a
faithful one, ``embed_query`` per text otherwise.

``embed_queries`` is optional in the protocol (a provider written before it, or a plain
class with the four required methods, has none). "Faithful" also rules out a subclass that
overrides ``embed_query`` (a prefix, a cache) below the class that defines
``embed_queries``: the inherited batch method would skip the override, so such a provider
is asked query by query. The adapters call these functions, so the rule lives in one
place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tidb_jina.embeddings._inputs import validate_texts
from tidb_jina.embeddings._types import EmbeddingProvider

__all__ = ["aembed_queries", "embed_queries", "query_batch_method"]


def query_batch_method(provider: Any, *, asynchronous: bool = False) -> Callable[..., Any] | None:
    """``provider.embed_queries`` (``aembed_queries``) when row ``i`` of its answer is
    ``embed_query(texts[i])`` (``aembed_query``) by construction, else None.

    That holds when the class defining the batch method is the class defining the single
    method or a subclass of it (it saw the override); a subclass that overrides only
    ``embed_query`` gets None.
    """
    one, many = (
        ("aembed_query", "aembed_queries") if asynchronous else ("embed_query", "embed_queries")
    )
    cls = type(provider)
    if not callable(getattr(cls, many, None)) or not callable(getattr(cls, one, None)):
        return None
    if one in getattr(provider, "__dict__", {}):
        return None  # ``embed_query`` replaced on the instance (a patch, a wrapper)
    if not issubclass(_definer(cls, many), _definer(cls, one)):
        return None
    return getattr(provider, many)  # type: ignore[no-any-return]


def embed_queries(provider: EmbeddingProvider, texts: Sequence[str]) -> np.ndarray:
    """Float32 ``(len(texts), d)``: row ``i`` is ``provider.embed_query(texts[i])``.

    One ``provider.embed_queries(texts)`` call (for ``JinaClient`` and ``HuggingFaceClient``
    one request per batch) when :func:`query_batch_method` allows it, else one
    ``embed_query`` per text. Texts are checked first either way (``InvalidInputError``
    naming the first bad index, before any request).
    """
    items = validate_texts(texts)
    many = query_batch_method(provider)
    if many is not None:
        return np.asarray(many(items), dtype=np.float32)
    return _stack([provider.embed_query(text) for text in items], provider)


async def aembed_queries(provider: EmbeddingProvider, texts: Sequence[str]) -> np.ndarray:
    """Async :func:`embed_queries` (``aembed_queries``, else ``aembed_query`` per text)."""
    items = validate_texts(texts)
    many = query_batch_method(provider, asynchronous=True)
    if many is not None:
        return np.asarray(await many(items), dtype=np.float32)
    return _stack([await provider.aembed_query(text) for text in items], provider)


def _stack(rows: list[Any], provider: EmbeddingProvider) -> np.ndarray:
    if not rows:  # a LangChain ``Embeddings`` (or any object) may have no ``dimension``
        return np.empty((0, getattr(provider, "dimension", None) or 0), dtype=np.float32)
    return np.stack([np.asarray(row, dtype=np.float32) for row in rows])


def _definer(cls: type, name: str) -> type:
    return next(c for c in cls.__mro__ if name in vars(c))
