"""LangChain ``Document`` <-> core rows and results (shared by the store's methods)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langchain_core.documents import Document

from tidb_jina.store import Record, SearchResult

__all__ = [
    "record_document",
    "result_document",
    "split_documents",
    "with_distance",
    "with_score",
]


def split_documents(
    documents: Iterable[Document],
) -> tuple[list[str], list[dict[str, Any]], list[str | None] | None]:
    docs = list(documents)
    doc_ids = [doc.id for doc in docs]
    return (
        [doc.page_content for doc in docs],
        [doc.metadata for doc in docs],
        doc_ids if any(doc_ids) else None,
    )


def record_document(record: Record) -> Document:
    return Document(id=record.id, page_content=record.document or "", metadata=record.metadata)


def result_document(result: SearchResult) -> Document:
    return Document(id=result.id, page_content=result.document or "", metadata=result.metadata)


def with_distance(results: list[SearchResult]) -> list[tuple[Document, float]]:
    return [(result_document(r), r.distance) for r in results]


def with_score(results: list[SearchResult]) -> list[tuple[Document, float]]:
    return [(result_document(r), r.score) for r in results]
