"""``add_texts(..., batch_size=n)``: LangChain's batch size, honoured all-or-nothing.

LangChain's indexing API (``langchain_core.indexing.index`` / ``aindex``) and other
callers pass ``batch_size`` to ``add_documents``. Here it bounds the rows of each write:
the texts go to the core in groups of at most ``batch_size``, each one embedding call and
one transaction. Every row of every group is checked first (texts, ids, metadata), and
missing ids are generated then, so a bad row anywhere writes nothing and the ids returned
are the ones written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from tidb_jina._errors import InvalidInputError
from tidb_jina.embeddings import validate_texts
from tidb_jina.store import VectorTable

__all__ = ["Batch", "pop_batch_size", "split_rows"]


class Batch(NamedTuple):
    texts: list[str]
    ids: list[str]
    metadatas: list[Any] | None


def pop_batch_size(kwargs: dict[str, Any]) -> int | None:
    """Take ``batch_size`` out of ``kwargs`` (None: one write plan, the core's own)."""
    size = kwargs.pop("batch_size", None)
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {size!r}")
    return size


def split_rows(
    table: VectorTable,
    texts: Iterable[str],
    metadatas: Sequence[Mapping[str, Any] | None] | None,
    ids: Sequence[str | None] | None,
    size: int,
) -> list[Batch]:
    """The rows in groups of at most ``size``, every row checked first (no I/O).

    Call it after the table's shape is loaded (``exists()``): its id length bounds the ids.
    """
    text_list = validate_texts(texts)
    metas = None if metadatas is None else list(metadatas)
    id_list, _, _ = table._prepare(len(text_list), ids, text_list, metas)
    return [
        Batch(
            text_list[start : start + size],
            id_list[start : start + size],
            None if metas is None else metas[start : start + size],
        )
        for start in range(0, len(text_list), size)
    ]
