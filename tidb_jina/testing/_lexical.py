"""Deterministic, lexical embeddings for offline tests, demos and the fake server.

``lexical_embedding`` is a hashed bag of lowercase words, L2-normalized: texts that share
words get a high cosine similarity, texts that share none get about zero, so retrieval tests
can assert rankings. Word buckets come from BLAKE2b, not Python's salted ``hash()``, so the
vectors are identical across processes and machines.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from tidb_jina._errors import InvalidInputError
from tidb_jina.embeddings._inputs import validate_texts
from tidb_jina.embeddings._queries import embed_queries

__all__ = ["DEFAULT_LEXICAL_DIMENSION", "LexicalEmbedder", "lexical_embedding"]

DEFAULT_LEXICAL_DIMENSION = 256
_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=65536)
def _bucket(word: str, dimension: int) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    # The sign bit halves the bias that hash collisions add to unrelated texts.
    return value % dimension, 1.0 if (value >> 63) & 1 else -1.0


def lexical_embedding(
    texts: Sequence[str], dimension: int = DEFAULT_LEXICAL_DIMENSION
) -> np.ndarray:
    """Float32 array ``(len(texts), dimension)``: hashed bag of lowercase words, unit length.

    A text without any word maps to the first basis vector, so every row has norm 1.
    """
    if dimension < 1:
        raise InvalidInputError(f"dimension must be >= 1; got {dimension}")
    out = np.zeros((len(texts), dimension), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in _WORD.findall(text.lower()):
            index, sign = _bucket(word, dimension)
            out[row, index] += sign
        norm = float(np.linalg.norm(out[row]))
        if norm == 0.0:
            out[row, 0] = 1.0
        else:
            out[row] /= norm
    return out


class LexicalEmbedder:
    """An ``EmbeddingProvider`` with no network: ``lexical_embedding`` behind the usual API.

    Useful for quickstarts without an API key and for tests of code that takes a provider.
    Queries and documents are embedded the same way (the vectors are lexical).
    """

    def __init__(self, *, dimension: int = DEFAULT_LEXICAL_DIMENSION, model: str = "lexical"):
        if dimension < 1:
            raise InvalidInputError(f"dimension must be >= 1; got {dimension}")
        self.model = model
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def __repr__(self) -> str:
        return f"LexicalEmbedder(dimension={self._dimension}, model={self.model!r})"

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return lexical_embedding(validate_texts(texts), self._dimension)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> np.ndarray:
        return self.embed_query(text)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Many queries at once: row ``i`` is ``embed_query(texts[i])``."""
        return self.embed_documents(texts)

    async def aembed_queries(self, texts: Sequence[str]) -> np.ndarray:
        # As ``aembed_query`` (which calls ``embed_query``): through the sync dispatch, so
        # a subclass that overrides only ``embed_query`` is asked query by query.
        return embed_queries(self, texts)
