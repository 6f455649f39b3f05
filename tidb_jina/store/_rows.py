"""Row preparation shared by the table's writes and reads: validation and small helpers.

Everything here is pure (no I/O): it checks caller input and raises
``InvalidInputError`` naming the bad element, so nothing is written when anything is bad.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from tidb_jina._errors import InvalidInputError
from tidb_jina.store import _batch_checks
from tidb_jina.store._filter_tree import check_metadata_key
from tidb_jina.store._results import Record, SearchResult
from tidb_jina.store._schema import INDEXED_VALUE_LENGTH
from tidb_jina.store._types import dumps_metadata
from tidb_jina.store._validate import check_metadata_values, check_text

IN_CHUNK = 900  # ids per IN (...) list: below SQLite's oldest bound-parameter limit (999)


def record_from_row(row: Any, include_embeddings: bool) -> Record:
    return Record(
        id=row.id,
        document=row.document,
        metadata=row.meta or {},
        embedding=row.embedding if include_embeddings else None,
    )


def without_embedding(result: SearchResult) -> SearchResult:
    return SearchResult(
        id=result.id,
        document=result.document,
        metadata=result.metadata,
        distance=result.distance,
        score=result.score,
    )


def prepare_documents(documents: Iterable[str | None] | None, n: int) -> list[str | None]:
    if documents is None:
        return [None] * n
    docs = list(documents)
    if len(docs) != n:
        raise InvalidInputError(f"got {len(docs)} documents for {n} vectors; pass one per vector")
    if _batch_checks.texts_ok(docs):  # the whole column at once; else name the bad one
        return docs
    for i, doc in enumerate(docs):
        if doc is not None and not isinstance(doc, str):
            raise InvalidInputError(
                f"document {i} is {type(doc).__name__}; documents must be str (or None)"
            )
        if doc is not None:
            check_text(doc, f"document {i}")
    return docs


def prepare_metadatas(
    metadatas: Iterable[Mapping[str, Any] | None] | None, n: int, indexed_key: str | None = None
) -> list[str]:
    if metadatas is None:
        return ["{}"] * n
    metas = list(metadatas)
    if len(metas) != n:
        raise InvalidInputError(f"got {len(metas)} metadatas for {n} vectors; pass one per vector")
    texts = _batch_checks.metadata_texts(metas, indexed_key)  # the whole column at once
    if texts is not None:
        return texts
    out = []  # row by row: a bad row is named here
    for i, meta in enumerate(metas):
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping):
            raise InvalidInputError(
                f"metadata {i} is {type(meta).__name__}; metadata must be a dict"
            )
        for key in meta:
            check_metadata_key(key)
        check_metadata_values(meta, i)  # nested keys, NUL, surrogates, depth
        if indexed_key is not None and indexed_key in meta:
            check_indexed_value(indexed_key, meta[indexed_key], i)
        out.append(dumps_metadata(dict(meta)))
    return out


def check_indexed_value(key: str, value: Any, i: int) -> None:
    scalar = value is None or isinstance(value, (str, int, float, bool))
    if not scalar or (isinstance(value, str) and len(value) > INDEXED_VALUE_LENGTH):
        raise InvalidInputError(
            f"metadata {i}: {key!r} is indexed, so its value must be a string of at most "
            f"{INDEXED_VALUE_LENGTH} characters or a number, got {str(value)[:40]!r}"
        )


def last_occurrences(ids: list[str]) -> list[int]:
    """Positions to write: each id once, at its last occurrence, in first-seen order."""
    last = {value: i for i, value in enumerate(ids)}  # dicts keep first-insertion order
    return list(range(len(ids))) if len(last) == len(ids) else list(last.values())


def unique(values: Iterable[str]) -> list[str]:
    if isinstance(values, str):
        raise InvalidInputError("ids must be a list of strings, not one string")
    return list(dict.fromkeys(values))


def chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
