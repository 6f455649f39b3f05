"""Late chunking: which chunks may share a request, and how many.

Jina's ``late_chunking=true`` joins the inputs of one request into one sequence, embeds it,
and splits the result back into one vector per input, so every input is embedded in the
context of the others. The inputs of one request must therefore be the chunks of **one**
document, and their joined length must fit the model's context (8K tokens for v3, 32K for
v4); the request is also bound by the API's input count (2,048; 512 for v4).

- ``plan_windows`` cuts one document's chunks into contiguous windows within those limits
  (a document longer than the context is embedded window by window);
- ``group_positions`` groups the positions of a flat list by a document key (LlamaIndex's
  ``ref_doc_id``, a LangChain metadata key), so the adapters can embed each document's
  chunks together and put the vectors back in input order.

We cannot run Jina's tokenizer here, so ``estimate_tokens`` over-counts on purpose: the
larger of one token per 3 UTF-8 bytes and one per word or punctuation mark (English text
averages about 4.5 characters per token, CJK about one character, 3 bytes, per token).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import orjson

__all__ = [
    "ROW_DOCUMENT_KEY",
    "GroupedEmbed",
    "estimate_tokens",
    "group_positions",
    "plan_windows",
    "rows_embed",
]

ROW_DOCUMENT_KEY = "source"
"""The metadata key naming a row's document for late chunking in ``VectorTable.add_texts``
(LangChain's loaders' key, also the LangChain adapter's default)."""

_TOKENISH = re.compile(r"\w+|[^\w\s]")


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens ``text`` takes in a Jina model's context."""
    return max(len(text.encode("utf-8")) // 3, len(_TOKENISH.findall(text))) + 1


def plan_windows(
    chunks: Sequence[str], *, max_inputs: int, max_tokens: int, max_chars: int
) -> list[tuple[int, int]]:
    """Contiguous ``(start, end)`` windows over one document's ``chunks``: each at most
    ``max_inputs`` chunks, ``max_tokens`` estimated tokens and ``max_chars`` characters.
    A chunk over the token budget on its own gets a window of its own (the API truncates
    it, or refuses it with ``truncate=False``)."""
    windows: list[tuple[int, int]] = []
    start, tokens, chars = 0, 0, 0
    for i, chunk in enumerate(chunks):
        cost, size = estimate_tokens(chunk), len(chunk)
        full = i - start >= max_inputs or tokens + cost > max_tokens or chars + size > max_chars
        if i > start and full:
            windows.append((start, i))
            start, tokens, chars = i, 0, 0
        tokens += cost
        chars += size
    if start < len(chunks):
        windows.append((start, len(chunks)))
    return windows


def group_positions(keys: Sequence[Hashable | None]) -> list[list[int]]:
    """Positions grouped by key, in order of first appearance; a ``None`` key (unknown
    document) is a group of its own, so unrelated chunks are never joined."""
    groups: dict[Hashable, list[int]] = {}
    out: list[list[int]] = []
    for position, key in enumerate(keys):
        if key is None:
            out.append([position])
            continue
        group = groups.get(key)
        if group is None:
            group = groups[key] = []
            out.append(group)
        group.append(position)
    return out


def rows_embed(
    embedder: Any, metas: Sequence[str], *, aio: bool = False
) -> Callable[..., Any] | None:
    """For ``VectorTable.add_texts``: a late-chunking embedder (``JinaClient``) gets the rows
    grouped by ``metadata["source"]`` (rows without one are documents of their own), so
    unrelated rows never share a late-chunking request; None for any other embedder.
    ``metas`` are the rows' serialised metadata."""
    if not getattr(embedder, "late_chunking", False) or not hasattr(embedder, "embed_grouped"):
        return None
    keys = [_row_document(meta) for meta in metas]
    grouped = embedder.aembed_grouped if aio else embedder.embed_grouped
    return GroupedEmbed(grouped, lambda count: keys, getattr(embedder, "model", None))


class GroupedEmbed:
    """``texts -> vectors`` with each document's chunks in their own requests
    (``grouped(texts, keys)``, sync or async). It names its client's ``model``, so a
    table checks and records the model as it does for ``embed_documents``."""

    def __init__(
        self,
        grouped: Callable[[list[str], list[Hashable | None]], Any],
        keys: Callable[[int], list[Hashable | None]],
        model: str | None,
    ) -> None:
        self._grouped, self._keys, self.model = grouped, keys, model

    def __call__(self, texts: list[str]) -> Any:
        return self._grouped(texts, self._keys(len(texts)))


def _row_document(meta: str | None) -> Hashable | None:
    try:
        value = orjson.loads(meta) if meta else None
    except orjson.JSONDecodeError:
        return None
    key = value.get(ROW_DOCUMENT_KEY) if isinstance(value, dict) else None
    return key if isinstance(key, (str, int, float)) and not isinstance(key, bool) else None
